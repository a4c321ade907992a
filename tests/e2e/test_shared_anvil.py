"""Two gateways, one memcached, on the kernel transport: anvil's rate limits counted
together (mxgate_anvil_rate_map = memcache:FILE, a memcache_table(5) file naming a private
memcached), as several MX front doors behind one name would count them.

  - smtpd_client_connection_rate_limit = 4: a client that alternates its connections
    between A and B gets Postfix's "421 4.7.0 HOST Error: too many connections from ADDR"
    on its fifth connection (the third at A, where A alone counted only two before it), and
    the warning "Connection rate limit exceeded: 5 from unknown[ADDR] for service smtp";
  - smtpd_client_message_rate_limit = 3: two MAIL commands at A and one at B, then the
    fourth (at B) gets "450 4.7.1 Error: too much mail from ADDR";
  - memcached killed: both gateways log "memcache server ... unavailable: ...; anvil rates
    are counted on this node only" and go on counting locally: A still refuses a client's
    fifth connection to A alone, B (which never saw that client) greets it; the statistics
    line (SIGUSR1) says memcache=down and counts the outage;
  - memcached back (empty, the same port): both log "is back", and a new client alternating
    between them is refused on its fifth connection again;
  - `mxgate explain` names the map;
  - gateway A's metrics endpoint shows the same: mxgate_anvil_share_up 0 and one outage
    while memcached is down, 1 with syncs and counters once it is back.

Between two connections the test waits for the counter in memcached to reach the count so
far (anvil:smtp:ADDR:connect:UNIT:WINDOW, under the file's key_format): the sync thread's
lag (mxgate's 100 ms interval, docs/ARCHITECTURE.md) is waited out on a counter, never a
fixed sleep. The windows are aligned (wall time / anvil_rate_time_unit, here 3600 s): a
phase that straddles a window boundary is run again with a fresh client address.
memcached comes from Debian's memcached package (deploy/install-deps.sh); without it the
test fails naming it."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxtest  # noqa: E402
from mxtest import fail  # noqa: E402
from test_shared_state import Memcached  # noqa: E402  (a private memcached)

HOST = "mx.test.example"
UNIT = 3600
CONN_LIMIT = 4
MAIL_LIMIT = 3
PREFIX = f"t{os.getpid()}"


def gateway(binary, name, mc_port):
    gw = mxtest.Gateway(binary, workers=2, extra_config="")
    cf = os.path.join(gw.dir, "anvil.cf")
    with open(cf, "w") as f:
        f.write(f"# memcache_table(5) of gateway {name}\n"
                f"memcache = inet:127.0.0.1:{mc_port}\n"
                f"key_format = {PREFIX}:%s\n"
                "timeout = 1\n"
                "retry_pause = 1\n")
    gw.metrics_port = mxtest.free_port()
    with open(gw.config_path, "a") as f:
        f.write(f"mxgate_metrics_listen = 127.0.0.1:{gw.metrics_port}\n"
                "mynetworks = 127.0.0.1/32\n"  # every other 127.0.0.x is limited
                "smtpd_banner = $myhostname ESMTP\n"
                f"smtpd_client_connection_rate_limit = {CONN_LIMIT}\n"
                f"smtpd_client_message_rate_limit = {MAIL_LIMIT}\n"
                f"anvil_rate_time_unit = {UNIT}s\n"
                f"mxgate_anvil_rate_map = memcache:{cf}\n")
    gw.name = name
    return gw


def window():
    return int(time.time()) // UNIT


def counter(mc, client, kind, win):
    v = mc.get(f"{PREFIX}:anvil:smtp:{client}:{kind}:{UNIT}:{win}")
    return int(v.strip()) if v is not None else 0


def wait_counter(mc, client, kind, win, n, gws):
    mxtest.wait_for(lambda: counter(mc, client, kind, win) >= n, 10,
                    f"memcached's {kind} counter of {client} at {n}",
                    lambda: "\n".join(g.output() for g in gws))


def syncs(gw):
    """SIGUSR1: the sync rounds the gateway finished (its statistics line)."""
    gw.stats()
    m = re.findall(r"anvil share statistics \(SIGUSR1\): .* syncs=(\d+) ", gw.log())
    if not m:
        fail(f"{gw.name}: no anvil share statistics line\n{gw.output()}")
    return int(m[-1])


def wait_synced(gw):
    """Until a sync round of gw began after this call: it has read memcached's counters
    as they are now (the documented lag: one interval and a round trip)."""
    s0 = syncs(gw)
    mxtest.wait_for(lambda: syncs(gw) >= s0 + 2, 10, f"{gw.name}: two sync rounds",
                    gw.output)


def connect(gw, client):
    """Connect from client: (socket, its reader, the first reply line)."""
    s = socket.create_connection((gw.host, gw.port), 10, source_address=(client, 0))
    f = s.makefile("rb")
    line = f.readline().decode().rstrip("\r\n")
    return s, f, line


def greeted(gw, client, why):
    s, f, line = connect(gw, client)
    if not line.startswith("220 "):
        fail(f"{gw.name}: {client} ({why}): expected the greeting, got {line!r}\n"
             f"{gw.output()}")
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()


def refused(gw, client, why):
    s, f, line = connect(gw, client)
    want = f"421 4.7.0 {HOST} Error: too many connections from {client}"
    rest = f.read() if line.startswith("421") else b""
    s.close()
    if line != want or rest:
        fail(f"{gw.name}: {client} ({why}): expected {want!r} and the close, got "
             f"{line!r} {rest!r}\n{gw.output()}")


def expect_log(gw, text, count=1):
    mxtest.wait_for(lambda: gw.log().count(text) >= count, 15,
                    f"{gw.name}: {count} x log line {text!r}", gw.output)


def in_one_window(phase):
    """Run phase(client) with a fresh client until it did not straddle a window."""
    for attempt in range(3):
        win = window()
        if phase(win) and window() == win:
            return
        print(f"shared anvil: the window changed during the phase, again ({attempt})")
    fail("three phases in a row straddled a window boundary")


def main():
    binary = mxtest.binary_from_argv()
    mc_bin = mxtest.need_tool("/usr/bin/memcached")
    tmp = tempfile.mkdtemp(prefix="mxgate-anvil-mc-")
    mc = Memcached(mc_bin, tmp)
    mc.start()
    a = gateway(binary, "A", mc.port)
    b = gateway(binary, "B", mc.port)
    clients = iter(f"127.0.0.{i}" for i in range(40, 250))
    ok = False
    try:
        a.start()
        b.start()
        gws = (a, b)
        for g in gws:
            expect_log(g, "mxgate_anvil_rate_map: anvil rates are shared through "
                          f"memcache:{g.dir}/anvil.cf")

        # mxgate explain names the map
        r = subprocess.run([binary, "explain", "-c", a.config_path, "--no-dns",
                            "client_address=192.0.2.1"], capture_output=True, text=True,
                           timeout=60)
        want = (f"anvil rate limits: shared with the other gateways through memcache:"
                f"{a.dir}/anvil.cf")
        if want not in r.stdout:
            fail(f"mxgate explain: no line {want!r}:\n{r.stdout}{r.stderr}")

        def alternate(win):
            c = next(clients)
            for i in range(CONN_LIMIT):
                g = gws[i % 2]
                greeted(g, c, f"connection {i + 1} of {CONN_LIMIT}, alternating")
                wait_counter(mc, c, "connect", win, i + 1, gws)
            wait_synced(a)
            if window() != win:
                return False
            refused(a, c, f"connection {CONN_LIMIT + 1}: {CONN_LIMIT} before it at A and B")
            expect_log(a, f"warning: Connection rate limit exceeded: {CONN_LIMIT + 1} from "
                          f"unknown[{c}] for service smtp")
            wait_counter(mc, c, "connect", win, CONN_LIMIT + 1, gws)
            wait_synced(b)
            refused(b, c, "the next one, at B (refused attempts count)")
            return True

        print("shared anvil: connection rate across two gateways")
        in_one_window(alternate)

        def mail(win):
            c = next(clients)
            sessions = []
            for g, n in ((a, 2), (b, 2)):
                s, f, line = connect(g, c)
                if not line.startswith("220 "):
                    fail(f"{g.name}: {c}: no greeting: {line!r}\n{g.output()}")
                sessions.append((g, s, f))
                s.sendall(b"EHLO client.example\r\n")
                while True:
                    line = f.readline().decode()
                    if line[3:4] == " ":
                        break
            done = 0
            for g, s, f in sessions:
                for _ in range(2):
                    s.sendall(b"MAIL FROM:<s@client.example>\r\n")
                    r = f.readline().decode().rstrip("\r\n")
                    done += 1
                    if done <= MAIL_LIMIT and not r.startswith("250 "):
                        fail(f"{g.name}: {c}: MAIL {done}: expected 250, got {r!r}\n"
                             f"{g.output()}")
                    if done > MAIL_LIMIT:
                        want = f"450 4.7.1 Error: too much mail from {c}"
                        if r != want:
                            fail(f"{g.name}: {c}: MAIL {done}: expected {want!r}, got "
                                 f"{r!r}\n{g.output()}")
                    s.sendall(b"RSET\r\n")
                    f.readline()
                    wait_counter(mc, c, "message", win, done, gws)
                    wait_synced(b)
                s.sendall(b"QUIT\r\n")
                f.readline()
                s.close()
            expect_log(b, f"warning: Message delivery request rate limit exceeded: "
                          f"{MAIL_LIMIT + 1} from unknown[{c}] for service smtp")
            return True

        print("shared anvil: message rate across two gateways")
        in_one_window(mail)

        print("shared anvil: memcached down, each gateway counts alone")
        mc.stop()
        c = next(clients)
        greeted(a, c, "the first connection while memcached is down")
        greeted(b, c, "the first connection at B while memcached is down")
        for g in gws:
            expect_log(g, f"memcache server 127.0.0.1:{mc.port} unavailable: ")
            expect_log(g, "anvil rates are counted on this node only")
        for i in range(1, CONN_LIMIT):
            greeted(a, c, f"connection {i + 1} at A while memcached is down")
        refused(a, c, "the fifth at A alone: A still counts locally")
        greeted(b, c, "B's second: B counts its own only")
        a.stats()
        m = re.findall(r"anvil share statistics \(SIGUSR1\): .* memcache=(\w+) .*"
                       r"outages=(\d+)", a.log())
        if not m or m[-1] != ("down", "1"):
            fail(f"A's statistics line: expected memcache=down outages=1, got {m}\n"
                 f"{a.output()}")
        # the same numbers as metrics families
        scraped = a.metrics()
        if (mxtest.metric_value(scraped, "mxgate_anvil_share_up"),
                mxtest.metric_value(scraped, "mxgate_anvil_share_outages_total")) != (0, 1):
            fail("A's scrape: expected mxgate_anvil_share_up 0 and outages_total 1, got "
                 f"{scraped.get('mxgate_anvil_share_up')} "
                 f"{scraped.get('mxgate_anvil_share_outages_total')}")

        print("shared anvil: memcached back, shared again")
        mc.start()
        for g in gws:
            expect_log(g, f"memcache server 127.0.0.1:{mc.port} is back; anvil rates are "
                          "shared with the other nodes again")
        a.wait_metric("mxgate_anvil_share_up", 1)
        if a.metric("mxgate_anvil_share_syncs_total") < 1 or \
                a.metric("mxgate_anvil_share_counters_total") < 1:
            fail(f"A's scrape: no anvil share syncs or counters\n{a.output()}")
        in_one_window(alternate)
        ok = True
    finally:
        for g in (a, b):
            g.stop(check=ok)
        mc.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
            if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
                for g in (a, b):
                    shutil.rmtree(g.dir, ignore_errors=True)
    print("shared anvil: ok")


if __name__ == "__main__":
    main()
