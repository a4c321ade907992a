/* The spool writer: group commit of messages into segment files (spool_segment.h).
 *
 * "250 means durable" (RFC 5321 6.1): a message's bytes and its COMMIT record are on
 * stable storage (fdatasync) before its 250 leaves. One writer thread per spool
 * directory owns the segment files; workers never do file I/O:
 *
 *   worker                                  writer thread
 *   spool_msg_append() fills a 64 KiB   ->  appends FRAGMENT(ID, offset, bytes) records
 *   fragment buffer; a full one is handed   (buffered, written with write(2))
 *   over (two in flight at most per
 *   message: then spool_msg_busy() and the
 *   connection stops reading until the
 *   writer has taken one: back-pressure)
 *   spool_msg_commit()                  ->  appends COMMIT(ID, length, CRC, envelope)
 *                                           batch = every record taken since the last
 *                                           sync; ONE fdatasync covers the batch
 *   spool_client_poll() on the worker's <-  only after the sync: results posted, the
 *   eventfd: 250, or 451/452                worker's eventfd written
 *
 * Memory per connection is a few fragment buffers whatever the message size: the worker
 * stops feeding a message once two are handed over and not yet taken, so there are at
 * most those two, the one being filled, and what one engine event adds (a header is at
 * most header_size_limit). The queues between workers and writer (spool_handoff.c: a
 * lock-free list per worker, a wake-up only when the writer sleeps) are bounded by the
 * same rule.
 *
 * Batching: the writer syncs as soon as it has taken everything queued (commit_delay 0):
 * while one sync runs, the commits that arrive meanwhile form the next batch, so the batch
 * size follows the load and a lone message is never held. With commit_delay > 0 the
 * writer waits up to that long after the first commit of a batch for more (fewer, larger
 * syncs at the cost of that much latency).
 *
 * Failure: a failed write or fdatasync fails EVERY message with unsynced records in that
 * segment (result -EIO etc.: the worker answers 451 4.3.0, or 452 4.3.1 for ENOSPC and
 * EDQUOT), and closes the segment for good; the writer goes on with a fresh segment. A
 * failed message is never retried into a 250; the unsynced tail of the segment is cut
 * (best effort) so those messages do not come back as duplicates. New segments are made durable (file
 * fdatasync and directory fsync) before any record in them is acknowledged.
 *
 * Abandoned messages: a message released before its commit (RSET, a lost connection, a
 * refusal at the end of data) has its fragment records
 * punched out of their segments (spool_space.c): the disk and mxgate_spool_quota hold only
 * mail that was acknowledged or is still arriving. The relay (the queue manager, which
 * exists even without a next hop) deletes segments no live message needs.
 *
 * Layout: SPOOL/lock (flock: one gateway per spool), SPOOL/seg/ (segments). */
#ifndef MXGATE_DATAPLANE_SPOOL_WRITER_H
#define MXGATE_DATAPLANE_SPOOL_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dataplane/spool/spool_envelope.h"
#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"

#define SPOOL_FRAGMENT_SIZE 65536
#define SPOOL_DEFAULT_SEGMENT_SIZE (64u << 20)

/* The file-system calls of the writer. Production uses spool_io_system; tests substitute
 * failing ones (EIO from fdatasync, short writes, ENOSPC). */
struct spool_io {
	ssize_t (*write)(int fd, const void *buf, size_t n);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	/* Give back the blocks of [off, off + len) (block-aligned), keeping the file's size:
	 * fallocate(FALLOC_FL_PUNCH_HOLE). NULL: not supported, the space waits for its
	 * segment to be reclaimed. */
	int (*punch)(int fd, uint64_t off, uint64_t len);
};

extern const struct spool_io spool_io_system;

struct spool_params {
	const char *path;
	uint64_t commit_delay_us;  /* 0: sync as soon as the queue is empty */
	uint64_t quota;            /* bytes of segments; 0: none */
	uint64_t segment_size;     /* roll over past this; 0: SPOOL_DEFAULT_SEGMENT_SIZE */
	const struct spool_io *io; /* NULL: spool_io_system */
};

struct spool;
struct spool_client;
struct spool_msg;

/* Create (mkdir -p, 0700) and lock the spool, and recover it (spool_recovery.h, with
 * repair), logging through log. Returns 0, or a negative errno with err. */
int spool_open(struct spool **out, const struct spool_params *p,
	       struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx,
	       char *err, size_t errlen);
/* The index recovery built (messages committed before this run). */
const struct spool_index *spool_recovered(const struct spool *s);
/* The floor for queue ID generators: the newest ID tick found in any record. */
uint64_t spool_newest_id_us(const struct spool *s);

/* Start the writer thread. Returns 0 or a negative errno. */
int spool_start(struct spool *s);
/* Process and sync everything queued, then stop the thread. Call once the workers are
 * gone (no spool_msg_* call may follow); idempotent. When the thread was never started,
 * each call processes what is queued on the caller's thread, as one batch (tests use
 * this to make batches deterministic). */
void spool_stop(struct spool *s);
/* After spool_stop() and after every client is freed. */
void spool_close(struct spool *s);

/* 0 when a new message may be taken; -EDQUOT when the spool is over its quota, -ENOSPC
 * for a while after the disk was found full. Callable from any thread. */
int spool_storage_check(const struct spool *s);

struct spool_stats {
	uint64_t syncs;     /* fdatasync calls for batches */
	uint64_t committed; /* messages made durable */
	uint64_t failed;    /* messages failed by the writer */
	uint64_t bytes;     /* bytes the segments occupy (what mxgate_spool_quota counts) */
	uint64_t punched;   /* bytes given back from messages that never became durable */
	uint64_t writer_sleeps;  /* times the writer thread blocked for want of work */
	uint64_t writer_wakeups; /* times a worker (or another thread) had to wake it */
};
void spool_stats(const struct spool *s, struct spool_stats *out);

/* ---- the relay's side (relay.h) ---- */

/* Called on the writer thread, after the sync, for each message that became durable;
 * the entry (with its frags; held and hold_reason from the envelope) belongs to the
 * callee. Set before spool_start(). Relocated copies are not reported here. */
typedef void spool_committed_fn(void *ctx, struct spool_msg_entry *e);
void spool_set_committed_hook(struct spool *s, spool_committed_fn *fn, void *ctx);

/* Append a DELIVERY (recipient rcpt reached state st; text: the next hop's reply) or a
 * RETIRE record for message id. done(arg, rc) is called on the writer thread once the
 * record is durable (rc 0) or failed (a negative errno; the record may or may not be on
 * disk). Returns 0, or a negative errno at once (done is then never called). */
typedef void spool_status_done_fn(void *arg, int rc);
int spool_status_append(struct spool *s, enum spool_rec_type type, const char *id,
			uint32_t rcpt, enum spool_rcpt_state st, const char *text,
			spool_status_done_fn *done, void *arg);

/* Append a HOLD record (held true: hold, false: release; reason: who and why, may be NULL)
 * for message id; done as for spool_status_append(). Returns 0 or a negative errno at once
 * (done is then never called). */
int spool_hold_append(struct spool *s, const char *id, bool held, const char *reason,
		      spool_status_done_fn *done, void *arg);

/* Relocation (compaction, spool_segment.h): copy message e forward into the current
 * segment, on the writer thread: its bytes (read back from the old segments and checked
 * against e->crc), its COMMIT with the same envelope text, a DELIVERY record for every
 * decided recipient (e->rstate, e->rtext) and a HOLD record when e->held differs from the
 * envelope's hold line. done(arg, rc, moved) runs on the writer thread once all of it is
 * durable: rc 0 and `moved` the entry at its new place (frags, commit_seg, env_off; owned
 * by the callee, to be released with spool_msg_entry_clear() and free()), or a negative
 * errno and moved NULL (the message stays where it was; nothing is lost). The caller keeps
 * the message from changing (no DELIVERY, HOLD or RETIRE for it) until done has run.
 * Returns 0, or a negative errno at once (done is then never called). */
typedef void spool_relocate_done_fn(void *arg, int rc, struct spool_msg_entry *moved);
int spool_relocate(struct spool *s, const struct spool_msg_entry *e,
		   spool_relocate_done_fn *done, void *arg);
/* The segment the writer appends to now (its number). */
uint64_t spool_current_segment(struct spool *s);
/* The segment size the writer rolls over at. */
uint64_t spool_segment_size(const struct spool *s);

/* Segments below this number hold no record of a message still being received: the
 * lower of the writer's current segment and the oldest segment of any uncommitted
 * message. The caller reads it BEFORE computing its own floor of live messages. */
uint64_t spool_reclaim_floor(struct spool *s);
/* Delete every segment below `below` (never the current one), then sync the directory.
 * Returns 0 or a negative errno; *removed segments, *freed bytes. */
int spool_reclaim(struct spool *s, uint64_t below, unsigned *removed, uint64_t *freed);
/* SPOOL/seg, for spool_index_read(). */
int spool_seg_dir_fd(const struct spool *s);

/* One per worker thread: where the writer posts news for that worker's messages. The
 * writer writes 1 to wake_fd (an eventfd in the worker's epoll set) when news arrive; a
 * poll loop passes -1 and asks spool_client_pending() each iteration instead. */
struct spool_client *spool_client_new(struct spool *s, int wake_fd);
/* After spool_stop(). */
void spool_client_free(struct spool_client *c);
/* Deliver the news: fn(owner, arg) once for each message with news whose owner is still
 * attached (a result, or room for the next fragment). Worker thread only. */
void spool_client_poll(struct spool_client *c, void (*fn)(void *owner, void *arg), void *arg);
/* True when spool_client_poll() has news to deliver: one atomic load, no lock, for a
 * poll loop that asks every iteration (news posted meanwhile is seen next time). */
bool spool_client_pending(const struct spool_client *c);

/* A message being received. Worker thread only, except where said. Returns NULL when out
 * of memory. owner is handed to spool_client_poll()'s fn. */
struct spool_msg *spool_msg_new(struct spool_client *c, void *owner);
/* The envelope head (queue ID, client, sender). Returns 0 or a negative errno. */
int spool_msg_begin(struct spool_msg *m, const struct spool_envelope *env);
int spool_msg_add_rcpt(struct spool_msg *m, struct mx_span addr, struct mx_span params);
unsigned spool_msg_nrcpt(const struct spool_msg *m);
/* Apply policy's envelope actions (hold, filter, redirect, bcc) once the recipients are
 * all in, before spool_msg_commit(). Returns 0 or a negative errno (sticky). */
int spool_msg_finish_envelope(struct spool_msg *m, const struct spool_envelope_actions *a);
/* Append message bytes. Returns 0 or a negative errno (sticky: the writer failed an
 * earlier fragment, or out of memory). */
int spool_msg_append(struct spool_msg *m, const void *p, size_t n);
uint64_t spool_msg_size(const struct spool_msg *m);
/* True when the message has a fragment in flight and a full one waiting: stop feeding
 * it until spool_client_poll() brings news. */
bool spool_msg_busy(struct spool_msg *m);
/* Hand the message to the writer for commit. Returns 0 (the result comes later) or a
 * negative errno at once. */
int spool_msg_commit(struct spool_msg *m);
/* 1 while pending, 0 once durable, a negative errno when it failed. */
int spool_msg_result(const struct spool_msg *m);
/* The caller is done with the message (committed, failed, or dropped: RSET, lost
 * connection): detach and release it. A message dropped before its result is never
 * reported; if its commit was already handed over it may still become durable. */
void spool_msg_release(struct spool_msg *m);

#endif
