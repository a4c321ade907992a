#!/usr/bin/env python3
"""Side-by-side SMTP throughput: the same smtp-source load against each peer, one after
the other, in one run, across a two-namespace topology (tests/e2e/netns.py).

The load generator (Postfix's smtp-source) runs in the client namespace PREFIX-cl; every
server runs in the gateway namespace PREFIX-gw, so each one's traffic crosses a veth pair and
the client's kernel, never the loopback shortcut:
  smtp-sink        Postfix's test sink: no durability, the kernel's ceiling
                   (kernel veth, 10.78.0.2)
  postfix          Debian's Postfix, private instance, durable queue; every message is put
                   on hold (check_client_access static:HOLD) so it stays queued, as a
                   gateway's spool would hold it, instead of being delivered onwards
                   (kernel veth, 10.78.0.2; master and its smtpd processes in PREFIX-gw)
  mxgate-kernel    mxgate on the kernel transport, 250 only after fdatasync
                   (kernel veth, 10.78.0.2)
  mxgate-dpdk      mxgate on the dpdk transport, DPDK net_af_packet on the other veth pair
                   (10.77.0.2), its own TCP/IP stack, 250 only after fdatasync

Load: smtp-source `-s SESSIONS -m MESSAGES -l SIZE`, in two shapes: sessions reused for many
messages (-d) and one session per message.

Reported per peer: messages/s, sessions/s, the ratio to Postfix, and server CPU per
message: busy CPU time of the whole machine during the run (from /proc/stat) minus the
client's own CPU time, divided by messages. That counts every process a server uses
(Postfix's smtpd, cleanup, qmgr...) the same way as mxgate's one process, and the softirq
time of both ends of the veth. A DPDK poll loop counts as busy while it polls, so for
mxgate-dpdk the table adds what the gateway itself measured: busy cycles (poll iterations
that did work, from its SIGUSR1 statistics, after minus before the run) per message and per
session, converted to microseconds with the TSC frequency printed below the table, and its
worker threads' CPU time per message (worker_cpu_ns). With --repeat N every peer and shape
runs N times, round-robin, and each cell is the median run.

Other work on the machine counts in the CPU columns: before each run the script waits until
the machine is quiet (--quiet-cpus, --quiet-wait) and reports what was running just before.

Usage (as root, with a release build):
  python3 perf/side_by_side.py --mxgate build-release/dataplane/mxgate \
      [--messages 20000] [--sessions 20] [--size 4096] [--workers 2] \
      [--peers smtp-sink,postfix,mxgate-kernel,mxgate-dpdk] [--timeout 300] \
      [--idle-sleep-us N] [--quiet-cpus 0.15] [--quiet-wait 60] [--repeat 1]
"""

import argparse
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import mxtest  # noqa: E402  (Gateway, PostfixPeer, free_port)
import netns  # noqa: E402  (Topology, DpdkGateway)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHAPES = (("sessions reused (-d)", True), ("one session per message", False))


class PeerError(Exception):
    pass


def machine_busy_seconds():
    """Busy CPU seconds of all cores so far (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def background_cpus(seconds=1.0):
    """CPUs' worth of busy time on the machine over the next `seconds`, with no peer running:
    other people's work that the server CPU column would otherwise count."""
    b0, t0 = machine_busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_seconds() - b0) / (time.monotonic() - t0)


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until background_cpus() is under limit; returns the last
    measurement."""
    deadline = time.monotonic() + max_wait
    bg = background_cpus()
    while bg >= limit and time.monotonic() < deadline:
        bg = background_cpus()
    return bg


def tsc_hz():
    """The TSC frequency the kernel measured at boot ("tsc: Refined TSC clocksource
    calibration" beats "tsc: Detected"), else /proc/cpuinfo's cpu MHz (which, with
    constant_tsc, is the TSC's rate on most x86 VMs). Returns (hz, where it came from)."""
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


# A client-side probe: connect, read the 220 greeting. Connecting alone proves little.
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


def run_load(topo, host, port, messages, sessions, size, reuse, timeout):
    """smtp-source in the client namespace; returns (elapsed s, server CPU s)."""
    args = ["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(messages),
            "-l", str(size), "-f", "bench@source.example", "-t", "sink@localhost"]
    if reuse:
        args.append("-d")
    args.append(f"{host}:{port}")
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    # `ip netns exec` execs smtp-source after setns(2): the child's rusage is the client's
    child = topo.cl_popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timer = threading.Timer(timeout, child.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(child.pid, 0)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - t0
    busy = machine_busy_seconds() - busy0
    child.returncode = os.waitstatus_to_exitcode(status)
    out = child.stdout.read().decode(errors="replace")
    if child.returncode != 0:
        if elapsed >= timeout:
            raise PeerError(f"smtp-source did not finish within {timeout} s: {out[-500:]}")
        raise PeerError(f"smtp-source failed ({child.returncode}): {out[-500:]}")
    client_cpu = usage.ru_utime + usage.ru_stime
    return elapsed, max(busy - client_cpu, 0.0)


def spool_count(binary, spool):
    """Messages in a spool (mxgate-spoolcat -l: one line each)."""
    r = subprocess.run([mxtest.spoolcat_binary(binary), "-l", spool], capture_output=True,
                       text=True)
    return len([line for line in r.stdout.splitlines() if line.strip()])


class SinkPeer:
    name = "smtp-sink"

    def __init__(self, topo):
        self.topo = topo
        self.host = topo.kernel_gw_ip4

    def __enter__(self):
        self.port = mxtest.free_port()
        self.proc = self.topo.gw_popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-c",
                                        f"{self.host}:{self.port}", "1024"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_greeting(self.topo, self.host, self.port, proc=self.proc):
            self.__exit__()
            raise PeerError("smtp-sink did not start")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def netns_id(pid):
    return os.readlink(f"/proc/{pid}/ns/net")


class PostfixPeer:
    name = "postfix"

    def __init__(self, topo):
        self.topo = topo
        self.host = topo.kernel_gw_ip4

    def __enter__(self):
        # Every message goes on hold: durable in the queue, never delivered onwards. No
        # reverse DNS lookup of the client (mxgate does none either; the namespace has no
        # resolver).
        self.pf = mxtest.PostfixPeer(
            relayhost="[127.0.0.1]:9",
            listen_host=self.host,
            command_prefix=["ip", "netns", "exec", self.topo.gw_ns],
            extra_main_cf=(f"mynetworks = 127.0.0.0/8 {self.topo.kernel_cl_ip4}/32\n"
                           "smtpd_client_restrictions = check_client_access static:HOLD\n"
                           "smtpd_peername_lookup = no\n"
                           "default_process_limit = 200\n"
                           "smtpd_client_connection_count_limit = 0\n"
                           "smtpd_client_connection_rate_limit = 0\n"
                           "smtpd_client_message_rate_limit = 0\n"
                           "in_flow_delay = 0\n"))
        self.pf.start()
        self.port = self.pf.smtpd_port
        if not wait_greeting(self.topo, self.host, self.port):
            self.__exit__()
            raise PeerError(f"postfix did not start:\n{self.pf.log()}")
        # master (and so every smtpd it forks) must live in the gateway namespace
        with open(os.path.join(self.pf.dir, "queue", "pid", "master.pid")) as f:
            master = int(f.read().split()[0])
        want = self.topo.gw(["readlink", "/proc/self/ns/net"], capture_output=True,
                            text=True).stdout.strip()
        if netns_id(master) != want:
            self.__exit__()
            raise PeerError(f"postfix master {master} is in {netns_id(master)}, not {want}")
        return self

    def accepted(self):
        """Messages in the queue (all held): postqueue -p ends "-- N Kbytes in M Requests."."""
        r = self.topo.gw(["/usr/sbin/postqueue", "-c", self.pf.conf, "-p"],
                         capture_output=True, text=True)  # in the namespace: inet_interfaces
        m = re.search(r"in (\d+) Requests?\.", r.stdout)
        return int(m.group(1)) if m else 0

    def __exit__(self, *exc):
        self.pf.stop()
        shutil.rmtree(self.pf.dir, ignore_errors=True)


class MxgateKernelPeer:
    name = "mxgate-kernel"

    def __init__(self, topo, binary, workers):
        self.topo = topo
        self.binary = binary
        self.workers = workers
        self.host = topo.kernel_gw_ip4

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
    name = "mxgate-dpdk"

    def __init__(self, topo, binary, workers, idle_sleep_us):
        self.topo = topo
        self.binary = binary
        self.workers = workers
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True, help="path to a release mxgate binary")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2,
                    help="worker threads (kernel) and worker lcores (dpdk)")
    ap.add_argument("--idle-sleep-us", type=int, default=None,
                    help="mxgate_dpdk_idle_sleep_us for mxgate-dpdk (default: the gateway's)")
    ap.add_argument("--peers", default="smtp-sink,postfix,mxgate-kernel,mxgate-dpdk")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds one smtp-source run may take before it counts as failed")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every peer and shape this many times; the table shows medians")
    ap.add_argument("--prefix", default=None, help="namespace prefix (default: mxPID)")
    ap.add_argument("--quiet-cpus", type=float, default=0.15,
                    help="before each run, wait until other work uses fewer CPUs than this")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait for that before running anyway (the table shows it)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (namespaces, Postfix, DPDK)")
    binary = os.path.abspath(args.mxgate)
    # room for every session on each side; as high as the hard limit allows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    results = {}
    with netns.Topology(args.prefix, kernel_link=True) as topo:
        peers = {
            "smtp-sink": lambda: SinkPeer(topo),
            "postfix": lambda: PostfixPeer(topo),
            "mxgate-kernel": lambda: MxgateKernelPeer(topo, binary, args.workers),
            "mxgate-dpdk": lambda: MxgateDpdkPeer(topo, binary, args.workers,
                                                  args.idle_sleep_us),
        }
        for name in wanted:
            if name not in peers:
                sys.exit(f"unknown peer {name!r}; known: {', '.join(peers)}")
        # Repeats go round all peers before the next, so a disturbance spreads over them
        for rep in range(args.repeat):
            for shape, reuse in SHAPES:
                for name in wanted:
                    res = run_peer(peers[name], name, topo, args, reuse)
                    results.setdefault((shape, name), []).append(res)
                    if "error" in res:
                        print(f"  {shape:26s} {name:14s} FAILED: {res['error'][:2000]}",
                              file=sys.stderr)
                    else:
                        extra = ""
                        if "accepted" in res:
                            extra = f"  ({res['accepted']} in the spool)"
                        print(f"  {shape:26s} {name:14s} {args.messages / res['elapsed']:9.0f} "
                              f"msg/s{extra}", file=sys.stderr)
    report(results, wanted, args)


def run_peer(make, name, topo, args, reuse):
    bg = wait_quiet(args.quiet_cpus, args.quiet_wait)
    res = {}
    try:
        with make() as peer:
            before = peer.stats() if name == "mxgate-dpdk" else None
            res["elapsed"], res["cpu"] = run_load(topo, peer.host, peer.port, args.messages,
                                                  args.sessions, args.size, reuse,
                                                  args.timeout)
            if before is not None:
                after = peer.stats()
                res["stats"] = {k: after[k] - before.get(k, 0) for k in after}
                res["stats_after"] = after
            if hasattr(peer, "accepted"):
                res["accepted"] = peer.accepted()
    except PeerError as e:
        res = {"error": str(e)}
    res["background"] = bg
    return res


def median_run(runs):
    """The run with the median time among those that finished (the lower middle one for
    an even count), or None."""
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["elapsed"])
    return ok[(len(ok) - 1) // 2] if ok else None


def report(results, wanted, args):
    hz, hz_from = tsc_hz()
    for runs in results.values():  # the gateway's own rte_get_tsc_hz(), when it ran
        for r in runs:
            if r.get("stats_after", {}).get("tsc_hz"):
                hz = float(r["stats_after"]["tsc_hz"])
                hz_from = "rte_get_tsc_hz(), from mxgate's statistics"
    print(f"\n{args.messages} messages of {args.size} bytes from {args.sessions} "
          f"concurrent smtp-source sessions (client namespace, over veth), "
          f"{os.cpu_count()} cores, {args.workers} mxgate workers, "
          f"{time.strftime('%Y-%m-%d')}" +
          (f"; each cell is the median of {args.repeat} runs" if args.repeat > 1 else "") +
          "\n")
    print("| load | peer | messages/s | " + ("range of messages/s | " if args.repeat > 1 else "") +
          "sessions/s | ratio to Postfix | server CPU us/message | dpdk busy cycles/message | "
          "dpdk busy cycles/session | dpdk worker CPU us/message | other load before (CPUs) |")
    print("|---|---|---:|" + ("---:|" if args.repeat > 1 else "") +
          "---:|---:|---:|---:|---:|---:|---:|")
    notes = []
    for shape, reuse in SHAPES:
        base = median_run(results.get((shape, "postfix"), []))
        for name in wanted:
            runs = results[(shape, name)]
            for r in runs:
                if "error" in r:
                    notes.append(f"{shape}, {name}: {r['error'].splitlines()[0][:300]}")
                elif "accepted" in r and r["accepted"] != args.messages:
                    notes.append(f"{shape}, {name}: {r['accepted']} messages in the spool, "
                                 f"not {args.messages}")
            res = median_run(runs)
            rng = ""
            if args.repeat > 1:
                rates = [args.messages / r["elapsed"] for r in runs if "error" not in r]
                rng = f"{min(rates):.0f}-{max(rates):.0f} | " if rates else "| "
            if res is None:
                print(f"| {shape} | {name} | failed | {rng}| | | | | | | |")
                continue
            elapsed = res["elapsed"]
            rate = args.messages / elapsed
            sessions = args.sessions if reuse else args.messages
            ratio = f"{(base['elapsed'] / elapsed):.2f}" if base else "-"
            cyc_msg = cyc_sess = wcpu = ""
            st = res.get("stats")
            if st is not None and "busy_cycles" in st:
                cm = st["busy_cycles"] / args.messages
                cs = st["busy_cycles"] / sessions
                us = (lambda c: f" ({c / hz * 1e6:.0f} us)") if hz else (lambda c: "")
                cyc_msg, cyc_sess = f"{cm:,.0f}{us(cm)}", f"{cs:,.0f}{us(cs)}"
            if st is not None and "worker_cpu_ns" in st:
                wcpu = f"{st['worker_cpu_ns'] / args.messages / 1000:.0f}"
            srate = sessions / elapsed
            srate = f"{srate:.1f}" if srate < 100 else f"{srate:.0f}"
            print(f"| {shape} | {name} | {rate:.0f} | {rng}{srate} | {ratio} | "
                  f"{res['cpu'] / args.messages * 1e6:.0f} | {cyc_msg} | {cyc_sess} | {wcpu} | "
                  f"{res['background']:.2f} |")
    print(f"\nTSC: {hz / 1e6:.3f} MHz ({hz_from})" if hz else "\nTSC frequency: unknown")
    for shape, _ in SHAPES:
        res = median_run(results.get((shape, "mxgate-dpdk"), []))
        st = res.get("stats") if res else None
        if st:
            keys = ("rx_packets", "tx_packets", "rx_missed", "steered", "steer_drops",
                    "busy_cycles", "total_cycles", "idle_sleeps", "worker_cpu_ns", "tcp_syn",
                    "tcp_syn_cookie_sent", "tcp_rst_sent", "tcp_retransmits", "rx_bad_csum",
                    "messages_accepted", "connections_accepted")
            diff = " ".join(f"{k}={st[k]}" for k in keys if k in st)
            level = " ".join(f"{k}={res['stats_after'][k]}" for k in ("mbufs_in_use", "mbufs_total")
                             if k in res["stats_after"])
            print(f"mxgate-dpdk, {shape} (median run): during the run {diff}; after it {level}")
    for n in notes:
        print(f"NOTE: {n}")


if __name__ == "__main__":
    main()
