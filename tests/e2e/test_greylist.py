"""check_greylist end to end, on the kernel transport: the gateway greylists as postgrey
would through Postfix's check_policy_service, from its own state store (btree: under
data_directory, the default map), with mxgate_greylist_delay = 2s.

  - a first attempt is refused 450 4.2.0 with postgrey's text (Postfix turns postgrey's
    "DEFER_IF_PERMIT 4.2.0 Greylisted, see ..." into exactly this reply), and so is a retry
    before the delay;
  - a retry after the delay is accepted, and the spooled message carries the X-Greylist
    header (once, though the message had two greylisted recipients);
  - a client in the allowlist file (postgrey's format) passes at once;
  - the state survives a restart: a triplet first seen before the restart passes after it;
  - auto-allowlisting: after mxgate_greylist_auto_allowlist_clients (2) passed triplets a
    client's new triplets pass at once, without a header;
  - a reload's new text and action apply to the next recipient (parameters travel in
    each request to the greylist service);
  - the greylist service's statistics line counts what happened.

Clients come from distinct loopback addresses (127.0.0.x), each greylisted by host
(mxgate_greylist_ipv4_prefix_length = 32).
"""

import os
import re
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from mxtest import Gateway, binary_from_argv, fail  # noqa: E402

binary = binary_from_argv()
if len(sys.argv) > 2 and sys.argv[2] != "kernel":
    fail(f"test_greylist.py runs on the kernel transport only, not {sys.argv[2]}")

DELAY = 2
RCPT = "user@mx.test.example"
TEXT = ("Greylisted, see http://postgrey.schweikert.ch/help/mx.test.example.html")


def attempt(gw, client, sender, rcpts, body=None):
    """One session from `client`: MAIL, each RCPT, and DATA when a recipient was taken.
    Returns ([(code, text) per RCPT], data reply code or None)."""
    s = smtplib.SMTP(gw.host, gw.port, source_address=(client, 0), timeout=20)
    try:
        s.ehlo("client.example")
        code, msg = s.mail(sender)
        if code != 250:
            fail(f"MAIL FROM:<{sender}> from {client}: {code} {msg!r}")
        replies = []
        for r in rcpts:
            code, msg = s.rcpt(r)
            replies.append((code, msg.decode()))
        data = None
        if body is not None and any(c == 250 for c, _ in replies):
            code, msg = s.data(body)
            data = code
            if code != 250:
                fail(f"DATA from {client}: {code} {msg!r}")
        s.quit()
        return replies, data
    finally:
        s.close()


def expect_greylisted(reply, rcpt, what):
    code, text = reply
    want = f"4.2.0 <{rcpt}>: Recipient address rejected: {TEXT.replace('mx.test.example', rcpt.split('@')[1])}"
    if code != 450 or text != want:
        fail(f"{what}: want 450 {want!r}, got {code} {text!r}")


def expect_accepted(reply, what):
    if reply[0] != 250:
        fail(f"{what}: want 250, got {reply[0]} {reply[1]!r}")


def message(i, sender):
    return (f"From: <{sender}>\r\nTo: <{RCPT}>\r\nSubject: greylist {i}\r\n"
            f"Message-ID: <greylist-{i}@client.example>\r\n\r\nbody {i}\r\n")


def spooled_with_subject(gw, subject):
    for _, env, msg in gw.spooled():
        if f"Subject: {subject}\r\n".encode() in msg:
            return env, msg
    return None, None


def main():
    gw = Gateway(binary, extra_config="")
    allow = os.path.join(gw.dir, "whitelist_clients")
    with open(allow, "w") as f:
        f.write("# postgrey's format\nallowed.example\n127.0.0.9\n/^never\\d+\\.example$/\n")
    data_dir = os.path.join(gw.dir, "data")
    os.makedirs(data_dir)
    with open(gw.config_path, "a") as f:
        f.write(
            f"data_directory = {data_dir}\n"
            "smtpd_recipient_restrictions = reject_unauth_destination, check_greylist, permit\n"
            f"mxgate_greylist_delay = {DELAY}s\n"
            f"mxgate_greylist_client_allowlist = {allow}\n"
            "mxgate_greylist_auto_allowlist_clients = 2\n"
            # postgrey counts one pass per client and hour; the test cannot wait an hour
            "mxgate_greylist_auto_allowlist_interval = 0\n"
            "mxgate_greylist_ipv4_prefix_length = 32\n")
    gw.start()
    try:
        print("greylist: first attempt and an early retry are refused")
        first = time.monotonic()
        replies, _ = attempt(gw, "127.0.0.2", "alice@sender.example",
                             [RCPT, "other@mx.test.example"])
        expect_greylisted(replies[0], RCPT, "first attempt")
        expect_greylisted(replies[1], "other@mx.test.example", "first attempt, 2nd recipient")
        replies, _ = attempt(gw, "127.0.0.2", "alice@sender.example", [RCPT])
        if time.monotonic() - first < DELAY:
            expect_greylisted(replies[0], RCPT, "retry before the delay")

        print("greylist: a retry after the delay passes with the header, once")
        time.sleep(max(0.0, first + DELAY + 0.5 - time.monotonic()))
        replies, data = attempt(gw, "127.0.0.2", "alice@sender.example",
                                [RCPT, "other@mx.test.example"], message(1, "alice@sender.example"))
        expect_accepted(replies[0], "retry after the delay")
        expect_accepted(replies[1], "retry after the delay, 2nd recipient")
        if data != 250:
            fail("the message after the delay was not queued")
        env, msg = spooled_with_subject(gw, "greylist 1")
        if msg is None:
            fail("the message that passed greylisting is not in the spool")
        headers = re.findall(rb"^X-Greylist: [^\r\n]*", msg, re.M)
        if len(headers) != 1:
            fail(f"want one X-Greylist header, got {headers!r}:\n{msg[:600]!r}")
        h = headers[0].decode()
        if not re.fullmatch(r"X-Greylist: delayed [23] seconds by mxgate-\S+ at "
                            r"mx\.test\.example; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \S+", h):
            fail(f"unexpected header {h!r}")

        print("greylist: an allowlisted client passes at once")
        replies, data = attempt(gw, "127.0.0.9", "bob@sender.example", [RCPT],
                                message(2, "bob@sender.example"))
        expect_accepted(replies[0], "allowlisted client")
        env, msg = spooled_with_subject(gw, "greylist 2")
        if msg is None or b"X-Greylist:" in msg:
            fail("the allowlisted client's message is missing or has a greylist header")

        print("greylist: the state survives a restart")
        before = time.monotonic()
        replies, _ = attempt(gw, "127.0.0.3", "carol@sender.example", [RCPT])
        expect_greylisted(replies[0], RCPT, "before the restart")
        gw.stop()
        gw.start()
        time.sleep(max(0.0, before + DELAY + 0.5 - time.monotonic()))
        replies, data = attempt(gw, "127.0.0.3", "carol@sender.example", [RCPT],
                                message(3, "carol@sender.example"))
        expect_accepted(replies[0], "retry after the restart")
        env, msg = spooled_with_subject(gw, "greylist 3")
        if msg is None or b"X-Greylist: delayed" not in msg:
            fail("the message retried after the restart lacks its X-Greylist header")

        print("greylist: a client is auto-allowlisted after 2 passes")
        # (127.0.0.2 passed twice already: two recipients of one message count twice)
        t0 = time.monotonic()
        replies, _ = attempt(gw, "127.0.0.5", "alice1@sender.example", [RCPT])
        expect_greylisted(replies[0], RCPT, "a new client")
        time.sleep(max(0.0, t0 + DELAY + 0.5 - time.monotonic()))
        replies, _ = attempt(gw, "127.0.0.5", "alice1@sender.example", [RCPT],
                             message(6, "alice1@sender.example"))
        expect_accepted(replies[0], "the first pass")
        # one pass is not enough
        t0 = time.monotonic()
        replies, _ = attempt(gw, "127.0.0.5", "alice2@sender.example", [RCPT])
        expect_greylisted(replies[0], RCPT, "a new triplet after one pass")
        time.sleep(max(0.0, t0 + DELAY + 0.5 - time.monotonic()))
        replies, _ = attempt(gw, "127.0.0.5", "alice2@sender.example", [RCPT],
                             message(4, "alice2@sender.example"))
        expect_accepted(replies[0], "the second pass")
        # two passes: a new triplet passes at once, without a header
        replies, _ = attempt(gw, "127.0.0.5", "alice3@elsewhere.example", [RCPT],
                             message(5, "alice3@elsewhere.example"))
        expect_accepted(replies[0], "an auto-allowlisted client's new triplet")
        env, msg = spooled_with_subject(gw, "greylist 5")
        if msg is None or b"X-Greylist:" in msg:
            fail("the auto-allowlisted client's message is missing or has a greylist header")
        # another client is still greylisted
        replies, _ = attempt(gw, "127.0.0.4", "alice3@elsewhere.example", [RCPT])
        expect_greylisted(replies[0], RCPT, "another client")

        print("greylist: a reload applies new parameters to the next recipient")
        with open(gw.config_path, "a") as f:
            f.write("mxgate_greylist_text = Come back in %s seconds (%r)\n"
                    "mxgate_greylist_action = DEFER\n")
        r = subprocess.run([binary, "reload", "-c", gw.config_path],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(f"mxgate reload failed:\n{r.stdout}{r.stderr}\n{gw.output()}")
        replies, _ = attempt(gw, "127.0.0.6", "dave@sender.example", [RCPT])
        want = f"4.2.0 <{RCPT}>: Recipient address rejected: Come back in {DELAY} seconds (mx.test.example)"
        if replies[0] != (450, want):
            fail(f"after the reload: want 450 {want!r}, got {replies[0]}")

        print("greylist: the statistics line")
        gw.stats()  # SIGUSR1, and wait for its lines
        m = None
        deadline = time.monotonic() + 10
        while not m and time.monotonic() < deadline:
            log = gw.log()
            for m in re.finditer(r"greylist statistics \(SIGUSR1\): (.*)", log):
                pass
            if not m:
                time.sleep(0.05)
        if not m:
            fail(f"no greylist statistics line after SIGUSR1:\n{log[-3000:]}")
        counts = dict(kv.split("=") for kv in m.group(1).split())
        # since the restart: carol's pass, alice2's refusal and pass, alice3's two passes
        # (the allowlisted one and the other client's refusal)
        if (int(counts["greylisted"]) < 2 or int(counts["passed_delayed"]) < 2 or
                int(counts["passed_client_awl"]) < 1 or int(counts["failed"]) != 0):
            fail(f"unexpected greylist statistics: {counts}")
        print("greylist: OK")
    finally:
        gw.stop()


main()
