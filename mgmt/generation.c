#include "mgmt/generation.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/master.h"
#include "mgmt/screen.h"
#include "mxgate/errf.h"

static void mx_service_fini(struct mx_service *s)
{
	if (s->stress) {
		mx_service_fini(s->stress);
		free(s->stress);
	}
	if (!s->borrowed) {
		smtp_policy_free(s->policy);
		mx_checks_free(&s->checks);
	}
	mx_screen_free(s->screen);
	if (!s->tls_borrowed)
		mx_tls_conf_free(s->tls);
	mx_config_free(s->own_cfg);
	*s = (struct mx_service){ 0 };
}

static void mx_generation_free(struct mx_generation *g)
{
	for (unsigned i = 0; i < g->nservices; i++)
		mx_service_fini(&g->services[i]);
	free(g->services);
	mx_config_free(g->cfg);
	free(g->counters);
	for (unsigned w = 0; g->rejects && w < g->nworkers; w++)
		free(atomic_load(&g->rejects[w]));
	free(g->rejects);
	free(g->path);
	free(g);
}

/* The TLS settings of service s (or its stress variant) with configuration cfg: an
 * earlier service's when they have the same configuration (the same parameters), else
 * loaded now (keys and certificates read and checked). */
static int mx_service_tls(struct mx_generation *g, struct mx_service *s, unsigned i,
			  FILE *diag, struct tables_env *tables, char *err, size_t errlen)
{
	for (unsigned j = 0; j < i; j++) {
		const struct mx_service *o = &g->services[j];
		if (o->cfg == s->cfg || (o->stress && o->stress->cfg == s->cfg)) {
			s->tls = o->cfg == s->cfg ? o->tls : o->stress->tls;
			s->tls_borrowed = true;
			return 0;
		}
	}
	char why[512];
	int rc = mx_tls_conf_build(s->cfg, s->name, tables, &s->tls, why, sizeof(why));
	if (rc < 0) {
		/* said with the configuration's other problems (--check, reload) */
		if (diag)
			fprintf(diag, "%s (service %s)\n", why, s->name);
		return mx_errf(err, errlen, rc, "service %s: %s", s->name, why);
	}
	return 0;
}

/* Compile what a service's parameters ask for. A service without overrides has main.cf's
 * parameters: it shares the lists and checks of an earlier one that has them too. */
static int mx_service_compile(struct mx_generation *g, unsigned i, FILE *diag,
			      struct tables_env *tables, char *err, size_t errlen)
{
	struct mx_service *s = &g->services[i];
	int trc = mx_service_tls(g, s, i, diag, tables, err, errlen);
	if (trc < 0)
		return trc;
	for (unsigned j = 0; j < i; j++) {
		if (g->services[j].cfg == s->cfg) {
			s->policy = g->services[j].policy;
			s->checks = g->services[j].checks;
			s->borrowed = true;
			return 0;
		}
	}
	char why[512];
	int rc = mx_policy_build(s->cfg, &s->policy, diag, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s: %s", s->name, why);
	rc = mx_checks_build(s->cfg, &s->checks, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s: %s", s->name, why);
	return 0;
}

/* The parameters the engine and the connection glue read from the configuration when a
 * session starts, and that no restriction list or check set is built from: a stress
 * variant that differs only in these borrows its service's compiled lists and checks. */
static const char *const mx_stress_session_params[] = {
	"smtpd_timeout", "smtpd_hard_error_limit", "smtpd_soft_error_limit",
	"smtpd_junk_command_limit", "smtpd_error_sleep_time", "smtpd_per_record_deadline",
	"smtpd_per_request_deadline", "smtpd_min_data_rate", "smtpd_recipient_limit",
	"smtpd_recipient_overshoot_limit", "smtpd_peername_lookup",
	"smtpd_upstream_proxy_protocol", "smtpd_upstream_proxy_timeout",
	"smtpd_client_connection_count_limit", "smtpd_client_connection_rate_limit",
	"smtpd_client_message_rate_limit", "smtpd_client_recipient_rate_limit",
	"smtpd_client_auth_rate_limit", "smtpd_client_new_tls_session_rate_limit",
	"postscreen_greet_wait", "postscreen_command_time_limit",
	"smtpd_starttls_timeout",
};

static bool mx_stress_session_only(const struct mx_config *cfg)
{
	const char *names[256];
	size_t n = mx_config_stress_changes(cfg, names, sizeof(names) / sizeof(names[0]));
	if (n > sizeof(names) / sizeof(names[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t k = 0; !found && k < sizeof(mx_stress_session_params) /
							 sizeof(mx_stress_session_params[0]);
		     k++)
			found = strcmp(names[i], mx_stress_session_params[k]) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* Service i's stress variant, when a value of its configuration depends on stress. Its
 * lists and checks are the service's when only session parameters differ, an earlier
 * service's variant's when both have main.cf's parameters, else compiled here. */
static int mx_service_stress(struct mx_generation *g, unsigned i, FILE *diag,
			     struct tables_env *tables, char *err, size_t errlen)
{
	struct mx_service *s = &g->services[i];
	const struct mx_config *scfg = mx_config_stress(s->cfg);
	if (!scfg)
		return 0;
	struct mx_service *v = calloc(1, sizeof(*v));
	if (!v)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	memcpy(v->name, s->name, sizeof(v->name));
	memcpy(v->listen, s->listen, sizeof(v->listen));
	v->nlisten = s->nlisten;
	v->cfg = scfg;
	s->stress = v;
	int trc = mx_service_tls(g, v, i, diag, tables, err, errlen);
	if (trc < 0)
		return trc;
	if (mx_stress_session_only(s->cfg)) {
		v->policy = s->policy;
		v->checks = s->checks;
		v->borrowed = true;
		return 0;
	}
	for (unsigned j = 0; j < i; j++) {
		if (g->services[j].cfg == s->cfg && g->services[j].stress) {
			v->policy = g->services[j].stress->policy;
			v->checks = g->services[j].stress->checks;
			v->borrowed = true;
			return 0;
		}
	}
	char why[512];
	int rc = mx_policy_build(scfg, &v->policy, diag, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s under stress: %s", s->name, why);
	rc = mx_checks_build(scfg, &v->checks, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s under stress: %s", s->name, why);
	return 0;
}

/* The screen of a postscreen service, and of its stress variant (whose
 * postscreen_greet_wait and postscreen_command_time_limit are the stress values). */
static int mx_service_screen(struct mx_service *s, char *err, size_t errlen)
{
	char why[512];
	int rc = mx_screen_build(s->cfg, &s->screen, why, sizeof(why));
	if (rc == 0 && s->stress)
		rc = mx_screen_build(s->stress->cfg, &s->stress->screen, why, sizeof(why));
	return rc < 0 ? mx_errf(err, errlen, rc, "service %s: %s", s->name, why) : 0;
}

const struct mx_service *mx_generation_service(const struct mx_generation *g, unsigned i,
					       bool stress)
{
	const struct mx_service *s = &g->services[i];
	return stress && s->stress ? s->stress : s;
}

/* Without a master file, one service listens on the addresses of mxgate_listen with the
 * main configuration, as before services existed. */
static int mx_generation_default_service(struct mx_generation *g, FILE *diag,
					 struct tables_env *tables, char *err, size_t errlen)
{
	g->services = calloc(1, sizeof(*g->services));
	if (!g->services)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	g->nservices = 1;
	struct mx_service *s = &g->services[0];
	const struct mx_config *cfg = g->cfg;
	s->cfg = cfg;
	for (unsigned i = 0; i < cfg->listen_count; i++)
		s->listen[s->nlisten++] = cfg->listen[i];
	snprintf(s->name, sizeof(s->name), "smtp");
	int rc = mx_service_compile(g, 0, diag, tables, err, errlen);
	return rc < 0 ? rc : mx_service_stress(g, 0, diag, tables, err, errlen);
}

/* The inet smtpd services of mxgate_master_file, each with its effective parameters. */
static int mx_generation_master_services(struct mx_generation *g, const struct mx_master *m,
					 FILE *diag, struct tables_env *tables, char *err,
					 size_t errlen)
{
	g->services = calloc(m->nservices ? m->nservices : 1, sizeof(*g->services));
	if (!g->services)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	if (m->nservices == 0)
		return mx_errf(err, errlen, -EINVAL,
			       "%s: no inet smtpd service: mxgate would listen nowhere", m->path);
	for (size_t i = 0; i < m->nservices; i++) {
		const struct mx_master_service *ms = &m->services[i];
		struct mx_service *s = &g->services[g->nservices++];
		snprintf(s->name, sizeof(s->name), "%s", ms->name);
		for (unsigned j = 0; j < ms->listen_count && j < MX_CONFIG_MAX_LISTEN; j++)
			s->listen[s->nlisten++] = ms->listen[j];
		if (ms->noverrides == 0) {
			s->cfg = g->cfg;
		} else {
			int rc = mx_config_load_service(g->cfg, ms, &s->own_cfg, diag);
			if (rc < 0)
				return mx_errf(err, errlen, rc, "%s:%u: service %s: its -o overrides "
								"have errors",
					       m->path, ms->line, ms->name);
			s->cfg = s->own_cfg;
		}
		int rc = mx_service_compile(g, g->nservices - 1, diag, tables, err, errlen);
		if (rc < 0)
			return rc;
		rc = mx_service_stress(g, g->nservices - 1, diag, tables, err, errlen);
		if (rc < 0)
			return rc;
		if (ms->screen && (rc = mx_service_screen(s, err, errlen)) < 0)
			return rc;
	}
	return 0;
}

int mx_generation_build(const struct mx_generation_opts *o, struct mx_generation **out,
			char *err, size_t errlen)
{
	*out = NULL;
	struct mx_generation *g = calloc(1, sizeof(*g));
	if (!g)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	atomic_init(&g->refs, 1);
	g->id = o->id;
	g->built_at = (int64_t)time(NULL);
	g->nworkers = o->nworkers ? o->nworkers : 1;
	g->path = strdup(o->path);
	/* a cache line per worker (the struct is aligned to one): calloc does not align */
	g->counters = aligned_alloc(64, g->nworkers * sizeof(*g->counters));
	if (g->counters)
		memset(g->counters, 0, g->nworkers * sizeof(*g->counters));
	g->rejects = calloc(g->nworkers, sizeof(*g->rejects));
	int rc;
	if (!g->path || !g->counters || !g->rejects) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	rc = mx_config_load(o->path, &g->cfg, o->diag);
	if (rc < 0) {
		mx_errf(err, errlen, rc, "%s: %s", o->path,
			rc == -ENOENT ? "no such file" : rc == -EINVAL ? "configuration has errors"
								   : strerror(-rc));
		goto fail;
	}
	const struct mx_master *m = mx_config_master(g->cfg);
	rc = m ? mx_generation_master_services(g, m, o->diag, o->tables, err, errlen)
	       : mx_generation_default_service(g, o->diag, o->tables, err, errlen);
	if (rc < 0)
		goto fail;
	/* the counters: a slot per worker and service, now that the services are known */
	free(g->counters);
	size_t nslots = (size_t)g->nworkers * (g->nservices ? g->nservices : 1);
	g->counters = aligned_alloc(64, nslots * sizeof(*g->counters));
	if (!g->counters) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	memset(g->counters, 0, nslots * sizeof(*g->counters));
	*out = g;
	return 0;
fail:
	mx_generation_free(g);
	return rc;
}

struct mx_generation *mx_generation_get(struct mx_generation *g)
{
	if (g)
		atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void mx_generation_put(struct mx_generation *g)
{
	if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
		mx_generation_free(g);
}

/* The address of a listen entry: "0.0.0.0", "::", "[::1]" and the like. */
static bool mx_listen_parse(const struct mx_listen_addr *la, struct mx_inet_addr *a)
{
	char host[sizeof(la->host)];
	snprintf(host, sizeof(host), "%s", la->host);
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		memmove(host, host + 1, n - 2);
		host[n - 2] = '\0';
	}
	return mx_inet_parse(host, a);
}

static bool mx_inet_is_any(const struct mx_inet_addr *a)
{
	static const uint8_t zero[16];
	return memcmp(a->bytes, zero, a->family == AF_INET ? 4 : 16) == 0;
}

int mx_generation_service_at(const struct mx_generation *g, const struct mx_inet_addr *a,
			     uint16_t port)
{
	struct mx_inet_addr want = a ? mx_inet_unmap(a) : (struct mx_inet_addr){ 0 };
	int wildcard = -1;
	for (unsigned i = 0; i < g->nservices; i++) {
		const struct mx_service *s = &g->services[i];
		for (unsigned j = 0; j < s->nlisten; j++) {
			struct mx_inet_addr la;
			if (s->listen[j].port != port)
				continue;
			if (!a)
				return (int)i;
			if (!mx_listen_parse(&s->listen[j], &la))
				continue;
			if (mx_inet_is_any(&la)) {
				/* "0.0.0.0" takes IPv4, "::" IPv6 (v6-only sockets) */
				if (la.family == want.family && wildcard < 0)
					wildcard = (int)i;
				continue;
			}
			la = mx_inet_unmap(&la);
			if (la.family == want.family &&
			    memcmp(la.bytes, want.bytes, la.family == AF_INET ? 4 : 16) == 0)
				return (int)i;
		}
	}
	return wildcard;
}

struct mx_gen_counters *mx_generation_counter_slot(struct mx_generation *g, unsigned worker,
						   unsigned service)
{
	assert(worker < g->nworkers && service < (g->nservices ? g->nservices : 1));
	return &g->counters[(size_t)worker * (g->nservices ? g->nservices : 1) + service];
}

void mx_generation_counters(const struct mx_generation *g, struct mx_gen_counters *sum)
{
	*sum = (struct mx_gen_counters){ 0 };
	for (unsigned i = 0; i < (g->nservices ? g->nservices : 1); i++) {
		struct mx_gen_counters one;
		mx_generation_service_counters(g, i, &one);
#define MX_GEN_SUM(f) sum->f += one.f
		MX_GEN_SUM(connections);
		MX_GEN_SUM(connections_closed);
		MX_GEN_SUM(messages_accepted);
		MX_GEN_SUM(messages_rejected);
		MX_GEN_SUM(recipients_accepted);
		MX_GEN_SUM(recipients_rejected);
		MX_GEN_SUM(recipients_deferred);
		MX_GEN_SUM(connections_refused);
		MX_GEN_SUM(anvil_refused);
		MX_GEN_SUM(timed_out);
#undef MX_GEN_SUM
	}
}

void mx_generation_service_counters(const struct mx_generation *g, unsigned service,
				    struct mx_gen_counters *sum)
{
	*sum = (struct mx_gen_counters){ 0 };
	unsigned ns = g->nservices ? g->nservices : 1;
	if (service >= ns)
		return;
	for (unsigned w = 0; w < g->nworkers; w++) {
		const struct mx_gen_counters *c = &g->counters[(size_t)w * ns + service];
#define MX_GEN_ADD(f) sum->f += __atomic_load_n(&c->f, __ATOMIC_RELAXED)
		MX_GEN_ADD(connections);
		MX_GEN_ADD(connections_closed);
		MX_GEN_ADD(messages_accepted);
		MX_GEN_ADD(messages_rejected);
		MX_GEN_ADD(recipients_accepted);
		MX_GEN_ADD(recipients_rejected);
		MX_GEN_ADD(recipients_deferred);
		MX_GEN_ADD(connections_refused);
		MX_GEN_ADD(anvil_refused);
		MX_GEN_ADD(timed_out);
#undef MX_GEN_ADD
	}
}

static uint32_t mx_gen_name_hash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

void mx_generation_count_reject(struct mx_generation *g, unsigned worker,
				const char *restriction, bool deferred)
{
	mx_generation_count_list_reject(g, worker, "", restriction, deferred);
}

void mx_generation_count_list_reject(struct mx_generation *g, unsigned worker,
				     const char *list, const char *restriction, bool deferred)
{
	if (worker >= g->nworkers)
		return;
	if (!list)
		list = "";
	struct mx_gen_rejects *t = atomic_load_explicit(&g->rejects[worker],
							 memory_order_relaxed);
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return; /* a statistic, not worth failing a session for */
		atomic_store_explicit(&g->rejects[worker], t, memory_order_release);
	}
	char name[MX_GEN_REJECT_NAME_MAX], lname[MX_GEN_REJECT_LIST_MAX];
	snprintf(name, sizeof(name), "%s", restriction && *restriction ? restriction : "?");
	snprintf(lname, sizeof(lname), "%s", list);
	uint32_t h = mx_gen_name_hash(name) ^ mx_gen_name_hash(lname);
	for (unsigned k = 0; k < MX_GEN_REJECT_SLOTS; k++) {
		struct mx_gen_reject_slot *sl = &t->slot[(h + k) % MX_GEN_REJECT_SLOTS];
		if (!atomic_load_explicit(&sl->used, memory_order_relaxed)) {
			memcpy(sl->name, name, sizeof(name));
			memcpy(sl->list, lname, sizeof(lname));
			atomic_store_explicit(&sl->used, true, memory_order_release);
		} else if (strcmp(sl->name, name) != 0 || strcmp(sl->list, lname) != 0) {
			continue;
		}
		__atomic_fetch_add(deferred ? &sl->deferred : &sl->rejected, 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(deferred ? &t->other_deferred : &t->other_rejected, 1,
			   __ATOMIC_RELAXED);
}

/* The workers' tables merged by name, or by (list, name) when by_list; fn gets list ""
 * when not by_list. */
static void mx_gen_rejects_merge(const struct mx_generation *g, bool by_list,
				 void (*fn)(void *ctx, const char *list, const char *restriction,
					    uint64_t rejected, uint64_t deferred),
				 void *ctx)
{
	/* merge the workers' tables by name (at most nworkers * slots names, usually a few) */
	struct merged {
		const char *list, *name;
		uint64_t rejected, deferred;
	} m[MX_GEN_REJECT_SLOTS * 4];
	size_t n = 0;
	uint64_t other_rej = 0, other_def = 0;
	for (unsigned w = 0; w < g->nworkers; w++) {
		const struct mx_gen_rejects *t =
			atomic_load_explicit(&g->rejects[w], memory_order_acquire);
		if (!t)
			continue;
		other_rej += __atomic_load_n(&t->other_rejected, __ATOMIC_RELAXED);
		other_def += __atomic_load_n(&t->other_deferred, __ATOMIC_RELAXED);
		for (unsigned k = 0; k < MX_GEN_REJECT_SLOTS; k++) {
			const struct mx_gen_reject_slot *sl = &t->slot[k];
			if (!atomic_load_explicit(&sl->used, memory_order_acquire))
				continue;
			const char *list = by_list ? sl->list : "";
			uint64_t r = __atomic_load_n(&sl->rejected, __ATOMIC_RELAXED);
			uint64_t d = __atomic_load_n(&sl->deferred, __ATOMIC_RELAXED);
			size_t i = 0;
			while (i < n && (strcmp(m[i].name, sl->name) != 0 ||
					 strcmp(m[i].list, list) != 0))
				i++;
			if (i == n) {
				if (n == sizeof(m) / sizeof(m[0])) {
					other_rej += r;
					other_def += d;
					continue;
				}
				m[n++] = (struct merged){ list, sl->name, 0, 0 };
			}
			m[i].rejected += r;
			m[i].deferred += d;
		}
	}
	for (size_t i = 0; i < n; i++)
		fn(ctx, m[i].list, m[i].name, m[i].rejected, m[i].deferred);
	if (other_rej || other_def)
		fn(ctx, by_list ? "other" : "", "other", other_rej, other_def);
}

struct mx_gen_rejects_adapter {
	void (*fn)(void *ctx, const char *restriction, uint64_t rejected, uint64_t deferred);
	void *ctx;
};

static void mx_gen_rejects_adapt(void *ctx, const char *list, const char *restriction,
				 uint64_t rejected, uint64_t deferred)
{
	(void)list;
	const struct mx_gen_rejects_adapter *a = ctx;
	a->fn(a->ctx, restriction, rejected, deferred);
}

void mx_generation_rejects(const struct mx_generation *g,
			   void (*fn)(void *ctx, const char *restriction, uint64_t rejected,
				      uint64_t deferred),
			   void *ctx)
{
	struct mx_gen_rejects_adapter a = { fn, ctx };
	mx_gen_rejects_merge(g, false, mx_gen_rejects_adapt, &a);
}

void mx_generation_rejects_by_list(const struct mx_generation *g,
				   void (*fn)(void *ctx, const char *list,
					      const char *restriction, uint64_t rejected,
					      uint64_t deferred),
				   void *ctx)
{
	mx_gen_rejects_merge(g, true, fn, ctx);
}

unsigned mx_generation_restart_changes(const struct mx_config *running,
				       const struct mx_generation *g, char *buf, size_t len)
{
	const char *names[64];
	size_t n = mx_config_restart_changes(running, g->cfg, names, 64);
	size_t used = 0;
	if (len)
		buf[0] = '\0';
	for (size_t i = 0; i < n && i < 64 && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
	return (unsigned)n;
}

struct mx_generation *mx_gen_pick(struct mx_gen_pub *pub, const struct mx_inet_addr *client,
				  unsigned *acc)
{
	struct mx_generation *canary = atomic_load_explicit(&pub->canary, memory_order_acquire);
	if (canary) {
		struct netlist *clients =
			atomic_load_explicit(&pub->canary_clients, memory_order_acquire);
		if (clients && netlist_match(clients, client))
			return canary;
		unsigned permille = atomic_load_explicit(&pub->canary_permille,
							 memory_order_relaxed);
		/* exactly permille of every thousand, spread evenly (a Bresenham step) */
		*acc += permille;
		if (*acc >= 1000) {
			*acc -= 1000;
			return canary;
		}
	}
	return atomic_load_explicit(&pub->current, memory_order_acquire);
}

void mx_gen_pub_init(struct mx_gen_pub *p, struct mx_generation *first)
{
	atomic_init(&p->current, first);
	atomic_init(&p->stress, false);
	atomic_init(&p->canary, NULL);
	atomic_init(&p->canary_permille, 0);
	atomic_init(&p->canary_clients, NULL);
}
