"""A private DNS for the differential policy test (test_policy_diff.py), run inside its
network namespace: real DNS servers, so that Postfix and mxgate ask the same questions of
the same resolver and get the same answers.

    127.0.0.1:53           the front (DropProxy, a thread of this process): the server
                           both servers use (Postfix through /etc/resolv.conf, mxgate
                           through the same file). It forwards every query to unbound,
                           except those for the names it is told to drop: it reads and
                           counts them and never answers, so that each client waits for
                           its own resolver timeout, as with a DNS server that drops.
    127.0.0.1:UNBOUND_PORT unbound (Debian package `unbound`): the recursive resolver.
                           Local zones (tests/e2e/policy/dns_zones.conf) answer
                           A/AAAA/MX/PTR/TXT for the names the sessions use; every other
                           name is NXDOMAIN ("." is a static zone), so nothing ever leaves
                           the namespace. A stub zone sends the list zones to rbldnsd.
    127.0.0.1:RBL_PORT     rbldnsd (Debian package `rbldnsd`): the DNSBL, RHSBL and DNSWL
                           zones, from the rbldnsd zone files of tests/e2e/policy/.

unbound runs in the foreground (-d) with a private directory and pidfile, no DNSSEC
(module-config "iterator"), no qname minimisation (a minimised query would hit rbldnsd's
NXDOMAIN for an intermediate name and hide the listing below it), no round robin (records
in one order: Postfix's check_*_mx_access stops at the first server found in its table,
in the answer's order), and do-not-query-localhost off (its stub is on 127.0.0.1). Its
config is checked with unbound-checkconf first.

API:
    DnsEnv(workdir, zones_conf, rbl_zones, table_dir, drop) -- zones_conf: the
        local-zone / local-data / stub-zone text (@RBL@ is replaced by rbldnsd's
        address); rbl_zones: [(zone, rbldnsd format, file name in table_dir)]; drop: the
        names (with everything under them) whose queries the front never answers.
        start() -> self (fails the test, with the servers' output, when one does not come
        up); stop(); dropped() -> {qname: count} the front dropped; lost() -> [queries
        forwarded that unbound did not answer]; log() -> the servers' output.
    query(name, qtype, server="127.0.0.1", port=53, timeout=1.0) -> (rcode, [rdata]) or
        None when nothing answered. rdata as text: dotted quad, IPv6, "PREF HOST" for MX,
        a name for PTR/NS/CNAME, the first string for TXT. Names lower case, no final dot
        ("" for the root).
    RESOLV_CONF -- the resolv.conf text for the namespace (timeout:1 attempts:1: a dropped
        query costs each server one second).

Python 3 standard library only."""

import os
import random
import socket
import struct
import subprocess
import threading
import time

from mxtest import fail, need_tool

RBL_PORT = 5300
UNBOUND_PORT = 5353
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


# ---------------------------------------------------------------------------- messages

def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _read_name(msg, pos, depth=0):
    """(name, position after it) of the (possibly compressed) name at pos."""
    labels = []
    end = None
    for _ in range(128):
        ln = msg[pos]
        if ln & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((ln & 0x3F) << 8) | msg[pos + 1]
            continue
        pos += 1
        if ln == 0:
            break
        labels.append(msg[pos:pos + ln].decode("ascii", "replace").lower())
        pos += ln
    return ".".join(labels), (end if end is not None else pos)


def _qname(msg):
    """The question name of a query, or None."""
    try:
        if len(msg) < 12 or struct.unpack(">H", msg[4:6])[0] < 1:
            return None
        return _read_name(msg, 12)[0]
    except (IndexError, UnicodeDecodeError):
        return None


def query(name, qtype, server="127.0.0.1", port=53, timeout=1.0):
    """One UDP query with recursion desired: (rcode name, [rdata text]) or None."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + \
        struct.pack(">HH", QTYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (server, port))
            resp = s.recv(65536)
        except OSError:
            return None
    if len(resp) < 12 or struct.unpack(">H", resp[:2])[0] != qid:
        return None
    flags, qd, an = struct.unpack(">HHH", resp[2:8])
    pos = 12
    for _ in range(qd):
        pos = _read_name(resp, pos)[1] + 4
    out = []
    for _ in range(an):
        pos = _read_name(resp, pos)[1]
        rtype, _, _, rdlen = struct.unpack(">HHIH", resp[pos:pos + 10])
        pos += 10
        rd = resp[pos:pos + rdlen]
        if rtype == QTYPES[qtype]:
            if rtype == 1:
                out.append(socket.inet_ntop(socket.AF_INET, rd))
            elif rtype == 28:
                out.append(socket.inet_ntop(socket.AF_INET6, rd))
            elif rtype == 15:
                out.append(f"{struct.unpack('>H', rd[:2])[0]} {_read_name(resp, pos + 2)[0]}")
            elif rtype in (2, 5, 12):
                out.append(_read_name(resp, pos)[0])
            elif rtype == 16:
                out.append(rd[1:1 + rd[0]].decode("utf-8", "replace") if rd else "")
        pos += rdlen
    return RCODES.get(flags & 0xF, str(flags & 0xF)), out


# ---------------------------------------------------------------------------- front

class DropProxy:
    """The namespace's DNS server on 127.0.0.1:53 (UDP): forwards each query to unbound
    and relays its answer, except the queries for names under `drop`, which it reads,
    counts and never answers. Every client that asks such a name waits for its own
    timeout, every time: unbound cannot stand in front of a server that drops, since it
    would answer SERVFAIL itself once it had marked that server as down.

    UDP only: no answer of the fixture comes near 512 bytes, so no client falls back to
    TCP. A query forwarded but not answered by unbound (in 3 s) is counted as lost: the
    test fails on it, as it would be a drop nobody meant."""

    def __init__(self, port, upstream, drop):
        self.upstream = upstream
        self.drop = [d.lower().rstrip(".") for d in drop]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", port))
        self.udp.settimeout(0.2)
        self.counts = {}
        self.lost = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _drops(self, name):
        return any(name == d or name.endswith("." + d) for d in self.drop)

    def _loop(self):
        while self.running:
            try:
                msg, peer = self.udp.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            name = _qname(msg)
            if name is None:
                continue
            if self._drops(name):
                with self.lock:
                    self.counts[name] = self.counts.get(name, 0) + 1
                continue
            threading.Thread(target=self._forward, args=(msg, peer, name),
                             daemon=True).start()

    def _forward(self, msg, peer, name):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3.0)
            try:
                s.sendto(msg, self.upstream)
                resp = s.recv(65536)
                self.udp.sendto(resp, peer)
            except OSError as e:
                if self.running:
                    with self.lock:
                        self.lost.append(f"{name}: {e}")

    def stop(self):
        self.running = False
        self.thread.join(2)
        try:
            self.udp.close()
        except OSError:
            pass

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def lost_queries(self):
        with self.lock:
            return list(self.lost)


# ---------------------------------------------------------------------------- servers

UNBOUND_CONF = """\
# written by tests/e2e/dnsenv.py
server:
    interface: 127.0.0.1
    port: {port}
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    # the stub (rbldnsd) listens on 127.0.0.1
    do-not-query-localhost: no
    # no DNSSEC: the local zones are not signed
    module-config: "iterator"
    # rbldnsd answers NXDOMAIN for "100.51.198.zen.rbl.test": a minimised query would
    # make unbound believe that nothing exists below it
    qname-minimisation: no
    harden-below-nxdomain: no
    # the records of an RRset in one order, every time
    rrset-roundrobin: no
    num-threads: 1
    so-reuseport: no
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: "{dir}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    log-servfail: yes
    # the fixture does not change during a run; the cap only bounds stale answers if a
    # zone file is edited between runs of a kept unbound
    cache-max-ttl: 300
    cache-max-negative-ttl: 60
    # nothing beyond the namespace: no root priming, no trust anchor
    auto-trust-anchor-file: ""
{zones}
"""


class DnsEnv:
    def __init__(self, workdir, zones_conf, rbl_zones, table_dir, drop=()):
        for tool in ("/usr/sbin/unbound", "/usr/sbin/unbound-checkconf", "/usr/sbin/rbldnsd"):
            need_tool(tool)
        self.dir = os.path.join(workdir, "dns")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.rbl_zones = rbl_zones
        self.table_dir = table_dir
        self.drop = list(drop)
        zones = zones_conf.replace("@RBL@", f"127.0.0.1@{RBL_PORT}")
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write(UNBOUND_CONF.format(dir=self.dir, port=UNBOUND_PORT, zones=zones))
        self.unbound = self.rbldnsd = self.front = None

    def _spawn(self, argv, logname):
        log = open(os.path.join(self.dir, logname), "wb")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def log(self):
        out = []
        for name in ("unbound.log", "rbldnsd.log", "unbound-checkconf.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out.append(f"--- {name} ---\n" +
                               f.read()[-4000:].decode("utf-8", "replace"))
        return "\n".join(out)

    def start(self):
        r = subprocess.run(["/usr/sbin/unbound-checkconf", self.conf], capture_output=True,
                           text=True)
        if r.returncode != 0:
            fail(f"unbound-checkconf {self.conf}: {r.stdout}{r.stderr}")
        try:
            self.front = DropProxy(53, ("127.0.0.1", UNBOUND_PORT), self.drop)
            zspecs = [f"{zone}:{fmt}:{f}" for zone, fmt, f in self.rbl_zones]
            self.rbldnsd = self._spawn(["/usr/sbin/rbldnsd", "-n", "-b",
                                        f"127.0.0.1/{RBL_PORT}", "-w", self.table_dir,
                                        *zspecs], "rbldnsd.log")
            self.unbound = self._spawn(["/usr/sbin/unbound", "-d", "-c", self.conf],
                                       "unbound.log")
            deadline = time.monotonic() + 15
            up = None
            while time.monotonic() < deadline:
                for p, what in ((self.unbound, "unbound"), (self.rbldnsd, "rbldnsd")):
                    if p.poll() is not None:
                        fail(f"{what} exited {p.returncode} at start:\n{self.log()}")
                up = query("localhost", "A", port=UNBOUND_PORT)
                if up is not None and query("x.invalid", "A", port=RBL_PORT) is not None:
                    break
                time.sleep(0.1)
            else:
                fail(f"unbound or rbldnsd does not answer (localhost A: {up}):\n{self.log()}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for p in (self.unbound, self.rbldnsd):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.unbound = self.rbldnsd = None
        if self.front is not None:
            self.front.stop()  # kept: dropped() and lost() still answer

    def dropped(self):
        return self.front.snapshot() if self.front else {}

    def lost(self):
        return self.front.lost_queries() if self.front else []
