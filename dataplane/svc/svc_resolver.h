/* The resolver service (svc_resolver_ops, kind SVC_DNS): the gateway's own DNS lookups (A,
 * AAAA, PTR, MX, TXT, NS, ...) for the restrictions and the client's name, asked of the
 * recursive resolvers in mxgate_dns_servers or /etc/resolv.conf, on one thread that never
 * blocks a worker.
 *
 *   worker: svc_request (u.dns.type, u.dns.name, deadline_ms) -> svc_submit()
 *   resolver thread, one epoll loop:
 *     cache hit (type, normalised name)    -> answered at once: a new reference to the
 *                                             cached dns_result
 *     the same question already on the wire -> waits on it (in-flight merge): every waiter
 *                                             gets a reference to the same result
 *     otherwise a query: UDP to a server (random ID, DNS 0x20 case, a pooled socket of
 *     random source port), its try's timeout, the next server on a timeout, SERVFAIL,
 *     REFUSED or a malformed answer, TCP to the same server on truncation (TC), `attempts`
 *     rounds over the servers; TEMPFAIL when none answered.
 *   answer: u.dns.result (never NULL) and status, back through the worker's ring.
 *
 * The expected setup is a local recursive resolver (unbound, on 127.0.0.1): it validates,
 * caches, and asks the DNSBLs itself. Public resolvers break DNSBLs: the lists refuse or
 * answer "blocked" (Spamhaus's 127.255.255.254) to queries arriving from large shared
 * resolvers, which mxgate must treat as errors, so every client would look unlisted.
 *
 * A request's status on return:
 *   0            the servers' answer (result OK, NODATA, NXDOMAIN, or TEMPFAIL when every
 *                server failed: result->why says how, e.g. "SERVFAIL from 127.0.0.1")
 *   -ETIMEDOUT   the request's deadline_ms came first (TEMPFAIL "timeout"); the query goes
 *                on and its answer fills the cache
 *   -EAGAIN      too many distinct questions on the wire (max_in_flight): TEMPFAIL
 *   -EINVAL      not a valid name or type (dns_name_normalize()): TEMPFAIL
 *   -ENOMEM      out of memory: TEMPFAIL
 *   -ECANCELED   the service stopped first: TEMPFAIL
 * In every case u.dns.result holds a reference the request owns (svc_request_free() drops
 * it). A deadline_ms of 0 means "no deadline of its own": the query's tries bound it. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_RESOLVER_H
#define MXGATE_DATAPLANE_SVC_SVC_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"
#include "tables/dns_conf.h"


/* One server: a numeric address and a port (53 unless given). */

/* What the service is started with (svc_set_params.params[SVC_DNS]). Fill it with
 * svc_resolver_params_default(), then set what the configuration says. */
struct svc_resolver_params {
	/* mxgate_dns_servers (dns_servers_parse()); nservers 0: the nameserver
	 * lines of resolv_conf, with its options timeout:N, attempts:N and rotate */
	struct dns_server servers[DNS_CONF_SERVERS_MAX];
	unsigned nservers;
	const char *resolv_conf;      /* NULL: /etc/resolv.conf (read once, at start) */
	uint32_t timeout_ms;          /* one try; 0: resolv.conf's timeout:N when the
					 servers come from it, else 5 s (resolv.conf(5)) */
	unsigned attempts;            /* rounds over the servers; 0: resolv.conf's
					 attempts:N, else 2 */
	bool rotate;                  /* start each query at the next server (also when
					 resolv.conf says `options rotate`) */
	uint16_t edns_udp_size;       /* EDNS0 payload size advertised (RFC 6891); 0: no
					 OPT record (answers over 512 octets then come by
					 TCP). Default 1232 (DNS flag day 2020). */
	uint32_t cache_max_entries;   /* 0: no cache */
	uint64_t cache_max_bytes;     /* results and keys, estimated */
	uint32_t negative_ttl_floor;  /* seconds: NXDOMAIN/NODATA are kept at least this long
					 (also the TTL of one with no SOA) */
	uint32_t max_ttl;             /* seconds: no answer is kept longer */
	uint32_t max_in_flight;       /* distinct questions on the wire; more: -EAGAIN */
	uint32_t max_tcp;             /* TCP connections at once; more wait for one */
	uint32_t udp_sockets_per_server; /* the pool of UDP sockets (source ports) */
	uint32_t udp_socket_uses;     /* queries one UDP socket sends before it is replaced by
					 one with a fresh random port */
	/* Optional: where start stores the running service's handle, for
	 * svc_resolver_statistics() (metrics, tests); valid until the service stops. The
	 * framework keeps its impl to itself, so this is how a caller reaches it. */
	const void **handle;
};

/* The defaults: servers from /etc/resolv.conf, its timeout and attempts, EDNS 1232, a
 * cache of 65,536 entries and 32 MiB, negative floor 0 (RFC 2308's own TTLs), max TTL
 * 3600 s, 16,384 questions in flight, 64 TCP connections, 8 sockets a server, 128 uses. */
void svc_resolver_params_default(struct svc_resolver_params *p);





/* The settings a service runs with: params with resolv.conf filled in. */
struct svc_resolver_config {
	struct svc_resolver_params p;  /* servers, timeout_ms, attempts, rotate resolved */
	bool from_resolv_conf;         /* the servers came from resolv.conf */
};

/* Resolve params into the settings the service uses (reads resolv.conf when needed; for
 * `mxgate --check` too). Returns 0, or -EINVAL (a bound out of range) or a read error,
 * with err. */
int svc_resolver_config_resolve(const struct svc_resolver_params *in,
				struct svc_resolver_config *out, char *err, size_t errlen);

/* Counters, as log_statistics prints them, in this order:
 *   requests    taken from the workers
 *   hits        answered from the cache
 *   misses      not in the cache (merged or sent)
 *   merges      waited on the same question already on the wire
 *   queries     messages sent (UDP and TCP, retries included)
 *   answers     responses accepted (ours, and they parsed)
 *   timeouts    tries that got no answer in time
 *   tcp         TCP fallbacks (truncated UDP answers)
 *   servfails   SERVFAIL, REFUSED and other error RCODEs
 *   malformed   answers to our query that did not parse, or a broken TCP stream
 *   mismatched  datagrams that answer no query of ours (spoofing attempts, a wrong 0x20
 *               case, answers that came after their query ended)
 *   tempfails   requests answered TEMPFAIL, any reason
 *   expired     requests whose own deadline came first
 *   busy        requests refused: max_in_flight questions already on the wire
 *   evictions   cache entries dropped for room (LRU)
 * and the gauges entries (cache), bytes (cache), in_flight (questions on the wire),
 * tcp_open (connections). */
#define SVC_RESOLVER_STATS(X)                                                              \
	X(requests) X(hits) X(misses) X(merges) X(queries) X(answers) X(timeouts) X(tcp)    \
	X(servfails) X(malformed) X(mismatched) X(tempfails) X(expired) X(busy)             \
	X(evictions) X(entries) X(bytes) X(in_flight) X(tcp_open)

struct svc_resolver_stats {
#define SVC_RESOLVER_STAT_FIELD(name) uint64_t name;
	SVC_RESOLVER_STATS(SVC_RESOLVER_STAT_FIELD)
#undef SVC_RESOLVER_STAT_FIELD
};

/* A copy of a running service's counters (handle from params.handle; any thread;
 * torn-free per counter, not a snapshot across them). */
void svc_resolver_statistics(const void *handle, struct svc_resolver_stats *out);

/* The statistics line log_statistics writes (after "resolver statistics (WHEN): "),
 * "requests=N hits=N ..." in SVC_RESOLVER_STATS order. Returns the length of the whole line
 * (as snprintf(): a result >= cap means it was cut). */
int svc_resolver_stats_format(const struct svc_resolver_stats *s, char *buf, size_t cap);

#endif
