"""The client side of test_proxy.py, run where the clients are (this host, or the client
namespace of a dpdk topology): argv is a JSON object with the gateway's address and port,
HAProxy's two frontends and the timeout under test. Prints one JSON object: what each case
saw. Python 3 standard library only (it runs under Debian's python3 in the namespace)."""

import json
import smtplib
import socket
import sys
import time

args = json.loads(sys.argv[1])
GW, PORT = args["gw"], args["port"]
out = {}


def read_reply(s, limit=10.0):
    """One whole SMTP reply (all its lines) as text, or what came before EOF/timeout."""
    s.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            break
    return data.decode("ascii", "replace")


def eof_after(s, limit=5.0):
    s.settimeout(limit)
    try:
        return s.recv(4096) == b""
    except (socket.timeout, ConnectionResetError):
        return False


def through_haproxy(port, src, deliver):
    """An SMTP session from src through one of HAProxy's frontends: the greeting, a relay
    attempt (refused unless the gateway took the proxy's own address for the client) and,
    when deliver, a message to a local recipient."""
    r = {}
    with smtplib.SMTP(timeout=20, source_address=(src, 0)) as c:
        code, msg = c.connect("127.0.0.1", port)
        r["greeting"] = code
        c.ehlo("client.test.example")
        c.mail(f"alice@{src}.example")
        code, msg = c.rcpt("someone@elsewhere.example")
        r["relay"] = f"{code} {msg.decode()}"
        if deliver:
            code, msg = c.rcpt("bob@localhost")
            r["local"] = code
            code, msg = c.data(b"Subject: through the proxy\r\n\r\nhello\r\n")
            r["data"] = f"{code} {msg.decode()}"
        c.quit()
    return r


def direct(payload, pieces=1, pause=0.0, then=()):
    """A connection straight to the gateway that sends payload (in `pieces` parts with a
    pause between them), then each command of `then`, one at a time; returns the first
    reply, the replies to `then` and whether the gateway closed after."""
    s = socket.create_connection((GW, PORT), timeout=10)
    try:
        step = max(1, -(-len(payload) // pieces)) if payload else 1
        for i in range(0, len(payload), step):
            s.sendall(payload[i:i + step])
            if pause:
                time.sleep(pause)
        r = {"reply": read_reply(s, limit=args["timeout"] + 8).strip()}
        r["then"] = []
        for cmd in then:
            s.sendall(cmd)
            r["then"].append(read_reply(s).strip())
        r["closed"] = eof_after(s)
        return r
    finally:
        s.close()


# HAProxy starts beside this script: wait until both frontends listen (read from
# /proc/net/tcp: a probe connection would reach the gateway as a session of its own)
def listening(port):
    with open("/proc/net/tcp") as f:
        return any(parts[1].endswith(f":{port:04X}") and parts[3] == "0A"
                   for parts in (line.split() for line in list(f)[1:]))


deadline = time.monotonic() + 15
for port in (args["v2"], args["v1"]):
    while not listening(port):
        if time.monotonic() > deadline:
            sys.exit(f"HAProxy does not listen on 127.0.0.1:{port}")
        time.sleep(0.1)
out["v2"] = through_haproxy(args["v2"], "127.0.0.5", deliver=True)
out["v1"] = through_haproxy(args["v1"], "127.0.0.6", deliver=False)
out["garbage"] = direct(b"EHLO not.a.proxy\r\n")
start = time.monotonic()
out["silent"] = direct(b"")
out["silent_s"] = time.monotonic() - start
out["bytewise"] = direct(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 25\r\n",
                         pieces=40, pause=0.01,
                         then=(b"EHLO c.example\r\n", b"MAIL FROM:<a@b.example>\r\n",
                               b"RCPT TO:<x@elsewhere.example>\r\n", b"QUIT\r\n"))
# v2 LOCAL (a health check): the connection's own endpoints; the greeting follows
local = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + (0).to_bytes(2, "big"))
out["local"] = direct(local, then=(b"QUIT\r\n",))
print(json.dumps(out))
