#include "dataplane/dpdk/dpdk_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_spinlock.h>
#include <rte_version.h>

#include "dataplane/session/conn.h"
#include "dataplane/net/net_flow.h"
#include "dataplane/net/net_stack.h"
#include "dataplane/net/net_timer.h"
#include "mgmt/log.h"
#include "mxgate/errf.h"

#define DP_BURST 32
#define DP_RX_ROUNDS 32 /* bursts per port (and ring) an iteration takes before timers */
#define DP_TX_BATCH 64
#define DP_RX_DESC 1024
#define DP_TX_DESC 1024
#define DP_RING_SIZE 4096 /* per worker: frames handed over by other lcores */
#define DP_ROUNDS 8       /* service rounds one connection gets before the others */
#define DP_IDLE_SPINS 256 /* empty iterations before an idle sleep */
#define DP_IDLE_SHORT_US 100000 /* idle time before the sleeps grow */
#define DP_OWNER_BITS 20  /* flow-owner table: 2^20 slots of 8 bytes */
#define DP_TX_RETRIES 4
#define DP_WARN_INTERVAL_MS 1000
#define DP_LISTEN_MAX 8 /* TCP ports a stack listens on (net_stack_listen()'s bound) */

static const char dp_refusal[] = "421 4.3.2 Service currently unavailable\r\n";

struct dp_worker;

/* The stack's ops context: one per (worker, port), so tx_alloc/tx_send know the pool and
 * queue and the event callback knows the port. */
struct dp_port_ctx {
	struct dp_worker *w;
	unsigned port; /* index into t->port[] */
};

struct dp_conn {
	struct net_conn *nc;
	struct conn *c;
	struct dp_worker *w;
	struct net_timer timer; /* idle timeout or error-sleep hold, whichever is first */
	uint64_t idle_at_ms;
	uint64_t hold_until_ms; /* 0: none */
	bool eof;  /* the peer's FIN was read */
	bool dead; /* closed or aborted: freed at the end of the iteration */
	bool in_ready;
	struct dp_conn *prev, *next;   /* the worker's connections */
	struct dp_conn *ready_next;    /* serviced again before the next poll */
};

struct dp_port {
	uint16_t port_id;
	struct rte_mempool *pool;
	uint16_t nq;        /* RX/TX queue pairs configured (<= workers) */
	bool software;      /* our flow hash decides the owner of every TCP packet */
	bool rx_cksum;      /* the PMD reports checksum status */
	unsigned offload;   /* enum net_offload */
	uint16_t mtu;
	struct rte_ether_addr mac;
	rte_spinlock_t txlock[RTE_MAX_LCORE]; /* only when nq < workers */
};

/* Statistics one worker writes and main reads (relaxed atomics, no tearing). */
struct dp_stats {
	uint64_t rx_packets, tx_packets, tx_dropped, rx_multiseg_drop;
	uint64_t steered_out, steered_in, steer_drops;
	uint64_t busy_cycles, total_cycles, idle_sleeps;
	uint64_t conn_memory; /* bytes held by the open connections (sampled each second) */
	uint64_t nconns;
};

struct dp_worker {
	struct dpdk_transport *t;
	unsigned index;
	unsigned lcore;
	struct net_stack *stack[DPDK_MAX_PORTS];
	struct dp_port_ctx ctx[DPDK_MAX_PORTS];
	struct rte_ring *ring;
	struct conn_worker cw;
	struct net_timer_wheel *wheel;
	struct dp_conn *conns, *ready_head, *ready_tail, *dead;
	struct rte_mbuf *tx[DPDK_MAX_PORTS][DP_TX_BATCH];
	uint16_t ntx[DPDK_MAX_PORTS];
	struct dp_stats st;
	uint64_t now_us, now_ms;
	uint64_t renewed_us, sampled_ms, pressure_ms;
	bool pressure;
	bool stopping;
	uint64_t stop_deadline_ms;
	uint64_t refused_warned_ms;
	unsigned refused_since_warning;
	bool launched;
	pid_t tid; /* for the CPU time the kernel accounts to this lcore's thread */
	/* the TCP ports its stacks listen on (a reload may add some), and the generations
	 * they were last made for (IDs) */
	uint16_t listening[DP_LISTEN_MAX];
	unsigned nlistening;
	uint64_t listen_cur, listen_can;
};

struct dpdk_transport {
	struct transport_params p;
	struct dpdk_config dc;
	struct dp_port port[DPDK_MAX_PORTS];
	unsigned nports;
	struct dp_worker *workers;
	unsigned nworkers;
	uint64_t tsc_hz, tsc_per_us;
	uint64_t tsc_start;
	uint64_t flow_key[2];
	uint64_t *owner; /* flow tag << 32 | (worker + 1), 2^DP_OWNER_BITS slots */
	int16_t port_index[RTE_MAX_ETHPORTS]; /* DPDK port id -> index, -1: not ours */
	atomic_bool stop;
	atomic_bool failed;
	bool ports_started;
	/* quiescent points of the workers (RCU: rte_rcu_qsbr), for publishing generations */
	struct rte_rcu_qsbr *qsbr;
};

static bool dp_eal_initialised; /* rte_eal_init() may run once per process */

static inline void dp_stat_add(uint64_t *field, uint64_t n)
{
	__atomic_store_n(field, *field + n, __ATOMIC_RELAXED);
}

static inline uint64_t dp_stat_get(const uint64_t *field)
{
	return __atomic_load_n(field, __ATOMIC_RELAXED);
}

/* ---- flow steering ---- */

/* Which worker handles a frame this lcore polled, and whether the frame is sent there to
 * search for its owner (*search) rather than because the owner is known. */
static unsigned dp_owner(struct dp_worker *w, unsigned pi, const uint8_t *f, size_t len,
			 bool *search)
{
	struct dpdk_transport *t = w->t;
	*search = false;
	if (t->nworkers == 1)
		return w->index;
	uint8_t flags = 0;
	uint64_t h = net_flow_hash(t->flow_key, f, len, &flags);
	if (h == 0)
		return w->index;
	if (t->port[pi].software)
		return net_flow_pick(h, t->nworkers);
	/* Queues own flows: the lcore a flow's first SYN arrives on claims it in the owner
	 * table, and later packets that land elsewhere (af_packet's rollover when a ring is
	 * full) follow the claim. The table is a hint: a slot holds the last claim that hashed
	 * to it, so a flood of SYNs overwrites live flows' claims. A segment without a
	 * matching claim is handled here only if this lcore's stack knows its flow;
	 * otherwise the other lcores are asked in turn (dp_poll_ring), so a flow is never
	 * reset by an lcore that merely lost track of who owns it. */
	uint64_t *slot = &t->owner[h & ((1u << DP_OWNER_BITS) - 1)];
	uint64_t tag = h >> 32;
	uint64_t e = __atomic_load_n(slot, __ATOMIC_RELAXED);
	if ((e >> 32) == tag && (e & 0xffffffffu) != 0)
		return (unsigned)(e & 0xffffffffu) - 1;
	if ((flags & 0x12) == 0x02) { /* SYN without ACK: a new flow, ours */
		__atomic_store_n(slot, tag << 32 | (w->index + 1), __ATOMIC_RELAXED);
		return w->index;
	}
	if (net_stack_knows_segment(w->stack[pi], f, len))
		return w->index;
	*search = true;
	return (w->index + 1) % t->nworkers;
}

/* A searched-for flow was found here: claim it again, so its next strays come directly. */
static void dp_reclaim(struct dp_worker *w, const uint8_t *f, size_t len)
{
	struct dpdk_transport *t = w->t;
	uint8_t flags;
	uint64_t h = net_flow_hash(t->flow_key, f, len, &flags);
	if (h)
		__atomic_store_n(&t->owner[h & ((1u << DP_OWNER_BITS) - 1)],
				 (h >> 32) << 32 | (w->index + 1), __ATOMIC_RELAXED);
}

/* ---- the stack's ops ---- */

static void *dp_tx_alloc(void *ctx, uint8_t **data, size_t cap)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_port *port = &pc->w->t->port[pc->port];
	struct rte_mbuf *m = rte_pktmbuf_alloc(port->pool);
	if (!m)
		return NULL;
	if (cap > rte_pktmbuf_tailroom(m)) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	*data = rte_pktmbuf_mtod(m, uint8_t *);
	return m;
}

static void dp_tx_flush_port(struct dp_worker *w, unsigned pi)
{
	uint16_t n = w->ntx[pi];
	if (n == 0)
		return;
	struct dp_port *port = &w->t->port[pi];
	uint16_t q = (uint16_t)(w->index % port->nq);
	bool shared = port->nq < w->t->nworkers;
	uint16_t sent = 0;
	if (shared)
		rte_spinlock_lock(&port->txlock[q]);
	for (int tries = 0; tries < DP_TX_RETRIES && sent < n; tries++)
		sent += rte_eth_tx_burst(port->port_id, q, w->tx[pi] + sent, n - sent);
	if (shared)
		rte_spinlock_unlock(&port->txlock[q]);
	if (sent < n) {
		/* the queue is full: drop, as a wire would; TCP retransmits */
		rte_pktmbuf_free_bulk(w->tx[pi] + sent, n - sent);
		dp_stat_add(&w->st.tx_dropped, n - sent);
	}
	dp_stat_add(&w->st.tx_packets, sent);
	w->ntx[pi] = 0;
}

static void dp_tx_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_worker *w = pc->w;
	struct rte_mbuf *m = frame;
	if (len == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	m->data_len = (uint16_t)len;
	m->pkt_len = (uint32_t)len;
	m->ol_flags = 0;
	if (meta->offload) {
		m->l2_len = meta->l2_len;
		m->l3_len = meta->l3_len;
		m->l4_len = meta->l4_len;
		bool v4 = meta->l3_len && (rte_pktmbuf_mtod(m, uint8_t *)[12] == 0x08);
		m->ol_flags |= v4 ? RTE_MBUF_F_TX_IPV4 : RTE_MBUF_F_TX_IPV6;
		if (meta->offload & NET_OFFLOAD_IPV4_CKSUM)
			m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
		if (meta->offload & NET_OFFLOAD_TCP_CKSUM)
			m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
	}
	w->tx[pc->port][w->ntx[pc->port]++] = m;
	if (w->ntx[pc->port] == DP_TX_BATCH)
		dp_tx_flush_port(w, pc->port);
}

/* ---- connections ---- */

static void dp_ready_push(struct dp_worker *w, struct dp_conn *k)
{
	if (k->in_ready || k->dead)
		return;
	k->in_ready = true;
	k->ready_next = NULL;
	if (w->ready_tail)
		w->ready_tail->ready_next = k;
	else
		w->ready_head = k;
	w->ready_tail = k;
}

static uint64_t dp_due_ms(const struct dp_conn *k)
{
	if (k->hold_until_ms && k->hold_until_ms < k->idle_at_ms)
		return k->hold_until_ms;
	return k->idle_at_ms;
}

static void dp_timer_set(struct dp_worker *w, struct dp_conn *k)
{
	net_timer_arm(w->wheel, &k->timer, (uint32_t)dp_due_ms(k));
}

/* Unlink a connection that is over; the struct is freed at the end of the iteration,
 * since the ready list may still name it. */
static void dp_forget(struct dp_worker *w, struct dp_conn *k)
{
	k->dead = true;
	net_timer_cancel(w->wheel, &k->timer);
	if (k->prev)
		k->prev->next = k->next;
	else
		w->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	conn_free(k->c);
	k->c = NULL;
	k->nc = NULL;
	dp_stat_add(&w->st.nconns, (uint64_t)-1);
	k->next = w->dead;
	w->dead = k;
}

/* Close after the last reply: FIN once the queued bytes are out. Unread input is
 * discarded first, since the stack answers a close with unread data by RST (RFC 2525
 * 2.17), and a RST could make the client lose our last reply. */
static void dp_close(struct dp_worker *w, struct dp_conn *k)
{
	if (k->dead)
		return;
	size_t n;
	for (int i = 0; i < 64 && net_conn_peek(k->nc, &n) && n; i++)
		net_conn_consume(k->nc, n);
	net_conn_set_user(k->nc, NULL);
	net_conn_close(k->nc);
	dp_forget(w, k);
}

/* Send what the engine queued. 1: all of it went out; 0: the send buffer is full
 * (NET_EV_WRITABLE follows). */
static int dp_flush(struct dp_worker *w, struct dp_conn *k)
{
	for (;;) {
		struct mx_span out = conn_output(k->c);
		if (out.len == 0)
			return 1;
		size_t n = net_conn_write(k->nc, out.ptr, out.len);
		if (n == 0)
			return 0;
		conn_output_done(k->c, n);
		k->idle_at_ms = conn_deadline(k->c, w->now_ms, 0, true);
	}
}

static bool dp_after_input(struct dp_worker *w, struct dp_conn *k)
{
	uint32_t delay = conn_take_delay_ms(k->c);
	if (delay == 0)
		return false;
	/* smtpd_error_sleep_time: the reply and further input wait on the timer wheel */
	k->hold_until_ms = w->now_ms + delay;
	if (k->idle_at_ms < k->hold_until_ms + conn_timeout_ms(k->c))
		k->idle_at_ms = k->hold_until_ms + conn_timeout_ms(k->c);
	dp_timer_set(w, k);
	return true;
}

static void dp_fail_conn(struct dp_worker *w, struct dp_conn *k, const char *why)
{
	mx_log(MX_LOG_WARNING, "%s: closing connection from %s", why, conn_client(k->c));
	conn_shutdown(k->c);
	dp_flush(w, k);
	dp_close(w, k);
}

/* Do what can be done for one connection now: send, read, feed the engine, close. */
static void dp_service(struct dp_worker *w, struct dp_conn *k)
{
	if (k->dead || (k->hold_until_ms && w->now_ms < k->hold_until_ms))
		return;
	for (int round = 0; round < DP_ROUNDS; round++) {
		int fr = dp_flush(w, k);
		if (conn_closed(k->c) || k->eof) {
			if (fr == 1)
				dp_close(w, k);
			return;
		}
		if (fr == 0 || conn_waiting(k->c))
			return; /* NET_EV_WRITABLE or the spool writer wakes us */
		size_t len;
		const uint8_t *p = net_conn_peek(k->nc, &len);
		if (len == 0) {
			if (net_conn_eof(k->nc)) {
				k->eof = true;
				conn_peer_closed(k->c);
				continue; /* send what is queued, then close */
			}
			return; /* NET_EV_READABLE brings more */
		}
		size_t used = conn_input(k->c, (const char *)p, len);
		if (used) {
			net_conn_consume(k->nc, used);
			w->cw.counters.bytes_received += used;
			k->idle_at_ms = conn_deadline(k->c, w->now_ms, used, false);
		}
		if (dp_after_input(w, k))
			return;
		if (used == 0 && conn_output(k->c).len == 0 && !conn_closed(k->c) &&
		    !conn_waiting(k->c)) {
			/* nothing taken, nothing to say, not closed: no progress is possible */
			dp_fail_conn(w, k, "error: SMTP engine made no progress");
			return;
		}
	}
	dp_ready_push(w, k);
}

static void dp_refuse(struct dp_worker *w, struct net_conn *nc, const char *why)
{
	net_conn_write(nc, dp_refusal, sizeof(dp_refusal) - 1);
	net_conn_close(nc);
	w->cw.counters.connections_refused++;
	w->refused_since_warning++;
	if (w->now_ms - w->refused_warned_ms >= DP_WARN_INTERVAL_MS || !w->refused_warned_ms) {
		mx_log(MX_LOG_WARNING, "worker %u: %s: refused %u connection(s) since the last "
				       "warning", w->index, why, w->refused_since_warning);
		w->refused_warned_ms = w->now_ms;
		w->refused_since_warning = 0;
	}
}

static void dp_accept(struct dp_worker *w, struct net_conn *nc)
{
	if (w->stopping) {
		dp_refuse(w, nc, "stopping");
		return;
	}
	unsigned max = w->t->p.max_connections;
	if (max && w->st.nconns >= max) {
		dp_refuse(w, nc, "mxgate_max_connections reached");
		return;
	}
	int family;
	uint8_t addr[16];
	struct mx_inet_addr peer = { 0 };
	uint16_t port;
	net_conn_peer(nc, &family, addr, &port);
	peer.family = family;
	memcpy(peer.bytes, addr, family == AF_INET ? 4 : 16);
	/* a service listens on its TCP port on every port address: found by the port */
	uint16_t local_port;
	net_conn_local(nc, &family, addr, &local_port);

	struct dp_conn *k = calloc(1, sizeof(*k));
	struct conn *c = k ? conn_new(&w->cw, &peer, port, NULL, local_port) : NULL;
	if (!c) {
		free(k);
		dp_refuse(w, nc, "out of memory, or no service on this port");
		return;
	}
	k->nc = nc;
	k->c = c;
	k->w = w;
	conn_set_owner(c, k);
	net_conn_set_user(nc, k);
	k->idle_at_ms = conn_deadline(c, w->now_ms, 0, false);
	dp_timer_set(w, k);
	k->next = w->conns;
	if (w->conns)
		w->conns->prev = k;
	w->conns = k;
	dp_stat_add(&w->st.nconns, 1);

	/* Talking before the greeting: bytes that came with the handshake's last ACK were
	 * sent before our 220 existed. They go to the engine before smtp_session_greet(),
	 * which is how it knows (as on the kernel transport). */
	size_t len;
	const uint8_t *p = net_conn_peek(nc, &len);
	if (len) {
		size_t used = conn_input(c, (const char *)p, len);
		net_conn_consume(nc, used);
		w->cw.counters.bytes_received += used;
		dp_after_input(w, k);
	} else if (net_conn_eof(nc)) {
		k->eof = true;
		conn_peer_closed(c);
	}
	if (!conn_closed(c) && !k->eof)
		conn_greet(c);
	dp_service(w, k);
}

static void dp_event(void *ctx, struct net_conn *nc, enum net_event ev)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_worker *w = pc->w;
	struct dp_conn *k = net_conn_user(nc);
	switch (ev) {
	case NET_EV_ACCEPT:
		dp_accept(w, nc);
		break;
	case NET_EV_READABLE:
	case NET_EV_WRITABLE:
		if (k)
			dp_service(w, k);
		break;
	case NET_EV_ABORT:
		/* the handle dies when we return */
		if (k && !k->dead) {
			if (!conn_closed(k->c) && !k->eof)
				conn_peer_closed(k->c);
			dp_forget(w, k);
		}
		break;
	case NET_EV_CONNECTED:
	case NET_EV_MAX:
		break;
	}
}

static void dp_timer_fire(void *arg, struct net_timer *tm)
{
	struct dp_worker *w = arg;
	struct dp_conn *k = (struct dp_conn *)((char *)tm - offsetof(struct dp_conn, timer));
	if (k->dead)
		return;
	if (dp_due_ms(k) > w->now_ms) {
		dp_timer_set(w, k); /* activity moved the deadline */
		return;
	}
	if (k->hold_until_ms && k->hold_until_ms <= w->now_ms) {
		k->hold_until_ms = 0;
		dp_timer_set(w, k);
		dp_service(w, k);
		return;
	}
	/* smtpd_timeout: a client that does not read our 421 does not keep the slot */
	if (!conn_closed(k->c) && !k->eof) {
		conn_timeout(k->c);
		dp_flush(w, k);
	}
	dp_close(w, k);
}

static void dp_spool_news(void *owner, void *arg)
{
	struct dp_worker *w = arg;
	struct conn *c = owner;
	struct dp_conn *k = conn_owner(c);
	if (k->dead)
		return;
	conn_spool_news(c);
	dp_ready_push(w, k);
}

static void dp_run_ready(struct dp_worker *w)
{
	struct dp_conn *tail = w->ready_tail;
	while (w->ready_head) {
		struct dp_conn *k = w->ready_head;
		bool last = k == tail;
		w->ready_head = k->ready_next;
		if (!w->ready_head)
			w->ready_tail = NULL;
		k->in_ready = false;
		k->ready_next = NULL;
		dp_service(w, k);
		if (last)
			break;
	}
}

static void dp_free_dead(struct dp_worker *w)
{
	while (w->dead) {
		struct dp_conn *k = w->dead;
		if (k->in_ready) {
			/* still linked in the ready list: leave it for the next pass */
			break;
		}
		w->dead = k->next;
		free(k);
	}
}

/* ---- the poll loop ---- */

static void dp_input(struct dp_worker *w, unsigned pi, struct rte_mbuf *m)
{
	const struct dp_port *port = &w->t->port[pi];
	unsigned flags = 0;
	if (port->rx_cksum) {
		uint64_t ol = m->ol_flags;
		if ((ol & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD)
			flags |= NET_RX_IP_CKSUM_GOOD;
		if ((ol & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
			flags |= NET_RX_L4_CKSUM_GOOD;
	}
	net_stack_input(w->stack[pi], rte_pktmbuf_mtod(m, const uint8_t *), m->data_len, flags,
			w->now_us);
}

/* Give a frame to another lcore's ring. hash.usr travels with the mbuf: 0 for a frame sent
 * to its known owner, else how many lcores have not known its flow so far. False when the
 * ring is full: the caller frees the frame (a drop, which TCP recovers from). */
static bool dp_hand_over(struct dp_worker *w, unsigned to, struct rte_mbuf *m, uint32_t asked)
{
	m->hash.usr = asked;
	if (rte_ring_mp_enqueue(w->t->workers[to].ring, m) == 0) {
		dp_stat_add(&w->st.steered_out, 1);
		return true;
	}
	dp_stat_add(&w->st.steer_drops, 1);
	return false;
}

/* hash.usr of a copy of a neighbour frame (ARP, ND) another lcore answered: learn only. */
#define DP_LEARN_ONLY UINT32_MAX

/* Every lcore keeps its own neighbour cache per port, but a NIC (or af_packet's fanout)
 * hands an ARP or ND frame to one queue: without a copy, the other lcores never learn the
 * gateway's MAC and ask for it again every second, forever. */
static void dp_share_neighbour(struct dp_worker *w, unsigned pi, const struct rte_mbuf *m)
{
	struct dpdk_transport *t = w->t;
	for (unsigned i = 0; i < t->nworkers; i++) {
		if (i == w->index)
			continue;
		struct rte_mbuf *c = rte_pktmbuf_copy(m, t->port[pi].pool, 0, UINT32_MAX);
		if (c && !dp_hand_over(w, i, c, DP_LEARN_ONLY))
			rte_pktmbuf_free(c);
	}
}

/* Poll one port's queue; returns how many frames came in. */
static unsigned dp_poll_port(struct dp_worker *w, unsigned pi)
{
	struct dpdk_transport *t = w->t;
	const struct dp_port *port = &t->port[pi];
	if (w->index >= port->nq)
		return 0; /* fewer queues than workers: others poll, the ring brings ours */
	struct rte_mbuf *pkts[DP_BURST];
	uint16_t n = rte_eth_rx_burst(port->port_id, (uint16_t)w->index, pkts, DP_BURST);
	if (n == 0)
		return 0;
	dp_stat_add(&w->st.rx_packets, n);
	struct rte_mbuf *done[DP_BURST];
	unsigned ndone = 0;
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (m->nb_segs != 1) {
			/* larger than one buffer: more than our MTU, never ours to take */
			dp_stat_add(&w->st.rx_multiseg_drop, 1);
			done[ndone++] = m;
			continue;
		}
		if (t->nworkers > 1 &&
		    net_frame_is_neighbour(rte_pktmbuf_mtod(m, const uint8_t *), m->data_len))
			dp_share_neighbour(w, pi, m);
		bool search;
		unsigned owner = dp_owner(w, pi, rte_pktmbuf_mtod(m, const uint8_t *), m->data_len,
					  &search);
		if (owner != w->index) {
			if (!dp_hand_over(w, owner, m, search ? 1 : 0))
				done[ndone++] = m;
			continue;
		}
		dp_input(w, pi, m);
		done[ndone++] = m;
	}
	rte_pktmbuf_free_bulk(done, ndone);
	return n;
}

static unsigned dp_poll_ring(struct dp_worker *w)
{
	struct rte_mbuf *pkts[DP_BURST];
	unsigned n = rte_ring_sc_dequeue_burst(w->ring, (void **)pkts, DP_BURST, NULL);
	if (n == 0)
		return 0;
	dp_stat_add(&w->st.steered_in, n);
	struct rte_mbuf *done[DP_BURST];
	unsigned ndone = 0;
	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		int16_t pi = w->t->port_index[m->port];
		if (pi < 0) {
			done[ndone++] = m;
			continue;
		}
		uint32_t asked = m->hash.usr;
		if (asked == DP_LEARN_ONLY) {
			net_stack_input(w->stack[pi], rte_pktmbuf_mtod(m, const uint8_t *),
					m->data_len, NET_RX_LEARN_ONLY, w->now_us);
			done[ndone++] = m;
			continue;
		}
		if (asked) {
			const uint8_t *f = rte_pktmbuf_mtod(m, const uint8_t *);
			if (net_stack_knows_segment(w->stack[pi], f, m->data_len)) {
				dp_reclaim(w, f, m->data_len);
			} else if (asked + 1 < w->t->nworkers) {
				/* not ours either: on to the next lcore */
				if (!dp_hand_over(w, (w->index + 1) % w->t->nworkers, m, asked + 1))
					done[ndone++] = m;
				continue;
			}
			/* every lcore was asked and none knows the flow: the stack here answers
			 * it as an unknown segment (RST), as RFC 9293 3.10.7.1 says */
		}
		dp_input(w, (unsigned)pi, m);
		done[ndone++] = m;
	}
	rte_pktmbuf_free_bulk(done, ndone);
	return n;
}

static void dp_update_clock(struct dp_worker *w, uint64_t tsc)
{
	w->now_us = (tsc - w->t->tsc_start) / w->t->tsc_per_us;
	w->now_ms = w->now_us / 1000;
}

/* Once a millisecond: tell the stacks whether their pool runs low (an eighth left:
 * pressure on; a quarter again: off), and once a second sample connection memory. */
static void dp_housekeeping(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	if (w->now_ms != w->pressure_ms) {
		w->pressure_ms = w->now_ms;
		for (unsigned pi = 0; pi < t->nports; pi++) {
			unsigned avail = rte_mempool_avail_count(t->port[pi].pool);
			unsigned size = t->port[pi].pool->size;
			bool low = w->pressure ? avail < size / 4 : avail < size / 8;
			if (low != w->pressure) {
				w->pressure = low;
				for (unsigned i = 0; i < t->nports; i++)
					net_stack_set_pressure(w->stack[i], low);
			}
		}
	}
	if (w->now_ms - w->sampled_ms >= 1000 || (!w->conns && w->st.conn_memory)) {
		w->sampled_ms = w->now_ms;
		uint64_t bytes = 0;
		for (struct dp_conn *k = w->conns; k; k = k->next)
			bytes += sizeof(*k) + net_conn_size() + conn_memory(k->c);
		__atomic_store_n(&w->st.conn_memory, bytes, __ATOMIC_RELAXED);
	}
}

static void dp_begin_stop(struct dp_worker *w)
{
	w->stopping = true;
	w->stop_deadline_ms = w->now_ms + w->t->p.shutdown_grace_ms;
	for (struct dp_conn *k = w->conns, *next; k; k = next) {
		next = k->next;
		/* never interrupts a commit: its 250 (or 451) comes first, then the 421 */
		conn_shutdown(k->c);
		k->hold_until_ms = 0;
		dp_service(w, k);
	}
}

/* One iteration: poll, steer, run timers and the spool's news, service, send. Returns
 * whether it did anything. */
static bool dp_iterate(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	unsigned work = 0;
	/* Take what is queued before any timer runs: under a backlog (a burst of thousands of
	 * closes, a flood) an ACK that arrived in time must not sit in the ring while its
	 * retransmission timer fires. Bounded, so timers and the spool still get their turn. */
	for (unsigned round = 0; round < DP_RX_ROUNDS; round++) {
		unsigned got = 0;
		for (unsigned pi = 0; pi < t->nports; pi++)
			got += dp_poll_port(w, pi);
		got += dp_poll_ring(w);
		work += got;
		if (got < DP_BURST)
			break;
	}
	for (unsigned pi = 0; pi < t->nports; pi++)
		net_stack_poll(w->stack[pi], w->now_us);
	if (spool_client_pending(w->cw.spool_client)) {
		spool_client_poll(w->cw.spool_client, dp_spool_news, w);
		work++;
	}
	work += net_timer_advance(w->wheel, (uint32_t)w->now_ms, dp_timer_fire, w);
	if (w->ready_head) {
		dp_run_ready(w);
		work++;
	}
	for (unsigned pi = 0; pi < t->nports; pi++) {
		if (w->ntx[pi]) {
			dp_tx_flush_port(w, pi);
			work++;
		}
	}
	dp_free_dead(w);
	mx_log_batch_flush(); /* this iteration's connect, queued and disconnect lines */
	/* see table changes committed since the last snapshot, between batches */
	if (work && w->now_us - w->renewed_us >= 1000) {
		w->renewed_us = w->now_us;
		conn_worker_renew_tables(&w->cw);
	}
	dp_housekeeping(w);
	return work != 0;
}

/* How long an idle poll loop sleeps, idle_us after its last work. For the first
 * DP_IDLE_SHORT_US the short sleep (a reply waiting for the spool's fdatasync must not
 * wait for us too); then a hundredth of the time idle, so the first packet after an idle
 * spell of T waits at most T/100, up to the configured maximum: an idle gateway wakes
 * about a hundred times a second instead of ten thousand. */
static uint64_t dp_idle_sleep_us(const struct dpdk_config *dc, uint64_t idle_us)
{
	uint64_t base = dc->idle_sleep_us, max = dc->idle_sleep_max_us;
	if (idle_us < DP_IDLE_SHORT_US || max <= base)
		return base;
	uint64_t us = idle_us / 100;
	return us < base ? base : us > max ? max : us;
}

/* Listen on every TCP port a published generation's services use. Ports a reload drops
 * stay open (the stack cannot unlisten yet): a connection there finds no service and is
 * refused with 421. */
static void dp_listen_reconcile(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	struct mx_generation *gens[2] = {
		atomic_load_explicit(&t->p.gens->current, memory_order_acquire),
		atomic_load_explicit(&t->p.gens->canary, memory_order_acquire),
	};
	uint64_t cur = gens[0] ? gens[0]->id : 0, can = gens[1] ? gens[1]->id : 0;
	if (cur == w->listen_cur && can == w->listen_can)
		return;
	for (int k = 0; k < 2; k++) {
		for (unsigned i = 0; gens[k] && i < gens[k]->nservices; i++) {
			const struct mx_service *svc = &gens[k]->services[i];
			for (unsigned j = 0; j < svc->nlisten; j++) {
				uint16_t port = svc->listen[j].port;
				bool have = false;
				for (unsigned l = 0; l < w->nlistening; l++)
					have |= w->listening[l] == port;
				if (have)
					continue;
				int rc = w->nlistening < DP_LISTEN_MAX ? 0 : -ENOSPC;
				for (unsigned pi = 0; rc == 0 && pi < t->nports; pi++)
					rc = net_stack_listen(w->stack[pi], port);
				if (rc < 0) {
					mx_log(MX_LOG_WARNING, "worker %u: cannot listen on TCP port "
							       "%u: %s",
					       w->index, (unsigned)port, strerror(-rc));
					continue;
				}
				w->listening[w->nlistening++] = port;
			}
		}
	}
	w->listen_cur = cur;
	w->listen_can = can;
}

static int dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;
	struct dpdk_transport *t = w->t;
	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELAXED);
	/* The idle sleep is short; the kernel's default timer slack (50 us) would stretch every
	 * one of them by half again, and a client waiting for a reply waits that much more. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	/* one write(2) per iteration for all its log lines, not one per line */
	mx_log_batch_begin();
	unsigned idle = 0;
	uint64_t last = rte_rdtsc();
	dp_update_clock(w, last);
	uint64_t busy_at_us = w->now_us;
	rte_rcu_qsbr_thread_online(t->qsbr, w->index);
	for (;;) {
		if (!w->stopping && atomic_load_explicit(&t->stop, memory_order_relaxed))
			dp_begin_stop(w);
		if (w->stopping && (!w->conns || w->now_ms >= w->stop_deadline_ms))
			break;
		if (!w->stopping)
			dp_listen_reconcile(w); /* a reload may have added services */
		bool busy = dp_iterate(w);
		/* the quiescent point: generation pointers read in this iteration are held
		 * with references now, and idle generations are let go */
		conn_worker_release_gens(&w->cw);
		rte_rcu_qsbr_quiescent(t->qsbr, w->index);
		uint64_t now = rte_rdtsc();
		if (busy)
			dp_stat_add(&w->st.busy_cycles, now - last);
		dp_stat_add(&w->st.total_cycles, now - last);
		last = now;
		dp_update_clock(w, now);
		idle = busy ? 0 : idle + 1;
		if (busy)
			busy_at_us = w->now_us;
		if (idle >= DP_IDLE_SPINS && t->dc.idle_sleep_us) {
			/* nothing to do for a while: give the core back briefly (clients, the
			 * spool writer and the kernel share it on small machines) */
			uint64_t us = dp_idle_sleep_us(&t->dc, w->now_us - busy_at_us);
			struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000 };
			/* asleep is quiescent: a reload does not wait for the sleep to end */
			rte_rcu_qsbr_thread_offline(t->qsbr, w->index);
			nanosleep(&ts, NULL);
			rte_rcu_qsbr_thread_online(t->qsbr, w->index);
			dp_stat_add(&w->st.idle_sleeps, 1);
			uint64_t after = rte_rdtsc();
			dp_stat_add(&w->st.total_cycles, after - last);
			last = after;
			dp_update_clock(w, after);
		}
	}
	rte_rcu_qsbr_thread_offline(t->qsbr, w->index);
	/* Out of grace: close whatever is left, then keep the stacks running a little so
	 * the last replies and FINs leave (and are retransmitted if lost). */
	while (w->conns) {
		struct dp_conn *k = w->conns;
		if (!conn_closed(k->c) && !k->eof)
			conn_shutdown(k->c);
		dp_flush(w, k);
		dp_close(w, k);
	}
	uint64_t until = w->now_ms + 500;
	for (;;) {
		uint32_t open = 0;
		for (unsigned pi = 0; pi < t->nports; pi++)
			open += net_stack_conn_count(w->stack[pi]);
		if (open == 0 || w->now_ms >= until)
			break;
		dp_iterate(w);
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
		dp_update_clock(w, rte_rdtsc());
	}
	dp_free_dead(w);
	mx_log_batch_end();
	return 0;
}

/* ---- setup ---- */

/* The symmetric Toeplitz key: 0x6d5a repeated hashes (src, dst) and (dst, src) alike, so
 * a flow's two directions would meet on one queue (we only receive one of them, but
 * forwarding setups and the stray table stay consistent with it). */
static uint8_t dp_rss_key[40] = {
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
	0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
};

static int dp_port_setup(struct dpdk_transport *t, unsigned pi, char *err, size_t errlen)
{
	const struct dpdk_port_config *pc = &t->dc.port[pi];
	struct dp_port *port = &t->port[pi];
	uint16_t id;
	int rc = rte_eth_dev_get_port_by_name(pc->name, &id);
	if (rc != 0)
		return mx_errf(err, errlen, -ENODEV,
			       "mxgate_dpdk_ports: no DPDK port named %s (add it to "
			       "mxgate_dpdk_eal_args with --vdev or -a)", pc->name);
	port->port_id = id;
	t->port_index[id] = (int16_t)pi;
	struct rte_eth_dev_info info;
	if ((rc = rte_eth_dev_info_get(id, &info)) != 0)
		return mx_errf(err, errlen, rc, "%s: device info: %s", pc->name, strerror(-rc));

	unsigned nq = t->nworkers;
	if (info.max_rx_queues < nq)
		nq = info.max_rx_queues;
	if (info.max_tx_queues < nq)
		nq = info.max_tx_queues;
	if (nq == 0)
		return mx_errf(err, errlen, -ENODEV, "%s: no queues", pc->name);
	port->nq = (uint16_t)nq;
	port->software = t->dc.steering == DPDK_STEERING_SOFTWARE || nq < t->nworkers;
	for (unsigned i = 0; i < RTE_MAX_LCORE; i++)
		rte_spinlock_init(&port->txlock[i]);

	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	uint64_t rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP) & info.flow_type_rss_offloads;
	bool rss = nq > 1 && rss_hf && strcmp(info.driver_name, "net_tap") != 0;
	if (rss) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_key = dp_rss_key;
		conf.rx_adv_conf.rss_conf.rss_key_len = sizeof(dp_rss_key);
		conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
	}
	uint64_t txo = info.tx_offload_capa & (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM |
					      RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
	conf.txmode.offloads = txo;
	port->offload = ((txo & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) ? NET_OFFLOAD_IPV4_CKSUM : 0) |
			((txo & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) ? NET_OFFLOAD_TCP_CKSUM : 0);
	uint64_t rxo = info.rx_offload_capa & (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM |
					      RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
	conf.rxmode.offloads = rxo;
	port->rx_cksum = rxo != 0;
	if ((rc = rte_eth_dev_configure(id, (uint16_t)nq, (uint16_t)nq, &conf)) != 0)
		return mx_errf(err, errlen, rc, "%s: configure %u queue pair(s): %s", pc->name, nq,
			       strerror(-rc));

	uint16_t mtu = pc->mtu;
	if (mtu && (rc = rte_eth_dev_set_mtu(id, mtu)) != 0)
		return mx_errf(err, errlen, rc, "%s: mtu %u: %s", pc->name, mtu, strerror(-rc));
	if (!mtu && rte_eth_dev_get_mtu(id, &mtu) != 0)
		mtu = 1500;
	if (mtu < 576)
		mtu = 576;
	if (mtu > 9000)
		mtu = 9000;
	port->mtu = mtu;

	char name[RTE_MEMPOOL_NAMESIZE];
	snprintf(name, sizeof(name), "mx_pool_%u", pi);
	uint32_t room = RTE_PKTMBUF_HEADROOM + mtu + 14 + 4;
	if (room < RTE_MBUF_DEFAULT_BUF_SIZE)
		room = RTE_MBUF_DEFAULT_BUF_SIZE;
	port->pool = rte_pktmbuf_pool_create(name, t->dc.mbufs, 256, 0, (uint16_t)room,
					     rte_eth_dev_socket_id(id));
	if (!port->pool)
		return mx_errf(err, errlen, -ENOMEM,
			       "%s: mbuf pool of %u: %s (give the EAL more memory with -m)",
			       pc->name, t->dc.mbufs, rte_strerror(rte_errno));
	uint16_t rxd = DP_RX_DESC, txd = DP_TX_DESC;
	rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxd, &txd);
	for (unsigned q = 0; q < nq; q++) {
		struct rte_eth_rxconf rxc = info.default_rxconf;
		rxc.offloads = rxo;
		struct rte_eth_txconf txc = info.default_txconf;
		txc.offloads = txo;
		if ((rc = rte_eth_rx_queue_setup(id, (uint16_t)q, rxd, rte_eth_dev_socket_id(id),
						 &rxc, port->pool)) != 0 ||
		    (rc = rte_eth_tx_queue_setup(id, (uint16_t)q, txd, rte_eth_dev_socket_id(id),
						 &txc)) != 0)
			return mx_errf(err, errlen, rc, "%s: queue %u: %s", pc->name, q,
				       strerror(-rc));
	}
	if ((rc = rte_eth_macaddr_get(id, &port->mac)) != 0)
		return mx_errf(err, errlen, rc, "%s: MAC address: %s", pc->name, strerror(-rc));
	if ((rc = rte_eth_dev_start(id)) != 0)
		return mx_errf(err, errlen, rc, "%s: start: %s", pc->name, strerror(-rc));
	/* IPv6 neighbour solicitations go to solicited-node multicast addresses */
	rte_eth_allmulticast_enable(id);

	char a4[INET_ADDRSTRLEN] = "-", a6[INET6_ADDRSTRLEN] = "-";
	if (pc->ipv4)
		inet_ntop(AF_INET, &pc->ipv4, a4, sizeof(a4));
	static const uint8_t none[16];
	if (memcmp(pc->ipv6, none, 16) != 0)
		inet_ntop(AF_INET6, pc->ipv6, a6, sizeof(a6));
	mx_log(MX_LOG_INFO,
	       "port %s (%s): %02x:%02x:%02x:%02x:%02x:%02x, %s/%u, %s, mtu %u, %u queue "
	       "pair(s), steering %s%s, checksums %s",
	       pc->name, info.driver_name, port->mac.addr_bytes[0], port->mac.addr_bytes[1],
	       port->mac.addr_bytes[2], port->mac.addr_bytes[3], port->mac.addr_bytes[4],
	       port->mac.addr_bytes[5], a4, pc->ipv4_prefix, a6, mtu, nq,
	       port->software ? "software (flow hash, rings)" : rss ? "RSS (symmetric key)"
								    : "by queue",
	       port->software && nq < t->nworkers ? ", fewer queues than workers" : "",
	       port->offload ? "offloaded" : "in software");
	return 0;
}

static int dp_worker_setup(struct dpdk_transport *t, struct dp_worker *w, char *err,
			   size_t errlen)
{
	int rc;
	if ((rc = conn_worker_init(&w->cw, &t->p, w->index, err, errlen)) < 0)
		return rc;
	w->cw.spool_client = spool_client_new(w->cw.spool, -1);
	w->wheel = malloc(sizeof(*w->wheel));
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof(name), "mx_steer_%u", w->index);
	w->ring = rte_ring_create(name, DP_RING_SIZE, (int)rte_lcore_to_socket_id(w->lcore),
				  RING_F_SC_DEQ);
	if (!w->cw.spool_client || !w->wheel || !w->ring)
		return mx_errf(err, errlen, -ENOMEM, "worker %u: out of memory", w->index);
	uint64_t tsc = rte_rdtsc();
	dp_update_clock(w, tsc);
	net_timer_wheel_init(w->wheel, (uint32_t)w->now_ms);
	if ((rc = rte_rcu_qsbr_thread_register(t->qsbr, w->index)) != 0)
		return mx_errf(err, errlen, -EINVAL, "worker %u: RCU registration failed",
			       w->index);

	for (unsigned pi = 0; pi < t->nports; pi++) {
		const struct dpdk_port_config *pc = &t->dc.port[pi];
		const struct dp_port *port = &t->port[pi];
		struct net_config nc = {
			.ipv4 = pc->ipv4,
			.ipv4_prefix = pc->ipv4_prefix,
			.ipv4_gateway = pc->ipv4_gateway,
			.mtu = port->mtu,
			.offload = port->offload,
			.max_conns = t->p.max_connections ? t->p.max_connections + 1024 : 0,
		};
		memcpy(nc.mac, port->mac.addr_bytes, 6);
		memcpy(nc.ipv6, pc->ipv6, 16);
		memcpy(nc.ipv6_gateway, pc->ipv6_gateway, 16);
		if (getrandom(nc.secret, sizeof(nc.secret), 0) != (ssize_t)sizeof(nc.secret))
			return mx_errf(err, errlen, -EIO, "getrandom: %s", strerror(errno));
		w->ctx[pi] = (struct dp_port_ctx){ .w = w, .port = pi };
		struct net_ops ops = { .ctx = &w->ctx[pi], .tx_alloc = dp_tx_alloc,
				       .tx_send = dp_tx_send, .event = dp_event };
		w->stack[pi] = net_stack_create(&nc, &ops, w->now_us);
		if (!w->stack[pi])
			return mx_errf(err, errlen, -errno, "worker %u: TCP/IP stack for %s: %s",
				       w->index, pc->name, strerror(errno));
		if (t->dc.fault_on) {
			struct net_fault_config f = t->dc.fault;
			f.seed += w->index * 1000003u + pi; /* each stack its own sequence */
			if ((rc = net_stack_set_fault(w->stack[pi], &f)) < 0)
				return mx_errf(err, errlen, rc, "fault injection: %s", strerror(-rc));
		}
	}
	dp_listen_reconcile(w);
	return w->nlistening ? 0 : mx_errf(err, errlen, -EINVAL, "worker %u: no TCP port to "
								 "listen on", w->index);
}

int dpdk_transport_create(struct dpdk_transport **out, const struct transport_params *p,
			  const struct dpdk_config *dc, unsigned *workers, char *err,
			  size_t errlen)
{
	int rc;
	if (dp_eal_initialised)
		return mx_errf(err, errlen, -EALREADY, "the DPDK EAL is already initialised");
	struct dpdk_transport *t = calloc(1, sizeof(*t));
	if (!t)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	t->p = *p;
	t->dc = *dc;
	memset(t->port_index, 0xff, sizeof(t->port_index));

	/* rte_eal_init() may permute argv: give it a copy */
	char *argv[DPDK_MAX_EAL_ARGS + 2];
	memcpy(argv, t->dc.eal_argv, sizeof(argv));
	/* rte_eal_init() pins this thread to the main lcore's CPU set: threads created
	 * later by main (none on the data path) inherit it. */
	rc = rte_eal_init(t->dc.eal_argc, argv);
	if (rc < 0) {
		rc = mx_errf(err, errlen, -(rte_errno ? rte_errno : EINVAL),
			     "rte_eal_init failed (%s); check mxgate_dpdk_eal_args",
			     rte_strerror(rte_errno));
		free(t);
		return rc;
	}
	dp_eal_initialised = true;
	t->tsc_hz = rte_get_tsc_hz();
	t->tsc_per_us = t->tsc_hz / 1000000u ? t->tsc_hz / 1000000u : 1;
	t->tsc_start = rte_rdtsc();

	t->nworkers = rte_lcore_count() - 1;
	if (t->nworkers == 0) {
		rc = mx_errf(err, errlen, -EINVAL,
			     "mxgate_dpdk_eal_args: no worker lcore (the main lcore only manages; "
			     "give at least two, e.g. --lcores=0@0,1@1)");
		goto fail;
	}
	if (t->nworkers > QUEUE_ID_MAX_WORKERS) {
		rc = mx_errf(err, errlen, -EINVAL, "%u worker lcores; at most %u", t->nworkers,
			     QUEUE_ID_MAX_WORKERS);
		goto fail;
	}
	if (p->boot->workers && p->boot->workers != t->nworkers) {
		rc = mx_errf(err, errlen, -EINVAL,
			     "mxgate_workers = %u but mxgate_dpdk_eal_args gives %u worker "
			     "lcore(s); set mxgate_workers = 0 or match them",
			     p->boot->workers, t->nworkers);
		goto fail;
	}
	size_t qsz = rte_rcu_qsbr_get_memsize(t->nworkers);
	t->qsbr = aligned_alloc(RTE_CACHE_LINE_SIZE,
				(qsz + RTE_CACHE_LINE_SIZE - 1) / RTE_CACHE_LINE_SIZE *
					RTE_CACHE_LINE_SIZE);
	if (!t->qsbr || rte_rcu_qsbr_init(t->qsbr, t->nworkers) != 0) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory (RCU)");
		goto fail;
	}
	t->workers = calloc(t->nworkers, sizeof(*t->workers));
	t->owner = calloc(1u << DP_OWNER_BITS, sizeof(*t->owner));
	if (!t->workers || !t->owner ||
	    getrandom(t->flow_key, sizeof(t->flow_key), 0) != (ssize_t)sizeof(t->flow_key)) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	unsigned lcore, i = 0;
	RTE_LCORE_FOREACH_WORKER(lcore) {
		struct dp_worker *w = &t->workers[i];
		w->t = t;
		w->index = i++;
		w->lcore = lcore;
	}
	t->nports = dc->nports;
	for (unsigned pi = 0; pi < t->nports; pi++)
		if ((rc = dp_port_setup(t, pi, err, errlen)) < 0)
			goto fail;
	t->ports_started = true;
	for (i = 0; i < t->nworkers; i++)
		if ((rc = dp_worker_setup(t, &t->workers[i], err, errlen)) < 0)
			goto fail;
	*workers = t->nworkers;
	*out = t;
	return 0;
fail:
	dpdk_transport_destroy(t);
	return rc;
}

int dpdk_transport_start(struct dpdk_transport *t)
{
	for (unsigned i = 0; i < t->nworkers; i++) {
		struct dp_worker *w = &t->workers[i];
		int rc = rte_eal_remote_launch(dp_worker_main, w, w->lcore);
		if (rc != 0) {
			dpdk_transport_stop(t);
			dpdk_transport_join(t);
			return rc < 0 ? rc : -EBUSY;
		}
		w->launched = true;
	}
	return 0;
}

void dpdk_transport_stop(struct dpdk_transport *t)
{
	atomic_store(&t->stop, true);
}

void dpdk_transport_join(struct dpdk_transport *t)
{
	for (unsigned i = 0; i < t->nworkers; i++) {
		struct dp_worker *w = &t->workers[i];
		if (w->launched) {
			rte_eal_wait_lcore(w->lcore);
			w->launched = false;
		}
	}
}

bool dpdk_transport_failed(const struct dpdk_transport *t)
{
	return atomic_load(&t->failed);
}

void dpdk_transport_counters(const struct dpdk_transport *t, struct mx_counters *sum,
			     uint64_t *open_connections)
{
	memset(sum, 0, sizeof(*sum));
	uint64_t open = 0;
	for (unsigned i = 0; i < t->nworkers; i++) {
		conn_worker_counters_add(sum, &t->workers[i].cw);
		open += dp_stat_get(&t->workers[i].st.nconns);
	}
	if (open_connections)
		*open_connections = open;
}

/* CPU time the kernel accounted to a thread, in ns (schedstat's first field): unlike TSC
 * cycles it excludes time the thread was preempted, which matters when lcores share
 * cores with other work. 0 when unknown. */
static uint64_t dp_thread_cpu_ns(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
	FILE *f = tid > 0 ? fopen(path, "re") : NULL;
	unsigned long long ns = 0;
	if (f) {
		if (fscanf(f, "%llu", &ns) != 1)
			ns = 0;
		fclose(f);
	}
	return ns;
}

void dpdk_transport_log_statistics(const struct dpdk_transport *t, const char *when)
{
	struct dp_stats s = { 0 };
	struct net_counters nc = { 0 };
	uint64_t conns_open = 0, buffers = 0, time_wait = 0, cpu_ns = 0;
	for (unsigned i = 0; i < t->nworkers; i++) {
		const struct dp_worker *w = &t->workers[i];
		s.rx_packets += dp_stat_get(&w->st.rx_packets);
		s.tx_packets += dp_stat_get(&w->st.tx_packets);
		s.tx_dropped += dp_stat_get(&w->st.tx_dropped);
		s.rx_multiseg_drop += dp_stat_get(&w->st.rx_multiseg_drop);
		s.steered_out += dp_stat_get(&w->st.steered_out);
		s.steer_drops += dp_stat_get(&w->st.steer_drops);
		s.busy_cycles += dp_stat_get(&w->st.busy_cycles);
		s.total_cycles += dp_stat_get(&w->st.total_cycles);
		s.idle_sleeps += dp_stat_get(&w->st.idle_sleeps);
		s.conn_memory += dp_stat_get(&w->st.conn_memory);
		s.nconns += dp_stat_get(&w->st.nconns);
		cpu_ns += dp_thread_cpu_ns(__atomic_load_n(&w->tid, __ATOMIC_RELAXED));
		for (unsigned pi = 0; pi < t->nports; pi++) {
			if (!w->stack[pi])
				continue;
			/* the stacks' counters are plain integers one lcore writes; a
			 * statistics line tolerates a torn read of a counter being bumped */
			const struct net_counters *c = net_stack_counters(w->stack[pi]);
			const uint64_t *src = (const uint64_t *)c;
			uint64_t *dst = (uint64_t *)&nc;
			for (size_t k = 0; k < sizeof(nc) / sizeof(uint64_t); k++)
				dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
			conns_open += net_stack_conn_count(w->stack[pi]);
			buffers += net_stack_buffers_in_use(w->stack[pi]);
			time_wait += net_stack_time_wait_count(w->stack[pi]);
		}
	}
	uint64_t in_use = 0, total = 0, missed = 0;
	for (unsigned pi = 0; pi < t->nports; pi++) {
		if (t->port[pi].pool) {
			in_use += rte_mempool_in_use_count(t->port[pi].pool);
			total += t->port[pi].pool->size;
		}
		struct rte_eth_stats es;
		if (t->ports_started && rte_eth_stats_get(t->port[pi].port_id, &es) == 0)
			missed += es.imissed + es.rx_nombuf;
	}
	struct mx_counters sum;
	dpdk_transport_counters(t, &sum, NULL);
	uint64_t msgs = sum.messages_accepted, sess = sum.connections_accepted;
	char line[2048];
	size_t n = (size_t)snprintf(
		line, sizeof(line),
		"dpdk statistics (%s): workers=%u rx_packets=%" PRIu64 " tx_packets=%" PRIu64
		" tx_dropped=%" PRIu64 " rx_missed=%" PRIu64 " rx_multiseg_drop=%" PRIu64
		" steered=%" PRIu64 " steer_drops=%" PRIu64 " mbufs_in_use=%" PRIu64
		" mbufs_total=%" PRIu64 " tsc_hz=%" PRIu64 " busy_cycles=%" PRIu64
		" total_cycles=%" PRIu64 " idle_sleeps=%" PRIu64 " cycles_per_packet=%" PRIu64
		" cycles_per_message=%" PRIu64 " cycles_per_session=%" PRIu64
		" worker_cpu_ns=%" PRIu64 " cpu_ns_per_message=%" PRIu64 " open_connections=%" PRIu64 " stack_connections=%" PRIu64
		" time_wait=%" PRIu64 " stack_buffers=%" PRIu64 " conn_memory_bytes=%" PRIu64
		" conn_bytes_each=%" PRIu64 " tcb_bytes=%zu",
		when, t->nworkers, s.rx_packets, s.tx_packets, s.tx_dropped, missed,
		s.rx_multiseg_drop, s.steered_out, s.steer_drops, in_use, total, t->tsc_hz,
		s.busy_cycles, s.total_cycles, s.idle_sleeps,
		s.rx_packets ? s.busy_cycles / s.rx_packets : 0, msgs ? s.busy_cycles / msgs : 0,
		sess ? s.busy_cycles / sess : 0, cpu_ns, msgs ? cpu_ns / msgs : 0, s.nconns, conns_open, time_wait, buffers,
		s.conn_memory, s.nconns ? s.conn_memory / s.nconns : 0, net_conn_size());
#define DP_NC(name)                                                                        \
	if (n < sizeof(line))                                                              \
		n += (size_t)snprintf(line + n, sizeof(line) - n, " " #name "=%" PRIu64, nc.name);
	DP_NC(rx_bad_eth) DP_NC(rx_bad_ip) DP_NC(rx_bad_csum) DP_NC(rx_ip_fragments)
	DP_NC(rx_bad_tcp) DP_NC(rx_proto_unknown) DP_NC(rx_icmp) DP_NC(rx_arp) DP_NC(rx_ipv6)
	DP_NC(tx_alloc_fail) DP_NC(tcp_syn) DP_NC(tcp_syn_cookie_sent) DP_NC(tcp_syn_cookie_ok)
	DP_NC(tcp_syn_cookie_bad) DP_NC(tcp_accept) DP_NC(tcp_rst_sent) DP_NC(tcp_rst_limited)
	DP_NC(tcp_rst_rcvd) DP_NC(tcp_challenge_ack) DP_NC(tcp_paws_drop) DP_NC(tcp_ooo_segs)
	DP_NC(tcp_dup_segs) DP_NC(tcp_retransmits) DP_NC(tcp_rto) DP_NC(tcp_fast_retransmit)
	DP_NC(tcp_timeouts) DP_NC(tcp_conn_full) DP_NC(tcp_buf_alloc_fail) DP_NC(fault_drop)
	DP_NC(fault_dup) DP_NC(fault_delay)
#undef DP_NC
	mx_log(MX_LOG_INFO, "%s", line);
}

void dpdk_transport_destroy(struct dpdk_transport *t)
{
	if (!t)
		return;
	for (unsigned i = 0; t->workers && i < t->nworkers; i++) {
		struct dp_worker *w = &t->workers[i];
		for (unsigned pi = 0; pi < DPDK_MAX_PORTS; pi++) {
			if (w->stack[pi])
				net_stack_destroy(w->stack[pi]);
			if (w->ntx[pi])
				rte_pktmbuf_free_bulk(w->tx[pi], w->ntx[pi]);
		}
		if (w->ring) {
			struct rte_mbuf *m;
			while (rte_ring_dequeue(w->ring, (void **)&m) == 0)
				rte_pktmbuf_free(m);
			rte_ring_free(w->ring);
		}
		free(w->wheel);
		conn_worker_fini(&w->cw);
	}
	for (unsigned pi = 0; pi < t->nports; pi++) {
		if (t->port_index[t->port[pi].port_id] == (int16_t)pi) {
			rte_eth_dev_stop(t->port[pi].port_id);
			rte_eth_dev_close(t->port[pi].port_id);
		}
		rte_mempool_free(t->port[pi].pool);
	}
	free(t->owner);
	free(t->workers);
	free(t);
	if (dp_eal_initialised)
		rte_eal_cleanup();
}

const char *dpdk_transport_version(void)
{
	return rte_version();
}

/* ---- the transport ops (dataplane/transport.h) ---- */

static int dp_ops_check(const struct mx_config *cfg, char *err, size_t errlen)
{
	struct dpdk_config *dc = malloc(sizeof(*dc));
	if (!dc)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	int rc = dpdk_config_parse(cfg, getenv("MXGATE_NET_FAULT"), dc, err, errlen);
	free(dc);
	return rc;
}

static int dp_ops_create(void **impl, const struct transport_params *p, char *err,
			 size_t errlen)
{
	/* the environment's fault specification wins over the configuration's (tests) */
	struct dpdk_config *dc = malloc(sizeof(*dc));
	if (!dc)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	int rc = dpdk_config_parse(p->boot, getenv("MXGATE_NET_FAULT"), dc, err, errlen);
	unsigned workers;
	if (rc == 0)
		rc = dpdk_transport_create((struct dpdk_transport **)impl, p, dc, &workers, err,
					   errlen);
	free(dc);
	return rc;
}

static int dp_ops_start(void *impl)
{
	return dpdk_transport_start(impl);
}

static void dp_ops_stop(void *impl)
{
	dpdk_transport_stop(impl);
}

static void dp_ops_join(void *impl)
{
	dpdk_transport_join(impl);
}

static bool dp_ops_failed(const void *impl)
{
	return dpdk_transport_failed(impl);
}

static void dp_ops_counters(const void *impl, struct mx_counters *sum, uint64_t *open)
{
	dpdk_transport_counters(impl, sum, open);
}

static void dp_ops_log_statistics(const void *impl, const char *when)
{
	dpdk_transport_log_statistics(impl, when);
}

static void dp_ops_describe(const void *impl, char *buf, size_t len)
{
	const struct dpdk_transport *t = impl;
	size_t n = (size_t)snprintf(buf, len,
				    "dpdk (%s), %u worker lcore(s), %u port(s), steering %s, "
				    "SMTP on TCP port(s)",
				    rte_version(), t->nworkers, t->nports,
				    dpdk_steering_name(t->dc.steering));
	const struct dp_worker *w0 = &t->workers[0];
	for (unsigned i = 0; i < w0->nlistening && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s %u", i ? "," : "",
				      (unsigned)w0->listening[i]);
	if (t->dc.fault_on && n < len)
		snprintf(buf + n, len - n, ", FAULT INJECTION %s", t->dc.fault_spec);
}

static unsigned dp_ops_worker_limit(const struct mx_config *boot, unsigned workers)
{
	(void)boot;
	return workers ? workers : RTE_MAX_LCORE;
}

static void dp_ops_synchronize(void *impl)
{
	struct dpdk_transport *t = impl;
	rte_rcu_qsbr_synchronize(t->qsbr, RTE_QSBR_THRID_INVALID);
}

/* The stacks listen on at most DP_LISTEN_MAX ports, counting those the published
 * generations use (the management thread publishes, and calls this). */
static int dp_ops_check_services(void *impl, const struct mx_generation *g, char *err,
				 size_t errlen)
{
	const struct dpdk_transport *t = impl;
	const struct mx_generation *gens[3] = { g, atomic_load(&t->p.gens->current),
						atomic_load(&t->p.gens->canary) };
	uint16_t ports[DP_LISTEN_MAX];
	unsigned n = 0;
	for (int k = 0; k < 3; k++) {
		for (unsigned i = 0; gens[k] && i < gens[k]->nservices; i++) {
			const struct mx_service *svc = &gens[k]->services[i];
			for (unsigned j = 0; j < svc->nlisten; j++) {
				bool have = false;
				for (unsigned l = 0; l < n; l++)
					have |= ports[l] == svc->listen[j].port;
				if (have)
					continue;
				if (n == DP_LISTEN_MAX)
					return mx_errf(err, errlen, -ENOSPC,
						       "service %s: more than %d TCP ports on the dpdk "
						       "transport",
						       svc->name, DP_LISTEN_MAX);
				ports[n++] = svc->listen[j].port;
			}
		}
	}
	return 0;
}

static void dp_ops_destroy(void *impl)
{
	dpdk_transport_destroy(impl);
}

const struct transport_ops dpdk_transport_ops = {
	.name = "dpdk",
	.check = dp_ops_check,
	.worker_limit = dp_ops_worker_limit,
	.create = dp_ops_create,
	.start = dp_ops_start,
	.stop = dp_ops_stop,
	.join = dp_ops_join,
	.failed = dp_ops_failed,
	.counters = dp_ops_counters,
	.log_statistics = dp_ops_log_statistics,
	.synchronize = dp_ops_synchronize,
	.check_services = dp_ops_check_services,
	.describe = dp_ops_describe,
	.destroy = dp_ops_destroy,
};
