/* What the stack and an mbuf tell each other, for every DPDK program on mxgate's stack (the
 * gateway's workers, perf/loadgen): a buffer for a frame the stack writes, the receive
 * checksum verdicts a PMD reports as the stack's NET_RX_* flags, and a frame the stack wrote
 * made ready to send with the offloads it asked for. */
#ifndef MXGATE_DATAPLANE_DPDK_MBUF_H
#define MXGATE_DATAPLANE_DPDK_MBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rte_mbuf.h>

#include "dataplane/net/net_stack.h"

/* An mbuf from pool for a frame of up to cap bytes, *data where the stack writes it; NULL
 * when the pool is empty (or its buffers are too small). */
static inline struct rte_mbuf *dpdk_mbuf_tx_alloc(struct rte_mempool *pool, uint8_t **data,
						  size_t cap)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	if (!m)
		return NULL;
	if (cap > rte_pktmbuf_tailroom(m)) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	*data = rte_pktmbuf_mtod(m, uint8_t *);
	return m;
}

/* The NET_RX_* flags for a received frame; none unless the port reports checksum status
 * (rx_cksum). */
static inline unsigned dpdk_mbuf_rx_flags(const struct rte_mbuf *m, bool rx_cksum)
{
	unsigned flags = 0;
	if (rx_cksum) {
		uint64_t ol = m->ol_flags;
		if ((ol & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_GOOD)
			flags |= NET_RX_IP_CKSUM_GOOD;
		if ((ol & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
			flags |= NET_RX_L4_CKSUM_GOOD;
	}
	return flags;
}

/* A frame of len bytes the stack wrote into m, with the checksums meta leaves to the NIC
 * (the frame's EtherType says IPv4 or IPv6). */
static inline void dpdk_mbuf_tx_prepare(struct rte_mbuf *m, size_t len,
					const struct net_tx_meta *meta)
{
	m->data_len = (uint16_t)len;
	m->pkt_len = (uint32_t)len;
	m->ol_flags = 0;
	if (!meta->offload)
		return;
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

#endif
