/* rbl_parse: the rbldnsd(8) zone file parser. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tables/rbl_parse.h"
#include "testing.h"

static int parse(const char *text, enum rbl_format fmt, struct rbl_model *m, char *err,
		 size_t errlen)
{
	return rbl_parse(text, strlen(text), fmt, m, NULL, NULL, err, errlen);
}

static void test_a_values(void)
{
	uint8_t a[4];
	CHECK_INT_EQ(rbl_parse_a("2", 1, a), 0);
	CHECK(a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] == 2);
	/* inet_aton forms, as rbldnsd reads them (checked against rbldnsd 1.0pre) */
	CHECK_INT_EQ(rbl_parse_a("1.2", 3, a), 0);
	CHECK(a[0] == 1 && a[1] == 0 && a[2] == 0 && a[3] == 2);
	CHECK_INT_EQ(rbl_parse_a("1.2.3", 5, a), 0);
	CHECK(a[0] == 1 && a[1] == 2 && a[2] == 0 && a[3] == 3);
	CHECK_INT_EQ(rbl_parse_a("127.0.0.10", 10, a), 0);
	CHECK(a[0] == 127 && a[3] == 10);
	CHECK_INT_EQ(rbl_parse_a("", 0, a), -EINVAL);
	CHECK_INT_EQ(rbl_parse_a("256", 3, a), -EINVAL);
	CHECK_INT_EQ(rbl_parse_a("1.2.3.4.5", 9, a), -EINVAL);
	CHECK_INT_EQ(rbl_parse_a("1..2", 4, a), -EINVAL);
	CHECK_INT_EQ(rbl_parse_a("1.", 2, a), -EINVAL);
	CHECK_INT_EQ(rbl_parse_a("x", 1, a), -EINVAL);
}

static void test_txt_expand(void)
{
	char out[RBL_TXT_MAX + 1];
	CHECK_INT_EQ(rbl_txt_expand("a $ b $$ c", 10, "1.2.3.4", out, sizeof(out)), 15);
	CHECK_STR_EQ(out, "a 1.2.3.4 b $ c");
	char small[5];
	rbl_txt_expand("$$$", 3, "1.2.3.4", small, sizeof(small));
	CHECK_STR_EQ(small, "$1.2");
}

/* ip4set ranges split at octet levels: the forms of rbldnsd(8) for 127.0.0.0/24 and
 * 127.16.0.0-127.31.255.255 give the same intervals. */
static void test_ip4set_forms(void)
{
	static const char *const a24[] = { "127.0.0.0/24", "127.0.0", "127/24", "127-127.0.0",
					   "127.0.0.0-127.0.0.255", "127.0.0.1-255" };
	char err[256];
	for (size_t i = 0; i < sizeof(a24) / sizeof(a24[0]); i++) {
		struct rbl_model m;
		char text[64];
		snprintf(text, sizeof(text), "%s\n", a24[i]);
		CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
		bool one = i == 5; /* 127.0.0.1-255 lacks .0 */
		CHECK_INT_EQ(m.nip, 1);
		if (m.nip == 1) {
			CHECK((uint32_t)m.ip[0].lo == (one ? 0x7f000001u : 0x7f000000u));
			CHECK((uint32_t)m.ip[0].hi == 0x7f0000ffu);
			CHECK_INT_EQ(m.ip[0].prio, one ? 32 : 24);
		}
		rbl_model_free(&m);
	}
	static const char *const a12[] = { "127.16.0.0-127.31.255.255", "127.16.0-127.31.255",
					   "127.16-127.31", "127.16-31", "127.16.0.0/12",
					   "127.16.0/12", "127.16/12" };
	for (size_t i = 0; i < sizeof(a12) / sizeof(a12[0]); i++) {
		struct rbl_model m;
		char text[64];
		snprintf(text, sizeof(text), "%s\n", a12[i]);
		CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
		CHECK_INT_EQ(m.nip, 1);
		if (m.nip == 1) {
			CHECK((uint32_t)m.ip[0].lo == 0x7f100000u);
			CHECK((uint32_t)m.ip[0].hi == 0x7f1fffffu);
			CHECK_INT_EQ(m.ip[0].prio, 16); /* a /12 is sixteen /16s */
		}
		rbl_model_free(&m);
	}
	/* 1.2.3.128-1.2.5.255: 128 /32s then two /24s */
	struct rbl_model m;
	CHECK_INT_EQ(parse("1.2.3.128-1.2.5.255\n", RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m.nip, 2);
	if (m.nip == 2) {
		CHECK((uint32_t)m.ip[0].lo == 0x01020380u && (uint32_t)m.ip[0].hi == 0x010203ffu);
		CHECK_INT_EQ(m.ip[0].prio, 32);
		CHECK((uint32_t)m.ip[1].lo == 0x01020400u && (uint32_t)m.ip[1].hi == 0x010205ffu);
		CHECK_INT_EQ(m.ip[1].prio, 24);
	}
	rbl_model_free(&m);
}

static void test_values(void)
{
	char err[256];
	struct rbl_model m;
	const char *text = "# from rbldnsd(8)\n"
			   ":127.0.0.2:IP address $ is listed\n"
			   "127.0.0.4\n"
			   "127.0.0.5 :5\n"
			   "127.0.0.6 :6:\n"
			   "127.0.0.7 IP address $ running an open relay\n";
	CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m.nip, 4);
	CHECK_INT_EQ(m.entries, 4);
	if (m.nip == 4) {
		const struct rbl_value *v4 = &m.values[m.ip[0].val], *v5 = &m.values[m.ip[1].val],
				       *v6 = &m.values[m.ip[2].val], *v7 = &m.values[m.ip[3].val];
		CHECK(v4->a[3] == 2 && v4->has_txt);
		CHECK(v4->txt_len == 22 && memcmp(m.arena + v4->txt_off, "IP address $ is listed", 22) == 0);
		CHECK(v5->a[3] == 5 && v5->has_txt);
		CHECK(v6->a[3] == 6 && !v6->has_txt);
		CHECK(v7->a[3] == 2 && v7->has_txt &&
		      v7->txt_len == strlen("IP address $ running an open relay"));
	}
	rbl_model_free(&m);

	/* $n and $= (the example of rbldnsd(8)) */
	text = "$1 See http://www.example.com/bl\n"
	       "$2 for details\n"
	       "127.0.0.2  $1/spammer/$ $2\n"
	       "127.0.0.4  This spammer wants some $$$$.  $1/$\n";
	CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
	if (m.nip == 2) {
		char out[RBL_TXT_MAX + 1];
		const struct rbl_value *v = &m.values[m.ip[0].val];
		rbl_txt_expand(m.arena + v->txt_off, v->txt_len, "127.0.0.2", out, sizeof(out));
		CHECK_STR_EQ(out, "See http://www.example.com/bl/spammer/127.0.0.2 for details");
		v = &m.values[m.ip[1].val];
		rbl_txt_expand(m.arena + v->txt_off, v->txt_len, "127.0.0.4", out, sizeof(out));
		CHECK_STR_EQ(out, "This spammer wants some $$.  See http://www.example.com/bl/127.0.0.4");
	} else {
		CHECK_INT_EQ(m.nip, 2);
	}
	rbl_model_free(&m);

	text = "$= See http://www.example.com/bl?$= ($) for details\n"
	       "127.0.0.2    r123\n"
	       "127.0.0.3\n"
	       "127.0.0.4    =See other blocklists for details about $\n";
	CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &m, err, sizeof(err)), 0);
	static const char *const want[3][2] = {
		{ "127.0.0.2", "See http://www.example.com/bl?r123 (127.0.0.2) for details" },
		{ "127.0.0.3", "See http://www.example.com/bl?127.0.0.3 (127.0.0.3) for details" },
		{ "127.0.0.4", "See other blocklists for details about 127.0.0.4" },
	};
	CHECK_INT_EQ(m.nip, 3);
	for (size_t i = 0; i < m.nip && i < 3; i++) {
		char out[RBL_TXT_MAX + 1];
		const struct rbl_value *v = &m.values[m.ip[i].val];
		rbl_txt_expand(m.arena + v->txt_off, v->txt_len, want[i][0], out, sizeof(out));
		CHECK_STR_EQ(out, want[i][1]);
	}
	rbl_model_free(&m);
}

static void test_specials(void)
{
	char err[256];
	struct rbl_model m;
	const char *text = "$SOA 1w ns1.ex.com admin.ex.com 0 2h 2h 1w 1h\n"
			   "$NS 1w ns1.ex.com\n"
			   "$TTL 3600\n"
			   "#$TIMESTAMP 2026:11:01 +2d\n"
			   "example.com\n";
	CHECK_INT_EQ(parse(text, RBL_FORMAT_DNSET, &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m.expires, 1793491200LL + 2 * 86400); /* 2026-11-01 00:00 UTC */
	rbl_model_free(&m);
	CHECK_INT_EQ(parse("$TIMESTAMP 20261101120000 2026-11-02-00\nx.com\n", RBL_FORMAT_DNSET, &m,
			   err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m.expires, 1793577600LL); /* 2026-11-02 00:00 UTC */
	rbl_model_free(&m);
	CHECK_INT_EQ(parse("$TIMESTAMP 0\nx.com\n", RBL_FORMAT_DNSET, &m, err, sizeof(err)), 0);
	CHECK_INT_EQ(m.expires, 0);
	rbl_model_free(&m);
}

static unsigned warnings;
static void count_warn(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	warnings++;
}

static void test_maxrange(void)
{
	char err[256];
	struct rbl_model m;
	const char *text = "$MAXRANGE4 /24\n10.0.0.0/16\n10.1.0.0/24\n$MAXRANGE4 512\n"
			   "10.2.0.0/23\n10.3.0.0/22\n";
	warnings = 0;
	CHECK_INT_EQ(rbl_parse(text, strlen(text), RBL_FORMAT_IP4SET, &m, count_warn, NULL, err,
			       sizeof(err)),
		     0);
	/* /16 over the limit; 512 cannot raise /24; so /23 and /22 are skipped too */
	CHECK_INT_EQ(warnings, 3);
	CHECK_INT_EQ(m.entries, 1);
	rbl_model_free(&m);
}

static void expect_error(const char *text, enum rbl_format fmt, const char *want)
{
	char err[256] = "";
	struct rbl_model m;
	CHECK_INT_EQ(parse(text, fmt, &m, err, sizeof(err)), -EINVAL);
	if (!strstr(err, want)) {
		fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", err, want);
		CHECK(strstr(err, want) != NULL);
	}
	rbl_model_free(&m);
}

static void test_errors(void)
{
	expect_error("1.2.3.4\n1.2.3.256\n", RBL_FORMAT_IP4SET, "line 2: bad address");
	expect_error("# c\n\n10.0.0.1/24\n", RBL_FORMAT_IP4SET, "line 3:");
	expect_error("1.2.3.4-1.2.3.1\n", RBL_FORMAT_IP4SET, "line 1: bad address range");
	expect_error("1.2.3.0/24\n", RBL_FORMAT_IP4TSET, "line 1:");
	expect_error("1.2.3\n", RBL_FORMAT_IP4TSET, "line 1:");
	expect_error("1.2.3.4-5\n", RBL_FORMAT_IP4TRIE, "line 1:");
	expect_error("x\n!1.2.3.4\n", RBL_FORMAT_IP4TSET, "line 1:");
	expect_error("1.2.3.4 :999:x\n", RBL_FORMAT_IP4SET, "line 1: bad A value");
	expect_error(":x:y\n", RBL_FORMAT_DNSET, "line 1: bad A value");
	expect_error("a..b\n", RBL_FORMAT_DNSET, "line 1: bad domain name");
	expect_error("!\n", RBL_FORMAT_DNSET, "line 1: empty exclusion");
	expect_error("2001:db8::/129\n", RBL_FORMAT_IP6TRIE, "line 1:");
	expect_error("2001:db8::1/64\n", RBL_FORMAT_IP6TRIE, "bits set after");
	expect_error("2001:db8::/64\n", RBL_FORMAT_IP6TSET, "line 1:");
	expect_error("1.2.3.4\n", RBL_FORMAT_COMBINED, "line 1: entry before the first $DATASET");
	expect_error("$DATASET combined @\n", RBL_FORMAT_COMBINED, "line 1: $DATASET: unsupported");
	expect_error("$DATASET ip4set @\n", RBL_FORMAT_IP4SET, "outside a combined zone");
	expect_error("$TIMESTAMP 2026:13:01\n", RBL_FORMAT_DNSET, "line 1: bad $TIMESTAMP");
	expect_error("$TIMESTAMP 1269:11:01\n", RBL_FORMAT_DNSET, "line 1: bad $TIMESTAMP");
	expect_error("x.com\n$TIMESTAMP 2026:11:01 1269:11:01\n", RBL_FORMAT_DNSET,
		     "line 2: bad $TIMESTAMP expiry");
	expect_error("$MAXRANGE4 /33\n", RBL_FORMAT_IP4SET, "line 1: bad $MAXRANGE4");
	char big[RBL_LINE_MAX + 10];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	expect_error(big, RBL_FORMAT_DNSET, "line 1: line longer than");
	char err[128];
	struct rbl_model m;
	CHECK_INT_EQ(rbl_parse("a\0b\n", 4, RBL_FORMAT_DNSET, &m, NULL, NULL, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "NUL") != NULL);
	rbl_model_free(&m);
}

/* The same zone with CRLF line ends, and every prefix of it: never a crash, and a prefix
 * that ends on a line boundary parses as the lines it holds. */
static void test_split(void)
{
	const char *text = ":3:Listed $\n10.0.0.0/8\n!10.1.0.0/16\n10.2.3.4 :4:x\n"
			   "192.168.1-192.168.3 txt\n";
	char err[256];
	struct rbl_model whole, crlf;
	CHECK_INT_EQ(parse(text, RBL_FORMAT_IP4SET, &whole, err, sizeof(err)), 0);
	char buf[512];
	size_t o = 0;
	for (const char *p = text; *p; p++) {
		if (*p == '\n')
			buf[o++] = '\r';
		buf[o++] = *p;
	}
	buf[o] = '\0';
	CHECK_INT_EQ(parse(buf, RBL_FORMAT_IP4SET, &crlf, err, sizeof(err)), 0);
	CHECK_INT_EQ(crlf.nip, whole.nip);
	for (size_t i = 0; i < whole.nip && i < crlf.nip; i++) {
		CHECK(whole.ip[i].lo == crlf.ip[i].lo && whole.ip[i].hi == crlf.ip[i].hi);
		CHECK(whole.ip[i].excl == crlf.ip[i].excl);
	}
	rbl_model_free(&crlf);
	size_t len = strlen(text), lines = 0;
	for (size_t k = 0; k <= len; k++) {
		struct rbl_model m;
		int rc = rbl_parse(text, k, RBL_FORMAT_IP4SET, &m, NULL, NULL, err, sizeof(err));
		CHECK(rc == 0 || rc == -EINVAL);
		if (k == len || (k > 0 && text[k - 1] == '\n')) {
			CHECK_INT_EQ(rc, 0);
			CHECK(m.nip <= whole.nip);
			if (k == len)
				CHECK_INT_EQ(m.nip, whole.nip);
			lines++;
		}
		rbl_model_free(&m);
	}
	CHECK_INT_EQ(lines, 5);
	rbl_model_free(&whole);
}

static void test_formats(void)
{
	char err[256];
	struct rbl_model m;
	CHECK_INT_EQ(parse("2001:21ab:c000/36\n2001:21ab:def7:4242 :127.0.1.3: smells\n::1 # lo\n"
			   "!2605:6001:42::bead\n",
			   RBL_FORMAT_IP6TRIE, &m, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m.nip, 4);
	if (m.nip == 4) {
		CHECK_INT_EQ(m.ip[0].prio, 36);
		CHECK_INT_EQ(m.ip[1].prio, 64);
		CHECK_INT_EQ(m.ip[2].prio, 128);
		CHECK(m.ip[2].lo == 1 && m.ip[2].hi == 1);
		CHECK(m.ip[3].excl && m.ip[3].prio == 128);
	}
	rbl_model_free(&m);
	CHECK_INT_EQ(parse("2001:20fe:23:41ed\n!abac:adab:ad00:42f::2\n", RBL_FORMAT_IP6TSET, &m,
			   err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m.nip, 2);
	if (m.nip == 2) {
		CHECK_INT_EQ(m.ip[0].prio, 64);
		CHECK_INT_EQ(m.ip[1].prio, 128);
	}
	rbl_model_free(&m);
	CHECK_INT_EQ(parse("Example.COM.\n*.wild.example\n.both.example\n!x.both.example\n",
			   RBL_FORMAT_DNSET, &m, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m.nnames, 5);
	if (m.nnames == 5) {
		CHECK(m.names[0].kind == RBL_NAME_EXACT && m.names[0].name_len == 11 &&
		      memcmp(m.arena + m.names[0].name_off, "example.com", 11) == 0);
		CHECK(m.names[1].kind == RBL_NAME_SUBDOMAINS);
		CHECK(m.names[2].kind == RBL_NAME_EXACT && m.names[3].kind == RBL_NAME_SUBDOMAINS);
		CHECK(m.names[4].excl);
	}
	rbl_model_free(&m);
	CHECK_INT_EQ(parse("$NS 1w ns\n$DATASET ip4set:p proxies @\n1.2.3.4\n"
			   "$DATASET dnset:n names\nx.com\n$DATASET ip6trie @\n::1\n",
			   RBL_FORMAT_COMBINED, &m, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(m.nds, 3);
	CHECK_STR_EQ(m.ds[0].subzones, "proxies @");
	CHECK_INT_EQ(m.ds[1].fmt, RBL_FORMAT_DNSET);
	CHECK_INT_EQ(m.nip, 2);
	CHECK_INT_EQ(m.nnames, 1);
	if (m.nip == 2)
		CHECK(m.ip[0].ds == 0 && m.ip[1].ds == 2 && m.ip[1].family == 6);
	rbl_model_free(&m);
}

int main(void)
{
	RUN_TEST(test_a_values);
	RUN_TEST(test_txt_expand);
	RUN_TEST(test_ip4set_forms);
	RUN_TEST(test_values);
	RUN_TEST(test_specials);
	RUN_TEST(test_maxrange);
	RUN_TEST(test_errors);
	RUN_TEST(test_split);
	RUN_TEST(test_formats);
	return TEST_RESULT();
}
