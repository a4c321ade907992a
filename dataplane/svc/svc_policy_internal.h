/* Inside the policy service: endpoints parsed into socket addresses, and the name lookups
 * that must not hold up the service thread (svc_policy_endpoint.c), for svc_policy.c. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_POLICY_INTERNAL_H
#define MXGATE_DATAPLANE_SVC_SVC_POLICY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "dataplane/svc/svc.h"

#define SVC_POLICY_ADDRS_MAX 8   /* addresses of one name tried in turn (inet_connect()) */
#define SVC_POLICY_HOST_MAX 255  /* a host name or address, as Postfix's valid_hostname() */

enum svc_policy_transport {
	SVC_POLICY_INET,   /* TCP */
	SVC_POLICY_UNIX,   /* a UNIX-domain stream socket ("unix:" and "local:") */
	SVC_POLICY_TRANSPORT_MAX
};

struct svc_policy_addrs {
	unsigned n;
	struct sockaddr_storage addr[SVC_POLICY_ADDRS_MAX];
	socklen_t len[SVC_POLICY_ADDRS_MAX];
};

/* An endpoint, parsed. */
struct svc_policy_target {
	enum svc_policy_transport transport;
	/* true when addrs are known without a lookup: a UNIX path, or a numeric address
	 * and port; otherwise host and port go to getaddrinfo() */
	bool numeric;
	char host[SVC_POLICY_HOST_MAX + 1];
	char port[SVC_ENDPOINT_MAX];
	struct svc_policy_addrs addrs;
	/* the endpoint without its "inet:"/"unix:" prefix, as Postfix's auto_clnt_name()
	 * names it in warnings ("connect to 127.0.0.1:10023: Connection refused") */
	char name[SVC_ENDPOINT_MAX];
};

/* Parse an endpoint (svc_policy_endpoint_check() says what is accepted). 0, or -EINVAL
 * or -ENAMETOOLONG with err. */
int svc_policy_target_parse(const char *endpoint, struct svc_policy_target *t, char *err,
			    size_t errlen);

/* ---- the service's state machines (svc_policy.c) ---- */

enum svc_policy_job_state {
	SVC_POLICY_JOB_QUEUED,   /* waiting for a connection (or the endpoint's addresses) */
	SVC_POLICY_JOB_ACTIVE,   /* a try on a connection */
	SVC_POLICY_JOB_DELAYED,  /* waiting out the retry delay */
	SVC_POLICY_JOB_STATE_MAX
};

enum svc_policy_conn_state {
	SVC_POLICY_CONN_CONNECTING,
	SVC_POLICY_CONN_SENDING,
	SVC_POLICY_CONN_READING,
	SVC_POLICY_CONN_IDLE,
	SVC_POLICY_CONN_CLOSED,  /* in the graveyard until the iteration ends */
	SVC_POLICY_CONN_STATE_MAX
};

const char *svc_policy_job_state_name(enum svc_policy_job_state s);
const char *svc_policy_conn_state_name(enum svc_policy_conn_state s);

/* ---- name lookups ----
 * getaddrinfo() blocks (on /etc/hosts, or for seconds on a DNS server that does not
 * answer), and the service thread must answer every request by its deadline, so each
 * lookup runs on a short-lived thread of its own and comes back through the hub: a list
 * of finished lookups and an eventfd the service polls. The hub is shared by the service
 * and its running lookups and freed by the last of them, so a stop never waits for a
 * lookup that hangs. Lookups are rare: one per endpoint when it is first used and then
 * at most once a minute (SVC_POLICY_RESOLVE_TTL_MS in svc_policy.c). */

struct svc_policy_hub;

struct svc_policy_lookup_result {
	void *cookie;                 /* as given to svc_policy_hub_lookup() */
	int error;                    /* 0, or -EADDRNOTAVAIL / -ENOMEM */
	char why[128];                /* the error, as gai_strerror() says it */
	struct svc_policy_addrs addrs;
};

/* 0 or a negative errno. */
int svc_policy_hub_new(struct svc_policy_hub **out);
/* Readable when lookups finished (EFD_NONBLOCK; svc_policy_hub_next() clears it). */
int svc_policy_hub_fd(const struct svc_policy_hub *h);
/* Look up host and port (TCP) on a thread of its own; cookie comes back with the result.
 * 0, or a negative errno (no thread could be started: nothing will come back). */
int svc_policy_hub_lookup(struct svc_policy_hub *h, const char *host, const char *port,
			  void *cookie);
/* The next finished lookup into *out: true, or false when there is none. */
bool svc_policy_hub_next(struct svc_policy_hub *h, struct svc_policy_lookup_result *out);
/* The service lets go of the hub; lookups still running free it when they end (their
 * results are dropped). */
void svc_policy_hub_release(struct svc_policy_hub *h);

#endif
