/* libFuzzer harness for the stack's input path: Ethernet frames in, one after another, to
 * one stack listening on port 25, with a virtual clock.
 *
 * The stack has 192.0.2.10 and 2001:db8::10, gateways 192.0.2.1 and fe80::1.
 *
 * Input: records of [ctrl:1][len:2 big-endian][frame:len]. ctrl bits:
 *   0x0f  advance the clock by (ctrl & 0x0f) * 37 ms before the frame (timers run)
 *   0x10  patch the TCP ACK field to the next sequence number the stack will send
 *         (so mutated handshakes reach ESTABLISHED)
 *   0x20  pass "checksums good" rx flags (the NIC checked), so mutations go deep
 *   0x40  the app writes 3000 bytes on the connection afterwards
 *   0x80  the app closes the connection afterwards
 * A record of length 0 is no frame: it toggles listening on port 25 (net_stack_unlisten,
 * net_stack_listen again), the clock and the app bits applying as for a frame.
 * Then the clock runs ten minutes so every timer fires.
 *
 * Each frame also goes through net_flow_hash(), the steering parser that sees it first on
 * the dpdk transport.
 *
 * Invariants: never a crash or an out-of-bounds access; every frame sent is at least a
 * header and at most the MTU; an IPv4 frame sent has a valid header checksum and a total
 * length matching the frame; a TCP segment sent has a valid checksum; no connection is
 * accepted while port 25 is not listened on. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_flow.h"
#include "dataplane/net/net_stack.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct net_conn *fz_conn;
static uint32_t fz_next_seq;
static bool fz_listening;

static uint16_t fz_csum(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void *fz_alloc(void *ctx, uint8_t **d, size_t cap)
{
	(void)ctx;
	uint8_t *b = malloc(cap + sizeof(size_t));
	if (!b)
		return NULL;
	memcpy(b, &cap, sizeof(cap));
	*d = b + sizeof(size_t);
	return b;
}

static void fz_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	(void)ctx;
	(void)meta;
	uint8_t *b = frame, *f = b + sizeof(size_t);
	size_t cap;
	memcpy(&cap, b, sizeof(cap));
	FUZZ_CHECK(len <= cap);
	if (len) {
		FUZZ_CHECK(len >= 14 && len <= 14 + 1500);
		if (f[12] == 0x86 && f[13] == 0xdd) {
			FUZZ_CHECK(len >= 54);
			const uint8_t *ip = f + 14;
			size_t pl = (size_t)(ip[4] << 8 | ip[5]);
			FUZZ_CHECK(pl + 54 == len);
			uint32_t sum = 0;
			for (int k = 8; k < 40; k += 2)
				sum += (uint32_t)(ip[k] << 8 | ip[k + 1]);
			sum += ip[6] + (uint32_t)pl;
			FUZZ_CHECK(fz_csum(sum, ip + 40, pl) == 0);
		}
		if (f[12] == 8 && f[13] == 0) {
			const uint8_t *ip = f + 14;
			FUZZ_CHECK(len >= 34);
			FUZZ_CHECK(fz_csum(0, ip, 20) == 0);
			size_t tot = (size_t)(ip[2] << 8 | ip[3]);
			FUZZ_CHECK(tot + 14 == len);
			if (ip[9] == 6) {
				const uint8_t *t = ip + 20;
				size_t tl = tot - 20;
				uint32_t ph = 6 + (uint32_t)tl;
				for (int k = 12; k < 20; k += 2)
					ph += (uint32_t)(ip[k] << 8 | ip[k + 1]);
				FUZZ_CHECK(fz_csum(ph, t, tl) == 0);
				size_t doff = (size_t)(t[12] >> 4) * 4;
				FUZZ_CHECK(doff >= 20 && doff <= tl);
				uint32_t seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 |
					       (uint32_t)t[6] << 8 | t[7];
				uint32_t adv = (uint32_t)(tl - doff) + ((t[13] & 3) ? 1u : 0u);
				if (!(t[13] & 4))
					fz_next_seq = seq + adv;
			}
		}
	}
	free(b);
}

static void fz_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	(void)ctx;
	if (ev == NET_EV_ACCEPT)
		FUZZ_CHECK(fz_listening);
	if (ev == NET_EV_ACCEPT || ev == NET_EV_CONNECTED)
		fz_conn = c;
	if (ev == NET_EV_ABORT && c == fz_conn)
		fz_conn = NULL;
	if (ev == NET_EV_READABLE) {
		size_t n;
		const uint8_t *p;
		while ((p = net_conn_peek(c, &n)) != NULL && n) {
			FUZZ_CHECK(p != NULL);
			net_conn_consume(c, n);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t blob[3000];
	struct net_config cfg = { .mac = { 2, 0, 0, 0, 0, 0x0a }, .ipv4 = 0x0a0200c0u,
				  .ipv4_prefix = 24, .ipv4_gateway = 0x010200c0u,
				  .max_conns = 64, .syn_backlog = 4, .time_wait_max = 8,
				  .rcvbuf = 8192, .sndbuf = 8192 };
	/* 192.0.2.10, gateway 192.0.2.1: network order on a little-endian host. */
	memcpy(cfg.secret, "fuzz-secret-key!", 16);
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x10 }; /* 2001:db8::10 */
	static const uint8_t gw6[16] = { 0xfe, 0x80, [15] = 1 };
	memcpy(cfg.ipv6, v6, 16);
	memcpy(cfg.ipv6_gateway, gw6, 16);
	struct net_ops ops = { NULL, fz_alloc, fz_send, fz_event };
	uint64_t now = 5000000;
	fz_conn = NULL;
	fz_next_seq = 0;
	struct net_stack *s = net_stack_create(&cfg, &ops, now);
	FUZZ_CHECK(s != NULL);
	FUZZ_CHECK(net_stack_listen(s, 25) == 0);
	fz_listening = true;
	size_t i = 0;
	uint8_t frame[2048];
	while (i + 3 <= size) {
		uint8_t ctrl = data[i];
		size_t len = (size_t)(data[i + 1] << 8 | data[i + 2]);
		i += 3;
		if (len > size - i)
			len = size - i;
		if (len > sizeof(frame))
			len = sizeof(frame);
		memcpy(frame, data + i, len);
		i += len;
		if (ctrl & 0x0f) {
			now += (uint64_t)(ctrl & 0x0f) * 37000;
			net_stack_poll(s, now);
		}
		if (len == 0) {
			if (fz_listening) {
				FUZZ_CHECK(net_stack_unlisten(s, 25) == 0);
				FUZZ_CHECK(net_stack_unlisten(s, 25) < 0);
			} else {
				FUZZ_CHECK(net_stack_listen(s, 25) == 0);
			}
			fz_listening = !fz_listening;
			goto app;
		}
		uint8_t *t = NULL;
		if (len >= 14 + 20 + 20 && frame[12] == 8 && frame[13] == 0 &&
		    (frame[14] & 0x0f) == 5)
			t = frame + 34;
		if (len >= 14 + 40 + 20 && frame[12] == 0x86 && frame[13] == 0xdd && frame[20] == 6)
			t = frame + 54;
		if ((ctrl & 0x10) && t) {
			t[8] = (uint8_t)(fz_next_seq >> 24);
			t[9] = (uint8_t)(fz_next_seq >> 16);
			t[10] = (uint8_t)(fz_next_seq >> 8);
			t[11] = (uint8_t)fz_next_seq;
		}
		unsigned flags = (ctrl & 0x20) ? (NET_RX_IP_CKSUM_GOOD | NET_RX_L4_CKSUM_GOOD) : 0;
		/* the steering hash reads the frame first on the dpdk transport: bounded, and
		 * the same answer twice; a frame without TCP's ethertype hashes to 0 */
		static const uint64_t key[2] = { 0x0123456789abcdefULL, 0xfedcba9876543210ULL };
		uint8_t tf1 = 0, tf2 = 0;
		uint64_t h1 = net_flow_hash(key, frame, len, &tf1);
		FUZZ_CHECK(h1 == net_flow_hash(key, frame, len, &tf2) && tf1 == tf2);
		FUZZ_CHECK(h1 == 0 || (len >= 14 && ((frame[12] == 8 && frame[13] == 0) ||
						    (frame[12] == 0x86 && frame[13] == 0xdd))));
		FUZZ_CHECK(net_flow_pick(h1, 3) < 3);
		net_stack_input(s, frame, len, flags, now);
	app:
		if (fz_conn && (ctrl & 0x40))
			net_conn_write(fz_conn, blob, sizeof(blob));
		if (fz_conn && (ctrl & 0x80)) {
			net_conn_close(fz_conn);
			fz_conn = NULL;
		}
	}
	for (int k = 0; k < 600; k++) {
		now += 1000000;
		net_stack_poll(s, now);
	}
	FUZZ_CHECK(net_stack_conn_count(s) <= 64);
	FUZZ_CHECK(net_stack_time_wait_count(s) <= 8);
	net_stack_destroy(s);
	return 0;
}
