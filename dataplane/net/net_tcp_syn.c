/* Opening a TCP connection: SYN cookies (RFC 4987 3.6) and initial sequence numbers
 * (RFC 6528), the options a SYN negotiates, a segment arriving for a listening port
 * (passive open, 3.10.7.2), and the active open with its SYN-SENT state (3.10.7.3).
 * Section numbers in comments are RFC 9293's unless another RFC is named. */
#include "net_tcp_internal.h"

#include <errno.h>
#include <string.h>

#define MSS_MIN 88 /* a smaller MSS would make us send floods of tiny segments */
#define COOKIE_PERIOD_MS 64000
#define COOKIE_AGE_MAX 2 /* periods: a cookie is good for 2-3 minutes */

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
			     uint16_t rport, const struct net_tcp_opts *o)
{
	uint32_t now = s->now_ms + net_tcp_ts_offset(s, ip + 16, lport, ip, rport);
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

static uint32_t new_iss(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			const uint8_t *raddr, uint16_t rport)
{
	/* RFC 6528: a 4 us clock plus a keyed hash of the 4-tuple. */
	return (uint32_t)(s->now_us / 4) +
	       net_tcp_hash(s, laddr, lport, raddr, rport) * 2654435761u;
}

static void apply_syn_opts(struct net_stack *s, struct net_conn *c, const struct net_tcp_opts *o)
{
	bool v6 = (c->flags & CF_IPV6) != 0;
	/* 3.7.1: without the option, 536 (IPv4) or 1220 (IPv6, RFC 8200 5). */
	uint16_t mss = o->mss ? o->mss : (v6 ? 1220 : 536);
	if (mss > net_tcp_mss_for(s, v6))
		mss = net_tcp_mss_for(s, v6); /* clamp to our MTU (both ways) */
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

void net_tcp_listen_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			  uint16_t lport, uint16_t rport, const struct net_tcp_seg *g)
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
				struct net_conn *c =
					net_tcp_conn_new(s, smac, ip + 16, lport, ip, rport);
				if (!c)
					return;
				struct net_tcp_opts o = { .mss = mss, .ws = -1 };
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
				net_tcp_enter_state(c, NET_TCP_ESTABLISHED);
				s->cnt.tcp_accept++;
				net_tcp_post(c, NET_EV_ACCEPT);
				/* Data on the ACK is taken as usual. */
				struct net_tcp_seg copy = *g;
				net_tcp_conn_input(s, c, &copy);
				return;
			}
			s->cnt.tcp_syn_cookie_bad++;
		}
		net_tcp_send_rst_for(s, smac, ip, lport, rport, g);
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
		if (mss > net_tcp_mss_for(s, v6))
			mss = net_tcp_mss_for(s, v6);
		uint32_t cookie = cookie_make(s, ip, lport, rport, g->seq, mss);
		uint8_t opt[40];
		size_t n = 0;
		opt[n++] = 2;
		opt[n++] = 4;
		net_put16(opt + n, net_tcp_mss_for(s, v6));
		n += 2;
		if (g->o.ts) {
			if (g->o.sack_ok) {
				opt[n++] = 1;
				opt[n++] = 1;
				opt[n++] = 4;
				opt[n++] = 2;
			}
			n += net_tcp_put_ts(opt + n, cookie_tsval(s, ip, lport, rport, &g->o),
					    g->o.tsval);
			if (g->o.ws >= 0) {
				opt[n++] = 1;
				opt[n++] = 3;
				opt[n++] = 3;
				opt[n++] = s->rcv_wscale;
			}
		}
		uint32_t win = cookie_window(s);
		s->cnt.tcp_syn_cookie_sent++;
		net_tcp_xmit_raw(s, smac, ip + 16, lport, ip, rport, cookie, g->seq + 1,
				 TH_SYN | TH_ACK, (uint16_t)win, opt, n, NULL, 1, 0, 0);
		return;
	}
	struct net_conn *c = net_tcp_conn_new(s, smac, ip + 16, lport, ip, rport);
	if (!c)
		return;
	apply_syn_opts(s, c, &g->o);
	net_tcp_enter_state(c, NET_TCP_SYN_RCVD);
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
	net_tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	c->rtx_at = net_tcp_tick_nz(s->now_ms + c->rto);
	net_tcp_timer_update(s, c);
}

struct net_conn *net_conn_connect(struct net_stack *s, uint32_t ipv4, uint16_t port,
				  uint16_t lport, uint64_t now_us)
{
	return net_conn_connect_from(s, s->cfg.ipv4, ipv4, port, lport, now_us);
}

struct net_conn *net_conn_connect_from(struct net_stack *s, uint32_t src, uint32_t ipv4,
				       uint16_t port, uint16_t lport, uint64_t now_us)
{
	if (!net_ipv4_ours(s, src)) {
		errno = EADDRNOTAVAIL;
		return NULL;
	}
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
	net_addr_map4(laddr, src);
	net_addr_map4(raddr, ipv4);
	if (!lport) {
		for (unsigned i = 0; i < 28000 && !lport; i++) {
			uint16_t p = s->next_port;
			s->next_port = (uint16_t)(p >= 60999 ? 32768 : p + 1);
			if (!net_tcp_conn_lookup(s, laddr, p, raddr, port) &&
			    !net_tcp_tw_lookup(s, laddr, p, raddr, port))
				lport = p;
		}
	}
	if (!lport || net_tcp_conn_lookup(s, laddr, lport, raddr, port)) {
		errno = EADDRINUSE;
		return NULL;
	}
	struct net_conn *c = net_tcp_conn_new(s, mac, laddr, lport, raddr, port);
	if (!c) {
		errno = ENOMEM;
		return NULL;
	}
	c->flags |= CF_ACTIVE;
	c->rcv_wscale = s->rcv_wscale;
	net_tcp_enter_state(c, NET_TCP_SYN_SENT);
	c->iss = new_iss(s, laddr, lport, raddr, port);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->recover = c->iss;
	c->rtt_start = s->now_ms;
	s->cnt.tcp_connect++;
	s->depth++;
	net_tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	c->rtx_at = net_tcp_tick_nz(s->now_ms + c->rto);
	net_tcp_timer_update(s, c);
	s->depth--;
	return c;
}

/* 3.10.7.3 SYN-SENT. */
void net_tcp_syn_sent_input(struct net_stack *s, struct net_conn *c, const struct net_tcp_seg *g)
{
	if (g->flags & TH_ACK) {
		if (SEQ_LE(g->ack, c->iss) || SEQ_GT(g->ack, c->snd_max)) {
			if (!(g->flags & TH_RST) && net_tcp_rst_allowed(s)) {
				s->cnt.tcp_rst_sent++;
				net_tcp_xmit_raw(s, c->peer_mac, c->laddr, c->lport, c->raddr,
						 c->rport, g->ack, 0, TH_RST, 0, NULL, 0, NULL, 1,
						 0, 0);
			}
			return;
		}
	}
	if (g->flags & TH_RST) {
		if (g->flags & TH_ACK) {
			s->cnt.tcp_rst_rcvd++;
			net_tcp_conn_abort(s, c, -ECONNREFUSED);
		}
		return;
	}
	if (!(g->flags & TH_SYN))
		return;
	struct net_tcp_opts o = g->o; /* options: now only what both sides said */
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
		net_tcp_enter_state(c, NET_TCP_ESTABLISHED);
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
		net_tcp_post(c, NET_EV_CONNECTED);
		net_tcp_output(s, c);
	} else {
		/* Simultaneous open: SYN-RECEIVED, SYN-ACK with our same ISS. */
		net_tcp_enter_state(c, NET_TCP_SYN_RCVD);
		c->snd_wnd = g->win;
		net_tcp_xmit(s, c, c->iss, TH_SYN, 0, 0);
	}
}
