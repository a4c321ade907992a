/* Operator changes (mxgate-queue hold, release, delete, requeue, flush: relay_admin()) and
 * the queue as mailq and postcat show it (relay_list(), relay_read()). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/relay/relay_internal.h"
#include "dataplane/spool/spool_recovery.h"
#include "mgmt/log.h"
#include "mxgate/errf.h"

/* ---- operator changes (relay_admin) ---- */

/* Write the records an operator change needs for the messages ms[0..n) (all marked busy
 * by the caller), wait until they are durable, and apply the change. */
static int relay_admin_apply(struct relay *r, enum relay_op op, struct relay_msg **ms,
			     size_t n)
{
	struct relay_wait w;
	relay_wait_init(&w);
	for (size_t k = 0; k < n; k++) {
		struct relay_msg *m = ms[k];
		if (op == RELAY_HOLD)
			relay_record_hold(r, &w, m->e.id, true, "mxgate-queue hold");
		else if (op == RELAY_RELEASE)
			relay_record_hold(r, &w, m->e.id, false, "mxgate-queue release");
		else if (op == RELAY_DELETE)
			relay_record(r, &w, SPOOL_REC_RETIRE, m->e.id, 0, SPOOL_RCPT_SENT, NULL);
	}
	int rc = relay_wait_end(&w);
	relay_wait_destroy(&w);
	pthread_mutex_lock(&r->mu);
	uint64_t now = relay_now_ms();
	for (size_t k = 0; k < n; k++) {
		struct relay_msg *m = ms[k];
		m->busy = false;
		if (rc < 0) {
			relay_apply_wants(r, m);
			continue;
		}
		switch (op) {
		case RELAY_HOLD:
			m->e.held = true;
			free(m->e.hold_reason);
			m->e.hold_reason = strdup("mxgate-queue hold");
			mx_log(MX_LOG_INFO, "%s: placed on hold", m->e.id);
			relay_ready_unlink(r, m);
			break;
		case RELAY_RELEASE:
			m->e.held = false;
			free(m->e.hold_reason);
			m->e.hold_reason = NULL;
			mx_log(MX_LOG_INFO, "%s: released from hold", m->e.id);
			m->attempts = 0;
			relay_ready_push(r, m);
			break;
		case RELAY_DELETE:
			mx_log(MX_LOG_INFO, "%s: removed", m->e.id);
			atomic_fetch_add(&r->removed, 1);
			relay_remove(r, m);
			r->reclaim_wanted = true;
			continue;
		case RELAY_REQUEUE:
			m->attempts = 0;
			/* fall through */
		case RELAY_FLUSH:
			m->next_try_ms = now;
			relay_ready_push(r, m);
			break;
		case RELAY_OP_MAX:
			break;
		}
		relay_apply_wants(r, m);
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* Apply operator changes asked for while m was busy. Under r->mu; m not busy. May remove
 * m. The records are written on this thread, with r->mu released meanwhile. */
void relay_apply_wants(struct relay *r, struct relay_msg *m)
{
	enum relay_op op;
	if (m->want_delete)
		op = RELAY_DELETE;
	else if (m->want_hold && !m->e.held)
		op = RELAY_HOLD;
	else if (m->want_release && m->e.held)
		op = RELAY_RELEASE;
	else {
		m->want_hold = m->want_release = false;
		return;
	}
	m->want_delete = m->want_hold = m->want_release = false;
	m->busy = true;
	relay_ready_unlink(r, m);
	pthread_mutex_unlock(&r->mu);
	(void)relay_admin_apply(r, op, &m, 1);
	pthread_mutex_lock(&r->mu);
}

const char *relay_op_name(enum relay_op op)
{
	switch (op) {
	case RELAY_HOLD: return "hold";
	case RELAY_RELEASE: return "release";
	case RELAY_DELETE: return "delete";
	case RELAY_REQUEUE: return "requeue";
	case RELAY_FLUSH: return "flush";
	case RELAY_OP_MAX: break;
	}
	return "?";
}

/* Does op change m? Under r->mu. */
static bool relay_op_applies(const struct relay_msg *m, enum relay_op op)
{
	switch (op) {
	case RELAY_HOLD: return !m->e.held;
	case RELAY_RELEASE: return m->e.held;
	case RELAY_DELETE: return true;
	case RELAY_REQUEUE:
	case RELAY_FLUSH: return !m->e.held && (m->deferred || m->waiting);
	case RELAY_OP_MAX: break;
	}
	return false;
}

int relay_admin(struct relay *r, enum relay_op op, const char *id)
{
	if ((unsigned)op >= RELAY_OP_MAX)
		return -EINVAL;
	if (r->p.keep_only && (op == RELAY_FLUSH || op == RELAY_REQUEUE))
		return -EDESTADDRREQ; /* nowhere to deliver to: say so, do not pretend */
	pthread_mutex_lock(&r->mu);
	if (op == RELAY_FLUSH || op == RELAY_REQUEUE) {
		/* the operator says the next hops are back: stop skipping them */
		for (struct relay_dest *d = r->dests; d; d = d->next)
			d->dead_until_ms = 0;
	}
	size_t cap = 0, n = 0;
	for (struct relay_msg *m = r->all; m; m = m->next)
		cap++;
	struct relay_msg **ms = calloc(cap ? cap : 1, sizeof(*ms));
	if (!ms) {
		pthread_mutex_unlock(&r->mu);
		return -ENOMEM;
	}
	int changed = 0;
	bool found = id == NULL;
	for (struct relay_msg *m = r->all; m; m = m->next) {
		if (id && strcmp(m->e.id, id) != 0)
			continue;
		found = true;
		if (!relay_op_applies(m, op))
			continue;
		changed++;
		if (m->busy) {
			/* a delivery attempt runs: its outcome counts; the change follows */
			m->want_delete |= op == RELAY_DELETE;
			m->want_hold |= op == RELAY_HOLD;
			m->want_release |= op == RELAY_RELEASE;
			if (op == RELAY_HOLD)
				m->want_release = false;
			if (op == RELAY_RELEASE)
				m->want_hold = false;
			continue;
		}
		m->busy = true;
		relay_ready_unlink(r, m);
		ms[n++] = m;
	}
	pthread_mutex_unlock(&r->mu);
	int rc = n ? relay_admin_apply(r, op, ms, n) : 0;
	free(ms);
	if (!found)
		return -ENOENT;
	return rc < 0 ? rc : changed;
}

/* The envelope of an indexed message, without its bytes. */
static int relay_read_envelope(struct relay *r, const struct spool_msg_entry *e,
			       struct spool_record **out, char *err, size_t errlen)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(e->commit_seg, name);
	int fd = openat(r->seg_dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mx_errf(err, errlen, -errno, "segment %s: %s", name, strerror(errno));
	char *buf = malloc(e->env_len ? e->env_len : 1);
	if (!buf) {
		close(fd);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	int rc = spool_pread_all(fd, buf, e->env_len, e->env_off);
	close(fd);
	if (rc < 0)
		rc = mx_errf(err, errlen, rc, "segment %s: %s", name, strerror(-rc));
	else
		rc = spool_envelope_parse(buf, e->env_len, out, err, errlen);
	free(buf);
	return rc;
}

/* One message of a listing: a snapshot taken under the lock. */
struct relay_list_item {
	struct relay_msg_info info;
	struct spool_msg_entry e;
	char *reason;
};

static int relay_list_item_cmp(const void *a, const void *b)
{
	return strcmp(((const struct relay_list_item *)a)->info.id,
		      ((const struct relay_list_item *)b)->info.id);
}

int relay_list(struct relay *r, relay_list_fn *fn, void *ctx)
{
	/* a snapshot, then the envelopes without the lock */
	pthread_mutex_lock(&r->mu);
	size_t n = 0;
	for (struct relay_msg *m = r->all; m; m = m->next)
		n++;
	struct relay_list_item *items = calloc(n ? n : 1, sizeof(*items));
	if (!items) {
		pthread_mutex_unlock(&r->mu);
		return -ENOMEM;
	}
	size_t k = 0;
	int64_t wall_now = (int64_t)time(NULL);
	uint64_t now = relay_now_ms();
	for (struct relay_msg *m = r->all; m; m = m->next) {
		struct relay_list_item *it = &items[k];
		if (spool_msg_entry_copy(&it->e, &m->e) < 0)
			continue;
		bool bounce_pending = false;
		if (!m->e.held) {
			bool any_pending = m->e.nrstate == 0;
			for (uint32_t i = 0; i < m->e.nrstate; i++)
				any_pending |= m->e.rstate[i] == SPOOL_RCPT_PENDING;
			bounce_pending = !any_pending;
		}
		const char *why = m->e.held ? m->e.hold_reason : m->reason;
		it->reason = why ? strdup(why) : NULL;
		it->info = (struct relay_msg_info){
			.size = m->e.size,
			.active = m->busy,
			.held = m->e.held,
			.deferred = m->deferred || m->waiting,
			.bounce_pending = bounce_pending,
			.attempts = m->attempts,
			.next_attempt = m->deferred && m->next_try_ms > now
						? wall_now + (int64_t)((m->next_try_ms - now) / 1000u)
						: 0,
		};
		snprintf(it->info.id, sizeof(it->info.id), "%s", m->e.id);
		k++;
	}
	pthread_mutex_unlock(&r->mu);
	/* ID order is arrival order; a queue of a million must list in n log n */
	qsort(items, k, sizeof(*items), relay_list_item_cmp);
	int rc = 0;
	for (size_t i = 0; i < k; i++) {
		struct relay_list_item *it = &items[i];
		it->info.reason = it->reason;
		it->info.entry = &it->e;
		struct spool_record *rec = NULL;
		char err[256];
		if (rc == 0 && relay_read_envelope(r, &it->e, &rec, err, sizeof(err)) == 0) {
			if (fn(ctx, &it->info, rec) != 0)
				rc = 1;
			spool_record_free(rec);
		}
		spool_msg_entry_clear(&it->e);
		free(it->reason);
	}
	free(items);
	return 0;
}

int relay_read(struct relay *r, const char *id, struct spool_record **out,
		     char *err, size_t errlen)
{
	struct spool_msg_entry e;
	pthread_mutex_lock(&r->mu);
	struct relay_msg *m = relay_find(r, id);
	int rc = m ? spool_msg_entry_copy(&e, &m->e) : -ENOENT;
	pthread_mutex_unlock(&r->mu);
	if (rc == -ENOENT)
		return mx_errf(err, errlen, rc, "%s: no such message in the queue", id);
	if (rc < 0)
		return mx_errf(err, errlen, rc, "out of memory");
	rc = spool_index_read(r->seg_dir_fd, &e, out, err, errlen);
	spool_msg_entry_clear(&e);
	return rc;
}

