/* Compiling Postfix's restriction lists (postconf(5) smtpd_*_restrictions,
 * smtpd_restriction_classes, relay_recipient_maps, local_recipient_maps, rbl_reply_maps)
 * into the immutable struct smtp_policy: the table of restrictions mxgate knows (and of
 * those it refuses honestly), the list tokenizer, table specs, RBL zone specs with their
 * reply filters, policy services (smtp_restrictions_policy.c parses them), and the diag
 * callback that reports every error at once. Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_restrictions_internal.h"

/* ---------------------------------------------------------------------------------------
 * Restrictions mxgate knows */

enum r_arg { ARG_NONE, ARG_TABLE, ARG_ZONE, ARG_SERVICE };

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
	{ "check_sasl_access", R_CHECK_SASL_ACCESS, ARG_TABLE },
	{ "reject_sender_login_mismatch", R_REJECT_SENDER_LOGIN_MISMATCH, ARG_NONE },
	{ "reject_authenticated_sender_login_mismatch", R_REJECT_AUTH_SENDER_LOGIN_MISMATCH,
	  ARG_NONE },
	{ "reject_known_sender_login_mismatch", R_REJECT_KNOWN_SENDER_LOGIN_MISMATCH, ARG_NONE },
	{ "reject_unauthenticated_sender_login_mismatch", R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH,
	  ARG_NONE },
	{ "reject_unauth_destination", R_REJECT_UNAUTH_DEST, ARG_NONE },
	{ "defer_unauth_destination", R_DEFER_UNAUTH_DEST, ARG_NONE },
	{ "permit_auth_destination", R_PERMIT_AUTH_DEST, ARG_NONE },
	{ "reject_unauth_pipelining", R_REJECT_UNAUTH_PIPELINING, ARG_NONE },
	{ "reject_plaintext_session", R_REJECT_PLAINTEXT_SESSION, ARG_NONE },
	{ "permit_tls_clientcerts", R_PERMIT_TLS_CLIENTCERTS, ARG_NONE },
	{ "permit_tls_all_clientcerts", R_PERMIT_TLS_ALL_CLIENTCERTS, ARG_NONE },
	{ "check_ccert_access", R_CHECK_CCERT_ACCESS, ARG_TABLE },
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
	{ "reject_unknown_client_hostname", R_REJECT_UNKNOWN_CLIENT, ARG_NONE },
	{ "reject_unknown_client", R_REJECT_UNKNOWN_CLIENT, ARG_NONE },
	{ "reject_unknown_reverse_client_hostname", R_REJECT_UNKNOWN_REVERSE_CLIENT, ARG_NONE },
	{ "reject_unknown_helo_hostname", R_REJECT_UNKNOWN_HELO, ARG_NONE },
	{ "reject_unknown_hostname", R_REJECT_UNKNOWN_HELO, ARG_NONE },
	{ "reject_unknown_sender_domain", R_REJECT_UNKNOWN_SENDER_DOMAIN, ARG_NONE },
	{ "reject_unknown_address", R_REJECT_UNKNOWN_SENDER_DOMAIN, ARG_NONE },
	{ "reject_unknown_recipient_domain", R_REJECT_UNKNOWN_RCPT_DOMAIN, ARG_NONE },
	{ "check_client_mx_access", R_CHECK_CLIENT_MX_ACCESS, ARG_TABLE },
	{ "check_client_ns_access", R_CHECK_CLIENT_NS_ACCESS, ARG_TABLE },
	{ "check_client_a_access", R_CHECK_CLIENT_A_ACCESS, ARG_TABLE },
	{ "check_reverse_client_mx_access", R_CHECK_REVERSE_CLIENT_MX_ACCESS, ARG_TABLE },
	{ "check_reverse_client_ns_access", R_CHECK_REVERSE_CLIENT_NS_ACCESS, ARG_TABLE },
	{ "check_reverse_client_a_access", R_CHECK_REVERSE_CLIENT_A_ACCESS, ARG_TABLE },
	{ "check_helo_mx_access", R_CHECK_HELO_MX_ACCESS, ARG_TABLE },
	{ "check_helo_ns_access", R_CHECK_HELO_NS_ACCESS, ARG_TABLE },
	{ "check_helo_a_access", R_CHECK_HELO_A_ACCESS, ARG_TABLE },
	{ "check_sender_mx_access", R_CHECK_SENDER_MX_ACCESS, ARG_TABLE },
	{ "check_sender_ns_access", R_CHECK_SENDER_NS_ACCESS, ARG_TABLE },
	{ "check_sender_a_access", R_CHECK_SENDER_A_ACCESS, ARG_TABLE },
	{ "check_recipient_mx_access", R_CHECK_RECIPIENT_MX_ACCESS, ARG_TABLE },
	{ "check_recipient_ns_access", R_CHECK_RECIPIENT_NS_ACCESS, ARG_TABLE },
	{ "check_recipient_a_access", R_CHECK_RECIPIENT_A_ACCESS, ARG_TABLE },
	{ "check_policy_service", R_CHECK_POLICY_SERVICE, ARG_SERVICE },
	/* mxgate's: postgrey built in (smtp_restrictions_greylist.c) */
	{ "check_greylist", R_CHECK_GREYLIST, ARG_NONE },
};

/* Postfix restrictions that need more than DNS, and why mxgate refuses them. */
static const struct {
	const char *name, *why;
} r_need_more[] = {
	{ "permit_mx_backup", "it needs the gateway's own addresses (inet_interfaces, "
			      "proxy_interfaces) to tell a backup MX, which mxgate does not "
			      "know; list the domains in relay_domains instead" },
	{ "reject_unverified_sender", "it needs Postfix's address verification service "
				      "(verify(8)), which mxgate does not have" },
	{ "reject_unverified_recipient", "it needs Postfix's address verification service "
					 "(verify(8)), which mxgate does not have" },
};

/* Postfix restrictions mxgate does not implement yet (TLS, SASL, ...). */
static const char *const r_not_yet[] = {
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

const char *smtp_restriction_id_name(enum smtp_restriction_id id)
{
	for (size_t i = 0; i < COUNT(r_defs); i++)
		if (r_defs[i].id == id)
			return r_defs[i].name;
	return "?";
}

/* ---------------------------------------------------------------------------------------
 * The compiled policy */

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
bool smtp_policy_token_copy(char *dst, size_t cap, const char *t, size_t n)
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

bool smtp_policy_rbl_filter_parse(const char *f, uint8_t filter[4][32])
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
	if (dlen == 0 || dlen > DNS_HOSTNAME_MAX || !dns_name_valid(spec, dlen)) {
		snprintf(err, errlen, "%s: %s: bad zone \"%s\"", param, rname, spec);
		return -EINVAL;
	}
	if (eq) {
		if (!smtp_policy_rbl_filter_parse(eq + 1, r.filter)) {
			snprintf(err, errlen, "%s: %s: bad reply filter \"%s\" (want d.d.d.d with [a;b] or [n..m] per octet)",
				 param, rname, eq + 1);
			return -EINVAL;
		}
		r.has_filter = true;
	}
	r.domain = strndup(spec, dlen);
	r.shown = strndup(spec, dlen);
	r.spec = strdup(spec);
	if (!r.domain || !r.spec || !r.shown) {
		free(r.domain);
		free(r.shown);
		free(r.spec);
		return -ENOMEM;
	}
	mx_ctype_lower_mem(r.domain, strlen(r.domain));
	int z = push_str(&p->zones, &p->nzones, r.domain, true);
	if (z < 0) {
		free(r.domain);
		free(r.shown);
		free(r.spec);
		return z;
	}
	r.zone = (uint32_t)z;
	struct prbl *nr = realloc(p->rbls, (p->nrbls + 1) * sizeof(*nr));
	if (!nr) {
		free(r.domain);
		free(r.shown);
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
int smtp_policy_parse_item(struct smtp_policy *p, const char *param, const char *word,
			   const char **cur, struct pitem *it, bool compile, char *err,
			   size_t errlen)
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
		for (size_t i = 0; i < COUNT(r_need_more); i++)
			if (strcasecmp(r_need_more[i].name, word) == 0) {
				snprintf(err, errlen, "%s: %s is not supported: %s", param, word,
					 r_need_more[i].why);
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
	if (d->arg == ARG_SERVICE) {
		/* the argument as written, braces and all: Postfix's key of the client */
		if (tn <= 0 || (size_t)tn >= sizeof(arg)) {
			snprintf(err, errlen, "%s: %s must be followed by transport:server", param,
				 d->name);
			return -EINVAL;
		}
		memcpy(arg, ts, (size_t)tn);
		arg[tn] = '\0';
		int si = smtp_policy_service_add(p, param, arg, compile, err, errlen);
		if (si < 0)
			return si;
		it->arg = (uint32_t)si;
		return 0;
	}
	if (tn <= 0 || !smtp_policy_token_copy(arg, sizeof(arg), ts, (size_t)tn)) {
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
		smtp_policy_scopy(p->first_error, sizeof(p->first_error), err);
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
		if (!smtp_policy_token_copy(word, sizeof(word), ts, (size_t)tn)) {
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
		int rc = smtp_policy_parse_item(p, param, word, &cur, &it, true, err, errlen);
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
		if (tn < 0 || !smtp_policy_token_copy(word, sizeof(word), ts, (size_t)tn)) {
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

/* Does this restriction ask DNS questions (other than an RBL zone's)? */
static bool needs_dns(int id)
{
	return (id >= R_REJECT_UNKNOWN_CLIENT && id <= R_REJECT_UNKNOWN_RCPT_DOMAIN) ||
	       smtp_policy_is_server_access(id);
}

void smtp_policy_foreach_dns(const struct smtp_policy *p,
			     int (*fn)(void *ctx, const char *param, const char *restriction),
			     void *ctx)
{
	for (int l = 0; l < SMTP_LIST_MAX; l++)
		for (size_t i = 0; i < p->lists[l].n; i++)
			if (needs_dns(p->lists[l].items[i].id) &&
			    fn(ctx, smtp_restriction_list_name((enum smtp_restriction_list)l),
			       smtp_restriction_id_name(
				       (enum smtp_restriction_id)p->lists[l].items[i].id)))
				return;
	for (size_t c = 0; c < p->nclasses; c++)
		for (size_t i = 0; p->classes && i < p->classes[c].n; i++)
			if (needs_dns(p->classes[c].items[i].id) &&
			    fn(ctx, p->class_names[c],
			       smtp_restriction_id_name(
				       (enum smtp_restriction_id)p->classes[c].items[i].id)))
				return;
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
		free(p->rbls[i].shown);
	}
	free(p->rbls);
	smtp_policy_services_free(p);
	smtp_policy_greylist_free(p);
	free(p->default_rbl_reply);
	free(p->myorigin);
	free(p->myhostname);
	free(p->recipient_delimiter);
	free(p->null_key);
	free(p);
}

int smtp_policy_compile(const struct smtp_policy_config *cfg, struct smtp_policy **out,
			char *err, size_t errlen)
{
	struct smtp_policy *p = calloc(1, sizeof(*p));
	int rc;
	if (!p) {
		greylist_allowlist_free(cfg->greylist.allowlist);
		return -ENOMEM;
	}
	if ((rc = smtp_policy_greylist_set(p, &cfg->greylist)) < 0)
		goto fail;
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
	p->myhostname = xstrdup(cfg->myhostname ? cfg->myhostname : "unknown");
	p->recipient_delimiter = xstrdup(cfg->access.recipient_delimiter);
	p->null_key = xstrdup(cfg->access.null_key ? cfg->access.null_key : "<>");
	if (!p->default_rbl_reply || !p->myorigin || !p->myhostname || !p->recipient_delimiter ||
	    !p->null_key) {
		rc = -ENOMEM;
		goto fail;
	}
	{
		/* a zeroed config means Postfix's defaults */
		struct smtp_policy_service d = cfg->policy_service;
		if (!d.default_action) {
			smtp_policy_service_defaults(&d);
		}
		if ((rc = smtp_policy_service_set_defaults(p, &d)) < 0)
			goto fail;
		char why[SMTP_POLICY_TEXT_MAX];
		if (smtp_policy_rbl_template_check(p->default_rbl_reply, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "default_rbl_reply: %s", why);
			if ((rc = compile_error(p, -EINVAL, err)) < 0)
				goto fail;
		}
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
			if (tn < 0 || !smtp_policy_token_copy(word, sizeof(word), ts, (size_t)tn)) {
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
	if ((rc = compile_maps(p, "smtpd_sender_login_maps", cfg->sender_login_maps,
			       p->login_maps, &p->nlogin_maps, err, errlen)) < 0 &&
	    (rc = compile_error(p, rc, err)) < 0)
		goto fail;
	p->sasl_enabled = cfg->sasl_enabled;
	if ((rc = compile_maps(p, "relay_clientcerts", cfg->relay_clientcerts,
			       p->relay_ccert_maps, &p->nrelay_ccert_maps, err, errlen)) < 0 &&
	    (rc = compile_error(p, rc, err)) < 0)
		goto fail;
	if ((rc = compile_maps(p, "rbl_reply_maps", cfg->rbl_reply_maps, p->rbl_reply_maps,
			       &p->nrbl_reply_maps, err, errlen)) < 0 &&
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
		smtp_policy_scopy(err, errlen, p->first_error);
	if (rc == -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	smtp_policy_free(p);
	return rc;
}
