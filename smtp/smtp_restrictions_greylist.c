/* check_greylist: greylisting built in, answering as postgrey 1.37 answers Postfix's
 * check_policy_service (tables/greylist.h has its rules). The static allowlists are
 * matched here, on the worker, as postgrey matches them first (a client name, its
 * address, the recipient: DUNNO at once, no question asked); everything else is one
 * question to the caller's greylist lookup (the greylist service reads and writes the
 * state store), carrying the keys and every parameter, so a reload applies to the next
 * question. Its answer is what postgrey would have answered and is applied as a policy
 * server's reply (check_table_result()): DEFER_IF_PERMIT with postgrey's text (Postfix
 * then sends "450 4.2.0 <rcpt>: Recipient address rejected: Greylisted, see ..."),
 * PREPEND X-Greylist: ..., or DUNNO. When it cannot be asked, the greylist's default
 * action applies, as smtpd_policy_service_default_action does for a policy server.
 * Part of the evaluator split across smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions_internal.h"

/* What applies when the default action itself cannot be applied (Postfix's
 * DEF_SMTPD_POLICY_DEF_ACTION). */
#define GREYLIST_DEF_ACTION "451 4.3.5 Server configuration problem"
#define GREYLIST_NAME "check_greylist"

void smtp_greylist_config_defaults(struct smtp_greylist_config *g)
{
	memset(g, 0, sizeof(*g));
	greylist_params_init(&g->params);
	g->ipv4_prefix = 24;
	g->ipv6_prefix = 64;
	g->action = "DEFER_IF_PERMIT";
	g->text = GREYLIST_DEFAULT_TEXT;
	g->header = GREYLIST_POSTGREY_HEADER;
	g->default_action = GREYLIST_DEF_ACTION;
}

void smtp_policy_greylist_free(struct smtp_policy *p)
{
	greylist_allowlist_free(p->greylist.allowlist);
	free(p->gl_map);
	free(p->gl_action);
	free(p->gl_text);
	free(p->gl_header);
	free(p->gl_default_action);
	p->greylist.allowlist = NULL;
	p->gl_map = p->gl_action = p->gl_text = p->gl_header = p->gl_default_action = NULL;
}

static char *dup_or(const char *s, const char *def)
{
	return strdup(s ? s : def);
}

int smtp_policy_greylist_set(struct smtp_policy *p, const struct smtp_greylist_config *cfg)
{
	struct smtp_greylist_config d;
	smtp_greylist_config_defaults(&d);
	/* a zeroed config means the defaults */
	const struct smtp_greylist_config *g = cfg->action || cfg->map ? cfg : &d;
	p->greylist = *g;
	p->greylist.allowlist = cfg->allowlist; /* ours now, whatever happens */
	p->gl_map = dup_or(g->map, "");
	p->gl_action = dup_or(g->action, d.action);
	p->gl_text = dup_or(g->text, d.text);
	p->gl_header = dup_or(g->header, "");
	p->gl_default_action = dup_or(g->default_action, d.default_action);
	if (!p->gl_map || !p->gl_action || !p->gl_text || !p->gl_header || !p->gl_default_action)
		return -ENOMEM;
	p->greylist.map = p->gl_map;
	p->greylist.action = p->gl_action;
	p->greylist.text = p->gl_text;
	p->greylist.header = p->gl_header;
	p->greylist.default_action = p->gl_default_action;
	return 0;
}

/* Apply an access(5) value that came from (or instead of) the greylist service. */
static int greylist_apply(struct ev *e, const char *action, const char *rn, const char *rc,
			  int def_acl)
{
	char *value = e->ctx->vbuf[e->recursion < EVAL_DEPTH_MAX ? e->recursion : EVAL_DEPTH_MAX];
	smtp_policy_scopy(value, TABLE_VALUE_MAX + 1, action);
	return smtp_policy_table_result(e, GREYLIST_NAME, value, "greylist query", rn, rc,
					def_acl);
}

/* The question for the greylist service in ctx->reqbuf: its length, or a negative errno. */
static long greylist_request(struct ev *e, const struct mx_inet_addr *a, const char *sender,
			     const char *rcpt)
{
	const struct smtp_greylist_config *g = &e->p->greylist;
	char snorm[SMTP_POLICY_TEXT_MAX * 2], net[64], client[64], key[GREYLIST_KEY_MAX + 1];
	if (greylist_sender_normalize(sender, snorm, sizeof(snorm)) < 0)
		return -EINVAL;
	greylist_client_net(a, g->ipv4_prefix, g->ipv6_prefix, net, sizeof(net));
	greylist_addr_format(a, client, sizeof(client));
	greylist_triplet_key(net, snorm, rcpt, key, sizeof(key));
	struct greylist_request r = {
		.map = g->map,
		.client = client,
		.key = key,
		.recipient = rcpt,
		.instance = e->req->instance ? e->req->instance : "",
		.action = g->action,
		.text = g->text,
		.header = g->header,
		.host = e->p->myhostname,
		.params = g->params,
	};
	struct smtp_policy_ctx *c = e->ctx;
	size_t need = 0;
	long n = greylist_request_encode(&r, c->reqbuf, c->reqcap, &need);
	if (n == -ENOSPC) {
		char *nb = realloc(c->reqbuf, need + 1);
		if (!nb)
			return -ENOMEM;
		c->reqbuf = nb;
		c->reqcap = need + 1;
		n = greylist_request_encode(&r, c->reqbuf, c->reqcap, &need);
	}
	return n;
}

int smtp_policy_greylist_check(struct ev *e, const char *rn, const char *rc, int def_acl)
{
	const struct smtp_greylist_config *g = &e->p->greylist;
	const struct smtp_policy_request *q = e->req;
	/* postgrey's attributes as Postfix sends them: an empty sender or recipient where
	 * the stage has none, "unknown" for a client without a name */
	const char *rcpt = e->recipient ? e->recipient : "";
	const char *sender = e->sender ? e->sender : "";
	const char *name = q->client_name ? q->client_name : "unknown";
	struct mx_inet_addr a;
	if (!q->client_addr || !mx_inet_parse(q->client_addr, &a)) {
		/* postgrey answers DUNNO to what it cannot parse */
		e->note = "DUNNO";
		snprintf(e->detail, sizeof(e->detail), "no client address to greylist");
		return ST_DUNNO;
	}
	a = mx_inet_unmap(&a); /* Postfix gives postgrey an IPv4-mapped client as IPv4 */
	if (g->allowlist && greylist_allowlist_client(g->allowlist, name, &a)) {
		e->note = "DUNNO";
		snprintf(e->detail, sizeof(e->detail), "client allowlist");
		return ST_DUNNO;
	}
	if (g->allowlist && greylist_allowlist_recipient(g->allowlist, rcpt)) {
		e->note = "DUNNO";
		snprintf(e->detail, sizeof(e->detail), "recipient allowlist");
		return ST_DUNNO;
	}
	const struct smtp_policy_lookups *lk = e->cb->lookups;
	const char *action = NULL;
	int got = -1;
	long len = g->map[0] ? greylist_request(e, &a, sender, rcpt) : -ENOENT;
	if (len < 0) {
		smtp_policy_warn(e, "check_greylist: cannot ask the greylist service: %s",
				 len == -ENOENT ? "mxgate_greylist_map is empty"
						: strerror((int)-len));
	} else {
		uint32_t key = smtp_policy_hash(2166136261u ^ 0x67726579u, e->ctx->reqbuf,
						(size_t)len);
		uint32_t seq = smtp_policy_question(e, key);
		e->ctx->stats.greylist_asked++;
		got = lk && lk->greylist ? lk->greylist(lk->ctx, e->ctx->reqbuf, (size_t)len, &action)
					 : -ENOSYS;
		if (got == 0) {
			smtp_policy_question_pending(e, seq, key);
			return ST_PENDING;
		}
	}
	if (got > 0 && action) {
		snprintf(e->detail, sizeof(e->detail), "greylist: action=%s", action);
		smtp_policy_printable(e->detail);
		return greylist_apply(e, action, rn, rc, def_acl);
	}
	/* the service could not answer: the default action, evaluated like an answer; if
	 * it names check_greylist again, Postfix's built-in default applies there */
	e->greylist_nesting++;
	const char *def = e->greylist_nesting == 1 ? g->default_action : GREYLIST_DEF_ACTION;
	snprintf(e->detail, sizeof(e->detail), "greylist query failed; default_action %s", def);
	smtp_policy_printable(e->detail);
	int st = greylist_apply(e, def, rn, rc, def_acl);
	e->greylist_nesting--;
	return st;
}
