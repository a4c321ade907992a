/* TCP's sending side: the window we advertise, our timestamp clock, building segments
 * (options, SACK blocks, data from the send ring), the send loop that every path ends in
 * (net_tcp_output: data as windows allow, the FIN, an owed ACK, the retransmission or
 * persist timer armed), and the rate-limited RSTs and challenge ACKs. Section numbers in
 * comments are RFC 9293's unless another RFC is named. */
#include "net_tcp_internal.h"

#include <assert.h>
#include <string.h>

uint32_t net_tcp_rcv_window(const struct net_stack *s, const struct net_conn *c)
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
uint32_t net_tcp_ts_offset(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
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
void net_tcp_xmit_raw(struct net_stack *s, const uint8_t dmac[6], const uint8_t *laddr,
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

size_t net_tcp_put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr)
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
void net_tcp_xmit(struct net_stack *s, struct net_conn *c, uint32_t seq, uint8_t flags,
		  uint32_t off, uint32_t dlen)
{
	uint8_t opt[40];
	size_t n = 0;
	uint32_t win = net_tcp_rcv_window(s, c);
	if (flags & TH_SYN) {
		/* 3.7.1 MSS; RFC 7323 window scale and timestamps; RFC 2018 SACK-permitted.
		 * Offered in the SYN; in a SYN-ACK only what the SYN offered. */
		opt[n++] = 2;
		opt[n++] = 4;
		net_put16(opt + n, net_tcp_mss_for(s, (c->flags & CF_IPV6) != 0));
		n += 2;
		bool active = c->state == NET_TCP_SYN_SENT; /* offer everything */
		if (active || (c->flags & CF_SACK)) {
			opt[n++] = 1;
			opt[n++] = 1;
			opt[n++] = 4;
			opt[n++] = 2;
		}
		if (active || (c->flags & CF_TS))
			n += net_tcp_put_ts(opt + n, ts_now(s, c), c->ts_recent);
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
			n += net_tcp_put_ts(opt + n, ts_now(s, c), c->ts_recent);
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
	net_tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr, c->rport, seq,
			 c->rcv_nxt, flags, (uint16_t)win, opt, n, c->sbuf, s->cfg.sndbuf,
			 c->shead + off, dlen);
	if (flags & TH_ACK) {
		c->delack_at = 0;
		c->flags &= (uint16_t)~(CF_DELACK_SEG | CF_ACK_NOW);
	}
}

bool net_tcp_can_send(const struct net_conn *c)
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
			c->rtx_at = net_tcp_tick_nz(s->now_ms + net_tcp_rto_now(c));
		}
	} else if (outstanding) {
		if (!c->rtx_at || (c->flags & CF_PERSIST)) {
			c->flags &= (uint16_t)~CF_PERSIST;
			c->rtx_at = net_tcp_tick_nz(s->now_ms + net_tcp_rto_now(c));
		}
	} else if (c->state >= NET_TCP_ESTABLISHED && c->state != NET_TCP_FIN_WAIT_2) {
		c->rtx_at = 0;
		c->flags &= (uint16_t)~CF_PERSIST;
	}
}

/* Send what the windows allow (RFC 5681: min(cwnd, rwnd)), the FIN when its turn comes,
 * and an ACK if one is owed and nothing else carried it. */
void net_tcp_output(struct net_stack *s, struct net_conn *c)
{
	if ((c->flags & CF_DEAD) || c->state == NET_TCP_CLOSED)
		return;
	if (net_tcp_can_send(c)) {
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
				net_tcp_xmit(s, c, c->snd_nxt,
					     (uint8_t)(TH_PSH | (fin ? TH_FIN : 0)), off, n);
				c->snd_nxt += n + (fin ? 1 : 0);
				if (SEQ_GT(c->snd_nxt, c->snd_max))
					c->snd_max = c->snd_nxt;
				continue;
			}
			if (off == c->slen && (c->flags & CF_FIN_QUEUED) &&
			    !(c->flags & CF_FIN_ACKED)) {
				/* The FIN alone (it needs no window, 3.10.4). */
				net_tcp_xmit(s, c, c->snd_nxt, TH_FIN, 0, 0);
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
		net_tcp_xmit(s, c, c->snd_max, 0, 0, 0);
	net_tcp_timer_update(s, c);
}

/* RSTs and challenge ACKs share one rate limit (RFC 5961 7; RFC 9293 3.10.7.1 lets a
 * host limit the RSTs it sends). */
bool net_tcp_rst_allowed(struct net_stack *s)
{
	if (net_tb_take(&s->rst_tb, s->now_ms))
		return true;
	s->cnt.tcp_rst_limited++;
	return false;
}

void net_tcp_challenge_ack(struct net_stack *s, struct net_conn *c)
{
	if (!net_tcp_rst_allowed(s))
		return;
	s->cnt.tcp_challenge_ack++;
	net_tcp_xmit(s, c, c->snd_max, 0, 0, 0);
}

/* 3.10.7.1: the answer to a segment for no connection. */
void net_tcp_send_rst_for(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			  uint16_t lport, uint16_t rport, const struct net_tcp_seg *g)
{
	if (g->flags & TH_RST)
		return;
	if (!net_tcp_rst_allowed(s))
		return;
	s->cnt.tcp_rst_sent++;
	uint32_t seglen = g->len + ((g->flags & TH_SYN) ? 1 : 0) + ((g->flags & TH_FIN) ? 1 : 0);
	if (g->flags & TH_ACK)
		net_tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, g->ack, 0, TH_RST, 0, NULL,
				 0, NULL, 1, 0, 0);
	else
		net_tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, 0, g->seq + seglen,
				 TH_RST | TH_ACK, 0, NULL, 0, NULL, 1, 0, 0);
}
