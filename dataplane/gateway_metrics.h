/* The gateway's families in the metrics registry (mgmt/metrics.h), read from where the
 * numbers already live: the workers' event counters (mxgate/counters.h) and their
 * histograms and reply tables (mxgate/worker_metrics.h) through the transport, each
 * generation's per-worker, per-service counters and refusals per restriction
 * (mgmt/generation.h) through the reload, the spools' and relays' stats, the resolver's.
 *
 * Subsystems and what reads them by name:
 *   "smtp"        the SIGUSR1 "statistics (SIGUSR1): open_connections=..." line
 *   "generation"  `mxgate status`, one line per generation (label generation)
 *   "spool", "relay"  the "spool N statistics:" and "relay N statistics:" lines (label spool)
 *   "replies", "latency", "restrictions", "services", "resolver"  the endpoint only
 *   "anvil_share", "log", "relay_state", "relay_nexthop"  the endpoint only */
#ifndef MXGATE_DATAPLANE_GATEWAY_METRICS_H
#define MXGATE_DATAPLANE_GATEWAY_METRICS_H

#include "dataplane/reload.h"
#include "dataplane/relay/relay.h"
#include "dataplane/spool/spool_writer.h"
#include "dataplane/svc/svc_anvil.h"
#include "dataplane/transport.h"
#include "mgmt/metrics.h"

struct gateway_metrics;

struct gateway_metrics_params {
	struct mx_metrics *m;
	const struct transport_ops *ops;
	void *impl;                   /* the transport, created */
	struct spool *const *spools;  /* [nspools] */
	struct relay *const *relays;  /* [nspools] */
	unsigned nspools;
	struct reload *reload;        /* NULL: no generation families */
	const void *resolver;         /* svc_resolver_statistics()'s handle; NULL: none */
	struct svc_anvil *anvil_share; /* the shared anvil sync (svc_anvil.h); NULL: none */
};

/* Register every family. 0 and *out, or a negative errno. */
int gateway_metrics_register(struct gateway_metrics **out, const struct gateway_metrics_params *p);
/* Unregister and free (before what they read goes away). NULL is a no-op. */
void gateway_metrics_unregister(struct gateway_metrics *g);

#endif
