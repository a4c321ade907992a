/* tables/netlist.c: Postfix mynetworks-style network lists. */
#include <errno.h>
#include <stdint.h>

#include "tables/netlist.h"
#include "testing.h"

static struct netlist *parse_ok(const char *text)
{
	struct netlist *nl = NULL;
	char err[256] = "";
	int rc = netlist_parse(text, &nl, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  parse \"%s\" failed: %s\n", text, err);
	CHECK_INT_EQ(rc, 0);
	CHECK(nl != NULL);
	return nl;
}

/* Parsing fails with -EINVAL and a reason containing `why`. */
static void parse_fails(const char *text, const char *why)
{
	struct netlist *nl = (struct netlist *)1;
	char err[256] = "";
	int rc = netlist_parse(text, &nl, err, sizeof(err));
	CHECK_INT_EQ(rc, -EINVAL);
	CHECK(nl == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  \"%s\": reason \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(strstr(err, why) != NULL);
	}
}

static bool match(const struct netlist *nl, const char *addr)
{
	struct mx_inet_addr a;
	if (!mx_inet_parse(addr, &a)) {
		fprintf(stderr, "  test bug: bad address %s\n", addr);
		CHECK(false);
		return false;
	}
	return netlist_match(nl, &a);
}

static void test_empty(void)
{
	const char *blanks[] = { "", " ", ", ,\t\r\n ,", NULL };
	for (int i = 0; blanks[i]; i++) {
		struct netlist *nl = parse_ok(blanks[i]);
		CHECK_INT_EQ(netlist_count(nl), 0);
		CHECK(!match(nl, "127.0.0.1"));
		CHECK(!match(nl, "::1"));
		netlist_free(nl);
	}
	struct netlist *nl = parse_ok(NULL);
	CHECK_INT_EQ(netlist_count(nl), 0);
	netlist_free(nl);
	/* NULL list and NULL address never match and never crash. */
	CHECK(!netlist_match(NULL, NULL));
	CHECK_INT_EQ(netlist_count(NULL), 0);
	netlist_free(NULL);
}

static void test_postfix_default_forms(void)
{
	/* What `postconf -d mynetworks` prints, separators and all. */
	struct netlist *nl =
		parse_ok("127.0.0.0/8 192.0.2.0/24 [::1]/128 [fd00::]/64 [fe80::]/64");
	CHECK_INT_EQ(netlist_count(nl), 5);
	CHECK(match(nl, "127.0.0.1"));
	CHECK(match(nl, "127.255.255.255"));
	CHECK(!match(nl, "128.0.0.0"));
	CHECK(match(nl, "192.0.2.0"));
	CHECK(match(nl, "192.0.2.255"));
	CHECK(!match(nl, "192.0.3.0"));
	CHECK(!match(nl, "192.0.1.255"));
	CHECK(match(nl, "::1"));
	CHECK(!match(nl, "::2"));
	CHECK(match(nl, "fd00::1234"));
	CHECK(match(nl, "fd00::ffff:ffff:ffff:ffff"));
	CHECK(!match(nl, "fd00:0:0:1::"));
	CHECK(match(nl, "fe80::1"));
	CHECK(!match(nl, "2001:db8::1"));
	netlist_free(nl);
}

static void test_address_forms(void)
{
	struct netlist *nl = parse_ok("192.0.2.7,[2001:db8::7],2001:db8:1::/48,"
				      "[2001:db8:2::/48]\t::1\n198.51.100.0/24");
	CHECK_INT_EQ(netlist_count(nl), 6);
	CHECK(match(nl, "192.0.2.7"));
	CHECK(!match(nl, "192.0.2.8"));
	CHECK(!match(nl, "192.0.2.6"));
	CHECK(match(nl, "2001:db8::7"));
	CHECK(!match(nl, "2001:db8::8"));
	CHECK(match(nl, "2001:db8:1::"));
	CHECK(match(nl, "2001:db8:1:ffff:ffff:ffff:ffff:ffff"));
	CHECK(!match(nl, "2001:db8:3::"));
	CHECK(match(nl, "2001:db8:2:1::1"));
	CHECK(match(nl, "::1"));
	CHECK(match(nl, "198.51.100.200"));
	netlist_free(nl);

	/* Leading zeros in the length are fine, as Postfix's alldig()/atoi() take them. */
	nl = parse_ok("10.0.0.0/0008");
	CHECK(match(nl, "10.255.0.1"));
	CHECK(!match(nl, "11.0.0.0"));
	netlist_free(nl);

	/* /0 matches its whole family and nothing of the other. */
	nl = parse_ok("0.0.0.0/0");
	CHECK(match(nl, "0.0.0.0"));
	CHECK(match(nl, "255.255.255.255"));
	CHECK(!match(nl, "2001:db8::1"));
	netlist_free(nl);
	nl = parse_ok("[::]/0");
	CHECK(match(nl, "2001:db8::1"));
	CHECK(match(nl, "::"));
	CHECK(!match(nl, "192.0.2.1"));
	netlist_free(nl);
}

static void test_mapped_ipv4(void)
{
	/* A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; Postfix matches it
	 * as IPv4. */
	struct netlist *nl = parse_ok("192.0.2.0/24");
	CHECK(match(nl, "::ffff:192.0.2.9"));
	CHECK(!match(nl, "::ffff:192.0.3.9"));
	netlist_free(nl);
}

static void test_odd_prefixes(void)
{
	struct netlist *nl = parse_ok("[2001:db8::]/29 10.0.0.0/9 172.16.0.0/12");
	CHECK(match(nl, "2001:db8::"));
	CHECK(match(nl, "2001:dbf:ffff::1"));
	CHECK(!match(nl, "2001:dc0::"));
	CHECK(!match(nl, "2001:db0::"));
	CHECK(match(nl, "10.127.255.255"));
	CHECK(!match(nl, "10.128.0.0"));
	CHECK(match(nl, "172.31.255.255"));
	CHECK(!match(nl, "172.32.0.0"));
	CHECK(!match(nl, "172.15.255.255"));
	netlist_free(nl);
}

static void test_negation(void)
{
	/* First match decides (match_list(3)): an exclusion before the network carves a
	 * hole; after it, it is never reached. */
	struct netlist *nl = parse_ok("!192.0.2.7 192.0.2.0/24");
	CHECK(!match(nl, "192.0.2.7"));
	CHECK(match(nl, "192.0.2.8"));
	netlist_free(nl);
	nl = parse_ok("192.0.2.0/24 !192.0.2.7");
	CHECK(match(nl, "192.0.2.7"));
	netlist_free(nl);
	nl = parse_ok("!![2001:db8::1]");
	CHECK(match(nl, "2001:db8::1"));
	netlist_free(nl);
}

static void test_errors(void)
{
	parse_fails("10.0.0.300", "bad address pattern: \"10.0.0.300\"");
	parse_fails("10.0.0.0/33", "bad net/mask pattern");
	parse_fails("10.0.0.0/", "bad net/mask pattern");
	parse_fails("10.0.0.0/-1", "bad net/mask pattern");
	parse_fails("10.0.0.0/8x", "bad net/mask pattern");
	parse_fails("10.0.0.0/00000000000000000000033", "bad net/mask pattern");
	parse_fails("[::]/129", "bad net/mask pattern");
	parse_fails("[1.2.3.4]/33", "bad net/mask pattern");
	parse_fails("[::1", "missing ']' character after \"[::1\"");
	parse_fails("[::1]x", "garbage after \"[::1]\"");
	parse_fails("[]", "bad address pattern");
	parse_fails("10.0.0.1/8",
		    "non-null host address bits in \"10.0.0.1/8\", perhaps you should use "
		    "\"10.0.0.0/8\" instead");
	parse_fails("[2001:db8::1]/32",
		    "non-null host address bits in \"2001:db8::1/32\", perhaps you should use "
		    "\"[2001:db8::]/32\" instead");
	parse_fails("192.0.2.129/25", "\"192.0.2.128/25\"");
	parse_fails("hash:/etc/postfix/network_table", "table engine");
	parse_fails("cidr:/etc/postfix/x.cidr", "table lookups (type:name)");
	parse_fails("127.0.0.1 inline:{1.2.3.4}", "table");
	parse_fails("/etc/postfix/networks", "/file/name patterns are not supported");
	parse_fails("mail.example.com", "host name patterns need DNS");
	parse_fails("localhost", "host name");
	parse_fails("!", "no pattern");
	parse_fails("192.0.2.1 !!", "no pattern");
	/* A valid entry before a bad one does not make it pass. */
	parse_fails("127.0.0.0/8 999.0.0.0/8", "bad net/mask pattern: \"999.0.0.0/8\"");

	char lng[600];
	memset(lng, '1', sizeof(lng) - 1);
	lng[sizeof(lng) - 1] = '\0';
	parse_fails(lng, "bad address pattern");

	/* A NULL or zero-length error buffer is fine. */
	struct netlist *nl;
	CHECK_INT_EQ(netlist_parse("bogus", &nl, NULL, 0), -EINVAL);
	char tiny[4];
	CHECK_INT_EQ(netlist_parse("10.0.0.1/8", &nl, tiny, sizeof(tiny)), -EINVAL);
	CHECK_INT_EQ(strlen(tiny), 3);
}

/* Every prefix length against a reference computed bit by bit, over deterministic
 * pseudo-random addresses. */
static uint64_t rng_state = 88172645463325252u;
static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

static bool ref_match(const uint8_t *net, const uint8_t *addr, unsigned prefix)
{
	for (unsigned bit = 0; bit < prefix; bit++) {
		unsigned byte = bit / 8, shift = 7 - bit % 8;
		if (((net[byte] >> shift) & 1) != ((addr[byte] >> shift) & 1))
			return false;
	}
	return true;
}

static void test_every_prefix(void)
{
	for (int fam = 0; fam < 2; fam++) {
		unsigned bits = fam ? 128 : 32;
		for (unsigned prefix = 0; prefix <= bits; prefix++) {
			struct mx_inet_addr net = { .family = fam ? AF_INET6 : AF_INET };
			for (unsigned i = 0; i < bits / 8; i++)
				net.bytes[i] = (uint8_t)rng();
			for (unsigned bit = prefix; bit < bits; bit++)
				net.bytes[bit / 8] &= (uint8_t)~(1u << (7 - bit % 8));
			char text[INET6_ADDRSTRLEN + 8], addr[INET6_ADDRSTRLEN];
			mx_inet_format(&net, addr, sizeof(addr));
			snprintf(text, sizeof(text), fam ? "[%s]/%u" : "%s/%u", addr, prefix);
			struct netlist *nl = parse_ok(text);
			if (!nl)
				continue;
			for (int k = 0; k < 64; k++) {
				struct mx_inet_addr a = net;
				/* Flip one bit, inside or outside the prefix, or none. */
				if (k > 0) {
					unsigned bit = rng() % bits;
					a.bytes[bit / 8] ^= (uint8_t)(1u << (7 - bit % 8));
				}
				bool want = ref_match(net.bytes, a.bytes, prefix);
				/* Mapped addresses are matched as IPv4: skip those for v6. */
				struct mx_inet_addr un = mx_inet_unmap(&a);
				if (un.family != a.family)
					continue;
				if (netlist_match(nl, &a) != want) {
					mx_inet_format(&a, addr, sizeof(addr));
					fprintf(stderr, "  %s vs %s: want %d\n", text, addr, want);
					CHECK(false);
				}
			}
			netlist_free(nl);
		}
	}
}

static void test_separators_equivalent(void)
{
	/* The same entries with any mix of separators mean the same list. */
	const char *forms[] = {
		"127.0.0.0/8 [::1]/128 192.0.2.0/24",
		"127.0.0.0/8,[::1]/128,192.0.2.0/24",
		" ,127.0.0.0/8 ,\t[::1]/128\r\n192.0.2.0/24, ",
	};
	const char *probes[] = { "127.0.0.1", "::1", "192.0.2.4", "192.0.3.4", "::2" };
	for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
		struct netlist *nl = parse_ok(forms[f]);
		CHECK_INT_EQ(netlist_count(nl), 3);
		for (size_t p = 0; p < sizeof(probes) / sizeof(probes[0]); p++)
			CHECK_INT_EQ(match(nl, probes[p]), p < 3);
		netlist_free(nl);
	}
}

int main(void)
{
	RUN_TEST(test_empty);
	RUN_TEST(test_postfix_default_forms);
	RUN_TEST(test_address_forms);
	RUN_TEST(test_mapped_ipv4);
	RUN_TEST(test_odd_prefixes);
	RUN_TEST(test_negation);
	RUN_TEST(test_errors);
	RUN_TEST(test_every_prefix);
	RUN_TEST(test_separators_equivalent);
	return TEST_RESULT();
}
