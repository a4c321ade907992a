#include "dataplane/reload.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/sdnotify.h"
#include "mgmt/log.h"
#include "mgmt/metrics.h"
#include "mgmt/policy.h"
#include "mgmt/screen.h"
#include "mgmt/stress.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "tables/netlist.h"

#ifndef MXGATE_VERSION
#define MXGATE_VERSION "unknown"
#endif

/* A generation no longer published, kept until its last connection closes so that
 * `mxgate status` can show it draining and the log can say when it is gone. */
struct reload_retiring {
	struct mx_generation *g;
	int64_t since;              /* wall-clock seconds */
	struct reload_retiring *next;
};

struct reload {
	struct reload_params p;
	pthread_mutex_t lock;       /* one request at a time */
	uint64_t next_id;
	/* the publication references (pub->current and pub->canary) */
	struct mx_generation *current, *canary;
	struct netlist *canary_clients;
	char canary_clients_text[256];  /* as given, for status */
	int64_t canary_since;
	struct reload_retiring *retiring;
	uint64_t reloads, failures;
	int64_t last_reload_at;
	char last_failure[1024];
	/* Stress (mgmt/stress.h): decided by the main thread's housekeeping, shown by
	 * status (the control thread); stress_lock guards these, never held long. */
	pthread_mutex_t stress_lock;
	struct mx_stress stress;
	struct mx_stress_limits stress_limits; /* the current generation's */
	int64_t stress_since_wall;             /* wall-clock seconds, for status */
	uint64_t stress_in_use, stress_capacity; /* the last observation */
};

/* ---- saying things: the log, and whoever asked ---- */

static void reload_say(const struct reload_out *out, enum mx_log_level level, const char *fmt,
		       ...) __attribute__((format(printf, 3, 4)));

static void reload_say(const struct reload_out *out, enum mx_log_level level, const char *fmt,
		       ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	mx_log(level, "%s", line);
	if (out && out->say) {
		if (level == MX_LOG_WARNING || level == MX_LOG_ERROR) {
			char prefixed[1100];
			snprintf(prefixed, sizeof(prefixed), "%s: %s",
				 level == MX_LOG_WARNING ? "warning" : "error", line);
			out->say(out->ctx, prefixed);
		} else {
			out->say(out->ctx, line);
		}
	}
}

/* Every line a build wrote to its diagnostics stream ("FILE:LINE: problem", "FILE:LINE:
 * warning: problem"), said as it is. */
static void reload_say_diag(const struct reload_out *out, char *text)
{
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!*line)
			continue;
		mx_log(MX_LOG_INFO, "reload: %s", line);
		if (out && out->say)
			out->say(out->ctx, line);
	}
}

/* ---- stress ---- */

static void reload_time_text(int64_t t, char *buf, size_t len);

/* The thresholds of the current generation (they are live parameters): at start and at
 * every publication, under r->lock. */
static void reload_stress_limits(struct reload *r)
{
	const struct mx_config *cfg = r->current->cfg;
	pthread_mutex_lock(&r->stress_lock);
	r->stress_limits = (struct mx_stress_limits){
		.enter_percent = cfg->stress_enter_percent,
		.leave_percent = cfg->stress_leave_percent,
		.min_ms = (uint64_t)cfg->stress_minimum_time_s * 1000,
	};
	pthread_mutex_unlock(&r->stress_lock);
}

/* Once per housekeeping tick: the connections open on every worker against every
 * worker's mxgate_max_connections; a change is published for the workers' next accept
 * and said once. Postfix's master(8) says "service ... has reached its process limit"
 * with its advice when it starts stress, and nothing when stress ends; mxgate says both,
 * so the log shows how long the gateway was under stress. */
static void reload_stress_update(struct reload *r)
{
	struct mx_counters sum;
	uint64_t open = 0;
	r->p.ops->counters(r->p.impl, &sum, &open);
	unsigned workers = r->p.ops->workers ? r->p.ops->workers(r->p.impl) : 1;
	unsigned per_worker = r->p.boot->max_connections;
	uint64_t capacity = (uint64_t)per_worker * workers;
	int64_t now_ms = (int64_t)mx_clock_monotonic_ms();

	pthread_mutex_lock(&r->stress_lock);
	struct mx_stress_limits l = r->stress_limits;
	int64_t began_ms = r->stress.since_ms;
	enum mx_stress_change ch = mx_stress_update(&r->stress, &l, open, capacity, now_ms);
	uint64_t peak = r->stress.peak;
	r->stress_in_use = open;
	r->stress_capacity = capacity;
	if (ch == MX_STRESS_ENTERED)
		r->stress_since_wall = (int64_t)time(NULL);
	pthread_mutex_unlock(&r->stress_lock);

	switch (ch) {
	case MX_STRESS_ENTERED:
		atomic_store_explicit(&r->p.pub->stress, true, memory_order_relaxed);
		mx_log(MX_LOG_WARNING,
		       "entering stress mode: %" PRIu64 " of %" PRIu64 " connections in use "
		       "(mxgate_max_connections = %u on each of %u worker(s), "
		       "mxgate_stress_enter_percent = %u): new sessions get the values their "
		       "parameters have with stress = yes",
		       open, capacity, per_worker, workers, l.enter_percent);
		mx_log(MX_LOG_WARNING, "to avoid this condition, increase mxgate_max_connections "
				       "or mxgate_workers, or reduce the service time per client");
		mx_log(MX_LOG_WARNING, "see https://www.postfix.org/STRESS_README.html for "
				       "examples of stress-adapting configuration settings");
		break;
	case MX_STRESS_LEFT:
		atomic_store_explicit(&r->p.pub->stress, false, memory_order_relaxed);
		mx_log(MX_LOG_INFO,
		       "leaving stress mode: %" PRIu64 " of %" PRIu64 " connections in use "
		       "(mxgate_stress_leave_percent = %u) after %" PRIu64 "s in stress mode, "
		       "at most %" PRIu64 " in use",
		       open, capacity, l.leave_percent,
		       now_ms > began_ms ? (uint64_t)(now_ms - began_ms) / 1000 : 0, peak);
		break;
	case MX_STRESS_UNCHANGED:
	case MX_STRESS_CHANGE_MAX:
		break;
	}
}

void reload_log_stress(struct reload *r, const char *when)
{
	int64_t now_ms = (int64_t)mx_clock_monotonic_ms();
	pthread_mutex_lock(&r->stress_lock);
	struct mx_stress s = r->stress;
	uint64_t in_use = r->stress_in_use, capacity = r->stress_capacity;
	pthread_mutex_unlock(&r->stress_lock);
	mx_log(MX_LOG_INFO,
	       "stress (%s): stress=%s entered=%" PRIu64 " stress_seconds=%" PRIu64
	       " connections_in_use=%" PRIu64 " capacity=%" PRIu64,
	       when, mx_stress_state_name(s.state), s.entered,
	       mx_stress_total_ms(&s, now_ms) / 1000, in_use, capacity);
}

/* One service's DNSBL sites: a line per site with the clients it listed. A stress
 * variant with its own screen counts into the same line when its site is the same. */
static void reload_log_screen_service(const struct mx_generation *g, const struct mx_service *svc,
				      const char *when)
{
	const struct mx_screen *scr = svc->screen;
	const struct mx_screen *st = svc->stress ? svc->stress->screen : NULL;
	if (st == scr)
		st = NULL;
	for (unsigned k = 0; scr && scr->sites && k < scr->cfg->nsites; k++) {
		uint64_t n = atomic_load_explicit(&scr->sites[k].listed, memory_order_relaxed);
		if (st && st->sites && k < st->cfg->nsites &&
		    strcmp(st->sites[k].text, scr->sites[k].text) == 0)
			n += atomic_load_explicit(&st->sites[k].listed, memory_order_relaxed);
		mx_log(MX_LOG_INFO, "postscreen dnsbl (%s): generation=%" PRIu64 " service=%s "
		       "site=%s listed=%" PRIu64, when, g->id, svc->name, scr->sites[k].text, n);
	}
	/* a stress variant whose sites differ: its own lines */
	for (unsigned k = 0; st && st->sites && k < st->cfg->nsites; k++) {
		if (scr && scr->sites && k < scr->cfg->nsites &&
		    strcmp(st->sites[k].text, scr->sites[k].text) == 0)
			continue;
		mx_log(MX_LOG_INFO, "postscreen dnsbl (%s): generation=%" PRIu64 " service=%s "
		       "(stress) site=%s listed=%" PRIu64, when, g->id, svc->name,
		       st->sites[k].text,
		       (uint64_t)atomic_load_explicit(&st->sites[k].listed,
						      memory_order_relaxed));
	}
}

void reload_log_screen(struct reload *r, const char *when)
{
	/* a reload may hold the lock while it builds: the statistics do not wait for it */
	if (pthread_mutex_trylock(&r->lock) != 0) {
		mx_log(MX_LOG_INFO, "postscreen dnsbl (%s): not counted now: a reload is in "
		       "progress", when);
		return;
	}
	const struct mx_generation *gens[2] = { r->current, r->canary };
	for (unsigned i = 0; i < 2; i++)
		for (unsigned j = 0; gens[i] && j < gens[i]->nservices; j++)
			reload_log_screen_service(gens[i], &gens[i]->services[j], when);
	pthread_mutex_unlock(&r->lock);
}

/* The status line: on or off, with what it is measured by. */
static void reload_status_stress(struct reload *r, struct control_out *out)
{
	int64_t now_ms = (int64_t)mx_clock_monotonic_ms();
	pthread_mutex_lock(&r->stress_lock);
	struct mx_stress s = r->stress;
	struct mx_stress_limits l = r->stress_limits;
	uint64_t in_use = r->stress_in_use, capacity = r->stress_capacity;
	int64_t since = r->stress_since_wall;
	pthread_mutex_unlock(&r->stress_lock);
	char at[32] = "";
	if (s.state == MX_STRESS_ON)
		reload_time_text(since, at, sizeof(at));
	control_printf(out,
		       "stress: %s%s%s (%" PRIu64 " of %" PRIu64 " connections in use; enter at "
		       "%u%%, leave at %u%%); entered %" PRIu64 " time(s), %" PRIu64
		       "s in stress mode in all\n",
		       mx_stress_state_name(s.state), *at ? " since " : "", at, in_use, capacity,
		       l.enter_percent, l.leave_percent, s.entered,
		       mx_stress_total_ms(&s, now_ms) / 1000);
}

/* ---- lifecycle ---- */

int reload_create(struct reload **out, const struct reload_params *p)
{
	struct reload *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->p = *p;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->stress_lock, NULL);
	r->current = atomic_load(&p->pub->current);
	reload_stress_limits(r);
	r->next_id = r->current->id + 1;
	*out = r;
	return 0;
}

void reload_free(struct reload *r)
{
	if (!r)
		return;
	atomic_store(&r->p.pub->current, NULL);
	atomic_store(&r->p.pub->canary, NULL);
	atomic_store(&r->p.pub->canary_clients, NULL);
	mx_generation_put(r->current);
	mx_generation_put(r->canary);
	netlist_free(r->canary_clients);
	while (r->retiring) {
		struct reload_retiring *t = r->retiring;
		r->retiring = t->next;
		mx_generation_put(t->g);
		free(t);
	}
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->stress_lock);
	free(r);
}

/* ---- retiring generations ---- */

static uint64_t reload_open_connections(const struct mx_generation *g)
{
	struct mx_gen_counters sum;
	mx_generation_counters(g, &sum);
	return sum.connections - sum.connections_closed;
}

/* g is no longer published (the caller already waited for the workers to pass a quiescent
 * point): keep it until its connections are gone. Takes the caller's reference. */
static void reload_retire(struct reload *r, struct mx_generation *g)
{
	struct reload_retiring *t = calloc(1, sizeof(*t));
	if (!t) {
		mx_generation_put(g); /* the connections' own references keep it alive */
		return;
	}
	t->g = g;
	t->since = (int64_t)time(NULL);
	t->next = r->retiring;
	r->retiring = t;
}

static void reload_prune_locked(struct reload *r)
{
	for (struct reload_retiring **pp = &r->retiring; *pp;) {
		struct reload_retiring *t = *pp;
		if (reload_open_connections(t->g) == 0) {
			mx_log(MX_LOG_INFO, "generation %" PRIu64 " retired: its last connection "
					    "closed",
			       t->g->id);
			*pp = t->next;
			mx_generation_put(t->g);
			free(t);
		} else {
			pp = &t->next;
		}
	}
}

void reload_housekeeping(struct reload *r)
{
	reload_stress_update(r);
	if (pthread_mutex_trylock(&r->lock) != 0)
		return; /* a request is in progress; next second */
	reload_prune_locked(r);
	pthread_mutex_unlock(&r->lock);
}

/* ---- building and checking a candidate ---- */

static void reload_services_line(const struct mx_generation *g, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < g->nservices && n < len; i++) {
		const struct mx_service *s = &g->services[i];
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? "; " : "", s->name);
		for (unsigned j = 0; j < s->nlisten && n < len; j++)
			n += (size_t)snprintf(buf + n, len - n, "%s%s:%u", j ? "," : " on ",
					      s->listen[j].host, (unsigned)s->listen[j].port);
	}
}

/* Open every service's policy as a worker will (its tables on a reader of the store): a
 * generation whose workers could not serve it is not published. */
static int reload_probe(struct reload *r, const struct mx_generation *g, char *err,
			size_t errlen)
{
	struct tables_reader *rd = NULL;
	int rc = r->p.tables ? tables_reader_open(r->p.tables, &rd) : 0;
	if (rc < 0)
		return mx_errf(err, errlen, rc, "table store: %s", strerror(-rc));
	for (unsigned i = 0; rc == 0 && i < g->nservices; i++) {
		struct smtp_policy_ctx *pc = NULL;
		rc = smtp_policy_ctx_new(g->services[i].policy, rd, &pc);
		smtp_policy_ctx_free(pc);
		/* and the lists a stress variant has of its own */
		const struct mx_service *v = g->services[i].stress;
		if (rc == 0 && v && v->policy != g->services[i].policy) {
			pc = NULL;
			rc = smtp_policy_ctx_new(v->policy, rd, &pc);
			smtp_policy_ctx_free(pc);
		}
		if (rc < 0)
			mx_errf(err, errlen, rc, "service %s: its restriction lists' tables cannot "
						 "be opened: %s",
				g->services[i].name, strerror(-rc));
	}
	tables_reader_close(rd);
	return rc;
}

/* Build a generation from path and check everything a publication needs. NULL after
 * saying why. */
static struct mx_generation *reload_build(struct reload *r, const char *path,
					  const struct reload_out *out)
{
	char *diag_text = NULL;
	size_t diag_len = 0;
	FILE *diag = open_memstream(&diag_text, &diag_len);
	char err[1024];
	struct mx_generation *g = NULL;
	uint64_t t0 = mx_clock_monotonic_ms();
	struct mx_generation_opts o = {
		.path = path,
		.id = r->next_id,
		.nworkers = r->p.nworkers,
		.diag = diag,
		.tables = r->p.tables, /* the store is open: read tls_server_sni_maps there */
	};
	int rc = mx_generation_build(&o, &g, err, sizeof(err));
	/* the tables the restriction lists name: the store must have been open at start
	 * (workers opened their readers on it), and missing tables are worth a warning */
	for (unsigned i = 0; rc == 0 && i < g->nservices; i++) {
		const struct mx_service *s = &g->services[i];
		if (mx_policy_needs_tables(s->policy) && !r->p.tables) {
			snprintf(err, sizeof(err),
				 "service %s: the restriction lists look up tables, but the table "
				 "store (mxgate_table_directory = %s) did not exist when mxgate "
				 "started: build the tables with mxgate-map, then restart",
				 s->name, r->p.boot->table_directory);
			rc = -ENOENT;
		} else if (diag) {
			mx_policy_check_tables(s->cfg, s->policy, diag);
		}
	}
	if (rc == 0)
		rc = reload_probe(r, g, err, sizeof(err));
	if (rc == 0 && r->p.ops->check_services &&
	    (rc = r->p.ops->check_services(r->p.impl, g, err, sizeof(err))) < 0) {
		/* err says which service and address */
	}
	if (diag)
		fclose(diag);
	if (diag_text)
		reload_say_diag(out, diag_text);
	free(diag_text);
	if (rc < 0) {
		reload_say(out, MX_LOG_ERROR,
			   "reload from %s failed: %s; generation %" PRIu64 " stays in service, "
			   "nothing changed",
			   path, err, r->current->id);
		snprintf(r->last_failure, sizeof(r->last_failure), "%s", err);
		r->failures++;
		mx_generation_put(g);
		return NULL;
	}
	r->next_id++;
	char changed[512];
	if (mx_generation_restart_changes(r->p.boot, g, changed, sizeof(changed)))
		reload_say(out, MX_LOG_WARNING,
			   "%s changed: only a restart applies it; the running value is kept",
			   changed);
	char services[1024];
	reload_services_line(g, services, sizeof(services));
	reload_say(out, MX_LOG_INFO,
		   "generation %" PRIu64 " built from %s in %" PRIu64 " ms: %u service(s): %s",
		   g->id, path, mx_clock_monotonic_ms() - t0, g->nservices, services);
	return g;
}

/* Publish: make the transport's listeners follow, then wait until no worker holds a
 * pointer it read before without a reference of its own; the references the caller
 * unpublished can be retired after it. */
static void reload_published(struct reload *r)
{
	reload_stress_limits(r);
	if (r->p.ops->services_changed)
		r->p.ops->services_changed(r->p.impl);
	if (r->p.ops->synchronize)
		r->p.ops->synchronize(r->p.impl);
}

static void reload_drop_canary_locked(struct reload *r)
{
	struct mx_generation *old = r->canary;
	struct netlist *clients = r->canary_clients;
	atomic_store(&r->p.pub->canary, NULL);
	atomic_store(&r->p.pub->canary_clients, NULL);
	atomic_store(&r->p.pub->canary_permille, 0);
	r->canary = NULL;
	r->canary_clients = NULL;
	reload_published(r);
	netlist_free(clients);
	if (old)
		reload_retire(r, old);
}

static void reload_share_text(unsigned permille, const char *clients, char *buf, size_t len)
{
	size_t n = 0;
	buf[0] = '\0';
	if (permille)
		n += (size_t)snprintf(buf, len, "%u.%u%% of new connections", permille / 10,
				      permille % 10);
	if (clients && n < len)
		snprintf(buf + n, len - n, "%sclients %s", n ? " and " : "", clients);
}

/* ---- the requests ---- */

static int reload_full(struct reload *r, const char *path, const struct reload_out *out)
{
	if (r->canary) {
		reload_say(out, MX_LOG_ERROR,
			   "reload refused: generation %" PRIu64 " is a canary; promote it "
			   "(mxgate reload --promote) or abort it (mxgate reload --abort) first",
			   r->canary->id);
		return 1;
	}
	struct mx_generation *g = reload_build(r, path, out);
	if (!g)
		return 1;
	struct mx_generation *old = r->current;
	atomic_store_explicit(&r->p.pub->current, g, memory_order_release);
	r->current = g;
	reload_published(r);
	reload_retire(r, old);
	r->reloads++;
	r->last_reload_at = (int64_t)time(NULL);
	reload_say(out, MX_LOG_INFO,
		   "reload: generation %" PRIu64 " serves new connections; generation %" PRIu64
		   " keeps its %" PRIu64 " open connection(s) until they end",
		   g->id, old->id, reload_open_connections(old));
	return 0;
}

static int reload_canary(struct reload *r, const struct reload_request *q,
			 const struct reload_out *out)
{
	struct netlist *clients = NULL;
	if (q->canary_clients) {
		char err[256];
		if (netlist_parse(q->canary_clients, &clients, err, sizeof(err)) < 0) {
			reload_say(out, MX_LOG_ERROR, "reload refused: --canary-clients %s: %s",
				   q->canary_clients, err);
			return 1;
		}
	}
	if (!clients && (q->canary_permille == 0 || q->canary_permille > 1000)) {
		netlist_free(clients);
		reload_say(out, MX_LOG_ERROR, "reload refused: a canary needs a share above 0%% "
					      "and at most 100%%, or a client list");
		return 1;
	}
	struct mx_generation *g = reload_build(r, q->path ? q->path : r->current->path, out);
	if (!g) {
		netlist_free(clients);
		return 1;
	}
	if (r->canary) {
		reload_say(out, MX_LOG_INFO, "canary generation %" PRIu64 " is replaced",
			   r->canary->id);
		reload_drop_canary_locked(r);
	}
	atomic_store(&r->p.pub->canary_permille, q->canary_permille);
	atomic_store_explicit(&r->p.pub->canary_clients, clients, memory_order_release);
	atomic_store_explicit(&r->p.pub->canary, g, memory_order_release);
	r->canary = g;
	r->canary_clients = clients;
	snprintf(r->canary_clients_text, sizeof(r->canary_clients_text), "%s",
		 q->canary_clients ? q->canary_clients : "");
	r->canary_since = (int64_t)time(NULL);
	reload_published(r);
	r->reloads++;
	r->last_reload_at = r->canary_since;
	char share[512];
	reload_share_text(q->canary_permille, q->canary_clients, share, sizeof(share));
	reload_say(out, MX_LOG_INFO,
		   "canary: generation %" PRIu64 " serves %s; generation %" PRIu64
		   " the others (mxgate status compares them; mxgate reload --promote or "
		   "--abort ends it)",
		   g->id, share, r->current->id);
	return 0;
}

static int reload_promote(struct reload *r, const struct reload_out *out)
{
	if (!r->canary) {
		reload_say(out, MX_LOG_ERROR, "promote refused: no canary is running");
		return 1;
	}
	struct mx_generation *g = r->canary, *old = r->current;
	struct netlist *clients = r->canary_clients;
	/* current first: a worker that still sees the canary serves it from the same
	 * generation, so no connection sees neither */
	atomic_store_explicit(&r->p.pub->current, g, memory_order_release);
	atomic_store(&r->p.pub->canary, NULL);
	atomic_store(&r->p.pub->canary_clients, NULL);
	atomic_store(&r->p.pub->canary_permille, 0);
	r->current = g;
	r->canary = NULL;
	r->canary_clients = NULL;
	reload_published(r);
	netlist_free(clients);
	reload_retire(r, old);
	reload_say(out, MX_LOG_INFO,
		   "promote: generation %" PRIu64 " serves every new connection; generation "
		   "%" PRIu64 " keeps its %" PRIu64 " open connection(s) until they end",
		   g->id, old->id, reload_open_connections(old));
	return 0;
}

static int reload_abort(struct reload *r, const struct reload_out *out)
{
	if (!r->canary) {
		reload_say(out, MX_LOG_ERROR, "abort refused: no canary is running");
		return 1;
	}
	uint64_t id = r->canary->id;
	reload_drop_canary_locked(r);
	reload_say(out, MX_LOG_INFO,
		   "abort: canary generation %" PRIu64 " takes no new connections; generation "
		   "%" PRIu64 " serves them all",
		   id, r->current->id);
	return 0;
}

int reload_apply(struct reload *r, const struct reload_request *q, const struct reload_out *out)
{
	pthread_mutex_lock(&r->lock);
	/* systemd (Type=notify) hears of the reload and of its end, whatever its outcome:
	 * the gateway serves on, with the old generation when the new one failed */
	sdnotify_reloading(mx_clock_monotonic_ms() * 1000u);
	int rc;
	switch (q->mode) {
	case RELOAD_FULL:
		rc = reload_full(r, q->path ? q->path : r->current->path, out);
		break;
	case RELOAD_CANARY:
		rc = reload_canary(r, q, out);
		break;
	case RELOAD_PROMOTE:
		rc = reload_promote(r, out);
		break;
	case RELOAD_ABORT:
		rc = reload_abort(r, out);
		break;
	default:
		rc = 1;
	}
	reload_prune_locked(r);
	pthread_mutex_unlock(&r->lock);
	sdnotify_send("READY=1");
	return rc;
}

bool reload_parse_share(const char *s, unsigned *permille)
{
	/* digits, an optional one-digit fraction, an optional '%' */
	unsigned whole = 0, tenth = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9') {
		whole = whole * 10 + (unsigned)(*p++ - '0');
		if (whole > 100)
			return false;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		tenth = (unsigned)(*p++ - '0');
	}
	if (*p == '%')
		p++;
	if (*p)
		return false;
	unsigned v = whole * 10 + tenth;
	if (v == 0 || v > 1000)
		return false;
	*permille = v;
	return true;
}

/* ---- the control commands ---- */

static void reload_say_control(void *ctx, const char *line)
{
	control_printf(ctx, "%s\n", line);
}

static int reload_cmd_usage(struct control_out *out, const char *why)
{
	control_printf(out,
		       "mxgate reload: %s\n"
		       "usage: mxgate reload [-c FILE] [--canary PERCENT%% | --canary-clients "
		       "LIST]\n"
		       "       mxgate reload --promote | --abort\n",
		       why);
	return 2;
}

/* reload [-c FILE] [--canary N%] [--canary-clients LIST] | --promote | --abort */
static int reload_cmd(void *ctx, int argc, char **argv, struct control_out *out)
{
	struct reload *r = ctx;
	struct reload_request q = { .mode = RELOAD_FULL };
	bool promote = false, abort_ = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_value = i + 1 < argc;
		if (strcmp(a, "-c") == 0 && has_value) {
			q.path = argv[++i];
			if (q.path[0] != '/')
				return reload_cmd_usage(out, "-c needs an absolute path");
		} else if (strcmp(a, "--canary") == 0 && has_value) {
			if (!reload_parse_share(argv[++i], &q.canary_permille))
				return reload_cmd_usage(out, "--canary takes a share above 0% and at "
							     "most 100%, such as 10%");
			q.mode = RELOAD_CANARY;
		} else if (strcmp(a, "--canary-clients") == 0 && has_value) {
			q.canary_clients = argv[++i];
			q.mode = RELOAD_CANARY;
		} else if (strcmp(a, "--promote") == 0) {
			promote = true;
		} else if (strcmp(a, "--abort") == 0) {
			abort_ = true;
		} else {
			char why[128];
			snprintf(why, sizeof(why), "unexpected argument '%.80s'", a);
			return reload_cmd_usage(out, why);
		}
	}
	if (promote + abort_ + (q.mode == RELOAD_CANARY) > 1 ||
	    ((promote || abort_) && q.path))
		return reload_cmd_usage(out, "--promote, --abort and a new build exclude each "
					     "other");
	if (promote)
		q.mode = RELOAD_PROMOTE;
	if (abort_)
		q.mode = RELOAD_ABORT;
	struct reload_out ro = { reload_say_control, out };
	return reload_apply(r, &q, &ro);
}

static void reload_time_text(int64_t t, char *buf, size_t len)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!localtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "%" PRId64, t);
}

static void reload_status_reject(void *ctx, const char *restriction, uint64_t rejected,
				 uint64_t deferred)
{
	control_printf(ctx, "  refused by %s: rejected=%" PRIu64 " deferred=%" PRIu64 "\n",
		       restriction, rejected, deferred);
}

static void reload_status_gen(struct reload *r, struct control_out *out,
			      const struct mx_generation *g, const char *role)
{
	char built[32], services[1024], counts[512] = "";
	reload_time_text(g->built_at, built, sizeof(built));
	reload_services_line(g, services, sizeof(services));
	if (r->p.metrics) {
		/* the same registry the metrics endpoint and SIGUSR1 read: this generation's
		 * counters summed over its services */
		char id[24];
		snprintf(id, sizeof(id), "%" PRIu64, g->id);
		mx_metrics_stat_line(r->p.metrics, "generation", "generation", id, counts,
				     sizeof(counts));
	} else {
		struct mx_gen_counters c;
		mx_generation_counters(g, &c);
		snprintf(counts, sizeof(counts),
			 " connections=%" PRIu64 " open=%" PRIu64 " messages_accepted=%" PRIu64
			 " messages_rejected=%" PRIu64 " recipients_accepted=%" PRIu64
			 " recipients_rejected=%" PRIu64 " recipients_deferred=%" PRIu64,
			 c.connections, c.connections - c.connections_closed,
			 c.messages_accepted, c.messages_rejected, c.recipients_accepted,
			 c.recipients_rejected, c.recipients_deferred);
	}
	control_printf(out,
		       "generation %" PRIu64 " (%s): built %s from %s\n"
		       "  services: %s\n"
		       " %s\n",
		       g->id, role, built, g->path, services, counts);
	mx_generation_rejects(g, reload_status_reject, out);
}

void reload_visit_generations(struct reload *r,
			      void (*fn)(void *ctx, const struct mx_generation *g,
					 const char *role),
			      void *ctx)
{
	pthread_mutex_lock(&r->lock);
	fn(ctx, r->current, "current");
	if (r->canary)
		fn(ctx, r->canary, "canary");
	for (struct reload_retiring *t = r->retiring; t; t = t->next)
		fn(ctx, t->g, "retiring");
	pthread_mutex_unlock(&r->lock);
}

/* What status shows of one generation, taken under the lock and printed after it (the
 * registry's generation families take the lock themselves). */
#define RELOAD_STATUS_GENS_MAX 64
struct reload_status_item {
	struct mx_generation *g;
	char role[600];
};

static int status_cmd(void *ctx, int argc, char **argv, struct control_out *out)
{
	(void)argv;
	struct reload *r = ctx;
	if (argc > 1) {
		control_printf(out, "mxgate status: takes no arguments\n");
		return 2;
	}
	pthread_mutex_lock(&r->lock);
	reload_prune_locked(r);
	char started[32], last[32];
	reload_time_text(r->p.started_at, started, sizeof(started));
	control_printf(out, "mxgate %s running since %s, transport %s\n", MXGATE_VERSION,
		       started, r->p.transport_description);
	if (r->reloads || r->failures) {
		reload_time_text(r->last_reload_at, last, sizeof(last));
		control_printf(out, "reloads: %" PRIu64 " done%s%s, %" PRIu64 " failed%s%s\n",
			       r->reloads, r->reloads ? ", the last at " : "",
			       r->reloads ? last : "", r->failures,
			       r->failures ? "; the last failure: " : "", r->last_failure);
	}
	reload_status_stress(r, out);
	struct reload_status_item *items = calloc(RELOAD_STATUS_GENS_MAX, sizeof(*items));
	unsigned n = 0;
	if (items) {
		items[n].g = mx_generation_get(r->current);
		snprintf(items[n++].role, sizeof(items[0].role), "current");
		if (r->canary) {
			char share[512];
			reload_share_text(atomic_load(&r->p.pub->canary_permille),
					  r->canary_clients ? r->canary_clients_text : NULL,
					  share, sizeof(share));
			items[n].g = mx_generation_get(r->canary);
			snprintf(items[n++].role, sizeof(items[0].role), "canary: %s", share);
		}
		for (struct reload_retiring *t = r->retiring; t && n < RELOAD_STATUS_GENS_MAX;
		     t = t->next) {
			items[n].g = mx_generation_get(t->g);
			snprintf(items[n++].role, sizeof(items[0].role), "retiring");
		}
	}
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < n; i++) {
		reload_status_gen(r, out, items[i].g, items[i].role);
		mx_generation_put(items[i].g);
	}
	free(items);
	return 0;
}

int reload_register(struct reload *r, struct control_server *s, char *err, size_t errlen)
{
	int rc = control_register(s, "reload",
				  "[-c FILE] [--canary PERCENT%|--canary-clients LIST] | --promote "
				  "| --abort",
				  reload_cmd, r);
	if (rc == 0)
		rc = control_register(s, "status", "", status_cmd, r);
	if (rc < 0)
		snprintf(err, errlen, "control socket: cannot register the reload commands: %s",
			 strerror(-rc));
	return rc;
}
