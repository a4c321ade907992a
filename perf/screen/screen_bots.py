"""The attackers of bench_screen.py: many connections from many source addresses on one
non-blocking selector loop (Python standard library only).

    python3 screen_bots.py MODE HOST PORT PREFIX ADDRESSES CONCURRENCY SECONDS [RATE]

MODE pregreet: connect, send "EHLO bot\\r\\n" at once (before the greeting), read to EOF.
MODE dnsbl:    connect, say nothing, read to EOF (the screen's verdict comes after the greet
               wait).
Source addresses PREFIX.x.y (PREFIX e.g. "127.1"), the first ADDRESSES of them in turn;
CONCURRENCY connections open at once; new connections are opened for SECONDS seconds (or
until SIGTERM), at most RATE new connections a second when RATE is given and not 0,
then the open ones are waited for (at most 15 s). Prints one JSON line:
connections, rejected (the connection ended with a 521 reply: "521 5.5.1" for a pregreet,
"521 5.7.1" for a DNSBL listing), other (ended otherwise: the code of the last reply or
"eof"), errors (refused, or still open 15 s after the end: then closed), elapsed s (first connect
to last close), last_reject s (first connect to the last 521), the client's own CPU s."""

import errno
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time


def main():
    mode, host, port, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    naddr, conc, seconds = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
    rate = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    want = "521 5.5.1" if mode == "pregreet" else "521 5.7.1"
    addrs = [f"{prefix}.{i // 250}.{i % 250 + 1}" for i in range(naddr)]
    sel = selectors.DefaultSelector()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    st = {"connections": 0, "rejected": 0, "other": {}, "errors": 0, "last_reject": 0.0}
    nxt = [0]
    t0 = time.monotonic()
    end = t0 + seconds

    busy = set()
    # a bot never opens a second connection while its first is open: postscreen
    # handles a client's concurrent connections differently (it skips its cache and
    # tests only what the first connection has not decided), which would not be the
    # attack measured
    assert conc < naddr, "CONCURRENCY must be below ADDRESSES"

    def open_one():
        while True:
            a = addrs[nxt[0] % naddr]
            nxt[0] += 1
            if a not in busy:
                break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((a, 0))
            e = s.connect_ex((host, port))
        except OSError:
            s.close()
            st["errors"] += 1
            return
        if e not in (0, errno.EINPROGRESS):
            s.close()
            st["errors"] += 1
            return
        st["connections"] += 1
        busy.add(a)
        sel.register(s, selectors.EVENT_WRITE, [b"", a, False])

    def finish(s, data, err=False):
        busy.discard(data[1])
        sel.unregister(s)
        s.close()
        if err:
            st["errors"] += 1
            return
        text = data[0].decode("ascii", "replace")
        if want in text:
            st["rejected"] += 1
            st["last_reject"] = time.monotonic() - t0
        else:
            lines = [x for x in text.split("\r\n") if x]
            k = lines[-1][:3] if lines else "eof"
            st["other"][k] = st["other"].get(k, 0) + 1

    while True:
        now = time.monotonic()
        if stop[0] and end > now:
            end = now  # SIGTERM: no new connections, the open ones get 15 s
        active = len(sel.get_map())
        if not stop[0] and now < end:
            while active < conc and (not rate or st["connections"] < (now - t0) * rate):
                open_one()
                active += 1
        elif active == 0 or now > end + 15:
            break
        for key, ev in sel.select(0.005 if rate else 0.05):
            s, data = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE and not data[2]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    finish(s, data, err=True)
                    continue
                data[2] = True
                if mode == "pregreet":
                    try:
                        s.send(b"EHLO bot.example\r\n")
                    except OSError:
                        pass
                sel.modify(s, selectors.EVENT_READ, data)
                continue
            try:
                b = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if b:
                data[0] += b
            else:
                finish(s, data)
        if now > end + 15:
            break
    for key in list(sel.get_map().values()):
        key.fileobj.close()
        st["errors"] += 1
    st["elapsed"] = round(time.monotonic() - t0, 3)
    st["last_reject"] = round(st["last_reject"], 3)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    st["cpu"] = round(ru.ru_utime + ru.ru_stime, 3)
    print(json.dumps(st), flush=True)


main()
