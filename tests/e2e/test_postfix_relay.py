"""A real Debian Postfix relays a message through mxgate (relayhost = the gateway): the
message arrives in mxgate's spool with Postfix's headers and ours, and Postfix logs
status=sent with our queue ID."""

import time

from mxtest import Gateway, PostfixPeer, binary_from_argv, fail

binary = binary_from_argv()

with Gateway(binary) as gw:
    with PostfixPeer(relayhost=f"[127.0.0.1]:{gw.port}") as pf:
        marker = f"postfix-relay-{time.time_ns()}"
        pf.sendmail("origin@pfx.test.example", ["final@relay.example"],
                    f"Subject: {marker}\nFrom: origin@pfx.test.example\n\nrelayed body\n.\n"
                    f"last line\n".encode())
        deadline = time.monotonic() + 60
        found = []
        while time.monotonic() < deadline and not found:
            pf.flush()
            time.sleep(0.5)
            found = [m for m in gw.spooled() if marker.encode() in m[2]]
        if not found:
            fail(f"Postfix did not deliver through mxgate within 60 s.\nqueue:\n"
                 f"{pf.queue_listing()}\npostfix log:\n{pf.log()}\nmxgate:\n{gw.output()}")
        qid, env, msg = found[0]
        if env.get("sender") != "origin@pfx.test.example" or env["rcpt"] != ["final@relay.example"]:
            fail(f"envelope from Postfix wrong: {env}")
        if env.get("helo") != "pfx.test.example":
            fail(f"HELO from Postfix wrong: {env}")
        if not msg.startswith(b"Received: from pfx.test.example (unknown [127.0.0.1])"):
            fail(f"our Received: header missing: {msg[:200]!r}")
        if b"(Postfix, from userid 0)" not in msg:
            fail("Postfix's own Received: header missing")
        if not msg.endswith(b"\r\n\r\nrelayed body\r\n.\r\nlast line\r\n"):
            fail(f"body changed in transit: {msg[-80:]!r}")
        for _ in range(40):
            if f"status=sent (250 2.0.0 Ok: queued as {qid})" in pf.log():
                break
            time.sleep(0.25)
        else:
            fail(f"Postfix did not log status=sent with our queue id {qid}:\n{pf.log()}")
print("ok: Debian Postfix relayed through mxgate")
