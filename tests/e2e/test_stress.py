"""Stress (Postfix's STRESS_README) on the kernel transport (argv: mxgate binary).

One worker with mxgate_max_connections = 20, smtpd_timeout = ${stress?{2}:{300}}s and
mxgate_stress_minimum_time = 1s:
  1. a connection opened before stress (A) gets 300 s;
  2. with 19 connections open (95% >= mxgate_stress_enter_percent's 90%) the log says
     "warning: entering stress mode: N of 20 connections in use" (with Postfix's advice
     lines) once, and `mxgate status` says "stress: on";
  3. a connection opened then (S) gets the stress value: after 2 s idle it gets Postfix's
     "421 4.4.2 mx.test.example Error: timeout exceeded" and is closed, while A, idle for
     longer, still answers NOOP;
  4. when the connections close (<= 70%) the log says "leaving stress mode" once, status
     says "stress: off", and SIGUSR1's stress line counts one entry;
  5. a connection opened after stress gets 300 s again (alive after 3 s idle).
"""

import re
import socket
import subprocess
import sys
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
HOST = "mx.test.example"
TIMEOUT_REPLY = f"421 4.4.2 {HOST} Error: timeout exceeded"


class Conn:
    def __init__(self, gw):
        self.s = socket.create_connection((gw.host, gw.port), 10)
        self.f = self.s.makefile("rb")
        self.greeting = self.reply()
        if not self.greeting.startswith("220 "):
            fail(f"no greeting: {self.greeting!r}\n{gw.output()}")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                lines.append("EOF")
                return "\n".join(lines)
            line = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def cmd(self, line):
        self.s.sendall((line + "\r\n").encode())
        return self.reply()

    def close(self):
        self.f.close()
        self.s.close()


def count(text, pattern):
    return len(re.findall(pattern, text))


def status():
    r = subprocess.run([binary, "status", "-c", gw.config_path], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        fail(f"mxgate status exited {r.returncode}:\n{r.stdout}{r.stderr}")
    line = [l for l in r.stdout.splitlines() if l.startswith("stress: ")]
    if len(line) != 1:
        fail(f"mxgate status has no stress line:\n{r.stdout}")
    return line[0]


started = time.monotonic()
gw = mxtest.Gateway(binary, workers=1, extra_config=(
    "mxgate_max_connections = 20\n"
    "smtpd_timeout = ${stress?{2}:{300}}s\n"
    "mxgate_stress_minimum_time = 1s\n"))
with gw:
    # 1. before stress
    a = Conn(gw)
    st = status()
    if not st.startswith("stress: off ("):
        fail(f"status before stress: {st}")

    # 2. 19 open: stress
    others = [Conn(gw) for _ in range(18)]
    mxtest.wait_for(lambda: "entering stress mode" in gw.log(), 10,
                    "the log line entering stress mode", gw.output)
    log = gw.log()
    m = re.search(r"warning: entering stress mode: (\d+) of 20 connections in use "
                  r"\(mxgate_max_connections = 20 on each of 1 worker\(s\), "
                  r"mxgate_stress_enter_percent = 90\): new sessions get the values their "
                  r"parameters have with stress = yes", log)
    if not m or int(m.group(1)) not in (18, 19):
        fail(f"entering stress: unexpected line\n{gw.output()}")
    for advice in ("warning: to avoid this condition, increase mxgate_max_connections or "
                   "mxgate_workers, or reduce the service time per client",
                   "warning: see https://www.postfix.org/STRESS_README.html for examples "
                   "of stress-adapting configuration settings"):
        if count(log, re.escape(advice)) != 1:
            fail(f"advice line missing or repeated: {advice}\n{gw.output()}")
    st = status()
    if not re.match(r"stress: on since \S+ \S+ \(19 of 20 connections in use; enter at 90%, "
                    r"leave at 70%\); entered 1 time\(s\)", st):
        fail(f"status under stress: {st}")

    # 3. a new session gets smtpd_timeout's stress value; A keeps its own
    s = Conn(gw)
    t0 = time.monotonic()
    s.s.settimeout(20)
    got = s.reply()
    waited = time.monotonic() - t0
    if not got.startswith(TIMEOUT_REPLY):
        fail(f"stress session: expected {TIMEOUT_REPLY!r}, got {got!r}\n{gw.output()}")
    if not 1.5 <= waited <= 5.0:
        fail(f"stress session timed out after {waited:.1f} s, expected about 2 s")
    if s.reply() != "EOF":
        fail("stress session: not closed after the timeout reply")
    s.close()
    got = a.cmd("NOOP")
    if not got.startswith("250 "):
        fail(f"the session opened before stress was cut: {got!r}\n{gw.output()}")

    # 4. the connections close: stress ends, once
    for c in others:
        c.close()
    mxtest.wait_for(lambda: "leaving stress mode" in gw.log(), 10,
                    "the log line leaving stress mode", gw.output)
    log = gw.log()
    if not re.search(r"leaving stress mode: \d+ of 20 connections in use "
                     r"\(mxgate_stress_leave_percent = 70\) after \d+s in stress mode, "
                     r"at most (19|20) in use", log):
        fail(f"leaving stress: unexpected line\n{gw.output()}")
    if count(log, "entering stress mode") != 1 or count(log, "leaving stress mode") != 1:
        fail(f"stress changes logged more than once\n{gw.output()}")
    st = status()
    if not re.match(r"stress: off \(\d+ of 20 connections in use; enter at 90%, leave at "
                    r"70%\); entered 1 time\(s\), \d+s in stress mode in all", st):
        fail(f"status after stress: {st}")
    gw.stats()
    m = re.search(r"stress \(SIGUSR1\): stress=off entered=1 stress_seconds=\d+ "
                  r"connections_in_use=\d+ capacity=20", gw.log())
    if not m:
        fail(f"no stress line at SIGUSR1\n{gw.output()}")

    # 5. after stress: the normal value again
    b = Conn(gw)
    time.sleep(3)
    for c, name in ((b, "after stress"), (a, "before stress")):
        got = c.cmd("NOOP")
        if not got.startswith("250 "):
            fail(f"the session opened {name} was cut: {got!r}\n{gw.output()}")
        if not c.cmd("QUIT").startswith("221 "):
            fail(f"the session opened {name}: no 221 to QUIT")
        c.close()

print(f"stress: entered and left once; the stress session was cut after "
      f"{waited:.1f} s; {time.monotonic() - started:.1f} s in all")
