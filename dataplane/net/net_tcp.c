/* TCP (RFC 9293) with the extensions listed in net_stack.h. Section numbers in comments
 * are RFC 9293's unless another RFC is named. */
#include "net_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum {
	TH_FIN = 0x01,
	TH_SYN = 0x02,
	TH_RST = 0x04,
	TH_PSH = 0x08,
	TH_ACK = 0x10,
	TH_URG = 0x20,
};

#define RTO_INIT_MS 1000 /* RFC 6298 2.1 */
/* RFC 6298 2.4 asks for a 1 s floor ("SHOULD"); RFC 8961 4 lets an implementation go
 * lower, and Linux uses 200 ms. We use Linux's: an SMTP reply lost at the end of a burst
 * (nothing after it to trigger fast retransmit) otherwise holds its session a full second,
 * and a gateway serves many such sessions over lossy paths. The first RTO, before any
 * sample, stays 1 s (RTO_INIT_MS). */
#define RTO_MIN_MS 200
#define RTO_MAX_MS 60000 /* RFC 6298 2.5 allows a maximum of at least 60 s */
#define RTX_MAX 12 /* RTO expiries before the connection is given up (RFC 1122 R2) */
#define SYNACK_MAX 5
#define SYN_MAX 6
#define FIN_WAIT_2_MS 60000 /* an orphaned FIN-WAIT-2 is dropped after this (Linux) */
#define MSS_MIN 88 /* a smaller MSS would make us send floods of tiny segments */
#define PAWS_IDLE_MS (24u * 24 * 3600 * 1000) /* RFC 7323 5.5: 24 days */
#define COOKIE_PERIOD_MS 64000
#define COOKIE_AGE_MAX 2 /* periods: a cookie is good for 2-3 minutes */

const char *net_tcp_state_name(enum net_tcp_state st)
{
	static const char *const names[NET_TCP_STATE_MAX] = {
		"CLOSED",      "LISTEN",     "SYN-SENT",   "SYN-RECEIVED",
		"ESTABLISHED", "FIN-WAIT-1",
		"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING",    "LAST-ACK",     "TIME-WAIT",
	};
	return (unsigned)st < NET_TCP_STATE_MAX ? names[st] : "?";
}

size_t net_conn_size(void)
{
	return sizeof(struct net_conn);
}

static uint16_t mss_for(const struct net_stack *s, bool v6)
{
	return (uint16_t)(s->mss_local - (v6 ? NET_IP6_HLEN - NET_IP_HLEN : 0));
}

/* ---- parsed segment ---- */

struct tcp_opts {
	uint16_t mss; /* 0: absent */
	int8_t ws; /* -1: absent */
	bool sack_ok, ts;
	uint32_t tsval, tsecr;
};

struct seg {
	uint32_t seq, ack;
	uint16_t win;
	uint8_t flags;
	const uint8_t *data;
	uint32_t len;
	struct tcp_opts o;
};

/* 3.1 and RFC 7323 2: options. A malformed option ends parsing; what was read stays. */
static void opts_parse(const uint8_t *p, size_t len, bool syn, struct tcp_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ws = -1;
	size_t i = 0;
	while (i < len) {
		uint8_t kind = p[i];
		if (kind == 0)
			break;
		if (kind == 1) {
			i++;
			continue;
		}
		if (i + 1 >= len || p[i + 1] < 2 || i + p[i + 1] > len)
			break;
		uint8_t olen = p[i + 1];
		const uint8_t *v = p + i + 2;
		switch (kind) {
		case 2:
			if (olen == 4 && syn)
				o->mss = net_get16(v);
			break;
		case 3:
			if (olen == 3 && syn)
				o->ws = (int8_t)(v[0] > 14 ? 14 : v[0]); /* RFC 7323 2.3 */
			break;
		case 4:
			if (olen == 2 && syn)
				o->sack_ok = true;
			break;
		case 8:
			if (olen == 10) {
				o->ts = true;
				o->tsval = net_get32(v);
				o->tsecr = net_get32(v + 4);
			}
			break;
		default:
			break; /* SACK blocks from the peer: NewReno does not use them */
		}
		i += olen;
	}
}

/* ---- hashing and lookup ---- */

static uint32_t tuple_hash(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			   const uint8_t *raddr, uint16_t rport)
{
	uint8_t k[36];
	memcpy(k, laddr, 16);
	memcpy(k + 16, raddr, 16);
	net_put16(k + 32, lport);
	net_put16(k + 34, rport);
	return (uint32_t)net_siphash(s->cfg.secret, k, sizeof(k));
}

static struct net_conn *conn_lookup(const struct net_stack *s, const uint8_t *laddr,
				    uint16_t lport, const uint8_t *raddr, uint16_t rport)
{
	struct net_conn *c = s->hash[tuple_hash(s, laddr, lport, raddr, rport) & s->hash_mask];
	for (; c; c = c->hnext)
		if (c->lport == lport && c->rport == rport && !memcmp(c->laddr, laddr, 16) &&
		    !memcmp(c->raddr, raddr, 16))
			return c;
	return NULL;
}

static void conn_hash_add(struct net_stack *s, struct net_conn *c)
{
	struct net_conn **b =
		&s->hash[tuple_hash(s, c->laddr, c->lport, c->raddr, c->rport) & s->hash_mask];
	c->hnext = *b;
	*b = c;
}

static void conn_hash_del(struct net_stack *s, struct net_conn *c)
{
	struct net_conn **b =
		&s->hash[tuple_hash(s, c->laddr, c->lport, c->raddr, c->rport) & s->hash_mask];
	for (; *b; b = &(*b)->hnext)
		if (*b == c) {
			*b = c->hnext;
			c->hnext = NULL;
			return;
		}
}

/* ---- buffers ---- */

static uint8_t *buf_get(struct net_stack *s, bool rcv)
{
	void **list = rcv ? &s->free_rbuf : &s->free_sbuf;
	uint8_t *b = *list;
	if (b) {
		*list = *(void **)b;
		if (rcv)
			s->nfree_rbuf--;
		else
			s->nfree_sbuf--;
	} else {
		b = malloc(rcv ? s->cfg.rcvbuf : s->cfg.sndbuf);
		if (!b) {
			s->cnt.tcp_buf_alloc_fail++;
			return NULL;
		}
	}
	s->bufs_in_use++;
	return b;
}

static void buf_put(struct net_stack *s, uint8_t *b, bool rcv)
{
	if (!b)
		return;
	s->bufs_in_use--;
	/* Keep a few for the next connection; give the rest back to the allocator so idle
	 * connections cost their control block only. */
	uint32_t *n = rcv ? &s->nfree_rbuf : &s->nfree_sbuf;
	if (*n >= 64) {
		free(b);
		return;
	}
	void **list = rcv ? &s->free_rbuf : &s->free_sbuf;
	*(void **)b = *list;
	*list = b;
	(*n)++;
}

static void ring_write(uint8_t *ring, uint32_t cap, uint32_t pos, const uint8_t *src,
		       uint32_t n)
{
	pos %= cap;
	uint32_t first = cap - pos < n ? cap - pos : n;
	memcpy(ring + pos, src, first);
	memcpy(ring, src + first, n - first);
}

/* ---- timers ---- */

static uint32_t tick_nz(uint32_t t)
{
	return t ? t : 1; /* 0 means "off" */
}

static void conn_timer_update(struct net_stack *s, struct net_conn *c)
{
	uint32_t at = 0;
	if (c->rtx_at)
		at = c->rtx_at;
	if (c->delack_at && (!at || SEQ_LT(c->delack_at, at)))
		at = c->delack_at;
	if (!at) {
		net_timer_cancel(&s->wheel, &c->timer);
		return;
	}
	if (!net_timer_armed(&c->timer) || c->timer.expire != at)
		net_timer_arm(&s->wheel, &c->timer, at);
}

static uint32_t rto_now(const struct net_conn *c)
{
	uint64_t r = (uint64_t)c->rto << (c->backoff > 16 ? 16 : c->backoff);
	return r > RTO_MAX_MS ? RTO_MAX_MS : (uint32_t)r;
}

/* ---- sending ---- */

static uint32_t rcv_window(const struct net_stack *s, const struct net_conn *c)
{
	uint32_t space = s->cfg.rcvbuf - c->rlen;
	if (c->flags & CF_APP_GONE)
		space = s->cfg.rcvbuf; /* data after close is acknowledged and dropped */
	if (s->pressure && space > 2u * s->mss_local)
		space = 2u * s->mss_local;
	/* 3.8.6.2.2: the right edge never moves left. */
	uint32_t adv = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (space < adv)
		space = adv;
	/* Receiver SWS avoidance: open the window only by a worthwhile amount. */
	uint32_t sws = s->cfg.rcvbuf / 2 < s->mss_local ? s->cfg.rcvbuf / 2 : s->mss_local;
	if (space > adv && space - adv < sws && !(s->pressure))
		space = adv;
	uint32_t max = 65535u << c->rcv_wscale;
	return space > max ? max : space;
}

static size_t opts_len(const struct net_conn *c)
{
	size_t n = (c->flags & CF_TS) ? 12 : 0;
	if ((c->flags & CF_SACK) && c->sack_n) {
		unsigned blocks = c->sack_n;
		unsigned max = (c->flags & CF_TS) ? 3 : 4;
		n += 4 + 8 * (blocks < max ? blocks : max);
	}
	return n;
}

/* RFC 7323 5.4 and 7.1: our timestamp clock runs at 1 ms with an offset per 4-tuple, a
 * keyed hash like the ISN of RFC 6528 (a different input, so one does not give away the
 * other): TSval does not reveal our uptime, and it stays monotonic across incarnations of
 * one 4-tuple, which TIME-WAIT reuse by timestamp (RFC 6191) relies on. */
static uint32_t ts_offset(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			  const uint8_t *raddr, uint16_t rport)
{
	uint8_t k[37];
	memcpy(k, laddr, 16);
	memcpy(k + 16, raddr, 16);
	net_put16(k + 32, lport);
	net_put16(k + 34, rport);
	k[36] = 'T';
	return (uint32_t)net_siphash(s->cfg.secret, k, sizeof(k));
}

static uint32_t ts_now(const struct net_stack *s, const struct net_conn *c)
{
	return s->now_ms + c->ts_off;
}

/* Build and send one segment: the TCP header, opt (optlen bytes) and data taken from the
 * send ring at offset off (bytes from snd_una), or from raw when given. */
static void tcp_xmit_raw(struct net_stack *s, const uint8_t dmac[6], const uint8_t *laddr,
			 uint16_t lport, const uint8_t *raddr, uint16_t rport, uint32_t seq,
			 uint32_t ack, uint8_t flags, uint16_t win, const uint8_t *opt,
			 size_t optlen, const uint8_t *ring, uint32_t ring_cap, uint32_t ring_pos,
			 uint32_t dlen)
{
	size_t hl = NET_TCP_HLEN + optlen;
	assert(optlen % 4 == 0 && optlen <= 40);
	void *h;
	uint8_t *frame;
	bool v4 = net_addr_is4(laddr);
	uint8_t *t = net_tx_begin(s, &h, &frame, v4 ? NET_IP_HLEN : NET_IP6_HLEN, hl + dlen);
	if (!t)
		return;
	net_put16(t, lport);
	net_put16(t + 2, rport);
	net_put32(t + 4, seq);
	net_put32(t + 8, (flags & TH_ACK) ? ack : 0);
	t[12] = (uint8_t)((hl / 4) << 4);
	t[13] = flags;
	net_put16(t + 14, win);
	net_put16(t + 16, 0);
	net_put16(t + 18, 0);
	if (optlen)
		memcpy(t + NET_TCP_HLEN, opt, optlen);
	if (dlen) {
		uint32_t pos = ring_pos % ring_cap;
		uint32_t first = ring_cap - pos < dlen ? ring_cap - pos : dlen;
		memcpy(t + hl, ring + pos, first);
		memcpy(t + hl + first, ring, dlen - first);
	}
	if (v4) {
		uint32_t src, dst;
		memcpy(&src, laddr + 12, 4);
		memcpy(&dst, raddr + 12, 4);
		net_tx_ipv4(s, h, frame, dmac, src, dst, 6, hl + dlen, hl);
	} else {
		net_tx_ipv6(s, h, frame, dmac, laddr, raddr, 6, hl + dlen, hl);
	}
}

static size_t put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr)
{
	p[0] = 1;
	p[1] = 1;
	p[2] = 8;
	p[3] = 10;
	net_put32(p + 4, tsval);
	net_put32(p + 8, tsecr);
	return 12;
}

/* A segment of connection c with the ACK bit (unless SYN-SENT's SYN), our window, and
 * timestamps and SACK blocks as negotiated. */
static void tcp_xmit(struct net_stack *s, struct net_conn *c, uint32_t seq, uint8_t flags,
		     uint32_t off, uint32_t dlen)
{
	uint8_t opt[40];
	size_t n = 0;
	uint32_t win = rcv_window(s, c);
	if (flags & TH_SYN) {
		/* 3.7.1 MSS; RFC 7323 window scale and timestamps; RFC 2018 SACK-permitted.
		 * Offered in the SYN; in a SYN-ACK only what the SYN offered. */
		opt[n++] = 2;
		opt[n++] = 4;
		net_put16(opt + n, mss_for(s, (c->flags & CF_IPV6) != 0));
		n += 2;
		bool active = c->state == NET_TCP_SYN_SENT; /* offer everything */
		if (active || (c->flags & CF_SACK)) {
			opt[n++] = 1;
			opt[n++] = 1;
			opt[n++] = 4;
			opt[n++] = 2;
		}
		if (active || (c->flags & CF_TS))
			n += put_ts(opt + n, ts_now(s, c), c->ts_recent);
		if (active || (c->flags & CF_WS)) {
			opt[n++] = 1;
			opt[n++] = 3;
			opt[n++] = 3;
			opt[n++] = c->rcv_wscale;
		}
		/* 3.8.6.2 / RFC 7323 2.2: the window of a SYN is never scaled. */
		if (win > 65535)
			win = 65535;
		c->rcv_adv = c->rcv_nxt + win;
	} else {
		if (c->flags & CF_TS)
			n += put_ts(opt + n, ts_now(s, c), c->ts_recent);
		if ((c->flags & CF_SACK) && c->sack_n) {
			/* RFC 2018 4: the block holding the latest segment first, then the
			 * others. */
			unsigned max = (c->flags & CF_TS) ? 3 : 4;
			unsigned k = c->sack_n < max ? c->sack_n : max;
			opt[n++] = 1;
			opt[n++] = 1;
			opt[n++] = 5;
			opt[n++] = (uint8_t)(2 + 8 * k);
			unsigned idx = c->sack_last < c->sack_n ? c->sack_last : 0;
			net_put32(opt + n, c->ooo[idx].start);
			net_put32(opt + n + 4, c->ooo[idx].end);
			n += 8;
			for (unsigned i = 0, done = 1; i < c->sack_n && done < k; i++) {
				if (i == idx)
					continue;
				net_put32(opt + n, c->ooo[i].start);
				net_put32(opt + n + 4, c->ooo[i].end);
				n += 8;
				done++;
			}
		}
		win >>= c->rcv_wscale;
		c->rcv_adv = c->rcv_nxt + (win << c->rcv_wscale);
	}
	if (c->state == NET_TCP_SYN_SENT)
		flags &= (uint8_t)~TH_ACK;
	else
		flags |= TH_ACK;
	tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport, seq, c->rcv_nxt,
		     flags, (uint16_t)win, opt, n, c->sbuf, s->cfg.sndbuf, c->shead + off, dlen);
	if (flags & TH_ACK) {
		c->delack_at = 0;
		c->flags &= (uint16_t)~(CF_DELACK_SEG | CF_ACK_NOW);
	}
}

static bool can_send_data(const struct net_conn *c)
{
	switch (c->state) {
	case NET_TCP_ESTABLISHED:
	case NET_TCP_CLOSE_WAIT:
	case NET_TCP_FIN_WAIT_1:
	case NET_TCP_CLOSING:
	case NET_TCP_LAST_ACK:
		return true;
	default:
		return false;
	}
}

/* Arm the retransmission timer if it is not running (RFC 6298 5.1), or the persist timer
 * when the peer's window is closed and bytes wait (3.8.6.1). */
static void rtx_ensure(struct net_stack *s, struct net_conn *c)
{
	bool outstanding = c->snd_una != c->snd_max;
	bool waiting = c->slen > c->snd_nxt - c->snd_una;
	if (c->snd_wnd == 0 && (waiting || outstanding) && c->slen) {
		if (!c->rtx_at || !(c->flags & CF_PERSIST)) {
			c->flags |= CF_PERSIST;
			c->rtx_at = tick_nz(s->now_ms + rto_now(c));
		}
	} else if (outstanding) {
		if (!c->rtx_at || (c->flags & CF_PERSIST)) {
			c->flags &= (uint16_t)~CF_PERSIST;
			c->rtx_at = tick_nz(s->now_ms + rto_now(c));
		}
	} else if (c->state >= NET_TCP_ESTABLISHED && c->state != NET_TCP_FIN_WAIT_2) {
		c->rtx_at = 0;
		c->flags &= (uint16_t)~CF_PERSIST;
	}
}

/* Send what the windows allow (RFC 5681: min(cwnd, rwnd)), the FIN when its turn comes,
 * and an ACK if one is owed and nothing else carried it. */
static void tcp_output(struct net_stack *s, struct net_conn *c)
{
	if ((c->flags & CF_DEAD) || c->state == NET_TCP_CLOSED)
		return;
	if (can_send_data(c)) {
		for (;;) {
			uint32_t off = c->snd_nxt - c->snd_una;
			uint32_t wnd = c->snd_wnd < c->cwnd ? c->snd_wnd : c->cwnd;
			if (off < c->slen) {
				int32_t usable = (int32_t)(c->snd_una + wnd - c->snd_nxt);
				uint32_t room = c->mss - (uint32_t)opts_len(c);
				uint32_t n = c->slen - off;
				if (usable <= 0)
					break;
				if (n > (uint32_t)usable)
					n = (uint32_t)usable;
				if (n > room)
					n = room;
				bool fin = (c->flags & CF_FIN_QUEUED) && off + n == c->slen;
				if (SEQ_GE(c->snd_nxt, c->snd_max) && !(c->flags & CF_RTT_TIMING)) {
					c->flags |= CF_RTT_TIMING; /* time new data only (Karn) */
					c->rtt_seq = c->snd_nxt;
					c->rtt_start = s->now_ms;
				}
				if (SEQ_LT(c->snd_nxt, c->snd_max))
					s->cnt.tcp_retransmits++;
				tcp_xmit(s, c, c->snd_nxt, (uint8_t)(TH_PSH | (fin ? TH_FIN : 0)),
					 off, n);
				c->snd_nxt += n + (fin ? 1 : 0);
				if (SEQ_GT(c->snd_nxt, c->snd_max))
					c->snd_max = c->snd_nxt;
				continue;
			}
			if (off == c->slen && (c->flags & CF_FIN_QUEUED) &&
			    !(c->flags & CF_FIN_ACKED)) {
				/* The FIN alone (it needs no window, 3.10.4). */
				tcp_xmit(s, c, c->snd_nxt, TH_FIN, 0, 0);
				c->snd_nxt++;
				if (SEQ_GT(c->snd_nxt, c->snd_max))
					c->snd_max = c->snd_nxt;
			}
			break;
		}
		rtx_ensure(s, c);
	}
	/* A bare ACK carries snd_max, not a snd_nxt rewound by a retransmission: the peer
	 * has seen up to snd_max and would find an older sequence number unacceptable and
	 * drop the ACK (as BSD does, tcp_output.c). */
	if ((c->flags & CF_ACK_NOW) && c->state != NET_TCP_SYN_SENT)
		tcp_xmit(s, c, c->snd_max, 0, 0, 0);
	conn_timer_update(s, c);
}

/* RSTs and challenge ACKs share one rate limit (RFC 5961 7; RFC 9293 3.10.7.1 lets a
 * host limit the RSTs it sends). */
static bool rst_allowed(struct net_stack *s)
{
	if (net_tb_take(&s->rst_tb, s->now_ms))
		return true;
	s->cnt.tcp_rst_limited++;
	return false;
}

static void challenge_ack(struct net_stack *s, struct net_conn *c)
{
	if (!rst_allowed(s))
		return;
	s->cnt.tcp_challenge_ack++;
	tcp_xmit(s, c, c->snd_max, 0, 0, 0);
}

/* 3.10.7.1: the answer to a segment for no connection. */
static void send_rst_for(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			 uint16_t lport, uint16_t rport, const struct seg *g)
{
	if (g->flags & TH_RST)
		return;
	if (!rst_allowed(s))
		return;
	s->cnt.tcp_rst_sent++;
	uint32_t seglen = g->len + ((g->flags & TH_SYN) ? 1 : 0) + ((g->flags & TH_FIN) ? 1 : 0);
	if (g->flags & TH_ACK)
		tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, g->ack, 0, TH_RST, 0, NULL,
			     0, NULL, 1, 0, 0);
	else
		tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, 0, g->seq + seglen,
			     TH_RST | TH_ACK, 0, NULL, 0, NULL, 1, 0, 0);
}

/* ---- connection life ---- */

static struct net_conn *conn_new(struct net_stack *s, const uint8_t smac[6],
				 const uint8_t *laddr, uint16_t lport, const uint8_t *raddr,
				 uint16_t rport)
{
	if (s->nconns >= s->cfg.max_conns) {
		s->cnt.tcp_conn_full++;
		return NULL;
	}
	struct net_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->stack = s;
	memcpy(c->laddr, laddr, 16);
	memcpy(c->raddr, raddr, 16);
	if (!net_addr_is4(laddr))
		c->flags |= CF_IPV6;
	c->lport = lport;
	c->rport = rport;
	memcpy(c->peer_mac, smac, 6);
	c->ts_off = ts_offset(s, laddr, lport, raddr, rport);
	c->rto = RTO_INIT_MS;
	c->mss = 536; /* 3.7.1: the default when no MSS option came */
	c->ssthresh = 0xffffffffu; /* RFC 5681 3.1: arbitrarily high */
	conn_hash_add(s, c);
	s->nconns++;
	return c;
}

static void conn_kill(struct net_stack *s, struct net_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	conn_hash_del(s, c);
	net_timer_cancel(&s->wheel, &c->timer);
	buf_put(s, c->rbuf, true);
	buf_put(s, c->sbuf, false);
	c->rbuf = c->sbuf = NULL;
	c->rlen = c->slen = 0;
	if (c->state == NET_TCP_SYN_RCVD)
		s->nhalf--;
	s->nconns--;
	c->flags |= CF_DEAD;
	c->state = NET_TCP_CLOSED;
	c->hnext = s->dead;
	s->dead = c;
}

static void deliver(struct net_stack *s, struct net_conn *c)
{
	while (c->pending_ev) {
		unsigned ev = (unsigned)__builtin_ctz(c->pending_ev);
		c->pending_ev &= (uint8_t)~(1u << ev);
		if (c->flags & CF_APP_GONE)
			continue;
		if (ev == NET_EV_ABORT) {
			c->pending_ev = 0;
			s->ops.event(s->ops.ctx, c, NET_EV_ABORT);
			c->flags |= CF_APP_GONE;
			conn_kill(s, c);
			return;
		}
		if (!(c->flags & CF_DEAD))
			s->ops.event(s->ops.ctx, c, (enum net_event)ev);
	}
}

static void post(struct net_conn *c, enum net_event ev)
{
	c->pending_ev |= (uint8_t)(1u << ev);
}

/* The connection failed under the app: tell it (NET_EV_ABORT), then forget it. */
static void conn_abort(struct net_stack *s, struct net_conn *c, int err)
{
	c->error = (int16_t)err;
	net_timer_cancel(&s->wheel, &c->timer);
	c->rtx_at = c->delack_at = 0;
	if ((c->flags & CF_APP_GONE) || c->state == NET_TCP_SYN_RCVD) {
		conn_kill(s, c);
		return;
	}
	/* CLOSED from now: whatever the callback calls (write, close) sends nothing. */
	c->state = NET_TCP_CLOSED;
	c->flags &= (uint16_t)~CF_ACK_NOW;
	post(c, NET_EV_ABORT);
}

void net_tcp_reap(struct net_stack *s)
{
	while (s->dead) {
		struct net_conn *c = s->dead;
		s->dead = c->hnext;
		free(c);
	}
}

/* ---- TIME-WAIT table ---- */

static uint32_t tw_bucket(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			  const uint8_t *raddr, uint16_t rport)
{
	return tuple_hash(s, laddr, lport, raddr, rport) & s->tw_mask;
}

static struct net_tw *tw_lookup(const struct net_stack *s, const uint8_t *laddr,
				uint16_t lport, const uint8_t *raddr, uint16_t rport)
{
	uint32_t i = s->tw_hash[tw_bucket(s, laddr, lport, raddr, rport)];
	while (i) {
		struct net_tw *t = &s->tw[i - 1];
		if (t->lport == lport && t->rport == rport && !memcmp(t->laddr, laddr, 16) &&
		    !memcmp(t->raddr, raddr, 16))
			return t;
		i = t->hnext;
	}
	return NULL;
}

static void tw_remove(struct net_stack *s, struct net_tw *t)
{
	uint32_t idx = (uint32_t)(t - s->tw) + 1;
	uint32_t *p = &s->tw_hash[tw_bucket(s, t->laddr, t->lport, t->raddr, t->rport)];
	while (*p && *p != idx)
		p = &s->tw[*p - 1].hnext;
	if (*p)
		*p = t->hnext;
	t->used = 0;
	s->tw_live--;
}

/* Pop expired (or removed) entries from the head of the ring. */
static void tw_expire(struct net_stack *s, bool force_one)
{
	while (s->tw_count) {
		struct net_tw *t = &s->tw[s->tw_head];
		if (t->used) {
			if (!force_one && !net_tick_le(t->expire, s->now_ms))
				break;
			if (force_one)
				s->cnt.tcp_time_wait_evict++;
			force_one = false;
			tw_remove(s, t);
		}
		s->tw_head = (s->tw_head + 1) % s->cfg.time_wait_max;
		s->tw_count--;
	}
}

/* 3.10.7.4: enter TIME-WAIT; the control block goes, a table entry stays for 2 MSL. The
 * app released the connection before our FIN was sent, so nobody holds the handle. */
/* Append an entry expiring 2 MSL from now at the tail of the ring (expiry order). */
static void tw_append(struct net_stack *s, const struct net_tw *e)
{
	if (s->tw_count == s->cfg.time_wait_max)
		tw_expire(s, true); /* full: the oldest goes early */
	if (s->tw_count == s->cfg.time_wait_max)
		return;
	uint32_t i = (s->tw_head + s->tw_count) % s->cfg.time_wait_max;
	struct net_tw *t = &s->tw[i];
	*t = *e;
	t->expire = s->now_ms + s->cfg.time_wait_ms;
	t->used = 1;
	uint32_t *b = &s->tw_hash[tw_bucket(s, t->laddr, t->lport, t->raddr, t->rport)];
	t->hnext = *b;
	*b = i + 1;
	s->tw_count++;
	s->tw_live++;
}

static void enter_time_wait(struct net_stack *s, struct net_conn *c)
{
	struct net_tw e;
	memset(&e, 0, sizeof(e));
	memcpy(e.laddr, c->laddr, 16);
	memcpy(e.raddr, c->raddr, 16);
	e.lport = c->lport;
	e.rport = c->rport;
	e.snd_nxt = c->snd_max;
	e.rcv_nxt = c->rcv_nxt;
	e.ts_recent = c->ts_recent;
	e.has_ts = (c->flags & CF_TS) != 0;
	memcpy(e.peer_mac, c->peer_mac, 6);
	tw_append(s, &e);
	s->cnt.tcp_time_wait++;
	c->flags |= CF_APP_GONE;
	conn_kill(s, c);
}

/* A segment for a TIME-WAIT entry. Returns true when it was consumed; false when the entry
 * was removed so that the segment (a new SYN, RFC 6191) goes on to the listener. */
static bool tw_input(struct net_stack *s, struct net_tw *t, const struct seg *g)
{
	/* RFC 1337: an RST must not cut TIME-WAIT short (TIME-WAIT assassination). */
	if (g->flags & TH_RST)
		return true;
	if ((g->flags & TH_SYN) && !(g->flags & TH_ACK)) {
		/* RFC 6191 / RFC 1122 4.2.2.13: a new incarnation may start from TIME-WAIT
		 * when its timestamp or its sequence number is beyond the old one's. */
		bool newer = (t->has_ts && g->o.ts) ? SEQ_GT(g->o.tsval, t->ts_recent)
						     : SEQ_GT(g->seq, t->rcv_nxt);
		if (newer) {
			tw_remove(s, t);
			s->cnt.tcp_time_wait_reuse++;
			return false;
		}
	}
	/* A retransmitted FIN (our last ACK was lost) or anything else carrying data or
	 * SYN: acknowledge again (3.10.7.4 TIME-WAIT). Bare ACKs get nothing, or two
	 * TIME-WAIT ends would ACK each other forever. */
	if ((g->flags & (TH_FIN | TH_SYN)) || g->len) {
		if (!rst_allowed(s))
			return true;
		uint8_t opt[12];
		uint32_t tsv = s->now_ms + ts_offset(s, t->laddr, t->lport, t->raddr, t->rport);
		size_t n = t->has_ts ? put_ts(opt, tsv, t->ts_recent) : 0;
		tcp_xmit_raw(s, t->peer_mac, t->laddr, t->lport, t->raddr, t->rport, t->snd_nxt,
			     t->rcv_nxt, TH_ACK, 0, opt, n, NULL, 1, 0, 0);
		if (g->flags & TH_FIN) {
			/* 3.10.7.4 TIME-WAIT: a retransmitted FIN restarts the 2 MSL wait; the
			 * entry moves to the tail of the ring, which stays in expiry order. */
			struct net_tw copy = *t;
			tw_remove(s, t);
			tw_append(s, &copy);
		}
	}
	return true;
}

/* ---- SYN cookies (RFC 4987 3.6) ---- */

static const uint16_t cookie_mss[8] = { 216, 536, 1200, 1220, 1380, 1440, 1460, 8960 };

static uint32_t cookie_hash(const struct net_stack *s, const uint8_t *ip, uint16_t lport,
			    uint16_t rport, uint32_t irs, uint32_t t, uint32_t mss_idx)
{
	uint8_t k[48];
	memcpy(k, ip, 32);
	net_put16(k + 32, lport);
	net_put16(k + 34, rport);
	net_put32(k + 36, irs);
	net_put32(k + 40, t);
	net_put32(k + 44, mss_idx);
	return (uint32_t)net_siphash(s->cfg.secret, k, sizeof(k)) & 0xffffffu;
}

/* The ISS: 5 bits of time, 3 bits of MSS index, 24 bits of MAC over the 4-tuple, the
 * client's ISN, the time and the MSS index. */
static uint32_t cookie_make(const struct net_stack *s, const uint8_t *ip, uint16_t lport,
			    uint16_t rport, uint32_t irs, uint16_t mss)
{
	uint32_t idx = 0;
	for (uint32_t i = 0; i < 8; i++)
		if (cookie_mss[i] <= mss)
			idx = i;
	uint32_t t = (s->now_ms / COOKIE_PERIOD_MS) & 31;
	return t << 27 | idx << 24 | cookie_hash(s, ip, lport, rport, irs, t, idx);
}

/* Returns the MSS the cookie encodes, or 0 if it is not ours or too old. */
static uint16_t cookie_check(const struct net_stack *s, const uint8_t *ip, uint16_t lport,
			     uint16_t rport, uint32_t irs, uint32_t cookie)
{
	uint32_t t = cookie >> 27, idx = (cookie >> 24) & 7;
	uint32_t now_t = (s->now_ms / COOKIE_PERIOD_MS) & 31;
	if (((now_t - t) & 31) > COOKIE_AGE_MAX)
		return 0;
	if (cookie_hash(s, ip, lport, rport, irs, t, idx) != (cookie & 0xffffffu))
		return 0;
	return cookie_mss[idx];
}

/* With timestamps, the peer's window scale (4 bits, 15 = none) and SACK-permitted (bit 4)
 * travel in the low bits of our TSval and come back in TSecr, as Linux does. */
static uint32_t cookie_tsval(const struct net_stack *s, const uint8_t *ip, uint16_t lport,
			     uint16_t rport, const struct tcp_opts *o)
{
	uint32_t now = s->now_ms + ts_offset(s, ip + 16, lport, ip, rport);
	uint32_t enc = (uint32_t)(o->ws < 0 ? 15 : o->ws) | (o->sack_ok ? 16u : 0u);
	uint32_t v = (now & ~31u) | enc;
	if (SEQ_GT(v, now))
		v -= 32; /* never ahead of our clock, or our next TSval would look old */
	return v;
}

/* ---- opening ---- */

/* The window of a cookie SYN-ACK, and so the window the cookie's ACK may fill. */
static uint32_t cookie_window(const struct net_stack *s)
{
	uint32_t w = s->cfg.rcvbuf > 65535 ? 65535 : s->cfg.rcvbuf;
	if (s->pressure && w > 2u * s->mss_local)
		w = 2u * s->mss_local;
	return w;
}

static void conn_input(struct net_stack *s, struct net_conn *c, struct seg *g);

static uint32_t new_iss(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			const uint8_t *raddr, uint16_t rport)
{
	/* RFC 6528: a 4 us clock plus a keyed hash of the 4-tuple. */
	return (uint32_t)(s->now_us / 4) + tuple_hash(s, laddr, lport, raddr, rport) * 2654435761u;
}

static void apply_syn_opts(struct net_stack *s, struct net_conn *c, const struct tcp_opts *o)
{
	bool v6 = (c->flags & CF_IPV6) != 0;
	/* 3.7.1: without the option, 536 (IPv4) or 1220 (IPv6, RFC 8200 5). */
	uint16_t mss = o->mss ? o->mss : (v6 ? 1220 : 536);
	if (mss > mss_for(s, v6))
		mss = mss_for(s, v6); /* clamp to our MTU (both ways) */
	if (mss < MSS_MIN)
		mss = MSS_MIN;
	c->mss = mss;
	if (o->ws >= 0) {
		c->flags |= CF_WS;
		c->snd_wscale = (uint8_t)o->ws;
		c->rcv_wscale = s->rcv_wscale;
	} else {
		c->snd_wscale = c->rcv_wscale = 0;
	}
	if (o->sack_ok)
		c->flags |= CF_SACK;
	if (o->ts) {
		c->flags |= CF_TS;
		c->ts_recent = o->tsval;
		c->ts_recent_ms = s->now_ms;
	}
	/* RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)). */
	uint32_t iw = 2u * mss > 14600 ? 2u * mss : 14600;
	c->cwnd = iw < 10u * mss ? iw : 10u * mss;
}

static void listen_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			 uint16_t lport, uint16_t rport, const struct seg *g)
{
	/* 3.10.7.2 LISTEN. */
	if (g->flags & TH_RST)
		return;
	if (g->flags & TH_ACK) {
		if (!(g->flags & TH_SYN) && !(g->flags & (TH_FIN))) {
			/* Possibly the third segment of a handshake answered by cookie. */
			uint16_t mss = cookie_check(s, ip, lport, rport, g->seq - 1, g->ack - 1);
			if (mss) {
				s->cnt.tcp_syn_cookie_ok++;
				struct net_conn *c = conn_new(s, smac, ip + 16, lport, ip, rport);
				if (!c)
					return;
				struct tcp_opts o = { .mss = mss, .ws = -1 };
				if (g->o.ts) {
					uint32_t enc = g->o.tsecr & 31;
					o.ts = true;
					o.tsval = g->o.tsval;
					o.ws = (enc & 15) == 15 ? (int8_t)-1 : (int8_t)(enc & 15);
					o.sack_ok = (enc & 16) != 0;
				}
				apply_syn_opts(s, c, &o);
				c->irs = g->seq - 1;
				c->iss = g->ack - 1;
				c->recover = c->iss;
				c->rcv_nxt = g->seq;
				c->rcv_adv = g->seq + cookie_window(s);
				c->snd_una = c->snd_nxt = c->snd_max = g->ack;
				c->snd_wnd = (uint32_t)g->win << c->snd_wscale;
				c->max_snd_wnd = c->snd_wnd;
				c->snd_wl1 = g->seq;
				c->snd_wl2 = g->ack;
				c->state = NET_TCP_ESTABLISHED;
				s->cnt.tcp_accept++;
				post(c, NET_EV_ACCEPT);
				struct seg copy = *g; /* data on the ACK is taken as usual */
				conn_input(s, c, &copy);
				return;
			}
			s->cnt.tcp_syn_cookie_bad++;
		}
		send_rst_for(s, smac, ip, lport, rport, g);
		return;
	}
	if (!(g->flags & TH_SYN) || (g->flags & TH_FIN))
		return;
	s->cnt.tcp_syn++;
	/* No state for this SYN when half-open blocks are at their limit, the pool is low,
	 * or the table is full: a cookie answers instead of silence (RFC 4987 3.6). */
	if (s->nhalf >= s->cfg.syn_backlog || s->pressure || s->nconns >= s->cfg.max_conns) {
		/* Stateless answer: the cookie is our ISN. */
		bool v6 = !net_addr_is4(ip);
		uint16_t mss = g->o.mss ? g->o.mss : (v6 ? 1220 : 536);
		if (mss > mss_for(s, v6))
			mss = mss_for(s, v6);
		uint32_t cookie = cookie_make(s, ip, lport, rport, g->seq, mss);
		uint8_t opt[40];
		size_t n = 0;
		opt[n++] = 2;
		opt[n++] = 4;
		net_put16(opt + n, mss_for(s, v6));
		n += 2;
		if (g->o.ts) {
			if (g->o.sack_ok) {
				opt[n++] = 1;
				opt[n++] = 1;
				opt[n++] = 4;
				opt[n++] = 2;
			}
			n += put_ts(opt + n, cookie_tsval(s, ip, lport, rport, &g->o), g->o.tsval);
			if (g->o.ws >= 0) {
				opt[n++] = 1;
				opt[n++] = 3;
				opt[n++] = 3;
				opt[n++] = s->rcv_wscale;
			}
		}
		uint32_t win = cookie_window(s);
		s->cnt.tcp_syn_cookie_sent++;
		tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, cookie, g->seq + 1,
			     TH_SYN | TH_ACK, (uint16_t)win, opt, n, NULL, 1, 0, 0);
		return;
	}
	struct net_conn *c = conn_new(s, smac, ip + 16, lport, ip, rport);
	if (!c)
		return;
	apply_syn_opts(s, c, &g->o);
	c->state = NET_TCP_SYN_RCVD;
	s->nhalf++;
	c->irs = g->seq;
	c->rcv_nxt = g->seq + 1;
	c->rcv_adv = c->rcv_nxt;
	c->iss = new_iss(s, c->laddr, lport, c->raddr, rport);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->recover = c->iss;
	c->snd_wnd = g->win; /* 3.10.7.2: never scaled in a SYN */
	c->snd_wl1 = g->seq;
	c->snd_wl2 = c->iss;
	c->rtt_start = s->now_ms; /* the SYN-ACK leaves now: the handshake times the path */
	/* Data on the SYN is not kept: the client sends it again after our SYN-ACK acks
	 * only its SYN. */
	tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	c->rtx_at = tick_nz(s->now_ms + c->rto);
	conn_timer_update(s, c);
}

struct net_conn *net_conn_connect(struct net_stack *s, uint32_t ipv4, uint16_t port,
				  uint16_t lport, uint64_t now_us)
{
	if (now_us > s->now_us) {
		s->now_us = now_us;
		s->now_ms = (uint32_t)(now_us / 1000);
	}
	uint8_t mac[6];
	uint32_t mask = s->cfg.ipv4_prefix ? ~0u << (32 - s->cfg.ipv4_prefix) : 0;
	bool onlink = ((__builtin_bswap32(ipv4) ^ __builtin_bswap32(s->cfg.ipv4)) & mask) == 0;
	uint32_t hop = onlink ? ipv4 : s->cfg.ipv4_gateway;
	if (!hop || !net_arp_lookup(s, hop, mac)) {
		if (hop)
			net_arp_request(s, hop);
		errno = EHOSTUNREACH;
		return NULL;
	}
	uint8_t laddr[16], raddr[16];
	net_addr_map4(laddr, s->cfg.ipv4);
	net_addr_map4(raddr, ipv4);
	if (!lport) {
		for (unsigned i = 0; i < 28000 && !lport; i++) {
			uint16_t p = s->next_port;
			s->next_port = (uint16_t)(p >= 60999 ? 32768 : p + 1);
			if (!conn_lookup(s, laddr, p, raddr, port) &&
			    !tw_lookup(s, laddr, p, raddr, port))
				lport = p;
		}
	}
	if (!lport || conn_lookup(s, laddr, lport, raddr, port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	struct net_conn *c = conn_new(s, mac, laddr, lport, raddr, port);
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->flags |= CF_ACTIVE;
	c->rcv_wscale = s->rcv_wscale;
	c->state = NET_TCP_SYN_SENT;
	c->iss = new_iss(s, laddr, lport, raddr, port);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->recover = c->iss;
	c->rtt_start = s->now_ms;
	s->cnt.tcp_connect++;
	s->depth++;
	tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	c->rtx_at = tick_nz(s->now_ms + c->rto);
	conn_timer_update(s, c);
	s->depth--;
	return c;
}

/* 3.10.7.3 SYN-SENT. */
static void syn_sent_input(struct net_stack *s, struct net_conn *c, const struct seg *g)
{
	if (g->flags & TH_ACK) {
		if (SEQ_LE(g->ack, c->iss) || SEQ_GT(g->ack, c->snd_max)) {
			if (!(g->flags & TH_RST) && rst_allowed(s)) {
				s->cnt.tcp_rst_sent++;
				tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport,
					     g->ack, 0, TH_RST, 0, NULL, 0, NULL, 1, 0, 0);
			}
			return;
		}
	}
	if (g->flags & TH_RST) {
		if (g->flags & TH_ACK) {
			s->cnt.tcp_rst_rcvd++;
			conn_abort(s, c, -ECONNREFUSED);
		}
		return;
	}
	if (!(g->flags & TH_SYN))
		return;
	struct tcp_opts o = g->o; /* options: now only what both sides said */
	c->flags &= (uint16_t)~(CF_WS | CF_SACK | CF_TS);
	apply_syn_opts(s, c, &o);
	if (o.ws < 0)
		c->rcv_wscale = 0;
	c->irs = g->seq;
	c->rcv_nxt = g->seq + 1;
	c->rcv_adv = c->rcv_nxt;
	c->snd_wl1 = g->seq;
	if (g->flags & TH_ACK) {
		c->snd_una = g->ack;
		c->snd_wnd = g->win; /* unscaled in a SYN */
		c->max_snd_wnd = c->snd_wnd;
		c->snd_wl2 = g->ack;
		c->state = NET_TCP_ESTABLISHED;
		c->rtx_at = 0;
		c->backoff = 0;
		/* RFC 6298 2.2: the first RTT sample, unless the SYN was retransmitted. */
		if (!c->syn_retries) {
			uint32_t r = s->now_ms - c->rtt_start;
			c->srtt = r << 3;
			c->rttvar = r << 1;
			uint32_t rto = r + (r * 2 > 1 ? r * 2 : 1);
			c->rto = rto < RTO_MIN_MS ? RTO_MIN_MS : rto;
		}
		c->flags |= CF_ACK_NOW;
		post(c, NET_EV_CONNECTED);
		tcp_output(s, c);
	} else {
		/* Simultaneous open: SYN-RECEIVED, SYN-ACK with our same ISS. */
		c->state = NET_TCP_SYN_RCVD;
		s->nhalf++;
		c->snd_wnd = g->win;
		tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	}
}

/* ---- receiving data ---- */

static bool ooo_add(struct net_conn *c, uint32_t start, uint32_t end)
{
	unsigned n = c->sack_n;
	/* Find the runs this one touches and merge them. */
	unsigned i = 0;
	while (i < n && SEQ_LT(c->ooo[i].end, start))
		i++;
	unsigned j = i;
	while (j < n && SEQ_LE(c->ooo[j].start, end))
		j++;
	if (i == j) {
		/* A new run at i. */
		if (n == NET_SACK_RANGES)
			return false;
		memmove(&c->ooo[i + 1], &c->ooo[i], (n - i) * sizeof(c->ooo[0]));
		c->ooo[i].start = start;
		c->ooo[i].end = end;
		c->sack_n++;
	} else {
		uint32_t s0 = SEQ_LT(start, c->ooo[i].start) ? start : c->ooo[i].start;
		uint32_t e0 = SEQ_GT(end, c->ooo[j - 1].end) ? end : c->ooo[j - 1].end;
		c->ooo[i].start = s0;
		c->ooo[i].end = e0;
		memmove(&c->ooo[i + 1], &c->ooo[j], (n - j) * sizeof(c->ooo[0]));
		c->sack_n = (uint8_t)(n - (j - i - 1));
	}
	c->sack_last = (uint8_t)i;
	return true;
}

/* Data of an acceptable segment, trimmed to the window already (3.10.7.4 seventh). Returns
 * true if the FIN flag may be processed (the segment ended at rcv_nxt). */
static bool data_input(struct net_stack *s, struct net_conn *c, uint32_t seq,
		       const uint8_t *data, uint32_t len)
{
	if (!len)
		return seq == c->rcv_nxt;
	if (c->flags & CF_APP_GONE) {
		/* Nobody will read it: acknowledge and drop, so the peer finishes. */
		if (seq == c->rcv_nxt && !c->sack_n) {
			c->rcv_nxt += len;
			c->flags |= CF_ACK_NOW;
			return true;
		}
		c->flags |= CF_ACK_NOW;
		return false;
	}
	if (!c->rbuf) {
		c->rbuf = buf_get(s, true);
		if (!c->rbuf) {
			c->flags |= CF_ACK_NOW;
			return false;
		}
		c->rhead = 0;
	}
	uint32_t cap = s->cfg.rcvbuf;
	uint32_t room = cap - c->rlen;
	uint32_t off = seq - c->rcv_nxt;
	if (off >= room)
		return false;
	bool trimmed = false;
	if (len > room - off) {
		len = room - off;
		trimmed = true;
	}
	if (seq == c->rcv_nxt) {
		ring_write(c->rbuf, cap, c->rhead + c->rlen, data, len);
		c->rlen += len;
		c->rcv_nxt += len;
		bool filled = false;
		while (c->sack_n && SEQ_LE(c->ooo[0].start, c->rcv_nxt)) {
			if (SEQ_GT(c->ooo[0].end, c->rcv_nxt)) {
				c->rlen += c->ooo[0].end - c->rcv_nxt;
				c->rcv_nxt = c->ooo[0].end;
			}
			memmove(&c->ooo[0], &c->ooo[1], (c->sack_n - 1u) * sizeof(c->ooo[0]));
			c->sack_n--;
			filled = true;
		}
		c->sack_last = 0;
		post(c, NET_EV_READABLE);
		/* RFC 5681 4.2: ACK at least every second full segment, at once when a gap
		 * is filled; else delay. */
		if (filled || c->sack_n || (c->flags & CF_DELACK_SEG)) {
			c->flags |= CF_ACK_NOW;
		} else {
			if (len >= c->mss / 2u)
				c->flags |= CF_DELACK_SEG;
			if (!c->delack_at)
				c->delack_at = tick_nz(s->now_ms + s->cfg.delack_ms);
		}
		return !trimmed;
	}
	/* Out of order: kept in place in the ring, its run recorded for SACK. */
	if (!ooo_add(c, seq, seq + len)) {
		s->cnt.tcp_ooo_drop++;
	} else {
		ring_write(c->rbuf, cap, c->rhead + c->rlen + off, data, len);
		s->cnt.tcp_ooo_segs++;
	}
	c->flags |= CF_ACK_NOW; /* RFC 5681 4.2: a duplicate ACK at once */
	return false;
}

/* ---- ACK processing ---- */

static void rtt_sample(struct net_conn *c, uint32_t r)
{
	/* RFC 6298 2.2 and 2.3, with srtt scaled by 8 and rttvar by 4. */
	if (!c->srtt) {
		c->srtt = r << 3;
		c->rttvar = r << 1;
	} else {
		int32_t delta = (int32_t)r - (int32_t)(c->srtt >> 3);
		c->srtt = (uint32_t)((int32_t)c->srtt + delta);
		if (delta < 0)
			delta = -delta;
		c->rttvar = (uint32_t)((int32_t)c->rttvar + (delta - (int32_t)(c->rttvar >> 2)));
	}
	uint32_t var = c->rttvar; /* 4 * rttvar, since rttvar is scaled by 4 */
	uint32_t rto = (c->srtt >> 3) + (var > 1 ? var : 1);
	c->rto = rto < RTO_MIN_MS ? RTO_MIN_MS : (rto > RTO_MAX_MS ? RTO_MAX_MS : rto);
}

static uint32_t flight(const struct net_conn *c)
{
	return c->snd_max - c->snd_una;
}

/* RFC 5681 3.2 fast retransmit and RFC 6582 NewReno. Returns after sending. */
static void dupack(struct net_stack *s, struct net_conn *c)
{
	c->dupacks++;
	if (c->flags & CF_RECOVERY) {
		c->cwnd += c->mss; /* inflate: a segment left the network */
		tcp_output(s, c);
		return;
	}
	if (c->dupacks != 3)
		return;
	/* RFC 6582 3.2 step 2: only if this loss is after the last recovery point. */
	if (!SEQ_GT(c->snd_una, c->recover))
		return;
	uint32_t half = flight(c) / 2, two = 2u * c->mss;
	c->ssthresh = half > two ? half : two;
	c->recover = c->snd_max;
	c->flags |= CF_RECOVERY;
	c->flags &= (uint16_t)~CF_RTT_TIMING;
	s->cnt.tcp_fast_retransmit++;
	uint32_t saved = c->snd_nxt;
	c->snd_nxt = c->snd_una;
	c->cwnd = c->mss; /* exactly one segment goes now */
	tcp_output(s, c);
	if (SEQ_GT(saved, c->snd_nxt))
		c->snd_nxt = saved;
	c->cwnd = c->ssthresh + 3u * c->mss;
	tcp_output(s, c);
}

/* 3.10.7.4 fifth, with RFC 5961 5.2. Returns false when the segment must be dropped. */
static bool ack_input(struct net_stack *s, struct net_conn *c, const struct seg *g)
{
	if (SEQ_GT(g->ack, c->snd_max)) {
		/* Acknowledges what we never sent: ACK and drop. */
		c->flags |= CF_ACK_NOW;
		return false;
	}
	if (SEQ_LT(g->ack, c->snd_una - c->max_snd_wnd)) {
		challenge_ack(s, c);
		return false;
	}
	uint32_t old_wnd = c->snd_wnd;
	if (SEQ_GT(g->ack, c->snd_una)) {
		uint32_t acked = g->ack - c->snd_una;
		uint32_t data = acked > c->slen ? c->slen : acked;
		if (acked > c->slen && (c->flags & CF_FIN_QUEUED))
			c->flags |= CF_FIN_ACKED;
		bool was_full = c->slen == s->cfg.sndbuf;
		c->shead = (c->shead + data) % s->cfg.sndbuf;
		c->slen -= data;
		c->snd_una = g->ack;
		if (SEQ_LT(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		/* Karn: only a segment sent once gives an RTT sample (RFC 6298 3). */
		if ((c->flags & CF_RTT_TIMING) && SEQ_GT(g->ack, c->rtt_seq)) {
			c->flags &= (uint16_t)~CF_RTT_TIMING;
			rtt_sample(c, s->now_ms - c->rtt_start);
		}
		c->backoff = 0;
		if (!(c->flags & CF_RECOVERY) && SEQ_GT(c->snd_una, c->recover + (1u << 30)))
			c->recover = c->snd_una - 1; /* keep it within comparison range */
		if (c->flags & CF_RECOVERY) {
			if (SEQ_GE(g->ack, c->recover)) {
				/* RFC 6582 3.2 step 3, full ACK: deflate. */
				uint32_t f = flight(c) + c->mss;
				c->cwnd = c->ssthresh < f ? c->ssthresh : f;
				c->flags &= (uint16_t)~CF_RECOVERY;
			} else {
				/* Partial ACK: retransmit the next hole, deflate by what was
				 * acknowledged, add back one segment. */
				uint32_t saved = c->snd_nxt;
				uint32_t cw = c->cwnd;
				c->snd_nxt = c->snd_una;
				c->cwnd = c->mss;
				tcp_output(s, c);
				if (SEQ_GT(saved, c->snd_nxt))
					c->snd_nxt = saved;
				c->cwnd = cw > acked ? cw - acked : 0;
				c->cwnd += c->mss;
				s->cnt.tcp_fast_retransmit++;
			}
		} else if (c->cwnd < c->ssthresh) {
			c->cwnd += acked < c->mss ? acked : c->mss; /* RFC 5681 3.1 slow start */
		} else {
			uint64_t sq = (uint64_t)c->mss * c->mss;
			uint32_t inc = (uint32_t)(sq / (c->cwnd ? c->cwnd : 1));
			c->cwnd += inc ? inc : 1; /* congestion avoidance */
		}
		c->dupacks = 0;
		/* RFC 6298 5.2/5.3: stop the timer when all is acknowledged, else restart. */
		c->rtx_at = 0;
		c->flags &= (uint16_t)~CF_PERSIST;
		if (!c->slen) {
			buf_put(s, c->sbuf, false);
			c->sbuf = NULL;
			c->shead = 0;
		}
		if (was_full || (c->flags & CF_WANT_WRITE)) {
			c->flags &= (uint16_t)~CF_WANT_WRITE;
			post(c, NET_EV_WRITABLE);
		}
	}
	/* Window update (3.10.7.4: SND.WL1/WL2 rule). */
	bool wnd_updated = false;
	if (SEQ_LT(c->snd_wl1, g->seq) || (c->snd_wl1 == g->seq && SEQ_LE(c->snd_wl2, g->ack))) {
		uint32_t w = (uint32_t)g->win << c->snd_wscale;
		wnd_updated = w != c->snd_wnd;
		c->snd_wnd = w;
		c->snd_wl1 = g->seq;
		c->snd_wl2 = g->ack;
		if (w > c->max_snd_wnd)
			c->max_snd_wnd = w;
	}
	/* RFC 5681 2: a duplicate ACK carries no data, no SYN/FIN, the same ACK number and
	 * window, while data is outstanding. */
	if (g->ack == c->snd_una && !g->len && !(g->flags & (TH_SYN | TH_FIN)) && !wnd_updated &&
	    g->win == (old_wnd >> c->snd_wscale) && old_wnd && flight(c))
		dupack(s, c);
	else if (g->ack != c->snd_una || wnd_updated)
		c->dupacks = 0;
	if (old_wnd == 0 && c->snd_wnd) {
		c->flags &= (uint16_t)~CF_PERSIST;
		c->rtx_at = 0;
		c->backoff = 0;
		c->snd_nxt = c->snd_una; /* the probe byte is sent again as data */
	}
	return true;
}

/* 3.10.7.4: a segment for a synchronized connection (or SYN-RECEIVED). */
static void conn_input(struct net_stack *s, struct net_conn *c, struct seg *g)
{
	uint32_t seglen = g->len + (uint32_t)((g->flags & TH_SYN) ? 1 : 0) +
			  (uint32_t)((g->flags & TH_FIN) ? 1 : 0);
	uint32_t rwnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	if (c->flags & CF_APP_GONE)
		rwnd = rwnd > s->cfg.rcvbuf ? rwnd : s->cfg.rcvbuf;

	/* RFC 7323 5.3 PAWS (not for RST: RFC 7323 5.3 R1 note). */
	if ((c->flags & CF_TS) && g->o.ts && !(g->flags & TH_RST) &&
	    SEQ_LT(g->o.tsval, c->ts_recent) && s->now_ms - c->ts_recent_ms < PAWS_IDLE_MS) {
		s->cnt.tcp_paws_drop++;
		c->flags |= CF_ACK_NOW;
		tcp_output(s, c);
		return;
	}
	/* RFC 5961 4.2: a SYN on a synchronized connection, whatever its sequence number,
	 * gets a challenge ACK. A retransmitted SYN in SYN-RECEIVED gets the SYN-ACK again. */
	if ((g->flags & TH_SYN) && !(g->flags & TH_RST)) {
		if (c->state == NET_TCP_SYN_RCVD && g->seq == c->irs && !(g->flags & TH_ACK)) {
			tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
			return;
		}
		challenge_ack(s, c);
		return;
	}
	/* First: sequence number acceptable? */
	bool ok;
	if (seglen == 0)
		ok = rwnd == 0 ? g->seq == c->rcv_nxt
			       : SEQ_GE(g->seq, c->rcv_nxt) && SEQ_LT(g->seq, c->rcv_nxt + rwnd);
	else if (rwnd == 0)
		ok = g->seq == c->rcv_nxt; /* keep ACKs flowing; the data is trimmed away */
	else
		ok = (SEQ_GE(g->seq, c->rcv_nxt) && SEQ_LT(g->seq, c->rcv_nxt + rwnd)) ||
		     (SEQ_GE(g->seq + seglen - 1, c->rcv_nxt) &&
		      SEQ_LT(g->seq + seglen - 1, c->rcv_nxt + rwnd));
	if (!ok) {
		if (g->flags & TH_RST)
			return; /* RFC 5961 3.2: outside the window, silently dropped */
		if (seglen && SEQ_LE(g->seq + seglen, c->rcv_nxt))
			s->cnt.tcp_dup_segs++;
		else
			s->cnt.tcp_out_of_window++;
		c->flags |= CF_ACK_NOW;
		tcp_output(s, c);
		return;
	}
	/* Second: RST (RFC 5961 3.2): exactly rcv_nxt resets, else a challenge ACK. */
	if (g->flags & TH_RST) {
		if (g->seq != c->rcv_nxt) {
			challenge_ack(s, c);
			return;
		}
		s->cnt.tcp_rst_rcvd++;
		if (c->state == NET_TCP_SYN_RCVD && !(c->flags & CF_ACTIVE)) {
			conn_kill(s, c); /* back to LISTEN: nothing to tell anyone */
			return;
		}
		if (c->state == NET_TCP_CLOSING || c->state == NET_TCP_LAST_ACK ||
		    (c->flags & CF_APP_GONE)) {
			conn_kill(s, c);
			return;
		}
		conn_abort(s, c, -ECONNRESET);
		return;
	}
	/* Fifth: ACK. */
	if (!(g->flags & TH_ACK))
		return;
	/* Timestamps (RFC 7323 4.3): remember TSval of a segment covering rcv_nxt. */
	if ((c->flags & CF_TS) && g->o.ts && SEQ_LE(g->seq, c->rcv_nxt) &&
	    SEQ_GE(g->o.tsval, c->ts_recent)) {
		c->ts_recent = g->o.tsval;
		c->ts_recent_ms = s->now_ms;
	}
	if (c->state == NET_TCP_SYN_RCVD) {
		if (SEQ_GT(g->ack, c->snd_una) && SEQ_LE(g->ack, c->snd_max)) {
			c->state = NET_TCP_ESTABLISHED;
			s->nhalf--;
			c->snd_una = g->ack;
			c->snd_wnd = (uint32_t)g->win << c->snd_wscale;
			c->max_snd_wnd = c->snd_wnd;
			c->snd_wl1 = g->seq;
			c->snd_wl2 = g->ack;
			c->rtx_at = 0;
			if (!c->syn_retries) {
				/* RFC 6298 2.2: the handshake's RTT is a valid first sample; a
				 * retransmitted SYN-ACK gives none (Karn), and RTO stays 1 s. */
				rtt_sample(c, s->now_ms - c->rtt_start);
			}
			c->backoff = 0;
			if (c->flags & CF_ACTIVE) {
				c->flags &= (uint16_t)~CF_ACTIVE;
				post(c, NET_EV_CONNECTED);
			} else {
				s->cnt.tcp_accept++;
				post(c, NET_EV_ACCEPT);
			}
		} else {
			if (rst_allowed(s)) {
				s->cnt.tcp_rst_sent++;
				tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport,
					     g->ack, 0, TH_RST, 0, NULL, 0, NULL, 1, 0, 0);
			}
			return;
		}
	}
	if (!ack_input(s, c, g)) {
		tcp_output(s, c);
		return;
	}
	switch (c->state) {
	case NET_TCP_FIN_WAIT_1:
		if (c->flags & CF_FIN_ACKED) {
			c->state = NET_TCP_FIN_WAIT_2;
			/* An orphan does not wait forever for the peer's FIN. */
			c->rtx_at = tick_nz(s->now_ms + FIN_WAIT_2_MS);
		}
		break;
	case NET_TCP_CLOSING:
		if (c->flags & CF_FIN_ACKED) {
			enter_time_wait(s, c);
			return;
		}
		break;
	case NET_TCP_LAST_ACK:
		if (c->flags & CF_FIN_ACKED) {
			conn_kill(s, c);
			return;
		}
		break;
	default:
		break;
	}
	/* Seventh: data, in the states that still receive (trimmed to the window). */
	bool fin_ok = true;
	uint32_t seq = g->seq;
	const uint8_t *data = g->data;
	uint32_t len = g->len;
	bool fin = (g->flags & TH_FIN) != 0;
	if (SEQ_LT(seq, c->rcv_nxt)) {
		uint32_t skip = c->rcv_nxt - seq;
		if (skip >= len) {
			if (len)
				s->cnt.tcp_dup_segs++;
			skip = len;
		}
		data += skip;
		len -= skip;
		seq += skip;
		if (g->len && skip == g->len)
			c->flags |= CF_ACK_NOW; /* a duplicate: tell the peer where we are */
	}
	uint32_t edge = c->rcv_nxt + rwnd;
	if (len && SEQ_GT(seq + len, edge)) {
		len = SEQ_GT(edge, seq) ? edge - seq : 0;
		fin = false; /* the FIN lies beyond the window */
		c->flags |= CF_ACK_NOW;
	}
	switch (c->state) {
	case NET_TCP_ESTABLISHED:
	case NET_TCP_FIN_WAIT_1:
	case NET_TCP_FIN_WAIT_2:
		fin_ok = data_input(s, c, seq, data, len);
		break;
	default:
		fin_ok = seq == c->rcv_nxt; /* the peer's FIN came: later data is ignored */
		break;
	}
	/* Eighth: FIN, only when everything before it is in. */
	if (fin && fin_ok && seq + len == c->rcv_nxt && !(c->flags & CF_FIN_RCVD)) {
		c->flags |= CF_FIN_RCVD | CF_ACK_NOW;
		c->rcv_nxt++;
		switch (c->state) {
		case NET_TCP_ESTABLISHED:
			c->state = NET_TCP_CLOSE_WAIT;
			post(c, NET_EV_READABLE);
			break;
		case NET_TCP_FIN_WAIT_1:
			if (c->flags & CF_FIN_ACKED) {
				tcp_xmit(s, c, c->snd_max, 0, 0, 0);
				enter_time_wait(s, c);
				return;
			}
			c->state = NET_TCP_CLOSING;
			break;
		case NET_TCP_FIN_WAIT_2:
			tcp_xmit(s, c, c->snd_max, 0, 0, 0);
			enter_time_wait(s, c);
			return;
		default:
			break;
		}
	} else if (fin && SEQ_LT(g->seq + g->len, c->rcv_nxt)) {
		c->flags |= CF_ACK_NOW; /* a retransmitted FIN: ACK it again */
	}
	tcp_output(s, c);
}

/* ---- entry from IPv4 ---- */

void net_tcp_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *src,
		   const uint8_t *dst, const uint8_t *tcp, size_t tcp_len, bool csum_ok)
{
	/* Addresses as a pair, source then destination, 16 bytes each (IPv4 mapped). */
	uint8_t ip[32];
	memcpy(ip, src, 16);
	memcpy(ip + 16, dst, 16);
	if (tcp_len < NET_TCP_HLEN) {
		s->cnt.rx_bad_tcp++;
		return;
	}
	size_t doff = (size_t)(tcp[12] >> 4) * 4;
	if (doff < NET_TCP_HLEN || doff > tcp_len) {
		s->cnt.rx_bad_tcp++;
		return;
	}
	if (!csum_ok) {
		/* The pseudo-header: RFC 9293 3.1 (IPv4), RFC 8200 8.1 (IPv6). */
		uint32_t ph = net_addr_is4(src)
				      ? net_csum_add(net_csum_add(0, src + 12, 4), dst + 12, 4)
				      : net_csum_add(net_csum_add(0, src, 16), dst, 16);
		ph += 6 + (uint32_t)tcp_len;
		if (net_csum_fold(net_csum_add(ph, tcp, tcp_len)) != 0) {
			s->cnt.rx_bad_csum++;
			return;
		}
	}
	uint16_t rport = net_get16(tcp), lport = net_get16(tcp + 2);
	struct seg g;
	g.seq = net_get32(tcp + 4);
	g.ack = net_get32(tcp + 8);
	g.flags = tcp[13] & 0x3f;
	g.win = net_get16(tcp + 14);
	g.data = tcp + doff;
	g.len = (uint32_t)(tcp_len - doff);
	opts_parse(tcp + NET_TCP_HLEN, doff - NET_TCP_HLEN, (g.flags & TH_SYN) != 0, &g.o);
	/* Nonsense no host sends: SYN with RST or FIN, port 0. Dropped without an answer. */
	if (rport == 0 || lport == 0 || ((g.flags & TH_SYN) && (g.flags & (TH_RST | TH_FIN)))) {
		s->cnt.rx_bad_tcp++;
		return;
	}
	struct net_conn *c = conn_lookup(s, ip + 16, lport, ip, rport);
	if (c) {
		if (c->state == NET_TCP_SYN_SENT)
			syn_sent_input(s, c, &g);
		else
			conn_input(s, c, &g);
		deliver(s, c);
		return;
	}
	struct net_tw *t = tw_lookup(s, ip + 16, lport, ip, rport);
	if (t && tw_input(s, t, &g))
		return;
	for (unsigned i = 0; i < s->nlisten; i++)
		if (s->listen[i] == lport) {
			listen_input(s, smac, ip, lport, rport, &g);
			c = conn_lookup(s, ip + 16, lport, ip, rport);
			if (c)
				deliver(s, c);
			return;
		}
	send_rst_for(s, smac, ip, lport, rport, &g);
}

/* ---- timers ---- */

void net_tcp_timer_fire(void *arg, struct net_timer *t)
{
	struct net_stack *s = arg;
	struct net_conn *c = (struct net_conn *)((char *)t - offsetof(struct net_conn, timer));
	if (c->flags & CF_DEAD)
		return;
	if (c->delack_at && net_tick_le(c->delack_at, s->now_ms)) {
		c->delack_at = 0;
		c->flags |= CF_ACK_NOW;
	}
	if (c->rtx_at && net_tick_le(c->rtx_at, s->now_ms)) {
		c->rtx_at = 0;
		switch (c->state) {
		case NET_TCP_SYN_RCVD:
		case NET_TCP_SYN_SENT:
			if (++c->syn_retries >
			    (unsigned)(c->state == NET_TCP_SYN_SENT ? SYN_MAX : SYNACK_MAX)) {
				s->cnt.tcp_timeouts++;
				conn_abort(s, c, -ETIMEDOUT);
				deliver(s, c);
				return;
			}
			c->backoff++;
			s->cnt.tcp_retransmits++;
			tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
			c->rtx_at = tick_nz(s->now_ms + rto_now(c));
			break;
		case NET_TCP_FIN_WAIT_2:
			conn_kill(s, c); /* orphan timeout */
			return;
		default:
			if (c->flags & CF_PERSIST) {
				/* 3.8.6.1: probe the zero window with one byte of new data; the
				 * interval backs off like the RTO, and we never give up while
				 * the peer answers. */
				s->cnt.tcp_persist_probes++;
				c->flags &= (uint16_t)~CF_RTT_TIMING;
				if (c->slen) {
					tcp_xmit(s, c, c->snd_una, TH_PSH, 0, 1);
					if (SEQ_LT(c->snd_nxt, c->snd_una + 1))
						c->snd_nxt = c->snd_una + 1;
					if (SEQ_GT(c->snd_nxt, c->snd_max))
						c->snd_max = c->snd_nxt;
				}
				if (c->backoff < RTX_MAX)
					c->backoff++;
				c->rtx_at = tick_nz(s->now_ms + rto_now(c));
				break;
			}
			if (c->snd_una == c->snd_max)
				break;
			if (c->backoff >= RTX_MAX) {
				s->cnt.tcp_timeouts++;
				if (rst_allowed(s)) {
					s->cnt.tcp_rst_sent++;
					tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport,
						     c->raddr, c->rport, c->snd_max, 0, TH_RST,
						     0, NULL, 0, NULL, 1, 0, 0);
				}
				conn_abort(s, c, -ETIMEDOUT);
				deliver(s, c);
				return;
			}
			/* RFC 6298 5.5-5.7 and RFC 5681 3.1 (eq. 4): back off, collapse cwnd,
			 * go back to snd_una. Karn: no RTT sample from what is resent. */
			s->cnt.tcp_rto++;
			uint32_t half = flight(c) / 2, two = 2u * c->mss;
			c->ssthresh = half > two ? half : two;
			c->cwnd = c->mss;
			c->flags &= (uint16_t)~(CF_RECOVERY | CF_RTT_TIMING);
			c->recover = c->snd_max;
			c->dupacks = 0;
			c->backoff++;
			c->snd_nxt = c->snd_una;
			tcp_output(s, c);
			c->rtx_at = tick_nz(s->now_ms + rto_now(c));
			break;
		}
	}
	tcp_output(s, c);
	deliver(s, c);
}

void net_tcp_poll(struct net_stack *s)
{
	tw_expire(s, false);
}

void net_tcp_free_all(struct net_stack *s)
{
	for (uint32_t i = 0; i <= s->hash_mask; i++)
		while (s->hash[i]) {
			struct net_conn *c = s->hash[i];
			c->flags |= CF_APP_GONE;
			conn_kill(s, c);
		}
	net_tcp_reap(s);
}

/* ---- the app's side ---- */

void net_conn_set_user(struct net_conn *c, void *user)
{
	c->user = user;
}

void *net_conn_user(const struct net_conn *c)
{
	return c->user;
}

void net_conn_peer(const struct net_conn *c, int *family, uint8_t addr[16], uint16_t *port)
{
	*family = (c->flags & CF_IPV6) ? AF_INET6 : AF_INET;
	memset(addr, 0, 16);
	if (c->flags & CF_IPV6)
		memcpy(addr, c->raddr, 16);
	else
		memcpy(addr, c->raddr + 12, 4);
	*port = c->rport;
}

enum net_tcp_state net_conn_state(const struct net_conn *c)
{
	return (enum net_tcp_state)c->state;
}

int net_conn_error(const struct net_conn *c)
{
	return c->error;
}

const uint8_t *net_conn_peek(const struct net_conn *c, size_t *len)
{
	if (!c->rlen || !c->rbuf) {
		*len = 0;
		return NULL;
	}
	uint32_t cap = c->stack->cfg.rcvbuf;
	uint32_t first = cap - c->rhead;
	*len = c->rlen < first ? c->rlen : first;
	return c->rbuf + c->rhead;
}

void net_conn_consume(struct net_conn *c, size_t n)
{
	struct net_stack *s = c->stack;
	assert(n <= c->rlen);
	if (n > c->rlen)
		n = c->rlen;
	uint32_t before = rcv_window(s, c);
	c->rhead = (uint32_t)((c->rhead + n) % s->cfg.rcvbuf);
	c->rlen -= (uint32_t)n;
	if (!c->rlen && !c->sack_n) {
		buf_put(s, c->rbuf, true);
		c->rbuf = NULL;
		c->rhead = 0;
	}
	/* 3.8.6.2.2: tell the peer when the window opened by a useful amount (this is what
	 * ends a zero window from our side) and at least doubled, as Linux does: while
	 * data flows the ACKs we send anyway carry the window. */
	uint32_t adv = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t after = rcv_window(s, c);
	uint32_t sws = s->cfg.rcvbuf / 2 < s->mss_local ? s->cfg.rcvbuf / 2 : s->mss_local;
	if (after > before && after - adv >= sws && after >= 2 * adv && can_send_data(c)) {
		s->depth++;
		c->flags |= CF_ACK_NOW;
		tcp_output(s, c);
		s->depth--;
	}
}

bool net_conn_eof(const struct net_conn *c)
{
	return (c->flags & CF_FIN_RCVD) && c->rlen == 0;
}

size_t net_conn_unacked(const struct net_conn *c)
{
	return c->slen;
}

size_t net_conn_write(struct net_conn *c, const void *buf, size_t len)
{
	struct net_stack *s = c->stack;
	if ((c->flags & (CF_DEAD | CF_FIN_QUEUED | CF_APP_GONE)) || !can_send_data(c) || !len)
		return 0;
	if (!c->sbuf) {
		c->sbuf = buf_get(s, false);
		if (!c->sbuf) {
			c->flags |= CF_WANT_WRITE;
			return 0;
		}
		c->shead = 0;
	}
	uint32_t room = s->cfg.sndbuf - c->slen;
	uint32_t n = len < room ? (uint32_t)len : room;
	if (n < len)
		c->flags |= CF_WANT_WRITE;
	ring_write(c->sbuf, s->cfg.sndbuf, c->shead + c->slen, buf, n);
	c->slen += n;
	s->depth++;
	tcp_output(s, c);
	s->depth--;
	return n;
}

void net_conn_close(struct net_conn *c)
{
	struct net_stack *s = c->stack;
	if (c->flags & CF_APP_GONE)
		return;
	c->flags |= CF_APP_GONE;
	c->user = NULL;
	c->pending_ev = 0;
	if (c->flags & CF_DEAD)
		return;
	s->depth++;
	if (c->rlen || c->sack_n) {
		/* RFC 2525 2.17 / RFC 9293 3.10.4 note: unread data is lost, say so. */
		net_conn_abort(c);
		s->depth--;
		return;
	}
	switch (c->state) {
	case NET_TCP_ESTABLISHED:
		c->state = NET_TCP_FIN_WAIT_1;
		c->flags |= CF_FIN_QUEUED;
		break;
	case NET_TCP_CLOSE_WAIT:
		c->state = NET_TCP_LAST_ACK;
		c->flags |= CF_FIN_QUEUED;
		break;
	case NET_TCP_SYN_SENT:
	case NET_TCP_SYN_RCVD:
		conn_kill(s, c);
		break;
	default:
		break;
	}
	tcp_output(s, c);
	if (--s->depth == 0)
		net_tcp_reap(s);
}

void net_conn_abort(struct net_conn *c)
{
	struct net_stack *s = c->stack;
	c->flags |= CF_APP_GONE;
	c->pending_ev = 0;
	if (c->flags & CF_DEAD)
		return;
	if (c->state != NET_TCP_SYN_SENT && rst_allowed(s)) {
		s->cnt.tcp_rst_sent++;
		tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport, c->snd_max, 0,
			     TH_RST, 0, NULL, 0, NULL, 1, 0, 0);
	}
	conn_kill(s, c);
	if (s->depth == 0)
		net_tcp_reap(s);
}

bool net_stack_knows_segment(const struct net_stack *s, const uint8_t *f, size_t len)
{
	uint8_t l[16], r[16];
	const uint8_t *tcp;
	if (len < 14)
		return true;
	uint16_t type = (uint16_t)(f[12] << 8 | f[13]);
	const uint8_t *ip = f + 14;
	if (type == 0x0800) {
		size_t ihl = len >= 14 + 20 ? (size_t)(ip[0] & 0x0f) * 4 : 0;
		if (ihl < 20 || ip[9] != 6 || len < 14 + ihl + 4)
			return true;
		uint32_t src, dst;
		memcpy(&src, ip + 12, 4);
		memcpy(&dst, ip + 16, 4);
		net_addr_map4(l, dst);
		net_addr_map4(r, src);
		tcp = ip + ihl;
	} else if (type == 0x86dd) {
		if (len < 14 + 40 + 4 || ip[6] != 6)
			return true;
		memcpy(r, ip + 8, 16);
		memcpy(l, ip + 24, 16);
		tcp = ip + 40;
	} else {
		return true;
	}
	uint16_t rport = (uint16_t)(tcp[0] << 8 | tcp[1]), lport = (uint16_t)(tcp[2] << 8 | tcp[3]);
	return conn_lookup(s, l, lport, r, rport) || tw_lookup(s, l, lport, r, rport);
}

enum net_tcp_state net_stack_lookup_state(const struct net_stack *s, uint32_t local_ip,
					  uint16_t local_port, uint32_t remote_ip,
					  uint16_t remote_port)
{
	uint8_t l[16], r[16];
	net_addr_map4(l, local_ip);
	net_addr_map4(r, remote_ip);
	struct net_conn *c = conn_lookup(s, l, local_port, r, remote_port);
	if (c)
		return (enum net_tcp_state)c->state;
	if (tw_lookup(s, l, local_port, r, remote_port))
		return NET_TCP_TIME_WAIT;
	return NET_TCP_CLOSED;
}
