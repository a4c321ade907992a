"""Shared pieces of the DNS benchmarks (perf/dns/bench_*.py). Python 3 standard library;
needs root (network namespaces, DPDK, a private Postfix).

Every benchmark runs across the two-namespace topology of tests/e2e/netns.py
(Topology(kernel_link=True)): the load client (smtp_load, built beside mxgate) runs in the
client namespace; the servers (mxgate on either transport, Postfix, the DNS and policy
servers) in the gateway namespace. mxgate-kernel listens on the kernel veth (10.78.0.2),
mxgate-dpdk owns the other veth through net_af_packet (10.77.0.2); both reach the DNS and
policy servers on 127.0.0.1 of the gateway namespace with the kernel's sockets (the service
threads are ordinary threads on both transports). /etc/netns/GW_NS/resolv.conf, which
`ip netns exec` mounts over /etc/resolv.conf, points Postfix (and mxgate, when
mxgate_dns_servers is empty) at a DNS server in the namespace.

    Env(prefix)                 the topology, a scratch directory, daemons; close()
    Env.daemon(argv, name)      a process in the gateway namespace (killed at close())
    Env.pyserver(script, args)  slow_dns.py / slow_policy.py there, once it says "ready"
    Env.resolv_conf(text)       the namespace's resolv.conf
    Env.gateway(transport, workers, extra_config) -> gateway (mxtest/netns semantics)
    Env.load(host, port, **opts) -> dict; Env.load_start(...) -> Load (result() later)
    Env.client_ip(transport)    the address the gateway sees the client as
    usr1(gw) -> dict            SIGUSR1 and the lines it wrote: main, dpdk, resolver, policy
    rss_kb(pid), hwm_kb(pid), thread_cpu_ns(pid, comm), cpu_seconds(pid),
    threads_cpu_seconds(pid), tree_cpu_seconds(pid)
    wait_quiet(limit, max_wait), machine_line(), commit()
"""

import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "perf"))

import mxtest  # noqa: E402
import netns  # noqa: E402
import side_by_side  # noqa: E402  (wait_greeting)

SYS_PYTHON = netns.SYS_PYTHON
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# ---- the machine ------------------------------------------------------------------------

def machine_busy_seconds():
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cpus(seconds=1.0):
    b0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - b0) / (time.monotonic() - t0)


def wait_quiet(limit=0.15, max_wait=60):
    """Wait (at most max_wait s) until other work uses fewer than `limit` CPUs; returns the
    last measurement (the table shows it)."""
    deadline = time.monotonic() + max_wait
    bg = background_cpus()
    while bg >= limit and time.monotonic() < deadline:
        bg = background_cpus()
    return bg


def commit():
    return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def machine_line():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, commit {commit()}, {platform.node()}, "
            f"{os.cpu_count()} CPUs ({model}), {platform.platform()}")


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_kb(pid):
    return proc_status(pid, "VmRSS")


def hwm_kb(pid):
    """The process's peak RSS so far."""
    return proc_status(pid, "VmHWM")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid):
    """CPU seconds of a process and all its descendants, living and reaped (a reaped
    child's time is in its parent's cutime/cstime): Postfix's master and its smtpd
    processes, say. Take it before and after a run; the difference is the tree's."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK
        todo.extend(children.get(p, []))
    return total


def threads_cpu_seconds(pid):
    """{thread name: CPU seconds (user + system)} of a process, threads of one name
    summed; {} once it is gone."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def thread_cpu_ns(pid, comm):
    """CPU time (ns, schedstat) of the process's threads named `comm`, summed."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


# ---- the gateway's statistics -----------------------------------------------------------

_KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(-?\d+)\b")
_GROUPS = (("resolver", "resolver statistics (SIGUSR1):"),
           ("policy", "policy statistics (SIGUSR1):"),
           ("dpdk", "dpdk statistics (SIGUSR1):"),
           ("main", "statistics (SIGUSR1): open_connections="))


_usr1_lock = threading.Lock()


def usr1(gw, timeout=20.0):
    """SIGUSR1, then the lines it wrote as {"main": {...}, "resolver": {...}, "policy":
    {...}, "dpdk": {...}} (key=value integers). Reads the log from where the previous call
    stopped, so a long log costs nothing. Threads may call it (one at a time)."""
    with _usr1_lock:
        return _usr1(gw, timeout)


def _usr1(gw, timeout):
    off = getattr(gw, "_usr1_off", 0)
    gw.proc.send_signal(signal.SIGUSR1)
    last = gw._LAST_STAT_LINE
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        with open(gw.maillog, "rb") as f:
            f.seek(off)
            text += f.read().decode("utf-8", "replace")
            off = f.tell()
        k = text.rfind(last)
        if k >= 0 and "\n" in text[k:]:  # the last line, whole
            break
        if gw.proc.poll() is not None:
            raise BenchError(f"the gateway exited:\n{gw.output()}")
        time.sleep(0.05)
    else:
        raise BenchError(f"no statistics within {timeout} s of SIGUSR1")
    # keep an unfinished last line for the next call
    cut = text.rfind("\n") + 1
    gw._usr1_off = off - len(text[cut:].encode("utf-8", "replace"))
    out = {}
    for line in text[:cut].splitlines():
        for name, marker in _GROUPS:
            if marker in line:
                body = line.split(marker, 1)[1]
                if name == "main":
                    body = "open_connections=" + body
                out[name] = {k: int(v) for k, v in _KV.findall(body)}
                break
    return out


# ---- processes in the namespaces --------------------------------------------------------

class Load:
    """A smtp_load run in the client namespace, started; result() waits and parses."""

    def __init__(self, env, argv, timeout):
        self.env = env
        self.timeout = timeout
        self.errpath = os.path.join(env.dir, f"load-{time.monotonic_ns()}.err")
        self.err = open(self.errpath, "wb")
        self.proc = env.topo.cl_popen(argv, stdout=subprocess.PIPE, stderr=self.err)
        self.t0 = time.monotonic()

    def result(self):
        try:
            out, _ = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise BenchError(f"smtp_load did not finish within {self.timeout} s")
        finally:
            self.err.close()
        lines = out.decode(errors="replace").strip().splitlines()
        if not lines or self.proc.returncode not in (0, 1):
            with open(self.errpath, errors="replace") as f:
                raise BenchError(f"smtp_load failed ({self.proc.returncode}): "
                                 f"{out[-500:]!r} {f.read()[-1000:]}")
        r = json.loads(lines[-1])
        r["progress"] = []
        with open(self.errpath, errors="replace") as f:
            for line in f:
                if line.startswith("{"):
                    r["progress"].append(json.loads(line))
        return r


class KernelGateway(mxtest.Gateway):
    """mxgate on the kernel transport in the gateway namespace, on the kernel veth."""

    def __init__(self, binary, topo, extra_config, workers):
        super().__init__(binary, extra_config=extra_config, workers=workers,
                         host=topo.kernel_gw_ip4)
        self.topo = topo

    def start(self, timeout=60.0):
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = self.topo.gw_popen([self.binary, "-c", self.config_path],
                                       stdout=self.stderr, stderr=subprocess.STDOUT)
        if not greeting(self.topo, self.host, self.port, self.proc, timeout):
            self.stop(check=False)
            raise BenchError(f"mxgate (kernel) did not start:\n{self.output()}")
        return self


def greeting(topo, host, port, proc=None, timeout=60.0):
    """True once a client in the client namespace reads a 220 from host:port (the probe
    the side-by-side benchmark uses)."""
    return side_by_side.wait_greeting(topo, host, port, proc=proc, timeout=timeout)


class Env:
    def __init__(self, binary, prefix=None):
        if os.geteuid() != 0:
            raise SystemExit("run as root (network namespaces, DPDK, Postfix)")
        for tool in ("ip", "ethtool", "sysctl", SYS_PYTHON):
            mxtest.need_tool(tool)
        self.binary = os.path.abspath(binary)
        self.loader = os.path.join(os.path.dirname(os.path.dirname(self.binary)), "perf",
                                   "dns", "smtp_load")
        if not os.access(self.loader, os.X_OK):
            raise SystemExit(f"{self.loader} is missing: ninja -C BUILD perf/dns/smtp_load")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.topo = netns.Topology(prefix or f"dnsp{os.getpid() % 100000}",
                                   kernel_link=True).create()
        self.dir = tempfile.mkdtemp(prefix="mxgate-dnsperf-")
        os.chmod(self.dir, 0o755)
        self.procs = []
        self.etc = f"/etc/netns/{self.topo.gw_ns}"
        # the client opens tens of thousands of connections: every local port, and reuse
        # of TIME_WAIT ones; the gateway namespace queues many connection attempts
        for ns, settings in ((self.topo.cl_ns, ("net.ipv4.ip_local_port_range=1024 65535",
                                                "net.ipv4.tcp_tw_reuse=1")),
                             (self.topo.gw_ns, ("net.core.somaxconn=65535",
                                                "net.ipv4.tcp_max_syn_backlog=65535"))):
            for s in settings:
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", s],
                               check=True, capture_output=True)

    # -- daemons in the gateway namespace --
    def daemon(self, argv, name):
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        p = self.topo.gw_popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((p, name))
        return p

    def pyserver(self, script, args, name):
        """slow_dns.py or slow_policy.py in the gateway namespace, once it is ready; its
        statistics file is returned as p.stats (a path)."""
        stats = os.path.join(self.dir, f"{name}.json")
        p = self.topo.gw_popen([SYS_PYTHON, os.path.join(HERE, script), *args,
                                "--stats", stats],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append((p, name))
        line = p.stdout.readline().decode(errors="replace")
        if not line.startswith("ready"):
            raise BenchError(f"{script} did not start: {line}{p.stdout.read(2000)!r}")
        p.stats = stats
        return p

    def resolv_conf(self, text):
        os.makedirs(self.etc, exist_ok=True)
        with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
            f.write(text)

    def stop_daemon(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- gateways --
    def client_ip(self, transport):
        return self.topo.cl_ip4 if transport == "dpdk" else self.topo.kernel_cl_ip4

    def gateway(self, transport, workers, extra_config):
        if transport == "dpdk":
            gw = netns.DpdkGateway(self.binary, self.topo, extra_config=extra_config,
                                   workers=workers)
            try:
                gw.start()
            except SystemExit:
                raise BenchError(f"mxgate (dpdk) did not start:\n{gw.output()}")
            return gw
        gw = KernelGateway(self.binary, self.topo, extra_config, workers)
        return gw.start()

    # -- the load client --
    def load_argv(self, host, port, **opts):
        argv = [self.loader, "--host", host, "--port", str(port)]
        for k, v in opts.items():
            if v is None or v is False:
                continue
            argv.append("--" + k.replace("_", "-"))
            if v is not True:
                argv.append(str(v))
        return argv

    def load_start(self, host, port, timeout=900, **opts):
        return Load(self, self.load_argv(host, port, **opts), timeout)

    def load(self, host, port, timeout=900, **opts):
        return self.load_start(host, port, timeout, **opts).result()

    def close(self):
        for p, _ in reversed(self.procs):
            self.stop_daemon(p)
        self.topo.destroy()
        shutil.rmtree(self.etc, ignore_errors=True)
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def drop_gateway(gw):
    """Stop a gateway and remove its directory (unless MXGATE_KEEP_TEST_DIRS)."""
    gw.stop(check=False)
    if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
        shutil.rmtree(gw.dir, ignore_errors=True)


def pct(d, key="p99"):
    return d.get(key, float("nan"))
