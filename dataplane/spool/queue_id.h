/* Queue IDs: the name of one message in logs, in the Received: header and in the spool.
 *
 * Postfix's long queue ID shape (enable_long_queue_ids = yes), so log tooling that knows
 * those recognises ours:
 *
 *     SSSSSSUUUUzWW      e.g. 4ZhQ5N0Bc9z01
 *     SSSSSS  seconds since the epoch, 6 digits base 52 (fixed width: good until year 2596)
 *     UUUU    microseconds, 4 digits base 52 (fixed width)
 *     z       separator (never a digit of the worker field, as in Postfix)
 *     WW      worker number, 2 digits base 51 (fixed width)
 *
 * The base-52 alphabet is Postfix's: 0-9, then the consonants BCDFGHJKLMNPQRSTVWXYZ and
 * bcdfghjklmnpqrstvwxyz (no vowels, so no words appear by accident). It is in ASCII order,
 * and every field has a fixed width, so IDs compare with strcmp() in time order.
 *
 * Why this is unique without locks:
 *   - across workers: each worker owns its generator and its own WW field;
 *   - within a worker: the time stamp is a strictly increasing microsecond tick
 *     (max(now, last + 1)), so one worker issues at most one ID per microsecond of its
 *     own tick. 1,000,000 IDs/s per worker is far above the 2,500/s that 20k messages/s
 *     on 8 workers asks; a burst faster than that runs the tick ahead of the clock,
 *     which is harmless;
 *   - across restarts: a new process starts ticking at max(now, floor + 1), where floor is
 *     the newest ID still in the spool (spool_dir_newest_id_us()), so a clock that stepped
 *     backwards cannot reissue an ID the spool still holds. The spool also refuses to
 *     overwrite (O_EXCL, RENAME_NOREPLACE) as a last line of defence. */
#ifndef MXGATE_DATAPLANE_SPOOL_QUEUE_ID_H
#define MXGATE_DATAPLANE_SPOOL_QUEUE_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_ID_LEN 13             /* characters in an ID */
#define QUEUE_ID_SIZE (QUEUE_ID_LEN + 1) /* with the NUL */
#define QUEUE_ID_MAX_WORKERS 2601   /* 51 * 51: what the WW field can name */

struct queue_id_gen {
	uint64_t last_us; /* the tick of the last ID issued (or the floor) */
	unsigned worker;
};

/* Start a generator for `worker` (< QUEUE_ID_MAX_WORKERS). IDs it issues have a time
 * strictly after floor_us (0 = no floor). */
void queue_id_gen_init(struct queue_id_gen *g, unsigned worker, uint64_t floor_us);

/* Issue the next ID into out (QUEUE_ID_SIZE bytes, NUL-terminated). now_us is wall-clock
 * microseconds since the epoch (the caller reads the clock). */
void queue_id_next(struct queue_id_gen *g, uint64_t now_us, char out[QUEUE_ID_SIZE]);

/* True when s is exactly a well-formed ID (length, alphabet, separator, ranges). */
bool queue_id_valid(const char *s);

/* The microsecond tick an ID carries. Returns 0, or -EINVAL when s is not a valid ID. */
int queue_id_time_us(const char *s, uint64_t *us);

/* The worker number an ID carries. Returns 0, or -EINVAL when s is not a valid ID. */
int queue_id_worker(const char *s, unsigned *worker);

/* Wall-clock microseconds since the epoch. */
uint64_t queue_id_clock_us(void);

#endif
