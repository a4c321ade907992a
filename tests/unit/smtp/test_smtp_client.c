/* The SMTP/LMTP client codec (smtp/smtp_client.c, smtp/smtp_client_reply.c): the reply
 * parser fed whole, byte by byte and split at every offset (inputs in heap buffers of
 * exactly their length), EHLO capabilities, the content writer against an oracle written
 * here, command emission with and without PIPELINING, LMTP's per-recipient replies, and
 * the API's contract (return codes, states, idle()). Whole sessions are golden
 * transcripts (tests/golden_client). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "smtp/smtp_client.h"
#include "smtp/smtp_client_reply.h"
#include "testing.h"

/* ---- the reply parser on its own ---- */

#define RP_MAX_RESULTS 64

struct rp_result {
	enum smtp_client_rp_status st;
	uint16_t code;
	unsigned lines;
	bool truncated;
	enum smtp_client_error error;
	char enhanced[SMTP_CLIENT_ENHANCED_MAX];
	char text[600];
	char line[600]; /* last_line */
};

struct rp_run {
	struct rp_result r[RP_MAX_RESULTS];
	int n;
	bool overflow;
};

struct rp_bounds {
	size_t line_max, line_hard_max, text_max;
	unsigned lines_max;
};

static const struct rp_bounds rp_default = { 64, 256, 128, 5 };

static void rp_record(struct rp_run *run, const struct smtp_client_reply *r,
		      enum smtp_client_rp_status st)
{
	if (run->n >= RP_MAX_RESULTS) {
		run->overflow = true;
		return;
	}
	struct rp_result *x = &run->r[run->n++];
	x->st = st;
	x->code = r->code;
	x->lines = r->lines;
	x->truncated = r->truncated;
	x->error = r->error;
	memcpy(x->enhanced, r->enhanced, sizeof(x->enhanced));
	snprintf(x->text, sizeof(x->text), "%.*s", (int)r->text_len, r->text);
	snprintf(x->line, sizeof(x->line), "%.*s", (int)r->last_line.len, r->last_line.ptr);
}

/* Feed one heap piece of exactly n bytes. */
static void rp_feed_piece(struct smtp_client_reply *r, struct rp_run *run, const char *p,
			  size_t n)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	size_t off = 0;
	while (off < n) {
		enum smtp_client_rp_status st;
		size_t used = smtp_client_reply_feed(r, copy + off, n - off, &st);
		CHECK(used <= n - off);
		off += used;
		if (st != SMTP_CLIENT_RP_MORE)
			rp_record(run, r, st);
		else
			CHECK(off == n);
		if (used == 0 && st == SMTP_CLIENT_RP_MORE)
			break;
	}
	free(copy);
}

/* mode 0: whole; 1: bytewise; 2: split at k */
static void rp_parse(const char *in, size_t n, int mode, size_t k, const struct rp_bounds *b,
		     struct rp_run *run)
{
	char *line = malloc(b->line_max), *text = malloc(b->text_max);
	struct smtp_client_reply r;
	smtp_client_reply_init(&r, line, b->line_max, b->line_hard_max, text, b->text_max,
			       b->lines_max);
	memset(run, 0, sizeof(*run));
	if (mode == 0) {
		rp_feed_piece(&r, run, in, n);
	} else if (mode == 1) {
		for (size_t i = 0; i < n; i++)
			rp_feed_piece(&r, run, in + i, 1);
	} else {
		rp_feed_piece(&r, run, in, k);
		rp_feed_piece(&r, run, in + k, n - k);
	}
	free(line);
	free(text);
}

static bool rp_same(const struct rp_run *a, const struct rp_run *b)
{
	if (a->n != b->n || a->overflow != b->overflow)
		return false;
	for (int i = 0; i < a->n; i++) {
		const struct rp_result *x = &a->r[i], *y = &b->r[i];
		if (x->st != y->st || x->code != y->code || x->lines != y->lines ||
		    x->truncated != y->truncated || x->error != y->error ||
		    strcmp(x->enhanced, y->enhanced) || strcmp(x->text, y->text) ||
		    strcmp(x->line, y->line))
			return false;
	}
	return true;
}

/* Parse whole into *out, and check that bytewise and every split give the same. */
static void rp_all_modes(const char *in, size_t n, const struct rp_bounds *b, struct rp_run *out)
{
	rp_parse(in, n, 0, 0, b, out);
	struct rp_run *other = malloc(sizeof(*other));
	rp_parse(in, n, 1, 0, b, other);
	if (!rp_same(out, other)) {
		fprintf(stderr, "  bytewise differs for: ");
		testing_print_escaped(in, n);
		fputc('\n', stderr);
		CHECK(!"bytewise == whole");
	}
	for (size_t k = 0; k <= n; k++) {
		rp_parse(in, n, 2, k, b, other);
		if (!rp_same(out, other)) {
			fprintf(stderr, "  split at %zu differs for: ", k);
			testing_print_escaped(in, n);
			fputc('\n', stderr);
			CHECK(!"split == whole");
			break;
		}
	}
	free(other);
}

static void rp_expect_reply(const char *in, uint16_t code, const char *text, const char *enh,
			    unsigned lines, bool truncated)
{
	struct rp_run *run = malloc(sizeof(*run));
	rp_all_modes(in, strlen(in), &rp_default, run);
	CHECK(run->n >= 1);
	if (run->n >= 1) {
		const struct rp_result *x = &run->r[run->n - 1];
		if (x->st != SMTP_CLIENT_RP_REPLY)
			fprintf(stderr, "  input: %s\n", in);
		CHECK_INT_EQ(x->st, SMTP_CLIENT_RP_REPLY);
		CHECK_INT_EQ(x->code, code);
		CHECK_STR_EQ(x->text, text);
		CHECK_STR_EQ(x->enhanced, enh);
		CHECK_INT_EQ(x->lines, lines);
		CHECK_INT_EQ(x->truncated, truncated);
		/* the lines before the last one each report LINE */
		CHECK_INT_EQ(run->n, lines);
		for (int i = 0; i + 1 < run->n; i++)
			CHECK_INT_EQ(run->r[i].st, SMTP_CLIENT_RP_LINE);
	}
	free(run);
}

static void rp_expect_error(const char *in, size_t n, const struct rp_bounds *b,
			    enum smtp_client_error err, const char *text)
{
	struct rp_run *run = malloc(sizeof(*run));
	rp_all_modes(in, n, b, run);
	int i = 0;
	while (i < run->n && run->r[i].st != SMTP_CLIENT_RP_ERROR)
		i++;
	if (i == run->n) {
		fprintf(stderr, "  no error for: ");
		testing_print_escaped(in, n);
		fputc('\n', stderr);
		CHECK(!"an error");
	} else {
		CHECK_STR_EQ(smtp_client_error_name(run->r[i].error), smtp_client_error_name(err));
		if (text)
			CHECK_STR_EQ(run->r[i].text, text);
	}
	free(run);
}

static void test_reply_lines(void)
{
	rp_expect_reply("250 Ok\r\n", 250, "Ok", "", 1, false);
	rp_expect_reply("220 mx.example.net ESMTP\r\n", 220, "mx.example.net ESMTP", "", 1, false);
	/* RFC 5321 4.2: multi-line, the text joined by spaces as Postfix logs it */
	rp_expect_reply("250-mx.example.net\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250,
			"mx.example.net PIPELINING SIZE 1000", "", 3, false);
	/* a bare LF ends a line too */
	rp_expect_reply("250-a\n250 b\n", 250, "a b", "", 2, false);
	rp_expect_reply("250-a\r\n250 b\n", 250, "a b", "", 2, false);
	/* "NNN" alone and "NNN-" with no text are valid (textstring is optional) */
	rp_expect_reply("250\r\n", 250, "", "", 1, false);
	rp_expect_reply("250-\r\n250-x\r\n250\r\n", 250, "x", "", 3, false);
	rp_expect_reply("421 4.3.2 going away\r\n", 421, "4.3.2 going away", "4.3.2", 1, false);
	/* control characters are neutralized, tabs are spaces, 8-bit stays */
	rp_expect_reply("250 a\x01" "b\tc\x7f\xc3\xa9\r\n", 250, "a?b c?\xc3\xa9", "", 1, false);
	/* a CR not before the LF is a byte of the line */
	rp_expect_reply("250 a\rb\r\n", 250, "a?b", "", 1, false);
	rp_expect_reply("250 a\r\r\n", 250, "a?", "", 1, false);
	/* a NUL is a byte like any other */
	struct rp_run *run = malloc(sizeof(*run));
	rp_all_modes("250 a\0b\r\n", 9, &rp_default, run);
	CHECK_INT_EQ(run->n, 1);
	CHECK_STR_EQ(run->r[0].text, "a?b");
	/* two replies back to back: each is its own */
	rp_all_modes("250 one\r\n354 two\r\n", 18, &rp_default, run);
	CHECK_INT_EQ(run->n, 2);
	CHECK_INT_EQ(run->r[0].code, 250);
	CHECK_STR_EQ(run->r[1].text, "two");
	CHECK_INT_EQ(run->r[1].code, 354);
	/* the raw text of the last line (for EHLO keywords) */
	rp_all_modes("250-mx\r\n250 AUTH\x01 PLAIN\r\n", 25, &rp_default, run);
	CHECK_INT_EQ(run->n, 2);
	CHECK_STR_EQ(run->r[1].line, "AUTH\x01 PLAIN");
	free(run);
}

static void test_enhanced_codes(void)
{
	/* RFC 3463 2 / RFC 2034 3: from the first line, class = the code's first digit */
	rp_expect_reply("550 5.1.1 <x@y>: unknown\r\n", 550, "5.1.1 <x@y>: unknown", "5.1.1", 1,
			false);
	rp_expect_reply("250 2.0.0\r\n", 250, "2.0.0", "2.0.0", 1, false);
	rp_expect_reply("452 4.123.999 x\r\n", 452, "4.123.999 x", "4.123.999", 1, false);
	rp_expect_reply("550-5.7.1 first\r\n550 5.7.2 second\r\n", 550, "5.7.1 first 5.7.2 second",
			"5.7.1", 2, false);
	rp_expect_reply("550 4.1.1 wrong class\r\n", 550, "4.1.1 wrong class", "", 1, false);
	rp_expect_reply("354 3.0.0 no such class\r\n", 354, "3.0.0 no such class", "", 1, false);
	rp_expect_reply("550 5.1234.1 x\r\n", 550, "5.1234.1 x", "", 1, false);
	rp_expect_reply("550 5.1.1234 x\r\n", 550, "5.1.1234 x", "", 1, false);
	rp_expect_reply("550 5.1.1x\r\n", 550, "5.1.1x", "", 1, false);
	rp_expect_reply("550 5..1 x\r\n", 550, "5..1 x", "", 1, false);
	rp_expect_reply("550 5.1. x\r\n", 550, "5.1. x", "", 1, false);
	rp_expect_reply("550 5.1\r\n", 550, "5.1", "", 1, false);
	rp_expect_reply("550 5.1.1\tx\r\n", 550, "5.1.1 x", "", 1, false);
	rp_expect_reply("550  5.1.1 x\r\n", 550, " 5.1.1 x", "", 1, false);
	/* the parser on its own */
	char out[SMTP_CLIENT_ENHANCED_MAX];
	CHECK(smtp_client_enhanced_parse(mx_span_cstr("2.1.5 Ok"), 250, out));
	CHECK_STR_EQ(out, "2.1.5");
	CHECK(!smtp_client_enhanced_parse(mx_span_cstr("2.1.5"), 450, out));
	CHECK_STR_EQ(out, "");
	CHECK(!smtp_client_enhanced_parse(mx_span_cstr(""), 250, out));
	CHECK(!smtp_client_enhanced_parse(mx_span_cstr("2.1"), 250, out));
	CHECK(smtp_client_enhanced_parse(mx_span_cstr("5.999.999"), 554, out));
	CHECK_STR_EQ(out, "5.999.999");
}

static void test_reply_errors(void)
{
	const struct rp_bounds *b = &rp_default;
	/* RFC 5321 4.2 grammar: 2-5, 0-5, 0-9, then SP, '-' or the end */
	rp_expect_error("hello\r\n", 7, b, SMTP_CLIENT_ERR_MALFORMED, "hello");
	rp_expect_error("\r\n", 2, b, SMTP_CLIENT_ERR_MALFORMED, "");
	rp_expect_error("25\r\n", 4, b, SMTP_CLIENT_ERR_MALFORMED, "25");
	rp_expect_error("250x\r\n", 6, b, SMTP_CLIENT_ERR_MALFORMED, "250x");
	rp_expect_error("650 x\r\n", 7, b, SMTP_CLIENT_ERR_MALFORMED, NULL);
	rp_expect_error("150 x\r\n", 7, b, SMTP_CLIENT_ERR_MALFORMED, NULL);
	rp_expect_error("260 x\r\n", 7, b, SMTP_CLIENT_ERR_MALFORMED, NULL);
	rp_expect_error("25a x\r\n", 7, b, SMTP_CLIENT_ERR_MALFORMED, NULL);
	rp_expect_error(" 250 x\r\n", 8, b, SMTP_CLIENT_ERR_MALFORMED, NULL);
	rp_expect_error("250\t\r\n", 6, b, SMTP_CLIENT_ERR_MALFORMED, "250 ");
	/* a malformed continuation line: the offending line is the text */
	rp_expect_error("250-a\r\nxyz\r\n", 12, b, SMTP_CLIENT_ERR_MALFORMED, "xyz");
	rp_expect_error("250-a\r\n\x01\x02\x03 junk\r\n", 17, b, SMTP_CLIENT_ERR_MALFORMED,
			"??? junk");
	/* RFC 5321 4.2: every line of a reply has the same code */
	rp_expect_error("250-a\r\n251 b\r\n", 14, b, SMTP_CLIENT_ERR_CODE_MISMATCH, "251 b");
	rp_expect_error("250-a\r\n550-b\r\n550 c\r\n", 21, b, SMTP_CLIENT_ERR_CODE_MISMATCH,
			"550-b");
	/* lines_max = 5 */
	const char *many = "250-1\r\n250-2\r\n250-3\r\n250-4\r\n250-5\r\n250 6\r\n";
	rp_expect_error(many, strlen(many), b, SMTP_CLIENT_ERR_TOO_MANY_LINES, "1 2 3 4 5");
	rp_expect_reply("250-1\r\n250-2\r\n250-3\r\n250-4\r\n250 5\r\n", 250, "1 2 3 4 5", "", 5,
			false);
}

static void test_reply_long_lines(void)
{
	/* line_max 64: the start of a longer line is kept, the rest dropped, the reply goes
	 * on; text_max 128 cuts the joined text */
	char in[1200];
	size_t n = 0;
	n += (size_t)sprintf(in + n, "250-");
	for (int i = 0; i < 200; i++)
		in[n++] = (char)('a' + i % 26);
	n += (size_t)sprintf(in + n, "\r\n250 end\r\n");
	struct rp_run *run = malloc(sizeof(*run));
	rp_all_modes(in, n, &rp_default, run);
	CHECK_INT_EQ(run->n, 2);
	CHECK_INT_EQ(run->r[1].st, SMTP_CLIENT_RP_REPLY);
	CHECK(run->r[1].truncated);
	/* 60 bytes of text kept from the first line (64 - "250-") */
	CHECK_INT_EQ(strlen(run->r[1].text), 60 + 1 + 3);
	CHECK(strncmp(run->r[1].text, "abcdefghijklmnopqrstuvwxyzabcdefghij", 36) == 0);
	CHECK(strcmp(run->r[1].text + 61, "end") == 0);

	/* the joined text over text_max */
	n = 0;
	for (int i = 0; i < 4; i++)
		n += (size_t)sprintf(in + n, "250-%s\r\n",
				     "0123456789012345678901234567890123456789012345");
	n += (size_t)sprintf(in + n, "250 last\r\n");
	rp_all_modes(in, n, &rp_default, run);
	CHECK_INT_EQ(run->n, 5);
	CHECK_INT_EQ(run->r[4].st, SMTP_CLIENT_RP_REPLY);
	CHECK_INT_EQ(strlen(run->r[4].text), 128);
	CHECK(run->r[4].truncated);

	/* a CR LF split exactly at line_max still ends the line */
	n = 0;
	n += (size_t)sprintf(in + n, "250 ");
	for (int i = 0; i < 60; i++)
		in[n++] = 'x';
	n += (size_t)sprintf(in + n, "\r\n250 next\r\n");
	rp_all_modes(in, n, &rp_default, run);
	CHECK_INT_EQ(run->n, 2);
	CHECK(!run->r[0].truncated);
	CHECK_INT_EQ(strlen(run->r[0].text), 60);
	CHECK_STR_EQ(run->r[1].text, "next");

	/* over line_hard_max (256): an error, at once, without waiting for the line end */
	n = 0;
	n += (size_t)sprintf(in + n, "250 ");
	for (int i = 0; i < 300; i++)
		in[n++] = 'y';
	rp_all_modes(in, n, &rp_default, run);
	CHECK_INT_EQ(run->n, 1);
	CHECK_INT_EQ(run->r[0].st, SMTP_CLIENT_RP_ERROR);
	CHECK_INT_EQ(run->r[0].error, SMTP_CLIENT_ERR_LINE_TOO_LONG);
	CHECK(run->r[0].truncated);
	/* exactly at the hard bound is still a line */
	n = 0;
	n += (size_t)sprintf(in + n, "250 ");
	for (int i = 0; i < 252; i++)
		in[n++] = 'z';
	n += (size_t)sprintf(in + n, "\r\n");
	rp_all_modes(in, n, &rp_default, run);
	CHECK_INT_EQ(run->n, 1);
	CHECK_INT_EQ(run->r[0].st, SMTP_CLIENT_RP_REPLY);
	CHECK(run->r[0].truncated);
	/* CRs count toward the bound too */
	n = 0;
	n += (size_t)sprintf(in + n, "250 ");
	for (int i = 0; i < 300; i++)
		in[n++] = '\r';
	rp_all_modes(in, n, &rp_default, run);
	CHECK(run->n >= 1 && run->r[0].error == SMTP_CLIENT_ERR_LINE_TOO_LONG);
	free(run);
}

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

static void test_reply_junk(void)
{
	/* hostile input: whatever it is, every mode agrees and nothing reads out of bounds */
	static const char alphabet[] = "250- \r\n\x00\x7f\xff" "5.1X";
	struct rp_run *run = malloc(sizeof(*run));
	for (int iter = 0; iter < 300; iter++) {
		char in[96];
		size_t n = 1 + rng() % sizeof(in);
		for (size_t i = 0; i < n; i++)
			in[i] = (rng() & 3) == 0 ? (char)(rng() & 0xff)
						 : alphabet[rng() % (sizeof(alphabet) - 1)];
		struct rp_bounds small = { 16, 40, 64, 3 };
		rp_all_modes(in, n, &small, run);
		for (int i = 0; i < run->n; i++) {
			CHECK(strlen(run->r[i].text) <= 64);
			if (run->r[i].st == SMTP_CLIENT_RP_REPLY)
				CHECK(run->r[i].code >= 200 && run->r[i].code <= 559);
		}
	}
	free(run);
}

/* ---- EHLO keywords ---- */

static struct smtp_client_caps caps_of(const char *const *lines)
{
	struct smtp_client_caps caps;
	memset(&caps, 0, sizeof(caps));
	for (; *lines; lines++) {
		size_t n = strlen(*lines);
		char *copy = malloc(n ? n : 1);
		memcpy(copy, *lines, n);
		smtp_client_caps_line(&caps, mx_span_make(copy, n), false);
		free(copy);
	}
	return caps;
}

static void test_caps(void)
{
	const char *postfix[] = { "PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
				  "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8",
				  "CHUNKING", NULL };
	struct smtp_client_caps c = caps_of(postfix);
	CHECK(c.pipelining && c.size && c.starttls && c.enhancedstatuscodes && c.eightbitmime &&
	      c.dsn && c.smtputf8 && c.chunking);
	CHECK(c.size_limit == 10240000);
	CHECK(!c.auth && !c.xclient && !c.binarymime && !c.esmtp);

	/* RFC 5321 4.1.1.1: keywords are case-insensitive */
	const char *lower[] = { "pipelining", "Size 5", "8bitmime", "smtputf8", "dsn",
				"chunking", "BinaryMime", "starttls", NULL };
	c = caps_of(lower);
	CHECK(c.pipelining && c.size && c.eightbitmime && c.smtputf8 && c.dsn && c.chunking &&
	      c.binarymime && c.starttls);
	CHECK(c.size_limit == 5);

	/* RFC 1870 4: no number, 0, or junk: no limit stated; a huge number: no limit */
	const char *s1[] = { "SIZE", NULL };
	c = caps_of(s1);
	CHECK(c.size && c.size_limit == 0);
	const char *s2[] = { "SIZE 0", NULL };
	c = caps_of(s2);
	CHECK(c.size && c.size_limit == 0);
	const char *s3[] = { "SIZE 12ab", NULL };
	c = caps_of(s3);
	CHECK(c.size && c.size_limit == 0);
	const char *s4[] = { "SIZE 999999999999999999999999", NULL };
	c = caps_of(s4);
	CHECK(c.size && c.size_limit == UINT64_MAX);
	const char *s5[] = { "SIZE 18446744073709551615", NULL };
	c = caps_of(s5);
	CHECK(c.size_limit == UINT64_MAX);
	const char *s6[] = { "SIZE   77  ", NULL };
	c = caps_of(s6);
	CHECK(c.size_limit == 77);

	/* AUTH, and the old "AUTH=" form; unknown mechanisms are ignored */
	const char *a1[] = { "AUTH PLAIN login CRAM-MD5 X-UNKNOWN", NULL };
	c = caps_of(a1);
	CHECK(c.auth);
	CHECK_INT_EQ(c.auth_mechs, (1u << SMTP_CLIENT_AUTH_PLAIN) | (1u << SMTP_CLIENT_AUTH_LOGIN) |
					   (1u << SMTP_CLIENT_AUTH_CRAM_MD5));
	const char *a2[] = { "AUTH=LOGIN PLAIN", "AUTH SCRAM-SHA-256", NULL };
	c = caps_of(a2);
	CHECK(c.auth);
	CHECK_INT_EQ(c.auth_mechs, (1u << SMTP_CLIENT_AUTH_PLAIN) | (1u << SMTP_CLIENT_AUTH_LOGIN) |
					   (1u << SMTP_CLIENT_AUTH_SCRAM_SHA_256));
	const char *a3[] = { "AUTH", NULL };
	c = caps_of(a3);
	CHECK(c.auth && c.auth_mechs == 0);

	/* XCLIENT with its attributes (Postfix XCLIENT_README) */
	const char *x[] = { "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT",
			    NULL };
	c = caps_of(x);
	CHECK(c.xclient);
	CHECK_INT_EQ(c.xclient_attrs, (1u << SMTP_XCLIENT_ATTR_MAX) - 1);

	/* not keywords: prefixes, suffixes, empty lines, tabs as separators */
	const char *junk[] = { "PIPELININGX", "XPIPELINING", "", "   ", "SIZ 5", "8BITMIME=1",
			       "\tDSN", "AUTH=", NULL };
	c = caps_of(junk);
	CHECK(!c.pipelining && !c.size && !c.eightbitmime);
	CHECK(c.dsn);
	CHECK(!c.auth);
	CHECK_STR_EQ(smtp_client_auth_mech_name(SMTP_CLIENT_AUTH_CRAM_MD5), "CRAM-MD5");

	/* a line cut at line_max: its last word is partial and not taken */
	memset(&c, 0, sizeof(c));
	smtp_client_caps_line(&c, mx_span_cstr("SIZE 20"), true);
	CHECK(c.size && c.size_limit == 0);
	smtp_client_caps_line(&c, mx_span_cstr("AUTH PLAIN SCRAM-SHA-1"), true);
	CHECK_INT_EQ(c.auth_mechs, 1u << SMTP_CLIENT_AUTH_PLAIN);
	memset(&c, 0, sizeof(c));
	smtp_client_caps_line(&c, mx_span_cstr("PIPELINING"), true);
	CHECK(!c.pipelining);
	CHECK_STR_EQ(smtp_client_auth_mech_name(SMTP_CLIENT_AUTH_MECH_MAX), "?");
}

/* ---- a client with a test transport ---- */

struct sess {
	struct smtp_client *c;
	char *out;        /* everything the client sent */
	size_t out_len, out_cap;
	char ev[128][512];
	int nev;
	struct smtp_client_event last;
};

static void sess_drain(struct sess *s)
{
	struct mx_span o = smtp_client_output(s->c);
	if (s->out_len + o.len > s->out_cap) {
		s->out_cap = (s->out_len + o.len) * 2 + 1024;
		s->out = realloc(s->out, s->out_cap);
	}
	if (o.len)
		memcpy(s->out + s->out_len, o.ptr, o.len);
	s->out_len += o.len;
	smtp_client_output_done(s->c, o.len);
}

static void fmt_event(const struct smtp_client_event *ev, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s %s", smtp_client_event_name(ev->type),
			 smtp_client_cmd_name(ev->cmd));
	if (ev->rcpt >= 0)
		n += snprintf(buf + n, cap - (size_t)n, " rcpt=%d", ev->rcpt);
	if (ev->error)
		n += snprintf(buf + n, cap - (size_t)n, " error=%s",
			      smtp_client_error_name(ev->error));
	if (ev->noreply)
		n += snprintf(buf + n, cap - (size_t)n, " noreply=%s",
			      smtp_client_noreply_name(ev->noreply));
	else
		n += snprintf(buf + n, cap - (size_t)n, " %u %.*s", ev->code, (int)ev->text.len,
			      ev->text.ptr);
}

static struct sess *sess_new(const struct smtp_client_config *cfg)
{
	struct sess *s = calloc(1, sizeof(*s));
	CHECK_INT_EQ(smtp_client_new(&s->c, cfg), 0);
	return s;
}

static void sess_free(struct sess *s)
{
	smtp_client_free(s->c);
	free(s->out);
	free(s);
}

/* Send what is due, then feed the server's bytes (whole, from a heap copy) and collect
 * events. */
static void sess_recv(struct sess *s, const char *server)
{
	sess_drain(s);
	size_t n = strlen(server), off = 0;
	char *copy = malloc(n ? n : 1);
	memcpy(copy, server, n);
	for (int guard = 0; guard < 1000; guard++) {
		size_t used;
		struct smtp_client_event ev = smtp_client_step(s->c, copy + off, n - off, &used);
		CHECK(used <= n - off);
		off += used;
		if (ev.type == SMTP_CLIENT_EV_NONE) {
			CHECK(off == n);
			break;
		}
		s->last = ev;
		if (s->nev < 128)
			fmt_event(&ev, s->ev[s->nev++], sizeof(s->ev[0]));
	}
	free(copy);
}

static void sess_expect_events(struct sess *s, const char *const *want)
{
	int i = 0;
	for (; want[i]; i++) {
		if (i >= s->nev) {
			fprintf(stderr, "  missing event: %s\n", want[i]);
			CHECK(!"event");
			continue;
		}
		CHECK_STR_EQ(s->ev[i], want[i]);
	}
	for (; i < s->nev; i++) {
		fprintf(stderr, "  extra event: %s\n", s->ev[i]);
		CHECK(!"no extra event");
	}
	s->nev = 0;
}

static void sess_expect_out(struct sess *s, const char *want)
{
	sess_drain(s);
	CHECK_MEM_EQ(s->out, s->out_len, want, strlen(want));
	s->out_len = 0;
}

#define EHLO_PIPE "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n" \
		  "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
#define EHLO_PLAIN "250-mx.example.net\r\n250-SIZE 1000\r\n250 CHUNKING\r\n"

/* Greeting and EHLO done; the EHLO reply given. */
static struct sess *sess_ready(const struct smtp_client_config *cfg, const char *ehlo_reply)
{
	struct sess *s = sess_new(cfg);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "client.example"), 0);
	sess_expect_out(s, ""); /* nothing before the greeting */
	sess_recv(s, "220 mx.example.net ESMTP\r\n");
	sess_expect_out(s, cfg->lmtp ? "LHLO client.example\r\n" : "EHLO client.example\r\n");
	sess_recv(s, ehlo_reply);
	s->nev = 0;
	return s;
}

static int mail(struct sess *s, const char *from)
{
	struct smtp_client_mail m = { .sender = from };
	return smtp_client_mail(s->c, &m);
}

static int rcpt(struct sess *s, const char *to)
{
	struct smtp_client_rcpt r = { .addr = to };
	return smtp_client_rcpt(s->c, &r);
}

/* ---- the content writer against an oracle ---- */

/* What DATA content must look like on the wire: CRLF, bare CR and bare LF each end a
 * line with CRLF; a line starting with '.' gets one more; an unfinished last line is
 * finished; then ".\r\n". Written from RFC 5321 4.5.2 and 2.3.8, independently of the
 * codec's streaming loop. */
static size_t oracle(const char *in, size_t n, char *out)
{
	size_t o = 0;
	/* split into lines first */
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && in[j] != '\r' && in[j] != '\n')
			j++;
		if (j > i && in[i] == '.')
			out[o++] = '.';
		memcpy(out + o, in + i, j - i);
		o += j - i;
		if (j < n) {
			/* a line end: CR LF counts once */
			if (in[j] == '\r' && j + 1 < n && in[j + 1] == '\n')
				j++;
			j++;
		}
		out[o++] = '\r';
		out[o++] = '\n';
		i = j;
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}

/* Send `in` as the content of one message, in pieces: mode 0 whole, 1 bytewise, 2 split at
 * k, 3 random piece sizes. Returns the content bytes the client sent. */
static size_t send_content(const struct smtp_client_config *cfg, const char *in, size_t n,
			   int mode, size_t k, char **got)
{
	struct sess *s = sess_ready(cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@example.org"), 0);
	CHECK_INT_EQ(rcpt(s, "b@example.net"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_expect_out(s, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	sess_recv(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_CONTENT);
	size_t off = 0;
	while (off < n) {
		size_t piece = n - off;
		if (mode == 1)
			piece = 1;
		else if (mode == 2 && off < k)
			piece = k - off;
		else if (mode == 3)
			piece = 1 + rng() % piece;
		char *p = malloc(piece);
		memcpy(p, in + off, piece);
		size_t done = 0;
		for (int guard = 0; done < piece && guard < 100000; guard++) {
			ssize_t r = smtp_client_content(s->c, p + done, piece - done);
			CHECK(r >= 0);
			if (r < 0)
				break;
			done += (size_t)r;
			if (done < piece)
				sess_drain(s); /* the output was full */
		}
		free(p);
		off += piece;
	}
	while (smtp_client_content_end(s->c) == -ENOBUFS)
		sess_drain(s);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_COMMANDS);
	sess_drain(s);
	*got = malloc(s->out_len ? s->out_len : 1);
	memcpy(*got, s->out, s->out_len);
	size_t len = s->out_len;
	/* and the reply to it */
	sess_recv(s, "250 2.0.0 Ok: queued\r\n");
	CHECK_STR_EQ(s->ev[s->nev - 1], "MESSAGE DOT 250 2.0.0 Ok: queued");
	CHECK(smtp_client_idle(s->c));
	sess_free(s);
	return len;
}

static void check_content(const struct smtp_client_config *cfg, const char *in, size_t n,
			  bool all_splits)
{
	char *want = malloc(2 * n + 8);
	size_t wn = oracle(in, n, want);
	for (int mode = 0; mode < 4; mode++) {
		size_t kmax = mode == 2 && all_splits ? n : 0;
		for (size_t k = 0; k <= kmax; k++) {
			char *got;
			size_t gn = send_content(cfg, in, n, mode, k, &got);
			if (gn != wn || memcmp(got, want, wn) != 0) {
				fprintf(stderr, "  mode %d k %zu input: \"", mode, k);
				testing_print_escaped(in, n);
				fputs("\"\n", stderr);
				CHECK_MEM_EQ(got, gn, want, wn);
				free(got);
				free(want);
				return;
			}
			free(got);
		}
	}
	free(want);
}

static void test_content_cases(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	static const char *cases[] = {
		"", ".", "..", "a", "a\r\n", "a\r\n.", ".\r\n", ".\r\n.\r\n", "\r\n.\r\n",
		"a\n.\nb", "a\r.\rb", "\r\r\n", "\n", "\r", "x\r", "line1\r\nline2", ".leading",
		"a\r\n..b\r\n", "Subject: x\r\n\r\nbody\r\n.\r\nmore\r\n", "\n\n\n", "\r\n\r\n",
		"a\r\n.\r\n", "a\n.\r\n", ".a\r\n.b\n.c\r.d", "...\r\n", "\r\n.", ". \r\n",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_content(&cfg, cases[i], strlen(cases[i]), true);
	/* exact expectations for a few, as documented */
	char *got;
	size_t n = send_content(&cfg, "a\n.\nb", 5, 0, 0, &got);
	CHECK_MEM_EQ(got, n, "a\r\n..\r\nb\r\n.\r\n", 13);
	free(got);
	n = send_content(&cfg, "a\r\r\nb", 5, 0, 0, &got);
	CHECK_MEM_EQ(got, n, "a\r\n\r\nb\r\n.\r\n", 11);
	free(got);
	n = send_content(&cfg, "", 0, 0, 0, &got);
	CHECK_MEM_EQ(got, n, ".\r\n", 3);
	free(got);
	n = send_content(&cfg, "x\r\n", 3, 0, 0, &got);
	CHECK_MEM_EQ(got, n, "x\r\n.\r\n", 6);
	free(got);
}

static void test_content_exhaustive(void)
{
	/* every string of up to 6 bytes over { '.', '\r', '\n', 'a' }, split everywhere */
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	static const char sym[4] = { '.', '\r', '\n', 'a' };
	for (size_t len = 1; len <= 6; len++) {
		unsigned total = 1u << (2 * len);
		for (unsigned v = 0; v < total; v++) {
			char in[8];
			for (size_t i = 0; i < len; i++)
				in[i] = sym[(v >> (2 * i)) & 3];
			char want[32];
			size_t wn = oracle(in, len, want);
			for (size_t k = 1; k < len; k++) {
				char *got;
				size_t gn = send_content(&cfg, in, len, 2, k, &got);
				if (gn != wn || memcmp(got, want, wn) != 0) {
					fprintf(stderr, "  k %zu input: \"", k);
					testing_print_escaped(in, len);
					fputs("\"\n", stderr);
					CHECK_MEM_EQ(got, gn, want, wn);
					free(got);
					return;
				}
				free(got);
			}
		}
	}
}

static void test_content_small_buffer(void)
{
	/* 200 KB through a 4 KB output buffer: the writer takes what fits, the rest comes
	 * again; the bytes are the oracle's however the pieces fall */
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	cfg.output_max = 4096;
	size_t n = 200000;
	char *in = malloc(n);
	for (size_t i = 0; i < n; i++) {
		uint32_t r = rng() % 40;
		in[i] = r == 0 ? '.' : r == 1 ? '\r' : r == 2 ? '\n' : r < 6 ? '\n' : (char)('a' + r);
		if (r == 6 && i + 1 < n) {
			in[i] = '\r';
			in[++i] = '\n';
		}
	}
	check_content(&cfg, in, n, false);
	free(in);
}

/* ---- command emission ---- */

static void test_pipelined_emission(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	CHECK(smtp_client_pipelining(s->c));
	CHECK(smtp_client_idle(s->c));
	/* RFC 2920 3.1: MAIL, RCPT... and DATA go in one group */
	CHECK_INT_EQ(mail(s, "a@example.org"), 0);
	CHECK_INT_EQ(rcpt(s, "b@example.net"), 0);
	CHECK_INT_EQ(rcpt(s, "c@example.net"), 1);
	CHECK_INT_EQ(rcpt(s, "d@example.net"), 2);
	CHECK(!smtp_client_idle(s->c));
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	CHECK_INT_EQ(smtp_client_inflight(s->c), 5);
	CHECK_INT_EQ(smtp_client_pending(s->c), 5);
	/* nothing may be queued until DATA's reply */
	CHECK_INT_EQ(smtp_client_rset(s->c), -EBUSY);
	sess_expect_out(s, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
			   "RCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n");
	/* the replies may come in any pieces; each event in order */
	sess_recv(s, "250 2.1.0 Ok\r\n550 5.1.1 no\r\n250 2.1.5 Ok\r\n451 4.3.0 later\r\n354 go\r\n");
	const char *want[] = { "MAIL MAIL 250 2.1.0 Ok", "RCPT RCPT rcpt=0 550 5.1.1 no",
			       "RCPT RCPT rcpt=1 250 2.1.5 Ok", "RCPT RCPT rcpt=2 451 4.3.0 later",
			       "DATA DATA 354 go", NULL };
	sess_expect_events(s, want);
	CHECK_INT_EQ(s->last.rcpt_accepted, 1);
	s->nev = 0;
	CHECK_INT_EQ(smtp_client_content(s->c, "hi", 2), 2);
	CHECK_INT_EQ(smtp_client_content_end(s->c), 0);
	/* after the end of data, with PIPELINING, the next commands follow at once */
	CHECK_INT_EQ(mail(s, ""), 0);
	CHECK_INT_EQ(rcpt(s, "e@example.net"), 0);
	CHECK_INT_EQ(smtp_client_quit(s->c), 0);
	CHECK_INT_EQ(smtp_client_noop(s->c), -EPIPE);
	sess_expect_out(s, "hi\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<e@example.net>\r\nQUIT\r\n");
	sess_recv(s, "250 queued\r\n250 ok\r\n250 ok\r\n221 bye\r\n");
	CHECK_STR_EQ(s->ev[0], "MESSAGE DOT 250 queued");
	CHECK_STR_EQ(s->ev[3], "QUIT QUIT 221 bye");
	CHECK(smtp_client_closed(s->c));
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_CLOSED);
	sess_free(s);
}

static void test_awaiting(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	struct sess *s = sess_new(&cfg);
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_GREETING);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "c.example"), 0);
	sess_recv(s, "220 hi\r\n");
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_EHLO);
	sess_recv(s, EHLO_PIPE);
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_NONE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_MAIL);
	sess_recv(s, "250 ok\r\n");
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_RCPT);
	sess_recv(s, "250 ok\r\n");
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_DATA);
	sess_recv(s, "354 go\r\n");
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_NONE);
	CHECK_INT_EQ(smtp_client_content_end(s->c), 0);
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_DOT);
	sess_recv(s, "250 ok\r\n");
	CHECK_INT_EQ(smtp_client_awaiting(s->c), SMTP_CLIENT_CMD_NONE);
	sess_free(s);
}

static void test_lockstep_emission(void)
{
	/* PIPELINING not offered: one command at a time */
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	for (int variant = 0; variant < 2; variant++) {
		struct sess *s;
		if (variant == 0) {
			s = sess_ready(&cfg, EHLO_PLAIN);
		} else {
			/* offered, but the client does not use it */
			cfg.pipelining = false;
			s = sess_ready(&cfg, EHLO_PIPE);
		}
		CHECK(!smtp_client_pipelining(s->c));
		CHECK_INT_EQ(mail(s, "a@example.org"), 0);
		CHECK_INT_EQ(rcpt(s, "b@example.net"), 0);
		CHECK_INT_EQ(rcpt(s, "c@example.net"), 1);
		CHECK_INT_EQ(smtp_client_data(s->c), 0);
		CHECK_INT_EQ(smtp_client_inflight(s->c), 1);
		CHECK_INT_EQ(smtp_client_pending(s->c), 4);
		sess_expect_out(s, "MAIL FROM:<a@example.org>\r\n");
		sess_recv(s, "250 ok\r\n");
		sess_expect_out(s, "RCPT TO:<b@example.net>\r\n");
		sess_recv(s, "250 ok\r\n");
		sess_expect_out(s, "RCPT TO:<c@example.net>\r\n");
		sess_recv(s, "550 no\r\n");
		sess_expect_out(s, "DATA\r\n");
		sess_recv(s, "354 go\r\n");
		CHECK_INT_EQ(smtp_client_content_end(s->c), 0);
		CHECK_INT_EQ(smtp_client_rset(s->c), 0);
		sess_expect_out(s, ".\r\n"); /* RSET waits for the end of data's reply */
		sess_recv(s, "250 done\r\n");
		sess_expect_out(s, "RSET\r\n");
		sess_recv(s, "250 ok\r\n");
		const char *want[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 250 ok",
				       "RCPT RCPT rcpt=1 550 no", "DATA DATA 354 go",
				       "MESSAGE DOT 250 done", "RSET RSET 250 ok", NULL };
		sess_expect_events(s, want);
		CHECK(smtp_client_idle(s->c));
		sess_free(s);
	}
}

static void test_group_enders(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	/* NOOP ends a group (RFC 2920 3.1): RSET waits for its reply */
	CHECK_INT_EQ(smtp_client_noop(s->c), 0);
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	sess_expect_out(s, "NOOP\r\n");
	sess_recv(s, "250 ok\r\n");
	sess_expect_out(s, "RSET\r\n");
	sess_recv(s, "250 ok\r\n");
	/* RSET does not: MAIL follows it at once */
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	sess_expect_out(s, "RSET\r\nMAIL FROM:<a@b>\r\n");
	sess_recv(s, "250 ok\r\n250 ok\r\n");
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	sess_recv(s, "250 ok\r\n");
	/* EHLO ends a group, and MAIL's parameters depend on its reply: -EAGAIN */
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "again.example"), 0);
	CHECK_INT_EQ(mail(s, "a@b"), -EAGAIN);
	CHECK_INT_EQ(rcpt(s, "a@b"), -EAGAIN);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 1, true), -EAGAIN);
	CHECK_INT_EQ(smtp_client_noop(s->c), 0);
	sess_expect_out(s, "RSET\r\nEHLO again.example\r\n");
	sess_recv(s, "250 mx\r\n"); /* no PIPELINING any more */
	sess_expect_out(s, "NOOP\r\n");
	CHECK(!smtp_client_pipelining(s->c));
	CHECK(!smtp_client_caps(s->c)->size);
	CHECK(smtp_client_caps(s->c)->esmtp);
	sess_recv(s, "250 ok\r\n");
	CHECK(smtp_client_idle(s->c));
	sess_free(s);
}

static void test_inflight_max(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	cfg.inflight_max = 2;
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	for (int i = 0; i < 4; i++)
		CHECK_INT_EQ(rcpt(s, "r@b"), i);
	sess_expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<r@b>\r\n");
	CHECK_INT_EQ(smtp_client_inflight(s->c), 2);
	sess_recv(s, "250 ok\r\n");
	sess_expect_out(s, "RCPT TO:<r@b>\r\n");
	sess_recv(s, "250 ok\r\n250 ok\r\n");
	sess_expect_out(s, "RCPT TO:<r@b>\r\nRCPT TO:<r@b>\r\n");
	sess_free(s);

	/* queue_max bounds what may be queued */
	smtp_client_config_defaults(&cfg);
	cfg.queue_max = 4;
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "r@b"), 0);
	CHECK_INT_EQ(rcpt(s, "r@b"), 1);
	CHECK_INT_EQ(rcpt(s, "r@b"), 2);
	CHECK_INT_EQ(rcpt(s, "r@b"), -ENOBUFS);
	sess_recv(s, "250 ok\r\n");
	CHECK_INT_EQ(rcpt(s, "r@b"), 3);
	sess_free(s);

	/* rcpt_max bounds one transaction */
	smtp_client_config_defaults(&cfg);
	cfg.rcpt_max = 2;
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "r@b"), 0);
	CHECK_INT_EQ(rcpt(s, "r@b"), 1);
	CHECK_INT_EQ(rcpt(s, "r@b"), -E2BIG);
	CHECK_INT_EQ(mail(s, "a@b"), 0); /* a new transaction counts anew */
	CHECK_INT_EQ(rcpt(s, "r@b"), 0);
	sess_free(s);
}

static void test_lockstep_skip(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	cfg.pipelining = false;
	/* MAIL refused: the RCPTs and DATA are not sent, QUIT is */
	struct sess *s = sess_ready(&cfg, EHLO_PLAIN);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "x@b"), 0);
	CHECK_INT_EQ(rcpt(s, "y@b"), 1);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_expect_out(s, "MAIL FROM:<a@b>\r\n");
	sess_recv(s, "550 5.7.1 go away\r\n");
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_COMMANDS);
	CHECK_INT_EQ(smtp_client_quit(s->c), 0);
	sess_expect_out(s, "QUIT\r\n");
	sess_recv(s, "221 bye\r\n");
	const char *want[] = { "MAIL MAIL 550 5.7.1 go away", "RCPT RCPT rcpt=0 noreply=skipped",
			       "RCPT RCPT rcpt=1 noreply=skipped", "DATA DATA noreply=skipped",
			       "QUIT QUIT 221 bye", NULL };
	sess_expect_events(s, want);
	sess_free(s);

	/* no recipient accepted: DATA is not sent; the transaction stays open (RSET due) */
	s = sess_ready(&cfg, EHLO_PLAIN);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "x@b"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n");
	sess_recv(s, "550 no\r\n");
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_COMMANDS);
	CHECK(!smtp_client_idle(s->c));
	sess_recv(s, "");
	const char *want2[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 550 no",
				"DATA DATA noreply=skipped", NULL };
	sess_expect_events(s, want2);
	CHECK(!smtp_client_idle(s->c));
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	sess_expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<x@b>\r\nRSET\r\n");
	sess_recv(s, "250 ok\r\n");
	CHECK(smtp_client_idle(s->c));
	sess_free(s);

	/* with send_after_refusal every command goes out */
	cfg.send_after_refusal = true;
	s = sess_ready(&cfg, EHLO_PLAIN);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "x@b"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "550 no\r\n");
	sess_recv(s, "503 5.5.1 need MAIL\r\n");
	sess_recv(s, "503 5.5.1 need RCPT\r\n");
	sess_expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<x@b>\r\nDATA\r\n");
	const char *want3[] = { "MAIL MAIL 550 no", "RCPT RCPT rcpt=0 503 5.5.1 need MAIL",
				"DATA DATA 503 5.5.1 need RCPT", NULL };
	sess_expect_events(s, want3);
	sess_free(s);
}

static void test_lmtp(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	cfg.lmtp = true;
	struct sess *s = sess_ready(&cfg, "250-lmtp.example\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n");
	CHECK_INT_EQ(smtp_client_helo(s->c, "x"), -EINVAL);
	CHECK(smtp_client_caps(s->c)->enhancedstatuscodes);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	for (int i = 0; i < 4; i++)
		CHECK_INT_EQ(rcpt(s, i == 1 ? "gone@b" : "u@b"), i);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	CHECK_INT_EQ(s->last.rcpt_accepted, 3);
	s->nev = 0;
	CHECK_INT_EQ(smtp_client_content(s->c, "x\r\n", 3), 3);
	CHECK_INT_EQ(smtp_client_content_end(s->c), 0);
	/* RFC 2033 4.2: one reply per accepted recipient, in recipient order */
	sess_recv(s, "250 2.1.5 delivered\r\n452 4.2.2 over quota\r\n");
	CHECK(!smtp_client_idle(s->c));
	CHECK_INT_EQ(smtp_client_pending(s->c), 1);
	sess_recv(s, "550-5.2.1 mailbox\r\n550 5.2.1 disabled\r\n");
	const char *want[] = { "MESSAGE DOT rcpt=0 250 2.1.5 delivered",
			       "MESSAGE DOT rcpt=2 452 4.2.2 over quota",
			       "MESSAGE DOT rcpt=3 550 5.2.1 mailbox 5.2.1 disabled", NULL };
	sess_expect_events(s, want);
	CHECK_STR_EQ(s->last.enhanced, "5.2.1");
	CHECK_INT_EQ(s->last.lines, 2);
	CHECK(smtp_client_idle(s->c));
	/* a lost connection mid-way: the recipients left get noreply events */
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "u@b"), 0);
	CHECK_INT_EQ(rcpt(s, "v@b"), 1);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
	s->nev = 0;
	CHECK_INT_EQ(smtp_client_content_end(s->c), 0);
	sess_recv(s, "250 2.0.0 one\r\n");
	smtp_client_peer_closed(s->c);
	sess_recv(s, "");
	const char *want2[] = { "MESSAGE DOT rcpt=0 250 2.0.0 one",
				"MESSAGE DOT rcpt=1 noreply=lost", NULL };
	sess_expect_events(s, want2);
	CHECK(smtp_client_closed(s->c));
	sess_free(s);
}

static void test_bdat(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 5, false), 0);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_CHUNK);
	CHECK_INT_EQ(smtp_client_rset(s->c), -EBUSY);
	CHECK_INT_EQ(smtp_client_content_end(s->c), -EINVAL);
	CHECK_INT_EQ(smtp_client_content(s->c, "ab", 2), 2);
	/* no more than the chunk's size is taken */
	CHECK_INT_EQ(smtp_client_content(s->c, ".\r\nxyz", 6), 3);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_COMMANDS);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 0, true), 0);
	sess_expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nab.\r\nBDAT 0 LAST\r\n");
	sess_recv(s, "250 ok\r\n250 ok\r\n250 2.0.0 5 octets\r\n250 2.0.0 queued\r\n");
	const char *want[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 250 ok",
			       "BDAT BDAT 250 2.0.0 5 octets", "MESSAGE BDAT-LAST 250 2.0.0 queued",
			       NULL };
	sess_expect_events(s, want);
	CHECK(smtp_client_idle(s->c));
	/* BDAT without CHUNKING offered */
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "x.example"), 0);
	sess_recv(s, "250 mx\r\n");
	CHECK_INT_EQ(smtp_client_bdat(s->c, 1, true), -EOPNOTSUPP);
	sess_free(s);

	/* a refused chunk: no more chunks of this message (RFC 3030 2) */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 1, false), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "x", 1), 1);
	sess_recv(s, "250 ok\r\n250 ok\r\n552 5.3.4 too big\r\n");
	CHECK_INT_EQ(smtp_client_bdat(s->c, 1, true), -ECANCELED);
	CHECK(!smtp_client_idle(s->c));
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	sess_recv(s, "250 ok\r\n");
	CHECK(smtp_client_idle(s->c));
	sess_free(s);

	/* lock-step: a held chunk is dropped when its transaction failed meanwhile */
	cfg.pipelining = false;
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 10, true), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "01234", 5), 5);
	sess_expect_out(s, "MAIL FROM:<a@b>\r\n");
	sess_recv(s, "250 ok\r\n");
	sess_expect_out(s, "RCPT TO:<c@d>\r\n");
	sess_recv(s, "550 no\r\n");
	/* the rest of the chunk is taken and dropped */
	CHECK_INT_EQ(smtp_client_content(s->c, "56789", 5), 5);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_COMMANDS);
	CHECK_INT_EQ(smtp_client_rset(s->c), 0);
	sess_expect_out(s, "RSET\r\n");
	sess_recv(s, "250 ok\r\n");
	const char *want2[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 550 no",
				"MESSAGE BDAT-LAST noreply=skipped", "RSET RSET 250 ok", NULL };
	sess_expect_events(s, want2);
	CHECK(smtp_client_idle(s->c));
	sess_free(s);

	/* lock-step: a chunk goes out whole after the replies before it */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 4, true), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "ab", 2), 2);
	sess_recv(s, "250 ok\r\n");
	sess_recv(s, "250 ok\r\n");
	sess_expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 4 LAST\r\nab");
	CHECK_INT_EQ(smtp_client_content(s->c, "cd", 2), 2);
	sess_expect_out(s, "cd");
	sess_recv(s, "250 queued\r\n");
	CHECK_STR_EQ(s->ev[s->nev - 1], "MESSAGE BDAT-LAST 250 queued");
	sess_free(s);

	/* LMTP: BDAT LAST gets one reply per accepted recipient */
	cfg.pipelining = true;
	cfg.lmtp = true;
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(rcpt(s, "e@f"), 1);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 0, true), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n250 ok\r\n250 one\r\n450 two\r\n");
	const char *want3[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 250 ok",
				"RCPT RCPT rcpt=1 250 ok", "MESSAGE BDAT-LAST rcpt=0 250 one",
				"MESSAGE BDAT-LAST rcpt=1 450 two", NULL };
	sess_expect_events(s, want3);
	CHECK(smtp_client_idle(s->c));
	/* RFC 2033 4.3: no recipient accepted, BDAT LAST gets zero replies; the QUIT's
	 * reply is the next one */
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 2, true), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "xy", 2), 2);
	CHECK_INT_EQ(smtp_client_quit(s->c), 0);
	sess_recv(s, "250 ok\r\n550 no\r\n221 bye\r\n");
	const char *want4[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 550 no",
				"MESSAGE BDAT-LAST noreply=none-due", "QUIT QUIT 221 bye", NULL };
	sess_expect_events(s, want4);
	sess_free(s);
}

static void test_arguments(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	/* nothing that could smuggle a command in */
	CHECK_INT_EQ(mail(s, "a@b>\r\nRSET"), -EINVAL);
	CHECK_INT_EQ(rcpt(s, "a@b\n"), -EINVAL);
	CHECK_INT_EQ(rcpt(s, ""), -EINVAL);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "a b"), -EINVAL);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, ""), -EINVAL);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, NULL), -EINVAL);
	struct smtp_client_mail m = { .sender = "a@b", .ret = "FULL\r\n" };
	CHECK_INT_EQ(smtp_client_mail(s->c, &m), -EINVAL);
	m.ret = "A=B";
	CHECK_INT_EQ(smtp_client_mail(s->c, &m), -EINVAL);
	m.ret = "";
	CHECK_INT_EQ(smtp_client_mail(s->c, &m), -EINVAL);
	m.ret = NULL;
	m.extra = "X=1\r\nQUIT";
	CHECK_INT_EQ(smtp_client_mail(s->c, &m), -EINVAL);
	struct smtp_client_rcpt r = { .addr = "a@b", .notify = "SUCCESS FAILURE" };
	CHECK_INT_EQ(smtp_client_rcpt(s->c, &r), -EINVAL);
	/* quoted local parts with spaces are fine */
	CHECK_INT_EQ(rcpt(s, "\"john doe\"@b"), 0);
	/* a command line over SMTP_CLIENT_COMMAND_MAX */
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(rcpt(s, big), -E2BIG);
	big[SMTP_CLIENT_COMMAND_MAX - 11] = '\0'; /* "RCPT TO:<" + ">\r\n" = 12 */
	CHECK_INT_EQ(rcpt(s, big), -E2BIG);
	big[SMTP_CLIENT_COMMAND_MAX - 12] = '\0';
	CHECK_INT_EQ(rcpt(s, big), 1);
	/* SIZE over the limit (1000), SMTPUTF8 offered here */
	struct smtp_client_mail m2 = { .sender = "a@b", .size = 1001 };
	CHECK_INT_EQ(smtp_client_mail(s->c, &m2), -EMSGSIZE);
	m2.size = 1000;
	m2.smtputf8 = true;
	m2.body = SMTP_BODY_8BITMIME;
	m2.ret = "HDRS";
	m2.envid = "QQ+2B1";
	m2.extra = "X-FOO=1";
	CHECK_INT_EQ(smtp_client_mail(s->c, &m2), 0);
	struct smtp_client_rcpt r2 = { .addr = "b@c", .notify = "SUCCESS,FAILURE",
				       .orcpt = "rfc822;b@c" };
	CHECK_INT_EQ(smtp_client_rcpt(s->c, &r2), 0);
	m2.body = SMTP_BODY_BINARYMIME;
	CHECK_INT_EQ(smtp_client_mail(s->c, &m2), -EOPNOTSUPP);
	sess_drain(s);
	const char *o = "MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1 "
			"X-FOO=1\r\nRCPT TO:<b@c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@c\r\n";
	CHECK(s->out_len > strlen(o) &&
	      memcmp(s->out + s->out_len - strlen(o), o, strlen(o)) == 0);
	s->out_len = 0;
	sess_free(s);

	/* nothing offered: SIZE, BODY, RET... are left out; SMTPUTF8 cannot go */
	s = sess_ready(&cfg, "250 mx\r\n");
	m2.body = SMTP_BODY_8BITMIME;
	CHECK_INT_EQ(smtp_client_mail(s->c, &m2), -EOPNOTSUPP);
	m2.smtputf8 = false;
	m2.size = 1u << 30;
	CHECK_INT_EQ(smtp_client_mail(s->c, &m2), 0);
	CHECK_INT_EQ(smtp_client_rcpt(s->c, &r2), 0);
	sess_expect_out(s, "MAIL FROM:<a@b> X-FOO=1\r\n");
	sess_recv(s, "250 ok\r\n");
	sess_expect_out(s, "RCPT TO:<b@c>\r\n");
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "x", 1), -EINVAL); /* no 354 yet */
	CHECK_INT_EQ(smtp_client_content_end(s->c), -EINVAL);
	sess_free(s);

	/* BINARYMIME goes with BDAT only */
	s = sess_ready(&cfg, "250-mx\r\n250-BINARYMIME\r\n250 CHUNKING\r\n");
	struct smtp_client_mail m3 = { .sender = "a@b", .body = SMTP_BODY_BINARYMIME };
	CHECK_INT_EQ(smtp_client_mail(s->c, &m3), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), -EINVAL);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 0, true), 0);
	sess_expect_out(s, "MAIL FROM:<a@b> BODY=BINARYMIME\r\n");
	sess_free(s);

	/* HELO: no extensions */
	s = sess_new(&cfg);
	CHECK_INT_EQ(smtp_client_helo(s->c, "client.example"), 0);
	sess_recv(s, "220 hi\r\n");
	sess_expect_out(s, "HELO client.example\r\n");
	sess_recv(s, "250 mx\r\n");
	CHECK(!smtp_client_caps(s->c)->esmtp);
	CHECK(smtp_client_idle(s->c));
	sess_free(s);

	/* config bounds */
	struct smtp_client *c;
	smtp_client_config_defaults(&cfg);
	cfg.line_max = 8;
	CHECK_INT_EQ(smtp_client_new(&c, &cfg), -EINVAL);
	CHECK(c == NULL);
	smtp_client_config_defaults(&cfg);
	cfg.line_hard_max = cfg.line_max - 1;
	CHECK_INT_EQ(smtp_client_new(&c, &cfg), -EINVAL);
	smtp_client_config_defaults(&cfg);
	cfg.output_max = 100;
	CHECK_INT_EQ(smtp_client_new(&c, &cfg), -EINVAL);
	smtp_client_config_defaults(&cfg);
	cfg.inflight_max = cfg.queue_max + 1;
	CHECK_INT_EQ(smtp_client_new(&c, &cfg), -EINVAL);
}

static void test_session_ends(void)
{
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);

	/* a reply before the command it would answer was sent: unsolicited */
	struct sess *s = sess_new(&cfg);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "c.example"), 0);
	sess_recv(s, "220 hi\r\n250 too early\r\n");
	const char *want[] = { "GREETING GREETING 220 hi",
			       "PROTOCOL_ERROR NONE error=unsolicited 250 too early",
			       "HELO EHLO noreply=error", NULL };
	sess_expect_events(s, want);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_ERROR);
	CHECK_INT_EQ(smtp_client_output(s->c).len, 0);
	CHECK_INT_EQ(smtp_client_noop(s->c), -EPIPE);
	sess_free(s);

	/* a 2xx to DATA: no content follows; an error */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n250 whatever\r\n");
	const char *want2[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 250 ok",
				"PROTOCOL_ERROR DATA error=unexpected-code 250 whatever",
				"DATA DATA noreply=error", NULL };
	sess_expect_events(s, want2);
	CHECK_INT_EQ(smtp_client_content(s->c, "x", 1), -EPIPE);
	sess_free(s);

	/* 421 ends the session; pipelined commands after it get noreply closed */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "421 4.3.2 shutting down\r\n250 ignored\r\n");
	const char *want3[] = { "MAIL MAIL 421 4.3.2 shutting down",
				"RCPT RCPT rcpt=0 noreply=closed", "DATA DATA noreply=closed",
				NULL };
	sess_expect_events(s, want3);
	CHECK_INT_EQ(smtp_client_state(s->c), SMTP_CLIENT_ST_CLOSED);
	CHECK_INT_EQ(smtp_client_rset(s->c), -EPIPE);
	sess_free(s);

	/* a 554 greeting: only QUIT goes out (RFC 5321 3.1) */
	s = sess_new(&cfg);
	CHECK_INT_EQ(smtp_client_ehlo(s->c, "c.example"), 0);
	sess_recv(s, "554 5.7.1 no service\r\n");
	CHECK_INT_EQ(smtp_client_quit(s->c), 0);
	sess_expect_out(s, "QUIT\r\n");
	sess_recv(s, "221 bye\r\n");
	const char *want4[] = { "GREETING GREETING 554 5.7.1 no service",
				"HELO EHLO noreply=skipped", "QUIT QUIT 221 bye", NULL };
	sess_expect_events(s, want4);
	sess_free(s);

	/* the peer goes away before the greeting */
	s = sess_new(&cfg);
	smtp_client_peer_closed(s->c);
	sess_recv(s, "");
	const char *want5[] = { "GREETING GREETING noreply=lost", NULL };
	sess_expect_events(s, want5);
	smtp_client_peer_closed(s->c); /* twice is harmless */
	sess_free(s);

	/* malformed reply mid-session */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(smtp_client_noop(s->c), 0);
	sess_recv(s, "HTTP/1.1 400 Bad Request\r\n");
	const char *want6[] = { "PROTOCOL_ERROR NOOP error=malformed 0 HTTP/1.1 400 Bad Request",
				"NOOP NOOP noreply=error", NULL };
	sess_expect_events(s, want6);
	sess_free(s);

	/* a reply to a BDAT whose chunk is not all out yet answers nothing */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_bdat(s->c, 5, true), 0);
	CHECK_INT_EQ(smtp_client_content(s->c, "ab", 2), 2);
	sess_recv(s, "250 ok\r\n250 ok\r\n250 early\r\n");
	const char *want7[] = { "MAIL MAIL 250 ok", "RCPT RCPT rcpt=0 250 ok",
				"PROTOCOL_ERROR NONE error=unsolicited 250 early",
				"MESSAGE BDAT-LAST noreply=error", NULL };
	sess_expect_events(s, want7);
	sess_free(s);

	/* input in content state is unsolicited */
	s = sess_ready(&cfg, EHLO_PIPE);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n354 go\r\n421 4.4.2 timeout\r\n");
	CHECK_STR_EQ(s->ev[3], "PROTOCOL_ERROR NONE error=unsolicited 421 4.4.2 timeout");
	CHECK_INT_EQ(smtp_client_content(s->c, "x", 1), -EPIPE);
	sess_free(s);
}

static void test_names(void)
{
	for (int i = 0; i < SMTP_CLIENT_ST_MAX; i++)
		CHECK(strcmp(smtp_client_state_name((enum smtp_client_state)i), "?") != 0);
	for (int i = 0; i < SMTP_CLIENT_CMD_MAX; i++)
		CHECK(strcmp(smtp_client_cmd_name((enum smtp_client_cmd)i), "?") != 0);
	for (int i = 0; i < SMTP_CLIENT_EV_MAX; i++)
		CHECK(strcmp(smtp_client_event_name((enum smtp_client_event_type)i), "?") != 0);
	for (int i = 0; i < SMTP_CLIENT_NOREPLY_MAX; i++)
		CHECK(strcmp(smtp_client_noreply_name((enum smtp_client_noreply)i), "?") != 0);
	for (int i = 0; i < SMTP_CLIENT_ERR_MAX; i++)
		CHECK(strcmp(smtp_client_error_name((enum smtp_client_error)i), "?") != 0);
	for (int i = 0; i < SMTP_CLIENT_AUTH_MECH_MAX; i++)
		CHECK(strcmp(smtp_client_auth_mech_name((enum smtp_client_auth_mech)i), "?") != 0);
	CHECK_STR_EQ(smtp_client_state_name(SMTP_CLIENT_ST_MAX), "?");
	CHECK_STR_EQ(smtp_client_cmd_name(SMTP_CLIENT_CMD_MAX), "?");
}

static void test_memory(void)
{
	/* memory is the object plus the output buffer, which stops at output_max */
	struct smtp_client_config cfg;
	smtp_client_config_defaults(&cfg);
	cfg.output_max = 8192;
	struct sess *s = sess_ready(&cfg, EHLO_PIPE);
	size_t base = smtp_client_memory(s->c);
	CHECK(base < 64 * 1024);
	CHECK_INT_EQ(mail(s, "a@b"), 0);
	CHECK_INT_EQ(rcpt(s, "c@d"), 0);
	CHECK_INT_EQ(smtp_client_data(s->c), 0);
	sess_recv(s, "250 ok\r\n250 ok\r\n354 go\r\n");
	char chunk[1000];
	memset(chunk, 'z', sizeof(chunk));
	size_t total = 0;
	for (int i = 0; i < 100; i++) {
		ssize_t r = smtp_client_content(s->c, chunk, sizeof(chunk));
		CHECK(r >= 0);
		total += (size_t)r;
		if (r == 0)
			break; /* full: the caller must drain */
	}
	CHECK(total >= 8000 && total <= 8192);
	CHECK(smtp_client_memory(s->c) <= base + 8192);
	CHECK_INT_EQ(smtp_client_noop(s->c), -EBUSY);
	sess_free(s);
}

int main(void)
{
	RUN_TEST(test_reply_lines);
	RUN_TEST(test_enhanced_codes);
	RUN_TEST(test_reply_errors);
	RUN_TEST(test_reply_long_lines);
	RUN_TEST(test_reply_junk);
	RUN_TEST(test_caps);
	RUN_TEST(test_content_cases);
	RUN_TEST(test_content_exhaustive);
	RUN_TEST(test_content_small_buffer);
	RUN_TEST(test_pipelined_emission);
	RUN_TEST(test_lockstep_emission);
	RUN_TEST(test_awaiting);
	RUN_TEST(test_group_enders);
	RUN_TEST(test_inflight_max);
	RUN_TEST(test_lockstep_skip);
	RUN_TEST(test_lmtp);
	RUN_TEST(test_bdat);
	RUN_TEST(test_arguments);
	RUN_TEST(test_session_ends);
	RUN_TEST(test_names);
	RUN_TEST(test_memory);
	return TEST_RESULT();
}
