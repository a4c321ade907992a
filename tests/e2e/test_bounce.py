"""What happens to mail the next hop will not take, and where mail goes:

  1. 5xx for one recipient: a delivery status notification (RFC 3464 multipart/report)
     goes to the sender through the relay, the others are delivered, both messages leave
     the spool; NOTIFY=NEVER and the null sender get none (logged)
  2. maximal_queue_lifetime: a recipient that keeps getting 4xx is returned to its sender
     ("status=expired") with a 4.x.x status once the lifetime ran out
  3. transport_maps (a hash table built with mxgate-map): per-domain and per-address next
     hops, error: (bounced with its text), discard:, the relayhost for the rest, and the
     notification itself routed by the table to "the sender's relay"
  4. a real Debian Postfix as next hop refusing one recipient with 550: the DSN reaches
     the sender's relay (fails, naming the package, without Debian's postfix; the
     instance needs root: this part alone is skipped without it)
  5. disk use stays flat while a message is deferred: the spool relocates it forward and
     deletes old segments; after a restart it is still there, intact
  6. two spool directories: both take mail, everything is delivered"""

import email
import email.policy
import os
import re
import shutil
import smtplib
import subprocess

from mxtest import (Gateway, PostfixPeer, ScriptedSmtpServer, binary_from_argv, fail,
                    need_tool, wait_for)

binary = binary_from_argv()
tools = os.path.dirname(os.path.abspath(binary))
spoolcat = os.path.join(tools, "mxgate-spoolcat")
mxgate_map = os.path.join(tools, "..", "mgmt", "mxgate-map")


def relay_config(port, extra=""):
    return (f"relayhost = [127.0.0.1]:{port}\n"
            "minimal_backoff_time = 1s\n"
            "maximal_backoff_time = 2s\n"
            "queue_run_delay = 1s\n"
            "smtp_connect_timeout = 5s\n"
            + extra)


def message(marker, size_hint=0):
    body = b"".join(b"line %06d of the message body, to make it a realistic size\r\n" % i
                    for i in range(size_hint // 60))
    return (f"From: a@client.test\r\nTo: b@relay.example\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@client.test>\r\n\r\n").encode() + body + b"last\r\n"


def send(gw, sender, rcpts, body, rcpt_options=()):
    with smtplib.SMTP(gw.host, gw.port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r, list(rcpt_options))
            if code != 250:
                fail(f"RCPT {r}: {code}")
        code, _ = s.data(body)
        if code != 250:
            fail(f"DATA: {code}")


def listed(gw):
    r = subprocess.run([spoolcat, "-l", gw.spool], capture_output=True, text=True)
    return [l.split()[0] for l in r.stdout.splitlines() if l.strip()]


def dsns(server):
    with server.lock:
        return [t for t in server.transactions if t["mail"] == ""]


def check_report(txn, sender, failed, status_prefix, marker):
    """The notification parses as a multipart/report naming each failed recipient."""
    if txn["rcpts"] != [sender]:
        fail(f"notification to {txn['rcpts']}, expected [{sender}]")
    msg = email.message_from_bytes(txn["data"], policy=email.policy.default)
    if msg.get_content_type() != "multipart/report" or \
            msg.get_param("report-type") != "delivery-status":
        fail(f"not a delivery-status report: {msg['Content-Type']}")
    if "MAILER-DAEMON@mx.test.example" not in str(msg["From"]):
        fail(f"From: {msg['From']}")
    parts = list(msg.iter_parts())
    if len(parts) != 3 or parts[0].get_content_type() != "text/plain" or \
            parts[1].get_content_type() != "message/delivery-status":
        fail(f"parts: {[p.get_content_type() for p in parts]}")
    status = parts[1].as_bytes().decode("utf-8", "replace")
    for addr in failed:
        if f"Final-Recipient: rfc822; {addr}" not in status:
            fail(f"{addr} missing from the delivery status:\n{status}")
    if not re.search(rf"Status: {re.escape(status_prefix)}", status):
        fail(f"no Status: {status_prefix}... in\n{status}")
    if "Action: failed" not in status:
        fail(f"no Action: failed in\n{status}")
    if marker.encode() not in parts[2].as_bytes():
        fail("the original is not returned in the third part")
    return status


# ---- 1. 5xx: a notification to the sender ----
def test_bounce():
    class Server(ScriptedSmtpServer):
        def rcpt_reply(self, addr):
            if addr.startswith("nouser"):
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % addr
            return "250 2.1.5 Ok"

    with Server() as srv, Gateway(binary, relay_config(srv.port)) as gw:
        send(gw, "a@client.test", ["ok@relay.example", "nouser@relay.example"],
             message("bounce-1"))
        wait_for(lambda: dsns(srv), 20, "a notification", gw.output)
        status = check_report(dsns(srv)[0], "a@client.test", ["nouser@relay.example"],
                              "5.1.1", "bounce-1")
        if "Diagnostic-Code: smtp; 550 5.1.1" not in status or "Remote-MTA: dns;" not in status:
            fail(f"no diagnostic from the next hop:\n{status}")
        good = [t for t in srv.transactions if t["mail"] == "a@client.test"]
        if len(good) != 1 or good[0]["rcpts"] != ["ok@relay.example"]:
            fail(f"delivered: {good}")
        wait_for(lambda: not listed(gw), 20, "an empty spool", gw.output)
        log = gw.log()
        if not re.search(r"sender non-delivery notification: [0-9A-Za-z]{13}", log):
            fail("no 'sender non-delivery notification' log line\n" + log[-3000:])
        if "status=bounced" not in log:
            fail("no status=bounced line")

        # NOTIFY=NEVER and the null sender: nobody to tell
        before = len(dsns(srv))
        notified = gw.stats()["relay_notifications"]
        send(gw, "a@client.test", ["nouser2@relay.example"], message("bounce-2"),
             rcpt_options=["NOTIFY=NEVER"])
        send(gw, "", ["nouser3@relay.example"], message("bounce-3"))
        wait_for(lambda: gw.log().count("sender non-delivery notification not sent") >= 2, 20,
                 "two 'not sent' log lines", gw.output)
        wait_for(lambda: not listed(gw), 20, "an empty spool", gw.output)
        # A notification is spooled before its original is retired (relay.h) and is
        # delivered before it leaves the spool: with both originals gone and the spool
        # empty, any notification was made and sent by now, and the counter says so.
        st = gw.stats()
        if st["relay_notifications"] != notified or len(dsns(srv)) != before:
            fail("a notification was sent for NOTIFY=NEVER or the null sender: "
                 f"notifications {notified} -> {st['relay_notifications']}, "
                 f"{len(dsns(srv)) - before} received")
    print("ok   5xx: notification sent, NOTIFY=NEVER and <> get none")


# ---- 2. maximal_queue_lifetime ----
def test_expiry():
    class Server(ScriptedSmtpServer):
        def rcpt_reply(self, addr):
            if addr.startswith("slow"):
                return "451 4.3.0 <%s>: Temporary lookup failure" % addr
            return "250 2.1.5 Ok"

    with Server() as srv, Gateway(binary, relay_config(srv.port,
                                                       "maximal_queue_lifetime = 3s\n")) as gw:
        send(gw, "a@client.test", ["slow@relay.example"], message("expire-1"))
        wait_for(lambda: dsns(srv), 30, "the expiry notification", gw.output)
        check_report(dsns(srv)[0], "a@client.test", ["slow@relay.example"], "4.3.0",
                     "expire-1")
        log = gw.log()
        if "status=expired, returned to sender" not in log:
            fail("no status=expired line\n" + log[-3000:])
        if log.count("status=deferred") < 1:
            fail("expired without a deferred attempt first")
        wait_for(lambda: not listed(gw), 20, "an empty spool", gw.output)
    print("ok   maximal_queue_lifetime: returned with 4.x.x after deferrals")


def build_table(dbdir, text):
    src = os.path.join(dbdir, "..", "transport")
    with open(src, "w") as f:
        f.write(text)
    r = subprocess.run([mxgate_map, "-d", dbdir, f"hash:{src}"], capture_output=True,
                       text=True)
    if r.returncode != 0:
        fail(f"mxgate-map: {r.stdout}{r.stderr}")
    return f"hash:{src}"


# ---- 3. transport_maps ----
def test_transport_maps():
    with ScriptedSmtpServer() as dflt, ScriptedSmtpServer() as a, ScriptedSmtpServer() as b, \
            ScriptedSmtpServer() as senders:
        gw = Gateway(binary, relay_config(dflt.port))
        tables = os.path.join(gw.dir, "tables")
        os.makedirs(tables)
        spec = build_table(tables,
                           f"relay.example smtp:[127.0.0.1]:{a.port}\n"
                           f".relay.example smtp:[127.0.0.1]:{a.port}\n"
                           f"special@relay.example smtp:[127.0.0.1]:{b.port}\n"
                           f"other.example :[127.0.0.1]:{b.port}\n"
                           "nouser@relay.example error:5.1.1 No such user here\n"
                           "gone.example discard:\n"
                           f"client.test smtp:[127.0.0.1]:{senders.port}\n")
        with open(gw.config_path, "a") as f:
            f.write(f"mxgate_table_directory = {tables}\ntransport_maps = {spec}\n"
                    "relay_domains = relay.example, other.example, gone.example, "
                    "sub.relay.example, fallback.example\n")
        with gw:
            send(gw, "a@client.test",
                 ["x@relay.example", "y@sub.relay.example", "special@relay.example",
                  "z@other.example", "nouser@relay.example", "w@gone.example",
                  "v@fallback.example"],
                 message("routes"))
            wait_for(lambda: dsns(senders), 20, "the notification at the sender's relay",
                     gw.output)
            wait_for(lambda: not listed(gw), 20, "an empty spool", gw.output)

            def got(server):
                with server.lock:
                    return sorted(r for t in server.transactions if t["mail"]
                                  for r in t["rcpts"])
            if got(a) != ["x@relay.example", "y@sub.relay.example"]:
                fail(f"relay.example (and its subdomain) went to {got(a)}")
            if got(b) != ["special@relay.example", "z@other.example"]:
                fail(f"special/other went to {got(b)}")
            if got(dflt) != ["v@fallback.example"]:
                fail(f"the relayhost got {got(dflt)}")
            status = check_report(dsns(senders)[0], "a@client.test", ["nouser@relay.example"],
                                  "5.1.1", "routes")
            if "No such user here" not in dsns(senders)[0]["data"].decode("utf-8", "replace"):
                fail("the error: text is not in the notification")
            if "w@gone.example" in status or "status=sent (discarded)" not in gw.log():
                fail("discard: did not report the recipient as delivered")
            # a table change is seen without a restart
            build_table(tables, f"relay.example smtp:[127.0.0.1]:{b.port}\n"
                                f"client.test smtp:[127.0.0.1]:{senders.port}\n")
            send(gw, "a@client.test", ["late@relay.example"], message("routes-2"))
            wait_for(lambda: "late@relay.example" in got(b), 20,
                     "the new route to be used", gw.output)
    print("ok   transport_maps: domain, subdomain, address, error:, discard:, default, "
          "live table change")


# ---- 4. Debian Postfix as next hop refusing a recipient ----
def test_postfix_5xx():
    need_tool("/usr/sbin/postfix")
    if os.geteuid() != 0:
        print("skip part 4: a private Postfix instance needs root (not a missing package)")
        return
    with ScriptedSmtpServer() as senders:
        gw = Gateway(binary, "")
        with PostfixPeer(relayhost="[127.0.0.1]:9", extra_main_cf=(
                "relay_domains = relay.example\n"
                "smtpd_recipient_restrictions = check_recipient_access "
                "inline:{ { bad@relay.example = 550 5.1.1 User unknown in relay recipient table } }, "
                "permit_mynetworks, reject\n"
                "smtpd_client_restrictions = check_client_access inline:{ 127.0.0.1=HOLD }\n"
                "defer_transports = smtp, relay\n")) as pf:
            tables = os.path.join(gw.dir, "tables")
            os.makedirs(tables)
            spec = build_table(tables, f"client.test smtp:[127.0.0.1]:{senders.port}\n")
            with open(gw.config_path, "a") as f:
                f.write(relay_config(pf.smtpd_port) +
                        f"mxgate_table_directory = {tables}\ntransport_maps = {spec}\n")
            with gw:
                send(gw, "a@client.test", ["good@relay.example", "bad@relay.example"],
                     message("postfix-5xx"))
                wait_for(lambda: dsns(senders), 30, "the notification at the sender's relay",
                         lambda: gw.output() + pf.log()[-3000:])
                status = check_report(dsns(senders)[0], "a@client.test",
                                      ["bad@relay.example"], "5.1.1", "postfix-5xx")
                if "Remote-MTA: dns; 127.0.0.1" not in status or \
                        "User unknown in relay recipient table" not in status:
                    fail(f"the Postfix next hop's reply is not in the report:\n{status}")
                wait_for(lambda: "good@relay.example" in pf.queue_listing(), 20,
                         "the good recipient in Postfix's queue", pf.log)
                wait_for(lambda: not listed(gw), 20, "an empty spool", gw.output)
    print("ok   Postfix next hop 550: the DSN reached the sender's relay")


# ---- 5. relocation keeps disk use flat ----
def relocation_run(gw):
    """One stuck message, then ~12 MB of mail that leaves at once: a dozen segments come and
    go, and the stuck message must be moved forward so they can. Returns its queue ID."""
    send(gw, "a@client.test", ["stuck@relay.example"], message("stuck", 20000))
    stuck = listed(gw)
    if len(stuck) != 1:
        fail(f"expected one queued message, got {stuck}")
    for i in range(60):
        send(gw, "a@client.test", ["ok@relay.example"], message(f"flow-{i}", 200000))
    wait_for(lambda: listed(gw) == stuck, 30, "only the stuck message left", gw.output)

    def segs():
        return len(os.listdir(os.path.join(gw.spool, "seg")))
    wait_for(lambda: segs() <= 3, 30, "old segments deleted",
             lambda: f"{segs()} segments\n" + gw.output())
    if "so older segments can be deleted" not in gw.log():
        fail("the stuck message was never relocated\n" + gw.log()[-3000:])
    return stuck[0]


def test_relocation():
    class Server(ScriptedSmtpServer):
        def rcpt_reply(self, addr):
            return "451 4.3.0 try later" if addr.startswith("stuck") else "250 2.1.5 Ok"

    with Server() as srv:
        gw = Gateway(binary, relay_config(srv.port, "mxgate_spool_segment_size = 1048576\n"))
        gw.start()
        try:
            stuck = relocation_run(gw)
        except BaseException:
            gw.stop(check=False)  # a failure must not leave the gateway running
            raise
        gw.stop()
        # after a restart it is still there, whole
        with gw:
            spooled = gw.spooled()
            if len(spooled) != 1 or spooled[0][0] != stuck or \
                    not spooled[0][2].endswith(message("stuck", 20000)):
                fail("the relocated message did not survive the restart intact")
    print("ok   a deferred message is relocated; at most 3 segments remain")


# ---- 6. two spool directories ----
def test_two_spools():
    with ScriptedSmtpServer() as srv:
        gw = Gateway(binary, relay_config(srv.port))
        dirs = [os.path.join(gw.dir, "spool-a"), os.path.join(gw.dir, "spool-b")]
        with open(gw.config_path, "a") as f:
            f.write(f"mxgate_spool_directory = {dirs[0]}, {dirs[1]}\n")
        gw.start()
        for i in range(40):
            send(gw, "a@client.test", ["ok@relay.example"], message(f"two-{i}"))
        wait_for(lambda: len(srv.transactions) == 40, 30, "40 deliveries", gw.output)
        gw.stop()  # the per-spool statistics are logged at shutdown
        log = gw.log()
        shutil.rmtree(gw.dir, ignore_errors=True)
        for d in dirs:
            if f"spool {d} recovered" not in log:
                fail(f"{d} was not opened")
        per = re.findall(r"spool (\d) statistics: committed=(\d+)", log)
        counts = {int(i): int(n) for i, n in per}
        if sum(counts.values()) != 40 or len(counts) != 2 or 0 in counts.values():
            fail(f"commits per spool: {counts}")
    print(f"ok   two spool directories: commits {counts}, all 40 delivered")


test_bounce()
test_expiry()
test_transport_maps()
test_postfix_5xx()
test_relocation()
test_two_spools()
print("all bounce/transport/relocation tests passed")
