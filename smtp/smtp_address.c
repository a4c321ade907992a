/* RFC 5321 section 4.1.2 paths and ESMTP parameters; see smtp_address.h for what is
 * accepted beyond the RFC and why. */
#include "smtp/smtp_address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "mxgate/ctype.h"

const char *smtp_path_result_name(enum smtp_path_result r)
{
	switch (r) {
	case SMTP_PATH_OK:
		return "ok";
	case SMTP_PATH_SYNTAX:
		return "syntax";
	case SMTP_PATH_TOO_LONG:
		return "too-long";
	case SMTP_PATH_RESULT_MAX:
		break;
	}
	return "?";
}

/* RFC 5322 atext as RFC 5321 4.1.2 uses it for Atom. */
static bool is_atext(unsigned char c)
{
	if (mx_ctype_is_alpha(c) || mx_ctype_is_digit(c))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* The length of the UTF-8 sequence (2..4 octets) of a non-ASCII character at p[0..n), or
 * 0 when it is not valid UTF-8 (RFC 3629 section 4: no overlong forms, no surrogates,
 * nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	if (cp >= 0xd800 && cp <= 0xdfff)
		return 0;
	return len;
}

bool smtp_utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(p + i, n - i);
		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

struct cursor {
	const unsigned char *p;
	size_t n;
	size_t i;
	bool non_ascii;
};

static int peek(const struct cursor *c)
{
	return c->i < c->n ? c->p[c->i] : -1;
}

/* Consume one UTF-8 non-ASCII character if one starts here. */
static bool take_utf8(struct cursor *c)
{
	if (c->i >= c->n || c->p[c->i] < 0x80)
		return false;
	size_t k = utf8_seq(c->p + c->i, c->n - c->i);
	if (k == 0)
		return false;
	c->i += k;
	c->non_ascii = true;
	return true;
}

/* Atom = 1*atext (RFC 6531 adds UTF8-non-ascii). */
static bool parse_atom(struct cursor *c)
{
	size_t start = c->i;

	for (;;) {
		int ch = peek(c);
		if (ch >= 0 && is_atext((unsigned char)ch))
			c->i++;
		else if (!take_utf8(c))
			break;
	}
	return c->i > start;
}

/* Quoted-string = DQUOTE *QcontentSMTP DQUOTE; qtextSMTP = %d32-33 / %d35-91 / %d93-126
 * (RFC 6531: / UTF8-non-ascii); quoted-pairSMTP = %d92 %d32-126. */
static bool parse_quoted(struct cursor *c)
{
	if (peek(c) != '"')
		return false;
	c->i++;
	for (;;) {
		int ch = peek(c);
		if (ch < 0)
			return false;
		if (ch == '"') {
			c->i++;
			return true;
		}
		if (ch == '\\') {
			if (c->i + 1 >= c->n || c->p[c->i + 1] < 32 || c->p[c->i + 1] > 126)
				return false;
			c->i += 2;
			continue;
		}
		if (ch >= 32 && ch <= 126) {
			c->i++;
			continue;
		}
		if (!take_utf8(c))
			return false;
	}
}

/* Local-part = Dot-string / Quoted-string. */
static bool parse_local_part(struct cursor *c)
{
	if (peek(c) == '"')
		return parse_quoted(c);
	if (!parse_atom(c))
		return false;
	while (peek(c) == '.') {
		c->i++;
		if (!parse_atom(c))
			return false;
	}
	return true;
}

/* One label of a domain: Let-dig [Ldh-str] with Ldh-str ending in Let-dig, or a U-label
 * (RFC 6531 sub-domain =/ U-label, whose octets we take as letters). At most 63 octets
 * (RFC 1035 2.3.4). */
static bool parse_label(struct cursor *c)
{
	size_t start = c->i;
	bool last_hyphen = false;

	for (;;) {
		int ch = peek(c);
		if (ch >= 0 && (mx_ctype_is_alpha((unsigned char)ch) || mx_ctype_is_digit((unsigned char)ch))) {
			c->i++;
			last_hyphen = false;
		} else if (ch == '-' && c->i > start) {
			c->i++;
			last_hyphen = true;
		} else if (take_utf8(c)) {
			last_hyphen = false;
		} else {
			break;
		}
	}
	return c->i > start && !last_hyphen && c->i - start <= 63;
}

/* IPv4-address-literal = Snum 3("." Snum); Snum = 1*3DIGIT with a value 0..255. */
static bool ipv4_literal(const unsigned char *p, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;
		while (i < n && mx_ctype_is_digit(p[i]) && digits < 4) {
			v = v * 10 + (p[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
		if (part < 3) {
			if (i >= n || p[i] != '.')
				return false;
			i++;
		}
	}
	return i == n;
}

static bool ascii_prefix_nocase(const unsigned char *p, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);
	return n >= k && mx_span_eq_nocase(mx_span_make((const char *)p, k), mx_span_make(prefix, k));
}

/* address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]" (RFC 5321 4.1.3). */
static bool parse_address_literal(struct cursor *c)
{
	if (peek(c) != '[')
		return false;
	size_t start = ++c->i;
	while (c->i < c->n && c->p[c->i] != ']' && c->p[c->i] != '[' && c->p[c->i] != '\\')
		c->i++;
	if (peek(c) != ']')
		return false;
	const unsigned char *lit = c->p + start;
	size_t len = c->i - start;
	c->i++;

	if (len > 0 && mx_ctype_is_digit(lit[0]))
		return ipv4_literal(lit, len);
	if (ascii_prefix_nocase(lit, len, "IPv6:")) {
		char tmp[64];
		struct in6_addr a6;
		if (len - 5 == 0 || len - 5 >= sizeof(tmp))
			return false;
		memcpy(tmp, lit + 5, len - 5);
		tmp[len - 5] = '\0';
		return inet_pton(AF_INET6, tmp, &a6) == 1;
	}
	/* General-address-literal = Standardized-tag ":" 1*dcontent, with
	 * Standardized-tag = Ldh-str and dcontent = %d33-90 / %d94-126. */
	size_t i = 0;
	while (i < len && (mx_ctype_is_alpha(lit[i]) || mx_ctype_is_digit(lit[i]) || lit[i] == '-'))
		i++;
	if (i == 0 || lit[i - 1] == '-' || i >= len || lit[i] != ':' || i + 1 >= len)
		return false;
	for (i++; i < len; i++)
		if (lit[i] < 33 || lit[i] > 126)
			return false;
	return true;
}

/* Domain = sub-domain *("." sub-domain), or an address literal. One trailing dot is
 * tolerated (the root; Postfix accepts it and the relay check strips it). */
static bool parse_domain(struct cursor *c, bool allow_literal)
{
	if (peek(c) == '[')
		return allow_literal && parse_address_literal(c);
	if (!parse_label(c))
		return false;
	while (peek(c) == '.') {
		c->i++;
		int ch = peek(c);
		bool label_start = ch >= 0 && (mx_ctype_is_alpha((unsigned char)ch) ||
					       mx_ctype_is_digit((unsigned char)ch) || ch >= 0x80);
		if (!label_start)
			break; /* the trailing dot */
		if (!parse_label(c))
			return false;
	}
	return true;
}

/* A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain. The route is obsolete
 * (RFC 5321 appendix C): it is checked and then ignored. */
static bool parse_route(struct cursor *c)
{
	for (;;) {
		if (peek(c) != '@')
			return false;
		c->i++;
		if (!parse_domain(c, true))
			return false;
		if (peek(c) == ',') {
			c->i++;
			continue;
		}
		if (peek(c) != ':')
			return false;
		c->i++;
		return true;
	}
}

/* Mailbox = Local-part "@" ( Domain / address-literal ), or a bare local part. */
static enum smtp_path_result parse_mailbox(struct cursor *c, struct smtp_path *out)
{
	size_t start = c->i;

	if (!parse_local_part(c))
		return SMTP_PATH_SYNTAX;
	size_t local_len = c->i - start;
	size_t domain_start = c->i, domain_len = 0;
	if (peek(c) == '@') {
		c->i++;
		domain_start = c->i;
		if (!parse_domain(c, true))
			return SMTP_PATH_SYNTAX;
		domain_len = c->i - domain_start;
	}
	out->mailbox = mx_span_make((const char *)c->p + start, c->i - start);
	out->domain = mx_span_make((const char *)c->p + domain_start, domain_len);
	if (local_len > SMTP_LOCAL_PART_MAX || domain_len > SMTP_DOMAIN_MAX)
		return SMTP_PATH_TOO_LONG;
	return SMTP_PATH_OK;
}

enum smtp_path_result smtp_path_parse(struct mx_span text, unsigned flags, struct smtp_path *out)
{
	struct cursor c = { (const unsigned char *)text.ptr, text.len, 0, false };
	enum smtp_path_result r;

	memset(out, 0, sizeof(*out));
	while (c.i < c.n && mx_ctype_is_blank(c.p[c.i]))
		c.i++;
	size_t path_start = c.i;

	if (peek(&c) == '<') {
		out->bracketed = true;
		c.i++;
		if (peek(&c) == '>') {
			if (!(flags & SMTP_PATH_ALLOW_NULL))
				return SMTP_PATH_SYNTAX;
			c.i++;
			out->null_path = true;
			out->mailbox = mx_span_make((const char *)c.p + c.i - 1, 0);
		} else {
			if (peek(&c) == '@' && !parse_route(&c))
				return SMTP_PATH_SYNTAX;
			r = parse_mailbox(&c, out);
			if (r == SMTP_PATH_SYNTAX)
				return r;
			if (peek(&c) != '>')
				return SMTP_PATH_SYNTAX;
			c.i++;
			if (r != SMTP_PATH_OK)
				return r;
			if (c.i - path_start > SMTP_PATH_MAX)
				return SMTP_PATH_TOO_LONG;
		}
	} else {
		if ((flags & SMTP_PATH_STRICT) || c.i >= c.n)
			return SMTP_PATH_SYNTAX;
		r = parse_mailbox(&c, out);
		if (r != SMTP_PATH_OK)
			return r;
		/* Measured as if the client had written the brackets. */
		if (out->mailbox.len + 2 > SMTP_PATH_MAX)
			return SMTP_PATH_TOO_LONG;
	}

	/* The path ends at a blank (parameters follow) or at the end of the line. */
	if (c.i < c.n && !mx_ctype_is_blank(c.p[c.i]))
		return SMTP_PATH_SYNTAX;
	while (c.i < c.n && mx_ctype_is_blank(c.p[c.i]))
		c.i++;
	out->rest = mx_span_make((const char *)c.p + c.i, c.n - c.i);
	out->non_ascii = c.non_ascii;
	return SMTP_PATH_OK;
}

bool smtp_param_next(struct mx_span text, size_t *pos, struct smtp_param *out)
{
	const unsigned char *p = (const unsigned char *)text.ptr;
	size_t i = *pos;

	while (i < text.len && mx_ctype_is_blank(p[i]))
		i++;
	if (i >= text.len) {
		*pos = i;
		return false;
	}
	size_t start = i;
	while (i < text.len && !mx_ctype_is_blank(p[i]))
		i++;
	*pos = i;

	memset(out, 0, sizeof(*out));
	out->text = mx_span_make((const char *)p + start, i - start);
	const char *eq = memchr(out->text.ptr, '=', out->text.len);
	size_t klen = eq ? (size_t)(eq - out->text.ptr) : out->text.len;
	out->keyword = mx_span_make(out->text.ptr, klen);
	if (eq) {
		out->has_value = true;
		out->value = mx_span_make(eq + 1, out->text.len - klen - 1);
	}

	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	out->keyword_valid = klen > 0;
	for (size_t k = 0; k < klen; k++) {
		unsigned char ch = (unsigned char)out->keyword.ptr[k];
		if (!(mx_ctype_is_alpha(ch) || mx_ctype_is_digit(ch) || (ch == '-' && k > 0)))
			out->keyword_valid = false;
	}
	/* esmtp-value = 1*(%d33-60 / %d62-126), RFC 6531 adds UTF8-non-ascii */
	out->value_valid = out->has_value && out->value.len > 0;
	const unsigned char *v = (const unsigned char *)out->value.ptr;
	for (size_t k = 0; out->value_valid && k < out->value.len;) {
		if (v[k] >= 33 && v[k] <= 126 && v[k] != '=') {
			k++;
			continue;
		}
		size_t seq = v[k] >= 0x80 ? utf8_seq(v + k, out->value.len - k) : 0;
		if (seq == 0)
			out->value_valid = false;
		k += seq ? seq : 1;
	}
	return true;
}

int smtp_param_size(struct mx_span value, uint64_t *out)
{
	uint64_t v = 0;

	if (value.len == 0)
		return -EINVAL;
	for (size_t i = 0; i < value.len; i++)
		if (!mx_ctype_is_digit((unsigned char)value.ptr[i]))
			return -EINVAL;
	for (size_t i = 0; i < value.len; i++) {
		unsigned d = (unsigned)(value.ptr[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}
