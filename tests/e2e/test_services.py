"""Services as master.cf on one transport (argv: mxgate binary, kernel|dpdk).

mxgate_master_file names a master.cf with two smtpd services, the usual split:
  smtp        main.cf's lists and header_checks = pcre:in (refuses "inbound-spam");
  submission  -o header_checks=pcre:out (refuses "outbound-secret" and lets "inbound-spam"
              through), -o smtpd_client_restrictions refusing one client address that smtp
              accepts, and -o smtpd_banner with its own greeting.
Each service enforces its own lists, checked with swaks. Then reloads change the services
without a restart: one adds a third listener (it greets), the next drops submission (its
port refuses connections), and connections to smtp go on throughout.
On the kernel transport the services are 127.0.0.1:PORT (the machine's own port 25 may be
taken); on dpdk they are `smtp` and `submission` (25 and 587 on the DPDK stack's
addresses) in a network namespace (netns.py), which needs root.
"""

import os
import re
import socket
import subprocess
import sys
import time

import mxtest
from mxtest import fail

binary = mxtest.binary_from_argv()
transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
mxtest.need_tool("swaks")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()


class Target:
    def __init__(self):
        if transport == "dpdk":
            self.topo = netns.Topology(prefix=f"mxs{os.getpid() % 10000}").create()
            self.gw = netns.DpdkGateway(binary, self.topo, workers=2)
            self.ports = {"smtp": 25, "submission": 587, "extra": 2525}
            self.names = {"smtp": "smtp", "submission": "submission", "extra": "2525"}
            # the refused client reaches the gateway over IPv4, the accepted one over IPv6
            self.refused_client, self.accepted_client = self.topo.cl_ip4, self.topo.cl_ip6
        else:
            self.topo = None
            self.gw = mxtest.Gateway(binary, workers=2)
            p = [self.gw.port, mxtest.free_port(), mxtest.free_port()]
            while len(set(p)) < 3:
                p[2] = mxtest.free_port()
            self.ports = dict(zip(("smtp", "submission", "extra"), p))
            self.names = {k: f"127.0.0.1:{v}" for k, v in self.ports.items()}
            self.refused_client, self.accepted_client = "127.0.0.2", "127.0.0.1"
        d = self.gw.dir
        for name, rule in (("in", "/^Subject:.*inbound-spam/ REJECT inbound rule"),
                           ("out", "/^Subject:.*outbound-secret/ REJECT outbound rule")):
            with open(os.path.join(d, f"checks.{name}"), "w") as f:
                f.write(rule + "\n")
        self.master = os.path.join(d, "master.cf")
        self.write_master(("smtp", "submission"))
        with open(self.gw.config_path, "a") as f:
            f.write(f"mxgate_master_file = {self.master}\n"
                    f"header_checks = pcre:{d}/checks.in\n")

    def write_master(self, services):
        d = self.gw.dir
        lines = ["# service type private unpriv chroot wakeup maxproc command"]
        for s in services:
            lines.append(f"{self.names[s]} inet n - y - - smtpd")
            if s == "submission":
                lines += [
                    f"  -o header_checks=pcre:{d}/checks.out",
                    "  -o { smtpd_client_restrictions = check_client_access inline:{ "
                    f"{{ {self.refused_client} = REJECT submission refuses this client }} }} }}",
                    "  -o { smtpd_banner = $myhostname ESMTP submission service }",
                ]
        with open(self.master, "w") as f:
            f.write("\n".join(lines) + "\n")

    def swaks(self, service, subject, client=None):
        """(exit status, transcript) of one swaks message to a service (from the accepted
        client unless told)."""
        if client is None:
            client = self.accepted_client
        host = self.gw.host
        if ":" in client:
            host = self.gw.host6
        srv = f"[{host}]:{self.ports[service]}" if ":" in host else \
            f"{host}:{self.ports[service]}"
        argv = ["swaks", "--server", srv, "--to", "user@relay.example", "--from",
                "sender@client.test.example", "--helo", "client.test.example",
                "--header", f"Subject: {subject}", "--body", "service test\n"]
        if not self.topo:
            argv += ["--local-interface", client]
        if self.topo:
            r = self.topo.cl(argv, capture_output=True, text=True, timeout=120)
        else:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        return r.returncode, r.stdout + r.stderr

    def connect(self, service):
        """The greeting line of a plain connection, or the error connecting."""
        code = ("import socket,sys\n"
                "try:\n"
                f" s=socket.create_connection(({self.gw.host!r},{self.ports[service]}),5)\n"
                " s.settimeout(5); print(s.recv(200).decode().strip())\n"
                "except OSError as e: print(type(e).__name__)\n")
        argv = [sys.executable if not self.topo else netns.SYS_PYTHON, "-c", code]
        if self.topo:
            r = self.topo.cl(argv, capture_output=True, text=True, timeout=60)
        else:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return r.stdout.strip()

    def reload(self):
        r = subprocess.run([binary, "reload", "-c", self.gw.config_path], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            fail(f"mxgate reload failed:\n{r.stdout}{r.stderr}\n{self.gw.output()}")
        return r.stdout

    def close(self):
        self.gw.stop()
        if self.topo:
            self.topo.destroy()


def expect(t, service, subject, accepted, why, client=None):
    rc, out = t.swaks(service, subject, client)
    queued = "queued as" in out
    if queued != accepted:
        fail(f"{service}, Subject {subject!r}, client {client}: expected "
             f"{'acceptance' if accepted else 'refusal'} ({why}):\n{out}\n{t.gw.output()}")
    return out


t = Target()
try:
    t.gw.start()
    log = t.gw.log()
    # each service's own header_checks
    out = expect(t, "smtp", "inbound-spam offer", False, "smtp has pcre:in")
    if "inbound rule" not in out:
        fail(f"smtp refused inbound-spam without its rule's text:\n{out}")
    expect(t, "smtp", "outbound-secret plans", True, "smtp does not have pcre:out")
    out = expect(t, "submission", "outbound-secret plans", False, "-o header_checks=pcre:out")
    if "outbound rule" not in out:
        fail(f"submission refused outbound-secret without its rule's text:\n{out}")
    expect(t, "submission", "inbound-spam offer", True, "submission replaced pcre:in")
    # the submission's own client restrictions and banner
    out = expect(t, "submission", "hello", False, "-o smtpd_client_restrictions",
                 client=t.refused_client)
    if "submission refuses this client" not in out:
        fail(f"submission's client restriction text missing:\n{out}")
    expect(t, "submission", "hello", True, "an accepted client", client=t.accepted_client)
    expect(t, "smtp", "hello", True, "smtp has no client restriction",
           client=t.refused_client)
    if "ESMTP submission service" not in t.connect("submission"):
        fail(f"submission greets with {t.connect('submission')!r}, not its own banner")
    if "ESMTP submission service" in t.connect("smtp"):
        fail("smtp greets with the submission banner")

    # a reload adds a listener ...
    t.write_master(("smtp", "submission", "extra"))
    t.reload()
    mxtest.wait_for(lambda: t.connect("extra").startswith("220"), 10,
                    "the added service to greet", t.gw.output)
    expect(t, "extra", "inbound-spam offer", False, "the added service has main.cf's checks")
    # ... and one drops a service: its port refuses, the others go on
    t.write_master(("smtp", "extra"))
    t.reload()
    mxtest.wait_for(lambda: t.connect("submission") == "ConnectionRefusedError", 10,
                    "the dropped service's port to refuse connections",
                    lambda: t.connect("submission") + "\n" + t.gw.output())
    expect(t, "smtp", "hello again", True, "smtp after the services changed")
    expect(t, "extra", "hello again", True, "the added service after another reload")
finally:
    t.close()
print("PASS")
