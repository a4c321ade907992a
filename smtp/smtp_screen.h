/* The screen: postscreen(8)'s tests as a sans-I/O codec, one object per connection.
 *
 * A connection to a service with the screen on meets this object before any SMTP session
 * exists. It runs postscreen's tests in postscreen's order and with its outcomes
 * (postscreen(8), postconf(5) postscreen_*):
 *
 *   - the permanent allow/deny list (postscreen_access_list, evaluated by the caller:
 *     smtp_screen_start() takes its result) and postscreen_denylist_action;
 *   - the temporary allowlist (postscreen_cache_map): the cache record of the client, as
 *     postscreen stores it ("PREGR;DNSBL;PIPEL;NSMTP;BARLF" expiry times in seconds
 *     since the epoch, 0 never passed, 1 disabled), taken at start; a client whose
 *     tests are all unexpired is "PASS OLD" at once;
 *   - the tests before the greeting: the teaser "220-" postscreen_greet_banner, the
 *     pregreet test (postscreen_greet_wait, postscreen_greet_action) and the DNSBL score
 *     (postscreen_dnsbl_sites with filters and weights, thresholds, postscreen_dnsbl_action);
 *   - the deep tests after the greeting in postscreen's dummy SMTP engine (pipelining,
 *     non-SMTP commands, bare newlines; command count and time limits), which is also the
 *     engine that answers enforced clients and rejects them at RCPT.
 *
 * What it does not do: I/O, clocks, logging. Time comes in as monotonic milliseconds
 * (and the wall clock in seconds once, at start, for the cache's absolute times). The
 * lines postscreen would log are handed to a callback as text ("PASS NEW [192.0.2.1]:
 * 12345"), to be logged by the caller. DNS: the object names the questions to ask
 * (type A, one per distinct DNSBL domain) and takes their answers.
 *
 * The caller's loop:
 *   s = smtp_screen_new(cfg, &client, log, arg);
 *   smtp_screen_start(s, acl, cache_record, now_ms, wall_s);
 *   for each i < smtp_screen_queries(s): ask smtp_screen_query_name(s, i), then later
 *       smtp_screen_dns_answer(s, i, result, now_ms) (a failure is an answer too);
 *   send smtp_screen_output(s); smtp_screen_output_done(s, n);
 *   offer received bytes with smtp_screen_input() while smtp_screen_wants_input();
 *   call smtp_screen_timer(s, now_ms) at smtp_screen_deadline(s);
 *   smtp_screen_peer_closed(s, now_ms) when the client goes away;
 *   until smtp_screen_state() is PASS (hand the connection to the SMTP server, with the
 *   bytes not consumed) or CLOSE (send the output, close). smtp_screen_cache_record()
 *   then says what to store in the cache, if anything.
 */
#ifndef MXGATE_SMTP_SMTP_SCREEN_H
#define MXGATE_SMTP_SMTP_SCREEN_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgate/inet.h"
#include "mxgate/span.h"
#include "tables/dns_result.h"

/* postscreen's actions for a failed test (postconf(5)). */
enum smtp_screen_action {
	SMTP_SCREEN_IGNORE,  /* log it, go on as if it passed (the test is repeated next time) */
	SMTP_SCREEN_ENFORCE, /* the dummy engine rejects every RCPT with a 550 */
	SMTP_SCREEN_DROP,    /* a 521 and the connection closes */
	SMTP_SCREEN_ACTION_MAX
};

const char *smtp_screen_action_name(enum smtp_screen_action a);
/* "ignore", "enforce", "drop" (case-insensitive). 0 or -EINVAL. */
int smtp_screen_action_parse(const char *s, enum smtp_screen_action *out);

/* The tests with an expiry time in the cache record, in the record's order. */
enum smtp_screen_test {
	SMTP_SCREEN_PREGREET,
	SMTP_SCREEN_DNSBL,
	SMTP_SCREEN_PIPELINING,
	SMTP_SCREEN_NON_SMTP,
	SMTP_SCREEN_BARE_NEWLINE,
	SMTP_SCREEN_TEST_MAX
};

/* postscreen_access_list's verdict for the client (the caller evaluates it). */
enum smtp_screen_acl {
	SMTP_SCREEN_ACL_DUNNO,
	SMTP_SCREEN_ACL_PERMIT,
	SMTP_SCREEN_ACL_REJECT,
	SMTP_SCREEN_ACL_MAX
};

/* Where a screened connection is. */
enum smtp_screen_state {
	SMTP_SCREEN_ST_NEW,    /* made, not started */
	SMTP_SCREEN_ST_EARLY,  /* before the greeting: teaser sent, waiting (greet wait, DNS) */
	SMTP_SCREEN_ST_SMTPD,  /* the dummy engine: deep tests, or an enforced client */
	SMTP_SCREEN_ST_PASS,   /* hand the connection to the SMTP server */
	SMTP_SCREEN_ST_CLOSE,  /* send the output, then close */
	SMTP_SCREEN_ST_MAX
};

const char *smtp_screen_state_name(enum smtp_screen_state st);

#define SMTP_SCREEN_SITES_MAX 64   /* postscreen_dnsbl_sites entries */
#define SMTP_SCREEN_ZONES_MAX 32   /* distinct DNSBL domains (one query each) */
#define SMTP_SCREEN_FORBID_MAX 32  /* postscreen_forbidden_commands words */
#define SMTP_SCREEN_TEXT_MAX 512   /* banners, host names, reply-map names */

/* One postscreen_dnsbl_sites entry: domain[=filter][*weight]. */
struct smtp_screen_site {
	unsigned zone;            /* index in the config's zones */
	int weight;               /* negative: an allowlist */
	bool has_filter;
	uint8_t filter[4][32];    /* ip_match(3): one 256-bit set per octet */
};

/* A distinct DNSBL domain: one query per client. */
struct smtp_screen_zone {
	char domain[256];         /* as written in postscreen_dnsbl_sites */
	char shown[SMTP_SCREEN_TEXT_MAX]; /* postscreen_dnsbl_reply_map's name, else domain */
};

/* A service's compiled screen parameters (immutable; shared by its connections). */
/* The dummy engine's EHLO keywords postscreen_discard_ehlo_keywords can take away
 * (Postfix's ehlo_mask(); the others it names, AUTH, STARTTLS, XCLIENT..., are never
 * offered by the screen, and unknown words are ignored as Postfix ignores them). */
enum smtp_screen_ehlo_keyword {
	SMTP_SCREEN_EHLO_SIZE = 1u << 0,
	SMTP_SCREEN_EHLO_VRFY = 1u << 1,
	SMTP_SCREEN_EHLO_ETRN = 1u << 2,
	SMTP_SCREEN_EHLO_ENHANCEDSTATUSCODES = 1u << 3,
	SMTP_SCREEN_EHLO_8BITMIME = 1u << 4,
	SMTP_SCREEN_EHLO_DSN = 1u << 5,
	SMTP_SCREEN_EHLO_SMTPUTF8 = 1u << 6,
	SMTP_SCREEN_EHLO_CHUNKING = 1u << 7,
};

struct smtp_screen_config {
	char greet_banner[SMTP_SCREEN_TEXT_MAX];  /* "": no teaser and no pregreet test */
	char smtpd_banner[SMTP_SCREEN_TEXT_MAX];  /* the dummy engine's "220 ..." */
	char myhostname[256];
	uint32_t greet_wait_ms;
	enum smtp_screen_action greet_action, dnsbl_action, denylist_action;
	enum smtp_screen_action pipelining_action, non_smtp_action, bare_newline_action;
	uint32_t greet_ttl_s, dnsbl_min_ttl_s, dnsbl_max_ttl_s, dnsbl_timeout_ms;
	int dnsbl_threshold, dnsbl_allowlist_threshold;
	struct smtp_screen_site sites[SMTP_SCREEN_SITES_MAX];
	unsigned nsites;
	struct smtp_screen_zone *zones;           /* [nzones], owned */
	unsigned nzones;
	bool pipelining_enable, non_smtp_enable, bare_newline_enable;
	uint32_t pipelining_ttl_s, non_smtp_ttl_s, bare_newline_ttl_s;
	char forbidden[SMTP_SCREEN_FORBID_MAX][64]; /* postscreen_forbidden_commands */
	unsigned nforbidden;
	/* its inline regexp:{{/re/ result}} (and pcre:) rules, POSIX extended, matched as
	 * Postfix's regexp tables match (case-insensitive unless the i flag) */
	regex_t forbidden_re[SMTP_SCREEN_FORBID_MAX];
	unsigned nforbidden_re;
	unsigned command_count_limit;
	unsigned client_connection_count_limit; /* 0: none */
	uint32_t command_time_limit_ms;
	uint32_t cache_retention_s;
	bool helo_required, disable_vrfy, smtputf8;
	uint32_t ehlo_discard;                    /* smtp_screen_ehlo_keyword bits */
	uint64_t message_size_limit;              /* EHLO's SIZE (0: "SIZE" without one) */
	unsigned line_limit;                      /* line_length_limit */
};

/* The parameters as text, as main.cf spells them (mgmt/ fills this from its registry). */
struct smtp_screen_params {
	const char *greet_banner, *smtpd_banner, *myhostname;
	uint32_t greet_wait_s;
	const char *greet_action, *dnsbl_action, *denylist_action;
	const char *pipelining_action, *non_smtp_action, *bare_newline_action;
	uint32_t greet_ttl_s, dnsbl_min_ttl_s, dnsbl_max_ttl_s, dnsbl_timeout_s;
	int dnsbl_threshold, dnsbl_allowlist_threshold;
	const char *dnsbl_sites;
	bool pipelining_enable, non_smtp_enable, bare_newline_enable;
	uint32_t pipelining_ttl_s, non_smtp_ttl_s, bare_newline_ttl_s;
	const char *forbidden_commands;
	unsigned command_count_limit;
	unsigned client_connection_count_limit;
	uint32_t command_time_limit_s;
	uint32_t cache_retention_s;
	bool helo_required, disable_vrfy, smtputf8;
	const char *discard_ehlo_keywords;        /* postscreen_discard_ehlo_keywords */
	uint64_t message_size_limit;
	unsigned line_limit;
};

/* Compile the parameters. 0, or -EINVAL with a reason in err ("bad DNSBL weight factor
 * ..."), -ENOMEM. */
int smtp_screen_config_new(const struct smtp_screen_params *p, struct smtp_screen_config **out,
			   char *err, size_t errlen);
void smtp_screen_config_free(struct smtp_screen_config *cfg);
/* Name a DNSBL domain as postscreen_dnsbl_reply_map does (the reply says "blocked using
 * SHOWN"). -ENOENT when domain is not one of the sites. */
int smtp_screen_config_set_shown(struct smtp_screen_config *cfg, const char *domain,
				 const char *shown);

/* Parse one postscreen_dnsbl_sites list into cfg (smtp_screen_dnsbl.c). */
int smtp_screen_sites_parse(struct smtp_screen_config *cfg, const char *list, char *err,
			    size_t errlen);

/* The connection, as postscreen logs it. */
struct smtp_screen_client {
	struct mx_inet_addr addr;     /* the client (IPv4-mapped addresses are unmapped) */
	uint16_t port;
	struct mx_inet_addr server;   /* where it connected to */
	uint16_t server_port;
	/* this client address's connections in the screen now, this one included
	 * (postscreen's client concurrency); 0: not counted, no limit applies */
	uint32_t concurrency;
};

struct smtp_screen;

/* A log line as postscreen writes it, without a newline. */
typedef void smtp_screen_log_fn(void *arg, const char *line);

/* NULL when out of memory. cfg outlives the object. */
struct smtp_screen *smtp_screen_new(const struct smtp_screen_config *cfg,
				    const struct smtp_screen_client *client,
				    smtp_screen_log_fn *log, void *log_arg);
void smtp_screen_free(struct smtp_screen *s);
/* Bytes the object holds (the object, its output, the dummy engine's buffer). */
size_t smtp_screen_memory(const struct smtp_screen *s);

/* Before smtp_screen_start() only: the client is another one (the PROXY header named the
 * real client; postscreen_upstream_proxy_protocol), or its concurrency is now known. */
void smtp_screen_set_client(struct smtp_screen *s, const struct smtp_screen_client *client);
/* Before smtp_screen_start() only: the client is refused before it is screened (postscreen
 * could not read its PROXY header): reply goes out, then the close; nothing is logged (the
 * caller logs why) and nothing is tested or stored. */
void smtp_screen_refuse(struct smtp_screen *s, const char *reply);

/* Start: log CONNECT, apply the access list's verdict, the cache record (NULL: none,
 * a new client; it is parsed leniently as postscreen does), then send the teaser and ask
 * for DNS, or conclude at once (ALLOWLISTED, PASS OLD, a denylisted drop). */
void smtp_screen_start(struct smtp_screen *s, enum smtp_screen_acl acl, const char *cache,
		       uint64_t now_ms, int64_t wall_s);

enum smtp_screen_state smtp_screen_state(const struct smtp_screen *s);

/* DNS: the questions (type A), numbered 0..smtp_screen_queries()-1; 0 when the DNSBL
 * test does not run. Name: 0, or -ENAMETOOLONG/-EINVAL (then answer it as failed). */
unsigned smtp_screen_queries(const struct smtp_screen *s);
int smtp_screen_query_name(const struct smtp_screen *s, unsigned i, char *out, size_t cap);
/* The answer to question i (NULL or a TEMPFAIL: a failed lookup, "not listed" as
 * dnsblog(8) reports it). Answers after the early phase are ignored. */
void smtp_screen_dns_answer(struct smtp_screen *s, unsigned i, const struct dns_result *res,
			    uint64_t now_ms);

/* True while the object reads client bytes: in the early phase until a pregreet was seen
 * (those bytes are then left for whoever comes next: the dummy engine or the SMTP
 * server), and in the dummy engine. */
bool smtp_screen_wants_input(const struct smtp_screen *s);
/* Offer received bytes. Returns how many were consumed; the rest stays the caller's and
 * is offered again (or, at PASS, given to the SMTP server). In the early phase nothing
 * is consumed. The dummy engine stops when its output is above its high-water mark
 * (send, then offer again) or the session ends. */
size_t smtp_screen_input(struct smtp_screen *s, const char *buf, size_t len, uint64_t now_ms);

/* When smtp_screen_timer() is due (monotonic ms); UINT64_MAX: nothing pending. */
uint64_t smtp_screen_deadline(const struct smtp_screen *s);
void smtp_screen_timer(struct smtp_screen *s, uint64_t now_ms);

/* The client went away (EOF, reset). */
void smtp_screen_peer_closed(struct smtp_screen *s, uint64_t now_ms);
/* The gateway stops: a 421, then close. */
void smtp_screen_shutdown(struct smtp_screen *s, uint64_t now_ms);

/* Bytes to send, and how many were sent. */
struct mx_span smtp_screen_output(const struct smtp_screen *s);
void smtp_screen_output_done(struct smtp_screen *s, size_t n);

/* After the conclusion (PASS or CLOSE): the cache record to store for the client
 * ("1733593200;...", NUL-terminated in out) and how long the store may keep it (the
 * latest expiry plus postscreen_cache_retention_time, from wall_s). true when there is
 * one to store (a test passed), false when postscreen would not update its cache. */
bool smtp_screen_cache_record(const struct smtp_screen *s, int64_t wall_s, char *out,
			      size_t cap, uint32_t *keep_s);

/* What happened, for counters. dnsbl_listed: bit k set when the answer of site k of
 * cfg->sites (postscreen_dnsbl_sites' order) listed the client within the site's filter,
 * so that its weight counted (answers after the score was final do not count);
 * dnsbl_score: the DNSBL score once final (dnsbl_scored). */
struct smtp_screen_outcome {
	bool pregreet_fail, dnsbl_fail, pipelining_fail, non_smtp_fail, bare_newline_fail;
	bool pass_new, pass_old, denylisted, allowlisted;
	bool too_many; /* over postscreen_client_connection_count_limit: 421 at once */
	bool dnsbl_scored;
	int dnsbl_score;
	uint64_t dnsbl_listed;
};
struct smtp_screen_outcome smtp_screen_outcome(const struct smtp_screen *s);

/* postscreen's escape(): C escapes for control bytes, \ooo for the rest, "\\" doubled;
 * at most cap-1 bytes written, always terminated. Returns out. */
const char *smtp_screen_escape(const char *in, size_t len, char *out, size_t cap);
/* Postfix's format_tv() with 2 significant digits and delay_logging_resolution_limit 2:
 * "0.12", "6", "1.2". */
const char *smtp_screen_format_delay(uint64_t ms, char *out, size_t cap);

#endif
