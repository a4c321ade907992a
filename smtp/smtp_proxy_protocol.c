/* PROXY protocol v1 and v2 receiver (HAProxy doc/proxy-protocol.txt); see
 * smtp_proxy_protocol.h for what is accepted and how it relates to Postfix. */
#include "smtp/smtp_proxy_protocol.h"

#include <errno.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "smtp/smtp_address.h"

/* Specification 2.2: \r\n\r\n\0\r\nQUIT\n */
static const uint8_t v2_signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* TLV types (specification 2.2). */
enum {
	PP2_TYPE_ALPN = 0x01,
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_CRC32C = 0x03,
	PP2_TYPE_NOOP = 0x04,
	PP2_TYPE_UNIQUE_ID = 0x05,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
	PP2_SUBTYPE_SSL_CN = 0x22,
	PP2_SUBTYPE_SSL_CIPHER = 0x23,
	PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
	PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
};

const char *smtp_proxy_command_name(enum smtp_proxy_command c)
{
	switch (c) {
	case SMTP_PROXY_CMD_LOCAL:
		return "LOCAL";
	case SMTP_PROXY_CMD_PROXY:
		return "PROXY";
	case SMTP_PROXY_CMD_MAX:
		break;
	}
	return "?";
}

const char *smtp_proxy_family_name(enum smtp_proxy_family f)
{
	switch (f) {
	case SMTP_PROXY_FAM_UNSPEC:
		return "UNSPEC";
	case SMTP_PROXY_FAM_INET:
		return "INET";
	case SMTP_PROXY_FAM_INET6:
		return "INET6";
	case SMTP_PROXY_FAM_UNIX:
		return "UNIX";
	case SMTP_PROXY_FAM_MAX:
		break;
	}
	return "?";
}

const char *smtp_proxy_transport_name(enum smtp_proxy_transport t)
{
	switch (t) {
	case SMTP_PROXY_TRANS_UNSPEC:
		return "UNSPEC";
	case SMTP_PROXY_TRANS_STREAM:
		return "STREAM";
	case SMTP_PROXY_TRANS_DGRAM:
		return "DGRAM";
	case SMTP_PROXY_TRANS_MAX:
		break;
	}
	return "?";
}

/* ---- CRC32C ---- */

/* Reflected Castagnoli polynomial, bit by bit: at most SMTP_PROXY_HEADER_MAX bytes per
 * connection, and only when the proxy sends the TLV. `crc` is the running register
 * (start with ~0, finish with ~). */
static uint32_t crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return crc;
}

uint32_t smtp_proxy_crc32c(const void *p, size_t n)
{
	return ~crc32c_update(~0u, p, n);
}

/* ---- Version 1 ---- */

/* IPv4 as specification 2.1 wants it: four decimal numbers 0..255, one dot between, no
 * leading zeros. */
static bool v1_ipv4(struct mx_span s, struct mx_inet_addr *a)
{
	size_t i = 0;

	memset(a, 0, sizeof(*a));
	a->family = AF_INET;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= s.len || s.ptr[i] != '.')
				return false;
			i++;
		}
		size_t start = i;
		unsigned v = 0;
		while (i < s.len && mx_ctype_is_digit(s.ptr[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s.ptr[i++] - '0');
		if (i == start || v > 255 || (i - start > 1 && s.ptr[start] == '0'))
			return false;
		a->bytes[part] = (uint8_t)v;
	}
	return i == s.len;
}

/* IPv6: hex groups and one "::" (inet_pton, which also takes the IPv4-mapped dotted
 * tail that inet_ntop writes, and rejects leading zeros in that tail). */
static bool v1_ipv6(struct mx_span s, struct mx_inet_addr *a)
{
	char b[INET6_ADDRSTRLEN];

	memset(a, 0, sizeof(*a));
	if (s.len == 0 || s.len >= sizeof(b) || !memchr(s.ptr, ':', s.len))
		return false;
	memcpy(b, s.ptr, s.len);
	b[s.len] = '\0';
	a->family = AF_INET6;
	return inet_pton(AF_INET6, b, a->bytes) == 1;
}

/* A decimal port 0..65535 without leading zeros (specification 2.1; Postfix's
 * valid_hostport agrees). */
static bool v1_port(struct mx_span s, uint16_t *port)
{
	unsigned v = 0;

	if (s.len == 0 || s.len > 5 || (s.len > 1 && s.ptr[0] == '0'))
		return false;
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] < '0' || s.ptr[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s.ptr[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

static ssize_t parse_v1(const char *p, size_t len, unsigned flags, struct smtp_proxy_header *out,
			char *err, size_t errlen)
{
	static const char magic[] = "PROXY ";
	size_t m = len < 6 ? len : 6;
	size_t scan = len < SMTP_PROXY_V1_MAX ? len : SMTP_PROXY_V1_MAX;

	if (memcmp(p, magic, m) != 0)
		return mx_errf(err, errlen, -EINVAL, "unrecognized protocol header");
	/* Printable US-ASCII up to CRLF; a CR anywhere else, or an LF without its CR, ends
	 * nothing (specification 2.1: no single CR or LF as the line end). */
	size_t end = 0;
	bool found = false;
	for (size_t i = 0; i < scan; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\r') {
			if (i + 1 < len && p[i + 1] != '\n')
				return mx_errf(err, errlen, -EINVAL, "bare CR in protocol header");
			if (i + 1 < len) {
				end = i;
				found = true;
				break;
			}
			continue; /* the LF has not arrived yet */
		}
		if (ch == '\n')
			return mx_errf(err, errlen, -EINVAL, "bare LF in protocol header");
		if (ch < 0x20 || ch > 0x7e)
			return mx_errf(err, errlen, -EINVAL, "non-ASCII byte in protocol header");
	}
	if (!found) {
		if (len >= SMTP_PROXY_V1_MAX)
			return mx_errf(err, errlen, -EMSGSIZE,
				       "missing protocol header terminator");
		return 0;
	}
	size_t total = end + 2;
	if (total > SMTP_PROXY_V1_MAX)
		return mx_errf(err, errlen, -EMSGSIZE, "missing protocol header terminator");

	/* Fields separated by exactly one space. */
	struct mx_span f[7];
	size_t nf = 0, start = 0;
	for (size_t i = 0; i <= end; i++) {
		if (i < end && p[i] != ' ')
			continue;
		if (nf == 7)
			return mx_errf(err, errlen, -EINVAL, "too many fields in protocol header");
		f[nf++] = mx_span_make(p + start, i - start);
		start = i + 1;
	}
	memset(out, 0, sizeof(*out));
	out->version = 1;
	out->command = SMTP_PROXY_CMD_PROXY;
	if (nf >= 2 && mx_span_eq(f[1], MX_SPAN_LIT("UNKNOWN"))) {
		/* "the receiver must ignore anything presented before the CRLF" */
		if (!(flags & SMTP_PROXY_ACCEPT_UNKNOWN))
			return mx_errf(err, errlen, -EPROTONOSUPPORT,
				       "UNKNOWN protocol type refused");
		out->family = SMTP_PROXY_FAM_UNSPEC;
		out->transport = SMTP_PROXY_TRANS_UNSPEC;
		out->use_connection = true;
		return (ssize_t)total;
	}
	bool v6;
	if (nf >= 2 && mx_span_eq(f[1], MX_SPAN_LIT("TCP4")))
		v6 = false;
	else if (nf >= 2 && mx_span_eq(f[1], MX_SPAN_LIT("TCP6")))
		v6 = true;
	else
		return mx_errf(err, errlen, -EINVAL, "bad or missing protocol type");
	if (nf != 6)
		return mx_errf(err, errlen, -EINVAL, "wrong number of fields in protocol header");
	out->family = v6 ? SMTP_PROXY_FAM_INET6 : SMTP_PROXY_FAM_INET;
	out->transport = SMTP_PROXY_TRANS_STREAM;
	if (!(v6 ? v1_ipv6(f[2], &out->src) : v1_ipv4(f[2], &out->src)))
		return mx_errf(err, errlen, -EINVAL, "bad or missing client address");
	if (!(v6 ? v1_ipv6(f[3], &out->dst) : v1_ipv4(f[3], &out->dst)))
		return mx_errf(err, errlen, -EINVAL, "bad or missing server address");
	if (!v1_port(f[4], &out->src_port))
		return mx_errf(err, errlen, -EINVAL, "bad or missing client port");
	if (!v1_port(f[5], &out->dst_port))
		return mx_errf(err, errlen, -EINVAL, "bad or missing server port");
	return (ssize_t)total;
}

/* ---- Version 2 ---- */

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A TLV string: UTF-8 without control characters. */
static bool tlv_text(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return smtp_utf8_valid((const char *)p, n);
}

/* The sub-TLVs of PP2_TYPE_SSL (after its client and verify fields). */
static int parse_ssl(const uint8_t *v, size_t n, struct smtp_proxy_ssl *ssl, char *err,
		     size_t errlen)
{
	if (n < 5)
		return mx_errf(err, errlen, -EINVAL, "short SSL TLV");
	ssl->client = v[0];
	ssl->verify = be32(v + 1);
	for (size_t pos = 5; pos < n;) {
		if (n - pos < 3)
			return mx_errf(err, errlen, -EINVAL, "truncated SSL sub-TLV");
		uint8_t type = v[pos];
		size_t tlen = be16(v + pos + 1);
		if (tlen > n - pos - 3)
			return mx_errf(err, errlen, -EINVAL, "SSL sub-TLV longer than its TLV");
		const uint8_t *val = v + pos + 3;
		struct mx_span *dst = NULL;
		switch (type) {
		case PP2_SUBTYPE_SSL_VERSION:
			dst = &ssl->version;
			break;
		case PP2_SUBTYPE_SSL_CN:
			dst = &ssl->cn;
			break;
		case PP2_SUBTYPE_SSL_CIPHER:
			dst = &ssl->cipher;
			break;
		case PP2_SUBTYPE_SSL_SIG_ALG:
			dst = &ssl->sig_alg;
			break;
		case PP2_SUBTYPE_SSL_KEY_ALG:
			dst = &ssl->key_alg;
			break;
		default:
			break; /* unknown sub-TLVs are skipped */
		}
		if (dst) {
			if (dst->ptr)
				return mx_errf(err, errlen, -EINVAL, "repeated SSL sub-TLV 0x%02x",
					       type);
			if (!tlv_text(val, tlen))
				return mx_errf(err, errlen, -EINVAL,
					       "SSL sub-TLV 0x%02x is not text", type);
			*dst = mx_span_make((const char *)val, tlen);
		}
		pos += 3 + tlen;
	}
	return 0;
}

/* Walk the TLVs in h[from..total); verify a CRC32C over the whole header. */
static int parse_tlvs(const uint8_t *h, size_t from, size_t total, struct smtp_proxy_header *out,
		      char *err, size_t errlen)
{
	size_t crc_at = 0; /* offset of the CRC32C value, 0: none */

	for (size_t pos = from; pos < total;) {
		if (total - pos < 3)
			return mx_errf(err, errlen, -EINVAL, "truncated TLV");
		uint8_t type = h[pos];
		size_t tlen = be16(h + pos + 1);
		if (tlen > total - pos - 3)
			return mx_errf(err, errlen, -EINVAL, "TLV longer than the header");
		const uint8_t *val = h + pos + 3;
		switch (type) {
		case PP2_TYPE_AUTHORITY:
			if (out->has_authority)
				return mx_errf(err, errlen, -EINVAL, "repeated AUTHORITY TLV");
			if (tlen == 0 || tlen > 255 || !tlv_text(val, tlen))
				return mx_errf(err, errlen, -EINVAL, "bad AUTHORITY TLV");
			out->has_authority = true;
			out->authority = mx_span_make((const char *)val, tlen);
			break;
		case PP2_TYPE_CRC32C:
			if (crc_at)
				return mx_errf(err, errlen, -EINVAL, "repeated CRC32C TLV");
			if (tlen != 4)
				return mx_errf(err, errlen, -EINVAL, "bad CRC32C TLV length");
			crc_at = pos + 3;
			break;
		case PP2_TYPE_UNIQUE_ID:
			if (out->has_unique_id)
				return mx_errf(err, errlen, -EINVAL, "repeated UNIQUE_ID TLV");
			if (tlen > SMTP_PROXY_UNIQUE_ID_MAX)
				return mx_errf(err, errlen, -EINVAL, "UNIQUE_ID TLV too long");
			out->has_unique_id = true;
			out->unique_id = mx_span_make((const char *)val, tlen);
			break;
		case PP2_TYPE_SSL: {
			if (out->has_ssl)
				return mx_errf(err, errlen, -EINVAL, "repeated SSL TLV");
			int rc = parse_ssl(val, tlen, &out->ssl, err, errlen);
			if (rc < 0)
				return rc;
			out->has_ssl = true;
			break;
		}
		default:
			break; /* ALPN, NOOP, NETNS, custom and future types: ignored */
		}
		pos += 3 + tlen;
	}
	if (crc_at) {
		/* Specification 2.2.3: CRC32C of the header with the value zeroed. */
		static const uint8_t zero[4] = { 0, 0, 0, 0 };
		uint32_t crc = crc32c_update(~0u, h, crc_at);
		crc = crc32c_update(crc, zero, 4);
		crc = ~crc32c_update(crc, h + crc_at + 4, total - crc_at - 4);
		if (crc != be32(h + crc_at))
			return mx_errf(err, errlen, -EINVAL, "CRC32C mismatch");
		out->crc_verified = true;
	}
	return 0;
}

static ssize_t parse_v2(const uint8_t *h, size_t len, unsigned flags,
			struct smtp_proxy_header *out, char *err, size_t errlen)
{
	size_t m = len < sizeof(v2_signature) ? len : sizeof(v2_signature);

	if (memcmp(h, v2_signature, m) != 0)
		return mx_errf(err, errlen, -EINVAL, "unrecognized protocol header");
	if (len < 13)
		return 0;
	/* 13th byte: version in the high nibble (only 2), command in the low one. */
	if ((h[12] >> 4) != 2)
		return mx_errf(err, errlen, -EINVAL, "unrecognized protocol version");
	unsigned cmd = h[12] & 0x0f;
	if (cmd > 1)
		return mx_errf(err, errlen, -EINVAL, "bad command in proxy header");
	if (len < 14)
		return 0;
	unsigned fam = h[13] >> 4, trans = h[13] & 0x0f;
	/* For LOCAL the family "is ignored"; for PROXY unknown values "must be rejected". */
	if (cmd == 1 && (fam > 3 || trans > 2))
		return mx_errf(err, errlen, -EINVAL, "bad address family or transport");
	bool supported = h[13] == 0x11 || h[13] == 0x21;
	if (cmd == 1 && !supported && !(flags & SMTP_PROXY_ACCEPT_UNKNOWN))
		return mx_errf(err, errlen, -EPROTONOSUPPORT, "unsupported network protocol");
	if (len < SMTP_PROXY_V2_FIXED)
		return 0;
	size_t total = SMTP_PROXY_V2_FIXED + be16(h + 14);
	if (total > SMTP_PROXY_HEADER_MAX)
		return mx_errf(err, errlen, -EMSGSIZE, "protocol header longer than %d bytes",
			       SMTP_PROXY_HEADER_MAX);
	if (len < total)
		return 0;

	memset(out, 0, sizeof(*out));
	out->version = 2;
	out->command = cmd == 1 ? SMTP_PROXY_CMD_PROXY : SMTP_PROXY_CMD_LOCAL;
	out->family = fam < SMTP_PROXY_FAM_MAX ? (enum smtp_proxy_family)fam : SMTP_PROXY_FAM_UNSPEC;
	out->transport = trans < SMTP_PROXY_TRANS_MAX ? (enum smtp_proxy_transport)trans :
							SMTP_PROXY_TRANS_UNSPEC;
	if (cmd == 0) {
		/* "discard the protocol block including the family" */
		out->use_connection = true;
		return (ssize_t)total;
	}

	/* The address block, then TLVs. Unknown combinations (such as INET over UNSPEC)
	 * have no defined address size: nothing after the fixed part is read. */
	size_t addr_len;
	switch (h[13]) {
	case 0x11:
	case 0x12:
		addr_len = 12;
		break;
	case 0x21:
	case 0x22:
		addr_len = 36;
		break;
	case 0x31:
	case 0x32:
		addr_len = 216;
		break;
	default:
		out->use_connection = true;
		return (ssize_t)total;
	}
	if (total - SMTP_PROXY_V2_FIXED < addr_len)
		return mx_errf(err, errlen, -EINVAL, "short address field");
	const uint8_t *a = h + SMTP_PROXY_V2_FIXED;
	if (h[13] == 0x11) {
		out->src.family = AF_INET;
		memcpy(out->src.bytes, a, 4);
		out->dst.family = AF_INET;
		memcpy(out->dst.bytes, a + 4, 4);
		out->src_port = be16(a + 8);
		out->dst_port = be16(a + 10);
	} else if (h[13] == 0x21) {
		out->src.family = AF_INET6;
		memcpy(out->src.bytes, a, 16);
		out->dst.family = AF_INET6;
		memcpy(out->dst.bytes, a + 16, 16);
		out->src_port = be16(a + 32);
		out->dst_port = be16(a + 34);
	} else {
		out->use_connection = true; /* accepted by SMTP_PROXY_ACCEPT_UNKNOWN */
	}
	int rc = parse_tlvs(h, SMTP_PROXY_V2_FIXED + addr_len, total, out, err, errlen);
	if (rc < 0)
		return rc;
	return (ssize_t)total;
}

ssize_t smtp_proxy_parse(const void *buf, size_t len, unsigned flags,
			 struct smtp_proxy_header *out, char *err, size_t errlen)
{
	const uint8_t *p = buf;

	if (err && errlen)
		err[0] = '\0';
	if (len == 0)
		return 0;
	/* Specification 2.2: the v2 signature starts with CR, v1 with "PROXY"; nothing
	 * else is this protocol and the connection must be dropped. */
	if (p[0] == 0x0d)
		return parse_v2(p, len, flags, out, err, errlen);
	if (p[0] == 'P')
		return parse_v1(buf, len, flags, out, err, errlen);
	return mx_errf(err, errlen, -EINVAL, "unrecognized protocol header");
}
