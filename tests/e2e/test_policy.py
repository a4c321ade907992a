"""Policy as a postmaster uses it: Postfix restriction lists over tables built with
mxgate-map (hash, cidr, pcre), a local RBL zone from an rbldnsd file, header_checks, and
XCLIENT to act as other clients. Checked from outside: the replies smtplib sees, what the
spool holds (HOLD, FILTER, REDIRECT, BCC, PREPEND, DISCARD, IGNORE), the log lines, and:

  - a table replaced with mxgate-map while sessions run: no session fails, and the new
    answer is seen without a restart;
  - `mxgate --check` refuses restrictions that need DNS, naming the resolver as missing;
  - `mxgate explain` names the list and restriction that decide.
"""

import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from mxtest import Gateway, binary_from_argv, fail, wait_for  # noqa: E402

binary = binary_from_argv()
tools = os.path.dirname(os.path.abspath(binary))
mxgate_map = os.path.join(tools, "..", "mgmt", "mxgate-map")
work = tempfile.mkdtemp(prefix="mxgate-policy-")
tables = os.path.join(work, "tables")
os.makedirs(tables)


def write(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def build(spec, path=None, zone=None, fmt=None):
    if zone:
        cmd = [mxgate_map, "-d", tables, "-z", zone, "-t", fmt, path]
    else:
        cmd = [mxgate_map, "-d", tables, spec] + ([path] if path else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)}: exit {r.returncode}: {r.stdout}{r.stderr}")


senders = write("senders", """\
reject@bad.example      REJECT no mail from you
defer@bad.example       DEFER try later
hold@x.example          HOLD
discard@x.example       DISCARD
filter@x.example        FILTER smtp:[127.0.0.1]:10025
redirect@x.example      REDIRECT quarantine@relay.example
bcc@x.example           BCC archive@relay.example
prepend@x.example       PREPEND X-Policy: tagged
class@x.example         strict
521@x.example           521 5.7.1 go away
hangup@x.example        HANGUP go away quietly
""")
clients = write("clients.cidr", """\
192.0.2.0/28            REJECT
192.0.2.16/28           OK
198.51.100.0/24         DUNNO
""")
helos = write("helo.pcre", """\
/^\\[?\\d+\\.\\d+\\.\\d+\\.\\d+\\]?$/   REJECT numeric HELO
/\\.dynamic\\.example$/                 REJECT dynamic host
""")
zone = write("zone.ip4set", """\
:127.0.0.2:Listed: see https://rbl.test.example/lookup?$
203.0.113.0/24
!203.0.113.7
198.51.100.99 :127.0.0.4:exploited host $
""")
header_checks = write("header_checks", """\
/^Subject:.*viagra/           REJECT spam subject
/^X-Internal:/                IGNORE
/^Subject: (hold me)$/        HOLD held by header $1
""")
build("hash:" + senders, senders)
build("cidr:" + clients, clients)
build("pcre:" + helos, helos)
build(None, zone, zone="rbl.test.example", fmt="ip4set")

config = f"""\
mxgate_table_directory = {tables}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_restriction_classes = strict
strict = reject_unauth_destination, reject
smtpd_client_restrictions = check_client_access cidr:{clients},
    reject_rbl_client rbl.test.example=127.0.0.2
smtpd_helo_restrictions = check_helo_access pcre:{helos}, reject_invalid_helo_hostname
smtpd_sender_restrictions = check_sender_access hash:{senders}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = warn_if_reject reject_rbl_client rbl.test.example=127.0.0.4
header_checks = pcre:{header_checks}
"""


def session(gw, addr, helo, sender, rcpts, body=None, name="client.test.example"):
    """One session as client `addr` (XCLIENT); returns the replies (code, text) of MAIL,
    each RCPT and the message."""
    s = smtplib.SMTP(gw.host, gw.port, timeout=20)
    try:
        s.ehlo("xclient.test.example")
        code, msg = s.docmd("XCLIENT", f"NAME={name} ADDR={addr}")
        if code != 220:
            fail(f"XCLIENT ADDR={addr}: {code} {msg!r}")
        s.ehlo(helo)
        out = [s.docmd("MAIL", f"FROM:<{sender}>")]
        ok = False
        for r in rcpts:
            reply = s.docmd("RCPT", f"TO:<{r}>")
            out.append(reply)
            ok = ok or reply[0] == 250
        if ok and out[0][0] == 250 and body is not None:
            code, msg = s.docmd("DATA")
            if code == 354:
                s.send(body.replace("\n", "\r\n").encode() + b"\r\n.\r\n")
                out.append(s.getreply())
            else:
                out.append((code, msg))
        try:
            s.quit()
        except smtplib.SMTPServerDisconnected:
            pass
        return [(c, m.decode(errors="replace")) for c, m in out]
    finally:
        s.close()


def expect(what, got, code, text=None):
    if got[0] != code or (text is not None and text not in got[1]):
        fail(f"{what}: expected {code} {text or ''}, got {got[0]} {got[1]}")


def hangup_session(gw):
    """HANGUP (Postfix's test feature): the connection closes with no reply to the RCPT
    that met it, and the log says "hangup" as Postfix's log_whatsup() does."""
    import socket
    s = socket.create_connection((gw.host, gw.port), timeout=20)
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline()
            if not line:
                return lines
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    try:
        reply()
        for cmd in (b"EHLO xclient.test.example", b"XCLIENT NAME=client.test.example "
                    b"ADDR=198.51.100.1", b"EHLO mail.test.example",
                    b"MAIL FROM:<hangup@x.example>"):
            s.sendall(cmd + b"\r\n")
            r = reply()
            if not r or r[-1][:1] not in (b"2",):
                fail(f"HANGUP session: {cmd!r} got {r!r}")
        s.sendall(b"RCPT TO:<u@relay.example>\r\n")
        r = reply()
        if r:
            fail(f"HANGUP: the connection should close without a reply, got {r!r}")
    finally:
        s.close()
    wait_for(lambda: "NOQUEUE: hangup: RCPT from client.test.example[198.51.100.1]: "
                    "go away quietly; from=<hangup@x.example> to=<u@relay.example> "
                    "proto=ESMTP helo=<mail.test.example>" in gw.log(), 10,
                    "the hangup log line", gw.log)


MSG = "Subject: hello\nX-Internal: secret\nMessage-ID: <m@test>\n\nbody\n"

with Gateway(binary, extra_config=config) as gw:
    good = "192.0.2.20"  # OK in the cidr table
    # client restrictions (at RCPT: smtpd_delay_reject)
    r = session(gw, "192.0.2.3", "mail.test.example", "a@test.example", ["u@relay.example"])
    expect("cidr REJECT", r[1], 554,
           "5.7.1 <client.test.example[192.0.2.3]>: Client host rejected: Access denied")
    r = session(gw, "203.0.113.5", "mail.test.example", "a@test.example", ["u@relay.example"])
    expect("RBL", r[1], 554, "5.7.1 Service unavailable; Client host [203.0.113.5] blocked "
           "using rbl.test.example; Listed: see https://rbl.test.example/lookup?203.0.113.5")
    r = session(gw, "203.0.113.7", "mail.test.example", "a@test.example", ["u@relay.example"],
                MSG)
    expect("RBL exclusion", r[1], 250)
    # warn_if_reject: logged, not enforced
    r = session(gw, "198.51.100.99", "mail.test.example", "a@test.example",
                ["u@relay.example"], MSG)
    expect("warn_if_reject", r[1], 250)
    # helo
    r = session(gw, good, "[10.1.2.3]", "a@test.example", ["u@relay.example"])
    expect("numeric HELO", r[1], 554, "Helo command rejected: numeric HELO")
    # sender actions
    r = session(gw, "198.51.100.1", "mail.test.example", "reject@bad.example",
                ["u@relay.example"])
    expect("sender REJECT", r[1], 554,
           "5.7.1 <reject@bad.example>: Sender address rejected: no mail from you")
    r = session(gw, "198.51.100.1", "mail.test.example", "defer@bad.example",
                ["u@relay.example"])
    expect("sender DEFER", r[1], 450, "4.7.1 <defer@bad.example>: Sender address rejected")
    r = session(gw, "198.51.100.1", "mail.test.example", "class@x.example",
                ["u@relay.example"])
    expect("restriction class", r[1], 554)
    r = session(gw, "198.51.100.1", "mail.test.example", "521@x.example",
                ["u@relay.example"])
    expect("521", r[1], 521, "5.7.1 <521@x.example>: Sender address rejected: go away")
    hangup_session(gw)
    # relay
    r = session(gw, "198.51.100.1", "mail.test.example", "a@test.example",
                ["u@elsewhere.example"])
    expect("relay", r[1], 554, "5.7.1 <u@elsewhere.example>: Relay access denied")
    # envelope actions reach the spool
    for sender in ("hold@x.example", "filter@x.example", "redirect@x.example",
                   "bcc@x.example", "prepend@x.example", "discard@x.example"):
        r = session(gw, "198.51.100.1", "mail.test.example", sender, ["u@relay.example"], MSG)
        expect(sender, r[-1], 250, "Ok: queued as")
    # header_checks
    r = session(gw, good, "mail.test.example", "a@test.example", ["u@relay.example"],
                "Subject: cheap VIAGRA\n\nbody\n")
    expect("header_checks REJECT", r[-1], 550, "5.7.1 spam subject")
    r = session(gw, good, "mail.test.example", "a@test.example", ["u@relay.example"],
                "Subject: hold me\n\nbody\n")
    expect("header_checks HOLD", r[-1], 250)

    # Each 250 above came after its message was committed, DISCARD's too had it been
    # spooled: the writer's count is final. Nine 250s, eight messages (not the discard).
    st = gw.stats()
    if st["spool_committed"] != 8:
        fail(f"expected 8 messages committed (9 accepted, 1 discarded): {st}")
    spooled = gw.spooled()
    by_sender = {env["sender"]: (env, msg) for _, env, msg in spooled}
    log = gw.log()
    if "discard@x.example" in by_sender:
        fail("a DISCARDed message reached the spool")
    env, msg = by_sender.get("hold@x.example", (None, None))
    if not env or "hold" not in env:
        fail(f"HOLD did not reach the envelope: {env}")
    env, msg = by_sender.get("filter@x.example", (None, None))
    if not env or env.get("filter") != "smtp:[127.0.0.1]:10025":
        fail(f"FILTER did not reach the envelope: {env}")
    env, msg = by_sender.get("redirect@x.example", (None, None))
    if not env or [r for r in env["rcpt"]] != ["quarantine@relay.example"]:
        fail(f"REDIRECT did not replace the recipients: {env}")
    env, msg = by_sender.get("bcc@x.example", (None, None))
    if not env or env["rcpt"] != ["u@relay.example", "archive@relay.example"]:
        fail(f"BCC did not add the recipient: {env}")
    env, msg = by_sender.get("prepend@x.example", (None, None))
    if not env or not msg.startswith(b"X-Policy: tagged\r\nReceived: "):
        fail(f"PREPEND did not put the header first: {msg[:200] if msg else msg}")
    if b"X-Internal" in msg:
        fail("header_checks IGNORE left the header in the message")
    if b"Message-ID: <m@test>" not in msg:
        fail("a header header_checks did not touch is missing")
    held = [env for _, env, _ in spooled if env["sender"] == "a@test.example" and "hold" in env]
    if not held or "held by header hold me" not in held[0]["hold"]:
        fail(f"header_checks HOLD with $1 did not reach the envelope: {held}")
    for line in ("reject_warning: RCPT from client.test.example[198.51.100.99]: 554 5.7.1 "
                 "Service unavailable; Client host [198.51.100.99] blocked using "
                 "rbl.test.example; exploited host 198.51.100.99",
                 "hold: RCPT from client.test.example[198.51.100.1]: <hold@x.example>: "
                 "Sender address triggers HOLD action",
                 "NOQUEUE: reject: RCPT from client.test.example[192.0.2.3]: 554 5.7.1 "
                 "<client.test.example[192.0.2.3]>: Client host rejected: Access denied"):
        if line not in log:
            fail(f"log lacks {line!r}:\n{log[-4000:]}")

    # A table replaced under load: every session of the load passes (its sender is OK in
    # both versions), and the changed key answers the new way without a restart.
    stop = threading.Event()
    errors, done = [], [0]

    def load():
        while not stop.is_set():
            try:
                r = session(gw, good, "mail.test.example", "steady@x.example",
                            ["u@relay.example"], MSG)
                if r[-1][0] != 250:
                    errors.append(r)
                done[0] += 1
            except Exception as e:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    base = open(senders).read()
    try:
        for i in range(20):
            verdict = "REJECT flipped" if i % 2 == 0 else "OK"
            with open(senders, "w") as f:
                f.write(base + f"steady@x.example OK\nflip@x.example {verdict}\n")
            build("hash:" + senders, senders)
            time.sleep(0.05)
            r = session(gw, good, "mail.test.example", "flip@x.example", ["u@relay.example"])
            want = 554 if i % 2 == 0 else 250
            if r[1][0] != want:
                fail(f"after rebuild {i} flip@x.example got {r[1]}, expected {want}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        fail(f"{len(errors)} of {done[0]} sessions failed while the table was replaced: "
             f"{errors[:3]}")
    if done[0] < 20:
        fail(f"only {done[0]} sessions ran during the replacement")
    print(f"table replaced 20 times under load: {done[0]} sessions, none failed")

# mxgate --check accepts DNS restrictions when a resolver is configured (issue 13), and
# refuses what needs more than DNS, naming why
cf = write("dns.cf", "myhostname = mx.test.example\nmxgate_dns_servers = 127.0.0.1\n"
           "smtpd_client_restrictions = reject_unknown_client_hostname\n")
r = subprocess.run([binary, "--check", "-c", cf], capture_output=True, text=True)
if r.returncode != 0:
    fail(f"--check refused a DNS restriction: exit {r.returncode} {r.stdout}{r.stderr}")
cf = write("verify.cf", "myhostname = mx.test.example\n"
           "smtpd_sender_restrictions = reject_unverified_sender\n")
r = subprocess.run([binary, "--check", "-c", cf], capture_output=True, text=True)
if r.returncode == 0 or "reject_unverified_sender" not in r.stderr or \
        "verification" not in r.stderr:
    fail(f"--check accepted reject_unverified_sender: exit {r.returncode} {r.stdout}{r.stderr}")

# mxgate explain names the deciding list and restriction (--no-dns: the machine's resolver
# is not the test's, so the client's name is not looked up; test_explain.py covers DNS)
cf = write("explain.cf", "myhostname = mx.test.example\nrelay_domains = relay.example\n"
           "mynetworks = 127.0.0.0/8\n" + config)
r = subprocess.run([binary, "explain", "-c", cf, "--no-dns", "client=192.0.2.3", "helo=mail.test.example",
                    "sender=a@test.example", "recipient=u@relay.example"],
                   capture_output=True, text=True)
if r.returncode != 1 or "smtpd_client_restrictions" not in r.stdout or \
        "554 5.7.1 <unknown[192.0.2.3]>: Client host rejected: Access denied" not in r.stdout:
    fail(f"explain: exit {r.returncode}:\n{r.stdout}{r.stderr}")
r = subprocess.run([binary, "explain", "-c", cf, "--no-dns", "client=192.0.2.20",
                    "helo=mail.test.example", "sender=hold@x.example",
                    "recipient=u@relay.example"], capture_output=True, text=True)
if r.returncode != 0 or "message would be held" not in r.stdout:
    fail(f"explain (hold): exit {r.returncode}:\n{r.stdout}{r.stderr}")
print("policy: restrictions, zones, actions, header_checks, live table change, --check, "
      "explain: ok")
