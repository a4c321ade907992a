/* The spool's on-disk format: append-only segment files of self-checking records.
 *
 * A spool directory holds SPOOL/seg/NNNNNNNNNNNNNNNN (16 hex digits, the segment number,
 * increasing). One writer thread appends to one segment at a time (spool_writer.h); a
 * segment is never written again once the writer has moved on, and never modified in
 * place except that recovery truncates a torn tail.
 *
 * Record, all integers little-endian:
 *     0   u32  magic 0x3152584d ("MXR1")
 *     4   u8   type (enum spool_rec_type)
 *     5   u8   0
 *     6   u16  0
 *     8   u32  payload length (<= SPOOL_REC_MAX_PAYLOAD)
 *     12  u32  CRC32C over bytes 4..11 and the payload
 *     16  ...  payload
 *     16+len u32 end marker 0x0a45584d ("MXE\n")
 * A record is valid only when magic, length bound, end marker and CRC all hold, so a torn
 * write (a prefix of the record reached the disk), stale bytes or a flipped bit are all
 * found. Payloads:
 *     SEGMENT   u32 version (1), u64 segment number          first record of every file
 *     FRAGMENT  id[13] 0 0 0, u64 message offset, bytes      a piece of a message
 *     COMMIT    id[13] 0 0 0, u64 message length, u32 CRC32C of the whole message,
 *               u32 number of fragments, envelope text (spool_envelope.h)
 *     DELIVERY  id[13] 0 0 0, u32 recipient index (0-based, envelope order), u8 status
 *               (enum spool_rcpt_state: 1 sent, 2 failed), 0 0 0, the next hop's reply
 *               text (at most SPOOL_DELIVERY_MAX_TEXT bytes; for a future DSN)
 *     RETIRE    id[13] 0 0 0                                   every recipient is done
 *     HOLD      id[13] 0 0 0, u8 held (1 hold, 0 release), 0 0 0, reason text (at most
 *               SPOOL_DELIVERY_MAX_TEXT bytes: who and why, for the logs and mailq)
 * DELIVERY, RETIRE and HOLD records are appended by the relay and the queue tool (through
 * the writer, synced) in any later segment; recovery applies them to the message by ID, in
 * file order (spool_recovery.h).
 * Relocation (compaction): a live message that pins old segments is copied forward: its
 * FRAGMENT records and COMMIT again, under the SAME ID, followed by a DELIVERY record for
 * each decided recipient and a HOLD record when its hold state differs from its envelope's.
 * The later complete COMMIT of an ID supersedes the earlier one; fragments of an ID count
 * only towards the next COMMIT of that ID after them; a COMMIT after a RETIRE of the same ID
 * is ignored (IDs are never reused, so it can only be a copy of a deleted message).
 * A message is the concatenation of its FRAGMENT records in order (offsets 0..length,
 * contiguous; they may span segments); it exists only once its COMMIT record is on disk
 * and its fragments add up to exactly the committed length and CRC. Fragments without a
 * COMMIT are messages that were never acknowledged (lost connection, crash, failed
 * batch). */
#ifndef MXGATE_DATAPLANE_SPOOL_SEGMENT_H
#define MXGATE_DATAPLANE_SPOOL_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dataplane/spool/queue_id.h"
#include "mxgate/span.h"

#define SPOOL_REC_MAGIC 0x3152584du
#define SPOOL_REC_END 0x0a45584du
#define SPOOL_REC_HEADER 16u
#define SPOOL_REC_TRAILER 4u
#define SPOOL_REC_OVERHEAD (SPOOL_REC_HEADER + SPOOL_REC_TRAILER)
#define SPOOL_REC_MAX_PAYLOAD (8u << 20)
#define SPOOL_SEGMENT_VERSION 1u
#define SPOOL_SEG_NAME_LEN 16 /* hex digits */
#define SPOOL_REC_ID_FIELD 16 /* 13-byte ID and 3 zero bytes */
#define SPOOL_FRAGMENT_HEAD (SPOOL_REC_ID_FIELD + 8)
#define SPOOL_COMMIT_HEAD (SPOOL_REC_ID_FIELD + 8 + 4 + 4)

enum spool_rec_type {
	SPOOL_REC_NONE,
	SPOOL_REC_SEGMENT,
	SPOOL_REC_FRAGMENT,
	SPOOL_REC_COMMIT,
	SPOOL_REC_DELIVERY,
	SPOOL_REC_RETIRE,
	SPOOL_REC_HOLD,
	SPOOL_REC_TYPE_MAX,
};

const char *spool_rec_type_name(enum spool_rec_type t);

/* A recipient's delivery state, as DELIVERY records and the relay keep it. */
enum spool_rcpt_state {
	SPOOL_RCPT_PENDING,
	SPOOL_RCPT_SENT,   /* the next hop answered 250 (2xx) */
	SPOOL_RCPT_FAILED, /* the next hop answered 5xx: permanent, a DSN is owed */
	SPOOL_RCPT_STATE_MAX,
};

const char *spool_rcpt_state_name(enum spool_rcpt_state st);

#define SPOOL_DELIVERY_HEAD (SPOOL_REC_ID_FIELD + 8)
#define SPOOL_DELIVERY_MAX_TEXT 1024u

/* CRC32C (Castagnoli), as iSCSI and ext4 use: crc = spool_crc32c(crc, p, n) continues a
 * running value; start from 0. */
uint32_t spool_crc32c(uint32_t crc, const void *p, size_t n);
/* The same by tables on any CPU; spool_crc32c() takes the CPU's instruction where it has one
 * (x86-64 SSE4.2). */
uint32_t spool_crc32c_portable(uint32_t crc, const void *p, size_t n);

/* A record as parsed; pointers point into the caller's buffer. */
struct spool_rec {
	enum spool_rec_type type;
	uint32_t size;             /* whole record, header to end marker */
	char id[QUEUE_ID_SIZE];    /* FRAGMENT, COMMIT */
	uint64_t seg_no;           /* SEGMENT */
	uint64_t msg_off;          /* FRAGMENT: offset in the message */
	uint64_t msg_len;          /* COMMIT */
	uint32_t msg_crc;          /* COMMIT */
	uint32_t nfrag;            /* COMMIT */
	uint32_t rcpt;             /* DELIVERY: recipient index */
	enum spool_rcpt_state rcpt_state; /* DELIVERY: SENT or FAILED */
	bool held;                 /* HOLD: 1 hold, 0 release */
	struct mx_span data;       /* FRAGMENT: bytes; COMMIT: envelope text; DELIVERY: reply;
				    * HOLD: reason */
};

/* Parse the record at p[0..n). Returns its size (> 0), 0 when p holds only a prefix of
 * a record that may be valid (a torn write at the end of a file looks like this), or
 * -EINVAL when it is no valid record (bad magic, length, CRC, end marker or payload). */
long spool_rec_parse(const void *p, size_t n, struct spool_rec *out);

/* Bytes of a record with this payload length. */
static inline size_t spool_rec_size(size_t payload)
{
	return SPOOL_REC_OVERHEAD + payload;
}

/* Write a record of `type` whose payload is the concatenation of parts into dst, which
 * has room for spool_rec_size(total). Returns the record size. */
size_t spool_rec_encode(void *dst, enum spool_rec_type type, const struct iovec *parts,
			int nparts);

/* The fixed payload heads, for spool_rec_encode()'s first part. */
void spool_rec_segment_head(unsigned char out[12], uint64_t seg_no);
void spool_rec_fragment_head(unsigned char out[SPOOL_FRAGMENT_HEAD], const char *id,
			     uint64_t msg_off);
void spool_rec_commit_head(unsigned char out[SPOOL_COMMIT_HEAD], const char *id,
			   uint64_t msg_len, uint32_t msg_crc, uint32_t nfrag);

/* DELIVERY's and RETIRE's payload head (RETIRE's is the first SPOOL_REC_ID_FIELD bytes). */
void spool_rec_delivery_head(unsigned char out[SPOOL_DELIVERY_HEAD], const char *id,
			     uint32_t rcpt, enum spool_rcpt_state st);
void spool_rec_retire_head(unsigned char out[SPOOL_REC_ID_FIELD], const char *id);
#define SPOOL_HOLD_HEAD (SPOOL_REC_ID_FIELD + 4)
void spool_rec_hold_head(unsigned char out[SPOOL_HOLD_HEAD], const char *id, bool held);

/* Read exactly n bytes at off (retrying short reads and EINTR). Returns 0, -EIO when the
 * file ends first, or a negative errno. */
int spool_pread_all(int fd, void *buf, size_t n, uint64_t off);

/* "0000000000000001" for segment 1 (buf has SPOOL_SEG_NAME_LEN + 1 bytes); parse back. */
void spool_seg_name(uint64_t seg_no, char *buf);
bool spool_seg_parse_name(const char *name, uint64_t *seg_no);

#endif
