/* mgmt/config.c: mxgate.cf in Postfix main.cf syntax.
 *
 *   test_config             syntax, expansion, every parameter's validation (with line
 *                           numbers), defaults, re-wrapped files, the example config
 *   test_config --postconf  the same expansions and defaults against Debian's Postfix
 *                           (`postconf -x`); fails, naming the postfix package, without
 *                           /usr/sbin/postconf: the oracle is never skipped */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "mgmt/config_params.h"
#include "load_config.h"
#include "testing.h"

#define POSTCONF "/usr/sbin/postconf"


/* Loads without any message at all. */
static struct load load_clean(const char *text)
{
	struct load l = load(text);
	if (l.rc != 0 || l.diag[0]) {
		fprintf(stderr, "  config:\n%s\n  rc %d, diag:\n%s", text, l.rc, l.diag);
		CHECK(l.rc == 0 && l.diag[0] == '\0');
	}
	return l;
}

static bool diag_has(const struct load *l, const char *want)
{
	if (strstr(l->diag, want))
		return true;
	fprintf(stderr, "  diag lacks \"%s\":\n%s", want, l->diag);
	return false;
}

/* The config fails to load and says `want` (a whole "t.cf:N: ..." line start). */
static void expect_error(const char *text, const char *want)
{
	struct load l = load(text);
	if (l.rc != -EINVAL)
		fprintf(stderr, "  config:\n%s\n  loaded (rc %d)\n", text, l.rc);
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(l.cfg == NULL);
	CHECK(diag_has(&l, want));
	load_free(&l);
}

/* The config loads, with the warning `want`. */
static void expect_warning(const char *text, const char *want)
{
	struct load l = load(text);
	if (l.rc != 0)
		fprintf(stderr, "  config:\n%s\n  failed: %s", text, l.diag);
	CHECK_INT_EQ(l.rc, 0);
	CHECK(diag_has(&l, want));
	load_free(&l);
}

static const char *get(const struct load *l, const char *name)
{
	return l->cfg ? mx_config_get(l->cfg, name) : NULL;
}

/* ------------------------------------------------------------------------------------ */

static void test_defaults(void)
{
	struct load l = load_clean("");
	struct mx_config *c = l.cfg;
	if (!c)
		return;
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	char want_host[300];
	snprintf(want_host, sizeof(want_host), strchr(host, '.') ? "%s" : "%s.localdomain", host);
	CHECK_STR_EQ(c->myhostname, want_host);
	CHECK_STR_EQ(c->mydomain, strchr(want_host, '.') + 1);
	CHECK_STR_EQ(c->myorigin, want_host);
	CHECK_STR_EQ(c->mail_name, "mxgate");
	char banner[400];
	snprintf(banner, sizeof(banner), "%s ESMTP mxgate", want_host);
	CHECK_STR_EQ(c->smtpd_banner, banner);
	CHECK_STR_EQ(get(&l, "mynetworks"), "127.0.0.0/8 [::1]/128");
	CHECK_INT_EQ(netlist_count(c->mynetworks), 2);
	CHECK_INT_EQ(netlist_count(c->bare_newline_exclusions), 2);
	/* anvil(8)'s limits: Postfix's defaults; the exceptions are $mynetworks */
	CHECK_INT_EQ(c->client_connection_count_limit, 50);
	CHECK_INT_EQ(c->client_connection_rate_limit, 0);
	CHECK_INT_EQ(c->client_message_rate_limit, 0);
	CHECK_INT_EQ(c->client_recipient_rate_limit, 0);
	CHECK_INT_EQ(c->client_ipv4_prefix_length, 32);
	CHECK_INT_EQ(c->client_ipv6_prefix_length, 84);
	CHECK_INT_EQ(c->anvil_rate_time_unit_s, 60);
	CHECK_INT_EQ(c->anvil_table_size, 131072);
	CHECK_STR_EQ(get(&l, "smtpd_client_event_limit_exceptions"), "127.0.0.0/8 [::1]/128");
	CHECK_INT_EQ(netlist_count(c->event_limit_exceptions), 2);
	CHECK_INT_EQ(domain_list_count(c->mydestination), 3);
	CHECK_INT_EQ(domain_list_count(c->relay_domains), 0);
	CHECK_STR_EQ(get(&l, "relay_domains"), "");
	CHECK(domain_list_match(c->mydestination, MX_SPAN_LIT("localhost")));
	CHECK(domain_list_match(c->mydestination, mx_span_cstr(want_host)));
	CHECK_INT_EQ(c->smtpd_timeout_s, 300);
	CHECK_STR_EQ(c->maillog_file, "");
	CHECK_STR_EQ(c->syslog_facility, "mail");
	CHECK_STR_EQ(c->syslog_name, "mxgate");
	CHECK_STR_EQ(c->mxgate_syslog_socket, "/dev/log");
	CHECK_INT_EQ(c->transport, MX_TRANSPORT_KERNEL);
	CHECK_INT_EQ(c->listen_count, 1);
	CHECK_STR_EQ(c->listen[0].host, "0.0.0.0");
	CHECK_INT_EQ(c->listen[0].port, 25);
	CHECK_INT_EQ(c->workers, 0);
	CHECK_STR_EQ(c->spool_directory, "/var/spool/mxgate");
	CHECK_INT_EQ(c->max_connections, 10000);
	CHECK_STR_EQ(c->source_path, "t.cf");

	/* The engine's view: every field, Postfix's values and mxgate's hardened ones. */
	const struct smtp_config *s = &c->smtp;
	CHECK(s->myhostname == c->myhostname);
	CHECK(s->banner == c->smtpd_banner);
	CHECK(s->mail_name == c->mail_name);
	CHECK_INT_EQ(s->line_length_limit, 2048);
	CHECK_INT_EQ(s->message_size_limit, 10240000);
	CHECK_INT_EQ(s->header_size_limit, 102400);
	CHECK_INT_EQ(s->hopcount_limit, 50);
	CHECK_INT_EQ(s->recipient_limit, 1000);
	CHECK_INT_EQ(s->soft_error_limit, 10);
	CHECK_INT_EQ(s->hard_error_limit, 20);
	CHECK_INT_EQ(s->junk_command_limit, 100);
	CHECK_INT_EQ(s->error_sleep_ms, 1000);
	CHECK_INT_EQ(s->bare_newline, SMTP_BARE_NEWLINE_NORMALIZE);
	CHECK(s->forbid_unauth_pipelining);
	CHECK(!s->helo_required);
	CHECK(!s->disable_vrfy_command);
	CHECK(!s->strict_rfc821_envelopes);
	CHECK(s->enable_pipelining);
	CHECK(s->enable_chunking);
	CHECK(s->enable_smtputf8);
	CHECK(s->enable_8bitmime);
	CHECK(s->enable_dsn);

	/* Every known parameter has a value; unknown names have none. */
	for (size_t i = 0; i < MX_P_MAX; i++) {
		CHECK_INT_EQ(mx_params[i].id, i);
		CHECK(mx_config_get(c, mx_params[i].name) != NULL);
		CHECK(mx_params[i].doc && *mx_params[i].doc);
	}
	CHECK(mx_config_get(c, "smtpd_etrn_restrictions") == NULL);
	CHECK(mx_config_get(c, "") == NULL);
	CHECK(mx_config_get(NULL, "myhostname") == NULL);
	CHECK_STR_EQ(mx_transport_name(MX_TRANSPORT_KERNEL), "kernel");
	CHECK_STR_EQ(mx_transport_name(MX_TRANSPORT_DPDK), "dpdk");
	load_free(&l);
}

static void test_syntax(void)
{
	/* Comments, blank lines, continuation with spaces and tabs, a comment line inside a
	 * continued value, blanks around '=', no blanks at all, a value holding '=' and '#'. */
	struct load l = load_clean("# a comment\n"
				   "\n"
				   "   \t \n"
				   "   # an indented comment\n"
				   "myhostname=mx.example.com\n"
				   "mydestination = a.example,\n"
				   "    b.example,\n"
				   "# not part of the value\n"
				   "\tc.example\n"
				   "  # neither is this\n"
				   "   \n"
				   "  d.example\n"
				   "mail_name\t=\tmx=gate#1   \n"
				   "relay_domains =\n"
				   "smtpd_banner = $myhostname ESMTP\n"
				   "\t$mail_name");
	CHECK_STR_EQ(get(&l, "myhostname"), "mx.example.com");
	/* Continuation lines are joined as they are, their leading blanks kept. */
	CHECK_STR_EQ(get(&l, "mydestination"), "a.example,    b.example,\tc.example  d.example");
	CHECK_INT_EQ(domain_list_count(l.cfg ? l.cfg->mydestination : NULL), 4);
	CHECK_STR_EQ(get(&l, "mail_name"), "mx=gate#1");
	CHECK_STR_EQ(get(&l, "relay_domains"), "");
	CHECK_STR_EQ(get(&l, "smtpd_banner"), "mx.example.com ESMTP\tmx=gate#1");
	load_free(&l);

	/* CRLF line ends are line ends. */
	l = load_clean("myhostname = mx.example.com\r\n"
		       "mydestination = a.example,\r\n"
		       "  b.example\r\n"
		       "\r\n"
		       "mail_name = crlf\r\n");
	CHECK_STR_EQ(get(&l, "mydestination"), "a.example,  b.example");
	CHECK_STR_EQ(get(&l, "mail_name"), "crlf");
	load_free(&l);

	/* No newline at the end of the file. */
	l = load_clean("myhostname = mx.example.com\nmail_name = last");
	CHECK_STR_EQ(get(&l, "mail_name"), "last");
	load_free(&l);

	/* A later entry overrides an earlier one, with Postfix's warning. */
	l = load("mail_name = one\nmyhostname = mx.example.com\nmail_name = two\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(get(&l, "mail_name"), "two");
	CHECK(diag_has(&l, "t.cf:3: warning: overriding earlier entry: mail_name=one\n"));
	load_free(&l);

	/* Errors name the exact line; all of them are reported, in line order. */
	l = load("# 1\n"
		 "myhostname = mx.example.com\n"
		 "this line has no equals sign\n"
		 "= value without a name\n"
		 "smtpd_timeout = 10x\n"
		 "mail_name = ok\n"
		 "hopcount_limit = many\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK_STR_EQ(l.diag,
		     "t.cf:3: missing '=' after attribute name: \"this line has no equals sign\"\n"
		     "t.cf:4: missing attribute name: \"= value without a name\"\n"
		     "t.cf:5: parameter smtpd_timeout: bad time value or unit: 10x\n"
		     "t.cf:7: bad numerical configuration: hopcount_limit = many\n");
	load_free(&l);

	/* A continued logical line is reported at the line where it starts. */
	expect_error("myhostname = mx.example.com\n"
		     "mynetworks = 127.0.0.0/8,\n"
		     "   192.0.2.0/24,\n"
		     "   10.0.0.1/8\n",
		     "t.cf:2: parameter mynetworks: non-null host address bits in \"10.0.0.1/8\"");
	/* A line without '=' inside a continued one: the logical line's start. */
	expect_error("myhostname = mx.example.com\nfoo\n  bar\n",
		     "t.cf:2: missing '=' after attribute name: \"foo  bar\"\n");

	/* Text that starts with whitespace before any logical line: Postfix's warning; the
	 * text and its continuations are ignored. */
	l = load("  mail_name = ignored\n   more\nmyhostname = mx.example.com\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK(diag_has(&l, "t.cf:1: warning: logical line must not start with whitespace: "
			   "\"  mail_name = ignored\"\n"));
	CHECK_STR_EQ(get(&l, "mail_name"), "mxgate");
	load_free(&l);

	/* Control characters are refused at their line (a stray CR, a form feed). */
	expect_error("myhostname = mx.example.com\nmail_name = a\rb\n",
		     "t.cf:2: control character 0x0d in the text (column 14)");
	expect_error("myhostname = mx.example.com\nmail_name = a\n \x01x\n",
		     "t.cf:3: control character 0x01");

	/* The famous trap: '#' after a value is part of it, and the message says so. */
	expect_error("hopcount_limit = 50 # loops\n",
		     "t.cf:1: bad numerical configuration: hopcount_limit = 50 # loops (a '#' "
		     "after a value is not a comment in main.cf syntax)");
}

static void test_unused_parameters(void)
{
	/* Unknown names warn as postconf(1) does, unless a value refers to them (in a
	 * taken branch or not, or through another user parameter). */
	struct load l = load("myhostname = mx.example.com\n"
			     "smtpd_no_such_restrictions = permit_mynetworks\n"
			     "my_domains = a.example $more_domains\n"
			     "more_domains = b.example\n"
			     "mydestination = $my_domains\n"
			     "flag = x\n"
			     "mail_name = ${nothing?{$flag}:{mxgate}}\n"
			     "orphan = $orphan_ref\n"
			     "orphan_ref = 1\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(l.diag, "t.cf:2: warning: unused parameter: "
			     "smtpd_no_such_restrictions=permit_mynetworks\n"
			     "t.cf:7: warning: undefined parameter: nothing\n"
			     "t.cf:8: warning: unused parameter: orphan=$orphan_ref\n");
	CHECK_STR_EQ(get(&l, "mydestination"), "a.example b.example");
	CHECK_STR_EQ(get(&l, "mail_name"), "mxgate");
	CHECK(get(&l, "my_domains") == NULL); /* only known parameters are answered */
	load_free(&l);
}

/* Expansion: what `postconf -x` says for x = EXPR with mail_name = Postfix (checked
 * against Postfix itself by --postconf). */
struct expand_case {
	const char *expr;
	const char *want;  /* NULL: an error containing `error` */
	const char *error;
	const char *extra; /* more lines of main.cf */
};

static const struct expand_case expand_cases[] = {
	{ "plain text", "plain text", NULL, NULL },
	{ "$$x $(mail_name) ${mail_name} $mail_name", "$x Postfix Postfix Postfix", NULL, NULL },
	{ "$mail_name.x ${mail_name}{} $$$mail_name $${mail_name}",
	  "Postfix.x Postfix{} $Postfix ${mail_name}", NULL, NULL },
	{ "${ mail_name} $( mail_name ) ${mail_name ?x}", "Postfix Postfix x", NULL, NULL },
	{ "${mail_name?yes}${nothing?no}", "yes", NULL, NULL },
	{ "${mail_name:no}${nothing:yes}", "yes", NULL, NULL },
	{ "${nothing?set:unset}", "", NULL, NULL },
	{ "${mail_name?x:y:z}", "x:y:z", NULL, NULL },
	{ "${mail_name?x}y}", "xy}", NULL, NULL },
	{ "[${mail_name?{ a }:{ b }}]", "[ a ]", NULL, NULL },
	{ "[${nothing?{ a }:{ b }}]", "[ b ]", NULL, NULL },
	{ "[${nothing:{ a }}x]", "[ a x]", NULL, NULL },
	{ "${mail_name?{{a}}} ${mail_name?{a{b}c}}", "{a} a{b}c", NULL, NULL },
	{ "${mail_name?a{b}:c}", "a{b}:c", NULL, NULL },
	{ "$(mail_name?{a}) $(mail_name?(x)) $(mail_name?{(}:{)})", "a (x) (", NULL, NULL },
	{ "${mail_name?$mail_name} ${mail_name?${mail_name?{n}}}", "Postfix n", NULL, NULL },
	{ "${{1} == {1} ? {yes} : {no}}", "yes", NULL, NULL },
	{ "${{1} == {1}}|${{1} != {1}}|", "true||", NULL, NULL },
	{ "${ {1} != {2} ?yes}", "yes", NULL, NULL },
	{ "${{1}=={1}?{A}:B}", "A", NULL, NULL },
	{ "${{1} == {1} ? T : F}", " T : F", NULL, NULL }, /* blanks before unbraced text stay */
	{ "${{1} == {1} :{no}}", "", NULL, NULL },
	{ "${{1}  ==  {1}  ?  {T}  :  {F}  }", "T", NULL, NULL },
	{ "${{2} < {10} ? {lt} : {ge}}", "lt", NULL, NULL },
	{ "${{2} > {10}?{gt}:{le}} ${{10} >= {9} ? {ge} : {lt}}", "le ge", NULL, NULL },
	{ "${{07} == {7} ? {eq} : {ne}} ${{07} <= {7} ? {le} : {gt}}", "eq le", NULL, NULL },
	{ "${{x} < {10} ? {lt} : {ge}} ${{x} < {y}?{T}:{F}} ${{10} > {x}?{T}:{F}}", "ge T F",
	  NULL, NULL },
	{ "${{} == {}?{e}:{n}} ${{} < {1}?{T}:{F}} ${{ 1 } == {1}?{y}:{n}}", "e T n", NULL,
	  NULL },
	{ "${{3.6} <level {3.10} ? {lt} : {ge}}", "lt", NULL, NULL },
	{ "${{3.6} <=level {3.6}?{le}:{gt}} ${{3} ==level {3.0}?{T}:{F}}", "le T", NULL, NULL },
	{ "${{3.6.1} >level {3.6}?{T}:{F}} ${{3.06} ==level {3.6}?{T}:{F}}", "T T", NULL,
	  NULL },
	{ "${{3} <level {2} ? {subnet} : {host}} ${{1} <=level{2}?{T}:{F}}", "host T", NULL,
	  NULL },
	{ "${{$mail_name} == {Postfix}?{$mail_name}:{F}}", "Postfix", NULL, NULL },
	/* ? and : look at the value as written: b is "$nothing", not empty. */
	{ "${b?yes}|${b:no}|[$b]", "yes||[]", NULL, "b = $nothing" },
	{ "[$b]", "[$c]", NULL, "b = $$c" },
	{ "[$b]", "[late]", NULL, "b = $c\nc = late" },
	{ "$", NULL, "empty macro name: \"$\"", NULL },
	{ "a$", NULL, "empty macro name: \"a$\"", NULL },
	{ "$-x", NULL, "empty macro name", NULL },
	{ "${}", NULL, "empty macro name", NULL },
	{ "$()", NULL, "empty macro name", NULL },
	{ "${abc", NULL, "truncated macro reference: \"${abc\"", NULL },
	{ "${mail_name?{{x}", NULL, "truncated macro reference", NULL },
	{ "${a b}", NULL, "attribute name syntax error at: \"...a >>>b\"", NULL },
	{ "${mail_name?{x}junk}", NULL, "\":\" expected at: \"...x}>>>junk\"", NULL },
	{ "${mail_name?{a}{b}}", NULL, "\":\" expected at", NULL },
	{ "${mail_name:{x}:{y}}", NULL, "unexpected input at: \"...x}>>>:{y}\"", NULL },
	{ "${{1}=={1}?{T}:{F}junk}", NULL, "unexpected input at", NULL },
	{ "${{a}}", NULL, "\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" expected", NULL },
	{ "${{1}{1}}", NULL, "\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" expected at: \"...1}>>>{1}\"", NULL },
	{ "${{a} =~ {b}?{T}:{F}}", NULL, "\"==\" or \"!=\" or \"<\" or \"<=\" or \">=\" or \">\" expected at: \"...a}>>>=~ {b}?{T}:{F}\"", NULL },
	{ "${{1} < level {2}?{T}:{F}}", NULL, "\"{expression}\" expected at", NULL },
	{ "${{1} ==levelx {1}}", NULL, "bad operator suffix at: \"...==>>>levelx\"", NULL },
	{ "${{1}=={1}x?{T}}", NULL, "\"?\" or \":\" expected at: \"...}>>>x?{T}\"", NULL },
	{ "${{3.x} <level {4}?{T}:{F}}", NULL, "malformed compatibility level syntax: \"3.x\"",
	  NULL },
	{ "${{} ==level {0}?{T}:{F}}", NULL, "malformed compatibility level syntax: \"\"", NULL },
	{ "${{3.6.1.2} ==level {3}}", NULL, "malformed compatibility level syntax", NULL },
	{ "${{99999999999999999999} > {2}}", NULL, "bad number in expression", NULL },
	{ "${mail_name?{x}:{y}:{z}}", NULL, "unexpected input", NULL },
};

/* The config that shows expression `e` through smtpd_banner: its value is "h.example "
 * followed by what x expands to. */
static void expand_config(char *buf, size_t cap, const struct expand_case *e)
{
	snprintf(buf, cap,
		 "myhostname = h.example\n"
		 "mail_name = Postfix\n"
		 "smtpd_banner = $myhostname $x\n"
		 "x = %s\n%s%s",
		 e->expr, e->extra ? e->extra : "", e->extra ? "\n" : "");
}

static void test_expansion(void)
{
	for (size_t i = 0; i < sizeof(expand_cases) / sizeof(expand_cases[0]); i++) {
		const struct expand_case *e = &expand_cases[i];
		char text[1024];
		expand_config(text, sizeof(text), e);
		struct load l = load(text);
		if (e->want) {
			char want[512];
			snprintf(want, sizeof(want), "h.example %s", e->want);
			if (l.rc != 0)
				fprintf(stderr, "  x = %s: %s", e->expr, l.diag);
			CHECK_INT_EQ(l.rc, 0);
			CHECK_STR_EQ(get(&l, "smtpd_banner"), want);
		} else {
			char want[256];
			snprintf(want, sizeof(want), "t.cf:4: parameter x: %s", e->error);
			CHECK_INT_EQ(l.rc, -EINVAL);
			if (!strstr(l.diag, want)) {
				fprintf(stderr, "  x = %s: want \"%s\", got:\n%s", e->expr, want,
					l.diag);
				CHECK(false);
			}
			/* One error, at its source: smtpd_banner is not blamed too. */
			CHECK(strstr(l.diag, "smtpd_banner") == NULL);
		}
		load_free(&l);
	}
}

static void test_recursion(void)
{
	/* Lazy: a value may use names defined later, or only by default. */
	struct load l = load_clean("mydestination = $relay_host_name, $myorigin\n"
				   "myorigin = $mydomain\n"
				   "relay_host_name = relay.$mydomain\n"
				   "mydomain = example.org\n"
				   "myhostname = mx.$mydomain\n");
	CHECK_STR_EQ(get(&l, "mydestination"), "relay.example.org, example.org");
	CHECK_STR_EQ(get(&l, "myhostname"), "mx.example.org");
	CHECK_STR_EQ(get(&l, "smtpd_banner"), "mx.example.org ESMTP mxgate");
	CHECK_STR_EQ(get(&l, "smtpd_forbid_bare_newline_exclusions"), "127.0.0.0/8 [::1]/128");
	load_free(&l);

	/* Loops: the chain is named, once, at the first line of the cycle. */
	expect_error("myhostname = mx.example.com\nmail_name = $mail_name\n",
		     "t.cf:2: parameter mail_name: recursive expansion loop: $mail_name -> "
		     "$mail_name\n");
	l = load("myhostname = mx.example.com\n"
		 "a = $b\n"
		 "b = ${c?{$c}}\n"
		 "c = x$a\n"
		 "mail_name = $a\n"
		 "mydestination = $a\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK_STR_EQ(l.diag,
		     "t.cf:2: parameter a: recursive expansion loop: $a -> $b -> $c -> $a\n");
	load_free(&l);
	/* A loop through a computed default: myhostname's default needs mydomain. */
	expect_error("mydomain = $myhostname\n",
		     "t.cf:1: parameter mydomain: recursive expansion loop: $myhostname -> "
		     "$mydomain -> $myhostname");
	expect_error("myhostname = mail.$mydomain\n",
		     "t.cf:1: parameter myhostname: recursive expansion loop: $myhostname -> "
		     "$mydomain -> $myhostname");

	/* Undefined names expand to nothing, with postconf's warning. */
	l = load("myhostname = mx.example.com\nmail_name = mx${gate}gate\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(get(&l, "mail_name"), "mxgate");
	CHECK_STR_EQ(l.diag, "t.cf:2: warning: undefined parameter: gate\n");
	load_free(&l);

	/* Nesting: an expression inside at most 100 others, as Postfix allows; here
	 * mail_name's own $v0 is the first (postconf agrees, see --postconf). */
	for (int n = 98; n <= 101; n++) {
		char *text = malloc(64 * 1024);
		size_t len = (size_t)sprintf(text, "myhostname = mx.example.com\n"
						   "mail_name = $v0\n");
		for (int i = 0; i < n; i++)
			len += (size_t)sprintf(text + len, "v%d = $v%d\n", i, i + 1);
		sprintf(text + len, "v%d = end\n", n);
		l = load(text);
		if (n <= 99) {
			if (l.rc != 0)
				fprintf(stderr, "  %d levels: %s", n, l.diag);
			CHECK_INT_EQ(l.rc, 0);
			CHECK_STR_EQ(get(&l, "mail_name"), "end");
		} else {
			CHECK_INT_EQ(l.rc, -EINVAL);
			CHECK(diag_has(&l, "unreasonable macro call nesting"));
		}
		load_free(&l);
		free(text);
	}

	/* Exponential blow-up is bounded: each doubling is expanded once, and the value
	 * hits the size limit instead of the memory. */
	char *text = malloc(8192);
	size_t len = (size_t)sprintf(text, "myhostname = mx.example.com\nmail_name = $d0\n");
	for (int i = 0; i < 40; i++)
		len += (size_t)sprintf(text + len, "d%d = $d%d$d%d\n", i, i + 1, i + 1);
	sprintf(text + len, "d40 = xxxxxxxx\n");
	l = load(text);
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(diag_has(&l, "value longer than 1048576 bytes after expansion"));
	load_free(&l);
	/* And the same through conditionals, which only test values as written. */
	len = (size_t)sprintf(text, "myhostname = mx.example.com\nmail_name = x$c0\n");
	for (int i = 0; i < 45; i++)
		len += (size_t)sprintf(text + len, "c%d = ${c%d?{$c%d}}${c%d:{$c%d}}\n", i, i + 1,
				       i + 1, i + 1, i + 1);
	sprintf(text + len, "c45 = y\n");
	l = load(text);
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(get(&l, "mail_name"), "xy");
	load_free(&l);
	free(text);
}

/* Every parameter's validation, at its line. */
struct bad_value {
	const char *line; /* line 2 of the file, after a valid myhostname */
	const char *want; /* "t.cf:2: " is prefixed */
};

static const struct bad_value bad_values[] = {
	{ "myhostname = ", "bad string length 0 < 1: myhostname = " },
	{ "myhostname = mx..example.com", "parameter myhostname: bad parameter value: "
					  "mx..example.com: empty label" },
	{ "myhostname = mx_1.example.com!", "invalid character" },
	{ "myhostname = 192.0.2.1", "numeric name" },
	{ "mydomain = -example.com", "parameter mydomain: bad parameter value: -example.com: "
				     "label starts with '-'" },
	{ "myorigin = example.com.", "parameter myorigin: bad parameter value: example.com.: "
				     "empty label" },
	{ "mail_name = ", "bad string length 0 < 1: mail_name = " },
	{ "mail_name = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  "bad string length 65 > 64: mail_name" },
	{ "mail_name = caf\xc3\xa9", "parameter mail_name: character 0xc3 is not printable ASCII" },
	{ "smtpd_banner = ", "bad string length 0 < 1: smtpd_banner = " },
	{ "compatibility_level = 3.x", "parameter compatibility_level: malformed compatibility "
				       "level syntax: \"3.x\"" },
	{ "mynetworks = 10.0.0.1/8", "parameter mynetworks: non-null host address bits in "
				     "\"10.0.0.1/8\", perhaps you should use \"10.0.0.0/8\" "
				     "instead" },
	{ "mynetworks = 192.0.2.0/24 hash:/etc/postfix/network_table",
	  "parameter mynetworks: \"hash:/etc/postfix/network_table\": table lookups "
	  "(type:name) arrive with the table engine" },
	{ "mynetworks = 10.0.0.0/33", "parameter mynetworks: bad net/mask pattern: "
				      "\"10.0.0.0/33\"" },
	{ "mydestination = $myhostname, hash:/etc/postfix/local_domains",
	  "parameter mydestination: \"hash:/etc/postfix/local_domains\": table lookups" },
	{ "mydestination = exa*mple.com", "parameter mydestination: bad domain \"exa*mple.com\": "
					  "invalid character '*'" },
	{ "relay_domains = /etc/postfix/relay_domains", "parameter relay_domains: "
							"\"/etc/postfix/relay_domains\": "
							"/file/name patterns are not supported" },
	{ "relay_domains = example..com", "parameter relay_domains: bad domain \"example..com\"" },
	{ "message_size_limit = 10M", "bad numerical configuration: message_size_limit = 10M" },
	{ "message_size_limit = -1", "invalid message_size_limit parameter value -1 < 0" },
	{ "message_size_limit = 99999999999999999999", "bad numerical configuration" },
	{ "header_size_limit = 0", "invalid header_size_limit parameter value 0 < 1" },
	{ "header_size_limit = 2147483648", "bad numerical configuration: header_size_limit" },
	{ "header_size_limit = 1.5", "bad numerical configuration" },
	{ "line_length_limit = 511", "invalid line_length_limit parameter value 511 < 512" },
	{ "hopcount_limit = ", "bad numerical configuration: hopcount_limit = " },
	{ "hopcount_limit = 0", "invalid hopcount_limit parameter value 0 < 1" },
	{ "smtpd_recipient_limit = 0", "invalid smtpd_recipient_limit parameter value 0 < 1" },
	{ "smtpd_recipient_limit = 1 000", "bad numerical configuration" },
	{ "smtpd_soft_error_limit = 0", "invalid smtpd_soft_error_limit parameter value 0 < 1" },
	{ "smtpd_hard_error_limit = x", "bad numerical configuration: smtpd_hard_error_limit" },
	{ "smtpd_junk_command_limit = 0", "invalid smtpd_junk_command_limit parameter value 0 < 1" },
	{ "smtpd_error_sleep_time = 1x", "parameter smtpd_error_sleep_time: bad time value or "
					 "unit: 1x" },
	{ "smtpd_error_sleep_time = 2d", "invalid smtpd_error_sleep_time: 172800 (max 86400)" },
	{ "smtpd_per_request_deadline = maybe",
	  "bad boolean configuration: smtpd_per_request_deadline = maybe" },
	{ "smtpd_per_record_deadline = maybe",
	  "parameter smtpd_per_record_deadline: bad value \"maybe\"" },
	{ "smtpd_min_data_rate = 0", "invalid smtpd_min_data_rate parameter value 0 < 1" },
	{ "smtpd_recipient_overshoot_limit = x",
	  "bad numerical configuration: smtpd_recipient_overshoot_limit" },
	{ "smtpd_timeout = 0", "invalid smtpd_timeout: 0 (min 1)" },
	{ "smtpd_timeout = 10ss", "bad time value or unit: 10ss" },
	{ "smtpd_timeout = -5s", "bad time value or unit: -5s" },
	{ "smtpd_timeout = s", "bad time value or unit: s" },
	{ "smtpd_timeout = 9999999999w", "bad time value or unit" },
	{ "smtpd_timeout = 4000w", "bad time value or unit" },
	{ "smtpd_forbid_bare_newline = no", "parameter smtpd_forbid_bare_newline: \"no\" is not "
					    "supported: mxgate never lets a bare <LF> end the "
					    "message" },
	{ "smtpd_forbid_bare_newline = maybe", "parameter smtpd_forbid_bare_newline: bad value "
					       "\"maybe\" (expected one of: normalize yes "
					       "reject)" },
	{ "smtpd_forbid_bare_newline_exclusions = example.com", "host name patterns need DNS" },
	{ "smtpd_forbid_unauth_pipelining = true", "bad boolean configuration: "
						   "smtpd_forbid_unauth_pipelining = true" },
	{ "smtpd_helo_required = 1", "bad boolean configuration: smtpd_helo_required = 1" },
	{ "smtpd_peername_lookup = maybe", "bad boolean configuration: smtpd_peername_lookup = maybe" },
	{ "smtpd_upstream_proxy_protocol = nginx", "parameter smtpd_upstream_proxy_protocol: "
						 "bad value \"nginx\"" },
	{ "smtpd_upstream_proxy_timeout = 0", "smtpd_upstream_proxy_timeout" },
	{ "queue_directory = var/spool/postfix", "not an absolute path" },
	{ "smtpd_sasl_type = saslauthd", "parameter smtpd_sasl_type: bad value \"saslauthd\"" },
	{ "smtpd_sasl_auth_enable = 1", "bad boolean configuration: smtpd_sasl_auth_enable = 1" },
	{ "smtpd_sasl_path = proxy:unix:auth", "smtpd_sasl_path: unsupported endpoint" },
	{ "smtpd_sasl_service = ", "smtpd_sasl_service" },
	{ "smtpd_sasl_security_options = noplaintext, nosuch", "smtpd_sasl_security_options" },
	{ "smtpd_sasl_tls_security_options = bogus", "smtpd_sasl_tls_security_options" },
	{ "smtpd_sasl_local_domain = a\x01" "b", "control character 0x01" },
	{ "smtpd_sasl_exceptions_networks = 300.0.0.0/8", "smtpd_sasl_exceptions_networks" },
	{ "smtpd_sasl_authenticated_header = y", "bad boolean configuration: "
						  "smtpd_sasl_authenticated_header = y" },
	{ "smtpd_sasl_response_limit = 0", "smtpd_sasl_response_limit" },
	{ "broken_sasl_auth_clients = sure", "bad boolean configuration: broken_sasl_auth_clients" },
	{ "smtpd_tls_auth_only = 2", "bad boolean configuration: smtpd_tls_auth_only = 2" },
	{ "disable_vrfy_command = on", "bad boolean configuration: disable_vrfy_command = on" },
	{ "strict_rfc821_envelopes = ", "bad boolean configuration: strict_rfc821_envelopes = " },
	{ "smtputf8_enable = yess", "bad boolean configuration: smtputf8_enable = yess" },
	{ "maillog_file = var/log/mxgate.log", "parameter maillog_file: not an absolute path: "
					       "\"var/log/mxgate.log\"" },
	{ "data_directory = lib/mxgate", "parameter data_directory: not an absolute path: "
					 "\"lib/mxgate\"" },
	{ "syslog_facility = mial", "parameter syslog_facility: bad value \"mial\"" },
	{ "syslog_facility = local8", "parameter syslog_facility: bad value \"local8\"" },
	{ "syslog_facility = ", "parameter syslog_facility: bad value \"\"" },
	{ "syslog_name = ", "syslog_name" },
	{ "syslog_name = mx gate", "parameter syslog_name: character ' ' (0x20) in \"mx gate\"" },
	{ "syslog_name = mx[1]", "parameter syslog_name: character '[' (0x5b)" },
	{ "syslog_name = mx:gate", "parameter syslog_name: character ':' (0x3a)" },
	{ "syslog_name = mx\x01gate", "control character 0x01" },
	{ "mxgate_syslog_socket = dev/log", "parameter mxgate_syslog_socket: not an absolute "
					    "path: \"dev/log\"" },
	{ "mxgate_syslog_socket = ", "mxgate_syslog_socket" },
	{ "mxgate_transport = netmap", "parameter mxgate_transport: bad value \"netmap\" "
				       "(expected one of: kernel dpdk)" },
	{ "dataplane = xdp", "parameter dataplane: bad value \"xdp\" (expected one of: kernel "
			     "dpdk)" },
	{ "mxgate_dpdk_eal_args = --no-huge \x01x", "control character 0x01 in the text" },
	{ "mxgate_dpdk_ports = p0\x7fx", "control character 0x7f in the text" },
	{ "mxgate_dpdk_steering = rss", "parameter mxgate_dpdk_steering: bad value \"rss\" "
					"(expected one of: auto software)" },
	{ "mxgate_dpdk_mbufs = 100", "invalid mxgate_dpdk_mbufs parameter value 100 < 1023" },
	{ "mxgate_dpdk_idle_sleep_us = 100001", "invalid mxgate_dpdk_idle_sleep_us parameter "
						"value 100001 > 100000" },
	{ "mxgate_dpdk_idle_sleep_max_us = 1000001", "invalid mxgate_dpdk_idle_sleep_max_us "
						     "parameter value 1000001 > 1000000" },
	{ "mxgate_dpdk_fault = drop=\x02x", "control character 0x02 in the text" },
	{ "mxgate_listen = ", "parameter mxgate_listen: at least one address is required" },
	{ "mxgate_listen = 0.0.0.0", "parameter mxgate_listen: bad address \"0.0.0.0\": "
				     "expected ADDRESS:PORT or [IPV6]:PORT" },
	{ "mxgate_listen = :25", "a numeric IPv4 address is required (0.0.0.0 or [::] means "
				 "every address)" },
	{ "mxgate_listen = ::1:25", "bad address \"::1:25\": expected ADDRESS:PORT or "
				    "[IPV6]:PORT" },
	{ "mxgate_listen = [::1]25", "expected [IPV6]:PORT" },
	{ "mxgate_listen = [127.0.0.1]:25", "a numeric IPv6 address is required" },
	{ "mxgate_listen = mx.example.com:25", "a numeric IPv4 address is required" },
	{ "mxgate_listen = 0.0.0.0:0", "parameter mxgate_listen: bad port \"0\" for 0.0.0.0" },
	{ "mxgate_listen = [::]:65536", "bad port \"65536\" for [::]" },
	{ "mxgate_listen = 0.0.0.0:smtp", "bad port \"smtp\"" },
	{ "mxgate_listen = 0.0.0.0:25, 0.0.0.0:25", "0.0.0.0:25 is listed twice" },
	{ "mxgate_listen = [::1]:25 [0::1]:25", "[0::1]:25 is listed twice" },
	{ "mxgate_listen = 1.0.0.1:25 1.0.0.2:25 1.0.0.3:25 1.0.0.4:25 1.0.0.5:25 1.0.0.6:25 "
	  "1.0.0.7:25 1.0.0.8:25 1.0.0.9:25 1.0.0.10:25 1.0.0.11:25 1.0.0.12:25 1.0.0.13:25 "
	  "1.0.0.14:25 1.0.0.15:25 1.0.0.16:25 1.0.0.17:25", "more than 16 addresses" },
	{ "mxgate_workers = -1", "invalid mxgate_workers parameter value -1 < 0" },
	{ "mxgate_workers = 1025", "invalid mxgate_workers parameter value 1025 > 1024" },
	{ "mxgate_spool_directory = ", "parameter mxgate_spool_directory: not an absolute path" },
	{ "mxgate_spool_directory = spool", "parameter mxgate_spool_directory: not an absolute "
					    "path: \"spool\"" },
	{ "mxgate_max_connections = 0", "invalid mxgate_max_connections parameter value 0 < 1" },
	{ "stress = yes", "parameter stress: is set by mxgate itself" },
	{ "stress = no", "stress" },
	{ "mxgate_stress_enter_percent = 0", "invalid mxgate_stress_enter_percent parameter "
					     "value 0 < 1" },
	{ "mxgate_stress_enter_percent = 101", "invalid mxgate_stress_enter_percent parameter "
					       "value 101 > 100" },
	{ "mxgate_stress_leave_percent = 90", "parameter mxgate_stress_leave_percent: 90 is not "
					      "below mxgate_stress_enter_percent (90)" },
	{ "mxgate_stress_leave_percent = 100", "invalid mxgate_stress_leave_percent parameter "
					       "value 100 > 99" },
	{ "mxgate_stress_minimum_time = 2d", "invalid mxgate_stress_minimum_time" },
	{ "smtpd_client_connection_count_limit = -1", "invalid "
	  "smtpd_client_connection_count_limit parameter value -1 < 0" },
	{ "smtpd_client_connection_rate_limit = x", "bad numerical configuration: "
						   "smtpd_client_connection_rate_limit = x" },
	{ "smtpd_client_message_rate_limit = 1.5", "bad numerical configuration: "
						   "smtpd_client_message_rate_limit" },
	{ "smtpd_client_recipient_rate_limit = -5", "invalid "
	  "smtpd_client_recipient_rate_limit parameter value -5 < 0" },
	{ "smtpd_client_auth_rate_limit = -1", "invalid "
	  "smtpd_client_auth_rate_limit parameter value -1 < 0" },
	{ "smtpd_client_new_tls_session_rate_limit = -1", "invalid "
	  "smtpd_client_new_tls_session_rate_limit parameter value -1 < 0" },
	{ "smtpd_client_new_tls_session_rate_limit = many", "bad numerical configuration: "
	  "smtpd_client_new_tls_session_rate_limit = many" },
	{ "smtpd_client_event_limit_exceptions = 10.0.0.1/8", "parameter "
	  "smtpd_client_event_limit_exceptions" },
	{ "smtpd_client_connection_limit_exceptions = 192.0.2.0/24",
	  "smtpd_client_connection_limit_exceptions: not implemented by mxgate: the Postfix "
	  "2.2 name of smtpd_client_event_limit_exceptions" },
	{ "smtpd_client_ipv4_prefix_length = 33", "invalid smtpd_client_ipv4_prefix_length "
						  "parameter value 33 > 32" },
	{ "smtpd_client_ipv6_prefix_length = 129", "invalid smtpd_client_ipv6_prefix_length "
						   "parameter value 129 > 128" },
	{ "anvil_rate_time_unit = 0", "invalid anvil_rate_time_unit: 0 (min 1)" },
	{ "mxgate_anvil_table_size = 100", "invalid mxgate_anvil_table_size parameter value "
					   "100 < 1024" },
	{ "mxgate_max_connections = 10000001", "invalid mxgate_max_connections parameter value "
					       "10000001 > 10000000" },
	{ "mxgate_spool_commit_delay = -1", "invalid mxgate_spool_commit_delay parameter value "
					    "-1 < 0" },
	{ "mxgate_spool_commit_delay = 1001", "invalid mxgate_spool_commit_delay parameter value "
					      "1001 > 1000" },
	{ "mxgate_spool_quota = 1G", "bad numerical configuration: mxgate_spool_quota = 1G" },
	{ "mxgate_spool_quota = -1", "invalid mxgate_spool_quota parameter value -1 < 0" },
	{ "relayhost = mx.example.com", "parameter relayhost: \"mx.example.com\" is not a "
					"numeric IP address: mxgate does no DNS lookups" },
	{ "relayhost = [mx.example.com]:25", "\"mx.example.com\" is not a numeric IP address" },
	{ "relayhost = ::1:25", "an IPv6 address is written in brackets: [IPV6]:PORT" },
	{ "relayhost = [::1]25", "expected [ADDRESS]:PORT, ADDRESS:PORT or [IPV6]:PORT" },
	{ "relayhost = [::1", "expected [ADDRESS]:PORT, ADDRESS:PORT or [IPV6]:PORT" },
	{ "relayhost = 127.0.0.1:0", "parameter relayhost: bad port \"0\"" },
	{ "relayhost = [127.0.0.1]:65536", "parameter relayhost: bad port \"65536\"" },
	{ "relayhost = 127.0.0.1:smtp", "parameter relayhost: bad port \"smtp\"" },
	{ "relayhost = 127.0.0.1:", "parameter relayhost: bad port \"\"" },
	{ "mxgate_relay_protocol = esmtp", "parameter mxgate_relay_protocol: bad value \"esmtp\" "
					   "(expected one of: smtp lmtp)" },
	{ "default_destination_concurrency_limit = 0", "invalid "
	  "default_destination_concurrency_limit parameter value 0 < 1" },
	{ "default_destination_concurrency_limit = 257", "invalid "
	  "default_destination_concurrency_limit parameter value 257 > 256" },
	{ "smtp_connect_timeout = 0", "invalid smtp_connect_timeout: 0 (min 1)" },
	{ "smtp_connect_timeout = 2h", "invalid smtp_connect_timeout: 7200 (max 3600)" },
	{ "smtp_helo_timeout = 5x", "bad time value or unit" },
	{ "smtp_mail_timeout = 0s", "invalid smtp_mail_timeout: 0 (min 1)" },
	{ "smtp_rcpt_timeout = 3601", "invalid smtp_rcpt_timeout: 3601 (max 3600)" },
	{ "smtp_data_init_timeout = -1", "bad time value or unit" },
	{ "smtp_data_xfer_timeout = 0", "invalid smtp_data_xfer_timeout: 0 (min 1)" },
	{ "smtp_data_done_timeout = 1d", "invalid smtp_data_done_timeout: 86400 (max 3600)" },
	{ "smtp_quit_timeout = 0", "invalid smtp_quit_timeout: 0 (min 1)" },
	{ "smtp_connection_cache_time_limit = 301", "invalid smtp_connection_cache_time_limit: "
						    "301 (max 300)" },
	{ "minimal_backoff_time = 0", "invalid minimal_backoff_time: 0 (min 1)" },
	{ "maximal_backoff_time = 2w", "invalid maximal_backoff_time: 1209600 (max 604800)" },
	{ "maximal_queue_lifetime = 101d", "invalid maximal_queue_lifetime: 8726400 (max 8640000)" },
	{ "bounce_queue_lifetime = 1y", "bad time value or unit" },
	{ "bounce_size_limit = 0", "invalid bounce_size_limit parameter value 0 < 1" },
	{ "recipient_delimiter = +++++++++++++++++++++++++++++++++", "recipient_delimiter" },
	{ "mxgate_table_directory = tables", "parameter mxgate_table_directory: not an absolute "
					     "path: \"tables\"" },
	{ "mxgate_control_socket = control", "parameter mxgate_control_socket: not an absolute "
					     "path: \"control\"" },
	{ "mxgate_spool_segment_size = 1000", "invalid mxgate_spool_segment_size parameter value "
					      "1000 < 1048576" },
	{ "mxgate_spool_directory = /a, /b, /a", "parameter mxgate_spool_directory: /a is listed "
						 "twice" },
	{ "smtpd_delay_reject = 0", "bad boolean configuration: smtpd_delay_reject = 0" },
	{ "soft_bounce = maybe", "bad boolean configuration: soft_bounce = maybe" },
	{ "smtpd_reject_unlisted_recipient = y", "bad boolean configuration" },
	{ "smtpd_reject_unlisted_sender = n", "bad boolean configuration" },
	{ "reject_code = 250", "invalid reject_code parameter value 250 < 400" },
	{ "defer_code = 600", "invalid defer_code parameter value 600 > 599" },
	{ "access_map_reject_code = x", "bad numerical configuration: access_map_reject_code" },
	{ "access_map_defer_code = 399", "invalid access_map_defer_code parameter value 399 < 400" },
	{ "invalid_hostname_reject_code = 1", "invalid invalid_hostname_reject_code" },
	{ "non_fqdn_reject_code = 5040", "invalid non_fqdn_reject_code parameter value 5040 > 599" },
	{ "relay_domains_reject_code = -554", "invalid relay_domains_reject_code" },
	{ "maps_rbl_reject_code = 55x", "bad numerical configuration: maps_rbl_reject_code" },
	{ "unknown_relay_recipient_reject_code = 0", "invalid unknown_relay_recipient_reject_code" },
	{ "unknown_local_recipient_reject_code = 700", "invalid "
	  "unknown_local_recipient_reject_code parameter value 700 > 599" },
	{ "multi_recipient_bounce_reject_code = 2", "invalid multi_recipient_bounce_reject_code" },
	{ "smtpd_null_access_lookup_key = ", "smtpd_null_access_lookup_key" },
	{ "smtpd_authorized_xclient_hosts = 10.0.0.1/8", "parameter smtpd_authorized_xclient_hosts" },
	{ "body_checks_size_limit = -1", "invalid body_checks_size_limit parameter value -1 < 0" },
	{ "queue_run_delay = 0", "invalid queue_run_delay: 0 (min 1)" },
	{ "mxgate_master_file = master.cf", "parameter mxgate_master_file: not an absolute path: "
					    "\"master.cf\"" },
	{ "mxgate_checks_cache_directory = cache", "parameter mxgate_checks_cache_directory: not "
						   "an absolute path: \"cache\"" },
	{ "unknown_client_reject_code = 250", "invalid unknown_client_reject_code parameter "
					      "value 250 < 400" },
	{ "unknown_hostname_reject_code = x", "bad numerical configuration: "
					      "unknown_hostname_reject_code" },
	{ "unknown_address_reject_code = 600", "invalid unknown_address_reject_code parameter "
					       "value 600 > 599" },
	{ "reject_tempfail_action = reject", "parameter reject_tempfail_action: bad value "
					     "\"reject\" (expected one of: defer_if_permit "
					     "defer)" },
	{ "unknown_helo_hostname_tempfail_action = defer_if_reject",
	  "parameter unknown_helo_hostname_tempfail_action: bad value \"defer_if_reject\"" },
	{ "unknown_address_tempfail_action = ", "parameter unknown_address_tempfail_action: "
					       "bad value \"\"" },
	{ "smtpd_policy_service_timeout = 0", "invalid smtpd_policy_service_timeout: 0 (min 1)" },
	{ "smtpd_policy_service_max_idle = 5x", "bad time value or unit" },
	{ "smtpd_policy_service_max_ttl = 0s", "invalid smtpd_policy_service_max_ttl: 0 (min 1)" },
	{ "smtpd_policy_service_retry_delay = -1", "bad time value or unit" },
	{ "smtpd_policy_service_try_limit = 0", "invalid smtpd_policy_service_try_limit "
						"parameter value 0 < 1" },
	{ "smtpd_policy_service_request_limit = -1", "invalid "
	  "smtpd_policy_service_request_limit parameter value -1 < 0" },
	{ "smtpd_policy_service_default_action = ", "bad string length 0 < 1: "
						    "smtpd_policy_service_default_action" },
	{ "smtpd_policy_service_policy_context = a\x01" "b", "control character 0x01" },
	{ "mxgate_greylist_map = a\x01" "b", "control character 0x01" },
	{ "mxgate_greylist_delay = 0", "invalid mxgate_greylist_delay: 0 (min 1)" },
	{ "mxgate_greylist_max_age = 35x", "bad time value or unit" },
	{ "mxgate_greylist_retry_window = 0d", "invalid mxgate_greylist_retry_window: 0 (min 1)" },
	{ "mxgate_greylist_auto_allowlist_clients = -1", "invalid "
	  "mxgate_greylist_auto_allowlist_clients parameter value -1 < 0" },
	{ "mxgate_greylist_auto_allowlist_interval = 1y", "bad time value or unit" },
	{ "mxgate_greylist_ipv4_prefix_length = 33", "invalid "
	  "mxgate_greylist_ipv4_prefix_length parameter value 33 > 32" },
	{ "mxgate_greylist_ipv6_prefix_length = 129", "invalid "
	  "mxgate_greylist_ipv6_prefix_length parameter value 129 > 128" },
	{ "mxgate_greylist_action = ", "bad string length 0 < 1: mxgate_greylist_action" },
	{ "mxgate_greylist_text = ", "bad string length 0 < 1: mxgate_greylist_text" },
	{ "mxgate_greylist_header = a\x01" "b", "control character 0x01" },
	{ "mxgate_greylist_default_action = ", "bad string length 0 < 1: "
					       "mxgate_greylist_default_action" },
	{ "postscreen_denylist_action = reject", "postscreen_denylist_action" },
	{ "postscreen_greet_banner = a\x01" "b", "control character 0x01" },
	{ "postscreen_greet_wait = 0", "invalid postscreen_greet_wait: 0 (min 1)" },
	{ "postscreen_greet_action = hold", "postscreen_greet_action" },
	{ "postscreen_greet_ttl = x", "postscreen_greet_ttl" },
	{ "postscreen_dnsbl_threshold = 0", "invalid postscreen_dnsbl_threshold parameter "
					    "value 0 < 1" },
	{ "postscreen_dnsbl_allowlist_threshold = x", "bad numerical configuration: "
						      "postscreen_dnsbl_allowlist_threshold" },
	{ "postscreen_dnsbl_action = bounce", "postscreen_dnsbl_action" },
	{ "postscreen_dnsbl_min_ttl = 0", "postscreen_dnsbl_min_ttl" },
	{ "postscreen_dnsbl_max_ttl = 1y", "postscreen_dnsbl_max_ttl" },
	{ "postscreen_dnsbl_timeout = -1", "postscreen_dnsbl_timeout" },
	{ "postscreen_pipelining_enable = maybe", "postscreen_pipelining_enable" },
	{ "postscreen_pipelining_action = x", "postscreen_pipelining_action" },
	{ "postscreen_pipelining_ttl = 0", "postscreen_pipelining_ttl" },
	{ "postscreen_non_smtp_command_enable = 2", "postscreen_non_smtp_command_enable" },
	{ "postscreen_non_smtp_command_action = x", "postscreen_non_smtp_command_action" },
	{ "postscreen_non_smtp_command_ttl = 0", "postscreen_non_smtp_command_ttl" },
	{ "postscreen_bare_newline_enable = x", "postscreen_bare_newline_enable" },
	{ "postscreen_bare_newline_action = x", "postscreen_bare_newline_action" },
	{ "postscreen_bare_newline_ttl = 0", "postscreen_bare_newline_ttl" },
	{ "postscreen_command_count_limit = 0", "invalid postscreen_command_count_limit "
						"parameter value 0 < 1" },
	{ "postscreen_command_time_limit = 0", "postscreen_command_time_limit" },
	{ "postscreen_client_connection_count_limit = -1", "invalid "
	  "postscreen_client_connection_count_limit parameter value -1 < 0" },
	{ "postscreen_upstream_proxy_protocol = nginx", "postscreen_upstream_proxy_protocol" },
	{ "postscreen_upstream_proxy_timeout = 0", "postscreen_upstream_proxy_timeout" },
	{ "postscreen_helo_required = x", "postscreen_helo_required" },
	{ "postscreen_disable_vrfy_command = x", "postscreen_disable_vrfy_command" },
	{ "postscreen_cache_retention_time = x", "postscreen_cache_retention_time" },
	{ "postscreen_cache_cleanup_interval = x", "postscreen_cache_cleanup_interval" },
	{ "smtpd_tls_protocols = >=TLSv1.4", "parameter smtpd_tls_protocols: unknown TLS "
					     "protocol \">=TLSv1.4\"" },
	{ "smtpd_tls_mandatory_protocols = !TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3",
	  "leaves no TLS protocol enabled" },
	{ "smtpd_tls_exclude_ciphers = RC4;MD5", "bad cipher exclusion" },
	{ "smtpd_tls_mandatory_exclude_ciphers = a|b", "bad cipher exclusion" },
	{ "smtpd_tls_security_level = verify", "parameter smtpd_tls_security_level: bad value "
					       "\"verify\" (expected one of:  none may encrypt)" },
	{ "smtpd_use_tls = perhaps", "smtpd_use_tls" },
	{ "smtpd_enforce_tls = 2", "smtpd_enforce_tls" },
	{ "smtpd_tls_wrappermode = on", "smtpd_tls_wrappermode" },
	{ "smtpd_tls_cert_file = cert.pem", "parameter smtpd_tls_cert_file: not an absolute "
					    "path" },
	{ "smtpd_tls_key_file = key.pem", "parameter smtpd_tls_key_file: not an absolute path" },
	{ "smtpd_tls_eccert_file = ec.pem", "parameter smtpd_tls_eccert_file: not an absolute "
					    "path" },
	{ "smtpd_tls_eckey_file = eckey.pem", "parameter smtpd_tls_eckey_file: not an absolute "
					      "path" },
	{ "smtpd_tls_ciphers = strong", "parameter smtpd_tls_ciphers: bad value \"strong\"" },
	{ "smtpd_tls_mandatory_ciphers = ", "parameter smtpd_tls_mandatory_ciphers: bad value" },
	{ "tls_preempt_cipherlist = maybe", "tls_preempt_cipherlist" },
	{ "smtpd_tls_received_header = 1", "smtpd_tls_received_header" },
	{ "smtpd_tls_loglevel = 5", "invalid smtpd_tls_loglevel parameter value 5 > 4" },
	{ "smtpd_starttls_timeout = 0", "invalid smtpd_starttls_timeout: 0 (min 1)" },
	{ "smtpd_tls_session_cache_timeout = 101d", "smtpd_tls_session_cache_timeout" },
	{ "plaintext_reject_code = 250", "invalid plaintext_reject_code parameter value 250 < "
					 "400" },
	{ "smtpd_tls_ask_ccert = sometimes", "smtpd_tls_ask_ccert" },
	{ "smtpd_tls_req_ccert = always", "smtpd_tls_req_ccert" },
	{ "smtpd_tls_CAfile = ca.pem", "parameter smtpd_tls_CAfile: not an absolute path" },
	{ "smtpd_tls_ccert_verifydepth = 0", "invalid smtpd_tls_ccert_verifydepth parameter "
					     "value 0 < 1" },
	{ "smtpd_tls_fingerprint_digest = crc32", "parameter smtpd_tls_fingerprint_digest: bad "
						  "value \"crc32\"" },
	{ "mxgate_anvil_rate_map = btree:/var/lib/mxgate/anvil", "parameter "
	  "mxgate_anvil_rate_map: bad value \"btree:/var/lib/mxgate/anvil\": expected "
	  "memcache:/path/to/file.cf" },
	{ "mxgate_anvil_rate_map = memcache:anvil.cf", "parameter mxgate_anvil_rate_map: bad "
	  "value \"memcache:anvil.cf\"" },
	{ "mxgate_anvil_rate_map = memcache:/a.cf, memcache:/b.cf", "parameter "
	  "mxgate_anvil_rate_map: bad value" },
	{ "mxgate_metrics_listen = localhost:9465", "parameter mxgate_metrics_listen: bad "
						   "address \"localhost\"" },
	{ "mxgate_metrics_listen = 127.0.0.1:9465, 127.0.0.2:9465",
	  "parameter mxgate_metrics_listen: one address only (got 2)" },
	{ "mxgate_metrics_listen = 127.0.0.1:0", "parameter mxgate_metrics_listen: bad port" },
	{ "mail_owner = ", "bad string length 0 < 1: mail_owner = " },
	{ "mail_owner = mx gate", "parameter mail_owner: \"mx gate\" is not a user name" },
	{ "mail_owner = mx:gate", "parameter mail_owner: \"mx:gate\" is not a user name" },
	{ "mail_owner = -mxgate", "parameter mail_owner: user name \"-mxgate\" starts with '-'" },
	{ "mail_owner = 1001", "parameter mail_owner: \"1001\" is a number" },
	{ "mail_owner = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bad string length 33 > 32: mail_owner" },
	{ "mxgate_chroot = var/spool", "parameter mxgate_chroot: not an absolute path" },
};

/* mxgate_metrics_listen: off by default, one address (IPv4 or [IPv6]) when set. */
static void test_metrics_listen(void)
{
	struct load l = load_clean("myhostname = mx.example.com\n");
	CHECK(l.cfg && !l.cfg->metrics_listen_set);
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nmxgate_metrics_listen = 127.0.0.1:9465\n");
	CHECK(l.cfg && l.cfg->metrics_listen_set);
	if (l.cfg) {
		CHECK_STR_EQ(l.cfg->metrics_listen.host, "127.0.0.1");
		CHECK_INT_EQ(l.cfg->metrics_listen.port, 9465);
	}
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nmxgate_metrics_listen = [::1]:19465\n");
	CHECK(l.cfg && l.cfg->metrics_listen_set);
	if (l.cfg) {
		CHECK_STR_EQ(l.cfg->metrics_listen.host, "::1");
		CHECK_INT_EQ(l.cfg->metrics_listen.port, 19465);
	}
	load_free(&l);
}

/* mail_owner (no longer refused) and mxgate_chroot: defaults, and values taken as given
 * (whether the user exists is judged at start, dataplane/privdrop.c). */
static void test_privdrop_params(void)
{
	struct load l = load_clean("myhostname = mx.example.com\n");
	CHECK_STR_EQ(get(&l, "mail_owner"), "mxgate");
	CHECK_STR_EQ(get(&l, "mxgate_chroot"), "");
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nmail_owner = postfix\n"
		       "mxgate_chroot = /var/spool\n");
	CHECK_STR_EQ(get(&l, "mail_owner"), "postfix");
	CHECK_STR_EQ(get(&l, "mxgate_chroot"), "/var/spool");
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nmail_owner = _mx-gate.2\n");
	CHECK_STR_EQ(get(&l, "mail_owner"), "_mx-gate.2");
	load_free(&l);
}

static void test_bad_values(void)
{
	bool covered[MX_P_MAX] = { false };
	for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
		const struct bad_value *b = &bad_values[i];
		char text[2048], want[1024];
		/* Line 1 is a valid myhostname, unless the case sets it. */
		snprintf(text, sizeof(text), "%s\n%s\n# end\n",
			 strncmp(b->line, "myhostname", 10) == 0 ? "# myhostname below"
							  : "myhostname = mx.example.com",
			 b->line);
		struct load l = load(text);
		if (l.rc != -EINVAL)
			fprintf(stderr, "  \"%s\" loaded\n", b->line);
		CHECK_INT_EQ(l.rc, -EINVAL);
		/* One message, on line 2, saying what is wrong. */
		snprintf(want, sizeof(want), "t.cf:2: ");
		if (strncmp(l.diag, want, strlen(want)) != 0 || !strstr(l.diag, b->want) ||
		    strchr(l.diag, '\n') != l.diag + strlen(l.diag) - 1) {
			fprintf(stderr, "  \"%s\": want one line \"t.cf:2: ...%s...\", got:\n%s",
				b->line, b->want, l.diag);
			CHECK(false);
		}
		load_free(&l);
		size_t nlen = strcspn(b->line, " =");
		const struct mx_param_def *d = mx_param_find(b->line, nlen);
		CHECK(d != NULL);
		if (d)
			covered[d->id] = true;
	}
	/* Every parameter that can be wrong has a case above. */
	for (size_t i = 0; i < MX_P_MAX; i++) {
		bool can_fail = mx_params[i].type != MX_PT_WORDS;
		if (can_fail && !covered[i]) {
			fprintf(stderr, "  no bad-value case for %s\n", mx_params[i].name);
			CHECK(covered[i]);
		}
	}

	/* A value that refers to a bad one is not blamed twice: mynetworks is wrong, and
	 * smtpd_forbid_bare_newline_exclusions (default $mynetworks) stays quiet. */
	struct load l = load("myhostname = mx.example.com\nmynetworks = 10.0.0.1/8\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "smtpd_forbid_bare_newline_exclusions") == NULL);
	CHECK(strstr(l.diag, "t.cf:2: parameter mynetworks") != NULL);
	load_free(&l);
	/* Set explicitly to the same bad value, it is reported at its own line. */
	l = load("myhostname = mx.example.com\nmynetworks = 10.0.0.1/8\n"
		 "smtpd_forbid_bare_newline_exclusions = $mynetworks\n");
	CHECK(strstr(l.diag, "t.cf:3: parameter smtpd_forbid_bare_newline_exclusions") != NULL);
	load_free(&l);
	/* A bad myhostname: mydomain, myorigin, mydestination and the banner, which
	 * derive from it, are not reported. */
	l = load("myhostname = bad..name\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK_STR_EQ(l.diag, "t.cf:1: parameter myhostname: bad parameter value: bad..name: "
			     "empty label\n");
	load_free(&l);
	/* Many errors: all of them, in line order. */
	l = load("smtpd_timeout = 0\nmyhostname = mx.example.com\nhopcount_limit = 0\n"
		 "mxgate_workers = x\n");
	CHECK_STR_EQ(l.diag, "t.cf:1: invalid smtpd_timeout: 0 (min 1)\n"
			     "t.cf:3: invalid hopcount_limit parameter value 0 < 1\n"
			     "t.cf:4: bad numerical configuration: mxgate_workers = x\n");
	load_free(&l);
}

static void test_good_values(void)
{
	struct load l = load_clean(
		"myhostname = MX1.Example.COM\n"
		"mail_name = Gate\n"
		"smtpd_banner = $myhostname ESMTP ready\n"
		"mynetworks = 192.0.2.0/24, [2001:db8::]/32 !192.0.2.7\n"
		"mydestination = example.com .example.com\n"
		"relay_domains = relay.example\n"
		"message_size_limit = 0\n"
		"header_size_limit = 2147483647\n"
		"line_length_limit = 512\n"
		"hopcount_limit = 1\n"
		"smtpd_recipient_limit = 100\n"
		"smtpd_soft_error_limit = 3\n"
		"smtpd_hard_error_limit = 5\n"
		"smtpd_junk_command_limit = 7\n"
		"smtpd_error_sleep_time = 0\n"
		"smtpd_timeout = 2m\n"
		"smtpd_forbid_bare_newline = Reject\n"
		"smtpd_forbid_bare_newline_exclusions = 192.0.2.1\n"
		"smtpd_forbid_unauth_pipelining = NO\n"
		"smtpd_helo_required = Yes\n"
		"disable_vrfy_command = yes\n"
		"soft_bounce = yes\n"
		"strict_rfc821_envelopes = yes\n"
		"smtpd_discard_ehlo_keywords = CHUNKING, 8bitmime silent-discard\n"
		"maillog_file = /var/log/mxgate.log\n"
		"syslog_facility = LOCAL3\n"
		"syslog_name = postfix-mx/in\n"
		"mxgate_syslog_socket = /run/systemd/journal/dev-log\n"
		"mxgate_transport = DPDK\n"
		"mxgate_listen = 192.0.2.1:25, [2001:db8::1]:2525\t[::]:587\n"
		"mxgate_workers = 8\n"
		"mxgate_spool_directory = /srv/spool\n"
		"mxgate_max_connections = 1\n");
	struct mx_config *c = l.cfg;
	if (!c)
		return;
	CHECK_STR_EQ(c->myhostname, "MX1.Example.COM");
	CHECK_STR_EQ(c->mydomain, "Example.COM");
	CHECK_STR_EQ(c->smtpd_banner, "MX1.Example.COM ESMTP ready");
	struct mx_inet_addr a;
	mx_inet_parse("192.0.2.9", &a);
	CHECK(netlist_match(c->mynetworks, &a));
	mx_inet_parse("192.0.2.7", &a);
	CHECK(netlist_match(c->mynetworks, &a));
	mx_inet_parse("192.0.2.1", &a);
	CHECK(netlist_match(c->bare_newline_exclusions, &a));
	mx_inet_parse("192.0.2.2", &a);
	CHECK(!netlist_match(c->bare_newline_exclusions, &a));
	CHECK(domain_list_match(c->mydestination, MX_SPAN_LIT("a.example.com")));
	CHECK(domain_list_match(c->relay_domains, MX_SPAN_LIT("sub.relay.example")));
	CHECK_INT_EQ(c->smtp.message_size_limit, 0);
	CHECK_INT_EQ(c->smtp.header_size_limit, 2147483647);
	CHECK_INT_EQ(c->smtp.line_length_limit, 512);
	CHECK_INT_EQ(c->smtp.hopcount_limit, 1);
	CHECK_INT_EQ(c->smtp.recipient_limit, 100);
	CHECK_INT_EQ(c->smtp.soft_error_limit, 3);
	CHECK_INT_EQ(c->smtp.hard_error_limit, 5);
	CHECK_INT_EQ(c->smtp.junk_command_limit, 7);
	CHECK_INT_EQ(c->smtp.error_sleep_ms, 0);
	CHECK_INT_EQ(c->smtpd_timeout_s, 120);
	CHECK_INT_EQ(c->smtp.bare_newline, SMTP_BARE_NEWLINE_REJECT);
	CHECK(!c->smtp.forbid_unauth_pipelining);
	CHECK(c->smtp.helo_required);
	CHECK(c->smtp.disable_vrfy_command);
	CHECK(c->smtp.soft_bounce); /* the registry row binds it (it once did not) */
	CHECK(c->smtp.strict_rfc821_envelopes);
	CHECK(c->smtp.enable_pipelining);
	CHECK(!c->smtp.enable_chunking);
	CHECK(c->smtp.enable_smtputf8);
	CHECK(!c->smtp.enable_8bitmime);
	CHECK_STR_EQ(c->maillog_file, "/var/log/mxgate.log");
	CHECK_STR_EQ(c->syslog_facility, "LOCAL3");
	CHECK_STR_EQ(c->syslog_name, "postfix-mx/in");
	CHECK_STR_EQ(c->mxgate_syslog_socket, "/run/systemd/journal/dev-log");
	CHECK_INT_EQ(c->transport, MX_TRANSPORT_DPDK);
	CHECK_INT_EQ(c->listen_count, 3);
	CHECK_STR_EQ(c->listen[0].host, "192.0.2.1");
	CHECK_INT_EQ(c->listen[0].port, 25);
	CHECK_STR_EQ(c->listen[1].host, "2001:db8::1");
	CHECK_INT_EQ(c->listen[1].port, 2525);
	CHECK_STR_EQ(c->listen[2].host, "::");
	CHECK_INT_EQ(c->listen[2].port, 587);
	CHECK_INT_EQ(c->workers, 8);
	CHECK_STR_EQ(c->spool_directory, "/srv/spool");
	CHECK_INT_EQ(c->max_connections, 1);
	load_free(&l);

	/* Time units (Postfix's conv_time()). */
	const struct {
		const char *v;
		unsigned s;
	} times[] = { { "45", 45 }, { "45s", 45 }, { "3m", 180 }, { "2h", 7200 },
		      { "1d", 86400 }, { "1w", 604800 }, { "0007s", 7 } };
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		char text[200];
		snprintf(text, sizeof(text), "myhostname = mx.example.com\nsmtpd_timeout = %s\n",
			 times[i].v);
		l = load_clean(text);
		CHECK_INT_EQ(l.cfg ? l.cfg->smtpd_timeout_s : 0, times[i].s);
		load_free(&l);
	}

	/* The other EHLO keywords are accepted with a warning, as they change nothing. */
	l = load("myhostname = mx.example.com\nsmtpd_discard_ehlo_keywords = pipelining, etrn\n"
		 "smtputf8_enable = no\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK(diag_has(&l, "t.cf:2: warning: smtpd_discard_ehlo_keywords: \"etrn\" has no "
			   "effect in mxgate"));
	CHECK(l.cfg && !l.cfg->smtp.enable_pipelining && !l.cfg->smtp.enable_smtputf8 &&
	      l.cfg->smtp.enable_chunking && l.cfg->smtp.enable_dsn);
	load_free(&l);
	/* DSN is offered as Postfix offers it, and discarded as Postfix discards it. */
	l = load_clean("myhostname = mx.example.com\nsmtpd_discard_ehlo_keywords = DSN\n");
	CHECK(l.cfg && !l.cfg->smtp.enable_dsn && l.cfg->smtp.enable_pipelining);
	load_free(&l);

	/* A banner that does not start with the host name is allowed, with a warning. */
	expect_warning("myhostname = mx.example.com\nsmtpd_banner = ESMTP ready\n",
		       "t.cf:2: warning: parameter smtpd_banner does not start with $myhostname");
	/* mxgate_anvil_rate_map: empty by default (rates per gateway), or one memcache: file */
	l = load_clean("myhostname = mx.example.com\n");
	CHECK(l.cfg && l.cfg->anvil_rate_map && !l.cfg->anvil_rate_map[0]);
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\n"
		       "mxgate_anvil_rate_map = memcache:/etc/mxgate/anvil-memcache.cf\n");
	CHECK(l.cfg && l.cfg->anvil_rate_map);
	if (l.cfg)
		CHECK_STR_EQ(l.cfg->anvil_rate_map, "memcache:/etc/mxgate/anvil-memcache.cf");
	load_free(&l);
	/* Banners are sent before SMTPUTF8 can be negotiated: ASCII only. */
	expect_error("myhostname = mx.example.com\nsmtpd_banner = $myhostname \xe2\x9c\x89\n",
		     "t.cf:2: parameter smtpd_banner: character 0xe2 is not printable ASCII");
}

static void test_parent_domain_matches(void)
{
	/* relay_domains matches subdomains while it is listed (the default) ... */
	struct load l = load_clean("myhostname = mx.example.com\nrelay_domains = example.net\n");
	CHECK(l.cfg && domain_list_match(l.cfg->relay_domains, MX_SPAN_LIT("a.example.net")));
	/* ... and mydestination never does (Postfix's resolve_local()). */
	CHECK(l.cfg && !domain_list_match(l.cfg->mydestination, MX_SPAN_LIT("x.mx.example.com")));
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nrelay_domains = example.net\n"
		       "parent_domain_matches_subdomains = debug_peer_list smtpd_access_maps\n");
	CHECK(l.cfg && !domain_list_match(l.cfg->relay_domains, MX_SPAN_LIT("a.example.net")));
	CHECK(l.cfg && domain_list_match(l.cfg->relay_domains, MX_SPAN_LIT("example.net")));
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\nrelay_domains = example.net\n"
		       "mydestination = example.org\n"
		       "parent_domain_matches_subdomains = relay_domains,mydestination\n");
	CHECK(l.cfg && domain_list_match(l.cfg->relay_domains, MX_SPAN_LIT("a.example.net")));
	CHECK(l.cfg && !domain_list_match(l.cfg->mydestination, MX_SPAN_LIT("a.example.org")));
	load_free(&l);
}

static void test_compatibility_level(void)
{
	/* Below level 2, Postfix's old defaults: relay_domains = $mydestination; below 1,
	 * smtputf8_enable = no. mynetworks stays, with a warning. */
	struct load l = load("myhostname = mx.example.com\ncompatibility_level = 0\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(get(&l, "relay_domains"), "mx.example.com, localhost.example.com, localhost");
	CHECK_STR_EQ(get(&l, "smtputf8_enable"), "no");
	CHECK(l.cfg && !l.cfg->smtp.enable_smtputf8);
	CHECK(diag_has(&l, "t.cf:2: warning: compatibility_level = 0: mynetworks stays"));
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\ncompatibility_level = 1\n"
		       "mynetworks = 127.0.0.0/8\n");
	CHECK_STR_EQ(get(&l, "smtputf8_enable"), "yes");
	CHECK_STR_EQ(get(&l, "relay_domains"), "mx.example.com, localhost.example.com, localhost");
	load_free(&l);
	l = load_clean("myhostname = mx.example.com\ncompatibility_level = 3.7\n");
	CHECK_STR_EQ(get(&l, "relay_domains"), "");
	load_free(&l);
}

/* Re-wrap `text` with a line break before whitespace at position `pos` (a continuation
 * line), or return false when that would change the meaning (a comment line, the start of
 * a line, or a continuation whose first non-blank is '#', which Postfix skips). */
static bool rewrap(const char *text, size_t pos, char *out, size_t cap)
{
	size_t len = strlen(text);
	if (pos == 0 || pos >= len || (text[pos] != ' ' && text[pos] != '\t'))
		return false;
	size_t bol = pos;
	while (bol > 0 && text[bol - 1] != '\n')
		bol--;
	size_t first = bol + strspn(text + bol, " \t");
	if (first >= pos || text[first] == '#' || text[first] == '\n')
		return false;
	size_t next = pos + strspn(text + pos, " \t");
	if (text[next] == '#')
		return false;
	if (len + 2 > cap)
		return false;
	memcpy(out, text, pos);
	out[pos] = '\n';
	memcpy(out + pos + 1, text + pos, len - pos + 1);
	return true;
}

static bool same_config(const struct load *a, const struct load *b)
{
	if (a->rc != b->rc)
		return false;
	if (a->rc != 0)
		return true;
	for (size_t i = 0; i < MX_P_MAX; i++) {
		const char *x = mx_config_get(a->cfg, mx_params[i].name);
		const char *y = mx_config_get(b->cfg, mx_params[i].name);
		if (strcmp(x, y) != 0) {
			fprintf(stderr, "  %s: \"%s\" vs \"%s\"\n", mx_params[i].name, x, y);
			return false;
		}
	}
	return true;
}

static const char *const rewrap_configs[] = {
	"myhostname = mx.example.com\n"
	"mydestination = $myhostname, localhost.$mydomain, ${relay_domains?x.example} localhost\n"
	"mynetworks = 127.0.0.0/8 [::1]/128 , 192.0.2.0/24\n"
	"relay_domains = example.com example.net\n"
	"smtpd_banner = $myhostname  ESMTP   ${mail_name?{ $mail_name }:{ none }}\n"
	"mail_name = ${{$compatibility_level} <level {2} ? {old} : {new}}\n"
	"hopcount_limit\t=\t 25 \n"
	"mxgate_listen = 0.0.0.0:25 [::]:25\n",
	NULL, /* the example config, read at run time */
};

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(1 << 20);
	size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

static char *example_config(void)
{
	const char *root = getenv("MXGATE_SOURCE_ROOT");
	char path[4096];
	snprintf(path, sizeof(path), "%s/deploy/mxgate.cf.example", root ? root : ".");
	char *text = read_file(path);
	if (!text)
		fprintf(stderr, "  cannot read %s (set MXGATE_SOURCE_ROOT)\n", path);
	return text;
}

static void check_rewraps(const char *text)
{
	struct load base = load_clean(text);
	size_t len = strlen(text), tried = 0;
	char *buf = malloc(len * 2 + 64);
	for (size_t pos = 0; pos < len; pos++) {
		if (!rewrap(text, pos, buf, len * 2 + 64))
			continue;
		tried++;
		struct load l = load(buf);
		if (!same_config(&base, &l) || l.diag[0]) {
			fprintf(stderr, "  re-wrapped at %zu differs:\n%s\n%s", pos, buf, l.diag);
			CHECK(false);
			load_free(&l);
			break;
		}
		load_free(&l);
	}
	if (tried < 8)
		fprintf(stderr, "  only %zu re-wraps of:\n%s\n", tried, text);
	CHECK(tried >= 8);

	/* All at once: every eligible run of blanks starts a continuation line (one break
	 * per run: a line of blanks alone would be skipped, with its blanks). */
	char *all = malloc(len * 2 + 64);
	size_t o = 0;
	for (size_t pos = 0; pos < len; pos++) {
		if (text[pos - (pos > 0)] != ' ' && text[pos - (pos > 0)] != '\t' &&
		    rewrap(text, pos, buf, len * 2 + 64))
			all[o++] = '\n';
		all[o++] = text[pos];
	}
	all[o] = '\0';
	struct load l = load(all);
	CHECK(same_config(&base, &l));
	CHECK_STR_EQ(l.diag, "");
	load_free(&l);

	/* CRLF line ends, and comment lines between every two lines. */
	o = 0;
	char *crlf = malloc(len * 16 + 64);
	for (size_t pos = 0; pos < len; pos++) {
		if (text[pos] == '\n') {
			memcpy(crlf + o, "\r\n#c\r\n  # c\r\n", 13);
			o += 13;
		} else {
			crlf[o++] = text[pos];
		}
	}
	crlf[o] = '\0';
	l = load(crlf);
	CHECK(same_config(&base, &l));
	CHECK_STR_EQ(l.diag, "");
	load_free(&l);
	free(crlf);
	free(all);
	free(buf);
	load_free(&base);
}

static void test_rewrapped(void)
{
	for (size_t i = 0; i < sizeof(rewrap_configs) / sizeof(rewrap_configs[0]); i++) {
		if (rewrap_configs[i]) {
			check_rewraps(rewrap_configs[i]);
			continue;
		}
		char *text = example_config();
		CHECK(text != NULL);
		if (text)
			check_rewraps(text);
		free(text);
	}
}

static void test_example_config(void)
{
	/* The shipped example loads without a single message, and documents every
	 * parameter mxgate knows. */
	char *text = example_config();
	CHECK(text != NULL);
	if (!text)
		return;
	struct load l = load_clean(text);
	CHECK_STR_EQ(get(&l, "relay_domains"), "example.com, example.net");
	for (size_t i = 0; i < MX_P_MAX; i++) {
		char needle[128];
		snprintf(needle, sizeof(needle), "\n%s =", mx_params[i].name);
		char commented[128];
		snprintf(commented, sizeof(commented), "\n#%s =", mx_params[i].name);
		if (!strstr(text, needle) && !strstr(text, commented)) {
			fprintf(stderr, "  example lacks %s\n", mx_params[i].name);
			CHECK(false);
		}
		/* A commented-out line shows the default exactly, except where a default
		 * is computed. */
		const char *at = strstr(text, commented);
		if (at && mx_params[i].def) {
			at += strlen(commented);
			at += *at == ' ';
			size_t n = strcspn(at, "\n");
			if (strncmp(at, mx_params[i].def, n) != 0 &&
			    i != MX_P_PARENT_DOMAIN_MATCHES_SUBDOMAINS &&
			    i != MX_P_RELAY_DOMAINS && i != MX_P_SMTPUTF8_ENABLE) {
				fprintf(stderr, "  example shows %s = %.*s, default is %s\n",
					mx_params[i].name, (int)n, at, mx_params[i].def);
				CHECK(false);
			}
		}
	}
	load_free(&l);
	free(text);
}

static void test_files(void)
{
	char dir[] = "/tmp/mxgate-test-config-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	snprintf(path, sizeof(path), "%s/mxgate.cf", dir);

	FILE *diag = tmpfile();
	struct mx_config *cfg = (struct mx_config *)1;
	CHECK_INT_EQ(mx_config_load(path, &cfg, diag), -ENOENT);
	CHECK(cfg == NULL);
	CHECK_INT_EQ(mx_config_load(dir, &cfg, diag), -EISDIR);

	FILE *f = fopen(path, "w");
	fputs("myhostname = file.example.com\nmail_name = x\x01y\n", f);
	fclose(f);
	CHECK_INT_EQ(mx_config_load(path, &cfg, diag), -EINVAL);
	fflush(diag);
	rewind(diag);
	char out[1024] = "";
	size_t n = fread(out, 1, sizeof(out) - 1, diag);
	out[n] = '\0';
	char want[512];
	/* a missing file is the caller's one line (mx_config_report_failure), not the loader's */
	snprintf(want, sizeof(want), "open %s:", path);
	CHECK(strstr(out, want) == NULL);
	snprintf(want, sizeof(want), "%s:2: control character 0x01", path);
	CHECK(strstr(out, want) != NULL);
	fclose(diag);

	/* A NUL byte is a control character too, not the end of the file. */
	f = fopen(path, "w");
	fwrite("myhostname = file.example.com\nmail_name = a\0b\nhopcount_limit = x\n", 1, 66, f);
	fclose(f);
	diag = tmpfile();
	CHECK_INT_EQ(mx_config_load(path, &cfg, diag), -EINVAL);
	rewind(diag);
	n = fread(out, 1, sizeof(out) - 1, diag);
	out[n] = '\0';
	CHECK(strstr(out, ":2: control character 0x00") != NULL);
	CHECK(strstr(out, ":3: bad numerical configuration: hopcount_limit = x") != NULL);
	fclose(diag);

	f = fopen(path, "w");
	fputs("myhostname = file.example.com\nmxgate_workers = 3\n", f);
	fclose(f);
	CHECK_INT_EQ(mx_config_load(path, &cfg, NULL), 0);
	CHECK(cfg && cfg->workers == 3);
	CHECK(cfg && strcmp(cfg->source_path, path) == 0);
	mx_config_free(cfg);

	/* Larger than the bound: refused, not read. */
	f = fopen(path, "w");
	for (int i = 0; i < 5 * 1024; i++)
		fprintf(f, "# %01020d\n", i);
	fclose(f);
	CHECK_INT_EQ(mx_config_load(path, &cfg, NULL), -EFBIG);
	CHECK(cfg == NULL);
	unlink(path);
	rmdir(dir);
	mx_config_free(NULL);
}

/* myhostname and mydomain defaults from the system's host name, in a UTS namespace of
 * our own (needs CAP_SYS_ADMIN; skipped, saying why, when the kernel refuses one). */
static int hostname_child(void)
{
	const struct {
		const char *host, *conf, *myhostname, *mydomain;
	} cases[] = {
		{ "gw", "", "gw.localdomain", "localdomain" },
		{ "gw", "mydomain = example.net\n", "gw.example.net", "example.net" },
		{ "gw", "mydomain = $d\nd = example.org\n", "gw.example.org", "example.org" },
		{ "mx.example.org", "", "mx.example.org", "example.org" },
		{ "mx.example.org", "mydomain = other.example\n", "mx.example.org",
		  "other.example" },
		{ "gw", "myhostname = a.b.example\n", "a.b.example", "b.example" },
		{ "gw", "myhostname = single\n", "single", "localdomain" },
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (sethostname(cases[i].host, strlen(cases[i].host)) != 0)
			return 2;
		struct load l = load(cases[i].conf);
		const char *h = get(&l, "myhostname"), *d = get(&l, "mydomain");
		if (l.rc != 0 || strcmp(h, cases[i].myhostname) != 0 ||
		    strcmp(d, cases[i].mydomain) != 0) {
			fprintf(stderr, "  host %s, config \"%s\": myhostname %s mydomain %s\n%s",
				cases[i].host, cases[i].conf, h ? h : "-", d ? d : "-", l.diag);
			failures++;
		}
		load_free(&l);
	}
	return failures ? 1 : 0;
}

/* relayhost in each of Postfix's nexthop forms, and the relay parameters' values. */
static void test_relay_values(void)
{
	static const struct {
		const char *value, *addr;
		unsigned port;
	} forms[] = {
		{ "", "", 25 },
		{ "[192.0.2.25]", "192.0.2.25", 25 },
		{ "192.0.2.25", "192.0.2.25", 25 },
		{ "[192.0.2.25]:2525", "192.0.2.25", 2525 },
		{ "192.0.2.25:24", "192.0.2.25", 24 },
		{ "[2001:db8::25]:587", "2001:db8::25", 587 },
		{ "[ipv6:2001:db8::25]", "2001:db8::25", 25 },
		{ "[::1]", "::1", 25 },
	};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "myhostname = mx.example.com\nrelayhost = %s\n",
			 forms[i].value);
		struct load l = load_clean(text);
		if (!l.cfg)
			continue;
		CHECK_STR_EQ(l.cfg->relayhost_addr, forms[i].addr);
		CHECK_INT_EQ(l.cfg->relayhost_port, forms[i].port);
		load_free(&l);
	}
	struct load l = load_clean("myhostname = mx.example.com\n"
				   "mxgate_relay_protocol = LMTP\n"
				   "default_destination_concurrency_limit = 3\n"
				   "smtp_connect_timeout = 1m\n"
				   "smtp_data_done_timeout = 5s\n"
				   "smtp_connection_cache_time_limit = 10s\n"
				   "minimal_backoff_time = 1s\n"
				   "maximal_backoff_time = 1h\n"
				   "queue_run_delay = 2s\n");
	if (l.cfg) {
		CHECK(l.cfg->relay_lmtp);
		CHECK_INT_EQ(l.cfg->relay_concurrency, 3);
		CHECK_INT_EQ(l.cfg->smtp_connect_timeout_s, 60);
		CHECK_INT_EQ(l.cfg->smtp_helo_timeout_s, 300);
		CHECK_INT_EQ(l.cfg->smtp_data_init_timeout_s, 120);
		CHECK_INT_EQ(l.cfg->smtp_data_done_timeout_s, 5);
		CHECK_INT_EQ(l.cfg->smtp_connection_cache_time_s, 10);
		CHECK_INT_EQ(l.cfg->minimal_backoff_s, 1);
		CHECK_INT_EQ(l.cfg->maximal_backoff_s, 3600);
		CHECK_INT_EQ(l.cfg->queue_run_delay_s, 2);
		CHECK_STR_EQ(l.cfg->relayhost_addr, "");
	}
	load_free(&l);
}

static void test_hostname_defaults(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (unshare(CLONE_NEWUTS) != 0) {
			/* no package gives this: not root, or a sandbox that forbids namespaces */
			printf("skip test_hostname_defaults: unshare(CLONE_NEWUTS): %s (needs "
			       "CAP_SYS_ADMIN; not a missing package)\n",
			       strerror(errno));
			fflush(stdout);
			_exit(77);
		}
		_exit(hostname_child());
	}
	int status = 0;
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
		return;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ------------------------------------------------------------------------------------
 * Against Debian's Postfix. */

static char postconf_dir[64];

/* Write a file dated 10 s back: Postfix re-reads a main.cf changed within the current
 * second, sleeping until it is older (dict_load_file()). */
static void write_dated(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		CHECK(f != NULL);
		return;
	}
	fputs(text, f);
	fclose(f);
	struct timespec past[2];
	clock_gettime(CLOCK_REALTIME, &past[0]);
	past[0].tv_sec -= 10;
	past[1] = past[0];
	utimensat(AT_FDCWD, path, past, 0);
}

/* `postconf -c DIR -x NAME` for main.cf = text; the value with whitespace runs folded to
 * one space (postconf wraps long lines), or NULL when postconf fails. */
static char *postconf_x(const char *text, const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/main.cf", postconf_dir);
	write_dated(path, text);
	char cmd[512];
	snprintf(cmd, sizeof(cmd), POSTCONF " -c %s -x %s 2>/dev/null", postconf_dir, name);
	FILE *p = popen(cmd, "r");
	char out[8192];
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	int status = pclose(p);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return NULL;
	size_t prefix = strlen(name) + 3; /* "name = " */
	if (n < prefix - 1 || strncmp(out, name, strlen(name)) != 0)
		return NULL;
	char *v = strdup(n >= prefix ? out + prefix : "");
	return v;
}

static void fold_spaces(char *s)
{
	char *w = s;
	bool space = true;
	for (char *r = s; *r; r++) {
		if (*r == ' ' || *r == '\t' || *r == '\n') {
			if (!space)
				*w++ = ' ';
			space = true;
		} else {
			*w++ = *r;
			space = false;
		}
	}
	if (w > s && w[-1] == ' ')
		w--;
	*w = '\0';
}

static void compare_with_postconf(const char *text, const char *const *names)
{
	struct load l = load(text);
	CHECK_INT_EQ(l.rc, 0);
	for (size_t i = 0; names[i] && l.cfg; i++) {
		char *pf = postconf_x(text, names[i]);
		char *mine = strdup(get(&l, names[i]));
		if (!pf) {
			fprintf(stderr, "  postconf -x %s failed for:\n%s\n", names[i], text);
			CHECK(pf != NULL);
		} else {
			fold_spaces(pf);
			fold_spaces(mine);
			if (strcmp(pf, mine) != 0) {
				fprintf(stderr, "  config:\n%s  %s: postconf \"%s\", mxgate \"%s\"\n",
					text, names[i], pf, mine);
				CHECK(false);
			}
		}
		free(pf);
		free(mine);
	}
	load_free(&l);
}

static void test_postconf_defaults(void)
{
	/* Debian's main.cf sets compatibility_level = 3.6, which mxgate takes by default. */
	static const char *const same[] = {
		"compatibility_level", "myhostname", "mydomain", "myorigin", "mydestination",
		"relay_domains", "parent_domain_matches_subdomains", "message_size_limit",
		"header_size_limit", "line_length_limit", "hopcount_limit",
		"smtpd_recipient_limit", "smtpd_soft_error_limit", "smtpd_hard_error_limit",
		"smtpd_junk_command_limit", "smtpd_error_sleep_time", "smtpd_timeout",
		"smtpd_helo_required", "disable_vrfy_command", "strict_rfc821_envelopes",
		"smtputf8_enable", "smtpd_discard_ehlo_keywords", "maillog_file",
		"syslog_facility", NULL,
	};
	compare_with_postconf("compatibility_level = 3.6\n", same);
	/* Derived defaults. */
	static const char *const derived[] = { "myhostname", "mydomain", "myorigin",
					       "mydestination", "smtpd_banner", NULL };
	compare_with_postconf("compatibility_level = 3.6\nmydomain = example.net\n"
			      "mail_name = Postfix\n", derived);
	compare_with_postconf("compatibility_level = 3.6\nmyhostname = mx.a.example\n"
			      "mail_name = Postfix\n", derived);
	compare_with_postconf("compatibility_level = 3.6\nmyhostname = single\n"
			      "mail_name = Postfix\n", derived);
	/* Compatibility-level dependent defaults. */
	static const char *const compat[] = { "relay_domains", "smtputf8_enable", NULL };
	compare_with_postconf("compatibility_level = 0\nmyhostname = mx.example.com\n", compat);
	compare_with_postconf("compatibility_level = 1\nmyhostname = mx.example.com\n", compat);
	compare_with_postconf("compatibility_level = 3.7\nmyhostname = mx.example.com\n", compat);

	/* Where mxgate differs on purpose (config_params.c says why), it does. */
	struct load l = load("");
	char *pf;
	const struct {
		const char *name, *mxgate;
	} differ[] = {
		{ "mail_name", "mxgate" },
		{ "smtpd_forbid_bare_newline", "normalize" },
		{ "smtpd_forbid_unauth_pipelining", "yes" },
		{ "mynetworks", "127.0.0.0/8 [::1]/128" },
		{ "syslog_name", "mxgate" },
	};
	for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		pf = postconf_x("compatibility_level = 3.6\n", differ[i].name);
		CHECK(pf != NULL);
		CHECK(pf && strcmp(pf, differ[i].mxgate) != 0);
		CHECK_STR_EQ(get(&l, differ[i].name), differ[i].mxgate);
		free(pf);
	}
	load_free(&l);
}

static void test_postconf_expansion(void)
{
	static const char *const names[] = { "smtpd_banner", NULL };
	for (size_t i = 0; i < sizeof(expand_cases) / sizeof(expand_cases[0]); i++) {
		const struct expand_case *e = &expand_cases[i];
		char text[1024];
		expand_config(text, sizeof(text), e);
		if (e->want)
			compare_with_postconf(text, names);
	}
	/* Postfix refuses the bad ones too ("fatal: macro processing error"). It sleeps a
	 * second before a fatal exit, so these run side by side, each in its own
	 * directory. */
	size_t ncases = sizeof(expand_cases) / sizeof(expand_cases[0]);
	FILE **running = calloc(ncases, sizeof(*running));
	char (*dirs)[64] = calloc(ncases, sizeof(*dirs));
	for (size_t i = 0; i < ncases; i++) {
		if (expand_cases[i].want)
			continue;
		char text[1024], path[128];
		expand_config(text, sizeof(text), &expand_cases[i]);
		snprintf(dirs[i], sizeof(dirs[i]), "/tmp/mxgate-postconf-XXXXXX");
		if (!mkdtemp(dirs[i])) {
			CHECK(false);
			continue;
		}
		snprintf(path, sizeof(path), "%s/main.cf", dirs[i]);
		write_dated(path, text);
		snprintf(path, sizeof(path), "%s/master.cf", dirs[i]);
		write_dated(path, "");
		char cmd[256];
		snprintf(cmd, sizeof(cmd), POSTCONF " -c %s -x smtpd_banner >/dev/null 2>&1; echo $?",
			 dirs[i]);
		running[i] = popen(cmd, "r");
	}
	for (size_t i = 0; i < ncases; i++) {
		if (!running[i])
			continue;
		int code = -1;
		if (fscanf(running[i], "%d", &code) != 1)
			code = -1;
		pclose(running[i]);
		if (code <= 0)
			fprintf(stderr, "  postconf accepts x = %s (exit %d)\n", expand_cases[i].expr,
				code);
		CHECK(code > 0);
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dirs[i]);
		CHECK(system(cmd) == 0);
	}
	free(running);
	free(dirs);
	/* The nesting limit is Postfix's. */
	for (int n = 100; n <= 101; n++) {
		char *text = malloc(64 * 1024);
		size_t len = (size_t)sprintf(text, "myhostname = mx.example.com\n"
						   "mail_name = $v0\n");
		for (int k = 0; k < n; k++)
			len += (size_t)sprintf(text + len, "v%d = $v%d\n", k, k + 1);
		sprintf(text + len, "v%d = end\n", n);
		char *pf = postconf_x(text, "mail_name");
		struct load l = load(text);
		CHECK_INT_EQ(pf != NULL, l.rc == 0);
		free(pf);
		load_free(&l);
		free(text);
	}
}

static int postconf_main(void)
{
	if (access(POSTCONF, X_OK) != 0) {
		printf("FAIL: %s is missing: install Debian package 'postfix' "
		       "(deploy/install-deps.sh installs it)\n",
		       POSTCONF);
		return 1;
	}
	snprintf(postconf_dir, sizeof(postconf_dir), "/tmp/mxgate-postconf-XXXXXX");
	if (!mkdtemp(postconf_dir))
		return 1;
	char path[128];
	snprintf(path, sizeof(path), "%s/master.cf", postconf_dir);
	write_dated(path, "");
	RUN_TEST(test_postconf_defaults);
	RUN_TEST(test_postconf_expansion);
	unlink(path);
	snprintf(path, sizeof(path), "%s/main.cf", postconf_dir);
	unlink(path);
	rmdir(postconf_dir);
	return TEST_RESULT();
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--postconf") == 0)
		return postconf_main();
	RUN_TEST(test_defaults);
	RUN_TEST(test_syntax);
	RUN_TEST(test_unused_parameters);
	RUN_TEST(test_expansion);
	RUN_TEST(test_recursion);
	RUN_TEST(test_bad_values);
	RUN_TEST(test_metrics_listen);
	RUN_TEST(test_privdrop_params);
	RUN_TEST(test_good_values);
	RUN_TEST(test_parent_domain_matches);
	RUN_TEST(test_compatibility_level);
	RUN_TEST(test_rewrapped);
	RUN_TEST(test_example_config);
	RUN_TEST(test_files);
	RUN_TEST(test_hostname_defaults);
	RUN_TEST(test_relay_values);
	return TEST_RESULT();
}
