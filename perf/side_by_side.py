#!/usr/bin/env python3
"""Side-by-side SMTP throughput: the same smtp-source load against each peer, one after
the other, in one run.

Peers (each on 127.0.0.1, one at a time):
  smtp-sink        Postfix's test sink: no durability, the kernel's ceiling
  postfix          Debian's Postfix, private instance, durable queue; every message is put
                   on hold (check_client_access static:HOLD) so it stays queued, as a
                   gateway's spool would hold it, instead of being delivered onwards
  mxgate-kernel    mxgate on the kernel transport (250 only after fdatasync)

Load: Postfix's smtp-source, `-s SESSIONS -m MESSAGES -l SIZE`, in two shapes: sessions
reused for many messages (-d) and one session per message.

Reported per peer: messages/s, sessions/s, the ratio to Postfix, and server CPU per
message: busy CPU time of the whole machine during the run (from /proc/stat) minus the
client's own CPU time, divided by messages. That counts every process a server uses
(Postfix's smtpd, cleanup, qmgr...) the same way as mxgate's one process.

Usage (as root, with a release build):
  python3 perf/side_by_side.py --mxgate build-release/dataplane/mxgate \
      [--messages 20000] [--sessions 20] [--size 4096] [--peers smtp-sink,postfix,mxgate-kernel]
"""

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
import mxtest  # noqa: E402  (Gateway, PostfixPeer, free_port, wait_port)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """Busy CPU seconds of all cores so far (user+nice+system+irq+softirq+steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def run_load(port, messages, sessions, size, reuse):
    args = ["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(messages),
            "-l", str(size), "-f", "bench@source.example", "-t", "sink@localhost"]
    if reuse:
        args.append("-d")
    args.append(f"127.0.0.1:{port}")
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - t0
    busy = machine_busy_seconds() - busy0
    out = child.stdout.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"smtp-source failed: {out}")
    client_cpu = usage.ru_utime + usage.ru_stime
    return elapsed, max(busy - client_cpu, 0.0)


class SinkPeer:
    name = "smtp-sink"

    def __enter__(self):
        self.port = mxtest.free_port()
        self.proc = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-c",
                                      f"127.0.0.1:{self.port}", "1024"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not mxtest.wait_port("127.0.0.1", self.port, proc=self.proc):
            raise RuntimeError("smtp-sink did not start")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


class PostfixPeer:
    name = "postfix"

    def __enter__(self):
        # Every message goes on hold: durable in the queue, never delivered onwards.
        self.pf = mxtest.PostfixPeer(
            relayhost="[127.0.0.1]:9",
            extra_main_cf=("mynetworks = 127.0.0.0/8\n"
                           "smtpd_client_restrictions = check_client_access static:HOLD\n"
                           "default_process_limit = 200\n"
                           "smtpd_client_connection_count_limit = 0\n"
                           "smtpd_client_connection_rate_limit = 0\n"
                           "smtpd_client_message_rate_limit = 0\n"
                           "in_flow_delay = 0\n"))
        self.pf.start()
        self.port = self.pf.smtpd_port
        if not mxtest.wait_port("127.0.0.1", self.port):
            raise RuntimeError(f"postfix did not start:\n{self.pf.log()}")
        return self

    def __exit__(self, *exc):
        self.pf.stop()
        shutil.rmtree(self.pf.dir, ignore_errors=True)


class MxgatePeer:
    name = "mxgate-kernel"

    def __init__(self, binary, workers):
        self.binary = binary
        self.workers = workers

    def __enter__(self):
        self.gw = mxtest.Gateway(self.binary, workers=self.workers,
                                 extra_config="smtpd_recipient_limit = 1000\n")
        self.gw.start()
        self.port = self.gw.port
        return self

    def __exit__(self, *exc):
        self.gw.stop(check=False)
        shutil.rmtree(self.gw.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True, help="path to a release mxgate binary")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--peers", default="smtp-sink,postfix,mxgate-kernel")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (Postfix needs it)")
    # room for every session on each side; as high as the hard limit allows
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    peers = {
        "smtp-sink": SinkPeer,
        "postfix": PostfixPeer,
        "mxgate-kernel": lambda: MxgatePeer(args.mxgate, args.workers),
    }
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    results = {}
    for shape, reuse in (("sessions reused (-d)", True), ("one session per message", False)):
        for name in wanted:
            with peers[name]() as peer:
                elapsed, server_cpu = run_load(peer.port, args.messages, args.sessions,
                                               args.size, reuse)
            results[(shape, name)] = (elapsed, server_cpu)
            print(f"  {shape:26s} {name:14s} {args.messages / elapsed:9.0f} msg/s",
                  file=sys.stderr)

    print(f"\n{args.messages} messages of {args.size} bytes from {args.sessions} "
          f"concurrent smtp-source sessions, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}\n")
    print(f"| load | peer | messages/s | sessions/s | ratio to Postfix | "
          f"server CPU us/message |")
    print("|---|---|---:|---:|---:|---:|")
    for shape, reuse in (("sessions reused (-d)", True), ("one session per message", False)):
        base = results.get((shape, "postfix"))
        for name in wanted:
            elapsed, cpu = results[(shape, name)]
            rate = args.messages / elapsed
            sessions = args.sessions if reuse else args.messages
            ratio = f"{(base[0] / elapsed):.2f}" if base else "-"
            print(f"| {shape} | {name} | {rate:.0f} | {sessions / elapsed:.0f} | {ratio} | "
                  f"{cpu / args.messages * 1e6:.0f} |")


if __name__ == "__main__":
    main()
