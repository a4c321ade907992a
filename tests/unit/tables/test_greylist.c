/* tables/greylist.c and greylist_allowlist.c: postgrey's rules one by one (sender
 * substitutions, client networks, keys, records, the decision over time, the
 * auto-allowlist, instances, the action texts, the allowlists in postgrey's formats and
 * Debian's files, the request codec whole, byte by byte and cut at every offset). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tables/greylist.h"
#include "testing.h"

static const char *norm(const char *s)
{
	static char out[600];
	long n = greylist_sender_normalize(s, out, sizeof(out));
	return n < 0 ? "(error)" : out;
}

static void test_sender(void)
{
	CHECK_STR_EQ(norm(""), "");
	CHECK_STR_EQ(norm("postmaster"), "postmaster");
	CHECK_STR_EQ(norm("user@example.com"), "user@example.com");
	CHECK_STR_EQ(norm("User+list-123@Example.com"), "User@Example.com");
	CHECK_STR_EQ(norm("bounce-123-456@lists.example"), "bounce-#-#@lists.example");
	CHECK_STR_EQ(norm("user123@example.com"), "user123@example.com");
	CHECK_STR_EQ(norm("123@example.com"), "#@example.com");
	CHECK_STR_EQ(norm("a.12.b_34@x"), "a.#.b_34@x");
	CHECK_STR_EQ(norm("12abc@x"), "12abc@x");
	CHECK_STR_EQ(norm("1-2-3@x"), "#-#-#@x");
	CHECK_STR_EQ(norm("a@b@c"), "a@b@c");
	CHECK_STR_EQ(norm("@x"), "@x");
	CHECK_STR_EQ(norm("a@"), "a@");
	/* BATV: prvs=TAG=USER (standard), prvs=USER=TAG */
	CHECK_STR_EQ(norm("prvs=0123456789=joe@example.com"), "joe@example.com");
	CHECK_STR_EQ(norm("prvs=joe=0123abcdef@example.com"), "joe@example.com");
	/* both or neither look like tags: the standard's place */
	CHECK_STR_EQ(norm("prvs=0123456789=abcdef0123@x"), "abcdef0123@x");
	CHECK_STR_EQ(norm("prvs=a=b@x"), "b@x");
	/* not three fields (trailing empty ones do not count) */
	CHECK_STR_EQ(norm("prvs=a=b=c@x"), "prvs=a=b=c@x");
	CHECK_STR_EQ(norm("prvs=a=b=@x"), "b@x");
	CHECK_STR_EQ(norm("prvs=0123456789=@x"), "prvs=#=@x");
	CHECK_STR_EQ(norm("prvs=1=2=3=@x"), "prvs=#=#=#=@x");
	CHECK_STR_EQ(norm("prvs=@x"), "prvs=@x");
	CHECK_STR_EQ(norm("prvs==b@x"), "b@x");
	/* case matters: PRVS is not BATV, upper-case tags are not tags */
	CHECK_STR_EQ(norm("PRVS=0123456789=joe@x"), "PRVS=#=joe@x");
	CHECK_STR_EQ(norm("prvs=joe=ABCDEFGHIJ@x"), "ABCDEFGHIJ@x");
	/* the extension after BATV */
	CHECK_STR_EQ(norm("prvs=0123456789=joe+x@x"), "joe@x");
	/* bounded */
	char small[5];
	CHECK_INT_EQ(greylist_sender_normalize("abcd@x", small, sizeof(small)), -ENOSPC);
	CHECK_INT_EQ(greylist_sender_normalize("ab@x", small, sizeof(small)), 4);
}

static void test_keys(void)
{
	struct mx_inet_addr a;
	char out[64];
	mx_inet_parse("192.0.2.77", &a);
	greylist_client_net(&a, 24, 64, out, sizeof(out));
	CHECK_STR_EQ(out, "192.0.2.0");
	greylist_client_net(&a, 32, 64, out, sizeof(out));
	CHECK_STR_EQ(out, "192.0.2.77");
	greylist_client_net(&a, 20, 64, out, sizeof(out));
	CHECK_STR_EQ(out, "192.0.0.0");
	greylist_addr_format(&a, out, sizeof(out));
	CHECK_STR_EQ(out, "192.0.2.77");
	mx_inet_parse("2001:db8:0a:b::1", &a);
	greylist_addr_format(&a, out, sizeof(out));
	CHECK_STR_EQ(out, "2001:DB8:A:B:0:0:0:1");
	greylist_client_net(&a, 24, 64, out, sizeof(out));
	CHECK_STR_EQ(out, "2001:DB8:A:B:0:0:0:0");
	greylist_client_net(&a, 24, 48, out, sizeof(out));
	CHECK_STR_EQ(out, "2001:DB8:A:0:0:0:0:0");
	greylist_client_net(&a, 24, 128, out, sizeof(out));
	CHECK_STR_EQ(out, "2001:DB8:A:B:0:0:0:1");
	mx_inet_parse("::ffff:1.2.3.4", &a);
	greylist_addr_format(&a, out, sizeof(out));
	CHECK_STR_EQ(out, "0:0:0:0:0:FFFF:102:304");

	char key[GREYLIST_KEY_MAX + 1];
	size_t n = greylist_triplet_key("2001:DB8:A:B:0:0:0:0", "Joe@X.Example", "Rcpt@Y",
				       key, sizeof(key));
	CHECK_STR_EQ(key, "2001:db8:a:b:0:0:0:0/joe@x.example/rcpt@y");
	CHECK_INT_EQ(n, strlen(key));
	/* no blanks or control characters in a key (memcached refuses them) */
	greylist_triplet_key("1.2.3.0", "\"a b\"@x", "r\t@y", key, sizeof(key));
	CHECK_STR_EQ(key, "1.2.3.0/\"a_b\"@x/r_@y");
	/* long keys: cut, with a hash of the whole; two that differ at the end differ */
	char s1[400], s2[400], k1[GREYLIST_KEY_MAX + 1], k2[GREYLIST_KEY_MAX + 1];
	memset(s1, 'a', 300);
	s1[300] = '\0';
	memcpy(s2, s1, 301);
	s2[299] = 'b';
	CHECK_INT_EQ(greylist_triplet_key("1.2.3.0", s1, "r@x", k1, sizeof(k1)), GREYLIST_KEY_MAX);
	CHECK_INT_EQ(greylist_triplet_key("1.2.3.0", s2, "r@x", k2, sizeof(k2)), GREYLIST_KEY_MAX);
	CHECK(strcmp(k1, k2) != 0);
	CHECK(strncmp(k1, k2, GREYLIST_KEY_MAX - 33) == 0);
	CHECK_INT_EQ(k1[GREYLIST_KEY_MAX - 33], '#');
}

static void test_records(void)
{
	struct greylist_record r;
	CHECK_INT_EQ(greylist_record_parse("10,20", 5, &r), 0);
	CHECK_INT_EQ(r.a, 10);
	CHECK_INT_EQ(r.b, 20);
	CHECK_INT_EQ(greylist_record_parse("10,20,host", 10, &r), 0);
	CHECK_INT_EQ(greylist_record_parse("10,20x", 6, &r), -EINVAL);
	CHECK_INT_EQ(greylist_record_parse("10", 2, &r), -EINVAL);
	CHECK_INT_EQ(greylist_record_parse(",20", 3, &r), -EINVAL);
	CHECK_INT_EQ(greylist_record_parse("", 0, &r), -EINVAL);
	CHECK_INT_EQ(greylist_record_parse("99999999999999999999,1", 22, &r), -EINVAL);
	/* only len bytes are read */
	CHECK_INT_EQ(greylist_record_parse("10,20", 3, &r), -EINVAL);
	char buf[GREYLIST_RECORD_MAX];
	r = (struct greylist_record){ 1700000000, -5 };
	CHECK_INT_EQ(greylist_record_format(&r, buf, sizeof(buf)), 13);
	CHECK_STR_EQ(buf, "1700000000,-5");
	/* every byte string parses or fails without reading past len */
	for (size_t cut = 0; cut <= 5; cut++) {
		char *h = malloc(cut ? cut : 1);
		memcpy(h, "10,20", cut);
		int rc = greylist_record_parse(h, cut, &r);
		CHECK(cut == 4 || cut == 5 ? rc == 0 : rc == -EINVAL);
		free(h);
	}
}

static struct greylist_params params(void)
{
	struct greylist_params p;
	greylist_params_init(&p);
	return p;
}

static void test_defaults(void)
{
	struct greylist_params p = params();
	CHECK_INT_EQ(p.delay_s, 300);
	CHECK_INT_EQ(p.max_age_s, 35 * 86400);
	CHECK_INT_EQ(p.retry_window_s, 2 * 86400);
	CHECK_INT_EQ(p.awl_clients, 5);
	CHECK_INT_EQ(p.awl_interval_s, 3600);
}

static void test_decide(void)
{
	struct greylist_params p = params();
	struct greylist_outcome o;
	int64_t t = 1000000;
	/* new triplet: deferred, stored first=last=now for the retry window */
	greylist_decide(&p, t, NULL, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_DEFER);
	CHECK_INT_EQ(o.remaining, 300);
	CHECK_INT_EQ(o.triplet.a, t);
	CHECK_INT_EQ(o.triplet.b, t);
	CHECK_INT_EQ(o.triplet_ttl_s, 2 * 86400 + 1);
	CHECK(!o.client_write);
	/* early retry */
	struct greylist_record r = o.triplet;
	greylist_decide(&p, t + 100, &r, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_DEFER);
	CHECK_INT_EQ(o.remaining, 200);
	CHECK_INT_EQ(o.triplet.a, t);
	CHECK_INT_EQ(o.triplet.b, t + 100);
	/* exactly the delay: passes, delayed 300, the client counted once */
	r = o.triplet;
	greylist_decide(&p, t + 300, &r, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS_DELAYED);
	CHECK_INT_EQ(o.delayed, 300);
	CHECK_INT_EQ(o.triplet_ttl_s, 35 * 86400 + 1);
	CHECK(o.client_write);
	CHECK_INT_EQ(o.client.a, 1);
	CHECK_INT_EQ(o.client.b, t + 300);
	/* then it passed before: plain pass, no count */
	r = o.triplet;
	greylist_decide(&p, t + 400, &r, &o.client, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS);
	CHECK(!o.client_write);
	/* a second recipient of the same message (instance seen): pass without header */
	struct greylist_record w = { t, t + 10 };
	greylist_decide(&p, t + 600, &w, NULL, false, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS);
	CHECK(o.client_write);
	/* the first retry after the retry window: starts over */
	w = (struct greylist_record){ t, t };
	greylist_decide(&p, t + 2 * 86400 + 1, &w, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_DEFER);
	CHECK_INT_EQ(o.remaining, 300);
	CHECK_INT_EQ(o.triplet.a, t + 2 * 86400 + 1);
	/* at the window's edge it still counts */
	greylist_decide(&p, t + 2 * 86400, &w, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS_DELAYED);
	CHECK_INT_EQ(o.delayed, 2 * 86400);
	/* a triplet that passed once is never reset by the window */
	w = (struct greylist_record){ t, t + 300 };
	greylist_decide(&p, t + 20 * 86400, &w, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS);
	/* first seen in the future: corrected to now */
	w = (struct greylist_record){ t + 1000, t + 1000 };
	greylist_decide(&p, t, &w, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_DEFER);
	CHECK_INT_EQ(o.remaining, 300);
	CHECK_INT_EQ(o.triplet.a, t);
	/* the client's count: at most once an interval */
	struct greylist_record c = { 2, t + 300 - 3599 };
	w = (struct greylist_record){ t, t };
	greylist_decide(&p, t + 300, &w, &c, true, &o);
	CHECK(!o.client_write);
	c.b = t + 300 - 3600;
	greylist_decide(&p, t + 300, &w, &c, true, &o);
	CHECK(o.client_write);
	CHECK_INT_EQ(o.client.a, 3);
	/* auto-allowlisting off */
	p.awl_clients = 0;
	greylist_decide(&p, t + 300, &w, NULL, true, &o);
	CHECK(!o.client_write);
	/* a retry window longer than max_age: a waiting record lives max_age */
	p = params();
	p.retry_window_s = 40 * 86400;
	greylist_decide(&p, t, NULL, NULL, true, &o);
	CHECK_INT_EQ(o.triplet_ttl_s, 35 * 86400 + 1);
	/* delay 0 passes at once (header on the first pass) */
	p = params();
	p.delay_s = 0;
	greylist_decide(&p, t, NULL, NULL, true, &o);
	CHECK_INT_EQ(o.verdict, GREYLIST_PASS_DELAYED);
	CHECK_INT_EQ(o.delayed, 0);
}

static void test_client(void)
{
	struct greylist_params p = params();
	struct greylist_client_outcome o;
	int64_t t = 5000000;
	greylist_client_check(&p, t, NULL, &o);
	CHECK(!o.pass && !o.write);
	struct greylist_record r = { 4, t - 10 };
	greylist_client_check(&p, t, &r, &o);
	CHECK(!o.pass);
	r.a = 5;
	greylist_client_check(&p, t, &r, &o);
	CHECK(o.pass);
	CHECK(!o.write); /* seen within the hour */
	r.b = t - 3600;
	greylist_client_check(&p, t, &r, &o);
	CHECK(o.pass && o.write);
	CHECK_INT_EQ(o.record.a, 6);
	CHECK_INT_EQ(o.record.b, t);
	CHECK_INT_EQ(o.ttl_s, 35 * 86400 + 1);
	r.b = t + 10; /* last seen in the future */
	greylist_client_check(&p, t, &r, &o);
	CHECK(o.pass && o.write);
	p.awl_clients = 0;
	greylist_client_check(&p, t, &r, &o);
	CHECK(!o.pass);
	p.awl_clients = 1;
	r = (struct greylist_record){ 1, t };
	greylist_client_check(&p, t, &r, &o);
	CHECK(o.pass);
}

static void test_instances(void)
{
	struct greylist_instances s;
	greylist_instances_init(&s);
	CHECK(greylist_instances_new(&s, NULL));
	CHECK(greylist_instances_new(&s, NULL));
	CHECK(greylist_instances_new(&s, ""));
	CHECK(!greylist_instances_new(&s, "0")); /* postgrey's initial entries */
	CHECK(greylist_instances_new(&s, "a.1"));
	CHECK(!greylist_instances_new(&s, "a.1"));
	char id[16];
	for (int i = 0; i < 9; i++) {
		snprintf(id, sizeof(id), "m%d", i);
		CHECK(greylist_instances_new(&s, id));
	}
	CHECK(!greylist_instances_new(&s, "a.1")); /* ten remembered */
	CHECK(greylist_instances_new(&s, "m9"));
	CHECK(greylist_instances_new(&s, "a.1")); /* pushed out */
}

static void test_action(void)
{
	struct greylist_outcome o = { .remaining = 299, .delayed = 301 };
	char out[GREYLIST_ACTION_MAX];
	CHECK(greylist_action_format(&o, GREYLIST_DEFER, "DEFER_IF_PERMIT", GREYLIST_DEFAULT_TEXT,
				     "", "Joe@Example.COM", "1.37", "D", "h", out, sizeof(out)) > 0);
	CHECK_STR_EQ(out, "DEFER_IF_PERMIT 4.2.0 Greylisted, see "
			  "http://postgrey.schweikert.ch/help/Example.COM.html");
	greylist_action_format(&o, GREYLIST_DEFER, "DEFER", "450 wait %s s for %r, %r %s", "",
			       "a@b@c", "1.37", "D", "h", out, sizeof(out));
	CHECK_STR_EQ(out, "DEFER 450 wait 299 s for c, %r %s");
	greylist_action_format(&o, GREYLIST_DEFER, "DEFER_IF_PERMIT", "to %r", "", "nodomain",
			       "1.37", "D", "h", out, sizeof(out));
	CHECK_STR_EQ(out, "DEFER_IF_PERMIT 4.2.0 to nodomain");
	greylist_action_format(&o, GREYLIST_PASS_DELAYED, "DEFER_IF_PERMIT", "", GREYLIST_POSTGREY_HEADER,
			       "r@x", "1.37", "Mon, 07 Dec 2026 17:00:00 UTC", "mx.example", out,
			       sizeof(out));
	CHECK_STR_EQ(out, "PREPEND X-Greylist: delayed 301 seconds by postgrey-1.37 at mx.example; "
			  "Mon, 07 Dec 2026 17:00:00 UTC");
	greylist_action_format(&o, GREYLIST_PASS_DELAYED, "DEFER_IF_PERMIT", "", "", "r@x", "1",
			       "D", "h", out, sizeof(out));
	CHECK_STR_EQ(out, "DUNNO");
	greylist_action_format(&o, GREYLIST_PASS, "DEFER_IF_PERMIT", "", "H", "r@x", "1", "D",
			       "h", out, sizeof(out));
	CHECK_STR_EQ(out, "DUNNO");
	greylist_action_format(&o, GREYLIST_PASS_CLIENT, "DEFER_IF_PERMIT", "", "H", "r@x", "1",
			       "D", "h", out, sizeof(out));
	CHECK_STR_EQ(out, "DUNNO");
	char small[10];
	CHECK_INT_EQ(greylist_action_format(&o, GREYLIST_DEFER, "DEFER_IF_PERMIT", "x", "", "r@x",
					    "1", "D", "h", small, sizeof(small)),
		     -ENOSPC);
}

static unsigned warnings;
static void count_warn(void *ctx, unsigned line, const char *why)
{
	(void)ctx;
	(void)line;
	(void)why;
	warnings++;
}

static bool client(const struct greylist_allowlist *a, const char *name, const char *ip)
{
	struct mx_inet_addr ad;
	if (!mx_inet_parse(ip, &ad))
		abort();
	return greylist_allowlist_client(a, name, &ad);
}

static void test_allowlist_clients(void)
{
	struct greylist_allowlist *a = greylist_allowlist_new();
	const char *text = "# comment\n"
			   "  example.org   # trailing comment\n"
			   "/^mail\\d+\\.example\\.net$/\n"
			   "192.0.2.10\n"
			   "198.51.100.0/25\n"
			   "203.0.113\n"
			   "10.20\n"
			   "2001:db8:1::/48\n"
			   "300.1.1.1\n"
			   "1.2.3.4/40\n"
			   "bad entry here\n"
			   "1.2.3/24\n"
			   "\n";
	char err[300];
	warnings = 0;
	CHECK_INT_EQ(greylist_allowlist_add(a, GREYLIST_LIST_CLIENTS, text, strlen(text),
					    count_warn, NULL, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(warnings, 1);
	/* 300.1.1.1 and /40 are dropped silently; "1.2.3/24" is a name */
	CHECK_INT_EQ(greylist_allowlist_count(a, GREYLIST_LIST_CLIENTS), 8);
	CHECK(client(a, "example.org", "9.9.9.9"));
	CHECK(client(a, "MX.Example.ORG", "9.9.9.9"));
	CHECK(!client(a, "badexample.org", "9.9.9.9"));
	CHECK(!client(a, "example.org.evil", "9.9.9.9"));
	CHECK(client(a, "MAIL12.example.net", "9.9.9.9"));
	CHECK(!client(a, "mail12.example.net.x", "9.9.9.9"));
	CHECK(client(a, "unknown", "192.0.2.10"));
	CHECK(!client(a, "unknown", "192.0.2.11"));
	CHECK(client(a, "unknown", "198.51.100.127"));
	CHECK(!client(a, "unknown", "198.51.100.128"));
	CHECK(client(a, "unknown", "203.0.113.200"));
	CHECK(client(a, "unknown", "10.20.0.5"));       /* "10.20" is 10.20.0.0/24 */
	CHECK(!client(a, "unknown", "10.20.1.5"));
	CHECK(client(a, "unknown", "2001:db8:1:ffff::1"));
	CHECK(!client(a, "unknown", "2001:db8:2::1"));
	CHECK(!client(a, "unknown", "::ffff:192.0.2.10")); /* no crossing of families */
	greylist_allowlist_free(a);

	/* a regexp PCRE2 cannot compile: an error naming the line */
	a = greylist_allowlist_new();
	CHECK_INT_EQ(greylist_allowlist_add(a, GREYLIST_LIST_CLIENTS, "ok.example\n/(/\n", 15,
					    NULL, NULL, err, sizeof(err)),
		     -EINVAL);
	CHECK(strncmp(err, "line 2: ", 8) == 0);
	greylist_allowlist_free(a);
}

static bool rcpt(const struct greylist_allowlist *a, const char *r)
{
	return greylist_allowlist_recipient(a, r);
}

static void test_allowlist_recipients(void)
{
	struct greylist_allowlist *a = greylist_allowlist_new();
	const char *text = "postmaster@\n"
			   "joe@example.com\n"
			   "example.net\n"
			   "/^list-.*@lists\\./\n"
			   "not an address\n"
			   "odd@dom@ain\n";
	char err[300];
	warnings = 0;
	CHECK_INT_EQ(greylist_allowlist_add(a, GREYLIST_LIST_RECIPIENTS, text, strlen(text),
					    count_warn, NULL, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(warnings, 1);
	CHECK(rcpt(a, "postmaster@anything.example"));
	CHECK(rcpt(a, "PostMaster+tag@x"));
	CHECK(!rcpt(a, "postmasterx@x"));
	CHECK(!rcpt(a, "xpostmaster@x"));
	CHECK(rcpt(a, "joe@example.com"));
	CHECK(rcpt(a, "JOE+ext@EXAMPLE.com"));
	CHECK(!rcpt(a, "joe+@example.com"));
	CHECK(!rcpt(a, "joe@example.com.evil"));
	CHECK(!rcpt(a, "joe@sub.example.com"));
	CHECK(rcpt(a, "anyone@example.net"));
	CHECK(rcpt(a, "anyone@mx.example.net"));
	CHECK(!rcpt(a, "anyone@badexample.net"));
	CHECK(!rcpt(a, "example.net"));
	CHECK(rcpt(a, "list-x@lists.example"));
	CHECK(rcpt(a, "odd@dom@ain"));
	CHECK(rcpt(a, "odd+q@dom@ain"));
	CHECK(!rcpt(a, "someone@else.example"));
	greylist_allowlist_free(a);
}

/* Debian's own files load unchanged (when present: postgrey's package installs them). */
static void test_debian_files(void)
{
	struct greylist_allowlist *a = greylist_allowlist_new();
	char err[400];
	warnings = 0;
	int rc = greylist_allowlist_load(a, GREYLIST_LIST_CLIENTS, "/etc/postgrey/whitelist_clients",
					 count_warn, NULL, err, sizeof(err));
	if (rc == -ENOENT) {
		fprintf(stderr, "/etc/postgrey/whitelist_clients is missing: install postgrey "
				"(deploy/install-deps.sh)\n");
		CHECK(rc == 0);
		greylist_allowlist_free(a);
		return;
	}
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(warnings, 0);
	CHECK(greylist_allowlist_count(a, GREYLIST_LIST_CLIENTS) > 150);
	CHECK_INT_EQ(greylist_allowlist_load(a, GREYLIST_LIST_RECIPIENTS,
					     "/etc/postgrey/whitelist_recipients", count_warn, NULL,
					     err, sizeof(err)),
		     0);
	CHECK(client(a, "lists.debian.org", "9.9.9.9"));
	CHECK(client(a, "mail7.telekom.de", "9.9.9.9"));
	CHECK(client(a, "unknown", "51.4.80.31"));
	CHECK(!client(a, "unknown", "51.4.80.32"));
	CHECK(client(a, "unknown", "2a01:4180:4051:800::5"));
	CHECK(rcpt(a, "postmaster@example.org"));
	CHECK(rcpt(a, "abuse@example.org"));
	CHECK(!rcpt(a, "user@example.org"));
	CHECK_INT_EQ(greylist_allowlist_load(a, GREYLIST_LIST_CLIENTS, "/nonexistent/x", NULL, NULL,
					     err, sizeof(err)),
		     -ENOENT);
	CHECK(strstr(err, "/nonexistent/x") != NULL);
	greylist_allowlist_free(a);
}

/* The allowlist reader over every cut of a text, from exact-length heap buffers. */
static void test_allowlist_cuts(void)
{
	const char *text = "/^a\\d$/\n1.2.3.4/8\n5.6.7\n::1/128\nname.example\nx y\n";
	size_t n = strlen(text);
	for (size_t cut = 0; cut <= n; cut++) {
		char *h = malloc(cut ? cut : 1);
		memcpy(h, text, cut);
		struct greylist_allowlist *a = greylist_allowlist_new();
		char err[200];
		/* a cut inside the regexp may leave "/^a\\d$" (a name) or "/^" (a name) */
		CHECK_INT_EQ(greylist_allowlist_add(a, GREYLIST_LIST_CLIENTS, h, cut, NULL, NULL, err,
						    sizeof(err)),
			     0);
		(void)client(a, "a1", "1.9.9.9");
		greylist_allowlist_free(a);
		free(h);
	}
}

static void test_request(void)
{
	struct greylist_request r = {
		.map = "btree:/var/lib/mxgate/greylist",
		.client = "192.0.2.7",
		.key = "192.0.2.0/a@b/c@d",
		.recipient = "c@d",
		.instance = "1a.2",
		.action = "DEFER_IF_PERMIT",
		.text = GREYLIST_DEFAULT_TEXT,
		.header = "",
		.host = "mx.example",
	};
	greylist_params_init(&r.params);
	r.params.delay_s = 2;
	char buf[GREYLIST_REQUEST_MAX];
	size_t need = 0;
	long len = greylist_request_encode(&r, buf, sizeof(buf), &need);
	CHECK(len > 0);
	char small[20];
	CHECK_INT_EQ(greylist_request_encode(&r, small, sizeof(small), &need), -ENOSPC);
	CHECK((size_t)len <= need);
	struct greylist_request d;
	char dbuf[GREYLIST_REQUEST_MAX + 1];
	CHECK_INT_EQ(greylist_request_decode(buf, (size_t)len, dbuf, sizeof(dbuf), &d), 0);
	CHECK_STR_EQ(d.map, r.map);
	CHECK_STR_EQ(d.client, r.client);
	CHECK_STR_EQ(d.key, r.key);
	CHECK_STR_EQ(d.recipient, r.recipient);
	CHECK_STR_EQ(d.instance, r.instance);
	CHECK_STR_EQ(d.action, r.action);
	CHECK_STR_EQ(d.text, r.text);
	CHECK_STR_EQ(d.header, "");
	CHECK_STR_EQ(d.host, r.host);
	CHECK_INT_EQ(d.params.delay_s, 2);
	CHECK_INT_EQ(d.params.max_age_s, 35 * 86400);
	CHECK_INT_EQ(d.params.awl_clients, 5);
	CHECK_INT_EQ(d.params.awl_interval_s, 3600);
	/* every proper prefix is malformed, read from an exact-length heap copy */
	for (size_t cut = 0; cut < (size_t)len; cut++) {
		char *h = malloc(cut ? cut : 1);
		memcpy(h, buf, cut);
		CHECK_INT_EQ(greylist_request_decode(h, cut, dbuf, sizeof(dbuf), &d), -EBADMSG);
		free(h);
	}
	/* a value with a line break cannot be sent */
	struct greylist_request bad = r;
	bad.text = "a\nb";
	CHECK_INT_EQ(greylist_request_encode(&bad, buf, sizeof(buf), &need), -EINVAL);
	/* malformed inputs */
	const char *bads[] = {
		"\n", "map=x\n\n", "bogus=1\n\n",
		"map=a\nmap=b\n\n",
	};
	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
		CHECK_INT_EQ(greylist_request_decode(bads[i], strlen(bads[i]), dbuf, sizeof(dbuf), &d),
			     -EBADMSG);
	/* a bad number */
	len = greylist_request_encode(&r, buf, sizeof(buf), &need);
	char *p = strstr(buf, "delay=2");
	p[6] = 'x';
	CHECK_INT_EQ(greylist_request_decode(buf, (size_t)len, dbuf, sizeof(dbuf), &d), -EBADMSG);
}

int main(void)
{
	RUN_TEST(test_sender);
	RUN_TEST(test_keys);
	RUN_TEST(test_records);
	RUN_TEST(test_defaults);
	RUN_TEST(test_decide);
	RUN_TEST(test_client);
	RUN_TEST(test_instances);
	RUN_TEST(test_action);
	RUN_TEST(test_allowlist_clients);
	RUN_TEST(test_allowlist_recipients);
	RUN_TEST(test_debian_files);
	RUN_TEST(test_allowlist_cuts);
	RUN_TEST(test_request);
	return TEST_RESULT();
}
