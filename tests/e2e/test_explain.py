"""`mxgate explain` with DNS and policy servers, end to end (argv: mxgate binary).

A real unbound serves local zones (PTR, A, MX, a DNS blocklist with TXT, a refused
zone); small servers in this test answer SERVFAIL to everything, or nothing at all; a small
policy server answers by recipient (reject, dunno, or never). `mxgate explain` runs the
configuration's restriction lists against them and must print what the gateway would ask
and get:
  1. reject_rbl_client: the query name, the A answer, the TXT reason, the 554 reply, each
     lookup under the restriction that asked it; and the gateway itself, with the same
     configuration, answers a client from that address with the same reply;
  2. the client's name as at connect: PTR and confirming A lookups; a confirmed name, a
     forged one (the warning the gateway logs), none (NXDOMAIN), a temporary failure;
     reject_unknown_client_hostname's permanent (550) and temporary (450) replies;
  3. reject_unknown_sender_domain on an NXDOMAIN domain (its MX lookup shown);
  4. check_policy_service: the request sent (attributes), the action received, a reply
     that rejects; a server that never answers: its timeout and the default action;
  5. SERVFAIL and a timeout: TEMPFAIL with the reason, the blocklist's lookup error;
  6. --no-dns and --no-policy: nothing is asked, and it says so;
  7. the screen of a postscreen service: the DNSBL site's answer, weight and score, the
     verdict (DNSBL rank 2 -> drop) and the reply, and a gateway screening with the same
     configuration drops a client from that address with the same reply.
Kernel sockets only (explain is a command-line tool); no root needed.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
UNBOUND = mxtest.need_tool("/usr/sbin/unbound")
SWAKS = mxtest.need_tool("swaks")


def unbound_conf(d, port):
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
        f'  logfile: "{d}/unbound.log"',
        "  num-threads: 1",
        "  access-control: 127.0.0.0/8 allow",
        '  module-config: "iterator"',
        '  auto-trust-anchor-file: ""',
        '  local-zone: "xpl.test." static',
        '  local-zone: "in-addr.arpa." static',
        '  local-zone: "5.0.0.127.in-addr.arpa." always_refuse',
        '  local-zone: "zen.bl.test." static',
        '  local-zone: "nx.test." static',
    ]
    records = [
        "2.0.0.127.in-addr.arpa. 3600 PTR good.xpl.test.",
        "good.xpl.test. 3600 A 127.0.0.2",
        "3.0.0.127.in-addr.arpa. 3600 PTR forged.xpl.test.",
        "forged.xpl.test. 3600 A 127.0.0.99",
        "2.0.0.127.zen.bl.test. 300 A 127.0.0.2",
        '2.0.0.127.zen.bl.test. 300 TXT "Listed by the xpl test"',
        "sender.xpl.test. 3600 MX 10 mx.xpl.test.",
        "mx.xpl.test. 3600 A 192.0.2.25",
    ]
    lines += [f"  local-data: '{r}'" for r in records]
    lines += ["remote-control:", "  control-enable: no"]
    return "\n".join(lines) + "\n"


class DnsResponder:
    """A UDP DNS server on 127.0.0.1 that answers every question SERVFAIL, or (silent)
    reads nothing and never answers."""

    def __init__(self, silent):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.queries = 0
        if not silent:
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                pkt, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            if len(pkt) < 12:
                continue
            self.queries += 1
            qid, flags = struct.unpack(">HH", pkt[:4])
            # the question copied (up to its end: QNAME, QTYPE, QCLASS), RCODE 2
            end = 12
            while end < len(pkt) and pkt[end] != 0:
                end += 1 + pkt[end]
            end += 5
            hdr = struct.pack(">HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | 2, 1, 0,
                              0, 0)
            self.sock.sendto(hdr + pkt[12:end], peer)

    def close(self):
        self.stop = True
        self.sock.close()


class PolicyServer:
    """A Postfix policy server on 127.0.0.1 answering by the request's recipient:
    reject@... REJECT with a text, never@... nothing ever, anything else DUNNO. Keeps the
    requests it read."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.requests = []
        self.held = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buf = b""
        conn.settimeout(30)
        try:
            while True:
                while b"\n\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                req, buf = buf.split(b"\n\n", 1)
                attrs = dict(line.split("=", 1) for line in req.decode().split("\n")
                             if "=" in line)
                self.requests.append(attrs)
                rcpt = attrs.get("recipient", "")
                if rcpt.startswith("never@"):
                    self.held.append(conn)
                    return
                action = ("REJECT go away, said the xpl policy" if rcpt.startswith("reject@")
                          else "DUNNO")
                conn.sendall(f"action={action}\n\n".encode())
        except OSError:
            return
        finally:
            if conn not in self.held:
                conn.close()

    def close(self):
        self.lsock.close()
        for c in self.held:
            c.close()


def explain(cf, *args, want_rc=None, timeout=120):
    t0 = time.monotonic()
    r = subprocess.run([binary, "explain", "-c", cf, *args], capture_output=True, text=True,
                       timeout=timeout)
    took = time.monotonic() - t0
    out = r.stdout + r.stderr
    if want_rc is not None and r.returncode != want_rc:
        fail(f"explain {' '.join(args)}: exit {r.returncode}, expected {want_rc}:\n{out}")
    if "runtime error" in out or "AddressSanitizer" in out:
        fail(f"explain {' '.join(args)}: sanitizer report:\n{out}")
    return r.stdout, took


def expect(out, pattern, what):
    if not re.search(pattern, out, re.M):
        fail(f"{what}: /{pattern}/ not in:\n{out}")


def expect_after(out, first, then, what):
    """`then` is on the line right after the line matching `first`."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.search(first, line) and i + 1 < len(lines) and re.search(then, lines[i + 1]):
            return
    fail(f"{what}: no line /{then}/ right after /{first}/ in:\n{out}")


def swaks(gw, client, to, sender):
    argv = [SWAKS, "--server", f"{gw.host}:{gw.port}", "--to", to, "--from", sender,
            "--helo", "client.xpl.test", "--local-interface", client, "--body", "xpl\n"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return r.stdout + r.stderr


def test_dnsbl(cf, gw):
    out, _ = explain(cf, "client=127.0.0.2", "helo=client.xpl.test",
                     "sender=someone@sender.xpl.test", "recipient=user@relay.example",
                     want_rc=1)
    expect(out, r"^DNS: 127\.0\.0\.1:\d+ \(mxgate_dns_servers\), 5000 ms a try, 2 rounds$",
           "the gateway's resolver settings")
    expect(out, r"^  dns: PTR 2\.0\.0\.127\.in-addr\.arpa -> good\.xpl\.test \(ttl \d+\)$",
           "the PTR lookup at connect")
    expect(out, r"^  dns: A good\.xpl\.test -> 127\.0\.0\.2 \(ttl \d+\)$",
           "the confirming lookup")
    expect(out, r"^  => client name good\.xpl\.test \(ok\), reverse name good\.xpl\.test "
           r"\(ok\)$", "a confirmed name")
    expect(out, r"^client good\.xpl\.test\[127\.0\.0\.2\], helo=<client\.xpl\.test>",
           "the session line")
    expect_after(out, r"smtpd_client_restrictions +reject_rbl_client zen\.bl\.test -> REJECT",
                 r"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> 127\.0\.0\.2 \(ttl \d+\)$",
                 "the blocklist's A answer under its restriction")
    expect_after(out, r"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> 127\.0\.0\.2",
                 r'^    dns: TXT 2\.0\.0\.127\.zen\.bl\.test -> "Listed by the xpl test" '
                 r"\(ttl \d+\)$", "the TXT reason")
    reply = ("554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using "
             "zen.bl.test; Listed by the xpl test")
    expect(out, r"^  => " + re.escape(reply) + "$", "the DNSBL reply")
    expect(out, r"^     decided by smtpd_client_restrictions: reject_rbl_client zen\.bl\.test$",
           "what decided")
    # the gateway, on the same configuration, answers a client from that address the same
    got = swaks(gw, "127.0.0.2", "user@relay.example", "someone@sender.xpl.test")
    if reply not in got:
        fail(f"the gateway's reply differs from explain's ({reply}):\n{got}\n{gw.output()}")
    print("explain: DNSBL hit as the gateway answers it")
    return out


def test_names(cf):
    out, _ = explain(cf, "client=127.0.0.3", "helo=client.xpl.test",
                     "sender=someone@sender.xpl.test", "recipient=user@relay.example",
                     want_rc=1)
    expect(out, r"^  dns: PTR 3\.0\.0\.127\.in-addr\.arpa -> forged\.xpl\.test", "PTR")
    expect(out, r"^  dns: A forged\.xpl\.test -> 127\.0\.0\.99 ", "A of the PTR name")
    expect(out, r"^  would log: warning: hostname forged\.xpl\.test does not resolve to "
           r"address 127\.0\.0\.3$", "the gateway's warning")
    expect(out, r"^  => client name unknown \(permanent: the name does not resolve back to "
           r"the address\), reverse name forged\.xpl\.test \(ok\)$", "forged")
    expect_after(out, r"reject_rbl_client zen\.bl\.test -> not listed",
                 r"^    dns: A 3\.0\.0\.127\.zen\.bl\.test -> NXDOMAIN: no such name",
                 "a client not listed")
    expect(out, r"reject_unknown_client_hostname -> REJECT", "the restriction")
    expect(out, r"^  => 550 5\.7\.25 Client host rejected: cannot find your hostname, "
           r"\[127\.0\.0\.3\]$", "permanent: unknown_client_reject_code")
    example_unknown = out
    out, _ = explain(cf, "client=127.0.0.4", "recipient=user@relay.example", want_rc=1)
    expect(out, r"^  dns: PTR 4\.0\.0\.127\.in-addr\.arpa -> NXDOMAIN: no such name",
           "no PTR")
    expect(out, r"^  => client name unknown \(permanent: no name\)", "no name")
    expect(out, r"^  => 550 5\.7\.25 Client host rejected", "permanent")
    out, _ = explain(cf, "client=127.0.0.5", "recipient=user@relay.example", want_rc=1)
    expect(out, r"^  dns: PTR 5\.0\.0\.127\.in-addr\.arpa -> TEMPFAIL \(REFUSED from "
           r"127\.0\.0\.1:\d+\)$", "a refused PTR question")
    expect(out, r"^  => client name unknown \(temporary failure\)", "temporary")
    expect(out, r"^  => 450 4\.7\.25 Client host rejected: cannot find your hostname, "
           r"\[127\.0\.0\.5\]$", "temporary: 450")
    print("explain: the client's name (confirmed, forged, none, temporary failure)")
    return example_unknown


def test_sender_domain(cf):
    out, _ = explain(cf, "client=127.0.0.6", "name=mail.example.org",
                     "sender=someone@nothing.nx.test", "recipient=user@relay.example",
                     want_rc=1)
    expect(out, r"^client mail\.example\.org\[127\.0\.0\.6\]", "name= sets the name")
    if "dns: PTR" in out:
        fail(f"name= given, yet the PTR was asked:\n{out}")
    expect_after(out, r"reject_unknown_sender_domain -> DEFER",
                 r"^    dns: MX nothing\.nx\.test -> NXDOMAIN", "its MX lookup")
    expect(out, r"^  => 450 4\.1\.8 <someone@nothing\.nx\.test>: Sender address rejected: "
           r"Domain not found$", "reject_unknown_sender_domain")
    print("explain: reject_unknown_sender_domain")


def test_policy(cf, pol):
    t0 = len(pol.requests)
    out, _ = explain(cf, "client=127.0.0.6", "name=mail.example.org", "helo=client.xpl.test",
                     "sender=someone@sender.xpl.test", "recipient=reject@relay.example",
                     "recipient=never@relay.example", "recipient=ok@relay.example",
                     want_rc=1)
    port = pol.port
    ep = re.escape(f"inet:127.0.0.1:{port}")
    expect_after(out, rf"check_policy_service {ep} -> REJECT",
                 rf"^    policy {ep} \(timeout 100s, 2 tries\):$", "the exchange")
    expect(out, r"^      > request=smtpd_access_policy$", "the request sent")
    expect(out, r"^      > protocol_state=RCPT$", "the request sent")
    expect(out, r"^      > client_address=127\.0\.0\.6$", "the request sent")
    expect(out, r"^      > client_name=mail\.example\.org$", "the request sent")
    expect(out, r"^      > recipient=reject@relay\.example$", "the request sent")
    expect(out, r"^      < action=REJECT go away, said the xpl policy$", "the reply")
    expect(out, r"^  => 554 5\.7\.1 <reject@relay\.example>: Recipient address rejected: go "
           r"away, said the xpl policy$", "the reply the policy decided")
    expect(out, r"^    policy inet:127\.0\.0\.1:\d+ \(timeout 1s, 1 try\):$",
           "the dead service's settings")
    expect(out, r"^      failed after 1 try: no reply from 127\.0\.0\.1:\d+ within 1 s$",
           "the timeout")
    expect(out, r"^      default action applies \(smtpd_policy_service_default_action\): 451 "
           r"4\.3\.5 Server configuration problem$", "the default action")
    expect(out, r"^  => 451 4\.3\.5 <never@relay\.example>: Recipient address rejected: "
           r"Server configuration problem$", "the default action's reply")
    expect(out, r"^      < action=DUNNO$", "a DUNNO")
    expect(out, r"^RCPT TO:<ok@relay\.example>\n(.*\n)*?  => accepted$", "ok is accepted")
    got = pol.requests[t0:]
    if not any(r.get("recipient") == "reject@relay.example" and
               r.get("client_address") == "127.0.0.6" and
               r.get("sender") == "someone@sender.xpl.test" for r in got):
        fail(f"the policy server did not get the request explain printed: {got}")
    print("explain: check_policy_service (a reply, a timeout and the default action)")
    return out


def test_failures(d, tmpl, servfail, silent):
    cf = os.path.join(d, "servfail.cf")
    with open(cf, "w") as f:
        f.write(tmpl.format(dns=f"127.0.0.1:{servfail.port}"))
    out, _ = explain(cf, "client=127.0.0.2", "name=mail.example.org",
                     "recipient=user@relay.example", want_rc=0)
    sf = rf"SERVFAIL from 127\.0\.0\.1:{servfail.port}"
    expect_after(out, r"reject_rbl_client zen\.bl\.test -> lookup failed: not listed",
                 rf"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> TEMPFAIL \({sf}\)$",
                 "SERVFAIL")
    expect(out, rf"^  would log: warning: 2\.0\.0\.127\.zen\.bl\.test: RBL lookup error: {sf}$",
           "the gateway's warning")
    cf = os.path.join(d, "silent.cf")
    with open(cf, "w") as f:
        f.write(tmpl.format(dns=f"127.0.0.1:{silent.port}"))
    out, took = explain(cf, "client=127.0.0.2", "name=mail.example.org",
                        "recipient=user@relay.example", want_rc=0)
    expect(out, r"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> TEMPFAIL \(timeout\)$", "timeout")
    if took < 9.5:
        fail(f"a question to a silent server ended after {took:.1f} s, before 2 rounds of "
             f"5 s:\n{out}")
    # offline: nothing asked, and it says so
    out, _ = explain(cf, "--no-dns", "client=127.0.0.2", "recipient=user@relay.example",
                     want_rc=0)
    expect(out, r"^DNS: not asked \(--no-dns\)", "--no-dns")
    expect(out, r"^client name: not looked up \(--no-dns\): unknown$", "--no-dns name")
    expect(out, r"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> TEMPFAIL \(not asked: --no-dns\)$",
           "--no-dns lookups")
    print(f"explain: SERVFAIL, a timeout ({took:.1f} s), --no-dns")


def test_no_policy(cf):
    out, _ = explain(cf, "--no-policy", "client=127.0.0.6", "name=mail.example.org",
                     "sender=someone@sender.xpl.test", "recipient=reject@relay.example",
                     want_rc=1)
    expect(out, r"^policy servers: not contacted \(--no-policy\)", "--no-policy")
    expect(out, r"^      failed: not asked: --no-policy$", "--no-policy query")
    expect(out, r"^  => 451 4\.3\.5 <reject@relay\.example>: Recipient address rejected: "
           r"Server configuration problem$", "the default action")
    print("explain: --no-policy")


def test_screen(d, dns_port):
    port = mxtest.free_port()
    master = os.path.join(d, "master-screen.cf")
    with open(master, "w") as f:
        f.write(f"127.0.0.1:{port} inet n - n - 1 postscreen\n"
                "  -o { postscreen_dnsbl_sites = zen.bl.test=127.0.0.[2..11]*2, "
                "nx.test*-1 }\n"
                "  -o postscreen_dnsbl_threshold=2\n"
                "  -o postscreen_dnsbl_action=drop\n"
                "smtpd pass - - n - - smtpd\n")
    gw = mxtest.Gateway(binary, port=port, workers=1, extra_config=(
        f"mxgate_master_file = {master}\nmxgate_dns_servers = 127.0.0.1:{dns_port}\n"
        f"mxgate_table_directory = {d}/tables\npostscreen_greet_wait = 1s\n"
        f"data_directory = {d}\npostscreen_access_list =\n"))
    gw.start()
    try:
        out, _ = explain(gw.config_path, "client=127.0.0.2", "name=unknown", want_rc=1)
        expect(out, rf"^screen \(postscreen\) of service 127\.0\.0\.1:{port}:$", "the service")
        expect(out, r"^  postscreen_access_list: dunno \(the list is empty\)$", "the access list")
        expect(out, r"^    dns: A 2\.0\.0\.127\.zen\.bl\.test -> 127\.0\.0\.2 \(ttl \d+\)$",
               "the DNSBL answer")
        expect(out, r"^    site zen\.bl\.test \(with a filter\), weight 2: listed, the filter "
               r"matched: \+2$", "the listing site")
        expect(out, r"^    site nx\.test, weight -1: not listed$", "the other site")
        expect(out, r"^  DNSBL score 2: postscreen_dnsbl_threshold 2 reached", "the score")
        reply = "521 5.7.1 Service unavailable; client [127.0.0.2] blocked using zen.bl.test"
        expect(out, r"^  client sees: " + re.escape(reply) + "$", "the screen's reply")
        expect(out, r"^  => DNSBL rank 2 -> postscreen_dnsbl_action = drop$", "the verdict")
        # the gateway's screen, for a client from that address
        with socket.create_connection(("127.0.0.1", port), 20,
                                      source_address=("127.0.0.2", 0)) as c:
            c.settimeout(20)
            got = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
        if reply.encode() + b"\r\n" not in got:
            fail(f"the gateway's screen said {got!r}, explain {reply!r}\n{gw.output()}")
        gw.stop()
    finally:
        gw.stop(check=False)
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(gw.dir, ignore_errors=True)
    print("explain: the screen's DNSBL verdict as the gateway's screen gives it")


def main():
    d = tempfile.mkdtemp(prefix="mxgate-xpl-")
    procs = []
    gw = None
    servfail = silent = pol = None
    try:
        dns_port = mxtest.free_port()
        with open(os.path.join(d, "unbound.conf"), "w") as f:
            f.write(unbound_conf(d, dns_port))
        ulog = open(os.path.join(d, "unbound.out"), "wb")
        procs.append(subprocess.Popen([UNBOUND, "-d", "-c", os.path.join(d, "unbound.conf")],
                                      stdout=ulog, stderr=subprocess.STDOUT))
        servfail = DnsResponder(silent=False)
        silent = DnsResponder(silent=True)
        pol = PolicyServer()
        # unbound answers once it is up
        q = struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"\x04good\x03xpl\x04test\x00" + \
            struct.pack(">HH", 1, 1)
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(0.2)
            try:
                s.sendto(q, ("127.0.0.1", dns_port))
                s.recv(512)
                break
            except OSError:
                time.sleep(0.1)
            finally:
                s.close()
        else:
            fail(f"unbound does not answer on port {dns_port}")
        extra = f"""
smtpd_peername_lookup = yes
mxgate_dns_servers = 127.0.0.1:{dns_port}
mynetworks = 192.0.2.0/30
mxgate_table_directory = {d}/tables
unknown_client_reject_code = 550
smtpd_restriction_classes = dead_policy
dead_policy = check_policy_service {{ inet:127.0.0.1:{pol.port}, timeout=1s, try_limit=1 }}
smtpd_client_restrictions = reject_rbl_client zen.bl.test, reject_unknown_client_hostname
smtpd_sender_restrictions = reject_unknown_sender_domain
smtpd_recipient_restrictions = check_recipient_access inline:{{ {{ never@relay.example = dead_policy }} }},
    check_policy_service inet:127.0.0.1:{pol.port}, permit
"""
        gw = mxtest.Gateway(binary, extra_config=extra, workers=1)
        gw.start()
        cf = gw.config_path
        ex_rbl = test_dnsbl(cf, gw)
        ex_unknown = test_names(cf)
        test_sender_domain(cf)
        ex_policy = test_policy(cf, pol)
        test_no_policy(cf)
        tmpl = (
            "myhostname = mx.xpl.test\nrelay_domains = relay.example\n"
            f"mxgate_table_directory = {d}/tables\n"
            "mxgate_dns_servers = {dns}\n"
            "smtpd_client_restrictions = reject_rbl_client zen.bl.test\n")
        test_failures(d, tmpl, servfail, silent)
        test_screen(d, dns_port)
        gw.stop()  # exit 0: a clean shutdown, no sanitizer report
        if os.environ.get("MXGATE_XPL_SHOW"):
            print(ex_rbl, ex_unknown, ex_policy, sep="\n----\n")
    finally:
        if gw:
            gw.stop(check=False)
            if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
                shutil.rmtree(gw.dir, ignore_errors=True)
        for c in (servfail, silent, pol):
            if c:
                c.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(d, ignore_errors=True)
    print("PASS")


main()
