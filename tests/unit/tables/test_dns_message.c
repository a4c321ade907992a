/* The DNS message codec (tables/dns_message.h): queries, hostile responses built by hand
 * with the small packet builder below, the TCP framing and reader, and the name helpers.
 * Every response that parses is also parsed from every prefix of itself, each in a heap
 * buffer of exactly that length (ASan catches any over-read), and through the TCP reader
 * whole, byte by byte and split at every offset. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tables/dns_message.h"
#include "tables/dns_result.h"
#include "testing.h"

/* ---- a packet builder ---- */

struct pkt {
	uint8_t b[70000];
	size_t n;
};

static void p_u8(struct pkt *p, unsigned v)
{
	p->b[p->n++] = (uint8_t)v;
}

static void p_u16(struct pkt *p, unsigned v)
{
	p_u8(p, v >> 8);
	p_u8(p, v & 0xff);
}

static void p_u32(struct pkt *p, uint32_t v)
{
	p_u16(p, v >> 16);
	p_u16(p, v & 0xffff);
}

static void p_bytes(struct pkt *p, const void *d, size_t n)
{
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

/* An uncompressed name from dotted text ("" is the root), case kept. */
static void p_name(struct pkt *p, const char *dotted)
{
	const char *s = dotted;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		p_u8(p, (unsigned)l);
		p_bytes(p, s, l);
		s += l;
		if (*s == '.')
			s++;
	}
	p_u8(p, 0);
}

/* Labels from dotted text, then a compression pointer to off. */
static void p_name_ptr(struct pkt *p, const char *labels, unsigned off)
{
	const char *s = labels;
	while (*s) {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		p_u8(p, (unsigned)l);
		p_bytes(p, s, l);
		s += l;
		if (*s == '.')
			s++;
	}
	p_u16(p, 0xc000 | off);
}

#define QR 0x8000u
#define AA 0x0400u
#define TC 0x0200u
#define RD 0x0100u
#define RA 0x0080u
#define QNAME_OFF 12 /* the question's name: what answers point at */

enum { T_A = 1, T_NS = 2, T_CNAME = 5, T_SOA = 6, T_PTR = 12, T_MX = 15, T_TXT = 16,
       T_AAAA = 28, T_OPT = 41 };

/* Header and question echoing q (the usual response start). */
static void p_response(struct pkt *p, const struct dns_query *q, unsigned flags, unsigned an,
		       unsigned ns, unsigned ar)
{
	p->n = 0;
	p_u16(p, q->id);
	p_u16(p, QR | RD | RA | flags);
	p_u16(p, 1);
	p_u16(p, an);
	p_u16(p, ns);
	p_u16(p, ar);
	p_bytes(p, q->qname, q->qname_len);
	p_u16(p, dns_type_code(q->type));
	p_u16(p, 1);
}

/* The fixed part of a record whose owner is a pointer to off; returns where RDLENGTH is. */
static size_t p_rr_ptr(struct pkt *p, unsigned owner_off, unsigned type, unsigned cls,
		       uint32_t ttl)
{
	p_u16(p, 0xc000 | owner_off);
	p_u16(p, type);
	p_u16(p, cls);
	p_u32(p, ttl);
	size_t at = p->n;
	p_u16(p, 0);
	return at;
}

static size_t p_rr_name(struct pkt *p, const char *owner, unsigned type, unsigned cls,
			uint32_t ttl)
{
	p_name(p, owner);
	p_u16(p, type);
	p_u16(p, cls);
	p_u32(p, ttl);
	size_t at = p->n;
	p_u16(p, 0);
	return at;
}

/* Patch RDLENGTH at `at` to cover everything written since. */
static void p_rr_end(struct pkt *p, size_t at)
{
	size_t len = p->n - at - 2;
	p->b[at] = (uint8_t)(len >> 8);
	p->b[at + 1] = (uint8_t)len;
}

static void p_a(struct pkt *p, unsigned owner_off, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c,
		uint8_t d)
{
	size_t at = p_rr_ptr(p, owner_off, T_A, 1, ttl);
	uint8_t addr[4] = { a, b, c, d };
	p_bytes(p, addr, 4);
	p_rr_end(p, at);
}

static void p_soa(struct pkt *p, const char *owner, uint32_t ttl, uint32_t minimum)
{
	size_t at = p_rr_name(p, owner, T_SOA, 1, ttl);
	p_name(p, "ns1.example.com");
	p_name(p, "hostmaster.example.com");
	p_u32(p, 2024010101);
	p_u32(p, 3600);
	p_u32(p, 600);
	p_u32(p, 604800);
	p_u32(p, minimum);
	p_rr_end(p, at);
}

static void set_u16(struct pkt *p, size_t at, unsigned v)
{
	p->b[at] = (uint8_t)(v >> 8);
	p->b[at + 1] = (uint8_t)v;
}

/* ---- running the parser ---- */

static struct dns_answer *answer; /* big: on the heap, shared by the tests */

static void query(struct dns_query *q, const char *name, enum dns_type t)
{
	/* a fixed 0x20 pattern, so case matters in every test */
	static const uint8_t bits[DNS_0X20_RANDOM_BYTES] = { 0xa5, 0x3c, 0x0f, 0xf0, 0x55, 0xaa };
	CHECK_INT_EQ(dns_query_init(q, name, t, 0x4242, 1232, bits, sizeof(bits)), 0);
}

/* Parse from a heap copy of exactly n bytes. */
static int parse_n(const struct dns_query *q, const uint8_t *b, size_t n, struct dns_answer *a)
{
	uint8_t *copy = malloc(n ? n : 1);
	memcpy(copy, b, n);
	char err[200] = "";
	int rc = dns_response_parse(q, copy, n, a, err, sizeof(err));
	if (rc < 0)
		CHECK(err[0] != '\0'); /* every failure says why */
	free(copy);
	return rc;
}

/* The question ends at 12 + qname + 4: a prefix shorter than that cannot be matched. */
static size_t question_end(const struct dns_query *q)
{
	return DNS_HEADER_LEN + q->qname_len + 4;
}

/* Every proper prefix of a packet that parses must fail (the counts promise more), and
 * never read past its end; the TCP reader must give the packet back however it is cut. */
static void check_prefixes_and_tcp(const struct dns_query *q, const struct pkt *p)
{
	struct dns_answer *tmp = malloc(sizeof(*tmp));
	for (size_t k = 0; k < p->n; k++) {
		int rc = parse_n(q, p->b, k, tmp);
		if (k < question_end(q))
			CHECK_INT_EQ(rc, -ENOMSG);
		else if (rc != -EBADMSG) {
			fprintf(stderr, "  prefix %zu of %zu\n", k, p->n);
			CHECK_INT_EQ(rc, -EBADMSG);
		}
	}
	free(tmp);

	/* TCP: framed, then split at every offset (k = 0: whole; then bytewise) */
	static uint8_t framed[DNS_MESSAGE_MAX + 2];
	size_t flen;
	CHECK_INT_EQ(dns_tcp_frame(p->b, p->n, framed, sizeof(framed), &flen), 0);
	CHECK_INT_EQ(flen, p->n + 2);
	struct dns_tcp_reader *r = malloc(sizeof(*r));
	for (size_t k = 0; k <= flen; k++) {
		dns_tcp_reader_init(r);
		size_t used, got = 0;
		int rc = 0;
		if (k > 0 && k < flen) {
			rc = dns_tcp_reader_feed(r, framed, k, &used);
			CHECK_INT_EQ(rc, 0);
			CHECK_INT_EQ(used, k);
			rc = dns_tcp_reader_feed(r, framed + k, flen - k, &used);
			got = k + used;
		} else {
			rc = dns_tcp_reader_feed(r, framed, flen, &used);
			got = used;
		}
		CHECK_INT_EQ(rc, 1);
		CHECK_INT_EQ(got, flen);
		size_t mlen;
		const uint8_t *m = dns_tcp_reader_message(r, &mlen);
		CHECK_MEM_EQ(m, mlen, p->b, p->n);
	}
	/* byte by byte */
	dns_tcp_reader_init(r);
	for (size_t i = 0; i < flen; i++) {
		size_t used;
		int rc = dns_tcp_reader_feed(r, framed + i, 1, &used);
		CHECK_INT_EQ(used, 1);
		CHECK_INT_EQ(rc, i + 1 == flen ? 1 : 0);
		CHECK_STR_EQ(dns_tcp_state_name(r->state),
			     i + 1 == flen ? "done" : i == 0 ? "length" : "message");
	}
	free(r);
}

/* Parse p as a response to q, expecting rc; on success also check every prefix. */
static int parse(const struct dns_query *q, const struct pkt *p, int want)
{
	int rc = parse_n(q, p->b, p->n, answer);
	CHECK_INT_EQ(rc, want);
	if (rc == 0 && want == 0)
		check_prefixes_and_tcp(q, p);
	return rc;
}

static const char *rec_name(const struct dns_record *r)
{
	return dns_answer_text(answer, r->name);
}

/* ---- tests ---- */

static void test_types_and_names(void)
{
	static const char *const names[] = { "A", "AAAA", "PTR", "MX", "TXT", "NS", "CNAME",
					     "SOA" };
	static const uint16_t codes[] = { 1, 28, 12, 15, 16, 2, 5, 6 };
	for (unsigned t = 0; t < DNS_TYPE_MAX; t++) {
		CHECK_STR_EQ(dns_type_name((enum dns_type)t), names[t]);
		CHECK_INT_EQ(dns_type_code((enum dns_type)t), codes[t]);
		enum dns_type back;
		CHECK_INT_EQ(dns_type_from_code(codes[t], &back), 0);
		CHECK_INT_EQ(back, t);
	}
	enum dns_type back;
	CHECK_INT_EQ(dns_type_from_code(41, &back), -ENOENT);
	CHECK_STR_EQ(dns_type_name(DNS_TYPE_MAX), "?");
	CHECK_STR_EQ(dns_status_name(DNS_STATUS_OK), "ok");
	CHECK_STR_EQ(dns_status_name(DNS_STATUS_TRUNCATED), "truncated");
	for (unsigned s = 0; s < DNS_STATUS_MAX; s++)
		CHECK(strcmp(dns_status_name((enum dns_status)s), "?") != 0);
	for (unsigned s = 0; s < DNS_TCP_STATE_MAX; s++)
		CHECK(strcmp(dns_tcp_state_name((enum dns_tcp_state)s), "?") != 0);
}

static int norm(const char *in, char *out)
{
	size_t len;
	return dns_name_normalize(in, strlen(in), out, DNS_HOSTNAME_MAX + 1, &len);
}

static void test_name_normalize(void)
{
	char out[DNS_HOSTNAME_MAX + 1], big[400];
	CHECK_INT_EQ(norm("Mail.Example.COM", out), 0);
	CHECK_STR_EQ(out, "mail.example.com");
	CHECK_INT_EQ(norm("mail.example.com.", out), 0);
	CHECK_STR_EQ(out, "mail.example.com");
	CHECK_INT_EQ(norm("_dmarc.x-y.example", out), 0);
	CHECK_STR_EQ(out, "_dmarc.x-y.example");
	CHECK_INT_EQ(norm("localhost", out), 0);
	CHECK_INT_EQ(norm(".", out), 0);
	CHECK_STR_EQ(out, "");
	CHECK_INT_EQ(norm("", out), -EINVAL);
	CHECK_INT_EQ(norm("a..b", out), -EINVAL);
	CHECK_INT_EQ(norm(".a", out), -EINVAL);
	CHECK_INT_EQ(norm("a..", out), -EINVAL);
	CHECK_INT_EQ(norm("..", out), -EINVAL);
	CHECK_INT_EQ(norm("a b.example", out), -EINVAL);
	CHECK_INT_EQ(norm("a\\.b.example", out), -EINVAL);
	CHECK_INT_EQ(norm("caf\xc3\xa9.example", out), -EINVAL);
	CHECK_INT_EQ(norm("[192.0.2.1]", out), -EINVAL);
	CHECK(!dns_name_valid("a*b", 3));
	CHECK(dns_name_valid("a-b", 3));
	/* a NUL inside the given length is not a name */
	CHECK(!dns_name_valid("ab\0c", 4));
	/* label 63 is fine, 64 is not */
	memset(big, 'a', 63);
	strcpy(big + 63, ".example");
	CHECK_INT_EQ(norm(big, out), 0);
	memset(big, 'a', 64);
	strcpy(big + 64, ".example");
	CHECK_INT_EQ(norm(big, out), -ENAMETOOLONG);
	/* 253 octets is the longest name (255 on the wire); a trailing dot is not counted */
	for (int i = 0; i < 253; i++)
		big[i] = i % 2 ? '.' : 'a';
	big[253] = '\0';
	CHECK_INT_EQ(norm(big, out), 0);
	CHECK_INT_EQ(strlen(out), 253);
	strcpy(big + 253, ".");
	CHECK_INT_EQ(norm(big, out), 0);
	strcpy(big + 253, "b"); /* 254 octets */
	CHECK_INT_EQ(norm(big, out), -ENAMETOOLONG);
	/* the output buffer is checked */
	size_t len;
	CHECK_INT_EQ(dns_name_normalize("abc", 3, out, 3, &len), -ENOSPC);
	CHECK_INT_EQ(dns_name_normalize("abc", 3, out, 4, &len), 0);
	CHECK_INT_EQ(len, 3);
}

static void test_query_encode(void)
{
	struct dns_query q;
	uint8_t buf[600];
	size_t len;
	/* RFC 1035 4.1: no EDNS, no 0x20 */
	CHECK_INT_EQ(dns_query_init(&q, "Example.COM.", DNS_TYPE_MX, 0x1234, 0, NULL, 0), 0);
	CHECK_STR_EQ(q.name, "example.com");
	CHECK_INT_EQ(dns_query_encode(&q, buf, sizeof(buf), &len), 0);
	static const uint8_t plain[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 15, 0, 1,
	};
	CHECK_MEM_EQ(buf, len, plain, sizeof(plain));
	CHECK_INT_EQ(dns_query_len(&q), sizeof(plain));
	/* too small a buffer: nothing written, the size needed told */
	CHECK_INT_EQ(dns_query_encode(&q, buf, sizeof(plain) - 1, &len), -ENOSPC);
	CHECK_INT_EQ(len, sizeof(plain));

	/* EDNS0 (RFC 6891 6.1.2) and 0x20: bits 1,0,1,0,0,1,0,1 then 0,0,1,1,1,1,0,0 */
	static const uint8_t bits[] = { 0xa5, 0x3c };
	CHECK_INT_EQ(dns_query_init(&q, "example.com", DNS_TYPE_A, 0xbeef, 1232, bits, 2), 0);
	CHECK_INT_EQ(dns_query_encode(&q, buf, sizeof(buf), &len), 0);
	static const uint8_t edns[] = {
		0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1,
		7, 'E', 'x', 'A', 'm', 'p', 'L', 'e', 3, 'C', 'o', 'm', 0, 0, 1, 0, 1,
		0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
	};
	CHECK_MEM_EQ(buf, len, edns, sizeof(edns));
	/* the normalised name stays lower case; the wire form carries the pattern */
	CHECK_STR_EQ(q.name, "example.com");
	/* letters past the given bits stay lower case; digits and '-' take no bit */
	static const uint8_t one[] = { 0xff };
	CHECK_INT_EQ(dns_query_init(&q, "a1-b2c3d4e5f6g7h8i9.x", DNS_TYPE_TXT, 1, 0, one, 1), 0);
	CHECK_MEM_EQ(q.qname + 1, 19, "A1-B2C3D4E5F6G7H8i9", 19);
	/* an EDNS size below 512 is sent as 512 (RFC 6891 6.2.5) */
	CHECK_INT_EQ(dns_query_init(&q, "x.example", DNS_TYPE_A, 1, 100, NULL, 0), 0);
	CHECK_INT_EQ(q.edns_udp_size, 512);
	/* the root, and bad input */
	CHECK_INT_EQ(dns_query_init(&q, ".", DNS_TYPE_NS, 7, 0, NULL, 0), 0);
	CHECK_INT_EQ(q.qname_len, 1);
	CHECK_INT_EQ(dns_query_init(&q, "a..b", DNS_TYPE_A, 1, 0, NULL, 0), -EINVAL);
	CHECK_INT_EQ(dns_query_init(&q, "a.b", DNS_TYPE_MAX, 1, 0, NULL, 0), -EINVAL);
	char big[300];
	memset(big, 'a', 299);
	big[299] = '\0';
	CHECK_INT_EQ(dns_query_init(&q, big, DNS_TYPE_A, 1, 0, NULL, 0), -ENAMETOOLONG);
}

static void test_a_and_aaaa(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	char text[64];
	query(&q, "mx.example.com", DNS_TYPE_A);
	p_response(p, &q, AA, 2, 0, 1);
	p_a(p, QNAME_OFF, 300, 192, 0, 2, 1);
	p_a(p, QNAME_OFF, 200, 192, 0, 2, 2);
	/* glue-like additional A records are ignored; an OPT record is read */
	p_name(p, "");
	p_u16(p, T_OPT);
	p_u16(p, 1232);
	p_u32(p, 0);
	p_u16(p, 0);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "ok");
	CHECK_INT_EQ(answer->count, 2);
	CHECK_INT_EQ(answer->ttl, 200);
	CHECK(answer->ttl_valid);
	CHECK(answer->authoritative);
	CHECK(answer->recursion_available);
	CHECK(answer->edns);
	CHECK_INT_EQ(answer->edns_udp_size, 1232);
	CHECK_STR_EQ(answer->name, "mx.example.com");
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[0], text, sizeof(text)), 0);
	CHECK_STR_EQ(text, "192.0.2.1");
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[1], text, sizeof(text)), 0);
	CHECK_STR_EQ(text, "192.0.2.2");
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[1], text, 9), -ENOSPC);

	/* AAAA, with an owner written out in another case (RFC 4343: still ours) and an A
	 * record (wrong type) and a CH-class record in between, both ignored */
	query(&q, "mx.example.com", DNS_TYPE_AAAA);
	p_response(p, &q, 0, 3, 0, 0);
	size_t at = p_rr_name(p, "MX.EXAMPLE.COM", T_AAAA, 1, 60);
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
	p_bytes(p, v6, 16);
	p_rr_end(p, at);
	p_a(p, QNAME_OFF, 10, 10, 0, 0, 1);
	at = p_rr_ptr(p, QNAME_OFF, T_AAAA, 3, 5);
	p_bytes(p, v6, 16);
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 1);
	CHECK_INT_EQ(answer->ttl, 60);
	CHECK(!answer->edns);
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[0], text, sizeof(text)), 0);
	CHECK_STR_EQ(text, "2001:db8::1");

	/* a bad address length is malformed */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_AAAA, 1, 60);
	p_bytes(p, v6, 15);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	query(&q, "mx.example.com", DNS_TYPE_A);
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_A, 1, 60);
	p_bytes(p, v6, 5);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	/* a TTL with the top bit set counts as 0 (RFC 2181 8) */
	p_response(p, &q, 0, 1, 0, 0);
	p_a(p, QNAME_OFF, 0x80000001u, 192, 0, 2, 9);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->ttl, 0);
	CHECK_INT_EQ(answer->records[0].ttl, 0);
	free(p);
}

static void test_ptr_ns_cname_soa(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "1.2.0.192.in-addr.arpa", DNS_TYPE_PTR);
	p_response(p, &q, 0, 1, 0, 0);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_PTR, 1, 86400);
	p_name(p, "Mail.Example.NET");
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 1);
	/* as the zone spells it: the client's name in Postfix's replies keeps its case */
	CHECK_STR_EQ(rec_name(&answer->records[0]), "Mail.Example.NET");
	CHECK_INT_EQ(answer->records[0].name.len, 16);

	/* odd octets in a target come back escaped (RFC 1035 5.1), so they cannot pass
	 * for a host name */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_PTR, 1, 86400);
	p_u8(p, 7);
	p_bytes(p, "a.b c\\\x01", 7);
	p_u8(p, 0);
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "a\\.b\\032c\\\\\\001");

	/* NS, with targets compressed against the question and each other: the labels taken
	 * from the question (its 0x20 pattern) come back lower case, the answer's own keep
	 * their case */
	query(&q, "example.org", DNS_TYPE_NS);
	p_response(p, &q, 0, 2, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_NS, 1, 3600);
	size_t first = p->n;
	p_name_ptr(p, "Ns1", QNAME_OFF);
	p_rr_end(p, at);
	at = p_rr_ptr(p, QNAME_OFF, T_NS, 1, 7200);
	p_name_ptr(p, "b.ns2", (unsigned)first + 4); /* "b.ns2" + ".example.org" via ns1's
							pointer */
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 2);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "Ns1.example.org");
	CHECK_STR_EQ(rec_name(&answer->records[1]), "b.ns2.example.org");
	CHECK_INT_EQ(answer->ttl, 3600);

	/* a target name longer than its RDATA says is malformed */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_NS, 1, 3600);
	p_name(p, "ns1.example.org");
	p_rr_end(p, at);
	set_u16(p, at, 5);
	p->n = at + 2 + 5;
	parse(&q, p, -EBADMSG);
	/* ... or shorter */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_NS, 1, 3600);
	p_name(p, "ns1.example.org");
	p_u8(p, 0);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);

	/* CNAME asked for: the record itself, no chasing */
	query(&q, "www.example.com", DNS_TYPE_CNAME);
	p_response(p, &q, 0, 2, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 100);
	size_t target = p->n;
	p_name(p, "web.example.com");
	p_rr_end(p, at);
	p_a(p, (unsigned)target, 50, 192, 0, 2, 80);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 1);
	CHECK_INT_EQ(answer->cname_count, 0);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "web.example.com");
	CHECK_STR_EQ(answer->name, "www.example.com");
	CHECK_INT_EQ(answer->ttl, 100);

	/* SOA */
	query(&q, "example.com", DNS_TYPE_SOA);
	p_response(p, &q, 0, 1, 0, 0);
	p_soa(p, "example.com", 3600, 300);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 1);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "ns1.example.com");
	CHECK_STR_EQ(dns_answer_text(answer, answer->records[0].rname), "hostmaster.example.com");
	CHECK_INT_EQ(answer->records[0].soa[0], 2024010101);
	CHECK_INT_EQ(answer->records[0].soa[4], 300);
	CHECK_INT_EQ(answer->ttl, 3600);
	/* SOA with a field missing */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_SOA, 1, 3600);
	p_name(p, "a");
	p_name(p, "b");
	p_u32(p, 1);
	p_u32(p, 2);
	p_u32(p, 3);
	p_u32(p, 4);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	free(p);
}

static void test_mx_and_null_mx(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "example.com", DNS_TYPE_MX);
	p_response(p, &q, 0, 2, 0, 0);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_MX, 1, 3600);
	p_u16(p, 10);
	p_name_ptr(p, "mx1", QNAME_OFF);
	p_rr_end(p, at);
	at = p_rr_ptr(p, QNAME_OFF, T_MX, 1, 1800);
	p_u16(p, 20);
	p_name(p, "backup.example.net");
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 2);
	CHECK_INT_EQ(answer->records[0].pref, 10);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "mx1.example.com");
	CHECK_INT_EQ(answer->records[1].pref, 20);
	CHECK_STR_EQ(rec_name(&answer->records[1]), "backup.example.net");
	CHECK(!answer->null_mx);
	CHECK_INT_EQ(answer->ttl, 1800);
	char text[64];
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[0], text, sizeof(text)), -EINVAL);

	/* RFC 7505: "0 ." */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_MX, 1, 3600);
	p_u16(p, 0);
	p_u8(p, 0);
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK(answer->null_mx);
	CHECK_INT_EQ(answer->count, 1);
	CHECK_INT_EQ(answer->records[0].pref, 0);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "");

	/* an MX too short to hold a name */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_MX, 1, 3600);
	p_u16(p, 0);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	free(p);
}

static void test_txt(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	size_t len;
	query(&q, "2.0.0.127.zen.example", DNS_TYPE_TXT);
	p_response(p, &q, 0, 2, 0, 0);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	p_u8(p, 5);
	p_bytes(p, "Hello", 5);
	p_u8(p, 0);
	p_u8(p, 7);
	p_bytes(p, ", world", 7);
	p_rr_end(p, at);
	at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	p_u8(p, 3);
	p_bytes(p, "a\0b", 3);
	p_rr_end(p, at);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 2);
	const struct dns_record *r = &answer->records[0];
	CHECK_INT_EQ(r->txt_count, 3);
	CHECK_STR_EQ(dns_answer_text(answer, r->txt), "Hello, world");
	const char *s = dns_answer_txt_string(answer, r, 0, &len);
	CHECK_MEM_EQ(s, len, "Hello", 5);
	s = dns_answer_txt_string(answer, r, 1, &len);
	CHECK_INT_EQ(len, 0);
	s = dns_answer_txt_string(answer, r, 2, &len);
	CHECK_MEM_EQ(s, len, ", world", 7);
	s = dns_answer_txt_string(answer, r, 3, &len);
	CHECK_INT_EQ(len, 0);
	CHECK(!r->txt_truncated);
	r = &answer->records[1];
	CHECK_MEM_EQ(dns_answer_text(answer, r->txt), r->txt.len, "a\0b", 3);

	/* many strings: 400 one-octet strings in one record */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	for (int i = 0; i < 400; i++) {
		p_u8(p, 1);
		p_u8(p, 'a' + i % 26);
	}
	p_rr_end(p, at);
	parse(&q, p, 0);
	r = &answer->records[0];
	CHECK_INT_EQ(r->txt_count, 400);
	CHECK_INT_EQ(r->txt.len, 400);
	s = dns_answer_txt_string(answer, r, 399, &len);
	CHECK_MEM_EQ(s, len, "j", 1);
	/* past DNS_TXT_STRINGS_MAX in all (two records of 300): the second is cut */
	p_response(p, &q, 0, 2, 0, 0);
	for (int k = 0; k < 2; k++) {
		at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
		for (int i = 0; i < 300; i++) {
			p_u8(p, 1);
			p_u8(p, 'x');
		}
		p_rr_end(p, at);
	}
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->records[0].txt_count, 300);
	CHECK(!answer->records[0].txt_truncated);
	CHECK_INT_EQ(answer->records[1].txt_count, DNS_TXT_STRINGS_MAX - 300);
	CHECK(answer->records[1].txt_truncated);
	CHECK_INT_EQ(answer->nstrings, DNS_TXT_STRINGS_MAX);
	/* a record's joined text past DNS_TXT_RECORD_MAX stops at a string boundary */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	for (int i = 0; i < 20; i++) {
		uint8_t chunk[255];
		memset(chunk, 'a' + i, sizeof(chunk));
		p_u8(p, 255);
		p_bytes(p, chunk, 255);
	}
	p_rr_end(p, at);
	parse(&q, p, 0);
	r = &answer->records[0];
	CHECK(r->txt_truncated);
	CHECK_INT_EQ(r->txt_count, DNS_TXT_RECORD_MAX / 255);
	CHECK_INT_EQ(r->txt.len, (DNS_TXT_RECORD_MAX / 255) * 255);
	/* malformed: a string past the RDATA, an empty RDATA */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	p_u8(p, 9);
	p_bytes(p, "short", 5);
	p_rr_end(p, at);
	p_u32(p, 0); /* bytes after the record: the string still may not reach them */
	parse(&q, p, -EBADMSG);
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	free(p);
}

static void test_cname_chains(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "www.example.com", DNS_TYPE_A);
	/* www -> web.example.net -> Edge.CDN.example (case differs) -> A; records of
	 * other owners are not ours */
	p_response(p, &q, 0, 5, 0, 0);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 600);
	size_t web = p->n;
	p_name(p, "web.example.net");
	p_rr_end(p, at);
	at = p_rr_name(p, "unrelated.example", T_A, 1, 5); /* not on the chain: ignored */
	p_bytes(p, "\x0a\x09\x09\x09", 4);
	p_rr_end(p, at);
	at = p_rr_ptr(p, (unsigned)web, T_CNAME, 1, 120);
	size_t edge = p->n;
	p_name(p, "Edge.CDN.example");
	p_rr_end(p, at);
	at = p_rr_name(p, "edge.cdn.EXAMPLE", T_A, 1, 300);
	p_bytes(p, "\xc6\x33\x64\x01", 4);
	p_rr_end(p, at);
	p_a(p, (unsigned)edge, 60, 198, 51, 100, 2);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "ok");
	CHECK_INT_EQ(answer->cname_count, 2);
	CHECK_STR_EQ(answer->name, "edge.cdn.example");
	CHECK_INT_EQ(answer->count, 2);
	CHECK_INT_EQ(answer->ttl, 60);
	char text[64];
	dns_record_addr_text(&answer->records[0], text, sizeof(text));
	CHECK_STR_EQ(text, "198.51.100.1");

	/* the chain ends at a name without data: NODATA for the final name, negative TTL
	 * from its zone's SOA and the CNAME */
	p_response(p, &q, 0, 1, 1, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 30);
	p_name(p, "gone.example.net");
	p_rr_end(p, at);
	p_soa(p, "example.net", 3600, 900);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "nodata");
	CHECK_STR_EQ(answer->name, "gone.example.net");
	CHECK_INT_EQ(answer->ttl, 30);
	CHECK(answer->ttl_valid);
	/* ... and NXDOMAIN through a CNAME */
	p->b[3] = (uint8_t)((p->b[3] & 0xf0) | 3);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "nxdomain");
	CHECK_STR_EQ(answer->name, "gone.example.net");

	/* a CNAME whose RDATA is not exactly one name */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 30);
	p_name(p, "x.example");
	p_u8(p, 0);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);

	/* a loop: www -> a -> www */
	p_response(p, &q, 0, 2, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 30);
	size_t a = p->n;
	p_name(p, "a.example");
	p_rr_end(p, at);
	at = p_rr_ptr(p, (unsigned)a, T_CNAME, 1, 30);
	p_name(p, "WWW.example.com");
	p_rr_end(p, at);
	parse(&q, p, -ELOOP);
	/* a name that is its own alias */
	p_response(p, &q, 0, 1, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 30);
	p_u16(p, 0xc000 | QNAME_OFF);
	p_rr_end(p, at);
	parse(&q, p, -ELOOP);

	/* chains: DNS_CNAME_DEPTH_MAX links are followed, one more is too many */
	for (int links = DNS_CNAME_DEPTH_MAX; links <= DNS_CNAME_DEPTH_MAX + 1; links++) {
		p_response(p, &q, 0, (unsigned)links + 1, 0, 0);
		unsigned owner = QNAME_OFF;
		for (int i = 0; i < links; i++) {
			char l[16];
			at = p_rr_ptr(p, owner, T_CNAME, 1, 1000 - (uint32_t)i);
			owner = (unsigned)p->n;
			snprintf(l, sizeof(l), "c%d.example", i);
			p_name(p, l);
			p_rr_end(p, at);
		}
		p_a(p, owner, 5000, 192, 0, 2, 7);
		if (links == DNS_CNAME_DEPTH_MAX) {
			parse(&q, p, 0);
			CHECK_INT_EQ(answer->cname_count, DNS_CNAME_DEPTH_MAX);
			CHECK_INT_EQ(answer->count, 1);
			CHECK_INT_EQ(answer->ttl, 1000 - (DNS_CNAME_DEPTH_MAX - 1));
		} else {
			parse(&q, p, -ELOOP);
		}
	}
	/* data beside a CNAME (a zone error): the data wins */
	p_response(p, &q, 0, 2, 0, 0);
	at = p_rr_ptr(p, QNAME_OFF, T_CNAME, 1, 30);
	p_name(p, "elsewhere.example");
	p_rr_end(p, at);
	p_a(p, QNAME_OFF, 40, 192, 0, 2, 3);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->cname_count, 0);
	CHECK_INT_EQ(answer->count, 1);
	free(p);
}

static void test_compression_attacks(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "mx.example.com", DNS_TYPE_A);

	/* an owner pointing at itself */
	p_response(p, &q, 0, 1, 0, 0);
	p_u16(p, 0xc000 | (unsigned)p->n);
	p_u16(p, T_A);
	p_u16(p, 1);
	p_u32(p, 1);
	p_u16(p, 4);
	p_u32(p, 0x01020304);
	parse(&q, p, -EBADMSG);

	/* a pointer forward */
	p_response(p, &q, 0, 1, 0, 0);
	p_u16(p, 0xc000 | (unsigned)(p->n + 2));
	p_u16(p, T_A);
	p_u16(p, 1);
	p_u32(p, 1);
	p_u16(p, 4);
	p_u32(p, 0x01020304);
	parse(&q, p, -EBADMSG);

	/* Two pointers, each pointing before itself, that still loop: a label at t whose data
	 * holds a pointer to t (at t+3), and a pointer to t right after the label (at t+5).
	 * The owner points at t+3. "Before the pointer itself" would allow t+3 -> t -> (label)
	 * -> t+5 -> t forever; "before the labels that led here" stops at the second jump.
	 * The bytes sit in a TXT record's data. */
	p_response(p, &q, 0, 2, 0, 0);
	size_t at = p_rr_name(p, "h", T_TXT, 1, 1);
	size_t t = p->n + 1;
	p_u8(p, 6); /* the TXT string: the six octets below */
	p_u8(p, 4);
	p_bytes(p, "ab", 2);
	p_u16(p, 0xc000 | (unsigned)t);
	p_u16(p, 0xc000 | (unsigned)t);
	p_rr_end(p, at);
	p_u16(p, 0xc000 | (unsigned)(t + 3));
	p_u16(p, T_A);
	p_u16(p, 1);
	p_u32(p, 1);
	p_u16(p, 4);
	p_u32(p, 0x01020304);
	parse(&q, p, -EBADMSG);

	/* a chain of pointers, each to the one before it, in a TXT record's data; the owner
	 * of the next record points at its last: DNS_POINTERS_MAX jumps are followed */
	for (int n = DNS_POINTERS_MAX - 1; n <= DNS_POINTERS_MAX; n++) {
		p_response(p, &q, 0, 2, 0, 0);
		at = p_rr_name(p, "holder", T_TXT, 1, 1);
		size_t base = p->n;
		p_u8(p, (unsigned)(2 * n + 1));
		p_u8(p, 0); /* base + 1: the root, where the chain ends */
		for (int i = 0; i < n; i++) /* pointer i sits at base + 2 + 2i */
			p_u16(p, 0xc000 | (unsigned)(i == 0 ? base + 1 : base + 2 * (size_t)i));
		p_rr_end(p, at);
		p_u16(p, 0xc000 | (unsigned)(base + 2 * (size_t)n));
		p_u16(p, T_A);
		p_u16(p, 1);
		p_u32(p, 1);
		p_u16(p, 4);
		p_u32(p, 0x01020304);
		/* the owner's pointer and the n of the chain */
		parse(&q, p, n + 1 <= DNS_POINTERS_MAX ? 0 : -EBADMSG);
		if (n + 1 <= DNS_POINTERS_MAX)
			CHECK_STR_EQ(dns_status_name(answer->status), "nodata");
	}

	/* label types 01 and 10 */
	for (unsigned type = 0x40; type <= 0x80; type += 0x40) {
		p_response(p, &q, 0, 1, 0, 0);
		p_u8(p, type | 1);
		p_u8(p, 'x');
		p_u8(p, 0);
		p_u16(p, T_A);
		p_u16(p, 1);
		p_u32(p, 1);
		p_u16(p, 4);
		p_u32(p, 0x01020304);
		parse(&q, p, -EBADMSG);
	}

	/* names of 255 octets are fine; 256 via compression are not: an owner of one label of
	 * L octets and a pointer to a 63-63-63 name (193 octets with the root) kept in a TXT
	 * record's data: 1 + L + 193 */
	for (unsigned L = 60; L <= 62; L++) {
		p_response(p, &q, 0, 2, 0, 0);
		at = p_rr_name(p, "h", T_TXT, 1, 1);
		size_t base = p->n;
		p_u8(p, 194); /* the string: a pad octet and the name */
		p_u8(p, 0);
		for (int l = 0; l < 3; l++) {
			uint8_t lab[63];
			memset(lab, 'a' + l, sizeof(lab));
			p_u8(p, 63);
			p_bytes(p, lab, sizeof(lab));
		}
		p_u8(p, 0);
		p_rr_end(p, at);
		uint8_t lab[63];
		memset(lab, 'z', sizeof(lab));
		p_u8(p, L);
		p_bytes(p, lab, L);
		p_u16(p, 0xc000 | (unsigned)(base + 2));
		p_u16(p, T_A);
		p_u16(p, 1);
		p_u32(p, 1);
		p_u16(p, 4);
		p_u32(p, 0x01020304);
		parse(&q, p, 1 + L + 193 <= DNS_NAME_WIRE_MAX ? 0 : -EBADMSG);
	}
	/* a label running past the end, a pointer cut in half */
	p_response(p, &q, 0, 1, 0, 0);
	p_u8(p, 40);
	p_bytes(p, "abc", 3);
	parse(&q, p, -EBADMSG);
	p_response(p, &q, 0, 1, 0, 0);
	p_u8(p, 0xc0);
	parse(&q, p, -EBADMSG);
	free(p);
}

static void test_header_and_question_checks(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "mx.example.com", DNS_TYPE_A);
	p_response(p, &q, 0, 1, 0, 0);
	p_a(p, QNAME_OFF, 60, 192, 0, 2, 1);
	parse(&q, p, 0);

	struct pkt *m = malloc(sizeof(*m));
	/* ID */
	*m = *p;
	m->b[1] ^= 1;
	parse(&q, m, -ENOMSG);
	/* QR clear: a query, not a response */
	*m = *p;
	m->b[2] &= 0x7f;
	parse(&q, m, -ENOMSG);
	/* opcode 2 (STATUS) */
	*m = *p;
	m->b[2] |= 0x10;
	parse(&q, m, -ENOMSG);
	/* QDCOUNT 0 and 2 */
	*m = *p;
	m->b[5] = 0;
	parse(&q, m, -ENOMSG);
	*m = *p;
	m->b[5] = 2;
	parse(&q, m, -ENOMSG);
	/* 0x20: the same name in another case is a mismatch (spoofing defence) */
	size_t letter = QNAME_OFF + 1;
	*m = *p;
	m->b[letter] ^= 0x20;
	parse(&q, m, -ENOMSG);
	/* another name of the same length */
	*m = *p;
	m->b[letter + 1] = 'q';
	parse(&q, m, -ENOMSG);
	/* type and class */
	*m = *p;
	m->b[QNAME_OFF + q.qname_len + 1] = T_AAAA;
	parse(&q, m, -ENOMSG);
	*m = *p;
	m->b[QNAME_OFF + q.qname_len + 3] = 3; /* CH */
	parse(&q, m, -ENOMSG);
	/* a question written with a pointer is not byte for byte ours */
	*m = *p;
	m->n = QNAME_OFF;
	p_u16(m, 0xc000 | 2);
	parse(&q, m, -ENOMSG);
	/* nothing at all, and a header alone */
	CHECK_INT_EQ(parse_n(&q, p->b, 0, answer), -ENOMSG);
	CHECK_INT_EQ(parse_n(&q, p->b, 11, answer), -ENOMSG);
	CHECK_INT_EQ(parse_n(&q, p->b, 12, answer), -ENOMSG);
	/* ANCOUNT larger than what is there */
	*m = *p;
	m->b[7] = 2;
	parse(&q, m, -EBADMSG);
	/* bytes after the last section are ignored */
	*m = *p;
	p_u32(m, 0xdeadbeef);
	CHECK_INT_EQ(parse_n(&q, m->b, m->n, answer), 0);
	CHECK_INT_EQ(answer->count, 1);
	/* an uninitialised query is a caller bug reported, not a crash */
	struct dns_query zero;
	memset(&zero, 0, sizeof(zero));
	zero.type = DNS_TYPE_MAX;
	CHECK_INT_EQ(parse_n(&zero, p->b, p->n, answer), -EINVAL);
	free(m);
	free(p);
}

static void test_rcodes_and_negative_ttl(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "nope.example.com", DNS_TYPE_A);

	/* NXDOMAIN: min(SOA TTL, MINIMUM) (RFC 2308 5) */
	p_response(p, &q, AA | 3, 0, 1, 0);
	p_soa(p, "example.com", 3600, 300);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "nxdomain");
	CHECK_INT_EQ(answer->rcode, 3);
	CHECK_INT_EQ(answer->ttl, 300);
	CHECK(answer->ttl_valid);
	p_response(p, &q, 3, 0, 1, 0);
	p_soa(p, "example.com", 60, 300);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->ttl, 60);
	/* NODATA */
	p_response(p, &q, 0, 0, 1, 0);
	p_soa(p, "Example.COM", 600, 900);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "nodata");
	CHECK_INT_EQ(answer->ttl, 600);
	/* no SOA: not cacheable (RFC 2308 5) */
	p_response(p, &q, 3, 0, 0, 0);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "nxdomain");
	CHECK_INT_EQ(answer->ttl, 0);
	CHECK(!answer->ttl_valid);
	/* an SOA of an unrelated zone (or a child zone) does not count */
	p_response(p, &q, 3, 0, 2, 0);
	p_soa(p, "example.org", 5, 5);
	p_soa(p, "sub.nope.example.com", 5, 5);
	parse(&q, p, 0);
	CHECK(!answer->ttl_valid);
	/* the root zone's SOA does */
	p_response(p, &q, 3, 0, 1, 0);
	p_soa(p, "", 86400, 1800);
	parse(&q, p, 0);
	CHECK(answer->ttl_valid);
	CHECK_INT_EQ(answer->ttl, 1800);
	/* a broken SOA that would be used is malformed */
	p_response(p, &q, 3, 0, 1, 0);
	size_t at = p_rr_name(p, "example.com", T_SOA, 1, 60);
	p_name(p, "ns1");
	p_u32(p, 1);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);
	/* an NXDOMAIN's answer records of the type are not used */
	p_response(p, &q, 3, 1, 0, 0);
	p_a(p, QNAME_OFF, 60, 192, 0, 2, 1);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, 0);

	/* SERVFAIL, REFUSED, others */
	static const struct {
		unsigned rcode;
		const char *status;
	} rc[] = { { 2, "servfail" }, { 5, "refused" }, { 1, "rcode" }, { 4, "rcode" },
		   { 9, "rcode" } };
	for (size_t i = 0; i < sizeof(rc) / sizeof(rc[0]); i++) {
		p_response(p, &q, rc[i].rcode, 0, 0, 0);
		parse(&q, p, 0);
		CHECK_STR_EQ(dns_status_name(answer->status), rc[i].status);
		CHECK_INT_EQ(answer->rcode, rc[i].rcode);
		CHECK(!answer->ttl_valid);
	}

	/* EDNS: the extended RCODE (RFC 6891 6.1.3) turns NOERROR into BADVERS */
	p_response(p, &q, 0, 0, 0, 1);
	p_name(p, "");
	p_u16(p, T_OPT);
	p_u16(p, 4096);
	p_u32(p, 0x01000000);
	p_u16(p, 0);
	parse(&q, p, 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "rcode");
	CHECK_INT_EQ(answer->rcode, DNS_RCODE_BADVERS);
	CHECK_INT_EQ(answer->edns_udp_size, 4096);
	/* two OPT records, an OPT not owned by the root, an OPT in the answer section */
	p_response(p, &q, 0, 0, 0, 2);
	for (int i = 0; i < 2; i++) {
		p_name(p, "");
		p_u16(p, T_OPT);
		p_u16(p, 4096);
		p_u32(p, 0);
		p_u16(p, 0);
	}
	parse(&q, p, -EBADMSG);
	p_response(p, &q, 0, 0, 0, 1);
	p_name(p, "x");
	p_u16(p, T_OPT);
	p_u16(p, 4096);
	p_u32(p, 0);
	p_u16(p, 0);
	parse(&q, p, -EBADMSG);
	p_response(p, &q, 0, 1, 0, 0);
	p_name(p, "");
	p_u16(p, T_OPT);
	p_u16(p, 4096);
	p_u32(p, 0);
	p_u16(p, 0);
	parse(&q, p, -EBADMSG);
	/* malformed additional records are malformed responses */
	p_response(p, &q, 0, 0, 0, 1);
	p_name(p, "glue");
	p_u16(p, T_A);
	p_u16(p, 1);
	p_u32(p, 1);
	p_u16(p, 40);
	p_u32(p, 0);
	parse(&q, p, -EBADMSG);
	free(p);
}

static void test_truncated(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "big.example.com", DNS_TYPE_TXT);
	/* TC: nothing after the question is read, whatever it is */
	p_response(p, &q, TC, 40, 0, 0);
	p_u32(p, 0xffffffff);
	CHECK_INT_EQ(parse_n(&q, p->b, p->n, answer), 0);
	CHECK_STR_EQ(dns_status_name(answer->status), "truncated");
	CHECK_INT_EQ(answer->count, 0);
	/* but a truncated response to someone else's query is still not ours */
	p->b[0] ^= 0xff;
	CHECK_INT_EQ(parse_n(&q, p->b, p->n, answer), -ENOMSG);
	free(p);
}

static void test_record_cap(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	query(&q, "many.example.com", DNS_TYPE_A);
	p_response(p, &q, 0, 150, 0, 0);
	for (unsigned i = 0; i < 150; i++)
		p_a(p, QNAME_OFF, 1000 - i, 10, 0, (uint8_t)(i >> 8), (uint8_t)i);
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->count, DNS_RECORDS_MAX);
	CHECK_INT_EQ(answer->dropped, 50);
	/* the TTL is that of the records used */
	CHECK_INT_EQ(answer->ttl, 1000 - 99);
	char text[64];
	dns_record_addr_text(&answer->records[99], text, sizeof(text));
	CHECK_STR_EQ(text, "10.0.0.99");
	/* a dropped record is still checked */
	p_response(p, &q, 0, 101, 0, 0);
	for (unsigned i = 0; i < 100; i++)
		p_a(p, QNAME_OFF, 10, 10, 0, 0, (uint8_t)i);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_A, 1, 10);
	p_u16(p, 1);
	p_rr_end(p, at);
	parse(&q, p, -EBADMSG);

	/* names fill the arena: PTR records with long escaped targets (each about 1000 octets
	 * of text from 255 on the wire, made once and pointed at) */
	query(&q, "4.3.2.1.in-addr.arpa", DNS_TYPE_PTR);
	p_response(p, &q, 0, 60, 0, 0);
	size_t target = 0;
	for (unsigned i = 0; i < 60; i++) {
		at = p_rr_ptr(p, QNAME_OFF, T_PTR, 1, 10);
		if (i == 0) {
			target = p->n;
			for (int l = 0; l < 3; l++) {
				uint8_t lab[63];
				memset(lab, 0x01, sizeof(lab));
				p_u8(p, 63);
				p_bytes(p, lab, 63);
			}
			uint8_t lab[61];
			memset(lab, 0xff, sizeof(lab));
			p_u8(p, 61);
			p_bytes(p, lab, 61);
			p_u8(p, 0);
		} else {
			p_u16(p, 0xc000 | (unsigned)target);
		}
		p_rr_end(p, at);
	}
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->records[0].name.len, DNS_NAME_TEXT_MAX);
	CHECK_INT_EQ(answer->count, DNS_ARENA_MAX / (DNS_NAME_TEXT_MAX + 1));
	CHECK_INT_EQ(answer->count + answer->dropped, 60);
	CHECK(answer->arena_used <= DNS_ARENA_MAX);
	free(p);
}

static void test_tcp(void)
{
	uint8_t buf[40], out[40];
	size_t n, used;
	struct dns_tcp_reader *r = malloc(sizeof(*r));
	/* framing */
	memset(buf, 0x11, sizeof(buf));
	CHECK_INT_EQ(dns_tcp_frame(buf, 12, out, sizeof(out), &n), 0);
	CHECK_INT_EQ(n, 14);
	CHECK(out[0] == 0 && out[1] == 12 && out[2] == 0x11);
	CHECK_INT_EQ(dns_tcp_frame(buf, 12, out, 13, &n), -ENOSPC);
	CHECK_INT_EQ(n, 14);
	CHECK_INT_EQ(dns_tcp_frame(buf, 65536, out, sizeof(out), &n), -EMSGSIZE);
	/* in place */
	memset(out, 0x22, 12);
	CHECK_INT_EQ(dns_tcp_frame(out, 12, out, sizeof(out), &n), 0);
	CHECK(out[1] == 12 && out[2] == 0x22 && out[13] == 0x22);

	/* two messages in one read: the first is taken, the rest is the next one's */
	uint8_t two[2 * 14];
	memset(two, 0xab, sizeof(two));
	two[0] = 0;
	two[1] = 12;
	two[14] = 0;
	two[15] = 12;
	dns_tcp_reader_init(r);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, two, sizeof(two), &used), 1);
	CHECK_INT_EQ(used, 14);
	dns_tcp_reader_message(r, &n);
	CHECK_INT_EQ(n, 12);
	dns_tcp_reader_next(r);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, two + 14, 14, &used), 1);
	CHECK_INT_EQ(used, 14);
	dns_tcp_reader_next(r);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, two, 0, &used), 0);
	CHECK_INT_EQ(used, 0);
	/* a length no message can have */
	uint8_t bad[] = { 0, 11, 1, 2, 3 };
	dns_tcp_reader_init(r);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, bad, 1, &used), 0);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, bad + 1, 4, &used), -EBADMSG);
	CHECK_INT_EQ(used, 1);
	CHECK_STR_EQ(dns_tcp_state_name(r->state), "failed");
	/* the largest message */
	uint8_t *big = malloc(DNS_MESSAGE_MAX + 2);
	memset(big, 7, DNS_MESSAGE_MAX + 2);
	big[0] = 0xff;
	big[1] = 0xff;
	dns_tcp_reader_init(r);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, big, DNS_MESSAGE_MAX + 1, &used), 0);
	CHECK_INT_EQ(dns_tcp_reader_feed(r, big + used, 1, &used), 1);
	dns_tcp_reader_message(r, &n);
	CHECK_INT_EQ(n, DNS_MESSAGE_MAX);
	free(big);
	free(r);
}

static void test_reverse_names(void)
{
	struct mx_inet_addr a;
	char out[128];
	CHECK(mx_inet_parse("192.0.2.1", &a));
	CHECK_INT_EQ(dns_name_reverse(&a, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "1.2.0.192.in-addr.arpa");
	CHECK(mx_inet_parse("2001:db8::567:89ab", &a));
	CHECK_INT_EQ(dns_name_reverse(&a, out, sizeof(out)), 0);
	/* RFC 3596 2.5's example form */
	CHECK_STR_EQ(out, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	CHECK_INT_EQ(strlen(out), 72);
	CHECK_INT_EQ(dns_name_reverse(&a, out, 73), 0);
	CHECK_INT_EQ(dns_name_reverse(&a, out, 72), -ENOSPC);
	CHECK(mx_inet_parse("::ffff:198.51.100.7", &a));
	CHECK_INT_EQ(dns_name_reverse(&a, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "7.100.51.198.in-addr.arpa");
	memset(&a, 0, sizeof(a));
	CHECK_INT_EQ(dns_name_reverse(&a, out, sizeof(out)), -EAFNOSUPPORT);
	/* a query for the result works */
	struct dns_query q;
	CHECK(mx_inet_parse("2001:db8::1", &a));
	CHECK_INT_EQ(dns_name_reverse(&a, out, sizeof(out)), 0);
	CHECK_INT_EQ(dns_query_init(&q, out, DNS_TYPE_PTR, 1, 0, NULL, 0), 0);
}

static void test_dnsbl_names(void)
{
	struct mx_inet_addr a;
	char out[DNS_HOSTNAME_MAX + 1];
	CHECK(mx_inet_parse("127.0.0.2", &a));
	CHECK_INT_EQ(dns_name_dnsbl(&a, "zen.spamhaus.org", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "2.0.0.127.zen.spamhaus.org");
	CHECK_INT_EQ(dns_name_dnsbl(&a, "Zen.Spamhaus.ORG.", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "2.0.0.127.zen.spamhaus.org");
	/* Postfix's find_dnsxl_addr(): "%x.%x." low nibble then high, last octet first */
	CHECK(mx_inet_parse("2001:db8::2", &a));
	CHECK_INT_EQ(dns_name_dnsbl(&a, "bl.example", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example");
	CHECK(mx_inet_parse("::ffff:192.0.2.99", &a));
	CHECK_INT_EQ(dns_name_dnsbl(&a, "bl.example", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "99.2.0.192.bl.example");
	CHECK_INT_EQ(dns_name_dnsbl(&a, "bl.example", out, 10), -ENOSPC);
	CHECK_INT_EQ(dns_name_dnsbl(&a, "bad zone", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_dnsbl(&a, ".", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_dnsbl(&a, "zen.spamhaus.org=127.0.0.2", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_dnsbl(&a, NULL, out, sizeof(out)), -EINVAL);
	/* a zone long enough that the IPv6 name cannot be asked for */
	char zone[200];
	memset(zone, 'z', sizeof(zone));
	for (int i = 50; i < 199; i += 50)
		zone[i] = '.';
	zone[199] = '\0';
	CHECK_INT_EQ(dns_name_dnsbl(&a, zone, out, sizeof(out)), 0); /* IPv4: fits */
	CHECK(mx_inet_parse("2001:db8::2", &a));
	CHECK_INT_EQ(dns_name_dnsbl(&a, zone, out, sizeof(out)), -ENAMETOOLONG);
	memset(&a, 0, sizeof(a));
	CHECK_INT_EQ(dns_name_dnsbl(&a, "bl.example", out, sizeof(out)), -EAFNOSUPPORT);
}

static void test_rhsbl_names(void)
{
	char out[DNS_HOSTNAME_MAX + 1];
	CHECK_INT_EQ(dns_name_rhsbl("Example.COM", "dbl.example.net", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "example.com.dbl.example.net");
	CHECK_INT_EQ(dns_name_rhsbl("example.com.", "dbl.example.net.", out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "example.com.dbl.example.net");
	/* what Postfix skips */
	CHECK_INT_EQ(dns_name_rhsbl("[192.0.2.1]", "dbl.example", out, sizeof(out)), -EDOM);
	CHECK_INT_EQ(dns_name_rhsbl("192.0.2.1", "dbl.example", out, sizeof(out)), -EDOM);
	CHECK_INT_EQ(dns_name_rhsbl("12345", "dbl.example", out, sizeof(out)), -EDOM);
	CHECK_INT_EQ(dns_name_rhsbl("example.123", "dbl.example", out, sizeof(out)), -EDOM);
	CHECK_INT_EQ(dns_name_rhsbl("123.example", "dbl.example", out, sizeof(out)), 0);
	CHECK_INT_EQ(dns_name_rhsbl("bad!name", "dbl.example", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_rhsbl("", "dbl.example", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_rhsbl(".", "dbl.example", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_rhsbl("example.com", "", out, sizeof(out)), -EINVAL);
	CHECK_INT_EQ(dns_name_rhsbl("example.com", "dbl.example", out, 10), -ENOSPC);
	/* together too long */
	char dom[200];
	memset(dom, 'd', sizeof(dom));
	for (int i = 50; i < 199; i += 50)
		dom[i] = '.';
	dom[199] = '\0';
	CHECK_INT_EQ(dns_name_rhsbl(dom, "dbl.example", out, sizeof(out)), 0);
	/* 199 + 1 + 53 = 253 fits; one more does not */
	CHECK_INT_EQ(dns_name_rhsbl(dom, "a-long-rhsbl-zone.dbl.dbl.dbl.dbl.example.abcdefghijk", out,
				    sizeof(out)), 0);
	CHECK_INT_EQ(strlen(out), 253);
	CHECK_INT_EQ(dns_name_rhsbl(dom, "a-long-rhsbl-zone.dbl.dbl.dbl.dbl.example.abcdefghijkl", out,
				    sizeof(out)), -ENAMETOOLONG);
}

/* Responses made by another encoder (dnspython 2.3.0, Debian's python3-dnspython, with its
 * own name compression), for "mail.example.com" with the 0x20 bits 5a 3c 99 and ID 0xbeef:
 * MX 10 mx1.mail.example.com., 20 mx2.example.com., 30 mail.example.com. (TTL 3600; written
 * in the order 20, 30, 10); and
 * A through two CNAMEs (600, 120) to edge.web.example.com. A 198.51.100.1 (60). */
static const uint8_t dnspython_mx[] = {
	0xbe, 0xef, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
	0x04, 0x6d, 0x41, 0x69, 0x4c, 0x07, 0x45, 0x78, 0x41, 0x6d, 0x70, 0x6c,
	0x45, 0x03, 0x43, 0x4f, 0x4d, 0x00, 0x00, 0x0f, 0x00, 0x01, 0xc0, 0x0c,
	0x00, 0x0f, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x08, 0x00, 0x14,
	0x03, 0x6d, 0x78, 0x32, 0xc0, 0x11, 0xc0, 0x0c, 0x00, 0x0f, 0x00, 0x01,
	0x00, 0x00, 0x0e, 0x10, 0x00, 0x04, 0x00, 0x1e, 0xc0, 0x0c, 0xc0, 0x0c,
	0x00, 0x0f, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x08, 0x00, 0x0a,
	0x03, 0x6d, 0x78, 0x31, 0xc0, 0x0c, 0x00, 0x00, 0x29, 0x20, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t dnspython_cname[] = {
	0xbe, 0xef, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
	0x04, 0x6d, 0x41, 0x69, 0x4c, 0x07, 0x45, 0x78, 0x41, 0x6d, 0x70, 0x6c,
	0x45, 0x03, 0x43, 0x4f, 0x4d, 0x00, 0x00, 0x01, 0x00, 0x01, 0xc0, 0x0c,
	0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x02, 0x58, 0x00, 0x06, 0x03, 0x77,
	0x65, 0x62, 0xc0, 0x11, 0xc0, 0x2e, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00,
	0x00, 0x78, 0x00, 0x07, 0x04, 0x65, 0x64, 0x67, 0x65, 0xc0, 0x2e, 0xc0,
	0x40, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 0xc6,
	0x33, 0x64, 0x01, 0x00, 0x00, 0x29, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00,
};

static void test_other_encoder(void)
{
	static const uint8_t bits[] = { 0x5a, 0x3c, 0x99 };
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	CHECK_INT_EQ(dns_query_init(&q, "mail.example.com", DNS_TYPE_MX, 0xbeef, 1232, bits, 3), 0);
	p->n = 0;
	p_bytes(p, dnspython_mx, sizeof(dnspython_mx));
	parse(&q, p, 0);
	/* records come in wire order (dnspython wrote 20, 30, 10); sorting is the caller's */
	CHECK_INT_EQ(answer->count, 3);
	CHECK_INT_EQ(answer->records[0].pref, 20);
	CHECK_STR_EQ(rec_name(&answer->records[0]), "mx2.example.com");
	CHECK_INT_EQ(answer->records[1].pref, 30);
	CHECK_STR_EQ(rec_name(&answer->records[1]), "mail.example.com");
	CHECK_INT_EQ(answer->records[2].pref, 10);
	CHECK_STR_EQ(rec_name(&answer->records[2]), "mx1.mail.example.com");
	CHECK_INT_EQ(answer->ttl, 3600);
	CHECK(answer->edns);
	CHECK_INT_EQ(dns_query_init(&q, "mail.example.com", DNS_TYPE_A, 0xbeef, 1232, bits, 3), 0);
	p->n = 0;
	p_bytes(p, dnspython_cname, sizeof(dnspython_cname));
	parse(&q, p, 0);
	CHECK_INT_EQ(answer->cname_count, 2);
	CHECK_STR_EQ(answer->name, "edge.web.example.com");
	CHECK_INT_EQ(answer->count, 1);
	CHECK_INT_EQ(answer->ttl, 60);
	char text[64];
	CHECK_INT_EQ(dns_record_addr_text(&answer->records[0], text, sizeof(text)), 0);
	CHECK_STR_EQ(text, "198.51.100.1");
	free(p);
}

/* The compact, shared form of an answer (tables/dns_result.h): records of the type with
 * their text, the TTLs, and failures as TEMPFAIL. */
static void test_result(void)
{
	struct dns_query q;
	struct pkt *p = malloc(sizeof(*p));
	/* A records */
	query(&q, "2.0.0.127.zen.example", DNS_TYPE_A);
	p_response(p, &q, 0, 2, 0, 0);
	p_a(p, QNAME_OFF, 300, 127, 0, 0, 2);
	p_a(p, QNAME_OFF, 100, 127, 0, 0, 4);
	parse(&q, p, 0);
	struct dns_result *r = dns_result_from_answer(answer, DNS_TYPE_A, 60);
	CHECK(r != NULL);
	CHECK_STR_EQ(dns_result_status_name(r->status), "ok");
	CHECK_INT_EQ(r->nrecords, 2);
	CHECK_INT_EQ(r->ttl, 100);
	CHECK_INT_EQ(r->records[1].addr.bytes[3], 4);
	CHECK_STR_EQ(dns_result_name(r, &r->records[0]), "");
	CHECK(dns_result_size(r) >= sizeof(*r) + 2 * sizeof(r->records[0]));
	struct dns_result *r2 = dns_result_get(r);
	dns_result_put(r);
	CHECK_INT_EQ(r2->nrecords, 2); /* still alive: ASan would see a use after free */
	dns_result_put(r2);
	/* TXT: the first character-string of each record */
	query(&q, "2.0.0.127.zen.example", DNS_TYPE_TXT);
	p_response(p, &q, 0, 1, 0, 0);
	size_t at = p_rr_ptr(p, QNAME_OFF, T_TXT, 1, 900);
	p_u8(p, 6);
	p_bytes(p, "Listed", 6);
	p_u8(p, 4);
	p_bytes(p, " now", 4);
	p_rr_end(p, at);
	parse(&q, p, 0);
	r = dns_result_from_answer(answer, DNS_TYPE_TXT, 60);
	CHECK_INT_EQ(r->nrecords, 1);
	CHECK_STR_EQ(dns_result_txt(r, &r->records[0]), "Listed");
	dns_result_put(r);
	/* NXDOMAIN with an SOA: the negative TTL; without one: the floor */
	query(&q, "9.9.9.9.zen.example", DNS_TYPE_A);
	p_response(p, &q, 3, 0, 1, 0);
	p_soa(p, "zen.example", 600, 120);
	parse(&q, p, 0);
	r = dns_result_from_answer(answer, DNS_TYPE_A, 60);
	CHECK_STR_EQ(dns_result_status_name(r->status), "nxdomain");
	CHECK_INT_EQ(r->ttl, 120);
	CHECK_INT_EQ(r->nrecords, 0);
	dns_result_put(r);
	p_response(p, &q, 3, 0, 0, 0);
	parse(&q, p, 0);
	r = dns_result_from_answer(answer, DNS_TYPE_A, 60);
	CHECK_INT_EQ(r->ttl, 60);
	dns_result_put(r);
	/* SERVFAIL: a temporary failure, never cached */
	p_response(p, &q, 2, 0, 0, 0);
	parse(&q, p, 0);
	r = dns_result_from_answer(answer, DNS_TYPE_A, 60);
	CHECK_STR_EQ(dns_result_status_name(r->status), "tempfail");
	CHECK_INT_EQ(r->ttl, 0);
	CHECK(strstr(r->why, "servfail") != NULL);
	dns_result_put(r);
	r = dns_result_tempfail(DNS_TYPE_MX, "timeout");
	CHECK_STR_EQ(r->why, "timeout");
	dns_result_put(r);
	free(p);
}

/* A PTR name as the client's name: Postfix's valid_hostname() and sockaddr_to_hostname(). */
static void test_reverse_name_usable(void)
{
	static const struct {
		const char *name;
		bool usable, numeric;
	} cases[] = {
		{ "mail.example.com", true, false },
		{ "a-b.example", true, false },
		{ "1host.example", true, false },
		{ "192.0.2.1", false, true },
		{ "2001:db8::1", false, false }, /* not a host name at all */
		{ "1.2.3", false, false },       /* all digits and dots */
		{ "-a.example", false, false },  /* a label starting with '-' */
		{ "a-.example", false, false },  /* ... or ending with it */
		{ "a.-b.example", false, false },
		{ "a.example-", false, false },
		{ "", false, false },
		{ "under_score.example", true, false }, /* Postfix allows "_" ("grr..") */
		{ "a..example", false, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool numeric = true;
		CHECK_INT_EQ(dns_result_reverse_name_usable(cases[i].name, &numeric),
			     cases[i].usable);
		CHECK_INT_EQ(numeric, cases[i].numeric);
	}
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	for (size_t i = 60; i < sizeof(longname) - 1; i += 61)
		longname[i] = '.';
	bool numeric;
	CHECK(!dns_result_reverse_name_usable(longname, &numeric)); /* over 255 octets */
	CHECK_STR_EQ(dns_result_gai_text(DNS_RESULT_TEMPFAIL),
		     "Temporary failure in name resolution");
	CHECK_STR_EQ(dns_result_gai_text(DNS_RESULT_NODATA), "No address associated with hostname");
	CHECK_STR_EQ(dns_result_gai_text(DNS_RESULT_NXDOMAIN), "Name or service not known");
}

int main(void)
{
	answer = malloc(sizeof(*answer));
	RUN_TEST(test_types_and_names);
	RUN_TEST(test_name_normalize);
	RUN_TEST(test_query_encode);
	RUN_TEST(test_a_and_aaaa);
	RUN_TEST(test_ptr_ns_cname_soa);
	RUN_TEST(test_mx_and_null_mx);
	RUN_TEST(test_txt);
	RUN_TEST(test_cname_chains);
	RUN_TEST(test_compression_attacks);
	RUN_TEST(test_header_and_question_checks);
	RUN_TEST(test_rcodes_and_negative_ttl);
	RUN_TEST(test_truncated);
	RUN_TEST(test_record_cap);
	RUN_TEST(test_tcp);
	RUN_TEST(test_reverse_names);
	RUN_TEST(test_dnsbl_names);
	RUN_TEST(test_rhsbl_names);
	RUN_TEST(test_other_encoder);
	RUN_TEST(test_result);
	RUN_TEST(test_reverse_name_usable);
	free(answer);
	return TEST_RESULT();
}
