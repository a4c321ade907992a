"""A slow Postfix policy server for the DNS benchmarks (perf/dns/): SMTPD_POLICY_README's
protocol (name=value lines, a blank line ends a request; the reply is action=... and a blank
line; the connection stays open for the next request), answering DUNNO --delay seconds after
each request. Python 3 standard library only.

    python3 slow_policy.py --port 10040 [--address 127.0.0.1] --delay 3 [--stats FILE]

Every connection is served on its own, so any number of requests wait at once. --stats FILE
is rewritten every 0.2 s with a JSON object: connections, requests, replies, malformed, the
requests waiting now and the peak of it, and the peak of open connections.
"""

import argparse
import asyncio
import json
import os

st = {"connections": 0, "open": 0, "peak_open": 0, "requests": 0, "replies": 0,
      "malformed": 0, "waiting": 0, "peak_waiting": 0}


async def serve(reader, writer, delay):
    st["connections"] += 1
    st["open"] += 1
    st["peak_open"] = max(st["peak_open"], st["open"])
    try:
        attrs = 0
        while True:
            line = await reader.readline()
            if not line:
                return
            if not line.endswith(b"\n"):
                st["malformed"] += 1
                return
            if line.strip():
                if b"=" not in line:
                    st["malformed"] += 1
                    return
                attrs += 1
                continue
            if attrs == 0:
                continue
            attrs = 0
            st["requests"] += 1
            st["waiting"] += 1
            st["peak_waiting"] = max(st["peak_waiting"], st["waiting"])
            try:
                await asyncio.sleep(delay)
            finally:
                st["waiting"] -= 1
            writer.write(b"action=DUNNO\n\n")
            await writer.drain()
            st["replies"] += 1
    except (ConnectionError, asyncio.CancelledError):
        return
    finally:
        st["open"] -= 1
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--stats")
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, a.delay), a.address, a.port,
                                        backlog=1024)
    print("ready", flush=True)
    async with server:
        while True:
            await asyncio.sleep(0.2)
            if a.stats:
                tmp = a.stats + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(st, f)
                os.replace(tmp, a.stats)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
