/* Start-up recovery and the index of committed messages.
 *
 * spool_recover() scans every segment of SPOOL/seg in order (spool_segment.h) and
 * rebuilds the index of live messages: a message is kept when its COMMIT record is intact
 * and its FRAGMENT records are intact, contiguous, and add up to the committed length
 * and CRC32C. Everything else is discarded and counted, never delivered:
 *   - a torn tail (a record cut short by a crash, or bytes after the last valid record
 *     that hold no valid record further on): truncated when repairing;
 *   - a corrupt region followed by valid records (a flipped bit, a bad sector): skipped;
 *     the records after it are kept;
 *   - orphan fragments (no COMMIT: never acknowledged), and committed messages whose
 *     fragments are missing or do not match.
 * DELIVERY, RETIRE and HOLD records (written by the relay and the queue tool) are applied
 * by ID in file order: a retired message is not live (it is left out of the index); a
 * message with DELIVERY records carries the state and reply text of each recipient
 * (rstate, rtext), so the relay sends only to those still pending; HOLD records set or
 * clear `held`. A message relocated forward (spool_segment.h) is indexed at its newest
 * complete copy.
 * Files in seg/ that are not segments (stale temporary files) are removed when repairing.
 * The mxgate-spoolcat tool calls it without repairing, so it changes nothing on disk. */
#ifndef MXGATE_DATAPLANE_SPOOL_RECOVERY_H
#define MXGATE_DATAPLANE_SPOOL_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/spool/queue_id.h"
#include "dataplane/spool/spool_envelope.h"

struct spool_frag_loc {
	uint64_t seg;
	uint64_t off; /* file offset of the fragment's bytes */
	uint32_t len;
};

struct spool_msg_entry {
	char id[QUEUE_ID_SIZE];
	uint64_t size;
	uint32_t crc;
	uint64_t commit_seg;
	uint64_t env_off; /* file offset of the envelope text in commit_seg */
	uint32_t env_len;
	uint32_t nfrag;
	struct spool_frag_loc *frags;
	/* Per-recipient state from DELIVERY records (enum spool_rcpt_state), indexed by
	 * envelope position; recipients at or past nrstate are pending. NULL when none. */
	uint8_t *rstate;
	uint32_t nrstate;
	/* The next hop's reply from each recipient's last DELIVERY record (NUL-terminated,
	 * malloc'd), indexed like rstate; NULL (the array or an element) when none. The DSN
	 * generator and relocation need it after a restart. */
	char **rtext;
	/* Held (HOLD records, or "hold" in the envelope, the later one winning): the relay
	 * leaves the message alone until it is released. hold_reason is malloc'd or NULL. */
	bool held;
	char *hold_reason;
};

/* The lowest segment number holding any record of m (its oldest fragment or commit):
 * a segment below every live message's floor holds nothing live. */
uint64_t spool_msg_entry_min_seg(const struct spool_msg_entry *m);
/* Release what an entry owns (frags, rstate, rtext, hold_reason). */
void spool_msg_entry_clear(struct spool_msg_entry *m);

/* Bound on a recipient index in a DELIVERY record: an envelope of SPOOL_ENVELOPE_MAX bytes
 * holds fewer recipients than this. */
#define SPOOL_MAX_RCPTS (SPOOL_ENVELOPE_MAX / 8u)

struct spool_index {
	struct spool_msg_entry *msgs; /* sorted by ID (that is, by time) */
	size_t n;
	uint64_t newest_id_us; /* newest ID tick in any record, kept or not */
	uint64_t last_seg;     /* highest segment number present (0: none) */
	uint64_t bytes;        /* bytes the segments occupy after repair (punched holes
				  excluded) */
};

struct spool_recovery_stats {
	unsigned segments;
	unsigned messages;
	unsigned orphans;         /* message IDs with fragments but no COMMIT */
	unsigned bad_messages;    /* COMMIT present but the message does not check out */
	unsigned corrupt_regions; /* invalid bytes followed by valid records */
	unsigned torn_tails;
	uint64_t torn_bytes;
	unsigned stale_files;
	unsigned retired;         /* messages with a RETIRE record (fully delivered) */
	unsigned deliveries;      /* DELIVERY records applied */
	unsigned holds;           /* HOLD records applied */
	unsigned relocated;       /* messages found again later in the spool (a copy) */
	unsigned punched_regions; /* space given back from abandoned messages (not damage) */
	uint64_t punched_bytes;   /* given back now, from fragments a crash left behind */
};

/* How recovery reports what it discards: one line each, no trailing newline. */
typedef void spool_recovery_log_fn(void *ctx, bool warning, const char *line);

/* Scan the segments under seg_dirfd. With repair, truncate torn tails and remove stale
 * files (the writer's start-up); without, only read. Returns 0 and fills idx and st, or a
 * negative errno (an unreadable directory or segment, out of memory) with err. */
int spool_recover(int seg_dirfd, bool repair, struct spool_index *idx,
		  struct spool_recovery_stats *st, spool_recovery_log_fn *log, void *ctx,
		  char *err, size_t errlen);
void spool_index_free(struct spool_index *idx);

const struct spool_msg_entry *spool_index_find(const struct spool_index *idx, const char *id);

/* A deep copy of src (frags, rstate, rtext, hold_reason) into dst. Returns 0 or -ENOMEM
 * (dst is then cleared). */
int spool_msg_entry_copy(struct spool_msg_entry *dst, const struct spool_msg_entry *src);

/* Read one indexed message (envelope and bytes, re-checking the CRC). Returns 0 and *out,
 * or a negative errno with err. */
int spool_index_read(int seg_dirfd, const struct spool_msg_entry *m, struct spool_record **out,
		     char *err, size_t errlen);

/* Open SPOOL/seg read-only (for tools). Returns the descriptor or a negative errno. */
int spool_open_seg_dir(const char *spool_path);

#endif
