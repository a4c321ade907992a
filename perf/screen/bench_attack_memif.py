#!/usr/bin/env python3
"""Issue 14's "under attack" check over net_memif: legitimate mail at a fixed rate while
pregreeting bots, DNSBL-listed clients and a SYN flood hit the same gateway at the same
time, all offered by ONE mxgate-loadgen process (its traffic classes: the main class is
the legitimate senders, `--also pregreet:...`, `--also listed:...`, `--also synflood:...`),
beside Debian Postfix + postscreen under bench_screen.py's attack (Python bots, hping3,
smtp-source on loopback) on the same machine.

    python3 perf/screen/bench_attack_memif.py --mxgate build-rel/dataplane/mxgate \\
        [--seconds 15] [--legit-rate 3000] [--pregreet-rate 20000] [--syn-rate 50000] \\
        [--servers mxgate-memif,postfix-afpacket,postfix] [--json OUT.json]

Root (a private network namespace whose resolv.conf names 127.0.0.1, DPDK's runtime
directory, Postfix, hping3). One DNS server (screen_dns.py on 127.0.0.1:53) lists every
address 10.2.x.y under bl.test (mxgate's resolver asks it over the kernel's UDP).

mxgate-memif: a release build, `--no-huge`, one worker; the worker and the main lcore on
--gw-cpu, the generator's one lcore on --gen-cpu. main.cf: bench_screen.py's SETTINGS but
`postscreen_dnsbl_action = enforce` (a listed client is greeted after the greet wait and
refused at RCPT: "550 5.7.1 Service unavailable; client [ip] blocked using bl.test"). The
classes, each with its own sources and counters:

  legit     10.3.0.1-10.3.0.100 (not listed; pre-warmed: each address passed the greet
            wait once, PASS NEW, so the measured sessions are PASS OLD), --legit-conc
            sessions of --legit-msgs messages of 4 KiB, at --legit-rate messages/s
  pregreet  1,000 addresses 10.1.0.1-10.1.3.232, EHLO before the greeting, must get 521
            and the close; --pregreet-rate sessions/s, --pregreet-conc at once
  listed    1,000 addresses 10.2.0.1-10.2.3.232 (listed), all 1,000 at once: greeting after
            the 2 s greet wait, EHLO, MAIL, RCPT -> 550 (counted as rejected), QUIT
  synflood  SYNs from random addresses of 172.16.0.0/12 and random ports at --syn-rate,
            never completed (the gateway's SYN-ACKs and cookies go to addresses the
            generator does not own; it counts them)

Phases: warm-up; quiet (legit alone, --seconds); each attack kind alone (--alone-s, for
its cost per rejected connection: the gateway's busy cycles and process CPU over the
phase, the SYN flood beside a trickle of one legitimate session a second); then legit +
all three attacks (--seconds). The gateway's figures come from its SIGUSR1 statistics
(busy cycles, screen_* and tcp_* counters) and /proc (utime + stime of every thread).

What shares the CPUs: the gateway (worker + main lcore + its service threads: resolver,
postscreen cache, log, spool writer) on --gw-cpu; the generator (all classes) on --gen-cpu;
the DNS server (Python) and the kernel's loopback UDP for the resolver's queries float.
On this VM other helpers' builds may share them too; the script waits for a quiet machine
(--quiet-cpus) and records what it saw.

postfix-afpacket: Postfix + postscreen with the gateway's settings (enforce) in a namespace
of a tests/e2e/netns.py topology, pinned to --gw-cpu, driven by the SAME generator classes
over net_af_packet on the veth from the other namespace (pinned to --gen-cpu): quiet legit
at --pf-legit-rate, the bots at full speed, the listed clients, then legit + all three
attacks at the gateway's rates. Rejects are Postfix's own log counts (PREGREET, "blocked
using"): its 521 to a bot is often lost behind the reset of a close with unread input.

postfix: bench_screen.run_server(PostfixServer) unchanged: its quiet smtp-source shapes,
each attack alone (Python bots: 1,000 pregreet addresses, 1,000 DNSBL addresses with
postscreen_dnsbl_action = drop, i.e. 521 after the greet wait), then the legitimate shapes
under pregreet + DNSBL bots at --pf-attack-rate each and hping3 --rand-source at
--pf-syn-us. Postfix's legitimate load is smtp-source at full speed (no fixed rate): its
ratio is of full-speed rates.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, HERE)

import bench_screen as bs  # noqa: E402
import loadgen  # noqa: E402
import mxtest  # noqa: E402
import netns  # noqa: E402

NETNS_ENV = "MXGATE_ATTACK_MEMIF_NETNS"
LEGIT_SRC = "10.3.0.1-10.3.0.100"
PREGREET_SRC = "10.1.0.1-10.1.3.232"
LISTED_SRC = "10.2.0.1-10.2.3.232"
LISTED_PREFIX = "10.2."
SYN_SRC = "172.16.0.0/12"
SETTINGS = bs.SETTINGS.replace("postscreen_dnsbl_action = drop",
                               "postscreen_dnsbl_action = enforce")
assert SETTINGS != bs.SETTINGS


class MemifAttackGateway:
    name = "mxgate-memif"

    def __init__(self, binary, cpu, gen=None):
        self.gw = loadgen.MemifGateway(binary, workers=1, cpu=cpu)
        data = os.path.join(self.gw.dir, "data")
        os.makedirs(data)
        mpath = os.path.join(self.gw.dir, "master.cf")
        with open(mpath, "w") as f:
            f.write(bs.master_cf(25, host=None))
        with open(self.gw.config_path, "a") as f:
            f.write(SETTINGS + "mxgate_max_connections = 8000\n"
                    f"mxgate_master_file = {mpath}\ndata_directory = {data}\n"
                    "mxgate_dns_servers = 127.0.0.1:53\n")
        self.gen = gen or loadgen.loadgen_binary(binary)

    def pid(self):
        return self.gw.proc.pid


def legit_args(a, rate, conc, msgs, seconds):
    return ["--src", LEGIT_SRC, "--concurrency", str(conc), "--handshakes", str(conc),
            "--sessions", "0", "--duration", str(seconds), "--messages", str(msgs),
            "--size", "4096", "--rate", str(rate), "--rate-of", "messages",
            "--timeout", "10", "--errors-kept", "5"]


def also(kind, a):
    if kind == "pregreet":
        return f"pregreet:src={PREGREET_SRC},concurrency={a.pregreet_conc}," \
               f"rate={a.pregreet_rate}"
    if kind == "listed":
        return f"listed:src={LISTED_SRC},concurrency=1000"
    return f"synflood:src={SYN_SRC},rate={a.syn_rate}"


def run_gen(srv, a, tag, args, seconds):
    """One generator run; (exit status, output, {class: result})."""
    jp = os.path.join(srv.gw.dir, f"{tag}.json")
    rc, out, res = loadgen.run_loadgen(
        srv.gen, srv.gw.socket, args + ["--label", tag], timeout=seconds + 120,
        json_path=jp, lcore_cpu=a.gen_cpu,
        vdev_extra=f",rsize={a.memif_rsize}" if a.memif_rsize else "")
    if res is None:
        raise RuntimeError(f"{tag}: mxgate-loadgen gave no result ({rc}):\n{out[-3000:]}")
    out_res = {"main": res}
    for kind in ("pregreet", "listed", "synflood"):
        p = jp[:-5] + f".{kind}.json"
        if os.path.exists(p):
            with open(p) as f:
                out_res[kind] = json.load(f)
    return rc, out, out_res


def gw_phase(srv, a, tag, args, seconds):
    """A generator run with the gateway's counters, busy cycles and CPU around it."""
    st0 = srv.gw.stats()
    u0, s0 = bs.tree_cpu(srv.pid(), reaped=False)
    t0 = time.monotonic()
    rc, out, res = run_gen(srv, a, tag, args, seconds)
    time.sleep(0.3)  # the last closes and log lines
    u1, s1 = bs.tree_cpu(srv.pid(), reaped=False)
    wall = time.monotonic() - t0
    st1 = srv.gw.stats()
    d = {k: st1.get(k, 0) - st0.get(k, 0) for k in set(st0) | set(st1)
         if isinstance(st1.get(k, 0), int)}
    hz = st1["tsc_hz"]
    ph = {"generator_exit": rc, "wall_s": round(wall, 2),
          "server_cpu_s": round((u1 - u0) + (s1 - s0), 3),
          "server_user_s": round(u1 - u0, 2), "server_sys_s": round(s1 - s0, 2),
          "busy_s": round(d.get("busy_cycles", 0) / hz, 3),
          "busy_cycles": d.get("busy_cycles", 0), "tsc_hz": hz,
          "busy_share": round(d.get("busy_cycles", 0) / max(d.get("total_cycles", 1), 1), 3),
          "counters": {k: v for k, v in d.items()
                       if k.startswith("screen_") or k.startswith("tcp_") or
                       k in ("rx_packets", "tx_packets", "rx_missed", "tx_dropped",
                             "accepted", "messages", "sessions")},
          "classes": {}}
    for kind, r in res.items():
        if kind == "synflood":
            ph["classes"][kind] = r
            continue
        lat = r.get("latency_us", {})
        ph["classes"][kind] = {
            "seconds": r["seconds"], "sessions": r["sessions"],
            "messages": r["messages"], "msgs_per_s": round(r.get("messages_per_s", 0), 1),
            "rejects_per_s": round(r.get("rejects_per_s", 0), 1),
            "errors": r["errors"]["total"], "errors_by_kind": {
                k: v for k, v in r["errors"].items() if v and k != "total"},
            "kept_errors": r.get("errors_kept", [])[:5] if r["errors"]["total"] else [],
            "latency_us": {k: lat.get(k) for k in ("connect", "dot", "rcpt")},
            "generator_busy_share": round(r["busy_cycles"] / max(r["total_cycles"], 1), 3)}
    return ph, out


def run_memif(a):
    srv = MemifAttackGateway(a.mxgate, a.gw_cpu, a.loadgen)
    row = {"server": srv.name, "background_cpus": round(bs.wait_quiet(a.quiet_cpus,
                                                                       a.quiet_wait), 2)}
    srv.gw.start()
    try:
        time.sleep(1)
        # warm-up: every legitimate address passes the greet wait once (PASS NEW)
        rc, out, res = run_gen(srv, a, "warm", [
            "--src", LEGIT_SRC, "--concurrency", "100", "--handshakes", "100",
            "--sessions", "100", "--messages", "0", "--timeout", "15"], 30)
        if rc != 0:
            raise RuntimeError(f"warm-up failed ({rc}):\n{out[-3000:]}")
        row["warm"] = res["main"]["sessions"]
        phases = {}
        la = legit_args(a, a.legit_rate, a.legit_conc, a.legit_msgs, a.seconds)
        phases["quiet"], out = gw_phase(srv, a, "quiet", la, a.seconds)
        print(f"quiet: {json.dumps(phases['quiet'])}", flush=True)
        trickle = legit_args(a, 1, 1, 1, a.alone_s)
        phases["pregreet_alone"], _ = gw_phase(srv, a, "pregreet_alone", [
            "--pregreet", "--helo", "bot.example", "--src", PREGREET_SRC,
            "--concurrency", str(a.pregreet_conc), "--handshakes", str(a.pregreet_conc),
            "--sessions", "0", "--duration", str(a.alone_s), "--rate", str(a.pregreet_rate),
            "--timeout", "10", "--errors-kept", "5"], a.alone_s)
        print(f"pregreet alone: {json.dumps(phases['pregreet_alone'])}", flush=True)
        # the same bots as fast as the generator opens them (200 at once): the gateway's
        # rejects/s per core at saturation (bench_screen_memif.py's measure)
        phases["pregreet_full"], _ = gw_phase(srv, a, "pregreet_full", [
            "--pregreet", "--helo", "bot.example", "--src", PREGREET_SRC,
            "--concurrency", "200", "--handshakes", "200", "--sessions", "0",
            "--duration", str(a.alone_s), "--timeout", "10", "--errors-kept", "5"], a.alone_s)
        print(f"pregreet full: {json.dumps(phases['pregreet_full'])}", flush=True)
        phases["listed_alone"], _ = gw_phase(srv, a, "listed_alone", [
            "--listed", "--src", LISTED_SRC, "--concurrency", "1000", "--handshakes", "1000",
            "--sessions", "0", "--duration", str(a.alone_s), "--timeout", "10",
            "--errors-kept", "5"], a.alone_s)
        print(f"listed alone: {json.dumps(phases['listed_alone'])}", flush=True)
        phases["synflood_alone"], _ = gw_phase(srv, a, "synflood_alone",
                                               trickle + ["--also", also("synflood", a)],
                                               a.alone_s)
        print(f"synflood alone: {json.dumps(phases['synflood_alone'])}", flush=True)
        phases["attack"], out = gw_phase(
            srv, a, "attack", la + ["--also", also("pregreet", a), "--also", also("listed", a),
                                    "--also", also("synflood", a)], a.seconds)
        print(f"attack: {json.dumps(phases['attack'])}", flush=True)
        row["phases"] = phases
        warn = subprocess.run(["grep", "-m", "3", "warning:", srv.gw.maillog],
                              capture_output=True, text=True).stdout
        row["maillog_warnings"] = warn
        if warn:
            # a warning per connection (a cache the gateway cannot open) is measured as
            # the screen's cost: the run is void
            raise RuntimeError(f"the gateway logged warnings:\n{warn}")
    finally:
        srv.gw.stop(check=False)
    return row


def run_postfix(a):
    pa = types.SimpleNamespace(
        quiet_cpus=a.quiet_cpus, quiet_wait=a.quiet_wait, shapes=[(20, 3000), (2, 600)],
        bot_conc=200, dnsbl_conc=900, addrs=1000, attack_s=a.pf_attack_s,
        attack_rate=a.pf_attack_rate, syn_us=a.pf_syn_us)
    return bs.run_server(bs.PostfixServer(), pa)


# -- Postfix driven by the same generator classes, over net_af_packet on a veth ----------

def run_gen_af(topo, a, tag, args, seconds):
    """The generator in the topology's generator namespace (net_af_packet on its veth end,
    one lcore on --gen-cpu) against Postfix at cl_ip4:25: (exit status, output, {class:
    result})."""
    prefix = f"mxatk-{os.getpid()}-{tag}"
    jp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{prefix}.json")
    argv = [a.loadgen_bin, f"--lcores=0@({a.gen_cpu})", "--no-huge", "-m", "256", "--no-pci",
            "--no-telemetry", f"--file-prefix={prefix}",
            f"--vdev=net_af_packet0,iface={topo.dp_gw_if},framecnt=4096", "--",
            "--port", "net_af_packet0", "--local", f"{topo.gw_ip4}/24",
            "--server", f"{topo.cl_ip4}:25", "--progress", "0", "--json", jp,
            "--label", tag, *args]
    try:
        r = topo.gw(argv, capture_output=True, text=True, timeout=seconds + 180)
    finally:
        subprocess.run(["rm", "-rf", f"/var/run/dpdk/{prefix}"])
    res = {}
    for kind in ("main", "pregreet", "listed", "synflood"):
        p = jp if kind == "main" else jp[:-5] + f".{kind}.json"
        if os.path.exists(p):
            with open(p) as f:
                res[kind] = json.load(f)
            os.unlink(p)
    if "main" not in res:
        raise RuntimeError(f"{tag}: mxgate-loadgen gave no result ({r.returncode}):\n"
                           f"{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.returncode, r.stdout, res


LOG_MARKS = {"PREGREET": " PREGREET ", "DNSBL rank": " DNSBL rank ",
             "blocked using": "blocked using bl.test", "PASS OLD": " PASS OLD ",
             "PASS NEW": " PASS NEW "}


def pf_log_counts(pf):
    log = pf.log()
    return {k: log.count(v) for k, v in LOG_MARKS.items()}


def pf_phase(topo, pf, pf_master, a, tag, args, seconds):
    """gw_phase's figures for Postfix: its processes' CPU (master and all under it, reaped
    children included) around one generator run; the classes' results; what its log
    counted (PREGREET, DNSBL rank, the RCPT rejects) in the phase."""
    lc0 = pf_log_counts(pf)
    u0, s0 = bs.tree_cpu(pf_master)
    ld0 = topo_listen_drops(topo)
    t0 = time.monotonic()
    rc, out, res = run_gen_af(topo, a, tag, args, seconds)
    time.sleep(0.3)
    u1, s1 = bs.tree_cpu(pf_master)
    ph = {"generator_exit": rc, "wall_s": round(time.monotonic() - t0, 2),
          "server_cpu_s": round((u1 - u0) + (s1 - s0), 3),
          "server_user_s": round(u1 - u0, 2), "server_sys_s": round(s1 - s0, 2),
          "listen_drops": topo_listen_drops(topo) - ld0, "classes": {}}
    time.sleep(0.5)  # postlogd
    lc1 = pf_log_counts(pf)
    ph["log"] = {k: lc1[k] - lc0[k] for k in lc0}
    for kind, r in res.items():
        if kind == "synflood":
            ph["classes"][kind] = r
            continue
        lat = r.get("latency_us", {})
        ph["classes"][kind] = {
            "seconds": r["seconds"], "sessions": r["sessions"], "messages": r["messages"],
            "msgs_per_s": round(r.get("messages_per_s", 0), 1),
            "rejects_per_s": round(r.get("rejects_per_s", 0), 1),
            "errors": r["errors"]["total"], "errors_by_kind": {
                k: v for k, v in r["errors"].items() if v and k != "total"},
            "kept_errors": r.get("errors_kept", [])[:5] if r["errors"]["total"] else [],
            "latency_us": {k: lat.get(k) for k in ("connect", "dot", "rcpt")},
            "generator_busy_share": round(r["busy_cycles"] / max(r["total_cycles"], 1), 3)}
    return ph


def topo_listen_drops(topo):
    r = topo.cl(["cat", "/proc/net/netstat"], capture_output=True, text=True)
    lines = [l.split() for l in r.stdout.splitlines() if l.startswith("TcpExt:")]
    if len(lines) >= 2 and "ListenDrops" in lines[0]:
        return int(lines[1][lines[0].index("ListenDrops")])
    return 0


def run_postfix_afpacket(a):
    """Postfix + postscreen (enforce, like the gateway) in a namespace of a netns.Topology,
    pinned to --gw-cpu; the same generator classes from the other namespace over
    net_af_packet on the veth (as tests/e2e/test_loadgen_peers.py), pinned to --gen-cpu.
    The session classes' sources are routed onto the veth; the flood's are a blackhole
    (spoofed sources: the SYN-ACKs go nowhere, as on the internet)."""
    netns.need_netns_tools()
    a.loadgen_bin = a.loadgen or loadgen.loadgen_binary(a.mxgate)
    topo = netns.Topology(prefix=f"atk{os.getpid() % 100000}")
    etc = None
    row = {"server": "postfix-afpacket",
           "background_cpus": round(bs.wait_quiet(a.quiet_cpus, a.quiet_wait), 2)}
    topo.create()
    dns = pf = None
    try:
        # the session classes' sources behind the generator's own address, whose MAC is
        # fixed: the kernel keeps one neighbour entry instead of ARPing for thousands of
        # sources (past gc_thresh3 it drops the SYN-ACKs)
        topo.cl(["ip", "neigh", "replace", topo.gw_ip4, "lladdr", topo.dp_gw_mac, "dev",
                 topo.dp_cl_if, "nud", "permanent"], check=True)
        for src in ("10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"):
            topo.cl(["ip", "route", "add", src, "via", topo.gw_ip4, "dev", topo.dp_cl_if],
                    check=True)
        topo.cl(["ip", "route", "add", "blackhole", "172.16.0.0/12"], check=True)
        for k, v in (("net.ipv4.tcp_syncookies", "1"), ("net.core.somaxconn", "4096"),
                     ("net.ipv4.tcp_max_syn_backlog", "4096")):
            topo.cl(["sysctl", "-q", "-w", f"{k}={v}"], check=True)
        # dnsblog asks the C library's resolver: the namespace's resolv.conf (ip netns
        # exec bind-mounts /etc/netns/NAME/) names the DNSBL server on its loopback
        etc = f"/etc/netns/{topo.cl_ns}"
        os.makedirs(etc, exist_ok=True)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
        dns = topo.cl_popen([netns.SYS_PYTHON, bs.DNS, "53", "bl.test", LISTED_PREFIX],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if dns.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the DNS server did not start: {dns.stderr.read()}")
        pf = mxtest.PostfixPeer(
            relayhost="[127.0.0.1]:9", smtpd_port=25, listen_host=topo.cl_ip4,
            command_prefix=["ip", "netns", "exec", topo.cl_ns, "taskset", "-c",
                            str(a.gw_cpu)],
            extra_main_cf="myhostname = mx.test.example\n" + SETTINGS + bs.POSTFIX_ONLY)
        rest = mxtest.PostfixPeer.MASTER_CF.split("\n", 1)[1]
        with open(os.path.join(pf.conf, "master.cf"), "w") as f:
            f.write(bs.master_cf(25, host=topo.cl_ip4) +
                    "dnsblog unix - - n - 0 dnsblog\ntlsproxy unix - - n - 0 tlsproxy\n" + rest)
        pf.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = topo.cl([netns.SYS_PYTHON, "-c", "import socket,sys; socket.create_connection("
                         "(sys.argv[1], 25), 2).close()", topo.cl_ip4], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        with open(os.path.join(pf.dir, "queue", "pid", "master.pid")) as f:
            master = int(f.read().split()[0])
        time.sleep(1)
        rc, out, res = run_gen_af(topo, a, "pf-warm", [
            "--src", LEGIT_SRC, "--concurrency", "100", "--handshakes", "100",
            "--sessions", "100", "--messages", "0", "--timeout", "15"], 30)
        row["warm"] = res["main"]["sessions"]
        if rc != 0:
            raise RuntimeError(f"Postfix warm-up failed ({rc}):\n{out[-3000:]}")
        rate, conc = a.pf_legit_rate, a.pf_legit_conc
        la = legit_args(a, rate, conc, a.legit_msgs, a.seconds)
        phases = {}
        phases["quiet"] = pf_phase(topo, pf, master, a, "pf-quiet", la, a.seconds)
        print(f"postfix-afpacket quiet: {json.dumps(phases['quiet'])}", flush=True)
        phases["pregreet_full"] = pf_phase(topo, pf, master, a, "pf-pregreet", [
            "--pregreet", "--helo", "bot.example", "--src", PREGREET_SRC,
            "--concurrency", "200", "--handshakes", "200", "--sessions", "0",
            "--duration", str(a.alone_s), "--timeout", "10", "--errors-kept", "5"],
            a.alone_s)
        print(f"postfix-afpacket pregreet: {json.dumps(phases['pregreet_full'])}",
              flush=True)
        phases["listed_alone"] = pf_phase(topo, pf, master, a, "pf-listed", [
            "--listed", "--src", LISTED_SRC, "--concurrency", "1000", "--handshakes", "1000",
            "--sessions", "0", "--duration", str(a.alone_s), "--timeout", "10",
            "--errors-kept", "5"], a.alone_s)
        print(f"postfix-afpacket listed: {json.dumps(phases['listed_alone'])}", flush=True)
        phases["attack"] = pf_phase(
            topo, pf, master, a, "pf-attack", la + ["--also", also("pregreet", a), "--also",
                                                 also("listed", a), "--also",
                                                 also("synflood", a)], a.seconds)
        print(f"postfix-afpacket attack: {json.dumps(phases['attack'])}", flush=True)
        row["phases"] = phases
        log = pf.log()
        row["counters"] = {"PREGREET": log.count(" PREGREET "),
                           "DNSBL rank": log.count(" DNSBL rank "),
                           "blocked using": log.count("blocked using bl.test"),
                           "PASS NEW": log.count(" PASS NEW "),
                           "PASS OLD": log.count(" PASS OLD ")}
    finally:
        if pf:
            pf.stop()
        if dns and dns.poll() is None:
            dns.terminate()
            dns.wait()
        topo.destroy()
        if etc:
            subprocess.run(["rm", "-rf", etc])
    return row


def per_reject(ph, n):
    if not n:
        return None, None, None
    return (round(ph["busy_cycles"] / n), round(ph["busy_cycles"] / ph["tsc_hz"] / n * 1e6, 2),
            round(ph["server_cpu_s"] / n * 1e6, 2))


def summary(res):
    out = [f"{res['date']}, commit {res['commit']}, {res['host']}, {res['cpus']} CPUs, "
           f"Postfix {res['postfix_version']}", ""]
    by = {r["server"]: r for r in res["rows"]}
    m = by.get("mxgate-memif")
    figs = {}
    if m:
        P = m["phases"]
        q, at = P["quiet"], P["attack"]
        out += ["mxgate-memif, each attack kind alone (cost per rejected connection):", "",
                "| kind | rejected | rejects/s | errors | gateway busy cycles per reject | "
                "busy us | process CPU us | rejects per busy CPU second |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, ph in (("pregreet", P["pregreet_alone"]),
                         ("pregreet_full", P.get("pregreet_full")),
                         ("listed", P["listed_alone"]), ("synflood", P["synflood_alone"])):
            if ph is None:
                continue
            if kind == "synflood":
                c = ph["classes"]["synflood"]
                n, rps, errs = c["synacks_seen"], c["syns_per_s"], "-"
            else:
                c = ph["classes"]["main"]
                n, rps, errs = c["sessions"]["rejected"], c["rejects_per_s"], c["errors"]
            cyc, bus, cpu = per_reject(ph, n)
            figs[kind] = {"rejected": n, "rejects_per_s": rps, "busy_cycles_per_reject": cyc,
                          "busy_us_per_reject": bus, "cpu_us_per_reject": cpu,
                          "rejects_per_busy_s": round(1e6 / bus) if bus else None}
            out.append(f"| {kind} | {n} | {rps} | {errs} | {cyc} | {bus} | {cpu} | "
                       f"{figs[kind]['rejects_per_busy_s']} |")
        lq, la = q["classes"]["main"], at["classes"]["main"]
        out += ["", "mxgate-memif, legitimate mail quiet and under all three attacks at once:",
                "", "| phase | legit msg/s | accepted | errors | connect p50/p99 us | "
                "dot p50/p99 us | gateway busy share | process CPU s |",
                "|---|---:|---:|---:|---|---|---:|---:|"]
        for name, ph, l in (("quiet", q, lq), ("attack", at, la)):
            c, d = l["latency_us"]["connect"] or {}, l["latency_us"]["dot"] or {}
            out.append(f"| {name} | {l['msgs_per_s']} | {l['messages']['accepted']} | "
                       f"{l['errors']} | {c.get('p50')}/{c.get('p99')} | "
                       f"{d.get('p50')}/{d.get('p99')} | {ph['busy_share']} | "
                       f"{ph['server_cpu_s']} |")
        ratio = la["msgs_per_s"] / lq["msgs_per_s"] if lq["msgs_per_s"] else None
        out += ["", f"legit kept under attack: {ratio:.3f} of the quiet rate (goal >= 0.8)"
                if ratio else "legit kept: n/a", ""]
        out += ["during the attack, per kind:", "",
                "| kind | rejected | rejects/s | errors |", "|---|---:|---:|---:|"]
        for kind in ("pregreet", "listed"):
            c = at["classes"].get(kind)
            if c:
                out.append(f"| {kind} | {c['sessions']['rejected']} | {c['rejects_per_s']} | "
                           f"{c['errors']} |")
        sf = at["classes"].get("synflood")
        if sf:
            out.append(f"| synflood (SYNs sent; SYN-ACKs seen) | {sf['syns_sent']}; "
                       f"{sf['synacks_seen']} | {sf['syns_per_s']} | - |")
        out += ["", f"gateway counters during the attack: {json.dumps(at['counters'])}"]
        figs["legit_ratio"] = ratio
    p = by.get("postfix")
    if p:
        out += ["", "postfix (bench_screen.run_server: Python bots, hping3, smtp-source):", "",
                "| kind | rejected | rejects/s | server CPU s | CPU us per reject | "
                "rejects per CPU second |", "|---|---:|---:|---:|---:|---:|"]
        for kind in ("pregreet", "dnsbl"):
            r = p[kind]
            out.append(f"| {kind} | {r['rejected']} | {r['rejects_per_s']} | "
                       f"{r['server_cpu_s']} | {r['cpu_us_per_reject']} | "
                       f"{r['rejects_per_cpu_s']} |")
        out += ["", "| smtp-source sessions | quiet msg/s | under attack msg/s | ratio |",
                "|---:|---:|---:|---:|"]
        for k, v in p["quiet"].items():
            w = p["attack"]["legit"].get(k, {})
            out.append(f"| {k} | {v['msgs_per_s']} | {w.get('msgs_per_s')} | "
                       f"{w.get('vs_quiet')} |")
        if m:
            out += ["", "rejects per core (mxgate: per busy-cycle second of its worker; "
                    "Postfix: per CPU second of all its processes):", ""]
            for mk, pk in (("pregreet", "pregreet"), ("pregreet_full", "pregreet"),
                           ("listed", "dnsbl")):
                if mk not in figs:
                    continue
                for what, key in (("busy cycles", "rejects_per_busy_s"),
                                  ("process CPU", "cpu_us_per_reject")):
                    mv = figs[mk][key]
                    if key == "cpu_us_per_reject":
                        mv = round(1e6 / mv) if mv else None
                    pv = p[pk]["rejects_per_cpu_s"]
                    if mv and pv:
                        out.append(f"- {mk} ({what}): mxgate {mv}, Postfix {pv}: "
                                   f"{mv / pv:.1f}x")
    q = by.get("postfix-afpacket")
    if q:
        P = q["phases"]
        out += ["", "postfix-afpacket (the same generator classes over net_af_packet on a "
                "veth; Postfix pinned to --gw-cpu, postscreen_dnsbl_action = enforce):", "",
                "| kind, alone | rejected | rejects/s | errors | Postfix CPU s | "
                "CPU us per reject | rejects per CPU second |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, key, mark in (("pregreet, full speed", "pregreet_full", "PREGREET"),
                                ("listed", "listed_alone", "blocked using")):
            ph = P[key]
            c = ph["classes"]["main"]
            # Postfix's own count (its log): a bot it turned away whose 521 was lost
            # behind the reset (unread input at close) is still a reject
            n = max(c["sessions"]["rejected"], ph.get("log", {}).get(mark, 0))
            cpu = ph["server_cpu_s"]
            figs["pf_" + key] = {"rejected": n, "cpu_us_per_reject":
                                 round(cpu / n * 1e6, 1) if n else None,
                                 "rejects_per_cpu_s": round(n / cpu) if cpu else None}
            out.append(f"| {kind} | {n} (generator {c['sessions']['rejected']}) | "
                       f"{round(n / c['seconds'], 1) if c['seconds'] else 0} | {c['errors']} | {cpu} | "
                       f"{figs['pf_' + key]['cpu_us_per_reject']} | "
                       f"{figs['pf_' + key]['rejects_per_cpu_s']} |")
        out += ["", "| phase | legit msg/s | accepted | errors | connect p50/p99 us | "
                "dot p50/p99 us | Postfix CPU s | listen drops |",
                "|---|---:|---:|---:|---|---|---:|---:|"]
        for name in ("quiet", "attack"):
            ph = P[name]
            l = ph["classes"]["main"]
            c, d = l["latency_us"]["connect"] or {}, l["latency_us"]["dot"] or {}
            out.append(f"| {name} | {l['msgs_per_s']} | {l['messages']['accepted']} | "
                       f"{l['errors']} | {c.get('p50')}/{c.get('p99')} | "
                       f"{d.get('p50')}/{d.get('p99')} | {ph['server_cpu_s']} | "
                       f"{ph['listen_drops']} |")
        lq = P["quiet"]["classes"]["main"]["msgs_per_s"]
        la = P["attack"]["classes"]["main"]["msgs_per_s"]
        figs["pf_legit_ratio"] = la / lq if lq else None
        out.append("")
        out.append(f"legit kept under attack: {la / lq:.3f}" if lq else "legit kept: n/a")
        at = P["attack"]["classes"]
        out.append(f"- Postfix's log during the attack: {P['attack'].get('log')}")
        for kind in ("pregreet", "listed"):
            c = at.get(kind)
            if c:
                out.append(f"- during the attack, {kind}: {c['sessions']['rejected']} "
                           f"rejected, {c['rejects_per_s']}/s, {c['errors']} errors "
                           f"{c['errors_by_kind']}")
        if "synflood" in at:
            out.append(f"- during the attack, synflood: {at['synflood']}")
        if m:
            out += ["", "rejects per core, mxgate-memif (process CPU) / postfix-afpacket:"]
            for mk, pk in (("pregreet_full", "pf_pregreet_full"), ("listed", "pf_listed_alone")):
                mv = figs.get(mk, {}).get("cpu_us_per_reject")
                pv = figs[pk]["cpu_us_per_reject"]
                if mv and pv:
                    out.append(f"- {mk}: {pv / mv:.1f}x ({mv} us against {pv} us)")
    res["figures"] = figs
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate")
    ap.add_argument("--loadgen")
    ap.add_argument("--servers", default="mxgate-memif,postfix-afpacket,postfix")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--alone-s", type=float, default=8)
    ap.add_argument("--legit-rate", type=float, default=3000)
    ap.add_argument("--legit-conc", type=int, default=60)
    ap.add_argument("--legit-msgs", type=int, default=10)
    ap.add_argument("--pregreet-rate", type=float, default=20000)
    ap.add_argument("--pregreet-conc", type=int, default=500)
    ap.add_argument("--syn-rate", type=float, default=50000)
    ap.add_argument("--pf-legit-rate", type=float, default=200,
                    help="postfix-afpacket: legitimate messages/s (a rate it sustains)")
    ap.add_argument("--pf-legit-conc", type=int, default=20)
    ap.add_argument("--pf-attack-s", type=float, default=20)
    ap.add_argument("--pf-attack-rate", type=int, default=500)
    ap.add_argument("--pf-syn-us", type=int, default=100)
    ap.add_argument("--memif-rsize", type=int, default=0,
                    help="log2 of the memif rings' size (the client's devarg; 0: DPDK's "
                    "default, 10)")
    ap.add_argument("--gw-cpu", type=int, default=0)
    ap.add_argument("--gen-cpu", type=int, default=1)
    ap.add_argument("--quiet-cpus", type=float, default=0.3)
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
    mxtest.need_root("the attack benchmark (a network namespace, DPDK, Postfix, hping3)")
    if not os.environ.get(NETNS_ENV):
        bs.in_netns("mxgate-atk", NETNS_ENV, __file__)
    a.mxgate = os.path.abspath(a.mxgate)
    if a.loadgen:
        a.loadgen = os.path.abspath(a.loadgen)
    bs.raise_nofile()
    # the DNS server lists one prefix: 10.2. (the memif run's listed clients) while
    # mxgate runs, 127.2. (bench_screen's DNSBL bots) while Postfix runs
    rows, dns_counts = [], {}
    for name in a.servers.split(","):
        prefix = "127.2." if name == "postfix" else LISTED_PREFIX
        dns = bs.spawn([sys.executable, bs.DNS, "53", "bl.test", prefix])
        try:
            if dns.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the DNS server did not start: {dns.stderr.read()}")
            rows.append({"mxgate-memif": run_memif, "postfix": run_postfix,
                         "postfix-afpacket": run_postfix_afpacket}[name](a))
        finally:
            counts = bs.stop_dns(dns)
            if counts is not None:
                dns_counts[name] = counts
    res = dict(bs.result_head(), args=vars(a), rows=rows, dns=dns_counts)
    print(summary(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
