#!/usr/bin/env python3
"""The worker-to-spool hand-off, before and after, side by side in one run.

    bench_handoff.py AFTER_MXGATE BEFORE_MXGATE [--messages N] [--sessions S]
                     [--rounds R] [--workers W] [--slow-sync LIB --sync-delay-us US]

For each round, each binary in turn (before, after, before, after...): the kernel transport
on 127.0.0.1 with W workers, Postfix's smtp-source -d (sessions reused) -s S -m N -l 4096,
and, read from /proc/PID/task/*/status just before and after the load, the context
switches of every thread, grouped by thread name (the spool writer is "mxgate-spool"; the
workers are the kernel transport's threads). Voluntary switches are the times a thread
blocked (a futex or condition-variable wait, a contended mutex, epoll_wait), so per
message they show how often the hand-off put a thread to sleep and woke it. Printed per
binary: messages/s (median of the rounds), and voluntary / involuntary switches per message
for the writer, the workers and the whole process.

With --slow-sync (perf/spool/slow_sync.c) every fdatasync takes US microseconds longer, as
on a disk whose flush costs that much: the writer then sleeps in the sync, not for want of
work, and batches grow. Python 3 standard library and /usr/sbin/smtp-source (postfix)."""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "e2e"))
from mxtest import Gateway  # noqa: E402


def thread_switches(pid):
    """{tid: (name, voluntary, involuntary)} of the live threads of pid."""
    out = {}
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/status") as f:
                st = f.read()
        except OSError:
            continue
        v = int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", st, re.M).group(1))
        n = int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", st, re.M).group(1))
        out[tid] = (name, v, n)
    return out


def group(name):
    if name == "mxgate-spool":
        return "writer"
    if name.startswith("mxgate-w") or name.startswith("mx-worker") or name.startswith("kt"):
        return "workers"
    return "other"


def one_run(binary, a):
    gw = Gateway(binary, workers=a.workers)
    with gw:
        pid = gw.proc.pid
        before = thread_switches(pid)
        t0 = time.monotonic()
        r = subprocess.run(["/usr/sbin/smtp-source", "-d", "-s", str(a.sessions),
                            "-m", str(a.messages), "-l", "4096",
                            "-f", "bench@source.example", "-t", "sink@localhost",
                            f"127.0.0.1:{gw.port}"], capture_output=True, text=True,
                           timeout=900)
        elapsed = time.monotonic() - t0
        after = thread_switches(pid)
        if r.returncode != 0:
            raise SystemExit(f"smtp-source failed: {r.stdout}{r.stderr}")
        gw.stop()
        m = re.search(r"statistics \(shutdown\):.* messages_accepted=(\d+)", gw.log())
        accepted = int(m.group(1)) if m else -1
        if accepted != a.messages:
            raise SystemExit(f"{binary}: {accepted} messages accepted, expected {a.messages}")
        syncs = re.findall(r"spool \d+ statistics: committed=\d+ failed=\d+ syncs=(\d+)",
                           gw.log())
    sw = {"writer": [0, 0], "workers": [0, 0], "other": [0, 0]}
    names = {}
    for tid, (name, v, n) in after.items():
        v0, n0 = before.get(tid, (name, 0, 0))[1:]
        g = group(name)
        names.setdefault(g, set()).add(name)
        sw[g][0] += v - v0
        sw[g][1] += n - n0
    return a.messages / elapsed, sw, int(syncs[-1]) if syncs else -1, names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("after")
    ap.add_argument("before")
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--slow-sync", help="the slow_sync LD_PRELOAD library")
    ap.add_argument("--sync-delay-us", type=int, default=0)
    a = ap.parse_args()
    if a.sync_delay_us:
        if not (a.slow_sync and os.path.exists(a.slow_sync)):
            raise SystemExit("--sync-delay-us needs --slow-sync LIB (perf/spool/slow_sync.c)")
        os.environ["LD_PRELOAD"] = os.path.abspath(a.slow_sync)
        os.environ["MXGATE_SYNC_DELAY_US"] = str(a.sync_delay_us)
    res = {"before": [], "after": []}
    for rnd in range(a.rounds):
        for label, binary in (("before", a.before), ("after", a.after)):
            rate, sw, syncs, names = one_run(binary, a)
            res[label].append((rate, sw, syncs))
            print(f"round {rnd + 1} {label}: {rate:.0f} msg/s, {syncs} syncs, switches "
                  f"(voluntary/involuntary) writer {sw['writer'][0]}/{sw['writer'][1]}, "
                  f"workers {sw['workers'][0]}/{sw['workers'][1]}, "
                  f"other {sw['other'][0]}/{sw['other'][1]}", flush=True)
            if rnd == 0 and label == "before":
                print(f"  threads: {dict((k, sorted(v)) for k, v in names.items())}")
    n = a.messages
    print(f"\n{a.sessions} sessions, {n} x 4 KiB messages, {a.workers} workers, "
          f"{a.rounds} rounds" + (f", fdatasync +{a.sync_delay_us} us" if a.sync_delay_us
                                  else "") + "; medians")
    print("| binary | msg/s | syncs | writer vol/invol per msg | workers vol/invol per msg "
          "| process vol per msg |")
    print("|---|---:|---:|---:|---:|---:|")
    for label in ("before", "after"):
        runs = res[label]

        def med(f):
            return statistics.median(f(r) for r in runs)
        print(f"| {label} | {med(lambda r: r[0]):,.0f} | {med(lambda r: r[2]):,.0f} "
              f"| {med(lambda r: r[1]['writer'][0]) / n:.2f} / "
              f"{med(lambda r: r[1]['writer'][1]) / n:.2f} "
              f"| {med(lambda r: r[1]['workers'][0]) / n:.2f} / "
              f"{med(lambda r: r[1]['workers'][1]) / n:.2f} "
              f"| {med(lambda r: sum(v[0] for v in r[1].values())) / n:.2f} |")


if __name__ == "__main__":
    main()
