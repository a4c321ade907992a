/* tables/table_cidr.c: cidr_table(5) parsing, first-match semantics, and the compiled
 * interval form checked against a brute-force scan of thousands of random rule sets. */
#include <errno.h>
#include <stdlib.h>

#include "tables/table_cidr.h"
#include "testing.h"

static struct table_cidr *parse_ok(const char *text)
{
	struct table_cidr *c = NULL;
	char err[256] = "";
	int rc = table_cidr_parse(text, strlen(text), &c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  parse failed: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	return c;
}

static void parse_fails(const char *text, const char *why)
{
	struct table_cidr *c = NULL;
	char err[256] = "";
	CHECK_INT_EQ(table_cidr_parse(text, strlen(text), &c, err, sizeof(err)), -EINVAL);
	CHECK(c == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  \"%s\": reason \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(strstr(err, why) != NULL);
	}
}

/* The value the compiled segments give for addr (binary search, as LMDB's range search). */
static const char *seg_lookup(const struct table_cidr_segment *s, size_t n,
			      const struct mx_inet_addr *a)
{
	size_t lo = 0, hi = n;
	while (lo < hi) { /* first segment with (family, hi) >= (a.family, a) */
		size_t mid = (lo + hi) / 2;
		int c = s[mid].family != a->family ? (s[mid].family < a->family ? -1 : 1)
						   : memcmp(s[mid].hi, a->bytes, 16);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == n || s[lo].family != a->family || memcmp(s[lo].lo, a->bytes, 16) > 0)
		return NULL;
	return s[lo].value;
}

static const char *both(const struct table_cidr *c, const char *addr)
{
	struct mx_inet_addr a;
	CHECK(table_cidr_key(addr, &a));
	struct table_cidr_segment *s;
	size_t n;
	CHECK_INT_EQ(table_cidr_compile(c, &s, &n), 0);
	const char *v1 = table_cidr_scan(c, &a), *v2 = seg_lookup(s, n, &a);
	CHECK(v1 == v2);
	free(s);
	return v1 ? v1 : "(none)";
}

static void test_first_match_in_file_order(void)
{
	struct table_cidr *c = parse_ok("# most specific last: the /8 wins anyway\n"
					"10.0.0.0/8 EIGHT\n"
					"10.1.0.0/16 SIXTEEN\n"
					"[192.0.2.7] ONE\n"
					"192.0.2.0/24 NET\n"
					"2001:db8::/32 V6\n"
					"[2001:db8:1::]/48 NOTREACHED\n"
					"0.0.0.0/0 ALL4\n");
	CHECK_STR_EQ(both(c, "10.1.2.3"), "EIGHT");
	CHECK_STR_EQ(both(c, "192.0.2.7"), "ONE");
	CHECK_STR_EQ(both(c, "192.0.2.8"), "NET");
	CHECK_STR_EQ(both(c, "2001:db8:1::5"), "V6");
	CHECK_STR_EQ(both(c, "2001:db9::"), "(none)");
	CHECK_STR_EQ(both(c, "8.8.8.8"), "ALL4");
	CHECK_STR_EQ(both(c, "::ffff:10.1.2.3"), "(none)"); /* an IPv6 key, as in Postfix */
	CHECK_STR_EQ(both(c, "255.255.255.255"), "ALL4");
	CHECK_INT_EQ(table_cidr_rules(c), 7);
	table_cidr_free(c);
	struct mx_inet_addr a;
	CHECK(!table_cidr_key("[1.2.3.4]", &a)); /* postmap -q answers nothing for this */
	CHECK(!table_cidr_key("1.2.3", &a));
}

static void test_negation_and_if(void)
{
	struct table_cidr *c = parse_ok("!1.2.3.0/24 NEG4\n");
	CHECK_STR_EQ(both(c, "1.2.4.1"), "NEG4");
	CHECK_STR_EQ(both(c, "1.2.3.1"), "(none)");
	CHECK_STR_EQ(both(c, "::1"), "(none)"); /* other family never matches */
	table_cidr_free(c);
	c = parse_ok("if !1.2.3.0/24\n"
		     "::/0 INV6\n"
		     "0.0.0.0/0 IN4\n"
		     "endif\n"
		     "::/0 OUT6\n"
		     "if 10.0.0.0/8\n"
		     "if !10.9.0.0/16\n"
		     "10.0.0.0/8 TEN-NOT-NINE\n"
		     "endif\n"
		     "endif\n"
		     "IF 2001:db8::/32\n"
		     "2001:db8::1 HOST6\n"
		     "ENDIF\n");
	CHECK_STR_EQ(both(c, "::1"), "OUT6"); /* an IPv4 if-block is skipped for IPv6 keys */
	CHECK_STR_EQ(both(c, "1.2.3.4"), "(none)");
	CHECK_STR_EQ(both(c, "9.9.9.9"), "IN4");
	CHECK_STR_EQ(both(c, "2001:db8::1"), "OUT6");
	table_cidr_free(c);
	c = parse_ok("if 10.0.0.0/8\n"
		     "if !10.9.0.0/16\n"
		     "10.0.0.0/8 TEN-NOT-NINE\n"
		     "endif\n"
		     "endif\n"
		     "2001:db8::1 HOST6\n"
		     "0.0.0.0/0 REST\n");
	CHECK_STR_EQ(both(c, "10.9.1.1"), "REST");
	CHECK_STR_EQ(both(c, "10.8.1.1"), "TEN-NOT-NINE");
	CHECK_STR_EQ(both(c, "2001:db8::1"), "HOST6");
	table_cidr_free(c);
}

static void test_errors(void)
{
	parse_fails("1.2.3.4/24 x\n", "non-null host address bits in \"1.2.3.4/24\", perhaps you "
				      "should use \"1.2.3.0/24\" instead");
	parse_fails("a\n1.2.3.300 x\n", "line 1: bad address");
	parse_fails("ok 1\n", "bad address");
	parse_fails("1.2.3.4\n", "line 1: no lookup result");
	parse_fails("1.2.3.0/33 x\n", "prefix length");
	parse_fails("1.2.3.0/ x\n", "prefix length");
	parse_fails("::/129 x\n", "prefix length");
	parse_fails("endif\n", "ENDIF without matching IF");
	parse_fails("if 1.0.0.0/8\n1.2.3.4 x\n", "line 1: IF has no matching ENDIF");
	parse_fails("if 1.0.0.0/8 junk\nendif\n", "extra text");
	parse_fails("01.2.3.4 x\n", "bad address");
	char deep[2000] = "";
	for (int i = 0; i < 65; i++)
		strcat(deep, "if 1.0.0.0/8\n");
	parse_fails(deep, "nested deeper");
}

/* ---- brute force against random rule sets ---- */

struct rnd_rule {
	int op; /* 0 rule, 1 if, 2 endif */
	int neg;
	struct mx_inet_addr a;
	unsigned plen;
	char value[16];
};

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* An address from a small neighbourhood so rules overlap often. */
static void rnd_addr(struct mx_inet_addr *a, int v6)
{
	memset(a, 0, sizeof(*a));
	a->family = v6 ? AF_INET6 : AF_INET;
	int n = v6 ? 16 : 4;
	static const uint8_t base4[4] = { 10, 1, 0, 0 };
	static const uint8_t base6[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	memcpy(a->bytes, v6 ? base6 : base4, (size_t)n);
	int from = v6 ? 12 : 1;
	for (int i = from; i < n; i++)
		a->bytes[i] = (uint8_t)(rnd() % (i == n - 1 ? 256 : 4));
	if (rnd() % 16 == 0)
		a->bytes[0] = (uint8_t)rnd(); /* far away */
}

static int prefix_match(const struct mx_inet_addr *net, unsigned plen, const struct mx_inet_addr *a)
{
	for (unsigned i = 0; i < plen; i++) {
		int b = 7 - (int)(i % 8);
		if (((net->bytes[i / 8] >> b) & 1) != ((a->bytes[i / 8] >> b) & 1))
			return 0;
	}
	return 1;
}

static const char *brute(const struct rnd_rule *r, size_t n, const struct mx_inet_addr *a)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].op == 2)
			continue;
		int m = r[i].a.family == a->family &&
			(prefix_match(&r[i].a, r[i].plen, a) != r[i].neg);
		if (r[i].op == 1) {
			if (!m) { /* skip to the matching endif */
				int depth = 1;
				while (depth && ++i < n)
					depth += r[i].op == 1 ? 1 : r[i].op == 2 ? -1 : 0;
			}
			continue;
		}
		if (m)
			return r[i].value;
	}
	return NULL;
}

static void test_random_against_brute_force(void)
{
	static struct rnd_rule rules[400];
	static char text[400 * 80];
	int mismatches = 0, hits = 0, misses = 0;
	for (int round = 0; round < 300; round++) {
		size_t n = 0, w = 0;
		int depth = 0, nrules = 1 + (int)(rnd() % 60);
		if (round > 290)
			nrules = 350;
		for (int k = 0; k < nrules; k++) {
			struct rnd_rule *r = &rules[n];
			memset(r, 0, sizeof(*r));
			int x = (int)(rnd() % 10);
			if (x == 0 && depth > 0) {
				r->op = 2;
				depth--;
				w += (size_t)snprintf(text + w, sizeof(text) - w, "endif\n");
				n++;
				continue;
			}
			r->op = x == 1 && depth < 5 ? 1 : 0;
			depth += r->op == 1;
			r->neg = rnd() % 5 == 0;
			int v6 = rnd() % 3 == 0;
			rnd_addr(&r->a, v6);
			unsigned bits = v6 ? 128 : 32;
			r->plen = bits - (unsigned)(rnd() % (v6 ? 24 : 12));
			if (rnd() % 20 == 0)
				r->plen = (unsigned)(rnd() % (bits + 1));
			for (unsigned i = r->plen; i < bits; i++)
				r->a.bytes[i / 8] &= (uint8_t) ~(1u << (7 - i % 8));
			snprintf(r->value, sizeof(r->value), "R%d", k);
			char as[64];
			mx_inet_format(&r->a, as, sizeof(as));
			w += (size_t)snprintf(text + w, sizeof(text) - w, "%s%s%s/%u%s%s\n",
					      r->op == 1 ? "if " : "", r->neg ? "!" : "", as, r->plen,
					      r->op == 1 ? "" : " ", r->op == 1 ? "" : r->value);
			n++;
		}
		while (depth-- > 0) {
			rules[n++].op = 2;
			w += (size_t)snprintf(text + w, sizeof(text) - w, "endif\n");
		}
		struct table_cidr *c = parse_ok(text);
		if (!c)
			return;
		struct table_cidr_segment *s;
		size_t ns;
		CHECK_INT_EQ(table_cidr_compile(c, &s, &ns), 0);
		for (int q = 0; q < 400; q++) {
			struct mx_inet_addr a;
			if (q % 4 == 0 && n > 0) {
				/* the edges of a rule's network */
				const struct rnd_rule *r = &rules[rnd() % n];
				if (r->op == 2)
					continue;
				a = r->a;
				if (q % 8 == 0)
					for (unsigned i = r->plen; i < (a.family == AF_INET ? 32u : 128u); i++)
						a.bytes[i / 8] |= (uint8_t)(1u << (7 - i % 8));
			} else {
				rnd_addr(&a, rnd() % 3 == 0);
			}
			const char *want = brute(rules, n, &a);
			hits += want != NULL;
			misses += want == NULL;
			const char *scan = table_cidr_scan(c, &a), *seg = seg_lookup(s, ns, &a);
			if ((want == NULL) != (scan == NULL) || (want && strcmp(want, scan)) ||
			    scan != seg) {
				if (mismatches++ < 5) {
					char as[64];
					fprintf(stderr, "  round %d addr %s: want %s scan %s seg %s\n%s",
						round, mx_inet_format(&a, as, sizeof(as)),
						want ? want : "-", scan ? scan : "-", seg ? seg : "-",
						text);
				}
			}
		}
		/* Segments are disjoint and sorted. */
		for (size_t i = 1; i < ns; i++) {
			int c1 = s[i - 1].family != s[i].family ? (s[i - 1].family < s[i].family ? -1 : 1)
							       : memcmp(s[i - 1].hi, s[i].lo, 16);
			CHECK(c1 < 0);
		}
		free(s);
		table_cidr_free(c);
	}
	CHECK_INT_EQ(mismatches, 0);
	/* The random sets must exercise both outcomes a lot, or this test proves nothing. */
	CHECK(hits > 20000);
	CHECK(misses > 10000);
}

int main(void)
{
	RUN_TEST(test_first_match_in_file_order);
	RUN_TEST(test_negation_and_if);
	RUN_TEST(test_errors);
	RUN_TEST(test_random_against_brute_force);
	return TEST_RESULT();
}
