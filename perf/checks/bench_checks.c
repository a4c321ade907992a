/* header_checks/body_checks cost per message: one Hyperscan scan per line (tables/checks.c)
 * against trying every rule in turn with PCRE2 (JIT), which is what Postfix's cleanup does.
 *
 * A realistic message: 20 headers (two folded) and about 4 KB of body in 60-odd lines. Rule
 * sets of 100, 1,000 and 10,000 header_checks rules plus as many body_checks rules, in the
 * style of real spam lists (anchored header names, word lists, alternations, domains,
 * case-insensitive), with a few negations, an if/endif block and rules Hyperscan can only
 * prefilter (backreferences, lookbehind). No rule matches the message: the common case, and
 * the one where a rule-by-rule scan pays for every rule.
 *
 *   ./bench_checks [rules...]     (default 100 1000 10000)
 * Prints ns/message for both paths, their ratio, the full smtp_checks pipeline (MIME walk,
 * line split, emit), and the Hyperscan compile time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_checks_rules.h"
#include "smtp/smtp_checks.h"
#include "tables/checks.h"

static const char *const headers[] = {
	"Received: from mail.sender.example (mail.sender.example [198.51.100.7])\r\n"
	"\tby mx.example.net (Postfix) with ESMTPS id 4Abc1234\r\n"
	"\tfor <user@example.net>; Sun, 22 Nov 2026 13:00:00 +0000 (UTC)\r\n",
	"Received: from [10.1.2.3] (unknown [10.1.2.3])\r\n\tby mail.sender.example; "
	"Sun, 22 Nov 2026 12:59:59 +0000\r\n",
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=sender.example; s=sel1;\r\n"
	"\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n"
	"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSByaWdodCBzaGFwZQ==\r\n",
	"Authentication-Results: mx.example.net; spf=pass smtp.mailfrom=sender.example\r\n",
	"Return-Path: <alice@sender.example>\r\n",
	"From: Alice Example <alice@sender.example>\r\n",
	"To: Bob <user@example.net>\r\n",
	"Cc: team@example.net\r\n",
	"Subject: Minutes of the Thursday planning meeting and next steps\r\n",
	"Date: Sun, 22 Nov 2026 12:59:58 +0000\r\n",
	"Message-ID: <20261122125958.GA12345@mail.sender.example>\r\n",
	"MIME-Version: 1.0\r\n",
	"Content-Type: multipart/alternative; boundary=\"=_bound_1\"\r\n",
	"X-Mailer: Example Mail 4.2\r\n",
	"Reply-To: alice@sender.example\r\n",
	"List-Unsubscribe: <mailto:unsubscribe@sender.example>\r\n",
	"X-Priority: 3\r\n",
	"Thread-Topic: planning\r\n",
	"Accept-Language: en-US\r\n",
	"Content-Language: en-US\r\n",
};
#define NHEADERS (sizeof(headers) / sizeof(headers[0]))

static char body[8192];
static size_t body_len;

static void make_body(void)
{
	size_t w = 0;
#define B(...) (w += (size_t)snprintf(body + w, sizeof(body) - w, __VA_ARGS__))
	B("\r\n--=_bound_1\r\nContent-Type: text/plain; charset=utf-8\r\n"
	  "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	for (int i = 0; w < 3600; i++)
		B("Line %d of the notes: we agreed to review the budget, the schedule and the "
		  "open items.\r\n",
		  i);
	B("--=_bound_1--\r\n");
#undef B
	body_len = w;
}

/* The message as check subjects: unfolded headers and body lines. */
static char *subjects[256];
static size_t subject_len[256], nsubjects, nheader_subjects;

static void make_subjects(void)
{
	for (size_t i = 0; i < NHEADERS; i++) {
		const char *h = headers[i];
		char *s = malloc(strlen(h) + 1);
		size_t w = 0;
		for (const char *p = h; *p; p++)
			if (*p != '\r')
				s[w++] = *p;
		while (w && s[w - 1] == '\n')
			w--;
		subjects[nsubjects] = s;
		subject_len[nsubjects++] = w;
	}
	nheader_subjects = nsubjects;
	for (const char *p = body; p < body + body_len;) {
		const char *e = strstr(p, "\r\n");
		subjects[nsubjects] = (char *)p;
		subject_len[nsubjects++] = (size_t)(e - p);
		p = e + 2;
	}
}

typedef int (*match_fn)(const struct checks *, struct checks_scratch *, const char *, size_t,
			char *, size_t, struct checks_result *);

static double per_message(match_fn fn, struct checks *h, struct checks *b,
			  struct checks_scratch *s, double budget)
{
	static char out[CHECKS_RESULT_MAX + 1];
	struct checks_result res;
	size_t iters = 0, hits = 0;
	double t0 = now(), t;
	do {
		for (size_t i = 0; i < nsubjects; i++)
			hits += (size_t)(fn(i < nheader_subjects ? h : b, s, subjects[i],
					    subject_len[i], out, sizeof(out), &res) == 1);
		iters++;
	} while ((t = now() - t0) < budget);
	if (hits)
		fprintf(stderr, "warning: %zu hits (the benchmark expects none)\n", hits);
	return t / (double)iters * 1e9;
}

static int emit_null(void *ctx, const char *p, size_t n)
{
	(void)p;
	*(size_t *)ctx += n;
	return 0;
}

static double pipeline(struct checks *h, struct checks *b, struct checks_scratch *s,
		       double budget)
{
	static const struct smtp_checks_ops ops = { emit_null, NULL, NULL };
	size_t stored = 0;
	struct smtp_checks_config cfg = { .set = { h, h, h, b },
					  .body_checks_size_limit = 51200,
					  .line_length_limit = 2048,
					  .header_size_limit = 102400 };
	struct smtp_checks *m;
	if (smtp_checks_new(&cfg, s, &ops, &stored, &m) < 0)
		abort();
	size_t iters = 0;
	double t0 = now(), t;
	do {
		smtp_checks_begin(m);
		for (size_t i = 0; i < NHEADERS; i++)
			smtp_checks_header(m, headers[i], strlen(headers[i]));
		smtp_checks_headers_end(m);
		smtp_checks_body(m, body, body_len);
		struct smtp_checks_verdict v;
		smtp_checks_end(m, &v);
		if (v.outcome != SMTP_CHECKS_ACCEPT)
			fprintf(stderr, "warning: verdict %s\n", smtp_checks_outcome_name(v.outcome));
		iters++;
	} while ((t = now() - t0) < budget);
	smtp_checks_free(m);
	return t / (double)iters * 1e9;
}

int main(int argc, char **argv)
{
	size_t sizes[8] = { 100, 1000, 10000 }, nsizes = 3;
	if (argc > 1) {
		nsizes = 0;
		for (int i = 1; i < argc && nsizes < 8; i++)
			sizes[nsizes++] = strtoul(argv[i], NULL, 10);
	}
	make_body();
	make_subjects();
	size_t msg_bytes = body_len;
	for (size_t i = 0; i < NHEADERS; i++)
		msg_bytes += strlen(headers[i]);
	printf("message: %zu headers, %zu body lines, %zu bytes\n", NHEADERS,
	       nsubjects - nheader_subjects, msg_bytes);
	printf("%8s %12s %14s %14s %9s %14s %10s %s\n", "rules", "compile_ms", "hs_ns/msg",
	       "pcre2_ns/msg", "ratio", "pipeline_ns", "msgs/s", "(hs exact/confirm/none)");
	for (size_t k = 0; k < nsizes; k++) {
		size_t n = sizes[k];
		char *ht = gen_rules(n, false, 1), *bt = gen_rules(n, true, 2);
		struct checks_source hs = { "header", true, ht, strlen(ht) },
				     bs = { "body", true, bt, strlen(bt) };
		struct checks *h, *b;
		char err[512];
		double t0 = now();
		if (checks_compile(&hs, 1, &h, err, sizeof(err)) < 0 ||
		    checks_compile(&bs, 1, &b, err, sizeof(err)) < 0) {
			fprintf(stderr, "compile: %s\n", err);
			return 1;
		}
		double compile_ms = (now() - t0) * 1e3;
		struct checks_scratch *s = NULL;
		if (checks_scratch_alloc(h, &s) < 0 || checks_scratch_alloc(b, &s) < 0)
			return 1;
		double fast = per_message(checks_match, h, b, s, 1.0);
		double slow = per_message(checks_match_slow, h, b, s, n >= 10000 ? 3.0 : 1.0);
		double pipe = pipeline(h, b, s, 1.0);
		struct checks_stats sh, sb;
		checks_stats(h, &sh);
		checks_stats(b, &sb);
		fprintf(stderr, "  %zu rules: %zu+%zu hs compiles, database %.0f+%.0f KiB\n", n,
			sh.hs_compiles, sb.hs_compiles, sh.hs_bytes / 1024, sb.hs_bytes / 1024);
		printf("%8zu %12.1f %14.0f %14.0f %8.1fx %14.0f %10.0f (%zu/%zu/%zu)\n", n,
		       compile_ms, fast, slow, slow / fast, pipe, 1e9 / pipe,
		       sh.hs_exact + sb.hs_exact, sh.hs_confirm + sb.hs_confirm,
		       sh.no_hs + sb.no_hs);
		checks_scratch_free(s);
		checks_free(h);
		checks_free(b);
		free(ht);
		free(bt);
	}
	return 0;
}
