/* Giving spool space back. Segments are append-only, so space comes back three ways:
 *   - a message that will never be durable (RSET, a lost connection, a refusal at the end of
 *     data) has its fragment records punched out of their segments at once
 *     (fallocate PUNCH_HOLE): the file keeps its size, the blocks go back to the file system,
 *     and neither the disk nor mxgate_spool_quota holds bytes of mail nobody acknowledged;
 *   - a segment that no live message needs any more is deleted (spool_reclaim());
 *   - a live message that pins old, mostly dead segments is copied forward
 *     (spool_relocate()) so that they can be deleted.
 * Recovery knows punched regions (spool_recovery.c) and skips them quietly. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/spool/spool_internal.h"
#include "dataplane/spool/spool_segment.h"

/* ---- accounting ---- */

uint64_t spool_allocated_bytes(const struct stat *sb)
{
	/* what a sparse file occupies: its blocks, never more than its size */
	uint64_t blocks = (uint64_t)sb->st_blocks * 512u, size = (uint64_t)sb->st_size;
	return blocks < size ? blocks : size;
}

void spool_bytes_sub(struct spool *s, uint64_t n)
{
	/* The count is derived from writes, punches and file sizes, which the file system
	 * rounds its own way: never let it wrap below zero. */
	uint64_t cur = atomic_load(&s->bytes);
	while (!atomic_compare_exchange_weak(&s->bytes, &cur, cur > n ? cur - n : 0))
		;
}

/* ---- abandoned messages ---- */

struct spool_extent {
	uint64_t seg, start, end; /* a run of whole records in one segment */
};

/* Punch the whole blocks inside [start, end) of fd. Returns the bytes given back. */
static uint64_t spool_punch(struct spool *s, int fd, uint64_t start, uint64_t end)
{
	uint64_t b = s->blksize;
	uint64_t from = (start + b - 1) / b * b, to = end / b * b;
	if (to <= from || !s->io->punch)
		return 0;
	if (s->io->punch(fd, from, to - from) != 0) {
		if (!s->punch_warned) {
			s->punch_warned = true;
			spool_warn(s, "spool %s: cannot give back the space of abandoned messages "
				      "(fallocate PUNCH_HOLE: %s); it is freed when its segment is "
				      "deleted", s->path, strerror(errno));
		}
		return 0;
	}
	return to - from;
}

static uint64_t spool_punch_extent(struct spool *s, const struct spool_extent *x)
{
	if (x->seg == s->seg_no && s->seg_fd >= 0)
		return spool_punch(s, s->seg_fd, x->start, x->end);
	/* an older segment (or the current one after a failure closed it) */
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(x->seg, name);
	int fd = openat(s->seg_dir_fd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* reclaimed already: nothing to give back */
	uint64_t n = spool_punch(s, fd, x->start, x->end);
	close(fd);
	return n;
}

void spool_do_abort(struct spool *s, struct spool_op *op)
{
	struct spool_msg *m = op->m;
	free(op);
	/* Records still in the stage are not in the file yet: a punch there would be
	 * overwritten by the stage's write. */
	bool staged = false;
	for (uint32_t i = 0; i < m->nlocs; i++)
		staged |= m->locs[i].seg == s->seg_no &&
			  m->locs[i].off + m->locs[i].len + SPOOL_REC_TRAILER > s->seg_len;
	if (staged && s->seg_fd >= 0) {
		int rc = spool_flush_stage(s);
		if (rc < 0)
			spool_fail_segment(s, rc);
	}
	/* Adjacent records (one client sending alone) merge into one run, so only the first
	 * and last partial blocks of the run stay allocated. */
	uint64_t freed = 0;
	struct spool_extent run = { 0 };
	bool have = false;
	for (uint32_t i = 0; i < m->nlocs; i++) {
		const struct spool_frag_loc *f = &m->locs[i];
		struct spool_extent x = { .seg = f->seg,
					  .start = f->off - SPOOL_REC_HEADER - SPOOL_FRAGMENT_HEAD,
					  .end = f->off + f->len + SPOOL_REC_TRAILER };
		if (have && x.seg == run.seg && x.start == run.end) {
			run.end = x.end;
			continue;
		}
		if (have)
			freed += spool_punch_extent(s, &run);
		run = x;
		have = true;
	}
	if (have)
		freed += spool_punch_extent(s, &run);
	m->nlocs = 0;
	if (freed) {
		spool_bytes_sub(s, freed);
		atomic_fetch_add(&s->punched, freed);
	}
	spool_msg_put(m);
}

/* ---- relocation ---- */

/* Read-only descriptors of old segments during one relocation (most messages sit in one
 * or two). */
struct spool_rfd {
	uint64_t seg;
	int fd;
};

static int spool_rfd_get(struct spool *s, struct spool_rfd *c, uint64_t seg)
{
	if (c->fd >= 0 && c->seg == seg)
		return c->fd;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	char name[SPOOL_SEG_NAME_LEN + 1];
	spool_seg_name(seg, name);
	int fd = openat(s->seg_dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	c->seg = seg;
	c->fd = fd;
	return fd;
}

/* Read the message e back: its COMMIT record (checked whole: record CRC, ID, length and
 * CRC as the entry says) and its bytes (checked against e->crc). Nothing is written
 * before this succeeded. */
static int spool_reloc_read(struct spool *s, const struct spool_msg_entry *e, char **env_out,
			    char **msg_out)
{
	int rc;
	struct spool_rfd rfd = { .fd = -1 };
	char *rec = NULL, *msg = NULL;
	/* Records of the current segment may still sit in the stage. */
	bool current = e->commit_seg == s->seg_no;
	for (uint32_t i = 0; i < e->nfrag; i++)
		current |= e->frags[i].seg == s->seg_no;
	if (current && s->seg_fd >= 0 && (rc = spool_flush_stage(s)) < 0) {
		spool_fail_segment(s, rc);
		return rc;
	}
	if (e->env_off < SPOOL_REC_HEADER + SPOOL_COMMIT_HEAD || e->env_len > SPOOL_REC_MAX_PAYLOAD)
		return -EINVAL;
	size_t rsize = spool_rec_size(SPOOL_COMMIT_HEAD + (size_t)e->env_len);
	rec = malloc(rsize);
	msg = malloc(e->size ? e->size : 1);
	if (!rec || !msg) {
		rc = -ENOMEM;
		goto fail;
	}
	int fd = spool_rfd_get(s, &rfd, e->commit_seg);
	if (fd < 0) {
		rc = fd;
		goto fail;
	}
	if ((rc = spool_pread_all(fd, rec, rsize,
				  e->env_off - SPOOL_REC_HEADER - SPOOL_COMMIT_HEAD)) < 0)
		goto fail;
	struct spool_rec r;
	if (spool_rec_parse(rec, rsize, &r) != (long)rsize || r.type != SPOOL_REC_COMMIT ||
	    strcmp(r.id, e->id) != 0 || r.msg_len != e->size || r.msg_crc != e->crc ||
	    r.nfrag != e->nfrag) {
		rc = -EIO; /* not the record the entry names */
		goto fail;
	}
	uint64_t off = 0;
	for (uint32_t i = 0; i < e->nfrag; i++) {
		const struct spool_frag_loc *f = &e->frags[i];
		if (f->len > e->size - off) {
			rc = -EIO;
			goto fail;
		}
		if ((fd = spool_rfd_get(s, &rfd, f->seg)) < 0) {
			rc = fd;
			goto fail;
		}
		if ((rc = spool_pread_all(fd, msg + off, f->len, f->off)) < 0)
			goto fail;
		off += f->len;
	}
	if (off != e->size || spool_crc32c(0, msg, e->size) != e->crc) {
		rc = -EIO;
		goto fail;
	}
	/* the envelope text moves to the front of the buffer */
	memmove(rec, rec + SPOOL_REC_HEADER + SPOOL_COMMIT_HEAD, e->env_len);
	if (rfd.fd >= 0)
		close(rfd.fd);
	*env_out = rec;
	*msg_out = msg;
	return 0;
fail:
	if (rfd.fd >= 0)
		close(rfd.fd);
	free(rec);
	free(msg);
	return rc;
}

void spool_do_relocate(struct spool *s, struct spool_op *op)
{
	const struct spool_msg_entry *e = op->entry;
	char *env = NULL, *msg = NULL, *env_reason = NULL;
	struct spool_frag_loc *locs = NULL;
	int rc = spool_reloc_read(s, e, &env, &msg);
	if (rc < 0)
		goto fail;
	int env_held = spool_hold_of_envelope(env, e->env_len, &env_reason);
	if (env_held < 0) {
		rc = env_held == -EINVAL ? -EIO : env_held;
		goto fail;
	}
	uint32_t nfrag = (uint32_t)((e->size + SPOOL_FRAGMENT_SIZE - 1) / SPOOL_FRAGMENT_SIZE);
	locs = malloc((nfrag ? nfrag : 1) * sizeof(*locs));
	op->moved = calloc(1, sizeof(*op->moved));
	if (!locs || !op->moved || (rc = spool_msg_entry_copy(op->moved, e)) < 0) {
		rc = -ENOMEM;
		goto fail;
	}
	/* The copy: fragments, COMMIT, then the state the message has gathered, so that
	 * the copy needs nothing from the segments it leaves (spool_segment.h). */
	uint64_t at;
	for (uint32_t i = 0; i < nfrag; i++) {
		uint64_t off = (uint64_t)i * SPOOL_FRAGMENT_SIZE;
		size_t len = e->size - off < SPOOL_FRAGMENT_SIZE ? (size_t)(e->size - off)
								 : SPOOL_FRAGMENT_SIZE;
		unsigned char head[SPOOL_FRAGMENT_HEAD];
		spool_rec_fragment_head(head, e->id, off);
		struct iovec iov[2] = { { head, sizeof(head) }, { msg + off, len } };
		if ((rc = spool_put_record(s, SPOOL_REC_FRAGMENT, iov, 2, &at)) < 0)
			goto fail;
		locs[i] = (struct spool_frag_loc){
			.seg = s->seg_no, .off = at + SPOOL_REC_HEADER + SPOOL_FRAGMENT_HEAD,
			.len = (uint32_t)len };
	}
	unsigned char chead[SPOOL_COMMIT_HEAD];
	spool_rec_commit_head(chead, e->id, e->size, e->crc, nfrag);
	struct iovec civ[2] = { { chead, sizeof(chead) }, { env, e->env_len } };
	if ((rc = spool_put_record(s, SPOOL_REC_COMMIT, civ, 2, &at)) < 0)
		goto fail;
	uint64_t commit_seg = s->seg_no, env_off = at + SPOOL_REC_HEADER + SPOOL_COMMIT_HEAD;
	for (uint32_t i = 0; e->rstate && i < e->nrstate; i++) {
		if (e->rstate[i] != SPOOL_RCPT_SENT && e->rstate[i] != SPOOL_RCPT_FAILED)
			continue;
		const char *t = e->rtext ? e->rtext[i] : NULL;
		size_t tl = t ? strnlen(t, SPOOL_DELIVERY_MAX_TEXT) : 0;
		unsigned char dhead[SPOOL_DELIVERY_HEAD];
		spool_rec_delivery_head(dhead, e->id, i, (enum spool_rcpt_state)e->rstate[i]);
		struct iovec div[2] = { { dhead, sizeof(dhead) }, { (void *)(t ? t : ""), tl } };
		if ((rc = spool_put_record(s, SPOOL_REC_DELIVERY, div, 2, &at)) < 0)
			goto fail;
	}
	/* A HOLD record when the envelope alone would say otherwise (held, or why). */
	bool same_reason = env_reason == e->hold_reason ||
			   (env_reason && e->hold_reason && strcmp(env_reason, e->hold_reason) == 0) ||
			   (!env_reason && e->hold_reason && !*e->hold_reason);
	if (e->held != (env_held == 1) || (e->held && !same_reason)) {
		const char *t = e->held ? e->hold_reason : NULL;
		size_t tl = t ? strnlen(t, SPOOL_DELIVERY_MAX_TEXT) : 0;
		unsigned char hhead[SPOOL_HOLD_HEAD];
		spool_rec_hold_head(hhead, e->id, e->held);
		struct iovec hiv[2] = { { hhead, sizeof(hhead) }, { (void *)(t ? t : ""), tl } };
		if ((rc = spool_put_record(s, SPOOL_REC_HOLD, hiv, 2, &at)) < 0)
			goto fail;
	}
	struct spool_msg_entry *mv = op->moved;
	free(mv->frags);
	mv->frags = locs;
	locs = NULL;
	mv->nfrag = nfrag;
	mv->commit_seg = commit_seg;
	mv->env_off = env_off;
	if (s->nrelocs == s->caprelocs) {
		size_t c = s->caprelocs ? s->caprelocs * 2 : 8;
		struct spool_op **a = realloc(s->relocs, c * sizeof(*a));
		if (!a) {
			/* written but not tracked: the copy may come back at the next start;
			 * the old one stays valid, nothing is lost */
			rc = -ENOMEM;
			goto fail;
		}
		s->relocs = a;
		s->caprelocs = c;
	}
	s->relocs[s->nrelocs++] = op;
	free(env);
	free(msg);
	free(env_reason);
	return;
fail:
	free(env);
	free(msg);
	free(env_reason);
	free(locs);
	spool_reloc_finish(op, rc);
}

int spool_relocate(struct spool *s, const struct spool_msg_entry *e,
		   spool_relocate_done_fn *done, void *arg)
{
	assert(queue_id_valid(e->id));
	struct spool_op *op = calloc(1, sizeof(*op));
	if (!op)
		return -ENOMEM;
	op->kind = SPOOL_OP_RELOCATE;
	op->rdone = done;
	op->done_arg = arg;
	memcpy(op->id, e->id, QUEUE_ID_SIZE);
	/* a copy: the caller's entry may change or go before the writer gets to it */
	op->entry = calloc(1, sizeof(*op->entry));
	if (!op->entry || spool_msg_entry_copy(op->entry, e) < 0) {
		free(op->entry);
		free(op);
		return -ENOMEM;
	}
	spool_enqueue(s, op);
	return 0;
}

uint64_t spool_current_segment(struct spool *s)
{
	return atomic_load(&s->cur_seg);
}

uint64_t spool_reclaim_floor(struct spool *s)
{
	/* The current segment first, then the open messages: a message that opens after
	 * the first read writes at or above it (see spool_reclaim()). */
	uint64_t floor = atomic_load(&s->cur_seg);
	pthread_mutex_lock(&s->open_mu);
	for (struct spool_msg *m = s->open_head; m; m = m->open_next)
		if (m->first_seg < floor)
			floor = m->first_seg;
	pthread_mutex_unlock(&s->open_mu);
	return floor;
}

int spool_reclaim(struct spool *s, uint64_t below, unsigned *removed, uint64_t *freed)
{
	*removed = 0;
	*freed = 0;
	pthread_mutex_lock(&s->reclaim_mu);
	if (below <= s->reclaimed_below || below > atomic_load(&s->cur_seg)) {
		pthread_mutex_unlock(&s->reclaim_mu);
		return 0;
	}
	int fd = openat(s->seg_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&s->reclaim_mu);
		return e;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t no;
		if (!spool_seg_parse_name(de->d_name, &no) || no >= below)
			continue;
		struct stat sb;
		uint64_t size = fstatat(s->seg_dir_fd, de->d_name, &sb, 0) == 0
					? spool_allocated_bytes(&sb)
					: 0;
		if (unlinkat(s->seg_dir_fd, de->d_name, 0) != 0) {
			if (errno != ENOENT)
				rc = -errno;
			continue;
		}
		(*removed)++;
		*freed += size;
		spool_bytes_sub(s, size);
	}
	closedir(d);
	/* the removal is durable before anyone counts on the space */
	if (*removed && s->io->fsync(s->seg_dir_fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0)
		s->reclaimed_below = below;
	pthread_mutex_unlock(&s->reclaim_mu);
	return rc;
}
