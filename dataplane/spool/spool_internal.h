/* The spool's internals, shared by spool_writer.c (the writer thread, messages, clients)
 * and spool_space.c (giving space back: abandoned messages, relocation, reclaim). Nothing
 * outside dataplane/spool/ includes this. */
#ifndef MXGATE_DATAPLANE_SPOOL_INTERNAL_H
#define MXGATE_DATAPLANE_SPOOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dataplane/spool/spool_writer.h"

/* The staging buffer: records are gathered here and written with one write(2) when it
 * is this full, or at the sync. */
#define SPOOL_STAGE_SIZE (1u << 20)

/* ---- objects ---- */

enum spool_op_kind {
	SPOOL_OP_FRAGMENT,
	SPOOL_OP_COMMIT,
	SPOOL_OP_STATUS,
	SPOOL_OP_RELOCATE,
	SPOOL_OP_ABORT, /* a message that will never be durable: free its fragments' space */
	SPOOL_OP_KIND_MAX,
};

/* A unit of work for the writer: a fragment of bytes, or a commit. */
struct spool_op {
	struct spool_op *next;
	struct spool_msg *m;
	enum spool_op_kind kind;
	uint64_t msg_off; /* FRAGMENT: offset; COMMIT: message length */
	uint32_t crc;     /* COMMIT */
	uint32_t nfrag;   /* COMMIT */
	/* STATUS: a DELIVERY, RETIRE or HOLD record for the relay, and its completion */
	enum spool_rec_type rec_type;
	char id[QUEUE_ID_SIZE];
	uint32_t rcpt;
	enum spool_rcpt_state rstate;
	bool held; /* HOLD */
	spool_status_done_fn *done;
	void *done_arg;
	/* RELOCATE: the message as the caller knows it (a deep copy), and once its copy is
	 * written, the entry at the new place */
	struct spool_msg_entry *entry, *moved;
	spool_relocate_done_fn *rdone;
	size_t len;
	char data[];      /* FRAGMENT: SPOOL_FRAGMENT_SIZE bytes; STATUS: reply text */
};

struct spool_msg {
	atomic_int refs;
	struct spool_client *client;
	struct spool *spool;
	/* worker side */
	void *owner;
	char id[QUEUE_ID_SIZE];
	struct spool_envbuf env; /* read by the writer once the commit is handed over */
	struct spool_op *cur;
	uint64_t size;
	uint32_t crc;
	uint32_t nfrag;
	int error;
	bool committed;
	/* shared */
	atomic_uint inflight;  /* fragments handed over, not yet taken by the writer */
	atomic_bool waiting;   /* the worker wants news when inflight drops */
	atomic_int result;     /* 1 pending, 0 durable, < 0 failed */
	atomic_int werror;     /* the writer failed one of its records */
	atomic_bool released;
	/* writer side */
	bool dirty; /* has records in the current segment since the last sync */
	struct spool_frag_loc *locs; /* where its fragments went, for the relay */
	uint32_t nlocs, caplocs;
	uint64_t commit_seg, env_off;
	uint32_t env_len;
	/* open list (under spool->open_mu): fragments on disk, not yet handed on */
	bool open;
	uint64_t first_seg;
	struct spool_msg *open_prev, *open_next;
	/* news for the worker (spool_handoff.c): set by the writer when it links the
	 * message into its client's news list, cleared by the worker as it takes it */
	atomic_bool news_queued;
	struct spool_msg *news_next;
};

/* One per worker thread (spool_handoff.c). The two lists each have their own cache line:
 * `ops` is written by the worker (push) and the writer (take), `news` by the writer
 * (push) and the worker (take). */
struct spool_client {
	struct spool *s;
	int wake_fd;
	struct spool_client *next; /* the spool's clients (s->clients) */
	/* freed by its owner while the writer ran (__atomic): left in the list for the
	 * writer, freed by spool_close() */
	bool retired;
	/* worker -> writer: this client's ops, newest first (a lock-free stack: push with a
	 * compare-and-swap, the writer takes all of it with one exchange) */
	_Alignas(64) struct spool_op *ops;
	/* writer -> worker: messages with news, newest first (the same kind of stack) */
	_Alignas(64) struct spool_msg *news;
};

struct spool {
	struct spool_params p;
	const struct spool_io *io;
	char *path;
	int root_fd, seg_dir_fd, lock_fd;
	struct spool_index index;

	pthread_t thread;
	bool started;
	/* The hand-off (spool_handoff.c). Ops of a message go through its client's list;
	 * ops from threads without a client (the relay's records, relocations, the queue
	 * tool) through `ops`, which any thread may push onto. The writer sleeps on the
	 * futex `sleeping` (1 while it sleeps or is about to); a producer wakes it only
	 * when it finds that 1. */
	_Alignas(64) struct spool_op *ops;
	_Alignas(64) uint32_t sleeping;
	bool stop;                      /* __atomic: set once by spool_stop() */
	struct spool_client *clients;   /* __atomic head; added under clients_mu */
	pthread_mutex_t clients_mu;     /* spool_client_new() and _free() only */
	atomic_uint_fast64_t wakeups;   /* futex wakes producers issued */
	atomic_uint_fast64_t sleeps;    /* times the writer blocked */

	/* writer thread only */
	int seg_fd;          /* -1: none open */
	uint64_t seg_no;     /* the last segment number used */
	uint64_t seg_len;
	uint64_t seg_synced; /* bytes of the segment known durable */
	unsigned char *stage;
	size_t stage_len;
	struct spool_msg **batch; /* commits written since the last sync */
	size_t nbatch, capbatch;
	struct spool_msg **dirty;
	size_t ndirty, capdirty;

	struct spool_op **status; /* STATUS records written since the last sync */
	size_t nstatus, capstatus;
	struct spool_op **relocs; /* relocations written since the last sync */
	size_t nrelocs, caprelocs;

	/* the relay's hand-off (spool_set_committed_hook) */
	spool_committed_fn *committed_fn;
	void *committed_ctx;
	/* messages with fragments on disk that are not committed yet: their segments must
	 * not be reclaimed */
	pthread_mutex_t open_mu;
	struct spool_msg *open_head;
	atomic_uint_fast64_t cur_seg; /* the segment the writer appends to */
	uint64_t reclaimed_below;     /* relay thread: segments below this are gone */
	pthread_mutex_t reclaim_mu;

	/* for the writer's own warnings (the log spool_open() was given) */
	spool_recovery_log_fn *log;
	void *log_ctx;
	/* space of abandoned messages is given back in units of the file system's block */
	uint64_t blksize;
	bool punch_warned;

	atomic_uint_fast64_t bytes; /* allocated in segments: written, less what was punched */
	atomic_uint_fast64_t full_until_ms;
	atomic_uint_fast64_t syncs, committed, failed;
	atomic_uint_fast64_t punched; /* bytes given back from abandoned messages */
};

/* ---- spool_writer.c, for spool_space.c ---- */

void spool_msg_get(struct spool_msg *m);
void spool_msg_put(struct spool_msg *m);

/* ---- spool_handoff.c: the queues between the workers and the writer ---- */

/* Set up and tear down the hand-off's fields of s (fini: after the writer stopped; it
 * frees the clients retired while it ran). */
void spool_handoff_init(struct spool *s);
void spool_handoff_fini(struct spool *s);
/* Queue an op for the writer from any thread (the shared list) and wake the writer if it
 * sleeps. Used for ops that belong to no message: relay records, relocations. */
void spool_enqueue(struct spool *s, struct spool_op *op);
/* Queue an op of one of c's messages (the thread that owns c) and wake the writer if it
 * sleeps. The ops of one message keep their order: the writer takes them first in, first
 * out. */
void spool_client_enqueue(struct spool_client *c, struct spool_op *op);
/* The writer: take every queued op, oldest first for each producer. NULL when none. */
struct spool_op *spool_take(struct spool *s);
/* The writer: block until an op is queued, spool_stop() is called or timeout_us passes
 * (0: no timeout). It may return early (a spurious wake-up): the caller looks again. */
void spool_writer_sleep(struct spool *s, uint64_t timeout_us);
/* Set the stop flag and wake the writer. */
void spool_handoff_stop(struct spool *s);
bool spool_stopping(struct spool *s);
/* Tell the message's worker that something changed (the writer's thread). */
void spool_notify(struct spool_msg *m);
/* Write the stage out (0, or a negative errno: the caller fails the segment). */
int spool_flush_stage(struct spool *s);
/* A write or sync failed: every unsynced message of the segment fails with rc. */
void spool_fail_segment(struct spool *s, int rc);
/* Append a record to the current segment; *at is its offset there (s->seg_no). */
int spool_put_record(struct spool *s, enum spool_rec_type type, const struct iovec *iov,
		     int n, uint64_t *at);
/* The envelope's "hold" line: 1 (reason malloc'd, NULL when empty), 0, or -ENOMEM. */
int spool_hold_of_envelope(const char *env, size_t len, char **reason);
void spool_reloc_finish(struct spool_op *op, int rc);
/* A warning from the writer, through the log spool_open() was given. */
void spool_warn(struct spool *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- spool_space.c ---- */

void spool_do_relocate(struct spool *s, struct spool_op *op);
/* Give back the space of m's fragments (writer thread): m was released before its
 * commit. */
void spool_do_abort(struct spool *s, struct spool_op *op);
/* The bytes a segment file occupies (its blocks, at most its size: punched regions
 * excluded). */
struct stat;
uint64_t spool_allocated_bytes(const struct stat *sb);
/* Take n from the spool's byte count, never below zero. */
void spool_bytes_sub(struct spool *s, uint64_t n);

#endif
