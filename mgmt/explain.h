/* `mxgate explain`: evaluate the restriction lists of mxgate.cf for one imagined session
 * (client address and name, HELO, sender, recipients) without sending mail, and print
 * every restriction tried, what it matched, the DNS answers and policy server replies it
 * used, which one decided, and the reply a client would get -- how an administrator tests
 * a policy change before it meets real mail.
 *
 * The evaluator is the gateway's (smtp/smtp_restrictions.h), fed as the gateway's
 * connection feeds it (dataplane/session/conn_check.c): a question not answered yet makes
 * the check return PENDING, the answer goes into a memo of the check, and the check is
 * replayed until it decides. Only the asking differs: the gateway's workers never block
 * and hand questions to service threads; a command-line tool may wait, so the answers
 * come from a small blocking stub resolver (explain_dns.c) and policy client
 * (explain_policy.c) that ask as those services ask, with the same settings. The pieces
 * are declared here so that their tests can drive them directly:
 *   explain.c         the command line, the session, the memo and replay, the output
 *   explain_dns.c     the stub resolver, and the client's name looked up as at connect
 *   explain_policy.c  one check_policy_service query
 *   explain_print.c   how DNS answers, policy exchanges and the client's name read
 *   explain_screen.c  the screen's verdict for the client (postscreen services) */
#ifndef MXGATE_MGMT_EXPLAIN_H
#define MXGATE_MGMT_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mxgate/inet.h"
#include "smtp/smtp_restrictions.h"
#include "tables/dns_conf.h"
#include "tables/dns_message.h"
#include "tables/dns_result.h"

/* argv[0] is "explain". Exit status: 0 every stage accepted, 1 something was refused,
 * 2 usage or configuration error. Writes the explanation to stdout. */
int mx_explain_main(int argc, char **argv, const char *default_config);

/* ---- Waiting with a deadline (explain_policy.c; the resolver uses them too) ---- */

/* Milliseconds from now to deadline (monotonic ms), 0 when it has passed. */
int mx_explain_ms_left(uint64_t deadline);
/* Wait for events on fd until deadline: 0 ready, or -ETIMEDOUT / another negative errno. */
int mx_explain_wait(int fd, short events, uint64_t deadline);

/* ---- The stub resolver (explain_dns.c) ----
 *
 * Asks as the gateway's resolver service does (dataplane/svc/svc_resolver_query.c), one
 * question at a time: UDP on a connected socket per server (random source port, random
 * ID, DNS 0x20 case), `attempts` rounds over the servers in order (from the next server
 * each question with rotate), `timeout_ms` per try. A server that answered SERVFAIL,
 * REFUSED or another error RCODE, sent a malformed answer, refused the datagram (ICMP port
 * unreachable) or failed over TCP is not asked again for that question; one that timed out
 * is asked again in the next round, and its late answer is taken while a later try waits.
 * A truncated answer (TC) is asked again of the same server over TCP, within one try's
 * timeout. A datagram that is not an answer to the question (another ID, question or case
 * pattern) is dropped and the wait goes on. When no try is left the answer is TEMPFAIL
 * saying the last failure ("SERVFAIL from 127.0.0.1") or "timeout"; a question also ends,
 * TEMPFAIL "timeout", after question_timeout_ms, as the gateway's connection stops
 * waiting for one (CONN_DNS_TIMEOUT_MS).
 *
 * Every answer, TEMPFAIL included, is kept for the resolver's life (one explain run), so
 * the same question always gets the same answer: the evaluator asks the client's
 * blocklists again at every RCPT (smtpd_delay_reject), and the run must read as one
 * session. (The gateway's cache keeps answers for their TTL and never keeps a TEMPFAIL:
 * it would ask again at the next RCPT. Explain does not, to say one thing once and to not
 * wait for a dead server at every recipient.) */

#define MX_EXPLAIN_DNS_QUESTION_TIMEOUT_MS 60000 /* dataplane/session CONN_DNS_TIMEOUT_MS */
#define MX_EXPLAIN_DNS_EDNS_UDP_SIZE 1232        /* the gateway's (DNS flag day 2020) */
#define MX_EXPLAIN_DNS_CACHE_MAX 4096 /* distinct questions kept; past it, asked again */

struct mx_explain_dns_opts {
	struct dns_server servers[DNS_CONF_SERVERS_MAX];
	unsigned nservers;
	uint32_t timeout_ms;          /* one try */
	unsigned attempts;            /* rounds over the servers */
	bool rotate;                  /* each question starts at the next server */
	uint16_t edns_udp_size;       /* EDNS0 payload size advertised; 0: no OPT record */
	uint32_t question_timeout_ms; /* one question, every try together */
	char source[64];              /* where the servers came from, for the output */
};

/* Fill *o as the gateway's resolver is set up (dataplane/main.c services_start(),
 * svc_resolver_config_resolve()): the servers of mxgate_dns_servers (`servers`, syntax of
 * dns_servers_parse()) with 5 s a try and 2 rounds; when it names none, the nameserver
 * lines of resolv_conf (NULL: /etc/resolv.conf; no usable line: 127.0.0.1) with its
 * options timeout:N, attempts:N and rotate (dns_resolv_conf_read()). EDNS 1232, 60 s a
 * question. Returns 0, or a negative errno with the reason in err. */
int mx_explain_dns_opts_init(struct mx_explain_dns_opts *o, const char *servers,
			     const char *resolv_conf, char *err, size_t errlen);

struct mx_explain_dns;

/* Returns 0 and *out, -EINVAL for options out of range (no server, more than
 * DNS_CONF_SERVERS_MAX, a port 0, a timeout over DNS_CONF_TIMEOUT_MAX_MS, attempts over
 * DNS_CONF_ATTEMPTS_MAX, 0 for either, an EDNS size under 512), or -ENOMEM. */
int mx_explain_dns_new(const struct mx_explain_dns_opts *o, struct mx_explain_dns **out);
void mx_explain_dns_free(struct mx_explain_dns *d);

/* The answer to (type, name): the one kept from earlier in the run (*cached true), or
 * asked now, blocking for at most question_timeout_ms. name is a presentation name
 * (dns_name_normalize()'s syntax; an invalid one is a TEMPFAIL saying so, not asked).
 * Returns a reference the caller owns (dns_result_put()), NULL only when out of memory. */
struct dns_result *mx_explain_dns_lookup(struct mx_explain_dns *d, enum dns_type type,
					 const char *name, bool *cached);

/* Counters, for tests: datagrams sent, TCP connections made, datagrams and messages
 * dropped as not answering the question (ID, question or case mismatch), questions
 * answered from the run's cache. */
struct mx_explain_dns_stats {
	unsigned udp_sent, tcp_connects, mismatched, cache_hits;
};
void mx_explain_dns_stats(const struct mx_explain_dns *d, struct mx_explain_dns_stats *out);

/* ---- The client's name (explain_dns.c) ----
 *
 * Looked up as the gateway's connection looks it up before its greeting
 * (dataplane/session/conn_wait.c, Postfix's smtpd_peer.c): the PTR record of the address;
 * its first name, when it is a usable host name (valid, not numeric), is the reverse name,
 * and it is the client's name when its addresses of the client's family (A or AAAA)
 * include the client's address. Statuses: PTR TEMPFAIL is TEMP for both; no usable PTR
 * name is PERM for both; an address lookup that fails temporarily is TEMP, one that finds
 * nothing or other addresses is FORGED (the name stays "unknown"). */

#define MX_EXPLAIN_PEER_LOOKUPS 2 /* the PTR, and the confirmation */

struct mx_explain_peer {
	char name[DNS_HOSTNAME_MAX + 1];         /* the verified name, or "unknown" */
	char reverse_name[DNS_HOSTNAME_MAX + 1]; /* the PTR name, or "unknown" */
	enum smtp_policy_name_status name_status, reverse_name_status;
	char warning[DNS_HOSTNAME_MAX + 160];    /* what the gateway logs as a warning
						    ("hostname X does not resolve to address
						    Y: ..."), or "" */
	unsigned nlookups;
	struct mx_explain_peer_lookup {
		enum dns_type type;
		char name[DNS_HOSTNAME_MAX + 1];
		struct dns_result *result; /* a reference */
		bool cached;
	} lookups[MX_EXPLAIN_PEER_LOOKUPS];
};

/* Look up addr's name through d into *out (the caller calls mx_explain_peer_clear()).
 * Returns 0, or -ENOMEM. */
int mx_explain_peer_lookup(struct mx_explain_dns *d, const struct mx_inet_addr *addr,
			   struct mx_explain_peer *out);
void mx_explain_peer_clear(struct mx_explain_peer *p);

/* ---- The policy client (explain_policy.c) ----
 *
 * One check_policy_service query, blocking, as the gateway's policy service makes it
 * (dataplane/svc/svc_policy.c, Postfix's attr_clnt_request()): a connection to the
 * service's endpoint ("inet:host:port" with a numeric or resolvable host, [host]:port for
 * IPv6, ":port" or "port" for localhost, "unix:/absolute/path"; a relative unix: path,
 * which Postfix takes from its queue directory, is refused saying so), the request, the
 * reply read with smtp_delegation_reader (bounded) within svc->timeout seconds a try; a
 * failed try (no connection, a host that does not resolve, a timeout, EOF, a malformed
 * reply or one without action) is tried again on a fresh connection after
 * svc->retry_delay seconds, up to svc->try_limit tries. A connection serves one query and
 * is closed (the gateway keeps them; a policy server must accept both). */

#define MX_EXPLAIN_POLICY_WHY_MAX 256

struct mx_explain_policy_reply {
	int error;      /* 0: action holds the reply's action; else a negative errno */
	unsigned tries; /* tries made (0: none: a bad endpoint, or not asked) */
	char why[MX_EXPLAIN_POLICY_WHY_MAX]; /* error: what failed last, e.g.
					    "connect to 127.0.0.1:9: Connection refused" */
	char action[SMTP_DELEGATION_ACTION_MAX + 1];
};

/* Ask svc with request (len bytes, the encoded attributes and the empty line). smtputf8:
 * an action that is not valid UTF-8 is a failure (smtputf8_enable, Postfix's
 * valid_utf8_action(); not tried again: the reply itself was whole). Returns out->error:
 * 0, -EINVAL (an endpoint that cannot be used; no try is made), -ECONNREFUSED and the
 * other connect errors, -ETIMEDOUT, -ECONNRESET (EOF before the reply ended),
 * -EBADMSG/-EMSGSIZE/-ENOMSG (smtp_delegation_reader_feed()), -EILSEQ (not UTF-8),
 * -EADDRNOTAVAIL (a host name that does not resolve), -ENOMEM. */
int mx_explain_policy_query(const struct smtp_policy_service *svc, const char *request,
			    size_t len, bool smtputf8, struct mx_explain_policy_reply *out);

/* ---- The screen (explain_screen.c) ----
 *
 * What the screen (postscreen(8)'s tests, mgmt/screen.h) in front of a service would do
 * with a client that connects and waits quietly for its greeting: postscreen_access_list's
 * verdict and the element that gave it; each postscreen_dnsbl_sites domain asked through
 * dns (NULL: --no-dns, every answer a temporary failure) and printed as
 * mx_explain_print_dns() prints it, then each site: listed or not, whether its filter
 * matched, its weight; the score against postscreen_dnsbl_threshold and
 * postscreen_dnsbl_allowlist_threshold; the tests it would run (the teaser and greet
 * wait, the deep tests); the lines the screen would log, what the client would see, and
 * the verdict (allowlisted, denylisted -> action, DNSBL rank -> action, PASS NEW, the deep
 * tests). The screen codec itself decides (smtp/smtp_screen.h), run as the gateway's
 * connection runs it with no cache record: the cache (postscreen_cache_map) is not read,
 * and the output says that a client still in it is PASS OLD. cfg: the service's effective
 * configuration (for permit_mynetworks); wall_s: the wall clock. Returns true when the
 * screen would refuse the client (denylisted or DNSBL rank, with an action other than
 * ignore). */
struct mx_config;
struct mx_screen;
bool mx_explain_screen(FILE *f, struct mx_explain_dns *dns, const char *service,
		       const struct mx_config *cfg, const struct mx_screen *scr,
		       const struct mx_inet_addr *addr, int64_t wall_s);

/* ---- The output (explain_print.c) ----
 *
 * Each function writes whole lines, indented by `indent`. Text from the network (names,
 * TXT strings, actions, request values) is printed with non-printable octets escaped
 * (\\, \" and \ooo), so a hostile answer cannot forge a line. */

/* "dns: A 2.0.0.127.zen.example -> 127.0.0.2 (ttl 300)": the records (addresses, "TEXT",
 * "10 mx.example", names; at most 10, then the count), NODATA, NXDOMAIN with the TTL, or
 * "TEMPFAIL (why)"; ", answered before" when the run had asked it already. */
void mx_explain_print_dns(FILE *f, const char *indent, enum dns_type type, const char *name,
			  const struct dns_result *r, bool cached);

/* A policy exchange: "policy ENDPOINT:" with the request sent (its attributes, one a line
 * after "> "; those with an empty value only when verbose), then the reply ("< action=...")
 * or the failure with the default action that applies. */
void mx_explain_print_policy(FILE *f, const char *indent, const struct smtp_policy_service *svc,
			     const char *request, size_t len,
			     const struct mx_explain_policy_reply *reply, bool verbose);

/* The client's name lookups and what came of them. */
void mx_explain_print_peer(FILE *f, const char *indent, const struct mx_explain_peer *p);

/* "DNS: 127.0.0.1:5353 (mxgate_dns_servers), 5000 ms a try, 2 rounds". */
void mx_explain_print_resolver(FILE *f, const struct mx_explain_dns_opts *o);

/* s (len octets) with non-printable octets, '"' and '\\' escaped. */
void mx_explain_print_text(FILE *f, const char *s, size_t len);

#endif
