#!/usr/bin/env bash
# README command 1: install what is missing, build (release), start mxgate, send it one
# message with swaks, and show what was spooled. Run as root from the repository.
#
#   bash deploy/demo.sh                               the dpdk transport (default): DPDK's
#        net_af_packet on a veth pair, the client in the network namespace "mxdemo"
#        (10.77.0.1, fd77::1), the gateway at 10.77.0.2 and fd77::2 port 25
#   MXGATE_DEMO_TRANSPORT=kernel bash deploy/demo.sh  the kernel transport (Linux sockets)
#        on 127.0.0.1:2525 and [::1]:2525 (MXGATE_DEMO_PORT changes the port)
#   bash deploy/demo.sh stop                          stop the gateway, remove the namespace
#
# Spool, log and config go under ./demo/. Safe to run again: a previous demo gateway is
# stopped first and the namespace is recreated. MXGATE_DEMO_BUILD_DIR (default
# build-release) picks the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo=$root/demo
transport=${MXGATE_DEMO_TRANSPORT:-dpdk}
port=${MXGATE_DEMO_PORT:-2525}
build=${MXGATE_DEMO_BUILD_DIR:-build-release}
ns=mxdemo
gw_if=mxdemo-gw   # root namespace end: DPDK's af_packet port, no IP address, no IPv6
cl_if=mxdemo-cl   # the client's end, inside the namespace
dpdk_prefix=mxdemo
dpdk_runtime=/var/run/dpdk/$dpdk_prefix

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: run as root (packages, network namespaces, DPDK)" >&2
	exit 1
fi

demo_pid() { # the pid of a running demo gateway, or nothing
	local pid
	[ -f "$demo/mxgate.pid" ] || return 0
	pid=$(cat "$demo/mxgate.pid")
	# only a live mxgate: the pid may have been reused since
	case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
	*/mxgate | */mxgate\ \(deleted\)) echo "$pid" ;;
	esac
}

stop_previous() {
	local pid
	pid=$(demo_pid)
	if [ -n "$pid" ]; then
		echo "== stopping the previous demo gateway (pid $pid)"
		kill -TERM "$pid"
		for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			echo "   it did not stop within 20 s of SIGTERM; killing it"
			kill -KILL "$pid"
			sleep 0.5
		fi
	fi
	rm -f "$demo/mxgate.pid"
	# DPDK's runtime files (per --file-prefix) outlive the process
	rm -rf "$dpdk_runtime"
}

remove_netns() {
	ip netns del "$ns" 2>/dev/null || true   # takes the client end of the veth with it
	ip link del "$gw_if" 2>/dev/null || true
}

if [ "${1:-}" = stop ]; then
	stop_previous
	remove_netns
	echo "== the demo gateway is stopped and the namespace $ns removed"
	exit 0
fi

case "$transport" in
dpdk | kernel) ;;
*) echo "demo.sh: MXGATE_DEMO_TRANSPORT must be dpdk or kernel, not '$transport'" >&2; exit 1 ;;
esac

bash deploy/install-deps.sh

echo "== building (release) into $build/"
if [ -f "$build/build.ninja" ]; then
	meson setup --reconfigure "$build" -Dbuildtype=release >/dev/null
else
	meson setup "$build" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null
case "$build" in /*) bdir=$build ;; *) bdir=$root/$build ;; esac
mxgate=$bdir/dataplane/mxgate
spoolcat=$bdir/dataplane/mxgate-spoolcat
queue=$bdir/dataplane/mxgate-queue

stop_previous
mkdir -p "$demo"
# After start-up the gateway runs as mail_owner, the user mxgate that install-deps.sh made
# (mxgate(8)): it reads this directory's configuration again on a reload.
chmod 0755 "$demo"

if [ "$transport" = dpdk ]; then
	echo "== network namespace $ns: $cl_if 10.77.0.1/24 fd77::1/64 <-veth-> $gw_if (DPDK)"
	remove_netns
	ip netns add "$ns"
	ip link add "$gw_if" type veth peer name "$cl_if" netns "$ns"
	# The gateway's addresses belong to DPDK, not to the kernel: the root end gets no
	# address, and no IPv6 (which would answer neighbour solicitations and send router
	# solicitations of its own). af_packet needs the link up.
	sysctl -q -w "net.ipv6.conf.$gw_if.disable_ipv6=1"
	ip link set "$gw_if" up
	ip netns exec "$ns" ip link set lo up
	ip netns exec "$ns" ip addr add 10.77.0.1/24 dev "$cl_if"
	ip netns exec "$ns" ip -6 addr add fd77::1/64 dev "$cl_if" nodad
	ip netns exec "$ns" ip link set "$cl_if" up
	# Without this the client's kernel hands veth TCP segments with the checksum left for
	# the "hardware" (CHECKSUM_PARTIAL); af_packet passes them on as they are, and the
	# gateway's stack rightly drops them as bad. Turning TX checksumming off also turns
	# off TSO, so no 64 KB super-segments reach the gateway either.
	ip netns exec "$ns" ethtool -K "$cl_if" tx off >/dev/null
	# the lcores float over every online CPU ("0-1", "0-15", "0,2-5": DPDK's CPU set syntax)
	cpus=$(cat /sys/devices/system/cpu/online)
	sed -e "s|@DEMO@|$demo|g" -e "s|@IFACE@|$gw_if|g" -e "s|@CPUS@|$cpus|g" \
		deploy/mxgate.cf.demo > "$demo/mxgate.cf"
	server=10.77.0.2
	client=(ip netns exec "$ns")
	where="10.77.0.2:25 and [fd77::2]:25 (DPDK net_af_packet on $gw_if; clients in namespace $ns)"
else
	remove_netns   # a dpdk demo's namespace is of no use to this one
	listen="127.0.0.1:$port"
	if ip -6 addr show lo 2>/dev/null | grep -q '::1'; then listen="$listen, [::1]:$port"; fi
	sed -e "s|@DEMO@|$demo|g" -e "s|@LISTEN@|$listen|g" deploy/mxgate.cf.demo-kernel \
		> "$demo/mxgate.cf"
	server=127.0.0.1:$port
	client=()
	where=$listen
fi

"$mxgate" --check -c "$demo/mxgate.cf"
echo "== starting ($transport transport): $mxgate -c $demo/mxgate.cf"
nohup "$mxgate" -c "$demo/mxgate.cf" >"$demo/stderr" 2>&1 &
echo $! > "$demo/mxgate.pid"

# Wait for the greeting, from where the client is (the namespace for dpdk): a connect
# alone proves little.
host=${server%:*}
tcp_port=25
[ "$transport" = kernel ] && tcp_port=$port
greeted=
for _ in $(seq 300); do
	if "${client[@]}" timeout 2 bash -c \
		"exec 3<>/dev/tcp/$host/$tcp_port && read -r -t 1 line <&3 && [[ \$line == 220* ]] && printf 'QUIT\\r\\n' >&3" \
		2>/dev/null; then
		greeted=1
		break
	fi
	if ! kill -0 "$(cat "$demo/mxgate.pid")" 2>/dev/null; then
		echo "mxgate did not start:"; cat "$demo/stderr"; exit 1
	fi
	sleep 0.1
done
if [ -z "$greeted" ]; then
	echo "mxgate runs but sent no greeting within 30 s; see $demo/stderr and $demo/maillog"
	exit 1
fi

echo "== sending one message with swaks"
swaks_out=$("${client[@]}" swaks --server "$server" --from newcomer@example.org \
	--to postmaster@demo.example --header "Subject: hello mxgate" \
	--body "My first message through mxgate.") || true
echo "$swaks_out" | sed 's/^/   /'
queue_id=$(echo "$swaks_out" | sed -n 's/.*250 2.0.0 Ok: queued as \([0-9A-Za-z]*\).*/\1/p')
if [ -z "$queue_id" ]; then
	echo "the message was not accepted; see $demo/maillog and $demo/stderr"; exit 1
fi

echo "== spooled as $queue_id (mxgate-spoolcat: envelope, then the message):"
"$spoolcat" "$demo/spool" "$queue_id" | sed 's/^/   /'

pid=$(cat "$demo/mxgate.pid")
if [ "$transport" = dpdk ]; then
	cat <<MSG

mxgate is running on the dpdk transport (pid $pid) on $where.
  send mail:      ip netns exec $ns swaks --server 10.77.0.2 --to someone@demo.example
  over IPv6:      ip netns exec $ns swaks --server fd77::2 --to someone@demo.example
  see it refuse:  ip netns exec $ns swaks --server 10.77.0.2 --to someone@example.net   (454 4.7.1 Relay access denied)
  ping it:        ip netns exec $ns ping -c 3 10.77.0.2       (DPDK answers ARP, ND and ping)
  statistics:     kill -USR1 $pid; grep statistics $demo/maillog
  the queue:      $queue -c $demo/mxgate.cf list   (also show, hold, release, delete)
  list the spool: $spoolcat -l $demo/spool      log: $demo/maillog
  config:         $demo/mxgate.cf          (Postfix main.cf syntax; deploy/mxgate.cf.example documents it)
  stop:           bash deploy/demo.sh stop   (stops mxgate, removes namespace $ns and $dpdk_runtime)
  kernel instead: MXGATE_DEMO_TRANSPORT=kernel bash deploy/demo.sh   (127.0.0.1:$port, no namespace)
MSG
else
	cat <<MSG

mxgate is running on the kernel transport (pid $pid) on $where.
  send mail:      swaks --server 127.0.0.1:$port --to someone@demo.example
  see it refuse:  swaks --server 127.0.0.1:$port --to someone@example.net   (454 4.7.1 Relay access denied)
  the queue:      $queue -c $demo/mxgate.cf list   (also show, hold, release, delete)
  list the spool: $spoolcat -l $demo/spool      log: $demo/maillog
  config:         $demo/mxgate.cf          (Postfix main.cf syntax; deploy/mxgate.cf.example documents it)
  stop:           bash deploy/demo.sh stop   (or: kill $pid)
  dpdk instead:   bash deploy/demo.sh
MSG
fi
