/* The rule sets of the checks benchmarks (bench_checks.c, bench_checks_cache.c): n
 * header_checks or body_checks rules in the style of real spam lists (anchored header
 * names, word lists, alternations, domains, case-insensitive), with an if/endif block and
 * rules Hyperscan can only prefilter (backreferences, lookbehind). The same n and seed give
 * the same text. */
#ifndef MXGATE_PERF_BENCH_CHECKS_RULES_H
#define MXGATE_PERF_BENCH_CHECKS_RULES_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const words[] = { "viagra", "cialis", "casino", "lottery", "winner",
				     "bitcoin", "invoice", "urgent", "refund", "pharmacy",
				     "replica", "loan", "crypto", "prize", "bonus", "free" };

static char *gen_rules(size_t n, bool body, unsigned seed)
{
	size_t cap = n * 120 + 256, w = 0;
	char *t = malloc(cap);
	srand(seed);
#define PUT(...) (w += (size_t)snprintf(t + w, cap - w, __VA_ARGS__))
	for (size_t i = 0; i < n; i++) {
		const char *a = words[(size_t)rand() % 16], *b = words[(size_t)rand() % 16];
		unsigned k = (unsigned)rand() % 100;
		if (i == n / 2 && n >= 10) {
			PUT("if /^X-Spam-/\n/^X-Spam-Level: \\*{%zu}/ REJECT spam level\nendif\n",
			    5 + i % 5);
			continue;
		}
		if (body) {
			if (k < 40)
				PUT("/\\b%s%zu\\b/ REJECT body %zu\n", a, i, i);
			else if (k < 70)
				PUT("/https?:\\/\\/[a-z0-9.-]*%s-%zu\\.example/ REJECT url\n", b, i);
			else if (k < 95)
				PUT("/^(%s|%s)[ .]+%zu/ DISCARD\n", a, b, i);
			else if (k < 98)
				PUT("/(\\w+) \\1 %s%zu/ REJECT repeated\n", a, i);
			else
				PUT("/(?<!no )%s%zu/ WARN lookbehind\n", b, i);
			continue;
		}
		if (k < 35)
			PUT("/^Subject:.*\\b%s[ _-]?%zu\\b/ REJECT subject %zu\n", a, i, i);
		else if (k < 60)
			PUT("/^From:.*@([a-z0-9-]+\\.)*%s%zu\\.(com|net|biz)\\b/ REJECT from\n", b, i);
		else if (k < 75)
			PUT("/^Received: from [^ ]*%s%zu/ REJECT relay\n", a, i);
		else if (k < 85)
			PUT("/^X-Mailer: (%s|%s) %zu/ DISCARD\n", a, b, i);
		else if (k < 92)
			PUT("/^Message-ID: <[0-9a-f]{%zu,}@%s/ HOLD\n", 16 + i % 8, a);
		else if (k < 96)
			PUT("/^Content-Type: .*name=\"?[^\"]*\\.%s%zu\"?/ REJECT attachment\n", a, i);
		else if (k < 98)
			PUT("/^Subject: (\\w+) \\1 %s%zu/ REJECT repeated word\n", a, i);
		else
			PUT("/^To: (?<!no)%s%zu/ WARN lookbehind\n", b, i);
	}
#undef PUT
	return t;
}

#endif
