/* TCP segment arrival (RFC 9293 3.10.7): the checks every segment passes, its options, and
 * the processing of a segment for a synchronized connection (or SYN-RECEIVED) in the RFC's
 * order: sequence number, RST, SYN, ACK (RFC 6298 RTT samples, RFC 5681/6582 NewReno),
 * data with out-of-order runs kept for SACK (RFC 2018), FIN. LISTEN and SYN-SENT are in
 * net_tcp_syn.c, TIME-WAIT in net_tcp_timer.c. Section numbers in comments are RFC 9293's
 * unless another RFC is named. */
#include "net_tcp_internal.h"

#include <errno.h>
#include <string.h>

#define FIN_WAIT_2_MS 60000 /* an orphaned FIN-WAIT-2 is dropped after this (Linux) */
#define PAWS_IDLE_MS (24u * 24 * 3600 * 1000) /* RFC 7323 5.5: 24 days */

/* 3.1 and RFC 7323 2: options. A malformed option ends parsing; what was read stays. */
static void opts_parse(const uint8_t *p, size_t len, bool syn, struct net_tcp_opts *o)
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
		c->rbuf = net_tcp_buf_get(s, true);
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
		net_tcp_ring_write(c->rbuf, cap, c->rhead + c->rlen, data, len);
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
		net_tcp_post(c, NET_EV_READABLE);
		/* RFC 5681 4.2: ACK at least every second full segment, at once when a gap
		 * is filled; else delay. */
		if (filled || c->sack_n || (c->flags & CF_DELACK_SEG)) {
			c->flags |= CF_ACK_NOW;
		} else {
			if (len >= c->mss / 2u)
				c->flags |= CF_DELACK_SEG;
			if (!c->delack_at)
				c->delack_at = net_tcp_tick_nz(s->now_ms + s->cfg.delack_ms);
		}
		return !trimmed;
	}
	/* Out of order: kept in place in the ring, its run recorded for SACK. */
	if (!ooo_add(c, seq, seq + len)) {
		s->cnt.tcp_ooo_drop++;
	} else {
		net_tcp_ring_write(c->rbuf, cap, c->rhead + c->rlen + off, data, len);
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

/* RFC 5681 3.2 fast retransmit and RFC 6582 NewReno. Returns after sending. */
static void dupack(struct net_stack *s, struct net_conn *c)
{
	c->dupacks++;
	if (c->flags & CF_RECOVERY) {
		c->cwnd += c->mss; /* inflate: a segment left the network */
		net_tcp_output(s, c);
		return;
	}
	if (c->dupacks != 3)
		return;
	/* RFC 6582 3.2 step 2: only if this loss is after the last recovery point. */
	if (!SEQ_GT(c->snd_una, c->recover))
		return;
	uint32_t half = net_tcp_flight(c) / 2, two = 2u * c->mss;
	c->ssthresh = half > two ? half : two;
	c->recover = c->snd_max;
	c->flags |= CF_RECOVERY;
	c->flags &= (uint16_t)~CF_RTT_TIMING;
	s->cnt.tcp_fast_retransmit++;
	uint32_t saved = c->snd_nxt;
	c->snd_nxt = c->snd_una;
	c->cwnd = c->mss; /* exactly one segment goes now */
	net_tcp_output(s, c);
	if (SEQ_GT(saved, c->snd_nxt))
		c->snd_nxt = saved;
	c->cwnd = c->ssthresh + 3u * c->mss;
	net_tcp_output(s, c);
}

/* 3.10.7.4 fifth, with RFC 5961 5.2. Returns false when the segment must be dropped. */
static bool ack_input(struct net_stack *s, struct net_conn *c, const struct net_tcp_seg *g)
{
	if (SEQ_GT(g->ack, c->snd_max)) {
		/* Acknowledges what we never sent: ACK and drop. */
		c->flags |= CF_ACK_NOW;
		return false;
	}
	if (SEQ_LT(g->ack, c->snd_una - c->max_snd_wnd)) {
		net_tcp_challenge_ack(s, c);
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
				uint32_t f = net_tcp_flight(c) + c->mss;
				c->cwnd = c->ssthresh < f ? c->ssthresh : f;
				c->flags &= (uint16_t)~CF_RECOVERY;
			} else {
				/* Partial ACK: retransmit the next hole, deflate by what was
				 * acknowledged, add back one segment. */
				uint32_t saved = c->snd_nxt;
				uint32_t cw = c->cwnd;
				c->snd_nxt = c->snd_una;
				c->cwnd = c->mss;
				net_tcp_output(s, c);
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
			net_tcp_buf_put(s, c->sbuf, false);
			c->sbuf = NULL;
			c->shead = 0;
		}
		if (was_full || (c->flags & CF_WANT_WRITE)) {
			c->flags &= (uint16_t)~CF_WANT_WRITE;
			net_tcp_post(c, NET_EV_WRITABLE);
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
	    g->win == (old_wnd >> c->snd_wscale) && old_wnd && net_tcp_flight(c))
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
void net_tcp_conn_input(struct net_stack *s, struct net_conn *c, struct net_tcp_seg *g)
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
		net_tcp_output(s, c);
		return;
	}
	/* RFC 5961 4.2: a SYN on a synchronized connection, whatever its sequence number,
	 * gets a challenge ACK. A retransmitted SYN in SYN-RECEIVED gets the SYN-ACK again. */
	if ((g->flags & TH_SYN) && !(g->flags & TH_RST)) {
		if (c->state == NET_TCP_SYN_RCVD && g->seq == c->irs && !(g->flags & TH_ACK)) {
			net_tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
			return;
		}
		net_tcp_challenge_ack(s, c);
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
		net_tcp_output(s, c);
		return;
	}
	/* Second: RST (RFC 5961 3.2): exactly rcv_nxt resets, else a challenge ACK. */
	if (g->flags & TH_RST) {
		if (g->seq != c->rcv_nxt) {
			net_tcp_challenge_ack(s, c);
			return;
		}
		s->cnt.tcp_rst_rcvd++;
		if (c->state == NET_TCP_SYN_RCVD && !(c->flags & CF_ACTIVE)) {
			net_tcp_conn_kill(s, c); /* back to LISTEN: nothing to tell anyone */
			return;
		}
		if (c->state == NET_TCP_CLOSING || c->state == NET_TCP_LAST_ACK ||
		    (c->flags & CF_APP_GONE)) {
			net_tcp_conn_kill(s, c);
			return;
		}
		net_tcp_conn_abort(s, c, -ECONNRESET);
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
			net_tcp_enter_state(c, NET_TCP_ESTABLISHED);
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
				net_tcp_post(c, NET_EV_CONNECTED);
			} else {
				s->cnt.tcp_accept++;
				net_tcp_post(c, NET_EV_ACCEPT);
			}
		} else {
			if (net_tcp_rst_allowed(s)) {
				s->cnt.tcp_rst_sent++;
				net_tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr,
						 c->rport, g->ack, 0, TH_RST, 0, NULL, 0, NULL, 1,
						 0, 0);
			}
			return;
		}
	}
	if (!ack_input(s, c, g)) {
		net_tcp_output(s, c);
		return;
	}
	switch (c->state) {
	case NET_TCP_FIN_WAIT_1:
		if (c->flags & CF_FIN_ACKED) {
			net_tcp_enter_state(c, NET_TCP_FIN_WAIT_2);
			/* An orphan does not wait forever for the peer's FIN. */
			c->rtx_at = net_tcp_tick_nz(s->now_ms + FIN_WAIT_2_MS);
		}
		break;
	case NET_TCP_CLOSING:
		if (c->flags & CF_FIN_ACKED) {
			net_tcp_enter_time_wait(s, c);
			return;
		}
		break;
	case NET_TCP_LAST_ACK:
		if (c->flags & CF_FIN_ACKED) {
			net_tcp_conn_kill(s, c);
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
			net_tcp_enter_state(c, NET_TCP_CLOSE_WAIT);
			net_tcp_post(c, NET_EV_READABLE);
			break;
		case NET_TCP_FIN_WAIT_1:
			if (c->flags & CF_FIN_ACKED) {
				net_tcp_xmit(s, c, c->snd_max, 0, 0, 0);
				net_tcp_enter_time_wait(s, c);
				return;
			}
			net_tcp_enter_state(c, NET_TCP_CLOSING);
			break;
		case NET_TCP_FIN_WAIT_2:
			net_tcp_xmit(s, c, c->snd_max, 0, 0, 0);
			net_tcp_enter_time_wait(s, c);
			return;
		default:
			break;
		}
	} else if (fin && SEQ_LT(g->seq + g->len, c->rcv_nxt)) {
		c->flags |= CF_ACK_NOW; /* a retransmitted FIN: ACK it again */
	}
	net_tcp_output(s, c);
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
	struct net_tcp_seg g;
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
	struct net_conn *c = net_tcp_conn_lookup(s, ip + 16, lport, ip, rport);
	if (c) {
		if (c->state == NET_TCP_SYN_SENT)
			net_tcp_syn_sent_input(s, c, &g);
		else
			net_tcp_conn_input(s, c, &g);
		net_tcp_deliver(s, c);
		return;
	}
	struct net_tw *t = net_tcp_tw_lookup(s, ip + 16, lport, ip, rport);
	if (t && net_tcp_tw_input(s, t, &g))
		return;
	for (unsigned i = 0; i < s->nlisten; i++)
		if (s->listen[i] == lport) {
			net_tcp_listen_input(s, smac, ip, lport, rport, &g);
			c = net_tcp_conn_lookup(s, ip + 16, lport, ip, rport);
			if (c)
				net_tcp_deliver(s, c);
			return;
		}
	net_tcp_send_rst_for(s, smac, ip, lport, rport, &g);
}
