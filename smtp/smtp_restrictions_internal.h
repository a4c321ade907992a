/* The restriction evaluator's private state, shared by its files; nothing outside smtp/
 * includes this. smtp_restrictions.c holds the public API around the compiled policy and
 * the per-thread context, the refusal every check shares (Postfix's smtpd_check_reject())
 * and the buffering of what a run delivers; smtp_restrictions_compile.c parses main.cf's
 * lists; smtp_restrictions_eval.c evaluates them (the stage drivers, the replay of a
 * PENDING check); smtp_restrictions_access.c holds the access(5) checks and
 * check_table_result(); smtp_restrictions_rbl.c the DNSBL/DNSWL checks (local zones, then
 * DNS) and their reply templates; smtp_restrictions_dns.c the questions asked of the
 * caller, reject_unknown_* and check_*_{mx,ns,a}_access; smtp_restrictions_policy.c
 * check_policy_service; smtp_restrictions_greylist.c check_greylist. */
#ifndef MXGATE_SMTP_RESTRICTIONS_INTERNAL_H
#define MXGATE_SMTP_RESTRICTIONS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
#include "mxgate/span.h"
#include "smtp/smtp_restrictions.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- restrictions mxgate knows ---- */

enum smtp_restriction_id {
	R_PERMIT,
	R_REJECT,
	R_DEFER,
	R_DEFER_IF_PERMIT,
	R_DEFER_IF_REJECT,
	R_WARN_IF_REJECT,
	R_PERMIT_MYNETWORKS,
	R_PERMIT_SASL_AUTH,
	R_REJECT_UNAUTH_DEST,
	R_DEFER_UNAUTH_DEST,
	R_PERMIT_AUTH_DEST,
	R_REJECT_UNAUTH_PIPELINING,
	R_REJECT_PLAINTEXT_SESSION,
	R_PERMIT_TLS_CLIENTCERTS,
	R_PERMIT_TLS_ALL_CLIENTCERTS,
	R_CHECK_CCERT_ACCESS,
	R_REJECT_INVALID_HELO,
	R_REJECT_NON_FQDN_HELO,
	R_REJECT_NON_FQDN_SENDER,
	R_REJECT_NON_FQDN_RCPT,
	R_REJECT_UNLISTED_RCPT,
	R_REJECT_UNLISTED_SENDER,
	R_REJECT_MULTI_RCPT_BOUNCE,
	R_CHECK_CLIENT_ACCESS,
	R_CHECK_REVERSE_CLIENT_ACCESS,
	R_CHECK_HELO_ACCESS,
	R_CHECK_SENDER_ACCESS,
	R_CHECK_RECIPIENT_ACCESS,
	R_REJECT_RBL_CLIENT,
	R_REJECT_RHSBL_CLIENT,
	R_REJECT_RHSBL_REVERSE_CLIENT,
	R_REJECT_RHSBL_HELO,
	R_REJECT_RHSBL_SENDER,
	R_REJECT_RHSBL_RECIPIENT,
	R_PERMIT_DNSWL_CLIENT,
	R_PERMIT_RHSWL_CLIENT,
	R_REJECT_UNKNOWN_CLIENT,
	R_REJECT_UNKNOWN_REVERSE_CLIENT,
	R_REJECT_UNKNOWN_HELO,
	R_REJECT_UNKNOWN_SENDER_DOMAIN,
	R_REJECT_UNKNOWN_RCPT_DOMAIN,
	/* check_{client,reverse_client,helo,sender,recipient}_{mx,ns,a}_access: keep this
	 * order (smtp_restrictions_dns.c computes the subject and the type from it) */
	R_CHECK_CLIENT_MX_ACCESS,
	R_CHECK_CLIENT_NS_ACCESS,
	R_CHECK_CLIENT_A_ACCESS,
	R_CHECK_REVERSE_CLIENT_MX_ACCESS,
	R_CHECK_REVERSE_CLIENT_NS_ACCESS,
	R_CHECK_REVERSE_CLIENT_A_ACCESS,
	R_CHECK_HELO_MX_ACCESS,
	R_CHECK_HELO_NS_ACCESS,
	R_CHECK_HELO_A_ACCESS,
	R_CHECK_SENDER_MX_ACCESS,
	R_CHECK_SENDER_NS_ACCESS,
	R_CHECK_SENDER_A_ACCESS,
	R_CHECK_RECIPIENT_MX_ACCESS,
	R_CHECK_RECIPIENT_NS_ACCESS,
	R_CHECK_RECIPIENT_A_ACCESS,
	R_CHECK_POLICY_SERVICE,
	/* SASL (smtpd_check.c): the login name and smtpd_sender_login_maps */
	R_CHECK_SASL_ACCESS,
	R_REJECT_SENDER_LOGIN_MISMATCH,
	R_REJECT_AUTH_SENDER_LOGIN_MISMATCH,
	R_REJECT_KNOWN_SENDER_LOGIN_MISMATCH,
	R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH,
	R_CHECK_GREYLIST,
	R_IMPLICIT_ACCESS, /* a bare "type:name": the list's own check_*_access */
	R_CLASS,           /* a restriction class */
	R_MAX
};

/* The restriction's name as main.cf spells it (the first of its aliases), "?" for
 * R_IMPLICIT_ACCESS and R_CLASS. */
const char *smtp_restriction_id_name(enum smtp_restriction_id id);

/* ---- the compiled policy and the per-thread context ---- */

struct pitem {
	uint16_t id;  /* enum smtp_restriction_id */
	uint32_t arg; /* table, rbl or class index */
};

struct plist {
	struct pitem *items;
	size_t n;
};

/* reject_rbl_client ZONE=FILTER: the filter is one 256-bit set per octet (ip_match(3):
 * a number, or [a;b;n..m]). */
struct prbl {
	char *spec;   /* as written, "zen.example=127.0.0.[2..11]" */
	char *domain; /* "zen.example", lower case: the zone */
	char *shown;  /* the domain as written ($rbl_domain) */
	uint32_t zone;
	bool has_filter;
	uint8_t filter[4][32];
};

/* Parse an ip_match(3) reply filter ("127.0.0.[2..11]"), one 256-bit set per octet
 * (zeroed by the caller); also postscreen_dnsbl_sites' (smtp_screen_dnsbl.c). */
bool smtp_policy_rbl_filter_parse(const char *f, uint8_t filter[4][32]);

#define RCPT_MAPS_MAX 16

/* A policy service with the strings it owns. */
struct psvc {
	struct smtp_policy_service s;
	char *name, *endpoint, *default_action, *policy_context;
};

struct smtp_policy {
	struct plist lists[SMTP_LIST_MAX];
	size_t nclasses;
	char **class_names;
	struct plist *classes;
	size_t ntables;
	char **tables;
	size_t nzones;
	char **zones;
	size_t nrbls;
	struct prbl *rbls;
	size_t nrelay_maps, nlocal_maps, nrbl_reply_maps, nlogin_maps, nrelay_ccert_maps;
	uint32_t relay_maps[RCPT_MAPS_MAX], local_maps[RCPT_MAPS_MAX];
	uint32_t login_maps[RCPT_MAPS_MAX]; /* smtpd_sender_login_maps */
	uint32_t relay_ccert_maps[RCPT_MAPS_MAX]; /* relay_clientcerts */
	bool sasl_enabled;                  /* smtpd_sasl_auth_enable */
	uint32_t rbl_reply_maps[RCPT_MAPS_MAX];
	size_t nservices;
	struct psvc *services;
	struct psvc svc_defaults; /* the smtpd_policy_service_* parameters */
	/* check_greylist's parameters, with copies of their strings */
	struct smtp_greylist_config greylist;
	char *gl_map, *gl_action, *gl_text, *gl_header, *gl_default_action;

	bool delay_reject, soft_bounce, reject_unlisted_recipient, reject_unlisted_sender;
	struct smtp_policy_codes codes;
	char *default_rbl_reply;
	const struct netlist *mynetworks;
	const struct domain_list *mydestination, *relay_domains;
	char *myorigin, *myhostname;
	char *recipient_delimiter, *null_key;
	struct table_access_opts access;

	/* while compiling: where each error goes (smtp_policy_config.diag), and how many */
	void (*diag)(void *ctx, const char *line);
	void *diag_ctx;
	unsigned nerrors;
	int first_rc;
	char first_error[SMTP_POLICY_TEXT_MAX];
};

/* Value recursion (access value -> class -> access value ...): Postfix gives up past 100
 * levels with "unreasonable recursion" (451 4.3.5); so do we. Each level that evaluates
 * an access value needs a copy of the value and its parsed items. */
#define EVAL_DEPTH_MAX 100
#define VALUE_ITEMS_MAX 256

/* What a run delivers once it completes: an event or a trace line (the buffer of one
 * check; see smtp_restrictions.h on waiting). */
enum prec_type { PREC_EVENT, PREC_TRACE };

struct prec {
	uint8_t type; /* enum prec_type */
	uint8_t list; /* trace: enum smtp_restriction_list */
	char kind[48]; /* event: its kind; trace: the outcome */
	char name[SMTP_POLICY_TEXT_MAX]; /* trace: the restriction */
	char text[1024];                 /* event: its text; trace: the detail */
};

#define PREC_EVENTS 64    /* records a check buffers without a trace callback */
#define PREC_TRACED 1024  /* ... and with one (mxgate explain) */

struct smtp_policy_ctx {
	const struct smtp_policy *p;
	struct table **tables;
	struct rbl_zone **zones; /* NULL entries: no local data store (DNS only) */
	char (*vbuf)[TABLE_VALUE_MAX + 1];
	struct pitem (*vitems)[VALUE_ITEMS_MAX];
	char (*lookup)[TABLE_VALUE_MAX + 1];
	/* buffered records of the current check */
	struct prec *recs;
	unsigned nrecs, caprecs, dropped;
	/* envelope actions of the current check, committed when it completes */
	struct smtp_policy_actions act;
	/* the encoded policy request (grown to the largest request once) */
	char *reqbuf;
	size_t reqcap;
	struct smtp_policy_stats stats;
};

/* Copy with truncation (snprintf "%s" without the truncation warnings). */
static inline void smtp_policy_scopy(char *d, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (n > cap - 1)
		n = cap - 1;
	memcpy(d, s, n);
	d[n] = '\0';
}

/* ---- evaluation state ---- */

/* ST_PENDING: an answer was asked for; the run stops and the check returns PENDING. */
enum st { ST_DUNNO = 0, ST_OK = 1, ST_REJECT = 2, ST_PENDING = 3 };

/* Postfix's MAIL_ERROR_* classes: software/resource/data errors are never turned into
 * warnings by warn_if_reject. */
enum ecls { EC_POLICY, EC_PROTOCOL, EC_BOUNCE, EC_SOFTWARE, EC_DATA };

struct defer {
	bool active;
	enum ecls cls;
	unsigned code;
	char dsn[16];
	char reason[SMTP_POLICY_TEXT_MAX];
};

/* The state of one evaluation (Postfix's SMTPD_STATE fields that smtpd_check.c uses):
 * smtp_policy_check() sets it up, every check reads the request and leaves its outcome
 * here. What is not here: the position in each list and restriction class
 * (smtp_policy_generic_checks() walks them on the C stack, one frame per level) and the
 * stage driver's defer_if_permit flags of the client, helo and sender lists. */
struct ev {
	struct smtp_policy_ctx *ctx;
	const struct smtp_policy *p;
	const struct smtp_policy_request *req;
	struct smtp_policy_actions *act;
	const struct smtp_policy_callbacks *cb;
	enum smtp_restriction_list list;
	const char *helo, *sender, *recipient;
	char namaddr[600];
	int recursion, warn_if_reject;
	struct defer dip, dir;
	bool discard;
	bool rcpt_checked, sender_checked;
	/* the last refusal, "554 5.7.1 <a@b>: ..." */
	char reply[SMTP_POLICY_TEXT_MAX + 8];
	bool reply_hard; /* it was a 5xx before soft_bounce */
	bool disconnect;
	/* trace of the restriction being evaluated */
	const char *note;
	char detail[SMTP_POLICY_TEXT_MAX];
	bool warned;
	char rname[SMTP_POLICY_TEXT_MAX]; /* decided restriction */
	const char *rclass; /* the innermost restriction class that refused, or NULL */
	bool hangup;     /* HANGUP: close without a reply */
	/* waiting: events, trace and actions are buffered until the run completes */
	bool buffered;
	uint16_t path[8];  /* item index per nesting level (recursion 1 = path[0]) */
	uint32_t seq;      /* questions asked of the caller so far in this run */
	const struct smtp_policy_pending *replay; /* the PENDING run this one replays */
	bool replay_reached;
	struct smtp_policy_pending stop; /* where this run stopped (ST_PENDING) */
	int policy_nesting; /* check_policy_service's default-action recursion guard */
	int greylist_nesting; /* check_greylist's */
};

/* What a list's refusals name, as Postfix's replies do ("Client host rejected: ..."). */
#define NAME_CLIENT "Client host"
#define NAME_CCERT "Client certificate"
#define NAME_REV_CLIENT "Unverified Client host"
#define NAME_HELO "Helo command"
#define NAME_SENDER "Sender address"
#define NAME_RECIPIENT "Recipient address"
#define NAME_DATA "Data command"
#define NAME_EOD "End-of-data"
#define NAME_SASL_USER "SASL login name"

/* ---- smtp_restrictions.c: what every check shares ---- */

void smtp_policy_emit(struct ev *e, const char *kind, const char *text);
/* A Postfix msg_warn(): event "warning". */
void smtp_policy_warn(struct ev *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void smtp_policy_trace(struct ev *e, const char *name, const char *outcome,
		       const char *detail);
/* Deliver (or drop) what the run buffered. */
void smtp_policy_deliver(struct ev *e, bool deliver);
void smtp_policy_printable(char *s);
const char *smtp_policy_dsn_split(char dsn[16], const char *def, const char *text);
const char *smtp_policy_dsn_fix(const char *status, const char *cls);
int smtp_policy_reject(struct ev *e, enum ecls cls, unsigned code, const char *dsn,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int smtp_policy_defer_if(struct defer *d, enum ecls cls, unsigned code, const char *dsn,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int smtp_policy_server_error(struct ev *e, const char *why);
/* Postfix's DEFER_IF_PERMIT2/3: remember a 450 for a later permit, or refuse now when
 * warn_if_reject is on or `defer_now` (a tempfail action "defer"). */
int smtp_policy_defer_if_permit(struct ev *e, bool defer_now, enum ecls cls, unsigned code,
				const char *dsn, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Postfix's forbid_allowlist(): OK from a restriction that must not allowlist. */
int smtp_policy_forbid_allowlist(struct ev *e, const char *restriction, int status,
				 const char *target);

/* ---- smtp_restrictions_compile.c ---- */

bool smtp_policy_token_copy(char *dst, size_t cap, const char *t, size_t n);
int smtp_policy_parse_item(struct smtp_policy *p, const char *param, const char *word,
			   const char **cur, struct pitem *it, bool compile, char *err,
			   size_t errlen);

/* ---- smtp_restrictions_eval.c ---- */

bool smtp_policy_valid_hostname(const char *name, size_t len);
/* valid_hostaddr(): a numeric IPv4 or IPv6 address (no brackets, no "IPv6:"). */
bool smtp_policy_valid_hostaddr(const char *s);
bool smtp_policy_auth_destination(const struct ev *e, const char *rcpt);
/* The domain trivial-rewrite gives an address (after the last '@', else $myorigin, one
 * trailing dot dropped), and whether it is one of mydestination (final delivery). */
struct mx_span smtp_policy_addr_domain(const struct ev *e, const char *addr);
bool smtp_policy_addr_is_local(const struct ev *e, const char *addr);
int smtp_policy_generic_checks(struct ev *e, const struct pitem *items, size_t n,
			       const char *rn, const char *rc, int def_acl);

/* ---- smtp_restrictions_access.c ---- */

/* check_ccert_access, check_sasl_access: the access value for exactly `key` (no parent
 * keys: Postfix's check_access() without partial lookups). */
int smtp_policy_access_key(struct ev *e, uint32_t t, const char *key, const char *rn,
			   const char *cls, int def_acl);
int smtp_policy_access_client(struct ev *e, uint32_t t, const char *name, const char *rn,
			      const char *cls, int def_acl);
int smtp_policy_access_domain(struct ev *e, uint32_t t, const char *dom, const char *rn,
			      const char *cls, int def_acl);
int smtp_policy_access_address(struct ev *e, uint32_t t, const char *addr, const char *rn,
			       const char *cls, int def_acl);
/* check_domain_access() / check_addr_access() of one name or address with Postfix's
 * `found`: a matched key (even DUNNO) ends check_server_access()'s search. */
int smtp_policy_access_found(struct ev *e, uint32_t t, const char *domain, const char *addr,
			     const char *rn, const char *cls, int def_acl, bool *found);
/* Postfix's check_table_result(): what an access(5) value (from a table, or a policy
 * server's reply: table is then the service, datum "policy query") means. */
int smtp_policy_table_result(struct ev *e, const char *table, const char *value,
			     const char *datum, const char *rn, const char *rc, int def_acl);

/* ---- smtp_restrictions_rbl.c ---- */

int smtp_policy_reject_rbl(struct ev *e, uint32_t ri, const char *addr, const char *name,
			   const char *cls);
int smtp_policy_permit_dnswl(struct ev *e, uint32_t ri, const char *addr, const char *name);
int smtp_policy_rhsbl(struct ev *e, uint32_t ri, const char *what, const char *cls,
		      bool permit);
/* default_rbl_reply checked at compile time: 0, or -EINVAL with why. */
int smtp_policy_rbl_template_check(const char *tpl, char *why, size_t whylen);

/* ---- smtp_restrictions_dns.c ---- */

/* Ask the caller a DNS question: 1 with *out (a temporary failure when it has no
 * resolver), or 0: asked now, the run stops (return ST_PENDING). */
int smtp_policy_ask_dns(struct ev *e, enum dns_type type, const char *name,
			const struct dns_result **out);
/* Count one question of this run (key: a hash of it); returns its sequence number and
 * checks a replay against the PENDING run it replays. */
uint32_t smtp_policy_question(struct ev *e, uint32_t key);
/* A question was asked: record where the run stops. */
void smtp_policy_question_pending(struct ev *e, uint32_t seq, uint32_t key);
uint32_t smtp_policy_hash(uint32_t h, const void *data, size_t len);
int smtp_policy_unknown_client(struct ev *e);
int smtp_policy_unknown_reverse_client(struct ev *e);
int smtp_policy_unknown_helo(struct ev *e);
int smtp_policy_unknown_address(struct ev *e, const char *addr, const char *cls);
int smtp_policy_server_access(struct ev *e, int id, uint32_t t, const char *rn,
			      const char *rc, int def_acl);
bool smtp_policy_is_server_access(int id);

/* ---- smtp_restrictions_policy.c ---- */

/* Register the service of a check_policy_service argument (token as written); returns
 * its index, or -EINVAL/-ENOMEM with err. Without `compile` only a known one is found. */
int smtp_policy_service_add(struct smtp_policy *p, const char *param, const char *token,
			    bool compile, char *err, size_t errlen);
void smtp_policy_services_free(struct smtp_policy *p);
int smtp_policy_service_set_defaults(struct smtp_policy *p,
				     const struct smtp_policy_service *d);
int smtp_policy_service_check(struct ev *e, uint32_t si, const char *rn, const char *rc,
			      int def_acl);

/* ---- smtp_restrictions_greylist.c ---- */

/* Copy cfg's greylist parameters into p (taking its allowlist over). 0 or -ENOMEM. */
int smtp_policy_greylist_set(struct smtp_policy *p, const struct smtp_greylist_config *cfg);
void smtp_policy_greylist_free(struct smtp_policy *p);
int smtp_policy_greylist_check(struct ev *e, const char *rn, const char *rc, int def_acl);

#endif
