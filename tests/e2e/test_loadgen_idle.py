"""Memory per idle connection, so that a million fit (issue 17; perf/loadgen/bench_million.py
is the benchmark): mxgate-loadgen --idle opens 20,000 sessions over net_memif against a
gateway with one worker, each greeted and then silent; then every one sends QUIT.

1. While they are held: the gateway's own account of its connections' memory
   (conn_bytes_each in its SIGUSR1 dpdk statistics: the structs and buffers each holds) is
   at most 2,048 bytes, and no mbuf is held for them.
2. On a build with its real allocator (jemalloc; not under the sanitizers, whose redzones
   and quarantine are memory of their own), the gateway's RSS grows by at most 2,048
   bytes per connection between two points of the ramp (after 5,000 and after all 20,000
   were greeted): the cost of one more held connection, without the ramp's transient
   buffers (a greeting's send buffer while it waits for its ACK), which are there at both
   points.
3. Released: the generator counts 20,000 greeted and 20,000 done with no error (none
   lost); the gateway counts 20,000 accepted and closed, and none left open.

Needs root and libdpdk (built with it). About 30 s.
"""

import os
import signal
import time

import loadgen
import mxtest

N = 20000
LIMIT = 2048


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sanitized(pid):
    with open(f"/proc/{pid}/maps") as f:
        return any("libasan" in line or "libubsan" in line for line in f)


def main():
    binary = mxtest.binary_from_argv()
    mxtest.need_root("DPDK's runtime directory and the memif socket")
    gen = loadgen.loadgen_binary(binary)
    extra = f"mxgate_max_connections = {N + 5000}\nsmtpd_timeout = 600s\n"
    with loadgen.MemifGateway(binary, extra_config=extra, workers=1) as gw:
        pid = gw.proc.pid
        st0 = gw.stats()
        jp = os.path.join(gw.dir, "idle.json")
        # a paced ramp (5,000 sessions a second), so the RSS is read at two points of it
        p, prefix = loadgen.start_loadgen(
            gen, gw.socket, ["--src", "10.99.0.0/16", "--idle", "--concurrency", str(N),
                             "--rate", "5000", "--rate-of", "sessions", "--timeout", "60"],
            json_path=jp)
        try:
            a = gw.wait_stat(lambda s: s["open_connections"] >= 5000, 120,
                             "5,000 idle connections")
            rss_a = rss_bytes(pid)
            b = gw.wait_stat(lambda s: s["open_connections"] == N, 120,
                             f"{N} idle connections")
            rss_b = rss_bytes(pid)
            # the memory account is sampled once a second
            time.sleep(1.5)
            st = gw.stats()
        except SystemExit:
            p.send_signal(signal.SIGINT)
            p.send_signal(signal.SIGINT)
            print(loadgen.finish_loadgen(p, prefix, 60)[1])
            raise
        each = st["conn_bytes_each"]
        held_mbufs = st["mbufs_in_use"] - st0["mbufs_in_use"]
        grown = (rss_b - rss_a) / max(b["open_connections"] - a["open_connections"], 1)
        print(f"{st['open_connections']} held: conn_bytes_each={each} (tcb {st['tcb_bytes']}),"
              f" RSS {rss_a} at {a['open_connections']} -> {rss_b} at {N}: {grown:.0f} bytes "
              f"per connection; mbufs held {held_mbufs}")
        p.send_signal(signal.SIGUSR2)
        rc, out, res = loadgen.finish_loadgen(p, prefix, 180, jp)
        print(out)
        if rc != 0 or res is None:
            mxtest.fail(f"mxgate-loadgen exit status {rc}:\n{out}")
        if each == 0 or each > LIMIT:
            mxtest.fail(f"the gateway holds {each} bytes per idle connection, more than "
                        f"{LIMIT}")
        if held_mbufs > 64:
            mxtest.fail(f"{held_mbufs} mbufs held by {N} idle connections")
        if sanitized(pid):
            print("RSS not checked: the gateway runs under the sanitizers (their allocator)")
        elif grown > LIMIT:
            mxtest.fail(f"the gateway's RSS grew by {grown:.0f} bytes per idle connection, "
                        f"more than {LIMIT}")
        s = res["sessions"]
        if s["greeted"] != N or s["done"] != N or res["errors"]["total"] != 0:
            mxtest.fail(f"released: greeted {s['greeted']}, done {s['done']}, errors "
                        f"{res['errors']}")
        end = gw.wait_stat(lambda s: s["open_connections"] == 0, 60, "no connection left")
        acc = end["connections_accepted"] - st0["connections_accepted"]
        closed = end["connections_closed"] - st0["connections_closed"]
        if acc != N or closed != N:
            mxtest.fail(f"the gateway accepted {acc} and closed {closed} connections, "
                        f"expected {N}")
    print("OK")


if __name__ == "__main__":
    main()
