"""`mxgate --check` refuses what mxgate cannot honour (issue 12's list), naming the
parameter at its FILE:LINE, and exits non-zero; a clean configuration passes, and so does
each restriction of issue 13 (DNS blocklists without local data, reject_unknown_*,
check_*_mx_access, check_policy_service) when a resolver is configured.

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
    ("smtpd_recipient_restrictions = check_policy_service unix:private/policyd-spf",
     "smtpd_recipient_restrictions", "a relative path is relative to Postfix's queue_directory"),
    ("smtpd_milters = inet:127.0.0.1:8891", "smtpd_milters", "not implemented by mxgate"),
    ("non_smtpd_milters = inet:127.0.0.1:8891", "non_smtpd_milters",
     "not implemented by mxgate"),
    ("content_filter = amavis:[127.0.0.1]:10024", "content_filter",
     "not implemented by mxgate"),
    ("virtual_alias_maps = hash:/etc/postfix/virtual", "virtual_alias_maps",
     "not implemented by mxgate"),
    ("virtual_alias_domains = example.net", "virtual_alias_domains",
     "not implemented by mxgate"),
    ("smtpd_tls_dcert_file = /etc/postfix/dsa.pem", "smtpd_tls_dcert_file",
     "not implemented by mxgate"),
    ("smtpd_sasl_auth_enable = yes", "smtpd_sasl_auth_enable",
     "needs smtpd_sasl_type = dovecot"),
    ("smtpd_recipient_restrictions = reject_unverified_recipient",
     "smtpd_recipient_restrictions", "reject_unverified_recipient is not supported"),
    ("smtpd_recipient_restrictions = permit_mx_backup, reject_unauth_destination",
     "smtpd_recipient_restrictions", "permit_mx_backup is not supported"),
    ("mxgate_dns_servers = resolver.example", "mxgate_dns_servers",
     "is not a numeric address"),
]

# Accepted with a resolver (mxgate_dns_servers), whatever this machine's resolv.conf says.
ACCEPTED = [
    "smtpd_client_restrictions = reject_rbl_client zen.spamhaus.org=127.0.0.[2..11],\n"
    "    permit_dnswl_client list.dnswl.org, reject_rhsbl_client dbl.spamhaus.org,\n"
    "    reject_rhsbl_reverse_client dbl.spamhaus.org, permit_rhswl_client swl.example,\n"
    "    reject_unknown_client_hostname, reject_unknown_reverse_client_hostname,\n"
    "    check_client_mx_access inline:{mx.bad.example=REJECT},\n"
    "    check_reverse_client_ns_access inline:{ns.bad.example=REJECT},\n"
    "    check_client_a_access cidr:/etc/postfix/client_a.cidr",
    "smtpd_helo_restrictions = reject_unknown_helo_hostname, reject_rhsbl_helo dbl.example,\n"
    "    check_helo_mx_access inline:{a=b} check_helo_ns_access inline:{a=b}\n"
    "    check_helo_a_access inline:{a=b}",
    "smtpd_sender_restrictions = reject_unknown_sender_domain, reject_rhsbl_sender dbl.example\n"
    "    check_sender_mx_access inline:{a=b} check_sender_ns_access inline:{a=b}\n"
    "    check_sender_a_access inline:{a=b}",
    "smtpd_recipient_restrictions = reject_unauth_destination,\n"
    "    reject_unknown_recipient_domain, reject_rhsbl_recipient dbl.example,\n"
    "    check_recipient_mx_access inline:{a=b} check_recipient_ns_access inline:{a=b}\n"
    "    check_recipient_a_access inline:{a=b},\n"
    "    check_policy_service inet:127.0.0.1:10023,\n"
    "    check_policy_service unix:/var/spool/postfix/private/policyd-spf,\n"
    "    check_policy_service { inet:127.0.0.1:9998, timeout=10s, max_idle=20s, max_ttl=60s,\n"
    "      retry_delay=2s, try_limit=3, request_limit=10, policy_context=x,\n"
    "      { default_action = DEFER_IF_PERMIT policy server down } }",
    "rbl_reply_maps = inline:{ {zen.spamhaus.org=127.0.0.[2..11]=$rbl_code blocked} }\n"
    "unknown_client_reject_code = 550\nunknown_hostname_reject_code = 550\n"
    "unknown_address_reject_code = 550\nreject_tempfail_action = defer\n"
    "smtpd_policy_service_timeout = 5s\nsmtpd_policy_service_default_action = DUNNO\n"
    "smtpd_client_restrictions = reject_rbl_client zen.spamhaus.org=127.0.0.[2..11]",
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
        for add in ACCEPTED:
            rc, out, path = check(mxgate, base + "mxgate_dns_servers = 127.0.0.1\n" + add + "\n",
                                  d)
            if rc != 0:
                print(f"FAIL: not accepted:\n{add}\n{out}")
                failures += 1
            else:
                print(f"ok: accepted: {add.splitlines()[0][:100]}")
    print(f"{len(CASES) + len(ACCEPTED) - failures} of {len(CASES) + len(ACCEPTED)} as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
