/* The spool writer: group commit, results only after the sync, and every failure path
 * through the injectable spool_io (failing fdatasync, short writes, EIO after a short
 * write, ENOSPC), each followed by a recovery that shows what a restart would find.
 *
 * Most tests run the writer without its thread: spool_stop() then processes what is
 * queued on this thread as ONE batch, so "every message of the batch" is exact. One test
 * runs the thread with workers on other threads. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_writer.h"
#include "testing.h"

static char root[256];

static void rm_rf(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

/* ---- the injected file-system calls ---- */

static int fail_sync;        /* errno for fdatasync, 0 = none */
static int fail_write;       /* errno for write, 0 = none */
static size_t write_max;     /* at most this many bytes per write (0 = no limit) */
static int fail_after_short; /* with write_max: the write after a short one fails so */
static unsigned sync_delay_us;
static atomic_uint syncs_seen;

static ssize_t t_write(int fd, const void *buf, size_t n)
{
	static int shorted;
	if (fail_write) {
		errno = fail_write;
		return -1;
	}
	if (fail_after_short && shorted) {
		shorted = 0;
		errno = fail_after_short;
		return -1;
	}
	if (write_max && n > write_max) {
		n = write_max;
		shorted = 1;
	}
	return write(fd, buf, n);
}

/* Messages that must still be pending when fdatasync is called: a result before the
 * sync would be a 250 for bytes that are not durable. */
static struct spool_msg *watch[8];
static int nwatch, early_results;

static int t_fdatasync(int fd)
{
	atomic_fetch_add(&syncs_seen, 1);
	for (int i = 0; i < nwatch; i++)
		if (spool_msg_result(watch[i]) != 1)
			early_results++;
	if (sync_delay_us)
		usleep(sync_delay_us);
	if (fail_sync) {
		errno = fail_sync;
		return -1;
	}
	return fdatasync(fd);
}

static int t_fsync(int fd)
{
	return fsync(fd);
}

static const struct spool_io test_io = { .write = t_write, .fdatasync = t_fdatasync,
					 .fsync = t_fsync };

static void reset_faults(void)
{
	fail_sync = fail_write = fail_after_short = 0;
	write_max = 0;
	sync_delay_us = 0;
}

static uint64_t segment_size; /* 0: the default */

static struct spool *open_spool(uint64_t quota, uint64_t delay_us, unsigned *recovered)
{
	struct spool *s = NULL;
	struct spool_params p = { .path = root, .io = &test_io, .quota = quota,
				  .commit_delay_us = delay_us, .segment_size = segment_size };
	struct spool_recovery_stats st;
	char err[256];
	int rc = spool_open(&s, &p, &st, NULL, NULL, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	if (recovered)
		*recovered = st.messages;
	return s;
}

static unsigned count_segments(void)
{
	char path[300];
	snprintf(path, sizeof(path), "ls '%s/seg' | wc -l", root);
	FILE *f = popen(path, "r");
	unsigned n = 0;
	if (!f || fscanf(f, "%u", &n) != 1)
		n = 0;
	if (f)
		pclose(f);
	return n;
}

/* ---- messages ---- */

static unsigned id_seq;

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;

/* One generator shared by the test's worker threads, so it takes a lock. */
static void next_id(char id[QUEUE_ID_SIZE])
{
	static struct queue_id_gen gen;
	pthread_mutex_lock(&id_lock);
	if (id_seq++ == 0)
		queue_id_gen_init(&gen, 3, 0);
	queue_id_next(&gen, queue_id_clock_us(), id);
	pthread_mutex_unlock(&id_lock);
}

static char *body_of(size_t len, unsigned seed)
{
	char *b = malloc(len + 1);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)('A' + (i * 7 + seed) % 26);
	if (len >= 2) {
		b[len - 2] = '\r';
		b[len - 1] = '\n';
	}
	b[len] = '\0';
	return b;
}

struct tmsg {
	char id[QUEUE_ID_SIZE];
	struct spool_msg *m;
	char *body;
	size_t len;
	int news;
};

static void tmsg_start(struct tmsg *t, struct spool_client *c, size_t len, unsigned seed)
{
	next_id(t->id);
	t->m = spool_msg_new(c, t);
	t->len = len;
	t->body = body_of(len, seed);
	t->news = 0;
	struct spool_envelope env = {
		.queue_id = t->id, .arrival = 1, .client_addr = "192.0.2.7", .client_port = 25,
		.client_name = "unknown", .helo = mx_span_cstr("h"), .protocol = "ESMTP",
		.sender = mx_span_cstr("s@example.org"), .mail_params = mx_span_cstr(""),
	};
	CHECK_INT_EQ(spool_msg_begin(t->m, &env), 0);
	CHECK_INT_EQ(spool_msg_add_rcpt(t->m, mx_span_cstr("r@example.net"), mx_span_cstr("")),
		     0);
}

static void tmsg_send(struct tmsg *t, struct spool_client *c, size_t len, unsigned seed)
{
	tmsg_start(t, c, len, seed);
	CHECK_INT_EQ(spool_msg_append(t->m, t->body, t->len), 0);
	CHECK_INT_EQ(spool_msg_commit(t->m), 0);
	CHECK_INT_EQ(spool_msg_result(t->m), 1); /* nothing before the writer ran */
}

static void on_news(void *owner, void *arg)
{
	(void)arg;
	((struct tmsg *)owner)->news++;
}

static void tmsg_free(struct tmsg *t)
{
	spool_msg_release(t->m);
	free(t->body);
	t->m = NULL;
	t->body = NULL;
}

/* Reopen the spool and check that exactly the messages in `want` (n of them) are there,
 * byte-exact. */
static void check_spool(struct tmsg *want, size_t n)
{
	unsigned recovered = 0;
	struct spool *s = open_spool(0, 0, &recovered);
	const struct spool_index *idx = spool_recovered(s);
	CHECK_INT_EQ(idx->n, n);
	int dirfd = spool_open_seg_dir(root);
	for (size_t i = 0; i < n; i++) {
		const struct spool_msg_entry *e = spool_index_find(idx, want[i].id);
		CHECK(e != NULL);
		if (!e)
			continue;
		struct spool_record *r = NULL;
		char err[256];
		CHECK_INT_EQ(spool_index_read(dirfd, e, &r, err, sizeof(err)), 0);
		if (r) {
			CHECK_INT_EQ(r->size, want[i].len);
			CHECK(memcmp(r->message, want[i].body, want[i].len) == 0);
			CHECK_STR_EQ(r->rcpts[0].addr, "r@example.net");
			spool_record_free(r);
		}
	}
	/* a restart never reissues an ID the spool holds */
	for (size_t i = 0; i < n; i++) {
		uint64_t us;
		queue_id_time_us(want[i].id, &us);
		CHECK(spool_newest_id_us(s) >= us);
	}
	close(dirfd);
	spool_stop(s);
	spool_close(s);
}

/* ---- tests ---- */

static void test_one_batch_one_sync(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	int efd = eventfd(0, EFD_NONBLOCK);
	struct spool_client *c = spool_client_new(s, efd);
	struct tmsg t[5];
	for (int i = 0; i < 4; i++)
		tmsg_send(&t[i], c, 100 + (size_t)i * 1000, (unsigned)i);
	/* a big one: several fragments; with two handed over the sender must wait */
	tmsg_start(&t[4], c, 3 * SPOOL_FRAGMENT_SIZE + 1234, 9);
	CHECK(!spool_msg_busy(t[4].m));
	CHECK_INT_EQ(spool_msg_append(t[4].m, t[4].body, t[4].len), 0);
	CHECK(spool_msg_busy(t[4].m));
	unsigned before = atomic_load(&syncs_seen);
	for (nwatch = 0; nwatch < 4; nwatch++)
		watch[nwatch] = t[nwatch].m;
	spool_stop(s); /* one batch: four commits and the big one's fragments */
	CHECK_INT_EQ(early_results, 0);
	nwatch = 0;
	for (int i = 0; i < 4; i++)
		CHECK_INT_EQ(spool_msg_result(t[i].m), 0);
	CHECK(!spool_msg_busy(t[4].m));
	CHECK_INT_EQ(spool_msg_commit(t[4].m), 0);
	watch[nwatch++] = t[4].m;
	spool_stop(s);
	CHECK_INT_EQ(early_results, 0);
	nwatch = 0;
	uint64_t v = 0;
	CHECK(read(efd, &v, sizeof(v)) == sizeof(v) && v >= 1);
	spool_client_poll(c, on_news, NULL);
	for (int i = 0; i < 5; i++) {
		CHECK_INT_EQ(spool_msg_result(t[i].m), 0);
		CHECK_INT_EQ(t[i].news, 1);
	}
	/* four messages in the first batch: one fdatasync for all of them; one more for the
	 * big one */
	CHECK_INT_EQ(atomic_load(&syncs_seen) - before, 2);
	struct spool_stats st;
	spool_stats(s, &st);
	CHECK_INT_EQ(st.committed, 5);
	for (int i = 0; i < 5; i++)
		spool_msg_release(t[i].m), t[i].m = NULL;
	spool_client_free(c);
	spool_close(s);
	close(efd);
	check_spool(t, 5);
	for (int i = 0; i < 5; i++)
		free(t[i].body);
}

static void test_failed_sync_fails_the_batch(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t[3], streaming, after;
	for (int i = 0; i < 3; i++)
		tmsg_send(&t[i], c, 500, (unsigned)i);
	/* a message whose first fragment is in the failing batch but not yet committed */
	tmsg_start(&streaming, c, SPOOL_FRAGMENT_SIZE + 10, 5);
	CHECK_INT_EQ(spool_msg_append(streaming.m, streaming.body, SPOOL_FRAGMENT_SIZE), 0);
	fail_sync = EIO;
	spool_stop(s);
	for (int i = 0; i < 3; i++)
		CHECK_INT_EQ(spool_msg_result(t[i].m), -EIO);
	/* the streaming message can never be committed now */
	CHECK_INT_EQ(spool_msg_append(streaming.m, streaming.body + SPOOL_FRAGMENT_SIZE, 10), -EIO);
	CHECK_INT_EQ(spool_msg_commit(streaming.m), -EIO);
	/* nothing reached a 250: the sync is not retried */
	fail_sync = 0;
	spool_stop(s);
	for (int i = 0; i < 3; i++)
		CHECK_INT_EQ(spool_msg_result(t[i].m), -EIO);
	/* the writer goes on with a fresh segment; the failed one is never written again */
	CHECK_INT_EQ(count_segments(), 1);
	tmsg_send(&after, c, 300, 7);
	spool_stop(s);
	CHECK_INT_EQ(spool_msg_result(after.m), 0);
	CHECK_INT_EQ(count_segments(), 2);
	for (int i = 0; i < 3; i++)
		tmsg_free(&t[i]);
	tmsg_free(&streaming);
	spool_msg_release(after.m);
	spool_client_free(c);
	spool_close(s);
	/* only the message that got its result 0 comes back */
	check_spool(&after, 1);
	free(after.body);
}

static void test_short_writes(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t[3];
	write_max = 7; /* every write is short: the rest is written after it */
	for (int i = 0; i < 3; i++)
		tmsg_send(&t[i], c, 1000 + (size_t)i * 40000, (unsigned)i);
	spool_stop(s);
	for (int i = 0; i < 3; i++) {
		CHECK_INT_EQ(spool_msg_result(t[i].m), 0);
		spool_msg_release(t[i].m);
	}
	spool_client_free(c);
	spool_close(s);
	reset_faults();
	check_spool(t, 3);
	for (int i = 0; i < 3; i++)
		free(t[i].body);
}

static void test_short_write_then_error(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t[2];
	for (int i = 0; i < 2; i++)
		tmsg_send(&t[i], c, 2000, (unsigned)i);
	write_max = 100;
	fail_after_short = EIO;
	spool_stop(s);
	for (int i = 0; i < 2; i++) {
		CHECK_INT_EQ(spool_msg_result(t[i].m), -EIO);
		tmsg_free(&t[i]);
	}
	spool_client_free(c);
	spool_close(s);
	reset_faults();
	check_spool(NULL, 0);
}

static void test_enospc(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t[2];
	CHECK_INT_EQ(spool_storage_check(s), 0);
	for (int i = 0; i < 2; i++)
		tmsg_send(&t[i], c, 2000, (unsigned)i);
	fail_write = ENOSPC;
	spool_stop(s);
	for (int i = 0; i < 2; i++) {
		CHECK_INT_EQ(spool_msg_result(t[i].m), -ENOSPC);
		tmsg_free(&t[i]);
	}
	/* new messages are refused (452) for a while rather than written into a full disk */
	CHECK_INT_EQ(spool_storage_check(s), -ENOSPC);
	spool_client_free(c);
	spool_close(s);
	reset_faults();
	check_spool(NULL, 0);
}

static void test_quota(void)
{
	rm_rf(root);
	reset_faults();
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_stats st;
	spool_stats(s, &st);
	spool_stop(s);
	spool_close(s);
	s = open_spool(st.bytes + 5000, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t;
	CHECK_INT_EQ(spool_storage_check(s), 0);
	tmsg_send(&t, c, 6000, 1);
	spool_stop(s);
	CHECK_INT_EQ(spool_msg_result(t.m), 0);
	CHECK_INT_EQ(spool_storage_check(s), -EDQUOT);
	tmsg_free(&t);
	spool_client_free(c);
	spool_close(s);
}

static void test_segment_rollover(void)
{
	rm_rf(root);
	reset_faults();
	segment_size = 4096; /* every few records start a new segment */
	struct spool *s = open_spool(0, 0, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	struct tmsg t[8];
	for (int i = 0; i < 8; i++) {
		/* one big message whose fragments land in different segments */
		tmsg_send(&t[i], c, i == 3 ? 2 * SPOOL_FRAGMENT_SIZE + 99 : 1500, (unsigned)i);
		if (i % 2)
			spool_stop(s); /* several batches */
	}
	spool_stop(s);
	for (int i = 0; i < 8; i++) {
		CHECK_INT_EQ(spool_msg_result(t[i].m), 0);
		spool_msg_release(t[i].m);
	}
	spool_client_free(c);
	spool_close(s);
	unsigned n = count_segments();
	CHECK(n >= 6);
	check_spool(t, 8);
	/* each restart starts a fresh segment; the old ones are never appended to */
	CHECK_INT_EQ(count_segments(), n + 1);
	segment_size = 0;
	for (int i = 0; i < 8; i++)
		free(t[i].body);
}

/* ---- the thread, with workers on other threads ---- */

#define WORKERS 4
#define PER_WORKER 25

struct worker_arg {
	struct spool *s;
	int ok, failed;
	double max_ms;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *worker_main(void *arg)
{
	struct worker_arg *w = arg;
	int efd = eventfd(0, EFD_NONBLOCK);
	struct spool_client *c = spool_client_new(w->s, efd);
	for (int i = 0; i < PER_WORKER; i++) {
		struct tmsg *t = calloc(1, sizeof(*t));
		double t0 = now_ms();
		tmsg_send(t, c, 200 + (size_t)i * 10, (unsigned)i);
		while (spool_msg_result(t->m) > 0) {
			struct pollfd pfd = { .fd = efd, .events = POLLIN };
			poll(&pfd, 1, 1000);
			uint64_t v;
			if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				break;
			spool_client_poll(c, on_news, NULL);
		}
		double ms = now_ms() - t0;
		if (ms > w->max_ms)
			w->max_ms = ms;
		if (spool_msg_result(t->m) == 0)
			w->ok++;
		else
			w->failed++;
		tmsg_free(t);
		free(t);
	}
	/* news may still be queued for released messages: freeing the client drops them */
	spool_client_poll(c, on_news, NULL);
	pthread_exit(c);
}

static void test_thread_group_commit(void)
{
	rm_rf(root);
	reset_faults();
	sync_delay_us = 5000; /* a slow disk: 200 syncs/s */
	struct spool *s = open_spool(0, 0, NULL);
	CHECK_INT_EQ(spool_start(s), 0);
	unsigned before = atomic_load(&syncs_seen);
	pthread_t th[WORKERS];
	struct worker_arg wa[WORKERS];
	for (int i = 0; i < WORKERS; i++) {
		wa[i] = (struct worker_arg){ .s = s };
		pthread_create(&th[i], NULL, worker_main, &wa[i]);
	}
	struct spool_client *clients[WORKERS];
	for (int i = 0; i < WORKERS; i++)
		pthread_join(th[i], (void **)&clients[i]);
	spool_stop(s);
	for (int i = 0; i < WORKERS; i++) {
		CHECK_INT_EQ(wa[i].ok, PER_WORKER);
		CHECK_INT_EQ(wa[i].failed, 0);
		spool_client_free(clients[i]);
	}
	unsigned syncs = atomic_load(&syncs_seen) - before;
	/* four writers waiting on each other's syncs share them */
	printf("  %d messages, %u syncs\n", WORKERS * PER_WORKER, syncs);
	CHECK(syncs < WORKERS * PER_WORKER * 3 / 4);
	spool_close(s);

	/* a lone message on an idle spool is not held back (commit delay 0) ... */
	sync_delay_us = 0;
	s = open_spool(0, 0, NULL);
	CHECK_INT_EQ(spool_start(s), 0);
	struct worker_arg one = { .s = s };
	pthread_create(&th[0], NULL, worker_main, &one);
	pthread_join(th[0], (void **)&clients[0]);
	spool_stop(s);
	spool_client_free(clients[0]);
	spool_close(s);
	CHECK_INT_EQ(one.ok, PER_WORKER);
	/* ... and with a commit delay, a batch waits at most that long for company */
	s = open_spool(0, 30000, NULL);
	CHECK_INT_EQ(spool_start(s), 0);
	struct worker_arg delayed = { .s = s };
	double t0 = now_ms();
	pthread_create(&th[0], NULL, worker_main, &delayed);
	pthread_join(th[0], (void **)&clients[0]);
	double total = now_ms() - t0;
	spool_stop(s);
	spool_client_free(clients[0]);
	spool_close(s);
	CHECK_INT_EQ(delayed.ok, PER_WORKER);
	/* each lone message waited for the delay, and not much more */
	CHECK(total >= PER_WORKER * 29.0);
	CHECK(delayed.max_ms < 1000.0);
}

/* ---- space of abandoned messages ---- */

static atomic_uint punches;

static int t_punch(int fd, uint64_t off, uint64_t len)
{
	atomic_fetch_add(&punches, 1);
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static const struct spool_io punch_io = { .write = t_write, .fdatasync = t_fdatasync,
					  .fsync = t_fsync, .punch = t_punch };

static struct spool *open_spool_io(const struct spool_io *io, struct spool_recovery_stats *st)
{
	struct spool *s = NULL;
	struct spool_params p = { .path = root, .io = io };
	char err[256];
	if (spool_open(&s, &p, st, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	return s;
}

static uint64_t spool_bytes_now(struct spool *s)
{
	struct spool_stats st;
	spool_stats(s, &st);
	return st.bytes;
}

/* Wait (at most 5 s) until the running writer has written `want` more bytes. */
static bool wait_written(struct spool *s, uint64_t from, uint64_t want)
{
	for (int i = 0; i < 500; i++) {
		if (spool_bytes_now(s) >= from + want)
			return true;
		usleep(10000);
	}
	return false;
}

static uint64_t seg_dir_blocks_bytes(void)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "du -sk --block-size=1 '%s/seg' | cut -f1", root);
	FILE *f = popen(cmd, "r");
	unsigned long long n = 0;
	if (!f || fscanf(f, "%llu", &n) != 1)
		n = 0;
	if (f)
		pclose(f);
	return n;
}

/* A message released before its commit gives its fragments' space back at once: the
 * quota count and the disk both drop, and a restart reads the holes as space given back,
 * not as damage. */
static void test_abandoned_space(void)
{
	rm_rf(root);
	reset_faults();
	struct spool_recovery_stats st;
	struct spool *s = open_spool_io(&punch_io, &st);
	CHECK_INT_EQ(spool_start(s), 0);
	struct spool_client *c = spool_client_new(s, -1);
	uint64_t before = spool_bytes_now(s), disk_before = seg_dir_blocks_bytes();
	struct tmsg big;
	tmsg_start(&big, c, 300000, 9);
	CHECK_INT_EQ(spool_msg_append(big.m, big.body, big.len), 0);
	CHECK(wait_written(s, before, 4 * 65536));
	tmsg_free(&big); /* abandoned: never committed */
	struct tmsg keep;
	tmsg_send(&keep, c, 5000, 3);
	for (int i = 0; i < 500 && spool_msg_result(keep.m) == 1; i++)
		usleep(10000);
	CHECK_INT_EQ(spool_msg_result(keep.m), 0);
	struct spool_stats ss;
	spool_stats(s, &ss);
	CHECK(ss.punched >= 4 * 65536 - 2 * 4096);
	CHECK(ss.bytes < before + 5000 + 4 * 8192); /* only the kept message and block ends */
	CHECK(seg_dir_blocks_bytes() < disk_before + 5000 + 4 * 8192);
	CHECK(atomic_load(&punches) >= 1);
	spool_stop(s);
	spool_client_free(c);
	spool_close(s);
	/* a restart: the hole is space given back, nothing is damaged, the message is there */
	s = open_spool_io(&punch_io, &st);
	CHECK_INT_EQ(st.messages, 1);
	CHECK_INT_EQ(st.corrupt_regions, 0);
	CHECK_INT_EQ(st.torn_tails, 0);
	CHECK(st.punched_regions >= 1);
	CHECK(spool_bytes_now(s) < before + 5000 + 4 * 8192 + 4096);
	spool_stop(s);
	spool_close(s);
	check_spool(&keep, 1);
	tmsg_free(&keep);
}

/* Fragments a crash left behind (no commit, never released while the writer ran) are
 * punched by the next start's recovery. */
static void test_abandoned_space_after_crash(void)
{
	rm_rf(root);
	reset_faults();
	struct spool_recovery_stats st;
	struct spool *s = open_spool_io(&test_io, &st); /* no punching while it runs */
	CHECK_INT_EQ(spool_start(s), 0);
	struct spool_client *c = spool_client_new(s, -1);
	uint64_t before = spool_bytes_now(s);
	struct tmsg big;
	tmsg_start(&big, c, 400000, 5);
	CHECK_INT_EQ(spool_msg_append(big.m, big.body, big.len), 0);
	CHECK(wait_written(s, before, 6 * 65536));
	spool_stop(s); /* the "crash": the message is still open */
	tmsg_free(&big);
	spool_client_free(c);
	spool_close(s);
	s = open_spool_io(&punch_io, &st);
	CHECK_INT_EQ(st.orphans, 1);
	CHECK(st.punched_bytes >= 6 * 65536 - 2 * 4096);
	CHECK(spool_bytes_now(s) < before + 3 * 8192);
	spool_stop(s);
	spool_close(s);
	s = open_spool_io(&punch_io, &st);
	CHECK_INT_EQ(st.corrupt_regions, 0);
	CHECK(st.punched_regions >= 1);
	spool_stop(s);
	spool_close(s);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-test-writer-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_one_batch_one_sync);
	RUN_TEST(test_failed_sync_fails_the_batch);
	RUN_TEST(test_short_writes);
	RUN_TEST(test_short_write_then_error);
	RUN_TEST(test_enospc);
	RUN_TEST(test_quota);
	RUN_TEST(test_segment_rollover);
	RUN_TEST(test_thread_group_commit);
	RUN_TEST(test_abandoned_space);
	RUN_TEST(test_abandoned_space_after_crash);
	rm_rf(root);
	return TEST_RESULT();
}
