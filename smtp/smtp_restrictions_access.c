/* The check_*_access restrictions: an access(5) lookup of the client, HELO name, sender or
 * recipient, and what its value says (Postfix's check_table_result(): OK, REJECT, DEFER,
 * the delegated actions HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND, INFO, WARN, HANGUP,
 * a reply code, or a further list of restrictions). A policy server's reply is read the
 * same way (smtp_restrictions_policy.c). Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/smtp_delegation.h"
#include "smtp/smtp_restrictions_internal.h"

/* ---------------------------------------------------------------------------------------
 * access(5) values: Postfix's check_table_result() */

static bool is_header(const char *s)
{
	/* "Name: value" (is_header(3)): printable non-space characters, then ':' */
	size_t i = 0;
	while (s[i] && s[i] != ':' && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127)
		i++;
	return i > 0 && s[i] == ':';
}

/* Delegated actions need a mail transaction (Postfix: can_delegate_action() and
 * not_in_client_helo(): with delay_reject = no, client and helo restrictions run outside
 * one and such actions are skipped with a warning). */
static bool can_delegate(struct ev *e, const char *table, const char *action)
{
	if (!e->act || !e->sender) {
		e->note = "skipped (no mail transaction)";
		snprintf(e->detail, sizeof(e->detail), "action %s is always skipped in client or helo restrictions with smtpd_delay_reject=no",
			 action);
		smtp_policy_warn(e, "access table %s: with smtpd_delay_reject=no, action %s is "
				 "always skipped in Client host or Helo command restrictions",
				 table, action);
		return false;
	}
	return true;
}

static void copy_clean(char *dst, size_t cap, const char *src)
{
	smtp_policy_scopy(dst, cap, src);
	smtp_policy_printable(dst);
}

/* An access(5) value ignored with a warning, as Postfix's msg_warn() says it: "access
 * table TABLE entry "DATUM" WHY". */
static int table_ignored(struct ev *e, const char *table, const char *datum, const char *why)
{
	e->note = "ignored";
	snprintf(e->detail, sizeof(e->detail), "access table %s entry \"%s\" %s", table, datum,
		 why);
	smtp_policy_printable(e->detail);
	smtp_policy_warn(e, "%s", e->detail);
	return ST_DUNNO;
}

/* A restriction list on the right-hand side (and "" means OK, as in the dark ages). */
static int table_restrictions(struct ev *e, const char *table, const char *value,
			      const char *rn, const char *rc, int def_acl)
{
	if (e->recursion > EVAL_DEPTH_MAX - 1) {
		smtp_policy_warn(e, "access table %s entry %s causes unreasonable recursion", table,
				 value);
		return smtp_policy_server_error(e, "access table entry causes unreasonable recursion");
	}
	int depth = e->recursion;
	char *buf = e->ctx->vbuf[depth];
	struct pitem *items = e->ctx->vitems[depth];
	size_t n = 0;
	if (buf != value)
		smtp_policy_scopy(buf, TABLE_VALUE_MAX + 1, value);
	const char *cur = buf, *ts;
	long tn;
	char word[TABLE_NAME_MAX + 300], why[SMTP_POLICY_TEXT_MAX];
	while ((tn = mx_list_next_braced(&cur, &ts)) != 0) {
		if (tn < 0 || n == VALUE_ITEMS_MAX ||
		    !smtp_policy_token_copy(word, sizeof(word), ts, (size_t)tn))
			return smtp_policy_server_error(e, "unparsable access table value");
		/* Parsing never adds to the shared policy at lookup time (compile = false). */
		if (smtp_policy_parse_item((struct smtp_policy *)e->p, table, word, &cur, &items[n],
					   false, why, sizeof(why)) < 0) {
			smtp_policy_warn(e, "unknown smtpd restriction: \"%s\"", word);
			snprintf(why, sizeof(why), "unknown smtpd restriction: \"%.200s\" (in access table %.200s)",
				 word, table);
			return smtp_policy_server_error(e, why);
		}
		n++;
	}
	if (n == 0) {
		smtp_policy_warn(e, "access table %s entry %s has empty value", table, value);
		e->note = "OK";
		return ST_OK;
	}
	e->note = NULL;
	return smtp_policy_generic_checks(e, items, n, rn, rc, def_acl);
}

/* Postfix's check_table_result(): value is what a table (or a policy server: table is
 * then the service and datum "policy query") said about rn; datum is the key that matched.
 * The value is classified as the policy delegation codec classifies an action
 * (smtp_delegation_action_classify()), which follows check_table_result()'s order. */
int smtp_policy_table_result(struct ev *e, const char *table, const char *value,
			     const char *datum, const char *rn, const char *rc, int def_acl)
{
	struct smtp_delegation_action a;
	char ebuf[SMTP_POLICY_TEXT_MAX + 64];
	smtp_delegation_action_classify(mx_span_cstr(value), &a);
	/* args and text run to the end of value: NUL-terminated */
	const char *args = a.args.ptr ? a.args.ptr : "";
	const char *text = a.text.len ? a.text.ptr : a.default_text;
	switch (a.kind) {
	case SMTP_DELEGATION_ACTION_DUNNO:
		e->note = "DUNNO";
		return ST_DUNNO;
	case SMTP_DELEGATION_ACTION_REJECT:
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.access_map_reject_code,
					  smtp_policy_dsn_fix(a.dsn, rc), "<%s>: %s rejected: %s", rn,
					  rc, text);
	case SMTP_DELEGATION_ACTION_DEFER:
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.access_map_defer_code,
					  smtp_policy_dsn_fix(a.dsn, rc), "<%s>: %s rejected: %s", rn,
					  rc, text);
	case SMTP_DELEGATION_ACTION_HANGUP:
		/* Postfix's test feature: drop the connection without a reply; logged, never
		 * a mere warning (it does not return) */
		copy_clean(ebuf, sizeof(ebuf), args);
		smtp_policy_emit(e, "hangup", ebuf);
		e->note = "HANGUP";
		e->hangup = true;
		e->disconnect = true;
		snprintf(e->reply, sizeof(e->reply), "421 4.7.0 %s Error: closing the connection",
			 e->p->myhostname);
		smtp_policy_printable(e->reply);
		return ST_REJECT;
	case SMTP_DELEGATION_ACTION_INFO:
	case SMTP_DELEGATION_ACTION_WARN: {
		bool info = a.kind == SMTP_DELEGATION_ACTION_INFO;
		copy_clean(ebuf, sizeof(ebuf), args);
		smtp_policy_emit(e, info ? "info" : "warn", ebuf);
		e->note = info ? "INFO" : "WARN";
		return ST_DUNNO;
	}
	case SMTP_DELEGATION_ACTION_FILTER:
		if (!can_delegate(e, table, "FILTER"))
			return ST_DUNNO;
		if (!*args)
			return table_ignored(e, table, datum, "has FILTER entry without value");
		if (!strchr(args, ':'))
			return table_ignored(e, table, datum, "requires transport:destination");
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers FILTER %s", rn, rc, args);
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "filter", ebuf);
		copy_clean(e->act->filter, sizeof(e->act->filter), args);
		e->note = "FILTER";
		return ST_DUNNO;
	case SMTP_DELEGATION_ACTION_HOLD:
		if (!can_delegate(e, table, "HOLD") || e->act->hold)
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc, *args ? args : "triggers HOLD action");
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "hold", ebuf);
		e->act->hold = true;
		copy_clean(e->act->hold_reason, sizeof(e->act->hold_reason), ebuf);
		e->note = "HOLD";
		return ST_DUNNO;
	case SMTP_DELEGATION_ACTION_DISCARD:
		if (!can_delegate(e, table, "DISCARD"))
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc,
			 *args ? args : "triggers DISCARD action");
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "discard", ebuf);
		e->act->discard = true;
		copy_clean(e->act->discard_reason, sizeof(e->act->discard_reason), ebuf);
		e->discard = true;
		e->note = "DISCARD";
		return ST_OK;
	case SMTP_DELEGATION_ACTION_REDIRECT:
	case SMTP_DELEGATION_ACTION_BCC: {
		bool redirect = a.kind == SMTP_DELEGATION_ACTION_REDIRECT;
		if (!can_delegate(e, table, redirect ? "REDIRECT" : "BCC"))
			return ST_DUNNO;
		if (!strchr(args, '@'))
			return table_ignored(e, table, datum, "requires user@domain target");
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers %s %s", rn, rc,
			 redirect ? "REDIRECT" : "BCC", args);
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, redirect ? "redirect" : "bcc", ebuf);
		/* The last REDIRECT wins (UPDATE_STRING); BCC: Postfix adds every one, mxgate
		 * keeps the last (one bcc slot). */
		if (redirect)
			copy_clean(e->act->redirect, sizeof(e->act->redirect), args);
		else
			copy_clean(e->act->bcc, sizeof(e->act->bcc), args);
		e->note = redirect ? "REDIRECT" : "BCC";
		return ST_DUNNO;
	}
	case SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT:
		e->note = "DEFER_IF_PERMIT";
		return smtp_policy_defer_if_permit(e, false, EC_POLICY,
						   e->p->codes.access_map_defer_code,
						   smtp_policy_dsn_fix(a.dsn, rc),
						   "<%s>: %s rejected: %s", rn, rc, text);
	case SMTP_DELEGATION_ACTION_DEFER_IF_REJECT:
		e->note = "DEFER_IF_REJECT";
		return smtp_policy_defer_if(&e->dir, EC_POLICY, e->p->codes.access_map_defer_code,
					    smtp_policy_dsn_fix(a.dsn, rc), "<%s>: %s rejected: %s",
					    rn, rc, text);
	case SMTP_DELEGATION_ACTION_PREPEND:
		/* not_in_client_helo() only: PREPEND needs no cleanup server */
		if (!e->sender) {
			e->note = "skipped (no mail transaction)";
			smtp_policy_warn(e, "access table %s: with smtpd_delay_reject=no, action %s is "
					 "always skipped in Client host or Helo command restrictions",
					 table, "PREPEND");
			return ST_DUNNO;
		}
		if (e->req->stage == SMTP_STAGE_END_OF_DATA) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail), "access table %s: action PREPEND must be used before smtpd_end_of_data_restrictions",
				 table);
			smtp_policy_warn(e, "%s", e->detail);
			return ST_DUNNO;
		}
		if (!*args || !is_header(args))
			return table_ignored(e, table, datum, "requires header: text");
		if (e->act && e->act->nprepend < SMTP_POLICY_PREPEND_MAX)
			copy_clean(e->act->prepend[e->act->nprepend++], SMTP_POLICY_TEXT_MAX, args);
		e->note = "PREPEND";
		return ST_DUNNO;
	case SMTP_DELEGATION_ACTION_CODE:
		/* 4NN text / 5NN text; 421 and 521 also end the session */
		return smtp_policy_reject(e, EC_POLICY, a.code, smtp_policy_dsn_fix(a.dsn, rc),
					  "<%s>: %s rejected: %s", rn, rc, text);
	case SMTP_DELEGATION_ACTION_OK:
		if (a.empty)
			return table_restrictions(e, table, value, rn, rc, def_acl);
		/* OK, RELAY, or all-numeric (an out-of-band time stamp) */
		e->note = "OK";
		return ST_OK;
	case SMTP_DELEGATION_ACTION_LOOKUP_TABLE:
		/* Tables are not allowed on the right-hand side */
		smtp_policy_warn(e, "access table %s has entry with lookup table: %s", table, value);
		smtp_policy_warn(e, "do not specify lookup tables inside SMTPD access maps");
		smtp_policy_warn(e, "define a restriction class and specify its name instead.");
		return smtp_policy_server_error(e, "access table entry with lookup table; define a restriction class instead");
	case SMTP_DELEGATION_ACTION_RESTRICTIONS:
	default:
		return table_restrictions(e, table, value, rn, rc, def_acl);
	}
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
		return smtp_policy_table_result(e, spec, "451 4.3.5 Server configuration error",
						rn, rn, cls, def_acl);
	}
	if (rc == 0) {
		e->note = "no match";
		return ST_DUNNO;
	}
	snprintf(e->detail, sizeof(e->detail), "%s: %s %s", spec, matched, e->ctx->lookup[0]);
	smtp_policy_printable(e->detail);
	/* The value moves to this level's buffer: a nested evaluation reuses the lookup
	 * buffer. */
	char *value = e->ctx->vbuf[e->recursion < EVAL_DEPTH_MAX ? e->recursion : EVAL_DEPTH_MAX];
	smtp_policy_scopy(value, TABLE_VALUE_MAX + 1, e->ctx->lookup[0]);
	return smtp_policy_table_result(e, spec, value, matched, rn, cls, def_acl);
}

int smtp_policy_access_client(struct ev *e, uint32_t t, const char *name, const char *rn,
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

int smtp_policy_access_key(struct ev *e, uint32_t t, const char *key, const char *rn,
			   const char *cls, int def_acl)
{
	/* one exact key (a certificate fingerprint, a SASL login name): no partial lookups */
	if (!key || !*key || strlen(key) > TABLE_KEY_MAX)
		return ST_DUNNO;
	int rc = table_lookup(e->ctx->tables[t], key, e->ctx->lookup[0], TABLE_VALUE_MAX + 1);
	return access_result(e, t, rc, key, rn, cls, def_acl);
}

int smtp_policy_access_domain(struct ev *e, uint32_t t, const char *dom, const char *rn,
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

int smtp_policy_access_address(struct ev *e, uint32_t t, const char *addr, const char *rn,
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

int smtp_policy_access_found(struct ev *e, uint32_t t, const char *domain, const char *addr,
			     const char *rn, const char *cls, int def_acl, bool *found)
{
	struct trace_acc ta;
	struct table_access_query q = { .opts = &e->p->access,
					.val = e->ctx->lookup[0],
					.vallen = TABLE_VALUE_MAX + 1,
					.matched = ta.key,
					.matchedlen = sizeof(ta.key) };
	int rc = domain ? table_access_domain(e->ctx->tables[t], domain, &q)
			: table_access_client(e->ctx->tables[t], NULL, addr, &q);
	*found = rc > 0;
	return access_result(e, t, rc, ta.key, rn, cls, def_acl);
}
