/* TCP's timers: each control block has one timer-wheel node armed for the earlier of its
 * retransmission (or persist, or SYN, or FIN-WAIT-2) deadline and its delayed ACK, and
 * net_tcp_timer_fire is the wheel's callback for it; and the compact TIME-WAIT table
 * (RFC 9293 3.6.1), a ring in expiry order that net_tcp_poll trims. Section numbers in
 * comments are RFC 9293's unless another RFC is named. */
#include "net_tcp_internal.h"

#include <errno.h>
#include <string.h>

#define RTX_MAX 12 /* RTO expiries before the connection is given up (RFC 1122 R2) */
#define SYNACK_MAX 5
#define SYN_MAX 6

/* ---- timers ---- */

void net_tcp_timer_update(struct net_stack *s, struct net_conn *c)
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

uint32_t net_tcp_rto_now(const struct net_conn *c)
{
	uint64_t r = (uint64_t)c->rto << (c->backoff > 16 ? 16 : c->backoff);
	return r > RTO_MAX_MS ? RTO_MAX_MS : (uint32_t)r;
}

/* ---- TIME-WAIT table ---- */

static uint32_t tw_bucket(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			  const uint8_t *raddr, uint16_t rport)
{
	return net_tcp_hash(s, laddr, lport, raddr, rport) & s->tw_mask;
}

struct net_tw *net_tcp_tw_lookup(const struct net_stack *s, const uint8_t *laddr,
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

/* 3.10.7.4: enter TIME-WAIT; the control block goes, a table entry stays for 2 MSL. The
 * app released the connection before our FIN was sent, so nobody holds the handle. */
void net_tcp_enter_time_wait(struct net_stack *s, struct net_conn *c)
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
	net_tcp_conn_kill(s, c);
}

/* A segment for a TIME-WAIT entry. Returns true when it was consumed; false when the entry
 * was removed so that the segment (a new SYN, RFC 6191) goes on to the listener. */
bool net_tcp_tw_input(struct net_stack *s, struct net_tw *t, const struct net_tcp_seg *g)
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
		if (!net_tcp_rst_allowed(s))
			return true;
		uint8_t opt[12];
		uint32_t tsv = s->now_ms +
			       net_tcp_ts_offset(s, t->laddr, t->lport, t->raddr, t->rport);
		size_t n = t->has_ts ? net_tcp_put_ts(opt, tsv, t->ts_recent) : 0;
		net_tcp_xmit_raw(s, t->peer_mac, t->laddr, t->lport, t->raddr, t->rport, t->snd_nxt,
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

/* ---- the wheel's callback ---- */

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
				net_tcp_conn_abort(s, c, -ETIMEDOUT);
				net_tcp_deliver(s, c);
				return;
			}
			c->backoff++;
			s->cnt.tcp_retransmits++;
			net_tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
			c->rtx_at = net_tcp_tick_nz(s->now_ms + net_tcp_rto_now(c));
			break;
		case NET_TCP_FIN_WAIT_2:
			net_tcp_conn_kill(s, c); /* orphan timeout */
			return;
		default:
			if (c->flags & CF_PERSIST) {
				/* 3.8.6.1: probe the zero window with one byte of new data; the
				 * interval backs off like the RTO, and we never give up while
				 * the peer answers. */
				s->cnt.tcp_persist_probes++;
				c->flags &= (uint16_t)~CF_RTT_TIMING;
				if (c->slen) {
					net_tcp_xmit(s, c, c->snd_una, TH_PSH, 0, 1);
					if (SEQ_LT(c->snd_nxt, c->snd_una + 1))
						c->snd_nxt = c->snd_una + 1;
					if (SEQ_GT(c->snd_nxt, c->snd_max))
						c->snd_max = c->snd_nxt;
				}
				if (c->backoff < RTX_MAX)
					c->backoff++;
				c->rtx_at = net_tcp_tick_nz(s->now_ms + net_tcp_rto_now(c));
				break;
			}
			if (c->snd_una == c->snd_max)
				break;
			if (c->backoff >= RTX_MAX) {
				s->cnt.tcp_timeouts++;
				if (net_tcp_rst_allowed(s)) {
					s->cnt.tcp_rst_sent++;
					net_tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport,
							 c->raddr, c->rport, c->snd_max, 0, TH_RST,
							 0, NULL, 0, NULL, 1, 0, 0);
				}
				net_tcp_conn_abort(s, c, -ETIMEDOUT);
				net_tcp_deliver(s, c);
				return;
			}
			/* RFC 6298 5.5-5.7 and RFC 5681 3.1 (eq. 4): back off, collapse cwnd,
			 * go back to snd_una. Karn: no RTT sample from what is resent. */
			s->cnt.tcp_rto++;
			uint32_t half = net_tcp_flight(c) / 2, two = 2u * c->mss;
			c->ssthresh = half > two ? half : two;
			c->cwnd = c->mss;
			c->flags &= (uint16_t)~(CF_RECOVERY | CF_RTT_TIMING);
			c->recover = c->snd_max;
			c->dupacks = 0;
			c->backoff++;
			c->snd_nxt = c->snd_una;
			net_tcp_output(s, c);
			c->rtx_at = net_tcp_tick_nz(s->now_ms + net_tcp_rto_now(c));
			break;
		}
	}
	net_tcp_output(s, c);
	net_tcp_deliver(s, c);
}

void net_tcp_poll(struct net_stack *s)
{
	tw_expire(s, false);
}
