/* The LMDB table store; see tables_env.h.
 *
 * Layout of one table (a named database "KIND:NAME"):
 *   "\0meta"  struct tables_meta (magic, version, kind, generation, entries)
 *   "\0src"   the source text (cidr, regexp, pcre: regexp rules are compiled on open,
 *             and the listing shows the rules as written)
 *   hash:     folded key -> value
 *   cidr:     family (4|6) + 16-byte big-endian last address of an interval ->
 *             16-byte first address + 4-byte rule index (big-endian) + value
 * Real keys never contain NUL (the parser refuses it), so the "\0" records cannot collide
 * with them and sort first. */
#include "tables/tables_env.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxgate/inet.h"
#include "tables/table_cidr.h"
#include "tables/table_regexp.h"
#include "tables/tables_internal.h"

#define TABLES_MAGIC "MXTB"
#define TABLES_VERSION 1u
#define TABLES_ENTRIES_MAX 200000000u
#define TABLES_FILE_MAX ((size_t)4 << 30)

static const char tables_meta_key[] = "\0meta"; /* 5 bytes with the NUL */
static const char tables_src_key[] = "\0src"; /* 4 bytes */
#define TABLES_META_KLEN 5
#define TABLES_SRC_KLEN 4
#define TABLES_CIDR_KLEN 17
#define TABLES_CIDR_VHDR 20

struct tables_meta {
	char magic[4];
	uint32_t version;
	uint32_t kind;
	uint32_t reserved;
	uint64_t generation;
	uint64_t entries;
};

struct table_inline_entry {
	char *key, *value;
};

struct table {
	enum table_kind kind;
	char spec[TABLE_NAME_MAX + 16];
	char dbname[TABLE_NAME_MAX + 16];
	struct tables_reader *rd;
	MDB_dbi dbi;
	bool resolved;
	uint64_t checked_epoch; /* epoch at which the meta record was last validated (0: never) */
	uint64_t generation;
	/* regexp/pcre: compiled from the stored source of `re_generation` */
	struct table_regexp *re;
	uint64_t re_generation;
	/* static */
	char *static_value;
	/* inline: sorted by key */
	struct table_inline_entry *entries;
	size_t nentries;
};

static const char *const table_kind_names[TABLE_KIND_MAX] = {
	[TABLE_KIND_HASH] = "hash",
	[TABLE_KIND_CIDR] = "cidr",
	[TABLE_KIND_REGEXP] = "regexp",
	[TABLE_KIND_PCRE] = "pcre",
	[TABLE_KIND_STATIC] = "static",
	[TABLE_KIND_INLINE] = "inline",
};

const char *table_kind_name(enum table_kind k)
{
	return (unsigned)k < TABLE_KIND_MAX ? table_kind_names[k] : "unknown";
}

static int tables_mdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return -EBADMSG;
	case MDB_READERS_FULL:
	case MDB_DBS_FULL:
	case MDB_TXN_FULL:
		return -EAGAIN;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

int table_spec_parse(const char *spec, enum table_kind *kind, const char **name, char *err,
		     size_t errlen)
{
	const char *colon = strchr(spec, ':');
	if (!colon) {
		snprintf(err, errlen, "table \"%.64s\": expected TYPE:NAME", spec);
		return -EINVAL;
	}
	size_t tl = (size_t)(colon - spec);
	static const struct {
		const char *type;
		enum table_kind kind;
	} types[] = {
		{ "hash", TABLE_KIND_HASH },   { "lmdb", TABLE_KIND_HASH },
		{ "cidr", TABLE_KIND_CIDR },   { "regexp", TABLE_KIND_REGEXP },
		{ "pcre", TABLE_KIND_PCRE },   { "static", TABLE_KIND_STATIC },
		{ "inline", TABLE_KIND_INLINE },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strlen(types[i].type) == tl && memcmp(types[i].type, spec, tl) == 0) {
			*kind = types[i].kind;
			*name = colon + 1;
			if (!colon[1]) {
				snprintf(err, errlen, "table \"%.64s\": empty name", spec);
				return -EINVAL;
			}
			if (strlen(colon + 1) > TABLE_NAME_MAX) {
				snprintf(err, errlen, "table \"%.64s...\": name longer than %u bytes",
					 spec, TABLE_NAME_MAX);
				return -EINVAL;
			}
			return 0;
		}
	}
	snprintf(err, errlen,
		 "table \"%.64s\": unsupported type \"%.*s\" (supported: hash, lmdb, cidr, regexp, "
		 "pcre, static, inline)",
		 spec, (int)(tl > 32 ? 32 : tl), spec);
	return -EINVAL;
}

/* ---- environment ---- */

int tables_env_open(const char *dir, const struct tables_env_opts *opts, struct tables_env **out,
		    char *err, size_t errlen)
{
	struct tables_env_opts o = opts ? *opts : (struct tables_env_opts){ 0 };
	if (!o.map_size)
		o.map_size = (size_t)64 << 30;
	if (!o.max_tables)
		o.max_tables = 1024;
	if (!o.max_readers)
		o.max_readers = 1024;
	if (!o.read_only && mkdir(dir, 0750) < 0 && errno != EEXIST) {
		int e = errno;
		snprintf(err, errlen, "mkdir %s: %s", dir, strerror(e));
		return -e;
	}
	struct tables_env *env = calloc(1, sizeof(*env));
	if (!env)
		return -ENOMEM;
	env->read_only = o.read_only;
	pthread_mutex_init(&env->lock, NULL);
	int rc = mdb_env_create(&env->env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env->env, o.map_size);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(env->env, o.max_tables);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(env->env, o.max_readers);
	/* MDB_NOTLS: a read transaction belongs to its struct tables_reader, not to a thread,
	 * so one thread may hold several readers (tests, the CLI). */
	if (rc == 0)
		rc = mdb_env_open(env->env, dir, MDB_NOTLS | (o.read_only ? MDB_RDONLY : 0), 0640);
	if (rc != 0) {
		snprintf(err, errlen, "open table store %s: %s", dir, mdb_strerror(rc));
		tables_env_close(env);
		return tables_mdb_err(rc);
	}
	/* A crashed process may have left stale reader slots that would pin old pages. */
	int dead = 0;
	mdb_reader_check(env->env, &dead);
	*out = env;
	return 0;
}

void tables_env_close(struct tables_env *env)
{
	if (!env)
		return;
	if (env->env)
		mdb_env_close(env->env);
	pthread_mutex_destroy(&env->lock);
	free(env);
}

static int tables_dbname(enum table_kind kind, const char *name, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s:%s", table_kind_name(kind), name);
	return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}

static bool tables_meta_decode(const MDB_val *v, struct tables_meta *m)
{
	if (v->mv_size != sizeof(*m))
		return false;
	memcpy(m, v->mv_data, sizeof(*m));
	return memcmp(m->magic, TABLES_MAGIC, 4) == 0 && m->version == TABLES_VERSION &&
	       m->kind < TABLE_KIND_MAX;
}

/* ---- building ---- */

struct tables_kv {
	size_t off; /* key at arena + off, value right after its NUL */
	uint32_t klen, vlen;
	uint64_t seq;
};

static int tables_kv_cmp(const void *a, const void *b, void *arena)
{
	const struct tables_kv *x = a, *y = b;
	const char *ar = arena;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(ar + x->off, ar + y->off, n);
	if (c)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct tables_hash_build {
	char *arena;
	size_t used, cap;
	struct tables_kv *kv;
	size_t n, ncap;
};

static int tables_hash_parse(const char *text, size_t len, struct tables_hash_build *b, char *err,
			     size_t errlen)
{
	struct table_text tt;
	table_text_init(&tt, text, len);
	char *line, *key, *value, why[160] = "";
	size_t llen;
	unsigned lineno = 0;
	int rc;
	while ((rc = table_text_next(&tt, &line, &llen, &lineno, why, sizeof(why))) > 0) {
		if (table_kv_split(line, &key, &value, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "line %u: %s", lineno, why);
			rc = -EINVAL;
			break;
		}
		size_t kl = strlen(key), vl = strlen(value);
		if (kl > TABLE_KEY_MAX || vl > TABLE_VALUE_MAX) {
			snprintf(err, errlen, "line %u: %s longer than %u bytes", lineno,
				 kl > TABLE_KEY_MAX ? "key" : "value",
				 kl > TABLE_KEY_MAX ? TABLE_KEY_MAX : TABLE_VALUE_MAX);
			rc = -EINVAL;
			break;
		}
		if (b->n >= TABLES_ENTRIES_MAX) {
			snprintf(err, errlen, "line %u: more than %u entries", lineno,
				 TABLES_ENTRIES_MAX);
			rc = -EINVAL;
			break;
		}
		table_fold(key, kl);
		if (b->used + kl + vl + 2 > b->cap) {
			size_t cap = b->cap ? b->cap : 1 << 16;
			while (cap < b->used + kl + vl + 2)
				cap *= 2;
			char *na = realloc(b->arena, cap);
			if (!na) {
				rc = -ENOMEM;
				break;
			}
			b->arena = na;
			b->cap = cap;
		}
		if (b->n == b->ncap) {
			size_t cap = b->ncap ? b->ncap * 2 : 1024;
			struct tables_kv *nk = realloc(b->kv, cap * sizeof(*nk));
			if (!nk) {
				rc = -ENOMEM;
				break;
			}
			b->kv = nk;
			b->ncap = cap;
		}
		b->kv[b->n] = (struct tables_kv){ b->used, (uint32_t)kl, (uint32_t)vl, b->n };
		b->n++;
		memcpy(b->arena + b->used, key, kl + 1);
		memcpy(b->arena + b->used + kl + 1, value, vl + 1);
		b->used += kl + vl + 2;
	}
	if (rc == -EINVAL && why[0] && !strstr(err, "line"))
		snprintf(err, errlen, "%s", why);
	table_text_free(&tt);
	return rc < 0 ? rc : 0;
}

/* Begin the write transaction and open (create) and empty the table's database, keeping the
 * generation counter. Called with env->lock held. */
static int tables_write_begin(struct tables_env *env, const char *dbname, MDB_txn **txn,
			      MDB_dbi *dbi, uint64_t *generation)
{
	int rc = mdb_txn_begin(env->env, NULL, 0, txn);
	if (rc)
		return rc;
	rc = mdb_dbi_open(*txn, dbname, MDB_CREATE, dbi);
	if (rc)
		goto fail;
	MDB_val k = { TABLES_META_KLEN, (void *)tables_meta_key }, v;
	struct tables_meta m;
	*generation = 1;
	if (mdb_get(*txn, *dbi, &k, &v) == 0 && tables_meta_decode(&v, &m))
		*generation = m.generation + 1;
	rc = mdb_drop(*txn, *dbi, 0);
	if (rc)
		goto fail;
	return 0;
fail:
	mdb_txn_abort(*txn);
	*txn = NULL;
	return rc;
}

static int tables_put_meta(MDB_txn *txn, MDB_dbi dbi, enum table_kind kind, uint64_t generation,
			   uint64_t entries)
{
	struct tables_meta m = { .version = TABLES_VERSION, .kind = (uint32_t)kind,
				 .generation = generation, .entries = entries };
	memcpy(m.magic, TABLES_MAGIC, 4);
	MDB_val k = { TABLES_META_KLEN, (void *)tables_meta_key }, v = { sizeof(m), &m };
	return mdb_put(txn, dbi, &k, &v, MDB_APPEND);
}

static int tables_put_src(MDB_txn *txn, MDB_dbi dbi, const char *text, size_t len)
{
	MDB_val k = { TABLES_SRC_KLEN, (void *)tables_src_key }, v = { len, (void *)text };
	return mdb_put(txn, dbi, &k, &v, MDB_APPEND);
}

static void tables_be32(uint8_t *p, uint32_t x)
{
	p[0] = (uint8_t)(x >> 24);
	p[1] = (uint8_t)(x >> 16);
	p[2] = (uint8_t)(x >> 8);
	p[3] = (uint8_t)x;
}

int tables_build(struct tables_env *env, const char *spec, const char *text, size_t len,
		 tables_warn_fn *warn, void *warn_ctx, struct tables_build_stats *stats, char *err,
		 size_t errlen)
{
	enum table_kind kind;
	const char *name;
	char dbname[TABLE_NAME_MAX + 16];
	struct tables_build_stats st = { 0 };
	int rc = table_spec_parse(spec, &kind, &name, err, errlen);
	if (rc < 0)
		return rc;
	if (kind == TABLE_KIND_STATIC || kind == TABLE_KIND_INLINE) {
		snprintf(err, errlen, "%s: tables are given in their name and need no build",
			 table_kind_name(kind));
		return -ENOTSUP;
	}
	if (env->read_only) {
		snprintf(err, errlen, "table store opened read-only");
		return -EROFS;
	}
	if ((rc = tables_dbname(kind, name, dbname, sizeof(dbname))) < 0)
		return rc;

	/* Parse and check everything before the write transaction starts. */
	struct tables_hash_build hb = { 0 };
	struct table_cidr *cidr = NULL;
	struct table_cidr_segment *segs = NULL;
	size_t nsegs = 0;
	err[0] = '\0';
	if (kind == TABLE_KIND_HASH) {
		rc = tables_hash_parse(text, len, &hb, err, errlen);
		if (rc < 0)
			goto out;
		if (hb.n)
			qsort_r(hb.kv, hb.n, sizeof(*hb.kv), tables_kv_cmp, hb.arena);
	} else if (kind == TABLE_KIND_CIDR) {
		if ((rc = table_cidr_parse(text, len, &cidr, err, errlen)) < 0)
			goto out;
		if ((rc = table_cidr_compile(cidr, &segs, &nsegs)) < 0)
			goto out;
		st.entries = table_cidr_rules(cidr);
	} else {
		struct table_regexp *re;
		if ((rc = table_regexp_compile(text, len, kind == TABLE_KIND_PCRE, &re, err,
					       errlen)) < 0)
			goto out;
		st.entries = table_regexp_rules(re);
		table_regexp_free(re);
	}

	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	uint64_t generation;
	pthread_mutex_lock(&env->lock);
	rc = tables_write_begin(env, dbname, &txn, &dbi, &generation);
	if (rc)
		goto unlock;
	if (kind == TABLE_KIND_HASH) {
		/* Count unique keys first so the meta record (written first: MDB_APPEND) is right. */
		uint64_t unique = 0;
		for (size_t i = 0; i < hb.n; i++)
			if (i == 0 || tables_kv_cmp(&(struct tables_kv){ hb.kv[i].off, hb.kv[i].klen, 0, 0 },
						    &(struct tables_kv){ hb.kv[i - 1].off, hb.kv[i - 1].klen, 0, 0 },
						    hb.arena) != 0)
				unique++;
		st.entries = unique;
		rc = tables_put_meta(txn, dbi, kind, generation, unique);
		for (size_t i = 0; rc == 0 && i < hb.n; i++) {
			const struct tables_kv *e = &hb.kv[i];
			if (i > 0 && hb.kv[i - 1].klen == e->klen &&
			    memcmp(hb.arena + hb.kv[i - 1].off, hb.arena + e->off, e->klen) == 0) {
				st.duplicates++;
				if (warn) {
					char msg[TABLE_KEY_MAX + 64];
					snprintf(msg, sizeof(msg), "duplicate entry: \"%s\"",
						 hb.arena + e->off);
					warn(warn_ctx, msg);
				}
				continue;
			}
			MDB_val k = { e->klen, hb.arena + e->off };
			MDB_val v = { e->vlen, hb.arena + e->off + e->klen + 1 };
			rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
			st.records++;
		}
	} else {
		rc = tables_put_meta(txn, dbi, kind, generation, st.entries);
		if (rc == 0)
			rc = tables_put_src(txn, dbi, text, len);
		for (size_t i = 0; rc == 0 && i < nsegs; i++) {
			uint8_t kb[TABLES_CIDR_KLEN];
			const struct table_cidr_segment *s = &segs[i];
			size_t vl = strlen(s->value);
			uint8_t *vb = malloc(TABLES_CIDR_VHDR + vl);
			if (!vb) {
				rc = ENOMEM;
				break;
			}
			kb[0] = s->family == AF_INET ? 4 : 6;
			memcpy(kb + 1, s->hi, 16);
			memcpy(vb, s->lo, 16);
			tables_be32(vb + 16, s->rule);
			memcpy(vb + TABLES_CIDR_VHDR, s->value, vl);
			MDB_val k = { sizeof(kb), kb }, v = { TABLES_CIDR_VHDR + vl, vb };
			rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
			free(vb);
			st.records++;
		}
	}
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
unlock:
	pthread_mutex_unlock(&env->lock);
	if (rc) {
		snprintf(err, errlen, "write %s: %s", dbname, mdb_strerror(rc));
		rc = tables_mdb_err(rc);
	}
out:
	free(hb.arena);
	free(hb.kv);
	free(segs);
	table_cidr_free(cidr);
	if (stats)
		*stats = st;
	return rc;
}

int tables_read_file(const char *path, size_t max, char **data, size_t *len, char *err,
		     size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "open %s: %s", path, strerror(e));
		return -e;
	}
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
		snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path, max);
		close(fd);
		return -EINVAL;
	}
	/* One byte more than the size: reading it means the file grew while we read. */
	size_t cap = (size_t)sb.st_size + 1, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			snprintf(err, errlen, "read %s: %s", path, strerror(e));
			free(buf);
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (n == cap) {
		snprintf(err, errlen, "%s: changed while being read", path);
		free(buf);
		return -EAGAIN;
	}
	*data = buf;
	*len = n;
	return 0;
}

int tables_build_file(struct tables_env *env, const char *spec, const char *path,
		      tables_warn_fn *warn, void *warn_ctx, struct tables_build_stats *stats,
		      char *err, size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = tables_read_file(path, TABLES_FILE_MAX, &buf, &n, err, errlen);
	if (rc < 0)
		return rc;
	rc = tables_build(env, spec, buf, n, warn, warn_ctx, stats, err, errlen);
	if (rc == -EINVAL && strncmp(err, "line ", 5) == 0) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s, %s", path, err);
		snprintf(err, errlen, "%s", tmp);
	}
	free(buf);
	return rc;
}

/* ---- readers ---- */

int tables_reader_open(struct tables_env *env, struct tables_reader **out)
{
	struct tables_reader *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->env = env;
	rd->epoch = 1;
	int rc = mdb_txn_begin(env->env, NULL, MDB_RDONLY, &rd->txn);
	if (rc) {
		free(rd);
		return tables_mdb_err(rc);
	}
	*out = rd;
	return 0;
}

int tables_reader_renew(struct tables_reader *rd)
{
	mdb_txn_reset(rd->txn);
	rd->epoch++;
	return tables_mdb_err(mdb_txn_renew(rd->txn));
}

void tables_reader_close(struct tables_reader *rd)
{
	if (!rd)
		return;
	mdb_txn_abort(rd->txn);
	free(rd);
}

/* ---- table handles ---- */

static int table_inline_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct table_inline_entry *)a)->key,
		      ((const struct table_inline_entry *)b)->key);
}

static int table_inline_add(void *ctx, const char *key, const char *value)
{
	struct table *t = ctx;
	struct table_inline_entry *ne = realloc(t->entries, (t->nentries + 1) * sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	t->entries = ne;
	ne[t->nentries].key = strdup(key);
	ne[t->nentries].value = strdup(value);
	t->nentries++;
	if (!ne[t->nentries - 1].key || !ne[t->nentries - 1].value)
		return -ENOMEM;
	return 0;
}

int table_open(struct tables_reader *rd, const char *spec, struct table **out, char *err,
	       size_t errlen)
{
	enum table_kind kind;
	const char *name;
	int rc = table_spec_parse(spec, &kind, &name, err, errlen);
	if (rc < 0)
		return rc;
	if (!rd && kind != TABLE_KIND_STATIC && kind != TABLE_KIND_INLINE) {
		snprintf(err, errlen, "%s: no table store to look it up in", spec);
		return -EINVAL;
	}
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->kind = kind;
	t->rd = rd;
	snprintf(t->spec, sizeof(t->spec), "%s", spec);
	if ((rc = tables_dbname(kind, name, t->dbname, sizeof(t->dbname))) < 0)
		goto fail;
	if (kind == TABLE_KIND_STATIC) {
		char v[TABLE_VALUE_MAX + 1];
		if ((rc = table_static_value(name, v, sizeof(v), err, errlen)) < 0)
			goto fail;
		if (!(t->static_value = strdup(v))) {
			rc = -ENOMEM;
			goto fail;
		}
	} else if (kind == TABLE_KIND_INLINE) {
		if ((rc = table_inline_parse(name, table_inline_add, t, err, errlen)) < 0)
			goto fail;
		qsort(t->entries, t->nentries, sizeof(*t->entries), table_inline_entry_cmp);
		for (size_t i = 1; i < t->nentries; i++) {
			if (strcmp(t->entries[i - 1].key, t->entries[i].key) == 0) {
				snprintf(err, errlen, "inline table: duplicate key \"%.64s\"",
					 t->entries[i].key);
				rc = -EINVAL;
				goto fail;
			}
		}
	}
	*out = t;
	return 0;
fail:
	table_close(t);
	return rc;
}

void table_close(struct table *t)
{
	if (!t)
		return;
	table_regexp_free(t->re);
	free(t->static_value);
	for (size_t i = 0; i < t->nentries; i++) {
		free(t->entries[i].key);
		free(t->entries[i].value);
	}
	free(t->entries);
	free(t);
}

enum table_kind table_get_kind(const struct table *t)
{
	return t->kind;
}

const char *table_spec(const struct table *t)
{
	return t->spec;
}

/* Find the table's database; once found, renew the reader so its transaction knows it. */
static int table_resolve(struct table *t)
{
	struct tables_env *env = t->rd->env;
	MDB_txn *txn;
	pthread_mutex_lock(&env->lock);
	int rc = mdb_txn_begin(env->env, NULL, MDB_RDONLY, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, t->dbname, 0, &t->dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn); /* a committed read txn keeps the handle */
		else
			mdb_txn_abort(txn);
	}
	pthread_mutex_unlock(&env->lock);
	if (rc)
		return tables_mdb_err(rc);
	t->resolved = true;
	t->checked_epoch = 0;
	return tables_reader_renew(t->rd);
}

/* Validate the meta record once per reader epoch; (re)compile regexp rules when the
 * generation changed. */
static int table_check(struct table *t)
{
	int rc;
	if (!t->resolved && (rc = table_resolve(t)) < 0)
		return rc;
	if (t->checked_epoch == t->rd->epoch)
		return 0;
	MDB_val k = { TABLES_META_KLEN, (void *)tables_meta_key }, v;
	struct tables_meta m;
	rc = mdb_get(t->rd->txn, t->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return -EBADMSG; /* a database without our meta record is not a table */
	if (rc)
		return tables_mdb_err(rc);
	if (!tables_meta_decode(&v, &m) || m.kind != (uint32_t)t->kind)
		return -EBADMSG;
	t->generation = m.generation;
	if ((t->kind == TABLE_KIND_REGEXP || t->kind == TABLE_KIND_PCRE) &&
	    (!t->re || t->re_generation != m.generation)) {
		MDB_val sk = { TABLES_SRC_KLEN, (void *)tables_src_key }, sv;
		rc = mdb_get(t->rd->txn, t->dbi, &sk, &sv);
		if (rc)
			return rc == MDB_NOTFOUND ? -EBADMSG : tables_mdb_err(rc);
		struct table_regexp *re;
		char why[256];
		rc = table_regexp_compile(sv.mv_data, sv.mv_size, t->kind == TABLE_KIND_PCRE, &re,
					  why, sizeof(why));
		if (rc < 0)
			return rc == -ENOMEM ? rc : -EBADMSG;
		table_regexp_free(t->re);
		t->re = re;
		t->re_generation = m.generation;
	}
	t->checked_epoch = t->rd->epoch;
	return 0;
}

static int table_copy_value(const void *p, size_t n, char *val, size_t vallen)
{
	if (n > TABLE_VALUE_MAX || memchr(p, '\0', n))
		return -EBADMSG;
	if (n >= vallen)
		return -E2BIG;
	memcpy(val, p, n);
	val[n] = '\0';
	return 1;
}

static int table_lookup_cidr(struct table *t, const char *key, char *val, size_t vallen)
{
	struct mx_inet_addr a;
	if (!table_cidr_key(key, &a))
		return 0;
	uint8_t kb[TABLES_CIDR_KLEN] = { a.family == AF_INET ? 4 : 6 };
	memcpy(kb + 1, a.bytes, a.family == AF_INET ? 4 : 16);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(t->rd->txn, t->dbi, &cur);
	if (rc)
		return tables_mdb_err(rc);
	MDB_val k = { sizeof(kb), kb }, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return tables_mdb_err(rc);
	if (k.mv_size != TABLES_CIDR_KLEN || v.mv_size < TABLES_CIDR_VHDR)
		return -EBADMSG;
	const uint8_t *kp = k.mv_data, *vp = v.mv_data;
	if (kp[0] != kb[0])
		return kp[0] == 4 || kp[0] == 6 ? 0 : -EBADMSG;
	/* The interval [lo, hi] with the smallest hi >= addr: a hit when lo <= addr. */
	if (memcmp(vp, kb + 1, 16) > 0)
		return 0;
	return table_copy_value(vp + TABLES_CIDR_VHDR, v.mv_size - TABLES_CIDR_VHDR, val, vallen);
}

int table_lookup(struct table *t, const char *key, char *val, size_t vallen)
{
	size_t kl = strlen(key);
	if (t->kind == TABLE_KIND_STATIC) {
		size_t n = strlen(t->static_value);
		if (n >= vallen)
			return -E2BIG;
		memcpy(val, t->static_value, n + 1);
		return 1;
	}
	char folded[TABLE_KEY_MAX + 1];
	if (t->kind == TABLE_KIND_INLINE || t->kind == TABLE_KIND_HASH) {
		if (kl == 0 || kl > TABLE_KEY_MAX)
			return 0; /* no such key can have been stored */
		memcpy(folded, key, kl + 1);
		table_fold(folded, kl);
	}
	if (t->kind == TABLE_KIND_INLINE) {
		struct table_inline_entry k = { .key = folded }, *e;
		e = bsearch(&k, t->entries, t->nentries, sizeof(*t->entries), table_inline_entry_cmp);
		if (!e)
			return 0;
		return table_copy_value(e->value, strlen(e->value), val, vallen);
	}
	int rc = table_check(t);
	if (rc < 0)
		return rc;
	switch (t->kind) {
	case TABLE_KIND_HASH: {
		MDB_val k = { kl, folded }, v;
		rc = mdb_get(t->rd->txn, t->dbi, &k, &v);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc)
			return tables_mdb_err(rc);
		return table_copy_value(v.mv_data, v.mv_size, val, vallen);
	}
	case TABLE_KIND_CIDR:
		return table_lookup_cidr(t, key, val, vallen);
	case TABLE_KIND_REGEXP:
	case TABLE_KIND_PCRE:
		return table_regexp_lookup(t->re, key, val, vallen);
	default:
		return -EINVAL;
	}
}

int table_list(struct table *t, int (*fn)(void *ctx, const char *key, const char *value),
	       void *ctx)
{
	if (t->kind == TABLE_KIND_STATIC) {
		fn(ctx, "", t->static_value);
		return 0;
	}
	if (t->kind == TABLE_KIND_INLINE) {
		for (size_t i = 0; i < t->nentries; i++)
			if (fn(ctx, t->entries[i].key, t->entries[i].value))
				break;
		return 0;
	}
	int rc = table_check(t);
	if (rc < 0)
		return rc;
	if (t->kind == TABLE_KIND_HASH) {
		MDB_cursor *cur;
		if ((rc = mdb_cursor_open(t->rd->txn, t->dbi, &cur)))
			return tables_mdb_err(rc);
		MDB_val k, v;
		char key[TABLE_KEY_MAX + 1], value[TABLE_VALUE_MAX + 1];
		int op = MDB_FIRST;
		while ((rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0) {
			op = MDB_NEXT;
			if (k.mv_size > 0 && ((const char *)k.mv_data)[0] == '\0')
				continue;
			if (k.mv_size > TABLE_KEY_MAX || memchr(k.mv_data, '\0', k.mv_size)) {
				rc = -EBADMSG;
				break;
			}
			memcpy(key, k.mv_data, k.mv_size);
			key[k.mv_size] = '\0';
			int vr = table_copy_value(v.mv_data, v.mv_size, value, sizeof(value));
			if (vr < 0) {
				rc = vr;
				break;
			}
			if (fn(ctx, key, value)) {
				rc = 0;
				break;
			}
		}
		mdb_cursor_close(cur);
		return rc == MDB_NOTFOUND ? 0 : (rc < 0 ? rc : tables_mdb_err(rc));
	}
	MDB_val sk = { TABLES_SRC_KLEN, (void *)tables_src_key }, sv;
	rc = mdb_get(t->rd->txn, t->dbi, &sk, &sv);
	if (rc)
		return rc == MDB_NOTFOUND ? -EBADMSG : tables_mdb_err(rc);
	struct table_text tt;
	table_text_init(&tt, sv.mv_data, sv.mv_size);
	char *line, why[128];
	size_t len;
	unsigned lineno;
	while ((rc = table_text_next(&tt, &line, &len, &lineno, why, sizeof(why))) > 0)
		if (fn(ctx, line, ""))
			break;
	table_text_free(&tt);
	return rc < 0 ? -EBADMSG : 0;
}
