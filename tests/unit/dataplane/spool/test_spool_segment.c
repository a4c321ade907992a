/* The spool's record format and start-up recovery.
 *
 * A segment is built by hand from records (so every case is exact): committed messages,
 * one of them in two fragments with another message's records in between, an orphan
 * (fragments, no COMMIT), and a COMMIT whose fragment is missing. Then:
 *   - torn writes: the segment cut at EVERY byte offset; recovery must keep exactly the
 *     messages whose records all lie before the cut, read each back byte-exact, truncate
 *     the file to the last whole record, and find nothing more to do on a second run;
 *   - corruption: every byte flipped in turn; recovery must keep exactly the messages
 *     none of whose records holds that byte (the records after a corrupt one are kept),
 *     and never a corrupt one;
 *   - the record parser on every prefix and every flipped byte of a record. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dataplane/spool/spool_envelope.h"
#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"
#include "testing.h"

static char root[256];

static void rm_rf(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

/* ---- building a segment by hand ---- */

#define NMSG 6
static const char *const ids[NMSG + 1] = {
	"4ZhQ5N0Bc9z01", /* A: two fragments, committed */
	"4ZhQ5N0Bd0z01", /* B: one fragment, committed */
	"4ZhQ5N0Bd1z02", /* C: orphan, never committed */
	"4ZhQ5N0Bd2z01", /* D: committed, its fragment missing */
	"4ZhQ5N0Bd3z02", /* E: committed after everything else */
	"4ZhQ5N0Bd4z01", /* F: its COMMIT's CRC does not match its bytes */
	"4ZhQ5N0Bd5z01", /* G: fragments with a gap between them */
};
static const char *const bodies[NMSG + 1] = {
	"Subject: a\r\n\r\nfirst half, ",
	"Subject: b\r\n\r\nbee\r\n",
	"Subject: c\r\n\r\norphan\r\n",
	"Subject: d\r\n\r\nlost\r\n",
	"Subject: e\r\n\r\nlast one\r\n",
	"Subject: f\r\n\r\nf\r\n",
	"Subject: g\r\n\r\ng\r\n",
};
static const char a_second[] = "second half\r\n";

static unsigned char seg[8192];
static size_t seg_len;
/* [start, end) of every record of each message; a message is intact iff all are. */
struct span_list {
	size_t start[4], end[4];
	int n;
};
static struct span_list recs[NMSG + 1];
static bool expect_kept[NMSG + 1] = { true, true, false, false, true, false, false };
static size_t seg_header_end;

static void put_rec(enum spool_rec_type type, const struct iovec *iov, int n, int msg)
{
	size_t len = spool_rec_encode(seg + seg_len, type, iov, n);
	if (msg >= 0) {
		struct span_list *l = &recs[msg];
		l->start[l->n] = seg_len;
		l->end[l->n] = seg_len + len;
		l->n++;
	}
	seg_len += len;
}

static void put_frag(int msg, uint64_t off, const char *data)
{
	unsigned char head[SPOOL_FRAGMENT_HEAD];
	spool_rec_fragment_head(head, ids[msg], off);
	struct iovec iov[2] = { { head, sizeof(head) }, { (void *)data, strlen(data) } };
	put_rec(SPOOL_REC_FRAGMENT, iov, 2, msg);
}

static void put_commit_crc(int msg, const char *whole, uint32_t nfrag, uint32_t crc)
{
	struct spool_envbuf eb;
	struct spool_envelope env = {
		.queue_id = ids[msg],
		.arrival = 1732270495,
		.client_addr = "192.0.2.1",
		.client_port = 54321,
		.client_name = "unknown",
		.helo = mx_span_cstr("client.example"),
		.protocol = "ESMTP",
		.sender = mx_span_cstr("a@example.org"),
		.mail_params = mx_span_cstr("SIZE=10 BODY=8BITMIME"),
	};
	CHECK_INT_EQ(spool_envbuf_begin(&eb, &env), 0);
	CHECK_INT_EQ(spool_envbuf_add_rcpt(&eb, mx_span_cstr("x%y\n@example.net"),
					   mx_span_cstr("NOTIFY=NEVER")), 0);
	unsigned char head[SPOOL_COMMIT_HEAD];
	spool_rec_commit_head(head, ids[msg], strlen(whole), crc, nfrag);
	struct iovec iov[2] = { { head, sizeof(head) }, { eb.p, eb.len } };
	put_rec(SPOOL_REC_COMMIT, iov, 2, msg);
	spool_envbuf_free(&eb);
}

static void put_commit(int msg, const char *whole, uint32_t nfrag)
{
	put_commit_crc(msg, whole, nfrag, spool_crc32c(0, whole, strlen(whole)));
}

static char whole_a[256];

static void build_segment(void)
{
	unsigned char head[12];
	spool_rec_segment_head(head, 1);
	struct iovec iov = { head, sizeof(head) };
	put_rec(SPOOL_REC_SEGMENT, &iov, 1, -1);
	seg_header_end = seg_len;
	snprintf(whole_a, sizeof(whole_a), "%s%s", bodies[0], a_second);

	put_frag(0, 0, bodies[0]);
	put_frag(1, 0, bodies[1]);
	put_frag(2, 0, bodies[2]);
	put_frag(0, strlen(bodies[0]), a_second);
	put_commit(1, bodies[1], 1);
	put_commit(0, whole_a, 2);
	put_commit(3, bodies[3], 1); /* D: no fragment written */
	put_frag(4, 0, bodies[4]);
	put_commit(4, bodies[4], 1);
	/* F: every record intact, but the message is not what was committed */
	put_frag(5, 0, bodies[5]);
	put_commit_crc(5, bodies[5], 1, spool_crc32c(0, bodies[5], strlen(bodies[5])) ^ 1);
	/* G: the right bytes, the right CRC, but the second piece claims a later offset */
	size_t half = strlen(bodies[6]) / 2;
	char first[64];
	snprintf(first, sizeof(first), "%.*s", (int)half, bodies[6]);
	put_frag(6, 0, first);
	put_frag(6, half + 1, bodies[6] + half);
	put_commit(6, bodies[6], 2);
}

static const char *expected_body(int msg)
{
	return msg == 0 ? whole_a : bodies[msg];
}

/* ---- running recovery on a spool holding given segment bytes ---- */

static int open_spool_with(const unsigned char *p, size_t n)
{
	char path[300];
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

static off_t seg_file_size(void)
{
	char path[300];
	struct stat st;
	snprintf(path, sizeof(path), "%s/seg/0000000000000001", root);
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Recover and compare with the expectation; returns the number of messages kept. */
static size_t check_recovery(int dirfd, const bool *want, const char *what, size_t where)
{
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[256];
	if (spool_recover(dirfd, true, &idx, &st, NULL, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s at %zu: recovery failed: %s\n", what, where, err);
		testing_failures++;
		return 0;
	}
	for (int m = 0; m < NMSG + 1; m++) {
		const struct spool_msg_entry *e = spool_index_find(&idx, ids[m]);
		if ((e != NULL) != want[m]) {
			fprintf(stderr, "%s at %zu: message %c %s\n", what, where, 'A' + m,
				e ? "kept but should not be" : "lost");
			testing_failures++;
			continue;
		}
		if (!e)
			continue;
		struct spool_record *r = NULL;
		if (spool_index_read(dirfd, e, &r, err, sizeof(err)) != 0) {
			fprintf(stderr, "%s at %zu: read %c: %s\n", what, where, 'A' + m, err);
			testing_failures++;
			continue;
		}
		CHECK_INT_EQ(r->size, strlen(expected_body(m)));
		CHECK(memcmp(r->message, expected_body(m), r->size) == 0);
		CHECK_STR_EQ(r->queue_id, ids[m]);
		CHECK_INT_EQ(r->nrcpt, 1);
		CHECK_STR_EQ(r->rcpts[0].addr, "x%y\n@example.net");
		CHECK_STR_EQ(r->rcpts[0].params[0], "NOTIFY=NEVER");
		CHECK_INT_EQ(r->nmail_params, 2);
		spool_record_free(r);
	}
	size_t n = idx.n;
	spool_index_free(&idx);
	return n;
}

static bool msg_intact_before(int m, size_t cut)
{
	for (int i = 0; i < recs[m].n; i++)
		if (recs[m].end[i] > cut)
			return false;
	return true;
}

static bool msg_touches(int m, size_t pos)
{
	for (int i = 0; i < recs[m].n; i++)
		if (pos >= recs[m].start[i] && pos < recs[m].end[i])
			return true;
	return false;
}

static void test_crc32c(void)
{
	testing_current = "crc32c";
	/* the standard check value (RFC 3720 B.4 uses the same polynomial) */
	CHECK_INT_EQ(spool_crc32c(0, "123456789", 9), 0xe3069283u);
	/* running value over pieces equals one pass */
	CHECK_INT_EQ(spool_crc32c(spool_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
	char zeros[32] = { 0 };
	CHECK_INT_EQ(spool_crc32c(0, zeros, 32), 0x8a9136aau);
	CHECK_INT_EQ(spool_crc32c_portable(0, "123456789", 9), 0xe3069283u);
	/* the CPU's instruction and the tables agree at every alignment, length and split
	 * (heap bytes of exactly the length: the sanitizer sees any read past them) */
	unsigned char pat[300];
	for (size_t i = 0; i < sizeof(pat); i++)
		pat[i] = (unsigned char)(i * 131u + 7u);
	for (size_t off = 0; off < 9; off++) {
		for (size_t len = 0; len + off <= sizeof(pat); len += len < 40 ? 1 : 37) {
			unsigned char *b = malloc(len ? len : 1);
			memcpy(b, pat + off, len);
			uint32_t want = spool_crc32c_portable(0, b, len);
			CHECK_INT_EQ(spool_crc32c(0, b, len), want);
			for (size_t cut = 0; cut <= len; cut += 1 + len / 7)
				CHECK_INT_EQ(spool_crc32c(spool_crc32c(0, b, cut), b + cut, len - cut),
					     want);
			CHECK_INT_EQ(spool_crc32c(0x12345678u, b, len),
				     spool_crc32c_portable(0x12345678u, b, len));
			free(b);
		}
	}
}

static void test_record_parse(void)
{
	testing_current = "record_parse";
	unsigned char buf[256], head[SPOOL_FRAGMENT_HEAD];
	spool_rec_fragment_head(head, ids[0], 77);
	struct iovec iov[2] = { { head, sizeof(head) }, { "payload", 7 } };
	size_t n = spool_rec_encode(buf, SPOOL_REC_FRAGMENT, iov, 2);
	CHECK_INT_EQ(n, SPOOL_REC_OVERHEAD + SPOOL_FRAGMENT_HEAD + 7);
	struct spool_rec r;
	CHECK_INT_EQ(spool_rec_parse(buf, n, &r), (long)n);
	CHECK_INT_EQ(r.type, SPOOL_REC_FRAGMENT);
	CHECK_STR_EQ(r.id, ids[0]);
	CHECK_INT_EQ(r.msg_off, 77);
	CHECK(r.data.len == 7 && memcmp(r.data.ptr, "payload", 7) == 0);
	/* followed by other bytes: still the one record */
	CHECK_INT_EQ(spool_rec_parse(buf, sizeof(buf), &r), (long)n);
	/* every prefix is "not yet": a torn write, never a record */
	for (size_t k = 0; k < n; k++)
		CHECK_INT_EQ(spool_rec_parse(buf, k, &r), 0);
	/* every flipped byte: never a valid record */
	for (size_t k = 0; k < n; k++) {
		for (int bit = 0; bit < 8; bit++) {
			buf[k] ^= (unsigned char)(1 << bit);
			long rc = spool_rec_parse(buf, n, &r);
			if (rc > 0) {
				fprintf(stderr, "flip byte %zu bit %d accepted\n", k, bit);
				testing_failures++;
			}
			buf[k] ^= (unsigned char)(1 << bit);
		}
	}
	/* names round trip */
	char name[SPOOL_SEG_NAME_LEN + 1];
	uint64_t no = 0;
	spool_seg_name(0x1234abcdULL, name);
	CHECK_STR_EQ(name, "000000001234abcd");
	CHECK(spool_seg_parse_name(name, &no) && no == 0x1234abcdULL);
	CHECK(!spool_seg_parse_name("000000001234abcd.tmp", &no));
	CHECK(!spool_seg_parse_name("000000001234ABCD", &no));
	CHECK(!spool_seg_parse_name("0000000000000000", &no));
}

static void test_whole_segment(void)
{
	testing_current = "whole_segment";
	int dirfd = open_spool_with(seg, seg_len);
	CHECK_INT_EQ(check_recovery(dirfd, expect_kept, "whole", seg_len), 3);
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[256];
	CHECK_INT_EQ(spool_recover(dirfd, false, &idx, &st, NULL, NULL, err, sizeof(err)), 0);
	CHECK_INT_EQ(st.messages, 3);
	CHECK_INT_EQ(st.orphans, 1);
	CHECK_INT_EQ(st.bad_messages, 3);
	CHECK_INT_EQ(st.torn_tails, 0);
	CHECK_INT_EQ(idx.last_seg, 1);
	/* the floor for new IDs: the newest in any record, kept or discarded */
	uint64_t newest = 0;
	for (int m = 0; m < NMSG + 1; m++) {
		uint64_t us;
		queue_id_time_us(ids[m], &us);
		if (us > newest)
			newest = us;
	}
	CHECK_INT_EQ(idx.newest_id_us, newest);
	spool_index_free(&idx);
	close(dirfd);
}

static void test_torn_at_every_offset(void)
{
	testing_current = "torn_at_every_offset";
	for (size_t cut = 0; cut <= seg_len; cut++) {
		bool want[NMSG + 1];
		for (int m = 0; m < NMSG + 1; m++)
			want[m] = expect_kept[m] && msg_intact_before(m, cut);
		int dirfd = open_spool_with(seg, cut);
		check_recovery(dirfd, want, "cut", cut);
		/* the torn tail was truncated at the last whole record */
		off_t size = seg_file_size();
		size_t boundary = 0;
		for (int m = 0; m < NMSG + 1; m++)
			for (int i = 0; i < recs[m].n; i++)
				if (recs[m].end[i] <= cut && recs[m].end[i] > boundary)
					boundary = recs[m].end[i];
		if (seg_header_end <= cut && boundary < seg_header_end)
			boundary = seg_header_end;
		if (size != (off_t)boundary) {
			fprintf(stderr, "cut at %zu: file is %lld bytes, expected %zu\n", cut,
				(long long)size, boundary);
			testing_failures++;
		}
		/* a second start finds the same messages and nothing torn */
		struct spool_index idx;
		struct spool_recovery_stats st;
		char err[256];
		CHECK_INT_EQ(spool_recover(dirfd, true, &idx, &st, NULL, NULL, err, sizeof(err)), 0);
		CHECK_INT_EQ(st.torn_tails, 0);
		spool_index_free(&idx);
		check_recovery(dirfd, want, "cut, second run", cut);
		close(dirfd);
	}
}

static void test_flip_every_byte(void)
{
	testing_current = "flip_every_byte";
	static unsigned char copy[sizeof(seg)];
	for (size_t pos = 0; pos < seg_len; pos++) {
		memcpy(copy, seg, seg_len);
		copy[pos] ^= 0x5a;
		bool want[NMSG + 1];
		for (int m = 0; m < NMSG + 1; m++)
			want[m] = expect_kept[m] && !msg_touches(m, pos);
		int dirfd = open_spool_with(copy, seg_len);
		check_recovery(dirfd, want, "flip", pos);
		close(dirfd);
	}
}

static void test_stale_files(void)
{
	testing_current = "stale_files";
	int dirfd = open_spool_with(seg, seg_len);
	int fd = openat(dirfd, "0000000000000002.tmp", O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0);
	close(fd);
	struct spool_index idx;
	struct spool_recovery_stats st;
	char err[256];
	/* reading only: nothing removed */
	CHECK_INT_EQ(spool_recover(dirfd, false, &idx, &st, NULL, NULL, err, sizeof(err)), 0);
	CHECK_INT_EQ(st.stale_files, 1);
	spool_index_free(&idx);
	CHECK(faccessat(dirfd, "0000000000000002.tmp", F_OK, 0) == 0);
	CHECK_INT_EQ(spool_recover(dirfd, true, &idx, &st, NULL, NULL, err, sizeof(err)), 0);
	CHECK_INT_EQ(st.stale_files, 1);
	CHECK_INT_EQ(idx.n, 3);
	spool_index_free(&idx);
	CHECK(faccessat(dirfd, "0000000000000002.tmp", F_OK, 0) != 0);
	close(dirfd);
}

static void test_envelope_parse_errors(void)
{
	testing_current = "envelope_parse_errors";
	struct spool_record *r = NULL;
	char err[128];
	static const char *const bad[] = {
		"",
		"MXGATE-ENVELOPE 2\n",
		"MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\n",
		"MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nsender a\nrecipient b\n", /* no client */
		"MXGATE-ENVELOPE 1\nqueue-id x\nclient-address 1\nprotocol SMTP\nsender a\n"
		"recipient b\n",
		"MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address 1\nprotocol SMTP\n"
		"sender a%4\nrecipient b\n",
		"MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address 1\nprotocol SMTP\n"
		"sender a\nrecipient b", /* no final LF */
		"MXGATE-ENVELOPE 1\nbogus 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		CHECK_INT_EQ(spool_envelope_parse(bad[i], strlen(bad[i]), &r, err, sizeof(err)),
			     -EINVAL);
		CHECK(r == NULL);
	}
	static const char good[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				   "1\nprotocol SMTP\nsender \nrecipient b%25\n";
	CHECK_INT_EQ(spool_envelope_parse(good, strlen(good), &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->sender, "");
		CHECK_STR_EQ(r->rcpts[0].addr, "b%");
		spool_record_free(r);
	}
}

/* The optional "hold" and "filter" lines: written escaped like every value, read back,
 * found by spool_envelope_hold() alone; envelopes without them still parse (good above);
 * twice, or after a recipient, they are refused. */
static void test_envelope_hold_filter(void)
{
	testing_current = "envelope_hold_filter";
	struct spool_envbuf eb;
	struct spool_envelope env = {
		.queue_id = "4ZhQ5N0Bc9z01",
		.arrival = 1732270495,
		.client_addr = "192.0.2.1",
		.client_port = 25,
		.protocol = "ESMTP",
		.sender = mx_span_cstr("a@example.org"),
		.mail_params = mx_span_cstr("SIZE=10"),
		.hold_reason = "<a@example.org>: Sender address triggers HOLD action\n100%",
		.filter = "smtp:[127.0.0.1]:10025",
	};
	CHECK_INT_EQ(spool_envbuf_begin(&eb, &env), 0);
	CHECK_INT_EQ(spool_envbuf_add_rcpt(&eb, mx_span_cstr("x@example.net"), mx_span_cstr("")),
		     0);
	/* one line each, escaped, before the first recipient */
	CHECK(memmem(eb.p, eb.len,
		     "mail-parameter SIZE=10\nhold <a@example.org>: Sender address triggers HOLD "
		     "action%0A100%25\nfilter smtp:[127.0.0.1]:10025\nrecipient x@example.net\n",
		     strlen("mail-parameter SIZE=10\nhold <a@example.org>: Sender address triggers "
			    "HOLD action%0A100%25\nfilter smtp:[127.0.0.1]:10025\nrecipient "
			    "x@example.net\n")) != NULL);
	struct spool_record *r = NULL;
	char err[128];
	CHECK_INT_EQ(spool_envelope_parse(eb.p, eb.len, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->hold_reason, env.hold_reason);
		CHECK_STR_EQ(r->filter, env.filter);
		CHECK_INT_EQ(r->nrcpt, 1);
		spool_record_free(r);
	}
	char *reason = NULL;
	CHECK_INT_EQ(spool_envelope_hold(eb.p, eb.len, &reason), 1);
	CHECK_STR_EQ(reason ? reason : "(null)", env.hold_reason);
	free(reason);
	spool_envbuf_free(&eb);

	/* without them: NULL fields, no hold */
	env.hold_reason = env.filter = NULL;
	CHECK_INT_EQ(spool_envbuf_begin(&eb, &env), 0);
	CHECK_INT_EQ(spool_envbuf_add_rcpt(&eb, mx_span_cstr("x@example.net"), mx_span_cstr("")),
		     0);
	CHECK(memmem(eb.p, eb.len, "\nhold", 5) == NULL);
	CHECK(memmem(eb.p, eb.len, "\nfilter", 7) == NULL);
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(eb.p, eb.len, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK(r->hold_reason == NULL);
		CHECK(r->filter == NULL);
		spool_record_free(r);
	}
	reason = (char *)1;
	CHECK_INT_EQ(spool_envelope_hold(eb.p, eb.len, &reason), 0);
	CHECK(reason == NULL);
	spool_envbuf_free(&eb);

	/* an empty reason is still a hold */
	static const char empty[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				    "1\nprotocol SMTP\nsender \nhold \nrecipient b\n";
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(empty, strlen(empty), &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->hold_reason ? r->hold_reason : "(null)", "");
		spool_record_free(r);
	}
	CHECK_INT_EQ(spool_envelope_hold(empty, strlen(empty), &reason), 1);
	free(reason);
	static const char bare[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				   "1\nprotocol SMTP\nsender \nhold\nrecipient b\n";
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(bare, strlen(bare), &r, err, sizeof(err)), 0);
	CHECK(r && r->hold_reason && !*r->hold_reason);
	spool_record_free(r);
	CHECK_INT_EQ(spool_envelope_hold(bare, strlen(bare), &reason), 1);
	free(reason);
	/* a "hold" after the recipients is no hold line (and the parser refuses it) */
	static const char late[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				   "1\nprotocol SMTP\nsender \nrecipient b\nhold x\n";
	CHECK_INT_EQ(spool_envelope_hold(late, strlen(late), &reason), 0);
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(late, strlen(late), &r, err, sizeof(err)), -EINVAL);
	CHECK(r == NULL);
	static const char twice[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				    "1\nprotocol SMTP\nsender \nfilter a:b\nfilter c:d\n"
				    "recipient b\n";
	CHECK_INT_EQ(spool_envelope_parse(twice, strlen(twice), &r, err, sizeof(err)), -EINVAL);
	static const char badesc[] = "MXGATE-ENVELOPE 1\nqueue-id 4ZhQ5N0Bc9z01\nclient-address "
				     "1\nprotocol SMTP\nsender \nhold a%G1\nrecipient b\n";
	CHECK_INT_EQ(spool_envelope_hold(badesc, strlen(badesc), &reason), -EINVAL);
	CHECK_INT_EQ(spool_envelope_parse(badesc, strlen(badesc), &r, err, sizeof(err)), -EINVAL);
}

/* Policy's actions land in the envelope after the last recipient: the parser reads them
 * back as the relay will. */
static void test_envelope_finish(void)
{
	testing_current = "envelope_finish";
	struct spool_envelope env = {
		.queue_id = "4ZhQ5N0Bc9z01",
		.arrival = 1732270495,
		.client_addr = "192.0.2.1",
		.protocol = "ESMTP",
		.sender = mx_span_cstr("a@example.org"),
	};
	char err[128];
	struct spool_record *r = NULL;

	/* nothing to do: the text is unchanged */
	struct spool_envbuf eb;
	CHECK_INT_EQ(spool_envbuf_begin(&eb, &env), 0);
	spool_envbuf_add_rcpt(&eb, mx_span_cstr("x@example.net"), mx_span_cstr("NOTIFY=FAILURE"));
	char *before = strndup(eb.p, eb.len);
	const char *empty_bcc[] = { "" };
	struct spool_envelope_actions none = { .filter = "", .redirect = "", .bcc = empty_bcc,
					       .nbcc = 1 };
	CHECK_INT_EQ(spool_envbuf_finish(&eb, &none), 0);
	CHECK(eb.len == strlen(before) && memcmp(eb.p, before, eb.len) == 0);
	free(before);

	/* hold + filter + bcc keep the recipients and add the blind copy last */
	const char *bcc[] = { "archive@example.com" };
	struct spool_envelope_actions a = {
		.hold_reason = "<a@example.org>: Sender address triggers HOLD action",
		.filter = "smtp:[127.0.0.1]:10025",
		.bcc = bcc,
		.nbcc = 1,
	};
	spool_envbuf_add_rcpt(&eb, mx_span_cstr("y@example.net"), mx_span_cstr(""));
	CHECK_INT_EQ(spool_envbuf_finish(&eb, &a), 0);
	CHECK_INT_EQ(eb.nrcpt, 3);
	CHECK_INT_EQ(spool_envelope_parse(eb.p, eb.len, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_STR_EQ(r->hold_reason ? r->hold_reason : "", a.hold_reason);
		CHECK_STR_EQ(r->filter ? r->filter : "", a.filter);
		CHECK_INT_EQ(r->nrcpt, 3);
		if (r->nrcpt == 3) {
			CHECK_STR_EQ(r->rcpts[0].addr, "x@example.net");
			CHECK_INT_EQ(r->rcpts[0].nparams, 1);
			CHECK_STR_EQ(r->rcpts[1].addr, "y@example.net");
			CHECK_STR_EQ(r->rcpts[2].addr, "archive@example.com");
			CHECK(r->rcpts[2].nparams == 1 &&
			      strcmp(r->rcpts[2].params[0], "NOTIFY=NEVER") == 0);
		}
		spool_record_free(r);
	}
	/* a second finish adds no second hold or filter line (the parser would refuse it) */
	struct spool_envelope_actions again = { .hold_reason = "x", .filter = "smtp:[::1]:25" };
	CHECK_INT_EQ(spool_envbuf_finish(&eb, &again), 0);
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(eb.p, eb.len, &r, err, sizeof(err)), 0);
	spool_record_free(r);
	spool_envbuf_free(&eb);

	/* redirect replaces every recipient (and its DSN parameters) */
	CHECK_INT_EQ(spool_envbuf_begin(&eb, &env), 0);
	spool_envbuf_add_rcpt(&eb, mx_span_cstr("x@example.net"), mx_span_cstr("NOTIFY=NEVER"));
	spool_envbuf_add_rcpt(&eb, mx_span_cstr("y@example.net"), mx_span_cstr(""));
	struct spool_envelope_actions redir = { .redirect = "quarantine@example.com" };
	CHECK_INT_EQ(spool_envbuf_finish(&eb, &redir), 0);
	r = NULL;
	CHECK_INT_EQ(spool_envelope_parse(eb.p, eb.len, &r, err, sizeof(err)), 0);
	if (r) {
		CHECK_INT_EQ(r->nrcpt, 1);
		CHECK_STR_EQ(r->rcpts[0].addr, "quarantine@example.com");
		CHECK_INT_EQ(r->rcpts[0].nparams, 0);
		CHECK(r->hold_reason == NULL);
		spool_record_free(r);
	}
	spool_envbuf_free(&eb);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/mxgate-test-seg-XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	build_segment();
	RUN_TEST(test_crc32c);
	RUN_TEST(test_record_parse);
	RUN_TEST(test_whole_segment);
	RUN_TEST(test_torn_at_every_offset);
	RUN_TEST(test_flip_every_byte);
	RUN_TEST(test_stale_files);
	RUN_TEST(test_envelope_parse_errors);
	RUN_TEST(test_envelope_hold_filter);
	RUN_TEST(test_envelope_finish);
	rm_rf(root);
	return TEST_RESULT();
}
