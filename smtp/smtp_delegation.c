/* Postfix's policy delegation protocol, client side (SMTPD_POLICY_README); see
 * smtp_delegation.h for what is sent, what is accepted back, and where this differs from
 * Postfix 3.7 on purpose. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_delegation.h"

const char *smtp_delegation_state_name(enum smtp_delegation_state s)
{
	/* smtpd.h SMTPD_AFTER_CONNECT, SMTPD_CMD_*, SMTPD_AFTER_EOM */
	static const char *const names[SMTP_DELEGATION_STATE_MAX] = {
		[SMTP_DELEGATION_CONNECT] = "CONNECT",
		[SMTP_DELEGATION_EHLO] = "EHLO",
		[SMTP_DELEGATION_HELO] = "HELO",
		[SMTP_DELEGATION_MAIL] = "MAIL",
		[SMTP_DELEGATION_RCPT] = "RCPT",
		[SMTP_DELEGATION_DATA] = "DATA",
		[SMTP_DELEGATION_END_OF_MESSAGE] = "END-OF-MESSAGE",
		[SMTP_DELEGATION_VRFY] = "VRFY",
		[SMTP_DELEGATION_ETRN] = "ETRN",
	};
	return (unsigned)s < SMTP_DELEGATION_STATE_MAX ? names[s] : "?";
}

void smtp_delegation_request_init(struct smtp_delegation_request *r)
{
	memset(r, 0, sizeof(*r));
	r->protocol_state = SMTP_DELEGATION_CONNECT;
	r->client_port = -1;
	r->server_port = -1;
}

/* Output under construction: counts every byte, stores those that fit. */
struct smtp_delegation_out {
	char *buf;
	size_t cap, len;
	int error;
};

static void smtp_delegation_put(struct smtp_delegation_out *o, const char *p, size_t n)
{
	if (o->len < o->cap) {
		size_t k = o->cap - o->len < n ? o->cap - o->len : n;
		memcpy(o->buf + o->len, p, k);
	}
	o->len += n;
}

/* One "name=value\n" line (attr_print_plain: "%s=%s\n", nothing escaped). */
static void smtp_delegation_attr(struct smtp_delegation_out *o, const char *name,
				 const char *value)
{
	size_t n = strlen(value);
	if (n > SMTP_DELEGATION_VALUE_MAX) {
		if (!o->error)
			o->error = -EMSGSIZE;
		return;
	}
	if (memchr(value, '\n', n) || memchr(value, '\r', n)) {
		if (!o->error)
			o->error = -EINVAL;
		return;
	}
	smtp_delegation_put(o, name, strlen(name));
	smtp_delegation_put(o, "=", 1);
	smtp_delegation_put(o, value, n);
	smtp_delegation_put(o, "\n", 1);
}

static void smtp_delegation_attr_num(struct smtp_delegation_out *o, const char *name,
				     uint64_t v)
{
	char num[24];
	snprintf(num, sizeof(num), "%" PRIu64, v);
	smtp_delegation_attr(o, name, num);
}

static void smtp_delegation_attr_port(struct smtp_delegation_out *o, const char *name,
				      int32_t port)
{
	if (port < 0)
		smtp_delegation_attr(o, name, "unknown"); /* CLIENT_PORT_UNKNOWN */
	else
		smtp_delegation_attr_num(o, name, (uint64_t)port);
}

static const char *smtp_delegation_or(const char *v, const char *dflt)
{
	return v ? v : dflt;
}

int smtp_delegation_request_encode(const struct smtp_delegation_request *r, char *buf,
				   size_t cap, size_t *len)
{
	struct smtp_delegation_out o = { .buf = buf, .cap = buf ? cap : 0 };
	const char *unknown = "unknown"; /* CLIENT_ATTR_UNKNOWN, SERVER_ATTR_UNKNOWN */
	enum smtp_delegation_state st = r->protocol_state;
	*len = 0;
	if ((unsigned)st >= SMTP_DELEGATION_STATE_MAX)
		return -EINVAL;
	/* Postfix 3.7.11 check_policy_service(): this order, these defaults */
	smtp_delegation_attr(&o, "request", "smtpd_access_policy");
	smtp_delegation_attr(&o, "protocol_state", smtp_delegation_state_name(st));
	smtp_delegation_attr(&o, "protocol_name", smtp_delegation_or(r->protocol_name, "SMTP"));
	smtp_delegation_attr(&o, "client_address", smtp_delegation_or(r->client_address, unknown));
	smtp_delegation_attr(&o, "client_name", smtp_delegation_or(r->client_name, unknown));
	smtp_delegation_attr_port(&o, "client_port", r->client_port);
	smtp_delegation_attr(&o, "reverse_client_name",
			     smtp_delegation_or(r->reverse_client_name, unknown));
	smtp_delegation_attr(&o, "server_address", smtp_delegation_or(r->server_address, unknown));
	smtp_delegation_attr_port(&o, "server_port", r->server_port);
	smtp_delegation_attr(&o, "helo_name", smtp_delegation_or(r->helo_name, ""));
	smtp_delegation_attr(&o, "sender", smtp_delegation_or(r->sender, ""));
	smtp_delegation_attr(&o, "recipient", smtp_delegation_or(r->recipient, ""));
	/* "recipient_count" is the transaction's count only after the recipients are known */
	bool counted = st == SMTP_DELEGATION_DATA || st == SMTP_DELEGATION_END_OF_MESSAGE;
	smtp_delegation_attr_num(&o, "recipient_count", counted ? r->recipient_count : 0);
	smtp_delegation_attr(&o, "queue_id", smtp_delegation_or(r->queue_id, ""));
	smtp_delegation_attr(&o, "instance", smtp_delegation_or(r->instance, ""));
	smtp_delegation_attr_num(&o, "size", r->size);
	smtp_delegation_attr(&o, "etrn_domain", smtp_delegation_or(r->etrn_domain, ""));
	smtp_delegation_attr(&o, "stress", r->stress ? "yes" : "");
	smtp_delegation_attr(&o, "sasl_method", smtp_delegation_or(r->sasl_method, ""));
	smtp_delegation_attr(&o, "sasl_username", smtp_delegation_or(r->sasl_username, ""));
	smtp_delegation_attr(&o, "sasl_sender", smtp_delegation_or(r->sasl_sender, ""));
	smtp_delegation_attr(&o, "ccert_subject", smtp_delegation_or(r->ccert_subject, ""));
	smtp_delegation_attr(&o, "ccert_issuer", smtp_delegation_or(r->ccert_issuer, ""));
	smtp_delegation_attr(&o, "ccert_fingerprint", smtp_delegation_or(r->ccert_fingerprint, ""));
	smtp_delegation_attr(&o, "ccert_pubkey_fingerprint",
			     smtp_delegation_or(r->ccert_pubkey_fingerprint, ""));
	smtp_delegation_attr(&o, "encryption_protocol",
			     smtp_delegation_or(r->encryption_protocol, ""));
	smtp_delegation_attr(&o, "encryption_cipher", smtp_delegation_or(r->encryption_cipher, ""));
	smtp_delegation_attr_num(&o, "encryption_keysize", r->encryption_keysize);
	smtp_delegation_attr(&o, "policy_context", smtp_delegation_or(r->policy_context, ""));
	/* Postfix 3.8+ */
	if (r->compatibility_level)
		smtp_delegation_attr(&o, "compatibility_level", r->compatibility_level);
	if (r->mail_version)
		smtp_delegation_attr(&o, "mail_version", r->mail_version);
	smtp_delegation_put(&o, "\n", 1);
	if (o.error)
		return o.error;
	*len = o.len;
	return o.len <= o.cap ? 0 : -ENOSPC;
}

/* ---- Replies ---- */

const char *smtp_delegation_reader_state_name(enum smtp_delegation_reader_state s)
{
	static const char *const names[SMTP_DELEGATION_READ_STATE_MAX] = {
		[SMTP_DELEGATION_READ_NAME] = "name",
		[SMTP_DELEGATION_READ_VALUE] = "value",
		[SMTP_DELEGATION_READ_DONE] = "done",
		[SMTP_DELEGATION_READ_FAILED] = "failed",
	};
	return (unsigned)s < SMTP_DELEGATION_READ_STATE_MAX ? names[s] : "?";
}

/* The one place the reader's state changes. */
static void smtp_delegation_enter_state(struct smtp_delegation_reader *r,
					enum smtp_delegation_reader_state s)
{
	switch (s) {
	case SMTP_DELEGATION_READ_NAME:
		/* a new line */
		r->line_len = 0;
		r->name_len = 0;
		r->capture = false;
		break;
	case SMTP_DELEGATION_READ_VALUE: {
		static const char action[] = "action";
		bool is_action = r->name_len == sizeof(action) - 1 &&
				 memcmp(r->name, action, sizeof(action) - 1) == 0;
		if (is_action && !r->have_action)
			r->capture = true;
		else if (is_action)
			r->duplicate_actions++;
		else
			r->ignored++;
		break;
	}
	case SMTP_DELEGATION_READ_DONE:
		assert(r->have_action);
		break;
	case SMTP_DELEGATION_READ_FAILED:
		assert(r->error < 0);
		break;
	case SMTP_DELEGATION_READ_STATE_MAX:
		assert(0 && "not a state");
		break;
	}
	r->state = s;
}

void smtp_delegation_reader_init(struct smtp_delegation_reader *r, unsigned flags)
{
	memset(r, 0, sizeof(*r));
	r->flags = flags;
	smtp_delegation_enter_state(r, SMTP_DELEGATION_READ_NAME);
}

static int smtp_delegation_fail(struct smtp_delegation_reader *r, int error)
{
	r->error = error;
	smtp_delegation_enter_state(r, SMTP_DELEGATION_READ_FAILED);
	return error;
}

/* The end of a non-empty line. */
static int smtp_delegation_line_end(struct smtp_delegation_reader *r)
{
	if (r->state == SMTP_DELEGATION_READ_NAME)
		return smtp_delegation_fail(r, -EBADMSG); /* no '=' */
	if (++r->lines > SMTP_DELEGATION_LINES_MAX)
		return smtp_delegation_fail(r, -EMSGSIZE);
	if (r->capture) {
		r->action[r->action_len] = '\0';
		if ((r->flags & SMTP_DELEGATION_UTF8) && !smtp_utf8_valid(r->action, r->action_len))
			return smtp_delegation_fail(r, -EBADMSG);
		r->have_action = true;
	}
	smtp_delegation_enter_state(r, SMTP_DELEGATION_READ_NAME);
	return 0;
}

int smtp_delegation_reader_feed(struct smtp_delegation_reader *r, const char *data,
				size_t len, size_t *used)
{
	assert(r->state != SMTP_DELEGATION_READ_DONE);
	*used = 0;
	if (r->state == SMTP_DELEGATION_READ_FAILED)
		return r->error;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];
		*used = i + 1;
		if (c == '\n') {
			if (r->state == SMTP_DELEGATION_READ_NAME && r->line_len == 0) {
				/* the empty line: the end of the reply (attr_scan_plain) */
				if (!r->have_action)
					return smtp_delegation_fail(r, -ENOMSG);
				r->trailing = len - *used;
				smtp_delegation_enter_state(r, SMTP_DELEGATION_READ_DONE);
				return 1;
			}
			int rc = smtp_delegation_line_end(r);
			if (rc < 0)
				return rc;
			continue;
		}
		if (c == '\0' || c == '\r')
			return smtp_delegation_fail(r, -EBADMSG);
		if (++r->line_len > SMTP_DELEGATION_LINE_MAX)
			return smtp_delegation_fail(r, -EMSGSIZE);
		if (r->state == SMTP_DELEGATION_READ_NAME) {
			if (c == '=') {
				if (r->name_len == 0)
					return smtp_delegation_fail(r, -EBADMSG);
				smtp_delegation_enter_state(r, SMTP_DELEGATION_READ_VALUE);
				continue;
			}
			if (c < ' ' || c == 0x7f)
				return smtp_delegation_fail(r, -EBADMSG); /* no name holds controls */
			if (r->name_len < SMTP_DELEGATION_NAME_MAX)
				r->name[r->name_len] = (char)c;
			r->name_len++;
			continue;
		}
		if (r->capture) {
			/* line_len <= LINE_MAX and "action=" took 7: the buffer holds it */
			assert(r->action_len < SMTP_DELEGATION_ACTION_MAX);
			r->action[r->action_len++] = (char)c;
		}
	}
	return 0;
}

struct mx_span smtp_delegation_reader_action(const struct smtp_delegation_reader *r)
{
	assert(r->state == SMTP_DELEGATION_READ_DONE);
	return mx_span_make(r->action, r->action_len);
}

/* ---- Actions ---- */

const char *smtp_delegation_action_kind_name(enum smtp_delegation_action_kind k)
{
	static const char *const names[SMTP_DELEGATION_ACTION_KIND_MAX] = {
		[SMTP_DELEGATION_ACTION_OK] = "OK",
		[SMTP_DELEGATION_ACTION_DUNNO] = "DUNNO",
		[SMTP_DELEGATION_ACTION_REJECT] = "REJECT",
		[SMTP_DELEGATION_ACTION_DEFER] = "DEFER",
		[SMTP_DELEGATION_ACTION_DEFER_IF_REJECT] = "DEFER_IF_REJECT",
		[SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT] = "DEFER_IF_PERMIT",
		[SMTP_DELEGATION_ACTION_CODE] = "code",
		[SMTP_DELEGATION_ACTION_DISCARD] = "DISCARD",
		[SMTP_DELEGATION_ACTION_HOLD] = "HOLD",
		[SMTP_DELEGATION_ACTION_FILTER] = "FILTER",
		[SMTP_DELEGATION_ACTION_REDIRECT] = "REDIRECT",
		[SMTP_DELEGATION_ACTION_BCC] = "BCC",
		[SMTP_DELEGATION_ACTION_PREPEND] = "PREPEND",
		[SMTP_DELEGATION_ACTION_INFO] = "INFO",
		[SMTP_DELEGATION_ACTION_WARN] = "WARN",
		[SMTP_DELEGATION_ACTION_HANGUP] = "HANGUP",
		[SMTP_DELEGATION_ACTION_LOOKUP_TABLE] = "lookup table",
		[SMTP_DELEGATION_ACTION_RESTRICTIONS] = "restrictions",
	};
	return (unsigned)k < SMTP_DELEGATION_ACTION_KIND_MAX ? names[k] : "?";
}

/* dsn_valid(): X.Y.Z with X in 2 4 5, Y and Z of 1-3 digits, then the end or a space.
 * Returns its length or 0. */
static size_t smtp_delegation_dsn_valid(const char *s, size_t n)
{
	size_t i = 0, d;
	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	i = 2;
	for (d = 0; i < n && mx_ctype_is_digit(s[i]); i++)
		d++;
	if (d < 1 || d > 3 || i >= n || s[i] != '.')
		return 0;
	i++;
	for (d = 0; i < n && mx_ctype_is_digit(s[i]); i++)
		d++;
	if (d < 1 || d > 3 || (i < n && !mx_ctype_is_space(s[i])))
		return 0;
	return i;
}

/* dsn_split(): an enhanced status code at the start of args wins over def; the rest, blanks
 * skipped, is the text. (Postfix 3.7 skipped one more octet after a code at the very end,
 * past the string's NUL; later versions fixed it: the text is then empty.) */
static void smtp_delegation_dsn_split(struct smtp_delegation_action *a, const char *def)
{
	const char *p = a->args.ptr;
	size_t n = a->args.len;
	while (n && mx_ctype_is_space(*p))
		p++, n--;
	size_t d = smtp_delegation_dsn_valid(p, n);
	if (d) {
		memcpy(a->dsn, p, d);
		a->dsn[d] = '\0';
		p += d;
		n -= d;
	} else {
		snprintf(a->dsn, sizeof(a->dsn), "%s", def);
	}
	while (n && mx_ctype_is_space(*p))
		p++, n--;
	a->text = mx_span_make(p, n);
}

void smtp_delegation_action_classify(struct mx_span action, struct smtp_delegation_action *out)
{
	static const struct {
		const char *word;
		enum smtp_delegation_action_kind kind;
	} words[] = {
		/* check_table_result()'s order */
		{ "DUNNO", SMTP_DELEGATION_ACTION_DUNNO },
		{ "REJECT", SMTP_DELEGATION_ACTION_REJECT },
		{ "DEFER", SMTP_DELEGATION_ACTION_DEFER },
		{ "HANGUP", SMTP_DELEGATION_ACTION_HANGUP },
		{ "INFO", SMTP_DELEGATION_ACTION_INFO },
		{ "WARN", SMTP_DELEGATION_ACTION_WARN },
		{ "FILTER", SMTP_DELEGATION_ACTION_FILTER },
		{ "HOLD", SMTP_DELEGATION_ACTION_HOLD },
		{ "DISCARD", SMTP_DELEGATION_ACTION_DISCARD },
		{ "REDIRECT", SMTP_DELEGATION_ACTION_REDIRECT },
		{ "BCC", SMTP_DELEGATION_ACTION_BCC },
		{ "DEFER_IF_PERMIT", SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT },
		{ "DEFER_IF_REJECT", SMTP_DELEGATION_ACTION_DEFER_IF_REJECT },
		{ "PREPEND", SMTP_DELEGATION_ACTION_PREPEND },
	};
	const char *v = action.ptr ? action.ptr : "";
	size_t n = action.ptr ? action.len : 0;

	memset(out, 0, sizeof(*out));
	out->default_text = "";
	/* cmd_len = strcspn(value, " \t"); the text starts after the blanks (ISSPACE) */
	size_t w = 0;
	while (w < n && !mx_ctype_is_blank(v[w]))
		w++;
	size_t t = w;
	while (t < n && mx_ctype_is_space(v[t]))
		t++;
	out->word = mx_span_make(v, w);
	out->args = mx_span_make(v + t, n - t);

	enum smtp_delegation_action_kind kind = SMTP_DELEGATION_ACTION_KIND_MAX;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (mx_span_eq_nocase(out->word, mx_span_cstr(words[i].word))) {
			kind = words[i].kind;
			break;
		}
	bool alldig = n > 0;
	for (size_t i = 0; i < n; i++)
		alldig = alldig && mx_ctype_is_digit(v[i]);
	if (kind != SMTP_DELEGATION_ACTION_KIND_MAX) {
		/* a word of the table */
	} else if (alldig) {
		kind = SMTP_DELEGATION_ACTION_OK;
		out->numeric = true;
	} else if (w == 3 && t < n && (v[0] == '4' || v[0] == '5') &&
		   mx_ctype_is_digit(v[1]) && mx_ctype_is_digit(v[2])) {
		kind = SMTP_DELEGATION_ACTION_CODE;
	} else if (mx_span_eq_nocase(out->word, MX_SPAN_LIT("OK")) ||
		   mx_span_eq_nocase(out->word, MX_SPAN_LIT("RELAY"))) {
		kind = SMTP_DELEGATION_ACTION_OK;
	} else if (memchr(v, ':', n)) {
		kind = SMTP_DELEGATION_ACTION_LOOKUP_TABLE;
	} else {
		/* argv_splitq(value, ", \t\r\n", "{}"): no token at all is an empty value */
		bool token = false;
		for (size_t i = 0; i < n && !token; i++)
			token = !mx_list_is_separator(v[i]);
		if (token) {
			kind = SMTP_DELEGATION_ACTION_RESTRICTIONS;
		} else {
			kind = SMTP_DELEGATION_ACTION_OK;
			out->empty = true;
		}
	}
	out->kind = kind;

	switch (kind) {
	case SMTP_DELEGATION_ACTION_REJECT:
		smtp_delegation_dsn_split(out, "5.7.1");
		out->default_text = "Access denied";
		break;
	case SMTP_DELEGATION_ACTION_DEFER:
		smtp_delegation_dsn_split(out, "4.7.1");
		out->default_text = "Access denied";
		break;
	case SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT:
	case SMTP_DELEGATION_ACTION_DEFER_IF_REJECT:
		smtp_delegation_dsn_split(out, "4.7.1");
		out->default_text = "Service unavailable";
		break;
	case SMTP_DELEGATION_ACTION_CODE: {
		char def[6] = { v[0], '.', '7', '.', '1', '\0' };
		out->code = (unsigned)((v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0'));
		out->disconnect = out->code == 421 || out->code == 521;
		smtp_delegation_dsn_split(out, def);
		out->dsn[0] = v[0]; /* smtpd_check_reject(): the DSN class follows the code */
		out->default_text = "Access denied";
		break;
	}
	default:
		break;
	}
}
