/* Postfix's smtpd restriction lists (SMTPD_ACCESS_README, postconf(5), access(5)):
 * smtpd_{client,helo,sender,relay,recipient,data,end_of_data}_restrictions with
 * smtpd_delay_reject, restriction classes, warn_if_reject, soft_bounce, the check_*_access
 * family with every access(5) action, DNS blocklists and allowlists (a local LMDB zone,
 * tables/rbl_zone.h, answers first; DNS is asked only when no local zone of that name
 * exists), the reject_unknown_* checks, check_*_{mx,ns,a}_access, check_policy_service
 * (SMTPD_POLICY_README), and the reply codes and texts Postfix sends.
 * ../shared/reference/postfix-semantics.md lists the rules; Debian's Postfix 3.7 is the
 * oracle where it is silent.
 *
 * Two objects:
 *   struct smtp_policy      compiled once from the configuration (mgmt, at load and at
 *                           `mxgate --check`), immutable, shared by every worker. Compiling
 *                           refuses what mxgate cannot do honestly: unknown restrictions
 *                           and those it does not implement (permit_mx_backup,
 *                           reject_unverified_*, TLS and SASL ones...), with a message
 *                           saying so. Nothing pretends.
 *   struct smtp_policy_ctx  one per worker thread: the table and zone handles opened on that
 *                           thread's tables_reader (LMDB), plus scratch space. Evaluation
 *                           allocates nothing (a traced check, `mxgate explain`, may grow
 *                           its trace buffer once).
 *
 * Evaluation is sans-I/O like the engine: no logging, no clock reads (`now` is passed in),
 * no sockets. What Postfix would log (warn_if_reject's reject_warning, WARN, INFO, HOLD,
 * DISCARD, FILTER, REDIRECT, BCC, PREPEND, its warnings) goes to the caller's event
 * callback, which logs it in Postfix's words. Envelope actions accumulate in a struct
 * smtp_policy_actions the caller keeps per transaction (MAIL to end of message) and
 * applies to the spooled envelope.
 *
 * Waiting without blocking (DNS answers, policy servers): the caller gives lookup
 * callbacks (struct smtp_policy_lookups). When a restriction needs an answer the callback
 * does not have yet, the callback starts asking for it and returns 0; the evaluation stops
 * there and smtp_policy_check() returns SMTP_POLICY_PENDING. When the answer has come, the
 * caller calls smtp_policy_check() again with the SAME request: evaluation starts again at
 * the start of the stage, and every answer asked for before now comes from the callback
 * at once (it keeps them: a memo per pending check), so the evaluation goes past the item
 * it stopped at. It is a replay: it resumes at the same stage, list and item with Postfix's
 * evaluation order and smtpd_delay_reject semantics intact. A run that returns PENDING has
 * called neither cb->event nor cb->trace, left *actions and *req->session unchanged
 * (except the pending bookkeeping in the session), and asked for exactly one answer.
 * Events, trace lines and envelope actions are delivered only by the run that completes
 * with a decision. Without lookup callbacks nothing waits: every DNS lookup is a
 * temporary failure and every policy query a failed one (Postfix with no resolver and
 * no policy server). */
#ifndef MXGATE_SMTP_SMTP_RESTRICTIONS_H
#define MXGATE_SMTP_SMTP_RESTRICTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp/smtp_delegation.h"
#include "tables/dns_message.h"
#include "tables/dns_result.h"
#include "tables/domain_list.h"
#include "tables/greylist.h"
#include "tables/netlist.h"
#include "tables/table_access.h"
#include "tables/tables_env.h"

enum smtp_restriction_list {
	SMTP_LIST_CLIENT,      /* smtpd_client_restrictions */
	SMTP_LIST_HELO,        /* smtpd_helo_restrictions */
	SMTP_LIST_SENDER,      /* smtpd_sender_restrictions */
	SMTP_LIST_RELAY,       /* smtpd_relay_restrictions */
	SMTP_LIST_RECIPIENT,   /* smtpd_recipient_restrictions */
	SMTP_LIST_DATA,        /* smtpd_data_restrictions */
	SMTP_LIST_END_OF_DATA, /* smtpd_end_of_data_restrictions */
	SMTP_LIST_MAX
};

/* "smtpd_client_restrictions" etc. */
const char *smtp_restriction_list_name(enum smtp_restriction_list l);

/* When the caller asks (the SMTP command that was just received). */
enum smtp_policy_stage {
	SMTP_STAGE_CONNECT,     /* client list, only when delay_reject is off */
	SMTP_STAGE_HELO,        /* helo list, only when delay_reject is off */
	SMTP_STAGE_MAIL,        /* sender list, only when delay_reject is off */
	SMTP_STAGE_RCPT,        /* [client, helo, sender when delay_reject,] relay, recipient */
	SMTP_STAGE_DATA,        /* data list */
	SMTP_STAGE_END_OF_DATA, /* end_of_data list */
	SMTP_STAGE_MAX
};

const char *smtp_policy_stage_name(enum smtp_policy_stage s); /* "RCPT" etc. */

/* What the caller does with a refusal, as Debian's Postfix 3.7 smtpd does (checked against
 * it; smtpd.c):
 *   CONNECT (delay_reject = no): send the refusal INSTEAD of the 220 greeting, then answer
 *     every later command but QUIT with "503 5.7.0 Error: access denied for NAME[ADDR]"
 *     (QUIT: 221). A 421/521 (res->disconnect) closes the session after the reply.
 *   HELO/EHLO: the refusal answers the command; the HELO name is not recorded (the client
 *     may try again, and MAIL is accepted without it unless smtpd_helo_required).
 *   MAIL: the refusal answers MAIL; no transaction starts (RCPT then gets "503 5.5.1
 *     Error: need MAIL command"); zero the smtp_policy_actions.
 *   RCPT: only that recipient is refused. Envelope actions collected so far stay (Postfix
 *     does not undo a FILTER/HOLD/... that an earlier restriction set for a recipient that
 *     is then rejected).
 *   DATA: the refusal answers DATA; the transaction stays (RSET ends it).
 *   END_OF_DATA: the refusal answers the final dot; nothing is queued.
 * A DISCARD (actions->discard) makes smtp_policy_check accept every later request of the
 * transaction without evaluating anything, as smtpd does (state->discard); the caller
 * answers 250 and spools nothing. With delay_reject on, CONNECT/HELO/MAIL accept without
 * evaluating anything (those lists are evaluated at each RCPT), so the caller may ask at
 * every command unconditionally. */

/* What a DNS temporary failure does in reject_unknown_helo_hostname and
 * reject_unknown_{sender,recipient}_domain (Postfix's tempfail_actions). */
enum smtp_policy_tempfail_action {
	SMTP_POLICY_TEMPFAIL_DEFER_IF_PERMIT, /* defer_if_permit: 450 unless rejected later */
	SMTP_POLICY_TEMPFAIL_DEFER,           /* defer: 450 now */
	SMTP_POLICY_TEMPFAIL_ACTION_MAX
};

/* Reply codes and texts, each as postconf(5) names it (Debian 3.7 defaults in comments).
 * The evaluator helper may add fields here (e.g. other *_reject_code parameters it needs);
 * the config fills them from the Postfix parameter of the same name. */
struct smtp_policy_codes {
	unsigned reject_code;                         /* 554 */
	unsigned defer_code;                          /* 450 */
	unsigned access_map_reject_code;              /* 554 */
	unsigned access_map_defer_code;               /* 450 */
	unsigned invalid_hostname_reject_code;        /* 501 */
	unsigned non_fqdn_reject_code;                /* 504 */
	unsigned relay_domains_reject_code;           /* 554 */
	unsigned maps_rbl_reject_code;                /* 554 */
	unsigned unknown_relay_recipient_reject_code; /* 550 */
	unsigned unknown_local_recipient_reject_code; /* 550 */
	unsigned multi_recipient_bounce_reject_code;  /* 550 */
	unsigned plaintext_reject_code;               /* 450: reject_plaintext_session */
	const char *default_rbl_reply;                /* postconf -d default_rbl_reply */
	unsigned unknown_client_reject_code;          /* 450: reject_unknown_client_hostname,
							 reject_unknown_reverse_client_hostname
							 (a temporary failure answers 450) */
	unsigned unknown_hostname_reject_code;        /* 450: reject_unknown_helo_hostname */
	unsigned unknown_address_reject_code;         /* 450: reject_unknown_{sender,recipient}_
							 domain */
	/* unknown_helo_hostname_tempfail_action, unknown_address_tempfail_action (default
	 * $reject_tempfail_action = defer_if_permit): what a DNS temporary failure does */
	enum smtp_policy_tempfail_action unknown_helo_hostname_tempfail_action;
	enum smtp_policy_tempfail_action unknown_address_tempfail_action;
};

/* Fill *c with Postfix's defaults. */
void smtp_policy_codes_defaults(struct smtp_policy_codes *c);

/* "defer_if_permit", "defer" (the parameter's values); smtp_policy_tempfail_action_parse()
 * returns 0 or -EINVAL. */
const char *smtp_policy_tempfail_action_name(enum smtp_policy_tempfail_action a);
int smtp_policy_tempfail_action_parse(const char *s, enum smtp_policy_tempfail_action *out);

/* One check_policy_service endpoint with its limits (Postfix 3.7's policy_client_register()):
 * the smtpd_policy_service_* parameters, overridden per item by the 3.0+ form
 * "{ inet:host:port, timeout=10s, default_action=DUNNO, ... }". The service thread that
 * talks to it uses the limits; the evaluator uses default_action (a failed query) and
 * policy_context (sent in every request). Strings are owned by the policy. */
struct smtp_policy_service {
	const char *name;           /* the argument as written, braces included: Postfix keys
				       its policy clients by it (two spellings, two clients) */
	const char *endpoint;       /* "inet:host:port", "unix:/path" or "unix:private/x" (a
				       relative path is relative to Postfix's queue_directory,
				       which mxgate does not have: the service thread decides) */
	unsigned timeout;           /* seconds: smtpd_policy_service_timeout (100s) */
	unsigned max_idle;          /* smtpd_policy_service_max_idle (300s) */
	unsigned max_ttl;           /* smtpd_policy_service_max_ttl (1000s) */
	unsigned retry_delay;       /* smtpd_policy_service_retry_delay (1s) */
	unsigned try_limit;         /* smtpd_policy_service_try_limit (2) */
	unsigned request_limit;     /* smtpd_policy_service_request_limit (0: none) */
	const char *default_action; /* smtpd_policy_service_default_action ("451 4.3.5 Server
				       configuration problem"): the access(5) action of a
				       failed query */
	const char *policy_context; /* smtpd_policy_service_policy_context ("") */
	unsigned index;             /* its place in the policy: 0 .. count - 1 */
};

/* Postfix's defaults (name and endpoint NULL). */
void smtp_policy_service_defaults(struct smtp_policy_service *s);

/* check_greylist: greylisting with postgrey's semantics (tables/greylist.h), asked of the
 * caller's greylist lookup (the greylist service) after the static allowlists. */
struct smtp_greylist_config {
	const char *map;            /* mxgate_greylist_map: the state store's spec */
	struct greylist_params params;
	unsigned ipv4_prefix;       /* mxgate_greylist_ipv4_prefix_length (24; 32: by host) */
	unsigned ipv6_prefix;       /* mxgate_greylist_ipv6_prefix_length (64; 128) */
	const char *action;         /* mxgate_greylist_action (DEFER_IF_PERMIT) */
	const char *text;           /* mxgate_greylist_text (postgrey's) */
	const char *header;         /* mxgate_greylist_header ("" for none) */
	const char *default_action; /* mxgate_greylist_default_action: when the service
				       cannot answer (451 4.3.5 Server configuration problem) */
	/* mxgate_greylist_client_allowlist and _recipient_allowlist, loaded; NULL for none.
	 * Taken over by smtp_policy_compile() (freed with the policy, or when it fails). */
	struct greylist_allowlist *allowlist;
};

/* postgrey's defaults (map NULL: check_greylist then always fails to its default
 * action). */
void smtp_greylist_config_defaults(struct smtp_greylist_config *g);

/* Everything a policy is compiled from. Strings are borrowed during compile only. */
/* A client certificate as the TLS layer saw it: fingerprints in Postfix's form
 * ("AB:CD:...", smtpd_tls_fingerprint_digest) of the certificate and of its public key. */
struct smtp_policy_ccert {
	bool trusted;
	const char *fingerprint;
	const char *pkey_fingerprint;
};

struct smtp_policy_config {
	/* The lists as main.cf gives them, after $-expansion; NULL or "" for an empty list. */
	const char *lists[SMTP_LIST_MAX];
	/* smtpd_restriction_classes, and the value of each class parameter it names
	 * (expanded; NULL when the parameter is not defined: a compile error). */
	const char *restriction_classes;
	const char *(*class_value)(void *ctx, const char *name);
	void *class_ctx;

	bool delay_reject;              /* smtpd_delay_reject (yes) */
	bool soft_bounce;               /* soft_bounce (no) */
	bool reject_unlisted_recipient; /* smtpd_reject_unlisted_recipient (yes) */
	bool reject_unlisted_sender;    /* smtpd_reject_unlisted_sender (no) */
	struct smtp_policy_codes codes;

	/* Borrowed for the policy's whole life (not copied): keep them until
	 * smtp_policy_free(). */
	const struct netlist *mynetworks;
	const struct domain_list *mydestination;
	const struct domain_list *relay_domains;
	const char *myorigin;     /* the domain of an unqualified address ("postmaster") */
	/* Table specs, separated by commas and/or white space, "" for none. mxgate has no
	 * local users: an empty local_recipient_maps (mxgate's default, unlike Postfix's
	 * passwd-based one) means local recipients are not checked. An empty
	 * relay_recipient_maps means every relay_domains recipient is valid (as Postfix). */
	const char *relay_recipient_maps;
	const char *local_recipient_maps;
	/* relay_clientcerts: tables of client certificate and public key fingerprints that
	 * permit_tls_clientcerts permits, "" or NULL for none. */
	const char *relay_clientcerts;
	/* rbl_reply_maps: tables of reply templates keyed by the blocklist as written after
	 * the restriction ("zen.example=127.0.0.[2..11]"), "" or NULL for none. */
	const char *rbl_reply_maps;
	/* smtpd_sender_login_maps: who owns a MAIL FROM address (the reject_*_sender_login_
	 * mismatch restrictions); "" or NULL for none. */
	const char *sender_login_maps;
	/* smtpd_sasl_auth_enable: without it the SASL restrictions never match, and say so
	 * ("restriction ... ignored: no SASL support"), as Postfix's. */
	bool sasl_enabled;
	/* myhostname: $server_name in reply templates (NULL: "unknown"). Copied. */
	const char *myhostname;
	/* The smtpd_policy_service_* parameters (smtp_policy_service_defaults() when not
	 * set; name and endpoint ignored). Copied. */
	struct smtp_policy_service policy_service;
	/* check_greylist's parameters (zeroed: smtp_greylist_config_defaults()). Copied. */
	struct smtp_greylist_config greylist;
	/* recipient_delimiter, parent_domain_matches_subdomains (smtpd_access_maps),
	 * smtpd_null_access_lookup_key. Copied. */
	struct table_access_opts access;

	/* Optional: each compile error (one line, as err would hold it) is passed here and
	 * compiling goes on past the bad restriction, so a check reports every problem at
	 * once; compilation still fails with the first one in err. NULL: stop at the first. */
	void (*diag)(void *ctx, const char *line);
	void *diag_ctx;
};

#define SMTP_POLICY_TEXT_MAX 512

struct smtp_policy;
struct smtp_policy_ctx;

/* Compile. Returns 0 and *out, or a negative errno with ONE line in err naming the
 * parameter and the restriction, e.g.
 *   smtpd_recipient_restrictions: unknown restriction: "rejct_unauth_destination"
 *   smtpd_recipient_restrictions: permit_mx_backup is not supported: it needs the
 *     gateway's own addresses ...
 *   smtpd_sender_restrictions: check_sender_access needs a table argument
 *   smtpd_client_restrictions: check_policy_service { inet:127.0.0.1:9998, bogus=1 }:
 *     unknown option: "bogus = 1"
 *   smtpd_restriction_classes: class "foo" has no definition
 * (-EINVAL for what is wrong, -ENOTSUP for what mxgate does not do yet.) Table specs are
 * checked for syntax here (table_spec_parse); whether a table is built is only known at
 * lookup time (a missing table answers 451 4.3.5, never "not found"). */
int smtp_policy_compile(const struct smtp_policy_config *cfg, struct smtp_policy **out,
			char *err, size_t errlen);
void smtp_policy_free(struct smtp_policy *p);

/* Every table spec and RBL zone the policy refers to, once each (for `mxgate --check`
 * warnings about tables that are not built). fn returns non-zero to stop. */
void smtp_policy_foreach_table(const struct smtp_policy *p,
			       int (*fn)(void *ctx, const char *spec, bool is_zone), void *ctx);

/* Every restriction in the lists and classes that needs DNS lookups other than an RBL
 * zone (whose local data may make DNS unnecessary: see smtp_policy_foreach_table()):
 * reject_unknown_*, check_*_{mx,ns,a}_access. param is the list or class that holds it.
 * fn returns non-zero to stop. */
void smtp_policy_foreach_dns(const struct smtp_policy *p,
			     int (*fn)(void *ctx, const char *param, const char *restriction),
			     void *ctx);

/* The policy services the lists, classes and policy server replies may use, each once
 * (by name as written), in order of appearance. */
size_t smtp_policy_service_count(const struct smtp_policy *p);
const struct smtp_policy_service *smtp_policy_service_get(const struct smtp_policy *p,
							  size_t i);

/* The per-thread context: opens every table and zone handle on rd (a tables_reader of the
 * calling thread; the caller renews rd between batches). rd may be NULL when the policy
 * names no table (static: and inline: need none); zones are then asked in DNS only.
 * Returns 0 or a negative errno. */
int smtp_policy_ctx_new(const struct smtp_policy *p, struct tables_reader *rd,
			struct smtp_policy_ctx **out);
void smtp_policy_ctx_free(struct smtp_policy_ctx *ctx);

/* Counters of a context (its thread's checks), for tests and statistics. */
struct smtp_policy_stats {
	uint64_t checks;          /* smtp_policy_check() calls that returned 0 */
	uint64_t pending;         /* of them, SMTP_POLICY_PENDING */
	uint64_t dns_asked;       /* DNS answers asked of the callback (memo hits included) */
	uint64_t policy_asked;    /* policy server answers asked of the callback */
	uint64_t greylist_asked;  /* greylist answers asked of the callback */
	uint64_t replays;         /* checks that replayed a PENDING one */
	uint64_t replay_diverged; /* replays that did not ask again the question their
				     PENDING run stopped at, at the same place: the tables
				     changed in between (a renewed reader), or the caller
				     changed the request (a bug). Tests assert 0. */
	uint64_t events_dropped;  /* events and trace lines over the buffer of one check */
};
void smtp_policy_ctx_stats(const struct smtp_policy_ctx *ctx, struct smtp_policy_stats *out);

/* For `mxgate explain`, from inside a lookups callback: how many events and trace lines
 * the running check has kept so far (with lookups they wait, in order, until it completes;
 * events need cb->event and trace lines cb->trace to be kept). The question being asked
 * belongs to the restriction whose trace line is the first delivered at or after this
 * position: a restriction's line is kept after its questions were answered. */
size_t smtp_policy_ctx_kept(const struct smtp_policy_ctx *ctx);

/* What must survive from one check to the next in a session when smtpd_delay_reject = no:
 * Postfix remembers that a defer_if_permit fired in the client, helo or sender list
 * (smtpd_check.c keeps defer_if_permit_{client,helo,sender}) and turns the next RCPT's
 * permit into that 450. Zero it at connect; keep it for the session. (With delay_reject
 * the lists are evaluated again at every RCPT and this state is not needed.) */
struct smtp_policy_session {
	bool dip_client, dip_helo, dip_sender;
	bool dip_active;
	uint16_t dip_code;
	char dip_dsn[16];
	char dip_reason[SMTP_POLICY_TEXT_MAX];
	/* The evaluator's own bookkeeping of a check that returned SMTP_POLICY_PENDING: where
	 * it stopped and what it asked, so that its replay is checked to ask the same at the
	 * same place (smtp_policy_stats.replay_diverged). Cleared when the check completes. */
	struct smtp_policy_pending {
		bool active;
		uint8_t stage, list, depth;
		uint16_t path[8]; /* item index at each nesting level (list, class, value) */
		uint32_t seq;     /* it was the seq-th question of its run */
		uint32_t key;     /* a hash of the question */
	} pending;
};

/* How the connection's lookup of the client's name came out: Postfix's name_status and
 * reverse_name_status (smtpd_peer.c). The connection looks up the PTR name of the address
 * and then the name's addresses (forward confirmation) through the resolver at connect;
 * the evaluator only reads the outcome. */
enum smtp_policy_name_status {
	SMTP_POLICY_NAME_DEFAULT, /* not given: OK when the name is known, else PERM */
	SMTP_POLICY_NAME_OK,      /* found (client_name: and it resolves back to the address) */
	SMTP_POLICY_NAME_TEMP,    /* a lookup failed temporarily */
	SMTP_POLICY_NAME_PERM,    /* no name (no PTR record, or lookups are off) */
	SMTP_POLICY_NAME_FORGED,  /* client_name only: the PTR name does not resolve back to
				     the client address (the name is then "unknown") */
	SMTP_POLICY_NAME_STATUS_MAX
};

const char *smtp_policy_name_status_name(enum smtp_policy_name_status s); /* "ok"... */

/* What is known about the session when the caller asks. Strings are NUL-terminated and
 * borrowed for the call. */
struct smtp_policy_request {
	enum smtp_policy_stage stage;
	const char *client_addr;    /* numeric, IPv4-mapped IPv6 already shown as IPv4 */
	const char *client_name;    /* verified name, or "unknown" */
	const char *reverse_name;   /* reverse name, or "unknown" */
	const char *helo;           /* NULL before HELO/EHLO */
	const char *sender;         /* NULL before MAIL; "" for the null sender */
	const char *recipient;      /* RCPT: the address (no <>); NULL at other stages */
	const char *protocol;       /* "SMTP", "ESMTP" (for log lines) */
	unsigned recipient_count;   /* recipients accepted so far in this transaction */
	/* reject_unauth_pipelining: the client sent this command (DATA, or any command at
	 * the data stage) ahead of our reply without having been told PIPELINING works. */
	bool unauth_pipelining;
	/* reject_plaintext_session: the session runs over TLS (after STARTTLS, or implicit) */
	bool tls;
	/* The client's certificate over TLS (smtpd_tls_ask_ccert); NULL: none presented or
	 * none asked for. permit_tls_all_clientcerts needs it trusted (verified against
	 * smtpd_tls_CAfile); permit_tls_clientcerts (relay_clientcerts) and
	 * check_ccert_access look its fingerprints up whether trusted or not, as Postfix
	 * 3.7 does. */
	const struct smtp_policy_ccert *ccert;
	int64_t now;                /* wall-clock seconds ($TIMESTAMP in zones) */
	struct smtp_policy_session *session; /* may be NULL (see struct smtp_policy_session) */
	/* reject_unknown_client_hostname, reject_unknown_reverse_client_hostname */
	enum smtp_policy_name_status client_name_status;
	enum smtp_policy_name_status reverse_name_status;
	/* For check_policy_service (Postfix's policy attributes) and reply templates. */
	const char *server_addr;    /* the address the client connected to; NULL: unknown */
	uint16_t server_port;       /* 0: unknown */
	uint16_t client_port;       /* 0: unknown */
	const char *queue_id;       /* NULL: none yet */
	const char *instance;       /* a per-transaction identifier; NULL: none */
	uint64_t size;              /* MAIL SIZE= (or the message size at END-OF-MESSAGE) */
	/* SMTP AUTH: the login name and mechanism once authenticated, NULL before (and
	 * without AUTH); MAIL's AUTH= (sasl_sender), NULL when absent or "<>". */
	const char *sasl_username, *sasl_method, *sasl_sender;
	/* Optional: the other policy attributes (TLS, SASL, client certificate, stress,
	 * Postfix 3.8's compatibility_level/mail_version). The evaluator sets protocol_state,
	 * protocol_name, client_*, reverse_client_name, server_*, helo_name, sender,
	 * recipient, recipient_count, queue_id, instance, size and policy_context itself. */
	const struct smtp_delegation_request *policy_attrs;
};

/* Envelope actions collected from access(5) values in one transaction. The caller zeroes
 * it at MAIL (and at RSET / end of message) and applies it when the message is spooled:
 * hold -> the envelope's hold line, filter -> its filter line, redirect -> every recipient
 * replaced by this one, bcc -> one more recipient (NOTIFY=NEVER), prepend -> headers
 * added at the top of the message, discard -> 250 to the client but nothing spooled.
 * Postfix's rules for which one wins (last FILTER, last REDIRECT, ...) and for undoing an
 * action when the same request is rejected are applied by the evaluator. */
#define SMTP_POLICY_PREPEND_MAX 8
struct smtp_policy_actions {
	bool hold;
	char hold_reason[SMTP_POLICY_TEXT_MAX];
	bool discard;
	char discard_reason[SMTP_POLICY_TEXT_MAX];
	char filter[SMTP_POLICY_TEXT_MAX];   /* "" none, else "transport:nexthop" */
	char redirect[SMTP_POLICY_TEXT_MAX]; /* "" none */
	char bcc[SMTP_POLICY_TEXT_MAX];      /* "" none */
	unsigned nprepend;
	char prepend[SMTP_POLICY_PREPEND_MAX][SMTP_POLICY_TEXT_MAX]; /* "Name: value" */
};

/* Make a as a zeroed struct reads (no action, every text empty) without writing its 6.6 KB:
 * for a caller that reuses one for the next transaction. */
void smtp_policy_actions_reset(struct smtp_policy_actions *a);

/* Something Postfix would log. kind is Postfix's word in "NOQUEUE: <kind>: RCPT from
 * ...": "reject_warning" (warn_if_reject), "warn", "info", "hold", "discard", "filter",
 * "redirect", "bcc", "prepend", "hangup"; text is what follows the colon ("554 5.7.1
 * <a@b>: Recipient address rejected: Access denied", or "<a@b>: Sender address triggers
 * HOLD action"). The caller adds "; from=<> to=<> proto=ESMTP helo=<>".
 * kind "warning" is one of Postfix's msg_warn() lines instead (log it as "warning: TEXT"):
 * a DNS blocklist that could not be asked ("2.0.0.127.zen.example: RBL lookup error:
 * ..."), a blocklist error code such as Spamhaus's 127.255.255.254 (its text starts with
 * "RBL error code:" so a caller can rate-limit those), an MX/NS lookup that failed, a
 * reply template or access value that is broken, and the like. */
typedef void smtp_policy_event_fn(void *ctx, const char *kind, const char *text);

/* For `mxgate explain`: every restriction evaluated, in order, with its outcome
 * ("DUNNO", "no match", "PERMIT", "REJECT", "DEFER", "lookup error", "reject_warning"...)
 * and the detail that decided (the table key and value that matched, the zone answer). */
typedef void smtp_policy_trace_fn(void *ctx, enum smtp_restriction_list list,
				  const char *restriction, const char *outcome,
				  const char *detail);

enum smtp_policy_decision {
	SMTP_POLICY_ACCEPT,  /* no list refused (lists ended or permitted) */
	SMTP_POLICY_REJECT,  /* a 5xx (a 4xx when soft_bounce turned it) */
	SMTP_POLICY_DEFER,   /* a 4xx */
	SMTP_POLICY_PENDING, /* waiting for an answer the lookups callback asked for: call
				again with the same request when it is there */
	SMTP_POLICY_DECISION_MAX
};

const char *smtp_policy_decision_name(enum smtp_policy_decision d); /* "accept"... */

struct smtp_policy_result {
	enum smtp_policy_decision decision;
	uint16_t code;                   /* 0 when accepted */
	char text[SMTP_POLICY_TEXT_MAX]; /* "5.7.1 <a@b>: Recipient address rejected: Access
					    denied": the reply without its code */
	bool disconnect;                 /* 421/521 from an access table: close after it */
	bool hangup;                     /* HANGUP from an access table or policy server
					    (Postfix's test feature): close the connection
					    WITHOUT any reply (code, text and disconnect are
					    421 for a caller that does not know this) */
	/* Which list and restriction decided (SMTP_LIST_MAX and "" when accepted). */
	enum smtp_restriction_list list;
	char restriction[SMTP_POLICY_TEXT_MAX];
	/* The smtpd_restriction_classes class the refusing restriction is in (the innermost
	 * when classes nest; its name as smtpd_restriction_classes writes it), or NULL when
	 * the list's own item refused. Valid as long as the policy is. */
	const char *class_name;
};

/* Answers one check may wait for, the bound of a caller's memo (the gateway's connection
 * and `mxgate explain` keep the same): Postfix restriction lists with more lookups than
 * this in one stage are not seen in practice; past it, a lookup is a temporary failure. */
#define SMTP_POLICY_LOOKUPS_MAX 48

/* The answers a check may wait for (see the file comment). The caller keeps, per check
 * that returned PENDING, every answer it has given or asked for (its memo), and gives each
 * again when asked again, until the check completes; then it forgets them. */
struct smtp_policy_lookups {
	/* A DNS question. name is lower case, no trailing dot, valid for dns_query_init();
	 * type A, AAAA, MX, NS or TXT. Returns 1 with *out when the answer is at hand
	 * (borrowed until smtp_policy_check() returns: OK, NODATA, NXDOMAIN or TEMPFAIL, the
	 * last for a timeout too); 0 when it has been asked for now (the check returns
	 * PENDING); <0 when there is no resolver or it cannot be asked: a temporary DNS
	 * failure. NULL: every question is a temporary failure. */
	int (*dns)(void *ctx, enum dns_type type, const char *name,
		   const struct dns_result **out);
	/* A policy server query: request (len bytes, the encoded attributes and the empty
	 * line, smtp_delegation_request_encode()) to svc. Returns 1 with *action (the reply's
	 * action as sent, NUL-terminated, borrowed until smtp_policy_check() returns); 0 when
	 * it has been sent now (PENDING); <0 when the query failed (no connection after
	 * try_limit tries, a timeout, a malformed reply, a reply without action, an action
	 * that is not UTF-8 with smtputf8_enable: smtp_delegation_reader_feed()'s errors):
	 * svc->default_action applies, as in Postfix. NULL: every query fails. */
	int (*policy)(void *ctx, const struct smtp_policy_service *svc, const char *request,
		      size_t len, const char **action);
	void *ctx;
	/* A check_greylist query: request (len bytes, greylist_request_encode()) to the
	 * greylist service. Returns as policy does: 1 with *action (what postgrey would
	 * answer), 0 when asked now (PENDING), <0 when it failed (the greylist's
	 * default_action applies). NULL: every query fails. (After ctx: callers that
	 * initialise the first three by position stay valid.) */
	int (*greylist)(void *ctx, const char *request, size_t len, const char **action);
};

struct smtp_policy_callbacks {
	smtp_policy_event_fn *event; /* may be NULL */
	smtp_policy_trace_fn *trace; /* may be NULL */
	void *ctx;
	/* NULL: nothing is ever pending (DNS questions are temporary failures, policy
	 * queries fail), and events and trace lines are delivered as they happen. */
	const struct smtp_policy_lookups *lookups;
};

/* Evaluate the lists the stage calls for (see enum smtp_policy_stage) against req.
 * Envelope actions go into *actions (may be NULL outside a transaction). Returns 0 with
 * *res filled (a table lookup error is a DEFER 451 "4.3.5 Server configuration error",
 * not an errno; SMTP_POLICY_PENDING: call again with the same request once the answer
 * asked for is there), or -EINVAL for a request that makes no sense (RCPT without
 * recipient). */
int smtp_policy_check(struct smtp_policy_ctx *ctx, const struct smtp_policy_request *req,
		      struct smtp_policy_actions *actions, const struct smtp_policy_callbacks *cb,
		      struct smtp_policy_result *res);

#endif
