/* transport(5) for the relay: next-hop parsing (every form Postfix's smtp/lmtp/error/retry/
 * discard take, defaults from relayhost, refusals) and the lookup order over real tables
 * (hash and regexp/pcre built in a throw-away LMDB environment, inline:, static:). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/relay/relay_transport.h"
#include "testing.h"
#include "../tables/tables_test_util.h"

static char err[512];

/* Parse value and return the result code; *out is filled on success. */
static int parse(const char *value, const struct relay_nexthop *dflt, struct relay_nexthop *out)
{
	err[0] = '\0';
	return relay_nexthop_parse(value, dflt, out, err, sizeof(err));
}

static unsigned port_of(const struct relay_nexthop *h)
{
	if (h->addr.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&h->addr)->sin_port);
	if (h->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&h->addr)->sin6_port);
	return 0;
}

static const char *addr_of(const struct relay_nexthop *h, char *buf, size_t len)
{
	if (h->addr.ss_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)&h->addr)->sin_addr, buf,
				 (socklen_t)len);
	if (h->addr.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&h->addr)->sin6_addr, buf,
				 (socklen_t)len);
	if (h->addr.ss_family == AF_UNIX)
		return ((const struct sockaddr_un *)&h->addr)->sun_path;
	return "";
}

/* A TCP next hop: kind, family, address text, port, name and key. */
static void check_inet(const char *value, const struct relay_nexthop *dflt,
		       enum relay_transport_kind kind, int family, const char *addr, unsigned port,
		       const char *name, const char *key)
{
	struct relay_nexthop h;
	char a[INET6_ADDRSTRLEN];
	int rc = parse(value, dflt, &h);
	if (rc != 0)
		fprintf(stderr, "  %s: %s\n", value, err);
	CHECK_INT_EQ(rc, 0);
	if (rc)
		return;
	CHECK_INT_EQ(h.kind, kind);
	CHECK_INT_EQ(h.addr.ss_family, family);
	CHECK_INT_EQ(h.addrlen, family == AF_INET ? sizeof(struct sockaddr_in)
						  : sizeof(struct sockaddr_in6));
	CHECK_STR_EQ(addr_of(&h, a, sizeof(a)), addr);
	CHECK_INT_EQ(port_of(&h), port);
	CHECK_STR_EQ(h.name, name);
	CHECK_STR_EQ(h.key, key);
}

/* A refusal: -EINVAL, a reason containing `why`, and *out left alone. */
static void check_refused(const char *value, const struct relay_nexthop *dflt, const char *why)
{
	struct relay_nexthop h;
	memset(&h, 0xa5, sizeof(h));
	struct relay_nexthop before = h;
	int rc = parse(value, dflt, &h);
	if (rc != -EINVAL || !strstr(err, why))
		fprintf(stderr, "  \"%s\": rc %d, reason \"%s\" (want \"%s\")\n", value, rc, err,
			why);
	CHECK_INT_EQ(rc, -EINVAL);
	CHECK(strstr(err, why) != NULL);
	CHECK(memcmp(&h, &before, sizeof(h)) == 0);
}

static void test_smtp_forms(void)
{
	check_inet("smtp:[192.0.2.1]:25", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	check_inet("smtp:[192.0.2.1]", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	check_inet("smtp:192.0.2.1", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	check_inet("smtp:192.0.2.1:2525", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 2525,
		   "192.0.2.1[192.0.2.1]:2525", "smtp:192.0.2.1:2525");
	/* relay is SMTP too, and shares connections with smtp to the same place */
	check_inet("relay:[2001:db8::1]:2525", NULL, RELAY_TRANSPORT_SMTP, AF_INET6, "2001:db8::1",
		   2525, "2001:db8::1[2001:db8::1]:2525", "smtp:[2001:db8::1]:2525");
	check_inet("relay:[192.0.2.1]:25", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	/* Postfix's own IPv6 form, any case; the address is canonicalized */
	check_inet("smtp:[ipv6:2001:db8::1]", NULL, RELAY_TRANSPORT_SMTP, AF_INET6, "2001:db8::1",
		   25, "2001:db8::1[2001:db8::1]:25", "smtp:[2001:db8::1]:25");
	check_inet("smtp:[IPv6:2001:DB8:0:0::1]:submission", NULL, RELAY_TRANSPORT_SMTP, AF_INET6,
		   "2001:db8::1", 587, "2001:db8::1[2001:db8::1]:587", "smtp:[2001:db8::1]:587");
	check_inet("smtp:[::ffff:192.0.2.1]:26", NULL, RELAY_TRANSPORT_SMTP, AF_INET6,
		   "::ffff:192.0.2.1", 26, "::ffff:192.0.2.1[::ffff:192.0.2.1]:26",
		   "smtp:[::ffff:192.0.2.1]:26");
	/* known_tcp_ports names */
	check_inet("smtp:[192.0.2.1]:smtp", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	check_inet("smtp:[192.0.2.1]:smtps", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1",
		   465, "192.0.2.1[192.0.2.1]:465", "smtp:192.0.2.1:465");
	check_inet("smtp:[192.0.2.1]:submissions", NULL, RELAY_TRANSPORT_SMTP, AF_INET,
		   "192.0.2.1", 465, "192.0.2.1[192.0.2.1]:465", "smtp:192.0.2.1:465");
	check_inet("smtp:[192.0.2.1]:65535", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1",
		   65535, "192.0.2.1[192.0.2.1]:65535", "smtp:192.0.2.1:65535");
	/* blanks around the next hop (table values may have them after the ':') */
	check_inet("smtp: [192.0.2.1]:25 ", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 25,
		   "192.0.2.1[192.0.2.1]:25", "smtp:192.0.2.1:25");
	/* a service of /etc/services that known_tcp_ports does not list */
	struct servent se, *res = NULL;
	char buf[1024];
	if (getservbyname_r("imap", "tcp", &se, buf, sizeof(buf), &res) == 0 && res) {
		char name[64], key[64];
		unsigned p = ntohs((uint16_t)res->s_port);
		snprintf(name, sizeof(name), "192.0.2.1[192.0.2.1]:%u", p);
		snprintf(key, sizeof(key), "smtp:192.0.2.1:%u", p);
		check_inet("smtp:[192.0.2.1]:imap", NULL, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1",
			   p, name, key);
		CHECK_INT_EQ(p, 143);
	} else {
		printf("  (no imap in /etc/services: service-name lookup not checked)\n");
	}
}

static void test_lmtp_forms(void)
{
	check_inet("lmtp:inet:[127.0.0.1]:24", NULL, RELAY_TRANSPORT_LMTP, AF_INET, "127.0.0.1", 24,
		   "127.0.0.1[127.0.0.1]:24", "lmtp:127.0.0.1:24");
	check_inet("lmtp:[127.0.0.1]:24", NULL, RELAY_TRANSPORT_LMTP, AF_INET, "127.0.0.1", 24,
		   "127.0.0.1[127.0.0.1]:24", "lmtp:127.0.0.1:24");
	/* lmtp's default port is 24 (lmtp_tcp_port), with or without inet: */
	check_inet("lmtp:[127.0.0.1]", NULL, RELAY_TRANSPORT_LMTP, AF_INET, "127.0.0.1", 24,
		   "127.0.0.1[127.0.0.1]:24", "lmtp:127.0.0.1:24");
	check_inet("lmtp:inet:127.0.0.1", NULL, RELAY_TRANSPORT_LMTP, AF_INET, "127.0.0.1", 24,
		   "127.0.0.1[127.0.0.1]:24", "lmtp:127.0.0.1:24");
	check_inet("lmtp:inet:[ipv6:::1]:2003", NULL, RELAY_TRANSPORT_LMTP, AF_INET6, "::1", 2003,
		   "::1[::1]:2003", "lmtp:[::1]:2003");
	check_inet("lmtp:[::1]:lmtp", NULL, RELAY_TRANSPORT_LMTP, AF_INET6, "::1", 24,
		   "::1[::1]:24", "lmtp:[::1]:24");

	struct relay_nexthop h;
	CHECK_INT_EQ(parse("lmtp:unix:/run/dovecot/lmtp", NULL, &h), 0);
	CHECK_INT_EQ(h.kind, RELAY_TRANSPORT_LMTP);
	CHECK_INT_EQ(h.addr.ss_family, AF_UNIX);
	CHECK_STR_EQ(((struct sockaddr_un *)&h.addr)->sun_path, "/run/dovecot/lmtp");
	CHECK_INT_EQ(h.addrlen, offsetof(struct sockaddr_un, sun_path) + strlen("/run/dovecot/lmtp") + 1);
	CHECK_STR_EQ(h.name, "/run/dovecot/lmtp");
	CHECK_STR_EQ(h.key, "lmtp:unix:/run/dovecot/lmtp");

	/* the longest path sockaddr_un holds */
	char v[256], path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	snprintf(v, sizeof(v), "lmtp:unix:%s", path);
	CHECK_INT_EQ(parse(v, NULL, &h), 0);
	CHECK_STR_EQ(((struct sockaddr_un *)&h.addr)->sun_path, path);
	CHECK_INT_EQ(h.addrlen, sizeof(struct sockaddr_un));
	/* one byte more does not fit */
	snprintf(v, sizeof(v), "lmtp:unix:%sp", path);
	check_refused(v, NULL, "longer than 107 bytes");
}

static void check_reason(const char *value, enum relay_transport_kind kind, const char *status,
			 const char *text)
{
	struct relay_nexthop h;
	int rc = parse(value, NULL, &h);
	if (rc)
		fprintf(stderr, "  %s: %s\n", value, err);
	CHECK_INT_EQ(rc, 0);
	if (rc)
		return;
	CHECK_INT_EQ(h.kind, kind);
	CHECK_STR_EQ(h.status, status);
	CHECK_STR_EQ(h.text, text);
	CHECK_STR_EQ(h.name, "none");
	CHECK_STR_EQ(h.key, relay_transport_kind_name(kind));
	CHECK_INT_EQ(h.addrlen, 0);
}

static void test_error_retry_discard(void)
{
	check_reason("error:5.1.1 No such user", RELAY_TRANSPORT_ERROR, "5.1.1", "No such user");
	check_reason("error:  5.7.1   policy says no ", RELAY_TRANSPORT_ERROR, "5.7.1",
		     "policy says no ");
	/* no status: 5.0.0; no text: Postfix's "Address is undeliverable" */
	check_reason("error:mail for *.example.com is not deliverable", RELAY_TRANSPORT_ERROR,
		     "5.0.0", "mail for *.example.com is not deliverable");
	check_reason("error:", RELAY_TRANSPORT_ERROR, "5.0.0", "Address is undeliverable");
	check_reason("error", RELAY_TRANSPORT_ERROR, "5.0.0", "Address is undeliverable");
	check_reason("error:5.1.1", RELAY_TRANSPORT_ERROR, "5.1.1", "Address is undeliverable");
	check_reason("error:5.123.123 x", RELAY_TRANSPORT_ERROR, "5.123.123", "x");
	/* not RFC 3463 status codes (dsn_valid()): they stay in the text */
	check_reason("error:5.1.1234 x", RELAY_TRANSPORT_ERROR, "5.0.0", "5.1.1234 x");
	check_reason("error:3.1.1 x", RELAY_TRANSPORT_ERROR, "5.0.0", "3.1.1 x");
	check_reason("error:5.1.1x y", RELAY_TRANSPORT_ERROR, "5.0.0", "5.1.1x y");
	check_reason("error:5..1 y", RELAY_TRANSPORT_ERROR, "5.0.0", "5..1 y");
	/* the text keeps its own colons */
	check_reason("error:5.1.1 see: http://example.com/x", RELAY_TRANSPORT_ERROR, "5.1.1",
		     "see: http://example.com/x");
	check_reason("retry:4.3.2 try later", RELAY_TRANSPORT_RETRY, "4.3.2", "try later");
	check_reason("retry:", RELAY_TRANSPORT_RETRY, "4.0.0", "Address is undeliverable");
	check_reason("retry:maintenance", RELAY_TRANSPORT_RETRY, "4.0.0", "maintenance");
	check_reason("discard:", RELAY_TRANSPORT_DISCARD, "2.0.0", "");
	check_reason("discard", RELAY_TRANSPORT_DISCARD, "2.0.0", "");
	check_reason("discard:reason", RELAY_TRANSPORT_DISCARD, "2.0.0", "reason");

	/* a reason longer than the field is cut at a character boundary */
	char v[2048];
	size_t n = (size_t)snprintf(v, sizeof(v), "error:5.1.1 ");
	while (n + 2 < 1200) {
		v[n++] = '\xc3'; /* é */
		v[n++] = '\xa9';
	}
	v[n] = '\0';
	struct relay_nexthop h;
	CHECK_INT_EQ(parse(v, NULL, &h), 0);
	CHECK_INT_EQ(strlen(h.text), SPOOL_NEXTHOP_TEXT_MAX - 2);
	CHECK(memcmp(h.text, v + 12, SPOOL_NEXTHOP_TEXT_MAX - 2) == 0);
}

static void test_defaults(void)
{
	struct relay_nexthop d, dl, du, h;
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.1]:2525", false, &d, err, sizeof(err)), 0);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.2]", true, &dl, err, sizeof(err)), 0);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("unix:/run/lmtp", true, &du, err, sizeof(err)), 0);

	/* ":" and "" change nothing: the default itself */
	CHECK_INT_EQ(parse(":", &d, &h), 0);
	CHECK(memcmp(&h, &d, sizeof(h)) == 0);
	CHECK_INT_EQ(parse("", &d, &h), 0);
	CHECK(memcmp(&h, &d, sizeof(h)) == 0);
	CHECK_INT_EQ(parse(": ", &du, &h), 0);
	CHECK(memcmp(&h, &du, sizeof(h)) == 0);

	/* transport only: the default's address (port included) */
	check_inet("smtp:", &d, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.1", 2525,
		   "192.0.2.1[192.0.2.1]:2525", "smtp:192.0.2.1:2525");
	check_inet("relay", &dl, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.2", 24,
		   "192.0.2.2[192.0.2.2]:24", "smtp:192.0.2.2:24");
	check_inet("lmtp:", &d, RELAY_TRANSPORT_LMTP, AF_INET, "192.0.2.1", 2525,
		   "192.0.2.1[192.0.2.1]:2525", "lmtp:192.0.2.1:2525");
	CHECK_INT_EQ(parse("lmtp:", &du, &h), 0);
	CHECK_STR_EQ(h.key, "lmtp:unix:/run/lmtp");
	CHECK_INT_EQ(h.addrlen, du.addrlen);

	/* next hop only: the default's transport, and its default port */
	check_inet(":[192.0.2.7]", &d, RELAY_TRANSPORT_SMTP, AF_INET, "192.0.2.7", 25,
		   "192.0.2.7[192.0.2.7]:25", "smtp:192.0.2.7:25");
	check_inet(":[192.0.2.7]", &dl, RELAY_TRANSPORT_LMTP, AF_INET, "192.0.2.7", 24,
		   "192.0.2.7[192.0.2.7]:24", "lmtp:192.0.2.7:24");
	check_inet(":[2001:db8::7]:26", &du, RELAY_TRANSPORT_LMTP, AF_INET6, "2001:db8::7", 26,
		   "2001:db8::7[2001:db8::7]:26", "lmtp:[2001:db8::7]:26");
	CHECK_INT_EQ(parse(":unix:/run/other", &dl, &h), 0);
	CHECK_STR_EQ(h.key, "lmtp:unix:/run/other");

	/* error/retry/discard need no default */
	check_reason("error:5.1.1 x", RELAY_TRANSPORT_ERROR, "5.1.1", "x");

	/* what cannot be completed */
	check_refused(":", NULL, "no transport and no default");
	check_refused(":[192.0.2.1]", NULL, "no transport and no default");
	check_refused("smtp:", NULL, "DNS");
	check_refused("lmtp", NULL, "DNS");
	struct relay_nexthop e;
	CHECK_INT_EQ(parse("error:", NULL, &e), 0);
	check_refused("smtp:", &e, "no default address");
	check_refused("smtp:", &du, "only lmtp");
	check_refused("relay:", &du, "only lmtp");
}

static void test_refusals(void)
{
	check_refused("uucp:example", NULL, "unknown transport \"uucp\"");
	check_refused("local:", NULL, "unknown transport");
	check_refused("SMTP:[192.0.2.1]", NULL, "unknown transport \"SMTP\"");
	check_refused("DUNNO", NULL, "unknown transport \"DUNNO\"");
	check_refused("OK", NULL, "unknown transport");
	check_refused(" smtp:[192.0.2.1]", NULL, "unknown transport");
	/* host names need DNS */
	check_refused("smtp:mail.example.com", NULL, "DNS (an MX lookup)");
	check_refused("smtp:mail.example.com:25", NULL, "DNS");
	check_refused("smtp:[mail.example.com]", NULL, "DNS (an address lookup)");
	check_refused("relay:[mx1]:2525", NULL, "DNS");
	check_refused("lmtp:inet:localhost:24", NULL, "DNS");
	check_refused("lmtp:inet:[localhost]", NULL, "DNS");
	/* ports */
	check_refused("smtp:[192.0.2.1]:0", NULL, "out of range");
	check_refused("smtp:[192.0.2.1]:65536", NULL, "out of range");
	check_refused("smtp:[192.0.2.1]:99999999999999999999", NULL, "out of range");
	check_refused("smtp:[192.0.2.1]:", NULL, "empty port");
	check_refused("smtp:192.0.2.1:", NULL, "empty port");
	check_refused("smtp:[192.0.2.1]:-1", NULL, "bad port");
	check_refused("smtp:[192.0.2.1]:+25", NULL, "bad port");
	check_refused("smtp:[192.0.2.1]:no-such-service-here", NULL, "unknown service");
	check_refused("smtp:[192.0.2.1]:25:25", NULL, "bad port");
	/* addresses */
	check_refused("smtp:2001:db8::1", NULL, "must be in brackets");
	check_refused("smtp:[2001:db8::1", NULL, "without ']'");
	check_refused("smtp:[192.0.2.1]x", NULL, "only \":port\"");
	check_refused("smtp:[192.0.2.1]]", NULL, "only \":port\"");
	check_refused("smtp:[]", NULL, "no host");
	check_refused("smtp:[ipv6:]", NULL, "no host");
	check_refused("smtp::25", NULL, "no host");
	check_refused("smtp:999.1.1.1", NULL, "not a numeric");
	check_refused("smtp:[192.0.2.1/24]", NULL, "not a numeric");
	check_refused("smtp:[fe80::1%eth0]", NULL, "not a numeric");
	check_refused("smtp:@@@", NULL, "not a numeric");
	check_refused("smtp:[192.0.2.1], [192.0.2.2]", NULL, "list of destinations");
	check_refused("smtp:[192.0.2.1],[192.0.2.2]", NULL, "list of destinations");
	/* unix: is LMTP's */
	check_refused("smtp:unix:/run/x", NULL, "LMTP syntax");
	check_refused("relay:inet:[192.0.2.1]", NULL, "LMTP syntax");
	check_refused("lmtp:unix:", NULL, "without a path");
	check_refused("lmtp:unix:private/dovecot-lmtp", NULL, "must be absolute");
	/* garbage */
	check_refused("error:5.1.1 a\r\nb", NULL, "control character 0x0d");
	check_refused("smtp:[192.0.2.1]\n", NULL, "control character");
	char big[TABLE_VALUE_MAX + 16];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "error:", 6);
	check_refused(big, NULL, "longer than");
	char host[400];
	snprintf(host, sizeof(host), "smtp:[%0300d]", 1);
	check_refused(host, NULL, "too long");
}

static void test_relayhost(void)
{
	struct relay_nexthop h;
	char a[INET6_ADDRSTRLEN];
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.1]:25", false, &h, err, sizeof(err)), 0);
	CHECK_STR_EQ(h.key, "smtp:192.0.2.1:25");
	CHECK_INT_EQ(relay_nexthop_from_relayhost("192.0.2.1", false, &h, err, sizeof(err)), 0);
	CHECK_STR_EQ(h.name, "192.0.2.1[192.0.2.1]:25");
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[::1]:2525", false, &h, err, sizeof(err)), 0);
	CHECK_INT_EQ(h.kind, RELAY_TRANSPORT_SMTP);
	CHECK_STR_EQ(addr_of(&h, a, sizeof(a)), "::1");
	CHECK_INT_EQ(port_of(&h), 2525);
	CHECK_STR_EQ(h.key, "smtp:[::1]:2525");
	CHECK_INT_EQ(relay_nexthop_from_relayhost(" [ipv6:::1] ", false, &h, err, sizeof(err)), 0);
	CHECK_INT_EQ(port_of(&h), 25);
	/* LMTP: port 24 by default, and inet:/unix: */
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[127.0.0.1]", true, &h, err, sizeof(err)), 0);
	CHECK_INT_EQ(h.kind, RELAY_TRANSPORT_LMTP);
	CHECK_STR_EQ(h.key, "lmtp:127.0.0.1:24");
	CHECK_INT_EQ(relay_nexthop_from_relayhost("inet:[127.0.0.1]:2424", true, &h, err, sizeof(err)), 0);
	CHECK_STR_EQ(h.key, "lmtp:127.0.0.1:2424");
	CHECK_INT_EQ(relay_nexthop_from_relayhost("unix:/run/dovecot/lmtp", true, &h, err, sizeof(err)), 0);
	CHECK_STR_EQ(h.key, "lmtp:unix:/run/dovecot/lmtp");
	/* refusals */
	CHECK_INT_EQ(relay_nexthop_from_relayhost("", false, &h, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "empty") != NULL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("  ", false, &h, err, sizeof(err)), -EINVAL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost(NULL, false, &h, err, sizeof(err)), -EINVAL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("mx.example.com", false, &h, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "DNS") != NULL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[relay.example.com]:587", false, &h, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "DNS") != NULL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.1]:25, [192.0.2.2]:25", false, &h, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "list") != NULL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("unix:/run/x", false, &h, err, sizeof(err)), -EINVAL);
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.1]:smtpx", false, &h, err, sizeof(err)), -EINVAL);
	/* the names of the kinds */
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_SMTP), "smtp");
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_LMTP), "lmtp");
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_ERROR), "error");
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_RETRY), "retry");
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_DISCARD), "discard");
	CHECK_STR_EQ(relay_transport_kind_name(RELAY_TRANSPORT_KIND_MAX), "unknown");
}

/* ---- lookups ---- */

static struct tables_env *env;
static struct tables_reader *rd;
static char envdir[64];

static struct table *open_table(const char *spec)
{
	struct table *t = NULL;
	char e[256];
	if (table_open(rd, spec, &t, e, sizeof(e)) < 0) {
		fprintf(stderr, "table_open %s: %s\n", spec, e);
		exit(2);
	}
	return t;
}

/* Look rcpt up; expect rc, and on 1 the value and the matched key. */
static void check_lookup(struct table *const *maps, size_t n, const char *rcpt,
			 const struct relay_transport_opts *o, int want, const char *value,
			 const char *key)
{
	char val[TABLE_VALUE_MAX + 1] = "", matched[TABLE_KEY_MAX + 1] = "?";
	int rc = relay_transport_lookup(maps, n, rcpt, o, val, sizeof(val), matched,
					sizeof(matched));
	if (rc != want)
		fprintf(stderr, "  lookup \"%s\": rc %d (want %d) value \"%s\"\n", rcpt, rc, want,
			val);
	CHECK_INT_EQ(rc, want);
	if (rc == 1 && want == 1) {
		CHECK_STR_EQ(val, value);
		CHECK_STR_EQ(matched, key);
	}
	if (rc != 1)
		CHECK_STR_EQ(matched, "");
}

static void test_lookup_order(void)
{
	CHECK_INT_EQ(tt_build(env, "hash:/etc/postfix/transport",
			      "full+x@example.com smtp:[192.0.2.1]\n"
			      "full@example.com   smtp:[192.0.2.2]\n"
			      "example.com        smtp:[192.0.2.3]\n"
			      "parent.org         smtp:[192.0.2.4]\n"
			      ".dotparent.net     smtp:[192.0.2.5]\n"
			      "dunno.example      DUNNO\n"
			      "postmaster@example.com smtp:[192.0.2.6]\n"
			      "owner-list@example.com smtp:[192.0.2.7]\n"
			      "owner@example.com  smtp:[192.0.2.8]\n"
			      "*                  smtp:[192.0.2.9]\n"),
		     0);
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	struct table *t = open_table("hash:/etc/postfix/transport");
	struct table *maps[] = { t };
	struct relay_transport_opts plus = { .recipient_delimiter = "+",
					     .parent_matches_subdomains = true };
	struct relay_transport_opts none = { .recipient_delimiter = NULL,
					     .parent_matches_subdomains = true };
	struct relay_transport_opts dot = { .recipient_delimiter = "+",
					    .parent_matches_subdomains = false };
	struct relay_transport_opts multi = { .recipient_delimiter = "+-",
					      .parent_matches_subdomains = true };

	/* full address beats the stripped one beats the domain beats parents beat `*` */
	check_lookup(maps, 1, "full+x@example.com", &plus, 1, "smtp:[192.0.2.1]",
		     "full+x@example.com");
	check_lookup(maps, 1, "full+y@example.com", &plus, 1, "smtp:[192.0.2.2]",
		     "full@example.com");
	check_lookup(maps, 1, "full@example.com", &plus, 1, "smtp:[192.0.2.2]",
		     "full@example.com");
	check_lookup(maps, 1, "FULL+Y@Example.COM", &plus, 1, "smtp:[192.0.2.2]",
		     "FULL@Example.COM");
	check_lookup(maps, 1, "other@example.com", &plus, 1, "smtp:[192.0.2.3]", "example.com");
	check_lookup(maps, 1, "a@sub.deep.parent.org", &plus, 1, "smtp:[192.0.2.4]",
		     "parent.org");
	check_lookup(maps, 1, "a@parent.org", &plus, 1, "smtp:[192.0.2.4]", "parent.org");
	check_lookup(maps, 1, "a@nowhere.test", &plus, 1, "smtp:[192.0.2.9]", "*");
	/* without a delimiter the extension is part of the local part */
	check_lookup(maps, 1, "full+y@example.com", &none, 1, "smtp:[192.0.2.3]", "example.com");
	check_lookup(maps, 1, "full+y@example.com", &(struct relay_transport_opts){ "", true }, 1,
		     "smtp:[192.0.2.3]", "example.com");
	/* several delimiters; split_addr()'s exceptions */
	check_lookup(maps, 1, "full-y@example.com", &multi, 1, "smtp:[192.0.2.2]",
		     "full@example.com");
	check_lookup(maps, 1, "postmaster+x@example.com", &plus, 1, "smtp:[192.0.2.6]",
		     "postmaster@example.com");
	check_lookup(maps, 1, "owner-list@example.com", &multi, 1, "smtp:[192.0.2.7]",
		     "owner-list@example.com");
	check_lookup(maps, 1, "owner-other@example.com", &multi, 1, "smtp:[192.0.2.3]",
		     "example.com");
	check_lookup(maps, 1, "+x@example.com", &plus, 1, "smtp:[192.0.2.3]", "example.com");
	/* parent_domain_matches_subdomains without transport_maps: only ".domain" matches
	 * subdomains, and "domain" only itself */
	check_lookup(maps, 1, "a@x.dotparent.net", &plus, 1, "smtp:[192.0.2.9]", "*");
	check_lookup(maps, 1, "a@x.dotparent.net", &dot, 1, "smtp:[192.0.2.5]",
		     ".dotparent.net");
	check_lookup(maps, 1, "a@y.x.dotparent.net", &dot, 1, "smtp:[192.0.2.5]",
		     ".dotparent.net");
	check_lookup(maps, 1, "a@dotparent.net", &dot, 1, "smtp:[192.0.2.9]", "*");
	check_lookup(maps, 1, "a@parent.org", &dot, 1, "smtp:[192.0.2.4]", "parent.org");
	check_lookup(maps, 1, "a@sub.parent.org", &dot, 1, "smtp:[192.0.2.9]", "*");
	/* NULL opts: Postfix's defaults (no delimiter, parent matching on) */
	check_lookup(maps, 1, "a@sub.parent.org", NULL, 1, "smtp:[192.0.2.4]", "parent.org");
	/* DUNNO means nothing special in transport maps: it is a value (a transport named
	 * "DUNNO", which the parser then refuses) */
	check_lookup(maps, 1, "a@dunno.example", &plus, 1, "DUNNO", "dunno.example");
	/* no domain: the address, then `*`; the null address is never looked up */
	check_lookup(maps, 1, "postmaster", &plus, 1, "smtp:[192.0.2.9]", "*");
	check_lookup(maps, 1, "a@", &plus, 1, "smtp:[192.0.2.9]", "*");
	check_lookup(maps, 1, "", &plus, 0, NULL, NULL);
	check_lookup(maps, 0, "a@example.com", &plus, 0, NULL, NULL);
	/* matched may be NULL */
	char val[TABLE_VALUE_MAX + 1];
	CHECK_INT_EQ(relay_transport_lookup(maps, 1, "a@example.com", &plus, val, sizeof(val),
					    NULL, 0), 1);
	CHECK_STR_EQ(val, "smtp:[192.0.2.3]");

	/* without `*`, nothing found is 0 */
	CHECK_INT_EQ(tt_build(env, "hash:/etc/postfix/nowild", "example.com relay:[192.0.2.3]\n"),
		     0);
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	struct table *nw = open_table("hash:/etc/postfix/nowild");
	check_lookup(&nw, 1, "a@example.org", &plus, 0, NULL, NULL);
	check_lookup(&nw, 1, "a@mail.example.com", &plus, 1, "relay:[192.0.2.3]", "example.com");
	table_close(nw);
	table_close(t);
}

static void test_two_tables(void)
{
	/* Postfix's maps_find() tries each key in every table before the next key: the
	 * second table's user@domain beats the first table's domain, and the first table's
	 * `*` loses to the second table's domain. The same key in both: the first wins. */
	CHECK_INT_EQ(tt_build(env, "hash:/t/a",
			      "example.com smtp:[198.51.100.1]\n"
			      "both.test smtp:[198.51.100.3]\n"
			      "* smtp:[198.51.100.9]\n"), 0);
	CHECK_INT_EQ(tt_build(env, "hash:/t/b",
			      "user@example.com smtp:[198.51.100.2]\n"
			      "both.test smtp:[198.51.100.4]\n"
			      "other.test smtp:[198.51.100.5]\n"), 0);
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	struct table *a = open_table("hash:/t/a"), *b = open_table("hash:/t/b");
	struct table *maps[] = { a, b };
	struct relay_transport_opts o = { .recipient_delimiter = "+",
					  .parent_matches_subdomains = true };
	check_lookup(maps, 2, "user@example.com", &o, 1, "smtp:[198.51.100.2]", "user@example.com");
	check_lookup(maps, 2, "user+x@example.com", &o, 1, "smtp:[198.51.100.2]",
		     "user@example.com");
	check_lookup(maps, 2, "other@example.com", &o, 1, "smtp:[198.51.100.1]", "example.com");
	check_lookup(maps, 2, "x@both.test", &o, 1, "smtp:[198.51.100.3]", "both.test");
	check_lookup(maps, 2, "x@sub.other.test", &o, 1, "smtp:[198.51.100.5]", "other.test");
	check_lookup(maps, 2, "x@unknown.test", &o, 1, "smtp:[198.51.100.9]", "*");
	struct table *rev[] = { b, a };
	check_lookup(rev, 2, "x@both.test", &o, 1, "smtp:[198.51.100.4]", "both.test");

	/* a missing table is an error, never "not found" */
	struct table *missing = open_table("hash:/t/never-built");
	struct table *m1[] = { missing, a };
	check_lookup(m1, 2, "user@example.com", &o, -ENOENT, NULL, NULL);
	struct table *m2[] = { a, missing };
	check_lookup(m2, 2, "x@unknown.test", &o, -ENOENT, NULL, NULL);
	/* ...unless an earlier table answered first (maps_find() stops there) */
	struct table *m3[] = { b, missing };
	check_lookup(m3, 2, "user@example.com", &o, 1, "smtp:[198.51.100.2]", "user@example.com");
	table_close(missing);
	table_close(a);
	table_close(b);
}

static void test_patterns(void)
{
	CHECK_INT_EQ(tt_build(env, "regexp:/etc/postfix/transport.re",
			      "/^user@example\\.com$/ smtp:[203.0.113.1]\n"
			      "/^example\\.com$/ error:5.1.2 domain key given to regexp\n"
			      "/^.*@sub\\.example\\.com$/ smtp:[203.0.113.2]\n"
			      "/^\\*$/ smtp:[203.0.113.9]\n"), 0);
	CHECK_INT_EQ(tt_build(env, "pcre:/etc/postfix/transport.pcre",
			      "/^lmtp@pcre\\.test$/ lmtp:unix:/run/lmtp\n"
			      "/^pcre\\.test$/ error:5.1.2 domain key given to pcre\n"), 0);
	CHECK_INT_EQ(tt_build(env, "hash:/etc/postfix/after", "user@example.com smtp:[192.0.2.50]\n"
			      "example.com smtp:[192.0.2.51]\n"
			      "pcre.test smtp:[192.0.2.52]\n"), 0);
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	struct table *re = open_table("regexp:/etc/postfix/transport.re");
	struct table *pc = open_table("pcre:/etc/postfix/transport.pcre");
	struct table *h = open_table("hash:/etc/postfix/after");
	struct relay_transport_opts o = { .recipient_delimiter = "+",
					  .parent_matches_subdomains = true };
	struct table *m[] = { re, pc, h };
	/* the whole address goes to the pattern tables first */
	check_lookup(m, 3, "user@example.com", &o, 1, "smtp:[203.0.113.1]", "user@example.com");
	check_lookup(m, 3, "anyone@sub.example.com", &o, 1, "smtp:[203.0.113.2]",
		     "anyone@sub.example.com");
	check_lookup(m, 3, "LMTP@PCRE.TEST", &o, 1, "lmtp:unix:/run/lmtp", "LMTP@PCRE.TEST");
	/* the stripped address and the domain do not: the hash table answers them */
	check_lookup(m, 3, "user+x@example.com", &o, 1, "smtp:[192.0.2.50]", "user@example.com");
	check_lookup(m, 3, "other@example.com", &o, 1, "smtp:[192.0.2.51]", "example.com");
	check_lookup(m, 3, "other@pcre.test", &o, 1, "smtp:[192.0.2.52]", "pcre.test");
	/* `*` is looked up whole (FULL), so a pattern may answer it */
	check_lookup(m, 3, "x@elsewhere.test", &o, 1, "smtp:[203.0.113.9]", "*");
	struct table *only[] = { re };
	check_lookup(only, 1, "other@example.com", &o, 1, "smtp:[203.0.113.9]", "*");
	struct table *onlypc[] = { pc };
	check_lookup(onlypc, 1, "lmtp+ext@pcre.test", &o, 0, NULL, NULL);
	check_lookup(onlypc, 1, "other@pcre.test", &o, 0, NULL, NULL);
	table_close(re);
	table_close(pc);
	table_close(h);
}

static void test_inline_static(void)
{
	struct table *in = open_table("inline:{ {user@inline.test = smtp:[192.0.2.77]:2525}, "
				      "inline.test=discard:, {.sub.test = error:5.1.1 gone} }");
	struct relay_transport_opts dot = { .recipient_delimiter = "+",
					    .parent_matches_subdomains = false };
	check_lookup(&in, 1, "User+x@Inline.Test", &dot, 1, "smtp:[192.0.2.77]:2525",
		     "User@Inline.Test");
	check_lookup(&in, 1, "b@inline.test", &dot, 1, "discard:", "inline.test");
	check_lookup(&in, 1, "b@a.sub.test", &dot, 1, "error:5.1.1 gone", ".sub.test");
	check_lookup(&in, 1, "b@sub.test", &dot, 0, NULL, NULL);

	/* static: answers the first key it is asked: the whole address */
	struct table *st = open_table("static:relay:[192.0.2.88]");
	struct table *m[] = { in, st };
	check_lookup(m, 2, "user+x@inline.test", &dot, 1, "relay:[192.0.2.88]",
		     "user+x@inline.test");
	struct table *m2[] = { st, in };
	check_lookup(m2, 2, "b@nowhere", &dot, 1, "relay:[192.0.2.88]", "b@nowhere");

	/* an empty result is an error (maps_find(): "should return NO RESULT in case of NOT
	 * FOUND"), not a match and not "not found" */
	struct table *empty = open_table("inline:{ {empty.test=}, x=y }");
	check_lookup(&empty, 1, "a@empty.test", &dot, -EBADMSG, NULL, NULL);
	check_lookup(&empty, 1, "a@other.test", &dot, 0, NULL, NULL);
	table_close(empty);
	table_close(st);
	table_close(in);
}

/* Every value a lookup returns in these tests parses (or is refused) without surprises:
 * the two halves together, as the relay uses them. */
static void test_lookup_then_parse(void)
{
	struct table *in = open_table("inline:{ {a@x.test = :[192.0.2.5]}, {x.test = lmtp:}, "
				      "{* = error:5.1.1 Unknown user} }");
	struct relay_nexthop d, h;
	CHECK_INT_EQ(relay_nexthop_from_relayhost("[192.0.2.1]", false, &d, err, sizeof(err)), 0);
	char val[TABLE_VALUE_MAX + 1];
	CHECK_INT_EQ(relay_transport_lookup(&in, 1, "a@x.test", NULL, val, sizeof(val), NULL, 0), 1);
	CHECK_INT_EQ(parse(val, &d, &h), 0);
	CHECK_STR_EQ(h.key, "smtp:192.0.2.5:25");
	CHECK_INT_EQ(relay_transport_lookup(&in, 1, "b@x.test", NULL, val, sizeof(val), NULL, 0), 1);
	CHECK_INT_EQ(parse(val, &d, &h), 0);
	CHECK_STR_EQ(h.key, "lmtp:192.0.2.1:25");
	CHECK_INT_EQ(relay_transport_lookup(&in, 1, "b@y.test", NULL, val, sizeof(val), NULL, 0), 1);
	CHECK_INT_EQ(parse(val, &d, &h), 0);
	CHECK_INT_EQ(h.kind, RELAY_TRANSPORT_ERROR);
	CHECK_STR_EQ(h.status, "5.1.1");
	CHECK_STR_EQ(h.text, "Unknown user");
	table_close(in);
}

int main(void)
{
	RUN_TEST(test_smtp_forms);
	RUN_TEST(test_lmtp_forms);
	RUN_TEST(test_error_retry_discard);
	RUN_TEST(test_defaults);
	RUN_TEST(test_refusals);
	RUN_TEST(test_relayhost);

	env = tt_env_open(envdir);
	if (tables_reader_open(env, &rd) < 0) {
		fprintf(stderr, "tables_reader_open failed\n");
		return 2;
	}
	RUN_TEST(test_lookup_order);
	RUN_TEST(test_two_tables);
	RUN_TEST(test_patterns);
	RUN_TEST(test_inline_static);
	RUN_TEST(test_lookup_then_parse);
	tables_reader_close(rd);
	tt_env_remove(env, envdir);
	return TEST_RESULT();
}
