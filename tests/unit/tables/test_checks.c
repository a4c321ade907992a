/* tables/checks.c: header/body check sets on Hyperscan + PCRE2/regexec. Every lookup is also
 * made on the reference path (each rule in turn, as Postfix) and the two must agree. */
#include <errno.h>
#include <stdlib.h>

#include "tables/checks.h"
#include "testing.h"

static struct checks_scratch *scratch;

static struct checks *compile2(const char *a, bool pa, const char *b, bool pb)
{
	struct checks_source src[2] = { { "first", pa, a, strlen(a) },
					{ "second", pb, b ? b : "", b ? strlen(b) : 0 } };
	struct checks *c = NULL;
	char err[512] = "";
	int rc = checks_compile(src, b ? 2 : 1, &c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  compile failed: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	if (c)
		CHECK_INT_EQ(checks_scratch_alloc(c, &scratch), 0);
	return c;
}

static struct checks *compile1(const char *text, bool pcre)
{
	return compile2(text, pcre, NULL, false);
}

static void compile_fails(const char *text, bool pcre, const char *why)
{
	struct checks_source src = { "f", pcre, text, strlen(text) };
	struct checks *c = NULL;
	char err[512] = "";
	CHECK_INT_EQ(checks_compile(&src, 1, &c, err, sizeof(err)), -EINVAL);
	CHECK(c == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  \"%s\": reason \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(strstr(err, why) != NULL);
	}
}

static struct checks_result last;

/* The value for subject, "(none)", or "(error N)"; checks fast == slow. */
static const char *look(struct checks *c, const char *subj)
{
	static char out[CHECKS_RESULT_MAX + 1], ref[CHECKS_RESULT_MAX + 1];
	static char ret[CHECKS_RESULT_MAX + 32];
	struct checks_result r2;
	size_t n = strlen(subj);
	int rc = checks_match(c, scratch, subj, n, out, sizeof(out), &last);
	int rc2 = checks_match_slow(c, scratch, subj, n, ref, sizeof(ref), &r2);
	CHECK_INT_EQ(rc, rc2);
	if (rc == 1 && rc2 == 1) {
		CHECK_STR_EQ(out, ref);
		CHECK_INT_EQ(last.line, r2.line);
	}
	if (rc < 0) {
		snprintf(ret, sizeof(ret), "(error %d)", rc);
		return ret;
	}
	return rc == 1 ? out : "(none)";
}

static void test_basic_and_order(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct checks *c = compile1("# comment\n"
					    "/^Subject:.*viagra/ REJECT no spam\n"
					    "/^Subject:/ WARN subject seen\n"
					    "\n"
					    "/^From:.*@(example)\\.com/ REDIRECT $1@example.net\n",
					    pcre);
		CHECK_STR_EQ(look(c, "Subject: buy VIAGRA now"), "REJECT no spam");
		CHECK_INT_EQ(last.action, CHECKS_REJECT);
		CHECK_STR_EQ(last.text, "no spam");
		CHECK_INT_EQ(last.line, 2);
		CHECK_STR_EQ(look(c, "Subject: hello"), "WARN subject seen");
		CHECK_INT_EQ(last.line, 3);
		CHECK_STR_EQ(look(c, "From: a@Example.com"), "REDIRECT Example@example.net");
		CHECK_INT_EQ(last.action, CHECKS_REDIRECT);
		CHECK_STR_EQ(look(c, "To: x"), "(none)");
		struct checks_stats st;
		checks_stats(c, &st);
		CHECK_INT_EQ(st.rules, 3);
		CHECK_INT_EQ(st.no_hs, 0);
		checks_free(c);
	}
}

static void test_actions(void)
{
	static const struct {
		const char *v;
		enum checks_action a;
		const char *text;
	} cases[] = {
		{ "REJECT", CHECKS_REJECT, "" },          { "reject  go away", CHECKS_REJECT, "go away" },
		{ "DISCARD", CHECKS_DISCARD, "" },        { "DUNNO", CHECKS_DUNNO, "" },
		{ "OK", CHECKS_DUNNO, "" },               { "ok whatever", CHECKS_DUNNO, "whatever" },
		{ "HOLD held", CHECKS_HOLD, "held" },     { "IGNORE", CHECKS_IGNORE, "" },
		{ "STRIP why", CHECKS_STRIP, "why" },     { "REPLACE X-A: b", CHECKS_REPLACE, "X-A: b" },
		{ "PREPEND X-B: c", CHECKS_PREPEND, "X-B: c" }, { "WARN w", CHECKS_WARN, "w" },
		{ "INFO i", CHECKS_INFO, "i" },           { "REDIRECT a@b", CHECKS_REDIRECT, "a@b" },
		{ "FILTER smtp:[h]:25", CHECKS_FILTER, "smtp:[h]:25" },
		{ "BCC c@d", CHECKS_BCC, "c@d" },         { "PASS", CHECKS_PASS, "" },
		{ "FROB x", CHECKS_UNKNOWN, "x" },        { "REJECTX", CHECKS_UNKNOWN, "" },
		{ "4.7.1", CHECKS_UNKNOWN, "" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "/^k$/ %s\n", cases[i].v);
		struct checks *c = compile1(text, true);
		look(c, "k");
		CHECK_INT_EQ(last.action, cases[i].a);
		CHECK_STR_EQ(last.text, cases[i].text);
		CHECK_STR_EQ(checks_action_name(last.action), checks_action_name(cases[i].a));
		checks_free(c);
	}
	CHECK_STR_EQ(checks_action_name(CHECKS_ACTION_MAX), "?");
}

static void test_negation_and_if(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct checks *c = compile1("if /^Subject:/\n"
					    "!/money/ DUNNO no money\n"
					    "if !/free/\n"
					    "/cash/ REJECT cash\n"
					    "endif\n"
					    "/free/ HOLD free $$\n"
					    "ENDIF\n"
					    "/cash/ WARN cash elsewhere\n"
					    "!/^X-/ INFO not x\n",
					    pcre);
		CHECK_STR_EQ(look(c, "Subject: hello"), "DUNNO no money");
		CHECK_STR_EQ(look(c, "Subject: money cash"), "REJECT cash");
		CHECK_STR_EQ(look(c, "Subject: free money cash"), "HOLD free $");
		CHECK_STR_EQ(look(c, "Subject: money"), "INFO not x");
		CHECK_STR_EQ(look(c, "From: cash"), "WARN cash elsewhere");
		CHECK_STR_EQ(look(c, "X-Mailer: y"), "(none)");
		struct checks_stats st;
		checks_stats(c, &st);
		CHECK_INT_EQ(st.ifs, 2);
		CHECK_INT_EQ(st.rules, 5);
		checks_free(c);
	}
}

static void test_substitution(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct checks *c = compile1("/^(a)(b)?$/ INFO x=$1,$2,${1}$$ $(1)\n"
					    "/^(.)(.)(.)(.)(.)(.)(.)(.)(.)(.)$/ WARN $10$9$1\n",
					    pcre);
		CHECK_STR_EQ(look(c, "a"), "INFO x=a,,a$ a");
		CHECK_STR_EQ(look(c, "ab"), "INFO x=a,b,a$ a");
		CHECK_STR_EQ(look(c, "0123456789"), "WARN 980");
		checks_free(c);
	}
}

/* Constructs Hyperscan refuses: prefiltered and confirmed, or run on PCRE2/regexec alone. */
static void test_pcre_only_constructs(void)
{
	struct checks *c = compile1("/^Subject: (\\w+) \\1$/ REJECT repeated $1\n"
				    "/(?<!no )spam/ WARN spam\n"
				    "/^X-(?=Mailer)/ INFO mailer\n"
				    "/a(?:b|c)d/ INFO plain\n"
				    "/end$/E INFO endonly\n"
				    "/^anch/A INFO anchored\n"
				    "/ a b c /x INFO extended\n",
				    true);
	struct checks_stats st;
	checks_stats(c, &st);
	CHECK(st.hs_confirm + st.no_hs >= 3);
	CHECK(st.hs_exact >= 2);
	CHECK_STR_EQ(look(c, "Subject: buy buy"), "REJECT repeated buy");
	CHECK_STR_EQ(look(c, "Subject: buy sell"), "(none)");
	CHECK_STR_EQ(look(c, "this is spam"), "WARN spam");
	CHECK_STR_EQ(look(c, "this is no spam"), "(none)");
	CHECK_STR_EQ(look(c, "X-Mailer: m"), "INFO mailer");
	CHECK_STR_EQ(look(c, "xxabdxx"), "INFO plain");
	CHECK_STR_EQ(look(c, "the end"), "INFO endonly");
	CHECK_STR_EQ(look(c, "the end\n"), "(none)");
	CHECK_STR_EQ(look(c, "anchor"), "INFO anchored");
	CHECK_STR_EQ(look(c, "x anchor"), "(none)");
	CHECK_STR_EQ(look(c, "abc"), "INFO extended");
	checks_free(c);

	/* regexp: GNU escapes, BRE and collating elements run on regexec alone */
	c = compile1("/\\<word\\>/ INFO word\n"
		     "/^a\\{2\\}$/x INFO bre\n"
		     "/[[.-.]]x/ INFO coll\n"
		     "/[\\]z/ INFO bracket-backslash\n"
		     "/^([a-c]+)(b*)$/ INFO $1|$2\n",
		     false);
	checks_stats(c, &st);
	CHECK(st.no_hs >= 2);
	CHECK_STR_EQ(look(c, "a word here"), "INFO word");
	CHECK_STR_EQ(look(c, "swordfish"), "(none)");
	CHECK_STR_EQ(look(c, "aa"), "INFO bre");
	CHECK_STR_EQ(look(c, "-x"), "INFO coll");
	/* "[\]z": a bracket holding a backslash, then z (XBD 9.3.5: no escapes in brackets) */
	CHECK_STR_EQ(look(c, "\\z"), "INFO bracket-backslash");
	CHECK_STR_EQ(look(c, "]z"), "(none)");
	/* POSIX leftmost-longest: the first group takes all it can */
	CHECK_STR_EQ(look(c, "abb"), "INFO abb|");
	checks_free(c);
}

static void test_flags_and_newlines(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct checks *c = compile1("/^abc$/ INSENSITIVE\n"
					    "/^Def$/i SENSITIVE\n",
					    pcre);
		CHECK_STR_EQ(look(c, "ABC"), "INSENSITIVE");
		CHECK_STR_EQ(look(c, "Def"), "SENSITIVE");
		CHECK_STR_EQ(look(c, "DEF"), "(none)");
		checks_free(c);
	}
	/* a folded header holds a newline: regexp '.' crosses it (no REG_NEWLINE), pcre '.'
	 * does not unless s */
	struct checks *c = compile1("/^Subject: a.b$/ DOT\n/^x$/m MULTI\n", false);
	CHECK_STR_EQ(look(c, "Subject: a\nb"), "DOT");
	CHECK_STR_EQ(look(c, "y\nx\nz"), "MULTI");
	checks_free(c);
	/* pcre_table(5): s toggles DOTALL, which is on by default; flags toggle */
	c = compile1("/^Subject: c.d$/s NO-DOTALL\n/^Subject: a.b$/ DOT\n/^x$/m MULTI\n"
		     "/^y$/mm NOT-MULTI\n/^Q$/ii CASE\n",
		     true);
	CHECK_STR_EQ(look(c, "Subject: a\nb"), "DOT");
	CHECK_STR_EQ(look(c, "Subject: c\nd"), "(none)");
	CHECK_STR_EQ(look(c, "y\nx\nz"), "MULTI");
	CHECK_STR_EQ(look(c, "y\nz"), "(none)");
	CHECK_STR_EQ(look(c, "y"), "NOT-MULTI");
	CHECK_STR_EQ(look(c, "q"), "CASE"); /* toggled twice: caseless again */
	checks_free(c);
}

/* An empty pattern matches everything, in both syntaxes (found by the fuzzer: the regexp
 * translation once left it out of the database). */
static void test_empty_pattern(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct checks *c = compile1("/^x/ FIRST\n// EMPTY\n", pcre);
		CHECK_STR_EQ(look(c, ""), "EMPTY");
		CHECK_STR_EQ(look(c, "abc"), "EMPTY");
		CHECK_STR_EQ(look(c, "xyz"), "FIRST");
		checks_free(c);
		c = compile1("!// NEVER\n/^$/ EMPTY-LINE\n", pcre);
		CHECK_STR_EQ(look(c, ""), "EMPTY-LINE");
		CHECK_STR_EQ(look(c, "a"), "(none)");
		checks_free(c);
	}
}

static void test_two_files(void)
{
	/* first file first; if/endif is per file */
	struct checks *c = compile2("/^a/ REJECT first\nif /^b/\n/c/ INFO in-if\nendif\n", true,
				    "/^a/ REJECT second\n/^b/ INFO second-b\n/^(d)/ WARN $1\n", false);
	CHECK_STR_EQ(look(c, "abc"), "REJECT first");
	CHECK_INT_EQ(last.file, 0);
	CHECK_STR_EQ(look(c, "bc"), "INFO in-if");
	CHECK_STR_EQ(look(c, "bx"), "INFO second-b");
	CHECK_INT_EQ(last.file, 1);
	CHECK_INT_EQ(last.line, 2);
	CHECK_STR_EQ(look(c, "dx"), "WARN d");
	checks_free(c);
	/* empty set */
	struct checks *e = NULL;
	char err[64];
	CHECK_INT_EQ(checks_compile(NULL, 0, &e, err, sizeof(err)), 0);
	CHECK_INT_EQ(checks_scratch_alloc(e, &scratch), 0);
	CHECK_STR_EQ(look(e, "x"), "(none)");
	checks_free(e);
	CHECK_STR_EQ(look(NULL, "x"), "(none)");
}

static void test_errors(void)
{
	compile_fails("/abc REJECT\n", true, "line 1: missing closing delimiter");
	compile_fails("\n\n/a/ REJECT\n/(/ REJECT\n", true, "line 4: error in regex");
	compile_fails("/(/ REJECT\n", false, "line 1: regcomp");
	compile_fails("/a/q REJECT\n", true, "unknown regexp option \"q\"");
	compile_fails("/a/s REJECT\n", false, "unknown regexp option \"s\"");
	compile_fails("/a/\n", true, "line 1: no action");
	compile_fails("/a/ REJECT $1\n", true, "out-of-range replacement index");
	compile_fails("/(a)/ REJECT $0\n", false, "out-of-range replacement index \"0\"");
	compile_fails("!/(a)/ REJECT $1\n", true, "negated");
	compile_fails("if /a/\n/b/ X\n", true, "line 1: IF has no matching ENDIF");
	compile_fails("/b/ X\nendif\n", true, "line 2: ENDIF without matching IF");
	compile_fails("if /a/ extra\nendif\n", true, "extra text after IF");
	compile_fails("/a/ REJECT $\n", true, "empty macro name");
	compile_fails("/a+++/ X\n", false, "adjacent repetition");
	/* the file name is in the message */
	compile_fails("/(/ X\n", true, "f, line 1");
	/* continuation lines join the action */
	struct checks *c = compile1("/^a$/ REJECT one\n two\n", true);
	CHECK_STR_EQ(look(c, "a"), "REJECT one two");
	checks_free(c);
}

static void test_limits(void)
{
	/* A catastrophic pattern: the rule-by-rule path hits the PCRE2 limit (an error, never
	 * "no match"); Hyperscan, which does not backtrack, answers "no match" outright. */
	struct checks *c = compile1("/^(a+)+$/ REJECT bad\n", true);
	char subj[64], out[CHECKS_RESULT_MAX + 1];
	memset(subj, 'a', 40);
	subj[40] = 'b';
	subj[41] = '\0';
	struct checks_result r;
	CHECK_INT_EQ(checks_match(c, scratch, subj, 41, out, sizeof(out), &r), 0);
	int slow = checks_match_slow(c, scratch, subj, 41, out, sizeof(out), &r);
	CHECK(slow == -ERANGE || slow == 0);
	CHECK_INT_EQ(checks_match(c, scratch, subj, CHECKS_SUBJECT_MAX + 1, out, sizeof(out), &r),
		     -E2BIG);
	checks_free(c);
	/* many rules: one database, first match in file order */
	size_t n = 600, cap = n * 40;
	char *text = malloc(cap);
	size_t w = 0;
	for (size_t i = 0; i < n; i++)
		w += (size_t)snprintf(text + w, cap - w, "/^Subject: w%zu( |$)/ INFO %zu\n", i % 500, i);
	c = compile1(text, true);
	CHECK_STR_EQ(look(c, "Subject: w499"), "INFO 499");
	CHECK_STR_EQ(look(c, "Subject: w17 x"), "INFO 17");
	CHECK_STR_EQ(look(c, "Subject: w500"), "(none)");
	checks_free(c);
	free(text);
}

int main(void)
{
	RUN_TEST(test_basic_and_order);
	RUN_TEST(test_actions);
	RUN_TEST(test_negation_and_if);
	RUN_TEST(test_substitution);
	RUN_TEST(test_pcre_only_constructs);
	RUN_TEST(test_flags_and_newlines);
	RUN_TEST(test_empty_pattern);
	RUN_TEST(test_two_files);
	RUN_TEST(test_errors);
	RUN_TEST(test_limits);
	checks_scratch_free(scratch);
	return TEST_RESULT();
}
