"""A deliberately broken SMTP responder for mxgate-loadgen's verification tests
(test_loadgen_peers.py): standard library only, run as `python3 broken_smtp.py HOST PORT
MODE` (in a namespace). It prints "ready" once listening and serves until killed.

Modes (everything else is a plain, correct server: 220, EHLO with PIPELINING, 250, 354,
250, 221):
  rcpt250    250 to every RCPT, also to addresses starting "bad" (which must be refused)
  data250    250 instead of 354 to DATA (RFC 5321 4.3.2: DATA's intermediate reply is 354)
  garbage    a line that is no reply ("hello there") to EHLO
  dot451     451 to every end of data
  greet554   554 as the greeting
  close      closes the connection on MAIL, without a reply
  quit250    250 instead of 221 to QUIT
"""

import socket
import sys
import threading


def serve(conn, mode):
    f = conn.makefile("rb")

    def send(line):
        conn.sendall(line.encode() + b"\r\n")

    try:
        send("554 go away" if mode == "greet554" else "220 broken.example ESMTP")
        in_data = False
        while True:
            line = f.readline()
            if not line:
                return
            if in_data:
                if line in (b".\r\n", b".\n"):
                    in_data = False
                    send("451 4.3.0 try later" if mode == "dot451" else "250 2.0.0 Ok: queued")
                continue
            cmd = line.strip().upper()
            if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"):
                if mode == "garbage":
                    send("hello there")
                else:
                    send("250-broken.example")
                    send("250 PIPELINING")
            elif cmd.startswith(b"MAIL"):
                if mode == "close":
                    return
                send("250 2.1.0 Ok")
            elif cmd.startswith(b"RCPT"):
                bad = line.strip()[8:].lstrip(b"<").lower().startswith(b"bad")
                if bad and mode != "rcpt250":
                    send("550 5.1.1 no such user")
                else:
                    send("250 2.1.5 Ok")
            elif cmd == b"DATA":
                if mode == "data250":
                    send("250 2.0.0 Ok")
                else:
                    send("354 go ahead")
                    in_data = True
            elif cmd == b"QUIT":
                send("250 bye" if mode == "quit250" else "221 2.0.0 Bye")
                return
            elif cmd == b"RSET" or cmd == b"NOOP":
                send("250 2.0.0 Ok")
            else:
                send("502 5.5.2 unknown command")
    except OSError:
        pass
    finally:
        conn.close()


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve, args=(conn, mode), daemon=True).start()


if __name__ == "__main__":
    main()
