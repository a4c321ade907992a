/* libFuzzer harness for the DNS message codec (tables/dns_message.h).
 *
 * The first byte picks the query type (low 3 bits), the TCP chunk size (next 4 bits) and
 * whether the rest is also tried as a presentation name (top bit). The rest is parsed as a
 * response to a fixed query for "mail.example.com" (ID 0xbeef, EDNS 1232, a fixed 0x20
 * pattern: "mAiL.ExAmplE.COM" on the wire, as in the seed corpus), then streamed through the
 * TCP reader in chunks, each complete message parsed too. Nothing may crash, hang or read
 * out of bounds, and what comes back must be sane: results from the documented set, counts
 * and spans within their bounds, names well-formed. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/dns_message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dns_answer *fuzz_answer;
static struct dns_tcp_reader *fuzz_reader;

static void fuzz_check_answer(const struct dns_query *q, int rc)
{
	const struct dns_answer *a = fuzz_answer;
	FUZZ_CHECK(rc == 0 || rc == -ENOMSG || rc == -EBADMSG || rc == -ELOOP);
	if (rc < 0)
		return;
	FUZZ_CHECK((unsigned)a->status < DNS_STATUS_MAX);
	FUZZ_CHECK(a->count <= DNS_RECORDS_MAX);
	FUZZ_CHECK(a->arena_used <= DNS_ARENA_MAX);
	FUZZ_CHECK(a->nstrings <= DNS_TXT_STRINGS_MAX);
	FUZZ_CHECK(a->cname_count <= DNS_CNAME_DEPTH_MAX);
	FUZZ_CHECK(strlen(a->name) <= DNS_NAME_TEXT_MAX);
	FUZZ_CHECK(a->ttl_valid || a->ttl == 0);
	FUZZ_CHECK((a->status == DNS_STATUS_OK) == (a->count + a->dropped > 0));
	if (a->status != DNS_STATUS_OK)
		FUZZ_CHECK(a->count == 0);
	for (unsigned i = 0; i < a->count; i++) {
		const struct dns_record *r = &a->records[i];
		FUZZ_CHECK(r->type == q->type);
		FUZZ_CHECK(r->ttl <= 0x7fffffffu);
		FUZZ_CHECK(r->ttl >= a->ttl);
		char text[64];
		int trc = dns_record_addr_text(r, text, sizeof(text));
		FUZZ_CHECK((trc == 0) == (r->type == DNS_TYPE_A || r->type == DNS_TYPE_AAAA));
		if (r->type == DNS_TYPE_TXT) {
			FUZZ_CHECK(r->txt.len <= DNS_TXT_RECORD_MAX);
			FUZZ_CHECK((size_t)r->txt.off + r->txt.len < a->arena_used);
			FUZZ_CHECK(a->arena[r->txt.off + r->txt.len] == '\0');
			size_t total = 0;
			for (unsigned s = 0; s < r->txt_count; s++) {
				size_t len;
				const char *p = dns_answer_txt_string(a, r, s, &len);
				FUZZ_CHECK(p >= dns_answer_text(a, r->txt));
				FUZZ_CHECK(p + len <= dns_answer_text(a, r->txt) + r->txt.len);
				total += len;
			}
			FUZZ_CHECK(total == r->txt.len);
		} else if (r->type != DNS_TYPE_A && r->type != DNS_TYPE_AAAA) {
			const char *n = dns_answer_text(a, r->name);
			FUZZ_CHECK(r->name.len <= DNS_NAME_TEXT_MAX);
			FUZZ_CHECK(strlen(n) == r->name.len); /* escaped: no NUL inside */
			/* printable (escaped); in the answer's case, so capitals may come */
			for (size_t k = 0; k < r->name.len; k++)
				FUZZ_CHECK(n[k] > ' ' && n[k] <= '~');
			FUZZ_CHECK(r->type != DNS_TYPE_MX || r->name.len > 0 || a->null_mx);
		}
	}
}

static void fuzz_name(const uint8_t *data, size_t size)
{
	char out[DNS_HOSTNAME_MAX + 1], again[DNS_HOSTNAME_MAX + 1];
	size_t len, len2;
	if (size > 600)
		return;
	int rc = dns_name_normalize((const char *)data, size, out, sizeof(out), &len);
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENAMETOOLONG);
	if (rc < 0)
		return;
	FUZZ_CHECK(len <= DNS_HOSTNAME_MAX && strlen(out) == len);
	/* normalising is idempotent (the root "" as ".") */
	rc = dns_name_normalize(len ? out : ".", len ? len : 1, again, sizeof(again), &len2);
	FUZZ_CHECK(rc == 0 && len2 == len && memcmp(out, again, len) == 0);
	struct dns_query q;
	FUZZ_CHECK(dns_query_init(&q, len ? out : ".", DNS_TYPE_TXT, 1, 512, data, size) == 0);
	FUZZ_CHECK(q.qname_len == (len ? len + 2 : 1));
	FUZZ_CHECK(strcmp(q.name, out) == 0);
	char joined[DNS_HOSTNAME_MAX + 1];
	rc = dns_name_rhsbl(out, "rhsbl.example", joined, sizeof(joined));
	FUZZ_CHECK(rc == 0 || rc == -EDOM || rc == -EINVAL || rc == -ENAMETOOLONG);
	if (rc == 0)
		FUZZ_CHECK(dns_name_valid(joined, strlen(joined)));
	struct mx_inet_addr addr = { .family = AF_INET6 };
	memcpy(addr.bytes, data, size < 16 ? size : 16);
	rc = dns_name_dnsbl(&addr, len ? out : "x", joined, sizeof(joined));
	FUZZ_CHECK(rc == 0 || rc == -ENAMETOOLONG);
	if (rc == 0)
		FUZZ_CHECK(dns_name_valid(joined, strlen(joined)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t bits[] = { 0x5a, 0x3c, 0x99 };
	if (size < 1 || size > DNS_MESSAGE_MAX + 3)
		return 0;
	if (!fuzz_answer) {
		fuzz_answer = malloc(sizeof(*fuzz_answer));
		fuzz_reader = malloc(sizeof(*fuzz_reader));
		FUZZ_CHECK(fuzz_answer && fuzz_reader);
	}
	enum dns_type type = (enum dns_type)(data[0] % DNS_TYPE_MAX);
	size_t chunk = 1 + ((data[0] >> 3) & 0xf) * 7;
	struct dns_query q;
	FUZZ_CHECK(dns_query_init(&q, "mail.example.com", type, 0xbeef, 1232, bits,
				  sizeof(bits)) == 0);
	const uint8_t *pkt = data + 1;
	size_t len = size - 1;

	/* as a datagram */
	char err[200];
	int rc = dns_response_parse(&q, pkt, len, fuzz_answer, err, sizeof(err));
	fuzz_check_answer(&q, rc);

	/* as a TCP stream, in chunks */
	dns_tcp_reader_init(fuzz_reader);
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk, used;
		rc = dns_tcp_reader_feed(fuzz_reader, pkt + off, n, &used);
		FUZZ_CHECK(used <= n);
		off += used;
		if (rc < 0) {
			FUZZ_CHECK(rc == -EBADMSG && fuzz_reader->state == DNS_TCP_FAILED);
			break;
		}
		if (rc == 0) {
			FUZZ_CHECK(used == n);
			continue;
		}
		size_t mlen;
		const uint8_t *m = dns_tcp_reader_message(fuzz_reader, &mlen);
		FUZZ_CHECK(mlen >= DNS_HEADER_LEN && mlen <= DNS_MESSAGE_MAX);
		/* the message is the stream's bytes after the length field */
		FUZZ_CHECK(off >= mlen && memcmp(m, pkt + off - mlen, mlen) == 0);
		rc = dns_response_parse(&q, m, mlen, fuzz_answer, err, sizeof(err));
		fuzz_check_answer(&q, rc);
		dns_tcp_reader_next(fuzz_reader);
	}

	if (data[0] & 0x80)
		fuzz_name(pkt, len);
	return 0;
}
