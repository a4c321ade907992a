"""Stress (Postfix's STRESS_README) on one transport (argv: mxgate binary, kernel|dpdk).

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
The connections are held by connpool.py's client process (in the client namespace on
dpdk, where the gateway runs on net_af_packet in its own namespace, see netns.py).
"""

import os
import re
import subprocess
import sys
import time

import mxtest
from connpool import ConnPool
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool(netns.SYS_PYTHON)
HOST = "mx.test.example"
TIMEOUT_REPLY = f"421 4.4.2 {HOST} Error: timeout exceeded"


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


def greeted(pool, why):
    r = pool.open()
    if not r["reply"].startswith("220 "):
        fail(f"{why}: no greeting: {r['reply']!r}\n{gw.output()}")
    return r["id"]


def noop_ok(pool, cid, name):
    got = pool.cmd(cid, "NOOP")
    if not got.startswith("250 "):
        fail(f"the session opened {name} was cut: {got!r}\n{gw.output()}")


started = time.monotonic()
config = ("mxgate_max_connections = 20\n"
          "smtpd_timeout = ${stress?{2}:{300}}s\n"
          "mxgate_stress_minimum_time = 1s\n")
topo = None
if transport == "dpdk":
    topo = netns.Topology(prefix=f"str{os.getpid() % 10000}").create()
    gw = netns.DpdkGateway(binary, topo, workers=1, extra_config=config)
    python = netns.SYS_PYTHON
else:
    gw = mxtest.Gateway(binary, workers=1, extra_config=config)
    python = sys.executable
try:
    gw.start()
    pool = ConnPool(python, gw.host, gw.port, gw.output, topo)
    # 1. before stress
    a = greeted(pool, "before stress")
    st = status()
    if not st.startswith("stress: off ("):
        fail(f"status before stress: {st}")

    # 2. 19 open: stress
    others = [greeted(pool, "under 90%") for _ in range(18)]
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
    s = greeted(pool, "under stress")
    r = pool.read(s, 20)
    waited = r["waited"]
    if not r["reply"].startswith(TIMEOUT_REPLY):
        fail(f"stress session: expected {TIMEOUT_REPLY!r}, got {r['reply']!r}\n"
             f"{gw.output()}")
    if not 1.5 <= waited <= 5.0:
        fail(f"stress session timed out after {waited:.1f} s, expected about 2 s")
    if not r["eof"]:
        fail("stress session: not closed after the timeout reply")
    pool.drop(s)
    noop_ok(pool, a, "before stress")

    # 4. the connections close: stress ends, once
    for c in others:
        pool.drop(c)
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
    b = greeted(pool, "after stress")
    time.sleep(3)
    for c, name in ((b, "after stress"), (a, "before stress")):
        noop_ok(pool, c, name)
        pool.quit(c)
    pool.close()
    gw.stop()
finally:
    if gw.proc and gw.proc.poll() is None:
        gw.stop(check=False)
    if topo:
        topo.destroy()

print(f"stress: entered and left once; the stress session was cut after "
      f"{waited:.1f} s; {time.monotonic() - started:.1f} s in all")
