/* Live reload: the management plane's keeper of the published generations
 * (mgmt/generation.h).
 *
 * A reload builds a new generation from the configuration file (off the workers: in the
 * thread that asked, the main thread for SIGHUP or the control socket's for `mxgate
 * reload`), checks it (every problem FILE:LINE, the tables it needs, the addresses its
 * services listen on), and only then publishes it. Connections keep the generation they
 * started with; new ones get the new one. A failed build changes nothing.
 *
 * A canary publishes the new generation beside the current one for a share of new
 * connections (a percentage, or a client list) until it is promoted (it becomes current)
 * or aborted (it is dropped). Each generation counts what its connections did, so the
 * two can be compared while both serve (`mxgate status`).
 *
 * Parameters that only a restart applies (the transport, workers, spools, relay, ...)
 * are reported when a reload changes them, and keep their running values. */
#ifndef MXGATE_DATAPLANE_RELOAD_H
#define MXGATE_DATAPLANE_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/transport.h"
#include "mgmt/control.h"
#include "mgmt/generation.h"
#include "tables/tables_env.h"

struct reload;

struct reload_params {
	const struct transport_ops *ops;
	void *impl;                     /* the transport, created */
	struct mx_gen_pub *pub;         /* current is set: the first generation, whose
					   publication reference the reload now owns */
	const struct mx_config *boot;   /* what the gateway started with */
	struct tables_env *tables;      /* the table store (NULL: not open) */
	unsigned nworkers;              /* counter slots of each generation */
	int64_t started_at;             /* wall-clock seconds */
	const char *transport_description;
	/* The metrics registry `status` reads each generation's counters from (its
	 * "generation" families, dataplane/gateway_metrics.h); NULL: none. */
	struct mx_metrics *metrics;
};

int reload_create(struct reload **out, const struct reload_params *p);
/* After the transport is destroyed: drops every generation the reload holds. */
void reload_free(struct reload *r);

/* Call fn for every generation the reload holds: the current one, the canary, those
 * retiring (role says which), under the reload's lock (so fn must not reload). */
void reload_visit_generations(struct reload *r,
			      void (*fn)(void *ctx, const struct mx_generation *g,
					 const char *role),
			      void *ctx);

/* Register the control commands `reload` and `status` (before control_server_start()). */
int reload_register(struct reload *r, struct control_server *s, char *err, size_t errlen);

enum reload_mode {
	RELOAD_FULL,     /* the new generation serves every new connection */
	RELOAD_CANARY,   /* beside the current one, for a share or a client list */
	RELOAD_PROMOTE,  /* the canary becomes current */
	RELOAD_ABORT,    /* the canary is dropped */
};

struct reload_request {
	enum reload_mode mode;
	const char *path;              /* NULL: the file the current generation came from */
	unsigned canary_permille;      /* RELOAD_CANARY: 1..1000, or 0 with canary_clients */
	const char *canary_clients;    /* RELOAD_CANARY: addresses/CIDRs, or NULL */
};

/* Where a reload's lines go besides the log (each line once, without a newline). */
struct reload_out {
	void (*say)(void *ctx, const char *line);
	void *ctx;
};

/* Carry out one request. Returns 0 when done, 1 when refused or failed (nothing changed:
 * the reason went to out and the log). Serialized: one request at a time. */
int reload_apply(struct reload *r, const struct reload_request *q,
		 const struct reload_out *out);

/* Generations that no longer serve new connections are kept until their last connection
 * closes; drop those that are done (and log it). The main thread calls it every second. */
void reload_housekeeping(struct reload *r);

/* Stress (mgmt/stress.h) is decided by reload_housekeeping(): entered when the open
 * connections reach mxgate_stress_enter_percent of every worker's mxgate_max_connections,
 * left at mxgate_stress_leave_percent after mxgate_stress_minimum_time; published in
 * mx_gen_pub.stress for new connections, logged at each change, shown by `status`. This
 * logs its state and counters (SIGUSR1). */
void reload_log_stress(struct reload *r, const char *when);

/* Per DNSBL site of each postscreen service of the current (and canary) generation, how
 * many clients it listed since that generation was built: one line per service and site,
 * "postscreen dnsbl (WHEN): generation=N service=NAME site=SITE listed=N" (SIGUSR1). */
void reload_log_screen(struct reload *r, const char *when);

/* Parse "10%", "2.5%", "10" (percent, > 0, <= 100) into permille. false on bad input. */
bool reload_parse_share(const char *s, unsigned *permille);

#endif
