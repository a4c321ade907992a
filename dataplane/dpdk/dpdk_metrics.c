/* The dpdk transport in the metrics registry (mgmt/metrics.h), and the registry over DPDK
 * telemetry.
 *
 * Families ("dpdk" subsystem): per port what rte_eth_stats_get() says (packets, bytes,
 * missed, errors, no-mbuf drops) and its pool's mbufs in use; per worker lcore its poll
 * loop's counters (busy and total TSC cycles, iterations, packets, steering, idle sleeps,
 * open connections); the TSC rate; and the stacks' counters summed. Read on the reading
 * thread with relaxed loads of what each lcore writes, as the statistics line does.
 *
 * Telemetry (dpdk-telemetry.py, on the EAL's telemetry socket): two commands that read the
 * same registry,
 *   /mxgate/metrics            the names of every family, as an array
 *   /mxgate/metric,NAME        NAME's samples as a dictionary: the label set as written in
 *                              the text format ("" without labels) -> value; a histogram
 *                              gives its cumulative buckets ("le=...") with _sum and _count
 * Telemetry commands cannot be unregistered, so they read the registry through a pointer
 * that the transport sets at create and clears at destroy, under a mutex. */
#include "dataplane/dpdk/dpdk_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_telemetry.h>

#include "mgmt/metrics.h"

/* ---- ports ---- */

enum {
	DPM_RX_PACKETS, DPM_TX_PACKETS, DPM_RX_BYTES, DPM_TX_BYTES, DPM_RX_MISSED,
	DPM_RX_ERRORS, DPM_TX_ERRORS, DPM_RX_NOMBUF, DPM_MBUFS_IN_USE, DPM_MBUFS,
	DPM_PORT_MAX
};

#define DPM_PORT_FAMILY(idx, nm, typ, hlp)                                                 \
	[idx] = { .name = nm, .help = hlp, .type = typ, .labels = { "port" } }
static const struct mx_metric_family dpm_port[DPM_PORT_MAX] = {
	DPM_PORT_FAMILY(DPM_RX_PACKETS, "mxgate_dpdk_port_rx_packets_total", MX_METRIC_COUNTER,
			"Packets the port received (rte_eth_stats ipackets)."),
	DPM_PORT_FAMILY(DPM_TX_PACKETS, "mxgate_dpdk_port_tx_packets_total", MX_METRIC_COUNTER,
			"Packets the port sent (opackets)."),
	DPM_PORT_FAMILY(DPM_RX_BYTES, "mxgate_dpdk_port_rx_bytes_total", MX_METRIC_COUNTER,
			"Bytes the port received (ibytes)."),
	DPM_PORT_FAMILY(DPM_TX_BYTES, "mxgate_dpdk_port_tx_bytes_total", MX_METRIC_COUNTER,
			"Bytes the port sent (obytes)."),
	DPM_PORT_FAMILY(DPM_RX_MISSED, "mxgate_dpdk_port_rx_missed_total", MX_METRIC_COUNTER,
			"Packets the NIC dropped for lack of room in an RX queue (imissed)."),
	DPM_PORT_FAMILY(DPM_RX_ERRORS, "mxgate_dpdk_port_rx_errors_total", MX_METRIC_COUNTER,
			"Erroneous received packets (ierrors)."),
	DPM_PORT_FAMILY(DPM_TX_ERRORS, "mxgate_dpdk_port_tx_errors_total", MX_METRIC_COUNTER,
			"Failed transmissions (oerrors)."),
	DPM_PORT_FAMILY(DPM_RX_NOMBUF, "mxgate_dpdk_port_rx_nombuf_total", MX_METRIC_COUNTER,
			"RX mbuf allocation failures (rx_nombuf)."),
	DPM_PORT_FAMILY(DPM_MBUFS_IN_USE, "mxgate_dpdk_port_mbufs_in_use", MX_METRIC_GAUGE,
			"Packet buffers of the port's pool in use."),
	DPM_PORT_FAMILY(DPM_MBUFS, "mxgate_dpdk_port_mbufs", MX_METRIC_GAUGE,
			"Packet buffers in the port's pool (mxgate_dpdk_mbufs)."),
};

static void dpm_collect_port(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	const struct dpdk_transport *t = ctx;
	for (unsigned pi = 0; pi < t->nports; pi++) {
		char name[RTE_ETH_NAME_MAX_LEN];
		if (rte_eth_dev_get_name_by_port(t->port[pi].port_id, name) != 0)
			snprintf(name, sizeof(name), "%u", t->port[pi].port_id);
		const char *lv[1] = { name };
		if (i == DPM_MBUFS_IN_USE || i == DPM_MBUFS) {
			const struct rte_mempool *mp = t->port[pi].pool;
			uint64_t v = !mp ? 0 : i == DPM_MBUFS ? mp->size : rte_mempool_in_use_count(mp);
			mx_metrics_u64(sink, lv, v);
			continue;
		}
		struct rte_eth_stats es;
		if (!t->ports_started || rte_eth_stats_get(t->port[pi].port_id, &es) != 0)
			continue;
		const uint64_t v[DPM_MBUFS_IN_USE] = {
			es.ipackets, es.opackets, es.ibytes,  es.obytes,
			es.imissed,  es.ierrors,  es.oerrors, es.rx_nombuf,
		};
		mx_metrics_u64(sink, lv, v[i]);
	}
}

/* ---- worker lcores ---- */

enum {
	DPM_W_BUSY, DPM_W_TOTAL, DPM_W_ITER, DPM_W_BUSY_ITER, DPM_W_IDLE_SLEEPS, DPM_W_RX,
	DPM_W_TX, DPM_W_TX_DROPPED, DPM_W_STEERED, DPM_W_STEER_DROPS, DPM_W_CONNS,
	DPM_W_CONN_MEMORY, DPM_W_TSC_HZ, DPM_W_MAX
};

#define DPM_W_FAMILY(idx, nm, typ, hlp)                                                    \
	[idx] = { .name = nm, .help = hlp, .type = typ, .labels = { "worker" } }
static const struct mx_metric_family dpm_worker[DPM_W_MAX] = {
	DPM_W_FAMILY(DPM_W_BUSY, "mxgate_dpdk_worker_busy_cycles_total", MX_METRIC_COUNTER,
		     "TSC cycles of poll iterations that did work (a poll loop always shows "
		     "100% CPU; this is its real load)."),
	DPM_W_FAMILY(DPM_W_TOTAL, "mxgate_dpdk_worker_cycles_total", MX_METRIC_COUNTER,
		     "TSC cycles the poll loop ran, sleeps included."),
	DPM_W_FAMILY(DPM_W_ITER, "mxgate_dpdk_worker_iterations_total", MX_METRIC_COUNTER,
		     "Poll loop iterations."),
	DPM_W_FAMILY(DPM_W_BUSY_ITER, "mxgate_dpdk_worker_busy_iterations_total",
		     MX_METRIC_COUNTER, "Poll loop iterations that did work."),
	DPM_W_FAMILY(DPM_W_IDLE_SLEEPS, "mxgate_dpdk_worker_idle_sleeps_total",
		     MX_METRIC_COUNTER, "Short sleeps of an idle poll loop."),
	DPM_W_FAMILY(DPM_W_RX, "mxgate_dpdk_worker_rx_packets_total", MX_METRIC_COUNTER,
		     "Packets the lcore took from its queues."),
	DPM_W_FAMILY(DPM_W_TX, "mxgate_dpdk_worker_tx_packets_total", MX_METRIC_COUNTER,
		     "Packets the lcore sent."),
	DPM_W_FAMILY(DPM_W_TX_DROPPED, "mxgate_dpdk_worker_tx_dropped_total", MX_METRIC_COUNTER,
		     "Packets the TX queue did not take."),
	DPM_W_FAMILY(DPM_W_STEERED, "mxgate_dpdk_worker_steered_total", MX_METRIC_COUNTER,
		     "Packets handed to the lcore that owns their flow."),
	DPM_W_FAMILY(DPM_W_STEER_DROPS, "mxgate_dpdk_worker_steer_drops_total",
		     MX_METRIC_COUNTER, "Packets the owner's ring had no room for."),
	DPM_W_FAMILY(DPM_W_CONNS, "mxgate_dpdk_worker_connections_open", MX_METRIC_GAUGE,
		     "SMTP connections the lcore holds."),
	DPM_W_FAMILY(DPM_W_CONN_MEMORY, "mxgate_dpdk_worker_connection_memory_bytes",
		     MX_METRIC_GAUGE, "Bytes the lcore's open connections hold (sampled each "
				      "second)."),
	[DPM_W_TSC_HZ] = { .name = "mxgate_dpdk_tsc_hertz", .type = MX_METRIC_GAUGE,
			   .help = "The TSC's rate: cycles per second, to turn cycle counts into "
				   "seconds." },
};

static void dpm_collect_worker(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	const struct dpdk_transport *t = ctx;
	if (i == DPM_W_TSC_HZ) {
		mx_metrics_u64(sink, NULL, t->tsc_hz);
		return;
	}
	for (unsigned k = 0; k < t->nworkers; k++) {
		const struct dp_stats *st = &t->workers[k].st;
		const uint64_t *f[DPM_W_TSC_HZ] = {
			&st->busy_cycles, &st->total_cycles, &st->iterations, &st->busy_iterations,
			&st->idle_sleeps, &st->rx_packets,   &st->tx_packets, &st->tx_dropped,
			&st->steered_out, &st->steer_drops,  &st->nconns,     &st->conn_memory,
		};
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		const char *lv[1] = { idx };
		mx_metrics_u64(sink, lv, dp_stat_get(f[i]));
	}
}

/* ---- the stacks ---- */

#define DPM_NET(X)                                                                         \
	X(rx_frames) X(rx_bad_eth) X(rx_bad_ip) X(rx_bad_csum) X(rx_ip_fragments)          \
	X(rx_bad_tcp) X(rx_proto_unknown) X(rx_icmp) X(rx_arp) X(tx_frames)                \
	X(tx_alloc_fail) X(tcp_syn) X(tcp_syn_cookie_sent) X(tcp_syn_cookie_ok)            \
	X(tcp_syn_cookie_bad) X(tcp_accept) X(tcp_rst_sent) X(tcp_rst_limited)             \
	X(tcp_rst_rcvd) X(tcp_challenge_ack) X(tcp_paws_drop) X(tcp_ooo_segs)              \
	X(tcp_dup_segs) X(tcp_retransmits) X(tcp_rto) X(tcp_fast_retransmit)               \
	X(tcp_timeouts) X(tcp_conn_full) X(tcp_buf_alloc_fail)

static const size_t dpm_net_offset[] = {
#define DPM_NET_OFF(f) offsetof(struct net_counters, f),
	DPM_NET(DPM_NET_OFF)
#undef DPM_NET_OFF
};

static const struct mx_metric_family dpm_net[] = {
#define DPM_NET_FAM(f)                                                                     \
	{ .name = "mxgate_net_" #f "_total", .type = MX_METRIC_COUNTER,                     \
	  .help = "The TCP/IP stacks' " #f " counter, summed over lcores and ports." },
	DPM_NET(DPM_NET_FAM)
#undef DPM_NET_FAM
};

static void dpm_collect_net(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	const struct dpdk_transport *t = ctx;
	uint64_t sum = 0;
	for (unsigned k = 0; k < t->nworkers; k++)
		for (unsigned pi = 0; pi < t->nports; pi++) {
			const struct net_stack *s = t->workers[k].stack[pi];
			if (!s)
				continue;
			const char *c = (const char *)net_stack_counters(s);
			sum += __atomic_load_n((const uint64_t *)(c + dpm_net_offset[i]),
					       __ATOMIC_RELAXED);
		}
	mx_metrics_u64(sink, NULL, sum);
}

/* ---- telemetry ---- */

static pthread_mutex_t dpm_tel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mx_metrics *dpm_tel_registry; /* NULL: no transport now */
static bool dpm_tel_registered;

struct dpm_tel_list {
	struct rte_tel_data *d;
	const struct mx_metric_family *last; /* the family named last (one name each) */
	unsigned n;
};

static void dpm_tel_names(void *ctx, const char *subsystem, const struct mx_metric_family *f,
			  const struct mx_metric_sample *s)
{
	(void)subsystem;
	(void)s;
	struct dpm_tel_list *v = ctx;
	if (v->last == f || v->n >= RTE_TEL_MAX_ARRAY_ENTRIES)
		return;
	v->last = f;
	v->n++;
	rte_tel_data_add_array_string(v->d, f->name);
}

static int dpm_tel_list(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	(void)params;
	rte_tel_data_start_array(d, RTE_TEL_STRING_VAL);
	struct dpm_tel_list v = { .d = d };
	pthread_mutex_lock(&dpm_tel_lock);
	if (dpm_tel_registry)
		mx_metrics_visit(dpm_tel_registry, NULL, dpm_tel_names, &v);
	pthread_mutex_unlock(&dpm_tel_lock);
	return 0;
}

struct dpm_tel_one {
	struct rte_tel_data *d;
	const char *name;
	unsigned n;
};

/* `a="x",b="y"` (the text format's label set, unescaped values: telemetry keys are JSON
 * strings already), cut to the telemetry key bound. */
static void dpm_tel_key(const struct mx_metric_family *f, const struct mx_metric_sample *s,
			const char *extra, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < MX_METRIC_LABELS_MAX && f->labels[i] && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s=\"%s\"", n ? "," : "", f->labels[i],
				      s->label_values[i]);
	if (extra && n < len)
		snprintf(buf + n, len - n, "%s%s", n ? "," : "", extra);
}

static void dpm_tel_add(struct dpm_tel_one *v, const char *key, uint64_t u)
{
	if (v->n >= RTE_TEL_MAX_DICT_ENTRIES)
		return;
	v->n++;
	rte_tel_data_add_dict_u64(v->d, key, u);
}

static void dpm_tel_sample(void *ctx, const char *subsystem, const struct mx_metric_family *f,
			   const struct mx_metric_sample *s)
{
	(void)subsystem;
	struct dpm_tel_one *v = ctx;
	if (strcmp(f->name, v->name) != 0)
		return;
	char key[RTE_TEL_MAX_STRING_LEN];
	if (f->type != MX_METRIC_HISTOGRAM) {
		dpm_tel_key(f, s, NULL, key, sizeof(key));
		dpm_tel_add(v, key, s->is_int ? s->u : (uint64_t)s->d);
		return;
	}
	uint64_t cum = 0;
	for (unsigned b = 0; b <= f->nbuckets; b++) {
		char le[48];
		cum += s->bucket_counts[b];
		if (b < f->nbuckets)
			snprintf(le, sizeof(le), "le=\"%g\"", f->buckets[b]);
		else
			snprintf(le, sizeof(le), "le=\"+Inf\"");
		dpm_tel_key(f, s, le, key, sizeof(key));
		dpm_tel_add(v, key, cum);
	}
	dpm_tel_key(f, s, "_count", key, sizeof(key));
	dpm_tel_add(v, key, cum);
	/* the sum in microseconds: telemetry dictionaries take integers or doubles, and
	 * integers are exact */
	dpm_tel_key(f, s, "_sum_us", key, sizeof(key));
	dpm_tel_add(v, key, (uint64_t)(s->sum * 1e6 + 0.5));
}

static int dpm_tel_metric(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	if (!params || !*params)
		return -EINVAL;
	rte_tel_data_start_dict(d);
	struct dpm_tel_one v = { .d = d, .name = params };
	pthread_mutex_lock(&dpm_tel_lock);
	if (dpm_tel_registry)
		mx_metrics_visit(dpm_tel_registry, NULL, dpm_tel_sample, &v);
	pthread_mutex_unlock(&dpm_tel_lock);
	return 0;
}

/* ---- registration ---- */

int dp_metrics_register(struct dpdk_transport *t)
{
	struct mx_metrics *m = t->p.metrics;
	if (!m)
		return 0;
	int h;
	if ((h = mx_metrics_register(m, "dpdk", dpm_port, DPM_PORT_MAX, dpm_collect_port, t)) < 0)
		return h;
	t->metrics_handle[0] = h;
	if ((h = mx_metrics_register(m, "dpdk", dpm_worker, DPM_W_MAX, dpm_collect_worker, t)) < 0)
		return h;
	t->metrics_handle[1] = h;
	if ((h = mx_metrics_register(m, "net", dpm_net, sizeof(dpm_net) / sizeof(dpm_net[0]),
				     dpm_collect_net, t)) < 0)
		return h;
	t->metrics_handle[2] = h;
	pthread_mutex_lock(&dpm_tel_lock);
	dpm_tel_registry = m;
	if (!dpm_tel_registered) {
		dpm_tel_registered = true;
		rte_telemetry_register_cmd("/mxgate/metrics", dpm_tel_list,
					   "mxgate: the names of every metric family. No parameters");
		rte_telemetry_register_cmd("/mxgate/metric", dpm_tel_metric,
					   "mxgate: one family's samples by label set. Parameters: "
					   "the family's name");
	}
	pthread_mutex_unlock(&dpm_tel_lock);
	return 0;
}

void dp_metrics_unregister(struct dpdk_transport *t)
{
	pthread_mutex_lock(&dpm_tel_lock);
	if (dpm_tel_registry == t->p.metrics)
		dpm_tel_registry = NULL;
	pthread_mutex_unlock(&dpm_tel_lock);
	for (unsigned k = 0; k < 3; k++) {
		mx_metrics_unregister(t->p.metrics, t->metrics_handle[k]);
		t->metrics_handle[k] = 0;
	}
}
