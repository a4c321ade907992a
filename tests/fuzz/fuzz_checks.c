/* libFuzzer harness for header/body checks: tables/checks.c (parser, Hyperscan compile with
 * prefilter fallback, matching) and smtp/smtp_checks.c (MIME walk, line splitting).
 *
 * Input: byte 0 picks the syntax (bit 0: pcre, else regexp) and a piece size for feeding
 * (bits 1..7); then a check file, a line "%%", and a message (LF or CRLF). Invariants:
 * - compile never crashes; a set that compiles answers every line of the message on the
 *   Hyperscan path exactly as the rule-by-rule PCRE2/regexec path does (unless that path hit
 *   its backtracking limit, which Hyperscan does not have);
 * - smtp_checks gives the same stored bytes, log and verdict whether the message is fed
 *   whole or in pieces;
 * - without body_checks (the body stored in runs once nothing inspects it) it gives the same
 *   as with a body_checks set whose every match is DUNNO (the body taken line by line). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_checks.h"
#include "tables/checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct checks_scratch *scratch;
static struct checks *never; /* a body_checks set whose every match does nothing */

struct sink {
	uint64_t h; /* FNV-1a over what was stored and logged */
	size_t n;
};

static void mix(struct sink *s, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		s->h = (s->h ^ (uint8_t)p[i]) * 1099511628211ull;
	s->n += n;
}

static int on_emit(void *ctx, const char *p, size_t n)
{
	mix(ctx, p, n);
	return 0;
}

static void on_log(void *ctx, const struct smtp_checks_log *ev)
{
	char line[2048];
	size_t n = smtp_checks_log_format(line, sizeof(line), ev, "Q", "c[1.2.3.4]", "s", "r",
					  "ESMTP", "h");
	FUZZ_CHECK(n < sizeof(line));
	mix(ctx, "|", 1);
	mix(ctx, line, n);
}

static int feed(struct checks *set, struct checks *body, const char *msg, size_t len,
		size_t piece, struct sink *s)
{
	static const struct smtp_checks_ops ops = { on_emit, on_log, NULL };
	struct smtp_checks_config cfg = { .set = { set, set, set, body },
					  .body_checks_size_limit = 300,
					  .line_length_limit = 64,
					  .header_size_limit = 256 };
	struct smtp_checks *m;
	if (smtp_checks_new(&cfg, scratch, &ops, s, &m) < 0)
		return -1;
	size_t pos = 0;
	/* headers: "Name:" lines and their continuations, as the engine splits them */
	for (;;) {
		size_t name = 0;
		while (pos + name < len && msg[pos + name] > 32 && msg[pos + name] < 127 &&
		       msg[pos + name] != ':')
			name++;
		if (name == 0 || pos + name >= len || msg[pos + name] != ':')
			break;
		size_t end = pos;
		do {
			const char *e = memchr(msg + end, '\n', len - end);
			end = e ? (size_t)(e - msg) + 1 : len;
		} while (end < len && (msg[end] == ' ' || msg[end] == '\t'));
		FUZZ_CHECK(smtp_checks_header(m, msg + pos, end - pos) == 0);
		pos = end;
	}
	smtp_checks_headers_end(m);
	while (pos < len) {
		size_t n = len - pos;
		if (piece && n > piece)
			n = piece;
		FUZZ_CHECK(smtp_checks_body(m, msg + pos, n) == 0);
		pos += n;
	}
	struct smtp_checks_verdict v;
	FUZZ_CHECK(smtp_checks_end(m, &v) == 0);
	FUZZ_CHECK(v.outcome < SMTP_CHECKS_OUTCOME_MAX && v.nbcc <= SMTP_CHECKS_BCC_MAX);
	char o = (char)('0' + v.outcome);
	mix(s, &o, 1);
	smtp_checks_free(m);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 16384)
		return 0;
	bool pcre = data[0] & 1;
	size_t piece = data[0] >> 1;
	const char *text = (const char *)data + 1;
	size_t tlen = size - 1, flen = tlen;
	const char *msg = "";
	size_t mlen = 0;
	const char *sep = memmem(text, tlen, "\n%%\n", 4);
	if (sep) {
		flen = (size_t)(sep - text) + 1;
		msg = sep + 4;
		mlen = tlen - flen - 3;
	}
	struct checks_source src = { "fuzz", pcre, text, flen };
	struct checks *set = NULL;
	char err[512];
	int rc = checks_compile(&src, 1, &set, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc < 0)
		return 0;
	FUZZ_CHECK(checks_scratch_alloc(set, &scratch) == 0);
	/* every line of the message as a subject: both paths agree */
	static char a[CHECKS_RESULT_MAX + 1], b[CHECKS_RESULT_MAX + 1];
	for (size_t pos = 0; pos < mlen;) {
		const char *e = memchr(msg + pos, '\n', mlen - pos);
		size_t l = e ? (size_t)(e - (msg + pos)) : mlen - pos;
		struct checks_result ra, rb;
		int x = checks_match(set, scratch, msg + pos, l, a, sizeof(a), &ra);
		int y = checks_match_slow(set, scratch, msg + pos, l, b, sizeof(b), &rb);
		FUZZ_CHECK(x >= -ERANGE || x == -E2BIG);
		if (y != -ERANGE && x != -ERANGE) {
			FUZZ_CHECK(x == y);
			if (x == 1)
				FUZZ_CHECK(strcmp(a, b) == 0 && ra.line == rb.line &&
					   ra.action < CHECKS_ACTION_MAX);
		}
		pos += l + 1;
	}
	struct sink whole = { 14695981039346656037ull, 0 }, split = whole;
	if (feed(set, set, msg, mlen, 0, &whole) == 0 &&
	    feed(set, set, msg, mlen, piece ? piece : 1, &split) == 0)
		FUZZ_CHECK(whole.h == split.h && whole.n == split.n);
	/* no body_checks against body_checks that change nothing: the same bytes and log */
	if (!never) {
		static const char rule[] = "/^/ DUNNO\n"; /* matches, does nothing */
		struct checks_source nsrc = { "never", true, rule, sizeof(rule) - 1 };
		FUZZ_CHECK(checks_compile(&nsrc, 1, &never, err, sizeof(err)) == 0);
	}
	FUZZ_CHECK(checks_scratch_alloc(never, &scratch) == 0);
	struct sink lines = { 14695981039346656037ull, 0 }, runs = lines;
	if (feed(set, never, msg, mlen, piece ? piece : 1, &lines) == 0 &&
	    feed(set, NULL, msg, mlen, piece ? piece : 1, &runs) == 0)
		FUZZ_CHECK(lines.h == runs.h && lines.n == runs.n);
	checks_free(set);
	return 0;
}
