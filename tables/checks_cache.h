/* A disk cache of the Hyperscan databases of check sets (checks.h), so that a start or a
 * reload with unchanged header_checks/body_checks skips hs_compile_multi() (tens of seconds
 * for 10,000 rules) and the hs_expression_info() retries.
 *
 * The key is a SHA-256 over everything that decides the compiled database: every expression
 * checks.c hands to Hyperscan before any retry (text, flags, id, and the mode the rule had
 * from its syntax), the number of rules, HS_MODE_BLOCK, hs_version() and the platform the
 * database is built for (hs_populate_platform(): the tuning and CPU features of this host,
 * so a cache copied to a machine without AVX2 is a miss, not a database that cannot scan).
 * A file holds what the build decided from those inputs: the flags and mode each rule ended
 * with (a rule Hyperscan refused is prefiltered, CONFIRM, or left out, NONE) and the
 * serialized database (hs_serialize_database(); none when no rule is left for it).
 *
 * File `<64 hex key>.hsdb` in the cache directory, integers little-endian:
 *     0   8  magic "MXGHSDB\n"
 *     8   4  format version (CHECKS_CACHE_VERSION)
 *    12   4  header length (CHECKS_CACHE_HEADER_LEN)
 *    16  32  key
 *    48   4  n: decision records
 *    52   4  info length (hs_serialized_database_info() of the database, 0 without one)
 *    56   8  database length (0: no database)
 *    64  32  SHA-256 of every byte after the header
 *    96      n records of 12 bytes: rule id (4), flags (4), mode (1), three zero bytes;
 *            then the info text, then the database; the file ends there exactly.
 * A file is written to a temporary name in the same directory, fsync'd and renamed over
 * the old one, so a reader sees a whole file or none. Anything odd on reading (short, a
 * length out of bounds, another magic, version or key, a bad checksum, a decision that
 * cannot follow from the inputs, a database Hyperscan refuses or that is not what the
 * header says) is a miss with a reason: the caller compiles and writes the file again.
 *
 * Trust: a database is code Hyperscan runs on every message, and the checksum only catches
 * accidents (whoever can write the file can recompute it). So the directory must be owned
 * by this uid and writable by nobody else (else it is refused, read and write), and each
 * file must be a regular file of this uid that only it can write.
 *
 * Size: at most `max_files` files and `max_bytes` bytes; after a write the least recently
 * used files (by mtime; a hit touches its file) are removed until both hold.
 *
 * Blocking file I/O: for the management thread that builds a configuration generation,
 * never for a worker. Threads and processes may share a directory: a reader sees whole
 * files, and concurrent writers of one key both succeed (the last rename wins). */
#ifndef MXGATE_TABLES_CHECKS_CACHE_H
#define MXGATE_TABLES_CHECKS_CACHE_H

#include <hs/hs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHECKS_CACHE_VERSION 1u
#define CHECKS_CACHE_HEADER_LEN 96u
#define CHECKS_CACHE_RECORD_LEN 12u
#define CHECKS_CACHE_KEY_LEN 32u        /* SHA-256 */
#define CHECKS_CACHE_NAME_LEN 69u       /* 64 hex digits and ".hsdb" */
#define CHECKS_CACHE_INFO_MAX 256u      /* hs_serialized_database_info() text */
#define CHECKS_CACHE_DB_MAX (1u << 30) /* the largest serialized database */
#define CHECKS_CACHE_RECORDS_MAX 200000u /* == CHECKS_RULES_MAX */
#define CHECKS_CACHE_DIR_SCAN_MAX 4096u  /* directory entries eviction looks at */
#define CHECKS_CACHE_MAX_FILES 64u       /* defaults of struct checks_cache_limits */
#define CHECKS_CACHE_MAX_BYTES (1ull << 30)

/* How checks.c decides a rule (its enum checks_mode has the same values). A mode only ever
 * goes up during a build: exact -> confirm -> none. */
enum checks_cache_mode {
	CHECKS_CACHE_EXACT,   /* the Hyperscan hit is the answer */
	CHECKS_CACHE_CONFIRM, /* a Hyperscan hit is confirmed by PCRE2/regexec */
	CHECKS_CACHE_NONE,    /* not in the database */
	CHECKS_CACHE_MODE_MAX,
};

/* One expression as checks.c hands it to Hyperscan, before any retry. */
struct checks_cache_rule {
	const char *expr; /* NUL-terminated */
	unsigned flags;   /* HS_FLAG_* */
	unsigned id;      /* the rule's index in the set: its Hyperscan id */
	uint8_t mode;     /* enum checks_cache_mode, from the rule's syntax */
};

/* What the build decided for that rule: flags (its own, or with HS_FLAG_PREFILTER) and
 * mode. */
struct checks_cache_decision {
	unsigned flags;
	uint8_t mode;
};

struct checks_cache_limits {
	unsigned max_files; /* 0: CHECKS_CACHE_MAX_FILES */
	uint64_t max_bytes; /* 0: CHECKS_CACHE_MAX_BYTES */
};

/* The key of n expressions out of a set of nrules rules. Returns 0, -ENOMEM or -EIO
 * (libcrypto failed). */
int checks_cache_key(const struct checks_cache_rule *r, size_t n, size_t nrules,
		     uint8_t key[CHECKS_CACHE_KEY_LEN]);

/* "<64 hex>.hsdb", NUL-terminated. */
void checks_cache_file_name(const uint8_t key[CHECKS_CACHE_KEY_LEN],
			    char name[CHECKS_CACHE_NAME_LEN + 1]);

/* A whole cache file in memory: the header, d[i] for r[i] (n of them) and db (NULL: none).
 * Returns 0 with a malloc'd *out of *outlen bytes, or -EINVAL (n over the bound, a database
 * over CHECKS_CACHE_DB_MAX, one Hyperscan cannot serialize; reason in why) or -ENOMEM. */
int checks_cache_encode(const uint8_t key[CHECKS_CACHE_KEY_LEN], const struct checks_cache_rule *r,
			const struct checks_cache_decision *d, size_t n, const hs_database_t *db,
			uint8_t **out, size_t *outlen, char *why, size_t whylen);

/* The reader: check a file of len bytes (any bytes) against the key and the n expressions
 * r it must be for. Returns 1 with d[0..n) filled and *db the deserialized database (NULL
 * when every rule is NONE; the caller frees it), 0 when the file is not a valid entry for
 * them (reason in why; d and *db untouched), -ENOMEM. Reads nothing outside buf[0, len)
 * and hands Hyperscan only a range inside it. */
int checks_cache_decode(const uint8_t *buf, size_t len, const uint8_t key[CHECKS_CACHE_KEY_LEN],
			const struct checks_cache_rule *r, size_t n,
			struct checks_cache_decision *d, hs_database_t **db, char *why,
			size_t whylen);

/* Open the cache directory, creating it (0700; missing parents 0755) when it is absent.
 * Returns 0 and *dfd (O_DIRECTORY, close-on-exec; the caller closes it), or a negative
 * errno with why: -EPERM when the directory is not owned by this uid or is group or world
 * writable (a database there could have been planted: not to be read), another errno when
 * it cannot be created or opened. */
int checks_cache_dir_open(const char *path, int *dfd, char *why, size_t whylen);

/* Look the key up in the directory. Returns 1 on a hit (as checks_cache_decode(); the
 * file's mtime is set to now, for eviction), 0 on a miss (why "" when there is simply no
 * file, else what was wrong with it), -ENOMEM. */
int checks_cache_load(int dfd, const uint8_t key[CHECKS_CACHE_KEY_LEN],
		      const struct checks_cache_rule *r, size_t n, struct checks_cache_decision *d,
		      hs_database_t **db, char *why, size_t whylen);

/* Write the entry atomically (temporary file, fsync, rename, fsync of the directory),
 * then evict down to lim (NULL: the defaults). Returns 0, or a negative errno with why. */
int checks_cache_store(int dfd, const uint8_t key[CHECKS_CACHE_KEY_LEN],
		       const struct checks_cache_rule *r, const struct checks_cache_decision *d,
		       size_t n, const hs_database_t *db, const struct checks_cache_limits *lim,
		       char *why, size_t whylen);

/* Remove the least recently used cache files until at most lim->max_files files and
 * lim->max_bytes bytes remain, never the file named keep (may be NULL); also temporary
 * files that a crashed writer left, an hour older than now_mtime (seconds, the clock of
 * the file system: the mtime of a file just written). Returns the number of files
 * removed, or a negative errno. */
int checks_cache_evict(int dfd, const struct checks_cache_limits *lim, const char *keep,
		       int64_t now_mtime);

#endif
