/* check_policy_service (SMTPD_POLICY_README; Postfix 3.7 smtpd_check.c
 * policy_client_register() and check_policy_service()): the service of each
 * check_policy_service argument with its limits, "inet:host:port" or "unix:path", or
 * Postfix 3.0+'s per-item form
 *     { inet:127.0.0.1:9998, timeout=10s, { default_action = DEFER_IF_PERMIT busy } }
 * over the smtpd_policy_service_* parameters; and the query: the request encoded with the
 * delegation codec (smtp/smtp_delegation.h: Postfix 3.7's attributes, in its order) from
 * what the evaluation knows at this stage, sent through the caller's lookups callback (the
 * service thread does the I/O), and the reply's action applied as an access(5) value by
 * check_table_result() (smtp_policy_table_result()), or, when the query failed, the
 * service's default_action applied the same way. Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_delegation.h"
#include "smtp/smtp_restrictions_internal.h"

/* What Postfix applies when the default action itself needs a policy query that fails
 * (DEF_SMTPD_POLICY_DEF_ACTION). */
#define POLICY_DEF_ACTION "451 4.3.5 Server configuration problem"

/* ---------------------------------------------------------------------------------------
 * The services */

static void psvc_free(struct psvc *v)
{
	free(v->name);
	free(v->endpoint);
	free(v->default_action);
	free(v->policy_context);
}

void smtp_policy_services_free(struct smtp_policy *p)
{
	for (size_t i = 0; i < p->nservices; i++)
		psvc_free(&p->services[i]);
	free(p->services);
	p->services = NULL;
	p->nservices = 0;
	psvc_free(&p->svc_defaults);
	memset(&p->svc_defaults, 0, sizeof(p->svc_defaults));
}

/* Point v->s's strings at v's own copies. */
static int psvc_own(struct psvc *v, const char *name, const char *endpoint,
		    const char *default_action, const char *policy_context)
{
	v->name = name ? strdup(name) : NULL;
	v->endpoint = endpoint ? strdup(endpoint) : NULL;
	v->default_action = strdup(default_action ? default_action : POLICY_DEF_ACTION);
	v->policy_context = strdup(policy_context ? policy_context : "");
	if ((name && !v->name) || (endpoint && !v->endpoint) || !v->default_action ||
	    !v->policy_context) {
		psvc_free(v);
		return -ENOMEM;
	}
	v->s.name = v->name;
	v->s.endpoint = v->endpoint;
	v->s.default_action = v->default_action;
	v->s.policy_context = v->policy_context;
	return 0;
}

int smtp_policy_service_set_defaults(struct smtp_policy *p,
				     const struct smtp_policy_service *d)
{
	psvc_free(&p->svc_defaults);
	p->svc_defaults.s = *d;
	return psvc_own(&p->svc_defaults, NULL, NULL, d->default_action, d->policy_context);
}

/* Postfix's conv_time() with unit 's': digits and at most one of s m h d w. */
static bool parse_time(const char *v, unsigned *out)
{
	char *end;
	if (!mx_ctype_is_digit(*v))
		return false;
	unsigned long n = strtoul(v, &end, 10);
	unsigned long mul = 1;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	case 'w':
		mul = 604800;
		break;
	default:
		return false;
	}
	if (*end && end[1])
		return false;
	if (n > INT_MAX / mul)
		return false;
	*out = (unsigned)(n * mul);
	return true;
}

static bool parse_int(const char *v, unsigned *out)
{
	char *end;
	if (!mx_ctype_is_digit(*v))
		return false;
	unsigned long n = strtoul(v, &end, 10);
	if (*end || n > INT_MAX)
		return false;
	*out = (unsigned)n;
	return true;
}

/* The string overrides of one service until they are copied. */
struct svc_strs {
	char default_action[TABLE_NAME_MAX + 300];
	char policy_context[TABLE_NAME_MAX + 300];
	bool have_default_action, have_policy_context;
};

/* One "name=value" override (attr_override() with Postfix's time, int and str tables);
 * nv is modified. Returns 0, or -EINVAL with err. */
static int service_option(struct psvc *v, char *nv, struct svc_strs *ss, char *err,
			  size_t errlen)
{
	/* split_nameval(): "name = value", blanks around both */
	char *np = nv;
	while (mx_ctype_is_space(*np))
		np++;
	if (!*np || *np == '=') {
		snprintf(err, errlen, "malformed option: missing attribute name: \"...%.200s...\"", nv);
		return -EINVAL;
	}
	char *ep = np;
	while (*ep && !mx_ctype_is_space(*ep) && *ep != '=')
		ep++;
	char *cp = ep;
	while (mx_ctype_is_space(*cp))
		cp++;
	if (*cp != '=') {
		snprintf(err, errlen, "malformed option: missing '=' after attribute name: \"...%.200s...\"",
			 nv);
		return -EINVAL;
	}
	*ep = '\0';
	char *val = cp + 1;
	while (mx_ctype_is_space(*val))
		val++;
	size_t vl = strlen(val);
	while (vl && mx_ctype_is_space(val[vl - 1]))
		val[--vl] = '\0';

	static const struct {
		const char *name;
		char kind; /* t time, i int, s string */
		unsigned min;
		size_t off;
	} opts[] = {
		{ "timeout", 't', 1, offsetof(struct smtp_policy_service, timeout) },
		{ "max_idle", 't', 1, offsetof(struct smtp_policy_service, max_idle) },
		{ "max_ttl", 't', 1, offsetof(struct smtp_policy_service, max_ttl) },
		{ "retry_delay", 't', 1, offsetof(struct smtp_policy_service, retry_delay) },
		{ "request_limit", 'i', 0, offsetof(struct smtp_policy_service, request_limit) },
		{ "try_limit", 'i', 1, offsetof(struct smtp_policy_service, try_limit) },
		{ "default_action", 's', 1, 0 },
		{ "policy_context", 's', 1, 0 },
	};
	for (size_t i = 0; i < COUNT(opts); i++) {
		if (strcmp(opts[i].name, np) != 0)
			continue;
		if (opts[i].kind == 's') {
			if (vl < opts[i].min) {
				snprintf(err, errlen, "bad string length %zu < %u: %.200s = %.200s", vl,
					 opts[i].min, np, val);
				return -EINVAL;
			}
			if (i == 6) {
				smtp_policy_scopy(ss->default_action, sizeof(ss->default_action), val);
				ss->have_default_action = true;
			} else {
				smtp_policy_scopy(ss->policy_context, sizeof(ss->policy_context), val);
				ss->have_policy_context = true;
			}
			return 0;
		}
		unsigned n;
		bool ok = opts[i].kind == 't' ? parse_time(val, &n) : parse_int(val, &n);
		if (!ok) {
			snprintf(err, errlen, opts[i].kind == 't' ? "%.200s: bad time value or unit: %.200s"
								 : "bad numerical configuration: %.200s = %.200s",
				 np, val);
			return -EINVAL;
		}
		if (n < opts[i].min) {
			snprintf(err, errlen, "invalid %.200s parameter value %u < %u", np, n,
				 opts[i].min);
			return -EINVAL;
		}
		memcpy((char *)&v->s + opts[i].off, &n, sizeof(n));
		return 0;
	}
	snprintf(err, errlen, "unknown option: \"%.200s = %.200s\"", np, val);
	return -EINVAL;
}

/* "inet:host:port", "unix:path" (or Postfix's "local:path", the same). */
static bool endpoint_valid(const char *ep)
{
	if (strncmp(ep, "inet:", 5) == 0) {
		const char *hp = ep + 5;
		const char *colon = strrchr(hp, ':');
		if (!colon || colon == hp || !colon[1])
			return false;
		if (hp[0] == '[' && colon[-1] != ']')
			return false;
		return true;
	}
	if (strncmp(ep, "unix:", 5) == 0 || strncmp(ep, "local:", 6) == 0)
		return ep[ep[0] == 'u' ? 5 : 6] != '\0';
	return false;
}

int smtp_policy_service_add(struct smtp_policy *p, const char *param, const char *token,
			    bool compile, char *err, size_t errlen)
{
	for (size_t i = 0; i < p->nservices; i++)
		if (strcmp(p->services[i].s.name, token) == 0)
			return (int)i;
	if (!compile)
		return -EINVAL; /* an access value cannot add one (Postfix: msg_panic) */
	if (!strchr(token, ':')) {
		snprintf(err, errlen, "%s: check_policy_service must be followed by transport:server, not \"%s\"",
			 param, token);
		return -EINVAL;
	}
	char buf[TABLE_NAME_MAX + 300], why[SMTP_POLICY_TEXT_MAX];
	size_t tl = strlen(token);
	if (tl >= sizeof(buf)) {
		snprintf(err, errlen, "%s: check_policy_service: argument too long", param);
		return -EINVAL;
	}
	struct psvc v = { 0 };
	v.s = p->svc_defaults.s;
	struct svc_strs *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	char endpoint[TABLE_NAME_MAX + 300];
	int rc = -EINVAL;
	if (token[0] == '{') {
		/* { endpoint, name=value, { name = value with blanks }, ... } */
		if (!smtp_policy_token_copy(buf, sizeof(buf), token, tl) || token[tl - 1] != '}') {
			snprintf(err, errlen, "%s: policy service syntax error: %s", param, token);
			goto out;
		}
		const char *cur = buf, *ts;
		long tn = mx_list_next_braced(&cur, &ts);
		if (tn <= 0 || ts[0] == '{') {
			snprintf(err, errlen, "%s: empty policy service: \"%s\"", param, token);
			goto out;
		}
		memcpy(endpoint, ts, (size_t)tn);
		endpoint[tn] = '\0';
		char opt[TABLE_NAME_MAX + 300];
		while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
			/* "name=value", or "{ name = value }" for a value with blanks */
			if (tn < 0 || !smtp_policy_token_copy(opt, sizeof(opt), ts, (size_t)tn)) {
				snprintf(err, errlen, "%s: policy service syntax error: %s", param, token);
				goto out;
			}
			if (service_option(&v, opt, ss, why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s: check_policy_service %s: %s", param, token, why);
				goto out;
			}
		}
	} else {
		smtp_policy_scopy(endpoint, sizeof(endpoint), token);
	}
	if (!endpoint_valid(endpoint)) {
		snprintf(err, errlen, "%s: check_policy_service: unsupported policy service \"%s\" "
				      "(want inet:host:port or unix:/path)",
			 param, endpoint);
		goto out;
	}
	struct psvc *nv = realloc(p->services, (p->nservices + 1) * sizeof(*nv));
	rc = -ENOMEM;
	if (!nv)
		goto out;
	p->services = nv;
	v.s.index = (unsigned)p->nservices;
	if (psvc_own(&v, token, endpoint,
		     ss->have_default_action ? ss->default_action : p->svc_defaults.default_action,
		     ss->have_policy_context ? ss->policy_context : p->svc_defaults.policy_context) <
	    0)
		goto out;
	nv[p->nservices] = v;
	rc = (int)p->nservices++;
out:
	free(ss);
	return rc;
}

/* ---------------------------------------------------------------------------------------
 * The query */

static enum smtp_delegation_state policy_state(const struct smtp_policy_request *q)
{
	switch (q->stage) {
	case SMTP_STAGE_CONNECT:
		return SMTP_DELEGATION_CONNECT;
	case SMTP_STAGE_HELO:
		/* state->where is the command: EHLO when the protocol became ESMTP */
		return q->protocol && (q->protocol[0] == 'E' || q->protocol[0] == 'e')
			       ? SMTP_DELEGATION_EHLO
			       : SMTP_DELEGATION_HELO;
	case SMTP_STAGE_MAIL:
		return SMTP_DELEGATION_MAIL;
	case SMTP_STAGE_RCPT:
		return SMTP_DELEGATION_RCPT;
	case SMTP_STAGE_DATA:
		return SMTP_DELEGATION_DATA;
	default:
		return SMTP_DELEGATION_END_OF_MESSAGE;
	}
}

/* The request for service v in ctx->reqbuf. Returns its length, or a negative errno. */
static long policy_request(struct ev *e, const struct psvc *v)
{
	const struct smtp_policy_request *q = e->req;
	struct smtp_delegation_request r;
	if (q->policy_attrs)
		r = *q->policy_attrs;
	else
		smtp_delegation_request_init(&r);
	r.protocol_state = policy_state(q);
	r.protocol_name = q->protocol;
	r.client_address = q->client_addr;
	r.client_name = q->client_name;
	r.client_port = q->client_port ? q->client_port : -1;
	r.reverse_client_name = q->reverse_name;
	r.server_address = q->server_addr;
	r.server_port = q->server_port ? q->server_port : -1;
	r.helo_name = e->helo;
	r.sender = e->sender;
	r.recipient = e->recipient;
	r.recipient_count = q->recipient_count;
	r.queue_id = q->queue_id;
	r.instance = q->instance;
	r.size = q->size;
	r.policy_context = v->s.policy_context;
	if (q->sasl_username) {
		r.sasl_method = q->sasl_method;
		r.sasl_username = q->sasl_username;
	}
	if (q->sasl_sender)
		r.sasl_sender = q->sasl_sender;
	struct smtp_policy_ctx *c = e->ctx;
	size_t len = 0;
	int rc = smtp_delegation_request_encode(&r, c->reqbuf, c->reqcap, &len);
	if (rc == -ENOSPC) {
		char *nb = realloc(c->reqbuf, len + 1);
		if (!nb)
			return -ENOMEM;
		c->reqbuf = nb;
		c->reqcap = len + 1;
		rc = smtp_delegation_request_encode(&r, c->reqbuf, c->reqcap, &len);
	}
	return rc < 0 ? rc : (long)len;
}

/* Apply an access(5) value that came from (or instead of) the service. */
static int policy_apply(struct ev *e, const struct psvc *v, const char *action,
			const char *rn, const char *rc, int def_acl)
{
	/* the value lives at this level's buffer, as an access table's does */
	char *value = e->ctx->vbuf[e->recursion < EVAL_DEPTH_MAX ? e->recursion : EVAL_DEPTH_MAX];
	smtp_policy_scopy(value, TABLE_VALUE_MAX + 1, action);
	return smtp_policy_table_result(e, v->s.name, value, "policy query", rn, rc, def_acl);
}

int smtp_policy_service_check(struct ev *e, uint32_t si, const char *rn, const char *rc,
			      int def_acl)
{
	const struct psvc *v = &e->p->services[si];
	const struct smtp_policy_lookups *lk = e->cb->lookups;
	long len = policy_request(e, v);
	const char *action = NULL;
	int got = -1;
	if (len < 0) {
		/* a value the protocol cannot carry (a line break): a failed query */
		smtp_policy_warn(e, "policy service %s: cannot send the request: %s", v->s.name,
				 strerror((int)-len));
	} else {
		uint32_t key = smtp_policy_hash(smtp_policy_hash(2166136261u, &si, sizeof(si)),
						e->ctx->reqbuf, (size_t)len);
		uint32_t seq = smtp_policy_question(e, key);
		e->ctx->stats.policy_asked++;
		got = lk && lk->policy ? lk->policy(lk->ctx, &v->s, e->ctx->reqbuf, (size_t)len,
						    &action)
				       : -ENOSYS;
		if (got == 0) {
			smtp_policy_question_pending(e, seq, key);
			return ST_PENDING;
		}
	}
	if (got > 0 && action) {
		snprintf(e->detail, sizeof(e->detail), "%s: action=%s", v->s.endpoint, action);
		smtp_policy_printable(e->detail);
		return policy_apply(e, v, action, rn, rc, def_acl);
	}
	/* A failed query: the default action, evaluated like a reply; should it ask a
	 * policy service that fails too, Postfix's built-in default applies there. */
	e->policy_nesting++;
	const char *def = e->policy_nesting == 1 ? v->s.default_action : POLICY_DEF_ACTION;
	snprintf(e->detail, sizeof(e->detail), "%s: query failed; default_action %s", v->s.endpoint,
		 def);
	smtp_policy_printable(e->detail);
	int st = policy_apply(e, v, def, rn, rc, def_acl);
	e->policy_nesting--;
	return st;
}
