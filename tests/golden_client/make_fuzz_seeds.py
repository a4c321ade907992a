#!/usr/bin/env python3
"""Turn the golden client transcripts into seed inputs for tests/fuzz/fuzz_smtp_client.c.

    tests/golden_client/make_fuzz_seeds.py tests/golden_client/*.smtpc OUTDIR

Each transcript becomes inputs in the harness's layout (see fuzz_smtp_client.c): a config
byte, a flight separator that occurs in no flight, then the flights joined by it: server
flights as their bytes, runs of caller actions as 0xff-prefixed scripts. Each transcript
gives its own config, and a variant with pipelining off and the small bounds, so that the
fuzzer starts from lock-step sessions too."""

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


def mail_flags(words):
    f = 0
    if words and words[0] == "<>":
        f |= 0x80
    for w in words[1:]:
        if w.startswith("size="):
            f |= 0x20 if int(w[5:]) > 1 << 40 else 0x01
        elif w == "body=8BITMIME":
            f |= 0x02
        elif w == "body=BINARYMIME":
            f |= 0x40
        elif w == "smtputf8":
            f |= 0x04
        elif w.startswith("ret=") or w.startswith("envid="):
            f |= 0x08
        elif w.startswith("extra="):
            f |= 0x10
    return f


def rcpt_flags(words):
    f = 0
    for w in words[1:]:
        if w.startswith("notify="):
            f |= 1
        elif w.startswith("orcpt="):
            f |= 2
        elif w.startswith("extra="):
            f |= 4
    return f


def convert(path):
    config = 0
    flights = []  # (is_script, bytes)
    server = bytearray()
    script = bytearray()

    def flush_script():
        nonlocal script
        if script:
            flights.append(b"\xff" + bytes(script))
            script = bytearray()

    for raw in open(path, encoding="utf-8", errors="surrogateescape"):
        line = raw.rstrip("\n")
        if not line or line.startswith("#") or line.startswith(">") or line.startswith("="):
            continue
        if line.startswith("config "):
            k, _, v = line[7:].partition("=")
            on = v in ("yes", "1", "true")
            if k == "lmtp" and on:
                config |= 0x01
            elif k == "pipelining" and not on:
                config |= 0x02
            elif k == "send_after_refusal" and on:
                config |= 0x04
            elif k in ("line_max", "line_hard_max", "text_max", "reply_lines_max"):
                config |= 0x08
            continue
        if line.split(" ")[0] in ("state", "idle", "inflight", "pending"):
            continue
        if line.startswith("<< ") or line == "<<":
            server += unescape(line[3:])
            continue
        if line.startswith("< ") or line == "<":
            server += unescape(line[2:]) + b"\r\n"
            continue
        if line == "recv":
            flush_script()
            flights.append(bytes(server))
            server = bytearray()
            continue
        words = line.split(" => ")[0].split(" ")
        verb = words[0]
        if verb in ("ehlo", "helo"):
            script += b"E" if verb == "ehlo" else b"H"
        elif verb == "mail":
            script += b"M" + bytes([mail_flags(words[1:])])
        elif verb == "rcpt":
            script += b"R" + bytes([rcpt_flags(words[1:])])
        elif verb == "data":
            script += b"D"
        elif verb == "content":
            data = unescape(line[8:])
            for k in range(0, max(len(data), 1), 255):
                piece = data[k:k + 255]
                script += b"C" + bytes([len(piece)]) + piece
        elif verb == "end":
            script += b"Z"
        elif verb == "bdat":
            script += b"B" + bytes([int(words[1]) & 0xff, 1 if "last" in words[2:] else 0])
        elif verb == "rset":
            script += b"S"
        elif verb == "noop":
            script += b"N"
        elif verb == "quit":
            script += b"Q"
        elif verb == "peer-closed":
            script += b"P"
        else:
            raise SystemExit(f"{path}: unknown action {verb}")
    flush_script()
    used = set(b"".join(flights))
    sep = next(b for b in range(1, 256) if b not in used and b != 0xff)
    body = bytes([sep]).join(flights)
    return [bytes([config, sep]) + body, bytes([config | 0x02 | 0x08 | 0x10, sep]) + body]


def main():
    if len(sys.argv) < 3:
        raise SystemExit("usage: make_fuzz_seeds.py FILE.smtpc... OUTDIR")
    out = sys.argv[-1]
    os.makedirs(out, exist_ok=True)
    for path in sys.argv[1:-1]:
        name = os.path.basename(path)[:-len(".smtpc")]
        for i, seed in enumerate(convert(path)):
            suffix = "" if i == 0 else "-lockstep"
            with open(os.path.join(out, f"golden-{name}{suffix}"), "wb") as f:
                f.write(seed)


main()
