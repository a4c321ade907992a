/* mxgate's own TCP/IP stack: one instance per worker lcore, no DPDK inside.
 *
 * Frames come in as (bytes, length, rx flags, now); frames go out through struct net_ops
 * (tx_alloc/tx_send, which the DPDK glue maps onto rte_pktmbuf_alloc and
 * rte_eth_tx_burst). The stack copies what it keeps, so the caller frees its receive
 * mbuf as soon as net_stack_input() returns. Time is passed in (microseconds, any
 * monotonic origin); the stack never reads a clock, so tests drive it with a virtual one.
 *
 * What it implements (see the .c files for the RFC sections):
 *   - Ethernet II; ARP (RFC 826) answering for our address and resolving the gateway;
 *     IPv4 (RFC 791/1122) with header validation, fragments dropped and counted; ICMP echo
 *     and the errors a host sends (RFC 792/1122: port/protocol unreachable, rate limited).
 *   - TCP (RFC 9293) passive and active open and every closing state; RFC 5961 challenge
 *     ACKs for RST, SYN and old ACKs; RFC 7323 window scaling, timestamps and PAWS; MSS
 *     option and clamping; SACK-permitted and SACK blocks describing our out-of-order
 *     receive queue (RFC 2018); delayed ACKs (RFC 5681 4.2); RFC 6298 RTO with Karn and
 *     exponential backoff; RFC 5681/6582 NewReno; zero-window persist probes; TIME-WAIT
 *     in a compact table; RFC 6528 initial sequence numbers; a rate limit on RSTs and
 *     challenge ACKs; RFC 4987 SYN cookies.
 *
 * SYN cookies are used only under pressure: when the SYN backlog (half-open control
 * blocks) is full, the connection table is full, or the caller says the buffer pool is low
 * (net_stack_set_pressure).
 * A cookie connection cannot carry window scaling or SACK unless the SYN had timestamps
 * (we keep those two in the low bits of our TSval, as Linux does), and a lost SYN-ACK is
 * not retransmitted; so the normal path keeps full state and cookies are the fallback that
 * keeps us answering during a flood instead of going silent.
 *
 * Routing: a server answers. Segments of a connection go back to the MAC address its SYN
 * came from (the router that delivered it, or the on-link client); ICMP and ARP answers
 * likewise. The gateway is resolved with ARP for traffic we originate (net_conn_connect).
 *
 * IPv6 (RFC 8200) with neighbour discovery (RFC 4861: answering NS for our addresses,
 * resolving the gateway) and ICMPv6 echo (RFC 4443); TCP over both families.
 *
 * Not yet: IPv6 extension headers (a packet carrying any is dropped and counted), active
 * open over IPv6, IP options on output, urgent data (RFC 6093: treated as normal data).
 *
 * Threading: none. One lcore owns a stack and everything reached from it. */
#ifndef MXGATE_DATAPLANE_NET_STACK_H
#define MXGATE_DATAPLANE_NET_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct net_stack;
struct net_conn;

/* Checksum offloads of the port (DEV_TX_OFFLOAD_*_CKSUM). Where a flag is set the stack
 * leaves that checksum to the NIC: the IPv4 header checksum zero, the TCP/UDP checksum
 * holding the pseudo-header sum, as DPDK's rte_ipv4_phdr_cksum() wants; and it sets the
 * same flag in net_tx_meta so the glue sets RTE_MBUF_F_TX_*. Otherwise it computes them. */
enum net_offload {
	NET_OFFLOAD_IPV4_CKSUM = 1u << 0,
	NET_OFFLOAD_TCP_CKSUM = 1u << 1,
};

/* Receive flags from the NIC (RTE_MBUF_F_RX_*_CKSUM_GOOD): the stack skips a check the
 * hardware already did. 0 means "check everything in software". */
enum net_rx_flag {
	NET_RX_IP_CKSUM_GOOD = 1u << 0,
	NET_RX_L4_CKSUM_GOOD = 1u << 1,
	/* A copy of an ARP or neighbour-discovery frame another stack instance of the same
	 * port received: learn the neighbour's MAC from it, answer nothing (the instance that
	 * got the frame answers), process nothing else. */
	NET_RX_LEARN_ONLY = 1u << 2,
};

struct net_tx_meta {
	uint16_t l2_len, l3_len, l4_len; /* header lengths for the offload fields */
	unsigned offload; /* enum net_offload bits the NIC must complete for this frame */
};

/* What the connection glue is told. Delivered outside the stack's own processing of a
 * segment, so the callback may call net_conn_* on the same connection. */
enum net_event {
	NET_EV_ACCEPT, /* a passive open completed: the connection is the glue's now */
	NET_EV_CONNECTED, /* an active open completed */
	NET_EV_READABLE, /* bytes to read, or the peer's FIN (net_conn_eof()) */
	NET_EV_WRITABLE, /* send-buffer space came free after a short net_conn_write() */
	NET_EV_ABORT, /* reset, or retransmissions gave up: the handle dies when the
		       * callback returns (net_conn_error() says why, in the callback) */
	NET_EV_MAX
};
const char *net_event_name(enum net_event ev);

struct net_ops {
	void *ctx;
	/* A frame buffer of at least cap bytes: returns an opaque handle and sets *data, or
	 * NULL when the pool is empty (the frame is not sent and counted; TCP retransmits). */
	void *(*tx_alloc)(void *ctx, uint8_t **data, size_t cap);
	/* Send len bytes of a frame from tx_alloc; the glue owns it from here. len 0: free
	 * it unsent (fault injection dropped or kept a copy of it). Every frame tx_alloc
	 * gave is handed back here exactly once. */
	void (*tx_send)(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta);
	void (*event)(void *ctx, struct net_conn *c, enum net_event ev);
};

struct net_config {
	uint8_t mac[6];
	uint32_t ipv4; /* network byte order */
	uint8_t ipv4_prefix; /* on-link prefix length */
	uint32_t ipv4_gateway; /* network byte order; 0: none */
	/* More local IPv4 addresses, for active opens from many sources (the load
	 * generator's): the ipv4_src_count addresses from ipv4_src_base (network byte order)
	 * on, within ipv4's on-link prefix or not. ARP is answered and IPv4 accepted for them
	 * as for ipv4; net_conn_connect_from() opens from one of them. 0: none. */
	uint32_t ipv4_src_base;
	uint32_t ipv4_src_count;
	uint16_t mtu; /* IP MTU; 576..9000, 0 means 1500 */
	unsigned offload; /* enum net_offload */
	uint32_t max_conns; /* control blocks (established + half-open); 0: 65536 */
	uint32_t syn_backlog; /* half-open control blocks before cookies; 0: 1024 */
	uint32_t time_wait_max; /* TIME-WAIT entries; the oldest is dropped when full; 0: 65536 */
	uint32_t rcvbuf, sndbuf; /* per-connection buffers, taken only while holding bytes;
				  * 1024..1 MiB; 0: 64 KiB each */
	uint32_t time_wait_ms; /* 2*MSL; 0: 60000 (Linux's value) */
	uint32_t rst_per_sec; /* RSTs and challenge ACKs sent per second; 0: 1000 */
	uint32_t icmp_per_sec; /* ICMP errors sent per second; 0: 100 */
	uint32_t delack_ms; /* delayed-ACK timer; 0: 40 */
	uint8_t secret[16]; /* random: keys SYN cookies, ISNs and the connection hash */
	/* IPv6: our global address (all zero: no IPv6), and the default router (link-local
	 * usually; all zero: none). The link-local address fe80::/64 with the modified
	 * EUI-64 of mac (RFC 4291 2.5.1) is always ours too when IPv6 is on. */
	uint8_t ipv6[16];
	uint8_t ipv6_gateway[16];
};

/* Counters for metrics; plain integers, one lcore writes them. */
struct net_counters {
	uint64_t rx_frames, rx_bad_eth, rx_not_ours, rx_arp, rx_bad_ip, rx_bad_csum,
		rx_ip_fragments, rx_icmp, rx_tcp, rx_bad_tcp, rx_proto_unknown, rx_udp;
	uint64_t tx_frames, tx_alloc_fail, tx_icmp_echo, tx_icmp_unreach, tx_arp;
	uint64_t tcp_syn, tcp_syn_cookie_sent, tcp_syn_cookie_ok, tcp_syn_cookie_bad,
		tcp_accept, tcp_connect, tcp_rst_sent, tcp_rst_limited, tcp_rst_rcvd,
		tcp_challenge_ack, tcp_paws_drop, tcp_out_of_window, tcp_ooo_segs, tcp_ooo_drop,
		tcp_dup_segs, tcp_retransmits, tcp_rto, tcp_fast_retransmit, tcp_persist_probes,
		tcp_timeouts, tcp_time_wait, tcp_time_wait_reuse, tcp_time_wait_evict,
		tcp_conn_full, tcp_buf_alloc_fail;
	uint64_t rx_ipv6, rx_icmp6, rx_nd, tx_nd, tx_icmp6_echo;
	uint64_t fault_drop, fault_dup, fault_delay;
};

/* Seeded fault injection for tests (the DESIGN's in-process netem). Off by default; when
 * off it costs one predicted branch per frame. Percentages are per frame, each way. */
struct net_fault_config {
	uint64_t seed;
	unsigned rx_drop_pct, rx_dup_pct, rx_reorder_pct;
	unsigned tx_drop_pct, tx_dup_pct, tx_reorder_pct;
	uint32_t delay_us; /* reordered frames are held up to this long (default 2000) */
};

/* Create a stack; returns NULL with errno (EINVAL for a bad config, ENOMEM). */
struct net_stack *net_stack_create(const struct net_config *cfg, const struct net_ops *ops,
				   uint64_t now_us);
void net_stack_destroy(struct net_stack *s);

/* Accept connections on a TCP port (host order). Up to 8 ports. 0 or -ENOSPC/-EEXIST. */
int net_stack_listen(struct net_stack *s, uint16_t port);

/* Stop accepting connections on a TCP port (host order): afterwards a segment that finds no
 * connection there is answered as on any closed port (a SYN gets RST, RFC 9293 3.10.7.1),
 * and the ACK of a SYN cookie is no longer taken (RST too). Passive opens still half-open
 * (SYN-RECEIVED) on the port are reset now: the app never saw them, and no NET_EV_ACCEPT
 * names the port after this call. Established connections are not touched: they run and
 * close as usual, TIME-WAIT included. 0, or -ENOENT when the port was not listened on. */
int net_stack_unlisten(struct net_stack *s, uint16_t port);

/* Process one received frame. The bytes are only read during the call. */
void net_stack_input(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags,
		     uint64_t now_us);

/* True for the frames every stack instance of a port must see to keep its neighbour
 * caches (ARP, IPv6 neighbour solicitations and advertisements): a multi-queue NIC hands
 * each of them to one queue only. Reads only the headers within len. */
bool net_frame_is_neighbour(const uint8_t *frame, size_t len);

/* Run due timers (retransmissions, delayed ACKs, persist probes, TIME-WAIT expiry, ARP
 * retries, held fault-injection frames). Call every poll-loop iteration or at least every
 * millisecond; it is cheap when nothing is due. */
void net_stack_poll(struct net_stack *s, uint64_t now_us);

/* The buffer pool runs low (true) or has recovered (false): advertised windows stop
 * growing beyond two segments and new SYNs are answered with cookies only. */
void net_stack_set_pressure(struct net_stack *s, bool low);

/* Parse a fault specification, as the glue takes it from the configuration or the
 * environment (MXGATE_NET_FAULT): comma-separated key=value with keys seed, delay_us,
 * drop, dup, reorder (both ways) and rx_drop, rx_dup, rx_reorder, tx_drop, tx_dup,
 * tx_reorder (percentages 0..100), e.g. "seed=7,drop=5,reorder=5,dup=1". Fills *out
 * (zeroed first). 0, or -EINVAL naming nothing: the caller reports the whole string. */
int net_fault_parse(const char *spec, struct net_fault_config *out);

/* Fault injection on (cfg) or off (NULL). 0 or -ENOMEM. */
int net_stack_set_fault(struct net_stack *s, const struct net_fault_config *cfg);

const struct net_counters *net_stack_counters(const struct net_stack *s);
/* Connections holding a control block (including half-open), and TIME-WAIT entries. */
uint32_t net_stack_conn_count(const struct net_stack *s);
uint32_t net_stack_time_wait_count(const struct net_stack *s);
/* Per-connection buffers currently taken (each rcvbuf or sndbuf bytes). */
uint32_t net_stack_buffers_in_use(const struct net_stack *s);
/* sizeof(struct net_conn), for the report and the memory estimate. */
size_t net_conn_size(void);

/* The gateway's MAC if ARP resolved it; false otherwise. */
bool net_stack_gateway_mac(const struct net_stack *s, uint8_t mac[6]);
/* The IPv6 gateway's MAC if neighbour discovery resolved it. */
bool net_stack_gateway6_mac(const struct net_stack *s, uint8_t mac[6]);

/* Active open to ipv4:port (network-order address, host-order port) from port lport
 * (0: pick one). Completes with NET_EV_CONNECTED or NET_EV_ABORT. NULL with errno. */
struct net_conn *net_conn_connect(struct net_stack *s, uint32_t ipv4, uint16_t port,
				  uint16_t lport, uint64_t now_us);
/* The same from local address src (network order): ipv4, or one of the ipv4_src_count
 * addresses from ipv4_src_base (else NULL with EADDRNOTAVAIL). */
struct net_conn *net_conn_connect_from(struct net_stack *s, uint32_t src, uint32_t ipv4,
				       uint16_t port, uint16_t lport, uint64_t now_us);

void net_conn_set_user(struct net_conn *c, void *user);
void *net_conn_user(const struct net_conn *c);
/* Peer address: family AF_INET with 4 bytes, or AF_INET6 with 16; port in host order. */
void net_conn_peer(const struct net_conn *c, int *family, uint8_t addr[16], uint16_t *port);
/* The address and port the connection arrived on (ours). */
void net_conn_local(const struct net_conn *c, int *family, uint8_t addr[16], uint16_t *port);

/* Received bytes in order: the first contiguous run (the buffer is a ring; after
 * consuming it, peek again for the rest). Empty when nothing is buffered. */
const uint8_t *net_conn_peek(const struct net_conn *c, size_t *len);
/* Drop n peeked bytes (n <= what peek returned); may send a window update. */
void net_conn_consume(struct net_conn *c, size_t n);
/* The peer sent FIN and every byte before it has been consumed. */
bool net_conn_eof(const struct net_conn *c);
/* The reason of NET_EV_ABORT: -ECONNRESET or -ETIMEDOUT. 0 otherwise. */
int net_conn_error(const struct net_conn *c);

/* Queue bytes to send; returns how many were taken (short when the send buffer is full:
 * NET_EV_WRITABLE follows). Segments leave at once, window and cwnd permitting (no Nagle:
 * SMTP replies are written whole). Returns 0 after close or on a dead connection. */
size_t net_conn_write(struct net_conn *c, const void *buf, size_t len);
/* Bytes written but not yet acknowledged by the peer. */
size_t net_conn_unacked(const struct net_conn *c);

/* Close: FIN after the queued bytes (RFC 9293 3.10.4). If received bytes were never read
 * the connection is reset instead (RFC 2525 2.17), as Linux does. Either way the handle
 * belongs to the stack again and no event names it any more. */
void net_conn_close(struct net_conn *c);
/* Abort: send RST and forget the connection at once (the handle is invalid). */
void net_conn_abort(struct net_conn *c);

/* RFC 9293 states, for tests and logs. */
enum net_tcp_state {
	NET_TCP_CLOSED,
	NET_TCP_LISTEN,
	NET_TCP_SYN_SENT,
	NET_TCP_SYN_RCVD,
	NET_TCP_ESTABLISHED,
	NET_TCP_FIN_WAIT_1,
	NET_TCP_FIN_WAIT_2,
	NET_TCP_CLOSE_WAIT,
	NET_TCP_CLOSING,
	NET_TCP_LAST_ACK,
	NET_TCP_TIME_WAIT,
	NET_TCP_STATE_MAX
};
const char *net_tcp_state_name(enum net_tcp_state st);
enum net_tcp_state net_conn_state(const struct net_conn *c);
/* The state of the connection with this 4-tuple (addresses network order, ports host
 * order): a control block's, NET_TCP_TIME_WAIT from the compact table, or CLOSED. */
enum net_tcp_state net_stack_lookup_state(const struct net_stack *s, uint32_t local_ip,
					  uint16_t local_port, uint32_t remote_ip,
					  uint16_t remote_port);

/* Whether a received frame belongs to this stack as far as TCP state goes: true for a
 * segment of one of its connections (TIME-WAIT included) and for anything that is not a
 * TCP segment (ARP, ICMP, truncated frames: the stack judges those itself); false for a
 * segment of a flow it has never seen. The steering glue asks before handling a segment
 * whose owner it does not know, so another lcore's flow is not answered with a reset. */
bool net_stack_knows_segment(const struct net_stack *s, const uint8_t *frame, size_t len);

#endif
