/* mxgate-loadgen's parts that need no DPDK: the options (every bound, every error names
 * its option), the source ranges, the latency histogram's quantiles, the JSON escaping and
 * the result file. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loadgen.h"
#include "loadgen_parse.h"
#include "testing.h"

static uint32_t ip(const char *s)
{
	return inet_addr(s);
}

static void test_range(void)
{
	uint32_t base, count;
	CHECK_INT_EQ(loadgen_args_range("10.99.0.0/16", &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.99.0.1"));
	CHECK_INT_EQ(count, 65534);
	CHECK_INT_EQ(loadgen_args_range("10.99.7.9/24", &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.99.7.1"));
	CHECK_INT_EQ(count, 254);
	CHECK_INT_EQ(loadgen_args_range("10.0.0.5", &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.0.0.5"));
	CHECK_INT_EQ(count, 1);
	CHECK_INT_EQ(loadgen_args_range("10.0.0.5/31", &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.0.0.4"));
	CHECK_INT_EQ(count, 2);
	CHECK_INT_EQ(loadgen_args_range("10.0.0.1-10.0.1.0", &base, &count), 0);
	CHECK_INT_EQ(base, ip("10.0.0.1"));
	CHECK_INT_EQ(count, 256);
	const char *bad[] = { "", "10.0.0.0/7", "10.0.0.0/33", "10.0.0.0/", "10.0.0.9-10.0.0.1",
			      "10.0.0.1-255.255.255.255", "0.0.0.0", "a.b.c.d", "10.0.0.1/1x",
			      "10.0.0.1/-1", "10.0.0.1-", "-10.0.0.1",
			      "100.100.100.100-100.100.100.100x", "10.0.0.0/16/3",
			      "255.255.255.255", "224.0.0.1", "127.0.0.1/24", "126.0.0.1-128.0.0.1",
			      "0.1.2.3/31", "223.255.255.255-224.0.0.0", "223.0.0.0/7" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (loadgen_args_range(bad[i], &base, &count) != -EINVAL)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CHECK_INT_EQ(loadgen_args_range(bad[i], &base, &count), -EINVAL);
	}
	uint32_t a;
	uint8_t p;
	CHECK_INT_EQ(loadgen_args_addr_prefix("192.0.2.1/24", &a, &p), 0);
	CHECK_INT_EQ(a, ip("192.0.2.1"));
	CHECK_INT_EQ(p, 24);
	CHECK_INT_EQ(loadgen_args_addr_prefix("192.0.2.1", &a, &p), 0);
	CHECK_INT_EQ(p, 32);
	CHECK_INT_EQ(loadgen_args_addr_prefix("192.0.2.1/", &a, &p), -EINVAL);
}

static void test_args_ok(void)
{
	struct loadgen_config c;
	char err[256] = "";
	int rc = parse(&c, err, sizeof(err), "--server", "10.77.0.2:2525", "--local",
		       "10.77.0.1/24", "--src", "10.99.0.0/16", "--next-hop", "10.77.0.254",
		       "--concurrency", "1000", "--sessions", "5000", "--messages", "3", "--size",
		       "4096", "--rcpts", "2", "--rate", "500.5", "--rate-of", "messages",
		       "--no-pipelining", "--helo", "gen.example", "--sender", "",
		       "--rcpt-domain", "sink.example", "--bad-rcpt", "nobody@nowhere.example",
		       "--bad-rcpt-every", "7", "--timeout", "2.5", "--json", "/tmp/x.json",
		       "--errors-kept", "5", "--progress", "0", "--label", "a \"run\"",
		       "--port", "net_memif0", "--mbufs", "4095", "--sndbuf", "8192", "--rcvbuf",
		       "4096", "--duration", "10", "--handshakes", "64", NULL);
	CHECK_INT_EQ(rc, 0);
	if (rc)
		fprintf(stderr, "%s\n", err);
	CHECK_INT_EQ(c.server, ip("10.77.0.2"));
	CHECK_INT_EQ(c.server_port, 2525);
	CHECK_INT_EQ(c.local, ip("10.77.0.1"));
	CHECK_INT_EQ(c.local_prefix, 24);
	CHECK_INT_EQ(c.src_base, ip("10.99.0.1"));
	CHECK_INT_EQ(c.src_count, 65534);
	CHECK_INT_EQ(c.next_hop, ip("10.77.0.254"));
	CHECK_INT_EQ(c.concurrency, 1000);
	CHECK_INT_EQ(c.sessions, 5000);
	CHECK_INT_EQ(c.messages, 3);
	CHECK_INT_EQ(c.size, 4096);
	CHECK_INT_EQ(c.rcpts, 2);
	CHECK(c.rate > 500.4 && c.rate < 500.6);
	CHECK_INT_EQ(c.rate_of, LOADGEN_RATE_MESSAGES);
	CHECK(!c.pipelining);
	CHECK_STR_EQ(c.helo, "gen.example");
	CHECK_STR_EQ(c.sender, "");
	CHECK_STR_EQ(c.rcpt_domain, "sink.example");
	CHECK_STR_EQ(c.bad_rcpt, "nobody@nowhere.example");
	CHECK_INT_EQ(c.bad_rcpt_every, 7);
	CHECK(c.timeout_s == 2.5);
	CHECK_STR_EQ(c.json, "/tmp/x.json");
	CHECK_INT_EQ(c.errors_kept, 5);
	CHECK(c.progress_s == 0);
	CHECK_STR_EQ(c.label, "a \"run\"");
	CHECK_STR_EQ(c.port, "net_memif0");
	CHECK_INT_EQ(c.mbufs, 4095);
	CHECK_INT_EQ(c.sndbuf, 8192);
	CHECK_INT_EQ(c.rcvbuf, 4096);
	CHECK(c.duration_s == 10);
	CHECK_INT_EQ(c.handshakes, 64);

	/* defaults; --local defaults to the first source; idle raises sessions */
	rc = parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--src", "10.9.0.0/24", "--idle",
		   "--concurrency", "300", NULL);
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(c.server_port, 25);
	CHECK_INT_EQ(c.local, ip("10.9.0.1"));
	CHECK_INT_EQ(c.local_prefix, 32);
	CHECK(c.idle);
	CHECK_INT_EQ(c.sessions, 300);
	CHECK(c.pipelining);
	CHECK_INT_EQ(c.messages, 1);
	CHECK(!c.pregreet);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--help", NULL), 1);

	/* pregreet bots; not together with idle (an idle session waits for the greeting) */
	rc = parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--src", "10.1.0.0/16",
		   "--pregreet", "--duration", "5", "--sessions", "0", NULL);
	CHECK_INT_EQ(rc, 0);
	CHECK(c.pregreet);
	CHECK(!c.idle);
	rc = parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--src", "10.1.0.0/16",
		   "--pregreet", "--idle", NULL);
	CHECK_INT_EQ(rc, -EINVAL);
	CHECK(strstr(err, "--pregreet") != NULL);
}

static void test_args_bad(void)
{
	struct {
		const char *opt, *val, *says;
	} cases[] = {
		{ "--server", "10.0.0.1:0", "--server" },
		{ "--server", "10.0.0.1:65536", "--server" },
		{ "--server", "nohost", "--server" },
		{ "--server", "0.0.0.0", "--server" },
		{ "--local", "10.0.0.1/40", "--local" },
		{ "--src", "10.0.0.0/4", "--src" },
		{ "--next-hop", "x", "--next-hop" },
		{ "--concurrency", "0", "--concurrency" },
		{ "--concurrency", "16777217", "--concurrency" },
		{ "--concurrency", "-1", "--concurrency" },
		{ "--concurrency", "1e3", "--concurrency" },
		{ "--handshakes", "0", "--handshakes" },
		{ "--sessions", "x", "--sessions" },
		{ "--messages", "1073741825", "--messages" },
		{ "--size", "199", "--size" },
		{ "--rcpts", "0", "--rcpts" },
		{ "--rcpts", "1001", "--rcpts" },
		{ "--rate", "-1", "--rate" },
		{ "--rate", "nan", "--rate" },
		{ "--rate", "inf", "--rate" },
		{ "--rate-of", "bytes", "--rate-of" },
		{ "--helo", "a b", "--helo" },
		{ "--helo", "", "--helo" },
		{ "--sender", "a<b", "--sender" },
		{ "--bad-rcpt", "x\ty", "--bad-rcpt" },
		{ "--timeout", "0", "--timeout" },
		{ "--errors-kept", "1001", "--errors-kept" },
		{ "--mbufs", "10", "--mbufs" },
		{ "--sndbuf", "100", "--sndbuf" },
		{ "--progress", "-1", "--progress" },
		{ "--json", "", "--json" },
		{ "--idle-hold", "x", "--idle-hold" },
		{ "--duration", "-3", "--duration" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct loadgen_config c;
		char err[256] = "";
		int rc = parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			       cases[i].opt, cases[i].val, NULL);
		if (rc != -EINVAL || !strstr(err, cases[i].says))
			fprintf(stderr, "case %s %s: rc %d, %s\n", cases[i].opt, cases[i].val, rc,
				err);
		CHECK_INT_EQ(rc, -EINVAL);
		CHECK(strstr(err, cases[i].says) != NULL);
	}
	struct loadgen_config c;
	char err[256];
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--local", "10.0.0.2", NULL), -EINVAL);
	CHECK(strstr(err, "--server") != NULL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", NULL), -EINVAL);
	CHECK(strstr(err, "--local") != NULL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			   "--bad-rcpt-every", "3", NULL),
		     -EINVAL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			   "--sessions", "0", NULL),
		     -EINVAL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			   "--nosuch", NULL),
		     -EINVAL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			   "stray", NULL),
		     -EINVAL);
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", NULL), -EINVAL);
}

static void test_hist(void)
{
	static struct loadgen_hist h;
	memset(&h, 0, sizeof(h));
	CHECK_INT_EQ(loadgen_hist_quantile(&h, 0.5), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		loadgen_hist_add(&h, v);
	CHECK_INT_EQ(h.n, 1000);
	CHECK_INT_EQ(h.max, 1000);
	uint64_t p50 = loadgen_hist_quantile(&h, 0.5);
	uint64_t p90 = loadgen_hist_quantile(&h, 0.9);
	uint64_t p99 = loadgen_hist_quantile(&h, 0.99);
	/* within the buckets' 1/32 relative width, and never below the true value */
	CHECK(p50 >= 500 && p50 <= 500 + 500 / 32 + 1);
	CHECK(p90 >= 900 && p90 <= 900 + 900 / 32 + 1);
	CHECK(p99 >= 990 && p99 <= 1000);
	CHECK_INT_EQ(loadgen_hist_quantile(&h, 1), 1000);
	CHECK_INT_EQ(loadgen_hist_quantile(&h, 0), 1);
	/* small values are exact; huge ones land in the last bucket, max stays exact */
	memset(&h, 0, sizeof(h));
	loadgen_hist_add(&h, 7);
	CHECK_INT_EQ(loadgen_hist_quantile(&h, 0.5), 7);
	loadgen_hist_add(&h, UINT64_MAX / 2);
	CHECK_INT_EQ(loadgen_hist_quantile(&h, 1), UINT64_MAX / 2);
	CHECK(loadgen_hist_quantile(&h, 0.99) > 7);
	/* every value's bucket bound is at least the value and within 1/32 of it */
	for (uint64_t v = 1; v < (1ull << 36); v = v * 3 + 1) {
		memset(&h, 0, sizeof(h));
		loadgen_hist_add(&h, v);
		loadgen_hist_add(&h, v * 2 + 100);
		uint64_t q = loadgen_hist_quantile(&h, 0.5);
		CHECK(q >= v && q <= v + v / 32 + 1);
	}
}

static void test_json_string(void)
{
	char out[64];
	loadgen_json_string(out, sizeof(out), "a\"b\\c\r\n\x01\xff");
	CHECK_STR_EQ(out, "\"a\\\"b\\\\c\\u000d\\u000a\\u0001?\"");
	loadgen_json_string(out, 8, "abcdefghij");
	CHECK_STR_EQ(out, "\"abcde\"");
	loadgen_json_string(out, 8, "abcd\"fghij");
	CHECK_STR_EQ(out, "\"abcd\"");
	loadgen_json_string(out, 2, "x");
	CHECK_STR_EQ(out, "");
}

static void test_report(void)
{
	struct loadgen_config c;
	char err[128];
	CHECK_INT_EQ(parse(&c, err, sizeof(err), "--server", "10.0.0.1", "--local", "10.0.0.2",
			   NULL),
		     0);
	struct loadgen_stats st;
	CHECK_INT_EQ(loadgen_stats_init(&st, 2), 0);
	st.start_us = 1000000;
	st.end_us = 3000000;
	st.messages_accepted = 400;
	st.sessions_done = 100;
	loadgen_hist_add(&st.lat[LOADGEN_LAT_DOT], 250);
	loadgen_stats_error(&st, LOADGEN_ERR_RCPT, 250, "RCPT: expected 5xx, got %u %s", 250,
			    "2.1.5 \"Ok\"");
	loadgen_stats_error(&st, LOADGEN_ERR_LOST, 0, "lost");
	loadgen_stats_error(&st, LOADGEN_ERR_LOST, 0, "not kept");
	CHECK_INT_EQ(st.errors_total, 3);
	CHECK_INT_EQ(st.errors[LOADGEN_ERR_LOST], 2);
	CHECK_INT_EQ(st.nkept, 2);
	char path[] = "/tmp/test_loadgen.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT_EQ(loadgen_report_json(path, &c, &st, NULL), 0);
	FILE *f = fopen(path, "r");
	char buf[8192];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	unlink(path);
	CHECK(strstr(buf, "\"messages_per_s\": 200.000") != NULL);
	CHECK(strstr(buf, "\"sessions_per_s\": 50.000") != NULL);
	CHECK(strstr(buf, "\"dot\": {\"n\": 1, \"p50\": 250") != NULL);
	CHECK(strstr(buf, "\"rcpt\": 1") != NULL);
	CHECK(strstr(buf, "\"text\": \"RCPT: expected 5xx, got 250 2.1.5 \\\"Ok\\\"\"") != NULL);
	CHECK(strstr(buf, "not kept") == NULL);
	/* the histogram itself: the dot's one value in its bucket, empty kinds empty */
	CHECK(strstr(buf, "\"latency_hist_us\": {") != NULL);
	/* 250 us falls in the bucket 248..251 (4 us wide above 128) */
	CHECK(strstr(buf, "\"dot\": [[251, 1]]") != NULL);
	CHECK(strstr(buf, "\"quit\": []") != NULL);
	f = fopen("/dev/null", "w");
	loadgen_report_text(f, &c, &st, NULL);
	fclose(f);
	loadgen_stats_free(&st);
	CHECK_INT_EQ(loadgen_report_json("/nonexistent/dir/x.json", &c, &st, NULL), -ENOENT);
}

int main(void)
{
	RUN_TEST(test_range);
	RUN_TEST(test_args_ok);
	RUN_TEST(test_args_bad);
	RUN_TEST(test_hist);
	RUN_TEST(test_json_string);
	RUN_TEST(test_report);
	return TEST_RESULT();
}
