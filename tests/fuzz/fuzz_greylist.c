/* libFuzzer harness for greylisting's parsers (tables/greylist.h).
 *
 * The first byte picks what the rest is (each from a heap copy of exactly its length):
 *   0: an allowlist file of clients, then matched against names and addresses taken from
 *      the input; 1: of recipients, then matched against its own lines;
 *   2: a request to the greylist service (greylist_request_decode()); what decodes must
 *      encode again to the same bytes;
 *   3: a record ("FIRST,LAST"), formatted again when it parses;
 *   4: a sender (NUL-terminated) through postgrey's substitutions and into a triplet key,
 *      and a decision and its action over the parsed numbers.
 * Nothing may crash or read out of bounds; outputs stay within their bounds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/greylist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_allowlist(enum greylist_list list, const char *in, size_t n)
{
	struct greylist_allowlist *a = greylist_allowlist_new();
	if (!a)
		return;
	char err[300];
	int rc = greylist_allowlist_add(a, list, in, n, NULL, NULL, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	/* match every line of the input, and a few fixed subjects */
	char subject[256];
	size_t pos = 0;
	while (pos < n) {
		size_t l = 0;
		while (pos + l < n && in[pos + l] != '\n' && l < sizeof(subject) - 1)
			l++;
		memcpy(subject, in + pos, l);
		subject[l] = '\0';
		pos += l + 1;
		struct mx_inet_addr ad;
		bool isaddr = mx_inet_parse(subject, &ad);
		if (list == GREYLIST_LIST_CLIENTS)
			(void)greylist_allowlist_client(a, subject, isaddr ? &ad : NULL);
		else
			(void)greylist_allowlist_recipient(a, subject);
	}
	struct mx_inet_addr v4, v6;
	mx_inet_parse("192.0.2.1", &v4);
	mx_inet_parse("2001:db8::1", &v6);
	(void)greylist_allowlist_client(a, "unknown", &v4);
	(void)greylist_allowlist_client(a, "mail.example.org", &v6);
	(void)greylist_allowlist_recipient(a, "postmaster@example.org");
	greylist_allowlist_free(a);
}

static void fuzz_request(const char *in, size_t n)
{
	char *buf = malloc(n + 1);
	if (!buf)
		return;
	struct greylist_request r;
	if (greylist_request_decode(in, n, buf, n + 1, &r) == 0) {
		char out[GREYLIST_REQUEST_MAX + 64];
		size_t need = 0;
		long len = greylist_request_encode(&r, out, sizeof(out), &need);
		FUZZ_CHECK(len > 0);
		/* numbers may be spelt with leading zeros: compare what decodes again */
		struct greylist_request r2;
		char *buf2 = malloc((size_t)len + 1);
		if (buf2 && len > 0) {
			FUZZ_CHECK(greylist_request_decode(out, (size_t)len, buf2, (size_t)len + 1,
							   &r2) == 0);
			FUZZ_CHECK(strcmp(r.key, r2.key) == 0 && strcmp(r.text, r2.text) == 0 &&
				   r.params.delay_s == r2.params.delay_s);
		}
		free(buf2);
	}
	free(buf);
}

static void fuzz_record(const char *in, size_t n)
{
	struct greylist_record r;
	if (greylist_record_parse(in, n, &r) == 0) {
		char out[GREYLIST_RECORD_MAX];
		size_t len = greylist_record_format(&r, out, sizeof(out));
		FUZZ_CHECK(len > 0 && len < sizeof(out));
		struct greylist_record r2;
		FUZZ_CHECK(greylist_record_parse(out, len, &r2) == 0 && r2.a == r.a && r2.b == r.b);
	}
}

static void fuzz_sender(const char *in, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return;
	memcpy(s, in, n);
	s[n] = '\0';
	char norm[600];
	long len = greylist_sender_normalize(s, norm, sizeof(norm));
	FUZZ_CHECK(len == -ENOSPC || (len >= 0 && (size_t)len == strlen(norm) &&
				      (size_t)len <= strlen(s)));
	if (len >= 0) {
		char key[GREYLIST_KEY_MAX + 1];
		size_t kl = greylist_triplet_key("192.0.2.0", norm, s, key, sizeof(key));
		FUZZ_CHECK(kl <= GREYLIST_KEY_MAX && kl == strlen(key));
	}
	/* a decision over numbers from the input */
	struct greylist_params p;
	greylist_params_init(&p);
	int64_t v[4] = { 0 };
	memcpy(v, in, n < sizeof(v) ? n : sizeof(v));
	p.delay_s = (uint32_t)v[3];
	struct greylist_record t = { v[0], v[1] }, c = { v[1] & 0xff, v[2] };
	struct greylist_outcome o;
	greylist_decide(&p, v[2], &t, &c, true, &o);
	FUZZ_CHECK(o.verdict < GREYLIST_VERDICT_MAX);
	char act[GREYLIST_ACTION_MAX];
	long al = greylist_action_format(&o, o.verdict, "DEFER_IF_PERMIT", s, s, s, "1", "D", "h",
					 act, sizeof(act));
	FUZZ_CHECK(al == -ENOSPC || (al > 0 && (size_t)al == strlen(act)));
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t n = size - 1;
	char *in = malloc(n ? n : 1);
	if (!in)
		return 0;
	memcpy(in, data + 1, n);
	switch (data[0] % 5) {
	case 0:
		fuzz_allowlist(GREYLIST_LIST_CLIENTS, in, n);
		break;
	case 1:
		fuzz_allowlist(GREYLIST_LIST_RECIPIENTS, in, n);
		break;
	case 2:
		fuzz_request(in, n);
		break;
	case 3:
		fuzz_record(in, n);
		break;
	default:
		fuzz_sender(in, n);
		break;
	}
	free(in);
	return 0;
}
