/* Waiting for services (dataplane/svc/): a connection has at most one request in flight,
 * owned through a small conn_op so that a connection that goes away first leaves the
 * answer something to free. And the first thing a connection waits for: the client's
 * name, looked up before the greeting as Postfix's smtpd_peer does (PTR, then the name's
 * addresses of the client's family must include the client's address, or the name is
 * "unknown"). */
#include "dataplane/session/conn_internal.h"

#include "tables/dns_message.h"

/* What a name lookup may take before the session goes on without it. The resolver
 * answers sooner (its own timeouts and attempts); this only bounds a stuck service. */
#define CONN_PEER_LOOKUP_TIMEOUT_MS 60000

const char *conn_wait_name(enum conn_wait w)
{
	static const char *const names[CONN_WAIT_MAX] = {
		[CONN_WAIT_NONE] = "none",
		[CONN_WAIT_PEER_PTR] = "reverse name lookup",
		[CONN_WAIT_PEER_ADDR] = "name confirmation",
		[CONN_WAIT_LOOKUP] = "restriction lookup",
		[CONN_WAIT_SASL] = "authentication server",
	};
	return (unsigned)w < CONN_WAIT_MAX ? names[w] : "?";
}

/* Hand r to its service for c. true when in flight (conn_waiting() is true until the
 * answer); false when it could not be sent (no such service, out of memory): r was
 * freed and the caller goes on as for a failed lookup. */
bool conn_wait_submit(struct conn *c, struct svc_request *r, enum conn_wait why,
		      uint64_t timeout_ms)
{
	assert(!c->op);
	struct conn_op *op = c->w->svc ? malloc(sizeof(*op)) : NULL;
	if (!op) {
		svc_request_free(r);
		return false;
	}
	op->kind = CONN_OP_CONN;
	op->c = c;
	op->r = r;
	op->asked_us = mx_clock_wall_us();
	r->owner = op;
	r->deadline_ms = mx_clock_monotonic_ms() + timeout_ms;
	if (svc_submit(c->w->svc, r) < 0) {
		free(op);
		svc_request_free(r);
		return false;
	}
	c->op = op;
	c->wait = why;
	return true;
}

/* The connection goes away: its answer, when it comes, finds nobody. */
void conn_wait_cancel(struct conn *c)
{
	if (c->op) {
		svc_request_cancel(c->op->r);
		c->op->c = NULL;
		c->op = NULL;
	}
	c->wait = CONN_WAIT_NONE;
}

void conn_service_orphan(struct svc_request *r)
{
	free(r->owner);
	svc_request_free(r);
}

/* ---- the client's name ---- */

/* A PTR name the client may have (dns_result_reverse_name_usable()), warning as Postfix
 * does about an address in a PTR record. */
static bool conn_peer_name_usable(const char *name)
{
	bool numeric;
	bool usable = dns_result_reverse_name_usable(name, &numeric);
	if (numeric)
		mx_log(MX_LOG_WARNING, "numeric hostname: %s", name);
	return usable;
}

/* Ask for the client's reverse name. */
void conn_peer_lookup(struct conn *c)
{
	struct svc_request *r = svc_request_new(SVC_DNS);
	if (r && dns_name_reverse(&c->addr, r->u.dns.name, sizeof(r->u.dns.name)) == 0) {
		r->u.dns.type = DNS_TYPE_PTR;
		if (conn_wait_submit(c, r, CONN_WAIT_PEER_PTR, CONN_PEER_LOOKUP_TIMEOUT_MS))
			return;
		r = NULL; /* freed */
	}
	svc_request_free(r);
	/* the resolver cannot be asked: as getnameinfo() failing for lack of resources */
	c->name_status = c->reverse_name_status = CONN_PEER_TEMP;
	conn_greet_now(c);
}

static void conn_peer_set_name(struct conn *c, const char *name)
{
	free(c->name);
	c->name = name ? strdup(name) : NULL;
	conn_set_client(c, c->name, c->addr_str);
	smtp_session_set_client_name(c->s, c->name);
}

/* The PTR answer: keep the first usable name as the reverse name, and confirm it. */
static void conn_peer_ptr_answer(struct conn *c, const struct dns_result *res)
{
	const char *name = NULL;
	if (res->status == DNS_RESULT_OK && res->nrecords > 0)
		name = dns_result_name(res, &res->records[0]);
	if (!name || !conn_peer_name_usable(name)) {
		c->name_status = c->reverse_name_status =
			res->status == DNS_RESULT_TEMPFAIL ? CONN_PEER_TEMP : CONN_PEER_PERM;
		conn_greet_now(c);
		return;
	}
	free(c->reverse_name);
	c->reverse_name = strdup(name);
	c->reverse_name_status = CONN_PEER_OK;
	struct svc_request *r = svc_request_new(SVC_DNS);
	if (r) {
		r->u.dns.type = c->addr.family == AF_INET6 ? DNS_TYPE_AAAA : DNS_TYPE_A;
		snprintf(r->u.dns.name, sizeof(r->u.dns.name), "%s", name);
		if (conn_wait_submit(c, r, CONN_WAIT_PEER_ADDR, CONN_PEER_LOOKUP_TIMEOUT_MS))
			return;
	}
	mx_log(MX_LOG_WARNING, "hostname %s does not resolve to address %s: %s", name,
	       c->addr_str, dns_result_gai_text(DNS_RESULT_TEMPFAIL));
	c->name_status = CONN_PEER_TEMP;
	conn_greet_now(c);
}

/* The name's addresses: the name is the client's when they include its address. */
static void conn_peer_addr_answer(struct conn *c, const struct dns_result *res)
{
	const char *name = c->reverse_name;
	if (res->status != DNS_RESULT_OK) {
		mx_log(MX_LOG_WARNING, "hostname %s does not resolve to address %s: %s", name,
		       c->addr_str, dns_result_gai_text(res->status));
		c->name_status =
			res->status == DNS_RESULT_TEMPFAIL ? CONN_PEER_TEMP : CONN_PEER_FORGED;
		conn_greet_now(c);
		return;
	}
	size_t n = c->addr.family == AF_INET ? 4 : 16;
	for (unsigned i = 0; i < res->nrecords; i++) {
		struct mx_inet_addr a = mx_inet_unmap(&res->records[i].addr);
		if (a.family == c->addr.family && memcmp(a.bytes, c->addr.bytes, n) == 0) {
			c->name_status = CONN_PEER_OK;
			conn_peer_set_name(c, name);
			conn_greet_now(c);
			return;
		}
	}
	mx_log(MX_LOG_WARNING, "hostname %s does not resolve to address %s", name, c->addr_str);
	c->name_status = CONN_PEER_FORGED;
	conn_greet_now(c);
}

void *conn_service_answer(struct svc_request *r)
{
	const enum conn_op_kind *kind = r->owner;
	if (kind && *kind == CONN_OP_SCREEN)
		return conn_screen_answer(r);
	struct conn_op *op = r->owner;
	struct conn *c = op ? op->c : NULL;
	uint64_t asked_us = op ? op->asked_us : 0;
	free(op);
	if (!c) {
		svc_request_free(r);
		return NULL;
	}
	/* how long the service took to answer, as this worker saw it (metrics) */
	if (r->kind == SVC_DNS || r->kind == SVC_POLICY) {
		uint64_t now = mx_clock_wall_us();
		mx_latency_observe(&c->w->metrics.lat[r->kind == SVC_DNS ? MX_LAT_DNS
									 : MX_LAT_POLICY],
				   now > asked_us ? now - asked_us : 0);
	}
	enum conn_wait why = c->wait;
	c->op = NULL;
	c->wait = CONN_WAIT_NONE;
	/* a service answers every DNS request with a result; out of memory it may not */
	struct dns_result tempfail = { .status = DNS_RESULT_TEMPFAIL };
	const struct dns_result *res = r->kind == SVC_DNS && r->u.dns.result ? r->u.dns.result
									     : &tempfail;
	switch (why) {
	case CONN_WAIT_PEER_PTR:
		conn_peer_ptr_answer(c, res);
		break;
	case CONN_WAIT_PEER_ADDR:
		conn_peer_addr_answer(c, res);
		break;
	case CONN_WAIT_LOOKUP:
		conn_check_answer(c, r); /* takes the answer into its memo */
		break;
	case CONN_WAIT_SASL:
		conn_auth_answer(c, r);
		break;
	case CONN_WAIT_NONE:
	case CONN_WAIT_MAX:
		break;
	}
	svc_request_free(r);
	return c->owner;
}
