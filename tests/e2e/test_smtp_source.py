"""Postfix's smtp-source: 20 parallel sessions send 2000 messages of 4 KiB; every one is
spooled, byte-exact, with one Received: header of ours in front."""

import subprocess
import time

from mxtest import Gateway, binary_from_argv, fail, need_tool, smtp_source_body

need_tool("/usr/sbin/smtp-source")
binary = binary_from_argv()

SESSIONS, MESSAGES, LENGTH = 20, 2000, 4096
body = smtp_source_body(LENGTH)

with Gateway(binary) as gw:
    t0 = time.monotonic()
    r = subprocess.run(["/usr/sbin/smtp-source", "-s", str(SESSIONS), "-m", str(MESSAGES),
                        "-l", str(LENGTH), "-f", "load@source.example",
                        "-t", "sink@localhost", f"127.0.0.1:{gw.port}"],
                       capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        fail(f"smtp-source failed ({r.returncode}): {r.stdout}{r.stderr}\n{gw.output()}")
    msgs = gw.spooled()
    if len(msgs) != MESSAGES:
        fail(f"{len(msgs)} messages spooled, expected {MESSAGES}")
    for qid, env, msg in msgs:
        if env.get("sender") != "load@source.example" or env["rcpt"] != ["sink@localhost"]:
            fail(f"{qid}: envelope wrong: {env}")
        if not msg.startswith(b"Received: from "):
            fail(f"{qid}: does not start with our Received: header")
        if msg.count(b"\r\nReceived: ") != 0:
            fail(f"{qid}: more than one Received: header")
        headers, sep, got_body = msg.partition(b"\r\n\r\n")
        if not sep or got_body != body:
            fail(f"{qid}: body differs from what smtp-source sent "
                 f"({len(got_body)} bytes, expected {len(body)})")
        if b"\r\nFrom: <load@source.example>\r\nTo: <sink@localhost>\r\n" not in headers:
            fail(f"{qid}: smtp-source's headers were not kept: {headers!r}")
        if b"\n" in msg.replace(b"\r\n", b""):
            fail(f"{qid}: a bare LF was stored")
    print(f"ok: {MESSAGES} messages from {SESSIONS} sessions spooled byte-exact "
          f"in {elapsed:.1f} s ({MESSAGES / elapsed:.0f} msg/s; 250 only after the group-commit fdatasync)")
