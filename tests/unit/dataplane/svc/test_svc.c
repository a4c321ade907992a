/* The queues between workers and services (dataplane/svc/svc.h), with an echo service:
 * every request comes back once, to the worker that sent it, with its owner; a worker's
 * wake fd is written when answers arrive; a full lane queues in the worker (and answers
 * what waits past its deadline there with -ETIMEDOUT), a service that does not run
 * refuses with -ENOSYS; a stop answers what is still queued; answers no worker
 * took go to the orphan callback. Two worker threads and the service thread run at once
 * (ThreadSanitizer-clean by construction: single producer, single consumer per ring). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "mxgate/clock.h"
#include "testing.h"

/* ---- an echo service: answers each request with a TEMPFAIL naming its question ---- */

struct echo {
	struct svc_port *port;
	pthread_t thread;
	atomic_bool stop;
	bool hold;        /* take nothing (to fill the lanes) */
	atomic_ulong answered;
};

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	int fd = svc_port_wake_fd(e->port);
	while (!atomic_load(&e->stop)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		poll(&p, 1, 50);
		uint64_t v;
		ssize_t n = read(fd, &v, sizeof(v));
		(void)n;
		if (e->hold)
			continue;
		struct svc_request *r;
		while ((r = svc_port_take(e->port))) {
			r->u.dns.result = dns_result_tempfail(r->u.dns.type, r->u.dns.name);
			r->status = 0;
			svc_port_complete(e->port, r);
			atomic_fetch_add(&e->answered, 1);
		}
		svc_port_flush(e->port);
	}
	/* what is still queued is answered -ECANCELED */
	struct svc_request *r;
	while ((r = svc_port_take(e->port))) {
		r->status = -ECANCELED;
		r->u.dns.result = dns_result_tempfail(r->u.dns.type, "stopped");
		svc_port_complete(e->port, r);
	}
	svc_port_flush(e->port);
	return NULL;
}

static bool echo_hold;

static int echo_start(void **impl, struct svc_port *port, const void *params, char *err,
		      size_t errlen)
{
	(void)params;
	(void)err;
	(void)errlen;
	struct echo *e = calloc(1, sizeof(*e));
	e->port = port;
	e->hold = echo_hold;
	pthread_create(&e->thread, NULL, echo_main, e);
	*impl = e;
	return 0;
}

static void echo_stop(void *impl)
{
	struct echo *e = impl;
	atomic_store(&e->stop, true);
	pthread_join(e->thread, NULL);
	free(e);
}

static const struct svc_ops echo_ops = { .kind = SVC_DNS, .start = echo_start,
					 .stop = echo_stop };

/* ---- workers ---- */

#define PER_WORKER 20000

struct worker {
	struct svc_set *set;
	unsigned index;
	int wake;
	unsigned sent, got, wrong;
	unsigned owners[PER_WORKER];
};

static void on_answer(void *arg, struct svc_request *r)
{
	struct worker *w = arg;
	unsigned *owner = r->owner;
	if (r->worker != w->index || owner < w->owners || owner >= w->owners + PER_WORKER ||
	    *owner != 1 || !r->u.dns.result ||
	    strcmp(r->u.dns.result->why, r->u.dns.name) != 0)
		w->wrong++;
	else
		*owner = 2;
	w->got++;
	svc_request_free(r);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct svc_client *c = svc_client_new(w->set, w->index, w->wake);
	while (w->got < PER_WORKER) {
		for (int k = 0; k < 64 && w->sent < PER_WORKER; k++) {
			struct svc_request *r = svc_request_new(SVC_DNS);
			r->owner = &w->owners[w->sent];
			snprintf(r->u.dns.name, sizeof(r->u.dns.name), "w%u-%u.example", w->index,
				 w->sent);
			if (svc_submit(c, r) != 0) {
				svc_request_free(r);
				break;
			}
			w->owners[w->sent++] = 1;
		}
		svc_client_flush(c);
		if (!svc_client_pending(c)) {
			struct pollfd p = { .fd = w->wake, .events = POLLIN };
			poll(&p, 1, 10);
			uint64_t v;
			ssize_t n = read(w->wake, &v, sizeof(v));
			(void)n;
		}
		svc_client_poll(c, on_answer, w);
	}
	CHECK_INT_EQ(svc_client_in_flight(c), 0);
	svc_client_free(c);
	return NULL;
}

static void test_round_trips(void)
{
	struct svc_set *set;
	char err[256];
	struct svc_set_params p = { .workers = 2, .ops = { [SVC_DNS] = &echo_ops } };
	echo_hold = false;
	CHECK_INT_EQ(svc_set_start(&set, &p, err, sizeof(err)), 0);
	struct worker *w = calloc(2, sizeof(*w));
	pthread_t t[2];
	for (unsigned i = 0; i < 2; i++) {
		w[i].set = set;
		w[i].index = i;
		w[i].wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (unsigned i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT_EQ(w[i].got, PER_WORKER);
		CHECK_INT_EQ(w[i].wrong, 0);
		unsigned twice = 0;
		for (unsigned k = 0; k < PER_WORKER; k++)
			twice += w[i].owners[k] != 2;
		CHECK_INT_EQ(twice, 0);
		close(w[i].wake);
	}
	svc_set_free(set);
	free(w);
}

static int orphans;

static void orphan(struct svc_request *r)
{
	orphans++;
	svc_request_free(r);
}

static void test_full_lanes_and_stop(void)
{
	struct svc_set *set;
	char err[256];
	struct svc_set_params p = { .workers = 1, .ops = { [SVC_DNS] = &echo_ops },
				    .orphan = orphan };
	echo_hold = true; /* the service takes nothing: the lane fills */
	CHECK_INT_EQ(svc_set_start(&set, &p, err, sizeof(err)), 0);
	struct svc_client *c = svc_client_new(set, 0, -1);
	CHECK(svc_client_new(set, 1, -1) == NULL); /* no such worker */
	/* twice what the ring holds: the rest waits in the worker's queue */
	for (unsigned i = 0; i < 2 * SVC_RING_SIZE; i++) {
		struct svc_request *r = svc_request_new(SVC_DNS);
		r->deadline_ms = mx_clock_monotonic_ms() + 60000;
		CHECK_INT_EQ(svc_submit(c, r), 0);
	}
	CHECK_INT_EQ(svc_client_in_flight(c), 2 * SVC_RING_SIZE);
	CHECK(!svc_client_pending(c));
	/* one that waits past its deadline comes back -ETIMEDOUT from the queue */
	struct svc_request *late = svc_request_new(SVC_DNS);
	late->deadline_ms = mx_clock_monotonic_ms() + 50;
	CHECK_INT_EQ(svc_submit(c, late), 0);
	usleep(100 * 1000);
	CHECK(svc_client_pending(c) == false); /* not at the head: the queue is FIFO */
	/* a service that does not run */
	struct svc_request *pr = svc_request_new(SVC_POLICY);
	CHECK_INT_EQ(svc_submit(c, pr), -ENOSYS);
	svc_request_free(pr);
	svc_client_flush(c);
	svc_client_free(c); /* the worker stops with every request in flight */
	orphans = 0;
	svc_set_stop(set);  /* the service answers them -ECANCELED */
	svc_set_free(set);  /* nobody takes them: orphans, the queued ones too */
	CHECK_INT_EQ(orphans, 2 * SVC_RING_SIZE + 1);
}

static unsigned drained, drained_timeouts;

static void count_answer(void *arg, struct svc_request *r)
{
	(void)arg;
	drained++;
	drained_timeouts += r->status == -ETIMEDOUT;
	svc_request_free(r);
}

/* Requests beyond the ring wait and then go through, in order, as answers make room; one
 * whose deadline passes at the head of the queue comes back -ETIMEDOUT without being sent. */
static void test_queue_drains(void)
{
	struct svc_set *set;
	char err[256];
	struct svc_set_params p = { .workers = 1, .ops = { [SVC_DNS] = &echo_ops } };
	echo_hold = false;
	CHECK_INT_EQ(svc_set_start(&set, &p, err, sizeof(err)), 0);
	int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct svc_client *c = svc_client_new(set, 0, wake);
	const unsigned total = 3 * SVC_RING_SIZE + 7;
	for (unsigned i = 0; i < total; i++) {
		struct svc_request *r = svc_request_new(SVC_DNS);
		r->deadline_ms = mx_clock_monotonic_ms() + 60000;
		CHECK_INT_EQ(svc_submit(c, r), 0);
	}
	drained = drained_timeouts = 0;
	uint64_t until = mx_clock_monotonic_ms() + 20000;
	while (drained < total && mx_clock_monotonic_ms() < until) {
		svc_client_flush(c);
		struct pollfd pfd = { .fd = wake, .events = POLLIN };
		poll(&pfd, 1, 100);
		uint64_t v;
		if (read(wake, &v, sizeof(v)) < 0) {
			/* nothing yet */
		}
		svc_client_poll(c, count_answer, NULL);
	}
	CHECK_INT_EQ(drained, total);
	CHECK_INT_EQ(drained_timeouts, 0);
	CHECK_INT_EQ(svc_client_in_flight(c), 0);
	svc_client_free(c);
	svc_set_stop(set);
	svc_set_free(set);
	close(wake);
}

/* A queued request whose deadline passed at the head of the queue. */
static void test_queue_deadline(void)
{
	struct svc_set *set;
	char err[256];
	struct svc_set_params p = { .workers = 1, .ops = { [SVC_DNS] = &echo_ops },
				    .orphan = orphan };
	echo_hold = true;
	CHECK_INT_EQ(svc_set_start(&set, &p, err, sizeof(err)), 0);
	struct svc_client *c = svc_client_new(set, 0, -1);
	for (unsigned i = 0; i < SVC_RING_SIZE; i++) {
		struct svc_request *r = svc_request_new(SVC_DNS);
		r->deadline_ms = mx_clock_monotonic_ms() + 60000;
		CHECK_INT_EQ(svc_submit(c, r), 0);
	}
	struct svc_request *late = svc_request_new(SVC_DNS);
	late->deadline_ms = mx_clock_monotonic_ms() + 50;
	CHECK_INT_EQ(svc_submit(c, late), 0);
	CHECK(!svc_client_pending(c));
	usleep(100 * 1000);
	CHECK(svc_client_pending(c)); /* its deadline passed: something to hand over */
	drained = drained_timeouts = 0;
	svc_client_poll(c, count_answer, NULL);
	CHECK_INT_EQ(drained, 1);
	CHECK_INT_EQ(drained_timeouts, 1);
	CHECK_INT_EQ(svc_client_in_flight(c), SVC_RING_SIZE);
	svc_client_free(c);
	orphans = 0;
	svc_set_stop(set);
	svc_set_free(set);
	CHECK_INT_EQ(orphans, SVC_RING_SIZE);
}

int main(void)
{
	RUN_TEST(test_round_trips);
	RUN_TEST(test_full_lanes_and_stop);
	RUN_TEST(test_queue_drains);
	RUN_TEST(test_queue_deadline);
	return TEST_RESULT();
}
