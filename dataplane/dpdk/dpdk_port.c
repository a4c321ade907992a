/* A port of the dpdk transport: its queues (one pair per worker where it has them), RSS,
 * checksum offloads, MTU, mbuf pool and MAC (dp_port_setup); and the stacks' transmit side,
 * frames batched per worker and port and sent in bursts (dp_tx_*). */
#include "dataplane/dpdk/dpdk_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>

#include "mgmt/log.h"
#include "mxgate/errf.h"

#define DP_RX_DESC 1024
#define DP_TX_DESC 1024
#define DP_TX_RETRIES 4

/* ---- the stack's ops ---- */

void *dp_tx_alloc(void *ctx, uint8_t **data, size_t cap)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_port *port = &pc->w->t->port[pc->port];
	return dpdk_mbuf_tx_alloc(port->pool, data, cap);
}

void dp_tx_flush_port(struct dp_worker *w, unsigned pi)
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

void dp_tx_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_worker *w = pc->w;
	struct rte_mbuf *m = frame;
	if (len == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	dpdk_mbuf_tx_prepare(m, len, meta);
	w->tx[pc->port][w->ntx[pc->port]++] = m;
	if (w->ntx[pc->port] == DP_TX_BATCH)
		dp_tx_flush_port(w, pc->port);
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

int dp_port_setup(struct dpdk_transport *t, unsigned pi, char *err, size_t errlen)
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
