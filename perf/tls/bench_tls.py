"""TLS side by side: mxgate (kernel transport, one worker) against Debian's Postfix, both
with the same certificate and TLS settings, and both against `openssl speed` on the same
machine.

    python3 perf/tls/bench_tls.py --mxgate build-rel/dataplane/mxgate \
        [--quick] [--seconds 4] [--hold 10000] [--clients 8] \
        [--out perf/results/DATE-tls.md] [--json perf/results/DATE-tls.json]
    python3 perf/tls/bench_tls.py --from-json FILE    (print the section again)

Run as root (Postfix's private instance). Both servers listen on 127.0.0.1 (loopback: no
veth, unlike side_by_side.py; the TLS cost dwarfs the path's). Settings common to both:
smtpd_tls_security_level = may, one certificate (ECDSA P-256, then RSA-2048, made here
with openssl) as smtpd_tls_cert_file/smtpd_tls_key_file, smtpd_tls_session_cache_timeout
= 3600s and session tickets on (Postfix: its default ticket cipher, keys from tlsmgr; no
smtpd_tls_session_cache_database, so resumption is by ticket only on both), loglevel 0.
Postfix: every message is put on HOLD (durable, never delivered), no rate or count limits,
default_process_limit 400. mxgate: mxgate_workers = 1, messages to its durable spool.

The client is Python (ssl module, OpenSSL 3.0) in --clients processes (default 8), each
running sessions one after another: connect, greeting, EHLO, STARTTLS, handshake, EHLO
over TLS (this reads the TLS 1.3 ticket), QUIT. Measured, each for --seconds:
  - full handshakes/s (new session every time) and resumed handshakes/s (each client
    process offers the session of its first handshake), TLS 1.3 and TLS 1.2;
  - messages/s over STARTTLS (TLS 1.3): many messages in one TLS session per client
    process (sessions reused), one connection and a full handshake per message, one
    connection and a resumed handshake per message;
  - server CPU per session (or message): the server's CPU time (mxgate: its process;
    Postfix: master, its children and the children it reaped) over the count; and the
    server's CPU use during the run in cores, next to the client's: a server below one
    core's worth with the client near the machine's two is client-bound (said in the
    table);
  - memory per idle TLS connection: --hold connections (10,000; Postfix: --hold-postfix,
    300 by default, as each is a process of its own) brought to TLS and left idle; RSS
    delta / connections for mxgate, PSS delta (smaps_rollup: shared pages divided among
    the processes) / connections for Postfix;
  - `openssl speed` ecdsap256 and rsa2048 sign/s (one core): the signing limit a full
    handshake meets; every handshake figure is also given as a fraction of it.
"""

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mxtest  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MESSAGE = (b"From: a@sender.example\r\nTo: bob@localhost\r\nSubject: tls bench\r\n\r\n" +
           b"x" * 300 + b"\r\n.\r\n")


# ---- the machine ----

def machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cpus(seconds=1.0):
    b0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - b0) / (time.monotonic() - t0)


def wait_quiet(limit, max_wait):
    deadline = time.monotonic() + max_wait
    bg = background_cpus()
    while bg >= limit and time.monotonic() < deadline:
        bg = background_cpus()
    return bg


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17, ppid 4
    return {"ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12]),
            "cutime": int(rest[13]), "cstime": int(rest[14])}


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if proc_stat(int(d))["ppid"] == pid:
                    out.append(int(d))
            except (OSError, IndexError):
                pass
    return out


def tree_cpu(pid, reaped=True):
    """CPU seconds of pid and its live children, plus (reaped) the children it reaped."""
    s = proc_stat(pid)
    t = s["utime"] + s["stime"] + (s["cutime"] + s["cstime"] if reaped else 0)
    for c in children(pid):
        try:
            cs = proc_stat(c)
            t += cs["utime"] + cs["stime"]
        except OSError:
            pass
    return t / CLK_TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def openssl_speed(seconds):
    """ecdsap256 and rsa2048 sign/s and verify/s on one core (openssl speed -mr)."""
    r = subprocess.run(["openssl", "speed", "-mr", "-seconds", str(seconds), "ecdsap256",
                        "rsa2048"], capture_output=True, text=True, timeout=120)
    out = {}
    for line in (r.stdout + r.stderr).splitlines():
        m = re.match(r"\+F2:\d+:2048:([0-9.]+):([0-9.]+)", line)
        if m:  # -mr prints operations per second (OpenSSL 3.0)
            out["rsa2048_sign_s"] = float(m.group(1))
            out["rsa2048_verify_s"] = float(m.group(2))
        m = re.match(r"\+F4:\d+:256:([0-9.]+):([0-9.]+)", line)
        if m:
            out["ecdsap256_sign_s"] = float(m.group(1))
            out["ecdsap256_verify_s"] = float(m.group(2))
    if len(out) != 4:
        raise RuntimeError(f"openssl speed: unexpected output:\n{r.stdout}{r.stderr}")
    return out


# ---- the client ----

def client_context(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    return ctx


def reply(f):
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("server closed")
        if line[3:4] != b"-":
            return line


def session(port, ctx, sess, messages, t_end=None):
    """One connection: STARTTLS, EHLO over TLS, `messages` messages (fewer when the
    monotonic clock passes t_end), QUIT. Returns (ssl session, whether it was resumed,
    messages accepted)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    reply(f)
    s.sendall(b"EHLO client.bench.example\r\n")
    reply(f)
    s.sendall(b"STARTTLS\r\n")
    if not reply(f).startswith(b"220"):
        raise RuntimeError("STARTTLS refused")
    t = ctx.wrap_socket(s, server_hostname="mx.bench.example", session=sess)
    tf = t.makefile("rb")
    t.sendall(b"EHLO client.bench.example\r\n")
    reply(tf)
    ok = 0
    for _ in range(messages):
        if t_end is not None and time.monotonic() >= t_end:
            break
        t.sendall(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n")
        reply(tf)
        reply(tf)
        reply(tf)
        t.sendall(MESSAGE)
        ok += reply(tf).startswith(b"250")
    t.sendall(b"QUIT\r\n")
    reply(tf)
    out = (t.session, t.session_reused, ok)
    tf.close()
    f.close()
    t.close()
    return out


def client_loop(args):
    """One client process for `seconds`: mode is full, resumed, msg-conn (one session,
    messages until the time is up), msg-full or msg-resumed (a connection per message)."""
    port, version, mode, seconds = args
    ctx = client_context(version)
    sess = None
    if mode in ("resumed", "msg-resumed"):
        sess = session(port, ctx, None, 0)[0]
    n = resumed = msgs = errors = 0
    c0 = time.process_time()
    t_end = time.monotonic() + seconds
    if mode == "msg-conn":
        # a TLS session carries up to 200 messages (the handshake's cost is spread thin),
        # then the next one, until the time is up
        while time.monotonic() < t_end:
            try:
                _, _, ok = session(port, ctx, None, 200, t_end)
                msgs += ok
                n += 1
            except (OSError, RuntimeError, ConnectionError):
                errors += 1
    else:
        while time.monotonic() < t_end:
            try:
                s, r, ok = session(port, ctx, sess, 1 if mode.startswith("msg") else 0)
                n += 1
                resumed += bool(r)
                msgs += ok
            except (OSError, RuntimeError, ConnectionError):
                errors += 1
                time.sleep(0.01)
    count = msgs if mode.startswith("msg") else n
    return {"sessions": n, "resumed": resumed, "messages": msgs, "errors": errors,
            "cpu": time.process_time() - c0,
            "rate": count / (time.monotonic() - t_end + seconds)}


def run_load(server, version, mode, seconds, clients):
    cpu0, busy0, t0 = server.cpu(), machine_busy_seconds(), time.monotonic()
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        res = pool.map(client_loop, [(server.port, version, mode, seconds)] * clients)
    wall = time.monotonic() - t0
    scpu = server.cpu() - cpu0
    busy = machine_busy_seconds() - busy0
    tot = {k: sum(r[k] for r in res) for k in res[0]}
    count = tot["messages"] if mode.startswith("msg") else tot["sessions"]
    # the pool's start and the first handshake of "resumed" are inside wall: the rate is
    # the sum of the client processes' own rates over their timed loops
    return {"server": server.name, "version": version, "mode": mode, "count": count,
            "sessions": tot["sessions"], "resumed": tot["resumed"], "errors": tot["errors"],
            "rate": tot["rate"], "server_cpu_s": scpu,
            "server_cores": scpu / wall, "client_cores": tot["cpu"] / wall,
            "machine_cores": busy / wall,
            "server_us_per": scpu / count * 1e6 if count else None}


async def hold_connections(port, n, ready_path, release_path):
    """Bring n connections to TLS (EHLO over TLS done) and hold them until release_path
    exists; write how many made it to ready_path."""
    ctx = client_context("1.3")
    sem = asyncio.Semaphore(200)
    held = []

    async def one():
        async with sem:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                await r.readline()
                w.write(b"EHLO client.bench.example\r\n")
                while (await r.readline())[3:4] == b"-":
                    pass
                w.write(b"STARTTLS\r\n")
                await r.readline()
                await w.start_tls(ctx, server_hostname="mx.bench.example")
                w.write(b"EHLO client.bench.example\r\n")
                while (await asyncio.wait_for(r.readline(), 30))[3:4] == b"-":
                    pass
                held.append(w)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass
    await asyncio.gather(*(one() for _ in range(n)))
    with open(ready_path, "w") as f:
        f.write(str(len(held)))
    while not os.path.exists(release_path):
        await asyncio.sleep(0.1)
    for w in held:
        w.transport.abort()


def hold_proc(port, n, ready_path, release_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(hold_connections(port, n, ready_path, release_path))


def measure_hold(server, n, tmp):
    ready, release = os.path.join(tmp, "ready"), os.path.join(tmp, "release")
    for p in (ready, release):
        if os.path.exists(p):
            os.unlink(p)
    time.sleep(0.5)
    m0 = server.memory_kb()
    t0 = time.monotonic()
    # two holder processes: each stays well inside its own descriptor limit
    procs = [multiprocessing.get_context("fork").Process(
        target=hold_proc, args=(server.port, n // 2 + (i < n % 2), ready + str(i),
                                release)) for i in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 600
    while not all(os.path.exists(ready + str(i)) for i in range(2)):
        if time.monotonic() > deadline:
            raise RuntimeError("holders did not finish")
        time.sleep(0.2)
    secs = time.monotonic() - t0
    held = sum(int(open(ready + str(i)).read()) for i in range(2))
    time.sleep(1.0)  # idle
    m1 = server.memory_kb()
    open(release, "w").close()
    for p in procs:
        p.join(60)
    for i in range(2):
        os.unlink(ready + str(i))
    os.unlink(release)
    return {"server": server.name, "asked": n, "held": held, "setup_s": secs,
            "mem_before_kb": m0, "mem_after_kb": m1,
            "kb_per_conn": (m1 - m0) / held if held else None}


# ---- the servers ----

def make_cert(d, kind):
    key, crt = os.path.join(d, f"{kind}.key"), os.path.join(d, f"{kind}.crt")
    if kind == "rsa2048":
        cmd = [["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                "-out", crt, "-days", "2", "-subj", "/CN=mx.bench.example"]]
    else:
        cmd = [["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
               ["openssl", "req", "-x509", "-new", "-key", key, "-out", crt, "-days", "2",
                "-subj", "/CN=mx.bench.example"]]
    for c in cmd:
        subprocess.run(c, check=True, capture_output=True)
    os.chmod(key, 0o644)  # Postfix's smtpd reads it after dropping privileges
    return crt, key


def tls_lines(cert):
    return ("smtpd_tls_security_level = may\n"
            f"smtpd_tls_cert_file = {cert[0]}\nsmtpd_tls_key_file = {cert[1]}\n"
            "smtpd_tls_session_cache_timeout = 3600s\n"
            "smtpd_tls_loglevel = 0\n")


class Mxgate:
    name = "mxgate"

    def __init__(self, binary, cert, hold):
        self.gw = mxtest.Gateway(binary, workers=1, extra_config=(
            f"mxgate_max_connections = {hold + 2000}\n"
            "smtpd_timeout = 300s\n" + tls_lines(cert)))

    def __enter__(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.gw.start()
        self.port = self.gw.port
        self.pid = self.gw.proc.pid
        return self

    def cpu(self):
        return tree_cpu(self.pid, reaped=False)

    def memory_kb(self):
        return rss_kb(self.pid)

    def __exit__(self, *exc):
        self.gw.stop(check=False)
        shutil.rmtree(self.gw.dir, ignore_errors=True)


class Postfix:
    name = "postfix"

    def __init__(self, cert, hold):
        self.cert = cert
        self.limit = max(400, hold + 50)

    def __enter__(self):
        self.pf = mxtest.PostfixPeer(
            relayhost="[127.0.0.1]:9",
            extra_main_cf=("smtpd_client_restrictions = check_client_access static:HOLD\n"
                           "smtpd_peername_lookup = no\n"
                           f"default_process_limit = {self.limit}\n"
                           "smtpd_client_connection_count_limit = 0\n"
                           "smtpd_client_connection_rate_limit = 0\n"
                           "smtpd_client_message_rate_limit = 0\n"
                           "smtpd_timeout = 300s\n"
                           "in_flow_delay = 0\n" + tls_lines(self.cert)))
        with open(os.path.join(self.pf.conf, "master.cf"), "a") as f:
            f.write("tlsmgr    unix  -  -  n  1000? 1  tlsmgr\n")
        self.pf.start()
        self.port = self.pf.smtpd_port
        if not mxtest.wait_port("127.0.0.1", self.port):
            raise RuntimeError(f"postfix did not start:\n{self.pf.log()}")
        with open(os.path.join(self.pf.dir, "queue", "pid", "master.pid")) as f:
            self.pid = int(f.read().split()[0])
        return self

    def cpu(self):
        return tree_cpu(self.pid)

    def memory_kb(self):
        return pss_kb(self.pid) + sum(pss_kb(c) for c in children(self.pid))

    def __exit__(self, *exc):
        self.pf.stop()
        shutil.rmtree(self.pf.dir, ignore_errors=True)


# ---- the report ----

def fmt(x, nd=0):
    if x is None:
        return "-"
    return f"{x:,.{nd}f}"


def report(data):
    lines = []
    m = data["meta"]
    sp = data["speed"]
    lines += [f"# TLS: mxgate against Postfix and `openssl speed`", "",
              f"{m['date']}, commit {m['commit']}, {m['machine']}, {m['cpus']} CPUs, "
              f"{m['platform']}, {m['openssl']}", "",
              f"`{m['command']}`{' (quick mode)' if m['quick'] else ''}. Each load ran "
              f"{m['seconds']} s with {m['clients']} client processes (Python ssl, "
              f"sequential sessions each). Other work on the machine just before: "
              f"{m['background_cpus']:.2f} CPUs.", "",
              f"`openssl speed` on one core: ECDSA P-256 {fmt(sp['ecdsap256_sign_s'])} "
              f"sign/s ({fmt(sp['ecdsap256_verify_s'])} verify/s), RSA-2048 "
              f"{fmt(sp['rsa2048_sign_s'])} sign/s ({fmt(sp['rsa2048_verify_s'])} verify/s).",
              ""]
    lines += ["## Handshakes over STARTTLS (EHLO, STARTTLS, handshake, EHLO, QUIT)", "",
              "| certificate | TLS | kind | server | sessions/s | resumed | ratio to Postfix "
              "| server CPU us/session | ratio to Postfix | one core's worth: sessions/s "
              "| of sign/s | server cores | client cores | machine cores | errors |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["handshakes"]:
        base = next((x for x in data["handshakes"] if x["server"] == "postfix" and
                     x["cert"] == r["cert"] and x["version"] == r["version"] and
                     x["mode"] == r["mode"]), None)
        sign = sp["ecdsap256_sign_s" if r["cert"] == "ecdsa-p256" else "rsa2048_sign_s"]
        proj = 1e6 / r["server_us_per"] if r["server_us_per"] else None
        lines.append(
            f"| {r['cert']} | {r['version']} | {r['mode']} | {r['server']} | "
            f"{fmt(r['rate'])} | {r['resumed']}/{r['sessions']} | "
            f"{fmt(r['rate'] / base['rate'], 2) if base and base['rate'] else '-'} | "
            f"{fmt(r['server_us_per'])} | "
            f"{fmt(r['server_us_per'] / base['server_us_per'], 2) if base and base['server_us_per'] and r['server_us_per'] else '-'} | "
            f"{fmt(proj)} | {fmt(proj / sign, 3) if proj else '-'} | "
            f"{fmt(r['server_cores'], 2)} | {fmt(r['client_cores'], 2)} | "
            f"{fmt(r['machine_cores'], 2)} | {r['errors']} |")
    lines += ["", "## Messages over STARTTLS (TLS 1.3, one 400-byte message each)", "",
              "| certificate | shape | server | messages/s | ratio to Postfix | server CPU "
              "us/message | ratio to Postfix | server cores | client cores | machine cores "
              "| errors |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["messages"]:
        base = next((x for x in data["messages"] if x["server"] == "postfix" and
                     x["cert"] == r["cert"] and x["mode"] == r["mode"]), None)
        shape = {"msg-conn": "sessions reused (200 messages per TLS session)",
                 "msg-full": "one session per message, full handshake",
                 "msg-resumed": "one session per message, resumed"}[r["mode"]]
        lines.append(
            f"| {r['cert']} | {shape} | {r['server']} | {fmt(r['rate'])} | "
            f"{fmt(r['rate'] / base['rate'], 2) if base and base['rate'] else '-'} | "
            f"{fmt(r['server_us_per'])} | "
            f"{fmt(r['server_us_per'] / base['server_us_per'], 2) if base and base['server_us_per'] and r['server_us_per'] else '-'} | "
            f"{fmt(r['server_cores'], 2)} | "
            f"{fmt(r['client_cores'], 2)} | {fmt(r['machine_cores'], 2)} | {r['errors']} |")
    lines += ["", "## Memory per idle TLS connection (TLS 1.3, ECDSA, after EHLO over TLS)", "",
              "| server | connections held | set up in s | memory before kB | after kB | "
              "kB per connection | ratio to Postfix |", "|---|---:|---:|---:|---:|---:|---:|"]
    pf = next((x for x in data["hold"] if x["server"] == "postfix"), None)
    for r in data["hold"]:
        lines.append(
            f"| {r['server']} ({'RSS' if r['server'] == 'mxgate' else 'PSS, all processes'})"
            f" | {r['held']}/{r['asked']} | {fmt(r['setup_s'], 1)} | {fmt(r['mem_before_kb'])}"
            f" | {fmt(r['mem_after_kb'])} | {fmt(r['kb_per_conn'], 1)} | "
            f"{fmt(r['kb_per_conn'] / pf['kb_per_conn'], 3) if pf and pf['kb_per_conn'] and r['kb_per_conn'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--hold", type=int)
    ap.add_argument("--hold-postfix", type=int)
    ap.add_argument("--quiet-cpus", type=float, default=0.3)
    ap.add_argument("--quiet-wait", type=float, default=60)
    ap.add_argument("--out")
    ap.add_argument("--json")
    ap.add_argument("--from-json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print(report(json.load(f)), end="")
        return
    if os.geteuid() != 0:
        sys.exit("run as root (Postfix's private instance)")
    if not args.mxgate:
        sys.exit("--mxgate BINARY is required")
    secs = args.seconds or (1.0 if args.quick else 4.0)
    hold = args.hold or (2000 if args.quick else 10000)
    hold_pf = args.hold_postfix or (100 if args.quick else 300)
    tmp = os.environ.get("TMPDIR") or "/tmp"
    certdir = os.path.join(tmp, f"bench-tls-{os.getpid()}")
    os.makedirs(certdir)
    os.chmod(certdir, 0o755)
    certs = {"ecdsa-p256": make_cert(certdir, "ec"), "rsa2048": make_cert(certdir, "rsa2048")}
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    data = {"meta": {"date": datetime.date.today().isoformat(), "commit": commit,
                     "machine": platform.node(), "cpus": os.cpu_count(),
                     "platform": platform.platform(), "openssl": ssl.OPENSSL_VERSION,
                     "command": "python3 perf/tls/bench_tls.py " + " ".join(sys.argv[1:]),
                     "quick": args.quick, "seconds": secs, "clients": args.clients},
            "handshakes": [], "messages": [], "hold": []}
    t_start = time.monotonic()
    data["meta"]["background_cpus"] = wait_quiet(args.quiet_cpus,
                                                 5 if args.quick else args.quiet_wait)
    data["speed"] = openssl_speed(1 if args.quick else 3)
    print(f"openssl speed: {data['speed']}", file=sys.stderr)
    versions = ("1.3",) if args.quick else ("1.3", "1.2")
    for cert_name, cert in certs.items():
        for make in (lambda: Postfix(cert, hold_pf), lambda: Mxgate(args.mxgate, cert, hold)):
            with make() as srv:
                # warm up: Postfix forks its smtpd processes, tlsmgr makes its keys
                run_load(srv, "1.3", "full", 0.5, args.clients)
                for v in versions:
                    for mode in ("full", "resumed"):
                        r = run_load(srv, v, mode, secs, args.clients)
                        r["cert"] = cert_name
                        data["handshakes"].append(r)
                        print(json.dumps(r), file=sys.stderr)
                if cert_name == "ecdsa-p256" or not args.quick:
                    for mode in ("msg-conn", "msg-full", "msg-resumed"):
                        r = run_load(srv, "1.3", mode, secs, args.clients)
                        r["cert"] = cert_name
                        data["messages"].append(r)
                        print(json.dumps(r), file=sys.stderr)
                if cert_name == "ecdsa-p256":
                    r = measure_hold(srv, hold_pf if srv.name == "postfix" else hold, certdir)
                    data["hold"].append(r)
                    print(json.dumps(r), file=sys.stderr)
    shutil.rmtree(certdir, ignore_errors=True)
    data["meta"]["total_s"] = time.monotonic() - t_start
    text = report(data)
    print(text, end="")
    print(f"total {data['meta']['total_s']:.0f} s", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
