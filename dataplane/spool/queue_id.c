#include "dataplane/spool/queue_id.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <time.h>

/* Postfix's "safe" alphabet: digits, then consonants upper and lower case, in ASCII
 * order. The worker field uses the first 51 characters, leaving 'z' as the separator. */
static const char queue_id_alphabet[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

#define QID_BASE 52u
#define QID_WORKER_BASE 51u
#define QID_SEC_DIGITS 6
#define QID_USEC_DIGITS 4
#define QID_WORKER_DIGITS 2
#define QID_SEP 'z'
#define QID_SEP_AT (QID_SEC_DIGITS + QID_USEC_DIGITS)

_Static_assert(sizeof(queue_id_alphabet) == QID_BASE + 1, "alphabet has 52 characters");
_Static_assert(QID_SEP_AT + 1 + QID_WORKER_DIGITS == QUEUE_ID_LEN, "ID layout");
_Static_assert(QID_WORKER_BASE * QID_WORKER_BASE == QUEUE_ID_MAX_WORKERS, "worker field");

/* Value of one ID character in the base-52 alphabet, or -1. */
static int queue_id_digit(char c)
{
	const char *p = c ? strchr(queue_id_alphabet, c) : NULL;
	return p ? (int)(p - queue_id_alphabet) : -1;
}

/* Write v as exactly `width` digits of `base`, most significant first. */
static void queue_id_put(char *out, uint64_t v, unsigned base, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		out[i] = queue_id_alphabet[v % base];
		v /= base;
	}
	assert(v == 0);
}

/* Read `width` digits of `base`; -1 on a character outside that base. */
static int64_t queue_id_get(const char *s, unsigned base, int width)
{
	int64_t v = 0;
	for (int i = 0; i < width; i++) {
		int d = queue_id_digit(s[i]);
		if (d < 0 || (unsigned)d >= base)
			return -1;
		v = v * base + d;
	}
	return v;
}

void queue_id_gen_init(struct queue_id_gen *g, unsigned worker, uint64_t floor_us)
{
	assert(worker < QUEUE_ID_MAX_WORKERS);
	g->worker = worker;
	g->last_us = floor_us;
}

void queue_id_next(struct queue_id_gen *g, uint64_t now_us, char out[QUEUE_ID_SIZE])
{
	/* A strictly increasing tick: two IDs of one worker never share a microsecond, even
	 * when the clock stands still or steps back. */
	uint64_t t = now_us > g->last_us ? now_us : g->last_us + 1;
	g->last_us = t;

	uint64_t sec = t / 1000000u, usec = t % 1000000u;
	queue_id_put(out, sec, QID_BASE, QID_SEC_DIGITS);
	queue_id_put(out + QID_SEC_DIGITS, usec, QID_BASE, QID_USEC_DIGITS);
	out[QID_SEP_AT] = QID_SEP;
	queue_id_put(out + QID_SEP_AT + 1, g->worker, QID_WORKER_BASE, QID_WORKER_DIGITS);
	out[QUEUE_ID_LEN] = '\0';
}

static int queue_id_parse(const char *s, uint64_t *us, unsigned *worker)
{
	if (!s || strnlen(s, QUEUE_ID_LEN + 1) != QUEUE_ID_LEN || s[QID_SEP_AT] != QID_SEP)
		return -EINVAL;
	int64_t sec = queue_id_get(s, QID_BASE, QID_SEC_DIGITS);
	int64_t usec = queue_id_get(s + QID_SEC_DIGITS, QID_BASE, QID_USEC_DIGITS);
	int64_t w = queue_id_get(s + QID_SEP_AT + 1, QID_WORKER_BASE, QID_WORKER_DIGITS);
	if (sec < 0 || usec < 0 || usec >= 1000000 || w < 0)
		return -EINVAL;
	if (us)
		*us = (uint64_t)sec * 1000000u + (uint64_t)usec;
	if (worker)
		*worker = (unsigned)w;
	return 0;
}

bool queue_id_valid(const char *s)
{
	return queue_id_parse(s, NULL, NULL) == 0;
}

int queue_id_time_us(const char *s, uint64_t *us)
{
	return queue_id_parse(s, us, NULL);
}

int queue_id_worker(const char *s, unsigned *worker)
{
	return queue_id_parse(s, NULL, worker);
}

uint64_t queue_id_clock_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
