/* The hand-off between workers and the spool's writer thread under stress
 * (dataplane/spool/spool_handoff.c): several producer threads, each with its own client
 * and several messages in flight, random sizes and chunkings, some messages abandoned
 * half-way, a "relay" thread appending HOLD records through the shared list meanwhile,
 * and the writer thread with and without a group-commit delay. Checked:
 *   - every message that was committed gets exactly one result (durable), exactly one
 *     hand-off to the relay's hook, and its bytes in the segment files are the message in
 *     order (read back through the hook's fragment locations: a fragment out of order or
 *     twice would show); no abandoned message is handed off;
 *   - after a restart the index holds exactly the committed messages, byte-exact, with the
 *     relay's HOLDs applied, and recovery finds no damage;
 *   - a ping-pong (one tiny message at a time, so the writer goes to sleep before nearly
 *     every op) never loses a wake-up: a producer that hears nothing for 10 s fails it.
 * The run size scales with MXGATE_SPOOL_STRESS (messages per producer; default 300). Run
 * it under ThreadSanitizer too (meson setup build-tsan -Db_sanitize=thread). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/spool/spool_segment.h"
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

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A small generator per thread (xorshift): no shared state, reproducible per seed. */
static uint64_t rnd(uint64_t *st)
{
	uint64_t x = *st;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *st = x;
}

/* The byte at offset i of the message with this seed: differs between messages and
 * between fragments of one message, so misplaced bytes show. */
static char body_byte(uint64_t seed, uint64_t i)
{
	return (char)('!' + (i * 31 + seed * 7 + (i >> 16) * 13) % 90);
}

/* ---- the file system: no real syncs (durability is not what this tests), and syncs
 * of varying length so the writer's timing varies ---- */

static atomic_uint sync_jitter_state;

static int t_fdatasync(int fd)
{
	(void)fd;
	unsigned v = atomic_fetch_add(&sync_jitter_state, 2654435761u);
	if ((v >> 28) < 4)
		usleep((v >> 16) % 400);
	return 0;
}

static int t_fsync(int fd)
{
	(void)fd;
	return 0;
}

static ssize_t t_write(int fd, const void *p, size_t n)
{
	return write(fd, p, n);
}

static int t_punch(int fd, uint64_t off, uint64_t len)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
}

static const struct spool_io stress_io = { .write = t_write, .fdatasync = t_fdatasync,
					   .fsync = t_fsync, .punch = t_punch };

/* ---- what happened to each message ---- */

enum tm_state { TM_FREE, TM_STREAMING, TM_COMMITTED, TM_DONE, TM_ABANDONED };

struct tmsg {
	char id[QUEUE_ID_SIZE];
	uint64_t seed, len, sent, abandon_at; /* abandon_at: release once sent reaches it */
	enum tm_state state;
	int result;
	int news_after_result; /* spool_client_poll() callbacks that saw the result: at least
				  one (news may merge, and a message's earlier news may be
				  taken after its result was stored) */
	struct spool_msg *m;
	atomic_int handed_off;  /* the committed hook's calls for this ID */
	atomic_bool hold_wanted, hold_done;
};

struct producer {
	struct spool *s;
	unsigned no;
	unsigned nmsg, inflight; /* messages to send, at most this many at once */
	bool use_eventfd;
	size_t max_len;
	struct tmsg *msgs;
	/* results, checked by the main thread */
	unsigned ok, abandoned, failed, stalls;
	char why[200];
};

/* Every message of a run, by ID, for the committed hook (writer thread) and the relay. */
static struct tmsg **all;
static size_t nall;

static int tm_cmp(const void *a, const void *b)
{
	return strcmp((*(struct tmsg *const *)a)->id, (*(struct tmsg *const *)b)->id);
}

static struct tmsg *tm_find(const char *id)
{
	size_t lo = 0, hi = nall;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(all[mid]->id, id);
		if (c == 0)
			return all[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- the relay's side: the committed hook and HOLD records ---- */

static pthread_mutex_t hooked_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spool_msg_entry **hooked;
static size_t nhooked, caphooked;
static atomic_uint hook_unknown, holds_failed, holds_done;

static void on_committed(void *ctx, struct spool_msg_entry *e)
{
	(void)ctx;
	struct tmsg *t = tm_find(e->id);
	if (!t) {
		atomic_fetch_add(&hook_unknown, 1);
		spool_msg_entry_clear(e);
		free(e);
		return;
	}
	atomic_fetch_add(&t->handed_off, 1);
	pthread_mutex_lock(&hooked_mu);
	if (nhooked == caphooked) {
		caphooked = caphooked ? caphooked * 2 : 256;
		hooked = realloc(hooked, caphooked * sizeof(*hooked));
	}
	hooked[nhooked++] = e;
	pthread_mutex_unlock(&hooked_mu);
}

static void on_hold_done(void *arg, int rc)
{
	struct tmsg *t = arg;
	if (rc != 0)
		atomic_fetch_add(&holds_failed, 1);
	atomic_store(&t->hold_done, true);
	atomic_fetch_add(&holds_done, 1);
}

struct relay_arg {
	struct spool *s;
	atomic_bool producers_done;
	unsigned requested;
};

/* Hold every third message handed off, from a thread that has no client: its records go
 * through the shared list while the producers fill their own. */
static void *relay_main(void *arg)
{
	struct relay_arg *r = arg;
	size_t seen = 0;
	for (;;) {
		bool done = atomic_load(&r->producers_done);
		pthread_mutex_lock(&hooked_mu);
		size_t n = nhooked;
		char ids[64][QUEUE_ID_SIZE];
		size_t k = 0;
		for (; seen < n && k < 64; seen++)
			if (seen % 3 == 0)
				memcpy(ids[k++], hooked[seen]->id, QUEUE_ID_SIZE);
		pthread_mutex_unlock(&hooked_mu);
		for (size_t i = 0; i < k; i++) {
			struct tmsg *t = tm_find(ids[i]);
			atomic_store(&t->hold_wanted, true);
			if (spool_hold_append(r->s, ids[i], true, "stress", on_hold_done, t) == 0)
				r->requested++;
			else
				atomic_fetch_add(&holds_failed, 1);
		}
		if (done && seen == n && k == 0)
			break;
		if (k == 0)
			usleep(200);
	}
	return NULL;
}

/* ---- a producer: a worker thread with several messages at once ---- */

static void on_news(void *owner, void *arg)
{
	(void)arg;
	struct tmsg *t = owner;
	if ((t->state == TM_COMMITTED || t->state == TM_DONE) && spool_msg_result(t->m) != 1)
		t->news_after_result++;
}

static void tm_begin(struct producer *p, struct spool_client *c, struct tmsg *t, uint64_t *rs)
{
	t->m = spool_msg_new(c, t);
	/* mostly small, some a few fragments, a few many */
	uint64_t r = rnd(rs) % 100;
	if (r < 60)
		t->len = 1 + rnd(rs) % 4096;
	else if (r < 90)
		t->len = 4097 + rnd(rs) % (2 * SPOOL_FRAGMENT_SIZE);
	else
		t->len = 1 + rnd(rs) % p->max_len;
	t->seed = rnd(rs);
	t->sent = 0;
	t->abandon_at = rnd(rs) % 10 == 0 ? rnd(rs) % (t->len + 1) : UINT64_MAX;
	t->state = TM_STREAMING;
	struct spool_envelope env = {
		.queue_id = t->id, .arrival = 1, .client_addr = "192.0.2.9", .client_port = 25,
		.client_name = "unknown", .helo = mx_span_cstr("h"), .protocol = "ESMTP",
		.sender = mx_span_cstr("s@example.org"), .mail_params = mx_span_cstr(""),
	};
	if (spool_msg_begin(t->m, &env) != 0 ||
	    spool_msg_add_rcpt(t->m, mx_span_cstr("r@example.net"), mx_span_cstr("")) != 0)
		snprintf(p->why, sizeof(p->why), "%s: envelope refused", t->id);
}

/* Move message t on as far as it can go now. Returns true when it did something. */
static bool tm_step(struct producer *p, struct tmsg *t, uint64_t *rs)
{
	char chunk[16384];
	switch (t->state) {
	case TM_STREAMING:
		if (t->sent >= t->abandon_at) {
			spool_msg_release(t->m);
			t->m = NULL;
			t->state = TM_ABANDONED;
			p->abandoned++;
			return true;
		}
		if (t->sent == t->len) {
			int rc = spool_msg_commit(t->m);
			if (rc != 0) {
				snprintf(p->why, sizeof(p->why), "%s: commit: %d", t->id, rc);
				p->failed++;
				spool_msg_release(t->m);
				t->m = NULL;
				t->state = TM_DONE;
				return true;
			}
			t->state = TM_COMMITTED;
			return true;
		}
		if (spool_msg_busy(t->m))
			return false;
		/* a few engine events' worth, as a connection feeds it */
		for (int k = 0; k < 4 && t->sent < t->len && t->sent < t->abandon_at; k++) {
			uint64_t n = 1 + rnd(rs) % sizeof(chunk);
			if (n > t->len - t->sent)
				n = t->len - t->sent;
			for (uint64_t i = 0; i < n; i++)
				chunk[i] = body_byte(t->seed, t->sent + i);
			int rc = spool_msg_append(t->m, chunk, n);
			if (rc != 0) {
				snprintf(p->why, sizeof(p->why), "%s: append: %d", t->id, rc);
				p->failed++;
				spool_msg_release(t->m);
				t->m = NULL;
				t->state = TM_DONE;
				return true;
			}
			t->sent += n;
			if (spool_msg_busy(t->m))
				break;
		}
		return true;
	case TM_COMMITTED: {
		int rc = spool_msg_result(t->m);
		if (rc == 1)
			return false;
		t->result = rc;
		if (rc == 0)
			p->ok++;
		else {
			p->failed++;
			snprintf(p->why, sizeof(p->why), "%s: result %d", t->id, rc);
		}
		/* the news that brought the result may still be on its way: keep the
		 * message until the producer is done, then count its callbacks */
		t->state = TM_DONE;
		return true;
	}
	default:
		return false;
	}
}

static void *producer_main(void *arg)
{
	struct producer *p = arg;
	int efd = p->use_eventfd ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1;
	struct spool_client *c = spool_client_new(p->s, efd);
	uint64_t rs = 0x9e3779b97f4a7c15ull * (p->no + 1);
	unsigned next = 0, live = 0;
	struct tmsg **slots = calloc(p->inflight, sizeof(*slots));
	double last_progress = now_s();
	while (next < p->nmsg || live) {
		bool progress = false;
		for (unsigned i = 0; i < p->inflight; i++) {
			struct tmsg *t = slots[i];
			if (!t && next < p->nmsg) {
				t = slots[i] = &p->msgs[next++];
				tm_begin(p, c, t, &rs);
				live++;
				progress = true;
			}
			if (!t)
				continue;
			progress |= tm_step(p, t, &rs);
			if (t->state == TM_DONE || t->state == TM_ABANDONED) {
				slots[i] = NULL;
				live--;
			}
		}
		if (progress) {
			last_progress = now_s();
			continue;
		}
		/* Everything waits for the writer: wait for news as a worker does. */
		if (efd >= 0) {
			struct pollfd pfd = { .fd = efd, .events = POLLIN };
			if (poll(&pfd, 1, 1000) > 0) {
				uint64_t v;
				(void)!read(efd, &v, sizeof(v));
			}
		} else if (!spool_client_pending(c)) {
			sched_yield();
		}
		spool_client_poll(c, on_news, NULL);
		if (now_s() - last_progress > 10.0) {
			/* a lost wake-up: the writer sleeps with work queued */
			p->stalls++;
			snprintf(p->why, sizeof(p->why), "no news for 10 s (%u live)", live);
			break;
		}
	}
	/* the last results' news */
	spool_client_poll(c, on_news, NULL);
	free(slots);
	if (efd >= 0)
		close(efd);
	return c;
}

/* ---- one run ---- */

struct run_cfg {
	const char *name;
	unsigned producers, per_producer, inflight;
	uint64_t commit_delay_us, segment_size;
	size_t max_len;
	bool relay;
};

/* The bytes of a handed-off message, read back through its fragment locations. */
static bool entry_bytes_ok(int segdir, const struct spool_msg_entry *e, const struct tmsg *t)
{
	uint64_t off = 0;
	char *buf = malloc(SPOOL_FRAGMENT_SIZE);
	bool ok = true;
	for (uint32_t i = 0; ok && i < e->nfrag; i++) {
		const struct spool_frag_loc *f = &e->frags[i];
		char name[SPOOL_SEG_NAME_LEN + 1];
		spool_seg_name(f->seg, name);
		int fd = openat(segdir, name, O_RDONLY | O_CLOEXEC);
		ok = fd >= 0 && f->len <= SPOOL_FRAGMENT_SIZE &&
		     pread(fd, buf, f->len, (off_t)f->off) == (ssize_t)f->len;
		if (fd >= 0)
			close(fd);
		for (uint32_t j = 0; ok && j < f->len; j++)
			ok = buf[j] == body_byte(t->seed, off + j);
		/* every fragment but the last is full */
		ok = ok && (i + 1 == e->nfrag || f->len == SPOOL_FRAGMENT_SIZE);
		off += f->len;
	}
	free(buf);
	return ok && off == t->len;
}

static void run(const struct run_cfg *cfg)
{
	printf("  %s: %u producers x %u messages, %u in flight each, commit delay %llu us\n",
	       cfg->name, cfg->producers, cfg->per_producer, cfg->inflight,
	       (unsigned long long)cfg->commit_delay_us);
	rm_rf(root);
	struct spool *s = NULL;
	struct spool_params sp = { .path = root, .io = &stress_io,
				   .commit_delay_us = cfg->commit_delay_us,
				   .segment_size = cfg->segment_size };
	char err[256];
	if (spool_open(&s, &sp, NULL, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	/* Every ID is issued up front, so that the hook (on the writer thread) and the relay
	 * look messages up in a table that does not change while they run. */
	size_t total = (size_t)cfg->producers * cfg->per_producer;
	struct producer *p = calloc(cfg->producers, sizeof(*p));
	all = calloc(total, sizeof(*all));
	nall = 0;
	for (unsigned i = 0; i < cfg->producers; i++) {
		p[i] = (struct producer){ .s = s, .no = i, .nmsg = cfg->per_producer,
					  .inflight = cfg->inflight, .use_eventfd = i % 2 == 0,
					  .max_len = cfg->max_len };
		p[i].msgs = calloc(cfg->per_producer, sizeof(*p[i].msgs));
		struct queue_id_gen gen;
		queue_id_gen_init(&gen, 10 + i, spool_newest_id_us(s));
		for (unsigned j = 0; j < cfg->per_producer; j++) {
			queue_id_next(&gen, queue_id_clock_us(), p[i].msgs[j].id);
			all[nall++] = &p[i].msgs[j];
		}
	}
	qsort(all, nall, sizeof(*all), tm_cmp);
	spool_set_committed_hook(s, on_committed, NULL);
	nhooked = 0;
	atomic_store(&hook_unknown, 0);
	atomic_store(&holds_failed, 0);
	atomic_store(&holds_done, 0);

	double t0 = now_s();
	CHECK_INT_EQ(spool_start(s), 0);
	pthread_t *th = calloc(cfg->producers, sizeof(*th));
	for (unsigned i = 0; i < cfg->producers; i++)
		pthread_create(&th[i], NULL, producer_main, &p[i]);
	struct relay_arg ra = { .s = s };
	pthread_t rth;
	if (cfg->relay)
		pthread_create(&rth, NULL, relay_main, &ra);
	struct spool_client **clients = calloc(cfg->producers, sizeof(*clients));
	for (unsigned i = 0; i < cfg->producers; i++)
		pthread_join(th[i], (void **)&clients[i]);
	double elapsed = now_s() - t0;
	if (cfg->relay) {
		atomic_store(&ra.producers_done, true);
		pthread_join(rth, NULL);
		/* the last HOLDs are written by the next sync: wait for their completions */
		for (int i = 0; i < 10000 && atomic_load(&holds_done) < ra.requested; i++)
			usleep(1000);
	}
	spool_stop(s);
	struct spool_stats st;
	spool_stats(s, &st);
	/* news posted after a producer's last look (the writer stores a result, then posts
	 * the news): the producers are gone, their clients are this thread's now */
	for (unsigned i = 0; i < cfg->producers; i++)
		spool_client_poll(clients[i], on_news, NULL);

	unsigned ok = 0, abandoned = 0;
	for (unsigned i = 0; i < cfg->producers; i++) {
		if (p[i].why[0])
			fprintf(stderr, "  producer %u: %s\n", i, p[i].why);
		CHECK_INT_EQ(p[i].failed, 0);
		CHECK_INT_EQ(p[i].stalls, 0);
		ok += p[i].ok;
		abandoned += p[i].abandoned;
		if (!p[i].stalls)
			CHECK_INT_EQ(p[i].ok + p[i].abandoned + p[i].failed, cfg->per_producer);
	}
	printf("  %s: %u committed, %u abandoned in %.2f s (%.0f msg/s); %llu syncs, writer "
	       "slept %llu times, woken by producers %llu times\n",
	       cfg->name, ok, abandoned, elapsed, ok / elapsed, (unsigned long long)st.syncs,
	       (unsigned long long)st.writer_sleeps, (unsigned long long)st.writer_wakeups);
	CHECK_INT_EQ(st.committed, ok);
	CHECK_INT_EQ(st.failed, 0);
	CHECK_INT_EQ(atomic_load(&hook_unknown), 0);
	if (cfg->relay) {
		CHECK_INT_EQ(atomic_load(&holds_failed), 0);
		CHECK_INT_EQ(atomic_load(&holds_done), ra.requested);
		CHECK(ra.requested >= ok / 3);
	}

	/* Each message: one result and its news; the hook once, bytes in order. */
	int segdir = spool_open_seg_dir(root);
	CHECK(segdir >= 0);
	unsigned bad_bytes = 0, bad_handoff = 0, bad_news = 0;
	for (unsigned i = 0; i < cfg->producers; i++)
		for (unsigned j = 0; j < cfg->per_producer; j++) {
			struct tmsg *t = &p[i].msgs[j];
			int want = t->state == TM_DONE && t->result == 0;
			if (atomic_load(&t->handed_off) != want)
				bad_handoff++;
			if (want && t->news_after_result < 1)
				bad_news++;
		}
	for (size_t i = 0; i < nhooked; i++) {
		const struct tmsg *t = tm_find(hooked[i]->id);
		if (!t || !entry_bytes_ok(segdir, hooked[i], t))
			bad_bytes++;
	}
	CHECK_INT_EQ(nhooked, ok);
	CHECK_INT_EQ(bad_handoff, 0);
	CHECK_INT_EQ(bad_news, 0);
	CHECK_INT_EQ(bad_bytes, 0);

	for (unsigned i = 0; i < cfg->producers; i++) {
		for (unsigned j = 0; j < cfg->per_producer; j++)
			spool_msg_release(p[i].msgs[j].m);
		spool_client_free(clients[i]);
	}
	spool_close(s);

	/* A restart finds exactly the committed messages, intact, the HOLDs applied. */
	struct spool_recovery_stats rst;
	if (spool_open(&s, &sp, &rst, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	const struct spool_index *idx = spool_recovered(s);
	CHECK_INT_EQ(idx->n, ok);
	CHECK_INT_EQ(rst.bad_messages, 0);
	CHECK_INT_EQ(rst.corrupt_regions, 0);
	CHECK_INT_EQ(rst.torn_tails, 0);
	CHECK_INT_EQ(rst.relocated, 0);
	unsigned missing = 0, wrong = 0, held_wrong = 0;
	for (size_t i = 0; i < nall; i++) {
		const struct tmsg *t = all[i];
		const struct spool_msg_entry *e = spool_index_find(idx, t->id);
		bool want = t->state == TM_DONE && t->result == 0;
		if (!want) {
			wrong += e != NULL;
			continue;
		}
		if (!e) {
			missing++;
			continue;
		}
		if (!entry_bytes_ok(segdir, e, t))
			wrong++;
		if (e->held != atomic_load(&t->hold_done))
			held_wrong++;
	}
	CHECK_INT_EQ(missing, 0);
	CHECK_INT_EQ(wrong, 0);
	CHECK_INT_EQ(held_wrong, 0);
	close(segdir);
	spool_stop(s);
	spool_close(s);

	for (size_t i = 0; i < nhooked; i++) {
		spool_msg_entry_clear(hooked[i]);
		free(hooked[i]);
	}
	nhooked = 0;
	for (unsigned i = 0; i < cfg->producers; i++)
		free(p[i].msgs);
	free(p);
	free(th);
	free(clients);
	free(all);
	all = NULL;
	nall = 0;
}

static unsigned stress_size(void)
{
	const char *e = getenv("MXGATE_SPOOL_STRESS");
	unsigned n = e ? (unsigned)strtoul(e, NULL, 10) : 0;
	return n ? n : 300;
}

/* Many producers, several messages each at once, sizes up to a few fragments and some
 * of many; the writer syncs as soon as it has taken everything. */
static void test_stress_no_delay(void)
{
	struct run_cfg c = { .name = "no delay", .producers = 4, .per_producer = stress_size(),
			     .inflight = 8, .max_len = 12 * SPOOL_FRAGMENT_SIZE, .relay = true };
	run(&c);
}

/* The same with a group-commit delay (the writer's timed wait) and small segments (the
 * writer rolls over while producers stream). */
static void test_stress_commit_delay(void)
{
	struct run_cfg c = { .name = "commit delay", .producers = 4,
			     .per_producer = stress_size(), .inflight = 8,
			     .commit_delay_us = 300, .segment_size = 2u << 20,
			     .max_len = 6 * SPOOL_FRAGMENT_SIZE, .relay = true };
	run(&c);
}

/* One tiny message at a time per producer: the writer runs out of work and goes to sleep
 * between nearly every op, so the sleep/wake race is run thousands of times; a lost
 * wake-up stalls a producer (10 s without news fails the test). */
static void test_ping_pong(void)
{
	struct run_cfg c = { .name = "ping-pong", .producers = 3,
			     .per_producer = 5 * stress_size(), .inflight = 1, .max_len = 64,
			     .relay = false };
	run(&c);
}

/* A transport that fails to start frees its workers' clients while the writer runs: the
 * client is retired, what it queued is still done (a commit made durable, an abort's space
 * given back), and spool_close() frees it. */
static void test_client_freed_while_running(void)
{
	rm_rf(root);
	struct spool *s = NULL;
	struct spool_params sp = { .path = root, .io = &stress_io };
	char err[256];
	if (spool_open(&s, &sp, NULL, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	CHECK_INT_EQ(spool_start(s), 0);
	struct spool_client *c = spool_client_new(s, -1);
	struct queue_id_gen gen;
	queue_id_gen_init(&gen, 7, spool_newest_id_us(s));
	struct tmsg keep = { 0 }, drop = { 0 };
	uint64_t rs = 42;
	queue_id_next(&gen, queue_id_clock_us(), keep.id);
	queue_id_next(&gen, queue_id_clock_us(), drop.id);
	struct producer p = { .s = s, .max_len = 64 };
	tm_begin(&p, c, &keep, &rs);
	tm_begin(&p, c, &drop, &rs);
	char *body = malloc(3 * SPOOL_FRAGMENT_SIZE);
	for (uint64_t i = 0; i < 3 * SPOOL_FRAGMENT_SIZE; i++)
		body[i] = body_byte(drop.seed, i);
	/* two full fragments handed over and written (a fragment of a message released
	 * before the writer takes it is never written), then the abort */
	struct spool_stats st;
	spool_stats(s, &st);
	uint64_t before = st.bytes;
	CHECK_INT_EQ(spool_msg_append(drop.m, body, 2 * SPOOL_FRAGMENT_SIZE), 0);
	for (int i = 0; i < 5000 && st.bytes < before + 2 * SPOOL_FRAGMENT_SIZE; i++) {
		usleep(1000);
		spool_stats(s, &st);
	}
	CHECK(st.bytes >= before + 2 * SPOOL_FRAGMENT_SIZE);
	for (uint64_t i = 0; i < keep.len; i++)
		body[i] = body_byte(keep.seed, i);
	CHECK_INT_EQ(spool_msg_append(keep.m, body, keep.len), 0);
	CHECK_INT_EQ(spool_msg_commit(keep.m), 0);
	spool_msg_release(drop.m);
	spool_client_free(c); /* retired: the writer still takes its ops */
	for (int i = 0; i < 5000 && spool_msg_result(keep.m) == 1; i++)
		usleep(1000);
	CHECK_INT_EQ(spool_msg_result(keep.m), 0);
	spool_msg_release(keep.m);
	spool_stop(s);
	spool_stats(s, &st);
	CHECK_INT_EQ(st.committed, 1);
	CHECK(st.punched > 0);
	spool_close(s); /* frees the retired client */
	free(body);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%s/mxgate-test-handoff-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_stress_no_delay);
	RUN_TEST(test_stress_commit_delay);
	RUN_TEST(test_ping_pong);
	RUN_TEST(test_client_freed_while_running);
	rm_rf(root);
	return TEST_RESULT();
}
