/* The greylist service (svc_greylist_ops, kind SVC_GREYLIST): one thread that decides
 * check_greylist's requests with postgrey's semantics (tables/greylist.h) over the state
 * store (svc_dict.h: an LMDB file of this gateway, or memcached shared by several).
 *
 * A worker submits a struct svc_request of kind SVC_GREYLIST whose u.policy.request holds
 * a request encoded by greylist_request_encode(): the map's spec, the keys, the recipient,
 * the message instance and every greylisting parameter, so a reload's new values apply to
 * the next request without telling the service. (u.policy.endpoint and the limits are not
 * used.) For each request the thread reads the client's auto-allowlist record and the
 * triplet's record, decides, writes them back, and answers, as postgrey answers a policy
 * query, with status:
 *   0              u.policy.action holds the action ("DEFER_IF_PERMIT 4.2.0 Greylisted,
 *                  ...", "PREPEND X-Greylist: ...", "DUNNO"), to apply as a policy
 *                  server's reply;
 *   -ETIMEDOUT     the request's deadline passed (before it was begun, or in the store);
 *   -EBADMSG       a malformed request;
 *   -ECANCELED     the worker gave up before it was begun, or the service stopped;
 *   -EMFILE        more distinct map specs than SVC_GREYLIST_MAPS_MAX;
 *   or the store's negative errno (-EINVAL for a bad spec, -EIO, -ENOSPC, ...).
 * Every status but 0 means "apply the greylist's default action"; the service has logged
 * why (once a minute per map at most).
 *
 * One thread, so each triplet's read-decide-write is never interleaved with another
 * request's within this gateway; between gateways sharing memcached two first attempts
 * may race, and the later write wins (both are deferred, as postgrey would defer both). */
#ifndef MXGATE_DATAPLANE_SVC_SVC_GREYLIST_H
#define MXGATE_DATAPLANE_SVC_SVC_GREYLIST_H

#include <stdint.h>

#define SVC_GREYLIST_MAPS_MAX 8
#define SVC_GREYLIST_SWEEP_INTERVAL_MS (60u * 1000u)
#define SVC_GREYLIST_SWEEP_MAX 1000

struct svc_greylist_params {
	const char *version;          /* the header's %v (the gateway's version); copied */
	uint32_t sweep_interval_ms;   /* expired local entries dropped this often (0: never) */
	unsigned sweep_max;           /* ... at most this many per map each time */
};

void svc_greylist_params_init(struct svc_greylist_params *p);

#endif
