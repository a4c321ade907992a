#!/usr/bin/env python3
"""Integration test of the kernel transport: the real mxgate binary on 127.0.0.1:<free port>
with a temporary spool and configuration, driven by smtplib and raw sockets.

usage: test_kernel_transport.py MXGATE MXGATE_SPOOLCAT

Python 3.11 standard library only. Needs no root and no network beyond loopback. Run as
root, the gateway runs as mail_owner (mxgate) after start: the test's directory is given to
that user (it removes its pid file there), and setpriv and prlimit (util-linux) change its
file size limit as that user (root may lack CAP_SYS_RESOURCE in a container)."""

import array
import fcntl
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import unittest

MXGATE = None
SPOOLCAT = None
HOST = "mx.test.example"
STARTUP_TIMEOUT = 20.0


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_envelope(head):
    """Envelope text as dataplane/spool/spool_envelope.h describes it."""
    lines = head.rstrip(b"\n").split(b"\n")
    assert lines[0] == b"MXGATE-ENVELOPE 1", lines[0]
    env = {"mail-parameter": [], "recipient": []}
    for line in lines[1:]:
        key, _, value = line.partition(b" ")
        value = re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), value)
        key = key.decode()
        if key == "mail-parameter":
            env[key].append(value.decode())
        elif key == "recipient":
            env[key].append([value.decode(), []])
        elif key == "recipient-parameter":
            env["recipient"][-1][1].append(value.decode())
        else:
            env[key] = value.decode()
    return env


def spool_messages(spool):
    """Every committed message, as mxgate-spoolcat -x reads them: {id: (env, message)}."""
    out = subprocess.run([SPOOLCAT, "-x", spool], capture_output=True, check=True).stdout
    msgs = {}
    pos = 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        magic, qid, envlen, msglen = out[pos:nl].split(b" ")
        assert magic == b"MXGATE-SPOOLCAT", out[pos:nl]
        pos = nl + 1
        env = parse_envelope(out[pos:pos + int(envlen)])
        pos += int(envlen)
        msg = out[pos:pos + int(msglen)]
        pos += int(msglen)
        assert len(msg) == int(msglen)
        assert env["queue-id"] == qid.decode()
        msgs[qid.decode()] = (env, msg)
    return msgs


def mail_owner_ids():
    """(uid, gid) of mail_owner when this test runs as root (the gateway then becomes that
    user), else None."""
    if os.geteuid() != 0:
        return None
    import pwd
    try:
        pw = pwd.getpwnam("mxgate")
    except KeyError:
        return None  # the gateway refuses to start and says why
    return pw.pw_uid, pw.pw_gid


def set_fsize(pid, soft):
    """RLIMIT_FSIZE's soft limit of process pid: soft bytes, or None for its hard limit. As
    the process's own user when it is not ours (setpriv + prlimit)."""
    import resource
    if os.stat("/proc/%d" % pid).st_uid == os.geteuid():
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if soft is None else soft, hard))
        return
    with open("/proc/%d/limits" % pid) as f:
        hard = [l.split()[4] for l in f if l.startswith("Max file size")][0]
    st = os.stat("/proc/%d" % pid)
    subprocess.run(["setpriv", "--reuid=%d" % st.st_uid, "--regid=%d" % st.st_gid,
                    "--clear-groups", "prlimit", "--pid=%d" % pid,
                    "--fsize=%s:" % (hard if soft is None else soft)], check=True)


class Gateway:
    """One mxgate process with its own directory, config, spool and log."""

    def __init__(self, **params):
        self.dir = tempfile.mkdtemp(prefix="mxgate-kt-")
        ids = mail_owner_ids()
        if ids:
            # the gateway, as mail_owner, reads its configuration and removes its pid file
            os.chown(self.dir, *ids)
        self.port = free_port()
        self.spool = os.path.join(self.dir, "spool")
        self.maillog = os.path.join(self.dir, "maillog")
        self.pidfile = os.path.join(self.dir, "mxgate.pid")
        conf = {
            "myhostname": HOST,
            "mydestination": "localhost, $myhostname",
            "mynetworks": "127.0.0.0/8",
            "mxgate_listen": "127.0.0.1:%d" % self.port,
            "mxgate_workers": "2",
            "mxgate_spool_directory": self.spool,
            "maillog_file": self.maillog,
            "smtpd_error_sleep_time": "0",
            # the machine's resolver is not the test's: client names stay "unknown"
            "smtpd_peername_lookup": "no",
        }
        conf.update({k: str(v) for k, v in params.items()})
        self.config = os.path.join(self.dir, "mxgate.cf")
        with open(self.config, "w") as f:
            f.write("# written by test_kernel_transport.py\n")
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        self.proc = None
        self.stderr = os.path.join(self.dir, "stderr")

    def start(self):
        self.errf = open(self.stderr, "wb")
        self.proc = subprocess.Popen(
            [MXGATE, "-c", self.config, "--pidfile", self.pidfile],
            stdin=subprocess.DEVNULL, stdout=self.errf, stderr=self.errf)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("mxgate exited with %d: %s"
                                     % (self.proc.returncode, self.read(self.stderr)))
            if " started -- " in self.log():
                return self
            time.sleep(0.05)
        raise AssertionError("mxgate did not start: " + self.log() + self.read(self.stderr))

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("mxgate did not stop within %.0f s" % timeout)
        if self.proc and not self.errf.closed:
            self.errf.close()
        return self.proc.returncode if self.proc else None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc and not self.errf.closed:
            self.errf.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def read(path):
        try:
            with open(path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log(self):
        return self.read(self.maillog)

    def wait_log(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log(), re.M)
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError("log never matched %r:\n%s" % (pattern, self.log()))

    def incoming(self):
        """The IDs of the committed messages in the spool."""
        if not os.path.isdir(os.path.join(self.spool, "seg")):
            return []
        return sorted(spool_messages(self.spool))

    def smtp(self, timeout=10):
        return smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.example",
                            timeout=timeout)

    def raw(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return RawClient(s)


class RawClient:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def wait_sent(self, timeout=5.0):
        """Until the server's kernel has acknowledged every byte sent (our send queue,
        SIOCOUTQ, is empty): the bytes wait in the gateway's socket, whether or not the
        gateway runs."""
        deadline = time.monotonic() + timeout
        unacked = array.array("i", [0])
        while True:
            fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, unacked)
            if unacked[0] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{unacked[0]} bytes still unacknowledged after "
                                     f"{timeout} s")
            time.sleep(0.005)

    def reply(self):
        """One SMTP reply (all its lines); b"" on EOF."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b"".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line + b"\r\n")
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def eof(self):
        """True if the server closed the connection (after any remaining bytes)."""
        try:
            rest = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        return rest == b""

    def close(self):
        self.sock.close()


class KernelTransportTest(unittest.TestCase):
    def gateway(self, **params):
        gw = Gateway(**params)
        self.addCleanup(gw.cleanup)
        gw.start()
        # runs before cleanup: every gateway must stop cleanly, without sanitizer reports
        self.addCleanup(self.check_clean_exit, gw)
        return gw

    def check_clean_exit(self, gw):
        rc = gw.stop()
        err = gw.read(gw.stderr)
        self.assertNotRegex(err, r"Sanitizer|runtime error:", err)
        self.assertEqual(rc, 0, err)

    def test_accept_spool_and_log(self):
        gw = self.gateway()
        body = ("Subject: hello\r\nMessage-ID: <t1@client.example>\r\n\r\n"
                "line one\r\n.starts with a dot\r\n" + "x" * 990 + "\r\n") * 1
        big = "Subject: big\r\n\r\n" + ("0123456789" * 7 + "\r\n") * 5000  # ~360 KB
        with gw.smtp() as s:
            code, _ = s.ehlo()
            self.assertEqual(code, 250)
            self.assertIn("pipelining", s.esmtp_features)
            res = s.sendmail("alice@client.example", ["bob@localhost"], body,
                             mail_options=["BODY=8BITMIME"])
            self.assertEqual(res, {})
            s.sendmail("", ["carol@localhost", "dave@" + HOST], big)
        gw.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=2 rcpt=3 data=2 "
                    r"quit=1 commands=9$")
        spooled = spool_messages(gw.spool)
        ids = sorted(spooled)
        self.assertEqual(len(ids), 2, ids)
        log = gw.log()
        self.assertIn("connect from unknown[127.0.0.1]", log)
        envs = {}
        for qid in ids:
            self.assertRegex(qid, r"^[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz]{10}z"
                                  r"[0-9BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy]{2}$")
            env, msg = spooled[qid]
            envs[env["sender"]] = (env, msg)
            self.assertEqual(env["queue-id"], qid)
            self.assertIn("%s: client=unknown[127.0.0.1]" % qid, log)
            self.assertIn("mxgate/qmgr[%d]: %s: from=<%s>, size=%d, nrcpt=%d (queue active)"
                          % (gw.proc.pid, qid, env["sender"], len(msg), len(env["recipient"])),
                          log)
            self.assertTrue(msg.startswith(b"Received: from client.example (unknown "
                                           b"[127.0.0.1])\r\n\tby " + HOST.encode()), msg[:200])
            self.assertIn(b" id " + qid.encode(), msg[:400])
            self.assertEqual(env["client-address"], "127.0.0.1")
            self.assertEqual(env["client-name"], "unknown")
            self.assertEqual(env["helo"], "client.example")
            self.assertEqual(env["protocol"], "ESMTP")
            self.assertTrue(abs(int(env["arrival"]) - time.time()) < 120)
            # CRLF line ends only
            self.assertNotRegex(msg, rb"(?<!\r)\n")
        env, msg = envs["alice@client.example"]
        # smtplib adds SIZE= (lower case) itself; the parameters are kept as given
        self.assertEqual(len(env["mail-parameter"]), 2, env)
        self.assertRegex(env["mail-parameter"][0], r"^size=\d+$")
        self.assertEqual(env["mail-parameter"][1], "BODY=8BITMIME")
        self.assertEqual(env["recipient"], [["bob@localhost", []]])
        self.assertIn(b"\tfor <bob@localhost>;", msg)
        # the message follows our Received: exactly as sent, dot-unstuffed
        self.assertTrue(msg.endswith(body.encode()), msg[-300:])
        self.assertIn("%s: message-id=<t1@client.example>" % env["queue-id"], log)
        env, msg = envs[""]
        self.assertEqual([r[0] for r in env["recipient"]], ["carol@localhost", "dave@" + HOST])
        self.assertNotIn(b"\tfor <", msg.split(b"\r\n\r\n")[0].split(b"\r\nSubject")[0])
        self.assertTrue(msg.endswith(big.encode()))
        # the reader in C agrees with this one
        out = subprocess.run([SPOOLCAT, "-m", gw.spool, env["queue-id"]],
                             capture_output=True, check=True).stdout
        self.assertEqual(out, msg)
        out = subprocess.run([SPOOLCAT, "-e", gw.spool, env["queue-id"]],
                             capture_output=True, check=True, text=True).stdout
        self.assertRegex(out, r"\nsender: <> size=\d+\n")
        self.assertIn("recipient: <dave@%s>\n" % HOST, out)
        # the listing: one line per message, in ID order
        out = subprocess.run([SPOOLCAT, "-l", gw.spool], capture_output=True, check=True,
                             text=True).stdout
        self.assertEqual(out, "".join("%s %d <%s> %d\n" % (q, len(spooled[q][1]),
                                                             spooled[q][0]["sender"],
                                                             len(spooled[q][0]["recipient"]))
                                      for q in ids))
        r = subprocess.run([SPOOLCAT, gw.spool, "4ZhQ5N0Bc9z01"], capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("4ZhQ5N0Bc9z01: no such message", r.stderr)
        self.assertEqual(gw.stop(), 0)
        self.assertRegex(gw.log(), r"statistics \(shutdown\): open_connections=0 "
                                   r"connections_accepted=1 .*messages_accepted=2 ")

    def test_pipelined_session(self):
        gw = self.gateway()
        c = gw.raw()
        self.assertTrue(c.reply().startswith(b"220 " + HOST.encode()))
        c.send(b"EHLO client.example\r\n")
        self.assertTrue(c.reply().startswith(b"250-" + HOST.encode()))
        # RFC 2920: one group, replies in order
        c.send(b"MAIL FROM:<p@client.example>\r\nRCPT TO:<u1@localhost>\r\n"
               b"RCPT TO:<u2@localhost>\r\nDATA\r\n")
        self.assertTrue(c.reply().startswith(b"250 2.1.0"))
        self.assertTrue(c.reply().startswith(b"250 2.1.5"))
        self.assertTrue(c.reply().startswith(b"250 2.1.5"))
        self.assertTrue(c.reply().startswith(b"354 "))
        c.send(b"Subject: pipelined\r\n\r\nhello\r\n.\r\n")
        r = c.reply()
        m = re.match(rb"250 2\.0\.0 Ok: queued as (\S+)\r\n", r)
        self.assertTrue(m, r)
        qid = m.group(1).decode()
        # a second transaction, RSET first, all in one write with the message
        c.send(b"RSET\r\nMAIL FROM:<q@client.example>\r\nRCPT TO:<u3@localhost>\r\nDATA\r\n")
        self.assertTrue(c.reply().startswith(b"250 2.0.0"))
        self.assertTrue(c.reply().startswith(b"250 2.1.0"))
        self.assertTrue(c.reply().startswith(b"250 2.1.5"))
        self.assertTrue(c.reply().startswith(b"354 "))
        c.send(b"Subject: two\r\n\r\n..dot\r\n.\r\n")
        m2 = re.match(rb"250 2\.0\.0 Ok: queued as (\S+)\r\n", c.reply())
        self.assertTrue(m2)
        self.assertNotEqual(m2.group(1).decode(), qid)
        c.send(b"QUIT\r\n")
        self.assertTrue(c.reply().startswith(b"221 "))
        self.assertTrue(c.eof())
        c.close()
        self.assertEqual(gw.incoming(), sorted([qid, m2.group(1).decode()]))
        env, msg = spool_messages(gw.spool)[m2.group(1).decode()]
        self.assertTrue(msg.endswith(b"Subject: two\r\n\r\n.dot\r\n"), msg)
        gw.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=2 rcpt=3 data=2 "
                    r"rset=1 quit=1 commands=10$")

    def test_backpressure_client_not_reading(self):
        """A client that pipelines far more than the server's buffers hold and reads
        nothing meanwhile: the server stops reading (TCP pushes back) instead of buffering
        without bound, and every reply arrives, in order, once the client reads."""
        gw = self.gateway(mxgate_workers=1, smtpd_junk_command_limit=1000000)
        c = gw.raw()
        c.reply()
        c.send(b"EHLO client.example\r\n")
        c.reply()
        n = 20000
        sender = threading.Thread(target=c.send, args=(b"RSET\r\n" * n + b"QUIT\r\n",))
        sender.start()
        time.sleep(0.5)  # let both socket buffers fill
        for i in range(n):
            r = c.reply()
            if r != b"250 2.0.0 Ok\r\n":
                self.fail("reply %d: %r" % (i, r))
        self.assertTrue(c.reply().startswith(b"221 "))
        sender.join()
        self.assertTrue(c.eof())
        c.close()
        gw.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 rset=%d quit=1 "
                    r"commands=%d$" % (n, n + 2))

    def test_relay_denied_outside_mynetworks(self):
        # Postfix's default smtpd_relay_restrictions defers (454); reject_unauth_destination
        # refuses for good (554), which the rest of this test checks.
        gw = self.gateway(mynetworks="192.0.2.0/24")
        with gw.smtp() as s:
            s.ehlo("client.example")
            self.assertEqual(s.mail("a@client.example")[0], 250)
            self.assertEqual(s.rcpt("x@other.example"),
                             (454, b"4.7.1 <x@other.example>: Relay access denied"))
        gw = self.gateway(mynetworks="192.0.2.0/24",
                          smtpd_relay_restrictions="permit_mynetworks, "
                                                   "reject_unauth_destination")
        with gw.smtp() as s:
            s.ehlo()
            self.assertEqual(s.mail("a@client.example")[0], 250)
            code, msg = s.rcpt("x@other.example")
            self.assertEqual(code, 554)
            self.assertEqual(msg, b"5.7.1 <x@other.example>: Relay access denied")
            # a local domain is still accepted from outside mynetworks
            self.assertEqual(s.rcpt("postmaster@localhost")[0], 250)
            code, msg = s.rcpt("y@other.example")
            self.assertEqual(code, 554)
        gw.wait_log(r"disconnect from")
        log = gw.log()
        self.assertIn("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 "
                      "<x@other.example>: Relay access denied; from=<a@client.example> "
                      "to=<x@other.example> proto=ESMTP helo=<client.example>", log)
        # after the first accepted recipient the queue ID stands in for NOQUEUE
        m = re.search(r"^.*: (\w+): client=unknown\[127\.0\.0\.1\]$", log, re.M)
        self.assertTrue(m, log)
        self.assertIn("%s: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <y@other.example>: "
                      "Relay access denied; from=<a@client.example> to=<y@other.example> "
                      "proto=ESMTP helo=<client.example>" % m.group(1), log)
        self.assertRegex(log, r"disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 "
                              r"rcpt=1/3 quit=1 commands=4/6$")
        self.assertEqual(gw.incoming(), [])

    def test_talking_before_the_greeting(self):
        gw = self.gateway(mxgate_workers=1)
        # Stop the gateway so the connection and its bytes wait in the kernel: then the
        # worker finds the command already there when it accepts.
        os.kill(gw.proc.pid, signal.SIGSTOP)
        # kill() returns before every thread has stopped: a worker still running could
        # accept the connection before its bytes arrive and greet it
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for tid in os.listdir(f"/proc/{gw.proc.pid}/task"):
                with open(f"/proc/{gw.proc.pid}/task/{tid}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            if all(st in ("T", "t") for st in states):
                break
            time.sleep(0.01)
        try:
            c = gw.raw()
            c.send(b"EHLO eager.example\r\n")
            c.wait_sent()
        finally:
            os.kill(gw.proc.pid, signal.SIGCONT)
        r = c.reply()
        self.assertTrue(r.startswith(b"554 5.5.0"), r)
        self.assertNotIn(b"220", r)
        self.assertTrue(c.eof())
        c.close()
        gw.wait_log(r"improper command pipelining after CONNECT from unknown\[127\.0\.0\.1\]")
        gw.wait_log(r"disconnect from unknown\[127\.0\.0\.1\]")
        # a polite client on the same gateway is unaffected
        with gw.smtp() as s:
            self.assertEqual(s.ehlo()[0], 250)

    def test_timeout(self):
        gw = self.gateway(smtpd_timeout="1s", mxgate_workers=1)
        c = gw.raw()
        self.assertTrue(c.reply().startswith(b"220 "))
        c.send(b"EHLO client.example\r\n")
        c.reply()
        c.send(b"MAIL FROM:<a@client.example>\r\n")
        c.reply()
        t0 = time.monotonic()
        r = c.reply()
        waited = time.monotonic() - t0
        self.assertTrue(r.startswith(b"421 4.4.2 " + HOST.encode() + b" Error: timeout exceeded"),
                        r)
        self.assertGreater(waited, 0.8)
        self.assertLess(waited, 5)
        self.assertTrue(c.eof())
        c.close()
        gw.wait_log(r"timeout after MAIL from unknown\[127\.0\.0\.1\]$")
        # in the middle of DATA the byte count is logged, and nothing is spooled
        c = gw.raw()
        c.reply()
        c.send(b"EHLO client.example\r\n")
        c.reply()
        c.send(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@localhost>\r\nDATA\r\n")
        for _ in range(3):
            c.reply()
        c.send(b"Subject: slow\r\n\r\npartial body\r\n")
        self.assertTrue(c.reply().startswith(b"421 4.4.2"))
        c.close()
        gw.wait_log(r"timeout after DATA \(\d+ bytes\) from unknown\[127\.0\.0\.1\]$")
        self.assertEqual(gw.incoming(), [])

    def test_ipv6_listener(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as e:
            # the kernel's choice (IPv6 disabled), not a missing package
            self.skipTest(f"the kernel has no IPv6 loopback: bind [::1]: {e}")
        port4, port6 = free_port(), free_port()
        gw = Gateway(mxgate_listen="127.0.0.1:%d [::1]:%d" % (port4, port6))
        gw.port = port4
        self.addCleanup(gw.cleanup)
        gw.start()
        s = socket.create_connection(("::1", port6), timeout=10)
        c = RawClient(s)
        self.assertTrue(c.reply().startswith(b"220 "))
        c.send(b"EHLO v6.example\r\n")
        self.assertTrue(c.reply().startswith(b"250"))
        c.send(b"QUIT\r\n")
        self.assertTrue(c.reply().startswith(b"221"))
        c.close()
        gw.wait_log(r"connect from unknown\[::1\]$")
        gw.wait_log(r"disconnect from unknown\[::1\]")
        with gw.smtp() as s4:
            self.assertEqual(s4.ehlo()[0], 250)

    def test_max_connections(self):
        gw = self.gateway(mxgate_workers=1, mxgate_max_connections=2)
        a, b = gw.raw(), gw.raw()
        self.assertTrue(a.reply().startswith(b"220 "))
        self.assertTrue(b.reply().startswith(b"220 "))
        c = gw.raw()
        self.assertEqual(c.reply(), b"421 4.3.2 Service currently unavailable\r\n")
        self.assertTrue(c.eof())
        c.close()
        gw.wait_log(r"warning: worker 0: mxgate_max_connections = 2 reached: refused "
                    r"unknown\[127\.0\.0\.1\]")
        a.send(b"QUIT\r\n")
        self.assertTrue(a.reply().startswith(b"221 "))
        a.close()
        gw.wait_log(r"disconnect from .* quit=1 commands=1$")
        d = gw.raw()
        self.assertTrue(d.reply().startswith(b"220 "))
        d.close()
        b.close()

    def test_error_sleep_does_not_block_the_worker(self):
        gw = self.gateway(mxgate_workers=1, smtpd_soft_error_limit=1,
                          smtpd_error_sleep_time="2s", smtpd_hard_error_limit=100)
        a = gw.raw()
        a.reply()
        t0 = time.monotonic()
        # past the soft limit, each error reply is held for smtpd_error_sleep_time
        a.send(b"BOGUS1\r\n")
        a.reply()
        a.send(b"BOGUS2\r\n")
        # meanwhile the same worker serves another client at once
        t1 = time.monotonic()
        b = gw.raw()
        self.assertTrue(b.reply().startswith(b"220 "))
        self.assertLess(time.monotonic() - t1, 1.0)
        b.send(b"QUIT\r\n")
        self.assertTrue(b.reply().startswith(b"221 "))
        b.close()
        r2 = a.reply()
        self.assertTrue(r2.startswith(b"5"), r2)
        a.send(b"BOGUS3\r\n")
        r3 = a.reply()
        self.assertTrue(r3.startswith(b"5"), r3)
        self.assertGreater(time.monotonic() - t0, 1.9)
        a.close()

    def test_spool_failure_answers_451(self):
        gw = self.gateway()
        seg = os.path.join(gw.spool, "seg")
        first = sorted(os.listdir(seg))
        self.assertEqual(len(first), 1, first)
        # A file size limit on the running gateway: the next write past it fails
        # (EFBIG; SIGXFSZ is ignored), as a failing disk would.
        limit = 16384
        set_fsize(gw.proc.pid, limit)
        with gw.smtp() as s:
            s.ehlo()
            s.mail("a@client.example")
            self.assertEqual(s.rcpt("b@localhost")[0], 250)
            # the failed batch answers 451 at the end of the message, never 250
            self.assertEqual(s.data("Subject: big\r\n\r\n" + ("x" * 76 + "\r\n") * 400),
                             (451, b"4.3.0 Error: queue file write error"))
            # the session goes on; the failed segment is closed for good and a small
            # message goes to a fresh one
            self.assertEqual(s.rset()[0], 250)
            res = s.sendmail("c@client.example", ["d@localhost"], "Subject: small\r\n\r\nok\r\n")
            self.assertEqual(res, {})
        gw.wait_log(r"warning: \w+: queue file write error: File too large")
        gw.wait_log(r"disconnect from .* data=1/2 ")
        set_fsize(gw.proc.pid, None)
        segs = sorted(os.listdir(seg))
        self.assertEqual(len(segs), 2, segs)
        msgs = spool_messages(gw.spool)
        self.assertEqual([m[0]["sender"] for m in msgs.values()], ["c@client.example"])

    def test_spool_quota_answers_452(self):
        # a quota below what an empty spool already holds (its first segment's header)
        gw = self.gateway(mxgate_spool_quota=1)
        with gw.smtp() as s:
            s.ehlo()
            # refused at MAIL, before the client sends anything big
            self.assertEqual(s.mail("a@client.example"),
                             (452, b"4.3.1 Insufficient system storage"))
            self.assertEqual(s.noop()[0], 250)
        gw.wait_log(r"warning: NOQUEUE: spool is over mxgate_spool_quota")
        gw.wait_log(r"NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 452 4\.3\.1 "
                    r"Insufficient system storage;")
        self.assertEqual(gw.incoming(), [])

    def test_sigterm_while_committing(self):
        # A commit delay holds a lone message's sync for a second: the stop arrives while
        # its commit is pending. The message is committed and answered 250 first; the 421
        # follows.
        gw = self.gateway(mxgate_spool_commit_delay=1000, mxgate_workers=1)
        c = gw.raw()
        c.reply()
        c.send(b"EHLO client.example\r\n")
        c.reply()
        c.send(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@localhost>\r\nDATA\r\n")
        for _ in range(3):
            c.reply()
        t0 = time.monotonic()
        c.send(b"Subject: in flight\r\n\r\nbody\r\n.\r\n")
        time.sleep(0.3)
        gw.proc.send_signal(signal.SIGTERM)
        r = c.reply()
        m = re.match(rb"250 2\.0\.0 Ok: queued as (\S+)\r\n", r)
        self.assertTrue(m, r)
        # held by the delay, not much longer
        self.assertGreater(time.monotonic() - t0, 0.9)
        self.assertLess(time.monotonic() - t0, 4)
        self.assertTrue(c.reply().startswith(b"421 4.3.2 " + HOST.encode()))
        self.assertTrue(c.eof())
        c.close()
        self.assertEqual(gw.stop(), 0)
        self.assertEqual(gw.incoming(), [m.group(1).decode()])

    def test_sigterm_with_open_sessions(self):
        gw = self.gateway()
        idle = gw.raw()
        self.assertTrue(idle.reply().startswith(b"220 "))
        mid = gw.raw()
        mid.reply()
        mid.send(b"EHLO client.example\r\n")
        mid.reply()
        mid.send(b"MAIL FROM:<a@client.example>\r\n")
        mid.reply()
        mid.send(b"RCPT TO:<b@localhost>\r\nDATA\r\n")
        mid.reply()
        mid.reply()
        mid.send(b"Subject: cut\r\n\r\nunfinished")
        mid.wait_sent()
        os.kill(gw.proc.pid, signal.SIGUSR1)
        gw.wait_log(r"statistics \(SIGUSR1\): open_connections=2 ")
        t0 = time.monotonic()
        self.assertEqual(gw.stop(signal.SIGTERM), 0)
        self.assertLess(time.monotonic() - t0, 8)
        for c in (idle, mid):
            r = c.reply()
            self.assertTrue(r.startswith(b"421 4.3.2 " + HOST.encode()), r)
            self.assertTrue(c.eof())
            c.close()
        self.assertEqual(gw.incoming(), [])
        self.assertIn("mxgate stopped", gw.log())
        self.assertFalse(os.path.exists(gw.pidfile))
        # the port is free again
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", gw.port))


class CommandLineTest(unittest.TestCase):
    def run_mxgate(self, *args):
        return subprocess.run([MXGATE, *args], capture_output=True, text=True, timeout=30)

    def test_version_and_help(self):
        r = self.run_mxgate("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^mxgate \d+\.\d+\.\d+ \(built with DPDK \d+\.\d+")
        r = self.run_mxgate("-h")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: mxgate", r.stdout)
        r = self.run_mxgate("--no-such-option")
        self.assertNotEqual(r.returncode, 0)

    def test_check(self):
        gw = Gateway()
        self.addCleanup(gw.cleanup)
        r = self.run_mxgate("--check", "-c", gw.config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "mxgate: %s: configuration OK\n" % gw.config)
        with open(gw.config, "a") as f:
            f.write("message_size_limit = lots\n")
        r = self.run_mxgate("--check", "-c", gw.config)
        self.assertEqual(r.returncode, 1)
        self.assertIn(gw.config + ":", r.stderr)
        self.assertNotIn("configuration OK", r.stdout)
        r = self.run_mxgate("--check", "-c", os.path.join(gw.dir, "missing.cf"))
        self.assertEqual(r.returncode, 1)

    def test_dpdk_transport_needs_ports(self):
        # a dpdk configuration without ports is a one-line error before anything starts
        gw = Gateway(mxgate_transport="dpdk")
        self.addCleanup(gw.cleanup)
        r = self.run_mxgate("-c", gw.config)
        self.assertEqual(r.returncode, 1)
        self.assertIn("mxgate_dpdk_ports: no port", r.stderr)
        r = self.run_mxgate("--check", "-c", gw.config)
        self.assertEqual(r.returncode, 1)
        self.assertIn("mxgate_dpdk_ports: no port", r.stderr)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            gw = Gateway(mxgate_listen="127.0.0.1:%d" % s.getsockname()[1])
            self.addCleanup(gw.cleanup)
            r = self.run_mxgate("-c", gw.config)
            self.assertEqual(r.returncode, 1)
            self.assertIn("Address already in use", r.stderr)

    def test_second_gateway_on_same_spool(self):
        gw = Gateway()
        self.addCleanup(gw.cleanup)
        gw.start()
        other = Gateway(mxgate_spool_directory=gw.spool)
        self.addCleanup(other.cleanup)
        r = self.run_mxgate("-c", other.config)
        self.assertEqual(r.returncode, 1)
        self.assertIn("in use by another mxgate", r.stderr)
        self.assertEqual(gw.stop(), 0)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    MXGATE, SPOOLCAT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
