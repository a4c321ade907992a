/* The state service thread (svc_state.h): the workers' reads and writes of dynamic state
 * tables, done one at a time on this thread, each by its request's deadline.
 *
 * A request is done at once when taken: the dicts' calls block (an LMDB commit, a
 * memcached round trip) up to the request's deadline, and those behind it wait; one whose
 * deadline passed while it waited is answered -ETIMEDOUT without being tried. A GET whose
 * worker cancelled it is answered -ECANCELED untried; a PUT or DEL is done anyway (the
 * state should not depend on whether a client stayed).
 *
 * Maps are opened on first use and kept until the service stops. A spec that fails to
 * open is remembered with its error (logged once) and tried again after
 * SVC_STATE_REOPEN_MS, so a bad spec costs neither a log flood nor an open per request. */
#include "dataplane/svc/svc_state.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_dict.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"

#define SVC_STATE_REOPEN_MS 10000u   /* a spec that failed to open is tried again */
#define SVC_STATE_MAPS_LIMIT 1024    /* params.maps_max at most */

void svc_state_params_init(struct svc_state_params *p)
{
	memset(p, 0, sizeof(*p));
	p->maps_max = SVC_STATE_MAPS_MAX;
	p->sweep_interval_ms = SVC_STATE_SWEEP_INTERVAL_MS;
	p->sweep_max = SVC_STATE_SWEEP_MAX;
}

struct svc_state_map {
	char spec[SVC_ENDPOINT_MAX];
	struct svc_dict *dict;      /* NULL: the open failed */
	int open_rc;
	uint64_t retry_at;          /* monotonic: when a failed open is tried again */
};

/* Counters: written by the service thread, read by log_statistics() from another. */
struct svc_state_counters {
	atomic_uint_fast64_t requests, hits, misses, puts, dels, failed, timeouts, cancelled,
		swept;
};

struct svc_state_service {
	struct svc_port *port;
	struct svc_state_params params;
	pthread_t thread;
	atomic_bool stop;
	struct svc_state_map *maps;   /* [params.maps_max] */
	unsigned nmaps;
	uint64_t next_sweep;          /* monotonic */
	char *buf;                    /* [SVC_DICT_VALUE_MAX + 1]: a GET's value */
	struct svc_state_counters n;
};

#define SVC_STATE_ADD(s, field) \
	atomic_fetch_add_explicit(&(s)->n.field, 1, memory_order_relaxed)
#define SVC_STATE_GET(s, field) \
	((uint64_t)atomic_load_explicit(&(s)->n.field, memory_order_relaxed))

/* The map of spec, opened now if need be: the dict, or NULL with *rc. */
static struct svc_dict *svc_state_map(struct svc_state_service *s, const char *spec,
				      uint64_t now, int *rc)
{
	for (unsigned i = 0; i < s->nmaps; i++) {
		struct svc_state_map *m = &s->maps[i];
		if (strcmp(m->spec, spec) != 0)
			continue;
		if (m->dict)
			return m->dict;
		if (now < m->retry_at) {
			*rc = m->open_rc;
			return NULL;
		}
		char err[512];
		m->open_rc = svc_dict_open(spec, "state", &m->dict, err, sizeof(err));
		if (m->dict) {
			mx_log(MX_LOG_INFO, "state service: %s opened", spec);
			return m->dict;
		}
		m->retry_at = now + SVC_STATE_REOPEN_MS;
		*rc = m->open_rc;
		return NULL;
	}
	if (s->nmaps == s->params.maps_max) {
		*rc = -EMFILE;
		return NULL;
	}
	struct svc_state_map *m = &s->maps[s->nmaps++];
	snprintf(m->spec, sizeof(m->spec), "%s", spec);
	char err[512];
	m->open_rc = svc_dict_open(spec, "state", &m->dict, err, sizeof(err));
	if (m->dict)
		return m->dict;
	mx_log(MX_LOG_WARNING, "state service: %s", err);
	m->retry_at = now + SVC_STATE_REOPEN_MS;
	*rc = m->open_rc;
	return NULL;
}

/* Do one request: its status. */
static int svc_state_do(struct svc_state_service *s, struct svc_request *r, uint64_t now)
{
	struct svc_state *q = &r->u.state;
	if (r->deadline_ms <= now)
		return -ETIMEDOUT;
	if (q->op == SVC_STATE_GET &&
	    atomic_load_explicit(&r->cancelled, memory_order_relaxed))
		return -ECANCELED;
	if ((unsigned)q->op >= SVC_STATE_OP_MAX ||
	    !memchr(q->map, '\0', sizeof(q->map)) || !q->map[0] ||
	    !memchr(q->key, '\0', sizeof(q->key)) || !q->key[0])
		return -EINVAL;
	if (q->op == SVC_STATE_PUT &&
	    (q->value_len > SVC_DICT_VALUE_MAX || (q->value_len && !q->value)))
		return -EINVAL;
	int rc = 0;
	struct svc_dict *d = svc_state_map(s, q->map, now, &rc);
	if (!d)
		return rc;
	uint64_t wall = mx_clock_wall_us() / 1000u;
	switch (q->op) {
	case SVC_STATE_GET: {
		free(q->value);
		q->value = NULL;
		q->value_len = 0;
		size_t len = 0;
		rc = svc_dict_get(d, q->key, s->buf, SVC_DICT_VALUE_MAX, &len, wall,
				  r->deadline_ms);
		if (rc == 0) {
			q->value = malloc(len + 1);
			if (!q->value)
				return -ENOMEM;
			memcpy(q->value, s->buf, len);
			q->value[len] = '\0';
			q->value_len = len;
		} else if (rc == -ENOBUFS) {
			rc = -EMSGSIZE; /* another writer's value, over SVC_DICT_VALUE_MAX */
		}
		return rc;
	}
	case SVC_STATE_PUT:
		return svc_dict_put(d, q->key, q->value ? q->value : "", q->value_len, q->ttl_s,
				    wall, r->deadline_ms);
	case SVC_STATE_DEL:
		return svc_dict_del(d, q->key, wall, r->deadline_ms);
	case SVC_STATE_OP_MAX:
		break;
	}
	return -EINVAL;
}

static void svc_state_answer(struct svc_state_service *s, struct svc_request *r)
{
	SVC_STATE_ADD(s, requests);
	int rc = svc_state_do(s, r, mx_clock_monotonic_ms());
	r->status = rc;
	if (rc == 0 && r->u.state.op == SVC_STATE_GET)
		SVC_STATE_ADD(s, hits);
	else if (rc == -ENOENT)
		SVC_STATE_ADD(s, misses);
	else if (rc == 0 && r->u.state.op == SVC_STATE_PUT)
		SVC_STATE_ADD(s, puts);
	else if (rc == 0)
		SVC_STATE_ADD(s, dels);
	else if (rc == -ETIMEDOUT)
		SVC_STATE_ADD(s, timeouts);
	else if (rc == -ECANCELED)
		SVC_STATE_ADD(s, cancelled);
	else
		SVC_STATE_ADD(s, failed);
	svc_port_complete(s->port, r);
}

/* Drop expired entries of every open map, a bounded number each. */
static void svc_state_sweep(struct svc_state_service *s)
{
	uint64_t wall = mx_clock_wall_us() / 1000u;
	for (unsigned i = 0; i < s->nmaps; i++) {
		struct svc_state_map *m = &s->maps[i];
		if (!m->dict)
			continue;
		long n = svc_dict_sweep(m->dict, wall, s->params.sweep_max);
		if (n > 0) {
			atomic_fetch_add_explicit(&s->n.swept, (uint64_t)n, memory_order_relaxed);
			mx_log(MX_LOG_INFO, "state service: %s: dropped %ld expired entries",
			       m->spec, n);
		} else if (n < 0) {
			mx_log(MX_LOG_WARNING, "state service: %s: sweep failed: %s", m->spec,
			       strerror((int)-n));
		}
	}
}

static void *svc_state_main(void *arg)
{
	struct svc_state_service *s = arg;
	int wake = svc_port_wake_fd(s->port);
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		int timeout = -1;
		if (s->params.sweep_interval_ms) {
			uint64_t now = mx_clock_monotonic_ms();
			timeout = now >= s->next_sweep ? 0 : (int)(s->next_sweep - now);
		}
		struct pollfd p = { .fd = wake, .events = POLLIN };
		poll(&p, 1, timeout);
		uint64_t v;
		ssize_t k = read(wake, &v, sizeof(v));
		(void)k;
		struct svc_request *r;
		while (!atomic_load_explicit(&s->stop, memory_order_acquire) &&
		       (r = svc_port_take(s->port))) {
			svc_state_answer(s, r);
			/* answers go out as they are done: one slow map does not hold the
			 * others' answers back */
			svc_port_flush(s->port);
		}
		if (s->params.sweep_interval_ms && mx_clock_monotonic_ms() >= s->next_sweep) {
			svc_state_sweep(s);
			s->next_sweep = mx_clock_monotonic_ms() + s->params.sweep_interval_ms;
		}
	}
	struct svc_request *r;
	while ((r = svc_port_take(s->port))) {
		SVC_STATE_ADD(s, requests);
		SVC_STATE_ADD(s, cancelled);
		r->status = -ECANCELED;
		svc_port_complete(s->port, r);
	}
	svc_port_flush(s->port);
	return NULL;
}

/* ---- svc_ops ---- */

static void svc_state_free(struct svc_state_service *s)
{
	for (unsigned i = 0; s->maps && i < s->nmaps; i++)
		svc_dict_close(s->maps[i].dict);
	free(s->maps);
	free(s->buf);
	free(s);
}

static int svc_state_start(void **impl, struct svc_port *port, const void *params, char *err,
			   size_t errlen)
{
	struct svc_state_params defaults;
	const struct svc_state_params *pp = params;
	if (!pp) {
		svc_state_params_init(&defaults);
		pp = &defaults;
	}
	if (!pp->maps_max || pp->maps_max > SVC_STATE_MAPS_LIMIT)
		return mx_errf(err, errlen, -EINVAL, "maps_max must be 1..%u",
			       SVC_STATE_MAPS_LIMIT);
	if (pp->sweep_interval_ms && !pp->sweep_max)
		return mx_errf(err, errlen, -EINVAL, "sweep_max must be > 0 when sweeping");
	struct svc_state_service *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	s->port = port;
	s->params = *pp;
	atomic_init(&s->stop, false);
	s->maps = calloc(pp->maps_max, sizeof(*s->maps));
	s->buf = malloc(SVC_DICT_VALUE_MAX + 1);
	if (!s->maps || !s->buf) {
		svc_state_free(s);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	s->next_sweep = mx_clock_monotonic_ms() + pp->sweep_interval_ms;
	int rc = svc_thread_start(&s->thread, svc_state_main, s, "mx-state", err, errlen);
	if (rc < 0) {
		svc_state_free(s);
		return rc;
	}
	*impl = s;
	return 0;
}

static void svc_state_stop(void *impl)
{
	struct svc_state_service *s = impl;
	svc_thread_stop(s->thread, &s->stop, s->port);
	svc_state_free(s);
}

static void svc_state_log_statistics(void *impl, const char *when)
{
	struct svc_state_service *s = impl;
	mx_log(MX_LOG_INFO,
	       "state statistics (%s): requests=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64
	       " puts=%" PRIu64 " dels=%" PRIu64 " failed=%" PRIu64 " timeouts=%" PRIu64
	       " cancelled=%" PRIu64 " swept=%" PRIu64,
	       when, SVC_STATE_GET(s, requests), SVC_STATE_GET(s, hits), SVC_STATE_GET(s, misses),
	       SVC_STATE_GET(s, puts), SVC_STATE_GET(s, dels), SVC_STATE_GET(s, failed),
	       SVC_STATE_GET(s, timeouts), SVC_STATE_GET(s, cancelled), SVC_STATE_GET(s, swept));
}

const struct svc_ops svc_state_ops = {
	.kind = SVC_STATE,
	.start = svc_state_start,
	.stop = svc_state_stop,
	.log_statistics = svc_state_log_statistics,
};
