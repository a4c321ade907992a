"""Hostile TLS clients on one transport (argv: mxgate binary, kernel|dpdk).

A gateway with three services (master.cf): "may" (STARTTLS offered, an ECDSA and an RSA
certificate made here with openssl), "smtps" (smtpd_tls_wrappermode) and "lax" (may with
smtpd_forbid_unauth_pipelining = no, where commands pipelined behind STARTTLS reach the
STARTTLS code), all with smtpd_starttls_timeout = 2s. Checked:
  a. 10,000 half-open handshakes, at most 1,000 at once (mxgate_max_connections is 1,500
     per worker; the client's descriptors bound it too): a quarter each send STARTTLS and
     stall, send STARTTLS and half a ClientHello and stall, connect to the wrappermode
     service and send nothing, or send half a ClientHello there; each is dropped after
     0.2 s, half with a FIN, half with a RST. Then the gateway is back near its baseline:
     no open connection within 10 s, the same descriptors, RSS within 24 MB of what it was
     after a warm-up round of the same attack; every connection is counted as closed,
     none as established; the next client gets TLS and delivers a message.
  b. 200 handshakes that stall past smtpd_starttls_timeout = 2s (half after STARTTLS and
     a partial ClientHello, half on the wrappermode service with a partial ClientHello)
     are all closed by the gateway, each 1.5 to 8 s after it started, and counted in
     connections_timed_out. (Before 2dd629a both transports let the STARTTLS half run to
     smtpd_timeout: a deadline that moved earlier kept its later place in the timer heap
     or wheel.)
  c. (extends test_tls.py's cases 5 and 6, which send one garbage record after STARTTLS
     and MAIL/RCPT pipelined in the same packet as STARTTLS) garbage of five kinds
     instead of a ClientHello, on both services: a TLS record header announcing a record
     longer than TLS allows, an SSLv2-style hello, an HTTP request, random bytes, and a
     ClientHello whose body is corrupted: each is closed within 1.5 s (well before the
     timeout) and counted in tls_failed. Then four injections on "lax", 50
     times each and concurrently: MAIL pipelined behind STARTTLS with a ClientHello in
     the same packet (the ClientHello is thrown away with it: the handshake stalls and is
     cut by the timeout), MAIL sent in a second write before the 220 is read, lower-case
     "starttls" with bare LFs, and MAIL behind STARTTLS followed by a real handshake and
     RCPT over TLS (must get "503 ... need MAIL"): the injected sender never appears in
     the log, and no message or recipient is accepted.
The clients run in a subprocess of this file (--client): on the dpdk transport the gateway
runs in a network namespace on net_af_packet (netns.py, needs root) and the clients in the
client namespace (Debian's python3). Under AddressSanitizer the quarantine is made small,
so that RSS means what it means in a release build; LeakSanitizer checks the exit.
"""

import asyncio
import json
import os
import random
import resource
import socket
import ssl
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HALF_OPEN = int(os.environ.get("MXGATE_TLS_HOSTILE_N", "10000"))
CONCURRENCY = 1000


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args)} failed:\n{r.stdout}{r.stderr}")


def make_certs(d):
    rsa = (os.path.join(d, "rsa.crt"), os.path.join(d, "rsa.key"))
    ec = (os.path.join(d, "ec.crt"), os.path.join(d, "ec.key"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", rsa[1], "-out",
            rsa[0], "-days", "2", "-subj", "/CN=mx.test.example")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ec[1])
    openssl("req", "-x509", "-new", "-key", ec[1], "-out", ec[0], "-days", "2",
            "-subj", "/CN=mx.test.example")
    for key in (rsa[1], ec[1]):
        mxtest.mail_owner_may_read(key)  # reloads read them as mail_owner
    return rsa, ec


def client_hello():
    """A real TLS ClientHello (the bytes Python's OpenSSL sends first)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="mx.test.example")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()


HELLO = client_hello()
PARTIAL = HELLO[:len(HELLO) // 2]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def read_reply(reader, timeout=10):
    """One SMTP reply, all its lines; "" on EOF."""
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            return "\n".join(lines)
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if len(line) < 4 or line[3:4] != b"-":
            return "\n".join(lines)


async def to_starttls(reader, writer):
    """Greeting, EHLO, STARTTLS; the 220 reply."""
    await read_reply(reader)
    writer.write(b"EHLO hostile.test.example\r\n")
    await read_reply(reader)
    writer.write(b"STARTTLS\r\n")
    return await read_reply(reader)


def drop(writer, rst):
    if rst:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


async def closed_in(reader, limit):
    """Seconds until the server closes (EOF or reset), or None after `limit`."""
    t0 = time.monotonic()
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), limit - (time.monotonic() - t0))
            if not data:
                break
    except (ConnectionError, OSError):
        pass
    except asyncio.TimeoutError:
        return None
    return time.monotonic() - t0


class Attack:
    """The clients; run by client_main() (in the client namespace on dpdk)."""

    def __init__(self, host, ports):
        self.host = host
        self.ports = ports
        self.errors = []

    async def half_open(self, i, hold):
        kind = i % 4
        port = self.ports["may"] if kind < 2 else self.ports["smtps"]
        try:
            reader, writer = await asyncio.open_connection(self.host, port)
        except OSError as e:
            self.errors.append(f"connect: {e}")
            return
        try:
            if kind < 2:
                r = await to_starttls(reader, writer)
                if not r.startswith("220 2.0.0"):
                    self.errors.append(f"STARTTLS got {r!r}")
            if kind in (1, 3):
                writer.write(PARTIAL)
            await asyncio.sleep(hold)
        except (OSError, asyncio.TimeoutError) as e:
            self.errors.append(f"{kind}: {e!r}")
        drop(writer, rst=i % 2 == 1)

    async def run_half_open(self, n, hold=0.2):
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i):
            async with sem:
                await self.half_open(i, hold)
        await asyncio.gather(*(one(i) for i in range(n)))

    async def stall(self, i):
        """A handshake that stalls after a partial ClientHello: seconds until closed."""
        wrapper = i % 2 == 1
        reader, writer = await asyncio.open_connection(
            self.host, self.ports["smtps" if wrapper else "may"])
        t0 = time.monotonic()
        if not wrapper:
            await to_starttls(reader, writer)
            t0 = time.monotonic()
        writer.write(PARTIAL)
        s = await closed_in(reader, 15)
        writer.close()
        return None if s is None else time.monotonic() - t0

    async def garbage(self, kind, port):
        reader, writer = await asyncio.open_connection(self.host, self.ports[port])
        if port != "smtps":
            await to_starttls(reader, writer)
        if kind == "oversize-record":
            data = b"\x16\x03\x01\xff\xff" + b"\x01" * 64
        elif kind == "sslv2":
            # an SSLv2-compatible CLIENT-HELLO: 3 cipher specs, no session id, a
            # 16-byte challenge (RFC 6101 appendix E.2); OpenSSL 3 refuses it
            body = (b"\x01\x03\x01" + struct.pack(">HHH", 9, 0, 16) +
                    bytes.fromhex("0700c0030080010080") + os.urandom(16))
            data = struct.pack(">H", 0x8000 | len(body)) + body
        elif kind == "http":
            data = b"GET / HTTP/1.1\r\nHost: mx.test.example\r\n\r\n"
        elif kind == "random":
            data = random.Random(7).randbytes(1024)
        else:  # a ClientHello whose handshake body is scrambled after its headers
            b = bytearray(HELLO)
            for j in range(9, len(b)):
                b[j] ^= 0x5A
            data = bytes(b)
        writer.write(data)
        s = await closed_in(reader, 8)
        writer.close()
        return s

    async def inject(self, variant):
        """An injection on "lax": the server's reply to what follows, if anything."""
        reader, writer = await asyncio.open_connection(self.host, self.ports["lax"])
        await read_reply(reader)
        writer.write(b"EHLO hostile.test.example\r\n")
        await read_reply(reader)
        evil = b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<bob@localhost>\r\n"
        if variant == "hello-behind":
            writer.write(b"STARTTLS\r\n" + evil + HELLO)
            r = await read_reply(reader)
            s = await closed_in(reader, 10)
            writer.close()
            return r, s
        if variant == "second-write":
            writer.write(b"STARTTLS\r\n")
            await writer.drain()
            writer.write(evil)
            r = await read_reply(reader)
            s = await closed_in(reader, 10)
            writer.close()
            return r, s
        if variant == "bare-lf":
            writer.write(b"starttls\n" + evil.replace(b"\r\n", b"\n"))
            r = await read_reply(reader)
            s = await closed_in(reader, 10)
            writer.close()
            return r, s
        # then-tls: MAIL behind STARTTLS, then a real handshake and RCPT over TLS
        writer.write(b"STARTTLS\r\n" + evil)
        r = await read_reply(reader)
        if not r.startswith("220"):
            writer.close()
            return r, None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        await writer.start_tls(ctx, server_hostname="mx.test.example")
        writer.write(b"EHLO hostile.test.example\r\n")
        await read_reply(reader)
        writer.write(b"RCPT TO:<bob@localhost>\r\n")
        rcpt = await read_reply(reader)
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
        writer.close()
        return r, rcpt


async def normal_tls_message(host, port):
    """EHLO, STARTTLS, EHLO, one message, QUIT over TLS: the reply to the final dot."""
    reader, writer = await asyncio.open_connection(host, port)
    r = await to_starttls(reader, writer)
    if not r.startswith("220"):
        return f"STARTTLS: {r}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    await writer.start_tls(ctx, server_hostname="mx.test.example")
    out = None
    for cmd in (b"EHLO ok.test.example", b"MAIL FROM:<alice@sender.example>",
                b"RCPT TO:<bob@localhost>", b"DATA",
                b"Subject: after the attack\r\n\r\nstill serving\r\n.", b"QUIT"):
        writer.write(cmd + b"\r\n")
        out = await read_reply(reader) if cmd != b"QUIT" else out
        if cmd.endswith(b"."):
            break
    writer.close()
    return out


def client_main(host, ports, phase, n):
    """The client side of one phase (python3 test_tls_hostile.py --client HOST PORTS PHASE
    N): prints one JSON object."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    att = Attack(host, ports)
    out = {}
    if phase == "normal":
        out["dot"] = asyncio.run(normal_tls_message(host, ports["may"]))
    elif phase == "half-open":
        t0 = time.monotonic()
        asyncio.run(att.run_half_open(n))
        out = {"seconds": time.monotonic() - t0, "errors": att.errors[:5],
               "nerrors": len(att.errors)}
    elif phase == "stall":
        async def stalls():
            return await asyncio.gather(*(att.stall(i) for i in range(n)))
        out["times"] = asyncio.run(stalls())
    elif phase == "garbage":
        async def garbages():
            return await asyncio.gather(*(att.garbage(k, p) for k in GARBAGE
                                          for p in ("may", "smtps") for _ in range(n)))
        out["times"] = asyncio.run(garbages())
    elif phase == "inject":
        async def injections():
            return await asyncio.gather(*(att.inject(v) for v in INJECTIONS
                                          for _ in range(n)))
        out["results"] = asyncio.run(injections())
    print(json.dumps(out))


GARBAGE = ("oversize-record", "sslv2", "http", "random", "corrupt-hello")
INJECTIONS = ("hello-behind", "second-write", "bare-lf", "then-tls")


class Target:
    """A gateway with the three services, of the chosen transport, and its client."""

    def __init__(self, binary, transport, extra):
        self.topo = None
        if transport == "dpdk":
            import netns
            netns.need_netns_tools()
            mxtest.need_tool(netns.SYS_PYTHON)
            self.topo = netns.Topology(prefix=f"mxth{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, extra_config=extra, workers=2)
            self.python = netns.SYS_PYTHON
            self.ports = {"may": 25, "smtps": 465, "lax": 2526}
            names = {k: str(v) for k, v in self.ports.items()}
        else:
            self.gw = mxtest.Gateway(binary, extra_config=extra, workers=2)
            self.python = sys.executable
            self.ports = {"may": self.gw.port}
            for name in ("smtps", "lax"):
                q = mxtest.free_port()
                while q in self.ports.values():
                    q = mxtest.free_port()
                self.ports[name] = q
            names = {k: f"127.0.0.1:{v}" for k, v in self.ports.items()}
        rsa, ec = make_certs(self.gw.dir)
        master = os.path.join(self.gw.dir, "master.cf")
        with open(master, "w") as f:
            f.write(f"{names['may']} inet n - y - - smtpd\n"
                    f"{names['smtps']} inet n - y - - smtpd\n"
                    "  -o smtpd_tls_wrappermode=yes\n"
                    f"{names['lax']} inet n - y - - smtpd\n"
                    "  -o smtpd_forbid_unauth_pipelining=no\n")
        with open(self.gw.config_path, "a") as f:
            f.write(f"mxgate_master_file = {master}\n"
                    "smtpd_tls_security_level = may\n"
                    f"smtpd_tls_cert_file = {rsa[0]}\nsmtpd_tls_key_file = {rsa[1]}\n"
                    f"smtpd_tls_eccert_file = {ec[0]}\nsmtpd_tls_eckey_file = {ec[1]}\n")

    def client(self, phase, n=0, timeout=240):
        argv = [self.python, os.path.abspath(__file__), "--client", self.gw.host,
                json.dumps(self.ports), phase, str(n)]
        if self.topo:
            argv = self.topo._ns(self.topo.cl_ns, argv)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 or not r.stdout.strip():
            fail(f"client {phase} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n"
                 f"{self.gw.output()}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def close(self):
        if self.topo:
            self.topo.destroy()


def main(binary, transport):
    # Under AddressSanitizer freed memory waits in a quarantine (256 MB by default) before
    # it is reused, so RSS would grow by the attack's churn whatever the gateway frees; a
    # small quarantine lets the RSS check mean the same as in a release build (and
    # LeakSanitizer at the gateway's exit, which must be clean, finds what is never freed)
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, (
        os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=4",
        "thread_local_quarantine_size_kb=64")))
    extra = ("mxgate_max_connections = 1500\n"
             "smtpd_timeout = 10s\n"
             "smtpd_starttls_timeout = 2s\n")
    t = Target(binary, transport, extra)
    try:
        run(t)
    finally:
        t.close()
    print(f"test_tls_hostile ({transport}): all passed")


def normal(t, when):
    dot = t.client("normal")["dot"]
    if not dot.startswith("250 2.0.0 Ok: queued as"):
        fail(f"a normal STARTTLS message {when}: {dot!r}\n{t.gw.output()}")


def run(t):
    t_start = time.monotonic()
    with t.gw as gw:
        pid = gw.proc.pid
        normal(t, "before the attack")

        # a. half-open handshakes: a warm-up round sets the memory baseline
        t.client("half-open", min(2000, HALF_OPEN))
        gw.wait_stat(lambda s: s["open_connections"] == 0, 20, "warm-up connections gone")
        base_fds, base_rss = gw.fds(), rss_kb(pid)
        st0 = gw.stats()
        r = t.client("half-open", HALF_OPEN)
        secs = r["seconds"]
        if r["nerrors"]:
            fail(f"{r['nerrors']} half-open connections went wrong, e.g. {r['errors']}\n"
                 f"{gw.output()}")
        st = gw.wait_stat(lambda s: s["open_connections"] == 0, 10,
                          f"open connections back to 0 after {HALF_OPEN} half-open handshakes")
        deadline = time.monotonic() + 10
        while gw.fds() != base_fds and time.monotonic() < deadline:
            time.sleep(0.1)
        if gw.fds() != base_fds:
            fail(f"descriptors: {gw.fds()} after the attack, {base_fds} before")
        rss = rss_kb(pid)
        if rss > base_rss + 24 * 1024:
            fail(f"RSS {rss} kB after {HALF_OPEN} half-open handshakes, {base_rss} kB "
                 "after the warm-up")
        closed = st["connections_closed"] - st0["connections_closed"]
        accepted = st["connections_accepted"] - st0["connections_accepted"]
        if accepted != HALF_OPEN or closed < HALF_OPEN:
            fail(f"counted {accepted} accepted and {closed} closed of {HALF_OPEN}: {st}")
        if st["tls_established"] != st0["tls_established"]:
            fail(f"half-open handshakes counted as established: {st}")
        normal(t, "after the half-open handshakes")
        print(f"ok a: {HALF_OPEN} half-open handshakes in {secs:.1f} s ({HALF_OPEN / secs:.0f}/s);"
              f" back to 0 connections, {base_fds} descriptors, RSS {rss} kB "
              f"(baseline {base_rss} kB); tls_failed +{st['tls_failed'] - st0['tls_failed']}")

        # b. stalled handshakes are cut by smtpd_starttls_timeout = 2s
        st0 = gw.stats()
        times = t.client("stall", 200)["times"]
        late = [x for x in times if x is None or not 1.5 <= x <= 8]
        if late:
            fail(f"{len(late)} of 200 stalled handshakes not closed 1.5-8 s after they "
                 f"began: {sorted(times, key=lambda x: x or 99)[-5:]}")
        st = gw.wait_stat(lambda s: s["open_connections"] == 0, 10, "stalled ones gone")
        timed = st["connections_timed_out"] - st0["connections_timed_out"]
        if timed < 200:
            fail(f"only {timed} of 200 stalled handshakes counted as timed out: {st}")
        print(f"ok b: 200 stalled handshakes closed {min(times):.1f}-{max(times):.1f} s after "
              f"they began (smtpd_starttls_timeout = 2s); connections_timed_out +{timed}")

        # c. garbage instead of a ClientHello, on both services
        st0 = gw.stats()
        times = t.client("garbage", 20)["times"]
        labels = [f"{k} on {p}" for k in GARBAGE for p in ("may", "smtps") for _ in range(20)]
        slow = sorted({lab for lab, x in zip(labels, times) if x is None or x > 1.5})
        if slow:
            fail(f"garbage handshakes not closed within 1.5 s: {slow}")
        st = gw.wait_stat(lambda s: s["open_connections"] == 0, 10, "garbage ones gone")
        failed = st["tls_failed"] - st0["tls_failed"]
        if failed < len(times):
            fail(f"only {failed} of {len(times)} garbage handshakes counted in tls_failed")
        print(f"ok c: {len(times)} garbage ClientHellos of {len(GARBAGE)} kinds closed within "
              f"{max(times):.2f} s; tls_failed +{failed}")

        st0 = gw.stats()
        res = t.client("inject", 50)["results"]
        for v, (r, after) in zip([v for v in INJECTIONS for _ in range(50)], res):
            if v == "then-tls":
                if not r.startswith("220") or not (after or "").startswith("503 5.5.1"):
                    fail(f"injection then TLS: STARTTLS {r!r}, RCPT over TLS {after!r}")
            elif after is None:
                fail(f"injection {v}: the connection was not closed ({r!r})")
        if "evil@attacker.example" in gw.log():
            fail("an injected MAIL FROM reached the log")
        st = gw.wait_stat(lambda s: s["open_connections"] == 0, 15, "injections gone")
        for k in ("messages_accepted", "recipients_accepted"):
            if st[k] != st0[k]:
                fail(f"{k} moved during the injections: {st0[k]} -> {st[k]}")
        normal(t, "at the end")
        print(f"ok c: 4 injections x 50 never executed the injected MAIL; "
              f"{time.monotonic() - t_start:.0f} s in all")


if len(sys.argv) > 1 and sys.argv[1] == "--client":
    client_main(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
else:
    sys.path.insert(0, HERE)
    import mxtest
    from mxtest import fail
    mxtest.need_tool("openssl")
    main(mxtest.binary_from_argv(), sys.argv[2] if len(sys.argv) > 2 else "kernel")
