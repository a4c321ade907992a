#!/usr/bin/env python3
"""Spool benchmark: what group commit buys, measured side by side in one run.

    bench_spool.py MXGATE [--before OLD_MXGATE] [--dir DIR] [--quick]

On the file system of DIR (default: $TMPDIR or /tmp):
  1. the disk's own durable write rate: fio, 4 KiB writes each followed by fdatasync
     (--rw=write --bs=4k --fdatasync=1 --size=64m): the most messages per second a spool
     that syncs once per message could accept;
  2. accepted messages/s with durability on (every 250 follows an fdatasync): Postfix's
     smtp-source, -s 20 and -s 50 sessions, -l 4096, -m 5000, against MXGATE (and OLD_MXGATE
     for a before/after comparison);
  3. the latency that durability adds, final dot to 250, p50 and p99, at low load (1
     session) and high load (50 sessions), measured client-side.
The gateway's own count of fdatasync calls (its "spool statistics" log line) shows the
batch size. Use a release build: a debug/ASan build measures the sanitizers.

--sync-delay-us N with --slow-sync LIB (perf/spool/slow_sync.c, built by meson) makes every
fdatasync/fsync of fio AND of the gateway N microseconds slower, as on a disk whose flush
costs that much: a VM's virtual disk that acknowledges flushes in a fraction of a
millisecond hides what group commit buys, because the CPU, not the disk, is then the
limit. The run is printed both ways: the disk as it is, then the slowed one.
Python 3 standard library, /usr/sbin/smtp-source (postfix) and fio (Debian packages)."""

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "e2e"))
from mxtest import Gateway  # noqa: E402

LENGTH = 4096


def fio_rate(directory, size):
    if not shutil.which("fio"):
        return None
    d = tempfile.mkdtemp(prefix="fio-", dir=directory)
    try:
        r = subprocess.run(["fio", "--name=fdatasync", f"--directory={d}", "--rw=write",
                            "--bs=4k", "--fdatasync=1", f"--size={size}",
                            "--output-format=json"], capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            print(f"fio failed: {r.stderr}", file=sys.stderr)
            return None
        job = json.loads(r.stdout)["jobs"][0]
        return job["write"]["iops"]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def spool_stats(gw):
    m = re.findall(r"spool \d+ statistics: committed=(\d+) failed=(\d+) syncs=(\d+)", gw.log())
    return tuple(int(x) for x in m[-1]) if m else None


def smtp_source_rate(binary, sessions, messages, workers):
    gw = Gateway(binary, workers=workers)
    with gw:
        t0 = time.monotonic()
        r = subprocess.run(["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(messages),
                            "-l", str(LENGTH), "-f", "bench@source.example",
                            "-t", "sink@localhost", f"127.0.0.1:{gw.port}"],
                           capture_output=True, text=True, timeout=900)
        elapsed = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"smtp-source failed: {r.stdout}{r.stderr}")
        gw.stop()
        m = re.search(r"statistics \(shutdown\):.* messages_accepted=(\d+)", gw.log())
        accepted = int(m.group(1)) if m else -1
        if accepted != messages:
            raise SystemExit(f"{accepted} messages accepted, expected {messages}")
        return messages / elapsed, spool_stats(gw)


async def latency_session(port, count, out):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.example\r\n")
    await writer.drain()
    await reply()
    body = b"Subject: latency\r\n\r\n" + (b"x" * 78 + b"\r\n") * (LENGTH // 80)
    for _ in range(count):
        writer.write(b"MAIL FROM:<l@bench.example>\r\nRCPT TO:<sink@localhost>\r\nDATA\r\n")
        await writer.drain()
        for want in (b"250", b"250", b"354"):
            line = await reply()
            if not line.startswith(want):
                raise RuntimeError(line)
        writer.write(body)
        await writer.drain()
        writer.write(b".\r\n")
        t0 = time.perf_counter()
        await writer.drain()
        line = await reply()
        out.append(time.perf_counter() - t0)
        if not line.startswith(b"250"):
            raise RuntimeError(line)
    writer.write(b"QUIT\r\n")
    await writer.drain()
    await reply()
    writer.close()


def latency(binary, sessions, per_session, workers):
    gw = Gateway(binary, workers=workers)
    with gw:
        samples = []

        async def run():
            await asyncio.gather(*(latency_session(gw.port, per_session, samples)
                                   for _ in range(sessions)))

        asyncio.run(run())
    samples.sort()
    p50 = statistics.median(samples) * 1e3
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3
    return p50, p99, len(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mxgate")
    ap.add_argument("--before", help="an older mxgate binary to compare with")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp"),
                    help="file system to measure (spools and fio files go here)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smaller runs, for CI smoke tests")
    ap.add_argument("--sync-delay-us", type=int, default=0,
                    help="also run with every fdatasync this much slower (needs --slow-sync)")
    ap.add_argument("--slow-sync", help="the slow_sync LD_PRELOAD library")
    a = ap.parse_args()
    if a.sync_delay_us and not (a.slow_sync and os.path.exists(a.slow_sync)):
        raise SystemExit("--sync-delay-us needs --slow-sync LIB (perf/spool/slow_sync.c)")
    os.environ["TMPDIR"] = a.dir
    tempfile.tempdir = a.dir
    messages = 1000 if a.quick else 5000

    runs = [(0, "16m" if a.quick else "64m")]
    if a.sync_delay_us:
        runs.append((a.sync_delay_us, "4m" if a.quick else "16m"))
    for delay, fio_size in runs:
        if delay:
            os.environ["LD_PRELOAD"] = os.path.abspath(a.slow_sync)
            os.environ["MXGATE_SYNC_DELAY_US"] = str(delay)
            print(f"\n== the same with every fdatasync/fsync {delay} us slower (slow_sync)")
        rate = fio_rate(a.dir, fio_size)
        print(f"disk ({a.dir}): fio 4k write + fdatasync: "
              + (f"{rate:.0f} syncs/s" if rate else "fio not installed"))
        run_binaries(a, messages, rate)
        os.environ.pop("LD_PRELOAD", None)
        os.environ.pop("MXGATE_SYNC_DELAY_US", None)


def run_binaries(a, messages, rate):
    bins = [("after", a.mxgate)] + ([("before", a.before)] if a.before else [])
    results = {}
    for label, binary in bins:
        for s in (20, 50):
            mps, st = smtp_source_rate(binary, s, messages, a.workers)
            extra = ""
            if st:
                extra = f", {st[2]} syncs, {st[0] / max(st[2], 1):.1f} messages per sync"
            ratio = f" = {mps / rate:.1f}x the disk's sync rate" if rate else ""
            print(f"{label}: smtp-source -s {s} -l {LENGTH} -m {messages}: "
                  f"{mps:.0f} msg/s{ratio}{extra}")
            results[(label, s)] = mps
        for sessions, per in ((1, 100 if a.quick else 300), (50, 10 if a.quick else 40)):
            p50, p99, n = latency(binary, sessions, per, a.workers)
            print(f"{label}: final dot to 250, {sessions} session(s), {n} messages: "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    if a.before:
        for s in (20, 50):
            print(f"after/before at -s {s}: {results[('after', s)] / results[('before', s)]:.2f}x")


if __name__ == "__main__":
    main()
