/* tables/table_access.c: the access(5) lookup order (postfix-semantics.md), on exact tables in
 * the LMDB store, inline tables, and pattern tables (which only see whole keys). */
#include <errno.h>

#include "tables/table_access.h"
#include "tables_test_util.h"
#include "testing.h"

static char trace_buf[4096];

static void trace(void *ctx, const char *key, int result, const char *value)
{
	(void)ctx;
	size_t n = strlen(trace_buf);
	snprintf(trace_buf + n, sizeof(trace_buf) - n, "%s%s%s%s", n ? " " : "", key,
		 result == 1 ? "=" : result < 0 ? "!" : "", result == 1 ? value : "");
}

enum kind { ADDR, DOMAIN, CLIENT };

/* Run one lookup; returns the trace "key key=value ..." and checks the result code. */
static const char *run(struct table *t, enum kind k, const char *a, const char *b,
		       const struct table_access_opts *o, int want_rc)
{
	char val[TABLE_VALUE_MAX + 1], matched[TABLE_KEY_MAX + 1];
	struct table_access_query q = { .opts = o, .val = val, .vallen = sizeof(val),
					.matched = matched, .matchedlen = sizeof(matched),
					.trace = trace, .trace_ctx = NULL };
	trace_buf[0] = '\0';
	int rc = k == ADDR ? table_access_address(t, a, &q)
	       : k == DOMAIN ? table_access_domain(t, a, &q)
			     : table_access_client(t, a, b, &q);
	CHECK_INT_EQ(rc, want_rc);
	return trace_buf;
}

static const struct table_access_opts plus = { .recipient_delimiter = "+",
					       .parent_matches_subdomains = true };
static const struct table_access_opts nodelim = { .parent_matches_subdomains = true };
static const struct table_access_opts dotstyle = { .recipient_delimiter = "+-",
						   .parent_matches_subdomains = false };

static void test_address_order(void)
{
	char dir[64];
	struct tables_env *env = tt_env_open(dir);
	CHECK_INT_EQ(tt_build(env, "hash:empty", "nothing here\n"), 0);
	struct tables_reader *rd;
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	struct table *t;
	char err[200];
	CHECK_INT_EQ(table_open(rd, "hash:empty", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, ADDR, "user+ext@mail.example.com", NULL, &plus, 0),
		     "user+ext@mail.example.com user@mail.example.com mail.example.com "
		     "example.com com user+ext@ user@");
	/* Without recipient_delimiter (Postfix's default) the extension is part of the user. */
	CHECK_STR_EQ(run(t, ADDR, "user+ext@example.com", NULL, &nodelim, 0),
		     "user+ext@example.com example.com com user+ext@");
	/* Several delimiter characters; parents as ".domain" without parent matching. */
	CHECK_STR_EQ(run(t, ADDR, "a-b+c@x.example.org", NULL, &dotstyle, 0),
		     "a-b+c@x.example.org a@x.example.org x.example.org .example.org .org "
		     "a-b+c@ a@");
	/* postmaster, owner-*, *-request are never split (Postfix's split_addr()). */
	CHECK_STR_EQ(run(t, ADDR, "owner-list@l.org", NULL, &dotstyle, 0),
		     "owner-list@l.org l.org .org owner-list@");
	CHECK_STR_EQ(run(t, ADDR, "list-request@l.org", NULL, &dotstyle, 0),
		     "list-request@l.org l.org .org list-request@");
	CHECK_STR_EQ(run(t, ADDR, "+lead@l.org", NULL, &plus, 0), "+lead@l.org l.org org +lead@");
	/* The null sender. */
	CHECK_STR_EQ(run(t, ADDR, "", NULL, &plus, 0), "<>");
	struct table_access_opts nk = plus;
	nk.null_key = "<nullsender>";
	CHECK_STR_EQ(run(t, ADDR, "", NULL, &nk, 0), "<nullsender>");
	/* An address without a domain. */
	CHECK_STR_EQ(run(t, ADDR, "joe+x", NULL, &plus, 0), "joe+x joe");
	CHECK_STR_EQ(run(t, DOMAIN, "a.b.example.com", NULL, &plus, 0),
		     "a.b.example.com b.example.com example.com com");
	CHECK_STR_EQ(run(t, DOMAIN, "a.b.example.com", NULL, &dotstyle, 0),
		     "a.b.example.com .b.example.com .example.com .com");
	table_close(t);
	tables_reader_close(rd);
	tt_env_remove(env, dir);
}

static void test_client_order(void)
{
	struct table *t;
	char err[200];
	CHECK_INT_EQ(table_open(NULL, "inline:{ nothing=here }", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, CLIENT, "mail.example.com", "192.0.2.10", &plus, 0),
		     "mail.example.com example.com com 192.0.2.10 192.0.2 192.0 192");
	CHECK_STR_EQ(run(t, CLIENT, NULL, "2001:db8:0:0:1::5", &plus, 0),
		     "2001:db8::1:0:0:5 2001:db8::1:0:0 2001:db8::1:0 2001:db8::1 2001:db8: "
		     "2001:db8 2001");
	CHECK_STR_EQ(run(t, CLIENT, "", "2001:DB8::1", &plus, 0),
		     "2001:db8::1 2001:db8: 2001:db8 2001");
	/* A dual-stack socket's IPv4-mapped address is the IPv4 client. */
	CHECK_STR_EQ(run(t, CLIENT, NULL, "::ffff:10.1.2.3", &plus, 0), "10.1.2.3 10.1.2 10.1 10");
	table_close(t);
}

static void test_matches_and_dunno(void)
{
	char dir[64];
	struct tables_env *env = tt_env_open(dir);
	CHECK_INT_EQ(tt_build(env, "hash:access",
			      "Example.COM        REJECT domain\n"
			      "user@example.com   DUNNO\n"
			      "bob@               OK local part\n"
			      "192.0.2            REJECT net\n"
			      "192.0.2.7          DUNNO\n"
			      "2001:db8:          REJECT v6 net\n"
			      "good.example.org   OK\n"),
		     0);
	struct tables_reader *rd;
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	struct table *t;
	char err[200];
	CHECK_INT_EQ(table_open(rd, "hash:access", &t, err, sizeof(err)), 0);
	/* The domain (folded) matches subdomains through parent matching. */
	CHECK_STR_EQ(run(t, ADDR, "Joe@Mail.Example.Com", NULL, &plus, 1),
		     "Joe@Mail.Example.Com Mail.Example.Com Example.Com=REJECT domain");
	/* A matched DUNNO stops the search: the domain's REJECT is never reached. */
	CHECK_STR_EQ(run(t, ADDR, "user+tag@example.com", NULL, &plus, 1),
		     "user+tag@example.com user@example.com=DUNNO");
	/* Without the delimiter, user+tag@example.com falls through to the domain. */
	CHECK_STR_EQ(run(t, ADDR, "user+tag@example.com", NULL, &nodelim, 1),
		     "user+tag@example.com example.com=REJECT domain");
	CHECK_STR_EQ(run(t, ADDR, "bob+x@other.net", NULL, &plus, 1),
		     "bob+x@other.net bob@other.net other.net net bob+x@ bob@=OK local part");
	CHECK_STR_EQ(run(t, CLIENT, "host.good.example.org", "192.0.2.7", &plus, 1),
		     "host.good.example.org good.example.org=OK");
	CHECK_STR_EQ(run(t, CLIENT, "unknown", "192.0.2.7", &plus, 1),
		     "unknown 192.0.2.7=DUNNO");
	CHECK_STR_EQ(run(t, CLIENT, NULL, "192.0.2.8", &plus, 1), "192.0.2.8 192.0.2=REJECT net");
	CHECK_STR_EQ(run(t, CLIENT, NULL, "2001:db8::8", &plus, 1),
		     "2001:db8::8 2001:db8:=REJECT v6 net");
	table_close(t);

	/* Pattern tables see only the whole keys (Postfix's FULL vs PARTIAL lookups). */
	CHECK_INT_EQ(tt_build(env, "pcre:p", "/^(.*)$/ SEEN $1\n"), 0);
	CHECK_INT_EQ(tt_build(env, "regexp:none", "/^nomatch$/ X\n"), 0);
	CHECK_INT_EQ(tt_build(env, "cidr:c", "10.0.0.0/8 TEN\n"), 0);
	CHECK_INT_EQ(table_open(rd, "regexp:none", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, ADDR, "u+e@a.example.com", NULL, &plus, 0), "u+e@a.example.com");
	CHECK_STR_EQ(run(t, CLIENT, "a.example.com", "10.1.2.3", &plus, 0),
		     "a.example.com 10.1.2.3");
	table_close(t);
	CHECK_INT_EQ(table_open(rd, "pcre:p", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, ADDR, "U+e@A.example.com", NULL, &plus, 1),
		     "U+e@A.example.com=SEEN U+e@A.example.com");
	table_close(t);
	CHECK_INT_EQ(table_open(rd, "cidr:c", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, CLIENT, "x.org", "10.1.2.3", &plus, 1), "x.org 10.1.2.3=TEN");
	table_close(t);

	/* An error stops the search and is returned, never "not found". */
	CHECK_INT_EQ(table_open(rd, "hash:missing", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(run(t, ADDR, "a@b.c", NULL, &plus, -ENOENT), "a@b.c!");
	CHECK_STR_EQ(run(t, CLIENT, "b.c", "1.2.3.4", &plus, -ENOENT), "b.c!");
	table_close(t);
	tables_reader_close(rd);
	tt_env_remove(env, dir);
}

int main(void)
{
	RUN_TEST(test_address_order);
	RUN_TEST(test_client_order);
	RUN_TEST(test_matches_and_dunno);
	return TEST_RESULT();
}
