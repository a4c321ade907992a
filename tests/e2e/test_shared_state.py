"""Two gateways, one memcached, on the kernel transport: the state postscreen and
check_greylist keep (postscreen_cache_map, mxgate_greylist_map) shared through memcache:
maps (memcache_table(5) files naming a private memcached and a local btree: backup per
gateway), as an ISP's MX front doors would share it.

  - the screen: a client that passed the screen at gateway A (the teaser, the greet wait,
    PASS NEW) is PASS OLD at gateway B: the 220 at once, without the teaser;
  - greylisting: a first attempt at A gets 450 4.2.0, the retry after the delay at B is
    accepted (the triplet is shared);
  - memcached killed: both gateways go on with their local backups (a client screened at
    A while it is down is PASS OLD at A again; a triplet greylisted at A, or at B, passes at
    that gateway after the delay) and each logs the dict's warning for each map;
  - memcached back (empty, on the same port): both use it again (the dict's info line for
    each map in each log), and the state is shared again (PASS NEW at A then PASS OLD at
    B; greylisted at B, accepted at A);
  - the per-DNSBL counters of the statistics (SIGUSR1): postscreen_dnsbl_sites =
    bl.test=127.0.0.[2..11]*2, wl.test*-3 against a private DNS server (test_postscreen.py's):
    a client in both lists counts once for each site, one whose answer is outside bl.test's
    filter counts for none; B, where the same client is PASS OLD (no DNS asked), counts
    nothing.
The maps use distinct key_format prefixes: postscreen's cache and greylisting's client
records are both keyed by the client's address, and one memcached holds both.

Delays are short (postscreen_greet_wait 1s, mxgate_greylist_delay 2s). Each client is its
own loopback address (127.0.0.x), greylisted by host. memcached comes from Debian's
memcached package (deploy/install-deps.sh); without it the test fails naming it."""

import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest  # noqa: E402
from mxtest import fail  # noqa: E402
from test_postscreen import DNS_SERVER  # noqa: E402  (a UDP DNS server, stdlib only)

GREET_WAIT = 1
DELAY = 2
HOST = "mx.test.example"
RCPT = "user@mx.test.example"
TEASER = f"220-{HOST} ESMTP"
# each map's file, and the name its dict's log lines start with (postscreen's cache is
# opened by the state service, greylisting's by the greylist service)
DICTS = (("postscreen", "state"), ("greylist", "mxgate_greylist_map"))
BANNER = f"220 {HOST} ESMTP"


class Memcached:
    """A private memcached on 127.0.0.1:port (TCP only), restartable on the same port."""

    def __init__(self, binary, d):
        self.binary = binary
        self.dir = d
        self.port = mxtest.free_port()
        self.proc = None

    def start(self):
        argv = [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16",
                "-t", "1"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # as root memcached wants a user to drop to
        self.log = open(os.path.join(self.dir, "memcached.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:  # memcached says nothing first: a "version" answer says it is up
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as s:
                    s.sendall(b"version\r\n")
                    if s.recv(64).startswith(b"VERSION "):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                fail(f"memcached did not start on port {self.port} (see {self.dir}/"
                     "memcached.log)")
            time.sleep(0.05)

    def stop(self):
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.log.close()

    def get(self, key):
        """The value memcached holds for key (str), or None."""
        with socket.create_connection(("127.0.0.1", self.port), 5) as s:
            s.sendall(f"get {key}\r\n".encode())
            data = b""
            while not data.endswith(b"END\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        lines = data.split(b"\r\n")
        return lines[1].decode() if lines[0].startswith(b"VALUE ") else None


SITES = ("bl.test=127.0.0.[2..11]*2", "wl.test*-3")
ZONES = {  # the DNS server's names: A records; everything else NXDOMAIN
    "31.0.0.127.bl.test": [300, ["127.0.0.2"]],
    "31.0.0.127.wl.test": [300, ["127.0.2.1"]],
    "32.0.0.127.bl.test": [300, ["127.0.0.20"]],
    "33.0.0.127.bl.test": [300, ["127.0.0.3"]],
}


def start_dns(port):
    p = subprocess.Popen([sys.executable, "-u", "-c", DNS_SERVER, str(port),
                          json.dumps(ZONES)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if p.stdout.readline().strip() != "ready":
        fail(f"the DNS server did not start: {p.stdout.read()}")
    return p


def dnsbl_counts(gw):
    """SIGUSR1; the per-site lines of this service: {site: listed}."""
    gw.stats()
    out = {}
    for m in re.finditer(r"postscreen dnsbl \(SIGUSR1\): generation=\d+ service=(\S+) "
                         r"site=(\S+) listed=(\d+)", gw.log()):
        if m.group(1) == f"127.0.0.1:{gw.port}":
            out[m.group(2)] = int(m.group(3))  # the last SIGUSR1's
    return out


def gateway(binary, name, port, mc_port, dns_port):
    """A gateway with a postscreen service on port and check_greylist behind it, its two
    maps memcache: files on memcached at mc_port with local backups."""
    gw = mxtest.Gateway(binary, workers=2, port=port, extra_config="")
    d = gw.dir
    data = os.path.join(d, "data")
    os.makedirs(data)
    for m, prefix in (("postscreen", "psc"), ("greylist", "grey")):
        with open(os.path.join(d, f"{m}.cf"), "w") as f:
            f.write(f"# memcache_table(5) of gateway {name}\n"
                    f"memcache = inet:127.0.0.1:{mc_port}\n"
                    f"backup = btree:{data}/{m}_backup\n"
                    f"key_format = {prefix}:%s\n"
                    "ttl = 3600\n")
    master = os.path.join(d, "master.cf")
    with open(master, "w") as f:
        f.write(f"127.0.0.1:{port} inet n - n - 1 postscreen\n"
                "smtpd pass - - n - - smtpd\n")
    with open(gw.config_path, "a") as f:
        f.write(f"mxgate_master_file = {master}\n"
                f"data_directory = {data}\n"
                "smtpd_banner = $myhostname ESMTP\n"
                f"postscreen_greet_wait = {GREET_WAIT}s\n"
                # every client is 127.0.0.x: no access list (its default permits
                # mynetworks)
                "postscreen_access_list =\n"
                f"postscreen_dnsbl_sites = {', '.join(SITES)}\n"
                "postscreen_dnsbl_threshold = 2\n"
                f"mxgate_dns_servers = 127.0.0.1:{dns_port}\n"
                f"postscreen_cache_map = memcache:{d}/postscreen.cf\n"
                f"mxgate_greylist_map = memcache:{d}/greylist.cf\n"
                "smtpd_recipient_restrictions = reject_unauth_destination, check_greylist,"
                " permit\n"
                f"mxgate_greylist_delay = {DELAY}s\n"
                "mxgate_greylist_ipv4_prefix_length = 32\n"
                "mxgate_greylist_auto_allowlist_clients = 0\n")
    gw.name = name
    return gw


def greet(gw, client):
    """Connect from client, read the greeting (every line up to the final one), QUIT.
    Returns (greeting lines joined by newlines, seconds to the final line)."""
    with socket.create_connection((gw.host, gw.port), 20, source_address=(client, 0)) as s:
        f = s.makefile("rb")
        t0 = time.monotonic()
        lines = []
        while True:
            line = f.readline()
            if not line:
                fail(f"{gw.name}: {client}: the connection closed in the greeting "
                     f"{lines!r}\n{gw.output()}")
            line = line.decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        took = time.monotonic() - t0
        s.sendall(b"QUIT\r\n")
        f.readline()
        return "\n".join(lines), took


def expect_pass_new(gw, client, what):
    g, took = greet(gw, client)
    if g != TEASER + "\n" + BANNER or took < GREET_WAIT - 0.2:
        fail(f"{what}: want the teaser and the banner after the greet wait, got {g!r} "
             f"after {took:.2f} s\n{gw.output()}")
    wait_log(gw, f"PASS NEW [{client}]:", what)


def expect_pass_old(gw, client, what):
    g, took = greet(gw, client)
    if g != BANNER or took > GREET_WAIT - 0.4:
        fail(f"{what}: want the banner at once, got {g!r} after {took:.2f} s\n"
             f"{gw.output()}")
    wait_log(gw, f"PASS OLD [{client}]:", what)


def wait_log(gw, text, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in gw.log():
        if time.monotonic() > deadline:
            fail(f"{what}: no log line with {text!r} in gateway {gw.name}'s log\n"
                 f"{gw.output()}")
        time.sleep(0.05)


def rcpt(gw, client, sender):
    """One session from client: EHLO, MAIL, RCPT; the RCPT reply (code, text)."""
    s = smtplib.SMTP(gw.host, gw.port, source_address=(client, 0), timeout=20)
    try:
        s.ehlo("client.example")
        code, msg = s.mail(sender)
        if code != 250:
            fail(f"{gw.name}: MAIL FROM:<{sender}> from {client}: {code} {msg!r}")
        code, msg = s.rcpt(RCPT)
        s.quit()
        return code, msg.decode()
    finally:
        s.close()


def expect_greylisted(gw, client, sender, what):
    code, text = rcpt(gw, client, sender)
    want = (f"4.2.0 <{RCPT}>: Recipient address rejected: Greylisted, see "
            f"http://postgrey.schweikert.ch/help/mx.test.example.html")
    if (code, text) != (450, want):
        fail(f"{what}: want 450 {want!r}, got {code} {text!r}\n{gw.output()}")


def expect_accepted(gw, client, sender, what):
    code, text = rcpt(gw, client, sender)
    if code != 250:
        fail(f"{what}: want 250, got {code} {text!r}\n{gw.output()}")


def main():
    binary = mxtest.binary_from_argv()
    if len(sys.argv) > 2 and sys.argv[2] != "kernel":
        fail(f"test_shared_state.py runs on the kernel transport only, not {sys.argv[2]}")
    mc_bin = mxtest.need_tool("/usr/bin/memcached")
    tmp = tempfile.mkdtemp(prefix="mxgate-shared-")
    mc = Memcached(mc_bin, tmp)
    mc.start()
    pa, pb = mxtest.free_port(), mxtest.free_port()
    while pb == pa:
        pb = mxtest.free_port()
    dns_port = mxtest.free_port()
    dns = start_dns(dns_port)
    a = gateway(binary, "A", pa, mc.port, dns_port)
    b = gateway(binary, "B", pb, mc.port, dns_port)
    server = f"127.0.0.1:{mc.port}"
    try:
        a.start()
        b.start()

        print("shared: a client that passed the screen at A is PASS OLD at B")
        expect_pass_new(a, "127.0.0.21", "first connection at A")
        if mc.get("psc:127.0.0.21") is None:
            fail("A's postscreen cache record for 127.0.0.21 is not in memcached")
        expect_pass_old(b, "127.0.0.21", "the same client at B")

        print("shared: greylisted at A, accepted at B after the delay")
        t0 = time.monotonic()
        expect_greylisted(a, "127.0.0.21", "alice@sender.example", "first attempt at A")
        time.sleep(max(0.0, t0 + DELAY + 0.5 - time.monotonic()))
        expect_accepted(b, "127.0.0.21", "alice@sender.example", "the retry at B")

        print("shared: per-DNSBL counters in the statistics")
        expect_pass_new(a, "127.0.0.31", "listed in both lists (2 - 3 < 2)")
        expect_pass_new(a, "127.0.0.32", "an answer outside the filter")
        greet(a, "127.0.0.33")  # listed in bl.test: rank 2, postscreen_dnsbl_action ignore
        wait_log(a, "DNSBL rank 2 for [127.0.0.33]:", "listed in bl.test")
        expect_pass_old(b, "127.0.0.31", "the listed client at B")
        want = {SITES[0]: 2, SITES[1]: 1}
        got = dnsbl_counts(a)
        if got != want:
            fail(f"gateway A's per-DNSBL counts: {got}, want {want}\n{a.output()}")
        got = dnsbl_counts(b)
        if got != {SITES[0]: 0, SITES[1]: 0}:
            fail(f"gateway B's per-DNSBL counts: {got}, want none listed\n{b.output()}")

        print("shared: memcached down, each gateway goes on with its backup")
        mc.stop()
        expect_pass_new(a, "127.0.0.22", "A while memcached is down")
        expect_pass_old(a, "127.0.0.22", "A again while memcached is down (A's backup)")
        expect_pass_new(b, "127.0.0.23", "B while memcached is down")
        expect_pass_old(b, "127.0.0.23", "B again while memcached is down (B's backup)")
        # a client that passed before the outage: its record is in the backup of the
        # gateway that wrote it (A); B read it from memcached and has no copy
        expect_pass_old(a, "127.0.0.21", "A's backup keeps what A wrote")
        t0 = time.monotonic()
        expect_greylisted(a, "127.0.0.22", "bob@sender.example", "first attempt at A, down")
        expect_greylisted(b, "127.0.0.23", "carol@sender.example", "first attempt at B, down")
        time.sleep(max(0.0, t0 + DELAY + 0.5 - time.monotonic()))
        expect_accepted(a, "127.0.0.22", "bob@sender.example", "the retry at A, down")
        expect_accepted(b, "127.0.0.23", "carol@sender.example", "the retry at B, down")
        for gw in (a, b):
            for m, param in DICTS:
                spec = f"memcache:{gw.dir}/{m}.cf"
                wait_log(gw, f"{param}: {spec}: memcache server {server} unavailable",
                         f"the warning of gateway {gw.name}'s {param}")
                wait_log(gw, f"going on with the backup btree:{gw.dir}/data/{m}_backup",
                         f"the backup named in gateway {gw.name}'s {param} warning")
                n = gw.log().count(f"{param}: {spec}: memcache server {server} unavailable")
                if n != 1:
                    fail(f"gateway {gw.name}: {param}: {n} warnings, want one for the "
                         f"outage\n{gw.output()}")

        print("shared: memcached back, both use it again")
        mc.start()
        time.sleep(1.2)  # retry_pause (1s): the next request tries memcached again
        expect_pass_new(a, "127.0.0.24", "A once memcached is back")
        if mc.get("psc:127.0.0.24") is None:
            fail("A did not write to memcached once it was back")
        expect_pass_old(b, "127.0.0.24", "B once memcached is back")
        t0 = time.monotonic()
        expect_greylisted(b, "127.0.0.24", "dave@sender.example", "first attempt at B, back")
        if mc.get("grey:127.0.0.24/dave@sender.example/user@mx.test.example") is None:
            fail("B's greylist record is not in memcached once it was back")
        time.sleep(max(0.0, t0 + DELAY + 0.5 - time.monotonic()))
        expect_accepted(a, "127.0.0.24", "dave@sender.example", "the retry at A, back")
        for gw in (a, b):
            for m, param in DICTS:
                wait_log(gw, f"{param}: memcache:{gw.dir}/{m}.cf: memcache server {server} "
                         "is back", f"the info line of gateway {gw.name}'s {param}")
    finally:
        rcs = [gw.stop(check=False) for gw in (a, b)]
        mc.stop()
        dns.kill()
        dns.wait()
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(tmp, ignore_errors=True)
            for gw in (a, b):
                shutil.rmtree(gw.dir, ignore_errors=True)
    # a clean exit of both (0 after SIGTERM, no sanitizer report) is part of the test
    if rcs != [0, 0]:
        fail(f"the gateways exited {rcs} after SIGTERM")
    print("shared state: OK")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
