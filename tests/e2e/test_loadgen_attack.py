"""mxgate-loadgen's traffic classes against the gateway's screen over net_memif
(tests/e2e/loadgen.py), in ONE generator run: legitimate senders, pregreeting bots,
DNSBL-listed clients and a SYN flood at the same time (perf/screen/bench_attack_memif.py
measures the same at scale). Needs root and libdpdk (built with it); no namespace: the
DNSBL (perf/screen/screen_dns.py, listing 10.2.x.y under bl.test) listens on a free port of
127.0.0.1 and the gateway asks it there (mxgate_dns_servers).

The gateway: postscreen in master.cf, greet wait 2 s, greet action drop, DNSBL bl.test*2
with threshold 1 and `postscreen_dnsbl_action = enforce` (a listed client is greeted and
refused at RCPT with 550 5.7.1), the deep tests off, its postscreen cache in LMDB.

1. --listed alone: 50 listed clients, each greeted after the greet wait and refused at RCPT:
   the generator counts 50 rejected and no error; the gateway counts 50 DNSBL failures and
   its log has 50 "NOQUEUE: reject: RCPT ... blocked using bl.test" lines.
2. The mix, 6 s: legit from 10.3.0.1-10.3.0.20 (50 messages/s; their first sessions wait
   the greet wait, PASS NEW), --also pregreet (300 sessions/s), --also listed (100 at once),
   --also synflood (2,000 SYNs/s from 172.16.0.0/12). Exit status 0 (no error in any class);
   the gateway's screen_pregreet_fail equals the bots' rejections, screen_dnsbl_fail the
   listed clients' rejections; the spool holds exactly the legitimate messages the
   generator counted as accepted, each from a legitimate address; the gateway saw at least
   as many SYNs as the flood sent plus the sessions' and answered the flood (the
   generator saw a SYN-ACK for at least 95% of its SYNs); no legitimate address was
   screened out.
"""

import json
import os
import signal
import subprocess
import sys

import loadgen
import mxtest

HERE = os.path.dirname(os.path.abspath(__file__))
DNS = os.path.join(HERE, "..", "..", "perf", "screen", "screen_dns.py")

SETTINGS = """\
postscreen_greet_wait = 2s
postscreen_greet_action = drop
postscreen_dnsbl_sites = bl.test*2
postscreen_dnsbl_threshold = 1
postscreen_dnsbl_action = enforce
postscreen_access_list = permit_mynetworks
postscreen_pipelining_enable = no
postscreen_non_smtp_command_enable = no
postscreen_bare_newline_enable = no
"""
LEGIT = "10.3.0.1-10.3.0.20"
BOTS = "10.1.0.1-10.1.3.232"
LISTED = "10.2.0.1-10.2.3.232"


def delta(gw, before, keys):
    st = gw.stats()
    return {k: st.get(k, 0) - before.get(k, 0) for k in keys}, st


def main():
    binary = mxtest.binary_from_argv()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(binary)
    port = mxtest.free_port()
    dns = subprocess.Popen([sys.executable, DNS, str(port), "bl.test", "10.2."],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if dns.stdout.readline().strip() != "ready":
            mxtest.fail(f"the DNSBL server did not start: {dns.stderr.read()}")
        run(binary, gen, port)
    finally:
        dns.send_signal(signal.SIGTERM)
        try:
            dns.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            dns.kill()
            dns.communicate()
    print("ok")


def run(binary, gen, dns_port):
    gw = loadgen.MemifGateway(binary, workers=1)
    data = os.path.join(gw.dir, "data")
    os.makedirs(data)
    mpath = os.path.join(gw.dir, "master.cf")
    with open(mpath, "w") as f:
        f.write("25 inet n - n - 1 postscreen\nsmtpd pass - - n - - smtpd\n")
    with open(gw.config_path, "a") as f:
        f.write(SETTINGS + f"mxgate_master_file = {mpath}\ndata_directory = {data}\n"
                f"mxgate_dns_servers = 127.0.0.1:{dns_port}\n")
    keys = ("screen_pregreet_fail", "screen_dnsbl_fail", "screen_passed", "tcp_syn",
            "screen_connections")
    with gw:
        # -- 1: listed clients alone ---------------------------------------------------
        before = gw.stats()
        jp = os.path.join(gw.dir, "run1.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, ["--listed", "--src", LISTED, "--sessions", "50",
                             "--concurrency", "50", "--timeout", "15"],
            timeout=120, json_path=jp)
        print(out)
        if rc != 0 or res is None or res["sessions"]["rejected"] != 50 or \
                res["errors"]["total"] != 0 or res["sessions"]["done"] != 50:
            mxtest.fail(f"run 1: exit status {rc}: {res and res['sessions']}\n{out}")
        d, _ = delta(gw, before, keys)
        if d["screen_dnsbl_fail"] != 50 or d["screen_passed"] != 0:
            mxtest.fail(f"run 1: the gateway's screen counted {d}")
        log = gw.log()
        n = sum(1 for line in log.splitlines()
                if "NOQUEUE: reject: RCPT from [10.2." in line and
                "550 5.7.1 Service unavailable; client [10.2." in line and
                "blocked using bl.test" in line)
        if n != 50:
            mxtest.fail(f"run 1: {n} RCPT rejects in the log, expected 50:\n{log[-3000:]}")

        # -- 2: the mix ------------------------------------------------------------------
        before = gw.stats()
        if gw.spooled():
            mxtest.fail("run 1: a listed client's message was spooled")
        jp = os.path.join(gw.dir, "run2.json")
        rc, out, res = loadgen.run_loadgen(
            gen, gw.socket, [
                "--src", LEGIT, "--concurrency", "20", "--sessions", "0", "--duration", "6",
                "--messages", "5", "--rate", "50", "--rate-of", "messages", "--timeout", "15",
                "--also", f"pregreet:src={BOTS},concurrency=100,rate=300",
                "--also", f"listed:src={LISTED},concurrency=100",
                "--also", "synflood:src=172.16.0.0/12,rate=2000"],
            timeout=180, json_path=jp)
        print(out)
        classes = {}
        for kind in ("pregreet", "listed", "synflood"):
            p = jp[:-5] + f".{kind}.json"
            if not os.path.exists(p):
                mxtest.fail(f"run 2: no {p}:\n{out}")
            with open(p) as f:
                classes[kind] = json.load(f)
        if rc != 0 or res is None:
            mxtest.fail(f"run 2: exit status {rc}:\n{out}")
        pre, lst, syn = classes["pregreet"], classes["listed"], classes["synflood"]
        for name, r in (("legit", res), ("pregreet", pre), ("listed", lst)):
            if r["errors"]["total"] or r["sessions"]["failed"]:
                mxtest.fail(f"run 2: {name}: {r['sessions']} {r['errors']}")
        if res["messages"]["accepted"] < 100 or pre["sessions"]["rejected"] < 500 or \
                lst["sessions"]["rejected"] < 50 or syn["syns_sent"] < 5000:
            mxtest.fail(f"run 2: too little traffic: legit {res['messages']}, pregreet "
                        f"{pre['sessions']}, listed {lst['sessions']}, synflood {syn}")
        d, st = delta(gw, before, keys)
        if d["screen_pregreet_fail"] != pre["sessions"]["rejected"]:
            mxtest.fail(f"run 2: the gateway counted {d['screen_pregreet_fail']} pregreet "
                        f"failures, the generator {pre['sessions']['rejected']} rejects")
        if d["screen_dnsbl_fail"] != lst["sessions"]["rejected"]:
            mxtest.fail(f"run 2: the gateway counted {d['screen_dnsbl_fail']} DNSBL "
                        f"failures, the generator {lst['sessions']['rejected']} rejects")
        sessions = sum(r["sessions"]["started"] for r in (res, pre, lst))
        if d["tcp_syn"] < syn["syns_sent"] + sessions:
            mxtest.fail(f"run 2: the gateway saw {d['tcp_syn']} SYNs, the generator sent "
                        f"{syn['syns_sent']} flood SYNs and opened {sessions} sessions")
        if syn["synacks_seen"] < 0.95 * syn["syns_sent"]:
            mxtest.fail(f"run 2: SYN-ACKs seen for {syn['synacks_seen']} of "
                        f"{syn['syns_sent']} flood SYNs")
        if d["screen_connections"] != sessions:
            mxtest.fail(f"run 2: the screen saw {d['screen_connections']} connections, the "
                        f"generator opened {sessions} sessions (a flood SYN completed?)")
        msgs = gw.spooled()
        if len(msgs) != res["messages"]["accepted"]:
            mxtest.fail(f"run 2: the spool holds {len(msgs)} messages, the generator "
                        f"counted {res['messages']['accepted']} accepted")
        legit_addrs = {f"10.3.0.{i}" for i in range(1, 21)}
        for qid, env, _ in msgs:
            client = env.get("client", "")
            if not any(f"[{a}]" in client or client == a for a in legit_addrs):
                mxtest.fail(f"run 2: {qid} from {client!r}, not a legitimate address")
        if "warning:" in gw.log():
            mxtest.fail(f"warnings in the gateway's log:\n{gw.log()[-3000:]}")


if __name__ == "__main__":
    sys.exit(main())
