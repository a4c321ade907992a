/* The DNSBL and DNSWL restrictions (Postfix 3.7 smtpd_check.c): reject_rbl_client,
 * reject_rhsbl_{client,reverse_client,helo,sender,recipient}, permit_dnswl_client and
 * permit_rhswl_client, with "=d.d.d.d" reply filters, Postfix's rbl_reject_reply() with
 * rbl_reply_maps and default_rbl_reply, and the mac_expand(3) subset those templates use.
 *
 * Where the answer comes from: a local zone of the same name (tables/rbl_zone.h, loaded
 * with mxgate-map -z) answers first; only when none was loaded is DNS asked, through the
 * caller's lookups (smtp_restrictions_dns.c), as Postfix's rbl_pagein() does: an A query,
 * then, for a listed client that is being refused, a TXT query for $rbl_reason. Postfix
 * also asks TXT for a DNSWL or an answer the filter drops and then never uses it; mxgate
 * does not ask what it will not use. A DNS temporary failure is what Postfix makes of it:
 * a warning and "not listed" for a blocklist, a defer_if_reject 450 for an allowlist.
 * Blocklist error codes, 127.255.255.0/24 (Spamhaus: 127.255.255.252 typing error, .254
 * query through a public resolver, .255 excessive queries), are never a listing: the
 * answer counts as "not listed" and a "warning" event says so (Postfix 3.7 would list the
 * client when the restriction has no filter). Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/socket.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions_internal.h"
#include "tables/rbl_zone.h"

#define RBL_TXT_LIMIT 500 /* Postfix's rbl_pagein(): TXT records joined up to this */

/* What a blocklist says (Postfix's SMTPD_DNSXL_STAT_*). */
enum rbl_status { RBL_NOT_LISTED, RBL_SOFT, RBL_LISTED };

struct rbl_hit {
	enum rbl_status status;
	char a[16];                   /* the A record that matched */
	char txt[RBL_TXT_LIMIT + 1];  /* $rbl_reason ("" without TXT) */
};

static bool rbl_filter_match(const struct prbl *r, const uint8_t ip[4])
{
	if (!r->has_filter)
		return true;
	for (int o = 0; o < 4; o++)
		if (!(r->filter[o][ip[o] / 8] & (1u << (ip[o] % 8))))
			return false;
	return true;
}

/* 127.255.255.0/24: an error code of the list, never a listing. */
static bool rbl_error_code(const uint8_t ip[4])
{
	return ip[0] == 127 && ip[1] == 255 && ip[2] == 255;
}

/* A local zone's answer. Returns 1 listed, 0 not, -ENOENT no such zone (ask DNS), or
 * another negative errno (the zone cannot be read). */
static int rbl_local(struct ev *e, const struct prbl *r, const struct mx_inet_addr *a,
		     const char *name, struct rbl_hit *hit)
{
	struct rbl_zone *z = e->ctx->zones[r->zone];
	struct rbl_result res;
	if (!z)
		return -ENOENT;
	int rc = a ? rbl_zone_query_addr(z, a, e->req->now, &res)
		   : rbl_zone_query_name(z, name, e->req->now, &res);
	if (rc <= 0)
		return rc;
	for (unsigned i = 0; i < res.count && i < RBL_ANSWERS_MAX; i++) {
		const uint8_t *ip = res.answers[i].a;
		if (rbl_error_code(ip) || !rbl_filter_match(r, ip))
			continue;
		hit->status = RBL_LISTED;
		snprintf(hit->a, sizeof(hit->a), "%u.%u.%u.%u", ip[0], ip[1], ip[2], ip[3]);
		smtp_policy_scopy(hit->txt, sizeof(hit->txt), res.answers[i].txt);
		return 1;
	}
	return 0;
}

/* Postfix's rbl_pagein(): the TXT records joined with " / " up to RBL_TXT_LIMIT, each
 * record's first string with non-printable octets as spaces. */
static void rbl_join_txt(const struct dns_result *r, char *out)
{
	size_t len = 0, space_left = RBL_TXT_LIMIT;
	out[0] = '\0';
	for (unsigned i = 0; i < r->nrecords && space_left > 0; i++) {
		const struct dns_result_record *rec = &r->records[i];
		const char *s = dns_result_txt(r, rec);
		size_t n = rec->txt_len < space_left ? rec->txt_len : space_left;
		for (size_t k = 0; k < n && s[k]; k++) {
			unsigned char c = (unsigned char)s[k];
			out[len++] = c >= 32 && c < 127 ? (char)c : ' ';
		}
		out[len] = '\0';
		space_left = RBL_TXT_LIMIT - len;
		if (i + 1 < r->nrecords && space_left > 3) {
			memcpy(out + len, " / ", 4);
			len += 3;
			space_left -= 3;
		}
	}
}

/* The DNS answer for query name q. Returns 0 with hit filled, or ST_PENDING. */
static int rbl_dns(struct ev *e, const struct prbl *r, const char *q, bool want_txt,
		   struct rbl_hit *hit)
{
	const struct dns_result *res;
	if (!smtp_policy_ask_dns(e, DNS_TYPE_A, q, &res))
		return ST_PENDING;
	if (res->status == DNS_RESULT_TEMPFAIL) {
		smtp_policy_warn(e, "%s: RBL lookup error: %s", q, res->why[0] ? res->why : "temporary failure");
		hit->status = RBL_SOFT;
		return 0;
	}
	if (res->status != DNS_RESULT_OK)
		return 0;
	const uint8_t *err = NULL;
	for (unsigned i = 0; i < res->nrecords; i++) {
		const struct mx_inet_addr *a = &res->records[i].addr;
		if (a->family != AF_INET)
			continue;
		if (rbl_error_code(a->bytes)) {
			if (!err)
				err = a->bytes;
			continue;
		}
		if (!rbl_filter_match(r, a->bytes))
			continue;
		hit->status = RBL_LISTED;
		snprintf(hit->a, sizeof(hit->a), "%u.%u.%u.%u", a->bytes[0], a->bytes[1],
			 a->bytes[2], a->bytes[3]);
		break;
	}
	if (hit->status != RBL_LISTED) {
		if (err)
			smtp_policy_warn(e, "RBL error code: %s: %s answered %u.%u.%u.%u, an error "
					 "code, not a listing: treated as not listed (a public or "
					 "unregistered resolver, or too many queries?)",
					 q, r->domain, err[0], err[1], err[2], err[3]);
		return 0;
	}
	if (!want_txt)
		return 0;
	if (!smtp_policy_ask_dns(e, DNS_TYPE_TXT, q, &res))
		return ST_PENDING;
	if (res->status == DNS_RESULT_OK)
		rbl_join_txt(res, hit->txt);
	return 0;
}

/* Postfix's find_dnsxl_addr() / find_dnsxl_domain(): ask zone r about client address addr
 * or domain dom. Returns 0 with hit filled, ST_PENDING, or a negative errno (a local zone
 * that cannot be read). */
static int rbl_find(struct ev *e, const struct prbl *r, const char *addr, const char *dom,
		    bool want_txt, struct rbl_hit *hit)
{
	struct mx_inet_addr a;
	char q[DNS_HOSTNAME_MAX + 1];
	memset(hit, 0, sizeof(*hit));
	if (addr && !mx_inet_parse(addr, &a)) {
		e->note = "not queried";
		return 0;
	}
	int rc = rbl_local(e, r, addr ? &a : NULL, dom, hit);
	if (rc >= 0) {
		if (rc > 0) {
			snprintf(e->detail, sizeof(e->detail), "%.200s listed in %.200s (local zone): %s %.60s",
				 addr ? addr : dom, r->domain, hit->a, hit->txt);
			smtp_policy_printable(e->detail);
		}
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	rc = addr ? dns_name_dnsbl(&a, r->domain, q, sizeof(q))
		  : dns_name_rhsbl(dom, r->domain, q, sizeof(q));
	if (rc < 0) {
		/* a name DNS cannot carry: Postfix's lookup fails, which is "not listed" */
		e->note = "not queried";
		return 0;
	}
	return rbl_dns(e, r, q, want_txt, hit);
}

/* ---------------------------------------------------------------------------------------
 * Reply templates: mac_expand(3) as rbl_reject_reply() uses it */

#define MAC_ERROR 1u /* syntax error */
#define MAC_UNDEF 2u /* an unknown $name */
#define MAC_DEPTH_MAX 100
#define MAC_WHITESPACE " \t\r\n"

struct rbl_exp {
	const struct ev *e; /* NULL: checking a template at compile time (both branches of
			       every ?: are parsed, as MAC_EXP_FLAG_SCAN does) */
	const struct prbl *r;
	const char *what, *cls, *txt;
	char *out;
	size_t cap, len;
	char tmp[SMTP_POLICY_TEXT_MAX];
};

static bool name_is(struct mx_span n, const char *s)
{
	return n.len == strlen(s) && memcmp(n.ptr, s, n.len) == 0;
}

/* smtpd_expand_addr(): $sender, $sender_name, $sender_domain (and recipient). */
static const char *rbl_expand_addr(struct rbl_exp *x, const char *addr, struct mx_span suffix)
{
	if (!addr)
		return "";
	const char *at = strrchr(addr, '@');
	if (suffix.len == 0)
		return *addr ? addr : "<>";
	if (name_is(suffix, "_name")) {
		if (!*addr)
			return "<>";
		if (!at)
			return addr;
		snprintf(x->tmp, sizeof(x->tmp), "%.*s", (int)(at - addr), addr);
		return x->tmp;
	}
	if (name_is(suffix, "_domain"))
		return at ? at + 1 : "";
	return NULL;
}

/* rbl_expand_lookup() and smtpd_expand_lookup(): NULL only for an unknown name. */
static const char *rbl_lookup(struct rbl_exp *x, struct mx_span n)
{
	static const char *const known[] = {
		"rbl_code", "rbl_domain", "rbl_reason", "rbl_txt", "rbl_what", "rbl_class",
		"server_name", "client", "client_port", "client_address", "client_name",
		"reverse_client_name", "helo_name", "localtime",
	};
	const struct ev *e = x->e;
	if (!e) {
		/* compile time: is the name known? */
		for (size_t i = 0; i < COUNT(known); i++)
			if (name_is(n, known[i]))
				return "";
		if (n.len >= 6 && memcmp(n.ptr, "sender", 6) == 0)
			return rbl_expand_addr(x, "", mx_span_make(n.ptr + 6, n.len - 6));
		if (n.len >= 9 && memcmp(n.ptr, "recipient", 9) == 0)
			return rbl_expand_addr(x, "", mx_span_make(n.ptr + 9, n.len - 9));
		return NULL;
	}
	const struct smtp_policy_request *q = e->req;
	if (name_is(n, "rbl_code")) {
		snprintf(x->tmp, sizeof(x->tmp), "%u", e->p->codes.maps_rbl_reject_code);
		return x->tmp;
	}
	if (name_is(n, "rbl_domain"))
		return x->r->shown;
	if (name_is(n, "rbl_reason") || name_is(n, "rbl_txt"))
		return x->txt;
	if (name_is(n, "rbl_what"))
		return x->what;
	if (name_is(n, "rbl_class"))
		return x->cls;
	if (name_is(n, "server_name"))
		return e->p->myhostname;
	if (name_is(n, "client"))
		return e->namaddr;
	if (name_is(n, "client_port")) {
		if (!q->client_port)
			return "unknown";
		snprintf(x->tmp, sizeof(x->tmp), "%u", q->client_port);
		return x->tmp;
	}
	if (name_is(n, "client_address"))
		return q->client_addr ? q->client_addr : "unknown";
	if (name_is(n, "client_name"))
		return q->client_name ? q->client_name : "unknown";
	if (name_is(n, "reverse_client_name"))
		return q->reverse_name ? q->reverse_name : "unknown";
	if (name_is(n, "helo_name"))
		return e->helo ? e->helo : "";
	if (n.len >= 6 && memcmp(n.ptr, "sender", 6) == 0)
		return rbl_expand_addr(x, e->sender, mx_span_make(n.ptr + 6, n.len - 6));
	if (n.len >= 9 && memcmp(n.ptr, "recipient", 9) == 0)
		return rbl_expand_addr(x, e->recipient, mx_span_make(n.ptr + 9, n.len - 9));
	if (name_is(n, "localtime")) {
		time_t t = (time_t)q->now;
		struct tm tm;
		if (!localtime_r(&t, &tm) || !strftime(x->tmp, sizeof(x->tmp), "%b %d %H:%M:%S", &tm))
			x->tmp[0] = '\0';
		return x->tmp;
	}
	return NULL;
}

/* A value goes out through smtpd_expansion_filter (Postfix's default: tab, space and
 * printable ASCII; anything else becomes '_'). */
static void rbl_put(struct rbl_exp *x, const char *v, size_t n, bool filter)
{
	for (size_t i = 0; i < n && x->len + 1 < x->cap; i++) {
		unsigned char c = (unsigned char)v[i];
		x->out[x->len++] = !filter || c == '\t' || (c >= 32 && c < 127) ? (char)c : '_';
	}
	x->out[x->len] = '\0';
}

static unsigned rbl_parse(struct rbl_exp *x, struct mx_span s, int level);

/* MAC_EXP_FIND_LEFT_CURLY() and mac_exp_extract_curly_payload(): at *cp (blanks first) a
 * "{...}" with balanced braces; its payload, *cp past it and the blanks after it. */
static bool rbl_curly(struct mx_span *cp, struct mx_span *payload, unsigned *status)
{
	size_t w = 0;
	while (w < cp->len && strchr(MAC_WHITESPACE, cp->ptr[w]))
		w++;
	if (w == cp->len || cp->ptr[w] != '{')
		return false;
	const char *p = cp->ptr + w + 1, *end = cp->ptr + cp->len;
	int level = 1;
	const char *q = p;
	for (; q < end; q++) {
		if (*q == '{')
			level++;
		else if (*q == '}' && --level <= 0)
			break;
	}
	if (q >= end) {
		*status |= MAC_ERROR; /* unbalanced {} */
		*cp = mx_span_make(end, 0);
		*payload = mx_span_make(p, 0);
		return true;
	}
	*payload = mx_span_make(p, (size_t)(q - p));
	q++;
	while (q < end && strchr(MAC_WHITESPACE, *q))
		q++;
	*cp = mx_span_make(q, (size_t)(end - q));
	return true;
}

/* mac_expand_callback() for one $name / ${name...} expression. */
static unsigned rbl_expr(struct rbl_exp *x, struct mx_span expr, int level)
{
	unsigned status = 0;
	if (level > MAC_DEPTH_MAX)
		return MAC_ERROR;
	const char *p = expr.ptr, *end = expr.ptr + expr.len;
	while (p < end && strchr(MAC_WHITESPACE, *p))
		p++;
	if (p < end && *p == '{')
		return MAC_ERROR; /* relational expressions ${{a} == {b}?...}: not supported */
	const char *start = p;
	char op = 0;
	struct mx_span name = { 0 };
	for (;; p++) {
		const char *w = p;
		while (w < end && strchr(MAC_WHITESPACE, *w))
			w++;
		if (w == end) {
			name = mx_span_make(start, (size_t)(p - start));
			p = end;
			break;
		}
		if (*w == '?' || *w == ':') {
			name = mx_span_make(start, (size_t)(p - start));
			op = *w;
			p = w + 1;
			break;
		}
		if (!mx_ctype_is_alnum(*p) && *p != '_')
			return MAC_ERROR; /* attribute name syntax error */
	}
	const char *v = rbl_lookup(x, name);
	bool set = v && *v;
	struct mx_span cp = mx_span_make(p, (size_t)(end - p)), res;
	switch (op) {
	case '?':
		if (!rbl_curly(&cp, &res, &status)) {
			res = cp;
			cp = mx_span_make(end, 0);
		}
		if (status & MAC_ERROR)
			return status;
		if (set || !x->e)
			status |= rbl_parse(x, res, level + 1);
		if (cp.len == 0)
			break;
		if (cp.ptr[0] != ':')
			return status | MAC_ERROR; /* ":" expected */
		cp = mx_span_make(cp.ptr + 1, cp.len - 1);
		/* fall through */
	case ':':
		if (!rbl_curly(&cp, &res, &status)) {
			res = cp;
			cp = mx_span_make(end, 0);
		}
		if (status & MAC_ERROR)
			return status;
		if (!set || !x->e)
			status |= rbl_parse(x, res, level + 1);
		if (cp.len)
			status |= MAC_ERROR; /* unexpected input */
		break;
	default:
		if (!v)
			status |= MAC_UNDEF;
		else
			rbl_put(x, v, strlen(v), true);
		break;
	}
	return status;
}

/* mac_parse(): literal text, $$, $name, ${name...} and $(name...). */
static unsigned rbl_parse(struct rbl_exp *x, struct mx_span s, int level)
{
	unsigned status = 0;
	const char *p = s.ptr, *end = s.ptr + s.len;
	while (p < end && !(status & MAC_ERROR)) {
		if (*p != '$') {
			rbl_put(x, p++, 1, false);
			continue;
		}
		if (p + 1 < end && p[1] == '$') {
			rbl_put(x, p, 1, false);
			p += 2;
			continue;
		}
		p++;
		struct mx_span expr;
		if (p < end && (*p == '{' || *p == '(')) {
			char open = *p, close = *p == '{' ? '}' : ')';
			const char *q = ++p;
			int depth = 1;
			for (; q < end; q++) {
				if (*q == open)
					depth++;
				else if (*q == close && --depth == 0)
					break;
			}
			if (q >= end)
				return status | MAC_ERROR; /* truncated macro reference */
			expr = mx_span_make(p, (size_t)(q - p));
			p = q + 1;
		} else {
			const char *q = p;
			while (q < end && (mx_ctype_is_alnum(*q) || *q == '_'))
				q++;
			expr = mx_span_make(p, (size_t)(q - p));
			p = q;
		}
		if (expr.len == 0)
			return status | MAC_ERROR; /* empty macro name */
		status |= rbl_expr(x, expr, level);
	}
	return status;
}

int smtp_policy_rbl_template_check(const char *tpl, char *why, size_t whylen)
{
	char out[SMTP_POLICY_TEXT_MAX];
	struct rbl_exp x = { .out = out, .cap = sizeof(out) };
	out[0] = '\0';
	unsigned st = rbl_parse(&x, mx_span_cstr(tpl), 0);
	if (st & MAC_ERROR)
		snprintf(why, whylen, "syntax error in \"%s\"", tpl);
	else if (st & MAC_UNDEF)
		snprintf(why, whylen, "unknown $name in \"%s\"", tpl);
	return st ? -EINVAL : 0;
}

/* Postfix's rbl_reject_reply(): the zone's template from rbl_reply_maps, else
 * default_rbl_reply, expanded, and its code checked. */
static int rbl_reject_reply(struct ev *e, const struct prbl *r, const char *what,
			    const char *cls, const char *txt)
{
	char why[1024];
	char dsn[16];
	const char *tpl = NULL;
	for (size_t i = 0; i < e->p->nrbl_reply_maps && !tpl; i++) {
		struct table *t = e->ctx->tables[e->p->rbl_reply_maps[i]];
		char *val = e->ctx->lookup[0];
		int rc = strlen(r->spec) > TABLE_KEY_MAX ? 0
							 : table_lookup(t, r->spec, val, TABLE_VALUE_MAX + 1);
		if (rc < 0) {
			char w[300];
			snprintf(w, sizeof(w), "rbl_reply_maps %s: %s", e->p->tables[e->p->rbl_reply_maps[i]],
				 strerror(-rc));
			return smtp_policy_server_error(e, w);
		}
		if (rc > 0)
			tpl = val;
	}
	for (;;) {
		struct rbl_exp x = { .e = e, .r = r, .what = what, .cls = cls, .txt = txt,
				     .out = why, .cap = sizeof(why) };
		why[0] = '\0';
		const char *use = tpl ? tpl : e->p->default_rbl_reply;
		unsigned st = rbl_parse(&x, mx_span_cstr(use), 0);
		if (st == 0 || !tpl)
			break; /* default_rbl_reply was checked when compiled */
		smtp_policy_warn(e, "rbl_reject_reply: bad rbl reply template for domain %s: %s",
				 r->spec, tpl);
		tpl = NULL;
	}
	if ((why[0] != '4' && why[0] != '5') || !mx_ctype_is_digit(why[1]) ||
	    !mx_ctype_is_digit(why[2]) || why[3] != ' ') {
		smtp_policy_warn(e, "rbl response code configuration error: %s", why);
		return smtp_policy_reject(e, EC_POLICY, 450, "4.7.1", "Service unavailable");
	}
	const char *t = smtp_policy_dsn_split(dsn, "4.7.1", why + 4);
	return smtp_policy_reject(e, EC_POLICY, (unsigned)atoi(why), smtp_policy_dsn_fix(dsn, cls),
				  "%s", *t ? t : "Service unavailable");
}

/* ---------------------------------------------------------------------------------------
 * The restrictions */

static int rbl_zone_error(struct ev *e, const struct prbl *r, int rc)
{
	char why[300];
	snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-rc));
	return smtp_policy_server_error(e, why);
}

/* reject_rbl_addr() and reject_rbl_domain(): `what` is shown in the reply; the zone is
 * asked about addr, or about dom. */
static int rbl_reject(struct ev *e, uint32_t ri, const char *addr, const char *dom,
		      const char *what, const char *cls)
{
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_find(e, r, addr, dom, true, &hit);
	if (rc == ST_PENDING)
		return ST_PENDING;
	if (rc < 0)
		return rbl_zone_error(e, r, rc);
	if (hit.status != RBL_LISTED) {
		if (!e->note)
			e->note = hit.status == RBL_SOFT ? "lookup failed: not listed" : "not listed";
		return ST_DUNNO;
	}
	return rbl_reject_reply(e, r, what, cls, hit.txt);
}

/* permit_dnswl_addr() and permit_dnswl_domain(). */
static int rbl_permit(struct ev *e, uint32_t ri, const char *addr, const char *dom,
		      const char *what, const char *cls)
{
	/* Safety (smtpd_check.c): never allowlist an unauthorized recipient. */
	if (e->req->stage == SMTP_STAGE_RCPT && e->recipient &&
	    !smtp_policy_auth_destination(e, e->recipient)) {
		e->note = "skipped (unauthorized destination)";
		return ST_DUNNO;
	}
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_find(e, r, addr, dom, false, &hit);
	if (rc == ST_PENDING)
		return ST_PENDING;
	if (rc < 0)
		return rbl_zone_error(e, r, rc);
	if (hit.status == RBL_SOFT) {
		/* XXX in Postfix: "Make configurable as dnswl_tempfail_action" */
		e->note = "lookup failed: defer_if_reject";
		return smtp_policy_defer_if(&e->dir, EC_POLICY, 450, "4.7.1",
					    "<%s>: %s rejected: Service unavailable", what, cls);
	}
	if (hit.status != RBL_LISTED) {
		if (!e->note)
			e->note = "not listed";
		return ST_DUNNO;
	}
	return ST_OK;
}

int smtp_policy_reject_rbl(struct ev *e, uint32_t ri, const char *addr, const char *name,
			   const char *cls)
{
	(void)name;
	return rbl_reject(e, ri, addr, NULL, addr, cls);
}

int smtp_policy_permit_dnswl(struct ev *e, uint32_t ri, const char *addr, const char *name)
{
	(void)name;
	return rbl_permit(e, ri, addr, NULL, addr, NAME_CLIENT);
}

/* The RHSBL name: the domain of an address, or the name itself; none for an address
 * literal, a numeric last label or a name that is no host name (find_dnsxl_domain()).
 * Postfix converts a non-ASCII domain to an A-label first; mxgate cannot, and does not
 * ask (the name is no valid host name). */
static const char *rhsbl_domain(const char *what)
{
	const char *at = strrchr(what, '@');
	const char *d = at ? at + 1 : what;
	if (!*d || d[0] == '[')
		return NULL;
	const char *dot = strrchr(d, '.');
	if (mx_ctype_all_digits(dot ? dot + 1 : d))
		return NULL;
	if (!smtp_policy_valid_hostname(d, strlen(d)))
		return NULL;
	return d;
}

/* reject_rhsbl_* (or permit_rhswl_client when `permit`) on `what`, a name or an address:
 * the zone is asked about its domain; $rbl_what is the whole name or address. */
int smtp_policy_rhsbl(struct ev *e, uint32_t ri, const char *what, const char *cls,
		      bool permit)
{
	const char *dom = rhsbl_domain(what);
	if (!dom) {
		e->note = "not queried";
		return ST_DUNNO;
	}
	return permit ? rbl_permit(e, ri, NULL, dom, what, cls)
		      : rbl_reject(e, ri, NULL, dom, what, cls);
}
