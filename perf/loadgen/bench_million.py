#!/usr/bin/env python3
"""A million idle SMTP sessions on one gateway worker (issue 17, part 3): mxgate-loadgen
--idle over net_memif opens --connections sessions, reads each greeting and stays silent;
then every one sends QUIT. Measured on the gateway:

  ramp      connections greeted per second while ramping (the gateway's open_connections
            sampled every --sample seconds; the rate from the first to the last sample)
  memory    process RSS (/proc/PID/status VmRSS) before, while holding, after the release;
            mbufs in use (the dpdk statistics line); all-in bytes per connection =
            (RSS growth + mbufs held beyond the baseline x the mbuf's element size) / N;
            and the gateway's own account (conn_bytes_each: structs of the connections)
  timers    busy cycles per second of the worker while it holds them (--hold seconds of
            silence; idle-timer visits on the wheel, the memory sampler) against the same
            window before any connection came
  release   after SIGUSR2 (every session sends QUIT): the generator's greeted/done/errors
            (none lost), how long the gateway took to reach 0 open connections, and its
            RSS right after and --settle seconds later (jemalloc returns dirty pages after
            its decay time, 10 s by default)

Root; a release build; two CPUs (the gateway's worker and main lcore on --gw-cpu, the
generator on --gen-cpu):

    python3 perf/loadgen/bench_million.py --mxgate build-rel/dataplane/mxgate \\
        [--connections 1000000] [--gw-cpu 0 --gen-cpu 1] [--json out.json]

The gateway's configuration for a long hold (not its defaults): mxgate_max_connections
above N (one worker), smtpd_timeout = 3600s (the default is 300 s, 10 s under stress),
a /12 of source addresses for the generator (16 sessions per address and port range).
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
import loadgen  # noqa: E402
import mxtest  # noqa: E402

MBUF_BYTES = 2176 + 128 + 64  # RTE_MBUF_DEFAULT_BUF_SIZE + struct rte_mbuf + pool header


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def busy_rate(gw, seconds):
    """The worker's busy cycles per second (and its busy share) over `seconds`."""
    a = gw.stats()
    t0 = time.monotonic()
    time.sleep(seconds)
    b = gw.stats()
    dt = time.monotonic() - t0
    busy = b["busy_cycles"] - a["busy_cycles"]
    total = max(b["total_cycles"] - a["total_cycles"], 1)
    return {"seconds": round(dt, 2), "busy_cycles_per_s": int(busy / dt),
            "busy_share": round(busy / total, 4),
            "cpu_ns_per_s": int((b.get("worker_cpu_ns", 0) - a.get("worker_cpu_ns", 0)) / dt)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--connections", type=int, default=1000000)
    ap.add_argument("--gw-cpu", type=int, default=0)
    ap.add_argument("--gen-cpu", type=int, default=1)
    ap.add_argument("--src", default="10.96.0.0/12")
    ap.add_argument("--handshakes", type=int, default=2048,
                    help="the generator's sessions between SYN and greeting")
    ap.add_argument("--hold", type=float, default=20.0,
                    help="seconds of silence measured while holding (and before, idle)")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds after the release before the last RSS sample")
    ap.add_argument("--sample", type=float, default=1.0)
    ap.add_argument("--gw-mb", type=int, default=512, help="the gateway's EAL -m")
    ap.add_argument("--gen-mb", type=int, default=512, help="the generator's EAL -m")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(a.mxgate)
    n = a.connections
    extra = (f"mxgate_max_connections = {n + n // 10 + 1024}\n"
             "smtpd_timeout = 3600s\n")
    res = {"machine": platform.node(), "cpus": os.cpu_count(),
           "kernel": platform.release(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "commit": subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip(),
           "connections": n, "gw_cpu": a.gw_cpu, "gen_cpu": a.gen_cpu}
    with loadgen.MemifGateway(a.mxgate, extra_config=extra, workers=1, cpu=a.gw_cpu,
                              eal_mb=a.gw_mb) as gw:
        pid = gw.proc.pid
        time.sleep(5)  # start-up work (tables, the first statistics) is over
        st0 = gw.stats()
        rss0 = rss_bytes(pid)
        res["baseline"] = {"rss": rss0, "mbufs_in_use": st0["mbufs_in_use"],
                           "mbufs_total": st0["mbufs_total"],
                           "idle": busy_rate(gw, a.hold)}
        print(f"baseline: RSS {rss0 / 2**20:.1f} MiB, mbufs in use {st0['mbufs_in_use']}, "
              f"busy {res['baseline']['idle']['busy_cycles_per_s']:,} cycles/s", flush=True)

        jp = os.path.join(gw.dir, "million.json")
        p, prefix = loadgen.start_loadgen(
            gen, gw.socket, ["--src", a.src, "--idle", "--concurrency", str(n),
                             "--handshakes", str(a.handshakes), "--timeout", "3600"],
            json_path=jp, lcore_cpu=a.gen_cpu, eal_mb=a.gen_mb)
        t0 = time.monotonic()
        curve = []
        try:
            while True:
                st = gw.stats()
                t = time.monotonic() - t0
                curve.append({"t": round(t, 2), "open": st["open_connections"],
                              "rss": rss_bytes(pid), "mbufs_in_use": st["mbufs_in_use"]})
                print(f"  {t:7.1f} s  open {st['open_connections']:>9,}  RSS "
                      f"{curve[-1]['rss'] / 2**20:8.1f} MiB  mbufs {st['mbufs_in_use']}",
                      flush=True)
                if st["open_connections"] >= n:
                    break
                if p.poll() is not None:
                    mxtest.fail(f"the generator ended during the ramp:\n{p.stdout.read()}")
                if t > a.timeout:
                    mxtest.fail(f"the ramp did not reach {n} in {a.timeout} s")
                time.sleep(a.sample)
            # the ramp: from the first sample with a connection to the one that reached n
            first = next(c for c in curve if c["open"] > 0)
            last = curve[-1]
            # the time the first connection appeared lies within the sample before `first`
            dt = max(last["t"] - first["t"], 1e-3)
            res["ramp"] = {"seconds": round(last["t"], 2),
                           "connections_per_s": int((last["open"] - first["open"]) / dt),
                           "curve": curve}
            time.sleep(2)  # the per-second memory sample catches up
            st1 = gw.stats()
            rss1 = rss_bytes(pid)
            held = st1["open_connections"]
            mb = st1["mbufs_in_use"] - st0["mbufs_in_use"]
            growth = rss1 - rss0
            res["holding"] = {
                "open_connections": held, "rss": rss1, "rss_growth": growth,
                "mbufs_in_use": st1["mbufs_in_use"], "mbufs_held": mb,
                "conn_bytes_each": st1.get("conn_bytes_each"),
                "conn_memory_bytes": st1.get("conn_memory_bytes"),
                "tcb_bytes": st1.get("tcb_bytes"),
                "rss_bytes_per_conn": round(growth / max(held, 1), 1),
                "all_in_bytes_per_conn": round((growth + max(mb, 0) * MBUF_BYTES) /
                                               max(held, 1), 1),
                "idle": busy_rate(gw, a.hold)}
            h = res["holding"]
            print(f"holding {held:,}: RSS {rss1 / 2**20:.1f} MiB (+{growth / 2**20:.1f}), "
                  f"mbufs held {mb}, all-in {h['all_in_bytes_per_conn']} bytes/conn, "
                  f"conn_bytes_each {h['conn_bytes_each']}, busy "
                  f"{h['idle']['busy_cycles_per_s']:,} cycles/s", flush=True)
        except BaseException:
            p.send_signal(signal.SIGINT)
            p.send_signal(signal.SIGINT)
            print(loadgen.finish_loadgen(p, prefix, 120)[1][-3000:])
            raise

        # release: every session sends QUIT
        t1 = time.monotonic()
        p.send_signal(signal.SIGUSR2)
        st = gw.wait_stat(lambda s: s["open_connections"] == 0, a.timeout,
                          "every connection closed")
        released_s = time.monotonic() - t1
        rc, out, gres = loadgen.finish_loadgen(p, prefix, a.timeout, jp)
        print(out[-2000:])
        if gres is None:
            mxtest.fail(f"the generator wrote no result (exit status {rc})")
        rss_after = rss_bytes(pid)
        time.sleep(a.settle)
        st2 = gw.stats()
        rss_settled = rss_bytes(pid)
        res["release"] = {
            "seconds": round(released_s, 2),
            "connections_per_s": int(n / max(released_s, 1e-3)),
            "generator": {"exit": rc, "greeted": gres["sessions"]["greeted"],
                          "done": gres["sessions"]["done"],
                          "idle_max": gres["sessions"].get("idle_max"),
                          "errors": gres["errors"]},
            "gateway_accepted": st2["connections_accepted"] - st0["connections_accepted"],
            "gateway_closed": st2["connections_closed"] - st0["connections_closed"],
            "rss_right_after": rss_after, "rss_settled": rss_settled,
            "rss_residue": rss_settled - rss0,
            "rss_residue_per_conn": round((rss_settled - rss0) / n, 1),
            "mbufs_in_use": st2["mbufs_in_use"], "time_wait": st2.get("time_wait"),
            "time_wait_evicted": st2.get("tcp_time_wait_evict"),
            "settle_s": a.settle}
        r = res["release"]
        lost = n - r["generator"]["done"]
        print(f"released in {released_s:.1f} s; generator greeted {r['generator']['greeted']:,} "
              f"done {r['generator']['done']:,} errors {r['generator']['errors']['total']}; "
              f"RSS {rss_after / 2**20:.1f} MiB right after, {rss_settled / 2**20:.1f} MiB "
              f"after {a.settle:.0f} s (baseline {rss0 / 2**20:.1f})", flush=True)
    res["ok"] = (lost == 0 and r["generator"]["errors"]["total"] == 0 and rc == 0 and
                 r["gateway_closed"] >= n)
    b, h = res["baseline"], res["holding"]
    rows = [
        ("connections held", f"{h['open_connections']:,}"),
        ("ramp (greeted/s)", f"{res['ramp']['connections_per_s']:,} "
                             f"({res['ramp']['seconds']:.1f} s to {n:,})"),
        ("RSS baseline / holding / settled", f"{b['rss'] / 2**20:.1f} / {h['rss'] / 2**20:.1f}"
                                             f" / {r['rss_settled'] / 2**20:.1f} MiB"),
        ("RSS growth per connection", f"{h['rss_bytes_per_conn']} bytes"),
        ("mbufs held beyond baseline", f"{h['mbufs_held']}"),
        ("all-in per connection", f"{h['all_in_bytes_per_conn']} bytes"),
        ("gateway's conn_bytes_each", f"{h['conn_bytes_each']}"),
        ("busy cycles/s idle / holding", f"{b['idle']['busy_cycles_per_s']:,} / "
                                         f"{h['idle']['busy_cycles_per_s']:,}"),
        ("worker CPU ms/s idle / holding", f"{b['idle']['cpu_ns_per_s'] / 1e6:.2f} / "
                                           f"{h['idle']['cpu_ns_per_s'] / 1e6:.2f}"),
        ("release (QUIT, all closed)", f"{r['seconds']} s, {r['connections_per_s']:,}/s"),
        ("lost / errors", f"{lost} / {r['generator']['errors']['total']}"),
        ("RSS residue after settle", f"{r['rss_residue'] / 2**20:.1f} MiB "
                                     f"({r['rss_residue_per_conn']} bytes/conn)"),
    ]
    print()
    for k, v in rows:
        print(f"  {k:34} {v}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
