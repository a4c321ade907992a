"""What scraping the metrics endpoint costs under load (issue 16's figure: scraping every
second under full load costs less than 1% of a core).

    python3 perf/metrics/bench_metrics.py --mxgate build-release/dataplane/mxgate \
        [--messages 20000] [--sessions 8] [--rounds 2] [--out perf/results/DATE-metrics.md]

A kernel-transport gateway (2 workers, metrics on 127.0.0.1) takes --messages from
smtp-source (--sessions parallel sessions, 1 KB messages; the spool keeps them, no relay)
in rounds that alternate: without scraping, then with a scrape every second (and, to show
the per-scrape cost, a run of 200 back-to-back scrapes at the end). Per round it reads the
gateway's CPU time (/proc/PID/stat), the metrics thread's own CPU time
(/proc/PID/task/TID/schedstat, thread "mx-metrics") and the wall time, and reports messages/s,
gateway CPU per message, and the scraping thread's CPU as a share of one core. Timing is
reported, never asserted.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mxtest  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def thread_cpu_s(pid, tid):
    """A thread's CPU time in seconds at nanosecond resolution (schedstat's first field;
    /proc/.../stat counts whole jiffies, too coarse for a thread that works 1 ms a second)."""
    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def metrics_tid(pid):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == "mx-metrics":
                return tid
    raise SystemExit("no mx-metrics thread: is mxgate_metrics_listen set?")


def one_round(gw, tid, messages, sessions, scrape):
    pid = gw.proc.pid
    stop = threading.Event()
    scrapes = []

    def scraper():
        while not stop.wait(1.0):
            t0 = time.monotonic()
            body = gw.scrape()
            scrapes.append((time.monotonic() - t0, len(body)))

    c0, m0, w0 = cpu_s(f"/proc/{pid}/stat"), thread_cpu_s(pid, tid), time.monotonic()
    th = threading.Thread(target=scraper) if scrape else None
    if th:
        th.start()
    r = subprocess.run(["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(messages),
                        "-l", "1000", "-f", "bench@sender.example", "-t", "u@relay.example",
                        f"127.0.0.1:{gw.port}"], capture_output=True, text=True)
    if th:
        stop.set()
        th.join()
    w1, c1, m1 = time.monotonic(), cpu_s(f"/proc/{pid}/stat"), thread_cpu_s(pid, tid)
    if r.returncode != 0:
        raise SystemExit(f"smtp-source: {r.stdout}{r.stderr}")
    wall = w1 - w0
    return {"scrape": scrape, "wall": wall, "msgs_s": messages / wall,
            "cpu_us_msg": (c1 - c0) / messages * 1e6, "metrics_cpu": m1 - m0,
            "metrics_core_pct": (m1 - m0) / wall * 100, "scrapes": len(scrapes),
            "scrape_ms": (sum(s[0] for s in scrapes) / len(scrapes) * 1000) if scrapes else 0,
            "bytes": scrapes[-1][1] if scrapes else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    mport = mxtest.free_port()
    gw = mxtest.Gateway(a.mxgate, workers=2,
                        extra_config=f"mxgate_metrics_listen = 127.0.0.1:{mport}\n"
)
    gw.metrics_port = mport
    gw.start()
    try:
        tid = metrics_tid(gw.proc.pid)
        rows = []
        for i in range(a.rounds):
            for scrape in (False, True):
                rows.append(one_round(gw, tid, a.messages, a.sessions, scrape))
                print(rows[-1], flush=True)
        # the cost of one scrape alone
        m0, t0 = thread_cpu_s(gw.proc.pid, tid), time.monotonic()
        for _ in range(200):
            body = gw.scrape()
        per_scrape_ms = (thread_cpu_s(gw.proc.pid, tid) - m0) / 200 * 1000
        wall_ms = (time.monotonic() - t0) / 200 * 1000
        samples = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    finally:
        gw.stop()
    off = [r for r in rows if not r["scrape"]]
    on = [r for r in rows if r["scrape"]]

    def avg(rs, k):
        return sum(r[k] for r in rs) / len(rs)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Metrics scraping under load ({datetime.date.today()})",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
        f"commit {commit}; kernel transport, 2 workers; smtp-source -s {a.sessions} "
        f"-m {a.messages} -l 1000 per round, {a.rounds} rounds each way.",
        "",
        "| | messages/s | gateway CPU µs/message | metrics thread CPU, % of a core |",
        "|---|---|---|---|",
        f"| no scraping | {avg(off, 'msgs_s'):.0f} | {avg(off, 'cpu_us_msg'):.1f} | "
        f"{avg(off, 'metrics_core_pct'):.3f} |",
        f"| scrape every second | {avg(on, 'msgs_s'):.0f} | {avg(on, 'cpu_us_msg'):.1f} | "
        f"{avg(on, 'metrics_core_pct'):.3f} |",
        "",
        f"One scrape: {samples} samples, {len(body)} bytes, {per_scrape_ms:.2f} ms of the "
        f"metrics thread's CPU (averaged over 200), {wall_ms:.2f} ms "
        f"wall from the client. Mean scrape time under load: {avg(on, 'scrape_ms'):.2f} ms.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


main()
