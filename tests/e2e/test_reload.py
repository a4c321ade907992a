"""Live reload, generations and canaries on one transport (argv: mxgate binary, kernel|dpdk).

Two configurations, A and B, differ in what a session can see (gen_client.py): A refuses
a@relay.example and messages tagged "X-Gen-Check: B", B the other way round. Checked:
  1. `mxgate reload -c B` switches new sessions to B; a session open across the reload
     keeps A for all of its verdicts (RCPT and header_checks);
  2. a configuration with an error is refused with FILE:LINE, the exit status is 1, and
     nothing changes; a restart-only parameter is named and kept;
  3. SIGHUP reloads the file the gateway runs;
  4. a 10% canary: between 5% and 15% of 2,000 new sessions get it, and the per-generation
     counters of `mxgate status` are exact; --abort, --canary-clients and --promote;
  5. under load: sessions run back to back while the configuration flips every 100 ms
     for 20 s: no failed session, every session's verdicts from one generation, every
     queued message in the spool, and old generations retired once their sessions end.
The dpdk transport runs the gateway in a network namespace on net_af_packet (netns.py) and
the clients in the client namespace; it needs root.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "gen_client.py")

if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool(netns.SYS_PYTHON)


def policy(gen, other, checks_path):
    return (f"smtpd_recipient_restrictions = check_recipient_access "
            f"inline:{{ {{ {gen.lower()}@relay.example = REJECT generation {gen} refuses "
            f"{gen.lower()}@ }} }}, permit_mynetworks, reject_unauth_destination\n"
            f"header_checks = pcre:{checks_path}\n")


class Target:
    def __init__(self):
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"mxr{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2)
            self.python = netns.SYS_PYTHON
            self.sources = (self.topo.cl_ip4, self.topo.cl_ip6)
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, workers=2)
            self.python = sys.executable
            self.sources = ("127.0.0.1", "127.0.0.2")
        with open(self.gw.config_path) as f:
            self.base = f.read()
        self.files = {}
        for gen, other in (("A", "B"), ("B", "A")):
            checks = os.path.join(self.gw.dir, f"header_checks.{gen}")
            with open(checks, "w") as f:
                f.write(f"/^X-Gen-Check: {other}$/ REJECT generation {gen} refuses tag "
                        f"{other}\n")
            path = os.path.join(self.gw.dir, f"{gen}.cf")
            with open(path, "w") as f:
                f.write(self.base + policy(gen, other, checks))
            self.files[gen] = path
        # the gateway starts on A
        with open(self.gw.config_path, "w") as f:
            f.write(self.base + policy("A", "B", os.path.join(self.gw.dir, "header_checks.A")))

    def client_argv(self, *args, host=None):
        a = [self.python, CLIENT, host or self.gw.host, str(self.gw.port)] + list(args)
        return self.topo._ns(self.topo.cl_ns, a) if self.topo else a

    def sessions(self, *args, host=None, timeout=600):
        r = subprocess.run(self.client_argv(*args, host=host), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0 or not r.stdout.strip():
            fail(f"gen_client {args} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n"
                 f"{self.gw.output()}")
        return json.loads(r.stdout)["sessions"]

    def mxgate(self, *args, expect=0):
        r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        if expect is not None and r.returncode != expect:
            fail(f"mxgate {' '.join(args)} exited {r.returncode}, expected {expect}:\n{out}\n"
                 f"{self.gw.output()}")
        return out

    def status(self):
        return self.mxgate("status", "-c", self.gw.config_path)

    def close(self):
        self.gw.stop()
        if self.topo:
            self.topo.destroy()


def gens_of(sessions, what):
    bad = [s for s in sessions if s["error"] or not s["consistent"]]
    if bad:
        fail(f"{what}: {len(bad)} of {len(sessions)} sessions failed or saw a mix, e.g. "
             f"{bad[:3]}")
    return [s["gen"] for s in sessions]


def expect_all(t, gen, what, n=10):
    got = gens_of(t.sessions("--sessions", str(n)), what)
    if set(got) != {gen}:
        fail(f"{what}: expected every session on generation {gen}, got {got}")


def status_generations(text):
    """{id: {"role": ..., counters...}} from `mxgate status`."""
    out = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"generation (\d+) \(([^)]*)\)", line)
        if m:
            cur = int(m.group(1))
            out[cur] = {"role": m.group(2)}
            continue
        if cur is not None and line.strip().startswith("connections="):
            for k, v in re.findall(r"(\w+)=(\d+)", line):
                out[cur][k] = int(v)
    return out


def test_reload_and_open_session(t):
    expect_all(t, "A", "before any reload")
    # a session that opened under A and lives across the reload: it holds at MAIL until
    # the reload is done, then sends its RCPTs and message
    hold = os.path.join(t.gw.dir, "hold")
    p = subprocess.Popen(t.client_argv("--sessions", "1", "--hold", hold),
                         stdout=subprocess.PIPE, text=True)
    mxtest.wait_for(lambda: os.path.exists(hold + ".waiting"), 30,
                    "the held session to reach MAIL", t.gw.output)
    out = t.mxgate("reload", "-c", t.files["B"])
    if "generation 2" not in out:
        fail(f"reload output does not name generation 2:\n{out}")
    expect_all(t, "B", "after reload -c B")
    open(hold, "w").close()
    held = json.loads(p.communicate(timeout=120)[0])["sessions"]
    if gens_of(held, "the session open across the reload") != ["A"]:
        fail(f"the session opened before the reload was served by {held}, not A")


def test_failed_reload(t):
    bad = os.path.join(t.gw.dir, "bad.cf")
    with open(t.files["A"]) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text + "smtpd_sender_restrictions = reject_unknown_thing\n")
    line = text.count("\n") + 1
    out = t.mxgate("reload", "-c", bad, expect=1)
    if not re.search(rf"{re.escape(bad)}:{line}: .*reject_unknown_thing", out):
        fail(f"a failed reload must name FILE:LINE and the problem:\n{out}")
    if "nothing changed" not in out:
        fail(f"a failed reload must say nothing changed:\n{out}")
    expect_all(t, "B", "after a failed reload")
    st = t.status()
    if "1 failed" not in st or "reject_unknown_thing" not in st:
        fail(f"status does not report the failed reload:\n{st}")
    # a restart-only parameter is named, the rest applies
    restart = os.path.join(t.gw.dir, "restart.cf")
    with open(restart, "w") as f:
        f.write(text + "mxgate_workers = 1\n")
    out = t.mxgate("reload", "-c", restart)
    if not re.search(r"mxgate_workers.*only a restart applies it", out):
        fail(f"a reload that changes mxgate_workers must say a restart applies it:\n{out}")
    expect_all(t, "A", "after a reload with a restart-only change")


def test_sighup(t):
    # the gateway now runs restart.cf (generation A): make it B and send SIGHUP
    restart = os.path.join(t.gw.dir, "restart.cf")
    with open(t.files["B"]) as f:
        text = f.read()
    with open(restart, "w") as f:
        f.write(text)
    before = t.gw.log().count("serves new connections")
    t.gw.proc.send_signal(signal.SIGHUP)
    mxtest.wait_for(lambda: t.gw.log().count("serves new connections") > before, 30,
                    "the SIGHUP reload", t.gw.output)
    expect_all(t, "B", "after SIGHUP")


def test_canary(t):
    out = t.mxgate("reload", "-c", t.files["A"], "--canary", "10%")
    m = re.search(r"canary: generation (\d+)", out)
    if not m:
        fail(f"canary reload output:\n{out}")
    canary = int(m.group(1))
    st0 = status_generations(t.status())
    n = 2000
    got = gens_of(t.sessions("--sessions", str(n), "--threads", "8", "--rcpt-only"),
                  "canary sessions")
    share = got.count("A") / n
    print(f"canary: {got.count('A')} of {n} sessions on the canary ({share:.1%})")
    if not 0.05 <= share <= 0.15:
        fail(f"--canary 10%: {share:.1%} of {n} sessions got the canary")
    st = status_generations(t.status())
    cur = [g for g, v in st.items() if v["role"] == "current"][0]
    if st[canary]["connections"] - st0[canary]["connections"] != got.count("A"):
        fail(f"canary counters: {st[canary]} (before {st0[canary]}), "
             f"{got.count('A')} sessions saw it")
    if st[cur]["connections"] - st0[cur]["connections"] != got.count("B"):
        fail(f"current counters: {st[cur]} (before {st0[cur]}), "
             f"{got.count('B')} sessions saw it")
    # each session had exactly one recipient refused, by its own generation
    for g, want in ((canary, got.count("A")), (cur, got.count("B"))):
        if st[g]["recipients_rejected"] - st0[g]["recipients_rejected"] != want:
            fail(f"generation {g}: recipients_rejected {st[g]} (before {st0[g]}), "
                 f"expected {want} more")
    t.mxgate("reload", "-c", t.gw.config_path, "--abort")
    expect_all(t, "B", "after --abort")
    # by client: the second source address gets the canary, the first does not
    src1, src2 = t.sources
    out = t.mxgate("reload", "-c", t.files["A"], "--canary-clients",
                   src2 + ("/128" if ":" in src2 else "/32"))
    if transport == "dpdk":
        # one client namespace address per family: IPv6 is the canary's client
        by4 = gens_of(t.sessions("--sessions", "5"), "IPv4 client")
        by6 = gens_of(t.sessions("--sessions", "5", host=t.gw.host6), "IPv6 client")
    else:
        by4 = gens_of(t.sessions("--sessions", "5", "--source", src1), "client 127.0.0.1")
        by6 = gens_of(t.sessions("--sessions", "5", "--source", src2), "client 127.0.0.2")
    if set(by4) != {"B"} or set(by6) != {"A"}:
        fail(f"--canary-clients {src2}: {src1} got {by4}, {src2} got {by6}")
    t.mxgate("reload", "-c", t.gw.config_path, "--promote")
    expect_all(t, "A", "after --promote")
    st = status_generations(t.status())
    roles = sorted(v["role"] for v in st.values())
    if roles.count("current") != 1 or any(r.startswith("canary") for r in roles):
        fail(f"after --promote status shows {roles}")


def test_reload_under_load(t, seconds=20.0):
    stop = threading.Event()
    reloads = [0]
    errors = []

    def flipper():
        gen = "B"
        while not stop.is_set():
            r = subprocess.run([binary, "reload", "-c", t.files[gen]], capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0:
                errors.append(r.stdout + r.stderr)
                return
            reloads[0] += 1
            gen = "A" if gen == "B" else "B"
            stop.wait(0.1)

    f = threading.Thread(target=flipper)
    f.start()
    try:
        sessions = t.sessions("--seconds", str(seconds), "--threads", "4")
    finally:
        stop.set()
        f.join()
    if errors:
        fail(f"a reload under load failed:\n{errors[0]}")
    gens = gens_of(sessions, "sessions under reloads")
    queued = {s["queued"] for s in sessions if s["queued"]}
    print(f"under load: {len(sessions)} sessions ({gens.count('A')} A, {gens.count('B')} B), "
          f"{len(queued)} messages queued, {reloads[0]} reloads in {seconds:.0f} s")
    if reloads[0] < seconds * 3 or gens.count("A") == 0 or gens.count("B") == 0:
        fail(f"the test did not exercise reloads: {reloads[0]} reloads, {len(sessions)} "
             f"sessions")
    spooled = {qid for qid, _, _ in t.gw.spooled()}
    lost = queued - spooled
    if lost:
        fail(f"{len(lost)} messages that got 250 are not in the spool: {sorted(lost)[:5]}")
    # every generation but the current one is let go once its sessions are over
    mxtest.wait_for(lambda: len(status_generations(t.status())) == 1, 10,
                    "old generations to retire", t.status)


t = Target()
try:
    t.gw.start()
    test_reload_and_open_session(t)
    test_failed_reload(t)
    test_sighup(t)
    test_canary(t)
    test_reload_under_load(t)
finally:
    t.close()
print("PASS")
