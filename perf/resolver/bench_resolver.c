/* The resolver service's costs, measured through the worker rings as a worker sees them:
 *
 *   cache hits     one name answered from the cache, in batches of 256 submitted at once
 *                  (ns per answered request: ring in, lookup, a reference, ring out,
 *                  the wake-ups), and one at a time (the round-trip latency);
 *   uncached       distinct names, 1,000 in flight, against a real unbound serving a
 *                  wildcard zone from memory (lookups/s, the mean wait), then the same
 *                  against the scripted server of the unit tests.
 *
 * The benchmark thread is the worker; the resolver thread is the only other busy one, so
 * on this 2-core machine the server (unbound, or the scripted one) shares their cores.
 * Build with -Dbuildtype=release for numbers worth quoting. Fails, naming the package,
 * when unbound is not installed. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "resolver_harness.h"
#include "resolver_test_server.h"
#include "resolver_unbound.h"

static struct rh *h;
static uint64_t bench_seq; /* distinct names across runs: never a cache hit */

struct bench_count {
	uint64_t got, ok, sum_wait_ns;
};

/* Requests are recycled, as a worker may: what is measured is the rings and the
 * resolver, not the allocator (svc_request is about 4.7 KiB, most of it the policy
 * union member; calloc() of it costs more than the rest of a cache hit). */
#define BENCH_FREE_MAX 4096
static struct svc_request *bench_free[BENCH_FREE_MAX];
static unsigned bench_nfree;

/* CPU time of the resolver thread (the task named mx-resolver), ns. */
static uint64_t bench_resolver_cpu_ns(void)
{
	char path[64], comm[32];
	for (int tid = getpid(); tid < getpid() + 1000; tid++) {
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		bool match = fgets(comm, sizeof(comm), f) && strncmp(comm, "mx-resolver", 11) == 0;
		fclose(f);
		if (!match)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
		f = fopen(path, "r");
		unsigned long long ns = 0;
		if (f && fscanf(f, "%llu", &ns) != 1)
			ns = 0;
		if (f)
			fclose(f);
		return ns;
	}
	return 0;
}

static uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bench_take(void *arg, struct svc_request *r)
{
	struct bench_count *c = arg;
	c->got++;
	if (r->status == 0 && r->u.dns.result && r->u.dns.result->status == DNS_RESULT_OK)
		c->ok++;
	/* the owner pointer carries the submit time */
	c->sum_wait_ns += bench_now_ns() - (uint64_t)(uintptr_t)r->owner;
	if (bench_nfree < BENCH_FREE_MAX) {
		dns_result_put(r->u.dns.result);
		r->u.dns.result = NULL;
		bench_free[bench_nfree++] = r;
	} else {
		svc_request_free(r);
	}
}

static struct svc_request *bench_request(const char *name)
{
	struct svc_request *r = bench_nfree ? bench_free[--bench_nfree] : svc_request_new(SVC_DNS);
	r->u.dns.type = DNS_TYPE_A;
	snprintf(r->u.dns.name, sizeof(r->u.dns.name), "%s", name);
	r->owner = (void *)(uintptr_t)bench_now_ns();
	return r;
}

/* Keep `window` requests in flight until `total` were answered; names from fmt(i). */
static void bench_run(const char *what, uint64_t total, unsigned window, bool distinct)
{
	struct bench_count c = { 0 };
	uint64_t sent = 0;
	char name[64];
	uint64_t t0 = bench_now_ns(), cpu0 = bench_resolver_cpu_ns();
	while (c.got < total) {
		while (sent < total && sent - c.got < window) {
			if (distinct)
				snprintf(name, sizeof(name), "h%" PRIu64 ".bench.test",
					 bench_seq++);
			else
				snprintf(name, sizeof(name), "hit.bench.test");
			struct svc_request *r = bench_request(name);
			if (svc_submit(h->c, r) != 0) {
				svc_request_free(r);
				break;
			}
			sent++;
		}
		svc_client_flush(h->c);
		if (!svc_client_pending(h->c)) {
			struct pollfd pf = { .fd = h->wake, .events = POLLIN };
			poll(&pf, 1, 100);
			uint64_t v;
			ssize_t n = read(h->wake, &v, sizeof(v));
			(void)n;
		}
		svc_client_poll(h->c, bench_take, &c);
	}
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	double cpu = (double)(bench_resolver_cpu_ns() - cpu0);
	printf("%-40s %8" PRIu64 " req %7.0f ns/req %9.0f /s  wait %8.1f us  resolver CPU "
	       "%6.0f ns/req  ok %" PRIu64 "\n",
	       what, total, secs * 1e9 / (double)total, (double)total / secs,
	       (double)c.sum_wait_ns / (double)total / 1000.0, cpu / (double)total, c.ok);
	fflush(stdout);
}

static int bench_against(const char *label, uint16_t port, uint64_t hit_total,
			 uint64_t miss_total)
{
	struct svc_resolver_params p;
	svc_resolver_params_default(&p);
	p.nservers = 1;
	mx_inet_parse("127.0.0.1", &p.servers[0].addr);
	p.servers[0].port = port;
	p.timeout_ms = 2000;
	p.attempts = 2;
	p.cache_max_entries = 1u << 20;
	p.cache_max_bytes = 256u << 20;
	if (rh_start(h, &p) < 0)
		return -1;
	/* warm: the name is cached, the sockets open */
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "hit.bench.test", 0);
	bool ok = r && r->u.dns.result && r->u.dns.result->status == DNS_RESULT_OK;
	svc_request_free(r);
	if (!ok) {
		fprintf(stderr, "bench: %s does not answer hit.bench.test\n", label);
		rh_stop(h);
		return -1;
	}
	char what[96];
	if (hit_total) {
		bench_run("cache hit, 256 in flight", hit_total, 256, false);
		bench_run("cache hit, one at a time", hit_total / 20, 1, false);
	}
	snprintf(what, sizeof(what), "uncached, 1000 in flight (%s)", label);
	bench_run(what, miss_total, 1000, true);
	snprintf(what, sizeof(what), "uncached, one at a time (%s)", label);
	bench_run(what, miss_total / 20, 1, true);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	char line[1024];
	svc_resolver_stats_format(&st, line, sizeof(line));
	printf("  resolver: %s\n", line);
	rh_stop(h);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t hits = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
	uint64_t misses = argc > 2 ? strtoull(argv[2], NULL, 10) : 100000;
	h = calloc(1, sizeof(*h));
	struct ru ub;
	int rc = ru_start(&ub, "  local-zone: \"bench.test.\" redirect\n"
			       "  local-data: \"bench.test. 300 IN A 192.0.2.1\"\n"
			       "  num-queries-per-thread: 4096\n"
			       "  so-rcvbuf: 4m\n");
	if (rc == -ENOENT) {
		fprintf(stderr, "FAIL: %s is missing: install the Debian package `unbound` "
				"(deploy/install-deps.sh)\n", RU_UNBOUND);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "bench: cannot start unbound: %s\n", strerror(-rc));
		return 1;
	}
	/* wait for it to listen */
	int up = -1;
	for (int i = 0; i < 100 && up < 0; i++) {
		usleep(100 * 1000);
		struct svc_resolver_params p;
		svc_resolver_params_default(&p);
		p.nservers = 1;
		mx_inet_parse("127.0.0.1", &p.servers[0].addr);
		p.servers[0].port = ub.port;
		p.timeout_ms = 200;
		p.attempts = 1;
		if (rh_start(h, &p) < 0)
			break;
		struct svc_request *r = rh_ask(h, DNS_TYPE_A, "hit.bench.test", 0);
		if (r && r->u.dns.result && r->u.dns.result->status == DNS_RESULT_OK)
			up = 0;
		svc_request_free(r);
		rh_stop(h);
	}
	if (up < 0) {
		ru_dump(&ub);
		ru_stop(&ub);
		fprintf(stderr, "bench: unbound does not answer\n");
		return 1;
	}
	int failed = bench_against("unbound", ub.port, hits, misses) < 0;
	ru_stop(&ub);

	struct rts_server *srv = calloc(1, sizeof(*srv));
	if (rts_start(srv) == 0) {
		rts_add(srv, "*.bench.test", 1, RTS_ANSWER, 300, "192.0.2.1");
		failed |= bench_against("scripted server", srv->port, 0, misses) < 0;
		rts_stop(srv);
	}
	free(srv);
	while (bench_nfree)
		svc_request_free(bench_free[--bench_nfree]);
	free(h);
	return failed;
}
