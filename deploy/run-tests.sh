#!/usr/bin/env bash
# Install what is missing, build, and run mxgate's whole test suite. Run as root from the
# repository (README command 2; .ci/run runs exactly this). Four builds:
#   build-test     debug, ASan+UBSan, -Werror: every unit, golden, corpus and e2e test
#   build-release  release, -Werror: must compile cleanly at -O2 (different warnings)
#   build-nodpdk   -Ddpdk=disabled: the gateway without DPDK (kernel transport) compiles
#   build-fuzz     clang + libFuzzer: each harness fuzzes for MXGATE_FUZZ_SECONDS (20;
#                longer campaigns are run by hand: see tests/fuzz/meson.build)
# The last line is "N passed, N failed[, N skipped]"; the exit status is non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)

passed=0 failed=0 skipped=0
failures=()

note_result() { # name status(0=pass,77=skip,else fail)
	case "$2" in
	0) passed=$((passed + 1)) ;;
	77) skipped=$((skipped + 1)) ;;
	*) failed=$((failed + 1)); failures+=("$1") ;;
	esac
}

summary() {
	echo
	if [ ${#failures[@]} -gt 0 ]; then
		printf 'failed: %s\n' "${failures[@]}"
	fi
	if [ "$skipped" -gt 0 ]; then
		echo "$passed passed, $failed failed, $skipped skipped"
	else
		echo "$passed passed, $failed failed"
	fi
	[ "$failed" -eq 0 ]
	exit $?
}

step() { # name command...: a build step counts as one test
	local name=$1; shift
	echo "== $name"
	"$@"
	local rc=$?
	[ $rc -eq 0 ] || echo "!! $name failed ($rc)"
	note_result "$name" $rc
	return $rc
}

setup() { # dir meson-args...
	local dir=$1; shift
	if [ -f "$dir/build.ninja" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

# Count meson's per-test results from its JSON log (one object per line).
count_meson_log() { # dir
	local log=$1/meson-logs/testlog.json
	[ -f "$log" ] || return 0
	local counts
	counts=$(python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
names = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    t = json.loads(line)
    r = t.get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
        names.append(t.get("name", "?"))
print(p, f, s, " ".join(n.replace(" ", "_") for n in names))
PY
)
	read -r p f s names <<<"$counts"
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
	for n in $names; do failures+=("$n"); done
}

step "install-deps" bash deploy/install-deps.sh || summary

# 1. Debug + sanitizers: the whole suite.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if step "build-test (debug, ASan+UBSan, -Werror)" bash -c \
	"$(declare -f setup); setup build-test -Dbuildtype=debug -Db_sanitize=address,undefined -Dwerror=true && ninja -C build-test"; then
	echo "== meson test (build-test)"
	meson test -C build-test --num-processes 2 --print-errorlogs
	count_meson_log build-test
fi

# 2. Release: compiles cleanly with optimisation warnings as errors, and the sessions work
#    as the optimiser and the allocator leave memory: a few e2e tests on the release binary
#    (a variable left uninitialised once held zero in the sanitizer build, garbage here).
if step "build-release (-O2, -Werror)" bash -c \
	"$(declare -f setup); setup build-release -Dbuildtype=release -Dwerror=true && ninja -C build-release"; then
	echo "== meson test (build-release: sessions on the release binary)"
	meson test -C build-release --num-processes 1 --print-errorlogs \
		e2e-policy e2e-stress-kernel e2e-anvil-kernel e2e-dns-kernel
	count_meson_log build-release
fi

# 3. Without DPDK: the kernel transport, the tools and the tests that need no DPDK build
#    with -Ddpdk=disabled (a machine without libdpdk builds the same way).
step "build-nodpdk (kernel transport only, -Werror)" bash -c \
	"$(declare -f setup); setup build-nodpdk -Dbuildtype=debug -Ddpdk=disabled -Dwerror=true && ninja -C build-nodpdk"

# 4. libFuzzer: every harness fuzzes for a bounded time, starting from its corpus. clang
#    comes from install-deps.sh: without it this step fails (naming the package) rather
#    than leaving the fuzzers out.
if ! command -v clang >/dev/null; then
	echo "!! build-fuzz: clang is missing: install Debian package 'clang' (deploy/install-deps.sh installs it)"
	note_result "build-fuzz (clang, libFuzzer)" 1
elif step "build-fuzz (clang, libFuzzer)" bash -c \
	"$(declare -f setup); CC=clang setup build-fuzz -Dbuildtype=debug -Dwerror=true -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link && ninja -C build-fuzz"; then
	echo "== meson test --suite fuzz-run (build-fuzz)"
	meson test -C build-fuzz --suite fuzz-run --num-processes 2 --print-errorlogs
	count_meson_log build-fuzz
fi

cd "$root" || exit 1
summary
