/* The session engine's replies: formatting (one line, a literal, a transport's multi-line
 * text), the output buffer the transport drains, and soft_bounce's 5xx -> 4xx rewriting of
 * everything that goes out. Part of the engine split across smtp_session*.c. */
#include "smtp/smtp_session.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_session_internal.h"

/* ---- replies ---- */

size_t smtp_session_out_pending(const struct smtp_session *s)
{
	return s->out_len - s->out_off;
}

/* soft_bounce = yes: every 5xx reply line leaves as the matching 4xx, and its 5.x.x
 * enhanced code as 4.x.x, as Postfix's smtpd_chat_reply() rewrites them; whatever wrote
 * the reply (the engine, a policy verdict, header_checks). */
static void out_soften(struct smtp_session *s, char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s->out_col == 0) {
			s->out_softened = p[i] == '5';
			if (s->out_softened)
				p[i] = '4';
		} else if (s->out_col == 4 && s->out_softened && p[i] == '5') {
			p[i] = '4';
		}
		s->out_col = p[i] == '\n' ? 0 : s->out_col + 1;
	}
}

void smtp_session_out_write(struct smtp_session *s, const char *p, size_t n)
{
	if (s->peer_gone)
		return; /* nobody will read it */
	if (!s->out && !(s->out = malloc(OUT_CAP))) {
		s->out_failed = true;
		return;
	}
	if (s->out_len + n > OUT_CAP && s->out_off > 0) {
		memmove(s->out, s->out + s->out_off, s->out_len - s->out_off);
		s->out_len -= s->out_off;
		s->out_off = 0;
	}
	/* The high-water mark leaves room for every reply one step can make. */
	assert(s->out_len + n <= OUT_CAP);
	if (s->out_len + n > OUT_CAP)
		n = OUT_CAP - s->out_len;
	memcpy(s->out + s->out_len, p, n);
	if (s->cfg->soft_bounce)
		out_soften(s, s->out + s->out_len, n);
	s->out_len += n;
}

/* One reply line; CRLF is appended. */
void smtp_session_replyf(struct smtp_session *s, const char *fmt, ...)
{
	char line[REPLY_LINE_MAX + 3];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, REPLY_LINE_MAX + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > REPLY_LINE_MAX)
		n = REPLY_LINE_MAX;
	line[n++] = '\r';
	line[n++] = '\n';
	smtp_session_out_write(s, line, (size_t)n);
}

/* A reply chosen by the transport: `text` may hold several lines separated by "\n" or
 * "\r\n" (a multi-line reply, RFC 5321 4.2.1); control characters become '?'. */
void smtp_session_reply_text(struct smtp_session *s, uint16_t code, const char *text)
{
	assert(code >= 200 && code <= 599);
	if (code < 200 || code > 599)
		code = 451;
	if (!text) {
		switch (code / 100) {
		case 2:
			text = "2.0.0 Ok";
			break;
		case 3:
			text = "End data with <CR><LF>.<CR><LF>";
			break;
		case 4:
			text = "4.7.1 Service unavailable - try again later";
			break;
		default:
			text = "5.7.1 Service unavailable";
			break;
		}
	}
	size_t total = 0;
	const char *p = text;
	for (;;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > REPLY_LINE_MAX - 4)
			n = REPLY_LINE_MAX - 4;
		bool last = !nl || nl[1] == '\0' || total + n + 6 > REPLY_MAX - REPLY_LINE_MAX;
		char line[REPLY_LINE_MAX + 3];
		int k = snprintf(line, sizeof(line), "%03u%c", (unsigned)code, last ? ' ' : '-');
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			line[k++] = (c < 32 || c == 127) ? '?' : (char)c;
		}
		line[k++] = '\r';
		line[k++] = '\n';
		smtp_session_out_write(s, line, (size_t)k);
		total += (size_t)k;
		if (last)
			break;
		p = nl + 1;
	}
}

/* Client text echoed in a reply or header: control characters become '?', and so do
 * 8-bit bytes unless `utf8` (the caller checked the text is UTF-8). Always terminated. */
const char *smtp_session_printable(char *dst, size_t cap, struct mx_span src, bool utf8)
{
	size_t n = src.len < cap - 1 ? src.len : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src.ptr[i];
		dst[i] = (c < 32 || c == 127 || (c >= 128 && !utf8)) ? '?' : (char)c;
	}
	dst[n] = '\0';
	return dst;
}

const char *smtp_session_myhostname(const struct smtp_session *s, char *buf, size_t cap)
{
	return smtp_session_printable(buf, cap, mx_span_cstr(s->cfg->myhostname), false);
}

/* ---- the output buffer ---- */

struct mx_span smtp_session_output(const struct smtp_session *s)
{
	if (!s->out)
		return mx_span_make("", 0);
	return mx_span_make(s->out + s->out_off, s->out_len - s->out_off);
}

void smtp_session_output_done(struct smtp_session *s, size_t n)
{
	assert(n <= smtp_session_out_pending(s));
	if (n > smtp_session_out_pending(s))
		n = smtp_session_out_pending(s);
	s->out_off += n;
	if (s->out_off == s->out_len) {
		s->out_off = s->out_len = 0;
		free(s->out);
		s->out = NULL;
	}
}
