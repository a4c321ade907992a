/* IPv4/IPv6 addresses without the socket API's sockaddr juggling. */
#ifndef MXGATE_INET_H
#define MXGATE_INET_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct mx_inet_addr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bytes[16]; /* network order; IPv4 uses the first 4 */
};

/* Parse a numeric address ("192.0.2.1", "2001:db8::1"; IPv4-mapped IPv6 stays IPv6).
 * Returns true on success. */
static inline bool mx_inet_parse(const char *s, struct mx_inet_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->bytes) == 1) {
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, s, out->bytes) == 1) {
		out->family = AF_INET6;
		return true;
	}
	return false;
}

/* Format into buf (INET6_ADDRSTRLEN is enough; too small a buffer gets ""); returns buf.
 * IPv4 by hand: glibc's inet_ntop() formats it with sprintf(), and a screen rejecting a
 * bot formats its client's address several times (log lines, cache key): that sprintf was
 * 4% of the gateway's CPU turning pregreeting bots away (perf/results/
 * 2026-12-07-screen-memif.md). Same text as inet_ntop's (RFC 4001 3: dotted decimal, no
 * leading zeros). */
static inline const char *mx_inet_format(const struct mx_inet_addr *a, char *buf, size_t len)
{
	if (a->family == AF_INET && len >= INET_ADDRSTRLEN) {
		char *p = buf;
		for (int i = 0; i < 4; i++) {
			unsigned v = a->bytes[i];
			if (v >= 100)
				*p++ = (char)('0' + v / 100);
			if (v >= 10)
				*p++ = (char)('0' + v / 10 % 10);
			*p++ = (char)('0' + v % 10);
			*p++ = i < 3 ? '.' : '\0';
		}
		return buf;
	}
	if (!inet_ntop(a->family, a->bytes, buf, (socklen_t)len) && len)
		buf[0] = '\0';
	return buf;
}

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports) as the
 * IPv4 address it carries; others unchanged. Postfix matches such clients as IPv4. */
static inline struct mx_inet_addr mx_inet_unmap(const struct mx_inet_addr *a)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct mx_inet_addr r = *a;
	if (a->family == AF_INET6 && memcmp(a->bytes, prefix, 12) == 0) {
		memset(&r, 0, sizeof(r));
		r.family = AF_INET;
		memcpy(r.bytes, a->bytes + 12, 4);
	}
	return r;
}

#endif
