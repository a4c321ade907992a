"""The screen under attack: mxgate (kernel transport) and Debian's Postfix, both with
postscreen in front of their SMTP server, side by side in one run.

    python3 perf/screen/bench_screen.py --mxgate build-rel/dataplane/mxgate [--quick]
        [--out perf/results/DATE-screen.md] [--json perf/results/DATE-screen.json]

Needs root: the whole run happens in a private network namespace (this script re-runs
itself under `ip netns exec`), whose resolv.conf names 127.0.0.1; hping3; Postfix.

Both servers get the same main.cf postscreen_* parameters (SETTINGS below) and the same
master.cf shape (`127.0.0.1:PORT inet n - n - 1 postscreen` + `smtpd pass - - n - -
smtpd`), and ask the same DNS server (screen_dns.py on 127.0.0.1:53: an A record
127.0.0.2 in bl.test for every 127.2.x.y, NXDOMAIN for the rest). Postfix's dnsblog asks
through libc (no cache); mxgate's resolver caches answers (TTL 300, negative 60). Each
server in turn, freshly started, gets these phases (clients on the same loopback, every
attacker from its own source address, screen_bots.py):
  1. pre-warm: one session from 127.0.0.1 (the legitimate clients' address) waits for the
     greeting, passes (PASS NEW) and is cached: later legitimate sessions are PASS OLD;
  2. quiet: smtp-source, 1 KB messages, one message per session, from 127.0.0.1, in each
     shape of --shapes (20 sessions at once, 3,000 messages; 2 at once, 600) ->
     legitimate messages/s;
  3. pregreet bots alone (--addrs addresses 127.1.x.y, --bot-conc at once, for
     --attack-s s): rejects/s, the server's CPU time per reject;
  4. DNSBL-listed clients alone (--addrs addresses 127.2.x.y, --dnsbl-conc at once): each
     is held for the greet wait, then dropped with 521 5.7.1; rejects/s, CPU per reject;
  5. under attack: 3 and 4 together (each at most --attack-rate new connections/s: on two
     CPUs shared by server and clients, unbounded Python attackers would measure the
     clients' CPU appetite, not the server), with a bounded SYN flood (hping3 -S, random
     sources, one SYN every --syn-us microseconds) against the same port, and the same
     smtp-source shapes as 2 once the attack is steady (each cut after 4 times its quiet
     time + 20 s; its -c counter then gives the rate) -> messages/s under attack / quiet.
Before each server the script waits (--quiet-wait) for other work on the machine to use
fewer than --quiet-cpus CPUs, and reports what it found. Every process it starts has a
process group of its own and is killed in a finally block; hping3 is stopped with the
attack.
Server CPU: mxgate's process (utime + stime of /proc/PID/stat, every thread); Postfix's
master and every process under it (postscreen, dnsblog, smtpd, cleanup, postlogd, ...)
plus what master reaped (cutime + cstime), so short-lived smtpd processes count. Softirq
work (the loopback, the SYN flood) belongs to no process and is in neither.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mxtest  # noqa: E402
import netns  # noqa: E402

NETNS_ENV = "MXGATE_SCREEN_BENCH_NETNS"
BOTS = os.path.join(HERE, "screen_bots.py")
DNS = os.path.join(HERE, "screen_dns.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")
GREET_WAIT = 2
PROFILE_S = 6

# main.cf for both servers (the screen's parameters and what is behind it)
SETTINGS = f"""\
postscreen_greet_wait = {GREET_WAIT}s
postscreen_greet_action = drop
postscreen_dnsbl_sites = bl.test*2
postscreen_dnsbl_threshold = 1
postscreen_dnsbl_action = drop
postscreen_pipelining_enable = no
postscreen_non_smtp_command_enable = no
postscreen_bare_newline_enable = no
postscreen_access_list = permit_mynetworks
smtpd_client_restrictions = check_client_access static:HOLD
smtpd_peername_lookup = no
relay_domains = relay.example
"""
# Postfix only: its postscreen queue limits (default 100 = default_process_limit) would
# answer 421 to the attack's concurrent clients before the tests; mxgate bounds every
# connection by mxgate_max_connections instead
POSTFIX_ONLY = """\
mynetworks = 127.255.255.254/32
default_process_limit = 200
postscreen_pre_queue_limit = 5000
postscreen_post_queue_limit = 5000
postscreen_client_connection_count_limit = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
in_flow_delay = 0
"""
MXGATE_ONLY = """\
mynetworks = 127.255.255.254/32
mxgate_max_connections = 8000
"""


def read_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # after the comm: state ppid ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), [int(x) for x in rest[11:15]]


def tree_cpu(root, reaped=True):
    """CPU seconds of root and every live process under it, plus (reaped) what root
    waited for."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = read_stat(int(d))
            except (OSError, IndexError):
                pass
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    user = system = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid not in procs:
            continue
        t = procs[pid][1]
        user += t[0] + (t[2] if (reaped and pid == root) else 0)
        system += t[1] + (t[3] if (reaped and pid == root) else 0)
        todo += kids.get(pid, [])
    return user / CLK_TCK, system / CLK_TCK


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def listen_drops():
    """The namespace's TcpExt ListenOverflows + ListenDrops (/proc/net/netstat): SYNs and
    handshakes dropped because a listen queue was full."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            d = dict(zip(head.split()[1:], (int(x) for x in vals.split()[1:])))
            return d.get("ListenDrops", 0)  # ListenDrops counts the overflows too
    return 0


def background_cpus(seconds=1.0):
    """CPUs' worth of busy time over the next `seconds` with no server running: other
    people's work on a shared machine, which every column here would otherwise count."""
    b0, t0 = machine_busy(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy() - b0) / (time.monotonic() - t0)


def wait_quiet(limit, max_wait):
    """Wait (up to max_wait s) until background_cpus() is under limit; returns the last
    measurement."""
    deadline = time.monotonic() + max_wait
    bg = background_cpus()
    while bg >= limit and time.monotonic() < deadline:
        bg = background_cpus()
    return bg


def master_cf(port, host="127.0.0.1"):
    lst = f"{host}:" if host else ""
    return (f"{lst}{port} inet n - n - 1 postscreen\n"
            "smtpd pass - - n - - smtpd\n")


class MxgateServer:
    name = "mxgate-kernel"
    # where clients connect, the legitimate clients' source address, the attackers'
    # address prefixes (PREFIX.x.y)
    host = legit_src = "127.0.0.1"
    bot_prefix = {"pregreet": "127.1", "dnsbl": "127.2"}

    def __init__(self, binary, workers):
        self.port = mxtest.free_port()
        self.gw = mxtest.Gateway(binary, workers=workers, port=self.port, extra_config="")
        data = os.path.join(self.gw.dir, "data")
        os.makedirs(data)
        mpath = os.path.join(self.gw.dir, "master.cf")
        with open(mpath, "w") as f:
            f.write(master_cf(self.port))
        with open(self.gw.config_path, "a") as f:
            f.write(SETTINGS + MXGATE_ONLY + f"mxgate_master_file = {mpath}\n"
                    f"data_directory = {data}\nmxgate_dns_servers = 127.0.0.1:53\n")
        self.settings = SETTINGS + MXGATE_ONLY

    def start(self):
        self.gw.start()

    def cpu(self):
        return sum(self.cpu_split())

    def cpu_split(self):
        return tree_cpu(self.gw.proc.pid, reaped=False)

    def counters(self):
        st = self.gw.stats()
        return {k: v for k, v in st.items() if k.startswith("screen_")}

    def stop(self):
        self.gw.stop(check=False)
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.gw.dir, ignore_errors=True)
        else:
            print(f"kept {self.gw.dir}", flush=True)


class BenchTopology(netns.Topology):
    """The dpdk gateway's own namespace, joined by a veth pair to this (the benchmark's)
    namespace, where the clients and attackers stay as for the other servers: the client
    end of the veth has 10.77.0.1/24 (the legitimate clients' address), and the attackers'
    prefixes are local to this namespace (AnyIP: `ip route add local P/16 dev lo`), so that
    a bot binds any address of them and the gateway reaches them all through its one
    next hop, 10.77.0.1 (one ARP entry, as for a gateway behind a router)."""

    def __init__(self, prefix, local_nets):
        super().__init__(prefix=prefix)
        self.cl_ns = None  # this namespace
        self.local_nets = local_nets

    def _ns(self, ns, argv):
        return list(argv) if ns is None else super()._ns(ns, argv)

    def _delete(self):
        subprocess.run(["ip", "netns", "delete", self.gw_ns], capture_output=True)
        subprocess.run(["ip", "link", "delete", self.dp_cl_if], capture_output=True)
        for net in self.local_nets:
            subprocess.run(["ip", "route", "delete", "local", net, "dev", "lo"],
                           capture_output=True)

    def create(self):
        self._delete()
        run = netns._run
        try:
            run(["ip", "netns", "add", self.gw_ns])
            run(self._ns(self.gw_ns, ["ip", "link", "set", "lo", "up"]))
            run(["ip", "link", "add", self.dp_gw_if, "netns", self.gw_ns, "type", "veth",
                 "peer", "name", self.dp_cl_if])
            run(self._ns(self.gw_ns, ["sysctl", "-q", "-w",
                                      f"net.ipv6.conf.{self.dp_gw_if}.disable_ipv6=1"]))
            run(self._ns(self.gw_ns, ["ip", "link", "set", self.dp_gw_if, "up"]))
            # the kernel would leave TCP checksums to the "hardware" (see netns.Topology)
            run(["ethtool", "-K", self.dp_cl_if, "tx", "off"])
            run(["ip", "addr", "add", f"{self.cl_ip4}/24", "dev", self.dp_cl_if])
            run(["ip", "-6", "addr", "add", f"{self.cl_ip6}/64", "dev", self.dp_cl_if,
                 "nodad"])
            run(["ip", "link", "set", self.dp_cl_if, "up"])
            for net in self.local_nets:
                run(["ip", "route", "add", "local", net, "dev", "lo"])
            self.dp_gw_mac = self._mac(self.gw_ns, self.dp_gw_if)
            self.dp_cl_mac = self._mac(None, self.dp_cl_if)
        except BaseException:
            self._delete()
            raise
        self.up = True
        return self


class MxgateDpdkServer:
    """mxgate on the dpdk transport (--no-huge, net_af_packet on the veth of a
    BenchTopology), its own DNS server in its namespace (the resolver's sockets are the
    kernel's, there). Its CPU is the process's utime + stime as for the kernel transport:
    the workers sleep when idle (mxgate_dpdk_idle_sleep_us), so polling an empty port
    costs little, and what it does cost is counted. The system part is mostly
    af_packet's: a TX burst's sendto() runs the veth and the receiving namespace's TCP
    stack inline (on a NIC it would be a doorbell write). busy() gives the workers'
    busy cycles (poll iterations that did work) for the split."""
    name = "mxgate-dpdk"
    host, legit_src = "10.77.0.2", "10.77.0.1"
    bot_prefix = {"pregreet": "10.1", "dnsbl": "10.2"}

    def __init__(self, binary, workers):
        self.port = 25
        self.topo = BenchTopology(f"scr{os.getpid() % 10000}",
                                  [f"{p}.0.0/16" for p in self.bot_prefix.values()]).create()
        self.dns = None
        try:
            self.gw = netns.DpdkGateway(binary, self.topo, workers=workers, port=self.port,
                                        mbufs=65536)
            data = os.path.join(self.gw.dir, "data")
            os.makedirs(data)
            mpath = os.path.join(self.gw.dir, "master.cf")
            with open(mpath, "w") as f:
                f.write(master_cf(self.port, host=None))
            with open(self.gw.config_path, "a") as f:
                f.write(SETTINGS + MXGATE_ONLY + f"mxgate_master_file = {mpath}\n"
                        f"data_directory = {data}\nmxgate_dns_servers = 127.0.0.1:53\n")
        except BaseException:
            self.topo.destroy()
            raise
        self.settings = SETTINGS + MXGATE_ONLY

    def start(self):
        self.dns = self.topo.gw_popen([sys.executable, DNS, "53", "bl.test",
                                       self.bot_prefix["dnsbl"] + "."],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        if self.dns.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the gateway's DNS server did not start: "
                               f"{self.dns.stderr.read()}")
        self.gw.start()

    def cpu(self):
        return sum(self.cpu_split())

    def cpu_split(self):
        return tree_cpu(self.gw.proc.pid, reaped=False)

    def busy(self):
        """(busy cycles of the workers, TSC Hz) from the dpdk statistics line."""
        st = self.gw.stats()
        return st["busy_cycles"], st["tsc_hz"]

    def profile(self, a):
        """Where the process's CPU goes while pregreet bots attack: perf samples (-g) of
        the gateway for PROFILE_S seconds, and the share of them under af_packet's
        sendto(2) (a TX burst: the veth, and the receiving namespace's TCP stack run inline
        in it). Returns {samples, sendto_share, softirq_share}."""
        perf = mxtest.need_tool("/usr/bin/perf")
        data = os.path.join(self.gw.dir, "perf.data")
        p = bots(self, "pregreet", a.addrs, a.bot_conc, PROFILE_S + 4)
        try:
            time.sleep(2)
            r = subprocess.run([perf, "record", "-q", "-g", "-o", data, "-p",
                                str(self.gw.proc.pid), "--", "sleep", str(PROFILE_S)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"perf record failed: {r.stderr[-500:]}")
            bots_result(p, PROFILE_S + 60)
        finally:
            kill_group(p)
        rep = subprocess.run([perf, "report", "-i", data, "--children", "--sort", "sym",
                              "-g", "none", "--stdio"], capture_output=True, text=True).stdout
        share = {}
        for line in rep.splitlines():
            f = line.split()
            # "  65.37%  0.05%  [k] __x64_sys_sendto"
            if len(f) == 4 and f[0].endswith("%") and f[2] == "[k]":
                share.setdefault(f[3], float(f[0][:-1]) / 100)
        samples = re.search(r"# Samples: (\d+\S*)", rep)
        if not share:
            raise RuntimeError(f"perf report gave no symbols:\n{rep[:2000]}")
        return {"samples": samples.group(1) if samples else None,
                "sendto_share": round(share.get("__x64_sys_sendto", 0.0), 3),
                "softirq_share": round(share.get("handle_softirqs", 0.0), 3)}

    def counters(self):
        st = self.gw.stats()
        keep = ("tcp_syn", "tcp_syn_cookie_sent", "tcp_syn_cookie_ok", "tcp_accept",
                "tcp_rst_sent", "rx_missed", "tx_dropped", "tcp_conn_full")
        return {k: v for k, v in st.items() if k.startswith("screen_") or k in keep}

    def stop(self):
        try:
            self.gw.stop(check=False)
        finally:
            if self.dns:
                self.dns_counts = stop_dns(self.dns)
            self.topo.destroy()
            if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
                shutil.rmtree(self.gw.dir, ignore_errors=True)
            else:
                print(f"kept {self.gw.dir}", flush=True)


class PostfixServer:
    name = "postfix"
    host = legit_src = "127.0.0.1"
    bot_prefix = MxgateServer.bot_prefix

    def __init__(self):
        self.pf = mxtest.PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=(
            "myhostname = mx.test.example\n" + SETTINGS + POSTFIX_ONLY))
        self.port = mxtest.free_port()
        rest = mxtest.PostfixPeer.MASTER_CF.split("\n", 1)[1]
        with open(os.path.join(self.pf.conf, "master.cf"), "w") as f:
            f.write(master_cf(self.port) + "dnsblog unix - - n - 0 dnsblog\n"
                    "tlsproxy unix - - n - 0 tlsproxy\n" + rest)
        self.settings = SETTINGS + POSTFIX_ONLY
        self.master = None

    def start(self):
        self.pf.start()
        if not mxtest.wait_port("127.0.0.1", self.port):
            raise RuntimeError(f"postscreen did not listen:\n{self.pf.log()[-3000:]}")
        with open(os.path.join(self.pf.dir, "queue", "pid", "master.pid")) as f:
            self.master = int(f.read().split()[0])

    def cpu(self):
        return sum(self.cpu_split())

    def cpu_split(self):
        return tree_cpu(self.master)

    def counters(self):
        log = self.pf.log()
        return {"PREGREET": log.count(" PREGREET "), "DNSBL rank": log.count(" DNSBL rank "),
                "PASS NEW": log.count(" PASS NEW "), "PASS OLD": log.count(" PASS OLD ")}

    def stop(self):
        self.pf.stop()
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.pf.dir, ignore_errors=True)
        else:
            print(f"kept {self.pf.dir}", flush=True)


def spawn(argv):
    # a process group of its own: killed whole in finally blocks
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def kill_group(p, sig=signal.SIGKILL):
    if p and p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass


def bots(srv, mode, addrs, conc, seconds, rate=0):
    return spawn([sys.executable, BOTS, mode, srv.host, str(srv.port), srv.bot_prefix[mode],
                  str(addrs), str(conc), str(seconds), str(rate)])


def bots_result(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate()
    lines = out.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"screen_bots failed ({p.returncode}): {out[-500:]}{err[-2000:]}")
    return json.loads(lines[-1])


def rps(res):
    """Rejects per second: rejects over the time from the first connect to the last
    reject (connections still open after the end do not stretch it)."""
    return round(res["rejected"] / res["last_reject"], 1) if res["last_reject"] else 0.0


def prewarm(srv):
    """One patient session from the legitimate clients' address: the greeting after the
    greet wait (PASS NEW), EHLO, QUIT. Returns the seconds to the greeting."""
    import socket
    t0 = time.monotonic()
    s = socket.create_connection((srv.host, srv.port), 10, source_address=(srv.legit_src, 0))
    f = s.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError("pre-warm: no greeting")
        if line[:4] == b"220 ":
            break
    dt = time.monotonic() - t0
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()
    return dt


def legit(srv, messages, sessions, timeout=300):
    """smtp-source from the legitimate clients' address (the kernel picks it: the route to
    the server): (elapsed s, messages/s, messages done). After timeout seconds it is killed
    and the rate is what its counter (-c) reached."""
    argv = ["/usr/sbin/smtp-source", "-c", "-s", str(sessions), "-m", str(messages),
            "-l", "1000", "-f", "s@sender.example", "-t", "u@relay.example",
            f"{srv.host}:{srv.port}"]
    t0 = time.monotonic()
    p = spawn(argv)
    try:
        out, err = p.communicate(timeout=timeout)
        done = messages
        if p.returncode != 0:
            raise RuntimeError(f"smtp-source failed ({p.returncode}): {out[-300:]}{err}")
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate()
        counts = [int(x) for x in out.replace("\r", "\n").split() if x.isdigit()]
        done = max(counts) if counts else 0
    finally:
        kill_group(p)
    dt = time.monotonic() - t0
    return dt, done / dt, done


def measure(srv, fn):
    c0, b0, t0 = srv.cpu(), machine_busy(), time.monotonic()
    out = fn()
    time.sleep(0.3)  # the last closes and log lines
    return out, srv.cpu() - c0, machine_busy() - b0, time.monotonic() - t0


def run_server(srv, a):
    row = {"server": srv.name, "background_cpus": round(wait_quiet(a.quiet_cpus,
                                                                    a.quiet_wait), 2)}
    srv.start()
    try:
        time.sleep(1)
        row["prewarm_greet_s"] = round(prewarm(srv), 2)
        # 2. quiet: each legitimate load shape
        row["quiet"] = {}
        for sessions, messages in a.shapes:
            (dt, rate, _), cpu, busy, wall = measure(srv, lambda: legit(srv, messages, sessions))
            row["quiet"][str(sessions)] = {"s": round(dt, 2), "msgs_per_s": round(rate, 1),
                                           "server_cpu_s": round(cpu, 2),
                                           "machine_busy_s": round(busy, 2),
                                           "wall_s": round(wall, 2)}
            print(f"{srv.name}: quiet, {sessions} sessions: {rate:.0f} msg/s", flush=True)
        # 3. and 4. each attack alone
        for mode, conc in (("pregreet", a.bot_conc), ("dnsbl", a.dnsbl_conc)):
            p = bots(srv, mode, a.addrs, conc, a.attack_s)
            busy0 = srv.busy() if hasattr(srv, "busy") else None
            u0, s0 = srv.cpu_split()
            ld0 = listen_drops()
            try:
                res, cpu, busy, wall = measure(srv, lambda: bots_result(p, a.attack_s + 60))
            finally:
                kill_group(p)
            u1, s1 = srv.cpu_split()
            rej = res["rejected"]
            row[mode] = dict(res, rejects_per_s=rps(res), server_user_s=round(u1 - u0, 2),
                             listen_drops=listen_drops() - ld0,
                             server_sys_s=round(s1 - s0, 2),
                             server_cpu_s=round(cpu, 3), machine_busy_s=round(busy, 2),
                             cpu_us_per_reject=round(cpu / rej * 1e6) if rej else None,
                             rejects_per_cpu_s=round(rej / cpu) if cpu > 0 else None)
            if busy0:
                (b1, hz), b0 = srv.busy(), busy0[0]
                row[mode].update(busy_s=round((b1 - b0) / hz, 3),
                                 busy_cycles_per_reject=round((b1 - b0) / rej) if rej else None,
                                 tsc_hz=hz)
            print(f"{srv.name}: {mode}: {json.dumps(row[mode])}", flush=True)
        if hasattr(srv, "profile"):
            row["profile"] = srv.profile(a)
            print(f"{srv.name}: profile: {json.dumps(row['profile'])}", flush=True)
        # 5. under attack: both attacks and the SYN flood, the legitimate shapes in turn
        procs = []
        syn = None
        att = {"legit": {}}
        try:
            # each legitimate run under attack may take 4 times its quiet time (+ 20 s)
            limits = [4 * row["quiet"][str(sh)]["s"] + 20 for sh, _ in a.shapes]
            secs = sum(limits) + 2 * GREET_WAIT + 10
            procs.append(bots(srv, "pregreet", a.addrs, a.bot_conc, secs, a.attack_rate))
            procs.append(bots(srv, "dnsbl", a.addrs, a.dnsbl_conc, secs, a.attack_rate))
            if a.syn_us:
                syn = spawn(["/usr/sbin/hping3", "-q", "-S", "-p", str(srv.port), "-i",
                             f"u{a.syn_us}", "--rand-source", srv.host])
            c0, b0, t0 = srv.cpu(), machine_busy(), time.monotonic()
            ld0 = listen_drops()
            time.sleep(2 * GREET_WAIT + 1)  # the attack at its steady state
            for (sessions, messages), limit in zip(a.shapes, limits):
                dt, rate, done = legit(srv, messages, sessions, limit)
                q = row["quiet"][str(sessions)]["msgs_per_s"]
                att["legit"][str(sessions)] = {"s": round(dt, 2), "msgs_per_s": round(rate, 1),
                                               "vs_quiet": round(rate / q, 3),
                                               "messages": done, "finished": done == messages}
                print(f"{srv.name}: under attack, {sessions} sessions: {rate:.0f} msg/s "
                      f"({rate / q:.2f} of quiet)", flush=True)
            cpu, busy, wall = srv.cpu() - c0, machine_busy() - b0, time.monotonic() - t0
            att["listen_drops"] = listen_drops() - ld0
            for p in procs:
                kill_group(p, signal.SIGTERM)
            pre = bots_result(procs[0], 30)
            dns = bots_result(procs[1], 30)
            if syn:
                kill_group(syn, signal.SIGINT)
                _, _, ru = os.wait4(syn.pid, 0)
                syn.returncode = 0
                att["syn_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)
        finally:
            for p in procs + [syn]:
                if p:
                    kill_group(p)
                    if p.returncode is None:
                        p.wait()
        att.update({"pregreet": pre, "dnsbl": dns, "wall_s": round(wall, 2),
                    "pregreet_rejects_per_s": rps(pre), "dnsbl_rejects_per_s": rps(dns),
                    "server_cpu_s": round(cpu, 2), "machine_busy_s": round(busy, 2),
                    "syn_per_s": round(1e6 / a.syn_us) if a.syn_us else 0})
        row["attack"] = att
        time.sleep(1)
        row["counters"] = srv.counters()
    finally:
        srv.stop()
    if getattr(srv, "dns_counts", None):
        row["dns"] = srv.dns_counts
    return row


def report(res):
    a = res["args"]
    rows = res["rows"]
    by = {r["server"]: r for r in rows}
    shapes = [str(x[0]) for x in a["shapes"]]
    out = ["# The screen under attack: mxgate and Postfix's postscreen\n",
           f"{res['date']}, commit {res['commit']}, {res['host']}, {res['cpus']} CPUs, "
           f"{res['platform']}\n",
           f"`python3 perf/screen/bench_screen.py --mxgate {a['mxgate']}"
           f"{' --quick' if a['quick'] else ''}` (release build, {a['workers']} workers; "
           f"Debian Postfix {res['postfix_version']}). Everything in a private network "
           "namespace: clients, attackers, the DNS server and the server share the two "
           "CPUs. mxgate-kernel and Postfix on its loopback; mxgate-dpdk (`--no-huge`, "
           "net_af_packet) on a veth to a namespace of its own, its clients on the other "
           "end (10.77.0.1; attackers 10.1.x.y and 10.2.x.y, local routes there).\n",
           "## Rejects at connect, each attack alone\n",
           "| server | kind | connections | rejected | rejects/s | server CPU s (user + sys) | "
           "CPU us per reject | rejects per CPU second | attacker CPU s | machine busy s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for k in ("pregreet", "dnsbl"):
            x = r[k]
            out.append(f"| {r['server']} | {k} | {x['connections']} | {x['rejected']} | "
                       f"{x['rejects_per_s']} | {x['server_cpu_s']} ({x.get('server_user_s')} + "
                       f"{x.get('server_sys_s')}) | {x['cpu_us_per_reject']} | {x['rejects_per_cpu_s']} | {x['cpu']} | "
                       f"{x['machine_busy_s']} |")
    out.append("")
    mx = [by[n] for n in ("mxgate-kernel", "mxgate-dpdk") if n in by]
    if mx and "postfix" in by:
        p = by["postfix"]
        out.append("mxgate / Postfix, rejects per second of server CPU (rejects/s per core):\n")
        out.append("| kind | server | mxgate | Postfix | ratio |")
        out.append("|---|---|---:|---:|---:|")
        for k in ("pregreet", "dnsbl"):
            for m in mx:
                mv, pv = m[k]["rejects_per_cpu_s"], p[k]["rejects_per_cpu_s"]
                ratio = f"{mv / pv:.1f}x" if mv and pv else "n/a"
                out.append(f"| {k} | {m['server']} | {mv} | {pv} | {ratio} |")
        out.append("")
    for r in rows:
        pr = r.get("profile")
        if pr and pr.get("sendto_share") is not None and "postfix" in by:
            share = pr["sendto_share"]
            out.append(f"{r['server']} without af_packet's transmit path: perf sampled the "
                       f"gateway ({pr['samples']} samples) during a pregreet attack; "
                       f"{share:.0%} of its CPU was under sendto(2) (of it, softirq: the "
                       f"receiving namespace's TCP stack run inline: "
                       f"{pr['softirq_share']:.0%} of all). On a NIC that is a descriptor "
                       f"write and a doorbell. The rest, the dataplane's own work:\n")
            out.append("| kind | CPU us per reject, all | without sendto | rejects per CPU "
                       "second | Postfix | ratio |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for k in ("pregreet", "dnsbl"):
                x, pv = r[k], by["postfix"][k]["rejects_per_cpu_s"]
                if not x["rejected"] or not x["server_cpu_s"]:
                    continue
                own = x["server_cpu_s"] * (1 - share) / x["rejected"]
                out.append(f"| {k} | {x['cpu_us_per_reject']} | {own * 1e6:.1f} | "
                           f"{1 / own:.0f} | {pv} | "
                           f"{(1 / own) / pv:.1f}x |" if pv else "| n/a |")
            out.append("")
        if "busy_cycles_per_reject" in r["pregreet"]:
            hz = r["pregreet"]["tsc_hz"]
            out.append(f"{r['server']}: the workers' busy cycles (poll iterations that did "
                       f"work, TSC at {hz / 1e9:.2f} GHz) per reject: " + "; ".join(
                           f"{k} {r[k]['busy_cycles_per_reject']} "
                           f"({r[k]['busy_cycles_per_reject'] / hz * 1e6:.1f} us; busy "
                           f"{r[k]['busy_s']} s of {r[k]['server_cpu_s']} s process CPU)"
                           for k in ("pregreet", "dnsbl") if r[k]["busy_cycles_per_reject"])
                       + ".\n")
    out.append("## Legitimate mail, quiet and under attack\n")
    out.append("| server | smtp-source sessions | quiet msg/s | CPUs busy (quiet, all work) | "
               "under attack msg/s | attack / quiet |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for sh in shapes:
            q, x = r["quiet"][sh], r["attack"]["legit"][sh]
            cut = "" if x.get("finished", True) else f" (cut at {x['messages']})"
            # busy time is counted over the run and 0.3 s after it (older results
            # lack wall_s: the same window, approximately)
            wall = q.get("wall_s", q["s"] + 0.3)
            out.append(f"| {r['server']} | {sh} | {q['msgs_per_s']} | "
                       f"{q['machine_busy_s'] / wall:.2f} | {x['msgs_per_s']}{cut} | "
                       f"{x['vs_quiet']:.2f} |")
    out.append("")
    out.append("The attack during those runs (all at once):\n")
    out.append("| server | wall s | pregreet conns | pregreet rejected | pregreet rejects/s | "
               "DNSBL conns | DNSBL rejected | DNSBL rejects/s | errors | SYN/s offered | "
               "server CPU s | attackers' CPU s (bots + hping3) | machine busy s |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        x = r["attack"]
        pre, dns = x["pregreet"], x["dnsbl"]
        acpu = round(pre["cpu"] + dns["cpu"] + x.get("syn_cpu_s", 0), 2)
        out.append(f"| {r['server']} | {x['wall_s']} | {pre['connections']} | "
                   f"{pre['rejected']} | {x['pregreet_rejects_per_s']} | "
                   f"{dns['connections']} | {dns['rejected']} | {x['dnsbl_rejects_per_s']} | "
                   f"{pre['errors'] + dns['errors']} | {x['syn_per_s']} | "
                   f"{x['server_cpu_s']} | {acpu} | {x['machine_busy_s']} |")
    out.append("")
    odd = [f"{r['server']} {k}{' (under attack)' if w else ''}: {x['other']}"
           for r in rows for w, k, x in
           [(0, "pregreet", r["pregreet"]), (0, "dnsbl", r["dnsbl"]),
            (1, "pregreet", r["attack"]["pregreet"]), (1, "dnsbl", r["attack"]["dnsbl"])]
           if x["other"]]
    out.append("Listen-queue drops (TcpExt ListenDrops of the namespace): " + "; ".join(
        f"{r['server']}: pregreet alone {r['pregreet'].get('listen_drops')}, DNSBL alone "
        f"{r['dnsbl'].get('listen_drops')}, under attack (with the SYN flood) "
        f"{r['attack'].get('listen_drops')}" for r in rows) + ".\n")
    out.append("Attack connections that ended without the 521: " +
               ("; ".join(odd) if odd else "none") + ".\n")
    out.append("Other work on the machine just before each server's phases (CPUs busy, "
               "--quiet-cpus/--quiet-wait): " + "; ".join(
                   f"{r['server']}: {r.get('background_cpus')}" for r in rows) + ".\n")
    out.append("Server counters after the run: " + "; ".join(
        f"{r['server']}: {r['counters']}" for r in rows) + "\n")
    out.append(f"DNS server: {res.get('dns')} (queries over the whole run, both servers)\n")
    out.append("## Settings\n\nmain.cf of both servers:\n\n```\n" + SETTINGS + "```\n")
    out.append("Postfix only:\n\n```\n" + POSTFIX_ONLY + "```\n\nmxgate only:\n\n```\n" +
               MXGATE_ONLY + "```\n")
    out.append(f"master.cf (both): `127.0.0.1:PORT inet n - n - 1 postscreen` and `smtpd "
               f"pass - - n - - smtpd` (Postfix: plus dnsblog, tlsproxy and its usual "
               f"services).\n")
    out.append(f"Load: {a['addrs']} pregreet bots (127.1.x.y, \"EHLO bot.example\" at "
               f"connect) with {a['bot_conc']} connections open at once, {a['addrs']} "
               f"DNSBL-listed clients (127.2.x.y, silent) with {a['dnsbl_conc']} at once; a "
               f"bot never has two connections open. Each attack alone for {a['attack_s']} "
               f"s at the client's full speed. Under attack each kind opens at most "
               f"{a['attack_rate']} connections/s, with hping3 -S --rand-source one SYN "
               f"every {a['syn_us']} us to the same port. Legitimate load: smtp-source -s "
               f"SESSIONS -m MESSAGES -l 1000 (shapes {a['shapes']}) from 127.0.0.1, "
               f"pre-warmed (one patient session, PASS NEW; the rest PASS OLD), deep tests "
               f"off.\n")
    return "\n".join(out)


def stop_dns(dns):
    """Stop the DNS server (screen_dns.py) and return the counts it prints on SIGTERM, or
    None when it said nothing usable; the process is reaped either way."""
    counts = None
    if dns.poll() is None:
        dns.send_signal(signal.SIGTERM)
        try:
            counts = json.loads(dns.communicate(timeout=5)[0].strip().splitlines()[-1])
        except Exception:
            pass
    kill_group(dns)
    if dns.poll() is None:  # not a group of its own (started in a topology's namespace)
        dns.kill()
    dns.wait()
    return counts


def result_head():
    """What every screen benchmark's JSON result starts with: date, commit, machine and
    the Postfix it ran against."""
    pv = subprocess.run(["/usr/sbin/postconf", "-d", "-h", "mail_version"],
                        capture_output=True, text=True).stdout.strip()
    return {"date": str(datetime.date.today()),
            "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "postfix_version": pv}


def in_netns(name="mxgate-scr", env=NETNS_ENV, script=__file__):
    """Run a screen benchmark (this one, or script) again in a private network namespace
    (DNS on 127.0.0.1, room for many connections), and exit with its status."""
    netns.rerun_in_private_netns(
        name, env, script, sys.argv[1:],
        "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n", "127.0.0.1 localhost\n",
        sysctls=(("net.ipv4.tcp_syncookies", "1"), ("net.core.somaxconn", "4096"),
                 ("net.ipv4.tcp_max_syn_backlog", "4096"),
                 ("net.ipv4.ip_local_port_range", "10000 60999")))


def raise_nofile(limit=65536):
    """Room for a benchmark's many sockets: the soft limit up to limit (or the hard one)."""
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, limit), hard))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=False)
    ap.add_argument("--quick", action="store_true", help="a run of about a minute")
    ap.add_argument("--servers", default="mxgate-kernel,mxgate-dpdk,postfix")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--addrs", type=int, help="addresses of each attacker kind (1000)")
    ap.add_argument("--bot-conc", type=int, help="pregreet connections at once (200)")
    ap.add_argument("--dnsbl-conc", type=int, help="DNSBL connections at once (900)")
    ap.add_argument("--attack-s", type=float, help="seconds each attack runs alone (20)")
    ap.add_argument("--shapes", help="legitimate load shapes, SESSIONS:MESSAGES,... "
                    "(20:3000,2:600): smtp-source -s SESSIONS -m MESSAGES")
    ap.add_argument("--attack-rate", type=int, default=500,
                    help="new connections/s of each attacker kind beside the legitimate "
                    "load (500; 0: as fast as the client can)")
    ap.add_argument("--syn-us", type=int, default=100, help="us between SYNs (100: 10k/s)")
    ap.add_argument("--quiet-cpus", type=float, default=0.15,
                    help="before each server, wait until other work uses fewer CPUs")
    ap.add_argument("--quiet-wait", type=float,
                    help="... for at most this many seconds (60; --quick: 10)")
    ap.add_argument("--out")
    ap.add_argument("--json")
    ap.add_argument("--from-json")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            print(report(json.load(f)))
        return
    if not a.mxgate:
        ap.error("--mxgate is required")
    q = a.quick
    for k, full, quick in (("addrs", 1000, 300), ("bot_conc", 200, 100),
                           ("dnsbl_conc", 900, 250), ("attack_s", 20, 5),
                           ("shapes", "20:3000,2:600", "20:1000,2:300"),
                           ("quiet_wait", 60, 10)):
        if getattr(a, k) is None:
            setattr(a, k, quick if q else full)
    a.shapes = [tuple(int(x) for x in sh.split(":")) for sh in a.shapes.split(",")]
    mxtest.need_root("the screen benchmark (a network namespace, Postfix, hping3)")
    for tool in ("/usr/sbin/postfix", "/usr/lib/postfix/sbin/postscreen", "/usr/sbin/hping3",
                 "/usr/sbin/smtp-source"):
        mxtest.need_tool(tool)
    if not os.environ.get(NETNS_ENV):
        in_netns()
    a.mxgate = os.path.abspath(a.mxgate)
    raise_nofile()
    dns = spawn([sys.executable, DNS, "53", "bl.test", "127.2."])
    rows = []
    try:
        if dns.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the DNS server did not start: {dns.stderr.read()}")
        for name in a.servers.split(","):
            srv = {"mxgate-kernel": lambda: MxgateServer(a.mxgate, a.workers),
                   "mxgate-dpdk": lambda: MxgateDpdkServer(a.mxgate, a.workers),
                   "postfix": PostfixServer}[name]()
            rows.append(run_server(srv, a))
    finally:
        dns_counts = stop_dns(dns)
    res = dict(result_head(), args=vars(a), rows=rows, dns=dns_counts)
    text = report(res)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
