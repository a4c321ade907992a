/* Postfix's smtpd restriction lists, evaluated as smtpd_check.c evaluates them (Postfix
 * 3.7): generic_checks() per list, check_table_result() per access(5) value,
 * smtpd_check_reject() for every refusal (warn_if_reject, defer_if_reject, soft_bounce,
 * the SMTP/DSN code consistency), and the stage drivers smtpd_check_{client,helo,mail,
 * rcpt,data,eod}. Control flow and reply texts follow that source; the code is ours.
 *
 * Sans-I/O: no logging (events go to the caller), no clock (req->now), no allocation
 * while evaluating (the per-thread context holds the scratch space). */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "tables/rbl_zone.h"

/* ---------------------------------------------------------------------------------------
 * Names */

const char *smtp_restriction_list_name(enum smtp_restriction_list l)
{
	static const char *const names[SMTP_LIST_MAX] = {
		"smtpd_client_restrictions",    "smtpd_helo_restrictions",
		"smtpd_sender_restrictions",    "smtpd_relay_restrictions",
		"smtpd_recipient_restrictions", "smtpd_data_restrictions",
		"smtpd_end_of_data_restrictions",
	};
	return (unsigned)l < SMTP_LIST_MAX ? names[l] : "?";
}

const char *smtp_policy_stage_name(enum smtp_policy_stage s)
{
	static const char *const names[SMTP_STAGE_MAX] = { "CONNECT", "HELO", "MAIL",
							   "RCPT",    "DATA", "END-OF-MESSAGE" };
	return (unsigned)s < SMTP_STAGE_MAX ? names[s] : "?";
}

void smtp_policy_codes_defaults(struct smtp_policy_codes *c)
{
	*c = (struct smtp_policy_codes){
		.reject_code = 554,
		.defer_code = 450,
		.access_map_reject_code = 554,
		.access_map_defer_code = 450,
		.invalid_hostname_reject_code = 501,
		.non_fqdn_reject_code = 504,
		.relay_domains_reject_code = 554,
		.maps_rbl_reject_code = 554,
		.unknown_relay_recipient_reject_code = 550,
		.unknown_local_recipient_reject_code = 550,
		.multi_recipient_bounce_reject_code = 550,
		.plaintext_reject_code = 450,
		.default_rbl_reply = "$rbl_code Service unavailable; $rbl_class [$rbl_what] "
				     "blocked using $rbl_domain${rbl_reason?; $rbl_reason}",
	};
}

/* ---------------------------------------------------------------------------------------
 * Restrictions mxgate knows */

enum smtp_restriction_id {
	R_PERMIT,
	R_REJECT,
	R_DEFER,
	R_DEFER_IF_PERMIT,
	R_DEFER_IF_REJECT,
	R_WARN_IF_REJECT,
	R_PERMIT_MYNETWORKS,
	R_PERMIT_SASL_AUTH,
	R_REJECT_UNAUTH_DEST,
	R_DEFER_UNAUTH_DEST,
	R_PERMIT_AUTH_DEST,
	R_REJECT_UNAUTH_PIPELINING,
	R_REJECT_INVALID_HELO,
	R_REJECT_NON_FQDN_HELO,
	R_REJECT_NON_FQDN_SENDER,
	R_REJECT_NON_FQDN_RCPT,
	R_REJECT_UNLISTED_RCPT,
	R_REJECT_UNLISTED_SENDER,
	R_REJECT_MULTI_RCPT_BOUNCE,
	R_CHECK_CLIENT_ACCESS,
	R_CHECK_REVERSE_CLIENT_ACCESS,
	R_CHECK_HELO_ACCESS,
	R_CHECK_SENDER_ACCESS,
	R_CHECK_RECIPIENT_ACCESS,
	R_REJECT_RBL_CLIENT,
	R_REJECT_RHSBL_CLIENT,
	R_REJECT_RHSBL_REVERSE_CLIENT,
	R_REJECT_RHSBL_HELO,
	R_REJECT_RHSBL_SENDER,
	R_REJECT_RHSBL_RECIPIENT,
	R_PERMIT_DNSWL_CLIENT,
	R_PERMIT_RHSWL_CLIENT,
	R_IMPLICIT_ACCESS, /* a bare "type:name": the list's own check_*_access */
	R_CLASS,           /* a restriction class */
	R_MAX
};

enum r_arg { ARG_NONE, ARG_TABLE, ARG_ZONE };

struct r_def {
	const char *name;
	enum smtp_restriction_id id;
	enum r_arg arg;
};

static const struct r_def r_defs[] = {
	{ "permit", R_PERMIT, ARG_NONE },
	{ "reject", R_REJECT, ARG_NONE },
	{ "defer", R_DEFER, ARG_NONE },
	{ "defer_if_permit", R_DEFER_IF_PERMIT, ARG_NONE },
	{ "defer_if_reject", R_DEFER_IF_REJECT, ARG_NONE },
	{ "warn_if_reject", R_WARN_IF_REJECT, ARG_NONE },
	{ "permit_mynetworks", R_PERMIT_MYNETWORKS, ARG_NONE },
	{ "permit_sasl_authenticated", R_PERMIT_SASL_AUTH, ARG_NONE },
	{ "reject_unauth_destination", R_REJECT_UNAUTH_DEST, ARG_NONE },
	{ "defer_unauth_destination", R_DEFER_UNAUTH_DEST, ARG_NONE },
	{ "permit_auth_destination", R_PERMIT_AUTH_DEST, ARG_NONE },
	{ "reject_unauth_pipelining", R_REJECT_UNAUTH_PIPELINING, ARG_NONE },
	{ "reject_invalid_helo_hostname", R_REJECT_INVALID_HELO, ARG_NONE },
	{ "reject_invalid_hostname", R_REJECT_INVALID_HELO, ARG_NONE },
	{ "reject_non_fqdn_helo_hostname", R_REJECT_NON_FQDN_HELO, ARG_NONE },
	{ "reject_non_fqdn_hostname", R_REJECT_NON_FQDN_HELO, ARG_NONE },
	{ "reject_non_fqdn_sender", R_REJECT_NON_FQDN_SENDER, ARG_NONE },
	{ "reject_non_fqdn_recipient", R_REJECT_NON_FQDN_RCPT, ARG_NONE },
	{ "reject_unlisted_recipient", R_REJECT_UNLISTED_RCPT, ARG_NONE },
	{ "check_recipient_maps", R_REJECT_UNLISTED_RCPT, ARG_NONE },
	{ "reject_unlisted_sender", R_REJECT_UNLISTED_SENDER, ARG_NONE },
	{ "reject_multi_recipient_bounce", R_REJECT_MULTI_RCPT_BOUNCE, ARG_NONE },
	{ "check_client_access", R_CHECK_CLIENT_ACCESS, ARG_TABLE },
	{ "check_reverse_client_hostname_access", R_CHECK_REVERSE_CLIENT_ACCESS, ARG_TABLE },
	{ "check_helo_access", R_CHECK_HELO_ACCESS, ARG_TABLE },
	{ "check_sender_access", R_CHECK_SENDER_ACCESS, ARG_TABLE },
	{ "check_recipient_access", R_CHECK_RECIPIENT_ACCESS, ARG_TABLE },
	{ "reject_rbl_client", R_REJECT_RBL_CLIENT, ARG_ZONE },
	{ "reject_rbl", R_REJECT_RBL_CLIENT, ARG_ZONE },
	{ "reject_rhsbl_client", R_REJECT_RHSBL_CLIENT, ARG_ZONE },
	{ "reject_rhsbl_reverse_client", R_REJECT_RHSBL_REVERSE_CLIENT, ARG_ZONE },
	{ "reject_rhsbl_helo", R_REJECT_RHSBL_HELO, ARG_ZONE },
	{ "reject_rhsbl_sender", R_REJECT_RHSBL_SENDER, ARG_ZONE },
	{ "reject_rhsbl_recipient", R_REJECT_RHSBL_RECIPIENT, ARG_ZONE },
	{ "permit_dnswl_client", R_PERMIT_DNSWL_CLIENT, ARG_ZONE },
	{ "permit_rhswl_client", R_PERMIT_RHSWL_CLIENT, ARG_ZONE },
};

/* Postfix restrictions that need a DNS resolver, which mxgate does not have yet. */
static const char *const r_need_dns[] = {
	"reject_unknown_client_hostname", "reject_unknown_client",
	"reject_unknown_reverse_client_hostname", "reject_unknown_helo_hostname",
	"reject_unknown_hostname", "reject_unknown_sender_domain",
	"reject_unknown_recipient_domain", "reject_unknown_address",
	"check_client_mx_access", "check_client_ns_access", "check_client_a_access",
	"check_reverse_client_mx_access", "check_reverse_client_ns_access",
	"check_reverse_client_a_access", "check_helo_mx_access", "check_helo_ns_access",
	"check_helo_a_access", "check_sender_mx_access", "check_sender_ns_access",
	"check_sender_a_access", "check_recipient_mx_access", "check_recipient_ns_access",
	"check_recipient_a_access", "permit_mx_backup", "reject_unverified_sender",
	"reject_unverified_recipient",
};

/* Postfix restrictions mxgate does not implement yet (policy service, TLS, SASL, ...). */
static const char *const r_not_yet[] = {
	"check_policy_service", "permit_tls_clientcerts", "permit_tls_all_clientcerts",
	"check_ccert_access", "check_sasl_access", "reject_plaintext_session",
	"reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
	"reject_known_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch",
	"sleep", "permit_inet_interfaces", "check_etrn_access", "reject_maps_rbl",
	"check_relay_domains", "permit_naked_ip_address", "check_address_map",
	"check_sender_access_maps",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const struct r_def *r_find(const char *name)
{
	for (size_t i = 0; i < COUNT(r_defs); i++)
		if (strcasecmp(r_defs[i].name, name) == 0)
			return &r_defs[i];
	return NULL;
}

static bool in_set(const char *const *set, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(set[i], name) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------------------------------
 * The compiled policy */

struct pitem {
	uint16_t id;  /* enum smtp_restriction_id */
	uint32_t arg; /* table, rbl or class index */
};

struct plist {
	struct pitem *items;
	size_t n;
};

/* reject_rbl_client ZONE=FILTER: the filter is one 256-bit set per octet (ip_match(3):
 * a number, or [a;b;n..m]). */
struct prbl {
	char *spec;   /* as written, "zen.example=127.0.0.[2..11]" */
	char *domain; /* "zen.example" ($rbl_domain) */
	uint32_t zone;
	bool has_filter;
	uint8_t filter[4][32];
};

#define RCPT_MAPS_MAX 16

struct smtp_policy {
	struct plist lists[SMTP_LIST_MAX];
	size_t nclasses;
	char **class_names;
	struct plist *classes;
	size_t ntables;
	char **tables;
	size_t nzones;
	char **zones;
	size_t nrbls;
	struct prbl *rbls;
	size_t nrelay_maps, nlocal_maps;
	uint32_t relay_maps[RCPT_MAPS_MAX], local_maps[RCPT_MAPS_MAX];

	bool delay_reject, soft_bounce, reject_unlisted_recipient, reject_unlisted_sender;
	struct smtp_policy_codes codes;
	char *default_rbl_reply;
	const struct netlist *mynetworks;
	const struct domain_list *mydestination, *relay_domains;
	char *myorigin;
	char *recipient_delimiter, *null_key;
	struct table_access_opts access;

	/* while compiling: where each error goes (smtp_policy_config.diag), and how many */
	void (*diag)(void *ctx, const char *line);
	void *diag_ctx;
	unsigned nerrors;
	int first_rc;
	char first_error[SMTP_POLICY_TEXT_MAX];
};

/* Value recursion (access value -> class -> access value ...): Postfix gives up past 100
 * levels with "unreasonable recursion" (451 4.3.5); so do we. Each level that evaluates
 * an access value needs a copy of the value and its parsed items. */
#define EVAL_DEPTH_MAX 100
#define VALUE_ITEMS_MAX 256

struct smtp_policy_ctx {
	const struct smtp_policy *p;
	struct table **tables;
	struct rbl_zone **zones;
	char (*vbuf)[TABLE_VALUE_MAX + 1];
	struct pitem (*vitems)[VALUE_ITEMS_MAX];
	char (*lookup)[TABLE_VALUE_MAX + 1];
};

/* Copy with truncation (snprintf "%s" without the truncation warnings). */
static void scopy(char *d, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n > cap - 1)
		n = cap - 1;
	memcpy(d, s, n);
	d[n] = '\0';
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

static int push_str(char ***arr, size_t *n, const char *s, bool nocase)
{
	for (size_t i = 0; i < *n; i++)
		if (nocase ? strcasecmp((*arr)[i], s) == 0 : strcmp((*arr)[i], s) == 0)
			return (int)i;
	char **na = realloc(*arr, (*n + 1) * sizeof(*na));
	if (!na)
		return -ENOMEM;
	*arr = na;
	if (!(na[*n] = strdup(s)))
		return -ENOMEM;
	return (int)(*n)++;
}

/* Restriction lists are split with mx_list_next_braced(): text inside balanced braces is
 * never split ("inline:{ a=b, c=d }"). Copy such a token, stripping one pair of enclosing
 * braces and the blanks inside them (Postfix's argv_splitq + extpar). */
static bool token_copy(char *dst, size_t cap, const char *t, size_t n)
{
	if (n >= 2 && t[0] == '{' && t[n - 1] == '}') {
		t++;
		n -= 2;
		while (n && (*t == ' ' || *t == '\t'))
			t++, n--;
		while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
			n--;
	}
	if (n >= cap)
		return false;
	memcpy(dst, t, n);
	dst[n] = '\0';
	return true;
}

/* ip_match(3) per octet: "127", "[2;4..11]". */
static bool parse_octet(const char *s, size_t n, uint8_t set[32])
{
	memset(set, 0, 32);
	if (n == 0)
		return false;
	bool list = s[0] == '[';
	if (list) {
		if (n < 3 || s[n - 1] != ']')
			return false;
		s++;
		n -= 2;
	}
	size_t i = 0;
	while (i <= n) {
		size_t j = i;
		while (j < n && s[j] != ';')
			j++;
		/* s[i..j) is "a" or "a..b" */
		unsigned lo = 0, hi = 0, *cur = &lo;
		size_t k = i, digits = 0;
		bool range = false;
		while (k < j) {
			if (mx_ctype_is_digit(s[k])) {
				*cur = *cur * 10 + (unsigned)(s[k] - '0');
				if (*cur > 255 || ++digits > 3)
					return false;
				k++;
			} else if (list && !range && digits && k + 1 < j && s[k] == '.' &&
				   s[k + 1] == '.') {
				range = true;
				cur = &hi;
				digits = 0;
				k += 2;
			} else {
				return false;
			}
		}
		if (!digits)
			return false;
		if (!range)
			hi = lo;
		if (hi < lo)
			return false;
		for (unsigned v = lo; v <= hi; v++)
			set[v / 8] |= (uint8_t)(1u << (v % 8));
		if (!list && j != n)
			return false;
		i = j + 1;
	}
	return true;
}

static bool parse_filter(const char *f, uint8_t filter[4][32])
{
	const char *s = f;
	for (int o = 0; o < 4; o++) {
		const char *e = s;
		int depth = 0;
		while (*e && (depth || *e != '.')) {
			if (*e == '[')
				depth++;
			else if (*e == ']')
				depth--;
			e++;
		}
		if (!parse_octet(s, (size_t)(e - s), filter[o]))
			return false;
		if (o < 3) {
			if (*e != '.')
				return false;
			s = e + 1;
		} else if (*e) {
			return false;
		}
	}
	return true;
}

static int add_rbl(struct smtp_policy *p, const char *spec, char *err, size_t errlen,
		   const char *param, const char *rname)
{
	for (size_t i = 0; i < p->nrbls; i++)
		if (strcasecmp(p->rbls[i].spec, spec) == 0)
			return (int)i;
	struct prbl r = { 0 };
	const char *eq = strchr(spec, '=');
	size_t dlen = eq ? (size_t)(eq - spec) : strlen(spec);
	if (dlen == 0 || dlen > 253) {
		snprintf(err, errlen, "%s: %s: bad zone \"%s\"", param, rname, spec);
		return -EINVAL;
	}
	if (eq) {
		if (!parse_filter(eq + 1, r.filter)) {
			snprintf(err, errlen, "%s: %s: bad reply filter \"%s\" (want d.d.d.d with [a;b] or [n..m] per octet)",
				 param, rname, eq + 1);
			return -EINVAL;
		}
		r.has_filter = true;
	}
	r.domain = strndup(spec, dlen);
	r.spec = strdup(spec);
	if (!r.domain || !r.spec) {
		free(r.domain);
		free(r.spec);
		return -ENOMEM;
	}
	mx_ctype_lower_mem(r.domain, strlen(r.domain));
	int z = push_str(&p->zones, &p->nzones, r.domain, true);
	if (z < 0) {
		free(r.domain);
		free(r.spec);
		return z;
	}
	r.zone = (uint32_t)z;
	struct prbl *nr = realloc(p->rbls, (p->nrbls + 1) * sizeof(*nr));
	if (!nr) {
		free(r.domain);
		free(r.spec);
		return -ENOMEM;
	}
	p->rbls = nr;
	nr[p->nrbls] = r;
	return (int)p->nrbls++;
}

static int find_class(const struct smtp_policy *p, const char *name)
{
	for (size_t i = 0; i < p->nclasses; i++)
		if (strcasecmp(p->class_names[i], name) == 0)
			return (int)i;
	return -1;
}

/* Parse one restriction (and its argument) from the token stream. `compile`: tables and
 * zones may be added to the policy and problems are reported in err; otherwise (an access
 * value at lookup time) only what the policy already knows is accepted. Returns 0, or
 * -EINVAL / -ENOTSUP / -ENOMEM. */
static int parse_item(struct smtp_policy *p, const char *param, const char *word,
		      const char **cur, struct pitem *it, bool compile, char *err, size_t errlen)
{
	char arg[TABLE_NAME_MAX + 300];
	const char *ts;
	long tn;

	if (strchr(word, ':')) {
		/* A bare table: the list's own check_*_access (Postfix's def_acl). */
		if (!compile)
			return -EINVAL;
		enum table_kind k;
		const char *nm;
		char why[200];
		if (table_spec_parse(word, &k, &nm, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: bad table \"%s\": %s", param, word, why);
			return -EINVAL;
		}
		int t = push_str(&p->tables, &p->ntables, word, false);
		if (t < 0)
			return t;
		*it = (struct pitem){ R_IMPLICIT_ACCESS, (uint32_t)t };
		return 0;
	}
	const struct r_def *d = r_find(word);
	if (!d) {
		int c = find_class(p, word);
		if (c >= 0) {
			*it = (struct pitem){ R_CLASS, (uint32_t)c };
			return 0;
		}
		if (in_set(r_need_dns, COUNT(r_need_dns), word)) {
			snprintf(err, errlen,
				 "%s: %s needs DNS lookups; mxgate has no DNS resolver yet (future work)",
				 param, word);
			return -ENOTSUP;
		}
		if (in_set(r_not_yet, COUNT(r_not_yet), word)) {
			snprintf(err, errlen, "%s: %s is not supported yet", param, word);
			return -ENOTSUP;
		}
		snprintf(err, errlen, "%s: unknown restriction: \"%s\"", param, word);
		return -EINVAL;
	}
	it->id = (uint16_t)d->id;
	it->arg = 0;
	if (d->arg == ARG_NONE)
		return 0;
	tn = mx_list_next_braced(cur, &ts);
	if (tn <= 0 || !token_copy(arg, sizeof(arg), ts, (size_t)tn)) {
		snprintf(err, errlen, "%s: %s needs %s argument", param, d->name,
			 d->arg == ARG_TABLE ? "a table" : "a zone");
		return -EINVAL;
	}
	if (d->arg == ARG_TABLE) {
		enum table_kind k;
		const char *nm;
		char why[200];
		if (!strchr(arg, ':')) {
			snprintf(err, errlen, "%s: %s needs a table argument (type:name), not \"%s\"",
				 param, d->name, arg);
			return -EINVAL;
		}
		if (!compile)
			return -EINVAL;
		if (table_spec_parse(arg, &k, &nm, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: %s: bad table \"%s\": %s", param, d->name, arg, why);
			return -EINVAL;
		}
		int t = push_str(&p->tables, &p->ntables, arg, false);
		if (t < 0)
			return t;
		it->arg = (uint32_t)t;
		return 0;
	}
	if (!compile) {
		for (size_t i = 0; i < p->nrbls; i++)
			if (strcasecmp(p->rbls[i].spec, arg) == 0) {
				it->arg = (uint32_t)i;
				return 0;
			}
		return -EINVAL;
	}
	int r = add_rbl(p, arg, err, errlen, param, d->name);
	if (r < 0)
		return r;
	it->arg = (uint32_t)r;
	return 0;
}

/* A compile error in err (rc -EINVAL): with a diag callback it is reported and compiling
 * goes on (returns 0), so a check shows every problem at once; without one it stops
 * compiling (returns rc). The first one is kept for the caller's err either way. */
static int compile_error(struct smtp_policy *p, int rc, const char *err)
{
	if (rc != -EINVAL && rc != -ENOTSUP)
		return rc;
	if (p->nerrors++ == 0) {
		scopy(p->first_error, sizeof(p->first_error), err);
		p->first_rc = rc;
	}
	if (!p->diag)
		return rc;
	p->diag(p->diag_ctx, err);
	return 0;
}

static int compile_list(struct smtp_policy *p, const char *param, const char *text,
			bool has_def_acl, struct plist *out, char *err, size_t errlen)
{
	const char *cur = text ? text : "";
	const char *ts;
	long tn;
	char word[TABLE_NAME_MAX + 300];
	out->items = NULL;
	out->n = 0;
	size_t cap = 0;
	while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
		if (tn < 0) {
			snprintf(err, errlen, "%s: unbalanced braces", param);
			return compile_error(p, -EINVAL, err) < 0 ? -EINVAL : 0; /* nothing follows */
		}
		if (!token_copy(word, sizeof(word), ts, (size_t)tn)) {
			snprintf(err, errlen, "%s: restriction too long: \"%.40s...\"", param, ts);
			if (compile_error(p, -EINVAL, err) < 0)
				return -EINVAL;
			continue;
		}
		if (!has_def_acl && strchr(word, ':')) {
			snprintf(err, errlen,
				 "%s: specify one of check_client_access, check_helo_access, "
				 "check_sender_access, check_recipient_access before table \"%s\"",
				 param, word);
			if (compile_error(p, -EINVAL, err) < 0)
				return -EINVAL;
			continue;
		}
		struct pitem it;
		int rc = parse_item(p, param, word, &cur, &it, true, err, errlen);
		if (rc < 0) {
			if ((rc = compile_error(p, rc, err)) < 0)
				return rc;
			continue;
		}
		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			struct pitem *ni = realloc(out->items, cap * sizeof(*ni));
			if (!ni)
				return -ENOMEM;
			out->items = ni;
		}
		out->items[out->n++] = it;
	}
	return 0;
}

static int compile_maps(struct smtp_policy *p, const char *param, const char *text,
			uint32_t *idx, size_t *n, char *err, size_t errlen)
{
	const char *cur = text ? text : "";
	const char *ts;
	long tn;
	char word[TABLE_NAME_MAX + 2];
	*n = 0;
	while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
		enum table_kind k;
		const char *nm;
		char why[200];
		if (tn < 0 || !token_copy(word, sizeof(word), ts, (size_t)tn)) {
			snprintf(err, errlen, "%s: bad table list", param);
			return -EINVAL;
		}
		if (table_spec_parse(word, &k, &nm, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: bad table \"%s\": %s", param, word, why);
			return -EINVAL;
		}
		if (*n == RCPT_MAPS_MAX) {
			snprintf(err, errlen, "%s: more than %u tables", param, RCPT_MAPS_MAX);
			return -EINVAL;
		}
		int t = push_str(&p->tables, &p->ntables, word, false);
		if (t < 0)
			return t;
		idx[(*n)++] = (uint32_t)t;
	}
	return 0;
}

void smtp_policy_free(struct smtp_policy *p)
{
	if (!p)
		return;
	for (int l = 0; l < SMTP_LIST_MAX; l++)
		free(p->lists[l].items);
	for (size_t i = 0; i < p->nclasses; i++) {
		free(p->class_names[i]);
		if (p->classes)
			free(p->classes[i].items);
	}
	free(p->class_names);
	free(p->classes);
	for (size_t i = 0; i < p->ntables; i++)
		free(p->tables[i]);
	free(p->tables);
	for (size_t i = 0; i < p->nzones; i++)
		free(p->zones[i]);
	free(p->zones);
	for (size_t i = 0; i < p->nrbls; i++) {
		free(p->rbls[i].spec);
		free(p->rbls[i].domain);
	}
	free(p->rbls);
	free(p->default_rbl_reply);
	free(p->myorigin);
	free(p->recipient_delimiter);
	free(p->null_key);
	free(p);
}

int smtp_policy_compile(const struct smtp_policy_config *cfg, struct smtp_policy **out,
			char *err, size_t errlen)
{
	struct smtp_policy *p = calloc(1, sizeof(*p));
	int rc;
	if (!p)
		return -ENOMEM;
	if (errlen)
		err[0] = '\0';
	p->diag = cfg->diag;
	p->diag_ctx = cfg->diag_ctx;
	p->delay_reject = cfg->delay_reject;
	p->soft_bounce = cfg->soft_bounce;
	p->reject_unlisted_recipient = cfg->reject_unlisted_recipient;
	p->reject_unlisted_sender = cfg->reject_unlisted_sender;
	p->codes = cfg->codes;
	p->mynetworks = cfg->mynetworks;
	p->mydestination = cfg->mydestination;
	p->relay_domains = cfg->relay_domains;
	p->default_rbl_reply = xstrdup(cfg->codes.default_rbl_reply);
	p->myorigin = xstrdup(cfg->myorigin);
	p->recipient_delimiter = xstrdup(cfg->access.recipient_delimiter);
	p->null_key = xstrdup(cfg->access.null_key ? cfg->access.null_key : "<>");
	if (!p->default_rbl_reply || !p->myorigin || !p->recipient_delimiter || !p->null_key) {
		rc = -ENOMEM;
		goto fail;
	}
	p->codes.default_rbl_reply = p->default_rbl_reply;
	p->access = cfg->access;
	p->access.recipient_delimiter = p->recipient_delimiter;
	p->access.null_key = p->null_key;

	/* Class names first: a list (or another class) may name a class defined later. */
	{
		const char *cur = cfg->restriction_classes ? cfg->restriction_classes : "";
		const char *ts;
		long tn;
		char word[256];
		while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
			if (tn < 0 || !token_copy(word, sizeof(word), ts, (size_t)tn)) {
				snprintf(err, errlen, "smtpd_restriction_classes: bad class name");
				rc = -EINVAL;
				goto fail;
			}
			if (r_find(word) || strchr(word, ':')) {
				snprintf(err, errlen,
					 "smtpd_restriction_classes: class \"%s\" has the name of a restriction",
					 word);
				rc = -EINVAL;
				goto fail;
			}
			if ((rc = push_str(&p->class_names, &p->nclasses, word, true)) < 0)
				goto fail;
		}
		if (p->nclasses && !(p->classes = calloc(p->nclasses, sizeof(*p->classes)))) {
			rc = -ENOMEM;
			goto fail;
		}
		for (size_t i = 0; i < p->nclasses; i++) {
			const char *v = cfg->class_value ? cfg->class_value(cfg->class_ctx,
									  p->class_names[i])
							 : NULL;
			if (!v) {
				snprintf(err, errlen, "smtpd_restriction_classes: class \"%s\" has no definition",
					 p->class_names[i]);
				if ((rc = compile_error(p, -EINVAL, err)) < 0)
					goto fail;
				continue;
			}
			if ((rc = compile_list(p, p->class_names[i], v, true, &p->classes[i], err,
					       errlen)) < 0)
				goto fail;
		}
	}
	for (int l = 0; l < SMTP_LIST_MAX; l++) {
		bool def_acl = l != SMTP_LIST_DATA && l != SMTP_LIST_END_OF_DATA;
		if ((rc = compile_list(p, smtp_restriction_list_name((enum smtp_restriction_list)l),
				       cfg->lists[l], def_acl, &p->lists[l], err, errlen)) < 0)
			goto fail;
	}
	if ((rc = compile_maps(p, "relay_recipient_maps", cfg->relay_recipient_maps,
			       p->relay_maps, &p->nrelay_maps, err, errlen)) < 0 &&
	    (rc = compile_error(p, rc, err)) < 0)
		goto fail;
	if ((rc = compile_maps(p, "local_recipient_maps", cfg->local_recipient_maps,
			       p->local_maps, &p->nlocal_maps, err, errlen)) < 0 &&
	    (rc = compile_error(p, rc, err)) < 0)
		goto fail;
	if (p->nerrors) {
		/* every error went to the diag callback; the caller's err names the first */
		rc = p->first_rc;
		goto fail;
	}
	*out = p;
	return 0;
fail:
	if ((rc == -EINVAL || rc == -ENOTSUP) && p->nerrors && errlen)
		scopy(err, errlen, p->first_error);
	if (rc == -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	smtp_policy_free(p);
	return rc;
}

void smtp_policy_foreach_table(const struct smtp_policy *p,
			       int (*fn)(void *ctx, const char *spec, bool is_zone), void *ctx)
{
	for (size_t i = 0; i < p->ntables; i++)
		if (fn(ctx, p->tables[i], false))
			return;
	for (size_t i = 0; i < p->nzones; i++)
		if (fn(ctx, p->zones[i], true))
			return;
}

void smtp_policy_ctx_free(struct smtp_policy_ctx *ctx)
{
	if (!ctx)
		return;
	for (size_t i = 0; ctx->tables && i < ctx->p->ntables; i++)
		table_close(ctx->tables[i]);
	for (size_t i = 0; ctx->zones && i < ctx->p->nzones; i++)
		rbl_zone_close(ctx->zones[i]);
	free(ctx->tables);
	free(ctx->zones);
	free(ctx->vbuf);
	free(ctx->vitems);
	free(ctx->lookup);
	free(ctx);
}

int smtp_policy_ctx_new(const struct smtp_policy *p, struct tables_reader *rd,
			struct smtp_policy_ctx **out)
{
	struct smtp_policy_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->p = p;
	c->tables = calloc(p->ntables + 1, sizeof(*c->tables));
	c->zones = calloc(p->nzones + 1, sizeof(*c->zones));
	c->vbuf = calloc(EVAL_DEPTH_MAX + 1, sizeof(*c->vbuf));
	c->vitems = calloc(EVAL_DEPTH_MAX + 1, sizeof(*c->vitems));
	c->lookup = calloc(1, sizeof(*c->lookup));
	if (!c->tables || !c->zones || !c->vbuf || !c->vitems || !c->lookup) {
		smtp_policy_ctx_free(c);
		return -ENOMEM;
	}
	for (size_t i = 0; i < p->ntables; i++) {
		char err[200];
		int rc = table_open(rd, p->tables[i], &c->tables[i], err, sizeof(err));
		if (rc < 0) {
			smtp_policy_ctx_free(c);
			return rc;
		}
	}
	for (size_t i = 0; i < p->nzones; i++) {
		int rc = rbl_zone_open(rd, p->zones[i], &c->zones[i]);
		if (rc < 0) {
			smtp_policy_ctx_free(c);
			return rc;
		}
	}
	*out = c;
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * Evaluation state (Postfix's SMTPD_STATE fields that smtpd_check.c uses) */

enum st { ST_DUNNO = 0, ST_OK = 1, ST_REJECT = 2 };

/* Postfix's MAIL_ERROR_* classes: software/resource/data errors are never turned into
 * warnings by warn_if_reject. */
enum ecls { EC_POLICY, EC_PROTOCOL, EC_BOUNCE, EC_SOFTWARE, EC_DATA };

struct defer {
	bool active;
	enum ecls cls;
	unsigned code;
	char dsn[16];
	char reason[SMTP_POLICY_TEXT_MAX];
};

struct ev {
	struct smtp_policy_ctx *ctx;
	const struct smtp_policy *p;
	const struct smtp_policy_request *req;
	struct smtp_policy_actions *act;
	const struct smtp_policy_callbacks *cb;
	enum smtp_restriction_list list;
	const char *helo, *sender, *recipient;
	char namaddr[600];
	int recursion, warn_if_reject;
	struct defer dip, dir;
	bool discard;
	bool rcpt_checked, sender_checked;
	/* the last refusal, "554 5.7.1 <a@b>: ..." */
	char reply[SMTP_POLICY_TEXT_MAX + 8];
	bool reply_hard; /* it was a 5xx before soft_bounce */
	bool disconnect;
	/* trace of the restriction being evaluated */
	const char *note;
	char detail[SMTP_POLICY_TEXT_MAX];
	bool warned;
	char rname[SMTP_POLICY_TEXT_MAX]; /* decided restriction */
};

static void ev_event(struct ev *e, const char *kind, const char *text)
{
	if (e->cb && e->cb->event)
		e->cb->event(e->cb->ctx, kind, text);
}

/* Operator and client data in replies and log text: Postfix's printable(..., ' ') keeps
 * printable ASCII only. */
static void printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 32 || (unsigned char)*s >= 127)
			*s = ' ';
}

/* RFC 3463 status "d.ddd.ddd" at s, followed by the end or white space: its length, or 0.
 * Postfix's dsn_valid(). */
static size_t dsn_valid(const char *s)
{
	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	if (s[1] != '.')
		return 0;
	size_t i = 2, n = 0;
	while (mx_ctype_is_digit(s[i]) && n < 3)
		i++, n++;
	if (n == 0 || s[i] != '.')
		return 0;
	i++;
	n = 0;
	while (mx_ctype_is_digit(s[i]) && n < 3)
		i++, n++;
	if (n == 0 || (s[i] && s[i] != ' ' && s[i] != '\t'))
		return 0;
	return i;
}

/* Postfix's dsn_split(): an enhanced status code at the start of text wins over def. */
static const char *dsn_split(char dsn[16], const char *def, const char *text)
{
	size_t n = dsn_valid(text);
	if (n) {
		memcpy(dsn, text, n);
		dsn[n] = '\0';
		text += n;
		while (*text == ' ' || *text == '\t')
			text++;
	} else {
		scopy(dsn, 16, def);
	}
	return text;
}

#define NAME_CLIENT "Client host"
#define NAME_REV_CLIENT "Unverified Client host"
#define NAME_HELO "Helo command"
#define NAME_SENDER "Sender address"
#define NAME_RECIPIENT "Recipient address"
#define NAME_DATA "Data command"
#define NAME_EOD "End-of-data"

/* Postfix's smtpd_dsn_fix(): an address status (X.1.Y) is rewritten to suit what is
 * rejected (a sender, a recipient, or something that is no address: X.0.0). */
static const char *dsn_fix(const char *status, const char *cls)
{
	static const struct {
		const char *micro, *snd, *rcpt;
	} map[] = {
		/* SND_DSN is 4.1.7 (checked against Debian's Postfix 3.7: a sender REJECTed
		 * with "550 5.1.1 text" is answered 5.1.7) */
		{ "1", "4.1.7", "4.1.1" }, { "2", "4.1.8", "4.1.2" }, { "3", "4.1.7", "4.1.3" },
		{ "4", "4.1.7", "4.1.4" }, { "5", "4.1.0", "4.1.5" }, { "6", "4.1.7", "4.1.6" },
		{ "7", "4.1.7", "4.1.3" }, { "8", "4.1.8", "4.1.2" },
	};
	if (!mx_ctype_is_digit(status[0]) || strncmp(status + 1, ".1.", 3) != 0)
		return status;
	bool snd = strcmp(cls, NAME_SENDER) == 0, rcpt = strcmp(cls, NAME_RECIPIENT) == 0;
	if (!snd && !rcpt)
		return "4.0.0";
	for (size_t i = 0; i < COUNT(map); i++)
		if (strcmp(status + 4, map[i].micro) == 0)
			return snd ? map[i].snd : map[i].rcpt;
	return "4.1.0";
}

/* Postfix's smtpd_check_reject(): format "CODE DSN text", then warn_if_reject,
 * defer_if_reject, soft_bounce, and the DSN's class digit made equal to the code's. */
static int __attribute__((format(printf, 5, 6)))
ev_reject(struct ev *e, enum ecls cls, unsigned code, const char *dsn, const char *fmt, ...)
{
	char buf[1024];
	bool warn = e->warn_if_reject && cls != EC_SOFTWARE && cls != EC_DATA;
	int n = snprintf(buf, sizeof(buf), "%u %s ", code, dsn);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(buf))
		vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (code < 400 || code > 599 || !dsn_valid(buf + 4))
		snprintf(buf, sizeof(buf), "450 4.7.1 Service unavailable");
	buf[510] = '\0'; /* RFC 5321 4.5.3.1.5: 512 octets with CRLF */
	printable(buf);

	if (!warn && e->dir.active && buf[0] == '5') {
		e->warn_if_reject = 0;
		e->dir.active = false;
		return ev_reject(e, e->dir.cls, e->dir.code, e->dir.dsn, "%s", e->dir.reason);
	}
	bool hard = buf[0] == '5';
	if (e->p->soft_bounce && buf[0] == '5')
		buf[0] = '4';
	buf[4] = buf[0];
	if (warn) {
		ev_event(e, "reject_warning", buf);
		e->warned = true;
		return ST_DUNNO;
	}
	scopy(e->reply, sizeof(e->reply), buf);
	e->reply_hard = hard;
	/* smtpd.c closes the session after a 421 or 521 reply (and only those). */
	e->disconnect = strncmp(buf, "421", 3) == 0 || strncmp(buf, "521", 3) == 0;
	return ST_REJECT;
}

/* Postfix's defer_if(): remember the first reason; decide later. */
static int __attribute__((format(printf, 5, 6)))
defer_if(struct defer *d, enum ecls cls, unsigned code, const char *dsn, const char *fmt, ...)
{
	if (!d->active) {
		d->active = true;
		d->cls = cls;
		d->code = code;
		scopy(d->dsn, sizeof(d->dsn), dsn);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
		va_end(ap);
	}
	return ST_DUNNO;
}

static int server_error(struct ev *e, const char *why)
{
	e->note = "server configuration error";
	scopy(e->detail, sizeof(e->detail), why);
	return ev_reject(e, EC_SOFTWARE, 451, "4.3.5", "Server configuration error");
}

/* ---------------------------------------------------------------------------------------
 * Name and address checks */

/* Postfix's valid_hostname(): labels of letters, digits, '-' and '_', no label starts or
 * ends with '-', at most 63 octets per label and 255 in all, and not all-numeric. */
static bool valid_hostname(const char *name, size_t len)
{
	if (len == 0 || len > 255)
		return false;
	size_t label = 0;
	bool non_numeric = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0 || name[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (mx_ctype_is_digit(c)) {
			label++;
		} else if (mx_ctype_is_alpha(c)) {
			label++;
			non_numeric = true;
		} else if (c == '-' || c == '_') {
			if (label == 0 && c == '-')
				return false;
			label++;
			non_numeric = true;
		} else {
			return false;
		}
		if (label > 63)
			return false;
	}
	if (label == 0 || name[len - 1] == '-')
		return false;
	return non_numeric;
}

static bool valid_hostaddr(const char *s)
{
	struct mx_inet_addr a;
	if (strncasecmp(s, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, s + 5, a.bytes) == 1;
	return mx_inet_parse(s, &a);
}

/* Truncate a name ending in one dot (not two): Postfix's dup_if_truncate(). */
static size_t truncated_len(const char *s)
{
	size_t n = strlen(s);
	if (n > 1 && s[n - 1] == '.' && s[n - 2] != '.')
		n--;
	return n;
}

static int reject_invalid_hostaddr(struct ev *e, const char *addr, const char *rn,
				   const char *rc)
{
	char tmp[300];
	size_t n = strlen(addr);
	if (addr[0] == '[' && n > 2 && addr[n - 1] == ']' && n - 2 < sizeof(tmp)) {
		memcpy(tmp, addr + 1, n - 2);
		tmp[n - 2] = '\0';
	} else {
		scopy(tmp, sizeof(tmp), addr);
	}
	/* valid_mailhost_addr(): IPv4, or IPv6 with the "IPv6:" tag (RFC 5321 4.1.3). */
	struct mx_inet_addr a;
	bool ok = strncasecmp(tmp, "IPv6:", 5) == 0 ? inet_pton(AF_INET6, tmp + 5, a.bytes) == 1
						    : inet_pton(AF_INET, tmp, a.bytes) == 1;
	if (!ok)
		return ev_reject(e, EC_POLICY, e->p->codes.invalid_hostname_reject_code, "5.5.2",
				 "<%s>: %s rejected: invalid ip address", rn, rc);
	return ST_DUNNO;
}

static int reject_invalid_hostname(struct ev *e, const char *name, const char *rn,
				   const char *rc)
{
	size_t n = truncated_len(name);
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 299 ? n : 299), name);
	if (!valid_hostname(name, n) && (n >= sizeof(tmp) || !valid_hostaddr(tmp)))
		return ev_reject(e, EC_POLICY, e->p->codes.invalid_hostname_reject_code, "5.5.2",
				 "<%s>: %s rejected: Invalid name", rn, rc);
	return ST_DUNNO;
}

static int reject_non_fqdn_hostname(struct ev *e, const char *name, const char *rn,
				    const char *rc)
{
	size_t n = truncated_len(name);
	if (!valid_hostname(name, n) || !memchr(name, '.', n))
		return ev_reject(e, EC_POLICY, e->p->codes.non_fqdn_reject_code, "5.5.2",
				 "<%s>: %s rejected: need fully-qualified hostname", rn, rc);
	return ST_DUNNO;
}

static int reject_non_fqdn_address(struct ev *e, const char *addr, const char *rn,
				   const char *rc)
{
	const char *at = strrchr(addr, '@');
	const char *dom = at ? at + 1 : "";
	size_t dl = strlen(dom);
	if (dom[0] == '[' && dom[dl - 1] == ']')
		return ST_DUNNO;
	size_t n = truncated_len(dom);
	if (!*dom || !valid_hostname(dom, n) || !memchr(dom, '.', n))
		return ev_reject(e, EC_POLICY, e->p->codes.non_fqdn_reject_code, "4.5.2",
				 "<%s>: %s rejected: need fully-qualified address", rn, rc);
	return ST_DUNNO;
}

/* The domain of an address as trivial-rewrite would resolve it: after the last '@',
 * else $myorigin; one trailing dot dropped. */
static struct mx_span addr_domain(const struct ev *e, const char *addr)
{
	const char *at = strrchr(addr, '@');
	struct mx_span d = at ? mx_span_cstr(at + 1) : mx_span_cstr(e->p->myorigin);
	if (d.len > 1 && d.ptr[d.len - 1] == '.')
		d.len--;
	return d;
}

enum addr_class { AC_DEFAULT, AC_LOCAL, AC_RELAY };

static enum addr_class addr_class_of(const struct ev *e, const char *addr)
{
	struct mx_span d = addr_domain(e, addr);
	if (d.len && e->p->mydestination && domain_list_match(e->p->mydestination, d))
		return AC_LOCAL;
	if (d.len && e->p->relay_domains && domain_list_match(e->p->relay_domains, d))
		return AC_RELAY;
	return AC_DEFAULT;
}

/* Postfix's permit_auth_destination(): final delivery here (mydestination) or a relay
 * domain. A source-routed address (user%host@, host!user@ or "a@b"@) is never authorized
 * (allow_untrusted_routing = no). */
static bool auth_destination(const struct ev *e, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	size_t ll = at ? (size_t)(at - rcpt) : strlen(rcpt);
	for (size_t i = 0; i < ll; i++)
		if (rcpt[i] == '%' || rcpt[i] == '!' || rcpt[i] == '@')
			return false;
	return addr_class_of(e, rcpt) != AC_DEFAULT;
}

/* mail_addr_find() over the tables of a recipient map list: the address, the address
 * without its extension, then "@domain"; a local address also by its local part. Returns
 * 1 found, 0 not, <0 error. */
static int maps_find_addr(struct ev *e, const uint32_t *idx, size_t n, const char *addr,
			  bool local)
{
	char key[TABLE_KEY_MAX + 2];
	char *val = e->ctx->lookup[0];
	const char *at = strrchr(addr, '@');
	size_t ll = at ? (size_t)(at - addr) : strlen(addr);
	size_t base = table_access_split(addr, ll, e->p->recipient_delimiter);
	for (size_t i = 0; i < n; i++) {
		struct table *t = e->ctx->tables[idx[i]];
		int rc;
		const char *keys[5];
		size_t nk = 0;
		char k2[TABLE_KEY_MAX + 2], k3[TABLE_KEY_MAX + 2], k4[TABLE_KEY_MAX + 2],
			k5[TABLE_KEY_MAX + 2];
		if (strlen(addr) > TABLE_KEY_MAX)
			continue;
		keys[nk++] = addr;
		if (base) {
			snprintf(k2, sizeof(k2), "%.*s%s", (int)base, addr, at ? at : "");
			keys[nk++] = k2;
		}
		if (at) {
			scopy(k3, sizeof(k3), at);
			keys[nk++] = k3;
		}
		if (local) {
			snprintf(k4, sizeof(k4), "%.*s", (int)ll, addr);
			keys[nk++] = k4;
			if (base) {
				snprintf(k5, sizeof(k5), "%.*s", (int)base, addr);
				keys[nk++] = k5;
			}
		}
		for (size_t k = 0; k < nk; k++) {
			scopy(key, sizeof(key), keys[k]);
			rc = table_lookup(t, key, val, TABLE_VALUE_MAX + 1);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* Postfix's check_rcpt_maps() for the classes mxgate has: local (mydestination,
 * local_recipient_maps) and relay (relay_domains, relay_recipient_maps). */
static int check_rcpt_maps(struct ev *e, const char *addr, const char *cls)
{
	bool snd = strcmp(cls, NAME_SENDER) == 0;
	enum addr_class ac = addr_class_of(e, addr);
	const char *dsn = snd ? "5.1.0" : "5.1.1";
	if (ac == AC_LOCAL && e->p->nlocal_maps) {
		/* postmaster, MAILER-DAEMON and double-bounce always exist (qmgr and bounce
		 * absorb or generate them) */
		static const char *const always[] = { "postmaster", "mailer-daemon",
						      "double-bounce" };
		const char *at = strrchr(addr, '@');
		size_t ll = at ? (size_t)(at - addr) : strlen(addr);
		for (size_t i = 0; i < COUNT(always); i++)
			if (strlen(always[i]) == ll && strncasecmp(addr, always[i], ll) == 0)
				return ST_DUNNO;
		int rc = maps_find_addr(e, e->p->local_maps, e->p->nlocal_maps, addr, true);
		if (rc < 0)
			return server_error(e, "local_recipient_maps lookup error");
		if (rc == 0)
			return ev_reject(e, EC_BOUNCE, e->p->codes.unknown_local_recipient_reject_code,
					 dsn, "<%s>: %s rejected: User unknown in local recipient table",
					 addr, cls);
	} else if (ac == AC_RELAY && e->p->nrelay_maps) {
		int rc = maps_find_addr(e, e->p->relay_maps, e->p->nrelay_maps, addr, false);
		if (rc < 0)
			return server_error(e, "relay_recipient_maps lookup error");
		if (rc == 0)
			return ev_reject(e, EC_BOUNCE, e->p->codes.unknown_relay_recipient_reject_code,
					 dsn, "<%s>: %s rejected: User unknown in relay recipient table",
					 addr, cls);
	}
	return ST_DUNNO;
}

static int check_recipient_rcpt_maps(struct ev *e, const char *rcpt)
{
	if (e->rcpt_checked)
		return ST_DUNNO;
	if (!e->warn_if_reject)
		e->rcpt_checked = true;
	return check_rcpt_maps(e, rcpt, NAME_RECIPIENT);
}

static int check_sender_rcpt_maps(struct ev *e, const char *sender)
{
	if (e->sender_checked)
		return ST_DUNNO;
	if (!e->warn_if_reject)
		e->sender_checked = true;
	return check_rcpt_maps(e, sender, NAME_SENDER);
}

/* ---------------------------------------------------------------------------------------
 * access(5) values: Postfix's check_table_result() */

static int generic_checks(struct ev *e, const struct pitem *items, size_t n, const char *rn,
			  const char *rc, int def_acl);

static bool is_header(const char *s)
{
	/* "Name: value" (is_header(3)): printable non-space characters, then ':' */
	size_t i = 0;
	while (s[i] && s[i] != ':' && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127)
		i++;
	return i > 0 && s[i] == ':';
}

static bool word_is(const char *v, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(v, w, len) == 0;
}

/* Delegated actions need a mail transaction (Postfix: can_delegate_action() and
 * not_in_client_helo(): with delay_reject = no, client and helo restrictions run outside
 * one and such actions are skipped with a warning). */
static bool can_delegate(struct ev *e, const char *action)
{
	if (!e->act || !e->sender) {
		e->note = "skipped (no mail transaction)";
		snprintf(e->detail, sizeof(e->detail), "action %s is always skipped in client or helo restrictions with smtpd_delay_reject=no",
			 action);
		return false;
	}
	return true;
}

static void copy_clean(char *dst, size_t cap, const char *src)
{
	scopy(dst, cap, src);
	printable(dst);
}

static int check_table_result(struct ev *e, const char *table, const char *value,
			      const char *rn, const char *rc, int def_acl)
{
	char dsn[16];
	char ebuf[SMTP_POLICY_TEXT_MAX + 64];
	size_t cmd_len = strcspn(value, " \t");
	const char *text = value + cmd_len;
	while (*text == ' ' || *text == '\t')
		text++;

	if (word_is(value, cmd_len, "DUNNO")) {
		e->note = "DUNNO";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "REJECT")) {
		const char *t = dsn_split(dsn, "5.7.1", text);
		return ev_reject(e, EC_POLICY, e->p->codes.access_map_reject_code, dsn_fix(dsn, rc),
				 "<%s>: %s rejected: %s", rn, rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "DEFER")) {
		const char *t = dsn_split(dsn, "4.7.1", text);
		return ev_reject(e, EC_POLICY, e->p->codes.access_map_defer_code, dsn_fix(dsn, rc),
				 "<%s>: %s rejected: %s", rn, rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "INFO") || word_is(value, cmd_len, "WARN")) {
		copy_clean(ebuf, sizeof(ebuf), text);
		ev_event(e, word_is(value, cmd_len, "INFO") ? "info" : "warn", ebuf);
		e->note = word_is(value, cmd_len, "INFO") ? "INFO" : "WARN";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "FILTER")) {
		if (!can_delegate(e, "FILTER"))
			return ST_DUNNO;
		if (!*text || !strchr(text, ':')) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail),
				 "access table %s entry has FILTER entry without transport:destination", table);
			return ST_DUNNO;
		}
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers FILTER %s", rn, rc, text);
		printable(ebuf);
		ev_event(e, "filter", ebuf);
		copy_clean(e->act->filter, sizeof(e->act->filter), text);
		e->note = "FILTER";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "HOLD")) {
		if (!can_delegate(e, "HOLD") || e->act->hold)
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc, *text ? text : "triggers HOLD action");
		printable(ebuf);
		ev_event(e, "hold", ebuf);
		e->act->hold = true;
		copy_clean(e->act->hold_reason, sizeof(e->act->hold_reason), ebuf);
		e->note = "HOLD";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "DISCARD")) {
		if (!can_delegate(e, "DISCARD"))
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc,
			 *text ? text : "triggers DISCARD action");
		printable(ebuf);
		ev_event(e, "discard", ebuf);
		e->act->discard = true;
		copy_clean(e->act->discard_reason, sizeof(e->act->discard_reason), ebuf);
		e->discard = true;
		e->note = "DISCARD";
		return ST_OK;
	}
	if (word_is(value, cmd_len, "REDIRECT") || word_is(value, cmd_len, "BCC")) {
		bool redirect = word_is(value, cmd_len, "REDIRECT");
		if (!can_delegate(e, redirect ? "REDIRECT" : "BCC"))
			return ST_DUNNO;
		if (!strchr(text, '@')) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail),
				 "access table %s entry requires user@domain target", table);
			return ST_DUNNO;
		}
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers %s %s", rn, rc,
			 redirect ? "REDIRECT" : "BCC", text);
		printable(ebuf);
		ev_event(e, redirect ? "redirect" : "bcc", ebuf);
		/* The last REDIRECT wins (UPDATE_STRING); BCC: Postfix adds every one, mxgate
		 * keeps the last (one bcc slot). */
		if (redirect)
			copy_clean(e->act->redirect, sizeof(e->act->redirect), text);
		else
			copy_clean(e->act->bcc, sizeof(e->act->bcc), text);
		e->note = redirect ? "REDIRECT" : "BCC";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "DEFER_IF_PERMIT")) {
		const char *t = dsn_split(dsn, "4.7.1", text);
		e->note = "DEFER_IF_PERMIT";
		return defer_if(&e->dip, EC_POLICY, e->p->codes.access_map_defer_code,
				dsn_fix(dsn, rc), "<%s>: %s rejected: %s", rn, rc,
				*t ? t : "Service unavailable");
	}
	if (word_is(value, cmd_len, "DEFER_IF_REJECT")) {
		const char *t = dsn_split(dsn, "4.7.1", text);
		e->note = "DEFER_IF_REJECT";
		return defer_if(&e->dir, EC_POLICY, e->p->codes.access_map_defer_code,
				dsn_fix(dsn, rc), "<%s>: %s rejected: %s", rn, rc,
				*t ? t : "Service unavailable");
	}
	if (word_is(value, cmd_len, "PREPEND")) {
		if (!can_delegate(e, "PREPEND"))
			return ST_DUNNO;
		if (e->req->stage == SMTP_STAGE_END_OF_DATA || !*text || !is_header(text)) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail), "access table %s: PREPEND %s", table,
				 e->req->stage == SMTP_STAGE_END_OF_DATA
					 ? "must be used before smtpd_end_of_data_restrictions"
					 : "requires header: text");
			return ST_DUNNO;
		}
		if (e->act->nprepend < SMTP_POLICY_PREPEND_MAX)
			copy_clean(e->act->prepend[e->act->nprepend++], SMTP_POLICY_TEXT_MAX, text);
		e->note = "PREPEND";
		return ST_DUNNO;
	}
	/* All-numeric: OK (an out-of-band time stamp). */
	if (mx_ctype_all_digits(value)) {
		e->note = "OK";
		return ST_OK;
	}
	/* 4NN text / 5NN text; 421 and 521 also end the session. */
	if (cmd_len == 3 && *text && (value[0] == '4' || value[0] == '5') &&
	    mx_ctype_is_digit(value[1]) && mx_ctype_is_digit(value[2])) {
		char def[6] = { value[0], '.', '7', '.', '1', 0 };
		const char *t = dsn_split(dsn, def, text);
		return ev_reject(e, EC_POLICY, (unsigned)atoi(value), dsn_fix(dsn, rc),
				 "<%s>: %s rejected: %s", rn, rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "OK") || word_is(value, cmd_len, "RELAY")) {
		e->note = "OK";
		return ST_OK;
	}
	/* Anything else is a list of restrictions (or class names). Tables are not allowed
	 * there ("define a restriction class and specify its name instead"). */
	if (strchr(value, ':'))
		return server_error(e, "access table entry with lookup table; define a restriction class instead");
	if (e->recursion > EVAL_DEPTH_MAX - 1)
		return server_error(e, "access table entry causes unreasonable recursion");

	int depth = e->recursion;
	char *buf = e->ctx->vbuf[depth];
	struct pitem *items = e->ctx->vitems[depth];
	size_t n = 0;
	if (buf != value)
		scopy(buf, TABLE_VALUE_MAX + 1, value);
	const char *cur = buf, *ts;
	long tn;
	char word[TABLE_NAME_MAX + 300], why[SMTP_POLICY_TEXT_MAX];
	while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
		if (tn < 0 || n == VALUE_ITEMS_MAX || !token_copy(word, sizeof(word), ts, (size_t)tn))
			return server_error(e, "unparsable access table value");
		/* Parsing never adds to the shared policy at lookup time (compile = false). */
		if (parse_item((struct smtp_policy *)e->p, table, word, &cur, &items[n], false, why,
			       sizeof(why)) < 0) {
			snprintf(why, sizeof(why), "unknown smtpd restriction: \"%.200s\" (in access table %.200s)",
				 word, table);
			return server_error(e, why);
		}
		n++;
	}
	if (n == 0) {
		e->note = "OK";
		return ST_OK;
	}
	e->note = NULL;
	return generic_checks(e, items, n, rn, rc, def_acl);
}

/* The lookup of a check_*_access table and what its value says. */
struct trace_acc {
	char key[TABLE_KEY_MAX + 2];
};

static int access_result(struct ev *e, uint32_t t, int rc, const char *matched, const char *rn,
			 const char *cls, int def_acl)
{
	const char *spec = e->p->tables[t];
	if (rc < 0) {
		e->note = "lookup error";
		snprintf(e->detail, sizeof(e->detail), "%s: %s", spec, strerror(-rc));
		/* smtpd_check.c answers a failed lookup as if the table said this. */
		return check_table_result(e, spec, "451 4.3.5 Server configuration error", rn, cls,
					  def_acl);
	}
	if (rc == 0) {
		e->note = "no match";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s: %s %s", spec, matched, e->ctx->lookup[0]);
	printable(e->detail);
	/* The value moves to this level's buffer: a nested evaluation reuses the lookup
	 * buffer. */
	char *value = e->ctx->vbuf[e->recursion < EVAL_DEPTH_MAX ? e->recursion : EVAL_DEPTH_MAX];
	scopy(value, TABLE_VALUE_MAX + 1, e->ctx->lookup[0]);
	return check_table_result(e, spec, value, rn, cls, def_acl);
}

static int access_client(struct ev *e, uint32_t t, const char *name, const char *rn,
			 const char *cls, int def_acl)
{
	struct trace_acc ta;
	struct table_access_query q = { .opts = &e->p->access,
					.val = e->ctx->lookup[0],
					.vallen = TABLE_VALUE_MAX + 1,
					.matched = ta.key,
					.matchedlen = sizeof(ta.key) };
	int rc = table_access_client(e->ctx->tables[t], name, e->req->client_addr, &q);
	return access_result(e, t, rc, ta.key, rn, cls, def_acl);
}

static int access_domain(struct ev *e, uint32_t t, const char *dom, const char *rn,
			 const char *cls, int def_acl)
{
	struct trace_acc ta;
	struct table_access_query q = { .opts = &e->p->access,
					.val = e->ctx->lookup[0],
					.vallen = TABLE_VALUE_MAX + 1,
					.matched = ta.key,
					.matchedlen = sizeof(ta.key) };
	int rc = table_access_domain(e->ctx->tables[t], dom, &q);
	return access_result(e, t, rc, ta.key, rn, cls, def_acl);
}

static int access_address(struct ev *e, uint32_t t, const char *addr, const char *rn,
			  const char *cls, int def_acl)
{
	struct trace_acc ta;
	struct table_access_query q = { .opts = &e->p->access,
					.val = e->ctx->lookup[0],
					.vallen = TABLE_VALUE_MAX + 1,
					.matched = ta.key,
					.matchedlen = sizeof(ta.key) };
	int rc = table_access_address(e->ctx->tables[t], addr, &q);
	return access_result(e, t, rc, ta.key, rn, cls, def_acl);
}

/* ---------------------------------------------------------------------------------------
 * Local DNSBL/DNSWL zones */

struct rbl_hit {
	bool listed;
	char txt[RBL_TXT_MAX + 1];
	char a[16];
};

/* Listed when an answer passes the filter. 127.255.255.0/24 answers are a blocklist's
 * "query refused" code (Spamhaus), never a listing. */
static int rbl_query(struct ev *e, const struct prbl *r, const char *addr, const char *name,
		     struct rbl_hit *hit)
{
	struct rbl_result res;
	int rc;
	memset(hit, 0, sizeof(*hit));
	if (addr) {
		struct mx_inet_addr a;
		if (!mx_inet_parse(addr, &a))
			return 0;
		rc = rbl_zone_query_addr(e->ctx->zones[r->zone], &a, e->req->now, &res);
	} else {
		rc = rbl_zone_query_name(e->ctx->zones[r->zone], name, e->req->now, &res);
	}
	if (rc <= 0)
		return rc;
	for (unsigned i = 0; i < res.count && i < RBL_ANSWERS_MAX; i++) {
		const uint8_t *ip = res.answers[i].a;
		if (ip[0] == 127 && ip[1] == 255 && ip[2] == 255)
			continue;
		if (r->has_filter) {
			bool ok = true;
			for (int o = 0; o < 4; o++)
				if (!(r->filter[o][ip[o] / 8] & (1u << (ip[o] % 8))))
					ok = false;
			if (!ok)
				continue;
		}
		hit->listed = true;
		snprintf(hit->a, sizeof(hit->a), "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
		scopy(hit->txt, sizeof(hit->txt), res.answers[i].txt);
		return 1;
	}
	return 0;
}

/* The RHSBL name: the domain of an address, or the name itself; none for an address
 * literal, a numeric last label or a name that is no host name (find_dnsxl_domain()). */
static const char *rhsbl_domain(const char *what)
{
	const char *at = strrchr(what, '@');
	const char *d = at ? at + 1 : what;
	if (!*d || d[0] == '[')
		return NULL;
	const char *dot = strrchr(d, '.');
	if (mx_ctype_all_digits(dot ? dot + 1 : d))
		return NULL;
	if (!valid_hostname(d, strlen(d)))
		return NULL;
	return d;
}

struct rbl_exp {
	const struct ev *e;
	const struct prbl *r;
	const char *what, *cls, *txt;
	char code[8];
};

static const char *rbl_lookup_name(const struct rbl_exp *x, const char *name, size_t n,
				   char *tmp, size_t tmpcap)
{
	const struct ev *e = x->e;
#define IS(s) (strlen(s) == n && strncmp(name, s, n) == 0)
	if (IS("rbl_code"))
		return x->code;
	if (IS("rbl_domain"))
		return x->r->domain;
	if (IS("rbl_reason") || IS("rbl_txt"))
		return x->txt;
	if (IS("rbl_what"))
		return x->what;
	if (IS("rbl_class"))
		return x->cls;
	if (IS("client_address"))
		return e->req->client_addr;
	if (IS("client_name"))
		return e->req->client_name;
	if (IS("reverse_client_name"))
		return e->req->reverse_name;
	if (IS("helo_name"))
		return e->helo;
	if (IS("sender"))
		return e->sender;
	if (IS("recipient"))
		return e->recipient;
	if (IS("sender_name") || IS("recipient_name") || IS("sender_domain") ||
	    IS("recipient_domain")) {
		const char *a = name[0] == 's' ? e->sender : e->recipient;
		if (!a)
			return NULL;
		const char *at = strrchr(a, '@');
		if (n >= 7 && strncmp(name + n - 7, "_domain", 7) == 0)
			return at ? at + 1 : "";
		snprintf(tmp, tmpcap, "%.*s", (int)(at ? (size_t)(at - a) : strlen(a)), a);
		return tmp;
	}
	if (IS("protocol") || IS("client_protocol"))
		return e->req->protocol;
#undef IS
	return NULL;
}

/* mac_expand(3) enough for rbl reply templates: $name, ${name}, ${name?text},
 * ${name:text}, $$. Values are filtered through smtpd_expansion_filter (printable ASCII,
 * space and tab: anything else becomes '_'). */
static void rbl_expand(const struct rbl_exp *x, const char *tpl, char *out, size_t cap,
		       int depth)
{
	size_t o = strlen(out);
	char tmp[SMTP_POLICY_TEXT_MAX];
	for (const char *s = tpl; *s && o + 1 < cap;) {
		if (*s != '$') {
			out[o++] = *s++;
			out[o] = '\0';
			continue;
		}
		s++;
		if (*s == '$') {
			out[o++] = *s++;
			out[o] = '\0';
			continue;
		}
		const char *name, *alt = NULL;
		size_t nlen, altlen = 0;
		char op = 0;
		if (*s == '{' || *s == '(') {
			char close = *s == '{' ? '}' : ')';
			const char *b = ++s;
			int lvl = 0;
			const char *e2 = s;
			while (*e2 && !(lvl == 0 && *e2 == close)) {
				if (*e2 == '{' || *e2 == '(')
					lvl++;
				else if (*e2 == '}' || *e2 == ')')
					lvl--;
				e2++;
			}
			name = b;
			nlen = strcspn(b, "?:}) ");
			if (b + nlen > e2)
				nlen = (size_t)(e2 - b);
			if (b + nlen < e2 && (b[nlen] == '?' || b[nlen] == ':')) {
				op = b[nlen];
				alt = b + nlen + 1;
				altlen = (size_t)(e2 - alt);
			}
			s = *e2 ? e2 + 1 : e2;
		} else {
			name = s;
			while (mx_ctype_is_alnum(*s) || *s == '_')
				s++;
			nlen = (size_t)(s - name);
		}
		const char *v = rbl_lookup_name(x, name, nlen, tmp, sizeof(tmp));
		if (op) {
			bool set = v && *v;
			if ((op == '?' && set) || (op == ':' && !set)) {
				char sub[SMTP_POLICY_TEXT_MAX];
				snprintf(sub, sizeof(sub), "%.*s", (int)altlen, alt);
				if (depth < 4)
					rbl_expand(x, sub, out, cap, depth + 1);
				o = strlen(out);
			}
			continue;
		}
		for (; v && *v && o + 1 < cap; v++) {
			unsigned char c = (unsigned char)*v;
			out[o++] = (c == '\t' || (c >= 32 && c < 127)) ? (char)c : '_';
		}
		out[o] = '\0';
	}
}

/* Postfix's rbl_reject_reply(). */
static int rbl_reject_reply(struct ev *e, const struct prbl *r, const char *what,
			    const char *cls, const char *txt)
{
	struct rbl_exp x = { .e = e, .r = r, .what = what, .cls = cls, .txt = txt };
	char why[SMTP_POLICY_TEXT_MAX] = "";
	char dsn[16];
	snprintf(x.code, sizeof(x.code), "%u", e->p->codes.maps_rbl_reject_code);
	rbl_expand(&x, e->p->default_rbl_reply, why, sizeof(why), 0);
	if ((why[0] != '4' && why[0] != '5') || why[1] < '0' || why[1] > '9' || why[2] < '0' ||
	    why[2] > '9' || why[3] != ' ')
		return ev_reject(e, EC_POLICY, 450, "4.7.1", "Service unavailable");
	const char *t = dsn_split(dsn, "4.7.1", why + 4);
	return ev_reject(e, EC_POLICY, (unsigned)atoi(why), dsn_fix(dsn, cls), "%s",
			 *t ? t : "Service unavailable");
}

static int reject_rbl(struct ev *e, uint32_t ri, const char *addr, const char *name,
		      const char *cls)
{
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_query(e, r, addr, name, &hit);
	if (rc < 0) {
		char why[300];
		snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-rc));
		return server_error(e, why);
	}
	if (!rc) {
		e->note = "not listed";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s %s", addr ? addr : name,
		 r->domain, hit.a, hit.txt);
	printable(e->detail);
	return rbl_reject_reply(e, r, addr ? addr : name, cls, hit.txt);
}

static int permit_dnswl(struct ev *e, uint32_t ri, const char *addr, const char *name)
{
	/* Safety (smtpd_check.c): never allowlist an unauthorized recipient. */
	if (e->req->stage == SMTP_STAGE_RCPT && e->recipient && !auth_destination(e, e->recipient)) {
		e->note = "skipped (unauthorized destination)";
		return ST_DUNNO;
	}
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_query(e, r, addr, name, &hit);
	if (rc < 0) {
		char why[300];
		snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-rc));
		return server_error(e, why);
	}
	if (!rc) {
		e->note = "not listed";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s", addr ? addr : name,
		 r->domain, hit.a);
	return ST_OK;
}

/* ---------------------------------------------------------------------------------------
 * generic_checks */

static void item_name(const struct ev *e, const struct pitem *it, char *buf, size_t cap)
{
	const char *n = "?";
	for (size_t i = 0; i < COUNT(r_defs); i++)
		if ((uint16_t)r_defs[i].id == it->id) {
			n = r_defs[i].name;
			break;
		}
	switch (it->id) {
	case R_IMPLICIT_ACCESS:
		scopy(buf, cap, e->p->tables[it->arg]);
		return;
	case R_CLASS:
		scopy(buf, cap, e->p->class_names[it->arg]);
		return;
	case R_CHECK_CLIENT_ACCESS:
	case R_CHECK_REVERSE_CLIENT_ACCESS:
	case R_CHECK_HELO_ACCESS:
	case R_CHECK_SENDER_ACCESS:
	case R_CHECK_RECIPIENT_ACCESS:
		snprintf(buf, cap, "%s %s", n, e->p->tables[it->arg]);
		return;
	case R_REJECT_RBL_CLIENT:
	case R_REJECT_RHSBL_CLIENT:
	case R_REJECT_RHSBL_REVERSE_CLIENT:
	case R_REJECT_RHSBL_HELO:
	case R_REJECT_RHSBL_SENDER:
	case R_REJECT_RHSBL_RECIPIENT:
	case R_PERMIT_DNSWL_CLIENT:
	case R_PERMIT_RHSWL_CLIENT:
		snprintf(buf, cap, "%s %s", n, e->p->rbls[it->arg].spec);
		return;
	default:
		scopy(buf, cap, n);
	}
}

static bool known(const char *s)
{
	return s && strcasecmp(s, "unknown") != 0;
}

static int eval_item(struct ev *e, const struct pitem *it, const char *rn, const char *rc,
		     int def_acl)
{
	const struct smtp_policy *p = e->p;
	int id = it->id;
	if (id == R_IMPLICIT_ACCESS) {
		if (def_acl < 0)
			return server_error(e, "specify a check_*_access restriction before a table in this list");
		id = def_acl;
	}
	switch (id) {
	case R_PERMIT:
		return ST_OK;
	case R_REJECT:
		return ev_reject(e, EC_POLICY, p->codes.reject_code, "5.7.1",
				 "<%s>: %s rejected: Access denied", rn, rc);
	case R_DEFER:
		return ev_reject(e, EC_POLICY, p->codes.defer_code, "4.3.2",
				 "<%s>: %s rejected: Try again later", rn, rc);
	case R_DEFER_IF_PERMIT:
		return defer_if(&e->dip, EC_POLICY, 450, "4.7.0",
				"<%s>: %s rejected: defer_if_permit requested", rn, rc);
	case R_DEFER_IF_REJECT:
		return defer_if(&e->dir, EC_POLICY, 450, "4.7.0",
				"<%s>: %s rejected: defer_if_reject requested", rn, rc);
	case R_PERMIT_MYNETWORKS: {
		struct mx_inet_addr a;
		if (p->mynetworks && e->req->client_addr && mx_inet_parse(e->req->client_addr, &a)) {
			struct mx_inet_addr u = mx_inet_unmap(&a);
			if (netlist_match(p->mynetworks, &u))
				return ST_OK;
		}
		e->note = "no match";
		return ST_DUNNO;
	}
	case R_PERMIT_SASL_AUTH:
		e->note = "no match (no SASL)";
		return ST_DUNNO;
	case R_REJECT_UNAUTH_DEST:
	case R_DEFER_UNAUTH_DEST:
		if (!e->recipient)
			return ST_DUNNO;
		if (auth_destination(e, e->recipient))
			return ST_DUNNO;
		if (id == R_REJECT_UNAUTH_DEST)
			return ev_reject(e, EC_POLICY, p->codes.relay_domains_reject_code, "5.7.1",
					 "<%s>: Relay access denied", e->recipient);
		return ev_reject(e, EC_POLICY, p->codes.relay_domains_reject_code - 100, "4.7.1",
				 "<%s>: Relay access denied", e->recipient);
	case R_PERMIT_AUTH_DEST:
		if (e->recipient && auth_destination(e, e->recipient))
			return ST_OK;
		return ST_DUNNO;
	case R_REJECT_UNAUTH_PIPELINING:
		if (e->req->unauth_pipelining)
			return ev_reject(e, EC_PROTOCOL, 503, "5.5.0",
					 "<%s>: %s rejected: Improper use of SMTP command pipelining",
					 rn, rc);
		return ST_DUNNO;
	case R_REJECT_INVALID_HELO:
		if (!e->helo)
			return ST_DUNNO;
		return e->helo[0] != '['
			       ? reject_invalid_hostname(e, e->helo, e->helo, NAME_HELO)
			       : reject_invalid_hostaddr(e, e->helo, e->helo, NAME_HELO);
	case R_REJECT_NON_FQDN_HELO:
		if (!e->helo)
			return ST_DUNNO;
		return e->helo[0] != '['
			       ? reject_non_fqdn_hostname(e, e->helo, e->helo, NAME_HELO)
			       : reject_invalid_hostaddr(e, e->helo, e->helo, NAME_HELO);
	case R_REJECT_NON_FQDN_SENDER:
		if (e->sender && *e->sender)
			return reject_non_fqdn_address(e, e->sender, e->sender, NAME_SENDER);
		return ST_DUNNO;
	case R_REJECT_NON_FQDN_RCPT:
		if (e->recipient)
			return reject_non_fqdn_address(e, e->recipient, e->recipient, NAME_RECIPIENT);
		return ST_DUNNO;
	case R_REJECT_UNLISTED_RCPT:
		if (e->recipient && *e->recipient)
			return check_recipient_rcpt_maps(e, e->recipient);
		return ST_DUNNO;
	case R_REJECT_UNLISTED_SENDER:
		if (e->sender && *e->sender)
			return check_sender_rcpt_maps(e, e->sender);
		return ST_DUNNO;
	case R_REJECT_MULTI_RCPT_BOUNCE:
		if (e->sender && !*e->sender &&
		    e->req->recipient_count > (e->req->stage != SMTP_STAGE_RCPT ? 1u : 0u))
			return ev_reject(e, EC_POLICY, p->codes.multi_recipient_bounce_reject_code,
					 "5.5.3", "<%s>: %s rejected: Multi-recipient bounce", rn, rc);
		return ST_DUNNO;
	case R_CHECK_CLIENT_ACCESS:
		return access_client(e, it->arg, e->req->client_name, e->namaddr, NAME_CLIENT,
				     def_acl);
	case R_CHECK_REVERSE_CLIENT_ACCESS: {
		const char *rev = e->req->reverse_name ? e->req->reverse_name : "unknown";
		int st = access_client(e, it->arg, rev, rev, NAME_REV_CLIENT, def_acl);
		/* forbid_allowlist(): an unverified name must never allowlist a client. */
		if (st == ST_OK && !e->discard)
			return server_error(e, "check_reverse_client_hostname_access returns OK; this is not allowed for security reasons (use DUNNO)");
		return st;
	}
	case R_CHECK_HELO_ACCESS:
		if (e->helo)
			return access_domain(e, it->arg, e->helo, e->helo, NAME_HELO, def_acl);
		return ST_DUNNO;
	case R_CHECK_SENDER_ACCESS:
		if (e->sender)
			return access_address(e, it->arg, e->sender, e->sender, NAME_SENDER, def_acl);
		return ST_DUNNO;
	case R_CHECK_RECIPIENT_ACCESS:
		if (e->recipient)
			return access_address(e, it->arg, e->recipient, e->recipient, NAME_RECIPIENT,
					      def_acl);
		return ST_DUNNO;
	case R_REJECT_RBL_CLIENT:
		if (!e->req->client_addr)
			return ST_DUNNO;
		return reject_rbl(e, it->arg, e->req->client_addr, NULL, NAME_CLIENT);
	case R_PERMIT_DNSWL_CLIENT:
		if (!e->req->client_addr)
			return ST_DUNNO;
		return permit_dnswl(e, it->arg, e->req->client_addr, NULL);
	case R_REJECT_RHSBL_CLIENT:
	case R_REJECT_RHSBL_REVERSE_CLIENT:
	case R_REJECT_RHSBL_HELO:
	case R_REJECT_RHSBL_SENDER:
	case R_REJECT_RHSBL_RECIPIENT:
	case R_PERMIT_RHSWL_CLIENT: {
		const char *what = NULL, *cls = NAME_CLIENT;
		if (id == R_REJECT_RHSBL_CLIENT || id == R_PERMIT_RHSWL_CLIENT)
			what = known(e->req->client_name) ? e->req->client_name : NULL;
		else if (id == R_REJECT_RHSBL_REVERSE_CLIENT)
			what = known(e->req->reverse_name) ? e->req->reverse_name : NULL,
			cls = NAME_REV_CLIENT;
		else if (id == R_REJECT_RHSBL_HELO)
			what = e->helo, cls = NAME_HELO;
		else if (id == R_REJECT_RHSBL_SENDER)
			what = e->sender && *e->sender ? e->sender : NULL, cls = NAME_SENDER;
		else
			what = e->recipient, cls = NAME_RECIPIENT;
		if (!what)
			return ST_DUNNO;
		const char *dom = rhsbl_domain(what);
		if (!dom) {
			e->note = "not queried";
			return ST_DUNNO;
		}
		if (id == R_PERMIT_RHSWL_CLIENT)
			return permit_dnswl(e, it->arg, NULL, dom);
		/* $rbl_what is the whole name or address, as Postfix shows it */
		const struct prbl *r = &e->p->rbls[it->arg];
		struct rbl_hit hit;
		int q = rbl_query(e, r, NULL, dom, &hit);
		if (q < 0) {
			char why[300];
			snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-q));
			return server_error(e, why);
		}
		if (!q) {
			e->note = "not listed";
			return ST_DUNNO;
		}
		snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s %s", dom, r->domain,
			 hit.a, hit.txt);
		printable(e->detail);
		return rbl_reject_reply(e, r, what, cls, hit.txt);
	}
	case R_CLASS: {
		const struct plist *c = &p->classes[it->arg];
		if (e->recursion > EVAL_DEPTH_MAX - 1)
			return server_error(e, "restriction class causes unreasonable recursion");
		return generic_checks(e, c->items, c->n, rn, rc, def_acl);
	}
	default:
		return server_error(e, "internal: unknown restriction id");
	}
}

static int generic_checks(struct ev *e, const struct pitem *items, size_t n, const char *rn,
			  const char *rc, int def_acl)
{
	int status = ST_DUNNO;
	int saved = e->recursion++;
	char name[SMTP_POLICY_TEXT_MAX];
	for (size_t i = 0; i < n; i++) {
		if (e->discard)
			break;
		const struct pitem *it = &items[i];
		item_name(e, it, name, sizeof(name));
		if (it->id == R_WARN_IF_REJECT) {
			if (!e->warn_if_reject)
				e->warn_if_reject = e->recursion;
			if (e->cb && e->cb->trace)
				e->cb->trace(e->cb->ctx, e->list, name, "armed", "");
			continue;
		}
		e->note = NULL;
		e->detail[0] = '\0';
		e->warned = false;
		status = eval_item(e, it, rn, rc, def_acl);
		if (e->cb && e->cb->trace) {
			const char *outcome;
			if (status == ST_OK)
				outcome = "PERMIT";
			else if (status == ST_REJECT && e->note &&
				 (strcmp(e->note, "lookup error") == 0 ||
				  strcmp(e->note, "server configuration error") == 0))
				outcome = e->note;
			else if (status == ST_REJECT)
				outcome = e->reply[0] == '5' || e->reply_hard ? "REJECT" : "DEFER";
			else if (e->warned)
				outcome = "reject_warning";
			else
				outcome = e->note ? e->note : "DUNNO";
			const char *detail = e->detail;
			if (status == ST_REJECT && !*detail)
				detail = e->reply;
			e->cb->trace(e->cb->ctx, e->list, name, outcome, detail);
		}
		if (status == ST_REJECT && !e->rname[0])
			scopy(e->rname, sizeof(e->rname), name);
		if (e->warn_if_reject >= e->recursion)
			e->warn_if_reject = 0;
		if (status != ST_DUNNO)
			break;
		if (e->dip.active && e->dir.active)
			break;
	}
	e->recursion = saved;
	if (e->warn_if_reject >= e->recursion)
		e->warn_if_reject = 0;
	return status;
}

/* ---------------------------------------------------------------------------------------
 * Stage drivers: smtpd_check_client / _helo / _mail / _rcpt / _data / _eod */

static void check_reset(struct ev *e)
{
	e->recursion = 0;
	e->warn_if_reject = 0;
	e->dir.active = false;
}

static int run_list(struct ev *e, enum smtp_restriction_list l, const char *rn,
		    const char *rc, int def_acl)
{
	const struct plist *pl = &e->p->lists[l];
	e->list = l;
	check_reset(e);
	if (!pl->n)
		return ST_DUNNO;
	return generic_checks(e, pl->items, pl->n, rn, rc, def_acl);
}

static int check_client(struct ev *e, bool *dip_client)
{
	e->dip.active = false;
	int st = run_list(e, SMTP_LIST_CLIENT, e->namaddr, NAME_CLIENT, R_CHECK_CLIENT_ACCESS);
	*dip_client = e->dip.active;
	return st;
}

static int check_helo(struct ev *e, bool dip_client, bool *dip_helo)
{
	if (!e->helo) {
		*dip_helo = false;
		return ST_DUNNO;
	}
	e->dip.active = dip_client;
	int st = run_list(e, SMTP_LIST_HELO, e->helo, NAME_HELO, R_CHECK_HELO_ACCESS);
	*dip_helo = e->dip.active;
	return st;
}

static int check_mail(struct ev *e, bool dip_client, bool dip_helo, bool *dip_sender)
{
	if (!e->sender) {
		*dip_sender = false;
		return ST_DUNNO;
	}
	e->dip.active = dip_client || dip_helo;
	e->sender_checked = false;
	int st = run_list(e, SMTP_LIST_SENDER, e->sender, NAME_SENDER, R_CHECK_SENDER_ACCESS);
	*dip_sender = e->dip.active;
	/* smtpd_reject_unlisted_sender: the implicit reject_unlisted_sender at the end. */
	if (e->p->reject_unlisted_sender && st != ST_REJECT && !e->sender_checked &&
	    !e->discard && *e->sender) {
		e->list = SMTP_LIST_SENDER;
		int s2 = check_sender_rcpt_maps(e, e->sender);
		if (s2 == ST_REJECT && !e->rname[0])
			snprintf(e->rname, sizeof(e->rname), "smtpd_reject_unlisted_sender");
		if (s2 != ST_DUNNO)
			st = s2;
	}
	return st;
}

/* Turn a permit into the remembered defer_if_permit reply. */
static int apply_dip(struct ev *e, int st)
{
	if (st != ST_REJECT && e->dip.active) {
		e->dip.active = false;
		int w = e->warn_if_reject;
		e->warn_if_reject = 0;
		st = ev_reject(e, e->dip.cls, e->dip.code, e->dip.dsn, "%s", e->dip.reason);
		e->warn_if_reject = w;
		if (st == ST_REJECT && !e->rname[0])
			snprintf(e->rname, sizeof(e->rname), "defer_if_permit");
	}
	return st;
}

static void save_session_dip(struct ev *e, struct smtp_policy_session *s)
{
	if (!s)
		return;
	s->dip_active = e->dip.active;
	s->dip_code = (uint16_t)e->dip.code;
	scopy(s->dip_dsn, sizeof(s->dip_dsn), e->dip.dsn);
	scopy(s->dip_reason, sizeof(s->dip_reason), e->dip.reason);
}

static void load_session_dip(struct ev *e, const struct smtp_policy_session *s)
{
	if (!s || !s->dip_reason[0])
		return;
	e->dip.cls = EC_POLICY;
	e->dip.code = s->dip_code;
	scopy(e->dip.dsn, sizeof(e->dip.dsn), s->dip_dsn);
	scopy(e->dip.reason, sizeof(e->dip.reason), s->dip_reason);
}

int smtp_policy_check(struct smtp_policy_ctx *ctx, const struct smtp_policy_request *req,
		      struct smtp_policy_actions *actions, const struct smtp_policy_callbacks *cb,
		      struct smtp_policy_result *res)
{
	if (!ctx || !req || !res || (unsigned)req->stage >= SMTP_STAGE_MAX)
		return -EINVAL;
	if (req->stage == SMTP_STAGE_RCPT && !req->recipient)
		return -EINVAL;
	static const struct smtp_policy_callbacks nocb;
	struct ev *e = &(struct ev){ 0 };
	e->ctx = ctx;
	e->p = ctx->p;
	e->req = req;
	e->act = actions;
	e->cb = cb ? cb : &nocb;
	e->discard = actions && actions->discard;
	/* Postfix's namaddr: "name[addr]" */
	{
		char *o = e->namaddr;
		size_t cap = sizeof(e->namaddr);
		scopy(o, cap - 60, req->client_name ? req->client_name : "unknown");
		size_t l = strlen(o);
		o[l++] = '[';
		scopy(o + l, cap - l - 1, req->client_addr ? req->client_addr : "unknown");
		l += strlen(o + l);
		o[l++] = ']';
		o[l] = '\0';
	}
	e->helo = req->helo;
	e->sender = req->sender;
	e->recipient = req->stage == SMTP_STAGE_RCPT ? req->recipient : NULL;
	if (req->stage == SMTP_STAGE_DATA || req->stage == SMTP_STAGE_END_OF_DATA)
		e->recipient = req->recipient_count > 1 ? NULL : req->recipient;

	/* smtpd.c evaluates the client, helo and sender lists at their own commands only when
	 * smtpd_delay_reject is off; with it they wait for RCPT. */
	if (e->p->delay_reject && (req->stage == SMTP_STAGE_CONNECT ||
				   req->stage == SMTP_STAGE_HELO || req->stage == SMTP_STAGE_MAIL)) {
		memset(res, 0, sizeof(*res));
		res->decision = SMTP_POLICY_ACCEPT;
		res->list = SMTP_LIST_MAX;
		return 0;
	}
	struct smtp_policy_session *s = req->session;
	if (s)
		load_session_dip(e, s);
	int st = ST_DUNNO;
	bool dc = false, dh = false, ds = false;
	switch (req->stage) {
	case SMTP_STAGE_CONNECT:
		/* Only without delay_reject: with it the caller asks at RCPT. */
		st = check_client(e, &dc);
		if (s) {
			s->dip_client = dc;
			save_session_dip(e, s);
		}
		break;
	case SMTP_STAGE_HELO:
		st = check_helo(e, s ? s->dip_client : false, &dh);
		if (s) {
			s->dip_helo = dh;
			save_session_dip(e, s);
		}
		break;
	case SMTP_STAGE_MAIL:
		st = check_mail(e, s ? s->dip_client : false, s ? s->dip_helo : false, &ds);
		if (s) {
			s->dip_sender = ds;
			save_session_dip(e, s);
		}
		break;
	case SMTP_STAGE_RCPT:
		/* RFC 5321 4.5.1: "postmaster" must be accepted; Postfix accepts it before
		 * any restriction. */
		if (strcasecmp(req->recipient, "postmaster") == 0)
			break;
		if (e->p->delay_reject) {
			st = check_client(e, &dc);
			if (st != ST_REJECT)
				st = check_helo(e, dc, &dh);
			if (st != ST_REJECT)
				st = check_mail(e, dc, dh, &ds);
			if (st == ST_REJECT)
				break;
		} else {
			ds = s ? s->dip_sender : false;
		}
		e->dip.active = ds;
		e->rcpt_checked = false;
		st = run_list(e, SMTP_LIST_RELAY, e->recipient, NAME_RECIPIENT,
			      R_CHECK_RECIPIENT_ACCESS);
		if (st != ST_REJECT)
			st = run_list(e, SMTP_LIST_RECIPIENT, e->recipient, NAME_RECIPIENT,
				      R_CHECK_RECIPIENT_ACCESS);
		st = apply_dip(e, st);
		/* smtpd_reject_unlisted_recipient: the implicit reject_unlisted_recipient
		 * after both lists. */
		if (e->p->reject_unlisted_recipient && st != ST_REJECT && !e->rcpt_checked &&
		    !e->discard) {
			e->list = SMTP_LIST_RECIPIENT;
			int s2 = check_recipient_rcpt_maps(e, e->recipient);
			if (s2 == ST_REJECT && !e->rname[0])
				snprintf(e->rname, sizeof(e->rname), "smtpd_reject_unlisted_recipient");
			if (s2 != ST_DUNNO)
				st = s2;
		}
		break;
	case SMTP_STAGE_DATA:
	case SMTP_STAGE_END_OF_DATA: {
		bool data = req->stage == SMTP_STAGE_DATA;
		e->dip.active = false;
		st = run_list(e, data ? SMTP_LIST_DATA : SMTP_LIST_END_OF_DATA,
			      data ? "DATA" : "END-OF-MESSAGE", data ? NAME_DATA : NAME_EOD, -1);
		st = apply_dip(e, st);
		break;
	}
	default:
		return -EINVAL;
	}

	memset(res, 0, sizeof(*res));
	res->list = SMTP_LIST_MAX;
	if (st == ST_REJECT) {
		res->code = (uint16_t)atoi(e->reply);
		scopy(res->text, sizeof(res->text), e->reply + 4);
		res->decision = e->reply[0] == '5' || e->reply_hard ? SMTP_POLICY_REJECT
								    : SMTP_POLICY_DEFER;
		res->disconnect = e->disconnect;
		res->list = e->list;
		scopy(res->restriction, sizeof(res->restriction), e->rname);
	} else {
		res->decision = SMTP_POLICY_ACCEPT;
	}
	return 0;
}
