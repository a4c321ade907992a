/* libFuzzer harness for the metrics endpoint's request-head parser
 * (mgmt/metrics_http.c, mx_http_request_parse()), and the label escaping of the renderer.
 *
 * Input: what an HTTP client sent. Invariants (abort on violation):
 * - the result is the head's length (within the input and MX_METRICS_HTTP_HEAD_MAX, ending
 *   in LF LF or LF CR LF), 0 (need more: only below the bound), or one of the documented
 *   errors;
 * - a head's length does not change when more bytes follow it, and every shorter prefix of
 *   a head asks for more (or fails the same way a bad input does);
 * - the path lies inside the head, starts at the request target and has no '?', '#' or
 *   control byte;
 * - escaping the input as a label value never writes past its buffer, and undoing the
 *   escapes gives the input back. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "mgmt/metrics.h"
#include "mgmt/metrics_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse(const uint8_t *p, size_t n, struct mx_http_request *r, const char **base)
{
	char *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	int rc = mx_http_request_parse(copy, n, r);
	if (rc > 0) {
		FUZZ_CHECK((size_t)rc <= n && rc <= MX_METRICS_HTTP_HEAD_MAX);
		FUZZ_CHECK(copy[rc - 1] == '\n');
		FUZZ_CHECK(r->path >= copy && r->path + r->path_len <= copy + rc);
		FUZZ_CHECK((unsigned)r->method < MX_HTTP_METHOD_MAX);
		for (size_t i = 0; i < r->path_len; i++)
			FUZZ_CHECK(r->path[i] > ' ' && r->path[i] != '?' && r->path[i] != '#' &&
				   r->path[i] != 127);
		*base = r->path - (copy - (const char *)p); /* the same offset in p */
	}
	free(copy);
	return rc;
}

static void check_escape(const uint8_t *data, size_t size)
{
	/* a C string of the input (up to its first NUL) */
	size_t n = strnlen((const char *)data, size);
	char *s = malloc(n + 1);
	memcpy(s, data, n);
	s[n] = '\0';
	size_t need = mx_metrics_escape_label(s, NULL, 0);
	char *buf = malloc(need + 1);
	FUZZ_CHECK(mx_metrics_escape_label(s, buf, need + 1) == need);
	FUZZ_CHECK(buf[need] == '\0');
	/* unescape */
	size_t k = 0;
	for (size_t i = 0; i < need; i++) {
		char c = buf[i];
		if (c == '\\') {
			FUZZ_CHECK(i + 1 < need);
			c = buf[++i] == 'n' ? '\n' : buf[i];
		} else {
			FUZZ_CHECK(c != '"' && c != '\n');
		}
		FUZZ_CHECK(k < n && s[k] == c);
		k++;
	}
	FUZZ_CHECK(k == n);
	/* a short buffer: terminated, never overrun (ASan) */
	char small[7];
	mx_metrics_escape_label(s, small, sizeof(small));
	FUZZ_CHECK(strlen(small) < sizeof(small));
	free(buf);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mx_http_request r;
	const char *base = NULL;
	int rc = parse(data, size, &r, &base);
	FUZZ_CHECK(rc >= 0 || rc == -EINVAL || rc == -E2BIG || rc == -EPROTONOSUPPORT);
	if (rc == 0)
		FUZZ_CHECK(size < MX_METRICS_HTTP_HEAD_MAX);
	if (rc > 0) {
		/* more bytes after the head change nothing */
		uint8_t *more = malloc(size + 7);
		memcpy(more, data, size);
		memcpy(more + size, "GET / ", 6);
		more[size + 6] = '\n';
		struct mx_http_request r2;
		const char *b2;
		FUZZ_CHECK(parse(more, size + 7, &r2, &b2) == rc);
		FUZZ_CHECK(r2.method == r.method && r2.path_len == r.path_len &&
			   r2.minor == r.minor);
		free(more);
	}
	/* every prefix needs more, or fails as the whole does */
	if (size <= 512) {
		for (size_t cut = 0; cut < size; cut++) {
			struct mx_http_request rp;
			const char *bp;
			int rcp = parse(data, cut, &rp, &bp);
			if (rc > 0 && (size_t)cut < (size_t)rc)
				FUZZ_CHECK(rcp == 0);
			if (rcp < 0)
				FUZZ_CHECK(rc == rcp);
		}
	}
	check_escape(data, size);
	return 0;
}
