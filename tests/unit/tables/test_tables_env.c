/* tables/tables_env.c: the LMDB table store. Build and look up every kind, replace atomically
 * under a concurrent reader, see committed changes after a renew, and answer errors (missing
 * table, corrupt data) as errors. */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tables/table_cidr.h"
#include "tables_test_util.h"
#include "testing.h"

static int lookup(struct table *t, const char *key, const char **val)
{
	static char buf[TABLE_VALUE_MAX + 1];
	int rc = table_lookup(t, key, buf, sizeof(buf));
	*val = rc == 1 ? buf : "(none)";
	return rc;
}

static const char *look(struct table *t, const char *key)
{
	const char *v;
	int rc = lookup(t, key, &v);
	CHECK(rc >= 0);
	return v;
}

static int warnings;
static void count_warn(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
	warnings++;
}

static int list_count;
static char list_buf[512];
static int list_fn(void *ctx, const char *k, const char *v)
{
	(void)ctx;
	size_t n = strlen(list_buf);
	snprintf(list_buf + n, sizeof(list_buf) - n, "%s=%s|", k, v);
	list_count++;
	return 0;
}

static void test_hash_build_lookup_list(void)
{
	char dir[64], err[256];
	struct tables_env *env = tt_env_open(dir);
	const char *text = "# access table\n"
			   "Foo@Example.COM   REJECT  spam\n"
			   "   continued\n"
			   "bar OK\n"
			   "BAR REJECT duplicate, the first wins\n"
			   "192.0.2 DUNNO\n";
	struct tables_build_stats st;
	warnings = 0;
	CHECK_INT_EQ(tables_build(env, "hash:/etc/postfix/access", text, strlen(text), count_warn,
				  NULL, &st, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(warnings, 1);
	CHECK_INT_EQ(st.entries, 3);
	CHECK_INT_EQ(st.duplicates, 1);
	struct tables_reader *rd;
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	struct table *t, *t2;
	CHECK_INT_EQ(table_open(rd, "hash:/etc/postfix/access", &t, err, sizeof(err)), 0);
	/* lmdb: and hash: name the same exact-key table */
	CHECK_INT_EQ(table_open(rd, "lmdb:/etc/postfix/access", &t2, err, sizeof(err)), 0);
	CHECK_STR_EQ(look(t, "foo@example.com"), "REJECT  spam   continued");
	CHECK_STR_EQ(look(t2, "FOO@EXAMPLE.COM"), "REJECT  spam   continued");
	CHECK_STR_EQ(look(t, "Bar"), "OK");
	CHECK_STR_EQ(look(t, "192.0.2"), "DUNNO");
	CHECK_STR_EQ(look(t, "192.0.2.1"), "(none)");
	CHECK_STR_EQ(look(t, ""), "(none)");
	char small[4];
	CHECK_INT_EQ(table_lookup(t, "bar", small, 2), -E2BIG);
	list_buf[0] = '\0';
	list_count = 0;
	CHECK_INT_EQ(table_list(t, list_fn, NULL), 0);
	CHECK_STR_EQ(list_buf, "192.0.2=DUNNO|bar=OK|foo@example.com=REJECT  spam   continued|");
	/* A bad build leaves the old table. */
	CHECK_INT_EQ(tables_build(env, "hash:/etc/postfix/access", "good one\nbad\n", 13, NULL,
				  NULL, NULL, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "line 2: expected format: key whitespace value") != NULL);
	char longkey[TABLE_KEY_MAX + 10];
	memset(longkey, 'k', sizeof(longkey));
	memcpy(longkey + TABLE_KEY_MAX + 1, " v\n", 4);
	CHECK_INT_EQ(tt_build(env, "hash:/etc/postfix/access", longkey), -EINVAL);
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	CHECK_STR_EQ(look(t, "bar"), "OK");
	CHECK_INT_EQ(tables_build(env, "static:x", "", 0, NULL, NULL, NULL, err, sizeof(err)),
		     -ENOTSUP);
	CHECK_INT_EQ(tables_build(env, "btree:x", "", 0, NULL, NULL, NULL, err, sizeof(err)),
		     -EINVAL);
	CHECK(strstr(err, "unsupported type") != NULL);
	table_close(t);
	table_close(t2);
	tables_reader_close(rd);
	tt_env_remove(env, dir);
}

static void test_static_inline(void)
{
	struct table *t;
	char err[256];
	CHECK_INT_EQ(table_open(NULL, "static:{ REJECT go away }", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(look(t, "anything"), "REJECT go away");
	table_close(t);
	CHECK_INT_EQ(table_open(NULL, "inline:{ A=1, { b = two words } }", &t, err, sizeof(err)), 0);
	CHECK_STR_EQ(look(t, "a"), "1");
	CHECK_STR_EQ(look(t, "B"), "two words");
	CHECK_STR_EQ(look(t, "c"), "(none)");
	table_close(t);
	CHECK_INT_EQ(table_open(NULL, "inline:{ a=1, A=2 }", &t, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "duplicate") != NULL);
	CHECK_INT_EQ(table_open(NULL, "hash:x", &t, err, sizeof(err)), -EINVAL);
	CHECK_INT_EQ(table_open(NULL, "nocolon", &t, err, sizeof(err)), -EINVAL);
	CHECK_INT_EQ(table_open(NULL, "hash:", &t, err, sizeof(err)), -EINVAL);
}

static void test_renew_and_missing(void)
{
	char dir[64], err[256];
	struct tables_env *env = tt_env_open(dir);
	struct tables_reader *rd;
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	struct table *h, *re;
	CHECK_INT_EQ(table_open(rd, "hash:later", &h, err, sizeof(err)), 0);
	CHECK_INT_EQ(table_open(rd, "pcre:later", &re, err, sizeof(err)), 0);
	const char *v;
	CHECK_INT_EQ(lookup(h, "k", &v), -ENOENT); /* missing: an error, never "not found" */
	CHECK_INT_EQ(lookup(re, "k", &v), -ENOENT);
	CHECK_INT_EQ(tt_build(env, "hash:later", "k v1\n"), 0);
	CHECK_INT_EQ(tt_build(env, "pcre:later", "/^(k)$/ first $1\n"), 0);
	CHECK_STR_EQ(look(h, "k"), "v1"); /* found once built */
	CHECK_STR_EQ(look(re, "k"), "first k");
	CHECK_INT_EQ(tt_build(env, "hash:later", "k v2\n"), 0);
	CHECK_INT_EQ(tt_build(env, "pcre:later", "/^(k)$/ second $1\n"), 0);
	CHECK_STR_EQ(look(h, "k"), "v1"); /* the reader's snapshot */
	CHECK_STR_EQ(look(re, "k"), "first k");
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	CHECK_STR_EQ(look(h, "k"), "v2");
	CHECK_STR_EQ(look(re, "k"), "second k"); /* recompiled from the new source */
	table_close(h);
	table_close(re);
	tables_reader_close(rd);
	tt_env_remove(env, dir);
}

static void test_cidr_in_lmdb(void)
{
	char dir[64], err[256];
	struct tables_env *env = tt_env_open(dir);
	/* A few thousand overlapping rules in random order, compared with the scan. */
	size_t cap = 1 << 20, w = 0;
	char *text = malloc(cap);
	uint64_t s = 12345;
	for (int i = 0; i < 3000; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		unsigned plen = 8 + (unsigned)((s >> 33) % 25);
		uint32_t a = (uint32_t)(0x0a000000u | ((s >> 20) & 0x00ffffffu));
		a &= plen == 32 ? 0xffffffffu : ~(0xffffffffu >> plen);
		if (i % 7 == 0)
			w += (size_t)snprintf(text + w, cap - w, "%s2001:db8:%x::/%u V6-%d\n",
					      i % 2 ? "!" : "", (unsigned)(s >> 48) & 0xfff0,
					      44, i);
		else
			w += (size_t)snprintf(text + w, cap - w, "%u.%u.%u.%u/%u R%d\n", a >> 24,
					      (a >> 16) & 255, (a >> 8) & 255, a & 255, plen, i);
	}
	CHECK_INT_EQ(tt_build(env, "cidr:big", text), 0);
	struct table_cidr *c;
	CHECK_INT_EQ(table_cidr_parse(text, w, &c, err, sizeof(err)), 0);
	struct tables_reader *rd;
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	struct table *t;
	CHECK_INT_EQ(table_open(rd, "cidr:big", &t, err, sizeof(err)), 0);
	int bad = 0, hits = 0;
	for (int i = 0; i < 20000; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		char key[64];
		if (i % 3 == 0)
			snprintf(key, sizeof(key), "2001:db8:%x::%x", (unsigned)(s >> 48),
				 (unsigned)(s >> 20) & 0xffff);
		else
			snprintf(key, sizeof(key), "10.%u.%u.%u", (unsigned)(s >> 40) & 255,
				 (unsigned)(s >> 30) & 255, (unsigned)(s >> 50) & 255);
		struct mx_inet_addr a;
		CHECK(table_cidr_key(key, &a));
		const char *want = table_cidr_scan(c, &a), *got;
		int rc = lookup(t, key, &got);
		hits += rc == 1;
		if (rc < 0 || (want ? strcmp(want, got) != 0 : rc != 0))
			if (bad++ < 5)
				fprintf(stderr, "  %s: want %s got %s\n", key, want ? want : "-", got);
	}
	CHECK_INT_EQ(bad, 0);
	CHECK(hits > 1000);
	CHECK_STR_EQ(look(t, "not-an-address"), "(none)");
	table_close(t);
	tables_reader_close(rd);
	table_cidr_free(c);
	free(text);
	tt_env_remove(env, dir);
}

/* ---- atomic replace under a concurrent reader ---- */

#define GEN_KEYS 200
static atomic_int writer_done;
static atomic_int reader_rounds;
static atomic_int reader_bad;
static struct tables_env *atomic_env;

static void *atomic_reader(void *arg)
{
	(void)arg;
	struct tables_reader *rd;
	struct table *t;
	char err[256], val[64], key[32];
	if (tables_reader_open(atomic_env, &rd) < 0 ||
	    table_open(rd, "hash:gen", &t, err, sizeof(err)) < 0) {
		reader_bad++;
		return NULL;
	}
	while (!writer_done) {
		tables_reader_renew(rd);
		/* Every key of one snapshot carries the same generation: even generations use
		 * keys even-*, odd ones odd-*, so a mix would also show as a missing key. */
		if (table_lookup(t, "generation", val, sizeof(val)) != 1) {
			reader_bad++;
			continue;
		}
		int g = atoi(val);
		for (int i = 0; i < GEN_KEYS; i++) {
			snprintf(key, sizeof(key), "%s-%d", g % 2 ? "odd" : "even", i);
			int rc = table_lookup(t, key, val, sizeof(val));
			if (rc != 1 || atoi(val) != g)
				reader_bad++;
			snprintf(key, sizeof(key), "%s-%d", g % 2 ? "even" : "odd", i);
			if (table_lookup(t, key, val, sizeof(val)) != 0)
				reader_bad++;
		}
		reader_rounds++;
	}
	table_close(t);
	tables_reader_close(rd);
	return NULL;
}

static void test_atomic_replace(void)
{
	char dir[64];
	atomic_env = tt_env_open(dir);
	size_t cap = GEN_KEYS * 40 + 64;
	char *text = malloc(cap);
	CHECK_INT_EQ(tt_build(atomic_env, "hash:gen", "generation 0\n"), 0);
	size_t w = (size_t)snprintf(text, cap, "generation 0\n");
	for (int i = 0; i < GEN_KEYS; i++)
		w += (size_t)snprintf(text + w, cap - w, "even-%d 0\n", i);
	CHECK_INT_EQ(tt_build(atomic_env, "hash:gen", text), 0);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, atomic_reader, NULL);
	for (int g = 1; g <= 300; g++) {
		w = (size_t)snprintf(text, cap, "generation %d\n", g);
		for (int i = GEN_KEYS - 1; i >= 0; i--)
			w += (size_t)snprintf(text + w, cap - w, "%s-%d %d\n", g % 2 ? "odd" : "even",
					      i, g);
		CHECK_INT_EQ(tt_build(atomic_env, "hash:gen", text), 0);
	}
	writer_done = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_INT_EQ(reader_bad, 0);
	CHECK(reader_rounds > 10);
	printf("  %d consistent reader rounds over 300 replacements\n", (int)reader_rounds);
	free(text);
	tt_env_remove(atomic_env, dir);
}

/* ---- corrupt data: written behind the store's back with raw LMDB ---- */

static void raw_put(const char *dir, const char *db, const void *k, size_t kl, const void *v,
		    size_t vl, bool drop)
{
	MDB_env *e;
	MDB_txn *txn;
	MDB_dbi dbi;
	CHECK_INT_EQ(mdb_env_create(&e), 0);
	mdb_env_set_maxdbs(e, 16);
	mdb_env_set_mapsize(e, (size_t)1 << 30);
	CHECK_INT_EQ(mdb_env_open(e, dir, 0, 0640), 0);
	CHECK_INT_EQ(mdb_txn_begin(e, NULL, 0, &txn), 0);
	CHECK_INT_EQ(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
	if (drop)
		mdb_drop(txn, dbi, 0);
	if (k) {
		MDB_val mk = { kl, (void *)k }, mv = { vl, (void *)v };
		CHECK_INT_EQ(mdb_put(txn, dbi, &mk, &mv, 0), 0);
	}
	CHECK_INT_EQ(mdb_txn_commit(txn), 0);
	mdb_env_close(e);
}

static int reopen_lookup(const char *dir, const char *spec, const char *key)
{
	struct tables_env *env;
	struct tables_reader *rd;
	struct table *t;
	char err[256], val[TABLE_VALUE_MAX + 1];
	CHECK_INT_EQ(tables_env_open(dir, NULL, &env, err, sizeof(err)), 0);
	CHECK_INT_EQ(tables_reader_open(env, &rd), 0);
	CHECK_INT_EQ(table_open(rd, spec, &t, err, sizeof(err)), 0);
	int rc = table_lookup(t, key, val, sizeof(val));
	table_close(t);
	tables_reader_close(rd);
	tables_env_close(env);
	return rc;
}

static void test_corrupt_data(void)
{
	char dir[64];
	struct tables_env *env = tt_env_open(dir);
	CHECK_INT_EQ(tt_build(env, "hash:h", "k v\n"), 0);
	CHECK_INT_EQ(tt_build(env, "cidr:c", "10.0.0.0/8 TEN\n"), 0);
	CHECK_INT_EQ(tt_build(env, "regexp:r", "/a/ A\n"), 0);
	tables_env_close(env);
	CHECK_INT_EQ(reopen_lookup(dir, "hash:h", "k"), 1);
	/* A value with a NUL byte. */
	raw_put(dir, "hash:h", "k", 1, "v\0x", 3, false);
	CHECK_INT_EQ(reopen_lookup(dir, "hash:h", "k"), -EBADMSG);
	/* A database without the meta record: not a table. */
	raw_put(dir, "hash:h", "k", 1, "v", 1, true);
	CHECK_INT_EQ(reopen_lookup(dir, "hash:h", "k"), -EBADMSG);
	/* A bad meta record. */
	raw_put(dir, "hash:h", "\0meta", 5, "garbage", 7, false);
	CHECK_INT_EQ(reopen_lookup(dir, "hash:h", "k"), -EBADMSG);
	/* A cidr interval record too short. */
	uint8_t key[17] = { 4, 10, 255, 255, 255 };
	raw_put(dir, "cidr:c", key, sizeof(key), "xx", 2, false);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "10.1.1.1"), -EBADMSG);
	/* A cidr key of the wrong size, after the 10/8 interval of a rebuilt table. */
	char err[256];
	CHECK_INT_EQ(tables_env_open(dir, NULL, &env, err, sizeof(err)), 0);
	CHECK_INT_EQ(tt_build(env, "cidr:c", "10.0.0.0/8 TEN\n"), 0);
	tables_env_close(env);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "10.1.1.1"), 1);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "11.0.0.1"), 0);
	raw_put(dir, "cidr:c", "\x04\xff", 2, "x", 1, false);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "11.0.0.1"), -EBADMSG);
	/* regexp source that no longer compiles. */
	raw_put(dir, "regexp:r", "\0src", 4, "/(/ x\n", 6, false);
	CHECK_INT_EQ(reopen_lookup(dir, "regexp:r", "a"), -EBADMSG);
	/* A database holding a table of another kind (a hash meta record in "cidr:c"). */
	struct {
		char magic[4];
		uint32_t version, kind, reserved;
		uint64_t generation, entries;
	} meta = { { 'M', 'X', 'T', 'B' }, 1, 0 /* hash */, 0, 9, 0 };
	raw_put(dir, "cidr:c", "\0meta", 5, &meta, sizeof(meta), true);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "10.1.1.1"), -EBADMSG);
	meta.kind = 1; /* cidr: now well-formed (and empty) */
	raw_put(dir, "cidr:c", "\0meta", 5, &meta, sizeof(meta), true);
	CHECK_INT_EQ(reopen_lookup(dir, "cidr:c", "10.1.1.1"), 0);
	tt_env_remove(NULL, dir);
}

int main(void)
{
	RUN_TEST(test_hash_build_lookup_list);
	RUN_TEST(test_static_inline);
	RUN_TEST(test_renew_and_missing);
	RUN_TEST(test_cidr_in_lmdb);
	RUN_TEST(test_atomic_replace);
	RUN_TEST(test_corrupt_data);
	return TEST_RESULT();
}
