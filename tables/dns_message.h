/* The DNS message codec for mxgate's resolver service: stub-resolver queries out, hostile
 * responses in, names for reverse, DNSBL and RHSBL lookups. Sans-I/O: no sockets, no clock,
 * no logging, no global state; the caller owns every buffer.
 *
 *   dns_query_init()      a query (RFC 1035 4.1): the caller's ID, RD set, one question of
 *                         class IN, an optional EDNS0 OPT record (RFC 6891), and DNS 0x20
 *                         mixed case of the question name from the caller's random bits
 *                         (draft-vixie-dnsext-dns0x20). The struct is kept until the answer
 *                         arrives: the response is checked against it.
 *   dns_query_encode()    its bytes; dns_tcp_frame() adds the TCP length (RFC 1035 4.2.2).
 *   dns_response_parse()  a response (UDP datagram or one TCP message) into a dns_answer.
 *   dns_tcp_reader        splits a TCP byte stream into messages, any split accepted.
 *   dns_name_*()          presentation names: validation, normalisation, reverse-lookup
 *                         names (RFC 1035 3.5, RFC 3596 2.5), DNSBL and RHSBL query names.
 *
 * A response is hostile until proven otherwise. Before anything else it must be a response
 * (QR) to a standard query (opcode 0) with our ID and exactly one question equal to ours:
 * the name byte for byte (so the 0x20 case pattern must come back unchanged), the type and
 * class IN. Anything else is -ENOMSG, "not an answer to this query": a UDP caller drops the
 * datagram and keeps waiting (it may be a spoofing attempt). Every length is checked against
 * the end of the packet; names are decompressed with pointers that must point strictly
 * before the start of the labels that led to them (BIND's rule, so no loop can exist), at
 * most DNS_POINTERS_MAX of them, labels of at most 63 octets and names of at most 255
 * (RFC 1035 2.3.4). Anything malformed is -EBADMSG. */
#ifndef MXGATE_TABLES_DNS_MESSAGE_H
#define MXGATE_TABLES_DNS_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"

#define DNS_HEADER_LEN 12        /* RFC 1035 4.1.1 */
#define DNS_LABEL_MAX 63         /* RFC 1035 2.3.4 */
#define DNS_NAME_WIRE_MAX 255    /* octets of a name in wire form, root label included */
#define DNS_NAME_TEXT_MAX 1003   /* presentation of the longest wire name, every octet
                                    escaped as \DDD: 4 labels (63, 63, 63, 61 octets) */
#define DNS_HOSTNAME_MAX 253     /* presentation of a query name: 255 - 2 (RFC 1035 3.1) */
#define DNS_POINTERS_MAX 64      /* compression pointers followed in one name */
#define DNS_CNAME_DEPTH_MAX 10   /* CNAMEs followed from the question (Postfix's dns_lookup
                                    follows 10) */
#define DNS_RECORDS_MAX 100      /* records kept in an answer (Postfix: dns_rr_append) */
#define DNS_TXT_RECORD_MAX 4096  /* joined text of one TXT record kept (longer: truncated at a
                                    string boundary) */
#define DNS_TXT_STRINGS_MAX 512  /* character-strings kept per answer, all TXT records */
#define DNS_ARENA_MAX 40960      /* text of one answer: names, TXT; past it, records drop */
#define DNS_MESSAGE_MAX 65535    /* TCP length field (RFC 1035 4.2.2) */
#define DNS_UDP_MIN 512          /* RFC 1035 2.3.4; also the smallest EDNS size (RFC 6891
                                    6.2.5) */
#define DNS_0X20_RANDOM_BYTES 32 /* random bits enough for every letter of any name */

/* The record types mxgate asks for. */
enum dns_type {
	DNS_TYPE_A,
	DNS_TYPE_AAAA,
	DNS_TYPE_PTR,
	DNS_TYPE_MX,
	DNS_TYPE_TXT,
	DNS_TYPE_NS,
	DNS_TYPE_CNAME,
	DNS_TYPE_SOA,
	DNS_TYPE_MAX
};

const char *dns_type_name(enum dns_type t); /* "A", "AAAA", ... */
uint16_t dns_type_code(enum dns_type t);    /* the RR TYPE (RFC 1035 3.2.2, RFC 3596 2.1) */
/* The enum for a wire RR TYPE; returns 0 or -ENOENT for a type not in the enum. */
int dns_type_from_code(uint16_t code, enum dns_type *out);

/* What a parsed response says. */
enum dns_status {
	DNS_STATUS_OK,        /* NOERROR and at least one record of the type (count > 0, or
	                         every one was dropped: dropped > 0) */
	DNS_STATUS_NODATA,    /* NOERROR, the (final) name exists but has no such records */
	DNS_STATUS_NXDOMAIN,  /* RCODE 3: the (final) name does not exist */
	DNS_STATUS_SERVFAIL,  /* RCODE 2: try another server or later */
	DNS_STATUS_REFUSED,   /* RCODE 5: try another server */
	DNS_STATUS_RCODE,     /* any other RCODE (FORMERR, NOTIMP, EDNS BADVERS ...): rcode */
	DNS_STATUS_TRUNCATED, /* TC set: ask again over TCP; nothing else was parsed */
	DNS_STATUS_MAX
};

const char *dns_status_name(enum dns_status s); /* "ok", "nodata", ... */

#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_NOTIMP 4
#define DNS_RCODE_REFUSED 5
#define DNS_RCODE_BADVERS 16 /* RFC 6891 6.1.3, only with an OPT record */

/* ---- Queries ---- */

struct dns_query {
	uint16_t id;
	enum dns_type type;
	uint16_t edns_udp_size;            /* 0: no OPT record */
	uint8_t qname[DNS_NAME_WIRE_MAX];  /* wire form, with the 0x20 case that was sent */
	uint16_t qname_len;
	char name[DNS_HOSTNAME_MAX + 1];   /* normalised presentation (lower case, no trailing
	                                      dot; "" for the root), for logs and caches */
};

/* Prepare a query for `name` (presentation, validated and normalised as dns_name_normalize()
 * does) of type `type` with ID `id`. edns_udp_size 0 sends no OPT record; any other value
 * sends one advertising max(edns_udp_size, 512). `random` holds random_len bytes of fresh
 * randomness for DNS 0x20: bit i (random[i / 8] >> (i % 8) & 1) upper-cases the i-th letter
 * of the name; letters past the given bits stay lower case (DNS_0X20_RANDOM_BYTES covers any
 * name); random may be NULL for an all lower-case name. Returns 0, -EINVAL (not a valid name
 * or type) or -ENAMETOOLONG. */
int dns_query_init(struct dns_query *q, const char *name, enum dns_type type, uint16_t id,
		   uint16_t edns_udp_size, const uint8_t *random, size_t random_len);

/* Bytes dns_query_encode() writes. */
size_t dns_query_len(const struct dns_query *q);

/* Write the query message into buf. Returns 0 with *len set, or -ENOSPC (*len is then the
 * size needed). */
int dns_query_encode(const struct dns_query *q, uint8_t *buf, size_t cap, size_t *len);

/* ---- Responses ---- */

/* A span of dns_answer.arena. The arena holds a NUL after each name and each record's
 * joined TXT text, so dns_answer_text() is also a C string (TXT bytes may hold NULs:
 * use len). */
struct dns_text {
	uint32_t off;
	uint32_t len;
};

/* One record of the asked type, owned by the final name of the CNAME chain. */
struct dns_record {
	enum dns_type type;
	uint32_t ttl;               /* RFC 2181 8: a TTL with the top bit set counts as 0 */
	struct mx_inet_addr addr;   /* A, AAAA */
	uint16_t pref;              /* MX preference */
	struct dns_text name;       /* PTR/NS/CNAME target, MX exchange, SOA MNAME: in the
	                               answer's case (Postfix shows a PTR name so), no
	                               trailing dot, RFC 1035 5.1 escapes (\. \\ \DDD) for any
	                               octet outside printable ASCII, '.' and '\'; the root
	                               is "" (a null MX) */
	struct dns_text rname;      /* SOA RNAME */
	uint32_t soa[5];            /* SOA SERIAL REFRESH RETRY EXPIRE MINIMUM */
	struct dns_text txt;        /* TXT: the character-strings joined without separator */
	uint16_t txt_first;         /* TXT: its strings are strings[txt_first .. +txt_count) */
	uint16_t txt_count;         /*      (offsets inside txt's bytes of the arena) */
	bool txt_truncated;         /* TXT: strings were left out (DNS_TXT_RECORD_MAX or
	                               DNS_TXT_STRINGS_MAX) */
};

/* A parsed response. About 50 KiB: allocate it once per resolver thread or request, not on
 * a small stack. */
struct dns_answer {
	enum dns_status status;
	uint16_t rcode;            /* RCODE, extended by the OPT record (12 bits) */
	bool authoritative;        /* AA */
	bool recursion_available;  /* RA */
	bool edns;                 /* the response carried an OPT record */
	uint16_t edns_udp_size;    /* its UDP payload size */
	/* TTL of the answer (seconds), for a cache:
	 *   OK: the minimum TTL of the records kept and the CNAMEs followed;
	 *   NXDOMAIN, NODATA: RFC 2308 5: the minimum of the SOA's TTL and its MINIMUM field
	 *     (the first SOA of class IN in the authority section), and of the CNAMEs followed;
	 *     with no SOA, ttl is 0 and ttl_valid false: RFC 2308 5 says such a negative answer
	 *     SHOULD NOT be cached (the caller may still apply a floor of its own);
	 *   other statuses: 0, ttl_valid false. */
	uint32_t ttl;
	bool ttl_valid;
	bool null_mx;              /* MX: a record's exchange is the root (RFC 7505 "0 ."; like
	                              Postfix, any preference counts): the domain takes no mail */
	char name[DNS_NAME_TEXT_MAX + 1]; /* final owner name after the CNAMEs, presentation */
	unsigned cname_count;      /* CNAMEs followed from the question name */
	unsigned count;            /* records kept */
	unsigned dropped;          /* records of the type counted but not kept (past
	                              DNS_RECORDS_MAX, or the arena was full) */
	struct dns_record records[DNS_RECORDS_MAX]; /* in wire order (MX: the caller sorts) */
	unsigned nstrings;
	struct dns_text strings[DNS_TXT_STRINGS_MAX];
	uint32_t arena_used;
	char arena[DNS_ARENA_MAX];
};

/* Parse the response `pkt` (len bytes: a UDP datagram, or one message of a TCP stream
 * without its length field) to query q. Returns:
 *   0         the response answers q; out->status says how (a truncated one only
 *             DNS_STATUS_TRUNCATED: the caller asks again over TCP);
 *   -ENOMSG   not a response to q (QR clear, opcode not QUERY, other ID, not exactly one
 *             question, or a question that differs from q's in name bytes, type or class):
 *             drop it and keep waiting;
 *   -EBADMSG  a response to q that is malformed (lengths, pointers, labels, bad record
 *             data, two OPT records): treat as a server failure;
 *   -ELOOP    the CNAME chain is longer than DNS_CNAME_DEPTH_MAX (or loops);
 *   -EINVAL   q was not made by dns_query_init() (a caller bug, reported, not trusted).
 * err (may be NULL) says why for the negative results. Only the answer section's records
 * of q's type (and the CNAMEs on the way) are used; the authority section gives the SOA of
 * a negative answer; the additional section is checked for form and its OPT record read,
 * nothing else is taken from it. Bytes after the last section are ignored. */
int dns_response_parse(const struct dns_query *q, const uint8_t *pkt, size_t len,
		       struct dns_answer *out, char *err, size_t errlen);

/* The bytes of a text span of a: a NUL-terminated string of t.len bytes. */
const char *dns_answer_text(const struct dns_answer *a, struct dns_text t);

/* Character-string i (0 <= i < rec->txt_count) of TXT record rec. Postfix 3.7 uses only the
 * first string of a TXT record (as the DNSBL reason, non-printables as spaces). Returns its
 * bytes (not NUL-terminated) and *len. */
const char *dns_answer_txt_string(const struct dns_answer *a, const struct dns_record *rec,
				  unsigned i, size_t *len);

/* An A or AAAA record's address as text ("192.0.2.1", "2001:db8::1"); cap >= 46 is enough.
 * Returns 0, -EINVAL for another type, -ENOSPC. */
int dns_record_addr_text(const struct dns_record *rec, char *out, size_t cap);

/* ---- TCP (RFC 1035 4.2.2: each message is preceded by a two-octet length) ---- */

/* Write the length field and msg into out. Returns 0 with *outlen = len + 2, -EMSGSIZE
 * (len > 65535), or -ENOSPC. */
int dns_tcp_frame(const uint8_t *msg, size_t len, uint8_t *out, size_t cap, size_t *outlen);

enum dns_tcp_state {
	DNS_TCP_LENGTH,  /* reading the two length octets */
	DNS_TCP_MESSAGE, /* reading the message */
	DNS_TCP_DONE,    /* a message is complete: take it, then dns_tcp_reader_next() */
	DNS_TCP_FAILED,  /* a length under DNS_HEADER_LEN: the stream is unusable */
	DNS_TCP_STATE_MAX
};

const char *dns_tcp_state_name(enum dns_tcp_state s);

/* Splits a TCP stream into DNS messages (about 64 KiB: one per connection). */
struct dns_tcp_reader {
	enum dns_tcp_state state;
	uint8_t lenbuf[2];
	uint8_t lenhave;
	uint16_t msg_len;
	uint16_t have;
	uint8_t msg[DNS_MESSAGE_MAX];
};

void dns_tcp_reader_init(struct dns_tcp_reader *r);

/* Consume stream bytes. Returns 0 (need more input: every byte was used), 1 (a message is
 * complete: *used bytes were taken, the rest belongs to the next message) or -EBADMSG (a
 * length field under DNS_HEADER_LEN; the reader stays failed). Must not be called in
 * DNS_TCP_DONE (call dns_tcp_reader_next() first) or DNS_TCP_FAILED. */
int dns_tcp_reader_feed(struct dns_tcp_reader *r, const uint8_t *data, size_t len,
			size_t *used);

/* The complete message (state DNS_TCP_DONE), valid until the next call on r. */
const uint8_t *dns_tcp_reader_message(const struct dns_tcp_reader *r, size_t *len);

/* Start reading the next message of the stream (after DNS_TCP_DONE). */
void dns_tcp_reader_next(struct dns_tcp_reader *r);

/* ---- Names ---- */

/* Validate and normalise a presentation name for a query: labels of letters, digits, '-'
 * and '_' (RFC 952/1123 host names plus the underscore of service names; no escapes, no
 * other octets: a name from SMTP with anything else is refused), 1 to 63 octets each, at most
 * DNS_HOSTNAME_MAX in all, one optional trailing dot; "." is the root. The result is lower
 * case without the trailing dot ("" for the root), NUL-terminated. Non-ASCII (IDN) names
 * must be converted to A-labels first, as Postfix does. Returns 0 with *outlen, -EINVAL
 * (syntax), -ENAMETOOLONG, or -ENOSPC (cap too small; DNS_HOSTNAME_MAX + 1 is enough). */
int dns_name_normalize(const char *in, size_t len, char *out, size_t cap, size_t *outlen);

/* True when dns_name_normalize() would accept it. */
bool dns_name_valid(const char *in, size_t len);

/* The reverse-lookup name of an address: "d.c.b.a.in-addr.arpa" (RFC 1035 3.5) or 32
 * nibbles, lowest first, then "ip6.arpa" (RFC 3596 2.5), lower-case hex. An IPv4-mapped
 * IPv6 address is looked up as the IPv4 address it carries (Postfix treats such clients as
 * IPv4). Returns 0, -EAFNOSUPPORT, or -ENOSPC (73 bytes are enough). */
int dns_name_reverse(const struct mx_inet_addr *a, char *out, size_t cap);

/* The DNSBL query name for client address a in zone (reject_rbl_client, permit_dnswl_client,
 * postscreen_dnsbl_sites): the reversed IPv4 octets or the reversed IPv6 nibbles, '.', the
 * zone; built as Postfix's find_dnsxl_addr() builds it (IPv4-mapped IPv6 as IPv4, as smtpd
 * sees such clients). zone is normalised (no "=filter" part: the caller strips it). Returns
 * 0, -EINVAL (bad zone), -EAFNOSUPPORT, -ENAMETOOLONG, or -ENOSPC. */
int dns_name_dnsbl(const struct mx_inet_addr *a, const char *zone, char *out, size_t cap);

/* The RHSBL query name domain '.' zone (reject_rhsbl_*, permit_rhswl_client), both
 * normalised. As in Postfix's find_dnsxl_domain(), a domain whose last label is all digits
 * (an address, not a domain: Postfix skips the lookup) or an address literal is -EDOM; an
 * invalid domain or zone -EINVAL (Postfix skips it too); a result over DNS_HOSTNAME_MAX
 * -ENAMETOOLONG (the name cannot be asked for); -ENOSPC. */
int dns_name_rhsbl(const char *domain, const char *zone, char *out, size_t cap);

#endif
