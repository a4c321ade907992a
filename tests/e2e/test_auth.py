"""SMTP AUTH through a real Dovecot (argv: mxgate binary, kernel|dpdk).

Both transports: a private Dovecot auth server (dovecotenv.py, passwd-file users) behind
smtpd_sasl_type = dovecot; AUTH PLAIN and LOGIN succeed and relay through
permit_sasl_authenticated, a wrong password gets 535 and Postfix's warning, the queue ID
line carries sasl_method= and sasl_username=, Received: says ESMTPA and, with
smtpd_sasl_authenticated_header, "(Authenticated sender: ...)".

Kernel transport, the usual Postfix split (master.cf as Postfix users write it): port 25
with opportunistic TLS and no AUTH, a submission service with -o
smtpd_tls_security_level=encrypt, smtpd_sasl_auth_enable=yes, smtpd_tls_auth_only=yes and
permit_sasl_authenticated,reject, an smtps service in wrappermode: AUTH is offered only
inside TLS, MAIL before STARTTLS gets 530, an unauthenticated client may not send, a
logged-in one may, over STARTTLS and over implicit TLS ("with ESMTPSA").

Kernel transport, differential against Debian's Postfix (a private instance with the same
SASL and restriction parameters, the same Dovecot): scripted sessions - AUTH PLAIN with and
without an initial response, LOGIN, wrong passwords, "*", bad base64, a mechanism Dovecot
does not offer, AUTH twice, AUTH inside a transaction, AUTH without arguments, MAIL's AUTH=
(one, "<>", two), reject_sender_login_mismatch with smtpd_sender_login_maps (owned, not
owned, not logged in, unowned), check_sasl_access, relaying with and without AUTH - and
every reply must be the same (code, enhanced code and text; the EHLO AUTH line). Each
session comes from its own 127.0.0.x address so that Dovecot's penalty for failures from
one address does not slow the next. Needs root, Dovecot (dovecot-core) and Postfix."""

import base64
import os
import socket
import sys

import mxtest
from dovecotenv import DovecotAuth
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
mxtest.need_root("the AUTH test (Dovecot; Postfix; network namespaces on dpdk)")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool("swaks")
else:
    for tool in ("/usr/sbin/postfix", "/usr/sbin/postqueue", "openssl", "swaks"):
        mxtest.need_tool(tool)
    import tool_packages
    if tool_packages.perl_module_error("Net::SSLeay") is not None:
        tool_packages.fail_missing("Perl module Net::SSLeay, which swaks --tlsc needs",
                                   tool_packages.PERL_MODULES["Net::SSLeay"])

USERS = {"alice@example.org": "secret", "bob": "hunter2"}


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(user, password):
    return b64(f"\0{user}\0{password}")


def policy_cf(socket_path):
    """The parameters both servers get (main.cf syntax)."""
    return (
        "mynetworks = 192.0.2.0/24\n"
        "mydestination =\n"
        "relay_domains = relay.example\n"
        "smtpd_sasl_type = dovecot\n"
        f"smtpd_sasl_path = {socket_path}\n"
        "smtpd_sasl_auth_enable = yes\n"
        "smtpd_sasl_authenticated_header = yes\n"
        "smtpd_sender_login_maps = inline:{ alice@example.org=alice@example.org, "
        "{shared@example.org=alice@example.org, bob} }\n"
        "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
        "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination\n"
        "smtpd_recipient_restrictions = check_sasl_access inline:{ {bob=REJECT bob is "
        "on holiday} }, permit\n"
    )


# ---------------------------------------------------------------------- sessions

# Each session: a list of lines to send, one at a time, each answered before the next.
# EHLO replies are compared by their AUTH and STARTTLS lines only, HELO's by the code (the
# rest differs by design).
SESSIONS = [
    ["EHLO c.example", f"AUTH PLAIN {plain('alice@example.org', 'secret')}",
     "MAIL FROM:<alice@example.org>", "RCPT TO:<x@elsewhere.example>",
     "RCPT TO:<y@relay.example>", "QUIT"],
    ["EHLO c.example", f"AUTH PLAIN {plain('alice@example.org', 'wrong')}",
     "AUTH LOGIN", b64("bob"), b64("hunter2"), "MAIL FROM:<alice@example.org>",
     "RCPT TO:<y@relay.example>", "RSET", "MAIL FROM:<shared@example.org>",
     "RCPT TO:<y@relay.example>", "QUIT"],
    ["EHLO c.example", "MAIL FROM:<alice@example.org>", "RCPT TO:<y@relay.example>",
     "RSET", "MAIL FROM:<nobody@example.org>", "RCPT TO:<y@relay.example>",
     "RCPT TO:<x@elsewhere.example>", "QUIT"],
    ["EHLO c.example", "AUTH", "AUTH CRAM-MD5", "AUTH PLAIN !!!!",
     "AUTH LOGIN", "*", "AUTH PLAIN", "=", "AUTH PLAIN", plain("bob", "hunter2"),
     "AUTH PLAIN " + plain("bob", "hunter2"), "QUIT"],
    ["EHLO c.example", "MAIL FROM:<a@b.example>", f"AUTH PLAIN {plain('bob', 'hunter2')}",
     "RSET", "MAIL FROM:<a@b.example> AUTH=<>", "RSET",
     "MAIL FROM:<a@b.example> AUTH=alice+40example.org AUTH=x", "QUIT"],
    [f"AUTH PLAIN {plain('alice@example.org', 'secret')}", "EHLO c.example",
     "MAIL FROM:<alice@example.org> AUTH=alice+40example.org", "RCPT TO:<y@relay.example>",
     "QUIT"],
    ["EHLO c.example", "AUTH LOGIN " + b64("alice@example.org"), b64("nope"), "QUIT"],
]


class Client:
    def __init__(self, host, port, source):
        self.s = socket.create_connection((host, port), timeout=30, source_address=(source, 0))
        self.buf = b""

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.s.recv(4096)
                if not data:
                    return lines + ["<closed>"]
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if len(text) < 4 or text[3] == " ":
                return lines

    def send(self, line):
        self.s.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.s.close()


def normalise(cmd, lines):
    if cmd.upper().startswith("HELO"):
        return [x[:3] for x in lines]  # "250 HOSTNAME": the names differ by design
    if cmd.upper().startswith("EHLO"):
        return [x[4:] for x in lines if x[4:].upper().startswith(("AUTH", "STARTTLS"))]
    return lines


def run_session(host, port, source, steps):
    c = Client(host, port, source)
    out = [c.reply()[0][:3]]  # the greeting's code only
    for step in steps:
        lines = c.send(step)
        out.append((step, normalise(step, lines)))
        if step == "STARTTLS" and lines and lines[0].startswith("220"):
            break  # TLS from here: not this driver's business
    c.close()
    return out


# ---------------------------------------------------------------------- kernel

def differential(cf, sessions, src, what, after=None):
    """The sessions against mxgate and a private Postfix with the same parameters; every
    reply must be the same. src(i, side): the source address of session i on side 1 or 2.
    after(gw): more checks on the gateway before it stops."""
    gw = mxtest.Gateway(binary, workers=2, extra_config=cf)
    pf = mxtest.PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=cf)
    try:
        gw.start()
        pf.start()
        mismatches = []
        for i, steps in enumerate(sessions):
            mine = run_session("127.0.0.1", gw.port, src(i, 1), steps)
            try:
                theirs = run_session("127.0.0.1", pf.smtpd_port, src(i, 2), steps)
            except OSError as e:
                fail(f"{what} session {i + 1} with Postfix: {e}\n{pf.log()[-3000:]}")
            for a, b in zip(mine[1:], theirs[1:]):
                if a != b:
                    mismatches.append(f"{what} session {i + 1} {a[0]!r}:\n"
                                      f"    mxgate:  {a[1]}\n    postfix: {b[1]}")
        if mismatches:
            fail("replies differ from Postfix's:\n" + "\n".join(mismatches) +
                 f"\n{gw.output()}\n--- postfix log ---\n{pf.log()[-4000:]}")
        if after:
            after(gw)
    finally:
        gw.stop()
        pf.stop()


# STARTTLS before the handshake (each session ends at the 220: the driver speaks no TLS):
# the syntax, AUTH outside TLS with smtpd_tls_auth_only, and the encrypt level's 530.
TLS_SESSIONS = [
    ["EHLO c.example", "STARTTLS now", f"AUTH PLAIN {plain('bob', 'hunter2')}",
     "MAIL FROM:<a@b.example>", "RSET", "STARTTLS"],
    ["HELO c.example", "NOOP", "STARTTLS"],
]
ENCRYPT_SESSIONS = [
    ["EHLO c.example", "MAIL FROM:<a@b.example>", f"AUTH PLAIN {plain('bob', 'hunter2')}",
     "VRFY postmaster", "NOOP", "STARTTLS"],
]


def tls_cf(socket_path, level, directory):
    import subprocess
    crt, key = os.path.join(directory, "mx.crt"), os.path.join(directory, "mx.key")
    if not os.path.exists(crt):
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", crt, "-days", "2", "-subj",
                            "/CN=mx.test.example"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail(f"openssl req failed: {r.stderr}")
        os.chmod(directory, 0o755)
        mxtest.mail_owner_may_read(key)  # reloads read it as mail_owner
    return (policy_cf(socket_path) + f"smtpd_tls_security_level = {level}\n"
            f"smtpd_tls_cert_file = {crt}\nsmtpd_tls_key_file = {key}\n"
            "smtpd_tls_auth_only = yes\n")


def kernel():
    import tempfile
    with DovecotAuth(users=USERS) as d:
        differential(policy_cf(d.socket_path), SESSIONS, lambda i, side: f"127.0.{side}.{i + 1}",
                     "AUTH", after=lambda gw: check_mxgate_side(gw, "127.0.0.1", gw.port,
                                                                 smtplib_client=True))
        certs = tempfile.mkdtemp(prefix="mxgate-auth-certs-")
        differential(tls_cf(d.socket_path, "may", certs), TLS_SESSIONS,
                     lambda i, side: f"127.0.{side + 2}.{i + 1}", "STARTTLS")
        differential(tls_cf(d.socket_path, "encrypt", certs), ENCRYPT_SESSIONS,
                     lambda i, side: f"127.0.{side + 4}.{i + 1}", "encrypt")
        typical_services(d)
    print(f"ok: {len(SESSIONS)} AUTH and {len(TLS_SESSIONS) + len(ENCRYPT_SESSIONS)} "
          "STARTTLS sessions replied as Postfix's, over a real Dovecot; submission "
          "(encrypt, smtpd_tls_auth_only) and smtps (wrappermode) with AUTH")


def check_mxgate_side(gw, host, port, smtplib_client):
    """A delivered message after AUTH: the log line and Received:."""
    import smtplib
    with smtplib.SMTP(host, port, timeout=30, source_address=("127.0.0.9", 0)) as s:
        s.ehlo("c.example")
        s.login("alice@example.org", "secret")
        s.sendmail("alice@example.org", ["z@elsewhere.example"],
                   b"Subject: after AUTH\r\n\r\nhello\r\n")
    mxtest.wait_for(lambda: "sasl_username=alice@example.org" in gw.log(), 10,
                    "the queue ID line with sasl_username", gw.output)
    log = gw.log()
    for want in ("sasl_method=PLAIN, sasl_username=alice@example.org",
                 "warning: unknown[127.0.1.2]: SASL PLAIN authentication failed: "):
        if want not in log:
            fail(f"log line {want!r} missing\n{gw.output()}")
    msgs = [m for m in gw.spooled() if b"Subject: after AUTH" in m[2]]
    if len(msgs) != 1:
        fail(f"the message after AUTH was not spooled once: {len(msgs)}\n{gw.output()}")
    head = msgs[0][2].split(b"\r\n\r\n", 1)[0].decode()
    if "with ESMTPA id" not in head or "(Authenticated sender: alice@example.org)" not in head:
        fail(f"Received: does not show the AUTH:\n{head}")


def typical_services(d):
    """The submission/smtps split of a Postfix site, with TLS (a certificate made here)."""
    import smtplib
    import ssl
    import subprocess
    gw = mxtest.Gateway(binary, workers=2)
    ports = [gw.port, mxtest.free_port(), mxtest.free_port()]
    crt, key = os.path.join(gw.dir, "mx.crt"), os.path.join(gw.dir, "mx.key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", crt, "-days", "2", "-subj", "/CN=mx.test.example"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"openssl req failed: {r.stderr}")
    mxtest.mail_owner_may_read(key)  # reloads read it as mail_owner
    master = os.path.join(gw.dir, "master.cf")
    with open(master, "w") as f:
        f.write(f"127.0.0.1:{ports[0]} inet n - y - - smtpd\n"
                f"127.0.0.1:{ports[1]} inet n - y - - smtpd\n"
                "  -o smtpd_tls_security_level=encrypt\n"
                "  -o smtpd_sasl_auth_enable=yes\n"
                "  -o smtpd_tls_auth_only=yes\n"
                "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
                "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
                f"127.0.0.1:{ports[2]} inet n - y - - smtpd\n"
                "  -o smtpd_tls_wrappermode=yes\n"
                "  -o smtpd_sasl_auth_enable=yes\n"
                "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
                "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n")
    with open(gw.config_path, "a") as f:
        f.write(f"mxgate_master_file = {master}\n"
                "mynetworks = 192.0.2.0/24\n"
                "smtpd_tls_security_level = may\n"
                f"smtpd_tls_cert_file = {crt}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_sasl_type = dovecot\n"
                f"smtpd_sasl_path = {d.socket_path}\n")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        gw.start()
        mxtest.wait_port("127.0.0.1", ports[1])
        with smtplib.SMTP("127.0.0.1", ports[0], timeout=30) as c:
            c.ehlo("c.example")
            if c.has_extn("auth") or not c.has_extn("starttls"):
                fail(f"port 25: STARTTLS without AUTH expected: {c.esmtp_features}")
        with smtplib.SMTP("127.0.0.1", ports[1], timeout=30) as c:
            c.ehlo("c.example")
            if c.has_extn("auth") or not c.has_extn("starttls"):
                fail(f"submission before TLS: STARTTLS without AUTH expected: "
                     f"{c.esmtp_features}")
            code, msg = c.mail("alice@example.org")
            if code != 530 or b"Must issue a STARTTLS command first" not in msg:
                fail(f"submission: MAIL before STARTTLS: {code} {msg}")
            c.starttls(context=ctx)
            c.ehlo("c.example")
            if "PLAIN" not in c.esmtp_features.get("auth", ""):
                fail(f"submission inside TLS: no AUTH PLAIN: {c.esmtp_features}")
            c.mail("alice@example.org")
            code, msg = c.rcpt("x@elsewhere.example")
            if code != 554 or b"Access denied" not in msg:
                fail(f"submission without AUTH: RCPT {code} {msg}")
            c.rset()
            c.login("alice@example.org", "secret")
            c.sendmail("alice@example.org", ["x@elsewhere.example"],
                       b"Subject: submission after AUTH\r\n\r\nhello\r\n")
        with smtplib.SMTP_SSL("127.0.0.1", ports[2], timeout=30, context=ctx) as c:
            c.ehlo("c.example")
            c.login("bob", "hunter2")
            c.sendmail("bob@example.org", ["x@elsewhere.example"],
                       b"Subject: smtps after AUTH\r\n\r\nhello\r\n")
        # swaks on the smtps port: TLS on connect (--tlsc), then AUTH LOGIN
        r = subprocess.run(["swaks", "--tlsc", "--server", f"127.0.0.1:{ports[2]}",
                            "--auth", "LOGIN", "--auth-user", "bob", "--auth-password",
                            "hunter2", "--from", "bob@example.org", "--to",
                            "x@elsewhere.example", "--header", "Subject: swaks tlsc AUTH"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or "235 2.7.0 Authentication successful" not in r.stdout:
            fail(f"swaks --tlsc with AUTH LOGIN failed ({r.returncode}):\n{r.stdout}"
                 f"{r.stderr}\n{gw.output()}")
        got = {}
        for _, _, m in gw.spooled():
            head = m.split(b"\r\n\r\n", 1)[0].decode()
            for subj in ("submission after AUTH", "smtps after AUTH", "swaks tlsc AUTH"):
                if subj in head:
                    got[subj] = head
        for subj, head in sorted(got.items()):
            if "with ESMTPSA id" not in head:
                fail(f"{subj}: Received: does not say ESMTPSA:\n{head}")
        if len(got) != 3:
            fail(f"messages after AUTH over TLS not spooled: {sorted(got)}\n{gw.output()}")
    finally:
        gw.stop()


# ---------------------------------------------------------------------- dpdk

def dpdk():
    topo = netns.Topology(prefix=f"aut{os.getpid() % 10000}").create()
    try:
        with DovecotAuth(users=USERS) as d:
            gw = netns.DpdkGateway(binary, topo, workers=2,
                                   extra_config=policy_cf(d.socket_path))
            try:
                gw.start()
                rc, out = netns.swaks(topo, gw.host, "x@elsewhere.example",
                                      sender="alice@example.org",
                                      extra=("--auth", "PLAIN", "--auth-user",
                                             "alice@example.org", "--auth-password", "secret"))
                if rc != 0 or not netns.swaks_queue_id(out):
                    fail(f"swaks AUTH PLAIN over dpdk failed ({rc}):\n{out}\n{gw.output()}")
                rc, out = netns.swaks(topo, gw.host, "x@elsewhere.example",
                                      sender="shared@example.org",
                                      extra=("--auth", "LOGIN", "--auth-user", "bob",
                                             "--auth-password", "hunter2"))
                # check_sasl_access refuses bob's recipients
                if "235 2.7.0 Authentication successful" not in out or \
                   "554 5.7.1 <bob>: SASL login name rejected: bob is on holiday" not in out:
                    fail(f"swaks AUTH LOGIN over dpdk: no check_sasl_access refusal:\n{out}")
                rc, out = netns.swaks(topo, gw.host, "x@elsewhere.example",
                                      sender="alice@example.org",
                                      extra=("--auth", "PLAIN", "--auth-user",
                                             "alice@example.org", "--auth-password", "no"))
                if "535 5.7.8 Error: authentication failed" not in out:
                    fail(f"a wrong password over dpdk was not refused:\n{out}")
                log = gw.log()
                if "sasl_method=PLAIN, sasl_username=alice@example.org" not in log:
                    fail(f"no sasl_username in the queue ID line\n{gw.output()}")
            finally:
                gw.stop()
    finally:
        topo.destroy()
    print("ok: AUTH PLAIN and LOGIN over the dpdk transport through a real Dovecot")


if transport == "dpdk":
    dpdk()
else:
    kernel()
