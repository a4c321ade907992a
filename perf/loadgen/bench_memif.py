#!/usr/bin/env python3
"""mxgate-loadgen against the gateway over net_memif (tests/e2e/loadgen.py): the generator on
one lcore, the gateway with one worker; two load shapes, like side_by_side.py's:
  reused    --sessions S --messages M (sessions kept for many messages)
  one       one message per session
Reports the generator's messages/s, sessions/s and latencies, and the gateway's busy cycles
per message and per session from its SIGUSR1 dpdk statistics (the difference over the run).
Root; a release build:

    python3 perf/loadgen/bench_memif.py --mxgate build-release/dataplane/mxgate \\
        [--messages 10000] [--size 4096] [--concurrency 20] [--json out.json]

Pinning: with --gw-cpu and --gen-cpu the gateway's worker and the generator's lcore get one
CPU each (the gateway's main lcore shares the worker's CPU; it only manages).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
import loadgen  # noqa: E402
import mxtest  # noqa: E402


def run_shape(gw, gen, name, args, gen_cpu, timeout):
    before = gw.stats()
    jp = os.path.join(gw.dir, f"{name}.json")
    rc, out, res = loadgen.run_loadgen(gen, gw.socket, args, timeout, json_path=jp,
                                       lcore_cpu=gen_cpu)
    after = gw.stats()
    if rc != 0 or res is None:
        mxtest.fail(f"{name}: mxgate-loadgen exit status {rc}:\n{out}")
    d = {k: after.get(k, 0) - before.get(k, 0)
         for k in ("busy_cycles", "total_cycles", "messages_accepted", "connections_accepted",
                   "rx_packets", "tx_packets", "worker_cpu_ns")}
    msgs, sess = max(d["messages_accepted"], 1), max(d["connections_accepted"], 1)
    row = {
        "shape": name,
        "messages": res["messages"]["accepted"],
        "sessions": res["sessions"]["done"],
        "seconds": res["seconds"],
        "messages_per_s": res["messages_per_s"],
        "sessions_per_s": res["sessions_per_s"],
        "errors": res["errors"]["total"],
        "latency_us": res["latency_us"],
        "gateway_busy_cycles_per_message": d["busy_cycles"] // msgs,
        "gateway_busy_cycles_per_session": d["busy_cycles"] // sess,
        "gateway_busy_share": round(d["busy_cycles"] / max(d["total_cycles"], 1), 3),
        "gateway_packets_per_message": round((d["rx_packets"] + d["tx_packets"]) / msgs, 1),
        "generator_busy_share": round(res["busy_cycles"] / max(res["total_cycles"], 1), 3),
        "generator_busy_cycles_per_message": res["busy_cycles"] // max(
            res["messages"]["accepted"], 1),
    }
    if d["messages_accepted"] != res["messages"]["accepted"]:
        mxtest.fail(f"{name}: the gateway counted {d['messages_accepted']} messages, the "
                    f"generator {res['messages']['accepted']}")
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--gw-cpu", type=int, default=None)
    ap.add_argument("--gen-cpu", type=int, default=None)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(a.mxgate)
    per_session = max(a.messages // a.concurrency, 1)
    shapes = [
        ("reused", ["--src", "10.99.0.0/16", "--concurrency", str(a.concurrency),
                    "--sessions", str(a.concurrency), "--messages", str(per_session),
                    "--size", str(a.size)]),
        ("one", ["--src", "10.99.0.0/16", "--concurrency", str(a.concurrency * 2),
                 "--sessions", str(a.messages // 2), "--messages", "1", "--size",
                 str(a.size)]),
    ]
    rows = []
    with loadgen.MemifGateway(a.mxgate, workers=1, cpu=a.gw_cpu) as gw:
        for name, args in shapes:
            row = run_shape(gw, gen, name, args, a.gen_cpu, a.timeout)
            rows.append(row)
            print(f"{name:7} {row['messages']:6} msgs {row['sessions']:6} sessions "
                  f"{row['messages_per_s']:9.1f} msg/s {row['sessions_per_s']:9.1f} sess/s  "
                  f"gateway busy cycles/msg {row['gateway_busy_cycles_per_message']:>9} "
                  f"/session {row['gateway_busy_cycles_per_session']:>9}  "
                  f"dot p50/p99 {row['latency_us']['dot']['p50']}/"
                  f"{row['latency_us']['dot']['p99']} us", flush=True)
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {"machine": platform.node(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "commit": commit, "size": a.size, "concurrency": a.concurrency, "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
