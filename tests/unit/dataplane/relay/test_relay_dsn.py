#!/usr/bin/env python3
"""Parse the delivery status notifications relay_dsn_build() writes with an independent
MIME parser (Python's email package, policy.default): a multipart/report with
report-type=delivery-status and three parts (RFC 6522 3), readable delivery-status
fields (RFC 3464 2), the returned original as message/rfc822 or text/rfc822-headers,
and the SMTPUTF8 variants (RFC 6533). The notifications come from
`test_relay_dsn --dump DIR`.

Usage: test_relay_dsn.py PATH-TO-test_relay_dsn
"""
import email
import email.policy
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

DRIVER = None
OUT = None


def load(name):
    raw = (Path(OUT) / (name + ".eml")).read_bytes()
    return raw, email.message_from_bytes(raw, policy=email.policy.default)


def lines(raw):
    assert raw.endswith(b"\r\n")
    body = raw[:-2].split(b"\r\n")
    for line in body:
        assert b"\n" not in line and b"\r" not in line, line[:80]
        assert len(line) <= 998, len(line)
    return body


def dsn_blocks(part):
    """The field groups of a delivery-status part: per-message, then per-recipient."""
    ctype = part.get_content_type()
    if ctype == "message/delivery-status":
        # The email package parses it into one Message per group (RFC 3464 2.1).
        return [dict(b.items()) for b in part.get_payload()]
    # message/global-delivery-status: the package does not know it; parse the groups
    # ourselves from the decoded text.
    payload = part.get_payload()
    if isinstance(payload, list):
        text = payload[0].as_bytes(policy=email.policy.SMTPUTF8).decode("utf-8")
    else:
        text = part.get_payload(decode=True).decode("utf-8")
    groups = []
    for chunk in text.replace("\r\n", "\n").strip("\n").split("\n\n"):
        m = email.message_from_string(chunk, policy=email.policy.default)
        groups.append(dict(m.items()))
    return groups


class DsnMime(unittest.TestCase):
    def check_report(self, name):
        raw, msg = load(name)
        lines(raw)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        boundary = msg.get_boundary()
        self.assertTrue(boundary)
        self.assertLessEqual(len(boundary), 70)
        self.assertEqual(str(msg["Subject"]), "Undelivered Mail Returned to Sender")
        self.assertEqual(str(msg["Auto-Submitted"]), "auto-replied")
        self.assertIn("MAILER-DAEMON@mx.example.com", str(msg["From"]))
        self.assertIsNotNone(msg["Date"].datetime)
        self.assertTrue(str(msg["Message-Id"]).startswith("<"))
        self.assertEqual(msg.defects, [])
        parts = msg.get_payload()
        self.assertEqual(len(parts), 3)
        for p in parts:
            self.assertEqual(p.defects, [])
        self.assertEqual(parts[0].get_content_type(), "text/plain")
        self.assertEqual(str(parts[0]["Content-Description"]), "Notification")
        self.assertEqual(str(parts[1]["Content-Description"]), "Delivery report")
        return raw, msg, parts

    def test_one(self):
        raw, msg, parts = self.check_report("one")
        self.assertEqual(str(msg["To"]), "a@example.org")
        text = parts[0].get_content()
        self.assertIn("This is the mail system at host mx.example.com.", text)
        self.assertIn("<bob@example.net>: host mail.example.net[192.0.2.25] said:", text)
        self.assertEqual(parts[1].get_content_type(), "message/delivery-status")
        blocks = dsn_blocks(parts[1])
        self.assertEqual(len(blocks), 2)
        self.assertEqual(blocks[0]["Reporting-MTA"], "dns; mx.example.com")
        self.assertEqual(blocks[0]["X-Postfix-Queue-ID"], "4ZhQ5N0Bc9z01")
        self.assertEqual(blocks[0]["X-Postfix-Sender"], "rfc822; a@example.org")
        self.assertEqual(
            email.utils.parsedate_to_datetime(blocks[0]["Arrival-Date"]).timestamp(),
            1732270495)
        r = blocks[1]
        self.assertEqual(r["Final-Recipient"], "rfc822; bob@example.net")
        self.assertEqual(r["Original-Recipient"], "rfc822;bob@example.net")
        self.assertEqual(r["Action"], "failed")
        self.assertEqual(r["Status"], "5.1.1")
        self.assertEqual(r["Remote-MTA"], "dns; mail.example.net")
        self.assertEqual(
            " ".join(r["Diagnostic-Code"].split()),
            "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown")
        self.assertEqual(parts[2].get_content_type(), "message/rfc822")
        self.assertEqual(str(parts[2]["Content-Description"]), "Undelivered Message")
        orig = parts[2].get_payload()[0]
        self.assertEqual(str(orig["Subject"]), "hello")
        self.assertEqual(str(orig["Return-Path"]), "<a@example.org>")
        self.assertIn("Hi Bob.", orig.get_content())

    def test_multi(self):
        raw, msg, parts = self.check_report("multi")
        blocks = dsn_blocks(parts[1])
        rcpts = [(b["Final-Recipient"], b["Status"]) for b in blocks[1:]]
        self.assertEqual(rcpts, [("rfc822; bob@example.net", "5.1.1"),
                                 ("rfc822; carol@example.net", "5.7.1"),
                                 ("rfc822; dave@example.com", "5.4.4")])
        self.assertTrue(blocks[3]["Diagnostic-Code"].startswith("X-Postfix; Host or domain"))
        self.assertNotIn("Remote-MTA", blocks[3])
        self.assertNotIn(b"erin", raw)
        self.assertNotIn(b"frank", raw)

    def test_hdrs(self):
        raw, msg, parts = self.check_report("hdrs")
        blocks = dsn_blocks(parts[1])
        self.assertEqual(blocks[0]["Original-Envelope-Id"], "env+1")
        self.assertEqual(blocks[1]["Original-Recipient"], "rfc822;a+b@x.example")
        self.assertEqual(parts[2].get_content_type(), "text/rfc822-headers")
        self.assertEqual(str(parts[2]["Content-Description"]),
                         "Undelivered Message Headers")
        headers = parts[2].get_content()
        self.assertIn("Subject: hello", headers)
        self.assertNotIn("Hi Bob", headers)

    def test_boundary(self):
        raw, msg, parts = self.check_report("boundary")
        self.assertNotEqual(msg.get_boundary(), "4ZhQ5N0Bc9z01.1732270600/mx.example.com")
        orig = parts[2].get_payload()[0]
        self.assertIn("spoofed", orig.get_payload())

    def test_expired_nosep(self):
        raw, msg, parts = self.check_report("expired_nosep")
        blocks = dsn_blocks(parts[1])
        self.assertEqual(blocks[1]["Action"], "failed")
        self.assertEqual(blocks[1]["Status"], "4.4.1")
        self.assertIn("<bob@example.net>: connect to mail.example.net[192.0.2.25]:25:",
                      parts[0].get_content())
        orig = parts[2].get_payload()[0]
        self.assertEqual(str(orig["Subject"]), "no body")
        self.assertEqual(str(orig["From"]), "a@example.org")

    def test_long(self):
        raw, msg, parts = self.check_report("long")
        blocks = dsn_blocks(parts[1])
        diag = blocks[1]["Diagnostic-Code"]
        self.assertTrue(diag.startswith("smtp; 550 5.7.1 word"))
        self.assertGreater(len(diag), 4000)

    def test_utf8(self):
        raw, msg, parts = self.check_report("utf8")
        self.assertEqual(str(msg["To"]), "jörg@example.org")
        self.assertEqual(parts[1].get_content_type(), "message/global-delivery-status")
        blocks = dsn_blocks(parts[1])
        self.assertEqual(blocks[0]["X-Postfix-Sender"], "utf-8; jörg@example.org")
        self.assertEqual(blocks[1]["Final-Recipient"], "utf-8; été@example.net")
        self.assertEqual(parts[2].get_content_type(), "message/global")
        self.assertIn("Hallö".encode(), raw)


def main():
    global DRIVER, OUT
    DRIVER = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        OUT = d
        subprocess.run([DRIVER, "--dump", d], check=True)
        prog = unittest.main(argv=[sys.argv[0], "-v"], exit=False)
        sys.exit(0 if prog.result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
