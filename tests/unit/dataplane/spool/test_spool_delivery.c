/* Delivery state in the spool: DELIVERY and RETIRE records, their recovery, the writer's
 * hand-off to the relay, status records through the writer, and segment reclaim.
 *
 *   - the record parser: round trip, every prefix, every flipped byte, bad payloads;
 *   - torn writes: a segment holding two committed messages and then their delivery
 *     records, cut at EVERY byte: recovery applies exactly the records wholly before the
 *     cut (a recipient is "sent" only once its record is whole, a message retired only
 *     once its RETIRE is whole), and a second start finds the same;
 *   - the writer: what the committed hook hands over matches what recovery finds; status
 *     records are reported durable only after an fdatasync, and a failing one reports
 *     the error; reclaim deletes only segments below every live and open message. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
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

static const char *const A = "4ZhQ5N0Bc9z01", *const B = "4ZhQ5N0Bd0z01";
static const char body_a[] = "Subject: a\r\n\r\naaa\r\n", body_b[] = "Subject: b\r\n\r\nb\r\n";

static unsigned char seg[16384];
static size_t seg_len;

static size_t put(enum spool_rec_type type, const struct iovec *iov, int n)
{
	size_t at = seg_len;
	seg_len += spool_rec_encode(seg + seg_len, type, iov, n);
	return at;
}

static void put_message_hold(const char *id, const char *body, unsigned nrcpt,
			     const char *hold)
{
	unsigned char fh[SPOOL_FRAGMENT_HEAD], ch[SPOOL_COMMIT_HEAD];
	spool_rec_fragment_head(fh, id, 0);
	struct iovec f[2] = { { fh, sizeof(fh) }, { (void *)body, strlen(body) } };
	put(SPOOL_REC_FRAGMENT, f, 2);
	char env[512];
	int n = snprintf(env, sizeof(env),
			 "MXGATE-ENVELOPE 1\nqueue-id %s\narrival 1732270495\nclient-address "
			 "192.0.2.1\nclient-port 1\nclient-name unknown\nhelo h\nprotocol ESMTP\n"
			 "sender s@example.org\n",
			 id);
	if (hold)
		n += snprintf(env + n, sizeof(env) - (size_t)n, "hold %s\n", hold);
	for (unsigned i = 0; i < nrcpt; i++)
		n += snprintf(env + n, sizeof(env) - (size_t)n, "recipient r%u@example.net\n", i);
	spool_rec_commit_head(ch, id, strlen(body), spool_crc32c(0, body, strlen(body)), 1);
	struct iovec c[2] = { { ch, sizeof(ch) }, { env, (size_t)n } };
	put(SPOOL_REC_COMMIT, c, 2);
}

static void put_message(const char *id, const char *body, unsigned nrcpt)
{
	put_message_hold(id, body, nrcpt, NULL);
}

/* the delivery records, with where each ends */
struct drec {
	const char *id;
	bool retire;
	uint32_t rcpt;
	enum spool_rcpt_state st;
	size_t end;
};
static struct drec drecs[] = {
	{ A, false, 0, SPOOL_RCPT_SENT, 0 },
	{ B, false, 0, SPOOL_RCPT_SENT, 0 },
	{ A, false, 2, SPOOL_RCPT_FAILED, 0 },
	{ B, true, 0, 0, 0 },
	{ A, false, 1, SPOOL_RCPT_SENT, 0 },
};
#define NDREC (sizeof(drecs) / sizeof(drecs[0]))
static size_t msgs_end, a_end;

static void build(void)
{
	seg_len = 0;
	unsigned char sh[12];
	spool_rec_segment_head(sh, 1);
	struct iovec s = { sh, sizeof(sh) };
	put(SPOOL_REC_SEGMENT, &s, 1);
	put_message(A, body_a, 3);
	a_end = seg_len;
	put_message(B, body_b, 1);
	msgs_end = seg_len;
	for (size_t i = 0; i < NDREC; i++) {
		unsigned char h[SPOOL_DELIVERY_HEAD];
		const char *text = "250 2.0.0 Ok: queued as X";
		if (drecs[i].retire) {
			spool_rec_retire_head(h, drecs[i].id);
			struct iovec v = { h, SPOOL_REC_ID_FIELD };
			put(SPOOL_REC_RETIRE, &v, 1);
		} else {
			spool_rec_delivery_head(h, drecs[i].id, drecs[i].rcpt, drecs[i].st);
			struct iovec v[2] = { { h, sizeof(h) }, { (void *)text, strlen(text) } };
			put(SPOOL_REC_DELIVERY, v, 2);
		}
		drecs[i].end = seg_len;
	}
}

static int spool_with(const unsigned char *p, size_t n)
{
	char path[300];
	rm_rf(root);
	mkdir(root, 0700);
	snprintf(path, sizeof(path), "%s/seg", root);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/seg/0000000000000001", root);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n) {
		perror("write segment");
		exit(1);
	}
	close(fd);
	return spool_open_seg_dir(root);
}

static void test_record_parse(void)
{
	build();
	size_t at = msgs_end;
	struct spool_rec r;
	long n = spool_rec_parse(seg + at, seg_len - at, &r);
	CHECK(n > 0);
	CHECK_INT_EQ(r.type, SPOOL_REC_DELIVERY);
	CHECK_STR_EQ(r.id, A);
	CHECK_INT_EQ(r.rcpt, 0);
	CHECK_INT_EQ(r.rcpt_state, SPOOL_RCPT_SENT);
	CHECK(mx_span_eq(r.data, mx_span_cstr("250 2.0.0 Ok: queued as X")));
	size_t retire_at = drecs[2].end;
	n = spool_rec_parse(seg + retire_at, seg_len - retire_at, &r);
	CHECK_INT_EQ(n, (long)spool_rec_size(SPOOL_REC_ID_FIELD));
	CHECK_INT_EQ(r.type, SPOOL_REC_RETIRE);
	CHECK_STR_EQ(r.id, B);
	/* every prefix of a delivery record is "need more", every flipped bit is invalid */
	size_t size = drecs[0].end - at;
	for (size_t k = 0; k < size; k++)
		CHECK_INT_EQ(spool_rec_parse(seg + at, k, &r), 0);
	for (size_t k = 0; k < size; k++) {
		unsigned char copy[256];
		memcpy(copy, seg + at, size);
		copy[k] ^= 0x10;
		long got = spool_rec_parse(copy, size, &r);
		/* a longer length asks for more bytes (a torn write looks so); else invalid */
		if (k >= 8 && k < 12 && got == 0)
			continue;
		CHECK_INT_EQ(got, -EINVAL);
	}
	/* a bad state, with a valid CRC, is refused */
	unsigned char h[SPOOL_DELIVERY_HEAD], buf[128];
	spool_rec_delivery_head(h, A, 0, SPOOL_RCPT_PENDING);
	struct iovec v = { h, sizeof(h) };
	size_t len = spool_rec_encode(buf, SPOOL_REC_DELIVERY, &v, 1);
	CHECK_INT_EQ(spool_rec_parse(buf, len, &r), -EINVAL);
	spool_rec_delivery_head(h, A, 0, SPOOL_RCPT_SENT);
	len = spool_rec_encode(buf, SPOOL_REC_DELIVERY, &v, 1);
	CHECK(spool_rec_parse(buf, len, &r) > 0);
	/* a RETIRE with a payload is refused */
	struct iovec v2[2] = { { h, SPOOL_REC_ID_FIELD }, { "x", 1 } };
	len = spool_rec_encode(buf, SPOOL_REC_RETIRE, v2, 2);
	CHECK_INT_EQ(spool_rec_parse(buf, len, &r), -EINVAL);
	CHECK_STR_EQ(spool_rec_type_name(SPOOL_REC_DELIVERY), "delivery");
	CHECK_STR_EQ(spool_rcpt_state_name(SPOOL_RCPT_FAILED), "failed");
}

/* Recovery of the segment cut at `cut`: exactly the records wholly before it apply. */
static void check_cut(int dirfd, size_t cut, const char *what)
{
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[256];
	if (spool_recover(dirfd, true, &idx, &st, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s at %zu: %s\n", what, cut, err);
		testing_failures++;
		return;
	}
	bool have_a = cut >= a_end, have_msgs = cut >= msgs_end;
	uint8_t want_a[3] = { 0, 0, 0 };
	bool b_retired = false, b_sent = false;
	for (size_t i = 0; i < NDREC; i++) {
		if (drecs[i].end > cut)
			continue;
		if (drecs[i].retire)
			b_retired = true;
		else if (drecs[i].id == A)
			want_a[drecs[i].rcpt] = (uint8_t)drecs[i].st;
		else
			b_sent = true;
	}
	const struct spool_msg_entry *a = spool_index_find(&idx, A);
	const struct spool_msg_entry *b = spool_index_find(&idx, B);
	if ((a != NULL) != have_a || (b != NULL) != (have_msgs && !b_retired)) {
		fprintf(stderr, "%s at %zu: A %s, B %s\n", what, cut, a ? "kept" : "gone",
			b ? "kept" : "gone");
		testing_failures++;
	}
	if (a) {
		for (uint32_t k = 0; k < 3; k++) {
			uint8_t got = k < a->nrstate ? a->rstate[k] : SPOOL_RCPT_PENDING;
			if (got != want_a[k]) {
				fprintf(stderr, "%s at %zu: A recipient %u is %s, want %s\n", what,
					cut, k, spool_rcpt_state_name(got),
					spool_rcpt_state_name(want_a[k]));
				testing_failures++;
			}
		}
		struct spool_record *r = NULL;
		CHECK_INT_EQ(spool_index_read(dirfd, a, &r, err, sizeof(err)), 0);
		if (r) {
			CHECK_INT_EQ(r->nrcpt, 3);
			CHECK(memcmp(r->message, body_a, strlen(body_a)) == 0);
		}
		spool_record_free(r);
	}
	if (b) {
		uint8_t got = b->nrstate ? b->rstate[0] : SPOOL_RCPT_PENDING;
		CHECK_INT_EQ(got, b_sent ? SPOOL_RCPT_SENT : SPOOL_RCPT_PENDING);
	}
	CHECK_INT_EQ(st.retired, b_retired && have_msgs ? 1 : 0);
	spool_index_free(&idx);
}

static void test_torn_at_every_offset(void)
{
	build();
	for (size_t cut = 0; cut <= seg_len; cut++) {
		int dirfd = spool_with(seg, cut);
		check_cut(dirfd, cut, "cut");
		check_cut(dirfd, cut, "cut, second run"); /* after the truncation */
		close(dirfd);
	}
}

static void test_flip_every_delivery_byte(void)
{
	/* a flipped byte in a delivery record loses that record only: never a wrong state */
	build();
	for (size_t pos = msgs_end; pos < seg_len; pos++) {
		unsigned char copy[sizeof(seg)];
		memcpy(copy, seg, seg_len);
		copy[pos] ^= 0x01;
		int dirfd = spool_with(copy, seg_len);
		struct spool_index idx;
		struct spool_recovery_stats st;
		char err[256];
		CHECK_INT_EQ(spool_recover(dirfd, false, &idx, &st, NULL, NULL, err, sizeof(err)), 0);
		size_t hit = 0;
		while (drecs[hit].end <= pos)
			hit++;
		const struct spool_msg_entry *a = spool_index_find(&idx, A);
		CHECK(a != NULL);
		for (size_t i = 0; a && i < NDREC; i++) {
			if (drecs[i].retire || drecs[i].id != A)
				continue;
			uint8_t got = drecs[i].rcpt < a->nrstate ? a->rstate[drecs[i].rcpt] : 0;
			CHECK_INT_EQ(got, i == hit ? SPOOL_RCPT_PENDING : drecs[i].st);
		}
		CHECK((spool_index_find(&idx, B) != NULL) == (drecs[hit].retire));
		spool_index_free(&idx);
		close(dirfd);
	}
}

/* ---- HOLD records and reply texts ---- */

static void test_hold_record_parse(void)
{
	unsigned char h[SPOOL_HOLD_HEAD], buf[2048];
	const char *why = "held by postmaster: spam run";
	spool_rec_hold_head(h, A, true);
	struct iovec v[2] = { { h, sizeof(h) }, { (void *)why, strlen(why) } };
	size_t size = spool_rec_encode(buf, SPOOL_REC_HOLD, v, 2);
	struct spool_rec r;
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), (long)size);
	CHECK_INT_EQ(r.type, SPOOL_REC_HOLD);
	CHECK_STR_EQ(r.id, A);
	CHECK(r.held);
	CHECK(mx_span_eq(r.data, mx_span_cstr(why)));
	CHECK_STR_EQ(spool_rec_type_name(SPOOL_REC_HOLD), "hold");
	/* every prefix asks for more; every flipped byte is refused */
	for (size_t k = 0; k < size; k++)
		CHECK_INT_EQ(spool_rec_parse(buf, k, &r), 0);
	for (size_t k = 0; k < size; k++) {
		unsigned char copy[256];
		memcpy(copy, buf, size);
		copy[k] ^= 0x10;
		long got = spool_rec_parse(copy, size, &r);
		if (k >= 8 && k < 12 && got == 0)
			continue;
		CHECK_INT_EQ(got, -EINVAL);
	}
	/* release, without a reason */
	spool_rec_hold_head(h, B, false);
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, v, 1);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), (long)size);
	CHECK(!r.held);
	CHECK_INT_EQ(r.data.len, 0);
	/* a flag other than 0 or 1, non-zero padding, a short head, an over-long reason:
	 * refused even with a valid CRC */
	spool_rec_hold_head(h, A, true);
	h[SPOOL_REC_ID_FIELD] = 2;
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, v, 1);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), -EINVAL);
	spool_rec_hold_head(h, A, true);
	h[SPOOL_REC_ID_FIELD + 3] = 1;
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, v, 1);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), -EINVAL);
	spool_rec_hold_head(h, A, true);
	struct iovec shortv = { h, SPOOL_REC_ID_FIELD };
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, &shortv, 1);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), -EINVAL);
	static char longtext[SPOOL_DELIVERY_MAX_TEXT + 1];
	memset(longtext, 'x', sizeof(longtext));
	struct iovec lv[2] = { { h, sizeof(h) }, { longtext, SPOOL_DELIVERY_MAX_TEXT } };
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, lv, 2);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), (long)size);
	lv[1].iov_len++;
	size = spool_rec_encode(buf, SPOOL_REC_HOLD, lv, 2);
	CHECK_INT_EQ(spool_rec_parse(buf, size, &r), -EINVAL);
}

/* A (3 recipients, no hold line) and C (1 recipient, envelope "hold") followed by their
 * DELIVERY and HOLD records; cut at every byte. */
static const char *const C = "4ZhQ5N0Bd1z01";
struct hrec {
	const char *id;
	bool hold;    /* HOLD, else DELIVERY */
	bool held;    /* HOLD */
	uint32_t rcpt; /* DELIVERY */
	enum spool_rcpt_state st;
	const char *text;
	size_t end;
};
static struct hrec hrecs[] = {
	{ A, false, false, 0, SPOOL_RCPT_SENT, "250 2.0.0 Ok: queued as X", 0 },
	{ A, true, true, 0, 0, "held by postmaster", 0 },
	{ A, false, false, 2, SPOOL_RCPT_FAILED, "550 5.1.1 <r2@example.net>: User unknown", 0 },
	{ C, true, false, 0, 0, "released by postmaster", 0 },
	{ A, false, false, 0, SPOOL_RCPT_SENT, "250 2.0.0 Ok: queued as Y", 0 },
	{ A, true, false, 0, 0, "released", 0 },
	{ A, true, true, 0, 0, "", 0 },
};
#define NHREC (sizeof(hrecs) / sizeof(hrecs[0]))
static size_t hmsgs_end, ha_end;

static void build_holds(void)
{
	seg_len = 0;
	unsigned char sh[12];
	spool_rec_segment_head(sh, 1);
	struct iovec s = { sh, sizeof(sh) };
	put(SPOOL_REC_SEGMENT, &s, 1);
	put_message(A, body_a, 3);
	ha_end = seg_len;
	put_message_hold(C, body_b, 1, "<s@example.org>: Sender address triggers HOLD action");
	hmsgs_end = seg_len;
	for (size_t i = 0; i < NHREC; i++) {
		unsigned char h[SPOOL_DELIVERY_HEAD];
		const struct hrec *x = &hrecs[i];
		if (x->hold) {
			spool_rec_hold_head(h, x->id, x->held);
			struct iovec v[2] = { { h, SPOOL_HOLD_HEAD },
					      { (void *)x->text, strlen(x->text) } };
			put(SPOOL_REC_HOLD, v, 2);
		} else {
			spool_rec_delivery_head(h, x->id, x->rcpt, x->st);
			struct iovec v[2] = { { h, sizeof(h) }, { (void *)x->text, strlen(x->text) } };
			put(SPOOL_REC_DELIVERY, v, 2);
		}
		hrecs[i].end = seg_len;
	}
}

static bool str_or_null_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void check_hold_cut(int dirfd, size_t cut)
{
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[256];
	if (spool_recover(dirfd, true, &idx, &st, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "hold cut at %zu: %s\n", cut, err);
		testing_failures++;
		return;
	}
	/* what the records wholly before the cut say, applied in order */
	bool a_held = false, c_held = true;
	const char *a_reason = NULL, *c_reason =
		"<s@example.org>: Sender address triggers HOLD action";
	uint8_t a_state[3] = { 0, 0, 0 };
	const char *a_text[3] = { NULL, NULL, NULL };
	unsigned holds = 0, dels = 0;
	for (size_t i = 0; i < NHREC; i++) {
		const struct hrec *x = &hrecs[i];
		if (x->end > cut)
			break;
		if (x->hold) {
			holds++;
			const char *why = x->held && *x->text ? x->text : NULL;
			if (x->id == A)
				a_held = x->held, a_reason = why;
			else
				c_held = x->held, c_reason = why;
		} else {
			dels++;
			a_state[x->rcpt] = (uint8_t)x->st;
			a_text[x->rcpt] = x->text;
		}
	}
	const struct spool_msg_entry *a = spool_index_find(&idx, A);
	const struct spool_msg_entry *c = spool_index_find(&idx, C);
	CHECK((a != NULL) == (cut >= ha_end));
	CHECK((c != NULL) == (cut >= hmsgs_end));
	if (a) {
		if (a->held != a_held || !str_or_null_eq(a->hold_reason, a_reason)) {
			fprintf(stderr, "cut %zu: A held %d (%s), want %d (%s)\n", cut, a->held,
				a->hold_reason ? a->hold_reason : "-", a_held,
				a_reason ? a_reason : "-");
			testing_failures++;
		}
		for (uint32_t k = 0; k < 3; k++) {
			uint8_t got = k < a->nrstate ? a->rstate[k] : SPOOL_RCPT_PENDING;
			const char *txt = k < a->nrstate && a->rtext ? a->rtext[k] : NULL;
			if (got != a_state[k] || !str_or_null_eq(txt, a_text[k])) {
				fprintf(stderr, "cut %zu: A recipient %u: %s \"%s\", want %s \"%s\"\n",
					cut, k, spool_rcpt_state_name(got), txt ? txt : "-",
					spool_rcpt_state_name(a_state[k]),
					a_text[k] ? a_text[k] : "-");
				testing_failures++;
			}
		}
	}
	if (c) {
		CHECK_INT_EQ(c->held, c_held);
		CHECK(str_or_null_eq(c->hold_reason, c_reason));
		CHECK_INT_EQ(c->nrstate, 0);
	}
	if (cut >= hmsgs_end) {
		CHECK_INT_EQ(st.holds, holds);
		CHECK_INT_EQ(st.deliveries, dels);
	}
	spool_index_free(&idx);
}

static void test_holds_torn_at_every_offset(void)
{
	build_holds();
	for (size_t cut = 0; cut <= seg_len; cut++) {
		int dirfd = spool_with(seg, cut);
		check_hold_cut(dirfd, cut);
		check_hold_cut(dirfd, cut); /* after the truncation */
		close(dirfd);
	}
}

/* ---- through the writer ---- */

static struct spool_msg_entry *handed[16];
static int nhanded;

static void on_committed(void *ctx, struct spool_msg_entry *e)
{
	(void)ctx;
	if (nhanded < 16)
		handed[nhanded++] = e;
	else {
		spool_msg_entry_clear(e);
		free(e);
	}
}

static int status_rc = 1, status_calls;
static bool fail_sync;
static unsigned syncs;

static int t_fdatasync(int fd)
{
	syncs++;
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

static void on_status(void *arg, int rc)
{
	(void)arg;
	status_rc = rc;
	status_calls++;
}

static struct spool *open_spool(uint64_t segsize)
{
	struct spool *s = NULL;
	struct spool_params p = { .path = root, .io = &tio, .segment_size = segsize };
	char err[256];
	struct spool_recovery_stats st;
	if (spool_open(&s, &p, &st, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "spool_open: %s\n", err);
		exit(1);
	}
	return s;
}

static struct spool_msg *send_msg(struct spool_client *c, const char *id, size_t size)
{
	struct spool_msg *m = spool_msg_new(c, NULL);
	struct spool_envelope env = { .queue_id = id, .arrival = 1, .client_addr = "192.0.2.1",
				      .client_port = 1, .client_name = "unknown",
				      .protocol = "ESMTP",
				      .sender = mx_span_make("s@example.org", 13) };
	CHECK_INT_EQ(spool_msg_begin(m, &env), 0);
	CHECK_INT_EQ(spool_msg_add_rcpt(m, mx_span_make("r@example.net", 13), mx_span_make("", 0)),
		     0);
	CHECK_INT_EQ(spool_msg_add_rcpt(m, mx_span_make("q@example.net", 13), mx_span_make("", 0)),
		     0);
	char *body = malloc(size);
	for (size_t i = 0; i < size; i++)
		body[i] = (char)('a' + i % 26);
	CHECK_INT_EQ(spool_msg_append(m, body, size), 0);
	free(body);
	return m;
}

static unsigned count_segments(void)
{
	char path[300];
	snprintf(path, sizeof(path), "ls '%s/seg' | wc -l", root);
	FILE *f = popen(path, "r");
	unsigned n = 0;
	if (f) {
		if (fscanf(f, "%u", &n) != 1)
			n = 0;
		pclose(f);
	}
	return n;
}

static void test_writer_hand_off_and_status(void)
{
	rm_rf(root);
	struct spool *s = open_spool(4096); /* small segments: messages span several */
	spool_set_committed_hook(s, on_committed, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	const char *ids[3] = { "4ZhQ5N0Bc9z01", "4ZhQ5N0Bd0z01", "4ZhQ5N0Bd1z01" };
	struct spool_msg *m[3];
	nhanded = 0;
	for (int i = 0; i < 3; i++) {
		m[i] = send_msg(c, ids[i], i == 1 ? 3 * SPOOL_FRAGMENT_SIZE + 17 : 100);
		CHECK_INT_EQ(spool_msg_commit(m[i]), 0);
		spool_stop(s);
	}
	CHECK_INT_EQ(nhanded, 3);
	/* the hand-off says exactly what recovery would find */
	int dirfd = spool_seg_dir_fd(s);
	for (int i = 0; i < nhanded; i++) {
		struct spool_record *r = NULL;
		char err[256];
		CHECK_INT_EQ(spool_index_read(dirfd, handed[i], &r, err, sizeof(err)), 0);
		if (r) {
			CHECK_STR_EQ(r->queue_id, ids[i]);
			CHECK_INT_EQ(r->nrcpt, 2);
		}
		spool_record_free(r);
	}
	/* a DELIVERY record is reported only after a sync */
	unsigned before = syncs;
	status_calls = 0;
	CHECK_INT_EQ(spool_status_append(s, SPOOL_REC_DELIVERY, ids[0], 1, SPOOL_RCPT_SENT,
					 "250 ok", on_status, NULL),
		     0);
	CHECK_INT_EQ(status_calls, 0);
	spool_stop(s);
	CHECK_INT_EQ(status_calls, 1);
	CHECK_INT_EQ(status_rc, 0);
	CHECK(syncs > before);
	CHECK_INT_EQ(spool_status_append(s, SPOOL_REC_RETIRE, ids[2], 0, SPOOL_RCPT_SENT, NULL,
					 on_status, NULL),
		     0);
	spool_stop(s);
	CHECK_INT_EQ(status_rc, 0);
	/* a failing sync reports the error */
	fail_sync = true;
	CHECK_INT_EQ(spool_status_append(s, SPOOL_REC_DELIVERY, ids[1], 0, SPOOL_RCPT_FAILED,
					 "550 no", on_status, NULL),
		     0);
	spool_stop(s);
	fail_sync = false;
	CHECK_INT_EQ(status_calls, 3);
	CHECK_INT_EQ(status_rc, -EIO);

	/* reclaim: message 1 spans the oldest segments; while it is live (the caller's
	 * floor), nothing at or above its first segment goes */
	uint64_t live_floor = spool_msg_entry_min_seg(handed[0]);
	for (int i = 1; i < nhanded; i++) {
		uint64_t f = spool_msg_entry_min_seg(handed[i]);
		if (f < live_floor)
			live_floor = f;
	}
	unsigned nseg = count_segments();
	unsigned removed = 0;
	uint64_t freed = 0;
	uint64_t floor = spool_reclaim_floor(s);
	CHECK(floor > live_floor);
	CHECK_INT_EQ(spool_reclaim(s, live_floor, &removed, &freed), 0);
	CHECK_INT_EQ(removed, (unsigned)(live_floor - 1)); /* only the empty first segment */
	/* an open message (fragments written, no commit) pins its segment */
	struct spool_msg *open = send_msg(c, "4ZhQ5N0Bd2z01", 2 * SPOOL_FRAGMENT_SIZE);
	spool_stop(s);
	uint64_t open_floor = spool_reclaim_floor(s);
	CHECK(open_floor >= floor);
	/* everything retired: all segments below the floor go, and recovery finds only
	 * what is left */
	CHECK_INT_EQ(spool_reclaim(s, open_floor, &removed, &freed), 0);
	CHECK(removed >= 1);
	CHECK(freed > 0);
	CHECK(count_segments() < nseg + 2);
	spool_msg_release(open);
	spool_stop(s);
	/* its fragments span two segments: released, it no longer holds the floor down */
	CHECK(spool_reclaim_floor(s) > open_floor);
	CHECK_INT_EQ(spool_reclaim(s, spool_reclaim_floor(s), &removed, &freed), 0);
	CHECK_INT_EQ(count_segments(), 1); /* the current one */
	for (int i = 0; i < 3; i++)
		spool_msg_release(m[i]);
	for (int i = 0; i < nhanded; i++) {
		spool_msg_entry_clear(handed[i]);
		free(handed[i]);
	}
	spool_client_free(c);
	spool_close(s);
	/* a restart: nothing left, nothing torn */
	s = open_spool(4096);
	CHECK_INT_EQ(spool_recovered(s)->n, 0);
	spool_stop(s);
	spool_close(s);
}

/* Steady load: messages keep arriving, each is retired a little later (the test plays
 * the relay: its live messages give the floor), and reclaim keeps the spool's segments
 * and bytes bounded however many messages pass through. */
static void test_steady_load_stays_flat(void)
{
	rm_rf(root);
	struct spool *s = open_spool(8192);
	nhanded = 0;
	spool_set_committed_hook(s, on_committed, NULL);
	struct spool_client *c = spool_client_new(s, -1);
	unsigned max_segments = 0;
	uint64_t max_bytes = 0;
	struct queue_id_gen gen;
	queue_id_gen_init(&gen, 1, 0);
	for (int round = 0; round < 60; round++) {
		/* four new messages (the hand-off keeps up to 16 live) */
		for (int k = 0; k < 4; k++) {
			char id[QUEUE_ID_SIZE];
			queue_id_next(&gen, queue_id_clock_us(), id);
			struct spool_msg *m = send_msg(c, id, 1500);
			CHECK_INT_EQ(spool_msg_commit(m), 0);
			spool_stop(s);
			CHECK_INT_EQ(spool_msg_result(m), 0);
			spool_msg_release(m);
		}
		/* the oldest four are delivered: RETIRE, then forgotten */
		if (nhanded >= 8) {
			for (int k = 0; k < 4; k++) {
				CHECK_INT_EQ(spool_status_append(s, SPOOL_REC_RETIRE, handed[k]->id, 0,
								 SPOOL_RCPT_SENT, NULL, on_status,
								 NULL),
					     0);
				spool_msg_entry_clear(handed[k]);
				free(handed[k]);
			}
			memmove(handed, handed + 4, (size_t)(nhanded - 4) * sizeof(handed[0]));
			nhanded -= 4;
			spool_stop(s);
		}
		uint64_t floor = spool_reclaim_floor(s);
		for (int k = 0; k < nhanded; k++) {
			uint64_t f = spool_msg_entry_min_seg(handed[k]);
			if (f < floor)
				floor = f;
		}
		unsigned removed;
		uint64_t freed;
		CHECK_INT_EQ(spool_reclaim(s, floor, &removed, &freed), 0);
		unsigned n = count_segments();
		struct spool_stats st;
		spool_stats(s, &st);
		if (n > max_segments)
			max_segments = n;
		if (st.bytes > max_bytes)
			max_bytes = st.bytes;
	}
	/* 240 messages of 1.5 KiB went through (360 KiB); the spool never held much more
	 * than the eight live ones */
	CHECK(max_segments <= 6);
	CHECK(max_bytes <= 6 * 8192 + 4096);
	struct spool_stats st;
	spool_stats(s, &st);
	CHECK_INT_EQ(st.committed, 240);
	for (int k = 0; k < nhanded; k++) {
		spool_msg_entry_clear(handed[k]);
		free(handed[k]);
	}
	nhanded = 0;
	spool_client_free(c);
	spool_close(s);
	/* a restart finds exactly the live ones */
	s = open_spool(8192);
	CHECK_INT_EQ(spool_recovered(s)->n, 4);
	spool_stop(s);
	spool_close(s);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-test-delivery-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_record_parse);
	RUN_TEST(test_torn_at_every_offset);
	RUN_TEST(test_flip_every_delivery_byte);
	RUN_TEST(test_hold_record_parse);
	RUN_TEST(test_holds_torn_at_every_offset);
	RUN_TEST(test_writer_hand_off_and_status);
	RUN_TEST(test_steady_load_stays_flat);
	rm_rf(root);
	return TEST_RESULT();
}
