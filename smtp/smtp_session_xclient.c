/* The session engine's XCLIENT (Postfix XCLIENT_README; smtpd.c xclient_cmd() of Postfix
 * 3.7): the command from an authorized proxy, its attributes decoded and checked, and the
 * new identity taken once the transport accepts it. Part of the engine split across
 * smtp_session*.c. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "smtp/smtp_address.h"
#include "smtp/smtp_internal.h"
#include "smtp/smtp_session_internal.h"

const char *smtp_xclient_attr_name(enum smtp_xclient_attr a)
{
	switch (a) {
	case SMTP_XCLIENT_NAME:
		return "NAME";
	case SMTP_XCLIENT_REVERSE_NAME:
		return "REVERSE_NAME";
	case SMTP_XCLIENT_ADDR:
		return "ADDR";
	case SMTP_XCLIENT_PORT:
		return "PORT";
	case SMTP_XCLIENT_PROTO:
		return "PROTO";
	case SMTP_XCLIENT_HELO:
		return "HELO";
	case SMTP_XCLIENT_LOGIN:
		return "LOGIN";
	case SMTP_XCLIENT_DESTADDR:
		return "DESTADDR";
	case SMTP_XCLIENT_DESTPORT:
		return "DESTPORT";
	case SMTP_XCLIENT_ATTR_MAX:
		break;
	}
	return "?";
}

/* Postfix's xtext_unquote(): "+" and two hex digits (either case) is one octet, anything
 * else stands for itself. Returns the decoded length, or -1 when a "+" is not followed
 * by two hex digits (Postfix then takes the raw text). A decoded NUL ends the value, as
 * it ends Postfix's C string. */
static long xclient_xtext(struct mx_span v, char *out)
{
	size_t n = 0;
	bool cut = false; /* a decoded NUL was seen: the rest is checked, not kept */
	for (size_t i = 0; i < v.len; i++) {
		char c = v.ptr[i];
		if (c == '+') {
			if (v.len - i < 3)
				return -1;
			int hi = mx_ctype_hex_value(v.ptr[i + 1]);
			int lo = mx_ctype_hex_value(v.ptr[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0')
			cut = true;
		if (!cut)
			out[n++] = c;
	}
	return (long)n;
}

/* Postfix's valid_hostname(): at most 255 octets of labels of letters, digits, '-' and
 * '_', each 1 to 63 long, not starting or ending with '-', and not all digits and dots. */
static bool xclient_valid_hostname(struct mx_span v)
{
	size_t label = 0;
	bool non_numeric = false;

	if (v.len == 0 || v.len > HOST_MAX)
		return false;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.ptr[i];
		if (c == '.') {
			if (label == 0 || v.ptr[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!mx_ctype_is_hostname(c))
			return false;
		if (c == '-' && label == 0)
			return false;
		if (!mx_ctype_is_digit(c))
			non_numeric = true;
		if (++label > 63)
			return false;
	}
	return label > 0 && v.ptr[v.len - 1] != '-' && non_numeric;
}

/* Postfix's valid_ipv4_hostaddr(): four decimal octets, each at most 255 (leading zeros
 * allowed), the first not 0. */
static bool xclient_valid_ipv4(struct mx_span v)
{
	unsigned parts = 0, val = 0, digits = 0;
	for (size_t i = 0; i <= v.len; i++) {
		if (i == v.len || v.ptr[i] == '.') {
			if (digits == 0 || (parts == 0 && val == 0))
				return false;
			parts++;
			val = digits = 0;
			continue;
		}
		if (v.ptr[i] < '0' || v.ptr[i] > '9')
			return false;
		val = val * 10 + (unsigned)(v.ptr[i] - '0');
		digits++;
		if (val > 255)
			return false;
	}
	return parts == 4;
}

/* Postfix's valid_mailhost_addr(): IPv4, or "IPv6:" (any case) and an IPv6 address.
 * On success *bare is the address without the prefix. (Postfix built for IPv4 only
 * refuses every IPv6 form; mxgate speaks IPv6.) */
static bool xclient_valid_addr(struct mx_span v, struct mx_span *bare)
{
	struct mx_span rest;
	if (smtp_span_prefix_nocase(v, "IPv6:", &rest)) {
		char tmp[INET6_ADDRSTRLEN + 1];
		unsigned char bin[16];
		if (rest.len == 0 || rest.len >= sizeof(tmp))
			return false;
		memcpy(tmp, rest.ptr, rest.len);
		tmp[rest.len] = '\0';
		if (inet_pton(AF_INET6, tmp, bin) != 1)
			return false;
		*bare = rest;
		return true;
	}
	*bare = v;
	return xclient_valid_ipv4(v);
}

/* PORT, DESTPORT: Postfix's alldig() and at most five digits (no range check). */
static bool xclient_valid_port(struct mx_span v)
{
	if (v.len == 0 || v.len > 5)
		return false;
	for (size_t i = 0; i < v.len; i++)
		if (v.ptr[i] < '0' || v.ptr[i] > '9')
			return false;
	return true;
}

static void xclient_bad_syntax(struct smtp_session *s, enum smtp_xclient_attr a,
			       struct mx_span value)
{
	smtp_session_replyf(s, "501 5.5.4 Bad %s syntax: %.*s", smtp_xclient_attr_name(a),
			    (int)value.len, value.ptr);
	smtp_session_engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
}

/* One attribute=value token. Returns false after replying. */
static bool xclient_attr(struct smtp_session *s, struct xclient_buf *x, struct mx_span tok)
{
	const char *eq = memchr(tok.ptr, '=', tok.len);
	if (!eq || eq + 1 == tok.ptr + tok.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Error: attribute=value expected");
		return false;
	}
	struct mx_span name = mx_span_make(tok.ptr, (size_t)(eq - tok.ptr));
	struct mx_span raw = mx_span_make(eq + 1, tok.len - name.len - 1);
	if (raw.len > XCLIENT_VALUE_MAX) {
		refuse_lit(s, SMTP_ERR_BAD_PARAMETER, "501 5.5.4 Error: attribute value too long");
		return false;
	}
	enum smtp_xclient_attr a = SMTP_XCLIENT_ATTR_MAX;
	for (unsigned i = 0; i < SMTP_XCLIENT_ATTR_MAX; i++) {
		if (smtp_span_eq_cstr_nocase(name,
					     smtp_xclient_attr_name((enum smtp_xclient_attr)i))) {
			a = (enum smtp_xclient_attr)i;
			break;
		}
	}
	/* Decoded into the attribute's slot (a scratch slot for an unknown name, whose
	 * reply shows only the name). A repeated attribute: the last one counts. */
	char scratch[XCLIENT_VALUE_MAX + 1];
	char *buf = a == SMTP_XCLIENT_ATTR_MAX ? scratch : x->val[a];
	long n = xclient_xtext(raw, buf);
	if (n < 0) {
		memcpy(buf, raw.ptr, raw.len);
		n = (long)raw.len;
	}
	/* Postfix's printable(): controls become '?', 8-bit bytes too unless UTF-8 is on
	 * and the value is UTF-8 */
	bool utf8 = s->cfg->enable_smtputf8 && smtp_utf8_valid(buf, (size_t)n);
	for (long i = 0; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < 32 || c == 127 || (c >= 128 && !utf8))
			buf[i] = '?';
	}
	buf[n] = '\0';
	struct mx_span v = mx_span_make(buf, (size_t)n);

	if (a == SMTP_XCLIENT_ATTR_MAX) {
		char echo[REPLY_LINE_MAX - 40];
		smtp_session_replyf(s, "501 5.5.4 Bad XCLIENT attribute name: %s",
				    smtp_session_printable(echo, sizeof(echo), name,
							   s->cfg->enable_smtputf8));
		smtp_session_engine_error(s, SMTP_ERR_BAD_PARAMETER, 501);
		return false;
	}
	struct smtp_xclient_value *out = &x->pub.attr[a];
	bool unavailable = smtp_span_eq_cstr_nocase(v, "[UNAVAILABLE]");
	bool tempunavail = smtp_span_eq_cstr_nocase(v, "[TEMPUNAVAIL]");
	struct mx_span bare = v;

	switch (a) {
	case SMTP_XCLIENT_NAME:
	case SMTP_XCLIENT_REVERSE_NAME:
		unavailable = unavailable || tempunavail;
		if (!unavailable && !xclient_valid_hostname(v)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_ADDR:
	case SMTP_XCLIENT_DESTADDR:
		tempunavail = false;
		if (!unavailable && !xclient_valid_addr(v, &bare)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_PORT:
	case SMTP_XCLIENT_DESTPORT:
		tempunavail = false;
		if (!unavailable && !xclient_valid_port(v)) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		break;
	case SMTP_XCLIENT_PROTO:
		/* [UNAVAILABLE] is no protocol name */
		unavailable = tempunavail = false;
		if (!smtp_span_eq_cstr_nocase(v, "SMTP") && !smtp_span_eq_cstr_nocase(v, "ESMTP")) {
			xclient_bad_syntax(s, a, v);
			return false;
		}
		for (long i = 0; i < n; i++)
			buf[i] = mx_ctype_upper(buf[i]);
		break;
	case SMTP_XCLIENT_HELO:
		/* never longer than 255 (the raw value is not), so never Postfix's "Bad
		 * HELO syntax"; neutered as Received: wants it */
		tempunavail = false;
		if (!unavailable)
			for (long i = 0; i < n; i++)
				if (strchr(" <>()\\\";@", buf[i]))
					buf[i] = '?';
		break;
	case SMTP_XCLIENT_LOGIN:
		tempunavail = false;
		break;
	case SMTP_XCLIENT_ATTR_MAX:
		assert(!"unknown attribute");
		return false;
	}
	out->present = true;
	out->unavailable = unavailable;
	out->tempunavail = tempunavail;
	out->value = bare;
	return true;
}

void smtp_session_cmd_xclient(struct smtp_session *s, struct mx_span args)
{
	/* Postfix's order of checks: transaction, syntax, authorization. */
	if (s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (args.len == 0) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: XCLIENT attribute=value...");
		return;
	}
	if (!s->xclient_authorized) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND, "550 5.7.0 Error: insufficient authorization");
		return;
	}
	if (!s->xcl && !(s->xcl = malloc(sizeof(*s->xcl)))) {
		refuse_lit(s, SMTP_ERR_MESSAGE_TOO_BIG, "451 4.3.0 Error: insufficient system resources");
		return;
	}
	memset(&s->xcl->pub, 0, sizeof(s->xcl->pub));
	size_t i = 0;
	while (i < args.len) {
		while (i < args.len && mx_ctype_is_blank(args.ptr[i]))
			i++;
		size_t start = i;
		while (i < args.len && !mx_ctype_is_blank(args.ptr[i]))
			i++;
		if (i > start && !xclient_attr(s, s->xcl, mx_span_make(args.ptr + start, i - start)))
			return;
	}
	struct smtp_event ev = { .type = SMTP_EV_XCLIENT, .needs_verdict = true };
	ev.u.xclient = &s->xcl->pub;
	smtp_session_evq_push(s, ev);
}

/* An accepted XCLIENT: the engine takes the new identity and goes back to the greeting
 * stage, as Postfix's xclient_cmd() does (HELO reset unless HELO= was given, protocol
 * SMTP unless PROTO= was given, transaction reset). */
void smtp_session_xclient_apply(struct smtp_session *s, bool authorized)
{
	const struct smtp_xclient_value *a = s->xcl->pub.attr;
	const struct smtp_xclient_value *v;

	v = &a[SMTP_XCLIENT_NAME];
	if (v->present)
		smtp_session_store_client_name(s, v->unavailable ? mx_span_cstr("unknown")
								 : v->value);
	v = &a[SMTP_XCLIENT_ADDR];
	if (v->present)
		smtp_session_store_client_addr(s, v->unavailable ? mx_span_cstr("unknown")
								 : v->value);
	v = &a[SMTP_XCLIENT_HELO];
	if (v->present && !v->unavailable && smtp_session_helo_neuter(s, v->value)) {
		smtp_session_helo_accept(s);
		s->helo_seen = true;
	} else {
		/* (without memory for the name the session ends: smtp_session_step()) */
		smtp_session_helo_forget(s);
		s->helo_seen = false;
	}
	v = &a[SMTP_XCLIENT_PROTO];
	s->esmtp = v->present && smtp_span_eq_cstr_nocase(v->value, "ESMTP");
	s->xclient_authorized = authorized;
	smtp_session_txn_reset(s);
}
