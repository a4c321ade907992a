/* The restriction lists of a command, and the answers they wait for.
 *
 * A command's handler fills c->check (which command, its stage and what it needs after
 * the verdict) and calls conn_check_start(). The evaluator (smtp/smtp_restrictions.h)
 * asks for DNS answers and policy server replies through the lookup callbacks here: an
 * answer at hand comes from the connection's memo; one that is not is asked of its
 * service (dataplane/svc/) and the evaluation returns PENDING. The connection then waits
 * (conn_waiting()); the engine holds the command's reply and everything pipelined after
 * it. When the answer comes (conn_check_answer()) it goes into the memo and the check runs
 * again with the same request: the evaluator replays the stage, answering every question
 * asked so far from the memo, and goes past the item that waited. When a run ends with a
 * decision the memo is dropped and the command's own code finishes it
 * (conn_check_decided()). */
#include "dataplane/session/conn_internal.h"

#include "smtp/smtp_delegation.h"

#define CONN_MEMO_MAX SMTP_POLICY_LOOKUPS_MAX
/* What a policy query may take beyond its tries (a margin for the service's queue). */
#define CONN_POLICY_MARGIN_MS 5000
/* What a greylist answer may take: the service reads and writes the state store (an
 * LMDB commit, or memcached round trips) within it, else the default action applies. */
#define CONN_GREYLIST_TIMEOUT_MS 10000
/* What a DNS lookup may take before the check goes on without it (the resolver answers
 * sooner: its own timeouts and attempts; this bounds a stuck service). */
#define CONN_DNS_TIMEOUT_MS 60000

struct conn_memo_entry {
	enum svc_kind kind;
	enum dns_type type;          /* SVC_DNS */
	unsigned service;            /* SVC_POLICY: the service's index in the policy */
	/* SVC_POLICY and SVC_GREYLIST answer alike (u.policy's action) */
	char *key;                   /* the name, or the request bytes */
	size_t keylen;
	bool answered;
	struct dns_result *result;   /* SVC_DNS */
	int status;                  /* SVC_POLICY: 0, or the failure */
	char *action;                /* SVC_POLICY, status 0 */
};

struct conn_memo {
	unsigned n;
	struct conn_memo_entry e[CONN_MEMO_MAX];
};

static void conn_memo_free(struct conn *c)
{
	struct conn_memo *m = c->memo;
	if (!m)
		return;
	for (unsigned i = 0; i < m->n; i++) {
		free(m->e[i].key);
		dns_result_put(m->e[i].result);
		free(m->e[i].action);
	}
	free(m);
	c->memo = NULL;
}

static struct conn_memo_entry *conn_memo_find(struct conn *c, enum svc_kind kind,
					      enum dns_type type, unsigned service,
					      const char *key, size_t keylen)
{
	struct conn_memo *m = c->memo;
	for (unsigned i = 0; m && i < m->n; i++) {
		struct conn_memo_entry *e = &m->e[i];
		if (e->kind == kind && e->type == type && e->service == service &&
		    e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			return e;
	}
	return NULL;
}

/* A new entry, unanswered; NULL when the memo is full or out of memory. */
static struct conn_memo_entry *conn_memo_add(struct conn *c, enum svc_kind kind,
					     enum dns_type type, unsigned service,
					     const char *key, size_t keylen)
{
	if (!c->memo && !(c->memo = calloc(1, sizeof(*c->memo))))
		return NULL;
	struct conn_memo *m = c->memo;
	if (m->n == CONN_MEMO_MAX)
		return NULL;
	char *k = malloc(keylen + 1);
	if (!k)
		return NULL;
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	struct conn_memo_entry *e = &m->e[m->n++];
	*e = (struct conn_memo_entry){ .kind = kind, .type = type, .service = service, .key = k,
				       .keylen = keylen };
	return e;
}

/* ---- the evaluator's lookups ---- */

static int conn_lookup_dns(void *ctx, enum dns_type type, const char *name,
			   const struct dns_result **out)
{
	struct conn *c = ctx;
	size_t len = strlen(name);
	struct conn_memo_entry *e = conn_memo_find(c, SVC_DNS, type, 0, name, len);
	if (e && e->answered) {
		*out = e->result;
		return 1;
	}
	if (e || c->op)
		return -EBUSY; /* asked and not answered: the evaluator asks one at a time */
	if (!(e = conn_memo_add(c, SVC_DNS, type, 0, name, len)))
		return -ENOMEM;
	struct svc_request *r = svc_request_new(SVC_DNS);
	if (r && len < sizeof(r->u.dns.name)) {
		r->u.dns.type = type;
		memcpy(r->u.dns.name, name, len + 1);
		if (conn_wait_submit(c, r, CONN_WAIT_LOOKUP, CONN_DNS_TIMEOUT_MS))
			return 0;
		r = NULL; /* freed */
	}
	svc_request_free(r);
	/* the resolver could not be asked: a temporary failure, remembered for the replay */
	e->answered = true;
	e->result = dns_result_tempfail(type, "the resolver service is not available");
	if (!e->result)
		return -ENOMEM;
	*out = e->result;
	return 1;
}

static int conn_lookup_policy(void *ctx, const struct smtp_policy_service *svc,
			      const char *request, size_t len, const char **action)
{
	struct conn *c = ctx;
	struct conn_memo_entry *e = conn_memo_find(c, SVC_POLICY, 0, svc->index, request, len);
	if (e && e->answered) {
		if (e->status < 0)
			return e->status;
		*action = e->action;
		return 1;
	}
	if (e || c->op)
		return -EBUSY;
	if (!(e = conn_memo_add(c, SVC_POLICY, 0, svc->index, request, len)))
		return -ENOMEM;
	struct svc_request *r = svc_request_new(SVC_POLICY);
	struct svc_policy *q = r ? &r->u.policy : NULL;
	if (q && snprintf(q->endpoint, sizeof(q->endpoint), "%s", svc->endpoint) <
			 (int)sizeof(q->endpoint) &&
	    (q->request = malloc(len))) {
		memcpy(q->request, request, len);
		q->request_len = len;
		q->timeout_ms = svc->timeout * 1000u;
		q->max_idle_ms = svc->max_idle * 1000u;
		q->max_ttl_ms = svc->max_ttl * 1000u;
		q->try_limit = svc->try_limit;
		q->retry_delay_ms = svc->retry_delay * 1000u;
		q->request_limit = svc->request_limit;
		/* every try, the waits between them, and a margin */
		uint64_t tries = svc->try_limit ? svc->try_limit : 1;
		uint64_t deadline = tries * svc->timeout * 1000u +
				    (tries - 1) * svc->retry_delay * 1000u + CONN_POLICY_MARGIN_MS;
		if (conn_wait_submit(c, r, CONN_WAIT_LOOKUP, deadline))
			return 0;
		r = NULL; /* freed */
	}
	svc_request_free(r);
	e->answered = true;
	e->status = -ENOSYS;
	return e->status;
}

/* check_greylist's question: as a policy query, of the greylist service. */
static int conn_lookup_greylist(void *ctx, const char *request, size_t len,
				const char **action)
{
	struct conn *c = ctx;
	struct conn_memo_entry *e = conn_memo_find(c, SVC_GREYLIST, 0, 0, request, len);
	if (e && e->answered) {
		if (e->status < 0)
			return e->status;
		*action = e->action;
		return 1;
	}
	if (e || c->op)
		return -EBUSY;
	if (!(e = conn_memo_add(c, SVC_GREYLIST, 0, 0, request, len)))
		return -ENOMEM;
	struct svc_request *r = svc_request_new(SVC_GREYLIST);
	if (r && (r->u.policy.request = malloc(len))) {
		memcpy(r->u.policy.request, request, len);
		r->u.policy.request_len = len;
		if (conn_wait_submit(c, r, CONN_WAIT_LOOKUP, CONN_GREYLIST_TIMEOUT_MS))
			return 0;
		r = NULL; /* freed */
	}
	svc_request_free(r);
	e->answered = true;
	e->status = -ENOSYS;
	return e->status;
}

/* The answer to the question in flight: into the memo. */
static void conn_check_remember(struct conn *c, struct svc_request *r)
{
	struct conn_memo *m = c->memo;
	for (unsigned i = 0; m && i < m->n; i++) {
		struct conn_memo_entry *e = &m->e[i];
		if (e->answered || e->kind != r->kind)
			continue;
		e->answered = true;
		if (r->kind == SVC_DNS) {
			e->result = r->u.dns.result; /* the request's reference, taken over */
			r->u.dns.result = NULL;
			if (!e->result)
				e->result = dns_result_tempfail(e->type, "no answer");
		} else {
			e->status = r->status;
			e->action = r->u.policy.action;
			r->u.policy.action = NULL;
			if (e->status == 0 && !e->action)
				e->status = -ENOMEM;
		}
		return;
	}
}

/* ---- events ---- */

/* What the restriction lists want logged (warn_if_reject, WARN, INFO, HOLD...), and
 * Postfix's warnings ("warning" events: its msg_warn() lines). */
static void conn_check_event(void *ctx, const char *kind, const char *text)
{
	struct conn *c = ctx;
	if (strcmp(kind, "warning") == 0) {
		/* A blocklist's error codes come with every lookup while it refuses us: one line
		 * per worker and ten seconds is enough to see it. */
		if (strncmp(text, "RBL error code:", 15) == 0) {
			uint64_t now = mx_clock_monotonic_ms();
			if (c->w->rbl_warned_ms && now - c->w->rbl_warned_ms < 10000)
				return;
			c->w->rbl_warned_ms = now;
		}
		char shown[700];
		mx_log(MX_LOG_WARNING, "%s", conn_printable_str(text, shown, sizeof(shown)));
		return;
	}
	/* "hangup" too: Postfix's log_whatsup() line; the verdict then drops the connection
	 * without a reply (conn_hangup()) */
	conn_log_action(c, kind, c->check.cmd, text, c->check.rcpt);
}

/* ---- running a check ---- */

static enum smtp_policy_name_status conn_name_status(enum conn_peer_status s)
{
	switch (s) {
	case CONN_PEER_OK:
		return SMTP_POLICY_NAME_OK;
	case CONN_PEER_TEMP:
		return SMTP_POLICY_NAME_TEMP;
	case CONN_PEER_FORGED:
		return SMTP_POLICY_NAME_FORGED;
	default:
		return SMTP_POLICY_NAME_PERM;
	}
}

/* The evaluator's memory between commands (defer_if_permit with smtpd_delay_reject =
 * no) and of a check that waits for an answer: taken for a check, and given back when it
 * holds nothing after one (all zero is what a new one is), so an idle connection holds
 * none. */
static void conn_policy_session_trim(struct conn *c)
{
	static const struct smtp_policy_session none;
	if (c->policy_session && memcmp(c->policy_session, &none, sizeof(none)) == 0) {
		free(c->policy_session);
		c->policy_session = NULL;
	}
}

/* Run (or run again) the check in c->check. */
static void conn_check_run(struct conn *c)
{
	struct conn_check *k = &c->check;
	if (!c->policy_session)
		c->policy_session = calloc(1, sizeof(*c->policy_session)); /* NULL: -ENOMEM below */
	char instance[32];
	snprintf(instance, sizeof(instance), "%" PRIx64 ".%" PRIx64, c->started_us,
		 c->transactions);
	char server_addr[INET6_ADDRSTRLEN];
	mx_inet_format(&c->server, server_addr, sizeof(server_addr));
	struct smtp_policy_request req = {
		.stage = k->stage,
		.client_addr = c->addr_str,
		.client_name = c->name ? c->name : "unknown",
		.reverse_name = c->reverse_name ? c->reverse_name : "unknown",
		.helo = c->helo,
		.sender = c->sender,
		.recipient = k->rcpt,
		.protocol = smtp_session_protocol(c->s),
		.recipient_count = c->nrcpt,
		.unauth_pipelining = k->unauth_pipelining,
		.tls = c->tls && c->tls_protocol,
		.ccert = c->tls_peer ? &c->tls_peer->ccert : NULL,
		.now = mx_clock_wall_s(),
		.session = c->policy_session,
		.client_name_status = conn_name_status(c->name_status),
		.reverse_name_status = conn_name_status(c->reverse_name_status),
		.server_addr = server_addr[0] ? server_addr : NULL,
		.server_port = c->server_port,
		.client_port = c->port,
		.queue_id = c->queue_id[0] ? c->queue_id : NULL,
		.instance = c->sender ? instance : NULL,
		.size = k->stage == SMTP_STAGE_END_OF_DATA && c->msg ? spool_msg_size(c->msg)
								    : c->mail_size,
		.sasl_username = c->sasl_username,
		.sasl_method = c->sasl_method,
		.sasl_sender = c->sasl_sender,
	};
	/* over TLS, policy servers are told the protocol and cipher */
	struct smtp_delegation_request attrs;
	if (c->tls) {
		conn_tls_policy_attrs(c, &attrs);
		req.policy_attrs = &attrs;
	}
	static const struct smtp_policy_lookups lookups = {
		.dns = conn_lookup_dns,
		.policy = conn_lookup_policy,
		.greylist = conn_lookup_greylist,
	};
	struct smtp_policy_lookups lk = lookups;
	lk.ctx = c;
	struct smtp_policy_callbacks cb = { .event = conn_check_event, .ctx = c };
	if (c->w->svc)
		cb.lookups = &lk;
	struct smtp_policy_result res;
	int rc = -ENOMEM;
	if (c->policy_session)
		rc = smtp_policy_check(c->policy, &req, c->actions, &cb, &res);
	if (rc == 0 && res.decision == SMTP_POLICY_PENDING) {
		if (c->op)
			return; /* its answer resumes us (conn_check_answer()) */
		/* pending with nothing asked: a bug; refuse rather than hang */
		rc = -EPROTO;
	}
	conn_memo_free(c);
	conn_policy_session_trim(c);
	if (rc < 0) {
		/* A request the evaluator cannot take is our bug, not the client's: refuse it
		 * the way a broken table is refused, never let it pass. */
		mx_log(MX_LOG_WARNING, "%s: policy evaluation failed for %s: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", k->cmd, strerror(-rc));
		res = (struct smtp_policy_result){ .decision = SMTP_POLICY_DEFER, .code = 451 };
		snprintf(res.text, sizeof(res.text), "4.3.5 Server configuration error");
	}
	if (res.decision != SMTP_POLICY_ACCEPT && !res.hangup) {
		char reply[SMTP_POLICY_TEXT_MAX + 8];
		snprintf(reply, sizeof(reply), "%u %s", res.code, res.text);
		conn_log_reject(c, k->cmd, reply, k->rcpt);
	}
	enum conn_at at = k->at;
	k->at = CONN_AT_NONE;
	uint64_t now_us = mx_clock_wall_us();
	mx_latency_observe(&c->w->metrics.lat[MX_LAT_RESTRICTIONS],
			   now_us > k->started_us ? now_us - k->started_us : 0);
	conn_check_decided(c, at, &res);
	free(k->rcpt);
	free(k->rcpt_params);
	k->rcpt = k->rcpt_params = NULL;
}

void conn_check_decided(struct conn *c, enum conn_at at, const struct smtp_policy_result *res)
{
	switch (at) {
	case CONN_AT_GREET:
		conn_greet_decided(c, res);
		break;
	case CONN_AT_HELO:
		conn_helo_decided(c, res);
		break;
	case CONN_AT_XCLIENT:
		conn_xclient_decided(c, res);
		break;
	case CONN_AT_MAIL:
		conn_mail_decided(c, res);
		break;
	case CONN_AT_RCPT:
		conn_rcpt_decided(c, res);
		break;
	case CONN_AT_DATA:
		conn_data_decided(c, res);
		break;
	case CONN_AT_END:
		conn_end_decided(c, res);
		break;
	case CONN_AT_NONE:
	case CONN_AT_MAX:
		assert(!"a check without a command");
		break;
	}
}

void conn_check_start(struct conn *c)
{
	assert(c->check.at != CONN_AT_NONE && !c->op);
	c->check.started_us = mx_clock_wall_us();
	conn_check_run(c);
}

void conn_check_answer(struct conn *c, struct svc_request *r)
{
	conn_check_remember(c, r);
	if (c->check.at == CONN_AT_NONE || smtp_session_closed(c->s)) {
		/* the session ended while we waited (timeout, stop, lost client) */
		conn_check_abandon(c);
		return;
	}
	conn_check_run(c);
}

void conn_check_abandon(struct conn *c)
{
	conn_memo_free(c);
	free(c->check.rcpt);
	free(c->check.rcpt_params);
	c->check = (struct conn_check){ .at = CONN_AT_NONE };
}

void conn_policy_verdict(struct conn *c, const struct smtp_policy_result *res)
{
	if (res->hangup)
		conn_hangup(c);
	conn_verdict(c, res->code, res->text, res->disconnect || res->hangup);
}
