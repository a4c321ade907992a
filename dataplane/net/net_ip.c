/* Frame input: Ethernet II (ARP frames go to net_link.c), IPv4 (RFC 791, RFC 1122 3.2),
 * ICMP (RFC 792, RFC 1122 3.2.2), IPv6 (RFC 8200) with neighbour discovery (RFC 4861: its
 * cache and solicitations too) and ICMPv6 (RFC 4443). TCP segments go on to
 * net_tcp_input (net_tcp_input.c); answers leave through net_link.c. */
#include "net_internal.h"

#include <string.h>

/* ---- ICMP ---- */

void net_icmp_unreach(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
		      size_t ip_len, uint8_t code)
{
	if (!net_tb_take(&s->icmp_tb, s->now_ms))
		return;
	/* RFC 1812 4.3.2.3 / RFC 1122 3.2.2: the IP header and at least 8 bytes; we quote
	 * up to 548 so the whole error fits in 576 bytes. */
	size_t quote = ip_len > 548 ? 548 : ip_len;
	void *h;
	uint8_t *frame;
	uint8_t *l4 = net_tx_begin(s, &h, &frame, NET_IP_HLEN, 8 + quote);
	if (!l4)
		return;
	l4[0] = 3;
	l4[1] = code;
	memset(l4 + 2, 0, 6);
	memcpy(l4 + 8, ip, quote);
	uint32_t src, dst;
	memcpy(&dst, ip + 12, 4);
	memcpy(&src, ip + 16, 4);
	s->cnt.tx_icmp_unreach++;
	net_tx_ipv4(s, h, frame, smac, src, dst, 1, 8 + quote, 8);
}

static void icmp_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
		       size_t hlen, size_t total, unsigned rx_flags)
{
	s->cnt.rx_icmp++;
	const uint8_t *icmp = ip + hlen;
	size_t len = total - hlen;
	if (len < 8 || (!(rx_flags & NET_RX_L4_CKSUM_GOOD) &&
			net_csum_fold(net_csum_add(0, icmp, len)) != 0)) {
		s->cnt.rx_bad_csum++;
		return;
	}
	if (icmp[0] != 8 || icmp[1] != 0)
		return; /* errors for our connections: TCP recovers by itself (RFC 5927) */
	/* Echo reply (RFC 792): same identifier, sequence and data. Our replies carry no
	 * IP options, so the data fits in what came in. */
	if (len > (size_t)s->cfg.mtu - NET_IP_HLEN)
		return;
	void *h;
	uint8_t *frame;
	uint8_t *l4 = net_tx_begin(s, &h, &frame, NET_IP_HLEN, len);
	if (!l4)
		return;
	memcpy(l4, icmp, len);
	l4[0] = 0;
	uint32_t src, dst;
	memcpy(&dst, ip + 12, 4);
	memcpy(&src, ip + 16, 4);
	s->cnt.tx_icmp_echo++;
	net_tx_ipv4(s, h, frame, smac, src, dst, 1, len, 8);
}

/* ---- IPv6: neighbour discovery (RFC 4861) and ICMPv6 (RFC 4443) ---- */

static const uint8_t all_nodes6[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
static const uint8_t unspec6[16];

static void solicited_node(uint8_t out[16], const uint8_t addr[16])
{
	/* RFC 4291 2.7.1: ff02::1:ff00:0/104 plus the low 24 bits. */
	memset(out, 0, 16);
	out[0] = 0xff;
	out[1] = 2;
	out[11] = 1;
	out[12] = 0xff;
	memcpy(out + 13, addr + 13, 3);
}

static void mcast6_mac(uint8_t mac[6], const uint8_t group[16])
{
	mac[0] = mac[1] = 0x33; /* RFC 2464 7 */
	memcpy(mac + 2, group + 12, 4);
}

static bool ours6(const struct net_stack *s, const uint8_t a[16])
{
	return memcmp(a, s->cfg.ipv6, 16) == 0 || memcmp(a, s->ll6, 16) == 0;
}

bool net_nd_lookup(struct net_stack *s, const uint8_t ip[16], uint8_t mac[6])
{
	for (unsigned i = 0; i < NET_ND_CACHE; i++)
		if (s->nd[i].used && memcmp(s->nd[i].ip, ip, 16) == 0) {
			memcpy(mac, s->nd[i].mac, 6);
			return true;
		}
	return false;
}

bool net_stack_gateway6_mac(const struct net_stack *s, uint8_t mac[6])
{
	return s->has_ipv6 && net_nd_lookup((struct net_stack *)s, s->cfg.ipv6_gateway, mac);
}

static void nd_update(struct net_stack *s, const uint8_t ip[16], const uint8_t mac[6],
		      bool create)
{
	if (mac[0] & 1)
		return;
	for (unsigned i = 0; i < NET_ND_CACHE; i++)
		if (s->nd[i].used && memcmp(s->nd[i].ip, ip, 16) == 0) {
			memcpy(s->nd[i].mac, mac, 6);
			return;
		}
	if (!create)
		return;
	unsigned i = s->nd_next++ % NET_ND_CACHE;
	if (s->nd[i].used && memcmp(s->nd[i].ip, s->cfg.ipv6_gateway, 16) == 0)
		i = s->nd_next++ % NET_ND_CACHE; /* the router stays */
	memcpy(s->nd[i].ip, ip, 16);
	memcpy(s->nd[i].mac, mac, 6);
	s->nd[i].used = 1;
}

void net_nd_solicit(struct net_stack *s, const uint8_t target[16])
{
	s->nd_next_try = s->now_ms + 1000;
	uint8_t group[16], dmac[6];
	solicited_node(group, target);
	mcast6_mac(dmac, group);
	void *h;
	uint8_t *frame;
	uint8_t *m = net_tx_begin(s, &h, &frame, NET_IP6_HLEN, 32);
	if (!m)
		return;
	memset(m, 0, 32);
	m[0] = 135;
	memcpy(m + 8, target, 16);
	m[24] = 1; /* source link-layer address */
	m[25] = 1;
	memcpy(m + 26, s->cfg.mac, 6);
	/* From the link-local address when the target is link-local (RFC 4861 7.2.2). */
	const uint8_t *src = (target[0] == 0xfe && (target[1] & 0xc0) == 0x80) ? s->ll6
									      : s->cfg.ipv6;
	s->cnt.tx_nd++;
	net_tx_ipv6(s, h, frame, dmac, src, group, 58, 32, 8);
}

static void nd_advertise(struct net_stack *s, const uint8_t smac[6], const uint8_t *src,
			 const uint8_t target[16])
{
	bool dad = memcmp(src, unspec6, 16) == 0;
	uint8_t dmac[6];
	if (dad)
		mcast6_mac(dmac, all_nodes6);
	else
		memcpy(dmac, smac, 6);
	void *h;
	uint8_t *frame;
	uint8_t *m = net_tx_begin(s, &h, &frame, NET_IP6_HLEN, 32);
	if (!m)
		return;
	memset(m, 0, 32);
	m[0] = 136;
	/* RFC 4861 7.2.4: Solicited unless answering DAD; Override for our own address. */
	m[4] = (uint8_t)((dad ? 0 : 0x40) | 0x20);
	memcpy(m + 8, target, 16);
	m[24] = 2; /* target link-layer address */
	m[25] = 1;
	memcpy(m + 26, s->cfg.mac, 6);
	s->cnt.tx_nd++;
	net_tx_ipv6(s, h, frame, dmac, target, dad ? all_nodes6 : src, 58, 32, 8);
}

/* The link-layer address option of type `want` in ND options, or NULL. RFC 4861 4.6: a
 * zero length makes the packet invalid. */
static const uint8_t *nd_lladdr(const uint8_t *o, size_t len, uint8_t want, bool *bad)
{
	const uint8_t *found = NULL;
	while (len >= 2) {
		size_t olen = (size_t)o[1] * 8;
		if (olen == 0 || olen > len) {
			*bad = true;
			return NULL;
		}
		if (o[0] == want && olen >= 8)
			found = o + 2;
		o += olen;
		len -= olen;
	}
	return found;
}

static void icmp6_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			const uint8_t *m, size_t len, unsigned rx_flags)
{
	s->cnt.rx_icmp6++;
	const uint8_t *src = ip + 8, *dst = ip + 24;
	if (len < 8) {
		s->cnt.rx_bad_ip++;
		return;
	}
	if (!(rx_flags & NET_RX_L4_CKSUM_GOOD)) {
		uint32_t ph = net_csum_add(net_csum_add(0, src, 16), dst, 16) + 58 + (uint32_t)len;
		if (net_csum_fold(net_csum_add(ph, m, len)) != 0) {
			s->cnt.rx_bad_csum++;
			return;
		}
	}
	uint8_t type = m[0];
	if (rx_flags & NET_RX_LEARN_ONLY && type != 135 && type != 136)
		return;
	if (type == 128 && m[1] == 0 && ours6(s, dst)) {
		/* RFC 4443 4.2: echo reply to a unicast request, same data. */
		if (len > (size_t)s->cfg.mtu - NET_IP6_HLEN)
			return;
		void *h;
		uint8_t *frame;
		uint8_t *r = net_tx_begin(s, &h, &frame, NET_IP6_HLEN, len);
		if (!r)
			return;
		memcpy(r, m, len);
		r[0] = 129;
		s->cnt.tx_icmp6_echo++;
		net_tx_ipv6(s, h, frame, smac, dst, src, 58, len, 8);
		return;
	}
	if (type != 135 && type != 136)
		return;
	s->cnt.rx_nd++;
	/* RFC 4861 7.1.1 / 7.1.2: hop limit 255 (never forwarded), code 0, 24 bytes. */
	if (ip[7] != 255 || m[1] != 0 || len < 24) {
		s->cnt.rx_bad_ip++;
		return;
	}
	const uint8_t *target = m + 8;
	bool bad = false;
	if (type == 135) {
		if (!ours6(s, target))
			return;
		const uint8_t *sll = nd_lladdr(m + 24, len - 24, 1, &bad);
		bool dad = memcmp(src, unspec6, 16) == 0;
		if (bad || (dad && sll))
			return;
		if (dad) {
			/* DAD goes to the solicited-node group (7.1.1). */
			uint8_t group[16];
			solicited_node(group, target);
			if (memcmp(dst, group, 16) != 0)
				return;
		}
		if (sll)
			nd_update(s, src, sll, true);
		if (!(rx_flags & NET_RX_LEARN_ONLY))
			nd_advertise(s, sll ? sll : smac, src, target);
		return;
	}
	/* Neighbour advertisement: learn the router's (or a cached neighbour's) MAC. */
	const uint8_t *tll = nd_lladdr(m + 24, len - 24, 2, &bad);
	if (bad || !tll || target[0] == 0xff)
		return;
	nd_update(s, target, tll, memcmp(target, s->cfg.ipv6_gateway, 16) == 0);
}

static void ipv6_input(struct net_stack *s, const uint8_t *smac, const uint8_t *ip, size_t len,
		       unsigned rx_flags)
{
	s->cnt.rx_ipv6++;
	/* RFC 8200 3: version, payload length within the frame (padding beyond it). */
	if (len < NET_IP6_HLEN || (ip[0] >> 4) != 6) {
		s->cnt.rx_bad_ip++;
		return;
	}
	size_t plen = net_get16(ip + 4);
	if (plen > len - NET_IP6_HLEN) {
		s->cnt.rx_bad_ip++;
		return;
	}
	const uint8_t *src = ip + 8, *dst = ip + 24;
	uint8_t group[16];
	solicited_node(group, s->cfg.ipv6);
	bool unicast = ours6(s, dst);
	bool mcast = memcmp(dst, all_nodes6, 16) == 0 || memcmp(dst, group, 16) == 0;
	if (!mcast) {
		solicited_node(group, s->ll6);
		mcast = memcmp(dst, group, 16) == 0;
	}
	if (!unicast && !mcast) {
		s->cnt.rx_not_ours++;
		return;
	}
	/* RFC 4291 2.7: a multicast source is invalid; so is a forged copy of ours. */
	if (src[0] == 0xff || ours6(s, src)) {
		s->cnt.rx_bad_ip++;
		return;
	}
	const uint8_t *l4 = ip + NET_IP6_HLEN;
	switch (ip[6]) {
	case 58:
		icmp6_input(s, smac, ip, l4, plen, rx_flags);
		break;
	case 6:
		if (!unicast || memcmp(src, unspec6, 16) == 0 || net_addr_is4(src)) {
			s->cnt.rx_bad_ip++;
			break;
		}
		s->cnt.rx_tcp++;
		net_tcp_input(s, smac, src, dst, l4, plen, (rx_flags & NET_RX_L4_CKSUM_GOOD) != 0);
		break;
	case 44:
		s->cnt.rx_ip_fragments++; /* as for IPv4: no reassembly */
		break;
	default:
		/* Extension headers and other protocols: dropped and counted (net_stack.h). */
		s->cnt.rx_proto_unknown++;
		break;
	}
}

/* ---- IPv4 ---- */

static bool ipv4_bad_source(const struct net_stack *s, uint32_t src_be)
{
	uint32_t a = __builtin_bswap32(src_be);
	/* RFC 1122 3.2.1.3: a source that is broadcast, multicast, "this network" or
	 * loopback is discarded; so is a forged copy of our own address. */
	if (a == 0xffffffffu || (a >> 28) == 0xe || (a >> 24) == 0 || (a >> 24) == 127 ||
	    net_ipv4_ours(s, src_be))
		return true;
	if (s->cfg.ipv4_prefix && s->cfg.ipv4_prefix < 31) {
		uint32_t host = ~0u >> s->cfg.ipv4_prefix;
		uint32_t net = __builtin_bswap32(s->cfg.ipv4) & ~host;
		if ((a & ~host) == net && (a & host) == host)
			return true; /* our subnet's directed broadcast */
	}
	return false;
}

static void ipv4_input(struct net_stack *s, const uint8_t *smac, const uint8_t *ip, size_t len,
		       unsigned rx_flags)
{
	/* RFC 1122 3.2.1: version, header length, total length within the frame (the
	 * frame may carry Ethernet padding beyond it), checksum. */
	if (len < NET_IP_HLEN || (ip[0] >> 4) != 4) {
		s->cnt.rx_bad_ip++;
		return;
	}
	size_t hlen = (size_t)(ip[0] & 0xf) * 4;
	size_t total = net_get16(ip + 2);
	if (hlen < NET_IP_HLEN || total < hlen || total > len) {
		s->cnt.rx_bad_ip++;
		return;
	}
	if (!(rx_flags & NET_RX_IP_CKSUM_GOOD) && net_csum_fold(net_csum_add(0, ip, hlen)) != 0) {
		s->cnt.rx_bad_csum++;
		return;
	}
	uint32_t dst, src;
	memcpy(&dst, ip + 16, 4);
	memcpy(&src, ip + 12, 4);
	if (!net_ipv4_ours(s, dst)) {
		s->cnt.rx_not_ours++; /* we do not forward, nor answer broadcasts */
		return;
	}
	if (ipv4_bad_source(s, src)) {
		s->cnt.rx_bad_ip++;
		return;
	}
	/* Fragments: we never send any (DF) and a gateway's clients have no reason to;
	 * reassembly would be state for attackers to fill. Dropped and counted. */
	uint16_t frag = net_get16(ip + 6);
	if (frag & 0x3fff) {
		s->cnt.rx_ip_fragments++;
		return;
	}
	switch (ip[9]) {
	case 1:
		icmp_input(s, smac, ip, hlen, total, rx_flags);
		break;
	case 6:
		s->cnt.rx_tcp++;
		uint8_t a[16], b[16];
		net_addr_map4(a, src);
		net_addr_map4(b, dst);
		net_tcp_input(s, smac, a, b, ip + hlen, total - hlen,
			      (rx_flags & NET_RX_L4_CKSUM_GOOD) != 0);
		break;
	case 17:
		/* No UDP service: port unreachable (RFC 1122 4.1.3.1). A UDP header we cannot
		 * read is not worth an answer. */
		s->cnt.rx_udp++;
		if (total - hlen >= 8)
			net_icmp_unreach(s, smac, ip, total, 3);
		break;
	default:
		/* RFC 1122 3.2.2.1: protocol unreachable. */
		s->cnt.rx_proto_unknown++;
		net_icmp_unreach(s, smac, ip, total, 2);
		break;
	}
}

bool net_frame_is_neighbour(const uint8_t *frame, size_t len)
{
	if (len < NET_ETH_HLEN)
		return false;
	uint16_t type = net_get16(frame + 12);
	if (type == NET_ETHERTYPE_ARP)
		return true;
	/* IPv6 with ICMPv6 right after the fixed header (ND never carries extension
	 * headers), type 135 (NS) or 136 (NA) */
	return type == NET_ETHERTYPE_IPV6 && len > NET_ETH_HLEN + NET_IP6_HLEN &&
	       frame[NET_ETH_HLEN + 6] == 58 &&
	       (frame[NET_ETH_HLEN + NET_IP6_HLEN] == 135 ||
		frame[NET_ETH_HLEN + NET_IP6_HLEN] == 136);
}

void net_input_frame(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags)
{
	s->cnt.rx_frames++;
	if (len < NET_ETH_HLEN) {
		s->cnt.rx_bad_eth++;
		return;
	}
	const uint8_t *dmac = frame, *smac = frame + 6;
	/* Unicast to us, broadcast, or IPv6 multicast (33:33:..., RFC 2464 7: the
	 * solicited-node and all-nodes groups; the IPv6 layer checks the group); a
	 * multicast or broadcast source is bogus. */
	bool mcast6 = dmac[0] == 0x33 && dmac[1] == 0x33;
	if ((memcmp(dmac, s->cfg.mac, 6) != 0 && memcmp(dmac, net_eth_bcast, 6) != 0 &&
	     !mcast6) ||
	    (smac[0] & 1)) {
		s->cnt.rx_not_ours++;
		return;
	}
	uint16_t type = net_get16(frame + 12);
	const uint8_t *p = frame + NET_ETH_HLEN;
	size_t plen = len - NET_ETH_HLEN;
	if ((rx_flags & NET_RX_LEARN_ONLY) && !net_frame_is_neighbour(frame, len))
		return;
	if (type == NET_ETHERTYPE_IPV6) {
		if (s->has_ipv6)
			ipv6_input(s, smac, p, plen, rx_flags);
		else
			s->cnt.rx_not_ours++;
	} else if (type == NET_ETHERTYPE_ARP) {
		net_arp_input(s, p, plen, rx_flags);
	} else if (type == NET_ETHERTYPE_IPV4) {
		if (memcmp(dmac, s->cfg.mac, 6) != 0) {
			s->cnt.rx_not_ours++; /* IP in a broadcast frame: not for a host */
			return;
		}
		ipv4_input(s, smac, p, plen, rx_flags);
	} else {
		s->cnt.rx_not_ours++;
	}
}
