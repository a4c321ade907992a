/* Inside the dpdk transport: the state its files share. dpdk_transport.h has the whole
 * design (layout, steering, buffers, cycles); the code is split along its concerns:
 *   dpdk_transport.c  the transport's life: EAL, workers' state, start/stop/join/destroy,
 *                     the transport ops (dataplane/transport.h)
 *   dpdk_port.c       a port: queues, pool, offloads, MAC; the stacks' transmit side
 *   dpdk_steer.c      what a worker receives (its queues and its ring) and which lcore
 *                     handles each frame: flow owners, hand-over, neighbour-frame copies
 *   dpdk_poll.c       a worker's poll loop, and the SMTP connections it serves (conn_*)
 *   dpdk_stats.c      the counters and the statistics line */
#ifndef MXGATE_DATAPLANE_DPDK_DPDK_INTERNAL_H
#define MXGATE_DATAPLANE_DPDK_DPDK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_spinlock.h>

#include "dataplane/dpdk/dpdk_mbuf.h"
#include "dataplane/dpdk/dpdk_transport.h"
#include "dataplane/net/net_stack.h"
#include "dataplane/net/net_timer.h"
#include "dataplane/session/conn.h"
#include "dataplane/session/conn_screen.h"

#define DP_BURST 32
#define DP_TX_BATCH 64
#define DP_OWNER_BITS 20  /* flow-owner table: 2^20 slots of 8 bytes */
#define DP_LISTEN_MAX 8 /* TCP ports a stack listens on (net_stack_listen()'s bound) */

struct dp_worker;

/* The stack's ops context: one per (worker, port), so tx_alloc/tx_send know the pool and
 * queue and the event callback knows the port. */
struct dp_port_ctx {
	struct dp_worker *w;
	unsigned port; /* index into t->port[] */
};

/* One per connection (96 bytes, an allocator size class; a worker may hold a million). */
struct dp_conn {
	struct net_conn *nc;
	struct conn *c;
	/* the screen that holds the connection until it passes (c is NULL meanwhile) */
	struct conn_screen *sc;
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
	uint64_t iterations, busy_iterations; /* poll loop iterations, and those that worked */
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
	/* the walk adding up the connections' memory (dp_housekeeping()): the next one
	 * (NULL: the list's head), how many are left of this second's sample and how many
	 * it has, and their sum so far */
	struct dp_conn *mem_cursor;
	/* the most connections open since the allocator last gave memory back, and when;
	 * the connections accepted then, the count last seen and when it last changed */
	uint64_t conn_peak, trimmed_ms;
	uint64_t trim_acc, acc_seen, acc_changed_ms;
	uint32_t mem_left, mem_walked;
	uint64_t mem_sum;
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
	/* this transport's groups in the metrics registry (dpdk_metrics.c); 0: none */
	int metrics_handle[3];
};

static inline void dp_stat_add(uint64_t *field, uint64_t n)
{
	__atomic_store_n(field, *field + n, __ATOMIC_RELAXED);
}

static inline uint64_t dp_stat_get(const uint64_t *field)
{
	return __atomic_load_n(field, __ATOMIC_RELAXED);
}

/* dpdk_metrics.c: the ports', lcores' and stacks' families in the registry
 * (transport_params.metrics) and the telemetry commands that read it. 0 or a negative
 * errno; unregister is idempotent. */
int dp_metrics_register(struct dpdk_transport *t);
void dp_metrics_unregister(struct dpdk_transport *t);

/* dpdk_port.c */
int dp_port_setup(struct dpdk_transport *t, unsigned pi, char *err, size_t errlen);
/* The stacks' net_ops (ctx: the worker's struct dp_port_ctx for the port). */
void *dp_tx_alloc(void *ctx, uint8_t **data, size_t cap);
void dp_tx_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta);
/* Send what the worker queued for port pi. */
void dp_tx_flush_port(struct dp_worker *w, unsigned pi);

/* dpdk_steer.c: poll one port's queue, or the worker's ring; returns how many frames came
 * in. */
unsigned dp_poll_port(struct dp_worker *w, unsigned pi);
unsigned dp_poll_ring(struct dp_worker *w);

/* dpdk_poll.c */
/* The stacks' event callback (net_ops.event). */
void dp_event(void *ctx, struct net_conn *nc, enum net_event ev);
void dp_update_clock(struct dp_worker *w, uint64_t tsc);
void dp_listen_reconcile(struct dp_worker *w);
/* A worker lcore's main function (rte_eal_remote_launch): arg is its struct dp_worker. */
int dp_worker_main(void *arg);

#endif
