"""Unprivileged running on one transport (argv: mxgate binary, kernel|dpdk): mail_owner and
mxgate_chroot (dataplane/privdrop.h).

Started as root, the gateway must run as mail_owner (the system user mxgate that
deploy/install-deps.sh creates) once it serves. Checked, on each transport:
  1. /proc/PID/status of the process: real, effective, saved and file-system UID and GID
     are the user's, its groups are the user's; CapPrm, CapEff and CapBnd are exactly what
     the gateway says it keeps (kernel: cap_net_bind_service; dpdk: none), CapAmb is empty;
     every thread (/proc/PID/task/*) runs as the user with no capability beyond those;
  2. the spool and the control socket belong to the user, also when an earlier root-only
     version left the spool (every file root's: given to the user at start);
  3. mail still flows (smtplib; from the client namespace on dpdk): 250 and the message in
     the spool;
  4. mxgate-queue lists it, run as the user (setpriv) and as root;
  5. `mxgate reload` works run as the user and as root; on kernel, a reload that adds a
     master.cf service on a port below 1024 opens it (the kept CAP_NET_BIND_SERVICE);
  6. a mail_owner that does not exist, or is root, is refused by --check and at start;
  7. with mxgate_chroot = the spool's parent: a start without the configuration inside the
     chroot is refused, naming the file; with it, /proc/PID/root is the chroot, the checks of
     1, 3, 4 and 5 hold, and the reload reads the copy inside the chroot.
Needs root (skipped, exit 77, otherwise), the user mxgate (adduser; deploy/install-deps.sh
makes it) and setpriv (util-linux); dpdk: netns.py's tools.
"""

import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import sys

import mxtest
from mxtest import fail, need_tool

transport = sys.argv[2] if len(sys.argv) > 2 else "kernel"
binary = mxtest.binary_from_argv()
queue_tool = os.path.join(os.path.dirname(os.path.abspath(binary)), "mxgate-queue")
need_tool("setpriv")
if transport == "dpdk":
    import netns
    netns.need_netns_tools()
mxtest.need_root("running as root and dropping to mail_owner")
try:
    USER = pwd.getpwnam("mxgate")
except KeyError:
    fail("no user mxgate (mail_owner's default): run deploy/install-deps.sh, which makes it "
         "with adduser --system --group --no-create-home mxgate")

CAP_NET_BIND_SERVICE = 10
KEPT = (1 << CAP_NET_BIND_SERVICE) if transport == "kernel" else 0


def status(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def check_identity(pid, what):
    st = status(f"/proc/{pid}/status")
    uids = [int(x) for x in st["Uid"].split()]
    gids = [int(x) for x in st["Gid"].split()]
    groups = {int(x) for x in st["Groups"].split()}
    want_groups = {g.gr_gid for g in __import__("grp").getgrall()
                   if USER.pw_name in g.gr_mem} | {USER.pw_gid}
    if uids != [USER.pw_uid] * 4 or gids != [USER.pw_gid] * 4:
        fail(f"{what}: Uid {uids} Gid {gids}, want {USER.pw_uid}/{USER.pw_gid} x4")
    if groups != want_groups:
        fail(f"{what}: Groups {sorted(groups)}, want {sorted(want_groups)}")
    for key in ("CapPrm", "CapEff", "CapBnd"):
        if int(st[key], 16) != KEPT:
            fail(f"{what}: {key} {st[key]}, want {KEPT:016x}")
    if int(st["CapAmb"], 16) != 0 or int(st["CapInh"], 16) != 0:
        fail(f"{what}: CapAmb {st['CapAmb']} CapInh {st['CapInh']}, want none")
    tasks = os.listdir(f"/proc/{pid}/task")
    for tid in tasks:
        try:
            t = status(f"/proc/{pid}/task/{tid}/status")
        except FileNotFoundError:
            continue
        tu = [int(x) for x in t["Uid"].split()]
        if tu != [USER.pw_uid] * 4:
            fail(f"{what}: thread {tid} ({t['Name']}) Uid {tu}")
        for key in ("CapPrm", "CapEff"):
            if int(t[key], 16) & ~KEPT:
                fail(f"{what}: thread {tid} ({t['Name']}) {key} {t[key]} beyond {KEPT:x}")
    print(f"  {what}: uid/gid {USER.pw_uid}/{USER.pw_gid} in all {len(tasks)} threads, "
          f"CapEff=CapPrm=CapBnd={KEPT:016x}")


def check_owned(gw):
    for p in (gw.spool, os.path.join(gw.spool, "seg"), os.path.join(gw.spool, "control")):
        st = os.lstat(p)
        if st.st_uid != USER.pw_uid:
            fail(f"{p} belongs to uid {st.st_uid}, not to mxgate")


SEND = r"""
import smtplib, sys
host, port, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP(host, port, timeout=60) as c:
    c.ehlo("client.test.example")
    c.mail("sender@client.test.example")
    code, msg = c.rcpt("user@relay.example")
    assert code == 250, (code, msg)
    code, msg = c.data(("Subject: " + subject + "\r\n\r\nunprivileged\r\n").encode())
    print(code, msg.decode())
"""


def send(gw, topo, subject):
    """The queue ID of one message sent with smtplib."""
    argv = [netns.SYS_PYTHON if topo else sys.executable, "-c", SEND, gw.host,
            str(gw.port), subject]
    r = (topo.cl if topo else subprocess.run)(argv, capture_output=True, text=True,
                                              timeout=120)
    m = re.match(r"250 .*queued as (\S+)", r.stdout.strip())
    if r.returncode != 0 or not m:
        fail(f"smtplib: {r.stdout} {r.stderr}\n{gw.output()}")
    qid = m.group(1)
    if not any(q == qid for q, _, _ in gw.spooled()):
        fail(f"queue ID {qid} not in the spool")
    return qid


def as_user(argv, user):
    return ["setpriv", f"--reuid={USER.pw_uid}", f"--regid={USER.pw_gid}", "--init-groups",
            "--", *argv] if user else argv


def check_queue(gw, qid):
    for user in (True, False):
        r = subprocess.run(as_user([queue_tool, "-c", gw.config_path, "list"], user),
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or qid not in r.stdout:
            fail(f"mxgate-queue list as {'mxgate' if user else 'root'}: exit "
                 f"{r.returncode}, {qid} missing:\n{r.stdout}{r.stderr}")
    print(f"  mxgate-queue list as mxgate and as root: {qid}")


def reload(gw, user):
    r = subprocess.run(as_user([binary, "reload", "-c", gw.config_path], user),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "serves new connections" not in r.stdout + r.stderr:
        fail(f"mxgate reload as {'mxgate' if user else 'root'}: exit {r.returncode}:\n"
             f"{r.stdout}{r.stderr}\n{gw.output()}")


def privileged_port():
    for port in range(990, 600, -7):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    fail("no free port below 1024 on 127.0.0.1")


def greeting(host, port):
    with socket.create_connection((host, port), 10) as s:
        s.settimeout(10)
        return s.recv(200).decode(errors="replace")


def make_gateway(extra, topo):
    if topo:
        return netns.DpdkGateway(binary, topo, extra_config=extra, workers=1)
    return mxtest.Gateway(binary, extra_config=extra, workers=2)


def run_one(topo, chroot):
    gw = make_gateway("", topo)
    what = f"{transport}{' chroot' if chroot else ''}"
    master = os.path.join(gw.dir, "master.cf")
    if not topo:
        with open(master, "w") as f:
            f.write(f"127.0.0.1:{gw.port} inet n - n - - smtpd\n")
    with open(gw.config_path, "a") as f:
        if not topo:
            f.write(f"mxgate_master_file = {master}\n")
        if chroot:
            f.write(f"mxgate_chroot = {gw.dir}\n")
    if chroot:
        # without the configuration inside the chroot, a reload could not read it: refused
        r = subprocess.run([binary, "-c", gw.config_path], capture_output=True, text=True,
                           timeout=60)
        if r.returncode == 0 or "not in the chroot" not in r.stderr or \
                gw.config_path not in r.stderr:
            fail(f"start without the configuration in the chroot: exit {r.returncode}:\n"
                 f"{r.stderr}")
        print(f"  refused without the files: {r.stderr.strip().splitlines()[-1]}")
        inside = gw.dir + gw.dir
        os.makedirs(inside)
        for p in (gw.config_path, master):
            if os.path.exists(p):
                shutil.copy(p, inside + "/")
    saved_asan = os.environ.get("ASAN_OPTIONS")
    if chroot:
        # LeakSanitizer reads /proc/PID/task at exit, which is not in the chroot; the
        # unchrooted run checks for leaks
        os.environ["ASAN_OPTIONS"] = (saved_asan + ":" if saved_asan else "") + \
            "detect_leaks=0"
    try:
        checks(gw, topo, chroot, what, master)
    finally:
        if saved_asan is None:
            os.environ.pop("ASAN_OPTIONS", None)
        else:
            os.environ["ASAN_OPTIONS"] = saved_asan


def checks(gw, topo, chroot, what, master):
    with gw:
        pid = gw.proc.pid
        check_identity(pid, what)
        check_owned(gw)
        if chroot:
            root = os.readlink(f"/proc/{pid}/root")
            if root != gw.dir:
                fail(f"/proc/{pid}/root is {root}, want the chroot {gw.dir}")
            print(f"  /proc/{pid}/root -> {root}")
        qid = send(gw, topo, f"privdrop {what}")
        check_queue(gw, qid)
        reload(gw, user=True)
        reload(gw, user=False)
        if not topo:
            # a service below 1024 added by a reload: the kept CAP_NET_BIND_SERVICE
            port = privileged_port()
            text = f"127.0.0.1:{gw.port} inet n - n - - smtpd\n" \
                   f"127.0.0.1:{port} inet n - n - - smtpd\n"
            for p in [master] + ([gw.dir + master] if chroot else []):
                with open(p, "w") as f:
                    f.write(text)
            reload(gw, user=True)
            g = mxtest.wait_for(lambda: _try_greeting("127.0.0.1", port), 15,
                                f"a greeting on the new service 127.0.0.1:{port}",
                                gw.output)
            print(f"  reload opened 127.0.0.1:{port}: {g.strip()}")
        # mail after the reloads, and the identity unchanged by them
        send(gw, topo, f"privdrop {what} after reload")
        check_identity(pid, what + " after reloads")
        if not chroot:
            # a spool an earlier, root-only version left: given to the user at start
            gw.stop()
            for dirpath, dirnames, filenames in os.walk(gw.spool):
                for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                    os.lchown(n, 0, 0)
            gw.start()
            check_owned(gw)
            if not re.search(r"mail_owner = mxgate: \d+ file\(s\) under " +
                             re.escape(gw.spool) + " given to it", gw.log()):
                fail(f"no log line for the spool given to mxgate\n{gw.output()}")
            check_queue(gw, qid)
            check_identity(gw.proc.pid, what + " on a root-owned spool")


def _try_greeting(host, port):
    try:
        g = greeting(host, port)
        return g if g.startswith("220") else None
    except OSError:
        return None


def check_refusals():
    """A missing user, and root, refused by --check and at start, saying why."""
    for user, why in (("mxgate-no-such-user", "no such user"),
                      ("root", "privileged user ID 0")):
        gw = mxtest.Gateway(binary, extra_config=f"mail_owner = {user}\n")
        try:
            for argv in ([binary, "--check", "-c", gw.config_path],
                         [binary, "-c", gw.config_path]):
                r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
                if r.returncode != 1 or f"mail_owner = {user}" not in r.stderr or \
                        why not in r.stderr:
                    fail(f"{' '.join(argv)} with mail_owner = {user}: exit {r.returncode}, "
                         f"want 1 and \"{why}\":\n{r.stderr}")
            print(f"  mail_owner = {user}: refused by --check and at start ({why})")
        finally:
            shutil.rmtree(gw.dir, ignore_errors=True)


def main():
    check_refusals()
    topo = None
    if transport == "dpdk":
        topo = netns.Topology(prefix=f"mxp{os.getpid() % 10000}").create()
    try:
        for chroot in (False, True):
            run_one(topo, chroot)
    finally:
        if topo:
            topo.destroy()
    print(f"privdrop ({transport}): OK")


main()
