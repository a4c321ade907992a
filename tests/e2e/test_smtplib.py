"""Python's smtplib, plus raw-socket sessions for what smtplib cannot do (PIPELINING in one
write, BDAT): multi-recipient, 8BITMIME, SMTPUTF8, a large message, the size limit, ordered
pipelined replies, and a smuggling attempt that must not end the message early."""

import smtplib
import socket

from mxtest import Gateway, binary_from_argv, fail

binary = binary_from_argv()


def expect_one(gw, rcpts, sender, body_fragment):
    found = [m for m in gw.spooled() if body_fragment in m[2]]
    if len(found) != 1:
        fail(f"expected one spooled message containing {body_fragment!r}, found {len(found)}")
    _, env, msg = found[0]
    if env["rcpt"] != rcpts or env.get("sender") != sender:
        fail(f"envelope {env} != sender {sender} rcpts {rcpts}")
    return env, msg


def raw_session(port, flights):
    """Send each flight in one write, read replies until the expected number of reply
    lines (final lines, 'NNN ') arrived. Returns every final reply line."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    f = s.makefile("rb")

    def read_replies(n):
        got = []
        while len(got) < n:
            line = f.readline()
            if not line:
                fail(f"connection closed; replies so far {got}")
            if line[3:4] == b" ":
                got.append(line.rstrip(b"\r\n").decode())
        return got

    out = read_replies(1)  # greeting
    for data, n in flights:
        s.sendall(data)
        out += read_replies(n)
    s.close()
    return out


LIMIT = 2_000_000
with Gateway(binary, extra_config=f"message_size_limit = {LIMIT}\n") as gw:
    # multi-recipient + 8BITMIME, and a body with every awkward line we can think of
    # (smtplib dot-stuffs the "." lines and would turn a lone CR into CRLF itself; bare CR
    # is covered by the raw smuggling session below)
    body8 = ("Subject: =?utf-8?q?caf=C3=A9?=\r\n\r\ncafé 8bit body\r\n.\r\n..two\r\n"
             "end\r\n").encode("utf-8")
    with smtplib.SMTP("127.0.0.1", gw.port, local_hostname="py.test.example") as c:
        c.ehlo()
        for kw in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                   "chunking"):
            if not c.has_extn(kw):
                fail(f"EHLO does not advertise {kw}: {c.esmtp_features}")
        if c.esmtp_features.get("size") != str(LIMIT):
            fail(f"SIZE {c.esmtp_features.get('size')} != {LIMIT}")
        refused = c.sendmail("py@sender.example", ["a@localhost", "b@localhost"], body8,
                             mail_options=["BODY=8BITMIME"])
        if refused:
            fail(f"recipients refused: {refused}")
    env, msg = expect_one(gw, ["a@localhost", "b@localhost"], "py@sender.example",
                          b"caf\xc3\xa9 8bit body")
    if not msg.endswith(b"\r\n\r\ncaf\xc3\xa9 8bit body\r\n.\r\n..two\r\nend\r\n"):
        fail(f"8-bit body not stored exactly: {msg[-120:]!r}")
    if "BODY=8BITMIME" not in env["mail_param"]:
        fail(f"BODY=8BITMIME not kept in the envelope: {env}")
    if b"\tfor <" in msg.split(b"\r\n\r\n")[0]:
        fail("Received: has a 'for' clause with two recipients")

    # SMTPUTF8
    with smtplib.SMTP("127.0.0.1", gw.port) as c:
        c.ehlo("py.test.example")
        c.sendmail("jürgen@sender.example", ["zoë@localhost"],
                   "Subject: utf8\r\n\r\nsmtputf8 body\r\n".encode(),
                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    expect_one(gw, ["zoë@localhost"], "jürgen@sender.example", b"smtputf8 body")

    # a large message just under the limit, and one over it
    big = b"Subject: big\r\n\r\n" + (b"Y" * 998 + b"\r\n") * ((LIMIT - 10_000) // 1000)
    with smtplib.SMTP("127.0.0.1", gw.port) as c:
        c.sendmail("big@sender.example", ["big@localhost"], big)
    _, msg = expect_one(gw, ["big@localhost"], "big@sender.example", b"Subject: big")
    if not msg.endswith(big):
        fail("large message not stored byte-exact")
    too_big = big + (b"Z" * 998 + b"\r\n") * 20
    # smtplib declares SIZE= at MAIL (RFC 1870), so the refusal comes before any data
    with smtplib.SMTP("127.0.0.1", gw.port) as c:
        try:
            c.sendmail("huge@sender.example", ["huge@localhost"], too_big)
            fail("a message declared over message_size_limit was accepted")
        except smtplib.SMTPSenderRefused as e:
            if e.smtp_code != 552 or b"5.3.4 Message size exceeds fixed limit" not in e.smtp_error:
                fail(f"over-size declaration got {e.smtp_code} {e.smtp_error!r}")
        code, _ = c.noop()
        if code != 250:
            fail("session unusable after a 552 at MAIL")
    # without a declaration the limit is enforced on the data itself: the whole message is
    # read, then refused 552, and the session goes on
    replies = raw_session(gw.port, [
        (b"EHLO huge.test.example\r\n", 1),
        (b"MAIL FROM:<huge@sender.example>\r\n", 1),
        (b"RCPT TO:<huge@localhost>\r\n", 1),
        (b"DATA\r\n", 1),
        (too_big + b".\r\n", 1),
        (b"NOOP\r\n", 1),
    ])
    # Postfix's wording for data that ran over (cleanup's), not the SIZE= one
    if replies[-2] != "552 5.3.4 Error: message file too big" or replies[-1] != "250 2.0.0 Ok":
        fail(f"undeclared over-size message: {replies[-2:]}")
    if any(m[1].get("sender") == "huge@sender.example" for m in gw.spooled()):
        fail("an over-size message reached the spool")
    with smtplib.SMTP("127.0.0.1", gw.port) as c:
        c.ehlo("py.test.example")
        code, text = c.mail("declared@sender.example", [f"SIZE={LIMIT + 1}"])
        if code != 552:
            fail(f"MAIL with SIZE over the limit got {code} {text!r}")

    # PIPELINING: the whole transaction in one write; replies arrive in order
    replies = raw_session(gw.port, [
        (b"EHLO pipe.test.example\r\n", 1),
        (b"MAIL FROM:<pipe@sender.example>\r\nRCPT TO:<p1@localhost>\r\n"
         b"RCPT TO:<>\r\nRCPT TO:<p2@localhost>\r\nDATA\r\n", 5),
        (b"Subject: piped\r\n\r\npipelined body\r\n.\r\nQUIT\r\n", 2),
    ])
    want = ["250 2.1.0 Ok", "250 2.1.5 Ok", "501 5.1.3 Bad recipient address syntax",
            "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>"]
    if replies[2:7] != want:
        fail(f"pipelined replies {replies[2:7]} != {want}")
    if not replies[7].startswith("250 2.0.0 Ok: queued as ") or replies[8] != "221 2.0.0 Bye":
        fail(f"end of pipelined session: {replies[7:]}")
    expect_one(gw, ["p1@localhost", "p2@localhost"], "pipe@sender.example", b"pipelined body")

    # Smuggling: "\n.\n" inside the body must not end the message; the SMTP command hidden
    # after it must be stored as text, not executed.
    replies = raw_session(gw.port, [
        (b"EHLO smuggle.test.example\r\n", 1),
        (b"MAIL FROM:<s@sender.example>\r\nRCPT TO:<s@localhost>\r\nDATA\r\n", 3),
        (b"Subject: smuggle\r\n\r\nbefore\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<evil@localhost>\r\n"
         b"after\r.\rmore\r\n.\r\n", 1),
    ])
    if not replies[-1].startswith("250 2.0.0 Ok: queued as "):
        fail(f"smuggling session: {replies}")
    _, msg = expect_one(gw, ["s@localhost"], "s@sender.example", b"Subject: smuggle")
    if b"MAIL FROM:<evil@x>\r\nRCPT TO:<evil@localhost>\r\nafter\r.\rmore\r\n" not in msg:
        fail(f"smuggled text not stored as content: {msg!r}")
    if any(b"evil@localhost" in m[2] and m[1]["rcpt"] == ["evil@localhost"]
           for m in gw.spooled()):
        fail("a smuggled transaction was executed")

    # BDAT (RFC 3030): two chunks, the second LAST; chunk boundary inside a CRLF
    chunk1 = b"Subject: bdat\r\n\r\nchunked body\r"
    chunk2 = b"\nsecond line\r\n"
    replies = raw_session(gw.port, [
        (b"EHLO bdat.test.example\r\n", 1),
        (b"MAIL FROM:<b@sender.example>\r\nRCPT TO:<b@localhost>\r\n", 2),
        (b"BDAT %d\r\n" % len(chunk1) + chunk1, 1),
        (b"BDAT %d LAST\r\n" % len(chunk2) + chunk2, 1),
    ])
    if replies[-2] != f"250 2.0.0 Ok: {len(chunk1)} bytes" or \
            not replies[-1].startswith("250 2.0.0 Ok: queued as "):
        fail(f"BDAT replies: {replies}")
    _, msg = expect_one(gw, ["b@localhost"], "b@sender.example", b"Subject: bdat")
    if not msg.endswith(b"\r\n\r\nchunked body\r\nsecond line\r\n"):
        fail(f"BDAT message stored wrong: {msg!r}")

print("ok: smtplib and raw sessions")
