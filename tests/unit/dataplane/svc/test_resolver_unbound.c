/* The resolver service against a real DNS server: unbound (Debian package `unbound`) with
 * local zones on 127.0.0.1 at a free port. A, AAAA, MX, TXT, PTR, NXDOMAIN with its SOA's
 * negative TTL, NODATA, a DNSBL listing, an answer too big for 512 octets (TCP), cache
 * hits, the in-flight merge, and TEMPFAIL once unbound is gone. Fails (never skips) when
 * unbound is not installed, naming the package. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "resolver_harness.h"
#include "resolver_unbound.h"
#include "testing.h"

static struct rh *h;
static struct ru ub;

static const char zones_head[] =
	"  local-zone: \"example.test.\" static\n"
	"  local-data: \"example.test. 300 IN SOA ns.example.test. hostmaster.example.test. "
	"1 3600 600 86400 45\"\n"
	"  local-data: \"example.test. 300 IN MX 10 mx.example.test.\"\n"
	"  local-data: \"example.test. 300 IN MX 20 mx2.example.test.\"\n"
	"  local-data: 'example.test. 300 IN TXT \"v=spf1 -all\"'\n"
	"  local-data: \"mx.example.test. 300 IN A 192.0.2.1\"\n"
	"  local-data: \"mx.example.test. 300 IN AAAA 2001:db8::1\"\n"
	"  local-zone: \"2.0.192.in-addr.arpa.\" static\n"
	"  local-data-ptr: \"192.0.2.1 mx.example.test.\"\n"
	"  local-zone: \"zen.test.\" static\n"
	"  local-data: \"zen.test. 300 IN SOA ns.zen.test. hostmaster.zen.test. 1 3600 600 "
	"86400 10\"\n"
	"  local-data: \"2.0.0.127.zen.test. 60 IN A 127.0.0.2\"\n"
	"  local-data: '2.0.0.127.zen.test. 60 IN TXT \"listed at zen.test\"'\n";

static const struct dns_result *res(const struct svc_request *r)
{
	if (!r || !r->u.dns.result) {
		fprintf(stderr, "no answer\n");
		abort();
	}
	return r->u.dns.result;
}

static void addr_is(const struct dns_result *r, unsigned i, const char *want)
{
	char got[64] = "";
	if (i < r->nrecords)
		mx_inet_format(&r->records[i].addr, got, sizeof(got));
	CHECK_STR_EQ(got, want);
}

static void test_unbound(void)
{
	/* 60 addresses for big.example.test: about 1,000 octets, over 512 */
	size_t cap = sizeof(zones_head) + 60 * 80;
	char *zones = malloc(cap);
	size_t used = (size_t)snprintf(zones, cap, "%s", zones_head);
	for (int i = 0; i < 60; i++)
		used += (size_t)snprintf(zones + used, cap - used,
					 "  local-data: \"big.example.test. 300 IN A 10.0.0.%d\"\n",
					 i + 1);
	int rc = ru_start(&ub, zones);
	free(zones);
	if (rc == -ENOENT) {
		fprintf(stderr, "FAIL: %s is missing: install the Debian package `unbound` "
				"(deploy/install-deps.sh)\n", RU_UNBOUND);
		CHECK(!"the Debian package unbound is installed");
		return;
	}
	CHECK_INT_EQ(rc, 0);

	struct svc_resolver_params p;
	svc_resolver_params_default(&p);
	p.nservers = 1;
	mx_inet_parse("127.0.0.1", &p.servers[0].addr);
	p.servers[0].port = ub.port;
	p.timeout_ms = 1000;
	p.attempts = 1;
	p.edns_udp_size = 512;
	CHECK_INT_EQ(rh_start(h, &p), 0);

	/* wait for unbound to listen (refused at once until then) */
	struct svc_request *r = NULL;
	for (int i = 0; i < 100; i++) {
		r = rh_ask(h, DNS_TYPE_A, "mx.example.test", 0);
		if (res(r)->status != DNS_RESULT_TEMPFAIL || !ru_running(&ub))
			break;
		svc_request_free(r);
		r = NULL;
		usleep(100 * 1000);
	}
	if (!r || res(r)->status != DNS_RESULT_OK) {
		ru_dump(&ub);
		CHECK(!"unbound answers");
		svc_request_free(r);
		rh_stop(h);
		ru_stop(&ub);
		return;
	}
	addr_is(res(r), 0, "192.0.2.1");
	CHECK_INT_EQ(res(r)->ttl, 300);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_AAAA, "mx.example.test", 0);
	addr_is(res(r), 0, "2001:db8::1");
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_MX, "Example.Test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_INT_EQ(res(r)->nrecords, 2);
	unsigned pref_sum = 0;
	for (unsigned i = 0; i < res(r)->nrecords; i++)
		pref_sum += res(r)->records[i].pref;
	CHECK_INT_EQ(pref_sum, 30);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_TXT, "example.test", 0);
	CHECK_STR_EQ(dns_result_txt(res(r), &res(r)->records[0]), "v=spf1 -all");
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_PTR, "1.2.0.192.in-addr.arpa", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	if (res(r)->nrecords)
		CHECK_STR_EQ(dns_result_name(res(r), &res(r)->records[0]), "mx.example.test");
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_A, "nope.example.test", 0);
	CHECK_INT_EQ(r->status, 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
	CHECK_INT_EQ(res(r)->ttl, 45); /* RFC 2308 5: min(SOA TTL 300, MINIMUM 45) */
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_TXT, "mx.example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_NODATA);
	svc_request_free(r);

	r = rh_ask(h, DNS_TYPE_A, "2.0.0.127.zen.test", 0);
	addr_is(res(r), 0, "127.0.0.2");
	svc_request_free(r);
	r = rh_ask(h, DNS_TYPE_TXT, "2.0.0.127.zen.test", 0);
	CHECK_STR_EQ(dns_result_txt(res(r), &res(r)->records[0]), "listed at zen.test");
	svc_request_free(r);
	r = rh_ask(h, DNS_TYPE_A, "3.0.0.127.zen.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
	CHECK_INT_EQ(res(r)->ttl, 10);
	svc_request_free(r);

	/* over 512 octets: truncated, then TCP */
	r = rh_ask(h, DNS_TYPE_A, "big.example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_OK);
	CHECK_INT_EQ(res(r)->nrecords, 60);
	svc_request_free(r);

	struct svc_resolver_stats st;
	rh_stats(h, &st);
	CHECK_INT_EQ(st.tcp, 1);
	uint64_t queries = st.queries;

	/* cache hits: no query */
	for (int i = 0; i < 10; i++)
		svc_request_free(rh_ask(h, DNS_TYPE_MX, "example.test", 0));
	/* the merge: 50 at once, one query */
	for (int i = 0; i < 50; i++)
		CHECK(rh_submit(h, DNS_TYPE_A, "mx2.example.test", 0) != NULL);
	rh_flush(h);
	CHECK_INT_EQ(rh_wait(h, h->taken + 50, 5000), h->taken + 50);
	for (int i = 0; i < 50; i++) {
		r = rh_next(h, 0);
		CHECK_INT_EQ(res(r)->status, DNS_RESULT_NXDOMAIN);
		svc_request_free(r);
	}
	rh_stats(h, &st);
	CHECK_INT_EQ(st.queries, queries + 1);
	CHECK_INT_EQ(st.hits, 10);
	CHECK_INT_EQ(st.merges, 49);

	/* unbound gone: TEMPFAIL, not a hang */
	ru_stop(&ub);
	uint64_t t0 = mx_clock_monotonic_ms();
	r = rh_ask(h, DNS_TYPE_A, "gone.example.test", 0);
	CHECK_INT_EQ(res(r)->status, DNS_RESULT_TEMPFAIL);
	CHECK(mx_clock_monotonic_ms() - t0 < 1500);
	svc_request_free(r);
	rh_stop(h);
}

int main(void)
{
	h = calloc(1, sizeof(*h));
	RUN_TEST(test_unbound);
	ru_stop(&ub);
	free(h);
	return TEST_RESULT();
}
