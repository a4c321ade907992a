#!/usr/bin/env python3
"""Where a gateway worker's cycles go: reads `perf script -F tid,ip,sym,dso` of a
`perf record --call-graph dwarf` of the gateway (bench_memif.py --perf DIR) and files
each sample of the worker thread (comm rte-worker-1) under one part of the dataplane:
the deepest frame of the call chain that names a part wins (so memcpy under
spool_msg_append is the spool's, snprintf under mx_log_format the log's); the
allocator (malloc/free and the page faults and TLB shootdowns under them) is its own
part, whoever called it; nanosleep is the idle sleep.

    perf script -i reused-0.data --comm rte-worker-1 -F tid,ip,sym,dso | \\
        perf_breakdown.py --cycles-per-message 120000 [--json out.json]

With --cycles-per-message C (the busy cycles per message bench_memif.py measured) each
part's share of the busy samples (all but the idle sleep) is printed as cycles per message
too. With --messages N --freq F --hz H instead, each part's cycles per message come from
the samples themselves (N messages, perf's sampling frequency F, the TSC's H Hz): on-CPU
time only, which the other processes on a shared machine do not inflate (a busy poll
iteration's cycles count the time the worker was preempted too).
"""
import argparse
import json
import re
import sys

# (part, regexp on a symbol or dso), tried on each frame from the leaf up
PARTS = [
    ("idle sleep", r"nanosleep"),
    ("allocator (malloc/free, page faults)",
     r"^(malloc|calloc|realloc|free|__libc_|_int_|je_|jemalloc|cfree|posix_memalign|"
     r"aligned_alloc|tcache|arena_|extent_|pac_|large_|emap_|sdallocx|mallocx|rallocx|"
     r"exc_page_fault|do_user_addr_fault|__x64_sys_munmap|__x64_sys_madvise|"
     r"do_madvise|__vm_munmap)"),
    ("time reads", r"^(__vdso_clock_gettime|clock_gettime|__clock_gettime|mx_clock_|"
                   r"dp_update_clock)"),
    ("logging", r"^(mx_log|conn_log|conn_printable|smtp_checks_log_format)"),
    ("spool CRC32C", r"^spool_crc32c"),
    ("spool hand-off (worker side)", r"^(spool_|queue_id)"),
    ("header_checks (Hyperscan, checks)", r"^(smtp_checks|sc_|checks_|hs_|rule_file|"
                                          r"conn_checks|conn_count_checks|avx|fdr|"
                                          r"nfaExec|roseBlock|core2|corei7|avx2|avx512)"),
    ("restriction lists (eval, tables)", r"^(smtp_policy|smtp_restrictions|srx_|"
                                         r"table_|tables_|mdb_|conn_check|cidr|netlist|"
                                         r"domain_list|smtp_address)"),
    ("message assembly (Received:, prepends)", r"^(smtp_received|conn_write_|"
                                               r"conn_data_finish|conn_on_data)"),
    ("SMTP engine", r"^(smtp_session|smtp_reply|ss_|header_byte|smtp_cmd)"),
    ("generation/table snapshot (RCU, LMDB renew)",
     r"^(rte_rcu|conn_worker_release_gens|conn_worker_renew_tables|mx_generation)"),
    ("metrics/counters", r"^(mx_counter|mx_hist|conn_count|dp_stat|.*_metrics)"),
    ("timers", r"^(net_timer|net_tcp_timer|dp_timer|net_tcp_rto|net_tcp_delack)"),
    ("TCP output", r"^(net_tcp_output|net_tcp_send|net_tcp_xmit|net_tcp_buf|"
                   r"net_tcp_write|net_tcp_ack|net_ip_output|net_tcp_emit|net_tcp_seg)"),
    ("TCP/IP input", r"^(net_|dp_rx|dp_input)"),
    ("connection glue (session)", r"^(conn_|dp_conn|dp_flush|dp_close|dp_free_dead|"
                                  r"dp_run_ready|dp_on_)"),
    ("memif rx/tx, mbufs (DPDK)", r"(librte_net_memif|librte_mempool|librte_mbuf|"
                                  r"librte_ethdev|^rte_|^dp_tx|^dp_poll|^dpdk_)"),
    ("poll loop", r"^(dp_iterate|dp_worker_main|dp_housekeeping|dp_listen)"),
]
PARTS = [(n, re.compile(r)) for n, r in PARTS]


def classify(frames):
    """frames: [(sym, dso)] leaf first."""
    for sym, dso in frames:
        if "nanosleep" in sym:
            return "idle sleep"
    for sym, dso in frames:
        for name, rx in PARTS:
            if name == "idle sleep":
                continue
            if rx.search(sym) or (name.startswith("memif") and rx.search(dso)):
                return name
    return "other (" + (frames[0][0] if frames else "?") + ")"


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            if frames:
                yield frames
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        m = re.match(r"(.*?)\s+\((.*)\)$", rest)
        sym, dso = (m.group(1), m.group(2)) if m else (rest, "")
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
        frames.append((sym, dso))
    if frames:
        yield frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles-per-message", type=float, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--freq", type=float, default=4000.0)
    ap.add_argument("--hz", type=float, default=None)
    a = ap.parse_args()
    if a.messages and a.hz:
        a.cycles_per_message = None
    counts = {}
    total = 0
    for fr in samples(sys.stdin):
        total += 1
        k = classify(fr)
        counts[k] = counts.get(k, 0) + 1
    busy = total - counts.get("idle sleep", 0)
    rows = []
    for k, v in sorted(counts.items(), key=lambda kv: -kv[1]):
        share = v / busy if k != "idle sleep" and busy else None
        cpm = round(share * a.cycles_per_message) if share is not None and \
            a.cycles_per_message else None
        if share is not None and a.messages and a.hz:
            cpm = round(v / a.freq * a.hz / a.messages)
        rows.append({"part": k, "samples": v, "share_of_busy": share, "cycles": cpm})
        print(f"{k:48} {v:7} {'' if share is None else f'{100 * share:5.1f}%':>7} "
              f"{'' if cpm is None else cpm:>8}")
    print(f"{'samples (busy, all)':48} {busy:7} {total:7}")
    if a.messages and a.hz:
        print(f"{'on-CPU busy cycles per message':48} {round(busy / a.freq * a.hz / a.messages)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"samples": total, "busy_samples": busy, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
