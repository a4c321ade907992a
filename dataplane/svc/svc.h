/* Services: threads that do what a worker must never wait for (DNS lookups, policy
 * servers; later SASL backends and milters), and the queues between them and the workers.
 *
 *   worker                               service thread (one per kind)
 *   svc_submit(req)  -> per-worker ring ->  svc_port_take()      (request in)
 *   svc_client_flush(): one wake-up per      ... the service's own I/O, timers ...
 *      iteration for the services it fed
 *   svc_client_poll() <- per-worker ring <-  svc_port_complete()  (answer out), and the
 *      (fn per answer: resume the owner)       worker's wake fd (kernel) is written once
 *
 * Every ring has one producer and one consumer (a worker and a service thread), so
 * neither side takes a lock. A worker never has more requests in flight with one service
 * than its rings hold, so an answer always has room; what it submits beyond that waits in
 * the worker's own queue (FIFO, one request per waiting connection, so bounded by the
 * worker's connections) and enters the ring as answers free room. A request is never
 * refused for want of room: under a flood of lookups, a lookup that failed at once would
 * be "not listed" to a DNSBL, and the flood would open the gate for everyone else. Every request carries a deadline: the
 * service answers by then, if only with a timeout, so a connection never waits forever.
 *
 * A request belongs to the worker until svc_submit() succeeds, to the service until it
 * comes back through svc_client_poll(), and to the worker again after (svc_request_free()).
 * The owner pointer says what waits for it; a connection that goes away first marks its
 * pending operation cancelled and frees it when the answer comes. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_H
#define MXGATE_DATAPLANE_SVC_SVC_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/svc/svc_dict.h"
#include "mxgate/inet.h"
#include "smtp/smtp_dovecot_auth.h"
#include "tables/dns_message.h"
#include "tables/dns_result.h"

#define SVC_RING_SIZE 4096        /* requests in flight per worker and service */
#define SVC_ENDPOINT_MAX 256      /* "inet:127.0.0.1:10023", "unix:/var/run/policy" */
#define SVC_POLICY_ACTION_MAX 4096

enum svc_kind {
	SVC_DNS,     /* the resolver (svc_resolver.c) */
	SVC_POLICY,  /* policy servers (svc_policy.c) */
	SVC_STATE,   /* dynamic state tables (svc_state.c, svc_dict.h) */
	SVC_SASL,    /* Dovecot's auth socket for SMTP AUTH (svc_sasl.c) */
	SVC_GREYLIST, /* check_greylist (svc_greylist.c): requests and answers in u.policy */
	SVC_KIND_MAX
};

const char *svc_kind_name(enum svc_kind k);

/* A DNS question and, when it comes back, its answer. */
struct svc_dns {
	enum dns_type type;
	char name[DNS_HOSTNAME_MAX + 1];   /* presentation, as dns_query_init() takes it */
	struct dns_result *result;          /* set by the resolver: a reference the request
					       owns (never NULL on return: TEMPFAIL at worst) */
};

/* A policy delegation query (SMTPD_POLICY_README) and its reply. */
struct svc_policy {
	char endpoint[SVC_ENDPOINT_MAX];    /* inet:HOST:PORT or unix:PATH (Postfix syntax) */
	uint32_t timeout_ms;                /* smtpd_policy_service_timeout: each try */
	uint32_t max_idle_ms;               /* smtpd_policy_service_max_idle */
	uint32_t max_ttl_ms;                /* smtpd_policy_service_max_ttl */
	unsigned try_limit;                 /* smtpd_policy_service_try_limit */
	uint32_t retry_delay_ms;            /* smtpd_policy_service_retry_delay (0: the
					       service's params.retry_delay_ms) */
	unsigned request_limit;             /* smtpd_policy_service_request_limit (0: none) */
	char *request;                      /* the encoded request (smtp_delegation), owned */
	size_t request_len;
	char *action;                       /* set by the service when status is 0 (NUL-
					       terminated, at most SVC_POLICY_ACTION_MAX
					       bytes; owned by the request); NULL else. A
					       pointer, so a DNS request stays small */
};

/* A read or write of a dynamic state table (svc_state.h). */
enum svc_state_op {
	SVC_STATE_GET,
	SVC_STATE_PUT,
	SVC_STATE_DEL,
	SVC_STATE_OP_MAX
};

const char *svc_state_op_name(enum svc_state_op op);

struct svc_state {
	char map[SVC_ENDPOINT_MAX];         /* the spec: "btree:/path", "memcache:/x.cf" */
	enum svc_state_op op;
	char key[SVC_DICT_KEY_MAX + 1];     /* NUL-terminated, not empty */
	char *value;                        /* PUT: what to store (set by the worker); GET:
					       set by the service when status is 0, NUL-
					       terminated after value_len bytes. Owned by
					       the request (heap), so a DNS request stays
					       small */
	size_t value_len;                   /* at most SVC_DICT_VALUE_MAX */
	uint32_t ttl_s;                     /* PUT: seconds the entry lives (0: no expiry) */
};

/* One step of an SMTP AUTH exchange with Dovecot's auth server (svc_sasl.h). */
enum svc_sasl_op {
	SVC_SASL_START,  /* AUTH: a new exchange with mech, the session's facts and maybe data */
	SVC_SASL_CONT,   /* CONT: the client's answer (data) to the last challenge */
	SVC_SASL_CANCEL, /* CANCEL: the exchange is over for the session (answered at once) */
	SVC_SASL_OP_MAX
};

const char *svc_sasl_op_name(enum svc_sasl_op op);

/* Valid when the request's status is 0; any other status (the worker's queue timed it out,
 * the service stopped) is answered as TEMPFAIL. svc_request_new() sets TEMPFAIL. */
enum svc_sasl_result {
	SVC_SASL_OK,        /* authenticated: text = the user name (printable, as Dovecot's user=) */
	SVC_SASL_CONTINUE,  /* text = the challenge (base64, maybe empty) for "334 ": send a CONT next */
	SVC_SASL_FAIL,      /* 535: text = Dovecot's reason (maybe empty) */
	SVC_SASL_TEMPFAIL,  /* 454: text = reason (Dovecot temp fail, no connection:
			       SMTP_DOVECOT_REASON_NO_SERVER, lost: _CONN_LOST) */
	SVC_SASL_BAD_MECH,  /* the mechanism is not offered / not allowed by sec_opts */
	SVC_SASL_RESULT_MAX,
};

const char *svc_sasl_result_name(enum svc_sasl_result r);

/* Most bytes of data (an initial response or a CONT line, base64): what fits a Dovecot
 * line; a larger one is answered FAIL without asking Dovecot (it would drop the
 * connection). smtpd_sasl_response_limit (12288) is below it. */
#define SVC_SASL_DATA_MAX SMTP_DOVECOT_LINE_MAX

struct svc_sasl {
	char endpoint[SVC_ENDPOINT_MAX]; /* "unix:/path" or "inet:host:port" (the caller
					    resolved smtpd_sasl_path) */
	enum svc_sasl_op op;
	uint64_t exchange;   /* START's answer sets it (never 0); CONT and CANCEL name it */
	/* START */
	char mech[SMTP_DOVECOT_MECH_NAME_MAX + 1];
	unsigned sec_opts;   /* SMTP_DOVECOT_SEC_* */
	char service[32];    /* smtpd_sasl_service, "smtp" */
	struct mx_inet_addr local, remote; /* family 0: left out of the AUTH line */
	uint16_t local_port, remote_port;  /* 0: left out */
	bool secured, valid_client_cert, has_initial_response;
	char *data;          /* START: the initial response; CONT: the client's base64 line
				(owned by the request; freed by svc_request_free()) */
	size_t data_len;
	/* the answer */
	enum svc_sasl_result result;
	char *text;          /* see svc_sasl_result (NUL-terminated; owned by the request;
				never NULL when status is 0) */
	char *user;          /* FAIL: the user= Dovecot named (for the log), or NULL */
};

struct svc_request {
	enum svc_kind kind;
	unsigned worker;            /* set by svc_submit() */
	struct svc_request *queued_next; /* the worker's queue while its ring is full */
	void *owner;                /* the worker's: what waits for the answer */
	/* Set by the worker (svc_request_cancel()) when nobody waits for the answer any
	 * more: a service may then skip work not yet begun (a policy query not yet sent
	 * answers -ECANCELED instead of holding one of the server's connections). The
	 * answer still comes back, as always. */
	atomic_bool cancelled;
	uint64_t deadline_ms;       /* monotonic (mx_clock_monotonic_ms()): answered by then */
	int status;                 /* set by the service: 0, or a negative errno
				       (-ETIMEDOUT, -ECONNREFUSED, -EPROTO, ...) */
	union {
		struct svc_dns dns;
		struct svc_policy policy;
		struct svc_state state;
		struct svc_sasl sasl;
	} u;
};

/* A request of a kind, zeroed; NULL when out of memory. */
struct svc_request *svc_request_new(enum svc_kind kind);
/* Free it and what it owns (the DNS result reference, the policy request, the state
 * value). */
/* Free it and what it owns (the DNS result reference, the policy request, the SASL data
 * and text). */
void svc_request_free(struct svc_request *r);
/* The worker no longer wants the answer of r, which is in flight (submitted, not yet come
 * back through svc_client_poll()). */
static inline void svc_request_cancel(struct svc_request *r)
{
	atomic_store_explicit(&r->cancelled, true, memory_order_relaxed);
}

/* ---- the worker's side ---- */

struct svc_set;     /* the running services */
struct svc_client;  /* one worker's queues to them */

/* This worker's queues (worker < the set's worker count). wake_fd: an eventfd the services
 * write when answers arrive (kernel transport), or -1 (the dpdk poll loop checks
 * svc_client_pending() every iteration). The fd must stay open until svc_set_stop()
 * returned: a service may be writing it while the client is freed. NULL when out of
 * memory. */
struct svc_client *svc_client_new(struct svc_set *set, unsigned worker, int wake_fd);
/* After every request came back (the worker is stopping and drained) or the services are
 * stopped. NULL is a no-op. */
void svc_client_free(struct svc_client *c);

/* Hand a request to its service. 0 (when this worker already has SVC_RING_SIZE requests in
 * flight with it, the request waits in the worker's queue until an answer makes room; one
 * whose deadline passes there comes back from svc_client_poll() with -ETIMEDOUT), or
 * -ENOSYS when that service is not running: the request stays the caller's, who answers
 * as for a temporary failure. */
int svc_submit(struct svc_client *c, struct svc_request *r);
/* Wake the services that got requests since the last call (one write each); call once per
 * iteration of the worker's loop. */
void svc_client_flush(struct svc_client *c);
/* Answers that came back, each handed to fn(arg, request); fn owns the request after.
 * Then queued requests move into the rings freed (or come back -ETIMEDOUT when their
 * deadline passed while they waited). */
void svc_client_poll(struct svc_client *c, void (*fn)(void *arg, struct svc_request *r),
		     void *arg);
/* True when svc_client_poll() has something to hand over: one atomic load per service
 * (and a clock read while requests wait in the worker's queue). */
bool svc_client_pending(const struct svc_client *c);
/* Requests in flight or waiting in the worker's queue (for statistics and a clean stop). */
unsigned svc_client_in_flight(const struct svc_client *c);

/* ---- the services' side ---- */

struct svc_port; /* what one service thread sees of the workers */

/* A service: started with its port, stopped before the set is freed. */
struct svc_ops {
	enum svc_kind kind;
	/* Start the thread; it takes requests with svc_port_take() when svc_port_wake_fd()
	 * is readable, and answers each with svc_port_complete(). 0 or a negative errno with
	 * err. */
	int (*start)(void **impl, struct svc_port *port, const void *params, char *err,
		     size_t errlen);
	/* Stop the thread: requests still queued or in progress are answered -ECANCELED
	 * first. */
	void (*stop)(void *impl);
	/* A statistics line for the log (SIGUSR1); NULL: none. */
	void (*log_statistics)(void *impl, const char *when);
};

/* The eventfd workers write when they queued requests for this service (EFD_NONBLOCK; the
 * service reads it to clear it, then takes every request). */
int svc_port_wake_fd(const struct svc_port *p);
/* The next queued request from any worker (round robin), or NULL. */
struct svc_request *svc_port_take(struct svc_port *p);
/* Give a request back to its worker (the worker's wake fd is written once per batch:
 * call svc_port_flush() when a batch is done). */
void svc_port_complete(struct svc_port *p, struct svc_request *r);
void svc_port_flush(struct svc_port *p);

/* ---- the set ---- */

struct svc_set_params {
	unsigned workers;                     /* queues per service */
	/* The services to run (ops[k]->kind == k) with their own parameters; a NULL ops
	 * means that service does not run (its requests get -ENOSYS). */
	const struct svc_ops *ops[SVC_KIND_MAX];
	const void *params[SVC_KIND_MAX];
	/* Frees an answer no worker took (its worker stopped before it came back), with
	 * what its owner pointer holds; NULL: svc_request_free() only. */
	void (*orphan)(struct svc_request *r);
};

/* Create the queues and start every service whose params are given. 0, or a negative
 * errno with err (nothing is left running). */
int svc_set_start(struct svc_set **out, const struct svc_set_params *p, char *err,
		  size_t errlen);
/* Stop the services (after the workers stopped submitting; each answers what it still
 * holds), then free the set (after every svc_client was freed): answers no worker took go
 * to params.orphan. NULL is a no-op. */
void svc_set_stop(struct svc_set *s);
void svc_set_free(struct svc_set *s);
void svc_set_log_statistics(struct svc_set *s, const char *when);

/* ---- helpers the service threads share ---- */

/* Start a service's thread (named for ps, top and perf: "mx-policy"). 0, or a negative
 * errno with err. */
int svc_thread_start(pthread_t *thread, void *(*main)(void *), void *arg, const char *name,
		     char *err, size_t errlen);
/* Stop it: set *stop, wake the thread through its port's eventfd, join it. */
void svc_thread_stop(pthread_t thread, atomic_bool *stop, struct svc_port *port);

/* A warning of one kind at most once per interval (a dead server under load would log one
 * line per request otherwise), with how many were held back: "TEXT (N more like it
 * suppressed)". now: monotonic ms. */
struct svc_warn_limit {
	uint64_t at;         /* when the last one was logged (0: never) */
	unsigned suppressed; /* held back since */
};
void svc_warn_limited(struct svc_warn_limit *w, uint64_t now, uint64_t interval_ms,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void svc_warn_limitedv(struct svc_warn_limit *w, uint64_t now, uint64_t interval_ms,
		       const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

extern const struct svc_ops svc_resolver_ops; /* svc_resolver.c */
extern const struct svc_ops svc_policy_ops;   /* svc_policy.c */
extern const struct svc_ops svc_state_ops;    /* svc_state.c */
extern const struct svc_ops svc_sasl_ops;     /* svc_sasl.c */
extern const struct svc_ops svc_greylist_ops; /* svc_greylist.c */

#endif
