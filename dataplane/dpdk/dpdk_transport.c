#include "dataplane/dpdk/dpdk_transport.h"
#include "dataplane/dpdk/dpdk_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_version.h>

#include "mxgate/errf.h"

#define DP_RING_SIZE 4096 /* per worker: frames handed over by other lcores */

static bool dp_eal_initialised; /* rte_eal_init() may run once per process */

/* ---- setup ---- */

static int dp_worker_setup(struct dpdk_transport *t, struct dp_worker *w, char *err,
			   size_t errlen)
{
	int rc;
	if ((rc = conn_worker_init(&w->cw, &t->p, w->index, err, errlen)) < 0)
		return rc;
	w->cw.spool_client = spool_client_new(w->cw.spool, -1);
	/* answers are picked up by polling: no wake-up fd */
	if (t->p.svc && !(w->cw.svc = svc_client_new(t->p.svc, w->index, -1)))
		return mx_errf(err, errlen, -ENOMEM, "worker %u: out of memory", w->index);
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
	if ((rc = dp_metrics_register(t)) < 0) {
		mx_errf(err, errlen, rc, "metrics: cannot register the dpdk families: %s",
			strerror(-rc));
		goto fail;
	}
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

void dpdk_transport_destroy(struct dpdk_transport *t)
{
	if (!t)
		return;
	dp_metrics_unregister(t); /* nothing reads the workers or ports after this */
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
	free(t->qsbr);
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

static unsigned dp_ops_workers(const void *impl)
{
	const struct dpdk_transport *t = impl;
	return t->nworkers;
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

/* The stacks listen on at most DP_LISTEN_MAX ports: the union of those g uses and those
 * of the generations still published beside it once g is (dp_listen_reconcile follows
 * exactly that union, closing ports before it opens others). That is the current
 * generation, which stays when g is a canary; not the canary, which g replaces (a canary
 * replaces the canary, and a full reload is refused while one runs). A full reload
 * replaces the current generation too, but this call cannot tell it from a canary, so it
 * counts the current one's ports: it errs towards refusing. The management thread
 * publishes, and calls this before. */
static int dp_ops_check_services(void *impl, const struct mx_generation *g, char *err,
				 size_t errlen)
{
	const struct dpdk_transport *t = impl;
	/* the current generation first, so that a port too many is one of g's */
	const struct mx_generation *gens[2] = { atomic_load(&t->p.gens->current), g };
	uint16_t ports[DP_LISTEN_MAX];
	unsigned n = 0;
	for (int k = 0; k < 2; k++) {
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
						       "transport, counting those of generation %" PRIu64
						       " in service",
						       svc->name, DP_LISTEN_MAX,
						       gens[0] ? gens[0]->id : 0);
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

static const struct conn_worker *dp_ops_worker(const void *impl, unsigned i)
{
	const struct dpdk_transport *t = impl;
	return i < t->nworkers ? &t->workers[i].cw : NULL;
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
	.workers = dp_ops_workers,
	.log_statistics = dp_ops_log_statistics,
	.synchronize = dp_ops_synchronize,
	.check_services = dp_ops_check_services,
	.describe = dp_ops_describe,
	.destroy = dp_ops_destroy,
	.worker = dp_ops_worker,
};
