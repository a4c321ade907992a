"""mxgate-queue: the operator's queue tool against a real gateway whose next hop answers
4xx, so mail stays queued.

While the gateway runs (through its control socket):
  1. list: mailq's format, every message with its deferral reason and pending recipients
  2. hold: '!' in the listing, and the relay leaves the message alone even on a flush
  3. delete: gone from the listing and from the spool (mxgate-spoolcat), never delivered
  4. requeue and flush ID: a deferred message is tried at once (the backoff is an hour)
  5. show: envelope records and the message, as postcat -q
  6. release: the held message is delivered
  7. bad IDs, unknown IDs, usage: postsuper's exit statuses
With the gateway stopped (on the spool directly):
  8. list, show, hold, delete work; requeue and flush refuse; the gateway started again
     honours the hold and never delivers the deleted message."""

import os
import re
import smtplib
import stat
import subprocess

from mxtest import Gateway, ScriptedSmtpServer, binary_from_argv, fail, wait_for

binary = binary_from_argv()
bindir = os.path.dirname(os.path.abspath(binary))
queue_tool = os.path.join(bindir, "mxgate-queue")
spoolcat = os.path.join(bindir, "mxgate-spoolcat")
if not os.access(queue_tool, os.X_OK):
    fail(f"{queue_tool} is not built")

HEADING = "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"


class NextHop(ScriptedSmtpServer):
    """Answers 450 to every recipient while .defer is set, 250 after."""

    def __init__(self):
        super().__init__()
        self.defer = True

    def rcpt_reply(self, addr):
        return "450 4.2.0 <%s>: mailbox busy, try later" % addr if self.defer else "250 2.1.5 Ok"

    def attempts(self, sender):
        """MAIL commands seen for this sender (each is a delivery attempt)."""
        with self.lock:
            return sum(1 for c in self.commands
                       if c.upper().startswith("MAIL FROM:") and f"<{sender}>" in c)

    def delivered(self, sender):
        return [t for t in self.received() if t["mail"] == sender]


def config(port):
    # An hour of backoff: a message tried again within the test was requeued or flushed.
    return (f"relayhost = [127.0.0.1]:{port}\n"
            "minimal_backoff_time = 3600s\n"
            "maximal_backoff_time = 7200s\n"
            "queue_run_delay = 1s\n"
            "smtp_connect_timeout = 5s\n")


def send(gw, sender, rcpts, subject):
    body = (f"From: {sender}\r\nTo: {rcpts[0]}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@client.test>\r\n\r\nbody of {subject}\r\n"
            ".leading dot\r\n").encode()
    with smtplib.SMTP(gw.host, gw.port, timeout=30) as s:
        s.ehlo("client.test")
        s.sendmail(sender, rcpts, body)


def tool(gw, *args, want=0):
    r = subprocess.run([queue_tool, "-c", gw.config_path, *args], capture_output=True,
                       text=True, timeout=60)
    if want is not None and r.returncode != want:
        fail(f"mxgate-queue {' '.join(args)}: exit {r.returncode}, want {want}\n"
             f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}\n{gw.output()}")
    for line in (r.stdout + r.stderr).splitlines():
        if re.fullmatch(r"status \d", line):
            fail(f"the protocol's status line leaked into the output: {r.stdout}{r.stderr}")
    return r


def parse_list(out):
    """mailq output -> {id: {"status": ch, "size": n, "sender": s, "reasons": [...],
    "rcpts": [...]}} after checking the layout line by line."""
    lines = out.split("\n")
    if out.strip() == "Mail queue is empty":
        return {}
    if lines[0] != HEADING:
        fail(f"bad heading {lines[0]!r}\n{out}")
    m = re.fullmatch(r"-- (\d+) Kbytes in (\d+) Requests?\.", lines[-2])
    if not m or lines[-1] != "" or lines[-3] != "":
        fail(f"bad footer:\n{out}")
    msgs, cur = {}, None
    total = 0
    for line in lines[1:-3]:
        if line == "":
            cur = None
            continue
        head = re.fullmatch(r"([0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{13})([ *!]) +(\d+) "
                            r"(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d)  (\S+)", line)
        if head:
            if cur is not None:
                fail(f"no blank line between messages:\n{out}")
            cur = {"status": head.group(2), "size": int(head.group(3)),
                   "sender": head.group(5), "reasons": [], "rcpts": []}
            msgs[head.group(1)] = cur
            total += cur["size"]
            continue
        if cur is None:
            fail(f"line outside a message: {line!r}\n{out}")
        reason = re.fullmatch(r" *\((.*)\)", line)
        if reason:
            cur["reasons"].append(reason.group(1))
            # showq right-aligns a reason that fits in 78 columns
            want_len = max(len(reason.group(1)) + 2, 78)
            if len(line) != want_len:
                fail(f"reason not aligned as showq aligns it: {line!r}")
            continue
        rcpt = re.fullmatch(" {41}(\\S+)", line)
        if not rcpt:
            fail(f"unexpected line {line!r}\n{out}")
        cur["rcpts"].append(rcpt.group(1))
    if int(m.group(2)) != len(msgs) or int(m.group(1)) != total // 1024:
        fail(f"footer does not match the messages:\n{out}")
    return msgs


def by_sender(msgs, sender):
    ids = [i for i, v in msgs.items() if v["sender"] == sender]
    if len(ids) != 1:
        fail(f"want one message from {sender}, got {ids}")
    return ids[0]


def spool_ids(gw):
    r = subprocess.run([spoolcat, "-l", gw.spool], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"mxgate-spoolcat -l: {r.stderr}")
    return {l.split()[0] for l in r.stdout.splitlines()}


def expect(cond, what, diag=""):
    if not cond:
        fail(f"{what}\n{diag}")


def settled(gw, n):
    """n messages listed, none in a delivery attempt ('*'), each one not held with its
    deferral reason recorded: the relay is done with them until their backoff ends."""
    msgs = parse_list(tool(gw, "list").stdout)
    return len(msgs) == n and all(m["status"] == "!" or (m["status"] == " " and m["reasons"])
                                  for m in msgs.values())


def main():
    hop = NextHop()
    with hop:
        gw = Gateway(binary, extra_config=config(hop.port))
        gw.start()
        sock = os.path.join(gw.spool, "control")
        st = os.stat(sock)
        expect(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
               f"control socket {sock} mode {oct(st.st_mode)}")

        senders = [f"s{i}@client.test" for i in range(4)]
        send(gw, senders[0], ["a0@relay.example", "b0@relay.example"], "msg0")
        for i in range(1, 4):
            send(gw, senders[i], [f"a{i}@relay.example"], f"msg{i}")
        wait_for(lambda: all(hop.attempts(s) >= 1 for s in senders)
                 and gw.log().count("status=deferred") >= 5 and settled(gw, 4), 30,
                 "a first, deferred attempt of each message", gw.output)

        # ---- 1. list ----
        out = tool(gw, "list").stdout
        msgs = parse_list(out)
        expect(len(msgs) == 4, "four messages listed", out)
        ids = [by_sender(msgs, s) for s in senders]
        expect(ids == sorted(ids), "listed in arrival order", out)
        for i, qid in enumerate(ids):
            m = msgs[qid]
            expect(m["status"] == " ", f"{qid}: neither active nor held", out)
            want = ["a0@relay.example", "b0@relay.example"] if i == 0 else [f"a{i}@relay.example"]
            expect(m["rcpts"] == want, f"{qid}: pending recipients {want}", out)
            expect(m["reasons"] and "try later" in m["reasons"][0]
                   and "450" in m["reasons"][0], f"{qid}: the deferral reason", out)
        listed = set(ids)

        # ---- 2. hold ----
        r = tool(gw, "hold", ids[1])
        expect(r.stderr == f"mxgate-queue: {ids[1]}: placed on hold\n"
               "mxgate-queue: Placed on hold: 1 message\n", "postsuper -h's messages", r.stderr)
        r = tool(gw, "hold", ids[1])
        expect(r.stderr == "mxgate-queue: Placed on hold: 0 messages\n",
               "holding a held message changes nothing", r.stderr)
        msgs = parse_list(tool(gw, "list").stdout)
        expect(msgs[ids[1]]["status"] == "!", "held message shown with '!'", str(msgs))
        expect(all(msgs[i]["status"] != "!" for i in ids if i != ids[1]), "only it is held")

        # ---- 3. delete ----
        r = tool(gw, "delete", ids[2])
        expect(r.stderr == f"mxgate-queue: {ids[2]}: removed\nmxgate-queue: Deleted: 1 message\n",
               "postsuper -d's messages", r.stderr)
        msgs = parse_list(tool(gw, "list").stdout)
        expect(ids[2] not in msgs and len(msgs) == 3, "deleted message gone from the list",
               str(msgs))
        expect(ids[2] not in spool_ids(gw) and ids[0] in spool_ids(gw),
               "deleted message gone from the spool (mxgate-spoolcat -l)")

        # A probe for the flush of everything in part 4: deferred like the others, so
        # within its hour of backoff only a flush tries it again.
        probe = "probe@client.test"
        send(gw, probe, ["probe@relay.example"], "probe")
        wait_for(lambda: hop.attempts(probe) >= 1 and settled(gw, 4), 30,
                 "the probe's first, deferred attempt", gw.output)

        # ---- 4. requeue / flush: tried now, though the backoff is an hour ----
        hop.defer = False
        held_attempts = hop.attempts(senders[1])
        r = tool(gw, "requeue", ids[0])
        expect(r.stderr == f"mxgate-queue: {ids[0]}: requeued\nmxgate-queue: Requeued: 1 message\n",
               "postsuper -r's messages", r.stderr)
        wait_for(lambda: hop.delivered(senders[0]), 10, "the requeued message delivered",
                 gw.output)
        expect(sorted(hop.delivered(senders[0])[0]["rcpts"]) ==
               ["a0@relay.example", "b0@relay.example"], "both recipients delivered")
        expect(not hop.delivered(senders[3]), "only the requeued message was tried")
        r = tool(gw, "flush", ids[3])
        expect(r.stdout == "" and r.stderr == "", "postqueue -i is silent", r.stdout + r.stderr)
        wait_for(lambda: hop.delivered(senders[3]), 10, "the flushed message delivered",
                 gw.output)
        # a flush of everything leaves the held one alone: the flush queues the deferred
        # probe and, were the hold ignored, the held message (which arrived first, so it
        # would be tried first) in the same pass; the probe's delivery shows the pass ran
        expect(not hop.delivered(probe), "the probe waits for the flush")
        tool(gw, "flush")
        wait_for(lambda: hop.delivered(probe), 10, "the probe delivered by the flush",
                 gw.output)
        expect(hop.attempts(senders[1]) == held_attempts and not hop.delivered(senders[1]),
               "the held message was not tried", gw.output())
        wait_for(lambda: list(parse_list(tool(gw, "list").stdout)) == [ids[1]], 10,
                 "only the held message left", gw.output)
        msgs = parse_list(tool(gw, "list").stdout)
        expect(msgs[ids[1]]["status"] == "!", "the message left is held", str(msgs))

        # ---- 5. show ----
        r = tool(gw, "show", ids[1])
        out = r.stdout
        expect(out.startswith(f"*** ENVELOPE RECORDS {ids[1]} ***\n"), "postcat's first line", out)
        for want in ("message_size: ", "message_arrival_time: ",
                     "named_attribute: client_address=127.0.0.1\n",
                     f"sender: {senders[1]}\n", "original_recipient: a1@relay.example\n",
                     "recipient: a1@relay.example\n",
                     f"*** MESSAGE CONTENTS {ids[1]} ***\n", "Subject: msg1\n",
                     "\nbody of msg1\n.leading dot\n",
                     f"*** HEADER EXTRACTED {ids[1]} ***\n"):
            expect(want in out, f"show: {want!r}", out)
        expect(out.endswith(f"*** MESSAGE FILE END {ids[1]} ***\n"), "postcat's last line", out)
        expect("\r" not in out, "lines shown with LF as postcat shows them", repr(out))
        r = tool(gw, "show", ids[0], want=1)
        expect(f"{ids[0]}: no such message" in r.stdout + r.stderr, "delivered: not found")

        # ---- 6. release ----
        r = tool(gw, "release", ids[1])
        expect(r.stderr == f"mxgate-queue: {ids[1]}: released from hold\n"
               "mxgate-queue: Released from hold: 1 message\n", "postsuper -H's messages",
               r.stderr)
        # released messages are tried at once (no flush needed)
        wait_for(lambda: hop.delivered(senders[1]), 10, "the released message delivered",
                 gw.output)
        wait_for(lambda: tool(gw, "list").stdout == "Mail queue is empty\n", 10,
                 "an empty queue")
        expect(not hop.delivered(senders[2]), "the deleted message was never delivered")

        # ---- 7. statuses ----
        r = tool(gw, "hold", "bogus-id", want=1)
        expect("mxgate-queue: warning: invalid mail queue id: bogus-id" in r.stderr,
               "invalid ID warned about", r.stderr)
        r = tool(gw, "delete", ids[1], want=1)
        expect(f"{ids[1]}: no such message" in r.stderr, "unknown ID warned about", r.stderr)
        tool(gw, "hold", want=2)
        tool(gw, "list", "x", want=2)
        tool(gw, "frobnicate", want=2)
        tool(gw, "hold", "ALL")

        # ---- 8. the gateway stopped ----
        hop.defer = True
        for i in (4, 5):
            send(gw, f"s{i}@client.test", [f"a{i}@relay.example"], f"msg{i}")
        wait_for(lambda: hop.attempts("s4@client.test") and hop.attempts("s5@client.test")
                 and settled(gw, 2), 30, "first, deferred attempts", gw.output)
        gw.stop()
        expect(not os.path.exists(sock), "control socket removed at shutdown")

        msgs = parse_list(tool(gw, "list").stdout)
        expect(len(msgs) == 2, "offline list", str(msgs))
        id4, id5 = by_sender(msgs, "s4@client.test"), by_sender(msgs, "s5@client.test")
        expect(msgs[id4]["rcpts"] == ["a4@relay.example"], "offline: pending recipients")
        out = tool(gw, "show", id4).stdout
        expect(out.startswith(f"*** ENVELOPE RECORDS {id4} ***\n") and "Subject: msg4\n" in out
               and out.endswith(f"*** MESSAGE FILE END {id4} ***\n"), "offline show", out)
        r = tool(gw, "hold", id4)
        expect(r.stderr == f"mxgate-queue: {id4}: placed on hold\n"
               "mxgate-queue: Placed on hold: 1 message\n", "offline hold", r.stderr)
        r = tool(gw, "delete", id5)
        expect(r.stderr == f"mxgate-queue: {id5}: removed\nmxgate-queue: Deleted: 1 message\n",
               "offline delete", r.stderr)
        msgs = parse_list(tool(gw, "list").stdout)
        expect(list(msgs) == [id4] and msgs[id4]["status"] == "!", "offline list after",
               str(msgs))
        expect(spool_ids(gw) == {id4}, "the deleted message is gone from the spool")
        r = tool(gw, "requeue", id4, want=1)
        expect("needs the gateway" in r.stderr, "requeue refused offline", r.stderr)
        tool(gw, "flush", want=1)
        tool(gw, "delete", "4ZhQ5N0Bc9z01", want=1)

        # started again, with the next hop taking everything
        hop.defer = False
        tried = {s: hop.attempts(s) for s in ("s4@client.test", "s5@client.test")}
        gw.start()
        # Recovery hands the relay every live message before the gateway listens: only
        # the held one may be queued, the deleted one not at all.
        st = gw.stats()
        expect(st["relay_queued"] == 1, "only the held message queued after the restart",
               f"{st}\n{gw.output()}")
        # Recovered messages are queued before any new one: a message sent now and
        # delivered shows the relay went past the held one, which it must have left alone.
        send(gw, "after@client.test", ["after@relay.example"], "after")
        wait_for(lambda: hop.delivered("after@client.test"), 10,
                 "a new message delivered after the restart", gw.output)
        expect(hop.attempts("s5@client.test") == tried["s5@client.test"],
               "the deleted message was tried", gw.output())
        expect(hop.attempts("s4@client.test") == tried["s4@client.test"],
               "the hold was not honoured", gw.output())
        wait_for(lambda: list(parse_list(tool(gw, "list").stdout)) == [id4], 10,
                 "only the held message left after the restart", gw.output)
        msgs = parse_list(tool(gw, "list").stdout)
        expect(msgs[id4]["status"] == "!", "held after restart", str(msgs))
        tool(gw, "release", "ALL")
        wait_for(lambda: hop.delivered("s4@client.test"), 10, "released after restart",
                 gw.output)
        wait_for(lambda: tool(gw, "list").stdout == "Mail queue is empty\n", 10,
                 "an empty queue")
        gw.stop()
    print("ok: mxgate-queue list, show, hold, release, delete, requeue, flush; online and "
          "offline")


main()
