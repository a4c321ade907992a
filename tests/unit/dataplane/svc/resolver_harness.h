/* A worker's view of the resolver service for tests and the benchmark: a service set with
 * the resolver alone, one client (worker 0) with its wake eventfd, requests submitted and
 * their answers collected in arrival order. Header-only: static functions, rh_ prefix. */
#ifndef MXGATE_TESTS_RESOLVER_HARNESS_H
#define MXGATE_TESTS_RESOLVER_HARNESS_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_resolver.h"
#include "mxgate/clock.h"

#define RH_ANSWERS_MAX 20000

struct rh {
	struct svc_set *set;
	struct svc_client *c;
	int wake;
	const void *handle;
	struct svc_request *answers[RH_ANSWERS_MAX];
	unsigned nanswers; /* collected, not yet taken */
	unsigned taken;
};

static inline void rh_collect(void *arg, struct svc_request *r)
{
	struct rh *h = arg;
	if (h->nanswers < RH_ANSWERS_MAX)
		h->answers[h->nanswers++] = r;
	else
		svc_request_free(r);
}

/* Start the resolver with p (p->handle is set to the harness's). 0 or -errno. */
static inline int rh_start(struct rh *h, struct svc_resolver_params *p)
{
	char err[256];
	memset(h, 0, sizeof(*h));
	p->handle = &h->handle;
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_DNS] = &svc_resolver_ops },
				     .params = { [SVC_DNS] = p } };
	int rc = svc_set_start(&h->set, &sp, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "rh_start: %s\n", err);
		return rc;
	}
	h->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->c = svc_client_new(h->set, 0, h->wake);
	return h->c ? 0 : -ENOMEM;
}

/* Submit a question; deadline_rel_ms 0: no deadline. Not flushed (rh_flush). */
static inline struct svc_request *rh_submit(struct rh *h, enum dns_type type, const char *name,
				     uint64_t deadline_rel_ms)
{
	struct svc_request *r = svc_request_new(SVC_DNS);
	if (!r)
		return NULL;
	r->u.dns.type = type;
	snprintf(r->u.dns.name, sizeof(r->u.dns.name), "%s", name);
	r->deadline_ms = deadline_rel_ms ? mx_clock_monotonic_ms() + deadline_rel_ms : 0;
	r->owner = r;
	if (svc_submit(h->c, r) != 0) {
		svc_request_free(r);
		return NULL;
	}
	return r;
}

static inline void rh_flush(struct rh *h)
{
	svc_client_flush(h->c);
}

/* Wait until n answers were collected in all (or timeout_ms). Returns the count. */
static inline unsigned rh_wait(struct rh *h, unsigned n, uint64_t timeout_ms)
{
	uint64_t end = mx_clock_monotonic_ms() + timeout_ms;
	while (h->nanswers < n) {
		svc_client_poll(h->c, rh_collect, h);
		if (h->nanswers >= n)
			break;
		uint64_t now = mx_clock_monotonic_ms();
		if (now >= end)
			break;
		struct pollfd pf = { .fd = h->wake, .events = POLLIN };
		poll(&pf, 1, (int)(end - now > 100 ? 100 : end - now));
		uint64_t v;
		ssize_t k = read(h->wake, &v, sizeof(v));
		(void)k;
	}
	return h->nanswers;
}

/* The next answer in arrival order (the caller frees it), or NULL after timeout_ms. */
static inline struct svc_request *rh_next(struct rh *h, uint64_t timeout_ms)
{
	if (rh_wait(h, h->taken + 1, timeout_ms) <= h->taken)
		return NULL;
	return h->answers[h->taken++];
}

/* Ask and wait for the answer (the caller frees it). */
static inline struct svc_request *rh_ask(struct rh *h, enum dns_type type, const char *name,
				  uint64_t deadline_rel_ms)
{
	if (!rh_submit(h, type, name, deadline_rel_ms))
		return NULL;
	rh_flush(h);
	return rh_next(h, deadline_rel_ms ? deadline_rel_ms + 5000 : 30000);
}

static inline void rh_stats(struct rh *h, struct svc_resolver_stats *st)
{
	svc_resolver_statistics(h->handle, st);
}

/* Stop the set (answers still in flight come back), then free what came back. */
static inline void rh_stop(struct rh *h)
{
	svc_set_stop(h->set);
	svc_client_poll(h->c, rh_collect, h);
	for (unsigned i = h->taken; i < h->nanswers; i++)
		svc_request_free(h->answers[i]);
	svc_client_free(h->c);
	svc_set_free(h->set);
	close(h->wake);
}

#endif
