/* The relay: delivers spooled mail to the next hop (`relayhost`) over SMTP (RFC 5321) or
 * LMTP (RFC 2033), and retires a message only after the next hop said 2xx for each of its
 * recipients.
 *
 * Messages come from recovery at start-up (spool_recovered(): only the recipients still
 * pending) and from the writer as it commits them (spool_set_committed_hook()). Delivery
 * runs on the relay's own threads, never on a worker: one per concurrent connection to
 * the destination (default_destination_concurrency_limit), each with a cached connection
 * reused across messages (closed after smtp_connection_cache_time_limit idle) and every
 * step bounded by Postfix's smtp_*_timeout. Kernel sockets, blocking on poll(2) with a
 * deadline per step.
 *
 * Per recipient, the outcome is made durable through the writer before it counts:
 *   2xx  DELIVERY(sent) record, logged "status=sent"; never sent again after a restart
 *   5xx  DELIVERY(failed) record, logged "status=bounced"; kept for the DSN generator
 *   4xx, no connection, timeout: logged "status=deferred", retried with exponential
 *        backoff from minimal_backoff_time to maximal_backoff_time, at queue runs every
 *        queue_run_delay
 * When every recipient was sent, a RETIRE record follows ("ID: removed"). A message with a
 * failed recipient stays in the spool (not delivered again) until a bounce is sent.
 *
 * Reclaim: segments are deleted oldest first once no live message (nor one still being
 * received) has any record in them; see spool_reclaim(). */
#ifndef MXGATE_DATAPLANE_SPOOL_RELAY_H
#define MXGATE_DATAPLANE_SPOOL_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/spool/spool_writer.h"

#define SPOOL_RELAY_MAX_THREADS 256

struct spool_relay_params {
	struct spool *spool;
	const char *host;      /* numeric IPv4 or IPv6 address */
	uint16_t port;
	bool lmtp;             /* LHLO and one reply per recipient after the data */
	const char *helo_name; /* myhostname */
	unsigned concurrency;  /* default_destination_concurrency_limit */
	/* seconds */
	unsigned connect_timeout, helo_timeout, mail_timeout, rcpt_timeout;
	unsigned data_init_timeout, data_xfer_timeout, data_done_timeout, quit_timeout;
	unsigned min_backoff, max_backoff, queue_run_delay;
	unsigned cache_time_limit; /* idle seconds before a cached connection is closed */
};

struct spool_relay;

/* Create the relay and register it with the writer (before spool_start()); queues the
 * recovered messages. Returns 0 or a negative errno with err. */
int spool_relay_create(struct spool_relay **out, const struct spool_relay_params *p, char *err,
		       size_t errlen);
int spool_relay_start(struct spool_relay *r);
/* Stop the threads (deliveries in progress are cut; what was not confirmed stays in the
 * spool) and wait for them. Before spool_stop(): the relay needs the writer. */
void spool_relay_stop(struct spool_relay *r);
/* After spool_stop(): the writer no longer hands messages over. */
void spool_relay_free(struct spool_relay *r);

struct spool_relay_stats {
	uint64_t queued;    /* live messages */
	uint64_t sent;      /* recipients */
	uint64_t deferred;  /* delivery attempts that left recipients pending */
	uint64_t bounced;   /* recipients */
	uint64_t removed;   /* messages retired */
	uint64_t reclaimed; /* segments deleted */
};
void spool_relay_stats(struct spool_relay *r, struct spool_relay_stats *out);

#endif
