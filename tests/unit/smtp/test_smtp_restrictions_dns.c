/* The restrictions that wait for answers (DNS and policy servers) against Postfix 3.7's
 * behaviour and reply texts (smtpd_check.c): reject_rbl_client and friends through DNS,
 * rbl_reply_maps, blocklist error codes, reject_unknown_*, check_*_{mx,ns,a}_access and
 * check_policy_service, with a fake lookups provider (policy_fake.h).
 *
 * Every case is evaluated twice: with every answer at hand, and with each answer only
 * after the check returned PENDING and was called again (the replay). The two must give
 * the same result, events, trace lines, envelope actions and session state, byte for
 * byte; each PENDING run must have delivered nothing, changed nothing and asked exactly
 * one question; and no replay may diverge from the run it replays. */
#include "smtp/smtp_restrictions.h"

#include <errno.h>

#include "../tables/tables_test_util.h"
#include "policy_fake.h"
#include "tables/rbl_zone.h"
#include "testing.h"

static struct tables_env *env;
static struct tables_reader *rd;
static char envdir[64];
static struct netlist *mynetworks;
static struct domain_list *mydestination, *relay_domains;

struct tcfg {
	const char *lists[SMTP_LIST_MAX];
	const char *classes;
	const char *class_defs[4][2];
	bool no_delay, soft_bounce;
	const char *rbl_reply_maps;
	unsigned unknown_client_code, unknown_hostname_code, unknown_address_code;
	bool tempfail_defer;
	const char *policy_default, *policy_context;
	const char *default_rbl_reply;
	/* check_greylist: its map ("" none) and allowlists (postgrey's formats) */
	const char *gl_map, *gl_clients, *gl_recipients;
};

static const char *class_value(void *ctx, const char *name)
{
	const struct tcfg *c = ctx;
	for (int i = 0; i < 4 && c->class_defs[i][0]; i++)
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
		cfg.lists[SMTP_LIST_RELAY] = "permit_mynetworks, reject_unauth_destination";
	cfg.restriction_classes = t->classes;
	cfg.class_value = class_value;
	cfg.class_ctx = (void *)t;
	cfg.delay_reject = !t->no_delay;
	cfg.soft_bounce = t->soft_bounce;
	cfg.reject_unlisted_recipient = true;
	smtp_policy_codes_defaults(&cfg.codes);
	if (t->unknown_client_code)
		cfg.codes.unknown_client_reject_code = t->unknown_client_code;
	if (t->unknown_hostname_code)
		cfg.codes.unknown_hostname_reject_code = t->unknown_hostname_code;
	if (t->unknown_address_code)
		cfg.codes.unknown_address_reject_code = t->unknown_address_code;
	if (t->tempfail_defer)
		cfg.codes.unknown_helo_hostname_tempfail_action =
			cfg.codes.unknown_address_tempfail_action = SMTP_POLICY_TEMPFAIL_DEFER;
	if (t->default_rbl_reply)
		cfg.codes.default_rbl_reply = t->default_rbl_reply;
	cfg.mynetworks = mynetworks;
	cfg.mydestination = mydestination;
	cfg.relay_domains = relay_domains;
	cfg.myorigin = "mx.example.net";
	cfg.myhostname = "mx.example.net";
	cfg.relay_recipient_maps = "";
	cfg.local_recipient_maps = "";
	cfg.rbl_reply_maps = t->rbl_reply_maps;
	cfg.access.parent_matches_subdomains = true;
	cfg.access.recipient_delimiter = "+";
	smtp_policy_service_defaults(&cfg.policy_service);
	if (t->policy_default)
		cfg.policy_service.default_action = t->policy_default;
	if (t->policy_context)
		cfg.policy_service.policy_context = t->policy_context;
	smtp_greylist_config_defaults(&cfg.greylist);
	cfg.greylist.map = t->gl_map ? t->gl_map : "lmdb:/var/lib/mxgate/greylist";
	if (t->gl_clients || t->gl_recipients) {
		cfg.greylist.allowlist = greylist_allowlist_new();
		char e2[200];
		if (t->gl_clients)
			CHECK_INT_EQ(greylist_allowlist_add(cfg.greylist.allowlist,
							    GREYLIST_LIST_CLIENTS, t->gl_clients,
							    strlen(t->gl_clients), NULL, NULL, e2,
							    sizeof(e2)),
				     0);
		if (t->gl_recipients)
			CHECK_INT_EQ(greylist_allowlist_add(cfg.greylist.allowlist,
							    GREYLIST_LIST_RECIPIENTS, t->gl_recipients,
							    strlen(t->gl_recipients), NULL, NULL, e2,
							    sizeof(e2)),
				     0);
	}
	return smtp_policy_compile(&cfg, p, err, errlen);
}

/* What one check (all its runs) delivered. */
struct out {
	struct smtp_policy_result r;
	char res[700];
	char ev[8192];
	char tr[16384];
	unsigned pendings;
};

static void on_event(void *ctx, const char *kind, const char *text)
{
	struct out *o = ctx;
	size_t n = strlen(o->ev);
	snprintf(o->ev + n, sizeof(o->ev) - n, "%s: %s\n", kind, text);
}

static void on_trace(void *ctx, enum smtp_restriction_list l, const char *r, const char *oc,
		     const char *d)
{
	struct out *o = ctx;
	size_t n = strlen(o->tr);
	snprintf(o->tr + n, sizeof(o->tr) - n, "%s|%s|%s|%s\n", smtp_restriction_list_name(l), r,
		 oc, d);
}

struct treq {
	enum smtp_policy_stage stage;
	const char *addr, *name, *rev, *helo, *sender, *rcpt;
	enum smtp_policy_name_status name_status, rev_status;
	unsigned count;
	const char *protocol;
};

#define RCPT(s, r)                                                                          \
	((struct treq){ .stage = SMTP_STAGE_RCPT, .helo = "mail.example.org", .sender = (s), \
			.rcpt = (r) })

static void mkreq(const struct treq *q, struct smtp_policy_request *req)
{
	*req = (struct smtp_policy_request){
		.stage = q->stage,
		.client_addr = q->addr ? q->addr : "192.0.2.1",
		.client_name = q->name ? q->name : "unknown",
		.reverse_name = q->rev ? q->rev : q->name ? q->name : "unknown",
		.client_name_status = q->name_status,
		.reverse_name_status = q->rev_status,
		.helo = q->helo,
		.sender = q->sender,
		.recipient = q->rcpt,
		.protocol = q->protocol ? q->protocol : "ESMTP",
		.recipient_count = q->count,
		.now = 1700000000,
		.server_addr = "198.51.100.25",
		.server_port = 25,
		.client_port = 40000,
		.queue_id = q->stage >= SMTP_STAGE_DATA ? "4XyZ1" : NULL,
		.instance = "a1.b2.c3.1",
		.size = 1234,
	};
}

/* One check until it completes, in `mode`: every PENDING run is checked to have delivered
 * nothing, changed nothing but the session's pending note, and asked one question. */
static void evaluate(struct smtp_policy_ctx *ctx, const struct treq *q, struct pf *f,
		     enum pf_mode mode, struct smtp_policy_actions *acts,
		     struct smtp_policy_session *sess, struct out *o)
{
	f->mode = mode;
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, f };
	lk.greylist = pf_greylist;
	struct smtp_policy_callbacks cb = { on_event, on_trace, o, &lk };
	struct smtp_policy_request req;
	mkreq(q, &req);
	req.session = sess;
	for (int i = 0; i < 1000; i++) {
		struct smtp_policy_actions abefore;
		struct smtp_policy_session sbefore;
		memcpy(&abefore, acts, sizeof(abefore));
		memcpy(&sbefore, sess, sizeof(sbefore));
		size_t evlen = strlen(o->ev), trlen = strlen(o->tr);
		CHECK_INT_EQ(smtp_policy_check(ctx, &req, acts, &cb, &o->r), 0);
		if (o->r.decision != SMTP_POLICY_PENDING)
			break;
		o->pendings++;
		CHECK(mode == PF_WAITING);
		CHECK_INT_EQ(f->asked_now, 1);
		CHECK_INT_EQ(strlen(o->ev), evlen);
		CHECK_INT_EQ(strlen(o->tr), trlen);
		CHECK(memcmp(&abefore, acts, sizeof(abefore)) == 0);
		CHECK(sess->pending.active);
		sbefore.pending = sess->pending;
		CHECK(memcmp(&sbefore, sess, sizeof(sbefore)) == 0);
		pf_arrive(f);
	}
	CHECK(!sess->pending.active);
	if (o->r.decision == SMTP_POLICY_ACCEPT)
		snprintf(o->res, sizeof(o->res), "OK");
	else {
		char text[sizeof(o->r.text)];
		memcpy(text, o->r.text, sizeof(text));
		snprintf(o->res, sizeof(o->res), "%u %s", o->r.code, text);
	}
}

static struct out last;    /* the direct run of the last case */
static struct pf lastf;    /* its questions (until the next case) */
static struct smtp_policy_actions lastacts;

/* Evaluate the stages of qs in order (one session, one transaction) both ways and
 * compare; returns the last stage's result ("OK" or "CODE TEXT"). */
static const char *run_seq(const struct tcfg *t, const struct treq *qs, size_t n,
			   const struct pf_answer *ans, size_t nans, const char *const *actions)
{
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[300];
	static char res[700];
	pf_forget(&lastf);
	if (compile(t, &p, err, sizeof(err)) < 0) {
		snprintf(res, sizeof(res), "compile: %s", err);
		return res;
	}
	CHECK_INT_EQ(tables_reader_renew(rd), 0);
	if (smtp_policy_ctx_new(p, rd, &ctx) < 0) {
		smtp_policy_free(p);
		return "ctx error";
	}
	static struct out o[2];
	static struct smtp_policy_actions acts[2];
	struct smtp_policy_session sess[2];
	struct pf *f = &lastf;
	for (int way = 0; way < 2; way++) {
		memset(&o[way], 0, sizeof(o[way]));
		memset(&acts[way], 0, sizeof(acts[way]));
		memset(&sess[way], 0, sizeof(sess[way]));
		struct pf fake = { .answers = ans, .nanswers = nans };
		for (size_t i = 0; actions && i < 8 && actions[i]; i++)
			fake.actions[fake.nactions++] = actions[i];
		for (size_t i = 0; i < n; i++) {
			o[way].res[0] = '\0';
			evaluate(ctx, &qs[i], &fake, way ? PF_WAITING : PF_DIRECT, &acts[way],
				 &sess[way], &o[way]);
			if (i + 1 < n)
				pf_forget(&fake);
		}
		if (way == 0)
			*f = fake; /* kept for pf_asked() */
		else
			pf_forget(&fake);
	}
	CHECK_STR_EQ(o[1].res, o[0].res);
	CHECK_STR_EQ(o[1].ev, o[0].ev);
	CHECK_STR_EQ(o[1].tr, o[0].tr);
	CHECK(memcmp(&o[1].r, &o[0].r, sizeof(o[0].r)) == 0);
	CHECK(memcmp(&acts[1], &acts[0], sizeof(acts[0])) == 0);
	CHECK(memcmp(&sess[1], &sess[0], sizeof(sess[0])) == 0);
	CHECK_INT_EQ(o[0].pendings, 0);
	struct smtp_policy_stats st;
	smtp_policy_ctx_stats(ctx, &st);
	CHECK_INT_EQ(st.replay_diverged, 0);
	CHECK_INT_EQ(st.pending, o[1].pendings);
	CHECK_INT_EQ(st.events_dropped, 0);
	last = o[0];
	lastacts = acts[0];
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
	snprintf(res, sizeof(res), "%s", o[0].res);
	return res;
}

static const char *run(const struct tcfg *t, struct treq q, const struct pf_answer *ans,
		       size_t nans)
{
	return run_seq(t, &q, 1, ans, nans, NULL);
}

static const char *run_policy(const struct tcfg *t, struct treq q, const char *action)
{
	const char *actions[2] = { action, NULL };
	return run_seq(t, &q, 1, NULL, 0, action ? actions : NULL);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define RS_OK DNS_RESULT_OK
#define RS_NODATA DNS_RESULT_NODATA
#define RS_NX DNS_RESULT_NXDOMAIN
#define RS_TEMP DNS_RESULT_TEMPFAIL

/* ---------------------------------------------------------------------------------------
 * DNS blocklists */

static void test_rbl_dns(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	const struct pf_answer listed[] = {
		{ DNS_TYPE_A, "1.2.0.192.zen.test", RS_OK, { "127.0.0.2" } },
		{ DNS_TYPE_TXT, "1.2.0.192.zen.test", RS_OK, { "Listed, see https://zen.test/q" } },
	};
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test; Listed, see https://zen.test/q");
	CHECK_STR_EQ(last.ev, "");
	CHECK(strstr(last.tr, "smtpd_client_restrictions|reject_rbl_client zen.test|REJECT|"
			      "A 1.2.0.192.zen.test: ok 127.0.0.2; TXT 1.2.0.192.zen.test: ok "
			      "Listed, see https://zen.test/q\n") != NULL);
	/* not listed: no TXT question */
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), NULL, 0), "OK");
	CHECK(pf_asked(&lastf, DNS_TYPE_A, "1.2.0.192.zen.test"));
	CHECK(!pf_asked(&lastf, DNS_TYPE_TXT, "1.2.0.192.zen.test"));
	/* a filter the answer does not pass: not listed, no TXT */
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test=127.0.0.[3..5]";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)), "OK");
	CHECK(!pf_asked(&lastf, DNS_TYPE_TXT, "1.2.0.192.zen.test"));
	/* one of several answers passes; several TXT records are joined; no TXT at all */
	const struct pf_answer multi[] = {
		{ DNS_TYPE_A, "1.2.0.192.zen.test", RS_OK, { "127.0.0.2", "127.0.0.4" } },
		{ DNS_TYPE_TXT, "1.2.0.192.zen.test", RS_OK, { "first", "second\x01" } },
	};
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), multi, N(multi)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test; first / second "); /* non-printable: a space, as Postfix */
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), multi, 1),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test");
	/* Spamhaus's error codes are never a listing, with or without a filter */
	const struct pf_answer refused[] = {
		{ DNS_TYPE_A, "1.2.0.192.zen.test", RS_OK, { "127.255.255.254" } },
	};
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), refused, N(refused)),
		     "OK");
	CHECK_STR_EQ(last.ev, "warning: RBL error code: 1.2.0.192.zen.test: zen.test answered "
			      "127.255.255.254, an error code, not a listing: treated as not "
			      "listed (a public or unregistered resolver, or too many queries?)\n");
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test=127.[0;255].[0;255].[2..255]";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), refused, N(refused)),
		     "OK");
	/* a temporary failure: Postfix gives the client the benefit of the doubt */
	const struct pf_answer temp[] = { { DNS_TYPE_A, "1.2.0.192.zen.test", RS_TEMP, { 0 } } };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test, reject";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), temp, N(temp)),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	CHECK_STR_EQ(last.ev, "warning: 1.2.0.192.zen.test: RBL lookup error: SERVFAIL from "
			      "127.0.0.53\n");
	/* an IPv6 client: 32 nibbles */
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	q.addr = "2001:db8::1";
	const struct pf_answer v6[] = {
		{ DNS_TYPE_A,
		  "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.test", RS_OK,
		  { "127.0.0.3" } },
	};
	CHECK_STR_EQ(run(&t, q, v6, N(v6)), "554 5.7.1 Service unavailable; Client host "
					    "[2001:db8::1] blocked using zen.test");
	/* warn_if_reject: logged, not enforced; then soft_bounce */
	t.lists[SMTP_LIST_CLIENT] = "warn_if_reject reject_rbl_client zen.test";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)), "OK");
	CHECK_STR_EQ(last.ev, "reject_warning: 554 5.7.1 Service unavailable; Client host "
			      "[192.0.2.1] blocked using zen.test; Listed, see "
			      "https://zen.test/q\n");
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	t.soft_bounce = true;
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "454 4.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test; Listed, see https://zen.test/q");
	CHECK_INT_EQ(last.r.decision, SMTP_POLICY_REJECT);
}

static void test_rbl_reply_maps(void)
{
	struct tcfg t = { 0 };
	/* the key is the list as written (a table folds its case); inline: cannot hold a
	 * key with '=', so the filter form is tested through its key elsewhere */
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client Zen.Test";
	t.rbl_reply_maps = "inline:{ { zen.test = $rbl_code 5.7.9 $rbl_class "
			   "$rbl_what via $rbl_domain (${rbl_reason:none}) helo=$helo_name "
			   "from=$sender_name at $sender_domain to=$recipient client=$client "
			   "port=$client_port server=$server_name $$5 } }";
	const struct pf_answer listed[] = {
		{ DNS_TYPE_A, "1.2.0.192.zen.test", RS_OK, { "127.0.0.2" } },
	};
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "554 5.7.9 Client host 192.0.2.1 via Zen.Test (none) helo=mail.example.org "
		     "from=s at example.org to=u@mx.example.net client=unknown[192.0.2.1] "
		     "port=40000 server=mx.example.net $5");
	/* no template for this list (the key is zen.test=127.0.0.2): default_rbl_reply */
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test=127.0.0.2";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test");
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	t.rbl_reply_maps = "inline:{ { zen.test = 550 5.7.1 $rbl_domain says no } }";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "550 5.7.1 zen.test says no");
	/* a broken template: a warning, and the default */
	t.rbl_reply_maps = "inline:{ { zen.test = 550 $no_such_name } }";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test");
	CHECK_STR_EQ(last.ev, "warning: rbl_reject_reply: bad rbl reply template for domain "
			      "zen.test: 550 $no_such_name\n");
	t.rbl_reply_maps = "inline:{ { zen.test = 550 $(rbl_reason } }";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "zen.test");
	/* a template that is no reply: 450 4.7.1 Service unavailable */
	t.rbl_reply_maps = "inline:{ { zen.test = blocked by $rbl_domain } }";
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), listed, N(listed)),
		     "450 4.7.1 Service unavailable");
	CHECK_STR_EQ(last.ev, "warning: rbl response code configuration error: blocked by "
			      "zen.test\n");
	/* ${name?{a}:{b}} and a sender's parts */
	t.rbl_reply_maps = "inline:{ { zen.test = 450 ${rbl_reason?{has}:{none}} ${sender_name} "
			   "${recipient_domain} } }";
	CHECK_STR_EQ(run(&t, RCPT("", "u@mx.example.net"), listed, N(listed)),
		     "450 4.7.1 none <> mx.example.net");
	/* a bad default_rbl_reply is a compile error */
	struct smtp_policy *p;
	char err[300];
	t.default_rbl_reply = "$rbl_code ${rbl_reason";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	t.default_rbl_reply = "$rbl_code $bogus";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
	CHECK_STR_EQ(err, "default_rbl_reply: unknown $name in \"$rbl_code $bogus\"");
	t.default_rbl_reply = "$rbl_code ${rbl_reason?{x}:{$bogus}}";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), -EINVAL);
}

static void test_dnswl_rhsbl(void)
{
	struct tcfg t = { 0 };
	/* permit_dnswl_client: a listing permits; a failure is defer_if_reject */
	t.lists[SMTP_LIST_CLIENT] = "permit_dnswl_client wl.test, reject";
	const struct pf_answer wl[] = {
		{ DNS_TYPE_A, "1.2.0.192.wl.test", RS_OK, { "127.0.10.1" } },
	};
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), wl, N(wl)), "OK");
	CHECK(!pf_asked(&lastf, DNS_TYPE_TXT, "1.2.0.192.wl.test"));
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), NULL, 0),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	const struct pf_answer temp[] = { { DNS_TYPE_A, "1.2.0.192.wl.test", RS_TEMP, { 0 } } };
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), temp, N(temp)),
		     "450 4.7.1 <192.0.2.1>: Client host rejected: Service unavailable");
	/* never for an unauthorized recipient (nothing asked) */
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@elsewhere.example"), wl, N(wl)),
		     "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied");
	CHECK_INT_EQ(lastf.nq, 0);

	/* the RHSBLs: a domain, an address's domain, a name */
	const struct pf_answer dbl[] = {
		{ DNS_TYPE_A, "spam.example.dbl.test", RS_OK, { "127.0.1.2" } },
		{ DNS_TYPE_TXT, "spam.example.dbl.test", RS_OK, { "spam domain" } },
		{ DNS_TYPE_A, "good.example.wl.test", RS_OK, { "127.0.0.2" } },
	};
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_SENDER] = "reject_rhsbl_sender dbl.test";
	CHECK_STR_EQ(run(&t, RCPT("a@Spam.Example", "u@mx.example.net"), dbl, N(dbl)),
		     "554 5.7.1 Service unavailable; Sender address [a@Spam.Example] blocked "
		     "using dbl.test; spam domain");
	CHECK_STR_EQ(run(&t, RCPT("a@ham.example", "u@mx.example.net"), dbl, N(dbl)), "OK");
	/* not asked: the null sender, an address literal, a numeric last label */
	CHECK_STR_EQ(run(&t, RCPT("", "u@mx.example.net"), dbl, N(dbl)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("a@[192.0.2.9]", "u@mx.example.net"), dbl, N(dbl)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("a@x.123", "u@mx.example.net"), dbl, N(dbl)), "OK");
	CHECK_INT_EQ(lastf.nq, 0);
	t.lists[SMTP_LIST_SENDER] = NULL;
	t.lists[SMTP_LIST_RELAY] = "permit";
	t.lists[SMTP_LIST_RECIPIENT] = "reject_rhsbl_recipient dbl.test";
	CHECK_STR_EQ(run(&t, RCPT("a@ham.example", "u@spam.example"), dbl, N(dbl)),
		     "554 5.7.1 Service unavailable; Recipient address [u@spam.example] blocked "
		     "using dbl.test; spam domain");
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_RELAY] = NULL;
	t.lists[SMTP_LIST_HELO] = "reject_rhsbl_helo dbl.test";
	struct treq q = RCPT("a@ham.example", "u@mx.example.net");
	q.helo = "spam.example";
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)), "554 5.7.1 Service unavailable; Helo command "
					      "[spam.example] blocked using dbl.test; spam "
					      "domain");
	t.lists[SMTP_LIST_HELO] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "reject_rhsbl_client dbl.test";
	q.name = "spam.example";
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)), "554 5.7.1 Service unavailable; Client host "
					      "[spam.example] blocked using dbl.test; spam "
					      "domain");
	q.name = NULL; /* "unknown": not asked */
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)), "OK");
	CHECK_INT_EQ(lastf.nq, 0);
	t.lists[SMTP_LIST_CLIENT] = "reject_rhsbl_reverse_client dbl.test";
	q.rev = "spam.example";
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)), "554 5.7.1 Service unavailable; Unverified Client "
					      "host [spam.example] blocked using dbl.test; "
					      "spam domain");
	q.rev = NULL;
	/* permit_rhswl_client */
	t.lists[SMTP_LIST_CLIENT] = "permit_rhswl_client wl.test, reject";
	q.name = "good.example";
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)), "OK");
	q.name = "other.example";
	CHECK_STR_EQ(run(&t, q, dbl, N(dbl)),
		     "554 5.7.1 <other.example[192.0.2.1]>: Client host rejected: Access denied");
}

static void test_rbl_local_first(void)
{
	char err[300] = "";
	const char *zone = "192.0.2.1 :127.0.0.2:Local listing\n";
	CHECK_INT_EQ(rbl_zone_build(env, "local.test", RBL_FORMAT_IP4SET, zone, strlen(zone), NULL,
				    NULL, NULL, err, sizeof(err)),
		     0);
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client local.test";
	const struct pf_answer dns[] = {
		{ DNS_TYPE_A, "1.2.0.192.local.test", RS_OK, { "127.0.0.9" } },
	};
	CHECK_STR_EQ(run(&t, RCPT("s@example.org", "u@mx.example.net"), dns, N(dns)),
		     "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
		     "local.test; Local listing");
	CHECK_INT_EQ(lastf.nq, 0); /* DNS was not asked */
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	q.addr = "192.0.2.2";
	CHECK_STR_EQ(run(&t, q, dns, N(dns)), "OK");
	CHECK_INT_EQ(lastf.nq, 0);
	/* no table store at all: DNS */
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, NULL, &ctx), 0);
	struct pf f = { .mode = PF_DIRECT, .answers = dns, .nanswers = N(dns) };
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, &f };
	struct out o = { 0 };
	struct smtp_policy_callbacks cb = { on_event, NULL, &o, &lk };
	struct smtp_policy_request req;
	mkreq(&q, &req);
	req.client_addr = "192.0.2.1";
	struct smtp_policy_result res;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_INT_EQ(res.code, 554);
	CHECK(pf_asked(&f, DNS_TYPE_A, "1.2.0.192.local.test"));
	pf_forget(&f);
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
}

/* ---------------------------------------------------------------------------------------
 * reject_unknown_* */

static void test_unknown_client(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_unknown_client_hostname";
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	q.name = "client.example";
	CHECK_STR_EQ(run(&t, q, NULL, 0), "OK");
	q.name = NULL; /* "unknown", status not given: no name */
	CHECK_STR_EQ(run(&t, q, NULL, 0), "450 4.7.25 Client host rejected: cannot find your "
					  "hostname, [192.0.2.1]");
	t.unknown_client_code = 550;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.25 Client host rejected: cannot find your "
					  "hostname, [192.0.2.1]");
	q.name_status = SMTP_POLICY_NAME_FORGED;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.25 Client host rejected: cannot find your "
					  "hostname, [192.0.2.1]");
	q.name_status = SMTP_POLICY_NAME_TEMP; /* a temporary failure is always 450 */
	CHECK_STR_EQ(run(&t, q, NULL, 0), "450 4.7.25 Client host rejected: cannot find your "
					  "hostname, [192.0.2.1]");
	/* the reverse name: only PERM gets the configured code */
	t.lists[SMTP_LIST_CLIENT] = "reject_unknown_reverse_client_hostname";
	q.name_status = SMTP_POLICY_NAME_FORGED;
	q.rev = "ptr.example";
	q.rev_status = SMTP_POLICY_NAME_OK;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "OK");
	q.rev = NULL;
	q.rev_status = SMTP_POLICY_NAME_PERM;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.1 Client host rejected: cannot find your "
					  "reverse hostname, [192.0.2.1]");
	q.rev_status = SMTP_POLICY_NAME_TEMP;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "450 4.7.1 Client host rejected: cannot find your "
					  "reverse hostname, [192.0.2.1]");
	/* warn_if_reject */
	t.lists[SMTP_LIST_CLIENT] = "warn_if_reject reject_unknown_reverse_client_hostname";
	CHECK_STR_EQ(run(&t, q, NULL, 0), "OK");
	CHECK_STR_EQ(last.ev, "reject_warning: 450 4.7.1 Client host rejected: cannot find your "
			      "reverse hostname, [192.0.2.1]\n");
}

static void test_unknown_helo(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_HELO] = "reject_unknown_helo_hostname";
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	q.helo = "Mail.Example.ORG";
	const struct pf_answer a[] = { { DNS_TYPE_A, "mail.example.org", RS_OK, { "192.0.2.7" } } };
	CHECK_STR_EQ(run(&t, q, a, N(a)), "OK");
	CHECK(!pf_asked(&lastf, DNS_TYPE_AAAA, "mail.example.org"));
	const struct pf_answer mx[] = {
		{ DNS_TYPE_A, "mail.example.org", RS_NODATA, { 0 } },
		{ DNS_TYPE_AAAA, "mail.example.org", RS_NODATA, { 0 } },
		{ DNS_TYPE_MX, "mail.example.org", RS_OK, { "10 mx.example.org" } },
	};
	CHECK_STR_EQ(run(&t, q, mx, N(mx)), "OK");
	const struct pf_answer nullmx[] = {
		{ DNS_TYPE_MX, "mail.example.org", RS_OK, { "0 ." } },
	};
	CHECK_STR_EQ(run(&t, q, nullmx, N(nullmx)), "OK"); /* MTA names may have a null MX */
	CHECK_STR_EQ(run(&t, q, NULL, 0), "450 4.7.1 <Mail.Example.ORG>: Helo command rejected: "
					  "Host not found");
	CHECK(pf_asked(&lastf, DNS_TYPE_A, "mail.example.org") &&
	      pf_asked(&lastf, DNS_TYPE_AAAA, "mail.example.org") &&
	      pf_asked(&lastf, DNS_TYPE_MX, "mail.example.org"));
	t.unknown_hostname_code = 550;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.1 <Mail.Example.ORG>: Helo command rejected: "
					  "Host not found");
	/* a temporary failure (the best of A, AAAA, MX): defer_if_permit */
	const struct pf_answer temp[] = {
		{ DNS_TYPE_AAAA, "mail.example.org", RS_TEMP, { 0 } },
	};
	CHECK_STR_EQ(run(&t, q, temp, N(temp)), "450 4.7.1 <Mail.Example.ORG>: Helo command "
						"rejected: Host not found");
	/* ... which a later reject overrides */
	t.lists[SMTP_LIST_HELO] = "reject_unknown_helo_hostname, reject";
	CHECK_STR_EQ(run(&t, q, temp, N(temp)), "554 5.7.1 <Mail.Example.ORG>: Helo command "
						"rejected: Access denied");
	t.tempfail_defer = true; /* unknown_helo_hostname_tempfail_action = defer */
	CHECK_STR_EQ(run(&t, q, temp, N(temp)), "450 4.7.1 <Mail.Example.ORG>: Helo command "
						"rejected: Host not found");
	t.tempfail_defer = false;
	/* not asked: a numeric HELO is not found; an address literal is checked as such */
	t.lists[SMTP_LIST_HELO] = "reject_unknown_helo_hostname";
	q.helo = "192.0.2.7";
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.1 <192.0.2.7>: Helo command rejected: Host "
					  "not found");
	CHECK_INT_EQ(lastf.nq, 0);
	q.helo = "[192.0.2.7]";
	CHECK_STR_EQ(run(&t, q, NULL, 0), "OK");
	q.helo = "[192.0.2.777]";
	CHECK_STR_EQ(run(&t, q, NULL, 0), "501 5.5.2 <[192.0.2.777]>: Helo command rejected: "
					  "invalid ip address");
	q.helo = "mail.example.org."; /* valid_hostname() refuses the trailing dot */
	CHECK_STR_EQ(run(&t, q, NULL, 0), "550 5.7.1 <mail.example.org.>: Helo command "
					  "rejected: Host not found");
	CHECK_INT_EQ(lastf.nq, 0);
	q.helo = NULL;
	CHECK_STR_EQ(run(&t, q, NULL, 0), "OK");
	/* with warn_if_reject a temporary failure is a reject_warning, not a flag */
	q.helo = "mail.example.org";
	t.lists[SMTP_LIST_HELO] = "warn_if_reject reject_unknown_helo_hostname";
	CHECK_STR_EQ(run(&t, q, temp, N(temp)), "OK");
	CHECK_STR_EQ(last.ev, "reject_warning: 450 4.7.1 <mail.example.org>: Helo command "
			      "rejected: Host not found\n");
}

static void test_unknown_domain(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_SENDER] = "reject_unknown_sender_domain";
	const struct pf_answer ans[] = {
		{ DNS_TYPE_MX, "ok.example", RS_OK, { "10 mx.ok.example" } },
		{ DNS_TYPE_MX, "aonly.example", RS_NODATA, { 0 } },
		{ DNS_TYPE_A, "aonly.example", RS_OK, { "192.0.2.8" } },
		{ DNS_TYPE_MX, "null.example", RS_OK, { "0 ." } },
		{ DNS_TYPE_A, "null.example", RS_OK, { "192.0.2.9" } },
		{ DNS_TYPE_MX, "temp.example", RS_TEMP, { 0 } },
	};
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK(!pf_asked(&lastf, DNS_TYPE_A, "ok.example"));
	CHECK_STR_EQ(run(&t, RCPT("a@aonly.example", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("a@nx.example", "u@mx.example.net"), ans, N(ans)),
		     "450 4.1.8 <a@nx.example>: Sender address rejected: Domain not found");
	CHECK(pf_asked(&lastf, DNS_TYPE_AAAA, "nx.example"));
	t.unknown_address_code = 550;
	CHECK_STR_EQ(run(&t, RCPT("a@nx.example", "u@mx.example.net"), ans, N(ans)),
		     "550 5.1.8 <a@nx.example>: Sender address rejected: Domain not found");
	/* RFC 7505 null MX: no A lookup, Postfix 3.7's codes */
	CHECK_STR_EQ(run(&t, RCPT("a@null.example", "u@mx.example.net"), ans, N(ans)),
		     "550 5.7.27 <a@null.example>: Sender address rejected: Domain null.example "
		     "does not accept mail (nullMX)");
	CHECK(!pf_asked(&lastf, DNS_TYPE_A, "null.example"));
	/* a temporary failure: defer_if_permit, or defer */
	CHECK_STR_EQ(run(&t, RCPT("a@temp.example", "u@mx.example.net"), ans, N(ans)),
		     "450 4.1.8 <a@temp.example>: Sender address rejected: Domain not found");
	t.lists[SMTP_LIST_SENDER] = "reject_unknown_sender_domain, permit";
	t.lists[SMTP_LIST_RECIPIENT] = "reject";
	CHECK_STR_EQ(run(&t, RCPT("a@temp.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.tempfail_defer = true;
	CHECK_STR_EQ(run(&t, RCPT("a@temp.example", "u@mx.example.net"), ans, N(ans)),
		     "450 4.1.8 <a@temp.example>: Sender address rejected: Domain not found");
	t.tempfail_defer = false;
	/* not asked: mydestination, an address literal, the null sender, non-ASCII */
	CHECK_STR_EQ(run(&t, RCPT("a@mx.example.net", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("a@[192.0.2.1]", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(run(&t, RCPT("a@b\xc3\xbc.example", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_INT_EQ(lastf.nq, 0);
	/* the recipient's domain */
	t.lists[SMTP_LIST_SENDER] = NULL;
	t.lists[SMTP_LIST_RECIPIENT] = "reject_unknown_recipient_domain";
	t.lists[SMTP_LIST_RELAY] = "permit";
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@null.example"), ans, N(ans)),
		     "556 5.1.10 <u@null.example>: Recipient address rejected: Domain "
		     "null.example does not accept mail (nullMX)");
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@nx.example"), ans, N(ans)),
		     "550 5.1.2 <u@nx.example>: Recipient address rejected: Domain not found");
	t.soft_bounce = true;
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@null.example"), ans, N(ans)),
		     "456 4.1.10 <u@null.example>: Recipient address rejected: Domain "
		     "null.example does not accept mail (nullMX)");
}

/* ---------------------------------------------------------------------------------------
 * check_*_{mx,ns,a}_access */

static void test_server_access(void)
{
	struct tcfg t = { 0 };
	const struct pf_answer ans[] = {
		{ DNS_TYPE_MX, "bad.example", RS_OK, { "10 mx1.good.example", "20 mx.bad.example" } },
		{ DNS_TYPE_A, "mx1.good.example", RS_OK, { "192.0.2.10" } },
		{ DNS_TYPE_AAAA, "mx1.good.example", RS_NODATA, { 0 } },
		{ DNS_TYPE_MX, "addr.example", RS_OK, { "10 mx.addr.example" } },
		{ DNS_TYPE_A, "mx.addr.example", RS_OK, { "192.0.2.66" } },
		{ DNS_TYPE_MX, "v6.example", RS_OK, { "10 mx.v6.example" } },
		{ DNS_TYPE_AAAA, "mx.v6.example", RS_OK, { "2001:db8::66" } },
		{ DNS_TYPE_MX, "nomx.example", RS_NODATA, { 0 } },
		{ DNS_TYPE_A, "nomx.example", RS_OK, { "192.0.2.66" } },
		{ DNS_TYPE_MX, "nullmx.example", RS_OK, { "0 ." } },
		{ DNS_TYPE_MX, "temp.example", RS_TEMP, { 0 } },
		{ DNS_TYPE_NS, "sub.zone.example", RS_NODATA, { 0 } },
		{ DNS_TYPE_NS, "zone.example", RS_OK, { "ns.bad.example" } },
		{ DNS_TYPE_MX, "ok.example", RS_OK, { "10 mx.ok.example" } },
		{ DNS_TYPE_A, "mx.ok.example", RS_OK, { "192.0.2.77" } },
	};
	t.lists[SMTP_LIST_SENDER] =
		"check_sender_mx_access inline:{ mx.bad.example=REJECT, "
		"{ 192.0.2.66 = REJECT bad mail server address }, { 2001:db8::66 = REJECT v6 }, "
		"mx.ok.example=OK }";
	CHECK_STR_EQ(run(&t, RCPT("a@bad.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@bad.example>: Sender address rejected: Access denied");
	/* the first server's addresses were checked before the second server's name */
	CHECK(pf_asked(&lastf, DNS_TYPE_A, "mx1.good.example"));
	CHECK_STR_EQ(run(&t, RCPT("a@addr.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@addr.example>: Sender address rejected: bad mail server "
		     "address");
	CHECK_STR_EQ(run(&t, RCPT("a@v6.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@v6.example>: Sender address rejected: v6");
	/* no MX: the domain is its own server */
	CHECK_STR_EQ(run(&t, RCPT("a@nomx.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@nomx.example>: Sender address rejected: bad mail server "
		     "address");
	CHECK_STR_EQ(run(&t, RCPT("a@nullmx.example", "u@mx.example.net"), ans, N(ans)), "OK");
	/* a temporary failure: a warning, and no opinion */
	CHECK_STR_EQ(run(&t, RCPT("a@temp.example", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(last.ev, "warning: Unable to look up MX host for temp.example: Host not "
			      "found, try again\n");
	/* an address literal is its own MX */
	CHECK_STR_EQ(run(&t, RCPT("a@[192.0.2.66]", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@[192.0.2.66]>: Sender address rejected: bad mail server "
		     "address");
	/* OK is refused: a DNS answer must never allowlist */
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@mx.example.net"), ans, N(ans)),
		     "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(last.ev, "warning: restriction check_sender_mx_access returns OK for "
			      "a@ok.example\n"
			      "warning: this is not allowed for security reasons\n"
			      "warning: use DUNNO instead of OK if you want to make an exception\n");
	/* NS: the parents of a name without NS records */
	t.lists[SMTP_LIST_SENDER] = "check_sender_ns_access inline:{ ns.bad.example=REJECT }";
	CHECK_STR_EQ(run(&t, RCPT("a@sub.zone.example", "u@mx.example.net"), ans, N(ans)),
		     "554 5.7.1 <a@sub.zone.example>: Sender address rejected: Access denied");
	CHECK_STR_EQ(run(&t, RCPT("a@x.nowhere", "u@mx.example.net"), ans, N(ans)), "OK");
	CHECK_STR_EQ(last.ev, "warning: Unable to look up NS host for a@x.nowhere: Host not "
			      "found\n");
	/* A: the name's own addresses, no name check */
	t.lists[SMTP_LIST_SENDER] = NULL;
	t.lists[SMTP_LIST_HELO] = "check_helo_a_access inline:{ 192.0.2.66=REJECT, "
				  "mx.addr.example=REJECT }";
	struct treq q = RCPT("a@ok.example", "u@mx.example.net");
	q.helo = "mx.addr.example";
	CHECK_STR_EQ(run(&t, q, ans, N(ans)), "554 5.7.1 <mx.addr.example>: Helo command "
					      "rejected: Access denied");
	q.helo = "mx1.good.example";
	CHECK_STR_EQ(run(&t, q, ans, N(ans)), "OK");
	/* the client's name, the reverse name, the recipient */
	t.lists[SMTP_LIST_HELO] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_client_mx_access inline:{ mx.bad.example=REJECT }";
	q.name = "bad.example";
	CHECK_STR_EQ(run(&t, q, ans, N(ans)), "554 5.7.1 <bad.example[192.0.2.1]>: Client host "
					      "rejected: Access denied");
	q.name = NULL;
	CHECK_STR_EQ(run(&t, q, ans, N(ans)), "OK");
	CHECK_INT_EQ(lastf.nq, 0);
	t.lists[SMTP_LIST_CLIENT] = "check_reverse_client_mx_access inline:{ mx.bad.example=REJECT }";
	q.rev = "bad.example";
	CHECK_STR_EQ(run(&t, q, ans, N(ans)), "554 5.7.1 <bad.example>: Unverified Client host "
					      "rejected: Access denied");
	t.lists[SMTP_LIST_CLIENT] = NULL;
	t.lists[SMTP_LIST_RELAY] = "permit";
	t.lists[SMTP_LIST_RECIPIENT] = "check_recipient_mx_access inline:{ mx.bad.example=REJECT }";
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@bad.example"), ans, N(ans)),
		     "554 5.7.1 <u@bad.example>: Recipient address rejected: Access denied");
	/* a matched DUNNO ends the search */
	t.lists[SMTP_LIST_RECIPIENT] = "check_recipient_mx_access inline:{ mx1.good.example=DUNNO, "
				       "mx.bad.example=REJECT }";
	CHECK_STR_EQ(run(&t, RCPT("a@ok.example", "u@bad.example"), ans, N(ans)), "OK");
}

/* ---------------------------------------------------------------------------------------
 * smtpd_delay_reject = no: the stages, one session */

static void test_stages_without_delay(void)
{
	struct tcfg t = { 0 };
	t.no_delay = true;
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	t.lists[SMTP_LIST_HELO] = "reject_unknown_helo_hostname";
	t.lists[SMTP_LIST_SENDER] = "reject_unknown_sender_domain";
	const struct pf_answer ans[] = {
		{ DNS_TYPE_AAAA, "helo.example", RS_TEMP, { 0 } },
		{ DNS_TYPE_MX, "ok.example", RS_OK, { "10 mx.ok.example" } },
	};
	struct treq qs[4] = {
		{ .stage = SMTP_STAGE_CONNECT },
		{ .stage = SMTP_STAGE_HELO, .helo = "helo.example" },
		{ .stage = SMTP_STAGE_MAIL, .helo = "helo.example", .sender = "a@ok.example" },
		{ .stage = SMTP_STAGE_RCPT, .helo = "helo.example", .sender = "a@ok.example",
		  .rcpt = "u@mx.example.net" },
	};
	/* the HELO's temporary failure is remembered by the session (defer_if_permit) and
	 * turns the recipient's permit into its 450 */
	CHECK_STR_EQ(run_seq(&t, qs, 4, ans, N(ans), NULL),
		     "450 4.7.1 <helo.example>: Helo command rejected: Host not found");
	/* each stage alone accepts */
	CHECK_STR_EQ(run_seq(&t, qs, 3, ans, N(ans), NULL), "OK");
	CHECK_STR_EQ(run_seq(&t, qs, 2, ans, N(ans), NULL), "OK");
}

/* ---------------------------------------------------------------------------------------
 * check_greylist: the question asked of the greylist service, its answers applied as
 * postgrey's through check_policy_service, the allowlists that answer at once */

static void test_greylist(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = "check_greylist, permit";
	struct treq q = RCPT("bounce-123+x@Lists.Example", "u@mx.example.net");
	/* postgrey's first answer: Postfix's reply keeps its 4.2.0 */
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT 4.2.0 Greylisted, see "
				       "http://postgrey.schweikert.ch/help/mx.example.net.html"),
		     "450 4.2.0 <u@mx.example.net>: Recipient address rejected: Greylisted, see "
		     "http://postgrey.schweikert.ch/help/mx.example.net.html");
	/* the question: keys, the message, every parameter */
	const char *rq = lastf.last_request;
	CHECK(strstr(rq, "map=lmdb:/var/lib/mxgate/greylist\n") != NULL);
	CHECK(strstr(rq, "client=192.0.2.1\n") != NULL);
	CHECK(strstr(rq, "key=192.0.2.0/bounce-#@lists.example/u@mx.example.net\n") != NULL);
	CHECK(strstr(rq, "recipient=u@mx.example.net\n") != NULL);
	CHECK(strstr(rq, "instance=a1.b2.c3.1\n") != NULL);
	CHECK(strstr(rq, "action=DEFER_IF_PERMIT\n") != NULL);
	CHECK(strstr(rq, "host=mx.example.net\n") != NULL);
	CHECK(strstr(rq, "delay=300\n") != NULL);
	CHECK(strstr(rq, "awl_clients=5\n") != NULL);
	/* a retry that passes: the header goes on the message */
	CHECK_STR_EQ(run_policy(&t, q, "PREPEND X-Greylist: delayed 301 seconds by mxgate-1 at "
				       "mx.example.net; Mon, 07 Dec 2026 17:00:00 UTC"),
		     "OK");
	CHECK_INT_EQ(lastacts.nprepend, 1);
	CHECK_STR_EQ(lastacts.prepend[0], "X-Greylist: delayed 301 seconds by mxgate-1 at "
					  "mx.example.net; Mon, 07 Dec 2026 17:00:00 UTC");
	CHECK_STR_EQ(run_policy(&t, q, "DUNNO"), "OK");
	/* DEFER_IF_PERMIT is lifted by a reject after it */
	t.lists[SMTP_LIST_RECIPIENT] = "check_greylist, reject";
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT 4.2.0 Greylisted"),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	t.lists[SMTP_LIST_RECIPIENT] = "check_greylist, permit";
	/* the service cannot answer: the default action */
	CHECK_STR_EQ(run_policy(&t, q, NULL),
		     "451 4.3.5 <u@mx.example.net>: Recipient address rejected: Server "
		     "configuration problem");
	/* no map: no question, the default action and a warning */
	t.gl_map = "";
	CHECK_STR_EQ(run_policy(&t, q, "DUNNO"),
		     "451 4.3.5 <u@mx.example.net>: Recipient address rejected: Server "
		     "configuration problem");
	CHECK_INT_EQ(lastf.np, 0);
	CHECK(strstr(last.ev, "mxgate_greylist_map is empty") != NULL);
	t.gl_map = NULL;
	/* allowlists answer at once, without a question */
	t.gl_clients = "# Debian's format\n192.0.2.0/24\n";
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT greylisted"), "OK");
	CHECK_INT_EQ(lastf.np, 0);
	t.gl_clients = "mail.example.org\n";
	struct treq named = q;
	named.name = "out.MAIL.example.org";
	CHECK_STR_EQ(run_policy(&t, named, "DEFER_IF_PERMIT greylisted"), "OK");
	CHECK_INT_EQ(lastf.np, 0);
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT 4.2.0 greylisted"),
		     "450 4.2.0 <u@mx.example.net>: Recipient address rejected: greylisted");
	CHECK_INT_EQ(lastf.np, 1);
	t.gl_recipients = "u@\n";
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT greylisted"), "OK");
	CHECK_INT_EQ(lastf.np, 0);
	t.gl_clients = t.gl_recipients = NULL;
	/* an IPv6 client: its /64 */
	struct treq v6 = q;
	v6.addr = "2001:db8:1:2:3:4:5:6";
	CHECK_STR_EQ(run_policy(&t, v6, "DUNNO"), "OK");
	CHECK(strstr(lastf.last_request, "key=2001:db8:1:2:0:0:0:0/bounce-#@lists.example/") != NULL);
	CHECK(strstr(lastf.last_request, "client=2001:DB8:1:2:3:4:5:6\n") != NULL);
	/* in the client list with delay_reject: asked at RCPT with the recipient, refused
	 * in the client's words, as Postfix refuses a policy reply there */
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_CLIENT] = "check_greylist";
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT 4.2.0 Greylisted"),
		     "450 4.2.0 <unknown[192.0.2.1]>: Client host rejected: Greylisted");
	CHECK(strstr(lastf.last_request, "recipient=u@mx.example.net\n") != NULL);
}

/* ---------------------------------------------------------------------------------------
 * check_policy_service */

static void test_policy_replies(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service inet:127.0.0.1:10023, permit";
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	CHECK_STR_EQ(run_policy(&t, q, "OK"), "OK");
	CHECK_STR_EQ(run_policy(&t, q, "DUNNO"), "OK");
	CHECK_STR_EQ(run_policy(&t, q, "REJECT blocked by policy"),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: blocked by policy");
	CHECK_STR_EQ(run_policy(&t, q, "REJECT"),
		     "554 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	/* a bare status after REJECT: the default text (Postfix 3.7.11 showed stale bytes,
	 * CVE-2026-43964) */
	CHECK_STR_EQ(run_policy(&t, q, "REJECT 5.7.2"),
		     "554 5.7.2 <u@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(run_policy(&t, q, "450 4.7.1 try later"),
		     "450 4.7.1 <u@mx.example.net>: Recipient address rejected: try later");
	CHECK_STR_EQ(run_policy(&t, q, "550 5.7.1"),
		     "550 5.7.1 <u@mx.example.net>: Recipient address rejected: Access denied");
	CHECK_STR_EQ(run_policy(&t, q, "554 4.7.2 mixed"),
		     "554 5.7.2 <u@mx.example.net>: Recipient address rejected: mixed");
	CHECK_STR_EQ(run_policy(&t, q, "421 4.7.0 go away"),
		     "421 4.7.0 <u@mx.example.net>: Recipient address rejected: go away");
	CHECK(last.r.disconnect);
	/* what Debian's Postfix 3.7.11 does with odd replies (smtp_delegation.h) */
	CHECK_STR_EQ(run_policy(&t, q, "5.7.2"), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(last.ev, "warning: unknown smtpd restriction: \"5.7.2\"\n");
	CHECK_STR_EQ(run_policy(&t, q, "4.7.1 Try later"), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(run_policy(&t, q, "550 "), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(run_policy(&t, q, "250 fine"), "451 4.3.5 Server configuration error");
	CHECK_STR_EQ(run_policy(&t, q, "OK:"), "451 4.3.5 Server configuration error");
	CHECK(strstr(last.ev, "warning: access table inet:127.0.0.1:10023 has entry with lookup "
			      "table: OK:\n") != NULL);
	CHECK_STR_EQ(run_policy(&t, q, "550"), "OK");
	CHECK_STR_EQ(run_policy(&t, q, "450"), "OK");
	CHECK_STR_EQ(run_policy(&t, q, ""), "OK");
	CHECK_STR_EQ(last.ev, "warning: access table inet:127.0.0.1:10023 entry  has empty "
			      "value\n");
	CHECK_STR_EQ(run_policy(&t, q, "FOOBAR"), "451 4.3.5 Server configuration error");
	/* a restriction list as the reply */
	CHECK_STR_EQ(run_policy(&t, q, "reject_unauth_destination, defer"),
		     "450 4.3.2 <u@mx.example.net>: Recipient address rejected: Try again later");
	/* DEFER_IF_PERMIT, DEFER_IF_REJECT */
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_PERMIT Service temporarily unavailable"),
		     "450 4.7.1 <u@mx.example.net>: Recipient address rejected: Service "
		     "temporarily unavailable");
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service inet:127.0.0.1:10023, reject";
	CHECK_STR_EQ(run_policy(&t, q, "DEFER_IF_REJECT greylisted"),
		     "450 4.7.1 <u@mx.example.net>: Recipient address rejected: greylisted");
	/* delegated actions */
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service inet:127.0.0.1:10023, permit";
	CHECK_STR_EQ(run_policy(&t, q, "PREPEND X-Greylist: delayed 61 seconds"), "OK");
	CHECK_INT_EQ(lastacts.nprepend, 1);
	CHECK_STR_EQ(lastacts.prepend[0], "X-Greylist: delayed 61 seconds");
	CHECK_STR_EQ(run_policy(&t, q, "PREPEND no header"), "OK");
	CHECK_INT_EQ(lastacts.nprepend, 0);
	CHECK_STR_EQ(last.ev, "warning: access table inet:127.0.0.1:10023 entry \"policy query\" "
			      "requires header: text\n");
	CHECK_STR_EQ(run_policy(&t, q, "HOLD suspicious"), "OK");
	CHECK(lastacts.hold);
	CHECK_STR_EQ(last.ev, "hold: <u@mx.example.net>: Recipient address suspicious\n");
	CHECK_STR_EQ(run_policy(&t, q, "DISCARD"), "OK");
	CHECK(lastacts.discard);
	CHECK_STR_EQ(run_policy(&t, q, "FILTER smtp:[127.0.0.1]:10025"), "OK");
	CHECK_STR_EQ(lastacts.filter, "smtp:[127.0.0.1]:10025");
	CHECK_STR_EQ(run_policy(&t, q, "REDIRECT other@example.net"), "OK");
	CHECK_STR_EQ(lastacts.redirect, "other@example.net");
	CHECK_STR_EQ(run_policy(&t, q, "BCC copy@example.net"), "OK");
	CHECK_STR_EQ(lastacts.bcc, "copy@example.net");
	CHECK_STR_EQ(run_policy(&t, q, "WARN looks odd"), "OK");
	CHECK_STR_EQ(last.ev, "warn: looks odd\n");
	CHECK_STR_EQ(run_policy(&t, q, "INFO noted"), "OK");
	CHECK_STR_EQ(last.ev, "info: noted\n");
	/* HANGUP: close without a reply */
	run_policy(&t, q, "HANGUP bye");
	CHECK(last.r.hangup && last.r.disconnect);
	CHECK_STR_EQ(last.ev, "hangup: bye\n");
	/* the default action of a failed query */
	CHECK_STR_EQ(run_policy(&t, q, NULL), "451 4.3.5 <u@mx.example.net>: Recipient address "
					      "rejected: Server configuration problem");
	t.policy_default = "DUNNO";
	CHECK_STR_EQ(run_policy(&t, q, NULL), "OK");
	t.policy_default = NULL;
	t.lists[SMTP_LIST_RECIPIENT] =
		"check_policy_service { inet:127.0.0.1:10023, timeout=10s, "
		"{ default_action = DEFER_IF_PERMIT policy server down } }, permit";
	CHECK_STR_EQ(run_policy(&t, q, NULL), "450 4.7.1 <u@mx.example.net>: Recipient address "
					      "rejected: policy server down");
	/* a default action that asks a failing policy service again: Postfix's own */
	t.classes = "pol";
	t.class_defs[0][0] = "pol";
	t.class_defs[0][1] = "check_policy_service unix:private/policy";
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service { unix:private/policy, "
				       "default_action=pol }";
	CHECK_STR_EQ(run_policy(&t, q, NULL), "451 4.3.5 <u@mx.example.net>: Recipient address "
					      "rejected: Server configuration problem");
}

static void test_policy_request(void)
{
	struct tcfg t = { 0 };
	t.policy_context = "ctx1";
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service inet:127.0.0.1:10023";
	struct treq q = RCPT("s@example.org", "u@mx.example.net");
	q.name = "client.example";
	run_policy(&t, q, "DUNNO");
	CHECK_STR_EQ(lastf.last_request,
		     "request=smtpd_access_policy\n"
		     "protocol_state=RCPT\n"
		     "protocol_name=ESMTP\n"
		     "client_address=192.0.2.1\n"
		     "client_name=client.example\n"
		     "client_port=40000\n"
		     "reverse_client_name=client.example\n"
		     "server_address=198.51.100.25\n"
		     "server_port=25\n"
		     "helo_name=mail.example.org\n"
		     "sender=s@example.org\n"
		     "recipient=u@mx.example.net\n"
		     "recipient_count=0\n"
		     "queue_id=\n"
		     "instance=a1.b2.c3.1\n"
		     "size=1234\n"
		     "etrn_domain=\n"
		     "stress=\n"
		     "sasl_method=\n"
		     "sasl_username=\n"
		     "sasl_sender=\n"
		     "ccert_subject=\n"
		     "ccert_issuer=\n"
		     "ccert_fingerprint=\n"
		     "ccert_pubkey_fingerprint=\n"
		     "encryption_protocol=\n"
		     "encryption_cipher=\n"
		     "encryption_keysize=0\n"
		     "policy_context=ctx1\n"
		     "\n");
	/* per-item policy_context; the data stage with several recipients */
	t.lists[SMTP_LIST_RECIPIENT] = NULL;
	t.lists[SMTP_LIST_DATA] = "check_policy_service { inet:127.0.0.1:10023, "
				  "policy_context=data }";
	q.stage = SMTP_STAGE_DATA;
	q.count = 3;
	run_policy(&t, q, "DUNNO");
	CHECK(strstr(lastf.last_request, "protocol_state=DATA\n") != NULL);
	CHECK(strstr(lastf.last_request, "recipient=\nrecipient_count=3\nqueue_id=4XyZ1\n") !=
	      NULL);
	CHECK(strstr(lastf.last_request, "policy_context=data\n") != NULL);
	/* HELO and EHLO (smtpd_delay_reject = no) */
	t.no_delay = true;
	t.lists[SMTP_LIST_DATA] = NULL;
	t.lists[SMTP_LIST_HELO] = "check_policy_service inet:127.0.0.1:10023";
	q = (struct treq){ .stage = SMTP_STAGE_HELO, .helo = "h.example", .protocol = "SMTP" };
	run_policy(&t, q, "DUNNO");
	CHECK(strstr(lastf.last_request, "protocol_state=HELO\nprotocol_name=SMTP\n") != NULL);
	CHECK(strstr(lastf.last_request, "sender=\nrecipient=\n") != NULL);
	q.protocol = "ESMTP";
	run_policy(&t, q, "DUNNO");
	CHECK(strstr(lastf.last_request, "protocol_state=EHLO\n") != NULL);
	/* a value the protocol cannot carry: a failed query */
	q.helo = "h\nx=y";
	CHECK_STR_EQ(run_policy(&t, q, "REJECT"), "451 4.3.5 <h x=y>: Helo command rejected: "
						  "Server configuration problem");
	CHECK_STR_EQ(last.ev, "warning: policy service inet:127.0.0.1:10023: cannot send the "
			      "request: Invalid argument\n");
	/* the services, each once */
	struct smtp_policy *p;
	char err[300];
	t.lists[SMTP_LIST_HELO] = "check_policy_service inet:127.0.0.1:10023";
	t.lists[SMTP_LIST_RECIPIENT] = "check_policy_service inet:127.0.0.1:10023, "
				       "check_policy_service { inet:127.0.0.1:10023, try_limit=5, "
				       "request_limit=7, max_idle=1m, max_ttl=1h, retry_delay=3 }";
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_service_count(p), 2);
	const struct smtp_policy_service *s = smtp_policy_service_get(p, 1);
	CHECK_STR_EQ(s->endpoint, "inet:127.0.0.1:10023");
	CHECK_INT_EQ(s->try_limit, 5);
	CHECK_INT_EQ(s->request_limit, 7);
	CHECK_INT_EQ(s->max_idle, 60);
	CHECK_INT_EQ(s->max_ttl, 3600);
	CHECK_INT_EQ(s->retry_delay, 3);
	CHECK_INT_EQ(s->timeout, 100);
	CHECK_STR_EQ(s->default_action, "451 4.3.5 Server configuration problem");
	CHECK_INT_EQ(s->index, 1);
	CHECK(smtp_policy_service_get(p, 2) == NULL);
	smtp_policy_free(p);
}

/* ---------------------------------------------------------------------------------------
 * Without lookups: nothing waits, nothing is buffered */

static void test_no_lookups(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test, check_policy_service "
				    "inet:127.0.0.1:10023";
	t.lists[SMTP_LIST_SENDER] = "reject_unknown_sender_domain";
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[300];
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, rd, &ctx), 0);
	struct treq q = RCPT("a@example.org", "u@mx.example.net");
	struct smtp_policy_request req;
	mkreq(&q, &req);
	struct out o = { 0 };
	struct smtp_policy_callbacks cb = { on_event, NULL, &o, NULL };
	struct smtp_policy_result res;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	/* the blocklist could not be asked (not listed), the policy query failed */
	CHECK_STR_EQ(o.ev, "warning: 1.2.0.192.zen.test: RBL lookup error: no DNS resolver\n");
	CHECK_INT_EQ(res.code, 451);
	CHECK_STR_EQ(res.text, "4.3.5 <unknown[192.0.2.1]>: Client host rejected: Server "
			       "configuration problem");
	t.lists[SMTP_LIST_CLIENT] = NULL;
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
	/* a DNS temporary failure: reject_unknown_sender_domain's defer_if_permit */
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, rd, &ctx), 0);
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_STR_EQ(res.text, "4.1.8 <a@example.org>: Sender address rejected: Domain not found");
	/* a lookups struct with no callbacks, and one whose resolver fails */
	struct smtp_policy_lookups none = { 0 };
	cb.lookups = &none;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_INT_EQ(res.code, 450);
	struct pf f = { .mode = PF_FAILING };
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, &f };
	cb.lookups = &lk;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_INT_EQ(res.code, 450);
	struct smtp_policy_stats st;
	smtp_policy_ctx_stats(ctx, &st);
	CHECK_INT_EQ(st.pending, 0);
	CHECK(st.dns_asked >= 6);
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
}

/* A replay whose question changed (the caller changed the request) is counted. */
static void test_replay_diverged(void)
{
	struct tcfg t = { 0 };
	t.lists[SMTP_LIST_CLIENT] = "reject_rbl_client zen.test";
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[300];
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, rd, &ctx), 0);
	struct pf f = { .mode = PF_WAITING };
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, &f };
	struct out o = { 0 };
	struct smtp_policy_callbacks cb = { on_event, NULL, &o, &lk };
	struct smtp_policy_session sess = { 0 };
	struct treq q = RCPT("a@example.org", "u@mx.example.net");
	struct smtp_policy_request req;
	mkreq(&q, &req);
	req.session = &sess;
	struct smtp_policy_result res;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_INT_EQ(res.decision, SMTP_POLICY_PENDING);
	CHECK_STR_EQ(smtp_policy_decision_name(res.decision), "pending");
	CHECK(sess.pending.active);
	req.client_addr = "192.0.2.99";
	f.mode = PF_DIRECT;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK_INT_EQ(res.decision, SMTP_POLICY_ACCEPT);
	struct smtp_policy_stats st;
	smtp_policy_ctx_stats(ctx, &st);
	CHECK_INT_EQ(st.replays, 1);
	CHECK_INT_EQ(st.replay_diverged, 1);
	CHECK(!sess.pending.active);
	pf_forget(&f);
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
}

/* More events than a check buffers: the rest are dropped, counted and said. */
static void test_events_dropped(void)
{
	struct tcfg t = { 0 };
	static char list[8192];
	list[0] = '\0';
	for (int i = 0; i < 70; i++)
		strcat(list, "check_client_access inline:{192.0.2.1=WARN} ");
	t.lists[SMTP_LIST_CLIENT] = list;
	struct smtp_policy *p;
	struct smtp_policy_ctx *ctx;
	char err[300];
	CHECK_INT_EQ(compile(&t, &p, err, sizeof(err)), 0);
	CHECK_INT_EQ(smtp_policy_ctx_new(p, rd, &ctx), 0);
	struct pf f = { .mode = PF_DIRECT };
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, &f };
	static struct out o;
	memset(&o, 0, sizeof(o));
	struct smtp_policy_callbacks cb = { on_event, NULL, &o, &lk };
	struct treq q = RCPT("a@example.org", "u@mx.example.net");
	struct smtp_policy_request req;
	mkreq(&q, &req);
	struct smtp_policy_result res;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK(strstr(o.ev, "warning: restriction evaluation: 6 more log events of this command "
			   "dropped\n") != NULL);
	struct smtp_policy_stats st;
	smtp_policy_ctx_stats(ctx, &st);
	CHECK_INT_EQ(st.events_dropped, 6);
	/* without lookups nothing is buffered: all 70 */
	memset(&o, 0, sizeof(o));
	cb.lookups = NULL;
	CHECK_INT_EQ(smtp_policy_check(ctx, &req, NULL, &cb, &res), 0);
	CHECK(strstr(o.ev, "dropped") == NULL);
	size_t lines = 0;
	for (const char *c = o.ev; *c; c++)
		lines += *c == '\n';
	CHECK_INT_EQ(lines, 70);
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
	RUN_TEST(test_rbl_dns);
	RUN_TEST(test_rbl_reply_maps);
	RUN_TEST(test_dnswl_rhsbl);
	RUN_TEST(test_rbl_local_first);
	RUN_TEST(test_unknown_client);
	RUN_TEST(test_unknown_helo);
	RUN_TEST(test_unknown_domain);
	RUN_TEST(test_server_access);
	RUN_TEST(test_stages_without_delay);
	RUN_TEST(test_policy_replies);
	RUN_TEST(test_policy_request);
	RUN_TEST(test_no_lookups);
	RUN_TEST(test_greylist);
	RUN_TEST(test_replay_diverged);
	RUN_TEST(test_events_dropped);
	pf_forget(&lastf);
	tables_reader_close(rd);
	netlist_free(mynetworks);
	domain_list_free(mydestination);
	domain_list_free(relay_domains);
	tt_env_remove(env, envdir);
	return TEST_RESULT();
}
