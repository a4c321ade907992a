/* DNS names: presentation validation and normalisation, wire decompression (RFC 1035
 * 4.1.4) and the names mxgate asks for (reverse lookups, DNSBL and RHSBL queries). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "tables/dns_internal.h"
#include "tables/dns_message.h"

int dns_name_normalize(const char *in, size_t len, char *out, size_t cap, size_t *outlen)
{
	if (!in || len == 0)
		return -EINVAL;
	if (len == 1 && in[0] == '.') {
		/* the root */
		if (cap < 1)
			return -ENOSPC;
		out[0] = '\0';
		if (outlen)
			*outlen = 0;
		return 0;
	}
	if (in[len - 1] == '.')
		len--; /* one trailing dot: the name is absolute, as every name we ask is */
	size_t label = 0;
	bool too_long = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '.') {
			if (label == 0)
				return -EINVAL; /* leading dot, or ".." */
			label = 0;
		} else if (mx_ctype_is_hostname(c)) {
			if (++label > DNS_LABEL_MAX)
				too_long = true;
		} else {
			return -EINVAL;
		}
	}
	if (label == 0)
		return -EINVAL; /* "a.." */
	if (too_long || len > DNS_HOSTNAME_MAX)
		return -ENAMETOOLONG;
	if (cap < len + 1)
		return -ENOSPC;
	for (size_t i = 0; i < len; i++)
		out[i] = mx_ctype_lower(in[i]);
	out[len] = '\0';
	if (outlen)
		*outlen = len;
	return 0;
}

bool dns_name_valid(const char *in, size_t len)
{
	char buf[DNS_HOSTNAME_MAX + 1];
	return dns_name_normalize(in, len, buf, sizeof(buf), NULL) == 0;
}

size_t dns_name_to_wire(const char *name, size_t len, uint8_t *out)
{
	size_t n = 0, start = 0;
	if (len == 0) {
		out[0] = 0;
		return 1;
	}
	/* a normalised name: labels of 1..63 octets, at most 253 octets, so <= 255 on the wire */
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '.') {
			size_t l = i - start;
			out[n++] = (uint8_t)l;
			memcpy(out + n, name + start, l);
			n += l;
			start = i + 1;
		}
	}
	out[n++] = 0;
	return n;
}

int dns_wire_name_unpack(const uint8_t *pkt, size_t len, size_t off, uint8_t *wire,
			 size_t *wire_len, size_t *next, char *err, size_t errlen)
{
	return dns_wire_name_unpack_fold(pkt, len, off, wire, wire_len, next, 0, err, errlen);
}

int dns_wire_name_unpack_fold(const uint8_t *pkt, size_t len, size_t off, uint8_t *wire,
			      size_t *wire_len, size_t *next, size_t fold_below, char *err,
			      size_t errlen)
{
	size_t pos = off;
	size_t limit = off; /* a pointer must point before the labels that led to it */
	size_t n = 0;
	unsigned jumps = 0;
	bool jumped = false;

	for (;;) {
		if (pos >= len)
			return mx_errf(err, errlen, -EBADMSG, "name at %zu runs past the end", off);
		uint8_t c = pkt[pos];
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return mx_errf(err, errlen, -EBADMSG,
					       "name at %zu: pointer past the end", off);
			size_t target = ((size_t)(c & 0x3f) << 8) | pkt[pos + 1];
			if (!jumped) {
				*next = pos + 2;
				jumped = true;
			}
			if (target >= limit)
				return mx_errf(err, errlen, -EBADMSG,
					       "name at %zu: pointer to %zu does not point backwards",
					       off, target);
			if (++jumps > DNS_POINTERS_MAX)
				return mx_errf(err, errlen, -EBADMSG,
					       "name at %zu: too many pointers", off);
			limit = target;
			pos = target;
			continue;
		}
		if (c & 0xc0)
			return mx_errf(err, errlen, -EBADMSG,
				       "name at %zu: unknown label type 0x%02x", off, c & 0xc0);
		if (c == 0) {
			wire[n++] = 0; /* room: every label below left one octet for this */
			if (!jumped)
				*next = pos + 1;
			*wire_len = n;
			return 0;
		}
		if (c > len - pos - 1)
			return mx_errf(err, errlen, -EBADMSG, "name at %zu: label past the end",
				       off);
		/* this label and at least the root octet must fit in 255 */
		if (n + 1 + c + 1 > DNS_NAME_WIRE_MAX)
			return mx_errf(err, errlen, -EBADMSG,
				       "name at %zu: longer than %d octets", off,
				       DNS_NAME_WIRE_MAX);
		memcpy(wire + n, pkt + pos, (size_t)c + 1);
		if (pos < fold_below)
			dns_wire_name_lower(wire + n + 1, c);
		n += (size_t)c + 1;
		pos += (size_t)c + 1;
	}
}

bool dns_wire_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (mx_ctype_lower((char)a[i]) != mx_ctype_lower((char)b[i]))
			return false;
	return true;
}

bool dns_wire_name_under(const uint8_t *name, size_t nlen, const uint8_t *suffix, size_t slen)
{
	/* try the suffix at every label boundary of name */
	for (size_t p = 0; p < nlen;) {
		if (nlen - p == slen)
			return dns_wire_name_eq(name + p, nlen - p, suffix, slen);
		if (nlen - p < slen || name[p] == 0)
			return false;
		p += (size_t)name[p] + 1;
	}
	return false;
}

void dns_wire_name_lower(uint8_t *wire, size_t len)
{
	for (size_t i = 0; i < len; i++)
		wire[i] = (uint8_t)mx_ctype_lower((char)wire[i]);
}

int dns_wire_name_text(const uint8_t *wire, size_t len, char *out, size_t cap, size_t *outlen)
{
	size_t n = 0, p = 0;
	while (p < len && wire[p] != 0) {
		size_t l = wire[p++];
		if (n > 0) {
			if (n + 1 >= cap)
				return -ENOSPC;
			out[n++] = '.';
		}
		for (size_t i = 0; i < l && p < len; i++, p++) {
			unsigned char c = wire[p];
			char esc[5];
			size_t el;
			if (c == '.' || c == '\\') {
				esc[0] = '\\';
				esc[1] = (char)c;
				el = 2;
			} else if (c <= ' ' || c > '~') {
				snprintf(esc, sizeof(esc), "\\%03u", c);
				el = 4;
			} else {
				esc[0] = (char)c;
				el = 1;
			}
			if (n + el >= cap)
				return -ENOSPC;
			memcpy(out + n, esc, el);
			n += el;
		}
	}
	if (cap < 1 || n >= cap)
		return -ENOSPC;
	out[n] = '\0';
	if (outlen)
		*outlen = n;
	return 0;
}

/* The labels of an address, lowest first, each followed by a dot: "4.3.2.1." or 32
 * nibbles "b.a.9.8....". Returns the length (at most 64), or 0 for an unknown family. */
static size_t dns_addr_labels(const struct mx_inet_addr *in, char out[65], bool *v6)
{
	static const char hex[] = "0123456789abcdef";
	struct mx_inet_addr a = mx_inet_unmap(in);
	size_t n = 0;
	if (a.family == AF_INET) {
		*v6 = false;
		for (int i = 3; i >= 0; i--)
			n += (size_t)snprintf(out + n, 65 - n, "%u.", a.bytes[i]);
		return n;
	}
	if (a.family == AF_INET6) {
		*v6 = true;
		for (int i = 15; i >= 0; i--) {
			out[n++] = hex[a.bytes[i] & 0xf];
			out[n++] = '.';
			out[n++] = hex[a.bytes[i] >> 4];
			out[n++] = '.';
		}
		out[n] = '\0';
		return n;
	}
	return 0;
}

/* Write prefix + suffix into out as one name; -ENAMETOOLONG past DNS_HOSTNAME_MAX. */
static int dns_join(const char *prefix, size_t plen, const char *suffix, size_t slen,
		    char *out, size_t cap)
{
	if (plen + slen > DNS_HOSTNAME_MAX)
		return -ENAMETOOLONG;
	if (cap < plen + slen + 1)
		return -ENOSPC;
	memcpy(out, prefix, plen);
	memcpy(out + plen, suffix, slen);
	out[plen + slen] = '\0';
	return 0;
}

int dns_name_reverse(const struct mx_inet_addr *a, char *out, size_t cap)
{
	char labels[65];
	bool v6;
	size_t n = dns_addr_labels(a, labels, &v6);
	if (n == 0)
		return -EAFNOSUPPORT;
	return v6 ? dns_join(labels, n, "ip6.arpa", 8, out, cap)
		  : dns_join(labels, n, "in-addr.arpa", 12, out, cap);
}

/* A zone for a DNSBL or RHSBL name: a valid name that is not the root. */
static int dns_zone(const char *zone, char *out, size_t *len)
{
	if (!zone)
		return -EINVAL;
	int rc = dns_name_normalize(zone, strlen(zone), out, DNS_HOSTNAME_MAX + 1, len);
	if (rc == 0 && *len == 0)
		return -EINVAL;
	return rc == -ENAMETOOLONG ? -EINVAL : rc;
}

int dns_name_dnsbl(const struct mx_inet_addr *a, const char *zone, char *out, size_t cap)
{
	char z[DNS_HOSTNAME_MAX + 1], labels[65];
	size_t zlen;
	bool v6;
	int rc = dns_zone(zone, z, &zlen);
	if (rc < 0)
		return rc;
	size_t n = dns_addr_labels(a, labels, &v6);
	if (n == 0)
		return -EAFNOSUPPORT;
	return dns_join(labels, n, z, zlen, out, cap);
}

int dns_name_rhsbl(const char *domain, const char *zone, char *out, size_t cap)
{
	char d[DNS_HOSTNAME_MAX + 2], z[DNS_HOSTNAME_MAX + 1];
	size_t dlen, zlen;
	if (!domain || domain[0] == '[')
		return -EDOM; /* an address literal: Postfix skips RHSBL lookups for it */
	int rc = dns_name_normalize(domain, strlen(domain), d, DNS_HOSTNAME_MAX + 1, &dlen);
	if (rc < 0 || dlen == 0)
		return rc == -ENAMETOOLONG ? -ENAMETOOLONG : -EINVAL;
	/* Postfix: "skip both RHSBL and RHSWL queries for names ending in a numerical
	 * suffix" (an address written as a domain) */
	const char *last = strrchr(d, '.');
	last = last ? last + 1 : d;
	if (last[strspn(last, "0123456789")] == '\0')
		return -EDOM;
	rc = dns_zone(zone, z, &zlen);
	if (rc < 0)
		return rc;
	d[dlen++] = '.';
	return dns_join(d, dlen, z, zlen, out, cap);
}
