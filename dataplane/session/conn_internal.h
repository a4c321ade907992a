/* The connection glue's internals, shared by conn.c (lifecycle, generations, input and
 * output, timeouts), conn_command.c (the commands and the restriction lists) and
 * conn_message.c (the message: checks, Received:, the spool and its commit). */
#ifndef MXGATE_DATAPLANE_SESSION_CONN_INTERNAL_H
#define MXGATE_DATAPLANE_SESSION_CONN_INTERNAL_H

#include "dataplane/session/conn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_dovecot_auth.h"
#include "smtp/smtp_session.h"
#include "dataplane/svc/svc.h"
#include "dataplane/tls/tls_ctx.h"
#include "dataplane/tls/tls_server.h"
#include "tables/netlist.h"

/* Postfix's wording for every failure to store a message (cleanup's "queue file write
 * error"), with the 4.3.0 enhanced code it sends. */
#define CONN_SPOOL_ERROR_TEXT "4.3.0 Error: queue file write error"
/* Postfix's smtpd refuses with this when the queue file system is short of space
 * (smtpd_check.c, "Insufficient system storage"); we send it for a full disk and for a
 * spool over mxgate_spool_quota. */
#define CONN_SPOOL_FULL_TEXT "4.3.1 Insufficient system storage"

/* "NAME[ADDR]": a name is at most 255 bytes (RFC 1035), an address INET6_ADDRSTRLEN. */
#define CONN_CLIENT_MAX (256 + INET6_ADDRSTRLEN + 2)

/* The commands the disconnect line counts, in the order of Postfix's command table
 * (smtpd_cmd_table), "unknown" last. */
enum conn_cmd {
	CONN_CMD_HELO,
	CONN_CMD_EHLO,
	CONN_CMD_XCLIENT,
	CONN_CMD_XFORWARD,
	CONN_CMD_STARTTLS,
	CONN_CMD_AUTH,
	CONN_CMD_MAIL,
	CONN_CMD_RCPT,
	CONN_CMD_DATA,
	CONN_CMD_BDAT,
	CONN_CMD_RSET,
	CONN_CMD_NOOP,
	CONN_CMD_VRFY,
	CONN_CMD_HELP,
	CONN_CMD_ETRN,
	CONN_CMD_QUIT,
	CONN_CMD_UNKNOWN,
	CONN_CMD_MAX,
};

extern const char *const conn_cmd_names[CONN_CMD_MAX];

struct conn_cmd_count {
	unsigned ok, total;
};

struct conn_gen {
	struct mx_generation *g;         /* this worker's reference */
	/* [2 * g->nservices]: the services, then their stress variants (those with lists
	 * of their own; mx_service.stress) */
	struct conn_gen_service *svc;
	unsigned nconns;                 /* this worker's connections on it */
	struct conn_gen *next;
};

/* One service of a held generation, as this worker uses it. */
struct conn_gen_service {
	bool ready;                      /* made on first use */
	struct smtp_policy_ctx *policy;  /* table handles on the worker's reader */
	int anvil_service;               /* the service's id in the anvil table, or -errno */
	int screen_service;              /* its id in w->screen_counts, or -errno */
	SSL_CTX *tls_ctx;                /* its TLS context in this worker's library
					    context; NULL without TLS */
};

/* What a connection waits for from a service (dataplane/svc/), one at a time. */
enum conn_wait {
	CONN_WAIT_NONE,
	CONN_WAIT_PEER_PTR,   /* the client's reverse name (smtpd_peername_lookup) */
	CONN_WAIT_PEER_ADDR,  /* its addresses, to confirm the name */
	CONN_WAIT_LOOKUP,     /* an answer the restriction lists asked for (conn_check.c) */
	CONN_WAIT_SASL,       /* a step of an AUTH exchange (conn_auth.c) */
	CONN_WAIT_MAX,
};

const char *conn_wait_name(enum conn_wait w);

/* Postfix's SMTPD_PEER_CODE_*: how the client's name lookup went. */
enum conn_peer_status {
	CONN_PEER_OK,         /* a name (forward-confirmed for the verified name) */
	CONN_PEER_TEMP,       /* a temporary failure: "unknown" for now */
	CONN_PEER_PERM,       /* no name, or none wanted */
	CONN_PEER_FORGED,     /* the name does not resolve back to the address */
	CONN_PEER_STATUS_MAX,
};

/* The command whose restriction lists are evaluated (conn_check.c), kept while they wait
 * for an answer: what conn_check_decided() needs to finish it. */
enum conn_at {
	CONN_AT_NONE,
	CONN_AT_GREET,   /* the connection: smtpd_client_restrictions with delay_reject = no */
	CONN_AT_HELO,
	CONN_AT_XCLIENT, /* a new client named by XCLIENT (CONNECT stage) */
	CONN_AT_MAIL,
	CONN_AT_RCPT,
	CONN_AT_DATA,
	CONN_AT_END,     /* END-OF-MESSAGE */
	CONN_AT_MAX,
};

/* What of a reply line the metrics read: "550 5.7.1 " at most, with room */
#define CONN_REPLY_HEAD 16

/* The session's first n output bytes left (sent, or taken by TLS): the replies in them are
 * counted (metrics), then smtp_session_output_done(). */
void conn_session_output_done(struct conn *c, size_t n);

struct conn_check {
	enum conn_at at;
	enum smtp_policy_stage stage;
	const char *cmd;                  /* "RCPT", for log lines (a static string) */
	bool unauth_pipelining;
	bool esmtp;                       /* HELO/EHLO */
	bool bdat;                        /* DATA/BDAT */
	char *rcpt, *rcpt_params;         /* RCPT */
	struct smtp_verdict xclient;      /* XCLIENT's verdict being made */
	uint64_t started_us;              /* when the stage's evaluation began (metrics) */
};

struct conn_memo;

/* What a request's owner is (its first member): a connection's conn_op, or a screen's
 * (conn_screen.c), so conn_service_answer() hands each answer to its kind. */
enum conn_op_kind {
	CONN_OP_CONN,
	CONN_OP_SCREEN,
	CONN_OP_KIND_MAX
};

/* A client certificate (conn_tls.c): what the TLS layer said, and its names xtext-encoded
 * for policy servers (RFC 1891; empty unless trusted, as Postfix sends them). */
struct conn_tls_peer {
	struct tls_server_peer p;
	struct smtp_policy_ccert ccert; /* for the restriction lists: points into p */
	char subject_x[3 * sizeof(((struct tls_server_peer *)0)->cn)];
	char issuer_x[3 * sizeof(((struct tls_server_peer *)0)->issuer_cn)];
};

/* A request in flight: the svc_request's owner. When the connection goes first, c becomes
 * NULL and the answer frees it. */
struct conn_op {
	enum conn_op_kind kind;       /* CONN_OP_CONN */
	struct conn *c;
	struct svc_request *r;  /* in flight: the services' until its answer comes back */
	uint64_t asked_us;      /* when it was submitted (the answer-time histograms) */
};

/* One per connection, a million at once on a gateway (perf/loadgen/README.md, memory):
 * what only some connections need is taken when they need it (the client's text, the
 * command counts, the evaluator's session, the end's check verdict, TLS's peer), and the
 * fields are grouped by size (pointers and 64-bit values, 32-bit, 16-bit, bytes and
 * flags) so the struct has no holes. */
struct conn {
	struct conn_worker *w;
	struct conn_gen *gen;          /* the generation it started with, for its whole life */
	const struct mx_service *svc;  /* its service there (or its stress variant) */
	const struct mx_config *cfg;   /* the service's parameters */
	struct smtp_policy_ctx *policy;
	struct mx_gen_counters *gc;    /* this worker's counters of the generation */
	struct smtp_session *s;
	/* "unknown[192.0.2.1]", "NAME[ADDR]" after XCLIENT: on the heap at its length
	 * (conn_set_client()), as most are 20-odd bytes of the CONN_CLIENT_MAX a name may take */
	char *client;
	char *name;                    /* the client's verified name; NULL: "unknown" */
	char *reverse_name;            /* its reverse (PTR) name, unverified; NULL: "unknown" */
	/* a request to a service in flight (NULL: none), and what it is for (wait, below) */
	struct conn_op *op;
	/* smtpd_upstream_proxy_protocol (conn_proxy.c): the PROXY header's bytes so far, NULL
	 * when none is awaited (any more); the wait's end (monotonic ms); proxy_len below */
	char *proxy_buf;
	uint64_t proxy_deadline_ms;
	/* SMTP AUTH (conn_auth.c): the login once authenticated (NULL before), the exchange
	 * in progress (its mechanism as the client wrote it, the service's id), MAIL's AUTH= */
	char *sasl_username, *sasl_method, *sasl_sender;
	uint64_t sasl_exchange;
	/* the restriction lists of the command being decided, and the answers they got */
	struct conn_check check;
	struct conn_memo *memo;
	/* for policy servers: the transaction's instance (started_us, transactions) and
	 * MAIL's SIZE=; where the client connected to is below (server, server_port) */
	uint64_t started_us;
	/* metrics (mxgate/worker_metrics.h): when the final dot arrived (0: no message waits
	 * for its final reply); greeting_timed below */
	uint64_t dot_us;
	uint64_t transactions;
	uint64_t mail_size;

	/* The transaction. */
	char *helo;                    /* as given; NULL before HELO/EHLO */
	char *sender;                  /* NULL before MAIL; "" for <> */
	char *mail_params;
	char *first_rcpt;              /* for Received: "for <rcpt>" */
	/* Policy's envelope actions (HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND) for this
	 * transaction; allocated at MAIL (it is several KiB, and most connections never
	 * get that far), freed with the transaction. */
	struct smtp_policy_actions *actions;
	/* What the evaluator keeps across commands (defer_if_permit with smtpd_delay_reject
	 * = no) and of a check waiting for an answer: taken by a check, given back when it
	 * holds nothing (conn_check.c) */
	struct smtp_policy_session *policy_session;
	/* header_checks and body_checks on the message being received (between DATA and its
	 * end; NULL when none are configured). */
	struct smtp_checks *checks;
	struct spool_msg *msg;         /* from the first accepted recipient to the end */
	/* END-OF-MESSAGE with header/body checks: what they said, while the end's
	 * restriction lists decide (NULL: no checks, accept); freed with the transaction */
	struct smtp_checks_verdict *end_cv;
	void *owner;                   /* the transport's handle */

	/* For the log. */
	struct conn_cmd_count *cmds;   /* [CONN_CMD_MAX], taken at the first command */

	/* TLS (conn_tls.c): the layer once STARTTLS was taken or from the start in
	 * wrappermode; the engine output that still goes out in plaintext (up to the 220 of
	 * STARTTLS); when the handshake's smtpd_starttls_timeout runs out */
	SSL_CTX *tls_ctx;
	struct tls_server *tls;
	size_t tls_plain_out;
	uint64_t tls_deadline_ms;
	/* for policy servers, once the handshake completed (NULL before): "TLSv1.3" and the
	 * cipher's name, OpenSSL's own static strings (SSL_get_version(),
	 * SSL_CIPHER_get_name() of its built-in suites), not copies */
	const char *tls_protocol, *tls_cipher;
	/* the client's certificate (smtpd_tls_ask_ccert), NULL when none was presented */
	struct conn_tls_peer *tls_peer;

	/* smtpd_timeout: when the connection's time is up (monotonic ms), and the request
	 * count it was computed for (conn_deadline()) */
	uint64_t deadline_ms;
	uint64_t deadline_requests;

	/* 32 bits */
	int anvil_service;             /* its service's id in w->anvil (conn_anvil.c) */
	enum conn_peer_status name_status, reverse_name_status;
	enum conn_wait wait;
	unsigned nrcpt;                /* accepted recipients */
	enum conn_cmd data_cmd;        /* DATA or BDAT: which counts the message */
	uint32_t delay_ms;
	int tls_keysize;
	/* anvil(8)'s limits (conn_anvil.c): the client's key, and whether it is counted
	 * (anvil_tracked: then conn_free() gives its connection back) */
	struct anvil_key anvil_key;

	/* 16 bits */
	uint16_t port;
	uint16_t proxy_len;
	uint16_t server_port;

	/* bytes */
	struct mx_inet_addr addr;      /* unmapped */
	struct mx_inet_addr server;    /* unmapped: where the client connected to */
	char addr_str[INET6_ADDRSTRLEN];
	char sasl_mech[SMTP_DOVECOT_MECH_NAME_MAX + 1];
	char queue_id[QUEUE_ID_SIZE];  /* "" until the first accepted recipient */
	/* the reply line leaving now: its first bytes and how far it got (saturating) */
	char reply_head[CONN_REPLY_HEAD];
	uint8_t reply_col;

	/* flags */
	bool greeted;                  /* conn_greet() finished: the 220 (or refusal) is out */
	bool greet_asked;              /* the transport called conn_greet() */
	bool anvil_tracked;
	bool xclient_allowed;          /* in smtpd_authorized_xclient_hosts when it connected */
	bool sasl_in_exchange;
	bool greeting_timed;           /* the first reply was counted as the greeting */
	bool message_open;             /* between the DATA verdict and the end */
	bool message_id_seen;          /* a Message-ID: header was logged (cleanup) */
	bool commit_pending;           /* handed to the spool writer, result not back yet */
	bool shutdown_deferred;        /* a stop arrived while a commit was pending */
	bool helo_answered;            /* an RSET event right after is EHLO's implicit one */
	bool lost_logged;
	bool tls_done_logged;          /* the failure or end was logged */
	bool tls_rate_checked;         /* wrappermode: the new-session rate was looked at */
};

/* ---- shared by the files of the connection glue ---- */

/* conn.c: small helpers */
char *conn_dup(struct mx_span v);
const char *conn_printable(struct mx_span v, char *buf, size_t cap);
const char *conn_printable_str(const char *s, char *buf, size_t cap);
void conn_count(struct conn *c, enum conn_cmd cmd, bool ok);
/* Add to a command's counts for the disconnect line (total and/or ok), without the
 * worker's command counter. The counts are taken at the first command; without memory
 * they are not kept (the line then shows fewer). */
void conn_count_add(struct conn *c, enum conn_cmd cmd, unsigned total, unsigned ok);
/* c->client = "NAME[ADDR]" (name NULL: "unknown"). false without memory: the previous
 * text stays (it names the client in log lines only). */
bool conn_set_client(struct conn *c, const char *name, const char *addr);
const char *conn_last_reply(const struct conn *c, char *buf, size_t cap);
void conn_log_action(struct conn *c, const char *kind, const char *cmd, const char *text,
		     const char *rcpt);
void conn_log_reject(struct conn *c, const char *cmd, const char *reply, const char *rcpt);
void conn_txn_reset(struct conn *c);
/* The message's header_checks state goes back to the worker's pool (or is freed). */
void conn_checks_close(struct conn *c);
int conn_verdict(struct conn *c, uint16_t code, const char *text, bool disconnect);
/* Postfix's HANGUP (an access table or policy server): no reply, the connection closes
 * (smtpd shutdown(2)s its socket): replies not yet sent are dropped, a message in progress
 * is aborted. The pending verdict is still given; the closed session sends nothing. */
void conn_hangup(struct conn *c);
void conn_accept(struct conn *c);

/* conn_check.c: evaluating c->check, and the answers it waits for */
void conn_check_start(struct conn *c);
void conn_check_answer(struct conn *c, struct svc_request *r);
void conn_check_abandon(struct conn *c);
void conn_policy_verdict(struct conn *c, const struct smtp_policy_result *res);
/* A check ended with res (accept, or a refusal already logged): the command at `at`
 * finishes (conn_greet_decided(), conn_helo_decided(), ...). */
void conn_check_decided(struct conn *c, enum conn_at at, const struct smtp_policy_result *res);
void conn_greet_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_helo_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_xclient_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_mail_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_rcpt_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_data_decided(struct conn *c, const struct smtp_policy_result *res);
void conn_end_decided(struct conn *c, const struct smtp_policy_result *res);

/* conn_command.c: the commands */
void conn_spool_refusal(struct conn *c, int rc);
bool conn_storage_refused(struct conn *c, const char *cmd);
void conn_on_helo(struct conn *c, const struct smtp_event *ev);
void conn_on_xclient(struct conn *c, const struct smtp_event *ev);
void conn_on_mail(struct conn *c, const struct smtp_event *ev);
void conn_on_rcpt(struct conn *c, const struct smtp_event *ev);
void conn_on_error(struct conn *c, const struct smtp_event *ev);

/* conn_wait.c: waiting for services */
bool conn_wait_submit(struct conn *c, struct svc_request *r, enum conn_wait why,
		      uint64_t timeout_ms);
void conn_wait_cancel(struct conn *c);
void conn_peer_lookup(struct conn *c);
void conn_greet_now(struct conn *c);

/* conn_screen.c: a screen's answer (the request's owner is a screen op); returns the
 * transport's handle of the screened connection, or NULL (gone, or a cache write). */
void *conn_screen_answer(struct svc_request *r);

/* conn.c: the engine fed plaintext (conn_input() without TLS), and what a timeout, stop
 * or lost peer leaves to do */
size_t conn_feed(struct conn *c, const char *buf, size_t len);
void conn_drain(struct conn *c);

/* conn_tls.c: TLS over the connection's bytes. start: after STARTTLS's 220 (queued) or at
 * accept in wrappermode; -ENOMEM, and the caller ends the session. */
int conn_tls_start(struct conn *c);
size_t conn_tls_input(struct conn *c, const char *buf, size_t len);
struct mx_span conn_tls_output(struct conn *c);
void conn_tls_output_done(struct conn *c, size_t n);
bool conn_tls_ended(const struct conn *c);
uint64_t conn_tls_handshake_deadline(struct conn *c, uint64_t now_ms);
void conn_tls_policy_attrs(const struct conn *c, struct smtp_delegation_request *r);

/* conn_anvil.c: anvil(8)'s per-client limits. connect: when greeting; true when the
 * client is over a connection limit (the 421 is queued instead of the greeting). */
bool conn_anvil_connect(struct conn *c);
void conn_anvil_disconnect(struct conn *c);
bool conn_anvil_rate_over(void *arg, enum smtp_rate_event event);
/* smtpd_client_new_tls_session_rate_limit: before a wrappermode handshake, true (and the
 * warning logged) when the client is over the limit and is to be hung up on; after any
 * handshake, count it unless it was resumed, and when over the limit have the engine
 * answer 421 and close (conn_anvil.c). */
bool conn_anvil_tls_refused(struct conn *c);
void conn_anvil_tls_established(struct conn *c, bool reused);

/* conn_proxy.c: the PROXY protocol header before the greeting (smtpd_upstream_proxy_
 * protocol). init: at accept (-ENOMEM); input: takes header bytes, returns how many (after
 * the header the greeting begins if it was asked for); timeout/eof: the header never came
 * (421 and close). */
int conn_proxy_init(struct conn *c);
uint64_t conn_proxy_deadline(struct conn *c, uint64_t now_ms);
size_t conn_proxy_input(struct conn *c, const char *buf, size_t len);
void conn_proxy_timeout(struct conn *c);
void conn_proxy_eof(struct conn *c);
/* The connection's client came from the screen, which read the header already
 * (postscreen_upstream_proxy_protocol): none is awaited. */
void conn_proxy_skip(struct conn *c);
/* The header reader both the SMTP session and the screen use: len bytes onto hbuf
 * (SMTP_PROXY_HEADER_MAX bytes, *hlen of them so far). 1: the header is whole, in *h; 0:
 * more to come; -1: it is bad or too long, why says so as Postfix's warning continues
 * after "haproxy read: " (with the bytes escaped). *used: the bytes taken (every byte
 * on -1: nothing more is read from the client). */
struct smtp_proxy_header;
int conn_proxy_feed(char *hbuf, uint16_t *hlen, const char *buf, size_t len,
		    struct smtp_proxy_header *h, size_t *used, char *why, size_t whylen);

/* conn_auth.c: SMTP AUTH. offer: what EHLO says (at the session's start and at each
 * EHLO); on_auth / on_auth_response: the engine's events; answer: the service's; abandon:
 * the connection ends mid-exchange (Dovecot is told). */
void conn_auth_offer(struct conn *c);
void conn_on_auth(struct conn *c, const struct smtp_event *ev);
void conn_on_auth_response(struct conn *c, const struct smtp_event *ev);
void conn_auth_answer(struct conn *c, struct svc_request *r);
void conn_auth_abandon(struct conn *c);
/* STARTTLS: the login is forgotten (RFC 3207 4.2) */
void conn_auth_reset(struct conn *c);

/* conn_message.c: the message, its checks and its commit */
int conn_open_message(struct conn *c);
void conn_on_data(struct conn *c, const struct smtp_event *ev);
void conn_on_message_end(struct conn *c, const struct smtp_event *ev);
bool conn_header_is(struct mx_span text, const char *name);
void conn_log_message_id(struct conn *c, struct mx_span text);

#endif
