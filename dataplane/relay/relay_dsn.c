/* Delivery status notifications (RFC 3464 in an RFC 6522 multipart/report), in the form
 * Postfix's bounce(8) writes with its default failure template, so that postmasters,
 * users and bounce processors see what they know:
 *
 *   Received: by MYHOSTNAME (mxgate)
 *           id DSNQID; DATE                     (Postfix's post_mail_init())
 *   Date: DATE
 *   From: MAILER-DAEMON@MYHOSTNAME (Mail Delivery System)
 *   Subject: Undelivered Mail Returned to Sender
 *   To: SENDER
 *   Auto-Submitted: auto-replied                (RFC 3834 5)
 *   MIME-Version: 1.0
 *   Content-Type: multipart/report; report-type=delivery-status;
 *           boundary="QUEUEID.TIME/MYHOSTNAME"
 *   Content-Transfer-Encoding: 8bit
 *   Message-Id: <YYYYMMDDHHMMSS.DSNQID@MYHOSTNAME>   (what Postfix's cleanup adds)
 *
 * then the three parts with the Content-Description headers Postfix writes
 * ("Notification", "Delivery report", "Undelivered Message" or "Undelivered Message
 * Headers"). Postfix with smtputf8_enable=yes (its default since compatibility level 1)
 * labels the text part utf-8 and the top level and returned original 8bit; so do we.
 *
 * Facts taken from Postfix 3.7 (bounce_notify_util.c, bounce_template.c, post_mail.c):
 * the boundary is QUEUEID.TIME/MYHOSTNAME; reasons and Remote-MTA/Diagnostic-Code are
 * wrapped at 79 columns with a 4-space hanging indent (line_wrap()); Diagnostic-Code is
 * "smtp; REPLY" when a next hop answered, else "X-Postfix; REASON"; Original-Recipient is
 * the decoded ORCPT "TYPE;ADDRESS"; the returned original gets a "Return-Path: <SENDER>"
 * line first; with RET=HDRS, or when bounce_size_limit is non-zero and the message is
 * larger (or its size unknown), only the header is returned (text/rfc822-headers);
 * SMTPUTF8 mail gets message/global-delivery-status and message/global or
 * message/global-headers (RFC 6533 6). An expired recipient is reported as Postfix
 * reports it: its last deferral reason and 4.X.X status with Action: failed.
 *
 * Beyond Postfix: the boundary is checked against everything that goes into the parts
 * and changed when it occurs there; no output line exceeds 998 octets (RFC 5322 2.1.1):
 * a word longer than that is split with a folding break; control characters in
 * foreign text (replies, addresses) are shown as '?', so nothing can end a line early. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dataplane/relay/relay_dsn.h"

/* Postfix line_wrap() width and hanging indent for bounce text and DSN fields. */
#define DSN_WRAP_WIDTH 79
#define DSN_WRAP_INDENT 4
/* Below the 998-octet line limit, with room for the indent and CR LF. */
#define DSN_LINE_HARD 990
/* RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
#define DSN_BOUNDARY_MAX 70

enum dsn_notify {
	DSN_NOTIFY_NONE = 0,  /* no NOTIFY parameter */
	DSN_NOTIFY_NEVER = 1, /* NOTIFY=NEVER */
	DSN_NOTIFY_SUCCESS = 2,
	DSN_NOTIFY_FAILURE = 4,
	DSN_NOTIFY_DELAY = 8,
};

struct dsn_buf {
	char *p;
	size_t len, cap;
	int error;
};

static void buf_put(struct dsn_buf *b, const void *p, size_t n)
{
	if (b->error || n == 0)
		return;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->error = -ENOMEM;
				return;
			}
			cap *= 2;
		}
		char *np = realloc(b->p, cap);
		if (!np) {
			b->error = -ENOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_str(struct dsn_buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_crlf(struct dsn_buf *b)
{
	buf_put(b, "\r\n", 2);
}

/* Our own text only (names, dates, numbers): never foreign bytes. */
__attribute__((format(printf, 2, 3))) static void buf_fmt(struct dsn_buf *b, const char *fmt,
							    ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert(n >= 0);
	if ((size_t)n < sizeof(tmp)) {
		buf_put(b, tmp, (size_t)n);
		return;
	}
	/* a long configured host name */
	char *big = malloc((size_t)n + 1);
	if (!big) {
		b->error = b->error ? b->error : -ENOMEM;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_put(b, big, (size_t)n);
	free(big);
}

/* Length of the valid UTF-8 sequence (RFC 3629 4) at p, or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	unsigned cp = c & (0x3f >> (len - 1));
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

static bool is_utf8(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq((const unsigned char *)s + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

/* Foreign text made safe for one line: control characters (CR, LF, TAB, ...) become '?'
 * (as Postfix's printable() does); non-ASCII is kept when it is valid UTF-8 and utf8 is
 * allowed, else each byte becomes '?'. Returns a malloc'd string or NULL. */
static char *clean_text(const char *s, bool utf8)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			out[o++] = '?';
			i++;
		} else if (c < 0x80) {
			out[o++] = (char)c;
			i++;
		} else {
			size_t l = utf8 ? utf8_seq((const unsigned char *)s + i, n - i) : 0;
			if (l) {
				memcpy(out + o, s + i, l);
				o += l;
				i += l;
			} else {
				out[o++] = '?';
				i++;
			}
		}
	}
	out[o] = 0;
	return out;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Write s (one logical line, no control characters) as lines: broken at white space so
 * that a line fits in `soft` columns (0: no soft limit), continuation lines indented by
 * DSN_WRAP_INDENT (which also makes them folded header lines, RFC 5322 2.2.3). A word
 * that does not fit DSN_LINE_HARD is split there (at a UTF-8 character boundary). */
static void put_wrapped(struct dsn_buf *b, const char *s, size_t soft)
{
	const char *p = s, *end = s + strlen(s);
	size_t indent = 0;

	for (;;) {
		size_t hard = DSN_LINE_HARD - indent;
		size_t limit = hard;
		if (soft && soft - indent < limit)
			limit = soft > indent ? soft - indent : 1;
		size_t rest = (size_t)(end - p);
		if (indent)
			buf_put(b, "        ", indent);
		if (rest <= limit) {
			buf_put(b, p, rest);
			buf_crlf(b);
			return;
		}
		/* The last blank within the limit ends this line; else, as line_wrap() does,
		 * a long word stays whole up to the next blank, unless that is past the hard
		 * limit. */
		const char *brk = NULL;
		for (size_t i = limit; i > 0; i--)
			if (is_blank(p[i])) {
				brk = p + i;
				break;
			}
		if (!brk)
			for (size_t i = limit + 1; i <= hard && i < rest; i++)
				if (is_blank(p[i])) {
					brk = p + i;
					break;
				}
		if (!brk) {
			const char *cut = p + (hard < rest ? hard : rest);
			while (cut > p + 1 && ((unsigned char)*cut & 0xc0) == 0x80)
				cut--;
			buf_put(b, p, (size_t)(cut - p));
			buf_crlf(b);
			p = cut;
		} else {
			const char *e = brk;
			while (e > p && is_blank(e[-1]))
				e--;
			buf_put(b, p, (size_t)(e - p));
			buf_crlf(b);
			p = brk;
			while (p < end && is_blank(*p))
				p++;
			if (p == end)
				return;
		}
		indent = DSN_WRAP_INDENT;
	}
}

/* "NAME: VALUE" with VALUE cleaned, wrapped at `soft` (0: only the hard limit). */
static void put_field(struct dsn_buf *b, const char *name, const char *value, bool utf8,
		      size_t soft)
{
	char *v = clean_text(value, utf8);
	if (!v) {
		b->error = b->error ? b->error : -ENOMEM;
		return;
	}
	size_t n = strlen(name) + 2 + strlen(v) + 1;
	char *line = malloc(n);
	if (!line) {
		free(v);
		b->error = b->error ? b->error : -ENOMEM;
		return;
	}
	snprintf(line, n, "%s: %s", name, v);
	put_wrapped(b, line, soft);
	free(line);
	free(v);
}

/* RFC 5322 3.3 date-time as Postfix's mail_date() writes it, in UTC. */
static void format_date(char *out, size_t cap, int64_t t64)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)t64;
	struct tm tm;
	if (!gmtime_r(&t, &tm)) {
		t = 0;
		gmtime_r(&t, &tm);
	}
	snprintf(out, cap, "%s, %2d %s %d %02d:%02d:%02d +0000 (UTC)", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
}

/* The value of ESMTP parameter `key` ("NOTIFY") among params, or NULL; a keyword without
 * value ("SMTPUTF8") gives "". */
static const char *param_value(char *const *params, size_t n, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < n; i++) {
		const char *p = params[i];
		if (!p || strncasecmp(p, key, kl) != 0)
			continue;
		if (p[kl] == '=')
			return p + kl + 1;
		if (p[kl] == 0)
			return p + kl;
	}
	return NULL;
}

/* RFC 3461 4.1: NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY. */
static unsigned rcpt_notify(const struct spool_rcpt *r)
{
	const char *v = param_value(r->params, r->nparams, "NOTIFY");
	if (!v)
		return DSN_NOTIFY_NONE;
	unsigned mask = 0;
	while (*v) {
		size_t l = strcspn(v, ",");
		if (l == 5 && strncasecmp(v, "NEVER", 5) == 0)
			mask |= DSN_NOTIFY_NEVER;
		else if (l == 7 && strncasecmp(v, "SUCCESS", 7) == 0)
			mask |= DSN_NOTIFY_SUCCESS;
		else if (l == 7 && strncasecmp(v, "FAILURE", 7) == 0)
			mask |= DSN_NOTIFY_FAILURE;
		else if (l == 5 && strncasecmp(v, "DELAY", 5) == 0)
			mask |= DSN_NOTIFY_DELAY;
		v += l;
		if (*v == ',')
			v++;
	}
	/* An unreadable value (the SMTP layer rejects those) reads as no NOTIFY: a
	 * failure is then reported, which is the default (RFC 3461 4.1). */
	return mask ? mask : DSN_NOTIFY_NONE;
}

static bool rcpt_wants_failure(const struct spool_rcpt *r)
{
	unsigned m = rcpt_notify(r);
	return m == DSN_NOTIFY_NONE || (m & DSN_NOTIFY_FAILURE);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Append code point cp as UTF-8; false when it is not a scalar value. */
static bool put_utf8(char *out, size_t *o, unsigned long cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
	return true;
}

/* Decode xtext (RFC 3461 4: "+" and two hex digits for a byte); with `unitext`, also
 * RFC 6533 3 utf-8-addr-xtext/unitext ("\x{HEX}" for a code point, raw UTF-8). Returns
 * a malloc'd string, or NULL (errno EINVAL: malformed, or it decodes to a control
 * character; ENOMEM). */
static char *xtext_decode(const char *s, bool unitext)
{
	size_t n = strlen(s);
	char *out = malloc(n + 1); /* every escape is longer than what it decodes to */
	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '+') {
			int h = hexval(s[i + 1]); /* s is NUL-terminated */
			int l = h >= 0 ? hexval(s[i + 2]) : -1;
			if (h < 0 || l < 0)
				goto bad;
			unsigned char d = (unsigned char)(h * 16 + l);
			if (d < 0x20 || d == 0x7f)
				goto bad;
			out[o++] = (char)d;
			i += 3;
		} else if (unitext && c == '\\' && s[i + 1] == 'x' && s[i + 2] == '{') {
			size_t j = i + 3;
			unsigned long cp = 0;
			int digits = 0;
			for (; s[j] && s[j] != '}' && digits < 6; j++, digits++) {
				int v = hexval(s[j]);
				if (v < 0)
					goto bad;
				cp = cp * 16 + (unsigned long)v;
			}
			if (s[j] != '}' || digits < 2 || cp < 0x20 || cp == 0x7f ||
			    !put_utf8(out, &o, cp))
				goto bad;
			i = j + 1;
		} else if (c >= 0x80 && unitext) {
			size_t l = utf8_seq((const unsigned char *)s + i, n - i);
			if (!l)
				goto bad;
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		} else if (c > 0x20 && c < 0x7f && c != '=') {
			out[o++] = (char)c;
			i++;
		} else {
			goto bad;
		}
	}
	out[o] = 0;
	return out;
bad:
	free(out);
	errno = EINVAL;
	return NULL;
}

/* ORCPT=addr-type;xtext (RFC 3461 4.2) decoded to "addr-type;address" as Postfix
 * reports it in Original-Recipient. NULL when absent or malformed (or ENOMEM, with
 * *err set). */
static char *orcpt_decode(const struct spool_rcpt *r, int *err)
{
	const char *v = param_value(r->params, r->nparams, "ORCPT");
	if (!v)
		return NULL;
	const char *semi = strchr(v, ';');
	if (!semi || semi == v || semi - v > 64)
		return NULL;
	for (const char *t = v; t < semi; t++)
		if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') ||
		      (*t >= '0' && *t <= '9') || *t == '-'))
			return NULL;
	bool utf8 = (size_t)(semi - v) == 5 && strncasecmp(v, "utf-8", 5) == 0;
	char *addr = xtext_decode(semi + 1, utf8);
	if (!addr) {
		if (errno == ENOMEM)
			*err = -ENOMEM;
		return NULL;
	}
	if (!*addr) {
		free(addr);
		return NULL;
	}
	size_t n = (size_t)(semi - v) + 1 + strlen(addr) + 1;
	char *out = malloc(n);
	if (!out) {
		free(addr);
		*err = -ENOMEM;
		return NULL;
	}
	snprintf(out, n, "%.*s;%s", (int)(semi - v), v, addr);
	free(addr);
	return out;
}

static bool occurs_in(const char *hay, size_t n, const char *needle)
{
	return hay && memmem(hay, n, needle, strlen(needle)) != NULL;
}

static bool occurs_in_str(const char *hay, const char *needle)
{
	return hay && strstr(hay, needle) != NULL;
}

static bool boundary_collides(const char *bd, const struct spool_record *orig,
			      const struct relay_dsn_rcpt *rcpts, size_t n)
{
	if (occurs_in(orig->message, orig->message ? orig->size : 0, bd) ||
	    occurs_in_str(orig->sender, bd))
		return true;
	for (size_t i = 0; i < orig->nmail_params; i++)
		if (occurs_in_str(orig->mail_params[i], bd))
			return true;
	for (size_t i = 0; i < n; i++) {
		const struct spool_rcpt *r = &orig->rcpts[rcpts[i].index];
		if (occurs_in_str(r->addr, bd) || occurs_in_str(rcpts[i].reason, bd) ||
		    occurs_in_str(rcpts[i].diagnostic, bd) ||
		    occurs_in_str(rcpts[i].remote_mta, bd))
			return true;
		for (size_t j = 0; j < r->nparams; j++)
			if (occurs_in_str(r->params[j], bd))
				return true;
	}
	return false;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Postfix's QUEUEID.TIME/MYHOSTNAME; when that text occurs in what the parts carry, a
 * hash of the original is added, so that a sender cannot plan a collision; the
 * hostname is shortened when the boundary would exceed RFC 2046's 70 characters. */
static void choose_boundary(char *bd, size_t cap, const struct relay_dsn_params *p,
			    const struct spool_record *orig, const struct relay_dsn_rcpt *rcpts,
			    size_t n)
{
	(void)cap; /* only the asserts read it */
	uint64_t h = 0xcbf29ce484222325ull;
	bool hashed = false;
	for (unsigned attempt = 0;; attempt++) {
		char head[80];
		if (attempt == 0) {
			snprintf(head, sizeof(head), "%s.%lld/", orig->queue_id, (long long)p->now);
		} else {
			if (!hashed) {
				for (uint64_t i = 0; orig->message && i < orig->size; i++)
					h = (h ^ (unsigned char)orig->message[i]) *
					    0x100000001b3ull;
				hashed = true;
			}
			snprintf(head, sizeof(head), "%s.%lld.%016llx/", orig->queue_id,
				 (long long)p->now, (unsigned long long)mix64(h + attempt));
		}
		assert(cap > DSN_BOUNDARY_MAX);
		size_t hl = strlen(head), hn = strlen(p->myhostname);
		assert(hl < DSN_BOUNDARY_MAX); /* a queue ID, a time, a hash */
		if (hn > DSN_BOUNDARY_MAX - hl)
			hn = DSN_BOUNDARY_MAX - hl;
		memcpy(bd, head, hl);
		memcpy(bd + hl, p->myhostname, hn);
		bd[hl + hn] = 0;
		/* A boundary may not end in a space (RFC 2046 5.1.1); hostnames have none. */
		if (!boundary_collides(bd, orig, rcpts, n))
			return;
	}
}

/* RFC 5322 2.2: a header field name is printable ASCII but ':'; Postfix's is_header()
 * also allows white space before the colon. */
static bool is_header_line(const char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f && p[i] != ':')
		i++;
	if (i == 0)
		return false;
	while (i < n && is_blank(p[i]))
		i++;
	return i < n && p[i] == ':';
}

/* Copy the original (or only its header) with CR LF line ends: a bare LF or CR, which
 * the SMTP layer does not accept, is turned into CR LF rather than passed on. */
static void put_original(struct dsn_buf *b, const char *m, size_t n, bool headers_only)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && m[j] != '\r' && m[j] != '\n')
			j++;
		if (headers_only && !(j > i && (is_blank(m[i]) || is_header_line(m + i, j - i))))
			return;
		buf_put(b, m + i, j - i);
		buf_crlf(b);
		if (j < n && m[j] == '\r' && j + 1 < n && m[j + 1] == '\n')
			j += 2;
		else if (j < n)
			j++;
		i = j;
	}
}

bool relay_dsn_owed(const struct spool_record *orig, const struct relay_dsn_rcpt *rcpts,
		    size_t n)
{
	if (!orig->sender || !*orig->sender)
		return false;
	for (size_t i = 0; i < n; i++) {
		assert(rcpts[i].index < orig->nrcpt);
		if (rcpt_wants_failure(&orig->rcpts[rcpts[i].index]))
			return true;
	}
	return false;
}

int relay_dsn_build(const struct relay_dsn_params *p, const struct spool_record *orig,
		    const struct relay_dsn_rcpt *rcpts, size_t n, char **out, size_t *outlen)
{
	assert(p && p->myhostname && p->dsn_queue_id && orig && out && outlen);
	*out = NULL;
	*outlen = 0;
	if (!relay_dsn_owed(orig, rcpts, n))
		return -EINVAL;

	const bool smtputf8 = param_value(orig->mail_params, orig->nmail_params, "SMTPUTF8");
	const char *ret = param_value(orig->mail_params, orig->nmail_params, "RET");
	bool headers_only = ret && strcasecmp(ret, "HDRS") == 0;
	/* Postfix: a large message is returned as its header only, so that truncation
	 * cannot damage the MIME structure. */
	if (p->bounce_size_limit > 0 && (orig->size == 0 || orig->size > p->bounce_size_limit))
		headers_only = true;

	struct dsn_buf b = { 0 };
	char date[64], boundary[DSN_BOUNDARY_MAX + 1];
	format_date(date, sizeof(date), p->now);
	choose_boundary(boundary, sizeof(boundary), p, orig, rcpts, n);

	/* The header, in the order Postfix's post_mail_init(), bounce_header() and
	 * cleanup write it. */
	buf_fmt(&b, "Received: by %s (mxgate)\r\n\tid %s; %s\r\n", p->myhostname,
		p->dsn_queue_id, date);
	buf_fmt(&b, "Date: %s\r\n", date);
	buf_fmt(&b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", p->myhostname);
	buf_str(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
	put_field(&b, "To", orig->sender, smtputf8, 0);
	buf_str(&b, "Auto-Submitted: auto-replied\r\n");
	buf_str(&b, "MIME-Version: 1.0\r\n");
	buf_str(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n");
	buf_fmt(&b, "\tboundary=\"%s\"\r\n", boundary);
	buf_str(&b, "Content-Transfer-Encoding: 8bit\r\n");
	{
		time_t t = (time_t)p->now;
		struct tm tm;
		if (!gmtime_r(&t, &tm)) {
			t = 0;
			gmtime_r(&t, &tm);
		}
		buf_fmt(&b, "Message-Id: <%04d%02d%02d%02d%02d%02d.%s@%s>\r\n",
			tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			tm.tm_sec, p->dsn_queue_id, p->myhostname);
	}
	buf_str(&b, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* Part 1: the default failure template (`postconf -b`), then one paragraph per
	 * reported recipient. */
	buf_fmt(&b, "--%s\r\n", boundary);
	buf_str(&b, "Content-Description: Notification\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: 8bit\r\n\r\n");
	buf_fmt(&b, "This is the mail system at host %s.\r\n", p->myhostname);
	buf_str(&b, "\r\n"
		    "I'm sorry to have to inform you that your message could not\r\n"
		    "be delivered to one or more recipients. It's attached below.\r\n"
		    "\r\n"
		    "For further assistance, please send mail to postmaster.\r\n"
		    "\r\n"
		    "If you do so, please include this problem report. You can\r\n"
		    "delete your own text from the attached returned message.\r\n"
		    "\r\n"
		    "                   The mail system\r\n");
	for (size_t i = 0; i < n; i++) {
		const struct relay_dsn_rcpt *d = &rcpts[i];
		const struct spool_rcpt *r = &orig->rcpts[d->index];
		if (!rcpt_wants_failure(r))
			continue;
		const char *reason = d->reason && *d->reason ? d->reason
				     : d->expired            ? "delivery time expired"
							     : "unknown reason";
		char *a = clean_text(r->addr ? r->addr : "", true);
		char *why = clean_text(reason, true);
		size_t len = (a ? strlen(a) : 0) + (why ? strlen(why) : 0) + 8;
		char *line = a && why ? malloc(len) : NULL;
		if (line) {
			snprintf(line, len, "<%s>: %s", a, why);
			buf_crlf(&b);
			put_wrapped(&b, line, DSN_WRAP_WIDTH);
		} else if (!b.error) {
			b.error = -ENOMEM;
		}
		free(line);
		free(why);
		free(a);
	}

	/* Part 2: RFC 3464 2.2 per-message fields, then 2.3 per-recipient fields. Non-ASCII
	 * only in message/global-delivery-status (RFC 6533 6.2). */
	buf_crlf(&b);
	buf_fmt(&b, "--%s\r\n", boundary);
	buf_str(&b, "Content-Description: Delivery report\r\n");
	if (smtputf8)
		buf_str(&b, "Content-Type: message/global-delivery-status\r\n"
			    "Content-Transfer-Encoding: 8bit\r\n");
	else
		buf_str(&b, "Content-Type: message/delivery-status\r\n");
	buf_crlf(&b);
	buf_fmt(&b, "Reporting-MTA: dns; %s\r\n", p->myhostname);
	const char *envid_x = param_value(orig->mail_params, orig->nmail_params, "ENVID");
	if (envid_x && *envid_x) {
		char *envid = xtext_decode(envid_x, false);
		if (envid) {
			if (*envid)
				put_field(&b, "Original-Envelope-Id", envid, false, 0);
			free(envid);
		} else if (errno == ENOMEM && !b.error) {
			b.error = -ENOMEM;
		}
	}
	buf_fmt(&b, "X-Postfix-Queue-ID: %s\r\n", orig->queue_id);
	{
		/* RFC 6533 3: the utf-8 type only in a global report */
		bool u = smtputf8 && !is_ascii(orig->sender) && is_utf8(orig->sender);
		size_t len = strlen(orig->sender) + 16;
		char *v = malloc(len);
		if (v) {
			snprintf(v, len, "%s; %s", u ? "utf-8" : "rfc822", orig->sender);
			put_field(&b, "X-Postfix-Sender", v, smtputf8, 0);
			free(v);
		} else if (!b.error) {
			b.error = -ENOMEM;
		}
	}
	if (orig->arrival > 0) {
		char adate[64];
		format_date(adate, sizeof(adate), orig->arrival);
		buf_fmt(&b, "Arrival-Date: %s\r\n", adate);
	}
	for (size_t i = 0; i < n && !b.error; i++) {
		const struct relay_dsn_rcpt *d = &rcpts[i];
		const struct spool_rcpt *r = &orig->rcpts[d->index];
		if (!rcpt_wants_failure(r))
			continue;
		const char *addr = r->addr ? r->addr : "";
		buf_crlf(&b);
		/* RFC 6533 3: the utf-8 address type for a non-ASCII address. */
		bool u = smtputf8 && !is_ascii(addr) && is_utf8(addr);
		size_t len = strlen(addr) + 16;
		char *v = malloc(len);
		if (!v) {
			b.error = -ENOMEM;
			break;
		}
		snprintf(v, len, "%s; %s", u ? "utf-8" : "rfc822", addr);
		put_field(&b, "Final-Recipient", v, smtputf8, 0);
		free(v);
		int err = 0;
		char *orcpt = orcpt_decode(r, &err);
		if (err && !b.error)
			b.error = err;
		if (orcpt) {
			put_field(&b, "Original-Recipient", orcpt, smtputf8, 0);
			free(orcpt);
		}
		buf_str(&b, "Action: failed\r\n");
		const char *status = d->status && *d->status ? d->status
				     : d->expired            ? "4.4.7"
							     : "5.0.0";
		put_field(&b, "Status", status, false, 0);
		if (d->remote_mta && *d->remote_mta) {
			/* mta-name-type dns takes a host name: "name[addr]" gives "name" (the
			 * address when there is no name), as Postfix reports it. */
			size_t ml = strlen(d->remote_mta);
			const char *lb = strchr(d->remote_mta, '[');
			char *host;
			if (lb && ml && d->remote_mta[ml - 1] == ']')
				host = lb > d->remote_mta
					       ? strndup(d->remote_mta,
							 (size_t)(lb - d->remote_mta))
					       : strndup(lb + 1, ml - 2);
			else
				host = strdup(d->remote_mta);
			char *mv = host ? malloc(strlen(host) + 8) : NULL;
			if (mv) {
				sprintf(mv, "dns; %s", host);
				put_field(&b, "Remote-MTA", mv, smtputf8, DSN_WRAP_WIDTH);
			} else {
				b.error = -ENOMEM;
			}
			free(mv);
			free(host);
		}
		bool smtp = d->diagnostic && *d->diagnostic;
		const char *dtext = smtp ? d->diagnostic
				    : d->reason && *d->reason ? d->reason
				    : d->expired              ? "delivery time expired"
							      : "unknown reason";
		char *dv = malloc(strlen(dtext) + 16);
		if (!dv) {
			b.error = -ENOMEM;
			break;
		}
		sprintf(dv, "%s; %s", smtp ? "smtp" : "X-Postfix", dtext);
		put_field(&b, "Diagnostic-Code", dv, smtputf8, DSN_WRAP_WIDTH);
		free(dv);
	}

	/* Part 3: the original, or its header. */
	buf_crlf(&b);
	buf_fmt(&b, "--%s\r\n", boundary);
	buf_fmt(&b, "Content-Description: Undelivered Message%s\r\n",
		headers_only ? " Headers" : "");
	if (smtputf8)
		buf_fmt(&b, "Content-Type: message/%s\r\n",
			headers_only ? "global-headers" : "global");
	else
		buf_fmt(&b, "Content-Type: %s\r\n",
			headers_only ? "text/rfc822-headers" : "message/rfc822");
	buf_str(&b, "Content-Transfer-Encoding: 8bit\r\n\r\n");
	if (!orig->message || orig->size == 0) {
		buf_str(&b, "\t--- Undelivered message unavailable ---\r\n");
	} else {
		/* Postfix's cleanup removed Return-Path:; bounce(8) puts one back. */
		char *s = clean_text(orig->sender, smtputf8);
		if (s) {
			char *line = malloc(strlen(s) + 20);
			if (line) {
				sprintf(line, "Return-Path: <%s>", s);
				put_wrapped(&b, line, 0);
				free(line);
			} else if (!b.error) {
				b.error = -ENOMEM;
			}
			free(s);
		} else if (!b.error) {
			b.error = -ENOMEM;
		}
		put_original(&b, orig->message, (size_t)orig->size, headers_only);
	}
	buf_crlf(&b);
	buf_fmt(&b, "--%s--\r\n", boundary);

	if (b.error) {
		free(b.p);
		return b.error;
	}
	*out = b.p;
	*outlen = b.len;
	return 0;
}
