/* tables/rule_file.c: the reader of regexp:/pcre: rule files, the pattern engines and the
 * $n templates. Whole files, their structure, every error with its line, the bounds, and
 * truncated or odd input (every prefix of a file, in heap buffers of exactly its length). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "tables/rule_file.h"
#include "testing.h"

static struct rule_file_spec spec_of(bool pcre)
{
	return (struct rule_file_spec){ .pcre = pcre,
					.entries_max = 1000,
					.action_max = 100,
					.action_noun = "action" };
}

/* Read all of text (copied into a heap buffer of exactly len bytes) with spec; returns the
 * entries as "op line@index/depth[!][:action][^if]" joined with ';', and the result code and
 * message in *rc and err. */
static const char *read_all(const char *text, size_t len, const struct rule_file_spec *spec,
			    int *rc, char *err, size_t errlen)
{
	static char out[16384];
	char *copy = malloc(len ? len : 1);
	memcpy(copy, text, len);
	struct rule_file_spec s = *spec;
	s.text = copy;
	s.len = len;
	struct rule_file rf;
	rule_file_init(&rf, &s);
	struct rule_file_rule e;
	size_t w = 0;
	out[0] = '\0';
	err[0] = '\0';
	while ((*rc = rule_file_next(&rf, &e, err, errlen)) > 0) {
		char one[256];
		int n = snprintf(one, sizeof(one), "%c%u@%zu/%u%s", rule_file_op_name(e.op)[0],
				 e.line, e.index, e.depth, e.negate ? "!" : "");
		if (e.op == RULE_FILE_MATCH)
			n += snprintf(one + n, sizeof(one) - (size_t)n, ":%s%s", e.action,
				      e.has_refs ? "$" : "");
		if (e.op == RULE_FILE_ENDIF)
			n += snprintf(one + n, sizeof(one) - (size_t)n, "^%zu", e.if_index);
		else
			CHECK(e.re.pcre == s.pcre && (e.re.pcre ? e.re.code != NULL : e.re.posix_ok));
		if (e.op != RULE_FILE_MATCH)
			CHECK(e.action == NULL);
		w += (size_t)snprintf(out + w, sizeof(out) - w, "%s;", one);
		rule_file_re_free(&e.re);
	}
	rule_file_free(&rf);
	free(copy);
	return out;
}

static const char *entries(const char *text, bool pcre)
{
	struct rule_file_spec s = spec_of(pcre);
	int rc;
	char err[256];
	const char *r = read_all(text, strlen(text), &s, &rc, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  \"%s\": %s\n", text, err);
	CHECK_INT_EQ(rc, 0);
	return r;
}

/* The message a file is refused with (rc must be -EINVAL). */
static const char *refusal(const char *text, size_t len, const struct rule_file_spec *s)
{
	static char err[256];
	int rc;
	read_all(text, len, s, &rc, err, sizeof(err));
	CHECK_INT_EQ(rc, -EINVAL);
	return err;
}

static const char *refused(const char *text, bool pcre)
{
	struct rule_file_spec s = spec_of(pcre);
	return refusal(text, strlen(text), &s);
}

static void test_whole_files(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		CHECK_STR_EQ(entries("# comment\n"
				     "\n"
				     "/^a/ one\n"
				     "!/b/i two  words  \n"
				     "IF /c/\n"
				     "  # a comment inside\n"
				     "if !#d#\n"
				     "/(e)/ x $1\n"
				     "   continued $$\n"
				     "endif\n"
				     "EndIf\r\n"
				     "|f| last",
				     pcre),
			     "m3@0/0:one;m4@1/0!:two  words;i5@2/0;i7@3/1!;"
			     "m8@4/2:x $1   continued $$$;e10@5/1^3;e11@6/0^2;m12@7/0:last;");
		/* nothing at all */
		CHECK_STR_EQ(entries("", pcre), "");
		CHECK_STR_EQ(entries("\n  \n# only comments\n", pcre), "");
		/* "if" needs a blank after it; "iffy" is not a pattern's delimiter line */
		CHECK_STR_EQ(refused("if/a/\nendif\n", pcre), "line 1: missing closing delimiter 'i'");
		/* a tab after the delimiter ends the flags; tabs and blanks before the text go */
		CHECK_STR_EQ(entries("/a/\t \tx\ty\n", pcre), "m1@0/0:x\ty;");
	}
	/* the pattern and its flags as the callers see them */
	struct rule_file_spec s = spec_of(true);
	s.text = "/a\\/b/imsxAEUX r\n";
	s.len = strlen(s.text);
	struct rule_file rf;
	struct rule_file_rule e;
	char err[128];
	rule_file_init(&rf, &s);
	CHECK_INT_EQ(rule_file_next(&rf, &e, err, sizeof(err)), 1);
	CHECK_STR_EQ(e.syn.pattern, "a\\/b");
	CHECK_INT_EQ(e.syn.pcre_opts, PCRE2_MULTILINE | PCRE2_EXTENDED | PCRE2_ANCHORED |
					      PCRE2_DOLLAR_ENDONLY | PCRE2_UNGREEDY);
	CHECK(!e.syn.icase);
	rule_file_re_free(&e.re);
	CHECK_INT_EQ(rule_file_next(&rf, &e, err, sizeof(err)), 0);
	rule_file_free(&rf);
	s = spec_of(false);
	s.text = "/a(b)/xm r\n/c/ d\n";
	s.len = strlen(s.text);
	rule_file_init(&rf, &s);
	CHECK_INT_EQ(rule_file_next(&rf, &e, err, sizeof(err)), 1);
	CHECK(!e.syn.ext && e.syn.newline && e.syn.icase);
	CHECK_INT_EQ(e.re.nsub, 0); /* basic syntax: "(" is a literal */
	rule_file_re_free(&e.re);
	CHECK_INT_EQ(rule_file_next(&rf, &e, err, sizeof(err)), 1);
	CHECK(e.syn.ext && !e.syn.newline && e.syn.icase);
	rule_file_re_free(&e.re);
	rule_file_free(&rf);
	CHECK_STR_EQ(rule_file_op_name(RULE_FILE_ENDIF), "endif");
	CHECK_STR_EQ(rule_file_op_name(RULE_FILE_OP_MAX), "?");
}

static void test_errors(void)
{
	for (int pcre = 0; pcre < 2; pcre++) {
		CHECK_STR_EQ(refused("/a/ x\n\n/b\n", pcre), "line 3: missing closing delimiter '/'");
		CHECK_STR_EQ(refused("/a/q x\n", pcre), "line 1: unknown regexp option \"q\"");
		CHECK_STR_EQ(refused("/a/\n", pcre), "line 1: no action");
		CHECK_STR_EQ(refused("!/a/\n", pcre), "line 1: no action");
		CHECK_STR_EQ(refused("if /a/ x\nendif\n", pcre),
			     "line 1: extra text after IF pattern: \"x\"");
		CHECK_STR_EQ(refused("endif\n", pcre), "line 1: ENDIF without matching IF");
		CHECK_STR_EQ(refused("if /a/\nif /b/\nendif\n/c/ d\n", pcre),
			     "line 1: IF has no matching ENDIF");
		CHECK_STR_EQ(refused("/a/ $1\n", pcre), "line 1: out-of-range replacement index \"1\"");
		CHECK_STR_EQ(refused("/(a)/ $0\n", pcre),
			     "line 1: out-of-range replacement index \"0\"");
		CHECK_STR_EQ(refused("!/(a)/ x$1\n", pcre),
			     "line 1: $number in result after a negated pattern (nothing is captured)");
		CHECK_STR_EQ(refused("!/(a)/ x$0\n", pcre), /* $0 first, as Postfix */
			     "line 1: out-of-range replacement index \"0\"");
		CHECK_STR_EQ(refused("/a/ $x\n", pcre), "line 1: non-numeric replacement index \"x\"");
		CHECK_STR_EQ(refused("/a/ ${123}\n", pcre),
			     "line 1: non-numeric replacement index \"123\"");
		CHECK_STR_EQ(refused("/a/ ${1\n", pcre), "line 1: unmatched '{' in result \"${1\"");
		CHECK_STR_EQ(refused("/a/ $(1\n", pcre), "line 1: unmatched '(' in result \"$(1\"");
		CHECK_STR_EQ(refused("/a/ ${}\n", pcre),
			     "line 1: empty macro name in result \"${}\" (use $$ for $)");
		CHECK_STR_EQ(refused("/a/ x$\n", pcre),
			     "line 1: empty macro name in result \"x$\" (use $$ for $)");
		CHECK(strstr(refused("/(/ x\n", pcre), pcre ? "line 1: error in regex at offset"
							    : "line 1: regcomp: "));
		/* the pattern is checked before what follows it, as Postfix does */
		CHECK(strstr(refused("if /(/ x\nendif\n", pcre), pcre ? "error in regex" : "regcomp"));
		CHECK(strstr(refused("/(/\n", pcre), pcre ? "error in regex" : "regcomp"));
		/* a NUL byte refuses the file, with its line */
		struct rule_file_spec s = spec_of(pcre);
		CHECK_STR_EQ(refusal("/a/ x\n/b/ y\0z\n", 14, &s), "line 2: NUL byte in table text");
		/* with a name, every message starts with it */
		s.name = "pcre:/etc/postfix/hc";
		CHECK_STR_EQ(refusal("/a/ x\n/b/ y\0z\n", 14, &s),
			     "pcre:/etc/postfix/hc, line 2: NUL byte in table text");
		CHECK_STR_EQ(refusal("\n/a/\n", 5, &s), "pcre:/etc/postfix/hc, line 2: no action");
		CHECK_STR_EQ(refusal("if /a/\n", 7, &s),
			     "pcre:/etc/postfix/hc, line 1: IF has no matching ENDIF");
		/* the caller's noun */
		s.action_noun = "replacement text";
		CHECK_STR_EQ(refusal("\n/a/\n", 5, &s),
			     "pcre:/etc/postfix/hc, line 2: no replacement text");
	}
	CHECK_STR_EQ(refused("/a/s x\n", false), "line 1: unknown regexp option \"s\"");
	CHECK_STR_EQ(refused("/a/A x\n", false), "line 1: unknown regexp option \"A\"");
	CHECK_STR_EQ(refused("/c++/ x\n", false),
		     "line 1: adjacent repetition operators are undefined in POSIX regular "
		     "expressions (use a group)");
	CHECK_STR_EQ(refused("/a{1001}/ x\n", false), "line 1: repetition count above 1000");
	CHECK_STR_EQ(refused("/a**/x d\n", false), /* basic syntax too */
		     "line 1: adjacent repetition operators are undefined in POSIX regular "
		     "expressions (use a group)");
}

/* A file of n nested IFs around one rule. */
static char *nested(unsigned n, size_t *len)
{
	size_t cap = (size_t)n * 16 + 64, w = 0;
	char *t = malloc(cap);
	for (unsigned i = 0; i < n; i++)
		w += (size_t)snprintf(t + w, cap - w, "if /a%u/\n", i);
	w += (size_t)snprintf(t + w, cap - w, "/x/ y\n");
	for (unsigned i = 0; i < n; i++)
		w += (size_t)snprintf(t + w, cap - w, "endif\n");
	*len = w;
	return t;
}

static void test_bounds(void)
{
	/* nesting: RULE_FILE_DEPTH_MAX is fine, one more is refused at the IF too deep */
	size_t len;
	char *t = nested(RULE_FILE_DEPTH_MAX, &len);
	struct rule_file_spec s = spec_of(true);
	int rc;
	char err[256];
	read_all(t, len, &s, &rc, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	free(t);
	t = nested(RULE_FILE_DEPTH_MAX + 1, &len);
	CHECK_STR_EQ(refusal(t, len, &s), "line 65: if/endif nested deeper than 64");
	free(t);
	/* the innermost IF left open is the one reported; depth and if_index track the stack */
	CHECK_STR_EQ(entries("if /a/\nendif\nif /b/\nif /c/\nendif\nendif\n", true),
		     "i1@0/0;e2@1/0^0;i3@2/0;i4@3/1;e5@4/1^3;e6@5/0^2;");
	CHECK_STR_EQ(refused("if /a/\nendif\nif /b/\nif /c/\nendif\n", true),
		     "line 3: IF has no matching ENDIF");
	/* entries are numbered from first_index and bounded by entries_max, ENDIFs included */
	s.first_index = 10;
	s.entries_max = 13;
	const char *t3 = "/a/ b\nif /c/\nendif\n", *t4 = "/a/ b\nif /c/\nendif\n/d/ e\n";
	CHECK_STR_EQ(read_all(t3, strlen(t3), &s, &rc, err, sizeof(err)),
		     "m1@10/0:b;i2@11/0;e3@12/0^11;");
	CHECK_INT_EQ(rc, 0);
	CHECK_STR_EQ(refusal(t4, strlen(t4), &s), "line 4: more than 13 lines");
	s.first_index = 13;
	CHECK_STR_EQ(refusal("# x\n\nendif\n", 11, &s), "line 3: more than 13 lines");
	/* the text of a rule: action_max bytes and no more */
	s = spec_of(false);
	s.action_max = 5;
	read_all("/a/ 12345\n", 10, &s, &rc, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	CHECK_STR_EQ(refusal("/a/ 123456\n", 11, &s), "line 1: action longer than 5 bytes");
	/* capture groups: 99 and no more */
	char pat[512];
	size_t w = (size_t)snprintf(pat, sizeof(pat), "/");
	for (int i = 0; i < 99; i++)
		w += (size_t)snprintf(pat + w, sizeof(pat) - w, "(a)");
	snprintf(pat + w, sizeof(pat) - w, "/ $99\n");
	for (int pcre = 0; pcre < 2; pcre++) {
		s = spec_of(pcre);
		read_all(pat, strlen(pat), &s, &rc, err, sizeof(err));
		CHECK_INT_EQ(rc, 0);
	}
	snprintf(pat + w, sizeof(pat) - w, "(a)/ x\n");
	for (int pcre = 0; pcre < 2; pcre++)
		CHECK_STR_EQ(refused(pat, pcre), "line 1: more than 99 capture groups");
	/* a logical line longer than TABLE_LINE_MAX */
	size_t big = TABLE_LINE_MAX + 16;
	t = malloc(big);
	memset(t, 'a', big);
	memcpy(t, "/a/ ", 4);
	s = spec_of(true);
	s.action_max = big;
	CHECK_STR_EQ(refusal(t, big, &s), "line 1: logical line longer than 65536 bytes");
	free(t);
}

/* Every prefix of a file, read from a heap buffer of exactly that length: each is read whole
 * or refused with a reason, and a prefix that ends where a line ends reads as that many
 * entries of the whole file. */
static void test_prefixes(void)
{
	static const char *const files[] = {
		"if /^a(b)?/i\n!/x/ no $$\n/(c)|(d)/ got $1${2}$(1)\n  more\nendif\n#c\n/e/ f",
		"|p|x a\r\nif !#q#\r\n/r/ s\r\n\tt\r\nendif\r\n",
		"IF\t/a/\nIf /b/\n/c/ d\nENDIF\neNdIf\n",
		"/\\// slash\n/a\\\\/ backslash\n",
	};
	for (int pcre = 0; pcre < 2; pcre++) {
		for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
			size_t n = strlen(files[f]);
			struct rule_file_spec s = spec_of(pcre);
			int rc;
			char err[256], whole[4096];
			snprintf(whole, sizeof(whole), "%s", read_all(files[f], n, &s, &rc, err,
								      sizeof(err)));
			CHECK_INT_EQ(rc, 0);
			for (size_t k = 0; k <= n; k++) {
				const char *got = read_all(files[f], k, &s, &rc, err, sizeof(err));
				CHECK(rc == 0 || rc == -EINVAL);
				if (rc == -EINVAL)
					CHECK(strncmp(err, "line ", 5) == 0);
				if (rc == 0 && (k == 0 || files[f][k - 1] == '\n'))
					CHECK(strncmp(whole, got, strlen(got)) == 0);
			}
		}
	}
	/* odd lines: a lone delimiter, a lone "!", "if" alone, blanks where a pattern belongs */
	static const char *const odd[] = { "/", "!", "!!/a/ x", "if", "if ", "if !", "if \t!\t/a/",
					   "/a/ x\n!", "//", "// x", "\\", "/\\", "/a\\/", "endif x",
					   "if /a/\nendif extra", "endif\nif /a/", "\x7f\x80/x" };
	for (int pcre = 0; pcre < 2; pcre++) {
		for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
			struct rule_file_spec s = spec_of(pcre);
			int rc;
			char err[256];
			read_all(odd[i], strlen(odd[i]), &s, &rc, err, sizeof(err));
			CHECK(rc == 0 || rc == -EINVAL);
			if (rc < 0)
				CHECK(strncmp(err, "line ", 5) == 0);
		}
		/* the empty pattern matches everything */
		CHECK_STR_EQ(entries("// x\n", pcre), "m1@0/0:x;");
		/* "endif x" is no ENDIF but a pattern delimited by 'e' */
		CHECK_STR_EQ(refused("endif x\n", pcre), "line 1: missing closing delimiter 'e'");
	}
}

static void test_expand(void)
{
	char out[32];
	const size_t caps[] = { 0, 5, 1, 3, SIZE_MAX, SIZE_MAX };
	CHECK_INT_EQ(rule_file_expand("<$1|${2}|$(1)|$$>", 2, "abcde", caps, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "<bc||bc|$>");
	CHECK_INT_EQ(rule_file_expand("plain", 0, "", NULL, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "plain");
	/* exactly fits (4 bytes and the NUL), one byte short */
	CHECK_INT_EQ(rule_file_expand("x${1}y", 2, "abcde", caps, out, 5), 0);
	CHECK_STR_EQ(out, "xbcy");
	CHECK_INT_EQ(rule_file_expand("x${1}y", 2, "abcde", caps, out, 4), -E2BIG);
	CHECK_INT_EQ(rule_file_expand("x", 0, "", NULL, out, 0), -E2BIG);
	/* caps NULL: a group reads as empty */
	CHECK_INT_EQ(rule_file_expand("[$1]", 1, "", NULL, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "[]");
}

/* Compile one pattern through the reader. */
static struct rule_file_re compile(const char *line, bool pcre)
{
	struct rule_file_spec s = spec_of(pcre);
	s.text = line;
	s.len = strlen(line);
	struct rule_file rf;
	struct rule_file_rule e;
	char err[256];
	rule_file_init(&rf, &s);
	int rc = rule_file_next(&rf, &e, err, sizeof(err));
	if (rc != 1)
		fprintf(stderr, "  %s: %s\n", line, err);
	CHECK_INT_EQ(rc, 1);
	rule_file_free(&rf);
	return e.re;
}

static void test_exec(void)
{
	struct rule_file_matcher m;
	CHECK_INT_EQ(rule_file_matcher_init(&m, RULE_FILE_GROUPS_MAX), 0);
	size_t caps[2 * (RULE_FILE_GROUPS_MAX + 1)];
	for (int pcre = 0; pcre < 2; pcre++) {
		struct rule_file_re re = compile("/^(a+)(x)?(b)/ r\n", pcre);
		CHECK_INT_EQ(re.nsub, 3);
		CHECK_INT_EQ(rule_file_exec(&re, &m, "AAb!", 4, caps), 1);
		CHECK(caps[0] == 0 && caps[1] == 3 && caps[2] == 0 && caps[3] == 2);
		CHECK(caps[4] == SIZE_MAX && caps[5] == SIZE_MAX && caps[6] == 2 && caps[7] == 3);
		if (pcre) /* len bounds the subject (regexp: wants a NUL at len) */
			CHECK_INT_EQ(rule_file_exec(&re, &m, "ab", 1, NULL), 0);
		rule_file_re_free(&re);
		/* a NUL inside the subject does not end it */
		re = compile("/b$/ r\n", pcre);
		CHECK_INT_EQ(rule_file_exec(&re, &m, "a\0b", 3, NULL), 1);
		rule_file_re_free(&re);
		/* case: insensitive unless i */
		re = compile("/abc/i r\n", pcre);
		CHECK_INT_EQ(rule_file_exec(&re, &m, "ABC", 3, NULL), 0);
		CHECK_INT_EQ(rule_file_exec(&re, &m, "abc", 3, NULL), 1);
		rule_file_re_free(&re);
	}
	/* POSIX leftmost-longest against PCRE's leftmost-first */
	struct rule_file_re re = compile("/(a|ab)(c|bcd)/ r\n", false);
	CHECK_INT_EQ(rule_file_exec(&re, &m, "abcd", 4, caps), 1);
	CHECK(caps[0] == 0 && caps[1] == 4);
	rule_file_re_free(&re);
	re = compile("/(a|ab)(c|bcd)/ r\n", true);
	CHECK_INT_EQ(rule_file_exec(&re, &m, "abcd", 4, caps), 1);
	CHECK(caps[0] == 0 && caps[1] == 4 && caps[3] == 1);
	rule_file_re_free(&re);
	/* PCRE2's backtracking is bounded: an error, never "no match" */
	re = compile("/^(\\w+\\s?)*$/ r\n", true);
	char subj[64];
	memset(subj, 'a', 40);
	subj[40] = '!';
	CHECK_INT_EQ(rule_file_exec(&re, &m, subj, 41, NULL), -ERANGE);
	rule_file_re_free(&re);
	rule_file_matcher_free(&m);
	rule_file_matcher_free(&m); /* twice is harmless */
}

int main(void)
{
	RUN_TEST(test_whole_files);
	RUN_TEST(test_errors);
	RUN_TEST(test_bounds);
	RUN_TEST(test_prefixes);
	RUN_TEST(test_expand);
	RUN_TEST(test_exec);
	return TEST_RESULT();
}
