"""Two DPDK ports of different drivers in one gateway: net_af_packet on the veth into the
client namespace (10.77.0.2, fd77::2) and net_tap (10.79.0.2, fd79::2), whose kernel end
appears in the gateway's own namespace. Each port has its own MAC, addresses and stack per
worker; SMTP is served on both.

  1. the start-up log names both ports, their drivers and addresses
  2. swaks over IPv4 and IPv6 through each port delivers; each message is spooled with the
     right client address
  3. the statistics count packets on both (rx_packets covers both ports, and the tap's
     kernel side saw our replies)
Needs swaks and netns.py's tools (a missing one fails the test, naming its package), and
root (skipped, exit 77, otherwise).
"""

import re
import subprocess

import netns
from mxtest import binary_from_argv, fail, need_tool

need_tool("swaks")
netns.need_netns_tools()
binary = binary_from_argv()


def swaks_from_gw(topo, server):
    srv = f"[{server}]:25" if ":" in server else f"{server}:25"
    r = topo.gw(["swaks", "--server", srv, "--to", "tap@localhost", "--from",
                 "tap@sender.example", "--helo", "tap.test.example", "--body",
                 f"through net_tap to {server}\n"],
                capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


with netns.Topology(netns.default_prefix()) as topo:
    tap_if = f"{topo.prefix}t"
    gw = netns.DpdkGateway(binary, topo, workers=2)
    # add the tap port to the configuration the helper wrote (a later line wins, as in
    # Postfix's main.cf, but editing keeps the file readable)
    with open(gw.config_path) as f:
        cf = f.read()
    cf = re.sub(r"^(mxgate_dpdk_eal_args = .*)$", rf"\1 --vdev=net_tap0,iface={tap_if}", cf,
                count=1, flags=re.M)
    cf = re.sub(r"^(mxgate_dpdk_ports = .*)$",
                r"\1, net_tap0 address=10.79.0.2/24 address6=fd79::2 mtu=1500", cf, count=1,
                flags=re.M)
    cf = cf.replace("[fd77::]/64", "[fd77::]/64 10.79.0.0/24 [fd79::]/64")
    with open(gw.config_path, "w") as f:
        f.write(cf)
    with gw:
        # the tap's kernel end: our side of the link, in the gateway namespace
        for argv in (["ip", "addr", "add", "10.79.0.1/24", "dev", tap_if],
                     ["ip", "addr", "add", "fd79::1/64", "dev", tap_if, "nodad"],
                     ["ip", "link", "set", tap_if, "up"],
                     ["ethtool", "-K", tap_if, "tx", "off"]):
            r = topo.gw(argv, capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"{' '.join(argv)}: {r.stderr}")

        log = gw.log()
        for want in (r"port net_af_packet0 \(net_af_packet\): .* 10\.77\.0\.2/24, fd77::2",
                     r"port net_tap0 \(net_tap\): .* 10\.79\.0\.2/24, fd79::2",
                     r"transport dpdk .* 2 worker lcore\(s\), 2 port\(s\)"):
            if not re.search(want, log):
                fail(f"start-up log lacks /{want}/:\n{log}")

        st0 = gw.stats()
        sent = {}
        for server in (topo.gw_ip4, topo.gw_ip6):
            rc, out = netns.swaks(topo, server, "afp@localhost")
            qid = netns.swaks_queue_id(out)
            if rc != 0 or not qid:
                fail(f"swaks to {server} through net_af_packet:\n{out}\n{gw.output()}")
            sent[qid] = topo.cl_ip4 if ":" not in server else topo.cl_ip6
        for server, client in (("10.79.0.2", "10.79.0.1"), ("fd79::2", "fd79::1")):
            rc, out = swaks_from_gw(topo, server)
            qid = netns.swaks_queue_id(out)
            if rc != 0 or not qid:
                fail(f"swaks to {server} through net_tap:\n{out}\n{gw.output()}")
            sent[qid] = client
        spooled = {qid: (env, msg) for qid, env, msg in gw.spooled()}
        for qid, client in sent.items():
            if qid not in spooled:
                fail(f"{qid} (from {client}) is not in the spool: {sorted(spooled)}")
            env, msg = spooled[qid]
            head = msg.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            if f"[{client}]" not in head and f"[IPv6:{client}]" not in head:
                fail(f"{qid}: Received: does not name the client {client}:\n{head}")
        st1 = gw.stats()
        if st1["rx_packets"] - st0["rx_packets"] < 40:
            fail(f"rx_packets grew by {st1['rx_packets'] - st0['rx_packets']} for four "
                 f"sessions")
        r = topo.gw(["ip", "-s", "link", "show", tap_if], capture_output=True, text=True)
        m = re.search(r"RX:.*\n\s*(\d+)\s+(\d+)", r.stdout)
        if not m or int(m.group(2)) < 10:
            fail(f"the tap's kernel end received almost nothing from us:\n{r.stdout}")
        print(f"ok: two ports (net_af_packet and net_tap) in one gateway, swaks v4 and v6 "
              f"through each, {len(sent)} messages spooled with their clients; rx_packets "
              f"+{st1['rx_packets'] - st0['rx_packets']}, tap RX packets {m.group(2)}")
