/* Local DNSBL data: rbldnsd zone files stored in the table environment and answered the
 * way a DNS blocklist answers (A and TXT records), so Postfix's `reject_rbl_client
 * ZONE=FILTER` and friends work unchanged against data the operator loads locally.
 *
 * A zone is named by its DNS domain (`zen.spamhaus.org`) and stored as the named database
 * `rbl:ZONE` (one write transaction: readers see the old or the new zone, never a mix).
 * Formats (rbldnsd(8)): ip4set, ip4tset, ip4trie, ip6trie, ip6tset, dnset, combined
 * (several `$DATASET type[:name]` sections); `#`/`;` comments, `$SOA`, `$NS`, `$TTL`,
 * `$TIMESTAMP` (expiry: a zone past it answers nothing), `$MAXRANGE4`; a `:A:TXT` line sets
 * the default value (A defaults to 127.0.0.2), an entry may carry its own `:A:TXT`, `$` in
 * TXT stands for the queried address (or name); `!` entries are exclusions.
 *
 * A combined zone's subzones are zones too: opening "proxies.zen.test" finds the combined
 * zone "zen.test" (when no zone "proxies.zen.test" was loaded) and consults the datasets whose
 * `$DATASET` line names the subzone `proxies`; "zen.test" consults those naming `@`.
 * Answers are rbldnsd's: ip4set and dnset answer every line listing the query at the most
 * specific level (an exclusion at that level wins), the tries the longest prefix (the first of
 * duplicates), each dataset of a combined zone adds its answers (RBL_ANSWERS_MAX at most).
 * tests/unit/tables/test_rbl_diff.py compares all this with rbldnsd itself.
 *
 * Lookups are O(log n) in the zone size (interval and suffix searches in LMDB), never a
 * scan. Results: 1 listed (answers filled), 0 not listed, or a negative errno: -ENOENT the
 * zone was never loaded, -EBADMSG corrupt data; callers answer those with
 * "451 4.3.5 Server configuration error", never as "not listed". */
#ifndef MXGATE_TABLES_RBL_ZONE_H
#define MXGATE_TABLES_RBL_ZONE_H

#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"
#include "tables/tables_env.h"

enum rbl_format {
	RBL_FORMAT_IP4SET,
	RBL_FORMAT_IP4TSET,
	RBL_FORMAT_IP4TRIE,
	RBL_FORMAT_IP6TRIE,
	RBL_FORMAT_IP6TSET,
	RBL_FORMAT_DNSET,
	RBL_FORMAT_COMBINED,
	RBL_FORMAT_MAX
};

const char *rbl_format_name(enum rbl_format f);
/* "ip4set" etc. to the enum; returns 0 or -EINVAL. */
int rbl_format_parse(const char *name, enum rbl_format *out);

#define RBL_TXT_MAX 255    /* one TXT string, after '$' substitution (truncated) */
#define RBL_ANSWERS_MAX 8  /* a combined zone may list one query in several datasets */

struct rbl_answer {
	uint8_t a[4];              /* the A record, 127.0.0.2 = {127, 0, 0, 2} */
	char txt[RBL_TXT_MAX + 1]; /* "" when the entry has no TXT */
};

struct rbl_result {
	unsigned count; /* 1..RBL_ANSWERS_MAX when listed */
	struct rbl_answer answers[RBL_ANSWERS_MAX];
};

/* Statistics of a build. */
struct rbl_build_stats {
	uint64_t entries;    /* listed entries (exclusions included) */
	uint64_t records;    /* LMDB records written */
	int64_t expires;     /* $TIMESTAMP expiry (seconds since the epoch), 0 = none */
};

/* Build (replace) zone `zone` (a DNS domain, case-folded) of format fmt from rbldnsd text.
 * The text is parsed completely first; on any error the old zone stays and -EINVAL comes
 * back with "line N: reason" in err. Warnings (entries ignored as rbldnsd ignores them) go
 * to warn. Returns 0 or a negative errno. */
int rbl_zone_build(struct tables_env *env, const char *zone, enum rbl_format fmt,
		   const char *text, size_t len, tables_warn_fn *warn, void *warn_ctx,
		   struct rbl_build_stats *stats, char *err, size_t errlen);
int rbl_zone_build_file(struct tables_env *env, const char *zone, enum rbl_format fmt,
			const char *path, tables_warn_fn *warn, void *warn_ctx,
			struct rbl_build_stats *stats, char *err, size_t errlen);

struct rbl_zone;

/* A handle on zone `zone` bound to a reader (so to its thread). Opening never fails because
 * the zone is missing: queries answer -ENOENT until it is loaded. Returns 0 or -ENOMEM /
 * -EINVAL (bad zone name). */
int rbl_zone_open(struct tables_reader *rd, const char *zone, struct rbl_zone **out);
void rbl_zone_close(struct rbl_zone *z);
const char *rbl_zone_name(const struct rbl_zone *z);

/* Is client address `addr` listed? (ip4* datasets for IPv4, ip6* for IPv6; an IPv4-mapped
 * IPv6 address is queried as IPv4.) `now` is wall-clock seconds, for $TIMESTAMP. */
int rbl_zone_query_addr(struct rbl_zone *z, const struct mx_inet_addr *addr, int64_t now,
			struct rbl_result *out);
/* Is domain name `name` listed? (dnset datasets; case-insensitive; a trailing dot is
 * ignored.) */
int rbl_zone_query_name(struct rbl_zone *z, const char *name, int64_t now,
			struct rbl_result *out);

#endif
