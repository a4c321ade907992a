/* A configuration generation: everything a connection needs to be served the way the
 * configuration says, built once off the workers and never changed after.
 *
 *   generation = main.cf (its global parameters)
 *              + the services (one per listener: master.cf's smtpd lines, or the
 *                addresses of mxgate_listen), each with its effective parameters (main.cf
 *                with the service's -o overrides), its compiled restriction lists and its
 *                compiled header/body checks
 *                and its TLS settings with the keys and certificates it serves
 *              + per-worker counters (what this generation's connections did)
 *
 * It is reference counted. A reload builds a new one (mx_generation_build) and publishes
 * it (struct mx_gen_pub); a connection keeps the generation it started with, new ones take
 * the newest, or during a canary the one their share says. A failed build changes
 * nothing. The last reference frees it. */
#ifndef MXGATE_MGMT_GENERATION_H
#define MXGATE_MGMT_GENERATION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mgmt/config.h"
#include "mgmt/policy.h"
#include "mgmt/tls_conf.h"
#include "mxgate/inet.h"
#include "smtp/smtp_restrictions.h"
#include "tables/netlist.h"

#define MX_SERVICE_NAME_MAX 80

struct mx_service {
	char name[MX_SERVICE_NAME_MAX]; /* "smtp", "submission", "127.0.0.1:2525" */
	/* where it listens: numeric addresses (kernel transport), and on the dpdk transport
	 * the TCP port on every port address */
	struct mx_listen_addr listen[MX_CONFIG_MAX_LISTEN];
	unsigned nlisten;
	const struct mx_config *cfg;  /* the effective parameters: the generation's main
					 configuration, or an own one with -o overrides */
	struct mx_config *own_cfg;    /* owned when the service has overrides */
	struct smtp_policy *policy;   /* compiled restriction lists */
	struct mx_checks checks;      /* compiled header/body checks */
	/* TLS (mgmt/tls_conf.h): keys and certificates loaded, settings parsed; NULL when
	 * the service offers none. Each worker makes its SSL_CTX from it. */
	struct mx_tls_conf *tls;
	bool tls_borrowed;            /* tls is an earlier service's (same parameters) */
	bool borrowed;                /* policy and checks are another's: an earlier
					 service's (both have main.cf's parameters), or for
					 a stress variant its service's */
	/* The service as new connections get it under stress: its parameters with stress =
	 * yes (mx_config_stress()), its own lists and checks only when a value they are
	 * built from depends on stress. NULL when none of its values does. */
	struct mx_service *stress;
	/* The screen in front of it (a master.cf postscreen service; mgmt/screen.h), its own
	 * in each service and stress variant; NULL: none. */
	struct mx_screen *screen;
};

/* What one generation's connections did, per worker (each worker writes its own slot,
 * so counting takes no lock and no shared cache line; readers sum the slots). */
struct mx_gen_counters {
	uint64_t connections;
	uint64_t connections_closed;  /* open = connections - connections_closed */
	uint64_t messages_accepted;
	uint64_t messages_rejected;   /* refused at DATA or end of data (4xx or 5xx) */
	uint64_t recipients_accepted;
	uint64_t recipients_rejected; /* 5xx at RCPT */
	uint64_t recipients_deferred; /* 4xx at RCPT */
	/* Connections of this service that ended without a session's work: */
	uint64_t connections_refused; /* refused at accept (mxgate_max_connections) */
	uint64_t anvil_refused;       /* refused by anvil's connection count or rate limit */
	uint64_t timed_out;           /* closed by smtpd_timeout */
} __attribute__((aligned(64)));

/* Recipients refused per restriction (the restriction as the log names it:
 * "check_recipient_access hash:/etc/postfix/access", "reject_unauth_destination"), one
 * table per worker, made by the worker on its first refusal. A worker writes the name of a
 * new slot before it marks the slot used (release), so a reader that sees it used reads a
 * whole name. Names past the table's size are counted as "other". */
#define MX_GEN_REJECT_SLOTS 32
#define MX_GEN_REJECT_NAME_MAX 96
#define MX_GEN_REJECT_LIST_MAX 64 /* a longer class name is cut */

struct mx_gen_reject_slot {
	atomic_bool used;
	char name[MX_GEN_REJECT_NAME_MAX];
	/* the list that refused ("smtpd_recipient_restrictions", or the name of the
	 * smtpd_restriction_classes class; "" for a refusal no list made, such as
	 * smtpd_client_recipient_rate_limit) */
	char list[MX_GEN_REJECT_LIST_MAX];
	uint64_t rejected;   /* 5xx */
	uint64_t deferred;   /* 4xx */
};

struct mx_gen_rejects {
	struct mx_gen_reject_slot slot[MX_GEN_REJECT_SLOTS];
	uint64_t other_rejected, other_deferred;
};

struct mx_generation {
	uint64_t id;                  /* 1, 2, ...: the order of builds */
	atomic_uint refs;
	int64_t built_at;             /* wall-clock seconds */
	char *path;                   /* the configuration file it was built from */
	struct mx_config *cfg;        /* main.cf */
	struct mx_service *services;
	unsigned nservices;
	unsigned nworkers;
	struct mx_gen_counters *counters; /* [nworkers][nservices] */
	_Atomic(struct mx_gen_rejects *) *rejects; /* [nworkers], NULL until the first */
};

struct mx_generation_opts {
	const char *path;    /* main.cf */
	uint64_t id;
	unsigned nworkers;   /* counter slots */
	FILE *diag;          /* every problem, as FILE:LINE: problem (may be NULL) */
	/* the gateway's table store when it is open (a reload), where tls_server_sni_maps'
	 * tables are read; NULL: the build opens mxgate_table_directory itself if needed */
	struct tables_env *tables;
};

/* Build a generation: load and check the configuration, its services, compile every
 * service's restriction lists and checks. Returns 0 and *out (one reference), or a
 * negative errno with err (the first problem; diag has them all). */
int mx_generation_build(const struct mx_generation_opts *o, struct mx_generation **out,
			char *err, size_t errlen);

struct mx_generation *mx_generation_get(struct mx_generation *g);
/* Drop a reference; the last frees it. NULL is a no-op. */
void mx_generation_put(struct mx_generation *g);

/* The variant of service i a new connection gets: its stress variant when stress is set
 * and the service has one, else the service. */
const struct mx_service *mx_generation_service(const struct mx_generation *g, unsigned i,
					       bool stress);

/* The service listening on a (an exact address match, or the wildcard address of its
 * family) and port, or with a NULL: the first listening on port, whatever its address
 * (the dpdk transport serves every port address); -1 when none. */
int mx_generation_service_at(const struct mx_generation *g, const struct mx_inet_addr *a,
			     uint16_t port);

/* The sum of every worker's counters. */
void mx_generation_counters(const struct mx_generation *g, struct mx_gen_counters *sum);
/* The same for one service (an index of services[]); zeros for one out of range. */
void mx_generation_service_counters(const struct mx_generation *g, unsigned service,
				    struct mx_gen_counters *sum);
/* The slot a worker counts a connection of service in (worker threads: their own). */
struct mx_gen_counters *mx_generation_counter_slot(struct mx_generation *g, unsigned worker,
						   unsigned service);

/* Count a recipient refused by `restriction` (deferred: a 4xx) on worker's table. Worker
 * threads only, each with its own index. */
void mx_generation_count_reject(struct mx_generation *g, unsigned worker,
				const char *restriction, bool deferred);
/* The same with the list that refused (smtp_restriction_list_name(), or a restriction
 * class's name; NULL is ""), copied. A (list, restriction) pair is one slot. */
void mx_generation_count_list_reject(struct mx_generation *g, unsigned worker,
				     const char *list, const char *restriction, bool deferred);

/* The refusals per restriction, summed over the workers: fn is called once per name
 * ("other" last, when some did not fit), from any thread. */
void mx_generation_rejects(const struct mx_generation *g,
			   void (*fn)(void *ctx, const char *restriction, uint64_t rejected,
				      uint64_t deferred),
			   void *ctx);

/* The same by list and restriction: fn is called once per (list, restriction) pair
 * (list "" for refusals no list made; "other"/"other" last, when some did not fit). */
void mx_generation_rejects_by_list(const struct mx_generation *g,
				   void (*fn)(void *ctx, const char *list,
					      const char *restriction, uint64_t rejected,
					      uint64_t deferred),
				   void *ctx);

/* The parameters that only a restart applies (mxgate_transport, the DPDK settings, worker
 * count, spool directories, ...) whose values in g differ from those the gateway runs
 * with, comma-separated into buf. Returns how many. */
unsigned mx_generation_restart_changes(const struct mx_config *running,
				       const struct mx_generation *g, char *buf, size_t len);

/* ---- publishing: what the workers read ---- */

/* The generations new connections get. The management thread writes it; workers read it
 * when they accept (atomic loads, no lock). A worker that read a pointer holds it only
 * until its next quiescent point (the end of its poll iteration); before the management
 * thread drops the reference it held for a generation it unpublished, it waits until
 * every worker passed one (the transport's synchronize), by which time every worker that
 * kept it has taken a reference of its own. */
struct mx_gen_pub {
	_Atomic(struct mx_generation *) current;
	/* The gateway is under stress: a new connection gets its service's stress variant
	 * (mx_service.stress) when it has one. Written by the management thread
	 * (dataplane/reload.c), read once per accept (relaxed: a connection that sees the
	 * change late gets the other variant, both are valid). */
	atomic_bool stress;
	_Atomic(struct mx_generation *) canary;   /* NULL: no canary */
	atomic_uint canary_permille;               /* share of new connections, 0..1000 */
	_Atomic(struct netlist *) canary_clients;  /* or these clients; NULL: none */
};

/* Every field of p: first published, no canary, no stress. (A field added above is
 * initialised here too: the publisher lives on main()'s stack, where an atomic left out
 * would start as garbage.) */
void mx_gen_pub_init(struct mx_gen_pub *p, struct mx_generation *first);

/* Which generation a new connection from `client` gets: the canary when the client is in
 * canary_clients, or when its share says so (*acc is the caller's running share, one per
 * worker, so that exactly permille of every thousand go there); else the current one. */
struct mx_generation *mx_gen_pick(struct mx_gen_pub *pub, const struct mx_inet_addr *client,
				  unsigned *acc);

#endif
