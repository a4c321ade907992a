/* anvil's shared counters in memcached (anvil_wire.h): keys, the add + incr pair, and
 * the reader of its two replies. */
#include "tables/anvil_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *anvil_wire_state_name(enum anvil_wire_state s)
{
	static const char *const names[ANVIL_WIRE_STATE_MAX] = {
		[ANVIL_WIRE_ADD] = "add",
		[ANVIL_WIRE_INCR] = "incr",
		[ANVIL_WIRE_DONE] = "done",
		[ANVIL_WIRE_FAILED] = "failed",
	};
	return (unsigned)s < ANVIL_WIRE_STATE_MAX ? names[s] : "?";
}

const char *anvil_wire_service(const char *name, char *buf, size_t len)
{
	const char *colon = strrchr(name, ':');
	if (colon && colon[1])
		name = colon + 1;
	snprintf(buf, len, "%s", name);
	return buf;
}

long anvil_wire_key(char *out, size_t cap, const char *service, const struct anvil_delta *d)
{
	char svc[ANVIL_SERVICE_NAME_MAX];
	char range[64];
	anvil_wire_service(service, svc, sizeof(svc));
	if (!svc[0])
		return -EINVAL;
	anvil_key_range(&d->key, range, sizeof(range));
	int n = snprintf(out, cap, "anvil:%s:%s:%s:%" PRIu32 ":%" PRIu64, svc, range,
			 anvil_rate_name((enum anvil_rate)d->rate), d->unit, d->window);
	if (n < 0 || (size_t)n >= cap || n > ANVIL_WIRE_KEY_MAX) {
		if (cap)
			out[0] = '\0';
		return -ENOBUFS;
	}
	return n;
}

uint32_t anvil_wire_exptime(const struct anvil_delta *d, uint64_t now_wall_s)
{
	uint64_t unit = d->unit ? d->unit : 1;
	uint64_t until = (d->window + 2) * unit + 60;
	if (until <= now_wall_s)
		return 60; /* a window long past: a minute is plenty (0 would be never) */
	uint64_t rel = until - now_wall_s;
	if (rel <= MEMCACHE_RELATIVE_MAX)
		return (uint32_t)rel;
	return until > UINT32_MAX ? UINT32_MAX : (uint32_t)until;
}

long anvil_wire_encode(char *buf, size_t cap, const char *key, size_t keylen, uint32_t n,
		       uint32_t exptime)
{
	long a = memcache_encode_store(buf, cap, MEMCACHE_ADD, key, keylen, 0, exptime, "0", 1);
	if (a < 0)
		return a;
	long b = memcache_encode_incr(buf + a, cap - (size_t)a, key, keylen, n);
	if (b < 0)
		return b;
	return a + b;
}

int anvil_wire_reader_init(struct anvil_wire_reader *r, size_t line_max)
{
	memset(r, 0, sizeof(*r));
	/* no VALUE comes to add or incr: the smallest data limit */
	return memcache_reader_init(&r->mr, line_max, 1);
}

void anvil_wire_reader_free(struct anvil_wire_reader *r)
{
	memcache_reader_free(&r->mr);
}

void anvil_wire_reader_start(struct anvil_wire_reader *r)
{
	r->state = ANVIL_WIRE_ADD;
	r->result = 0;
	r->total = 0;
	r->error_kind = MEMCACHE_REPLY_KIND_MAX;
	r->error[0] = '\0';
	memcache_reader_start(&r->mr, MEMCACHE_ADD);
}

/* An error reply to either command: the first one is kept. */
static void anvil_wire_error(struct anvil_wire_reader *r)
{
	if (r->result == -EIO)
		return;
	r->result = -EIO;
	r->error_kind = r->mr.reply.kind;
	snprintf(r->error, sizeof(r->error), "%s", r->mr.reply.message);
}

static bool anvil_wire_is_error(enum memcache_reply_kind k)
{
	return k == MEMCACHE_REPLY_ERROR || k == MEMCACHE_REPLY_CLIENT_ERROR ||
	       k == MEMCACHE_REPLY_SERVER_ERROR;
}

int anvil_wire_reader_feed(struct anvil_wire_reader *r, const char *in, size_t len,
			   size_t *used)
{
	*used = 0;
	if (r->state == ANVIL_WIRE_DONE)
		return 1;
	if (r->state == ANVIL_WIRE_FAILED)
		return -EPROTO;
	for (;;) {
		/* (with nothing left the memcache reader asks for more: 0) */
		size_t k = 0;
		int rc = memcache_reader_feed(&r->mr, in + *used, len - *used, &k);
		*used += k;
		if (rc < 0) {
			r->state = ANVIL_WIRE_FAILED;
			return rc;
		}
		if (rc == 0)
			return 0;
		enum memcache_reply_kind kind = r->mr.reply.kind;
		if (r->state == ANVIL_WIRE_ADD) {
			if (anvil_wire_is_error(kind))
				anvil_wire_error(r);
			else if (kind != MEMCACHE_REPLY_STORED && kind != MEMCACHE_REPLY_NOT_STORED)
				break;
			r->state = ANVIL_WIRE_INCR;
			memcache_reader_start(&r->mr, MEMCACHE_INCR);
			continue;
		}
		/* ANVIL_WIRE_INCR */
		if (kind == MEMCACHE_REPLY_NUMBER) {
			if (r->result == 0)
				r->total = r->mr.reply.number;
		} else if (kind == MEMCACHE_REPLY_NOT_FOUND) {
			if (r->result == 0)
				r->result = -ENOENT;
		} else if (anvil_wire_is_error(kind)) {
			anvil_wire_error(r);
		} else {
			break;
		}
		r->state = ANVIL_WIRE_DONE;
		return 1;
	}
	/* a reply the command cannot have (the memcache reader checks most of this) */
	r->state = ANVIL_WIRE_FAILED;
	return -EPROTO;
}
