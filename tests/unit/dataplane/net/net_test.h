/* Test scaffolding for the stack: a virtual clock, captured output frames, a segment
 * builder and an independent parser for what the stack sends (written from the RFCs, not
 * from the stack's code, so a shared misunderstanding does not hide). */
#ifndef MXGATE_TEST_NET_H
#define MXGATE_TEST_NET_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/net/net_stack.h"
#include "testing.h"

#define T_MAXTX 4096

static const uint8_t t_our_mac[6] = { 2, 0, 0, 0, 0, 0x0a };
static const uint8_t t_peer_mac[6] = { 2, 0, 0, 0, 0, 0x01 };
#define T_OUR_IP "192.0.2.10"
#define T_PEER_IP "192.0.2.1"
#define T_PEER_PORT 40000
#define T_PORT 25

struct t_frame {
	uint8_t *d;
	size_t len;
	size_t cap;
};

static struct t_frame t_tx[T_MAXTX];
static int t_ntx;
static uint64_t t_now = 1000000000; /* us */
static struct net_conn *t_conn;
static int t_events[NET_EV_MAX];
static int t_abort_err;
static bool t_autoread; /* consume whatever arrives into t_rx */
static uint8_t t_rx[1 << 20];
static size_t t_rxlen;
static bool t_pool_empty;
static bool t_close_on_abort; /* the app calls write and close inside NET_EV_ABORT */

static inline uint32_t t_ip(const char *s)
{
	uint32_t a;
	inet_pton(AF_INET, s, &a);
	return a;
}

static void *t_alloc(void *ctx, uint8_t **data, size_t cap)
{
	(void)ctx;
	if (t_pool_empty)
		return NULL;
	struct t_frame *f = calloc(1, sizeof(*f));
	f->d = calloc(1, cap);
	f->cap = cap;
	*data = f->d;
	return f;
}

static inline void t_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	(void)ctx;
	(void)meta;
	struct t_frame *f = frame;
	if (len > f->cap)
		abort();
	if (!len || t_ntx == T_MAXTX) {
		free(f->d);
		free(f);
		return;
	}
	f->len = len;
	t_tx[t_ntx++] = *f;
	free(f);
}

static inline void t_drain_read(struct net_conn *c)
{
	size_t n;
	const uint8_t *p;
	while ((p = net_conn_peek(c, &n)) != NULL && n) {
		if (t_rxlen + n <= sizeof(t_rx)) {
			memcpy(t_rx + t_rxlen, p, n);
			t_rxlen += n;
		}
		net_conn_consume(c, n);
	}
}

static inline void t_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	(void)ctx;
	t_events[ev]++;
	if (ev == NET_EV_ACCEPT || ev == NET_EV_CONNECTED)
		t_conn = c;
	if (ev == NET_EV_ABORT) {
		t_abort_err = net_conn_error(c);
		if (t_close_on_abort) {
			net_conn_write(c, "x", 1);
			net_conn_close(c);
		}
		if (c == t_conn)
			t_conn = NULL;
	}
	if (ev == NET_EV_READABLE && t_autoread)
		t_drain_read(c);
}

static inline void t_clear_tx(void)
{
	for (int i = 0; i < t_ntx; i++)
		free(t_tx[i].d);
	t_ntx = 0;
}

static inline void t_reset(void)
{
	t_clear_tx();
	t_conn = NULL;
	memset(t_events, 0, sizeof(t_events));
	t_abort_err = 0;
	t_autoread = false;
	t_rxlen = 0;
	t_pool_empty = false;
	t_close_on_abort = false;
}

static struct net_stack *t_stack(struct net_config *override)
{
	t_reset();
	struct net_config cfg = { 0 };
	if (override)
		cfg = *override;
	memcpy(cfg.mac, t_our_mac, 6);
	cfg.ipv4 = t_ip(T_OUR_IP);
	if (!cfg.ipv4_prefix)
		cfg.ipv4_prefix = 24;
	memcpy(cfg.secret, "0123456789abcdef", 16);
	struct net_ops ops = { NULL, t_alloc, t_send, t_event };
	struct net_stack *s = net_stack_create(&cfg, &ops, t_now);
	if (s)
		net_stack_listen(s, T_PORT);
	return s;
}

static inline void t_advance(struct net_stack *s, uint32_t ms)
{
	for (uint32_t i = 0; i < ms; i++) {
		t_now += 1000;
		net_stack_poll(s, t_now);
	}
}

/* ---- building frames ---- */

static inline uint16_t t_csum(uint32_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

struct tseg {
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	const uint8_t *opt;
	size_t optlen;
	const void *data;
	size_t len;
	uint16_t sport, dport; /* 0: defaults */
	uint32_t src; /* 0: peer */
};

enum { F_FIN = 1, F_SYN = 2, F_RST = 4, F_PSH = 8, F_ACK = 16 };

static inline size_t t_build(uint8_t *f, const struct tseg *t)
{
	memcpy(f, t_our_mac, 6);
	memcpy(f + 6, t_peer_mac, 6);
	f[12] = 0x08;
	f[13] = 0x00;
	uint8_t *ip = f + 14;
	size_t tl = 20 + t->optlen + t->len;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	ip[2] = (uint8_t)((20 + tl) >> 8);
	ip[3] = (uint8_t)(20 + tl);
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = 6;
	uint32_t src = t->src ? t->src : t_ip(T_PEER_IP), dst = t_ip(T_OUR_IP);
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = t_csum(0, ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	uint8_t *tcp = ip + 20;
	uint16_t sp = t->sport ? t->sport : T_PEER_PORT, dp = t->dport ? t->dport : T_PORT;
	tcp[0] = (uint8_t)(sp >> 8);
	tcp[1] = (uint8_t)sp;
	tcp[2] = (uint8_t)(dp >> 8);
	tcp[3] = (uint8_t)dp;
	for (int i = 0; i < 4; i++) {
		tcp[4 + i] = (uint8_t)(t->seq >> (24 - 8 * i));
		tcp[8 + i] = (uint8_t)(t->ack >> (24 - 8 * i));
	}
	tcp[12] = (uint8_t)(((20 + t->optlen) / 4) << 4);
	tcp[13] = t->flags;
	tcp[14] = (uint8_t)(t->win >> 8);
	tcp[15] = (uint8_t)t->win;
	tcp[16] = tcp[17] = tcp[18] = tcp[19] = 0;
	if (t->optlen)
		memcpy(tcp + 20, t->opt, t->optlen);
	if (t->len)
		memcpy(tcp + 20 + t->optlen, t->data, t->len);
	uint32_t ph = 0;
	uint8_t pseudo[12];
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = 6;
	pseudo[10] = (uint8_t)(tl >> 8);
	pseudo[11] = (uint8_t)tl;
	for (int i = 0; i < 12; i += 2)
		ph += (uint32_t)(pseudo[i] << 8 | pseudo[i + 1]);
	c = t_csum(ph, tcp, tl);
	tcp[16] = (uint8_t)(c >> 8);
	tcp[17] = (uint8_t)c;
	return 14 + 20 + tl;
}

static inline void t_in(struct net_stack *s, const struct tseg *t)
{
	uint8_t f[2048];
	size_t n = t_build(f, t);
	net_stack_input(s, f, n, 0, t_now);
}

static inline size_t t_opt_ts(uint8_t *o, uint32_t val, uint32_t ecr)
{
	o[0] = 1;
	o[1] = 1;
	o[2] = 8;
	o[3] = 10;
	for (int i = 0; i < 4; i++) {
		o[4 + i] = (uint8_t)(val >> (24 - 8 * i));
		o[8 + i] = (uint8_t)(ecr >> (24 - 8 * i));
	}
	return 12;
}

/* ---- parsing what the stack sent ---- */

struct pseg {
	bool ok, csum_ok;
	uint16_t sport, dport;
	uint32_t seq, ack, src, dst;
	uint8_t flags;
	uint16_t win, mss;
	int ws;
	bool sackok, ts;
	uint32_t tsval, tsecr;
	int nsack;
	uint32_t sack[4][2];
	const uint8_t *data;
	size_t len;
};

static inline uint32_t t_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline struct pseg t_parse(int i)
{
	struct pseg p;
	memset(&p, 0, sizeof(p));
	p.ws = -1;
	if (i < 0 || i >= t_ntx)
		return p;
	const uint8_t *f = t_tx[i].d;
	size_t len = t_tx[i].len;
	if (len < 54 || f[12] != 8 || f[13] != 0 || f[14 + 9] != 6)
		return p;
	const uint8_t *ip = f + 14;
	size_t tot = (size_t)(ip[2] << 8 | ip[3]);
	if (tot + 14 != len || t_csum(0, ip, 20) != 0)
		return p;
	memcpy(&p.src, ip + 12, 4);
	memcpy(&p.dst, ip + 16, 4);
	const uint8_t *tcp = ip + 20;
	size_t tl = tot - 20;
	uint8_t pseudo[12];
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = 6;
	pseudo[10] = (uint8_t)(tl >> 8);
	pseudo[11] = (uint8_t)tl;
	uint32_t ph = 0;
	for (int k = 0; k < 12; k += 2)
		ph += (uint32_t)(pseudo[k] << 8 | pseudo[k + 1]);
	p.csum_ok = t_csum(ph, tcp, tl) == 0;
	p.sport = (uint16_t)(tcp[0] << 8 | tcp[1]);
	p.dport = (uint16_t)(tcp[2] << 8 | tcp[3]);
	p.seq = t_be32(tcp + 4);
	p.ack = t_be32(tcp + 8);
	size_t doff = (size_t)(tcp[12] >> 4) * 4;
	p.flags = tcp[13];
	p.win = (uint16_t)(tcp[14] << 8 | tcp[15]);
	for (size_t k = 20; k < doff;) {
		uint8_t kind = tcp[k];
		if (kind == 0)
			break;
		if (kind == 1) {
			k++;
			continue;
		}
		uint8_t ol = tcp[k + 1];
		if (kind == 2)
			p.mss = (uint16_t)(tcp[k + 2] << 8 | tcp[k + 3]);
		if (kind == 3)
			p.ws = tcp[k + 2];
		if (kind == 4)
			p.sackok = true;
		if (kind == 8) {
			p.ts = true;
			p.tsval = t_be32(tcp + k + 2);
			p.tsecr = t_be32(tcp + k + 6);
		}
		if (kind == 5)
			for (int b = 0; b < (ol - 2) / 8 && b < 4; b++) {
				p.sack[b][0] = t_be32(tcp + k + 2 + 8 * b);
				p.sack[b][1] = t_be32(tcp + k + 6 + 8 * b);
				p.nsack = b + 1;
			}
		if (ol < 2)
			break;
		k += ol;
	}
	p.data = tcp + doff;
	p.len = tl - doff;
	p.ok = true;
	return p;
}

/* The last frame sent (parsed). */
static inline struct pseg t_last(void)
{
	return t_parse(t_ntx - 1);
}

#endif
