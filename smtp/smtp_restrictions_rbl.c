/* The DNSBL and DNSWL restrictions against local zones (tables/rbl_zone.h):
 * reject_rbl_client, reject_rhsbl_*, permit_dnswl_client, permit_rhswl_client, the reply
 * filter, and Postfix's rbl_reject_reply() with default_rbl_reply's $-expansion. Part of the
 * evaluator split across smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions_internal.h"
#include "tables/rbl_zone.h"

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
		smtp_policy_scopy(hit->txt, sizeof(hit->txt), res.answers[i].txt);
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
	if (!smtp_policy_valid_hostname(d, strlen(d)))
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
		return smtp_policy_reject(e, EC_POLICY, 450, "4.7.1", "Service unavailable");
	const char *t = smtp_policy_dsn_split(dsn, "4.7.1", why + 4);
	return smtp_policy_reject(e, EC_POLICY, (unsigned)atoi(why), smtp_policy_dsn_fix(dsn, cls),
				  "%s", *t ? t : "Service unavailable");
}

int smtp_policy_reject_rbl(struct ev *e, uint32_t ri, const char *addr, const char *name,
			   const char *cls)
{
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_query(e, r, addr, name, &hit);
	if (rc < 0) {
		char why[300];
		snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-rc));
		return smtp_policy_server_error(e, why);
	}
	if (!rc) {
		e->note = "not listed";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s %s", addr ? addr : name,
		 r->domain, hit.a, hit.txt);
	smtp_policy_printable(e->detail);
	return rbl_reject_reply(e, r, addr ? addr : name, cls, hit.txt);
}

int smtp_policy_permit_dnswl(struct ev *e, uint32_t ri, const char *addr, const char *name)
{
	/* Safety (smtpd_check.c): never allowlist an unauthorized recipient. */
	if (e->req->stage == SMTP_STAGE_RCPT && e->recipient &&
	    !smtp_policy_auth_destination(e, e->recipient)) {
		e->note = "skipped (unauthorized destination)";
		return ST_DUNNO;
	}
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int rc = rbl_query(e, r, addr, name, &hit);
	if (rc < 0) {
		char why[300];
		snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-rc));
		return smtp_policy_server_error(e, why);
	}
	if (!rc) {
		e->note = "not listed";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s", addr ? addr : name,
		 r->domain, hit.a);
	return ST_OK;
}

/* reject_rhsbl_* (or permit_rhswl_client when `permit`) on `what`, a name or an address:
 * the zone is asked about its domain. */
int smtp_policy_rhsbl(struct ev *e, uint32_t ri, const char *what, const char *cls,
		      bool permit)
{
	const char *dom = rhsbl_domain(what);
	if (!dom) {
		e->note = "not queried";
		return ST_DUNNO;
	}
	if (permit)
		return smtp_policy_permit_dnswl(e, ri, NULL, dom);
	/* $rbl_what is the whole name or address, as Postfix shows it */
	const struct prbl *r = &e->p->rbls[ri];
	struct rbl_hit hit;
	int q = rbl_query(e, r, NULL, dom, &hit);
	if (q < 0) {
		char why[300];
		snprintf(why, sizeof(why), "zone %s: %s", r->domain, strerror(-q));
		return smtp_policy_server_error(e, why);
	}
	if (!q) {
		e->note = "not listed";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s listed in %s: %s %s", dom, r->domain, hit.a,
		 hit.txt);
	smtp_policy_printable(e->detail);
	return rbl_reject_reply(e, r, what, cls, hit.txt);
}
