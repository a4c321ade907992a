#!/usr/bin/env bash
# README command 1: install what is missing, build, start mxgate on an embedded default
# (kernel transport on 127.0.0.1:2525 and [::1]:2525, spool and log under ./demo/), send it
# one message with swaks, and show what was spooled. Safe to run again: a previous demo
# gateway is stopped first. Run as root from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
demo=$root/demo
port=${MXGATE_DEMO_PORT:-2525}

bash deploy/install-deps.sh

echo "== building (release) into build-release/"
if [ -f build-release/build.ninja ]; then
	meson setup --reconfigure build-release -Dbuildtype=release >/dev/null
else
	meson setup build-release -Dbuildtype=release >/dev/null
fi
ninja -C build-release >/dev/null
mxgate=$root/build-release/dataplane/mxgate
spoolcat=$root/build-release/dataplane/mxgate-spoolcat

if [ -f "$demo/mxgate.pid" ] && kill -0 "$(cat "$demo/mxgate.pid")" 2>/dev/null; then
	echo "== stopping the previous demo gateway"
	kill -TERM "$(cat "$demo/mxgate.pid")"
	for _ in $(seq 50); do kill -0 "$(cat "$demo/mxgate.pid")" 2>/dev/null || break; sleep 0.1; done
fi

mkdir -p "$demo"
listen="127.0.0.1:$port"
if ip -6 addr show lo 2>/dev/null | grep -q '::1'; then listen="$listen, [::1]:$port"; fi
sed -e "s|@DEMO@|$demo|g" -e "s|@LISTEN@|$listen|g" deploy/mxgate.cf.demo > "$demo/mxgate.cf"

"$mxgate" --check -c "$demo/mxgate.cf"
echo "== starting: $mxgate -c $demo/mxgate.cf"
nohup "$mxgate" -c "$demo/mxgate.cf" >"$demo/stderr" 2>&1 &
echo $! > "$demo/mxgate.pid"

for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	if ! kill -0 "$(cat "$demo/mxgate.pid")" 2>/dev/null; then
		echo "mxgate did not start:"; cat "$demo/stderr"; exit 1
	fi
	sleep 0.1
done

echo "== sending one message with swaks"
swaks_out=$(swaks --server "127.0.0.1:$port" --from newcomer@example.org --to postmaster@demo.example \
	--header "Subject: hello mxgate" --body "My first message through mxgate.")
echo "$swaks_out" | sed 's/^/   /'
queue_id=$(echo "$swaks_out" | sed -n 's/.*250 2.0.0 Ok: queued as \([0-9A-Za-z]*\).*/\1/p')
if [ -z "$queue_id" ]; then
	echo "the message was not accepted; see $demo/maillog"; exit 1
fi

echo "== spooled as $queue_id (mxgate-spoolcat: envelope, then the message):"
"$spoolcat" "$demo/spool" "$queue_id" | sed 's/^/   /'

cat <<MSG

mxgate is running (pid $(cat "$demo/mxgate.pid")) on $listen.
  send mail:      swaks --server 127.0.0.1:$port --to someone@demo.example
  see it refuse:  swaks --server 127.0.0.1:$port --to someone@example.net   (554 Relay access denied)
  list the spool: $spoolcat -l $demo/spool      log: $demo/maillog
  config:         $demo/mxgate.cf          (Postfix main.cf syntax; deploy/mxgate.cf.example documents it)
  stop:           kill \$(cat $demo/mxgate.pid)
MSG
