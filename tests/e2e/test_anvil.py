"""Postfix's anvil(8) limits on one transport (argv: mxgate binary, kernel|dpdk).

Two workers; every client address below is its own client (kernel: 127.0.0.x, bound as
the source address; dpdk: 10.77.0.x added to the client namespace, the gateway on
net_af_packet in its own namespace, see netns.py). mynetworks is the one address EXC, so
smtpd_client_event_limit_exceptions (default $mynetworks) excepts it and no other.
  1. smtpd_client_connection_count_limit = 5: a client's sixth connection gets Postfix's
     421 instead of the greeting, and the warning (the five are spread over the two
     workers by the kernel's SO_REUSEPORT hash or the queue hash on dpdk: all five on one
     worker has odds of 1 in 16, and the counts would still have to be right);
     another client is not affected; when one of the five ends a new one is greeted; the
     excepted client is never limited; a reload keeps the counts of open connections.
  2. smtpd_client_message_rate_limit = 2 and _recipient_rate_limit = 3 (after that reload):
     the third MAIL and the fourth RCPT get Postfix's 450s and warnings, refused commands
     count, the rates span connections, the excepted client is not limited.
  3. smtpd_client_connection_rate_limit = 3 with anvil_rate_time_unit = 5s: the fourth and
     fifth connection attempts get the 421; once the window has passed a connection is
     greeted again.
  4. smtpd_client_ipv4_prefix_length = 24 with a count limit of 2: two addresses of one /24
     share the count.
Then the refusals per limit in the SIGUSR1 statistics, exactly. On the kernel transport a
private Debian Postfix gets the same sessions as a second mxgate: every reply and every
"limit exceeded" warning must match (host names and service names aside). Needs root
(network namespaces on dpdk, the Postfix instance on kernel).
"""

import os
import re
import subprocess
import sys
import time

import mxtest
from connpool import ConnPool
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool(netns.SYS_PYTHON)
else:
    for tool in ("/usr/sbin/postfix", "/usr/sbin/sendmail", "/usr/sbin/postqueue"):
        mxtest.need_tool(tool)
mxtest.need_root("the anvil test (network namespaces on dpdk, a Postfix instance on kernel)")

HOST = "mx.test.example"


class Client(ConnPool):
    """The connection pool (connpool.py) with the checks of this test."""

    def greeted(self, src, why):
        r = self.open(src)
        if not r["reply"].startswith("220 "):
            fail(f"{src} ({why}): expected the greeting, got {r['reply']!r}\n"
                 f"{self.output()}")
        return r["id"]

    def refused(self, src, why):
        """A connection from src gets the 421 of both connection limits, then the close."""
        r = self.open(src)
        want = f"421 4.7.0 {HOST} Error: too many connections from {src}"
        if r["reply"] != want or not r["eof"]:
            fail(f"{src} ({why}): expected {want!r} and the close, got {r['reply']!r} "
                 f"(closed: {r['eof']})\n{self.output()}")


class Target:
    def __init__(self):
        extra = "smtpd_client_connection_count_limit = 5\n"
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"anv{os.getpid() % 10000}").create()
            self.python = netns.SYS_PYTHON
            self.exc = self.topo.cl_ip4
            self.clients = [f"10.77.0.{i}" for i in range(11, 18)]
            for a in self.clients:
                self.topo.cl(["ip", "addr", "add", f"{a}/24", "dev", self.topo.dp_cl_if],
                             check=True)
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2,
                                        extra_config=f"mynetworks = {self.exc}/32\n" + extra)
        else:
            self.topo = None
            self.python = sys.executable
            self.exc = "127.0.0.1"
            self.clients = [f"127.0.0.{i}" for i in range(11, 18)]
            self.gw = mxtest.Gateway(binary, workers=2,
                                     extra_config=f"mynetworks = {self.exc}/32\n" + extra)
        with open(self.gw.config_path) as f:
            self.base = f.read()

    def reload(self, lines):
        """Rewrite the configuration as the start-up one plus `lines`, and reload."""
        with open(self.gw.config_path, "w") as f:
            f.write(self.base + lines)
        r = subprocess.run([binary, "reload", "-c", self.gw.config_path],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(f"mxgate reload failed:\n{r.stdout}{r.stderr}\n{self.gw.output()}")

    def close(self):
        self.gw.stop()
        if self.topo:
            self.topo.destroy()


def expect_log(gw, text, count=1):
    """Wait until `text` appears in the log `count` times (warnings are written at once,
    but the test's reads race the gateway's write)."""
    mxtest.wait_for(lambda: gw.log().count(text) >= count, 10,
                    f"{count} x log line {text!r}", gw.output)


def expect_reply(got, want, what, gw):
    if got != want:
        fail(f"{what}: expected {want!r}, got {got!r}\n{gw.output()}")


def connection_count(t, cl):
    a, b = t.clients[0], t.clients[1]
    for _ in range(5):
        cl.greeted(a, "within smtpd_client_connection_count_limit = 5")
    cl.refused(a, "the sixth connection")
    expect_log(t.gw, f"warning: Connection concurrency limit exceeded: 6 from unknown[{a}] "
                     f"for service smtp")
    cl.greeted(b, "another client")
    # one of the five ends: the next is greeted, and the one after is over again
    cl.quit(next(cid for cid, s in cl.open_ids.items() if s == a))
    cl.greeted(a, "after one of five ended")
    cl.refused(a, "the sixth again")
    expect_log(t.gw, f"warning: Connection concurrency limit exceeded: 6 from unknown[{a}]",
               2)
    # the excepted client: neither counted nor limited
    for _ in range(8):
        cl.greeted(t.exc, "in smtpd_client_event_limit_exceptions ($mynetworks)")
    cl.quit_all(t.exc)
    # a reload (new rate limits, same count limit) keeps the counts of open connections
    t.reload("smtpd_client_message_rate_limit = 2\nsmtpd_client_recipient_rate_limit = 3\n")
    cl.refused(a, "five still open after the reload")
    expect_log(t.gw, f"warning: Connection concurrency limit exceeded: 6 from unknown[{a}]",
               3)
    cl.quit_all()


def message_and_recipient_rates(t, cl):
    c, d = t.clients[2], t.clients[3]
    cid = cl.greeted(c, "message rate")
    cl.cmd(cid, "EHLO client.example")
    for i in range(2):
        expect_reply(cl.cmd(cid, "MAIL FROM:<s@sender.example>"), "250 2.1.0 Ok",
                     f"MAIL {i + 1} of 2", t.gw)
        cl.cmd(cid, "RSET")
    expect_reply(cl.cmd(cid, "MAIL FROM:<s@sender.example>"),
                 f"450 4.7.1 Error: too much mail from {c}", "the third MAIL", t.gw)
    expect_log(t.gw, f"warning: Message delivery request rate limit exceeded: 3 from "
                     f"unknown[{c}] for service smtp")
    cl.quit(cid)
    expect_log(t.gw, f"disconnect from unknown[{c}] ehlo=1 mail=2/3 rset=2 quit=1 "
                     f"commands=6/7")
    # the rate is the client's, not the connection's; a bad address still counts
    cid = cl.greeted(c, "message rate, second connection")
    cl.cmd(cid, "EHLO client.example")
    expect_reply(cl.cmd(cid, "MAIL FROM:<bad address"),
                 f"450 4.7.1 Error: too much mail from {c}", "MAIL on a new connection", t.gw)
    expect_log(t.gw, f"warning: Message delivery request rate limit exceeded: 4 from "
                     f"unknown[{c}] for service smtp")
    cl.quit(cid)

    cid = cl.greeted(d, "recipient rate")
    cl.cmd(cid, "EHLO client.example")
    expect_reply(cl.cmd(cid, "MAIL FROM:<s@sender.example>"), "250 2.1.0 Ok", "MAIL", t.gw)
    # a refused recipient counts too ("regardless of whether or not Postfix actually
    # accepts those recipients")
    r = cl.cmd(cid, "RCPT TO:<u1@elsewhere.example>")
    if "Relay access denied" not in r:
        fail(f"RCPT to another domain: {r!r}")
    for i in (2, 3):
        expect_reply(cl.cmd(cid, f"RCPT TO:<u{i}@relay.example>"), "250 2.1.5 Ok",
                     f"RCPT {i} of 3", t.gw)
    expect_reply(cl.cmd(cid, "RCPT TO:<u4@relay.example>"),
                 f"450 4.7.1 Error: too many recipients from {d}", "the fourth RCPT", t.gw)
    expect_log(t.gw, f"warning: Recipient address rate limit exceeded: 4 from unknown[{d}] "
                     f"for service smtp")
    # the transaction goes on with the recipients it has
    expect_reply(cl.cmd(cid, "DATA"), "354 End data with <CR><LF>.<CR><LF>", "DATA", t.gw)
    r = cl.cmd(cid, "Subject: anvil\r\n\r\nrate test\r\n.")
    if not r.startswith("250 2.0.0 Ok: queued as"):
        fail(f"end of data: {r!r}\n{t.gw.output()}")
    cl.quit(cid)

    # the excepted client: not limited
    cid = cl.greeted(t.exc, "excepted, rates")
    cl.cmd(cid, "EHLO client.example")
    for i in range(4):
        expect_reply(cl.cmd(cid, "MAIL FROM:<s@sender.example>"), "250 2.1.0 Ok",
                     f"excepted MAIL {i + 1}", t.gw)
        for k in range(4):
            expect_reply(cl.cmd(cid, f"RCPT TO:<x{k}@relay.example>"), "250 2.1.5 Ok",
                         f"excepted RCPT {k + 1}", t.gw)
        cl.cmd(cid, "RSET")
    cl.quit(cid)


def connection_rate(t, cl):
    """Returns how many attempts the window refused while the test waited for it to end."""
    r = t.clients[4]
    t.reload("smtpd_client_connection_rate_limit = 3\nanvil_rate_time_unit = 5s\n")
    for i in range(3):
        cl.quit(cl.greeted(r, f"connection {i + 1} of 3 in the window"))
    cl.refused(r, "the fourth connection in the window")
    expect_log(t.gw, f"warning: Connection rate limit exceeded: 4 from unknown[{r}] for "
                     f"service smtp")
    cl.refused(r, "the fifth connection in the window")
    expect_log(t.gw, f"warning: Connection rate limit exceeded: 5 from unknown[{r}] for "
                     f"service smtp")
    # the window (5 s, whole seconds) ends; the first connection after it is greeted
    deadline = time.monotonic() + 20
    refused = 0
    while True:
        o = cl.open(r)
        if o["reply"].startswith("220 "):
            cl.quit(o["id"])
            break
        if not o["reply"].startswith("421 4.7.0") or time.monotonic() > deadline:
            fail(f"no greeting for {r} 20 s after its window began: {o['reply']!r}\n"
                 f"{t.gw.output()}")
        refused += 1
        time.sleep(0.5)
    return refused


def prefix_aggregation(t, cl):
    p1, p2 = t.clients[5], t.clients[6]
    t.reload("smtpd_client_ipv4_prefix_length = 24\nsmtpd_client_connection_count_limit = 2\n")
    cl.greeted(p1, "one of a /24")
    cl.greeted(p2, "another of the same /24")
    cl.refused(p2, "the third of the /24")
    expect_log(t.gw, f"warning: Connection concurrency limit exceeded: 3 from unknown[{p2}] "
                     f"for service smtp")
    cl.quit_all(p1)
    cl.greeted(p2, "the /24 after one of its connections ended")
    # the excepted address is in that /24 too, and still not counted
    cl.quit(cl.greeted(t.exc, "excepted, in the /24"))
    cl.quit_all()


# ---------------------------------------------------------------------------- Postfix

def run_script(cl, clients):
    """The same sessions for mxgate and Postfix (limits: count 2, connection rate 3,
    message 1, recipient 1): every reply, in order."""
    x, y, z, w = clients
    out = []
    ids = [cl.open(x) for _ in range(3)]              # count: the third is refused
    out += [o["reply"] for o in ids]
    for o in ids[:2]:
        cl.quit(o["id"])
    for _ in range(4):                                 # rate: the fourth is refused
        o = cl.open(y)
        out.append(o["reply"])
        if not o["eof"]:
            cl.quit(o["id"])
    cid = cl.open(z)["id"]                             # message rate
    for line in ("EHLO client.example", "MAIL FROM:<s@sender.example>", "RSET",
                 "MAIL FROM:<s@sender.example>"):
        out.append(cl.cmd(cid, line))
    cl.quit(cid)
    cid = cl.open(w)["id"]                             # recipient rate
    for line in ("EHLO client.example", "MAIL FROM:<s@sender.example>",
                 "RCPT TO:<a@relay.example>", "RCPT TO:<b@relay.example>", "VRFY c@d"):
        out.append(cl.cmd(cid, line))
    cl.quit(cid)
    return out


def normalize(lines, host):
    out = []
    for l in lines:
        l = l.replace(host, "HOST")
        if l.startswith("250-") or l.startswith("220 "):
            l = l[:4] + "..."  # banners and EHLO keywords differ by design
        out.append(l)
    return out


def warnings(log):
    """The "limit exceeded" warnings, service names aside."""
    return [re.sub(r" for service \S+$", " for service S", l[l.index("warning:"):])
            for l in log.splitlines() if "limit exceeded" in l]


def disconnects(log, clients):
    """The "disconnect from" lines of the script's clients (the command counts say which
    refusals count as errors), sorted: the two servers may log them in another order."""
    return sorted(l[l.index("disconnect from"):] for l in log.splitlines()
                  if "disconnect from" in l and any(f"[{c}]" in l for c in clients))


def postfix_oracle():
    limits = ("smtpd_client_connection_count_limit = 2\n"
              "smtpd_client_connection_rate_limit = 3\n"
              "smtpd_client_message_rate_limit = 1\n"
              "smtpd_client_recipient_rate_limit = 1\n")
    clients = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]

    results = {}
    pf = mxtest.PostfixPeer("[127.0.0.1]:9", extra_main_cf=(
        "mynetworks = 127.0.0.1/32\nrelay_domains = relay.example\n"
        "smtpd_peername_lookup = no\n" + limits))
    gw = mxtest.Gateway(binary, workers=2, extra_config="mynetworks = 127.0.0.1/32\n" + limits)
    try:
        pf.start()
        if not mxtest.wait_port("127.0.0.1", pf.smtpd_port, timeout=30):
            fail(f"Postfix's smtpd did not come up:\n{pf.log()}")
        gw.start()
        for name, port, host, log in (("postfix", pf.smtpd_port, "pfx.test.example", pf.log),
                                      ("mxgate", gw.port, HOST, gw.log)):
            cl = Client(sys.executable, "127.0.0.1", port, lambda: log()[-3000:])
            replies = normalize(run_script(cl, clients), host)
            cl.close()
            # count, rate, message, and recipient twice (RCPT and VRFY)
            mxtest.wait_for(lambda: len(warnings(log())) >= 5, 15,
                            f"{name}'s five limit warnings", lambda: log()[-3000:])
            mxtest.wait_for(lambda: len(disconnects(log(), clients)) >= 9, 15,
                            f"{name}'s disconnect lines", lambda: log()[-3000:])
            results[name] = (replies, warnings(log()), disconnects(log(), clients))
    finally:
        gw.stop()
        pf.stop()
    (pr, pw, pd), (mr, mw, md) = results["postfix"], results["mxgate"]
    if pr != mr:
        fail("replies differ from Postfix's:\n" + "\n".join(
            f"  {'  ' if a == b else '!='} postfix {a!r}\n     mxgate  {b!r}"
            for a, b in zip(pr, mr)))
    if pw != mw:
        fail(f"warnings differ from Postfix's:\n  postfix {pw}\n  mxgate  {mw}")
    if pd != md:
        fail(f"disconnect lines differ from Postfix's:\n  postfix {pd}\n  mxgate  {md}")
    print(f"as Debian's Postfix: {len(pr)} replies, {len(pw)} warnings and "
          f"{len(pd)} disconnect lines equal:\n  " + "\n  ".join(pr + pw + pd))


t = Target()
try:
    start = time.monotonic()
    t.gw.start()
    cl = Client(t.python, t.gw.host, t.gw.port, t.gw.output, t.topo)
    connection_count(t, cl)
    message_and_recipient_rates(t, cl)
    waited = connection_rate(t, cl)
    prefix_aggregation(t, cl)
    cl.close()
    st = t.gw.stats()
    want = {"anvil_connection_count_refused": 4, "anvil_connection_rate_refused": 2 + waited,
            "anvil_message_rate_refused": 2, "anvil_recipient_rate_refused": 1,
            "anvil_untracked": 0}
    got = {k: st.get(k) for k in want}
    if got != want:
        fail(f"statistics: expected {want}, got {got}")
    print(f"{transport}: limits as Postfix's, counters {got} "
          f"({time.monotonic() - start:.1f} s)")
finally:
    t.close()
if transport == "kernel":
    postfix_oracle()
print("PASS")
