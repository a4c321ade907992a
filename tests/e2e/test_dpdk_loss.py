"""The DPDK transport's TCP over a bad network: with mxgate_dpdk_fault =
seed=N,drop=5,reorder=5,dup=1 (5% of frames dropped, 5% held back, 1% duplicated, in both
directions), 2,000 messages of seeded random sizes up to 1 MB, sent by a few concurrent
smtplib clients in the client namespace of tests/e2e/netns.py, are every one spooled
byte-exact and exactly once. A client never retries: an error fails the test.

The seed is printed; MXGATE_TEST_SEED=N repeats a run (the same sizes, contents and faults).
Needs netns.py's tools (a missing one fails the test, naming its package) and root
(skipped, exit 77, otherwise).
"""

import os
import random
import subprocess
import time

import netns
from mxtest import binary_from_argv, fail

netns.need_netns_tools()
binary = binary_from_argv()

MESSAGES = 2000
MAX_SIZE = 1024 * 1024
CLIENTS = int(os.environ.get("MXGATE_LOSS_CLIENTS", "4"))
PER_SESSION = 10  # messages per SMTP session before QUIT and a new connection
SEED = int(os.environ.get("MXGATE_TEST_SEED", random.SystemRandom().randrange(1, 1 << 31)))
FAULT = f"seed={SEED},drop=5,reorder=5,dup=1"
SENDER = "loss@sender.example"
# auto (the default) or software; set to compare the two ways of steering flows
STEERING = os.environ.get("MXGATE_TEST_STEERING", "auto")
print(f"seed {SEED} (set MXGATE_TEST_SEED to repeat); mxgate_dpdk_fault = {FAULT}")

# The messages, shared by the test and the clients (which run it as a script): message i of
# a seed is a pure function of (seed, i). Sizes: most small, some large, message 0 exactly
# MAX_SIZE. Lines are CRLF, 1 to 998 bytes (RFC 5322 2.1.1), printable ASCII including '.',
# so lines that start with a dot (dot-stuffing, RFC 5321 4.5.2) occur.
GEN = r"""
import random

MAX_SIZE = 1024 * 1024
_PRINTABLE = bytes(range(0x21, 0x7f))
_TABLE = bytes(_PRINTABLE[i % len(_PRINTABLE)] for i in range(256))


def message_size(seed, i):
    if i == 0:
        return MAX_SIZE
    r = random.Random(f"size-{seed}-{i}")
    p = r.random()
    if p < 0.70:
        return r.randrange(400, 8 * 1024)
    if p < 0.93:
        return r.randrange(8 * 1024, 100 * 1024)
    if p < 0.99:
        return r.randrange(100 * 1024, 512 * 1024)
    return r.randrange(512 * 1024, MAX_SIZE + 1)


def message(seed, i):
    size = message_size(seed, i)
    r = random.Random(f"body-{seed}-{i}")
    head = (f"From: <loss@sender.example>\r\nTo: <rcpt{i}@localhost>\r\n"
            f"Subject: loss test {seed} message {i}\r\nX-Loss-Test: {i}\r\n\r\n").encode()
    block = r.randbytes(8192).translate(_TABLE)
    width = r.randrange(1, 999)  # line length of this message, CRLF excluded
    parts, total, pos = [head], len(head), 0
    while size - total > width + 2 + 1000:
        n = min(width, 8192 - pos)
        if n <= 0:
            pos, n = 0, min(width, 8192)
        parts.append(block[pos:pos + n] + b"\r\n")
        total += n + 2
        pos += n
    while size - total > 1000:
        parts.append(b"y" * 500 + b"\r\n")
        total += 502
    parts.append(b"z" * (size - total - 2) + b"\r\n")
    return b"".join(parts)
"""

# A client: argv host port seed index clients count per_session. Sends messages i with
# i % clients == index over smtplib, per_session per connection, and never retries.
CLIENT = GEN + r"""
import smtplib, sys, time
host, port, seed, index, clients, count, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
mine = list(range(index, count, clients))
sent = 0
t0 = time.monotonic()
try:
    for start in range(0, len(mine), per):
        with smtplib.SMTP(host, port, timeout=180) as s:
            s.ehlo(f"loss{index}.test.example")
            for i in mine[start:start + per]:
                refused = s.sendmail("loss@sender.example", [f"rcpt{i}@localhost"],
                                     message(seed, i))
                if refused:
                    raise RuntimeError(f"message {i}: refused {refused}")
                sent += 1
except Exception as e:
    print(f"client {index}: FAILED after {sent} messages ({time.monotonic() - t0:.1f} s) "
          f"at message {mine[sent] if sent < len(mine) else '?'}: {type(e).__name__}: {e}")
    sys.exit(1)
print(f"client {index}: {sent} messages in {time.monotonic() - t0:.1f} s")
"""

gen = {}
exec(GEN, gen)
sizes = [gen["message_size"](SEED, i) for i in range(MESSAGES)]
total_bytes = sum(sizes)
print(f"{MESSAGES} messages, {total_bytes / 1e6:.1f} MB, largest {max(sizes)}, "
      f"median {sorted(sizes)[MESSAGES // 2]}, over 100 kB: {sum(s > 100 * 1024 for s in sizes)}")

with netns.Topology() as topo:
    with netns.DpdkGateway(binary, topo, workers=2, fault=FAULT, steering=STEERING) as gw:
        base = gw.stats()
        t0 = time.monotonic()
        clients = [topo.cl_popen([netns.client_python(), "-c", CLIENT, topo.gw_ip4, "25",
                                  str(SEED), str(k), str(CLIENTS), str(MESSAGES),
                                  str(PER_SESSION)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for k in range(CLIENTS)]
        outs = []
        deadline = t0 + 660  # meson's timeout is 900 s; leave room to say what happened
        for c in clients:
            try:
                outs.append(c.communicate(timeout=max(1, deadline - time.monotonic()))[0].strip())
            except subprocess.TimeoutExpired:
                c.kill()
                outs.append(c.communicate()[0].strip() + " (killed after 660 s)")
        elapsed = time.monotonic() - t0
        print("\n".join(outs))
        st = gw.stats()
        if any(c.returncode != 0 for c in clients):
            fail(f"a client failed (seed {SEED}):\n" + "\n".join(outs) +
                 f"\nstats: {st}\n{gw.output()}")
        # the faults must really have been injected, or this is an ordinary transfer test
        if not all(st.get(k, 0) > 0 for k in ("fault_drop", "fault_dup", "fault_delay")):
            fail(f"mxgate_dpdk_fault = {FAULT} but the stats show no injected fault: "
                 + " ".join(f"{k}={st.get(k)}" for k in ("fault_drop", "fault_dup",
                                                         "fault_delay")))
        seen = {}
        for qid, env, msg in gw.spooled():
            if env.get("sender") != SENDER:
                continue
            marker = msg.find(b"\r\nX-Loss-Test: ")
            if marker < 0:
                fail(f"{qid}: no X-Loss-Test: header")
            i = int(msg[marker + 15:msg.index(b"\r\n", marker + 2)])
            if i in seen:
                fail(f"message {i} spooled twice: {seen[i]} and {qid} (seed {SEED})")
            seen[i] = qid
            want = gen["message"](SEED, i)
            if env["rcpt"] != [f"rcpt{i}@localhost"]:
                fail(f"{qid}: message {i} has recipients {env['rcpt']}")
            if not msg.endswith(want):
                fail(f"{qid}: message {i} is not byte-exact ({len(msg)} bytes stored, "
                     f"{len(want)} sent; seed {SEED})")
            prefix = msg[:len(msg) - len(want)]
            if not prefix.startswith(b"Received: from ") or b"\r\n\r\n" in prefix \
                    or prefix.count(b"\r\nReceived: ") or not prefix.endswith(b"\r\n"):
                fail(f"{qid}: message {i}: more than our Received: header in front: {prefix!r}")
        if len(seen) != MESSAGES:
            missing = sorted(set(range(MESSAGES)) - set(seen))
            fail(f"{len(seen)} of {MESSAGES} messages spooled; missing e.g. {missing[:10]} "
                 f"(seed {SEED})")
        # every buffer comes back: the fault injector's held frames and the stack's queues
        end = gw.wait_stat(lambda s: s.get("mbufs_in_use", 1 << 62) <= base["mbufs_in_use"], 60,
                           f"mbufs_in_use back to its idle baseline {base.get('mbufs_in_use')}")
        print(f"mbufs_in_use {base.get('mbufs_in_use')} idle before, "
              f"{st.get('mbufs_in_use')} at the end, {end.get('mbufs_in_use')} idle after")
        print(f"ok: {MESSAGES} messages ({total_bytes / 1e6:.1f} MB) from {CLIENTS} clients "
              f"through {FAULT}: every one spooled byte-exact, exactly once, in {elapsed:.1f} s "
              f"({total_bytes / elapsed / 1e6:.2f} MB/s); "
              + " ".join(f"{k}={st.get(k)}" for k in (
                  "rx_packets", "tx_packets", "fault_drop", "fault_dup", "fault_delay",
                  "tcp_retransmits", "tcp_rto", "tcp_fast_retransmit", "tcp_ooo_segs",
                  "tcp_dup_segs", "tcp_rst_sent", "mbufs_in_use")))
