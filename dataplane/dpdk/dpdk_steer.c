/* What a worker receives and which lcore handles it: each frame polled from the worker's
 * queues goes to the stack of the lcore that owns its flow, here or over that lcore's ring
 * (dpdk_transport.h describes the steering modes); neighbour frames are copied to every
 * lcore. */
#include "dataplane/dpdk/dpdk_internal.h"

#include "dataplane/net/net_flow.h"

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

/* ---- receiving ---- */

static void dp_input(struct dp_worker *w, unsigned pi, struct rte_mbuf *m)
{
	unsigned flags = dpdk_mbuf_rx_flags(m, w->t->port[pi].rx_cksum);
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
unsigned dp_poll_port(struct dp_worker *w, unsigned pi)
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

unsigned dp_poll_ring(struct dp_worker *w)
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
