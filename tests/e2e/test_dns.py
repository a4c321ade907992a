"""DNS and policy servers, end to end, on one transport (argv: mxgate binary, kernel|dpdk).

A real unbound serves local zones (PTR, A, MX, a DNS blocklist with TXT) and a real
postgrey greylists; the gateway asks them through its resolver and policy services:
  1. the client's name: a PTR name confirmed by its address is the client's name in the
     log and in Received:; a PTR name that does not resolve back is logged as Postfix does
     and the client stays "unknown"; no PTR: "unknown", and reject_unknown_client_hostname
     answers 450 4.7.25;
  2. reject_rbl_client on a zone with no local data is asked in DNS: a listed client gets
     Postfix's 554 with the TXT reason; reject_unknown_sender_domain on an NXDOMAIN domain;
  3. check_policy_service with postgrey: a new triplet is greylisted (450), its retry
     after the delay accepted; a dead policy server gets the default action (451 4.3.5)
     after its timeout, and while that session waits another session completes: the
     worker does not block;
  4. policyd-spf (Debian's postfix-policyd-spf-python, behind socat as a TCP policy
     server, as sites run it without Postfix's spawn(8)): a sender whose SPF record allows
     the client gets its Received-SPF header prepended to the spooled message, one that
     fails SPF gets policyd-spf's 550 5.7.23. policyd-spf reads /etc/resolv.conf and can
     only ask port 53, so it runs in a namespace of its own (`ip netns exec` mounts the
     namespace's resolv.conf) with an unbound of its own serving the same records.
Kernel: clients connect from 127.0.0.x, unbound and postgrey listen on 127.0.0.1. dpdk: the
gateway runs in a network namespace (netns.py) with unbound and postgrey beside it; the
clients (10.77.0.1, fd77::1) in the client namespace. Needs root for dpdk.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
UNBOUND = mxtest.need_tool("/usr/sbin/unbound")
POSTGREY = mxtest.need_tool("/usr/sbin/postgrey")
POLICYD_SPF = mxtest.need_tool("/usr/bin/policyd-spf")
SOCAT = mxtest.need_tool("socat")
mxtest.need_tool("ip")
mxtest.need_root("the policyd-spf namespace")
mxtest.need_tool("swaks")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()

GREYLIST_DELAY = 2
SPF_PASS, SPF_FAIL = "192.0.2.10", "192.0.2.11"  # spf.dns.test allows the first only


def unbound_conf(d, port, records, name="unbound"):
    lines = [
        "server:",
        "  interface: 127.0.0.1",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-daemonize: no",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{d}"',
        '  pidfile: ""',
        "  use-syslog: no",
        f'  logfile: "{d}/{name}.log"',
        "  num-threads: 1",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        '  auto-trust-anchor-file: ""',
        "  local-zone: \"dns.test.\" static",
        "  local-zone: \"in-addr.arpa.\" static",
        "  local-zone: \"ip6.arpa.\" static",
        "  local-zone: \"zen.bl.test.\" static",
        "  local-zone: \"nx.test.\" static",
    ]
    for r in records:
        lines.append(f"  local-data: '{r}'")
    lines += ["remote-control:", "  control-enable: no"]
    return "\n".join(lines) + "\n"


def reverse4(a):
    return ".".join(reversed(a.split("."))) + ".in-addr.arpa."


def reverse6(a):
    import ipaddress
    nib = ipaddress.ip_address(a).exploded.replace(":", "")
    return ".".join(reversed(nib)) + ".ip6.arpa."


class Env:
    def __init__(self):
        # distinct: policyd-spf's socat once took postgrey's port (the same free port
        # handed out twice), and the greylisting case asked the wrong server
        self.dns_port, self.pg_port, self.dead_port, self.spf_port = mxtest.free_ports(4)
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"mxd{os.getpid() % 10000}").create()
            # the clients: the confirmed one (IPv4), the one with no name (IPv6); the
            # address family of the second element picks which one swaks is
            self.named = (self.topo.cl_ip4, self.topo.cl_ip4)
            self.forged = None
            self.nameless = (self.topo.cl_ip6, self.topo.cl_ip6)
            records = [
                f"{reverse4(self.topo.cl_ip4)} PTR good.dns.test.",
                f"good.dns.test. A {self.topo.cl_ip4}",
            ]
        else:
            self.topo = None
            self.named = ("127.0.0.1", "127.0.0.2")
            self.forged = ("127.0.0.1", "127.0.0.3")
            self.nameless = ("127.0.0.1", "127.0.0.4")
            records = [
                f"{reverse4('127.0.0.2')} PTR good.dns.test.",
                "good.dns.test. A 127.0.0.2",
                f"{reverse4('127.0.0.3')} PTR forged.dns.test.",
                "forged.dns.test. A 127.0.0.99",
            ]
        records += [
            "99.2.0.192.zen.bl.test. A 127.0.0.2",
            '99.2.0.192.zen.bl.test. TXT "Listed for the e2e test"',
            "sender.dns.test. MX 10 mx.dns.test.",
            "mx.dns.test. A 192.0.2.25",
            "spf.dns.test. MX 10 mx.dns.test.",
            f'spf.dns.test. TXT "v=spf1 ip4:{SPF_PASS} -all"',
        ]
        with open(os.path.join(self.dir, "unbound.conf"), "w") as f:
            f.write(unbound_conf(self.dir, self.dns_port, records))
        self.spawn([UNBOUND, "-d", "-c", os.path.join(self.dir, "unbound.conf")], "unbound")
        self.start_policyd_spf(records)
        pg_dir = os.path.join(self.dir, "postgrey")
        os.makedirs(pg_dir)
        os.chmod(self.dir, 0o755)  # postgrey drops to its own user: it must reach its dir
        shutil.chown(pg_dir, "postgrey", "postgrey") if self._has_user("postgrey") else None
        self.spawn([POSTGREY, f"--inet=127.0.0.1:{self.pg_port}", f"--delay={GREYLIST_DELAY}",
                    f"--dbdir={pg_dir}", "--pidfile=" + os.path.join(self.dir, "pg.pid")],
                   "postgrey")
        # a policy server that accepts and never answers
        self.dead = None
        self.wait_udp_dns()
        self.wait_tcp(self.pg_port, "postgrey")

    def start_policyd_spf(self, records):
        """policyd-spf on 127.0.0.1:spf_port where the gateway runs: socat accepts and runs
        one policyd-spf per connection in the SPF namespace, whose resolv.conf names the
        unbound there (port 53, the same records)."""
        self.spf_ns = f"mxspf{os.getpid() % 100000}"
        subprocess.run(["ip", "netns", "add", self.spf_ns], check=True)
        subprocess.run(["ip", "-n", self.spf_ns, "link", "set", "lo", "up"], check=True)
        os.makedirs(f"/etc/netns/{self.spf_ns}", exist_ok=True)
        with open(f"/etc/netns/{self.spf_ns}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        conf = os.path.join(self.dir, "spf-unbound.conf")
        with open(conf, "w") as f:
            f.write(unbound_conf(self.dir, 53, records, name="spf-unbound"))
        out = open(os.path.join(self.dir, "spf-unbound.out"), "wb")
        self.procs.append(("spf-unbound", subprocess.Popen(
            ["ip", "netns", "exec", self.spf_ns, UNBOUND, "-d", "-c", conf], stdout=out,
            stderr=subprocess.STDOUT)))
        # Debian's policyd-spf.conf, spelled out: reject a Fail, prepend the header otherwise
        spf_conf = os.path.join(self.dir, "policyd-spf.conf")
        with open(spf_conf, "w") as f:
            f.write("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\n"
                    "Mail_From_reject = Fail\nPermError_reject = False\n"
                    "TempError_Defer = False\nskip_addresses = 127.0.0.0/8\n")
        self.spawn([SOCAT, f"TCP-LISTEN:{self.spf_port},bind=127.0.0.1,reuseaddr,fork",
                    f"EXEC:ip netns exec {self.spf_ns} {POLICYD_SPF} {spf_conf}"], "socat")
        self.wait_tcp(self.spf_port, "socat for policyd-spf")

    @staticmethod
    def _has_user(name):
        import pwd
        try:
            pwd.getpwnam(name)
            return True
        except KeyError:
            return False

    def spawn(self, argv, name):
        out = open(os.path.join(self.dir, f"{name}.out"), "wb")
        p = (self.topo.gw_popen(argv, stdout=out, stderr=subprocess.STDOUT) if self.topo
             else subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT))
        self.procs.append((name, p))
        return p

    def in_gw(self, code):
        """Run Python code where the gateway runs (its namespace for dpdk)."""
        argv = [sys.executable if not self.topo else netns.SYS_PYTHON, "-c", code]
        if self.topo:
            return self.topo.gw(argv, capture_output=True, text=True, timeout=30)
        return subprocess.run(argv, capture_output=True, text=True, timeout=30)

    def wait_udp_dns(self):
        code = (
            "import socket,struct,time,sys\n"
            "q=struct.pack('>HHHHHH',7,0x100,1,0,0,0)+b'\\x04good\\x03dns\\x04test\\x00'"
            "+struct.pack('>HH',1,1)\n"
            "for i in range(100):\n"
            " s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.2)\n"
            f" s.sendto(q,('127.0.0.1',{self.dns_port}))\n"
            " try: s.recv(512); sys.exit(0)\n"
            " except OSError: time.sleep(0.1)\n"
            "sys.exit(1)\n")
        if self.in_gw(code).returncode != 0:
            fail(f"unbound does not answer:\n{self.logs()}")

    def wait_tcp(self, port, what):
        code = (
            "import socket,time,sys\n"
            "for i in range(100):\n"
            " try: socket.create_connection(('127.0.0.1'," + str(port) + "),1).close();"
            " sys.exit(0)\n"
            " except OSError: time.sleep(0.1)\n"
            "sys.exit(1)\n")
        if self.in_gw(code).returncode != 0:
            fail(f"{what} does not listen:\n{self.logs()}")

    def logs(self):
        out = []
        for name in ("unbound.out", "unbound.log", "postgrey.out", "spf-unbound.out",
                     "spf-unbound.log", "socat.out"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f"--- {name} ---\n{f.read()[-3000:]}")
        return "\n".join(out)

    def close(self):
        for name, p in self.procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.topo:
            self.topo.destroy()
        if getattr(self, "spf_ns", None):
            subprocess.run(["ip", "netns", "del", self.spf_ns])
            shutil.rmtree(f"/etc/netns/{self.spf_ns}", ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def gateway(env):
    clients = ("127.0.0.0/8" if transport == "kernel"
               else f"{env.topo.cl_ip4}/32 [{env.topo.cl_ip6}]/128")
    extra = f"""
smtpd_peername_lookup = yes
mxgate_dns_servers = 127.0.0.1:{env.dns_port}
smtpd_authorized_xclient_hosts = {clients}
mynetworks = 192.0.2.0/30
smtpd_restriction_classes = dead_policy, spf_policy
dead_policy = check_policy_service {{ inet:127.0.0.1:{env.dead_port}, timeout=1s, try_limit=1 }}
spf_policy = check_policy_service inet:127.0.0.1:{env.spf_port}, permit
smtpd_client_restrictions = reject_rbl_client zen.bl.test, reject_unknown_client_hostname
smtpd_sender_restrictions = reject_unknown_sender_domain
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ dead@relay.example = dead_policy }} }},
    check_sender_access inline:{{ {{ spf.dns.test = spf_policy }} }},
    check_policy_service inet:127.0.0.1:{env.pg_port}, permit
"""
    if env.topo:
        return netns.DpdkGateway(binary, env.topo, extra_config=extra, workers=2)
    return mxtest.Gateway(binary, extra_config=extra, workers=2)


def swaks(env, gw, client, to, sender="someone@sender.dns.test", xclient=None,
          quit_after=None, header=None):
    """(exit status, transcript): swaks from `client` (kernel: a source address; dpdk: the
    address family picks the client namespace address)."""
    host = gw.host
    if env.topo and client and ":" in client:
        host = gw.host6
    srv = f"[{host}]:{gw.port}" if ":" in host else f"{host}:{gw.port}"
    argv = ["swaks", "--server", srv, "--to", to, "--from", sender, "--helo",
            "client.dns.test", "--body", "dns e2e\n"]
    if not env.topo and client:
        argv += ["--local-interface", client]
    if xclient:
        argv += ["--xclient", xclient]
    if quit_after:
        argv += ["--quit-after", quit_after]
    if env.topo:
        r = env.topo.cl(argv, capture_output=True, text=True, timeout=120)
    else:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def expect(out, pattern, what, gw, env):
    if not re.search(pattern, out):
        fail(f"{what}: /{pattern}/ not in:\n{out}\n{gw.output()}\n{env.logs()}")


def test_names(env, gw):
    client = env.named[1] or env.named[0]
    rc, out = swaks(env, gw, env.named[1], "user@relay.example",
                    sender="someone@sender.dns.test")
    # postgrey greylists the first triplet: the name shows in the log regardless
    expect(gw.log(), rf"connect from good\.dns\.test\[{re.escape(client)}\]",
           "a confirmed PTR name is the client's name", gw, env)
    if env.forged:
        rc, out = swaks(env, gw, env.forged[1], "user@relay.example", quit_after="HELO")
        expect(gw.log(), r"warning: hostname forged\.dns\.test does not resolve to address "
               r"127\.0\.0\.3", "a forged name is logged", gw, env)
        expect(gw.log(), r"connect from unknown\[127\.0\.0\.3\]",
               "a forged name is not the client's", gw, env)
    addr = env.nameless[1] or env.nameless[0]
    rc, out = swaks(env, gw, env.nameless[1], "user@relay.example")
    expect(out, rf"450 4\.7\.25 Client host rejected: cannot find your hostname, "
           rf"\[{re.escape(addr)}\]", "reject_unknown_client_hostname", gw, env)


def test_dnsbl_and_domains(env, gw):
    # a listed client (XCLIENT from an authorized host; the name is given, so only the
    # blocklist can refuse)
    rc, out = swaks(env, gw, env.named[1], "user@relay.example",
                    xclient="NAME=good.dns.test ADDR=192.0.2.99")
    expect(out, r"554 5\.7\.1 Service unavailable; Client host \[192\.0\.2\.99\] blocked "
           r"using zen\.bl\.test; Listed for the e2e test", "reject_rbl_client via DNS",
           gw, env)
    rc, out = swaks(env, gw, env.named[1], "user@relay.example",
                    sender="someone@nothing.nx.test",
                    xclient="NAME=good.dns.test ADDR=192.0.2.98")
    expect(out, r"450 4\.1\.8 <someone@nothing\.nx\.test>: Sender address rejected: "
           r"Domain not found", "reject_unknown_sender_domain (NXDOMAIN)", gw, env)


def test_policy(env, gw):
    xc = "NAME=good.dns.test ADDR=192.0.2.97"
    rc, out = swaks(env, gw, env.named[1], "grey@relay.example", xclient=xc)
    expect(out, r"450 4\.\d\.\d <grey@relay\.example>: Recipient address rejected: "
           r"Greylisted", "postgrey greylists a new triplet", gw, env)
    time.sleep(GREYLIST_DELAY + 1)  # postgrey's own delay: the retry must come after it
    rc, out = swaks(env, gw, env.named[1], "grey@relay.example", xclient=xc)
    expect(out, r"250 2\.0\.0 Ok: queued as", "the retry after the delay is accepted", gw,
           env)
    # a dead policy server: the default action after its timeout, and meanwhile another
    # session goes through (the worker is not blocked)
    result = {}

    def dead():
        t0 = time.monotonic()
        result["out"] = swaks(env, gw, env.named[1], "dead@relay.example",
                              xclient="NAME=good.dns.test ADDR=192.0.2.96")[1]
        result["s"] = time.monotonic() - t0

    # something that accepts connections and never answers
    code = (f"import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
            f"socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',{env.dead_port}));s.listen(16)\n"
            "c=[]\nt=time.time()\nwhile time.time()-t<30:\n s.settimeout(1)\n try: "
            "c.append(s.accept())\n except OSError: pass\n")
    sink = env.spawn([sys.executable if not env.topo else netns.SYS_PYTHON, "-c", code],
                     "dead-policy")
    env.wait_tcp(env.dead_port, "the dead policy server")
    th = threading.Thread(target=dead)
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    rc, out = swaks(env, gw, env.named[1], "grey@relay.example", xclient=xc)
    other = time.monotonic() - t0
    th.join()
    sink.kill()
    expect(result["out"], r"451 4\.3\.5 <dead@relay\.example>: Recipient address rejected: "
           r"Server configuration problem",
           "a dead policy server gets the default action", gw, env)
    expect(out, r"250 2\.0\.0 Ok: queued as", "another session meanwhile", gw, env)
    if result["s"] < 0.9:
        fail(f"the dead policy server answered in {result['s']:.2f} s, before its 1 s "
             f"timeout")
    if other >= result["s"]:
        fail(f"the other session took {other:.2f} s, the waiting one {result['s']:.2f} s: "
             f"it waited for it")
    print(f"policy: the waiting session took {result['s']:.2f} s, the other {other:.2f} s")


def test_spf(env, gw):
    rc, out = swaks(env, gw, env.named[1], "spf@relay.example", sender="someone@spf.dns.test",
                    xclient=f"NAME=good.dns.test ADDR={SPF_PASS}")
    expect(out, r"250 2\.0\.0 Ok: queued as", "policyd-spf: an SPF pass is accepted", gw, env)
    msgs = [m for _, e, m in gw.spooled() if e.get("sender") == "someone@spf.dns.test"]
    want = (f"Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip={SPF_PASS}; "
            f"helo=client.dns.test; envelope-from=someone@spf.dns.test").encode()
    if len(msgs) != 1 or not msgs[0].startswith(want):
        fail(f"policyd-spf's PREPEND is not the spooled message's first header: "
             f"{[m[:300] for m in msgs]}\n{gw.output()}\n{env.logs()}")
    rc, out = swaks(env, gw, env.named[1], "spf@relay.example", sender="someone@spf.dns.test",
                    xclient=f"NAME=good.dns.test ADDR={SPF_FAIL}")
    # the class was reached through check_sender_access: Postfix names the sender (the
    # access lookup's reply name and class reach the class's restrictions)
    expect(out, r"550 5\.7\.23 <someone@spf\.dns\.test>: Sender address rejected: Message "
           r"rejected due to: SPF fail - not authorized\. Please see http://\S+"
           + re.escape(f"ip={SPF_FAIL};"), "policyd-spf: an SPF fail is rejected", gw, env)


gw = None
env = Env.__new__(Env)
env.procs, env.topo, env.dir = [], None, tempfile.mkdtemp(prefix="mxgate-dns-e2e-")
try:
    env.__init__()
    gw = gateway(env)
    gw.start()
    test_names(env, gw)
    test_dnsbl_and_domains(env, gw)
    test_policy(env, gw)
    test_spf(env, gw)
    st = gw.stats()
finally:
    if gw:
        gw.stop()
    env.close()
print("PASS")
