/* The relay: delivers spooled mail to its next hops over SMTP (RFC 5321) or LMTP (RFC
 * 2033), and retires a message only after each of its recipients was delivered or
 * returned to the sender in a delivery status notification.
 *
 * Messages come from recovery at start-up (spool_recovered(): only the recipients still
 * pending) and from the writer as it commits them (spool_set_committed_hook()). Delivery
 * runs on the relay's own threads, never on a worker.
 *
 * Where a recipient goes (relay_transport.h): the envelope's FILTER destination when policy
 * set one, else its transport_maps entry, else the default destination (relayhost).
 * Recipients of one message with the same destination share one transaction. Each
 * destination has at most `concurrency` connections (default_destination_concurrency_limit)
 * from this relay (one relay per spool directory);
 * idle ones are cached and reused across messages and threads (closed after
 * smtp_connection_cache_time_limit). A message whose destination is at its limit waits,
 * without a retry penalty, until a connection is free. Every protocol step is bounded by
 * Postfix's smtp_*_timeout. Kernel sockets, blocking on poll(2) with a deadline per step.
 *
 * Per recipient, the outcome is made durable through the writer before it counts:
 *   2xx  DELIVERY(sent) record, logged "status=sent"; never sent again after a restart
 *   5xx  DELIVERY(failed) record whose text is "X.Y.Z reason", logged "status=bounced"
 *   4xx, no connection, timeout: logged "status=deferred", retried with exponential
 *        backoff from minimal_backoff_time to maximal_backoff_time, at queue runs every
 *        queue_run_delay; once the message is older than maximal_queue_lifetime
 *        (bounce_queue_lifetime for null-sender mail) a deferred recipient fails too
 *        ("status=expired, returned to sender")
 * When no recipient is pending: if any failed and the sender asked for it (relay_dsn.h),
 * a delivery status notification to the sender is spooled (and relayed like any message)
 * before the original is retired (RETIRE record, "ID: removed"). A crash between the two
 * sends the notification twice, never zero times.
 *
 * Held messages (policy HOLD, or `mxgate-queue hold`) are not delivered until released.
 *
 * Reclaim: segments are deleted oldest first once no live message (nor one still being
 * received) has any record in them; see spool_reclaim(). A few long-deferred messages
 * must not pin every later segment: when the segments below the newest two hold mostly
 * dead bytes, the live messages in them are relocated forward (spool_relocate()) and the
 * old segments deleted, so disk use stays flat while a next hop is down for days. */
#ifndef MXGATE_DATAPLANE_RELAY_RELAY_H
#define MXGATE_DATAPLANE_RELAY_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "mxgate/worker_metrics.h"
#include "dataplane/relay/relay_transport.h"
#include "dataplane/spool/spool_writer.h"
#include "tables/tables_env.h"

#define RELAY_MAX_THREADS 256
#define RELAY_MAX_DESTINATIONS 4096

struct relay_params {
	struct spool *spool;
	/* Which spool directory this relay serves (several may be configured): notifications
	 * it generates get queue IDs with worker number QUEUE_ID_MAX_WORKERS - 1 - index. */
	unsigned spool_index;
	bool have_default;            /* false: no relayhost; unrouted recipients wait */
	/* No next hop at all (no relayhost, no transport_maps): keep the queue (list, hold,
	 * release, delete, and give space back) but never try a delivery, so mail waits for
	 * a configuration with a next hop instead of expiring into bounces. */
	bool keep_only;
	struct relay_nexthop dflt;    /* relayhost, SMTP or LMTP */
	struct tables_env *tables;    /* for transport_maps; NULL when there are none */
	const char *transport_maps;   /* table specs (commas and/or white space), or NULL */
	struct relay_transport_opts transport_opts;
	const char *helo_name;        /* myhostname: EHLO, and the notifications' From: */
	unsigned concurrency;         /* default_destination_concurrency_limit */
	unsigned threads;             /* delivery threads; 0: twice the concurrency */
	/* seconds */
	unsigned connect_timeout, helo_timeout, mail_timeout, rcpt_timeout;
	unsigned data_init_timeout, data_xfer_timeout, data_done_timeout, quit_timeout;
	unsigned min_backoff, max_backoff, queue_run_delay;
	unsigned cache_time_limit; /* idle seconds before a cached connection is closed */
	unsigned max_queue_lifetime, bounce_queue_lifetime; /* 0: one attempt */
	uint64_t bounce_size_limit;
};

struct relay;

/* Create the relay and register it with the writer (before spool_start()); queues the
 * recovered messages. Returns 0 or a negative errno with err. */
int relay_create(struct relay **out, const struct relay_params *p, char *err,
		       size_t errlen);
int relay_start(struct relay *r);
/* Stop the threads (deliveries in progress are cut; what was not confirmed stays in the
 * spool) and wait for them. Before spool_stop(): the relay needs the writer. */
void relay_stop(struct relay *r);
/* After spool_stop(): the writer no longer hands messages over. */
void relay_free(struct relay *r);

struct relay_stats {
	uint64_t queued;    /* live messages */
	uint64_t sent;      /* recipients */
	uint64_t deferred;  /* delivery attempts that left recipients pending */
	uint64_t bounced;   /* recipients */
	uint64_t removed;   /* messages retired */
	uint64_t reclaimed; /* segments deleted */
	uint64_t expired;   /* recipients returned after their queue lifetime */
	uint64_t notified;  /* delivery status notifications spooled */
	uint64_t relocated; /* messages copied forward to free old segments */
};
void relay_stats(struct relay *r, struct relay_stats *out);
/* The delivery delays (a message's arrival to a recipient's final status, sent or
 * bounced, as Postfix's delay=) per bucket of MX_LATENCY_BOUNDS_US (mxgate/
 * worker_metrics.h; +Inf last), and their sum in µs. */
void relay_delivery_delays(struct relay *r, uint64_t counts[MX_LATENCY_NBOUNDS + 1],
			   uint64_t *sum_us);

/* ---- the queue and the next hops for the metrics registry (relay_metrics.c) ---- */

/* Where a live message is; each is in exactly one (the first that applies, in this
 * order), so the states add up to relay_stats()'s queued. */
enum relay_qstate {
	RELAY_QS_HOLD,     /* held (policy HOLD, mxgate-queue hold) */
	RELAY_QS_ACTIVE,   /* a thread works on it (a delivery attempt, relocation) */
	RELAY_QS_DEFERRED, /* waiting for its next attempt (backoff) */
	RELAY_QS_WAITING,  /* waiting for a free connection to a destination at its limit */
	RELAY_QS_READY,    /* queued for the next free delivery thread */
	RELAY_QS_MAX
};
/* "hold", "active", "deferred", "waiting", "ready" */
const char *relay_qstate_name(enum relay_qstate s);

struct relay_queue_states {
	uint64_t messages[RELAY_QS_MAX];
	uint64_t oldest_arrival_us; /* wall-clock µs of the oldest live message; 0: none */
};
/* Count the live messages by state under the relay's lock (the lock the queue commands
 * take): O(live messages) per call, a compare and an increment each. */
void relay_queue_states(struct relay *r, struct relay_queue_states *out);

/* Next hops: the first RELAY_NEXTHOP_SLOTS destinations this relay used get a row of
 * their own, named by the destination's key (relay_transport.h: "smtp:192.0.2.1:25",
 * "lmtp:unix:/run/dovecot/lmtp"); later ones share the row "other". */
#define RELAY_NEXTHOP_SLOTS 64
struct relay_nexthop_counts {
	uint64_t attempts;  /* transactions tried (a group of recipients for one next hop) */
	uint64_t delivered; /* recipients the next hop accepted */
	uint64_t deferred;  /* recipients deferred (4xx, no connection, timeout) */
	uint64_t bounced;   /* recipients refused for good (5xx) */
};
/* fn once per row in use ("other" last, when used), from any thread without a lock. */
void relay_nexthops(struct relay *r,
		    void (*fn)(void *ctx, const char *nexthop,
			       const struct relay_nexthop_counts *c),
		    void *ctx);

/* ---- the queue, for operators (mxgate-queue through the control socket) ---- */

/* One live message as the relay sees it now. */
struct relay_msg_info {
	char id[QUEUE_ID_SIZE];
	uint64_t size;        /* message bytes */
	bool active;          /* a delivery attempt or relocation is running */
	bool held;
	bool deferred;        /* waiting for its next attempt */
	bool bounce_pending;  /* every recipient decided; the DSN is not yet spooled */
	unsigned attempts;
	int64_t next_attempt; /* wall-clock seconds; 0 when not deferred */
	const char *reason;   /* the last deferral reason, or the hold reason; NULL if none */
	const struct spool_msg_entry *entry; /* recipient states (rstate) */
};

/* Call fn for every live message in ID (arrival) order, with its envelope read from the
 * spool (rec: message bytes not loaded). The queue is not locked while fn runs: a message
 * may change meanwhile. fn returns non-zero to stop. Returns 0 or a negative errno. */
typedef int relay_list_fn(void *ctx, const struct relay_msg_info *info,
				const struct spool_record *rec);
int relay_list(struct relay *r, relay_list_fn *fn, void *ctx);

/* Read live message id whole (envelope and bytes) for `mxgate-queue show`. Returns 0 and
 * *out (spool_record_free()), -ENOENT when id is not in this relay's queue, or another
 * negative errno with err. */
int relay_read(struct relay *r, const char *id, struct spool_record **out,
		     char *err, size_t errlen);

enum relay_op {
	RELAY_HOLD,    /* keep it until released (durable HOLD record) */
	RELAY_RELEASE, /* deliver it again (durable HOLD record, released) */
	RELAY_DELETE,  /* remove it without delivering (durable RETIRE), no DSN */
	RELAY_REQUEUE, /* forget its retry history and try now */
	RELAY_FLUSH,   /* try now (deferred messages; a held one stays held) */
	RELAY_OP_MAX
};
const char *relay_op_name(enum relay_op op);

/* Apply op to message id, or to every live message when id is NULL. Waits until the
 * records it writes are durable. A message in the middle of a delivery attempt is changed
 * once the attempt ends (its outcome is kept: what the next hop took is not sent again).
 * Returns the number of messages changed (0 when nothing needed to change), -ENOENT when
 * id is not in the queue, -EDESTADDRREQ for a flush or requeue while no next hop is
 * configured (keep_only), or another negative errno (the spool refused the record). */
int relay_admin(struct relay *r, enum relay_op op, const char *id);

#endif
