/* The built-in relay policy: never an open relay, Postfix's wording. */
#include "smtp/smtp_relay_policy.h"

#include "testing.h"

static struct netlist *mynetworks;
static struct domain_list *mydestination, *relay_domains;

static bool check(const char *client, const char *rcpt, char *reply, size_t cap)
{
	struct smtp_relay_policy p = {
		.mynetworks = mynetworks,
		.mydestination = mydestination,
		.relay_domains = relay_domains,
		.myorigin = "mx.example.net",
	};
	struct mx_inet_addr addr;
	struct smtp_verdict v = { 0 };
	char buf[512];
	if (!mx_inet_parse(client, &addr))
		abort();
	bool ok = smtp_relay_policy_check(&p, &addr, mx_span_cstr(rcpt), &v, buf, sizeof(buf));
	if (reply)
		snprintf(reply, cap, "%u %s", v.code, ok ? "" : v.text);
	return ok;
}

static void test_outside_mynetworks(void)
{
	char reply[600];
	CHECK(check("198.51.100.7", "user@mx.example.net", NULL, 0));
	CHECK(check("198.51.100.7", "User@MX.Example.NET", NULL, 0));
	CHECK(check("198.51.100.7", "user@mx.example.net.", NULL, 0));
	CHECK(check("198.51.100.7", "postmaster", NULL, 0)); /* qualified with myorigin */
	CHECK(check("198.51.100.7", "user@relay.example", NULL, 0));
	/* relay_domains is in parent_domain_matches_subdomains */
	CHECK(check("198.51.100.7", "user@deep.sub.relay.example", NULL, 0));
	/* mydestination is not */
	CHECK(!check("198.51.100.7", "user@sub.mx.example.net", reply, sizeof(reply)));
	CHECK(!check("198.51.100.7", "user@example.org", reply, sizeof(reply)));
	CHECK_STR_EQ(reply, "554 5.7.1 <user@example.org>: Relay access denied");
	/* a look-alike suffix is not a subdomain */
	CHECK(!check("198.51.100.7", "user@notrelay.example", NULL, 0));
	/* the '@' inside a quoted local part does not start the domain */
	CHECK(!check("198.51.100.7", "\"a@mx.example.net\"@evil.example", reply, sizeof(reply)));
	CHECK_STR_EQ(reply, "554 5.7.1 <\"a@mx.example.net\"@evil.example>: Relay access denied");
	CHECK(check("198.51.100.7", "\"x@evil.example\"@mx.example.net", NULL, 0));
	/* an address literal is not one of our domains */
	CHECK(!check("198.51.100.7", "user@[192.0.2.1]", NULL, 0));
}

static void test_mynetworks(void)
{
	CHECK(check("192.0.2.77", "anyone@example.org", NULL, 0));
	CHECK(check("::ffff:192.0.2.77", "anyone@example.org", NULL, 0)); /* v4-mapped */
	CHECK(check("2001:db8::5", "anyone@example.org", NULL, 0));
	CHECK(!check("192.0.3.1", "anyone@example.org", NULL, 0));
	CHECK(!check("2001:db9::5", "anyone@example.org", NULL, 0));
}

static void test_address_domain(void)
{
	struct mx_span d = smtp_address_domain(mx_span_cstr("a@b@c.example"));
	CHECK_MEM_EQ(d.ptr, d.len, "c.example", 9);
	d = smtp_address_domain(mx_span_cstr("nodomain"));
	CHECK_INT_EQ(d.len, 0);
	d = smtp_address_domain(mx_span_cstr("\"q\\\"@x\"@y.example"));
	CHECK_MEM_EQ(d.ptr, d.len, "y.example", 9);
}

int main(void)
{
	char err[256];
	if (netlist_parse("192.0.2.0/24 [2001:db8::]/32", &mynetworks, err, sizeof(err)) ||
	    domain_list_parse("mx.example.net, localhost", false, &mydestination, err,
			      sizeof(err)) ||
	    domain_list_parse("relay.example", true, &relay_domains, err, sizeof(err))) {
		fprintf(stderr, "setup: %s\n", err);
		return 1;
	}
	RUN_TEST(test_outside_mynetworks);
	RUN_TEST(test_mynetworks);
	RUN_TEST(test_address_domain);
	netlist_free(mynetworks);
	domain_list_free(mydestination);
	domain_list_free(relay_domains);
	return TEST_RESULT();
}
