/* The link side of output: frame buffers, Ethernet and IP headers with their checksums
 * (computed, or left to the NIC), the fault-injection tap every frame out passes, and ARP
 * (RFC 826), which finds where IPv4 frames go. Both frame input (net_ip.c) and TCP
 * (net_tcp*.c) send through here; nothing here calls back up into them. */
#include "net_internal.h"

#include <string.h>

const uint8_t net_eth_bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* ---- transmit ---- */

static void tx_frame(struct net_stack *s, void *handle, uint8_t *frame, size_t len,
		     const struct net_tx_meta *meta)
{
	s->cnt.tx_frames++;
	if (__builtin_expect(s->fault != NULL, 0) && net_fault_tx(s, frame, len, meta)) {
		/* net_fault_tx kept a copy (or dropped it): give the buffer back by sending
		 * nothing of it. The glue frees a zero-length frame. */
		s->ops.tx_send(s->ops.ctx, handle, 0, meta);
		return;
	}
	s->ops.tx_send(s->ops.ctx, handle, len, meta);
}

uint8_t *net_tx_begin(struct net_stack *s, void **handle, uint8_t **frame, size_t l3len,
		      size_t l4len)
{
	*handle = s->ops.tx_alloc(s->ops.ctx, frame, NET_ETH_HLEN + l3len + l4len);
	if (!*handle) {
		s->cnt.tx_alloc_fail++;
		return NULL;
	}
	return *frame + NET_ETH_HLEN + l3len;
}

void net_tx_ipv6(struct net_stack *s, void *handle, uint8_t *frame, const uint8_t dmac[6],
		 const uint8_t src[16], const uint8_t dst[16], uint8_t proto, size_t l4len,
		 size_t l4hdr)
{
	memcpy(frame, dmac, 6);
	memcpy(frame + 6, s->cfg.mac, 6);
	net_put16(frame + 12, NET_ETHERTYPE_IPV6);
	uint8_t *ip = frame + NET_ETH_HLEN;
	net_put32(ip, 0x60000000u);
	net_put16(ip + 4, (uint16_t)l4len);
	ip[6] = proto;
	/* RFC 4861 7.1: neighbour discovery must carry hop limit 255; our other ICMPv6
	 * messages may as well. */
	ip[7] = proto == 58 ? 255 : 64;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	uint8_t *l4 = ip + NET_IP6_HLEN;
	/* RFC 8200 8.1 pseudo-header. */
	uint32_t ph = net_csum_add(net_csum_add(0, src, 16), dst, 16) + proto + (uint32_t)l4len;
	struct net_tx_meta meta = { NET_ETH_HLEN, NET_IP6_HLEN, (uint16_t)l4hdr, 0 };
	if (proto == 6) {
		if (s->cfg.offload & NET_OFFLOAD_TCP_CKSUM) {
			meta.offload |= NET_OFFLOAD_TCP_CKSUM;
			net_put16(l4 + 16, (uint16_t)~net_csum_fold(ph));
		} else {
			net_put16(l4 + 16, 0);
			net_put16(l4 + 16, net_csum_fold(net_csum_add(ph, l4, l4len)));
		}
	} else if (proto == 58) {
		net_put16(l4 + 2, 0);
		net_put16(l4 + 2, net_csum_fold(net_csum_add(ph, l4, l4len)));
	}
	tx_frame(s, handle, frame, NET_ETH_HLEN + NET_IP6_HLEN + l4len, &meta);
}


void net_tx_ipv4(struct net_stack *s, void *handle, uint8_t *frame, const uint8_t dmac[6],
		 uint32_t src, uint32_t dst, uint8_t proto, size_t l4len, size_t l4hdr)
{
	memcpy(frame, dmac, 6);
	memcpy(frame + 6, s->cfg.mac, 6);
	net_put16(frame + 12, NET_ETHERTYPE_IPV4);
	uint8_t *ip = frame + NET_ETH_HLEN;
	size_t total = NET_IP_HLEN + l4len;
	ip[0] = 0x45;
	ip[1] = 0;
	net_put16(ip + 2, (uint16_t)total);
	net_put16(ip + 4, 0); /* ID: DF is set, RFC 6864 4.1 allows any value */
	net_put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = proto;
	net_put16(ip + 10, 0);
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	struct net_tx_meta meta = { NET_ETH_HLEN, NET_IP_HLEN, (uint16_t)l4hdr, 0 };
	if (s->cfg.offload & NET_OFFLOAD_IPV4_CKSUM)
		meta.offload |= NET_OFFLOAD_IPV4_CKSUM;
	else
		net_put16(ip + 10, net_csum_fold(net_csum_add(0, ip, NET_IP_HLEN)));
	uint8_t *l4 = ip + NET_IP_HLEN;
	if (proto == 6) {
		/* Pseudo-header (RFC 9293 3.1). */
		uint32_t ph = net_csum_add(0, ip + 12, 8) + 6 + (uint32_t)l4len;
		if (s->cfg.offload & NET_OFFLOAD_TCP_CKSUM) {
			meta.offload |= NET_OFFLOAD_TCP_CKSUM;
			net_put16(l4 + 16, (uint16_t)~net_csum_fold(ph));
		} else {
			net_put16(l4 + 16, 0);
			net_put16(l4 + 16, net_csum_fold(net_csum_add(ph, l4, l4len)));
		}
	} else if (proto == 1) {
		net_put16(l4 + 2, 0);
		net_put16(l4 + 2, net_csum_fold(net_csum_add(0, l4, l4len)));
	}
	tx_frame(s, handle, frame, NET_ETH_HLEN + total, &meta);
}

/* ---- ARP ---- */

bool net_arp_lookup(struct net_stack *s, uint32_t ip, uint8_t mac[6])
{
	for (unsigned i = 0; i < NET_ARP_CACHE; i++)
		if (s->arp[i].used && s->arp[i].ip == ip) {
			memcpy(mac, s->arp[i].mac, 6);
			return true;
		}
	return false;
}

bool net_stack_gateway_mac(const struct net_stack *s, uint8_t mac[6])
{
	return s->cfg.ipv4_gateway &&
	       net_arp_lookup((struct net_stack *)s, s->cfg.ipv4_gateway, mac);
}

static void arp_update(struct net_stack *s, uint32_t ip, const uint8_t mac[6], bool create)
{
	unsigned oldest = 0;
	for (unsigned i = 0; i < NET_ARP_CACHE; i++) {
		if (s->arp[i].used && s->arp[i].ip == ip) {
			memcpy(s->arp[i].mac, mac, 6);
			s->arp[i].at = s->now_ms;
			return;
		}
		if (!s->arp[i].used ||
		    (s->arp[oldest].used && SEQ_LT(s->arp[i].at, s->arp[oldest].at)))
			oldest = i;
	}
	if (!create)
		return;
	/* The gateway is never evicted by other entries. */
	if (s->arp[oldest].used && s->arp[oldest].ip == s->cfg.ipv4_gateway)
		oldest = (oldest + 1) % NET_ARP_CACHE;
	s->arp[oldest] = (struct net_arp_entry){ ip, { 0 }, 1, s->now_ms };
	memcpy(s->arp[oldest].mac, mac, 6);
}

/* spa: the sender protocol address, ours (an answer says the address asked for). */
static void arp_send(struct net_stack *s, uint16_t op, uint32_t spa, const uint8_t tha[6],
		     uint32_t tpa, const uint8_t dmac[6])
{
	uint8_t *frame;
	void *h = s->ops.tx_alloc(s->ops.ctx, &frame, 60);
	if (!h) {
		s->cnt.tx_alloc_fail++;
		return;
	}
	memset(frame, 0, 60); /* minimum Ethernet frame, padded */
	memcpy(frame, dmac, 6);
	memcpy(frame + 6, s->cfg.mac, 6);
	net_put16(frame + 12, NET_ETHERTYPE_ARP);
	uint8_t *a = frame + NET_ETH_HLEN;
	net_put16(a, 1); /* Ethernet */
	net_put16(a + 2, NET_ETHERTYPE_IPV4);
	a[4] = 6;
	a[5] = 4;
	net_put16(a + 6, op);
	memcpy(a + 8, s->cfg.mac, 6);
	memcpy(a + 14, &spa, 4);
	memcpy(a + 18, tha, 6);
	memcpy(a + 24, &tpa, 4);
	s->cnt.tx_arp++;
	struct net_tx_meta meta = { NET_ETH_HLEN, 0, 0, 0 };
	tx_frame(s, h, frame, 60, &meta);
}

void net_arp_request(struct net_stack *s, uint32_t ip)
{
	static const uint8_t zero[6];
	s->arp_next_try = s->now_ms + 1000;
	arp_send(s, 1, s->cfg.ipv4 ? s->cfg.ipv4 : s->cfg.ipv4_src_base, zero, ip,
		 net_eth_bcast);
}

/* RFC 826 "Packet reception": merge the sender into the cache if we hold it; if the
 * request is for us, add it and reply. */
void net_arp_input(struct net_stack *s, const uint8_t *a, size_t len, unsigned rx_flags)
{
	s->cnt.rx_arp++;
	if (len < 28 || net_get16(a) != 1 || net_get16(a + 2) != NET_ETHERTYPE_IPV4 ||
	    a[4] != 6 || a[5] != 4) {
		s->cnt.rx_bad_eth++;
		return;
	}
	uint16_t op = net_get16(a + 6);
	uint32_t spa, tpa;
	memcpy(&spa, a + 14, 4);
	memcpy(&tpa, a + 24, 4);
	const uint8_t *sha = a + 8;
	/* Refuse broadcast/multicast sender hardware addresses and a zero sender IP
	 * (an ARP probe, RFC 5227) as cache material. */
	bool sane = !(sha[0] & 1) && spa != 0;
	bool for_us = net_ipv4_ours(s, tpa);
	if (sane)
		arp_update(s, spa, sha, for_us);
	if (for_us && op == 1 && !(rx_flags & NET_RX_LEARN_ONLY))
		arp_send(s, 2, tpa, sha, spa, sha);
}
