"""Differential policy test: Debian's Postfix is the oracle for mxgate's restriction engine.

The restriction section tests/e2e/policy/restrictions.cf (access, cidr, pcre and regexp
tables, restriction classes, warn_if_reject, reject_rbl_client with =filters, rhsbl,
reject_non_fqdn_*, reject_invalid_helo_hostname, reject_unlisted_recipient with
relay_recipient_maps, header_checks) is given unchanged to a private Postfix instance and to
mxgate. Postfix gets its tables with postmap and its DNS blocklists from rbldnsd; mxgate gets
the same files through mxgate-map (tables and rbldnsd zones into its LMDB store) and reads
header_checks itself. Generated sessions (tests/e2e/policy/sessions.py: fixed seeds plus one
random seed per run, printed, so each run also checks sessions no earlier run saw) go to both
servers byte for byte, in lockstep; each session sets its client with XCLIENT NAME= ADDR=.
Every reply code and enhanced status code must be the same; reply texts are compared after
normalising queue IDs and reported separately.

Runs three configurations: the fixture as is (smtpd_delay_reject = yes), with
smtpd_delay_reject = no, and with soft_bounce = yes.

Everything runs in a private network namespace (lo only) whose /etc/resolv.conf points at
the rbldnsd on 127.0.0.1:53 (`ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf).
Needs Postfix with pcre (postfix, postfix-pcre), rbldnsd and iproute2: a missing one fails
the test, naming its package. Needs root and a kernel that lets it create a network
namespace: skipped (exit 77) otherwise, saying which.

Environment: MXGATE_POLICY_SEEDS=1,2 runs only those seeds (all variants);
MXGATE_POLICY_SESSIONS=N sessions per seed (default 40); MXGATE_POLICY_DUMP=FILE writes every
reply of both servers there; MXGATE_POLICY_REPORT_LIMIT=N prints up to N mismatches (60);
MXGATE_KEEP_TEST_DIRS keeps the temporary directories (logs of both servers);
MXGATE_POLICY_SELFTEST=1 puts a second Postfix in mxgate's place (must report no mismatch:
proves the harness itself is deterministic)."""

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
POLICY = os.path.join(HERE, "policy")
sys.path.insert(0, HERE)
sys.path.insert(0, POLICY)

import sessions as gen  # noqa: E402
from mxtest import (Gateway, PostfixPeer, fail, need_postfix_pcre, need_root,  # noqa: E402
                    need_tool, skip)

NETNS_ENV = "MXGATE_POLICY_NETNS"

# (name, extra main.cf lines, fixed seeds)
VARIANTS = [
    ("delay_reject=yes", "", [1, 2, 3]),
    ("delay_reject=no", "smtpd_delay_reject = no\n", [11]),
    ("soft_bounce=yes", "soft_bounce = yes\n", [21]),
]

HASH_TABLES = ["client_access", "helo_access", "recipient_access", "relay_recipients",
               "local_recipients"]
OTHER_TABLES = [("cidr", "client.cidr"), ("pcre", "sender.pcre"),
                ("regexp", "recipient.regexp")]
ZONES = [("zen.rbl.test", "combined", "zen.zone"), ("dbl.rbl.test", "dnset", "dbl.zone")]
FIXTURE_FILES = HASH_TABLES + [f for _, f in OTHER_TABLES] + [z for _, _, z in ZONES] + \
    ["header_checks"]

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


# ---------------------------------------------------------------------------- netns

def run_in_netns():
    """Create a network namespace with lo up and resolv.conf -> 127.0.0.1, run this script
    in it, remove both afterwards, and exit with the script's status."""
    for tool in ("ip", "/usr/sbin/rbldnsd", "/usr/sbin/postfix"):
        need_tool(tool)
    need_postfix_pcre()
    need_root("the differential policy test (a network namespace, Postfix)")
    name = f"mxgate-pdiff-{os.getpid()}"
    netns_root_existed = os.path.isdir("/etc/netns")
    etc = f"/etc/netns/{name}"
    os.makedirs(etc)
    with open(os.path.join(etc, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    rc = 1
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode != 0:
            skip(f"the kernel refused a network namespace (not a missing package): "
                 f"ip netns add: {r.stderr.strip()}")
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        env = dict(os.environ, **{NETNS_ENV: name})
        child = subprocess.Popen(["ip", "netns", "exec", name, sys.executable,
                                  os.path.abspath(__file__), *sys.argv[1:]], env=env)
        try:
            rc = child.wait()
        except SystemExit:
            child.terminate()
            child.wait(60)
            raise
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)
        if not netns_root_existed:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass
    sys.exit(rc)


# ---------------------------------------------------------------------------- DNS

def dns_a(name, server="127.0.0.1", timeout=1.0):
    """A records of name from server (one UDP query, no recursion): list of dotted quads,
    [] for NXDOMAIN/no data, None when nothing answered."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (server, 53))
            resp = s.recv(4096)
        except OSError:
            return None
    if len(resp) < 12 or struct.unpack(">H", resp[:2])[0] != qid:
        return None
    ancount = struct.unpack(">H", resp[6:8])[0]
    pos = len(q)  # the question is echoed unchanged
    out = []
    for _ in range(ancount):
        while True:  # owner name: labels or a compression pointer
            ln = resp[pos]
            if ln & 0xC0 == 0xC0:
                pos += 2
                break
            pos += 1 + ln
            if ln == 0:
                break
        rtype, _, _, rdlen = struct.unpack(">HHIH", resp[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(".".join(str(b) for b in resp[pos:pos + 4]))
        pos += rdlen
    return out


# ---------------------------------------------------------------------------- SMTP

class Reply:
    def __init__(self, lines=None, status=None):
        self.lines = lines or []
        self.status = status  # None, "closed", "timeout", "not sent"

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


class Client:
    """One SMTP connection, reading whole (multi-line) replies."""

    def __init__(self, port, timeout=10.0):
        self.buf = b""
        self.closed = False
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

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


def run_session(sess, ports):
    """Send one session to both servers in lockstep. Returns [(kind, command, [replies])]
    with replies in the order of ports."""
    clients = [Client(p) for p in ports]
    out = [("connect", "", [c.reply() for c in clients])]
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
        replies = []
        for i, c in enumerate(clients):
            if not targets[i]:
                replies.append(Reply(status="not sent"))
            elif c.send(data):
                replies.append(c.reply())
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
    """Copy the fixture, build the tables for both servers, start rbldnsd. Returns
    (restrictions text, table store, rbldnsd process, setup notes)."""
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

    # mxgate: the same tables into its LMDB store, under the names main.cf uses.
    notes = []
    store = os.path.join(tmp, "store")
    os.makedirs(store)
    mxmap = mxgate_tool(binary, "mxgate-map")
    if mxmap is None:
        notes.append("mxgate-map not found beside mxgate or in <builddir>/mgmt: no tables")
    else:
        specs = [(f"hash:{tables}/{t}", t) for t in HASH_TABLES] + \
            [(f"{typ}:{tables}/{t}", t) for typ, t in OTHER_TABLES]
        for spec, t in specs:
            r = subprocess.run([mxmap, "-d", store, spec, os.path.join(tables, t)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                notes.append(f"mxgate-map {spec}: exit {r.returncode}: {r.stderr.strip()}")
        for zone, fmt, z in ZONES:
            r = subprocess.run([mxmap, "-d", store, "-z", zone, "-t", fmt,
                                os.path.join(tables, z)], capture_output=True, text=True)
            if r.returncode != 0:
                notes.append(f"mxgate-map -z {zone} -t {fmt}: exit {r.returncode}: "
                             f"{r.stderr.strip().splitlines()[0] if r.stderr.strip() else ''}")

    # rbldnsd for Postfix, on the namespace's 127.0.0.1:53.
    log = open(os.path.join(tmp, "rbldnsd.log"), "wb")
    zspecs = [f"{zone}:{fmt}:{z}" for zone, fmt, z in ZONES]
    rbl = subprocess.Popen(["/usr/sbin/rbldnsd", "-n", "-b", "127.0.0.1/53", "-w", tables,
                            *zspecs], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    probe = None
    while time.monotonic() < deadline:
        if rbl.poll() is not None:
            break
        probe = dns_a("50.100.51.198.zen.rbl.test")
        if probe is not None:
            break
        time.sleep(0.1)
    if probe != ["127.0.0.2"]:
        rbl.kill()
        with open(os.path.join(tmp, "rbldnsd.log"), "rb") as f:
            fail(f"rbldnsd does not answer 50.100.51.198.zen.rbl.test with 127.0.0.2 "
                 f"(got {probe}):\n{f.read().decode(errors='replace')}")
    # The fixture's zones mean what the tests assume (a wrong zone file would otherwise
    # just make both servers accept everything).
    for q, want in [("52.100.51.198.zen.rbl.test", ["127.0.0.10"]),
                    ("99.100.51.198.zen.rbl.test", []),
                    ("130.113.0.203.zen.rbl.test", []),
                    ("131.113.0.203.zen.rbl.test", ["127.0.0.6"]),
                    ("x.spammer.example.dbl.rbl.test", ["127.0.1.2"]),
                    ("wild.example.dbl.rbl.test", [])]:
        got = dns_a(q)
        if got != want:
            rbl.kill()
            fail(f"rbldnsd: {q} answered {got}, the fixture means {want}")
    return restrictions, store, rbl, notes


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
        f.write(f"  {same}{kind:8} {command[:70]}\n      postfix: {pf.show()}\n"
                f"      mxgate:  {mx.show()}\n")


def session_header(variant, seed, sess):
    return (f"[{variant} seed={seed} session={sess['n']}] client {sess['name']}[{sess['addr']}] "
            f"helo={sess['helo']!r} sender=<{sess['sender']}> rcpts={sess['rcpts']}")


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
    # daemon, outside our process group), the gateway, rbldnsd and the namespace go away.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.environ.get(NETNS_ENV) is None:
        run_in_netns()  # does not return
    t_start = time.monotonic()

    per_seed = int(os.environ.get("MXGATE_POLICY_SESSIONS", "40"))
    only = os.environ.get("MXGATE_POLICY_SEEDS")
    random_seed = random.SystemRandom().randrange(1, 2**31)
    limit = int(os.environ.get("MXGATE_POLICY_REPORT_LIMIT", "60"))

    dump_path = os.environ.get("MXGATE_POLICY_DUMP")
    dumpf = open(dump_path, "w") if dump_path else None
    tmp = tempfile.mkdtemp(prefix="mxgate-policy-diff-")
    os.chmod(tmp, 0o755)
    keep = os.environ.get("MXGATE_KEEP_TEST_DIRS") is not None
    try:
        restrictions, store, rbl, notes = prepare(tmp, binary)
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
    coverage_text = []
    xclient_refused = 0
    summary = []
    try:
        for vi, (variant, extra, fixed) in enumerate(VARIANTS):
            seeds = [int(s) for s in only.split(",")] if only else fixed + [random_seed + vi]
            kind = "given" if only else f"{seeds[-1]} random, the others fixed"
            print(f"variant {variant}: seeds {seeds} ({kind}), {per_seed} sessions each")
            pf_extra = (restrictions + extra +
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                        "inet_protocols = all\n"
                        # accepted mail stays in Postfix's queue: nothing is delivered
                        "defer_transports = smtp, relay, local, virtual, error, discard\n"
                        "alias_maps =\nalias_database =\n")
            mx_extra = (restrictions + extra +
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
                        f"mxgate_table_directory = {store}\n")
            t0 = time.monotonic()
            pf = PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=pf_extra)
            if selftest:
                gw = PostfixAsGateway(pf_extra)
            else:
                gw = Gateway(binary, extra_config=mx_extra)
            pf.start()
            try:
                gw.start()
                stats = {"steps": 0, "by_kind": {}, "bad_sessions": 0}
                before = (len(mismatches), len(textdiffs))
                nsess = 0
                for seed in seeds:
                    for sess in gen.sessions(seed, per_seed):
                        steps = run_session(sess, [pf.smtpd_port, gw.port])
                        nsess += 1
                        if vi == 0 and seed in fixed:
                            coverage_text += [s[2][0].show() for s in steps]
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
            summary.append((variant, nsess, stats["bad_sessions"], stats["steps"],
                            len(mismatches) - before[0],
                            len(textdiffs) - before[1], stats["by_kind"],
                            time.monotonic() - t0))
    finally:
        rbl.terminate()
        try:
            rbl.wait(5)
        except subprocess.TimeoutExpired:
            rbl.kill()
            rbl.wait()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print_report("reply code / enhanced code MISMATCHES", mismatches, limit)
    print_report("text differences (codes equal; not failing)", textdiffs, limit // 2)
    print("\n==== summary ====")
    for variant, nsess, nbad, nsteps, nmis, ntext, by_kind, secs in summary:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())) or "-"
        print(f"{variant:17} {nsess:4} sessions ({nbad} differ) {nsteps:5} replies "
              f"{nmis:4} mismatches ({kinds}) {ntext:4} text diffs {secs:5.1f} s")
    print(f"random seed this run: {random_seed} (+variant index); reproduce with "
          f"MXGATE_POLICY_SEEDS=SEED")
    print(f"total time {time.monotonic() - t_start:.1f} s")

    # The oracle side must have exercised what the fixture claims to cover.
    if xclient_refused:
        fail(f"Postfix refused XCLIENT {xclient_refused} times: the harness is broken")
    if not only:
        joined = "\n".join(coverage_text)
        missing = [c for c in COVERAGE if c not in joined]
        if missing:
            fail(f"the fixed seeds no longer make Postfix send {missing}: fixture or "
                 f"generator lost coverage")
    if notes:
        print("setup notes above: mxgate did not get every table or zone")
    if bad_exits:
        fail("\n".join(bad_exits))
    if mismatches:
        fail(f"{len(mismatches)} replies differ from Postfix's")
    if selftest:
        print("ok (self-test): two Postfix instances agree on every reply")
    else:
        print("ok: mxgate answered every command as Postfix did")


if __name__ == "__main__":
    main()
