/* Table lookup benchmark: lookups per second per table kind with N entries (default 1M; the
 * first argument overrides, e.g. 10000000), plus build (import) time, with the store on disk
 * in a temporary directory (page cache warm, as on a running gateway).
 *     meson test -C build --benchmark --verbose tables
 *     ./build/perf/tables/bench_tables 10000000
 * Keys are random, half present and half absent; every lookup goes through the public API
 * (table_lookup: fold, LMDB get or range search, copy the value), one reader, one thread. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxgate/inet.h"
#include "tables/rbl_zone.h"
#include "tables/table_access.h"
#include "tables/tables_env.h"

static double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t bench_rng = 88172645463325252ull;
static uint64_t bench_rand(void)
{
	bench_rng ^= bench_rng << 13;
	bench_rng ^= bench_rng >> 7;
	bench_rng ^= bench_rng << 17;
	return bench_rng;
}

static void bench_die(const char *what, int rc, const char *err)
{
	fprintf(stderr, "bench_tables: %s: %s (%s)\n", what, strerror(rc < 0 ? -rc : rc), err);
	exit(1);
}

/* Build spec from text and report the time. */
static void bench_build(struct tables_env *env, const char *spec, const char *text, size_t len)
{
	char err[512];
	struct tables_build_stats st;
	double t0 = bench_now();
	int rc = tables_build(env, spec, text, len, NULL, NULL, &st, err, sizeof(err));
	if (rc < 0)
		bench_die(spec, rc, err);
	printf("%-8s build: %9llu entries, %9llu records, %7.2f s (%.0f entries/s)\n", spec,
	       (unsigned long long)st.entries, (unsigned long long)st.records, bench_now() - t0,
	       (double)st.entries / (bench_now() - t0));
}

static void bench_lookups(struct tables_reader *rd, const char *spec, char **keys, size_t nkeys,
			  size_t rounds)
{
	struct table *t;
	char err[256], val[TABLE_VALUE_MAX + 1];
	int rc = table_open(rd, spec, &t, err, sizeof(err));
	if (rc < 0)
		bench_die(spec, rc, err);
	size_t found = 0;
	double t0 = bench_now();
	for (size_t r = 0; r < rounds; r++) {
		rc = table_lookup(t, keys[r % nkeys], val, sizeof(val));
		if (rc < 0)
			bench_die(spec, rc, "lookup");
		found += (size_t)rc;
	}
	double dt = bench_now() - t0;
	printf("%-8s lookup: %9zu lookups, %5.1f%% found, %10.0f lookups/s, %6.0f ns/lookup\n", spec,
	       rounds, 100.0 * (double)found / (double)rounds, (double)rounds / dt,
	       dt * 1e9 / (double)rounds);
	table_close(t);
}

/* Local DNSBL zones (tables/rbl_zone.h): an ip4set of n entries (random addresses, a tenth
 * /24 networks, a hundredth exclusions) and a dnset of n names (a tenth .domain wildcards);
 * the import time (parse, sort, flatten, one write transaction) and queries/s through
 * rbl_zone_query_addr / rbl_zone_query_name, half listed. */
static void bench_rbl_build(struct tables_env *env, const char *zone, enum rbl_format fmt,
			    const char *text, size_t len)
{
	char err[512];
	struct rbl_build_stats st;
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	double t0 = bench_now();
	int rc = rbl_zone_build(env, zone, fmt, text, len, NULL, NULL, &st, err, sizeof(err));
	if (rc < 0)
		bench_die(zone, rc, err);
	double dt = bench_now() - t0;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	double cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
	printf("rbl:%-6s import: %9llu entries, %9llu records, %7.2f s (%.0f entries/s, "
	       "%.2f s CPU)\n",
	       rbl_format_name(fmt), (unsigned long long)st.entries, (unsigned long long)st.records,
	       dt, (double)st.entries / dt, cpu);
}

static void bench_rbl(struct tables_env *env, struct tables_reader *rd, char *text, size_t cap,
		      size_t n, size_t rounds)
{
	enum { NQ = 1 << 16 };
	static uint32_t listed[NQ];
	static struct mx_inet_addr addrs[NQ];
	size_t w = 0;
	w += (size_t)snprintf(text + w, cap - w, ":127.0.0.2:Listed, see http://bl.example/?$\n");
	for (size_t i = 0; i < n; i++) {
		uint32_t a = (uint32_t)bench_rand();
		if (i % 10 == 9)
			w += (size_t)snprintf(text + w, cap - w, "%u.%u.%u\n", a >> 24, (a >> 16) & 255,
					      (a >> 8) & 255);
		else
			w += (size_t)snprintf(text + w, cap - w, "%s%u.%u.%u.%u\n",
					      i % 100 == 50 ? "!" : "", a >> 24, (a >> 16) & 255,
					      (a >> 8) & 255, a & 255);
		if (i % 10 != 9 && i % 100 != 50)
			listed[i % NQ] = a;
	}
	bench_rbl_build(env, "ip4.bench.test", RBL_FORMAT_IP4SET, text, w);
	for (size_t i = 0; i < NQ; i++) {
		uint32_t a = i % 2 && i < n ? listed[i] : (uint32_t)bench_rand();
		addrs[i].family = AF_INET;
		addrs[i].bytes[0] = (uint8_t)(a >> 24);
		addrs[i].bytes[1] = (uint8_t)(a >> 16);
		addrs[i].bytes[2] = (uint8_t)(a >> 8);
		addrs[i].bytes[3] = (uint8_t)a;
	}
	int rc = tables_reader_renew(rd);
	struct rbl_zone *z;
	if (rc < 0 || (rc = rbl_zone_open(rd, "ip4.bench.test", &z)) < 0)
		bench_die("rbl open", rc, "");
	struct rbl_result res;
	size_t found = 0;
	double t0 = bench_now();
	for (size_t r = 0; r < rounds; r++) {
		rc = rbl_zone_query_addr(z, &addrs[r % NQ], 0, &res);
		if (rc < 0)
			bench_die("rbl query", rc, "");
		found += (size_t)rc;
	}
	double dt = bench_now() - t0;
	printf("rbl:ip4set query:  %9zu queries, %5.1f%% listed, %10.0f queries/s, %6.0f ns/query\n",
	       rounds, 100.0 * (double)found / (double)rounds, (double)rounds / dt,
	       dt * 1e9 / (double)rounds);
	rbl_zone_close(z);

	w = 0;
	for (size_t i = 0; i < n; i++)
		w += (size_t)snprintf(text + w, cap - w, "%sd%zu.example%zu.com\n", i % 10 == 9 ? "." : "",
				      i, i % 1000);
	bench_rbl_build(env, "dbl.bench.test", RBL_FORMAT_DNSET, text, w);
	static char names[NQ][64];
	for (size_t i = 0; i < NQ; i++) {
		size_t k = bench_rand() % n;
		/* a quarter exact names of entries, a quarter names never listed, half with a
		 * www. that only the wildcard tenth matches: about 30% listed */
		snprintf(names[i], sizeof(names[i]), "%sd%zu.example%zu.com", i % 2 ? "" : "www.",
			 i % 4 == 3 ? k + n : k, k % 1000);
	}
	if ((rc = tables_reader_renew(rd)) < 0 || (rc = rbl_zone_open(rd, "dbl.bench.test", &z)) < 0)
		bench_die("rbl open", rc, "");
	found = 0;
	t0 = bench_now();
	for (size_t r = 0; r < rounds; r++) {
		rc = rbl_zone_query_name(z, names[r % NQ], 0, &res);
		if (rc < 0)
			bench_die("rbl query", rc, "");
		found += (size_t)rc;
	}
	dt = bench_now() - t0;
	printf("rbl:dnset  query:  %9zu queries, %5.1f%% listed, %10.0f queries/s, %6.0f ns/query\n",
	       rounds, 100.0 * (double)found / (double)rounds, (double)rounds / dt,
	       dt * 1e9 / (double)rounds);
	rbl_zone_close(z);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	size_t rounds = 2000000, nkeys = 1 << 16;
	char dir[] = "/var/tmp/mxgate-bench-tables-XXXXXX", err[256];
	if (!mkdtemp(dir))
		bench_die("mkdtemp", errno, dir);
	struct tables_env *env;
	int rc = tables_env_open(dir, NULL, &env, err, sizeof(err));
	if (rc < 0)
		bench_die("open", rc, err);
	printf("entries: %zu\n", n);

	/* hash: user<i>@domain<i%1000>.example keys. */
	size_t cap = n * 64 + 64, w = 0;
	char *text = malloc(cap);
	char **keys = malloc(nkeys * sizeof(*keys));
	if (!text || !keys)
		bench_die("malloc", ENOMEM, "");
	for (size_t i = 0; i < nkeys; i++)
		keys[i] = NULL;
	struct tables_reader *rd;
	if (argc > 2 && strcmp(argv[2], "rbl") == 0) {
		/* ./bench_tables N rbl: the local DNSBL zones only */
		if ((rc = tables_reader_open(env, &rd)) < 0)
			bench_die("reader", rc, "");
		bench_rbl(env, rd, text, cap, n, rounds);
		goto done;
	}
	for (size_t i = 0; i < n; i++)
		w += (size_t)snprintf(text + w, cap - w, "user%zu@d%zu.example REJECT %zu\n", i,
				      i % 1000, i);
	bench_build(env, "hash:bench", text, w);
	for (size_t i = 0; i < nkeys; i++) {
		keys[i] = malloc(64);
		size_t k = bench_rand() % n;
		snprintf(keys[i], 64, "%s%zu@d%zu.example", i % 2 ? "User" : "nouser", k, k % 1000);
	}
	if ((rc = tables_reader_open(env, &rd)) < 0)
		bench_die("reader", rc, "");
	bench_lookups(rd, "hash:bench", keys, nkeys, rounds);

	/* access(5) order for an address that is not listed: 7 lookups each. */
	{
		struct table *t;
		table_open(rd, "hash:bench", &t, err, sizeof(err));
		struct table_access_opts o = { .recipient_delimiter = "+",
					       .parent_matches_subdomains = true };
		char val[TABLE_VALUE_MAX + 1];
		struct table_access_query q = { .opts = &o, .val = val, .vallen = sizeof(val) };
		size_t r2 = rounds / 4;
		double t0 = bench_now();
		for (size_t r = 0; r < r2; r++)
			table_access_address(t, keys[r % nkeys], &q);
		double dt = bench_now() - t0;
		printf("%-8s access(5) address checks: %10.0f checks/s (half listed: 1 lookup; half not: 4)\n",
		       "hash", (double)r2 / dt);
		table_close(t);
	}

	/* cidr: n rules, mostly /24 and /32 in 10.0.0.0/8 and 172.16.0.0/12, overlapping, file
	 * order deciding; a tenth IPv6. */
	w = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t r = bench_rand();
		if (i % 10 == 9) {
			w += (size_t)snprintf(text + w, cap - w, "2001:db8:%x:%x::/64 R%zu\n",
					      (unsigned)(r & 0xffff), (unsigned)((r >> 16) & 0xffff), i);
		} else {
			unsigned plen = (r >> 40) % 3 == 0 ? 24 : 32;
			uint32_t a = (uint32_t)((i % 2 ? 0x0a000000u : 0xac100000u) |
						(r & (i % 2 ? 0x00ffffffu : 0x000fffffu)));
			if (plen == 24)
				a &= 0xffffff00u;
			w += (size_t)snprintf(text + w, cap - w, "%u.%u.%u.%u/%u R%zu\n", a >> 24,
					      (a >> 16) & 255, (a >> 8) & 255, a & 255, plen, i);
		}
	}
	bench_build(env, "cidr:bench", text, w);
	for (size_t i = 0; i < nkeys; i++) {
		uint64_t r = bench_rand();
		if (i % 10 == 9)
			snprintf(keys[i], 64, "2001:db8:%x:%x::1", (unsigned)(r & 0xffff),
				 (unsigned)((r >> 16) & 0xffff));
		else
			snprintf(keys[i], 64, "%u.%u.%u.%u", i % 2 ? 10u : 172u,
				 i % 2 ? (unsigned)(r >> 8) & 255 : 16 + ((unsigned)(r >> 8) & 15),
				 (unsigned)(r >> 16) & 255, (unsigned)(r >> 24) & 255);
	}
	if ((rc = tables_reader_renew(rd)) < 0)
		bench_die("renew", rc, "");
	bench_lookups(rd, "cidr:bench", keys, nkeys, rounds);

	/* pcre/regexp: a linear scan by nature (as in Postfix); 1000 rules, keys that mostly
	 * miss, so the number is the cost of trying every rule. */
	w = 0;
	for (size_t i = 0; i < 1000; i++)
		w += (size_t)snprintf(text + w, cap - w, "/^user%zu@d%zu\\.example$/ REJECT %zu\n", i,
				      i, i);
	bench_build(env, "pcre:bench", text, w);
	bench_build(env, "regexp:bench", text, w);
	if ((rc = tables_reader_renew(rd)) < 0)
		bench_die("renew", rc, "");
	bench_lookups(rd, "pcre:bench", keys, nkeys, rounds / 200);
	bench_lookups(rd, "regexp:bench", keys, nkeys, rounds / 2000);

	bench_rbl(env, rd, text, cap, n, rounds);

done:
	tables_reader_close(rd);
	tables_env_close(env);
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	free(text);
	char p[128];
	snprintf(p, sizeof(p), "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
	return 0;
}
