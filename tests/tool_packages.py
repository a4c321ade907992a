"""The Debian package behind every program, file and Python module mxgate's tests use, and
the checks that fail a test, naming that package, when one is missing.

The rule (issue 12): every package the build, a test or the demo uses comes from
deploy/install-deps.sh, and a test that lacks a tool FAILS with the name of the package to
add; CI never goes green by skipping for a missing package. A test may still skip (exit 77)
for what no package gives: not running as root, a kernel that refuses a namespace.

Each entry was checked with `dpkg -S` on Debian 12. tests/test_packages.py checks that every
package named here is one deploy/install-deps.sh installs, and that dpkg agrees with the
table wherever the file is installed. A test asking for a tool that is not in the table is
a bug in the test (KeyError): add the tool here, with its package, first.

Python 3 standard library only; imported by tests/e2e/mxtest.py and by the Python tests
under tests/unit/ (which put tests/ on sys.path).
"""

import os
import shutil
import subprocess
import sys

# Program (by name, looked up on PATH and in the sbin directories) or file (by absolute
# path) -> the Debian package deploy/install-deps.sh installs for it.
TOOLS = {
    "swaks": "swaks",
    # Postfix as a peer and as the oracle
    "/usr/sbin/postfix": "postfix",
    "/usr/sbin/postmap": "postfix",
    "/usr/sbin/postconf": "postfix",
    "/usr/sbin/postcat": "postfix",
    "/usr/sbin/postqueue": "postfix",
    "/usr/sbin/sendmail": "postfix",
    "/usr/sbin/smtp-source": "postfix",
    "/usr/sbin/smtp-sink": "postfix",
    "/usr/lib/postfix/sbin/postscreen": "postfix",
    "/usr/lib/postfix/sbin/dnsblog": "postfix",
    # pcre: tables in Postfix (its dict_open loads this module for pcre:)
    "/usr/lib/postfix/postfix-pcre.so": "postfix-pcre",
    "/usr/sbin/rbldnsd": "rbldnsd",
    # a recursive resolver with local zones, and a greylisting policy server, for the DNS
    # and policy tests
    "/usr/sbin/unbound": "unbound",
    "/usr/sbin/hping3": "hping3",  # perf/screen/bench_screen.py: the SYN flood
    "/usr/bin/perf": "linux-perf",  # perf/screen/bench_screen.py: where the CPU goes
    "/usr/sbin/postgrey": "postgrey",
    # a shared cache for the memcache: dict (memcache_table(5))
    "/usr/bin/memcached": "memcached",
    "/usr/sbin/unbound-checkconf": "unbound",
    # the SPF policy server of the tutorials, and socat to serve it over TCP
    "/usr/bin/policyd-spf": "postfix-policyd-spf-python",
    "socat": "socat",
    # a load balancer sending the PROXY protocol
    "/usr/sbin/haproxy": "haproxy",
    "/usr/sbin/dovecot": "dovecot-core",
    # the metrics endpoint's scrape checked by Prometheus's own linter, and DPDK telemetry
    # read with DPDK's client (tests/e2e/test_metrics.py)
    "promtool": "prometheus",
    "/usr/bin/prometheus": "prometheus",  # tests/e2e/test_dashboard.py: a private server
    "dpdk-telemetry.py": "dpdk-dev",
    # namespaces and the DPDK tests' client side
    "ip": "iproute2",
    "ethtool": "ethtool",
    "sysctl": "procps",
    "ping": "iputils-ping",
    "hping3": "hping3",
    "tcpdump": "tcpdump",
    # fault injection: fiu-run -x preloads libfiu's POSIX wrappers
    "fiu-run": "fiu-utils",
    "fiu-ctrl": "fiu-utils",
    "/usr/lib/fiu/fiu_posix_preload.so": "libfiu0",
    # Debian's Python, the one python3-scapy is installed for (meson may run the tests
    # with another python3 found first on PATH)
    "/usr/bin/python3": "python3",
    # TLS: test certificates and the s_client of tests/e2e/test_tls.py
    "openssl": "openssl",
    # the log summariser postmasters run on Postfix's log (tests/e2e/test_pflogsumm.py)
    "/usr/sbin/pflogsumm": "pflogsumm",
    # unprivileged running (tests/e2e/test_privdrop.py): tools run as mail_owner
    "setpriv": "util-linux",
    # the man pages' lint (tests/man/test_man.py)
    "groff": "groff-base",
    # the systemd unit in a container (tests/e2e/test_systemd.py)
    "systemd-nspawn": "systemd-container",
    "/lib/systemd/systemd": "systemd",
}

# Where dpkg names another package as the file's owner than the one installed for it: the
# installed one depends on the owner.
DPKG_OWNER = {
    "/usr/bin/python3": "python3-minimal",
}

# Python module (imported by /usr/bin/python3) -> Debian package.
PYTHON_MODULES = {
    "scapy": "python3-scapy",
    "matplotlib": "python3-matplotlib",  # deploy/grafana/render_dashboard.py
}

# Perl module -> Debian package, and the modules a tool needs for what the tests use of it:
# swaks talks to IPv6 servers only with IO::Socket::INET6, one of its Recommends (which
# deploy/install-deps.sh does not install: --no-install-recommends). swaks --tls needs
# Net::SSLeay (tests/e2e/test_tls.py and test_auth.py ask for it); the tests use swaks's
# AUTH PLAIN and LOGIN, which it does itself (only CRAM-MD5 and the like need
# Authen::SASL), and no MX lookup (Net::DNS).
PERL_MODULES = {
    "IO::Socket::INET6": "libio-socket-inet6-perl",
    "Net::SSLeay": "libnet-ssleay-perl",
}
TOOL_PERL_MODULES = {
    "swaks": ["IO::Socket::INET6"],
}

# The build's pkg-config modules (meson.build's dependency() calls) -> Debian -dev package.
# meson fails on a missing required one by itself; libdpdk is optional there (without it
# the dpdk transport and its tests are silently left out), so tests/test_packages.py
# checks them all.
PKG_CONFIG = {
    "libdpdk": "libdpdk-dev",
    "openssl": "libssl-dev",
    "libhs": "libhyperscan-dev",
    "lmdb": "liblmdb-dev",
    "libpcre2-8": "libpcre2-dev",
    "jemalloc": "libjemalloc-dev",
}

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def package_of(tool):
    """The Debian package of a TOOLS entry (KeyError, naming this file, for an unknown
    one: a test must not ask for a tool nobody mapped to its package)."""
    if tool not in TOOLS:
        raise KeyError(f"{tool!r} is not in tests/tool_packages.py's TOOLS: add it with "
                       "the Debian package `dpkg -S` names for it")
    return TOOLS[tool]


def find_tool(tool):
    """The path of a TOOLS entry on this machine, or None. Names are looked up on PATH,
    as the tests run them."""
    package_of(tool)
    if tool.startswith("/"):
        return tool if os.path.exists(tool) else None
    return shutil.which(tool)


def off_path(tool):
    """Where a program missing from PATH is installed all the same (a non-root PATH
    often lacks the sbin directories), or None."""
    if tool.startswith("/"):
        return None
    return shutil.which(tool, path=os.pathsep.join(_SBIN))


def missing_message(what, package):
    return (f"{what} is missing: install Debian package '{package}' "
            "(deploy/install-deps.sh installs it)")


def fail_missing(what, package):
    """Fail the test (exit 1, never 77) naming the package to install."""
    print("FAIL: " + missing_message(what, package), flush=True)
    sys.exit(1)


def perl_module_error(module):
    """None when perl loads `module`, else the first line of its error."""
    r = subprocess.run(["perl", f"-M{module}", "-e", "1"], capture_output=True, text=True)
    if r.returncode == 0:
        return None
    lines = r.stderr.strip().splitlines()
    return lines[0] if lines else f"exit {r.returncode}"


def need_tool(tool):
    """Return the tool's path; fail the test, naming its package, when it or a Perl
    module it needs (TOOL_PERL_MODULES) is missing."""
    path = find_tool(tool)
    if path is None:
        elsewhere = off_path(tool)
        if elsewhere is not None:
            print(f"FAIL: {tool} is installed ({elsewhere}) but not on PATH, which the "
                  f"tests run it from: add {os.path.dirname(elsewhere)} to PATH", flush=True)
            sys.exit(1)
        fail_missing(tool, package_of(tool))
    for module in TOOL_PERL_MODULES.get(tool, ()):
        err = perl_module_error(module)
        if err is not None:
            fail_missing(f"Perl module {module}, which {tool} needs ({err})",
                         PERL_MODULES[module])
    return path


def python_module_error(python, module):
    """None when `python` imports `module`, else the last line of its error."""
    r = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    if r.returncode == 0:
        return None
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {r.returncode}"


def need_python_module(module, python="/usr/bin/python3"):
    """Fail the test, naming the package, unless `python` (Debian's by default) imports
    `module` (a PYTHON_MODULES key)."""
    package = PYTHON_MODULES[module]
    need_tool(python)
    err = python_module_error(python, module)
    if err is not None:
        fail_missing(f"Python module {module} for {python} ({err})", package)


def need_postfix_pcre():
    """postmap and Postfix's daemons open pcre: tables through postfix-pcre."""
    need_tool("/usr/sbin/postmap")
    need_tool("/usr/lib/postfix/postfix-pcre.so")
