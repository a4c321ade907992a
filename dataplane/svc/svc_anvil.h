/* The anvil sync thread: shares anvil's rate counters (tables/anvil.h, anvil_share_*)
 * with the other gateways through memcached (mxgate_anvil_rate_map =
 * memcache:/etc/mxgate/anvil-memcache.cf, a memcache_table(5) file).
 *
 * Workers never wait for it and take no lock of its own: they count in the table as
 * always and read their rate there (the local count, or the cluster's total as of the
 * last sync plus what they counted since, whichever is larger). Every interval_ms the
 * thread walks the table, sends each live counter's new events with memcached's atomic
 * add + incr (tables/anvil_wire.h), pipelined, and writes the totals memcached answers
 * back into the table. A node thus sees the others' events at most one interval (plus a
 * round trip) late.
 *
 * When memcached cannot be reached, or answers with errors, the events stay pending in
 * the table (counted on this node, and sent when it is back, if their window is still
 * current); the thread logs one warning per outage, tries again every retry_pause of the
 * file, and logs when it works again. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_ANVIL_H
#define MXGATE_DATAPLANE_SVC_SVC_ANVIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/anvil.h"

#define SVC_ANVIL_INTERVAL_MS 100u   /* the sync interval: the lag of the shared rates */
#define SVC_ANVIL_BATCH 1024u        /* counters per anvil_share_collect() */
#define SVC_ANVIL_PIPELINE 128u      /* add + incr pairs sent before their replies are read */

struct svc_anvil_params {
	const char *spec;      /* "memcache:/path.cf" (the parameter's value) */
	const char *name;      /* the parameter, for log lines: "mxgate_anvil_rate_map" */
	unsigned interval_ms;  /* 0: SVC_ANVIL_INTERVAL_MS */
	unsigned read_mask;    /* anvil_share_collect()'s read_mask */
};

struct svc_anvil;

/* Read the memcache_table(5) file of p->spec (memcache: only) for table a and make a
 * the table share (anvil_share_enable()). No connection is made yet and no thread runs.
 * 0, or -EINVAL (not memcache:, a bad file, a domain list: anvil's keys are not
 * addresses), -ENOENT, -ENOMEM, ... with err. */
int svc_anvil_new(struct svc_anvil **out, struct anvil *a, const struct svc_anvil_params *p,
		  char *err, size_t errlen);
/* One sync of the whole table now, on the caller's thread (the thread calls it every
 * interval; tests call it directly): 0, or a negative errno when memcached failed (the
 * events stay pending). */
int svc_anvil_sync(struct svc_anvil *s);
/* Run the thread ("mx-anvil"). 0 or a negative errno with err. */
int svc_anvil_start(struct svc_anvil *s, char *err, size_t errlen);
/* Stop the thread (when running) and free s. NULL is a no-op. */
void svc_anvil_free(struct svc_anvil *s);

/* What the thread did, for the statistics line and tests. */
struct svc_anvil_stats {
	uint64_t syncs;        /* svc_anvil_sync() calls that reached memcached */
	uint64_t counters;     /* add + incr pairs answered with a total */
	uint64_t events;       /* events those carried */
	uint64_t failed;       /* counters not sent or not answered (kept pending) */
	uint64_t errors;       /* error replies from memcached */
	uint64_t outages;      /* times memcached became unavailable */
	uint64_t skipped;      /* counters whose key key_format could not make */
	uint64_t round_ms;     /* how long the last round took (the lag beyond the interval) */
	bool down;             /* unavailable now */
};
void svc_anvil_stats(struct svc_anvil *s, struct svc_anvil_stats *out);
/* "anvil share statistics (WHEN): ..." */
void svc_anvil_log_statistics(struct svc_anvil *s, const char *when);

#endif
