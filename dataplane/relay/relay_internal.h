/* The relay's internals, shared by its files (nothing outside dataplane/relay/ includes
 * this):
 *   relay.c          the queue manager: messages, the ready queue, routing, one delivery
 *                    attempt, notifications, the threads, set-up
 *   relay_smtp.c     next hops: destinations, their connection caches, one SMTP/LMTP
 *                    conversation on the client codec (smtp/smtp_client.h)
 *   relay_admin.c    operator changes (hold, release, delete, requeue, flush) and listing
 *   relay_reclaim.c  deleting segments nothing needs, relocating what pins them */
#ifndef MXGATE_DATAPLANE_RELAY_RELAY_INTERNAL_H
#define MXGATE_DATAPLANE_RELAY_RELAY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mxgate/worker_metrics.h"
#include "dataplane/relay/relay.h"
#include "dataplane/spool/queue_id.h"
#include "smtp/smtp_client.h"

/* Bounds on what the next hop may send us, and on what we keep. */
/* Bounds on what the next hop may send us. */
#define RELAY_LINE_MAX 2048   /* one reply line kept (RFC 5321 4.5.3.1.5 says 512) */
#define RELAY_REPLY_LINES 100 /* lines of one multi-line reply */
#define RELAY_TEXT_MAX 1024   /* reply text kept for logs and DELIVERY records */
#define RELAY_WHY_MAX (RELAY_TEXT_MAX + 400)
#define RELAY_OUT_SIZE 65536  /* the codec's output buffer bound */
#define RELAY_IN_SIZE 8192    /* one read of replies */
#define RELAY_RECLAIM_MS 1000 /* at most one reclaim pass a second */
#define RELAY_MAX_MAPS 16     /* tables in transport_maps */
/* Relocation: when the segments below the newest two hold at least this many times more
 * bytes than the live messages in them, the live ones are copied forward (so copying
 * costs at most a quarter of what it frees). */
#define RELAY_RELOCATE_RATIO 4

struct relay_dest {
	struct relay_nexthop nh;
	char host[160];              /* nh.name without the port: "host X said" */
	unsigned nconn;              /* open connections, idle or in use */
	struct relay_conn *idle;     /* cached idle connections, most recent first */
	uint64_t dead_until_ms;      /* connecting failed: defer without trying until then */
	char dead_reason[RELAY_WHY_MAX];
	unsigned nh_slot;            /* its row of next-hop counters (relay_metrics.c) */
	struct relay_dest *next;
};

/* A connection to a next hop: the socket and the SMTP/LMTP client codec that speaks on it
 * (smtp/smtp_client.h), kept between messages in its destination's cache. */
struct relay_conn {
	int fd;
	struct relay_dest *dest;
	struct smtp_client *cl;
	uint64_t idle_since_ms;
	struct relay_conn *next; /* in dest->idle */
	char in[RELAY_IN_SIZE];  /* replies read and not yet taken by the codec */
	size_t in_len;
};

struct relay_msg {
	struct spool_msg_entry e; /* e.rstate/e.rtext: per recipient state, grown as needed */
	uint64_t min_seg;
	uint64_t next_try_ms;
	int64_t next_try_wall;
	unsigned attempts;
	bool busy;      /* a thread works on it (delivery, relocation, an operator change) */
	bool in_ready;  /* in the ready queue */
	bool deferred;  /* waiting for its next attempt */
	bool waiting;   /* waiting for a free connection to a destination at its limit */
	/* operator changes asked for while busy, applied when the attempt ends */
	bool want_hold, want_release, want_delete;
	char *reason;   /* the last deferral reason (malloc'd), for mailq */
	uint64_t arrival_us; /* wall-clock µs its queue ID carries (the metrics' oldest age) */
	struct relay_msg *prev, *next; /* all live messages */
	struct relay_msg *qnext;       /* ready queue */
};

/* Waiting for records handed to the writer to become durable. */
struct relay_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned pending;
	int rc;
};

struct relay_thread {
	struct relay *r;
	pthread_t tid;
	bool started;
	struct relay_conn *conn; /* the connection in use */
	struct relay_wait wait;
	/* spooling notifications: this thread's client of the writer */
	struct spool_client *client;
	int wake_fd;
	/* transport_maps, through this thread's own LMDB reader */
	struct tables_reader *reader;
	struct table *maps[RELAY_MAX_MAPS];
	size_t nmaps;
};

struct relay {
	struct relay_params p;
	char *helo_name;
	char *transport_maps;
	int seg_dir_fd;
	char map_specs[RELAY_MAX_MAPS][TABLE_NAME_MAX + 16];
	size_t nmaps;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	struct relay_msg *all;
	struct relay_msg *ready_head, *ready_tail;
	uint64_t last_run_ms;
	uint64_t last_reclaim_ms;
	uint64_t reclaim_seg; /* the writer's segment at the last reclaim pass */
	bool reclaim_wanted;
	struct relay_dest *dests;
	unsigned ndests;
	size_t nwaiting; /* messages with `waiting` set: a released slot scans only if any */
	struct queue_id_gen idgen; /* for notifications, under mu */

	unsigned nthreads;
	struct relay_thread *threads;

	atomic_uint_fast64_t queued, sent, deferred, bounced, removed, reclaimed;
	atomic_uint_fast64_t expired, notified, relocated;
	/* arrival to a recipient's final status (sent or bounced), per bucket of
	 * MX_LATENCY_BOUNDS_US (+Inf last), and the sum in µs: relay_delivery_delays() */
	atomic_uint_fast64_t delay_hist[MX_LATENCY_NBOUNDS + 1], delay_sum_us;
	/* next hops' counters (relay_metrics.c): rows [0, nh_used) are named, row
	 * RELAY_NEXTHOP_SLOTS is "other"; a row's name is written before nh_used covers it
	 * (release), never after */
	struct relay_nh_row {
		char name[160];
		atomic_uint_fast64_t attempts, delivered, deferred, bounced;
	} nh[RELAY_NEXTHOP_SLOTS + 1];
	atomic_uint nh_used;
};

/* Why a delivery attempt did not go through, in Postfix's words. */
struct relay_failure {
	bool permanent;
	char dsn[16];
	char why[RELAY_WHY_MAX];
};

/* The outcome of one attempt, per recipient. */
struct relay_outcome {
	enum spool_rcpt_state *st; /* per recipient: SENT, FAILED, or PENDING (deferred) */
	char (*text)[RELAY_WHY_MAX];
	char (*dsn)[16];
	bool *tried;
	const char **relay; /* relay= in the log: the destination's name, or "none" */
	bool *decided;      /* this attempt decided (or deferred) it: log and record it */
	/* for delays=a/b/c/d (relay_log.h): wall-clock microseconds, 0 when it did not
	 * happen; and whether the next hop spoke LMTP (the line is lmtp's, not smtp's) */
	uint64_t *handoff_us, *setup_us, *done_us;
	bool *lmtp;
};

/* ---- relay.c ---- */

uint64_t relay_now_ms(void);
double relay_wall(void);
void relay_deadline(struct timespec *ts, uint64_t ms);
void relay_set_reason(struct relay_msg *m, const char *why);
/* the queue, under r->mu */
void relay_set_waiting(struct relay *r, struct relay_msg *m, bool waiting);
void relay_ready_push(struct relay *r, struct relay_msg *m);
void relay_ready_unlink(struct relay *r, struct relay_msg *m);
void relay_remove(struct relay *r, struct relay_msg *m);
struct relay_msg *relay_find(struct relay *r, const char *id);
void relay_wake_waiting(struct relay *r);
/* waiting for records handed to the writer */
void relay_wait_init(struct relay_wait *w);
void relay_wait_destroy(struct relay_wait *w);
void relay_wait_done(void *arg, int rc);
void relay_wait_add(struct relay_wait *w, int rc);
void relay_record(struct relay *r, struct relay_wait *w, enum spool_rec_type type,
		  const char *id, uint32_t rcpt, enum spool_rcpt_state st, const char *text);
void relay_record_hold(struct relay *r, struct relay_wait *w, const char *id, bool held,
		       const char *reason);
int relay_wait_end(struct relay_wait *w);
/* a recipient's outcome in o */
void relay_set(struct relay_outcome *o, size_t i, enum spool_rcpt_state st, const char *dsn,
	       const char *text);

/* ---- relay_smtp.c ---- */

/* The destination for nh, created on first use. Under r->mu. NULL when out of memory or
 * over RELAY_MAX_DESTINATIONS. */
struct relay_dest *relay_dest_get(struct relay *r, const struct relay_nexthop *nh);
/* Deliver the recipients gidx[0..gn) of rec to destination d on one connection, setting
 * their outcomes in o. Sets *waiting when d is at its concurrency limit (nothing tried). */
void relay_deliver_group(struct relay_thread *t, const struct spool_record *rec,
			 struct relay_dest *d, const size_t *gidx, size_t gn,
			 struct relay_outcome *o, bool *waiting);
/* Close cached connections idle for smtp_connection_cache_time_limit (QUIT first); the
 * milliseconds until the next one expires (UINT64_MAX: none). Without r->mu. */
uint64_t relay_close_idle(struct relay_thread *t);
/* QUIT every cached connection (the relay stops; t's thread has ended). */
void relay_quit_cached(struct relay_thread *t);
/* Close and free a connection that is not in any cache; NULL is a no-op. */
void relay_conn_discard(struct relay_conn *c);
/* Free every destination and its cached connections (relay_free()). */
void relay_free_dests(struct relay *r);

/* ---- relay_reclaim.c ---- */

/* Delete segments no live message needs, relocating the waiting messages that pin mostly
 * dead ones first. Relay thread, r->mu not held. */
void relay_reclaim(struct relay_thread *t);

/* ---- relay_metrics.c ---- */

/* Give a new destination its next-hop row. Under r->mu. */
void relay_nexthop_assign(struct relay *r, struct relay_dest *d);
/* Count one transaction's outcome for d: the recipients gidx[0..gn) that o decided. */
void relay_nexthop_count(struct relay *r, const struct relay_dest *d,
			 const struct relay_outcome *o, const size_t *gidx, size_t gn);

/* ---- relay_admin.c ---- */

/* Apply operator changes asked for while m was busy. Under r->mu; m not busy. May remove
 * m. The records are written on this thread, with r->mu released meanwhile. */
void relay_apply_wants(struct relay *r, struct relay_msg *m);

#endif
