"""TLS clients for test_tls.py, run on the host (kernel transport) or in the client network
namespace (dpdk transport): python3 tls_client.py ACTION HOST PORT. Each prints one JSON
object on stdout. Python 3 standard library only (Debian's python3 in the namespace).

  starttls   smtplib: EHLO, STARTTLS, EHLO, a message; {"queued": ..., "ehlo": [...]}
  smtps      smtplib.SMTP_SSL (implicit TLS, a wrappermode service): a message
  inject     STARTTLS with MAIL and RCPT pipelined behind it in the same packet, then TLS:
             what the server says to a RCPT over TLS (the injected MAIL must be gone)
  encrypt    MAIL before STARTTLS (530 expected), then STARTTLS and MAIL over TLS
  garbage    STARTTLS, then bytes that are no TLS record: whether the server closes
  plaintext  plain SMTP to a wrappermode service: whether the server closes
  silent     connect to a wrappermode service and send nothing: seconds until it closes
"""

import json
import os
import smtplib
import socket
import ssl
import sys
import time


def context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def reply(f):
    """One SMTP reply (all its lines) from a file object: (code, text)."""
    lines = []
    while True:
        line = f.readline()
        if not line:
            return 0, "\n".join(lines) + "[EOF]"
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3] or b"0"), "\n".join(lines)


def closed_within(sock, seconds):
    """True when the peer closes (EOF or reset) within seconds; bytes it sends are read."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        return not isinstance(e, socket.timeout)
    return False


MESSAGE = ("From: alice@sender.example\r\nTo: bob@localhost\r\n"
           "Subject: e2e tls {}\r\n\r\nhello over TLS\r\n")


def main():
    action, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = {}
    if action == "starttls":
        with smtplib.SMTP(host, port, timeout=30) as s:
            s.ehlo("client.test.example")
            out["ehlo_before"] = sorted(s.esmtp_features)
            code, msg = s.starttls(context=context())
            out["starttls"] = [code, msg.decode()]
            s.ehlo("client.test.example")
            out["ehlo_after"] = sorted(s.esmtp_features)
            out["cipher"] = list(s.sock.cipher())
            r = s.sendmail("alice@sender.example", ["bob@localhost"],
                           MESSAGE.format("starttls"))
            out["refused"] = r
            out["queued"] = True
    elif action == "smtps":
        with smtplib.SMTP_SSL(host, port, timeout=30, context=context()) as s:
            s.ehlo("client.test.example")
            out["ehlo"] = sorted(s.esmtp_features)
            out["version"] = s.sock.version()
            s.sendmail("alice@sender.example", ["bob@localhost"], MESSAGE.format("smtps"))
            out["queued"] = True
    elif action in ("inject", "inject-strict"):
        sock = socket.create_connection((host, port), timeout=30)
        f = sock.makefile("rb")
        out["greeting"] = reply(f)
        sock.sendall(b"EHLO client.test.example\r\n")
        out["ehlo"] = reply(f)
        # one send: the server has these bytes buffered behind STARTTLS
        sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n"
                     b"RCPT TO:<bob@localhost>\r\n")
        out["starttls"] = reply(f)
        if out["starttls"][0] == 220:
            t = context().wrap_socket(sock, server_hostname="mx.test.example")
            tf = t.makefile("rb")
            t.sendall(b"EHLO client.test.example\r\n")
            out["ehlo_tls"] = reply(tf)
            t.sendall(b"RCPT TO:<bob@localhost>\r\n")
            out["rcpt_tls"] = reply(tf)
            t.sendall(b"QUIT\r\n")
            out["quit"] = reply(tf)
        else:
            out["closed"] = closed_within(sock, 10)
    elif action == "encrypt":
        sock = socket.create_connection((host, port), timeout=30)
        f = sock.makefile("rb")
        out["greeting"] = reply(f)
        sock.sendall(b"EHLO client.test.example\r\n")
        out["ehlo"] = reply(f)
        sock.sendall(b"MAIL FROM:<alice@sender.example>\r\n")
        out["mail_plain"] = reply(f)
        sock.sendall(b"RCPT TO:<bob@localhost>\r\n")
        out["rcpt_plain"] = reply(f)
        sock.sendall(b"STARTTLS\r\n")
        out["starttls"] = reply(f)
        t = context().wrap_socket(sock, server_hostname="mx.test.example")
        tf = t.makefile("rb")
        t.sendall(b"EHLO client.test.example\r\n")
        out["ehlo_tls"] = reply(tf)
        t.sendall(b"MAIL FROM:<alice@sender.example>\r\n")
        out["mail_tls"] = reply(tf)
        t.sendall(b"QUIT\r\n")
        out["quit"] = reply(tf)
    elif action == "garbage":
        sock = socket.create_connection((host, port), timeout=30)
        f = sock.makefile("rb")
        out["greeting"] = reply(f)
        sock.sendall(b"EHLO client.test.example\r\n")
        out["ehlo"] = reply(f)
        sock.sendall(b"STARTTLS\r\n")
        out["starttls"] = reply(f)
        # a TLS record header with a nonsense body, then random bytes
        junk = b"\x16\x03\x01\x00\x40" + os.urandom(64) + os.urandom(300)
        sock.sendall(junk)
        out["closed"] = closed_within(sock, 10)
    elif action == "garbage-after":
        # a real TLS session, then a record whose bytes were changed on the way
        sock = socket.create_connection((host, port), timeout=30)
        f = sock.makefile("rb")
        out["greeting"] = reply(f)
        sock.sendall(b"EHLO client.test.example\r\n")
        reply(f)
        sock.sendall(b"STARTTLS\r\n")
        out["starttls"] = reply(f)
        inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context().wrap_bio(inb, outb, server_hostname="mx.test.example")
        sock.settimeout(10)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outb.pending:
                    sock.sendall(outb.read())
                data = sock.recv(65536)
                if not data:
                    break
                inb.write(data)
        if outb.pending:
            sock.sendall(outb.read())
        obj.write(b"EHLO client.test.example\r\n")
        rec = bytearray(outb.read())
        rec[-3] ^= 0x55
        sock.sendall(bytes(rec))
        out["closed"] = closed_within(sock, 10)
    elif action == "plaintext":
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(b"EHLO client.test.example\r\n")
        out["closed"] = closed_within(sock, 10)
    elif action == "silent":
        sock = socket.create_connection((host, port), timeout=30)
        start = time.monotonic()
        out["closed"] = closed_within(sock, 30)
        out["seconds"] = time.monotonic() - start
    else:
        raise SystemExit(f"unknown action {action}")
    print(json.dumps(out))


main()
