"""mxgate-loadgen against the gateway over net_memif (tests/e2e/loadgen.py): both DPDK
processes on --no-huge with their own file prefixes, the gateway the memif server with one
worker, the generator the client on one lcore. Needs root and libdpdk (built with it).

1. 1,000 sessions of one 1 KiB message each from 65,534 source addresses: the generator
   counts 1,000 accepted and no error; the gateway's counters agree; the spool holds
   exactly those 1,000 messages (mxgate-spoolcat), each recipient u<N>@relay.example once
   for N in 0..999, from the generator's sender, with its body.
2. No pipelining, two messages per session, three recipients each of which every third is
   refused by the gateway (a domain it does not relay for, from a client outside
   mynetworks): the refusals are expected, so no error; the spool gains exactly the
   accepted messages with exactly their accepted recipients.
3. Idle: 300 sessions greeted and held (the gateway counts 300 open connections), then
   SIGUSR2: all of them QUIT, none lost, the gateway back to 0 connections.
4. Verification: recipients the gateway accepts but the run says must be refused are
   reported as errors (exit status 3, the reply text kept).
5. The target rate: 100 messages at --rate 200 (messages/s, then sessions/s) take about
   half a second.
"""

import os
import re
import signal
import sys
import time

import loadgen
import mxtest


def check_result(res, what, **want):
    for path, value in want.items():
        node = res
        for k in path.split("__"):
            node = node[k]
        if node != value:
            mxtest.fail(f"{what}: {path.replace('__', '.')} = {node}, expected {value}; "
                        f"result: {res}")


def main():
    binary = mxtest.binary_from_argv()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(binary)
    with loadgen.MemifGateway(binary, workers=1) as gw:
        # -- 1: 1,000 sessions, 1,000 messages --------------------------------------
        jp = os.path.join(gw.dir, "run1.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--src", "10.99.0.0/16", "--sessions", "1000",
                             "--concurrency", "100", "--messages", "1", "--size", "1024",
                             "--timeout", "20"], timeout=240, json_path=jp)
        print(out)
        if rc != 0 or res is None:
            mxtest.fail(f"run 1: mxgate-loadgen exit status {rc}:\n{out}\n{gw.output()}")
        check_result(res, "run 1", sessions__started=1000, sessions__done=1000,
                     sessions__failed=0, messages__accepted=1000, messages__refused=0,
                     errors__total=0)
        st = gw.stats()
        if st["messages_accepted"] != 1000 or st["connections_accepted"] != 1000:
            mxtest.fail(f"run 1: the gateway counted {st['messages_accepted']} messages and "
                        f"{st['connections_accepted']} connections, not 1000")
        msgs = gw.spooled()
        if len(msgs) != 1000:
            mxtest.fail(f"run 1: the spool holds {len(msgs)} messages, the generator counted "
                        "1000 accepted")
        seen, clients = set(), set()
        for qid, env, msg in msgs:
            if env.get("sender") != "loadgen@loadgen.example" or len(env["rcpt"]) != 1:
                mxtest.fail(f"run 1: {qid}: envelope {env['_lines']}")
            m = re.fullmatch(r"u(\d+)@relay\.example", env["rcpt"][0])
            if not m or int(m.group(1)) in seen:
                mxtest.fail(f"run 1: {qid}: recipient {env['rcpt'][0]} unexpected or twice")
            seen.add(int(m.group(1)))
            clients.add(env["client"])
            if b"Subject: mxgate-loadgen\r\n" not in msg or not msg.endswith(b"x\r\n"):
                mxtest.fail(f"run 1: {qid}: not the generator's message: {msg[-200:]!r}")
        if seen != set(range(1000)):
            mxtest.fail(f"run 1: recipients missing: {sorted(set(range(1000)) - seen)[:20]}")
        if len(clients) != 1000:
            mxtest.fail(f"run 1: {len(clients)} client addresses, expected 1000 (one source "
                        "address per session)")

        # -- 2: no pipelining, refusals that are expected ---------------------------
        jp = os.path.join(gw.dir, "run2.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--src", "10.99.1.0/24", "--sessions", "50", "--concurrency",
                             "10", "--messages", "2", "--rcpts", "3", "--no-pipelining",
                             "--bad-rcpt", "someone@elsewhere.example", "--bad-rcpt-every",
                             "3", "--size", "3000", "--timeout", "20"],
            timeout=240, json_path=jp)
        print(out)
        if rc != 0 or res is None:
            mxtest.fail(f"run 2: mxgate-loadgen exit status {rc}:\n{out}\n{gw.output()}")
        check_result(res, "run 2", sessions__done=50, messages__accepted=100,
                     rcpts__sent=300, rcpts__accepted=200, rcpts__refused=100,
                     errors__total=0)
        msgs = gw.spooled()
        if len(msgs) != 1100:
            mxtest.fail(f"run 2: the spool holds {len(msgs)} messages, expected 1000 + 100")
        for qid, env, msg in msgs:
            if any(r == "someone@elsewhere.example" for r in env["rcpt"]):
                mxtest.fail(f"run 2: {qid}: a refused recipient was spooled")
        two = [m for m in msgs if len(m[1]["rcpt"]) == 2]
        if len(two) != 100:
            mxtest.fail(f"run 2: {len(two)} messages with two recipients, expected 100")

        # -- 3: idle sessions, held then released -----------------------------------
        jp = os.path.join(gw.dir, "run3.json")
        p, prefix = loadgen.start_loadgen(
            gen, gw.socket, ["--src", "10.99.2.0/24", "--idle", "--concurrency", "300",
                             "--timeout", "30"], json_path=jp)
        try:
            gw.wait_stat(lambda s: s["open_connections"] == 300, 120,
                         "300 idle connections on the gateway")
        except SystemExit:
            p.send_signal(signal.SIGINT)
            print(loadgen.finish_loadgen(p, prefix, 60)[1])
            raise
        p.send_signal(signal.SIGUSR2)
        rc, out, res = loadgen.finish_loadgen(p, prefix, 120, jp)
        print(out)
        if rc != 0 or res is None:
            mxtest.fail(f"run 3: mxgate-loadgen exit status {rc}:\n{out}")
        check_result(res, "run 3", sessions__greeted=300, sessions__done=300,
                     sessions__idle_max=300, errors__total=0)
        gw.wait_stat(lambda s: s["open_connections"] == 0, 60, "no connection left")

        # -- 4: a 250 where a refusal was expected is an error ----------------------
        jp = os.path.join(gw.dir, "run4.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--src", "10.99.3.0/24", "--sessions", "5", "--concurrency",
                             "5", "--bad-rcpt", "taken@relay.example", "--bad-rcpt-every",
                             "1", "--errors-kept", "3"], timeout=120, json_path=jp)
        print(out)
        if rc != 3 or res is None:
            mxtest.fail(f"run 4: exit status {rc}, expected 3 (errors):\n{out}")
        if res["errors"]["rcpt"] != 5 or len(res["errors_kept"]) != 3 or \
                "expected 4xx/5xx, got 250" not in res["errors_kept"][0]["text"]:
            mxtest.fail(f"run 4: errors not reported as expected: {res['errors']} "
                        f"{res['errors_kept']}")
        # -- 5: the target rate holds (messages/s, then sessions/s) -----------------
        for what, args, n in (("messages", ["--sessions", "20", "--messages", "5"], 100),
                              ("sessions", ["--sessions", "100", "--messages", "1"], 100)):
            jp = os.path.join(gw.dir, f"run5-{what}.json")
            rc, out, res = loadgen.run_loadgen(
                gen, gw.socket, ["--src", "10.99.4.0/24", "--concurrency", "20", "--rate",
                                 "200", "--rate-of", what, *args], timeout=120, json_path=jp)
            if rc != 0 or res is None:
                mxtest.fail(f"run 5 ({what}): exit status {rc}:\n{out}")
            # 100 at 200/s, with a burst of at most 2: about half a second
            if res["messages"]["accepted"] != n or not 0.4 <= res["seconds"] <= 5:
                mxtest.fail(f"run 5 ({what}): {res['messages']['accepted']} messages in "
                            f"{res['seconds']} s at --rate 200 --rate-of {what}")
            print(f"ok: --rate 200 --rate-of {what}: {n} in {res['seconds']:.2f} s")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
