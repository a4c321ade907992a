"""The side-by-side harness (perf/side_by_side.py) cannot rot: a tiny load (4 sessions, 40
messages, sessions reused) from both clients, smtp-source over the kernel veth and
mxgate-loadgen (net_af_packet on its own veth; net_memif and net_af_packet to mxgate-dpdk),
against every peer: smtp-sink, Debian's Postfix, Haraka (npm, perf/peers/haraka), mxgate on
the kernel transport and on the dpdk transport. Every run must finish, every peer must count exactly
the messages its client sent (smtp-sink's counters, Postfix's hold queue, Haraka's
disconnect lines, mxgate's spool), loadgen must report no error and its latency histogram,
and the table, the JSON and the three plots must be written. Under 90 s; root, DPDK,
Postfix, Node.js with the pinned Haraka, python3-matplotlib.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import loadgen
import mxtest
import netns

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "..", "..", "perf", "side_by_side.py")
HARAKA = os.path.join(HERE, "..", "..", "perf", "peers", "haraka", "node_modules", ".bin",
                      "haraka")
PEERS = ["smtp-sink", "postfix", "haraka", "mxgate-kernel", "mxgate-dpdk", "mxgate-dpdk-afp"]
CLIENTS = ["smtp-source", "loadgen"]


def clients_of(peer):
    # mxgate-dpdk-afp is the generator over af_packet to mxgate-dpdk (smtp-source's link to
    # mxgate-dpdk already)
    return ["loadgen"] if peer == "mxgate-dpdk-afp" else CLIENTS
MESSAGES, SESSIONS = 40, 4


def main():
    binary = mxtest.binary_from_argv()
    netns.need_netns_tools()
    for tool in ("/usr/sbin/smtp-source", "/usr/sbin/smtp-sink", "/usr/sbin/postfix"):
        mxtest.need_tool(tool)
    mxtest.need_python_module("matplotlib")
    if shutil.which("node") is None:
        mxtest.fail("node is missing: Node.js 20 or later (the machine image's nodejs; "
                    "Haraka runs on it)")
    if not os.access(HARAKA, os.X_OK):
        mxtest.fail(f"{os.path.normpath(HARAKA)} is missing: the npm package Haraka, pinned "
                    "in perf/peers/haraka; run deploy/install-deps.sh (npm ci there)")
    loadgen.loadgen_binary(binary)  # fails the test, naming what to build, when missing
    mxtest.need_root("namespaces, Postfix, DPDK and cgroups")
    out = tempfile.mkdtemp(prefix="mxgate-sbs-")
    try:
        argv = [netns.SYS_PYTHON, HARNESS, "--mxgate", binary, "--messages", str(MESSAGES),
                "--sessions", str(SESSIONS), "--shapes", "reused", "--quiet-wait", "0",
                "--timeout", "30", "--out", out, "--name", "smoke", "--strict"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=85)
        except subprocess.TimeoutExpired as e:
            mxtest.fail(f"the harness ran over 85 s:\n{e.stdout}\n{e.stderr}")
        print(r.stdout)
        print(r.stderr, file=sys.stderr)
        if r.returncode != 0:
            mxtest.fail(f"side_by_side.py exit status {r.returncode}")
        with open(os.path.join(out, "smoke.json")) as f:
            doc = json.load(f)
        for key in ("date", "commit", "nproc", "cpu_model", "memory_gib", "haraka"):
            if not doc["machine"].get(key):
                mxtest.fail(f"the result does not record the machine's {key}: {doc['machine']}")
        rows = {(x["peer"], x["client"]): x for x in doc["rows"]}
        for peer in PEERS:
            for client in clients_of(peer):
                row = rows.get((peer, client))
                if row is None or "error" in row:
                    mxtest.fail(f"{peer} with {client}: "
                                f"{row.get('error') if row else 'no row'}")
                if row["messages"] != MESSAGES or row["accepted"] != [MESSAGES] or \
                        not row["counts_ok"] or not row["msgs_per_s"] > 0:
                    mxtest.fail(f"{peer} with {client}: sent {row['messages']}, the server "
                                f"counted {row['accepted']}, {row.get('msgs_per_s')} msgs/s")
                if client == "loadgen" and (row.get("loadgen_errors") != 0 or
                                            not row.get("dot_p50_us")):
                    mxtest.fail(f"{peer} with loadgen: {row.get('loadgen_errors')} errors, "
                                f"dot p50 {row.get('dot_p50_us')}")
                if row.get("server_cpu_us_per_msg") is None and \
                        row.get("dpdk_busy_us_per_msg") is None:
                    mxtest.fail(f"{peer} with {client}: no server CPU measured")
            print(f"ok: {peer}: " + ", ".join(
                f"{c} {rows[(peer, c)]['msgs_per_s']:.0f} msgs/s" for c in clients_of(peer)))
        hist = [run["loadgen"]["latency_hist_us"]["dot"] for run in doc["runs"]
                if run["client"] == "loadgen"]
        if len(hist) != len(PEERS) or any(sum(n for _, n in h) != MESSAGES for h in hist):
            mxtest.fail(f"loadgen's dot latency histograms do not hold {MESSAGES} replies each")
        for name in ("smoke.md", "smoke-msgs.png", "smoke-cpu.png", "smoke-latency.png"):
            path = os.path.join(out, name)
            if not os.path.exists(path) or os.path.getsize(path) < 1000:
                mxtest.fail(f"{name} was not written")
        with open(os.path.join(out, "smoke.md")) as f:
            table = f.read()
        if "| sessions reused | haraka | loadgen (af_packet/veth) |" not in table or "NOTE" in table:
            mxtest.fail(f"the table:\n{table}")
        print("ok")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
