/* Below TCP: Ethernet, ARP (RFC 826), IPv4 validation (RFC 1122 3.2.1), ICMP echo and
 * unreachable (RFC 792, 1122 3.2.2); and the timer wheel. */
#include <errno.h>

#include "dataplane/net/net_internal.h"
#include "dataplane/net/net_timer.h"
#include "net_test.h"

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static size_t arp_frame(uint8_t *f, uint16_t op, const uint8_t dmac[6], uint32_t spa,
			uint32_t tpa)
{
	memset(f, 0, 60);
	memcpy(f, dmac, 6);
	memcpy(f + 6, t_peer_mac, 6);
	f[12] = 0x08;
	f[13] = 0x06;
	uint8_t *a = f + 14;
	a[1] = 1;
	a[2] = 8;
	a[4] = 6;
	a[5] = 4;
	a[7] = (uint8_t)op;
	memcpy(a + 8, t_peer_mac, 6);
	memcpy(a + 14, &spa, 4);
	memcpy(a + 24, &tpa, 4);
	return 60;
}

static void test_arp_reply(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t f[64];
	size_t n = arp_frame(f, 1, bcast, t_ip(T_PEER_IP), t_ip(T_OUR_IP));
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	const uint8_t *r = t_tx[0].d;
	CHECK_INT_EQ(t_tx[0].len, 60);
	CHECK_INT_EQ(memcmp(r, t_peer_mac, 6), 0);
	CHECK_INT_EQ(memcmp(r + 6, t_our_mac, 6), 0);
	CHECK_INT_EQ(r[12] << 8 | r[13], 0x0806);
	CHECK_INT_EQ(r[14 + 7], 2); /* reply */
	CHECK_INT_EQ(memcmp(r + 14 + 8, t_our_mac, 6), 0);
	uint32_t ours = t_ip(T_OUR_IP), theirs = t_ip(T_PEER_IP);
	CHECK_INT_EQ(memcmp(r + 14 + 14, &ours, 4), 0);
	CHECK_INT_EQ(memcmp(r + 14 + 18, t_peer_mac, 6), 0);
	CHECK_INT_EQ(memcmp(r + 14 + 24, &theirs, 4), 0);
	/* For another address: silence. Truncated: silence. */
	n = arp_frame(f, 1, bcast, t_ip(T_PEER_IP), t_ip("192.0.2.99"));
	net_stack_input(s, f, n, 0, t_now);
	net_stack_input(s, f, 14 + 20, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	net_stack_destroy(s);
}

static void test_arp_gateway(void)
{
	struct net_config cfg = { .ipv4_gateway = t_ip("192.0.2.1") };
	struct net_stack *s = t_stack(&cfg);
	/* Created: a broadcast request for the gateway. */
	CHECK_INT_EQ(t_ntx, 1);
	const uint8_t *r = t_tx[0].d;
	CHECK_INT_EQ(memcmp(r, bcast, 6), 0);
	CHECK_INT_EQ(r[14 + 7], 1);
	uint32_t gw = t_ip("192.0.2.1");
	CHECK_INT_EQ(memcmp(r + 14 + 24, &gw, 4), 0);
	uint8_t mac[6];
	CHECK(!net_stack_gateway_mac(s, mac));
	/* Unanswered: asked again after a second, not before. */
	t_advance(s, 999);
	CHECK_INT_EQ(t_ntx, 1);
	t_advance(s, 2);
	CHECK_INT_EQ(t_ntx, 2);
	/* The reply fills the cache; no more requests. */
	uint8_t f[64];
	size_t n = arp_frame(f, 2, t_our_mac, gw, t_ip(T_OUR_IP));
	net_stack_input(s, f, n, 0, t_now);
	CHECK(net_stack_gateway_mac(s, mac));
	CHECK_INT_EQ(memcmp(mac, t_peer_mac, 6), 0);
	t_advance(s, 5000);
	CHECK_INT_EQ(t_ntx, 2);
	/* An active open to an off-link address goes to the gateway's MAC. */
	struct net_conn *c = net_conn_connect(s, t_ip("198.51.100.7"), 25, 0, t_now);
	CHECK(c != NULL);
	CHECK_INT_EQ(t_ntx, 3);
	CHECK_INT_EQ(memcmp(t_tx[2].d, t_peer_mac, 6), 0);
	struct pseg syn = t_last();
	CHECK_INT_EQ(syn.flags, F_SYN);
	CHECK(syn.mss == 1460 && syn.sackok && syn.ts && syn.ws >= 0);
	net_stack_destroy(s);
}

/* A source range (net_config.ipv4_src_base/count): ARP is answered for each address of it,
 * from that address; an active open leaves from the address asked for; an address outside
 * the range is neither answered nor usable. */
static void test_src_range(void)
{
	struct net_config bad = { .ipv4_src_base = t_ip("255.255.255.0"), .ipv4_src_count = 512 };
	CHECK(t_stack(&bad) == NULL);
	struct net_config cfg = { .ipv4_src_base = t_ip("192.0.2.100"), .ipv4_src_count = 100 };
	struct net_stack *s = t_stack(&cfg);
	uint8_t f[64];
	size_t n = arp_frame(f, 1, bcast, t_ip(T_PEER_IP), t_ip("192.0.2.199"));
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	uint32_t asked = t_ip("192.0.2.199");
	CHECK_INT_EQ(memcmp(t_tx[0].d + 14 + 14, &asked, 4), 0);
	CHECK_INT_EQ(t_tx[0].d[14 + 7], 2);
	n = arp_frame(f, 1, bcast, t_ip(T_PEER_IP), t_ip("192.0.2.200"));
	net_stack_input(s, f, n, 0, t_now);
	n = arp_frame(f, 1, bcast, t_ip(T_PEER_IP), t_ip("192.0.2.99"));
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	/* the peer is known now (it asked): open from two addresses of the range */
	struct net_conn *c = net_conn_connect_from(s, t_ip("192.0.2.150"), t_ip(T_PEER_IP), 25,
						   4000, t_now);
	CHECK(c != NULL);
	CHECK_INT_EQ(t_ntx, 2);
	uint32_t src = t_ip("192.0.2.150");
	CHECK_INT_EQ(memcmp(t_tx[1].d + 14 + 12, &src, 4), 0);
	int fam;
	uint8_t a[16];
	uint16_t lport;
	net_conn_local(c, &fam, a, &lport);
	CHECK_INT_EQ(fam, AF_INET);
	CHECK_INT_EQ(memcmp(a, &src, 4), 0);
	CHECK_INT_EQ(lport, 4000);
	/* the same local port from another address is another connection */
	CHECK(net_conn_connect_from(s, t_ip("192.0.2.151"), t_ip(T_PEER_IP), 25, 4000, t_now));
	errno = 0;
	CHECK(!net_conn_connect_from(s, t_ip("192.0.2.200"), t_ip(T_PEER_IP), 25, 0, t_now));
	CHECK_INT_EQ(errno, EADDRNOTAVAIL);
	CHECK_INT_EQ(net_stack_conn_count(s), 2);
	net_stack_destroy(s);
}

static uint16_t csum(const uint8_t *p, size_t n)
{
	return t_csum(0, p, n);
}

/* An IPv4 frame to us with the given protocol and payload. */
static size_t ip_frame(uint8_t *f, uint8_t proto, const uint8_t *payload, size_t len)
{
	memcpy(f, t_our_mac, 6);
	memcpy(f + 6, t_peer_mac, 6);
	f[12] = 8;
	f[13] = 0;
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)((20 + len) >> 8);
	ip[3] = (uint8_t)(20 + len);
	ip[8] = 64;
	ip[9] = proto;
	uint32_t src = t_ip(T_PEER_IP), dst = t_ip(T_OUR_IP);
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = csum(ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	memcpy(ip + 20, payload, len);
	return 34 + len;
}

static void fix_ip_csum(uint8_t *f)
{
	uint8_t *ip = f + 14;
	ip[10] = ip[11] = 0;
	uint16_t c = csum(ip, (size_t)(ip[0] & 15) * 4);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
}

/* A copy of a neighbour frame another stack instance received (NET_RX_LEARN_ONLY) fills
 * the cache and answers nothing; any other frame so marked is ignored. */
static void test_learn_only(void)
{
	struct net_config cfg = { .ipv4_gateway = t_ip("192.0.2.1") };
	struct net_stack *s = t_stack(&cfg);
	CHECK_INT_EQ(t_ntx, 1); /* its own request for the gateway */
	uint8_t f[64], mac[6];
	uint32_t gw = t_ip("192.0.2.1");
	/* the gateway asks for us: the copy learns its MAC, the reply is not ours to send */
	size_t n = arp_frame(f, 1, bcast, gw, t_ip(T_OUR_IP));
	CHECK(net_frame_is_neighbour(f, n));
	net_stack_input(s, f, n, NET_RX_LEARN_ONLY, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	CHECK(net_stack_gateway_mac(s, mac));
	CHECK_INT_EQ(memcmp(mac, t_peer_mac, 6), 0);
	/* learnt: no more requests for it */
	t_advance(s, 3000);
	CHECK_INT_EQ(t_ntx, 1);
	/* a TCP SYN marked learn-only is not a neighbour frame and is ignored */
	uint8_t syn[20] = { 0x30, 0x39, 0, 25, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff };
	n = ip_frame(f, 6, syn, sizeof(syn));
	CHECK(!net_frame_is_neighbour(f, n));
	net_stack_input(s, f, n, NET_RX_LEARN_ONLY, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	/* truncated frames are no neighbour frames */
	CHECK(!net_frame_is_neighbour(f, 13));
	net_stack_destroy(s);
}


static void test_icmp_echo(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t echo[64];
	echo[0] = 8;
	echo[1] = 0;
	echo[2] = echo[3] = 0;
	echo[4] = 0x12;
	echo[5] = 0x34; /* id */
	echo[6] = 0;
	echo[7] = 7; /* seq */
	for (int i = 8; i < 64; i++)
		echo[i] = (uint8_t)i;
	uint16_t c = csum(echo, 64);
	echo[2] = (uint8_t)(c >> 8);
	echo[3] = (uint8_t)c;
	uint8_t f[256];
	size_t n = ip_frame(f, 1, echo, 64);
	/* Ethernet padding after the IP packet is ignored. */
	memset(f + n, 0xee, 10);
	net_stack_input(s, f, n + 10, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	const uint8_t *r = t_tx[0].d;
	CHECK_INT_EQ(t_tx[0].len, 34 + 64);
	CHECK_INT_EQ(memcmp(r, t_peer_mac, 6), 0);
	CHECK_INT_EQ(csum(r + 14, 20), 0);
	CHECK_INT_EQ(r[14 + 9], 1);
	CHECK_INT_EQ(memcmp(r + 14 + 16, f + 14 + 12, 4), 0); /* back to the sender */
	const uint8_t *e = r + 34;
	CHECK_INT_EQ(e[0], 0);
	CHECK_INT_EQ(csum(e, 64), 0);
	CHECK_MEM_EQ(e + 4, 60, echo + 4, 60);
	/* A bad ICMP checksum: nothing. */
	f[34 + 10] ^= 1;
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	net_stack_destroy(s);
}

static void test_ip_validation(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t echo[8] = { 8, 0, 0xf7, 0xff, 0, 0, 0, 0 };
	uint8_t f[256];
	size_t n = ip_frame(f, 1, echo, 8);
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1); /* the valid one is answered */
	const struct net_counters *k = net_stack_counters(s);
	uint8_t g[256];
	/* Bad header checksum. */
	memcpy(g, f, n);
	g[14 + 10] ^= 0xff;
	net_stack_input(s, g, n, 0, t_now);
	CHECK_INT_EQ(k->rx_bad_csum, 1);
	/* ...unless the NIC says it checked (then the header is trusted as it is). */
	net_stack_input(s, g, n, NET_RX_IP_CKSUM_GOOD, t_now);
	CHECK_INT_EQ(t_ntx, 2);
	/* Version 6 in an IPv4 frame, IHL 4, total length beyond the frame, below IHL. */
	memcpy(g, f, n);
	g[14] = 0x65;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	g[14] = 0x44;
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	g[14 + 3] = 200;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	g[14 + 3] = 10;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	CHECK_INT_EQ(k->rx_bad_ip, 4);
	/* Fragments (MF, or an offset) are dropped and counted. */
	memcpy(g, f, n);
	g[14 + 6] = 0x20;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	g[14 + 7] = 0x10;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	CHECK_INT_EQ(k->rx_ip_fragments, 2);
	/* Not our address; from a broadcast source; a frame for another MAC. */
	memcpy(g, f, n);
	g[14 + 19] = 99;
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	memset(g + 14 + 12, 0xff, 4);
	fix_ip_csum(g);
	net_stack_input(s, g, n, 0, t_now);
	memcpy(g, f, n);
	g[5] = 0x55;
	net_stack_input(s, g, n, 0, t_now);
	/* IP options (IHL 6) are skipped: the echo is still answered. */
	uint8_t h[256];
	memcpy(h, f, 34);
	h[14] = 0x46;
	h[14 + 3] = (uint8_t)(24 + 8);
	memset(h + 34, 1, 4); /* four NOP options */
	memcpy(h + 38, echo, 8);
	fix_ip_csum(h);
	net_stack_input(s, h, 46, 0, t_now);
	CHECK_INT_EQ(t_ntx, 3);
	/* Every length from 0 to the full frame: no crash, no answer from a cut frame. */
	for (size_t cut = 0; cut < n; cut++)
		net_stack_input(s, f, cut, 0, t_now);
	CHECK_INT_EQ(t_ntx, 3);
	net_stack_destroy(s);
}

static void test_unreachable(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t udp[12] = { 0x30, 0x39, 0, 53, 0, 12, 0, 0, 'a', 'b', 'c', 'd' };
	uint8_t f[256];
	size_t n = ip_frame(f, 17, udp, 12);
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	const uint8_t *r = t_tx[0].d;
	CHECK_INT_EQ(r[14 + 9], 1);
	const uint8_t *e = r + 34;
	CHECK_INT_EQ(e[0], 3);
	CHECK_INT_EQ(e[1], 3); /* port unreachable */
	CHECK_INT_EQ(csum(e, t_tx[0].len - 34), 0);
	CHECK_MEM_EQ(e + 8, t_tx[0].len - 42, f + 14, n - 14); /* the whole datagram quoted */
	/* An unknown protocol: protocol unreachable. */
	n = ip_frame(f, 99, udp, 12);
	net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 2);
	CHECK_INT_EQ(t_tx[1].d[34 + 1], 2);
	/* Rate limited: 100 a second by default. */
	for (int i = 0; i < 500; i++)
		net_stack_input(s, f, n, 0, t_now);
	CHECK_INT_EQ(t_ntx, 100);
	net_stack_destroy(s);
}

static int fired[64];
static int nfired;
static struct net_timer_wheel wheel;

static void fire(void *arg, struct net_timer *t)
{
	struct net_timer *base = arg;
	if (nfired < 64)
		fired[nfired++] = (int)(t - base);
}

static void test_timer_wheel(void)
{
	struct net_timer tm[8];
	memset(tm, 0, sizeof(tm));
	net_timer_wheel_init(&wheel, 0xfffff000u); /* the tick counter wraps during the test */
	net_timer_arm(&wheel, &tm[0], 0xfffff000u + 10);
	net_timer_arm(&wheel, &tm[1], 0xfffff000u + 5);
	net_timer_arm(&wheel, &tm[2], 0xfffff000u + 10000); /* beyond one turn */
	net_timer_arm(&wheel, &tm[3], 0xfffff000u + 7);
	net_timer_cancel(&wheel, &tm[3]);
	nfired = 0;
	net_timer_advance(&wheel, 0xfffff000u + 4, fire, tm);
	CHECK_INT_EQ(nfired, 0);
	net_timer_advance(&wheel, 0xfffff000u + 5, fire, tm);
	CHECK_INT_EQ(nfired, 1);
	CHECK_INT_EQ(fired[0], 1);
	net_timer_advance(&wheel, 0xfffff000u + 5000, fire, tm);
	CHECK_INT_EQ(nfired, 2);
	CHECK_INT_EQ(fired[1], 0);
	net_timer_advance(&wheel, 0xfffff000u + 9999, fire, tm);
	CHECK_INT_EQ(nfired, 2);
	net_timer_advance(&wheel, 0xfffff000u + 10000, fire, tm);
	CHECK_INT_EQ(nfired, 3);
	CHECK_INT_EQ(fired[2], 2);
	CHECK_INT_EQ(wheel.armed, 0);
	/* Re-arming moves a timer; a time in the past fires on the next advance. */
	net_timer_arm(&wheel, &tm[4], wheel.now + 100);
	net_timer_arm(&wheel, &tm[4], wheel.now + 3);
	net_timer_arm(&wheel, &tm[5], wheel.now - 50);
	net_timer_advance(&wheel, wheel.now + 1, fire, tm);
	CHECK_INT_EQ(nfired, 4);
	CHECK_INT_EQ(fired[3], 5);
	net_timer_advance(&wheel, wheel.now + 200, fire, tm);
	CHECK_INT_EQ(nfired, 5);
	CHECK_INT_EQ(fired[4], 4);
	CHECK_INT_EQ(wheel.armed, 0);
}

/* Timers due beyond the fine wheel's span wait in the coarse wheel (net_timer.h): each
 * fires exactly at its tick, advancing a millisecond at a time, after a stall of several
 * coarse slots, after a stall longer than the whole coarse span, and beyond the coarse span
 * (a later round), across the tick counter's wrap; a cancelled coarse timer never fires. */
static void test_timer_wheel_coarse(void)
{
	static const uint32_t due[8] = { 4097, 8192, 8193, 600000, 3600000, 6000000, 12345, 5000 };
	struct net_timer tm[8];
	uint32_t t0 = 0xfff00000u; /* wraps an hour and a quarter in */
	memset(tm, 0, sizeof(tm));
	net_timer_wheel_init(&wheel, t0);
	for (int i = 0; i < 8; i++)
		net_timer_arm(&wheel, &tm[i], t0 + due[i]);
	net_timer_cancel(&wheel, &tm[6]);
	nfired = 0;
	/* a millisecond at a time up to 700 s: each fires at its tick, not before */
	for (uint32_t ms = 1; ms <= 700000; ms++) {
		int before = nfired;
		net_timer_advance(&wheel, t0 + ms, fire, tm);
		for (int k = before; k < nfired; k++)
			CHECK_INT_EQ(due[fired[k]], ms);
	}
	CHECK_INT_EQ(nfired, 5); /* 4097, 5000, 8192, 8193, 600000 */
	/* a stall of 40 minutes in one advance: the hour's timer waits, then fires */
	net_timer_advance(&wheel, t0 + 3000000, fire, tm);
	CHECK_INT_EQ(nfired, 5);
	net_timer_advance(&wheel, t0 + 3599999, fire, tm);
	CHECK_INT_EQ(nfired, 5);
	net_timer_advance(&wheel, t0 + 3600000, fire, tm);
	CHECK_INT_EQ(nfired, 6);
	CHECK_INT_EQ(fired[5], 4);
	/* beyond the coarse span (100 minutes), reached by a stall longer than the span */
	net_timer_advance(&wheel, t0 + 5999999, fire, tm);
	CHECK_INT_EQ(nfired, 6);
	net_timer_advance(&wheel, t0 + 6000000 + 2 * 4096 * 1024, fire, tm);
	CHECK_INT_EQ(nfired, 7);
	CHECK_INT_EQ(fired[6], 5);
	CHECK_INT_EQ(wheel.armed, 0);
	/* armed from a fire callback's time (now = tick - 1) far ahead, then a long stall */
	net_timer_arm(&wheel, &tm[0], wheel.now + 5000000);
	net_timer_advance(&wheel, wheel.now + 4999999, fire, tm);
	CHECK_INT_EQ(nfired, 7);
	net_timer_advance(&wheel, wheel.now + 1, fire, tm);
	CHECK_INT_EQ(nfired, 8);
	CHECK_INT_EQ(wheel.armed, 0);
}

static void test_create_rejects(void)
{
	struct net_config cfg = { .mtu = 100 };
	CHECK(t_stack(&cfg) == NULL);
	struct net_config cfg2 = { .rcvbuf = 10 };
	CHECK(t_stack(&cfg2) == NULL);
	struct net_config cfg3 = { .delack_ms = 500 };
	CHECK(t_stack(&cfg3) == NULL);
}

static void test_fault_parse(void)
{
	struct net_fault_config f;
	CHECK_INT_EQ(net_fault_parse("seed=7,drop=5,reorder=3,tx_dup=1,delay_us=500", &f), 0);
	CHECK_INT_EQ(f.seed, 7);
	CHECK_INT_EQ(f.rx_drop_pct, 5);
	CHECK_INT_EQ(f.tx_drop_pct, 5);
	CHECK_INT_EQ(f.rx_reorder_pct, 3);
	CHECK_INT_EQ(f.tx_reorder_pct, 3);
	CHECK_INT_EQ(f.tx_dup_pct, 1);
	CHECK_INT_EQ(f.rx_dup_pct, 0);
	CHECK_INT_EQ(f.delay_us, 500);
	CHECK_INT_EQ(net_fault_parse("", &f), 0);
	CHECK_INT_EQ(f.rx_drop_pct, 0);
	CHECK_INT_EQ(net_fault_parse("drop=101", &f), -EINVAL);
	CHECK_INT_EQ(net_fault_parse("drops=1", &f), -EINVAL);
	CHECK_INT_EQ(net_fault_parse("drop=", &f), -EINVAL);
	CHECK_INT_EQ(net_fault_parse("drop=1x", &f), -EINVAL);
	CHECK_INT_EQ(net_fault_parse("drop", &f), -EINVAL);
	CHECK_INT_EQ(net_fault_parse("delay_us=0", &f), -EINVAL);
}

/* Same seed, same frames: the same faults (reproducible runs). Off: every frame passes. */
static void test_fault_rx(void)
{
	struct net_stack *s = t_stack(NULL);
	uint8_t echo[8] = { 8, 0, 0xf7, 0xff, 0, 0, 0, 0 };
	uint8_t f[128];
	memcpy(f, t_our_mac, 6);
	memcpy(f + 6, t_peer_mac, 6);
	f[12] = 8;
	f[13] = 0;
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[3] = 28;
	ip[8] = 64;
	ip[9] = 1;
	uint32_t src = t_ip(T_PEER_IP), dst = t_ip(T_OUR_IP);
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = t_csum(0, ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	memcpy(ip + 20, echo, 8);
	int counts[2];
	for (int round = 0; round < 2; round++) {
		t_clear_tx();
		struct net_fault_config fc = { .seed = 99, .rx_drop_pct = 30, .rx_dup_pct = 10,
					       .rx_reorder_pct = 10 };
		CHECK_INT_EQ(net_stack_set_fault(s, &fc), 0);
		for (int i = 0; i < 50; i++)
			net_stack_input(s, f, 42, 0, t_now);
		t_advance(s, 10); /* held frames come out */
		counts[round] = t_ntx;
		net_stack_set_fault(s, NULL);
	}
	CHECK_INT_EQ(counts[0], counts[1]);
	CHECK(counts[0] > 20 && counts[0] < 50);
	t_clear_tx();
	for (int i = 0; i < 50; i++)
		net_stack_input(s, f, 42, 0, t_now);
	CHECK_INT_EQ(t_ntx, 50);
	net_stack_destroy(s);
}

/* The checksum's sum as RFC 1071 defines it, a 16-bit word at a time: the reference for
 * net_csum_add(). */
static uint64_t csum_reference(uint64_t sum, const uint8_t *p, size_t len)
{
	for (; len > 1; p += 2, len -= 2)
		sum += (uint64_t)(p[0] << 8 | p[1]);
	if (len)
		sum += (uint64_t)p[0] << 8;
	return sum;
}

/* Every length and alignment, with starting sums that carry: the same checksum as the
 * reference, and a sum that is zero exactly when the reference's is (a folded 0 and 0xffff
 * differ). Heap bytes of exactly the length: the sanitizer sees a read past them. */
static void test_csum(void)
{
	static const uint32_t starts[] = { 0, 1, 0xffff, 0x1fffe, 0x7fffffffu, 0xfffe0001u };
	uint8_t pat[200];
	for (size_t i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 197u + 13u);
	pat[50] = pat[51] = 0xff;
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; off + len <= sizeof(pat); len++) {
			uint8_t *b = malloc(len ? len : 1);
			memcpy(b, pat + off, len);
			for (size_t k = 0; k < sizeof(starts) / sizeof(starts[0]); k++) {
				uint64_t want = csum_reference(starts[k], b, len);
				uint32_t got = net_csum_add(starts[k], b, len);
				CHECK_INT_EQ(got % 0xffff, want % 0xffff);
				CHECK_INT_EQ(got == 0, want == 0);
				uint64_t w = want;
				while (w >> 16)
					w = (w & 0xffff) + (w >> 16);
				CHECK_INT_EQ(net_csum_fold(got + 6 + (uint32_t)len),
					     net_csum_fold((uint32_t)w + 6 + (uint32_t)len));
			}
			free(b);
		}
	}
	uint8_t zeros[64] = { 0 }, ones[64];
	memset(ones, 0xff, sizeof(ones));
	CHECK_INT_EQ(net_csum_fold(net_csum_add(0, zeros, sizeof(zeros))), 0xffff);
	CHECK_INT_EQ(net_csum_fold(net_csum_add(0, ones, sizeof(ones))), 0);
	/* RFC 1071 3's example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2 */
	static const uint8_t ex[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	CHECK_INT_EQ(net_csum_add(0, ex, sizeof(ex)), 0xddf2);
}

int main(void)
{
	RUN_TEST(test_csum);
	RUN_TEST(test_fault_parse);
	RUN_TEST(test_fault_rx);
	RUN_TEST(test_arp_reply);
	RUN_TEST(test_src_range);
	RUN_TEST(test_arp_gateway);
	RUN_TEST(test_learn_only);
	RUN_TEST(test_icmp_echo);
	RUN_TEST(test_ip_validation);
	RUN_TEST(test_unreachable);
	RUN_TEST(test_timer_wheel);
	RUN_TEST(test_timer_wheel_coarse);
	RUN_TEST(test_create_rejects);
	t_clear_tx();
	return TEST_RESULT();
}
