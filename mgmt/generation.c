#include "mgmt/generation.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/config_params.h"
#include "mxgate/errf.h"

static void mx_service_fini(struct mx_service *s)
{
	smtp_policy_free(s->policy);
	mx_checks_free(&s->checks);
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
	free(g->path);
	free(g);
}

/* Compile what a service's parameters ask for. */
static int mx_service_compile(struct mx_service *s, FILE *diag, char *err, size_t errlen)
{
	char why[512];
	int rc = mx_policy_build(s->cfg, &s->policy, diag, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s: %s", s->name, why);
	rc = mx_checks_build(s->cfg, &s->checks, why, sizeof(why));
	if (rc < 0)
		return mx_errf(err, errlen, rc, "service %s: %s", s->name, why);
	return 0;
}

/* Without a master file, one service listens on the addresses of mxgate_listen with the
 * main configuration, as before services existed. */
static int mx_generation_default_service(struct mx_generation *g, FILE *diag, char *err,
					 size_t errlen)
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
	if (cfg->listen_count) {
		const struct mx_listen_addr *a = &cfg->listen[0];
		bool v6 = strchr(a->host, ':') && a->host[0] != '[';
		snprintf(s->name, sizeof(s->name), "%s%s%s:%u", v6 ? "[" : "", a->host,
			 v6 ? "]" : "", (unsigned)a->port);
	} else {
		snprintf(s->name, sizeof(s->name), "smtp");
	}
	return mx_service_compile(s, diag, err, errlen);
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
	int rc;
	if (!g->path || !g->counters) {
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
	if ((rc = mx_generation_default_service(g, o->diag, err, errlen)) < 0)
		goto fail;
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

void mx_generation_counters(const struct mx_generation *g, struct mx_gen_counters *sum)
{
	*sum = (struct mx_gen_counters){ 0 };
	for (unsigned w = 0; w < g->nworkers; w++) {
		const struct mx_gen_counters *c = &g->counters[w];
#define MX_GEN_ADD(f) sum->f += __atomic_load_n(&c->f, __ATOMIC_RELAXED)
		MX_GEN_ADD(connections);
		MX_GEN_ADD(connections_closed);
		MX_GEN_ADD(messages_accepted);
		MX_GEN_ADD(messages_rejected);
		MX_GEN_ADD(recipients_accepted);
		MX_GEN_ADD(recipients_rejected);
		MX_GEN_ADD(recipients_deferred);
#undef MX_GEN_ADD
	}
}

/* What the gateway reads once, at start: the transport and its ports, the workers, the
 * spools and the relay built on them, the control socket, the table store, the log. */
static bool mx_param_restart_only(const char *name)
{
	static const char *const names[] = {
		"mxgate_transport", "dataplane", "mxgate_workers", "mxgate_max_connections",
		"mxgate_spool_directory", "mxgate_spool_segment_size", "mxgate_spool_quota",
		"mxgate_spool_commit_delay", "mxgate_control_socket", "mxgate_table_directory",
		"maillog_file", "relayhost", "mxgate_relay_protocol", "transport_maps",
		"default_destination_concurrency_limit", "smtp_connect_timeout",
		"smtp_helo_timeout", "smtp_mail_timeout", "smtp_rcpt_timeout",
		"smtp_data_init_timeout", "smtp_data_xfer_timeout", "smtp_data_done_timeout",
		"smtp_quit_timeout", "smtp_connection_cache_time_limit", "minimal_backoff_time",
		"maximal_backoff_time", "queue_run_delay", "maximal_queue_lifetime",
		"bounce_queue_lifetime", "bounce_size_limit",
	};
	if (strncmp(name, "mxgate_dpdk_", 12) == 0)
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

unsigned mx_generation_restart_changes(const struct mx_config *running,
				       const struct mx_generation *g, char *buf, size_t len)
{
	unsigned n = 0;
	size_t used = 0;
	if (len)
		buf[0] = '\0';
	for (unsigned id = 0; id < MX_P_MAX; id++) {
		const char *name = mx_params[id].name;
		if (!mx_param_restart_only(name))
			continue;
		const char *va = mx_config_get(running, name), *vb = mx_config_get(g->cfg, name);
		if ((va == NULL) != (vb == NULL) || (va && strcmp(va, vb) != 0)) {
			if (used < len)
				used += (size_t)snprintf(buf + used, len - used, "%s%s", n ? ", " : "",
							 name);
			n++;
		}
	}
	return n;
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
