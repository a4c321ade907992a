/* LMDB dicts (svc_dict_internal.h): one file, one LMDB environment (MDB_NOSUBDIR: the file
 * and its "-lock" beside it), one unnamed database, an expiry in front of every value.
 *
 * LMDB's locks are per process: opening one file twice in a process breaks them, so every
 * environment is kept once in a process-wide list (by device and inode) and shared by the
 * handles that open it, with a count. A handle is used by one thread at a time; two
 * handles on one environment may be used by two threads (LMDB serializes the writers;
 * MDB_NOTLS lets a read transaction live outside thread-local storage).
 *
 * Writes commit per call. MDB_NOMETASYNC: a commit syncs the data, not the meta page,
 * so a system crash may lose the last commits, never the file's integrity; a process
 * crash or restart loses nothing. The state is a cache of decisions that are made again
 * when an entry is missing. */
#include "dataplane/svc/svc_dict_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <libgen.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt/log.h"
#include "mxgate/errf.h"

#define SVC_DICT_LMDB_HEADER 8           /* the expiry */
#define SVC_DICT_LMDB_SCAN_FACTOR 16u    /* a sweep reads at most this many per drop */

struct svc_dict_lmdb_env {
	struct svc_dict_lmdb_env *next;
	MDB_env *env;
	MDB_dbi dbi;
	dev_t dev;
	ino_t ino;
	unsigned refs;
	char path[SVC_DICT_SPEC_MAX + 8];
};

struct svc_dict_lmdb {
	struct svc_dict_lmdb_env *e;
	/* where the next sweep starts (the key after the last one looked at); empty: the
	 * beginning */
	char sweep_from[SVC_DICT_KEY_MAX + 1];
	size_t sweep_from_len;
	bool warned_full;
};

static pthread_mutex_t svc_dict_lmdb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct svc_dict_lmdb_env *svc_dict_lmdb_envs;

static int svc_dict_lmdb_err(int rc)
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
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return -EBADMSG;
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	case MDB_READERS_FULL:
	case MDB_TXN_FULL:
		return -EAGAIN;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

static void svc_dict_lmdb_put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static uint64_t svc_dict_lmdb_get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* A file this open made takes the owner and group of its directory (the gateway may
 * start as root and the directory belong to the user it runs as, as Postfix's
 * data_directory belongs to postfix). */
static void svc_dict_lmdb_chown(const char *path)
{
	char dir[SVC_DICT_SPEC_MAX + 8];
	snprintf(dir, sizeof(dir), "%s", path);
	struct stat ds, fs;
	if (stat(dirname(dir), &ds) < 0 || stat(path, &fs) < 0)
		return;
	if (fs.st_uid == ds.st_uid && fs.st_gid == ds.st_gid)
		return;
	char lock[SVC_DICT_SPEC_MAX + 16];
	snprintf(lock, sizeof(lock), "%s-lock", path);
	if (chown(path, ds.st_uid, ds.st_gid) < 0 || chown(lock, ds.st_uid, ds.st_gid) < 0)
		mx_log(MX_LOG_WARNING, "%s: cannot give it the owner of its directory: %s", path,
		       strerror(errno));
}

/* The environment of path, opened or shared; with the list's lock held. */
static int svc_dict_lmdb_env_get(const char *path, struct svc_dict_lmdb_env **out, char *err,
				 size_t errlen)
{
	struct stat st;
	bool existed = stat(path, &st) == 0;
	if (existed) {
		for (struct svc_dict_lmdb_env *e = svc_dict_lmdb_envs; e; e = e->next) {
			if (e->dev == st.st_dev && e->ino == st.st_ino) {
				e->refs++;
				*out = e;
				return 0;
			}
		}
	}
	struct svc_dict_lmdb_env *e = calloc(1, sizeof(*e));
	if (!e)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	snprintf(e->path, sizeof(e->path), "%s", path);
	int rc = mdb_env_create(&e->env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(e->env, SVC_DICT_LMDB_MAP_SIZE);
	if (rc == 0)
		rc = mdb_env_open(e->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NOMETASYNC, 0640);
	if (rc != 0) {
		int ret = svc_dict_lmdb_err(rc);
		mx_errf(err, errlen, ret, "cannot open LMDB file %s: %s", path, mdb_strerror(rc));
		if (e->env)
			mdb_env_close(e->env);
		free(e);
		return ret;
	}
	MDB_txn *txn;
	rc = mdb_txn_begin(e->env, NULL, 0, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, NULL, 0, &e->dbi);
		if (rc == 0)
			rc = mdb_txn_commit(txn);
		else
			mdb_txn_abort(txn);
	}
	if (rc == 0 && stat(path, &st) < 0)
		rc = errno;
	if (rc != 0) {
		int ret = svc_dict_lmdb_err(rc);
		mx_errf(err, errlen, ret, "cannot open LMDB file %s: %s", path, mdb_strerror(rc));
		mdb_env_close(e->env);
		free(e);
		return ret;
	}
	if (!existed)
		svc_dict_lmdb_chown(path);
	e->dev = st.st_dev;
	e->ino = st.st_ino;
	e->refs = 1;
	e->next = svc_dict_lmdb_envs;
	svc_dict_lmdb_envs = e;
	*out = e;
	return 0;
}

int svc_dict_lmdb_open(const char *path, struct svc_dict_lmdb **out, char *err, size_t errlen)
{
	*out = NULL;
	struct svc_dict_lmdb *l = calloc(1, sizeof(*l));
	if (!l)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_lock(&svc_dict_lmdb_lock);
	int rc = svc_dict_lmdb_env_get(path, &l->e, err, errlen);
	pthread_mutex_unlock(&svc_dict_lmdb_lock);
	if (rc < 0) {
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

void svc_dict_lmdb_close(struct svc_dict_lmdb *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&svc_dict_lmdb_lock);
	struct svc_dict_lmdb_env *e = l->e;
	if (--e->refs == 0) {
		for (struct svc_dict_lmdb_env **pp = &svc_dict_lmdb_envs; *pp; pp = &(*pp)->next) {
			if (*pp == e) {
				*pp = e->next;
				break;
			}
		}
		mdb_env_sync(e->env, 1); /* what MDB_NOMETASYNC left to the OS */
		mdb_env_close(e->env);
		free(e);
	}
	pthread_mutex_unlock(&svc_dict_lmdb_lock);
	free(l);
}

int svc_dict_lmdb_get(struct svc_dict_lmdb *l, const char *key, char *val, size_t cap,
		      size_t *len, uint64_t *expires_ms, uint64_t now_ms)
{
	*len = 0;
	*expires_ms = 0;
	MDB_txn *txn;
	int rc = mdb_txn_begin(l->e->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return svc_dict_lmdb_err(rc);
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key }, v;
	rc = mdb_get(txn, l->e->dbi, &k, &v);
	int ret = svc_dict_lmdb_err(rc);
	if (rc == 0) {
		if (v.mv_size < SVC_DICT_LMDB_HEADER) {
			ret = -ENOENT; /* not ours: a sweep drops it */
		} else {
			uint64_t exp = svc_dict_lmdb_get_u64(v.mv_data);
			size_t n = v.mv_size - SVC_DICT_LMDB_HEADER;
			if (exp && exp <= now_ms) {
				ret = -ENOENT;
			} else {
				*len = n;
				*expires_ms = exp;
				if (n > cap)
					ret = -ENOBUFS;
				else if (n)
					memcpy(val, (const char *)v.mv_data + SVC_DICT_LMDB_HEADER, n);
			}
		}
	}
	mdb_txn_abort(txn);
	return ret;
}

/* Log once that the file is full (until a write succeeds again). */
static int svc_dict_lmdb_write_failed(struct svc_dict_lmdb *l, int rc)
{
	int ret = svc_dict_lmdb_err(rc);
	if (ret == -ENOSPC && !l->warned_full) {
		l->warned_full = true;
		mx_log(MX_LOG_WARNING, "%s: LMDB map full (%u MiB): entries are not stored until "
		       "expired ones are swept", l->e->path, SVC_DICT_LMDB_MAP_SIZE >> 20);
	}
	return ret;
}

int svc_dict_lmdb_put(struct svc_dict_lmdb *l, const char *key, const char *val, size_t len,
		      uint64_t expires_ms)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(l->e->env, NULL, 0, &txn);
	if (rc != 0)
		return svc_dict_lmdb_write_failed(l, rc);
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key };
	MDB_val v = { .mv_size = SVC_DICT_LMDB_HEADER + len };
	rc = mdb_put(txn, l->e->dbi, &k, &v, MDB_RESERVE);
	if (rc == 0) {
		svc_dict_lmdb_put_u64(v.mv_data, expires_ms);
		if (len)
			memcpy((char *)v.mv_data + SVC_DICT_LMDB_HEADER, val, len);
		rc = mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
	}
	if (rc != 0)
		return svc_dict_lmdb_write_failed(l, rc);
	l->warned_full = false;
	return 0;
}

int svc_dict_lmdb_del(struct svc_dict_lmdb *l, const char *key)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(l->e->env, NULL, 0, &txn);
	if (rc != 0)
		return svc_dict_lmdb_err(rc);
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key };
	rc = mdb_del(txn, l->e->dbi, &k, NULL);
	if (rc == MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return 0;
	}
	if (rc == 0)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	return svc_dict_lmdb_err(rc);
}

/* Drop up to max expired entries (and entries too short to be ours), reading at most
 * max * SVC_DICT_LMDB_SCAN_FACTOR entries from where the last sweep stopped, in one write
 * transaction; the next sweep goes on from there, and wraps around at the end. */
long svc_dict_lmdb_sweep(struct svc_dict_lmdb *l, uint64_t now_ms, unsigned max)
{
	if (max == 0)
		return 0;
	MDB_txn *txn;
	int rc = mdb_txn_begin(l->e->env, NULL, 0, &txn);
	if (rc != 0)
		return svc_dict_lmdb_err(rc);
	MDB_cursor *cur;
	rc = mdb_cursor_open(txn, l->e->dbi, &cur);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return svc_dict_lmdb_err(rc);
	}
	MDB_val k = { .mv_size = l->sweep_from_len, .mv_data = l->sweep_from }, v;
	rc = l->sweep_from_len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
			       : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	long dropped = 0;
	unsigned long scan = (unsigned long)max * SVC_DICT_LMDB_SCAN_FACTOR;
	bool wrapped = l->sweep_from_len == 0;
	while (scan > 0 && (unsigned long)dropped < max) {
		if (rc == MDB_NOTFOUND) {
			/* the end: start again from the beginning, once per sweep */
			l->sweep_from_len = 0;
			if (wrapped)
				break;
			wrapped = true;
			rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
			continue;
		}
		if (rc != 0)
			break;
		scan--;
		bool expired = v.mv_size < SVC_DICT_LMDB_HEADER;
		if (!expired) {
			uint64_t exp = svc_dict_lmdb_get_u64(v.mv_data);
			expired = exp && exp <= now_ms;
		}
		if (expired) {
			rc = mdb_cursor_del(cur, 0);
			if (rc != 0)
				break;
			dropped++;
			/* after a delete, MDB_NEXT gives the entry that followed it */
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		} else {
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
		}
	}
	/* remember where to go on */
	if (rc == 0 && k.mv_size <= SVC_DICT_KEY_MAX) {
		memcpy(l->sweep_from, k.mv_data, k.mv_size);
		l->sweep_from_len = k.mv_size;
	} else {
		l->sweep_from_len = 0;
	}
	int err = rc == 0 || rc == MDB_NOTFOUND ? 0 : rc;
	mdb_cursor_close(cur);
	if (err == 0 && dropped > 0)
		err = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	if (err != 0)
		return svc_dict_lmdb_err(err);
	return dropped;
}
