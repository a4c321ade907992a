/* The table store: one LMDB environment (a directory) holding every table as a named
 * database, and table handles that look keys up in it.
 *
 * Tables are named as in main.cf, `TYPE:NAME` (`hash:/etc/postfix/access`,
 * `cidr:/etc/postfix/clients.cidr`). Kinds: `hash:` and `lmdb:` (the same exact-key map: the
 * database is named `hash:NAME` for both), `cidr:`, `regexp:`, `pcre:` (stored in LMDB, built
 * with tables_build()), and `static:VALUE`, `inline:{...}` (no storage: the specification is
 * the table).
 *
 * Consistency: tables_build() replaces a whole table in ONE write transaction, so a reader sees
 * the old or the new table, never a mix, and never blocks or is blocked (LMDB MVCC). A reader
 * (struct tables_reader, one per thread) keeps one read transaction; tables_reader_renew()
 * makes it see everything committed since (call it once per poll interval / batch).
 *
 * Results: lookups return 1 (found, value copied), 0 (not found) or a negative errno:
 * -ENOENT the table does not exist, -EBADMSG its data is corrupt or of another kind, -E2BIG a
 * value does not fit the caller's buffer, others from LMDB. Callers must treat every error as
 * "451 4.3.5 Server configuration error", never as "not found". */
#ifndef MXGATE_TABLES_TABLES_ENV_H
#define MXGATE_TABLES_TABLES_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/table_parse.h"

enum table_kind {
	TABLE_KIND_HASH,
	TABLE_KIND_CIDR,
	TABLE_KIND_REGEXP,
	TABLE_KIND_PCRE,
	TABLE_KIND_STATIC,
	TABLE_KIND_INLINE,
	TABLE_KIND_MAX
};

const char *table_kind_name(enum table_kind k);

/* Split "TYPE:NAME" into a kind and the NAME part (pointer into spec). Returns 0, or -EINVAL
 * with a reason (unknown type, no colon, empty name, longer than TABLE_NAME_MAX). */
int table_spec_parse(const char *spec, enum table_kind *kind, const char **name, char *err,
		     size_t errlen);

/* Limits of an environment; zero fields take the defaults. */
struct tables_env_opts {
	size_t map_size; /* bytes of address space; default 64 GiB (sparse) */
	unsigned max_tables; /* named databases; default 1024 */
	unsigned max_readers; /* default 1024 */
	bool read_only; /* open without write access (lookups only) */
};

struct tables_env;
struct tables_reader;
struct table;

/* Open (creating it when writable and missing) the environment in directory dir.
 * Returns 0 and *out, or a negative errno with a reason in err. */
int tables_env_open(const char *dir, const struct tables_env_opts *opts, struct tables_env **out,
		    char *err, size_t errlen);
void tables_env_close(struct tables_env *env);

/* A warning while building (duplicate key: the first one wins, as postmap does). */
typedef void tables_warn_fn(void *ctx, const char *msg);

/* Statistics of a build. */
struct tables_build_stats {
	uint64_t entries; /* keys, or rules */
	uint64_t records; /* LMDB records written (cidr: intervals) */
	uint64_t duplicates;
};

/* Build (replace) table spec (hash/lmdb/cidr/regexp/pcre) from its source text in one write
 * transaction. The text is parsed and checked completely before anything is written; on any
 * error the old table stays. Returns 0, -EINVAL (bad text, reason with line number in err),
 * -ENOTSUP (static/inline need no build), or an LMDB error (-ENOSPC: map full). */
int tables_build(struct tables_env *env, const char *spec, const char *text, size_t len,
		 tables_warn_fn *warn, void *warn_ctx, struct tables_build_stats *stats, char *err,
		 size_t errlen);
/* The same from a file (at most 4 GiB). */
int tables_build_file(struct tables_env *env, const char *spec, const char *path,
		      tables_warn_fn *warn, void *warn_ctx, struct tables_build_stats *stats,
		      char *err, size_t errlen);

/* A reader: one per thread. */
int tables_reader_open(struct tables_env *env, struct tables_reader **out);
/* See every change committed so far (mdb_txn_reset + mdb_txn_renew). Returns 0 or <0. */
int tables_reader_renew(struct tables_reader *rd);
void tables_reader_close(struct tables_reader *rd);

/* A table handle bound to a reader (so to its thread). Opening never fails because the table
 * is missing: a lookup answers -ENOENT until it is built (then the reader is renewed once so
 * it sees the new database). Returns 0, -EINVAL (bad spec or inline/static text) or -ENOMEM.
 * static: and inline: need no reader (rd may be NULL for them). */
int table_open(struct tables_reader *rd, const char *spec, struct table **out, char *err,
	       size_t errlen);
void table_close(struct table *t);
enum table_kind table_get_kind(const struct table *t);
const char *table_spec(const struct table *t);

/* Look key up. hash/cidr/inline keys are folded to lower case first (not regexp/pcre).
 * Copies the NUL-terminated value into val (vallen bytes; TABLE_VALUE_MAX + 1 always fits).
 * Returns 1 found, 0 not found, <0 error (see above). */
int table_lookup(struct table *t, const char *key, char *val, size_t vallen);

/* Every entry of a table in key order (hash; cidr/regexp/pcre: each logical source line as
 * key with an empty value, in file order; inline/static: their entries). fn returns non-zero
 * to stop. Returns 0 or <0. */
int table_list(struct table *t, int (*fn)(void *ctx, const char *key, const char *value),
	       void *ctx);

#endif
