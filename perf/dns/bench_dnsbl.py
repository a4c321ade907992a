"""RCPT rejects per second for DNSBL-listed clients: Debian's Postfix and mxgate (kernel and
dpdk transports) side by side, asking the same resolver (issue 13).

    python3 perf/dns/bench_dnsbl.py --mxgate build-release/dataplane/mxgate \
        [--peers postfix,mxgate-kernel,mxgate-dpdk] [--shapes distinct,repeat] \
        [--concurrency 50] [--seconds 10] [--rounds 3] [--workers 2] \
        [--out perf/results/DATE-dns.md] [--json FILE]

Root: the two-namespace topology of dnsbench.py. In the gateway namespace, a real unbound
(Debian's, one thread, so-rcvbuf 4 MB) on 127.0.0.1:53 serves the zone bl.test from
local data: every name under it answers A 127.0.0.2 and TXT "listed by bl.test" (a
`redirect` local zone: all clients listed, no recursion, nothing cached or expired). The
namespace's resolv.conf names it; both servers read that file (Postfix through libc's
resolver in each smtpd, mxgate through its resolver service with mxgate_dns_servers
empty), so both ask the same unbound over UDP. Both run

    smtpd_client_restrictions = reject_rbl_client bl.test

with Postfix's default smtpd_delay_reject = yes, so the 554 comes at RCPT. Postfix:
private instance (mxtest.PostfixPeer), its master and every smtpd in the gateway namespace,
no reverse lookup of the client, anvil's limits off, default_process_limit above the
load's concurrency; mxgate: --workers workers, the same restriction. Postfix keeps no DNS
cache of its own (each smtpd asks unbound for the A record, then the TXT); mxgate caches
answers for their TTL.

Load: smtp_load from the client namespace, --concurrency sessions at once for --seconds,
each: EHLO, XCLIENT ADDR=, EHLO, MAIL, RCPT (554 expected), QUIT. Shapes:
  distinct  every session a new client address: every RCPT is an A and a TXT query to
            unbound for both servers (mxgate's cache never hits);
  repeat    100 listed addresses in turn (a botnet retrying): mxgate answers from its
            cache after the first round; Postfix asks unbound every time.
--rounds rounds; each round runs every peer once, in turn, so that the machine's other
work spreads over all of them; the table shows medians.

Reported per shape and peer: RCPT rejects/s, the ratio to Postfix, RCPT reply time p50 and
p99, the server processes' CPU per reject (Postfix: its master and every process under it,
reaped ones included; mxgate: its process), unbound's CPU per reject, the machine's busy
time per reject minus the client's own (which also holds softirq work and anything else
running), and for mxgate-dpdk the busy poll-loop cycles per reject (in microseconds at the
gateway's TSC rate); and one sample RCPT reply of each peer.

    python3 perf/dns/bench_dnsbl.py --mxgate X --from-json RAW.json   (the report again,
        from a --json file, without running anything)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsbench  # noqa: E402
import mxtest  # noqa: E402

ZONE = "bl.test"
UNBOUND = "/usr/sbin/unbound"
SHAPES = {"distinct": 1 << 20, "repeat": 100}  # shape -> xclient_count


def unbound_conf(d):
    return "\n".join([
        "server:",
        "  interface: 127.0.0.1",
        "  port: 53",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{d}"',
        '  pidfile: ""',
        "  use-syslog: no",
        f'  logfile: "{d}/unbound.log"',
        "  verbosity: 0",
        "  num-threads: 1",
        # 1,000s of queries at once must not overflow the socket (see
        # perf/results/2026-12-07-resolver.md)
        "  so-rcvbuf: 4m",
        "  so-sndbuf: 4m",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        '  auto-trust-anchor-file: ""',
        f'  local-zone: "{ZONE}." redirect',
        f"  local-data: '{ZONE}. 60 IN A 127.0.0.2'",
        f"  local-data: '{ZONE}. 60 IN TXT \"listed by {ZONE}\"'",
        '  local-zone: "in-addr.arpa." static',
        "remote-control:",
        "  control-enable: no",
    ]) + "\n"


def postfix_cf(topo, concurrency):
    return (f"mynetworks = 127.0.0.0/8\n"
            f"smtpd_authorized_xclient_hosts = {topo.kernel_cl_ip4}\n"
            f"smtpd_client_restrictions = reject_rbl_client {ZONE}\n"
            "smtpd_peername_lookup = no\n"
            f"default_process_limit = {max(200, concurrency * 2)}\n"
            "smtpd_client_connection_count_limit = 0\n"
            "smtpd_client_connection_rate_limit = 0\n"
            "smtpd_client_message_rate_limit = 0\n"
            "smtpd_client_recipient_rate_limit = 0\n"
            "in_flow_delay = 0\n")


def mxgate_cf(client_ip):
    return ("mxgate_max_connections = 20000\n"
            f"smtpd_authorized_xclient_hosts = {client_ip}\n"
            f"smtpd_client_restrictions = reject_rbl_client {ZONE}\n")


# One session from the client namespace: the RCPT reply line, for the report.
_SAMPLE = r"""
import socket, sys
host, port, addr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
def reply():
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line.decode(errors="replace").strip()
reply()
for cmd in (b"EHLO sample.client.test", b"XCLIENT ADDR=" + addr.encode(),
            b"EHLO sample.client.test", b"MAIL FROM:<load@client.test>",
            b"RCPT TO:<sink@localhost>"):
    s.sendall(cmd + b"\r\n")
    r = reply()
print(r)
s.sendall(b"QUIT\r\n")
"""


class Peer:
    """A server under test: where it listens, the process whose tree is the server (mxgate,
    or Postfix's master), and the mxgate gateway object (None for Postfix)."""

    def __init__(self, name, host, port, pid, gw=None):
        self.name, self.host, self.port, self.pid, self.gw = name, host, port, pid, gw


def start_postfix(env, a):
    pf = mxtest.PostfixPeer(relayhost="[127.0.0.1]:9", listen_host=env.topo.kernel_gw_ip4,
                            command_prefix=["ip", "netns", "exec", env.topo.gw_ns],
                            extra_main_cf=postfix_cf(env.topo, a.concurrency))
    pf.start()
    if not dnsbench.greeting(env.topo, env.topo.kernel_gw_ip4, pf.smtpd_port):
        pf.stop()
        raise dnsbench.BenchError(f"postfix did not start:\n{pf.log()[-3000:]}")
    with open(os.path.join(pf.dir, "queue", "pid", "master.pid")) as f:
        master = int(f.read().split()[0])
    want = env.topo.gw(["readlink", "/proc/self/ns/net"], capture_output=True,
                       text=True).stdout.strip()
    if os.readlink(f"/proc/{master}/ns/net") != want:
        pf.stop()
        raise dnsbench.BenchError("postfix's master is not in the gateway namespace")
    pf.master = master
    return pf


def sample_reply(env, peer, addr):
    r = env.topo.cl([dnsbench.SYS_PYTHON, "-c", _SAMPLE, peer.host, str(peer.port), addr],
                    capture_output=True, text=True, timeout=60)
    return (r.stdout.strip() or r.stderr.strip())[-300:]


def run(env, peer, a, shape, base, unbound):
    out = {"background": dnsbench.wait_quiet(0.3, 30)}
    st0 = dnsbench.usr1(peer.gw) if peer.gw else {}
    gpid = peer.gw.proc.pid if peer.gw else None
    g0 = dnsbench.cpu_seconds(gpid) if gpid else 0
    t0 = dnsbench.tree_cpu_seconds(peer.pid)
    u0 = dnsbench.cpu_seconds(unbound.pid)
    b0 = dnsbench.machine_busy_seconds()
    r = env.load(peer.host, peer.port, concurrency=a.concurrency, duration=a.seconds,
                 xclient_base=base, xclient_count=SHAPES[shape], timeout=a.seconds + 300)
    busy = dnsbench.machine_busy_seconds() - b0
    out["unbound_cpu_s"] = dnsbench.cpu_seconds(unbound.pid) - u0
    out["server_tree_cpu_s"] = dnsbench.tree_cpu_seconds(peer.pid) - t0
    if gpid:
        out["mxgate_cpu_s"] = dnsbench.cpu_seconds(gpid) - g0
        st1 = dnsbench.usr1(peer.gw)
        if "dpdk" in st1:
            d0, d1 = st0.get("dpdk", {}), st1["dpdk"]
            out["busy_cycles"] = d1.get("busy_cycles", 0) - d0.get("busy_cycles", 0)
            out["tsc_hz"] = d1.get("tsc_hz", 0)
        res0, res1 = st0.get("resolver", {}), st1.get("resolver", {})
        out["resolver"] = {k: res1.get(k, 0) - res0.get(k, 0)
                           for k in ("requests", "hits", "queries", "timeouts", "tempfails")}
    out["server_cpu_s"] = max(busy - r["cpu_s"], 0.0)
    out["load"] = r
    rejects = r["rcpt_codes"].get("554", 0)
    out["rejects"] = rejects
    out["rejects_per_s"] = rejects / r["elapsed_s"] if r["elapsed_s"] else 0
    print(f"  {shape:9s} {peer.name:14s} {out['rejects_per_s']:7.0f} rejects/s, codes "
          f"{r['rcpt_codes']}, failed {r['failed']}, background {out['background']:.2f}",
          flush=True)
    return out


def median(xs):
    xs = sorted(x for x in xs if x == x)
    n = len(xs)
    return (xs[(n - 1) // 2] + xs[n // 2]) / 2 if xs else float("nan")


def report(results, samples, a, machine, versions):
    lines = [
        "## 3. RCPT rejects/s for DNSBL-listed clients: Postfix and mxgate, same resolver",
        "", machine, "", versions, "",
        f"`python3 perf/dns/bench_dnsbl.py --mxgate {a.mxgate} --peers {a.peers} --shapes "
        f"{a.shapes} --concurrency {a.concurrency} --seconds {a.seconds:g} --rounds "
        f"{a.rounds} --workers {a.workers}`", "",
        f"{a.concurrency} concurrent sessions for {a.seconds:g} s per run, each EHLO, "
        "XCLIENT ADDR=, EHLO, MAIL, RCPT (554), QUIT; every client listed in "
        f"`{ZONE}` (unbound, local data). distinct: a new client address every session "
        "(an A and a TXT query to unbound per reject, for both servers); repeat: 100 "
        "addresses in turn (mxgate answers from its cache; Postfix has none). "
        f"{a.rounds} rounds, peers in turn within each; medians. \"Server processes' "
        "CPU\": Postfix's master and every process under it (smtpd, anvil, ...; reaped "
        "ones through cutime), mxgate's one process: user and system time, so it holds "
        "the kernel's socket work done in their system calls. \"Machine busy minus "
        "client\" also counts unbound, softirq work charged to no process, and whatever "
        "else ran on the shared machine (see the last column). mxgate workers: "
        f"{a.workers}. Release build.", "",
        "| shape | peer | rejects/s | ratio to Postfix | rounds (rejects/s) | RCPT p50 / "
        "p99 ms | server processes' CPU us per reject | unbound CPU us per reject | "
        "machine busy minus client, us per reject | dpdk busy us per reject | failed | "
        "other load before (CPUs) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for shape in a.shapes.split(","):
        base = median([x["rejects_per_s"] for x in results.get((shape, "postfix"), [])])
        for name in a.peers.split(","):
            runs = results.get((shape, name), [])
            if not runs:
                continue
            rate = median([x["rejects_per_s"] for x in runs])
            ratio = f"{rate / base:.2f}" if base == base and base else "-"

            def per(k):
                v = median([x[k] / x["rejects"] * 1e6 for x in runs
                            if k in x and x["rejects"]])
                return f"{v:.0f}" if v == v else "-"
            busy = median([x["busy_cycles"] / x["tsc_hz"] / x["rejects"] * 1e6
                           for x in runs if x.get("tsc_hz") and x["rejects"]])
            busy = f"{busy:.0f}" if busy == busy else "-"
            p50 = median([x["load"]["rcpt_ms"].get("p50", float("nan")) for x in runs])
            p99 = median([x["load"]["rcpt_ms"].get("p99", float("nan")) for x in runs])
            failed = sum(x["load"]["failed"] for x in runs)
            each = ", ".join(f"{x['rejects_per_s']:.0f}" for x in runs)
            bg = ", ".join(f"{x['background']:.2f}" for x in runs)
            lines.append(
                f"| {shape} | {name} | {rate:.0f} | {ratio} | {each} | "
                f"{p50:.1f} / {p99:.1f} | {per('server_tree_cpu_s')} | "
                f"{per('unbound_cpu_s')} | {per('server_cpu_s')} | {busy} | {failed} | "
                f"{bg} |")
            for x in runs:
                codes = x["load"]["rcpt_codes"]
                if set(codes) - {"554"} or x["load"]["failed"]:
                    notes.append(f"{shape}/{name}: RCPT codes {codes}, failures "
                                 f"{x['load']['failures']}")
                rs = x.get("resolver")
                if rs and (rs["timeouts"] or rs["tempfails"]):
                    notes.append(f"{shape}/{name}: resolver {rs}")
    lines.append("")
    lines.append("The RCPT reply each peer gave a listed client:")
    lines.append("")
    for name, text in samples.items():
        lines.append(f"- {name}: `{text}`")
    lines.append("")
    for n in notes:
        lines.append(f"- NOTE: {n}")
    return "\n".join(lines) + "\n"


def versions_line():
    pf = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                               capture_output=True, text=True).stdout.strip()
    ub = subprocess.run([UNBOUND, "-V"], capture_output=True, text=True).stdout
    ub = ub.splitlines()[0].replace("Version ", "") if ub else "?"
    return f"Postfix {pf}, unbound {ub} (Debian packages)."


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--peers", default="postfix,mxgate-kernel,mxgate-dpdk")
    ap.add_argument("--shapes", default="distinct,repeat")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", help="append the section to this file")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--from-json", help="run nothing: the report of a --json file")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        results = {(x["shape"], x["peer"]): x["runs"] for x in saved["results"]}
        text = report(results, saved["samples"], argparse.Namespace(**saved["args"]),
                      saved["machine"], saved["versions"])
        print(text)
        if a.out:
            with open(a.out, "a") as f:
                f.write(text + "\n")
        return
    for tool in (UNBOUND, "/usr/sbin/postfix"):
        mxtest.need_tool(tool)
    machine = dnsbench.machine_line()
    names = a.peers.split(",")
    for n in names:
        if n not in ("postfix", "mxgate-kernel", "mxgate-dpdk"):
            sys.exit(f"unknown peer {n!r}")
    results, samples = {}, {}
    pf = None
    with dnsbench.Env(a.mxgate) as env:
        env.resolv_conf("nameserver 127.0.0.1\n")
        udir = os.path.join(env.dir, "unbound")
        os.makedirs(udir)
        with open(os.path.join(udir, "unbound.conf"), "w") as f:
            f.write(unbound_conf(udir))
        unbound = env.daemon([UNBOUND, "-d", "-c", os.path.join(udir, "unbound.conf")],
                             "unbound")
        time.sleep(1)
        if unbound.poll() is not None:
            raise dnsbench.BenchError("unbound did not start: see its log in " + udir)
        # every peer up for the whole run (idle ones cost nothing measurable: the dpdk
        # poll loops back off to 10 ms sleeps), so rounds can alternate them cheaply
        peers = []
        gws = []
        try:
            for n in names:
                if n == "postfix":
                    pf = start_postfix(env, a)
                    peers.append(Peer(n, env.topo.kernel_gw_ip4, pf.smtpd_port, pf.master))
                else:
                    transport = n.split("-")[1]
                    gw = env.gateway(transport, a.workers, mxgate_cf(env.client_ip(transport)))
                    gws.append(gw)
                    peers.append(Peer(n, gw.host, gw.port, gw.proc.pid, gw))
            for p in peers:
                samples[p.name] = sample_reply(env, p, "172.31.0.9")
            addr = 0
            for _ in range(a.rounds):
                for shape in a.shapes.split(","):
                    for p in peers:
                        # distinct: a fresh range per run; repeat: the same 100 each time
                        base = (f"172.{16 + addr // 65536}.{addr // 256 % 256}.{addr % 256}"
                                if shape == "distinct" else "172.31.255.1")
                        res = run(env, p, a, shape, base, unbound)
                        addr += res["load"]["started"] + 1
                        results.setdefault((shape, p.name), []).append(res)
        finally:
            for gw in gws:
                dnsbench.drop_gateway(gw)
            if pf is not None:
                pf.stop()
                if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
                    shutil.rmtree(pf.dir, ignore_errors=True)
    versions = versions_line()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "versions": versions, "args": vars(a),
                       "samples": samples,
                       "results": [{"shape": s, "peer": n, "runs": r}
                                   for (s, n), r in results.items()]}, f, indent=1)
    text = report(results, samples, a, machine, versions)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
