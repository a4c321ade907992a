#include "mgmt/policy.h"

#include "mgmt/log.h"
#include "tables/rbl_zone.h"
#include "tables/dns_conf.h"
#include "tables/tables_env.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/list.h"

static const char *mx_policy_class_value(void *ctx, const char *name)
{
	return mx_config_get_any(ctx, name);
}

static unsigned mx_policy_code(const struct mx_config *cfg, const char *name)
{
	/* Validated by the config (an int within its bounds: 400..599 for a code). */
	const char *v = mx_config_get(cfg, name);
	return v ? (unsigned)strtoul(v, NULL, 10) : 0;
}

static bool mx_policy_bool(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	return v && strcasecmp(v, "yes") == 0;
}

/* A TIME parameter in seconds (validated by the config: digits and one unit letter). */
static unsigned mx_policy_seconds(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	if (!v)
		return 0;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	switch (*end) {
	case 'm':
		n *= 60;
		break;
	case 'h':
		n *= 3600;
		break;
	case 'd':
		n *= 86400;
		break;
	case 'w':
		n *= 604800;
		break;
	default:
		break;
	}
	return n > 0x7fffffff ? 0x7fffffffu : (unsigned)n;
}

static enum smtp_policy_tempfail_action mx_policy_tempfail(const struct mx_config *cfg,
							   const char *name)
{
	enum smtp_policy_tempfail_action a = SMTP_POLICY_TEMPFAIL_DEFER_IF_PERMIT;
	(void)smtp_policy_tempfail_action_parse(mx_config_get(cfg, name), &a);
	return a;
}

struct mx_policy_diag {
	const struct mx_config *cfg;
	FILE *f;
};

/* "smtpd_client_restrictions: unknown restriction: ..." -> "FILE:LINE: ..." with the line
 * of the parameter the message starts with (a list, a class, a map parameter). */
static void mx_policy_diag_line(void *ctx, const char *line)
{
	struct mx_policy_diag *d = ctx;
	char name[128];
	size_t n = strcspn(line, ":");
	snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), line);
	unsigned at;
	const char *file = mx_config_source(d->cfg, name, &at);
	if (!file)
		file = "mxgate.cf";
	if (at)
		fprintf(d->f, "%s:%u: %s\n", file, at, line);
	else
		fprintf(d->f, "%s: %s (in the default value)\n", file, line);
}

static const char *const list_params[SMTP_LIST_MAX] = {
	[SMTP_LIST_CLIENT] = "smtpd_client_restrictions",
	[SMTP_LIST_HELO] = "smtpd_helo_restrictions",
	[SMTP_LIST_SENDER] = "smtpd_sender_restrictions",
	[SMTP_LIST_RELAY] = "smtpd_relay_restrictions",
	[SMTP_LIST_RECIPIENT] = "smtpd_recipient_restrictions",
	[SMTP_LIST_DATA] = "smtpd_data_restrictions",
	[SMTP_LIST_END_OF_DATA] = "smtpd_end_of_data_restrictions",
};

#define MX_POLICY_SEPARATORS ", \t\r\n"

/* Call fn(param, text, arg) for each restriction list, then each restriction class (by
 * its name); with only_set, only for those set in the file (a default is not the
 * operator's choice: Postfix's smtpd_relay_restrictions names permit_sasl_authenticated).
 * Stops when fn returns true, and returns that. */
static bool mx_policy_each_list(const struct mx_config *cfg, bool only_set,
				bool (*fn)(const char *param, const char *text, void *arg),
				void *arg)
{
	for (int l = 0; l < SMTP_LIST_MAX; l++) {
		const char *text = mx_config_get(cfg, list_params[l]);
		if (text && (!only_set || mx_config_line(cfg, list_params[l])) &&
		    fn(list_params[l], text, arg))
			return true;
	}
	const char *classes = mx_config_get(cfg, "smtpd_restriction_classes");
	for (const char *p = classes; p && *p;) {
		p += strspn(p, MX_POLICY_SEPARATORS);
		size_t n = strcspn(p, MX_POLICY_SEPARATORS);
		char name[256];
		if (n && n < sizeof(name)) {
			memcpy(name, p, n);
			name[n] = '\0';
			const char *text = mx_config_get_any(cfg, name);
			if (text && (!only_set || mx_config_line(cfg, name)) && fn(name, text, arg))
				return true;
		}
		p += n;
	}
	return false;
}

/* Restrictions that can never match in this configuration: the SASL ones (needs NULL)
 * without smtpd_sasl_auth_enable, the client certificate ones without
 * smtpd_tls_ask_ccert. */
static const struct {
	const char *word;
	const char *needs;
} mx_policy_never_match[] = {
	{ "permit_sasl_authenticated", NULL },
	{ "reject_sender_login_mismatch", NULL },
	{ "reject_authenticated_sender_login_mismatch", NULL },
	{ "reject_known_sender_login_mismatch", NULL },
	{ "reject_unauthenticated_sender_login_mismatch", NULL },
	{ "check_sasl_access", NULL },
	/* only with smtpd_tls_ask_ccert = yes (Postfix warns at each use) */
	{ "permit_tls_clientcerts", "TLS client certificates" },
	{ "permit_tls_all_clientcerts", "TLS client certificates" },
	{ "check_ccert_access", "TLS client certificates" },
};

struct mx_policy_never {
	const struct mx_config *cfg;
	FILE *diag;
	int found;
};

static bool mx_policy_never_list(const char *param, const char *text, void *arg)
{
	struct mx_policy_never *nv = arg;
	for (const char *p = text; *p;) {
		p += strspn(p, MX_POLICY_SEPARATORS);
		size_t n = strcspn(p, MX_POLICY_SEPARATORS);
		for (size_t i = 0;
		     i < sizeof(mx_policy_never_match) / sizeof(mx_policy_never_match[0]); i++) {
			const char *word = mx_policy_never_match[i].word;
			if (!n || strlen(word) != n || strncasecmp(p, word, n) != 0)
				continue;
			bool ccert = mx_policy_never_match[i].needs &&
				     strcmp(mx_policy_never_match[i].needs,
					    "TLS client certificates") == 0;
			if (ccert && mx_policy_bool(nv->cfg, "smtpd_tls_ask_ccert"))
				continue; /* asked for: they can match */
			unsigned line;
			const char *file = mx_config_source(nv->cfg, param, &line);
			const char *needs = mx_policy_never_match[i].needs;
			if (!needs && nv->cfg->sasl_auth_enable)
				continue; /* a SASL restriction, and AUTH is on */
			if (!needs)
				fprintf(nv->diag,
					"%s:%u: warning: %s: %s can never match: "
					"smtpd_sasl_auth_enable = no\n",
					file, line, param, word);
			else if (ccert)
				fprintf(nv->diag,
					"%s:%u: warning: %s: %s can never match: "
					"smtpd_tls_ask_ccert = no\n",
					file, line, param, word);
			else
				fprintf(nv->diag,
					"%s:%u: warning: %s: %s can never match: mxgate does not "
					"offer %s yet\n",
					file, line, param, word, needs);
			nv->found++;
		}
		p += n;
	}
	return false;
}

int mx_policy_warn_never_match(const struct mx_config *cfg, FILE *diag)
{
	struct mx_policy_never nv = { .cfg = cfg, .diag = diag };
	mx_policy_each_list(cfg, true, mx_policy_never_list, &nv);
	return nv.found;
}

static int mx_policy_count_zones(void *ctx, const char *spec, bool is_zone)
{
	(void)spec;
	*(size_t *)ctx += is_zone;
	return 0;
}

/* Is `spec` ("zen.example" or "zen.example=127.0.0.2") written in list text? */
static bool mx_policy_names_zone(const char *param, const char *text, void *arg)
{
	(void)param;
	const char *spec = arg;
	size_t zl = strcspn(spec, "=");
	for (const char *p = text; *p;) {
		p += strspn(p, MX_POLICY_SEPARATORS);
		size_t n = strcspn(p, MX_POLICY_SEPARATORS);
		size_t wl = strcspn(p, "=" MX_POLICY_SEPARATORS);
		if (n && wl == zl && strncasecmp(p, spec, zl) == 0)
			return true;
		p += n;
	}
	return false;
}

struct mx_policy_zone_at {
	const char *spec;
	const char *param; /* found */
	char buf[256];
};

static bool mx_policy_zone_at(const char *param, const char *text, void *arg)
{
	struct mx_policy_zone_at *za = arg;
	if (!mx_policy_names_zone(param, text, (void *)za->spec))
		return false;
	snprintf(za->buf, sizeof(za->buf), "%s", param);
	za->param = za->buf;
	return true;
}

/* A problem found while checking: "FILE:LINE: msg" (or "FILE: msg" when the line is not
 * known) on diag, and the first of them kept in err; *count counts them. */
static void mx_policy_report(FILE *diag, const char *file, unsigned line, const char *msg,
			     int *count, char *err, size_t errlen)
{
	if (!file)
		file = "mxgate.cf";
	if (diag) {
		if (line)
			fprintf(diag, "%s:%u: %s\n", file, line, msg);
		else
			fprintf(diag, "%s: %s\n", file, msg);
	}
	if ((*count)++ == 0 && err)
		snprintf(err, errlen, "%s", msg);
}

/* inline: and static: tables live in the configuration itself: one that cannot be opened
 * is a configuration error, found now rather than by the first connection (a worker
 * cannot serve a service whose tables do not open). */
struct mx_policy_inline {
	const struct mx_config *cfg;
	FILE *diag;
	char *err;
	size_t errlen;
	int bad;
};

struct mx_policy_text_at {
	const char *needle;
	char param[256];
};

static bool mx_policy_text_at(const char *param, const char *text, void *arg)
{
	struct mx_policy_text_at *ta = arg;
	char head[64];
	/* the spec as compiled may differ in blanks inside braces: its start is enough */
	snprintf(head, sizeof(head), "%s", ta->needle);
	size_t n = strcspn(head, "{");
	head[n < sizeof(head) - 2 ? n + 1 : n] = '\0';
	if (!strstr(text, head))
		return false;
	snprintf(ta->param, sizeof(ta->param), "%s", param);
	return true;
}

static int mx_policy_inline_one(void *ctx, const char *spec, bool is_zone)
{
	struct mx_policy_inline *pi = ctx;
	enum table_kind kind;
	const char *name;
	char why[300];
	if (is_zone || table_spec_parse(spec, &kind, &name, why, sizeof(why)) != 0 ||
	    (kind != TABLE_KIND_STATIC && kind != TABLE_KIND_INLINE))
		return 0;
	struct table *t = NULL;
	int rc = table_open(NULL, spec, &t, why, sizeof(why));
	table_close(t);
	if (rc == 0)
		return 0;
	struct mx_policy_text_at ta = { .needle = spec };
	unsigned line = 0;
	const char *file = pi->cfg->source_path;
	if (mx_policy_each_list(pi->cfg, false, mx_policy_text_at, &ta))
		file = mx_config_source(pi->cfg, ta.param, &line);
	char msg[800];
	snprintf(msg, sizeof(msg), "%s%s%.80s: %s", ta.param[0] ? ta.param : "",
		 ta.param[0] ? ": " : "", spec, why);
	mx_policy_report(pi->diag, file, line, msg, &pi->bad, pi->err, pi->errlen);
	return 0;
}

/* Policy servers on UNIX sockets: Postfix reads "unix:private/policy" relative to its
 * queue_directory, which mxgate does not have; a relative path would silently be relative
 * to wherever mxgate was started, so it is refused with its line. */
static void mx_policy_check_services(const struct mx_config *cfg, const struct smtp_policy *p,
				     struct mx_policy_inline *pi)
{
	for (size_t i = 0; i < smtp_policy_service_count(p); i++) {
		const struct smtp_policy_service *svc = smtp_policy_service_get(p, i);
		const char *ep = svc->endpoint;
		const char *path = strncmp(ep, "unix:", 5) == 0	   ? ep + 5
				   : strncmp(ep, "local:", 6) == 0 ? ep + 6
								   : NULL;
		if (!path || path[0] == '/')
			continue;
		struct mx_policy_text_at ta = { .needle = svc->name };
		unsigned line = 0;
		const char *file = pi->cfg->source_path;
		if (mx_policy_each_list(cfg, false, mx_policy_text_at, &ta))
			file = mx_config_source(cfg, ta.param, &line);
		char msg[1200];
		snprintf(msg, sizeof(msg),
			 "%s%scheck_policy_service %.200s: a relative path is relative to Postfix's "
			 "queue_directory, which mxgate does not have: write the socket's absolute "
			 "path (for example unix:/var/spool/postfix/%.200s)",
			 ta.param[0] ? ta.param : "", ta.param[0] ? ": " : "", ep, path);
		mx_policy_report(pi->diag, file, line, msg, &pi->bad, pi->err, pi->errlen);
	}
}

/* A line of an allowlist file postgrey would warn about (and skip). */
struct mx_policy_gl_warn {
	FILE *diag;
	const char *path;
};

static void mx_policy_gl_warn(void *ctx, unsigned line, const char *why)
{
	struct mx_policy_gl_warn *w = ctx;
	if (w->diag)
		fprintf(w->diag, "%s:%u: warning: %s (ignored, as postgrey does)\n", w->path, line,
			why);
}

/* check_greylist's parameters, and its allowlist files loaded (postgrey's formats):
 * 0, or a negative errno with err naming the parameter, the file and its line. */
static int mx_policy_greylist(const struct mx_config *cfg, struct smtp_greylist_config *g,
			      FILE *diag, char *err, size_t errlen)
{
	smtp_greylist_config_defaults(g);
	g->map = mx_config_get(cfg, "mxgate_greylist_map");
	g->params.delay_s = mx_policy_seconds(cfg, "mxgate_greylist_delay");
	g->params.max_age_s = mx_policy_seconds(cfg, "mxgate_greylist_max_age");
	g->params.retry_window_s = mx_policy_seconds(cfg, "mxgate_greylist_retry_window");
	g->params.awl_clients = mx_policy_code(cfg, "mxgate_greylist_auto_allowlist_clients");
	g->params.awl_interval_s = mx_policy_seconds(cfg, "mxgate_greylist_auto_allowlist_interval");
	g->ipv4_prefix = mx_policy_code(cfg, "mxgate_greylist_ipv4_prefix_length");
	g->ipv6_prefix = mx_policy_code(cfg, "mxgate_greylist_ipv6_prefix_length");
	g->action = mx_config_get(cfg, "mxgate_greylist_action");
	g->text = mx_config_get(cfg, "mxgate_greylist_text");
	g->header = mx_config_get(cfg, "mxgate_greylist_header");
	g->default_action = mx_config_get(cfg, "mxgate_greylist_default_action");
	if (!g->map)
		g->map = "";
	static const char *const params[GREYLIST_LIST_MAX] = {
		[GREYLIST_LIST_CLIENTS] = "mxgate_greylist_client_allowlist",
		[GREYLIST_LIST_RECIPIENTS] = "mxgate_greylist_recipient_allowlist",
	};
	for (int l = 0; l < GREYLIST_LIST_MAX; l++) {
		const char *cur = mx_config_get(cfg, params[l]);
		const char *word;
		size_t n;
		while (cur && (n = mx_list_next(&cur, &word)) != 0) {
			char path[4096];
			if (n >= sizeof(path)) {
				snprintf(err, errlen, "%s: file name too long", params[l]);
				return -ENAMETOOLONG;
			}
			memcpy(path, word, n);
			path[n] = '\0';
			if (!g->allowlist && !(g->allowlist = greylist_allowlist_new()))
				return -ENOMEM;
			struct mx_policy_gl_warn w = { .diag = diag, .path = path };
			char why[600];
			int rc = greylist_allowlist_load(g->allowlist, (enum greylist_list)l, path,
							 mx_policy_gl_warn, &w, why, sizeof(why));
			if (rc < 0) {
				unsigned line = 0;
				const char *file = mx_config_source(cfg, params[l], &line);
				snprintf(err, errlen, "%s: %s", params[l], why);
				if (diag)
					fprintf(diag, "%s:%u: %s\n", file ? file : "mxgate.cf", line, err);
				return rc;
			}
		}
	}
	return 0;
}

int mx_policy_build(const struct mx_config *cfg, struct smtp_policy **out, FILE *diag,
		    char *err, size_t errlen)
{
	struct mx_policy_diag pd = { .cfg = cfg, .f = diag };
	struct smtp_policy_config pc = {
		.restriction_classes = mx_config_get(cfg, "smtpd_restriction_classes"),
		.class_value = mx_policy_class_value,
		.class_ctx = (void *)cfg,
		.delay_reject = mx_policy_bool(cfg, "smtpd_delay_reject"),
		.soft_bounce = mx_policy_bool(cfg, "soft_bounce"),
		.reject_unlisted_recipient = mx_policy_bool(cfg, "smtpd_reject_unlisted_recipient"),
		.reject_unlisted_sender = mx_policy_bool(cfg, "smtpd_reject_unlisted_sender"),
		.mynetworks = cfg->mynetworks,
		.mydestination = cfg->mydestination,
		.relay_domains = cfg->relay_domains,
		.myorigin = cfg->myorigin,
		.relay_recipient_maps = mx_config_get(cfg, "relay_recipient_maps"),
		.relay_clientcerts = mx_config_get(cfg, "relay_clientcerts"),
		.local_recipient_maps = mx_config_get(cfg, "local_recipient_maps"),
		.rbl_reply_maps = mx_config_get(cfg, "rbl_reply_maps"),
		.sender_login_maps = mx_config_get(cfg, "smtpd_sender_login_maps"),
		.sasl_enabled = cfg->sasl_auth_enable,
		.myhostname = cfg->myhostname,
		.access = {
			.recipient_delimiter = cfg->recipient_delimiter,
			.parent_matches_subdomains = mx_config_word_listed(
				cfg, "parent_domain_matches_subdomains", "smtpd_access_maps"),
			.null_key = mx_config_get(cfg, "smtpd_null_access_lookup_key"),
		},
	};
	for (int l = 0; l < SMTP_LIST_MAX; l++)
		pc.lists[l] = mx_config_get(cfg, list_params[l]);
	if (diag) {
		pc.diag = mx_policy_diag_line;
		pc.diag_ctx = &pd;
	}

	smtp_policy_codes_defaults(&pc.codes);
	struct smtp_policy_codes *c = &pc.codes;
	c->reject_code = mx_policy_code(cfg, "reject_code");
	c->defer_code = mx_policy_code(cfg, "defer_code");
	c->access_map_reject_code = mx_policy_code(cfg, "access_map_reject_code");
	c->access_map_defer_code = mx_policy_code(cfg, "access_map_defer_code");
	c->invalid_hostname_reject_code = mx_policy_code(cfg, "invalid_hostname_reject_code");
	c->non_fqdn_reject_code = mx_policy_code(cfg, "non_fqdn_reject_code");
	c->relay_domains_reject_code = mx_policy_code(cfg, "relay_domains_reject_code");
	c->maps_rbl_reject_code = mx_policy_code(cfg, "maps_rbl_reject_code");
	c->unknown_relay_recipient_reject_code =
		mx_policy_code(cfg, "unknown_relay_recipient_reject_code");
	c->unknown_local_recipient_reject_code =
		mx_policy_code(cfg, "unknown_local_recipient_reject_code");
	c->multi_recipient_bounce_reject_code =
		mx_policy_code(cfg, "multi_recipient_bounce_reject_code");
	c->default_rbl_reply = mx_config_get(cfg, "default_rbl_reply");
	c->unknown_client_reject_code = mx_policy_code(cfg, "unknown_client_reject_code");
	c->plaintext_reject_code = mx_policy_code(cfg, "plaintext_reject_code");
	c->unknown_hostname_reject_code = mx_policy_code(cfg, "unknown_hostname_reject_code");
	c->unknown_address_reject_code = mx_policy_code(cfg, "unknown_address_reject_code");
	c->unknown_helo_hostname_tempfail_action =
		mx_policy_tempfail(cfg, "unknown_helo_hostname_tempfail_action");
	c->unknown_address_tempfail_action =
		mx_policy_tempfail(cfg, "unknown_address_tempfail_action");

	struct smtp_policy_service *ps = &pc.policy_service;
	smtp_policy_service_defaults(ps);
	ps->timeout = mx_policy_seconds(cfg, "smtpd_policy_service_timeout");
	ps->max_idle = mx_policy_seconds(cfg, "smtpd_policy_service_max_idle");
	ps->max_ttl = mx_policy_seconds(cfg, "smtpd_policy_service_max_ttl");
	ps->retry_delay = mx_policy_seconds(cfg, "smtpd_policy_service_retry_delay");
	ps->try_limit = mx_policy_code(cfg, "smtpd_policy_service_try_limit");
	ps->request_limit = mx_policy_code(cfg, "smtpd_policy_service_request_limit");
	ps->default_action = mx_config_get(cfg, "smtpd_policy_service_default_action");
	ps->policy_context = mx_config_get(cfg, "smtpd_policy_service_policy_context");

	const char *servers = mx_config_get(cfg, "mxgate_dns_servers");
	char why[256];
	if (mx_policy_dns_servers(servers ? servers : "", NULL, 0, why, sizeof(why)) < 0) {
		unsigned line = 0;
		const char *file = mx_config_source(cfg, "mxgate_dns_servers", &line);
		snprintf(err, errlen, "mxgate_dns_servers: %s", why);
		if (diag)
			fprintf(diag, "%s:%u: %s\n", file ? file : "mxgate.cf", line, err);
		return -EINVAL;
	}

	/* last before compiling, which takes the allowlist over */
	int grc = mx_policy_greylist(cfg, &pc.greylist, diag, err, errlen);
	if (grc < 0) {
		greylist_allowlist_free(pc.greylist.allowlist);
		return grc;
	}
	if (diag)
		mx_policy_warn_never_match(cfg, diag);
	int rc = smtp_policy_compile(&pc, out, err, errlen);
	if (rc < 0)
		return rc;
	struct mx_policy_inline pi = { .cfg = cfg, .diag = diag, .err = err, .errlen = errlen };
	smtp_policy_foreach_table(*out, mx_policy_inline_one, &pi);
	mx_policy_check_services(cfg, *out, &pi);
	if (pi.bad) {
		smtp_policy_free(*out);
		*out = NULL;
		return -EINVAL;
	}
	/* A zone with no local data is a DNS query, and DNS needs a resolver. */
	if (mx_policy_check_zones(cfg, *out, diag, err, errlen) != 0) {
		smtp_policy_free(*out);
		*out = NULL;
		return -ENOENT;
	}
	return 0;
}

static int mx_policy_stored(void *ctx, const char *spec, bool is_zone)
{
	bool *needs = ctx;
	enum table_kind kind;
	const char *name;
	char err[128];
	if (!is_zone && table_spec_parse(spec, &kind, &name, err, sizeof(err)) == 0 &&
	    kind != TABLE_KIND_STATIC && kind != TABLE_KIND_INLINE) {
		*needs = true;
		return 1;
	}
	return 0;
}

bool mx_policy_needs_tables(const struct smtp_policy *p)
{
	bool needs = false;
	smtp_policy_foreach_table(p, mx_policy_stored, &needs);
	return needs;
}

struct mx_policy_probe {
	const struct mx_config *cfg;
	struct tables_reader *rd;
	FILE *diag;
	int warnings;
};

static int mx_policy_probe_one(void *ctx, const char *spec, bool is_zone)
{
	struct mx_policy_probe *pr = ctx;
	bool needs = false;
	mx_policy_stored(&needs, spec, is_zone);
	if (!needs || is_zone) /* zones: mx_policy_check_zones(), errors */
		return 0;
	struct table *t = NULL;
	char val[TABLE_VALUE_MAX + 1], err[256];
	int rc = table_open(pr->rd, spec, &t, err, sizeof(err));
	if (rc == 0)
		rc = table_lookup(t, "mxgate-check-probe", val, sizeof(val));
	table_close(t);
	if (rc == -ENOENT) {
		fprintf(pr->diag,
			"mxgate: warning: table %s is not in mxgate_table_directory %s: every "
			"lookup will answer 451 4.3.5 until it is built (mxgate-map -d DIR "
			"TYPE:NAME FILE)\n",
			spec, pr->cfg->table_directory);
		pr->warnings++;
	} else if (rc < 0) {
		fprintf(pr->diag, "mxgate: warning: table %s cannot be read: %s\n", spec,
			strerror(-rc));
		pr->warnings++;
	}
	return 0;
}

struct mx_policy_zones {
	const struct mx_config *cfg;
	const char *resolv_conf;
	struct tables_reader *rd; /* NULL: the table directory cannot be read */
	const char *env_error;
	FILE *diag;
	char *err;
	size_t errlen;
	int missing;
};

static int mx_policy_zone_one(void *ctx, const char *spec, bool is_zone)
{
	struct mx_policy_zones *zs = ctx;
	if (!is_zone)
		return 0;
	int rc = -ENOENT;
	char why[600];
	if (zs->rd) {
		struct rbl_zone *z = NULL;
		struct rbl_result res;
		rc = rbl_zone_open(zs->rd, spec, &z);
		if (rc == 0)
			rc = rbl_zone_query_name(z, "mxgate-check.invalid", 0, &res);
		rbl_zone_close(z);
		if (rc >= 0)
			return 0;
		snprintf(why, sizeof(why), "%s%s%s", rc == -ENOENT ? "" : " (",
			 rc == -ENOENT ? "" : strerror(-rc), rc == -ENOENT ? "" : ")");
	} else {
		snprintf(why, sizeof(why), " (%s)", zs->env_error);
	}
	size_t zl = strcspn(spec, "=");
	struct mx_policy_zone_at za = { .spec = spec };
	mx_policy_each_list(zs->cfg, false, mx_policy_zone_at, &za);
	unsigned line = 0;
	const char *file = za.param ? mx_config_source(zs->cfg, za.param, &line)
				    : zs->cfg->source_path;
	char msg[1200];
	snprintf(msg, sizeof(msg),
		 "%s: RBL zone %.*s has no local data in mxgate_table_directory %s%s, and no DNS "
		 "resolver is configured (mxgate_dns_servers is empty and %s names no "
		 "nameserver): set mxgate_dns_servers, or load the zone with mxgate-map -d %s "
		 "-z %.*s -t FORMAT FILE",
		 za.param ? za.param : "restrictions", (int)zl, spec, zs->cfg->table_directory,
		 why, zs->resolv_conf, zs->cfg->table_directory, (int)zl, spec);
	mx_policy_report(zs->diag, file, line, msg, &zs->missing, zs->err, zs->errlen);
	return 0;
}

/* A restriction that needs DNS, with no resolver: an error at its list's line. */
static int mx_policy_dns_one(void *ctx, const char *param, const char *restriction)
{
	struct mx_policy_zones *zs = ctx;
	unsigned line = 0;
	const char *file = mx_config_source(zs->cfg, param, &line);
	char msg[800];
	snprintf(msg, sizeof(msg),
		 "%s: %s needs DNS lookups, and no DNS resolver is configured "
		 "(mxgate_dns_servers is empty and %s names no nameserver)",
		 param, restriction, zs->resolv_conf);
	mx_policy_report(zs->diag, file, line, msg, &zs->missing, zs->err, zs->errlen);
	return 0;
}

unsigned mx_policy_resolv_conf_nameservers(const char *path)
{
	struct dns_resolv_conf rc;
	char err[256];
	if (dns_resolv_conf_read(path, &rc, err, sizeof(err)) < 0 || rc.defaulted)
		return 0;
	return rc.nservers;
}

int mx_policy_dns_servers(const char *value, struct dns_server *out, size_t max, char *err,
			  size_t errlen)
{
	struct dns_server all[DNS_CONF_SERVERS_MAX];
	unsigned n = 0;
	int rc = dns_servers_parse(value, all, DNS_CONF_SERVERS_MAX, &n, err, errlen);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; out && i < n && i < max; i++)
		out[i] = all[i];
	return (int)n;
}

int mx_policy_check_zones(const struct mx_config *cfg, const struct smtp_policy *p, FILE *diag,
			  char *err, size_t errlen)
{
	return mx_policy_check_dns(cfg, p, "/etc/resolv.conf", diag, err, errlen);
}

int mx_policy_check_dns(const struct mx_config *cfg, const struct smtp_policy *p,
			const char *resolv_conf, FILE *diag, char *err, size_t errlen)
{
	/* a resolver: every question can be asked */
	const char *servers = mx_config_get(cfg, "mxgate_dns_servers");
	char why[200];
	if (mx_policy_dns_servers(servers, NULL, 0, why, sizeof(why)) > 0 ||
	    mx_policy_resolv_conf_nameservers(resolv_conf) > 0)
		return 0;
	struct mx_policy_zones zs = { .cfg = cfg, .resolv_conf = resolv_conf, .diag = diag,
				      .err = err, .errlen = errlen };
	smtp_policy_foreach_dns(p, mx_policy_dns_one, &zs);
	size_t nz = 0;
	smtp_policy_foreach_table(p, mx_policy_count_zones, &nz);
	if (nz == 0)
		return zs.missing;
	struct tables_env *env = NULL;
	struct tables_env_opts o = { .read_only = true };
	char eerr[512];
	if (tables_env_open(cfg->table_directory, &o, &env, eerr, sizeof(eerr)) < 0) {
		zs.env_error = eerr;
	} else if (tables_reader_open(env, &zs.rd) < 0) {
		zs.env_error = "cannot read";
		zs.rd = NULL;
	}
	smtp_policy_foreach_table(p, mx_policy_zone_one, &zs);
	tables_reader_close(zs.rd);
	tables_env_close(env);
	return zs.missing;
}

int mx_policy_check_tables(const struct mx_config *cfg, const struct smtp_policy *p,
			   FILE *diag)
{
	if (!mx_policy_needs_tables(p))
		return 0;
	struct tables_env *env = NULL;
	struct tables_env_opts o = { .read_only = true };
	char err[512];
	if (tables_env_open(cfg->table_directory, &o, &env, err, sizeof(err)) < 0) {
		fprintf(diag,
			"mxgate: warning: mxgate_table_directory %s: %s; the restriction lists "
			"name tables, so the gateway will not start until they are built with "
			"mxgate-map -d %s\n",
			cfg->table_directory, err, cfg->table_directory);
		return 1;
	}
	struct mx_policy_probe pr = { .cfg = cfg, .diag = diag };
	if (tables_reader_open(env, &pr.rd) < 0) {
		fprintf(diag, "mxgate: warning: cannot read mxgate_table_directory %s\n",
			cfg->table_directory);
		tables_env_close(env);
		return 1;
	}
	smtp_policy_foreach_table(p, mx_policy_probe_one, &pr);
	tables_reader_close(pr.rd);
	tables_env_close(env);
	return pr.warnings;
}

int mx_checks_build(const struct mx_config *cfg, struct mx_checks *cc, char *err,
		    size_t errlen)
{
	static const char *const params[SMTP_CHECKS_CLASS_MAX] = {
		[SMTP_CHECKS_HEADER] = "header_checks",
		[SMTP_CHECKS_MIME_HEADER] = "mime_header_checks",
		[SMTP_CHECKS_NESTED_HEADER] = "nested_header_checks",
		[SMTP_CHECKS_BODY] = "body_checks",
	};
	*cc = (struct mx_checks){ 0 };
	/* A compiled set comes from, and goes to, the cache when its rules are unchanged;
	 * cache trouble is a warning, never a failed build. */
	struct checks_options opts = {
		.cache_dir = mx_config_get(cfg, "mxgate_checks_cache_directory"),
	};
	const char *values[SMTP_CHECKS_CLASS_MAX];
	for (int i = 0; i < SMTP_CHECKS_CLASS_MAX; i++) {
		values[i] = mx_config_get(cfg, params[i]);
		/* the same list as an earlier set: share its database */
		int same = -1;
		for (int j = 0; j < i && same < 0; j++)
			if (values[j] && strcmp(values[j], values[i]) == 0)
				same = j;
		if (same >= 0) {
			cc->cfg.set[i] = cc->cfg.set[same];
			continue;
		}
		char why[400];
		int rc = checks_compile_list_opts(values[i] ? values[i] : "", &opts, &cc->owned[i],
						  why, sizeof(why));
		if (rc < 0) {
			snprintf(err, errlen, "%s: %s", params[i], why);
			mx_checks_free(cc);
			return rc;
		}
		struct checks_stats st;
		checks_stats(cc->owned[i], &st);
		if (st.cache_error[0])
			mx_log(MX_LOG_WARNING, "%s: %s", params[i], st.cache_error);
		cc->cfg.set[i] = cc->owned[i];
	}
	for (int i = 0; i < SMTP_CHECKS_CLASS_MAX; i++)
		cc->any = cc->any || cc->cfg.set[i] != NULL;
	cc->cfg.body_checks_size_limit =
		(size_t)strtoull(mx_config_get(cfg, "body_checks_size_limit"), NULL, 10);
	cc->cfg.line_length_limit = cfg->smtp.line_length_limit;
	cc->cfg.header_size_limit = cfg->smtp.header_size_limit;
	return 0;
}

void mx_checks_free(struct mx_checks *cc)
{
	for (int i = 0; i < SMTP_CHECKS_CLASS_MAX; i++)
		checks_free(cc->owned[i]);
	*cc = (struct mx_checks){ 0 };
}
