/* The Received: header mxgate prepends (RFC 5321 4.4), in the form of Postfix's
 * smtpd_received(), which postmasters' log and header tooling knows:
 *
 *     Received: from HELO (NAME [ADDR])
 *             by MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUE_ID
 *             for <RCPT>; DATE
 *
 * or, without exactly one recipient, "... id QUEUE_ID;" and the date on its own line.
 * HELO is the neutered HELO name (the client name when there was none), NAME "unknown"
 * without a verified reverse name, and ADDR an IPv6 address as "IPv6:2001:db8::1" (the
 * RFC 5321 4.1.3 literal form Postfix uses). DATE is RFC 5322 3.3 with a numeric zone and
 * the day of month space-padded, as Postfix's mail_date() writes it. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "smtp/smtp_internal.h"
#include "smtp/smtp_session.h"

struct writer {
	char *out;
	size_t cap;
	size_t len; /* what it needed, which may exceed cap */
};

static void put(struct writer *w, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++, w->len++)
		if (w->len + 1 < w->cap)
			w->out[w->len] = p[i];
}

static void put_str(struct writer *w, const char *s)
{
	put(w, s, strlen(s));
}

/* Header text from elsewhere: no control character may reach the header (a CR or LF
 * would start a new header line); 8-bit text is kept (RFC 6532). */
static void put_clean(struct writer *w, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char ch = (c < 32 || c == 127) ? '?' : (char)c;
		put(w, &ch, 1);
	}
}

static void put_clean_str(struct writer *w, const char *s)
{
	put_clean(w, s, strlen(s));
}

static void put_date(struct writer *w, int64_t now, int tz_offset_min)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	/* zones are within +-14 h; a wild value must not turn into a wild date */
	if (tz_offset_min < -24 * 60 || tz_offset_min > 24 * 60)
		tz_offset_min = 0;
	time_t t = (time_t)(now + (int64_t)tz_offset_min * 60);
	struct tm tm;
	char buf[64];

	if (!gmtime_r(&t, &tm)) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	int off = tz_offset_min < 0 ? -tz_offset_min : tz_offset_min;
	snprintf(buf, sizeof(buf), "%s, %2d %s %d %02d:%02d:%02d %c%02d%02d", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, tz_offset_min < 0 ? '-' : '+', off / 60, off % 60);
	put_str(w, buf);
}

size_t smtp_received_header(char *out, size_t cap, const struct smtp_session *s,
			    const char *queue_id, const char *single_rcpt, int64_t now,
			    int tz_offset_min)
{
	struct smtp_received_info ri;
	struct writer w = { out, cap, 0 };

	smtp_session_received_info(s, &ri);
	put_str(&w, "Received: from ");
	if (ri.helo.len)
		put_clean(&w, ri.helo.ptr, ri.helo.len);
	else
		put_clean_str(&w, ri.client_name);
	put_str(&w, " (");
	put_clean_str(&w, ri.client_name);
	put_str(&w, " [");
	if (strchr(ri.client_addr, ':'))
		put_str(&w, "IPv6:");
	put_clean_str(&w, ri.client_addr);
	put_str(&w, "])\r\n");
	if (ri.tls_clause) {
		/* Postfix's smtpd_tls_received_header lines ("\t(using TLSv1.3 with cipher
		 * ...)"), already cleaned by smtp_session_set_tls_received() */
		put_str(&w, ri.tls_clause);
		put_str(&w, "\r\n");
	}
	if (ri.auth_sender) {
		/* Postfix's comment_sanitize(): nothing that would end or nest the comment */
		put_str(&w, "\t(Authenticated sender: ");
		for (const char *p = ri.auth_sender; *p; p++) {
			if (*p == '(' || *p == ')' || *p == '\\')
				put(&w, "\\", 1);
			put_clean(&w, p, 1);
		}
		put_str(&w, ")\r\n");
	}
	put_str(&w, "\tby ");
	put_clean_str(&w, ri.myhostname ? ri.myhostname : "localhost");
	put_str(&w, " (");
	put_clean_str(&w, ri.mail_name ? ri.mail_name : "mxgate");
	put_str(&w, ") with ");
	put_str(&w, ri.protocol);
	if (queue_id && *queue_id) {
		put_str(&w, " id ");
		put_clean_str(&w, queue_id);
	}
	if (single_rcpt) {
		put_str(&w, "\r\n\tfor <");
		put_clean_str(&w, single_rcpt);
		put_str(&w, ">; ");
	} else {
		put_str(&w, ";\r\n\t");
	}
	put_date(&w, now, tz_offset_min);
	put_str(&w, "\r\n");
	if (cap)
		out[w.len < cap ? w.len : cap - 1] = '\0';
	return w.len;
}
