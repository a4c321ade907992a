/* The steering hash: stable per flow, different across flows and keys, 0 for what must
 * stay on the polling lcore (non-TCP, fragments, IPv6 extension headers, short frames),
 * bounded reads at every truncation, and an even spread of owners. */
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_flow.h"
#include "net_test.h"
#include "testing.h"

static const uint64_t key_a[2] = { 0x9e3779b97f4a7c15ULL, 0xbf58476d1ce4e5b9ULL };
static const uint64_t key_b[2] = { 0x94d049bb133111ebULL, 0x2545f4914f6cdd1dULL };

static size_t v4_seg(uint8_t *f, uint32_t src, uint16_t sport, uint8_t flags)
{
	struct tseg t = { .seq = 1, .flags = flags, .win = 1000, .src = src, .sport = sport };
	return t_build(f, &t);
}

/* An IPv6 TCP segment: only the fields the hash reads matter. */
static size_t v6_seg(uint8_t *f, uint8_t last_src_byte, uint16_t sport, uint8_t next)
{
	memset(f, 0, 14 + 40 + 20);
	f[12] = 0x86;
	f[13] = 0xdd;
	uint8_t *ip = f + 14;
	ip[0] = 0x60;
	ip[5] = 20;
	ip[6] = next;
	ip[7] = 64;
	ip[8] = 0x20;
	ip[9] = 0x01;
	ip[23] = last_src_byte;
	ip[24] = 0x20;
	ip[25] = 0x01;
	ip[39] = 0x10;
	uint8_t *tcp = ip + 40;
	tcp[0] = (uint8_t)(sport >> 8);
	tcp[1] = (uint8_t)sport;
	tcp[3] = 25;
	tcp[12] = 0x50;
	tcp[13] = F_SYN;
	return 14 + 40 + 20;
}

static void test_stable_and_distinct(void)
{
	uint8_t f[2048];
	uint8_t flags = 0;
	size_t n = v4_seg(f, 0, 40000, F_SYN);
	uint64_t syn = net_flow_hash(key_a, f, n, &flags);
	CHECK(syn != 0);
	CHECK_INT_EQ(flags, F_SYN);
	/* every segment of the flow, whatever its flags and payload */
	n = v4_seg(f, 0, 40000, F_ACK | F_PSH);
	CHECK(net_flow_hash(key_a, f, n, &flags) == syn);
	CHECK_INT_EQ(flags, F_ACK | F_PSH);
	/* another source port, another source address, another key */
	n = v4_seg(f, 0, 40001, F_ACK);
	CHECK(net_flow_hash(key_a, f, n, &flags) != syn);
	n = v4_seg(f, t_ip("198.51.100.7"), 40000, F_ACK);
	CHECK(net_flow_hash(key_a, f, n, &flags) != syn);
	n = v4_seg(f, 0, 40000, F_ACK);
	CHECK(net_flow_hash(key_b, f, n, &flags) != syn);

	n = v6_seg(f, 1, 40000, 6);
	uint64_t h6 = net_flow_hash(key_a, f, n, &flags);
	CHECK(h6 != 0);
	CHECK(net_flow_hash(key_a, f, n, &flags) == h6);
	n = v6_seg(f, 2, 40000, 6);
	CHECK(net_flow_hash(key_a, f, n, &flags) != h6);
}

static void test_stays_local(void)
{
	uint8_t f[2048];
	uint8_t flags = 0x77;
	size_t n = v4_seg(f, 0, 40000, F_SYN);
	/* IPv4 fragments: a first fragment (MF) and a later one (offset) */
	f[14 + 6] = 0x20;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	f[14 + 6] = 0x00;
	f[14 + 7] = 0x10;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	/* UDP, ICMP */
	n = v4_seg(f, 0, 40000, F_SYN);
	f[14 + 9] = 17;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	f[14 + 9] = 1;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	/* ARP, and an IHL below 5 */
	n = v4_seg(f, 0, 40000, F_SYN);
	f[12] = 0x08;
	f[13] = 0x06;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	n = v4_seg(f, 0, 40000, F_SYN);
	f[14] = 0x44;
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	/* an IPv6 hop-by-hop header before TCP */
	n = v6_seg(f, 1, 40000, 0);
	CHECK(net_flow_hash(key_a, f, n, &flags) == 0);
	CHECK_INT_EQ(flags, 0x77); /* untouched when not a segment */
}

static void test_truncation(void)
{
	uint8_t full[2048];
	size_t n4 = v4_seg(full, 0, 40000, F_SYN);
	uint8_t flags;
	/* each length in its own allocation, so ASan sees any read past it */
	for (size_t len = 0; len <= n4; len++) {
		uint8_t *f = malloc(len ? len : 1);
		memcpy(f, full, len);
		uint64_t h = net_flow_hash(key_a, f, len, &flags);
		/* the flags byte is the last thing read: 14 + 20 + 14 bytes */
		CHECK((h != 0) == (len >= 14 + 20 + 14));
		free(f);
	}
	size_t n6 = v6_seg(full, 1, 40000, 6);
	for (size_t len = 0; len <= n6; len++) {
		uint8_t *f = malloc(len ? len : 1);
		memcpy(f, full, len);
		uint64_t h = net_flow_hash(key_a, f, len, &flags);
		CHECK((h != 0) == (len >= 14 + 40 + 14));
		free(f);
	}
}

static void test_spread(void)
{
	/* 60,000 client ports over 3 lcores: each gets its third within 3% */
	unsigned count[3] = { 0 };
	uint8_t f[2048], flags;
	for (unsigned p = 1024; p < 61024; p++) {
		size_t n = v4_seg(f, 0, (uint16_t)p, F_SYN);
		unsigned o = net_flow_pick(net_flow_hash(key_a, f, n, &flags), 3);
		CHECK(o < 3);
		if (o < 3)
			count[o]++;
	}
	for (int i = 0; i < 3; i++)
		CHECK(count[i] > 19400 && count[i] < 20600);
	CHECK_INT_EQ(net_flow_pick(UINT64_MAX, 1), 0);
}

int main(void)
{
	(void)t_stack; /* net_test.h's stack helper: this test needs only its frame builder */
	RUN_TEST(test_stable_and_distinct);
	RUN_TEST(test_stays_local);
	RUN_TEST(test_truncation);
	RUN_TEST(test_spread);
	return TEST_RESULT();
}
