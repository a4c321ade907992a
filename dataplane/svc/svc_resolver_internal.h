/* The resolver service's insides, shared by its files; not an API.
 *
 *   svc_resolver.c        the thread: its epoll loop, requests in, answers out, stop
 *   svc_resolver_query.c  one question on the wire: tries, servers, responses, the end
 *   svc_resolver_net.c    UDP socket pools (source ports) and TCP connections
 *   svc_resolver_cache.c  hash maps, SipHash, the answer cache (TTL, LRU), the timer heap
 *   svc_resolver_conf.c   settings: defaults, mxgate_dns_servers, resolv.conf
 *
 * Everything here is touched by the service thread only, except the counters (atomics
 * another thread reads). */
#ifndef MXGATE_DATAPLANE_SVC_SVC_RESOLVER_INTERNAL_H
#define MXGATE_DATAPLANE_SVC_SVC_RESOLVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_resolver.h"
#include "tables/dns_message.h"
#include "tables/dns_result.h"

#define SVC_RESOLVER_LEGS 4             /* UDP tries of one query whose (late) answer is
					   still taken: the last four */
#define SVC_RESOLVER_RANDOM_BATCH 4096  /* bytes of getrandom(2) drawn at once */
#define SVC_RESOLVER_EVENTS 64          /* epoll events per wait */
#define SVC_RESOLVER_RECV_BATCH 64      /* datagrams read from one socket per event */
#define SVC_RESOLVER_WHY_MAX 96         /* dns_result.why */
#define SVC_RESOLVER_SERVER_TEXT 56     /* "[v6]:port" */
#define SVC_RESOLVER_UDP_RETIRED_MAX 16 /* open UDP sockets at most, in pools: past it a
					   socket is not replaced after its uses (answers
					   lost to a dead server keep retired ones open) */

#define svc_resolver_container_of(ptr, type, member)                                      \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* ---- intrusive chained hash map ---- */

struct svc_resolver_hnode {
	struct svc_resolver_hnode *next;
	uint64_t hash;
};

struct svc_resolver_hmap {
	struct svc_resolver_hnode **buckets;
	size_t mask;        /* buckets - 1 (a power of two) */
	size_t count;
	size_t max_buckets; /* growth stops here (the bound on entries / 1) */
};

int svc_resolver_hmap_init(struct svc_resolver_hmap *m, size_t buckets, size_t max_buckets);
void svc_resolver_hmap_free(struct svc_resolver_hmap *m);
/* Insert (doubling the buckets when count passes them; a failed growth only lengthens
 * chains). */
void svc_resolver_hmap_insert(struct svc_resolver_hmap *m, struct svc_resolver_hnode *n,
			      uint64_t hash);
void svc_resolver_hmap_remove(struct svc_resolver_hmap *m, struct svc_resolver_hnode *n);
/* The first node with this hash, then the next one after n (the caller compares keys). */
struct svc_resolver_hnode *svc_resolver_hmap_first(const struct svc_resolver_hmap *m,
						   uint64_t hash);
struct svc_resolver_hnode *svc_resolver_hmap_next(const struct svc_resolver_hnode *n,
						  uint64_t hash);

/* SipHash-2-4 (Aumasson and Bernstein, 2012) of data under a 16-byte secret key: names
 * come from the internet, so bucket choice must not be predictable (hash flooding). */
uint64_t svc_resolver_siphash(const uint8_t key[16], const void *data, size_t len);

/* ---- timers: a binary min-heap of deadlines ---- */

enum svc_resolver_timer_kind {
	SVC_RESOLVER_TIMER_TRY,    /* a query's try: no answer in time */
	SVC_RESOLVER_TIMER_WAITER, /* a request's deadline_ms */
};

struct svc_resolver_timer {
	uint64_t when;   /* monotonic ms */
	size_t pos;      /* index in the heap; SIZE_MAX: not armed */
	enum svc_resolver_timer_kind kind;
};

struct svc_resolver_heap {
	struct svc_resolver_timer **t;
	size_t n, cap;
};

void svc_resolver_timer_init(struct svc_resolver_timer *t, enum svc_resolver_timer_kind kind);
/* Arm (or re-arm) t at `when`. 0 or -ENOMEM (t is then not armed). */
int svc_resolver_heap_arm(struct svc_resolver_heap *h, struct svc_resolver_timer *t,
			  uint64_t when);
void svc_resolver_heap_disarm(struct svc_resolver_heap *h, struct svc_resolver_timer *t);
/* The earliest armed timer, or NULL. */
struct svc_resolver_timer *svc_resolver_heap_min(const struct svc_resolver_heap *h);
void svc_resolver_heap_free(struct svc_resolver_heap *h);

/* ---- the answer cache: (type, normalised name) -> dns_result, by TTL, LRU-bounded ---- */

struct svc_resolver_entry {
	struct svc_resolver_hnode node;
	struct svc_resolver_entry *lru_prev, *lru_next; /* most recent first */
	uint64_t expires_ms;
	struct dns_result *result; /* the cache's reference */
	size_t bytes;
	enum dns_type type;
	uint8_t name_len;
	char name[];               /* normalised, NUL-terminated */
};

struct svc_resolver_cache {
	struct svc_resolver_hmap map;
	struct svc_resolver_entry *lru_head, *lru_tail;
	size_t entries;
	uint64_t bytes;
	size_t max_entries;
	uint64_t max_bytes;
	uint64_t evictions;
};

int svc_resolver_cache_init(struct svc_resolver_cache *c, size_t max_entries,
			    uint64_t max_bytes);
void svc_resolver_cache_free(struct svc_resolver_cache *c);
/* The live entry's result (borrowed: dns_result_get() to keep it), or NULL; an expired
 * entry is dropped. A hit becomes the most recent. */
struct dns_result *svc_resolver_cache_get(struct svc_resolver_cache *c, enum dns_type type,
					  const char *name, size_t len, uint64_t hash,
					  uint64_t now_ms);
/* Keep result (a new reference is taken) for ttl_s seconds; replaces an entry of the same
 * key, then evicts the least recent entries past the bounds. An entry alone over the
 * byte bound, ttl 0, or no memory: nothing is kept. */
void svc_resolver_cache_put(struct svc_resolver_cache *c, enum dns_type type,
			    const char *name, size_t len, uint64_t hash,
			    struct dns_result *result, uint32_t ttl_s, uint64_t now_ms);

/* ---- the service ---- */

/* What an epoll event's data.ptr points at: the first member of each source. */
enum svc_resolver_ev {
	SVC_RESOLVER_EV_WAKE,  /* the port's wake eventfd: requests */
	SVC_RESOLVER_EV_STOP,  /* the stop eventfd */
	SVC_RESOLVER_EV_UDP,
	SVC_RESOLVER_EV_TCP,
};

struct svc_resolver_query;

/* A UDP socket connected to one server: its own random source port. */
struct svc_resolver_udp {
	enum svc_resolver_ev ev;            /* SVC_RESOLVER_EV_UDP */
	int fd;                             /* -1: closed, waiting to be freed */
	unsigned server;
	unsigned uses;                      /* queries sent */
	unsigned nlegs;                     /* legs registered on it */
	bool retired;                       /* out of the pool: closed when nlegs is 0 */
	struct svc_resolver_leg *legs;      /* registered legs (list) */
	struct svc_resolver_udp *all_prev, *all_next; /* every socket, for the stop */
	struct svc_resolver_udp *dead_next; /* the graveyard */
};

/* One UDP try of a query, registered by (socket, query ID) to match answers. */
struct svc_resolver_leg {
	struct svc_resolver_hnode node;     /* in the wire map */
	struct svc_resolver_udp *sock;      /* NULL: unused */
	struct svc_resolver_query *q;
	struct svc_resolver_leg *sock_prev, *sock_next;
};

/* A TCP connection for one truncated answer (RFC 1035 4.2.2, RFC 7766). */
struct svc_resolver_tcp {
	enum svc_resolver_ev ev;            /* SVC_RESOLVER_EV_TCP */
	int fd;                             /* -1: closed, waiting to be freed */
	unsigned server;
	struct svc_resolver_query *q;
	bool connected;
	size_t out_len, out_sent;
	uint8_t out[2 + DNS_HEADER_LEN + DNS_NAME_WIRE_MAX + 4 + 11];
	struct svc_resolver_tcp *dead_next;
	struct dns_tcp_reader reader;       /* about 64 KiB */
};

/* A request waiting for a query. */
struct svc_resolver_waiter {
	struct svc_resolver_timer timer;    /* its deadline (kind WAITER) */
	struct svc_request *req;
	struct svc_resolver_query *q;
	struct svc_resolver_waiter *prev, *next;
};

enum svc_resolver_qstate {
	SVC_RESOLVER_Q_NEW,      /* made, nothing sent yet */
	SVC_RESOLVER_Q_UDP,      /* a datagram is out: waiting for its answer or timeout */
	SVC_RESOLVER_Q_TCP_WAIT, /* truncated: waiting for a free TCP connection slot */
	SVC_RESOLVER_Q_TCP,      /* asking over TCP */
	SVC_RESOLVER_Q_STATE_MAX
};

const char *svc_resolver_qstate_name(enum svc_resolver_qstate s);

/* One distinct question on the wire, and who waits for it. */
struct svc_resolver_query {
	struct svc_resolver_hnode node;     /* in the in-flight map, by (type, name) */
	struct svc_resolver_timer timer;    /* the try's deadline (kind TRY) */
	enum svc_resolver_qstate state;
	struct dns_query dq;                /* ID and 0x20 case, the same for every try */
	struct svc_resolver_waiter *waiters;
	unsigned nwaiters;
	unsigned pos;                       /* the next try: round * nservers + i */
	unsigned start;                     /* the first server (rotate) */
	unsigned server;                    /* the current try's server */
	uint32_t failed;                    /* servers that failed for good (bit per server) */
	bool timed_out;                     /* a try got no answer */
	struct svc_resolver_leg legs[SVC_RESOLVER_LEGS];
	unsigned next_leg;
	struct svc_resolver_tcp *tcp;
	struct svc_resolver_query *tcp_wait_next;
	char why[SVC_RESOLVER_WHY_MAX];     /* the last failure other than a timeout */
};

struct svc_resolver_counters {
#define SVC_RESOLVER_COUNTER_FIELD(name) _Atomic uint64_t name;
	SVC_RESOLVER_STATS(SVC_RESOLVER_COUNTER_FIELD)
#undef SVC_RESOLVER_COUNTER_FIELD
};

/* One writer (the service thread): a plain load and store, no locked instruction. */
#define svc_resolver_count(s, field, n)                                                    \
	atomic_store_explicit(&(s)->ctr.field,                                             \
			      atomic_load_explicit(&(s)->ctr.field, memory_order_relaxed) + (n), \
			      memory_order_relaxed)
#define svc_resolver_gauge(s, field, v)                                                    \
	atomic_store_explicit(&(s)->ctr.field, (uint64_t)(v), memory_order_relaxed)

struct svc_resolver {
	struct svc_port *port;
	struct svc_resolver_config cfg;
	char server_text[DNS_CONF_SERVERS_MAX][SVC_RESOLVER_SERVER_TEXT];
	pthread_t thread;
	int epfd;
	int stop_fd;
	enum svc_resolver_ev wake_ev, stop_ev; /* what their epoll data points at */
	uint64_t now;                          /* monotonic ms, read once per loop turn */
	struct svc_resolver_cache cache;
	struct svc_resolver_hmap inflight;     /* queries by (type, name) */
	struct svc_resolver_hmap wire;         /* legs by (socket, ID) */
	struct svc_resolver_heap timers;
	struct svc_resolver_udp **pool;        /* [nservers * udp_sockets_per_server] */
	unsigned *pool_next;                   /* [nservers]: round robin in the pool */
	struct svc_resolver_udp *udp_all;
	unsigned udp_count;                    /* open UDP sockets, retired ones included */
	struct svc_resolver_udp *udp_dead;
	struct svc_resolver_tcp *tcp_dead;
	unsigned tcp_open;
	struct svc_resolver_query *tcp_wait_head, *tcp_wait_tail;
	unsigned next_start;                   /* rotate */
	uint8_t hash_key[16];
	uint8_t random[SVC_RESOLVER_RANDOM_BATCH];
	size_t random_used;
	struct dns_answer *answer;             /* parse scratch */
	uint8_t *rxbuf;                        /* DNS_MESSAGE_MAX + 1 */
	struct dns_result *oom[DNS_TYPE_MAX];  /* TEMPFAILs made at start, for no memory */
	struct svc_resolver_counters ctr;
};

/* svc_resolver.c */
/* Hand a request back with status and result (a reference it now owns; NULL: the
 * preallocated out-of-memory TEMPFAIL). */
void svc_resolver_answer(struct svc_resolver *s, struct svc_request *r, int status,
			 struct dns_result *result);
/* n random bytes from the batch. 0 or -EIO. */
int svc_resolver_random(struct svc_resolver *s, void *out, size_t n);

/* svc_resolver_query.c */
/* A new query for the normalised name (len bytes) and its first try, or NULL (no memory:
 * nothing to undo). */
struct svc_resolver_query *svc_resolver_query_new(struct svc_resolver *s, enum dns_type type,
						  const char *name, size_t len, uint64_t hash);
struct svc_resolver_query *svc_resolver_query_find(struct svc_resolver *s, enum dns_type type,
						   const char *name, size_t len, uint64_t hash);
/* Add a waiter; 0 or -ENOMEM (the request is still the caller's). */
int svc_resolver_query_wait(struct svc_resolver *s, struct svc_resolver_query *q,
			    struct svc_request *r);
/* Send the first try (after waiters were added: the query may end at once). */
void svc_resolver_query_start(struct svc_resolver *s, struct svc_resolver_query *q);
/* A UDP datagram on leg's socket that matched leg's ID. */
void svc_resolver_query_udp_answer(struct svc_resolver *s, struct svc_resolver_leg *leg,
				   const uint8_t *pkt, size_t len);
/* A complete TCP message for q. true when the connection is done with (closed). */
bool svc_resolver_query_tcp_answer(struct svc_resolver *s, struct svc_resolver_query *q,
				   const uint8_t *pkt, size_t len);
/* The try on this server failed for good (why says how): on to the next try when it is
 * the current one. */
void svc_resolver_query_server_failed(struct svc_resolver *s, struct svc_resolver_query *q,
				      unsigned server, const char *why);
/* A timer fired. */
void svc_resolver_timer_fire(struct svc_resolver *s, struct svc_resolver_timer *t);
/* A free TCP slot: the longest-waiting truncated query gets it. */
void svc_resolver_query_tcp_slot(struct svc_resolver *s);
/* Stop: every waiter answered -ECANCELED, every query freed. */
void svc_resolver_query_cancel_all(struct svc_resolver *s);

/* svc_resolver_net.c */
/* A pool socket to `server` on which q's ID is free or q's own (an earlier try of q on
 * it); NULL when none can be had. */
struct svc_resolver_udp *svc_resolver_udp_pick(struct svc_resolver *s, unsigned server,
					       const struct svc_resolver_query *q);
/* Register leg on sock under the leg's query ID; count a use (retiring the socket after
 * udp_socket_uses). */
void svc_resolver_leg_register(struct svc_resolver *s, struct svc_resolver_leg *leg,
			       struct svc_resolver_udp *sock);
void svc_resolver_leg_unregister(struct svc_resolver *s, struct svc_resolver_leg *leg);
/* The socket is readable (or has an error). */
void svc_resolver_udp_readable(struct svc_resolver *s, struct svc_resolver_udp *sock);
/* Open a TCP connection to q's current server and send q; 0 or a negative errno with
 * why. */
int svc_resolver_tcp_open(struct svc_resolver *s, struct svc_resolver_query *q,
			  unsigned server, char *why, size_t whylen);
void svc_resolver_tcp_event(struct svc_resolver *s, struct svc_resolver_tcp *t,
			    uint32_t events);
/* Close q's connection (if any) and free its slot for a waiting query. */
void svc_resolver_tcp_close(struct svc_resolver *s, struct svc_resolver_tcp *t);
/* Close every socket; free the dead ones (end of a loop turn, or the stop). */
void svc_resolver_net_close_all(struct svc_resolver *s);
void svc_resolver_net_reap(struct svc_resolver *s);

#endif
