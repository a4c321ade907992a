"""The systemd unit (deploy/mxgate.service.in) under a real systemd: start, reload, stop.
argv: the mxgate binary, the source root.

PID 1 of the machines this runs on is usually not systemd (a container), so the test boots
one: systemd-nspawn on an overlay of the host's own root (the host's tree read-only below a
tmpfs, so nothing the container does reaches the host), with a private network, booted
into a target of the test's (systemd.unit=mxgate-test.target) whose one service drives the
check inside the container and powers it off:
  1. `systemctl start mxgate` returns only after the gateway's READY=1 (Type=notify) and the
     unit is active/running with the gateway's STATUS= text;
  2. the gateway runs as mail_owner (mxgate) with CapEff cap_net_bind_service only, with
     NoNewPrivs (the unit's hardening applied), and takes a message on port 25 (smtplib);
  3. `systemctl reload mxgate` (ExecReload: mxgate reload) succeeds, the log shows the new
     generation and the unit is active/running again (RELOADING=1 then READY=1); a reload
     of a configuration with an error fails (systemctl reload exits non-zero) and the
     gateway keeps serving;
  4. `systemctl stop mxgate` ends it with exit status 0 and result success.
The unit under test is the shipped one, with @bindir@ the build's directory.
Needs root (skipped, exit 77, otherwise), systemd-nspawn (systemd-container), systemd, and
the user mxgate (deploy/install-deps.sh).
"""

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

import mxtest
from mxtest import fail, need_tool

binary = mxtest.binary_from_argv()
source_root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
nspawn = need_tool("systemd-nspawn")
need_tool("/lib/systemd/systemd")
mxtest.need_root("booting systemd in a container")
try:
    USER = pwd.getpwnam("mxgate")
except KeyError:
    fail("no user mxgate (mail_owner's default): run deploy/install-deps.sh")

CONFIG = """myhostname = mx.test.example
mydestination = $myhostname, localhost
relay_domains = relay.example
mynetworks = 127.0.0.0/8
mxgate_listen = 127.0.0.1:25
mxgate_workers = 1
mxgate_spool_directory = /var/spool/mxgate
maillog_file = /var/log/mxgate/mxgate.log
smtpd_peername_lookup = no
"""

TARGET = """[Unit]
Description=mxgate systemd test
Requires=mxgate-test-driver.service
After=mxgate-test-driver.service
AllowIsolate=yes
"""

DRIVER_UNIT = """[Unit]
Description=mxgate systemd test driver
After=basic.target
Requires=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/lib/mxgate-test/driver.sh
ExecStopPost=/bin/systemctl --no-block poweroff
"""

# Runs inside the container; every line of /results/out is "key=value ...".
DRIVER = r"""
out=/results/out
say() { echo "$*" >> "$out"; }
show() { systemctl show mxgate.service -p "$1" --value; }
say "pid1=$(cat /proc/1/comm)"
timeout 120 systemctl start mxgate.service; rc=$?; say "start_rc=$rc"
[ $rc = 0 ] || systemctl status mxgate.service --no-pager -l -n 40 >> "$out" 2>&1
say "state=$(show ActiveState)/$(show SubState) type=$(show Type)"
say "status_text=$(show StatusText)"
pid=$(show MainPID)
say "mainpid=$pid"
say "uid=$(awk '/^Uid:/{print $2 "," $3 "," $4}' /proc/$pid/status) capeff=$(awk '/^CapEff:/{print $2}' /proc/$pid/status) nonewprivs=$(awk '/^NoNewPrivs:/{print $2}' /proc/$pid/status)"
python3 - >> "$out" 2>&1 <<'PY'
import smtplib
with smtplib.SMTP("127.0.0.1", 25, timeout=30) as c:
    c.ehlo("client.test.example")
    c.mail("sender@client.test.example")
    c.rcpt("user@relay.example")
    code, msg = c.data(b"Subject: systemd\r\n\r\nunder systemd\r\n")
    print(f"mail={code} {msg.decode()}")
PY
timeout 120 systemctl reload mxgate.service; say "reload_rc=$?"
say "after_reload=$(show ActiveState)/$(show SubState)"
say "generations=$(grep -c 'generation 2 built' /var/log/mxgate/mxgate.log)"
cp /etc/mxgate/mxgate.cf /etc/mxgate/mxgate.cf.good
echo "smtpd_helo_restrictions = reject_no_such_restriction" >> /etc/mxgate/mxgate.cf
timeout 120 systemctl reload mxgate.service; say "bad_reload_rc=$?"
cp /etc/mxgate/mxgate.cf.good /etc/mxgate/mxgate.cf
say "after_bad_reload=$(show ActiveState)/$(show SubState) mainpid=$(show MainPID)"
timeout 60 systemctl stop mxgate.service; say "stop_rc=$?"
say "after_stop=$(show ActiveState) result=$(show Result) exit=$(show ExecMainStatus)"
say "clean_stop=$(grep -c 'mxgate stopped$' /var/log/mxgate/mxgate.log)"
say "done=1"
"""


def unit_text():
    with open(os.path.join(source_root, "deploy", "mxgate.service.in")) as f:
        text = f.read()
    return text.replace("@bindir@", os.path.dirname(os.path.abspath(binary)))


def mount(*argv):
    r = subprocess.run(["mount", *argv], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"mount {' '.join(argv)}: {r.stderr}")


def main():
    # a private directory the host's tree is overlaid in (mkdtemp's 0700 would hide the
    # build from the user the gateway becomes)
    tmp = tempfile.mkdtemp(prefix="mxgate-systemd-")
    os.chmod(tmp, 0o755)
    ovl, root = os.path.join(tmp, "ovl"), os.path.join(tmp, "root")
    os.makedirs(ovl)
    os.makedirs(root)
    mounted = []
    try:
        mount("-t", "tmpfs", "-o", "size=256m,mode=0755", "tmpfs", ovl)
        mounted.append(ovl)
        os.makedirs(os.path.join(ovl, "upper"))
        os.makedirs(os.path.join(ovl, "work"))
        mount("-t", "overlay", "overlay", "-o",
              f"lowerdir=/,upperdir={ovl}/upper,workdir={ovl}/work", root)
        mounted.append(root)
        files = {
            "etc/mxgate/mxgate.cf": CONFIG,
            "etc/systemd/system/mxgate.service": unit_text(),
            "etc/systemd/system/mxgate-test.target": TARGET,
            "etc/systemd/system/mxgate-test-driver.service": DRIVER_UNIT,
            "usr/local/lib/mxgate-test/driver.sh": DRIVER,
        }
        for rel, text in files.items():
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)
        # nothing of the host's state: no spool, log or tables of an earlier run
        for rel in ("var/spool/mxgate", "var/lib/mxgate", "var/cache/mxgate",
                    "var/log/mxgate", "results"):
            shutil.rmtree(os.path.join(root, rel), ignore_errors=True)
        os.makedirs(os.path.join(root, "results"))
        # --keep-unit and --register=no: no systemd or machined on the host to ask;
        # --link-journal=no: the container has the host's machine ID
        argv = [nspawn, "-D", root, "--private-network", "--register=no", "--keep-unit",
                "--link-journal=no", "-q", "-b", "--", "systemd.unit=mxgate-test.target"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
            console = r.stdout + r.stderr
        except subprocess.TimeoutExpired as e:
            console = f"(timed out)\n{e.stdout or ''}{e.stderr or ''}"
        out_path = os.path.join(root, "results", "out")
        out = open(out_path).read() if os.path.exists(out_path) else ""
        log_path = os.path.join(root, "var", "log", "mxgate", "mxgate.log")
        log = open(log_path, errors="replace").read() if os.path.exists(log_path) else ""
        diag = (f"--- results ---\n{out}\n--- mxgate log ---\n{log[-4000:]}\n"
                f"--- console ---\n{console[-6000:]}")
        print(out)
        check(out, diag)
    finally:
        for m in reversed(mounted):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("systemd: OK")


def field(out, key):
    m = re.search(rf"(?:^|\s){re.escape(key)}=(\S*)", out)
    return m.group(1) if m else None


def check(out, diag):
    def want(key, value):
        got = field(out, key)
        if got != value:
            fail(f"{key}={got}, want {value}\n{diag}")
    want("done", "1")
    want("pid1", "systemd")
    want("start_rc", "0")
    want("state", "active/running")
    want("type", "notify")
    if "status_text=accepting mail" not in out:
        fail(f"the unit's StatusText is not the gateway's STATUS=\n{diag}")
    u = f"{USER.pw_uid}"
    want("uid", f"{u},{u},{u}")
    want("capeff", "0000000000000400")
    want("nonewprivs", "1")
    if not re.search(r"mail=250 .*queued as \S+", out):
        fail(f"no 250 for the message\n{diag}")
    want("reload_rc", "0")
    want("after_reload", "active/running")
    want("generations", "1")
    if field(out, "bad_reload_rc") in (None, "0"):
        fail(f"a reload of a configuration with an error succeeded\n{diag}")
    want("after_bad_reload", "active/running")
    want("stop_rc", "0")
    want("after_stop", "inactive")
    want("result", "success")
    want("exit", "0")
    want("clean_stop", "1")


main()
