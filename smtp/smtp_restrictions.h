/* Postfix's smtpd restriction lists (SMTPD_ACCESS_README, postconf(5), access(5)):
 * smtpd_{client,helo,sender,relay,recipient,data,end_of_data}_restrictions with
 * smtpd_delay_reject, restriction classes, warn_if_reject, soft_bounce, the check_*_access
 * family with every access(5) action, local RBL/RHSBL zones (tables/rbl_zone.h), and the
 * reply codes and texts Postfix sends. ../shared/reference/postfix-semantics.md lists the
 * rules; Debian's Postfix 3.7 is the oracle where it is silent.
 *
 * Two objects:
 *   struct smtp_policy      compiled once from the configuration (mgmt, at load and at
 *                           `mxgate --check`), immutable, shared by every worker. Compiling
 *                           refuses what mxgate cannot do honestly: unknown restrictions,
 *                           and restrictions that need DNS (reject_unknown_*, remote DNSBL
 *                           queries against zones with no local data are NOT refused at
 *                           compile time: a zone is local data, see below), with a message
 *                           naming the resolver as future work. Nothing pretends.
 *   struct smtp_policy_ctx  one per worker thread: the table and zone handles opened on that
 *                           thread's tables_reader (LMDB), plus scratch space. Evaluation
 *                           allocates nothing.
 *
 * Evaluation is sans-I/O like the engine: no logging, no clock reads (`now` is passed in),
 * no sockets. What Postfix would log (warn_if_reject's reject_warning, WARN, INFO, HOLD,
 * DISCARD, FILTER, REDIRECT, BCC, PREPEND) goes to the caller's event callback, which logs
 * it in Postfix's words. Envelope actions accumulate in a struct smtp_policy_actions the
 * caller keeps per transaction (MAIL to end of message) and applies to the spooled
 * envelope. */
#ifndef MXGATE_SMTP_SMTP_RESTRICTIONS_H
#define MXGATE_SMTP_SMTP_RESTRICTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tables/domain_list.h"
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
	unsigned plaintext_reject_code;               /* 450 (unused until TLS) */
	const char *default_rbl_reply;                /* postconf -d default_rbl_reply */
};

/* Fill *c with Postfix's defaults. */
void smtp_policy_codes_defaults(struct smtp_policy_codes *c);

/* Everything a policy is compiled from. Strings are borrowed during compile only. */
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
 *   smtpd_client_restrictions: reject_unknown_client_hostname needs DNS lookups; mxgate
 *     has no DNS resolver yet (future work)
 *   smtpd_sender_restrictions: check_sender_access needs a table argument
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

/* The per-thread context: opens every table and zone handle on rd (a tables_reader of the
 * calling thread; the caller renews rd between batches). Returns 0 or a negative errno. */
int smtp_policy_ctx_new(const struct smtp_policy *p, struct tables_reader *rd,
			struct smtp_policy_ctx **out);
void smtp_policy_ctx_free(struct smtp_policy_ctx *ctx);

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
};

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
	int64_t now;                /* wall-clock seconds ($TIMESTAMP in zones) */
	struct smtp_policy_session *session; /* may be NULL (see struct smtp_policy_session) */
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

/* Something Postfix would log. kind is Postfix's word in "NOQUEUE: <kind>: RCPT from
 * ...": "reject_warning" (warn_if_reject), "warn", "info", "hold", "discard", "filter",
 * "redirect", "bcc", "prepend"; text is what follows the colon ("554 5.7.1 <a@b>:
 * Recipient address rejected: Access denied", or "<a@b>: Sender address triggers HOLD
 * action"). The caller adds "; from=<> to=<> proto=ESMTP helo=<>". */
typedef void smtp_policy_event_fn(void *ctx, const char *kind, const char *text);

/* For `mxgate explain`: every restriction evaluated, in order, with its outcome
 * ("DUNNO", "no match", "PERMIT", "REJECT", "DEFER", "lookup error", "reject_warning"...)
 * and the detail that decided (the table key and value that matched, the zone answer). */
typedef void smtp_policy_trace_fn(void *ctx, enum smtp_restriction_list list,
				  const char *restriction, const char *outcome,
				  const char *detail);

enum smtp_policy_decision {
	SMTP_POLICY_ACCEPT, /* no list refused (lists ended or permitted) */
	SMTP_POLICY_REJECT, /* a 5xx (a 4xx when soft_bounce turned it) */
	SMTP_POLICY_DEFER,  /* a 4xx */
	SMTP_POLICY_DECISION_MAX
};

struct smtp_policy_result {
	enum smtp_policy_decision decision;
	uint16_t code;                   /* 0 when accepted */
	char text[SMTP_POLICY_TEXT_MAX]; /* "5.7.1 <a@b>: Recipient address rejected: Access
					    denied": the reply without its code */
	bool disconnect;                 /* 421/521 from an access table: close after it */
	/* Which list and restriction decided (SMTP_LIST_MAX and "" when accepted). */
	enum smtp_restriction_list list;
	char restriction[SMTP_POLICY_TEXT_MAX];
};

struct smtp_policy_callbacks {
	smtp_policy_event_fn *event; /* may be NULL */
	smtp_policy_trace_fn *trace; /* may be NULL */
	void *ctx;
};

/* Evaluate the lists the stage calls for (see enum smtp_policy_stage) against req.
 * Envelope actions go into *actions (may be NULL outside a transaction). Returns 0 with
 * *res filled (a table lookup error is a DEFER 451 "4.3.5 Server configuration error",
 * not an errno), or -EINVAL for a request that makes no sense (RCPT without recipient). */
int smtp_policy_check(struct smtp_policy_ctx *ctx, const struct smtp_policy_request *req,
		      struct smtp_policy_actions *actions, const struct smtp_policy_callbacks *cb,
		      struct smtp_policy_result *res);

#endif
