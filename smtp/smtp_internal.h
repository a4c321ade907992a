/* Small helpers shared by the files of smtp/, and what smtp_received.c needs from a
 * session; not part of the engine's public API. */
#ifndef MXGATE_SMTP_INTERNAL_H
#define MXGATE_SMTP_INTERNAL_H

#include <stdbool.h>
#include <string.h>

#include "mxgate/span.h"
#include "smtp/smtp_session.h"

struct smtp_received_info {
	struct mx_span helo;        /* neutered HELO name, empty before HELO */
	const char *client_name;    /* "unknown" without a verified reverse name */
	const char *client_addr;    /* numeric */
	const char *myhostname;
	const char *mail_name;
	const char *protocol;       /* SMTP, ESMTP, UTF8SMTP */
};

void smtp_session_received_info(const struct smtp_session *s, struct smtp_received_info *out);

/* ---- small helpers ---- */

static inline bool smtp_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool smtp_is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool smtp_span_eq_cstr_nocase(struct mx_span a, const char *b)
{
	return mx_span_eq_nocase(a, mx_span_cstr(b));
}

/* True when `s` starts with `prefix` (ASCII, any case); *rest is what follows. */
static inline bool smtp_span_prefix_nocase(struct mx_span s, const char *prefix,
					   struct mx_span *rest)
{
	size_t n = strlen(prefix);
	if (s.len < n || !mx_span_eq_nocase(mx_span_make(s.ptr, n), mx_span_make(prefix, n)))
		return false;
	*rest = mx_span_make(s.ptr + n, s.len - n);
	return true;
}

static inline struct mx_span smtp_span_trim(struct mx_span s)
{
	while (s.len && smtp_is_blank(s.ptr[0])) {
		s.ptr++;
		s.len--;
	}
	while (s.len && smtp_is_blank(s.ptr[s.len - 1]))
		s.len--;
	return s;
}

/* One hex digit's value, or -1. */
static inline int smtp_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10; /* RFC 3461 4 says upper case; Postfix decodes both */
	return -1;
}

#endif
