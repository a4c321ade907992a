/* The memcached text protocol, sans-I/O: commands encoded into a caller's buffer, and a
 * reader that takes the server's reply in pieces of any size. Only what a dictionary
 * client needs: get (one key), set, add, delete, incr, touch (memcached's
 * doc/protocol.txt, "Commands"; Postfix's memcache_table(5) client uses get, set and
 * delete).
 *
 * Keys are 1..MEMCACHE_KEY_MAX bytes without spaces or control characters (protocol.txt,
 * "Keys"). A reply is read up to its end, and never past it: bytes after it are left to
 * the caller (the next reply, or junk the server sent unasked). */
#ifndef MXGATE_TABLES_MEMCACHE_PROTO_H
#define MXGATE_TABLES_MEMCACHE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMCACHE_KEY_MAX 250          /* protocol.txt: "the length limit of a key" */
#define MEMCACHE_LINE_MIN 16          /* a reader's line limit is at least this */
#define MEMCACHE_LINE_LIMIT (1u << 20)   /* ... and at most this */
#define MEMCACHE_DATA_LIMIT (16u << 20)  /* a reader's data limit is at most this */
/* protocol.txt: an exptime over 30 days is an absolute Unix time */
#define MEMCACHE_RELATIVE_MAX 2592000u

enum memcache_cmd {
	MEMCACHE_GET,
	MEMCACHE_SET,
	MEMCACHE_ADD,
	MEMCACHE_DELETE,
	MEMCACHE_INCR,
	MEMCACHE_TOUCH,
	MEMCACHE_CMD_MAX
};

const char *memcache_cmd_name(enum memcache_cmd c);

enum memcache_reply_kind {
	MEMCACHE_REPLY_VALUE,        /* get: a hit (one VALUE block, then END) */
	MEMCACHE_REPLY_END,          /* get: a miss */
	MEMCACHE_REPLY_STORED,
	MEMCACHE_REPLY_NOT_STORED,
	MEMCACHE_REPLY_EXISTS,
	MEMCACHE_REPLY_NOT_FOUND,
	MEMCACHE_REPLY_DELETED,
	MEMCACHE_REPLY_TOUCHED,
	MEMCACHE_REPLY_NUMBER,       /* incr: the new value */
	MEMCACHE_REPLY_ERROR,        /* "ERROR": the server did not know the command */
	MEMCACHE_REPLY_CLIENT_ERROR, /* "CLIENT_ERROR <message>" */
	MEMCACHE_REPLY_SERVER_ERROR, /* "SERVER_ERROR <message>" */
	MEMCACHE_REPLY_KIND_MAX
};

const char *memcache_reply_kind_name(enum memcache_reply_kind k);

/* A key memcached takes: 1..MEMCACHE_KEY_MAX bytes, none of them a space or a control
 * character (0x00-0x20, 0x7f). */
bool memcache_key_valid(const char *key, size_t len);

/* Encoders: the command with its CRLF (and a store's data block) into buf. They return
 * the bytes written, -EINVAL for a bad key, or -ENOBUFS when cap is too small (nothing
 * useful in buf then). */
long memcache_encode_get(char *buf, size_t cap, const char *key, size_t keylen);
/* cmd: MEMCACHE_SET or MEMCACHE_ADD. exptime as protocol.txt: 0 never, up to
 * MEMCACHE_RELATIVE_MAX seconds from now, else an absolute Unix time. */
long memcache_encode_store(char *buf, size_t cap, enum memcache_cmd cmd, const char *key,
			   size_t keylen, uint32_t flags, uint32_t exptime, const void *data,
			   size_t len);
long memcache_encode_delete(char *buf, size_t cap, const char *key, size_t keylen);
long memcache_encode_incr(char *buf, size_t cap, const char *key, size_t keylen,
			  uint64_t delta);
long memcache_encode_touch(char *buf, size_t cap, const char *key, size_t keylen,
			   uint32_t exptime);

/* ---- replies ---- */

enum memcache_reader_state {
	MEMCACHE_READ_LINE,     /* the first line of the reply */
	MEMCACHE_READ_DATA,     /* a VALUE's data block and its CRLF */
	MEMCACHE_READ_END,      /* the END line after a VALUE block */
	MEMCACHE_READ_DONE,     /* a reply is complete (memcache_reader_start() again) */
	MEMCACHE_READ_FAILED,   /* malformed: the connection cannot be trusted any more */
	MEMCACHE_READ_STATE_MAX
};

const char *memcache_reader_state_name(enum memcache_reader_state s);

struct memcache_reply {
	enum memcache_reply_kind kind;
	uint32_t flags;          /* VALUE */
	uint64_t cas;            /* VALUE, when the server sent one ("gets"); else 0 */
	bool has_cas;
	const char *data;        /* VALUE: the data (the reader's buffer, NUL-terminated
				    after data_len; valid until the next start) */
	size_t data_len;
	uint64_t number;         /* NUMBER */
	const char *message;     /* CLIENT_ERROR, SERVER_ERROR: the text after the word
				    (NUL-terminated, the reader's buffer); else "" */
	char key[MEMCACHE_KEY_MAX + 1]; /* VALUE: the key the server named */
};

struct memcache_reader {
	enum memcache_reader_state state;
	enum memcache_cmd cmd;   /* whose reply is read */
	size_t line_max;         /* a reply line's limit, its CRLF included */
	size_t data_max;         /* a VALUE's data limit */
	char *line;              /* [line_max + 1] */
	size_t line_len;
	char *data;              /* [data_max + 3]: the data, its CRLF, a NUL */
	size_t data_want;        /* the VALUE's length + 2 (its CRLF) */
	size_t data_len;         /* received of data_want */
	struct memcache_reply reply;
};

/* Limits as memcache_table(5)'s line_size_limit (MEMCACHE_LINE_MIN..MEMCACHE_LINE_LIMIT)
 * and data_size_limit (1..MEMCACHE_DATA_LIMIT). 0, -EINVAL, or -ENOMEM. */
int memcache_reader_init(struct memcache_reader *r, size_t line_max, size_t data_max);
void memcache_reader_free(struct memcache_reader *r);
/* Expect the reply to cmd. */
void memcache_reader_start(struct memcache_reader *r, enum memcache_cmd cmd);
/* Take up to len bytes of the reply; *used says how many were taken (never past the
 * reply's end). Returns 1 when the reply is complete (r->reply holds it), 0 when more is
 * needed (all of in was taken), or, for a reply that is malformed, not one cmd can have,
 * or over a limit: -EPROTO or -EMSGSIZE (the reader stays failed until the next start).
 * ERROR, CLIENT_ERROR and SERVER_ERROR are replies (1), not failures of the reader. */
int memcache_reader_feed(struct memcache_reader *r, const char *in, size_t len, size_t *used);

#endif
