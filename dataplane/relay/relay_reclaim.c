/* Giving the spool's space back (relay.h, "Reclaim"): segments are deleted oldest first
 * once no live message (nor one still being received) has any record in them, and the
 * waiting messages that pin mostly dead segments are first copied forward. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/relay/relay_internal.h"
#include "mgmt/log.h"

/* ---- reclaim and relocation ---- */

struct relay_relocation {
	struct relay_wait wait;
	struct spool_msg_entry *moved;
};

static void relay_relocated(void *arg, int rc, struct spool_msg_entry *moved)
{
	struct relay_relocation *rl = arg;
	pthread_mutex_lock(&rl->wait.mu);
	rl->moved = moved;
	pthread_mutex_unlock(&rl->wait.mu);
	relay_wait_done(&rl->wait, rc);
}


/* The segments below the newest two mostly hold dead bytes while live messages pin them:
 * copy those messages forward so the segments can go. Only messages that are waiting
 * (deferred, held, for a slot, for their DSN) qualify: the others leave by themselves.
 * Relay thread, r->mu not held. */
static void relay_relocate_old(struct relay_thread *t, uint64_t floor)
{
	struct relay *r = t->r;
	uint64_t cur = spool_current_segment(r->p.spool);
	if (cur < floor + 2)
		return;
	uint64_t old_bytes = (cur - 1 - floor) * spool_segment_size(r->p.spool), live = 0;
	enum { BATCH = 256 };
	struct relay_msg *pick[BATCH];
	size_t npick = 0;
	pthread_mutex_lock(&r->mu);
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->min_seg + 1 < cur)
			live += m->e.size + 4096;
	bool skipped = false;
	if (live && old_bytes >= RELAY_RELOCATE_RATIO * live) {
		for (struct relay_msg *m = r->all; m && npick < BATCH; m = m->next) {
			if (m->min_seg + 1 >= cur)
				continue;
			if (m->busy || m->in_ready) {
				skipped = true;
				continue;
			}
			m->busy = true;
			pick[npick++] = m;
		}
	}
	/* A message being tried now (or about to be) cannot move; if it stays, it must be
	 * moved later, and nothing else may ask for another pass once the traffic stops: ask
	 * for one now (at most one a second, RELAY_RECLAIM_MS). */
	if (skipped)
		r->reclaim_wanted = true;
	pthread_mutex_unlock(&r->mu);
	for (size_t k = 0; k < npick; k++) {
		struct relay_msg *m = pick[k];
		struct relay_relocation rl = { .moved = NULL };
		relay_wait_init(&rl.wait);
		relay_wait_add(&rl.wait, 0);
		int rc = spool_relocate(r->p.spool, &m->e, relay_relocated, &rl);
		if (rc < 0)
			relay_wait_done(&rl.wait, rc);
		rc = relay_wait_end(&rl.wait);
		relay_wait_destroy(&rl.wait);
		pthread_mutex_lock(&r->mu);
		if (rc == 0 && rl.moved) {
			spool_msg_entry_clear(&m->e);
			m->e = *rl.moved;
			free(rl.moved);
			m->min_seg = spool_msg_entry_min_seg(&m->e);
			atomic_fetch_add(&r->relocated, 1);
		} else if (rc < 0) {
			mx_log(MX_LOG_WARNING, "%s: cannot relocate the message to a newer segment: "
					       "%s; it stays where it is",
			       m->e.id, strerror(-rc));
		}
		m->busy = false;
		relay_apply_wants(r, m); /* may remove it */
		pthread_mutex_unlock(&r->mu);
	}
	if (npick)
		mx_log(MX_LOG_INFO, "spool: %zu waiting message(s) moved to segment %" PRIu64
				    " so older segments can be deleted",
		       npick, cur);
}

/* The lowest segment a live message needs (or the writer's floor). */
static uint64_t relay_floor(struct relay *r)
{
	/* the writer's floor first (spool_reclaim_floor()), then ours */
	uint64_t floor = spool_reclaim_floor(r->p.spool);
	pthread_mutex_lock(&r->mu);
	for (struct relay_msg *m = r->all; m; m = m->next)
		if (m->min_seg < floor)
			floor = m->min_seg;
	pthread_mutex_unlock(&r->mu);
	return floor;
}

/* Delete segments no live message needs. Relay thread, r->mu not held. */
void relay_reclaim(struct relay_thread *t)
{
	struct relay *r = t->r;
	pthread_mutex_lock(&r->mu);
	r->last_reclaim_ms = relay_now_ms();
	r->reclaim_wanted = false;
	pthread_mutex_unlock(&r->mu);
	relay_relocate_old(t, relay_floor(r));
	uint64_t floor = relay_floor(r);
	unsigned removed;
	uint64_t freed;
	int rc = spool_reclaim(r->p.spool, floor, &removed, &freed);
	if (rc < 0)
		mx_log(MX_LOG_WARNING, "spool: cannot remove delivered segments: %s", strerror(-rc));
	if (removed) {
		atomic_fetch_add(&r->reclaimed, removed);
		mx_log(MX_LOG_INFO, "spool: %u delivered segment(s) removed, %" PRIu64 " bytes freed",
		       removed, freed);
	}
}

