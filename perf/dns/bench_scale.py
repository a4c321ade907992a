"""Scale: 10,000 sessions in flight at once, each parked on a DNSBL lookup of its own
(issue 13, "Scale"): that they all park, what a parked session costs the gateway in memory,
and that every one gets its own answer once the DNS server answers.

    python3 perf/dns/bench_scale.py --mxgate build-release/dataplane/mxgate \
        [--transports kernel,dpdk] [--sessions 10000] [--rate 2000] [--waves 2] \
        [--workers 2,3] [--out perf/results/DATE-dns.md] [--json RAW.json]
    python3 perf/dns/bench_scale.py --mxgate X --from-json RAW.json  (the report again,
        from the raw results, without running anything)

Root: the two-namespace topology of dnsbench.py. In the gateway namespace, slow_dns.py
--hold --answer mixed on 127.0.0.1:53 serves the zone scale.test: it holds every query
until told (SIGUSR1), then answers: addresses with an odd last octet are listed (A
127.0.0.2, TXT "listed A.B.C.D", the address the name stands for), the others NXDOMAIN.
The namespace's resolv.conf says `nameserver 127.0.0.1` and `options timeout:30
attempts:1` (mxgate_dns_servers is left empty, so mxgate reads it): one try of 30 s, so
no query is retried while the server holds it. mxgate (each transport in turn) rejects
with `smtpd_client_restrictions = reject_rbl_client scale.test` (Postfix's delayed
reject: the verdict comes at RCPT).

Per wave, smtp_load opens --sessions sessions (at most --rate new ones per second), each
EHLO, XCLIENT ADDR= an address of its own (never a cache hit: every wave and transport
uses a fresh range of 172.16/12), EHLO, MAIL, RCPT; each RCPT then waits on its lookup.
Once the DNS server holds --sessions queries the script checks that all of them are parked
at once, as each party counts them: the DNS server's held queries, the gateway's open
connections and the resolver's questions in flight (SIGUSR1), and the client's sessions
waiting for their RCPT reply. It takes the gateway's RSS then, and once before the wave
(idle): (parked - before) / sessions is the memory per parked session, everything in it
(the connection, the session, its transaction, the request in flight, the resolver's
query). Then it releases the answers and measures the time until the last RCPT reply,
and checks the answers:
  - the client: exactly the listed sessions got 554 and the others 250, no failures;
  - the gateway's log: one "reject: RCPT from unknown[ADDR]" line per listed address,
    none for another address, each quoting "listed ADDR" from its own TXT record (an
    answer handed to the wrong session would name another address).
Also reported: the gateway's CPU per session over the wave (connection, commands, the A
and TXT lookups), the resolver thread's CPU per lookup, and the RSS once the wave has
finished (the second wave shows whether the first one's memory is reused).

--workers takes a list: each count is a run of its own per transport. A worker holds at
most SVC_RING_SIZE (4,096) requests in flight with a service; a lookup beyond that is not
made and answers TEMPFAIL at once, which reject_rbl_client treats as "not listed" (as
Postfix treats a DNS error). The script counts those from the gateway's "RBL lookup
error: the resolver service is not available" warnings, so 10,000 parked at once needs
three workers or more.

The resolver's cache-hit cost and uncached lookups/s are perf/resolver's (meson test
--benchmark resolver; perf/results/2026-12-07-resolver.md): not repeated here.
"""

import argparse
import ipaddress
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsbench  # noqa: E402

ZONE = "scale.test"
HOLD_S = 30  # resolv.conf timeout:30 (glibc's and mxgate's cap)


def config(client_ip):
    return ("mxgate_max_connections = 20000\n"
            f"smtpd_authorized_xclient_hosts = {client_ip}\n"
            f"smtpd_client_restrictions = reject_rbl_client {ZONE}\n")


def listed(addr):
    return int(addr.rsplit(".", 1)[1]) % 2 == 1


_REJECT = re.compile(r"reject: RCPT from [^\[\s]*\[([0-9.]+)\]: (\d{3}) (.*)")
_LISTED = re.compile(r"blocked using " + re.escape(ZONE) + r"; listed ([0-9.]+)")


def check_log(gw, off, addrs):
    """The gateway's reject lines written since byte `off` of its log, checked against
    the wave's addresses. Returns (problems, count of correct reject lines, lookups the
    gateway did not make because the resolver could not take them, new offset)."""
    with open(gw.maillog, "rb") as f:
        f.seek(off)
        text = f.read().decode("utf-8", "replace")
        new_off = f.tell()
    want = {a for a in addrs if listed(a)}
    seen = {}
    problems = []
    refused = 0
    for line in text.splitlines():
        if "RBL lookup error: the resolver service is not available" in line:
            refused += 1
        m = _REJECT.search(line)
        if not m:
            continue
        addr, code, rest = m.groups()
        seen[addr] = seen.get(addr, 0) + 1
        t = _LISTED.search(rest)
        if addr not in want:
            problems.append(f"rejected an address that is not listed: {line.strip()[:200]}")
        elif code != "554" or not t or t.group(1) != addr:
            problems.append(f"wrong answer for {addr}: {line.strip()[:200]}")
    missing = want - set(seen)
    if missing:
        problems.append(f"{len(missing)} listed addresses have no reject line, e.g. "
                        f"{sorted(missing)[:5]}")
    twice = [a for a, n in seen.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} addresses rejected more than once, e.g. {twice[:5]}")
    good = sum(1 for a in seen if a in want) - len(twice)
    if refused:
        problems.append(f"{refused} lookups were not made: the resolver service could not "
                        "take them (the worker's ring was full), so those clients were "
                        "treated as not listed")
    return problems, good, refused, new_off


def last_progress(load):
    try:
        with open(load.errpath, errors="replace") as f:
            lines = [l for l in f if l.startswith("{")]
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def wave(env, gw, dns, a, base, log_off):
    n = a.sessions
    addrs = [str(ipaddress.IPv4Address(base) + i) for i in range(n)]
    out = {"base": base, "background": dnsbench.wait_quiet(0.3, 30)}
    time.sleep(1)
    out["rss_before_kb"] = dnsbench.rss_kb(gw.proc.pid)
    st0 = dnsbench.usr1(gw)
    d0 = json.load(open(dns.stats))
    cpu0 = dnsbench.cpu_seconds(gw.proc.pid)
    res0 = dnsbench.thread_cpu_ns(gw.proc.pid, "mx-resolver")
    dns.send_signal(signal.SIGUSR2)  # hold
    t_start = time.monotonic()
    load = env.load_start(gw.host, gw.port, concurrency=n, sessions=n, rate=a.rate,
                          xclient_base=base, xclient_count=n, timeout=HOLD_S + 120,
                          progress_ms=200)
    load.timeout = HOLD_S + 180
    # every session parked: the DNS server holds n queries of this wave; or, when the
    # gateway took fewer, every session has started and each one still open waits for
    # its RCPT reply (the others were answered without a lookup)
    deadline = t_start + HOLD_S - 5
    while time.monotonic() < deadline:
        d = json.load(open(dns.stats))
        prog = last_progress(load)
        if d["waiting"] >= n or load.proc.poll() is not None:
            break
        if (prog.get("started") == n and prog.get("open") == prog.get("waiting_rcpt") ==
                d["waiting"] and time.monotonic() - t_start > 2):
            break
        time.sleep(0.1)
    out["ramp_s"] = time.monotonic() - t_start
    time.sleep(0.5)  # the last sessions' RCPT replies would show in the counts below
    st = dnsbench.usr1(gw)
    d = json.load(open(dns.stats))
    prog = last_progress(load)
    out["parked"] = {
        "dns_held": d["waiting"],
        "dns_in_zone": d["in_zone"] - d0["in_zone"],
        "gateway_open": st.get("main", {}).get("open_connections"),
        "resolver_in_flight": st.get("resolver", {}).get("in_flight"),
        "client_waiting_rcpt": prog.get("waiting_rcpt"),
        "client_open": prog.get("open"),
        "client_failed": prog.get("failed"),
    }
    out["rss_parked_kb"] = dnsbench.rss_kb(gw.proc.pid)
    out["resolver_parked"] = st.get("resolver", {})
    out["dpdk_parked"] = st.get("dpdk", {})  # the TCP stack's own memory, dpdk only
    # the answers
    t_release = time.monotonic()
    dns.send_signal(signal.SIGUSR1)
    r = load.result()
    out["load"] = r
    out["release_to_last_rcpt_s"] = (r["t0_monotonic"] + r["last_rcpt_s"] - t_release
                                     if r["last_rcpt_s"] else float("nan"))
    out["cpu_s"] = dnsbench.cpu_seconds(gw.proc.pid) - cpu0
    out["resolver_cpu_s"] = (dnsbench.thread_cpu_ns(gw.proc.pid, "mx-resolver") - res0) / 1e9
    time.sleep(1)
    st1 = dnsbench.usr1(gw)
    out["rss_after_kb"] = dnsbench.rss_kb(gw.proc.pid)
    out["hwm_kb"] = dnsbench.hwm_kb(gw.proc.pid)
    out["resolver_after"] = st1.get("resolver", {})
    out["lookups"] = (st1.get("resolver", {}).get("requests", 0) -
                      st0.get("resolver", {}).get("requests", 0))
    out["queries"] = (st1.get("resolver", {}).get("queries", 0) -
                      st0.get("resolver", {}).get("queries", 0))
    problems, good, refused, log_off = check_log(gw, log_off, addrs)
    out["refused"] = refused
    nlisted = sum(1 for x in addrs if listed(x))
    codes = r["rcpt_codes"]
    if codes.get("554", 0) != nlisted or codes.get("250", 0) != n - nlisted or len(codes) > 2:
        problems.append(f"RCPT codes {codes}, expected 554: {nlisted}, 250: {n - nlisted}")
    if r["failed"]:
        problems.append(f"{r['failed']} sessions failed: {r['failures']}")
    p = out["parked"]
    for k in ("dns_held", "resolver_in_flight", "client_waiting_rcpt"):
        if p[k] != n:
            problems.append(f"not all parked at once: {k} = {p[k]} of {n}")
    if (p["gateway_open"] or 0) < n:
        problems.append(f"not all parked at once: gateway_open = {p['gateway_open']} of {n}")
    out["problems"] = problems
    out["log_rejects_ok"] = good
    out["listed"] = nlisted
    print(f"  wave {base}: parked {p}, RSS {out['rss_before_kb']} -> {out['rss_parked_kb']} "
          f"-> {out['rss_after_kb']} KiB, release to last reply "
          f"{out['release_to_last_rcpt_s']:.2f} s, codes {codes}, problems {problems[:3]}",
          flush=True)
    return out, log_off


def report(results, a, machine):
    n = a.sessions
    lines = [
        "## 2. Scale: 10,000 sessions parked at once, each on a lookup of its own", "",
        machine, "",
        f"`python3 perf/dns/bench_scale.py --mxgate {a.mxgate} --transports {a.transports} "
        f"--sessions {n} --rate {a.rate:g} --waves {a.waves} --workers {a.workers}`", "",
        f"Per wave, {n:,} sessions from {n:,} distinct client addresses (XCLIENT), opened at "
        f"up to {a.rate:g}/s, each parked at RCPT on `reject_rbl_client {ZONE}`, a name "
        "of its own that the DNS server holds until told; then the server answers them "
        "all at once (odd last octet listed, with a TXT naming the address; even: "
        "NXDOMAIN). Release build. \"Parked\" is counted by "
        "each party at the same moment: DNS queries held / the gateway's open connections "
        "/ the resolver's questions in flight / the client's sessions waiting for their "
        "RCPT reply.", "",
        "| transport | workers | wave | parked: DNS held / gateway open / resolver in "
        "flight / client waiting | lookups not made (ring full) | ramp s | RSS before / "
        "parked / after MiB | memory per parked session | release to last RCPT reply | "
        "RCPT replies (554 / 250) | reject lines with their own TXT | gateway CPU per "
        "session | resolver CPU per lookup | other load before (CPUs) |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---|---|---:|---:|---:|",
    ]
    notes = []
    for (transport, workers), waves in results.items():
        for i, w in enumerate(waves, 1):
            p = w["parked"]
            codes = w["load"]["rcpt_codes"]
            parked = p["resolver_in_flight"] or n
            per = (w["rss_parked_kb"] - w["rss_before_kb"]) * 1024 / parked
            lookups = max(w["lookups"], 1)
            lines.append(
                f"| {transport} | {workers} | {i} | {p['dns_held']} / {p['gateway_open']} / "
                f"{p['resolver_in_flight']} / {p['client_waiting_rcpt']} | {w['refused']} | "
                f"{w['ramp_s']:.1f} | {w['rss_before_kb'] / 1024:.1f} / "
                f"{w['rss_parked_kb'] / 1024:.1f} / {w['rss_after_kb'] / 1024:.1f} | "
                f"{per / 1024:.1f} KiB | {w['release_to_last_rcpt_s'] * 1000:.0f} ms | "
                f"{codes.get('554', 0)} / {codes.get('250', 0)} | "
                f"{w['log_rejects_ok']} of {w['listed']} | "
                f"{w['cpu_s'] / n * 1e6:.0f} us | "
                f"{w['resolver_cpu_s'] / lookups * 1e6:.1f} us ({w['lookups']} lookups, "
                f"{w['queries']} queries) | {w['background']:.2f} |")
            if w["problems"]:
                notes.append(f"{transport}, {workers} workers, wave {i}: "
                             + "; ".join(w["problems"]))
    lines.append("")
    for (transport, workers), waves in results.items():
        for i, w in enumerate(waves, 1):
            d = w.get("dpdk_parked") or {}
            if d.get("conn_bytes_each"):
                lines.append(
                    f"- {transport}, {workers} workers, wave {i}, the gateway's own account "
                    f"while parked (SIGUSR1): {d['conn_bytes_each']:,} bytes of session "
                    f"memory per connection ({d.get('conn_memory_bytes', 0) / 2**20:.1f} "
                    f"MiB for {d.get('open_connections', 0):,}), TCP control block "
                    f"{d.get('tcb_bytes', 0)} bytes, {d.get('stack_buffers', 0)} stack "
                    f"buffers and {d.get('mbufs_in_use', 0)} mbufs in use.")
    for nt in notes:
        lines.append(f"- NOTE: {nt}")
    if not notes:
        lines.append("Every wave: all sessions parked at once, every listed client got "
                     "its 554 quoting its own TXT, every other one its 250, no session "
                     "failed.")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--transports", default="kernel,dpdk")
    ap.add_argument("--workers", default="2,3", help="a list: one run per count")
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--waves", type=int, default=2)
    ap.add_argument("--out", help="append the section to this file")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--from-json", help="run nothing: the report of a --json file")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            saved = json.load(f)
        results = {(x["transport"], x["workers"]): x["waves"] for x in saved["results"]}
        text = report(results, argparse.Namespace(**saved["args"]), saved["machine"])
        print(text)
        if a.out:
            with open(a.out, "a") as f:
                f.write(text + "\n")
        return
    machine = dnsbench.machine_line()
    transports = a.transports.split(",")
    workers = [int(w) for w in a.workers.split(",")]
    runs = a.waves * len(transports) * len(workers)
    if a.sessions * runs > 1_000_000:
        sys.exit("sessions x waves x transports x workers must fit in 172.16/12")
    bases = iter(str(ipaddress.IPv4Address("172.16.0.1") + i * a.sessions)
                 for i in range(runs))
    results = {}
    with dnsbench.Env(a.mxgate) as env:
        env.resolv_conf(f"nameserver 127.0.0.1\noptions timeout:{HOLD_S} attempts:1\n")
        dns = env.pyserver("slow_dns.py", ["--port", "53", "--zone", ZONE, "--hold",
                                           "--answer", "mixed"], "dns")
        for nw in workers:
            for transport in transports:
                gw = env.gateway(transport, nw, config(env.client_ip(transport)))
                print(f"{transport}, {nw} workers: gateway up", flush=True)
                log_off = 0
                key = (transport, nw)
                try:
                    for _ in range(a.waves):
                        w, log_off = wave(env, gw, dns, a, next(bases), log_off)
                        results.setdefault(key, []).append(w)
                    if gw.stop(check=False) != 0:
                        results[key][-1]["problems"].append(
                            "the gateway did not exit 0 after SIGTERM")
                finally:
                    dnsbench.drop_gateway(gw)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "args": vars(a),
                       "results": [{"transport": t, "workers": nw, "waves": w}
                                   for (t, nw), w in results.items()]}, f, indent=1)
    text = report(results, a, machine)
    print(text)
    if a.out:
        with open(a.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
