/* Local DNSBL zones in the table store; see rbl_zone.h.
 *
 * Layout of the named database "rbl:ZONE" (keys sort in this order, so a build appends):
 *   "\0d" ds          dataset: format (1 byte) + its subzones ("@ proxies")
 *   "\0meta"          struct rbl_meta
 *   "\0v" be32        value: A (4 bytes) + has-TXT (1) + TXT template
 *   "I" ds fam hi     address interval, hi/lo 16 bytes big-endian (IPv4 in the last 4):
 *                     lo (16) + be32 value. Only listed intervals: exclusions are holes.
 *   "N" ds kind name  dnset entry, kind 'E' (the name) or 'W' (its subdomains):
 *                     be32 value, 0xffffffff for an exclusion.
 * An address lookup is one MDB_SET_RANGE (the first interval ending at or after the
 * address) per dataset; a name lookup one exact get for the name and one per parent domain
 * (at most 127): O(log n) each. */
#include "tables/rbl_zone.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mxgate/ctype.h"
#include "tables/rbl_parse.h"
#include "tables/tables_internal.h"

#define RBL_MAGIC "MXRB"
#define RBL_VERSION 1u
#define RBL_FILE_MAX ((size_t)4 << 30)
#define RBL_EXCLUDED UINT32_MAX

static const char rbl_meta_key[] = "\0meta"; /* 5 bytes */
#define RBL_META_KLEN 5

struct rbl_meta {
	char magic[4];
	uint32_t version;
	uint32_t format;
	uint32_t nds;
	uint64_t generation;
	int64_t expires;
	uint64_t entries;
	uint64_t nvalues;
};

static const char *const rbl_format_names[RBL_FORMAT_MAX] = {
	[RBL_FORMAT_IP4SET] = "ip4set",   [RBL_FORMAT_IP4TSET] = "ip4tset",
	[RBL_FORMAT_IP4TRIE] = "ip4trie", [RBL_FORMAT_IP6TRIE] = "ip6trie",
	[RBL_FORMAT_IP6TSET] = "ip6tset", [RBL_FORMAT_DNSET] = "dnset",
	[RBL_FORMAT_COMBINED] = "combined",
};

const char *rbl_format_name(enum rbl_format f)
{
	return (unsigned)f < RBL_FORMAT_MAX ? rbl_format_names[f] : "unknown";
}

int rbl_format_parse(const char *name, enum rbl_format *out)
{
	for (unsigned i = 0; i < RBL_FORMAT_MAX; i++)
		if (strcmp(name, rbl_format_names[i]) == 0) {
			*out = (enum rbl_format)i;
			return 0;
		}
	return -EINVAL;
}

static int rbl_mdb_err(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
	case MDB_DBS_FULL:
	case MDB_TXN_FULL:
		return -EAGAIN;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INCOMPATIBLE:
	case MDB_BAD_VALSIZE:
	case MDB_BAD_DBI:
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return -EBADMSG;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

/* A zone is a DNS domain: letters, digits, '-', '_', dots between labels. Folded, no
 * trailing dot, into out (RBL_NAME_MAX + 1 bytes). */
static int rbl_zone_canon(const char *zone, char *out)
{
	size_t n = strlen(zone);
	if (n && zone[n - 1] == '.')
		n--;
	if (n == 0 || n > RBL_NAME_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = zone[i];
		if (!mx_ctype_is_hostname(c) && !(c == '.' && i > 0 && zone[i - 1] != '.'))
			return -EINVAL;
		out[i] = mx_ctype_lower(c);
	}
	out[n] = '\0';
	return 0;
}

static void rbl_be32(uint8_t *p, uint32_t x)
{
	p[0] = (uint8_t)(x >> 24);
	p[1] = (uint8_t)(x >> 16);
	p[2] = (uint8_t)(x >> 8);
	p[3] = (uint8_t)x;
}

static uint32_t rbl_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void rbl_u128_put(uint8_t *p, rbl_u128 x)
{
	for (int i = 15; i >= 0; i--) {
		p[i] = (uint8_t)x;
		x >>= 8;
	}
}

static rbl_u128 rbl_u128_get(const uint8_t *p)
{
	rbl_u128 r = 0;
	for (int i = 0; i < 16; i++)
		r = r << 8 | p[i];
	return r;
}

/* ---- flattening overlapping intervals ---- */

/* Does a bind more strongly than b? The most specific entry (rbldnsd: the longest prefix,
 * for ip4set the /32, /24, /16, /8 array searched first); on a tie (the same prefix twice)
 * ip4set takes the exclusion, the tries the first line (rbldnsd: "duplicated entry"). */
static bool rbl_better(const struct rbl_ip_entry *a, const struct rbl_ip_entry *b,
		       bool excl_wins)
{
	if (a->prio != b->prio)
		return a->prio > b->prio;
	if (excl_wins && a->excl != b->excl)
		return a->excl;
	return a->seq < b->seq;
}

static int rbl_ip_cmp(const void *x, const void *y)
{
	const struct rbl_ip_entry *a = x, *b = y;
	if (a->ds != b->ds)
		return a->ds < b->ds ? -1 : 1;
	if (a->lo != b->lo)
		return a->lo < b->lo ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* A flattened interval and its answers: RBL_ANSWERS_MAX value indexes at most (ip4set
 * answers every entry of the winning level: rbldnsd returns one A per matching line). */
struct rbl_segment {
	rbl_u128 lo, hi;
	uint32_t vals[RBL_ANSWERS_MAX];
	uint8_t nval, ds, family;
};

struct rbl_segs {
	struct rbl_segment *v;
	size_t n, cap;
};

struct rbl_heap {
	const struct rbl_ip_entry **h;
	size_t n, cap;
	bool excl_wins;
};

static int rbl_heap_push(struct rbl_heap *hp, const struct rbl_ip_entry *e)
{
	if (hp->n == hp->cap) {
		size_t c = hp->cap ? hp->cap * 2 : 64;
		const struct rbl_ip_entry **nh = realloc(hp->h, c * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		hp->h = nh;
		hp->cap = c;
	}
	size_t i = hp->n++;
	while (i > 0 && rbl_better(e, hp->h[(i - 1) / 2], hp->excl_wins)) {
		hp->h[i] = hp->h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	hp->h[i] = e;
	return 0;
}

static void rbl_heap_pop(struct rbl_heap *hp)
{
	const struct rbl_ip_entry *last = hp->h[--hp->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= hp->n)
			break;
		if (c + 1 < hp->n && rbl_better(hp->h[c + 1], hp->h[c], hp->excl_wins))
			c++;
		if (!rbl_better(hp->h[c], last, hp->excl_wins))
			break;
		hp->h[i] = hp->h[c];
		i = c;
	}
	if (hp->n)
		hp->h[i] = last;
}

static int rbl_seg_add(struct rbl_segs *sg, const struct rbl_ip_entry *w, const uint32_t *vals,
		       unsigned nval, rbl_u128 lo, rbl_u128 hi)
{
	if (sg->n) {
		struct rbl_segment *last = &sg->v[sg->n - 1];
		if (last->ds == w->ds && last->nval == nval && last->hi + 1 == lo &&
		    memcmp(last->vals, vals, nval * sizeof(*vals)) == 0) {
			last->hi = hi;
			return 0;
		}
	}
	if (sg->n == sg->cap) {
		size_t c = sg->cap ? sg->cap * 2 : 1024;
		struct rbl_segment *ns = realloc(sg->v, c * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		sg->v = ns;
		sg->cap = c;
	}
	struct rbl_segment *s = &sg->v[sg->n++];
	memset(s, 0, sizeof(*s));
	s->lo = lo;
	s->hi = hi;
	memcpy(s->vals, vals, nval * sizeof(*vals));
	s->nval = (uint8_t)nval;
	s->ds = w->ds;
	s->family = w->family;
	return 0;
}

/* Sweep the entries of one dataset (sorted by start) keeping the active ones in a heap by
 * strength; each step ends where the winners end or the next entry starts: O(n log n).
 * multi: every active entry as strong as the winner answers too (ip4set). */
static int rbl_flatten_ds(const struct rbl_ip_entry *v, size_t n, bool multi, struct rbl_segs *sg)
{
	struct rbl_heap hp = { .excl_wins = multi };
	size_t i = 0;
	rbl_u128 cur = n ? v[0].lo : 0;
	int rc = 0;
	while (n) {
		while (i < n && v[i].lo <= cur)
			if ((rc = rbl_heap_push(&hp, &v[i++])) < 0)
				goto out;
		while (hp.n && hp.h[0]->hi < cur)
			rbl_heap_pop(&hp);
		if (!hp.n) {
			if (i == n)
				break;
			cur = v[i].lo;
			continue;
		}
		const struct rbl_ip_entry *w = hp.h[0];
		rbl_u128 end = w->hi;
		if (i < n && v[i].lo - 1 < end)
			end = v[i].lo - 1; /* v[i].lo > cur here, so no wrap */
		uint32_t vals[RBL_ANSWERS_MAX];
		unsigned nval = 0;
		if (!w->excl) {
			vals[nval++] = w->val;
			if (multi) {
				/* the others of the same level, in file order (few: lines that
				 * overlap at one level) */
				const struct rbl_ip_entry *same[RBL_ANSWERS_MAX];
				unsigned ns = 0;
				same[ns++] = w;
				for (size_t k = 1; k < hp.n; k++) {
					const struct rbl_ip_entry *e = hp.h[k];
					if (e->prio != w->prio || e->hi < cur)
						continue;
					if (e->hi < end)
						end = e->hi;
					if (ns < RBL_ANSWERS_MAX)
						same[ns++] = e;
				}
				for (unsigned a = 1; a < ns; a++)
					for (unsigned b = a; b > 0 && same[b]->seq < same[b - 1]->seq; b--) {
						const struct rbl_ip_entry *t = same[b];
						same[b] = same[b - 1];
						same[b - 1] = t;
					}
				nval = 0;
				for (unsigned a = 0; a < ns; a++) {
					bool dup = false;
					for (unsigned b = 0; b < nval; b++)
						dup |= vals[b] == same[a]->val;
					if (!dup)
						vals[nval++] = same[a]->val;
				}
			}
			if ((rc = rbl_seg_add(sg, w, vals, nval, cur, end)) < 0)
				goto out;
		}
		if (end == (rbl_u128)-1)
			break; /* the top of the address space: nothing follows */
		cur = end + 1;
	}
out:
	free(hp.h);
	return rc;
}

static int rbl_name_cmp(const void *x, const void *y, void *arena)
{
	const struct rbl_name_entry *a = x, *b = y;
	const char *ar = arena;
	if (a->ds != b->ds)
		return a->ds < b->ds ? -1 : 1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	size_t l = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(ar + a->name_off, ar + b->name_off, l);
	if (c)
		return c;
	if (a->name_len != b->name_len)
		return a->name_len < b->name_len ? -1 : 1;
	if (a->excl != b->excl)
		return a->excl ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static bool rbl_name_same(const struct rbl_name_entry *a, const struct rbl_name_entry *b,
			  const char *arena)
{
	return a->ds == b->ds && a->kind == b->kind && a->name_len == b->name_len &&
	       memcmp(arena + a->name_off, arena + b->name_off, a->name_len) == 0;
}

/* ---- building ---- */

static int rbl_write(MDB_txn *txn, MDB_dbi dbi, const struct rbl_model *m,
		     const struct rbl_segs *sg, uint64_t generation, enum rbl_format fmt,
		     struct rbl_build_stats *st)
{
	int rc = 0;
	uint8_t kb[3 + RBL_NAME_MAX + 1], vb[5 + RBL_LINE_MAX + RBL_TXT_MAX];
	for (unsigned d = 0; rc == 0 && d < m->nds; d++) {
		kb[0] = 0;
		kb[1] = 'd';
		kb[2] = (uint8_t)d;
		vb[0] = (uint8_t)m->ds[d].fmt;
		size_t sl = strlen(m->ds[d].subzones);
		memcpy(vb + 1, m->ds[d].subzones, sl);
		MDB_val k = { 3, kb }, v = { 1 + sl, vb };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		st->records++;
	}
	if (rc == 0) {
		struct rbl_meta meta = { .version = RBL_VERSION, .format = (uint32_t)fmt,
					 .nds = m->nds, .generation = generation,
					 .expires = m->expires, .entries = m->entries,
					 .nvalues = m->nvalues };
		memcpy(meta.magic, RBL_MAGIC, 4);
		MDB_val k = { RBL_META_KLEN, (void *)rbl_meta_key }, v = { sizeof(meta), &meta };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		st->records++;
	}
	for (size_t i = 0; rc == 0 && i < m->nvalues; i++) {
		const struct rbl_value *val = &m->values[i];
		kb[0] = 0;
		kb[1] = 'v';
		rbl_be32(kb + 2, (uint32_t)i);
		memcpy(vb, val->a, 4);
		vb[4] = val->has_txt;
		size_t tl = val->has_txt ? val->txt_len : 0;
		if (tl > RBL_TXT_MAX)
			tl = RBL_TXT_MAX;
		if (tl)
			memcpy(vb + 5, m->arena + val->txt_off, tl);
		MDB_val k = { 6, kb }, v = { 5 + tl, vb };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		st->records++;
	}
	for (size_t i = 0; rc == 0 && i < sg->n; i++) {
		const struct rbl_segment *s = &sg->v[i];
		kb[0] = 'I';
		kb[1] = s->ds;
		kb[2] = s->family;
		rbl_u128_put(kb + 3, s->hi);
		rbl_u128_put(vb, s->lo);
		for (unsigned a = 0; a < s->nval; a++)
			rbl_be32(vb + 16 + 4 * a, s->vals[a]);
		MDB_val k = { 19, kb }, v = { 16 + 4 * (size_t)s->nval, vb };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		st->records++;
	}
	/* Names sort by (ds, kind, name), exclusions first, then in file order: one record
	 * per name, excluded if any line excludes it, else every line's value (rbldnsd answers
	 * one A per line listing the name). */
	for (size_t i = 0; rc == 0 && i < m->nnames;) {
		const struct rbl_name_entry *e = &m->names[i];
		size_t j = i + 1;
		while (j < m->nnames && rbl_name_same(e, &m->names[j], m->arena))
			j++;
		size_t nv = 0;
		if (e->excl) {
			rbl_be32(vb, RBL_EXCLUDED);
			nv = 1;
		} else {
			for (size_t a = i; a < j && nv < RBL_ANSWERS_MAX; a++) {
				bool dup = false;
				for (size_t b = i; b < a; b++)
					dup |= m->names[b].val == m->names[a].val;
				if (!dup)
					rbl_be32(vb + 4 * nv++, m->names[a].val);
			}
		}
		kb[0] = 'N';
		kb[1] = e->ds;
		kb[2] = e->kind;
		memcpy(kb + 3, m->arena + e->name_off, e->name_len);
		MDB_val k = { 3 + (size_t)e->name_len, kb }, v = { 4 * nv, vb };
		rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND);
		st->records++;
		i = j;
	}
	return rc;
}

int rbl_zone_build(struct tables_env *env, const char *zone, enum rbl_format fmt,
		   const char *text, size_t len, tables_warn_fn *warn, void *warn_ctx,
		   struct rbl_build_stats *stats, char *err, size_t errlen)
{
	char name[RBL_NAME_MAX + 1], dbname[RBL_NAME_MAX + 8];
	struct rbl_build_stats st = { 0 };
	struct rbl_model m;
	struct rbl_segs sg = { 0 };
	int rc;
	err[0] = '\0';
	if (stats)
		*stats = st;
	if (rbl_zone_canon(zone, name) < 0) {
		snprintf(err, errlen, "bad zone name \"%.64s\"", zone);
		return -EINVAL;
	}
	if (env->read_only) {
		snprintf(err, errlen, "table store opened read-only");
		return -EROFS;
	}
	snprintf(dbname, sizeof(dbname), "rbl:%s", name);
	rc = rbl_parse(text, len, fmt, &m, warn, warn_ctx, err, errlen);
	if (rc < 0)
		goto out;
	st.entries = m.entries;
	st.expires = m.expires;
	if (m.nip)
		qsort(m.ip, m.nip, sizeof(*m.ip), rbl_ip_cmp);
	for (size_t b = 0; b < m.nip;) {
		size_t e = b;
		while (e < m.nip && m.ip[e].ds == m.ip[b].ds)
			e++;
		bool multi = m.ds[m.ip[b].ds].fmt == RBL_FORMAT_IP4SET;
		for (size_t k = b + 1; warn && !multi && k < e; k++)
			if (m.ip[k].lo == m.ip[k - 1].lo && m.ip[k].hi == m.ip[k - 1].hi &&
			    m.ip[k].prio == m.ip[k - 1].prio)
				warn(warn_ctx, "duplicated entry: the first line wins");
		if ((rc = rbl_flatten_ds(m.ip + b, e - b, multi, &sg)) < 0)
			goto out;
		b = e;
	}
	if (m.nnames)
		qsort_r(m.names, m.nnames, sizeof(*m.names), rbl_name_cmp, m.arena);

	pthread_mutex_lock(&env->lock);
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	uint64_t generation = 1;
	rc = mdb_txn_begin(env->env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, dbname, MDB_CREATE, &dbi);
	if (rc == 0) {
		MDB_val k = { RBL_META_KLEN, (void *)rbl_meta_key }, v;
		struct rbl_meta old;
		if (mdb_get(txn, dbi, &k, &v) == 0 && v.mv_size == sizeof(old)) {
			memcpy(&old, v.mv_data, sizeof(old));
			generation = old.generation + 1;
		}
		rc = mdb_drop(txn, dbi, 0);
	}
	if (rc == 0)
		rc = rbl_write(txn, dbi, &m, &sg, generation, fmt, &st);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	pthread_mutex_unlock(&env->lock);
	if (rc) {
		snprintf(err, errlen, "write %s: %s", dbname, mdb_strerror(rc));
		rc = rbl_mdb_err(rc);
	}
out:
	free(sg.v);
	rbl_model_free(&m);
	if (stats)
		*stats = st;
	return rc;
}

int rbl_zone_build_file(struct tables_env *env, const char *zone, enum rbl_format fmt,
			const char *path, tables_warn_fn *warn, void *warn_ctx,
			struct rbl_build_stats *stats, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	int rc = tables_read_file(path, RBL_FILE_MAX, &buf, &n, err, errlen);
	if (rc < 0)
		return rc;
	rc = rbl_zone_build(env, zone, fmt, buf, n, warn, warn_ctx, stats, err, errlen);
	if (rc == -EINVAL && strncmp(err, "line ", 5) == 0) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s, %s", path, err);
		snprintf(err, errlen, "%s", tmp);
	}
	free(buf);
	return rc;
}

/* ---- queries ---- */

struct rbl_zone {
	struct tables_reader *rd;
	char name[RBL_NAME_MAX + 1];
	char sub[RBL_NAME_MAX + 1]; /* the subzone of a combined parent zone, "" = "@" */
	char dbname[RBL_NAME_MAX + 8];
	MDB_dbi dbi;
	bool resolved;
	uint64_t checked_epoch;
	int64_t expires;
	unsigned nds;
	uint8_t ds_fmt[RBL_DATASETS_MAX];
	bool ds_on[RBL_DATASETS_MAX]; /* consulted for this (sub)zone */
	/* One cursor kept across queries (opening one costs an allocation); a read-only
	 * cursor survives its transaction's reset and is renewed for the next epoch. */
	MDB_cursor *cur;
	uint64_t cur_epoch;
	/* Values by index, copied out of the map (most zones answer with a handful of
	 * values: this saves a B-tree descent per answer); valid for one generation. */
	uint64_t generation;
	struct rbl_value_cache {
		uint32_t idx; /* UINT32_MAX: empty */
		uint8_t a[4];
		bool has_txt;
		uint8_t txt_len;
		char txt[RBL_TXT_MAX];
	} *cache;
};

#define RBL_CACHE_SLOTS 64u

int rbl_zone_open(struct tables_reader *rd, const char *zone, struct rbl_zone **out)
{
	struct rbl_zone *z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	if (rbl_zone_canon(zone, z->name) < 0) {
		free(z);
		return -EINVAL;
	}
	z->cache = malloc(RBL_CACHE_SLOTS * sizeof(*z->cache));
	if (!z->cache) {
		free(z);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < RBL_CACHE_SLOTS; i++)
		z->cache[i].idx = UINT32_MAX;
	z->rd = rd;
	*out = z;
	return 0;
}

void rbl_zone_close(struct rbl_zone *z)
{
	if (!z)
		return;
	if (z->cur)
		mdb_cursor_close(z->cur); /* allowed after the read transaction ended (lmdb.h) */
	free(z->cache);
	free(z);
}

const char *rbl_zone_name(const struct rbl_zone *z)
{
	return z->name;
}

/* The zone's database, or, for "proxies.bl.example", the combined zone "bl.example" whose
 * datasets name the subzone "proxies" (rbldnsd's combined datasets). */
static int rbl_zone_resolve(struct rbl_zone *z)
{
	struct tables_env *env = z->rd->env;
	MDB_txn *txn;
	int rc;
	pthread_mutex_lock(&env->lock);
	rc = mdb_txn_begin(env->env, NULL, MDB_RDONLY, &txn);
	if (rc == 0) {
		const char *p = z->name;
		for (;;) {
			snprintf(z->dbname, sizeof(z->dbname), "rbl:%s", p);
			rc = mdb_dbi_open(txn, z->dbname, 0, &z->dbi);
			if (rc != MDB_NOTFOUND)
				break;
			const char *dot = strchr(p, '.');
			if (!dot)
				break;
			p = dot + 1;
		}
		if (rc == 0) {
			size_t sl = (size_t)(p - z->name);
			memcpy(z->sub, z->name, sl ? sl - 1 : 0);
			z->sub[sl ? sl - 1 : 0] = '\0';
			rc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
	}
	pthread_mutex_unlock(&env->lock);
	if (rc)
		return rbl_mdb_err(rc);
	z->resolved = true;
	z->checked_epoch = 0;
	/* the reader's transaction must be renewed to see the handle (tables_reader_renew) */
	return tables_reader_renew(z->rd);
}

static bool rbl_word_in(const char *list, size_t len, const char *w)
{
	size_t wl = strlen(w);
	const char *p = list, *end = list + len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *q = p;
		while (q < end && *q != ' ' && *q != '\t')
			q++;
		if ((size_t)(q - p) == wl && memcmp(p, w, wl) == 0)
			return true;
		p = q;
	}
	return false;
}

static int rbl_zone_check(struct rbl_zone *z)
{
	int rc;
	if (!z->resolved && (rc = rbl_zone_resolve(z)) < 0)
		return rc;
	if (z->checked_epoch == z->rd->epoch)
		return 0;
	MDB_txn *txn = z->rd->txn;
	MDB_val k = { RBL_META_KLEN, (void *)rbl_meta_key }, v;
	struct rbl_meta m;
	rc = mdb_get(txn, z->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return -EBADMSG;
	if (rc)
		return rbl_mdb_err(rc);
	if (v.mv_size != sizeof(m))
		return -EBADMSG;
	memcpy(&m, v.mv_data, sizeof(m));
	if (memcmp(m.magic, RBL_MAGIC, 4) != 0 || m.version != RBL_VERSION ||
	    m.nds > RBL_DATASETS_MAX || m.format >= RBL_FORMAT_MAX)
		return -EBADMSG;
	z->expires = m.expires;
	z->nds = m.nds;
	if (z->generation != m.generation) {
		for (unsigned i = 0; i < RBL_CACHE_SLOTS; i++)
			z->cache[i].idx = UINT32_MAX;
		z->generation = m.generation;
	}
	bool any = false;
	for (unsigned d = 0; d < m.nds; d++) {
		uint8_t kb[3] = { 0, 'd', (uint8_t)d };
		MDB_val dk = { 3, kb }, dv;
		if ((rc = mdb_get(txn, z->dbi, &dk, &dv)) != 0)
			return rc == MDB_NOTFOUND ? -EBADMSG : rbl_mdb_err(rc);
		const uint8_t *p = dv.mv_data;
		if (dv.mv_size < 1 || p[0] >= RBL_FORMAT_COMBINED)
			return -EBADMSG;
		z->ds_fmt[d] = p[0];
		z->ds_on[d] = rbl_word_in((const char *)p + 1, dv.mv_size - 1,
					  z->sub[0] ? z->sub : "@");
		any |= z->ds_on[d];
	}
	if (z->sub[0] && !any) {
		/* "x.zone" is no subzone of the combined zone "zone"; look again next time, in
		 * case "x.zone" is loaded as a zone of its own */
		z->resolved = false;
		return -ENOENT;
	}
	z->checked_epoch = z->rd->epoch;
	return 0;
}

/* The subject of `$`, formatted only when a template asks for it. */
struct rbl_subject {
	const struct mx_inet_addr *addr; /* NULL: name is the subject */
	const char *name;
	char buf[INET6_ADDRSTRLEN];
};

static const char *rbl_subject_text(struct rbl_subject *s)
{
	if (!s->name)
		s->name = mx_inet_format(s->addr, s->buf, sizeof(s->buf));
	return s->name;
}

static int rbl_answer(struct rbl_zone *z, uint32_t val, struct rbl_subject *subj,
		      struct rbl_result *out)
{
	struct rbl_value_cache *c = &z->cache[val % RBL_CACHE_SLOTS];
	if (c->idx != val) {
		uint8_t kb[6] = { 0, 'v' };
		rbl_be32(kb + 2, val);
		MDB_val k = { 6, kb }, v;
		int rc = mdb_get(z->rd->txn, z->dbi, &k, &v);
		if (rc)
			return rc == MDB_NOTFOUND ? -EBADMSG : rbl_mdb_err(rc);
		const uint8_t *p = v.mv_data;
		if (v.mv_size < 5 || v.mv_size > 5 + RBL_TXT_MAX)
			return -EBADMSG;
		memcpy(c->a, p, 4);
		c->has_txt = p[4];
		c->txt_len = (uint8_t)(v.mv_size - 5);
		memcpy(c->txt, p + 5, c->txt_len);
		c->idx = val;
	}
	if (out->count >= RBL_ANSWERS_MAX)
		return 0;
	struct rbl_answer *a = &out->answers[out->count++];
	memcpy(a->a, c->a, 4);
	a->txt[0] = '\0';
	if (c->has_txt)
		rbl_txt_expand(c->txt, c->txt_len,
			       memchr(c->txt, '$', c->txt_len) ? rbl_subject_text(subj) : "",
			       a->txt, sizeof(a->txt));
	return 0;
}

int rbl_zone_query_addr(struct rbl_zone *z, const struct mx_inet_addr *addr, int64_t now,
			struct rbl_result *out)
{
	out->count = 0;
	int rc = rbl_zone_check(z);
	if (rc < 0)
		return rc;
	if (z->expires && now > z->expires)
		return 0;
	struct mx_inet_addr a = mx_inet_unmap(addr);
	if (a.family != AF_INET && a.family != AF_INET6)
		return -EINVAL;
	uint8_t fam = a.family == AF_INET ? 4 : 6;
	uint8_t key[19] = { 'I', 0, fam };
	memset(key + 3, 0, 16);
	if (fam == 4)
		memcpy(key + 15, a.bytes, 4);
	else
		memcpy(key + 3, a.bytes, 16);
	struct rbl_subject subj = { .addr = &a };
	if (!z->cur) {
		if ((rc = mdb_cursor_open(z->rd->txn, z->dbi, &z->cur)) != 0) {
			z->cur = NULL;
			return rbl_mdb_err(rc);
		}
		z->cur_epoch = z->rd->epoch;
	} else if (z->cur_epoch != z->rd->epoch) {
		if ((rc = mdb_cursor_renew(z->rd->txn, z->cur)) != 0)
			return rbl_mdb_err(rc);
		z->cur_epoch = z->rd->epoch;
	}
	MDB_cursor *cur = z->cur;
	for (unsigned d = 0; d < z->nds && rc == 0; d++) {
		bool v4 = z->ds_fmt[d] == RBL_FORMAT_IP4SET || z->ds_fmt[d] == RBL_FORMAT_IP4TSET ||
			  z->ds_fmt[d] == RBL_FORMAT_IP4TRIE;
		bool v6 = z->ds_fmt[d] == RBL_FORMAT_IP6TRIE || z->ds_fmt[d] == RBL_FORMAT_IP6TSET;
		if (!z->ds_on[d] || !(fam == 4 ? v4 : v6))
			continue;
		key[1] = (uint8_t)d;
		MDB_val k = { sizeof(key), key }, v;
		int g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (g == MDB_NOTFOUND)
			continue;
		if (g) {
			rc = rbl_mdb_err(g);
			break;
		}
		if (k.mv_size != 19 || memcmp(k.mv_data, key, 3) != 0)
			continue; /* past this dataset's intervals */
		if (v.mv_size < 20 || v.mv_size > 16 + 4 * RBL_ANSWERS_MAX || v.mv_size % 4) {
			rc = -EBADMSG;
			break;
		}
		if (rbl_u128_get(v.mv_data) > rbl_u128_get(key + 3))
			continue; /* in a hole */
		for (size_t o = 16; rc == 0 && o < v.mv_size; o += 4)
			rc = rbl_answer(z, rbl_get32((const uint8_t *)v.mv_data + o), &subj, out);
	}
	if (rc < 0) {
		out->count = 0;
		return rc;
	}
	return out->count > 0;
}

/* dnset: the name itself ('E' entries), else the closest parent with a 'W' entry. */
static int rbl_name_find(struct rbl_zone *z, unsigned d, const char *name, size_t n,
			 uint32_t vals[RBL_ANSWERS_MAX], unsigned *nval, const char **listed)
{
	uint8_t kb[3 + RBL_NAME_MAX];
	kb[0] = 'N';
	kb[1] = (uint8_t)d;
	kb[2] = RBL_NAME_EXACT;
	memcpy(kb + 3, name, n);
	MDB_val k = { 3 + n, kb }, v;
	int rc = mdb_get(z->rd->txn, z->dbi, &k, &v);
	for (const char *p = name;; ) {
		if (rc == 0) {
			if (v.mv_size < 4 || v.mv_size > 4 * RBL_ANSWERS_MAX || v.mv_size % 4)
				return -EBADMSG;
			*nval = (unsigned)(v.mv_size / 4);
			for (unsigned a = 0; a < *nval; a++)
				vals[a] = rbl_get32((const uint8_t *)v.mv_data + 4 * a);
			*listed = p; /* "$ is replaced by a listed entry": the domain, not the query */
			return vals[0] != RBL_EXCLUDED;
		}
		if (rc != MDB_NOTFOUND)
			return rbl_mdb_err(rc);
		const char *dot = memchr(p, '.', n - (size_t)(p - name));
		if (!dot)
			return 0;
		p = dot + 1;
		size_t pl = n - (size_t)(p - name);
		kb[2] = RBL_NAME_SUBDOMAINS;
		memcpy(kb + 3, p, pl);
		k = (MDB_val){ 3 + pl, kb };
		rc = mdb_get(z->rd->txn, z->dbi, &k, &v);
	}
}

int rbl_zone_query_name(struct rbl_zone *z, const char *name, int64_t now,
			struct rbl_result *out)
{
	out->count = 0;
	int rc = rbl_zone_check(z);
	if (rc < 0)
		return rc;
	if (z->expires && now > z->expires)
		return 0;
	char q[RBL_NAME_MAX + 1];
	size_t n = strlen(name);
	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n > RBL_NAME_MAX)
		return 0; /* no such name can be listed */
	for (size_t i = 0; i < n; i++)
		q[i] = mx_ctype_lower(name[i]);
	q[n] = '\0';
	for (unsigned d = 0; d < z->nds; d++) {
		if (!z->ds_on[d] || z->ds_fmt[d] != RBL_FORMAT_DNSET)
			continue;
		uint32_t vals[RBL_ANSWERS_MAX];
		unsigned nval = 0;
		const char *listed = q;
		rc = rbl_name_find(z, d, q, n, vals, &nval, &listed);
		struct rbl_subject subj = { .name = listed };
		for (unsigned a = 0; rc == 1 && a < nval; a++) {
			int r = rbl_answer(z, vals[a], &subj, out);
			if (r < 0)
				rc = r;
		}
		if (rc < 0) {
			out->count = 0;
			return rc;
		}
	}
	return out->count > 0;
}
