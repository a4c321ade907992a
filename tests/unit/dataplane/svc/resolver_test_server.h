/* rts: a scripted DNS server for the resolver's tests and benchmark, on 127.0.0.1 (UDP and
 * TCP on the same port), in its own thread. Each rule says how one (name, type) is
 * answered: records, NXDOMAIN, NODATA, SERVFAIL, REFUSED, nothing at all, late, truncated
 * (the full answer over TCP), malformed, or after spoofed answers (a wrong ID, the name in
 * the wrong case, another name). Queries are counted per rule and per transport, and the
 * question name is kept as it came (to check DNS 0x20). A question no rule names gets
 * REFUSED.
 *
 * Answers are built here with no help from the codec under test: header, the question
 * copied byte for byte, answer records owned by a pointer to the question name, and for
 * negative answers an SOA in the authority section (RFC 2308 3). */
#ifndef MXGATE_TESTS_RESOLVER_TEST_SERVER_H
#define MXGATE_TESTS_RESOLVER_TEST_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RTS_RULES_MAX 64
#define RTS_VALUES_MAX 8
#define RTS_VALUE_MAX 1200
#define RTS_PENDING_MAX 256

enum rts_action {
	RTS_ANSWER,    /* the rule's records (none: NODATA with an SOA) */
	RTS_NXDOMAIN,  /* RCODE 3 with an SOA */
	RTS_SERVFAIL,
	RTS_REFUSED,
	RTS_DROP,      /* no answer */
	RTS_TRUNCATE,  /* UDP: TC and no records; TCP: the answer (tcp_action) */
	RTS_MALFORMED, /* ANCOUNT 1 and a record cut short */
	RTS_ACTION_MAX
};

struct rts_rule {
	char name[256];            /* matched without regard to case; "*.zone": any name
				      under zone */
	uint16_t qtype;            /* 0: any */
	enum rts_action action;
	enum rts_action tcp_action; /* over TCP (RTS_ANSWER unless set) */
	uint32_t ttl;              /* records; for negative answers the SOA's TTL and MINIMUM */
	bool no_soa;               /* negative answers without an SOA */
	unsigned delay_ms;         /* answer this late (UDP) */
	bool spoof_first;          /* first a wrong ID, the wrong case, another name */
	unsigned drop_first;       /* the first N UDP queries get no answer */
	unsigned generate_a;       /* A records 10.0.x.y, this many (big answers) */
	/* record data by type: A/AAAA "192.0.2.1"; MX "10 mx.example"; PTR/NS/CNAME a name;
	 * TXT text (one character-string per 255 octets) */
	unsigned nvalues;
	char values[RTS_VALUES_MAX][RTS_VALUE_MAX];
	/* counters (the server thread writes, tests read) */
	atomic_uint udp_queries;
	atomic_uint tcp_queries;
	char last_qname[256];      /* as received, case kept (under the server's lock) */
};

struct rts_pending {
	uint64_t due_ms;
	uint8_t pkt[1500];
	size_t len;
	struct sockaddr_storage peer;
	socklen_t peer_len;
};

struct rts_server {
	int udp_fd, tcp_fd;
	uint16_t port;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock;      /* rules and pending */
	struct rts_rule rules[RTS_RULES_MAX];
	unsigned nrules;
	struct rts_pending *pending; /* [RTS_PENDING_MAX] */
	unsigned npending;
	atomic_uint udp_total, tcp_total;
	uint16_t ports[256];       /* distinct UDP source ports seen (under the lock) */
	unsigned nports;
};

/* Start on 127.0.0.1 at a free port (s->port). 0 or -errno. */
int rts_start(struct rts_server *s);
void rts_stop(struct rts_server *s);
/* Add a rule (before or while running); returns it for the caller to fill the rest. */
struct rts_rule *rts_add(struct rts_server *s, const char *name, uint16_t qtype,
			 enum rts_action action, uint32_t ttl, const char *value);
/* Another value of a rule. */
void rts_value(struct rts_server *s, struct rts_rule *r, const char *value);
/* The question name as the rule last received it. */
void rts_last_qname(struct rts_server *s, const struct rts_rule *r, char *out, size_t cap);
/* Distinct UDP source ports the server saw (at most 256 counted). */
unsigned rts_source_ports(struct rts_server *s);
/* Queries a rule got, UDP and TCP. */
unsigned rts_queries(const struct rts_rule *r);

#endif
