"""Differential policy test: Debian's Postfix is the oracle for mxgate's restriction engine.

The restriction section tests/e2e/policy/restrictions.cf (access, cidr, pcre and regexp
tables, restriction classes, warn_if_reject, reject_rbl_client with =filters, rhsbl,
reject_non_fqdn_*, reject_invalid_helo_hostname, reject_unlisted_recipient with
relay_recipient_maps, header_checks) is given unchanged to a private Postfix instance and to
mxgate. Postfix gets its tables with postmap; mxgate gets the same files through mxgate-map
(tables, and rbldnsd zones into its LMDB store) and reads header_checks itself. Generated
sessions (tests/e2e/policy/sessions.py: fixed seeds plus one random seed per run, printed,
so each run also checks sessions no earlier run saw) go to both servers byte for byte, in
lockstep; each session sets its client with XCLIENT NAME= ADDR=. Every reply code and
enhanced status code must be the same; reply texts are compared after normalising queue
IDs (and the greeting and EHLO lines, which differ by design), and must be the same in the
DNS variants; in the others they are reported separately.

Variants (VARIANTS): the fixture as is (smtpd_delay_reject = yes), with
smtpd_delay_reject = no, with soft_bounce = yes; then two that ask DNS for everything,
each also with smtpd_delay_reject = no:
  dns   restrictions_dns.cf appended (DNSBL and RHSBL with filters, permit_dnswl_client,
        permit_rhswl_client, reject_unknown_{client,reverse_client,helo}_hostname,
        reject_unknown_{sender,recipient}_domain (NXDOMAIN, NODATA, RFC 7505 null MX),
        check_{sender,recipient}_mx_access, check_sender_ns_access,
        check_{client,helo}_a_access); mxgate has no local zone loaded and looks the
        client up at connect (smtpd_peername_lookup = yes), so both servers ask the same
        resolver. Clients come from XCLIENT NAME= and
        REVERSE_NAME= (names, [UNAVAILABLE], [TEMPUNAVAIL]), XCLIENT ADDR= alone, or no
        XCLIENT at all: the session connects from 127.0.0.N and both servers look up its
        PTR and the name's address.
  drop  the same restrictions, each session with one element (client address, its PTR or
        name, a DNSBL, DNSWL, RHSBL or RHSWL question, HELO, sender or recipient domain, an
        MX host's address) whose questions the DNS server drops: Postfix's
        temporary-failure outcomes (defer_if_permit, 450 ... Host not found / Domain not
        found, a list that does not answer as not listed, the allowlists'
        defer_if_reject).

Everything runs in a private network namespace (lo only). Its DNS (tests/e2e/dnsenv.py):
on 127.0.0.1:53 a front that forwards to unbound (the local zones of
policy/dns_zones.conf, a stub zone to rbldnsd for the blocklists and the allowlist) and
never answers the questions for DROP_NAMES; resolv.conf (`ip netns exec` bind-mounts
/etc/netns/NAME/resolv.conf and hosts) says timeout:1 attempts:1, for Postfix and mxgate
alike. Needs Postfix with pcre (postfix, postfix-pcre), rbldnsd, unbound and iproute2: a
missing one fails the test, naming its package. Needs root and a kernel that lets it create
a network namespace: skipped (exit 77) otherwise, saying which.

Coverage: for each variant, texts Postfix must send in its fixed-seed sessions (COVERAGE,
DNS_COVERAGE, DROP_COVERAGE), and for the drop variant the questions the front must have
dropped (DROP_QUESTIONS): a fixture or generator that lost a feature fails. A question
the front forwarded and unbound did not answer fails the test too (a drop nobody meant).

Environment: MXGATE_POLICY_SEEDS=1,2 runs only those seeds (all variants);
MXGATE_POLICY_SESSIONS=N sessions per seed (default: each variant's own);
MXGATE_POLICY_VARIANTS=dns,drop runs only those variants; MXGATE_POLICY_DUMP=FILE writes
every reply of both servers there (with the time of those that took 0.3 s or more);
MXGATE_POLICY_REPORT_LIMIT=N prints up to N mismatches (60); MXGATE_KEEP_TEST_DIRS keeps the
temporary directories (logs of both servers and of the DNS servers);
MXGATE_POLICY_SELFTEST=1 puts a second Postfix in mxgate's place (must report no mismatch:
proves the harness itself is deterministic)."""

import concurrent.futures
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
POLICY = os.path.join(HERE, "policy")
sys.path.insert(0, HERE)
sys.path.insert(0, POLICY)

import dnsenv  # noqa: E402
import netns  # noqa: E402
import sessions as gen  # noqa: E402
from mxtest import (Gateway, PostfixPeer, fail, need_postfix_pcre, need_root,  # noqa: E402
                    need_tool)

NETNS_ENV = "MXGATE_POLICY_NETNS"

# Texts Postfix must send somewhere in the fixed-seed sessions of the first variant: if one
# is missing the fixture or the generator no longer covers that feature, and the comparison
# would prove less than it claims.
COVERAGE = [
    "Relay access denied",
    "blocked using zen.rbl.test",
    "blocked using dbl.rbl.test",
    "User unknown in relay recipient table",
    "User unknown in local recipient table",
    "Client host rejected",
    "Helo command rejected",
    "Sender address rejected",
    "Recipient address rejected",
    "need fully-qualified",
    "Invalid name",
    "Spam subject",
    "not welcome",
    "queued as",
    "no valid recipients",
]


def accepted_rcpt_from(addr):
    """A coverage check: Postfix accepted a recipient in a session from addr."""
    def check(sess, steps):
        return sess["addr"] == addr and any(
            kind == "RCPT" and replies[0].code.startswith("2") for kind, _, replies in steps)
    return check


def accepted_rcpt_with_sender(sender):
    """A coverage check: Postfix accepted a recipient of this sender (in the session's
    first transaction, the one whose sender that is)."""
    def check(sess, steps):
        if sess["sender"] != sender:
            return False
        for kind, _, replies in steps:
            if kind == "RSET":
                return False
            if kind == "RCPT" and replies[0].code.startswith("2"):
                return True
        return False
    return check


# The same for the DNS variant: strings, or (what, predicate(session, steps)) where a text
# alone would not prove it.
DNS_COVERAGE = [
    # reject_rbl_client through DNS, IPv4 and IPv6, and a real client address
    "Client host [198.51.100.51] blocked using zen.rbl.test",
    "blocked using zen.rbl.test; IPv6",
    "Client host [127.0.0.27] blocked using zen.rbl.test",
    # permit_dnswl_client, permit_rhswl_client: a client zen.rbl.test lists, allowlisted
    ("permit_dnswl_client allowlists 198.51.100.50", accepted_rcpt_from("198.51.100.50")),
    ("permit_rhswl_client allowlists mail.trusted.example[198.51.100.51]",
     accepted_rcpt_from("198.51.100.51")),
    # reject_rhsbl_*: each class
    "Client host [host.spammer.example] blocked using rhs.rbl.test",
    "Client host [host.listed.example] blocked using rhs.rbl.test",
    "Unverified Client host [host.spammer.example] blocked using rhs.rbl.test",
    "Unverified Client host [mail.other.example] blocked using rhs.rbl.test",
    "Helo command [host.spammer.example] blocked using rhs.rbl.test",
    "Sender address [user@x.spammer.example] blocked using rhs.rbl.test",
    "Sender address [user@mail.other.example] blocked using rhs.rbl.test",
    "Recipient address [user@rcpt.spammer.example] blocked using rhs.rbl.test",
    # reject_unknown_client_hostname: permanent (XCLIENT, no PTR, forged) and temporary
    "550 5.7.25 Client host rejected: cannot find your hostname",
    "450 4.7.25 Client host rejected: cannot find your hostname",
    "cannot find your hostname, [127.0.0.22]",
    "cannot find your hostname, [127.0.0.23]",
    "cannot find your hostname, [127.0.0.30]",
    "cannot find your hostname, [127.0.0.32]",
    # a PTR name in mixed case keeps it (getnameinfo())
    "<Mixed.Peer.Example[127.0.0.33]>: Client host rejected: Server address blocked",
    # reject_unknown_reverse_client_hostname: permanent and temporary, and no PTR
    "550 5.7.1 Client host rejected: cannot find your reverse hostname",
    "450 4.7.1 Client host rejected: cannot find your reverse hostname",
    "cannot find your reverse hostname, [127.0.0.24]",
    # reject_unknown_helo_hostname: NXDOMAIN, NODATA, a single label
    "<nx.helo.example>: Helo command rejected: Host not found",
    "<txt.helo.example>: Helo command rejected: Host not found",
    "<mailhost>: Helo command rejected: Host not found",
    # reject_unknown_sender_domain: NXDOMAIN, NODATA, null MX
    "<user@nx.sender.example>: Sender address rejected: Domain not found",
    "<user@txt.sender.example>: Sender address rejected: Domain not found",
    "Sender address rejected: Domain nullmx.sender.example does not accept mail (nullMX)",
    # reject_unknown_recipient_domain: NXDOMAIN, NODATA, null MX
    "<user@nx.rcpt.example>: Recipient address rejected: Domain not found",
    "<user@txt.rcpt.example>: Recipient address rejected: Domain not found",
    "Recipient address rejected: Domain nullmx.rcpt.example does not accept mail (nullMX)",
    # check_sender_mx_access: by MX host name, by address (MX and the domain itself)
    "Sender MX host blocked",
    "<user@badip.sender.example>: Sender address rejected: Sender MX address blocked",
    "<user@selfmx.sender.example>: Sender address rejected: Sender MX address blocked",
    "<user@multi.sender.example>: Sender address rejected: Sender MX host blocked",
    # ... OK refused (a DNS answer never allowlists), DUNNO ends the search
    "451 4.3.5 Server configuration error",
    ("check_sender_mx_access: an MX host found DUNNO ends the search",
     accepted_rcpt_with_sender("user@dunno.sender.example")),
    # check_client_a_access (the second address of the client's name), check_helo_a_access,
    # check_sender_ns_access (the domain's NS, its parent's), check_recipient_mx_access
    "<two.peer.example[127.0.0.31]>: Client host rejected: Server address blocked",
    "<blockedip.helo.example>: Helo command rejected: Server address blocked",
    "<user@ns.sender.example>: Sender address rejected: DNS server blocked",
    "<user@sub.ns.sender.example>: Sender address rejected: DNS server blocked",
    "<user@blockedmx.rcpt.example>: Recipient address rejected: Mail server blocked",
    "Relay access denied",
    "queued as",
]

# The drop variant: the temporary-failure outcomes.
DROP_COVERAGE = [
    # 127.0.0.25: both names unknown, the reverse name's restriction comes first
    "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.26]",
    "450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.25]",
    "450 4.7.1 <slow.drop.example>: Helo command rejected: Host not found",
    "450 4.1.8 <user@sender.drop.example>: Sender address rejected: Domain not found",
    "450 4.1.2 <user@rcpt.drop.example>: Recipient address rejected: Domain not found",
    ("a client whose zen.rbl.test question is dropped is not listed",
     accepted_rcpt_from("198.51.100.88")),
    # permit_dnswl_client and permit_rhswl_client without an answer: a later rejection
    # (in the same restriction list) is deferred
    "450 4.7.1 <198.51.100.77>: Client host rejected: Service unavailable",
    "450 4.7.1 <mail.slowwl.example>: Client host rejected: Service unavailable",
    # reject_rhsbl_sender without an answer: not listed; check_sender_mx_access with an
    # MX host whose address does not come: that host is passed over
    ("a sender whose rhs.rbl.test question is dropped is not listed",
     accepted_rcpt_with_sender("user@rhsdrop.example")),
    ("an MX host without an address answer is passed over",
     accepted_rcpt_with_sender("user@slowmx.sender.example")),
    "queued as",
]

# The dns variant with smtpd_delay_reject = no: each list answers its own command, and a
# real client refused at connect gets 503 for everything after, XCLIENT included.
DNS_NO_DELAY_COVERAGE = [
    "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.22]",
    "503 5.7.0 Error: access denied for unknown[127.0.0.22]",
    "<nx.helo.example>: Helo command rejected: Host not found",
    "<user@nx.sender.example>: Sender address rejected: Domain not found",
    "<user@nx.rcpt.example>: Recipient address rejected: Domain not found",
    "queued as",
]

# What the DNS front never answers (dnsenv.DropProxy): these names and all below them.
DROP_NAMES = ["drop.example", "25.0.0.127.in-addr.arpa", "88.100.51.198.zen.rbl.test",
              "77.100.51.198.wl.rbl.test", "rhsdrop.example.rhs.rbl.test",
              "mail.slowwl.example.rhswl.rbl.test"]

# The questions the drop variant's fixed seeds must have made the front drop.
DROP_QUESTIONS = ["25.0.0.127.in-addr.arpa", "slow.drop.example",
                  "88.100.51.198.zen.rbl.test", "77.100.51.198.wl.rbl.test",
                  "sender.drop.example", "rcpt.drop.example", "rhsdrop.example.rhs.rbl.test",
                  "mx.slowmx.drop.example", "mail.slowwl.example.rhswl.rbl.test"]

with open(os.path.join(POLICY, "restrictions_dns.cf")) as _f:
    DNS_RESTRICTIONS = _f.read()

# name: the report's; extra: main.cf lines for both servers after restrictions.cf;
# seeds: the fixed ones (one random seed is added per run); sessions: per seed; parallel:
# sessions at a time (1); dns: mxgate gets no local zone and looks its clients up (both
# servers ask DNS for everything); texts: a reply text that differs fails the test too
# (elsewhere it is reported only).
VARIANTS = [
    {"name": "delay_reject=yes", "extra": "", "seeds": [1, 2, 3], "coverage": COVERAGE},
    {"name": "delay_reject=no", "extra": "smtpd_delay_reject = no\n", "seeds": [11]},
    {"name": "soft_bounce=yes", "extra": "soft_bounce = yes\n", "seeds": [21]},
    # dns: each seed's first sessions test every pool value once (sessions.dns_plan)
    {"name": "dns", "extra": DNS_RESTRICTIONS, "seeds": [31, 32, 33], "dns": True,
     "generator": gen.dns_sessions, "sessions": 100, "coverage": DNS_COVERAGE,
     "texts": True},
    # drop: sessions mostly wait for resolver timeouts, so several run at once (parallel);
    # no restriction here depends on other sessions (no rate limits, no anvil)
    {"name": "drop", "extra": DNS_RESTRICTIONS, "seeds": [41], "dns": True,
     "generator": gen.drop_sessions, "sessions": 14, "parallel": 4,
     "coverage": DROP_COVERAGE, "texts": True},
    # the same two with smtpd_delay_reject = no: each list at its own command, so the
    # lookups (and the timeouts) happen at connect, HELO and MAIL as well
    {"name": "dns+delay_reject=no", "extra": DNS_RESTRICTIONS + "smtpd_delay_reject = no\n",
     "seeds": [34], "dns": True, "generator": gen.dns_sessions, "sessions": 100,
     "coverage": DNS_NO_DELAY_COVERAGE, "texts": True},
    {"name": "drop+delay_reject=no",
     "extra": DNS_RESTRICTIONS + "smtpd_delay_reject = no\n", "seeds": [43], "dns": True,
     "generator": gen.drop_sessions, "sessions": 14, "parallel": 4, "texts": True},
]

HASH_TABLES = ["client_access", "helo_access", "recipient_access", "relay_recipients",
               "local_recipients", "mx_access", "server_access"]
OTHER_TABLES = [("cidr", "client.cidr"), ("pcre", "sender.pcre"),
                ("regexp", "recipient.regexp")]
# rbldnsd serves all of these; mxgate's store of the first variants holds LOCAL_ZONES, the
# DNS variants' store none.
LOCAL_ZONES = [("zen.rbl.test", "combined", "zen.zone"), ("dbl.rbl.test", "dnset", "dbl.zone")]
DNS_ZONES = LOCAL_ZONES + [("rhs.rbl.test", "dnset", "rhs.zone"),
                           ("wl.rbl.test", "ip4set", "wl.zone"),
                           ("rhswl.rbl.test", "dnset", "rhswl.zone")]
FIXTURE_FILES = HASH_TABLES + [f for _, f in OTHER_TABLES] + [z for _, _, z in DNS_ZONES] + \
    ["header_checks"]


# ---------------------------------------------------------------------------- netns

def run_in_netns():
    """Run this script in a network namespace with lo up and its own resolv.conf (unbound
    on 127.0.0.1) and hosts file, and exit with its status."""
    for tool in ("ip", "/usr/sbin/rbldnsd", "/usr/sbin/unbound", "/usr/sbin/unbound-checkconf",
                 "/usr/sbin/postfix"):
        need_tool(tool)
    need_postfix_pcre()
    need_root("the differential policy test (a network namespace, Postfix)")
    # Postfix finds client names through the C library (hosts file, then DNS); mxgate
    # asks DNS only. The namespace's hosts file names nothing the sessions use.
    netns.rerun_in_private_netns("mxgate-pdiff", NETNS_ENV, __file__, sys.argv[1:],
                                 dnsenv.RESOLV_CONF, "127.0.0.1 localhost\n::1 localhost\n")


# ---------------------------------------------------------------------------- SMTP

class Reply:
    def __init__(self, lines=None, status=None):
        self.lines = lines or []
        self.status = status  # None, "closed", "timeout", "not sent"
        self.secs = 0.0  # how long the server took (the dump shows the slow ones)

    @property
    def code(self):
        if self.status:
            return self.status
        last = self.lines[-1]
        return last[:3] if re.match(r"\d{3}", last) else "???"

    @property
    def enhanced(self):
        if self.status or not self.lines:
            return ""
        m = re.match(r"\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b", self.lines[-1])
        return m.group(1) if m else ""

    def text(self, kind):
        if self.status:
            return ""
        if kind in ("connect", "XCLIENT", "EHLO", "HELO") and self.code.startswith("2"):
            return ""  # greeting banners and capability lists differ by design
        t = " / ".join(l[4:] for l in self.lines)
        t = re.sub(r"queued as \S+", "queued as QID", t)
        return re.sub(r"\s+", " ", t).strip()

    def show(self):
        if self.status:
            return f"({self.status})"
        return " | ".join(self.lines)[:200]

    def show_timed(self):
        return self.show() + (f"  [{self.secs:.1f} s]" if self.secs >= 0.3 else "")


class Client:
    """One SMTP connection, reading whole (multi-line) replies."""

    def __init__(self, port, source=None, timeout=30.0):
        """source: the address to connect from (127.0.0.N: both servers look it up), or
        None. The timeout is per reply: a dropped DNS question costs each server a second,
        and one command may ask several."""
        self.buf = b""
        self.closed = False
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)

    def send(self, data):
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def reply(self):
        if self.closed:
            return Reply(status="closed")
        lines = []
        while True:
            while b"\n" not in self.buf:
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    # a late reply would pair with the next command: give up on this one
                    self.closed = True
                    return Reply(status="timeout")
                except OSError:
                    d = b""
                if not d:
                    self.closed = True
                    return Reply(lines) if lines else Reply(status="closed")
                self.buf += d
                if len(self.buf) > 65536 or len(lines) > 100:
                    self.closed = True  # RFC 5321 4.5.3.1.5: a reply line is 512 bytes
                    return Reply(status="overlong reply")
            line, _, self.buf = self.buf.partition(b"\n")
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                reply = Reply(lines)
                if reply.code in ("421", "521"):
                    self.closed = True
                return reply

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def timed(client, since):
    r = client.reply()
    r.secs = time.monotonic() - since
    return r


def run_session(sess, ports):
    """Send one session to both servers in lockstep: each command to every server, then
    each server's reply (so that the servers work at the same time: a dropped DNS question
    costs the run one timeout, not one per server). Returns [(kind, command, [replies])]
    with replies in the order of ports."""
    t0 = time.monotonic()
    clients = [Client(p, sess.get("source")) for p in ports]
    out = [("connect", "", [timed(c, t0) for c in clients])]
    accepted = [False] * len(clients)
    got_354 = [False] * len(clients)
    for kind, data in sess["steps"]:
        command = data.decode("utf-8", "replace").split("\r\n")[0]
        targets = [True] * len(clients)
        if kind == "DATA?":
            kind = "DATA"
            if not any(accepted) and not sess["data_anyway"]:
                continue
        elif kind == "MESSAGE":
            if not any(got_354):
                continue
            targets = list(got_354)
            command = "(message, end of data)"
        elif kind == "RSET":
            accepted = [False] * len(clients)
            got_354 = [False] * len(clients)
        t0 = time.monotonic()
        sent = [targets[i] and c.send(data) for i, c in enumerate(clients)]
        replies = []
        for i, c in enumerate(clients):
            if not targets[i]:
                replies.append(Reply(status="not sent"))
            elif sent[i]:
                replies.append(timed(c, t0))
            else:
                replies.append(Reply(status="closed"))
        for i, r in enumerate(replies):
            if kind == "RCPT" and r.code.startswith("2"):
                accepted[i] = True
            if kind == "DATA" and r.code == "354":
                got_354[i] = True
        out.append((kind, command, replies))
        if kind == "MESSAGE":
            got_354 = [False] * len(clients)
    for c in clients:
        c.close()
    return out


# ---------------------------------------------------------------------------- setup

def mxgate_tool(binary, name):
    """Tools live beside mxgate when installed and in <builddir>/mgmt in the build tree."""
    d = os.path.dirname(os.path.abspath(binary))
    for p in (os.path.join(d, name), os.path.join(d, "..", "mgmt", name)):
        if os.access(p, os.X_OK):
            return os.path.normpath(p)
    return None


def prepare(tmp, binary):
    """Copy the fixture, build the tables for both servers, start the DNS. Returns
    (restrictions text, {dns?: mxgate table store}, DnsEnv, setup notes)."""
    tables = os.path.join(tmp, "tables")
    os.makedirs(tables)
    os.chmod(tables, 0o755)
    for f in FIXTURE_FILES:
        shutil.copy(os.path.join(POLICY, f), tables)
        os.chmod(os.path.join(tables, f), 0o644)
    with open(os.path.join(POLICY, "restrictions.cf")) as f:
        restrictions = f.read().replace("@DIR@", tables)

    # postmap reads a main.cf; a minimal one keeps it off /etc/postfix.
    pmconf = os.path.join(tmp, "postmap-conf")
    os.makedirs(pmconf)
    with open(os.path.join(pmconf, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\n")
    for t in HASH_TABLES:
        r = subprocess.run(["/usr/sbin/postmap", "-c", pmconf, f"hash:{tables}/{t}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"postmap hash:{t}: {r.stderr}")
    for typ, t in OTHER_TABLES + [("pcre", "header_checks")]:
        r = subprocess.run(["/usr/sbin/postmap", "-c", pmconf, "-q", "probe@example",
                            f"{typ}:{tables}/{t}"], capture_output=True, text=True)
        if r.returncode not in (0, 1):
            fail(f"Postfix cannot read {typ}:{t}: {r.stderr}")

    # mxgate: the same tables into its LMDB store, under the names main.cf uses; the
    # first variants' store also holds the local zones, the DNS variants' none.
    notes = []
    stores = {False: os.path.join(tmp, "store"), True: os.path.join(tmp, "store-dns")}
    mxmap = mxgate_tool(binary, "mxgate-map")
    if mxmap is None:
        notes.append("mxgate-map not found beside mxgate or in <builddir>/mgmt: no tables")
    for dns, store in stores.items():
        os.makedirs(store)
        if mxmap is None:
            continue
        specs = [(f"hash:{tables}/{t}", t) for t in HASH_TABLES] + \
            [(f"{typ}:{tables}/{t}", t) for typ, t in OTHER_TABLES]
        for spec, t in specs:
            r = subprocess.run([mxmap, "-d", store, spec, os.path.join(tables, t)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                notes.append(f"mxgate-map {spec}: exit {r.returncode}: {r.stderr.strip()}")
        for zone, fmt, z in ([] if dns else LOCAL_ZONES):
            r = subprocess.run([mxmap, "-d", store, "-z", zone, "-t", fmt,
                                os.path.join(tables, z)], capture_output=True, text=True)
            if r.returncode != 0:
                notes.append(f"mxgate-map -z {zone} -t {fmt}: exit {r.returncode}: "
                             f"{r.stderr.strip().splitlines()[0] if r.stderr.strip() else ''}")

    # The DNS both servers ask: the front on the namespace's 127.0.0.1:53, unbound and
    # rbldnsd behind it.
    with open(os.path.join(POLICY, "dns_zones.conf")) as f:
        zones_conf = f.read()
    env = dnsenv.DnsEnv(tmp, zones_conf, DNS_ZONES, tables, DROP_NAMES).start()
    # The fixture means what the tests assume (a wrong zone file would otherwise just make
    # both servers agree on accepting everything).
    wrong = []
    for q, qtype, want in DNS_FIXTURE_CHECKS:
        got = dnsenv.query(q, qtype)
        if got != want:
            wrong.append(f"{q} {qtype}: answered {got}, the fixture means {want}")
    got = dnsenv.query("probe.drop.example", "A", timeout=1.5)
    if got is not None:
        wrong.append(f"probe.drop.example A: answered {got}; the front must drop it")
    if wrong:
        log = env.log()
        env.stop()
        fail("the test's DNS does not answer as the fixture means:\n  " + "\n  ".join(wrong) +
             "\n" + log)
    return restrictions, stores, env, notes


# (question, type, (rcode, answers)) that dnsenv.query() must get from unbound
DNS_FIXTURE_CHECKS = [
    # rbldnsd behind unbound (the zones also loaded into mxgate's first store)
    ("50.100.51.198.zen.rbl.test", "A", ("NOERROR", ["127.0.0.2"])),
    ("50.100.51.198.zen.rbl.test", "TXT", ("NOERROR", ["SBL listed 198.51.100.50"])),
    ("52.100.51.198.zen.rbl.test", "A", ("NOERROR", ["127.0.0.10"])),
    ("99.100.51.198.zen.rbl.test", "A", ("NXDOMAIN", [])),
    ("130.113.0.203.zen.rbl.test", "A", ("NXDOMAIN", [])),
    ("131.113.0.203.zen.rbl.test", "A", ("NOERROR", ["127.0.0.6"])),
    ("55.100.51.198.zen.rbl.test", "A", ("NOERROR", ["127.255.255.254"])),
    ("27.0.0.127.zen.rbl.test", "A", ("NOERROR", ["127.0.0.2"])),
    ("x.spammer.example.dbl.rbl.test", "A", ("NOERROR", ["127.0.1.2"])),
    ("wild.example.dbl.rbl.test", "A", ("NXDOMAIN", [])),
    ("host.spammer.example.rhs.rbl.test", "A", ("NOERROR", ["127.0.1.2"])),
    ("host.listed.example.rhs.rbl.test", "A", ("NOERROR", ["127.0.1.3"])),
    ("mail.other.example.rhs.rbl.test", "A", ("NOERROR", ["127.0.1.5"])),
    ("mail.good.example.rhs.rbl.test", "A", ("NXDOMAIN", [])),
    ("50.100.51.198.wl.rbl.test", "A", ("NOERROR", ["127.0.0.2"])),
    ("71.100.51.198.wl.rbl.test", "A", ("NOERROR", ["127.0.0.9"])),
    ("29.0.0.127.wl.rbl.test", "A", ("NOERROR", ["127.0.0.2"])),
    ("mail.trusted.example.rhswl.rbl.test", "A", ("NOERROR", ["127.0.0.2"])),
    ("mail.good.example.rhswl.rbl.test", "A", ("NXDOMAIN", [])),
    # unbound's local zones
    ("a.helo.example", "A", ("NOERROR", ["198.51.100.1"])),
    ("aaaa.helo.example", "A", ("NOERROR", [])),
    ("aaaa.helo.example", "AAAA", ("NOERROR", ["2001:db8::1"])),
    ("nullmx.helo.example", "MX", ("NOERROR", ["0 "])),
    ("nx.helo.example", "A", ("NXDOMAIN", [])),
    ("txt.helo.example", "MX", ("NOERROR", [])),
    ("mailhost", "A", ("NXDOMAIN", [])),
    ("mx.sender.example", "MX", ("NOERROR", ["10 mail.sender.example"])),
    ("nullmx.rcpt.example", "MX", ("NOERROR", ["0 "])),
    ("mx.ghost.example", "A", ("NXDOMAIN", [])),
    ("ns.sender.example", "NS", ("NOERROR", ["ns1.blocked-ns.example"])),
    ("sub.ns.sender.example", "NS", ("NOERROR", [])),
    ("multi.sender.example", "MX", ("NOERROR", ["10 mx.plain.example",
                                                "20 mx.blocked.example"])),
    ("two.peer.example", "A", ("NOERROR", ["127.0.0.31", "203.0.113.68"])),
    ("21.0.0.127.in-addr.arpa", "PTR", ("NOERROR", ["ok.peer.example"])),
    ("ok.peer.example", "A", ("NOERROR", ["127.0.0.21"])),
    ("24.0.0.127.in-addr.arpa", "PTR", ("NXDOMAIN", [])),
    ("1.0.0.127.in-addr.arpa", "PTR", ("NOERROR", ["localhost"])),
    ("localhost", "A", ("NOERROR", ["127.0.0.1"])),
]


# ---------------------------------------------------------------------------- compare

def compare(variant, seed, sess, steps, mismatches, textdiffs, stats):
    for kind, command, (pf, mx) in steps:
        stats["steps"] += 1
        if (pf.code, pf.enhanced) != (mx.code, mx.enhanced):
            mismatches.append((variant, seed, sess, kind, command, pf, mx))
            stats["by_kind"][kind] = stats["by_kind"].get(kind, 0) + 1
        elif pf.text(kind) != mx.text(kind):
            textdiffs.append((variant, seed, sess, kind, command, pf, mx))


def dump(f, variant, seed, sess, steps):
    """Every reply of a session, both servers, for MXGATE_POLICY_DUMP."""
    f.write(session_header(variant, seed, sess) + "\n")
    for kind, command, (pf, mx) in steps:
        same = "  " if (pf.code, pf.enhanced) == (mx.code, mx.enhanced) else "! "
        f.write(f"  {same}{kind:8} {command[:70]}\n      postfix: {pf.show_timed()}\n"
                f"      mxgate:  {mx.show_timed()}\n")


def session_header(variant, seed, sess):
    src = f" from {sess['source']}" if sess.get("source") else ""
    return (f"[{variant} seed={seed} session={sess['n']}] client {sess['name']}[{sess['addr']}]"
            f"{src} helo={sess['helo']!r} sender=<{sess['sender']}> rcpts={sess['rcpts']}")


def print_report(title, items, limit):
    print(f"\n==== {title}: {len(items)} ====")
    last = None
    for variant, seed, sess, kind, command, pf, mx in items[:limit]:
        key = (variant, seed, sess["n"])
        if key != last:
            print(session_header(variant, seed, sess))
            last = key
        print(f"    {kind:8} {command[:70]}")
        print(f"        postfix: {pf.show()}")
        print(f"        mxgate:  {mx.show()}")
    if len(items) > limit:
        print(f"    ... {len(items) - limit} more (MXGATE_POLICY_REPORT_LIMIT raises the limit)")


class PostfixAsGateway:
    """MXGATE_POLICY_SELFTEST: a second Postfix with the same configuration in mxgate's
    place. Both sides must then agree on every reply; a mismatch is the harness's fault
    (timing, nondeterminism), not the gateway's."""

    def __init__(self, main_cf):
        self.pf = PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=main_cf)
        self.port = self.pf.smtpd_port
        self.dir = self.pf.dir

    def start(self):
        self.pf.start()
        return self

    def stop(self, check=True):
        if self.pf is not None:
            self.pf.stop()
            self.pf = None
        return 0

    def output(self):
        return ""


# ---------------------------------------------------------------------------- main

def main():
    if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
        fail("usage: test_policy_diff.py path/to/mxgate")
    binary = os.path.abspath(sys.argv[1])
    # meson's timeout sends SIGTERM: unwind through the finally blocks so that Postfix (a
    # daemon, outside our process group), the gateway, the DNS servers and the namespace go
    # away.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.environ.get(NETNS_ENV) is None:
        run_in_netns()  # does not return
    t_start = time.monotonic()

    sessions_env = os.environ.get("MXGATE_POLICY_SESSIONS")
    only = os.environ.get("MXGATE_POLICY_SEEDS")
    only_variants = os.environ.get("MXGATE_POLICY_VARIANTS")
    random_seed = random.SystemRandom().randrange(1, 2**31)
    limit = int(os.environ.get("MXGATE_POLICY_REPORT_LIMIT", "60"))
    variants = VARIANTS
    if only_variants:
        names = only_variants.split(",")
        variants = [v for v in VARIANTS if v["name"] in names]
        if len(variants) != len(names):
            fail(f"MXGATE_POLICY_VARIANTS={only_variants}: the variants are "
                 f"{[v['name'] for v in VARIANTS]}")

    dump_path = os.environ.get("MXGATE_POLICY_DUMP")
    dumpf = open(dump_path, "w") if dump_path else None
    tmp = tempfile.mkdtemp(prefix="mxgate-policy-diff-")
    os.chmod(tmp, 0o755)
    keep = os.environ.get("MXGATE_KEEP_TEST_DIRS") is not None
    try:
        restrictions, stores, dns, notes = prepare(tmp, binary)
    except SystemExit:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for n in notes:
        print(f"setup note: {n}")

    selftest = os.environ.get("MXGATE_POLICY_SELFTEST") is not None
    if selftest:
        print("self-test: a second Postfix instance stands in for mxgate")
    bad_exits = []
    mismatches, textdiffs = [], []
    lost_coverage = []
    xclient_refused = 0
    summary = []
    try:
        for vi, v in enumerate(VARIANTS):
            if v not in variants:
                continue
            variant, extra, fixed = v["name"], v["extra"], v["seeds"]
            per_seed = int(sessions_env or v.get("sessions", 40))
            generate = v.get("generator", gen.sessions)
            seeds = [int(s) for s in only.split(",")] if only else fixed + [random_seed + vi]
            kind = "given" if only else f"{seeds[-1]} random, the others fixed"
            print(f"variant {variant}: seeds {seeds} ({kind}), {per_seed} sessions each")
            extra = extra.replace("@DIR@", os.path.join(tmp, "tables"))
            pf_extra = (restrictions + extra +
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                        "inet_protocols = all\n"
                        # accepted mail stays in Postfix's queue: nothing is delivered
                        "defer_transports = smtp, relay, local, virtual, error, discard\n"
                        "alias_maps =\nalias_database =\n")
            mx_extra = (restrictions + extra +
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                        f"mxgate_table_directory = {stores[bool(v.get('dns'))]}\n")
            if v.get("dns"):
                # the client's names from DNS at connect, as Postfix always does (the
                # resolver is the namespace's resolv.conf: unbound, timeout:1 attempts:1)
                mx_extra += "smtpd_peername_lookup = yes\n"
            t0 = time.monotonic()
            dropped_before = dns.dropped()
            pf = PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=pf_extra)
            if selftest:
                gw = PostfixAsGateway(pf_extra)
            else:
                gw = Gateway(binary, extra_config=mx_extra)
            pf.start()
            fixed_steps = []
            try:
                gw.start()
                stats = {"steps": 0, "by_kind": {}, "bad_sessions": 0}
                before = (len(mismatches), len(textdiffs))
                nsess = 0
                for seed in seeds:
                    batch = generate(seed, per_seed)
                    ports = [pf.smtpd_port, gw.port]
                    with concurrent.futures.ThreadPoolExecutor(v.get("parallel", 1)) as ex:
                        results = list(ex.map(lambda ss: run_session(ss, ports), batch))
                    for sess, steps in zip(batch, results):
                        nsess += 1
                        if seed in fixed:
                            fixed_steps.append((sess, steps))
                        # With smtpd_delay_reject = no Postfix may answer XCLIENT with
                        # the client verdict; with yes it must always start a new session.
                        for kind, _, (p, _) in steps:
                            if vi == 0 and kind == "XCLIENT" and p.code != "220":
                                xclient_refused += 1
                        n_before = len(mismatches)
                        compare(variant, seed, sess, steps, mismatches, textdiffs, stats)
                        if len(mismatches) > n_before:
                            stats["bad_sessions"] += 1
                        if dumpf:
                            dump(dumpf, variant, seed, sess, steps)
                # A clean exit is part of the verdict (sanitizer reports, crashes).
                rc = gw.stop(check=False)
                if rc != 0:
                    bad_exits.append(f"{variant}: the gateway exited {rc} after SIGTERM:\n"
                                     f"{gw.output()}")
            finally:
                gw.stop(check=False)
                pf.stop()
                if not keep:
                    shutil.rmtree(gw.dir, ignore_errors=True)
                    shutil.rmtree(pf.dir, ignore_errors=True)
                else:
                    print(f"kept: postfix {pf.dir}, mxgate {gw.dir}")
            # The oracle side must have exercised what the fixture claims to cover.
            if not only and fixed_steps:
                missing = missing_coverage(v.get("coverage", []), fixed_steps)
                if v.get("generator") is gen.drop_sessions:
                    after = dns.dropped()
                    missing += [f"a dropped question for {q}" for q in DROP_QUESTIONS
                                if after.get(q, 0) <= dropped_before.get(q, 0)]
                if missing:
                    lost_coverage.append(f"{variant}: {missing}")
            summary.append((variant, nsess, stats["bad_sessions"], stats["steps"],
                            len(mismatches) - before[0],
                            len(textdiffs) - before[1], stats["by_kind"],
                            time.monotonic() - t0))
    finally:
        lost = dns.lost()
        dns.stop()
        if keep:
            print(f"kept: DNS servers' configuration and logs in {dns.dir}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print_report("reply code / enhanced code MISMATCHES", mismatches, limit)
    strict = {v["name"] for v in VARIANTS if v.get("texts")}
    bad_texts = [t for t in textdiffs if t[0] in strict]
    print_report("text differences (codes equal; failing in the variants that compare "
                 "texts)", textdiffs, limit // 2)
    print("\n==== summary ====")
    for variant, nsess, nbad, nsteps, nmis, ntext, by_kind, secs in summary:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())) or "-"
        print(f"{variant:20} {nsess:4} sessions ({nbad} differ) {nsteps:5} replies "
              f"{nmis:4} mismatches ({kinds}) {ntext:4} text diffs {secs:5.1f} s")
    print(f"random seed this run: {random_seed} (+variant index); reproduce with "
          f"MXGATE_POLICY_SEEDS=SEED")
    print(f"total time {time.monotonic() - t_start:.1f} s")

    if lost:
        fail(f"the DNS front forwarded {len(lost)} queries that unbound did not answer (the "
             f"test's DNS lost them; no server may see a drop the fixture does not mean): "
             f"{lost[:10]}")
    if xclient_refused:
        fail(f"Postfix refused XCLIENT {xclient_refused} times: the harness is broken")
    if lost_coverage:
        fail("the fixed seeds no longer make Postfix send (or the front drop) what "
             "they should: fixture or generator lost coverage:\n  " +
             "\n  ".join(lost_coverage))
    if notes:
        print("setup notes above: mxgate did not get every table or zone")
    if bad_exits:
        fail("\n".join(bad_exits))
    if mismatches:
        fail(f"{len(mismatches)} replies differ from Postfix's")
    if bad_texts:
        fail(f"{len(bad_texts)} reply texts differ from Postfix's in variants that compare "
             f"texts ({sorted({t[0] for t in bad_texts})})")
    if selftest:
        print("ok (self-test): two Postfix instances agree on every reply")
    else:
        print("ok: mxgate answered every command as Postfix did")


def missing_coverage(coverage, fixed_steps):
    """The COVERAGE items (texts, or (what, predicate)) no fixed-seed session met."""
    joined = "\n".join(s[2][0].show() for _, steps in fixed_steps for s in steps)
    missing = []
    for item in coverage:
        if isinstance(item, str):
            if item not in joined:
                missing.append(item)
        elif not any(item[1](sess, steps) for sess, steps in fixed_steps):
            missing.append(item[0])
    return missing


if __name__ == "__main__":
    main()
