/* mxgate-loadgen's DPDK side: EAL, one port (its pool, one queue pair), the stack's
 * transmit ops, and the poll loop on the main lcore: receive a burst into the stack, run
 * its timers and the sessions' (loadgen_tick), send what was queued; a progress line
 * every so often; the report at the end.
 *
 *   mxgate-loadgen [EAL options] -- [loadgen options]     (--help for the options)
 *
 * Signals: SIGUSR2 releases idle sessions (QUIT); SIGINT/SIGTERM stop opening sessions
 * and release idle ones (a second one ends the run at once, with the report). */
#include "loadgen.h"
#include "loadgen_mix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include "dataplane/dpdk/dpdk_mbuf.h"
#include "dataplane/net/net_stack.h"

#define LG_BURST 32
#define LG_RX_BURSTS 8
#define LG_TX_BATCH 64
#define LG_IDLE_SPINS 2000
#define LG_IDLE_SLEEP_US 20

struct loadgen_port {
	uint16_t id;
	struct rte_mempool *pool;
	struct rte_mbuf *tx[LG_TX_BATCH];
	uint16_t ntx;
	uint64_t rx, tx_sent, tx_dropped;
	unsigned offload; /* enum net_offload */
	bool rx_cksum;
	struct rte_eth_dev_info info;
};

static volatile sig_atomic_t lg_release_req, lg_stop_req;

static void lg_on_signal(int sig)
{
	if (sig == SIGUSR2) {
		lg_release_req = 1;
		return;
	}
	lg_stop_req++;
}

/* ---- the stack's transmit ops ---- */

static void lg_tx_flush(struct loadgen_port *p)
{
	uint16_t sent = 0;
	for (int tries = 0; tries < 4 && sent < p->ntx; tries++)
		sent += rte_eth_tx_burst(p->id, 0, p->tx + sent, (uint16_t)(p->ntx - sent));
	if (sent < p->ntx) {
		/* the ring is full: a drop, as on a wire; TCP retransmits */
		rte_pktmbuf_free_bulk(p->tx + sent, p->ntx - sent);
		p->tx_dropped += p->ntx - sent;
	}
	p->tx_sent += sent;
	p->ntx = 0;
}

static void *lg_tx_alloc(void *ctx, uint8_t **data, size_t cap)
{
	struct loadgen_port *p = ((void **)ctx)[0];
	return dpdk_mbuf_tx_alloc(p->pool, data, cap);
}

static void lg_tx_send(void *ctx, void *frame, size_t len, const struct net_tx_meta *meta)
{
	struct loadgen_port *p = ((void **)ctx)[0];
	struct rte_mbuf *m = frame;
	if (len == 0) {
		rte_pktmbuf_free(m);
		return;
	}
	dpdk_mbuf_tx_prepare(m, len, meta);
	p->tx[p->ntx++] = m;
	if (p->ntx == LG_TX_BATCH)
		lg_tx_flush(p);
}

/* Give received frames to the stack and free them (the stack copies what it keeps). */
static void lg_input(struct net_stack *s, const struct loadgen_port *p, struct rte_mbuf **rx,
		     uint16_t n, uint64_t now_us, struct loadgen_synflood *sf)
{
	for (uint16_t i = 0; i < n; i++) {
		unsigned flags = dpdk_mbuf_rx_flags(rx[i], p->rx_cksum);
		/* one segment always (the pool's buffers hold a 1500-byte frame) */
		if (rx[i]->nb_segs == 1) {
			if (sf) /* the server's MAC, and its answers to the flood */
				loadgen_synflood_observe(sf, rte_pktmbuf_mtod(rx[i], const uint8_t *),
							 rx[i]->data_len);
			net_stack_input(s, rte_pktmbuf_mtod(rx[i], const uint8_t *),
					rx[i]->data_len, flags, now_us);
		}
		rte_pktmbuf_free(rx[i]);
	}
}

static void lg_event(void *ctx, struct net_conn *c, enum net_event ev)
{
	loadgen_mix_event(((void **)ctx)[2], ((void **)ctx)[1], c, (int)ev);
}

/* ---- the port ---- */

static int lg_port_setup(struct loadgen_port *p, const struct loadgen_config *cfg)
{
	int rc;
	if (cfg->port[0]) {
		if ((rc = rte_eth_dev_get_port_by_name(cfg->port, &p->id)) != 0) {
			fprintf(stderr, "loadgen: no DPDK port named %s (give it with --vdev or -a)\n",
				cfg->port);
			return -ENODEV;
		}
	} else {
		uint16_t id;
		bool found = false;
		RTE_ETH_FOREACH_DEV(id)
		{
			p->id = id;
			found = true;
			break;
		}
		if (!found) {
			fprintf(stderr, "loadgen: no DPDK port (give one with --vdev or -a)\n");
			return -ENODEV;
		}
	}
	if ((rc = rte_eth_dev_info_get(p->id, &p->info)) != 0)
		return rc;
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof(conf));
	uint64_t txo = p->info.tx_offload_capa &
		       (RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
	conf.txmode.offloads = txo;
	p->offload = ((txo & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM) ? NET_OFFLOAD_IPV4_CKSUM : 0) |
		     ((txo & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) ? NET_OFFLOAD_TCP_CKSUM : 0);
	uint64_t rxo = p->info.rx_offload_capa &
		       (RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
	conf.rxmode.offloads = rxo;
	p->rx_cksum = rxo != 0;
	if ((rc = rte_eth_dev_configure(p->id, 1, 1, &conf)) != 0) {
		fprintf(stderr, "loadgen: configure port: %s\n", strerror(-rc));
		return rc;
	}
	p->pool = rte_pktmbuf_pool_create("loadgen_pool", cfg->mbufs, 256, 0,
					  RTE_MBUF_DEFAULT_BUF_SIZE, rte_eth_dev_socket_id(p->id));
	if (!p->pool) {
		fprintf(stderr, "loadgen: mbuf pool of %u: %s (give the EAL more memory with -m)\n",
			cfg->mbufs, rte_strerror(rte_errno));
		return -ENOMEM;
	}
	uint16_t rxd = 1024, txd = 1024;
	rte_eth_dev_adjust_nb_rx_tx_desc(p->id, &rxd, &txd);
	struct rte_eth_rxconf rxc = p->info.default_rxconf;
	rxc.offloads = rxo;
	struct rte_eth_txconf txc = p->info.default_txconf;
	txc.offloads = txo;
	if ((rc = rte_eth_rx_queue_setup(p->id, 0, rxd, rte_eth_dev_socket_id(p->id), &rxc,
					 p->pool)) != 0 ||
	    (rc = rte_eth_tx_queue_setup(p->id, 0, txd, rte_eth_dev_socket_id(p->id), &txc)) !=
		    0) {
		fprintf(stderr, "loadgen: queue setup: %s\n", strerror(-rc));
		return rc;
	}
	if ((rc = rte_eth_dev_start(p->id)) != 0) {
		fprintf(stderr, "loadgen: start port: %s\n", strerror(-rc));
		return rc;
	}
	return 0;
}

/* Wait (up to timeout) for the link: memif's comes up once both ends are connected. */
static void lg_wait_link(const struct loadgen_port *p, double timeout_s)
{
	uint64_t hz = rte_get_tsc_hz(), end = rte_rdtsc() + (uint64_t)(timeout_s * (double)hz);
	while (rte_rdtsc() < end && !lg_stop_req) {
		struct rte_eth_link link;
		if (rte_eth_link_get_nowait(p->id, &link) == 0 && link.link_status)
			return;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	fprintf(stderr, "loadgen: link still down after %.1f s; going on\n", timeout_s);
}

static void lg_progress(const struct loadgen_stats *st, const struct loadgen *lg, double s,
			uint64_t last_msgs, uint64_t last_sess, double dt)
{
	fprintf(stderr,
		"loadgen: %.1f s: %u open, %llu greeted, %llu done, %llu accepted (%.0f msg/s, "
		"%.0f sess/s), %llu rejected, %llu errors%s\n",
		s, loadgen_active(lg), (unsigned long long)st->sessions_greeted,
		(unsigned long long)st->sessions_done, (unsigned long long)st->messages_accepted,
		dt > 0 ? (double)(st->messages_accepted - last_msgs) / dt : 0.0,
		dt > 0 ? (double)(st->sessions_done - last_sess) / dt : 0.0,
		(unsigned long long)st->sessions_rejected, (unsigned long long)st->errors_total, st->idle_held ? " (idle held)" : "");
}

int main(int argc, char **argv)
{
	int eal = rte_eal_init(argc, argv);
	if (eal < 0) {
		fprintf(stderr, "loadgen: rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 2;
	}
	argc -= eal;
	argv += eal;
	argv[0] = (char *)"mxgate-loadgen";
	struct loadgen_config cfg;
	loadgen_config_defaults(&cfg);
	char err[512];
	int rc = loadgen_args_parse(&cfg, argc, argv, stdout, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "loadgen: %s (--help lists the options)\n", err);
		return 2;
	}
	struct loadgen_port port;
	memset(&port, 0, sizeof(port));
	if (lg_port_setup(&port, &cfg) < 0)
		return 1;
	struct rte_ether_addr mac;
	rte_eth_macaddr_get(port.id, &mac);

	signal(SIGUSR2, lg_on_signal);
	signal(SIGINT, lg_on_signal);
	signal(SIGTERM, lg_on_signal);
	lg_wait_link(&port, cfg.timeout_s);

	uint64_t hz = rte_get_tsc_hz(), tsc0 = rte_rdtsc();
	uint64_t tsc_per_us = hz / 1000000 ? hz / 1000000 : 1;
	struct loadgen_stats st;
	if (loadgen_stats_init(&st, cfg.errors_kept) < 0)
		return 1;
	/* The clock's origin is CLOCK_MONOTONIC, and the stack's secret is fixed (below): so
	 * TCP timestamps and initial sequence numbers keep growing from one run to the next,
	 * and a 4-tuple an earlier run used, still in TIME-WAIT at the server, is taken again
	 * (RFC 6191) instead of failing. */
	struct timespec mono;
	clock_gettime(CLOCK_MONOTONIC, &mono);
	uint64_t origin_us = (uint64_t)mono.tv_sec * 1000000u + (uint64_t)mono.tv_nsec / 1000u;
	uint64_t now_us = origin_us;
	struct loadgen *lg = loadgen_new(&cfg, &st, now_us);
	if (!lg) {
		fprintf(stderr, "loadgen: %s\n", strerror(errno));
		return 1;
	}
	struct loadgen_mix *mix = loadgen_mix_new(&cfg, mac.addr_bytes, now_us);
	if (!mix) {
		fprintf(stderr, "loadgen: traffic classes: %s\n", strerror(errno));
		return 1;
	}
	struct loadgen_synflood *sf = loadgen_mix_synflood(mix);
	void *ctx[3] = { &port, lg, mix };
	struct net_ops ops = { ctx, lg_tx_alloc, lg_tx_send, lg_event };
	struct net_config nc;
	memset(&nc, 0, sizeof(nc));
	memcpy(nc.mac, mac.addr_bytes, 6);
	nc.ipv4 = cfg.local;
	nc.ipv4_prefix = cfg.local_prefix;
	nc.ipv4_gateway = cfg.next_hop;
	nc.ipv4_src_base = cfg.src_base;
	nc.ipv4_src_count = cfg.src_count;
	uint64_t all_conc = cfg.concurrency;
	if (cfg.nalso) { /* every class's sources are ours */
		if (loadgen_mix_src_cover(&cfg, &nc.ipv4_src_base, &nc.ipv4_src_count) < 0) {
			fprintf(stderr, "loadgen: the classes' sources, from the lowest to the "
					"highest, span the server's (or next hop's) address: choose "
					"ranges on one side of it\n");
			return 2;
		}
		for (uint32_t i = 0; i < cfg.nalso; i++)
			all_conc += cfg.also[i].concurrency;
	}
	nc.offload = port.offload;
	/* room for the sessions, and for connections still closing (FIN-WAIT, LAST-ACK:
	 * tens of milliseconds each at tens of thousands of sessions a second) */
	uint64_t maxc = all_conc * 2 + 65536;
	nc.max_conns = (uint32_t)(maxc > (1u << 24) ? (1u << 24) : maxc);
	nc.syn_backlog = 1024;
	nc.sndbuf = cfg.sndbuf;
	nc.rcvbuf = cfg.rcvbuf;
	nc.time_wait_max = 65536;
	/* A load generator needs no secret: the same one in every run (see the clock above) */
	memcpy(nc.secret, "mxgate-loadgen!!", 16);
	struct net_stack *s = net_stack_create(&nc, &ops, now_us);
	if (!s) {
		fprintf(stderr, "loadgen: stack: %s\n", strerror(errno));
		return 1;
	}
	loadgen_attach(lg, s);
	loadgen_mix_attach(mix, s);

	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &cfg.local, a, sizeof(a));
	inet_ntop(AF_INET, &cfg.server, b, sizeof(b));
	fprintf(stderr,
		"loadgen: port %u (%s) %02x:%02x:%02x:%02x:%02x:%02x, %s/%u, %u source "
		"address(es), server %s:%u, concurrency %u, sessions %llu, %u message(s) of %u "
		"bytes, %u rcpt(s)%s%s\n",
		port.id, port.info.driver_name, mac.addr_bytes[0], mac.addr_bytes[1],
		mac.addr_bytes[2], mac.addr_bytes[3], mac.addr_bytes[4], mac.addr_bytes[5], a,
		cfg.local_prefix, cfg.src_count ? cfg.src_count : 1, b, cfg.server_port,
		cfg.concurrency, (unsigned long long)cfg.sessions, cfg.messages, cfg.size,
		cfg.rcpts, cfg.pipelining ? "" : ", no pipelining",
		cfg.idle ? ", idle" : cfg.pregreet ? ", pregreet bots"
				  : cfg.listed	 ? ", DNSBL-listed clients"
						 : "");

	struct rte_mbuf *rx[LG_BURST];
	uint64_t busy = 0, total = 0, last = rte_rdtsc(), next_progress = 0;
	uint64_t last_msgs = 0, last_sess = 0, last_progress_us = now_us;
	unsigned idle = 0;
	bool stopped_once = false;
	for (;;) {
		uint64_t t = rte_rdtsc();
		now_us = origin_us + (t - tsc0) / tsc_per_us;
		/* drain the ring (a bounded number of bursts): what the peer sends in answer to
		 * a burst of opens must not wait behind the next burst of opens */
		unsigned n = 0;
		for (int burst = 0; burst < LG_RX_BURSTS; burst++) {
			uint16_t got = rte_eth_rx_burst(port.id, 0, rx, LG_BURST);
			lg_input(s, &port, rx, got, now_us, sf);
			n += got;
			if (got < LG_BURST)
				break;
		}
		port.rx += n;
		net_stack_poll(s, now_us);
		if (lg_release_req) {
			lg_release_req = 0;
			loadgen_release(lg);
			loadgen_mix_release(mix);
		}
		if (lg_stop_req && !stopped_once) {
			stopped_once = true;
			loadgen_release(lg);
			loadgen_mix_release(mix);
		}
		if (lg_stop_req > 1)
			break;
		uint64_t before = port.tx_sent + port.ntx;
		loadgen_tick(lg, now_us);
		loadgen_mix_tick(mix, now_us);
		for (uint32_t k = sf ? loadgen_synflood_due(sf, now_us, LG_BURST) : 0; k; k--) {
			uint8_t *d;
			struct rte_mbuf *m = dpdk_mbuf_tx_alloc(port.pool, &d, 128);
			if (!m)
				break;
			struct net_tx_meta meta = { 14, 20, 24, 0 }; /* checksums done */
			lg_tx_send(ctx, m, loadgen_synflood_frame(sf, d, 128, now_us), &meta);
		}
		if (port.ntx)
			lg_tx_flush(&port);
		bool did = n > 0 || port.tx_sent != before;
		uint64_t after = rte_rdtsc();
		if (did)
			busy += after - last;
		total += after - last;
		last = after;
		/* each class's rate is over its own sessions: the main class's clock stops
		 * when its last session ends, not when the other classes' do */
		if (!st.end_us && loadgen_done(lg))
			st.end_us = now_us;
		if (loadgen_done(lg) && loadgen_mix_done(mix))
			break;
		if (cfg.progress_s > 0 && now_us >= next_progress) {
			if (next_progress)
				lg_progress(&st, lg, (double)(now_us - st.start_us) / 1e6, last_msgs,
					    last_sess, (double)(now_us - last_progress_us) / 1e6);
			last_msgs = st.messages_accepted;
			last_sess = st.sessions_done;
			last_progress_us = now_us;
			next_progress = now_us + (uint64_t)(cfg.progress_s * 1e6);
		}
		idle = did ? 0 : idle + 1;
		if (idle >= LG_IDLE_SPINS) {
			/* nothing moving: give the core back briefly (the gateway shares it on
			 * small machines); under load the loop never gets here */
			struct timespec ts = { 0, LG_IDLE_SLEEP_US * 1000 };
			nanosleep(&ts, NULL);
			uint64_t woke = rte_rdtsc();
			total += woke - last;
			last = woke;
		}
	}
	if (!st.end_us)
		st.end_us = now_us;
	/* let the last ACKs and FINs leave */
	uint64_t until = rte_rdtsc() + hz / 5;
	while (rte_rdtsc() < until && net_stack_conn_count(s)) {
		uint64_t t = rte_rdtsc();
		now_us = origin_us + (t - tsc0) / tsc_per_us;
		lg_input(s, &port, rx, rte_eth_rx_burst(port.id, 0, rx, LG_BURST), now_us, sf);
		net_stack_poll(s, now_us);
		if (port.ntx)
			lg_tx_flush(&port);
	}
	struct loadgen_report_extra x = {
		.session_memory = loadgen_session_memory(lg),
		.rx_packets = port.rx,
		.tx_packets = port.tx_sent,
		.tx_dropped = port.tx_dropped,
		.busy_cycles = busy,
		.total_cycles = total,
		.tsc_hz = hz,
		.port_driver = port.info.driver_name,
	};
	loadgen_report_text(stdout, &cfg, &st, &x);
	fflush(stdout);
	int status = 0;
	if (cfg.json[0] && (rc = loadgen_report_json(cfg.json, &cfg, &st, &x)) < 0) {
		fprintf(stderr, "loadgen: %s: %s\n", cfg.json, strerror(-rc));
		status = 1;
	}
	if (cfg.nalso && loadgen_mix_report(mix, stdout, cfg.json, &x, now_us) < 0)
		status = 1;
	fflush(stdout);
	uint64_t mix_errors = loadgen_mix_errors(mix);
	loadgen_mix_free(mix);
	loadgen_free(lg);
	net_stack_destroy(s);
	loadgen_stats_free(&st);
	rte_eth_dev_stop(port.id);
	rte_eth_dev_close(port.id);
	rte_eal_cleanup();
	/* 0: the run went as expected; 3: some reply or connection was not what it should be */
	return status ? status : st.errors_total || mix_errors ? 3 : 0;
}
