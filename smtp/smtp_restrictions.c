/* Postfix's smtpd restriction lists, evaluated as smtpd_check.c evaluates them (Postfix
 * 3.7): generic_checks() per list, check_table_result() per access(5) value,
 * smtpd_check_reject() for every refusal (warn_if_reject, defer_if_reject, soft_bounce,
 * the SMTP/DSN code consistency), and the stage drivers smtpd_check_{client,helo,mail,
 * rcpt,data,eod}. Control flow and reply texts follow that source; the code is ours.
 *
 * Sans-I/O: no logging (events go to the caller), no clock (req->now), no allocation
 * while evaluating (the per-thread context holds the scratch space).
 *
 * This file holds the public API around the compiled policy (names, defaults, the
 * per-thread context), the refusal every check shares, and the buffer of what a run
 * delivers (events and trace lines wait in it until the check completes, so a run that
 * stops to wait for an answer delivers nothing); compiling is in
 * smtp_restrictions_compile.c, evaluating in smtp_restrictions_eval.c, the access(5),
 * DNSBL, DNS and policy service checks in smtp_restrictions_access.c,
 * smtp_restrictions_rbl.c, smtp_restrictions_dns.c and smtp_restrictions_policy.c, all
 * sharing smtp_restrictions_internal.h. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_restrictions_internal.h"
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
		.unknown_client_reject_code = 450,
		.unknown_hostname_reject_code = 450,
		.unknown_address_reject_code = 450,
		.unknown_helo_hostname_tempfail_action = SMTP_POLICY_TEMPFAIL_DEFER_IF_PERMIT,
		.unknown_address_tempfail_action = SMTP_POLICY_TEMPFAIL_DEFER_IF_PERMIT,
	};
}

const char *smtp_policy_tempfail_action_name(enum smtp_policy_tempfail_action a)
{
	static const char *const names[SMTP_POLICY_TEMPFAIL_ACTION_MAX] = {
		[SMTP_POLICY_TEMPFAIL_DEFER_IF_PERMIT] = "defer_if_permit",
		[SMTP_POLICY_TEMPFAIL_DEFER] = "defer",
	};
	return (unsigned)a < SMTP_POLICY_TEMPFAIL_ACTION_MAX ? names[a] : "?";
}

int smtp_policy_tempfail_action_parse(const char *s, enum smtp_policy_tempfail_action *out)
{
	for (int a = 0; a < SMTP_POLICY_TEMPFAIL_ACTION_MAX; a++)
		if (s && strcasecmp(s, smtp_policy_tempfail_action_name(
					       (enum smtp_policy_tempfail_action)a)) == 0) {
			*out = (enum smtp_policy_tempfail_action)a;
			return 0;
		}
	return -EINVAL;
}

const char *smtp_policy_name_status_name(enum smtp_policy_name_status s)
{
	static const char *const names[SMTP_POLICY_NAME_STATUS_MAX] = {
		[SMTP_POLICY_NAME_DEFAULT] = "default", [SMTP_POLICY_NAME_OK] = "ok",
		[SMTP_POLICY_NAME_TEMP] = "temp",       [SMTP_POLICY_NAME_PERM] = "perm",
		[SMTP_POLICY_NAME_FORGED] = "forged",
	};
	return (unsigned)s < SMTP_POLICY_NAME_STATUS_MAX ? names[s] : "?";
}

const char *smtp_policy_decision_name(enum smtp_policy_decision d)
{
	static const char *const names[SMTP_POLICY_DECISION_MAX] = {
		[SMTP_POLICY_ACCEPT] = "accept", [SMTP_POLICY_REJECT] = "reject",
		[SMTP_POLICY_DEFER] = "defer",   [SMTP_POLICY_PENDING] = "pending",
	};
	return (unsigned)d < SMTP_POLICY_DECISION_MAX ? names[d] : "?";
}

void smtp_policy_service_defaults(struct smtp_policy_service *s)
{
	/* postconf -d smtpd_policy_service_* (Postfix 3.7) */
	*s = (struct smtp_policy_service){
		.timeout = 100,
		.max_idle = 300,
		.max_ttl = 1000,
		.retry_delay = 1,
		.try_limit = 2,
		.request_limit = 0,
		.default_action = "451 4.3.5 Server configuration problem",
		.policy_context = "",
	};
}

size_t smtp_policy_service_count(const struct smtp_policy *p)
{
	return p->nservices;
}

const struct smtp_policy_service *smtp_policy_service_get(const struct smtp_policy *p,
							  size_t i)
{
	return i < p->nservices ? &p->services[i].s : NULL;
}

/* ---------------------------------------------------------------------------------------
 * The policy's tables and the per-thread context */

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
	free(ctx->recs);
	free(ctx->reqbuf);
	free(ctx);
}

void smtp_policy_ctx_stats(const struct smtp_policy_ctx *ctx, struct smtp_policy_stats *out)
{
	*out = ctx->stats;
}

size_t smtp_policy_ctx_kept(const struct smtp_policy_ctx *ctx)
{
	return ctx->nrecs;
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
	c->recs = calloc(PREC_EVENTS, sizeof(*c->recs));
	c->caprecs = PREC_EVENTS;
	if (!c->tables || !c->zones || !c->vbuf || !c->vitems || !c->lookup || !c->recs) {
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
	/* Without a table store there is no local zone: every zone is asked in DNS. */
	for (size_t i = 0; rd && i < p->nzones; i++) {
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
 * Refusals and events: what every check shares */

/* The next record of the run's buffer, or NULL when it is full (counted). */
static struct prec *smtp_policy_rec(struct ev *e)
{
	struct smtp_policy_ctx *c = e->ctx;
	if (c->nrecs == c->caprecs) {
		c->dropped++;
		return NULL;
	}
	return &c->recs[c->nrecs++];
}

void smtp_policy_emit(struct ev *e, const char *kind, const char *text)
{
	if (!e->cb || !e->cb->event)
		return;
	if (!e->buffered) {
		e->cb->event(e->cb->ctx, kind, text);
		return;
	}
	struct prec *r = smtp_policy_rec(e);
	if (!r)
		return;
	r->type = PREC_EVENT;
	smtp_policy_scopy(r->kind, sizeof(r->kind), kind);
	smtp_policy_scopy(r->text, sizeof(r->text), text);
}

void smtp_policy_warn(struct ev *e, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	smtp_policy_printable(buf);
	smtp_policy_emit(e, "warning", buf);
}

void smtp_policy_trace(struct ev *e, const char *name, const char *outcome,
		       const char *detail)
{
	if (!e->cb || !e->cb->trace)
		return;
	if (!e->buffered) {
		e->cb->trace(e->cb->ctx, e->list, name, outcome, detail);
		return;
	}
	struct prec *r = smtp_policy_rec(e);
	if (!r)
		return;
	r->type = PREC_TRACE;
	r->list = (uint8_t)e->list;
	smtp_policy_scopy(r->kind, sizeof(r->kind), outcome);
	smtp_policy_scopy(r->name, sizeof(r->name), name);
	smtp_policy_scopy(r->text, sizeof(r->text), detail);
}

void smtp_policy_deliver(struct ev *e, bool deliver)
{
	struct smtp_policy_ctx *c = e->ctx;
	for (unsigned i = 0; deliver && i < c->nrecs; i++) {
		const struct prec *r = &c->recs[i];
		if (r->type == PREC_EVENT)
			e->cb->event(e->cb->ctx, r->kind, r->text);
		else
			e->cb->trace(e->cb->ctx, (enum smtp_restriction_list)r->list, r->name,
				     r->kind, r->text);
	}
	if (deliver && c->dropped) {
		char buf[128];
		snprintf(buf, sizeof(buf),
			 "restriction evaluation: %u more log events of this command dropped",
			 c->dropped);
		if (e->cb->event)
			e->cb->event(e->cb->ctx, "warning", buf);
		c->stats.events_dropped += c->dropped;
	}
	c->nrecs = 0;
	c->dropped = 0;
}

/* Operator and client data in replies and log text: Postfix's printable(..., ' ') keeps
 * printable ASCII only. */
void smtp_policy_printable(char *s)
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
const char *smtp_policy_dsn_split(char dsn[16], const char *def, const char *text)
{
	size_t n = dsn_valid(text);
	if (n) {
		memcpy(dsn, text, n);
		dsn[n] = '\0';
		text += n;
		while (*text == ' ' || *text == '\t')
			text++;
	} else {
		smtp_policy_scopy(dsn, 16, def);
	}
	return text;
}

/* Postfix's smtpd_dsn_fix(): an address status (X.1.Y) is rewritten to suit what is
 * rejected (a sender, a recipient, or something that is no address: X.0.0). */
const char *smtp_policy_dsn_fix(const char *status, const char *cls)
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
int smtp_policy_reject(struct ev *e, enum ecls cls, unsigned code, const char *dsn,
		       const char *fmt, ...)
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
	smtp_policy_printable(buf);

	if (!warn && e->dir.active && buf[0] == '5') {
		e->warn_if_reject = 0;
		e->dir.active = false;
		return smtp_policy_reject(e, e->dir.cls, e->dir.code, e->dir.dsn, "%s",
					  e->dir.reason);
	}
	bool hard = buf[0] == '5';
	if (e->p->soft_bounce && buf[0] == '5')
		buf[0] = '4';
	buf[4] = buf[0];
	if (warn) {
		smtp_policy_emit(e, "reject_warning", buf);
		e->warned = true;
		return ST_DUNNO;
	}
	smtp_policy_scopy(e->reply, sizeof(e->reply), buf);
	e->reply_hard = hard;
	/* smtpd.c closes the session after a 421 or 521 reply (and only those). */
	e->disconnect = strncmp(buf, "421", 3) == 0 || strncmp(buf, "521", 3) == 0;
	return ST_REJECT;
}

/* Postfix's defer_if(): remember the first reason; decide later. */
int smtp_policy_defer_if(struct defer *d, enum ecls cls, unsigned code, const char *dsn,
			 const char *fmt, ...)
{
	if (!d->active) {
		d->active = true;
		d->cls = cls;
		d->code = code;
		smtp_policy_scopy(d->dsn, sizeof(d->dsn), dsn);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
		va_end(ap);
	}
	return ST_DUNNO;
}

int smtp_policy_server_error(struct ev *e, const char *why)
{
	e->note = "server configuration error";
	smtp_policy_scopy(e->detail, sizeof(e->detail), why);
	return smtp_policy_reject(e, EC_SOFTWARE, 451, "4.3.5", "Server configuration error");
}

int smtp_policy_defer_if_permit(struct ev *e, bool defer_now, enum ecls cls, unsigned code,
				const char *dsn, const char *fmt, ...)
{
	char buf[SMTP_POLICY_TEXT_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* smtpd_check.c: with warn_if_reject the 450 is logged as a reject_warning now
	 * instead of raising the flag */
	if (e->warn_if_reject == 0 && !defer_now)
		return smtp_policy_defer_if(&e->dip, cls, code, dsn, "%s", buf);
	return smtp_policy_reject(e, cls, code, dsn, "%s", buf);
}

int smtp_policy_forbid_allowlist(struct ev *e, const char *restriction, int status,
				 const char *target)
{
	if (e->discard || status != ST_OK)
		return status;
	smtp_policy_warn(e, "restriction %s returns OK for %s", restriction, target);
	smtp_policy_warn(e, "this is not allowed for security reasons");
	smtp_policy_warn(e, "use DUNNO instead of OK if you want to make an exception");
	char why[SMTP_POLICY_TEXT_MAX];
	snprintf(why, sizeof(why), "%s returns OK; this is not allowed for security reasons (use DUNNO)",
		 restriction);
	return smtp_policy_server_error(e, why);
}
