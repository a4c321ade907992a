"""A UDP DNS responder for the DNS benchmarks (perf/dns/): answers after a delay for one zone,
at once for everything else. Python 3 standard library only.

    python3 slow_dns.py --port 5353 [--address 127.0.0.1] --zone slow.test \
        [--delay 3 | --hold] [--answer nxdomain|listed|mixed] [--stats FILE]

Names under --zone (a DNSBL, as reject_rbl_client asks it: 4.3.2.1.slow.test) get their
answer --delay seconds after the query arrived: NXDOMAIN (not listed) with the zone's SOA,
or with --answer listed, A 127.0.0.2 and TXT "listed 1.2.3.4" (the address the name
stands for; other types: NODATA). --answer mixed lists the addresses whose last octet is
odd and answers NXDOMAIN for the others, so that a benchmark can tell, per client, whether
the answer it got was its own. Every other name gets NXDOMAIN at once (a PTR of the
client, say). Each query is answered on its own timer, so any number wait at once. The
question is echoed byte for byte (the resolver's 0x20 case randomisation must come back as
sent).

--hold: instead of a delay, in-zone queries wait until the server gets SIGUSR1, which
answers every one held and from then on answers at once; SIGUSR2 makes it hold again.

--stats FILE is rewritten every 0.2 s with a JSON object: queries, answered, in the zone,
malformed, the number waiting now and the peak of it, releases (SIGUSR1s), and the
kernel's count of queries dropped on the server's socket (a full receive buffer).
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import struct

TTL = 60


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def parse_query(data):
    """(id, flags, question bytes, qname lowercased, qtype) or None."""
    if len(data) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    if flags & 0x8000 or qd != 1:
        return None
    pos, labels = 12, []
    while True:
        if pos >= len(data):
            return None
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n > 63 or pos + 1 + n > len(data):
            return None
        labels.append(data[pos + 1:pos + 1 + n].decode("ascii", "replace").lower())
        pos += 1 + n
    if pos + 4 > len(data):
        return None
    qtype = struct.unpack("!H", data[pos:pos + 2])[0]
    return qid, flags, data[12:pos + 4], ".".join(labels), qtype


class Responder(asyncio.DatagramProtocol):
    def __init__(self, zone, delay, answer, hold):
        self.zone = zone.lower().strip(".")
        self.delay = delay
        self.answer = answer
        self.holding = hold
        self.held = []
        self.soa = self.rr(encode_name(self.zone), 6, (
            encode_name("ns." + self.zone) + encode_name("hostmaster." + self.zone) +
            struct.pack("!IIIII", 1, 3600, 600, 86400, TTL)))
        self.st = {"queries": 0, "answered": 0, "in_zone": 0, "malformed": 0, "waiting": 0,
                   "peak_waiting": 0, "releases": 0}

    @staticmethod
    def rr(owner, rtype, rdata):
        return owner + struct.pack("!HHIH", rtype, 1, TTL, len(rdata)) + rdata

    def connection_made(self, transport):
        self.transport = transport

    def reply(self, q, rcode, answers=(), authority=()):
        qid, flags, question, _, _ = q
        # QR, the query's opcode and RD, AA, RA
        rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode
        return (struct.pack("!HHHHHH", qid, rflags, 1, len(answers), len(authority), 0) +
                question + b"".join(answers) + b"".join(authority))

    def listed(self, name):
        """The address a name of the zone stands for (4.3.2.1.zone -> "1.2.3.4") when the
        answer lists it, else None."""
        labels = name[:-len(self.zone) - 1].split(".") if name != self.zone else []
        if self.answer == "nxdomain" or len(labels) != 4 or not all(
                x.isdigit() and int(x) < 256 for x in labels):
            return None
        if self.answer == "mixed" and int(labels[0]) % 2 == 0:
            return None
        return ".".join(reversed(labels))

    def build(self, q):
        _, _, question, name, qtype = q
        owner = b"\xc0\x0c"  # the question's name
        addr = self.listed(name)
        if addr is not None:
            if qtype == 1:
                return self.reply(q, 0, [self.rr(owner, 1, bytes([127, 0, 0, 2]))])
            if qtype == 16:
                txt = f"listed {addr}".encode()
                return self.reply(q, 0, [self.rr(owner, 16, bytes([len(txt)]) + txt)])
            return self.reply(q, 0, authority=[self.soa])
        return self.reply(q, 3, authority=[self.soa])

    def release(self):
        """SIGUSR1: answer every held query; answer at once from now on."""
        self.st["releases"] += 1
        self.holding = False
        held, self.held = self.held, []
        for out, addr in held:
            self.st["waiting"] -= 1
            self.send(out, addr)

    def hold(self):
        """SIGUSR2: hold in-zone queries again."""
        self.holding = True

    def send(self, data, addr):
        self.transport.sendto(data, addr)
        self.st["answered"] += 1

    def datagram_received(self, data, addr):
        self.st["queries"] += 1
        q = parse_query(data)
        if q is None:
            self.st["malformed"] += 1
            return
        name = q[3]
        if name == self.zone or name.endswith("." + self.zone):
            self.st["in_zone"] += 1
            self.st["waiting"] += 1
            self.st["peak_waiting"] = max(self.st["peak_waiting"], self.st["waiting"])
            out = self.build(q)
            if self.holding:
                self.held.append((out, addr))
                return

            def later():
                self.st["waiting"] -= 1
                self.send(out, addr)
            if self.delay > 0:
                asyncio.get_running_loop().call_later(self.delay, later)
            else:
                later()
        else:
            self.send(self.reply(q, 3), addr)


def socket_drops(port):
    """The drops column of /proc/self/net/udp for the socket bound to port (its namespace's
    view), or -1."""
    try:
        with open("/proc/self/net/udp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port:
                    return int(fields[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return -1


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--hold", action="store_true")
    ap.add_argument("--answer", choices=("nxdomain", "listed", "mixed"), default="nxdomain")
    ap.add_argument("--stats")
    a = ap.parse_args()
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Responder(a.zone, 0 if a.hold else a.delay, a.answer, a.hold),
        local_addr=(a.address, a.port))
    loop.add_signal_handler(signal.SIGUSR1, proto.release)
    loop.add_signal_handler(signal.SIGUSR2, proto.hold)
    # room for bursts of thousands of queries: the FORCE options pass rmem_max (root);
    # Python's socket module does not name them (Linux: SO_SNDBUFFORCE 32, SO_RCVBUFFORCE
    # 33). Without root the plain options get what rmem_max allows.
    sock = transport.get_extra_info("socket")
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, 8 << 20)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, 8 << 20)
    print("ready", flush=True)
    while True:
        await asyncio.sleep(0.2)
        if a.stats:
            proto.st["kernel_drops"] = socket_drops(a.port)
            tmp = a.stats + ".tmp"
            with open(tmp, "w") as f:
                json.dump(proto.st, f)
            os.replace(tmp, a.stats)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
