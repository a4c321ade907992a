"""Crash safety of the spool: under load from concurrent SMTP clients, the gateway is killed
with SIGKILL at random moments, many times, and restarted on the same spool each time.

Each message carries a ledger header (X-Ledger: N) and a body derived from N; some are
several hundred KiB, so they span many spool fragments. A client that does not get a
250 for N (the gateway died, or answered 4xx) retries N on a new connection, as a real
MTA would. At the end, the spool as the gateway's own recovery reads it (mxgate-spoolcat)
must hold:
  - every N that got a 250, under the queue ID of that 250, exactly once;
  - other copies of an N only where no 250 was seen for them (a commit that completed
    while the gateway died before the reply left): duplicates, never losses;
  - no message that was never sent, and every message byte-exact (our Received: header,
    then exactly what the client sent).
"""

import os
import random
import re
import signal
import smtplib
import socket
import sys
import threading
import time

from mxtest import Gateway, binary_from_argv, fail, read_spool

ROUNDS = int(os.environ.get("MXGATE_CRASH_ROUNDS", "15"))
CLIENTS = 8
BIG_EVERY = 15         # every 15th message is big (several fragments)
BIG_SIZE = 150 * 1024
SEED = int(os.environ.get("MXGATE_CRASH_SEED", str(int(time.time()))))

binary = binary_from_argv()
rng = random.Random(SEED)
print(f"seed {SEED} (set MXGATE_CRASH_SEED to repeat)")


def message_for(n):
    """The message for ledger entry n: deterministic, so the spool can be checked
    byte-exact. Lines never start with '.', so no dot-stuffing is involved."""
    head = (f"From: <crash{n}@client.example>\r\nTo: <sink@localhost>\r\n"
            f"Subject: ledger {n}\r\nX-Ledger: {n}\r\n\r\n").encode()
    size = BIG_SIZE + n % 1000 if n % BIG_EVERY == 0 else 200 + (n * 37) % 3000
    line = f"{n:08d} ".encode() + bytes(range(0x41, 0x41 + 26)) * 3 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return head + body + b"\r\n"


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.next_n = 0
        self.acked = {}      # n -> queue ID of its 250
        self.attempts = {}   # n -> number of times DATA's end was sent
        self.errors = 0

    def take(self):
        with self.lock:
            n = self.next_n
            self.next_n += 1
            return n


stop = threading.Event()


def client(gw, ledger):
    """Send ledger entries until stopped; retry an entry until it gets a 250."""
    pending = None
    while not stop.is_set():
        try:
            s = smtplib.SMTP("127.0.0.1", gw.port, local_hostname="crash.client.example",
                             timeout=20)
        except OSError:
            time.sleep(0.05)  # the gateway is down: it is being restarted
            continue
        try:
            s.ehlo()
            for _ in range(rng.randint(1, 20)):
                if stop.is_set():
                    break
                n = pending if pending is not None else ledger.take()
                pending = n
                if s.mail("crash@client.example")[0] != 250:
                    break
                if s.rcpt("sink@localhost")[0] != 250:
                    break
                with ledger.lock:
                    ledger.attempts[n] = ledger.attempts.get(n, 0) + 1
                code, resp = s.data(message_for(n))
                if code != 250:
                    with ledger.lock:
                        ledger.errors += 1
                    break
                m = re.match(rb"2\.0\.0 Ok: queued as (\S+)$", resp)
                if not m:
                    fail(f"unexpected 250 text {resp!r}")
                with ledger.lock:
                    if n in ledger.acked:
                        fail(f"ledger {n} acknowledged twice")
                    ledger.acked[n] = m.group(1).decode()
                pending = None
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
        except (smtplib.SMTPException, OSError):
            pass  # killed under us; `pending` is sent again
        finally:
            try:
                s.close()
            except OSError:
                pass


def kill9(gw):
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    gw.proc = None
    gw.stderr.close()


ledger = Ledger()
gw = Gateway(binary, workers=2)
gw.start()
threads = [threading.Thread(target=client, args=(gw, ledger), daemon=True)
           for _ in range(CLIENTS)]
for t in threads:
    t.start()
t0 = time.monotonic()
try:
    before = 0
    for r in range(ROUNDS):
        time.sleep(rng.uniform(0.2, 2.0))
        kill9(gw)
        now = len(ledger.acked)
        print(f"round {r + 1}: killed after {now} acknowledged (+{now - before} since the "
              f"last start)")
        before = now
        sys.stdout.flush()
        gw.start()
    time.sleep(0.5)
finally:
    stop.set()
    for t in threads:
        t.join(timeout=60)
elapsed = time.monotonic() - t0
# One more crash with the clients gone, then a clean start (recovery with repair) and a
# clean stop: the gateway itself accepts what it finds.
kill9(gw)
gw.start()
gw.stop()
log = gw.log()
starts = len(re.findall(r"spool \S+ recovered: ", log))
if starts != ROUNDS + 2:
    fail(f"{starts} recoveries logged, expected {ROUNDS + 2}:\n{gw.output()}")

spooled = read_spool(binary, gw.spool)
copies = {}
for qid, env, msg in spooled:
    m = re.search(rb"\r\nX-Ledger: (\d+)\r\n", msg)
    if not m:
        fail(f"{qid}: no ledger header in a spooled message")
    n = int(m.group(1))
    if n >= ledger.next_n or n not in ledger.attempts:
        fail(f"{qid}: ledger {n} was never sent")
    want = message_for(n)
    if not msg.endswith(want) or not msg[:len(msg) - len(want)].startswith(b"Received: from "):
        fail(f"{qid}: ledger {n} is not byte-exact ({len(msg)} bytes spooled)")
    if env["sender"] != "crash@client.example" or env["rcpt"] != ["sink@localhost"]:
        fail(f"{qid}: wrong envelope {env}")
    copies.setdefault(n, []).append(qid)

acked_ids = set(ledger.acked.values())
duplicates = 0
for n, qid in sorted(ledger.acked.items()):
    found = copies.get(n, [])
    if qid not in found:
        fail(f"LOST: ledger {n} got 250 (queued as {qid}) but is not in the spool "
             f"(copies: {found})")
    if found.count(qid) != 1:
        fail(f"ledger {n}: queue ID {qid} spooled {found.count(qid)} times")
for n, found in copies.items():
    extra = [q for q in found if q != ledger.acked.get(n)]
    for q in extra:
        if q in acked_ids:
            fail(f"ledger {n}: copy {q} is the acknowledged ID of another message")
    if len(extra) > ledger.attempts[n] - (1 if n in ledger.acked else 0):
        fail(f"ledger {n}: {len(extra)} unacknowledged copies from {ledger.attempts[n]} "
             f"attempts")
    duplicates += len(extra)

print(f"ok: {ROUNDS} kill -9 rounds in {elapsed:.1f} s; {len(ledger.acked)} messages "
      f"acknowledged and all spooled byte-exact; {len(spooled)} in the spool, "
      f"{duplicates} duplicate(s) of messages whose 250 was never seen, "
      f"{ledger.errors} 4xx answer(s)")
if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
    import shutil
    shutil.rmtree(gw.dir, ignore_errors=True)
