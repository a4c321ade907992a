/* The PROXY protocol parser (smtp/smtp_proxy_protocol.c), against the examples and rules
 * of HAProxy's doc/proxy-protocol.txt. Every header is parsed from heap buffers of exactly
 * the length given: the whole header, the header followed by SMTP bytes (which must not
 * be consumed), and every prefix (which must ask for more, never fail, when the header is
 * valid; once a prefix fails, every longer one must fail too). */
#include <errno.h>
#include <stdlib.h>

#include "smtp/smtp_proxy_protocol.h"
#include "testing.h"

static const char smtp_tail[] = "EHLO client.example\r\n";

static ssize_t parse_copy(const void *p, size_t n, unsigned flags, struct smtp_proxy_header *h,
			  char *err, size_t errlen)
{
	uint8_t *copy = malloc(n ? n : 1);
	memcpy(copy, p, n);
	ssize_t rc = smtp_proxy_parse(copy, n, flags, h, err, errlen);
	/* spans must point into the buffer: check them before it goes */
	if (rc > 0) {
		const struct mx_span *sp[] = { &h->authority, &h->unique_id, &h->ssl.version,
					       &h->ssl.cn, &h->ssl.cipher, &h->ssl.sig_alg,
					       &h->ssl.key_alg };
		for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++)
			if (sp[i]->len)
				CHECK((const uint8_t *)sp[i]->ptr >= copy &&
				      (const uint8_t *)sp[i]->ptr + sp[i]->len <= copy + rc);
		/* relocate spans into the caller's bytes, which outlive the copy */
		const uint8_t *base = p;
		for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++) {
			struct mx_span *w = (struct mx_span *)sp[i];
			if (w->len)
				w->ptr = (const char *)base + ((const uint8_t *)w->ptr - copy);
		}
	}
	free(copy);
	return rc;
}

/* A valid header of `total` bytes: whole, with SMTP behind it, and every prefix. */
static void expect_header(const void *p, size_t total, unsigned flags,
			  struct smtp_proxy_header *h)
{
	char err[128];
	ssize_t rc = parse_copy(p, total, flags, h, err, sizeof(err));
	if (rc != (ssize_t)total)
		fprintf(stderr, "  error: %s\n", err);
	CHECK_INT_EQ(rc, (ssize_t)total);

	uint8_t *more = malloc(total + sizeof(smtp_tail));
	memcpy(more, p, total);
	memcpy(more + total, smtp_tail, sizeof(smtp_tail) - 1);
	struct smtp_proxy_header h2;
	CHECK_INT_EQ(parse_copy(more, total + sizeof(smtp_tail) - 1, flags, &h2, NULL, 0),
		     (ssize_t)total);
	CHECK_INT_EQ(h2.src_port, h->src_port);
	CHECK(memcmp(&h2.src, &h->src, sizeof(h2.src)) == 0);
	free(more);

	for (size_t k = 0; k < total; k++) {
		struct smtp_proxy_header h3;
		rc = parse_copy(p, k, flags, &h3, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "  prefix %zu of %zu: %zd %s\n", k, total, rc, err);
			CHECK_INT_EQ(rc, 0);
			break;
		}
	}
}

static void expect_error(const void *p, size_t n, unsigned flags, int want, const char *msg)
{
	struct smtp_proxy_header h;
	char err[128];
	ssize_t rc = parse_copy(p, n, flags, &h, err, sizeof(err));
	CHECK_INT_EQ(rc, want);
	if (msg)
		CHECK_STR_EQ(err, msg);
	/* prefixes: need more until the first error, errors from then on */
	bool failed = false;
	for (size_t k = 0; k <= n; k++) {
		rc = parse_copy(p, k, flags, &h, NULL, 0);
		CHECK(rc <= 0);
		if (failed)
			CHECK(rc < 0);
		failed = rc < 0;
	}
	/* SMTP bytes behind a bad header do not make it good */
	uint8_t *more = malloc(n + sizeof(smtp_tail));
	memcpy(more, p, n);
	memcpy(more + n, smtp_tail, sizeof(smtp_tail) - 1);
	CHECK(parse_copy(more, n + sizeof(smtp_tail) - 1, flags, &h, NULL, 0) < 0);
	free(more);
}

static void expect_v1_error(const char *line, unsigned flags, int want, const char *msg)
{
	if (want == 0) {
		struct smtp_proxy_header h;
		CHECK_INT_EQ(parse_copy(line, strlen(line), flags, &h, NULL, 0), 0);
		return;
	}
	size_t before = (size_t)testing_failures;
	expect_error(line, strlen(line), flags, want, msg);
	if ((size_t)testing_failures != before)
		fprintf(stderr, "  line: \"%s\"\n", line);
}

static bool addr_is(const struct mx_inet_addr *a, const char *s)
{
	char b[INET6_ADDRSTRLEN];
	return strcmp(mx_inet_format(a, b, sizeof(b)), s) == 0;
}

/* ---- Version 1 ---- */

static void test_v1_examples(void)
{
	struct smtp_proxy_header h;
	/* specification 2.1's example */
	const char *l = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	expect_header(l, strlen(l), 0, &h);
	CHECK_INT_EQ(h.version, 1);
	CHECK_STR_EQ(smtp_proxy_command_name(h.command), "PROXY");
	CHECK_STR_EQ(smtp_proxy_family_name(h.family), "INET");
	CHECK_STR_EQ(smtp_proxy_transport_name(h.transport), "STREAM");
	CHECK(!h.use_connection);
	CHECK(addr_is(&h.src, "192.168.0.1"));
	CHECK(addr_is(&h.dst, "192.168.0.11"));
	CHECK_INT_EQ(h.src_port, 56324);
	CHECK_INT_EQ(h.dst_port, 443);
	CHECK(!h.has_authority && !h.has_ssl && !h.crc_verified);

	/* the longest lines of 2.1: 56 and 104 bytes */
	l = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	CHECK_INT_EQ(strlen(l), 56);
	expect_header(l, strlen(l), 0, &h);
	CHECK(addr_is(&h.src, "255.255.255.255"));
	CHECK_INT_EQ(h.dst_port, 65535);
	l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	CHECK_INT_EQ(strlen(l), 104);
	expect_header(l, strlen(l), 0, &h);
	CHECK_STR_EQ(smtp_proxy_family_name(h.family), "INET6");
	CHECK(addr_is(&h.dst, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));

	l = "PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 0 25\r\n";
	expect_header(l, strlen(l), 0, &h);
	CHECK(addr_is(&h.src, "2001:db8::1"));
	CHECK(addr_is(&h.dst, "2001:db8::2"));
	CHECK_INT_EQ(h.src_port, 0);
	CHECK_INT_EQ(h.dst_port, 25);
	/* an IPv4-mapped address stays IPv6 here; mx_inet_unmap() is Postfix's view */
	l = "PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n";
	expect_header(l, strlen(l), 0, &h);
	struct mx_inet_addr un = mx_inet_unmap(&h.src);
	CHECK(h.src.family == AF_INET6 && addr_is(&un, "192.0.2.7"));
	l = "PROXY TCP4 0.0.0.0 10.0.0.1 1 65535\r\n";
	expect_header(l, strlen(l), 0, &h);
}

static void test_v1_unknown(void)
{
	struct smtp_proxy_header h;
	/* Postfix refuses UNKNOWN; the flag takes the specification's SHOULD accept */
	expect_v1_error("PROXY UNKNOWN\r\n", 0, -EPROTONOSUPPORT, "UNKNOWN protocol type refused");
	const char *l = "PROXY UNKNOWN\r\n";
	expect_header(l, strlen(l), SMTP_PROXY_ACCEPT_UNKNOWN, &h);
	CHECK(h.use_connection);
	CHECK_STR_EQ(smtp_proxy_family_name(h.family), "UNSPEC");
	/* the worst case of 2.1: 107 bytes, the rest of the line ignored */
	l = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	CHECK_INT_EQ(strlen(l), SMTP_PROXY_V1_MAX);
	expect_header(l, strlen(l), SMTP_PROXY_ACCEPT_UNKNOWN, &h);
	CHECK(h.use_connection);
	l = "PROXY UNKNOWN whatever the sender put here\r\n";
	expect_header(l, strlen(l), SMTP_PROXY_ACCEPT_UNKNOWN, &h);
}

static void test_v1_bad(void)
{
	/* one byte over: 108 with CRLF, or 107 without it */
	char l[160];
	memset(l, 'a', sizeof(l));
	memcpy(l, "PROXY UNKNOWN ", 14);
	memcpy(l + 106, "\r\n", 3);
	CHECK_INT_EQ(strlen(l), 108);
	expect_v1_error(l, SMTP_PROXY_ACCEPT_UNKNOWN, -EMSGSIZE,
			"missing protocol header terminator");
	memcpy(l + 105, "\r\n", 3);
	CHECK_INT_EQ(strlen(l), 107);
	struct smtp_proxy_header h;
	CHECK_INT_EQ(parse_copy(l, 107, SMTP_PROXY_ACCEPT_UNKNOWN, &h, NULL, 0), 107);
	l[105] = 'a';
	l[106] = 'a';
	l[107] = '\0';
	expect_v1_error(l, SMTP_PROXY_ACCEPT_UNKNOWN, -EMSGSIZE,
			"missing protocol header terminator");
	l[106] = '\0';
	expect_v1_error(l, SMTP_PROXY_ACCEPT_UNKNOWN, 0, NULL); /* 106 bytes: need more */

	expect_v1_error("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n", 0, -EINVAL,
			"bare LF in protocol header");
	expect_v1_error("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\r\n", 0, -EINVAL,
			"bare CR in protocol header");
	expect_v1_error("PROXY TCP4\r192.168.0.1 192.168.0.11 56324 443\r\n", 0, -EINVAL,
			"bare CR in protocol header");
	expect_v1_error("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\t\r\n", 0, -EINVAL,
			"non-ASCII byte in protocol header");
	expect_v1_error("PROXY TCP4 192.168.0.1 192.168.0.11 56324 44\xc3\xa9\r\n", 0, -EINVAL,
			"non-ASCII byte in protocol header");
	expect_v1_error("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing protocol type");
	expect_v1_error("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing protocol type");
	expect_v1_error("PROXY\r\n", 0, -EINVAL, "unrecognized protocol header");
	expect_v1_error("PROXY \r\n", 0, -EINVAL, "bad or missing protocol type");
	expect_v1_error("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing protocol type");
	expect_v1_error("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"wrong number of fields in protocol header");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 0, -EINVAL,
			"wrong number of fields in protocol header");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 0, -EINVAL,
			"wrong number of fields in protocol header");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3 4\r\n", 0, -EINVAL,
			"too many fields in protocol header");
	expect_v1_error("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3.1234 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.x 1 2\r\n", 0, -EINVAL,
			"bad or missing server address");
	expect_v1_error("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP6 ::1 2001:db8::1::2 1 2\r\n", 0, -EINVAL,
			"bad or missing server address");
	expect_v1_error("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP6 12345::1 ::1 1 2\r\n", 0, -EINVAL,
			"bad or missing client address");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", 0, -EINVAL,
			"bad or missing client port");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 0, -EINVAL,
			"bad or missing client port");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 0, -EINVAL,
			"bad or missing client port");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", 0, -EINVAL,
			"bad or missing server port");
	expect_v1_error("PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", 0, -EINVAL,
			"bad or missing server port");
	/* not the protocol at all: refused at the first byte that shows it */
	expect_v1_error("EHLO client\r\n", 0, -EINVAL, "unrecognized protocol header");
	expect_v1_error("PROXX TCP4\r\n", 0, -EINVAL, "unrecognized protocol header");
	expect_v1_error("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 0, -EINVAL,
			"unrecognized protocol header");
	expect_v1_error("\x16\x03\x01", 0, -EINVAL, "unrecognized protocol header");
	expect_v1_error("E", 0, -EINVAL, "unrecognized protocol header");
	struct smtp_proxy_header hh;
	CHECK_INT_EQ(parse_copy("", 0, 0, &hh, NULL, 0), 0);
}

/* ---- Version 2 ---- */

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* A v2 header: fixed part, address block, then TLV bytes. Returns its length. */
static size_t v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const void *addr, size_t alen,
		 const void *tlvs, size_t tlen)
{
	memcpy(b, sig, 12);
	b[12] = ver_cmd;
	b[13] = fam;
	b[14] = (uint8_t)((alen + tlen) >> 8);
	b[15] = (uint8_t)(alen + tlen);
	if (alen)
		memcpy(b + 16, addr, alen);
	if (tlen)
		memcpy(b + 16 + alen, tlvs, tlen);
	return 16 + alen + tlen;
}

/* 192.0.2.1:56324 -> 192.0.2.11:25 */
static const uint8_t a4[12] = { 192, 0, 2, 1, 192, 0, 2, 11, 0xdc, 0x04, 0x00, 0x19 };
/* [2001:db8::1]:1025 -> [2001:db8::2]:587 */
static const uint8_t a6[36] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
				0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
				0x04, 0x01, 0x02, 0x4b };

static void test_v2_basic(void)
{
	uint8_t b[600];
	struct smtp_proxy_header h;
	size_t n = v2(b, 0x21, 0x11, a4, sizeof(a4), NULL, 0);
	CHECK_INT_EQ(n, 28);
	expect_header(b, n, 0, &h);
	CHECK_INT_EQ(h.version, 2);
	CHECK_STR_EQ(smtp_proxy_command_name(h.command), "PROXY");
	CHECK_STR_EQ(smtp_proxy_family_name(h.family), "INET");
	CHECK_STR_EQ(smtp_proxy_transport_name(h.transport), "STREAM");
	CHECK(!h.use_connection);
	CHECK(addr_is(&h.src, "192.0.2.1"));
	CHECK(addr_is(&h.dst, "192.0.2.11"));
	CHECK_INT_EQ(h.src_port, 56324);
	CHECK_INT_EQ(h.dst_port, 25);

	n = v2(b, 0x21, 0x21, a6, sizeof(a6), NULL, 0);
	CHECK_INT_EQ(n, 52);
	expect_header(b, n, 0, &h);
	CHECK_STR_EQ(smtp_proxy_family_name(h.family), "INET6");
	CHECK(addr_is(&h.src, "2001:db8::1"));
	CHECK(addr_is(&h.dst, "2001:db8::2"));
	CHECK_INT_EQ(h.src_port, 1025);
	CHECK_INT_EQ(h.dst_port, 587);

	/* LOCAL: health checks; the block is skipped, whatever it says */
	n = v2(b, 0x20, 0x00, NULL, 0, NULL, 0);
	expect_header(b, n, 0, &h);
	CHECK_STR_EQ(smtp_proxy_command_name(h.command), "LOCAL");
	CHECK(h.use_connection);
	n = v2(b, 0x20, 0x11, a4, sizeof(a4), "\x02\x00\x01", 3);
	expect_header(b, n, 0, &h);
	CHECK(h.use_connection && !h.has_authority);
	n = v2(b, 0x20, 0xff, "junk", 4, NULL, 0);
	expect_header(b, n, 0, &h);
	CHECK(h.use_connection);

	/* two headers back to back: only the first is taken */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), NULL, 0);
	memcpy(b + n, b, n);
	CHECK_INT_EQ(parse_copy(b, 2 * n, 0, &h, NULL, 0), (ssize_t)n);
	/* SMTP's own bytes may look like anything */
	memcpy(b + n, "\r\n\r\n", 4);
	CHECK_INT_EQ(parse_copy(b, n + 4, 0, &h, NULL, 0), (ssize_t)n);
}

static void test_v2_families(void)
{
	uint8_t b[600];
	static uint8_t unx[216] = "/run/a.sock";
	struct smtp_proxy_header h;

	/* what Postfix refuses, refused unless SMTP_PROXY_ACCEPT_UNKNOWN */
	static const struct {
		uint8_t fam;
		const void *addr;
		size_t alen;
		const char *family, *transport;
	} cases[] = {
		{ 0x00, NULL, 0, "UNSPEC", "UNSPEC" },	{ 0x12, a4, 12, "INET", "DGRAM" },
		{ 0x22, a6, 36, "INET6", "DGRAM" },	{ 0x31, unx, 216, "UNIX", "STREAM" },
		{ 0x32, unx, 216, "UNIX", "DGRAM" },	{ 0x10, a4, 12, "INET", "UNSPEC" },
		{ 0x01, NULL, 0, "UNSPEC", "STREAM" },	{ 0x30, NULL, 0, "UNIX", "UNSPEC" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = v2(b, 0x21, cases[i].fam, cases[i].addr, cases[i].alen, NULL, 0);
		expect_error(b, n, 0, -EPROTONOSUPPORT, "unsupported network protocol");
		expect_header(b, n, SMTP_PROXY_ACCEPT_UNKNOWN, &h);
		CHECK(h.use_connection);
		CHECK_STR_EQ(smtp_proxy_family_name(h.family), cases[i].family);
		CHECK_STR_EQ(smtp_proxy_transport_name(h.transport), cases[i].transport);
	}
	/* TLVs after a UNIX address block are read too */
	size_t n = v2(b, 0x21, 0x31, unx, 216, "\x02\x00\x02mx", 5);
	expect_header(b, n, SMTP_PROXY_ACCEPT_UNKNOWN, &h);
	CHECK(h.has_authority);
	CHECK_MEM_EQ(h.authority.ptr, h.authority.len, "mx", 2);
	/* ... and must fit */
	n = v2(b, 0x21, 0x31, unx, 200, NULL, 0);
	expect_error(b, n, SMTP_PROXY_ACCEPT_UNKNOWN, -EINVAL, "short address field");
}

static void test_v2_bad(void)
{
	uint8_t b[700];
	size_t n;

	/* every byte of the signature matters */
	for (size_t i = 0; i < 12; i++) {
		n = v2(b, 0x21, 0x11, a4, sizeof(a4), NULL, 0);
		b[i] ^= 0x20;
		expect_error(b, n, 0, -EINVAL, NULL);
	}
	n = v2(b, 0x11, 0x11, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, 0, -EINVAL, "unrecognized protocol version");
	n = v2(b, 0x31, 0x11, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, 0, -EINVAL, "unrecognized protocol version");
	n = v2(b, 0x01, 0x11, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, 0, -EINVAL, "unrecognized protocol version");
	n = v2(b, 0x22, 0x11, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, 0, -EINVAL, "bad command in proxy header");
	n = v2(b, 0x2f, 0x11, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, 0, -EINVAL, "bad command in proxy header");
	n = v2(b, 0x21, 0x41, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, SMTP_PROXY_ACCEPT_UNKNOWN, -EINVAL, "bad address family or transport");
	n = v2(b, 0x21, 0x13, a4, sizeof(a4), NULL, 0);
	expect_error(b, n, SMTP_PROXY_ACCEPT_UNKNOWN, -EINVAL, "bad address family or transport");
	n = v2(b, 0x21, 0x11, a4, 11, NULL, 0);
	expect_error(b, n, 0, -EINVAL, "short address field");
	n = v2(b, 0x21, 0x21, a6, 35, NULL, 0);
	expect_error(b, n, 0, -EINVAL, "short address field");
	n = v2(b, 0x21, 0x21, a4, 12, NULL, 0);
	expect_error(b, n, 0, -EINVAL, "short address field");
	n = v2(b, 0x21, 0x11, NULL, 0, NULL, 0);
	expect_error(b, n, 0, -EINVAL, "short address field");

	/* the bound: 536 bytes in all */
	uint8_t noop[600];
	memset(noop, 0, sizeof(noop));
	noop[0] = 0x04; /* NOOP */
	size_t room = SMTP_PROXY_HEADER_MAX - 16 - 12 - 3;
	noop[1] = (uint8_t)(room >> 8);
	noop[2] = (uint8_t)room;
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), noop, 3 + room);
	CHECK_INT_EQ(n, SMTP_PROXY_HEADER_MAX);
	struct smtp_proxy_header h;
	expect_header(b, n, 0, &h);
	room++;
	noop[1] = (uint8_t)(room >> 8);
	noop[2] = (uint8_t)room;
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), noop, 3 + room);
	expect_error(b, n, 0, -EMSGSIZE, "protocol header longer than 536 bytes");
	/* the length field alone says so: no need to wait for the bytes */
	b[14] = 0xff;
	b[15] = 0xff;
	expect_error(b, 16, 0, -EMSGSIZE, NULL);
	/* a LOCAL header is bounded too */
	n = v2(b, 0x20, 0x00, noop, SMTP_PROXY_HEADER_MAX - 16 + 1, NULL, 0);
	CHECK_INT_EQ(n, SMTP_PROXY_HEADER_MAX + 1);
	expect_error(b, n, 0, -EMSGSIZE, NULL);
}

/* TLV bytes: type, 16-bit length, value. */
static size_t tlv(uint8_t *p, uint8_t type, const void *v, size_t n)
{
	p[0] = type;
	p[1] = (uint8_t)(n >> 8);
	p[2] = (uint8_t)n;
	if (n)
		memcpy(p + 3, v, n);
	return 3 + n;
}

static void test_v2_tlvs(void)
{
	uint8_t b[700], t[512], ssl[256];
	struct smtp_proxy_header h;
	size_t tn = 0, sn = 0;

	/* SSL: client bits, verify, then its sub-TLVs (specification 2.2.6) */
	ssl[sn++] = 0x07;
	memcpy(ssl + sn, "\0\0\0\0", 4);
	sn += 4;
	sn += tlv(ssl + sn, 0x21, "TLSv1.3", 7);
	sn += tlv(ssl + sn, 0x22, "client.example", 14);
	sn += tlv(ssl + sn, 0x23, "TLS_AES_256_GCM_SHA384", 22);
	sn += tlv(ssl + sn, 0x24, "RSA-SHA256", 10);
	sn += tlv(ssl + sn, 0x25, "RSA2048", 7);
	sn += tlv(ssl + sn, 0x99, "\x01\x02", 2); /* unknown sub-TLV */

	tn += tlv(t + tn, 0x01, "smtp", 4);             /* ALPN, ignored */
	tn += tlv(t + tn, 0x02, "mx.example.org", 14); /* AUTHORITY */
	tn += tlv(t + tn, 0x04, NULL, 0);               /* NOOP */
	tn += tlv(t + tn, 0x05, "\x00\x01\x02\xff", 4); /* UNIQUE_ID, binary */
	tn += tlv(t + tn, 0x20, ssl, sn);
	tn += tlv(t + tn, 0x30, "netns", 5);           /* NETNS, ignored */
	tn += tlv(t + tn, 0xe0, "\xff\x00", 2);         /* custom */
	size_t n = v2(b, 0x21, 0x21, a6, sizeof(a6), t, tn);
	expect_header(b, n, 0, &h);
	CHECK(addr_is(&h.src, "2001:db8::1"));
	CHECK(h.has_authority);
	CHECK_MEM_EQ(h.authority.ptr, h.authority.len, "mx.example.org", 14);
	CHECK(h.has_unique_id);
	CHECK_MEM_EQ(h.unique_id.ptr, h.unique_id.len, "\x00\x01\x02\xff", 4);
	CHECK(h.has_ssl);
	CHECK_INT_EQ(h.ssl.client, SMTP_PROXY_SSL_CLIENT_SSL | SMTP_PROXY_SSL_CLIENT_CERT_CONN |
					   SMTP_PROXY_SSL_CLIENT_CERT_SESS);
	CHECK_INT_EQ(h.ssl.verify, 0);
	CHECK_MEM_EQ(h.ssl.version.ptr, h.ssl.version.len, "TLSv1.3", 7);
	CHECK_MEM_EQ(h.ssl.cn.ptr, h.ssl.cn.len, "client.example", 14);
	CHECK_MEM_EQ(h.ssl.cipher.ptr, h.ssl.cipher.len, "TLS_AES_256_GCM_SHA384", 22);
	CHECK_MEM_EQ(h.ssl.sig_alg.ptr, h.ssl.sig_alg.len, "RSA-SHA256", 10);
	CHECK_MEM_EQ(h.ssl.key_alg.ptr, h.ssl.key_alg.len, "RSA2048", 7);
	CHECK(!h.crc_verified);

	/* SSL without sub-TLVs, verify failed; a UTF-8 authority */
	tn = 0;
	tn += tlv(t + tn, 0x20, "\x01\x00\x00\x00\x01", 5);
	tn += tlv(t + tn, 0x02, "m\xc3\xbc.example", 11);
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_header(b, n, 0, &h);
	CHECK(h.has_ssl && h.ssl.client == 1 && h.ssl.verify == 1 && h.ssl.version.len == 0);
	CHECK(h.has_authority && h.authority.len == 11);

	/* UNIQUE_ID of 128 bytes is fine, 129 is not */
	uint8_t id[129];
	memset(id, 7, sizeof(id));
	tn = tlv(t, 0x05, id, 128);
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_header(b, n, 0, &h);
	CHECK_INT_EQ(h.unique_id.len, 128);
	tn = tlv(t, 0x05, id, 129);
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_error(b, n, 0, -EINVAL, "UNIQUE_ID TLV too long");
}

static void test_v2_truncated_tlvs(void)
{
	uint8_t b[700], t[300];
	size_t n, tn;

	/* fewer than 3 bytes left for a TLV header */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x04", 1);
	expect_error(b, n, 0, -EINVAL, "truncated TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x04\x00", 2);
	expect_error(b, n, 0, -EINVAL, "truncated TLV");
	/* a value that runs past the header */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x02\x00\x05mx", 5);
	expect_error(b, n, 0, -EINVAL, "TLV longer than the header");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x04\xff\xff", 3);
	expect_error(b, n, 0, -EINVAL, "TLV longer than the header");
	/* good TLV, then a truncated one */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x04\x00\x00\x02\x00", 5);
	expect_error(b, n, 0, -EINVAL, "truncated TLV");
	/* SSL: too short for client and verify; sub-TLVs truncated or too long */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x20\x00\x04\x01\x00\x00\x00", 7);
	expect_error(b, n, 0, -EINVAL, "short SSL TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x20\x00\x07\x01\x00\x00\x00\x00\x21\x00", 10);
	expect_error(b, n, 0, -EINVAL, "truncated SSL sub-TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4),
	       "\x20\x00\x09\x01\x00\x00\x00\x00\x21\x00\x02T", 12);
	expect_error(b, n, 0, -EINVAL, "SSL sub-TLV longer than its TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4),
	       "\x20\x00\x0a\x01\x00\x00\x00\x00\x22\x00\x02\x01\x02", 13);
	expect_error(b, n, 0, -EINVAL, "SSL sub-TLV 0x22 is not text");
	tn = 0;
	t[tn++] = 0x20;
	t[tn++] = 0;
	t[tn++] = 5 + 4 + 4;
	memcpy(t + tn, "\x01\0\0\0\0\x21\x00\x01" "A\x21\x00\x01" "B", 13);
	tn += 13;
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_error(b, n, 0, -EINVAL, "repeated SSL sub-TLV 0x21");
	/* AUTHORITY: empty, too long, control characters, not UTF-8, twice */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x02\x00\x00", 3);
	expect_error(b, n, 0, -EINVAL, "bad AUTHORITY TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x02\x00\x03" "a\r\n", 6);
	expect_error(b, n, 0, -EINVAL, "bad AUTHORITY TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x02\x00\x02\xc3\x28", 5);
	expect_error(b, n, 0, -EINVAL, "bad AUTHORITY TLV");
	memset(t, 'a', sizeof(t));
	tn = tlv(t, 0x02, t + 3, 256);
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_error(b, n, 0, -EINVAL, "bad AUTHORITY TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x02\x00\x01" "a\x02\x00\x01" "b", 8);
	expect_error(b, n, 0, -EINVAL, "repeated AUTHORITY TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4),
	       "\x20\x00\x05\x01\0\0\0\0\x20\x00\x05\x01\0\0\0\0", 16);
	expect_error(b, n, 0, -EINVAL, "repeated SSL TLV");
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x05\x00\x01" "a\x05\x00\x01" "b", 8);
	expect_error(b, n, 0, -EINVAL, "repeated UNIQUE_ID TLV");
	/* CRC32C must be 4 bytes */
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), "\x03\x00\x03\0\0\0", 6);
	expect_error(b, n, 0, -EINVAL, "bad CRC32C TLV length");
}

static void test_v2_crc32c(void)
{
	/* the standard check value of CRC-32C */
	CHECK_INT_EQ(smtp_proxy_crc32c("123456789", 9), 0xe3069283u);
	/* RFC 3720 B.4: 32 bytes of zeros */
	uint8_t z[32] = { 0 };
	CHECK_INT_EQ(smtp_proxy_crc32c(z, 32), 0x8a9136aau);
	CHECK_INT_EQ(smtp_proxy_crc32c(z, 0), 0);

	uint8_t b[700], t[64];
	size_t tn = 0;
	tn += tlv(t + tn, 0x02, "mx.example.org", 14);
	tn += tlv(t + tn, 0x03, "\0\0\0\0", 4);
	tn += tlv(t + tn, 0x04, "pad", 3);
	size_t n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	/* specification 2.2.3: CRC over the header with the field zeroed, big-endian */
	size_t at = 16 + 12 + 17 + 3;
	uint32_t crc = smtp_proxy_crc32c(b, n);
	b[at] = (uint8_t)(crc >> 24);
	b[at + 1] = (uint8_t)(crc >> 16);
	b[at + 2] = (uint8_t)(crc >> 8);
	b[at + 3] = (uint8_t)crc;
	struct smtp_proxy_header h;
	expect_header(b, n, 0, &h);
	CHECK(h.crc_verified);
	CHECK(h.has_authority);
	/* a changed address or TLV value byte: mismatch (type and length bytes would be
	 * other errors). Layout: addresses 16..27, AUTHORITY value 31..44, CRC value 48..51,
	 * NOOP value 55..57. */
	static const size_t ranges[][2] = { { 16, 28 }, { 31, 45 }, { 55, 58 } };
	CHECK_INT_EQ(n, 58);
	for (size_t r = 0; r < 3; r++) {
		for (size_t i = ranges[r][0]; i < ranges[r][1]; i++) {
			b[i] ^= 0x01;
			char err[64];
			ssize_t rc = parse_copy(b, n, 0, &h, err, sizeof(err));
			if (rc != -EINVAL || strcmp(err, "CRC32C mismatch") != 0)
				fprintf(stderr, "  byte %zu: %zd %s\n", i, rc, err);
			CHECK_INT_EQ(rc, -EINVAL);
			b[i] ^= 0x01;
		}
	}
	b[at + 3] ^= 0x80;
	expect_error(b, n, 0, -EINVAL, "CRC32C mismatch");
	b[at + 3] ^= 0x80;
	/* two CRC TLVs */
	tn += tlv(t + tn, 0x03, "\0\0\0\0", 4);
	n = v2(b, 0x21, 0x11, a4, sizeof(a4), t, tn);
	expect_error(b, n, 0, -EINVAL, "repeated CRC32C TLV");
}

static void test_names(void)
{
	CHECK_STR_EQ(smtp_proxy_command_name(SMTP_PROXY_CMD_MAX), "?");
	CHECK_STR_EQ(smtp_proxy_family_name(SMTP_PROXY_FAM_UNIX), "UNIX");
	CHECK_STR_EQ(smtp_proxy_family_name(SMTP_PROXY_FAM_MAX), "?");
	CHECK_STR_EQ(smtp_proxy_transport_name(SMTP_PROXY_TRANS_DGRAM), "DGRAM");
	CHECK_STR_EQ(smtp_proxy_transport_name(SMTP_PROXY_TRANS_MAX), "?");
	char reply[128];
	snprintf(reply, sizeof(reply), SMTP_PROXY_REPLY_FAILED, "mx.example.org");
	CHECK_STR_EQ(reply, "421 4.3.0 mx.example.org Server local error");
}

int main(void)
{
	RUN_TEST(test_v1_examples);
	RUN_TEST(test_v1_unknown);
	RUN_TEST(test_v1_bad);
	RUN_TEST(test_v2_basic);
	RUN_TEST(test_v2_families);
	RUN_TEST(test_v2_bad);
	RUN_TEST(test_v2_tlvs);
	RUN_TEST(test_v2_truncated_tlvs);
	RUN_TEST(test_v2_crc32c);
	RUN_TEST(test_names);
	return TEST_RESULT();
}
