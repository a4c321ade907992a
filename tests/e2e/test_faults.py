"""Fault injection into the spool with libfiu (Debian's fiu-utils): the writer's write(2)
and fdatasync(2) fail, write(2)s come back short, the disk is full. "250 means durable"
(RFC 5321 section 6.1; dataplane/spool/spool_writer.h): every message of a failed batch is
answered 451 4.3.0 (452 4.3.1 for ENOSPC and EDQUOT), never 250, and the writer cuts what it
never acknowledged, so a refused message does not come back at the next start.

How: the gateway runs under `fiu-run -x`: libfiu's POSIX preload library wraps libc's
write, fdatasync, ... and a control FIFO lets fiu-ctrl switch failure points on and off in
the running process (they are switched on after the start-up, which needs fdatasync
itself). The points used, from libfiu's preload/posix/modules/posix.io.mod:
  posix/io/sync/fdatasync   fails with -1; errno from failinfo=N, else a random one of
                            EBADFD EIO EROFS EINVAL
  posix/io/rw/write         fails with -1 before writing anything; errno from failinfo=N,
                            else a random one of EBADFD EFAULT EFBIG EINTR EINVAL EIO ENOSPC
  posix/io/rw/write/reduce  count -= random() % count before the real write: a short write
Only the spool writer calls fdatasync. write(2) is also how log lines reach the maillog
(they are lost or cut while the point is on: harmless, and nothing here reads them then);
the writer wakes the workers with eventfd_write(), which libc does not route through its
exported write(), so the wake-ups are not failed with the segment writes (an eventfd write
cannot fail with EIO or ENOSPC in reality, and a lost wake-up would strand the replies).

Under AddressSanitizer the ASan runtime must come first in LD_PRELOAD; fiu-run sets
LD_PRELOAD itself, so its command is a shell that puts the runtime in front and execs the
gateway (same process, so the FIFO fiu-run's library made is the gateway's).

Scenarios, each with a fresh gateway and spool, the spool read at the end by the gateway's
own recovery (a restart without faults) and mxgate-spoolcat:
  1. fdatasync fails (EIO) for every batch: concurrent messages all get 451 4.3.0; after a
     restart without faults the spool holds none of them, and new mail gets 250.
  2. write(2) fails with ENOSPC: 452 4.3.1, never 250; fdatasync failing with EDQUOT: the
     same; each time, once the fault is off, mail is accepted again without a restart.
  3. Every write(2) is short: the writer writes the rest, so every message gets 250 and
     is spooled byte-exact (a short write alone is no error: spool_writer.c retries it).
  4. Random faults under concurrent load (fdatasync EIO, write EFBIG, short writes mixed,
     so also short writes followed by a failure), a ledger of every message and its reply:
     every 250 is in the spool exactly once, under its queue ID and byte-exact; no refused
     message is (the writer truncated the unsynced tail); recovery finds nothing damaged,
     corrupt or torn.
  5. The same with ftruncate failing too, so the writer cannot cut the tail: refused
     messages may come back ("a duplicate, never a loss", spool_writer.h), but only
     complete and byte-exact, and every 250 is still there exactly once.
"""

import atexit
import os
import pwd
import random
import re
import shutil
import smtplib
import subprocess
import threading
import time

import mxtest
from mxtest import Gateway, binary_from_argv, fail, need_tool, read_spool

# Without them the test fails, naming the package (fiu-utils; libfiu0 for the preload
# library fiu-run -x puts in front of the gateway).
FIU_RUN = need_tool("fiu-run")
FIU_CTRL = need_tool("fiu-ctrl")
need_tool("/usr/lib/fiu/fiu_posix_preload.so")

binary = binary_from_argv()
SEED = int(os.environ.get("MXGATE_FAULTS_SEED", str(int(time.time()))))
print(f"seed {SEED} (set MXGATE_FAULTS_SEED to repeat the client side; libfiu draws its own)")
rng = random.Random(SEED)

ERR_TEXT = b"4.3.0 Error: queue file write error"
FULL_TEXT = b"4.3.1 Insufficient system storage"
# Linux errno values, handed to libfiu as failinfo (it sets errno to failinfo)
EIO, EFBIG, ENOSPC, EDQUOT = 5, 27, 28, 122


def asan_runtime(path):
    """The shared ASan runtime the binary links (gcc's -fsanitize=address), or None."""
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if "libasan.so" in line and "=>" in line:
            return line.split("=>", 1)[1].split("(", 1)[0].strip()
    return None


ASAN_RT = asan_runtime(binary)


live = []


@atexit.register
def kill_leftovers():
    """After a failure: a gateway with faults still on may not even stop on SIGTERM (its
    own wake-ups can be failed), so kill it; its directory stays for a look."""
    for gw in live:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


class FaultGateway(Gateway):
    """The gateway under fiu-run -x with a control FIFO in its directory; with
    inject = False it starts plainly (the restart without faults)."""

    def __init__(self, binary_path, **kw):
        super().__init__(binary_path, **kw)
        self.inject = True
        self.fifo = os.path.join(self.dir, "fiu-ctrl")
        live.append(self)

    def start(self):
        if not self.inject:
            return super().start()
        cmd = [FIU_RUN, "-x", "-f", self.fifo]
        # As root the gateway would become mail_owner after start, and libfiu's control
        # thread, which opens its root-only FIFOs again for every command, could not: under
        # libfiu the gateway runs as that user from the start (its directory the user's).
        try:
            pw = pwd.getpwnam("mxgate") if os.geteuid() == 0 else None
        except KeyError:
            pw = None  # the gateway refuses to start and says why
        if pw:
            for dirpath, dirnames, filenames in os.walk(self.dir):
                for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                    os.lchown(n, pw.pw_uid, pw.pw_gid)
            cmd = [need_tool("setpriv"), f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                   "--init-groups", "--"] + cmd
        if ASAN_RT:
            cmd += ["/bin/sh", "-c", 'LD_PRELOAD="$0 $LD_PRELOAD" exec "$@"', ASAN_RT]
        cmd += [self.binary, "-c", self.config_path]
        # No fiu-run -c: its library would keep a copy of FIU_ENABLE that LeakSanitizer
        # reports; every point is switched with fiu-ctrl, and off again before the stop.
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.stderr, stderr=subprocess.STDOUT)
        if not mxtest.wait_port(self.host, self.port, proc=self.proc):
            self.stop(check=False)
            fail(f"gateway did not come up under fiu-run:\n{self.output()}")
        if not os.path.exists(f"{self.fifo}-{self.proc.pid}.in"):
            self.stop(check=False)
            fail(f"no libfiu control FIFO {self.fifo}-{self.proc.pid}.in")
        return self

    def fiu(self, *commands):
        """Run libfiu remote-control commands in the gateway; fiu-ctrl exits 0 whatever
        happens and reports a failed command on stdout."""
        args = [FIU_CTRL, "-f", self.fifo]
        for c in commands:
            args += ["-c", c]
        r = subprocess.run(args + [str(self.proc.pid)], capture_output=True, text=True,
                           timeout=20)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            fail(f"fiu-ctrl {commands}: rc {r.returncode}: {r.stdout}{r.stderr}")

    def restart_clean(self):
        """Stop (exit 0 required) and start again without libfiu: recovery with repair."""
        self.stop()
        self.inject = False
        self.start()


# ---- messages and their ledger ----

ledger_lock = threading.Lock()
ledger_next = 0


def take_numbers(k):
    global ledger_next
    with ledger_lock:
        first = ledger_next
        ledger_next += k
    return list(range(first, first + k))


def message_for(n, big=False):
    """Ledger entry n: deterministic, so the spool can be checked byte-exact; no line
    starts with '.', so no dot-stuffing is involved. Big ones span many 64 KiB fragments
    and several writes."""
    head = (f"From: <fault{n}@client.example>\r\nTo: <sink@localhost>\r\n"
            f"Subject: ledger {n}\r\nX-Ledger: {n}\r\n\r\n").encode()
    size = 300 * 1024 + n % 997 if big else 300 + (n * 53) % 4000
    line = f"{n:08d} ".encode() + bytes(range(0x41, 0x41 + 26)) * 3 + b"\r\n"
    return head + (line * (size // len(line) + 1))[:size] + b"\r\n"


big_extra = set()


def is_big(n):
    return n % 17 == 5 or n in big_extra


def transact(s, n):
    """One transaction on an open smtplib session: (stage, code, text) where stage is
    where it ended: MAIL, RCPT, DATA (the DATA command) or END (the reply to the dot)."""
    code, text = s.mail("fault@client.example")
    if code != 250:
        return ("MAIL", code, text)
    code, text = s.rcpt("sink@localhost")
    if code != 250:
        s.rset()
        return ("RCPT", code, text)
    try:
        code, text = s.data(message_for(n, is_big(n)))
    except smtplib.SMTPDataError as e:
        s.rset()
        return ("DATA", e.smtp_code, e.smtp_error)
    return ("END", code, text)


def qid_of(text):
    m = re.match(rb"2\.0\.0 Ok: queued as (\S+)$", text)
    if not m:
        fail(f"unexpected 250 text {text!r}")
    return m.group(1).decode()


def send_together(port, numbers):
    """One connection per message, all at once: the dots are sent together after a
    barrier, so the commits share batches. Returns {n: (stage, code, text)}."""
    results = {}
    barrier = threading.Barrier(len(numbers))
    lock = threading.Lock()

    def one(n):
        try:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="fault.client.example",
                              timeout=30) as s:
                s.ehlo()
                barrier.wait(timeout=30)
                r = transact(s, n)
        except (smtplib.SMTPException, OSError, threading.BrokenBarrierError) as e:
            r = ("ERROR", 0, repr(e).encode())
        with lock:
            results[n] = r

    threads = [threading.Thread(target=one, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if len(results) != len(numbers):
        fail(f"clients hung: replies for {sorted(results)} of {numbers}")
    for n, r in results.items():
        if r[0] == "ERROR":
            fail(f"ledger {n}: no reply: {r[2]!r}; a wake-up of a worker lost to the "
                 f"injected write(2) fault? (the writer must wake workers with "
                 f"eventfd_write(), see the top of this file)")
    return results


def expect_refused(results, code, text, what):
    """Every message refused with code/text at the dot or (the spool full) at DATA/MAIL;
    never a 250."""
    for n, (stage, c, t) in sorted(results.items()):
        if c == 250:
            fail(f"{what}: ledger {n} got 250 ({t!r}) from a failing spool")
        allowed_stage = stage == "END" or (code == 452 and stage in ("MAIL", "DATA"))
        if not allowed_stage or c != code or t != text:
            fail(f"{what}: ledger {n}: expected {code} {text!r}, got {stage} {c} {t!r}")


def accept_again(gw, what, timeout=8.0):
    """Once the fault is off, mail must be accepted again without a restart: the only
    reply allowed until then is the short ENOSPC back-off's 452 4.3.1. Returns
    {n: queue ID} of what was accepted and the list of numbers refused meanwhile."""
    deadline = time.monotonic() + timeout
    refused = []
    while True:
        n = take_numbers(1)[0]
        r = send_together(gw.port, [n])[n]
        if r[1] == 250 and r[0] == "END":
            return {n: qid_of(r[2])}, refused
        if r[1] != 452 or r[2] != FULL_TEXT:
            fail(f"{what}: with the fault off, ledger {n} got {r}")
        refused.append(n)
        if time.monotonic() > deadline:
            fail(f"{what}: mail not accepted again {timeout} s after the fault went off "
                 f"(the ENOSPC back-off is 1 s)")
        time.sleep(0.2)


def recovery_stats(gw):
    """The numbers of the last 'spool ... recovered:' log line."""
    lines = re.findall(r"spool \S+ recovered: .*", gw.log())
    if not lines:
        fail(f"no recovery line in the log:\n{gw.output()}")
    m = re.search(r"(\d+) message\(s\) kept; discarded: (\d+) incomplete \(never "
                  r"acknowledged\), (\d+) damaged, (\d+) corrupt region\(s\), (\d+) torn",
                  lines[-1])
    if not m:
        fail(f"unparsable recovery line {lines[-1]!r}")
    keys = ("kept", "incomplete", "damaged", "corrupt", "torn")
    return dict(zip(keys, map(int, m.groups()))), lines[-1]


def check_spool(gw, sent, acked, refused, resurrect_ok=False):
    """The spool as recovery reads it (mxgate-spoolcat -x) against the ledger:
    sent: every number sent; acked: {n: queue ID of its 250}; refused: numbers answered
    4xx. Every acked message exactly once, under its queue ID, byte-exact; a refused one
    never, unless resurrect_ok (then at most once, byte-exact). Returns how many refused
    ones came back."""
    copies = {}
    for qid, env, msg in read_spool(gw.binary, gw.spool):
        m = re.search(rb"\r\nX-Ledger: (\d+)\r\n", msg)
        if not m:
            fail(f"{qid}: a spooled message without a ledger header")
        n = int(m.group(1))
        if n not in sent:
            fail(f"{qid}: ledger {n} was never sent")
        want = message_for(n, is_big(n))
        if not msg.endswith(want) or not msg[:len(msg) - len(want)].startswith(b"Received: from "):
            fail(f"{qid}: ledger {n} is not byte-exact ({len(msg)} bytes spooled)")
        if env.get("sender") != "fault@client.example" or env["rcpt"] != ["sink@localhost"]:
            fail(f"{qid}: wrong envelope {env}")
        copies.setdefault(n, []).append(qid)
    for n, qid in acked.items():
        if copies.get(n) != [qid]:
            fail(f"LOST or duplicated: ledger {n} got 250 (queued as {qid}); spool holds "
                 f"{copies.get(n, [])}")
    back = 0
    for n in refused:
        if n in copies:
            if not resurrect_ok:
                fail(f"ledger {n} was refused (4xx) but is in the spool as {copies[n]}: "
                     f"the unsynced tail of its failed batch was not cut")
            if len(copies[n]) != 1:
                fail(f"refused ledger {n} came back {len(copies[n])} times")
            back += 1
    for n in copies:
        if n not in acked and n not in refused:
            fail(f"ledger {n} is in the spool but got neither a 250 nor a 4xx")
    return back


def finish(gw):
    if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
        shutil.rmtree(gw.dir, ignore_errors=True)


# ---- 1. fdatasync fails for every batch ----

def scenario_fdatasync_eio():
    gw = FaultGateway(binary).start()
    gw.fiu(f"enable name=posix/io/sync/fdatasync,failinfo={EIO}")
    numbers = take_numbers(8)
    results = send_together(gw.port, numbers)
    expect_refused(results, 451, ERR_TEXT, "fdatasync EIO")
    warnings = re.findall(r"warning: \S+: queue file write error: Input/output error", gw.log())
    if len(warnings) != len(numbers):
        fail(f"fdatasync EIO: {len(warnings)} 'queue file write error' warnings for "
             f"{len(numbers)} refused messages:\n{gw.output()}")
    gw.fiu("disable name=posix/io/sync/fdatasync")
    gw.restart_clean()
    if read_spool(binary, gw.spool):
        fail("fdatasync EIO: refused messages are in the spool after the restart")
    n = take_numbers(1)[0]
    r = send_together(gw.port, [n])[n]
    if r[:2] != ("END", 250):
        fail(f"fdatasync EIO: after a restart without faults ledger {n} got {r}")
    acked = {n: qid_of(r[2])}
    gw.stop()
    check_spool(gw, set(numbers) | {n}, acked, set(numbers))
    print(f"1. fdatasync EIO: {len(numbers)} concurrent messages answered 451 4.3.0, none "
          f"spooled; after a restart without faults new mail is accepted")
    finish(gw)


# ---- 2. the disk is full (write ENOSPC) or the quota is exceeded (fdatasync EDQUOT) ----

def scenario_full():
    gw = FaultGateway(binary).start()
    sent, acked, refused = set(), {}, set()
    for point, errno_value, label in (("posix/io/rw/write", ENOSPC, "write ENOSPC"),
                                      ("posix/io/sync/fdatasync", EDQUOT, "fdatasync EDQUOT")):
        gw.fiu(f"enable name={point},failinfo={errno_value}")
        numbers = take_numbers(6)
        sent |= set(numbers)
        results = send_together(gw.port, numbers)
        expect_refused(results, 452, FULL_TEXT, label)
        refused |= set(numbers)
        # a second round while the fault is still on: still no 250
        more = take_numbers(3)
        sent |= set(more)
        expect_refused(send_together(gw.port, more), 452, FULL_TEXT, label + " (again)")
        refused |= set(more)
        gw.fiu(f"disable name={point}")
        ok, meanwhile = accept_again(gw, label)
        acked.update(ok)
        sent |= set(ok) | set(meanwhile)
        refused |= set(meanwhile)
        print(f"2. {label}: {len(numbers) + len(more)} messages answered 452 4.3.1; with "
              f"the fault off, mail accepted again after {len(meanwhile)} back-off "
              f"refusal(s)")
    gw.restart_clean()
    gw.stop()
    check_spool(gw, sent, acked, refused)
    finish(gw)


# ---- 3. short writes ----

def scenario_short_writes():
    gw = FaultGateway(binary).start()
    gw.fiu("enable name=posix/io/rw/write/reduce")
    numbers = take_numbers(10)
    big_extra.update(numbers[:2])  # many fragments, writes of up to 1 MiB
    results = send_together(gw.port, numbers)
    acked = {}
    for n, (stage, code, text) in sorted(results.items()):
        if (stage, code) != ("END", 250):
            fail(f"short writes: ledger {n} got {stage} {code} {text!r}: a short write "
                 f"must be completed, not fail the batch")
        acked[n] = qid_of(text)
    gw.fiu("disable name=posix/io/rw/write/reduce")
    gw.restart_clean()
    gw.stop()
    check_spool(gw, set(numbers), acked, set())
    print(f"3. short writes: all {len(numbers)} messages (2 big) accepted and spooled "
          f"byte-exact")
    finish(gw)


# ---- 4 and 5. random faults under concurrent load ----

CLIENTS = 6
LOAD_TIME = float(os.environ.get("MXGATE_FAULTS_SECONDS", "20"))


def load(gw, total, seconds):
    """CLIENTS threads send ledger entries (1 to 10 per connection) until `total` are sent
    or `seconds` passed. Returns (sent, acked {n: qid}, refused set, replies by kind)."""
    numbers = take_numbers(total)
    queue = list(numbers)
    lock = threading.Lock()
    sent, acked, refused, kinds, errors = set(), {}, set(), {}, []
    stop_at = time.monotonic() + seconds
    crng = random.Random(rng.random())

    def next_number():
        with lock:
            if not queue or time.monotonic() > stop_at:
                return None
            n = queue.pop(0)
            sent.add(n)
            return n

    def client(k):
        r_local = random.Random(crng.random() + k)
        while True:
            try:
                s = smtplib.SMTP("127.0.0.1", gw.port, local_hostname="load.client.example",
                                 timeout=30)
            except OSError as e:
                with lock:
                    errors.append(f"connect: {e!r}")
                return
            try:
                s.ehlo()
                for _ in range(r_local.randint(1, 10)):
                    n = next_number()
                    if n is None:
                        s.quit()
                        return
                    stage, code, text = transact(s, n)
                    # no fail() here: it would only end this thread
                    queued = re.match(rb"2\.0\.0 Ok: queued as (\S+)$", text)
                    with lock:
                        kinds[(stage, code, text)] = kinds.get((stage, code, text), 0) + 1
                        if (stage, code) == ("END", 250) and queued:
                            acked[n] = queued.group(1).decode()
                        elif (code, text) in ((451, ERR_TEXT), (452, FULL_TEXT)):
                            refused.add(n)
                        else:
                            errors.append(f"ledger {n}: {stage} {code} {text!r}")
                s.quit()
            except (smtplib.SMTPException, OSError) as e:
                with lock:
                    errors.append(f"session: {e!r}")
                return

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
        if t.is_alive():
            fail("a load client hung: a reply never came")
    if errors:
        fail(f"the gateway must answer every message with 250, 451 4.3.0 or 452 4.3.1 and "
             f"keep the session: {errors[:5]}")
    return sent, acked, refused, kinds


# Distinct errnos, so the log tells which call failed a batch.
RANDOM_FAULTS = (
    f"enable_random name=posix/io/sync/fdatasync,failinfo={EIO},probability=0.15",
    f"enable_random name=posix/io/rw/write,failinfo={EFBIG},probability=0.04",
    "enable_random name=posix/io/rw/write/reduce,probability=0.5",
)


def scenario_random(total):
    gw = FaultGateway(binary).start()
    gw.fiu(*RANDOM_FAULTS)
    t0 = time.monotonic()
    sent, acked, refused, kinds = load(gw, total, LOAD_TIME)
    elapsed = time.monotonic() - t0
    gw.fiu("disable name=posix/io/sync/fdatasync", "disable name=posix/io/rw/write",
           "disable name=posix/io/rw/write/reduce")
    # With these probabilities and hundreds of batches, a run without a 250, or without
    # batches failed by write and by fdatasync, is vanishingly unlikely: if it happens,
    # the injection did not reach the writer. (Log lines themselves are written with
    # write(2), so a few are lost or cut, never all.)
    log = gw.log()
    by_write = len(re.findall(r"queue file write error: File too large", log))
    by_sync = len(re.findall(r"queue file write error: Input/output error", log))
    if not acked or not refused or not by_write or not by_sync:
        fail(f"random faults: {len(acked)} accepted, {len(refused)} refused, {by_write} "
             f"logged write failures, {by_sync} logged fdatasync failures: the faults did "
             f"not take effect as expected ({kinds})")
    gw.restart_clean()
    st, line = recovery_stats(gw)
    gw.stop()
    check_spool(gw, sent, acked, refused)
    # The writer cut every failed tail at the last sync, so recovery finds whole records
    # only; 'incomplete' (fragments of a big message whose commit failed, synced by an
    # earlier batch) is allowed: those are never acknowledged and are dropped.
    if st["damaged"] or st["corrupt"] or st["torn"] or st["kept"] != len(acked):
        fail(f"random faults: recovery after the faults: {line} ({len(acked)} accepted)")
    print(f"4. random faults: {len(sent)} messages from {CLIENTS} clients in {elapsed:.1f} s: "
          f"{len(acked)} accepted and spooled byte-exact, {len(refused)} refused (logged: "
          f"{by_write} by write, {by_sync} by fdatasync) and not spooled; recovery: {st}")
    finish(gw)


def scenario_random_no_cut(total):
    gw = FaultGateway(binary).start()
    gw.fiu(f"enable_random name=posix/io/sync/fdatasync,failinfo={EIO},probability=0.25",
           f"enable name=posix/io/rw/ftruncate,failinfo={EIO}")
    sent, acked, refused, kinds = load(gw, total, LOAD_TIME / 2)
    gw.fiu("disable name=posix/io/sync/fdatasync", "disable name=posix/io/rw/ftruncate")
    if not acked or not refused:
        fail(f"no cut: {len(acked)} accepted, {len(refused)} refused ({kinds})")
    gw.restart_clean()
    st, line = recovery_stats(gw)
    gw.stop()
    back = check_spool(gw, sent, acked, refused, resurrect_ok=True)
    # fdatasync failed after complete writes: the uncut tails hold whole records.
    if st["damaged"] or st["corrupt"] or st["torn"]:
        fail(f"no cut: recovery found damage: {line}")
    print(f"5. fdatasync EIO with ftruncate failing: {len(acked)} accepted and spooled "
          f"byte-exact; {back} of {len(refused)} refused messages came back whole "
          f"(duplicates, never losses)")
    finish(gw)


t_start = time.monotonic()
scenario_fdatasync_eio()
scenario_full()
scenario_short_writes()
scenario_random(int(os.environ.get("MXGATE_FAULTS_MESSAGES", "800")))
scenario_random_no_cut(300)
print(f"ok: fault injection scenarios passed in {time.monotonic() - t_start:.1f} s")
