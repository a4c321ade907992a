/* The policy service (svc_policy_ops, kind SVC_POLICY): one thread that talks to Postfix
 * policy servers (check_policy_service; SMTPD_POLICY_README) for the workers, over
 * persistent connections, as Postfix's attr_clnt(3) and auto_clnt(3) do for smtpd.
 *
 * A worker submits a struct svc_request of kind SVC_POLICY (svc.h) whose u.policy holds the
 * endpoint, the per-service limits (smtpd_policy_service_*) and the request already
 * encoded by smtp_delegation_request_encode(). The request comes back with status:
 *   0              the reply was read; u.policy.action holds its action (NUL-terminated,
 *                  possibly empty), to classify with smtp_delegation_action_classify();
 *   -ETIMEDOUT     the last try timed out (connect, write or read over timeout_ms), or the
 *                  request's deadline came first;
 *   -ECONNREFUSED, -ENOENT, -EHOSTUNREACH, -ENETUNREACH, -EACCES, ... connecting failed
 *                  (the errno of the last address tried);
 *   -ECONNRESET    the server closed the connection (or reset it) before its reply ended;
 *   -EPIPE         the server went away while the request was being written;
 *   -EBADMSG, -EMSGSIZE, -ENOMSG   a malformed reply (smtp_delegation_reader_feed());
 *   -EILSEQ        the action is not valid UTF-8 while smtputf8 is on (Postfix's
 *                  valid_utf8_action(); not retried, as Postfix does not retry it);
 *   -EADDRNOTAVAIL the endpoint's host or service name was not found (Postfix's
 *                  inet_connect() sets the same errno);
 *   -EINVAL        a bad endpoint or request (no tries were made);
 *   -EMFILE        more distinct endpoints than params.endpoints_max are in use;
 *   -ENOMEM        out of memory;
 *   -ECANCELED     the service stopped first.
 * Every status but 0 means "apply smtpd_policy_service_default_action" (Postfix's
 * check_policy_service() does so whenever attr_clnt_request() fails); the service has then
 * already logged Postfix's warning ("problem talking to server ..."). Failed tries (every
 * status above from connecting to -ENOMSG) are retried on a fresh connection after
 * u.policy.retry_delay_ms (params.retry_delay_ms when 0), up to u.policy.try_limit tries (0: until the deadline). One
 * exception: when a pooled connection turns out closed under a request (EOF, reset or a
 * failed write before one octet of the reply), the request is sent again at once on a new
 * connection without counting a try (a close that crossed the request in flight). */
#ifndef MXGATE_DATAPLANE_SVC_SVC_POLICY_H
#define MXGATE_DATAPLANE_SVC_SVC_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the whole service is allowed (the limits per request come with each request). */
struct svc_policy_params {
	/* Connections open to one endpoint at once: requests beyond it wait for one to be
	 * free (the protocol is one request at a time per connection). Postfix opens one per
	 * smtpd process, so up to default_process_limit (100) per server. */
	unsigned conns_per_endpoint;
	unsigned conns_max;          /* connections open at once, all endpoints together */
	unsigned endpoints_max;      /* distinct endpoints (with their limits) at once */
	/* The wait between tries of a request that does not say (its
	 * smtpd_policy_service_retry_delay, a per-service parameter, normally does; Postfix:
	 * 1s; must be > 0, as Postfix's ATTR_CLNT_CTL_TRY_DELAY requires). */
	uint32_t retry_delay_ms;
	/* smtputf8_enable: an action that is not valid UTF-8 is a failure (-EILSEQ). */
	bool smtputf8;
};

#define SVC_POLICY_CONNS_PER_ENDPOINT 16
#define SVC_POLICY_CONNS_MAX 256
#define SVC_POLICY_ENDPOINTS_MAX 64
#define SVC_POLICY_RETRY_DELAY_MS 1000

/* The defaults above, with smtputf8 on (Postfix's default). */
void svc_policy_params_init(struct svc_policy_params *p);

/* Check an endpoint as check_policy_service takes it: "inet:HOST:PORT" (also
 * "inet:[HOST]:PORT", "inet:[IPv6:ADDR]:PORT", "inet::PORT" and "inet:PORT" for
 * localhost, as Postfix's host_port()), "unix:PATH" or "local:PATH". A HOST or PORT that
 * is a name is looked up when the first connection is opened, not here. 0, or -EINVAL or
 * -ENAMETOOLONG with err ("missing service information in \"inet:host\""). */
int svc_policy_endpoint_check(const char *endpoint, char *err, size_t errlen);

#endif
