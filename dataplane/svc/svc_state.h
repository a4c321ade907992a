/* The state service (svc_state_ops, kind SVC_STATE): one thread that reads and writes
 * dynamic state tables (svc_dict.h: LMDB files, memcached) for the workers, which never
 * block on them. Postscreen's cache and greylisting's triplets go through it.
 *
 * A worker submits a struct svc_request of kind SVC_STATE (svc.h) whose u.state holds
 * the map's spec ("btree:/var/lib/mxgate/postscreen_cache", "memcache:/etc/mxgate/x.cf"),
 * the operation, the key and, for a PUT, the value (heap, owned by the request) and its
 * ttl. The thread opens each spec the first time a request names it and keeps it open
 * (at most params.maps_max specs). The request comes back with status:
 *   0              done; for a GET, u.state.value holds the value (heap, owned by the
 *                  request, NUL-terminated after value_len bytes);
 *   -ENOENT        GET: no such key, or it expired;
 *   -ETIMEDOUT     the request's deadline came first;
 *   -EINVAL        a bad spec, key or value (the spec's error is logged once);
 *   -EMFILE        more distinct specs than params.maps_max;
 *   -ECANCELED     the service stopped first;
 *   or another negative errno from the dict (-EIO, -ENOSPC, -ENOMEM, ...).
 * Every sweep_interval_ms the thread drops expired entries of its local dicts, at most
 * sweep_max per dict each time (postscreen_cache_cleanup_interval). */
#ifndef MXGATE_DATAPLANE_SVC_SVC_STATE_H
#define MXGATE_DATAPLANE_SVC_SVC_STATE_H

#include <stdint.h>

struct svc_state_params {
	unsigned maps_max;            /* distinct specs open at once */
	uint32_t sweep_interval_ms;   /* 0: never sweep */
	unsigned sweep_max;           /* entries dropped per dict and sweep */
};

#define SVC_STATE_MAPS_MAX 16
#define SVC_STATE_SWEEP_INTERVAL_MS (60u * 1000u)
#define SVC_STATE_SWEEP_MAX 1000

/* The defaults above. */
void svc_state_params_init(struct svc_state_params *p);

#endif
