/* The resolver's settings (dataplane/svc/svc_resolver.h): mxgate_dns_servers, resolv.conf(5)
 * text (whole, every prefix in a heap buffer of exactly its length, and every byte
 * changed), a resolv.conf file, and params merged with it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/svc/svc_resolver.h"
#include "testing.h"

static const char *server_text(const struct dns_server *s, char *buf, size_t cap)
{
	char a[64];
	mx_inet_format(&s->addr, a, sizeof(a));
	snprintf(buf, cap, "%s#%u", a, s->port);
	return buf;
}

static void test_servers_parse(void)
{
	struct dns_server s[DNS_CONF_SERVERS_MAX];
	unsigned n = 99;
	char err[256], buf[80];
	CHECK_INT_EQ(dns_servers_parse("127.0.0.1, 192.0.2.1:5353 ::1\t[2001:db8::1]:53"
						",[::2]",
						s, DNS_CONF_SERVERS_MAX, &n, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(n, 5);
	CHECK_STR_EQ(server_text(&s[0], buf, sizeof(buf)), "127.0.0.1#53");
	CHECK_STR_EQ(server_text(&s[1], buf, sizeof(buf)), "192.0.2.1#5353");
	CHECK_STR_EQ(server_text(&s[2], buf, sizeof(buf)), "::1#53");
	CHECK_STR_EQ(server_text(&s[3], buf, sizeof(buf)), "2001:db8::1#53");
	CHECK_STR_EQ(server_text(&s[4], buf, sizeof(buf)), "::2#53");

	CHECK_INT_EQ(dns_servers_parse("", s, 8, &n, err, sizeof(err)), 0);
	CHECK_INT_EQ(n, 0);
	CHECK_INT_EQ(dns_servers_parse(NULL, s, 8, &n, err, sizeof(err)), 0);
	CHECK_INT_EQ(n, 0);
	CHECK_INT_EQ(dns_servers_parse(" , ", s, 8, &n, err, sizeof(err)), 0);
	CHECK_INT_EQ(n, 0);

	static const char *const bad[] = {
		"dns.example", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:5x",
		"[127.0.0.1]", "[::1", "[::1]x", "[::1]:", "::1:99999x", "1.2.3", "256.0.0.1",
		"[::1]:123456", "127.0.0.1:53:53",
		"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_INT_EQ(dns_servers_parse(bad[i], s, 8, &n, err, sizeof(err)),
			     -EINVAL);
		CHECK(strstr(err, "numeric address") != NULL || strstr(err, "more than") != NULL);
	}
	CHECK_INT_EQ(dns_servers_parse("1.1.1.1 2.2.2.2 3.3.3.3", s, 2, &n, err,
						sizeof(err)),
		     -E2BIG);
}

static const char resolv_sample[] =
	"# generated\n"
	"; comment\n"
	"search example.com corp.example\n"
	"nameserver 10.0.0.1\n"
	"nameserver\t2001:db8::53\r\n"
	"nameserver fe80::1%eth0\n"
	"nameserver 10.0.0.3\n"
	"nameserver 10.0.0.4\n"
	"options ndots:2 timeout:3 attempts:4\n"
	"options rotate edns0 timeout:99 attempts:0x\n"
	"nameservers 1.2.3.4\n"
	"  nameserver 10.0.0.9\n";

static void check_sample(const struct dns_resolv_conf *c)
{
	char buf[80];
	CHECK_INT_EQ(c->nservers, 3);
	CHECK_STR_EQ(server_text(&c->servers[0], buf, sizeof(buf)), "10.0.0.1#53");
	CHECK_STR_EQ(server_text(&c->servers[1], buf, sizeof(buf)), "2001:db8::53#53");
	CHECK_STR_EQ(server_text(&c->servers[2], buf, sizeof(buf)), "10.0.0.3#53");
	CHECK_INT_EQ(c->timeout_ms, 30000); /* the later options line, capped */
	CHECK_INT_EQ(c->attempts, 4);       /* "attempts:0x" is not a number: ignored */
	CHECK(c->rotate);
	CHECK(c->edns0);
	/* fe80::1%eth0, 10.0.0.4 (past three), ndots:2, attempts:0x; an indented line is
	 * no keyword line at all (glibc matches keywords at the start of the line) */
	CHECK_INT_EQ(c->ignored, 4);
}

static void test_resolv_conf_parse(void)
{
	struct dns_resolv_conf c;
	size_t len = strlen(resolv_sample);
	char *buf = malloc(len);
	memcpy(buf, resolv_sample, len);
	dns_resolv_conf_parse(buf, len, &c);
	check_sample(&c);
	free(buf);

	/* every prefix, in a buffer of exactly its length (ASan sees any over-read) */
	for (size_t k = 0; k <= len; k++) {
		char *p = malloc(k ? k : 1);
		memcpy(p, resolv_sample, k);
		dns_resolv_conf_parse(p, k, &c);
		CHECK(c.nservers >= 1 && c.nservers <= DNS_CONF_RESOLV_NS_MAX);
		CHECK(c.timeout_ms >= 1000 && c.timeout_ms <= 30000);
		CHECK(c.attempts >= 1 && c.attempts <= 5);
		free(p);
	}
	/* every byte changed to each of a few troublemakers */
	static const char subst[] = { '\0', '\n', ' ', ':', '%', '\xff', '#' };
	for (size_t i = 0; i < len; i++)
		for (size_t k = 0; k < sizeof(subst); k++) {
			char *p = malloc(len);
			memcpy(p, resolv_sample, len);
			p[i] = subst[k];
			dns_resolv_conf_parse(p, len, &c);
			CHECK(c.nservers >= 1 && c.nservers <= DNS_CONF_RESOLV_NS_MAX);
			free(p);
		}

	/* nothing: the local machine, 5 s, 2 attempts */
	dns_resolv_conf_parse("", 0, &c);
	char b[80];
	CHECK_INT_EQ(c.nservers, 1);
	CHECK_STR_EQ(server_text(&c.servers[0], b, sizeof(b)), "127.0.0.1#53");
	CHECK_INT_EQ(c.timeout_ms, 5000);
	CHECK_INT_EQ(c.attempts, 2);
	CHECK(!c.rotate);

	dns_resolv_conf_parse("options timeout:0 attempts:9", 28, &c);
	CHECK_INT_EQ(c.timeout_ms, 1000);
	CHECK_INT_EQ(c.attempts, 5);
	dns_resolv_conf_parse("options timeout:99999999999999", 30, &c);
	CHECK_INT_EQ(c.timeout_ms, 30000);
}

static void test_config_resolve(void)
{
	char path[] = "/tmp/test_resolver_conf.XXXXXX";
	int fd = mkstemp(path);
	const char text[] = "nameserver 192.0.2.53\noptions timeout:1 attempts:3 rotate\n";
	CHECK_INT_EQ(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
	close(fd);

	struct svc_resolver_params p;
	struct svc_resolver_config c;
	char err[256], buf[80];
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), 0);
	CHECK(c.from_resolv_conf);
	CHECK_INT_EQ(c.p.nservers, 1);
	CHECK_STR_EQ(server_text(&c.p.servers[0], buf, sizeof(buf)), "192.0.2.53#53");
	CHECK_INT_EQ(c.p.timeout_ms, 1000);
	CHECK_INT_EQ(c.p.attempts, 3);
	CHECK(c.p.rotate);
	CHECK_INT_EQ(c.p.edns_udp_size, 1232);

	/* our own settings win over resolv.conf's options */
	p.timeout_ms = 2500;
	p.attempts = 1;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), 0);
	CHECK_INT_EQ(c.p.timeout_ms, 2500);
	CHECK_INT_EQ(c.p.attempts, 1);

	/* mxgate_dns_servers given: resolv.conf is not read; resolv.conf(5)'s defaults */
	svc_resolver_params_default(&p);
	p.resolv_conf = "/nonexistent/dir/resolv.conf";
	CHECK_INT_EQ(dns_servers_parse("127.0.0.1:5353", p.servers, 8, &p.nservers, err,
						sizeof(err)),
		     0);
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), 0);
	CHECK(!c.from_resolv_conf);
	CHECK_INT_EQ(c.p.timeout_ms, 5000);
	CHECK_INT_EQ(c.p.attempts, 2);

	/* a missing resolv.conf: the local machine */
	p.nservers = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), 0);
	CHECK_STR_EQ(server_text(&c.p.servers[0], buf, sizeof(buf)), "127.0.0.1#53");

	/* bounds */
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.timeout_ms = 30001;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "timeout") != NULL);
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.attempts = 6;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.edns_udp_size = 511;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	p.edns_udp_size = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), 0);
	p.max_in_flight = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.max_tcp = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.udp_sockets_per_server = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	svc_resolver_params_default(&p);
	p.resolv_conf = path;
	p.udp_socket_uses = 0;
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	svc_resolver_params_default(&p);
	p.nservers = 1; /* an address never filled in */
	CHECK_INT_EQ(svc_resolver_config_resolve(&p, &c, err, sizeof(err)), -EINVAL);
	unlink(path);
}

int main(void)
{
	RUN_TEST(test_servers_parse);
	RUN_TEST(test_resolv_conf_parse);
	RUN_TEST(test_config_resolve);
	return TEST_RESULT();
}
