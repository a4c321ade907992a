"""A real run for the Grafana dashboard (deploy/grafana/mxgate-dashboard.json): a gateway on
the kernel transport with its metrics endpoint, a private Prometheus scraping it every
second, and varied SMTP traffic. Used by tests/e2e/test_dashboard.py (every query of the
dashboard must work and show data) and deploy/grafana/render_dashboard.py (the picture).

What runs (all on loopback, every client on its own 127.0.0.x source address):
  - mxgate, master.cf:
      PORT_SMTP   smtpd, STARTTLS offered (a certificate made here with openssl)
      PORT_SCREEN postscreen (greet wait 1 s, pregreet: drop, DNSBL site dnsbl.test:
                  drop) in front of `smtpd pass`
    main.cf: relay_domains = relay.example, nobody in mynetworks,
    smtpd_recipient_restrictions = reject_rbl_client rbl.test, check_policy_service (a
    policy server here that answers DUNNO), reject_unauth_destination,
    header_checks (a Subject REJECT), the anvil's connection rate limit (20 a minute,
    127.0.0.1 and 127.0.0.2 excepted), relayhost = the next hop below, short backoff and
    queue lifetimes so that deferred mail is retried and expires within the run;
  - a DNS server (test_postscreen.py's, Python only) listing some clients in rbl.test and
    dnsbl.test, NXDOMAIN for the rest; the gateway asks it (mxgate_dns_servers);
  - a next hop (mxtest.ScriptedSmtpServer): 451 for defer@, 550 for bounce@, else 250;
  - Prometheus (Debian's /usr/bin/prometheus): its own TSDB directory in the run's
    directory, a free loopback port, scrape and evaluation interval 1 s.
Traffic (Run.traffic(seconds)): smtp-source batches to PORT_SMTP from 127.0.0.1 (relayed
and delivered), and in each round: a STARTTLS message, messages to defer@ and bounce@, a
header_checks reject, recipients refused by reject_unauth_destination and (from a listed
client) by reject_rbl_client rbl.test, protocol errors and a pipelining violation, a client over the anvil's rate, a pregreet burst
and DNSBL-listed clients on the screen, a client that passes the screen and sends, AUTH PLAIN (after STARTTLS) that
succeeds and wrong passwords (535) through a private Dovecot (dovecotenv.py; root).

Python 3 standard library; needs root, prometheus, openssl, smtp-source, dovecot-core."""

import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import mxtest  # noqa: E402
from mxtest import fail  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
SMTP_SOURCE = "/usr/sbin/smtp-source"

TLS_CLIENT = "127.0.0.2"
SCREEN_PASS_CLIENT = "127.0.0.3"
RBL_CLIENTS = [f"127.0.0.{i}" for i in range(30, 36)]
PREGREET_CLIENTS = [f"127.0.0.{i}" for i in range(40, 50)]
DNSBL_CLIENTS = [f"127.0.0.{i}" for i in range(60, 66)]
ANVIL_CLIENT = "127.0.0.50"
AUTH_FAIL_CLIENTS = [f"127.0.0.{i}" for i in range(70, 80)]
AUTH_USER, AUTH_PASSWORD = "alice", "secret"
SPAM_SUBJECT = "dashboard spam"
SENDER = "s@sender.example"


def rev(addr):
    return ".".join(reversed(addr.split(".")))


def http_json(url, timeout=30.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class NextHop(mxtest.ScriptedSmtpServer):
    def rcpt_reply(self, addr):
        if addr.startswith("defer@"):
            return "451 4.3.0 try again later"
        if addr.startswith("bounce@"):
            return "550 5.1.1 no such user"
        return "250 2.1.5 Ok"


class PolicyServer:
    """A Postfix policy delegation server (SMTPD_POLICY_README: name=value lines, an empty
    line; the answer action=DUNNO and an empty line) on a free loopback port, for
    check_policy_service: every request answered DUNNO, counted."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        with c, c.makefile("rb") as f:
            try:
                while True:
                    line = f.readline()
                    if not line:
                        return
                    if line in (b"\n", b"\r\n"):
                        self.requests += 1
                        c.sendall(b"action=DUNNO\n\n")
            except OSError:
                return

    def stop(self):
        self.sock.close()


class Prometheus:
    """A private Prometheus scraping `targets` (host:port) as job mxgate."""

    def __init__(self, workdir, targets):
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir, exist_ok=True)
        self.port = mxtest.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: mxgate\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config}",
             f"--storage.tsdb.path={os.path.join(self.dir, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             # a query's lookback: a series that stopped shows no stale point
             "--query.lookback-delta=5s"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"prometheus exited {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            fail(f"prometheus not ready in 60 s:\n{self.output()}")
        mxtest.wait_for(lambda: self.instant('up{job="mxgate"} == 1'), 30,
                        "prometheus's first successful scrape of the gateway", self.output)
        return self

    def api(self, path, **params):
        """GET /api/v1/PATH; returns the decoded JSON (status "error" included: the caller
        decides)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            return http_json(url)
        except urllib.error.HTTPError as e:
            return json.loads(e.read().decode())

    def instant(self, expr):
        r = self.api("query", query=expr)
        if r.get("status") != "success":
            fail(f"query {expr!r}: {r}")
        return r["data"]["result"]

    def output(self):
        p = os.path.join(self.dir, "log")
        with open(p, "rb") as f:
            return f.read()[-4000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Run:
    def __init__(self, binary):
        for tool in (PROMETHEUS, SMTP_SOURCE, "openssl"):
            mxtest.need_tool(tool)
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="mxgate-dashboard-")
        self.port_smtp = mxtest.free_port()
        self.port_screen = mxtest.free_port()
        self.metrics_port = mxtest.free_port()
        self.dns_port = mxtest.free_port()
        self.dns = self.hop = self.gw = self.prom = self.dovecot = self.policy = None
        self.counts = {}
        self.lock = threading.Lock()

    # ---- start and stop ----
    def _dns(self):
        from test_postscreen import DNS_SERVER
        zones = {f"{rev(a)}.rbl.test": [300, ["127.0.0.2"]] for a in RBL_CLIENTS}
        zones.update({f"{rev(a)}.dnsbl.test": [300, ["127.0.0.2"]] for a in DNSBL_CLIENTS})
        self.dns = subprocess.Popen([sys.executable, "-u", "-c", DNS_SERVER,
                                     str(self.dns_port), json.dumps(zones)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
        if self.dns.stdout.readline().strip() != "ready":
            fail(f"the DNS server did not start: {self.dns.stdout.read()}")

    def _cert(self):
        crt, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", crt, "-days", "2",
                            "-subj", "/CN=mx.test.example"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail(f"openssl req: {r.stdout}{r.stderr}")
        os.chmod(key, 0o644)  # the gateway reads it again as mail_owner on reload
        return crt, key

    def start(self):
        os.chmod(self.dir, 0o755)
        self._dns()
        self.hop = NextHop().start()
        from dovecotenv import DovecotAuth
        self.policy = PolicyServer()
        self.dovecot = DovecotAuth(users={AUTH_USER: AUTH_PASSWORD})
        self.dovecot.start()
        crt, key = self._cert()
        checks = os.path.join(self.dir, "header_checks")
        with open(checks, "w") as f:
            f.write(f"/^Subject: {SPAM_SUBJECT}$/ REJECT spam subject\n")
        master = os.path.join(self.dir, "master.cf")
        with open(master, "w") as f:
            f.write(f"127.0.0.1:{self.port_smtp} inet n - n - - smtpd\n"
                    f"127.0.0.1:{self.port_screen} inet n - n - 1 postscreen\n"
                    "smtpd pass - - n - - smtpd\n")
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        os.chmod(data, 0o777)
        config = (
            f"mxgate_metrics_listen = 127.0.0.1:{self.metrics_port}\n"
            f"mxgate_master_file = {master}\n"
            f"data_directory = {data}\n"
            f"mxgate_dns_servers = 127.0.0.1:{self.dns_port}\n"
            "mynetworks = 192.0.2.0/24\n"
            "smtpd_relay_restrictions = reject_unauth_destination\n"
            "smtpd_recipient_restrictions = reject_rbl_client rbl.test, "
            f"check_policy_service inet:127.0.0.1:{self.policy.port}, "
            "reject_unauth_destination\n"
            f"header_checks = regexp:{checks}\n"
            "smtpd_tls_security_level = may\n"
            "smtpd_sasl_type = dovecot\n"
            f"smtpd_sasl_path = {self.dovecot.socket_path}\n"
            "smtpd_sasl_auth_enable = yes\n"
            f"smtpd_tls_cert_file = {crt}\nsmtpd_tls_key_file = {key}\n"
            "smtpd_client_connection_rate_limit = 20\n"
            "anvil_rate_time_unit = 60s\n"
            f"smtpd_client_event_limit_exceptions = 127.0.0.1, {TLS_CLIENT}\n"
            "postscreen_greet_wait = 1s\n"
            "postscreen_greet_action = drop\n"
            "postscreen_dnsbl_sites = dnsbl.test\n"
            "postscreen_dnsbl_threshold = 1\n"
            "postscreen_dnsbl_action = drop\n"
            "postscreen_access_list =\n"
            f"relayhost = [127.0.0.1]:{self.hop.port}\n"
            "minimal_backoff_time = 5s\nmaximal_backoff_time = 10s\nqueue_run_delay = 5s\n"
            "maximal_queue_lifetime = 40s\nbounce_queue_lifetime = 40s\n")
        self.gw = mxtest.Gateway(self.binary, workers=2, port=self.port_smtp,
                                 extra_config=config)
        self.gw.metrics_port = self.metrics_port
        with open(self.gw.config_path) as f:
            text = f.read().replace("mynetworks = 127.0.0.0/8", "#mynetworks = 127.0.0.0/8")
        with open(self.gw.config_path, "w") as f:
            f.write(text)
        self.gw.start()
        self.prom = Prometheus(self.dir, [f"127.0.0.1:{self.metrics_port}"]).start()
        return self

    def stop(self):
        if self.prom:
            self.prom.stop()
        if self.gw:
            self.gw.stop()
        if self.hop:
            self.hop.stop()
        if self.dns:
            self.dns.kill()
            self.dns.wait()
        if self.dovecot:
            self.dovecot.close()
        if self.policy:
            self.policy.stop()
        if os.environ.get("MXGATE_KEEP_TEST_DIRS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            if self.gw:
                shutil.rmtree(self.gw.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def output(self):
        return (self.gw.output() if self.gw else "") + \
            ("\n--- prometheus ---\n" + self.prom.output() if self.prom else "")

    # ---- traffic ----
    def count(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def _smtp(self, src, port=None, timeout=30):
        return smtplib.SMTP("127.0.0.1", port or self.port_smtp, "client.example",
                            timeout=timeout, source_address=(src, 0))

    def _message(self, s, rcpt, subject="dashboard"):
        s.ehlo("client.example")
        body = f"Subject: {subject}\r\n\r\n" + "line of text\r\n" * 40
        try:
            s.sendmail(SENDER, [rcpt], body)
            return 250
        except smtplib.SMTPDataError as e:
            return e.smtp_code
        except smtplib.SMTPRecipientsRefused as e:
            return list(e.recipients.values())[0][0]

    def tls_message(self):
        s = self._smtp(TLS_CLIENT)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.ehlo("client.example")
        s.starttls(context=ctx)
        s.ehlo("client.example")
        s.login(AUTH_USER, AUTH_PASSWORD)
        self.count("auth ok")
        code = self._message(s, "tls@relay.example")
        s.quit()
        self.count(f"tls {code}")

    def auth_failure(self, src):
        """A wrong password (535); Dovecot delays further failures from one address, so
        they come from several."""
        s = self._smtp(src)
        s.ehlo("client.example")
        try:
            s.login(AUTH_USER, "wrong")
            self.count("auth wrong password accepted")
        except smtplib.SMTPAuthenticationError as e:
            self.count(f"auth {e.smtp_code}")
        s.quit()

    def relay_messages(self):
        for rcpt in ("defer@relay.example", "bounce@relay.example"):
            s = self._smtp(TLS_CLIENT)
            self.count(f"{rcpt.split('@')[0]} {self._message(s, rcpt)}")
            s.quit()

    def header_reject(self):
        s = self._smtp(TLS_CLIENT)
        self.count(f"header_checks {self._message(s, 'h@relay.example', SPAM_SUBJECT)}")
        s.quit()

    def refused_recipients(self, rbl_client):
        s = self._smtp(TLS_CLIENT)
        self.count(f"unauth {self._message(s, 'x@elsewhere.example')}")
        s.quit()
        s = self._smtp(rbl_client)
        self.count(f"rbl {self._message(s, 'y@relay.example')}")
        s.quit()

    def protocol_errors(self):
        """An unknown command, a MAIL without its brackets, then HELO and NOOP in one write
        (commands sent ahead without PIPELINING: the gateway may hang up)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port_smtp), 10,
                                          source_address=(TLS_CLIENT, 0)) as c:
                f = c.makefile("rb")
                f.readline()
                for line in (b"XYZZY\r\n", b"MAIL FROM:broken\r\n"):
                    c.sendall(line)
                    f.readline()
                c.sendall(b"HELO client.example\r\nNOOP\r\n")
                c.settimeout(3)
                while f.readline():
                    pass
            self.count("protocol errors")
        except OSError:
            self.count("protocol errors (closed)")

    def anvil_burst(self, n=8):
        for _ in range(n):
            try:
                s = self._smtp(ANVIL_CLIENT)
                self.count("anvil greeted")
                s.quit()
            except (smtplib.SMTPException, OSError):
                self.count("anvil refused")

    def _raw(self, src, send=b"", wait=5.0):
        """Connect to the screen from src, send `send` at once (a pregreet), read until the
        gateway closes or wait seconds pass; returns what it said."""
        got = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port_screen), 10,
                                          source_address=(src, 0)) as c:
                if send:
                    c.sendall(send)
                c.settimeout(wait)
                while True:
                    b = c.recv(4096)
                    if not b:
                        break
                    got += b
        except OSError:
            pass
        return got

    def screen_round(self, i):
        threads = [threading.Thread(target=self._raw, args=(a, b"EHLO early.example\r\n"))
                   for a in PREGREET_CLIENTS]
        threads += [threading.Thread(target=self._raw, args=(DNSBL_CLIENTS[i % len(
            DNSBL_CLIENTS)],))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.count("pregreet", len(PREGREET_CLIENTS))
        self.count("dnsbl")
        try:
            s = self._smtp(SCREEN_PASS_CLIENT, self.port_screen)
            self.count(f"screened {self._message(s, 'screened@relay.example')}")
            s.quit()
        except (smtplib.SMTPException, OSError) as e:
            self.count(f"screened error {type(e).__name__}")

    def smtp_source(self, messages, sessions=4):
        r = subprocess.run([SMTP_SOURCE, "-N", "-s", str(sessions), "-m", str(messages),
                            "-l", "2000", "-f", "load@sender.example", "-t",
                            "load@relay.example", f"127.0.0.1:{self.port_smtp}"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            fail(f"smtp-source: {r.stdout}{r.stderr}\n{self.output()}")
        self.count("smtp-source", messages)

    def traffic(self, seconds, log=print):
        """Varied traffic for `seconds`: smtp-source batches of changing size beside rounds
        of the other clients. Returns the counts of what the clients saw."""
        stop = time.monotonic() + seconds
        err = []

        def load():
            sizes = [200, 50, 400, 100, 300, 20]
            i = 0
            try:
                while time.monotonic() < stop:
                    self.smtp_source(sizes[i % len(sizes)])
                    i += 1
                    time.sleep(1 + i % 3)
            except BaseException as e:  # fail() raises SystemExit in the thread
                err.append(e)
        th = threading.Thread(target=load)
        th.start()
        i = 0
        while time.monotonic() < stop and not err:
            self.tls_message()
            self.relay_messages()
            self.header_reject()
            self.refused_recipients(RBL_CLIENTS[i % len(RBL_CLIENTS)])
            self.protocol_errors()
            if i % 3 == 0:
                self.anvil_burst()
            if i % 4 == 0:
                self.auth_failure(AUTH_FAIL_CLIENTS[i // 4 % len(AUTH_FAIL_CLIENTS)])
            if i % 2 == 0:
                self.screen_round(i)
            i += 1
            time.sleep(1)
        th.join()
        if err:
            raise err[0]
        log(f"traffic for {seconds} s: {json.dumps(self.counts, sort_keys=True)}")
        return dict(self.counts)
