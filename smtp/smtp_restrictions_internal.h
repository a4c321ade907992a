/* The restriction evaluator's private state, shared by its files; nothing outside smtp/
 * includes this. smtp_restrictions.c holds the public API around the compiled policy and
 * the per-thread context, and the refusal every check shares (Postfix's
 * smtpd_check_reject()); smtp_restrictions_compile.c parses main.cf's lists;
 * smtp_restrictions_eval.c evaluates them; smtp_restrictions_access.c and
 * smtp_restrictions_rbl.c hold the access(5) and DNSBL checks. */
#ifndef MXGATE_SMTP_RESTRICTIONS_INTERNAL_H
#define MXGATE_SMTP_RESTRICTIONS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mxgate/ctype.h"
#include "mxgate/list.h"
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
	char *domain; /* "zen.example" ($rbl_domain) */
	uint32_t zone;
	bool has_filter;
	uint8_t filter[4][32];
};

#define RCPT_MAPS_MAX 16

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
	size_t nrelay_maps, nlocal_maps;
	uint32_t relay_maps[RCPT_MAPS_MAX], local_maps[RCPT_MAPS_MAX];

	bool delay_reject, soft_bounce, reject_unlisted_recipient, reject_unlisted_sender;
	struct smtp_policy_codes codes;
	char *default_rbl_reply;
	const struct netlist *mynetworks;
	const struct domain_list *mydestination, *relay_domains;
	char *myorigin;
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

struct smtp_policy_ctx {
	const struct smtp_policy *p;
	struct table **tables;
	struct rbl_zone **zones;
	char (*vbuf)[TABLE_VALUE_MAX + 1];
	struct pitem (*vitems)[VALUE_ITEMS_MAX];
	char (*lookup)[TABLE_VALUE_MAX + 1];
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

enum st { ST_DUNNO = 0, ST_OK = 1, ST_REJECT = 2 };

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
};

/* What a list's refusals name, as Postfix's replies do ("Client host rejected: ..."). */
#define NAME_CLIENT "Client host"
#define NAME_REV_CLIENT "Unverified Client host"
#define NAME_HELO "Helo command"
#define NAME_SENDER "Sender address"
#define NAME_RECIPIENT "Recipient address"
#define NAME_DATA "Data command"
#define NAME_EOD "End-of-data"

/* ---- smtp_restrictions.c: what every check shares ---- */

void smtp_policy_emit(struct ev *e, const char *kind, const char *text);
void smtp_policy_printable(char *s);
const char *smtp_policy_dsn_split(char dsn[16], const char *def, const char *text);
const char *smtp_policy_dsn_fix(const char *status, const char *cls);
int smtp_policy_reject(struct ev *e, enum ecls cls, unsigned code, const char *dsn,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int smtp_policy_defer_if(struct defer *d, enum ecls cls, unsigned code, const char *dsn,
			 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int smtp_policy_server_error(struct ev *e, const char *why);

/* ---- smtp_restrictions_compile.c ---- */

bool smtp_policy_token_copy(char *dst, size_t cap, const char *t, size_t n);
int smtp_policy_parse_item(struct smtp_policy *p, const char *param, const char *word,
			   const char **cur, struct pitem *it, bool compile, char *err,
			   size_t errlen);

/* ---- smtp_restrictions_eval.c ---- */

bool smtp_policy_valid_hostname(const char *name, size_t len);
bool smtp_policy_auth_destination(const struct ev *e, const char *rcpt);
int smtp_policy_generic_checks(struct ev *e, const struct pitem *items, size_t n,
			       const char *rn, const char *rc, int def_acl);

/* ---- smtp_restrictions_access.c ---- */

int smtp_policy_access_client(struct ev *e, uint32_t t, const char *name, const char *rn,
			      const char *cls, int def_acl);
int smtp_policy_access_domain(struct ev *e, uint32_t t, const char *dom, const char *rn,
			      const char *cls, int def_acl);
int smtp_policy_access_address(struct ev *e, uint32_t t, const char *addr, const char *rn,
			       const char *cls, int def_acl);

/* ---- smtp_restrictions_rbl.c ---- */

int smtp_policy_reject_rbl(struct ev *e, uint32_t ri, const char *addr, const char *name,
			   const char *cls);
int smtp_policy_permit_dnswl(struct ev *e, uint32_t ri, const char *addr, const char *name);
int smtp_policy_rhsbl(struct ev *e, uint32_t ri, const char *what, const char *cls,
		      bool permit);

#endif
