/* rbl_zone: local DNSBL zones in the table store, built and queried through the API.
 * (tests/unit/tables/test_rbl_diff.py compares the answers with rbldnsd itself.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tables/rbl_zone.h"
#include "tables_test_util.h"
#include "testing.h"

static struct tables_env *env;
static struct tables_reader *rd;

static int build(const char *zone, enum rbl_format fmt, const char *text)
{
	char err[512] = "";
	int rc = rbl_zone_build(env, zone, fmt, text, strlen(text), NULL, NULL, NULL, err,
				sizeof(err));
	if (rc < 0)
		fprintf(stderr, "  build %s: %s\n", zone, err);
	tables_reader_renew(rd);
	return rc;
}

/* "A TXT|A TXT" for a query (address or name), "-" not listed, "E<errno>" an error. */
static const char *q(const char *zone, const char *key, int64_t now)
{
	static char buf[2048];
	struct rbl_zone *z;
	struct rbl_result res;
	struct mx_inet_addr a;
	if (rbl_zone_open(rd, zone, &z) < 0)
		return "open failed";
	int rc = mx_inet_parse(key, &a) ? rbl_zone_query_addr(z, &a, now, &res)
					: rbl_zone_query_name(z, key, now, &res);
	rbl_zone_close(z);
	if (rc < 0) {
		snprintf(buf, sizeof(buf), "E%d", -rc);
		return buf;
	}
	if (rc == 0)
		return res.count == 0 ? "-" : "count without listing";
	size_t o = 0;
	buf[0] = '\0';
	for (unsigned i = 0; i < res.count; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%u.%u.%u.%u %s", i ? "|" : "",
				      res.answers[i].a[0], res.answers[i].a[1], res.answers[i].a[2],
				      res.answers[i].a[3], res.answers[i].txt);
	return buf;
}

#define NOW 1800000000LL

static void test_ip4set(void)
{
	CHECK_INT_EQ(build("bl.test", RBL_FORMAT_IP4SET,
			   ":127.0.0.2:Listed $\n10.0.0.0/8\n!10.1.2.3\n10.1.2 :3:net\n"
			   "172.16.1.5-172.16.2.9\n172.16.1.200 :6:single\n"),
		     0);
	CHECK_STR_EQ(q("bl.test", "10.9.9.9", NOW), "127.0.0.2 Listed 10.9.9.9");
	CHECK_STR_EQ(q("bl.test", "10.1.2.3", NOW), "-");
	CHECK_STR_EQ(q("bl.test", "10.1.2.4", NOW), "127.0.0.3 net");
	CHECK_STR_EQ(q("bl.test", "11.0.0.0", NOW), "-");
	CHECK_STR_EQ(q("bl.test", "9.255.255.255", NOW), "-");
	CHECK_STR_EQ(q("bl.test", "172.16.1.200", NOW),
		     "127.0.0.2 Listed 172.16.1.200|127.0.0.6 single");
	CHECK_STR_EQ(q("bl.test", "172.16.2.9", NOW), "127.0.0.2 Listed 172.16.2.9");
	CHECK_STR_EQ(q("bl.test", "172.16.2.10", NOW), "-");
	/* a client on a dual-stack socket is matched as IPv4 */
	CHECK_STR_EQ(q("bl.test", "::ffff:10.1.2.4", NOW), "127.0.0.3 net");
	/* not a name zone: names are never listed here */
	CHECK_STR_EQ(q("bl.test", "10.1.2.4.example", NOW), "-");
	/* the edges of the address space */
	CHECK_INT_EQ(build("edge.test", RBL_FORMAT_IP4SET, "0.0.0.0/8\n255.255.255.255\n!0.0.0.1\n"), 0);
	CHECK_STR_EQ(q("edge.test", "0.0.0.0", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("edge.test", "0.0.0.1", NOW), "-");
	CHECK_STR_EQ(q("edge.test", "255.255.255.255", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("edge.test", "255.255.255.254", NOW), "-");
}

static void test_tries_and_sets(void)
{
	CHECK_INT_EQ(build("trie.test", RBL_FORMAT_IP4TRIE,
			   "10.0.0.0/8 :2:big\n10.128.0.0/9 :3:half\n!10.200.1.0/24\n"
			   "10.200.1.128/25 :5:in\n10.0.0.0/8 :9:duplicate\n"),
		     0);
	CHECK_STR_EQ(q("trie.test", "10.0.0.1", NOW), "127.0.0.2 big");
	CHECK_STR_EQ(q("trie.test", "10.128.0.1", NOW), "127.0.0.3 half");
	CHECK_STR_EQ(q("trie.test", "10.200.1.1", NOW), "-");
	CHECK_STR_EQ(q("trie.test", "10.200.1.129", NOW), "127.0.0.5 in");
	CHECK_STR_EQ(q("trie.test", "10.200.2.1", NOW), "127.0.0.3 half");

	CHECK_INT_EQ(build("tset.test", RBL_FORMAT_IP4TSET, ":3:t $\n1.2.3.4 :5:ignored\n1.2.3.6\n:4:x\n"), 0);
	CHECK_STR_EQ(q("tset.test", "1.2.3.4", NOW), "127.0.0.3 t 1.2.3.4");
	CHECK_STR_EQ(q("tset.test", "1.2.3.5", NOW), "-");
	CHECK_STR_EQ(q("tset.test", "1.2.3.6", NOW), "127.0.0.3 t 1.2.3.6");

	CHECK_INT_EQ(build("six.test", RBL_FORMAT_IP6TRIE,
			   ":127.0.1.2: See ?$\n2001:db8::/32\n2001:db8:1::/48 :3:more\n"
			   "!2001:db8:1::bad\n::1\n"),
		     0);
	CHECK_STR_EQ(q("six.test", "2001:db8::1", NOW), "127.0.1.2 See ?2001:db8::1");
	CHECK_STR_EQ(q("six.test", "2001:db8:1::1", NOW), "127.0.0.3 more");
	CHECK_STR_EQ(q("six.test", "2001:db8:1::bad", NOW), "-");
	CHECK_STR_EQ(q("six.test", "2001:db9::", NOW), "-");
	CHECK_STR_EQ(q("six.test", "::1", NOW), "127.0.1.2 See ?::1");
	CHECK_STR_EQ(q("six.test", "10.0.0.1", NOW), "-"); /* IPv4: no ip4 dataset here */

	CHECK_INT_EQ(build("six2.test", RBL_FORMAT_IP6TSET, "2001:20fe:23:41ed\n!2001:20fe:23:41ed::7\n"), 0);
	CHECK_STR_EQ(q("six2.test", "2001:20fe:23:41ed:ffff::", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("six2.test", "2001:20fe:23:41ed::7", NOW), "-");
	CHECK_STR_EQ(q("six2.test", "2001:20fe:23:41ee::", NOW), "-");
}

static void test_dnset(void)
{
	CHECK_INT_EQ(build("dbl.test", RBL_FORMAT_DNSET,
			   ":2:name $\nexample.com\n*.wild.example\n.both.example :3:both\n"
			   "!ok.both.example\na.example :4:a1\na.example :5:a2\n"),
		     0);
	CHECK_STR_EQ(q("dbl.test", "example.com", NOW), "127.0.0.2 name example.com");
	CHECK_STR_EQ(q("dbl.test", "EXAMPLE.com.", NOW), "127.0.0.2 name example.com");
	CHECK_STR_EQ(q("dbl.test", "www.example.com", NOW), "-");
	CHECK_STR_EQ(q("dbl.test", "wild.example", NOW), "-");
	/* $ is the listed entry, not the query */
	CHECK_STR_EQ(q("dbl.test", "a.b.wild.example", NOW), "127.0.0.2 name wild.example");
	CHECK_STR_EQ(q("dbl.test", "both.example", NOW), "127.0.0.3 both");
	CHECK_STR_EQ(q("dbl.test", "x.both.example", NOW), "127.0.0.3 both");
	CHECK_STR_EQ(q("dbl.test", "ok.both.example", NOW), "-");
	CHECK_STR_EQ(q("dbl.test", "sub.ok.both.example", NOW), "127.0.0.3 both");
	CHECK_STR_EQ(q("dbl.test", "a.example", NOW), "127.0.0.4 a1|127.0.0.5 a2");
	CHECK_STR_EQ(q("dbl.test", "1.2.3.4", NOW), "-");
	CHECK_STR_EQ(q("dbl.test", "", NOW), "-");
}

static void test_combined(void)
{
	const char *text = "$NS 1w ns1\n"
			   "$DATASET ip4set:proxy proxies @\n:2:proxy $\n127.0.0.2\n127.0.0.10\n"
			   "$DATASET ip4set:relay relays @\n:3:relay $\n127.0.0.2\n"
			   "$DATASET ip4set:multi multihop\n:4:multi $\n127.0.0.2\n127.0.9.12\n"
			   "$DATASET dnset:names @\n:5:\nbad.example\n";
	CHECK_INT_EQ(build("zen.test", RBL_FORMAT_COMBINED, text), 0);
	CHECK_STR_EQ(q("zen.test", "127.0.0.2", NOW), "127.0.0.2 proxy 127.0.0.2|127.0.0.3 relay 127.0.0.2");
	CHECK_STR_EQ(q("zen.test", "127.0.9.12", NOW), "-");
	CHECK_STR_EQ(q("multihop.zen.test", "127.0.9.12", NOW), "127.0.0.4 multi 127.0.9.12");
	CHECK_STR_EQ(q("proxies.zen.test", "127.0.0.2", NOW), "127.0.0.2 proxy 127.0.0.2");
	CHECK_STR_EQ(q("zen.test", "bad.example", NOW), "127.0.0.5 ");
	CHECK_STR_EQ(q("names.zen.test", "bad.example", NOW), "E2"); /* no such subzone */
	CHECK_STR_EQ(q("ZEN.TEST.", "127.0.0.10", NOW), "127.0.0.2 proxy 127.0.0.10");
	/* subzones separated by a tab; a zone of its own under a combined zone's name */
	CHECK_INT_EQ(build("tab.test", RBL_FORMAT_COMBINED, "$DATASET ip4set:t x\t@\n9.9.9.9\n"), 0);
	CHECK_STR_EQ(q("tab.test", "9.9.9.9", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("x.tab.test", "9.9.9.9", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("y.tab.test", "9.9.9.9", NOW), "E2");
	struct rbl_zone *z;
	struct rbl_result res;
	struct mx_inet_addr a;
	mx_inet_parse("9.9.9.9", &a);
	CHECK_INT_EQ(rbl_zone_open(rd, "y.tab.test", &z), 0);
	CHECK_INT_EQ(rbl_zone_query_addr(z, &a, NOW, &res), -ENOENT);
	CHECK_INT_EQ(build("y.tab.test", RBL_FORMAT_IP4SET, "9.9.9.9 :7:own\n"), 0);
	CHECK_INT_EQ(rbl_zone_query_addr(z, &a, NOW, &res), 1);
	CHECK_INT_EQ(res.answers[0].a[3], 7);
	rbl_zone_close(z);
}

static void test_expiry_and_errors(void)
{
	CHECK_INT_EQ(build("old.test", RBL_FORMAT_IP4SET,
			   "$TIMESTAMP 2026:11:01 +1d\n1.2.3.4\n"),
		     0);
	CHECK_STR_EQ(q("old.test", "1.2.3.4", 1793491200LL + 3600), "127.0.0.2 ");
	CHECK_STR_EQ(q("old.test", "1.2.3.4", 1793491200LL + 86400 + 1), "-");

	/* a zone never loaded is an error, never "not listed" */
	CHECK_STR_EQ(q("never.test", "1.2.3.4", NOW), "E2");
	CHECK_STR_EQ(q("never.test", "example.com", NOW), "E2");
	struct rbl_zone *z;
	CHECK_INT_EQ(rbl_zone_open(rd, "bad zone", &z), -EINVAL);
	CHECK_INT_EQ(rbl_zone_open(rd, "", &z), -EINVAL);
	CHECK_INT_EQ(rbl_zone_open(rd, "a..b", &z), -EINVAL);
	CHECK_INT_EQ(rbl_zone_open(rd, "Ok.Test.", &z), 0);
	CHECK_STR_EQ(rbl_zone_name(z), "ok.test");
	rbl_zone_close(z);

	/* a failed build keeps the old zone; a good one replaces it whole */
	char err[256];
	const char *bad = "1.2.3.4\n5.6.7.8\n9.9.9.999\n";
	CHECK_INT_EQ(build("keep.test", RBL_FORMAT_IP4SET, "1.1.1.1\n"), 0);
	CHECK_INT_EQ(rbl_zone_build(env, "keep.test", RBL_FORMAT_IP4SET, bad, strlen(bad), NULL,
				    NULL, NULL, err, sizeof(err)),
		     -EINVAL);
	CHECK(strncmp(err, "line 3: ", 8) == 0);
	tables_reader_renew(rd);
	CHECK_STR_EQ(q("keep.test", "1.1.1.1", NOW), "127.0.0.2 ");
	CHECK_STR_EQ(q("keep.test", "1.2.3.4", NOW), "-");
	CHECK_INT_EQ(build("keep.test", RBL_FORMAT_IP4SET, "1.2.3.4\n"), 0);
	CHECK_STR_EQ(q("keep.test", "1.1.1.1", NOW), "-");
	CHECK_STR_EQ(q("keep.test", "1.2.3.4", NOW), "127.0.0.2 ");
	CHECK_INT_EQ(rbl_zone_build(env, "bad zone", RBL_FORMAT_IP4SET, "", 0, NULL, NULL, NULL,
				    err, sizeof(err)),
		     -EINVAL);

	/* a handle sees a rebuild after its reader is renewed */
	CHECK_INT_EQ(rbl_zone_open(rd, "keep.test", &z), 0);
	struct mx_inet_addr a;
	struct rbl_result res;
	mx_inet_parse("1.2.3.4", &a);
	CHECK_INT_EQ(rbl_zone_query_addr(z, &a, NOW, &res), 1);
	CHECK_INT_EQ(build("keep.test", RBL_FORMAT_IP4SET, "1.2.3.5\n"), 0);
	CHECK_INT_EQ(rbl_zone_query_addr(z, &a, NOW, &res), 0);
	rbl_zone_close(z);

	struct rbl_build_stats st;
	const char *two = "1.2.3.4\n!1.2.3.5\n";
	CHECK_INT_EQ(rbl_zone_build(env, "stats.test", RBL_FORMAT_IP4SET, two, strlen(two), NULL,
				    NULL, &st, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(st.entries, 2);
	CHECK(st.records >= 4); /* dataset, meta, value, one interval */
	enum rbl_format f;
	CHECK_INT_EQ(rbl_format_parse("ip6tset", &f), 0);
	CHECK_INT_EQ(f, RBL_FORMAT_IP6TSET);
	CHECK_INT_EQ(rbl_format_parse("generic", &f), -EINVAL);
	CHECK_STR_EQ(rbl_format_name(RBL_FORMAT_COMBINED), "combined");
}

/* Random nested prefixes with exclusions in an ip4trie against a brute-force longest-prefix
 * scan of the same entries. */
static void test_random_trie(void)
{
	enum { N = 3000, Q = 20000 };
	struct {
		uint32_t net;
		unsigned len;
		bool excl;
		unsigned a;
	} e[N];
	char *text = malloc(N * 48);
	size_t o = 0;
	srand(7);
	for (int i = 0; i < N; i++) {
		e[i].len = 8 + (unsigned)(rand() % 25);
		uint32_t r = (uint32_t)rand() << 8 & 0x0fffffffu; /* 0.x - 15.x: overlaps */
		e[i].net = r & (e[i].len == 32 ? ~0u : ~(~0u >> e[i].len));
		e[i].excl = rand() % 5 == 0;
		e[i].a = 2 + (unsigned)(rand() % 200);
		o += (size_t)sprintf(text + o, "%s%u.%u.%u.%u/%u :%u:\n", e[i].excl ? "!" : "",
				     e[i].net >> 24, e[i].net >> 16 & 255, e[i].net >> 8 & 255,
				     e[i].net & 255, e[i].len, e[i].a);
	}
	text[o] = '\0';
	CHECK_INT_EQ(build("rand.test", RBL_FORMAT_IP4TRIE, text), 0);
	free(text);
	struct rbl_zone *z;
	CHECK_INT_EQ(rbl_zone_open(rd, "rand.test", &z), 0);
	int mismatches = 0, hits = 0, misses = 0;
	for (int k = 0; k < Q; k++) {
		uint32_t ip = (uint32_t)rand() & 0x0fffffffu;
		if (k % 2)
			ip = e[rand() % N].net + (uint32_t)(rand() % 4);
		int best = -1;
		for (int i = 0; i < N; i++) {
			uint32_t mask = e[i].len == 32 ? ~0u : ~(~0u >> e[i].len);
			if ((ip & mask) == e[i].net && (best < 0 || e[i].len > e[best].len))
				best = i; /* the first of equal prefixes stays */
		}
		struct mx_inet_addr a = { .family = AF_INET };
		a.bytes[0] = (uint8_t)(ip >> 24);
		a.bytes[1] = (uint8_t)(ip >> 16);
		a.bytes[2] = (uint8_t)(ip >> 8);
		a.bytes[3] = (uint8_t)ip;
		struct rbl_result res;
		int rc = rbl_zone_query_addr(z, &a, NOW, &res);
		bool want = best >= 0 && !e[best].excl;
		if (rc != (int)want || (want && res.answers[0].a[3] != e[best].a))
			mismatches++;
		want ? hits++ : misses++;
	}
	rbl_zone_close(z);
	CHECK_INT_EQ(mismatches, 0);
	CHECK(hits > 2000);
	CHECK(misses > 2000);
}

int main(void)
{
	char dir[64];
	env = tt_env_open(dir);
	if (tables_reader_open(env, &rd) < 0)
		return 2;
	RUN_TEST(test_ip4set);
	RUN_TEST(test_tries_and_sets);
	RUN_TEST(test_dnset);
	RUN_TEST(test_combined);
	RUN_TEST(test_expiry_and_errors);
	RUN_TEST(test_random_trie);
	tables_reader_close(rd);
	tt_env_remove(env, dir);
	return TEST_RESULT();
}
