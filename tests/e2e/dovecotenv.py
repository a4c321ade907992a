"""A private Dovecot auth server (Debian package `dovecot-core`) for the SASL tests: SMTP
AUTH through smtpd_sasl_type = dovecot, for mxgate and for Postfix alike.

    with DovecotAuth(users={"alice": "secret"}) as d:
        d.socket_path   # the auth-client UNIX socket (smtpd_sasl_path = d.socket_path)
        d.endpoint      # "unix:" + socket_path
        d.inet_port     # the auth-client TCP port on 127.0.0.1 (inet_port=0: a free
                        # one; None: no TCP listener); d.inet_endpoint "inet:127.0.0.1:P"
        d.restart()     # stop, then start again on the same sockets (a Dovecot restart)
        d.log()         # Dovecot's log so far

The instance has everything of its own under a temporary directory: its configuration
file, base_dir (the sockets), state_dir and log. No IMAP/POP/LMTP (protocols = none).
Users come from a passwd-file passdb with plain passwords ({PLAIN}); extra_fields adds
passdb extra fields per user, space-separated name=value, no blanks in a value (e.g.
{"bob": "nologin reason=Disabled"}: an OK that must be refused, with Dovecot's reason). The mechanisms are auth_mechanisms (default
"plain login", what Dovecot offers by default, so the EHLO list is "PLAIN LOGIN").
Plaintext mechanisms are allowed without TLS (disable_plaintext_auth = no), and failures
are answered at once (auth_failure_delay = 0) unless failure_delay says otherwise; other
settings go in `settings` ({name: value}, appended at the top level). Dovecot's auth
penalty stays on: failures from one rip= address are delayed 2, 4, 8, then 15 s (anvil),
as in production; a test that fails many times from one address takes that long.

Dovecot runs in the foreground (dovecot -F) as root, the way the package runs it (its
helper processes drop to the dovecot and dovenull users the package created; the auth
process stays root so that the passwd file may lie under a private 0700 TMPDIR), in a
process group of its own, so the test must run as root: DovecotAuth fails the test,
naming the package, when dovecot is missing, and start() exits 77 (skipped) when not
root. stop() sends SIGTERM to the master, waits for it (SIGKILL after 10 s), then kills
what is left of the group (an auth process outlives its master while it has clients; a
restart must drop them, as systemd's restart does); close() also removes the directory
unless keep=True. The configuration
is checked with `doveconf -n` first; when Dovecot does not come up, the test fails with its
output and log.

Python 3 standard library only."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from mxtest import fail, need_tool

DOVECOT = "/usr/sbin/dovecot"
SKIP = 77


def free_tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _quote(value):
    """A passwd-file field may not hold ':' or a line break."""
    value = str(value)
    if ":" in value or "\n" in value or "\r" in value:
        raise ValueError(f"passwd-file fields cannot hold ':' or line breaks: {value!r}")
    return value


class DovecotAuth:
    def __init__(self, users=None, extra_fields=None, inet_port=None,
                 mechanisms="plain login", failure_delay="0", settings=None,
                 workdir=None, keep=False):
        self.dovecot = need_tool(DOVECOT)
        self.users = dict(users or {})
        self.extra_fields = dict(extra_fields or {})
        self.mechanisms = mechanisms
        self.failure_delay = failure_delay
        self.settings = dict(settings or {})
        self.keep = keep
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="dovecotenv.")
        self.base_dir = os.path.join(self.dir, "run")
        self.state_dir = os.path.join(self.dir, "state")
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.passwd_path = os.path.join(self.dir, "passwd")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.out_path = os.path.join(self.dir, "dovecot.out")
        self.socket_path = os.path.join(self.base_dir, "auth-client")
        self.endpoint = "unix:" + self.socket_path
        if inet_port == 0:
            inet_port = free_tcp_port()
        self.inet_port = inet_port
        self.inet_endpoint = f"inet:127.0.0.1:{inet_port}" if inet_port else None
        self.proc = None
        self._out = None

    # ---- configuration ----

    def _write_files(self):
        os.makedirs(self.base_dir, exist_ok=True)
        os.makedirs(self.state_dir, exist_ok=True)
        # the socket must be reachable for clients that are not root (Postfix's smtpd runs
        # as postfix): the directories on its path may be traversed, not listed
        os.chmod(self.dir, 0o711)
        os.chmod(self.base_dir, 0o755)
        lines = []
        for user, password in self.users.items():
            extra = self.extra_fields.get(user, "")
            # user:password:uid:gid:(gecos):home:(shell):extra_fields
            lines.append(f"{_quote(user)}:{{PLAIN}}{_quote(password)}::::::{_quote(extra)}")
        with open(self.passwd_path, "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        os.chmod(self.passwd_path, 0o644)
        inet = ""
        if self.inet_port:
            inet = (f"  inet_listener auth-inet {{\n    address = 127.0.0.1\n"
                    f"    port = {self.inet_port}\n  }}\n")
        extra = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        conf = (
            f"# written by tests/e2e/dovecotenv.py\n"
            f"instance_name = mxgate-test-{os.getpid()}-{os.path.basename(self.dir)}\n"
            f"base_dir = {self.base_dir}\n"
            f"state_dir = {self.state_dir}\n"
            f"log_path = {self.log_path}\n"
            f"protocols = none\n"
            f"listen = 127.0.0.1\n"
            f"ssl = no\n"
            f"auth_mechanisms = {self.mechanisms}\n"
            f"disable_plaintext_auth = no\n"
            f"auth_failure_delay = {self.failure_delay}\n"
            f"auth_verbose = yes\n"
            f"{extra}"
            f"passdb {{\n  driver = passwd-file\n"
            f"  args = scheme=PLAIN username_format=%u {self.passwd_path}\n}}\n"
            f"userdb {{\n  driver = static\n"
            f"  args = uid=nobody gid=nogroup home=/nonexistent\n}}\n"
            # root: the passwd file may lie under a private (0700) TMPDIR
            f"service auth {{\n  user = root\n"
            f"  unix_listener auth-client {{\n    mode = 0666\n  }}\n"
            f"{inet}}}\n"
        )
        with open(self.conf_path, "w") as f:
            f.write(conf)
        r = subprocess.run([shutil.which("doveconf") or "/usr/bin/doveconf", "-n", "-c",
                            self.conf_path], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"doveconf refuses the test configuration {self.conf_path}: "
                 f"{r.stderr.strip() or r.stdout.strip()}")

    # ---- running ----

    def start(self, timeout=15.0):
        """Start Dovecot and wait until the auth-client socket (and the TCP listener)
        accept connections. Returns self."""
        if os.geteuid() != 0:
            print("SKIP: Dovecot's auth server must be started as root")
            raise SystemExit(SKIP)
        if self.proc is None and not os.path.exists(self.conf_path):
            self._write_files()
        self._out = open(self.out_path, "ab")
        # its own process group: stop() ends every process of the instance, as systemd
        # stops the unit (an auth process outlives its master for the clients it has)
        self.proc = subprocess.Popen([self.dovecot, "-F", "-c", self.conf_path],
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return self
            time.sleep(0.05)
        out = self.log()
        self.stop()
        fail(f"Dovecot did not come up within {timeout}s; its output and log:\n{out}")
        return self

    def _ready(self):
        if not self._connects(socket.AF_UNIX, self.socket_path):
            return False
        return not self.inet_port or self._connects(socket.AF_INET,
                                                    ("127.0.0.1", self.inet_port))

    @staticmethod
    def _connects(family, addr):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect(addr)
            # Dovecot 2.3 greets at once: a VERSION line means the auth process is up
            data = s.recv(64)
            return data.startswith(b"VERSION\t")
        except OSError:
            return False
        finally:
            s.close()

    def stop(self):
        """Stop Dovecot (the sockets are left, as Dovecot leaves them: a client then gets
        'Connection refused')."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # the group Popen(start_new_session=True) made
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # what is left of the instance (auth processes serving their clients)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        end = time.monotonic() + 10
        while time.monotonic() < end and self._group_alive(pgid):
            time.sleep(0.05)
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None

    @staticmethod
    def _group_alive(pgid):
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def restart(self):
        self.stop()
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        text = ""
        for path in (self.out_path, self.log_path):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def close(self):
        self.stop()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False
