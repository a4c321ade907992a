/* libFuzzer harness for the memcached protocol reader (tables/memcache_proto.h) and
 * memcache_table(5) files (tables/memcache_conf.h).
 *
 * The first byte picks the mode: below 0xc0, the rest is a stream of server replies to
 * the command (byte % 6), read reply after reply (up to 64) twice, whole and one byte at
 * a time; both readings must agree (the same replies, the same bytes taken, the same
 * failure), no reply may take more than it was given, and a VALUE's data stays within
 * the limit. From 0xc0 on, the rest is a memcache_table(5) file; when it parses, its
 * limits are within bounds and the keys it makes (from fixed keys and from the input's
 * own first line) are keys memcached takes, or skipped. Inputs live in heap buffers of
 * exactly their length. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/memcache_conf.h"
#include "tables/memcache_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REPLIES_MAX 64
#define FUZZ_LINE_MAX 96
#define FUZZ_DATA_MAX 200

struct fuzz_reply {
	int rc;
	size_t used;
	enum memcache_reply_kind kind;
	size_t data_len;
	uint32_t flags;
	uint64_t number;
	uint32_t data_sum;
};

/* Read replies to cmd from in, each fed in pieces of `step` bytes (0: all at once);
 * returns how many outcomes were recorded. */
static unsigned fuzz_read(struct memcache_reader *r, enum memcache_cmd cmd, const char *in,
			  size_t len, size_t step, struct fuzz_reply *out)
{
	size_t off = 0;
	unsigned n = 0;
	while (n < FUZZ_REPLIES_MAX) {
		memcache_reader_start(r, cmd);
		size_t taken = 0;
		int rc = 0;
		while (off + taken < len) {
			size_t piece = len - off - taken;
			if (step && piece > step)
				piece = step;
			char *buf = malloc(piece);
			FUZZ_CHECK(buf != NULL);
			memcpy(buf, in + off + taken, piece);
			size_t used = 0;
			rc = memcache_reader_feed(r, buf, piece, &used);
			free(buf);
			FUZZ_CHECK(used <= piece);
			FUZZ_CHECK(rc != 0 || used == piece);
			taken += used;
			if (rc != 0)
				break;
		}
		struct fuzz_reply *o = &out[n++];
		memset(o, 0, sizeof(*o));
		o->rc = rc;
		o->used = taken;
		FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EPROTO || rc == -EMSGSIZE);
		if (rc != 1)
			return n;
		const struct memcache_reply *rep = &r->reply;
		o->kind = rep->kind;
		FUZZ_CHECK((unsigned)rep->kind < MEMCACHE_REPLY_KIND_MAX);
		if (rep->kind == MEMCACHE_REPLY_VALUE) {
			FUZZ_CHECK(rep->data_len <= FUZZ_DATA_MAX);
			FUZZ_CHECK(rep->data[rep->data_len] == '\0');
			FUZZ_CHECK(memcache_key_valid(rep->key, strlen(rep->key)));
			o->data_len = rep->data_len;
			o->flags = rep->flags;
			for (size_t i = 0; i < rep->data_len; i++)
				o->data_sum = o->data_sum * 31u + (unsigned char)rep->data[i];
		}
		if (rep->kind == MEMCACHE_REPLY_NUMBER)
			o->number = rep->number;
		FUZZ_CHECK(rep->message != NULL);
		off += taken;
	}
	return n;
}

static void fuzz_replies(enum memcache_cmd cmd, const char *in, size_t len)
{
	struct memcache_reader r;
	FUZZ_CHECK(memcache_reader_init(&r, FUZZ_LINE_MAX, FUZZ_DATA_MAX) == 0);
	static struct fuzz_reply whole[FUZZ_REPLIES_MAX], bytes[FUZZ_REPLIES_MAX];
	unsigned nw = fuzz_read(&r, cmd, in, len, 0, whole);
	unsigned nb = fuzz_read(&r, cmd, in, len, 1, bytes);
	FUZZ_CHECK(nw == nb);
	for (unsigned i = 0; i < nw; i++) {
		FUZZ_CHECK(whole[i].rc == bytes[i].rc);
		FUZZ_CHECK(whole[i].used == bytes[i].used);
		FUZZ_CHECK(whole[i].kind == bytes[i].kind);
		FUZZ_CHECK(whole[i].data_len == bytes[i].data_len);
		FUZZ_CHECK(whole[i].flags == bytes[i].flags);
		FUZZ_CHECK(whole[i].number == bytes[i].number);
		FUZZ_CHECK(whole[i].data_sum == bytes[i].data_sum);
	}
	memcache_reader_free(&r);
}

static void fuzz_key(const struct memcache_conf *c, const char *key)
{
	char out[MEMCACHE_KEY_MAX + 1];
	long n = memcache_conf_key(c, key, out, sizeof(out));
	FUZZ_CHECK(n >= 0 && n <= MEMCACHE_KEY_MAX);
	if (n > 0) {
		FUZZ_CHECK(strlen(out) == (size_t)n);
		FUZZ_CHECK(memcache_key_valid(out, (size_t)n));
	}
}

static void fuzz_conf(const char *in, size_t len)
{
	struct memcache_conf c;
	memcache_conf_init(&c);
	char err[256];
	err[0] = '\0';
	int rc = memcache_conf_parse(&c, in, len, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG);
	if (rc < 0) {
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	FUZZ_CHECK(c.memcache[0] != '\0');
	FUZZ_CHECK(c.key_format[0] != '\0');
	FUZZ_CHECK(c.ndomains <= MEMCACHE_CONF_DOMAINS_MAX);
	FUZZ_CHECK(c.line_size_limit >= MEMCACHE_LINE_MIN &&
		   c.line_size_limit <= MEMCACHE_LINE_LIMIT);
	FUZZ_CHECK(c.data_size_limit >= 1 && c.data_size_limit <= MEMCACHE_DATA_LIMIT);
	FUZZ_CHECK(c.max_try >= 1 && c.timeout >= 1 && c.retry_pause >= 1);
	static const char *const keys[] = {
		"192.0.2.1", "joe@mail.example.com", "@example.com", "joe@", "joe",
		"a@b.c.d.e.f.g.h.i.j", "x@..", "",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		fuzz_key(&c, keys[i]);
	/* the input's first line as a key, as long as a dict key may be */
	char key[251];
	size_t k = 0;
	while (k < len && k < sizeof(key) - 1 && in[k] != '\n' && in[k] != '\0') {
		key[k] = in[k];
		k++;
	}
	key[k] = '\0';
	fuzz_key(&c, key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	char *in = malloc(len ? len : 1);
	if (!in)
		return 0;
	memcpy(in, data + 1, len);
	if (data[0] < 0xc0)
		fuzz_replies((enum memcache_cmd)(data[0] % MEMCACHE_CMD_MAX), in, len);
	else
		fuzz_conf(in, len);
	free(in);
	return 0;
}
