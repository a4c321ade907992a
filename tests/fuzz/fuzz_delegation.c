/* libFuzzer harness for the policy delegation codec (smtp/smtp_delegation.h).
 *
 * The first byte picks the reader flags (bit 0: SMTP_DELEGATION_UTF8) and a chunk size for a
 * second, chunked feed (bits 1-7). The rest is a policy server's reply: fed whole and in
 * chunks, the two must agree (result, bytes used, action); a complete reply's action must
 * be bounded and free of NUL, CR and LF; the action, and the raw input too, are classified
 * and the classification checked. The input is also cut at NULs into request values, which
 * must either be refused (LF, CR, too long) or encode into well-formed lines. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_delegation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct smtp_delegation_reader fuzz_r1, fuzz_r2;

static void fuzz_classify(struct mx_span s)
{
	struct smtp_delegation_action a;
	smtp_delegation_action_classify(s, &a);
	FUZZ_CHECK((unsigned)a.kind < SMTP_DELEGATION_ACTION_KIND_MAX);
	FUZZ_CHECK(a.word.ptr == s.ptr && a.word.len <= s.len);
	FUZZ_CHECK(a.args.ptr >= s.ptr && a.args.ptr + a.args.len == s.ptr + s.len);
	FUZZ_CHECK(a.default_text != NULL);
	switch (a.kind) {
	case SMTP_DELEGATION_ACTION_CODE:
		FUZZ_CHECK(a.code >= 400 && a.code <= 599);
		FUZZ_CHECK(a.dsn[0] == s.ptr[0]);
		/* fall through */
	case SMTP_DELEGATION_ACTION_REJECT:
	case SMTP_DELEGATION_ACTION_DEFER:
	case SMTP_DELEGATION_ACTION_DEFER_IF_REJECT:
	case SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT:
		FUZZ_CHECK(strlen(a.dsn) >= 5 && strlen(a.dsn) <= 9 && a.dsn[1] == '.');
		FUZZ_CHECK(a.text.ptr >= a.args.ptr &&
			   a.text.ptr + a.text.len == a.args.ptr + a.args.len);
		FUZZ_CHECK(a.default_text[0] != '\0');
		break;
	default:
		FUZZ_CHECK(a.code == 0 && a.dsn[0] == '\0');
		break;
	}
	if (a.kind == SMTP_DELEGATION_ACTION_OK && (a.numeric || a.empty))
		FUZZ_CHECK(!(a.numeric && a.empty));
}

static void fuzz_request(const char *text, size_t len)
{
	/* up to five NUL-separated values */
	char *copy = malloc(len + 1);
	const char *vals[5] = { 0 };
	memcpy(copy, text, len);
	copy[len] = '\0';
	size_t at = 0;
	for (int i = 0; i < 5 && at <= len; i++) {
		vals[i] = copy + at;
		at += strlen(copy + at) + 1;
	}
	struct smtp_delegation_request r;
	smtp_delegation_request_init(&r);
	r.protocol_state = (enum smtp_delegation_state)(len % SMTP_DELEGATION_STATE_MAX);
	r.helo_name = vals[0];
	r.sender = vals[1];
	r.recipient = vals[2];
	r.client_name = vals[3];
	r.compatibility_level = vals[4];
	bool bad = false;
	for (int i = 0; i < 5; i++)
		if (vals[i] && (strpbrk(vals[i], "\r\n") || strlen(vals[i]) > SMTP_DELEGATION_VALUE_MAX))
			bad = true;
	size_t need;
	int rc = smtp_delegation_request_encode(&r, NULL, 0, &need);
	FUZZ_CHECK(bad ? rc == -EINVAL || rc == -EMSGSIZE : rc == -ENOSPC);
	if (!bad) {
		char *out = malloc(need);
		size_t n;
		FUZZ_CHECK(smtp_delegation_request_encode(&r, out, need, &n) == 0 && n == need);
		/* lines "name=value", an empty line at the very end, nothing else */
		unsigned lines = 0;
		size_t start = 0;
		for (size_t i = 0; i < n; i++) {
			FUZZ_CHECK(out[i] != '\r' && out[i] != '\0');
			if (out[i] != '\n')
				continue;
			if (i == start) {
				FUZZ_CHECK(i == n - 1);
				break;
			}
			FUZZ_CHECK(memchr(out + start, '=', i - start) != NULL);
			lines++;
			start = i + 1;
		}
		FUZZ_CHECK(lines == 29 + (vals[4] ? 1 : 0));
		FUZZ_CHECK(n >= 2 && out[n - 1] == '\n' && out[n - 2] == '\n');
		free(out);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 18)
		return 0;
	unsigned flags = data[0] & 1 ? SMTP_DELEGATION_UTF8 : 0;
	size_t chunk = 1 + (data[0] >> 1);
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	size_t used1, used2 = 0;
	smtp_delegation_reader_init(&fuzz_r1, flags);
	int rc1 = smtp_delegation_reader_feed(&fuzz_r1, in, len, &used1);
	FUZZ_CHECK(rc1 == 0 || rc1 == 1 || rc1 == -EBADMSG || rc1 == -EMSGSIZE || rc1 == -ENOMSG);
	FUZZ_CHECK(used1 <= len && (rc1 != 0 || used1 == len));

	smtp_delegation_reader_init(&fuzz_r2, flags);
	int rc2 = 0;
	for (size_t off = 0; off < len && rc2 == 0;) {
		size_t n = len - off < chunk ? len - off : chunk, u;
		rc2 = smtp_delegation_reader_feed(&fuzz_r2, in + off, n, &u);
		FUZZ_CHECK(rc2 != 0 || u == n);
		off += u;
		used2 += u;
	}
	/* any split gives the same result */
	FUZZ_CHECK(rc1 == rc2);
	if (rc1 == 1) {
		FUZZ_CHECK(used1 == used2);
		FUZZ_CHECK(fuzz_r1.trailing == len - used1);
		struct mx_span a1 = smtp_delegation_reader_action(&fuzz_r1);
		struct mx_span a2 = smtp_delegation_reader_action(&fuzz_r2);
		FUZZ_CHECK(mx_span_eq(a1, a2));
		FUZZ_CHECK(a1.len <= SMTP_DELEGATION_ACTION_MAX);
		FUZZ_CHECK(!memchr(a1.ptr, '\n', a1.len) && !memchr(a1.ptr, '\r', a1.len) &&
			   !memchr(a1.ptr, '\0', a1.len));
		FUZZ_CHECK(fuzz_r1.lines <= SMTP_DELEGATION_LINES_MAX);
		fuzz_classify(a1);
	}
	fuzz_classify(mx_span_make(in, len));
	if (len <= 3 * SMTP_DELEGATION_VALUE_MAX)
		fuzz_request(in, len);
	return 0;
}
