/* What both transports (kernel_transport.h, dpdk_transport.h) are given by main.c: the
 * configuration they start with, the published generations (what each new connection is
 * served by: mgmt/generation.h), the table store, the spools, and the limits. Each worker
 * builds its own per-worker state (table reader, policy contexts, checks scratch, spool
 * client, queue-ID generator) from these. */
#ifndef MXGATE_DATAPLANE_TRANSPORT_H
#define MXGATE_DATAPLANE_TRANSPORT_H

#include <stdint.h>

#include "dataplane/spool/spool_writer.h"
#include "dataplane/svc/svc.h"
#include "mgmt/config.h"
#include "mgmt/generation.h"
#include "mxgate/counters.h"
#include "tables/anvil.h"
#include "tables/tables_env.h"

struct svc_sasl_directory;
struct conn_worker;
struct mx_metrics;

struct transport_params {
	/* What only a restart changes (the transport, its ports, the workers, the listen
	 * addresses to open at start), read while the transport is created; it lives as long
	 * as the gateway. */
	const struct mx_config *boot;
	/* The generations new connections get; current is set before create(). */
	struct mx_gen_pub *gens;
	/* The table store the policy looks up (each worker opens its own reader and renews
	 * it once per poll iteration, so a committed table change is seen at once); NULL when
	 * no policy uses a table. */
	struct tables_env *tables;
	/* Started; stopped after the workers. Worker i writes to spools[i % nspools] (one
	 * writer per spool directory: mxgate_spool_directory may list several). */
	struct spool *const *spools;
	unsigned nspools;
	/* The service threads (resolver, policy servers); each worker makes its client of it
	 * with its wake-up. NULL: none run (no lookups: names stay "unknown"). */
	struct svc_set *svc;
	unsigned workers;                       /* >= 1 (the caller resolves 0 = cores) */
	unsigned max_connections;               /* per worker; 0 = no limit */
	uint64_t shutdown_grace_ms;             /* how long a stop waits for output to drain */
	uint64_t queue_id_floor_us;             /* the newest spool_newest_id_us() */
	/* The per-client counts of anvil(8)'s limits, shared by every worker (it outlives
	 * the transport and every generation, so a reload keeps the counts); NULL: none. */
	struct anvil *anvil;
	/* The screen's per-client connection counts (conn_screen.c), apart from anvil's so that
	 * they are never shared through mxgate_anvil_rate_map; NULL: none. */
	struct anvil *screen_counts;
	/* What the Dovecot auth endpoints offer (the SASL service keeps it up to date, the
	 * workers read it at EHLO); NULL: no SASL service. */
	struct svc_sasl_directory *sasl;
	/* The metrics registry (mgmt/metrics.h) where the transport registers its own
	 * families (ports, workers, its stack) at create() and unregisters them at destroy();
	 * NULL: none. */
	struct mx_metrics *metrics;
};

/* A transport behind one set of calls: main.c drives whichever mxgate_transport names. */
struct transport_ops {
	const char *name; /* "kernel", "dpdk" */
	/* What `mxgate --check` can judge without starting anything (ports, addresses);
	 * NULL: nothing beyond the configuration. 0, or a negative errno with err. */
	int (*check)(const struct mx_config *cfg, char *err, size_t errlen);
	/* The most workers create() may start for this configuration (workers: what main
	 * resolved mxgate_workers to; the dpdk transport's come from the EAL's lcores): the
	 * counter slots of every generation. */
	unsigned (*worker_limit)(const struct mx_config *boot, unsigned workers);
	/* Build the transport (listeners, ports, workers not yet running). 0 and *impl, or a
	 * negative errno with err. */
	int (*create)(void **impl, const struct transport_params *p, char *err, size_t errlen);
	int (*start)(void *impl);                /* the workers run */
	void (*stop)(void *impl);                /* ask the workers to stop (any thread) */
	void (*join)(void *impl);                /* wait for them */
	bool (*failed)(const void *impl);        /* a worker hit an internal error */
	/* How many workers run (after create): with mxgate_max_connections each, the
	 * capacity that stress is measured against (mgmt/stress.h). */
	unsigned (*workers)(const void *impl);
	/* The workers' counters summed, and the connections open now. */
	void (*counters)(const void *impl, struct mx_counters *sum, uint64_t *open);
	/* Extra statistics lines of this transport (SIGUSR1, shutdown); NULL: none. */
	void (*log_statistics)(const void *impl, const char *when);
	/* Wait until every worker passed a quiescent point (the end of a poll iteration, or
	 * it sleeps): after it no worker holds a generation pointer it read before without a
	 * reference of its own (mgmt/generation.h). Management thread only. */
	void (*synchronize)(void *impl);
	/* Before g is published: can its services listen where they say (addresses this
	 * gateway does not hold yet are free, the ports are ones this transport serves)? 0,
	 * or a negative errno with err. */
	int (*check_services)(void *impl, const struct mx_generation *g, char *err,
			      size_t errlen);
	/* A new generation was published: listeners it adds or drops are opened or closed
	 * (each worker reconciles its own at its next iteration). */
	void (*services_changed)(void *impl);
	/* For the start-up line: "dpdk (DPDK 22.11.4), 2 worker lcore(s), 1 port(s), ...". */
	void (*describe)(const void *impl, char *buf, size_t len);
	void (*destroy)(void *impl);             /* after join; NULL is a no-op */
	/* Worker i's connection state (i < workers()), for the metrics registry to read its
	 * counters from another thread (relaxed loads). */
	const struct conn_worker *(*worker)(const void *impl, unsigned i);
};

/* The transport mxgate_transport names, or NULL when this mxgate was built without it
 * (no libdpdk at build time). */
const struct transport_ops *transport_ops_for(enum mx_transport t);

/* The DPDK release this mxgate was built against, or NULL without DPDK. */
const char *transport_dpdk_version(void);

extern const struct transport_ops kernel_transport_ops;
extern const struct transport_ops dpdk_transport_ops;

#endif
