"""mxgate-loadgen's own correctness against kernel servers, over net_af_packet on a veth
(tests/e2e/netns.py: the generator is the DPDK side in the gateway namespace, the servers
listen in the client namespace on cl_ip4, which routes the generator's source range
10.99.0.0/16 onto the veth, so the kernel ARPs for every source and the generator answers).
Needs root, smtp-sink and Debian's Postfix.

1. smtp-sink -c: the generator's sessions and messages equal smtp-sink's own counters.
2. Debian's Postfix (every message held in its queue): the messages the generator counted
   as accepted are the messages in Postfix's queue; the recipients it was told to expect
   refused are the ones Postfix logged as rejected; its sessions are Postfix's
   disconnects.
3. A deliberately broken responder (broken_smtp.py), one mode at a time: each wrong reply
   is reported as the error it is (exit status 3, the kind counted, the text kept).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import loadgen
import mxtest
import netns

SRC = "10.99.0.0/16"
_runs = 0


def run_gen(topo, gen, port, args, timeout=180):
    """The generator in the gateway namespace against cl_ip4:port: (rc, output, result)."""
    global _runs
    _runs += 1
    prefix = f"mxlg-{topo.prefix}-{_runs}"
    json_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"{prefix}.json")
    try:
        return loadgen.run_loadgen_af_packet(topo.gw, gen, topo.dp_gw_if, topo.gw_ip4,
                                             f"{topo.cl_ip4}:{port}", ["--src", SRC, *args],
                                             timeout, prefix, json_path)
    except subprocess.TimeoutExpired as e:
        mxtest.fail(f"mxgate-loadgen ran over {timeout} s: {e.stdout} {e.stderr}")


def test_smtp_sink(topo, gen):
    sink = mxtest.need_tool("/usr/sbin/smtp-sink")
    port = 2525
    out_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sink-{topo.prefix}.out")
    with open(out_path, "wb") as out:
        p = topo.cl_popen([sink, "-u", "nobody", "-c", f"{topo.cl_ip4}:{port}", "1024"],
                          stdout=out, stderr=subprocess.STDOUT)
    try:
        rc, text, res = run_gen(topo, gen, port, ["--sessions", "300", "--concurrency", "30",
                                                  "--messages", "2", "--rcpts", "2",
                                                  "--size", "2000"])
        print(text)
        if rc != 0 or res is None:
            mxtest.fail(f"smtp-sink: mxgate-loadgen exit status {rc}:\n{text}")
        # smtp-sink updates its counters when a session ends: wait for the last one
        want = (res["sessions"]["done"], res["messages"]["accepted"])
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            with open(out_path, "rb") as f:
                counters = re.findall(rb"sess=(\d+) quit=(\d+) mesg=(\d+)", f.read())
            if counters:
                last = tuple(int(x) for x in counters[-1])
                if (last[1], last[2]) == want and last[0] == want[0]:
                    break
            time.sleep(0.1)
        if want != (300, 600) or last is None or (last[0], last[1], last[2]) != (300, 300, 600):
            mxtest.fail(f"smtp-sink counted sess/quit/mesg {last}, the generator "
                        f"{res['sessions']} {res['messages']}")
        print(f"ok: smtp-sink counted {last}, the generator {want}")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        os.unlink(out_path)


def test_postfix(topo, gen):
    pf = mxtest.PostfixPeer(
        relayhost="[127.0.0.1]:9", listen_host=topo.cl_ip4,
        command_prefix=["ip", "netns", "exec", topo.cl_ns],
        extra_main_cf=(f"mynetworks = 127.0.0.0/8 {SRC} {topo.gw_ip4}/32\n"
                       "smtpd_client_restrictions = check_client_access static:HOLD\n"
                       "smtpd_recipient_restrictions = check_recipient_access "
                       "inline:{bad@refused.example=REJECT}, permit_mynetworks, "
                       "reject_unauth_destination\n"
                       "smtpd_peername_lookup = no\n"
                       "default_process_limit = 100\n"
                       "smtpd_client_connection_count_limit = 0\n"
                       "smtpd_client_connection_rate_limit = 0\n"
                       "in_flow_delay = 0\n"))
    pf.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = topo.cl([netns.SYS_PYTHON, "-c",
                         "import socket,sys; socket.create_connection((sys.argv[1], "
                         "int(sys.argv[2])), 2).close()", topo.cl_ip4, str(pf.smtpd_port)],
                        capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.2)
        rc, text, res = run_gen(topo, gen, pf.smtpd_port,
                                ["--sessions", "100", "--concurrency", "20", "--messages",
                                 "2", "--rcpts", "3", "--size", "4096", "--bad-rcpt",
                                 "bad@refused.example", "--bad-rcpt-every", "4"])
        print(text)
        if rc != 0 or res is None:
            mxtest.fail(f"postfix: mxgate-loadgen exit status {rc}:\n{text}\n{pf.log()[-3000:]}")
        # every message is on hold (the client restriction): count the hold queue's files
        queued = sum(len(files) for _, _, files in
                     os.walk(os.path.join(pf.dir, "queue", "hold")))
        log = pf.log()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log = pf.log()
            if len(re.findall(r"smtpd\[\d+\]: disconnect from [^\[]*\[10\.99\.", log)) >= 100:
                break
            time.sleep(0.2)
        rejects = len(re.findall(r"reject: RCPT from .*<bad@refused\.example>", log))
        # the generator's sessions (the readiness probe came from cl_ip4)
        disconnects = len(re.findall(r"smtpd\[\d+\]: disconnect from [^\[]*\[10\.99\.", log))
        got = (res["messages"]["accepted"], res["rcpts"]["refused"], res["sessions"]["done"])
        if got != (queued, rejects, disconnects) or queued != 200 or rejects != 150:
            mxtest.fail(f"postfix: queue {queued} messages, {rejects} rejected recipients, "
                        f"{disconnects} sessions; the generator (accepted, refused, sessions) "
                        f"{got}")
        print(f"ok: Postfix queued {queued}, rejected {rejects} recipients, "
              f"{disconnects} sessions; the generator {got}")
    finally:
        pf.stop()
        shutil.rmtree(pf.dir, ignore_errors=True)


BROKEN = [
    # mode, extra generator args, error kind that must be counted, text kept must hold
    ("rcpt250", ["--bad-rcpt", "bad@x.example", "--bad-rcpt-every", "2", "--rcpts", "2"],
     "rcpt", "expected 4xx/5xx, got 250"),
    ("data250", [], "protocol", "DATA: protocol error unexpected-code: 2.0.0 Ok"),
    ("garbage", [], "protocol", "malformed: hello there"),
    ("dot451", [], "dot", "got 451"),
    ("greet554", [], "greeting", "got 554"),
    ("close", [], "lost", ""),
    ("quit250", [], "quit", "got 250"),
]


def test_broken(topo, gen):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broken_smtp.py")
    for i, (mode, args, kind, text) in enumerate(BROKEN):
        port = 2600 + i
        p = topo.cl_popen([netns.SYS_PYTHON, script, topo.cl_ip4, str(port), mode],
                          stdout=subprocess.PIPE, text=True)
        try:
            if p.stdout.readline().strip() != "ready":
                mxtest.fail(f"broken_smtp.py {mode} did not start")
            rc, out, res = run_gen(topo, gen, port, ["--sessions", "3", "--concurrency", "3",
                                                     "--timeout", "10", *args], timeout=120)
            if rc != 3 or res is None or res["errors"][kind] < 3 or \
                    not any(text in e["text"] for e in res["errors_kept"]):
                mxtest.fail(f"broken responder {mode}: exit status {rc}, expected 3 with "
                            f"{kind} errors and {text!r} kept:\n{out}")
            print(f"ok: {mode}: {res['errors']['total']} error(s), e.g. "
                  f"{res['errors_kept'][0]['text']}")
        finally:
            p.kill()
            p.wait(10)


def main():
    binary = mxtest.binary_from_argv()
    netns.need_netns_tools()
    gen = loadgen.loadgen_binary(binary)
    mxtest.need_tool("/usr/sbin/smtp-sink")
    with netns.Topology() as topo:
        # the generator's sources live behind the veth: the kernel ARPs for each of them
        topo.cl(["ip", "route", "add", SRC, "dev", topo.dp_cl_if], check=True)
        test_smtp_sink(topo, gen)
        test_postfix(topo, gen)
        test_broken(topo, gen)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
