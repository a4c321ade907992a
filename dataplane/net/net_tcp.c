/* TCP (RFC 9293) with the extensions listed in net_stack.h: the connection table, the
 * per-connection buffers, a connection's life (creation, the state changes, events for the
 * app, death) and the app's side of it (net_conn_*). Segment processing is in
 * net_tcp_input.c and net_tcp_syn.c, sending in net_tcp_output.c, timers and TIME-WAIT in
 * net_tcp_timer.c (net_tcp_internal.h lists them). Section numbers in comments are
 * RFC 9293's unless another RFC is named. */
#include "net_tcp_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

const char *net_tcp_state_name(enum net_tcp_state st)
{
	static const char *const names[NET_TCP_STATE_MAX] = {
		"CLOSED",      "LISTEN",     "SYN-SENT",   "SYN-RECEIVED",
		"ESTABLISHED", "FIN-WAIT-1",
		"FIN-WAIT-2", "CLOSE-WAIT", "CLOSING",    "LAST-ACK",     "TIME-WAIT",
	};
	return (unsigned)st < NET_TCP_STATE_MAX ? names[st] : "?";
}

/* Every state change of a control block goes through here (3.3.2), and so does the count of
 * half-open blocks (SYN-RECEIVED), which decides when SYN cookies take over. TIME-WAIT is
 * not a control block's state: the block goes and the compact table keeps the connection
 * (net_tcp_enter_time_wait). */
void net_tcp_enter_state(struct net_conn *c, enum net_tcp_state st)
{
	assert((unsigned)st < NET_TCP_STATE_MAX && st != NET_TCP_TIME_WAIT);
	struct net_stack *s = c->stack;
	if (c->state == NET_TCP_SYN_RCVD && st != NET_TCP_SYN_RCVD)
		s->nhalf--;
	else if (st == NET_TCP_SYN_RCVD && c->state != NET_TCP_SYN_RCVD)
		s->nhalf++;
	c->state = (uint8_t)st;
}

size_t net_conn_size(void)
{
	return sizeof(struct net_conn);
}

/* ---- hashing and lookup ---- */

uint32_t net_tcp_hash(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
		      const uint8_t *raddr, uint16_t rport)
{
	uint8_t k[36];
	memcpy(k, laddr, 16);
	memcpy(k + 16, raddr, 16);
	net_put16(k + 32, lport);
	net_put16(k + 34, rport);
	return (uint32_t)net_siphash(s->cfg.secret, k, sizeof(k));
}

struct net_conn *net_tcp_conn_lookup(const struct net_stack *s, const uint8_t *laddr,
				     uint16_t lport, const uint8_t *raddr, uint16_t rport)
{
	struct net_conn *c = s->hash[net_tcp_hash(s, laddr, lport, raddr, rport) & s->hash_mask];
	for (; c; c = c->hnext)
		if (c->lport == lport && c->rport == rport && !memcmp(c->laddr, laddr, 16) &&
		    !memcmp(c->raddr, raddr, 16))
			return c;
	return NULL;
}

static void conn_hash_add(struct net_stack *s, struct net_conn *c)
{
	struct net_conn **b =
		&s->hash[net_tcp_hash(s, c->laddr, c->lport, c->raddr, c->rport) & s->hash_mask];
	c->hnext = *b;
	*b = c;
}

static void conn_hash_del(struct net_stack *s, struct net_conn *c)
{
	struct net_conn **b =
		&s->hash[net_tcp_hash(s, c->laddr, c->lport, c->raddr, c->rport) & s->hash_mask];
	for (; *b; b = &(*b)->hnext)
		if (*b == c) {
			*b = c->hnext;
			c->hnext = NULL;
			return;
		}
}

/* ---- buffers ---- */

uint8_t *net_tcp_buf_get(struct net_stack *s, bool rcv)
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

void net_tcp_buf_put(struct net_stack *s, uint8_t *b, bool rcv)
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

void net_tcp_ring_write(uint8_t *ring, uint32_t cap, uint32_t pos, const uint8_t *src,
			uint32_t n)
{
	pos %= cap;
	uint32_t first = cap - pos < n ? cap - pos : n;
	memcpy(ring + pos, src, first);
	memcpy(ring, src + first, n - first);
}

/* ---- connection life ---- */

struct net_conn *net_tcp_conn_new(struct net_stack *s, const uint8_t smac[6],
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
	c->ts_off = net_tcp_ts_offset(s, laddr, lport, raddr, rport);
	c->rto = RTO_INIT_MS;
	c->mss = 536; /* 3.7.1: the default when no MSS option came */
	c->ssthresh = 0xffffffffu; /* RFC 5681 3.1: arbitrarily high */
	conn_hash_add(s, c);
	s->nconns++;
	return c;
}

void net_tcp_conn_kill(struct net_stack *s, struct net_conn *c)
{
	if (c->flags & CF_DEAD)
		return;
	conn_hash_del(s, c);
	net_timer_cancel(&s->wheel, &c->timer);
	net_tcp_buf_put(s, c->rbuf, true);
	net_tcp_buf_put(s, c->sbuf, false);
	c->rbuf = c->sbuf = NULL;
	c->rlen = c->slen = 0;
	s->nconns--;
	c->flags |= CF_DEAD;
	net_tcp_enter_state(c, NET_TCP_CLOSED);
	c->hnext = s->dead;
	s->dead = c;
}

void net_tcp_deliver(struct net_stack *s, struct net_conn *c)
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
			net_tcp_conn_kill(s, c);
			return;
		}
		if (!(c->flags & CF_DEAD))
			s->ops.event(s->ops.ctx, c, (enum net_event)ev);
	}
}

/* The connection failed under the app: tell it (NET_EV_ABORT), then forget it. */
void net_tcp_conn_abort(struct net_stack *s, struct net_conn *c, int err)
{
	c->error = (int8_t)err;
	net_timer_cancel(&s->wheel, &c->timer);
	c->rtx_at = c->delack_at = 0;
	if ((c->flags & CF_APP_GONE) || c->state == NET_TCP_SYN_RCVD) {
		net_tcp_conn_kill(s, c);
		return;
	}
	/* CLOSED from now: whatever the callback calls (write, close) sends nothing. */
	net_tcp_enter_state(c, NET_TCP_CLOSED);
	c->flags &= (uint16_t)~CF_ACK_NOW;
	net_tcp_post(c, NET_EV_ABORT);
}

void net_tcp_reap(struct net_stack *s)
{
	while (s->dead) {
		struct net_conn *c = s->dead;
		s->dead = c->hnext;
		free(c);
	}
}

void net_tcp_reset_half_open(struct net_stack *s, uint16_t lport)
{
	if (s->nhalf == 0)
		return;
	s->depth++; /* reaped after the walk: a killed block stays readable until then */
	for (uint32_t i = 0; i <= s->hash_mask; i++)
		for (struct net_conn *c = s->hash[i], *next; c; c = next) {
			next = c->hnext;
			if (c->lport == lport && c->state == NET_TCP_SYN_RCVD &&
			    !(c->flags & CF_ACTIVE))
				net_conn_abort(c);
		}
	if (--s->depth == 0)
		net_tcp_reap(s);
}

void net_tcp_free_all(struct net_stack *s)
{
	for (uint32_t i = 0; i <= s->hash_mask; i++)
		while (s->hash[i]) {
			struct net_conn *c = s->hash[i];
			c->flags |= CF_APP_GONE;
			net_tcp_conn_kill(s, c);
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
	uint32_t before = net_tcp_rcv_window(s, c);
	c->rhead = (uint32_t)((c->rhead + n) % s->cfg.rcvbuf);
	c->rlen -= (uint32_t)n;
	if (!c->rlen && !c->sack_n) {
		net_tcp_buf_put(s, c->rbuf, true);
		c->rbuf = NULL;
		c->rhead = 0;
	}
	/* 3.8.6.2.2: tell the peer when the window opened by a useful amount (this is what
	 * ends a zero window from our side) and at least doubled, as Linux does: while
	 * data flows the ACKs we send anyway carry the window. */
	uint32_t adv = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	uint32_t after = net_tcp_rcv_window(s, c);
	uint32_t sws = s->cfg.rcvbuf / 2 < s->mss_local ? s->cfg.rcvbuf / 2 : s->mss_local;
	if (after > before && after - adv >= sws && after >= 2 * adv && net_tcp_can_send(c)) {
		s->depth++;
		c->flags |= CF_ACK_NOW;
		net_tcp_output(s, c);
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
	if ((c->flags & (CF_DEAD | CF_FIN_QUEUED | CF_APP_GONE)) || !net_tcp_can_send(c) || !len)
		return 0;
	if (!c->sbuf) {
		c->sbuf = net_tcp_buf_get(s, false);
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
	net_tcp_ring_write(c->sbuf, s->cfg.sndbuf, c->shead + c->slen, buf, n);
	c->slen += n;
	s->depth++;
	net_tcp_output(s, c);
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
		net_tcp_enter_state(c, NET_TCP_FIN_WAIT_1);
		c->flags |= CF_FIN_QUEUED;
		break;
	case NET_TCP_CLOSE_WAIT:
		net_tcp_enter_state(c, NET_TCP_LAST_ACK);
		c->flags |= CF_FIN_QUEUED;
		break;
	case NET_TCP_SYN_SENT:
	case NET_TCP_SYN_RCVD:
		net_tcp_conn_kill(s, c);
		break;
	default:
		break;
	}
	net_tcp_output(s, c);
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
	if (c->state != NET_TCP_SYN_SENT && net_tcp_rst_allowed(s)) {
		s->cnt.tcp_rst_sent++;
		net_tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport, c->snd_max,
				 0, TH_RST, 0, NULL, 0, NULL, 1, 0, 0);
	}
	net_tcp_conn_kill(s, c);
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
	return net_tcp_conn_lookup(s, l, lport, r, rport) ||
	       net_tcp_tw_lookup(s, l, lport, r, rport);
}

enum net_tcp_state net_stack_lookup_state(const struct net_stack *s, uint32_t local_ip,
					  uint16_t local_port, uint32_t remote_ip,
					  uint16_t remote_port)
{
	uint8_t l[16], r[16];
	net_addr_map4(l, local_ip);
	net_addr_map4(r, remote_ip);
	struct net_conn *c = net_tcp_conn_lookup(s, l, local_port, r, remote_port);
	if (c)
		return (enum net_tcp_state)c->state;
	if (net_tcp_tw_lookup(s, l, local_port, r, remote_port))
		return NET_TCP_TIME_WAIT;
	return NET_TCP_CLOSED;
}
