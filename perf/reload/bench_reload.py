"""Live reload under load, on each transport (issue 12's figures).

    python3 perf/reload/bench_reload.py --mxgate build-release/dataplane/mxgate \
        [--transports kernel,dpdk] [--minutes 10] [--rules 10000] \
        [--out perf/results/DATE-reload.md]

Per transport, against a fresh gateway (dpdk: net_af_packet in a network namespace, root):

1. Flips under load. The relay delivers to smtp-sink, so the spool drains. smtp-source delivers at a steady rate (one bounded batch after
   another) while tests/e2e/gen_client.py sessions probe which generation served them, and
   `mxgate reload` alternates two configurations (each its own header_checks file and
   restriction list) every 100 ms for --minutes, after 30 s of the same load without
   reloads (whose end gives the starting RSS). Counted: failed smtp-source batches,
   failed or inconsistent probe sessions (verdicts from more than one generation), messages
   that got a 250 but are not in the spool, reloads done, and the gateway's RSS at the
   start and at the end once every old generation has retired (the issue's bound: within
   5%).
2. Reload latency with --rules header_checks rules: the time from running `mxgate reload`
   to the first new connection served by the new generation, with the compiled database
   not in the cache (a rule set never seen) and in it (a set seen before), each a few
   times; and what holding a second generation of that size costs (RSS with a canary
   minus RSS without).
It prints a table and writes it (with machine, date and commit) to --out.
"""

import argparse
import datetime
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mxtest  # noqa: E402

GEN_CLIENT = os.path.join(ROOT, "tests", "e2e", "gen_client.py")
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
WARMUP_S = 30


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def big_rules(n, salt):
    """n header_checks rules of the shapes real sets have (literal subjects, domains in
    From:, a few alternations), none matching the probes' headers."""
    rng = random.Random(salt)
    words = ["offer", "winner", "casino", "pharma", "loan", "crypto", "invoice", "prize",
             "urgent", "bonus", "viagra", "deal", "free", "money", "bitcoin", "replica"]
    out = []
    for i in range(n):
        w = rng.sample(words, 2)
        k = i % 4
        if k == 0:
            out.append(f"/^Subject:.*{w[0]} {w[1]} {salt}x{i}\\b/ REJECT rule {i}")
        elif k == 1:
            out.append(f"/^From:.*@{w[0]}{i}\\.{w[1]}\\.example/ REJECT rule {i}")
        elif k == 2:
            out.append(f"/^X-Mailer: ({w[0]}|{w[1]})-{salt}-{i}/ REJECT rule {i}")
        else:
            out.append(f"/^Received: from [a-z]+{i}\\.{w[0]}\\.{salt}/ REJECT rule {i}")
    return "\n".join(out) + "\n"


class Target:
    def __init__(self, binary, transport):
        self.binary = binary
        self.transport = transport
        if transport == "dpdk":
            import netns
            self.netns = netns
            self.topo = netns.Topology(prefix=f"mxl{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2,
                                        extra_config="mxgate_max_connections = 5000\n")
            self.python = netns.SYS_PYTHON
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, workers=2,
                                     extra_config="mxgate_max_connections = 5000\n")
            self.python = sys.executable
        # the relay delivers to smtp-sink, so the spool drains and memory can settle
        self.sink_port = mxtest.free_port()
        sink = [SMTP_SINK, "-u", "nobody", f"127.0.0.1:{self.sink_port}", "256"]
        self.sink = (self.topo.gw_popen(sink, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL) if self.topo else
                     subprocess.Popen(sink, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        with open(self.gw.config_path) as f:
            self.base = f.read() + f"relayhost = [127.0.0.1]:{self.sink_port}\n"
        self.cache = os.path.join(self.gw.dir, "checks-cache")

    def write_config(self, name, gen, rules_text=None):
        d = self.gw.dir
        other = "B" if gen == "A" else "A"
        checks = os.path.join(d, f"{name}.checks")
        with open(checks, "w") as f:
            f.write(f"/^X-Gen-Check: {other}$/ REJECT generation {gen} refuses tag {other}\n")
            if rules_text:
                f.write(rules_text)
        path = os.path.join(d, f"{name}.cf")
        with open(path, "w") as f:
            f.write(self.base +
                    f"smtpd_recipient_restrictions = check_recipient_access inline:{{ "
                    f"{{ {gen.lower()}@relay.example = REJECT generation {gen} }} }}, "
                    f"permit_mynetworks, reject_unauth_destination\n"
                    f"header_checks = pcre:{checks}\n"
                    f"mxgate_checks_cache_directory = {self.cache}\n")
        return path

    def start(self, path):
        shutil.copy(path, self.gw.config_path)
        self.gw.start()

    def argv(self, argv):
        return self.topo._ns(self.topo.cl_ns, argv) if self.topo else argv

    def gen_client(self, *args):
        a = [self.python, GEN_CLIENT, self.gw.host, str(self.gw.port), *args]
        r = subprocess.run(self.argv(a), capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise RuntimeError(f"gen_client: {r.stdout}{r.stderr}")
        return json.loads(r.stdout)["sessions"]

    def reload(self, path, *extra):
        t0 = time.monotonic()
        r = subprocess.run([self.binary, "reload", "-c", path, *extra], capture_output=True,
                           text=True, timeout=600)
        return r.returncode, r.stdout + r.stderr, time.monotonic() - t0

    def status_gens(self):
        r = subprocess.run([self.binary, "status", "-c", self.gw.config_path],
                           capture_output=True, text=True, timeout=60)
        return re.findall(r"^generation (\d+) \(([^)]*)\)", r.stdout, re.M)

    def close(self):
        self.gw.stop(check=False)
        self.sink.terminate()
        self.sink.wait()
        if self.topo:
            self.topo.destroy()


def flips_under_load(t, minutes):
    a = t.write_config("A", "A")
    b = t.write_config("B", "B")
    t.start(a)
    stop = threading.Event()
    warm = threading.Event()
    res = {"reloads": 0, "reload_failures": 0, "batches": 0, "batch_failures": 0,
           "source_msgs": 0}

    def flipper():
        # the same load without reloads first: RSS at its end is the start figure
        if stop.wait(WARMUP_S):
            return
        res["rss_start_kb"] = rss_kb(t.gw.proc.pid)
        warm.set()
        gen = "B"
        while not stop.is_set():
            rc, out, _ = t.reload(b if gen == "B" else a)
            if rc != 0:
                res["reload_failures"] += 1
                res["last_reload_error"] = out
            res["reloads"] += 1
            gen = "A" if gen == "B" else "B"
            stop.wait(0.1)

    def source():
        # steady: bounded batches of 50 messages over 2 sessions, back to back
        while not stop.is_set():
            argv = [SMTP_SOURCE, "-s", "2", "-m", "50", "-l", "2000", "-f",
                    "load@client.test.example", "-t", "ok@relay.example",
                    f"{t.gw.host}:{t.gw.port}"]
            r = subprocess.run(t.argv(argv), capture_output=True, text=True, timeout=600)
            res["batches"] += 1
            if r.returncode != 0:
                res["batch_failures"] += 1
                res["last_batch_error"] = r.stdout + r.stderr
            else:
                res["source_msgs"] += 50

    threads = [threading.Thread(target=flipper), threading.Thread(target=source)]
    for th in threads:
        th.start()
    try:
        sessions = t.gen_client("--seconds", str(WARMUP_S + minutes * 60), "--threads", "2")
    finally:
        stop.set()
        for th in threads:
            th.join()
    bad = [s for s in sessions if s["error"] or not s["consistent"]]
    queued = {s["queued"] for s in sessions if s["queued"]}
    # every message that got a 250 was delivered to the sink (the relay logged it sent)
    # or is still in the spool
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and t.gw.stats().get("relay_queued", 0) > 0:
        time.sleep(0.5)
    spooled = {qid for qid, _, _ in t.gw.spooled()}
    sent = set()
    sent_re = re.compile(r": ([0-9A-Za-z]+): to=<[^>]*>, relay=.*status=sent")
    with open(t.gw.maillog, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "status=sent" in line:
                m = sent_re.search(line)
                if m:
                    sent.add(m.group(1))
    deadline = time.monotonic() + 30
    while len(t.status_gens()) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    rss1 = rss_kb(t.gw.proc.pid)
    rss0 = res.pop("rss_start_kb", 0)
    st = t.gw.stats()
    res.update({
        "sessions": len(sessions), "bad_sessions": len(bad), "bad_example": bad[:2],
        "gens_seen": sorted({s["gen"] for s in sessions}),
        "probe_queued": len(queued), "lost": len(queued - spooled - sent),
        "spooled": len(spooled), "sent": len(sent),
        "accepted": st.get("messages_accepted", -1),
        "rss_start_kb": rss0, "rss_end_kb": rss1,
        "rss_change": (rss1 - rss0) / rss0 if rss0 else 0.0,
        "generations_left": len(t.status_gens()),
    })
    return res


def first_new_generation(t, path, want):
    """Seconds from starting `mxgate reload` to the first probe session served by the new
    generation (`want`, "A" or "B"; the current one must be the other). Probe sessions run
    back to back from another thread meanwhile."""
    found = {}
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            s = t.gen_client("--sessions", "1", "--rcpt-only")
            if s and s[0]["consistent"] and s[0]["gen"] == want:
                found["at"] = time.monotonic()
                return

    th = threading.Thread(target=probe)
    t0 = time.monotonic()
    th.start()
    rc, out, took = t.reload(path)
    th.join(timeout=300)
    stop.set()
    if rc != 0:
        raise RuntimeError(f"reload failed: {out}")
    if "at" not in found:
        raise RuntimeError(f"no session reached generation {want} within 300 s")
    m = re.search(r"built from \S+ in (\d+) ms", out)
    return {"to_first_connection_s": found["at"] - t0, "command_s": took,
            "build_ms": int(m.group(1)) if m else -1}


def latency_and_memory(t, rules, rounds=3):
    out = {"uncached": [], "cached": []}
    back = t.write_config("A", "A")
    rc, o, _ = t.reload(back)  # from whatever the flips left: A is current
    if rc != 0:
        raise RuntimeError(o)
    path = None
    for i in range(rounds):
        # a rule set never seen: a new salt, so its hash (and cache key) is new
        path = t.write_config(f"B{i}", "B", big_rules(rules, f"s{os.getpid()}r{i}"))
        out["uncached"].append(first_new_generation(t, path, "B"))
        first_new_generation(t, back, "A")
        # the same set again: cached
        out["cached"].append(first_new_generation(t, path, "B"))
        first_new_generation(t, back, "A")
    # memory of one generation with `rules` rules: a canary holds it beside the current one
    deadline = time.monotonic() + 30
    while len(t.status_gens()) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    r0 = rss_kb(t.gw.proc.pid)
    rc, o, _ = t.reload(path, "--canary", "1%")
    if rc != 0:
        raise RuntimeError(o)
    time.sleep(2)
    r1 = rss_kb(t.gw.proc.pid)
    t.reload(back, "--abort")
    out["generation_kb"] = r1 - r0
    return out


def fmt_latency(xs, key):
    v = sorted(x[key] for x in xs)
    return f"{v[len(v) // 2]:.3f} (min {v[0]:.3f}, max {v[-1]:.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--transports", default="kernel,dpdk")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--out")
    a = ap.parse_args()
    binary = os.path.abspath(a.mxgate)
    rows = []
    for transport in a.transports.split(","):
        t = Target(binary, transport)
        try:
            flips = flips_under_load(t, a.minutes)
            print(f"{transport}: flips {json.dumps(flips)}", flush=True)
            lat = latency_and_memory(t, a.rules)
            print(f"{transport}: latency {json.dumps(lat)}", flush=True)
        finally:
            t.close()
        rows.append((transport, flips, lat))

    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [f"# Live reload under load, {datetime.date.today()}", "",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}; "
             f"commit {commit}; {binary}", "",
             f"## Flips under load ({a.minutes:g} min, a reload every 100 ms)", "",
             "| transport | reloads (failed) | probe sessions (failed or mixed) | "
             "smtp-source batches (failed) | messages accepted | delivered or still spooled | "
             "probes' 250s neither delivered nor spooled | "
             "RSS start -> end (change) | generations left |",
             "|---|---|---|---|---|---|---|---|---|"]
    for transport, f, _ in rows:
        lines.append(f"| {transport} | {f['reloads']} ({f['reload_failures']}) | "
                     f"{f['sessions']} ({f['bad_sessions']}) | {f['batches']} "
                     f"({f['batch_failures']}) | {f['accepted']} | "
                     f"{f['sent'] + f['spooled']} | {f['lost']} | "
                     f"{f['rss_start_kb']} -> {f['rss_end_kb']} kB "
                     f"({f['rss_change']:+.1%}) | {f['generations_left']} |")
    lines += ["", f"## Reload latency with {a.rules} header_checks rules", "",
              "Seconds from running `mxgate reload` to the first new connection served by "
              "the new generation (median of 3, min, max), the build time the gateway "
              "reports, and the RSS one more generation of that size costs.", "",
              "| transport | uncached: to first connection | uncached: build ms | "
              "cached: to first connection | cached: build ms | one generation |",
              "|---|---|---|---|---|---|"]
    for transport, _, l in rows:
        lines.append(f"| {transport} | {fmt_latency(l['uncached'], 'to_first_connection_s')} | "
                     f"{sorted(x['build_ms'] for x in l['uncached'])} | "
                     f"{fmt_latency(l['cached'], 'to_first_connection_s')} | "
                     f"{sorted(x['build_ms'] for x in l['cached'])} | "
                     f"{l['generation_kb']} kB |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
