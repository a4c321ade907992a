"""Shared pieces of mxgate's end-to-end tests: start the real binary with a private config
and spool, talk to it with real clients, read what it spooled and logged, and run a private
Debian Postfix instance as a peer. Python 3 standard library only.

Tests import this module. They exit 1 on the first failed expectation, printing what was
expected and what was seen, and also when a tool they need is missing: need_tool() names the
Debian package to install (tests/tool_packages.py holds the table; deploy/install-deps.sh
installs every package in it). They exit 77 (meson's "skipped") only for what no package
gives: need_root() when not root, and a kernel that refuses what the test needs.
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tool_packages  # noqa: E402  (tests/tool_packages.py)

SKIP = 77


def skip(why):
    """Exit 77 for a reason no package can fix (never for a missing tool: need_tool)."""
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def fail(why):
    print(f"FAIL: {why}")
    sys.exit(1)


def need_tool(tool):
    """The path of `tool` (a tests/tool_packages.py TOOLS entry: a program name or an
    absolute path); when it is missing the test fails, naming the Debian package."""
    return tool_packages.need_tool(tool)


def need_python_module(module, python="/usr/bin/python3"):
    """Fail, naming the Debian package (python3-scapy...), unless `python` imports
    `module` (a tests/tool_packages.py PYTHON_MODULES entry)."""
    tool_packages.need_python_module(module, python)


def need_postfix_pcre():
    """Fail, naming postfix-pcre, unless Postfix can open pcre: tables."""
    tool_packages.need_postfix_pcre()


def need_root(what="this test"):
    """Skip (77) unless root: namespaces, Postfix instances and DPDK need it, and no
    package gives it. Check tools first (need_tool), so that a missing package fails even
    for a user who is not root."""
    if os.geteuid() != 0:
        skip(f"{what} needs root (running as uid {os.geteuid()}); not a missing package")


def free_port():
    """A TCP port nobody listens on now (bound and released; the race is acceptable in
    a test run that owns the machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free TCP ports: each is held until all are chosen, so that two of them
    cannot be the same port released and handed out again (free_port() called n times
    can return one port twice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# A PROXY protocol v2 LOCAL header (a load balancer's health check): a service that reads
# the PROXY protocol first then greets as for a direct connection.
PROXY_V2_LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


def wait_port(host, port, timeout=15.0, proc=None, proxy=False):
    """Wait until host:port greets (proxy: after a PROXY v2 LOCAL header, without which
    such a service only closes after smtpd_upstream_proxy_timeout); False when it did not
    within timeout, or proc ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                if proxy:
                    s.sendall(PROXY_V2_LOCAL)
                s.settimeout(2)
                s.recv(512)  # the greeting; connecting alone proves little
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _spool_unescape(value):
    """Envelope values escape control bytes and '%' as %XX
    (dataplane/spool/spool_envelope.h)."""
    raw = value.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i:i + 1] == b"%" and i + 2 < len(raw):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def parse_envelope(text, size):
    """Envelope text (dataplane/spool/spool_envelope.h) as a dict with lists for the
    repeatable keys; `size` is the message length the spool recorded."""
    lines = text.decode("utf-8", "surrogateescape").rstrip("\n").split("\n")
    if lines[0] != "MXGATE-ENVELOPE 1":
        fail(f"bad envelope magic line {lines[0]!r}")
    env = {"_lines": lines, "rcpt": [], "mail_param": [], "rcpt_param": []}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        value = _spool_unescape(value)
        if key == "recipient":
            env["rcpt"].append(value)
        elif key == "mail-parameter":
            env["mail_param"].append(value)
        elif key == "recipient-parameter":
            env["rcpt_param"].append((len(env["rcpt"]) - 1, value))
        else:
            env[key] = value
    env["client"] = env.get("client-address", "")
    env["size"] = str(size)
    return env


def parse_spoolcat(out):
    """The output of `mxgate-spoolcat -x SPOOL`: list of (queue_id, envelope, message)."""
    msgs = []
    pos = 0
    while pos < len(out):
        nl = out.find(b"\n", pos)
        if nl < 0:
            fail("mxgate-spoolcat -x: truncated output")
        fields = out[pos:nl].split(b" ")
        if len(fields) != 4 or fields[0] != b"MXGATE-SPOOLCAT":
            fail(f"mxgate-spoolcat -x: bad header {out[pos:nl][:100]!r}")
        qid, envlen, msglen = fields[1].decode(), int(fields[2]), int(fields[3])
        pos = nl + 1
        env = parse_envelope(out[pos:pos + envlen], msglen)
        pos += envlen
        msg = out[pos:pos + msglen]
        pos += msglen
        if len(msg) != msglen or env.get("queue-id") != qid:
            fail(f"mxgate-spoolcat -x: message {qid} is inconsistent")
        msgs.append((qid, env, msg))
    return msgs


def spoolcat_binary(mxgate_binary):
    """mxgate-spoolcat lives beside mxgate in the build tree and when installed."""
    return os.path.join(os.path.dirname(os.path.abspath(mxgate_binary)), "mxgate-spoolcat")


def read_spool(mxgate_binary, spool):
    """Every committed message of a spool, as a start-up recovery would keep them (the
    reader is the gateway's own, via mxgate-spoolcat): list of (queue_id, envelope,
    message), in queue ID order."""
    if not os.path.isdir(os.path.join(spool, "seg")):
        return []
    r = subprocess.run([spoolcat_binary(mxgate_binary), "-x", spool], capture_output=True)
    if r.returncode != 0:
        fail(f"mxgate-spoolcat failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return parse_spoolcat(r.stdout)


class Gateway:
    """The mxgate binary with a private config and spool. Use as a context manager."""

    # set when the service reads the PROXY protocol (smtpd_upstream_proxy_protocol): the
    # start-up probe sends a v2 LOCAL header before it waits for the greeting
    probe_proxy = False

    def __init__(self, binary, extra_config="", workers=2, port=None, host="127.0.0.1"):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="mxgate-e2e-")
        # the gateway runs as mail_owner (mxgate) after start: it reads the configuration
        # again on reload, and mxgate-queue run as that user reaches the control socket
        os.chmod(self.dir, 0o755)
        self.spool = os.path.join(self.dir, "spool")
        self.maillog = os.path.join(self.dir, "maillog")
        self.host = host
        self.port = port or free_port()
        self.config_path = os.path.join(self.dir, "mxgate.cf")
        listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        with open(self.config_path, "w") as f:
            f.write(
                "# written by tests/e2e/mxtest.py\n"
                "myhostname = mx.test.example\n"
                "mydestination = $myhostname, localhost\n"
                "relay_domains = relay.example\n"
                "mynetworks = 127.0.0.0/8 [::1]/128\n"
                f"mxgate_listen = {listen}\n"
                f"mxgate_workers = {workers}\n"
                f"mxgate_spool_directory = {self.spool}\n"
                f"maillog_file = {self.maillog}\n"
                # compiled check sets are cached here, not in the machine's /var/cache
                f"mxgate_checks_cache_directory = {self.dir}/checks-cache\n"
                # the machine's resolver is not the test's: client names stay "unknown"
                # (test_dns.py runs its own DNS and turns the lookup on)
                "smtpd_peername_lookup = no\n"
                + extra_config
            )
        self.proc = None

    def start(self):
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path],
                                     stdout=self.stderr, stderr=subprocess.STDOUT)
        if not wait_port(self.host, self.port, proc=self.proc, proxy=self.probe_proxy):
            self.stop(check=False)
            fail(f"gateway did not come up on {self.host}:{self.port}:\n{self.output()}")
        return self

    def stop(self, check=True):
        """SIGTERM and wait; the gateway must exit 0 (clean shutdown, no sanitizer
        report)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                if check:
                    fail("gateway did not exit within 20 s of SIGTERM")
        rc = self.proc.returncode
        self.proc = None
        self.stderr.close()
        if check and rc != 0:
            fail(f"gateway exited {rc} after SIGTERM:\n{self.output()}")
        return rc

    def output(self):
        parts = []
        for name in ("stderr", "maillog"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    parts.append(f"--- {name} ---\n" + f.read()[-6000:].decode("utf-8", "replace"))
        return "\n".join(parts)

    def log(self):
        if not os.path.exists(self.maillog):
            return ""
        with open(self.maillog, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _log_since(self, offset):
        """The log from byte `offset` on, whole lines only (a line the offset cuts is
        dropped)."""
        if not os.path.exists(self.maillog):
            return ""
        with open(self.maillog, "rb") as f:
            if offset:
                f.seek(offset - 1)
                data = f.read()
                data = data[1:] if data[:1] == b"\n" else data[data.find(b"\n") + 1:]
            else:
                data = f.read()
        return data.decode("utf-8", "replace")

    def spooled(self):
        """Every message made durable so far: list of (queue_id, envelope, message)."""
        return read_spool(self.binary, self.spool)

    _KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(-?\d+)\b")
    # the line that ends what one SIGUSR1 writes (the dpdk transport adds one after it)
    _LAST_STAT_LINE = "statistics (SIGUSR1): open_connections="

    def stats(self, timeout=15.0):
        """SIGUSR1, wait for the lines it writes, and return their key=value integers as
        one dict: the statistics line, the dpdk line (dpdk transport), the spool lines
        with keys prefixed "spool_" and the relay lines with keys prefixed "relay_" (both
        summed over the spool directories: relay_queued, relay_sent, relay_deferred,
        relay_removed, relay_notifications...)."""
        # only what is written after the signal is read: a long run's log is hundreds
        # of megabytes, too much to read again every 50 ms
        start = os.path.getsize(self.maillog) if os.path.exists(self.maillog) else 0
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self._log_since(start).splitlines()
            ends = [i for i, l in enumerate(lines) if self._LAST_STAT_LINE in l]
            if ends:
                # every statistics line of this group: what the signal wrote up to its
                # last line (sessions' lines may come in between: they are skipped),
                # read backwards so that the main line's keys win over a service's
                out = {}
                for line in reversed(lines[:ends[0] + 1]):
                    per_spool = re.search(r"\b(spool|relay) \d+ statistics: ", line)
                    if per_spool:
                        prefix = per_spool.group(1) + "_"
                        for k, v in self._KV.findall(line.split("statistics:", 1)[1]):
                            out[prefix + k] = out.get(prefix + k, 0) + int(v)
                    elif "statistics (SIGUSR1):" in line:
                        body = line.split("statistics (SIGUSR1):", 1)[1]
                        for k, v in self._KV.findall(body):
                            out.setdefault(k, int(v))
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        fail(f"no new statistics line within {timeout} s of SIGUSR1:\n{self.output()}")

    def wait_stat(self, pred, timeout, what):
        """Poll stats() until pred(stats) holds; fail after timeout seconds."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                fail(f"timed out after {timeout} s waiting for {what}; last stats: {st}")
            time.sleep(0.2)
            st = self.stats()
        return st

    # ---- the metrics endpoint (mxgate_metrics_listen; set metrics_port to its port) ----
    metrics_port = None

    def metrics_http_get(self, path="/metrics", timeout=10.0):
        """(status, body) of GET path on the metrics endpoint (127.0.0.1:metrics_port)."""
        return http_get("127.0.0.1", self.metrics_port, path, timeout)

    def scrape(self, timeout=10.0):
        """The endpoint's text (format 0.0.4); fails unless it answers 200."""
        status, body = self.metrics_http_get("/metrics", timeout)
        if status != 200:
            fail(f"GET /metrics: HTTP {status}\n{body[:2000]}\n{self.output()}")
        return body

    def metrics(self):
        """One scrape parsed: {name: {labels (sorted tuple of (k, v)): value}}."""
        return parse_metrics(self.scrape())

    def metric(self, name, **labels):
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return metric_value(self.metrics(), name, **labels)

    def wait_metric(self, name, pred, timeout=15.0, **labels):
        """Scrape until pred(value of name{labels}) holds (or value == pred when pred is a
        number); tests wait on a counter instead of sleeping. Returns the value."""
        check = pred if callable(pred) else (lambda v: v == pred)
        deadline = time.monotonic() + timeout
        while True:
            v = self.metric(name, **labels)
            if check(v):
                return v
            if time.monotonic() > deadline:
                fail(f"timed out after {timeout} s waiting for {name}{labels}: last value "
                     f"{v}\n{self.output()}")
            time.sleep(0.1)

    def fds(self):
        """How many descriptors the gateway process holds."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def spool_disk_bytes(self):
        """Bytes the spool's files occupy on disk (allocated blocks, as du counts)."""
        total = 0
        for dirpath, _, names in os.walk(self.spool):
            for n in names:
                try:
                    total += os.stat(os.path.join(dirpath, n)).st_blocks * 512
                except OSError:
                    pass
        return total

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(check=exc_type is None)
        if exc_type is None and os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def main_cf_merge(text):
    """main.cf text in which each parameter is defined once: a later definition replaces
    an earlier one with its continuation lines, as in Postfix, but without Postfix's
    "overriding earlier entry" warning.

    Why not let Postfix warn: every Postfix process that reads a main.cf with duplicate
    entries logs one warning per duplicate, through the postlog unix-dgram socket when
    maillog_file is set - postlogd included, while it reads main.cf before it serves the
    socket. A fresh network namespace has net.unix.max_dgram_qlen = 10: with ten such
    warnings queued, postlogd blocks writing to its own socket and every other Postfix
    process (postfix start, stop, smtpd) blocks behind it, for ever."""
    entries = []  # [name or None, [lines]]
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and entries and entries[-1][0] is not None \
                and line.strip() and not line.lstrip().startswith("#"):
            entries[-1][1].append(line)
            continue
        m = re.match(r"([A-Za-z0-9_]+)\s*=", line)
        entries.append([m.group(1) if m else None, [line]])
    last = {name: i for i, (name, _) in enumerate(entries) if name is not None}
    return "".join("".join(lines) for i, (name, lines) in enumerate(entries)
                   if name is None or last[name] == i)


class PostfixPeer:
    """A private Debian Postfix instance (own config, queue and log under a temp dir) that
    relays everything to `relayhost`, with an smtpd on `smtpd_port`. Needs root."""

    MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n  -  n  60  1  pickup
cleanup   unix  n  -  n  -   0  cleanup
qmgr      unix  n  -  n  300 1  qmgr
rewrite   unix  -  -  n  -   -  trivial-rewrite
bounce    unix  -  -  n  -   0  bounce
defer     unix  -  -  n  -   0  bounce
trace     unix  -  -  n  -   0  bounce
verify    unix  -  -  n  -   1  verify
flush     unix  n  -  n  1000? 0 flush
proxymap  unix  -  -  n  -   -  proxymap
smtp      unix  -  -  n  -   -  smtp
relay     unix  -  -  n  -   -  smtp
error     unix  -  -  n  -   -  error
retry     unix  -  -  n  -   -  error
discard   unix  -  -  n  -   -  discard
anvil     unix  -  -  n  -   1  anvil
scache    unix  -  -  n  -   1  scache
postlog   unix-dgram n - n - 1 postlogd
tlsmgr    unix  -  -  n  1000? 1 tlsmgr
"""

    def __init__(self, relayhost, smtpd_port=None, extra_main_cf="", listen_host="127.0.0.1",
                 command_prefix=()):
        """listen_host: smtpd's address (inet_interfaces too); command_prefix: run the
        postfix command under it, e.g. ["ip", "netns", "exec", NS] to start master and its
        daemons inside a network namespace."""
        for tool in ("/usr/sbin/postfix", "/usr/sbin/sendmail", "/usr/sbin/postqueue"):
            need_tool(tool)
        need_root("a private Postfix instance")
        self.command_prefix = list(command_prefix)
        self.dir = tempfile.mkdtemp(prefix="mxgate-postfix-")
        self.conf = os.path.join(self.dir, "conf")
        self.smtpd_port = smtpd_port or free_port()
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.dir, "queue"))
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        shutil.chown(data, "postfix")
        os.chmod(self.dir, 0o755)
        self.maillog = os.path.join(self.dir, "maillog")
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf_merge(
                "compatibility_level = 3.6\n"
                f"queue_directory = {self.dir}/queue\n"
                f"data_directory = {data}\n"
                "myhostname = pfx.test.example\n"
                "mydestination =\n"
                f"inet_interfaces = {listen_host}\n"
                "inet_protocols = ipv4\n"
                f"relayhost = {relayhost}\n"
                f"maillog_file = {self.maillog}\n"
                f"maillog_file_prefixes = {self.dir}\n"
                "smtp_tls_security_level = none\n"
                "smtpd_tls_security_level = none\n"
                "smtp_address_preference = ipv4\n"
                + extra_main_cf
            ))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(self.MASTER_CF.format(listen=f"{listen_host}:{self.smtpd_port}"))

    def postfix(self, *args, check=True):
        # bounded: a Postfix that cannot log blocks every command (main_cf_merge)
        try:
            r = subprocess.run([*self.command_prefix, "/usr/sbin/postfix", "-c", self.conf,
                                *args], capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            fail(f"postfix {' '.join(args)} did not finish in 120 s\n{self.log()}")
        if check and r.returncode != 0:
            fail(f"postfix {' '.join(args)} failed: {r.stdout}{r.stderr}\n{self.log()}")
        return r

    def start(self):
        self.postfix("check")
        self.postfix("start")
        return self

    def stop(self):
        self.postfix("stop", check=False)
        # master exits after its children; don't leave it behind for the next test
        pid_file = os.path.join(self.dir, "queue", "pid", "master.pid")
        for _ in range(100):
            try:
                with open(pid_file) as f:
                    pid = int(f.read().split()[0])
                os.kill(pid, 0)
            except (OSError, ValueError):
                break
            time.sleep(0.1)

    def sendmail(self, sender, recipients, message: bytes):
        r = subprocess.run(["/usr/sbin/sendmail", "-C", self.conf, "-i", "-f", sender, *recipients],
                           input=message, capture_output=True)
        if r.returncode != 0:
            fail(f"postfix sendmail failed: {r.stderr!r}")

    def flush(self):
        subprocess.run(["/usr/sbin/postqueue", "-c", self.conf, "-f"], capture_output=True)

    def queue_listing(self):
        r = subprocess.run(["/usr/sbin/postqueue", "-c", self.conf, "-p"],
                           capture_output=True, text=True)
        return r.stdout

    def log(self):
        if not os.path.exists(self.maillog):
            return ""
        with open(self.maillog, encoding="utf-8", errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is None and os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


def smtp_source_body(length):
    """The body Postfix's smtp-source sends with -l LENGTH (read off smtp-sink dumps):
    LENGTH // 80 lines of a digit (line number mod 10) and 77 'X' with CRLF, then
    LENGTH % 80 'X' and, since the body must end with a line end, CRLF."""
    lines = [f"{n % 10}".encode() + b"X" * 77 + b"\r\n" for n in range(1, length // 80 + 1)]
    tail = b"X" * (length % 80)
    return b"".join(lines) + (tail + b"\r\n" if tail else b"")


def mail_owner_may_read(path, owner="mxgate"):
    """Let the gateway read path again after start, when it runs as mail_owner (a key a
    reload loads): group of the user, mode 0640, as Debian's ssl-cert group is used for
    Postfix's keys. Without the user, nothing (the gateway refuses to start, saying so)."""
    try:
        gid = pwd.getpwnam(owner).pw_gid
    except KeyError:
        return
    os.chown(path, -1, gid)
    os.chmod(path, 0o640)


def binary_from_argv():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        fail("usage: TEST path/to/mxgate")
    return sys.argv[1]


class ScriptedSmtpServer:
    """A tiny next hop for relay tests (asyncio, stdlib only), in a background thread.
    It offers PIPELINING, 8BITMIME, SMTPUTF8 and SIZE, undoes dot-stuffing, and records
    each transaction it accepted as a dict: mail, rcpts (accepted), data (bytes, CRLF),
    params (MAIL parameters). Replies come from overridable policies:
      rcpt_reply(addr) -> "250 2.1.5 Ok" (default) or e.g. "451 4.3.0 try later"
      data_reply(txn)  -> "250 2.0.0 Ok: queued as N" (default)
      data_delay       seconds to wait before the final reply (a slow next hop)
    .data_ends counts messages whose final "." arrived (before data_delay and the reply).
    Use as a context manager; .port is where it listens."""

    def __init__(self, port=None, lmtp=False):
        import asyncio
        import threading
        self.asyncio = asyncio
        self.port = port or free_port()
        self.lmtp = lmtp
        self.transactions = []
        self.commands = []
        self.connections = 0
        self.data_ends = 0
        self.data_delay = 0.0
        self.lock = threading.Lock()
        self.loop = None
        self.server = None
        self.thread = None
        self.ready = threading.Event()

    def rcpt_reply(self, addr):
        return "250 2.1.5 Ok"

    def data_reply(self, txn):
        return f"250 2.0.0 Ok: queued as T{len(self.transactions)}"

    async def _session(self, reader, writer):
        with self.lock:
            self.connections += 1
        try:
            writer.write(b"220 next.hop.test ESMTP scripted\r\n")
            txn = None
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").rstrip("\r\n")
                with self.lock:
                    self.commands.append(cmd)
                verb = cmd[:4].upper()
                if verb in ("EHLO", "LHLO"):
                    writer.write(b"250-next.hop.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                                 b"250-SMTPUTF8\r\n250 SIZE 10240000\r\n")
                elif verb == "HELO":
                    writer.write(b"250 next.hop.test\r\n")
                elif verb == "MAIL":
                    addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                    params = cmd[cmd.index(">") + 1:].split()
                    txn = {"mail": addr, "rcpts": [], "params": params}
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                    reply = self.rcpt_reply(addr)
                    if reply.startswith("2") and txn is not None:
                        txn["rcpts"].append(addr)
                    writer.write(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    if not txn or not txn["rcpts"]:
                        writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                        continue
                    writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    data = []
                    while True:
                        l = await reader.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        data.append(l[1:] if l.startswith(b".") else l)
                    txn["data"] = b"".join(data)
                    with self.lock:
                        self.data_ends += 1
                    if self.data_delay:
                        await self.asyncio.sleep(self.data_delay)
                    reply = self.data_reply(txn)
                    if reply.startswith("2"):
                        with self.lock:
                            self.transactions.append(txn)
                    n = len(txn["rcpts"]) if self.lmtp else 1
                    writer.write((reply.encode() + b"\r\n") * n)
                    txn = None
                elif verb == "RSET":
                    txn = None
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"502 5.5.2 Error: command not recognized\r\n")
                await writer.drain()
        except (ConnectionError, ValueError):
            return
        finally:
            writer.close()

    def _run(self):
        self.loop = self.asyncio.new_event_loop()
        self.asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            self.asyncio.start_server(self._session, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        self.server.close()
        tasks = self.asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        self.loop.run_until_complete(self.asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def start(self):
        import threading
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            fail("scripted SMTP server did not start")
        return self

    def stop(self):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop = None

    def received(self):
        with self.lock:
            return list(self.transactions)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False


def wait_for(pred, timeout, what, diag=lambda: ""):
    """Poll pred() until true; fail with what and diag() after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    fail(f"timed out after {timeout} s waiting for {what}\n{diag()}")


# ---- Prometheus text format (mxgate's metrics endpoint) ----

def http_get(host, port, path="/metrics", timeout=10.0):
    """(status, body) of one HTTP/1.1 GET; standard library only."""
    import http.client
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """The text exposition format as {name: {labels: value}}, labels a sorted tuple of
    (name, unescaped value); comment lines are skipped. Fails on a line it cannot read."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            fail(f"metrics: cannot parse line {line!r}")
        labels = []
        if m.group(3):
            for k, v in _LABEL.findall(m.group(3)):
                v = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1), v)
                labels.append((k, v))
        value = float(m.group(4)) if m.group(4) not in ("+Inf", "-Inf", "NaN") else \
            float(m.group(4).replace("Inf", "inf").replace("NaN", "nan"))
        out.setdefault(m.group(1), {})[tuple(sorted(labels))] = value
    return out


def metric_value(parsed, name, **labels):
    """The sum of the samples of `name` in parse_metrics() output whose labels include
    `labels` (0 when none)."""
    total = 0
    for ls, v in parsed.get(name, {}).items():
        d = dict(ls)
        if all(d.get(k) == str(want) for k, want in labels.items()):
            total += v
    return total
