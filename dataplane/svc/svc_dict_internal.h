/* Inside the dicts (svc_dict.h): the LMDB backend (svc_dict_lmdb.c) and the memcache
 * backend (svc_dict_memcache.c), for svc_dict.c. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_DICT_INTERNAL_H
#define MXGATE_DATAPLANE_SVC_SVC_DICT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/svc/svc_dict.h"

#define SVC_DICT_NAME_MAX 127     /* the parameter's name, for log lines */
#define SVC_DICT_SPEC_MAX 1023    /* "type:/path" */

enum svc_dict_kind {
	SVC_DICT_LMDB,       /* lmdb:, btree:, hash: */
	SVC_DICT_MEMCACHE,   /* memcache: */
	SVC_DICT_KIND_MAX
};

const char *svc_dict_kind_name(enum svc_dict_kind k);

struct svc_dict_lmdb;
struct svc_dict_mc;

struct svc_dict {
	enum svc_dict_kind kind;
	char name[SVC_DICT_NAME_MAX + 1];
	char spec[SVC_DICT_SPEC_MAX + 1];
	struct svc_dict_lmdb *lmdb;   /* SVC_DICT_LMDB */
	struct svc_dict_mc *mc;       /* SVC_DICT_MEMCACHE */
};

/* ---- LMDB (svc_dict_lmdb.c) ----
 * An entry's value is its expiry (wall ms since the epoch, 0: never; 8 bytes, big-endian)
 * then the value's bytes. Expired entries read as absent until a sweep drops them. */

/* Open (or create, mode 0640, owned as its directory) the LMDB file path. 0 or a
 * negative errno with err. The same file opened twice in the process shares one LMDB
 * environment (LMDB's locks are per process). */
int svc_dict_lmdb_open(const char *path, struct svc_dict_lmdb **out, char *err, size_t errlen);
/* 0 with the value (and *expires_ms, 0: never), -ENOENT (absent or expired), -ENOBUFS
 * (*len larger than cap), or a negative errno. */
int svc_dict_lmdb_get(struct svc_dict_lmdb *l, const char *key, char *val, size_t cap,
		      size_t *len, uint64_t *expires_ms, uint64_t now_ms);
/* expires_ms: wall ms, 0: never. */
int svc_dict_lmdb_put(struct svc_dict_lmdb *l, const char *key, const char *val, size_t len,
		      uint64_t expires_ms);
int svc_dict_lmdb_del(struct svc_dict_lmdb *l, const char *key);
long svc_dict_lmdb_sweep(struct svc_dict_lmdb *l, uint64_t now_ms, unsigned max);
void svc_dict_lmdb_close(struct svc_dict_lmdb *l);

/* ---- memcache (svc_dict_memcache.c) ---- */

struct memcache_conf;
struct svc_policy_target;
/* Read and parse the memcache_table(5) file path into conf (also for svc_anvil.c). 0 or a
 * negative errno with err naming the file (and line). */
/* Wait for events on fd until the monotonic time until: 0, -ETIMEDOUT or -errno. */
int svc_dict_mc_wait(int fd, short events, uint64_t until);
/* A non-blocking TCP connection to the memcached server target (its addresses, or its name
 * resolved now), each address in turn, by the monotonic time until: the socket, or the last
 * address's -errno. Also the shared anvil counts' (svc_anvil.c). */
int svc_dict_mc_dial(const struct svc_policy_target *target, uint64_t until);
/* Send all n bytes of p on the non-blocking fd by until: 0, -ETIMEDOUT or -errno. */
int svc_dict_mc_send_all(int fd, const char *p, size_t n, uint64_t until);
int svc_dict_mc_read_file(const char *path, struct memcache_conf *conf, char *err,
			  size_t errlen);
/* Read the memcache_table(5) file path and open its backup. d->name and d->spec are set.
 * 0 or a negative errno with err. */
int svc_dict_mc_open(struct svc_dict *d, const char *path, char *err, size_t errlen);
int svc_dict_mc_get(struct svc_dict *d, const char *key, char *val, size_t cap, size_t *len,
		    uint64_t now_ms, uint64_t deadline_ms);
int svc_dict_mc_put(struct svc_dict *d, const char *key, const char *val, size_t len,
		    uint32_t ttl_s, uint64_t now_ms, uint64_t deadline_ms);
int svc_dict_mc_del(struct svc_dict *d, const char *key, uint64_t now_ms, uint64_t deadline_ms);
long svc_dict_mc_sweep(struct svc_dict *d, uint64_t now_ms, unsigned max);
void svc_dict_mc_close(struct svc_dict *d);

/* The expiry (wall ms) of an entry put at now_ms for ttl_s seconds (0: never). */
static inline uint64_t svc_dict_expiry(uint64_t now_ms, uint32_t ttl_s)
{
	return ttl_s ? now_ms + (uint64_t)ttl_s * 1000u : 0;
}

#endif
