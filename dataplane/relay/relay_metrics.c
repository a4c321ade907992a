/* What the metrics registry reads of a relay beyond its counters (relay.h): the queue by
 * state with its oldest message, and the next hops' counters. Delivery threads write the
 * next-hop rows with relaxed atomic adds (they are not a worker's fast path); readers
 * load them without a lock. */
#include <stdio.h>
#include <string.h>

#include "dataplane/relay/relay_internal.h"

const char *relay_qstate_name(enum relay_qstate s)
{
	static const char *const names[RELAY_QS_MAX] = {
		[RELAY_QS_HOLD] = "hold",
		[RELAY_QS_ACTIVE] = "active",
		[RELAY_QS_DEFERRED] = "deferred",
		[RELAY_QS_WAITING] = "waiting",
		[RELAY_QS_READY] = "ready",
	};
	return (unsigned)s < RELAY_QS_MAX ? names[s] : "?";
}

static enum relay_qstate relay_qstate_of(const struct relay_msg *m)
{
	if (m->e.held)
		return RELAY_QS_HOLD;
	if (m->busy)
		return RELAY_QS_ACTIVE;
	if (m->deferred)
		return RELAY_QS_DEFERRED;
	if (m->waiting)
		return RELAY_QS_WAITING;
	return RELAY_QS_READY;
}

void relay_queue_states(struct relay *r, struct relay_queue_states *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&r->mu);
	for (const struct relay_msg *m = r->all; m; m = m->next) {
		out->messages[relay_qstate_of(m)]++;
		if (m->arrival_us && (!out->oldest_arrival_us ||
				      m->arrival_us < out->oldest_arrival_us))
			out->oldest_arrival_us = m->arrival_us;
	}
	pthread_mutex_unlock(&r->mu);
}

void relay_nexthop_assign(struct relay *r, struct relay_dest *d)
{
	unsigned used = atomic_load_explicit(&r->nh_used, memory_order_relaxed);
	/* a key seen before (a destination is only made once per key, but keep the rows
	 * unique whatever the caller does) */
	for (unsigned k = 0; k < used; k++) {
		if (strcmp(r->nh[k].name, d->nh.key) == 0) {
			d->nh_slot = k;
			return;
		}
	}
	if (used >= RELAY_NEXTHOP_SLOTS) {
		d->nh_slot = RELAY_NEXTHOP_SLOTS; /* "other" */
		return;
	}
	snprintf(r->nh[used].name, sizeof(r->nh[used].name), "%s", d->nh.key);
	d->nh_slot = used;
	atomic_store_explicit(&r->nh_used, used + 1, memory_order_release);
}

void relay_nexthop_count(struct relay *r, const struct relay_dest *d,
			 const struct relay_outcome *o, const size_t *gidx, size_t gn)
{
	uint64_t delivered = 0, deferred = 0, bounced = 0;
	for (size_t k = 0; k < gn; k++) {
		size_t i = gidx[k];
		if (!o->decided[i])
			continue; /* waiting for a connection slot: not tried */
		if (o->st[i] == SPOOL_RCPT_SENT)
			delivered++;
		else if (o->st[i] == SPOOL_RCPT_FAILED)
			bounced++;
		else
			deferred++;
	}
	if (!delivered && !deferred && !bounced)
		return;
	struct relay_nh_row *row = &r->nh[d->nh_slot <= RELAY_NEXTHOP_SLOTS
						  ? d->nh_slot : RELAY_NEXTHOP_SLOTS];
	atomic_fetch_add_explicit(&row->attempts, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&row->delivered, delivered, memory_order_relaxed);
	atomic_fetch_add_explicit(&row->deferred, deferred, memory_order_relaxed);
	atomic_fetch_add_explicit(&row->bounced, bounced, memory_order_relaxed);
}

static void relay_nexthop_row(const struct relay_nh_row *row, struct relay_nexthop_counts *c)
{
	c->attempts = atomic_load_explicit(&row->attempts, memory_order_relaxed);
	c->delivered = atomic_load_explicit(&row->delivered, memory_order_relaxed);
	c->deferred = atomic_load_explicit(&row->deferred, memory_order_relaxed);
	c->bounced = atomic_load_explicit(&row->bounced, memory_order_relaxed);
}

void relay_nexthops(struct relay *r,
		    void (*fn)(void *ctx, const char *nexthop,
			       const struct relay_nexthop_counts *c),
		    void *ctx)
{
	unsigned used = atomic_load_explicit(&r->nh_used, memory_order_acquire);
	struct relay_nexthop_counts c;
	for (unsigned k = 0; k < used && k < RELAY_NEXTHOP_SLOTS; k++) {
		relay_nexthop_row(&r->nh[k], &c);
		fn(ctx, r->nh[k].name, &c);
	}
	relay_nexthop_row(&r->nh[RELAY_NEXTHOP_SLOTS], &c);
	if (c.attempts)
		fn(ctx, "other", &c);
}
