#!/usr/bin/env python3
"""The SASL service against a real Dovecot (Debian's dovecot-core, a private instance from
tests/e2e/dovecotenv.py), through sasl_probe (a worker driven on stdin): the EHLO list is
"PLAIN LOGIN" (auth_mechanisms = plain login), PLAIN with an initial response and LOGIN
over two challenges succeed with the user's name, a wrong password fails (with the reason
Dovecot gives: none for a bad password, its reason= for a refused account), an unknown
mechanism is BAD_MECH, TCP works as the UNIX socket does, and a Dovecot restart: the
exchange in flight and requests while it is down get TEMPFAIL, then it works again.

Fails naming the package when dovecot-core is missing; skipped (77) when not root.
Usage: test_sasl_dovecot.py PATH-TO-sasl_probe
"""
import base64
import os
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TESTS / "e2e"))
from dovecotenv import DovecotAuth  # noqa: E402

NO_SERVER = "Can't connect to authentication server"
CONN_LOST = "Connection lost to authentication server"
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"FAIL: {what}", flush=True)


def b64(s):
    return base64.b64encode(s.encode()).decode() or "="


class Probe:
    def __init__(self, exe, *endpoints):
        self.p = subprocess.Popen([exe, "5000", *endpoints], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().rstrip("\n")

    def result(self, line):
        """(result, exchange, status, text)"""
        out = self.ask(line)
        parts = out.split(" ", 4)
        if len(parts) < 4 or parts[0] != "result":
            raise AssertionError(f"probe said {out!r} to {line!r}")
        return parts[1], int(parts[2]), int(parts[3]), parts[4] if len(parts) > 4 else ""

    def close(self):
        self.ask("quit")
        self.p.wait(timeout=10)


def exercise(probe, ep, d):
    mechs = probe.ask(f"waitmechs {ep} 10000")
    check(mechs == "mechs PLAIN LOGIN", f"{ep}: mechanism list {mechs!r}")
    check(probe.ask(f"mechs {ep} noplaintext") == "mechs ", f"{ep}: noplaintext leaves none")
    # PLAIN with an initial response
    r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'alice' + chr(0) + 'secret')}")
    check(r[0] == "ok" and r[2] == 0 and r[3] == "alice", f"{ep}: PLAIN alice: {r}")
    # PLAIN without one: an empty challenge first
    r = probe.result(f"start {ep} plain noanonymous -")
    check(r[0] == "continue" and r[3] == "", f"{ep}: PLAIN without response: {r}")
    r = probe.result(f"cont {ep} {r[1]} {b64(chr(0) + 'alice' + chr(0) + 'secret')}")
    check(r[0] == "ok" and r[3] == "alice", f"{ep}: PLAIN after the challenge: {r}")
    # LOGIN: "Username:", "Password:"
    r = probe.result(f"start {ep} LOGIN noanonymous -")
    check(r[0] == "continue" and base64.b64decode(r[3]) == b"Username:", f"{ep}: LOGIN 1: {r}")
    r = probe.result(f"cont {ep} {r[1]} {b64('alice')}")
    check(r[0] == "continue" and base64.b64decode(r[3]) == b"Password:", f"{ep}: LOGIN 2: {r}")
    r = probe.result(f"cont {ep} {r[1]} {b64('secret')}")
    check(r[0] == "ok" and r[3] == "alice", f"{ep}: LOGIN alice: {r}")
    # a wrong password: FAIL, with no reason from Dovecot
    r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'alice' + chr(0) + 'wrong')}")
    check(r[0] == "fail" and r[3] == "", f"{ep}: wrong password: {r}")
    r = probe.result(f"start {ep} LOGIN noanonymous -")
    r = probe.result(f"cont {ep} {r[1]} {b64('alice')}")
    r = probe.result(f"cont {ep} {r[1]} {b64('wrong')}")
    check(r[0] == "fail", f"{ep}: LOGIN wrong password: {r}")
    # a refused account: Dovecot's reason
    r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'bob' + chr(0) + 'pw')}")
    check(r[0] == "fail" and r[3] == "Disabled", f"{ep}: refused account: {r}")
    # an unknown user
    r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'nobody' + chr(0) + 'x')}")
    check(r[0] == "fail", f"{ep}: unknown user: {r}")
    # mechanisms Dovecot does not offer, or sec_opts forbid
    r = probe.result(f"start {ep} CRAM-MD5 noanonymous -")
    check(r[0] == "bad-mech", f"{ep}: CRAM-MD5: {r}")
    r = probe.result(f"start {ep} PLAIN noplaintext -")
    check(r[0] == "bad-mech", f"{ep}: PLAIN with noplaintext: {r}")
    # a cancelled exchange is gone at Dovecot too; the connection carries on
    r = probe.result(f"start {ep} LOGIN noanonymous -")
    x = r[1]
    r = probe.result(f"cancel {ep} {x}")
    check(r[0] == "tempfail" and r[3] == "", f"{ep}: cancel: {r}")
    r = probe.result(f"cont {ep} {x} {b64('alice')}")
    check(r[0] == "tempfail" and r[3] == CONN_LOST, f"{ep}: CONT after CANCEL: {r}")
    r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'alice' + chr(0) + 'secret')}")
    check(r[0] == "ok", f"{ep}: after the cancel: {r}")


def main():
    if len(sys.argv) != 2:
        print("usage: test_sasl_dovecot.py PATH-TO-sasl_probe")
        return 2
    exe = sys.argv[1]
    users = {"alice": "secret", "bob": "pw"}
    extra = {"bob": "nologin reason=Disabled"}
    with DovecotAuth(users=users, extra_fields=extra, inet_port=0) as d:
        probe = Probe(exe, d.endpoint, d.inet_endpoint)
        try:
            exercise(probe, d.endpoint, d)
            exercise(probe, d.inet_endpoint, d)
            # a restart: the exchange in flight is lost, requests while it is down get
            # TEMPFAIL at once, then the service is back by itself
            ep = d.endpoint
            r = probe.result(f"start {ep} LOGIN noanonymous -")
            check(r[0] == "continue", f"before the restart: {r}")
            x = r[1]
            d.stop()
            time.sleep(0.3)
            r = probe.result(f"cont {ep} {x} {b64('alice')}")
            check(r[0] == "tempfail" and r[3] == CONN_LOST, f"CONT across the restart: {r}")
            check(probe.ask(f"mechs {ep} -") == "mechs ", "no mechanisms while Dovecot is down")
            t0 = time.monotonic()
            r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'alice' + chr(0) + 'secret')}")
            check(r[0] == "tempfail" and r[3] == NO_SERVER, f"while Dovecot is down: {r}")
            check(time.monotonic() - t0 < 1.0, "the TEMPFAIL came at once")
            d.start()
            mechs = probe.ask(f"waitmechs {ep} 40000")
            check(mechs == "mechs PLAIN LOGIN", f"after the restart: {mechs!r}")
            r = probe.result(f"start {ep} PLAIN noanonymous {b64(chr(0) + 'alice' + chr(0) + 'secret')}")
            check(r[0] == "ok" and r[3] == "alice", f"after the restart: {r}")
            # the old exchange stays lost
            r = probe.result(f"cont {ep} {x} {b64('alice')}")
            check(r[0] == "tempfail" and r[3] == CONN_LOST, f"old CONT after the restart: {r}")
        finally:
            probe.close()
        if failures:
            print(d.log())
    print("ok" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
