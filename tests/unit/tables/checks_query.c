/* A postmap(1) look-alike for header/body check sets, for the differential test
 * (test_checks_postmap.py):
 *   checks_query -q LIST < keys     one key per line: "key<TAB>value" for every hit, as
 *                                   `postmap -q - TYPE:FILE`; exit 1 when nothing matched
 *   checks_query -m LIST < message  the message through smtp_checks with LIST as all four
 *                                   sets: "subject<TAB>value" for every hit, as
 *                                   `postmap -hmb -q - TYPE:FILE`
 * LIST is "pcre:/a,regexp:/b". Every lookup also runs the reference path (PCRE2/regexec rule
 * by rule) and -m feeds the message whole and in random pieces: any disagreement exits 2. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp_checks.h"
#include "tables/checks.h"

static struct checks *set;
static struct checks_scratch *scratch;

struct trace {
	char *p;
	size_t n, cap;
};

static void trace_put(struct trace *t, const char *p, size_t n)
{
	if (t->n + n > t->cap) {
		t->cap = (t->n + n) * 2 + 4096;
		t->p = realloc(t->p, t->cap);
		if (!t->p)
			abort();
	}
	memcpy(t->p + t->n, p, n);
	t->n += n;
}

static int compare(const char *key, size_t len)
{
	static char a[CHECKS_RESULT_MAX + 1], b[CHECKS_RESULT_MAX + 1];
	struct checks_result ra, rb;
	int x = checks_match(set, scratch, key, len, a, sizeof(a), &ra);
	int y = checks_match_slow(set, scratch, key, len, b, sizeof(b), &rb);
	if (x != y || (x == 1 && (strcmp(a, b) != 0 || ra.line != rb.line || ra.file != rb.file))) {
		fprintf(stderr, "MISMATCH for \"%.*s\": hyperscan %d \"%s\" line %u, slow %d \"%s\" line %u\n",
			(int)len, key, x, x == 1 ? a : "", x == 1 ? ra.line : 0, y, y == 1 ? b : "",
			y == 1 ? rb.line : 0);
		exit(2);
	}
	return x;
}

static int query(void)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int found = 0;
	static char out[CHECKS_RESULT_MAX + 1];
	struct checks_result res;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		int rc = compare(line, (size_t)n);
		if (rc < 0) {
			fprintf(stderr, "lookup error %d for \"%.*s\"\n", rc, (int)n, line);
			return 3;
		}
		rc = checks_match(set, scratch, line, (size_t)n, out, sizeof(out), &res);
		if (rc == 1) {
			printf("%.*s\t%s\n", (int)n, line, out);
			found = 1;
		}
	}
	free(line);
	return found ? 0 : 1;
}

struct run {
	struct trace hits, stored;
};

static int on_emit(void *ctx, const char *p, size_t n)
{
	trace_put(&((struct run *)ctx)->stored, p, n);
	return 0;
}

static void on_lookup(void *ctx, enum smtp_checks_class cls, const char *s, size_t n,
		      const struct checks_result *res)
{
	(void)cls;
	struct run *r = ctx;
	compare(s, n);
	trace_put(&r->hits, s, n);
	trace_put(&r->hits, "\t", 1);
	trace_put(&r->hits, res->value, strlen(res->value));
	trace_put(&r->hits, "\n", 1);
}

/* Split the top-level headers as the engine does (logical headers with CRLFs), then hand the
 * body (from the empty line on) in pieces of at most `piece` bytes (0: whole). */
static void feed(const char *msg, size_t len, size_t piece, unsigned seed, struct run *r)
{
	static const struct smtp_checks_ops ops = { on_emit, NULL, on_lookup };
	struct smtp_checks_config cfg = { .body_checks_size_limit = 0,
					  .line_length_limit = 2048,
					  .header_size_limit = 102400 };
	for (int i = 0; i < SMTP_CHECKS_CLASS_MAX; i++)
		cfg.set[i] = set;
	struct smtp_checks *m;
	if (smtp_checks_new(&cfg, scratch, &ops, r, &m) < 0)
		abort();
	smtp_checks_begin(m);
	/* to CRLF */
	char *crlf = malloc(2 * len + 1);
	size_t cn = 0;
	for (size_t i = 0; i < len; i++) {
		if (msg[i] == '\n')
			crlf[cn++] = '\r';
		crlf[cn++] = msg[i];
	}
	size_t pos = 0;
	for (;;) {
		const char *e = memchr(crlf + pos, '\n', cn - pos);
		if (!e || e == crlf + pos + 1)
			break; /* empty line or no line */
		size_t l = (size_t)(e - (crlf + pos)) + 1;
		const char *p = crlf + pos;
		size_t nl = 0;
		while (nl < l && p[nl] > 32 && p[nl] < 127 && p[nl] != ':')
			nl++;
		if (nl == 0 || nl == l || p[nl] != ':')
			break; /* not a header: the body begins */
		size_t end = pos + l;
		while (end < cn && (crlf[end] == ' ' || crlf[end] == '\t')) {
			const char *e2 = memchr(crlf + end, '\n', cn - end);
			end = e2 ? (size_t)(e2 - crlf) + 1 : cn;
		}
		smtp_checks_header(m, crlf + pos, end - pos);
		pos = end;
	}
	smtp_checks_headers_end(m);
	srand(seed);
	while (pos < cn) {
		size_t n = cn - pos;
		if (piece && n > 1) {
			size_t k = 1 + (size_t)rand() % piece;
			if (k < n)
				n = k;
		}
		smtp_checks_body(m, crlf + pos, n);
		pos += n;
	}
	struct smtp_checks_verdict v;
	smtp_checks_end(m, &v);
	smtp_checks_free(m);
	free(crlf);
}

static int message(void)
{
	struct trace in = { 0 };
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		trace_put(&in, buf, n);
	struct run whole = { 0 };
	feed(in.p, in.n, 0, 1, &whole);
	for (unsigned seed = 1; seed <= 8; seed++) {
		struct run split = { 0 };
		feed(in.p, in.n, seed == 1 ? 1 : seed * 7, seed, &split);
		if (split.hits.n != whole.hits.n || memcmp(split.hits.p, whole.hits.p, whole.hits.n) ||
		    split.stored.n != whole.stored.n ||
		    memcmp(split.stored.p, whole.stored.p, whole.stored.n)) {
			fprintf(stderr, "MISMATCH: the message fed in pieces (seed %u) differs\n",
				seed);
			return 2;
		}
		free(split.hits.p);
		free(split.stored.p);
	}
	/* postmap prints the key with LF only */
	for (size_t i = 0; i < whole.hits.n; i++)
		if (!(whole.hits.p[i] == '\r' && i + 1 < whole.hits.n && whole.hits.p[i + 1] == '\n'))
			putchar(whole.hits.p[i]);
	free(whole.hits.p);
	free(whole.stored.p);
	free(in.p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "-q") && strcmp(argv[1], "-m"))) {
		fprintf(stderr, "usage: checks_query -q|-m pcre:FILE[,regexp:FILE...]\n");
		return 64;
	}
	char err[512];
	int rc = checks_compile_list(argv[2], &set, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "checks_query: %s\n", rc == -EINVAL ? err : strerror(-rc));
		return 4;
	}
	if (checks_scratch_alloc(set, &scratch) < 0)
		return 5;
	rc = argv[1][1] == 'q' ? query() : message();
	checks_scratch_free(scratch);
	checks_free(set);
	return rc;
}
