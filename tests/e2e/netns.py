"""Network-namespace topology and a DPDK gateway for mxgate's end-to-end tests, also used by
perf/side_by_side.py. Needs root, iproute2, ethtool, procps and Debian's python3 (a missing
one fails the test, naming its package); Python 3 standard library only.

Stable API (other scripts import it; change it only by adding):

Topology(prefix, kernel_link=False) -- a context manager; entering builds, leaving deletes:
    namespaces  gw_ns = PREFIX-gw, cl_ns = PREFIX-cl (stale ones with these names are removed
                first; both get their loopback up)
    the "dp" veth pair, for the DPDK port (net_af_packet binds dp_gw_if):
        dp_gw_if    in gw_ns: up, no address, IPv6 disabled, so the kernel never answers for
                    the addresses DPDK owns
        dp_cl_if    in cl_ns: cl_ip4/24 and cl_ip6/64 (nodad), TX checksum offload off (else
                    the kernel hands af_packet TCP segments with unfinished checksums)
        gw_ip4 = "10.77.0.2", gw_ip6 = "fd77::2"  the addresses the DPDK port is configured with
        cl_ip4 = "10.77.0.1", cl_ip6 = "fd77::1"  (also the DPDK port's gateways)
        dp_gw_mac, dp_cl_mac  the two ends' MAC addresses
    with kernel_link=True a second pair for kernel peers (both ends ordinary kernel interfaces):
        kernel_gw_if, kernel_cl_if, kernel_gw_ip4 = "10.78.0.2", kernel_cl_ip4 = "10.78.0.1"
    methods:
        cl(argv, **kw) / gw(argv, **kw)           subprocess.run(["ip","netns","exec",NS,*argv])
        cl_popen(argv, **kw) / gw_popen(argv, **kw) the same with subprocess.Popen
        add_gw_kernel_addr()  give dp_gw_if the kernel address gw_ip4/24 (only to test the
                    topology itself without DPDK; never while a DPDK gateway runs)
    default_prefix() -> "mxNNNNN", short and unique per process (interface names must stay
    within 15 bytes: the prefix is at most 11).

DpdkGateway(binary, topo, extra_config="", workers=2, port=25, steering="auto", fault=None,
            mbufs=None, idle_sleep_us=None) -- mxtest.Gateway's semantics (dir, spool, maillog,
    config_path, proc, start(), stop(check=True), output(), log(), spooled(), context manager)
    for `mxgate_transport = dpdk` on net_af_packet over dp_gw_if with `workers` worker lcores,
    run under `ip netns exec gw_ns`. host/host6 are the addresses clients use (gw_ip4/gw_ip6).
    start() waits until a connection from cl_ns reads the 220 greeting. Extra methods:
        stats() -> dict   SIGUSR1, wait for the new "dpdk statistics (SIGUSR1)" line, and return
                          the key=value integers of it and of the "statistics (SIGUSR1)" line
                          before it (one dict; the dpdk keys win on a clash)
        rss_kb() -> int   VmRSS of the gateway process
        wait_stat(pred, timeout, what) -> dict  poll stats() until pred(stats) is true
    stop() also removes DPDK's runtime directory /var/run/dpdk/FILE_PREFIX.

Clients and checks (functions):
    need_netns_tools()                 fail naming the package when ip, ethtool, sysctl or
                                       /usr/bin/python3 is missing; then exit 77 unless root
    client_python()                    the interpreter for scripts run in cl_ns
    swaks(topo, server, to, port=25, sender=..., extra=()) -> (status, transcript)
    swaks_queue_id(transcript) -> queue ID of the 250 reply, or None
    swaks_sent_data(transcript) -> bytes swaks sent in DATA (unstuffed, CRLF), or None
    smtp_source(topo, server, sessions, messages, length, sender, rcpt=..., port=25,
                extra=()) -> CompletedProcess   (always with -N: unique recipients)
    check_smtp_source(msgs, messages, length, sender, rcpt=...) -> count; fails the test
                unless each of the messages is in msgs exactly once and byte-exact
    tcpdump_cl(topo, path, count=2000, bpf=()) / stop_tcpdump(p) / tcpdump_read(path)
                a header capture on dp_cl_if, for failure reports (tcpdump is required)

Tools run inside the namespaces (`ip netns exec NS tool`) because Python 3.11 has no
os.setns; /usr/bin/python3 is Debian's Python (the one python3-scapy is installed for).
"""

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import mxtest

SYS_PYTHON = "/usr/bin/python3"
_ids = 0


def default_prefix():
    return f"mx{os.getpid() % 100000}"


def _run(argv, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    r = subprocess.run(argv, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


def need_netns_tools():
    """Fail, naming the package, when a tool the topology needs is missing (the greeting
    probe runs Debian's python3 in the client namespace); then skip (exit 77) unless root,
    which namespaces need."""
    for tool in ("ip", "ethtool", "sysctl", SYS_PYTHON):
        mxtest.need_tool(tool)
    mxtest.need_root("a network-namespace topology")


class Topology:
    def __init__(self, prefix=None, kernel_link=False):
        prefix = prefix or default_prefix()
        if len(prefix) > 11:
            raise ValueError(f"prefix {prefix!r} too long: interface names are at most 15 bytes")
        self.prefix = prefix
        self.kernel_link = kernel_link
        self.gw_ns = f"{prefix}-gw"
        self.cl_ns = f"{prefix}-cl"
        # names are created in their namespaces directly, but keep them unique host-wide
        # anyway so that a trace or a stale interface says which run it belongs to
        self.dp_gw_if = f"{prefix}dg"
        self.dp_cl_if = f"{prefix}dc"
        self.gw_ip4, self.gw_ip6 = "10.77.0.2", "fd77::2"
        self.cl_ip4, self.cl_ip6 = "10.77.0.1", "fd77::1"
        self.kernel_gw_if = f"{prefix}kg"
        self.kernel_cl_if = f"{prefix}kc"
        self.kernel_gw_ip4, self.kernel_cl_ip4 = "10.78.0.2", "10.78.0.1"
        self.dp_gw_mac = self.dp_cl_mac = None
        self.up = False
        self.children = []  # what cl_popen/gw_popen started: killed at destroy if still running

    # -- running things inside ---------------------------------------------------------
    def _ns(self, ns, argv):
        return ["ip", "netns", "exec", ns, *argv]

    def cl(self, argv, **kw):
        return subprocess.run(self._ns(self.cl_ns, argv), **kw)

    def gw(self, argv, **kw):
        return subprocess.run(self._ns(self.gw_ns, argv), **kw)

    def cl_popen(self, argv, **kw):
        p = subprocess.Popen(self._ns(self.cl_ns, argv), **kw)
        self.children.append(p)
        return p

    def gw_popen(self, argv, **kw):
        p = subprocess.Popen(self._ns(self.gw_ns, argv), **kw)
        self.children.append(p)
        return p

    # -- building and tearing down -----------------------------------------------------
    def _delete(self):
        for ns in (self.gw_ns, self.cl_ns):
            # deleting a namespace deletes its veth ends, and so their peers
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        for ifname in (self.dp_gw_if, self.dp_cl_if, self.kernel_gw_if, self.kernel_cl_if):
            subprocess.run(["ip", "link", "delete", ifname], capture_output=True)

    def _mac(self, ns, ifname):
        r = _run(self._ns(ns, ["cat", f"/sys/class/net/{ifname}/address"]))
        return r.stdout.strip()

    def create(self):
        self._delete()  # a previous run with this prefix that died before its cleanup
        try:
            for ns in (self.gw_ns, self.cl_ns):
                _run(["ip", "netns", "add", ns])
                _run(self._ns(ns, ["ip", "link", "set", "lo", "up"]))
            _run(["ip", "link", "add", self.dp_gw_if, "netns", self.gw_ns, "type", "veth",
                  "peer", "name", self.dp_cl_if, "netns", self.cl_ns])
            # gateway side: no IPv6 (no link-local address, no ND or MLD answers from the
            # kernel), no address; up, or af_packet sees nothing
            _run(self._ns(self.gw_ns, ["sysctl", "-q", "-w",
                                       f"net.ipv6.conf.{self.dp_gw_if}.disable_ipv6=1"]))
            _run(self._ns(self.gw_ns, ["ip", "link", "set", self.dp_gw_if, "up"]))
            # client side: the kernel would otherwise leave TCP checksums to the "hardware"
            # (CHECKSUM_PARTIAL), and af_packet on the other end reads them unfinished
            _run(self._ns(self.cl_ns, ["ethtool", "-K", self.dp_cl_if, "tx", "off"]))
            _run(self._ns(self.cl_ns, ["ip", "addr", "add", f"{self.cl_ip4}/24",
                                       "dev", self.dp_cl_if]))
            _run(self._ns(self.cl_ns, ["ip", "-6", "addr", "add", f"{self.cl_ip6}/64",
                                       "dev", self.dp_cl_if, "nodad"]))
            _run(self._ns(self.cl_ns, ["ip", "link", "set", self.dp_cl_if, "up"]))
            self.dp_gw_mac = self._mac(self.gw_ns, self.dp_gw_if)
            self.dp_cl_mac = self._mac(self.cl_ns, self.dp_cl_if)
            if self.kernel_link:
                _run(["ip", "link", "add", self.kernel_gw_if, "netns", self.gw_ns, "type",
                      "veth", "peer", "name", self.kernel_cl_if, "netns", self.cl_ns])
                for ns, ifname, ip in ((self.gw_ns, self.kernel_gw_if, self.kernel_gw_ip4),
                                       (self.cl_ns, self.kernel_cl_if, self.kernel_cl_ip4)):
                    _run(self._ns(ns, ["ip", "addr", "add", f"{ip}/24", "dev", ifname]))
                    _run(self._ns(ns, ["ip", "link", "set", ifname, "up"]))
        except BaseException:
            self._delete()
            raise
        self.up = True
        return self

    def add_gw_kernel_addr(self):
        _run(self._ns(self.gw_ns, ["ip", "addr", "add", f"{self.gw_ip4}/24",
                                   "dev", self.dp_gw_if]))

    def destroy(self):
        # a process left inside would keep its namespace (and the veth) alive after the delete
        for p in self.children:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        self.children = []
        self._delete()
        self.up = False

    def __enter__(self):
        return self.create()

    def __exit__(self, exc_type, exc, tb):
        self.destroy()
        return False


_GREETING_PROBE = r"""
import socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
# "proxy": the service reads the PROXY protocol first; a v2 LOCAL header (a health check)
proxy = len(sys.argv) > 4 and sys.argv[4] == "proxy"
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
deadline = time.monotonic() + timeout
last = "nothing tried"
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            if proxy:
                s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
            s.settimeout(3)
            g = s.recv(512)
            if g.startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
            last = f"greeting {g!r}"
    except OSError as e:
        last = str(e)
    time.sleep(0.2)
print(last)
sys.exit(1)
"""


class DpdkGateway(mxtest.Gateway):
    def __init__(self, binary, topo, extra_config="", workers=2, port=25, steering="auto",
                 fault=None, mbufs=None, idle_sleep_us=None):
        global _ids
        _ids += 1
        self.binary = binary
        self.topo = topo
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="mxgate-dpdk-e2e-")
        os.chmod(self.dir, 0o755)  # for mail_owner, as mxtest.Gateway's
        self.spool = os.path.join(self.dir, "spool")
        self.maillog = os.path.join(self.dir, "maillog")
        self.host, self.host6 = topo.gw_ip4, topo.gw_ip6
        self.port = port
        self.config_path = os.path.join(self.dir, "mxgate.cf")
        self.file_prefix = f"mxt-{topo.prefix}-{_ids}"
        ncpu = os.cpu_count() or 1
        cpus = "0" if ncpu == 1 else f"0-{ncpu - 1}"
        # lcore 0 is the main (management) lcore, 1..workers the worker lcores; each may run
        # on any CPU, so more lcores than CPUs works (oversubscribed, as on 2-core machines)
        lcores = ",".join(f"{i}@({cpus})" for i in range(workers + 1))
        eal = (f"--lcores={lcores} --no-huge -m 512 --no-pci --no-telemetry "
               f"--file-prefix={self.file_prefix} "
               f"--vdev=net_af_packet0,iface={topo.dp_gw_if},qpairs={workers},framecnt=4096")
        ports = (f"net_af_packet0 address={topo.gw_ip4}/24 gateway={topo.cl_ip4} "
                 f"address6={topo.gw_ip6} gateway6={topo.cl_ip6} mtu=1500")
        lines = [
            "# written by tests/e2e/netns.py",
            "myhostname = mx.test.example",
            "mydestination = $myhostname, localhost",
            "relay_domains = relay.example",
            "mynetworks = 127.0.0.0/8 [::1]/128 10.77.0.0/24 [fd77::]/64",
            "mxgate_transport = dpdk",
            f"mxgate_dpdk_eal_args = {eal}",
            f"mxgate_dpdk_ports = {ports}",
            f"mxgate_dpdk_steering = {steering}",
            f"mxgate_listen = 0.0.0.0:{port}",
            f"mxgate_workers = {workers}",
            f"mxgate_spool_directory = {self.spool}",
            f"mxgate_checks_cache_directory = {self.dir}/checks-cache",
            # no resolver is reachable from the namespace: names stay "unknown"
            "smtpd_peername_lookup = no",
            f"maillog_file = {self.maillog}",
        ]
        if mbufs is not None:
            lines.append(f"mxgate_dpdk_mbufs = {mbufs}")
        if idle_sleep_us is not None:
            lines.append(f"mxgate_dpdk_idle_sleep_us = {idle_sleep_us}")
        if fault:
            lines.append(f"mxgate_dpdk_fault = {fault}")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_config)
        self.proc = None

    # set when the service reads the PROXY protocol (smtpd_upstream_proxy_protocol): the
    # start-up probe sends a v2 LOCAL header before it waits for the greeting
    probe_proxy = False

    def start(self, timeout=90.0):
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        env = dict(os.environ)
        # the fault spec comes from the config; an inherited override would change the test
        env.pop("MXGATE_NET_FAULT", None)
        # `ip netns exec` execs the binary after setns(2): proc.pid is mxgate's own PID
        self.proc = self.topo.gw_popen([self.binary, "-c", self.config_path],
                                       stdout=self.stderr, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r = self.topo.cl([SYS_PYTHON, "-c", _GREETING_PROBE, self.host, str(self.port), "5",
                              "proxy" if self.probe_proxy else ""],
                             capture_output=True, text=True)
            if r.returncode == 0:
                return self
            last = r.stdout.strip()
        rc = self.proc.poll()
        self.stop(check=False)
        mxtest.fail(f"DPDK gateway did not greet on {self.host}:{self.port} "
                    f"(exit status {rc}, last probe: {last}):\n{self.output()}")

    def stop(self, check=True):
        try:
            return super().stop(check=check)
        finally:
            shutil.rmtree(f"/var/run/dpdk/{self.file_prefix}", ignore_errors=True)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # what one SIGUSR1 writes ends with the dpdk statistics line
    _LAST_STAT_LINE = "dpdk statistics (SIGUSR1):"


# -- clients in the client namespace, and checks of what they left in the spool -----------

def client_python():
    """The interpreter for scripts run in the client namespace: Debian's python3."""
    return mxtest.need_tool(SYS_PYTHON)


def swaks(topo, server, to, port=25, sender="alice@sender.example", extra=(), timeout=120):
    """swaks from the client namespace: (exit status, transcript)."""
    srv = f"[{server}]:{port}" if ":" in server else f"{server}:{port}"
    r = topo.cl(["swaks", "--server", srv, "--to", to, "--from", sender,
                 "--helo", "client.test.example", "--header", "Subject: e2e dpdk swaks",
                 "--body", "hello over the DPDK port\n.leading dot line\n", *extra],
                capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def swaks_queue_id(out):
    """The queue ID of swaks' "250 2.0.0 Ok: queued as ID" reply, or None."""
    marker = "250 2.0.0 Ok: queued as "
    if marker not in out:
        return None
    return out.split(marker)[1].split()[0]


def swaks_sent_data(out):
    """The message swaks sent in DATA, read off its transcript (the " -> " lines between the
    354 reply and the lone "."), dot-unstuffed, with CRLF line ends: what the spool must hold
    behind our Received: header. None when the transcript has no DATA."""
    lines = out.split("\n")
    try:
        start = next(k for k, l in enumerate(lines) if l.startswith("<-  354 "))
    except StopIteration:
        return None
    data = []
    for line in lines[start + 1:]:
        if not line.startswith(" -> "):
            continue
        text = line[4:]
        if text == ".":
            return "".join(t + "\r\n" for t in data).encode()
        data.append(text[1:] if text.startswith(".") else text)
    return None


def smtp_source(topo, server, sessions, messages, length, sender, rcpt="sink@localhost",
                port=25, extra=(), timeout=900):
    """smtp-source from the client namespace with -N (each recipient gets a unique sequence
    number, so every message can be told apart in the spool): CompletedProcess."""
    srv = f"[{server}]:{port}" if ":" in server else f"{server}:{port}"
    return topo.cl(["/usr/sbin/smtp-source", "-N", "-s", str(sessions), "-m", str(messages),
                    "-l", str(length), "-f", sender, "-t", rcpt, *extra, srv],
                   capture_output=True, text=True, timeout=timeout)


def check_smtp_source(msgs, messages, length, sender, rcpt="sink@localhost"):
    """Every one of smtp-source -N's `messages` messages from `sender` is in `msgs` (the
    spool) exactly once and byte-exact: recipient "N" + rcpt for N = 1..messages, our one
    Received: header in front, smtp-source's headers, then its body. Messages from other
    senders are ignored. Fails the test on the first problem; returns the count checked."""
    body = mxtest.smtp_source_body(length)
    seen = {}
    for qid, env, msg in msgs:
        if env.get("sender") != sender:
            continue
        if len(env["rcpt"]) != 1 or not env["rcpt"][0].endswith(rcpt):
            mxtest.fail(f"{qid}: envelope recipients wrong: {env['rcpt']}")
        num = env["rcpt"][0][:-len(rcpt)]
        if not num.isdigit() or not 1 <= int(num) <= messages:
            mxtest.fail(f"{qid}: recipient {env['rcpt'][0]} has no sequence number "
                        f"1..{messages}")
        if int(num) in seen:
            mxtest.fail(f"message {num} spooled twice: {seen[int(num)]} and {qid}")
        seen[int(num)] = qid
        if not msg.startswith(b"Received: from "):
            mxtest.fail(f"{qid}: does not start with our Received: header")
        if msg.count(b"\r\nReceived: ") != 0:
            mxtest.fail(f"{qid}: more than one Received: header")
        headers, sep, got_body = msg.partition(b"\r\n\r\n")
        if not sep or got_body != body:
            mxtest.fail(f"{qid}: body differs from what smtp-source sent "
                        f"({len(got_body)} bytes, expected {len(body)})")
        if f"\r\nFrom: <{sender}>\r\nTo: <{rcpt}>\r\n".encode() not in headers:
            mxtest.fail(f"{qid}: smtp-source's headers were not kept: {headers!r}")
    if len(seen) != messages:
        missing = sorted(set(range(1, messages + 1)) - set(seen))
        mxtest.fail(f"{len(seen)} of {messages} messages from {sender} spooled; "
                    f"missing e.g. {missing[:10]}")
    return len(seen)


def tcpdump_cl(topo, path, count=2000, bpf=()):
    """Start a packet capture (headers only) on the client end of the dp veth, optionally
    with a filter (a list of tcpdump filter words); returns the Popen once the capture
    runs; stop it with stop_tcpdump and read it with tcpdump_read. Fails, naming the
    package, without tcpdump."""
    mxtest.need_tool("tcpdump")
    p = topo.cl_popen(["tcpdump", "-n", "-s", "128", "-i", topo.dp_cl_if, "-c", str(count),
                       "-w", path, *bpf],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # tcpdump says "listening on IFACE" on stderr once the capture runs: wait for that line
    # (at most 5 s), so that nothing sent after this returns is missed
    said = b""
    deadline = time.monotonic() + 5
    with selectors.DefaultSelector() as sel:
        sel.register(p.stderr, selectors.EVENT_READ)
        while b"listening on" not in said and time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                chunk = os.read(p.stderr.fileno(), 4096)
                if not chunk:
                    break
                said += chunk
    if b"listening on" not in said:
        stop_tcpdump(p)
        mxtest.fail(f"tcpdump on {topo.dp_cl_if} did not start capturing within 5 s: "
                    f"{said.decode(errors='replace')}")
    return p


def tcpdump_read(path):
    """The lines of `tcpdump -n -r path` (empty when there is no capture)."""
    if not os.path.exists(path):
        return []
    r = subprocess.run(["tcpdump", "-n", "-r", path], capture_output=True, text=True)
    return r.stdout.splitlines()


def stop_tcpdump(p):
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rerun_in_private_netns(prefix, env_var, script, argv, resolv_conf, hosts,
                           sysctls=()):
    """Run `script` again (with argv, and env_var set to the namespace's name) in a new
    network namespace with lo up, its own /etc/netns resolv.conf and hosts file (what
    `ip netns exec` bind-mounts for the C library) and the given sysctls; remove the
    namespace and those files afterwards, and exit with the script's status. A kernel
    that refuses the namespace skips the test (exit 77). A SystemExit while waiting (the
    caller's SIGTERM handler) stops the child first."""
    mxtest.need_tool("ip")
    name = f"{prefix}-{os.getpid()}"
    root_existed = os.path.isdir("/etc/netns")
    etc = f"/etc/netns/{name}"
    os.makedirs(etc)
    with open(os.path.join(etc, "resolv.conf"), "w") as f:
        f.write(resolv_conf)
    with open(os.path.join(etc, "hosts"), "w") as f:
        f.write(hosts)
    rc = 1
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode != 0:
            mxtest.skip(f"the kernel refused a network namespace (not a missing package): "
                        f"ip netns add: {r.stderr.strip()}")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        for k, v in sysctls:
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", f"{k}={v}"])
        env = dict(os.environ, **{env_var: name})
        child = subprocess.Popen(["ip", "netns", "exec", name, sys.executable,
                                  os.path.abspath(script), *argv], env=env)
        try:
            rc = child.wait()
        except SystemExit:
            child.terminate()
            child.wait(60)
            raise
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)
        if not root_existed:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass
    sys.exit(rc)
