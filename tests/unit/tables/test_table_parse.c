/* tables/table_parse.c: logical lines, key/value records, inline: and static:. */
#include <errno.h>
#include <stdlib.h>

#include "tables/table_parse.h"
#include "testing.h"

/* All logical lines of text joined as "[lineno]line|". */
static char *lines_of(const char *text, size_t len, int *rc_out)
{
	static char out[8192];
	struct table_text tt;
	char *line, err[200];
	size_t n, w = 0;
	unsigned lineno;
	int rc;
	out[0] = '\0';
	table_text_init(&tt, text, len);
	while ((rc = table_text_next(&tt, &line, &n, &lineno, err, sizeof(err))) > 0) {
		CHECK_INT_EQ(strlen(line), n);
		w += (size_t)snprintf(out + w, sizeof(out) - w, "[%u]%s|", lineno, line);
	}
	table_text_free(&tt);
	*rc_out = rc;
	return out;
}

static void test_logical_lines(void)
{
	int rc;
	const char *t = "# comment\n"
			"\n"
			"key1 value one  \n"
			"  continued\there \t\n"
			"   # indented comment\n"
			"\tmore\n"
			"key2\tv2\r\n"
			"   \n"
			"key3 x   \n"
			"  y\t";
	CHECK_STR_EQ(lines_of(t, strlen(t), &rc),
		     "[3]key1 value one    continued\there \t\tmore|[7]key2\tv2|[9]key3 x     y|");
	CHECK_INT_EQ(rc, 0);
	/* A continuation with nothing before it starts a logical line of its own. */
	CHECK_STR_EQ(lines_of("  lead x\nk v\n", 13, &rc), "[1]lead x|[2]k v|");
	CHECK_STR_EQ(lines_of("", 0, &rc), "");
	CHECK_STR_EQ(lines_of("\n\n# x\n", 6, &rc), "");
	/* No final newline. */
	CHECK_STR_EQ(lines_of("a b", 3, &rc), "[1]a b|");
}

static void test_bounds(void)
{
	int rc;
	lines_of("a\0b c\n", 6, &rc);
	CHECK_INT_EQ(rc, -EINVAL);
	size_t big = TABLE_LINE_MAX + 10;
	char *b = malloc(big);
	memset(b, 'x', big);
	b[0] = 'k';
	b[1] = ' ';
	lines_of(b, big, &rc);
	CHECK_INT_EQ(rc, -EINVAL);
	/* Exactly the limit is fine, also reached through continuation lines. */
	lines_of(b, TABLE_LINE_MAX, &rc);
	CHECK_INT_EQ(rc, 0);
	b[TABLE_LINE_MAX / 2] = '\n';
	b[TABLE_LINE_MAX / 2 + 1] = ' ';
	lines_of(b, TABLE_LINE_MAX + 2, &rc);
	CHECK_INT_EQ(rc, -EINVAL);
	free(b);
}

static void test_kv_split(void)
{
	char line[] = "Key \t  value with  blanks", *k, *v, err[100];
	CHECK_INT_EQ(table_kv_split(line, &k, &v, err, sizeof(err)), 0);
	CHECK_STR_EQ(k, "Key");
	CHECK_STR_EQ(v, "value with  blanks");
	char nov[] = "lonely";
	CHECK_INT_EQ(table_kv_split(nov, &k, &v, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "key whitespace value") != NULL);
	char fold[] = "MiXeD@Example.COM";
	table_fold(fold, strlen(fold));
	CHECK_STR_EQ(fold, "mixed@example.com");
}

static char inline_seen[1024];

static int inline_add(void *ctx, const char *key, const char *value)
{
	(void)ctx;
	size_t n = strlen(inline_seen);
	snprintf(inline_seen + n, sizeof(inline_seen) - n, "%s=>%s|", key, value);
	return 0;
}

static int inline_run(const char *text)
{
	char err[200];
	inline_seen[0] = '\0';
	return table_inline_parse(text, inline_add, NULL, err, sizeof(err));
}

static void test_inline(void)
{
	CHECK_INT_EQ(inline_run("{ a=1, B=2 c=3,,d = }"), -EINVAL); /* "d" "=" split */
	CHECK_INT_EQ(inline_run("{ a=1, B=2 c=3,,d=}"), 0);
	CHECK_STR_EQ(inline_seen, "a=>1|b=>2|c=>3|d=>|");
	CHECK_INT_EQ(inline_run("{ { Key = text, with comma }, k2=v2 }"), 0);
	CHECK_STR_EQ(inline_seen, "key=>text, with comma|k2=>v2|");
	CHECK_INT_EQ(inline_run("{}"), -EINVAL);
	CHECK_INT_EQ(inline_run("{ a=1"), -EINVAL);
	CHECK_INT_EQ(inline_run("a=1"), -EINVAL);
	CHECK_INT_EQ(inline_run("{ a=1 } x"), -EINVAL);
	CHECK_INT_EQ(inline_run("{ =1 }"), -EINVAL);
	CHECK_INT_EQ(inline_run("{ novalue }"), -EINVAL);
	CHECK_INT_EQ(inline_run("{ {a = 1 }"), -EINVAL);
}

static void test_static(void)
{
	char v[64], err[100];
	CHECK_INT_EQ(table_static_value("REJECT", v, sizeof(v), err, sizeof(err)), 0);
	CHECK_STR_EQ(v, "REJECT");
	CHECK_INT_EQ(table_static_value("{ REJECT go away }", v, sizeof(v), err, sizeof(err)), 0);
	CHECK_STR_EQ(v, "REJECT go away");
	CHECK_INT_EQ(table_static_value("{ open", v, sizeof(v), err, sizeof(err)), -EINVAL);
	char big[100];
	memset(big, 'x', sizeof(big) - 1);
	big[99] = '\0';
	CHECK_INT_EQ(table_static_value(big, v, sizeof(v), err, sizeof(err)), -EINVAL);
}

/* The reader works on a whole buffer; a file cut at any offset must still parse (a build
 * that reads a file being written sees such a prefix), and CRLF line ends must mean what LF
 * does (a table edited on another system). */
static void test_every_prefix_and_crlf(void)
{
	const char *t = "# c\nk1 v1\n  more\n\nk2\tv2 x  \n\tcont\n#x\nk3 v3\n";
	size_t len = strlen(t);
	int rc;
	char whole[8192];
	snprintf(whole, sizeof(whole), "%s", lines_of(t, len, &rc));
	CHECK_INT_EQ(rc, 0);
	for (size_t cut = 0; cut <= len; cut++) {
		char *p = malloc(cut ? cut : 1); /* exactly `cut` bytes: ASan sees overreads */
		memcpy(p, t, cut);
		const char *got = lines_of(p, cut, &rc);
		CHECK_INT_EQ(rc, 0);
		/* A prefix of the file gives a prefix of the lines, up to the cut line. */
		size_t n = strlen(got);
		const char *bar = n ? strrchr(got, '|') : NULL;
		if (bar) {
			const char *prev = got;
			for (const char *q = got; q < bar; q++)
				if (*q == '|')
					prev = q + 1;
			CHECK(strncmp(whole, got, (size_t)(prev - got)) == 0);
		}
		free(p);
	}
	char crlf[256];
	size_t w = 0;
	for (const char *q = t; *q; q++) {
		if (*q == '\n')
			crlf[w++] = '\r';
		crlf[w++] = *q;
	}
	CHECK_STR_EQ(lines_of(crlf, w, &rc), whole);
}

int main(void)
{
	RUN_TEST(test_every_prefix_and_crlf);
	RUN_TEST(test_logical_lines);
	RUN_TEST(test_bounds);
	RUN_TEST(test_kv_split);
	RUN_TEST(test_inline);
	RUN_TEST(test_static);
	return TEST_RESULT();
}
