#include "dataplane/spool/spool_writer.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_internal.h"
#include "dataplane/spool/spool_segment.h"

#include "mxgate/errf.h"
/* After ENOSPC, refuse new messages this long before trying the disk again. */
#define SPOOL_FULL_BACKOFF_MS 1000

/* ---- system calls ---- */

static ssize_t spool_sys_write(int fd, const void *buf, size_t n)
{
	return write(fd, buf, n);
}

static int spool_sys_fdatasync(int fd)
{
	return fdatasync(fd);
}

static int spool_sys_fsync(int fd)
{
	return fsync(fd);
}

static int spool_sys_punch(int fd, uint64_t off, uint64_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

const struct spool_io spool_io_system = {
	.write = spool_sys_write,
	.fdatasync = spool_sys_fdatasync,
	.fsync = spool_sys_fsync,
	.punch = spool_sys_punch,
};


static uint64_t spool_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void spool_warn(struct spool *s, const char *fmt, ...)
{
	if (!s->log)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	s->log(s->log_ctx, true, line);
}

/* ---- messages: references and news ---- */

void spool_msg_get(struct spool_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

static void spool_open_unlink(struct spool_msg *m)
{
	struct spool *s = m->spool;
	pthread_mutex_lock(&s->open_mu);
	if (m->open) {
		if (m->open_prev)
			m->open_prev->open_next = m->open_next;
		else
			s->open_head = m->open_next;
		if (m->open_next)
			m->open_next->open_prev = m->open_prev;
		m->open = false;
	}
	pthread_mutex_unlock(&s->open_mu);
}

static void spool_open_link(struct spool_msg *m, uint64_t seg)
{
	struct spool *s = m->spool;
	pthread_mutex_lock(&s->open_mu);
	if (!m->open) {
		m->open = true;
		m->first_seg = seg;
		m->open_prev = NULL;
		m->open_next = s->open_head;
		if (s->open_head)
			s->open_head->open_prev = m;
		s->open_head = m;
	}
	pthread_mutex_unlock(&s->open_mu);
}

void spool_msg_put(struct spool_msg *m)
{
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* The last reference: nobody else touches m now (the acq_rel above orders every
	 * other thread's accesses before this), so `open` can be read without the lock,
	 * which a committed message (unlinked by spool_finish()) never needs: no lock per
	 * message on the worker's release, and no touching the spool of a message released
	 * after spool_close(). */
	if (m->open)
		spool_open_unlink(m);
	free(m->locs);
	free(m->cur);
	spool_envbuf_free(&m->env);
	free(m);
}

/* ---- the worker's side of a message ---- */

struct spool_msg *spool_msg_new(struct spool_client *c, void *owner)
{
	struct spool_msg *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	atomic_init(&m->refs, 1);
	atomic_init(&m->result, 1);
	m->client = c;
	m->spool = c->s;
	m->owner = owner;
	return m;
}

int spool_msg_begin(struct spool_msg *m, const struct spool_envelope *env)
{
	assert(queue_id_valid(env->queue_id));
	memcpy(m->id, env->queue_id, QUEUE_ID_SIZE);
	return m->error = spool_envbuf_begin(&m->env, env);
}

int spool_msg_add_rcpt(struct spool_msg *m, struct mx_span addr, struct mx_span params)
{
	if (m->error)
		return m->error;
	return m->error = spool_envbuf_add_rcpt(&m->env, addr, params);
}

int spool_msg_finish_envelope(struct spool_msg *m, const struct spool_envelope_actions *a)
{
	if (m->error)
		return m->error;
	return m->error = spool_envbuf_finish(&m->env, a);
}

unsigned spool_msg_nrcpt(const struct spool_msg *m)
{
	return m->env.nrcpt;
}

static void spool_msg_submit_fragment(struct spool_msg *m)
{
	struct spool_op *op = m->cur;
	m->cur = NULL;
	op->m = m;
	op->kind = SPOOL_OP_FRAGMENT;
	op->msg_off = m->size - op->len;
	m->nfrag++;
	spool_msg_get(m);
	atomic_fetch_add(&m->inflight, 1);
	spool_client_enqueue(m->client, op);
}

int spool_msg_append(struct spool_msg *m, const void *p, size_t n)
{
	const char *src = p;
	if (m->error)
		return m->error;
	int we = atomic_load_explicit(&m->werror, memory_order_relaxed);
	if (we)
		return m->error = we;
	while (n) {
		if (!m->cur) {
			m->cur = malloc(sizeof(*m->cur) + SPOOL_FRAGMENT_SIZE);
			if (!m->cur)
				return m->error = -ENOMEM;
			m->cur->len = 0;
		}
		size_t k = SPOOL_FRAGMENT_SIZE - m->cur->len;
		if (k > n)
			k = n;
		memcpy(m->cur->data + m->cur->len, src, k);
		m->crc = spool_crc32c(m->crc, src, k);
		m->cur->len += k;
		m->size += k;
		src += k;
		n -= k;
		if (m->cur->len == SPOOL_FRAGMENT_SIZE)
			spool_msg_submit_fragment(m);
	}
	return 0;
}

uint64_t spool_msg_size(const struct spool_msg *m)
{
	return m->size;
}

bool spool_msg_busy(struct spool_msg *m)
{
	/* Busy = the writer has not taken the fragment handed over before the last one. */
	if (atomic_load(&m->inflight) < 2)
		return false;
	atomic_store(&m->waiting, true);
	/* the writer may have taken one between the two loads: look again */
	if (atomic_load(&m->inflight) < 2) {
		atomic_store(&m->waiting, false);
		return false;
	}
	return true;
}

int spool_msg_commit(struct spool_msg *m)
{
	assert(!m->committed);
	if (m->error)
		return m->error;
	int we = atomic_load(&m->werror);
	if (we)
		return m->error = we;
	if (m->env.nrcpt == 0)
		return m->error = -EINVAL;
	if (m->cur && m->cur->len)
		spool_msg_submit_fragment(m);
	free(m->cur);
	m->cur = NULL;
	struct spool_op *op = malloc(sizeof(*op));
	if (!op)
		return m->error = -ENOMEM;
	*op = (struct spool_op){ .m = m, .kind = SPOOL_OP_COMMIT, .msg_off = m->size,
				 .crc = m->crc, .nfrag = m->nfrag };
	m->committed = true;
	spool_msg_get(m);
	spool_client_enqueue(m->client, op);
	return 0;
}

int spool_msg_result(const struct spool_msg *m)
{
	if (m->error)
		return m->error;
	return atomic_load(&((struct spool_msg *)m)->result);
}

void spool_msg_release(struct spool_msg *m)
{
	if (!m)
		return;
	m->owner = NULL;
	free(m->cur);
	m->cur = NULL;
	atomic_store(&m->released, true);
	/* A message that can no longer become durable (never committed: RSET, a lost
	 * connection, a refusal at the end of data) leaves the records of its fragments
	 * behind: the writer gives their space back. It comes after the message's last
	 * fragment in the queue, and fragments not yet written when it is released never
	 * will be. Once a commit was handed over its COMMIT record may be on disk even if the
	 * batch failed (a sync error whose tail could not be cut): punching its fragments
	 * would turn a harmless duplicate into a damaged message, so those wait for their
	 * segment to be reclaimed. */
	if (m->nfrag && !m->committed) {
		/* A stopped writer takes no more work: the next start's recovery gives the
		 * space back instead. (An abort queued while the writer stops, after its last
		 * look, is dropped by spool_client_free().) */
		struct spool_op *op = spool_stopping(m->spool) ? NULL : malloc(sizeof(*op));
		if (op) {
			*op = (struct spool_op){ .m = m, .kind = SPOOL_OP_ABORT };
			spool_msg_get(m);
			spool_client_enqueue(m->client, op);
		}
		/* without memory the records stay until their segment is reclaimed */
	}
	spool_msg_put(m);
}

/* ---- the writer thread ---- */

static int spool_write_all(struct spool *s, int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t r = s->io->write(fd, p, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		/* A short write is retried for the rest; if the rest cannot be written the
		 * error says why (ENOSPC, EIO). */
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int spool_push_msg(struct spool_msg ***arr, size_t *n, size_t *cap, struct spool_msg *m)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct spool_msg **a = realloc(*arr, c * sizeof(*a));
		if (!a)
			return -ENOMEM;
		*arr = a;
		*cap = c;
	}
	(*arr)[(*n)++] = m;
	return 0;
}

/* The envelope's "hold" line: 1 (reason malloc'd, NULL when empty), 0, or -ENOMEM. */
int spool_hold_of_envelope(const char *env, size_t len, char **reason)
{
	int rc = spool_envelope_hold(env, len, reason);
	if (rc == 1 && *reason && !**reason) {
		free(*reason);
		*reason = NULL;
	}
	return rc;
}

/* A durable message goes to the relay: where its envelope and fragments are. Its
 * locations move to the entry. */
static void spool_hand_off(struct spool *s, struct spool_msg *m)
{
	struct spool_msg_entry *e = calloc(1, sizeof(*e));
	if (!e) {
		/* it is durable: the next start's recovery finds it */
		fprintf(stderr, "mxgate: %s: out of memory handing the message to the relay; "
				"it is delivered after the next restart\n", m->id);
		return;
	}
	memcpy(e->id, m->id, QUEUE_ID_SIZE);
	e->size = m->size;
	e->crc = m->crc;
	e->commit_seg = m->commit_seg;
	e->env_off = m->env_off;
	e->env_len = m->env_len;
	e->nfrag = m->nlocs;
	e->frags = m->locs;
	m->locs = NULL;
	m->nlocs = m->caplocs = 0;
	/* The policy's HOLD travels in the envelope: the relay must see it from the start. */
	int held = spool_hold_of_envelope(m->env.p, m->env.len, &e->hold_reason);
	if (held < 0) {
		/* our own text, so only -ENOMEM: held without the reason beats sending */
		fprintf(stderr, "mxgate: %s: cannot read the envelope's hold line: %s\n", m->id,
			strerror(-held));
		held = memmem(m->env.p, m->env.len, "\nhold ", 6) != NULL;
	}
	e->held = held == 1;
	s->committed_fn(s->committed_ctx, e);
}

static void spool_finish(struct spool *s, struct spool_msg *m, int rc)
{
	if (rc < 0) {
		atomic_fetch_add(&s->failed, 1);
		if (rc == -ENOSPC)
			atomic_store(&s->full_until_ms, spool_now_ms() + SPOOL_FULL_BACKOFF_MS);
	} else {
		atomic_fetch_add(&s->committed, 1);
		if (s->committed_fn)
			spool_hand_off(s, m);
	}
	spool_open_unlink(m);
	atomic_store(&m->result, rc);
	if (!atomic_load(&m->released))
		spool_notify(m);
	spool_msg_put(m);
}

static void spool_status_finish(struct spool_op *op, int rc)
{
	op->done(op->done_arg, rc);
	free(op);
}

static void spool_reloc_free(struct spool_op *op)
{
	if (op->entry) {
		spool_msg_entry_clear(op->entry);
		free(op->entry);
	}
	free(op);
}

/* A relocation's end: the moved entry goes to the caller on success, nowhere on
 * failure (the message stays where it was). */
void spool_reloc_finish(struct spool_op *op, int rc)
{
	struct spool_msg_entry *moved = op->moved;
	op->moved = NULL;
	if (rc < 0 && moved) {
		spool_msg_entry_clear(moved);
		free(moved);
		moved = NULL;
	}
	op->rdone(op->done_arg, rc, moved);
	spool_reloc_free(op);
}

/* A write or sync failed: nothing unsynced in this segment can be trusted. Every message
 * with records in it since the last sync fails, the batch gets its result now, and the
 * segment is never written again. */
void spool_fail_segment(struct spool *s, int rc)
{
	if (s->seg_fd >= 0) {
		/* Best effort: cut what was never acknowledged, so that records of messages
		 * answered 451 do not come back at the next start as duplicates. If even
		 * this fails, recovery may find them: a duplicate, never a loss. */
		if (ftruncate(s->seg_fd, (off_t)s->seg_synced) == 0) {
			spool_bytes_sub(s, s->seg_len - s->seg_synced);
			(void)s->io->fsync(s->seg_fd);
		}
		close(s->seg_fd);
	}
	s->seg_fd = -1;
	s->stage_len = 0;
	for (size_t i = 0; i < s->ndirty; i++) {
		struct spool_msg *m = s->dirty[i];
		int expected = 0;
		atomic_compare_exchange_strong(&m->werror, &expected, rc);
		m->dirty = false;
		spool_msg_put(m);
	}
	s->ndirty = 0;
	for (size_t i = 0; i < s->nbatch; i++)
		spool_finish(s, s->batch[i], rc);
	s->nbatch = 0;
	for (size_t i = 0; i < s->nstatus; i++)
		spool_status_finish(s->status[i], rc);
	s->nstatus = 0;
	for (size_t i = 0; i < s->nrelocs; i++)
		spool_reloc_finish(s->relocs[i], rc);
	s->nrelocs = 0;
}

int spool_flush_stage(struct spool *s)
{
	if (s->stage_len == 0)
		return 0;
	int rc = spool_write_all(s, s->seg_fd, s->stage, s->stage_len);
	if (rc < 0)
		return rc;
	s->seg_len += s->stage_len;
	atomic_fetch_add(&s->bytes, s->stage_len);
	s->stage_len = 0;
	return 0;
}

/* Write out, fdatasync, and post the batch's results. */
static void spool_sync(struct spool *s)
{
	if (s->seg_fd < 0 || (s->nbatch == 0 && s->ndirty == 0 && s->stage_len == 0 &&
			      s->nstatus == 0 && s->nrelocs == 0))
		return;
	int rc = spool_flush_stage(s);
	if (rc == 0 && s->io->fdatasync(s->seg_fd) != 0)
		rc = errno ? -errno : -EIO;
	atomic_fetch_add(&s->syncs, 1);
	if (rc < 0) {
		spool_fail_segment(s, rc);
		return;
	}
	s->seg_synced = s->seg_len;
	for (size_t i = 0; i < s->ndirty; i++) {
		s->dirty[i]->dirty = false;
		spool_msg_put(s->dirty[i]);
	}
	s->ndirty = 0;
	for (size_t i = 0; i < s->nbatch; i++)
		spool_finish(s, s->batch[i], 0);
	s->nbatch = 0;
	for (size_t i = 0; i < s->nstatus; i++)
		spool_status_finish(s->status[i], 0);
	s->nstatus = 0;
	for (size_t i = 0; i < s->nrelocs; i++)
		spool_reloc_finish(s->relocs[i], 0);
	s->nrelocs = 0;
}

/* Between commits: records of messages still being received need no sync of their own
 * (the next commit's fdatasync covers every earlier byte of the segment, and a failed one
 * fails every message still marked dirty), only to leave the stage. Syncing them would
 * cost a flush per message fragment and make the commit that follows wait for it. */
static void spool_write_pending(struct spool *s)
{
	if (s->seg_fd < 0 || s->stage_len == 0)
		return;
	int rc = spool_flush_stage(s);
	if (rc < 0)
		spool_fail_segment(s, rc);
}

/* A new segment, durable (file and directory entry) before any record in it counts. */
static int spool_open_segment(struct spool *s)
{
	char name[SPOOL_SEG_NAME_LEN + 1];
	uint64_t no = s->seg_no + 1;
	spool_seg_name(no, name);
	int fd = openat(s->seg_dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
			0600);
	if (fd < 0)
		return -errno;
	s->seg_no = no; /* never reuse the number, even if this attempt fails */
	unsigned char head[12], rec[SPOOL_REC_OVERHEAD + 12];
	spool_rec_segment_head(head, no);
	struct iovec iov = { head, sizeof(head) };
	size_t n = spool_rec_encode(rec, SPOOL_REC_SEGMENT, &iov, 1);
	int rc = spool_write_all(s, fd, rec, n);
	if (rc == 0 && s->io->fdatasync(fd) != 0)
		rc = errno ? -errno : -EIO;
	if (rc == 0 && s->io->fsync(s->seg_dir_fd) != 0)
		rc = errno ? -errno : -EIO;
	if (rc < 0) {
		close(fd);
		unlinkat(s->seg_dir_fd, name, 0);
		return rc;
	}
	s->seg_fd = fd;
	atomic_store(&s->cur_seg, no);
	s->seg_len = s->seg_synced = n;
	atomic_fetch_add(&s->bytes, n);
	return 0;
}

/* Room for a record of `size` bytes: a segment that is open and below its bound (a full
 * one is synced and closed first), and space in the stage. */
static int spool_room(struct spool *s, size_t size)
{
	int rc;
	uint64_t limit = spool_segment_size(s);
	if (s->seg_fd >= 0 && s->seg_len + s->stage_len + size > limit &&
	    s->seg_len + s->stage_len > SPOOL_REC_OVERHEAD + 12) {
		/* Roll over: the old segment's batch is synced now, then closed. */
		spool_sync(s);
		if (s->seg_fd >= 0)
			close(s->seg_fd);
		s->seg_fd = -1;
	}
	if (s->seg_fd < 0 && (rc = spool_open_segment(s)) < 0)
		return rc;
	if (s->stage_len + size > SPOOL_STAGE_SIZE && (rc = spool_flush_stage(s)) < 0) {
		spool_fail_segment(s, rc);
		return rc;
	}
	return 0;
}

/* Append a record; *at is its file offset in the current segment (s->seg_no). */
int spool_put_record(struct spool *s, enum spool_rec_type type, const struct iovec *iov,
		     int n, uint64_t *at)
{
	size_t payload = 0;
	for (int i = 0; i < n; i++)
		payload += iov[i].iov_len;
	size_t size = spool_rec_size(payload);
	int rc = spool_room(s, size);
	if (rc < 0)
		return rc;
	if (size > SPOOL_STAGE_SIZE) {
		/* bigger than the stage (a huge envelope): write it directly */
		unsigned char *tmp = malloc(size);
		if (!tmp)
			return -ENOMEM;
		spool_rec_encode(tmp, type, iov, n);
		*at = s->seg_len + s->stage_len;
		if ((rc = spool_flush_stage(s)) == 0 &&
		    (rc = spool_write_all(s, s->seg_fd, tmp, size)) == 0) {
			s->seg_len += size;
			atomic_fetch_add(&s->bytes, size);
		}
		free(tmp);
		if (rc < 0)
			spool_fail_segment(s, rc);
		return rc;
	}
	*at = s->seg_len + s->stage_len;
	spool_rec_encode(s->stage + s->stage_len, type, iov, n);
	s->stage_len += size;
	return 0;
}

static void spool_mark_dirty(struct spool *s, struct spool_msg *m)
{
	if (m->dirty)
		return;
	if (spool_push_msg(&s->dirty, &s->ndirty, &s->capdirty, m) < 0) {
		/* cannot track it: fail it rather than risk a 250 for lost bytes */
		int expected = 0;
		atomic_compare_exchange_strong(&m->werror, &expected, -ENOMEM);
		return;
	}
	m->dirty = true;
	spool_msg_get(m);
}

static void spool_do_fragment(struct spool *s, struct spool_op *op)
{
	struct spool_msg *m = op->m;
	if (!atomic_load(&m->released) && atomic_load(&m->werror) == 0) {
		unsigned char head[SPOOL_FRAGMENT_HEAD];
		spool_rec_fragment_head(head, m->id, op->msg_off);
		struct iovec iov[2] = { { head, sizeof(head) }, { op->data, op->len } };
		uint64_t at = 0;
		int rc = spool_put_record(s, SPOOL_REC_FRAGMENT, iov, 2, &at);
		if (rc == 0 && m->nlocs == m->caplocs) {
			uint32_t c = m->caplocs ? m->caplocs * 2 : 4;
			struct spool_frag_loc *l = realloc(m->locs, c * sizeof(*l));
			if (!l)
				rc = -ENOMEM;
			else {
				m->locs = l;
				m->caplocs = c;
			}
		}
		if (rc < 0) {
			int expected = 0;
			atomic_compare_exchange_strong(&m->werror, &expected, rc);
		} else {
			m->locs[m->nlocs++] = (struct spool_frag_loc){
				.seg = s->seg_no, .off = at + SPOOL_REC_HEADER + SPOOL_FRAGMENT_HEAD,
				.len = (uint32_t)op->len };
			spool_open_link(m, s->seg_no);
			spool_mark_dirty(s, m);
		}
	}
	atomic_fetch_sub(&m->inflight, 1);
	if (atomic_exchange(&m->waiting, false) && !atomic_load(&m->released))
		spool_notify(m);
	free(op);
	spool_msg_put(m);
}

static void spool_do_commit(struct spool *s, struct spool_op *op)
{
	struct spool_msg *m = op->m;
	uint64_t len = op->msg_off;
	uint32_t crc = op->crc, nfrag = op->nfrag;
	free(op);
	if (atomic_load(&m->released)) {
		/* dropped (lost connection, shutdown) before it could be answered: its
		 * fragments stay orphans, discarded at the next start */
		spool_msg_put(m);
		return;
	}
	int rc = atomic_load(&m->werror);
	if (rc == 0) {
		unsigned char head[SPOOL_COMMIT_HEAD];
		spool_rec_commit_head(head, m->id, len, crc, nfrag);
		struct iovec iov[2] = { { head, sizeof(head) }, { m->env.p, m->env.len } };
		uint64_t at = 0;
		rc = spool_put_record(s, SPOOL_REC_COMMIT, iov, 2, &at);
		m->commit_seg = s->seg_no;
		m->env_off = at + SPOOL_REC_HEADER + SPOOL_COMMIT_HEAD;
		m->env_len = (uint32_t)m->env.len;
	}
	if (rc < 0) {
		spool_finish(s, m, rc);
		return;
	}
	/* The op's reference moves to the batch. */
	if (spool_push_msg(&s->batch, &s->nbatch, &s->capbatch, m) < 0) {
		/* The record is written but we cannot track the message: fail it. It may
		 * come back at the next start as a message that got 451: a duplicate, never
		 * a loss. */
		spool_finish(s, m, -ENOMEM);
		return;
	}
	spool_mark_dirty(s, m);
}

static void spool_do_status(struct spool *s, struct spool_op *op)
{
	unsigned char head[SPOOL_DELIVERY_HEAD];
	struct iovec iov[2];
	int n = 1;
	if (op->rec_type == SPOOL_REC_DELIVERY) {
		spool_rec_delivery_head(head, op->id, op->rcpt, op->rstate);
		iov[0] = (struct iovec){ head, SPOOL_DELIVERY_HEAD };
		iov[1] = (struct iovec){ op->data, op->len };
		n = 2;
	} else if (op->rec_type == SPOOL_REC_HOLD) {
		spool_rec_hold_head(head, op->id, op->held);
		iov[0] = (struct iovec){ head, SPOOL_HOLD_HEAD };
		iov[1] = (struct iovec){ op->data, op->len };
		n = 2;
	} else {
		spool_rec_retire_head(head, op->id);
		iov[0] = (struct iovec){ head, SPOOL_REC_ID_FIELD };
	}
	uint64_t at;
	int rc = spool_put_record(s, op->rec_type, iov, n, &at);
	if (rc == 0) {
		struct spool_op **a = s->status;
		if (s->nstatus == s->capstatus) {
			size_t c = s->capstatus ? s->capstatus * 2 : 64;
			a = realloc(s->status, c * sizeof(*a));
			if (a) {
				s->status = a;
				s->capstatus = c;
			}
		}
		if (a) {
			s->status[s->nstatus++] = op;
			return;
		}
		rc = -ENOMEM; /* written, but not tracked: the caller retries; harmless */
	}
	spool_status_finish(op, rc);
}



static void spool_process(struct spool *s, struct spool_op *list)
{
	while (list) {
		struct spool_op *op = list;
		list = op->next;
		if (op->kind == SPOOL_OP_FRAGMENT)
			spool_do_fragment(s, op);
		else if (op->kind == SPOOL_OP_COMMIT)
			spool_do_commit(s, op);
		else if (op->kind == SPOOL_OP_RELOCATE)
			spool_do_relocate(s, op);
		else if (op->kind == SPOOL_OP_ABORT)
			spool_do_abort(s, op);
		else
			spool_do_status(s, op);
	}
}

int spool_status_append(struct spool *s, enum spool_rec_type type, const char *id,
			uint32_t rcpt, enum spool_rcpt_state st, const char *text,
			spool_status_done_fn *done, void *arg)
{
	assert(type == SPOOL_REC_DELIVERY || type == SPOOL_REC_RETIRE);
	assert(queue_id_valid(id));
	size_t tl = text ? strlen(text) : 0;
	if (tl > SPOOL_DELIVERY_MAX_TEXT)
		tl = SPOOL_DELIVERY_MAX_TEXT;
	struct spool_op *op = malloc(sizeof(*op) + tl + 1);
	if (!op)
		return -ENOMEM;
	*op = (struct spool_op){ .kind = SPOOL_OP_STATUS, .rec_type = type, .rcpt = rcpt,
				 .rstate = st, .done = done, .done_arg = arg, .len = tl };
	memcpy(op->id, id, QUEUE_ID_SIZE);
	if (tl)
		memcpy(op->data, text, tl);
	spool_enqueue(s, op);
	return 0;
}

int spool_hold_append(struct spool *s, const char *id, bool held, const char *reason,
		      spool_status_done_fn *done, void *arg)
{
	assert(queue_id_valid(id));
	size_t tl = reason ? strnlen(reason, SPOOL_DELIVERY_MAX_TEXT) : 0;
	struct spool_op *op = malloc(sizeof(*op) + tl + 1);
	if (!op)
		return -ENOMEM;
	*op = (struct spool_op){ .kind = SPOOL_OP_STATUS, .rec_type = SPOOL_REC_HOLD,
				 .held = held, .done = done, .done_arg = arg, .len = tl };
	memcpy(op->id, id, QUEUE_ID_SIZE);
	if (tl)
		memcpy(op->data, reason, tl);
	spool_enqueue(s, op);
	return 0;
}


uint64_t spool_segment_size(const struct spool *s)
{
	return s->p.segment_size ? s->p.segment_size : SPOOL_DEFAULT_SEGMENT_SIZE;
}

void spool_set_committed_hook(struct spool *s, spool_committed_fn *fn, void *ctx)
{
	assert(!s->started);
	s->committed_fn = fn;
	s->committed_ctx = ctx;
}


int spool_seg_dir_fd(const struct spool *s)
{
	return s->seg_dir_fd;
}

static uint64_t spool_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The writer thread: take what the workers queued (spool_handoff.c), write it, sync, and
 * sleep when there is nothing to do. */
static void *spool_writer_main(void *arg)
{
	struct spool *s = arg;
	for (;;) {
		struct spool_op *list = spool_take(s);
		if (!list) {
			if (!spool_stopping(s)) {
				spool_writer_sleep(s, 0);
				continue;
			}
			/* stop is set after the workers are gone: what they queued is visible
			 * now, whatever the take above missed */
			if (!(list = spool_take(s)))
				break;
		}
		spool_process(s, list);

		if (s->p.commit_delay_us && s->nbatch) {
			/* Wait for company, at most commit_delay after the first commit, taking
			 * what arrives meanwhile (fragments too: their senders wait for room). */
			uint64_t until = spool_now_us() + s->p.commit_delay_us;
			while (!spool_stopping(s) && s->stage_len < SPOOL_STAGE_SIZE / 2) {
				struct spool_op *more = spool_take(s);
				if (more) {
					spool_process(s, more);
					continue;
				}
				uint64_t now = spool_now_us();
				if (now >= until)
					break;
				spool_writer_sleep(s, until - now);
			}
		}
		if (s->nbatch || s->nstatus || s->nrelocs)
			spool_sync(s);
		else
			spool_write_pending(s);
	}
	spool_sync(s);
	return NULL;
}

/* ---- open, start, stop ---- */

static int spool_mkdirs(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *q = p + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(p, 0700) != 0 && errno != EEXIST) {
			int e = -errno;
			free(p);
			return e;
		}
		*q = '/';
	}
	int rc = 0;
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

static void spool_free(struct spool *s)
{
	if (s->seg_fd >= 0)
		close(s->seg_fd);
	if (s->seg_dir_fd >= 0)
		close(s->seg_dir_fd);
	if (s->root_fd >= 0)
		close(s->root_fd);
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	spool_index_free(&s->index);
	spool_handoff_fini(s);
	pthread_mutex_destroy(&s->open_mu);
	pthread_mutex_destroy(&s->reclaim_mu);
	free(s->status);
	free(s->relocs);
	free(s->stage);
	free(s->batch);
	free(s->dirty);
	free(s->path);
	free(s);
}

int spool_open(struct spool **out, const struct spool_params *p,
	       struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx,
	       char *err, size_t errlen)
{
	int rc;
	if (!p->path || !*p->path)
		return mx_errf(err, errlen, -EINVAL, "no spool directory configured");
	/* aligned: the hand-off's fields each have a cache line (spool_internal.h) */
	struct spool *s = aligned_alloc(_Alignof(struct spool), sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	memset(s, 0, sizeof(*s));
	s->p = *p;
	s->io = p->io ? p->io : &spool_io_system;
	s->log = log;
	s->log_ctx = ctx;
	s->root_fd = s->seg_dir_fd = s->lock_fd = s->seg_fd = -1;
	spool_handoff_init(s);
	pthread_mutex_init(&s->open_mu, NULL);
	pthread_mutex_init(&s->reclaim_mu, NULL);
	s->path = strdup(p->path);
	s->stage = malloc(SPOOL_STAGE_SIZE);
	if (!s->path || !s->stage) {
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	s->p.path = s->path;
	if ((rc = spool_mkdirs(p->path)) < 0) {
		mx_errf(err, errlen, rc, "create spool directory %s: %s", p->path, strerror(-rc));
		goto fail;
	}
	s->root_fd = open(p->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->root_fd < 0) {
		rc = -errno;
		mx_errf(err, errlen, rc, "open spool directory %s: %s", p->path, strerror(-rc));
		goto fail;
	}
	s->lock_fd = openat(s->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		rc = -errno;
		mx_errf(err, errlen, rc, "create %s/lock: %s", p->path, strerror(-rc));
		goto fail;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK)
			rc = mx_errf(err, errlen, -EBUSY,
					"spool directory %s is in use by another mxgate process",
					p->path);
		else
			mx_errf(err, errlen, rc, "lock %s/lock: %s", p->path, strerror(-rc));
		goto fail;
	}
	if (mkdirat(s->root_fd, "seg", 0700) != 0 && errno != EEXIST) {
		rc = -errno;
		mx_errf(err, errlen, rc, "create %s/seg: %s", p->path, strerror(-rc));
		goto fail;
	}
	s->seg_dir_fd = openat(s->root_fd, "seg", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->seg_dir_fd < 0) {
		rc = -errno;
		mx_errf(err, errlen, rc, "open %s/seg: %s", p->path, strerror(-rc));
		goto fail;
	}
	/* seg/ itself must survive a crash before anything in it is acknowledged */
	if (s->io->fsync(s->root_fd) != 0) {
		rc = -errno;
		mx_errf(err, errlen, rc, "sync %s: %s", p->path, strerror(-rc));
		goto fail;
	}
	/* The interim one-file-per-message layout (incoming/) is not read by this version:
	 * say so loudly rather than let acknowledged mail sit unnoticed. */
	int legacy = openat(s->root_fd, "incoming", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (legacy >= 0) {
		DIR *d = fdopendir(legacy);
		unsigned n = 0;
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL)
			n += de->d_name[0] != '.';
		if (d)
			closedir(d);
		else
			close(legacy);
		if (n && log) {
			char line[512];
			snprintf(line, sizeof(line),
				 "%s/incoming holds %u message file(s) in the old one-file-per-"
				 "message format, which this version neither lists nor delivers: "
				 "move them to another MTA's queue by hand",
				 p->path, n);
			log(ctx, true, line);
		}
	}
	struct spool_recovery_stats local;
	if ((rc = spool_recover(s->seg_dir_fd, true, &s->index, st ? st : &local, log, ctx, err,
				errlen)) < 0)
		goto fail;
	s->seg_no = s->index.last_seg;
	atomic_store(&s->bytes, s->index.bytes);
	struct stat sb;
	s->blksize = fstat(s->seg_dir_fd, &sb) == 0 && sb.st_blksize > 0 ? (uint64_t)sb.st_blksize
									  : 4096;
	/* Prove now, not at the first message, that the spool takes a durable segment: the
	 * writer starts on a fresh one (old segments are never appended to). */
	if ((rc = spool_open_segment(s)) < 0) {
		mx_errf(err, errlen, rc, "spool directory %s is not writable: %s", p->path,
			   strerror(-rc));
		goto fail;
	}
	*out = s;
	return 0;
fail:
	spool_free(s);
	return rc;
}

const struct spool_index *spool_recovered(const struct spool *s)
{
	return &s->index;
}

uint64_t spool_newest_id_us(const struct spool *s)
{
	return s->index.newest_id_us;
}

int spool_start(struct spool *s)
{
	int rc = pthread_create(&s->thread, NULL, spool_writer_main, s);
	if (rc != 0)
		return -rc;
	pthread_setname_np(s->thread, "mxgate-spool");
	s->started = true;
	return 0;
}

void spool_stop(struct spool *s)
{
	spool_handoff_stop(s);
	if (s->started) {
		pthread_join(s->thread, NULL);
		s->started = false;
	} else {
		/* never started (tests, an early exit): do the work here */
		spool_process(s, spool_take(s));
		spool_sync(s);
	}
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	assert(!s->started);
	spool_free(s);
}

int spool_storage_check(const struct spool *s)
{
	struct spool *w = (struct spool *)s;
	if (s->p.quota && atomic_load(&w->bytes) >= s->p.quota)
		return -EDQUOT;
	uint64_t until = atomic_load(&w->full_until_ms);
	if (until && spool_now_ms() < until)
		return -ENOSPC;
	return 0;
}

void spool_stats(const struct spool *s, struct spool_stats *out)
{
	struct spool *w = (struct spool *)s;
	out->syncs = atomic_load(&w->syncs);
	out->committed = atomic_load(&w->committed);
	out->failed = atomic_load(&w->failed);
	out->bytes = atomic_load(&w->bytes);
	out->punched = atomic_load(&w->punched);
	out->writer_sleeps = atomic_load(&w->sleeps);
	out->writer_wakeups = atomic_load(&w->wakeups);
}
