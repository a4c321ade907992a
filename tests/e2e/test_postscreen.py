"""postscreen(8) in front of the SMTP service, on one transport (argv: mxgate binary,
kernel|dpdk), and against Debian's postscreen on the kernel transport.

master.cf has three postscreen services (each with its own -o, its own cache file) and the
`smtpd pass` service they hand clients to, as Postfix writes it:
  A  greet action enforce, postscreen_discard_ehlo_keywords (its dummy engine's EHLO
     reply without DSN and CHUNKING), DNSBL sites bl.test=127.0.0.[2..11]*2 and wl.test*-3 with
     threshold 2 and action enforce;
  B  greet action drop;
  C  postscreen_access_list = cidr:access.cidr (one client permit, one reject),
     denylist action drop, DNSBL site wl.test*-3 with allowlist threshold -1;
  D  the deep tests on (pipelining, non-SMTP commands, bare newlines).
A private DNS server (a Python UDP server, Python's standard library only) answers A
queries for the listed clients, NXDOMAIN with an SOA for the rest. Every client is its
own address (kernel: 127.0.0.x bound as the source; dpdk: 10.77.0.x added to the client
namespace, the gateway on net_af_packet in its namespace, see netns.py); the sessions:
  - pregreet, enforce: the teaser, no 220, the dummy engine answers EHLO and MAIL, RCPT
    gets 550 5.5.1 Protocol error (NOQUEUE: reject ... logged), the session ends; drop: the
    teaser then 521 5.5.1 Protocol error and the close;
  - a patient client: the teaser, the real 220 after the greet wait, PASS NEW, a working
    session; it comes back: 220 at once without the teaser (PASS OLD); and again after the
    gateway restarted (the cache is on disk);
  - DNSBL scores: listed in bl.test (2): DNSBL rank 2, 550 5.7.1 ... blocked using bl.test at
    RCPT; listed in bl.test and wl.test (2 - 3): passes; an answer outside the filter: not
    listed, passes;
  - allowlist threshold (C): a client in wl.test (score -3 <= -1) passes without the greet
    wait;
  - the access list (C): the permitted client is ALLOWLISTED (220 at once), the rejected
    one DENYLISTED and dropped with 521 5.3.2;
  - the deep tests (D): a good client gets the dummy engine's 220, 450 4.3.2 at RCPT and
    PASS NEW, and when it comes back PASS OLD and the real server; a client that
    pipelines gets 550 5.5.1 at RCPT; "GET / HTTP/1.0" is dropped with 521 5.7.0;
  - the connection limit (B: postscreen_client_connection_count_limit = 2): two
    connections from one address get the teaser, a third one at the same time "421 4.7.0
    Error: too many connections" and the close (with two workers, whichever takes it);
  - the PROXY protocol (E: postscreen_upstream_proxy_protocol = haproxy, timeout 2 s,
    greet action drop, and smtpd_upstream_proxy_protocol too): a v1 header, then a patient
    client: the client the header names passes (PASS NEW [192.0.2.50]) and the session
    behind the screen reads no second header; a header then a pregreet: PREGREET for the
    named client and 521; SMTP instead of a header, and nothing at all: "421 4.3.2 No
    system resources", the close and postscreen's "haproxy read:" warnings;
  - the screen's counters in the statistics line, and the clients each DNSBL site listed.
On the kernel transport the whole test runs in a private network namespace whose
resolv.conf names the DNS server, and a private Debian Postfix with the same main.cf
parameters and master.cf (postscreen, smtpd pass, dnsblog, tlsproxy) gets the same sessions
from the same addresses: every reply of the screen must be the same (the greeting lines,
the dummy engine's replies, the rejects), the replies of the SMTP server behind it the same
codes, and the screen's decisions in both logs (PREGREET, DNSBL rank, PASS NEW, PASS OLD,
ALLOWLISTED, DENYLISTED, NOQUEUE reject) the same, session by session. Needs root (a
network namespace; Postfix), Debian's postfix package on kernel."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mxtest  # noqa: E402
import netns  # noqa: E402
from mxtest import fail  # noqa: E402

NETNS_ENV = "MXGATE_POSTSCREEN_NETNS"
HAPROXY = "/usr/sbin/haproxy"
GREET_WAIT = 2
HOST = "mx.test.example"

# The DNS server: argv port, then a JSON object {name: [ttl, [addresses]]}. A queries for
# a listed name get its addresses; every other question NXDOMAIN with an SOA (negative
# TTL 60). Serves until killed.
DNS_SERVER = r"""
import json, socket, struct, sys
port, zones = int(sys.argv[1]), {k.lower(): v for k, v in json.loads(sys.argv[2]).items()}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
print("ready", flush=True)
def name_at(m, p):
    labels = []
    while m[p]:
        n = m[p]; labels.append(m[p + 1:p + 1 + n].decode()); p += 1 + n
    return ".".join(labels), p + 1
while True:
    m, peer = s.recvfrom(4096)
    if len(m) < 12:
        continue
    qid, flags = struct.unpack("!HH", m[:4])
    try:
        name, p = name_at(m, 12)
    except Exception:
        continue
    qtype, qclass = struct.unpack("!HH", m[p:p + 4])
    question = m[12:p + 4]
    entry = zones.get(name.lower())
    answers = b""
    an = ns = 0
    rcode = 0
    if entry and qtype == 1:
        for a in entry[1]:
            answers += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, entry[0], 4) + socket.inet_aton(a)
            an += 1
    elif not entry:
        rcode = 3
    if an == 0:
        zone = name.split(".", 1)[1] if "." in name else name
        enc = b"".join(bytes([len(l)]) + l.encode() for l in zone.split(".") if l) + b"\0"
        soa = enc + b"\0" + struct.pack("!IIIII", 1, 3600, 600, 86400, 60)
        answers += enc + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa
        ns = 1
    hdr = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, an, ns, 0)
    s.sendto(hdr + question + answers, peer)
"""

# The client: argv host; stdin a JSON list of sessions {port, src, pre, cmds}; stdout a
# JSON list of results {greeting, greet_s, replies, eof}. pre: bytes sent right after the
# connect (a pregreet); the greeting is every line up to the first final one (the teaser
# "220-" line and what follows it); each command gets one reply.
CLIENT = r"""
import json, socket, sys, time
host = sys.argv[1]
def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            return "\n".join(lines + ["EOF"]), True
        l = l.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(l)
        if len(l) < 4 or l[3] != "-":
            return "\n".join(lines), False
out = []
for sess in json.load(sys.stdin):
    r = {}
    try:
        s = socket.create_connection((host, sess["port"]), 20,
                                     source_address=(sess["src"], 0))
        s.settimeout(20)
        f = s.makefile("rb")
        t0 = time.monotonic()
        if sess.get("pre"):
            s.sendall(sess["pre"].encode())
        r["greeting"], eof = reply(f)
        r["greet_s"] = time.monotonic() - t0
        r["replies"] = []
        for c in sess["cmds"]:
            if eof:
                break
            # several lines in one send (pipelined): as many replies
            s.sendall((c + "\r\n").encode())
            texts = []
            for _ in c.split("\r\n"):
                if eof:
                    break
                text, eof = reply(f)
                texts.append(text)
            r["replies"].append("|".join(texts))
        if not eof:
            s.settimeout(5)
            try:
                eof = f.read() == b""
            except OSError:
                eof = False
        r["eof"] = eof
        s.close()
    except Exception as e:
        r["error"] = f"{type(e).__name__}: {e}"
    out.append(r)
print(json.dumps(out))
"""

# One client address crowding a service: argv host, port, source, n. Opens n connections one
# after the other, each read up to its first line; the last one is read to its end. Then
# closes them all; stdout a JSON list of the first lines, and whether the last one closed.
CROWD = r"""
import json, socket, sys
host, port, src, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
socks, lines = [], []
for i in range(n):
    s = socket.create_connection((host, port), 20, source_address=(src, 0))
    s.settimeout(20)
    f = s.makefile("rb")
    lines.append(f.readline().decode("utf-8", "replace").rstrip("\r\n"))
    socks.append((s, f))
eof = socks[-1][1].read() == b""
for s, f in socks:
    s.close()
print(json.dumps({"lines": lines, "eof": eof}))
"""
CROWD_LIMIT = 2
PROXY_TIMEOUT = 2
# The clients service E's PROXY headers name (never bound: only the header carries them).
PROXIED = {"proxied_patient": "192.0.2.50", "proxied_bot": "192.0.2.51"}


def proxy_v1(src, port):
    return f"PROXY TCP4 {src} 198.51.100.25 {port} 25\r\n"

PASS_CMDS = ["EHLO client.example", "QUIT"]
SCREEN_CMDS = ["EHLO client.example", "MAIL FROM:<s@sender.example>",
               "RCPT TO:<u@relay.example>", "QUIT"]


def addrs(prefix):
    """The scenario's client addresses: name -> address."""
    names = ["pregreet_enforce", "pregreet_drop", "patient", "listed", "listed_allowed",
             "off_filter", "wl_allowlisted", "acl_permit", "acl_reject", "deep_good",
             "deep_pipelining", "deep_non_smtp", "crowd", "proxy", "via_haproxy"]
    return {n: f"{prefix}{21 + i}" for i, n in enumerate(names)}


def rev(a):
    return ".".join(reversed(a.split(".")))


def zones(a):
    return {
        f"{rev(a['listed'])}.bl.test": [300, ["127.0.0.2"]],
        f"{rev(a['listed_allowed'])}.bl.test": [300, ["127.0.0.3"]],
        f"{rev(a['listed_allowed'])}.wl.test": [300, ["127.0.2.1"]],
        f"{rev(a['off_filter'])}.bl.test": [300, ["127.0.0.20"]],
        f"{rev(a['wl_allowlisted'])}.wl.test": [900, ["127.0.2.1"]],
    }


class Target:
    """The gateway on this transport, the DNS server, the clients."""

    def __init__(self, binary, transport):
        self.transport = transport
        self.tmp = tempfile.mkdtemp(prefix="mxgate-postscreen-")
        os.chmod(self.tmp, 0o755)
        if transport == "dpdk":
            import netns
            self.netns = netns
            netns.need_netns_tools()
            self.topo = netns.Topology(prefix=f"psc{os.getpid() % 10000}").create()
            self.a = addrs("10.77.0.")
            for addr in self.a.values():
                self.topo.cl(["ip", "addr", "add", f"{addr}/24", "dev", self.topo.dp_cl_if],
                             check=True)
            self.host = self.topo.gw_ip4
            self.probe = self.topo.cl_ip4
            self.ports = (25, 2526, 2527, 2528, 2529)
            self.python = netns.SYS_PYTHON
        else:
            self.topo = None
            self.a = addrs("127.0.0.")
            self.host = "127.0.0.1"
            self.probe = "127.0.0.1"
            self.ports = tuple(mxtest.free_port() for _ in range(5))
            self.python = sys.executable
        self.dns_port = 53 if transport == "kernel" else 5353
        self.dns = None
        self.gw = None
        self.binary = binary

    # ---- the DNS server ----
    def start_dns(self):
        argv = [self.python, "-u", "-c", DNS_SERVER, str(self.dns_port),
                json.dumps(zones(self.a))]
        kw = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.dns = self.topo.gw_popen(argv, **kw) if self.topo else subprocess.Popen(argv, **kw)
        if self.dns.stdout.readline().strip() != "ready":
            fail(f"the DNS server did not start: {self.dns.stdout.read()}")

    # ---- configuration ----
    def write_files(self, d, ports, host):
        """access.cidr and the postscreen lines of master.cf for a server whose files are
        in d; returns (main.cf text, master.cf postscreen lines)."""
        cidr = os.path.join(d, "access.cidr")
        with open(cidr, "w") as f:
            f.write(f"{self.a['acl_permit']} permit\n{self.a['acl_reject']} reject\n"
                    f"{self.probe} permit\n")
        os.chmod(cidr, 0o644)
        main = (
            "smtpd_banner = $myhostname ESMTP\n"
            f"postscreen_greet_wait = {GREET_WAIT}s\n"
            "postscreen_access_list =\n"
        )
        pa, pb, pc, pd, pe = ports
        lst = f"{host}:" if host else ""
        master = (
            f"{lst}{pa} inet n - n - 1 postscreen\n"
            "  -o postscreen_greet_action=enforce\n"
            "  -o postscreen_discard_ehlo_keywords=dsn,CHUNKING\n"
            "  -o { postscreen_dnsbl_sites = bl.test=127.0.0.[2..11]*2, wl.test*-3 }\n"
            "  -o postscreen_dnsbl_threshold=2\n"
            "  -o postscreen_dnsbl_action=enforce\n"
            f"  -o postscreen_access_list=cidr:{cidr}\n"
            "  -o postscreen_cache_map=btree:$data_directory/ps_a\n"
            f"{lst}{pb} inet n - n - 1 postscreen\n"
            "  -o postscreen_greet_action=drop\n"
            f"  -o postscreen_client_connection_count_limit={CROWD_LIMIT}\n"
            f"  -o postscreen_access_list=cidr:{cidr}\n"
            "  -o postscreen_cache_map=btree:$data_directory/ps_b\n"
            f"{lst}{pc} inet n - n - 1 postscreen\n"
            f"  -o postscreen_access_list=cidr:{cidr}\n"
            "  -o postscreen_denylist_action=drop\n"
            "  -o postscreen_dnsbl_sites=wl.test*-3\n"
            "  -o postscreen_dnsbl_allowlist_threshold=-1\n"
            "  -o postscreen_cache_map=btree:$data_directory/ps_c\n"
            f"{lst}{pd} inet n - n - 1 postscreen\n"
            f"  -o postscreen_access_list=cidr:{cidr}\n"
            "  -o postscreen_pipelining_enable=yes\n"
            "  -o postscreen_non_smtp_command_enable=yes\n"
            "  -o postscreen_bare_newline_enable=yes\n"
            "  -o postscreen_cache_map=btree:$data_directory/ps_d\n"
            f"{lst}{pe} inet n - n - 1 postscreen\n"
            "  -o postscreen_upstream_proxy_protocol=haproxy\n"
            f"  -o postscreen_upstream_proxy_timeout={PROXY_TIMEOUT}s\n"
            "  -o postscreen_greet_action=drop\n"
            "  -o smtpd_upstream_proxy_protocol=haproxy\n"
            "  -o postscreen_cache_map=btree:$data_directory/ps_e\n"
            "smtpd pass - - n - - smtpd\n"
        )
        return main, master

    def start_gateway(self):
        d = os.path.join(self.tmp, "mxgate")
        os.makedirs(d, exist_ok=True)
        main, master = self.write_files(d, self.ports,
                                        None if self.topo else self.host)
        mpath = os.path.join(d, "master.cf")
        with open(mpath, "w") as f:
            f.write(master)
        data = os.path.join(d, "data")
        os.makedirs(data, exist_ok=True)
        extra = (main + f"mxgate_master_file = {mpath}\n" + f"data_directory = {data}\n"
                 + f"mxgate_dns_servers = 127.0.0.1:{self.dns_port}\n")
        if self.topo:
            self.gw = self.netns.DpdkGateway(self.binary, self.topo, workers=2,
                                             extra_config=extra, port=self.ports[0])
        else:
            self.gw = mxtest.Gateway(self.binary, workers=2, port=self.ports[0],
                                     extra_config=extra + "mynetworks = 127.0.0.1/32\n")
        self.gw.start()

    def restart_gateway(self):
        self.gw.stop()
        self.gw.start()

    # ---- clients ----
    def run(self, sessions, host=None, ports=None):
        host = host or self.host
        ports = ports or self.ports
        spec = []
        for s in sessions:
            s = dict(s)
            s["port"] = ports["abcde".index(s["svc"])]
            spec.append(s)
        argv = [self.python, "-c", CLIENT, host]
        kw = dict(input=json.dumps(spec), capture_output=True, text=True, timeout=600)
        r = self.topo.cl(argv, **kw) if self.topo else subprocess.run(argv, **kw)
        if r.returncode != 0:
            fail(f"the client failed: {r.stdout}{r.stderr}")
        out = json.loads(r.stdout)
        for s, o in zip(sessions, out):
            if "error" in o:
                fail(f"session {s['name']}: {o['error']}\n{self.gw.output()}")
        return out

    def crowd(self, host=None, ports=None):
        """postscreen_client_connection_count_limit (service B): the limit's connections
        from one address are screened (the teaser), the next one gets 421 and the close."""
        host = host or self.host
        port = (ports or self.ports)[1]
        argv = [self.python, "-c", CROWD, host, str(port), self.a["crowd"],
                str(CROWD_LIMIT + 1)]
        kw = dict(capture_output=True, text=True, timeout=60)
        r = self.topo.cl(argv, **kw) if self.topo else subprocess.run(argv, **kw)
        if r.returncode != 0:
            fail(f"the crowding client failed: {r.stdout}{r.stderr}")
        return json.loads(r.stdout)

    def via_haproxy(self, host=None, ports=None):
        """Debian's HAProxy where the clients are, sending PROXY v2 to service E: a
        patient client through it is screened as itself (its own address, not the
        proxy's) and passes."""
        host = host or self.host
        port_e = (ports or self.ports)[4]
        front = mxtest.free_port()
        cfg = os.path.join(self.tmp, f"haproxy-{port_e}.cfg")
        with open(cfg, "w") as f:
            f.write("global\n    maxconn 20\ndefaults\n    mode tcp\n"
                    "    timeout connect 5s\n    timeout client 30s\n"
                    "    timeout server 30s\n"
                    f"frontend screen\n    bind 127.0.0.1:{front}\n"
                    "    default_backend gateway\nbackend gateway\n"
                    f"    server gw {host}:{port_e} send-proxy-v2\n")
        argv = [HAPROXY, "-db", "-f", cfg]
        kw = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hap = self.topo.cl_popen(argv, **kw) if self.topo else subprocess.Popen(argv, **kw)
        try:
            probe = [self.python, "-c", "import socket, sys, time\n"
                     "for i in range(100):\n"
                     "    try:\n"
                     f"        s = socket.create_connection(('127.0.0.1', {front}), 5)\n"
                     "        s.settimeout(5)\n"
                     "        line = s.makefile('rb').readline()\n"
                     "        sys.exit(0 if line.startswith(b'220-') else 1)\n"
                     "    except OSError:\n        time.sleep(0.05)\nsys.exit(1)"]
            # the probe is a connection through HAProxy too, read up to the teaser (so
            # the header went through) then hung up in the greet wait: a client at
            # 127.0.0.1, not a case
            r = self.topo.cl(probe) if self.topo else subprocess.run(probe)
            if r.returncode != 0:
                fail("HAProxy did not listen")
            sess = [dict(name="through HAProxy (PROXY v2), a patient client", svc="e",
                         src=self.a["via_haproxy"], cmds=PASS_CMDS,
                         want_greeting=f"220-{HOST} ESMTP\n220 {HOST} ESMTP", slow=True,
                         passed=True, log=[f"PASS NEW [{self.a['via_haproxy']}]:"])]
            got = self.run(sess, host="127.0.0.1", ports=(0, 0, 0, 0, front))
            return sess, got
        finally:
            hap.terminate()
            hap.wait(timeout=10)

    def close(self):
        if self.gw:
            self.gw.stop()
        if self.dns:
            self.dns.kill()
            self.dns.wait()
        if self.topo:
            self.topo.destroy()
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def sessions(a, teaser):
    """The sessions, in order, with what each must get (from mxgate; Postfix must get the
    same). teaser: the "220-" line."""
    g = f"220 {HOST} ESMTP"
    ehlo = "\n".join([f"250-{HOST}", "250-SIZE 10240000", "250-VRFY", "250-ETRN",
                      "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250-DSN", "250-SMTPUTF8",
                      "250 CHUNKING"])
    # service A's dummy engine: postscreen_discard_ehlo_keywords = dsn, CHUNKING
    ehlo_a = "\n".join([f"250-{HOST}", "250-SIZE 10240000", "250-VRFY", "250-ETRN",
                        "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250 SMTPUTF8"])
    return [
        dict(name="pregreet enforce", svc="a", src=a["pregreet_enforce"],
             pre="EHLO bot.example\r\n", cmds=["MAIL FROM:<s@sender.example>",
                                               "RCPT TO:<u@relay.example>", "QUIT"],
             want_greeting=teaser + "\n" + ehlo_a,
             want=["250 2.1.0 Ok", "550 5.5.1 Protocol error", "221 2.0.0 Bye"],
             log=[f"PREGREET 18 after ", f"NOQUEUE: reject: RCPT from [{a['pregreet_enforce']}]:"]),
        dict(name="pregreet drop", svc="b", src=a["pregreet_drop"], pre="HELO bot\r\n",
             cmds=[], want_greeting=teaser + "\n521 5.5.1 Protocol error", want=[],
             log=["PREGREET 10 after "]),
        dict(name="patient, new", svc="a", src=a["patient"], cmds=PASS_CMDS,
             want_greeting=teaser + "\n" + g, slow=True, passed=True,
             log=[f"PASS NEW [{a['patient']}]:"]),
        dict(name="patient, old", svc="a", src=a["patient"], cmds=PASS_CMDS,
             want_greeting=g, fast=True, passed=True, log=[f"PASS OLD [{a['patient']}]:"]),
        dict(name="DNSBL listed (2 >= 2)", svc="a", src=a["listed"], cmds=SCREEN_CMDS,
             want_greeting=teaser + "\n" + g,
             want=[ehlo_a, "250 2.1.0 Ok",
                   f"550 5.7.1 Service unavailable; client [{a['listed']}] blocked using "
                   f"bl.test", "221 2.0.0 Bye"],
             log=[f"DNSBL rank 2 for [{a['listed']}]:"]),
        dict(name="DNSBL listed and allowed (2 - 3)", svc="a", src=a["listed_allowed"],
             cmds=PASS_CMDS, want_greeting=teaser + "\n" + g, passed=True,
             log=[f"PASS NEW [{a['listed_allowed']}]:"]),
        dict(name="DNSBL answer outside the filter", svc="a", src=a["off_filter"],
             cmds=PASS_CMDS, want_greeting=teaser + "\n" + g, passed=True,
             log=[f"PASS NEW [{a['off_filter']}]:"]),
        dict(name="allowlist threshold", svc="c", src=a["wl_allowlisted"], cmds=PASS_CMDS,
             want_greeting=teaser + "\n" + g, fast=True, passed=True,
             log=[f"PASS NEW [{a['wl_allowlisted']}]:"]),
        dict(name="access list permit", svc="c", src=a["acl_permit"], cmds=PASS_CMDS,
             want_greeting=g, fast=True, passed=True,
             log=[f"ALLOWLISTED [{a['acl_permit']}]:"]),
        dict(name="access list reject, drop", svc="c", src=a["acl_reject"], cmds=[],
             want_greeting="521 5.3.2 Service currently unavailable", want=[],
             log=[f"DENYLISTED [{a['acl_reject']}]:"]),
        # the deep tests: the dummy engine's 220 after the greet wait; a client that
        # passes is told 450 at RCPT and comes back PASS OLD
        dict(name="deep tests, a good client", svc="d", src=a["deep_good"],
             cmds=SCREEN_CMDS, want_greeting=teaser + "\n" + g, slow=True,
             want=[ehlo, "250 2.1.0 Ok", "450 4.3.2 Service currently unavailable",
                   "221 2.0.0 Bye"],
             log=[f"PASS NEW [{a['deep_good']}]:"]),
        dict(name="deep tests, back", svc="d", src=a["deep_good"], cmds=PASS_CMDS,
             want_greeting=g, fast=True, passed=True,
             log=[f"PASS OLD [{a['deep_good']}]:"]),
        dict(name="deep tests, pipelining", svc="d", src=a["deep_pipelining"],
             cmds=["EHLO client.example\r\nMAIL FROM:<s@sender.example>\r\n"
                   "RCPT TO:<u@relay.example>", "QUIT"],
             want_greeting=teaser + "\n" + g,
             want=[ehlo + "|250 2.1.0 Ok|550 5.5.1 Protocol error", "221 2.0.0 Bye"],
             log=[f"COMMAND PIPELINING from [{a['deep_pipelining']}]:"]),
        dict(name="deep tests, non-SMTP command", svc="d", src=a["deep_non_smtp"],
             cmds=["GET / HTTP/1.0"], want_greeting=teaser + "\n" + g,
             want=["521 5.7.0 Error: I can break rules, too. Goodbye."],
             log=[f"NON-SMTP COMMAND from [{a['deep_non_smtp']}]:"]),
        # postscreen_upstream_proxy_protocol (E): the header's client is screened, and
        # the SMTP session behind (smtpd_upstream_proxy_protocol set too) reads none
        dict(name="PROXY header, a patient client", svc="e", src=a["proxy"],
             pre=proxy_v1(PROXIED["proxied_patient"], 5550), cmds=PASS_CMDS,
             want_greeting=teaser + "\n" + g, slow=True, passed=True,
             log=[f"PASS NEW [{PROXIED['proxied_patient']}]:5550"]),
        dict(name="PROXY header, then a pregreet", svc="e", src=a["proxy"],
             pre=proxy_v1(PROXIED["proxied_bot"], 5551) + "EHLO bot\r\n", cmds=[],
             want_greeting=teaser + "\n521 5.5.1 Protocol error", want=[],
             log=[f"from [{PROXIED['proxied_bot']}]:5551: EHLO bot"]),
        dict(name="SMTP instead of a PROXY header", svc="e", src=a["proxy"],
             pre="EHLO not.a.proxy\r\n", cmds=[],
             want_greeting="421 4.3.2 No system resources", want=[],
             log=["warning: haproxy read: unrecognized protocol header: "
                  "EHLO not.a.proxy\\r\\n"]),
        dict(name="no PROXY header", svc="e", src=a["proxy"], cmds=[],
             want_greeting="421 4.3.2 No system resources", want=[],
             log=["warning: haproxy read: time limit exceeded"]),
    ]


def check(sess, got, who, output):
    what = f"{who}: {sess['name']}"
    if got["greeting"] != sess["want_greeting"]:
        fail(f"{what}: greeting {got['greeting']!r}, expected {sess['want_greeting']!r}\n"
             f"{output()}")
    if sess.get("passed"):
        codes = [r[:3] for r in got["replies"]]
        if codes != ["250", "221"]:
            fail(f"{what}: after the pass {got['replies']!r}\n{output()}")
    elif got["replies"] != sess["want"]:
        fail(f"{what}: replies {got['replies']!r}, expected {sess['want']!r}\n{output()}")
    if not got["eof"]:
        fail(f"{what}: the server did not close the connection\n{output()}")
    if sess.get("slow") and got["greet_s"] < GREET_WAIT - 0.2:
        fail(f"{what}: greeted after {got['greet_s']:.2f} s, before the greet wait")
    if sess.get("fast") and got["greet_s"] > GREET_WAIT - 0.5:
        fail(f"{what}: greeted after {got['greet_s']:.2f} s: it waited")


def decisions(log, addr):
    """The screen's decisions for one client in a log, in order."""
    out = []
    pat = re.compile(r"(PREGREET \d+|DNSBL rank \d+|PASS NEW|PASS OLD|ALLOWLISTED|"
                     r"DENYLISTED|NOQUEUE: reject: (?:RCPT|CONNECT)|DISCONNECT|COMMAND PIPELINING|"
                     r"NON-SMTP COMMAND|BARE NEWLINE)\b.*?\[" + re.escape(addr) + r"\]")
    for line in log.splitlines():
        if "postscreen" in line or "mxgate" in line:
            m = pat.search(line)
            if m:
                out.append(m.group(1))
    return out


def run_tests(t, postfix=None):
    t.start_dns()
    t.start_gateway()
    teaser = f"220-{HOST} ESMTP"
    sess = sessions(t.a, teaser)
    got = t.run(sess)
    for s, g in zip(sess, got):
        check(s, g, "mxgate", t.gw.output)
    hsess, hgot = t.via_haproxy()
    check(hsess[0], hgot[0], "mxgate", t.gw.output)
    sess, got = sess + hsess, got + hgot
    crowd = t.crowd()
    want_crowd = {"lines": [teaser] * CROWD_LIMIT + ["421 4.7.0 Error: too many connections"],
                  "eof": True}
    if crowd != want_crowd:
        fail(f"the connection limit: {crowd}, expected {want_crowd}\n{t.gw.output()}")
    # the held connections hang up: wait for their ends in the log
    deadline = time.monotonic() + 10
    while (t.gw.log().count(f"DISCONNECT [{t.a['crowd']}]") < CROWD_LIMIT + 1 and
           time.monotonic() < deadline):
        time.sleep(0.1)
    log = t.gw.log()
    if f"NOQUEUE: reject: CONNECT from [{t.a['crowd']}]:" not in log:
        fail(f"mxgate: no NOQUEUE: reject: CONNECT line for the crowding client\n{log}")
    st = t.gw.stats()
    want = {"screen_pregreet_fail": 3, "screen_dnsbl_fail": 1, "screen_pass_new": 7,
            "screen_pass_old": 2, "screen_denylisted": 1, "screen_deep_fail": 2,
            "screen_too_many": 1, "proxy_failed": 2}
    for k, v in want.items():
        if st.get(k) != v:
            fail(f"statistics: {k}={st.get(k)}, expected {v}: {st}\n{t.gw.output()}")
    if st.get("screen_allowlisted", 0) < 1 or st.get("screen_closed", 0) < 7:
        fail(f"statistics: allowlisted or closed screens missing: {st}")
    # per DNSBL site, the clients it listed: A's bl.test listed "listed" and
    # "listed_allowed" (not "off_filter": outside the filter), its wl.test the latter;
    # C's wl.test "wl_allowlisted"; B and D have no sites
    per_site = {}
    for m in re.finditer(r"postscreen dnsbl \(SIGUSR1\): generation=\d+ service=\S*?(\d+) "
                         r"site=(\S+) listed=(\d+)", t.gw.log()):
        per_site[(int(m.group(1)), m.group(2))] = int(m.group(3))
    pa, _, pc, _, _ = t.ports
    want_sites = {(pa, "bl.test=127.0.0.[2..11]*2"): 1 + 1, (pa, "wl.test*-3"): 1,
                  (pc, "wl.test*-3"): 1}
    if per_site != want_sites:
        fail(f"per-DNSBL statistics: {per_site}, expected {want_sites}\n{t.gw.output()}")
    for s in sess:
        for want in s["log"]:
            if want not in log:
                fail(f"mxgate: {s['name']}: no log line {want!r}\n{t.gw.output()}")
    # the restart keeps the temporary allowlist
    t.restart_gateway()
    again = [s for s in sess if s["name"] == "patient, old"]
    g2 = t.run(again)
    check(again[0], g2[0], "mxgate after a restart", t.gw.output)
    st = t.gw.stats()
    want = {"screen_pregreet_fail": 0, "screen_pass_old": 1, "screen_pass_new": 0}
    for k, v in want.items():
        if st.get(k) != v:
            fail(f"statistics after the restart: {k}={st.get(k)}, expected {v}: {st}")
    if postfix:
        differential(t, postfix, sess, got, crowd, log)


def differential(t, pf, sess, got, crowd, log):
    """The same sessions against Debian's postscreen: the same replies and decisions."""
    pf.start()
    try:
        pgot = t.run(sess[:-1], host="127.0.0.1", ports=pf.ports)
        pgot += t.via_haproxy(host="127.0.0.1", ports=pf.ports)[1]
        pcrowd = t.crowd(host="127.0.0.1", ports=pf.ports)
        if pcrowd != crowd:
            fail(f"the connection limit: mxgate {crowd}, Postfix {pcrowd}")
        time.sleep(1)
        plog = pf.log()
        for s, g, p in zip(sess, got, pgot):
            if "error" in p:
                fail(f"Postfix: {s['name']}: {p['error']}\n{plog[-4000:]}")
            # the screen's replies are postscreen's word for word; behind the screen
            # Postfix's smtpd and mxgate differ by design (the EHLO keywords): codes
            if g["greeting"] != p["greeting"]:
                fail(f"{s['name']}: greeting: mxgate {g['greeting']!r}, Postfix "
                     f"{p['greeting']!r}")
            mine = [r[:3] for r in g["replies"]] if s.get("passed") else g["replies"]
            theirs = [r[:3] for r in p["replies"]] if s.get("passed") else p["replies"]
            if mine != theirs:
                fail(f"{s['name']}: replies: mxgate {g['replies']!r}, Postfix "
                     f"{p['replies']!r}")
        ndec = 0
        for name, addr in list(t.a.items()) + list(PROXIED.items()):
            m, p = decisions(log, addr), decisions(plog, addr)
            if m != p:
                fail(f"decisions for {name} [{addr}]: mxgate {m}, Postfix {p}\n"
                     f"{plog[-4000:]}")
            ndec += len(m)
        # every session decided something both logged (a log format that stopped
        # matching would compare empty lists)
        if ndec < len(sess) + 5:
            fail(f"only {ndec} decisions found in the logs:\n{plog[-4000:]}")
        print(f"differential: {len(sess)} sessions, {ndec} decisions, the same replies and "
              f"decisions as Debian's postscreen")
    finally:
        pf.stop()


class PostscreenPostfix:
    """A private Debian Postfix with postscreen in front of its smtpd: the oracle."""

    def __init__(self, t):
        self.ports = tuple(mxtest.free_port() for _ in range(5))
        self.pf = mxtest.PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=(
            f"myhostname = {HOST}\nmynetworks = 127.0.0.1/32\n"
            "relay_domains = relay.example\n"))
        d = self.pf.conf
        main, master = t.write_files(d, self.ports, "127.0.0.1")
        with open(os.path.join(d, "main.cf"), "a") as f:
            f.write(main)
        rest = mxtest.PostfixPeer.MASTER_CF.split("\n", 1)[1]
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write(master + "dnsblog unix - - n - 0 dnsblog\n"
                    "tlsproxy unix - - n - 0 tlsproxy\n" + rest)

    def start(self):
        self.pf.start()
        for p in self.ports:
            if not mxtest.wait_port("127.0.0.1", p):
                fail(f"Postfix's postscreen did not listen on {p}:\n{self.log()[-3000:]}")

    def stop(self):
        self.pf.stop()
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.pf.dir, ignore_errors=True)

    def log(self):
        return self.pf.log()


def in_netns(argv):
    """Run this script again in a private network namespace whose resolv.conf names the
    test's DNS server (127.0.0.1), and exit with its status."""
    netns.rerun_in_private_netns("mxgate-psc", NETNS_ENV, __file__, argv,
                                 "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
                                 "127.0.0.1 localhost\n::1 localhost\n")


def main():
    binary = mxtest.binary_from_argv()
    transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
    mxtest.need_root("the postscreen test (a network namespace, a Postfix instance)")
    mxtest.need_tool(HAPROXY)
    if transport == "kernel":
        for tool in ("/usr/sbin/postfix", "/usr/lib/postfix/sbin/postscreen",
                     "/usr/lib/postfix/sbin/dnsblog"):
            mxtest.need_tool(tool)
        if not os.environ.get(NETNS_ENV):
            in_netns(sys.argv[1:])
    t = Target(binary, transport)
    pf = None
    try:
        if transport == "kernel":
            pf = PostscreenPostfix(t)
        run_tests(t, pf)
    finally:
        t.close()
    print(f"postscreen on {transport}: ok")


if __name__ == "__main__":
    main()
