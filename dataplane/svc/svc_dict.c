/* Dynamic state tables (svc_dict.h): the spec's type picks the backend; keys and values
 * are checked here, once for both. */
#include "dataplane/svc/svc_dict.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/svc/svc_dict_internal.h"
#include "mxgate/errf.h"

const char *svc_dict_kind_name(enum svc_dict_kind k)
{
	static const char *const names[SVC_DICT_KIND_MAX] = {
		[SVC_DICT_LMDB] = "lmdb",
		[SVC_DICT_MEMCACHE] = "memcache",
	};
	return (unsigned)k < SVC_DICT_KIND_MAX ? names[k] : "?";
}

int svc_dict_open(const char *spec, const char *name, struct svc_dict **out, char *err,
		  size_t errlen)
{
	*out = NULL;
	size_t sl = strlen(spec);
	if (sl > SVC_DICT_SPEC_MAX)
		return mx_errf(err, errlen, -EINVAL, "%s: table name longer than %d bytes", name,
			       SVC_DICT_SPEC_MAX);
	const char *colon = strchr(spec, ':');
	if (!colon || colon == spec)
		return mx_errf(err, errlen, -EINVAL,
			       "%s: need a type:name table instead of \"%s\"", name, spec);
	size_t tl = (size_t)(colon - spec);
	const char *path = colon + 1;
	enum svc_dict_kind kind;
	/* btree: and hash: are Postfix's Berkeley DB types: the same name with ".lmdb" */
	bool suffix = false;
	if (tl == 4 && memcmp(spec, "lmdb", 4) == 0) {
		kind = SVC_DICT_LMDB;
	} else if ((tl == 5 && memcmp(spec, "btree", 5) == 0) ||
		   (tl == 4 && memcmp(spec, "hash", 4) == 0)) {
		kind = SVC_DICT_LMDB;
		suffix = true;
	} else if (tl == 8 && memcmp(spec, "memcache", 8) == 0) {
		kind = SVC_DICT_MEMCACHE;
	} else {
		return mx_errf(err, errlen, -EINVAL,
			       "%s: unsupported dictionary type \"%.*s\" in \"%s\" (a writable "
			       "state table is lmdb:, btree:, hash: or memcache:)",
			       name, (int)tl, spec, spec);
	}
	if (path[0] != '/')
		return mx_errf(err, errlen, -EINVAL, "%s: \"%s\": the file name must be absolute",
			       name, spec);
	struct svc_dict *d = calloc(1, sizeof(*d));
	if (!d)
		return mx_errf(err, errlen, -ENOMEM, "%s: out of memory", name);
	d->kind = kind;
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->spec, sizeof(d->spec), "%s", spec);
	int rc;
	if (kind == SVC_DICT_LMDB) {
		char file[SVC_DICT_SPEC_MAX + 8];
		snprintf(file, sizeof(file), "%s%s", path, suffix ? ".lmdb" : "");
		char why[512];
		rc = svc_dict_lmdb_open(file, &d->lmdb, why, sizeof(why));
		if (rc < 0)
			mx_errf(err, errlen, rc, "%s: %s: %s", name, spec, why);
	} else {
		rc = svc_dict_mc_open(d, path, err, errlen);
	}
	if (rc < 0) {
		free(d);
		return rc;
	}
	*out = d;
	return 0;
}

/* A key both backends take: 1..SVC_DICT_KEY_MAX bytes. */
static int svc_dict_key_check(const char *key)
{
	size_t n = strnlen(key, SVC_DICT_KEY_MAX + 1);
	return n == 0 || n > SVC_DICT_KEY_MAX ? -EINVAL : 0;
}

int svc_dict_get(struct svc_dict *d, const char *key, char *val, size_t cap, size_t *len,
		 uint64_t now_ms, uint64_t deadline_ms)
{
	*len = 0;
	int rc = svc_dict_key_check(key);
	if (rc < 0)
		return rc;
	if (d->kind == SVC_DICT_LMDB) {
		uint64_t expires;
		return svc_dict_lmdb_get(d->lmdb, key, val, cap, len, &expires, now_ms);
	}
	return svc_dict_mc_get(d, key, val, cap, len, now_ms, deadline_ms);
}

int svc_dict_put(struct svc_dict *d, const char *key, const char *val, size_t len,
		 uint32_t ttl_s, uint64_t now_ms, uint64_t deadline_ms)
{
	int rc = svc_dict_key_check(key);
	if (rc < 0)
		return rc;
	if (len > SVC_DICT_VALUE_MAX)
		return -EMSGSIZE;
	if (d->kind == SVC_DICT_LMDB)
		return svc_dict_lmdb_put(d->lmdb, key, val, len, svc_dict_expiry(now_ms, ttl_s));
	return svc_dict_mc_put(d, key, val, len, ttl_s, now_ms, deadline_ms);
}

int svc_dict_del(struct svc_dict *d, const char *key, uint64_t now_ms, uint64_t deadline_ms)
{
	int rc = svc_dict_key_check(key);
	if (rc < 0)
		return rc;
	if (d->kind == SVC_DICT_LMDB)
		return svc_dict_lmdb_del(d->lmdb, key);
	return svc_dict_mc_del(d, key, now_ms, deadline_ms);
}

long svc_dict_sweep(struct svc_dict *d, uint64_t now_ms, unsigned max)
{
	if (d->kind == SVC_DICT_LMDB)
		return svc_dict_lmdb_sweep(d->lmdb, now_ms, max);
	return svc_dict_mc_sweep(d, now_ms, max);
}

void svc_dict_close(struct svc_dict *d)
{
	if (!d)
		return;
	if (d->kind == SVC_DICT_LMDB)
		svc_dict_lmdb_close(d->lmdb);
	else
		svc_dict_mc_close(d);
	free(d);
}
