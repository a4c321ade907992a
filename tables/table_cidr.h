/* cidr: tables (Postfix cidr_table(5)): `[!]pattern result`, `if [!]pattern` ... `endif`,
 * patterns `address` or `address/prefix` (IPv4 or IPv6, optionally in `[]`), first match in
 * file order. A rule or `if` only ever applies to keys of its own address family, negated or
 * not (what Postfix 3.7 does: `!1.2.3.0/24` does not match `::1`, and an IPv4 `if` block is
 * skipped for an IPv6 key).
 *
 * Where Postfix warns and skips a bad rule (host bits set, bad address, unbalanced if/endif),
 * mxgate refuses the whole table with the line number: a typo in a block list must not
 * silently become a rule that never matches.
 *
 * Lookups are not a scan: the ordered rules are compiled into sorted, disjoint address
 * intervals, each labelled with the first rule (in file order) whose set covers it, so a
 * lookup is one ordered search (O(log n)); tables_env stores the intervals in LMDB keyed by
 * their last address. */
#ifndef MXGATE_TABLES_TABLE_CIDR_H
#define MXGATE_TABLES_TABLE_CIDR_H

#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"

#define TABLE_CIDR_RULES_MAX 50000000u
#define TABLE_CIDR_DEPTH_MAX 64u

struct table_cidr;

/* A compiled interval: addresses lo..hi (inclusive, big-endian, IPv4 in the first 4 bytes)
 * of one family answer rule `rule` (0-based index among result rules) with `value`. */
struct table_cidr_segment {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t lo[16], hi[16];
	uint32_t rule;
	const char *value; /* owned by the struct table_cidr */
};

/* Parse a cidr table's text. Returns 0 and *out, or -EINVAL (reason with line number in err)
 * or -ENOMEM. */
int table_cidr_parse(const char *text, size_t len, struct table_cidr **out, char *err,
		     size_t errlen);
/* Number of result rules (if/endif lines not counted). */
size_t table_cidr_rules(const struct table_cidr *c);
/* The disjoint intervals of both families, sorted by (family, address). Returns 0 with a
 * malloc'ed array (free() it; values point into c), or -ENOMEM / -E2BIG. */
int table_cidr_compile(const struct table_cidr *c, struct table_cidr_segment **segs, size_t *n);
/* First-match lookup by scanning the rules in order (what Postfix does): used by tests
 * to check the compiled form. Returns the value or NULL. */
const char *table_cidr_scan(const struct table_cidr *c, const struct mx_inet_addr *addr);
void table_cidr_free(struct table_cidr *c);

/* Parse a lookup key as cidr_table(5) does: a bare numeric address (no brackets).
 * Returns true on success. */
bool table_cidr_key(const char *key, struct mx_inet_addr *out);

#endif
