/* The client codec's reply parser (RFC 5321 4.2 replies, RFC 3463/2034 enhanced status
 * codes) and EHLO keyword parser (RFC 5321 4.1.1.1). The server on the other end may be
 * anything: lines are bounded (the start of a long line is kept, the rest dropped, and a
 * line past the hard bound is an error), replies have a bounded number of lines, and
 * whatever the text holds is made safe to log. */
#include "smtp/smtp_client_reply.h"

#include <assert.h>
#include <string.h>

#include "mxgate/ctype.h"

void smtp_client_reply_init(struct smtp_client_reply *r, char *line, size_t line_max,
			    size_t line_hard_max, char *text, size_t text_max, unsigned lines_max)
{
	assert(line && line_max >= 16 && line_hard_max >= line_max);
	assert(text && text_max >= 1 && lines_max >= 1);
	memset(r, 0, sizeof(*r));
	r->line = line;
	r->line_max = line_max;
	r->line_hard_max = line_hard_max;
	r->text = text;
	r->text_max = text_max;
	r->lines_max = lines_max;
}

static void smtp_client_reply_restart(struct smtp_client_reply *r)
{
	r->done = false;
	r->code = 0;
	r->lines = 0;
	r->text_len = 0;
	r->truncated = false;
	r->enhanced[0] = '\0';
	r->error = SMTP_CLIENT_ERR_NONE;
	r->last_line = mx_span_make(r->line, 0);
	r->last_line_cut = false;
}

void smtp_client_reply_reset(struct smtp_client_reply *r)
{
	smtp_client_reply_restart(r);
	r->line_len = 0;
	r->line_total = 0;
	r->cr = false;
}

bool smtp_client_reply_started(const struct smtp_client_reply *r)
{
	return !r->done && (r->lines > 0 || r->line_total > 0 || r->cr);
}

/* Append text for logs: control characters become '?', a tab a space (RFC 5321 4.2
 * textstring allows HT); bytes from 0x80 stay (RFC 6531 allows UTF-8 in replies). */
static void smtp_client_reply_text(struct smtp_client_reply *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r->text_len >= r->text_max) {
			r->truncated = true;
			return;
		}
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\t')
			ch = ' ';
		else if (ch < 0x20 || ch == 0x7f)
			ch = '?';
		r->text[r->text_len++] = (char)ch;
	}
}

bool smtp_client_enhanced_parse(struct mx_span text, uint16_t code,
				char out[SMTP_CLIENT_ENHANCED_MAX])
{
	/* status-code = class "." subject "." detail; class = "2" / "4" / "5";
	 * subject = 1*3digit; detail = 1*3digit (RFC 3463 2) */
	out[0] = '\0';
	const char *p = text.ptr;
	size_t n = text.len, i = 0;
	char cls = (char)('0' + code / 100);
	if (n < 5 || p[0] != cls || (cls != '2' && cls != '4' && cls != '5') || p[1] != '.')
		return false;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < n && i - start < 4 && mx_ctype_is_digit(p[i]))
			i++;
		if (i == start || i - start > 3)
			return false;
		if (part == 0) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
	}
	if (i < n && p[i] != ' ')
		return false;
	/* at most "5.123.123" = 9 bytes */
	memcpy(out, p, i);
	out[i] = '\0';
	return true;
}

/* The line in r->line[0..line_len) ended. RFC 5321 4.2:
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
 *   Reply-code = %x32-35 %x30-35 %x30-39 */
static enum smtp_client_rp_status smtp_client_reply_line_end(struct smtp_client_reply *r)
{
	const char *l = r->line;
	size_t n = r->line_len;
	bool cut = r->line_total > r->line_max;
	enum smtp_client_error err = SMTP_CLIENT_ERR_NONE;
	uint16_t code = 0;

	if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' ||
	    !mx_ctype_is_digit(l[2]) || (n > 3 && l[3] != ' ' && l[3] != '-')) {
		err = SMTP_CLIENT_ERR_MALFORMED;
	} else {
		code = (uint16_t)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0'));
		if (r->lines && code != r->code)
			err = SMTP_CLIENT_ERR_CODE_MISMATCH;
		else if (r->lines >= r->lines_max)
			err = SMTP_CLIENT_ERR_TOO_MANY_LINES;
	}
	if (err != SMTP_CLIENT_ERR_NONE) {
		if (err != SMTP_CLIENT_ERR_TOO_MANY_LINES) {
			/* the offending line, whole, is the text to log */
			r->text_len = 0;
			r->truncated = cut;
			smtp_client_reply_text(r, l, n);
		}
		r->error = err;
		r->last_line = mx_span_make(l, n);
		r->done = true;
		return SMTP_CLIENT_RP_ERROR;
	}

	struct mx_span text = n > 4 ? mx_span_make(l + 4, n - 4) : mx_span_make(l + n, 0);
	if (r->lines == 0) {
		r->code = code;
		(void)smtp_client_enhanced_parse(text, code, r->enhanced);
	}
	r->lines++;
	if (cut)
		r->truncated = true;
	if (text.len) {
		if (r->text_len)
			smtp_client_reply_text(r, " ", 1);
		smtp_client_reply_text(r, text.ptr, text.len);
	}
	r->last_line = text;
	r->last_line_cut = cut;
	if (n == 3 || l[3] == ' ') {
		r->done = true;
		return SMTP_CLIENT_RP_REPLY;
	}
	return SMTP_CLIENT_RP_LINE;
}

/* One byte of the current line (not its terminating LF). False past the hard bound. */
static bool smtp_client_reply_put(struct smtp_client_reply *r, char ch)
{
	if (r->line_total >= r->line_hard_max)
		return false;
	r->line_total++;
	if (r->line_len < r->line_max)
		r->line[r->line_len++] = ch;
	return true;
}

size_t smtp_client_reply_feed(struct smtp_client_reply *r, const char *buf, size_t len,
			      enum smtp_client_rp_status *st)
{
	if (r->done)
		smtp_client_reply_restart(r);
	size_t i = 0;
	while (i < len) {
		char ch = buf[i];
		if (ch == '\n') {
			/* CR LF, or a bare LF: both end the line (bare LF is taken as a
			 * line end, as most clients do) */
			i++;
			r->cr = false;
			*st = smtp_client_reply_line_end(r);
			r->line_len = 0;
			r->line_total = 0;
			return i;
		}
		if (r->cr) {
			/* a CR not followed by LF is a byte of the line */
			r->cr = false;
			if (!smtp_client_reply_put(r, '\r'))
				goto too_long;
		}
		if (ch == '\r') {
			r->cr = true;
			i++;
			continue;
		}
		/* the rest of the line up to a CR or LF in one go */
		size_t j = i;
		while (j < len && buf[j] != '\n' && buf[j] != '\r')
			j++;
		size_t run = j - i;
		bool over = run > r->line_hard_max - r->line_total;
		if (over)
			run = r->line_hard_max - r->line_total;
		size_t keep = r->line_max - r->line_len;
		if (keep > run)
			keep = run;
		memcpy(r->line + r->line_len, buf + i, keep);
		r->line_len += keep;
		r->line_total += run;
		i += run;
		if (over)
			goto too_long;
	}
	*st = SMTP_CLIENT_RP_MORE;
	return i;

too_long:
	r->error = SMTP_CLIENT_ERR_LINE_TOO_LONG;
	r->text_len = 0;
	r->truncated = true;
	smtp_client_reply_text(r, r->line, r->line_len);
	r->last_line = mx_span_make(r->line, r->line_len);
	r->done = true;
	r->line_len = 0;
	r->line_total = 0;
	r->cr = false;
	*st = SMTP_CLIENT_RP_ERROR;
	return i;
}

/* ---- EHLO keywords ---- */

static bool smtp_client_word_is(struct mx_span w, const char *name)
{
	return mx_span_eq_nocase(w, mx_span_cstr(name));
}

static const char *const smtp_client_auth_names[SMTP_CLIENT_AUTH_MECH_MAX] = {
	[SMTP_CLIENT_AUTH_PLAIN] = "PLAIN",
	[SMTP_CLIENT_AUTH_LOGIN] = "LOGIN",
	[SMTP_CLIENT_AUTH_CRAM_MD5] = "CRAM-MD5",
	[SMTP_CLIENT_AUTH_DIGEST_MD5] = "DIGEST-MD5",
	[SMTP_CLIENT_AUTH_SCRAM_SHA_1] = "SCRAM-SHA-1",
	[SMTP_CLIENT_AUTH_SCRAM_SHA_256] = "SCRAM-SHA-256",
	[SMTP_CLIENT_AUTH_XOAUTH2] = "XOAUTH2",
	[SMTP_CLIENT_AUTH_OAUTHBEARER] = "OAUTHBEARER",
	[SMTP_CLIENT_AUTH_EXTERNAL] = "EXTERNAL",
	[SMTP_CLIENT_AUTH_GSSAPI] = "GSSAPI",
	[SMTP_CLIENT_AUTH_NTLM] = "NTLM",
};

const char *smtp_client_auth_mech_name(enum smtp_client_auth_mech m)
{
	if ((unsigned)m < SMTP_CLIENT_AUTH_MECH_MAX)
		return smtp_client_auth_names[m];
	return "?";
}

static void smtp_client_auth_word(struct smtp_client_caps *caps, struct mx_span w)
{
	for (unsigned m = 0; m < SMTP_CLIENT_AUTH_MECH_MAX; m++)
		if (smtp_client_word_is(w, smtp_client_auth_names[m]))
			caps->auth_mechs |= 1u << m;
}

static void smtp_client_xclient_word(struct smtp_client_caps *caps, struct mx_span w)
{
	for (unsigned a = 0; a < SMTP_XCLIENT_ATTR_MAX; a++)
		if (smtp_client_word_is(w, smtp_xclient_attr_name((enum smtp_xclient_attr)a)))
			caps->xclient_attrs |= 1u << a;
}

/* RFC 1870 4: "SIZE" [SP number]; no number or 0 means no fixed limit. A number too big
 * for 64 bits is no limit we could exceed. Anything else is taken as no number. */
static uint64_t smtp_client_size_param(struct mx_span w)
{
	uint64_t v = 0;
	if (w.len == 0)
		return 0;
	for (size_t i = 0; i < w.len; i++) {
		if (!mx_ctype_is_digit(w.ptr[i]))
			return 0;
		unsigned d = (unsigned)(w.ptr[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return UINT64_MAX;
		v = v * 10 + d;
	}
	return v;
}

/* The next space-separated word of *rest (spaces and tabs both separate: servers are not
 * all careful). */
static bool smtp_client_next_word(struct mx_span *rest, struct mx_span *w)
{
	size_t i = 0;
	while (i < rest->len && (rest->ptr[i] == ' ' || rest->ptr[i] == '\t'))
		i++;
	size_t start = i;
	while (i < rest->len && rest->ptr[i] != ' ' && rest->ptr[i] != '\t')
		i++;
	*w = mx_span_make(rest->ptr + start, i - start);
	*rest = mx_span_make(rest->ptr + i, rest->len - i);
	return w->len > 0;
}

void smtp_client_caps_line(struct smtp_client_caps *caps, struct mx_span line, bool cut)
{
	if (cut) {
		/* drop the partial last word */
		while (line.len && line.ptr[line.len - 1] != ' ' && line.ptr[line.len - 1] != '\t')
			line.len--;
	}
	struct mx_span rest = line, kw, w;
	if (!smtp_client_next_word(&rest, &kw))
		return;
	/* "AUTH=LOGIN PLAIN": the form some servers still send for old clients */
	if (kw.len > 5 && mx_span_eq_nocase(mx_span_make(kw.ptr, 5), MX_SPAN_LIT("AUTH="))) {
		caps->auth = true;
		smtp_client_auth_word(caps, mx_span_make(kw.ptr + 5, kw.len - 5));
		while (smtp_client_next_word(&rest, &w))
			smtp_client_auth_word(caps, w);
		return;
	}
	if (smtp_client_word_is(kw, "PIPELINING")) {
		caps->pipelining = true;
	} else if (smtp_client_word_is(kw, "SIZE")) {
		caps->size = true;
		caps->size_limit = smtp_client_next_word(&rest, &w) ? smtp_client_size_param(w) : 0;
	} else if (smtp_client_word_is(kw, "8BITMIME")) {
		caps->eightbitmime = true;
	} else if (smtp_client_word_is(kw, "BINARYMIME")) {
		caps->binarymime = true;
	} else if (smtp_client_word_is(kw, "SMTPUTF8")) {
		caps->smtputf8 = true;
	} else if (smtp_client_word_is(kw, "DSN")) {
		caps->dsn = true;
	} else if (smtp_client_word_is(kw, "CHUNKING")) {
		caps->chunking = true;
	} else if (smtp_client_word_is(kw, "ENHANCEDSTATUSCODES")) {
		caps->enhancedstatuscodes = true;
	} else if (smtp_client_word_is(kw, "STARTTLS")) {
		caps->starttls = true;
	} else if (smtp_client_word_is(kw, "AUTH")) {
		caps->auth = true;
		while (smtp_client_next_word(&rest, &w))
			smtp_client_auth_word(caps, w);
	} else if (smtp_client_word_is(kw, "XCLIENT")) {
		caps->xclient = true;
		while (smtp_client_next_word(&rest, &w))
			smtp_client_xclient_word(caps, w);
	}
}
