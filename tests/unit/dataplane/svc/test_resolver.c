/* The resolver service (dataplane/svc/svc_resolver.h) against scripted DNS servers on
 * 127.0.0.1 (resolver_test_server.h), through the worker rings as a worker uses it:
 * answers of every type and status, the cache (hits, TTL expiry, the max TTL clamp,
 * negative answers and their floor, LRU bounds), the in-flight merge, retries to the next
 * server after a timeout, SERVFAIL, REFUSED, a malformed answer or a closed port, TEMPFAIL
 * when every server fails, request deadlines, spoofed answers ignored, DNS 0x20 case
 * echoed, truncation to TCP, the in-flight bound, a stop with requests in flight, and the
 * statistics line. Then the internals: SipHash against the paper's vector, the timer heap
 * and the hash map under random operations. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/svc/svc_resolver_internal.h"
#include "mgmt/log.h"
#include "resolver_harness.h"
#include "resolver_test_server.h"
#include "testing.h"

static struct rts_server srv1, srv2;
static struct rh *h;

/* Params for servers srv1 (and srv2 when two), a short timeout. */
static void params_for(struct svc_resolver_params *p, unsigned nservers, uint32_t timeout_ms,
		       unsigned attempts)
{
	svc_resolver_params_default(p);
	p->nservers = nservers;
	struct rts_server *s[2] = { &srv1, &srv2 };
	for (unsigned i = 0; i < nservers; i++) {
		mx_inet_parse("127.0.0.1", &p->servers[i].addr);
		p->servers[i].port = s[i]->port;
	}
	p->timeout_ms = timeout_ms;
	p->attempts = attempts;
}

static void servers_start(void)
{
	CHECK_INT_EQ(rts_start(&srv1), 0);
	CHECK_INT_EQ(rts_start(&srv2), 0);
}

static void servers_stop(void)
{
	rts_stop(&srv1);
	rts_stop(&srv2);
}

static void start_with(struct svc_resolver_params *p)
{
	CHECK_INT_EQ(rh_start(h, p), 0);
}

/* The request's result, checked to exist. */
static const struct dns_result *res(const struct svc_request *r)
{
	CHECK(r != NULL);
	if (!r)
		abort();
	CHECK(r->u.dns.result != NULL);
	return r->u.dns.result;
}

static void addr_is(const struct dns_result *r, unsigned i, const char *want)
{
	char got[64] = "";
	if (i < r->nrecords)
		mx_inet_format(&r->records[i].addr, got, sizeof(got));
	CHECK_STR_EQ(got, want);
}

static void test_answers(void)
{
	servers_start();
	struct rts_rule *a = rts_add(&srv1, "mx.example.test", 1, RTS_ANSWER, 300, "192.0.2.1");
	rts_value(&srv1, a, "192.0.2.2");
	rts_add(&srv1, "mx.example.test", 28, RTS_ANSWER, 300, "2001:db8::1");
	rts_add(&srv1, "1.2.0.192.in-addr.arpa", 12, RTS_ANSWER, 300, "mx.example.test");
	struct rts_rule *mx = rts_add(&srv1, "example.test", 15, RTS_ANSWER, 300,
				      "20 mx2.example.test");
	rts_value(&srv1, mx, "10 mx.example.test");
	rts_add(&srv1, "2.0.0.127.zen.test", 16, RTS_ANSWER, 60, "listed: see example");
	rts_add(&srv1, "nope.example.test", 0, RTS_NXDOMAIN, 30, NULL);
	rts_add(&srv1, "example.test", 1, RTS_ANSWER, 40, NULL); /* NODATA */
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 2);
	start_with(&p);

	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "MX.Example.Test.", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_INT_EQ(res(r)->nrecords, 2);
	addr_is(res(r), 0, "192.0.2.1");
	addr_is(res(r), 1, "192.0.2.2");
	CHECK_INT_EQ(res(r)->ttl, 300);
	CHECK(r->owner == r);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_AAAA, "mx.example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	addr_is(res(r), 0, "2001:db8::1");
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_PTR, "1.2.0.192.in-addr.arpa", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_STR_EQ(dns_result_name(res(r), &res(r)->records[0]), "mx.example.test");
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_MX, "example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_INT_EQ(res(r)->nrecords, 2);
	CHECK_INT_EQ(res(r)->records[0].pref, 20);
	CHECK_STR_EQ(dns_result_name(res(r), &res(r)->records[0]), "mx2.example.test");
	CHECK_INT_EQ(res(r)->records[1].pref, 10);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_TXT, "2.0.0.127.zen.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_STR_EQ(dns_result_txt(res(r), &res(r)->records[0]), "listed: see example");
	CHECK_INT_EQ(res(r)->ttl, 60);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_A, "nope.example.test", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
	CHECK_INT_EQ(res(r)->ttl, 30);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_A, "example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_NODATA);
	CHECK_INT_EQ(res(r)->ttl, 40);
	svc_request_free(r);

	/* no rule: REFUSED from the only server, TEMPFAIL saying so */
	r = rh_ask(h, DNS_TYPE_A, "unknown.test", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK(strstr(res(r)->why, "REFUSED from 127.0.0.1") != NULL);
	svc_request_free(r);

	/* not a valid name */
	r = rh_ask(h, DNS_TYPE_A, "bad name!.test", 0);
	CHECK_INT_EQ(r->status, -EINVAL);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	svc_request_free(r);

	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.requests, 9);
	CHECK_INT_EQ(st.queries, 8);
	CHECK_INT_EQ(st.answers, 8);
	CHECK_INT_EQ(st.servfails, 1);
	CHECK_INT_EQ(st.tempfails, 2);
	CHECK_INT_EQ(st.in_flight, 0);
	rh_stop(h);
	servers_stop();
}

static void test_cache(void)
{
	servers_start();
	struct rts_rule *one = rts_add(&srv1, "ttl1.test", 1, RTS_ANSWER, 1, "192.0.2.1");
	struct rts_rule *clamp = rts_add(&srv1, "ttl100.test", 1, RTS_ANSWER, 100, "192.0.2.2");
	struct rts_rule *zero = rts_add(&srv1, "ttl0.test", 1, RTS_ANSWER, 0, "192.0.2.3");
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 2);
	p.max_ttl = 2;
	start_with(&p);

	struct svc_request *r1 = rh_ask(h, DNS_TYPE_A, "ttl1.test", 0);
	struct svc_request *r2 = rh_ask(h, DNS_TYPE_A, "TTL1.test.", 0);
	CHECK_INT_EQ(rts_queries(one), 1);               /* the second was a hit */
	CHECK(res(r1) == res(r2));                       /* the same cached result */
	CHECK_INT_EQ(res(r2)->status, DNS_RESULT_OK);
	svc_request_free(r1);
	svc_request_free(r2);
	/* another type is another key */
	svc_request_free(rh_ask(h, DNS_TYPE_AAAA, "ttl1.test", 0));
	CHECK_INT_EQ(rts_queries(one), 1); /* the rule is for A only: REFUSED, no count */

	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl100.test", 0));
	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl0.test", 0));
	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl0.test", 0));
	CHECK_INT_EQ(rts_queries(zero), 2); /* TTL 0: never cached */
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.hits, 1);
	CHECK_INT_EQ(st.entries, 2);
	CHECK(st.bytes > 0);

	usleep(1200 * 1000);
	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl1.test", 0));
	CHECK_INT_EQ(rts_queries(one), 2); /* expired after its 1 s */
	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl100.test", 0));
	CHECK_INT_EQ(rts_queries(clamp), 1); /* 100 s clamped to 2 s: still there */
	usleep(1000 * 1000);
	svc_request_free(rh_ask(h, DNS_TYPE_A, "ttl100.test", 0));
	CHECK_INT_EQ(rts_queries(clamp), 2); /* and gone after 2 */
	rh_stop(h);
	servers_stop();
}

static void test_negative_cache(void)
{
	servers_start();
	struct rts_rule *nx = rts_add(&srv1, "nx.test", 0, RTS_NXDOMAIN, 60, NULL);
	struct rts_rule *nodata = rts_add(&srv1, "nodata.test", 1, RTS_ANSWER, 60, NULL);
	struct rts_rule *bare = rts_add(&srv1, "bare.test", 0, RTS_NXDOMAIN, 60, NULL);
	bare->no_soa = true;
	struct rts_rule *short_ttl = rts_add(&srv1, "short.test", 0, RTS_NXDOMAIN, 0, NULL);
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 2);
	start_with(&p);
	for (int i = 0; i < 3; i++) {
		struct svc_request *r = rh_ask(h, DNS_TYPE_A, "nx.test", 0);
		CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
		svc_request_free(r);
		r = rh_ask(h, DNS_TYPE_A, "nodata.test", 0);
		CHECK_INT_EQ(res(r)->status, DNS_RESULT_NODATA);
		svc_request_free(r);
		r = rh_ask(h, DNS_TYPE_A, "bare.test", 0);
		CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
		svc_request_free(r);
		svc_request_free(rh_ask(h, DNS_TYPE_A, "short.test", 0));
	}
	CHECK_INT_EQ(rts_queries(nx), 1);
	CHECK_INT_EQ(rts_queries(nodata), 1);
	CHECK_INT_EQ(rts_queries(bare), 3);      /* no SOA, floor 0: RFC 2308 5, not kept */
	CHECK_INT_EQ(rts_queries(short_ttl), 3); /* SOA TTL 0 */
	rh_stop(h);

	/* a floor keeps both */
	params_for(&p, 1, 2000, 2);
	p.negative_ttl_floor = 5;
	start_with(&p);
	for (int i = 0; i < 3; i++) {
		svc_request_free(rh_ask(h, DNS_TYPE_A, "bare.test", 0));
		svc_request_free(rh_ask(h, DNS_TYPE_A, "short.test", 0));
	}
	CHECK_INT_EQ(rts_queries(bare), 4);
	CHECK_INT_EQ(rts_queries(short_ttl), 4);
	rh_stop(h);
	servers_stop();
}

static void test_lru(void)
{
	servers_start();
	char name[64];
	struct rts_rule *rules[5];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		rules[i] = rts_add(&srv1, name, 1, RTS_ANSWER, 300, "192.0.2.9");
	}
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 2);
	p.cache_max_entries = 3;
	start_with(&p);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		svc_request_free(rh_ask(h, DNS_TYPE_A, name, 0));
		if (i == 2) /* n0 becomes the most recent: n1 is evicted first */
			svc_request_free(rh_ask(h, DNS_TYPE_A, "n0.test", 0));
	}
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.entries, 3);
	CHECK_INT_EQ(st.evictions, 2);
	svc_request_free(rh_ask(h, DNS_TYPE_A, "n0.test", 0)); /* kept */
	svc_request_free(rh_ask(h, DNS_TYPE_A, "n1.test", 0)); /* evicted */
	svc_request_free(rh_ask(h, DNS_TYPE_A, "n2.test", 0)); /* evicted */
	CHECK_INT_EQ(rts_queries(rules[0]), 1);
	CHECK_INT_EQ(rts_queries(rules[1]), 2);
	CHECK_INT_EQ(rts_queries(rules[2]), 2);
	rh_stop(h);

	/* the byte bound: room for about two entries */
	params_for(&p, 1, 2000, 2);
	p.cache_max_bytes = 2 * (sizeof(struct svc_resolver_entry) + 8 +
				 sizeof(struct dns_result) + sizeof(struct dns_result_record) + 1) +
			    10;
	start_with(&p);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "n%d.test", i);
		svc_request_free(rh_ask(h, DNS_TYPE_A, name, 0));
	}
	rh_stats(h, &st);
	CHECK_INT_EQ(st.entries, 2);
	CHECK(st.bytes <= p.cache_max_bytes);
	rh_stop(h);
	servers_stop();
}

static void test_merge(void)
{
	servers_start();
	struct rts_rule *slow = rts_add(&srv1, "slow.test", 1, RTS_ANSWER, 300, "192.0.2.7");
	slow->delay_ms = 300;
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 2);
	start_with(&p);
	for (int i = 0; i < 100; i++)
		CHECK(rh_submit(h, DNS_TYPE_A, i % 2 ? "slow.test" : "SLOW.TEST.", 0) != NULL);
	rh_flush(h);
	CHECK_INT_EQ(rh_wait(h, 100, 10000), 100);
	const struct dns_result *first = h->nanswers ? res(h->answers[0]) : NULL;
	for (unsigned i = 0; i < h->nanswers; i++) {
		CHECK_INT_EQ(h->answers[i]->status, 0);
		CHECK(res(h->answers[i]) == first); /* one result, a reference each */
	}
	CHECK(first && first->status == DNS_RESULT_OK);
	CHECK_INT_EQ(first ? atomic_load(&first->refs) : 0, 101); /* 100 and the cache */
	for (unsigned i = 0; i < h->nanswers; i++)
		svc_request_free(h->answers[i]);
	h->taken = h->nanswers;
	CHECK_INT_EQ(rts_queries(slow), 1);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.merges, 99);
	CHECK_INT_EQ(st.queries, 1);
	rh_stop(h);
	servers_stop();
}

static void test_failover(void)
{
	servers_start();
	struct rts_rule *d1 = rts_add(&srv1, "drop.test", 1, RTS_DROP, 300, NULL);
	struct rts_rule *d2 = rts_add(&srv2, "drop.test", 1, RTS_ANSWER, 300, "192.0.2.11");
	struct rts_rule *s1 = rts_add(&srv1, "servfail.test", 1, RTS_SERVFAIL, 300, NULL);
	struct rts_rule *s2 = rts_add(&srv2, "servfail.test", 1, RTS_ANSWER, 300, "192.0.2.12");
	struct rts_rule *m1 = rts_add(&srv1, "malformed.test", 1, RTS_MALFORMED, 300, NULL);
	struct rts_rule *m2 = rts_add(&srv2, "malformed.test", 1, RTS_ANSWER, 300, "192.0.2.13");
	struct rts_rule *f1 = rts_add(&srv1, "refused.test", 1, RTS_REFUSED, 300, NULL);
	struct rts_rule *f2 = rts_add(&srv2, "refused.test", 1, RTS_ANSWER, 300, "192.0.2.14");
	struct svc_resolver_params p;
	params_for(&p, 2, 400, 2);
	start_with(&p);

	uint64_t t0 = mx_clock_monotonic_ms();
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "drop.test", 0);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	addr_is(res(r), 0, "192.0.2.11");
	CHECK(took >= 380);            /* after the first try's timeout */
	CHECK_INT_EQ(rts_queries(d1), 1);
	CHECK_INT_EQ(rts_queries(d2), 1);
	svc_request_free(r);

	const char *names[3] = { "servfail.test", "malformed.test", "refused.test" };
	const char *want[3] = { "192.0.2.12", "192.0.2.13", "192.0.2.14" };
	for (int i = 0; i < 3; i++) {
		t0 = mx_clock_monotonic_ms();
		r = rh_ask(h, DNS_TYPE_A, names[i], 0);
		took = mx_clock_monotonic_ms() - t0;
		CHECK_INT_EQ(r->status, 0);
		addr_is(res(r), 0, want[i]);
		CHECK(took < 380); /* no waiting for a timeout */
		svc_request_free(r);
	}
	/* a late answer to an earlier try is as good as any */
	struct rts_rule *l1 = rts_add(&srv1, "lateok.test", 1, RTS_ANSWER, 300, "192.0.2.15");
	l1->delay_ms = 600;
	struct rts_rule *l2 = rts_add(&srv2, "lateok.test", 1, RTS_DROP, 300, NULL);
	t0 = mx_clock_monotonic_ms();
	r = rh_ask(h, DNS_TYPE_A, "lateok.test", 0);
	took = mx_clock_monotonic_ms() - t0;
	addr_is(res(r), 0, "192.0.2.15");
	CHECK(took >= 580 && took < 1150);
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(l1), 1);
	CHECK_INT_EQ(rts_queries(l2), 1);

	CHECK_INT_EQ(rts_queries(s1) + rts_queries(s2), 2);
	CHECK_INT_EQ(rts_queries(m1) + rts_queries(m2), 2);
	CHECK_INT_EQ(rts_queries(f1) + rts_queries(f2), 2);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.timeouts, 2);
	CHECK_INT_EQ(st.servfails, 2);
	CHECK_INT_EQ(st.malformed, 1);
	rh_stop(h);

	/* one server, one socket, two rounds: the retry goes out on the same socket and ID */
	struct rts_rule *again = rts_add(&srv1, "again.test", 1, RTS_ANSWER, 300, "192.0.2.16");
	again->drop_first = 1;
	params_for(&p, 1, 300, 2);
	p.udp_sockets_per_server = 1;
	start_with(&p);
	r = rh_ask(h, DNS_TYPE_A, "again.test", 0);
	addr_is(res(r), 0, "192.0.2.16");
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(again), 2);
	rh_stop(h);

	/* rotate: each query starts at the next server */
	struct rts_rule *r1 = rts_add(&srv1, "rot.test", 0, RTS_NXDOMAIN, 0, NULL);
	struct rts_rule *r2 = rts_add(&srv2, "rot.test", 0, RTS_NXDOMAIN, 0, NULL);
	params_for(&p, 2, 400, 2);
	p.rotate = true;
	start_with(&p);
	for (int i = 0; i < 4; i++)
		svc_request_free(rh_ask(h, DNS_TYPE_A, "rot.test", 0));
	CHECK_INT_EQ(rts_queries(r1), 2);
	CHECK_INT_EQ(rts_queries(r2), 2);
	rh_stop(h);
	servers_stop();
}

/* A closed port answers ICMP port unreachable: the next server at once. */
static void test_closed_port(void)
{
	servers_start();
	struct rts_rule *a2 = rts_add(&srv2, "closed.test", 1, RTS_ANSWER, 300, "192.0.2.21");
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(sin);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &sl);
	close(fd); /* nothing listens there now */
	struct svc_resolver_params p;
	params_for(&p, 2, 3000, 2);
	p.servers[0].port = ntohs(sin.sin_port);
	start_with(&p);
	uint64_t t0 = mx_clock_monotonic_ms();
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "closed.test", 0);
	CHECK(mx_clock_monotonic_ms() - t0 < 2500);
	addr_is(res(r), 0, "192.0.2.21");
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(a2), 1);
	rh_stop(h);

	/* only the closed port: TEMPFAIL at once, saying why */
	params_for(&p, 1, 3000, 2);
	p.servers[0].port = ntohs(sin.sin_port);
	start_with(&p);
	t0 = mx_clock_monotonic_ms();
	r = rh_ask(h, DNS_TYPE_A, "closed.test", 0);
	CHECK(mx_clock_monotonic_ms() - t0 < 2500);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK(strstr(res(r)->why, "connection refused") != NULL);
	svc_request_free(r);
	rh_stop(h);
	servers_stop();
}

static void test_all_fail(void)
{
	servers_start();
	struct rts_rule *s1 = rts_add(&srv1, "sf.test", 0, RTS_SERVFAIL, 0, NULL);
	struct rts_rule *s2 = rts_add(&srv2, "sf.test", 0, RTS_SERVFAIL, 0, NULL);
	struct rts_rule *d1 = rts_add(&srv1, "dead.test", 0, RTS_DROP, 0, NULL);
	struct rts_rule *d2 = rts_add(&srv2, "dead.test", 0, RTS_DROP, 0, NULL);
	struct svc_resolver_params p;
	params_for(&p, 2, 200, 2);
	start_with(&p);
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "sf.test", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK(strstr(res(r)->why, "SERVFAIL from 127.0.0.1:") != NULL);
	svc_request_free(r);
	/* each server asked once: a SERVFAIL is not asked again in the second round */
	CHECK_INT_EQ(rts_queries(s1), 1);
	CHECK_INT_EQ(rts_queries(s2), 1);
	/* not cached */
	svc_request_free(rh_ask(h, DNS_TYPE_A, "sf.test", 0));
	CHECK_INT_EQ(rts_queries(s1), 2);

	uint64_t t0 = mx_clock_monotonic_ms();
	r = rh_ask(h, DNS_TYPE_A, "dead.test", 0);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK_STR_EQ(res(r)->why, "timeout");
	CHECK(took >= 790); /* 2 rounds x 2 servers x 200 ms */
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(d1), 2);
	CHECK_INT_EQ(rts_queries(d2), 2);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.timeouts, 4);
	CHECK_INT_EQ(st.tempfails, 3);
	rh_stop(h);
	servers_stop();
}

static void test_deadline(void)
{
	servers_start();
	struct rts_rule *late = rts_add(&srv1, "late.test", 1, RTS_ANSWER, 300, "192.0.2.31");
	late->delay_ms = 900;
	struct svc_resolver_params p;
	params_for(&p, 1, 3000, 1);
	start_with(&p);
	uint64_t t0 = mx_clock_monotonic_ms();
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "late.test", 150);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK_INT_EQ(r->status, -ETIMEDOUT);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK_STR_EQ(res(r)->why, "timeout");
	CHECK(took >= 140 && took < 800);
	svc_request_free(r);
	/* a second request joins the query still on the wire, with a longer deadline */
	r = rh_ask(h, DNS_TYPE_A, "late.test", 3000);
	CHECK_INT_EQ(r->status, 0);
	addr_is(res(r), 0, "192.0.2.31");
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(late), 1);
	/* the answer filled the cache */
	r = rh_ask(h, DNS_TYPE_A, "late.test", 100);
	CHECK_INT_EQ(r->status, 0);
	svc_request_free(r);
	CHECK_INT_EQ(rts_queries(late), 1);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.expired, 1);
	CHECK_INT_EQ(st.merges, 1);
	CHECK_INT_EQ(st.hits, 1);
	/* a deadline already past: at once */
	struct svc_request *q = svc_request_new(SVC_DNS);
	q->u.dns.type = DNS_TYPE_A;
	snprintf(q->u.dns.name, sizeof(q->u.dns.name), "other.test");
	q->deadline_ms = 1;
	CHECK_INT_EQ(svc_submit(h->c, q), 0);
	rh_flush(h);
	r = rh_next(h, 2000);
	CHECK(r == q);
	CHECK_INT_EQ(r->status, -ETIMEDOUT);
	svc_request_free(r);
	rh_stop(h);
	servers_stop();
}

static bool has_upper(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return true;
	return false;
}

static void test_spoof_and_0x20(void)
{
	servers_start();
	struct rts_rule *sp = rts_add(&srv1, "spoofed.example.test", 1, RTS_ANSWER, 300,
				      "192.0.2.41");
	sp->spoof_first = true;
	struct rts_rule *names[8];
	char name[128];
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "abcdefghijklmnopqrstuvwxyz%d.example.test", i);
		names[i] = rts_add(&srv1, name, 1, RTS_ANSWER, 300, "192.0.2.42");
	}
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 1);
	start_with(&p);
	struct svc_request *r = rh_ask(h, DNS_TYPE_A, "spoofed.example.test", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->nrecords, 1);
	addr_is(res(r), 0, "192.0.2.41"); /* never 6.6.6.6 */
	svc_request_free(r);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.mismatched, 3);
	CHECK_INT_EQ(st.answers, 1);

	unsigned mixed = 0;
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "abcdefghijklmnopqrstuvwxyz%d.example.test", i);
		r = rh_ask(h, DNS_TYPE_A, name, 0);
		addr_is(res(r), 0, "192.0.2.42");
		svc_request_free(r);
		char got[256];
		rts_last_qname(&srv1, names[i], got, sizeof(got));
		CHECK(strcasecmp(got, name) == 0);
		mixed += has_upper(got);
	}
	CHECK_INT_EQ(mixed, 8); /* 37 random letters each: all lower case has p = 2^-37 */
	rh_stop(h);
	servers_stop();
}

static void test_tcp(void)
{
	servers_start();
	struct rts_rule *tc = rts_add(&srv1, "tc.test", 16, RTS_TRUNCATE, 300,
				      "a long reason for a listing");
	struct rts_rule *big = rts_add(&srv1, "big.test", 1, RTS_ANSWER, 300, NULL);
	big->generate_a = 150; /* about 2,400 octets: over 1232 */
	struct rts_rule *t1 = rts_add(&srv1, "tcpdead.test", 1, RTS_TRUNCATE, 300, NULL);
	t1->tcp_action = RTS_DROP;
	struct rts_rule *t2 = rts_add(&srv2, "tcpdead.test", 1, RTS_ANSWER, 300, "192.0.2.51");
	struct svc_resolver_params p;
	params_for(&p, 2, 2000, 1);
	start_with(&p);
	struct svc_request *r = rh_ask(h, DNS_TYPE_TXT, "tc.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_STR_EQ(dns_result_txt(res(r), &res(r)->records[0]), "a long reason for a listing");
	svc_request_free(r);
	CHECK_INT_EQ(atomic_load(&tc->udp_queries), 1);
	CHECK_INT_EQ(atomic_load(&tc->tcp_queries), 1);

	r = rh_ask(h, DNS_TYPE_A, "big.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_INT_EQ(res(r)->nrecords, 100); /* DNS_RECORDS_MAX kept, the rest dropped */
	addr_is(res(r), 99, "10.0.0.99");
	svc_request_free(r);
	CHECK_INT_EQ(atomic_load(&big->tcp_queries), 1);

	/* TCP closed without an answer: that server failed, the next answers */
	r = rh_ask(h, DNS_TYPE_A, "tcpdead.test", 0);
	addr_is(res(r), 0, "192.0.2.51");
	svc_request_free(r);
	CHECK_INT_EQ(atomic_load(&t1->tcp_queries), 1);
	CHECK_INT_EQ(rts_queries(t2), 1);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.tcp, 3);
	CHECK_INT_EQ(st.tcp_open, 0);
	rh_stop(h);

	/* without EDNS the 512-octet limit applies; one TCP connection at a time for many */
	params_for(&p, 1, 3000, 1);
	p.edns_udp_size = 0;
	p.max_tcp = 1;
	start_with(&p);
	char name[64];
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "many%d.test", i);
		struct rts_rule *m = rts_add(&srv1, name, 1, RTS_ANSWER, 300, NULL);
		m->generate_a = 40; /* 640 octets of records */
		CHECK(rh_submit(h, DNS_TYPE_A, name, 0) != NULL);
	}
	rh_flush(h);
	CHECK_INT_EQ(rh_wait(h, h->taken + 10, 10000), h->taken + 10);
	for (int i = 0; i < 10; i++) {
		r = rh_next(h, 0);
		CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
		CHECK_INT_EQ(res(r)->nrecords, 40);
		svc_request_free(r);
	}
	rh_stop(h);
	servers_stop();
}

/* Source ports: a pool of sockets, each replaced after its uses by one with a fresh port. */
static void test_source_ports(void)
{
	servers_start();
	rts_add(&srv1, "*.ports.test", 1, RTS_ANSWER, 300, "192.0.2.71");
	rts_add(&srv2, "*.ports.test", 1, RTS_ANSWER, 300, "192.0.2.71");
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 1);
	start_with(&p);
	char name[64];
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "a%d.ports.test", i);
		struct svc_request *r = rh_ask(h, DNS_TYPE_A, name, 0);
		addr_is(res(r), 0, "192.0.2.71");
		svc_request_free(r);
	}
	CHECK_INT_EQ(rts_source_ports(&srv1), 8); /* the pool, round robin */
	rh_stop(h);

	/* one socket, one use each: a new port every query */
	params_for(&p, 2, 2000, 1);
	p.servers[0].port = srv2.port;
	p.udp_sockets_per_server = 1;
	p.udp_socket_uses = 1;
	start_with(&p);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "b%d.ports.test", i);
		struct svc_request *r = rh_ask(h, DNS_TYPE_A, name, 0);
		addr_is(res(r), 0, "192.0.2.71");
		svc_request_free(r);
	}
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.queries, 40);
	/* ports are the kernel's random choice: a repeat now and then is possible */
	CHECK(rts_source_ports(&srv2) >= 35);
	rh_stop(h);
	servers_stop();
}

static void test_busy(void)
{
	servers_start();
	rts_add(&srv1, "b1.test", 0, RTS_DROP, 0, NULL);
	rts_add(&srv1, "b2.test", 0, RTS_DROP, 0, NULL);
	rts_add(&srv1, "b3.test", 0, RTS_DROP, 0, NULL);
	struct svc_resolver_params p;
	params_for(&p, 1, 300, 1);
	p.max_in_flight = 2;
	start_with(&p);
	rh_submit(h, DNS_TYPE_A, "b1.test", 0);
	rh_submit(h, DNS_TYPE_A, "b2.test", 0);
	struct svc_request *third = rh_submit(h, DNS_TYPE_A, "b3.test", 0);
	struct svc_request *again = rh_submit(h, DNS_TYPE_A, "b1.test", 0); /* merges */
	rh_flush(h);
	struct svc_request *r = rh_next(h, 2000);
	CHECK(r == third);
	CHECK_INT_EQ(r->status, -EAGAIN);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	svc_request_free(r);
	CHECK_INT_EQ(rh_wait(h, h->taken + 3, 3000), h->taken + 3);
	bool seen = false;
	for (int i = 0; i < 3; i++) {
		r = rh_next(h, 0);
		seen |= r == again;
		CHECK_INT_EQ(r->status, 0);
		CHECK_STR_EQ(res(r)->why, "timeout");
		svc_request_free(r);
	}
	CHECK(seen);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.busy, 1);
	rh_stop(h);
	servers_stop();
}

static void test_stop_in_flight(void)
{
	servers_start();
	char name[64];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "hang%d.test", i);
		rts_add(&srv1, name, 0, RTS_DROP, 0, NULL);
	}
	struct svc_resolver_params p;
	params_for(&p, 1, 10000, 2);
	start_with(&p);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "hang%d.test", i);
		for (int k = 0; k < 2; k++) /* merged waiters too */
			CHECK(rh_submit(h, DNS_TYPE_A, name, 60000) != NULL);
	}
	rh_flush(h);
	usleep(200 * 1000);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.in_flight, 50);
	/* queued but not yet taken: never flushed, so no wake-up */
	for (int i = 0; i < 5; i++)
		CHECK(rh_submit(h, DNS_TYPE_A, "queued.test", 0) != NULL);
	svc_set_stop(h->set);
	svc_client_poll(h->c, rh_collect, h);
	CHECK_INT_EQ(h->nanswers, 105);
	for (unsigned i = 0; i < h->nanswers; i++) {
		CHECK_INT_EQ(h->answers[i]->status, -ECANCELED);
		CHECK_INT_EQ(res(h->answers[i])->status, DNS_RESULT_TEMPFAIL);
		svc_request_free(h->answers[i]);
	}
	h->taken = h->nanswers;
	CHECK_INT_EQ(svc_client_in_flight(h->c), 0);
	rh_stop(h);
	servers_stop();
}

static void test_statistics_line(void)
{
	servers_start();
	rts_add(&srv1, "s.test", 1, RTS_ANSWER, 300, "192.0.2.61");
	struct svc_resolver_params p;
	params_for(&p, 1, 2000, 1);
	start_with(&p);
	svc_request_free(rh_ask(h, DNS_TYPE_A, "s.test", 0));
	svc_request_free(rh_ask(h, DNS_TYPE_A, "s.test", 0));
	char path[] = "/tmp/test_resolver_log.XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	CHECK_INT_EQ(mx_log_open(path, "host", "test"), 0);
	svc_set_log_statistics(h->set, "test");
	mx_log_close();
	char buf[4096] = "";
	fd = open(path, O_RDONLY);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(strstr(buf, "resolver statistics (test): requests=2 hits=1 misses=1 merges=0 "
			  "queries=1 answers=1 ") != NULL);
	CHECK(strstr(buf, " entries=1 ") != NULL);
	struct svc_resolver_stats st;
	rh_stats(h, &st);
	char small[16];
	int len = svc_resolver_stats_format(&st, small, sizeof(small));
	CHECK(len > 100);
	CHECK_INT_EQ(strlen(small), sizeof(small) - 1);
	rh_stop(h);
	servers_stop();
}

/* Two workers at once over names that answer, answer late, fail, truncate or never
 * answer, with short deadlines, tiny socket pools replaced after 3 uses, 2 TCP slots and
 * a small cache: every request comes back exactly once to its worker (ASan checks the
 * lifetimes, and that nothing leaks). */
#define STRESS_PER_WORKER 3000

struct stress_worker {
	struct svc_set *set;
	unsigned index;
	unsigned got, wrong, timeouts;
	unsigned char seen[STRESS_PER_WORKER];
};

static void stress_answer(void *arg, struct svc_request *r)
{
	struct stress_worker *w = arg;
	unsigned char *slot = r->owner;
	if (r->worker != w->index || slot < w->seen || slot >= w->seen + STRESS_PER_WORKER ||
	    *slot != 1 || !r->u.dns.result)
		w->wrong++;
	else
		*slot = 2;
	w->timeouts += r->status == -ETIMEDOUT;
	w->got++;
	svc_request_free(r);
}

static void *stress_main(void *arg)
{
	struct stress_worker *w = arg;
	int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct svc_client *c = svc_client_new(w->set, w->index, wake);
	static const char *const kinds[] = { "ok", "late", "sf", "tc", "drop", "nx" };
	unsigned sent = 0, seed = 12345 + w->index;
	while (w->got < STRESS_PER_WORKER) {
		for (int k = 0; k < 50 && sent < STRESS_PER_WORKER; k++) {
			seed = seed * 1103515245u + 12345u;
			struct svc_request *r = svc_request_new(SVC_DNS);
			r->u.dns.type = DNS_TYPE_A;
			snprintf(r->u.dns.name, sizeof(r->u.dns.name), "n%u.%s.stress.test",
				 (seed >> 16) % 40, kinds[(seed >> 8) % 6]);
			r->deadline_ms = mx_clock_monotonic_ms() + 20 + (seed >> 4) % 200;
			r->owner = &w->seen[sent];
			w->seen[sent] = 1;
			if (svc_submit(c, r) != 0) {
				w->seen[sent] = 0;
				svc_request_free(r);
				break;
			}
			sent++;
		}
		svc_client_flush(c);
		if (!svc_client_pending(c)) {
			struct pollfd pf = { .fd = wake, .events = POLLIN };
			poll(&pf, 1, 20);
			uint64_t v;
			ssize_t n = read(wake, &v, sizeof(v));
			(void)n;
		}
		svc_client_poll(c, stress_answer, w);
	}
	svc_client_free(c);
	close(wake);
	return NULL;
}

static void test_stress(void)
{
	servers_start();
	struct rts_server *s[2] = { &srv1, &srv2 };
	for (int i = 0; i < 2; i++) {
		rts_add(s[i], "*.ok.stress.test", 1, RTS_ANSWER, 1, "192.0.2.81");
		struct rts_rule *late = rts_add(s[i], "*.late.stress.test", 1, RTS_ANSWER, 1,
						"192.0.2.82");
		late->delay_ms = 60;
		rts_add(s[i], "*.sf.stress.test", 1, RTS_SERVFAIL, 0, NULL);
		struct rts_rule *tc = rts_add(s[i], "*.tc.stress.test", 1, RTS_ANSWER, 1, NULL);
		tc->generate_a = 100;
		rts_add(s[i], "*.drop.stress.test", 1, RTS_DROP, 0, NULL);
		rts_add(s[i], "*.nx.stress.test", 1, RTS_NXDOMAIN, 1, NULL);
	}
	struct svc_resolver_params p;
	params_for(&p, 2, 50, 2);
	p.udp_sockets_per_server = 2;
	p.udp_socket_uses = 3;
	p.max_tcp = 2;
	p.cache_max_entries = 50;
	p.max_in_flight = 100;
	p.rotate = true;
	const void *handle = NULL;
	p.handle = &handle;
	struct svc_set *set;
	char err[256];
	struct svc_set_params sp = { .workers = 2, .ops = { [SVC_DNS] = &svc_resolver_ops },
				     .params = { [SVC_DNS] = &p } };
	CHECK_INT_EQ(svc_set_start(&set, &sp, err, sizeof(err)), 0);
	struct stress_worker *w = calloc(2, sizeof(*w));
	pthread_t t[2];
	for (unsigned i = 0; i < 2; i++) {
		w[i].set = set;
		w[i].index = i;
		pthread_create(&t[i], NULL, stress_main, &w[i]);
	}
	unsigned timeouts = 0;
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT_EQ(w[i].got, STRESS_PER_WORKER);
		CHECK_INT_EQ(w[i].wrong, 0);
		unsigned missing = 0;
		for (unsigned k = 0; k < STRESS_PER_WORKER; k++)
			missing += w[i].seen[k] != 2;
		CHECK_INT_EQ(missing, 0);
		timeouts += w[i].timeouts;
	}
	struct svc_resolver_stats st;
	svc_resolver_statistics(handle, &st);
	CHECK_INT_EQ(st.requests, 2 * STRESS_PER_WORKER);
	CHECK(st.hits > 0 && st.merges > 0 && st.tcp > 0 && st.servfails > 0);
	CHECK(st.timeouts > 0 && timeouts > 0);
	CHECK(st.entries <= 50);
	char line[1024];
	svc_resolver_stats_format(&st, line, sizeof(line));
	fprintf(stderr, "stress: %s\n", line);
	svc_set_free(set);
	free(w);
	servers_stop();
}

/* Refusals at start: bad bounds, and an unreadable resolv.conf. */
static void test_start_errors(void)
{
	struct svc_resolver_params p;
	svc_resolver_params_default(&p);
	p.nservers = 1;
	mx_inet_parse("127.0.0.1", &p.servers[0].addr);
	p.servers[0].port = 53;
	p.edns_udp_size = 100;
	struct svc_set *set = NULL;
	char err[256] = "";
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_DNS] = &svc_resolver_ops },
				     .params = { [SVC_DNS] = &p } };
	CHECK_INT_EQ(svc_set_start(&set, &sp, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "EDNS UDP size 100") != NULL);
	CHECK(set == NULL);
	p.edns_udp_size = 1232;
	p.nservers = 0;
	p.resolv_conf = "/proc/self/mem/nope";
	CHECK(svc_set_start(&set, &sp, err, sizeof(err)) < 0);
	CHECK(strstr(err, "/proc/self/mem/nope") != NULL);
}

/* ---- internals ---- */

static void test_siphash(void)
{
	/* the SipHash paper's appendix A: key 00..0f, message 00..0e */
	uint8_t key[16], msg[15];
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 15; i++)
		msg[i] = (uint8_t)i;
	CHECK(svc_resolver_siphash(key, msg, 15) == 0xa129ca6149be45e5ULL);
	/* the reference implementation's first vector: the empty message */
	CHECK(svc_resolver_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ULL);
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_heap(void)
{
	enum { N = 2000 };
	struct svc_resolver_heap heap = { 0 };
	static struct svc_resolver_timer t[N];
	for (int i = 0; i < N; i++)
		svc_resolver_timer_init(&t[i], SVC_RESOLVER_TIMER_TRY);
	for (int round = 0; round < 20000; round++) {
		struct svc_resolver_timer *x = &t[rng() % N];
		if (rng() % 3)
			CHECK_INT_EQ(svc_resolver_heap_arm(&heap, x, rng() % 100000), 0);
		else
			svc_resolver_heap_disarm(&heap, x);
	}
	uint64_t last = 0;
	size_t armed = 0;
	for (int i = 0; i < N; i++)
		armed += t[i].pos != SIZE_MAX;
	CHECK_INT_EQ(heap.n, armed);
	struct svc_resolver_timer *m;
	while ((m = svc_resolver_heap_min(&heap))) {
		CHECK(m->when >= last);
		last = m->when;
		svc_resolver_heap_disarm(&heap, m);
		CHECK(m->pos == SIZE_MAX);
	}
	svc_resolver_heap_free(&heap);
}

struct item {
	struct svc_resolver_hnode node;
	uint64_t key;
	bool in;
};

static void test_hmap(void)
{
	enum { N = 5000 };
	static struct item it[N];
	struct svc_resolver_hmap m;
	CHECK_INT_EQ(svc_resolver_hmap_init(&m, 16, 1u << 20), 0);
	uint8_t key[16] = { 1 };
	for (int round = 0; round < 50000; round++) {
		struct item *x = &it[rng() % N];
		x->key = (uint64_t)(x - it);
		uint64_t hash = svc_resolver_siphash(key, &x->key, sizeof(x->key)) & 0xfff;
		if (!x->in) {
			svc_resolver_hmap_insert(&m, &x->node, hash);
			x->in = true;
		} else if (rng() % 2) {
			svc_resolver_hmap_remove(&m, &x->node);
			x->in = false;
		}
	}
	size_t in = 0;
	for (int i = 0; i < N; i++) {
		struct item *x = &it[i];
		if (!x->in)
			continue;
		in++;
		uint64_t hash = svc_resolver_siphash(key, &x->key, sizeof(x->key)) & 0xfff;
		bool found = false;
		for (struct svc_resolver_hnode *n = svc_resolver_hmap_first(&m, hash); n;
		     n = svc_resolver_hmap_next(n, hash))
			found |= n == &x->node;
		CHECK(found);
	}
	CHECK_INT_EQ(m.count, in);
	CHECK(m.mask + 1 >= in);
	svc_resolver_hmap_free(&m);
}

int main(void)
{
	h = calloc(1, sizeof(*h));
	RUN_TEST(test_answers);
	RUN_TEST(test_cache);
	RUN_TEST(test_negative_cache);
	RUN_TEST(test_lru);
	RUN_TEST(test_merge);
	RUN_TEST(test_failover);
	RUN_TEST(test_closed_port);
	RUN_TEST(test_all_fail);
	RUN_TEST(test_deadline);
	RUN_TEST(test_spoof_and_0x20);
	RUN_TEST(test_tcp);
	RUN_TEST(test_source_ports);
	RUN_TEST(test_busy);
	RUN_TEST(test_stop_in_flight);
	RUN_TEST(test_statistics_line);
	RUN_TEST(test_stress);
	RUN_TEST(test_start_errors);
	RUN_TEST(test_siphash);
	RUN_TEST(test_heap);
	RUN_TEST(test_hmap);
	free(h);
	return TEST_RESULT();
}
