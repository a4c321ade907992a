/* The queues between workers and service threads (svc.h): one single-producer
 * single-consumer ring each way for every worker and service. */
#include "dataplane/svc/svc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mxgate/clock.h"
#include "mgmt/log.h"
#include "mxgate/errf.h"

const char *svc_kind_name(enum svc_kind k)
{
	static const char *const names[SVC_KIND_MAX] = {
		[SVC_DNS] = "resolver",
		[SVC_POLICY] = "policy",
		[SVC_STATE] = "state",
		[SVC_SASL] = "sasl",
		[SVC_GREYLIST] = "greylist",
	};
	return (unsigned)k < SVC_KIND_MAX ? names[k] : "?";
}

const char *svc_state_op_name(enum svc_state_op op)
{
	static const char *const names[SVC_STATE_OP_MAX] = {
		[SVC_STATE_GET] = "get",
		[SVC_STATE_PUT] = "put",
		[SVC_STATE_DEL] = "del",
	};
	return (unsigned)op < SVC_STATE_OP_MAX ? names[op] : "?";
}

const char *svc_sasl_op_name(enum svc_sasl_op op)
{
	static const char *const names[SVC_SASL_OP_MAX] = {
		[SVC_SASL_START] = "start",
		[SVC_SASL_CONT] = "cont",
		[SVC_SASL_CANCEL] = "cancel",
	};
	return (unsigned)op < SVC_SASL_OP_MAX ? names[op] : "?";
}

const char *svc_sasl_result_name(enum svc_sasl_result r)
{
	static const char *const names[SVC_SASL_RESULT_MAX] = {
		[SVC_SASL_OK] = "ok",
		[SVC_SASL_CONTINUE] = "continue",
		[SVC_SASL_FAIL] = "fail",
		[SVC_SASL_TEMPFAIL] = "tempfail",
		[SVC_SASL_BAD_MECH] = "bad-mech",
	};
	return (unsigned)r < SVC_SASL_RESULT_MAX ? names[r] : "?";
}

struct svc_request *svc_request_new(enum svc_kind kind)
{
	struct svc_request *r = calloc(1, sizeof(*r));
	if (r) {
		r->kind = kind;
		if (kind == SVC_SASL) /* an answer never given reads as a temporary failure */
			r->u.sasl.result = SVC_SASL_TEMPFAIL;
	}
	return r;
}

void svc_request_free(struct svc_request *r)
{
	if (!r)
		return;
	if (r->kind == SVC_DNS)
		dns_result_put(r->u.dns.result);
	else if (r->kind == SVC_POLICY || r->kind == SVC_GREYLIST) {
		free(r->u.policy.request);
		free(r->u.policy.action);
	} else if (r->kind == SVC_STATE) {
		free(r->u.state.value);
	} else if (r->kind == SVC_SASL) {
		free(r->u.sasl.data);
		free(r->u.sasl.text);
		free(r->u.sasl.user);
	}
	free(r);
}

/* ---- a single-producer single-consumer ring of pointers ---- */

struct svc_ring {
	/* head: the next slot the consumer reads; tail: the next the producer writes; each
	 * on its own cache line so the two sides do not share one */
	_Alignas(64) atomic_size_t head;
	_Alignas(64) atomic_size_t tail;
	_Alignas(64) void *slot[SVC_RING_SIZE];
};

static bool svc_ring_push(struct svc_ring *r, void *p)
{
	size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	if (tail - head == SVC_RING_SIZE)
		return false;
	r->slot[tail % SVC_RING_SIZE] = p;
	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
	return true;
}

static void *svc_ring_pop(struct svc_ring *r)
{
	size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	if (head == tail)
		return NULL;
	void *p = r->slot[head % SVC_RING_SIZE];
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return p;
}

static bool svc_ring_empty(const struct svc_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) ==
	       atomic_load_explicit(&r->tail, memory_order_acquire);
}

/* ---- the set, its ports and the workers' clients ---- */

/* One worker's pair of rings with one service. The rings (64 KiB a pair) are made when
 * the worker makes its client, so a set sized for every possible lcore costs little until
 * workers exist; the service sees a lane once its rings are published (release/acquire on
 * `in`). */
struct svc_lane {
	struct svc_ring *in;   /* worker -> service; NULL until the worker's client exists */
	struct svc_ring *out;  /* service -> worker */
	unsigned in_flight;    /* the worker's count (only the worker touches it) */
	/* requests the ring had no room for, oldest first (the worker's only) */
	struct svc_request *queued_head, *queued_tail;
	unsigned queued;
	bool fed;              /* requests since the last svc_client_flush() */
	bool answered;         /* the service's: answers since its last svc_port_flush() */
};

struct svc_port {
	struct svc_set *set;
	enum svc_kind kind;
	int wake_fd;           /* workers write it */
	unsigned next;         /* round robin over the workers */
	void *impl;
	bool running;
};

struct svc_set {
	unsigned workers;
	struct svc_lane *lanes[SVC_KIND_MAX];   /* [workers] each */
	int *worker_wake;                       /* [workers]: the clients' wake fds (-1) */
	struct svc_port ports[SVC_KIND_MAX];
	const struct svc_ops *ops[SVC_KIND_MAX];
	void (*orphan)(struct svc_request *r);
};

struct svc_client {
	struct svc_set *set;
	unsigned worker;
};

int svc_port_wake_fd(const struct svc_port *p)
{
	return p->wake_fd;
}

struct svc_request *svc_port_take(struct svc_port *p)
{
	struct svc_set *s = p->set;
	for (unsigned k = 0; k < s->workers; k++) {
		unsigned w = (p->next + k) % s->workers;
		struct svc_ring *in = __atomic_load_n(&s->lanes[p->kind][w].in, __ATOMIC_ACQUIRE);
		if (!in)
			continue;
		struct svc_request *r = svc_ring_pop(in);
		if (r) {
			p->next = (w + 1) % s->workers;
			return r;
		}
	}
	return NULL;
}

void svc_port_complete(struct svc_port *p, struct svc_request *r)
{
	struct svc_lane *l = &p->set->lanes[p->kind][r->worker];
	/* never full: the worker has at most SVC_RING_SIZE requests in flight */
	bool ok = svc_ring_push(l->out, r);
	(void)ok;
	l->answered = true;
}

void svc_port_flush(struct svc_port *p)
{
	struct svc_set *s = p->set;
	for (unsigned w = 0; w < s->workers; w++) {
		struct svc_lane *l = &s->lanes[p->kind][w];
		if (!l->answered)
			continue;
		l->answered = false;
		int fd = __atomic_load_n(&s->worker_wake[w], __ATOMIC_ACQUIRE);
		/* eventfd_write(): a full counter means it is woken already. (Not write(2):
		 * the fault-injection tests fail write() calls, and a lost wake-up would
		 * strand the answers.) */
		if (fd >= 0)
			eventfd_write(fd, 1);
	}
}

/* The rings of one lane, zeroed; false when out of memory. */
static bool svc_lane_make(struct svc_lane *l)
{
	if (l->out)
		return true; /* a client made before, freed since: its rings stay */
	struct svc_ring *in = aligned_alloc(64, sizeof(*in));
	struct svc_ring *out = aligned_alloc(64, sizeof(*out));
	if (!in || !out) {
		free(in);
		free(out);
		return false;
	}
	memset(in, 0, sizeof(*in));
	memset(out, 0, sizeof(*out));
	l->out = out;
	__atomic_store_n(&l->in, in, __ATOMIC_RELEASE);
	return true;
}

struct svc_client *svc_client_new(struct svc_set *set, unsigned worker, int wake_fd)
{
	if (!set || worker >= set->workers)
		return NULL;
	for (int k = 0; k < SVC_KIND_MAX; k++)
		if (set->lanes[k] && !svc_lane_make(&set->lanes[k][worker]))
			return NULL;
	struct svc_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->set = set;
	c->worker = worker;
	__atomic_store_n(&set->worker_wake[worker], wake_fd, __ATOMIC_RELEASE);
	return c;
}

void svc_client_free(struct svc_client *c)
{
	if (!c)
		return;
	__atomic_store_n(&c->set->worker_wake[c->worker], -1, __ATOMIC_RELEASE);
	free(c);
}

/* Move queued requests into the ring while it has room. Those whose deadline has passed
 * while they waited are answered here with -ETIMEDOUT through fn (the service would only
 * have answered them so). Only the head is looked at: a lane carries one kind of request,
 * whose timeouts come from the same parameters, so the queue's order is its deadlines'
 * order, near enough; and the requests in flight ahead of it are answered by their own
 * deadlines, each answer bringing the worker back here. */
static void svc_lane_drain(struct svc_lane *l, void (*fn)(void *arg, struct svc_request *r),
			   void *arg)
{
	uint64_t now = l->queued_head ? mx_clock_monotonic_ms() : 0;
	while (l->queued_head) {
		struct svc_request *r = l->queued_head;
		bool expired = r->deadline_ms <= now;
		if (!expired && (l->in_flight >= SVC_RING_SIZE || !svc_ring_push(l->in, r)))
			return;
		l->queued_head = r->queued_next;
		if (!l->queued_head)
			l->queued_tail = NULL;
		r->queued_next = NULL;
		l->queued--;
		if (expired) {
			/* as the service answers a request past its deadline (a DNS one with a
			 * TEMPFAIL result; out of memory the owner takes NULL as one) */
			r->status = -ETIMEDOUT;
			if (r->kind == SVC_DNS && !r->u.dns.result)
				r->u.dns.result = dns_result_tempfail(r->u.dns.type, "timeout");
			fn(arg, r);
		} else {
			l->in_flight++;
			l->fed = true;
		}
	}
}

int svc_submit(struct svc_client *c, struct svc_request *r)
{
	struct svc_set *s = c->set;
	if ((unsigned)r->kind >= SVC_KIND_MAX || !s->ports[r->kind].running)
		return -ENOSYS;
	struct svc_lane *l = &s->lanes[r->kind][c->worker];
	r->worker = c->worker;
	r->queued_next = NULL;
	if (!l->queued_head && l->in_flight < SVC_RING_SIZE && svc_ring_push(l->in, r)) {
		l->in_flight++;
		l->fed = true;
		return 0;
	}
	/* no room: behind the others that wait, in order */
	if (l->queued_tail)
		l->queued_tail->queued_next = r;
	else
		l->queued_head = r;
	l->queued_tail = r;
	l->queued++;
	return 0;
}

void svc_client_flush(struct svc_client *c)
{
	struct svc_set *s = c->set;
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		if (!s->lanes[k])
			continue;
		struct svc_lane *l = &s->lanes[k][c->worker];
		if (!l->fed)
			continue;
		l->fed = false;
		eventfd_write(s->ports[k].wake_fd, 1);
	}
}

void svc_client_poll(struct svc_client *c, void (*fn)(void *arg, struct svc_request *r),
		     void *arg)
{
	struct svc_set *s = c->set;
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		if (!s->lanes[k])
			continue;
		struct svc_lane *l = &s->lanes[k][c->worker];
		struct svc_request *r;
		while ((r = svc_ring_pop(l->out))) {
			l->in_flight--;
			fn(arg, r);
		}
		svc_lane_drain(l, fn, arg);
	}
}

bool svc_client_pending(const struct svc_client *c)
{
	const struct svc_set *s = c->set;
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		if (!s->lanes[k])
			continue;
		const struct svc_lane *l = &s->lanes[k][c->worker];
		if (!svc_ring_empty(l->out) ||
		    (l->queued_head && l->queued_head->deadline_ms <= mx_clock_monotonic_ms()))
			return true;
	}
	return false;
}

unsigned svc_client_in_flight(const struct svc_client *c)
{
	unsigned n = 0;
	for (int k = 0; k < SVC_KIND_MAX; k++)
		if (c->set->lanes[k])
			n += c->set->lanes[k][c->worker].in_flight +
			     c->set->lanes[k][c->worker].queued;
	return n;
}

static void svc_set_release(struct svc_set *s)
{
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		for (unsigned w = 0; s->lanes[k] && w < s->workers; w++) {
			/* answers no worker took (it stopped first): their owners go with them */
			struct svc_request *r;
			while (s->lanes[k][w].out && (r = svc_ring_pop(s->lanes[k][w].out))) {
				if (s->orphan)
					s->orphan(r);
				else
					svc_request_free(r);
			}
			/* and the requests still waiting for room (the worker stopped first) */
			while ((r = s->lanes[k][w].queued_head)) {
				s->lanes[k][w].queued_head = r->queued_next;
				if (s->orphan)
					s->orphan(r);
				else
					svc_request_free(r);
			}
			free(s->lanes[k][w].in);
			free(s->lanes[k][w].out);
		}
		free(s->lanes[k]);
		if (s->ports[k].wake_fd >= 0)
			close(s->ports[k].wake_fd);
	}
	free(s->worker_wake);
	free(s);
}

int svc_set_start(struct svc_set **out, const struct svc_set_params *p, char *err,
		  size_t errlen)
{
	*out = NULL;
	struct svc_set *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "services: out of memory");
	s->workers = p->workers ? p->workers : 1;
	s->orphan = p->orphan;
	for (int k = 0; k < SVC_KIND_MAX; k++)
		s->ports[k].wake_fd = -1;
	s->worker_wake = malloc(s->workers * sizeof(*s->worker_wake));
	int rc = s->worker_wake ? 0 : -ENOMEM;
	for (unsigned w = 0; rc == 0 && w < s->workers; w++)
		s->worker_wake[w] = -1;
	for (int k = 0; rc == 0 && k < SVC_KIND_MAX; k++) {
		struct svc_port *port = &s->ports[k];
		port->set = s;
		port->kind = (enum svc_kind)k;
		if (!p->ops[k])
			continue;
		s->lanes[k] = calloc(s->workers, sizeof(*s->lanes[k]));
		port->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (!s->lanes[k] || port->wake_fd < 0) {
			rc = -ENOMEM;
			break;
		}
	}
	if (rc < 0) {
		svc_set_release(s);
		return mx_errf(err, errlen, rc, "services: out of memory");
	}
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		/* a service that is not running still has lanes (allocated lazily above only
		 * when it runs): svc_submit() refuses its requests before touching them */
		if (!p->ops[k])
			continue;
		char why[512];
		rc = p->ops[k]->start(&s->ports[k].impl, &s->ports[k], p->params[k], why,
				      sizeof(why));
		if (rc < 0) {
			mx_errf(err, errlen, rc, "%s: %s", svc_kind_name((enum svc_kind)k), why);
			svc_set_stop(s);
			svc_set_release(s);
			return rc;
		}
		s->ops[k] = p->ops[k];
		s->ports[k].running = true;
	}
	*out = s;
	return 0;
}

void svc_set_stop(struct svc_set *s)
{
	if (!s)
		return;
	for (int k = 0; k < SVC_KIND_MAX; k++) {
		if (s->ops[k] && s->ports[k].running) {
			s->ops[k]->stop(s->ports[k].impl);
			s->ports[k].running = false;
		}
	}
}

void svc_set_free(struct svc_set *s)
{
	if (!s)
		return;
	svc_set_stop(s);
	svc_set_release(s);
}

void svc_set_log_statistics(struct svc_set *s, const char *when)
{
	if (!s)
		return;
	for (int k = 0; k < SVC_KIND_MAX; k++)
		if (s->ops[k] && s->ports[k].running && s->ops[k]->log_statistics)
			s->ops[k]->log_statistics(s->ports[k].impl, when);
}

/* ---- helpers the service threads share ---- */

int svc_thread_start(pthread_t *thread, void *(*main)(void *), void *arg, const char *name,
		     char *err, size_t errlen)
{
	int rc = pthread_create(thread, NULL, main, arg);
	if (rc != 0)
		return mx_errf(err, errlen, -rc, "pthread_create: %s", strerror(rc));
	pthread_setname_np(*thread, name);
	return 0;
}

void svc_thread_stop(pthread_t thread, atomic_bool *stop, struct svc_port *port)
{
	atomic_store_explicit(stop, true, memory_order_release);
	eventfd_write(svc_port_wake_fd(port), 1); /* not write(2): see svc_port_flush() */
	pthread_join(thread, NULL);
}

void svc_warn_limitedv(struct svc_warn_limit *w, uint64_t now, uint64_t interval_ms,
		       const char *fmt, va_list ap)
{
	if (w->at && now - w->at < interval_ms) {
		w->suppressed++;
		return;
	}
	w->at = now ? now : 1;
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (w->suppressed)
		mx_log(MX_LOG_WARNING, "%s (%u more like it suppressed)", msg, w->suppressed);
	else
		mx_log(MX_LOG_WARNING, "%s", msg);
	w->suppressed = 0;
}

void svc_warn_limited(struct svc_warn_limit *w, uint64_t now, uint64_t interval_ms,
		      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	svc_warn_limitedv(w, now, interval_ms, fmt, ap);
	va_end(ap);
}
