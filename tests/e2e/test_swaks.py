"""swaks (a real SMTP client) against the running gateway: delivery to a local and a relay
domain lands in the spool with its envelope; a non-local recipient from outside mynetworks
is refused 554 as Postfix words it; IPv6 works when the host has ::1."""

import socket
import subprocess

from mxtest import Gateway, binary_from_argv, fail, need_tool

need_tool("swaks")
binary = binary_from_argv()


def swaks(port, to, sender="alice@sender.example", server="127.0.0.1", extra=()):
    srv = f"[{server}]:{port}" if ":" in server else f"{server}:{port}"
    r = subprocess.run(["swaks", "--server", srv, "--to", to, "--from", sender,
                        "--helo", "client.test.example", "--header", "Subject: e2e swaks",
                        "--body", "hello from swaks\n.leading dot line\n", *extra],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


# 1. A client in mynetworks may send anywhere; the message and its envelope are spooled.
with Gateway(binary) as gw:
    rc, out = swaks(gw.port, "bob@localhost")
    if rc != 0 or "250 2.0.0 Ok: queued as " not in out:
        fail(f"swaks to bob@localhost did not get 250 queued:\n{out}\n{gw.output()}")
    queue_id = out.split("250 2.0.0 Ok: queued as ")[1].split()[0]
    msgs = gw.spooled()
    if [m[0] for m in msgs] != [queue_id]:
        fail(f"spool holds {[m[0] for m in msgs]}, expected exactly [{queue_id}]")
    _, env, msg = msgs[0]
    if env.get("sender") != "alice@sender.example" or env["rcpt"] != ["bob@localhost"]:
        fail(f"envelope wrong: {env}")
    if env.get("helo") != "client.test.example":
        fail(f"envelope helo wrong: {env}")
    if not env.get("client", "").startswith("127.0.0.1"):
        fail(f"envelope client wrong: {env}")
    if not msg.startswith(b"Received: from client.test.example (unknown [127.0.0.1])\r\n"
                          b"\tby mx.test.example (mxgate) with ESMTP id " + queue_id.encode()):
        fail(f"Received: header not first or not in Postfix's form:\n{msg[:300]!r}")
    if b"\r\nSubject: e2e swaks\r\n" not in msg:
        fail(f"Subject header missing:\n{msg!r}")
    # swaks dot-stuffs ".leading" to "..leading"; the spool holds the original line
    if b"\r\n.leading dot line\r\n" not in msg or b"..leading" in msg:
        fail(f"dot-unstuffing wrong:\n{msg!r}")
    if f"{queue_id}: client=unknown[127.0.0.1]" not in gw.log():
        fail(f"log lacks the client= line for {queue_id}:\n{gw.log()}")

    # IPv6, when the machine has ::1
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
        have_v6 = True
    except OSError:
        have_v6 = False

# 2. From outside mynetworks: local and relay domains are accepted, others refused: 454
# with Postfix's default smtpd_relay_restrictions (defer_unauth_destination), 554 with
# reject_unauth_destination.
with Gateway(binary, extra_config="mynetworks = 192.0.2.0/24\n") as gw:
    rc, out = swaks(gw.port, "carol@example.org")
    if "454 4.7.1 <carol@example.org>: Relay access denied" not in out:
        fail(f"the default relay restrictions did not defer carol@example.org:\n{out}")
outside = ("mynetworks = 192.0.2.0/24\n"
           "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n")
with Gateway(binary, extra_config=outside) as gw:
    rc, out = swaks(gw.port, "carol@example.org")
    expect = "554 5.7.1 <carol@example.org>: Relay access denied"
    if expect not in out:
        fail(f"relay to example.org from outside mynetworks was not refused with "
             f"'{expect}':\n{out}")
    if gw.spooled():
        fail("a refused message reached the spool")
    if "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: " + expect not in gw.log():
        fail(f"no Postfix-style NOQUEUE reject line in the log:\n{gw.log()}")
    for rcpt in ("dave@relay.example", "erin@sub.relay.example", "frank@mx.test.example",
                 "grace@localhost"):
        rc, out = swaks(gw.port, rcpt)
        if rc != 0 or "250 2.0.0 Ok: queued as" not in out:
            fail(f"{rcpt} should be accepted from outside mynetworks:\n{out}")
    if len(gw.spooled()) != 4:
        fail(f"expected 4 spooled messages, found {len(gw.spooled())}")

if have_v6:
    with Gateway(binary, host="::1") as gw:
        rc, out = swaks(gw.port, "v6@localhost", server="::1")
        if rc != 0 or "250 2.0.0 Ok: queued as" not in out:
            fail(f"swaks over IPv6 failed:\n{out}\n{gw.output()}")
        _, env, msg = gw.spooled()[0]
        if not msg.startswith(b"Received: from client.test.example (unknown [IPv6:::1])"):
            fail(f"IPv6 Received: header not in Postfix's form: {msg[:120]!r}")
else:
    print("note: no ::1 on this host; IPv6 part not run")

print("ok: swaks delivery, envelope, relay refusal, IPv6")
