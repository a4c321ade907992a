/* Per-client connection counts and event rates, kept as Postfix's anvil(8) server keeps them
 * (postfix/src/anvil/anvil.c), in one table that every worker shares.
 *
 * What is counted, per (service, client range) — the range is the client's address with
 * the bits past smtpd_client_ipv4_prefix_length / smtpd_client_ipv6_prefix_length cleared
 * (Postfix 3.8's aggregation, smtpd_peer.c: inet_prefix_top()):
 *   count            connections open now (a connect adds one, a disconnect takes it away)
 *   rate[CONNECT]    connection attempts in the current window, refused ones included
 *   rate[MESSAGE]    MAIL commands in the window          (only where a limit asks)
 *   rate[RECIPIENT]  RCPT and VRFY commands in the window (only where a limit asks)
 *   rate[AUTH]       AUTH commands in the window          (only where a limit asks)
 *   rate[NEWTLS]     TLS sessions that were not resumed   (only where a limit asks)
 * The rates share one fixed window per client, as anvil's ANVIL_REMOTE_INCR_RATE(): it
 * starts with the client's first connection; an event that comes when start + unit < now
 * (whole seconds, strictly later) first sets every rate to zero and starts a new window
 * now, then counts. An entry whose count fell to zero is forgotten unit seconds later
 * (anvil's anvil_remote_expire timer): a client seen again after that starts afresh.
 *
 * Sharing without a lock on the packet path: the table is touched only when a connection
 * is greeted or ends and at MAIL, RCPT and VRFY, never per packet or per byte. It is cut
 * into shards by a seeded hash of the key; each shard has its own spin lock (taken for a
 * scan of at most ANVIL_PROBE slots and a few stores, no allocation or system call inside)
 * and its own cache lines, so workers only meet when two of them touch clients of the same
 * shard at the same instant. Spinning gives way to sched_yield() after a while, so a
 * preempted holder (more threads than cores) costs a time slice, not a livelock.
 *
 * Bounded: the capacity is fixed at creation (rounded up to a power of two). A key lives
 * in one of ANVIL_PROBE slots after its hash's home slot. A new key takes a free slot of
 * that window, else an expired one, else the idle one (no connection open) that expires
 * first — its rates are forgotten early (counted as evicted) — and when every slot of the
 * window has open connections the client is not tracked (-ENOSPC): it is not limited
 * rather than refused, and the caller counts it. An entry with open connections is never
 * moved or evicted, so a connection finds its entry again at disconnect.
 *
 * Sans-I/O apart from the lock: time is passed in (seconds of a monotonic clock), nothing
 * is logged. */
#ifndef MXGATE_TABLES_ANVIL_H
#define MXGATE_TABLES_ANVIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"

/* Slots a key may occupy after its home slot (and the most one operation scans). */
#define ANVIL_PROBE 16
/* Distinct service names one table tells apart (a service keeps its id for the table's
 * life, across reloads, so counts stay right when a generation replaces another). */
#define ANVIL_SERVICES_MAX 256
#define ANVIL_SERVICE_NAME_MAX 80
/* The smallest and largest table (entries). */
#define ANVIL_CAPACITY_MIN ANVIL_PROBE
#define ANVIL_CAPACITY_MAX (1u << 26)

enum anvil_rate {
	ANVIL_RATE_CONNECT,   /* connection attempts: smtpd_client_connection_rate_limit */
	ANVIL_RATE_MESSAGE,   /* MAIL: smtpd_client_message_rate_limit */
	ANVIL_RATE_RECIPIENT, /* RCPT and VRFY: smtpd_client_recipient_rate_limit */
	ANVIL_RATE_AUTH,      /* AUTH: smtpd_client_auth_rate_limit */
	ANVIL_RATE_NEWTLS,    /* full TLS handshakes: smtpd_client_new_tls_session_rate_limit */
	ANVIL_RATE_MAX,
};

const char *anvil_rate_name(enum anvil_rate r);

/* What entries are found by: compared byte for byte (anvil_key_make() zeroes it). */
struct anvil_key {
	uint8_t addr[16]; /* the range's first address (IPv4 in the first 4 bytes) */
	uint8_t family;   /* AF_INET or AF_INET6 */
	uint8_t prefix;   /* 0..32 or 0..128 */
	uint16_t service; /* anvil_service() */
};

/* The key of client a (IPv4-mapped IPv6 addresses should be unmapped first, as Postfix
 * counts them as IPv4) for service id `service`, aggregated to v4_prefix (0..32) or
 * v6_prefix (0..128) bits; larger prefixes are taken as the full length. */
void anvil_key_make(struct anvil_key *k, const struct mx_inet_addr *a, unsigned v4_prefix,
		    unsigned v6_prefix, unsigned service);

/* The range as Postfix's inet_prefix_top() writes it: "192.0.2.0/24", "2001:db8::/84",
 * or the address alone at the full length. Returns buf (INET6_ADDRSTRLEN + 4 is enough). */
const char *anvil_key_range(const struct anvil_key *k, char *buf, size_t len);

struct anvil;

/* A table of `capacity` entries (ANVIL_CAPACITY_MIN..MAX, rounded up to a power of two);
 * `seed` keys the hash (give it random bits, so clients cannot aim at one window).
 * Returns 0 and *out, -EINVAL for a capacity out of range, or -ENOMEM. */
int anvil_new(size_t capacity, uint64_t seed, struct anvil **out);
void anvil_free(struct anvil *a);

/* The id of service `name` (at most ANVIL_SERVICE_NAME_MAX - 1 bytes are kept), the same
 * for the table's whole life: >= 0, or -ENOSPC when ANVIL_SERVICES_MAX names are taken.
 * Takes a mutex: call it when a service is set up, not per connection. */
int anvil_service(struct anvil *a, const char *name);

/* What an operation did beside counting (for the caller's statistics). */
struct anvil_effect {
	bool evicted; /* an idle client's entry was given to this one before it expired */
};

/* A connection of client k begins (anvil's "connect"): count and rate[CONNECT] go up by
 * one. Returns 0 with the new *count and *rate, or -ENOSPC when the client cannot be
 * tracked (its window is full of clients with open connections; nothing was counted).
 * Every 0 must be matched by one anvil_disconnect() with the same key. `fx` may be NULL. */
int anvil_connect(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		  unsigned unit_s, uint32_t *count, uint32_t *rate, struct anvil_effect *fx);

/* That connection ended: count goes down; at zero the entry is forgotten unit_s seconds
 * from now unless the client connects again. Returns 0, or -ENOENT for a key that has
 * no open connection (a caller bug; nothing changes). */
int anvil_disconnect(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		     unsigned unit_s);

/* One MESSAGE, RECIPIENT, AUTH or NEWTLS event of a client that has a connection open
 * (anvil's "mail", "rcpt", "auth", "newtls"): *rate is the rate after counting it.
 * Returns 0, or -ENOENT when the client has no entry (it was not tracked), -EINVAL for
 * ANVIL_RATE_CONNECT. */
int anvil_event(struct anvil *a, const struct anvil_key *k, enum anvil_rate r,
		uint64_t now_s, unsigned unit_s, uint32_t *rate);

/* What the table says about k now, without counting (anvil's "lookup", which does not
 * report a window that has passed): 0 and the fields, or -ENOENT. */
struct anvil_view {
	uint32_t count;
	uint32_t rate[ANVIL_RATE_MAX];
};
int anvil_lookup(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		 unsigned unit_s, struct anvil_view *out);

/* Entries in use (live or waiting to expire) and the capacity, for reports and tests. */
size_t anvil_entries(struct anvil *a);
size_t anvil_capacity(const struct anvil *a);

/* ---- sharing the rates with other nodes (anvil_share_*) ----
 *
 * Several gateways behind one MX name can count the rate limits together in memcached
 * (mxgate_anvil_rate_map). The table stays the workers' source of truth; a sync thread
 * (dataplane/svc/svc_anvil.c) moves what the workers counted to memcached and brings the
 * cluster's totals back. Per entry and rate kind the table keeps, for the current aligned
 * window (wall seconds / anvil_rate_time_unit, the same on every node):
 *   pending   events counted here and not yet handed to the sync thread
 *   inflight  events handed over, not yet confirmed by memcached
 *   cluster   the cluster's total the last sync read back (this node's confirmed events
 *             included)
 * and a worker's rate is max(Postfix's local rate, cluster + inflight + pending): never
 * below what this node alone saw (so a node that loses memcached keeps Postfix's limits on
 * its own traffic), and otherwise the cluster's total as of the last sync plus what
 * happened here since. The connection count is never shared.
 * Only the sync thread calls these (apart from anvil_share_enable() at start-up). */

/* Make the table count for sharing; before any worker uses it. wall_offset_s is the wall
 * clock minus the monotonic clock (seconds) that the windows are aligned on. 0 or
 * -ENOMEM. */
int anvil_share_enable(struct anvil *a, int64_t wall_offset_s);
bool anvil_shared(const struct anvil *a);
/* A new offset (a wall clock step): windows are aligned on it from now on. */
void anvil_share_set_offset(struct anvil *a, int64_t wall_offset_s);

/* One entry's rate kind for memcached: the events to add (0: only read the total back)
 * in the window that starts at window * unit (wall seconds). */
struct anvil_delta {
	struct anvil_key key;
	uint8_t rate;          /* enum anvil_rate */
	uint32_t unit;         /* anvil_rate_time_unit of the window, seconds */
	uint64_t window;       /* wall seconds / unit */
	uint32_t n;
};

/* Where anvil_share_collect() goes on: zero it to start a walk of the whole table. */
struct anvil_cursor {
	unsigned shard;
	size_t slot;
	bool done;             /* the walk reached the table's end */
};

/* Walk on from cur and hand over every live entry's kinds of the current window that
 * count here (touched in this window) or, for a client with a connection open here, are
 * in read_mask (1 << ANVIL_RATE_x: the kinds a limit asks for, so that other nodes'
 * events are seen): each one's pending events become inflight and a delta in out (at most
 * max, max >= ANVIL_RATE_MAX). Returns the deltas written; cur->done at the end. */
size_t anvil_share_collect(struct anvil *a, uint64_t now_s, unsigned read_mask,
			   struct anvil_cursor *cur, struct anvil_delta *out, size_t max);
/* memcached took d: the cluster's total for its window is total (d->n included). */
void anvil_share_applied(struct anvil *a, const struct anvil_delta *d, uint64_t total);
/* d could not be sent: its events are pending again (sent with the next sync, when its
 * window is still current). */
void anvil_share_failed(struct anvil *a, const struct anvil_delta *d);

/* The name of service id (anvil_service()) into buf: buf, or NULL for an unknown id. */
const char *anvil_service_name(struct anvil *a, unsigned id, char *buf, size_t len);

#endif
