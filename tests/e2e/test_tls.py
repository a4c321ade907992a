"""TLS on one transport (argv: mxgate binary, kernel|dpdk): STARTTLS (RFC 3207) and implicit
TLS (smtpd_tls_wrappermode) with real clients.

Five services (master.cf): "may" (STARTTLS offered; RSA and ECDSA certificates made here
with openssl; loglevel 1 and the Received: clause), "smtps" (wrappermode, a 3 s
smtpd_starttls_timeout), "encrypt" (530 before STARTTLS) and "lax" (may with
smtpd_forbid_unauth_pipelining = no, where the pipelined-STARTTLS injection reaches the
STARTTLS code), and "ccert" (client certificates). Checked:
  1. swaks --tls and smtplib starttls() deliver; Received: says "(using TLSv1.3 with
     cipher ...)" and "with ESMTPS"; the log has Postfix's "Anonymous TLS connection
     established from ..." and "starttls=1"; EHLO offers STARTTLS before TLS only;
  2. smtplib.SMTP_SSL on the wrappermode service; plaintext there is closed with
     "SSL_accept error"; a silent client is closed after smtpd_starttls_timeout;
  3. openssl s_client -starttls smtp, and resumption with its saved session ("Reused");
  4. encrypt: MAIL and RCPT before STARTTLS get 530, MAIL over TLS is accepted;
  5. CVE-2011-0411: MAIL and RCPT pipelined behind STARTTLS are thrown away (the RCPT
     over TLS gets "need MAIL"); with smtpd_forbid_unauth_pipelining (the default) the
     pipelined STARTTLS is a 554 and a close;
  6. garbage instead of a ClientHello, and a changed record after the handshake: the
     connection is closed, the log says why, the gateway serves the next client;
  7. reload with a new certificate: new connections get it; a key that does not match
     fails the reload with the file named and the old certificate stays; --check says it;
     the statistics count handshakes, resumptions and failures; client certificates
     (a fifth service, "ccert": smtpd_tls_ask_ccert, a test CA, permit_tls_clientcerts
     with the certificate's fingerprint in relay_clientcerts) relay for the listed
     certificate only, with Postfix's Trusted/Untrusted lines and Received: client line;
  8. (kernel) a policy server (check_policy_service) is told encryption_protocol,
     encryption_cipher and encryption_keysize;
  9. (kernel) a Debian Postfix with smtp_tls_security_level = encrypt relays a message
     through the gateway: Postfix logs the TLS connection and status=sent, the message
     arrives "with ESMTPS".
The dpdk transport runs the gateway in a network namespace (netns.py, needs root) and the
clients in the client namespace.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "tls_client.py")
MXGATE_MAP = os.path.join(os.path.dirname(os.path.abspath(binary)), "..", "mgmt", "mxgate-map")
mxtest.need_tool("openssl")
mxtest.need_tool("swaks")
import tool_packages  # noqa: E402
if tool_packages.perl_module_error("Net::SSLeay") is not None:
    tool_packages.fail_missing("Perl module Net::SSLeay, which swaks --tls needs",
                               tool_packages.PERL_MODULES["Net::SSLeay"])
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
    mxtest.need_tool(netns.SYS_PYTHON)

SERVICES = ("may", "smtps", "encrypt", "lax", "ccert", "reqcert")


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args)} failed:\n{r.stdout}{r.stderr}")


def make_cert(d, name, cn, kind):
    key, crt = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.crt")
    if kind == "rsa":
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                "-days", "2", "-subj", f"/CN={cn}")
    else:
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        openssl("req", "-x509", "-new", "-key", key, "-out", crt, "-days", "2",
                "-subj", f"/CN={cn}")
    mxtest.mail_owner_may_read(key)  # reloads read it as mail_owner
    return crt, key


class PolicyServer:
    """A check_policy_service server on 127.0.0.1 that keeps every request and answers
    DUNNO (the kernel transport's gateway reaches it; the dpdk one lives in a namespace)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n\n" in buf:
                    req, buf = buf.split(b"\n\n", 1)
                    self.requests.append(dict(line.split("=", 1) for line in
                                              req.decode().splitlines() if "=" in line))
                    conn.sendall(b"action=DUNNO\n\n")


class Target:
    def __init__(self):
        self.policy = None
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"mxt{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2)
            self.python = netns.SYS_PYTHON
            self.ports = dict(zip(SERVICES, (25, 465, 587, 2526, 2527, 2528)))
            self.names = {k: str(v) for k, v in self.ports.items()}
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, workers=2)
            self.python = sys.executable
            p = [self.gw.port]
            while len(p) < len(SERVICES):
                q = mxtest.free_port()
                if q not in p:
                    p.append(q)
            self.ports = dict(zip(SERVICES, p))
            self.names = {k: f"127.0.0.1:{v}" for k, v in self.ports.items()}
        d = self.gw.dir
        self.rsa = make_cert(d, "rsa", "mx.test.example", "rsa")
        self.ec = make_cert(d, "ec", "mx.test.example", "ec")
        # client certificates: one issued by a test CA, one self-signed
        self.ca = make_cert(d, "ca", "Test Client CA", "ec")
        self.client_key = os.path.join(d, "client.key")
        self.client_crt = os.path.join(d, "client.crt")
        csr = os.path.join(d, "client.csr")
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.client_key)
        openssl("req", "-new", "-key", self.client_key, "-out", csr,
                "-subj", "/CN=client.test.example")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca[0], "-CAkey", self.ca[1],
                "-CAcreateserial", "-out", self.client_crt, "-days", "2")
        self.rogue = make_cert(d, "rogue", "rogue.test.example", "ec")
        r = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in",
                            self.client_crt], capture_output=True, text=True, check=True)
        self.client_fp = r.stdout.strip().split("=", 1)[1]
        self.master = os.path.join(d, "master.cf")
        with open(self.master, "w") as f:
            f.write("# service type private unpriv chroot wakeup maxproc command\n"
                    f"{self.names['may']} inet n - y - - smtpd\n"
                    f"{self.names['smtps']} inet n - y - - smtpd\n"
                    "  -o smtpd_tls_wrappermode=yes\n"
                    "  -o smtpd_starttls_timeout=3s\n"
                    f"{self.names['encrypt']} inet n - y - - smtpd\n"
                    "  -o smtpd_tls_security_level=encrypt\n"
                    f"{self.names['lax']} inet n - y - - smtpd\n"
                    "  -o smtpd_forbid_unauth_pipelining=no\n"
                    f"{self.names['ccert']} inet n - y - - smtpd\n"
                    "  -o smtpd_tls_ask_ccert=yes\n"
                    f"  -o smtpd_tls_CAfile={self.ca[0]}\n"
                    "  -o smtpd_tls_loglevel=2\n"
                    "  -o mynetworks=192.0.2.0/24\n"
                    "  -o smtpd_recipient_restrictions=permit\n"
                    "  -o { smtpd_relay_restrictions = permit_tls_clientcerts, "
                    "reject_unauth_destination }\n"
                    f"  -o {{ relay_clientcerts = inline:{{ {{ {self.client_fp} = client }} }} }}\n"
                    f"{self.names['reqcert']} inet n - y - - smtpd\n"
                    "  -o smtpd_tls_security_level=encrypt\n"
                    "  -o smtpd_tls_req_ccert=yes\n"
                    f"  -o smtpd_tls_CAfile={self.ca[0]}\n")
        self.tls_lines = self.cert_lines(self.rsa)
        # tls_server_sni_maps: two chain files (key, then certificate) in a hash: table of
        # the store, which exists from the start (the gateway opens it, and a reload reads
        # the map through the gateway's own handle)
        self.tables = os.path.join(d, "tables")
        os.makedirs(self.tables)
        self.sni = {}
        for name, cn, kind in (("sni-a", "a.sni.example", "rsa"),
                               ("sni-b", "b.sni.example", "ec")):
            crt, key = make_cert(d, name, cn, kind)
            chain = os.path.join(d, f"{name}.pem")
            with open(chain, "w") as f:
                f.write(open(key).read() + open(crt).read())
            self.sni[name] = chain
        self.build_sni_map({"a.sni.example": self.sni["sni-a"],
                            ".b.sni.example": self.sni["sni-b"]})
        with open(self.gw.config_path) as f:
            self.base = f.read() + f"mxgate_master_file = {self.master}\n" + \
                f"mxgate_table_directory = {self.tables}\n"
        if not self.topo:
            self.policy = PolicyServer()
            self.base += ("smtpd_recipient_restrictions = permit_mynetworks, "
                          f"check_policy_service inet:127.0.0.1:{self.policy.port}, "
                          "reject_unauth_destination\n"
                          "smtpd_relay_restrictions = check_policy_service "
                          f"inet:127.0.0.1:{self.policy.port}, permit_mynetworks, "
                          "reject_unauth_destination\n")
        self.write_config(self.tls_lines)

    def cert_lines(self, rsa):
        return ("smtpd_tls_security_level = may\n"
                f"smtpd_tls_cert_file = {rsa[0]}\nsmtpd_tls_key_file = {rsa[1]}\n"
                f"smtpd_tls_eccert_file = {self.ec[0]}\nsmtpd_tls_eckey_file = {self.ec[1]}\n"
                "smtpd_tls_loglevel = 1\nsmtpd_tls_received_header = yes\n")

    def build_sni_map(self, entries, spec="hash:/etc/mxgate/sni"):
        src = os.path.join(self.gw.dir, "sni.map")
        with open(src, "w") as f:
            f.writelines(f"{k} {v}\n" for k, v in entries.items())
        r = subprocess.run([MXGATE_MAP, "-d", self.tables, spec, src], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            fail(f"mxgate-map {spec}: {r.stdout}{r.stderr}")

    def write_config(self, tls_lines, path=None):
        with open(path or self.gw.config_path, "w") as f:
            f.write(self.base + tls_lines)

    def run(self, argv, **kw):
        """A client command, in the client namespace on dpdk."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 120)
        if self.topo:
            return self.topo.cl(argv, **kw)
        return subprocess.run(argv, **kw)

    def client(self, action, service):
        r = self.run([self.python, CLIENT, action, self.gw.host, str(self.ports[service])])
        if r.returncode != 0:
            fail(f"tls_client {action} on {service} failed:\n{r.stdout}{r.stderr}\n"
                 f"{self.gw.output()}")
        return json.loads(r.stdout.strip().splitlines()[-1])

    def s_client(self, service, *extra, sigalgs=None, servername="mx.test.example"):
        argv = ["openssl", "s_client", "-connect", f"{self.gw.host}:{self.ports[service]}",
                "-servername", servername, "-ign_eof", *extra]
        if service != "smtps":
            argv[2:2] = ["-starttls", "smtp"]
        if sigalgs:
            argv += ["-sigalgs", sigalgs]
        # -ign_eof: the QUIT goes to the server (its 221 ends the session, after the
        # session ticket arrived), not to s_client's own command reader
        r = self.run(argv, input="QUIT\r\n")
        return r.stdout + r.stderr

    def mxgate(self, *args, expect=0):
        r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
        if r.returncode != expect:
            fail(f"mxgate {' '.join(args)}: exit {r.returncode}, expected {expect}:\n"
                 f"{r.stdout}{r.stderr}")
        return r.stdout + r.stderr

    def close(self):
        if self.topo:
            self.topo.destroy()


def wait_log(gw, pattern, what, timeout=15):
    mxtest.wait_for(lambda: re.search(pattern, gw.log()), timeout, what, gw.output)


def subject_cn(out):
    m = re.search(r"subject=\s*CN\s*=\s*(\S+)", out)
    return m.group(1) if m else None


t = Target()
try:
    with t.gw as gw:
        # 1. swaks --tls and smtplib's starttls(): delivered, with the TLS clause
        r = t.run(["swaks", "--tls", "--server", f"{gw.host}:{t.ports['may']}",
                   "--to", "bob@localhost", "--from", "alice@sender.example",
                   "--helo", "client.test.example", "--header", "Subject: e2e swaks tls"])
        out = r.stdout + r.stderr
        if r.returncode != 0 or "250 2.0.0 Ok: queued as " not in out:
            fail(f"swaks --tls did not deliver:\n{out}\n{gw.output()}")
        if "STARTTLS" not in out.split("~> STARTTLS")[0]:
            fail(f"EHLO did not offer STARTTLS:\n{out}")
        qid = out.split("250 2.0.0 Ok: queued as ")[1].split()[0]
        msgs = {m[0]: m for m in gw.spooled()}
        msg = msgs[qid][2]
        if not re.match(rb"Received: from client\.test\.example \(unknown \[[^]]+\]\)\r\n"
                        rb"\t\(using TLSv1\.3 with cipher TLS_[A-Z0-9_]+ \(\d+/\d+ bits\)\r\n"
                        rb"\t key-exchange X25519 server-signature (ECDSA \(prime256v1\)|"
                        rb"RSA-PSS \(2048 bits\)) server-digest SHA256\)\r\n"
                        rb"\t\(No client certificate requested\)\r\n"
                        rb"\tby mx\.test\.example \(mxgate\) with ESMTPS id " + qid.encode(),
                        msg):
            fail(f"Received: without Postfix's TLS clause:\n{msg[:500]!r}")
        wait_log(gw, r"Anonymous TLS connection established from unknown\[[^]]+\]: TLSv1\.3 "
                     r"with cipher TLS_\w+ \(\d+/\d+ bits\) key-exchange X25519 "
                     r"server-signature ", "the TLS summary line")
        wait_log(gw, r"disconnect from unknown\[[^]]+\] ehlo=2 starttls=1 mail=1 rcpt=1 "
                     r"data=1 quit=1 commands=7", "starttls=1 in the disconnect line")

        res = t.client("starttls", "may")
        if "starttls" not in res["ehlo_before"] or "starttls" in res["ehlo_after"]:
            fail(f"STARTTLS offered wrongly: {res}")
        if res["starttls"][0] != 220 or res["starttls"][1] != "2.0.0 Ready to start TLS":
            fail(f"STARTTLS reply: {res['starttls']}")
        print(f"ok 1: swaks --tls and smtplib starttls() delivered ({res['cipher'][0]})")

        # 2. implicit TLS: SMTP_SSL; plaintext is refused; a silent client times out
        res = t.client("smtps", "smtps")
        if "starttls" in res["ehlo"] or res["version"] != "TLSv1.3":
            fail(f"wrappermode: {res}")
        res = t.client("plaintext", "smtps")
        if not res["closed"]:
            fail("plaintext on the wrappermode service was not closed")
        wait_log(gw, r"SSL_accept error from unknown\[[^]]+\]: -1", "SSL_accept error")
        wait_log(gw, r"warning: TLS library problem: error:", "the TLS library problem")
        res = t.client("silent", "smtps")
        if not res["closed"] or not 2 <= res["seconds"] <= 12:
            fail(f"smtpd_starttls_timeout = 3s: {res}")
        print(f"ok 2: SMTP_SSL on the wrappermode service; plaintext closed; silent client "
              f"closed after {res['seconds']:.1f}s")

        # 3. openssl s_client, both certificates, and resumption with a saved session
        sess = os.path.join(gw.dir, "s_client.sess")
        out = t.s_client("may", "-sess_out", sess)
        if "New, TLSv1.3" not in out or subject_cn(out) != "mx.test.example":
            fail(f"s_client -starttls smtp:\n{out}")
        out = t.s_client("may", sigalgs="rsa_pss_rsae_sha256")
        if "Peer signature type: RSA-PSS" not in out:
            fail(f"the RSA certificate is not served:\n{out}")
        out = t.s_client("may", sigalgs="ECDSA+SHA256")
        if "Peer signature type: ECDSA" not in out:
            fail(f"the ECDSA certificate is not served:\n{out}")
        reused = 0
        for _ in range(4):  # the two workers' contexts share the ticket keys
            out = t.s_client("may", "-sess_in", sess)
            reused += "Reused, TLSv1.3" in out
        if reused != 4:
            fail(f"{reused} of 4 resumptions reused the session:\n{out}")
        out = t.s_client("smtps", "-sess_out", sess)
        if "New, TLSv1.3" not in out:
            fail(f"s_client on the wrappermode service:\n{out}")
        print("ok 3: s_client -starttls smtp, RSA and ECDSA, 4 of 4 resumptions reused")

        # 4. encrypt: 530 before STARTTLS
        res = t.client("encrypt", "encrypt")
        want = [530, "530 5.7.0 Must issue a STARTTLS command first"]
        if res["mail_plain"] != want or res["rcpt_plain"] != want:
            fail(f"encrypt level before STARTTLS: {res}")
        if "STARTTLS" not in res["ehlo"][1] or res["mail_tls"][0] != 250:
            fail(f"encrypt level: {res}")
        print("ok 4: encrypt refuses MAIL and RCPT with 530 before STARTTLS")

        # 5. the pipelined injection (CVE-2011-0411)
        res = t.client("inject", "lax")
        if res["starttls"][0] != 220 or res["rcpt_tls"][1] != "503 5.5.1 Error: need MAIL command":
            fail(f"commands pipelined behind STARTTLS were not discarded: {res}")
        if "evil@attacker.example" in gw.log():
            fail(f"the injected MAIL reached the log:\n{gw.log()}")
        res = t.client("inject", "may")
        if res["starttls"][1] != "554 5.5.0 Error: SMTP protocol synchronization" or \
                not res["closed"]:
            fail(f"pipelined STARTTLS with smtpd_forbid_unauth_pipelining: {res}")
        print("ok 5: pipelined commands behind STARTTLS discarded (lax) or refused (554)")

        # 6. garbage: before and after the handshake
        res = t.client("garbage", "may")
        if res["starttls"][0] != 220 or not res["closed"]:
            fail(f"garbage after STARTTLS: {res}")
        wait_log(gw, r"lost connection after STARTTLS from unknown", "lost connection "
                 "after STARTTLS")
        res = t.client("garbage-after", "may")
        if not res["closed"]:
            fail(f"a changed record was not closed: {res}")
        wait_log(gw, r"SSL_read error from unknown\[[^]]+\]: -1", "SSL_read error")
        wait_log(gw, r"TLS library problem: .*(bad record mac|decryption failed)",
                 "bad record mac")
        res = t.client("starttls", "may")
        if not res.get("queued"):
            fail(f"the gateway does not serve after the garbage: {res}")
        print("ok 6: garbage and changed records close the connection with a log line")

        # 7. reload with a new certificate; a bad one fails the reload and changes nothing
        new = make_cert(gw.dir, "new", "new.test.example", "rsa")
        t.write_config(t.cert_lines(new))
        out = t.mxgate("reload", "-c", gw.config_path)
        out = t.s_client("may", sigalgs="rsa_pss_rsae_sha256")
        if subject_cn(out) != "new.test.example":
            fail(f"after the reload the new certificate is not served:\n{out}")
        bad = os.path.join(gw.dir, "bad.cf")
        t.write_config(t.cert_lines((new[0], t.rsa[1])), path=bad)
        out = t.mxgate("reload", "-c", bad, expect=1)
        if "new.crt" not in out or "do not go together" not in out:
            fail(f"a reload with a mismatched key did not say so:\n{out}")
        out = t.mxgate("--check", "-c", bad, expect=1)
        if "new.crt" not in out:
            fail(f"--check with a mismatched key did not say so:\n{out}")
        missing = os.path.join(gw.dir, "missing.cf")
        t.write_config(t.cert_lines((os.path.join(gw.dir, "none.crt"), t.rsa[1])),
                       path=missing)
        out = t.mxgate("--check", "-c", missing, expect=1)
        if "none.crt" not in out or "No such file" not in out:
            fail(f"--check with a missing certificate did not say so:\n{out}")
        out = t.s_client("may", sigalgs="rsa_pss_rsae_sha256")
        if subject_cn(out) != "new.test.example":
            fail(f"a failed reload changed the certificate:\n{out}")
        print("ok 7: reload serves the new certificate; a bad key fails reload and --check")

        # 7e. tls_server_sni_maps: the certificate by the name the client sends
        sni_line = "tls_server_sni_maps = hash:/etc/mxgate/sni\n"
        t.write_config(t.cert_lines(new) + sni_line)
        t.mxgate("reload", "-c", gw.config_path)
        for name, want in (("a.sni.example", "a.sni.example"),
                           ("A.SNI.example", "a.sni.example"),
                           ("mail.b.sni.example", "b.sni.example"),
                           ("b.sni.example", None),
                           ("unknown.example", None)):
            for service in ("may", "smtps"):
                out = t.s_client(service, servername=name)
                # None: the default chains (RSA new.test.example, ECDSA mx.test.example)
                if subject_cn(out) != want and not \
                        (want is None and subject_cn(out) in ("new.test.example",
                                                              "mx.test.example")):
                    fail(f"SNI {name} on {service}: got {subject_cn(out)}, want {want}:\n"
                         f"{out}\n{gw.output()}")
        wait_log(gw, r"Anonymous TLS connection established from unknown\[[^]]+\] to "
                     r"a\.sni\.example: TLSv1\.3", "the established line with the SNI name")
        wait_log(gw, r"TLS SNI unknown\.example from unknown\[[^]]+\] not matched, using "
                     r"default chain", "the unmatched SNI line")
        # a resumed session with the name resumes (the ticket keys are the gateway's)
        sess = os.path.join(gw.dir, "sni.sess")
        t.s_client("may", "-sess_out", sess, servername="a.sni.example")
        out = t.s_client("may", "-sess_in", sess, servername="a.sni.example")
        if "Reused, TLSv1.3" not in out:
            fail(f"a session with SNI was not resumed:\n{out}")
        # a map entry whose file does not exist fails the reload, and changes nothing
        t.build_sni_map({"a.sni.example": t.sni["sni-a"],
                         "gone.sni.example": os.path.join(gw.dir, "gone.pem")},
                        spec="hash:/etc/mxgate/sni-bad")
        bad = os.path.join(gw.dir, "bad-sni.cf")
        t.write_config(t.cert_lines(new) + "tls_server_sni_maps = hash:/etc/mxgate/sni-bad\n",
                       path=bad)
        out = t.mxgate("reload", "-c", bad, expect=1)
        if "gone.pem" not in out or "No such file" not in out:
            fail(f"a reload with a missing SNI chain file did not say so:\n{out}")
        out = t.s_client("may", servername="mail.b.sni.example")
        if subject_cn(out) != "b.sni.example":
            fail(f"a failed reload changed the SNI certificates:\n{out}")
        t.write_config(t.cert_lines(new))
        t.mxgate("reload", "-c", gw.config_path)
        print("ok 7e: tls_server_sni_maps serves the named certificates (STARTTLS and "
              "wrappermode), the default for unknown names; a missing file fails the reload")

        # 7f. smtpd_client_new_tls_session_rate_limit through anvil
        rate_lines = ("smtpd_client_new_tls_session_rate_limit = 2\n"
                      "anvil_rate_time_unit = 3600s\n")
        t.write_config(t.cert_lines(new) + rate_lines + "smtpd_client_event_limit_exceptions =\n")
        t.mxgate("reload", "-c", gw.config_path)
        sess = os.path.join(gw.dir, "rate.sess")
        too_many = "too many new TLS sessions from unknown[127.0.0.1]" if not t.topo else \
            "too many new TLS sessions from unknown["
        for n, extra in ((1, ("-sess_out", sess)), (2, ())):
            out = t.s_client("may", *extra)
            if "New, TLSv1.3" not in out or "221 " not in out:
                fail(f"new TLS session {n} of 2 was not served:\n{out}\n{gw.output()}")
        out = t.s_client("may", "-sess_in", sess)
        if "Reused, TLSv1.3" not in out or "221 " not in out:
            fail(f"a resumed session under the limit was not served:\n{out}")
        out = t.s_client("may")
        if "New, TLSv1.3" not in out or "421 4.7.0 mx.test.example Error: " + too_many \
                not in out:
            fail(f"the third new TLS session did not get the 421:\n{out}\n{gw.output()}")
        wait_log(gw, r"warning: New TLS session rate limit exceeded: 3 from unknown\[[^]]+\] "
                     r"for service ", "the new TLS session rate warning")
        # s_client does not show the reply to its STARTTLS: smtplib does
        r = t.run([t.python, "-c",
                   "import smtplib,sys\n"
                   f"s = smtplib.SMTP({gw.host!r}, {t.ports['may']}, timeout=30)\n"
                   "s.ehlo('client.test.example')\n"
                   "code, text = s.docmd('STARTTLS')\n"
                   "print(code, text.decode())\n"
                   "print(s.docmd('NOOP')[0])\n"])
        out = r.stdout + r.stderr
        if "454 4.7.0 Error: " + too_many not in out or "\n250" not in out:
            fail(f"STARTTLS over the new TLS session rate was not refused (454, the "
                 f"session goes on):\n{out}")
        wait_log(gw, r"warning: Refusing STARTTLS request from unknown\[[^]]+\] for service ",
                 "the STARTTLS refusal warning")
        # wrappermode counts its own service: two pass, the third gets the 421, the
        # fourth no handshake at all
        for n in (1, 2):
            out = t.s_client("smtps")
            if "New, TLSv1.3" not in out or "221 " not in out:
                fail(f"wrappermode: new TLS session {n} of 2 was not served:\n{out}")
        out = t.s_client("smtps")
        if "421 4.7.0 mx.test.example Error: " + too_many not in out:
            fail(f"wrappermode: the third new TLS session did not get the 421:\n{out}")
        out = t.s_client("smtps")
        if "New, TLSv1.3" in out or subject_cn(out):
            fail(f"wrappermode: a client over the rate got a handshake:\n{out}")
        wait_log(gw, r"warning: Refusing TLS service request from unknown\[[^]]+\] for "
                     r"service ", "the wrappermode refusal warning")
        # an excepted client (smtpd_client_event_limit_exceptions) is not limited
        t.write_config(t.cert_lines(new) + rate_lines +
                       "smtpd_client_event_limit_exceptions = 0.0.0.0/0\n")
        t.mxgate("reload", "-c", gw.config_path)
        for _ in range(3):
            out = t.s_client("may")
            if "New, TLSv1.3" not in out or "221 " not in out:
                fail(f"an excepted client was limited:\n{out}")
        t.write_config(t.cert_lines(new))
        t.mxgate("reload", "-c", gw.config_path)
        print("ok 7f: smtpd_client_new_tls_session_rate_limit = 2: the third new session "
              "gets 421, then STARTTLS 454 (wrappermode: hung up), resumed ones are not "
              "counted, excepted clients are not limited")

        # 7c. client certificates: permit_tls_clientcerts with relay_clientcerts
        def ccert_swaks(*extra):
            r = t.run(["swaks", "--tls", "--server", f"{gw.host}:{t.ports['ccert']}",
                       "--to", "far@elsewhere.example", "--from", "alice@sender.example",
                       "--helo", "client.test.example", *extra])
            return r.returncode, r.stdout + r.stderr
        rc, out = ccert_swaks("--tls-cert", t.client_crt, "--tls-key", t.client_key)
        if rc != 0 or "250 2.0.0 Ok: queued as " not in out:
            fail(f"a listed client certificate did not permit relaying:\n{out}\n"
                 f"{gw.output()}")
        qid = out.split("250 2.0.0 Ok: queued as ")[1].split()[0]
        msg = {m[0]: m for m in gw.spooled()}[qid][2]
        if b'\t(Client CN "client.test.example", Issuer "Test Client CA" (verified OK))\r\n' \
                not in msg:
            fail(f"Received: without the client certificate line:\n{msg[:700]!r}")
        wait_log(gw, r"Trusted TLS connection established from", "Trusted TLS")
        wait_log(gw, r"subject_CN=client\.test\.example, issuer=Test Client CA, "
                     r"fingerprint=" + re.escape(t.client_fp), "the fingerprint line")
        rc, out = ccert_swaks()
        if "554 5.7.1 <far@elsewhere.example>: Relay access denied" not in out:
            fail(f"relaying without a client certificate:\n{out}")
        rc, out = ccert_swaks("--tls-cert", t.rogue[0], "--tls-key", t.rogue[1])
        if "554 5.7.1 <far@elsewhere.example>: Relay access denied" not in out:
            fail(f"relaying with an unlisted certificate:\n{out}")
        wait_log(gw, r"Untrusted TLS connection established from", "Untrusted TLS")
        print("ok 7c: permit_tls_clientcerts relays for a listed certificate, not for none "
              "or another; Received: and the log name it")

        # 7d. smtpd_tls_req_ccert: a client without a trusted certificate gets 421
        def req_swaks(*extra):
            r = t.run(["swaks", "--tls", "--server", f"{gw.host}:{t.ports['reqcert']}",
                       "--to", "bob@localhost", "--from", "alice@sender.example",
                       "--helo", "client.test.example", *extra])
            return r.returncode, r.stdout + r.stderr
        rc, out = req_swaks()
        if "421 4.7.1 mx.test.example Error: No client certificate presented" not in out:
            fail(f"smtpd_tls_req_ccert without a certificate:\n{out}")
        wait_log(gw, r"NOQUEUE: abort: TLS from unknown\[[^]]+\]: No client certificate "
                     r"presented", "the req_ccert abort line")
        rc, out = req_swaks("--tls-cert", t.rogue[0], "--tls-key", t.rogue[1])
        if "421 4.7.1 mx.test.example Error: Client certificate not trusted" not in out:
            fail(f"smtpd_tls_req_ccert with an untrusted certificate:\n{out}")
        rc, out = req_swaks("--tls-cert", t.client_crt, "--tls-key", t.client_key)
        if rc != 0 or "250 2.0.0 Ok: queued as " not in out:
            fail(f"smtpd_tls_req_ccert with a trusted certificate:\n{out}\n{gw.output()}")
        print("ok 7d: smtpd_tls_req_ccert: 421 without a trusted certificate, mail with one")

        # the statistics count handshakes, resumptions and failures
        st = gw.stats()
        if st.get("tls_established", 0) < 10 or st.get("tls_resumed", 0) < 4 or \
                st.get("tls_failed", 0) < 3:
            fail(f"TLS counters: established={st.get('tls_established')} "
                 f"resumed={st.get('tls_resumed')} failed={st.get('tls_failed')}")
        print(f"ok 7b: statistics tls_established={st['tls_established']} "
              f"tls_resumed={st['tls_resumed']} tls_failed={st['tls_failed']}")

        # 8. policy servers are told the protocol and cipher
        if t.policy:
            tls_reqs = [r for r in t.policy.requests if r.get("encryption_protocol")]
            if not tls_reqs:
                fail(f"no policy request with encryption_protocol: {t.policy.requests[:3]}")
            r = tls_reqs[0]
            if r["encryption_protocol"] != "TLSv1.3" or \
                    not r.get("encryption_cipher", "").startswith("TLS_") or \
                    int(r.get("encryption_keysize", "0")) < 128:
                fail(f"policy request's encryption attributes: {r}")
            print(f"ok 8: policy request with encryption_protocol={r['encryption_protocol']} "
                  f"encryption_cipher={r['encryption_cipher']} "
                  f"encryption_keysize={r['encryption_keysize']}")

        # 9. a Postfix relaying through the gateway with mandatory TLS
        if not t.topo:
            marker = f"postfix-tls-{time.time_ns()}"
            pf = mxtest.PostfixPeer(relayhost=f"[127.0.0.1]:{t.ports['may']}",
                                    extra_main_cf="smtp_tls_security_level = encrypt\n"
                                                  "smtp_tls_loglevel = 1\n")
            # Postfix's TLS client needs its tlsmgr (entropy, session cache)
            with open(os.path.join(pf.conf, "master.cf"), "a") as f:
                f.write("tlsmgr    unix  -  -  n  1000? 1  tlsmgr\n")
            with pf:
                pf.sendmail("origin@pfx.test.example", ["final@relay.example"],
                            f"Subject: {marker}\nFrom: origin@pfx.test.example\n\n"
                            "relayed over TLS\n".encode())
                deadline = time.monotonic() + 60
                found = []
                while time.monotonic() < deadline and not found:
                    pf.flush()
                    time.sleep(0.5)
                    found = [m for m in gw.spooled() if marker.encode() in m[2]]
                if not found:
                    fail(f"Postfix did not deliver over TLS within 60 s:\n"
                         f"{pf.queue_listing()}\n{pf.log()}\n{gw.output()}")
                qid, env, msg = found[0]
                if b"with ESMTPS id " + qid.encode() not in msg:
                    fail(f"Received: of the TLS relay: {msg[:600]!r}")
                mxtest.wait_for(lambda: f"status=sent (250 2.0.0 Ok: queued as {qid})"
                                in pf.log(), 20, "Postfix's status=sent", pf.log)
                if not re.search(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]"
                                 r":\d+: TLSv1\.3 with cipher", pf.log()):
                    fail(f"Postfix did not log its TLS connection:\n{pf.log()}")
            print(f"ok 9: Postfix relayed through the gateway with mandatory TLS ({qid})")
finally:
    t.close()
print(f"test_tls ({transport}): all passed")
