/* dataplane/relay/relay_metrics.c: the queue by state (each live message in exactly one,
 * the oldest arrival), and the next hops' table (a row per destination key up to
 * RELAY_NEXTHOP_SLOTS, then "other"; only decided recipients count). The relay is built
 * by hand: its lock, a list of messages, destinations as relay_dest_get() makes them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/relay/relay_internal.h"
#include "testing.h"

static struct relay *new_relay(void)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	pthread_mutex_init(&r->mu, NULL);
	return r;
}

static void free_relay(struct relay *r)
{
	while (r->all) {
		struct relay_msg *m = r->all;
		r->all = m->next;
		free(m);
	}
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static struct relay_msg *add_msg(struct relay *r, uint64_t arrival_us)
{
	struct relay_msg *m = calloc(1, sizeof(*m));
	if (!m)
		abort();
	m->arrival_us = arrival_us;
	m->next = r->all;
	r->all = m;
	return m;
}

static void test_states(void)
{
	struct relay *r = new_relay();
	struct relay_queue_states qs;
	relay_queue_states(r, &qs);
	for (unsigned s = 0; s < RELAY_QS_MAX; s++)
		CHECK_INT_EQ(qs.messages[s], 0);
	CHECK_INT_EQ(qs.oldest_arrival_us, 0);

	add_msg(r, 5000);                        /* ready */
	struct relay_msg *held = add_msg(r, 3000);
	held->e.held = true;
	held->busy = true;                        /* held wins over active */
	add_msg(r, 9000)->busy = true;            /* active */
	struct relay_msg *d = add_msg(r, 4000);
	d->deferred = true;
	d->waiting = true;                        /* deferred wins over waiting */
	add_msg(r, 0)->waiting = true;            /* no arrival known: not the oldest */
	add_msg(r, 7000);                         /* ready */
	relay_queue_states(r, &qs);
	CHECK_INT_EQ(qs.messages[RELAY_QS_HOLD], 1);
	CHECK_INT_EQ(qs.messages[RELAY_QS_ACTIVE], 1);
	CHECK_INT_EQ(qs.messages[RELAY_QS_DEFERRED], 1);
	CHECK_INT_EQ(qs.messages[RELAY_QS_WAITING], 1);
	CHECK_INT_EQ(qs.messages[RELAY_QS_READY], 2);
	CHECK_INT_EQ(qs.oldest_arrival_us, 3000);

	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_HOLD), "hold");
	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_ACTIVE), "active");
	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_DEFERRED), "deferred");
	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_WAITING), "waiting");
	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_READY), "ready");
	CHECK_STR_EQ(relay_qstate_name(RELAY_QS_MAX), "?");
	free_relay(r);
}

struct seen {
	unsigned n;
	char name[RELAY_NEXTHOP_SLOTS + 2][160];
	struct relay_nexthop_counts c[RELAY_NEXTHOP_SLOTS + 2];
};

static void collect(void *ctx, const char *nexthop, const struct relay_nexthop_counts *c)
{
	struct seen *s = ctx;
	if (s->n >= RELAY_NEXTHOP_SLOTS + 2) {
		CHECK(!"more rows than the table has");
		return;
	}
	snprintf(s->name[s->n], sizeof(s->name[s->n]), "%s", nexthop);
	s->c[s->n++] = *c;
}

/* One transaction of n recipients to d with the given states; decided[i] false for the
 * last `untried` ones (waiting for a connection slot). */
static void transaction(struct relay *r, struct relay_dest *d, const enum spool_rcpt_state *st,
			size_t n, size_t untried)
{
	enum spool_rcpt_state sts[8];
	bool decided[8];
	size_t gidx[8];
	for (size_t i = 0; i < n; i++) {
		sts[i] = st[i];
		decided[i] = i + untried < n;
		gidx[i] = i;
	}
	struct relay_outcome o = { .st = sts, .decided = decided };
	relay_nexthop_count(r, d, &o, gidx, n);
}

static void test_nexthops(void)
{
	struct relay *r = new_relay();
	struct seen s = { 0 };
	relay_nexthops(r, collect, &s);
	CHECK_INT_EQ(s.n, 0); /* nothing used, no "other" */

	static struct relay_dest dests[RELAY_NEXTHOP_SLOTS + 3];
	for (unsigned k = 0; k < RELAY_NEXTHOP_SLOTS + 3; k++) {
		snprintf(dests[k].nh.key, sizeof(dests[k].nh.key), "smtp:192.0.2.%u:25", k);
		relay_nexthop_assign(r, &dests[k]);
	}
	CHECK_INT_EQ(dests[0].nh_slot, 0);
	CHECK_INT_EQ(dests[RELAY_NEXTHOP_SLOTS - 1].nh_slot, RELAY_NEXTHOP_SLOTS - 1);
	CHECK_INT_EQ(dests[RELAY_NEXTHOP_SLOTS].nh_slot, RELAY_NEXTHOP_SLOTS);
	CHECK_INT_EQ(dests[RELAY_NEXTHOP_SLOTS + 2].nh_slot, RELAY_NEXTHOP_SLOTS);
	/* the same key again (a destination made twice): the same row */
	struct relay_dest again = { 0 };
	snprintf(again.nh.key, sizeof(again.nh.key), "smtp:192.0.2.%u:25", 5u);
	relay_nexthop_assign(r, &again);
	CHECK_INT_EQ(again.nh_slot, 5);

	const enum spool_rcpt_state mix[4] = { SPOOL_RCPT_SENT, SPOOL_RCPT_PENDING,
					       SPOOL_RCPT_FAILED, SPOOL_RCPT_SENT };
	transaction(r, &dests[0], mix, 4, 0);
	transaction(r, &dests[0], mix, 4, 2);     /* the last two not tried */
	transaction(r, &dests[1], mix, 2, 2);     /* nothing tried: no attempt */
	transaction(r, &again, mix, 1, 0);
	transaction(r, &dests[RELAY_NEXTHOP_SLOTS], mix, 3, 0);
	transaction(r, &dests[RELAY_NEXTHOP_SLOTS + 1], mix, 1, 0);
	relay_nexthops(r, collect, &s);
	CHECK_INT_EQ(s.n, RELAY_NEXTHOP_SLOTS + 1);
	CHECK_STR_EQ(s.name[0], "smtp:192.0.2.0:25");
	CHECK_INT_EQ(s.c[0].attempts, 2);
	CHECK_INT_EQ(s.c[0].delivered, 3);
	CHECK_INT_EQ(s.c[0].deferred, 2);
	CHECK_INT_EQ(s.c[0].bounced, 1);
	CHECK_INT_EQ(s.c[1].attempts, 0);
	CHECK_INT_EQ(s.c[1].delivered, 0);
	CHECK_STR_EQ(s.name[5], "smtp:192.0.2.5:25");
	CHECK_INT_EQ(s.c[5].attempts, 1);
	CHECK_INT_EQ(s.c[5].delivered, 1);
	CHECK_STR_EQ(s.name[RELAY_NEXTHOP_SLOTS], "other");
	CHECK_INT_EQ(s.c[RELAY_NEXTHOP_SLOTS].attempts, 2);
	CHECK_INT_EQ(s.c[RELAY_NEXTHOP_SLOTS].delivered, 2);
	CHECK_INT_EQ(s.c[RELAY_NEXTHOP_SLOTS].deferred, 1);
	CHECK_INT_EQ(s.c[RELAY_NEXTHOP_SLOTS].bounced, 1);
	free_relay(r);
}

int main(void)
{
	RUN_TEST(test_states);
	RUN_TEST(test_nexthops);
	return TEST_RESULT();
}
