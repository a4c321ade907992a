#!/usr/bin/env python3
"""mxgate-loadgen against the gateway over net_memif (tests/e2e/loadgen.py): the generator on
one lcore, the gateway with one worker; two load shapes, like side_by_side.py's:
  reused    --sessions S --messages M (sessions kept for many messages)
  one       one message per session
Reports the generator's messages/s, sessions/s and latencies, and the gateway's busy cycles
per message and per session from its SIGUSR1 dpdk statistics (the difference over the run).
Root; a release build:

    python3 perf/loadgen/bench_memif.py --mxgate build-release/dataplane/mxgate \\
        [--messages 10000] [--size 4096] [--concurrency 20] [--json out.json]

Pinning: with --gw-cpu and --gen-cpu the gateway's worker and the generator's lcore get one
CPU each (the gateway's main lcore shares the worker's CPU; it only manages).

Policy: --policy default (the gateway's defaults: reject_unauth_destination) or --policy
realistic: a Postfix MX's restriction lists (client cidr:, HELO, sender and recipient
access maps in LMDB built with mxgate-map, reject_non_fqdn_*, reject_unlisted_recipient,
reject_unauth_destination; no DNS) and 100 header_checks rules (pcre:, spam patterns the
generator's messages do not match), with the durable spool as always; realistic_policy()
writes it and the result records it ("config"). --runs N repeats both shapes (medians
and the spread in "summary"); --perf DIR records the gateway with `perf record` during
each run of each shape (DIR/<shape>-<run>.data).
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))
import loadgen  # noqa: E402
import mxtest  # noqa: E402


# 100 header_checks rules: what an MX's header_checks file holds (subjects of spam
# runs, senders' domains and mailers of bulk tools, executable attachments, forged
# headers). None matches the generator's headers (From/To <..@loadgen.example,
# relay.example>, Subject: mxgate-loadgen, Message-ID) nor the gateway's Received:.
_SPAM_WORDS = [
    "viagra", "cialis", "levitra", "casino", "lottery winner", "you have won",
    "million dollars", "inheritance", "bank transfer", "wire transfer", "bitcoin doubler",
    "crypto giveaway", "weight loss", "diet pills", "cheap meds", "online pharmacy",
    "replica watches", "rolex", "hot singles", "dating site", "work from home",
    "make money fast", "earn extra cash", "no credit check", "debt relief", "payday loan",
    "mortgage rates", "refinance now", "free gift card", "claim your prize", "act now",
    "limited time offer", "urgent reply", "account suspended", "verify your account",
    "password expired", "invoice overdue", "unclaimed funds", "tax refund", "nigerian prince",
]
_BAD_TLDS = ["top", "xyz", "click", "loan", "work", "party", "racing", "download", "stream",
             "gdn", "men", "bid", "trade", "webcam", "date", "faith", "review", "accountant",
             "cricket", "science"]
_BAD_EXTS = ["exe", "scr", "pif", "bat", "cmd", "com", "vbs", "vbe", "js", "jse", "wsf",
             "wsh", "hta", "cpl", "msi"]
_BULK_MAILERS = ["Mass Mailer", "Bulk Mailer", "Group Mail", "eMailBlaster", "Send-Safe",
                 "Atomic Mail Sender", "Dark Mailer", "Advanced Mass Sender", "SuperMailer",
                 "The Bat! \\(v1\\.0"]


def header_checks_rules():
    """100 pcre: header_checks lines (REJECT with a text, as sites write them)."""
    rules = []
    for w in _SPAM_WORDS:  # 40
        pat = w.replace(" ", "\\s+")
        rules.append(f"/^Subject:.*\\b{pat}\\b/i REJECT spam subject ({w})")
    for t in _BAD_TLDS:  # 20
        rules.append(f"/^From:.*@[a-z0-9.-]+\\.{t}\\b/i REJECT sender domain .{t} refused")
    for e in _BAD_EXTS:  # 15
        rules.append(f"/^Content-(Type|Disposition):.*name\\s*=\\s*\"?[^\"]*\\.{e}\"?\\s*$/i "
                     f"REJECT attachment type .{e} refused")
    for m in _BULK_MAILERS:  # 10
        rules.append(f"/^X-Mailer:.*{m}/i REJECT bulk mailer")
    rules += [  # 15
        "/^Received:.*\\[(127\\.0\\.0\\.1|0\\.0\\.0\\.0)\\].*by .*\\(forged\\)/ REJECT forged Received",
        "/^Message-ID:\\s*<[^@>]*>\\s*$/i REJECT Message-ID without a domain",
        "/^Message-ID:.*@(localhost|127\\.0\\.0\\.1)>/i REJECT Message-ID from localhost",
        "/^Date:.*\\b(19[0-9][0-9]|20[0-1][0-9])\\b/ REJECT Date in the past",
        "/^To:\\s*undisclosed-recipients:;?\\s*$/i REJECT undisclosed recipients",
        "/^From:\\s*\"?(admin|support|security)\\s+team\"?\\s*<.*@(gmail|yahoo|hotmail)\\./i REJECT impersonation",
        "/^Reply-To:.*@(mail\\.ru|yandex\\.ru|qq\\.com)>?\\s*$/i REJECT reply-to freemail",
        "/^X-Spam-Flag:\\s*YES/i REJECT already marked as spam",
        "/^X-Priority:\\s*1\\s*\\(Highest\\)/i REJECT bulk priority",
        "/^Content-Type:.*charset=\"?(gb2312|big5|koi8-r)\"?/i REJECT charset not read here",
        "/^Subject:\\s*=\\?(gb2312|big5|koi8-r)\\?/i REJECT charset not read here",
        "/^List-Unsubscribe:.*\\.(top|xyz|click)\\//i REJECT unsubscribe at a spam domain",
        "/^Subject:.*[$]{3,}/ REJECT dollar signs",
        "/^Subject:\\s*(re|fwd?):\\s*(re|fwd?):\\s*(re|fwd?):\\s*(re|fwd?):/i REJECT reply chain",
        "/^X-PHP-Originating-Script:.*(mailer|sendmail)\\.php/i REJECT web form spam",
    ]
    assert len(rules) == 100, len(rules)
    return rules


def realistic_policy(gw, mxgate_map):
    """Write the realistic policy's tables and rules into gw.dir and its parameters into
    gw's configuration (before start). Returns the parameters and files as written."""
    d = gw.dir
    tables = os.path.join(d, "tables")
    os.makedirs(tables, exist_ok=True)
    files = {
        # clients an MX turns away by network (none is the generator's 10.99.0.0/16)
        "client.cidr": "".join(f"198.18.{i}.0/24 REJECT blocked network {i}\n"
                               for i in range(32)) + "192.0.2.0/24 REJECT test net\n",
        "helo_access": "".join(f"{h} REJECT you are not {h}\n" for h in
                               ("localhost", "localhost.localdomain", "mx.test.example",
                                "relay.example")),
        "sender_access": "".join(f"{s} REJECT sender {s} refused\n" for s in
                                 [f"spammer{i}.example" for i in range(200)]
                                 + ["bad.example", "postmaster@spam.example"]),
        "recipient_access": "".join(f"{r} REJECT no such user\n" for r in
                                    [f"former{i}@relay.example" for i in range(200)]),
        "relay_recipients": "@relay.example OK\n",
        "header_checks": "".join(r + "\n" for r in header_checks_rules()),
    }
    for name, text in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    for kind, name in (("cidr", "client.cidr"), ("lmdb", "helo_access"),
                       ("lmdb", "sender_access"), ("lmdb", "recipient_access"),
                       ("lmdb", "relay_recipients")):
        r = subprocess.run([mxgate_map, "-d", tables, f"{kind}:{os.path.join(d, name)}"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            mxtest.fail(f"mxgate-map {kind}:{name}: {r.stdout}{r.stderr}")
    p = lambda name: os.path.join(d, name)  # noqa: E731
    config = (
        f"mxgate_table_directory = {tables}\n"
        "smtpd_helo_required = yes\n"
        f"smtpd_client_restrictions = permit_mynetworks, check_client_access "
        f"cidr:{p('client.cidr')}\n"
        "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname, "
        f"reject_non_fqdn_helo_hostname, check_helo_access lmdb:{p('helo_access')}\n"
        "smtpd_sender_restrictions = permit_mynetworks, reject_non_fqdn_sender, "
        f"check_sender_access lmdb:{p('sender_access')}\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_non_fqdn_recipient, "
        f"reject_unlisted_recipient, check_recipient_access lmdb:{p('recipient_access')}, "
        "permit\n"
        f"relay_recipient_maps = lmdb:{p('relay_recipients')}\n"
        f"header_checks = pcre:{p('header_checks')}\n"
    )
    with open(gw.config_path, "a") as f:
        f.write(config)
    return {"main.cf": config, "files": files}


def perf_start(gw, path):
    """perf record of the gateway's process (every thread; cpu-clock works without a PMU)."""
    return subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000",
                             "--call-graph", "dwarf,16384", "-o", path, "-p",
                             str(gw.proc.pid)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def perf_stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run_shape(gw, gen, name, args, gen_cpu, timeout, perf_path=None):
    before = gw.stats()
    prec = perf_start(gw, perf_path) if perf_path else None
    jp = os.path.join(gw.dir, f"{name}.json")
    rc, out, res = loadgen.run_loadgen(gen, gw.socket, args, timeout, json_path=jp,
                                       lcore_cpu=gen_cpu)
    if prec:
        perf_stop(prec)
    after = gw.stats()
    if rc != 0 or res is None:
        mxtest.fail(f"{name}: mxgate-loadgen exit status {rc}:\n{out}")
    d = {k: after.get(k, 0) - before.get(k, 0)
         for k in ("busy_cycles", "total_cycles", "messages_accepted", "connections_accepted",
                   "rx_packets", "tx_packets", "worker_cpu_ns")}
    msgs, sess = max(d["messages_accepted"], 1), max(d["connections_accepted"], 1)
    row = {
        "shape": name,
        "messages": res["messages"]["accepted"],
        "sessions": res["sessions"]["done"],
        "seconds": res["seconds"],
        "messages_per_s": res["messages_per_s"],
        "sessions_per_s": res["sessions_per_s"],
        "errors": res["errors"]["total"],
        "latency_us": res["latency_us"],
        "gateway_busy_cycles_per_message": d["busy_cycles"] // msgs,
        "gateway_busy_cycles_per_session": d["busy_cycles"] // sess,
        "gateway_busy_share": round(d["busy_cycles"] / max(d["total_cycles"], 1), 3),
        "gateway_packets_per_message": round((d["rx_packets"] + d["tx_packets"]) / msgs, 1),
        "generator_busy_share": round(res["busy_cycles"] / max(res["total_cycles"], 1), 3),
        "generator_busy_cycles_per_message": res["busy_cycles"] // max(
            res["messages"]["accepted"], 1),
    }
    if d["messages_accepted"] != res["messages"]["accepted"]:
        mxtest.fail(f"{name}: the gateway counted {d['messages_accepted']} messages, the "
                    f"generator {res['messages']['accepted']}")
    return row


def summarize(rows):
    """Per shape: the median of each figure over the runs, and its range."""
    out = {}
    keys = ("messages_per_s", "sessions_per_s", "gateway_busy_cycles_per_message",
            "gateway_busy_cycles_per_session", "gateway_busy_share")
    for shape in dict.fromkeys(r["shape"] for r in rows):
        rs = [r for r in rows if r["shape"] == shape]
        out[shape] = {k: {"median": statistics.median(r[k] for r in rs),
                          "min": min(r[k] for r in rs), "max": max(r[k] for r in rs)}
                      for k in keys}
        out[shape]["runs"] = len(rs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mxgate", required=True)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--gw-cpu", type=int, default=None)
    ap.add_argument("--gen-cpu", type=int, default=None)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json", default=None)
    ap.add_argument("--policy", choices=("default", "realistic"), default="default")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--shapes", default="reused,one")
    ap.add_argument("--perf", default=None, metavar="DIR")
    a = ap.parse_args()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(a.mxgate)
    per_session = max(a.messages // a.concurrency, 1)
    shapes = [
        ("reused", ["--src", "10.99.0.0/16", "--concurrency", str(a.concurrency),
                    "--sessions", str(a.concurrency), "--messages", str(per_session),
                    "--size", str(a.size)]),
        ("one", ["--src", "10.99.0.0/16", "--concurrency", str(a.concurrency * 2),
                 "--sessions", str(a.messages // 2), "--messages", "1", "--size",
                 str(a.size)]),
    ]
    want = a.shapes.split(",")
    shapes = [s for s in shapes if s[0] in want]
    if a.perf:
        os.makedirs(a.perf, exist_ok=True)
    rows = []
    policy = None
    gw = loadgen.MemifGateway(a.mxgate, workers=1, cpu=a.gw_cpu)
    if a.policy == "realistic":
        mxmap = os.path.join(os.path.dirname(os.path.abspath(a.mxgate)), "..", "mgmt",
                             "mxgate-map")
        policy = realistic_policy(gw, os.path.normpath(mxmap))
    with gw:
        for run in range(a.runs):
            for name, args in shapes:
                pp = os.path.join(os.path.abspath(a.perf), f"{name}-{run}.data") \
                    if a.perf else None
                row = run_shape(gw, gen, name, args, a.gen_cpu, a.timeout, pp)
                row["run"] = run
                rows.append(row)
                print(f"{name:7} {row['messages']:6} msgs {row['sessions']:6} sessions "
                      f"{row['messages_per_s']:9.1f} msg/s {row['sessions_per_s']:9.1f} "
                      f"sess/s  gateway busy cycles/msg "
                      f"{row['gateway_busy_cycles_per_message']:>9} "
                      f"/session {row['gateway_busy_cycles_per_session']:>9}  "
                      f"busy {row['gateway_busy_share']:.2f} "
                      f"dot p50/p99 {row['latency_us']['dot']['p50']}/"
                      f"{row['latency_us']['dot']['p99']} us", flush=True)
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {"machine": platform.node(), "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "commit": commit, "size": a.size, "concurrency": a.concurrency,
              "policy": a.policy, "config": policy, "rows": rows,
              "summary": summarize(rows)}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    sys.exit(main())
