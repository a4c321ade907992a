/* Inside TCP: what the net_tcp*.c files share. net_internal.h holds the control block and
 * what TCP and the IP layer share; this adds the parsed segment, the constants more than one
 * file needs and the functions the files call in each other:
 *   net_tcp.c         the connection table, buffers, a connection's life and the one place
 *                     it changes state, events for the app, the public net_conn_* API
 *   net_tcp_input.c   segment arrival: parsing, then processing by state (RFC 9293 3.10.7)
 *   net_tcp_syn.c     opening: LISTEN and SYN-SENT, active open, SYN cookies, ISNs
 *   net_tcp_output.c  segment building, the send loop, windows, RSTs and challenge ACKs
 *   net_tcp_timer.c   the connection timer (retransmission, persist, delayed ACK) and the
 *                     compact TIME-WAIT table */
#ifndef MXGATE_DATAPLANE_NET_TCP_INTERNAL_H
#define MXGATE_DATAPLANE_NET_TCP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net_internal.h"

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

/* ---- parsed segment ---- */

struct net_tcp_opts {
	uint16_t mss; /* 0: absent */
	int8_t ws; /* -1: absent */
	bool sack_ok, ts;
	uint32_t tsval, tsecr;
};

struct net_tcp_seg {
	uint32_t seq, ack;
	uint16_t win;
	uint8_t flags;
	const uint8_t *data;
	uint32_t len;
	struct net_tcp_opts o;
};

static inline uint16_t net_tcp_mss_for(const struct net_stack *s, bool v6)
{
	return (uint16_t)(s->mss_local - (v6 ? NET_IP6_HLEN - NET_IP_HLEN : 0));
}

static inline uint32_t net_tcp_tick_nz(uint32_t t)
{
	return t ? t : 1; /* 0 means "off" */
}

static inline void net_tcp_post(struct net_conn *c, enum net_event ev)
{
	c->pending_ev |= (uint8_t)(1u << ev);
}

static inline uint32_t net_tcp_flight(const struct net_conn *c)
{
	return c->snd_max - c->snd_una;
}

/* net_tcp.c */
void net_tcp_enter_state(struct net_conn *c, enum net_tcp_state st);
uint32_t net_tcp_hash(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
		      const uint8_t *raddr, uint16_t rport);
struct net_conn *net_tcp_conn_lookup(const struct net_stack *s, const uint8_t *laddr,
				     uint16_t lport, const uint8_t *raddr, uint16_t rport);
uint8_t *net_tcp_buf_get(struct net_stack *s, bool rcv);
void net_tcp_buf_put(struct net_stack *s, uint8_t *b, bool rcv);
void net_tcp_ring_write(uint8_t *ring, uint32_t cap, uint32_t pos, const uint8_t *src,
			uint32_t n);
struct net_conn *net_tcp_conn_new(struct net_stack *s, const uint8_t smac[6],
				  const uint8_t *laddr, uint16_t lport, const uint8_t *raddr,
				  uint16_t rport);
void net_tcp_conn_kill(struct net_stack *s, struct net_conn *c);
void net_tcp_deliver(struct net_stack *s, struct net_conn *c);
void net_tcp_conn_abort(struct net_stack *s, struct net_conn *c, int err);

/* net_tcp_input.c */
void net_tcp_conn_input(struct net_stack *s, struct net_conn *c, struct net_tcp_seg *g);

/* net_tcp_syn.c */
void net_tcp_listen_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			  uint16_t lport, uint16_t rport, const struct net_tcp_seg *g);
void net_tcp_syn_sent_input(struct net_stack *s, struct net_conn *c,
			    const struct net_tcp_seg *g);

/* net_tcp_output.c */
uint32_t net_tcp_rcv_window(const struct net_stack *s, const struct net_conn *c);
uint32_t net_tcp_ts_offset(const struct net_stack *s, const uint8_t *laddr, uint16_t lport,
			   const uint8_t *raddr, uint16_t rport);
void net_tcp_xmit_raw(struct net_stack *s, const uint8_t dmac[6], const uint8_t *laddr,
		      uint16_t lport, const uint8_t *raddr, uint16_t rport, uint32_t seq,
		      uint32_t ack, uint8_t flags, uint16_t win, const uint8_t *opt,
		      size_t optlen, const uint8_t *ring, uint32_t ring_cap, uint32_t ring_pos,
		      uint32_t dlen);
size_t net_tcp_put_ts(uint8_t *p, uint32_t tsval, uint32_t tsecr);
void net_tcp_xmit(struct net_stack *s, struct net_conn *c, uint32_t seq, uint8_t flags,
		  uint32_t off, uint32_t dlen);
bool net_tcp_can_send(const struct net_conn *c);
void net_tcp_output(struct net_stack *s, struct net_conn *c);
bool net_tcp_rst_allowed(struct net_stack *s);
void net_tcp_challenge_ack(struct net_stack *s, struct net_conn *c);
void net_tcp_send_rst_for(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
			  uint16_t lport, uint16_t rport, const struct net_tcp_seg *g);

/* net_tcp_timer.c */
void net_tcp_timer_update(struct net_stack *s, struct net_conn *c);
uint32_t net_tcp_rto_now(const struct net_conn *c);
struct net_tw *net_tcp_tw_lookup(const struct net_stack *s, const uint8_t *laddr,
				 uint16_t lport, const uint8_t *raddr, uint16_t rport);
void net_tcp_enter_time_wait(struct net_stack *s, struct net_conn *c);
bool net_tcp_tw_input(struct net_stack *s, struct net_tw *t, const struct net_tcp_seg *g);

#endif
