/* Queue IDs: shape, alphabet, time order, and uniqueness across workers, bursts, clock
 * steps and restarts. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/spool/queue_id.h"
#include "testing.h"

static const char alphabet52[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

static int cmp_id(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

/* Sort and count adjacent duplicates. */
static size_t count_duplicates(char (*ids)[QUEUE_ID_SIZE], size_t n)
{
	qsort(ids, n, QUEUE_ID_SIZE, cmp_id);
	size_t dups = 0;
	for (size_t i = 1; i < n; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
			dups++;
	return dups;
}

static void test_shape_and_alphabet(void)
{
	struct queue_id_gen g;
	char id[QUEUE_ID_SIZE];
	/* 2024-11-22 10:14:55.123456 UTC */
	uint64_t t = 1732270495123456ull;

	queue_id_gen_init(&g, 7, 0);
	queue_id_next(&g, t, id);
	CHECK_INT_EQ(strlen(id), QUEUE_ID_LEN);
	CHECK_INT_EQ(id[10], 'z');
	for (size_t i = 0; i < QUEUE_ID_LEN; i++)
		CHECK(strchr(alphabet52, id[i]) != NULL);
	/* No vowels: no accidental words in logs (Postfix's reason for the alphabet). */
	CHECK(strpbrk(id, "AEIOUaeiou") == NULL);
	CHECK(queue_id_valid(id));

	uint64_t us;
	unsigned w;
	CHECK_INT_EQ(queue_id_time_us(id, &us), 0);
	CHECK_INT_EQ(us, t);
	CHECK_INT_EQ(queue_id_worker(id, &w), 0);
	CHECK_INT_EQ(w, 7);

	/* Known encoding: second 0 and microsecond 0 of worker 0 is all zeros. */
	queue_id_gen_init(&g, 0, 0);
	queue_id_next(&g, 0, id);
	/* tick 0 is not above the floor 0, so the generator moves to tick 1 */
	CHECK_STR_EQ(id, "0000000001z00");
	queue_id_gen_init(&g, QUEUE_ID_MAX_WORKERS - 1, 0);
	queue_id_next(&g, 52ull * 1000000u + 51, id);
	CHECK_STR_EQ(id, "000010000zzyy");
}

static void test_invalid(void)
{
	CHECK(!queue_id_valid(NULL));
	CHECK(!queue_id_valid(""));
	CHECK(!queue_id_valid("0000000001z0"));    /* short */
	CHECK(!queue_id_valid("0000000001z000"));  /* long */
	CHECK(!queue_id_valid("0000000001y00"));   /* no separator */
	CHECK(!queue_id_valid("000000000Az00"));   /* vowel */
	CHECK(!queue_id_valid("0000000001z0z"));   /* 'z' is not a worker digit */
	CHECK(!queue_id_valid("000000zzzzz00"));   /* microseconds >= 1000000 */
	CHECK(!queue_id_valid("../../etc/pas"));
	CHECK(queue_id_valid("0000000001z00"));
	uint64_t us = 99;
	CHECK_INT_EQ(queue_id_time_us("bad", &us), -EINVAL);
	CHECK_INT_EQ(us, 99);
}

/* IDs of one worker sort (strcmp) in issue order, even when the clock stands still,
 * steps back, or jumps. */
static void test_ordering(void)
{
	struct queue_id_gen g;
	char prev[QUEUE_ID_SIZE], id[QUEUE_ID_SIZE];
	uint64_t clock[] = { 1732270495000000ull, 1732270495000000ull, 1732270495000000ull,
			     1732270494000000ull, /* stepped back a second */
			     1732270495999999ull, 1732270496000000ull, 1832270496000000ull,
			     1732270496000000ull };

	queue_id_gen_init(&g, 3, 0);
	queue_id_next(&g, clock[0], prev);
	for (size_t i = 1; i < sizeof(clock) / sizeof(clock[0]); i++) {
		queue_id_next(&g, clock[i], id);
		CHECK(strcmp(prev, id) < 0);
		memcpy(prev, id, sizeof(id));
	}

	/* A decade of seconds, in steps: order holds across carries in every digit. */
	queue_id_gen_init(&g, 0, 0);
	queue_id_next(&g, 1, prev);
	for (uint64_t s = 1; s < 315360000ull; s = s * 3 + 7) {
		queue_id_next(&g, s * 1000000u + (s % 1000000u), id);
		CHECK(strcmp(prev, id) < 0);
		memcpy(prev, id, sizeof(id));
	}
}

/* A floor (the newest ID already in the spool) keeps a restarted gateway whose clock went
 * back from reissuing an ID. */
static void test_restart_floor(void)
{
	struct queue_id_gen g;
	char before[QUEUE_ID_SIZE], after[QUEUE_ID_SIZE];
	uint64_t now = 1732270495000000ull, floor_us;

	queue_id_gen_init(&g, 0, 0);
	queue_id_next(&g, now, before);
	CHECK_INT_EQ(queue_id_time_us(before, &floor_us), 0);

	/* restart with the clock 10 s earlier, same worker number */
	queue_id_gen_init(&g, 0, floor_us);
	queue_id_next(&g, now - 10000000u, after);
	CHECK(strcmp(before, after) < 0);
}

/* 20k messages/s on 8 workers for 5 s of simulated time, every worker seeing the same
 * clock (the worst case: ticks collide across workers), plus bursts where the clock does
 * not move at all: no duplicate among 800,000 IDs. */
static void test_uniqueness_simulated(void)
{
	enum { WORKERS = 8, PER_SEC = 20000, SECONDS = 5 };
	size_t n = (size_t)PER_SEC * SECONDS;
	char (*ids)[QUEUE_ID_SIZE] = malloc(n * 8 * QUEUE_ID_SIZE);
	struct queue_id_gen g[WORKERS];
	uint64_t t0 = 1732270495000000ull;
	size_t k = 0;

	CHECK(ids != NULL);
	if (!ids)
		return;
	for (unsigned w = 0; w < WORKERS; w++)
		queue_id_gen_init(&g[w], w, 0);
	/* paced: message i arrives at t0 + i * 50 us, on worker i % 8 */
	for (size_t i = 0; i < n; i++)
		queue_id_next(&g[i % WORKERS], t0 + i * (1000000u / PER_SEC), ids[k++]);
	/* bursts: 8 workers x 75,000 IDs with the clock frozen at one instant */
	for (unsigned w = 0; w < WORKERS; w++)
		for (size_t i = 0; i < (n * 7) / WORKERS; i++)
			queue_id_next(&g[w], t0 + 1000000u, ids[k++]);
	CHECK_INT_EQ(k, n * 8);
	for (size_t i = 0; i < k; i += 9973)
		CHECK(queue_id_valid(ids[i]));
	CHECK_INT_EQ(count_duplicates(ids, k), 0);
	free(ids);
}

/* The same with real threads and the real clock. */
enum { THREADS = 8, PER_THREAD = 25000 };
static char (*thread_ids)[QUEUE_ID_SIZE];

static void *gen_thread(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg;
	struct queue_id_gen g;
	queue_id_gen_init(&g, w, 0);
	for (size_t i = 0; i < PER_THREAD; i++)
		queue_id_next(&g, queue_id_clock_us(), thread_ids[w * PER_THREAD + i]);
	return NULL;
}

static void test_uniqueness_threads(void)
{
	pthread_t th[THREADS];
	thread_ids = malloc((size_t)THREADS * PER_THREAD * QUEUE_ID_SIZE);
	CHECK(thread_ids != NULL);
	if (!thread_ids)
		return;
	for (unsigned w = 0; w < THREADS; w++)
		CHECK_INT_EQ(pthread_create(&th[w], NULL, gen_thread, (void *)(uintptr_t)w), 0);
	for (unsigned w = 0; w < THREADS; w++)
		pthread_join(th[w], NULL);
	/* each thread's sequence is strictly increasing */
	for (unsigned w = 0; w < THREADS; w++)
		for (size_t i = 1; i < PER_THREAD; i++)
			if (strcmp(thread_ids[w * PER_THREAD + i - 1],
				   thread_ids[w * PER_THREAD + i]) >= 0) {
				CHECK(!"per-worker order");
				break;
			}
	CHECK_INT_EQ(count_duplicates(thread_ids, (size_t)THREADS * PER_THREAD), 0);
	free(thread_ids);
}

int main(void)
{
	RUN_TEST(test_shape_and_alphabet);
	RUN_TEST(test_invalid);
	RUN_TEST(test_ordering);
	RUN_TEST(test_restart_floor);
	RUN_TEST(test_uniqueness_simulated);
	RUN_TEST(test_uniqueness_threads);
	return TEST_RESULT();
}
