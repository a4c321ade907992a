/* The memcached text protocol (memcache_proto.h), after memcached's doc/protocol.txt:
 * "Storage commands", "Retrieval command", "Deletion", "Increment/Decrement", "Touch" and
 * "Error strings". */
#include "tables/memcache_proto.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *memcache_cmd_name(enum memcache_cmd c)
{
	static const char *const names[MEMCACHE_CMD_MAX] = {
		[MEMCACHE_GET] = "get",       [MEMCACHE_SET] = "set",
		[MEMCACHE_ADD] = "add",       [MEMCACHE_DELETE] = "delete",
		[MEMCACHE_INCR] = "incr",     [MEMCACHE_TOUCH] = "touch",
	};
	return (unsigned)c < MEMCACHE_CMD_MAX ? names[c] : "?";
}

const char *memcache_reply_kind_name(enum memcache_reply_kind k)
{
	static const char *const names[MEMCACHE_REPLY_KIND_MAX] = {
		[MEMCACHE_REPLY_VALUE] = "VALUE",
		[MEMCACHE_REPLY_END] = "END",
		[MEMCACHE_REPLY_STORED] = "STORED",
		[MEMCACHE_REPLY_NOT_STORED] = "NOT_STORED",
		[MEMCACHE_REPLY_EXISTS] = "EXISTS",
		[MEMCACHE_REPLY_NOT_FOUND] = "NOT_FOUND",
		[MEMCACHE_REPLY_DELETED] = "DELETED",
		[MEMCACHE_REPLY_TOUCHED] = "TOUCHED",
		[MEMCACHE_REPLY_NUMBER] = "number",
		[MEMCACHE_REPLY_ERROR] = "ERROR",
		[MEMCACHE_REPLY_CLIENT_ERROR] = "CLIENT_ERROR",
		[MEMCACHE_REPLY_SERVER_ERROR] = "SERVER_ERROR",
	};
	return (unsigned)k < MEMCACHE_REPLY_KIND_MAX ? names[k] : "?";
}

const char *memcache_reader_state_name(enum memcache_reader_state s)
{
	static const char *const names[MEMCACHE_READ_STATE_MAX] = {
		[MEMCACHE_READ_LINE] = "line",
		[MEMCACHE_READ_DATA] = "data",
		[MEMCACHE_READ_END] = "end",
		[MEMCACHE_READ_DONE] = "done",
		[MEMCACHE_READ_FAILED] = "failed",
	};
	return (unsigned)s < MEMCACHE_READ_STATE_MAX ? names[s] : "?";
}

bool memcache_key_valid(const char *key, size_t len)
{
	if (len == 0 || len > MEMCACHE_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* ---- encoders ---- */

/* "<word> <key><tail>" into buf; tail is already formatted (numbers, CRLF). */
static long memcache_encode_line(char *buf, size_t cap, const char *word, const char *key,
				 size_t keylen, const char *tail)
{
	if (!memcache_key_valid(key, keylen))
		return -EINVAL;
	size_t wl = strlen(word), tl = strlen(tail);
	size_t need = wl + 1 + keylen + tl;
	if (need > cap)
		return -ENOBUFS;
	memcpy(buf, word, wl);
	buf[wl] = ' ';
	memcpy(buf + wl + 1, key, keylen);
	memcpy(buf + wl + 1 + keylen, tail, tl);
	return (long)need;
}

long memcache_encode_get(char *buf, size_t cap, const char *key, size_t keylen)
{
	return memcache_encode_line(buf, cap, "get", key, keylen, "\r\n");
}

long memcache_encode_store(char *buf, size_t cap, enum memcache_cmd cmd, const char *key,
			   size_t keylen, uint32_t flags, uint32_t exptime, const void *data,
			   size_t len)
{
	assert(cmd == MEMCACHE_SET || cmd == MEMCACHE_ADD);
	if (len > MEMCACHE_DATA_LIMIT)
		return -EINVAL;
	/* "<command name> <key> <flags> <exptime> <bytes>\r\n<data block>\r\n" */
	char tail[64];
	snprintf(tail, sizeof(tail), " %" PRIu32 " %" PRIu32 " %zu\r\n", flags, exptime, len);
	long n = memcache_encode_line(buf, cap, memcache_cmd_name(cmd), key, keylen, tail);
	if (n < 0)
		return n;
	if ((size_t)n + len + 2 > cap)
		return -ENOBUFS;
	if (len)
		memcpy(buf + n, data, len);
	memcpy(buf + n + len, "\r\n", 2);
	return n + (long)len + 2;
}

long memcache_encode_delete(char *buf, size_t cap, const char *key, size_t keylen)
{
	return memcache_encode_line(buf, cap, "delete", key, keylen, "\r\n");
}

long memcache_encode_incr(char *buf, size_t cap, const char *key, size_t keylen,
			  uint64_t delta)
{
	char tail[32];
	snprintf(tail, sizeof(tail), " %" PRIu64 "\r\n", delta);
	return memcache_encode_line(buf, cap, "incr", key, keylen, tail);
}

long memcache_encode_touch(char *buf, size_t cap, const char *key, size_t keylen,
			   uint32_t exptime)
{
	char tail[32];
	snprintf(tail, sizeof(tail), " %" PRIu32 "\r\n", exptime);
	return memcache_encode_line(buf, cap, "touch", key, keylen, tail);
}

/* ---- the reply reader ---- */

int memcache_reader_init(struct memcache_reader *r, size_t line_max, size_t data_max)
{
	memset(r, 0, sizeof(*r));
	if (line_max < MEMCACHE_LINE_MIN || line_max > MEMCACHE_LINE_LIMIT || data_max < 1 ||
	    data_max > MEMCACHE_DATA_LIMIT)
		return -EINVAL;
	r->line_max = line_max;
	r->data_max = data_max;
	r->line = malloc(line_max + 1);
	r->data = malloc(data_max + 3);
	if (!r->line || !r->data) {
		memcache_reader_free(r);
		return -ENOMEM;
	}
	r->state = MEMCACHE_READ_DONE;
	return 0;
}

void memcache_reader_free(struct memcache_reader *r)
{
	free(r->line);
	free(r->data);
	r->line = r->data = NULL;
}

void memcache_reader_start(struct memcache_reader *r, enum memcache_cmd cmd)
{
	assert((unsigned)cmd < MEMCACHE_CMD_MAX && r->line);
	r->cmd = cmd;
	r->line_len = 0;
	r->data_want = r->data_len = 0;
	memset(&r->reply, 0, sizeof(r->reply));
	r->reply.message = "";
	r->state = MEMCACHE_READ_LINE;
}

static void memcache_reader_enter(struct memcache_reader *r, enum memcache_reader_state s)
{
	r->state = s;
	if (s == MEMCACHE_READ_LINE || s == MEMCACHE_READ_END)
		r->line_len = 0;
}

static int memcache_reader_fail(struct memcache_reader *r, int rc)
{
	memcache_reader_enter(r, MEMCACHE_READ_FAILED);
	return rc;
}

/* A decimal number of up to max, the whole of [p, p+n) (at least one digit). */
static bool memcache_parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* The next token of a line split by single or repeated spaces: its start and length
 * through *tok and *tlen, advancing *pos; false at the end of the line. */
static bool memcache_next_token(const char *line, size_t len, size_t *pos, const char **tok,
				size_t *tlen)
{
	size_t i = *pos;
	while (i < len && line[i] == ' ')
		i++;
	if (i == len)
		return false;
	size_t start = i;
	while (i < len && line[i] != ' ')
		i++;
	*tok = line + start;
	*tlen = i - start;
	*pos = i;
	return true;
}

/* "VALUE <key> <flags> <bytes> [<cas unique>]" (protocol.txt, "Retrieval command"). */
static int memcache_parse_value(struct memcache_reader *r, const char *line, size_t len)
{
	size_t pos = 5; /* after "VALUE" */
	const char *tok;
	size_t tl;
	uint64_t flags, bytes, cas;
	if (!memcache_next_token(line, len, &pos, &tok, &tl) || !memcache_key_valid(tok, tl))
		return -EPROTO;
	memcpy(r->reply.key, tok, tl);
	r->reply.key[tl] = '\0';
	if (!memcache_next_token(line, len, &pos, &tok, &tl) ||
	    !memcache_parse_u64(tok, tl, UINT32_MAX, &flags))
		return -EPROTO;
	if (!memcache_next_token(line, len, &pos, &tok, &tl) ||
	    !memcache_parse_u64(tok, tl, UINT64_MAX, &bytes))
		return -EPROTO;
	if (memcache_next_token(line, len, &pos, &tok, &tl)) {
		if (!memcache_parse_u64(tok, tl, UINT64_MAX, &cas))
			return -EPROTO;
		r->reply.cas = cas;
		r->reply.has_cas = true;
		if (memcache_next_token(line, len, &pos, &tok, &tl))
			return -EPROTO;
	}
	if (bytes > r->data_max)
		return -EMSGSIZE;
	r->reply.kind = MEMCACHE_REPLY_VALUE;
	r->reply.flags = (uint32_t)flags;
	r->data_want = (size_t)bytes + 2;
	r->data_len = 0;
	return 0;
}

/* Is a reply of kind k one the command read can have? (ERROR and its kin: any.) */
static bool memcache_reply_fits(enum memcache_cmd cmd, enum memcache_reply_kind k)
{
	switch (k) {
	case MEMCACHE_REPLY_ERROR:
	case MEMCACHE_REPLY_CLIENT_ERROR:
	case MEMCACHE_REPLY_SERVER_ERROR:
		return true;
	case MEMCACHE_REPLY_VALUE:
	case MEMCACHE_REPLY_END:
		return cmd == MEMCACHE_GET;
	case MEMCACHE_REPLY_STORED:
	case MEMCACHE_REPLY_NOT_STORED:
	case MEMCACHE_REPLY_EXISTS:
		return cmd == MEMCACHE_SET || cmd == MEMCACHE_ADD;
	case MEMCACHE_REPLY_NOT_FOUND:
		/* set/add: NOT_FOUND is for cas, which is not encoded, but a server may say it */
		return cmd != MEMCACHE_GET;
	case MEMCACHE_REPLY_DELETED:
		return cmd == MEMCACHE_DELETE;
	case MEMCACHE_REPLY_TOUCHED:
		return cmd == MEMCACHE_TOUCH;
	case MEMCACHE_REPLY_NUMBER:
		return cmd == MEMCACHE_INCR;
	case MEMCACHE_REPLY_KIND_MAX:
		break;
	}
	return false;
}

/* The first line of a reply (without its line end, NUL-terminated in r->line): 1 done, 0
 * a VALUE's data follows, or a negative errno. */
static int memcache_parse_first(struct memcache_reader *r, size_t len)
{
	const char *line = r->line;
	static const struct {
		const char *word;
		enum memcache_reply_kind kind;
	} plain[] = {
		{ "END", MEMCACHE_REPLY_END },
		{ "STORED", MEMCACHE_REPLY_STORED },
		{ "NOT_STORED", MEMCACHE_REPLY_NOT_STORED },
		{ "EXISTS", MEMCACHE_REPLY_EXISTS },
		{ "NOT_FOUND", MEMCACHE_REPLY_NOT_FOUND },
		{ "DELETED", MEMCACHE_REPLY_DELETED },
		{ "TOUCHED", MEMCACHE_REPLY_TOUCHED },
		{ "ERROR", MEMCACHE_REPLY_ERROR },
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		if (strcmp(line, plain[i].word) == 0) {
			if (!memcache_reply_fits(r->cmd, plain[i].kind))
				return -EPROTO;
			r->reply.kind = plain[i].kind;
			return 1;
		}
	}
	if (strncmp(line, "CLIENT_ERROR", 12) == 0 && (len == 12 || line[12] == ' ')) {
		r->reply.kind = MEMCACHE_REPLY_CLIENT_ERROR;
		r->reply.message = line + (len > 12 ? 13 : 12);
		return 1;
	}
	if (strncmp(line, "SERVER_ERROR", 12) == 0 && (len == 12 || line[12] == ' ')) {
		r->reply.kind = MEMCACHE_REPLY_SERVER_ERROR;
		r->reply.message = line + (len > 12 ? 13 : 12);
		return 1;
	}
	if (strncmp(line, "VALUE ", 6) == 0) {
		if (r->cmd != MEMCACHE_GET)
			return -EPROTO;
		return memcache_parse_value(r, line, len);
	}
	if (r->cmd == MEMCACHE_INCR && len > 0 && line[0] >= '0' && line[0] <= '9') {
		/* older servers pad the number with spaces (protocol.txt: "the client
		 * should not assume" otherwise) */
		size_t n = len;
		while (n > 0 && line[n - 1] == ' ')
			n--;
		if (!memcache_parse_u64(line, n, UINT64_MAX, &r->reply.number))
			return -EPROTO;
		r->reply.kind = MEMCACHE_REPLY_NUMBER;
		return 1;
	}
	return -EPROTO;
}

/* Gather a line into r->line: true when its LF came (the line, without CR LF, is then
 * NUL-terminated and r->line_len is its length). A line is ended by CR LF; a bare LF is
 * taken too (as Postfix's memcache_get() does), a CR anywhere else is refused. */
static int memcache_take_line(struct memcache_reader *r, const char *in, size_t len,
			      size_t *pos)
{
	while (*pos < len) {
		char c = in[(*pos)++];
		if (c == '\n') {
			size_t n = r->line_len;
			if (n > 0 && r->line[n - 1] == '\r')
				n--;
			if (memchr(r->line, '\r', n) || memchr(r->line, '\0', n))
				return -EPROTO;
			r->line[n] = '\0';
			r->line_len = n;
			return 1;
		}
		/* the limit counts the line end, as line_size_limit does */
		if (r->line_len + 1 >= r->line_max)
			return -EMSGSIZE;
		r->line[r->line_len++] = c;
	}
	return 0;
}

int memcache_reader_feed(struct memcache_reader *r, const char *in, size_t len, size_t *used)
{
	size_t pos = 0;
	*used = 0;
	if (r->state == MEMCACHE_READ_FAILED)
		return -EPROTO;
	assert(r->state != MEMCACHE_READ_DONE);
	while (pos < len) {
		int rc;
		switch (r->state) {
		case MEMCACHE_READ_LINE:
			rc = memcache_take_line(r, in, len, &pos);
			if (rc < 0)
				break;
			if (rc == 0)
				continue;
			rc = memcache_parse_first(r, r->line_len);
			if (rc == 1) {
				memcache_reader_enter(r, MEMCACHE_READ_DONE);
				*used = pos;
				return 1;
			}
			if (rc == 0)
				memcache_reader_enter(r, MEMCACHE_READ_DATA);
			break;
		case MEMCACHE_READ_DATA: {
			size_t n = r->data_want - r->data_len;
			if (n > len - pos)
				n = len - pos;
			memcpy(r->data + r->data_len, in + pos, n);
			r->data_len += n;
			pos += n;
			rc = 0;
			if (r->data_len < r->data_want)
				continue;
			/* the block ends with CR LF (protocol.txt) */
			if (r->data[r->data_want - 2] != '\r' || r->data[r->data_want - 1] != '\n') {
				rc = -EPROTO;
				break;
			}
			r->reply.data_len = r->data_want - 2;
			r->data[r->reply.data_len] = '\0';
			r->reply.data = r->data;
			memcache_reader_enter(r, MEMCACHE_READ_END);
			break;
		}
		case MEMCACHE_READ_END:
			rc = memcache_take_line(r, in, len, &pos);
			if (rc <= 0)
				break;
			/* one key asked, one VALUE: anything but END is wrong */
			if (strcmp(r->line, "END") != 0) {
				rc = -EPROTO;
				break;
			}
			memcache_reader_enter(r, MEMCACHE_READ_DONE);
			*used = pos;
			return 1;
		default:
			assert(!"memcache_reader_feed: bad state");
			rc = -EPROTO;
		}
		if (rc < 0) {
			*used = pos;
			return memcache_reader_fail(r, rc);
		}
	}
	*used = pos;
	return 0;
}
