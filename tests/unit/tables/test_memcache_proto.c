/* memcache_proto: the memcached text protocol codec. Every reply is read whole, byte by
 * byte, and split at every offset, from heap buffers of exactly its length; bad replies
 * fail the same way however they are cut; bytes after a reply are left alone. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tables/memcache_proto.h"
#include "testing.h"

/* ---- encoders ---- */

static void test_encode(void)
{
	char buf[512];
	long n = memcache_encode_get(buf, sizeof(buf), "k1", 2);
	CHECK_MEM_EQ(buf, n, "get k1\r\n", 8);
	n = memcache_encode_store(buf, sizeof(buf), MEMCACHE_SET, "key", 3, 5, 3600, "v a", 3);
	CHECK_MEM_EQ(buf, n, "set key 5 3600 3\r\nv a\r\n", 23);
	n = memcache_encode_store(buf, sizeof(buf), MEMCACHE_ADD, "key", 3, 0, 0, "", 0);
	CHECK_MEM_EQ(buf, n, "add key 0 0 0\r\n\r\n", 17);
	/* data is opaque: CR LF and NUL inside it are fine */
	n = memcache_encode_store(buf, sizeof(buf), MEMCACHE_SET, "b", 1, 0, 1, "a\r\n\0", 4);
	CHECK_MEM_EQ(buf, n, "set b 0 1 4\r\na\r\n\0\r\n", 19);
	n = memcache_encode_delete(buf, sizeof(buf), "key", 3);
	CHECK_MEM_EQ(buf, n, "delete key\r\n", 12);
	n = memcache_encode_incr(buf, sizeof(buf), "c", 1, 18446744073709551615ull);
	CHECK_MEM_EQ(buf, n, "incr c 18446744073709551615\r\n", 29);
	n = memcache_encode_touch(buf, sizeof(buf), "t", 1, 4000000000u);
	CHECK_MEM_EQ(buf, n, "touch t 4000000000\r\n", 20);

	/* bad keys */
	CHECK_INT_EQ(memcache_encode_get(buf, sizeof(buf), "", 0), -EINVAL);
	CHECK_INT_EQ(memcache_encode_get(buf, sizeof(buf), "a b", 3), -EINVAL);
	CHECK_INT_EQ(memcache_encode_get(buf, sizeof(buf), "a\nb", 3), -EINVAL);
	CHECK_INT_EQ(memcache_encode_get(buf, sizeof(buf), "a\x7f", 2), -EINVAL);
	CHECK_INT_EQ(memcache_encode_delete(buf, sizeof(buf), "a\tb", 3), -EINVAL);
	char key[MEMCACHE_KEY_MAX + 2];
	memset(key, 'k', sizeof(key));
	CHECK(memcache_encode_get(buf, sizeof(buf), key, MEMCACHE_KEY_MAX) > 0);
	CHECK_INT_EQ(memcache_encode_get(buf, sizeof(buf), key, MEMCACHE_KEY_MAX + 1), -EINVAL);
	/* UTF-8 bytes are not controls */
	CHECK(memcache_key_valid("\xc3\xa9t\xc3\xa9", 5));

	/* every buffer too small by one byte, and exactly right */
	for (size_t cap = 0; cap < 23; cap++)
		CHECK_INT_EQ(memcache_encode_store(buf, cap, MEMCACHE_SET, "key", 3, 5, 3600,
						   "v a", 3), -ENOBUFS);
	CHECK_INT_EQ(memcache_encode_store(buf, 23, MEMCACHE_SET, "key", 3, 5, 3600, "v a", 3),
		     23);
	for (size_t cap = 0; cap < 8; cap++)
		CHECK_INT_EQ(memcache_encode_get(buf, cap, "k1", 2), -ENOBUFS);
	CHECK_INT_EQ(memcache_encode_get(buf, 8, "k1", 2), 8);
}

/* ---- the reader ---- */

struct want {
	int rc;                     /* 1, or the failure */
	enum memcache_reply_kind kind;
	const char *data;           /* VALUE */
	size_t data_len;
	uint32_t flags;
	uint64_t number;
	const char *message;
	size_t used;                /* bytes of the input the reply takes (rc 1; 0: all) */
};

/* Feed the pieces [0, cut1), [cut1, cut2), [cut2, len) (each in a heap copy of exactly
 * its size); returns the first non-zero result, the bytes taken in *used. */
static int feed_cuts(struct memcache_reader *r, const char *in, size_t len, size_t cut1,
		     size_t cut2, size_t *used)
{
	size_t cuts[4] = { 0, cut1, cut2, len };
	*used = 0;
	for (int i = 0; i < 3; i++) {
		size_t n = cuts[i + 1] - cuts[i];
		char *piece = malloc(n ? n : 1);
		memcpy(piece, in + cuts[i], n);
		size_t u = 0;
		int rc = memcache_reader_feed(r, piece, n, &u);
		free(piece);
		CHECK(u <= n);
		*used += u;
		if (rc != 0)
			return rc;
		CHECK_INT_EQ(u, n);
	}
	return 0;
}

static void check_reply(const struct memcache_reader *r, const struct want *w)
{
	CHECK_INT_EQ(r->reply.kind, w->kind);
	if (w->kind == MEMCACHE_REPLY_VALUE) {
		CHECK_MEM_EQ(r->reply.data, r->reply.data_len, w->data, w->data_len);
		CHECK_INT_EQ(r->reply.flags, w->flags);
		CHECK_INT_EQ(r->reply.data[r->reply.data_len], 0);
	}
	if (w->kind == MEMCACHE_REPLY_NUMBER)
		CHECK(r->reply.number == w->number);
	if (w->message)
		CHECK_STR_EQ(r->reply.message, w->message);
}

/* The reply read whole, byte by byte, and cut at every pair of offsets (one and two cuts;
 * one cut only for inputs over 256 bytes), with the same outcome each time. */
static void check(enum memcache_cmd cmd, const char *in, size_t len, const struct want *w)
{
	struct memcache_reader r;
	CHECK_INT_EQ(memcache_reader_init(&r, 1024, 2048), 0);
	for (size_t c1 = 0; c1 <= len; c1++) {
		for (size_t c2 = len > 256 ? len : c1; c2 <= len; c2++) {
			memcache_reader_start(&r, cmd);
			size_t used;
			int rc = feed_cuts(&r, in, len, c1, c2, &used);
			if (rc != w->rc) {
				fprintf(stderr, "  cuts %zu %zu: rc %d, want %d\n", c1, c2, rc, w->rc);
				CHECK_INT_EQ(rc, w->rc);
				memcache_reader_free(&r);
				return;
			}
			if (rc == 1) {
				CHECK_INT_EQ(used, w->used ? w->used : len);
				check_reply(&r, w);
			}
		}
	}
	/* byte by byte */
	memcache_reader_start(&r, cmd);
	int rc = 0;
	size_t i = 0;
	for (; i < len && rc == 0; i++) {
		char *b = malloc(1);
		*b = in[i];
		size_t u;
		rc = memcache_reader_feed(&r, b, 1, &u);
		free(b);
	}
	CHECK_INT_EQ(rc, w->rc);
	if (rc == 1) {
		CHECK_INT_EQ(i, w->used ? w->used : len);
		check_reply(&r, w);
	}
	memcache_reader_free(&r);
}

#define S(lit) lit, sizeof(lit) - 1

static void test_replies(void)
{
	struct want w = { .rc = 1, .kind = MEMCACHE_REPLY_VALUE, .data = "hello", .data_len = 5,
			  .flags = 7 };
	check(MEMCACHE_GET, S("VALUE k 7 5\r\nhello\r\nEND\r\n"), &w);
	/* with a cas unique (gets), and data holding CR LF and NUL */
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_VALUE, .data = "a\r\nEND\r\n\0b",
			   .data_len = 10, .flags = 4294967295u };
	check(MEMCACHE_GET, S("VALUE k 4294967295 10 99\r\na\r\nEND\r\n\0b\r\nEND\r\n"), &w);
	/* empty data */
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_VALUE, .data = "" };
	check(MEMCACHE_GET, S("VALUE k 0 0\r\n\r\nEND\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_END };
	check(MEMCACHE_GET, S("END\r\n"), &w);
	/* a bare LF ends a line too (Postfix's memcache_get()) */
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_END };
	check(MEMCACHE_GET, S("END\n"), &w);

	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_STORED };
	check(MEMCACHE_SET, S("STORED\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_NOT_STORED };
	check(MEMCACHE_ADD, S("NOT_STORED\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_EXISTS };
	check(MEMCACHE_SET, S("EXISTS\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_DELETED };
	check(MEMCACHE_DELETE, S("DELETED\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_NOT_FOUND };
	check(MEMCACHE_DELETE, S("NOT_FOUND\r\n"), &w);
	check(MEMCACHE_INCR, S("NOT_FOUND\r\n"), &w);
	check(MEMCACHE_TOUCH, S("NOT_FOUND\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_TOUCHED };
	check(MEMCACHE_TOUCH, S("TOUCHED\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_NUMBER, .number = 42 };
	check(MEMCACHE_INCR, S("42\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_NUMBER,
			   .number = 18446744073709551615ull };
	check(MEMCACHE_INCR, S("18446744073709551615  \r\n"), &w);

	/* errors are replies, to any command */
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_ERROR, .message = "" };
	for (int c = 0; c < MEMCACHE_CMD_MAX; c++)
		check((enum memcache_cmd)c, S("ERROR\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_CLIENT_ERROR,
			   .message = "bad data chunk xyz" };
	check(MEMCACHE_SET, S("CLIENT_ERROR bad data chunk xyz\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_SERVER_ERROR,
			   .message = "object too large for cache" };
	check(MEMCACHE_SET, S("SERVER_ERROR object too large for cache\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_SERVER_ERROR,
			   .message = "" };
	check(MEMCACHE_GET, S("SERVER_ERROR\r\n"), &w);
}

static void test_trailing_bytes(void)
{
	/* a reply ends where it ends: what follows is left to the caller */
	struct want w = { .rc = 1, .kind = MEMCACHE_REPLY_STORED, .used = 8 };
	check(MEMCACHE_SET, S("STORED\r\nSTORED\r\n"), &w);
	w = (struct want){ .rc = 1, .kind = MEMCACHE_REPLY_VALUE, .data = "x", .data_len = 1,
			   .used = 21 };
	check(MEMCACHE_GET, S("VALUE k 0 1\r\nx\r\nEND\r\nVALUE"), &w);
}

static void test_bad_replies(void)
{
	struct want w = { .rc = -EPROTO };
	/* a reply the command cannot have */
	check(MEMCACHE_GET, S("STORED\r\n"), &w);
	check(MEMCACHE_SET, S("END\r\n"), &w);
	check(MEMCACHE_SET, S("VALUE k 0 1\r\nx\r\nEND\r\n"), &w);
	check(MEMCACHE_DELETE, S("TOUCHED\r\n"), &w);
	check(MEMCACHE_GET, S("42\r\n"), &w);
	check(MEMCACHE_GET, S("NOT_FOUND\r\n"), &w);
	/* malformed */
	check(MEMCACHE_GET, S("VALUE\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 1\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k x 1\r\nx\r\nEND\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 4294967296 1\r\nx\r\nEND\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 -1\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 1 2 3\r\nx\r\nEND\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 1 c\r\nx\r\nEND\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 1\r\nxy\r\nEND\r\n"), &w);  /* data not ended by CRLF */
	check(MEMCACHE_GET, S("VALUE k 0 1\r\nx\r\nEN\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 1\r\nx\r\nVALUE k 0 1\r\n"), &w); /* a second VALUE */
	check(MEMCACHE_GET, S("END \r\n"), &w);
	check(MEMCACHE_GET, S("end\r\n"), &w);
	check(MEMCACHE_GET, S("\r\n"), &w);
	check(MEMCACHE_GET, S("E\rND\r\n"), &w);
	check(MEMCACHE_GET, S("EN\0D\r\n"), &w);
	check(MEMCACHE_SET, S("CLIENT_ERRORX\r\n"), &w);
	check(MEMCACHE_INCR, S("18446744073709551616\r\n"), &w);
	check(MEMCACHE_INCR, S("12a\r\n"), &w);
	check(MEMCACHE_GET, S("VALUE k 0 99999999999999999999\r\n"), &w); /* over 2^64 */
	char key[300];
	int kl = snprintf(key, sizeof(key), "VALUE %0251d 0 1\r\nx\r\nEND\r\n", 0);
	check(MEMCACHE_GET, key, (size_t)kl, &w);

	/* over a limit: data_max 2048, line_max 1024 */
	w.rc = -EMSGSIZE;
	check(MEMCACHE_GET, S("VALUE k 0 2049\r\n"), &w);
	char *line = malloc(1100);
	memset(line, 'A', 1100);
	check(MEMCACHE_SET, line, 1100, &w);
	free(line);
}

static void test_limits(void)
{
	struct memcache_reader r;
	CHECK_INT_EQ(memcache_reader_init(&r, MEMCACHE_LINE_MIN - 1, 10), -EINVAL);
	CHECK_INT_EQ(memcache_reader_init(&r, 1024, 0), -EINVAL);
	CHECK_INT_EQ(memcache_reader_init(&r, 1024, MEMCACHE_DATA_LIMIT + 1), -EINVAL);
	/* line_max counts the CR LF: a 16-byte limit takes a 14-byte line, not 15 */
	CHECK_INT_EQ(memcache_reader_init(&r, 16, 5), 0);
	size_t used;
	memcache_reader_start(&r, MEMCACHE_SET);
	CHECK_INT_EQ(memcache_reader_feed(&r, S("SERVER_ERROR a\r\n"), &used), 1);
	memcache_reader_start(&r, MEMCACHE_SET);
	CHECK_INT_EQ(memcache_reader_feed(&r, S("SERVER_ERROR ab\r\n"), &used), -EMSGSIZE);
	/* failed stays failed until started again */
	CHECK_INT_EQ(memcache_reader_feed(&r, S("STORED\r\n"), &used), -EPROTO);
	memcache_reader_start(&r, MEMCACHE_SET);
	CHECK_INT_EQ(memcache_reader_feed(&r, S("STORED\r\n"), &used), 1);
	/* data_max 5: 5 bytes pass, 6 do not */
	memcache_reader_start(&r, MEMCACHE_GET);
	CHECK_INT_EQ(memcache_reader_feed(&r, S("VALUE k 0 5\r\n12345\r\nEND\r\n"), &used), 1);
	memcache_reader_start(&r, MEMCACHE_GET);
	CHECK_INT_EQ(memcache_reader_feed(&r, S("VALUE k 0 6\r\n"), &used), -EMSGSIZE);
	/* an empty feed needs more */
	memcache_reader_start(&r, MEMCACHE_GET);
	CHECK_INT_EQ(memcache_reader_feed(&r, "", 0, &used), 0);
	memcache_reader_free(&r);
}

/* Random bytes and random mutations of good replies: never a crash, an over-read (ASan),
 * or a reply that claims more bytes than it was given. */
static void test_random(void)
{
	static const char *const seeds[] = {
		"VALUE k 7 5\r\nhello\r\nEND\r\n", "STORED\r\n", "42\r\n", "DELETED\r\n",
		"SERVER_ERROR out of memory\r\n", "VALUE key 0 3 17\r\nabc\r\nEND\r\n",
	};
	struct memcache_reader r;
	CHECK_INT_EQ(memcache_reader_init(&r, 64, 32), 0);
	unsigned seed = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		const char *s = seeds[iter % 6];
		size_t len = strlen(s);
		char *buf = malloc(len);
		memcpy(buf, s, len);
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245u + 12345u;
			buf[(seed >> 8) % len] = (char)(seed >> 20);
		}
		memcache_reader_start(&r, (enum memcache_cmd)((seed >> 4) % MEMCACHE_CMD_MAX));
		size_t used;
		int rc = memcache_reader_feed(&r, buf, len, &used);
		CHECK(rc == 0 || rc == 1 || rc == -EPROTO || rc == -EMSGSIZE);
		CHECK(used <= len);
		if (rc == 1 && r.reply.kind == MEMCACHE_REPLY_VALUE)
			CHECK(r.reply.data_len <= 32);
		free(buf);
	}
	memcache_reader_free(&r);
}

int main(void)
{
	RUN_TEST(test_encode);
	RUN_TEST(test_replies);
	RUN_TEST(test_trailing_bytes);
	RUN_TEST(test_bad_replies);
	RUN_TEST(test_limits);
	RUN_TEST(test_random);
	return TEST_RESULT();
}
