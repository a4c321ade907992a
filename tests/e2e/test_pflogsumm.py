"""pflogsumm (Debian's package) reads the gateway's log as it reads Postfix's, and its report
says what happened: a scripted day of traffic, with the test's own ledger of every message
and recipient, then pflogsumm's Grand Totals, per-domain tables and reject reasons compared
with the ledger, number by number.

The day, as users and the internet would send it (smtplib; XCLIENT gives each session the
address of a client on the internet):
  - messages from several sender domains to several recipient domains, relayed to a next hop
    (a scripted SMTP server) that takes most recipients (status=sent), answers 450 for some
    (deferred) and 550 for others (bounced: a delivery status notification goes back to the
    sender, delivered too);
  - recipients in a domain whose next hop (transport_maps) is down: deferred;
  - recipients refused at RCPT by different restrictions: reject_unauth_destination (Relay
    access denied), check_recipient_access and check_sender_access (hash tables),
    reject_rbl_client (a local zone built with mxgate-map); a message refused after DATA by
    header_checks (cleanup's "reject: header" line);
The day runs twice: once logging to maillog_file (pflogsumm --syslog-name=mxgate), once to
syslog, through a datagram socket the test binds (mxgate_syslog_socket) as a syslog daemon
would, with syslog_name = gw-in; the test writes what it receives as rsyslog writes
/var/log/mail.log, and pflogsumm --syslog-name=gw-in reads that. Each datagram must be
"<PRI>Mmm dd hh:mm:ss gw-in/PROCESS[pid]: text" with PRI mail.info (22) or mail.warning (20).

Needs Debian's pflogsumm (fails, naming the package, without it). Kernel transport: the log
lines are the same on dpdk.
"""

import os
import re
import shutil
import socket
import smtplib
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from mxtest import (Gateway, ScriptedSmtpServer, binary_from_argv, fail, free_port,  # noqa: E402
                    need_tool, wait_for)

binary = binary_from_argv()
pflogsumm = need_tool("/usr/sbin/pflogsumm")
tools = os.path.dirname(os.path.abspath(binary))
mxgate_map = os.path.join(tools, "..", "mgmt", "mxgate-map")


class NextHop(ScriptedSmtpServer):
    """The site's MTA behind the gateway: busy* mailboxes are over quota for now (450),
    nouser* do not exist (550), everyone else gets the mail."""

    def rcpt_reply(self, addr):
        local = addr.split("@")[0]
        if local.startswith("busy"):
            return f"450 4.2.2 <{addr}>: Mailbox full, try again later"
        if local.startswith("nouser"):
            return f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
        return "250 2.1.5 Ok"


# What each recipient meets, and how pflogsumm names a refusal in its reject detail.
SENT, DEFERRED, BOUNCED = "sent", "deferred", "bounced"
REJECT_REASONS = {
    "relay": "Relay access denied",
    "rcpt_access": "Recipient address rejected: Access denied",
    "sender_access": "Sender address rejected: no mail from you",
    "rbl": "blocked using rbl.test.example",
    "header": "header",   # cleanup's header_checks REJECT: pflogsumm names it by the part
}
SPAM_SUBJECT = "cheap viagra"  # header_checks REJECT

CLEAN = ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
LISTED = "203.0.113.9"   # in the RBL zone


def expected_outcome(client, sender, rcpt):
    """The ledger's rule for one recipient: what the gateway's configuration below does
    with it (a refusal reason key, or the relay's outcome)."""
    domain = rcpt.split("@")[1]
    local = rcpt.split("@")[0]
    # smtpd_delay_reject: the client, sender, relay and recipient restrictions all speak
    # at RCPT, in that order
    if client == LISTED:
        return "reject:rbl"
    if sender.endswith("@bad.example"):
        return "reject:sender_access"
    if domain not in ("example.net", "example.org", "example.com", "down.example"):
        return "reject:relay"
    if rcpt == "blocked@example.net":
        return "reject:rcpt_access"
    if domain == "down.example":
        return DEFERRED
    if local.startswith("busy"):
        return DEFERRED
    if local.startswith("nouser"):
        return BOUNCED
    return SENT


# The day: (client address, sender, recipients). Senders' domains vary; every recipient
# domain appears more than once.
DAY = [
    (CLEAN[0], "alice@client.test", ["bob@example.net"]),
    (CLEAN[0], "alice@client.test", ["carol@example.net", "dave@example.org"]),
    (CLEAN[1], "news@lists.example", ["bob@example.net", "erin@example.org",
                                      "frank@example.com"]),
    (CLEAN[1], "news@lists.example", ["nouser1@example.org", "grace@example.org"]),
    (CLEAN[2], "billing@shop.example", ["busy1@example.com"]),
    (CLEAN[2], "billing@shop.example", ["heidi@down.example", "ivan@example.net"]),
    (CLEAN[0], "alice@client.test", ["judy@down.example"]),
    (CLEAN[0], "alice@client.test", ["someone@elsewhere.test", "bob@example.net"]),
    (CLEAN[1], "mallory@bad.example", ["bob@example.net", "carol@example.net"]),
    (CLEAN[2], "billing@shop.example", ["blocked@example.net", "oscar@example.com"]),
    (LISTED, "promo@spam.example", ["bob@example.net"]),
    (LISTED, "promo@spam.example", ["carol@example.net", "dave@example.org"]),
    (CLEAN[1], "news@lists.example", ["nouser2@example.net"]),
    (CLEAN[2], "ops@client.test", ["peggy@example.com", "busy2@example.org",
                                   "trent@example.com"]),
    (CLEAN[0], "alice@client.test", ["victor@nowhere.test"]),
    (CLEAN[2], "billing@shop.example", ["bob@example.net", "dave@example.org"], SPAM_SUBJECT),
    (CLEAN[1], "news@lists.example", ["erin@example.org"]),
]


class Ledger:
    def __init__(self):
        self.received = 0           # messages that got a queue ID (client= lines)
        self.queued = 0             # of them, those the gateway took (250 after DATA)
        self.sent = []              # recipient addresses delivered, DSN recipients too
        self.deferred_rcpts = []    # one deferral each (the retry is hours away)
        self.deferred_msgs = 0
        self.bounced = []
        self.rejects = {}           # reason key -> count
        self.senders = set()        # of received messages
        self.dsns = 0
        self.received_by_domain = {}
        self.sizes_min = 0          # bytes the clients sent (the gateway adds Received:)

    def record(self, client, sender, outcomes, accepted, size, header_reject=False):
        for rcpt, out in outcomes:
            if out.startswith("reject:"):
                key = out.split(":", 1)[1]
                self.rejects[key] = self.rejects.get(key, 0) + 1
        if not accepted:
            return
        self.received += 1      # pflogsumm counts client= lines: the ID came at RCPT
        if header_reject:
            # refused after DATA: one reject, nothing queued (no qmgr line: not among
            # the senders or the received bytes)
            self.rejects["header"] = self.rejects.get("header", 0) + 1
            return
        self.queued += 1
        self.sizes_min += size
        self.senders.add(sender)
        dom = sender.split("@")[1]
        self.received_by_domain[dom] = self.received_by_domain.get(dom, 0) + 1
        kept = [(r, o) for r, o in outcomes if not o.startswith("reject:")]
        self.sent += [r for r, o in kept if o == SENT]
        self.bounced += [r for r, o in kept if o == BOUNCED]
        deferred = [r for r, o in kept if o == DEFERRED]
        self.deferred_rcpts += deferred
        self.deferred_msgs += 1 if deferred else 0
        # the notification goes once nothing is pending: a message with a recipient
        # still deferred keeps its bounced ones for the notification that comes later
        if any(o == BOUNCED for _, o in kept) and not deferred:
            self.dsns += 1
            self.sent.append(sender)

    def delivered_by_domain(self):
        out = {}
        for r in self.sent:
            d = r.split("@")[1]
            out[d] = out.get(d, 0) + 1
        return out

    def defers_by_domain(self):
        out = {}
        for r in self.deferred_rcpts:
            d = r.split("@")[1]
            out[d] = out.get(d, 0) + 1
        return out


def build(tables, spec, path):
    r = subprocess.run([mxgate_map, "-d", tables, spec + path], capture_output=True,
                       text=True)
    if r.returncode != 0:
        fail(f"mxgate-map {spec}{path}: {r.stdout}{r.stderr}")


def zone(tables, path):
    r = subprocess.run([mxgate_map, "-d", tables, "-z", "rbl.test.example", "-t", "ip4set",
                        path], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"mxgate-map -z: {r.stdout}{r.stderr}")


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def gateway_config(work, hop_port, dead_port):
    tables = os.path.join(work, "tables")
    os.makedirs(tables, exist_ok=True)
    senders = write(work, "senders", "bad.example REJECT no mail from you\n")
    rcpts = write(work, "recipients", "blocked@example.net REJECT\n")
    transport = write(work, "transport", f"down.example smtp:[127.0.0.1]:{dead_port}\n")
    checks = write(work, "header_checks", f"/^Subject: {SPAM_SUBJECT}$/ REJECT spam subject\n")
    rbl = write(work, "rbl.ip4set", ":127.0.0.2:Listed, see https://rbl.test.example/$\n"
                                    "203.0.113.0/24\n")
    build(tables, "hash:", senders)
    build(tables, "hash:", rcpts)
    build(tables, "hash:", transport)
    zone(tables, rbl)
    return (f"mxgate_table_directory = {tables}\n"
            "smtpd_authorized_xclient_hosts = 127.0.0.0/8\n"
            "relay_domains = example.net, example.org, example.com, down.example\n"
            "smtpd_client_restrictions = reject_rbl_client rbl.test.example\n"
            f"smtpd_sender_restrictions = check_sender_access hash:{senders}\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
            f"smtpd_recipient_restrictions = check_recipient_access hash:{rcpts}\n"
            f"header_checks = regexp:{checks}\n"
            f"relayhost = [127.0.0.1]:{hop_port}\n"
            f"transport_maps = hash:{transport}\n"
            # a deferred recipient is tried once in the test's day: the retry is an hour
            # away, so the ledger knows how many deferrals pflogsumm must count
            "minimal_backoff_time = 3600s\n"
            "maximal_backoff_time = 7200s\n"
            "queue_run_delay = 1s\n"
            "smtp_connect_timeout = 5s\n")


def run_day(gw):
    """Send the day through the gateway; return the ledger. Each session says it comes
    from its client address (XCLIENT), as the internet's clients would."""
    ledger = Ledger()
    for n, (client, sender, rcpts, *subject) in enumerate(DAY):
        outcomes = [(r, expected_outcome(client, sender, r)) for r in rcpts]
        spam = subject == [SPAM_SUBJECT]
        subject = subject[0] if subject else f"day message {n}"
        body = (f"From: {sender}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
                f"Message-ID: <day-{n}-{time.monotonic_ns()}@{sender.split('@')[1]}>\r\n"
                "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
                + f"message {n} of the day\r\n" * 5)
        s = smtplib.SMTP(gw.host, gw.port, timeout=30)
        try:
            s.ehlo("xclient.test")
            code, msg = s.docmd("XCLIENT", f"NAME=host{n}.clients.example ADDR={client}")
            if code != 220:
                fail(f"XCLIENT: {code} {msg!r}")
            s.ehlo(f"host{n}.clients.example")
            code, msg = s.docmd("MAIL", f"FROM:<{sender}>")
            if code != 250:
                fail(f"MAIL FROM:<{sender}> from {client}: {code} {msg!r}")
            accepted = False
            for r, want in outcomes:
                code, msg = s.docmd("RCPT", f"TO:<{r}>")
                if want.startswith("reject:"):
                    reason = REJECT_REASONS[want.split(":", 1)[1]]
                    if code // 100 != 5:
                        fail(f"RCPT TO:<{r}> from {client} sender {sender}: expected a "
                             f"refusal ({reason}), got {code} {msg!r}")
                elif code != 250:
                    fail(f"RCPT TO:<{r}> from {client}: expected 250, got {code} {msg!r}")
                else:
                    accepted = True
            if accepted:
                code, msg = s.docmd("DATA")
                if code != 354:
                    fail(f"DATA: {code} {msg!r}")
                s.send(body.encode() + b".\r\n")
                code, msg = s.getreply()
                if code != (550 if spam else 250):
                    fail(f"end of data (Subject: {subject}): {code} {msg!r}")
            s.quit()
        finally:
            s.close()
        ledger.record(client, sender, outcomes, accepted, len(body), header_reject=spam)
    return ledger


def wait_settled(gw, read_log, ledger):
    """Until the log shows every outcome of the day: each delivery, deferral and bounce,
    and each finished message removed."""
    finished = ledger.queued - ledger.deferred_msgs + ledger.dsns

    def counts():
        log = read_log()
        return (len(re.findall(r"status=sent ", log)), len(re.findall(r"status=deferred ", log)),
                len(re.findall(r"status=bounced ", log)), len(re.findall(r": removed$", log,
                                                                           re.M)))
    want = (len(ledger.sent), len(ledger.deferred_rcpts), len(ledger.bounced), finished)
    wait_for(lambda: counts() == want, 60, f"the day's outcomes (sent, deferred, bounced, "
             f"removed) = {want}", lambda: f"seen {counts()}\n{read_log()[-5000:]}")


def run_pflogsumm(path, name):
    if not os.path.getsize(path):
        fail(f"{path} is empty")
    r = subprocess.run([pflogsumm, f"--syslog-name={name}", "--problems-first", path],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"pflogsumm failed ({r.returncode}): {r.stderr}")
    return r.stdout


def section(report, title):
    """The lines of a report section, from its title to the next blank-line-separated
    title (a line followed by a line of dashes)."""
    lines = report.splitlines()
    for i, l in enumerate(lines):
        if l.strip() == title and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            out = []
            for j in range(i + 2, len(lines)):
                if j + 1 < len(lines) and lines[j + 1].strip() and \
                        set(lines[j + 1].strip()) == {"-"} and lines[j].strip():
                    break
                out.append(lines[j])
            return out
    fail(f"pflogsumm's report has no section {title!r}:\n{report}")


def grand_totals(report):
    """Grand Totals: name -> number ("received", "delivered", "deferred", "deferrals",
    "bounced", "rejected", "senders", "sending hosts/domains", "recipients", "recipient
    hosts/domains", "bytes received"...)."""
    out = {}
    for l in section(report, "Grand Totals"):
        m = re.match(r"^\s*(\d+)([km]?)\s+([a-z][a-z /]*?)\s*"
                     r"(?:\((\d+)\s+deferrals\)|\(\d+%\))?\s*$", l)
        if m:
            n = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2)]
            out[m.group(3)] = n
            if m.group(4):
                out["deferrals"] = int(m.group(4))
    return out


def domain_table(report, title):
    """A Host/Domain Summary table: domain -> list of its numeric columns (k and m suffixes
    left as written)."""
    out = {}
    for l in section(report, title):
        cols = l.split()
        if len(cols) >= 2 and re.match(r"^\d", cols[0]) and not cols[-1].startswith("-"):
            out[cols[-1]] = cols[:-1]
    return out


def reject_detail(report):
    """message reject detail: reason -> total."""
    out = {}
    for l in section(report, "message reject detail"):
        m = re.match(r"^\s+(.+?) \(total: (\d+)\)\s*$", l)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def check_report(report, ledger, where):
    problems = []

    def same(what, got, want):
        if got != want:
            problems.append(f"{what}: pflogsumm says {got}, the ledger {want}")

    gt = grand_totals(report)
    same("received", gt.get("received"), ledger.received)
    same("delivered", gt.get("delivered"), len(ledger.sent))
    same("forwarded", gt.get("forwarded"), 0)
    same("deferred", gt.get("deferred"), ledger.deferred_msgs)
    same("deferrals", gt.get("deferrals", 0), len(ledger.deferred_rcpts))
    same("bounced", gt.get("bounced"), len(ledger.bounced))
    same("rejected", gt.get("rejected"), sum(ledger.rejects.values()))
    same("senders", gt.get("senders"), len(ledger.senders))
    same("sending hosts/domains", gt.get("sending hosts/domains"),
         len({s.split("@")[1] for s in ledger.senders}))
    same("recipients", gt.get("recipients"), len(set(ledger.sent)))
    same("recipient hosts/domains", gt.get("recipient hosts/domains"),
         len({r.split("@")[1] for r in ledger.sent}))
    if not gt.get("bytes received", 0) >= ledger.sizes_min:
        problems.append(f"bytes received {gt.get('bytes received')} < the {ledger.sizes_min} "
                        "bytes the clients sent")

    # per recipient domain: delivered and deferrals
    dlv = domain_table(report, "Host/Domain Summary: Message Delivery")
    want_sent, want_defers = ledger.delivered_by_domain(), ledger.defers_by_domain()
    for dom in sorted(set(want_sent) | set(want_defers) | set(dlv)):
        cols = dlv.get(dom)
        if cols is None:
            problems.append(f"delivery table: no row for {dom}")
            continue
        same(f"delivered to {dom}", int(cols[0]), want_sent.get(dom, 0))
        same(f"deferrals to {dom}", int(cols[2]), want_defers.get(dom, 0))
    # per sender domain: messages received
    rcv = domain_table(report, "Host/Domain Summary: Messages Received")
    same("sender domains received from", {d: int(c[0]) for d, c in rcv.items()},
         ledger.received_by_domain)
    # reject reasons
    want_rej = {REJECT_REASONS[k]: n for k, n in ledger.rejects.items()}
    same("reject reasons", reject_detail(report), want_rej)
    # a quiet day: no warning, and master's section holds only starting and stopping
    # (the gateway's statistics are mgmt's, not master's)
    for quiet in ("Warnings: none", "Fatal Errors: none", "Panics: none"):
        if quiet not in report:
            problems.append(f"no {quiet!r}")
    master = [re.sub(r"^\s*\d+\s+", "", l) for l in section(report, "Master daemon messages")
              if l.strip()]
    if len(master) != 3 or not all(m.startswith(("mxgate 0", "mxgate stopped",
                                                  "terminating on signal 15"))
                                   for m in master):
        problems.append(f"Master daemon messages: {master}")
    if problems:
        fail(f"{where}: pflogsumm's report differs from the ledger:\n  " +
             "\n  ".join(problems) + f"\n--- report ---\n{report}")
    return gt


def summary(gt, ledger, where):
    reasons = ", ".join(f"{REJECT_REASONS[k]}: {n}" for k, n in sorted(ledger.rejects.items()))
    print(f"ok   {where}: pflogsumm = ledger: received {gt['received']}, delivered "
          f"{gt['delivered']} ({ledger.dsns} of them notifications), deferred "
          f"{gt['deferred']} ({gt.get('deferrals', 0)} deferrals), bounced {gt['bounced']}, "
          f"rejected {gt['rejected']} ({reasons}), "
          f"senders {gt['senders']} from {gt['sending hosts/domains']} domains, recipients "
          f"{gt['recipients']} in {gt['recipient hosts/domains']} domains")


def test_maillog_file():
    with NextHop() as hop:
        gw = Gateway(binary, workers=2)
        with open(gw.config_path, "a") as f:
            f.write(gateway_config(gw.dir, hop.port, free_port()))
        gw.start()   # not "with gw": that removes the directory with the log
        try:
            ledger = run_day(gw)
            wait_settled(gw, gw.log, ledger)
        finally:
            gw.stop()
        report = run_pflogsumm(gw.maillog, "mxgate")
        gt = check_report(report, ledger, "maillog_file")
        summary(gt, ledger, "maillog_file")
        shutil.rmtree(gw.dir, ignore_errors=True)


class SyslogDaemon:
    """A datagram socket where a syslog daemon's /dev/log would be: each datagram is
    checked and written as rsyslog writes mail.log ("Mmm dd hh:mm:ss HOST TAG: text")."""

    HEAD = re.compile(r"^<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) "
                      r"(gw-in/[a-z]+)\[(\d+)\]: (.*)$", re.S)

    def __init__(self, path, out):
        self.path = path
        self.out = out
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.bad = []
        self.pris = {}
        self.procs = set()
        self.lines = []
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        with open(self.out, "w") as f:
            while not self.stop:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                text = data.decode("utf-8", "replace")
                m = self.HEAD.match(text)
                if not m or "\n" in text:
                    with self.lock:
                        self.bad.append(text)
                    continue
                pri, stamp, proc, pid, msg = m.groups()
                line = f"{stamp} testhost {proc}[{pid}]: {msg}"
                with self.lock:
                    self.pris[int(pri)] = self.pris.get(int(pri), 0) + 1
                    self.procs.add(proc)
                    self.lines.append(line)
                f.write(line + "\n")
                f.flush()

    def log(self):
        with self.lock:
            return "\n".join(self.lines)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_syslog():
    with NextHop() as hop:
        gw = Gateway(binary, workers=2)
        sock = os.path.join(gw.dir, "devlog")
        mail_log = os.path.join(gw.dir, "mail.log")
        daemon = SyslogDaemon(sock, mail_log)
        with open(gw.config_path) as f:
            conf = f.read()
        # no maillog_file: syslog, as Postfix does
        conf = re.sub(r"^maillog_file = .*\n", "", conf, flags=re.M)
        with open(gw.config_path, "w") as f:
            f.write(conf + gateway_config(gw.dir, hop.port, free_port()) +
                    f"mxgate_syslog_socket = {sock}\nsyslog_name = gw-in\n"
                    "syslog_facility = mail\n")
        try:
            gw.start()
            try:
                ledger = run_day(gw)
                wait_settled(gw, daemon.log, ledger)
                if os.path.exists(gw.maillog):
                    fail("a maillog_file was written although none is configured")
            finally:
                gw.stop()
            # the gateway exited: every line it logged was sent before it did
            wait_for(lambda: "mxgate stopped" in daemon.log(), 10, "the gateway's last line")
        finally:
            daemon.close()
        if daemon.bad:
            fail(f"datagrams not in syslog(3)'s form: {daemon.bad[:5]}")
        # mail.info for the informational lines, mail.warning at most for the rest
        if not daemon.pris.get(2 * 8 + 6) or set(daemon.pris) - {22, 20, 19}:
            fail(f"syslog priorities: {daemon.pris}")
        want_procs = {"gw-in/smtpd", "gw-in/cleanup", "gw-in/qmgr", "gw-in/smtp",
                      "gw-in/bounce", "gw-in/master", "gw-in/mgmt"}
        if not want_procs <= daemon.procs:
            fail(f"program names: {sorted(daemon.procs)}, want at least {sorted(want_procs)}")
        report = run_pflogsumm(mail_log, "gw-in")
        gt = check_report(report, ledger, "syslog")
        summary(gt, ledger, "syslog")
        shutil.rmtree(gw.dir, ignore_errors=True)


if __name__ == "__main__":
    test_maillog_file()
    test_syslog()
