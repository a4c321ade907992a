"""Never blocks: sessions that need no lookup keep their rate while others wait 3 s for a
DNS server and 3 s for a policy server (issue 13, "a benchmark shows their rate unchanged").

    python3 perf/dns/bench_never_blocks.py --mxgate build-release/dataplane/mxgate \
        [--transports kernel,dpdk] [--workers 2] [--fast 100] [--slow 200] [--seconds 8] \
        [--rounds 3] [--delay 3] [--shapes rcpt,message] [--out perf/results/DATE-dns.md] \
        [--json RAW.json]
    python3 perf/dns/bench_never_blocks.py --mxgate X --from-json RAW.json  (the report
        again, from the raw results, without running anything)

Root: the two-namespace topology of dnsbench.py. In the gateway namespace:
  slow_dns.py     answers every name under slow.test --delay s after it was asked (NXDOMAIN:
                  not listed), everything else at once;
  slow_policy.py  a policy server that answers DUNNO --delay s after each request.
mxgate (each transport in turn, --workers workers) sends the clients of 172.16.0.0/16 through
a restriction class that asks both, one after the other:

    smtpd_restriction_classes = slowcheck
    slowcheck = reject_rbl_client slow.test, check_policy_service inet:127.0.0.1:PORT
    smtpd_client_restrictions = check_client_access inline:{ { 172.16 = slowcheck } }

so a "slow" session (smtp_load with XCLIENT ADDR=172.16.x.y, a new address each, never a
cache hit) waits at RCPT for about 2 x delay, longer once the policy service's connections
(16 per endpoint) are all busy. "Fast" sessions come from the client's own address, match
nothing and need no lookup (smtpd_peername_lookup is off, as in every e2e gateway).

Per transport and load shape (rcpt: EHLO, MAIL, RCPT, QUIT; message: the same with a small
message after the RCPT), --rounds rounds of two runs of --fast concurrent fast sessions for
--seconds each:
  A  alone;
  B  while --slow concurrent slow sessions are parked (started first; B begins once the DNS
     server has seen all of them, and they keep being replaced as they finish).
The machine is shared, so A and B alternate and the table shows medians over the rounds
(and the spread of B/A per round). Reported: fast sessions/s alone and beside the slow
lookups, their ratio, the fast sessions' p99 and worst time per session, the gateway's CPU
per fast session; during B, samples (every 2 s) of what was waiting: the gateway's open
connections, the resolver's and the policy service's requests in flight (SIGUSR1), and the
DNS and policy servers' own count of answers they were holding back.

A worker that blocked on a lookup would stall every fast session it holds for the whole
delay: B's rate would drop and its worst session time would reach the delay.
"""

import argparse
import ipaddress
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsbench  # noqa: E402

DNS_PORT, POLICY_PORT = 5300, 10040


def config(client_ip):
    return (
        "mxgate_max_connections = 20000\n"
        f"smtpd_authorized_xclient_hosts = {client_ip}\n"
        f"mxgate_dns_servers = 127.0.0.1:{DNS_PORT}\n"
        "smtpd_restriction_classes = slowcheck\n"
        f"slowcheck = reject_rbl_client slow.test, "
        f"check_policy_service inet:127.0.0.1:{POLICY_PORT}\n"
        "smtpd_client_restrictions = check_client_access inline:{ { 172.16 = slowcheck } }\n")


def dnsbench_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


class Sampler(threading.Thread):
    """Every 2 s: SIGUSR1 (open connections, resolver and policy in flight) and the slow
    servers' own counts of answers held back."""

    def __init__(self, gw, dns, policy):
        super().__init__(daemon=True)
        self.gw, self.dns, self.policy = gw, dns, policy
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(2.0):
            try:
                st = dnsbench.usr1(self.gw)
            except dnsbench.BenchError:
                continue
            self.samples.append({
                "open": st.get("main", {}).get("open_connections", 0),
                "resolver_in_flight": st.get("resolver", {}).get("in_flight", 0),
                "policy_in_flight": st.get("policy", {}).get("in_flight", 0),
                "policy_queued": st.get("policy", {}).get("queued", 0),
                "dns_holding": dnsbench_json(self.dns.stats).get("waiting", 0),
                "policy_holding": dnsbench_json(self.policy.stats).get("waiting", 0),
            })


def cpu_by_party(gw, others):
    """CPU seconds so far: the gateway's threads by name ("mxgate:NAME") and each of
    `others` ({name: pid}), and the machine's busy time."""
    out = {f"mxgate:{k}": v for k, v in dnsbench.threads_cpu_seconds(gw.proc.pid).items()}
    for name, pid in others.items():
        out[name] = sum(dnsbench.threads_cpu_seconds(pid).values())
    out["machine"] = dnsbench.machine_busy_seconds()
    return out


def fast_run(env, gw, a, shape, others):
    st0 = dnsbench.usr1(gw).get("dpdk", {})
    cpu0 = dnsbench.cpu_seconds(gw.proc.pid)
    by0 = cpu_by_party(gw, others)
    r = env.load(gw.host, gw.port, concurrency=a.fast, duration=a.seconds,
                 data=(shape == "message"), timeout=a.seconds + 120)
    r["gateway_cpu_s"] = dnsbench.cpu_seconds(gw.proc.pid) - cpu0
    by1 = cpu_by_party(gw, others)
    # where the CPU went during the run: the load client reports its own
    r["cpu_by"] = {k: v - by0.get(k, 0.0) for k, v in by1.items()}
    r["cpu_by"]["fast client"] = r["cpu_s"]
    st1 = dnsbench.usr1(gw).get("dpdk", {})
    if st1.get("tsc_hz"):
        # the dpdk poll loops' busy time (iterations that did work), all sessions served
        # in the run (slow ones too, in B: a few per second)
        r["busy_s"] = (st1["busy_cycles"] - st0.get("busy_cycles", 0)) / st1["tsc_hz"]
    return r


def one_round(env, gw, a, shape, dns, policy, base, span):
    """A (fast alone), then B (fast beside parked slow sessions)."""
    out = {"shape": shape, "background": dnsbench.wait_quiet(0.3, 30)}
    others = {"slow_dns.py": dns.pid, "slow_policy.py": policy.pid}
    out["A"] = fast_run(env, gw, a, shape, others)
    st0 = dnsbench_json(dns.stats).get("in_zone", 0)
    slow = env.load_start(gw.host, gw.port, concurrency=a.slow, duration=3600,
                          xclient_base=base, xclient_count=span, timeout=3600 + 600)
    # B starts once every slow session has asked the DNS server (they are parked)
    deadline = time.monotonic() + 60
    while dnsbench_json(dns.stats).get("in_zone", 0) - st0 < a.slow:
        if time.monotonic() > deadline:
            slow.proc.terminate()
            raise dnsbench.BenchError("the slow sessions did not all reach their lookup")
        time.sleep(0.1)
    sampler = Sampler(gw, dns, policy)
    sampler.start()
    out["B"] = fast_run(env, gw, a, shape, dict(others, **{"slow client": slow.proc.pid}))
    sampler.stop.set()
    sampler.join()
    slow.proc.terminate()
    out["slow"] = slow.result()
    out["samples"] = sampler.samples
    print(f"  {shape}: A {out['A']['window_sessions_per_s']:.0f}/s, "
          f"B {out['B']['window_sessions_per_s']:.0f}/s (worst fast session "
          f"{out['B']['session_ms'].get('max', 0):.0f} ms); slow sessions completed "
          f"{out['slow']['completed']}; background {out['background']:.2f} CPUs", flush=True)
    return out


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[(n - 1) // 2] + xs[n // 2]) / 2 if xs else float("nan")


def report(results, a, notes):
    lines = [
        "## 1. Never blocks: no-lookup sessions beside parked DNS and policy lookups", "",
        machine_line_cache[0], "",
        f"`python3 perf/dns/bench_never_blocks.py --mxgate {a.mxgate} --transports "
        f"{a.transports} --workers {a.workers} --fast {a.fast} --slow {a.slow} "
        f"--seconds {a.seconds:g} --rounds {a.rounds} --delay {a.delay:g}`", "",
        f"{a.fast} concurrent fast sessions (no lookup) for {a.seconds:g} s per run, "
        f"{a.rounds} rounds of A (alone) then B (beside slow sessions), each cell the median "
        f"of the rounds. In B, {a.slow} concurrent slow sessions are parked at RCPT on a "
        f"DNSBL query answered after {a.delay:g} s and then a policy query answered after "
        f"{a.delay:g} s; each slow session is replaced by a new one (a new address, never "
        f"a cache hit) as it finishes. mxgate workers: {a.workers}. Release build.", "",
        "| transport | shape | A alone /s | B beside slow lookups /s | B / A (median; "
        "rounds min-max) | fast p99 ms A / B | worst fast session ms A / B | gateway CPU "
        "us per fast session A / B | dpdk busy us per fast session A / B | fast failed | "
        "slow sessions done (RCPT p50 s) | waiting during B (max of samples): open conns, "
        "resolver in flight, policy in flight (queued for a connection), DNS held, policy "
        "held | other "
        "load before (CPUs) |",
        "|---|---|---:|---:|---|---|---|---|---|---:|---|---|---|",
    ]
    for (transport, shape), rounds in results.items():
        ra = [r["A"]["window_sessions_per_s"] for r in rounds]
        rb = [r["B"]["window_sessions_per_s"] for r in rounds]
        ratios = [b / x for b, x in zip(rb, ra) if x]
        ratio = median(rb) / median(ra) if median(ra) else float("nan")
        p99 = (f"{median([r['A']['session_ms'].get('p99', 0) for r in rounds]):.1f} / "
               f"{median([r['B']['session_ms'].get('p99', 0) for r in rounds]):.1f}")
        worst_b = max(r["B"]["session_ms"].get("max", 0) for r in rounds)
        worst = (f"{max(r['A']['session_ms'].get('max', 0) for r in rounds):.0f} / "
                 f"{worst_b:.0f}")

        def cpu_us(k, what="gateway_cpu_s"):
            return median([r[k][what] / r[k]["completed"] * 1e6
                           for r in rounds if r[k]["completed"] and what in r[k]])
        busy = (f"{cpu_us('A', 'busy_s'):.0f} / {cpu_us('B', 'busy_s'):.0f}"
                if transport == "dpdk" else "-")
        nfail = sum(r["A"]["failed"] + r["B"]["failed"] for r in rounds)
        done = sum(r["slow"]["completed"] for r in rounds)
        slow_p50 = median([r["slow"]["rcpt_ms"]["p50"] for r in rounds
                           if r["slow"]["rcpt_ms"].get("p50") is not None]) / 1000
        smp = [x for r in rounds for x in r["samples"]]

        def mx(k):
            return max((x[k] for x in smp), default=0)
        waiting = (f"{mx('open')}, {mx('resolver_in_flight')}, {mx('policy_in_flight')} "
                   f"({mx('policy_queued')}), {mx('dns_holding')}, {mx('policy_holding')}")
        bg = ", ".join(f"{r['background']:.2f}" for r in rounds)
        lines.append(
            f"| {transport} | {shape} | {median(ra):.0f} | {median(rb):.0f} | {ratio:.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {p99} | {worst} | "
            f"{cpu_us('A'):.0f} / {cpu_us('B'):.0f} | {busy} | {nfail} | "
            f"{done} ({f'{slow_p50:.1f}' if slow_p50 == slow_p50 else '-'}) | "
            f"{waiting} | {bg} |")
        if ratio < 0.9:
            notes.append(f"{transport}/{shape}: the no-lookup rate beside parked lookups was "
                         f"{ratio:.0%} of its rate alone (median of rounds)")
        if worst_b >= a.delay * 1000 * 0.9:
            notes.append(f"{transport}/{shape}: a fast session took {worst_b:.0f} ms in B, "
                         "as long as a lookup: a worker may have blocked")
        for r in rounds:
            s = r["slow"]
            bad_slow = {k: v for k, v in s["rcpt_codes"].items() if k != "250"}
            if bad_slow or s["failed"]:
                notes.append(f"{transport}/{shape}: slow sessions: RCPT codes "
                             f"{s['rcpt_codes']}, failures {s['failures']}")
            for k in ("A", "B"):
                if r[k]["failed"]:
                    notes.append(f"{transport}/{shape} {k}: fast failures {r[k]['failures']}")
    lines += [
        "", "Where the CPU went during the runs (CPUs: CPU seconds per second of run, "
        "median of the rounds, A / B). \"Rest\" is the machine's busy time that none of "
        "these processes was charged with: other people's work on the shared machine, "
        "and softirq time that landed outside them.", "",
        "| transport | shape | mxgate workers | mxgate other threads (spool writer, "
        "resolver, policy, main, relay) | fast client | slow client + DNS server + policy server | "
        "rest of the machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for (transport, shape), rounds in results.items():
        def cpus(k, pick):
            return median([sum(v for n, v in r[k]["cpu_by"].items() if pick(n)) /
                           r[k]["elapsed_s"] for r in rounds])

        def both(pick):
            return f"{cpus('A', pick):.2f} / {cpus('B', pick):.2f}"
        # kernel workers are mxgate-wN, dpdk worker lcores EAL's rte-worker-N
        workers = lambda n: n.startswith(("mxgate:mxgate-w", "mxgate:rte-worker"))  # noqa: E731
        other = lambda n: n.startswith("mxgate:") and not workers(n)  # noqa: E731
        slow = lambda n: n in ("slow client", "slow_dns.py", "slow_policy.py")  # noqa: E731
        named = lambda n: n != "machine"  # noqa: E731

        def rest(k):
            return median([(r[k]["cpu_by"]["machine"] -
                            sum(v for n, v in r[k]["cpu_by"].items() if named(n))) /
                           r[k]["elapsed_s"] for r in rounds])
        lines.append(f"| {transport} | {shape} | {both(workers)} | {both(other)} | "
                     f"{both(lambda n: n == 'fast client')} | {both(slow)} | "
                     f"{rest('A'):.2f} / {rest('B'):.2f} |")
    lines.append("")
    for n in notes:
        lines.append(f"- NOTE: {n}")
    return "\n".join(lines) + "\n"


machine_line_cache = [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--transports", default="kernel,dpdk")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fast", type=int, default=100)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--delay", type=float, default=3)
    ap.add_argument("--shapes", default="rcpt,message")
    ap.add_argument("--out", help="append the section to this file")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--from-json", help="run nothing: the report of a --json file")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        machine_line_cache[0] = saved["machine"]
        b = argparse.Namespace(**saved["args"])
        results = {(x["transport"], x["shape"]): x["rounds"] for x in saved["results"]}
        text = report(results, b, saved["notes"])
        print(text)
        if a.out:
            with open(a.out, "a") as f:
                f.write(text + "\n")
        return
    machine_line_cache[0] = dnsbench.machine_line()
    results, notes = {}, []
    # every round's slow sessions get addresses of their own in 172.16/16: no cache hits
    nruns = len(a.transports.split(",")) * len(a.shapes.split(",")) * a.rounds
    span = 65000 // nruns
    bases = iter(str(ipaddress.IPv4Address("172.16.0.1") + i * span) for i in range(nruns))
    with dnsbench.Env(a.mxgate) as env:
        dns = env.pyserver("slow_dns.py", ["--port", str(DNS_PORT), "--zone", "slow.test",
                                           "--delay", str(a.delay)], "dns")
        policy = env.pyserver("slow_policy.py", ["--port", str(POLICY_PORT),
                                                 "--delay", str(a.delay)], "policy")
        for transport in a.transports.split(","):
            gw = env.gateway(transport, a.workers, config(env.client_ip(transport)))
            print(f"{transport}: gateway up", flush=True)
            try:
                for shape in a.shapes.split(","):
                    for _ in range(a.rounds):
                        r = one_round(env, gw, a, shape, dns, policy, next(bases), span)
                        results.setdefault((transport, shape), []).append(r)
                if gw.stop(check=False) != 0:
                    notes.append(f"{transport}: the gateway did not exit 0 after SIGTERM")
            finally:
                dnsbench.drop_gateway(gw)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine_line_cache[0], "args": vars(a),
                       "notes": list(notes),
                       "results": [{"transport": t, "shape": sh, "rounds": r}
                                   for (t, sh), r in results.items()]}, f, indent=1)
    text = report(results, a, notes)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
