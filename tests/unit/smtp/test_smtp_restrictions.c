/* The restriction-list evaluator against Postfix 3.7's behaviour and reply texts
 * (smtpd_check.c, access(5), postconf(5)). Tables live in a throw-away LMDB store. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>

#include "../tables/tables_test_util.h"
#include "tables/rbl_zone.h"
#include "testing.h"

static struct tables_env *env;
static struct tables_reader *rd;
static char envdir[64];
static struct netlist *mynetworks;
static struct domain_list *mydestination, *relay_domains;

/* One test configuration. */
struct tcfg {
	const char *lists[SMTP_LIST_MAX];
	const char *classes;
	const char *class_defs[8][2];
	bool no_delay, soft_bounce, unlisted_sender, no_unlisted_rcpt;
	const char *relay_recipient_maps, *local_recipient_maps;
	const char *relay_clientcerts;
};

static const char *class_value(void *ctx, const char *name)
{
	const struct tcfg *c = ctx;
	for (int i = 0; i < 8 && c->class_defs[i][0]; i++)
		if (strcmp(c->class_defs[i][0], name) == 0)
			return c->class_defs[i][1];
	return NULL;
}

static int compile(const struct tcfg *t, struct smtp_policy **p, char *err, size_t errlen)
{
	struct smtp_policy_config cfg = { 0 };
	for (int l = 0; l < SMTP_LIST_MAX; l++)
		cfg.lists[l] = t->lists[l];
	if (!t->lists[SMTP_LIST_RELAY])
		cfg.lists[SMTP_LIST_RELAY] =
			"permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination";
	cfg.restriction_classes = t->classes;
	cfg.class_value = class_value;
	cfg.class_ctx = (void *)t;
	cfg.delay_reject = !t->no_delay;
	cfg.soft_bounce = t->soft_bounce;
	cfg.reject_unlisted_recipient = !t->no_unlisted_rcpt;
	cfg.reject_unlisted_sender = t->unlisted_sender;
	smtp_policy_codes_defaults(&cfg.codes);
	cfg.mynetworks = mynetworks;
	cfg.mydestination = mydestination;
	cfg.relay_domains = relay_domains;
	cfg.myorigin = "mx.example.net";
	cfg.relay_recipient_maps = t->relay_recipient_maps ? t->relay_recipient_maps : "";
	cfg.local_recipient_maps = t->local_recipient_maps ? t->local_recipient_maps : "";
	cfg.relay_clientcerts = t->relay_clientcerts ? t->relay_clientcerts : "";
	cfg.access.parent_matches_subdomains = true;
	cfg.access.recipient_delimiter = "+";
	return smtp_policy_compile(&cfg, p, err, errlen);
}

/* Events and trace lines collected as text. */
static char events[4096], traces[8192];

static void on_event(void *ctx, const char *kind, const char *text)
{
	(void)ctx;
	size_t n = strlen(events);
	snprintf(events + n, sizeof(events) - n, "%s: %s\n", kind, text);
}

static void on_trace(void *ctx, enum smtp_restriction_list l, const char *r, const char *o,
		     const char *d)
{
	(void)ctx;
	size_t n = strlen(traces);
	snprintf(traces + n, sizeof(traces) - n, "%s|%s|%s|%s\n", smtp_restriction_list_name(l),
		 r, o, d);
}

struct treq {
	enum smtp_policy_stage stage;
	const char *addr, *name, *helo, *sender, *rcpt;
	unsigned count;
	bool pipelining;
	bool tls;
	const struct smtp_policy_ccert *ccert;
	struct smtp_policy_session *session;
};

static struct smtp_policy_actions acts;
static struct smtp_policy_result lastres;

/* Evaluate; returns "OK" or "CODE TEXT" in a static buffer. */
static const char *run(const struct tcfg *t, const struct treq *q)
{
	static char out[700];
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[300];
	int rc = compile(t, &p, err, sizeof(err));
	if (rc < 0) {
		snprintf(out, sizeof(out), "compile: %s", err);
		return out;
	}
	if (tables_reader_renew(rd) < 0 || smtp_policy_ctx_new(p, rd, &ctx) < 0) {
		smtp_policy_free(p);
		return "ctx error";
	}
	struct smtp_policy_request req = {
		.stage = q->stage,
		.client_addr = q->addr ? q->addr : "192.0.2.1",
		.client_name = q->name ? q->name : "unknown",
		.reverse_name = q->name ? q->name : "unknown",
		.helo = q->helo,
		.sender = q->sender,
		.recipient = q->rcpt,
		.protocol = "ESMTP",
		.recipient_count = q->count,
		.unauth_pipelining = q->pipelining,
		.tls = q->tls,
		.ccert = q->ccert,
		.now = 1700000000,
		.session = q->session,
	};
	struct smtp_policy_callbacks cb = { on_event, on_trace, NULL };
	events[0] = traces[0] = '\0';
	rc = smtp_policy_check(ctx, &req, &acts, &cb, &lastres);
	if (rc < 0)
		snprintf(out, sizeof(out), "error %d", rc);
	else if (lastres.decision == SMTP_POLICY_ACCEPT)
		snprintf(out, sizeof(out), "OK");
	else
		snprintf(out, sizeof(out), "%u %s", lastres.code, lastres.text);
	/* the class name points into the policy, freed below */
	static char lastclass[128];
	if (lastres.class_name) {
		snprintf(lastclass, sizeof(lastclass), "%s", lastres.class_name);
		lastres.class_name = lastclass;
	}
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
	return out;
}

#define RCPT(s, r) (&(struct treq){ .stage = SMTP_STAGE_RCPT, .helo = "mail.example.org", .sender = (s), .rcpt = (r) })

static const char *rcpt_with(const char *list, enum smtp_restriction_list l, const char *rcpt)
{
	struct tcfg t = { 0 };
	t.lists[l] = list;
	return run(&t, RCPT("s@example.org", rcpt));
}

static void test_compile_errors(void)
{
	struct smtp_policy *p;
	char err[300];
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = "permit_mynetworks, rejct_unauth_destination";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "smtpd_recipient_restrictions: unknown restriction: \"rejct_unauth_destination\"");
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "permit_mx_backup";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -ENOTSUP);
	CHECK(strncmp(err, "smtpd_recipient_restrictions: permit_mx_backup is not supported: ",
		      64) == 0);
	t.lists[SMTP_LIST_RECIPIENT] = "reject_unverified_recipient";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -ENOTSUP);
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "smtpd_client_restrictions: check_policy_service must be followed by "
			  "transport:server");
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service reject";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service tcp:127.0.0.1:9998";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service inet:127.0.0.1";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service { inet:127.0.0.1:9998, timeout=0 }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service { inet:127.0.0.1:9998, timeout=1x }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service { inet:127.0.0.1:9998, bogus=1 }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "smtpd_client_restrictions: check_policy_service { inet:127.0.0.1:9998, "
			  "bogus=1 }: unknown option: \"bogus = 1\"");
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service { inet:127.0.0.1:9998, try_limit }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service { inet:127.0.0.1:9998, "
				    "default_action= }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_policy_service {}";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client bad_zone!";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_SENDER] = "check_sender_access";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "smtpd_sender_restrictions: check_sender_access needs a table argument");
	t.lists[SMTP_LIST_SENDER] = "check_sender_access reject";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_SENDER] = "check_sender_access nosuch:/x";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_SENDER] = NULL;
	t.classes = "foo";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "smtpd_restriction_classes: class \"foo\" has no definition");
	t.classes = NULL;
	t.lists[SMTP_LIST_DATA] = "hash:/etc/x";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_DATA] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.example=127.0.0.[2..x]";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.example=127.0.0.[5..2]";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.lists[SMTP_LIST_CLIENT] = "check_client_access {inline:{a=b}";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	/* Accepted forms: commas, white space, continuation lines, braces, aliases. */
	t.lists[SMTP_LIST_CLIENT] =
		"permit_mynetworks,,reject_rbl_client zen.example=127.0.0.[2;4..11]\n"
		"\tcheck_client_access { inline:{ 1.2.3.4=REJECT, 5.6.7.8=OK } } hash:/x "
		"reject_invalid_hostname, reject_non_fqdn_hostname";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	if (err[0])
		fprintf(stderr, "  %s\n", err);
	else
		smtp_policy_free(p);
}

static int count_tables(void *ctx, const char *spec, bool is_zone)
{
	char *buf = ctx;
	size_t n = strlen(buf);
	snprintf(buf + n, 512 - n, "%s%s;", is_zone ? "zone " : "", spec);
	return 0;
}

static void test_foreach_table(void)
{
	struct smtp_policy *p;
	char err[300], buf[512] = "";
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "check_client_access hash:/a, reject_rbl_client z.example, "
				    "reject_rbl_client z.example=127.0.0.2 hash:/a";
	t.lists[SMTP_LIST_RECIPIENT] = "check_recipient_access cidr:/b";
	t.relay_recipient_maps = "hash:/a hash:/c";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	smtp_policy_foreach_table(p, count_tables, buf);
	CHECK_STR_EQ(buf, "hash:/a;cidr:/b;hash:/c;zone z.example;");
	smtp_policy_free(p);
}

static void test_generic_texts(void)
{
	CHECK_STR_EQ(rcpt_with("reject", SMTP_LIST_CLIENT, "u@mx.example.net"),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	CHECK_INT_EQ(lastres.decision, SMTP_POLICY_REJECT);
	CHECK_INT_EQ(lastres.list, SMTP_LIST_CLIENT);
	CHECK_STR_EQ(lastres.restriction, "reject");
	CHECK(lastres.class_name == NULL); /* the list's own item */
	CHECK_STR_EQ(rcpt_with("reject", SMTP_LIST_HELO, "u@mx.example.net"),
		     "554 5.7.1 <mail.example.org>: Helo command rejected: Access denied");
	CHECK_STR_EQ(rcpt_with("reject", SMTP_LIST_SENDER, "u@mx.example.net"),
		     "554 5.7.1 <s@example.org>: Sender address rejected: Access denied");
	CHECK_STR_EQ(rcpt_with("reject", SMTP_LIST_RECIPIENT, "u@mx.example.net"),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(rcpt_with("defer", SMTP_LIST_RECIPIENT, "u@mx.example.net"),
		     "450 4.3.2 <u@mx.example.net>: Recipient address rejected: Try again later");
	CHECK_INT_EQ(lastres.decision, SMTP_POLICY_DEFER);
	CHECK_STR_EQ(rcpt_with("permit reject", SMTP_LIST_RECIPIENT, "u@mx.example.net"), "OK");
	/* The default relay list: defer_unauth_destination. */
	CHECK_STR_EQ(rcpt_with(NULL, SMTP_LIST_RECIPIENT, "u@example.com"),
		     "454 4.7.1 <u@example.com>: Relay access denied");
	CHECK_STR_EQ(rcpt_with("reject_unauth_destination", SMTP_LIST_RELAY, "u@example.com"),
		     "554 5.7.1 <u@example.com>: Relay access denied");
	CHECK_STR_EQ(rcpt_with("reject_unauth_destination", SMTP_LIST_RELAY, "u@sub.relay.example"),
		     "OK");
	CHECK_STR_EQ(rcpt_with("reject_unauth_destination", SMTP_LIST_RELAY, "u%x@relay.example"),
		     "554 5.7.1 <u%x@relay.example>: Relay access denied");
	CHECK_STR_EQ(rcpt_with("permit_auth_destination reject", SMTP_LIST_RECIPIENT,
			       "u@MX.example.net."),
		     "OK");
	/* postmaster is accepted before any list */
	CHECK_STR_EQ(rcpt_with("reject", SMTP_LIST_CLIENT, "Postmaster"), "OK");
}

static void test_list_order_and_delay(void)
{
	struct tcfg t = { 0 };
	/* PERMIT ends only its list */
	t.lists[SMTP_LIST_CLIENT] = "permit";
	t.lists[SMTP_LIST_RECIPIENT] = "reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	/* a reject in an early list stops the later ones */
	t.lists[SMTP_LIST_CLIENT] = "reject";
	t.lists[SMTP_LIST_RECIPIENT] = "defer";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	/* relay must pass too: permit in the recipient list does not help */
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "permit";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@example.com")),
		     "454 4.7.1 <u@example.com>: Relay access denied");
	/* without delay_reject: the client list answers at CONNECT, not at RCPT */
	t.no_delay = true;
	t.lists[SMTP_LIST_CLIENT] = "reject";
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_CONNECT }),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")), "OK");
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_HELO] = "reject_non_fqdn_helo_hostname";
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_HELO, .helo = "localhost" }),
		     "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname");
	t.lists[SMTP_LIST_HELO] = NULL;
	t.lists[SMTP_LIST_SENDER] = "reject_non_fqdn_sender";
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_MAIL, .sender = "joe" }),
		     "504 5.5.2 <joe>: Sender address rejected: need fully-qualified address");
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_MAIL, .sender = "" }), "OK");
	/* with delay_reject the same sender check answers at RCPT, not at MAIL */
	t.no_delay = false;
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_MAIL, .sender = "joe" }), "OK");
	CHECK_STR_EQ(run(&t, RCPT("joe", "u@mx.example.net")),
		     "504 5.5.2 <joe>: Sender address rejected: need fully-qualified address");
}

static void test_defer_if(void)
{
	struct tcfg t = { 0 };
	/* defer_if_permit: a later permit becomes the deferral */
	t.lists[SMTP_LIST_CLIENT] = "defer_if_permit";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "450 4.7.0 <unknown[192.0.2.1]>: Client host rejected: defer_if_permit requested");
	CHECK_INT_EQ(lastres.decision, SMTP_POLICY_DEFER);
	/* ... but a reject still wins */
	t.lists[SMTP_LIST_RECIPIENT] = "reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	/* defer_if_reject: a later 5xx in the same list becomes the deferral */
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "defer_if_reject reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "450 4.7.0 <u@mx.example.net>: Recipient address rejected: defer_if_reject requested");
	t.lists[SMTP_LIST_RECIPIENT] = "defer_if_reject permit";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")), "OK");
	/* it does not carry into the next list (SMTPD_CHECK_RESET) */
	t.lists[SMTP_LIST_CLIENT] = "defer_if_reject";
	t.lists[SMTP_LIST_RECIPIENT] = "reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	/* delay_reject = no: defer_if_permit at CONNECT defers the RCPT later */
	struct smtp_policy_session s = { 0 };
	t = (struct tcfg){ 0 };
	t.no_delay = true;
	t.lists[SMTP_LIST_CLIENT] = "defer_if_permit";
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_CONNECT, .session = &s }), "OK");
	CHECK_STR_EQ(run(&t, &(struct treq){ .stage = SMTP_STAGE_MAIL, .sender = "a@b.example",
					     .session = &s }),
		     "OK");
	struct treq q = *RCPT("a@b.example", "u@mx.example.net");
	q.session = &s;
	CHECK_STR_EQ(run(&t, &q),
		     "450 4.7.0 <unknown[192.0.2.1]>: Client host rejected: defer_if_permit requested");
}

static void test_warn_if_reject_and_soft_bounce(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = "warn_if_reject reject_non_fqdn_recipient, reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "postmaster@localhost")),
		     "554 5.7.1 <postmaster@localhost>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(events, "reject_warning: 504 5.5.2 <postmaster@localhost>: Recipient address "
			     "rejected: need fully-qualified address\n");
	CHECK(strstr(traces, "reject_non_fqdn_recipient|reject_warning|") != NULL);
	/* warn_if_reject applies to the next restriction only */
	t.lists[SMTP_LIST_RECIPIENT] = "warn_if_reject permit_mynetworks reject";
	CHECK(strncmp(run(&t, RCPT("s@example.org", "u@mx.example.net")), "554 ", 4) == 0);
	t.soft_bounce = true;
	t.lists[SMTP_LIST_RECIPIENT] = "reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "454 4.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_INT_EQ(lastres.decision, SMTP_POLICY_REJECT);
}

static void test_syntax_checks(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_HELO] = "reject_invalid_helo_hostname";
	struct treq q = *RCPT("s@example.org", "u@mx.example.net");
	q.helo = "bad_host!";
	CHECK_STR_EQ(run(&t, &q), "501 5.5.2 <bad_host!>: Helo command rejected: Invalid name");
	q.helo = "[1.2.3.999]";
	CHECK_STR_EQ(run(&t, &q),
		     "501 5.5.2 <[1.2.3.999]>: Helo command rejected: invalid ip address");
	q.helo = "[192.0.2.1]";
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.helo = "1.2.3.4"; /* an address is a valid helo for reject_invalid_helo_hostname */
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.helo = "mail.example.org.";
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_HELO] = "reject_non_fqdn_helo_hostname";
	q.helo = "1.2.3.4";
	CHECK_STR_EQ(run(&t, &q),
		     "504 5.5.2 <1.2.3.4>: Helo command rejected: need fully-qualified hostname");
	t.lists[SMTP_LIST_HELO] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "reject_non_fqdn_recipient";
	t.lists[SMTP_LIST_RELAY] = "permit";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@[192.0.2.9]")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@localhost")),
		     "504 5.5.2 <u@localhost>: Recipient address rejected: need fully-qualified address");
	t.lists[SMTP_LIST_RELAY] = NULL;
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")), "OK");
	t.lists[SMTP_LIST_RECIPIENT] = "reject_multi_recipient_bounce";
	q = *RCPT("", "u@mx.example.net");
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.count = 1;
	CHECK_STR_EQ(run(&t, &q), "550 5.5.3 <u@mx.example.net>: Recipient address rejected: "
				  "Multi-recipient bounce");
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_DATA] = "reject_unauth_pipelining, reject_multi_recipient_bounce";
	q = (struct treq){ .stage = SMTP_STAGE_DATA, .sender = "", .count = 1, .pipelining = true };
	CHECK_STR_EQ(run(&t, &q), "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP "
				  "command pipelining");
	q.pipelining = false;
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.count = 2;
	CHECK_STR_EQ(run(&t, &q),
		     "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce");

	/* reject_plaintext_session: plaintext_reject_code (450), Postfix's text */
	t.lists[SMTP_LIST_DATA] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "reject_plaintext_session";
	q = *RCPT("s@example.org", "u@mx.example.net");
	/* no "<address>: ... rejected:" prefix: Postfix's smtpd_check_reject() text as is */
	CHECK_STR_EQ(run(&t, &q), "450 4.7.1 Session encryption is required");
	q.tls = true;
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_RECIPIENT] = NULL;

	/* client certificates: permit_tls_all_clientcerts needs a trusted one;
	 * permit_tls_clientcerts a fingerprint (the certificate's, then its key's) in
	 * relay_clientcerts, trusted or not; check_ccert_access looks both up */
	static const struct smtp_policy_ccert trusted = { .trusted = true, .fingerprint = "AA:01",
							  .pkey_fingerprint = "BB:01" };
	static const struct smtp_policy_ccert untrusted = { .fingerprint = "AA:02",
							    .pkey_fingerprint = "BB:02" };
	static const struct smtp_policy_ccert other = { .fingerprint = "AA:03",
							.pkey_fingerprint = "BB:03" };
	t.lists[SMTP_LIST_RELAY] = "permit_tls_all_clientcerts, reject_unauth_destination";
	q = *RCPT("s@example.org", "u@elsewhere.example");
	q.addr = "198.51.100.7";
	q.tls = true;
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <u@elsewhere.example>: Relay access denied");
	q.ccert = &untrusted;
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <u@elsewhere.example>: Relay access denied");
	q.ccert = &trusted;
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_RELAY] = "permit_tls_clientcerts, reject_unauth_destination";
	t.relay_clientcerts = "inline:{ AA:02=client2, BB:01=client1 }";
	CHECK_STR_EQ(run(&t, &q), "OK"); /* by its key's fingerprint */
	q.ccert = &untrusted;
	CHECK_STR_EQ(run(&t, &q), "OK"); /* by the certificate's, not trusted */
	q.ccert = &other;
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <u@elsewhere.example>: Relay access denied");
	q.ccert = NULL;
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <u@elsewhere.example>: Relay access denied");
	t.relay_clientcerts = NULL;
	t.lists[SMTP_LIST_RELAY] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_ccert_access { inline:{ { AA:03=REJECT bad cert }, "
				    "BB:02=OK } }";
	q = *RCPT("s@example.org", "u@mx.example.net");
	q.addr = "198.51.100.7";
	q.ccert = &other;
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <unknown[198.51.100.7]>: Client certificate "
				  "rejected: bad cert");
	q.ccert = &untrusted;
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.ccert = NULL;
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_CLIENT] = NULL;
}

static void test_access_actions(void)
{
	CHECK(tt_build(env, "hash:/t/rcpt",
		       "ok@mx.example.net OK\n"
		       "num@mx.example.net 12345\n"
		       "rej@mx.example.net REJECT\n"
		       "rejt@mx.example.net REJECT go away\n"
		       "rejd@mx.example.net REJECT 5.7.9 custom dsn\n"
		       "def@mx.example.net DEFER\n"
		       "dtext@mx.example.net DEFER come back later\n"
		       "c450@mx.example.net 450 slow down\n"
		       "c550@mx.example.net 550 5.1.1 no such user\n"
		       "c421@mx.example.net 421 closing\n"
		       "c4nt@mx.example.net 450\n"
		       "dip@mx.example.net DEFER_IF_PERMIT\n"
		       "dir@mx.example.net DEFER_IF_REJECT maybe later\n"
		       "dunno@mx.example.net DUNNO\n"
		       "mx.example.net REJECT domain\n"
		       "warn@mx.example.net WARN watch this\n"
		       "info@mx.example.net INFO fyi\n"
		       "hold@mx.example.net HOLD\n"
		       "disc@mx.example.net DISCARD spam\n"
		       "filt@mx.example.net FILTER smtp:[10.0.0.1]:10025\n"
		       "redir@mx.example.net REDIRECT abuse@example.net\n"
		       "bcc@mx.example.net BCC copy@example.net\n"
		       "prep@mx.example.net PREPEND X-Tag: yes\n"
		       "prepbad@mx.example.net PREPEND no header\n"
		       "restr@mx.example.net reject_unauth_destination, permit\n"
		       "cls@mx.example.net strict\n"
		       "tbl@mx.example.net check_client_access hash:/t/rcpt\n"
		       "unk@mx.example.net frobnicate\n"
		       "ctl@mx.example.net REJECT bad\x01text\n"
		       "dipr@mx.example.net defer_if_permit\n"
		       "dirrej@mx.example.net DEFER_IF_REJECT maybe later, reject\n") == 0);
	const char *L = "check_recipient_access hash:/t/rcpt";
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = L;
	t.classes = "strict";
	t.class_defs[0][0] = "strict";
	t.class_defs[0][1] = "reject_non_fqdn_sender, defer";
#define R(rcpt) run(&t, RCPT("s@example.org", rcpt))
	memset(&acts, 0, sizeof(acts));
	CHECK_STR_EQ(R("ok@mx.example.net"), "OK");
	CHECK_STR_EQ(R("num@mx.example.net"), "OK");
	CHECK_STR_EQ(R("rej@mx.example.net"),
		     "554 5.7.1 <rej@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(R("rejt@mx.example.net"),
		     "554 5.7.1 <rejt@mx.example.net>: Recipient address rejected: go away");
	CHECK_STR_EQ(R("rejd@mx.example.net"),
		     "554 5.7.9 <rejd@mx.example.net>: Recipient address rejected: custom dsn");
	CHECK_STR_EQ(R("def@mx.example.net"),
		     "450 4.7.1 <def@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(R("dtext@mx.example.net"),
		     "450 4.7.1 <dtext@mx.example.net>: Recipient address rejected: come back later");
	CHECK_STR_EQ(R("c450@mx.example.net"),
		     "450 4.7.1 <c450@mx.example.net>: Recipient address rejected: slow down");
	CHECK(!lastres.disconnect);
	CHECK_STR_EQ(R("c550@mx.example.net"),
		     "550 5.1.1 <c550@mx.example.net>: Recipient address rejected: no such user");
	CHECK_STR_EQ(R("c421@mx.example.net"),
		     "421 4.7.1 <c421@mx.example.net>: Recipient address rejected: closing");
	CHECK(lastres.disconnect);
	/* "450" without text is all-numeric, which check_table_result() takes as OK first */
	CHECK_STR_EQ(R("c4nt@mx.example.net"), "OK");
	CHECK_STR_EQ(R("dip@mx.example.net"),
		     "450 4.7.1 <dip@mx.example.net>: Recipient address rejected: Service unavailable");
	CHECK_STR_EQ(R("dir@mx.example.net"), "OK");
	/* action words are case-insensitive: this is DEFER_IF_PERMIT, not the restriction,
	 * and the text after DEFER_IF_REJECT is text, not restrictions (as Postfix 3.7) */
	CHECK_STR_EQ(R("dipr@mx.example.net"),
		     "450 4.7.1 <dipr@mx.example.net>: Recipient address rejected: Service unavailable");
	CHECK_STR_EQ(R("dirrej@mx.example.net"), "OK");
	/* DUNNO for the address stops the search: the domain's REJECT is not reached */
	CHECK_STR_EQ(R("dunno@mx.example.net"), "OK");
	CHECK_STR_EQ(R("other@mx.example.net"),
		     "554 5.7.1 <other@mx.example.net>: Recipient address rejected: domain");
	CHECK_STR_EQ(R("warn@mx.example.net"), "OK");
	CHECK_STR_EQ(events, "warn: watch this\n");
	CHECK_STR_EQ(R("info@mx.example.net"), "OK");
	CHECK_STR_EQ(events, "info: fyi\n");
	CHECK_STR_EQ(R("restr@mx.example.net"), "OK");
	CHECK_STR_EQ(R("cls@mx.example.net"),
		     "450 4.3.2 <cls@mx.example.net>: Recipient address rejected: Try again later");
	CHECK_STR_EQ(R("tbl@mx.example.net"), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(R("unk@mx.example.net"), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(R("ctl@mx.example.net"),
		     "554 5.7.1 <ctl@mx.example.net>: Recipient address rejected: bad text");

	/* Envelope actions */
	memset(&acts, 0, sizeof(acts));
	CHECK_STR_EQ(R("hold@mx.example.net"), "OK");
	CHECK(acts.hold);
	CHECK_STR_EQ(events, "hold: <hold@mx.example.net>: Recipient address triggers HOLD action\n");
	CHECK_STR_EQ(R("filt@mx.example.net"), "OK");
	CHECK_STR_EQ(acts.filter, "smtp:[10.0.0.1]:10025");
	CHECK_STR_EQ(events, "filter: <filt@mx.example.net>: Recipient address triggers FILTER "
			     "smtp:[10.0.0.1]:10025\n");
	CHECK_STR_EQ(R("redir@mx.example.net"), "OK");
	CHECK_STR_EQ(acts.redirect, "abuse@example.net");
	CHECK_STR_EQ(R("bcc@mx.example.net"), "OK");
	CHECK_STR_EQ(acts.bcc, "copy@example.net");
	CHECK_STR_EQ(events, "bcc: <bcc@mx.example.net>: Recipient address triggers BCC copy@example.net\n");
	CHECK_STR_EQ(R("prep@mx.example.net"), "OK");
	CHECK_STR_EQ(R("prepbad@mx.example.net"), "OK");
	CHECK_INT_EQ(acts.nprepend, 1);
	CHECK_STR_EQ(acts.prepend[0], "X-Tag: yes");
	CHECK(!acts.discard);
	CHECK_STR_EQ(R("disc@mx.example.net"), "OK");
	CHECK(acts.discard);
	CHECK_STR_EQ(events, "discard: <disc@mx.example.net>: Recipient address spam\n");
	/* after DISCARD the transaction's later recipients skip the checks */
	CHECK_STR_EQ(R("rej@mx.example.net"), "OK");
	/* the actions reused for the next transaction (smtp_policy_actions_reset) read as new,
	 * and take the next actions as a zeroed struct does */
	smtp_policy_actions_reset(&acts);
	CHECK(!acts.hold && !acts.discard);
	CHECK_INT_EQ(acts.nprepend, 0);
	CHECK_STR_EQ(acts.filter, "");
	CHECK_STR_EQ(acts.redirect, "");
	CHECK_STR_EQ(acts.bcc, "");
	CHECK_STR_EQ(acts.hold_reason, "");
	CHECK_STR_EQ(acts.discard_reason, "");
	CHECK_STR_EQ(R("rej@mx.example.net"), "554 5.7.1 <rej@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(R("prep@mx.example.net"), "OK");
	CHECK_INT_EQ(acts.nprepend, 1);
	CHECK_STR_EQ(acts.prepend[0], "X-Tag: yes");
	CHECK_STR_EQ(R("redir@mx.example.net"), "OK");
	CHECK_STR_EQ(acts.redirect, "abuse@example.net");
	memset(&acts, 0, sizeof(acts));

	/* Lookup error: the table was never built */
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_client_access hash:/t/missing";
	CHECK_STR_EQ(R("u@mx.example.net"),
		     "451 4.3.5 <unknown[192.0.2.1]>: Client host rejected: Server configuration error");
	CHECK_INT_EQ(lastres.decision, SMTP_POLICY_DEFER);
	CHECK(strstr(traces, "|lookup error|") != NULL);
	/* soft_bounce leaves it alone, warn_if_reject logs it (a policy-class reply) */
	t.lists[SMTP_LIST_CLIENT] = "warn_if_reject check_client_access hash:/t/missing";
	CHECK_STR_EQ(R("u@mx.example.net"), "OK");
	CHECK_STR_EQ(events, "reject_warning: 451 4.3.5 <unknown[192.0.2.1]>: Client host "
			     "rejected: Server configuration error\n");
#undef R
}

static void test_client_helo_sender_access(void)
{
	CHECK(tt_build(env, "hash:/t/client",
		       "192.0.2 REJECT net\n"
		       "good.example OK\n"
		       "198.51.100.7 550 5.1.1 address status\n") == 0);
	CHECK(tt_build(env, "hash:/t/helo", "bad.example REJECT bad helo\n") == 0);
	CHECK(tt_build(env, "hash:/t/sender",
		       "<> REJECT no bounces\n"
		       "spam.example REJECT\n"
		       "x.example 550 5.1.1 sender status\n") == 0);
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "hash:/t/client"; /* bare table: check_client_access */
	struct treq q = *RCPT("s@example.org", "u@mx.example.net");
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: net");
	q.name = "host.good.example"; /* the name is looked up before the address */
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.name = NULL;
	/* an address status code for a non-address becomes X.0.0 (smtpd_dsn_fix) */
	q.addr = "198.51.100.7";
	CHECK_STR_EQ(run(&t, &q),
		     "550 5.0.0 <unknown[198.51.100.7]>: Client host rejected: address status");
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_HELO] = "check_helo_access hash:/t/helo";
	q = *RCPT("s@example.org", "u@mx.example.net");
	q.helo = "mx.bad.example";
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 <mx.bad.example>: Helo command rejected: bad helo");
	t.lists[SMTP_LIST_HELO] = NULL;
	t.lists[SMTP_LIST_SENDER] = "check_sender_access hash:/t/sender";
	CHECK_STR_EQ(run(&t, RCPT("", "u@mx.example.net")),
		     "554 5.7.1 <>: Sender address rejected: no bounces");
	CHECK_STR_EQ(run(&t, RCPT("a@mail.spam.example", "u@mx.example.net")),
		     "554 5.7.1 <a@mail.spam.example>: Sender address rejected: Access denied");
	/* a recipient status code for a sender becomes the sender one (5.1.1 -> 5.1.7, as
	 * Debian's Postfix 3.7 answers) */
	CHECK_STR_EQ(run(&t, RCPT("a@x.example", "u@mx.example.net")),
		     "550 5.1.7 <a@x.example>: Sender address rejected: sender status");
	/* the reverse client name may never allowlist */
	CHECK(tt_build(env, "hash:/t/rev", "good.example OK\nbad.example REJECT\n") == 0);
	t.lists[SMTP_LIST_SENDER] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_reverse_client_hostname_access hash:/t/rev";
	q = *RCPT("s@example.org", "u@mx.example.net");
	q.name = "a.good.example";
	CHECK_STR_EQ(run(&t, &q), "451 4.3.5 Server configuration error");
	q.name = "a.bad.example";
	CHECK_STR_EQ(run(&t, &q),
		     "554 5.7.1 <a.bad.example>: Unverified Client host rejected: Access denied");
}

static void test_unlisted(void)
{
	CHECK(tt_build(env, "hash:/t/relayrcpt", "known@relay.example x\n@any.relay.example x\n") == 0);
	CHECK(tt_build(env, "hash:/t/local", "joe x\n") == 0);
	struct tcfg t = { 0 };
	t.relay_recipient_maps = "hash:/t/relayrcpt";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "known@relay.example")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "known+ext@relay.example")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "who@any.relay.example")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "nobody@relay.example")),
		     "550 5.1.1 <nobody@relay.example>: Recipient address rejected: User unknown "
		     "in relay recipient table");
	CHECK_STR_EQ(lastres.restriction, "smtpd_reject_unlisted_recipient");
	t.no_unlisted_rcpt = true;
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "nobody@relay.example")), "OK");
	t.lists[SMTP_LIST_RECIPIENT] = "reject_unlisted_recipient";
	CHECK(strncmp(run(&t, RCPT("s@example.org", "nobody@relay.example")), "550 5.1.1", 9) == 0);
	t = (struct tcfg){ 0 };
	t.local_recipient_maps = "hash:/t/local";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "joe@mx.example.net")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "MAILER-DAEMON@mx.example.net")), "OK");
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "ann@mx.example.net")),
		     "550 5.1.1 <ann@mx.example.net>: Recipient address rejected: User unknown "
		     "in local recipient table");
	t.unlisted_sender = true;
	CHECK_STR_EQ(run(&t, RCPT("ann@mx.example.net", "joe@mx.example.net")),
		     "550 5.1.0 <ann@mx.example.net>: Sender address rejected: User unknown "
		     "in local recipient table");
	/* a missing table is a configuration error, never "unknown user" */
	t = (struct tcfg){ 0 };
	t.relay_recipient_maps = "hash:/t/nope";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "x@relay.example")),
		     "451 4.3.5 Server configuration error");
}

static void test_mynetworks_and_classes(void)
{
	struct tcfg t = { 0 };
	struct treq q = *RCPT("s@example.org", "u@example.com");
	q.addr = "10.1.2.3";
	CHECK_STR_EQ(run(&t, &q), "OK"); /* default relay list: permit_mynetworks */
	q.addr = "::ffff:10.1.2.3";
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.addr = "192.0.2.1";
	CHECK_STR_EQ(run(&t, &q), "454 4.7.1 <u@example.com>: Relay access denied");
	/* classes in lists, nested classes */
	t.classes = "outer, inner";
	t.class_defs[0][0] = "outer";
	t.class_defs[0][1] = "inner";
	t.class_defs[1][0] = "inner";
	t.class_defs[1][1] = "permit_mynetworks, reject";
	t.lists[SMTP_LIST_RECIPIENT] = "outer";
	q = *RCPT("s@example.org", "u@mx.example.net");
	CHECK_STR_EQ(run(&t, &q),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(lastres.restriction, "reject");
	/* the innermost class whose item refused, in the list that named the outer one */
	CHECK(lastres.class_name != NULL);
	if (lastres.class_name)
		CHECK_STR_EQ(lastres.class_name, "inner");
	CHECK_INT_EQ(lastres.list, SMTP_LIST_RECIPIENT);
	/* a class's refusal through a table's result (check_recipient_access -> class) */
	t.class_defs[2][0] = "strict";
	t.class_defs[2][1] = "reject";
	t.classes = "outer, inner, strict";
	t.lists[SMTP_LIST_RECIPIENT] = "check_recipient_access inline:{u@mx.example.net=strict}";
	CHECK_STR_EQ(run(&t, &q),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	if (lastres.class_name)
		CHECK_STR_EQ(lastres.class_name, "strict");
	else
		CHECK(!"no class for a refusal through a table's class result");
	t.lists[SMTP_LIST_RECIPIENT] = "outer";
	t.classes = "outer, inner";
	q.addr = "10.9.9.9";
	CHECK_STR_EQ(run(&t, &q), "OK");
	/* a class that names itself: unreasonable recursion, not a crash */
	t.class_defs[1][1] = "outer";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "451 4.3.5 Server configuration error");
}

static void test_rbl(void)
{
	char err[300] = "";
	int rc = rbl_zone_build(env, "bl.example", RBL_FORMAT_IP4SET,
				":127.0.0.2:Listed, see http://bl.example/q?$\n"
				"192.0.2.1\n"
				"192.0.2.2 :127.0.0.4:Other\n"
				"192.0.2.3 :127.255.255.254:refused\n",
				strlen(":127.0.0.2:Listed, see http://bl.example/q?$\n"
				       "192.0.2.1\n"
				       "192.0.2.2 :127.0.0.4:Other\n"
				       "192.0.2.3 :127.255.255.254:refused\n"),
				NULL, NULL, NULL, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	if (rc < 0)
		fprintf(stderr, "  rbl build: %s\n", err);
	rc = rbl_zone_build(env, "rhs.example", RBL_FORMAT_DNSET, "spam.example :127.0.0.2:Bad domain\n",
			    strlen("spam.example :127.0.0.2:Bad domain\n"), NULL, NULL, NULL, err,
			    sizeof(err));
	CHECK_INT_EQ(rc, 0);
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client bl.example";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net")),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "bl.example; Listed, see http://bl.example/q?192.0.2.1");
	struct treq q = *RCPT("s@example.org", "u@mx.example.net");
	q.addr = "192.0.2.3"; /* 127.255.255.x: never listed */
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.addr = "192.0.2.9";
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client bl.example=127.0.0.[3..5]";
	q.addr = "192.0.2.1";
	CHECK_STR_EQ(run(&t, &q), "OK");
	q.addr = "192.0.2.2";
	CHECK_STR_EQ(run(&t, &q), "554 5.7.1 Service unavailable; Client host [192.0.2.2] blocked "
				  "using bl.example; Other");
	t.lists[SMTP_LIST_CLIENT] = "permit_dnswl_client bl.example, reject";
	CHECK_STR_EQ(run(&t, &q), "OK");
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_SENDER] = "reject_rhsbl_sender rhs.example";
	CHECK_STR_EQ(run(&t, RCPT("a@spam.example", "u@mx.example.net")),
		     "554 5.7.1 Service unavailable; Sender address [a@spam.example] blocked using "
		     "rhs.example; Bad domain");
	CHECK_STR_EQ(run(&t, RCPT("a@ham.example", "u@mx.example.net")), "OK");
	/* no local zone: DNS is asked; without a resolver that is a temporary failure,
	 * which Postfix treats as "not listed", with a warning */
	t.lists[SMTP_LIST_SENDER] = "reject_rbl_client missing.example";
	CHECK_STR_EQ(run(&t, RCPT("a@ham.example", "u@mx.example.net")), "OK");
	CHECK_STR_EQ(events, "warning: 1.2.0.192.missing.example: RBL lookup error: no DNS "
			     "resolver\n");
}

static void test_trace(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = "permit_mynetworks, reject_non_fqdn_recipient, reject";
	run(&t, RCPT("s@example.org", "u@mx.example.net"));
	CHECK_STR_EQ(traces,
		     "smtpd_relay_restrictions|permit_mynetworks|no match|\n"
		     "smtpd_relay_restrictions|permit_sasl_authenticated|no match (smtpd_sasl_auth_enable = no)|\n"
		     "smtpd_relay_restrictions|defer_unauth_destination|DUNNO|\n"
		     "smtpd_recipient_restrictions|permit_mynetworks|no match|\n"
		     "smtpd_recipient_restrictions|reject_non_fqdn_recipient|DUNNO|\n"
		     "smtpd_recipient_restrictions|reject|REJECT|554 5.7.1 <u@mx.example.net>: "
		     "Recipient address rejected: Access denied\n");
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[200];
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, rd, &ctx), 0);
	struct smtp_policy_request req = { .stage = SMTP_STAGE_RCPT, .client_addr = "192.0.2.1" };
	struct smtp_policy_result res;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, NULL, &res), -EINVAL);
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
}

int main(void)
{
	char err[200];
	env = tt_env_open(envdir);
	if (tables_reader_open(env, &rd) < 0)
		return 2;
	if (netlist_parse("127.0.0.0/8 10.0.0.0/8 [::1]/128", &mynetworks, err, sizeof(err)) < 0 ||
	    domain_list_parse("mx.example.net localhost", false, &mydestination, err, sizeof(err)) <
		    0 ||
	    domain_list_parse("relay.example", true, &relay_domains, err, sizeof(err)) < 0)
		return 2;
	RUN_TEST(test_compile_errors);
	RUN_TEST(test_foreach_table);
	RUN_TEST(test_generic_texts);
	RUN_TEST(test_list_order_and_delay);
	RUN_TEST(test_defer_if);
	RUN_TEST(test_warn_if_reject_and_soft_bounce);
	RUN_TEST(test_syntax_checks);
	RUN_TEST(test_access_actions);
	RUN_TEST(test_client_helo_sender_access);
	RUN_TEST(test_unlisted);
	RUN_TEST(test_mynetworks_and_classes);
	RUN_TEST(test_rbl);
	RUN_TEST(test_trace);
	tables_reader_close(rd);
	netlist_free(mynetworks);
	domain_list_free(mydestination);
	domain_list_free(relay_domains);
	tt_env_remove(env, envdir);
	return TEST_RESULT();
}
