"""Hostile clients at benchmark size, on each transport, side by side (issue 11's figures).

    python3 perf/hostile/bench_hostile.py --mxgate build-release/dataplane/mxgate \
        [--transports kernel,dpdk] [--scale 1.0] [--out perf/results/DATE-hostile.md]

For each case of tests/e2e/hostile_client.py at a larger size than the CI test, against a
fresh gateway per transport (dpdk: net_af_packet in a network namespace, needs root), it
measures:
  - wall time of the attack and the attacker's rate (connections/s, MB/s);
  - the gateway's CPU time (user + system, from /proc) during it, per connection;
  - how long after the attack ended the gateway was back to baseline: open connections 0,
    descriptors and spool space as before (polling its own statistics every 50 ms);
  - whether a normal session right after was greeted, and in how many ms.
It prints a table and writes it (with machine, date and commit) to --out.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mxtest  # noqa: E402

CLIENT = os.path.join(ROOT, "tests", "e2e", "hostile_client.py")
CONFIG = """
mxgate_max_connections = 6000
message_size_limit = 2000000
mxgate_spool_segment_size = 16000000
smtpd_timeout = 10s
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


class Target:
    def __init__(self, binary, transport):
        self.transport = transport
        if transport == "dpdk":
            import netns
            self.topo = netns.Topology(prefix=f"mxb{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, extra_config=CONFIG, workers=1)
            self.python = netns.SYS_PYTHON
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, extra_config=CONFIG, workers=1)
            self.python = sys.executable
        self.gw.start()

    def client(self, case, **kw):
        argv = [self.python, CLIENT, self.gw.host, str(self.gw.port), case]
        argv += [f"{k}={v}" for k, v in kw.items()]
        if self.topo:
            argv = self.topo._ns(self.topo.cl_ns, argv)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"{case}: {r.stdout}{r.stderr}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def close(self):
        self.gw.stop(check=False)
        if self.topo:
            self.topo.destroy()


def run_case(t, name, case, conns, bytes_sent, **kw):
    gw = t.gw
    base_fds = gw.fds()
    base_bytes = gw.stats()["spool_bytes"]
    cpu0 = cpu_seconds(gw.proc.pid)
    t0 = time.monotonic()
    t.client(case, **kw)
    attack = time.monotonic() - t0
    # back to baseline: open connections 0, descriptors and spool space as before
    while True:
        st = gw.stats()
        if (st["open_connections"] == 0 and gw.fds() == base_fds and
                st["spool_bytes"] <= base_bytes + 64 * 1024 + 8192 * conns):
            break
        if time.monotonic() - t0 > attack + 120:
            break
        time.sleep(0.05)
    settle = time.monotonic() - t0 - attack
    cpu = cpu_seconds(gw.proc.pid) - cpu0
    n = t.client("normal")
    row = {
        "transport": t.transport, "case": name, "connections": conns,
        "attack_s": round(attack, 2), "conns_per_s": round(conns / attack) if attack else 0,
        "mb_per_s": round(bytes_sent / attack / 1e6, 1) if bytes_sent else 0,
        "gateway_cpu_s": round(cpu, 2),
        "cpu_us_per_conn": round(cpu / conns * 1e6) if conns else 0,
        "settle_ms": round(settle * 1000),
        "next_greeted_ms": n.get("greet_ms"),
        "next_accepted": n.get("dot", "").startswith("250"),
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--transports", default="kernel,dpdk")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    k = a.scale
    cases = [
        ("abrupt close mid-DATA (FIN)", "abrupt", int(2000 * k), 81_000 * int(2000 * k),
         {"stage": "middata", "how": "fin"}),
        ("abrupt close mid-DATA (RST)", "abrupt", int(2000 * k), 81_000 * int(2000 * k),
         {"stage": "middata", "how": "rst"}),
        ("abrupt close after connect (RST)", "abrupt", int(3000 * k), 0,
         {"stage": "connect", "how": "rst"}),
        ("aborted 1 MB transfers", "midabort", int(100 * k), 1_000_000 * int(100 * k),
         {"size": 1_000_000}),
        ("oversize 3 MB messages (limit 2 MB)", "oversize", int(20 * k),
         3_000_000 * int(20 * k), {"size": 3_000_000}),
        ("slowloris, cut by a 10 s deadline", "slowloris", int(2000 * k), 0,
         {"gap": 4, "max": 40}),
    ]
    rows = []
    for transport in a.transports.split(","):
        t = Target(a.mxgate, transport)
        try:
            for name, case, conns, nbytes, kw in cases:
                rows.append(run_case(t, name, case, conns, nbytes, n=conns, **kw))
        finally:
            t.close()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    head = (f"# Hostile clients at benchmark size\n\n{datetime.date.today()}, commit {commit}, "
            f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}\n\n"
            "One worker per transport; clients on the same machine (dpdk: in the client "
            "namespace over net_af_packet).\n\n"
            "| transport | case | connections | attack s | conns/s | MB/s | gateway CPU s | "
            "CPU us/conn | back to baseline ms | next greeted ms | next accepted |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
    body = "".join(
        f"| {r['transport']} | {r['case']} | {r['connections']} | {r['attack_s']} | "
        f"{r['conns_per_s']} | {r['mb_per_s']} | {r['gateway_cpu_s']} | "
        f"{r['cpu_us_per_conn']} | {r['settle_ms']} | {r['next_greeted_ms']} | "
        f"{'yes' if r['next_accepted'] else 'NO'} |\n" for r in rows)
    print(head + body)
    if a.out:
        with open(a.out, "w") as f:
            f.write(head + body)


main()
