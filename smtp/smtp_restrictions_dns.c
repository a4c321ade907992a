/* The restrictions that ask DNS questions themselves, as Postfix 3.7's smtpd_check.c asks
 * them: reject_unknown_helo_hostname (reject_unknown_hostname(): A, AAAA, then MX),
 * reject_unknown_{sender,recipient}_domain (reject_unknown_mailhost(): MX, then A, AAAA;
 * a null MX, RFC 7505, refused with Postfix 3.7's 550 5.7.27 / 556 5.1.10),
 * check_{client,reverse_client,helo,sender,recipient}_{mx,ns,a}_access
 * (check_server_access()), and the two that read what the connection learnt at connect:
 * reject_unknown_client_hostname and reject_unknown_reverse_client_hostname.
 *
 * Every question goes to the caller's lookups callback (smtp_policy_ask_dns()): an answer
 * at hand comes back at once; otherwise the question is asked now and the run stops
 * (ST_PENDING) to be replayed when the answer has come. Postfix's statuses map from a
 * struct dns_result: OK is DNS_OK (an MX answer holding a null MX is DNS_NULLMX),
 * NODATA and NXDOMAIN are DNS_NOTFOUND, TEMPFAIL is DNS_RETRY (mxgate's resolver folds
 * what Postfix calls DNS_FAIL, a REFUSED or FORMERR from the only server, into it: a
 * temporary outcome, never a permanent reject because a server misbehaves). Part of the
 * evaluator split across smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sys/socket.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions_internal.h"

/* ---------------------------------------------------------------------------------------
 * Questions */

uint32_t smtp_policy_hash(uint32_t h, const void *data, size_t len)
{
	/* FNV-1a */
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

uint32_t smtp_policy_question(struct ev *e, uint32_t key)
{
	uint32_t seq = ++e->seq;
	const struct smtp_policy_pending *r = e->replay;
	if (r && !e->replay_reached && seq == r->seq) {
		unsigned depth = e->recursion < 0 ? 0u : (unsigned)e->recursion;
		bool same = r->key == key && r->list == e->list && r->depth == (depth > 255 ? 255 : depth);
		for (unsigned i = 0; same && i < depth && i < COUNT(r->path); i++)
			same = r->path[i] == e->path[i];
		e->replay_reached = same;
	}
	return seq;
}

void smtp_policy_question_pending(struct ev *e, uint32_t seq, uint32_t key)
{
	unsigned depth = e->recursion < 0 ? 0u : (unsigned)e->recursion;
	e->stop = (struct smtp_policy_pending){
		.active = true,
		.stage = (uint8_t)e->req->stage,
		.list = (uint8_t)e->list,
		.depth = (uint8_t)(depth > 255 ? 255 : depth),
		.seq = seq,
		.key = key,
	};
	memcpy(e->stop.path, e->path, sizeof(e->stop.path));
}

/* For `mxgate explain`: the answers a restriction used, after its detail. */
static void dns_note(struct ev *e, enum dns_type type, const char *name,
		     const struct dns_result *r)
{
	size_t n = strlen(e->detail);
	if (n + 40 >= sizeof(e->detail))
		return;
	int w = snprintf(e->detail + n, sizeof(e->detail) - n, "%s%s %s: %s", n ? "; " : "",
			 dns_type_name(type), name, dns_result_status_name(r->status));
	if (w < 0)
		return;
	n = strlen(e->detail);
	for (unsigned i = 0; i < r->nrecords && i < 4 && n + 2 < sizeof(e->detail); i++) {
		const struct dns_result_record *rec = &r->records[i];
		char a[64];
		const char *v = a;
		if (type == DNS_TYPE_A || type == DNS_TYPE_AAAA)
			mx_inet_format(&rec->addr, a, sizeof(a));
		else if (type == DNS_TYPE_TXT)
			v = dns_result_txt(r, rec);
		else
			v = dns_result_name(r, rec);
		snprintf(e->detail + n, sizeof(e->detail) - n, "%s%s", i ? ", " : " ", v);
		n = strlen(e->detail);
	}
	if (r->status == DNS_RESULT_TEMPFAIL && r->why[0])
		snprintf(e->detail + n, sizeof(e->detail) - n, " (%s)", r->why);
	smtp_policy_printable(e->detail);
}

int smtp_policy_ask_dns(struct ev *e, enum dns_type type, const char *name,
			const struct dns_result **out)
{
	static const struct dns_result no_resolver = {
		.status = DNS_RESULT_TEMPFAIL, .why = "no DNS resolver"
	};
	static const struct dns_result failed = {
		.status = DNS_RESULT_TEMPFAIL, .why = "the query could not be sent"
	};
	uint8_t t = (uint8_t)type;
	uint32_t key = smtp_policy_hash(smtp_policy_hash(2166136261u, &t, 1), name, strlen(name));
	uint32_t seq = smtp_policy_question(e, key);
	const struct smtp_policy_lookups *lk = e->cb->lookups;
	e->ctx->stats.dns_asked++;
	const struct dns_result *r = NULL;
	int rc = lk && lk->dns ? lk->dns(lk->ctx, type, name, &r) : -ENOSYS;
	if (rc == 0) {
		smtp_policy_question_pending(e, seq, key);
		return 0;
	}
	if (rc < 0)
		r = lk && lk->dns ? &failed : &no_resolver;
	else if (!r || (unsigned)r->status >= DNS_RESULT_STATUS_MAX ||
		 (r->status == DNS_RESULT_OK && !r->nrecords))
		r = &failed; /* a broken answer is no answer */
	dns_note(e, type, name, r);
	*out = r;
	return 1;
}

/* ---------------------------------------------------------------------------------------
 * Postfix's dns_lookup_l(): one name, several types */

/* Postfix's statuses in order of preference (dns_lookup_rl() keeps the best one). */
enum dstat { DS_NOTFOUND, DS_NULLMX, DS_RETRY, DS_OK };

#define STOP_OK 1u     /* DNS_REQ_FLAG_STOP_OK */
#define STOP_NULLMX 2u /* DNS_REQ_FLAG_STOP_NULLMX */

static enum dstat dstat_of(const struct dns_result *r, enum dns_type type)
{
	switch (r->status) {
	case DNS_RESULT_OK:
		/* dns_get_answer(): one null MX makes the whole answer DNS_NULLMX */
		for (unsigned i = 0; type == DNS_TYPE_MX && i < r->nrecords; i++)
			if (r->records[i].name_len == 0)
				return DS_NULLMX;
		return DS_OK;
	case DNS_RESULT_NODATA:
	case DNS_RESULT_NXDOMAIN:
		return DS_NOTFOUND;
	default:
		return DS_RETRY;
	}
}

/* The query form of name, or false when Postfix's dns_lookup_x() answers DNS_NOTFOUND
 * without asking (a numeric address, not a host name). */
static bool query_name(const char *name, char *q, size_t cap)
{
	size_t n = strlen(name), qn;
	if (smtp_policy_valid_hostaddr(name) || !smtp_policy_valid_hostname(name, n))
		return false;
	return dns_name_normalize(name, n, q, cap, &qn) == 0;
}

/* Returns 1 with *status, or 0 (pending). */
static int lookup_l(struct ev *e, const char *name, const enum dns_type *types, size_t n,
		    unsigned flags, enum dstat *status)
{
	char q[DNS_HOSTNAME_MAX + 1];
	if (!query_name(name, q, sizeof(q))) {
		*status = DS_NOTFOUND;
		return 1;
	}
	int st = DS_NOTFOUND, hpref = -1;
	for (size_t i = 0; i < n; i++) {
		const struct dns_result *r;
		if (!smtp_policy_ask_dns(e, types[i], q, &r))
			return 0;
		st = (int)dstat_of(r, types[i]);
		if ((st == DS_OK && (flags & STOP_OK)) || (st == DS_NULLMX && (flags & STOP_NULLMX)))
			break;
		if (i + 1 == n)
			break;
		if (st >= hpref)
			hpref = st;
	}
	if (st < hpref)
		st = hpref;
	*status = (enum dstat)st;
	return 1;
}

static bool all_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 128)
			return false;
	return true;
}

/* ---------------------------------------------------------------------------------------
 * reject_unknown_* */

static enum smtp_policy_name_status name_status(enum smtp_policy_name_status s,
						const char *name)
{
	if (s != SMTP_POLICY_NAME_DEFAULT && (unsigned)s < SMTP_POLICY_NAME_STATUS_MAX)
		return s;
	return name && strcasecmp(name, "unknown") != 0 ? SMTP_POLICY_NAME_OK
							: SMTP_POLICY_NAME_PERM;
}

int smtp_policy_unknown_client(struct ev *e)
{
	const struct smtp_policy_request *q = e->req;
	enum smtp_policy_name_status s = name_status(q->client_name_status, q->client_name);
	e->note = smtp_policy_name_status_name(s);
	if (s == SMTP_POLICY_NAME_OK)
		return ST_DUNNO;
	/* RFC 7372: Email Authentication Status Codes */
	return smtp_policy_reject(e, EC_POLICY,
				  s >= SMTP_POLICY_NAME_PERM ? e->p->codes.unknown_client_reject_code
							     : 450,
				  "4.7.25", "Client host rejected: cannot find your hostname, [%s]",
				  q->client_addr ? q->client_addr : "unknown");
}

int smtp_policy_unknown_reverse_client(struct ev *e)
{
	const struct smtp_policy_request *q = e->req;
	enum smtp_policy_name_status s = name_status(q->reverse_name_status, q->reverse_name);
	e->note = smtp_policy_name_status_name(s);
	if (s == SMTP_POLICY_NAME_OK)
		return ST_DUNNO;
	return smtp_policy_reject(e, EC_POLICY,
				  s == SMTP_POLICY_NAME_PERM ? e->p->codes.unknown_client_reject_code
							     : 450,
				  "4.7.1",
				  "Client host rejected: cannot find your reverse hostname, [%s]",
				  q->client_addr ? q->client_addr : "unknown");
}

/* reject_unknown_hostname(): the HELO name must have an address or an MX record. */
int smtp_policy_unknown_helo(struct ev *e)
{
	static const enum dns_type types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX };
	enum dstat st;
	if (!lookup_l(e, e->helo, types, COUNT(types), STOP_OK, &st))
		return ST_PENDING;
	/* MTA names may have a null MX */
	if (st == DS_OK || st == DS_NULLMX)
		return ST_DUNNO;
	if (st == DS_RETRY)
		return smtp_policy_defer_if_permit(
			e,
			e->p->codes.unknown_helo_hostname_tempfail_action == SMTP_POLICY_TEMPFAIL_DEFER,
			EC_POLICY, 450, "4.7.1", "<%s>: %s rejected: Host not found", e->helo,
			NAME_HELO);
	return smtp_policy_reject(e, EC_POLICY, e->p->codes.unknown_hostname_reject_code, "4.7.1",
				  "<%s>: %s rejected: Host not found", e->helo, NAME_HELO);
}

/* reject_unknown_mailhost(): the domain must have an MX record or an address, and no
 * null MX. */
static int unknown_mailhost(struct ev *e, const char *domain, const char *rn, const char *rc)
{
	static const enum dns_type types[] = { DNS_TYPE_MX, DNS_TYPE_A, DNS_TYPE_AAAA };
	bool snd = strcmp(rc, NAME_SENDER) == 0;
	enum dstat st;
	if (!lookup_l(e, domain, types, COUNT(types), STOP_OK | STOP_NULLMX, &st))
		return ST_PENDING;
	switch (st) {
	case DS_OK:
		return ST_DUNNO;
	case DS_NULLMX:
		return smtp_policy_reject(e, EC_POLICY, snd ? 550 : 556, snd ? "4.7.27" : "4.1.10",
					  "<%s>: %s rejected: Domain %s does not accept mail (nullMX)",
					  rn, rc, domain);
	case DS_RETRY:
		return smtp_policy_defer_if_permit(
			e, e->p->codes.unknown_address_tempfail_action == SMTP_POLICY_TEMPFAIL_DEFER,
			EC_POLICY, 450, snd ? "4.1.8" : "4.1.2",
			"<%s>: %s rejected: Domain not found", rn, rc);
	default:
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.unknown_address_reject_code,
					  snd ? "4.1.8" : "4.1.2", "<%s>: %s rejected: Domain not found",
					  rn, rc);
	}
}

/* reject_unknown_address(): the domain of addr, unless it is delivered here or is an
 * address literal. */
int smtp_policy_unknown_address(struct ev *e, const char *addr, const char *cls)
{
	if (smtp_policy_addr_is_local(e, addr)) {
		e->note = "final destination";
		return ST_DUNNO;
	}
	struct mx_span d = smtp_policy_addr_domain(e, addr);
	char domain[DNS_NAME_TEXT_MAX + 1];
	if (d.len == 0 || d.len >= sizeof(domain))
		return ST_DUNNO;
	memcpy(domain, d.ptr, d.len);
	domain[d.len] = '\0';
	if (domain[0] == '[' && domain[d.len - 1] == ']') {
		e->note = "address literal";
		return ST_DUNNO;
	}
	if (!all_ascii(domain)) {
		/* Postfix converts it to an A-label first; mxgate has no IDNA library, and
		 * does not reject what it cannot look up */
		e->note = "not looked up (non-ASCII domain)";
		return ST_DUNNO;
	}
	return unknown_mailhost(e, domain, addr, cls);
}

/* ---------------------------------------------------------------------------------------
 * check_*_{mx,ns,a}_access: Postfix's check_server_access() */

#define SERVER_ADDR_LIMIT 100 /* var_dns_rr_list_limit */

bool smtp_policy_is_server_access(int id)
{
	return id >= R_CHECK_CLIENT_MX_ACCESS && id <= R_CHECK_RECIPIENT_A_ACCESS;
}

/* h_errno as dns_strerror() shows it. */
static const char *dns_strerror_of(const struct dns_result *r)
{
	switch (r->status) {
	case DNS_RESULT_NXDOMAIN:
		return "Host not found";
	case DNS_RESULT_NODATA:
		return "Host found but no data record of requested type";
	default:
		return "Host not found, try again";
	}
}

/* What check_server_access() checks: the server names of the domain, then their
 * addresses. Each access lookup that matches a key (even DUNNO) ends the search. */
struct srv {
	uint32_t t;
	const char *rn, *rc;
	int def_acl;
	enum dns_type type;
};

/* One server name: itself (MX, NS), then its addresses. Returns a status, or -1 to go on
 * with the next server. *naddr counts the addresses checked. */
static int server_one(struct ev *e, const struct srv *v, const char *host, unsigned *naddr)
{
	bool found = false;
	int st;
	if (smtp_policy_valid_hostaddr(host)) {
		st = smtp_policy_access_found(e, v->t, NULL, host, v->rn, v->rc, v->def_acl, &found);
		return st != ST_DUNNO || found ? st : -1;
	}
	if (v->type != DNS_TYPE_A) {
		st = smtp_policy_access_found(e, v->t, host, NULL, v->rn, v->rc, v->def_acl, &found);
		if (st != ST_DUNNO || found)
			return st;
	}
	/* hostname_to_sockaddr(): its A and AAAA addresses (A first) */
	char q[DNS_HOSTNAME_MAX + 1];
	const struct dns_result *ra = NULL, *r6 = NULL;
	if (query_name(host, q, sizeof(q))) {
		if (!smtp_policy_ask_dns(e, DNS_TYPE_A, q, &ra) ||
		    !smtp_policy_ask_dns(e, DNS_TYPE_AAAA, q, &r6))
			return ST_PENDING;
	}
	bool have = (ra && ra->status == DNS_RESULT_OK) || (r6 && r6->status == DNS_RESULT_OK);
	if (!have) {
		if (v->type != DNS_TYPE_A) {
			const char *why = "Name or service not known";
			if ((ra && ra->status == DNS_RESULT_TEMPFAIL) ||
			    (r6 && r6->status == DNS_RESULT_TEMPFAIL))
				why = "Temporary failure in name resolution";
			else if (ra && r6 && (ra->status == DNS_RESULT_NODATA ||
					      r6->status == DNS_RESULT_NODATA))
				why = "No address associated with hostname";
			smtp_policy_warn(e, "Unable to look up %s host %s for %s %s: %s",
					 dns_type_name(v->type), host, v->rc, v->rn, why);
		}
		return -1;
	}
	const struct dns_result *rs[2] = { ra, r6 };
	for (int k = 0; k < 2; k++) {
		for (unsigned i = 0; rs[k] && rs[k]->status == DNS_RESULT_OK && i < rs[k]->nrecords;
		     i++) {
			if (++*naddr > SERVER_ADDR_LIMIT) {
				smtp_policy_warn(e, "check_server_access: %s server address count "
						 "limit (%d) exceeded for %s %s -- ignoring the "
						 "remainder",
						 dns_type_name(v->type), SERVER_ADDR_LIMIT, v->rc,
						 v->rn);
				return ST_DUNNO;
			}
			char a[64];
			const struct mx_inet_addr *ad = &rs[k]->records[i].addr;
			if (ad->family != (k ? AF_INET6 : AF_INET))
				continue;
			mx_inet_format(ad, a, sizeof(a));
			st = smtp_policy_access_found(e, v->t, NULL, a, v->rn, v->rc, v->def_acl,
						      &found);
			if (st != ST_DUNNO || found)
				return st;
		}
	}
	return -1;
}

/* check_server_access() of `name` (a host name or an address: its domain). */
static int server_access(struct ev *e, const struct srv *v, const char *name)
{
	const char *at = strrchr(name, '@');
	const char *domain = at ? at + 1 : name;
	if (*domain == '[') {
		/* an address literal is its own MX (or A) server; it has no NS */
		size_t len = strlen(domain);
		char bare[300];
		bool found;
		if ((v->type != DNS_TYPE_A && v->type != DNS_TYPE_MX) || domain[len - 1] != ']' ||
		    len - 2 >= sizeof(bare))
			return ST_DUNNO;
		memcpy(bare, domain + 1, len - 2);
		bare[len - 2] = '\0';
		/* valid_mailhost_addr(): IPv4, or IPv6 after "IPv6:" */
		const char *b = strncasecmp(bare, "IPv6:", 5) == 0 ? bare + 5 : bare;
		struct mx_inet_addr a;
		if ((b == bare && (!mx_inet_parse(b, &a) || a.family != AF_INET)) ||
		    (b != bare && (!mx_inet_parse(b, &a) || a.family != AF_INET6)))
			return ST_DUNNO;
		return smtp_policy_access_found(e, v->t, NULL, b, v->rn, v->rc, v->def_acl, &found);
	}
	if (!all_ascii(domain)) {
		e->note = "not looked up (non-ASCII domain)";
		return ST_DUNNO;
	}
	unsigned naddr = 0;
	if (v->type == DNS_TYPE_A) {
		/* a fabricated MX record pointing to the name itself */
		int st = server_one(e, v, domain, &naddr);
		return st < 0 ? ST_DUNNO : st;
	}
	const struct dns_result *r = NULL;
	char q[DNS_HOSTNAME_MAX + 1];
	const char *looked = domain;
	enum dstat ds = DS_NOTFOUND;
	if (query_name(domain, q, sizeof(q))) {
		if (!smtp_policy_ask_dns(e, v->type, q, &r))
			return ST_PENDING;
		ds = dstat_of(r, v->type);
	}
	if (ds == DS_NULLMX)
		return ST_DUNNO;
	if (ds == DS_NOTFOUND) {
		if (v->type == DNS_TYPE_MX) {
			/* no MX: the domain is its own mail server */
			int st = server_one(e, v, domain, &naddr);
			return st < 0 ? ST_DUNNO : st;
		}
		/* no NS (or a broken server's NXDOMAIN): the parent domains' */
		const char *d = domain;
		while ((d = strchr(d, '.')) != NULL && d[1]) {
			d++;
			r = NULL;
			ds = DS_NOTFOUND;
			if (query_name(d, q, sizeof(q))) {
				if (!smtp_policy_ask_dns(e, v->type, q, &r))
					return ST_PENDING;
				ds = dstat_of(r, v->type);
			}
			if (ds != DS_NOTFOUND)
				break;
		}
		looked = d;
	}
	if (ds != DS_OK) {
		smtp_policy_warn(e, "Unable to look up %s host for %s: %s", dns_type_name(v->type),
				 looked && looked[1] ? looked : name,
				 r ? dns_strerror_of(r) : "Host not found");
		return ST_DUNNO;
	}
	/* The servers in the answer's order (Postfix does not sort them here). */
	for (unsigned i = 0; i < r->nrecords; i++) {
		char host[DNS_NAME_TEXT_MAX + 1];
		smtp_policy_scopy(host, sizeof(host), dns_result_name(r, &r->records[i]));
		if (!host[0])
			continue;
		int st = server_one(e, v, host, &naddr);
		if (st >= 0)
			return st;
	}
	return ST_DUNNO;
}

int smtp_policy_server_access(struct ev *e, int id, uint32_t t, const char *rn,
			      const char *rc, int def_acl)
{
	static const enum dns_type types[3] = { DNS_TYPE_MX, DNS_TYPE_NS, DNS_TYPE_A };
	/* Postfix names the subject itself, not the list's reply name and class */
	(void)rn;
	(void)rc;
	int k = id - R_CHECK_CLIENT_MX_ACCESS;
	struct srv v = { .t = t, .def_acl = def_acl, .type = types[k % 3] };
	const char *name = NULL;
	const struct smtp_policy_request *q = e->req;
	switch (k / 3) {
	case 0: /* client: its verified name */
		if (!q->client_name || strcasecmp(q->client_name, "unknown") == 0)
			return ST_DUNNO;
		name = q->client_name;
		v.rn = e->namaddr;
		v.rc = NAME_CLIENT;
		break;
	case 1:
		if (!q->reverse_name || strcasecmp(q->reverse_name, "unknown") == 0)
			return ST_DUNNO;
		name = v.rn = q->reverse_name;
		v.rc = NAME_REV_CLIENT;
		break;
	case 2:
		if (!e->helo)
			return ST_DUNNO;
		name = v.rn = e->helo;
		v.rc = NAME_HELO;
		break;
	case 3:
		if (!e->sender || !*e->sender)
			return ST_DUNNO;
		name = v.rn = e->sender;
		v.rc = NAME_SENDER;
		break;
	default:
		if (!e->recipient || !*e->recipient)
			return ST_DUNNO;
		name = v.rn = e->recipient;
		v.rc = NAME_RECIPIENT;
		break;
	}
	int st = server_access(e, &v, name);
	if (st == ST_PENDING)
		return st;
	/* forbid_allowlist(): a DNS answer must never allowlist anyone */
	return smtp_policy_forbid_allowlist(
		e, smtp_restriction_id_name((enum smtp_restriction_id)id), st, name);
}
