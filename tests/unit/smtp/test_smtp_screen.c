/* The screen codec (smtp/smtp_screen*.c) against postscreen(8)'s behaviour: the access
 * list, the cache record, pregreet, DNSBL scores with weights and thresholds, the dummy
 * engine and the deep tests; transcripts whole, byte by byte and split at every offset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_screen.h"
#include "testing.h"

#define WALL 1700000000

struct harness {
	char logs[16384];
	size_t loglen;
};

static void hlog(void *arg, const char *line)
{
	struct harness *h = arg;
	int n = snprintf(h->logs + h->loglen, sizeof(h->logs) - h->loglen, "%s\n", line);
	if (n > 0 && h->loglen + (size_t)n < sizeof(h->logs))
		h->loglen += (size_t)n;
}

static struct smtp_screen_params base_params(void)
{
	return (struct smtp_screen_params){
		.greet_banner = "mx.example ESMTP", .smtpd_banner = "mx.example ESMTP",
		.myhostname = "mx.example", .greet_wait_s = 6, .greet_action = "ignore",
		.dnsbl_action = "ignore", .denylist_action = "ignore",
		.pipelining_action = "enforce", .non_smtp_action = "drop",
		.bare_newline_action = "ignore", .greet_ttl_s = 86400, .dnsbl_min_ttl_s = 60,
		.dnsbl_max_ttl_s = 3600, .dnsbl_timeout_s = 10, .dnsbl_threshold = 1,
		.dnsbl_allowlist_threshold = 0, .dnsbl_sites = "", .pipelining_ttl_s = 2592000,
		.non_smtp_ttl_s = 2592000, .bare_newline_ttl_s = 2592000,
		.forbidden_commands = "CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}",
		.command_count_limit = 20,
		.command_time_limit_s = 300, .cache_retention_s = 604800, .smtputf8 = true,
		.message_size_limit = 10240000, .line_limit = 2048,
	};
}

static struct smtp_screen_config *mkcfg(const struct smtp_screen_params *p)
{
	struct smtp_screen_config *c = NULL;
	char err[256];
	int rc = smtp_screen_config_new(p, &c, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "config: %s\n", err);
	return c;
}

static struct smtp_screen *mk(const struct smtp_screen_config *c, struct harness *h)
{
	struct smtp_screen_client cl = { .port = 12345, .server_port = 25 };
	mx_inet_parse("192.0.2.1", &cl.addr);
	mx_inet_parse("198.51.100.1", &cl.server);
	memset(h, 0, sizeof(*h));
	return smtp_screen_new(c, &cl, hlog, h);
}

/* Take the output as a string (and mark it sent). */
static const char *take(struct smtp_screen *s, char *buf, size_t cap)
{
	struct mx_span o = smtp_screen_output(s);
	size_t n = o.len < cap - 1 ? o.len : cap - 1;
	memcpy(buf, o.ptr, n);
	buf[n] = '\0';
	smtp_screen_output_done(s, o.len);
	return buf;
}

/* Feed a string from a heap buffer of exactly its length; returns bytes consumed. */
static size_t feed(struct smtp_screen *s, const char *text, uint64_t now)
{
	size_t n = strlen(text);
	char *p = malloc(n ? n : 1);
	memcpy(p, text, n);
	size_t used = smtp_screen_input(s, p, n, now);
	free(p);
	return used;
}

static void test_helpers(void)
{
	char b[64];
	CHECK_STR_EQ(smtp_screen_escape("EHLO x\r\n", 8, b, sizeof(b)), "EHLO x\\r\\n");
	CHECK_STR_EQ(smtp_screen_escape("a\\b\001\x80", 5, b, sizeof(b)), "a\\\\b\\001\\200");
	CHECK_STR_EQ(smtp_screen_escape("\t\v\f\a\b", 5, b, sizeof(b)), "\\t\\v\\f\\a\\b");
	CHECK_STR_EQ(smtp_screen_escape("abcdef", 6, b, 4), "abc");
	CHECK_STR_EQ(smtp_screen_format_delay(120, b, sizeof(b)), "0.12");
	CHECK_STR_EQ(smtp_screen_format_delay(6000, b, sizeof(b)), "6");
	CHECK_STR_EQ(smtp_screen_format_delay(6120, b, sizeof(b)), "6.1");
	CHECK_STR_EQ(smtp_screen_format_delay(0, b, sizeof(b)), "0");
	CHECK_STR_EQ(smtp_screen_format_delay(1, b, sizeof(b)), "0");
	CHECK_STR_EQ(smtp_screen_format_delay(5, b, sizeof(b)), "0.01");
	CHECK_STR_EQ(smtp_screen_format_delay(1500, b, sizeof(b)), "1.5");
	CHECK_STR_EQ(smtp_screen_format_delay(12345, b, sizeof(b)), "12");
	enum smtp_screen_action a;
	CHECK_INT_EQ(smtp_screen_action_parse("Enforce", &a), 0);
	CHECK_INT_EQ(a, SMTP_SCREEN_ENFORCE);
	CHECK_INT_EQ(smtp_screen_action_parse("reject", &a), -EINVAL);
}

static void test_config(void)
{
	struct smtp_screen_params p = base_params();
	p.dnsbl_sites = "zen.example=127.0.0.[2..11]*3, zen.example*-1 list.example "
			"Allow.Example=127.0.[0..255].[0;1]*-5";
	struct smtp_screen_config *c = mkcfg(&p);
	CHECK(c != NULL);
	CHECK_INT_EQ(c->nsites, 4);
	CHECK_INT_EQ(c->nzones, 3);
	CHECK_STR_EQ(c->zones[2].domain, "allow.example");
	CHECK_STR_EQ(c->zones[2].shown, "Allow.Example");
	CHECK_INT_EQ(c->sites[0].weight, 3);
	CHECK_INT_EQ(c->sites[1].weight, -1);
	CHECK_INT_EQ(c->sites[2].weight, 1);
	CHECK_INT_EQ(c->sites[3].weight, -5);
	CHECK_INT_EQ(smtp_screen_config_set_shown(c, "list.example", "the list"), 0);
	CHECK_STR_EQ(c->zones[1].shown, "the list");
	CHECK_INT_EQ(smtp_screen_config_set_shown(c, "none.example", "x"), -ENOENT);
	smtp_screen_config_free(c);

	static const char *const bad[] = { "zen.example*x", "zen.example*1x", "zen.example=1.2.3",
					   "zen.example=127.0.0.[9..2]", "=127.0.0.2", "bad..name",
					   "zen.example*" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p.dnsbl_sites = bad[i];
		struct smtp_screen_config *x = NULL;
		char err[256] = "";
		CHECK_INT_EQ(smtp_screen_config_new(&p, &x, err, sizeof(err)), -EINVAL);
		CHECK(x == NULL && err[0]);
	}
	p = base_params();
	p.greet_action = "bounce";
	struct smtp_screen_config *x = NULL;
	char err[256];
	CHECK_INT_EQ(smtp_screen_config_new(&p, &x, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "postscreen_greet_action") != NULL);
}

static void test_allowlisted(void)
{
	struct smtp_screen_params p = base_params();
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_PERMIT, NULL, 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.1]:12345 to [198.51.100.1]:25\n"
			     "ALLOWLISTED [192.0.2.1]:12345\n");
	CHECK_INT_EQ(smtp_screen_output(s).len, 0);
	char rec[128];
	uint32_t keep;
	CHECK(!smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	CHECK(smtp_screen_outcome(s).allowlisted);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_denylisted(void)
{
	struct smtp_screen_params p = base_params();
	char out[4096];
	struct harness h;
	/* drop */
	p.denylist_action = "drop";
	struct smtp_screen_config *c = mkcfg(&p);
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_REJECT, NULL, 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "521 5.3.2 Service currently unavailable\r\n");
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.1]:12345 to [198.51.100.1]:25\n"
			     "DENYLISTED [192.0.2.1]:12345\nDISCONNECT [192.0.2.1]:12345\n");
	CHECK(smtp_screen_outcome(s).denylisted);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* enforce: tested as a new client (the cache is not read), then the dummy engine
	 * with its 550 at RCPT */
	p.denylist_action = "enforce";
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_REJECT, "1900000000;1;1;1;1", 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "220-mx.example ESMTP\r\n");
	smtp_screen_timer(s, 7000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "220 mx.example ESMTP\r\n");
	CHECK_INT_EQ(feed(s, "HELO client.example\r\n", 7100), 21);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 mx.example\r\n");
	feed(s, "MAIL FROM:<a@example.org>\r\n", 7200);
	feed(s, "RCPT TO:<b@example.net>\r\n", 7300);
	CHECK_STR_EQ(take(s, out, sizeof(out)),
		     "250 2.1.0 Ok\r\n550 5.3.2 Service currently unavailable\r\n");
	CHECK(strstr(h.logs, "NOQUEUE: reject: RCPT from [192.0.2.1]:12345: 550 5.3.2 Service "
			     "currently unavailable; from=<a@example.org>, to=<b@example.net>, "
			     "proto=SMTP, helo=<client.example>\n") != NULL);
	feed(s, "QUIT\r\n", 7400);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "221 2.0.0 Bye\r\n");
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* ignore: tested as anyone */
	p.denylist_action = "ignore";
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_REJECT, NULL, 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	smtp_screen_timer(s, 7000);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK(strstr(h.logs, "PASS NEW [192.0.2.1]:12345\n") != NULL);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

/* postscreen_client_connection_count_limit: the count the glue gives, compared before the
 * access list and the cache; at the limit the client is screened as usual. */
static void test_connection_limit(void)
{
	struct smtp_screen_params p = base_params();
	p.client_connection_count_limit = 2;
	struct smtp_screen_config *c = mkcfg(&p);
	char out[4096];
	struct harness h;
	struct smtp_screen_client cl = { .port = 12345, .server_port = 25, .concurrency = 3 };
	mx_inet_parse("192.0.2.1", &cl.addr);
	mx_inet_parse("198.51.100.1", &cl.server);
	/* over the limit: 421 and the close, even for an allowlisted client with a record */
	memset(&h, 0, sizeof(h));
	struct smtp_screen *s = smtp_screen_new(c, &cl, hlog, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_PERMIT, "1900000000;1;1;1;1", 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "421 4.7.0 Error: too many connections\r\n");
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.1]:12345 to [198.51.100.1]:25\n"
			     "NOQUEUE: reject: CONNECT from [192.0.2.1]:12345: too many "
			     "connections\nDISCONNECT [192.0.2.1]:12345\n");
	struct smtp_screen_outcome o = smtp_screen_outcome(s);
	CHECK(o.too_many && !o.allowlisted && !o.pass_old && !o.pass_new);
	char rec[128];
	uint32_t keep;
	CHECK(!smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	smtp_screen_free(s);
	/* at the limit, and uncounted (0): the tests as usual */
	for (uint32_t n = 0; n <= 2; n += 2) {
		cl.concurrency = n;
		memset(&h, 0, sizeof(h));
		s = smtp_screen_new(c, &cl, hlog, &h);
		smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
		CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
		CHECK_STR_EQ(take(s, out, sizeof(out)), "220-mx.example ESMTP\r\n");
		CHECK(!smtp_screen_outcome(s).too_many);
		smtp_screen_free(s);
	}
	smtp_screen_config_free(c);
	/* no limit (0): any count passes */
	p.client_connection_count_limit = 0;
	c = mkcfg(&p);
	cl.concurrency = 1000;
	memset(&h, 0, sizeof(h));
	s = smtp_screen_new(c, &cl, hlog, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

/* Before the start: another client (the PROXY header's), or a refusal with nothing
 * logged, tested or stored (no header could be read). */
static void test_set_client_and_refuse(void)
{
	struct smtp_screen_params p = base_params();
	struct smtp_screen_config *c = mkcfg(&p);
	char out[4096];
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	struct smtp_screen_client cl = { .port = 5550, .server_port = 2525 };
	mx_inet_parse("::ffff:192.0.2.50", &cl.addr);
	mx_inet_parse("198.51.100.25", &cl.server);
	smtp_screen_set_client(s, &cl);
	smtp_screen_start(s, SMTP_SCREEN_ACL_PERMIT, NULL, 1000, WALL);
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.50]:5550 to [198.51.100.25]:2525\n"
			     "ALLOWLISTED [192.0.2.50]:5550\n");
	smtp_screen_free(s);
	s = mk(c, &h);
	smtp_screen_refuse(s, "421 4.3.2 No system resources\r\n");
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "421 4.3.2 No system resources\r\n");
	CHECK_STR_EQ(h.logs, "");
	struct smtp_screen_outcome o = smtp_screen_outcome(s);
	CHECK(!o.pass_new && !o.pass_old && !o.pregreet_fail && !o.too_many);
	char rec[128];
	uint32_t keep;
	CHECK(!smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	CHECK_INT_EQ(smtp_screen_deadline(s), UINT64_MAX);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_pass_new_then_old(void)
{
	struct smtp_screen_params p = base_params();
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	char out[4096], rec[128];
	uint32_t keep = 0;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "220-mx.example ESMTP\r\n");
	CHECK(smtp_screen_wants_input(s));
	CHECK_INT_EQ(smtp_screen_queries(s), 0);
	CHECK(smtp_screen_deadline(s) == 7000);
	smtp_screen_timer(s, 6999);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	smtp_screen_timer(s, 7000);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.1]:12345 to [198.51.100.1]:25\n"
			     "PASS NEW [192.0.2.1]:12345\n");
	CHECK(smtp_screen_cache_record(s, WALL + 6, rec, sizeof(rec), &keep));
	CHECK_STR_EQ(rec, "1700086406;1;1;1;1");
	CHECK(keep == 86400 + 604800);
	CHECK(smtp_screen_outcome(s).pass_new);
	smtp_screen_free(s);
	/* back within a day: PASS OLD, no teaser, no wait */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, rec, 50000, WALL + 3600);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK_INT_EQ(smtp_screen_output(s).len, 0);
	CHECK_STR_EQ(h.logs, "CONNECT from [192.0.2.1]:12345 to [198.51.100.1]:25\n"
			     "PASS OLD [192.0.2.1]:12345\n");
	CHECK(!smtp_screen_cache_record(s, WALL + 3600, rec, sizeof(rec), &keep));
	smtp_screen_free(s);
	/* after it expired: tested again, and an old client is PASS OLD after the test */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1700086406;1;1;1;1", 1000, WALL + 90000);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	smtp_screen_timer(s, 7000);
	CHECK(strstr(h.logs, "PASS OLD [192.0.2.1]:12345\n") != NULL);
	CHECK(smtp_screen_cache_record(s, WALL + 90006, rec, sizeof(rec), &keep));
	CHECK_STR_EQ(rec, "1700176406;1;1;1;1");
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_cache_parse(void)
{
	struct smtp_screen_params p = base_params();
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	/* malformed fields count as disabled: nothing to do for pregreet? no - "x" is
	 * disabled (1), which is expired: the pregreet test runs */
	static const struct {
		const char *rec;
		enum smtp_screen_state st;
	} cases[] = {
		{ "9999999999", SMTP_SCREEN_ST_PASS },             /* old record, 1 field */
		{ "9999999999;0;0;0;0", SMTP_SCREEN_ST_PASS },     /* NEW but disabled tests */
		{ "x;1;1;1;1", SMTP_SCREEN_ST_EARLY },
		{ "", SMTP_SCREEN_ST_EARLY },
		{ "99999999999999999999999;1", SMTP_SCREEN_ST_EARLY },
		{ "1700000001;1;1;1;1", SMTP_SCREEN_ST_PASS },
		{ "1700000000;1;1;1;1", SMTP_SCREEN_ST_PASS },     /* expires after now */
		{ "1699999999;1;1;1;1", SMTP_SCREEN_ST_EARLY },
		{ ";;;;", SMTP_SCREEN_ST_EARLY },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct smtp_screen *s = mk(c, &h);
		smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cases[i].rec, 0, WALL);
		if (smtp_screen_state(s) != cases[i].st)
			fprintf(stderr, "case %zu: %s\n", i, cases[i].rec);
		CHECK_INT_EQ(smtp_screen_state(s), cases[i].st);
		smtp_screen_free(s);
	}
	smtp_screen_config_free(c);
}

static void test_pregreet(void)
{
	struct smtp_screen_params p = base_params();
	char out[4096], rec[128];
	uint32_t keep;
	struct harness h;
	/* enforce: no 220 after the wait; the dummy engine reads what it sent */
	p.greet_action = "enforce";
	struct smtp_screen_config *c = mkcfg(&p);
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	take(s, out, sizeof(out));
	CHECK_INT_EQ(feed(s, "EHLO x\r\n", 1120), 0);
	CHECK(strstr(h.logs, "PREGREET 8 after 0.12 from [192.0.2.1]:12345: EHLO x\\r\\n\n"));
	/* the only early test is done: the wait ends now */
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_SMTPD);
	CHECK_INT_EQ(smtp_screen_output(s).len, 0);
	CHECK_INT_EQ(feed(s, "EHLO x\r\n", 7121), 8);
	CHECK_STR_EQ(take(s, out, sizeof(out)),
		     "250-mx.example\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
		     "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
		     "250 CHUNKING\r\n");
	feed(s, "MAIL FROM:<>\r\n", 7200);
	feed(s, "RCPT TO:<u@example.net>\r\n", 7300);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 2.1.0 Ok\r\n550 5.5.1 Protocol error\r\n");
	CHECK(strstr(h.logs, "NOQUEUE: reject: RCPT from [192.0.2.1]:12345: 550 5.5.1 Protocol "
			     "error; from=<>, to=<u@example.net>, proto=ESMTP, helo=<x>\n"));
	feed(s, "DATA\r\n", 7400);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "554 5.5.1 Error: no valid recipients\r\n");
	CHECK(strstr(h.logs, "DATA without valid RCPT from [192.0.2.1]:12345\n"
			     "DISCONNECT [192.0.2.1]:12345\n"));
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK(!smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	CHECK(smtp_screen_outcome(s).pregreet_fail);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* drop: at once */
	p.greet_action = "drop";
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "HELO bot\r\nMAIL FROM:<x>\r\n", 1500);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "521 5.5.1 Protocol error\r\n");
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK(strstr(h.logs, "PREGREET 25 after 0.5 from [192.0.2.1]:12345: HELO bot\\r\\nMAIL "
			     "FROM:<x>\\r\\n\nDISCONNECT [192.0.2.1]:12345\n"));
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* ignore: passes on to the server with the bytes unread, not PASS NEW */
	p.greet_action = "ignore";
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	feed(s, "EHLO x\r\n", 3000);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK(strstr(h.logs, "PASS") == NULL);
	CHECK(!smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_hangup(void)
{
	struct smtp_screen_params p = base_params();
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	smtp_screen_output_done(s, smtp_screen_output(s).len);
	smtp_screen_peer_closed(s, 2500);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	CHECK_INT_EQ(smtp_screen_output(s).len, 0);
	CHECK(strstr(h.logs, "HANGUP after 1.5 from [192.0.2.1]:12345 in tests before SMTP "
			     "handshake\nDISCONNECT [192.0.2.1]:12345\n"));
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static struct dns_result dnsres(enum dns_result_status st, uint32_t ttl,
				struct dns_result_record *recs, const char *const *addrs)
{
	struct dns_result r = { .status = st, .type = DNS_TYPE_A, .ttl = ttl };
	for (unsigned i = 0; addrs && addrs[i]; i++) {
		memset(&recs[i], 0, sizeof(recs[i]));
		mx_inet_parse(addrs[i], &recs[i].addr);
		r.nrecords = (uint16_t)(i + 1);
	}
	r.records = recs;
	return r;
}

static void test_dnsbl(void)
{
	struct smtp_screen_params p = base_params();
	char out[4096], name[300], rec[128];
	uint32_t keep;
	struct harness h;
	struct dns_result_record recs[4];
	/* DNSBL alone (no banner): ends when the answers are in, not at the greet wait */
	p.greet_banner = "";
	p.dnsbl_sites = "zen.example=127.0.0.[2..11]*2 wl.example*-3";
	p.dnsbl_threshold = 2;
	p.dnsbl_action = "enforce";
	struct smtp_screen_config *c = mkcfg(&p);
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	CHECK_INT_EQ(smtp_screen_output(s).len, 0);
	CHECK(!smtp_screen_wants_input(s));
	CHECK_INT_EQ(smtp_screen_queries(s), 2);
	CHECK_INT_EQ(smtp_screen_query_name(s, 0, name, sizeof(name)), 0);
	CHECK_STR_EQ(name, "1.2.0.192.zen.example");
	CHECK_INT_EQ(smtp_screen_query_name(s, 1, name, sizeof(name)), 0);
	CHECK_STR_EQ(name, "1.2.0.192.wl.example");
	const char *const listed[] = { "127.0.0.4", NULL };
	struct dns_result r0 = dnsres(DNS_RESULT_OK, 300, recs, listed);
	smtp_screen_dns_answer(s, 0, &r0, 1100);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_EARLY);
	struct dns_result r1 = dnsres(DNS_RESULT_NXDOMAIN, 900, recs, NULL);
	smtp_screen_dns_answer(s, 1, &r1, 1200);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_SMTPD);
	CHECK(strstr(h.logs, "DNSBL rank 2 for [192.0.2.1]:12345\n"));
	CHECK_STR_EQ(take(s, out, sizeof(out)), "220 mx.example ESMTP\r\n");
	feed(s, "HELO h\r\n", 1300);
	feed(s, "MAIL FROM:<a@b>\r\n", 1300);
	feed(s, "RCPT TO:<c@d>\r\n", 1300);
	CHECK(strstr(take(s, out, sizeof(out)), "550 5.7.1 Service unavailable; client "
						 "[192.0.2.1] blocked using zen.example\r\n"));
	CHECK(strstr(h.logs, "NOQUEUE: reject: RCPT from [192.0.2.1]:12345: 550 5.7.1 Service "
			     "unavailable; client [192.0.2.1] blocked using zen.example; "
			     "from=<a@b>, to=<c@d>, proto=SMTP, helo=<h>\n"));
	CHECK(smtp_screen_outcome(s).dnsbl_fail);
	/* which sites listed the client, and the score (for counters and explain) */
	CHECK(smtp_screen_outcome(s).dnsbl_scored);
	CHECK_INT_EQ(smtp_screen_outcome(s).dnsbl_score, 2);
	CHECK(smtp_screen_outcome(s).dnsbl_listed == 1u);
	smtp_screen_free(s);

	/* the allowlist's negative weight keeps the score under the threshold */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	smtp_screen_dns_answer(s, 0, &r0, 1100);
	const char *const wl[] = { "127.0.2.1", NULL };
	struct dns_result_record recs2[2];
	struct dns_result r2 = dnsres(DNS_RESULT_OK, 30, recs2, wl);
	smtp_screen_dns_answer(s, 1, &r2, 1100);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK(strstr(h.logs, "PASS NEW [192.0.2.1]:12345\n"));
	CHECK(smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	/* score -1: the pass TTL is the allowlist's 30s, raised to min_ttl 60 */
	CHECK_STR_EQ(rec, "1;1700000060;1;1;1");
	CHECK(smtp_screen_outcome(s).dnsbl_listed == 3u);
	CHECK_INT_EQ(smtp_screen_outcome(s).dnsbl_score, -1);
	smtp_screen_free(s);

	/* a failed lookup is not listed; a wait that ends first scores what came */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	smtp_screen_dns_answer(s, 0, NULL, 1100);
	smtp_screen_timer(s, 7000);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	smtp_screen_dns_answer(s, 1, &r1, 7100); /* late: ignored */
	CHECK(smtp_screen_outcome(s).dnsbl_scored);
	CHECK_INT_EQ(smtp_screen_outcome(s).dnsbl_score, 0);
	CHECK(smtp_screen_outcome(s).dnsbl_listed == 0u);
	smtp_screen_free(s);

	/* drop: 521 with the reply map's name */
	p.dnsbl_action = "drop";
	smtp_screen_config_free(c);
	c = mkcfg(&p);
	smtp_screen_config_set_shown(c, "zen.example", "Zen");
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	smtp_screen_dns_answer(s, 1, &r1, 1100);
	smtp_screen_dns_answer(s, 0, &r0, 1100);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "521 5.7.1 Service unavailable; client "
						"[192.0.2.1] blocked using Zen\r\n");
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
	/* a filter that does not match: not listed */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	const char *const other[] = { "127.0.0.12", NULL };
	struct dns_result r3 = dnsres(DNS_RESULT_OK, 300, recs, other);
	smtp_screen_dns_answer(s, 0, &r3, 1100);
	smtp_screen_dns_answer(s, 1, &r1, 1100);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK(smtp_screen_outcome(s).dnsbl_listed == 0u);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_allowlist_threshold(void)
{
	struct smtp_screen_params p = base_params();
	p.dnsbl_sites = "wl.example*-5";
	p.dnsbl_allowlist_threshold = -1;
	p.pipelining_enable = true;
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	struct dns_result_record recs[2];
	char out[1024], rec[128];
	uint32_t keep;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, NULL, 1000, WALL);
	take(s, out, sizeof(out));
	const char *const wl[] = { "127.0.2.1", NULL };
	struct dns_result r = dnsres(DNS_RESULT_OK, 7200, recs, wl);
	smtp_screen_dns_answer(s, 0, &r, 1200);
	/* every other test is passed: no greet wait, no deep tests */
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_PASS);
	CHECK(strstr(h.logs, "PASS NEW [192.0.2.1]:12345\n"));
	CHECK(smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	CHECK_STR_EQ(rec, "1700003600;1700003600;1700003600;1700003600;1700003600");
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

/* A client that passes the deep tests ends in the dummy engine, PASS NEW at the end. */
static const char deep_in[] = "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
			      "RCPT TO:<b@example.net>\r\nNOOP\r\nVRFY x\r\nETRN d\r\n"
			      "RSET\r\nXCLIENT A=b\r\nSTARTTLS\r\nQUIT\r\n";
static const char deep_out[] =
	"220 mx.example ESMTP\r\n"
	"250-mx.example\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
	"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
	"250 CHUNKING\r\n250 2.1.0 Ok\r\n450 4.3.2 Service currently unavailable\r\n"
	"250 2.0.0 Ok\r\n450 4.3.2 Service currently unavailable\r\n"
	"458 Unable to queue messages\r\n250 2.0.0 Ok\r\n"
	"502 5.5.2 Error: command not recognized\r\n"
	"502 5.5.1 Error: command not implemented\r\n221 2.0.0 Bye\r\n";

static void deep_run(const struct smtp_screen_config *c, const size_t *cuts, size_t ncuts,
		     char *out, size_t cap, char *logs, size_t logcap)
{
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;0;0;0", 1000, WALL);
	size_t o = 0, pos = 0, n = sizeof(deep_in) - 1;
	for (size_t k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : n;
		char *chunk = malloc(end - pos ? end - pos : 1);
		memcpy(chunk, deep_in + pos, end - pos);
		size_t off = 0;
		while (off < end - pos) {
			size_t u = smtp_screen_input(s, chunk + off, end - pos - off, 2000);
			struct mx_span sp = smtp_screen_output(s);
			if (o + sp.len < cap) {
				memcpy(out + o, sp.ptr, sp.len);
				o += sp.len;
			}
			smtp_screen_output_done(s, sp.len);
			if (u == 0)
				break;
			off += u;
		}
		free(chunk);
		pos = end;
	}
	struct mx_span sp = smtp_screen_output(s);
	if (o + sp.len < cap) {
		memcpy(out + o, sp.ptr, sp.len);
		o += sp.len;
	}
	out[o] = '\0';
	snprintf(logs, logcap, "%.*s", (int)(logcap - 1), h.logs);
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
}

static void test_deep_pass(void)
{
	struct smtp_screen_params p = base_params();
	p.non_smtp_enable = true;
	p.bare_newline_enable = true;
	struct smtp_screen_config *c = mkcfg(&p);
	char out[4096], logs[4096], rec[128];
	size_t n = sizeof(deep_in) - 1;
	/* whole */
	deep_run(c, NULL, 0, out, sizeof(out), logs, sizeof(logs));
	CHECK_STR_EQ(out, deep_out);
	CHECK(strstr(logs, "PASS NEW [192.0.2.1]:12345\nDISCONNECT [192.0.2.1]:12345\n"));
	/* byte by byte */
	size_t *cuts = malloc(n * sizeof(*cuts));
	for (size_t i = 0; i < n - 1; i++)
		cuts[i] = i + 1;
	char out2[4096], logs2[4096];
	deep_run(c, cuts, n - 1, out2, sizeof(out2), logs2, sizeof(logs2));
	CHECK_STR_EQ(out2, deep_out);
	CHECK_STR_EQ(logs2, logs);
	/* split at every offset */
	for (size_t i = 1; i < n; i++) {
		size_t cut = i;
		deep_run(c, &cut, 1, out2, sizeof(out2), logs2, sizeof(logs2));
		CHECK_STR_EQ(out2, deep_out);
		CHECK_STR_EQ(logs2, logs);
	}
	free(cuts);
	/* the cache record has the deep tests' expiry (30 days from the RCPT) */
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;0;0;0", 1000, WALL);
	feed(s, "EHLO a\r\n", 1000);
	feed(s, "MAIL FROM:<>\r\n", 1000);
	feed(s, "RCPT TO:<x>\r\n", 1000);
	feed(s, "QUIT\r\n", 1000);
	uint32_t keep;
	CHECK(smtp_screen_cache_record(s, WALL, rec, sizeof(rec), &keep));
	/* pipelining never passed and is off: stored as disabled (1) */
	CHECK_STR_EQ(rec, "1800000000;1;1;1702592000;1702592000");
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

/* postscreen_discard_ehlo_keywords: the dummy engine's EHLO reply without them (Postfix's
 * order, the space on the last line that remains), unknown words ignored; a discarded
 * CHUNKING makes BDAT "not implemented", after EHLO only. */
static void test_discard_ehlo(void)
{
	struct smtp_screen_params p = base_params();
	p.non_smtp_enable = true;
	p.discard_ehlo_keywords = "DSN, chunking vrfy\tsilent-discard bogus-word";
	struct smtp_screen_config *c = mkcfg(&p);
	char out[4096];
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;0;0;0", 1000, WALL);
	take(s, out, sizeof(out));
	CHECK_INT_EQ(feed(s, "EHLO a\r\n", 1000), 8);
	CHECK_STR_EQ(take(s, out, sizeof(out)),
		     "250-mx.example\r\n250-SIZE 10240000\r\n250-ETRN\r\n"
		     "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
	feed(s, "BDAT 10 LAST\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "502 5.5.1 Error: command not implemented\r\n");
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
	/* HELO only: BDAT is answered as ever */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;0;0;0", 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "HELO a\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 mx.example\r\n");
	feed(s, "BDAT 10 LAST\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "554 5.5.1 Error: need MAIL command\r\n");
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* every keyword away: one line */
	p.discard_ehlo_keywords = "size vrfy etrn enhancedstatuscodes 8bitmime dsn smtputf8 "
				  "chunking";
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;0;0;0", 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "EHLO a\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 mx.example\r\n");
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_deep_fail(void)
{
	struct smtp_screen_params p = base_params();
	p.pipelining_enable = true;
	p.non_smtp_enable = true;
	p.bare_newline_enable = true;
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	char out[4096];
	const char *cache = "1800000000;1;0;0;0";
	/* pipelining: enforce, the 550 at RCPT */
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	CHECK_INT_EQ(feed(s, "EHLO a\r\nMAIL FROM:<x>\r\nRCPT TO:<y>\r\n", 1000), 36);
	CHECK(strstr(h.logs, "COMMAND PIPELINING from [192.0.2.1]:12345 after EHLO: MAIL "
			     "FROM:<x>\\r\\nRCPT TO:<y>\\r\\n\n"));
	CHECK(strstr(take(s, out, sizeof(out)), "250 2.1.0 Ok\r\n550 5.5.1 Protocol error\r\n"));
	CHECK(smtp_screen_outcome(s).pipelining_fail);
	smtp_screen_free(s);
	/* non-SMTP: drop */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "GET / HTTP/1.0\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)),
		     "521 5.7.0 Error: I can break rules, too. Goodbye.\r\n");
	CHECK(strstr(h.logs, "NON-SMTP COMMAND from [192.0.2.1]:12345 after CONNECT: GET / "
			     "HTTP/1.0\n"));
	smtp_screen_free(s);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "Subject: hi\r\n", 1000);
	CHECK(strstr(h.logs, "NON-SMTP COMMAND from [192.0.2.1]:12345 after CONNECT: Subject: "
			     "hi\n"));
	smtp_screen_free(s);
	/* the regexp of Postfix's default: a command that does not start with a letter; one
	 * that does is just unknown */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "xyzzy\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "502 5.5.2 Error: command not recognized\r\n");
	feed(s, "\x01\x02 hello\r\n", 1000);
	CHECK(strstr(h.logs, "NON-SMTP COMMAND from [192.0.2.1]:12345 after UNIMPLEMENTED: ?? "
			     "hello\n"));
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
	/* bare newline: ignore, the client goes on */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "HELO a\n", 1000);
	CHECK(strstr(h.logs, "BARE NEWLINE from [192.0.2.1]:12345 after HELO a\n"));
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 mx.example\r\n");
	CHECK(smtp_screen_outcome(s).bare_newline_fail);
	smtp_screen_free(s);
	/* the time limit */
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, cache, 1000, WALL);
	take(s, out, sizeof(out));
	CHECK(smtp_screen_deadline(s) == 301000);
	smtp_screen_timer(s, 301000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "421 4.4.2 mx.example Error: timeout exceeded\r\n");
	CHECK(strstr(h.logs, "COMMAND TIME LIMIT from [192.0.2.1]:12345 after CONNECT\n"));
	smtp_screen_free(s);
	smtp_screen_config_free(c);
	/* the count limit and the line limit */
	p = base_params();
	p.bare_newline_enable = true;
	p.command_count_limit = 2;
	c = mkcfg(&p);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;1;1;0", 1000, WALL);
	take(s, out, sizeof(out));
	feed(s, "NOOP\r\n", 1000);
	feed(s, "NOOP\r\n", 1000);
	feed(s, "NOOP\r\n", 1000);
	CHECK_STR_EQ(take(s, out, sizeof(out)), "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n421 mx.example "
						"Service unavailable - try again later\r\n");
	CHECK(strstr(h.logs, "COMMAND COUNT LIMIT from [192.0.2.1]:12345 after NOOP\n"));
	smtp_screen_free(s);
	s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;1;1;0", 1000, WALL);
	take(s, out, sizeof(out));
	char *big = malloc(3000);
	memset(big, 'A', 3000);
	CHECK_INT_EQ(smtp_screen_input(s, big, 3000, 1000), 2048);
	free(big);
	CHECK(strstr(h.logs, "COMMAND LENGTH LIMIT from [192.0.2.1]:12345 after CONNECT\n"));
	CHECK_INT_EQ(smtp_screen_state(s), SMTP_SCREEN_ST_CLOSE);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

static void test_output_bound(void)
{
	struct smtp_screen_params p = base_params();
	p.bare_newline_enable = true;
	p.command_count_limit = 100000;
	struct smtp_screen_config *c = mkcfg(&p);
	struct harness h;
	struct smtp_screen *s = mk(c, &h);
	smtp_screen_start(s, SMTP_SCREEN_ACL_DUNNO, "1800000000;1;1;1;0", 1000, WALL);
	/* a client that sends without reading: the engine stops at its high-water mark */
	size_t total = 0;
	for (int i = 0; i < 100; i++)
		total += feed(s, "NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n", 1000);
	CHECK(smtp_screen_output(s).len <= 2048 + 64);
	CHECK(!smtp_screen_wants_input(s));
	CHECK(total < 3600);
	smtp_screen_free(s);
	smtp_screen_config_free(c);
}

int main(void)
{
	RUN_TEST(test_helpers);
	RUN_TEST(test_config);
	RUN_TEST(test_allowlisted);
	RUN_TEST(test_denylisted);
	RUN_TEST(test_connection_limit);
	RUN_TEST(test_set_client_and_refuse);
	RUN_TEST(test_pass_new_then_old);
	RUN_TEST(test_cache_parse);
	RUN_TEST(test_pregreet);
	RUN_TEST(test_hangup);
	RUN_TEST(test_dnsbl);
	RUN_TEST(test_allowlist_threshold);
	RUN_TEST(test_deep_pass);
	RUN_TEST(test_deep_fail);
	RUN_TEST(test_discard_ehlo);
	RUN_TEST(test_output_bound);
	return TEST_RESULT();
}
