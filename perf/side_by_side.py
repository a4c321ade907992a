#!/usr/bin/env python3
"""Side by side, one harness: the same SMTP load from two clients against every peer, one
run after the other, in one invocation, and the results as a table, JSON and plots.

Peers (each started fresh for every run, in the gateway namespace PREFIX-gw of
tests/e2e/netns.py, so every byte crosses a veth and the client's kernel, never loopback):
  smtp-sink      Postfix's test sink: no durability, the kernel's ceiling
  postfix        Debian's Postfix, private instance, durable queue; every message is put on
                 hold (check_client_access static:HOLD) so it stays queued, as a gateway's
                 spool holds it, instead of being delivered onwards
  haraka         Haraka (npm, pinned in perf/peers/haraka, installed by
                 deploy/install-deps.sh), rcpt_to.in_host_list + queue/discard: accepts
                 and throws the message away (no durability), `--haraka-nodes` worker
                 processes (default: --workers, the share mxgate's workers get)
  mxgate-kernel  mxgate on the kernel transport, 250 only after fdatasync
  mxgate-dpdk    mxgate on the dpdk transport, its own TCP/IP stack, 250 after fdatasync:
                 net_af_packet on a veth for smtp-source, net_memif for mxgate-loadgen
  mxgate-dpdk-afp  the same for mxgate-loadgen over net_af_packet on the same veth pair as
                 smtp-source's (DPDK at both ends), --memif-workers worker lcores

Clients (the same load from each):
  smtp-source    Postfix's load generator, in the client namespace, over the kernel veth
                 (10.78.0.0/24); it reports no latencies
  loadgen        mxgate-loadgen (perf/loadgen/), a DPDK program: net_af_packet on a third
                 veth pair (10.79.0.0/24, the client end without a kernel address) against
                 the kernel servers; net_memif beside mxgate-dpdk. It reports reply latency
                 histograms (the CDF plot) and checks every reply.

Load shapes (--shapes): reused (-s SESSIONS sessions kept for MESSAGES messages of SIZE
bytes), one (one message of SIZE bytes per session, SESSIONS at once), 4k (as reused with
4,096-byte messages). smtp-source's -l is the body length (it adds ~150 bytes of headers);
loadgen's --size is the whole message.

Per run: messages/s (smtp-source: its wall time; loadgen: the time it reports, from the
first connect to the last reply, without DPDK's start-up), server CPU per message (the
server's processes in a cpuacct cgroup, v1 or v2, exited ones included: Postfix's smtpd,
cleanup, qmgr...; Haraka's master and workers; mxgate's one process; where no cgroup
can be made, or with --proc-cpu, /proc/PID/stat of the server's processes with the
children they reaped, which agreed with the cgroup within 10% here), for mxgate-dpdk its
busy cycles (poll iterations that did work, SIGUSR1 statistics after minus before) per
message in microseconds at its TSC rate, since a poll loop burns its CPU share whatever it
does; loadgen's final-dot-to-reply latency percentiles. Counts are checked where the peer
keeps them: smtp-sink's own counters, Postfix's hold queue, Haraka's disconnect lines,
mxgate's spool; a mismatch is a NOTE in the table (and a failure with --strict).

Usage (as root, with a release build; mxgate-loadgen beside mxgate's build tree):
  python3 perf/side_by_side.py --mxgate build-rel/dataplane/mxgate \\
      [--messages 5000] [--sessions 20] [--size 1024] [--workers 2] \\
      [--peers smtp-sink,postfix,haraka,mxgate-kernel,mxgate-dpdk,mxgate-dpdk-afp] \\
      [--clients smtp-source,loadgen] [--shapes reused,one,4k] [--repeat 1] \\
      [--out perf/results] [--name 2026-12-08-side-by-side] [--no-plots] [--strict] \\
      [--timeout 300] [--idle-sleep-us N] [--quiet-cpus 0.15] [--quiet-wait 60]
Without --out only the table is printed (to standard output).
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import loadgen  # noqa: E402  (MemifGateway, run_loadgen, loadgen_binary)
import mxtest  # noqa: E402  (Gateway, PostfixPeer, free_port)
import netns  # noqa: E402  (Topology, DpdkGateway)

CLK_TCK = os.sysconf("SC_CLK_TCK")
HARAKA_DIR = os.path.join(HERE, "peers", "haraka")
# mxgate-dpdk-afp: the generator over net_af_packet (both ends DPDK on the dp veth pair)
# instead of memif, with --memif-workers lcores; smtp-source does not run against it (its
# mxgate-dpdk run is that link already)
PEERS = ("smtp-sink", "postfix", "haraka", "mxgate-kernel", "mxgate-dpdk", "mxgate-dpdk-afp")


def runs_with(name, client):
    return not (name == "mxgate-dpdk-afp" and client == "smtp-source")
CLIENTS = ("smtp-source", "loadgen")
# name -> (description, sessions reused, message size or None for --size)
SHAPES = {
    "reused": ("sessions reused", True, None),
    "one": ("one message per session", False, None),
    "4k": ("sessions reused, 4 KiB messages", True, 4096),
}
DOMAIN = "relay.example"   # every peer accepts it (mxgate relay_domains, Haraka host_list)
SRC = "10.99.0.0/16"       # loadgen's source addresses
LG_GW_IP, LG_CL_IP = "10.79.0.2", "10.79.0.1"  # the loadgen's veth pair


class PeerError(Exception):
    pass


# -- the machine ---------------------------------------------------------------------------

def machine_busy_seconds():
    """Busy CPU seconds of all cores so far (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cpus(seconds=1.0):
    """CPUs' worth of busy time on the machine over the next `seconds`, with no peer running:
    other people's work that the CPU columns would otherwise count."""
    b0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - b0) / (time.monotonic() - t0)


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until background_cpus() is under limit; returns the last
    measurement."""
    deadline = time.monotonic() + max_wait
    # with no wait asked for (the CI smoke test), a short sample only records it
    bg = background_cpus(1.0 if max_wait > 0 else 0.2)
    while bg >= limit and time.monotonic() < deadline:
        bg = background_cpus()
    return bg


def tsc_hz():
    """The TSC frequency the kernel measured at boot, else /proc/cpuinfo's cpu MHz.
    Returns (hz, where it came from)."""
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    except OSError:
        log = ""
    for pattern in (r"tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz",
                    r"tsc: Detected ([0-9.]+) MHz"):
        m = re.findall(pattern, log)
        if m:
            return float(m[-1]) * 1e6, "dmesg: " + pattern.split(":")[1].split("(")[0].strip()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6, "/proc/cpuinfo cpu MHz"
    return None, "unknown"


def _out(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_info():
    """What every result records: the machine, the date, the commit, the peers' versions."""
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    commit = _out(["git", "-C", HERE, "rev-parse", "HEAD"])
    dirty = _out(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no"])
    haraka = ""
    try:
        with open(os.path.join(HARAKA_DIR, "node_modules", "Haraka", "package.json")) as f:
            haraka = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "host": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "commit": commit + ("-dirty" if dirty else ""),
        "postfix": _out(["/usr/sbin/postconf", "-dh", "mail_version"]),
        "haraka": haraka,
        "node": _out(["node", "--version"]),
    }


# -- server CPU: a cpuacct cgroup per run ---------------------------------------------------

def proc_cpu(pids):
    """CPU seconds of these processes from /proc/PID/stat: utime + stime, plus cutime +
    cstime (the children they reaped: Postfix's master reaps its smtpd processes)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # fields 14-17 of proc(5)
    return total / CLK_TCK


class CpuGroup:
    """A cgroup that accounts the CPU time of the processes put in it and of their
    children, exited ones included (cgroup v2 cpu.stat usage_usec, or v1
    cpuacct.usage). Where neither hierarchy is writable (a container), usage() sums
    /proc of the processes pids_fn() names (proc_cpu), which misses only processes that
    exited without being reaped by one of them; `source` says which."""

    def __init__(self, name, pids_fn, use_cgroup=True):
        self.path = None
        self.pids_fn = pids_fn
        self.v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        base = "/sys/fs/cgroup" if self.v2 else "/sys/fs/cgroup/cpuacct"
        try:
            if use_cgroup:
                path = os.path.join(base, name)
                os.mkdir(path)
                self.path = path
        except OSError:
            pass
        self.source = "cgroup" if self.path else "/proc"

    def add(self, pid):
        if self.path is None:
            return
        try:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError:
            pass  # it exited meanwhile

    def pids(self):
        if self.path is None:
            return []
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def usage(self):
        """CPU seconds of the group so far."""
        if self.path is None:
            return proc_cpu(self.pids_fn())
        if self.v2:
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) / 1e6
            return None
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def remove(self):
        """Kill what is left in it (processes this run started) and remove it."""
        if self.path is None:
            return
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def netns_inode(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def pids_in_netns(topo):
    """Every process in the gateway namespace: the server under test and its children."""
    want = topo.gw(["readlink", "/proc/self/ns/net"], capture_output=True,
                   text=True).stdout.strip()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and netns_inode(p) == want]


# -- a probe from the client namespace -----------------------------------------------------

_PROBE = r"""
import socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            s.settimeout(3)
            if s.recv(512).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
"""


def wait_greeting(topo, host, port, proc=None, timeout=30.0):
    """True once a client in the client namespace reads a 220 from host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        r = topo.cl([sys.executable, "-c", _PROBE, host, str(port), "3"], capture_output=True)
        if r.returncode == 0:
            return True
    return False


def wait_count(fn, want, timeout=20.0):
    """Poll fn() until it returns want (servers count a session when it ends); the last
    value."""
    deadline = time.monotonic() + timeout
    got = fn()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = fn()
    return got


def spool_count(binary, spool):
    """Messages in a spool (mxgate-spoolcat -l: one line each)."""
    r = subprocess.run([mxtest.spoolcat_binary(binary), "-l", spool], capture_output=True,
                       text=True)
    return len([line for line in r.stdout.splitlines() if line.strip()])


# -- peers ----------------------------------------------------------------------------------
# Each is a context manager: host, port; accepted() (messages it kept or counted since it
# started), probes (greeting probes that count as sessions: none carry a message).

class SinkPeer:
    name = "smtp-sink"

    def __init__(self, topo, host):
        self.topo, self.host = topo, host

    def __enter__(self):
        self.port = mxtest.free_port()
        self.out = tempfile.NamedTemporaryFile(prefix="smtp-sink-", suffix=".out", delete=False)
        self.proc = self.topo.gw_popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-c",
                                        f"{self.host}:{self.port}", "1024"],
                                       stdout=self.out, stderr=subprocess.STDOUT)
        if not wait_greeting(self.topo, self.host, self.port, proc=self.proc):
            self.__exit__()
            raise PeerError("smtp-sink did not start")
        return self

    def accepted(self):
        """smtp-sink -c's own counter of messages (updated as sessions end)."""
        with open(self.out.name, "rb") as f:
            m = re.findall(rb"mesg=(\d+)", f.read())
        return int(m[-1]) if m else 0

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.out.close()
        os.unlink(self.out.name)


class PostfixPeer:
    name = "postfix"

    def __init__(self, topo, host):
        self.topo, self.host = topo, host

    def __enter__(self):
        # Every message goes on hold: durable in the queue, never delivered onwards. No
        # reverse DNS lookup of the client (mxgate does none either; no resolver here).
        self.pf = mxtest.PostfixPeer(
            relayhost="[127.0.0.1]:9",
            listen_host=self.host,
            command_prefix=["ip", "netns", "exec", self.topo.gw_ns],
            extra_main_cf=(f"mynetworks = 127.0.0.0/8 {self.topo.kernel_cl_ip4}/32 {SRC}\n"
                           "smtpd_client_restrictions = check_client_access static:HOLD\n"
                           "smtpd_peername_lookup = no\n"
                           "default_process_limit = 200\n"
                           "smtpd_client_connection_count_limit = 0\n"
                           "smtpd_client_connection_rate_limit = 0\n"
                           "smtpd_client_message_rate_limit = 0\n"
                           "in_flow_delay = 0\n"))
        try:
            self.pf.start()
        except SystemExit:  # mxtest.fail() after printing why
            shutil.rmtree(self.pf.dir, ignore_errors=True)
            raise PeerError("postfix did not start (see above)")
        self.port = self.pf.smtpd_port
        if not wait_greeting(self.topo, self.host, self.port):
            self.__exit__()
            raise PeerError(f"postfix did not start:\n{self.pf.log()[-2000:]}")
        return self

    def accepted(self):
        """Messages in the hold queue (every accepted message is held there)."""
        return sum(len(files) for _, _, files in
                   os.walk(os.path.join(self.pf.dir, "queue", "hold")))

    def __exit__(self, *exc):
        self.pf.stop()
        shutil.rmtree(self.pf.dir, ignore_errors=True)


def haraka_bin():
    return os.path.join(HARAKA_DIR, "node_modules", ".bin", "haraka")


class HarakaPeer:
    """Haraka from perf/peers/haraka: its own config (a copy of the package's defaults with
    perf/peers/haraka/config on top) in a private directory, our one plugin
    (mxgate_peer: no reverse DNS, as smtpd_peername_lookup = no; TCP_NODELAY) beside it."""
    name = "haraka"

    def __init__(self, topo, host, nodes):
        self.topo, self.host, self.nodes = topo, host, nodes

    def __enter__(self):
        if not os.access(haraka_bin(), os.X_OK):
            raise PeerError(f"{haraka_bin()} is missing: the npm package Haraka, installed by "
                            "deploy/install-deps.sh (npm ci in perf/peers/haraka)")
        self.port = mxtest.free_port()
        self.dir = tempfile.mkdtemp(prefix="mxgate-haraka-")
        conf = os.path.join(self.dir, "config")
        shutil.copytree(os.path.join(HARAKA_DIR, "node_modules", "Haraka", "config"), conf)
        ours = os.path.join(HARAKA_DIR, "config")
        for name in os.listdir(ours):
            if name.endswith(".in"):
                with open(os.path.join(ours, name)) as f:
                    text = f.read()
                text = text.replace("@LISTEN@", f"{self.host}:{self.port}")
                text = text.replace("@NODES@", str(self.nodes))
                with open(os.path.join(conf, name[:-3]), "w") as f:
                    f.write(text)
            else:
                shutil.copy(os.path.join(ours, name), os.path.join(conf, name))
        os.symlink(os.path.join(HARAKA_DIR, "plugins"), os.path.join(self.dir, "plugins"))
        self.log_path = os.path.join(self.dir, "haraka.log")
        env = dict(os.environ, YES_REALLY_DO_DISCARD="1")
        with open(self.log_path, "wb") as log:
            self.proc = self.topo.gw_popen([haraka_bin(), "-c", self.dir], stdout=log,
                                           stderr=subprocess.STDOUT, env=env)
        if not wait_greeting(self.topo, self.host, self.port, proc=self.proc, timeout=60):
            text = self.log()
            self.__exit__()
            raise PeerError(f"haraka did not start:\n{text[-2000:]}")
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def accepted(self):
        """Messages accepted, from each session's "disconnect ... msgs=A/T/R" line."""
        return sum(int(m) for m in re.findall(r"\[core\] disconnect .* msgs=(\d+)/", self.log()))

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class MxgateKernelPeer:
    name = "mxgate-kernel"

    def __init__(self, topo, host, binary, workers):
        self.topo, self.host, self.binary, self.workers = topo, host, binary, workers

    def __enter__(self):
        # mxtest.Gateway writes the config and knows how to stop; it is started here under
        # `ip netns exec` (its own start() would probe from the root namespace)
        self.gw = mxtest.Gateway(self.binary, workers=self.workers, host=self.host,
                                 extra_config="smtpd_recipient_limit = 1000\n")
        self.port = self.gw.port
        self.gw.stderr = open(os.path.join(self.gw.dir, "stderr"), "wb")
        self.gw.proc = self.topo.gw_popen([self.binary, "-c", self.gw.config_path],
                                          stdout=self.gw.stderr, stderr=subprocess.STDOUT)
        if not wait_greeting(self.topo, self.host, self.port, proc=self.gw.proc):
            self.gw.stop(check=False)
            raise PeerError(f"mxgate (kernel) did not start:\n{self.gw.output()}")
        return self

    def accepted(self):
        return spool_count(self.binary, self.gw.spool)

    def __exit__(self, *exc):
        self.gw.stop(check=False)
        shutil.rmtree(self.gw.dir, ignore_errors=True)


class MxgateDpdkPeer:
    """af_packet on the dp veth pair (smtp-source's link)."""
    name = "mxgate-dpdk"
    link = "af_packet"

    def __init__(self, topo, binary, workers, idle_sleep_us):
        self.topo, self.binary, self.workers = topo, binary, workers
        self.idle_sleep_us = idle_sleep_us
        self.host = topo.gw_ip4

    def __enter__(self):
        self.gw = netns.DpdkGateway(self.binary, self.topo, workers=self.workers,
                                    idle_sleep_us=self.idle_sleep_us,
                                    extra_config="smtpd_recipient_limit = 1000\n")
        try:
            self.gw.start()
        except SystemExit:  # mxtest.fail() after printing why
            raise PeerError(f"mxgate (dpdk) did not start:\n{self.gw.output()}")
        self.port = self.gw.port
        return self

    def stats(self):
        try:
            return self.gw.stats()
        except SystemExit:
            raise PeerError(f"mxgate (dpdk) gave no statistics:\n{self.gw.output()}")

    def accepted(self):
        return spool_count(self.binary, self.gw.spool)

    def __exit__(self, *exc):
        self.gw.stop(check=False)
        shutil.rmtree(self.gw.dir, ignore_errors=True)


class MxgateDpdkAfpPeer(MxgateDpdkPeer):
    """mxgate-dpdk on the dp veth pair for the generator over net_af_packet: the client
    end's kernel addresses are taken away while the generator holds it (else the kernel
    answers the gateway's segments for its own address with resets), and given back."""
    link = "af_packet"

    def __enter__(self):
        super().__enter__()  # the start-up probe needs the kernel address
        self.topo.cl(["ip", "addr", "flush", "dev", self.topo.dp_cl_if], check=True)
        return self

    def __exit__(self, *exc):
        cl_if = self.topo.dp_cl_if
        self.topo.cl(["ip", "addr", "add", f"{self.topo.cl_ip4}/24", "dev", cl_if])
        self.topo.cl(["ip", "-6", "addr", "add", f"{self.topo.cl_ip6}/64", "dev", cl_if,
                      "nodad"])
        super().__exit__(*exc)


class MxgateMemifPeer(MxgateDpdkPeer):
    """net_memif beside the generator (loadgen's link): no namespace, shared memory."""
    link = "memif"

    def __init__(self, binary, workers, idle_sleep_us):
        self.binary, self.workers, self.idle_sleep_us = binary, workers, idle_sleep_us
        self.host, self.port = loadgen.GW_IP, 25

    def __enter__(self):
        self.gw = loadgen.MemifGateway(self.binary, workers=self.workers,
                                       idle_sleep_us=self.idle_sleep_us,
                                       extra_config="smtpd_recipient_limit = 1000\n")
        try:
            self.gw.start()
        except SystemExit:
            raise PeerError(f"mxgate (dpdk, memif) did not start:\n{self.gw.output()}")
        return self


# -- clients --------------------------------------------------------------------------------

def shape_load(args, shape):
    """(sessions at once, sessions in all, messages per session, size) of a shape."""
    _, reuse, size = SHAPES[shape]
    size = size or args.size
    if reuse:
        per = max(args.messages // args.sessions, 1)
        return args.sessions, args.sessions, per, size
    return args.sessions, args.messages, 1, size


def run_smtp_source(topo, host, port, args, shape):
    """smtp-source in the client namespace: {"seconds", "client_cpu", "messages"}."""
    conc, total, per, size = shape_load(args, shape)
    messages = total * per
    argv = ["/usr/sbin/smtp-source", "-s", str(conc), "-m", str(messages), "-l", str(size),
            "-f", "bench@source.example", "-t", f"sink@{DOMAIN}"]
    if SHAPES[shape][1]:
        argv.append("-d")
    argv.append(f"{host}:{port}")
    t0 = time.monotonic()
    # `ip netns exec` execs smtp-source after setns(2): the child's rusage is the client's
    child = topo.cl_popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(args.timeout, child.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    out = child.stdout.read().decode(errors="replace")
    child.returncode = rc
    if rc != 0:
        if elapsed >= args.timeout:
            raise PeerError(f"smtp-source did not finish within {args.timeout} s: {out[-500:]}")
        raise PeerError(f"smtp-source failed ({rc}): {out[-500:]}")
    return {"seconds": elapsed, "client_cpu": usage.ru_utime + usage.ru_stime,
            "messages": messages, "sessions": total}


_lg_runs = 0


def loadgen_args(args, shape):
    conc, total, per, size = shape_load(args, shape)
    return ["--src", SRC, "--concurrency", str(conc), "--sessions", str(total),
            "--messages", str(per), "--size", str(size), "--rcpt-domain", DOMAIN,
            "--timeout", "30", "--label", shape]


def _loadgen_result(rc, out, res, shape):
    if res is None or rc != 0:
        raise PeerError(f"mxgate-loadgen ({shape}) exit status {rc}:\n{out[-1500:]}")
    return {"seconds": res["seconds"], "messages": res["messages"]["accepted"],
            "sessions": res["sessions"]["done"], "loadgen": res}


def run_loadgen_af_packet(topo, gen, host, port, args, shape, iface=None, local=LG_CL_IP):
    """mxgate-loadgen in the client namespace on the loadgen veth's client end."""
    global _lg_runs
    _lg_runs += 1
    prefix = f"mxsbs-{topo.prefix}-{_lg_runs}"
    json_path = os.path.join(tempfile.gettempdir(), f"{prefix}.json")
    try:
        rc, out, res = loadgen.run_loadgen_af_packet(
            topo.cl, gen, iface or lg_cl_if(topo), local, f"{host}:{port}",
            loadgen_args(args, shape), args.timeout, prefix, json_path)
    except subprocess.TimeoutExpired as e:
        raise PeerError(f"mxgate-loadgen ran over {args.timeout} s: {e.stdout}")
    return _loadgen_result(rc, out, res, shape)


def run_loadgen_memif(gen, peer, args, shape):
    json_path = os.path.join(peer.gw.dir, f"{shape}.json")
    rc, out, res = loadgen.run_loadgen(gen, peer.gw.socket, loadgen_args(args, shape),
                                       args.timeout, json_path=json_path)
    return _loadgen_result(rc, out, res, shape)


# -- the loadgen's veth pair ----------------------------------------------------------------

def lg_gw_if(topo):
    return f"{topo.prefix}lg"


def lg_cl_if(topo):
    return f"{topo.prefix}lc"


def add_loadgen_link(topo):
    """A third veth pair for the generator: the server's end in the gateway namespace has
    the kernel address LG_GW_IP and routes the generator's sources through the generator's
    own address LG_CL_IP (the generator answers ARP for it); the client's end has no kernel address
    (DPDK's net_af_packet owns it). The client namespace reaches LG_GW_IP through the
    kernel pair, for the greeting probe."""
    gw_if, cl_if = lg_gw_if(topo), lg_cl_if(topo)
    steps = [
        ["ip", "link", "add", gw_if, "netns", topo.gw_ns, "type", "veth", "peer", "name",
         cl_if, "netns", topo.cl_ns],
        topo._ns(topo.gw_ns, ["ip", "addr", "add", f"{LG_GW_IP}/24", "dev", gw_if]),
        # the kernel would leave TCP checksums to the "hardware" and af_packet reads them so
        topo._ns(topo.gw_ns, ["ethtool", "-K", gw_if, "tx", "off"]),
        topo._ns(topo.gw_ns, ["ip", "link", "set", gw_if, "up"]),
        # the sources through the generator's own address: one neighbour entry for the
        # kernel. Routed onto the link instead, it ARPs for each of 65,534 sources, and
        # beyond the neighbour table's gc_thresh3 (1,024) a SYN-ACK is dropped now and then
        # (connects timed out with one message per session)
        topo._ns(topo.gw_ns, ["ip", "route", "add", SRC, "via", LG_CL_IP, "dev", gw_if]),
        topo._ns(topo.cl_ns, ["sysctl", "-q", "-w", f"net.ipv6.conf.{cl_if}.disable_ipv6=1"]),
        topo._ns(topo.cl_ns, ["ip", "link", "set", cl_if, "up"]),
        topo._ns(topo.cl_ns, ["ip", "route", "add", f"{LG_GW_IP}/32", "via",
                              topo.kernel_gw_ip4]),
    ]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(argv)}: {r.stderr}")


# -- one run --------------------------------------------------------------------------------

def make_peer(name, client, topo, args, binary):
    host = topo.kernel_gw_ip4 if client == "smtp-source" else LG_GW_IP
    if name == "smtp-sink":
        return SinkPeer(topo, host)
    if name == "postfix":
        return PostfixPeer(topo, host)
    if name == "haraka":
        return HarakaPeer(topo, host, args.haraka_nodes or args.workers)
    if name == "mxgate-kernel":
        return MxgateKernelPeer(topo, host, binary, args.workers)
    if name == "mxgate-dpdk-afp":
        return MxgateDpdkAfpPeer(topo, binary, args.memif_workers, args.idle_sleep_us)
    if client == "smtp-source":
        return MxgateDpdkPeer(topo, binary, args.workers, args.idle_sleep_us)
    return MxgateMemifPeer(binary, args.memif_workers, args.idle_sleep_us)


def run_one(name, client, shape, topo, args, binary, gen, run_id):
    bg = wait_quiet(args.quiet_cpus, args.quiet_wait)
    res = {"peer": name, "client": client, "shape": shape, "background_cpus": round(bg, 2)}
    peer_pids = [None]  # the server's processes, for a /proc fallback of the CPU
    cg = CpuGroup(f"mxgate-sbs-{os.getpid()}-{run_id}", lambda: peer_pids[0](),
                  use_cgroup=not args.proc_cpu)
    try:
        with make_peer(name, client, topo, args, binary) as peer:
            # client's end / server's end of the link
            srv = getattr(peer, "link", None)
            if client == "smtp-source":
                res["link"] = "veth/af_packet" if srv else "veth"
            else:
                res["link"] = {"memif": "memif", "af_packet": "af_packet/veth/af_packet"}.get(
                    srv, "af_packet/veth")
            # the server's processes into the group (children inherit it)
            if isinstance(peer, MxgateMemifPeer):
                peer_pids[0] = lambda: [peer.gw.proc.pid]
            else:
                peer_pids[0] = lambda: pids_in_netns(topo)
            for pid in peer_pids[0]():
                cg.add(pid)
            res["cpu_source"] = cg.source
            base = peer.accepted()
            before = peer.stats() if hasattr(peer, "stats") else None
            cpu0, busy0 = cg.usage(), machine_busy_seconds()
            if client == "smtp-source":
                r = run_smtp_source(topo, peer.host, peer.port, args, shape)
            elif isinstance(peer, MxgateMemifPeer):
                r = run_loadgen_memif(gen, peer, args, shape)
            elif isinstance(peer, MxgateDpdkAfpPeer):
                r = run_loadgen_af_packet(topo, gen, peer.host, peer.port, args, shape,
                                          iface=topo.dp_cl_if, local=topo.cl_ip4)
            else:
                r = run_loadgen_af_packet(topo, gen, peer.host, peer.port, args, shape)
            cpu1, busy1 = cg.usage(), machine_busy_seconds()
            res.update(r)
            res["server_cpu"] = cpu1 - cpu0
            res["machine_cpu"] = busy1 - busy0
            if before is not None:
                after = peer.stats()
                res["stats"] = {k: after[k] - before.get(k, 0) for k in after
                                if isinstance(after[k], int)}
                res["tsc_hz"] = after.get("tsc_hz")
            res["accepted"] = wait_count(lambda: peer.accepted() - base, r["messages"])
    except PeerError as e:
        res["error"] = str(e)
    finally:
        cg.remove()
    return res


# -- report -----------------------------------------------------------------------------------

def median(runs, key):
    vals = [r[key] for r in runs if "error" not in r and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(results, args):
    """One row per (shape, peer, client): medians over the repeats."""
    rows = []
    hz_default, _ = tsc_hz()
    for shape in args.shapes:
        for name in args.peers:
            for client in args.clients:
                if not runs_with(name, client):
                    continue
                runs = [r for r in results if (r["shape"], r["peer"], r["client"]) ==
                        (shape, name, client)]
                ok = [r for r in runs if "error" not in r]
                row = {"shape": shape, "peer": name, "client": client, "runs": len(runs),
                       "failed": len(runs) - len(ok)}
                if not ok:
                    row["error"] = runs[0]["error"] if runs else "not run"
                    rows.append(row)
                    continue
                row["link"] = ok[0].get("link")
                rates = [r["messages"] / r["seconds"] for r in ok]
                row["msgs_per_s"] = statistics.median(rates)
                row["msgs_per_s_range"] = [min(rates), max(rates)]
                msgs = ok[0]["messages"]
                row["messages"] = msgs
                row["sessions"] = ok[0]["sessions"]
                cpu = [r["server_cpu"] / r["messages"] * 1e6 for r in ok
                       if r.get("server_cpu") is not None and r["messages"]]
                row["server_cpu_us_per_msg"] = statistics.median(cpu) if cpu else None
                busy = []
                for r in ok:
                    st = r.get("stats")
                    if st and "busy_cycles" in st and r["messages"]:
                        hz = r.get("tsc_hz") or hz_default
                        busy.append(st["busy_cycles"] / hz / r["messages"] * 1e6)
                row["dpdk_busy_us_per_msg"] = statistics.median(busy) if busy else None
                row["counts_ok"] = all(r.get("accepted") == r["messages"] for r in ok)
                row["accepted"] = [r.get("accepted") for r in ok]
                row["background_cpus"] = max(r["background_cpus"] for r in ok)
                lg = [r["loadgen"] for r in ok if "loadgen" in r]
                if lg:
                    dot = [x["latency_us"]["dot"] for x in lg]
                    row["dot_p50_us"] = statistics.median(d["p50"] for d in dot)
                    row["dot_p99_us"] = statistics.median(d["p99"] for d in dot)
                    row["connect_p50_us"] = statistics.median(
                        x["latency_us"]["connect"]["p50"] for x in lg)
                    row["loadgen_errors"] = sum(x["errors"]["total"] for x in lg)
                rows.append(row)
    return rows


def cpu_cell(row):
    """The CPU figure a peer is judged by: busy time for mxgate-dpdk (its poll loop
    spins whatever it does), the cgroup's CPU for the others."""
    if row.get("dpdk_busy_us_per_msg") is not None:
        return row["dpdk_busy_us_per_msg"]
    return row.get("server_cpu_us_per_msg")


def fmt(v, digits=0):
    if v is None:
        return ""
    return f"{v:,.{digits}f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else ""


def markdown(rows, info, args):
    lines = [
        "# Side by side: smtp-sink, Postfix, Haraka, mxgate (kernel, dpdk); smtp-source and "
        "mxgate-loadgen",
        "",
        f"{info['date']}, commit `{info['commit']}`, {info['nproc']} CPUs ({info['cpu_model']}), "
        f"{info['memory_gib']} GiB, Linux {info['kernel']}; Postfix {info['postfix']}, Haraka "
        f"{info['haraka']} on Node.js {info['node']}.",
        "",
        f"Load: {args.sessions} concurrent sessions; {args.messages} messages per run "
        f"(sessions reused: {args.sessions} sessions of {max(args.messages // args.sessions, 1)}; "
        f"one per session: {args.messages} sessions); {args.size}-byte messages (4k: 4,096). "
        f"mxgate: {args.workers} workers (kernel threads; dpdk lcores over af_packet), "
        f"{args.memif_workers} dpdk worker over memif; Haraka: "
        f"{args.haraka_nodes or args.workers} worker processes (nodes). "
        + (f"Each cell is the median of {args.repeat} runs. " if args.repeat > 1 else ""),
        "",
        "msgs/s: messages accepted per second (smtp-source: its wall time; loadgen: its own "
        "clock from first connect to last reply). CPU us/msg: the server's processes' CPU "
        "time (cpuacct cgroup) per message; for mxgate-dpdk the busy time of its poll loops "
        "(iterations that did work, at the TSC rate), since a poll loop spins whatever it "
        "does (its cgroup CPU is in the JSON). dot p50/p99: loadgen's final dot to the "
        "server's reply. Ratios are msgs/s against Postfix and Haraka with the same client "
        "and shape.",
        "",
        "| shape | peer | client (link) | msgs/s | vs Postfix | vs Haraka | CPU us/msg | "
        "dot p50 / p99 us | counts | other load |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    by = {(r["shape"], r["peer"], r["client"]): r for r in rows}
    notes = []
    for r in rows:
        shape_name = SHAPES[r["shape"]][0]
        if "error" in r:
            lines.append(f"| {shape_name} | {r['peer']} | {r['client']} | failed | | | | | | |")
            notes.append(f"{r['shape']}, {r['peer']}, {r['client']}: "
                         f"{r['error'].splitlines()[0][:300]}")
            continue
        pf = by.get((r["shape"], "postfix", r["client"]), {}).get("msgs_per_s")
        hk = by.get((r["shape"], "haraka", r["client"]), {}).get("msgs_per_s")
        lat = ""
        if "dot_p50_us" in r:
            lat = f"{fmt(r['dot_p50_us'])} / {fmt(r['dot_p99_us'])}"
        counts = "ok" if r["counts_ok"] else f"MISMATCH {r['accepted']}"
        if not r["counts_ok"]:
            notes.append(f"{r['shape']}, {r['peer']}, {r['client']}: the server counted "
                         f"{r['accepted']}, the client {r['messages']}")
        if r.get("loadgen_errors"):
            notes.append(f"{r['shape']}, {r['peer']}, loadgen: {r['loadgen_errors']} errors")
        rng = ""
        if args.repeat > 1:
            rng = f" ({fmt(r['msgs_per_s_range'][0])}-{fmt(r['msgs_per_s_range'][1])})"
        lines.append(f"| {shape_name} | {r['peer']} | {r['client']} ({r['link']}) | "
                     f"{fmt(r['msgs_per_s'])}{rng} | {ratio(r['msgs_per_s'], pf)} | "
                     f"{ratio(r['msgs_per_s'], hk)} | {fmt(cpu_cell(r), 1)} | {lat} | {counts} | "
                     f"{r['background_cpus']:.2f} |")
    bg = max((r.get("background_cpus", 0) for r in rows), default=0)
    lines += ["", f"Other load: CPUs busy with other work in the second before a run (the most "
              f"over a cell's repeats; at most {bg:.2f} here), after waiting up to "
              f"{args.quiet_wait:.0f} s for under {args.quiet_cpus}. It inflates the CPU "
              "columns and lowers msgs/s of the runs it touched."]
    for n in notes:
        lines.append(f"NOTE: {n}")
    return "\n".join(lines) + "\n", notes


def plots(rows, results, args, stem, info):
    """Three PNGs: msgs/s and CPU per message by peer and shape (one bar group per shape,
    solid bars smtp-source, hatched loadgen), and loadgen's final-dot latency CDFs."""
    try:
        import matplotlib
    except ImportError:
        sys.exit(f"matplotlib is missing for {sys.executable}: the Debian package "
                 "python3-matplotlib (deploy/install-deps.sh) is for /usr/bin/python3; "
                 "run the harness with it, or pass --no-plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["shape"], r["peer"], r["client"]): r for r in rows}
    colors = {"smtp-sink": "#999999", "postfix": "#1f77b4", "haraka": "#ff7f0e",
              "mxgate-dpdk-afp": "#9467bd",
              "mxgate-kernel": "#2ca02c", "mxgate-dpdk": "#d62728"}
    files = []

    def bars(metric, ylabel, title, suffix, log=False):
        fig, ax = plt.subplots(figsize=(11.5, 4.8))
        groups = len(args.shapes)
        slots = [(n, c) for n in args.peers for c in args.clients if runs_with(n, c)]
        nbar = len(slots)
        width = 0.8 / nbar
        for gi, shape in enumerate(args.shapes):
            for k, (name, client) in enumerate(slots):
                r = by.get((shape, name, client), {})
                v = metric(r) if "error" not in r and r else None
                x = gi + (k - nbar / 2 + 0.5) * width
                if v:
                    ax.bar(x, v, width, color=colors.get(name, "k"),
                           hatch="//" if client == "loadgen" else None,
                           edgecolor="white" if client == "loadgen" else None)
        ax.set_xticks(range(groups))
        ax.set_xticklabels([SHAPES[s][0] for s in args.shapes])
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[p]) for p in args.peers]
        labels = list(args.peers)
        if "loadgen" in args.clients and "smtp-source" in args.clients:
            handles += [plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black"),
                        plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black",
                                      hatch="//")]
            labels += ["smtp-source (solid)", "mxgate-loadgen (hatched)"]
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = f"{stem}-{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)

    sub = (f"{args.sessions} sessions, {args.messages} messages per run, "
           f"{info['nproc']} CPUs, {info['date'][:10]}")
    bars(lambda r: r.get("msgs_per_s"), "messages/s",
         f"Messages/s by peer and load ({sub})", "msgs")
    bars(cpu_cell, "server CPU us per message (log)",
         "Server CPU per message (mxgate-dpdk: busy poll time; af_packet for smtp-source, "
        "memif for loadgen)", "cpu", log=True)

    fig, axes = plt.subplots(1, len(args.shapes), figsize=(4 * len(args.shapes), 4),
                             squeeze=False)
    for ax, shape in zip(axes[0], args.shapes):
        for name in args.peers:
            runs = [r for r in results if (r["shape"], r["peer"], r["client"]) ==
                    (shape, name, "loadgen") and "error" not in r and "loadgen" in r]
            hist = {}
            for r in runs:
                for upper, n in r["loadgen"].get("latency_hist_us", {}).get("dot", []):
                    hist[upper] = hist.get(upper, 0) + n
            total = sum(hist.values())
            if not total:
                continue
            xs, ys, acc = [], [], 0
            for upper in sorted(hist):
                acc += hist[upper]
                xs.append(max(upper, 1) / 1000)
                ys.append(acc / total)
            label = name + (" (memif)" if name == "mxgate-dpdk" else "")
            ax.step(xs, ys, where="post", color=colors.get(name, "k"), label=label)
        ax.set_xscale("log")
        ax.set_xlim(left=0.01)  # replies under 10 us are in the first bucket
        ax.set_xlabel("final dot to reply, ms (log)")
        ax.set_title(SHAPES[shape][0], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of messages")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("mxgate-loadgen: reply latency CDF (end of data)", fontsize=10)
    fig.tight_layout()
    path = f"{stem}-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path)
    return files


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True, help="path to a release mxgate binary")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024,
                    help="message size of the reused and one shapes (4k: 4096)")
    ap.add_argument("--workers", type=int, default=2,
                    help="worker threads (kernel) and worker lcores (dpdk over af_packet)")
    ap.add_argument("--memif-workers", type=int, default=1,
                    help="dpdk worker lcores over memif (the generator takes a core too)")
    ap.add_argument("--haraka-nodes", type=int, default=None,
                    help="Haraka worker processes (default: --workers)")
    ap.add_argument("--idle-sleep-us", type=int, default=None,
                    help="mxgate_dpdk_idle_sleep_us for mxgate-dpdk (default: the gateway's)")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds one client run may take before it counts as failed")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run everything this many times (round-robin); cells are medians")
    ap.add_argument("--prefix", default=None, help="namespace prefix (default: mxPID)")
    ap.add_argument("--quiet-cpus", type=float, default=0.15,
                    help="before each run, wait until other work uses fewer CPUs than this")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait for that before running anyway (the table shows it)")
    ap.add_argument("--out", default=None,
                    help="write NAME.md, NAME.json and NAME-{msgs,cpu,latency}.png here")
    ap.add_argument("--name", default=None,
                    help="file name stem (default: DATE-side-by-side)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--proc-cpu", action="store_true",
                    help="account the server's CPU from /proc, not a cgroup (the fallback "
                         "where no cgroup can be made)")
    ap.add_argument("--from-json", default=None,
                    help="no runs: the table and plots again from an earlier NAME.json "
                         "(its runs and settings) into --out")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when a run failed or a count did not match")
    a = ap.parse_args(argv)
    if a.from_json:
        # the settings of the run that wrote it, but this invocation's outputs
        with open(a.from_json) as f:
            saved = json.load(f)["args"]
        for k, v in saved.items():
            if k not in ("out", "name", "no_plots", "from_json", "strict"):
                setattr(a, k, v)
        return a
    a.peers = [p.strip() for p in a.peers.split(",") if p.strip()]
    a.clients = [c.strip() for c in a.clients.split(",") if c.strip()]
    a.shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    for what, got, known in (("peer", a.peers, PEERS), ("client", a.clients, CLIENTS),
                             ("shape", a.shapes, SHAPES)):
        for x in got:
            if x not in known:
                ap.error(f"unknown {what} {x!r}; known: {', '.join(known)}")
    return a


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            doc = json.load(f)
        return write_outputs(doc["runs"], doc["machine"], args)
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, Postfix, DPDK, cgroups)")
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwinds like ^C: every
    # peer is stopped, the namespaces and cgroups removed
    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    binary = os.path.abspath(args.mxgate)
    gen = loadgen.loadgen_binary(binary) if "loadgen" in args.clients else None
    # room for every session on each side; as high as the hard limit allows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    info = machine_info()
    results = []
    run_id = 0
    with netns.Topology(args.prefix, kernel_link=True) as topo:
        add_loadgen_link(topo)
        # Repeats go round everything before the next, so a disturbance spreads over all
        for _ in range(args.repeat):
            for shape in args.shapes:
                for name in args.peers:
                    for client in args.clients:
                        if not runs_with(name, client):
                            continue
                        run_id += 1
                        res = run_one(name, client, shape, topo, args, binary, gen, run_id)
                        results.append(res)
                        if "error" in res:
                            print(f"  {shape:7s} {name:14s} {client:12s} FAILED: "
                                  f"{res['error'][:2000]}", file=sys.stderr)
                        else:
                            cpu = res.get("server_cpu")
                            print(f"  {shape:7s} {name:14s} {client:12s} "
                                  f"{res['messages'] / res['seconds']:9.0f} msg/s  "
                                  f"server counted {res['accepted']}/{res['messages']}"
                                  + (f"  cpu {cpu / res['messages'] * 1e6:.0f} us/msg"
                                     if cpu is not None and res['messages'] else ""),
                                  file=sys.stderr, flush=True)
    return write_outputs(results, info, args)


def slim(run):
    """A run as the JSON keeps it: of loadgen's histograms only the final dot's (the CDF
    plot's; the percentiles of every kind stay)."""
    lg = run.get("loadgen")
    if not lg or "latency_hist_us" not in lg:
        return run
    run = dict(run, loadgen=dict(lg))
    dot = lg["latency_hist_us"].get("dot", [])
    run["loadgen"]["latency_hist_us"] = {"dot": dot}
    return run


def write_outputs(results, info, args):
    """The table on standard output; with --out the table, JSON and plots in files."""
    rows = summarize(results, args)
    text, notes = markdown(rows, info, args)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        stem = os.path.join(args.out, args.name or
                            f"{info['date'][:10]}-side-by-side")
        files = [] if args.no_plots else plots(rows, results, args, stem, info)
        doc = {"machine": info, "args": {k: v for k, v in vars(args).items()},
               "rows": rows, "runs": [slim(r) for r in results],
               "plots": [os.path.basename(f) for f in files]}
        text_json = json.dumps(doc, indent=1)
        # histogram pairs on one line each: [upper, count]
        text_json = re.sub(r"\[\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2]", text_json)
        with open(f"{stem}.json", "w") as f:
            f.write(text_json + "\n")
        with open(f"{stem}.md", "w") as f:
            f.write(text)
            if files:
                f.write("\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})"
                                         for p in files) + "\n")
        print(f"wrote {stem}.md, {stem}.json" + (", " + ", ".join(files) if files else ""))
    if args.strict and notes:
        sys.exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
