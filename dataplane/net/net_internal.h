/* Inside the stack: the control block, the stack object, wire formats and helpers shared
 * by net_stack.c (the object and entry points), net_ip.c (frame input: Ethernet, IPv4,
 * ICMP, IPv6), net_link.c (frame output, ARP), the TCP files and net_fault.c. */
#ifndef MXGATE_DATAPLANE_NET_INTERNAL_H
#define MXGATE_DATAPLANE_NET_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net_stack.h"
#include "net_timer.h"

#define NET_ETH_HLEN 14
#define NET_ETHERTYPE_IPV4 0x0800
#define NET_ETHERTYPE_ARP 0x0806
#define NET_ETHERTYPE_IPV6 0x86dd
#define NET_IP_HLEN 20
#define NET_IP6_HLEN 40
#define NET_TCP_HLEN 20
#define NET_MAX_LISTEN 8
#define NET_ARP_CACHE 16
#define NET_SACK_RANGES 4 /* out-of-order runs kept per connection */

/* Sequence arithmetic modulo 2^32 (RFC 9293 3.4). */
#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LE(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define SEQ_GE(a, b) SEQ_LE(b, a)

static inline uint16_t net_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t net_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void net_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void net_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Addresses inside the stack are 16 bytes: IPv6, or IPv4-mapped (::ffff:a.b.c.d, RFC 4291
 * 2.5.5.2), so one comparison serves both families and they cannot be confused. */
static inline void net_addr_map4(uint8_t out[16], uint32_t v4_be)
{
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &v4_be, 4);
}
static inline bool net_addr_is4(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return memcmp(a, prefix, 12) == 0;
}

/* The per-connection control block. Kept small (see net_conn_size(); 256 bytes, an
 * allocator size class, and a gateway holds a million): buffers hang off it only while
 * they hold bytes, timers are one wheel node, addresses are 16 bytes so IPv6 fits without
 * another layout, and what only the handshake needs shares room with what only an
 * established connection needs. */
struct net_conn {
	struct net_conn *hnext; /* hash chain, or the dead list */
	struct net_stack *stack;
	struct net_timer timer; /* min(rtx_at, delack_at) */
	void *user;
	uint8_t *rbuf, *sbuf; /* rings of stack->rcvbuf / sndbuf bytes, or NULL */
	uint8_t laddr[16], raddr[16]; /* IPv4: first 4 bytes */
	uint16_t lport, rport;
	uint8_t peer_mac[6];
	uint8_t state; /* enum net_tcp_state */
	/* shifts in use (0 when not negotiated; at most 14, RFC 7323 2.3) */
	uint8_t snd_wscale : 4, rcv_wscale : 4;
	uint8_t backoff; /* RTO doublings since the last new ACK */
	uint8_t dupacks;
	uint8_t sack_n; /* out-of-order runs in ooo[] */
	uint8_t sack_last; /* index of the run that took the latest segment (RFC 2018 4) */
	uint16_t flags; /* enum conn_flag */
	uint16_t mss; /* what we send per segment, options excluded */
	int8_t error; /* -errno for NET_EV_ABORT (every one the stack gives is above -128) */
	uint8_t syn_retries;
	uint8_t pending_ev; /* bit per enum net_event to deliver */
	uint32_t snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1, snd_wl2, max_snd_wnd;
	uint32_t rcv_nxt, rcv_adv; /* rcv_adv: right edge of the window we advertised */
	uint32_t ts_recent, ts_recent_ms; /* RFC 7323 5.3; when it was taken */
	uint32_t ts_off; /* our TSval = ms clock + ts_off (per 4-tuple, net_tcp.c) */
	uint32_t cwnd, ssthresh, recover;
	uint32_t srtt, rttvar, rto; /* ms; srtt and rttvar scaled by 8 and 4 (RFC 6298) */
	uint32_t rtt_seq, rtt_start; /* Karn: the timed segment and when it left */
	uint32_t rtx_at, delack_at; /* ms ticks, 0 = off (1 stands in for a real 0) */
	uint32_t rhead, rlen; /* in-order bytes in rbuf from rhead */
	uint32_t shead, slen; /* bytes in sbuf from snd_una's byte at shead */
	union {
		/* the initial sequence numbers: read only in SYN-SENT and SYN-RECEIVED (the
		 * SYN or SYN-ACK sent again) */
		struct {
			uint32_t iss, irs;
		};
		/* received beyond rcv_nxt, sorted, disjoint: sack_n of them, only once
		 * ESTABLISHED (a segment's data is taken only after the handshake) */
		struct {
			uint32_t start, end;
		} ooo[NET_SACK_RANGES];
	};
};

enum conn_flag {
	CF_IPV6 = 1u << 0,
	CF_TS = 1u << 1, /* timestamps negotiated */
	CF_SACK = 1u << 2, /* peer sent SACK-permitted */
	CF_WS = 1u << 3, /* window scaling negotiated */
	CF_FIN_QUEUED = 1u << 4, /* the app closed: FIN after the send buffer */
	CF_FIN_RCVD = 1u << 5,
	CF_APP_GONE = 1u << 6, /* the app released the handle */
	CF_DEAD = 1u << 7, /* on the dead list, freed at the end of the call */
	CF_RECOVERY = 1u << 8, /* NewReno fast recovery */
	CF_PERSIST = 1u << 9, /* rtx_at is the persist timer */
	CF_DELACK_SEG = 1u << 10, /* one unacknowledged full segment received */
	CF_WANT_WRITE = 1u << 11, /* a write came back short */
	CF_RTT_TIMING = 1u << 12,
	CF_ACTIVE = 1u << 13, /* we sent the SYN */
	CF_ACK_NOW = 1u << 14,
	CF_FIN_ACKED = 1u << 15,
};

/* TIME-WAIT in a compact table (RFC 9293 3.6.1): what it takes to answer a retransmitted
 * FIN, refuse an old duplicate and accept a new SYN (RFC 6191), nothing more. */
struct net_tw {
	uint8_t laddr[16], raddr[16];
	uint16_t lport, rport;
	uint32_t snd_nxt, rcv_nxt, ts_recent;
	uint32_t expire; /* ms tick */
	uint32_t hnext; /* index+1 of the next entry in the bucket, 0 = end */
	uint8_t peer_mac[6];
	uint8_t used, has_ts;
};

struct net_arp_entry {
	uint32_t ip;
	uint8_t mac[6];
	uint8_t used;
	uint32_t at; /* ms tick learnt */
};

struct net_nd_entry {
	uint8_t ip[16];
	uint8_t mac[6];
	uint8_t used;
};
#define NET_ND_CACHE 8

struct net_token_bucket {
	uint32_t tokens, rate, last_ms;
};

struct net_fault;

struct net_stack {
	struct net_config cfg;
	struct net_ops ops;
	struct net_counters cnt;
	uint64_t now_us;
	uint32_t now_ms;
	uint16_t mss_local; /* what we advertise: MTU minus IPv4 and TCP headers */
	uint8_t rcv_wscale; /* the shift our rcvbuf needs */
	bool pressure;
	struct net_fault *fault;
	uint16_t listen[NET_MAX_LISTEN];
	unsigned nlisten;
	uint16_t next_port;
	/* Control blocks. */
	struct net_conn **hash;
	uint32_t hash_mask, nconns, nhalf;
	struct net_conn *dead;
	struct net_timer_wheel wheel;
	/* Buffer free list (each rcvbuf or sndbuf bytes; two separate lists). */
	void *free_rbuf, *free_sbuf;
	uint32_t nfree_rbuf, nfree_sbuf, bufs_in_use;
	/* TIME-WAIT: a ring in expiry order plus a hash over it. */
	struct net_tw *tw;
	uint32_t *tw_hash; /* index+1 */
	uint32_t tw_mask, tw_head, tw_count, tw_live; /* count: ring span; live: entries */
	/* ARP. */
	struct net_arp_entry arp[NET_ARP_CACHE];
	uint32_t arp_next_try;
	/* IPv6 neighbours. */
	bool has_ipv6;
	uint8_t ll6[16]; /* our link-local address */
	struct net_nd_entry nd[NET_ND_CACHE];
	unsigned nd_next;
	uint32_t nd_next_try;
	struct net_token_bucket rst_tb, icmp_tb;
	int depth; /* nesting of public entry points: the dead list is reaped at 0 */
};

/* net_util.c */
uint64_t net_siphash(const uint8_t key[16], const void *data, size_t len);
/* Internet checksum (RFC 1071): the one's-complement sum of data folded into sum. */
uint32_t net_csum_add(uint32_t sum, const void *data, size_t len);
uint16_t net_csum_fold(uint32_t sum);
bool net_tb_take(struct net_token_bucket *tb, uint32_t now_ms);

/* The files call each other downwards only: net_stack.c (entry points) -> net_fault.c,
 * net_ip.c (frame input) -> net_tcp*.c -> net_link.c (frame output, ARP) -> net_fault.c's
 * tap; net_util.c and net_timer.c serve them all. */

/* net_link.c */
extern const uint8_t net_eth_bcast[6];
/* A frame buffer with room for Ethernet + IPv4 headers + l4len; returns the L4 pointer
 * or NULL (counted) when the pool is empty. */
uint8_t *net_tx_begin(struct net_stack *s, void **handle, uint8_t **frame, size_t l3len,
		      size_t l4len);
/* The same for IPv6 (next header 6 or 58). */
void net_tx_ipv6(struct net_stack *s, void *handle, uint8_t *frame, const uint8_t dmac[6],
		 const uint8_t src[16], const uint8_t dst[16], uint8_t proto, size_t l4len,
		 size_t l4hdr);
/* Fill Ethernet and IPv4 headers and the L4 checksum (proto 6 or 1), then send. */
void net_tx_ipv4(struct net_stack *s, void *handle, uint8_t *frame, const uint8_t dmac[6],
		 uint32_t src, uint32_t dst, uint8_t proto, size_t l4len, size_t l4hdr);
/* One of our IPv4 addresses: cfg.ipv4 or within the source range (network order). */
static inline bool net_ipv4_ours(const struct net_stack *s, uint32_t a)
{
	if (a == 0)
		return false;
	if (a == s->cfg.ipv4)
		return true;
	return __builtin_bswap32(a) - __builtin_bswap32(s->cfg.ipv4_src_base) <
	       s->cfg.ipv4_src_count;
}
bool net_arp_lookup(struct net_stack *s, uint32_t ip, uint8_t mac[6]);
void net_arp_request(struct net_stack *s, uint32_t ip);
/* An ARP packet (the Ethernet payload, len bytes). */
void net_arp_input(struct net_stack *s, const uint8_t *a, size_t len, unsigned rx_flags);

/* net_ip.c */
/* The input path below fault injection. */
void net_input_frame(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags);
/* ICMP destination unreachable about the IPv4 packet ip (ip_len bytes), rate limited. */
void net_icmp_unreach(struct net_stack *s, const uint8_t smac[6], const uint8_t *ip,
		      size_t ip_len, uint8_t code);
bool net_nd_lookup(struct net_stack *s, const uint8_t ip[16], uint8_t mac[6]);
void net_nd_solicit(struct net_stack *s, const uint8_t target[16]);

/* TCP (net_tcp*.c; what they share among themselves is in net_tcp_internal.h). */
/* net_tcp_input.c. src and dst: 16-byte addresses (IPv4 mapped). */
void net_tcp_input(struct net_stack *s, const uint8_t smac[6], const uint8_t *src,
		   const uint8_t *dst, const uint8_t *tcp, size_t tcp_len, bool csum_ok);
/* net_tcp_timer.c */
void net_tcp_timer_fire(void *arg, struct net_timer *t);
void net_tcp_poll(struct net_stack *s);
/* net_tcp.c */
void net_tcp_reap(struct net_stack *s);
/* Reset the passive opens in SYN-RECEIVED on local port lport (the port was unlistened). */
void net_tcp_reset_half_open(struct net_stack *s, uint16_t lport);
void net_tcp_free_all(struct net_stack *s);

/* net_fault.c: frames diverted when fault injection is on. Received frames, and held ones
 * when their time comes, go on to deliver (net_input_frame): the caller names the next
 * stage, so fault injection does not call up into the stack it wraps. */
void net_fault_rx(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags,
		  void (*deliver)(struct net_stack *, const uint8_t *, size_t, unsigned));
bool net_fault_tx(struct net_stack *s, const uint8_t *frame, size_t len,
		  const struct net_tx_meta *meta);
void net_fault_poll(struct net_stack *s,
		    void (*deliver)(struct net_stack *, const uint8_t *, size_t, unsigned));
void net_fault_free(struct net_stack *s);

#endif
