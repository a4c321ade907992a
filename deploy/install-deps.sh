#!/usr/bin/env bash
# Install every Debian 12 package mxgate's build, tests, demo and perf/ need. Idempotent:
# packages already present are left alone, and apt is not touched at all when nothing is
# missing. Run as root. A test that lacks one of them fails, naming it
# (tests/tool_packages.py maps each tool to its package; tests/test_packages.py checks that
# every package named there is listed here and installed).
set -euo pipefail

packages=(
	# build
	build-essential meson ninja-build pkg-config
	libdpdk-dev libhyperscan-dev liblmdb-dev libjemalloc-dev libpcre2-dev libssl-dev
	# fuzzing (libFuzzer ships in clang's runtime package)
	clang libclang-rt-14-dev llvm
	# tests and demo: real SMTP clients and Postfix as a peer and oracle (swaks needs
	# IO::Socket::INET6 for IPv6 servers; Recommends are not installed)
	swaks libio-socket-inet6-perl postfix postfix-pcre python3 iproute2 procps lmdb-utils
	# fault injection into the spool's write(2)/fdatasync(2) (tests/e2e/test_faults.py):
	# fiu-run, fiu-ctrl and libfiu's POSIX preload library
	fiu-utils libfiu0
	# a local DNS blocklist server for Postfix's reject_rbl_client in the differential
	# policy tests (tests/e2e/test_policy_diff.py serves the same zones to both servers)
	rbldnsd
	# a real policy server for check_policy_service (tests/unit/dataplane/svc/
	# test_policy_postgrey.c greylists through it; the package's own daemon is not used),
	# and the oracle of check_greylist (tests/unit/tables/test_greylist_postgrey.c; its
	# /etc/postgrey allowlists load in tests/unit/tables/test_greylist.c)
	postgrey
	# policyd-spf, the SPF policy server of the tutorials, run through socat as a TCP
	# check_policy_service (tests/e2e/test_dns.py)
	postfix-policyd-spf-python socat
	# a real recursive resolver with local zones for the resolver service's tests and
	# benchmark (tests/unit/dataplane/svc/test_resolver_unbound.c, perf/resolver/)
	unbound
	# a real load balancer in front, sending the PROXY protocol (tests/e2e/test_proxy.py)
	haproxy
	# a real Dovecot auth server for the SASL service (tests/e2e/test_sasl_dovecot.py through
	# tests/e2e/dovecotenv.py, a private instance; the package's own daemon is not used)
	dovecot-core
	# perf: the disk's own fdatasync rate beside the spool's group commit; git for the
	# commit perf/hostile/bench_hostile.py stamps on its report
	fio git
	# perf: where the dpdk gateway's CPU goes under attack (perf/screen/bench_screen.py)
	linux-perf
	# the DPDK dataplane's namespace tests (tests/e2e/test_dpdk*.py): a SYN flood, a storm of
	# malformed frames (scapy for Debian's /usr/bin/python3), ethtool to turn off the client
	# veth's TX checksum offload, ping (v4 and v6), tcpdump for packet traces on failure
	hping3 python3-scapy ethtool tcpdump iputils-ping
	# a real memcached for the memcache: dict (memcache_table(5)): shared state, and the
	# backup taking over while it is down (tests/unit/dataplane/svc/test_dict_memcache.c)
	memcached
	# TLS (tests/e2e/test_tls.py): openssl makes the test certificates and is a client
	# (s_client -starttls smtp); swaks --tls needs Net::SSLeay
	openssl libnet-ssleay-perl
	# metrics (tests/e2e/test_metrics.py): promtool checks a scrape of the Prometheus
	# endpoint (package prometheus), dpdk-telemetry.py reads the same registry over DPDK
	# telemetry (package dpdk-dev)
	prometheus dpdk-dev
	# pflogsumm, the log summariser postmasters run on Postfix's log: it reads the gateway's
	# maillog_file and syslog lines (tests/e2e/test_pflogsumm.py)
	pflogsumm
	# unprivileged running (tests/e2e/test_privdrop.py): adduser makes the mail_owner user
	# below, setpriv runs mxgate-queue as it; the man pages' lint (tests/man/test_man.py:
	# groff -man -ww -z)
	adduser util-linux groff-base
	# the systemd unit started, reloaded and stopped by a systemd in a container booted on
	# the host's own tree (tests/e2e/test_systemd.py: systemd-nspawn)
	systemd systemd-container
	# the Grafana dashboard's picture (deploy/grafana/render_dashboard.py draws its panels
	# from a real run's Prometheus answers: Grafana itself is not packaged for Debian)
	python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

# The user the gateway runs as after start-up (mail_owner's default, as Postfix has its
# postfix user); the e2e tests' gateways run as it too. No home, no login shell.
mxgate_user() {
	if ! getent passwd mxgate >/dev/null; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "install-deps: the mxgate user is missing; run this script as root" >&2
			return 1
		fi
		if command -v adduser >/dev/null; then
			adduser --system --group --no-create-home --home /nonexistent \
				--shell /usr/sbin/nologin mxgate >/dev/null
		else
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin mxgate
		fi
		echo "install-deps: created the system user mxgate (mail_owner)"
	fi
}

# Haraka, the Node.js MTA, as a peer of the side-by-side benchmark (perf/side_by_side.py)
# and its CI smoke test (tests/e2e/test_side_by_side.py). It is not a Debian package: npm
# installs the version pinned by perf/peers/haraka/package-lock.json into
# perf/peers/haraka/node_modules (bin: node_modules/.bin/haraka). Node.js (20) and npm come
# with the machine image; Debian's nodejs package is not used.
# Optional dependencies (plugins we do not load, some native) are left out. Idempotent: npm ci
# runs only when the lock file changed since the last install (a hash kept beside it).
# Without Node.js 20 and npm, or when npm ci fails, only a warning: the demo and everything
# but that benchmark work without it, and e2e-side-by-side fails saying what is missing.
haraka_peer() {
	local dir stamp want
	dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/perf/peers/haraka"
	stamp="$dir/node_modules/.mxgate-lock-sha256"
	want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
		[ -x "$dir/node_modules/.bin/haraka" ]; then
		return 0
	fi
	if ! command -v npm >/dev/null; then
		echo "install-deps: warning: Haraka (perf/peers/haraka, the side-by-side benchmark's" \
			"peer) needs Node.js 20 or later and npm, which Debian 12 does not package:" \
			"not installed" >&2
		return 0
	fi
	echo "install-deps: npm ci in $dir (Haraka)"
	if ! (cd "$dir" && npm ci --omit=optional --no-audit --no-fund --loglevel=error); then
		echo "install-deps: warning: npm ci failed in $dir: Haraka is not installed" >&2
		return 0
	fi
	echo "$want" >"$stamp"
}

if [ ${#missing[@]} -eq 0 ]; then
	mxgate_user
	haraka_peer
	echo "install-deps: all ${#packages[@]} packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks which kind of mail system to set up; mxgate only uses its binaries (as a test
# peer and oracle), so it gets no system configuration and no running daemon.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
mxgate_user
haraka_peer
