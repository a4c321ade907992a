#!/usr/bin/env python3
"""`mxgate config` against Debian's postconf(1), the oracle.

For the demo configuration (deploy/mxgate.cf.demo, placeholders filled) and a richer main.cf
(continuation lines, $expansions, comments, Postfix-only and mxgate-only parameters), both
tools print the file's parameters (-n) and, with -x, their expanded values; the lines of
every parameter both know must be equal. The lines only one prints are listed with why:
mxgate_* and mxgate's other own parameters are unknown to Postfix (postconf leaves them
out, as unused), and Postfix's own (config_directory, which postconf -c adds, biff...) are
not mxgate's. Then -d: the defaults of the shared parameters are Postfix's, except the
deliberate differences mgmt/config_params.c lists in its header comment.

Usage: test_config_postconf.py MXGATE SOURCE_ROOT. Without /usr/sbin/postconf this fails,
naming Debian's postfix package: the oracle must not be skipped.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tool_packages  # noqa: E402  (tests/tool_packages.py)

POSTCONF = "/usr/sbin/postconf"
# config_params.c: "with these deliberate differences" (its header comment)
# (smtpd_timeout, smtpd_hard_error_limit and smtpd_junk_command_limit are not among them
# since mxgate has stress: their ${stress?{..}:{..}} defaults are Postfix's.)
DELIBERATE = {
    "compatibility_level", "mail_name", "mynetworks", "smtpd_forbid_bare_newline",
    "smtpd_forbid_unauth_pipelining", "smtpd_per_request_deadline", "local_recipient_maps",
    "smtpd_relay_restrictions", "data_directory", "postscreen_forbidden_commands",
    "syslog_name",
}
DELIBERATE |= {"mail_owner"}  # mxgate's own user, not Postfix's (dataplane/privdrop.h)

RICH = """\
# A richer main.cf: comments, continuation lines, expansions.
myhostname = mx1.example.com
mydomain = example.com
   # a comment line between entries
mydestination = $myhostname, localhost.$mydomain,
    localhost,
\t${relay_extra?{$relay_extra}:{}}
relay_domains = example.net,   example.org
relay_extra = extra.example
mynetworks = 127.0.0.0/8 [::1]/128
    192.0.2.0/24
smtpd_banner = $myhostname ESMTP $mail_name (gateway)
mail_name = Gateway
smtpd_client_restrictions = permit_mynetworks,
    reject_non_fqdn_helo_hostname
smtpd_recipient_restrictions =
    reject_non_fqdn_recipient,
    reject_unauth_destination
message_size_limit = ${{$compatibility_level} <level {3} ? {1024000} : {20480000}}
header_checks = regexp:/etc/mxgate/header_checks
mime_header_checks = $header_checks
smtpd_timeout = 120s
soft_bounce = no
recipient_delimiter = +
compatibility_level = 3.6
biff = no
append_dot_mydomain = no
readme_directory = no
mxgate_listen = 0.0.0.0:2525 [::]:2525
mxgate_spool_directory = /var/spool/mxgate
"""

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def lines_of(text):
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" =")
        if sep:
            out[name] = value.strip()
    return out


def postfix_knows(name, tmp):
    rc, out, err = run([POSTCONF, "-c", tmp, "-d", name])
    return rc == 0 and out.startswith(name + " =")


def mxgate_knows(mxgate, cf, name):
    rc, out, err = run([mxgate, "config", "-c", cf, "-d", name])
    return rc == 0 and out.startswith(name + " =")


def compare(mxgate, label, text, flags):
    with tempfile.TemporaryDirectory() as tmp:
        cf = os.path.join(tmp, "main.cf")
        with open(cf, "w") as f:
            f.write(text)
        with open(os.path.join(tmp, "master.cf"), "w") as f:
            f.write("")
        past = time.time() - 60  # postconf re-reads a main.cf of this second
        os.utime(cf, (past, past))
        os.utime(os.path.join(tmp, "master.cf"), (past, past))
        rc1, pf, pf_err = run([POSTCONF, "-c", tmp] + flags)
        rc2, mx, mx_err = run([mxgate, "config", "-c", cf] + flags)
        if rc1 != 0 or rc2 != 0:
            fail(f"{label} {flags}: postconf exit {rc1} ({pf_err.strip()}), "
                 f"mxgate config exit {rc2} ({mx_err.strip()})")
            return
        if "-h" in flags:
            # values alone, in name order: pair them with the names of the -n lines
            _, pfn, _ = run([POSTCONF, "-c", tmp] + [x for x in flags if x != "-h"])
            _, mxn, _ = run([mxgate, "config", "-c", cf] + [x for x in flags if x != "-h"])
            pf = "".join(f"{n} = {v}\n" for n, v in zip(lines_of(pfn), pf.splitlines()))
            mx = "".join(f"{n} = {v}\n" for n, v in zip(lines_of(mxn), mx.splitlines()))
        p, m = lines_of(pf), lines_of(mx)
        shared = sorted(set(p) & set(m))
        for name in shared:
            if p[name] != m[name]:
                fail(f"{label} {flags}: {name}: postconf \"{p[name]}\", "
                     f"mxgate \"{m[name]}\"")
        only_mx = sorted(set(m) - set(p))
        for name in only_mx:
            if postfix_knows(name, tmp):
                fail(f"{label} {flags}: {name} is a Postfix parameter that postconf "
                     f"did not print")
        only_pf = sorted(set(p) - set(m))
        why = []
        for name in only_pf:
            if mxgate_knows(mxgate, cf, name):
                fail(f"{label} {flags}: {name} is an mxgate parameter that mxgate config "
                     f"did not print")
            elif name == "config_directory":
                why.append(f"{name} (postconf -c adds it)")
            elif not postfix_knows(name, tmp):
                why.append(f"{name} (user-defined: postconf prints it as a value uses it; "
                           f"mxgate config prints its own parameters)")
            else:
                why.append(f"{name} (a Postfix parameter mxgate does not implement)")
        print(f"{label} {' '.join(flags)}: {len(shared)} shared lines equal; "
              f"mxgate's own: {', '.join(only_mx) or '-'}; Postfix's own: "
              f"{', '.join(why) or '-'}")
        if len(shared) < 5:
            fail(f"{label} {flags}: only {len(shared)} shared lines")


def compare_defaults(mxgate):
    with tempfile.TemporaryDirectory() as tmp:
        cf = os.path.join(tmp, "main.cf")
        with open(cf, "w") as f:
            f.write("compatibility_level = 3.6\n")
        with open(os.path.join(tmp, "master.cf"), "w") as f:
            f.write("")
        past = time.time() - 60
        os.utime(cf, (past, past))
        rc1, pf, _ = run([POSTCONF, "-c", tmp, "-d"])
        rc2, mx, _ = run([mxgate, "config", "-c", cf, "-d"])
        if rc1 != 0 or rc2 != 0:
            fail(f"-d: postconf exit {rc1}, mxgate config exit {rc2}")
            return
        p, m = lines_of(pf), lines_of(mx)
        same = differ = 0
        for name in sorted(set(p) & set(m)):
            if name in DELIBERATE:
                if p[name] == m[name]:
                    fail(f"-d {name}: listed as a deliberate difference, but equal")
                differ += 1
                continue
            same += 1
            if p[name] != m[name]:
                fail(f"-d {name}: postconf \"{p[name]}\", mxgate \"{m[name]}\"")
        print(f"-d: {same} shared defaults equal, {differ} deliberately different "
              f"({', '.join(sorted(DELIBERATE))})")
        if same < 50:
            fail(f"-d: only {same} shared defaults compared")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    mxgate, root = sys.argv[1], sys.argv[2]
    tool_packages.need_tool(POSTCONF)
    with open(os.path.join(root, "deploy", "mxgate.cf.demo")) as f:
        demo = f.read()
    demo = demo.replace("@DEMO@", "/tmp/mxgate-demo").replace("@IFACE@", "mxdemo0") \
               .replace("@CPUS@", "0-1")
    for label, text in (("demo", demo), ("rich", RICH)):
        compare(mxgate, label, text, ["-n"])
        compare(mxgate, label, text, ["-n", "-x"])
        compare(mxgate, label, text, ["-n", "-h"])
    compare_defaults(mxgate)
    # unknown names: postconf's warning, exit 0
    with tempfile.TemporaryDirectory() as tmp:
        cf = os.path.join(tmp, "main.cf")
        with open(cf, "w") as f:
            f.write("myhostname = mx.example.com\n")
        rc, out, err = run([mxgate, "config", "-c", cf, "nosuch", "myhostname"])
        if rc != 0 or out != "myhostname = mx.example.com\n" or \
                "mxgate config: warning: nosuch: unknown parameter" not in err:
            fail(f"unknown name: exit {rc}, out {out!r}, err {err!r}")
        rc, out, err = run([mxgate, "config", "-c", os.path.join(tmp, "none.cf")])
        if rc != 1:
            fail(f"missing file: exit {rc}")
    print(f"{len(failures)} failed" if failures else "config -n, -x, -h, -d: as postconf")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
