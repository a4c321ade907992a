/* Dicts (dataplane/svc/svc_dict.h) over LMDB: specs (lmdb:, Postfix's btree: and hash: as
 * NAME.lmdb, refused types), put/get/del, bounds of keys and values, expiry, a restart
 * (close and reopen) that keeps the entries, sweeps that drop expired entries a bounded
 * number at a time, one file opened twice in the process, and the file's owner. */
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/svc/svc_dict.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "testing.h"

static char dir[64];
static const uint64_t T0 = 1800000000000ull; /* wall ms: 2027-01-15 */
#define FAR (mx_clock_monotonic_ms() + 10000)

static struct svc_dict *open_ok(const char *spec)
{
	struct svc_dict *d = NULL;
	char err[512] = "";
	int rc = svc_dict_open(spec, "test_map", &d, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  open %s: %s\n", spec, err);
	CHECK_INT_EQ(rc, 0);
	return d;
}

static void refused(const char *spec, int want, const char *why)
{
	struct svc_dict *d = (struct svc_dict *)1;
	char err[512] = "";
	CHECK_INT_EQ(svc_dict_open(spec, "postscreen_cache_map", &d, err, sizeof(err)), want);
	CHECK(d == NULL);
	if (!strstr(err, why)) {
		fprintf(stderr, "  %s: \"%s\" lacks \"%s\"\n", spec, err, why);
		CHECK(false);
	}
}

static void test_specs(void)
{
	char spec[256], path[256];
	refused("proxy:btree:/var/lib/postfix/x", -EINVAL,
		"postscreen_cache_map: unsupported dictionary type \"proxy\"");
	refused("redis:/etc/redis.cf", -EINVAL, "unsupported dictionary type \"redis\"");
	refused("cdb:/x", -EINVAL, "unsupported dictionary type \"cdb\"");
	refused("btree:relative/x", -EINVAL, "must be absolute");
	refused("/no/type", -EINVAL, "need a type:name table");
	refused(":x", -EINVAL, "need a type:name table");
	snprintf(spec, sizeof(spec), "lmdb:%s/missing/dir/x", dir);
	refused(spec, -ENOENT, "cannot open LMDB file");
	snprintf(spec, sizeof(spec), "memcache:%s/missing.cf", dir);
	refused(spec, -ENOENT, "open ");

	/* btree: and hash: are NAME.lmdb, lmdb: is NAME */
	static const char *const kinds[][2] = { { "btree", "ps_btree.lmdb" },
						{ "hash", "ps_hash.lmdb" },
						{ "lmdb", "ps_lmdb" } };
	for (int i = 0; i < 3; i++) {
		snprintf(spec, sizeof(spec), "%s:%s/ps_%s", kinds[i][0], dir, kinds[i][0]);
		struct svc_dict *d = open_ok(spec);
		snprintf(path, sizeof(path), "%s/%s", dir, kinds[i][1]);
		CHECK_INT_EQ(access(path, R_OK | W_OK), 0);
		struct stat st;
		CHECK_INT_EQ(stat(path, &st), 0);
		CHECK_INT_EQ(st.st_mode & 0137, 0); /* at most 0640 (the umask may take more) */
		svc_dict_close(d);
	}
	svc_dict_close(NULL);
}

static void test_put_get_del(void)
{
	char spec[256];
	snprintf(spec, sizeof(spec), "btree:%s/basic", dir);
	struct svc_dict *d = open_ok(spec);
	if (!d)
		return;
	char val[SVC_DICT_VALUE_MAX + 8];
	size_t len = 99;
	CHECK_INT_EQ(svc_dict_get(d, "192.0.2.1", val, sizeof(val), &len, T0, FAR), -ENOENT);
	CHECK_INT_EQ(len, 0);
	CHECK_INT_EQ(svc_dict_put(d, "192.0.2.1", "1;2;3", 5, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "192.0.2.1", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_MEM_EQ(val, len, "1;2;3", 5);
	/* replaced */
	CHECK_INT_EQ(svc_dict_put(d, "192.0.2.1", "x", 1, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "192.0.2.1", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_MEM_EQ(val, len, "x", 1);
	/* binary values, the empty value */
	CHECK_INT_EQ(svc_dict_put(d, "bin", "a\0b\r\n", 5, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "bin", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_MEM_EQ(val, len, "a\0b\r\n", 5);
	CHECK_INT_EQ(svc_dict_put(d, "empty", NULL, 0, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "empty", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_INT_EQ(len, 0);
	/* del, and del of what is not there */
	CHECK_INT_EQ(svc_dict_del(d, "192.0.2.1", T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "192.0.2.1", val, sizeof(val), &len, T0, FAR), -ENOENT);
	CHECK_INT_EQ(svc_dict_del(d, "192.0.2.1", T0, FAR), 0);

	/* bounds */
	char key[SVC_DICT_KEY_MAX + 2];
	memset(key, 'k', sizeof(key));
	key[SVC_DICT_KEY_MAX] = '\0';
	CHECK_INT_EQ(svc_dict_put(d, key, "v", 1, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, key, val, sizeof(val), &len, T0, FAR), 0);
	key[SVC_DICT_KEY_MAX] = 'k';
	key[SVC_DICT_KEY_MAX + 1] = '\0';
	CHECK_INT_EQ(svc_dict_put(d, key, "v", 1, 0, T0, FAR), -EINVAL);
	CHECK_INT_EQ(svc_dict_get(d, key, val, sizeof(val), &len, T0, FAR), -EINVAL);
	CHECK_INT_EQ(svc_dict_del(d, key, T0, FAR), -EINVAL);
	CHECK_INT_EQ(svc_dict_put(d, "", "v", 1, 0, T0, FAR), -EINVAL);
	char big[SVC_DICT_VALUE_MAX + 1];
	memset(big, 'v', sizeof(big));
	CHECK_INT_EQ(svc_dict_put(d, "big", big, SVC_DICT_VALUE_MAX, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "big", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_INT_EQ(len, SVC_DICT_VALUE_MAX);
	CHECK_INT_EQ(svc_dict_put(d, "big", big, SVC_DICT_VALUE_MAX + 1, 0, T0, FAR), -EMSGSIZE);
	/* a buffer too small: the length, and -ENOBUFS */
	CHECK_INT_EQ(svc_dict_get(d, "big", val, 10, &len, T0, FAR), -ENOBUFS);
	CHECK_INT_EQ(len, SVC_DICT_VALUE_MAX);
	/* nothing to sweep */
	CHECK_INT_EQ(svc_dict_sweep(d, T0, 100), 0);
	svc_dict_close(d);
}

static void test_expiry_and_restart(void)
{
	char spec[256];
	snprintf(spec, sizeof(spec), "lmdb:%s/expiry", dir);
	struct svc_dict *d = open_ok(spec);
	if (!d)
		return;
	char val[64];
	size_t len;
	CHECK_INT_EQ(svc_dict_put(d, "short", "s", 1, 10, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_put(d, "forever", "f", 1, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_put(d, "long", "l", 1, 86400 * 30, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "short", val, sizeof(val), &len, T0 + 9999, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "short", val, sizeof(val), &len, T0 + 10000, FAR), -ENOENT);
	/* a put renews the entry's life */
	CHECK_INT_EQ(svc_dict_put(d, "short", "s2", 2, 10, T0 + 5000, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "short", val, sizeof(val), &len, T0 + 14999, FAR), 0);
	CHECK_MEM_EQ(val, len, "s2", 2);
	svc_dict_close(d);

	/* a restart: the file keeps its entries and their expiry */
	d = open_ok(spec);
	if (!d)
		return;
	CHECK_INT_EQ(svc_dict_get(d, "short", val, sizeof(val), &len, T0 + 14999, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(d, "short", val, sizeof(val), &len, T0 + 15000, FAR), -ENOENT);
	uint64_t decade = T0 + 10ull * 365 * 86400 * 1000;
	CHECK_INT_EQ(svc_dict_get(d, "forever", val, sizeof(val), &len, decade, FAR), 0);
	CHECK_MEM_EQ(val, len, "f", 1);
	CHECK_INT_EQ(svc_dict_get(d, "long", val, sizeof(val), &len, T0 + 86400000ull * 29, FAR),
		     0);
	CHECK_INT_EQ(svc_dict_get(d, "long", val, sizeof(val), &len, T0 + 86400000ull * 30, FAR),
		     -ENOENT);
	svc_dict_close(d);
}

static void test_sweep(void)
{
	char spec[256];
	snprintf(spec, sizeof(spec), "hash:%s/sweep", dir);
	struct svc_dict *d = open_ok(spec);
	if (!d)
		return;
	/* 100 entries: 60 expire at T0+1s (every key i % 5 < 3), 40 never */
	for (int i = 0; i < 100; i++) {
		char key[32];
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		CHECK_INT_EQ(svc_dict_put(d, key, "v", 1, i % 5 < 3 ? 1 : 0, T0, FAR), 0);
	}
	CHECK_INT_EQ(svc_dict_sweep(d, T0, 1000), 0); /* nothing expired yet */
	long total = 0, n;
	int sweeps = 0;
	while ((n = svc_dict_sweep(d, T0 + 1000, 25)) > 0) {
		CHECK(n <= 25);
		total += n;
		sweeps++;
		CHECK(sweeps < 20);
		if (sweeps >= 20)
			break;
	}
	CHECK_INT_EQ(n, 0);
	CHECK_INT_EQ(total, 60);
	CHECK(sweeps >= 3); /* 25 at most each time */
	/* the rest are there */
	for (int i = 0; i < 100; i++) {
		char key[32], val[8];
		size_t len;
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		CHECK_INT_EQ(svc_dict_get(d, key, val, sizeof(val), &len, T0, FAR),
			     i % 5 < 3 ? -ENOENT : 0);
	}
	/* a sweep resumes where the last stopped and wraps around: with max 1, 40 sweeps
	 * after these 40 expire drop all of them */
	for (int i = 0; i < 100; i++) {
		char key[32];
		snprintf(key, sizeof(key), "198.51.100.%d", i);
		if (i % 5 >= 3)
			CHECK_INT_EQ(svc_dict_put(d, key, "v", 1, 1, T0, FAR), 0);
	}
	total = 0;
	for (int i = 0; i < 40; i++)
		total += svc_dict_sweep(d, T0 + 1000, 1);
	CHECK_INT_EQ(total, 40);
	CHECK_INT_EQ(svc_dict_sweep(d, T0 + 1000, 1000), 0);
	CHECK_INT_EQ(svc_dict_sweep(d, T0 + 1000, 0), 0);
	svc_dict_close(d);
}

static void test_shared_file(void)
{
	/* one file opened twice in a process: one LMDB environment, both handles work, and
	 * closing one leaves the other working */
	char spec[256];
	snprintf(spec, sizeof(spec), "btree:%s/shared", dir);
	struct svc_dict *a = open_ok(spec);
	snprintf(spec, sizeof(spec), "lmdb:%s/shared.lmdb", dir);
	struct svc_dict *b = open_ok(spec);
	if (!a || !b)
		return;
	char val[16];
	size_t len;
	CHECK_INT_EQ(svc_dict_put(a, "k", "from a", 6, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(b, "k", val, sizeof(val), &len, T0, FAR), 0);
	CHECK_MEM_EQ(val, len, "from a", 6);
	svc_dict_close(a);
	CHECK_INT_EQ(svc_dict_put(b, "k2", "b", 1, 0, T0, FAR), 0);
	CHECK_INT_EQ(svc_dict_get(b, "k", val, sizeof(val), &len, T0, FAR), 0);
	svc_dict_close(b);
}

static void test_owner(void)
{
	/* a new file takes its directory's owner (root only can give it away) */
	char sub[128], spec[256], path[256];
	snprintf(sub, sizeof(sub), "%s/owned", dir);
	CHECK_INT_EQ(mkdir(sub, 0755), 0);
	uid_t want_uid = geteuid();
	gid_t want_gid = getegid();
	if (geteuid() == 0) {
		want_uid = 65534;
		want_gid = 65534;
		CHECK_INT_EQ(chown(sub, want_uid, want_gid), 0);
	}
	snprintf(spec, sizeof(spec), "btree:%s/ps", sub);
	struct svc_dict *d = open_ok(spec);
	svc_dict_close(d);
	struct stat st;
	snprintf(path, sizeof(path), "%s/ps.lmdb", sub);
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK_INT_EQ(st.st_uid, want_uid);
	CHECK_INT_EQ(st.st_gid, want_gid);
	snprintf(path, sizeof(path), "%s/ps.lmdb-lock", sub);
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK_INT_EQ(st.st_uid, want_uid);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-dict-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	char log[128];
	snprintf(log, sizeof(log), "%s/mxgate.log", dir);
	mx_log_open(log, "test", "mxgate");
	RUN_TEST(test_specs);
	RUN_TEST(test_put_get_del);
	RUN_TEST(test_expiry_and_restart);
	RUN_TEST(test_sweep);
	RUN_TEST(test_shared_file);
	RUN_TEST(test_owner);
	mx_log_close();
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return TEST_RESULT();
}
