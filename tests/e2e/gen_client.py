"""SMTP sessions that find out which configuration generation served them.

The reload and canary tests give the gateway two configurations, A and B, that differ in a
way each session can see without knowing which one it got:

  generation A rejects RCPT a@relay.example and, by header_checks, a message carrying
  "X-Gen-Check: B"; generation B rejects b@relay.example and "X-Gen-Check: A".

A session offers a@, b@ and ok@relay.example: which of a@ and b@ was refused says its
generation (exactly one must be, or the session saw a mix). It then sends a message tagged
with its own generation (which must be accepted) or, now and then, with the other one
(which must be refused by the same generation's header_checks). A session whose verdicts
do not all belong to one generation is "inconsistent".

Run as a script (in a network namespace for the dpdk transport); prints one JSON object:
  {"sessions": [{"gen": "A"|"B"|"?", "consistent": bool, "queued": ID|null,
                 "error": str|null, "source": ADDR}], "seconds": S}

  gen_client.py HOST PORT [--sessions N] [--seconds S] [--threads T] [--source ADDR[,ADDR]]
                [--rcpt-only] [--other-every K] [--hold PATH]
--rcpt-only stops after the RCPTs (QUIT): a quick probe of the generation, for the canary.
--hold PATH: after MAIL, create PATH.waiting and wait until PATH exists (a session kept
open across a reload).
"""

import argparse
import json
import os
import re
import smtplib
import socket
import sys
import threading
import time

REJECT_CODES = range(400, 600)


def one_session(host, port, source, rcpt_only, tag_other, hold=None, timeout=30):
    r = {"gen": "?", "consistent": False, "queued": None, "error": None, "source": source}
    try:
        s = smtplib.SMTP(timeout=timeout, source_address=(source, 0) if source else None)
        s.connect(host, port)
        try:
            code, _ = s.ehlo("client.test.example")
            if code != 250:
                r["error"] = f"EHLO {code}"
                return r
            code, msg = s.mail("sender@client.test.example")
            if code != 250:
                r["error"] = f"MAIL {code} {msg!r}"
                return r
            if hold:
                # say we are here, and wait for the word to go on (a reload in between)
                open(hold + ".waiting", "w").close()
                deadline = time.monotonic() + 120
                while not os.path.exists(hold) and time.monotonic() < deadline:
                    time.sleep(0.05)
            verdicts = {}
            for rcpt in ("a@relay.example", "b@relay.example", "ok@relay.example"):
                code, msg = s.rcpt(rcpt)
                verdicts[rcpt[0]] = code
            a_ok, b_ok = verdicts["a"] == 250, verdicts["b"] == 250
            if verdicts["o"] != 250:
                r["error"] = f"RCPT ok@ {verdicts['o']}"
                return r
            if a_ok == b_ok:
                r["error"] = f"RCPT a@ {verdicts['a']}, b@ {verdicts['b']}: not one generation"
                return r
            gen = "B" if a_ok else "A"
            r["gen"] = gen
            if rcpt_only:
                r["consistent"] = True
                return r
            tag = ("B" if gen == "A" else "A") if tag_other else gen
            body = (f"From: sender@client.test.example\r\nTo: ok@relay.example\r\n"
                    f"Subject: generation probe\r\nX-Gen-Check: {tag}\r\n\r\nprobe\r\n")
            try:
                code, msg = s.data(body.encode())
            except smtplib.SMTPDataError as e:
                code, msg = e.smtp_code, e.smtp_error
            if tag_other:
                r["consistent"] = code in REJECT_CODES
                if not r["consistent"]:
                    r["error"] = f"DATA tagged {tag} under generation {gen}: {code} {msg!r}"
            else:
                r["consistent"] = code == 250
                if code == 250:
                    m = re.search(rb"queued as (\S+)", msg)
                    r["queued"] = m.group(1).decode() if m else None
                else:
                    r["error"] = f"DATA tagged {tag} under generation {gen}: {code} {msg!r}"
            return r
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
    except (smtplib.SMTPException, OSError) as e:
        r["error"] = f"{type(e).__name__}: {e}"
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--sessions", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--source", default="")
    ap.add_argument("--rcpt-only", action="store_true")
    ap.add_argument("--other-every", type=int, default=5)
    ap.add_argument("--hold", default=None)
    a = ap.parse_args()
    sources = a.source.split(",") if a.source else [None]
    results = []
    lock = threading.Lock()
    counter = [0]
    t0 = time.monotonic()

    def worker():
        while True:
            with lock:
                i = counter[0]
                if a.sessions and i >= a.sessions:
                    return
                if a.seconds and time.monotonic() - t0 >= a.seconds:
                    return
                counter[0] += 1
            tag_other = a.other_every > 0 and i % a.other_every == a.other_every - 1
            r = one_session(a.host, a.port, sources[i % len(sources)], a.rcpt_only, tag_other,
                            a.hold)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    json.dump({"sessions": results, "seconds": time.monotonic() - t0}, sys.stdout)


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
