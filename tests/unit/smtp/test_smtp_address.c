/* RFC 5321 4.1.2 paths and ESMTP parameters (smtp/smtp_address.c). Each good and bad
 * case is also parsed from every prefix of itself (a parser must never read past what it
 * was given) and with trailing parameters. Where Postfix 3.7 accepts or refuses the same
 * text, the comment says so (checked against Debian's Postfix 3.7.11 smtpd on loopback). */
#include <errno.h>
#include <stdlib.h>

#include "smtp/smtp_address.h"
#include "testing.h"

/* Parse `in` from a heap copy of exactly its length, so ASan catches any over-read. */
static enum smtp_path_result parse(const char *in, unsigned flags, struct smtp_path *out,
				   char **keep)
{
	size_t n = strlen(in);
	char *copy = malloc(n ? n : 1);
	memcpy(copy, in, n);
	*keep = copy;
	return smtp_path_parse(mx_span_make(copy, n), flags, out);
}

static void expect_ok(const char *in, unsigned flags, const char *mailbox, const char *rest)
{
	struct smtp_path p;
	char *copy;
	enum smtp_path_result r = parse(in, flags, &p, &copy);
	if (r != SMTP_PATH_OK) {
		fprintf(stderr, "  input: %s\n", in);
		CHECK_STR_EQ(smtp_path_result_name(r), "ok");
		free(copy);
		return;
	}
	CHECK_MEM_EQ(p.mailbox.ptr, p.mailbox.len, mailbox, strlen(mailbox));
	CHECK_MEM_EQ(p.rest.ptr, p.rest.len, rest, strlen(rest));
	free(copy);
	/* every prefix parses without reading past its end */
	size_t n = strlen(in);
	for (size_t k = 0; k < n; k++) {
		char *pre = malloc(k ? k : 1);
		memcpy(pre, in, k);
		(void)smtp_path_parse(mx_span_make(pre, k), flags, &p);
		free(pre);
	}
}

static void expect_fail(const char *in, unsigned flags, enum smtp_path_result want)
{
	struct smtp_path p;
	char *copy;
	enum smtp_path_result r = parse(in, flags, &p, &copy);
	if (r != want)
		fprintf(stderr, "  input: %s\n", in);
	CHECK_STR_EQ(smtp_path_result_name(r), smtp_path_result_name(want));
	free(copy);
}

static void test_plain_paths(void)
{
	expect_ok("<alice@example.org>", 0, "alice@example.org", "");
	expect_ok("<Alice.B+tag@Example.ORG>", 0, "Alice.B+tag@Example.ORG", "");
	/* every atext character (RFC 5322 3.2.3) */
	expect_ok("<!#$%&'*+-/=?^_`{|}~@example.org>", 0, "!#$%&'*+-/=?^_`{|}~@example.org", "");
	expect_ok("<a@b-c.d1>", 0, "a@b-c.d1", "");
	expect_ok("<a@123.example>", 0, "a@123.example", "");
	/* Postfix tolerates a space after the colon: the caller passes it on */
	expect_ok("  <a@b>", 0, "a@b", "");
	expect_ok("\t<a@b>", 0, "a@b", "");
	/* parameters follow the path after blanks */
	expect_ok("<a@b> SIZE=10 BODY=8BITMIME", 0, "a@b", "SIZE=10 BODY=8BITMIME");
	expect_ok("<a@b>\tSMTPUTF8", 0, "a@b", "SMTPUTF8");
	/* a local part without a domain: RFC 5321 4.1.1.3 <Postmaster>, Postfix accepts
	 * any and qualifies it with $myorigin */
	expect_ok("<Postmaster>", 0, "Postmaster", "");
	expect_ok("<u>", 0, "u", "");
	/* one trailing dot is the root (Postfix accepts it; the relay check strips it) */
	expect_ok("<a@example.org.>", 0, "a@example.org.", "");
}

static void test_null_path(void)
{
	struct smtp_path p;
	char *copy;
	CHECK_INT_EQ(parse("<>", SMTP_PATH_ALLOW_NULL, &p, &copy), SMTP_PATH_OK);
	CHECK(p.null_path);
	CHECK_INT_EQ(p.mailbox.len, 0);
	free(copy);
	CHECK_INT_EQ(parse("<> SIZE=5", SMTP_PATH_ALLOW_NULL, &p, &copy), SMTP_PATH_OK);
	CHECK_MEM_EQ(p.rest.ptr, p.rest.len, "SIZE=5", 6);
	free(copy);
	/* RCPT TO:<> is not an address (Postfix: 501 5.1.3 Bad recipient address syntax) */
	expect_fail("<>", 0, SMTP_PATH_SYNTAX);
	expect_fail("< >", SMTP_PATH_ALLOW_NULL, SMTP_PATH_SYNTAX);
	expect_fail("<>x", SMTP_PATH_ALLOW_NULL, SMTP_PATH_SYNTAX);
}

static void test_quoted_local_parts(void)
{
	/* Postfix accepts RCPT TO:<"a b"@c> */
	expect_ok("<\"a b\"@example.org>", 0, "\"a b\"@example.org", "");
	expect_ok("<\"a\\\"b\"@example.org>", 0, "\"a\\\"b\"@example.org", "");
	expect_ok("<\"a\\\\b\"@example.org>", 0, "\"a\\\\b\"@example.org", "");
	expect_ok("<\"a@b\"@example.org>", 0, "\"a@b\"@example.org", "");
	expect_ok("<\"\"@example.org>", 0, "\"\"@example.org", "");
	expect_ok("\"a b\"@example.org SIZE=1", 0, "\"a b\"@example.org", "SIZE=1");
	/* quoted-pairSMTP is %d92 %d32-126: no control characters, even quoted */
	expect_fail("<\"a\\\x01\"@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<\"a\x01\"@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<\"unterminated@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<\"a\"b@example.org>", 0, SMTP_PATH_SYNTAX);
}

static void test_bad_syntax(void)
{
	/* Postfix: 501 5.1.3 for <a b@c>, <u@>, <c@d (comment)>, <Joe <c@d>> */
	expect_fail("<a b@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<c@d (comment)>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<Joe <c@d>>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b", 0, SMTP_PATH_SYNTAX);
	expect_fail("a@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b>SIZE=10", 0, SMTP_PATH_SYNTAX); /* Postfix: 501 5.1.7 */
	expect_fail("", 0, SMTP_PATH_SYNTAX);
	expect_fail("   ", 0, SMTP_PATH_SYNTAX);
	expect_fail("<@example.org>", 0, SMTP_PATH_SYNTAX); /* a route without a mailbox */
	expect_fail("<.a@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a.@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a..b@c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b..c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@.b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@-b.c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b-.c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b_c.d>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b@c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a(b)@c>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\x01@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b\x7f>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<<a@b>>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b.>.", 0, SMTP_PATH_SYNTAX);
	/* strict_rfc821_envelopes: Postfix 501 5.1.7 for MAIL FROM:a@b */
	expect_fail("a@b", SMTP_PATH_STRICT, SMTP_PATH_SYNTAX);
	expect_ok("a@b", 0, "a@b", "");
	expect_ok("<a@b>", SMTP_PATH_STRICT, "a@b", "");
}

static void test_source_routes(void)
{
	/* RFC 5321 appendix C: accepted, then ignored */
	expect_ok("<@x.example:u@example.org>", 0, "u@example.org", "");
	expect_ok("<@x.example,@y.example:u@example.org>", 0, "u@example.org", "");
	expect_ok("<@[192.0.2.1],@y:u@z>", 0, "u@z", "");
	expect_fail("<@x.example u@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<@x.example,u@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<@:u@example.org>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<@x.example:>", 0, SMTP_PATH_SYNTAX);
	expect_fail("@x.example:u@example.org", 0, SMTP_PATH_SYNTAX); /* only inside <> */
}

static void test_address_literals(void)
{
	expect_ok("<u@[192.0.2.1]>", 0, "u@[192.0.2.1]", "");
	expect_ok("<u@[0.0.0.0]>", 0, "u@[0.0.0.0]", "");
	expect_ok("<u@[255.255.255.255]>", 0, "u@[255.255.255.255]", "");
	expect_ok("<u@[IPv6:2001:db8::1]>", 0, "u@[IPv6:2001:db8::1]", "");
	expect_ok("<u@[ipv6:::1]>", 0, "u@[ipv6:::1]", "");
	expect_ok("<u@[IPv6:::ffff:192.0.2.1]>", 0, "u@[IPv6:::ffff:192.0.2.1]", "");
	expect_ok("<u@[x-tag:some.thing]>", 0, "u@[x-tag:some.thing]", "");
	expect_fail("<u@[256.0.0.1]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[1.2.3]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[1.2.3.4.5]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[1.2.3.0004]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[IPv6:2001:db8::g]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[IPv6:]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[192.0.2.1>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[a[b]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[tag:]>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<u@[tag-:x]>", 0, SMTP_PATH_SYNTAX);
}

static void test_lengths(void)
{
	char in[800], want[700];
	/* local part: 64 octets (RFC 5321 4.5.3.1.1) */
	snprintf(want, sizeof(want), "%.64s@example.org",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	snprintf(in, sizeof(in), "<%s>", want);
	expect_ok(in, 0, want, "");
	snprintf(in, sizeof(in), "<%.65s@example.org>",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	expect_fail(in, 0, SMTP_PATH_TOO_LONG);
	/* labels: 63 octets */
	char label64[65];
	memset(label64, 'b', 64);
	label64[64] = '\0';
	snprintf(in, sizeof(in), "<a@%.63s.example>", label64);
	snprintf(want, sizeof(want), "a@%.63s.example", label64);
	expect_ok(in, 0, want, "");
	snprintf(in, sizeof(in), "<a@%s.example>", label64);
	expect_fail(in, 0, SMTP_PATH_SYNTAX);
	/* domain: 255 octets (4.5.3.1.2); path: 256 with the brackets (4.5.3.1.3) */
	char dom[300];
	size_t n = 0;
	while (n + 10 <= 250) {
		memcpy(dom + n, "abcdefghi.", 10);
		n += 10;
	}
	memcpy(dom + n, "example", 7); /* 257 octets */
	n += 7;
	dom[n] = '\0';
	snprintf(in, sizeof(in), "<a@%s>", dom);
	expect_fail(in, 0, SMTP_PATH_TOO_LONG); /* Postfix: 501 5.1.7 Bad sender address syntax */
	dom[250] = '\0';                           /* 250 octets ending in a dot: a root */
	snprintf(in, sizeof(in), "<a@%sx>", dom);   /* a@ + 251 + brackets = 255 */
	snprintf(want, sizeof(want), "a@%sx", dom);
	expect_ok(in, 0, want, "");
	snprintf(in, sizeof(in), "<abcd@%sx>", dom); /* 258 with the brackets */
	expect_fail(in, 0, SMTP_PATH_TOO_LONG);
	snprintf(in, sizeof(in), "abcd@%sx", dom); /* the same without brackets */
	expect_fail(in, 0, SMTP_PATH_TOO_LONG);
	/* a long route counts toward the path */
	snprintf(in, sizeof(in), "<@%sx:abcd@b>", dom);
	expect_fail(in, 0, SMTP_PATH_TOO_LONG);
}

static void test_utf8(void)
{
	struct smtp_path p;
	char *copy;
	/* RFC 6531: UTF-8 in the local part and U-labels; the caller decides (SMTPUTF8) */
	CHECK_INT_EQ(parse("<j\xc3\xbcrgen@example.org>", 0, &p, &copy), SMTP_PATH_OK);
	CHECK(p.non_ascii);
	free(copy);
	CHECK_INT_EQ(parse("<a@b\xc3\xbc\x63her.example>", 0, &p, &copy), SMTP_PATH_OK);
	CHECK(p.non_ascii);
	free(copy);
	CHECK_INT_EQ(parse("<\"\xe2\x82\xac\"@example.org>", 0, &p, &copy), SMTP_PATH_OK);
	CHECK(p.non_ascii);
	free(copy);
	CHECK_INT_EQ(parse("<a@example.org>", 0, &p, &copy), SMTP_PATH_OK);
	CHECK(!p.non_ascii);
	free(copy);
	/* not UTF-8: a lone continuation byte, an overlong form, a surrogate, > U+10FFFF,
	 * a truncated sequence */
	expect_fail("<a\x80@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\xc0\xaf@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\xe0\x80\xaf@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\xed\xa0\x80@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\xf4\x90\x80\x80@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a\xe2\x82@b>", 0, SMTP_PATH_SYNTAX);
	expect_fail("<a@b\xff>", 0, SMTP_PATH_SYNTAX);

	CHECK(smtp_utf8_valid("", 0));
	CHECK(smtp_utf8_valid("plain", 5));
	CHECK(smtp_utf8_valid("\xf0\x9f\x93\xa7", 4));
	CHECK(!smtp_utf8_valid("\xf0\x9f\x93", 3));
	CHECK(!smtp_utf8_valid("\xc3", 1));
	CHECK(!smtp_utf8_valid("\xf8\x88\x80\x80\x80", 5));
}

static void expect_params(const char *text, const char *const *tokens, int n)
{
	struct mx_span t = mx_span_cstr(text);
	struct smtp_param p;
	size_t pos = 0;
	for (int i = 0; i < n; i++) {
		CHECK(smtp_param_next(t, &pos, &p));
		CHECK_MEM_EQ(p.text.ptr, p.text.len, tokens[i], strlen(tokens[i]));
	}
	CHECK(!smtp_param_next(t, &pos, &p));
	CHECK_INT_EQ(pos, strlen(text));
}

static void test_params(void)
{
	static const char *const two[] = { "SIZE=10", "BODY=8BITMIME" };
	expect_params("SIZE=10 BODY=8BITMIME", two, 2);
	expect_params("  SIZE=10 \t BODY=8BITMIME  ", two, 2);
	expect_params("", NULL, 0);
	expect_params("   ", NULL, 0);

	struct smtp_param p;
	size_t pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("SMTPUTF8"), &pos, &p));
	CHECK(p.keyword_valid && !p.has_value);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("X-Y2=a=b"), &pos, &p));
	CHECK(p.keyword_valid && p.has_value && !p.value_valid); /* '=' is not in esmtp-value */
	CHECK_MEM_EQ(p.keyword.ptr, p.keyword.len, "X-Y2", 4);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("SIZE="), &pos, &p));
	CHECK(p.keyword_valid && p.has_value && !p.value_valid && p.value.len == 0);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("-X=1"), &pos, &p));
	CHECK(!p.keyword_valid);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("=1"), &pos, &p));
	CHECK(!p.keyword_valid);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("K_Y=1"), &pos, &p));
	CHECK(!p.keyword_valid);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("ORCPT=rfc822;\xc3\xbc@x"), &pos, &p));
	CHECK(p.keyword_valid && p.value_valid);
	pos = 0;
	CHECK(smtp_param_next(mx_span_cstr("ORCPT=a\x01"), &pos, &p));
	CHECK(!p.value_valid);
}

static void test_size_values(void)
{
	uint64_t v = 7;
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("0"), &v), 0);
	CHECK_INT_EQ(v, 0);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("10240000"), &v), 0);
	CHECK_INT_EQ(v, 10240000);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("18446744073709551615"), &v), 0);
	CHECK(v == UINT64_MAX);
	/* Postfix: 552 5.3.4 Message size exceeds file system imposed limit */
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("18446744073709551616"), &v), -ERANGE);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("099999999999999999999"), &v), -ERANGE);
	/* Postfix: 501 5.5.4 Bad message size syntax */
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr(""), &v), -EINVAL);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("x"), &v), -EINVAL);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("-1"), &v), -EINVAL);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("1 "), &v), -EINVAL);
	CHECK_INT_EQ(smtp_param_size(mx_span_cstr("+1"), &v), -EINVAL);
}

int main(void)
{
	RUN_TEST(test_plain_paths);
	RUN_TEST(test_null_path);
	RUN_TEST(test_quoted_local_parts);
	RUN_TEST(test_bad_syntax);
	RUN_TEST(test_source_routes);
	RUN_TEST(test_address_literals);
	RUN_TEST(test_lengths);
	RUN_TEST(test_utf8);
	RUN_TEST(test_params);
	RUN_TEST(test_size_values);
	return TEST_RESULT();
}
