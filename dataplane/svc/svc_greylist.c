/* The greylist service thread (svc_greylist.h): check_greylist's requests decided one at a
 * time over the state store, each within its request's deadline.
 *
 * Maps are opened on first use and kept until the service stops; a spec that fails to
 * open is tried again after SVC_GREYLIST_REOPEN_MS (and its error logged at most once a
 * minute), so a bad spec costs neither a log flood nor an open per request. The message
 * instances that already got their X-Greylist header are remembered here, as postgrey
 * remembers them (its last ten). */
#include "dataplane/svc/svc_greylist.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_dict.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "tables/greylist.h"

#define SVC_GREYLIST_REOPEN_MS 10000u
#define SVC_GREYLIST_WARN_MS 60000u

void svc_greylist_params_init(struct svc_greylist_params *p)
{
	memset(p, 0, sizeof(*p));
	p->version = "unknown";
	p->sweep_interval_ms = SVC_GREYLIST_SWEEP_INTERVAL_MS;
	p->sweep_max = SVC_GREYLIST_SWEEP_MAX;
}

struct svc_greylist_map {
	char spec[SVC_ENDPOINT_MAX];
	struct svc_dict *dict;   /* NULL: the open failed */
	int open_rc;
	uint64_t retry_at;       /* monotonic: a failed open is tried again then */
	uint64_t warned_at;      /* monotonic: the last warning about this map */
};

struct svc_greylist_counters {
	atomic_uint_fast64_t requests, greylisted, passed_delayed, passed, passed_client, failed,
		timeouts, cancelled, swept;
};

struct svc_greylist_service {
	struct svc_port *port;
	char version[64];
	uint32_t sweep_interval_ms;
	unsigned sweep_max;
	pthread_t thread;
	atomic_bool stop;
	struct svc_greylist_map maps[SVC_GREYLIST_MAPS_MAX];
	unsigned nmaps;
	uint64_t next_sweep;
	struct greylist_instances instances;
	char buf[GREYLIST_REQUEST_MAX + 1];
	struct svc_greylist_counters n;
};

#define SVC_GREYLIST_ADD(s, field) \
	atomic_fetch_add_explicit(&(s)->n.field, 1, memory_order_relaxed)
#define SVC_GREYLIST_GET(s, field) \
	((uint64_t)atomic_load_explicit(&(s)->n.field, memory_order_relaxed))

/* A warning about a map, at most once a minute per map. */
static void svc_greylist_warn(struct svc_greylist_map *m, const char *what, int rc)
{
	uint64_t now = mx_clock_monotonic_ms();
	if (m->warned_at && now - m->warned_at < SVC_GREYLIST_WARN_MS)
		return;
	m->warned_at = now;
	mx_log(MX_LOG_WARNING, "greylist: %s: %s: %s", m->spec, what, strerror(-rc));
}

/* The map of spec, opened now if need be: the dict, or NULL with *rc. */
static struct svc_dict *svc_greylist_map(struct svc_greylist_service *s, const char *spec,
					 struct svc_greylist_map **mp, int *rc)
{
	uint64_t now = mx_clock_monotonic_ms();
	struct svc_greylist_map *m = NULL;
	for (unsigned i = 0; i < s->nmaps && !m; i++)
		if (strcmp(s->maps[i].spec, spec) == 0)
			m = &s->maps[i];
	if (!m) {
		if (s->nmaps == SVC_GREYLIST_MAPS_MAX || strlen(spec) >= sizeof(m->spec)) {
			*rc = s->nmaps == SVC_GREYLIST_MAPS_MAX ? -EMFILE : -EINVAL;
			return NULL;
		}
		m = &s->maps[s->nmaps++];
		snprintf(m->spec, sizeof(m->spec), "%s", spec);
	} else if (m->dict) {
		*mp = m;
		return m->dict;
	} else if (now < m->retry_at) {
		*rc = m->open_rc;
		return NULL;
	}
	*mp = m;
	char err[512];
	m->open_rc = svc_dict_open(spec, "mxgate_greylist_map", &m->dict, err, sizeof(err));
	if (m->dict) {
		mx_log(MX_LOG_INFO, "greylist: %s opened", spec);
		return m->dict;
	}
	if (!m->warned_at || now - m->warned_at >= SVC_GREYLIST_WARN_MS) {
		m->warned_at = now;
		mx_log(MX_LOG_WARNING, "greylist: %s: %s", spec, err);
	}
	m->retry_at = now + SVC_GREYLIST_REOPEN_MS;
	*rc = m->open_rc;
	return NULL;
}

/* The store greylist_answer() sees: one dict, with the request's deadline. */
struct svc_greylist_store {
	struct svc_dict *dict;
	uint64_t wall_ms, deadline_ms;
};

static int svc_greylist_get(void *ctx, const char *key, struct greylist_record *out)
{
	struct svc_greylist_store *st = ctx;
	char val[GREYLIST_RECORD_MAX];
	size_t len = 0;
	int rc = svc_dict_get(st->dict, key, val, sizeof(val), &len, st->wall_ms,
			      st->deadline_ms);
	if (rc == -ENOBUFS)
		return -ENOENT; /* not a record of ours: start over, as for garbage */
	if (rc < 0)
		return rc;
	return greylist_record_parse(val, len, out) == 0 ? 0 : -ENOENT;
}

static int svc_greylist_put(void *ctx, const char *key, const struct greylist_record *r,
			    uint32_t ttl_s)
{
	struct svc_greylist_store *st = ctx;
	char val[GREYLIST_RECORD_MAX];
	size_t len = greylist_record_format(r, val, sizeof(val));
	return svc_dict_put(st->dict, key, val, len, ttl_s, st->wall_ms, st->deadline_ms);
}

/* postgrey's date: strftime("%a, %d %b %Y %T %Z", localtime), in the C locale (mxgate
 * never sets another). */
static void svc_greylist_date(uint64_t wall_ms, char *out, size_t cap)
{
	time_t t = (time_t)(wall_ms / 1000u);
	struct tm tm;
	if (!localtime_r(&t, &tm) || strftime(out, cap, "%a, %d %b %Y %H:%M:%S %Z", &tm) == 0)
		snprintf(out, cap, "%" PRIu64, wall_ms / 1000u);
}

/* Do one request: its status (the action set on 0). */
static int svc_greylist_do(struct svc_greylist_service *s, struct svc_request *r,
			   enum greylist_verdict *v)
{
	struct svc_policy *q = &r->u.policy;
	uint64_t now = mx_clock_monotonic_ms();
	if (r->deadline_ms <= now)
		return -ETIMEDOUT;
	if (atomic_load_explicit(&r->cancelled, memory_order_relaxed))
		return -ECANCELED; /* nothing is lost: the client asks again */
	struct greylist_request g;
	if (!q->request ||
	    greylist_request_decode(q->request, q->request_len, s->buf, sizeof(s->buf), &g) < 0)
		return -EBADMSG;
	int rc = 0;
	struct svc_greylist_map *m = NULL;
	struct svc_dict *d = svc_greylist_map(s, g.map, &m, &rc);
	if (!d)
		return rc;
	struct svc_greylist_store st = { .dict = d, .wall_ms = mx_clock_wall_us() / 1000u,
					 .deadline_ms = r->deadline_ms };
	const struct greylist_store store = { .get = svc_greylist_get, .put = svc_greylist_put,
					      .ctx = &st };
	char date[80], action[GREYLIST_ACTION_MAX];
	svc_greylist_date(st.wall_ms, date, sizeof(date));
	rc = greylist_answer(&g, (int64_t)(st.wall_ms / 1000u), s->version, date, &s->instances,
			     &store, v, action, sizeof(action));
	if (rc < 0) {
		if (rc != -ETIMEDOUT)
			svc_greylist_warn(m, "cannot read or write the greylist", rc);
		return rc;
	}
	free(q->action);
	if (!(q->action = strdup(action)))
		return -ENOMEM;
	return 0;
}

static void svc_greylist_answer(struct svc_greylist_service *s, struct svc_request *r)
{
	SVC_GREYLIST_ADD(s, requests);
	enum greylist_verdict v = GREYLIST_PASS;
	int rc = svc_greylist_do(s, r, &v);
	r->status = rc;
	if (rc == 0) {
		switch (v) {
		case GREYLIST_DEFER:
			SVC_GREYLIST_ADD(s, greylisted);
			break;
		case GREYLIST_PASS_DELAYED:
			SVC_GREYLIST_ADD(s, passed_delayed);
			break;
		case GREYLIST_PASS_CLIENT:
			SVC_GREYLIST_ADD(s, passed_client);
			break;
		case GREYLIST_PASS:
		case GREYLIST_VERDICT_MAX:
			SVC_GREYLIST_ADD(s, passed);
			break;
		}
	} else if (rc == -ETIMEDOUT) {
		SVC_GREYLIST_ADD(s, timeouts);
	} else if (rc == -ECANCELED) {
		SVC_GREYLIST_ADD(s, cancelled);
	} else {
		SVC_GREYLIST_ADD(s, failed);
	}
	svc_port_complete(s->port, r);
}

/* Drop expired entries of every open map, a bounded number each (postgrey's nightly
 * maintenance, spread out). */
static void svc_greylist_sweep(struct svc_greylist_service *s)
{
	uint64_t wall = mx_clock_wall_us() / 1000u;
	for (unsigned i = 0; i < s->nmaps; i++) {
		struct svc_greylist_map *m = &s->maps[i];
		if (!m->dict)
			continue;
		long n = svc_dict_sweep(m->dict, wall, s->sweep_max);
		if (n > 0)
			atomic_fetch_add_explicit(&s->n.swept, (uint64_t)n, memory_order_relaxed);
		else if (n < 0)
			svc_greylist_warn(m, "sweep failed", (int)n);
	}
}

static void *svc_greylist_main(void *arg)
{
	struct svc_greylist_service *s = arg;
	int wake = svc_port_wake_fd(s->port);
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		int timeout = -1;
		if (s->sweep_interval_ms) {
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
			svc_greylist_answer(s, r);
			svc_port_flush(s->port);
		}
		if (s->sweep_interval_ms && mx_clock_monotonic_ms() >= s->next_sweep) {
			svc_greylist_sweep(s);
			s->next_sweep = mx_clock_monotonic_ms() + s->sweep_interval_ms;
		}
	}
	struct svc_request *r;
	while ((r = svc_port_take(s->port))) {
		SVC_GREYLIST_ADD(s, requests);
		SVC_GREYLIST_ADD(s, cancelled);
		r->status = -ECANCELED;
		svc_port_complete(s->port, r);
	}
	svc_port_flush(s->port);
	return NULL;
}

/* ---- svc_ops ---- */

static void svc_greylist_free(struct svc_greylist_service *s)
{
	for (unsigned i = 0; i < s->nmaps; i++)
		svc_dict_close(s->maps[i].dict);
	free(s);
}

static int svc_greylist_start(void **impl, struct svc_port *port, const void *params,
			      char *err, size_t errlen)
{
	struct svc_greylist_params defaults;
	const struct svc_greylist_params *pp = params;
	if (!pp) {
		svc_greylist_params_init(&defaults);
		pp = &defaults;
	}
	if (pp->sweep_interval_ms && !pp->sweep_max)
		return mx_errf(err, errlen, -EINVAL, "sweep_max must be > 0 when sweeping");
	struct svc_greylist_service *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	s->port = port;
	snprintf(s->version, sizeof(s->version), "%s", pp->version ? pp->version : "unknown");
	s->sweep_interval_ms = pp->sweep_interval_ms;
	s->sweep_max = pp->sweep_max;
	atomic_init(&s->stop, false);
	greylist_instances_init(&s->instances);
	s->next_sweep = mx_clock_monotonic_ms() + pp->sweep_interval_ms;
	int rc = svc_thread_start(&s->thread, svc_greylist_main, s, "mx-greylist", err, errlen);
	if (rc < 0) {
		svc_greylist_free(s);
		return rc;
	}
	*impl = s;
	return 0;
}

static void svc_greylist_stop(void *impl)
{
	struct svc_greylist_service *s = impl;
	svc_thread_stop(s->thread, &s->stop, s->port);
	svc_greylist_free(s);
}

static void svc_greylist_log_statistics(void *impl, const char *when)
{
	struct svc_greylist_service *s = impl;
	mx_log(MX_LOG_INFO,
	       "greylist statistics (%s): requests=%" PRIu64 " greylisted=%" PRIu64
	       " passed_delayed=%" PRIu64 " passed=%" PRIu64 " passed_client_awl=%" PRIu64
	       " failed=%" PRIu64 " timeouts=%" PRIu64 " cancelled=%" PRIu64 " swept=%" PRIu64,
	       when, SVC_GREYLIST_GET(s, requests), SVC_GREYLIST_GET(s, greylisted),
	       SVC_GREYLIST_GET(s, passed_delayed), SVC_GREYLIST_GET(s, passed),
	       SVC_GREYLIST_GET(s, passed_client), SVC_GREYLIST_GET(s, failed),
	       SVC_GREYLIST_GET(s, timeouts), SVC_GREYLIST_GET(s, cancelled),
	       SVC_GREYLIST_GET(s, swept));
}

const struct svc_ops svc_greylist_ops = {
	.kind = SVC_GREYLIST,
	.start = svc_greylist_start,
	.stop = svc_greylist_stop,
	.log_statistics = svc_greylist_log_statistics,
};
