"""smtpd_upstream_proxy_protocol = haproxy behind a real HAProxy (argv: mxgate binary,
kernel|dpdk).

HAProxy (Debian's) runs where the clients are, with two frontends on 127.0.0.1: one sends
PROXY v2 (send-proxy-v2), one v1 (send-proxy) to the gateway. mynetworks is only the
proxy's own address, so a relay attempt is refused unless the gateway took the proxy for
the client. The cases (proxy_cases.py):
  - a message through each frontend from its own source address (127.0.0.5, 127.0.0.6):
    the relay attempt is refused (the real client drives policy), the message is queued,
    the log says "connect from unknown[127.0.0.5]", Received: names [127.0.0.5];
  - straight to the gateway: SMTP instead of a header, and nothing at all until
    smtpd_upstream_proxy_timeout (2s): Postfix's "421 4.3.0 HOST Server local error" and
    the close, "warning: haproxy read: ...", "connect from unknown[unknown]";
  - a v1 header sent a byte at a time: the greeting follows it, and the client it names
    (192.0.2.7) is the one refused relaying;
  - a v2 LOCAL header (HAProxy's health checks): the connection's own address is used.
Then the statistics count both failures (proxy_failed grows by 2). Needs root (the dpdk topology,
and HAProxy's own checks of its configuration run as root here)."""

import json
import os
import subprocess
import sys

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
HAPROXY = mxtest.need_tool("/usr/sbin/haproxy")
mxtest.need_root("the PROXY protocol test (HAProxy; network namespaces on dpdk)")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool(netns.SYS_PYTHON)

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "proxy_cases.py")
EXTRA = ("smtpd_upstream_proxy_protocol = haproxy\n"
         "smtpd_upstream_proxy_timeout = 2s\n")


def haproxy_config(path, gw, port, v2, v1):
    with open(path, "w") as f:
        f.write(f"""# written by tests/e2e/test_proxy.py
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend proxy_v2
    bind 127.0.0.1:{v2}
    default_backend gateway_v2
backend gateway_v2
    server gw {gw}:{port} send-proxy-v2
frontend proxy_v1
    bind 127.0.0.1:{v1}
    default_backend gateway_v1
backend gateway_v1
    server gw {gw}:{port} send-proxy
""")


def main():
    topo = None
    if transport == "dpdk":
        topo = netns.Topology(prefix=f"prx{os.getpid() % 10000}").create()
        proxy_addr = topo.cl_ip4
        gw = netns.DpdkGateway(binary, topo, workers=2,
                               extra_config=f"mynetworks = {proxy_addr}/32\n" + EXTRA)
        gw.probe_proxy = True
        python = netns.SYS_PYTHON
        run = topo.cl
        popen = topo.cl_popen
    else:
        proxy_addr = "127.0.0.1"
        gw = mxtest.Gateway(binary, workers=2,
                            extra_config=f"mynetworks = {proxy_addr}/32\n" + EXTRA)
        # without a header the probe would wait as long as the gateway waits for one
        # (2 s), and lose that race on a loaded machine
        gw.probe_proxy = True
        python = sys.executable
        run = subprocess.run
        popen = subprocess.Popen
    hap = None
    try:
        gw.start()
        v2, v1 = mxtest.free_port(), mxtest.free_port()
        cfg = os.path.join(gw.dir, "haproxy.cfg")
        haproxy_config(cfg, gw.host, gw.port, v2, v1)
        hap_log = open(os.path.join(gw.dir, "haproxy.out"), "wb")
        hap = popen([HAPROXY, "-db", "-f", cfg], stdout=hap_log, stderr=subprocess.STDOUT)
        # the start-up probe's connection (a LOCAL header) is not a case
        before = gw.stats()
        log_from = len(gw.log())
        args = {"gw": gw.host, "port": gw.port, "v2": v2, "v1": v1, "timeout": 2}
        r = run([python, CASES, json.dumps(args)], capture_output=True, text=True,
                timeout=180)
        if r.returncode != 0:
            fail(f"proxy_cases.py failed ({r.returncode}):\n{r.stdout}{r.stderr}\n"
                 f"{gw.output()}")
        got = json.loads(r.stdout.strip().splitlines()[-1])
        check(got, gw, proxy_addr, before, log_from)
        print("ok: PROXY v1 and v2 through HAProxy, bad, missing, split and LOCAL headers")
    finally:
        if hap and hap.poll() is None:
            hap.terminate()
            hap.wait(timeout=10)
        gw.stop()
        if topo:
            topo.destroy()


def expect(cond, what, got, gw):
    if not cond:
        fail(f"{what}: got {got!r}\n{gw.output()}")


def check(got, gw, proxy_addr, before, log_from):
    # smtpd_relay_restrictions' defer_unauth_destination (the default)
    refused_relay = "454 4.7.1 <someone@elsewhere.example>: Relay access denied"
    failure = "421 4.3.0 mx.test.example Server local error"
    v2, v1 = got["v2"], got["v1"]
    expect(v2["greeting"] == 220, "v2: the greeting", v2, gw)
    expect(v2["relay"] == refused_relay, "v2: the real client (127.0.0.5) may not relay", v2,
           gw)
    expect(v2["local"] == 250 and v2["data"].startswith("250 2.0.0 Ok: queued as "),
           "v2: a local message is queued", v2, gw)
    expect(v1["relay"] == refused_relay, "v1: the real client (127.0.0.6) may not relay", v1,
           gw)
    g = got["garbage"]
    expect(g["reply"] == failure and g["closed"], "SMTP instead of a header", g, gw)
    s = got["silent"]
    expect(s["reply"] == failure and s["closed"], "no header at all", s, gw)
    expect(1.5 <= got["silent_s"] < 10, "the 421 comes at smtpd_upstream_proxy_timeout",
           got["silent_s"], gw)
    b = got["bytewise"]
    expect(b["reply"].startswith("220 ") and len(b["then"]) == 4 and
           b["then"][2] == "454 4.7.1 <x@elsewhere.example>: Relay access denied",
           "a v1 header a byte at a time, then the client it names", b, gw)
    lo = got["local"]
    expect(lo["reply"].startswith("220 ") and lo["then"][0].startswith("221 "),
           "a v2 LOCAL header", lo, gw)

    log = gw.log()[log_from:]
    for line in ("connect from unknown[127.0.0.5]", "connect from unknown[127.0.0.6]",
                 "connect from unknown[192.0.2.7]", "warning: haproxy read: timeout error",
                 "warning: haproxy read: unrecognized protocol header: EHLO not.a.proxy\\r\\n",
                 f"connect from unknown[{proxy_addr}]"):
        expect(line in log, f"log line {line!r}", log[-3000:], gw)
    expect(log.count(": connect from unknown[unknown]\n") == 2,
           "the two failures are logged as unknown[unknown]", log[-3000:], gw)
    msgs = gw.spooled()
    expect(len(msgs) == 1, "one message spooled", len(msgs), gw)
    received = msgs[0][2].split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    expect("[127.0.0.5]" in received, "Received: names the real client", received, gw)
    st = gw.stats()
    failed = st.get("proxy_failed", 0) - before.get("proxy_failed", 0)
    expect(failed == 2, "two more proxy_failed in the statistics", st, gw)


main()
