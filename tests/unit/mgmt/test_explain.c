/* `mxgate explain`'s lookups and output (mgmt/explain.h), without the network: the stub
 * resolver against scripted DNS servers on 127.0.0.1 (tests/unit/dataplane/svc/
 * resolver_test_server.h): answers, NXDOMAIN, NODATA, the run's cache, SERVFAIL and
 * REFUSED with failover, a malformed answer, a closed port, timeouts, a late answer taken
 * during a later try, the question's own bound, truncation to TCP, spoofed answers,
 * rotate, an invalid name; its settings from mxgate_dns_servers and resolv.conf; the
 * client's name as at connect (confirmed, forged, none, temporary failure, a numeric PTR
 * name, IPv6); the policy client against a scripted policy server (policy_server.h) on
 * TCP and a UNIX socket: a reply, timeouts and retries, refused connections, replies
 * without action, cut short, oversized, not UTF-8, a relative unix: path; the formatting
 * of answers and exchanges (escaping included); and a whole `mxgate explain` run whose
 * lookups must be printed under the restriction that asked. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mgmt/explain.h"
#include "mxgate/clock.h"
#include "policy_server.h"
#include "resolver_test_server.h"
#include "testing.h"

#define T_A 1
#define T_PTR 12
#define T_MX 15
#define T_TXT 16
#define T_AAAA 28

static struct rts_server srv1, srv2;

/* Options for srv1 (and srv2 when two). */
static void opts_for(struct mx_explain_dns_opts *o, unsigned nservers, uint32_t timeout_ms,
		     unsigned attempts)
{
	char list[64];
	if (nservers == 2)
		snprintf(list, sizeof(list), "127.0.0.1:%u 127.0.0.1:%u", srv1.port, srv2.port);
	else
		snprintf(list, sizeof(list), "127.0.0.1:%u", srv1.port);
	char err[128];
	CHECK_INT_EQ(mx_explain_dns_opts_init(o, list, NULL, err, sizeof(err)), 0);
	o->timeout_ms = timeout_ms;
	o->attempts = attempts;
}

static struct mx_explain_dns *resolver(unsigned nservers, uint32_t timeout_ms,
				       unsigned attempts)
{
	struct mx_explain_dns_opts o;
	opts_for(&o, nservers, timeout_ms, attempts);
	struct mx_explain_dns *d = NULL;
	CHECK_INT_EQ(mx_explain_dns_new(&o, &d), 0);
	return d;
}

static struct dns_result *ask(struct mx_explain_dns *d, enum dns_type type, const char *name,
			      bool *cached)
{
	bool c;
	struct dns_result *r = mx_explain_dns_lookup(d, type, name, cached ? cached : &c);
	CHECK(r != NULL);
	return r;
}

/* ---- settings ---- */

static void test_opts(void)
{
	struct mx_explain_dns_opts o;
	char err[256];
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "192.0.2.1, [2001:db8::1]:5353", NULL, err,
					      sizeof(err)),
		     0);
	CHECK_INT_EQ(o.nservers, 2);
	CHECK_INT_EQ(o.servers[0].port, 53);
	CHECK_INT_EQ(o.servers[1].port, 5353);
	CHECK_INT_EQ(o.timeout_ms, 5000);
	CHECK_INT_EQ(o.attempts, 2);
	CHECK(!o.rotate);
	CHECK_INT_EQ(o.edns_udp_size, 1232);
	CHECK_INT_EQ(o.question_timeout_ms, 60000);
	CHECK_STR_EQ(o.source, "mxgate_dns_servers");
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "not-an-address", NULL, err, sizeof(err)),
		     -EINVAL);

	char path[] = "/tmp/xpl-resolv-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	static const char conf[] = "# comment\nnameserver 127.0.0.1\nnameserver ::1\n"
				   "options timeout:1 attempts:3 rotate\n";
	CHECK_INT_EQ(write(fd, conf, sizeof(conf) - 1), (ssize_t)sizeof(conf) - 1);
	close(fd);
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "", path, err, sizeof(err)), 0);
	CHECK_INT_EQ(o.nservers, 2);
	CHECK_INT_EQ(o.timeout_ms, 1000);
	CHECK_INT_EQ(o.attempts, 3);
	CHECK(o.rotate);
	CHECK_STR_EQ(o.source, path);
	/* mxgate_dns_servers wins over resolv.conf, and keeps the defaults */
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "127.0.0.2", path, err, sizeof(err)), 0);
	CHECK_INT_EQ(o.nservers, 1);
	CHECK_INT_EQ(o.timeout_ms, 5000);
	CHECK(!o.rotate);
	unlink(path);
	/* no file: the local machine, as the libc */
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, NULL, path, err, sizeof(err)), 0);
	CHECK_INT_EQ(o.nservers, 1);
	CHECK_INT_EQ(o.servers[0].port, 53);
	CHECK(strstr(o.source, "no nameserver line") != NULL);

	struct mx_explain_dns *d = NULL;
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "127.0.0.1", NULL, err, sizeof(err)), 0);
	struct mx_explain_dns_opts bad = o;
	bad.nservers = 0;
	CHECK_INT_EQ(mx_explain_dns_new(&bad, &d), -EINVAL);
	bad = o;
	bad.timeout_ms = DNS_CONF_TIMEOUT_MAX_MS + 1;
	CHECK_INT_EQ(mx_explain_dns_new(&bad, &d), -EINVAL);
	bad = o;
	bad.attempts = DNS_CONF_ATTEMPTS_MAX + 1;
	CHECK_INT_EQ(mx_explain_dns_new(&bad, &d), -EINVAL);
	bad = o;
	bad.edns_udp_size = 100;
	CHECK_INT_EQ(mx_explain_dns_new(&bad, &d), -EINVAL);
	bad = o;
	bad.servers[0].port = 0;
	CHECK_INT_EQ(mx_explain_dns_new(&bad, &d), -EINVAL);
	CHECK(d == NULL);
}

/* ---- the resolver ---- */

static void test_answers(void)
{
	rts_add(&srv1, "a.xpl.test", T_A, RTS_ANSWER, 300, "192.0.2.1");
	struct rts_rule *two = rts_add(&srv1, "two.xpl.test", T_A, RTS_ANSWER, 60, "192.0.2.2");
	rts_value(&srv1, two, "192.0.2.3");
	rts_add(&srv1, "nx.xpl.test", 0, RTS_NXDOMAIN, 900, NULL);
	rts_add(&srv1, "nodata.xpl.test", T_MX, RTS_ANSWER, 120, NULL);
	rts_add(&srv1, "txt.xpl.test", T_TXT, RTS_ANSWER, 30, "listed \"here\"");
	struct mx_explain_dns *d = resolver(1, 1000, 2);
	bool cached;
	struct dns_result *r = ask(d, DNS_TYPE_A, "A.Xpl.Test.", &cached);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(r->nrecords, 1);
	CHECK_INT_EQ(r->ttl, 300);
	CHECK(!cached);
	dns_result_put(r);
	r = ask(d, DNS_TYPE_A, "two.xpl.test", NULL);
	CHECK_INT_EQ(r->nrecords, 2);
	dns_result_put(r);
	r = ask(d, DNS_TYPE_A, "nx.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_NXDOMAIN);
	CHECK_INT_EQ(r->ttl, 900);
	dns_result_put(r);
	r = ask(d, DNS_TYPE_MX, "nodata.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_NODATA);
	dns_result_put(r);
	r = ask(d, DNS_TYPE_TXT, "txt.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_STR_EQ(dns_result_txt(r, &r->records[0]), "listed \"here\"");
	dns_result_put(r);
	/* the run's cache: the same answer, nothing sent */
	struct mx_explain_dns_stats st, st2;
	mx_explain_dns_stats(d, &st);
	r = ask(d, DNS_TYPE_A, "a.xpl.test", &cached);
	CHECK(cached);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	dns_result_put(r);
	mx_explain_dns_stats(d, &st2);
	CHECK_INT_EQ(st2.udp_sent, st.udp_sent);
	CHECK_INT_EQ(st2.cache_hits, st.cache_hits + 1);
	CHECK_INT_EQ(st.udp_sent, 5);
	/* not a name: nothing asked */
	r = ask(d, DNS_TYPE_A, "bad..name", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	CHECK_STR_EQ(r->why, "not a valid DNS name");
	dns_result_put(r);
	mx_explain_dns_stats(d, &st);
	CHECK_INT_EQ(st.udp_sent, st2.udp_sent);
	mx_explain_dns_free(d);
}

static void test_failover(void)
{
	char why[96];
	struct rts_rule *sf = rts_add(&srv1, "sf.xpl.test", T_A, RTS_SERVFAIL, 0, NULL);
	struct rts_rule *ok = rts_add(&srv2, "sf.xpl.test", T_A, RTS_ANSWER, 10, "192.0.2.9");
	struct mx_explain_dns *d = resolver(2, 1000, 2);
	struct dns_result *r = ask(d, DNS_TYPE_A, "sf.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(rts_queries(sf), 1);
	CHECK_INT_EQ(rts_queries(ok), 1);
	dns_result_put(r);
	/* every server fails: the last failure says why; a failed server is not asked again */
	struct rts_rule *f1 = rts_add(&srv1, "allfail.xpl.test", T_A, RTS_SERVFAIL, 0, NULL);
	struct rts_rule *f2 = rts_add(&srv2, "allfail.xpl.test", T_A, RTS_REFUSED, 0, NULL);
	r = ask(d, DNS_TYPE_A, "allfail.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	snprintf(why, sizeof(why), "REFUSED from 127.0.0.1:%u", srv2.port);
	CHECK_STR_EQ(r->why, why);
	CHECK_INT_EQ(rts_queries(f1), 1);
	CHECK_INT_EQ(rts_queries(f2), 1);
	dns_result_put(r);
	/* the TEMPFAIL is kept for the run: asked once */
	r = ask(d, DNS_TYPE_A, "allfail.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	CHECK_INT_EQ(rts_queries(f1), 1);
	dns_result_put(r);
	/* a malformed answer fails that server */
	rts_add(&srv1, "bad.xpl.test", T_A, RTS_MALFORMED, 10, "192.0.2.1");
	mx_explain_dns_free(d);
	d = resolver(1, 1000, 2);
	r = ask(d, DNS_TYPE_A, "bad.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	snprintf(why, sizeof(why), "malformed answer from 127.0.0.1:%u", srv1.port);
	CHECK(strncmp(r->why, why, strlen(why)) == 0);
	dns_result_put(r);
	mx_explain_dns_free(d);

	/* a closed port: refused at once, not after the timeout */
	struct mx_explain_dns_opts o;
	char err[128];
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	CHECK_INT_EQ(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(s, (struct sockaddr *)&sin, &sl);
	close(s);
	char list[64];
	snprintf(list, sizeof(list), "127.0.0.1:%u", ntohs(sin.sin_port));
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, list, NULL, err, sizeof(err)), 0);
	o.timeout_ms = 3000;
	CHECK_INT_EQ(mx_explain_dns_new(&o, &d), 0);
	uint64_t t0 = mx_clock_monotonic_ms();
	r = ask(d, DNS_TYPE_A, "closed.xpl.test", NULL);
	CHECK(mx_clock_monotonic_ms() - t0 < 2000);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	snprintf(why, sizeof(why), "connection refused by 127.0.0.1:%u", ntohs(sin.sin_port));
	CHECK_STR_EQ(r->why, why);
	dns_result_put(r);
	mx_explain_dns_free(d);
}

static void test_timeouts(void)
{
	struct rts_rule *drop = rts_add(&srv1, "drop.xpl.test", T_A, RTS_DROP, 10, "192.0.2.1");
	struct mx_explain_dns *d = resolver(1, 200, 2);
	uint64_t t0 = mx_clock_monotonic_ms();
	struct dns_result *r = ask(d, DNS_TYPE_A, "drop.xpl.test", NULL);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	CHECK_STR_EQ(r->why, "timeout");
	CHECK_INT_EQ(rts_queries(drop), 2); /* 2 rounds of 1 server */
	CHECK(took >= 390 && took < 2000);
	dns_result_put(r);
	/* the first try lost, the second answered */
	struct rts_rule *once = rts_add(&srv1, "once.xpl.test", T_A, RTS_ANSWER, 10, "192.0.2.4");
	once->drop_first = 1;
	r = ask(d, DNS_TYPE_A, "once.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(rts_queries(once), 2);
	dns_result_put(r);
	mx_explain_dns_free(d);

	/* a late answer from the first server is taken while the second one's try waits */
	struct rts_rule *late = rts_add(&srv1, "late.xpl.test", T_A, RTS_ANSWER, 10, "192.0.2.5");
	late->delay_ms = 300;
	struct rts_rule *none = rts_add(&srv2, "late.xpl.test", T_A, RTS_DROP, 10, NULL);
	d = resolver(2, 200, 1);
	t0 = mx_clock_monotonic_ms();
	r = ask(d, DNS_TYPE_A, "late.xpl.test", NULL);
	took = mx_clock_monotonic_ms() - t0;
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(rts_queries(none), 1);
	CHECK(took >= 250 && took < 400);
	dns_result_put(r);
	mx_explain_dns_free(d);

	/* the question's own bound ends the tries */
	struct mx_explain_dns_opts o;
	opts_for(&o, 1, 200, 5);
	o.question_timeout_ms = 300;
	CHECK_INT_EQ(mx_explain_dns_new(&o, &d), 0);
	rts_add(&srv1, "drop3.xpl.test", T_A, RTS_DROP, 10, NULL);
	t0 = mx_clock_monotonic_ms();
	r = ask(d, DNS_TYPE_A, "drop3.xpl.test", NULL);
	took = mx_clock_monotonic_ms() - t0;
	CHECK_STR_EQ(r->why, "timeout");
	CHECK(took >= 290 && took < 600);
	dns_result_put(r);
	mx_explain_dns_free(d);
}

static void test_tcp_spoof_rotate(void)
{
	struct rts_rule *big = rts_add(&srv1, "big.xpl.test", T_A, RTS_TRUNCATE, 10, NULL);
	big->generate_a = 200;
	struct mx_explain_dns *d = resolver(1, 1000, 2);
	struct dns_result *r = ask(d, DNS_TYPE_A, "big.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(r->nrecords, DNS_RECORDS_MAX); /* 200 sent over TCP; the codec keeps 100 */
	struct mx_explain_dns_stats st;
	mx_explain_dns_stats(d, &st);
	CHECK_INT_EQ(st.tcp_connects, 1);
	dns_result_put(r);
	/* TCP that fails: that server fails */
	struct rts_rule *tbad = rts_add(&srv1, "tbad.xpl.test", T_A, RTS_TRUNCATE, 10, NULL);
	tbad->tcp_action = RTS_DROP;
	r = ask(d, DNS_TYPE_A, "tbad.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_TEMPFAIL);
	CHECK(strncmp(r->why, "TCP to 127.0.0.1:", 17) == 0);
	dns_result_put(r);

	/* spoofed answers (another ID, the wrong case, another name) are dropped */
	struct rts_rule *sp = rts_add(&srv1, "spoofed.example.xpl.test", T_A, RTS_ANSWER, 10,
				      "192.0.2.77");
	sp->spoof_first = true;
	mx_explain_dns_stats(d, &st);
	unsigned before = st.mismatched;
	r = ask(d, DNS_TYPE_A, "spoofed.example.xpl.test", NULL);
	CHECK_INT_EQ(r->status, DNS_RESULT_OK);
	CHECK_INT_EQ(r->nrecords, 1);
	CHECK_INT_EQ(r->records[0].addr.bytes[3], 77);
	dns_result_put(r);
	mx_explain_dns_stats(d, &st);
	CHECK(st.mismatched >= before + 2); /* the ID and the case at least (the name may
					       match the 0x20 pattern only by chance) */
	char qn[256];
	rts_last_qname(&srv1, sp, qn, sizeof(qn));
	CHECK(strcasecmp(qn, "spoofed.example.xpl.test") == 0);
	mx_explain_dns_free(d);

	/* rotate: each question starts at the next server */
	struct rts_rule *r1 = rts_add(&srv1, "*.rot.xpl.test", T_A, RTS_ANSWER, 10, "192.0.2.1");
	struct rts_rule *r2 = rts_add(&srv2, "*.rot.xpl.test", T_A, RTS_ANSWER, 10, "192.0.2.2");
	struct mx_explain_dns_opts o;
	opts_for(&o, 2, 1000, 1);
	o.rotate = true;
	CHECK_INT_EQ(mx_explain_dns_new(&o, &d), 0);
	for (int i = 0; i < 4; i++) {
		char name[64];
		snprintf(name, sizeof(name), "q%d.rot.xpl.test", i);
		dns_result_put(ask(d, DNS_TYPE_A, name, NULL));
	}
	CHECK_INT_EQ(rts_queries(r1), 2);
	CHECK_INT_EQ(rts_queries(r2), 2);
	mx_explain_dns_free(d);
}

/* ---- the client's name ---- */

static void test_peer(void)
{
	rts_add(&srv1, "2.2.0.192.in-addr.arpa", T_PTR, RTS_ANSWER, 60, "good.xpl.test");
	rts_add(&srv1, "good.xpl.test", T_A, RTS_ANSWER, 60, "192.0.2.2");
	rts_add(&srv1, "3.2.0.192.in-addr.arpa", T_PTR, RTS_ANSWER, 60, "forged.xpl.test");
	rts_add(&srv1, "forged.xpl.test", T_A, RTS_ANSWER, 60, "192.0.2.99");
	rts_add(&srv1, "4.2.0.192.in-addr.arpa", T_PTR, RTS_NXDOMAIN, 60, NULL);
	rts_add(&srv1, "5.2.0.192.in-addr.arpa", T_PTR, RTS_SERVFAIL, 0, NULL);
	rts_add(&srv1, "6.2.0.192.in-addr.arpa", T_PTR, RTS_ANSWER, 60, "tmp.xpl.test");
	rts_add(&srv1, "tmp.xpl.test", T_A, RTS_SERVFAIL, 0, NULL);
	rts_add(&srv1, "7.2.0.192.in-addr.arpa", T_PTR, RTS_ANSWER, 60, "192.0.2.7");
	rts_add(&srv1, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
		T_PTR, RTS_ANSWER, 60, "six.xpl.test");
	rts_add(&srv1, "six.xpl.test", T_AAAA, RTS_ANSWER, 60, "2001:db8::1");
	struct mx_explain_dns *d = resolver(1, 500, 1);
	struct mx_explain_peer p;
	struct mx_inet_addr a;

	mx_inet_parse("192.0.2.2", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_STR_EQ(p.name, "good.xpl.test");
	CHECK_STR_EQ(p.reverse_name, "good.xpl.test");
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_OK);
	CHECK_INT_EQ(p.reverse_name_status, SMTP_POLICY_NAME_OK);
	CHECK_INT_EQ(p.nlookups, 2);
	CHECK_INT_EQ(p.lookups[0].type, DNS_TYPE_PTR);
	CHECK_STR_EQ(p.lookups[0].name, "2.2.0.192.in-addr.arpa");
	CHECK_INT_EQ(p.lookups[1].type, DNS_TYPE_A);
	CHECK_STR_EQ(p.warning, "");
	mx_explain_peer_clear(&p);

	/* an IPv4-mapped address is the IPv4 client */
	mx_inet_parse("::ffff:192.0.2.2", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_STR_EQ(p.name, "good.xpl.test");
	CHECK(p.lookups[0].cached);
	mx_explain_peer_clear(&p);

	mx_inet_parse("192.0.2.3", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_STR_EQ(p.name, "unknown");
	CHECK_STR_EQ(p.reverse_name, "forged.xpl.test");
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_FORGED);
	CHECK_INT_EQ(p.reverse_name_status, SMTP_POLICY_NAME_OK);
	CHECK_STR_EQ(p.warning, "hostname forged.xpl.test does not resolve to address 192.0.2.3");
	mx_explain_peer_clear(&p);

	mx_inet_parse("192.0.2.4", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_STR_EQ(p.name, "unknown");
	CHECK_STR_EQ(p.reverse_name, "unknown");
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_PERM);
	CHECK_INT_EQ(p.reverse_name_status, SMTP_POLICY_NAME_PERM);
	CHECK_INT_EQ(p.nlookups, 1);
	mx_explain_peer_clear(&p);

	mx_inet_parse("192.0.2.5", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_TEMP);
	CHECK_INT_EQ(p.reverse_name_status, SMTP_POLICY_NAME_TEMP);
	mx_explain_peer_clear(&p);

	mx_inet_parse("192.0.2.6", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_TEMP);
	CHECK_INT_EQ(p.reverse_name_status, SMTP_POLICY_NAME_OK);
	CHECK_STR_EQ(p.warning, "hostname tmp.xpl.test does not resolve to address 192.0.2.6: "
				"Temporary failure in name resolution");
	mx_explain_peer_clear(&p);

	mx_inet_parse("192.0.2.7", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_INT_EQ(p.name_status, SMTP_POLICY_NAME_PERM);
	CHECK_STR_EQ(p.warning, "numeric hostname: 192.0.2.7");
	mx_explain_peer_clear(&p);

	mx_inet_parse("2001:db8::1", &a);
	CHECK_INT_EQ(mx_explain_peer_lookup(d, &a, &p), 0);
	CHECK_STR_EQ(p.name, "six.xpl.test");
	CHECK_INT_EQ(p.lookups[1].type, DNS_TYPE_AAAA);
	mx_explain_peer_clear(&p);
	mx_explain_dns_free(d);
}

/* ---- the policy client ---- */

static struct smtp_policy_service service(const char *endpoint, unsigned timeout,
					  unsigned tries)
{
	struct smtp_policy_service s;
	smtp_policy_service_defaults(&s);
	s.name = endpoint;
	s.endpoint = endpoint;
	s.timeout = timeout;
	s.try_limit = tries;
	s.retry_delay = 1;
	return s;
}

/* Query svc with a request whose recipient is the server's script. */
static int query(const struct smtp_policy_service *svc, const char *script, bool utf8,
		 struct mx_explain_policy_reply *out)
{
	char req[512];
	int n = snprintf(req, sizeof(req), "request=smtpd_access_policy\nrecipient=%s\n\n",
			 script);
	return mx_explain_policy_query(svc, req, (size_t)n, utf8, out);
}

static void test_policy(void)
{
	struct psrv *tcp = psrv_start(AF_INET, true), *un = psrv_start(AF_UNIX, true);
	struct psrv *closed = psrv_start(AF_INET, false);
	CHECK(tcp && un && closed);
	struct mx_explain_policy_reply rep;
	struct smtp_policy_service s = service(tcp->endpoint, 2, 2);
	CHECK_INT_EQ(query(&s, "ok:DUNNO", true, &rep), 0);
	CHECK_STR_EQ(rep.action, "DUNNO");
	CHECK_INT_EQ(rep.tries, 1);
	CHECK_INT_EQ(query(&s, "ok:REJECT not today", true, &rep), 0);
	CHECK_STR_EQ(rep.action, "REJECT not today");
	/* a reply with bytes after it: its action is used */
	CHECK_INT_EQ(query(&s, "trail:OK", true, &rep), 0);
	CHECK_STR_EQ(rep.action, "OK");
	struct smtp_policy_service su = service(un->endpoint, 2, 1);
	CHECK_INT_EQ(query(&su, "ok:HOLD", true, &rep), 0);
	CHECK_STR_EQ(rep.action, "HOLD");

	/* failed tries are tried again on a new connection */
	CHECK_INT_EQ(query(&s, "flaky:PERMIT", true, &rep), 0);
	CHECK_STR_EQ(rep.action, "PERMIT");
	CHECK_INT_EQ(rep.tries, 2);
	CHECK_INT_EQ(query(&s, "hex:666f6f3d6261720a0a", true, &rep), -ENOMSG); /* foo=bar */
	CHECK_INT_EQ(rep.tries, 2);
	CHECK(strstr(rep.why, "a reply without action") != NULL);
	s.try_limit = 1;
	CHECK_INT_EQ(query(&s, "half", true, &rep), -ECONNRESET);
	CHECK(strstr(rep.why, "closed the connection before the reply ended") != NULL);
	CHECK_INT_EQ(query(&s, "huge", true, &rep), -EMSGSIZE);
	CHECK_INT_EQ(query(&s, "hex:616374696f6e3d4f4b20ff0a0a", true, &rep), -EILSEQ);
	CHECK_INT_EQ(rep.tries, 1);
	CHECK_INT_EQ(query(&s, "hex:616374696f6e3d4f4b20ff0a0a", false, &rep), 0);
	CHECK_STR_EQ(rep.action, "OK \xff");

	/* a server that never answers: each try times out */
	s = service(tcp->endpoint, 1, 2);
	uint64_t t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(query(&s, "never", true, &rep), -ETIMEDOUT);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK_INT_EQ(rep.tries, 2);
	CHECK(took >= 2900 && took < 5000); /* 2 tries of 1 s and the 1 s between */
	char why[300];
	snprintf(why, sizeof(why), "no reply from 127.0.0.1:%u within 1 s", tcp->port);
	CHECK_STR_EQ(rep.why, why);

	/* refused connections */
	s = service(closed->endpoint, 1, 2);
	CHECK_INT_EQ(query(&s, "ok:DUNNO", true, &rep), -ECONNREFUSED);
	CHECK_INT_EQ(rep.tries, 2);
	CHECK(strstr(rep.why, "Connection refused") != NULL);

	/* endpoints that cannot be used: no try */
	s = service("unix:private/policy", 1, 2);
	CHECK_INT_EQ(query(&s, "ok:DUNNO", true, &rep), -EINVAL);
	CHECK_INT_EQ(rep.tries, 0);
	CHECK(strstr(rep.why, "queue_directory") != NULL);
	s = service("tcp:127.0.0.1:1", 1, 2);
	CHECK_INT_EQ(query(&s, "ok:DUNNO", true, &rep), -EINVAL);
	s = service("inet:[::1", 1, 2);
	CHECK_INT_EQ(query(&s, "ok:DUNNO", true, &rep), -EINVAL);
	psrv_stop(tcp);
	psrv_stop(un);
	psrv_stop(closed);
}

/* ---- the output ---- */

/* What fn printed, in a heap buffer the caller frees. */
static char *captured(FILE *f, char **buf)
{
	fclose(f);
	return *buf;
}

static void test_print(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	/* an OK A answer: 12 records, 10 shown */
	struct dns_result_record recs[12];
	memset(recs, 0, sizeof(recs));
	for (unsigned i = 0; i < 12; i++) {
		char a[32];
		snprintf(a, sizeof(a), "127.0.0.%u", i + 1);
		mx_inet_parse(a, &recs[i].addr);
	}
	struct dns_result r = { .status = DNS_RESULT_OK, .type = DNS_TYPE_A, .ttl = 300,
				.nrecords = 2, .records = recs };
	mx_explain_print_dns(f, "  ", DNS_TYPE_A, "2.0.0.127.zen.example", &r, false);
	r.nrecords = 12;
	mx_explain_print_dns(f, "", DNS_TYPE_A, "x.example", &r, true);
	/* TXT with a quote, a backslash, a newline and an 8-bit octet */
	char text[] = "say \"hi\"\\\n\xe9";
	struct dns_result_record trec = { .txt_off = 0, .txt_len = sizeof(text) - 1 };
	struct dns_result t = { .status = DNS_RESULT_OK, .ttl = 5, .nrecords = 1, .records = &trec,
				.text = text };
	mx_explain_print_dns(f, "", DNS_TYPE_TXT, "t.example", &t, false);
	/* MX: a host and a null MX */
	char names[] = "mx.example\0";
	struct dns_result_record mrec[2] = { { .pref = 10, .name_off = 0, .name_len = 10 },
					     { .pref = 0, .name_off = 10, .name_len = 0 } };
	struct dns_result m = { .status = DNS_RESULT_OK, .ttl = 60, .nrecords = 2, .records = mrec,
				.text = names };
	mx_explain_print_dns(f, "", DNS_TYPE_MX, "m.example", &m, false);
	struct dns_result nx = { .status = DNS_RESULT_NXDOMAIN, .ttl = 900 };
	mx_explain_print_dns(f, "", DNS_TYPE_A, "nx.example", &nx, false);
	struct dns_result nd = { .status = DNS_RESULT_NODATA, .ttl = 10 };
	mx_explain_print_dns(f, "", DNS_TYPE_MX, "nd.example", &nd, false);
	struct dns_result tf = { .status = DNS_RESULT_TEMPFAIL, .why = "SERVFAIL from 127.0.0.1" };
	mx_explain_print_dns(f, "", DNS_TYPE_A, "sf.example", &tf, true);
	char *out = captured(f, &buf);
	CHECK_STR_EQ(out,
		     "  dns: A 2.0.0.127.zen.example -> 127.0.0.1, 127.0.0.2 (ttl 300)\n"
		     "dns: A x.example -> 127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4, 127.0.0.5, "
		     "127.0.0.6, 127.0.0.7, 127.0.0.8, 127.0.0.9, 127.0.0.10, ... (12 records) "
		     "(ttl 300, answered before)\n"
		     "dns: TXT t.example -> \"say \\\"hi\\\"\\\\\\012\\351\" (ttl 5)\n"
		     "dns: MX m.example -> 10 mx.example, 0 . (null MX) (ttl 60)\n"
		     "dns: A nx.example -> NXDOMAIN: no such name (ttl 900)\n"
		     "dns: MX nd.example -> NODATA: the name has no MX record (ttl 10)\n"
		     "dns: A sf.example -> TEMPFAIL (SERVFAIL from 127.0.0.1, answered before)\n");
	free(out);

	/* a policy exchange: the request (empty attributes only when verbose), the reply */
	static const char req[] = "request=smtpd_access_policy\nprotocol_state=RCPT\n"
				  "sasl_method=\nrecipient=a@b\n\n";
	struct smtp_policy_service s;
	smtp_policy_service_defaults(&s);
	s.name = s.endpoint = "inet:127.0.0.1:9998";
	struct mx_explain_policy_reply ok = { .tries = 2 };
	snprintf(ok.action, sizeof(ok.action), "REJECT no\nforged line");
	f = open_memstream(&buf, &len);
	mx_explain_print_policy(f, "  ", &s, req, sizeof(req) - 1, &ok, false);
	out = captured(f, &buf);
	CHECK_STR_EQ(out, "  policy inet:127.0.0.1:9998 (timeout 100s, 2 tries):\n"
			  "    > request=smtpd_access_policy\n"
			  "    > protocol_state=RCPT\n"
			  "    > recipient=a@b\n"
			  "    < action=REJECT no\\012forged line (at try 2)\n");
	free(out);
	struct mx_explain_policy_reply bad = { .error = -ETIMEDOUT, .tries = 1 };
	snprintf(bad.why, sizeof(bad.why), "no reply from 127.0.0.1:9998 within 1 s");
	s.timeout = 1;
	s.try_limit = 1;
	f = open_memstream(&buf, &len);
	mx_explain_print_policy(f, "", &s, req, sizeof(req) - 1, &bad, true);
	out = captured(f, &buf);
	CHECK_STR_EQ(out, "policy inet:127.0.0.1:9998 (timeout 1s, 1 try):\n"
			  "  > request=smtpd_access_policy\n"
			  "  > protocol_state=RCPT\n"
			  "  > sasl_method=\n"
			  "  > recipient=a@b\n"
			  "  failed after 1 try: no reply from 127.0.0.1:9998 within 1 s\n"
			  "  default action applies (smtpd_policy_service_default_action): 451 "
			  "4.3.5 Server configuration problem\n");
	free(out);

	/* the client's name and the resolver */
	struct mx_explain_peer p = { .name = "unknown", .reverse_name = "forged.example",
				     .name_status = SMTP_POLICY_NAME_FORGED,
				     .reverse_name_status = SMTP_POLICY_NAME_OK,
				     .warning = "hostname forged.example does not resolve to "
						"address 192.0.2.3" };
	f = open_memstream(&buf, &len);
	mx_explain_print_peer(f, "  ", &p);
	struct mx_explain_dns_opts o;
	char err[64];
	CHECK_INT_EQ(mx_explain_dns_opts_init(&o, "127.0.0.1:5353 [::1]", NULL, err, sizeof(err)),
		     0);
	mx_explain_print_resolver(f, &o);
	out = captured(f, &buf);
	CHECK_STR_EQ(out, "  would log: warning: hostname forged.example does not resolve to "
			  "address 192.0.2.3\n"
			  "  => client name unknown (permanent: the name does not resolve back "
			  "to the address), reverse name forged.example (ok)\n"
			  "DNS: 127.0.0.1:5353, [::1]:53 (mxgate_dns_servers), 5000 ms a try, 2 "
			  "rounds\n");
	free(out);
}

/* ---- a whole run ---- */

/* Run `mxgate explain` with args; its stdout, in a heap string, and *status. */
static char *run_explain(const char *const *args, int nargs, int *status)
{
	char path[] = "/tmp/xpl-out-XXXXXX";
	int fd = mkstemp(path);
	fflush(stdout);
	int saved = dup(1);
	dup2(fd, 1);
	char *argv[16];
	argv[0] = (char *)"explain";
	for (int i = 0; i < nargs && i < 15; i++)
		argv[i + 1] = (char *)args[i];
	*status = mx_explain_main(nargs + 1, argv, "/nonexistent/mxgate.cf");
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	char *out = calloc(1, (size_t)size + 1);
	if (out && pread(fd, out, (size_t)size, 0) != size)
		out[0] = '\0';
	close(fd);
	unlink(path);
	return out;
}

/* needle is on the line right after the line holding after. */
static bool line_after(const char *out, const char *after, const char *needle)
{
	const char *p = strstr(out, after);
	if (!p)
		return false;
	const char *nl = strchr(p, '\n');
	return nl && strncmp(nl + 1, needle, strlen(needle)) == 0;
}

static void test_run(void)
{
	rts_add(&srv1, "9.2.0.192.in-addr.arpa", T_PTR, RTS_ANSWER, 60, "nine.xpl.test");
	rts_add(&srv1, "nine.xpl.test", T_A, RTS_ANSWER, 60, "192.0.2.9");
	rts_add(&srv1, "9.2.0.192.zen.xpl.test", T_A, RTS_ANSWER, 60, "127.0.0.2");
	rts_add(&srv1, "9.2.0.192.zen.xpl.test", T_TXT, RTS_ANSWER, 60, "see \"zen\"");
	rts_add(&srv1, "9.2.0.192.white.xpl.test", T_A, RTS_NXDOMAIN, 60, NULL);
	struct psrv *pol = psrv_start(AF_INET, true);
	char cf[] = "/tmp/xpl-cf-XXXXXX";
	int fd = mkstemp(cf);
	FILE *f = fdopen(fd, "w");
	fprintf(f,
		"myhostname = mx.xpl.test\nrelay_domains = relay.example\n"
		"mxgate_table_directory = /nonexistent/xpl-tables\n"
		"mxgate_dns_servers = 127.0.0.1:%u\n"
		"smtpd_restriction_classes = lists\n"
		"lists = warn_if_reject reject_rbl_client zen.xpl.test\n"
		"smtpd_client_restrictions = permit_dnswl_client white.xpl.test, lists\n"
		"smtpd_recipient_restrictions = check_policy_service %s, "
		"reject_rbl_client zen.xpl.test, permit\n",
		srv1.port, pol->endpoint);
	fclose(f);
	const char *args[] = { "-c", cf, "client=192.0.2.9", "helo=h.xpl.test",
			       "sender=s@xpl.test", "recipient=ok:DUNNO @relay.example" };
	int status;
	char *out = run_explain(args, 6, &status);
	CHECK(out != NULL);
	if (!out)
		return;
	CHECK_INT_EQ(status, 1);
	CHECK(strstr(out, "  dns: PTR 9.2.0.192.in-addr.arpa -> nine.xpl.test (ttl 60)\n") != NULL);
	CHECK(strstr(out, "  => client name nine.xpl.test (ok), reverse name nine.xpl.test (ok)\n")
	      != NULL);
	/* each lookup under the restriction that asked it, a class's under its inner line */
	CHECK(line_after(out, "permit_dnswl_client white.xpl.test -> not listed",
			 "    dns: A 9.2.0.192.white.xpl.test -> NXDOMAIN"));
	CHECK(line_after(out, "smtpd_client_restrictions       reject_rbl_client zen.xpl.test -> "
			      "reject_warning",
			 "    dns: A 9.2.0.192.zen.xpl.test -> 127.0.0.2 (ttl 60)\n"
			 "    dns: TXT 9.2.0.192.zen.xpl.test -> \"see \\\"zen\\\"\" (ttl 60)\n"
			 "  smtpd_client_restrictions       lists -> "));
	CHECK(line_after(out, "check_policy_service inet:127.0.0.1:", "    policy inet:127.0.0.1:"));
	CHECK(strstr(out, "      > recipient=ok:DUNNO @relay.example\n") != NULL);
	CHECK(strstr(out, "      < action=DUNNO @relay.example\n") != NULL);
	/* asked again later in the check: answered before */
	CHECK(line_after(out, "smtpd_recipient_restrictions    reject_rbl_client zen.xpl.test -> "
			      "REJECT",
			 "    dns: A 9.2.0.192.zen.xpl.test -> 127.0.0.2 (ttl 60, answered before)"));
	CHECK(strstr(out, "  would log: reject_warning: ") != NULL);
	CHECK(strstr(out, "  => 554 5.7.1 Service unavailable; Client host [192.0.2.9] blocked "
			  "using zen.xpl.test; see \"zen\"\n") != NULL);
	CHECK(strstr(out, "lookups (their restriction") == NULL);
	if (testing_failures)
		fprintf(stderr, "%s", out);
	free(out);

	/* offline: nothing asked */
	const char *off[] = { "-c", cf, "--no-dns", "--no-policy", "client=192.0.2.9",
			      "recipient=ok:DUNNO @relay.example" };
	int before = atomic_load(&pol->requests);
	out = run_explain(off, 6, &status);
	CHECK(out != NULL);
	if (!out)
		return;
	CHECK(strstr(out, "client name: not looked up (--no-dns): unknown\n") != NULL);
	CHECK(strstr(out, "    dns: A 9.2.0.192.zen.xpl.test -> TEMPFAIL (not asked: --no-dns)\n")
	      != NULL);
	CHECK(strstr(out, "      failed: not asked: --no-policy\n") != NULL);
	CHECK_INT_EQ(atomic_load(&pol->requests), before);
	free(out);
	unlink(cf);
	psrv_stop(pol);
}

/* check_greylist: the triplet it would ask the greylist service about, taken as passed;
 * an allowlisted client answers at once. */
static void test_greylist(void)
{
	char cf[] = "/tmp/xpl-gl-XXXXXX";
	char wl[] = "/tmp/xpl-glw-XXXXXX";
	int wfd = mkstemp(wl);
	FILE *w = fdopen(wfd, "w");
	fprintf(w, "# postgrey's format\n/^mx\\d+\\.friend\\.test$/\n");
	fclose(w);
	int fd = mkstemp(cf);
	FILE *f = fdopen(fd, "w");
	fprintf(f,
		"myhostname = mx.xpl.test\nmydestination = xpl.test\n"
		"mxgate_table_directory = /nonexistent/xpl-tables\n"
		"smtpd_recipient_restrictions = reject_unauth_destination, check_greylist, "
		"permit\n"
		"mxgate_greylist_client_allowlist = %s\n",
		wl);
	fclose(f);
	const char *args[] = { "-c", cf, "--no-dns", "client=192.0.2.9",
			       "sender=bounce-42@lists.example", "recipient=u@xpl.test" };
	int status;
	char *out = run_explain(args, 6, &status);
	CHECK(out != NULL);
	if (!out)
		return;
	CHECK_INT_EQ(status, 0);
	CHECK(line_after(out, "smtpd_recipient_restrictions    check_greylist -> DUNNO (greylist: "
			      "action=DUNNO)",
			 "    greylist triplet 192.0.2.0/bounce-#@lists.example/u@xpl.test: would "
			 "ask the greylist service (mxgate_greylist_map); taken as passed (DUNNO)"));
	if (testing_failures)
		fprintf(stderr, "%s", out);
	free(out);
	const char *allowed[] = { "-c", cf, "--no-dns", "client=192.0.2.9", "name=mx7.friend.test",
				  "recipient=u@xpl.test" };
	out = run_explain(allowed, 6, &status);
	CHECK(out != NULL);
	if (!out)
		return;
	CHECK(strstr(out, "check_greylist -> DUNNO (client allowlist)\n") != NULL);
	CHECK(strstr(out, "greylist triplet") == NULL);
	free(out);
	unlink(cf);
	unlink(wl);
}

/* The screen of a postscreen service (master.cf), before the session: the access list's
 * element, each DNSBL site's answer, filter and weight, the score against both
 * thresholds, and the screen's verdict, which the screen codec itself gives. */
static char *screen_run(const char *cf, const char *client, bool no_dns, int *status)
{
	char c[64];
	snprintf(c, sizeof(c), "client=%s", client);
	const char *args[] = { "-c", cf, c, "name=unknown", no_dns ? "--no-dns" : "-v" };
	char *out = run_explain(args, 5, status);
	CHECK(out != NULL);
	return out;
}

static void test_screen(void)
{
	rts_add(&srv2, "21.2.0.192.bl.xpl.test", T_A, RTS_ANSWER, 300, "127.0.0.2");
	rts_add(&srv2, "22.2.0.192.bl.xpl.test", T_A, RTS_ANSWER, 300, "127.0.0.3");
	rts_add(&srv2, "22.2.0.192.wl.xpl.test", T_A, RTS_ANSWER, 300, "127.0.2.1");
	rts_add(&srv2, "23.2.0.192.bl.xpl.test", T_A, RTS_ANSWER, 300, "127.0.0.20");
	rts_add(&srv2, "*.bl.xpl.test", T_A, RTS_NXDOMAIN, 60, NULL);
	rts_add(&srv2, "*.wl.xpl.test", T_A, RTS_NXDOMAIN, 60, NULL);
	char cidr[] = "/tmp/xpl-cidr-XXXXXX", master[] = "/tmp/xpl-master-XXXXXX";
	char cf[] = "/tmp/xpl-scf-XXXXXX";
	FILE *f = fdopen(mkstemp(cidr), "w");
	fprintf(f, "192.0.2.24 reject\n192.0.2.25 permit\n");
	fclose(f);
	f = fdopen(mkstemp(master), "w");
	fprintf(f,
		"127.0.0.1:2599 inet n - n - 1 postscreen\n"
		"  -o postscreen_greet_action=enforce\n"
		"  -o { postscreen_dnsbl_sites = bl.xpl.test=127.0.0.[2..11]*2, wl.xpl.test*-3 }\n"
		"  -o postscreen_dnsbl_threshold=2\n"
		"  -o postscreen_dnsbl_action=enforce\n"
		"  -o postscreen_denylist_action=drop\n"
		"  -o postscreen_access_list=cidr:%s\n"
		"127.0.0.1:2598 inet n - n - - smtpd\n"
		"smtpd pass - - n - - smtpd\n",
		cidr);
	fclose(f);
	f = fdopen(mkstemp(cf), "w");
	fprintf(f,
		"myhostname = mx.xpl.test\nrelay_domains = relay.example\n"
		"mxgate_table_directory = /nonexistent/xpl-tables\n"
		"mxgate_dns_servers = 127.0.0.1:%u\nmxgate_master_file = %s\n"
		"postscreen_greet_wait = 3s\n"
		"postscreen_cache_map = btree:/nonexistent/xpl/psc\n",
		srv2.port, master);
	fclose(f);
	int status;

	/* listed in bl.xpl.test: rank 2 >= 2, enforced */
	char *out = screen_run(cf, "192.0.2.21", false, &status);
	if (out) {
		CHECK_INT_EQ(status, 1);
		CHECK(strstr(out, "screen (postscreen) of service 127.0.0.1:2599:\n"
				  "  postscreen_access_list: dunno (no element matched)\n"
				  "  postscreen_dnsbl_sites:\n"
				  "    dns: A 21.2.0.192.bl.xpl.test -> 127.0.0.2 (ttl 300)\n"
				  "    dns: A 21.2.0.192.wl.xpl.test -> NXDOMAIN") != NULL);
		CHECK(strstr(out, "    site bl.xpl.test (with a filter), weight 2: listed, the "
				  "filter matched: +2\n"
				  "    site wl.xpl.test, weight -3: not listed\n"
				  "  DNSBL score 2: postscreen_dnsbl_threshold 2 reached; "
				  "postscreen_dnsbl_allowlist_threshold 0 (off: not negative)\n")
		      != NULL);
		CHECK(strstr(out, "  would log: DNSBL rank 2 for [192.0.2.21]:0\n") != NULL);
		CHECK(strstr(out, "  => DNSBL rank 2 -> postscreen_dnsbl_action = enforce (the "
				  "dummy engine rejects every RCPT with a 550)\n") != NULL);
		CHECK(strstr(out, "  postscreen_cache_map btree:/nonexistent/xpl/psc: not read")
		      != NULL);
		/* the other service has no screen */
		CHECK(strstr(out, "of service 127.0.0.1:2598") == NULL);
		if (testing_failures)
			fprintf(stderr, "%s", out);
		free(out);
	}
	/* listed in both: 2 - 3 = -1, under the threshold: the tests, PASS NEW */
	out = screen_run(cf, "192.0.2.22", false, &status);
	if (out) {
		CHECK_INT_EQ(status, 0);
		CHECK(strstr(out, "    site wl.xpl.test, weight -3: listed: -3\n") != NULL);
		CHECK(strstr(out, "  DNSBL score -1: postscreen_dnsbl_threshold 2 not reached")
		      != NULL);
		CHECK(strstr(out, "  tests: the teaser \"220-mx.xpl.test ESMTP mxgate\", then the greet "
				  "wait of 3000 ms") != NULL);
		CHECK(strstr(out, "  client sees: 220-mx.xpl.test ESMTP mxgate\n") != NULL);
		CHECK(strstr(out, "  would log: PASS NEW [192.0.2.22]:0\n") != NULL);
		CHECK(strstr(out, "  => a client that waits for the greeting passes: PASS NEW")
		      != NULL);
		if (testing_failures)
			fprintf(stderr, "%s", out);
		free(out);
	}
	/* an answer outside the filter is not a listing */
	out = screen_run(cf, "192.0.2.23", false, &status);
	if (out) {
		CHECK_INT_EQ(status, 0);
		CHECK(strstr(out, "    site bl.xpl.test (with a filter), weight 2: answered, but no "
				  "address is in the filter: not listed\n") != NULL);
		CHECK(strstr(out, "  DNSBL score 0:") != NULL);
		free(out);
	}
	/* the access list: reject (denylisted, dropped, no DNSBL asked), permit */
	out = screen_run(cf, "192.0.2.24", false, &status);
	if (out) {
		CHECK_INT_EQ(status, 1);
		char want[256];
		snprintf(want, sizeof(want), "  postscreen_access_list: reject (cidr:%s: "
			 "\"reject\")\n  postscreen_dnsbl_sites: not asked\n", cidr);
		CHECK(strstr(out, want) != NULL);
		CHECK(strstr(out, "  client sees: 521 5.3.2 Service currently unavailable\n") != NULL);
		CHECK(strstr(out, "  => denylisted -> postscreen_denylist_action = drop\n") != NULL);
		CHECK(strstr(out, "  tests:") == NULL);
		if (testing_failures)
			fprintf(stderr, "%s", out);
		free(out);
	}
	out = screen_run(cf, "192.0.2.25", true, &status);
	if (out) {
		CHECK_INT_EQ(status, 0);
		CHECK(strstr(out, "  postscreen_access_list: permit (cidr:") != NULL);
		CHECK(strstr(out, "  would log: ALLOWLISTED [192.0.2.25]:0\n") != NULL);
		CHECK(strstr(out, "  => allowlisted: straight to the SMTP server, no tests\n") != NULL);
		free(out);
	}
	/* --no-dns: every site's answer a temporary failure, not listed */
	out = screen_run(cf, "192.0.2.21", true, &status);
	if (out) {
		CHECK_INT_EQ(status, 0);
		CHECK(strstr(out, "    dns: A 21.2.0.192.bl.xpl.test -> TEMPFAIL (not asked: "
				  "--no-dns)\n") != NULL);
		CHECK(strstr(out, "  DNSBL score 0:") != NULL);
		free(out);
	}
	unlink(cf);
	unlink(master);
	unlink(cidr);
}

int main(void)
{
	(void)psrv_drop_all; /* policy_server.h's, not needed here */
	if (rts_start(&srv1) < 0 || rts_start(&srv2) < 0) {
		fprintf(stderr, "cannot start the scripted DNS servers\n");
		return 1;
	}
	RUN_TEST(test_opts);
	RUN_TEST(test_answers);
	RUN_TEST(test_failover);
	RUN_TEST(test_timeouts);
	RUN_TEST(test_tcp_spoof_rotate);
	RUN_TEST(test_peer);
	RUN_TEST(test_policy);
	RUN_TEST(test_print);
	RUN_TEST(test_run);
	RUN_TEST(test_greylist);
	RUN_TEST(test_screen);
	rts_stop(&srv1);
	rts_stop(&srv2);
	return TEST_RESULT();
}
