"""`mxgate --check` refuses what mxgate cannot honour (issue 12's list), naming the
parameter at its FILE:LINE, and exits non-zero; a clean configuration passes.

    test_check_refusals.py MXGATE
"""

import os
import re
import subprocess
import sys
import tempfile

BASE = """myhostname = mx.test.example
mydestination = $myhostname, localhost
mynetworks = 127.0.0.0/8
mxgate_listen = 127.0.0.1:2525
mxgate_spool_directory = {dir}/spool
mxgate_table_directory = {dir}/tables
"""

# (line to add, parameter the message must name, what the message must say)
CASES = [
    ("smtpd_milters = inet:127.0.0.1:8891", "smtpd_milters", "not implemented by mxgate"),
    ("non_smtpd_milters = inet:127.0.0.1:8891", "non_smtpd_milters",
     "not implemented by mxgate"),
    ("content_filter = amavis:[127.0.0.1]:10024", "content_filter",
     "not implemented by mxgate"),
    ("virtual_alias_maps = hash:/etc/postfix/virtual", "virtual_alias_maps",
     "not implemented by mxgate"),
    ("virtual_alias_domains = example.net", "virtual_alias_domains",
     "not implemented by mxgate"),
    ("smtpd_tls_security_level = encrypt", "smtpd_tls_security_level",
     "not implemented by mxgate"),
    ("smtpd_sasl_auth_enable = yes", "smtpd_sasl_auth_enable", "not implemented by mxgate"),
    ("smtpd_client_restrictions = reject_rbl_client zen.spamhaus.org",
     "smtpd_client_restrictions", "zen.spamhaus.org has no local data"),
    ("smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023",
     "smtpd_recipient_restrictions", "check_policy_service"),
]


def check(mxgate, text, d):
    path = os.path.join(d, "mxgate.cf")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([mxgate, "--check", "-c", path], capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr, path


def main():
    mxgate = sys.argv[1]
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        base = BASE.format(dir=d)
        rc, out, _ = check(mxgate, base, d)
        if rc != 0:
            print(f"FAIL: the base configuration does not pass --check:\n{out}")
            return 1
        line = base.count("\n") + 1
        for add, param, words in CASES:
            rc, out, path = check(mxgate, base + add + "\n", d)
            want = re.compile(rf"{re.escape(path)}:{line}: .*{re.escape(param)}")
            if rc == 0 or not want.search(out) or words not in out:
                print(f"FAIL: {add!r}: exit {rc}, expected non-zero and "
                      f"'{path}:{line}: ... {param} ... {words}':\n{out}")
                failures += 1
            else:
                print(f"ok: {add!r} refused: {out.splitlines()[0][:140]}")
    print(f"{len(CASES) - failures} of {len(CASES)} refusals as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
