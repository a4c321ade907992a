/* tables/table_regexp.c: regexp: (POSIX ERE) and pcre: (PCRE2) tables. */
#include <errno.h>
#include <stdlib.h>

#include "tables/table_regexp.h"
#include "testing.h"

static struct table_regexp *compile_ok(const char *text, bool pcre)
{
	struct table_regexp *re = NULL;
	char err[256] = "";
	int rc = table_regexp_compile(text, strlen(text), pcre, &re, err, sizeof(err));
	if (rc)
		fprintf(stderr, "  compile failed: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	return re;
}

static void compile_fails(const char *text, bool pcre, const char *why)
{
	struct table_regexp *re = NULL;
	char err[256] = "";
	CHECK_INT_EQ(table_regexp_compile(text, strlen(text), pcre, &re, err, sizeof(err)), -EINVAL);
	CHECK(re == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  \"%s\": reason \"%s\" lacks \"%s\"\n", text, err, why);
		CHECK(strstr(err, why) != NULL);
	}
}

static const char *look(struct table_regexp *re, const char *key)
{
	static char out[4097];
	int rc = table_regexp_lookup(re, key, out, sizeof(out));
	CHECK(rc >= 0);
	return rc == 1 ? out : "(none)";
}

static void test_substitution(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct table_regexp *re = compile_ok("/^(a)(b)?$/ x=$1,$2,${1}$$ $(1)\n"
						     "/^([^@]+)@(.*)$/ REDIRECT $2-$1@example.net\n"
						     "/^(.)(.)(.)(.)(.)(.)(.)(.)(.)(.)$/ $10$9$1\n",
						     pcre);
		CHECK_STR_EQ(look(re, "a"), "x=a,,a$ a");
		CHECK_STR_EQ(look(re, "ab"), "x=a,b,a$ a");
		CHECK_STR_EQ(look(re, "User@Host"), "REDIRECT Host-User@example.net");
		CHECK_STR_EQ(look(re, "0123456789"), "980");
		CHECK_STR_EQ(look(re, "zz"), "(none)");
		CHECK_INT_EQ(table_regexp_rules(re), 3);
		table_regexp_free(re);
	}
}

static void test_flags_and_case(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct table_regexp *re = compile_ok("/^abc$/ INSENSITIVE\n"
						     "/^Def$/i SENSITIVE\n"
						     "@^x/y$@ DELIM\n"
						     "|^p\\|q$| ESCAPED\n",
						     pcre);
		CHECK_STR_EQ(look(re, "ABC"), "INSENSITIVE");
		CHECK_STR_EQ(look(re, "Def"), "SENSITIVE");
		CHECK_STR_EQ(look(re, "DEF"), "(none)");
		CHECK_STR_EQ(look(re, "x/y"), "DELIM");
		table_regexp_free(re);
	}
	/* POSIX ERE is leftmost-longest, PCRE leftmost-first (postmap answers the same). */
	struct table_regexp *re = compile_ok("/(a|ab)/ [$1]\n", false);
	CHECK_STR_EQ(look(re, "ab"), "[ab]");
	table_regexp_free(re);
	re = compile_ok("/(a|ab)/ [$1]\n", true);
	CHECK_STR_EQ(look(re, "ab"), "[a]");
	table_regexp_free(re);
	/* pcre: flags toggle Postfix's defaults, which include DOTALL: /s turns it off
	 * (postmap -q "a<LF>b" answers the next rule, as here). */
	re = compile_ok("/a.b/s NOT-DOTALL\n/a.c/ DOTALL\n/^x$/m MULTI\n/(a+?)/U UNGREEDY $1\n"
			"/^q/A ANCH\n",
			true);
	CHECK_STR_EQ(look(re, "a\nb"), "UNGREEDY a");
	CHECK_STR_EQ(look(re, "a\nc"), "DOTALL");
	CHECK_STR_EQ(look(re, "y\nx\nz"), "MULTI");
	CHECK_STR_EQ(look(re, "zaaa"), "UNGREEDY aaa");
	table_regexp_free(re);
	/* regexp: x off means POSIX basic syntax: \( \) group, + is literal. */
	re = compile_ok("/^\\(a\\)+$/x BRE $1\n", false);
	CHECK_STR_EQ(look(re, "a+"), "BRE a");
	CHECK_STR_EQ(look(re, "aa"), "(none)");
	table_regexp_free(re);
}

static void test_negation_and_if(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		struct table_regexp *re = compile_ok("if /@example\\.com$/\n"
						     "!/^postmaster@/ REJECT not postmaster\n"
						     "IF\t!/^p/\n"
						     "/./ NEVER\n"
						     "ENDIF\n"
						     "endif\n"
						     "/^postmaster@/ OK\n"
						     "!/@/ NOAT\n",
						     pcre);
		CHECK_STR_EQ(look(re, "joe@example.com"), "REJECT not postmaster");
		CHECK_STR_EQ(look(re, "postmaster@example.com"), "OK");
		CHECK_STR_EQ(look(re, "postmaster@other.org"), "OK");
		CHECK_STR_EQ(look(re, "localonly"), "NOAT");
		CHECK_STR_EQ(look(re, "joe@other.org"), "(none)");
		table_regexp_free(re);
	}
}

static void test_errors(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		compile_fails("/a/ x\n/(b)/ $2\n", pcre, "line 2: out-of-range replacement index");
		/* postmap refuses $0 too (it is no capture group) */
		compile_fails("/(b)/ $0\n", pcre, "line 1: out-of-range replacement index \"0\"");
		compile_fails("!/(b)/ $1\n", pcre, "negated");
		compile_fails("/a/\n", pcre, "no replacement text");
		compile_fails("/a x\n", pcre, "missing closing delimiter");
		compile_fails("/a/q x\n", pcre, "unknown regexp option");
		compile_fails("endif\n", pcre, "ENDIF without matching IF");
		compile_fails("if /a/\n/b/ c\n", pcre, "line 1: IF has no matching ENDIF");
		compile_fails("if /a/ x\nendif\n", pcre, "extra text");
		compile_fails("/a/ $x\n", pcre, "non-numeric");
		compile_fails("/a/ ${1\n", pcre, "unmatched");
		compile_fails("/(a)/ $1$\n", pcre, "empty macro name");
		compile_fails("/a/ x$ y\n", pcre, "empty macro name");
		compile_fails("/(/ x\n", pcre, pcre ? "error in regex" : "regcomp");
	}
	compile_fails("/a/s x\n", false, "unknown regexp option \"s\"");
	/* Adjacent duplication symbols are undefined in POSIX and explode glibc's regcomp(). */
	compile_fails("/c++++++++++++++++++++++++++++++++++++++++/ x\n", false, "adjacent repetition");
	compile_fails("/a{2}{3}/ x\n", false, "adjacent repetition");
	compile_fails("/a*?/ x\n", false, "adjacent repetition");
	compile_fails("/a{1001}/ x\n", false, "above 1000");
	struct table_regexp *re = compile_ok("/[+*]+x\\++(a+)*[[:alpha:]]{2,3}/ ok\n", false);
	table_regexp_free(re);
}

static void test_bounds(void)
{
	struct table_regexp *re = compile_ok("/^(a|aa)+$/ X\n/(.*)/ $1$1\n", true);
	char *key = malloc(TABLE_REGEXP_KEY_MAX + 2);
	char out[64];
	memset(key, 'a', TABLE_REGEXP_KEY_MAX + 1);
	key[TABLE_REGEXP_KEY_MAX + 1] = '\0';
	CHECK_INT_EQ(table_regexp_lookup(re, key, out, sizeof(out)), -E2BIG);
	/* Catastrophic backtracking hits the match limit: an error, never "not found". */
	memset(key, 'a', 40);
	key[40] = 'b';
	key[41] = '\0';
	CHECK_INT_EQ(table_regexp_lookup(re, key, out, sizeof(out)), -ERANGE);
	/* A result that does not fit the caller's buffer. */
	memset(key, 'c', 40);
	CHECK_INT_EQ(table_regexp_lookup(re, key, out, sizeof(out)), -E2BIG);
	free(key);
	table_regexp_free(re);
}

int main(void)
{
	RUN_TEST(test_substitution);
	RUN_TEST(test_flags_and_case);
	RUN_TEST(test_negation_and_if);
	RUN_TEST(test_errors);
	RUN_TEST(test_bounds);
	return TEST_RESULT();
}
