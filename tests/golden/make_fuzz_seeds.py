#!/usr/bin/env python3
"""Turn the golden transcripts into seed inputs for tests/fuzz/fuzz_smtp_session.c.

    tests/golden/make_fuzz_seeds.py tests/golden/*.smtp OUTDIR

Each transcript becomes one input in the harness's layout (see fuzz_smtp_session.c):
config switches, limit switches, a flight separator byte that occurs in none of the
transcript's flights, a seed byte that says how the session starts, then the client
flights joined by the separator; timeout / shutdown / peer-closed become the harness's
0xff-prefixed control flights. The transcript's config is mapped onto the harness's
switches as closely as they allow (small limits become the harness's small limits)."""

import os
import re
import sys


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n == "r":
                out += b"\r"
            elif n == "n":
                out += b"\n"
            elif n == "t":
                out += b"\t"
            elif n == "0":
                out += b"\0"
            elif n == "x" and re.match(r"[0-9a-fA-F]{2}", s[i + 2:i + 4]):
                out.append(int(s[i + 2:i + 4], 16))
                i += 2
            else:
                out += n.encode("utf-8")
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return bytes(out)


def convert(path):
    c0, c1, seed = 0, 0, 0x80
    xclient = False
    flights, cur = [], bytearray()
    for raw in open(path, encoding="utf-8", errors="surrogateescape"):
        line = raw.rstrip("\n")
        if line.startswith("config "):
            k, v = line[7:].split("=", 1)
            yes = v in ("yes", "1", "true")
            if k == "bare_newline" and v == "reject":
                c0 |= 1
            elif k == "forbid_unauth_pipelining" and not yes:
                c0 |= 2
            elif k == "enable_pipelining" and not yes:
                c0 |= 4
            elif k == "enable_chunking" and not yes:
                c0 |= 8
            elif k == "strict_rfc821_envelopes" and yes:
                c0 |= 16
            elif k == "helo_required" and yes:
                c0 |= 32
            elif k == "disable_vrfy_command" and yes:
                c0 |= 64
            elif k == "enable_smtputf8" and not yes:
                c0 |= 128
            elif k == "line_length_limit" and int(v) < 2048:
                c1 |= 1
            elif k == "message_size_limit":
                c1 |= 2 if int(v) == 0 else 4
            elif k == "header_size_limit" and int(v) < 102400:
                c1 |= 8
            elif k == "recipient_limit" and int(v) < 1000:
                c1 |= 16
            elif k in ("hard_error_limit", "soft_error_limit") and int(v) < 10:
                c1 |= 32
            elif k == "junk_command_limit" and int(v) < 100:
                c1 |= 64
            elif k == "hopcount_limit" and int(v) < 50:
                c1 |= 128
        elif line.startswith("client ") and "xclient" in line[7:].split():
            xclient = True
        elif line == "nogreet":
            seed = 0x10
        elif line.startswith("greet-reject"):
            seed = 0x60
        elif line.startswith(">>"):
            cur += unescape(line[3:] if line[2:3] == " " else line[2:])
        elif line.startswith(">"):
            cur += unescape(line[2:] if line[1:2] == " " else line[1:]) + b"\r\n"
        elif line.startswith("send"):
            flights.append(bytes(cur))
            cur = bytearray()
        elif line in ("timeout", "shutdown", "peer-closed"):
            flights.append(b"\xff" + {"timeout": b"T", "shutdown": b"S", "peer-closed": b"P"}[line])
    if xclient:
        seed |= 0x08  # the harness's smtpd_authorized_xclient_hosts switch
    used = set(b"".join(flights))
    sep = next(b for b in range(1, 255) if b not in used and b != 0xff)
    return bytes([c0, c1, sep, seed]) + bytes([sep]).join(flights)


def main():
    *paths, outdir = sys.argv[1:]
    os.makedirs(outdir, exist_ok=True)
    for p in paths:
        name = os.path.basename(p)[:-len(".smtp")]
        with open(os.path.join(outdir, "golden-" + name), "wb") as f:
            f.write(convert(p))
    print(f"{len(paths)} seeds written to {outdir}")


if __name__ == "__main__":
    main()
