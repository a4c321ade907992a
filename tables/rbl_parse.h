/* The rbldnsd(8) zone file parser: text in, a flat model out (entries as address intervals or
 * names, values with their A and expanded TXT template). rbl_zone.c stores the model.
 *
 * Differences from rbldnsd, on purpose: a line rbldnsd would skip with an "invalid entry"
 * warning is an error here (an operator's typo must not silently unlist or list a network);
 * `$TIMESTAMP` in the future is not refused (tables/ reads no clock). Entries over
 * `$MAXRANGE4` are skipped with a warning, as rbldnsd does. */
#ifndef MXGATE_TABLES_RBL_PARSE_H
#define MXGATE_TABLES_RBL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/rbl_zone.h"

#define RBL_DATASETS_MAX 32u   /* $DATASET sections in a combined zone */
#define RBL_LINE_MAX 4096u     /* one line of a zone file */
#define RBL_ENTRIES_MAX 200000000u
#define RBL_SUBZONES_MAX 240u  /* bytes of a dataset's subzone list */
#define RBL_NAME_MAX 255u      /* a domain name (RFC 1035 2.3.4) */

typedef unsigned __int128 rbl_u128;

/* One value: the A record and the TXT template after $n and $= expansion (only `$` and
 * `$$` are left, for query time). */
struct rbl_value {
	uint8_t a[4];
	bool has_txt;
	uint32_t txt_off, txt_len; /* in rbl_model.arena */
};

/* One address entry: an interval and how strongly it binds (ip4set: octet level 8/16/24/32;
 * tries: prefix length; the most specific wins, exclusions win ties, then the first line). */
struct rbl_ip_entry {
	rbl_u128 lo, hi; /* IPv4 as the low 32 bits */
	uint32_t val;    /* index in values; unused for exclusions */
	uint32_t seq;    /* source order */
	uint8_t prio;
	uint8_t excl;
	uint8_t ds;
	uint8_t family; /* 4 or 6 */
};

/* rbl_name_entry.kind, also the byte in the stored key */
#define RBL_NAME_EXACT 'E'      /* the name itself */
#define RBL_NAME_SUBDOMAINS 'W' /* its subdomains */

struct rbl_name_entry {
	uint32_t name_off; /* lower case, no trailing dot, in arena */
	uint16_t name_len;
	uint8_t kind; /* RBL_NAME_EXACT or RBL_NAME_SUBDOMAINS */
	uint8_t excl;
	uint8_t ds;
	uint32_t val;
	uint32_t seq;
};

struct rbl_dataset {
	enum rbl_format fmt;
	char subzones[RBL_SUBZONES_MAX + 1]; /* blank-separated; "@" is the zone itself */
};

struct rbl_model {
	struct rbl_dataset ds[RBL_DATASETS_MAX];
	unsigned nds;
	struct rbl_ip_entry *ip;
	size_t nip, ipcap;
	struct rbl_name_entry *names;
	size_t nnames, namecap;
	struct rbl_value *values;
	size_t nvalues, valcap;
	char *arena;
	size_t used, cap;
	int64_t expires; /* 0 = none */
	uint64_t entries;
};

/* Parse zone text of format fmt. Returns 0, -EINVAL with "line N: reason" in err, or
 * -ENOMEM. The model must be freed with rbl_model_free() whatever the result. */
int rbl_parse(const char *text, size_t len, enum rbl_format fmt, struct rbl_model *m,
	      tables_warn_fn *warn, void *warn_ctx, char *err, size_t errlen);
void rbl_model_free(struct rbl_model *m);

/* "1.2.3.4"-style A value of rbldnsd (`2` is 127.0.0.2, `1.2` 127.0.1.2). Returns 0 or
 * -EINVAL. */
int rbl_parse_a(const char *s, size_t n, uint8_t out[4]);

/* Expand a stored TXT template for subject `subj`: `$` is the subject, `$$` a dollar sign.
 * Truncates at outlen - 1 bytes; returns the length written. */
size_t rbl_txt_expand(const char *tmpl, size_t n, const char *subj, char *out, size_t outlen);

#endif
