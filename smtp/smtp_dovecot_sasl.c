/* The SMTP side of AUTH (RFC 4954) for the Dovecot codec: AUTH command arguments, client
 * responses, strict RFC 4648 base64, MAIL FROM's AUTH= (RFC 4954 section 5) and Postfix's
 * reply texts. See smtp_dovecot_auth.h. */
#include "smtp/smtp_dovecot_auth.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "smtp/smtp_address.h"

const char *smtp_dovecot_cmd_result_name(enum smtp_dovecot_cmd_result r)
{
	switch (r) {
	case SMTP_DOVECOT_CMD_OK:
		return "ok";
	case SMTP_DOVECOT_CMD_SYNTAX:
		return "syntax";
	case SMTP_DOVECOT_CMD_BAD_MECH:
		return "bad-mech";
	case SMTP_DOVECOT_CMD_BAD_BASE64:
		return "bad-base64";
	case SMTP_DOVECOT_CMD_RESULT_MAX:
		break;
	}
	return "?";
}

const char *smtp_dovecot_resp_result_name(enum smtp_dovecot_resp_result r)
{
	switch (r) {
	case SMTP_DOVECOT_RESP_DATA:
		return "data";
	case SMTP_DOVECOT_RESP_CANCEL:
		return "cancel";
	case SMTP_DOVECOT_RESP_BAD_BASE64:
		return "bad-base64";
	case SMTP_DOVECOT_RESP_TOO_LONG:
		return "too-long";
	case SMTP_DOVECOT_RESP_RESULT_MAX:
		break;
	}
	return "?";
}

/* ---- RFC 4648 base64 ---- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The 6-bit value of an alphabet character (RFC 4648 table 1), or -1. */
static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

ssize_t smtp_dovecot_b64_encode(const void *in, size_t n, char *out, size_t cap)
{
	const unsigned char *p = in;
	size_t need = SMTP_DOVECOT_B64_LEN(n), w = 0;

	if (n > ((size_t)-1 / 4) * 3 - 2 || need > cap)
		return -ENOSPC;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[w++] = b64_alphabet[(v >> 18) & 63];
		out[w++] = b64_alphabet[(v >> 12) & 63];
		out[w++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		out[w++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
	}
	assert(w == need);
	return (ssize_t)w;
}

ssize_t smtp_dovecot_b64_decode(struct mx_span in, void *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)in.ptr;
	unsigned char *o = out;
	size_t n = in.len;

	if (n % 4 != 0)
		return -EINVAL;
	size_t pads = n == 0 ? 0 : p[n - 1] != '=' ? 0 : p[n - 2] != '=' ? 1 : 2;
	size_t need = n / 4 * 3 - pads;
	bool write = o != NULL && need <= cap;
	size_t w = 0;

	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		size_t real = last ? 4 - pads : 4; /* alphabet characters in this quantum */
		int v[4] = { 0, 0, 0, 0 };
		for (size_t k = 0; k < real; k++) {
			v[k] = b64_value(p[i + k]);
			if (v[k] < 0)
				return -EINVAL;
		}
		/* Section 3.5: the bits that padding leaves over must be zero. */
		if (real == 2 && (v[1] & 0x0f) != 0)
			return -EINVAL;
		if (real == 3 && (v[2] & 0x03) != 0)
			return -EINVAL;
		uint32_t q = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		unsigned char b[3] = { (unsigned char)(q >> 16), (unsigned char)(q >> 8),
				       (unsigned char)q };
		for (size_t k = 0; k + 1 < real; k++) {
			if (write)
				o[w] = b[k];
			w++;
		}
	}
	assert(w == need);
	if (o != NULL && !write)
		return -ENOSPC;
	return (ssize_t)need;
}

/* ---- Replies ---- */

/* prefix + text into out, text made safe for a reply line ('?' for anything but
 * printable ASCII), cut to fit; NUL-terminated. */
static size_t reply_join(const char *prefix, const char *mid, struct mx_span text,
			 const char *suffix, char *out, size_t cap)
{
	assert(cap >= 64);
	size_t len = 0;

	for (const char *s = prefix; *s && len + 1 < cap; s++)
		out[len++] = *s;
	for (const char *s = mid; s && *s && len + 1 < cap; s++)
		out[len++] = *s;
	size_t tail = strlen(suffix);
	for (size_t i = 0; i < text.len && len + 1 + tail < cap; i++) {
		unsigned char ch = (unsigned char)text.ptr[i];
		out[len++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	for (const char *s = suffix; *s && len + 1 < cap; s++)
		out[len++] = *s;
	out[len] = '\0';
	return len;
}

size_t smtp_dovecot_fail_reply(bool temp, struct mx_span reason, char *out, size_t cap)
{
	if (reason.len == 0)
		reason = MX_SPAN_LIT(SMTP_DOVECOT_REASON_UNAVAILABLE);
	return reply_join(temp ? SMTP_DOVECOT_REPLY_TEMP_PREFIX : SMTP_DOVECOT_REPLY_FAIL_PREFIX,
			  NULL, reason, "", out, cap);
}

size_t smtp_dovecot_bad_mech_reply(struct mx_span mech, char *out, size_t cap)
{
	/* xsasl_dovecot_server_first: "Invalid authentication mechanism: '%s'" */
	return reply_join(SMTP_DOVECOT_REPLY_FAIL_PREFIX, "Invalid authentication mechanism: '",
			  mech, "'", out, cap);
}

/* ---- AUTH command and responses ---- */


/* RFC 4422 3.1 characters, letters of either case (see the header). */
static bool mech_syntax_ok(struct mx_span s)
{
	if (s.len == 0 || s.len > SMTP_DOVECOT_MECH_NAME_MAX)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char ch = (unsigned char)s.ptr[i];
		if (!(mx_ctype_is_alnum(ch) || ch == '-' || ch == '_'))
			return false;
	}
	return true;
}

enum smtp_dovecot_cmd_result smtp_dovecot_auth_cmd_parse(struct mx_span args,
							 struct smtp_dovecot_auth_cmd *out)
{
	struct mx_span tok[3];
	size_t ntok = 0, i = 0;

	memset(out, 0, sizeof(*out));
	while (i < args.len) {
		while (i < args.len && mx_ctype_is_blank(args.ptr[i]))
			i++;
		if (i == args.len)
			break;
		size_t start = i;
		while (i < args.len && !mx_ctype_is_blank(args.ptr[i]))
			i++;
		if (ntok == 3)
			return SMTP_DOVECOT_CMD_SYNTAX;
		tok[ntok++] = mx_span_make(args.ptr + start, i - start);
	}
	/* Postfix: argc < 2 || argc > 3 -> 501 5.5.4 Syntax: AUTH mechanism */
	if (ntok < 1 || ntok > 2)
		return SMTP_DOVECOT_CMD_SYNTAX;
	out->mech = tok[0];
	if (!mech_syntax_ok(tok[0]))
		return SMTP_DOVECOT_CMD_BAD_MECH;
	if (ntok == 2) {
		out->has_initial_response = true;
		/* RFC 4954 4: "=" is an initial response of zero length */
		if (tok[1].len == 1 && tok[1].ptr[0] == '=') {
			out->initial_response = mx_span_make(tok[1].ptr, 0);
		} else {
			out->initial_response = tok[1];
			if (smtp_dovecot_b64_decode(tok[1], NULL, 0) < 0)
				return SMTP_DOVECOT_CMD_BAD_BASE64;
		}
	}
	return SMTP_DOVECOT_CMD_OK;
}

enum smtp_dovecot_resp_result smtp_dovecot_response_parse(struct mx_span line, size_t limit)
{
	if (line.len > limit)
		return SMTP_DOVECOT_RESP_TOO_LONG;
	/* smtpd_sasl_glue.c compares the whole line with "*" */
	if (line.len == 1 && line.ptr[0] == '*')
		return SMTP_DOVECOT_RESP_CANCEL;
	if (smtp_dovecot_b64_decode(line, NULL, 0) < 0)
		return SMTP_DOVECOT_RESP_BAD_BASE64;
	return SMTP_DOVECOT_RESP_DATA;
}

/* ---- MAIL FROM AUTH= ---- */


int smtp_dovecot_mail_auth_param(struct mx_span value, char *out, size_t cap, size_t *out_len,
				 bool *is_null)
{
	size_t w = 0;
	bool fits = true;

	*out_len = 0;
	*is_null = false;
	if (value.len == 0)
		return -EINVAL; /* esmtp-value is 1*(...) */
	for (size_t i = 0; i < value.len;) {
		unsigned char ch = (unsigned char)value.ptr[i];
		if (ch < '!' || ch > '~' || ch == '=')
			return -EINVAL;
		if (ch == '+') {
			if (value.len - i < 3)
				return -EINVAL;
			int hi = mx_ctype_hex_value(value.ptr[i + 1]);
			int lo = mx_ctype_hex_value(value.ptr[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			ch = (unsigned char)(hi << 4 | lo);
			if (ch < 0x20 || ch == 0x7f)
				return -EINVAL;
			i += 3;
		} else {
			i++;
		}
		if (w == SMTP_PATH_MAX)
			return -EINVAL;
		if (w < cap)
			out[w] = (char)ch;
		else
			fits = false;
		w++;
	}
	if (!fits)
		return -ENOSPC;
	if (!smtp_utf8_valid(out, w))
		return -EINVAL;
	*out_len = w;
	*is_null = w == 2 && out[0] == '<' && out[1] == '>';
	return 0;
}
