/* A DNS answer as the rest of mxgate uses it: what the resolver service caches and hands
 * to the workers, and what the restriction evaluator reads. A parsed response (struct
 * dns_answer, about 50 KiB) is cut down to the records of the asked type, in one
 * allocation sized to them, immutable once made and reference counted, so the resolver's
 * cache and every connection waiting for the same question share one copy.
 *
 * Status is what a restriction needs to decide: an answer, a name that does not exist or
 * has no such records (permanent, cached by the negative TTL), or a temporary failure
 * (SERVFAIL, REFUSED, timeouts, malformed answers from every server: Postfix's
 * DNS_RETRY), which a restriction turns into its temporary outcome. */
#ifndef MXGATE_TABLES_DNS_RESULT_H
#define MXGATE_TABLES_DNS_RESULT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"
#include "tables/dns_message.h"

enum dns_result_status {
	DNS_RESULT_OK,       /* records of the type (nrecords > 0) */
	DNS_RESULT_NODATA,   /* the name exists, no records of the type */
	DNS_RESULT_NXDOMAIN, /* the name does not exist */
	DNS_RESULT_TEMPFAIL, /* try again later: SERVFAIL, REFUSED, no answer in time, ... */
	DNS_RESULT_STATUS_MAX
};

const char *dns_result_status_name(enum dns_result_status s); /* "ok", "nodata", ... */

/* One record. Text is in the result's own buffer (dns_result_text()). */
struct dns_result_record {
	struct mx_inet_addr addr;  /* A, AAAA */
	uint16_t pref;             /* MX preference */
	uint32_t name_off, name_len; /* PTR/NS/CNAME target, MX exchange ("" for a null MX),
					 in the answer's case, escaped as dns_answer's
					 names */
	uint32_t txt_off, txt_len;   /* TXT: the record's first character-string (what
					 Postfix uses as the DNSBL reason); non-printable
					 bytes are kept: the reader filters */
};

struct dns_result {
	atomic_uint refs;
	enum dns_result_status status;
	enum dns_type type;        /* what was asked */
	uint32_t ttl;              /* seconds it may be cached (0: not at all) */
	char why[96];              /* TEMPFAIL: why ("SERVFAIL from 127.0.0.1", "timeout") */
	uint16_t nrecords;         /* <= DNS_RECORDS_MAX */
	uint32_t text_len;
	struct dns_result_record *records; /* [nrecords], inside the same allocation */
	char *text;                /* [text_len], NUL after each string */
};

/* A result from a parsed response to a query of type `type` (dns_response_parse()). OK
 * with records, NODATA, NXDOMAIN carry the answer's TTL (negative TTL per RFC 2308; an
 * answer without one gets `negative_ttl_floor`); SERVFAIL, REFUSED, other RCODEs and
 * TRUNCATED (the caller retries over TCP instead) are TEMPFAIL. One reference. NULL when
 * out of memory. */
struct dns_result *dns_result_from_answer(const struct dns_answer *a, enum dns_type type,
					  uint32_t negative_ttl_floor);

/* A TEMPFAIL result saying why (no server answered in time, every answer malformed, ...).
 * One reference, ttl 0. NULL when out of memory. */
struct dns_result *dns_result_tempfail(enum dns_type type, const char *why);

struct dns_result *dns_result_get(struct dns_result *r);     /* another reference */
void dns_result_put(struct dns_result *r);                   /* NULL is a no-op */

/* A record's name or TXT text as a NUL-terminated string. */
const char *dns_result_name(const struct dns_result *r, const struct dns_result_record *rec);
const char *dns_result_txt(const struct dns_result *r, const struct dns_result_record *rec);

/* Bytes the result occupies (for the cache's bound). */
size_t dns_result_size(const struct dns_result *r);

/* A PTR answer's name as the client's reverse name, by Postfix's valid_hostname() and the
 * checks of its sockaddr_to_hostname(): a valid host name of at most 255 octets, not an
 * address, no label starting or ending with '-', not all digits and dots. *numeric: it
 * was an address (Postfix warns "numeric hostname"). The gateway at connect and `mxgate
 * explain` both decide with this. */
bool dns_result_reverse_name_usable(const char *name, bool *numeric);

/* The text glibc's gai_strerror() gives for what getaddrinfo() would return on a lookup
 * with this status: Postfix's "hostname X does not resolve to address Y: TEXT". */
const char *dns_result_gai_text(enum dns_result_status st);

#endif
