"""The metrics registry end to end on one transport (argv: mxgate binary, kernel|dpdk).

mxgate_metrics_listen = 127.0.0.1:PORT (on dpdk inside the gateway's namespace: the endpoint
is a management thread on kernel sockets). mynetworks does not hold the client, relaying is
decided by reject_unauth_destination, mxgate_spool_quota is small.
  0. Load: smtp-source sends 1000 messages while the endpoint is scraped every 0.1 s; every
     scrape passes `promtool check metrics` (Debian's prometheus package).
  1. Known traffic, counted from a snapshot taken after the load: N sessions with one message
     each (250), one session with M recipients refused by reject_unauth_destination (554
     5.7.1), one message that takes the spool over its quota (250), then K sessions whose
     MAIL gets 452 4.3.1. The differences of the scrapes are exactly those numbers: sessions,
     messages, recipients, refusals by restriction, replies by code and enhanced code,
     spool commits, the greeting and final-reply histograms' counts; no connection stays
     open. The test waits on counters, never on a sleep.
  2. The SIGUSR1 statistics line and `mxgate status` show the same numbers as the scrape.
  3. The endpoint answers 404 and 405 for what it does not serve.
  4. dpdk only: dpdk-telemetry.py (Debian's dpdk-dev) reads /mxgate/metrics and /mxgate/metric
     with the same values as the scrape, and the ports' and workers' families are there.
  5. kernel only, a second gateway (one worker, mxgate_max_connections = 2) with two smtpd
     services in master.cf (A: main.cf's lists; B: -o smtpd_timeout=3s, a connection count
     limit of 1 that 127.0.0.1 is not excepted from), relayhost a port nothing listens on,
     smtpd_sender_restrictions refusing one sender and a recipient sent to the restriction
     class strict_rcpt: the third concurrent connection to A is refused at accept, the
     second to B by anvil, the idle one on B times out - each counted for its own service
     only; the refusals are counted under list="smtpd_sender_restrictions" and
     list="strict_rcpt" (the class, not the list that named it); a message to the dead next hop shows the queue by
     state (deferred), the oldest age > 0 and the next hop's attempt and deferral; the
     scrape passes promtool check metrics.
  6. kernel only: under stress (mxgate_stress_enter_percent = 50 of 4), a session of a
     service whose stress variant has lists of its own is counted under that service.
Needs root on dpdk (network namespaces).
"""

import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time

import mxtest
from mxtest import fail

N, M, K, LOAD = 4, 3, 3, 1000
QUOTA = 3_000_000
SENDER = "s@sender.example"


def client_traffic(host, port, big_size):
    """Phase 1's sessions; returns the ledger of replies the client saw. Run directly (kernel)
    or as `test_metrics.py --client HOST PORT BIG` inside the client namespace (dpdk)."""
    ledger = {"sessions": 0, "accepted": 0, "rcpt_refused": 0, "quota_refused": 0,
              "data_ends": 0, "replies": []}

    def session():
        s = smtplib.SMTP(host, port, local_hostname="client.example", timeout=60)
        ledger["sessions"] += 1
        ledger["replies"].append(220)
        return s

    def cmd(s, line):
        code, _ = s.docmd(line)
        ledger["replies"].append(code)
        return code

    def quit_(s):
        ledger["replies"].append(s.quit()[0])

    def message(s, rcpt, size):
        if cmd(s, "EHLO client.example") != 250 or cmd(s, f"MAIL FROM:<{SENDER}>") != 250 \
                or cmd(s, f"RCPT TO:<{rcpt}>") != 250 or cmd(s, "DATA") != 354:
            raise SystemExit(f"transaction refused: {ledger}")
        body = "Subject: metrics\r\n\r\n" + ("x" * 998 + "\r\n") * (size // 1000) + "end\r\n"
        s.send(body.encode() + b".\r\n")
        code, text = s.getreply()
        ledger["replies"].append(code)
        ledger["data_ends"] += 1
        if code == 250:
            ledger["accepted"] += 1
        return code

    for _ in range(N):
        s = session()
        if message(s, "u@relay.example", 1000) != 250:
            raise SystemExit(f"message refused: {ledger}")
        quit_(s)
    s = session()
    cmd(s, "EHLO client.example")
    cmd(s, f"MAIL FROM:<{SENDER}>")
    for i in range(M):
        if cmd(s, f"RCPT TO:<x{i}@elsewhere.example>") != 554:
            raise SystemExit(f"RCPT to another domain not refused: {ledger}")
        ledger["rcpt_refused"] += 1
    quit_(s)
    s = session()
    if message(s, "big@relay.example", big_size) != 250:
        raise SystemExit(f"the big message was refused: {ledger}")
    quit_(s)
    for _ in range(K):
        s = session()
        cmd(s, "EHLO client.example")
        if cmd(s, f"MAIL FROM:<{SENDER}>") != 452:
            raise SystemExit(f"MAIL over the quota not refused: {ledger}")
        ledger["quota_refused"] += 1
        quit_(s)
    return ledger


if len(sys.argv) > 1 and sys.argv[1] == "--client":
    print(json.dumps(client_traffic(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    sys.exit(0)

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
promtool = mxtest.need_tool("promtool")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    telemetry = mxtest.need_tool("dpdk-telemetry.py")
    mxtest.need_root("the metrics test on dpdk (network namespaces)")
else:
    mxtest.need_tool("/usr/sbin/smtp-source")

METRICS_PORT = 9465 if transport == "dpdk" else mxtest.free_port()
CONFIG = (f"mxgate_metrics_listen = 127.0.0.1:{METRICS_PORT}\n"
          f"mxgate_spool_quota = {QUOTA}\n"
          "mynetworks = 192.0.2.0/24\n"
          "smtpd_relay_restrictions = reject_unauth_destination\n")


class Target:
    def __init__(self):
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"met{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2)
            # DPDK telemetry on (the namespace tests' EAL arguments turn it off)
            with open(self.gw.config_path) as f:
                text = f.read().replace("--no-telemetry ", "")
            text = text.replace("mynetworks = ", "#mynetworks = ")
            with open(self.gw.config_path, "w") as f:
                f.write(text + CONFIG)
            self.host, self.port = self.gw.host, self.gw.port
            topo = self.topo

            def get(path="/metrics", timeout=10.0):
                code = ("import http.client,sys\n"
                        f"c=http.client.HTTPConnection('127.0.0.1',{METRICS_PORT},timeout={timeout})\n"
                        f"c.request('GET','{path}')\nr=c.getresponse()\n"
                        "sys.stdout.write(str(r.status)+'\\n'+r.read().decode())\n")
                r = topo.gw([netns.SYS_PYTHON, "-c", code], capture_output=True, text=True,
                            timeout=timeout + 10)
                if r.returncode != 0:
                    fail(f"GET {path} in the gateway's namespace: {r.stderr}")
                status, _, body = r.stdout.partition("\n")
                return int(status), body
            self.gw.metrics_http_get = get
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, workers=2, extra_config=CONFIG)
            with open(self.gw.config_path) as f:
                text = f.read().replace("mynetworks = 127.0.0.0/8", "#mynetworks = 127.0.0.0/8")
            with open(self.gw.config_path, "w") as f:
                f.write(text)
            self.host, self.port = "127.0.0.1", self.gw.port
        self.gw.metrics_port = METRICS_PORT

    def smtp_source(self, messages):
        if self.topo:
            return netns.smtp_source(self.topo, self.host, 4, messages, 1000, "load@sender.example",
                                     rcpt="load@relay.example", port=self.port)
        return subprocess.run(["/usr/sbin/smtp-source", "-N", "-s", "4", "-m", str(messages),
                               "-l", "1000", "-f", "load@sender.example", "-t",
                               "load@relay.example", f"127.0.0.1:{self.port}"],
                              capture_output=True, text=True, timeout=600)

    def traffic(self, big):
        if self.topo:
            r = self.topo.cl([netns.SYS_PYTHON, os.path.abspath(__file__), "--client",
                              self.host, str(self.port), str(big)],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "PYTHONPATH": os.path.dirname(__file__)})
            if r.returncode != 0:
                fail(f"client traffic: {r.stdout}{r.stderr}\n{self.gw.output()}")
            return json.loads(r.stdout)
        try:
            return client_traffic(self.host, self.port, big)
        except SystemExit as e:
            fail(f"client traffic: {e}\n{self.gw.output()}")

    def close(self):
        self.gw.stop()
        if self.topo:
            self.topo.destroy()


def promtool_check(text, what):
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        fail(f"promtool check metrics ({what}) exit {r.returncode}:\n{r.stdout}{r.stderr}")


def load_phase(t):
    """LOAD messages from smtp-source while the endpoint is scraped and linted."""
    result = {}
    th = threading.Thread(target=lambda: result.update(r=t.smtp_source(LOAD)))
    th.start()
    scrapes = during = 0
    while th.is_alive() or scrapes < 3:
        alive = th.is_alive()
        promtool_check(t.gw.scrape(), f"scrape {scrapes + 1} under load")
        scrapes += 1
        during += alive and th.is_alive()
        time.sleep(0.1)
    if during == 0:
        fail("no scrape was taken while smtp-source ran")
    th.join()
    if result["r"].returncode != 0:
        fail(f"smtp-source: {result['r'].stdout}{result['r'].stderr}")
    t.gw.wait_metric("mxgate_smtp_messages_accepted_total", LOAD)
    print(f"ok 0: {scrapes} scrapes ({during} while smtp-source sent {LOAD} messages) pass "
          "promtool check metrics")


# (metric, labels, what the ledger says the difference is)
def expectations(ledger):
    sessions = ledger["sessions"]
    codes = {}
    for c in ledger["replies"]:
        codes[c] = codes.get(c, 0) + 1
    return [
        ("mxgate_smtp_connections_accepted_total", {}, sessions),
        ("mxgate_service_sessions_total", {}, sessions),
        ("mxgate_smtp_connections_closed_total", {}, sessions),
        ("mxgate_smtp_messages_accepted_total", {}, ledger["accepted"]),
        ("mxgate_service_messages_accepted_total", {}, ledger["accepted"]),
        ("mxgate_spool_messages_committed_total", {}, ledger["accepted"]),
        ("mxgate_smtp_recipients_rejected_total", {}, ledger["rcpt_refused"]),
        ("mxgate_service_recipients_rejected_total", {}, ledger["rcpt_refused"]),
        ("mxgate_restriction_refusals_total",
         {"restriction": "reject_unauth_destination", "outcome": "reject"},
         ledger["rcpt_refused"]),
        ("mxgate_smtp_replies_total", {"code": "554", "enhanced": "5.7.1"},
         ledger["rcpt_refused"]),
        ("mxgate_smtp_replies_total", {"code": "452", "enhanced": "4.3.1"},
         ledger["quota_refused"]),
        ("mxgate_smtp_replies_total", {"code": "220"}, codes.get(220, 0)),
        ("mxgate_smtp_replies_total", {"code": "221"}, codes.get(221, 0)),
        ("mxgate_smtp_replies_total", {"code": "354"}, codes.get(354, 0)),
        ("mxgate_smtp_replies_total", {}, len(ledger["replies"])),
        ("mxgate_smtp_greeting_seconds_count", {}, sessions),
        ("mxgate_smtp_data_final_reply_seconds_count", {}, ledger["data_ends"]),
    ]


def known_traffic(t):
    before = t.gw.metrics()
    spool_bytes = mxtest.metric_value(before, "mxgate_spool_bytes")
    if spool_bytes >= QUOTA - 200_000:
        fail(f"the load left {spool_bytes} spool bytes: no room under the {QUOTA} quota")
    big = int(QUOTA - spool_bytes + 100_000)
    ledger = t.traffic(big)
    if (ledger["sessions"], ledger["accepted"], ledger["rcpt_refused"],
            ledger["quota_refused"]) != (N + 2 + K, N + 1, M, K):
        fail(f"the client's ledger is not what it sent: {ledger}")
    # the sessions' last counters move when they close: wait for that, not a time
    t.gw.wait_metric("mxgate_smtp_connections_closed_total",
                     mxtest.metric_value(before, "mxgate_smtp_connections_closed_total")
                     + ledger["sessions"])
    t.gw.wait_metric("mxgate_smtp_connections_open", 0)
    after = t.gw.metrics()
    bad = []
    for name, labels, want in expectations(ledger):
        got = mxtest.metric_value(after, name, **labels) - mxtest.metric_value(before, name,
                                                                                **labels)
        if got != want:
            bad.append(f"{name}{labels}: {got}, expected {want}")
    if mxtest.metric_value(after, "mxgate_spool_bytes") < QUOTA:
        bad.append("mxgate_spool_bytes is not over the quota after the big message")
    if bad:
        fail("scrape differences:\n  " + "\n  ".join(bad) + f"\nreplies: {after.get('mxgate_smtp_replies_total')}\n{t.gw.output()}")
    print(f"ok 1: N={N} accepted (+1 over the quota), M={M} refused by "
          f"reject_unauth_destination, K={K} deferred by mxgate_spool_quota: exactly in the "
          f"scrape ({len(expectations(ledger))} values)")
    return after


def same_everywhere(t, scraped):
    st = t.gw.stats()
    for key, name in (("connections_accepted", "mxgate_smtp_connections_accepted_total"),
                      ("messages_accepted", "mxgate_smtp_messages_accepted_total"),
                      ("recipients_rejected", "mxgate_smtp_recipients_rejected_total"),
                      ("open_connections", "mxgate_smtp_connections_open")):
        if st.get(key) != mxtest.metric_value(scraped, name):
            fail(f"statistics line {key}={st.get(key)}, scrape {name}="
                 f"{mxtest.metric_value(scraped, name)}")
    status = subprocess.run([binary, "status", "-c", t.gw.config_path], capture_output=True,
                            text=True, timeout=60)
    conns = int(mxtest.metric_value(scraped, "mxgate_service_sessions_total"))
    accepted = int(mxtest.metric_value(scraped, "mxgate_service_messages_accepted_total"))
    want = f"  connections={conns} open=0 messages_accepted={accepted} "
    if status.returncode != 0 or want not in status.stdout:
        fail(f"mxgate status: expected {want!r}:\n{status.stdout}{status.stderr}")
    print("ok 2: the SIGUSR1 statistics line and mxgate status show the scrape's numbers")


def http_errors(t):
    status, _ = t.gw.metrics_http_get("/other")
    if status != 404:
        fail(f"GET /other: HTTP {status}, expected 404")
    if transport == "kernel":
        with socket.create_connection(("127.0.0.1", METRICS_PORT), timeout=10) as s:
            s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            data = s.recv(4096)
        if not data.startswith(b"HTTP/1.1 405 ") or b"Allow: GET, HEAD" not in data:
            fail(f"POST /metrics: {data[:200]!r}")
    print("ok 3: 404 for other paths" + (", 405 for other methods" if transport == "kernel"
                                          else ""))


def telemetry_phase(t, scraped):
    def ask(command):
        r = subprocess.run([telemetry, "-f", t.gw.file_prefix], input=command + "\n",
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(f"dpdk-telemetry.py {command}: exit {r.returncode}: {r.stdout}{r.stderr}")
        # the client echoes a prompt and the JSON answer: take the JSON object
        start = r.stdout.find("{")
        try:
            return json.JSONDecoder().raw_decode(r.stdout[start:])[0]
        except ValueError:
            fail(f"dpdk-telemetry.py {command}: no JSON in {r.stdout!r}")
    names = ask("/mxgate/metrics")["/mxgate/metrics"]
    for want in ("mxgate_smtp_messages_accepted_total", "mxgate_dpdk_port_rx_packets_total",
                 "mxgate_dpdk_worker_busy_cycles_total"):
        if want not in names:
            fail(f"/mxgate/metrics does not list {want}: {names}")
    got = ask("/mxgate/metric,mxgate_smtp_messages_accepted_total")
    samples = got["/mxgate/metric"]
    total = sum(v for v in samples.values())
    if total != mxtest.metric_value(scraped, "mxgate_smtp_messages_accepted_total"):
        fail(f"telemetry says {samples}, the scrape "
             f"{mxtest.metric_value(scraped, 'mxgate_smtp_messages_accepted_total')}")
    print(f"ok 4: dpdk-telemetry.py reads the registry ({len(names)} families)")


def greeting(port):
    """A connection to 127.0.0.1:port and its first line (read without a file object, so
    that close() closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    line = b""
    while not line.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            break
        line += b
    return s, line.decode(errors="replace").strip()


def services_phase():
    port_a = mxtest.free_port()
    port_b, dead, mport = mxtest.free_port(), mxtest.free_port(), mxtest.free_port()
    while len({port_a, port_b, dead, mport}) < 4:
        port_b, dead, mport = mxtest.free_port(), mxtest.free_port(), mxtest.free_port()
    gw = mxtest.Gateway(binary, workers=1, port=port_a, extra_config=(
        f"mxgate_metrics_listen = 127.0.0.1:{mport}\n"
        "mxgate_max_connections = 2\n"
        f"relayhost = [127.0.0.1]:{dead}\n"
        "smtpd_sender_restrictions = check_sender_access "
        "inline:{ { spam@bad.example = REJECT no spam here } }\n"
        "smtpd_restriction_classes = strict_rcpt\n"
        "strict_rcpt = reject\n"
        "smtpd_recipient_restrictions = check_recipient_access "
        "inline:{ { classy@relay.example = strict_rcpt } }\n"))
    gw.metrics_port = mport
    master = os.path.join(gw.dir, "master.cf")
    with open(master, "w") as f:
        f.write(f"127.0.0.1:{port_a} inet n - n - - smtpd\n"
                f"127.0.0.1:{port_b} inet n - n - - smtpd\n"
                "  -o smtpd_timeout=3s\n"
                "  -o smtpd_client_connection_count_limit=1\n"
                "  -o smtpd_client_event_limit_exceptions=\n")
    with open(gw.config_path, "a") as f:
        f.write(f"mxgate_master_file = {master}\n")
    svc_a, svc_b = f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"
    gw.start()
    try:
        # start()'s probe of the port (one connection) must be gone before counting
        gw.wait_metric("mxgate_smtp_connections_closed_total", lambda v: v >= 1)
        gw.wait_metric("mxgate_smtp_connections_open", 0)
        # refused at accept: two sessions on A fill the worker's mxgate_max_connections
        held = [greeting(port_a) for _ in range(2)]
        for _, line in held:
            if not line.startswith("220"):
                fail(f"A did not greet: {line!r}\n{gw.output()}")
        s, line = greeting(port_a)
        s.close()
        if not line.startswith("421"):
            fail(f"a third connection with mxgate_max_connections = 2: {line!r}")
        gw.wait_metric("mxgate_service_connections_refused_total", 1, service=svc_a)
        for s, _ in held:
            s.close()
        gw.wait_metric("mxgate_smtp_connections_open", 0)
        # anvil on B: the second concurrent connection of one client; then the first
        # times out (smtpd_timeout=3s on B only)
        s1, line1 = greeting(port_b)
        s2, line2 = greeting(port_b)
        s2.close()
        if not line1.startswith("220") or not line2.startswith("421"):
            fail(f"B with a count limit of 1: {line1!r}, then {line2!r}\n{gw.output()}")
        gw.wait_metric("mxgate_service_anvil_refusals_total", 1, service=svc_b)
        gw.wait_metric("mxgate_service_timeouts_total", 1, service=svc_b)
        s1.close()
        # a sender refused by smtpd_sender_restrictions (evaluated at RCPT), and a message
        # for the dead next hop
        with smtplib.SMTP("127.0.0.1", port_a, local_hostname="client.example",
                          timeout=30) as c:
            c.ehlo()
            c.mail("spam@bad.example")
            code, _ = c.rcpt("u@relay.example")
            if code != 554:
                fail(f"the refused sender's RCPT: {code}\n{gw.output()}")
            c.rset()
            c.mail("ok@client.example")
            code, _ = c.rcpt("classy@relay.example")
            if code != 554:
                fail(f"RCPT refused by the class strict_rcpt: {code}\n{gw.output()}")
            c.rset()
            c.sendmail("ok@client.example", ["u@relay.example"],
                       b"Subject: dead next hop\r\n\r\nbody\r\n")
        nexthop = f"smtp:127.0.0.1:{dead}"
        gw.wait_metric("mxgate_relay_nexthop_recipients_deferred_total", lambda v: v >= 1,
                       nexthop=nexthop)
        gw.wait_metric("mxgate_relay_queue_messages", 1, state="deferred")
        gw.wait_metric("mxgate_relay_queue_oldest_age_seconds", lambda v: v > 0)
        text = gw.scrape()
        promtool_check(text, "the two-service gateway")
        m = mxtest.parse_metrics(text)
        v = mxtest.metric_value
        bad = []
        want = [
            ("mxgate_service_connections_refused_total", {"service": svc_a}, 1),
            ("mxgate_service_connections_refused_total", {"service": svc_b}, 0),
            ("mxgate_service_anvil_refusals_total", {"service": svc_a}, 0),
            ("mxgate_service_anvil_refusals_total", {"service": svc_b}, 1),
            ("mxgate_service_timeouts_total", {"service": svc_a}, 0),
            ("mxgate_service_timeouts_total", {"service": svc_b}, 1),
            ("mxgate_smtp_connections_refused_total", {}, 1),
            ("mxgate_restriction_refusals_total",
             {"list": "smtpd_sender_restrictions", "outcome": "reject"}, 1),
            ("mxgate_restriction_refusals_total",
             {"list": "strict_rcpt", "restriction": "reject", "outcome": "reject"}, 1),
            ("mxgate_restriction_refusals_total",
             {"list": "smtpd_recipient_restrictions", "outcome": "reject"}, 0),
            ("mxgate_relay_queue_messages", {}, 1),
            ("mxgate_relay_queue_messages", {"state": "deferred"}, 1),
            ("mxgate_relay_queue_messages", {"state": "hold"}, 0),
            ("mxgate_relay_nexthop_recipients_delivered_total", {"nexthop": nexthop}, 0),
            ("mxgate_relay_nexthop_recipients_bounced_total", {"nexthop": nexthop}, 0),
            ("mxgate_log_lines_dropped_total", {}, 0),
        ]
        for name, labels, n in want:
            if v(m, name, **labels) != n:
                bad.append(f"{name}{labels}: {v(m, name, **labels)}, expected {n}")
        if v(m, "mxgate_relay_nexthop_attempts_total", nexthop=nexthop) < 1:
            bad.append(f"no attempt counted for {nexthop}")
        refusals = m.get("mxgate_restriction_refusals_total", {})
        if not any(dict(ls).get("list") == "smtpd_sender_restrictions" and
                   dict(ls).get("restriction", "").startswith("check_sender_access") and val == 1
                   for ls, val in refusals.items()):
            bad.append(f"no check_sender_access row under smtpd_sender_restrictions: {refusals}")
        if bad:
            fail("two-service gateway:\n  " + "\n  ".join(bad) + f"\n{gw.output()}")
    finally:
        gw.stop()
    print("ok 5: per-service refusals at accept, anvil refusals and timeouts; a refusal by "
          "list; the queue by state, its oldest age and the dead next hop's deferrals")


def stress_phase():
    """A service whose stress variant has lists of its own: a session it takes under stress
    is counted under the service (its entry is past the generation's services)."""
    pa, pb, mport = mxtest.free_port(), mxtest.free_port(), mxtest.free_port()
    while len({pa, pb, mport}) < 3:
        pb, mport = mxtest.free_port(), mxtest.free_port()
    gw = mxtest.Gateway(binary, workers=1, port=pa, extra_config=(
        f"mxgate_metrics_listen = 127.0.0.1:{mport}\n"
        "mxgate_max_connections = 4\n"
        "mxgate_stress_enter_percent = 50\n"
        "mxgate_stress_leave_percent = 10\n"))
    gw.metrics_port = mport
    master = os.path.join(gw.dir, "master.cf")
    with open(master, "w") as f:
        f.write(f"127.0.0.1:{pa} inet n - n - - smtpd\n"
                f"127.0.0.1:{pb} inet n - n - - smtpd\n"
                "  -o smtpd_client_restrictions=${stress?{permit_mynetworks}:{permit}}\n")
    with open(gw.config_path, "a") as f:
        f.write(f"mxgate_master_file = {master}\n")
    gw.start()
    try:
        held = [greeting(pa) for _ in range(2)]
        mxtest.wait_for(lambda: "entering stress mode" in gw.log(), 15,
                        "stress with 2 of 4 connections in use", gw.output)
        s, line = greeting(pb)
        s.close()
        if not line.startswith("220"):
            fail(f"B under stress: {line!r}\n{gw.output()}")
        for h, _ in held:
            h.close()
        gw.wait_metric("mxgate_service_sessions_total", 1, service=f"127.0.0.1:{pb}")
    finally:
        gw.stop()
    print("ok 6: a session of a stress variant with its own lists is counted under its "
          "service")


def main():
    t = Target()
    try:
        t.gw.start()
        load_phase(t)
        scraped = known_traffic(t)
        same_everywhere(t, scraped)
        http_errors(t)
        if transport == "dpdk":
            telemetry_phase(t, t.gw.metrics())
    finally:
        t.close()
    if transport == "kernel":
        services_phase()
        stress_phase()
    print("PASS")


main()
