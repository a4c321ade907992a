/* The disk cache of compiled check-set databases; see checks_cache.h for the file format
 * and what is trusted. */
#include "tables/checks_cache.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxgate/errf.h"
#include "tables/checks.h"

_Static_assert(CHECKS_CACHE_RECORDS_MAX == CHECKS_RULES_MAX, "one bound on rules");
/* The largest file a valid entry can be. */
#define CHECKS_CACHE_TOTAL_MAX                                                                \
	((uint64_t)CHECKS_CACHE_HEADER_LEN +                                                   \
	 (uint64_t)CHECKS_CACHE_RECORDS_MAX * CHECKS_CACHE_RECORD_LEN + CHECKS_CACHE_INFO_MAX + \
	 CHECKS_CACHE_DB_MAX)
_Static_assert(CHECKS_CACHE_TOTAL_MAX < (uint64_t)SIZE_MAX, "a file's parts add up without overflow");

static const uint8_t checks_cache_magic[8] = { 'M', 'X', 'G', 'H', 'S', 'D', 'B', '\n' };

/* Offsets in the header. */
enum {
	CHECKS_CACHE_OFF_VERSION = 8,
	CHECKS_CACHE_OFF_HEADER_LEN = 12,
	CHECKS_CACHE_OFF_KEY = 16,
	CHECKS_CACHE_OFF_RECORDS = 48,
	CHECKS_CACHE_OFF_INFO_LEN = 52,
	CHECKS_CACHE_OFF_DB_LEN = 56,
	CHECKS_CACHE_OFF_SUM = 64,
};
_Static_assert(CHECKS_CACHE_OFF_SUM + 32 == CHECKS_CACHE_HEADER_LEN, "header layout");

/* Temporary files: "." key-hex "." 16 hex ".tmp"; older than this they are a crashed
 * writer's and are removed. */
#define CHECKS_CACHE_TMP_LEN (1 + 64 + 1 + 16 + 4)
#define CHECKS_CACHE_TMP_STALE_S 3600

static void checks_cache_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void checks_cache_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t checks_cache_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t checks_cache_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* ---- the key ---------------------------------------------------------------------------- */

static int checks_cache_hash(EVP_MD_CTX *ctx, const void *p, size_t n)
{
	return EVP_DigestUpdate(ctx, p, n) == 1 ? 0 : -EIO;
}

static int checks_cache_hash64(EVP_MD_CTX *ctx, uint64_t v)
{
	uint8_t b[8];
	checks_cache_put64(b, v);
	return checks_cache_hash(ctx, b, sizeof(b));
}

/* Every variable-length field is preceded by its length, so two different inputs never
 * hash the same byte string. */
static int checks_cache_hash_str(EVP_MD_CTX *ctx, const char *s)
{
	size_t n = strlen(s);
	int rc = checks_cache_hash64(ctx, n);
	return rc < 0 ? rc : checks_cache_hash(ctx, s, n);
}

int checks_cache_key(const struct checks_cache_rule *r, size_t n, size_t nrules,
		     uint8_t key[CHECKS_CACHE_KEY_LEN])
{
	/* The target of a compile with a NULL platform: this host. */
	hs_platform_info_t plat;
	if (hs_populate_platform(&plat) != HS_SUCCESS)
		return -EIO;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	int rc = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
	if (rc == 0)
		rc = checks_cache_hash_str(ctx, "mxgate checks cache");
	if (rc == 0)
		rc = checks_cache_hash64(ctx, CHECKS_CACHE_VERSION);
	if (rc == 0)
		rc = checks_cache_hash_str(ctx, hs_version());
	if (rc == 0)
		rc = checks_cache_hash64(ctx, plat.tune);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, plat.cpu_features);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, plat.reserved1);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, plat.reserved2);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, HS_MODE_BLOCK);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, nrules);
	if (rc == 0)
		rc = checks_cache_hash64(ctx, n);
	for (size_t i = 0; i < n && rc == 0; i++) {
		uint8_t b[9];
		checks_cache_put32(b, r[i].id);
		checks_cache_put32(b + 4, r[i].flags);
		b[8] = r[i].mode;
		rc = checks_cache_hash(ctx, b, sizeof(b));
		if (rc == 0)
			rc = checks_cache_hash_str(ctx, r[i].expr);
	}
	unsigned len = 0;
	if (rc == 0 && (EVP_DigestFinal_ex(ctx, key, &len) != 1 || len != CHECKS_CACHE_KEY_LEN))
		rc = -EIO;
	EVP_MD_CTX_free(ctx);
	return rc;
}

void checks_cache_file_name(const uint8_t key[CHECKS_CACHE_KEY_LEN],
			    char name[CHECKS_CACHE_NAME_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < CHECKS_CACHE_KEY_LEN; i++) {
		name[2 * i] = hex[key[i] >> 4];
		name[2 * i + 1] = hex[key[i] & 15];
	}
	memcpy(name + 2 * CHECKS_CACHE_KEY_LEN, ".hsdb", 6);
}

/* ---- the file format -------------------------------------------------------------------- */

static int checks_cache_sum(const uint8_t *p, size_t n, uint8_t sum[32])
{
	unsigned len = 0;
	if (EVP_Digest(p, n, sum, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return -EIO;
	return 0;
}

int checks_cache_encode(const uint8_t key[CHECKS_CACHE_KEY_LEN], const struct checks_cache_rule *r,
			const struct checks_cache_decision *d, size_t n, const hs_database_t *db,
			uint8_t **out, size_t *outlen, char *why, size_t whylen)
{
	*out = NULL;
	*outlen = 0;
	if (n > CHECKS_CACHE_RECORDS_MAX)
		return mx_errf(why, whylen, -EINVAL, "%zu rules, over %u", n,
			       CHECKS_CACHE_RECORDS_MAX);
	char *ser = NULL, *info = NULL;
	size_t serlen = 0, infolen = 0;
	int rc = 0;
	if (db) {
		hs_error_t e = hs_serialize_database(db, &ser, &serlen);
		if (e != HS_SUCCESS) {
			rc = e == HS_NOMEM ? -ENOMEM
					   : mx_errf(why, whylen, -EINVAL,
						     "hs_serialize_database: error %d", e);
			goto out;
		}
		if (serlen == 0 || serlen > CHECKS_CACHE_DB_MAX) {
			rc = mx_errf(why, whylen, -EINVAL, "a database of %zu bytes", serlen);
			goto out;
		}
		if (hs_serialized_database_info(ser, serlen, &info) != HS_SUCCESS || !info ||
		    (infolen = strlen(info)) == 0 || infolen > CHECKS_CACHE_INFO_MAX) {
			rc = mx_errf(why, whylen, -EINVAL, "hs_serialized_database_info failed");
			goto out;
		}
	}
	size_t len = CHECKS_CACHE_HEADER_LEN + n * CHECKS_CACHE_RECORD_LEN + infolen + serlen;
	uint8_t *b = calloc(1, len);
	if (!b) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(b, checks_cache_magic, sizeof(checks_cache_magic));
	checks_cache_put32(b + CHECKS_CACHE_OFF_VERSION, CHECKS_CACHE_VERSION);
	checks_cache_put32(b + CHECKS_CACHE_OFF_HEADER_LEN, CHECKS_CACHE_HEADER_LEN);
	memcpy(b + CHECKS_CACHE_OFF_KEY, key, CHECKS_CACHE_KEY_LEN);
	checks_cache_put32(b + CHECKS_CACHE_OFF_RECORDS, (uint32_t)n);
	checks_cache_put32(b + CHECKS_CACHE_OFF_INFO_LEN, (uint32_t)infolen);
	checks_cache_put64(b + CHECKS_CACHE_OFF_DB_LEN, serlen);
	uint8_t *p = b + CHECKS_CACHE_HEADER_LEN;
	for (size_t i = 0; i < n; i++, p += CHECKS_CACHE_RECORD_LEN) {
		checks_cache_put32(p, r[i].id);
		checks_cache_put32(p + 4, d[i].flags);
		p[8] = d[i].mode;
	}
	if (infolen)
		memcpy(p, info, infolen);
	if (serlen)
		memcpy(p + infolen, ser, serlen);
	if ((rc = checks_cache_sum(b + CHECKS_CACHE_HEADER_LEN, len - CHECKS_CACHE_HEADER_LEN,
				   b + CHECKS_CACHE_OFF_SUM)) < 0) {
		free(b);
		mx_errf(why, whylen, rc, "SHA-256 failed");
		goto out;
	}
	*out = b;
	*outlen = len;
out:
	free(ser);
	free(info);
	return rc;
}

/* A decision the build can have reached from rule r: the same id, the rule's flags with
 * HS_FLAG_PREFILTER added at most, a mode that only went up, and never exact once
 * prefiltered. */
static bool checks_cache_decision_ok(const struct checks_cache_rule *r, uint32_t id,
				     uint32_t flags, uint8_t mode)
{
	if (id != r->id || mode >= CHECKS_CACHE_MODE_MAX || mode < r->mode)
		return false;
	if (flags == r->flags)
		return true;
	return flags == (r->flags | HS_FLAG_PREFILTER) && mode != CHECKS_CACHE_EXACT;
}

int checks_cache_decode(const uint8_t *buf, size_t len, const uint8_t key[CHECKS_CACHE_KEY_LEN],
			const struct checks_cache_rule *r, size_t n,
			struct checks_cache_decision *d, hs_database_t **db, char *why,
			size_t whylen)
{
	if (len < CHECKS_CACHE_HEADER_LEN)
		return mx_errf(why, whylen, 0, "short file (%zu bytes)", len);
	if (memcmp(buf, checks_cache_magic, sizeof(checks_cache_magic)) != 0)
		return mx_errf(why, whylen, 0, "not a cache file");
	uint32_t version = checks_cache_get32(buf + CHECKS_CACHE_OFF_VERSION);
	if (version != CHECKS_CACHE_VERSION)
		return mx_errf(why, whylen, 0, "format version %u, not %u", version,
			       CHECKS_CACHE_VERSION);
	if (checks_cache_get32(buf + CHECKS_CACHE_OFF_HEADER_LEN) != CHECKS_CACHE_HEADER_LEN)
		return mx_errf(why, whylen, 0, "bad header length");
	if (memcmp(buf + CHECKS_CACHE_OFF_KEY, key, CHECKS_CACHE_KEY_LEN) != 0)
		return mx_errf(why, whylen, 0, "written for another key");
	uint32_t nrec = checks_cache_get32(buf + CHECKS_CACHE_OFF_RECORDS);
	uint32_t infolen = checks_cache_get32(buf + CHECKS_CACHE_OFF_INFO_LEN);
	uint64_t dblen = checks_cache_get64(buf + CHECKS_CACHE_OFF_DB_LEN);
	if (nrec > CHECKS_CACHE_RECORDS_MAX || nrec != n)
		return mx_errf(why, whylen, 0, "%u rules, not %zu", nrec, n);
	if (infolen > CHECKS_CACHE_INFO_MAX || dblen > CHECKS_CACHE_DB_MAX)
		return mx_errf(why, whylen, 0, "a length out of bounds");
	if ((infolen == 0) != (dblen == 0))
		return mx_errf(why, whylen, 0, "database and its description disagree");
	/* Bounded above: no overflow (the static assertion at the top). */
	size_t want = CHECKS_CACHE_HEADER_LEN + (size_t)nrec * CHECKS_CACHE_RECORD_LEN + infolen +
		      (size_t)dblen;
	if (len != want)
		return mx_errf(why, whylen, 0, "%zu bytes, the header says %zu", len, want);
	uint8_t sum[32];
	int rc = checks_cache_sum(buf + CHECKS_CACHE_HEADER_LEN, len - CHECKS_CACHE_HEADER_LEN, sum);
	if (rc < 0)
		return mx_errf(why, whylen, 0, "SHA-256 failed");
	if (memcmp(sum, buf + CHECKS_CACHE_OFF_SUM, sizeof(sum)) != 0)
		return mx_errf(why, whylen, 0, "checksum mismatch");

	const uint8_t *rec = buf + CHECKS_CACHE_HEADER_LEN;
	bool in_db = false;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rec + i * CHECKS_CACHE_RECORD_LEN;
		uint32_t id = checks_cache_get32(p), flags = checks_cache_get32(p + 4);
		if (!checks_cache_decision_ok(&r[i], id, flags, p[8]) || p[9] || p[10] || p[11])
			return mx_errf(why, whylen, 0, "rule %zu: a decision the inputs cannot give",
				       i);
		in_db = in_db || p[8] != CHECKS_CACHE_NONE;
	}
	/* A database exactly when some rule is in it (checks.c compiles none otherwise). */
	if (in_db != (dblen > 0))
		return mx_errf(why, whylen, 0, "database and rules disagree");

	hs_database_t *hdb = NULL;
	if (dblen > 0) {
		const char *info = (const char *)rec + (size_t)nrec * CHECKS_CACHE_RECORD_LEN;
		const char *blob = info + infolen;
		/* Hyperscan gets exactly the rest of the buffer (len == want above). */
		assert(blob + dblen == (const char *)buf + len);
		char *hinfo = NULL;
		hs_error_t e = hs_serialized_database_info(blob, (size_t)dblen, &hinfo);
		if (e == HS_NOMEM)
			return -ENOMEM;
		bool same = e == HS_SUCCESS && hinfo && strlen(hinfo) == infolen &&
			    memcmp(hinfo, info, infolen) == 0;
		free(hinfo);
		if (!same)
			return mx_errf(why, whylen, 0, "the database is not the one described");
		e = hs_deserialize_database(blob, (size_t)dblen, &hdb);
		if (e == HS_NOMEM)
			return -ENOMEM;
		if (e != HS_SUCCESS)
			return mx_errf(why, whylen, 0, "hs_deserialize_database: error %d", e);
	}
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = rec + i * CHECKS_CACHE_RECORD_LEN;
		d[i] = (struct checks_cache_decision){ .flags = checks_cache_get32(p + 4),
						       .mode = p[8] };
	}
	*db = hdb;
	return 1;
}

/* ---- the directory ---------------------------------------------------------------------- */

/* mkdir -p: missing parents 0755, the directory itself 0700 (before the umask). */
static int checks_cache_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
			*p = '/';
			return -errno;
		}
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int checks_cache_dir_open(const char *path, int *dfd, char *why, size_t whylen)
{
	*dfd = -1;
	if (!path || path[0] != '/')
		return mx_errf(why, whylen, -EINVAL, "checks cache %s: not an absolute path",
			       path ? path : "(null)");
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		int rc = checks_cache_mkdirs(path);
		if (rc < 0)
			return mx_errf(why, whylen, rc, "checks cache %s: cannot create: %s", path,
				       strerror(-rc));
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0) {
		int rc = -errno;
		return mx_errf(why, whylen, rc, "checks cache %s: %s", path, strerror(-rc));
	}
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return mx_errf(why, whylen, rc, "checks cache %s: %s", path, strerror(-rc));
	}
	uid_t uid = geteuid();
	if (st.st_uid != uid) {
		close(fd);
		return mx_errf(why, whylen, -EPERM,
			       "checks cache %s: owned by uid %u, not %u: not used", path,
			       (unsigned)st.st_uid, (unsigned)uid);
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		close(fd);
		return mx_errf(why, whylen, -EPERM,
			       "checks cache %s: group or world writable (mode %04o): not used",
			       path, (unsigned)(st.st_mode & 07777));
	}
	*dfd = fd;
	return 0;
}

int checks_cache_load(int dfd, const uint8_t key[CHECKS_CACHE_KEY_LEN],
		      const struct checks_cache_rule *r, size_t n, struct checks_cache_decision *d,
		      hs_database_t **db, char *why, size_t whylen)
{
	char name[CHECKS_CACHE_NAME_LEN + 1];
	checks_cache_file_name(key, name);
	if (why && whylen)
		why[0] = '\0';
	/* O_NONBLOCK: a FIFO where the file should be must not hang the reload. */
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return mx_errf(why, whylen, 0, "%s: %s", name, strerror(errno));
	}
	struct stat st;
	const char *bad = NULL;
	if (fstat(fd, &st) < 0)
		bad = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		bad = "not a regular file";
	else if (st.st_uid != geteuid())
		bad = "owned by another user";
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		bad = "group or world writable";
	else if ((uint64_t)st.st_size > CHECKS_CACHE_TOTAL_MAX)
		bad = "too large";
	if (bad) {
		close(fd);
		return mx_errf(why, whylen, 0, "%s: %s", name, bad);
	}
	size_t len = (size_t)st.st_size, got = 0;
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < len) {
		ssize_t k = pread(fd, buf + got, len - got, (off_t)got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	int rc;
	char reason[200];
	if (got != len) {
		rc = mx_errf(reason, sizeof(reason), 0, "short read");
	} else {
		rc = checks_cache_decode(buf, len, key, r, n, d, db, reason, sizeof(reason));
		if (rc == 1)
			(void)futimens(fd, NULL); /* recently used: the last to be evicted */
	}
	free(buf);
	close(fd);
	if (rc == 0)
		mx_errf(why, whylen, 0, "%s: %s", name, reason);
	return rc;
}

static int checks_cache_write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int checks_cache_store(int dfd, const uint8_t key[CHECKS_CACHE_KEY_LEN],
		       const struct checks_cache_rule *r, const struct checks_cache_decision *d,
		       size_t n, const hs_database_t *db, const struct checks_cache_limits *lim,
		       char *why, size_t whylen)
{
	uint8_t *buf;
	size_t len;
	int rc = checks_cache_encode(key, r, d, n, db, &buf, &len, why, whylen);
	if (rc < 0)
		return rc;
	char name[CHECKS_CACHE_NAME_LEN + 1], tmp[CHECKS_CACHE_TMP_LEN + 1];
	checks_cache_file_name(key, name);
	int fd = -1;
	for (unsigned attempt = 0; attempt < 8 && fd < 0; attempt++) {
		uint64_t rnd = 0;
		if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
			rnd = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&rnd ^ attempt;
		snprintf(tmp, sizeof(tmp), ".%.64s.%016llx.tmp", name, (unsigned long long)rnd);
		fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = -errno;
		free(buf);
		return mx_errf(why, whylen, rc, "cannot create a file: %s", strerror(-rc));
	}
	struct stat st = { 0 };
	const char *step = "write";
	rc = checks_cache_write_all(fd, buf, len);
	free(buf);
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
		step = "fsync";
	}
	if (rc == 0 && fstat(fd, &st) < 0) {
		rc = -errno;
		step = "fstat";
	}
	if (close(fd) < 0 && rc == 0) {
		rc = -errno;
		step = "close";
	}
	if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0) {
		rc = -errno;
		step = "rename";
	}
	if (rc < 0) {
		(void)unlinkat(dfd, tmp, 0);
		return mx_errf(why, whylen, rc, "%s: %s: %s", name, step, strerror(-rc));
	}
	(void)fsync(dfd); /* the rename itself; a lost rename is only a later miss */
	int ev = checks_cache_evict(dfd, lim, name, (int64_t)st.st_mtim.tv_sec);
	if (ev < 0)
		return mx_errf(why, whylen, ev, "eviction: %s", strerror(-ev));
	return 0;
}

/* ---- eviction --------------------------------------------------------------------------- */

struct checks_cache_file {
	int64_t sec;
	long nsec;
	uint64_t size;
	char name[CHECKS_CACHE_NAME_LEN + 1];
};

static bool checks_cache_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool checks_cache_is_entry(const char *s)
{
	return strlen(s) == CHECKS_CACHE_NAME_LEN && checks_cache_is_hex(s, 64) &&
	       strcmp(s + 64, ".hsdb") == 0;
}

static bool checks_cache_is_tmp(const char *s)
{
	return strlen(s) == CHECKS_CACHE_TMP_LEN && s[0] == '.' && checks_cache_is_hex(s + 1, 64) &&
	       s[65] == '.' && checks_cache_is_hex(s + 66, 16) && strcmp(s + 82, ".tmp") == 0;
}

static int checks_cache_file_cmp(const void *a, const void *b)
{
	const struct checks_cache_file *x = a, *y = b;
	if (x->sec != y->sec)
		return x->sec < y->sec ? -1 : 1;
	if (x->nsec != y->nsec)
		return x->nsec < y->nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

int checks_cache_evict(int dfd, const struct checks_cache_limits *lim, const char *keep,
		       int64_t now_mtime)
{
	unsigned max_files = lim && lim->max_files ? lim->max_files : CHECKS_CACHE_MAX_FILES;
	uint64_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : CHECKS_CACHE_MAX_BYTES;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	struct checks_cache_file *v = NULL;
	size_t nv = 0, cap = 0, seen = 0;
	uint64_t bytes = 0;
	int removed = 0, rc = 0;
	struct dirent *de;
	while (seen < CHECKS_CACHE_DIR_SCAN_MAX && (de = readdir(dir)) != NULL) {
		bool entry = checks_cache_is_entry(de->d_name), tmp = !entry &&
								     checks_cache_is_tmp(de->d_name);
		if (!entry && !tmp)
			continue;
		seen++;
		struct stat st;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (tmp) {
			if (now_mtime - (int64_t)st.st_mtim.tv_sec > CHECKS_CACHE_TMP_STALE_S &&
			    unlinkat(dfd, de->d_name, 0) == 0)
				removed++;
			continue;
		}
		if (nv == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct checks_cache_file *nvp = realloc(v, ncap * sizeof(*nvp));
			if (!nvp) {
				rc = -ENOMEM;
				break;
			}
			v = nvp;
			cap = ncap;
		}
		struct checks_cache_file *f = &v[nv++];
		f->sec = (int64_t)st.st_mtim.tv_sec;
		f->nsec = st.st_mtim.tv_nsec;
		f->size = (uint64_t)st.st_size;
		memcpy(f->name, de->d_name, CHECKS_CACHE_NAME_LEN + 1);
		bytes += f->size;
	}
	closedir(dir);
	if (rc == 0 && nv > 0) {
		qsort(v, nv, sizeof(*v), checks_cache_file_cmp);
		size_t count = nv;
		for (size_t i = 0; i < nv && (count > max_files || bytes > max_bytes); i++) {
			if (keep && strcmp(v[i].name, keep) == 0)
				continue;
			if (unlinkat(dfd, v[i].name, 0) < 0)
				continue;
			count--;
			bytes -= v[i].size;
			removed++;
		}
	}
	free(v);
	return rc < 0 ? rc : removed;
}
