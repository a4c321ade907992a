"""Hostile SMTP clients for tests/e2e/test_hostile.py and perf/hostile/bench_hostile.py.

    python3 hostile_client.py HOST PORT CASE [ARG=VALUE ...]

runs one case against an SMTP server and prints one JSON object with what it saw. It is a
script (not a module the test imports) because on the dpdk transport it must run inside the
client network namespace (`ip netns exec NS python3 hostile_client.py ...`). Standard
library only; every case is bounded in connections and time.

Cases (defaults in brackets):
  normal        one well-behaved session: EHLO, MAIL, RCPT, DATA, QUIT; reports the
                greeting delay and the reply to the final dot
  abrupt        n [100] connections driven to `stage` (connect|ehlo|mail|rcpt|data|
                middata|bdat) then closed with `how` (fin: the close rides in the same
                segment as the last bytes, TCP_CORK; rst: SO_LINGER 0, data then RST at once)
  midabort      n [10] transfers of `size` [1000000] bytes of DATA, each closed before the dot
  oversize      n [5] messages of `size` bytes, sent whole; reports the final replies
  pipelining    the unauthorised pipelining forms: talking before the greeting, commands
                after HELO in one packet, commands after DATA: reports each reply
  longline      a command line of `size` [1048576] bytes, then NOOP and QUIT
  junk          NUL and 8-bit junk lines until the server hangs up (at most `n` [200])
  bare_lf       commands and a message with bare LF line ends
  junkflood     `n` [300] RSETs pipelined after EHLO (smtpd_junk_command_limit)
  bdat          BDAT with absurd counts: 2^64-1, 2^63, 2^63-1
  overshoot     one transaction with `n` [1100] recipients, then DATA
  trickle       one command line sent a byte every `gap` [2] seconds, for at most `max` [60]
                seconds; reports when the server cut it and what it said
  slowloris     `n` [2000] connections, each sending a byte every `gap` [5] s, for at most
                `max` [60] s; reports how many the server closed, when, and what it said
  ledger        messages for `seconds` [5], reconnecting when the server goes away; reports
                the queue ID of every 250 (what the server promised to keep)
"""

import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

HOST = sys.argv[1]
PORT = int(sys.argv[2])
CASE = sys.argv[3]
ARGS = dict(a.split("=", 1) for a in sys.argv[4:])
FAMILY = socket.AF_INET6 if ":" in HOST else socket.AF_INET


def arg(name, default):
    v = ARGS.get(name, default)
    return type(default)(v) if not isinstance(default, str) else v


class Session:
    """A line-oriented SMTP client on a blocking socket with a timeout."""

    def __init__(self, timeout=30.0):
        self.t0 = time.monotonic()
        self.sock = socket.create_connection((HOST, PORT), timeout=timeout)
        self.buf = b""

    def reply(self):
        """One whole reply (all its lines) as text, or '' at EOF."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                try:
                    d = self.sock.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    d = b""
                if not d:
                    return "\n".join(lines)
                self.buf += d
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def eof(self, timeout=10.0):
        """True when the server closes within timeout (after any bytes it still sends)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()


def first_code(r):
    return r[:3] if r else ""


# -- cases -------------------------------------------------------------------------------

def case_normal():
    t0 = time.monotonic()
    s = Session()
    g = s.reply()
    greet_ms = (time.monotonic() - t0) * 1000
    out = {"greeting": g, "greet_ms": round(greet_ms, 1)}
    if not g.startswith("220"):
        return out
    out["ehlo"] = first_code(s.cmd("EHLO normal.example"))
    out["mail"] = first_code(s.cmd("MAIL FROM:<normal@sender.example>"))
    out["rcpt"] = first_code(s.cmd(f"RCPT TO:<{arg('rcpt', 'someone@localhost')}>"))
    out["data"] = first_code(s.cmd("DATA"))
    s.send(b"Subject: normal\r\n\r\nA normal message after a hostile case.\r\n.\r\n")
    out["dot"] = s.reply()
    out["quit"] = first_code(s.cmd("QUIT"))
    s.close()
    return out


def drive_to(s, stage):
    """Take a fresh session to `stage`; returns the bytes to send next (the start of what
    the stage would continue with)."""
    s.reply()
    if stage == "connect":
        return b"EHLO abrupt"
    s.cmd("EHLO abrupt.example")
    if stage == "ehlo":
        return b"MAIL FROM:<a"
    s.cmd("MAIL FROM:<abrupt@sender.example>")
    if stage == "mail":
        return b"RCPT TO:<b"
    s.cmd("RCPT TO:<someone@localhost>")
    if stage == "rcpt":
        return b"DATA\r\nSubject: never"
    if stage == "bdat":
        s.send(b"BDAT 100000\r\n" + b"x" * 30000)
        return b"y" * 2000
    s.cmd("DATA")
    if stage == "data":
        return b"Subject: half a header"
    # middata: a good part of a message already sent, more on its way
    s.send(b"Subject: mid-data\r\n\r\n" + b"z" * 998 + b"\r\n" * 1 + (b"w" * 998 + b"\r\n") * 80)
    return b"the last line before the close, never finished"


def one_abrupt(stage, how, errors):
    try:
        s = Session(timeout=20)
        tail = drive_to(s, stage)
        if how == "rst":
            s.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        s.sock.send(tail)
        s.close()
    except OSError as e:
        errors.append(str(e))


def case_abrupt():
    n, stage, how = arg("n", 100), arg("stage", "middata"), arg("how", "fin")
    errors, threads = [], []
    t0 = time.monotonic()
    for i in range(n):
        t = threading.Thread(target=one_abrupt, args=(stage, how, errors))
        t.start()
        threads.append(t)
        if len(threads) >= 50:
            for t in threads:
                t.join()
            threads = []
    for t in threads:
        t.join()
    return {"n": n, "errors": len(errors), "first_error": errors[:1],
            "seconds": round(time.monotonic() - t0, 2)}


def data_session(size, finish):
    """One transaction with `size` bytes of message; finish: send the dot and report the
    reply, or close before it."""
    s = Session(timeout=60)
    s.reply()
    s.cmd("EHLO big.example")
    s.cmd("MAIL FROM:<big@sender.example>")
    s.cmd("RCPT TO:<someone@localhost>")
    r = s.cmd("DATA")
    if not r.startswith("354"):
        s.close()
        return r
    line = b"B" * 998 + b"\r\n"
    s.send(b"Subject: big\r\n\r\n" + line * (size // len(line) + 1))
    if not finish:
        s.close()
        return "closed"
    s.send(b".\r\n")
    r = s.reply()
    s.cmd("QUIT")
    s.close()
    return r


def case_midabort():
    n, size = arg("n", 10), arg("size", 1000000)
    out = [data_session(size, False) for _ in range(n)]
    return {"n": n, "replies": sorted(set(out))}


def case_oversize():
    n, size = arg("n", 5), arg("size", 11000000)
    out = [first_code(data_session(size, True)) for _ in range(n)]
    return {"n": n, "codes": out}


def case_pipelining():
    out = {}
    # talking before the greeting
    s = Session()
    s.send(b"EHLO early.example\r\n")
    out["pregreet"] = s.reply()
    out["pregreet_second"] = s.reply()
    out["pregreet_closed"] = s.eof()
    s.close()
    # HELO (no PIPELINING) followed by more commands in the same packet
    s = Session()
    s.reply()
    s.send(b"HELO lockstep.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@localhost>\r\n")
    out["helo_burst"] = s.reply()
    out["helo_burst_second"] = s.reply()
    out["helo_burst_closed"] = s.eof()
    s.close()
    # DATA followed by content in the same packet (DATA must end a pipelined group)
    s = Session()
    s.reply()
    s.cmd("EHLO pipe.example")
    s.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@localhost>\r\nDATA\r\nSubject: x\r\n\r\n")
    out["data_burst"] = [s.reply(), s.reply(), s.reply(), s.reply()]
    out["data_burst_closed"] = s.eof()
    s.close()
    return out


def case_longline():
    size = arg("size", 1048576)
    s = Session()
    s.reply()
    s.send(b"NOOP " + b"L" * size + b"\r\n")
    out = {"long": s.reply()}
    out["after"] = first_code(s.cmd("NOOP"))
    out["quit"] = first_code(s.cmd("QUIT"))
    s.close()
    return out


def case_junk():
    n = arg("n", 200)
    s = Session()
    s.reply()
    codes = {}
    last = ""
    for i in range(n):
        junk = bytes([0, 0xff, 0xfe, 0x80 + i % 64, 0x41, 0]) + b"\xe2\x82 \x00MAIL\x00"
        try:
            s.send(junk + b"\r\n")
        except OSError:
            break
        r = s.reply()
        if not r:
            break
        last = r
        codes[r[:3]] = codes.get(r[:3], 0) + 1
    return {"codes": codes, "last": last, "closed": s.eof()}


def case_bare_lf():
    s = Session()
    s.reply()
    s.send(b"EHLO barelf.example\n")
    out = {"ehlo": first_code(s.reply())}
    s.send(b"MAIL FROM:<a@sender.example>\n")
    out["mail"] = first_code(s.reply())
    s.send(b"RCPT TO:<someone@localhost>\n")
    out["rcpt"] = first_code(s.reply())
    s.send(b"DATA\n")
    out["data"] = first_code(s.reply())
    s.send(b"Subject: bare\n\nline one\n.\nstill the message\r\n.\r\n")
    out["dot"] = s.reply()
    out["quit"] = first_code(s.cmd("QUIT"))
    s.close()
    return out


def case_junkflood():
    n = arg("n", 300)
    s = Session()
    s.reply()
    s.cmd("EHLO flood.example")
    # RSET may be pipelined (RFC 2920); NOOP must end a group and would get 554 at once
    s.send(b"RSET\r\n" * n)
    codes = {}
    last = ""
    for _ in range(n):
        r = s.reply()
        if not r:
            break
        last = r
        codes[r[:3]] = codes.get(r[:3], 0) + 1
    return {"codes": codes, "last": last, "closed": s.eof()}


def case_bdat():
    out = {}
    for count in ("18446744073709551615", "9223372036854775808", "9223372036854775807"):
        s = Session()
        s.reply()
        s.cmd("EHLO bdat.example")
        s.cmd("MAIL FROM:<a@sender.example>")
        s.cmd("RCPT TO:<someone@localhost>")
        s.send(f"BDAT {count}\r\n".encode())
        r = s.reply()
        s.send(b"QUIT\r\n")
        after = s.reply()
        out[count] = {"reply": r, "after_quit": after, "closed": s.eof(3.0)}
        s.close()
    return out


def case_overshoot():
    n = arg("n", 1100)
    s = Session(timeout=60)
    s.reply()
    s.cmd("EHLO many.example")
    s.cmd("MAIL FROM:<many@sender.example>")
    batch = 100
    codes = {}
    for start in range(0, n, batch):
        k = min(batch, n - start)
        s.send(b"".join(f"RCPT TO:<r{start + i}@localhost>\r\n".encode() for i in range(k)))
        for _ in range(k):
            c = first_code(s.reply())
            codes[c] = codes.get(c, 0) + 1
    out = {"rcpt": codes, "data": first_code(s.cmd("DATA"))}
    s.send(b"Subject: many\r\n\r\nto many\r\n.\r\n")
    out["dot"] = s.reply()
    out["quit"] = first_code(s.cmd("QUIT"))
    s.close()
    return out


def case_trickle():
    gap, limit = arg("gap", 2.0), arg("max", 60.0)
    s = Session()
    t0 = time.monotonic()
    s.reply()
    s.sock.settimeout(gap)
    line = b"EHLO trickle.example.with.a.long.name.that.takes.a.while.to.send\r\n"
    said = ""
    for b in line * 100:
        if time.monotonic() - t0 > limit:
            break
        try:
            s.sock.send(bytes([b]))
        except OSError:
            break
        try:
            d = s.sock.recv(4096)
            if not d:
                break
            said += d.decode("utf-8", "replace")
            if said.startswith("421"):
                break
        except socket.timeout:
            continue
        except OSError:
            break
    return {"cut_after": round(time.monotonic() - t0, 1), "said": said.strip()}


def case_slowloris():
    n, gap, limit = arg("n", 2000), arg("gap", 5.0), arg("max", 60.0)
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    conns = {}
    refused = 0
    for i in range(n):
        try:
            c = socket.socket(FAMILY, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((HOST, PORT))
            conns[c] = {"i": i, "said": b"", "next": t0 + (i % 50) * gap / 50, "sent": 0}
            sel.register(c, selectors.EVENT_READ)
        except OSError:
            refused += 1
    opened = time.monotonic() - t0
    closed_at = []
    said = {}
    msg = b"EHLO slowloris.example.with.a.name.long.enough.to.last\r\n"
    while conns and time.monotonic() - t0 < limit:
        now = time.monotonic()
        for c, st in list(conns.items()):
            if now >= st["next"]:
                st["next"] = now + gap
                try:
                    c.send(msg[st["sent"] % len(msg):st["sent"] % len(msg) + 1])
                    st["sent"] += 1
                except OSError:
                    pass
        for key, _ in sel.select(timeout=0.2):
            c = key.fileobj
            st = conns.get(c)
            try:
                d = c.recv(4096)
            except OSError:
                d = b""
            if d:
                st["said"] += d
                continue
            sel.unregister(c)
            c.close()
            closed_at.append(time.monotonic() - t0)
            last = st["said"].decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            said[last[0][:40]] = said.get(last[0][:40], 0) + 1
            del conns[c]
    for c in conns:
        c.close()
    closed_at.sort()
    return {"n": n, "refused": refused, "open_seconds": round(opened, 1),
            "closed_by_server": len(closed_at), "still_open": len(conns),
            "first_closed": round(closed_at[0], 1) if closed_at else None,
            "last_closed": round(closed_at[-1], 1) if closed_at else None,
            "last_lines": said}


def case_ledger():
    """Send messages for `seconds`, reconnecting when the server goes away; report the
    queue IDs of every 250 (what the server promised to keep)."""
    seconds, tag = arg("seconds", 5.0), arg("tag", "l")
    acked, errors = [], 0
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        try:
            s = Session(timeout=5)
            if not s.reply().startswith("220"):
                s.close()
                continue
            s.cmd("EHLO ledger.example")
            while time.monotonic() - t0 < seconds:
                n += 1
                if not s.cmd("MAIL FROM:<ledger@sender.example>").startswith("250"):
                    break
                s.cmd("RCPT TO:<someone@localhost>")
                if not s.cmd("DATA").startswith("354"):
                    break
                body = (f"Subject: ledger {tag}-{n}\r\n\r\n" + f"{tag}-{n} " * 500 +
                        "\r\n").encode()
                s.send(body + b".\r\n")
                r = s.reply()
                if r.startswith("250 2.0.0 Ok: queued as "):
                    acked.append(r.split()[-1])
                elif not r:
                    break
            s.close()
        except OSError:
            errors += 1
            time.sleep(0.05)
    return {"acked": acked, "errors": errors}


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    if CASE not in CASES:
        print(json.dumps({"error": f"unknown case {CASE}; cases: {sorted(CASES)}"}))
        sys.exit(2)
    print(json.dumps(CASES[CASE]()))
