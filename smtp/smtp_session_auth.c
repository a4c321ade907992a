/* The session engine's side of SMTP AUTH (RFC 4954): what EHLO offers, the checks of the
 * AUTH command in the order of Postfix's smtpd_sasl_auth_cmd() (smtpd/smtpd_sasl_proto.c),
 * the 334 challenges and the client's response lines, and the session's authenticated
 * state. The exchange itself (mechanisms, base64, the backend) is the transport's: the
 * engine hands it SMTP_EV_AUTH and SMTP_EV_AUTH_RESPONSE and sends what its verdicts say.
 * Part of the engine split across smtp_session*.c. */
#include "smtp/smtp_session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "smtp/smtp_internal.h"
#include "smtp/smtp_session_internal.h"

void smtp_session_set_auth(struct smtp_session *s, bool enabled, const char *mechs,
			   unsigned flags)
{
	s->auth_enabled = enabled;
	s->auth_flags = flags;
	if (s->auth_mechs && mechs && strcmp(s->auth_mechs, mechs) == 0)
		return;
	free(s->auth_mechs);
	s->auth_mechs = NULL;
	/* at most 255 bytes (a reply line); out of memory, EHLO offers nothing and AUTH
	 * still works (the backend checks the mechanism) */
	if (enabled && mechs && mechs[0])
		s->auth_mechs = strndup(mechs, 255);
}

int smtp_session_set_auth_header(struct smtp_session *s, const char *name)
{
	char *copy = name ? strdup(name) : NULL;
	if (name && !copy)
		return -ENOMEM;
	free(s->auth_header_user);
	s->auth_header_user = copy;
	return 0;
}

bool smtp_session_authenticated(const struct smtp_session *s)
{
	return s->auth_authenticated;
}

/* EHLO's keywords (Postfix's ehlo_cmd()): "AUTH PLAIN LOGIN", and "AUTH=PLAIN LOGIN" for
 * broken_sasl_auth_clients, when AUTH is enabled, the mechanisms are known and no TLS is
 * required first. */
void smtp_session_auth_ehlo(const struct smtp_session *s, const char **kw, unsigned *n,
			    char *buf, size_t cap, char *broken, size_t broken_cap)
{
	/* Postfix offers it after a successful AUTH too (ehlo_cmd() does not look) */
	if (!s->auth_enabled || !s->auth_mechs || (s->auth_flags & SMTP_AUTH_NEED_TLS))
		return;
	snprintf(buf, cap, "AUTH %s", s->auth_mechs);
	kw[(*n)++] = buf;
	if (s->auth_flags & SMTP_AUTH_BROKEN_CLIENTS) {
		snprintf(broken, broken_cap, "AUTH=%s", s->auth_mechs);
		kw[(*n)++] = broken;
	}
}

void smtp_session_cmd_auth(struct smtp_session *s, struct mx_span args)
{
	if (s->cfg->helo_required && !s->helo_seen) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (!s->auth_enabled) {
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND,
			   "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (s->mail_given) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: MAIL transaction in progress");
		return;
	}
	if (s->auth_flags & SMTP_AUTH_NEED_TLS) {
		/* Postfix does not turn SASL on outside TLS with smtpd_tls_auth_only (smtpd.c
		 * "Safety: don't enable SASL..."), so its AUTH says "not enabled" there; the
		 * 504 of RFC 4954 section 4 that auth_cmd() has is never reached */
		refuse_lit(s, SMTP_ERR_UNKNOWN_COMMAND,
			   "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (s->auth_authenticated) {
		refuse_lit(s, SMTP_ERR_BAD_SEQUENCE, "503 5.5.1 Error: already authenticated");
		return;
	}
	/* "AUTH mechanism [initial-response]": one or two blank-separated words */
	size_t i = 0;
	while (i < args.len && !mx_ctype_is_blank(args.ptr[i]))
		i++;
	struct mx_span mech = mx_span_make(args.ptr, i);
	struct mx_span rest = smtp_span_trim(mx_span_make(args.ptr + i, args.len - i));
	size_t j = 0;
	while (j < rest.len && !mx_ctype_is_blank(rest.ptr[j]))
		j++;
	if (mech.len == 0 || j < rest.len) {
		refuse_lit(s, SMTP_ERR_SYNTAX, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	struct smtp_event ev = { .type = SMTP_EV_AUTH, .needs_verdict = true };
	ev.u.auth.mech = mech;
	ev.u.auth.response = rest;
	ev.u.auth.has_response = rest.len > 0;
	smtp_session_evq_push(s, ev);
}

/* The exchange is over: the response buffer goes, commands are read again. */
static void auth_end(struct smtp_session *s)
{
	free(s->auth_line);
	s->auth_line = NULL;
	s->auth_line_len = 0;
	s->auth_line_skip = false;
	if (s->state == ST_AUTH)
		smtp_session_enter_state(s, ST_COMMAND);
}

void smtp_session_auth_verdict(struct smtp_session *s, uint16_t code, const char *text)
{
	if (code == 334) {
		size_t limit = s->cfg->sasl_response_limit ? s->cfg->sasl_response_limit : 12288;
		if (!s->auth_line && !(s->auth_line = malloc(limit + 2))) {
			char host[HOST_MAX + 1];
			smtp_session_replyf(s, "454 4.3.0 %s Server local error",
					    smtp_session_myhostname(s, host, sizeof(host)));
			s->error_count++;
			auth_end(s);
			return;
		}
		/* RFC 4954 section 4: "334" SP [base64]; Postfix sends the space always */
		smtp_session_replyf(s, "334 %s", text ? text : "");
		s->auth_line_len = 0;
		s->auth_line_skip = false;
		smtp_session_enter_state(s, ST_AUTH);
		return;
	}
	auth_end(s);
	if (code / 100 == 2) {
		s->auth_authenticated = true;
		smtp_session_reply_text(s, code, text ? text : "2.7.0 Authentication successful");
		return;
	}
	smtp_session_reply_text(s, code, text);
	s->error_count++; /* Postfix counts a failed AUTH; 5xx replies get the tar pit */
}

/* One response line (RFC 4954 section 4), at most sasl_response_limit bytes without its
 * line end: Postfix's smtpd_chat_query_limit() reads it with smtp_get(), so a bare LF ends
 * it as well as CRLF. */
void smtp_session_auth_input(struct smtp_session *s, const char *buf, size_t len, size_t *pos)
{
	size_t limit = s->cfg->sasl_response_limit ? s->cfg->sasl_response_limit : 12288;
	const char *p = buf + *pos;
	size_t avail = len - *pos;
	const char *lf = memchr(p, '\n', avail);
	size_t seg = lf ? (size_t)(lf - p) + 1 : avail;

	*pos += seg;
	if (!s->auth_line_skip) {
		if (s->auth_line_len + seg > limit + 2) {
			s->auth_line_skip = true; /* too long: skip to its end */
			s->auth_line_len = 0;
		} else {
			memcpy(s->auth_line + s->auth_line_len, p, seg);
			s->auth_line_len += seg;
		}
	}
	if (!lf)
		return;
	s->requests++;
	struct smtp_event ev = { .type = SMTP_EV_AUTH_RESPONSE, .needs_verdict = true };
	size_t n = s->auth_line_len;
	if (n && s->auth_line[n - 1] == '\n')
		n--;
	if (n && s->auth_line[n - 1] == '\r')
		n--;
	ev.u.auth.too_long = s->auth_line_skip || n > limit;
	ev.u.auth.response = ev.u.auth.too_long ? mx_span_make(s->auth_line, 0)
						: mx_span_make(s->auth_line, n);
	ev.u.auth.has_response = true;
	s->auth_line_skip = false;
	smtp_session_enter_state(s, ST_COMMAND); /* a 334 verdict returns to ST_AUTH */
	smtp_session_evq_push(s, ev);
}
