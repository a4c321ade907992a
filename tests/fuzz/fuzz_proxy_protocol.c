/* libFuzzer harness for the PROXY protocol parser (smtp/smtp_proxy_protocol.c).
 *
 * Input: byte 0 bit 0 sets SMTP_PROXY_ACCEPT_UNKNOWN; the rest is what the proxy sent.
 * Invariants (abort on violation):
 * - the result is a header length within the bounds (v1: 107 and ends in CRLF; any:
 *   536), 0 (need more; only while the input is shorter than the bounds), or one of the
 *   documented errors with its explanation;
 * - a header's length does not change when more bytes follow it, and every shorter prefix
 *   of a header asks for more;
 * - once an input fails, every longer input with the same start fails;
 * - spans point inside the header; addresses are set exactly when they are to be used. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp/smtp_proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ssize_t parse(const uint8_t *p, size_t n, unsigned flags, struct smtp_proxy_header *h,
		     char *err, size_t errlen)
{
	uint8_t *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	ssize_t rc = smtp_proxy_parse(copy, n, flags, h, err, errlen);
	if (rc > 0) {
		const struct mx_span *sp[] = { &h->authority, &h->unique_id, &h->ssl.version,
					       &h->ssl.cn, &h->ssl.cipher, &h->ssl.sig_alg,
					       &h->ssl.key_alg };
		for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++) {
			if (sp[i]->len == 0)
				continue;
			const uint8_t *s = (const uint8_t *)sp[i]->ptr;
			FUZZ_CHECK(s >= copy && s + sp[i]->len <= copy + rc);
			volatile uint8_t sink = 0;
			for (size_t k = 0; k < sp[i]->len; k++)
				sink ^= s[k];
			(void)sink;
		}
	}
	free(copy);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0] & 1 ? SMTP_PROXY_ACCEPT_UNKNOWN : 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	struct smtp_proxy_header h;
	char err[128];

	ssize_t rc = parse(p, n, flags, &h, err, sizeof(err));
	if (rc == 0) {
		FUZZ_CHECK(n < SMTP_PROXY_HEADER_MAX);
		return 0;
	}
	if (rc < 0) {
		FUZZ_CHECK(rc == -EINVAL || rc == -EMSGSIZE || rc == -EPROTONOSUPPORT);
		FUZZ_CHECK(err[0] != '\0');
		/* more bytes do not repair it */
		uint8_t *more = malloc(n + 16);
		memcpy(more, p, n);
		memset(more + n, '\n', 16);
		FUZZ_CHECK(parse(more, n + 16, flags, &h, NULL, 0) < 0);
		free(more);
		return 0;
	}

	size_t len = (size_t)rc;
	FUZZ_CHECK(len <= n && len <= SMTP_PROXY_HEADER_MAX);
	FUZZ_CHECK(h.version == 1 || h.version == 2);
	FUZZ_CHECK(h.command < SMTP_PROXY_CMD_MAX && h.family < SMTP_PROXY_FAM_MAX &&
		   h.transport < SMTP_PROXY_TRANS_MAX);
	if (h.version == 1) {
		FUZZ_CHECK(len <= SMTP_PROXY_V1_MAX && p[len - 2] == '\r' && p[len - 1] == '\n');
		FUZZ_CHECK(!memchr(p, '\n', len - 1));
	} else {
		FUZZ_CHECK(len >= SMTP_PROXY_V2_FIXED);
		FUZZ_CHECK(len == SMTP_PROXY_V2_FIXED + ((size_t)p[14] << 8 | p[15]));
	}
	if (!h.use_connection) {
		FUZZ_CHECK(h.command == SMTP_PROXY_CMD_PROXY);
		FUZZ_CHECK(h.transport == SMTP_PROXY_TRANS_STREAM);
		int fam = h.family == SMTP_PROXY_FAM_INET ? AF_INET : AF_INET6;
		FUZZ_CHECK(h.family == SMTP_PROXY_FAM_INET || h.family == SMTP_PROXY_FAM_INET6);
		FUZZ_CHECK(h.src.family == fam && h.dst.family == fam);
	} else {
		FUZZ_CHECK(h.command == SMTP_PROXY_CMD_LOCAL || (flags & SMTP_PROXY_ACCEPT_UNKNOWN));
	}
	FUZZ_CHECK(!h.has_unique_id || h.unique_id.len <= SMTP_PROXY_UNIQUE_ID_MAX);
	FUZZ_CHECK(!h.has_authority || (h.authority.len > 0 && h.authority.len <= 255));

	/* what follows the header does not change it */
	uint8_t *more = malloc(len + 8);
	memcpy(more, p, len);
	memcpy(more + len, "\r\n\r\nQUIT", 8);
	struct smtp_proxy_header h2;
	FUZZ_CHECK(parse(more, len + 8, flags, &h2, NULL, 0) == rc);
	FUZZ_CHECK(h2.src_port == h.src_port && h2.dst_port == h.dst_port &&
		   memcmp(&h2.src, &h.src, sizeof(h.src)) == 0 &&
		   h2.use_connection == h.use_connection);
	free(more);

	/* every shorter prefix asks for more */
	for (size_t k = 0; k < len; k++)
		FUZZ_CHECK(parse(p, k, flags, &h2, NULL, 0) == 0);
	return 0;
}
