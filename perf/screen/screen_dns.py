"""The DNSBL server of bench_screen.py: a UDP DNS server on 127.0.0.1:53 of the
benchmark's network namespace (Python standard library only).

    python3 screen_dns.py PORT ZONE LISTED_PREFIX

An A query for D.C.B.A.ZONE gets 127.0.0.2 (TTL 300) when A.B.C.D starts with
LISTED_PREFIX (e.g. "127.2."), every other question NXDOMAIN with the zone's SOA
(negative TTL 60). It prints "ready" once bound; on SIGTERM it prints one JSON line
{"queries": N, "listed": N} and exits. Both servers ask it: Postfix's dnsblog through the
namespace's resolv.conf (libc, no cache), mxgate through mxgate_dns_servers (its
resolver's cache)."""

import json
import signal
import socket
import struct
import sys


def main():
    port, zone, listed = int(sys.argv[1]), sys.argv[2].lower(), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", port))
    counts = {"queries": 0, "listed": 0}

    def done(*_):
        print(json.dumps(counts), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, done)
    zone_enc = b"".join(bytes([len(x)]) + x.encode() for x in zone.split(".")) + b"\0"
    soa = zone_enc + b"\0" + struct.pack("!IIIII", 1, 3600, 600, 86400, 60)
    soa_rr = zone_enc + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa
    suffix = "." + zone
    print("ready", flush=True)
    while True:
        try:
            m, peer = s.recvfrom(4096)
        except InterruptedError:
            continue
        if len(m) < 17:
            continue
        counts["queries"] += 1
        labels, p = [], 12
        try:
            while m[p]:
                n = m[p]
                labels.append(m[p + 1:p + 1 + n].decode("ascii", "replace"))
                p += 1 + n
        except IndexError:
            continue
        p += 1
        if p + 4 > len(m):
            continue
        qid = struct.unpack("!H", m[:2])[0]
        qtype = struct.unpack("!H", m[p:p + 2])[0]
        question = m[12:p + 4]
        name = ".".join(labels).lower()
        hit = False
        if name.endswith(suffix):
            addr = ".".join(reversed(name[:-len(suffix)].split(".")))
            hit = addr.startswith(listed) and addr.count(".") == 3
        if hit and qtype == 1:
            counts["listed"] += 1
            body = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([127, 0, 0, 2])
            hdr = struct.pack("!HHHHHH", qid, 0x8580, 1, 1, 0, 0)
        else:
            body = soa_rr
            hdr = struct.pack("!HHHHHH", qid, 0x8580 | (0 if hit else 3), 1, 0, 1, 0)
        s.sendto(hdr + question + body, peer)


main()
