/* mxgate-loadgen: an SMTP load generator on mxgate's own TCP/IP stack (dataplane/net/)
 * and SMTP client codec (smtp/smtp_client.h), over one DPDK port (net_memif against the
 * gateway, net_af_packet on a veth against any server, or a NIC).
 *
 * The code is split along its concerns:
 *   loadgen_args.c     the options (no DPDK: unit-tested)
 *   loadgen_stats.c    counters, latency histograms, kept errors, the text and JSON report
 *                      (no DPDK: unit-tested)
 *   loadgen_session.c  the sessions: opening them at the target rate and concurrency,
 *                      driving the client codec over a net_conn, checking every reply
 *                      (no DPDK: it sees only the stack)
 *   loadgen_spec.c     the --also specs (no DPDK: unit-tested, fuzzed)
 *   loadgen_mix.c      traffic classes beside the main one: an engine each on the one
 *                      stack, the events to the engine owning the connection, their
 *                      reports (loadgen_mix.h; no DPDK)
 *   loadgen_synflood.c the SYN flood's frames, rate and answers (no DPDK)
 *   loadgen_main.c     EAL, the port, the poll loop, signals
 *
 * Memory. A session costs its struct loadgen_session (preallocated, one array for the
 * whole concurrency), the stack's control block (net_conn_size()), the client codec while
 * connected (one allocation, smtp_client_memory(): about 1.5 KiB with the small bounds set
 * here) and the stack's per-connection buffers only while they hold bytes. Nothing is
 * allocated per byte or per message: the message content is one buffer shared by every
 * session. loadgen_session_memory() reports the sum so a run states it.
 *
 * Threading: one lcore runs everything; several generators (processes or lcores, each
 * with its own source range) add up. */
#ifndef MXGATE_PERF_LOADGEN_H
#define MXGATE_PERF_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LOADGEN_ERRORS_KEPT_MAX 1000
#define LOADGEN_ERROR_TEXT_MAX 200
#define LOADGEN_NAME_MAX 256

/* A traffic class run beside the main one in the same process and against the same
 * server (--also KIND:src=RANGE[,concurrency=N][,rate=R]): its own source range, its own
 * counters and report (loadgen_mix.c). */
#define LOADGEN_ALSO_MAX 4
enum loadgen_class_kind {
	LOADGEN_CLASS_PREGREET, /* pregreeting bots (as --pregreet) */
	LOADGEN_CLASS_LISTED,   /* DNSBL-listed clients (as --listed) */
	LOADGEN_CLASS_SYNFLOOD, /* SYNs from random sources of the range, never completed */
	LOADGEN_CLASS_MAX
};
struct loadgen_class_spec {
	enum loadgen_class_kind kind;
	uint32_t src_base, src_count; /* network-order base */
	uint32_t concurrency;         /* sessions at once (not synflood) */
	double rate;                  /* sessions (SYNs) per second; 0: as fast as possible */
};

enum loadgen_rate_of {
	LOADGEN_RATE_SESSIONS, /* new sessions per second */
	LOADGEN_RATE_MESSAGES, /* new transactions (MAIL) per second */
	LOADGEN_RATE_OF_MAX
};

struct loadgen_config {
	char port[LOADGEN_NAME_MAX];   /* DPDK port name; "" = the first port */
	uint32_t local;                /* our own address (network order) */
	uint8_t local_prefix;          /* its on-link prefix */
	uint32_t src_base, src_count;  /* source addresses (network order base); count 0:
	                                  only `local` */
	uint32_t next_hop;             /* 0: the server is on-link */
	uint32_t server;               /* network order */
	uint16_t server_port;
	uint32_t concurrency;          /* sessions open at once (1..2^24) */
	uint32_t handshakes;           /* sessions between connect and greeting at once
	                                  (1..2^24, default 512): the ramp follows the server */
	uint64_t sessions;             /* sessions in all; 0 = until --duration */
	double duration_s;             /* stop opening sessions after this; 0 = no limit */
	uint32_t messages;             /* per session (0: EHLO and QUIT only) */
	uint32_t size;                 /* message bytes (headers included), >= 200 */
	uint32_t rcpts;                /* recipients per message (1..1000) */
	double rate;                   /* target rate; 0 = as fast as possible */
	enum loadgen_rate_of rate_of;
	bool pipelining;               /* pipeline when the server offers PIPELINING */
	bool idle;                     /* greet, then stay silent until told to QUIT */
	double idle_hold_s;            /* idle: QUIT after this; 0 = on SIGUSR2/SIGINT only */
	bool pregreet;                 /* a bot: "EHLO helo" right after the handshake, before
	                                  the greeting; the screen must answer 521 and close */
	bool listed;                   /* a DNSBL-listed client: postscreen's enforce action
	                                  greets it, then must refuse every RCPT with 550
	                                  (counted as rejected, not as an error) */
	struct loadgen_class_spec also[LOADGEN_ALSO_MAX]; /* --also: traffic classes run
	                                  beside this one (loadgen_mix.h) */
	uint32_t nalso;
	char helo[LOADGEN_NAME_MAX];
	char sender[LOADGEN_NAME_MAX];
	char rcpt_domain[LOADGEN_NAME_MAX]; /* recipients are u<N>@rcpt_domain, N unique */
	char bad_rcpt[LOADGEN_NAME_MAX];    /* a recipient the server must refuse ("" none) */
	uint32_t bad_rcpt_every;       /* every Nth recipient is bad_rcpt (0: none) */
	double timeout_s;              /* per reply, and per connect */
	uint32_t errors_kept;          /* error texts kept (0..LOADGEN_ERRORS_KEPT_MAX) */
	char json[LOADGEN_NAME_MAX];   /* result file; "" = none */
	uint32_t mbufs;                /* mbuf pool size */
	uint32_t sndbuf, rcvbuf;       /* per-connection TCP buffers, bytes */
	double progress_s;             /* a progress line every so often; 0 = none */
	char label[LOADGEN_NAME_MAX];  /* free text copied into the JSON result */
};

/* ---- loadgen_args.c ---- */

void loadgen_config_defaults(struct loadgen_config *cfg);
/* Parse the options after the EAL's (argv[0] is the program). 0, or -EINVAL with a message
 * naming the option in err; 1 when --help was asked (usage printed to `out`). */
int loadgen_args_parse(struct loadgen_config *cfg, int argc, char **argv, FILE *out, char *err,
		       size_t errlen);
/* "10.99.0.0/16" -> the usable host addresses of the prefix (network and broadcast left
 * out below /31), or "10.99.0.1-10.99.3.255", or one address. Network-order base. 0 or
 * -EINVAL. */
int loadgen_args_range(const char *s, uint32_t *base, uint32_t *count);
/* "10.0.0.1/24" (prefix optional: 32). 0 or -EINVAL. */
int loadgen_args_addr_prefix(const char *s, uint32_t *addr, uint8_t *prefix);
void loadgen_args_usage(FILE *out);
const char *loadgen_rate_of_name(enum loadgen_rate_of r);

/* ---- loadgen_stats.c ---- */

/* What a latency is measured between. */
enum loadgen_lat {
	LOADGEN_LAT_CONNECT,  /* connect (SYN) to the greeting */
	LOADGEN_LAT_EHLO,     /* EHLO out to its reply */
	LOADGEN_LAT_MAIL,     /* MAIL queued to its reply */
	LOADGEN_LAT_RCPT,
	LOADGEN_LAT_DATA,
	LOADGEN_LAT_DOT,      /* the final dot out to the reply (the spool commit) */
	LOADGEN_LAT_QUIT,
	LOADGEN_LAT_MAX
};
const char *loadgen_lat_name(enum loadgen_lat k);

enum loadgen_err {
	LOADGEN_ERR_CONNECT,   /* the active open failed (refused, timed out, no route) */
	LOADGEN_ERR_GREETING,  /* greeting code not 220 */
	LOADGEN_ERR_EHLO,      /* EHLO not 250 */
	LOADGEN_ERR_MAIL,      /* MAIL not 2xx */
	LOADGEN_ERR_RCPT,      /* a good RCPT not 2xx, or a bad one 2xx (or not 4xx/5xx) */
	LOADGEN_ERR_DATA,      /* DATA not 354 with recipients, or 354 without any */
	LOADGEN_ERR_DOT,       /* end of data not 2xx */
	LOADGEN_ERR_QUIT,      /* QUIT not 221 */
	LOADGEN_ERR_PROTOCOL,  /* a malformed or unsolicited reply, a wrong code class */
	LOADGEN_ERR_LOST,      /* the connection closed or reset with replies owed */
	LOADGEN_ERR_TIMEOUT,   /* no reply within timeout_s */
	LOADGEN_ERR_LOCAL,     /* out of resources here (connection table, memory) */
	LOADGEN_ERR_MAX
};
const char *loadgen_err_name(enum loadgen_err e);

/* Log-linear histogram of microseconds: exact below 32, then 32 buckets per power of two
 * (under 3.2% error), up to 2^40 us. */
#define LOADGEN_HIST_SUB 32
#define LOADGEN_HIST_BUCKETS (LOADGEN_HIST_SUB * 37)
struct loadgen_hist {
	uint64_t n, sum, max;
	uint64_t b[LOADGEN_HIST_BUCKETS];
};
void loadgen_hist_add(struct loadgen_hist *h, uint64_t us);
/* The value at quantile q (0..1): the upper bound of the bucket where it falls (exact max
 * for q = 1); 0 when empty. */
uint64_t loadgen_hist_quantile(const struct loadgen_hist *h, double q);
/* The largest value bucket i holds (i < LOADGEN_HIST_BUCKETS). */
uint64_t loadgen_hist_upper(unsigned i);

struct loadgen_error_record {
	enum loadgen_err kind;
	uint16_t code;
	char text[LOADGEN_ERROR_TEXT_MAX];
};

struct loadgen_stats {
	uint64_t sessions_started, sessions_connected, sessions_greeted, sessions_done,
		sessions_failed;
	uint64_t messages_started, messages_accepted, messages_refused;
	uint64_t rcpts_sent, rcpts_accepted, rcpts_refused, bytes_content;
	uint64_t idle_held; /* idle mode: sessions greeted and waiting now (a gauge) */
	uint64_t idle_max;  /* ... and the most at once */
	uint64_t connect_deferred; /* opens put off: the stack's table was full */
	uint64_t sessions_rejected; /* pregreet: 521 then the close, as a screen does */
	uint64_t errors[LOADGEN_ERR_MAX];
	uint64_t errors_total;
	struct loadgen_hist lat[LOADGEN_LAT_MAX];
	struct loadgen_error_record *kept; /* errors_kept entries */
	uint32_t nkept, kept_max;
	uint64_t start_us, end_us;
	uint64_t first_greeting_us, all_greeted_us; /* idle mode: the ramp */
};

/* 0 or -ENOMEM. */
int loadgen_stats_init(struct loadgen_stats *st, uint32_t errors_kept);
void loadgen_stats_free(struct loadgen_stats *st);
/* Count an error of `kind`; keep its text (formatted, cut to fit) while room is left. */
void loadgen_stats_error(struct loadgen_stats *st, enum loadgen_err kind, uint16_t code,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Extra figures the report carries besides the stats (from the main loop). */
struct loadgen_report_extra {
	uint64_t session_memory; /* bytes per session, estimated */
	uint64_t rx_packets, tx_packets, tx_dropped;
	uint64_t busy_cycles, total_cycles, tsc_hz;
	const char *port_driver;
};
void loadgen_report_text(FILE *out, const struct loadgen_config *cfg,
			 const struct loadgen_stats *st, const struct loadgen_report_extra *x);
/* Write the JSON result to path; 0 or -errno. */
int loadgen_report_json(const char *path, const struct loadgen_config *cfg,
			const struct loadgen_stats *st, const struct loadgen_report_extra *x);
/* A JSON string literal of s (quotes included) into out; cut to fit cap. */
void loadgen_json_string(char *out, size_t cap, const char *s);
/* loadgen_hist_json.c: the "latency_hist_us" member (every histogram's non-empty
 * buckets as [upper bound, count] pairs) and its trailing comma, into a JSON result. */
void loadgen_hist_json(FILE *f, const struct loadgen_stats *st);

/* ---- loadgen_session.c ---- */

struct net_stack;
struct net_conn;
struct loadgen;

/* Create the session engine over a stack (which it opens connections on). NULL with errno
 * (ENOMEM, EINVAL). The stack's ops must send events to loadgen_event(lg, ...). */
struct loadgen *loadgen_new(const struct loadgen_config *cfg, struct loadgen_stats *st,
			    uint64_t now_us);
void loadgen_attach(struct loadgen *lg, struct net_stack *s);
void loadgen_free(struct loadgen *lg);
/* The stack's event callback (ctx: the struct loadgen). */
void loadgen_event(void *ctx, struct net_conn *c, int ev);
/* Open sessions the rate and concurrency allow, run due timers: once per loop. */
void loadgen_tick(struct loadgen *lg, uint64_t now_us);
/* Idle mode: send QUIT on every held session now (SIGUSR2, SIGINT, --idle-hold). */
void loadgen_release(struct loadgen *lg);
/* Stop opening sessions (SIGINT, --duration). */
void loadgen_stop_opening(struct loadgen *lg);
/* No session open and none to open: the run is over. */
bool loadgen_done(const struct loadgen *lg);
uint32_t loadgen_active(const struct loadgen *lg);
/* Bytes one session costs here, all-in but the stack's lazily taken buffers. */
size_t loadgen_session_memory(const struct loadgen *lg);
/* Whether c is one of lg's sessions (several engines share a stack: loadgen_mix.c). */
bool loadgen_owns(const struct loadgen *lg, const struct net_conn *c);

/* ---- loadgen_spec.c (the classes themselves: loadgen_mix.h) ---- */

/* "KIND:src=RANGE[,concurrency=N][,rate=R]" (KIND pregreet, listed or synflood; synflood
 * needs rate=). 0, or -EINVAL with the reason in err. */
int loadgen_class_spec_parse(const char *s, struct loadgen_class_spec *out, char *err,
			     size_t errlen);
const char *loadgen_class_kind_name(enum loadgen_class_kind k);

#endif
