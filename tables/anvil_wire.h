/* anvil's shared rate counters in memcached, sans-I/O (tables/anvil.h, anvil_share_*):
 * the key of one counter, the commands that add to it and read its total back, and a
 * reader for their replies.
 *
 * One counter per (service, client range, rate kind, aligned window):
 *   anvil:<service>:<range>:<kind>:<unit>:<window>
 *   e.g. anvil:smtp:192.0.2.0/24:connect:60:29446121
 * where <service> is the master.cf service name without a host part ("192.0.2.10:smtp"
 * counts as "smtp", so nodes that each bind their own address count together), <range>
 * is anvil_key_range(), <kind> anvil_rate_name(), <unit> anvil_rate_time_unit in seconds
 * and <window> wall seconds / unit. memcache_table(5)'s key_format is applied after
 * (memcache_conf_key()), so "key_format = mx:%s" gives every site a namespace.
 *
 * Adding n (n may be 0: only a read) is two commands, sent together (memcached's
 * protocol.txt, "Storage commands" and "Increment/Decrement"):
 *   add <key> 0 <exptime> 1\r\n0\r\n     the counter exists from now on (STORED), or it
 *                                         did already (NOT_STORED): either is fine
 *   incr <key> <n>\r\n                    the new total, as a decimal number
 * so the first node to count a window creates its key and every node's incr is atomic in
 * memcached. The key expires a little after its window (anvil_wire_exptime()). */
#ifndef MXGATE_TABLES_ANVIL_WIRE_H
#define MXGATE_TABLES_ANVIL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "tables/anvil.h"
#include "tables/memcache_proto.h"

/* The largest key anvil_wire_key() makes (before key_format): under memcached's 250. */
#define ANVIL_WIRE_KEY_MAX 200
/* The most one add + incr pair takes encoded. */
#define ANVIL_WIRE_PAIR_MAX (2 * MEMCACHE_KEY_MAX + 96)

/* The service part of a key: name without a "host:" part (the text after its last ':',
 * when it has one and that text is not empty), at most len - 1 bytes, into buf. Returns
 * buf. */
const char *anvil_wire_service(const char *name, char *buf, size_t len);

/* The key of d for service (anvil_wire_service() applied here) into out. Returns its
 * length (NUL-terminated), or -ENOBUFS when it would be longer than cap - 1 or
 * ANVIL_WIRE_KEY_MAX, or -EINVAL when service is empty. */
long anvil_wire_key(char *out, size_t cap, const char *service, const struct anvil_delta *d);

/* The exptime of d's counter: until two units past its window's start plus a minute,
 * relative seconds when that is under memcached's 30 days from now, else the absolute
 * Unix time (protocol.txt). now_wall_s: the wall clock. */
uint32_t anvil_wire_exptime(const struct anvil_delta *d, uint64_t now_wall_s);

/* The add + incr pair for key (keylen bytes, a valid memcached key) adding n, into buf:
 * bytes written, -EINVAL for a bad key, -ENOBUFS when cap is too small. */
long anvil_wire_encode(char *buf, size_t cap, const char *key, size_t keylen, uint32_t n,
		       uint32_t exptime);

/* The replies of one pair. */
enum anvil_wire_state {
	ANVIL_WIRE_ADD,       /* the add's reply */
	ANVIL_WIRE_INCR,      /* the incr's reply */
	ANVIL_WIRE_DONE,      /* both read: result and total hold them */
	ANVIL_WIRE_FAILED,    /* malformed: the connection is out of step */
	ANVIL_WIRE_STATE_MAX
};

const char *anvil_wire_state_name(enum anvil_wire_state s);

struct anvil_wire_reader {
	enum anvil_wire_state state;
	struct memcache_reader mr;
	int result;           /* DONE: 0 (total holds the counter), -EIO (memcached said
				 ERROR, CLIENT_ERROR or SERVER_ERROR to either command:
				 error_kind and error say which), -ENOENT (incr found no
				 counter: it expired or was evicted between the two) */
	uint64_t total;
	enum memcache_reply_kind error_kind;
	char error[64];       /* the server's message, truncated */
};

/* line_max as memcache_reader_init(). 0, -EINVAL or -ENOMEM. */
int anvil_wire_reader_init(struct anvil_wire_reader *r, size_t line_max);
void anvil_wire_reader_free(struct anvil_wire_reader *r);
/* Expect the replies of the next pair. */
void anvil_wire_reader_start(struct anvil_wire_reader *r);
/* Take up to len bytes; *used says how many (never past the pair's last reply). Returns
 * 1 when both replies are in (state DONE), 0 for more, or -EPROTO / -EMSGSIZE for a
 * reply no add or incr has, or over the line limit (state FAILED until the next start). */
int anvil_wire_reader_feed(struct anvil_wire_reader *r, const char *in, size_t len,
			   size_t *used);

#endif
