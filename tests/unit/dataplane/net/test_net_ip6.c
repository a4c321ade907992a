/* IPv6: neighbour discovery (RFC 4861), ICMPv6 echo (RFC 4443), TCP over IPv6 with the
 * RFC 8200 pseudo-header, and what is dropped (fragments, extension headers). */
#include <sys/socket.h>

#include "net_test.h"

static uint8_t our6[16], ll6[16], router6[16], client6[16];

static void addrs(void)
{
	inet_pton(AF_INET6, "2001:db8::10", our6);
	inet_pton(AF_INET6, "fe80::1", router6);
	inet_pton(AF_INET6, "2001:db8:1::99", client6);
	/* fe80:: + modified EUI-64 of 02:00:00:00:00:0a */
	inet_pton(AF_INET6, "fe80::ff:fe00:a", ll6);
}

static struct net_stack *stack6(bool gateway)
{
	addrs();
	struct net_config cfg = { 0 };
	memcpy(cfg.ipv6, our6, 16);
	if (gateway)
		memcpy(cfg.ipv6_gateway, router6, 16);
	return t_stack(&cfg);
}

static uint32_t sum16(uint32_t s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)p[n - 1] << 8;
	return s;
}

static uint16_t l4sum(const uint8_t *src, const uint8_t *dst, uint8_t nh, const uint8_t *l4,
		      size_t len)
{
	uint32_t s = sum16(sum16(0, src, 16), dst, 16) + nh + (uint32_t)len;
	s = sum16(s, l4, len);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* An IPv6 frame; the checksum at csum_off in the payload is filled (unless -1). */
static size_t frame6(uint8_t *f, const uint8_t dmac[6], const uint8_t *src, const uint8_t *dst,
		     uint8_t nh, uint8_t hop, uint8_t *pl, size_t len, int csum_off)
{
	memcpy(f, dmac, 6);
	memcpy(f + 6, t_peer_mac, 6);
	f[12] = 0x86;
	f[13] = 0xdd;
	uint8_t *ip = f + 14;
	memset(ip, 0, 40);
	ip[0] = 0x60;
	ip[4] = (uint8_t)(len >> 8);
	ip[5] = (uint8_t)len;
	ip[6] = nh;
	ip[7] = hop;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
	if (csum_off >= 0) {
		pl[csum_off] = pl[csum_off + 1] = 0;
		uint16_t c = l4sum(src, dst, nh, pl, len);
		pl[csum_off] = (uint8_t)(c >> 8);
		pl[csum_off + 1] = (uint8_t)c;
	}
	memcpy(ip + 40, pl, len);
	return 54 + len;
}

/* Checks the IPv6 frame i: returns its payload, and length, after checking the L4 sum. */
static const uint8_t *sent6(int i, size_t *len, uint8_t *nh, uint8_t *hop)
{
	const uint8_t *f = t_tx[i].d;
	if (t_tx[i].len < 54 || f[12] != 0x86 || f[13] != 0xdd)
		return NULL;
	const uint8_t *ip = f + 14;
	*len = (size_t)(ip[4] << 8 | ip[5]);
	if (*len + 54 != t_tx[i].len)
		return NULL;
	*nh = ip[6];
	*hop = ip[7];
	if (l4sum(ip + 8, ip + 24, ip[6], ip + 40, *len) != 0)
		return NULL;
	return ip + 40;
}

static size_t ns(uint8_t *m, const uint8_t target[16], bool sll)
{
	memset(m, 0, 32);
	m[0] = 135;
	memcpy(m + 8, target, 16);
	if (!sll)
		return 24;
	m[24] = 1;
	m[25] = 1;
	memcpy(m + 26, t_peer_mac, 6);
	return 32;
}

static void test_ns_na(void)
{
	struct net_stack *s = stack6(false);
	uint8_t m[64], f[256], group[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff };
	memcpy(group + 13, our6 + 13, 3);
	uint8_t gmac[6] = { 0x33, 0x33, 0xff, our6[13], our6[14], our6[15] };
	size_t n = ns(m, our6, true);
	size_t fl = frame6(f, gmac, router6, group, 58, 255, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	size_t len = 0;
	uint8_t nh = 0, hop = 0;
	const uint8_t *na = sent6(0, &len, &nh, &hop);
	CHECK(na != NULL);
	if (na) {
		CHECK_INT_EQ(nh, 58);
		CHECK_INT_EQ(hop, 255);
		CHECK_INT_EQ(len, 32);
		CHECK_INT_EQ(na[0], 136);
		CHECK_INT_EQ(na[4], 0x60); /* Solicited, Override */
		CHECK_INT_EQ(memcmp(na + 8, our6, 16), 0);
		CHECK_INT_EQ(na[24], 2);
		CHECK_INT_EQ(memcmp(na + 26, t_our_mac, 6), 0);
		const uint8_t *ip = t_tx[0].d + 14;
		CHECK_INT_EQ(memcmp(ip + 8, our6, 16), 0);
		CHECK_INT_EQ(memcmp(ip + 24, router6, 16), 0);
		CHECK_INT_EQ(memcmp(t_tx[0].d, t_peer_mac, 6), 0);
	}
	/* Hop limit not 255 (it was forwarded): ignored (RFC 4861 7.1.1). */
	fl = frame6(f, gmac, router6, group, 58, 64, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	/* Bad checksum: ignored. */
	fl = frame6(f, gmac, router6, group, 58, 255, m, n, 2);
	f[54 + 10] ^= 1;
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	/* Another target: ignored. */
	n = ns(m, client6, true);
	fl = frame6(f, gmac, router6, group, 58, 255, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	/* Our link-local address answers too. */
	uint8_t lgroup[16];
	memcpy(lgroup, group, 16);
	memcpy(lgroup + 13, ll6 + 13, 3);
	n = ns(m, ll6, true);
	fl = frame6(f, gmac, router6, lgroup, 58, 255, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 2);
	/* DAD (source ::, no SLLA): the answer goes to all-nodes, without S. */
	static const uint8_t unspec[16];
	n = ns(m, our6, false);
	fl = frame6(f, gmac, unspec, group, 58, 255, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 3);
	na = sent6(2, &len, &nh, &hop);
	CHECK(na && na[4] == 0x20);
	CHECK_INT_EQ(t_tx[2].d[0], 0x33);
	CHECK_INT_EQ(t_tx[2].d[5], 1);
	/* A zero-length option makes the NS invalid (RFC 4861 4.6). */
	n = ns(m, our6, true);
	m[25] = 0;
	fl = frame6(f, gmac, router6, group, 58, 255, m, n, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 3);
	net_stack_destroy(s);
}

static void test_gateway6(void)
{
	struct net_stack *s = stack6(true);
	CHECK_INT_EQ(t_ntx, 1);
	size_t len = 0;
	uint8_t nh = 0, hop = 0;
	const uint8_t *m = sent6(0, &len, &nh, &hop);
	CHECK(m && m[0] == 135 && hop == 255);
	if (m) {
		CHECK_INT_EQ(memcmp(m + 8, router6, 16), 0);
		const uint8_t *ip = t_tx[0].d + 14;
		CHECK_INT_EQ(memcmp(ip + 8, ll6, 16), 0); /* from link-local */
		uint8_t g[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1 };
		CHECK_INT_EQ(memcmp(ip + 24, g, 16), 0);
		uint8_t dmac[6] = { 0x33, 0x33, 0xff, 0, 0, 1 };
		CHECK_INT_EQ(memcmp(t_tx[0].d, dmac, 6), 0);
		CHECK_INT_EQ(m[24], 1);
		CHECK_INT_EQ(memcmp(m + 26, t_our_mac, 6), 0);
	}
	uint8_t mac[6];
	CHECK(!net_stack_gateway6_mac(s, mac));
	t_advance(s, 1001);
	CHECK_INT_EQ(t_ntx, 2); /* asked again */
	uint8_t na[32], f[256];
	memset(na, 0, 32);
	na[0] = 136;
	na[4] = 0xe0;
	memcpy(na + 8, router6, 16);
	na[24] = 2;
	na[25] = 1;
	memcpy(na + 26, t_peer_mac, 6);
	size_t fl = frame6(f, t_our_mac, router6, ll6, 58, 255, na, 32, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK(net_stack_gateway6_mac(s, mac));
	CHECK_INT_EQ(memcmp(mac, t_peer_mac, 6), 0);
	t_advance(s, 5000);
	CHECK_INT_EQ(t_ntx, 2);
	net_stack_destroy(s);
}

static void test_echo6(void)
{
	struct net_stack *s = stack6(false);
	uint8_t e[40], f[256];
	memset(e, 0, sizeof(e));
	e[0] = 128;
	e[4] = 0xab;
	e[7] = 3;
	for (int i = 8; i < 40; i++)
		e[i] = (uint8_t)i;
	size_t fl = frame6(f, t_our_mac, client6, our6, 58, 60, e, 40, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	size_t len = 0;
	uint8_t nh = 0, hop = 0;
	const uint8_t *r = sent6(0, &len, &nh, &hop);
	CHECK(r != NULL);
	if (r) {
		CHECK_INT_EQ(r[0], 129);
		CHECK_MEM_EQ(r + 4, len - 4, e + 4, 36);
		CHECK_INT_EQ(memcmp(t_tx[0].d + 14 + 24, client6, 16), 0);
	}
	/* Fragments and extension headers are dropped and counted. */
	fl = frame6(f, t_our_mac, client6, our6, 44, 60, e, 40, -1);
	net_stack_input(s, f, fl, 0, t_now);
	fl = frame6(f, t_our_mac, client6, our6, 0, 60, e, 40, -1);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(net_stack_counters(s)->rx_ip_fragments, 1);
	CHECK_INT_EQ(net_stack_counters(s)->rx_proto_unknown, 1);
	/* Payload length beyond the frame; not our address; a multicast source. */
	fl = frame6(f, t_our_mac, client6, our6, 58, 60, e, 40, 2);
	net_stack_input(s, f, fl - 1, 0, t_now);
	fl = frame6(f, t_our_mac, client6, client6, 58, 60, e, 40, 2);
	net_stack_input(s, f, fl, 0, t_now);
	uint8_t mc[16] = { 0xff, 2, [15] = 1 };
	fl = frame6(f, t_our_mac, mc, our6, 58, 60, e, 40, 2);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	for (size_t cut = 0; cut < fl; cut++)
		net_stack_input(s, f, cut, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	net_stack_destroy(s);
}

static size_t tcp6(uint8_t *t, uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *opt,
		   size_t optlen, const char *data, size_t len)
{
	memset(t, 0, 20);
	t[0] = T_PEER_PORT >> 8;
	t[1] = T_PEER_PORT & 0xff;
	t[3] = T_PORT;
	for (int i = 0; i < 4; i++) {
		t[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
		t[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
	}
	t[12] = (uint8_t)(((20 + optlen) / 4) << 4);
	t[13] = flags;
	t[14] = 0xff;
	t[15] = 0xff;
	if (optlen)
		memcpy(t + 20, opt, optlen);
	if (len)
		memcpy(t + 20 + optlen, data, len);
	return 20 + optlen + len;
}

static void test_tcp6(void)
{
	struct net_stack *s = stack6(false);
	uint8_t t[128], f[256];
	uint8_t mss[4] = { 2, 4, 0x05, 0xa0 }; /* 1440 */
	size_t n = tcp6(t, 7000, 0, F_SYN, mss, 4, NULL, 0);
	size_t fl = frame6(f, t_our_mac, client6, our6, 6, 64, t, n, 16);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, 1);
	size_t len = 0;
	uint8_t nh = 0, hop = 0;
	const uint8_t *sa = sent6(0, &len, &nh, &hop);
	CHECK(sa != NULL);
	if (!sa) {
		net_stack_destroy(s);
		return;
	}
	CHECK_INT_EQ(nh, 6);
	CHECK_INT_EQ(sa[13], F_SYN | F_ACK);
	CHECK_INT_EQ(t_be32(sa + 8), 7001);
	CHECK_INT_EQ(sa[20], 2);
	CHECK_INT_EQ(sa[22] << 8 | sa[23], 1440); /* MTU 1500 - 40 - 20 */
	uint32_t iss = t_be32(sa + 4);
	n = tcp6(t, 7001, iss + 1, F_ACK, NULL, 0, NULL, 0);
	fl = frame6(f, t_our_mac, client6, our6, 6, 64, t, n, 16);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK(t_conn != NULL);
	if (t_conn) {
		int fam = 0;
		uint8_t a[16];
		uint16_t port = 0;
		net_conn_peer(t_conn, &fam, a, &port);
		CHECK_INT_EQ(fam, AF_INET6);
		CHECK_INT_EQ(memcmp(a, client6, 16), 0);
		CHECK_INT_EQ(port, T_PEER_PORT);
		n = tcp6(t, 7001, iss + 1, F_ACK | F_PSH, NULL, 0, "QUIT\r\n", 6);
		fl = frame6(f, t_our_mac, client6, our6, 6, 64, t, n, 16);
		net_stack_input(s, f, fl, 0, t_now);
		size_t got;
		const uint8_t *p = net_conn_peek(t_conn, &got);
		CHECK_MEM_EQ(p, got, "QUIT\r\n", 6);
		net_conn_consume(t_conn, got);
		CHECK_INT_EQ(net_conn_write(t_conn, "221 2.0.0 Bye\r\n", 15), 15);
		const uint8_t *d = sent6(t_ntx - 1, &len, &nh, &hop);
		CHECK(d != NULL);
		if (d) {
			CHECK_INT_EQ(t_be32(d + 8), 7007);
			CHECK_MEM_EQ(d + 20, len - 20, "221 2.0.0 Bye\r\n", 15);
		}
	}
	/* A bad TCP checksum: dropped. And the IPv4-mapped source form is refused on the
	 * wire. */
	int before = t_ntx;
	n = tcp6(t, 1, 0, F_SYN, NULL, 0, NULL, 0);
	t[0] = 0x12;
	fl = frame6(f, t_our_mac, client6, our6, 6, 64, t, n, 16);
	f[54 + 17] ^= 1;
	net_stack_input(s, f, fl, 0, t_now);
	uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 1 };
	fl = frame6(f, t_our_mac, mapped, our6, 6, 64, t, n, 16);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, before);
	/* A closed port answers RST over IPv6 too. */
	n = tcp6(t, 5, 0, F_SYN, NULL, 0, NULL, 0);
	t[3] = 80;
	fl = frame6(f, t_our_mac, client6, our6, 6, 64, t, n, 16);
	net_stack_input(s, f, fl, 0, t_now);
	CHECK_INT_EQ(t_ntx, before + 1);
	const uint8_t *r = sent6(t_ntx - 1, &len, &nh, &hop);
	CHECK(r && r[13] == (F_RST | F_ACK) && t_be32(r + 8) == 6);
	net_stack_destroy(s);
}

int main(void)
{
	RUN_TEST(test_ns_na);
	RUN_TEST(test_gateway6);
	RUN_TEST(test_echo6);
	RUN_TEST(test_tcp6);
	t_clear_tx();
	return TEST_RESULT();
}
