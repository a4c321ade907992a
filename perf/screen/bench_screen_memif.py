#!/usr/bin/env python3
"""What the screen costs per rejected bot on the dpdk transport with nothing but the
gateway's own code on its core: mxgate-loadgen --pregreet over net_memif (no af_packet, no
kernel TCP stack on either side), beside Debian Postfix's postscreen against the Python
pregreet bots of bench_screen.py on loopback, in one run.

    python3 perf/screen/bench_screen_memif.py --mxgate build-rel/dataplane/mxgate \\
        [--seconds 20] [--concurrency 200] [--src 10.1.0.0/16] [--gw-cpu 0 --gen-cpu 1] \\
        [--servers mxgate-memif,postfix] [--no-profile] [--json OUT.json]

Root (a private network namespace whose resolv.conf names 127.0.0.1, DPDK's runtime
directory, Postfix). One DNS server (screen_dns.py on 127.0.0.1:53) answers both:
NXDOMAIN for every bot, so each new client costs the screen its DNSBL query (mxgate's
resolver caches the negative answer 60 s; Postfix's dnsblog asks every time).

mxgate-memif: a release build, `--no-huge`, one worker; the worker and the main lcore on
--gw-cpu, the generator's lcore on --gen-cpu. The screen as bench_screen.py configures it
(its SETTINGS: greet wait 2 s, greet action drop, DNSBL bl.test*2, access list
permit_mynetworks; the bots, --src, are not in mynetworks). The generator opens up to
--concurrency sessions at once for --seconds, each from the next source address; each
sends EHLO before the greeting and must get 521 and the close. Measured over the attack:
rejects/s (the generator's count, checked against the gateway's screen_pregreet_fail), the
gateway process's CPU (utime + stime of /proc/PID/stat: every thread: workers, main lcore,
resolver and state service threads, log) per reject, its workers' busy cycles per reject
(the SIGUSR1 dpdk statistics line). Then a second attack of the same shape under
`perf record -g` of the gateway: the top symbols by self share, and the shares of a few
groups (the log, the service threads' wake-ups, the stack, the screen).

postfix: bench_screen.py's PostfixServer (master.cf `127.0.0.1:PORT inet n - n - 1
postscreen`, its dnsblog, the same SETTINGS) and screen_bots.py pregreet (1000 addresses
127.1.x.y, --concurrency at once) for --seconds: CPU of master and everything under it
(reaped children too) per reject.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import bench_screen as bs  # noqa: E402
import loadgen  # noqa: E402
import mxtest  # noqa: E402

NETNS_ENV = "MXGATE_SCREEN_MEMIF_NETNS"


class MemifScreen:
    """The gateway on net_memif with postscreen in master.cf (bench_screen's SETTINGS)."""
    name = "mxgate-memif"

    def __init__(self, binary, cpu, gen=None):
        self.gw = loadgen.MemifGateway(binary, workers=1, cpu=cpu)
        data = os.path.join(self.gw.dir, "data")
        os.makedirs(data)
        mpath = os.path.join(self.gw.dir, "master.cf")
        with open(mpath, "w") as f:
            f.write(bs.master_cf(25, host=None))
        # mynetworks stays MemifGateway's 127.0.0.0/8: the bots (10.x) are not in it
        with open(self.gw.config_path, "a") as f:
            f.write(bs.SETTINGS + "mxgate_max_connections = 8000\n"
                    f"mxgate_master_file = {mpath}\ndata_directory = {data}\n"
                    "mxgate_dns_servers = 127.0.0.1:53\n")
        self.gen = gen or loadgen.loadgen_binary(binary)

    def pid(self):
        return self.gw.proc.pid

    def attack(self, a, seconds, tag):
        """One pregreet attack of `seconds`: (generator result, its output)."""
        jp = os.path.join(self.gw.dir, f"{tag}.json")
        args = ["--pregreet", "--helo", "bot.example", "--src", a.src, "--concurrency",
                str(a.concurrency), "--handshakes", str(a.concurrency), "--sessions", "0",
                "--duration", str(seconds), "--timeout", "10", "--errors-kept", "5",
                "--label", tag]
        return loadgen.start_loadgen(self.gen, self.gw.socket, args, json_path=jp,
                                     lcore_cpu=a.gen_cpu), jp


def run_memif(a):
    srv = MemifScreen(a.mxgate, a.gw_cpu, a.loadgen)
    row = {"server": srv.name, "background_cpus": round(bs.wait_quiet(a.quiet_cpus,
                                                                       a.quiet_wait), 2)}
    srv.gw.start()
    try:
        time.sleep(1)
        st0 = srv.gw.stats()
        u0, s0 = bs.tree_cpu(srv.pid(), reaped=False)
        b0, t0 = bs.machine_busy(), time.monotonic()
        (p, prefix), jp = srv.attack(a, a.seconds, "measure")
        rc, out, res = loadgen.finish_loadgen(p, prefix, a.seconds + 120, jp)
        time.sleep(0.3)  # the last closes and log lines
        u1, s1 = bs.tree_cpu(srv.pid(), reaped=False)
        busy = bs.machine_busy() - b0
        wall = time.monotonic() - t0
        st1 = srv.gw.stats()
        if res is None:
            raise RuntimeError(f"mxgate-loadgen gave no result ({rc}):\n{out[-3000:]}")
        d = {k: st1.get(k, 0) - st0.get(k, 0) for k in set(st0) | set(st1)
             if isinstance(st1.get(k, 0), int)}
        rej = d.get("screen_pregreet_fail", 0)
        gen_rej = res["sessions"]["rejected"]
        cpu = (u1 - u0) + (s1 - s0)
        row["pregreet"] = {
            "generator_rejected": gen_rej, "gateway_pregreet_fail": rej,
            "errors": res["errors"]["total"], "generator_exit": rc,
            "seconds": res["seconds"], "rejects_per_s": round(res["rejects_per_s"], 1),
            "server_user_s": round(u1 - u0, 2), "server_sys_s": round(s1 - s0, 2),
            "server_cpu_s": round(cpu, 3),
            "cpu_us_per_reject": round(cpu / rej * 1e6, 1) if rej else None,
            "rejects_per_cpu_s": round(rej / cpu) if cpu > 0 else None,
            "busy_s": round(d.get("busy_cycles", 0) / st1["tsc_hz"], 3),
            "busy_cycles_per_reject": round(d.get("busy_cycles", 0) / rej) if rej else None,
            "busy_us_per_reject": round(d.get("busy_cycles", 0) / st1["tsc_hz"] / rej * 1e6,
                                        1) if rej else None,
            "busy_share": round(d.get("busy_cycles", 0) / max(d.get("total_cycles", 1), 1),
                                3),
            "tsc_hz": st1["tsc_hz"], "machine_busy_s": round(busy, 2),
            "wall_s": round(wall, 2),
            "connect_to_521_us": res["latency_us"].get("connect"),
            "generator_busy_share": round(res["busy_cycles"] / max(res["total_cycles"], 1),
                                          3),
            "counters": {k: v for k, v in d.items()
                         if k.startswith("screen_") or k.startswith("tcp_") or
                         k in ("rx_packets", "tx_packets", "rx_missed", "tx_dropped")},
        }
        if res["errors"]["total"]:
            row["pregreet"]["kept_errors"] = res.get("errors_kept", res["errors"])
        # a warning per connection (a cache the gateway cannot open, say) would be
        # measured as the screen's cost: the run is void
        warn = subprocess.run(["grep", "-m", "3", "warning:", srv.gw.maillog],
                              capture_output=True, text=True).stdout
        if warn:
            raise RuntimeError(f"the gateway logged warnings during the attack:\n{warn}")
        print(f"{srv.name}: pregreet: {json.dumps(row['pregreet'])}", flush=True)
        if a.profile:
            row["profile"] = profile(srv, a)
            print(f"{srv.name}: profile: {json.dumps(row['profile'])}", flush=True)
    finally:
        srv.gw.stop(check=False)
    return row


# groups of symbols for the profile's split (self samples, by symbol name)
GROUPS = [
    ("log (format, write)", re.compile(r"^(mx_log|mgmt_log|log_|__vfprintf|vfprintf|"
                                       r"__printf|_IO_|__strchrnul|__mempcpy|vsnprintf|"
                                       r"__vsnprintf|snprintf|__GI___libc_write|"
                                       r"ksys_write|vfs_write|ext4_|__x64_sys_write)")),
    ("service wake-ups (eventfd, poll, futex, scheduler)",
     re.compile(r"(eventfd|futex|schedule|__schedule|epoll|do_poll|poll|"
                r"finish_task_switch|try_to_wake_up|pick_next|enqueue|dequeue|"
                r"switch_mm|__switch_to)")),
    ("memif (rx/tx burst)", re.compile(r"memif")),
    ("TCP/IP stack (net_)", re.compile(r"^net_")),
    ("screen", re.compile(r"^(smtp_screen|scr_)")),
]


def profile(srv, a):
    """perf record -g of the gateway for a.profile_s seconds during a second attack; the
    top symbols by self share and the groups' shares. Self shares only: a release build
    has no frame pointers, so callers need --call-graph dwarf,16384 and --perf-data (then
    perf report -G on the kept file)."""
    perf = mxtest.need_tool("/usr/bin/perf")
    data = os.path.join(srv.gw.dir, "perf.data")
    (p, prefix), jp = srv.attack(a, a.profile_s + 4, "profile")
    try:
        time.sleep(2)
        r = subprocess.run([perf, "record", "-q", f"--call-graph={a.call_graph}", "-o", data,
                            "-p", str(srv.pid()), "--", "sleep", str(a.profile_s)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"perf record failed: {r.stderr[-500:]}")
    finally:
        loadgen.finish_loadgen(p, prefix, a.profile_s + 120, jp)
    if a.perf_data:
        shutil.copyfile(data, a.perf_data)
    rep = subprocess.run([perf, "report", "-i", data, "--no-children", "--sort", "dso,sym",
                          "-g", "none", "--stdio"], capture_output=True, text=True).stdout
    top, groups = [], {g: 0.0 for g, _ in GROUPS}
    other = 0.0
    for line in rep.splitlines():
        # "    12.34%  mxgate  [.] net_tcp_input"
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
        if not m:
            continue
        share, dso, kind, sym = float(m.group(1)) / 100, m.group(2), m.group(3), m.group(4)
        if len(top) < a.top:
            top.append({"share": round(share, 4), "dso": dso, "sym": sym,
                        "kernel": kind == "k"})
        for g, rx in GROUPS:
            # the memif driver's library has no symbols: its samples count by library
            if rx.search(dso if g.startswith("memif") else sym):
                groups[g] += share
                break
        else:
            other += share
    samples = re.search(r"# Samples: (\d+\S*)", rep)
    kshare = sum(t["share"] for t in top if t["kernel"])
    return {"samples": samples.group(1) if samples else None, "seconds": a.profile_s,
            "top_self": top, "kernel_share_of_top": round(kshare, 3),
            "groups_self": {g: round(v, 3) for g, v in groups.items()},
            "other_self": round(other, 3)}


def run_postfix(a):
    srv = bs.PostfixServer()
    row = {"server": srv.name, "background_cpus": round(bs.wait_quiet(a.quiet_cpus,
                                                                       a.quiet_wait), 2)}
    srv.start()
    try:
        time.sleep(1)
        p = bs.bots(srv, "pregreet", a.pf_addrs, a.concurrency, a.seconds)
        u0, s0 = srv.cpu_split()
        try:
            res, cpu, busy, wall = bs.measure(srv, lambda: bs.bots_result(p, a.seconds + 60))
        finally:
            bs.kill_group(p)
        u1, s1 = srv.cpu_split()
        rej = res["rejected"]
        row["pregreet"] = dict(res, rejects_per_s=bs.rps(res), server_user_s=round(u1 - u0, 2),
                               server_sys_s=round(s1 - s0, 2), server_cpu_s=round(cpu, 3),
                               machine_busy_s=round(busy, 2), wall_s=round(wall, 2),
                               cpu_us_per_reject=round(cpu / rej * 1e6, 1) if rej else None,
                               rejects_per_cpu_s=round(rej / cpu) if cpu > 0 else None)
        print(f"{srv.name}: pregreet: {json.dumps(row['pregreet'])}", flush=True)
        time.sleep(1)
        row["counters"] = srv.counters()
    finally:
        srv.stop()
    return row


def summary(res):
    by = {r["server"]: r for r in res["rows"]}
    out = [f"{res['date']}, commit {res['commit']}, {res['host']}, {res['cpus']} CPUs, "
           f"Postfix {res['postfix_version']}", "",
           "| server | rejected | errors | rejects/s | server CPU s (user + sys) | "
           "CPU us per reject | rejects per CPU second | busy cycles per reject |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in by.items():
        p = r["pregreet"]
        rej = p.get("gateway_pregreet_fail", p.get("rejected"))
        errs = p.get("errors", p.get("connections", 0) - p.get("rejected", 0))
        out.append(f"| {name} | {rej} | {errs} | {p['rejects_per_s']} | {p['server_cpu_s']} "
                   f"({p['server_user_s']} + {p['server_sys_s']}) | {p['cpu_us_per_reject']} | "
                   f"{p['rejects_per_cpu_s']} | {p.get('busy_cycles_per_reject', '-')} |")
    if "mxgate-memif" in by and "postfix" in by:
        m, f = by["mxgate-memif"]["pregreet"], by["postfix"]["pregreet"]
        if m["rejects_per_cpu_s"] and f["rejects_per_cpu_s"]:
            out += ["", f"rejects per CPU second, mxgate-memif / Postfix: "
                        f"{m['rejects_per_cpu_s'] / f['rejects_per_cpu_s']:.1f}x"]
    prof = by.get("mxgate-memif", {}).get("profile")
    if prof:
        out += ["", f"perf record -g of the gateway, {prof['seconds']} s, {prof['samples']} "
                    "samples; top symbols by self share:", "",
                "| share | dso | symbol |", "|---:|---|---|"]
        out += [f"| {t['share'] * 100:.1f}% | {t['dso']} | {t['sym']} |"
                for t in prof["top_self"]]
        out += ["", "groups (self): " + ", ".join(
            f"{g} {v * 100:.1f}%" for g, v in prof["groups_self"].items()) +
            f", other {prof['other_self'] * 100:.1f}%"]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate")
    ap.add_argument("--loadgen", help="mxgate-loadgen (default: the one built beside "
                    "--mxgate)")
    ap.add_argument("--servers", default="mxgate-memif,postfix")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--src", default="10.1.0.0/16")
    ap.add_argument("--pf-addrs", type=int, default=1000,
                    help="Postfix's bots: source addresses 127.1.x.y (1000)")
    ap.add_argument("--gw-cpu", type=int, default=0)
    ap.add_argument("--gen-cpu", type=int, default=1)
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--profile-s", type=int, default=6)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--call-graph", default="fp",
                    help="perf record --call-graph (fp; dwarf,16384 for callers in a "
                    "build without frame pointers)")
    ap.add_argument("--perf-data", help="keep the profile's perf.data here")
    ap.add_argument("--quiet-cpus", type=float, default=0.15)
    ap.add_argument("--quiet-wait", type=float, default=30)
    ap.add_argument("--json")
    ap.add_argument("--from-json")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            print(summary(json.load(f)))
        return
    if not a.mxgate:
        ap.error("--mxgate is required")
    mxtest.need_root("the memif screen benchmark (a network namespace, DPDK, Postfix)")
    if not os.environ.get(NETNS_ENV):
        bs.in_netns("mxgate-scm", NETNS_ENV, __file__)
    a.mxgate = os.path.abspath(a.mxgate)
    if a.loadgen:
        a.loadgen = os.path.abspath(a.loadgen)
    bs.raise_nofile()
    dns = bs.spawn([sys.executable, bs.DNS, "53", "bl.test", "127.2."])
    rows = []
    try:
        if dns.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the DNS server did not start: {dns.stderr.read()}")
        for name in a.servers.split(","):
            rows.append({"mxgate-memif": run_memif, "postfix": run_postfix}[name](a))
    finally:
        dns_counts = bs.stop_dns(dns)
    res = dict(bs.result_head(), args=vars(a), rows=rows, dns=dns_counts)
    print(summary(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
