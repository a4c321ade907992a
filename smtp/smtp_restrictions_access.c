/* The check_*_access restrictions: an access(5) lookup of the client, HELO name, sender or
 * recipient, and what its value says (Postfix's check_table_result(): OK, REJECT, DEFER,
 * the delegated actions HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND, INFO, WARN, a reply
 * code, or a further list of restrictions). Part of the evaluator split across
 * smtp_restrictions*.c. */
#include "smtp/smtp_restrictions.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static bool word_is(const char *v, size_t len, const char *w)
{
	return strlen(w) == len && strncasecmp(v, w, len) == 0;
}

/* Delegated actions need a mail transaction (Postfix: can_delegate_action() and
 * not_in_client_helo(): with delay_reject = no, client and helo restrictions run outside
 * one and such actions are skipped with a warning). */
static bool can_delegate(struct ev *e, const char *action)
{
	if (!e->act || !e->sender) {
		e->note = "skipped (no mail transaction)";
		snprintf(e->detail, sizeof(e->detail), "action %s is always skipped in client or helo restrictions with smtpd_delay_reject=no",
			 action);
		return false;
	}
	return true;
}

static void copy_clean(char *dst, size_t cap, const char *src)
{
	smtp_policy_scopy(dst, cap, src);
	smtp_policy_printable(dst);
}

static int check_table_result(struct ev *e, const char *table, const char *value,
			      const char *rn, const char *rc, int def_acl)
{
	char dsn[16];
	char ebuf[SMTP_POLICY_TEXT_MAX + 64];
	size_t cmd_len = strcspn(value, " \t");
	const char *text = value + cmd_len;
	while (*text == ' ' || *text == '\t')
		text++;

	if (word_is(value, cmd_len, "DUNNO")) {
		e->note = "DUNNO";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "REJECT")) {
		const char *t = smtp_policy_dsn_split(dsn, "5.7.1", text);
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.access_map_reject_code,
					  smtp_policy_dsn_fix(dsn, rc), "<%s>: %s rejected: %s", rn,
					  rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "DEFER")) {
		const char *t = smtp_policy_dsn_split(dsn, "4.7.1", text);
		return smtp_policy_reject(e, EC_POLICY, e->p->codes.access_map_defer_code,
					  smtp_policy_dsn_fix(dsn, rc), "<%s>: %s rejected: %s", rn,
					  rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "INFO") || word_is(value, cmd_len, "WARN")) {
		copy_clean(ebuf, sizeof(ebuf), text);
		smtp_policy_emit(e, word_is(value, cmd_len, "INFO") ? "info" : "warn", ebuf);
		e->note = word_is(value, cmd_len, "INFO") ? "INFO" : "WARN";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "FILTER")) {
		if (!can_delegate(e, "FILTER"))
			return ST_DUNNO;
		if (!*text || !strchr(text, ':')) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail),
				 "access table %s entry has FILTER entry without transport:destination", table);
			return ST_DUNNO;
		}
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers FILTER %s", rn, rc, text);
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "filter", ebuf);
		copy_clean(e->act->filter, sizeof(e->act->filter), text);
		e->note = "FILTER";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "HOLD")) {
		if (!can_delegate(e, "HOLD") || e->act->hold)
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc, *text ? text : "triggers HOLD action");
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "hold", ebuf);
		e->act->hold = true;
		copy_clean(e->act->hold_reason, sizeof(e->act->hold_reason), ebuf);
		e->note = "HOLD";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "DISCARD")) {
		if (!can_delegate(e, "DISCARD"))
			return ST_DUNNO;
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s %s", rn, rc,
			 *text ? text : "triggers DISCARD action");
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, "discard", ebuf);
		e->act->discard = true;
		copy_clean(e->act->discard_reason, sizeof(e->act->discard_reason), ebuf);
		e->discard = true;
		e->note = "DISCARD";
		return ST_OK;
	}
	if (word_is(value, cmd_len, "REDIRECT") || word_is(value, cmd_len, "BCC")) {
		bool redirect = word_is(value, cmd_len, "REDIRECT");
		if (!can_delegate(e, redirect ? "REDIRECT" : "BCC"))
			return ST_DUNNO;
		if (!strchr(text, '@')) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail),
				 "access table %s entry requires user@domain target", table);
			return ST_DUNNO;
		}
		snprintf(ebuf, sizeof(ebuf), "<%s>: %s triggers %s %s", rn, rc,
			 redirect ? "REDIRECT" : "BCC", text);
		smtp_policy_printable(ebuf);
		smtp_policy_emit(e, redirect ? "redirect" : "bcc", ebuf);
		/* The last REDIRECT wins (UPDATE_STRING); BCC: Postfix adds every one, mxgate
		 * keeps the last (one bcc slot). */
		if (redirect)
			copy_clean(e->act->redirect, sizeof(e->act->redirect), text);
		else
			copy_clean(e->act->bcc, sizeof(e->act->bcc), text);
		e->note = redirect ? "REDIRECT" : "BCC";
		return ST_DUNNO;
	}
	if (word_is(value, cmd_len, "DEFER_IF_PERMIT")) {
		const char *t = smtp_policy_dsn_split(dsn, "4.7.1", text);
		e->note = "DEFER_IF_PERMIT";
		return smtp_policy_defer_if(&e->dip, EC_POLICY, e->p->codes.access_map_defer_code,
					    smtp_policy_dsn_fix(dsn, rc), "<%s>: %s rejected: %s",
					    rn, rc, *t ? t : "Service unavailable");
	}
	if (word_is(value, cmd_len, "DEFER_IF_REJECT")) {
		const char *t = smtp_policy_dsn_split(dsn, "4.7.1", text);
		e->note = "DEFER_IF_REJECT";
		return smtp_policy_defer_if(&e->dir, EC_POLICY, e->p->codes.access_map_defer_code,
					    smtp_policy_dsn_fix(dsn, rc), "<%s>: %s rejected: %s",
					    rn, rc, *t ? t : "Service unavailable");
	}
	if (word_is(value, cmd_len, "PREPEND")) {
		if (!can_delegate(e, "PREPEND"))
			return ST_DUNNO;
		if (e->req->stage == SMTP_STAGE_END_OF_DATA || !*text || !is_header(text)) {
			e->note = "ignored";
			snprintf(e->detail, sizeof(e->detail), "access table %s: PREPEND %s", table,
				 e->req->stage == SMTP_STAGE_END_OF_DATA
					 ? "must be used before smtpd_end_of_data_restrictions"
					 : "requires header: text");
			return ST_DUNNO;
		}
		if (e->act->nprepend < SMTP_POLICY_PREPEND_MAX)
			copy_clean(e->act->prepend[e->act->nprepend++], SMTP_POLICY_TEXT_MAX, text);
		e->note = "PREPEND";
		return ST_DUNNO;
	}
	/* All-numeric: OK (an out-of-band time stamp). */
	if (mx_ctype_all_digits(value)) {
		e->note = "OK";
		return ST_OK;
	}
	/* 4NN text / 5NN text; 421 and 521 also end the session. */
	if (cmd_len == 3 && *text && (value[0] == '4' || value[0] == '5') &&
	    mx_ctype_is_digit(value[1]) && mx_ctype_is_digit(value[2])) {
		char def[6] = { value[0], '.', '7', '.', '1', 0 };
		const char *t = smtp_policy_dsn_split(dsn, def, text);
		return smtp_policy_reject(e, EC_POLICY, (unsigned)atoi(value),
					  smtp_policy_dsn_fix(dsn, rc), "<%s>: %s rejected: %s", rn,
					  rc, *t ? t : "Access denied");
	}
	if (word_is(value, cmd_len, "OK") || word_is(value, cmd_len, "RELAY")) {
		e->note = "OK";
		return ST_OK;
	}
	/* Anything else is a list of restrictions (or class names). Tables are not allowed
	 * there ("define a restriction class and specify its name instead"). */
	if (strchr(value, ':'))
		return smtp_policy_server_error(e, "access table entry with lookup table; define a restriction class instead");
	if (e->recursion > EVAL_DEPTH_MAX - 1)
		return smtp_policy_server_error(e, "access table entry causes unreasonable recursion");

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
			snprintf(why, sizeof(why), "unknown smtpd restriction: \"%.200s\" (in access table %.200s)",
				 word, table);
			return smtp_policy_server_error(e, why);
		}
		n++;
	}
	if (n == 0) {
		e->note = "OK";
		return ST_OK;
	}
	e->note = NULL;
	return smtp_policy_generic_checks(e, items, n, rn, rc, def_acl);
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
		return check_table_result(e, spec, "451 4.3.5 Server configuration error", rn, cls,
					  def_acl);
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
	return check_table_result(e, spec, value, rn, cls, def_acl);
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
