/* libFuzzer harness for the Postfix table source parsers: any bytes as a hash:, cidr:,
 * regexp: or pcre: file, and as inline:{...} / static: text.
 *
 * The first byte picks the parser (so one corpus covers all); the rest is the file. Parsers
 * must never crash, leak, hang or read out of bounds, and must be consistent:
 * - logical lines never exceed TABLE_LINE_MAX, never hold a NUL, never end in a blank;
 * - a cidr table's compiled intervals are sorted and disjoint, and answer every probe address
 *   (interval edges, their neighbours, rule networks) exactly as the first-match scan does;
 * - a regexp/pcre table that compiles can be looked up with any line of the input as a key,
 *   with a result or "not found" or a bounded-match error, never anything else. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/table_cidr.h"
#include "tables/table_parse.h"
#include "tables/table_regexp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_lines(const char *text, size_t len)
{
	struct table_text tt;
	char *line, err[200], *k, *v;
	size_t n;
	unsigned lineno, last = 0;
	int rc;
	table_text_init(&tt, text, len);
	while ((rc = table_text_next(&tt, &line, &n, &lineno, err, sizeof(err))) > 0) {
		FUZZ_CHECK(n <= TABLE_LINE_MAX && strlen(line) == n && n > 0);
		FUZZ_CHECK(line[n - 1] != ' ' && line[n - 1] != '\t' && line[n - 1] != '\r');
		FUZZ_CHECK(lineno > last);
		last = lineno;
		if (table_kv_split(line, &k, &v, err, sizeof(err)) == 0)
			FUZZ_CHECK(*k && *v && !strchr(k, ' ') && !strchr(k, '\t'));
	}
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	table_text_free(&tt);
}

static void fuzz_probe(const struct table_cidr *c, const struct table_cidr_segment *s, size_t n,
		       const struct mx_inet_addr *a)
{
	/* Binary search as the LMDB range lookup does. */
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = s[mid].family != a->family ? (s[mid].family < a->family ? -1 : 1)
						     : memcmp(s[mid].hi, a->bytes, 16);
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	const char *seg = lo < n && s[lo].family == a->family && memcmp(s[lo].lo, a->bytes, 16) <= 0
				  ? s[lo].value
				  : NULL;
	FUZZ_CHECK(seg == table_cidr_scan(c, a));
}

static void fuzz_step(struct mx_inet_addr *a, int delta)
{
	int n = a->family == AF_INET ? 4 : 16;
	for (int i = n - 1; i >= 0; i--) {
		int v = a->bytes[i] + delta;
		a->bytes[i] = (uint8_t)v;
		if (v >= 0 && v <= 255)
			break;
	}
}

static void fuzz_cidr(const char *text, size_t len)
{
	struct table_cidr *c;
	char err[256];
	if (table_cidr_parse(text, len, &c, err, sizeof(err)) < 0)
		return;
	struct table_cidr_segment *s;
	size_t n;
	FUZZ_CHECK(table_cidr_compile(c, &s, &n) == 0);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(memcmp(s[i].lo, s[i].hi, 16) <= 0);
		if (i > 0 && s[i - 1].family == s[i].family)
			FUZZ_CHECK(memcmp(s[i - 1].hi, s[i].lo, 16) < 0);
		for (int edge = 0; edge < 2; edge++) {
			struct mx_inet_addr a = { .family = s[i].family };
			memcpy(a.bytes, edge ? s[i].hi : s[i].lo, 16);
			fuzz_probe(c, s, n, &a);
			fuzz_step(&a, edge ? 1 : -1);
			fuzz_probe(c, s, n, &a);
		}
	}
	static const char *const fixed[] = { "0.0.0.0", "255.255.255.255", "::", "10.1.2.3",
					     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" };
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		struct mx_inet_addr a;
		FUZZ_CHECK(table_cidr_key(fixed[i], &a));
		fuzz_probe(c, s, n, &a);
	}
	free(s);
	table_cidr_free(c);
}

static void fuzz_regexp(const char *text, size_t len, bool pcre)
{
	struct table_regexp *re;
	char err[256], out[TABLE_VALUE_MAX + 1];
	if (table_regexp_compile(text, len, pcre, &re, err, sizeof(err)) < 0)
		return;
	/* Every physical line of the input is a key. */
	const char *p = text, *end = text + len;
	int keys = 0;
	while (p < end && keys < 64) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char key[512];
		if (n >= sizeof(key))
			n = sizeof(key) - 1;
		memcpy(key, p, n);
		key[n] = '\0';
		int rc = table_regexp_lookup(re, key, out, sizeof(out));
		FUZZ_CHECK(rc == 0 || rc == 1 || rc == -ERANGE || rc == -E2BIG);
		if (rc == 1)
			FUZZ_CHECK(strlen(out) < sizeof(out));
		p = nl ? nl + 1 : end;
		keys++;
	}
	table_regexp_free(re);
}

static int fuzz_inline_add(void *ctx, const char *key, const char *value)
{
	(void)ctx;
	FUZZ_CHECK(*key && strlen(key) <= TABLE_KEY_MAX && strlen(value) <= TABLE_VALUE_MAX);
	for (const char *k = key; *k; k++)
		FUZZ_CHECK(!(*k >= 'A' && *k <= 'Z'));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 16)
		return 0;
	char *text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	size_t len = size - 1;
	fuzz_lines(text, len);
	switch (data[0] % 5) {
	case 0:
		break; /* hash: the logical lines and key/value split above */
	case 1:
		fuzz_cidr(text, len);
		break;
	case 2:
		fuzz_regexp(text, len, false);
		break;
	case 3:
		fuzz_regexp(text, len, true);
		break;
	case 4: {
		char *z = malloc(len + 1), err[200], v[TABLE_VALUE_MAX + 1];
		if (z) {
			memcpy(z, text, len);
			z[len] = '\0';
			table_inline_parse(z, fuzz_inline_add, NULL, err, sizeof(err));
			if (table_static_value(z, v, sizeof(v), err, sizeof(err)) == 0)
				FUZZ_CHECK(strlen(v) <= TABLE_VALUE_MAX);
			free(z);
		}
		break;
	}
	}
	free(text);
	return 0;
}
