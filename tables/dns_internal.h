/* Wire-name helpers shared by the DNS codec's files (dns_name.c, dns_query.c,
 * dns_message.c); not part of the API. A "wire name" here is always uncompressed: labels
 * (length octet, then the octets) ending with the root's zero octet, at most
 * DNS_NAME_WIRE_MAX octets. */
#ifndef MXGATE_TABLES_DNS_INTERNAL_H
#define MXGATE_TABLES_DNS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/dns_message.h"

/* RR TYPE of the EDNS0 pseudo-record (RFC 6891 6.1.1) and the class IN. */
#define DNS_WIRE_TYPE_OPT 41
#define DNS_WIRE_CLASS_IN 1

static inline uint16_t dns_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t dns_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void dns_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Read the possibly compressed name at pkt[off] (RFC 1035 4.1.4) into wire (at least
 * DNS_NAME_WIRE_MAX octets), as received (no case change). *next is the offset after the
 * name's bytes at off (after its first pointer, or after its root octet). Returns 0 or
 * -EBADMSG with the reason in err: a label or pointer past len, a pointer that does not
 * point before the labels that led to it, more than DNS_POINTERS_MAX pointers, a label type
 * other than 00 and 11 (RFC 6891 5 retired 01, 10 is reserved), a name over 255 octets. */
int dns_wire_name_unpack(const uint8_t *pkt, size_t len, size_t off, uint8_t *wire,
			 size_t *wire_len, size_t *next, char *err, size_t errlen);

/* The same, with the labels read from before pkt[fold_below] lower-cased: a name in an
 * answer that points into the question (fold_below: the question name's end) takes the
 * question's letters, and with 0x20 those are our random pattern, not anyone's spelling. */
int dns_wire_name_unpack_fold(const uint8_t *pkt, size_t len, size_t off, uint8_t *wire,
			      size_t *wire_len, size_t *next, size_t fold_below, char *err,
			      size_t errlen);

/* Equal names, ASCII case ignored (RFC 4343). Length octets are at most 63, below 'A', so a
 * byte-wise fold over the whole wire form is exact. */
bool dns_wire_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* Is `suffix` the name itself or one of its ancestors (RFC 4343 case rules)? */
bool dns_wire_name_under(const uint8_t *name, size_t nlen, const uint8_t *suffix,
			 size_t slen);

/* Lower-case the ASCII letters of a wire name in place. */
void dns_wire_name_lower(uint8_t *wire, size_t len);

/* Presentation form of a wire name, in its case on the wire (a PTR name is shown as its
 * zone spells it, as the libc's getnameinfo() gives it to Postfix; lower-case the wire
 * form first for a key), no trailing dot, "" for the root, with
 * RFC 1035 5.1 escapes: "\." and "\\" for a dot or backslash inside a label, "\DDD" for
 * octets outside '!'..'~'. NUL-terminated. Returns 0 with *outlen, or -ENOSPC
 * (DNS_NAME_TEXT_MAX + 1 is always enough). */
int dns_wire_name_text(const uint8_t *wire, size_t len, char *out, size_t cap, size_t *outlen);

/* Wire form of a name that dns_name_normalize() produced (len octets, "" the root) into
 * out (DNS_NAME_WIRE_MAX octets). Returns the wire length. */
size_t dns_name_to_wire(const char *name, size_t len, uint8_t *out);

#endif
