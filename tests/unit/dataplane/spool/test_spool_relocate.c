/* Relocation (compaction) of spooled messages, spool_segment.h and spool_writer.h:
 *
 *   - a message with recipient states, reply texts and a hold is copied forward; the
 *     copy reads back byte for byte, and recovery indexes it there with every state;
 *     after the old segments are reclaimed it is still found, with its states;
 *   - the committed hook reports the envelope's hold line;
 *   - a copy cut at EVERY byte (a crash while writing it): recovery keeps the original,
 *     whole, with all its states, and the copy wins only once all of it is on disk;
 *   - a RETIRE before a copy's COMMIT: the message stays retired;
 *   - a failing fdatasync: done reports the error, the message is intact where it was;
 *   - bytes that changed on disk: the relocation refuses before writing anything. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/spool/spool_recovery.h"
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

static const char *const X = "4ZhQ5N0Bc9z01", *const Y = "4ZhQ5N0Bd0z01";
static const char *const POLICY = "<s@example.org>: Sender address triggers HOLD action";

/* ---- fault injection ---- */

static bool fail_sync;

static int t_fdatasync(int fd)
{
	if (fail_sync) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static ssize_t t_write(int fd, const void *p, size_t n)
{
	return write(fd, p, n);
}

static int t_fsync(int fd)
{
	return fsync(fd);
}

static const struct spool_io tio = { .write = t_write, .fdatasync = t_fdatasync,
				     .fsync = t_fsync };

/* ---- callbacks ---- */

static struct spool_msg_entry *handed[8];
static int nhanded;

static void on_committed(void *ctx, struct spool_msg_entry *e)
{
	(void)ctx;
	if (nhanded < 8) {
		handed[nhanded++] = e;
	} else {
		spool_msg_entry_clear(e);
		free(e);
	}
}

static int status_rc;

static void on_status(void *arg, int rc)
{
	(void)arg;
	status_rc = rc;
}

static int reloc_rc, reloc_calls;
static struct spool_msg_entry *moved;

static void on_moved(void *arg, int rc, struct spool_msg_entry *m)
{
	(void)arg;
	reloc_calls++;
	reloc_rc = rc;
	if (moved) {
		spool_msg_entry_clear(moved);
		free(moved);
	}
	moved = m;
}

static void free_handed(void)
{
	for (int i = 0; i < nhanded; i++) {
		spool_msg_entry_clear(handed[i]);
		free(handed[i]);
	}
	nhanded = 0;
}

/* ---- helpers ---- */

static struct spool *open_spool(uint64_t segsize, struct spool_recovery_stats *st)
{
	struct spool *s = NULL;
	struct spool_params p = { .path = root, .io = &tio, .segment_size = segsize };
	char err[256];
	struct spool_recovery_stats local;
	if (spool_open(&s, &p, st ? st : &local, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	spool_set_committed_hook(s, on_committed, NULL);
	return s;
}

static char *body_of(size_t size, char seed)
{
	char *b = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		b[i] = (char)(seed + (char)(i % 23));
	b[size] = '\0';
	return b;
}

/* A message with three recipients, committed and synced. */
static void send_msg(struct spool *s, const char *id, size_t size, const char *hold)
{
	struct spool_client *c = spool_client_new(s, -1);
	struct spool_msg *m = spool_msg_new(c, NULL);
	struct spool_envelope env = { .queue_id = id, .arrival = 1, .client_addr = "192.0.2.1",
				      .client_port = 1, .client_name = "unknown",
				      .protocol = "ESMTP",
				      .sender = mx_span_make("s@example.org", 13),
				      .hold_reason = hold };
	CHECK_INT_EQ(spool_msg_begin(m, &env), 0);
	for (int i = 0; i < 3; i++) {
		char a[32];
		snprintf(a, sizeof(a), "r%d@example.net", i);
		CHECK_INT_EQ(spool_msg_add_rcpt(m, mx_span_cstr(a), mx_span_make("", 0)), 0);
	}
	char *body = body_of(size, id == X ? 'a' : 'A');
	CHECK_INT_EQ(spool_msg_append(m, body, size), 0);
	free(body);
	CHECK_INT_EQ(spool_msg_commit(m), 0);
	spool_stop(s);
	CHECK_INT_EQ(spool_msg_result(m), 0);
	spool_msg_release(m);
	spool_client_free(c);
}

static void status(struct spool *s, enum spool_rec_type t, const char *id, uint32_t rcpt,
		   enum spool_rcpt_state st, const char *text)
{
	status_rc = 1;
	CHECK_INT_EQ(spool_status_append(s, t, id, rcpt, st, text, on_status, NULL), 0);
	spool_stop(s);
	CHECK_INT_EQ(status_rc, 0);
}

static void hold(struct spool *s, const char *id, bool held, const char *why)
{
	status_rc = 1;
	CHECK_INT_EQ(spool_hold_append(s, id, held, why, on_status, NULL), 0);
	spool_stop(s);
	CHECK_INT_EQ(status_rc, 0);
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static const char *const SENT_TEXT = "250 2.0.0 Ok: queued as 4Xyz";
static const char *const FAIL_TEXT = "550 5.1.1 <r1@example.net>: Recipient address rejected";

/* X as setup_xy() leaves it: r0 sent, r1 failed, r2 pending; held by the operator
 * (unless a test released it). The message reads back whole. */
static bool x_held = true;

static void check_x(int dirfd, const struct spool_msg_entry *x, size_t size, const char *what)
{
	if (!x) {
		fprintf(stderr, "%s: X is missing\n", what);
		testing_failures++;
		return;
	}
	bool ok = x->nrstate >= 2 && x->rstate[0] == SPOOL_RCPT_SENT &&
		  x->rstate[1] == SPOOL_RCPT_FAILED && (x->nrstate < 3 || x->rstate[2] == 0) &&
		  x->rtext && str_eq(x->rtext[0], SENT_TEXT) && str_eq(x->rtext[1], FAIL_TEXT) &&
		  x->held == x_held &&
		  str_eq(x->hold_reason, x_held ? "held by postmaster" : NULL);
	if (!ok) {
		fprintf(stderr, "%s: X has the wrong state (nrstate %u, held %d)\n", what,
			x->nrstate, x->held);
		testing_failures++;
	}
	struct spool_record *r = NULL;
	char err[256];
	CHECK_INT_EQ(spool_index_read(dirfd, x, &r, err, sizeof(err)), 0);
	if (r) {
		char *body = body_of(size, 'a');
		CHECK_INT_EQ(r->size, size);
		CHECK(memcmp(r->message, body, size) == 0);
		CHECK_INT_EQ(r->nrcpt, 3);
		CHECK(r->hold_reason == NULL); /* the envelope has no hold line */
		free(body);
	}
	spool_record_free(r);
}

/* Build X (multi-fragment) and Y (envelope hold, released) with their states, restart,
 * and return the spool with the recovered entries. */
#define X_SIZE (3 * SPOOL_FRAGMENT_SIZE + 17)

static struct spool *setup_xy(uint64_t segsize, size_t xsize)
{
	rm_rf(root);
	nhanded = 0;
	struct spool *s = open_spool(segsize, NULL);
	send_msg(s, X, xsize, NULL);
	send_msg(s, Y, 100, POLICY);
	/* the hook reports the envelope's hold line */
	CHECK_INT_EQ(nhanded, 2);
	if (nhanded == 2) {
		CHECK(!handed[0]->held);
		CHECK(handed[0]->hold_reason == NULL);
		CHECK(handed[1]->held);
		CHECK(str_eq(handed[1]->hold_reason, POLICY));
	}
	free_handed();
	status(s, SPOOL_REC_DELIVERY, X, 0, SPOOL_RCPT_SENT, SENT_TEXT);
	status(s, SPOOL_REC_DELIVERY, X, 1, SPOOL_RCPT_FAILED, "550 first try");
	status(s, SPOOL_REC_DELIVERY, X, 1, SPOOL_RCPT_FAILED, FAIL_TEXT); /* the last wins */
	hold(s, X, true, "held by postmaster");
	hold(s, Y, false, "released by postmaster");
	status(s, SPOOL_REC_DELIVERY, Y, 2, SPOOL_RCPT_SENT, "250 ok");
	spool_stop(s);
	spool_close(s);
	return open_spool(segsize, NULL);
}

static int relocate(struct spool *s, const struct spool_msg_entry *e)
{
	reloc_calls = 0;
	reloc_rc = 1;
	CHECK_INT_EQ(spool_relocate(s, e, on_moved, NULL), 0);
	spool_stop(s);
	CHECK_INT_EQ(reloc_calls, 1);
	return reloc_rc;
}

/* ---- tests ---- */

static void test_relocate_and_recover(void)
{
	struct spool *s = setup_xy(8192, X_SIZE);
	int dirfd = spool_seg_dir_fd(s);
	const struct spool_index *idx = spool_recovered(s);
	const struct spool_msg_entry *x = spool_index_find(idx, X), *y = spool_index_find(idx, Y);
	check_x(dirfd, x, X_SIZE, "before");
	CHECK(y && !y->held && y->hold_reason == NULL);
	CHECK(y && y->nrstate == 3 && y->rstate[2] == SPOOL_RCPT_SENT);
	if (!x || !y)
		exit(1);
	uint64_t x_old = spool_msg_entry_min_seg(x), x_old_commit = x->commit_seg;
	CHECK_INT_EQ(spool_segment_size(s), 8192);
	uint64_t cur = spool_current_segment(s);
	CHECK(cur > x->commit_seg);

	/* X: fragments span segments; the copy goes to the current one and on */
	CHECK_INT_EQ(relocate(s, x), 0);
	CHECK(moved != NULL);
	if (moved) {
		CHECK_STR_EQ(moved->id, X);
		CHECK(spool_msg_entry_min_seg(moved) >= cur);
		CHECK(moved->commit_seg >= cur);
		CHECK_INT_EQ(moved->nfrag, 4);
		check_x(dirfd, moved, X_SIZE, "moved entry");
	}
	/* Y: released by a HOLD record although its envelope says hold */
	struct spool_msg_entry ycopy;
	CHECK_INT_EQ(spool_msg_entry_copy(&ycopy, y), 0);
	CHECK_INT_EQ(relocate(s, &ycopy), 0);
	spool_msg_entry_clear(&ycopy);
	uint64_t y_new = moved ? spool_msg_entry_min_seg(moved) : 0;
	CHECK(moved && !moved->held && moved->nrstate == 3);
	CHECK(spool_current_segment(s) >= cur);
	spool_stop(s);
	spool_close(s);

	/* recovery indexes both at their copies, with every state */
	struct spool_recovery_stats st;
	s = open_spool(8192, &st);
	dirfd = spool_seg_dir_fd(s);
	idx = spool_recovered(s);
	CHECK_INT_EQ(idx->n, 2);
	CHECK_INT_EQ(st.relocated, 2);
	CHECK_INT_EQ(st.bad_messages, 0);
	CHECK_INT_EQ(st.orphans, 0);
	x = spool_index_find(idx, X);
	y = spool_index_find(idx, Y);
	check_x(dirfd, x, X_SIZE, "after relocation");
	CHECK(x && x->commit_seg != x_old_commit && spool_msg_entry_min_seg(x) >= cur);
	CHECK(y && !y->held && y->hold_reason == NULL);
	CHECK(y && spool_msg_entry_min_seg(y) == y_new);
	CHECK(y && y->nrstate == 3 && y->rstate[2] == SPOOL_RCPT_SENT && y->rtext &&
	      str_eq(y->rtext[2], "250 ok"));

	/* the old segments go: everything below the copies */
	uint64_t floor = spool_reclaim_floor(s);
	uint64_t fx = spool_msg_entry_min_seg(x), fy = spool_msg_entry_min_seg(y);
	if (fx < floor)
		floor = fx;
	if (fy < floor)
		floor = fy;
	CHECK(floor > x_old);
	unsigned removed = 0;
	uint64_t freed = 0;
	CHECK_INT_EQ(spool_reclaim(s, floor, &removed, &freed), 0);
	CHECK(removed >= 3);
	spool_stop(s);
	spool_close(s);

	/* and a restart still finds both, with every state, from the copies alone */
	s = open_spool(8192, &st);
	dirfd = spool_seg_dir_fd(s);
	idx = spool_recovered(s);
	CHECK_INT_EQ(idx->n, 2);
	CHECK_INT_EQ(st.relocated, 0); /* no older copy left */
	CHECK_INT_EQ(st.bad_messages, 0);
	x = spool_index_find(idx, X);
	y = spool_index_find(idx, Y);
	check_x(dirfd, x, X_SIZE, "after reclaim");
	CHECK(y && !y->held && y->nrstate == 3 && y->rstate[2] == SPOOL_RCPT_SENT);
	CHECK(y && y->rstate[0] == SPOOL_RCPT_PENDING);
	if (y) {
		/* the envelope itself still says hold: the copy's HOLD record overrides it */
		struct spool_record *r = NULL;
		char err[256];
		CHECK_INT_EQ(spool_index_read(dirfd, y, &r, err, sizeof(err)), 0);
		CHECK(r && str_eq(r->hold_reason, POLICY));
		spool_record_free(r);
	}
	/* relocating again (a copy of a copy) works the same */
	if (x) {
		CHECK_INT_EQ(relocate(s, x), 0);
		check_x(dirfd, moved, X_SIZE, "second relocation");
	}
	spool_stop(s);
	spool_close(s);
	s = open_spool(8192, &st);
	check_x(spool_seg_dir_fd(s), spool_index_find(spool_recovered(s), X), X_SIZE,
		"after second relocation");
	CHECK_INT_EQ(st.relocated, 1);
	spool_stop(s);
	spool_close(s);
	free_handed();
	on_moved(NULL, 0, NULL);
}

/* Read a whole file. */
static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0)
		return NULL;
	unsigned char *p = malloc((size_t)sb.st_size + 1);
	*len = (size_t)sb.st_size;
	if (read(fd, p, *len) != (ssize_t)*len) {
		free(p);
		p = NULL;
	}
	close(fd);
	return p;
}

static void spit(const char *path, const unsigned char *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0 || write(fd, p, len) != (ssize_t)len) {
		perror(path);
		exit(1);
	}
	close(fd);
}

/* Held, the copy ends in a HOLD record; released, in DELIVERY records. */
static void torn_copy(bool held)
{
	/* a small X (one fragment) keeps the copy short enough to cut at every byte; big
	 * segments keep the copy in one */
	const size_t size = 300;
	struct spool *s = setup_xy(1u << 20, size);
	x_held = held;
	if (!held) {
		/* released before the restart: the relocation has no HOLD record to write */
		spool_stop(s);
		spool_close(s);
		s = open_spool(1u << 20, NULL);
		hold(s, X, false, "released");
		spool_stop(s);
		spool_close(s);
		s = open_spool(1u << 20, NULL);
	}
	const struct spool_msg_entry *x = spool_index_find(spool_recovered(s), X);
	if (!x)
		exit(1);
	uint64_t old_commit = x->commit_seg, copy_seg = spool_current_segment(s);
	CHECK_INT_EQ(relocate(s, x), 0);
	CHECK(moved && moved->commit_seg == copy_seg);
	spool_stop(s);
	spool_close(s);
	char path[400];
	snprintf(path, sizeof(path), "%s/seg/%016llx", root, (unsigned long long)copy_seg);
	size_t len = 0;
	unsigned char *whole = slurp(path, &len);
	CHECK(whole != NULL);
	if (!whole)
		return;
	/* the copy starts right after the segment's header record */
	size_t start = spool_rec_size(12);
	CHECK(len > start + size);
	char sp[300];
	snprintf(sp, sizeof(sp), "%s", root);
	int dirfd = spool_open_seg_dir(sp);
	unsigned new_wins = 0;
	for (size_t cut = start; cut <= len; cut++) {
		spit(path, whole, cut);
		struct spool_index idx;
		struct spool_recovery_stats st;
		char err[256];
		if (spool_recover(dirfd, false, &idx, &st, NULL, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "cut %zu: %s\n", cut, err);
			testing_failures++;
			continue;
		}
		const struct spool_msg_entry *e = spool_index_find(&idx, X);
		char what[64];
		snprintf(what, sizeof(what), "copy cut at %zu of %zu", cut, len);
		check_x(dirfd, e, size, what);
		/* the copy counts only once all of it (states included) is there */
		uint64_t want = cut == len ? copy_seg : old_commit;
		if (e && e->commit_seg != want) {
			fprintf(stderr, "%s: indexed at segment %llu, want %llu\n", what,
				(unsigned long long)e->commit_seg, (unsigned long long)want);
			testing_failures++;
		}
		new_wins += e && e->commit_seg == copy_seg;
		CHECK(spool_index_find(&idx, Y) != NULL);
		spool_index_free(&idx);
	}
	CHECK_INT_EQ(new_wins, 1);
	close(dirfd);
	free(whole);
	free_handed();
	on_moved(NULL, 0, NULL);
	x_held = true;
}

static void test_torn_copy(void)
{
	torn_copy(true);
	torn_copy(false);
}

static void test_retired_then_copied(void)
{
	struct spool *s = setup_xy(8192, 1000);
	const struct spool_msg_entry *x = spool_index_find(spool_recovered(s), X);
	if (!x)
		exit(1);
	/* the RETIRE lands before the copy's COMMIT (the relay must not do this, but the
	 * format must hold: IDs are never reused, so such a copy is of a deleted message) */
	status(s, SPOOL_REC_RETIRE, X, 0, SPOOL_RCPT_SENT, NULL);
	CHECK_INT_EQ(relocate(s, x), 0);
	spool_stop(s);
	spool_close(s);
	struct spool_recovery_stats st;
	s = open_spool(8192, &st);
	CHECK(spool_index_find(spool_recovered(s), X) == NULL);
	CHECK(spool_index_find(spool_recovered(s), Y) != NULL);
	CHECK_INT_EQ(st.retired, 1);
	CHECK_INT_EQ(st.relocated, 0);
	spool_stop(s);
	spool_close(s);
	free_handed();
	on_moved(NULL, 0, NULL);
}

static void test_failing_sync(void)
{
	struct spool *s = setup_xy(8192, X_SIZE);
	const struct spool_msg_entry *x = spool_index_find(spool_recovered(s), X);
	if (!x)
		exit(1);
	uint64_t old_commit = x->commit_seg;
	fail_sync = true;
	int rc = relocate(s, x);
	fail_sync = false;
	CHECK_INT_EQ(rc, -EIO);
	CHECK(moved == NULL);
	/* the writer goes on: a later relocation works */
	spool_stop(s);
	spool_close(s);
	struct spool_recovery_stats st;
	s = open_spool(8192, &st);
	x = spool_index_find(spool_recovered(s), X);
	check_x(spool_seg_dir_fd(s), x, X_SIZE, "after a failed relocation");
	CHECK(x && x->commit_seg == old_commit);
	CHECK_INT_EQ(st.relocated, 0);
	CHECK_INT_EQ(st.bad_messages, 0);
	if (x)
		CHECK_INT_EQ(relocate(s, x), 0);
	spool_stop(s);
	spool_close(s);
	free_handed();
	on_moved(NULL, 0, NULL);
}

static void test_changed_bytes_refused(void)
{
	struct spool *s = setup_xy(1u << 20, 5000);
	const struct spool_msg_entry *x = spool_index_find(spool_recovered(s), X);
	if (!x)
		exit(1);
	/* a bit flips on disk after recovery checked the message */
	char path[400];
	snprintf(path, sizeof(path), "%s/seg/%016llx", root,
		 (unsigned long long)x->frags[0].seg);
	int fd = open(path, O_RDWR);
	unsigned char c;
	CHECK(pread(fd, &c, 1, (off_t)x->frags[0].off + 10) == 1);
	c ^= 1;
	CHECK(pwrite(fd, &c, 1, (off_t)x->frags[0].off + 10) == 1);
	close(fd);
	struct spool_stats before, after;
	spool_stats(s, &before);
	CHECK_INT_EQ(relocate(s, x), -EIO);
	CHECK(moved == NULL);
	spool_stats(s, &after);
	CHECK_INT_EQ(after.bytes, before.bytes); /* nothing written */
	spool_stop(s);
	spool_close(s);
	free_handed();
	on_moved(NULL, 0, NULL);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-test-relocate-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_relocate_and_recover);
	RUN_TEST(test_torn_copy);
	RUN_TEST(test_retired_then_copied);
	RUN_TEST(test_failing_sync);
	RUN_TEST(test_changed_bytes_refused);
	rm_rf(root);
	return TEST_RESULT();
}
