/* libFuzzer harness for the replies of anvil's shared counters (tables/anvil_wire.h): the
 * add + incr pair's reader, and the keys.
 *
 * The first byte picks the mode: below 0xe0, the rest is a stream of server replies, read
 * pair after pair (up to 64) twice, whole and one byte at a time; both readings must
 * agree (the same results, totals and bytes taken, the same failure), and no pair may take
 * more than it was given. From 0xe0 on, the rest (up to a NUL) is a service name: the key
 * made for it, when one is made, is one memcached takes and no longer than
 * ANVIL_WIRE_KEY_MAX, and the add + incr pair encodes. Inputs live in heap buffers of
 * exactly their length. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "tables/anvil_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PAIRS_MAX 64
#define FUZZ_LINE_MAX 96

struct fuzz_pair {
	int rc;
	size_t used;
	int result;
	uint64_t total;
};

static unsigned fuzz_read(struct anvil_wire_reader *r, const char *in, size_t len, size_t step,
			  struct fuzz_pair *out)
{
	size_t off = 0;
	unsigned n = 0;
	while (n < FUZZ_PAIRS_MAX && off < len) {
		anvil_wire_reader_start(r);
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
			rc = anvil_wire_reader_feed(r, buf, piece, &used);
			free(buf);
			FUZZ_CHECK(used <= piece);
			FUZZ_CHECK(rc != 0 || used == piece);
			taken += used;
			if (rc != 0)
				break;
		}
		out[n].rc = rc;
		out[n].used = taken;
		out[n].result = rc == 1 ? r->result : 0;
		out[n].total = rc == 1 && r->result == 0 ? r->total : 0;
		if (rc == 1) {
			FUZZ_CHECK(r->state == ANVIL_WIRE_DONE);
			FUZZ_CHECK(r->result == 0 || r->result == -EIO || r->result == -ENOENT);
		} else if (rc < 0) {
			FUZZ_CHECK(r->state == ANVIL_WIRE_FAILED);
		}
		n++;
		off += taken;
		if (rc != 1)
			break;
	}
	return n;
}

static void fuzz_replies(const char *in, size_t len)
{
	struct anvil_wire_reader r;
	FUZZ_CHECK(anvil_wire_reader_init(&r, FUZZ_LINE_MAX) == 0);
	static struct fuzz_pair whole[FUZZ_PAIRS_MAX], bytes[FUZZ_PAIRS_MAX];
	unsigned a = fuzz_read(&r, in, len, 0, whole);
	unsigned b = fuzz_read(&r, in, len, 1, bytes);
	FUZZ_CHECK(a == b);
	for (unsigned i = 0; i < a; i++) {
		FUZZ_CHECK(whole[i].rc == bytes[i].rc);
		FUZZ_CHECK(whole[i].used == bytes[i].used);
		FUZZ_CHECK(whole[i].result == bytes[i].result);
		FUZZ_CHECK(whole[i].total == bytes[i].total);
	}
	anvil_wire_reader_free(&r);
}

static void fuzz_key(const char *name, size_t len)
{
	char *service = malloc(len + 1);
	FUZZ_CHECK(service != NULL);
	memcpy(service, name, len);
	service[len] = '\0';
	struct mx_inet_addr a = { .family = AF_INET6 };
	for (size_t i = 0; i < sizeof(a.bytes); i++)
		a.bytes[i] = (uint8_t)(len * 31 + i);
	struct anvil_delta d = { .rate = (uint8_t)(len % ANVIL_RATE_MAX), .unit = 60,
				 .window = len * 1000003u, .n = (uint32_t)len };
	anvil_key_make(&d.key, &a, 24, (unsigned)(len % 129), 0);
	char key[ANVIL_WIRE_KEY_MAX + 1];
	long n = anvil_wire_key(key, sizeof(key), service, &d);
	FUZZ_CHECK(n == -EINVAL || n == -ENOBUFS || (n > 0 && n <= ANVIL_WIRE_KEY_MAX));
	if (n > 0) {
		FUZZ_CHECK((size_t)n == strlen(key));
		char pair[ANVIL_WIRE_PAIR_MAX];
		long w = anvil_wire_encode(pair, sizeof(pair), key, (size_t)n, d.n, 60);
		/* a service name may hold what memcached refuses in a key: -EINVAL then */
		FUZZ_CHECK(w > 0 ? memcache_key_valid(key, (size_t)n) : w == -EINVAL);
	}
	free(service);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *in = malloc(size - 1 ? size - 1 : 1);
	FUZZ_CHECK(in != NULL);
	memcpy(in, data + 1, size - 1);
	if (data[0] < 0xe0) {
		fuzz_replies(in, size - 1);
	} else {
		const char *nul = memchr(in, '\0', size - 1);
		fuzz_key(in, nul ? (size_t)(nul - in) : size - 1);
	}
	free(in);
	return 0;
}
