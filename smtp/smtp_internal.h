/* Small helpers shared by the files of smtp/, and what smtp_received.c needs from a
 * session; not part of the engine's public API. */
#ifndef MXGATE_SMTP_INTERNAL_H
#define MXGATE_SMTP_INTERNAL_H

#include <stdbool.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/span.h"
#include "smtp/smtp_session.h"

struct smtp_received_info {
	struct mx_span helo;        /* neutered HELO name, empty before HELO */
	const char *client_name;    /* "unknown" without a verified reverse name */
	const char *client_addr;    /* numeric */
	const char *myhostname;
	const char *mail_name;
	const char *protocol;       /* SMTP, ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA, UTF8SMTP */
	const char *tls_clause;     /* Received:'s TLS lines, or NULL */
	const char *auth_sender;    /* "(Authenticated sender: NAME)", NULL: no such line */
};

void smtp_session_received_info(const struct smtp_session *s, struct smtp_received_info *out);

/* ---- small helpers ---- */

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
	while (s.len && mx_ctype_is_blank(s.ptr[0])) {
		s.ptr++;
		s.len--;
	}
	while (s.len && mx_ctype_is_blank(s.ptr[s.len - 1]))
		s.len--;
	return s;
}

#endif
