/* What both transports (kernel_transport.h, dpdk_transport.h) are given by main.c: the
 * configuration, the shared policy and checks, the table store, the spools, and the
 * limits. Each worker builds its own per-worker state (table reader, policy context,
 * checks scratch, spool client, queue-ID generator) from these. */
#ifndef MXGATE_DATAPLANE_TRANSPORT_H
#define MXGATE_DATAPLANE_TRANSPORT_H

#include <stdint.h>

#include "dataplane/spool/spool_writer.h"
#include "mgmt/config.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_restrictions.h"
#include "tables/tables_env.h"

struct transport_params {
	const struct mx_config *cfg;            /* listen addresses, limits, engine config */
	const struct smtp_policy *policy;       /* the restriction lists, shared */
	/* The table store the policy looks up (each worker opens its own reader and renews
	 * it once per poll iteration, so a committed table change is seen at once); NULL when
	 * the policy uses no table. */
	struct tables_env *tables;
	/* header_checks and friends (each worker allocates its own scratch); NULL: none. */
	const struct smtp_checks_config *checks;
	/* Started; stopped after the workers. Worker i writes to spools[i % nspools] (one
	 * writer per spool directory: mxgate_spool_directory may list several). */
	struct spool *const *spools;
	unsigned nspools;
	unsigned workers;                       /* >= 1 (the caller resolves 0 = cores) */
	unsigned max_connections;               /* per worker; 0 = no limit */
	uint64_t idle_timeout_ms;               /* smtpd_timeout */
	uint64_t shutdown_grace_ms;             /* how long a stop waits for output to drain */
	uint64_t queue_id_floor_us;             /* the newest spool_newest_id_us() */
};

#endif
