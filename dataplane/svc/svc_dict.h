/* Dynamic state tables ("dicts") for service threads: writable entries that expire, such
 * as postscreen's temporary allowlist (postscreen_cache_map) and greylisting's triplets.
 *
 * Only service threads call these, never workers: every call may block up to its
 * deadline (an LMDB commit syncs to disk; memcached is a round trip). A handle is used by
 * one thread at a time.
 *
 * Specs (what postscreen_cache_map and friends hold):
 *   lmdb:/path/file     an LMDB file of that name (its own environment, not the table
 *                       store's; created with the ownership of its directory; kept
 *                       across restarts). The map size is SVC_DICT_LMDB_MAP_SIZE.
 *   btree:/path/file    Postfix's btree: and hash: are taken as the LMDB file
 *   hash:/path/file     "/path/file.lmdb", so a Postfix main.cf's
 *                       postscreen_cache_map = btree:$data_directory/postscreen_cache
 *                       works unchanged (the Berkeley DB file itself is not read: its
 *                       entries are a cache and start over).
 *   memcache:/path.cf   memcached as Postfix's memcache_table(5) configures it (server,
 *                       backup table, ttl, key_format, domain, limits, retries). A read
 *                       tries memcached, then the backup (a backup hit is written back to
 *                       memcached); a write or delete goes to both. When memcached is
 *                       unreachable the dict goes on with its backup alone, logs one
 *                       warning, and one info line when memcached answers again.
 * Anything else (proxy:, redis:, cdb:, ...) is refused with -EINVAL.
 *
 * Keys are NUL-terminated strings of 1..SVC_DICT_KEY_MAX bytes; values are at most
 * SVC_DICT_VALUE_MAX bytes of any content. Times: now_ms is the wall clock in
 * milliseconds since the epoch (entries outlive restarts, so their expiry is wall time);
 * deadline_ms is monotonic (mx_clock_monotonic_ms()), as a request's deadline. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_DICT_H
#define MXGATE_DATAPLANE_SVC_SVC_DICT_H

#include <stddef.h>
#include <stdint.h>

#define SVC_DICT_KEY_MAX 250      /* memcached's key limit */
#define SVC_DICT_VALUE_MAX 1024
/* The largest an LMDB dict file may grow (LMDB's map size; the file is sparse until
 * used). 64 MiB holds several hundred thousand postscreen or greylist entries. */
#define SVC_DICT_LMDB_MAP_SIZE (64u << 20)

struct svc_dict;

/* Open the dict a spec names (above). name: the parameter it comes from, for log lines
 * ("postscreen_cache_map"). 0 with *out, or a negative errno with err: -EINVAL (an
 * unsupported type or a bad memcache_table(5) file, naming the line), -ENOENT, -EACCES,
 * -ENOMEM, ... Opening a memcache: dict does not connect (the first request does). */
int svc_dict_open(const char *spec, const char *name, struct svc_dict **out, char *err,
		  size_t errlen);
/* Look key up: 0 with the value copied to val (at most cap bytes, not NUL-terminated;
 * *len is its length, which may exceed cap: then -ENOBUFS and nothing useful in val),
 * -ENOENT when absent or expired, -ETIMEDOUT, or another negative errno. */
int svc_dict_get(struct svc_dict *d, const char *key, char *val, size_t cap, size_t *len,
		 uint64_t now_ms, uint64_t deadline_ms);
/* Store key = val (len <= SVC_DICT_VALUE_MAX). ttl_s: seconds the entry lives (0: no
 * expiry). 0 or a negative errno. */
int svc_dict_put(struct svc_dict *d, const char *key, const char *val, size_t len,
		 uint32_t ttl_s, uint64_t now_ms, uint64_t deadline_ms);
/* Remove key: 0 (also when it was absent) or a negative errno. */
int svc_dict_del(struct svc_dict *d, const char *key, uint64_t now_ms, uint64_t deadline_ms);
/* Drop expired entries of a local (LMDB) dict, or of a memcache: dict's backup, at most
 * max of them; returns how many were dropped, or a negative errno (memcached expires its
 * own entries). */
long svc_dict_sweep(struct svc_dict *d, uint64_t now_ms, unsigned max);
/* NULL is a no-op. */
void svc_dict_close(struct svc_dict *d);

#endif
