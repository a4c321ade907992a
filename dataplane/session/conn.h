/* The glue between one client connection and its SMTP session, independent of the
 * transport (kernel sockets now, the DPDK stack next): it feeds bytes to the engine,
 * answers the engine's events (the restriction lists at every command, header_checks on
 * the message, the spool at DATA and end of message), keeps the transaction's envelope
 * with policy's actions, and writes the Postfix-style log lines a postmaster greps for:
 *
 *     connect from unknown[192.0.2.1]
 *     4ZhQ5N0Bc9z01: client=unknown[192.0.2.1]
 *     4ZhQ5N0Bc9z01: message-id=<20241122.1@example.org>
 *     4ZhQ5N0Bc9z01: from=<a@example.org>, size=1234, nrcpt=1 (queued as 4ZhQ5N0Bc9z01)
 *     NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@example.net>: Relay
 *         access denied; from=<a@example.org> to=<x@example.net> proto=ESMTP helo=<h>
 *     timeout after DATA (1234 bytes) from unknown[192.0.2.1]
 *     lost connection after RCPT from unknown[192.0.2.1]
 *     disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
 *
 * The transport owns the socket, buffers, timers and the decision to close; this module
 * owns what the bytes mean. One worker thread drives a connection for its whole life, so
 * nothing here locks. */
#ifndef MXGATE_DATAPLANE_SESSION_CONN_H
#define MXGATE_DATAPLANE_SESSION_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/spool/queue_id.h"
#include "dataplane/transport.h"
#include "dataplane/spool/spool_writer.h"
#include "dataplane/svc/svc.h"
#include "mgmt/config.h"
#include "mgmt/generation.h"
#include "mxgate/counters.h"
#include "mxgate/worker_metrics.h"
#include "mxgate/inet.h"
#include "mxgate/span.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_restrictions.h"
#include "tables/anvil.h"

/* A worker's hold on one configuration generation (mgmt/generation.h): a reference, the
 * policy contexts (table handles on this worker's LMDB reader) of its services, made on
 * first use, and how many of this worker's connections use it. */
struct conn_gen;

/* What a worker shares with all its connections: the published generations, its LMDB
 * reader, its Hyperscan scratch, its spool client, queue-ID generator and counters. */
struct smtp_checks;
struct smtp_policy_actions;

/* header_checks states (about 30 KB each) and restriction actions (6.6 KB) a worker keeps
 * for reuse: as many as the messages it receives at once, up to these (at most about 8 MB
 * and 1.7 MB held). */
#define CONN_CHECKS_POOL_MAX 256u
#define CONN_ACTIONS_POOL_MAX 256u

struct conn_worker {
	struct mx_gen_pub *gens;
	unsigned canary_acc;          /* the canary's running share (mx_gen_pick()) */
	struct conn_gen *held;        /* the generations this worker holds, newest first */
	/* This worker's LMDB reader (NULL without tables), renewed between batches. */
	struct tables_reader *tables;
	/* Hyperscan/PCRE2 scratch for every header_checks set of every generation this worker
	 * serves (Hyperscan grows one scratch to fit each database). */
	struct checks_scratch *checks_scratch;
	/* header_checks states of messages that ended, kept for the next ones (each is about
	 * 30 KB: allocating and zeroing one per message cost more than the checks). */
	struct smtp_checks *checks_pool[CONN_CHECKS_POOL_MAX];
	unsigned checks_pooled;
	/* the same for the restriction lists' actions of a transaction (MAIL to its end) */
	struct smtp_policy_actions *actions_pool[CONN_ACTIONS_POOL_MAX];
	unsigned actions_pooled;
	struct spool *spool;
	struct spool_client *spool_client;
	/* This worker's queues to the service threads (the transport makes it, knowing how
	 * the worker is woken); NULL: no services, lookups fail at once. */
	struct svc_client *svc;
	uint64_t rbl_warned_ms;        /* the last "RBL error code" warning (rate limit) */
	/* What each Dovecot auth endpoint offers (the SASL service keeps it); NULL: no SASL
	 * service, AUTH fails at once. */
	struct svc_sasl_directory *sasl;
	/* This worker's TLS library context (dataplane/tls/tls_ctx.h), made when a service
	 * with TLS is first used; NULL until then. */
	struct tls_worker *tls;
	/* The per-client counts every worker shares (anvil(8)'s limits); NULL: none kept. */
	struct anvil *anvil;
	/* The screen's own per-client connection counts (postscreen_client_connection_count_
	 * limit), shared by every worker as postscreen's process-wide table is; NULL: none. */
	struct anvil *screen_counts;
	uint64_t anvil_warned_ms;      /* the last "not limited" warning (rate limit) */
	struct queue_id_gen qid;
	struct mx_counters counters;
	/* Latency histograms and replies by code (mxgate/worker_metrics.h): this worker
	 * writes them, the metrics registry reads them. */
	struct mx_worker_metrics metrics;
	unsigned index;
};

/* Build a worker's own state from the transport's parameters: the table reader, the spool
 * (spools[index % nspools]) and the queue-ID generator. The spool client is the
 * transport's to create (it knows how the worker is woken). 0, or a negative errno with a
 * message in err. */
int conn_worker_init(struct conn_worker *w, const struct transport_params *p, unsigned index,
		     char *err, size_t errlen);
/* Free what conn_worker_init() and the transport put in w (a zeroed w is fine); every
 * connection is gone. */
void conn_worker_fini(struct conn_worker *w);
/* Take a fresh LMDB snapshot, so table changes committed since the last one are seen.
 * Call between batches of work (each poll iteration that did something). */
void conn_worker_renew_tables(struct conn_worker *w);
/* Let go of the generations no connection of this worker uses and that new connections
 * no longer get. Call at the worker's quiescent point (the end of a poll iteration). */
void conn_worker_release_gens(struct conn_worker *w);

/* Add the worker's counters to *sum, from another thread (relaxed loads: a statistics
 * line tolerates a counter that moves while it is read). */
void conn_worker_counters_add(struct mx_counters *sum, const struct conn_worker *w);

struct conn;

/* A new connection from peer:port to local:local_port. It gets the generation new
 * connections get now (the canary's share, or the current one) and the service of that
 * generation listening on local:local_port, and keeps both for its whole life.
 * IPv4-mapped addresses are shown and matched as IPv4; no reverse DNS: the name is
 * "unknown", as Postfix shows a client without one. Logs "connect from". Returns NULL
 * when out of memory, or when no generation serves local:local_port (a listener being
 * closed by a reload). local is the address the client connected to (policy servers are
 * told it); by_port: the service is found by local_port alone (the dpdk transport serves
 * every port address). */
struct conn *conn_new(struct conn_worker *w, const struct mx_inet_addr *peer, uint16_t port,
		      const struct mx_inet_addr *local, uint16_t local_port, bool by_port);

/* A connection's generation and service, picked as conn_new() picks them (the canary's
 * share or the current generation, the stress variant under stress) and held by the
 * worker: conn_new_picked() makes the connection on them later (a screened connection
 * that passed gets the generation and service it was screened with). */
struct conn_pick {
	struct conn_gen *cg;
	unsigned k;                    /* its service entry there */
	const struct mx_service *svc;
};
/* 0, -ENOENT (no service at local:local_port), -ENOMEM. */
int conn_pick(struct conn_worker *w, const struct mx_inet_addr *peer,
	      const struct mx_inet_addr *local, uint16_t local_port, bool by_port,
	      struct conn_pick *out);
struct conn *conn_new_picked(struct conn_worker *w, const struct conn_pick *p,
			     const struct mx_inet_addr *peer, uint16_t port,
			     const struct mx_inet_addr *local, uint16_t local_port);

/* Count a connection refused at accept (mxgate_max_connections, out of memory, stopping)
 * on the per-service counters of the current generation's service at local:local_port
 * (by_port: any address, as conn_pick()); nothing when no service listens there. The
 * worker's own counter slot: a plain increment. */
void conn_count_refused_at(struct conn_worker *w, const struct mx_inet_addr *local,
			   uint16_t local_port, bool by_port);

/* The smtpd_timeout of the connection's service, in ms. */
uint64_t conn_timeout_ms(const struct conn *c);

/* The transport's handle for this connection, given back by conn_owner() when the spool
 * has news for it (see conn_spool_news()). */
void conn_set_owner(struct conn *c, void *owner);
void *conn_owner(const struct conn *c);

/* The spool writer has news for this connection's message (spool_client_poll() calls the
 * transport, which calls this): a commit result (the 250, 451 or 452 is queued now), or
 * room for more message bytes. The transport then services the connection again. */
void conn_spool_news(struct conn *c);

/* True while the connection waits for the spool (a commit's result, or the writer taking
 * a fragment): conn_input() consumes nothing meanwhile; do not read more, and wait for
 * conn_spool_news(). */
bool conn_waiting(struct conn *c);

/* Start the session: look the client's name up (smtpd_peername_lookup: PTR, then its
 * addresses to confirm it, through the resolver service) and then log "connect from",
 * run the client restrictions of smtpd_delay_reject = no and queue the 220 greeting (or
 * the refusal). While the lookup is in flight conn_waiting() is true. */
void conn_greet(struct conn *c);

/* A service answered a request of this worker (svc_client_poll() hands it to the
 * transport, which calls this): the connection it is for acts on it. Returns the
 * transport's handle of that connection, to be serviced again; NULL when it went away
 * meanwhile (the request is freed here either way). */
void *conn_service_answer(struct svc_request *r);

/* An answer no worker took (svc_set_params.orphan): free it and its owner. */
void conn_service_orphan(struct svc_request *r);

/* Feed received bytes. Returns how many were consumed; the caller keeps the rest and
 * offers them again later. The engine stops early when its output is above its
 * high-water mark (flush, then call again), when a protocol error asks for a delay
 * (conn_take_delay_ms()), or when the session has ended (conn_closed()).
 * Over TLS (after STARTTLS, or from the start on a smtpd_tls_wrappermode service) the
 * bytes are ciphertext: they are decrypted here, and plaintext the engine could not take
 * yet waits in the connection (conn_pending_input()). */
size_t conn_input(struct conn *c, const char *buf, size_t len);

/* True when the connection holds decrypted input the engine has not taken: call
 * conn_input() (with no new bytes if there are none) when it can go on, e.g. after a
 * service answered or the output drained. */
bool conn_pending_input(const struct conn *c);

/* Bytes to send (replies, or over TLS the ciphertext of them and the handshake), and how
 * many were sent. */
struct mx_span conn_output(struct conn *c);
void conn_output_done(struct conn *c, size_t n);

/* When smtpd_timeout runs out for this connection (monotonic ms), after what just
 * happened at now_ms: `received` bytes were taken from the client, or `sent` reply bytes
 * left. With smtpd_per_request_deadline = no, each read or write restarts the clock, as
 * Postfix's per-call timeout; with yes (mxgate's default) the clock restarts only when a
 * new request begins, and message content extends it at smtpd_min_data_rate, so a client
 * that trickles bytes cannot hold a connection. The first call (at accept) starts it. */
uint64_t conn_deadline(struct conn *c, uint64_t now_ms, size_t received, bool sent);

/* The delay (ms) a protocol error asked for (smtpd_error_sleep_time): hold the output
 * and the input this long. Returns 0 when none; reading it clears it. */
uint32_t conn_take_delay_ms(struct conn *c);

/* True once the session is over: send what conn_output() holds, then close. */
bool conn_closed(const struct conn *c);

/* True while a message is being received (between 354 and its end). */
bool conn_in_data(const struct conn *c);

/* The transport's idle timer fired: log "timeout after ...", queue the 421, drop the
 * message in progress. */
void conn_timeout(struct conn *c);

/* The gateway is stopping: queue the 421 and drop the message in progress. A message
 * being committed is never cut short: while its commit is pending the 421 waits, and
 * follows its 250 (or 451) when the result arrives. */
void conn_shutdown(struct conn *c);

/* The peer went away (EOF, reset, write error): log "lost connection after ..." unless
 * the session had already ended, and drop the message in progress. */
void conn_peer_closed(struct conn *c);

/* Log "disconnect from ..." with the command counts and free everything. */
void conn_free(struct conn *c);

/* "unknown[192.0.2.1]", for the transport's own log lines. */
const char *conn_client(const struct conn *c);

/* Bytes this connection holds (for memory reports). */
size_t conn_memory(const struct conn *c);

#endif
