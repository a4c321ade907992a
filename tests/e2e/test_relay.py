"""The relay: accepted mail leaves the gateway for relayhost and is retired only after
the next hop said 250 for each recipient.

  1. a real Debian Postfix as next hop: messages arrive byte-exact in its queue
     (held there, read back with postcat), the spool empties, old segments are deleted
  2. next hop down for a while: messages wait (status=deferred), arrive once it is up,
     nothing lost, nothing duplicated
  3. next hop answering 4xx then 250: retried with backoff, delivered once
  4. 5xx for one recipient: that one is bounced (logged; a delivery status notification
     goes to the sender, then the message is removed), the others delivered, and a restart
     sends nothing again
  5. kill -9 in the middle of a delivery: after the restart only recipients not yet
     confirmed are sent to, and a message whose final reply never came is sent again
  6. smtp-sink with a delay before its DATA reply as a slow next hop (throughput printed)
  7. LMTP (LHLO, one reply per recipient)
Needs Debian's postfix (parts 1 and 6: without it the test fails, naming the package) and,
for the Postfix instance of part 1, root (without it part 1 alone is skipped, saying so)."""

import os
import re
import shutil
import signal
import smtplib
import subprocess
import time

from mxtest import (Gateway, PostfixPeer, ScriptedSmtpServer, binary_from_argv, fail,
                    free_port, need_tool, wait_for)

binary = binary_from_argv()
spoolcat = os.path.join(os.path.dirname(os.path.abspath(binary)), "mxgate-spoolcat")


def relay_config(port, extra=""):
    return (f"relayhost = [127.0.0.1]:{port}\n"
            "minimal_backoff_time = 1s\n"
            "maximal_backoff_time = 2s\n"
            "queue_run_delay = 1s\n"
            "default_destination_concurrency_limit = 4\n"
            "smtp_connect_timeout = 5s\n"
            + extra)


def send(gw, sender, rcpts, body, mail_options=()):
    with smtplib.SMTP(gw.host, gw.port, timeout=30) as s:
        s.ehlo("client.test")
        s.sendmail(sender, rcpts, body, mail_options=list(mail_options))


def message(marker, extra=b""):
    return (f"From: a@client.test\r\nTo: b@relay.example\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@client.test>\r\n"
            "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\n").encode() + \
        b"body line\r\n.leading dot\r\n..two dots\r\n" + extra + b"last\r\n"


def removed_ids(gw):
    return set(re.findall(r"([0-9A-Za-z]{13}): removed", gw.log()))


def states(gw):
    out = subprocess.run([spoolcat, "-s", gw.spool], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"mxgate-spoolcat -s: {out.stderr}")
    return [l.split() for l in out.stdout.splitlines()]


def segments(gw):
    return sorted(os.listdir(os.path.join(gw.spool, "seg")))


def marker_of(data):
    m = re.search(rb"Subject: (\S+)", data)
    return m.group(1).decode() if m else None


# ---- 1. Debian Postfix as the next hop ----
def test_postfix():
    for tool in ("/usr/sbin/postfix", "/usr/sbin/postcat"):
        need_tool(tool)
    if os.geteuid() != 0:
        print("skip part 1: a private Postfix instance needs root (not a missing package)")
        return
    # Postfix accepts for relay.example and HOLDs everything, so each message stays in
    # its queue to be compared byte for byte.
    pf = PostfixPeer(relayhost="[127.0.0.1]:9",
                     extra_main_cf="relay_domains = relay.example\n"
                                   "smtpd_client_restrictions = check_client_access "
                                   "static:HOLD\n")
    with pf:
        gw = Gateway(binary, extra_config=relay_config(pf.smtpd_port))
        # Run 1: Postfix is there; three messages, one with two recipients.
        gw.start()
        if True:
            sent = {}
            for i in range(3):
                marker = f"pfx-{i}-{time.time_ns()}"
                rcpts = ["one@relay.example"] + (["two@relay.example"] if i == 1 else [])
                body = message(marker, b"\xc3\xa9t\xc3\xa9 8bit\r\n" if i == 2 else b"")
                send(gw, "sender@client.test", rcpts, body,
                     ("BODY=8BITMIME",) if i == 2 else ())
                sent[marker] = (rcpts, body)
            wait_for(lambda: len(removed_ids(gw)) == 3, 60, "3 messages removed",
                     lambda: gw.output() + pf.log())
            log = gw.log()
            for marker, (rcpts, body) in sent.items():
                for r in rcpts:
                    if not re.search(rf"to=<{r}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                                     rf"{pf.smtpd_port}, delay=[0-9.]+, "
                                     r"delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=2\.0\.0, "
                                     r"status=sent \(250 2\.0\.0 Ok: queued as \w+\)", log):
                        fail(f"no status=sent line for {r}:\n{log}")
            pids = re.findall(r"status=sent \(250 2\.0\.0 Ok: queued as (\w+)\)", log)
            got = {}
            for pid in set(pids):
                r = subprocess.run(["/usr/sbin/postcat", "-c", pf.conf, "-bh", "-q", pid],
                                   capture_output=True)
                if r.returncode != 0:
                    fail(f"postcat {pid}: {r.stderr!r}\n{pf.log()}")
                got[marker_of(r.stdout)] = r.stdout
            for marker, (rcpts, body) in sent.items():
                if marker not in got:
                    fail(f"{marker} is not in Postfix's queue: {list(got)}")
                # Postfix stores lines without CR; its own Received: comes first, then
                # exactly what the gateway accepted (ours first, then the client's).
                want = body.replace(b"\r\n", b"\n")
                if not got[marker].endswith(want):
                    fail(f"{marker} changed in transit:\n{got[marker]!r}\nwant tail\n{want!r}")
                if b"Received: from client.test" not in got[marker]:
                    fail(f"{marker}: the gateway's Received: header is missing")
            if gw.spooled():
                fail(f"spool not empty after delivery: {gw.spooled()}")
        gw.stop()
        # Reclaim: every restart starts a fresh segment; delivered ones are deleted, so
        # the spool stays at the current segment however many messages went through.
        for cycle in range(3):
            gw.start()
            if True:
                marker = f"cycle-{cycle}-{time.time_ns()}"
                send(gw, "sender@client.test", ["one@relay.example"], message(marker))
                wait_for(lambda: len(removed_ids(gw)) >= 4 + cycle, 60, "delivery",
                         gw.output)
                wait_for(lambda: len(segments(gw)) == 1, 10, "old segments deleted",
                         lambda: f"{segments(gw)}\n{gw.output()}")
            gw.stop()
        if "delivered segment(s) removed" not in gw.log():
            fail("no reclaim logged")
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(gw.dir, ignore_errors=True)
    print("ok: relay through Debian Postfix, byte-exact, segments reclaimed")


# ---- 2. next hop down for a while ----
def test_down_then_up():
    port = free_port()
    with Gateway(binary, extra_config=relay_config(port)) as gw:
        markers = [f"down-{i}-{time.time_ns()}" for i in range(5)]
        for m in markers:
            send(gw, "s@client.test", ["x@relay.example", "y@relay.example"], message(m))
        # Two rounds of deferrals (5 messages x 2 recipients each): every message was
        # tried again after its first deferral, so each had its chance to be wrongly
        # retired; none may have been.
        refused = ("status=deferred (connect to 127.0.0.1[127.0.0.1]:"
                   f"{port}: Connection refused)")
        wait_for(lambda: gw.log().count(refused) >= 20, 30, "two rounds of deferrals",
                 gw.output)
        st = gw.stats()
        if st["relay_removed"] != 0 or st["relay_queued"] != 5 or len(gw.spooled()) != 5:
            fail(f"messages left the spool while the next hop was down: {st}\n"
                 f"{gw.output()}")
        with ScriptedSmtpServer(port=port) as srv:
            wait_for(lambda: len(removed_ids(gw)) == 5, 60, "delivery after the next hop came up",
                     gw.output)
            got = sorted(marker_of(t["data"]) for t in srv.received())
            if got != sorted(markers):
                fail(f"lost or duplicated: {got} vs {markers}")
            for t in srv.received():
                if t["rcpts"] != ["x@relay.example", "y@relay.example"]:
                    fail(f"recipients wrong: {t}")
                if b"\r\n.leading dot\r\n..two dots\r\n" not in t["data"]:
                    fail(f"dot-stuffing wrong: {t['data']!r}")
            pipelined = [c for c in srv.commands if c.startswith(("MAIL", "RCPT", "DATA"))]
            if not pipelined:
                fail("no commands seen")
        if gw.spooled():
            fail("spool not empty")
    print("ok: next hop down, then up: delivered once each")


# ---- 3. 4xx, then 250 ----
class Flaky(ScriptedSmtpServer):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def rcpt_reply(self, addr):
        if addr not in self.seen:
            self.seen.add(addr)
            return "451 4.3.0 <%s>: try again later" % addr
        return "250 2.1.5 Ok"


def test_4xx_then_250():
    with Flaky() as srv, Gateway(binary, extra_config=relay_config(srv.port)) as gw:
        marker = f"flaky-{time.time_ns()}"
        send(gw, "s@client.test", ["a@relay.example", "b@relay.example"], message(marker))
        wait_for(lambda: len(removed_ids(gw)) == 1, 60, "delivery after 4xx", gw.output)
        log = gw.log()
        if "dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.3.0 " \
           "<a@relay.example>: try again later (in reply to RCPT TO command))" not in log:
            fail(f"deferral not logged:\n{log}")
        got = srv.received()
        if len(got) != 1 or got[0]["rcpts"] != ["a@relay.example", "b@relay.example"]:
            fail(f"expected one delivery to both: {got}")
    print("ok: 4xx then 250")


# ---- 4. 5xx for one recipient ----
class RejectOne(ScriptedSmtpServer):
    def rcpt_reply(self, addr):
        if addr.startswith("bad"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr
        return "250 2.1.5 Ok"


def test_5xx_one():
    with RejectOne() as srv:
        gw = Gateway(binary, extra_config=relay_config(srv.port))
        gw.start()
        if True:
            marker = f"reject-{time.time_ns()}"
            send(gw, "s@client.test", ["good@relay.example", "bad@relay.example",
                                       "fine@relay.example"], message(marker))
            wait_for(lambda: "status=bounced" in gw.log() and "status=sent" in gw.log(), 30,
                     "bounce", gw.output)
            log = gw.log()
            if not re.search(r"to=<bad@relay\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                             r"delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, "
                             r"dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1"
                             r"\[127\.0\.0\.1\] said: 550 5\.1\.1 <bad@relay\.example>: "
                             r"Recipient address rejected: User unknown \(in reply to RCPT TO "
                             r"command\)\)", log):
                fail(f"bounce not logged Postfix-style:\n{log}")
            # the notification goes to the sender (through the same next hop here), and
            # only then is the message removed
            wait_for(lambda: [t for t in srv.received() if t["mail"] == ""], 20,
                     "the delivery status notification", gw.output)
            dsn = [t for t in srv.received() if t["mail"] == ""][0]
            if dsn["rcpts"] != ["s@client.test"] or b"bad@relay.example" not in dsn["data"]:
                fail(f"notification: {dsn}")
            wait_for(lambda: len(removed_ids(gw)) == 2, 20, "both messages removed",
                     gw.output)
            got = [t for t in srv.received() if t["mail"] != ""]
            if len(got) != 1 or got[0]["rcpts"] != ["good@relay.example", "fine@relay.example"]:
                fail(f"expected one delivery to the two good recipients: {got}")
            if states(gw):
                fail(f"spoolcat -s still lists recipients: {states(gw)}")
        # After a restart nothing is sent again: every recipient was confirmed or
        # returned to the sender.
        gw.stop()
        n = len(srv.received())
        with gw:
            # Recovery runs before the gateway listens and hands the relay every message
            # with a recipient still pending: with none queued, nothing can be sent again.
            st = gw.stats()
            if st["relay_queued"] != 0 or st["relay_sent"] != 0:
                fail(f"the restart queued mail again: {st}\n{gw.output()}")
            if len(srv.received()) != n:
                fail(f"sent again after restart: {srv.received()[n:]}")
    print("ok: 5xx for one recipient: bounced and returned to the sender, others delivered")


# ---- 5. kill -9 in the middle ----
class PartThenHang(ScriptedSmtpServer):
    """First connection: 250 for a@, 451 for the rest. Later: 250, but the final reply
    to the data of `hang` messages never comes (the gateway is killed meanwhile)."""

    def __init__(self):
        super().__init__()
        self.phase = 1

    def rcpt_reply(self, addr):
        if self.phase == 1 and not addr.startswith("a@"):
            return "451 4.3.0 later"
        return "250 2.1.5 Ok"


def test_kill9():
    srv = PartThenHang().start()
    gw = Gateway(binary, extra_config=relay_config(srv.port, "minimal_backoff_time = 60s\n"
                                                             "maximal_backoff_time = 60s\n"))
    gw.start()
    marker = f"kill-{time.time_ns()}"
    send(gw, "s@client.test", ["a@relay.example", "b@relay.example", "c@relay.example"],
         message(marker))
    wait_for(lambda: len(srv.received()) == 1, 30, "partial delivery", gw.output)
    wait_for(lambda: ["sent", "pending", "pending"] == [s[2] for s in states(gw)], 10,
             "the sent recipient recorded", lambda: f"{states(gw)}\n{gw.output()}")
    # a second message whose final reply hangs: killed before it is confirmed
    srv.phase = 2
    srv.data_delay = 30
    marker2 = f"hang-{time.time_ns()}"
    send(gw, "s@client.test", ["h@relay.example"], message(marker2))
    wait_for(lambda: any(c.startswith("RCPT TO:<h@") for c in srv.commands), 30,
             "the second delivery under way", gw.output)
    # its data is all at the next hop, whose final reply is 30 s away (the first
    # message's data was the first to end)
    wait_for(lambda: srv.data_ends >= 2, 30, "the second delivery's data sent", gw.output)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    gw.proc = None
    gw.stderr.close()
    srv.stop()

    srv2 = ScriptedSmtpServer(port=srv.port).start()
    try:
        with gw:
            wait_for(lambda: len(removed_ids(gw)) == 2, 60, "delivery after restart",
                     gw.output)
            got = {marker_of(t["data"]): t["rcpts"] for t in srv2.received()}
            if got.get(marker) != ["b@relay.example", "c@relay.example"]:
                fail(f"after restart, {marker} went to {got.get(marker)} (a@ was confirmed)")
            if got.get(marker2) != ["h@relay.example"]:
                fail(f"unconfirmed {marker2} not sent again: {got}")
            if len(srv2.received()) != 2:
                fail(f"unexpected deliveries: {srv2.received()}")
    finally:
        srv2.stop()
    print("ok: kill -9 mid-delivery: nothing lost, confirmed recipients not sent again")


# ---- 6. smtp-sink as a slow next hop ----
def test_slow_sink():
    sink = need_tool("/usr/sbin/smtp-sink")
    port = free_port()
    # -w 1: wait a second before answering DATA; up to 20 connections
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    proc = subprocess.Popen([sink, *user, "-w", "1", f"127.0.0.1:{port}", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with Gateway(binary, extra_config=relay_config(port)) as gw:
            n = 16
            t0 = time.monotonic()
            for i in range(n):
                send(gw, "s@client.test", ["r@relay.example"], message(f"sink-{i}"))
            wait_for(lambda: len(removed_ids(gw)) == n, 120, "delivery to smtp-sink",
                     gw.output)
            dt = time.monotonic() - t0
            # 4 connections, 1 s per message each: about n/4 s, never n s serially
            if dt > n * 0.75:
                fail(f"{n} messages took {dt:.1f} s: no parallel delivery")
            print(f"info: {n} messages through smtp-sink -w 1 with 4 connections in "
                  f"{dt:.1f} s")
    finally:
        proc.kill()
        proc.wait()
    print("ok: slow next hop")


# ---- 7. LMTP: one reply per recipient after the data ----
def test_lmtp():
    with ScriptedSmtpServer(lmtp=True) as srv, \
            Gateway(binary, extra_config=relay_config(srv.port, "mxgate_relay_protocol = lmtp\n")) as gw:
        marker = f"lmtp-{time.time_ns()}"
        body = message(marker, b"caf\xc3\xa9 8bit\r\n")
        send(gw, "s@client.test", ["l1@relay.example", "l2@relay.example"], body,
             ("BODY=8BITMIME",))
        wait_for(lambda: len(removed_ids(gw)) == 1, 30, "LMTP delivery", gw.output)
        # SIZE (offered) and BODY=8BITMIME (declared and offered) are passed on
        params = srv.received()[0]["params"] if srv.received() else []
        if "BODY=8BITMIME" not in params or not any(p.startswith("SIZE=") for p in params):
            fail(f"MAIL parameters not passed on: {params}")
        if not srv.received()[0]["data"].endswith(body):
            fail(f"LMTP data changed: {srv.received()[0]['data']!r}")
        if not any(c.startswith("LHLO mx.test.example") for c in srv.commands):
            fail(f"no LHLO: {srv.commands}")
        got = srv.received()
        if len(got) != 1 or got[0]["rcpts"] != ["l1@relay.example", "l2@relay.example"]:
            fail(f"LMTP delivery wrong: {got}")
        if gw.log().count("status=sent") != 2:
            fail(f"want one status=sent per recipient:\n{gw.log()}")
    print("ok: LMTP")


test_lmtp()
test_down_then_up()
test_4xx_then_250()
test_5xx_one()
test_kill9()
test_slow_sink()
test_postfix()
print("ok: relay")
