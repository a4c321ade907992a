/* libFuzzer harness for the restriction lists: any bytes as main.cf restriction lists, a
 * restriction class, inline: access tables, the request, DNS answers and policy server
 * replies, compiled and evaluated at every stage. The input is lines:
 *   1 smtpd_client_restrictions   2 smtpd_recipient_restrictions   3 class "c1" (if not empty)
 *   4 client address   5 helo ("-" none)   6 sender ("-" none)   7 recipient   8 flags
 *   9 DNS script: bytes the answers are made from (hashed with each question)
 *   10 policy server actions, separated by '|' ("!" alone: the query fails)
 *   11 rbl_reply_maps   12 TLS: empty for plaintext, else a client certificate's
 *      fingerprint ("-": TLS without one; a leading '+': the certificate is trusted);
 *      relay_clientcerts holds the fingerprint "AA:01"
 * Invariants: compiling fails with a one-line message or succeeds; evaluation never fails
 * on a request that makes sense; a refusal is a 4xx/5xx whose text is printable, bounded and
 * consistent with its decision; the envelope actions stay bounded. The stages are run once
 * with every answer at hand and once with each answer only after the check returned
 * PENDING (replayed): both give the same results, events, trace, actions and session, byte
 * for byte; each PENDING run delivered nothing, changed nothing and asked one question;
 * no replay diverged. A third run where every lookup fails must not crash. Tables are
 * inline: (no storage); zones are asked in DNS (the store is empty). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "smtp/smtp_restrictions.h"
#include "unit/smtp/policy_fake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tables_env *env;
static struct tables_reader *rd;
static struct netlist *mynetworks;
static struct domain_list *mydest, *relay;
static const char *class_def;

static char envdir[64] = "/tmp/mxgate-fuzz-restr-XXXXXX";

/* The store is empty and private: remove it when the process ends. */
static void cleanup(void)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/data.mdb", envdir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", envdir);
	unlink(p);
	rmdir(envdir);
}

static void setup(void)
{
	char *dir = envdir, err[200];
	if (!mkdtemp(dir))
		abort();
	atexit(cleanup);
	struct tables_env_opts o = { .map_size = (size_t)1 << 24 };
	if (tables_env_open(dir, &o, &env, err, sizeof(err)) < 0 ||
	    tables_reader_open(env, &rd) < 0 ||
	    netlist_parse("10.0.0.0/8 [2001:db8::]/32", &mynetworks, err, sizeof(err)) < 0 ||
	    domain_list_parse("example.net", false, &mydest, err, sizeof(err)) < 0 ||
	    domain_list_parse("relay.example", true, &relay, err, sizeof(err)) < 0)
		abort();
}

static const char *class_value(void *ctx, const char *name)
{
	(void)ctx;
	return strcmp(name, "c1") == 0 ? class_def : NULL;
}

/* What a sequence of stages delivered. */
struct seq_out {
	char ev[16384];
	char tr[32768];
	struct smtp_policy_result res[SMTP_STAGE_MAX];
	struct smtp_policy_actions acts;
	struct smtp_policy_session sess;
};

static void on_event(void *ctx, const char *kind, const char *text)
{
	struct seq_out *o = ctx;
	FUZZ_CHECK(kind && text && strlen(text) < 4096);
	size_t n = strlen(o->ev);
	snprintf(o->ev + n, sizeof(o->ev) - n, "%s: %s\n", kind, text);
}

static void on_trace(void *ctx, enum smtp_restriction_list l, const char *r, const char *oc,
		     const char *d)
{
	struct seq_out *o = ctx;
	FUZZ_CHECK((unsigned)l < SMTP_LIST_MAX && r && oc && d);
	size_t n = strlen(o->tr);
	snprintf(o->tr + n, sizeof(o->tr) - n, "%d|%s|%s|%s\n", (int)l, r, oc, d);
}

static void check_result(const struct smtp_policy_result *res, bool soft_bounce)
{
	if (res->decision == SMTP_POLICY_ACCEPT) {
		FUZZ_CHECK(res->code == 0);
		return;
	}
	FUZZ_CHECK(res->decision == SMTP_POLICY_REJECT || res->decision == SMTP_POLICY_DEFER);
	FUZZ_CHECK(res->code >= 400 && res->code <= 599);
	FUZZ_CHECK(strlen(res->text) < 510);
	for (const char *c = res->text; *c; c++)
		FUZZ_CHECK((unsigned char)*c >= 32 && (unsigned char)*c < 127);
	/* the DSN class digit equals the code's */
	FUZZ_CHECK(res->text[0] == (char)('0' + res->code / 100));
	if (res->decision == SMTP_POLICY_DEFER)
		FUZZ_CHECK(res->code / 100 == 4);
	if (res->decision == SMTP_POLICY_REJECT)
		FUZZ_CHECK(res->code / 100 == 5 || soft_bounce);
	if (res->hangup)
		FUZZ_CHECK(res->disconnect);
}

/* DNS answers made from the script and the question. */
struct script {
	const uint8_t *b;
	size_t n;
};

static struct dns_result *gen_answer(void *gctx, enum dns_type type, const char *name)
{
	static const char *const hosts[] = { "mx.example.net", ".", "mx.bad.example",
					     "192.0.2.1", "ns.relay.example", "a.b.c" };
	const struct script *s = gctx;
	uint32_t h = 2166136261u;
	h = (h ^ (uint32_t)type) * 16777619u;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	if (!s->n) {
		static const char *const none[1] = { NULL };
		return pf_mkres(type, DNS_RESULT_NXDOMAIN, none);
	}
	uint8_t b = s->b[h % s->n];
	enum dns_result_status st = (enum dns_result_status)(b & 3);
	char store[6][64];
	const char *rr[7] = { 0 };
	unsigned n = 1 + ((b >> 2) & 3);
	for (unsigned i = 0; i < n; i++) {
		uint8_t c = s->b[(h + i + 1) % s->n];
		switch (type) {
		case DNS_TYPE_A:
			if (c & 0x80)
				snprintf(store[i], sizeof(store[i]), "127.255.255.%u", c & 0x7f);
			else
				snprintf(store[i], sizeof(store[i]), "127.0.%u.%u", c >> 5, c & 15);
			break;
		case DNS_TYPE_AAAA:
			snprintf(store[i], sizeof(store[i]), "2001:db8::%x", c);
			break;
		case DNS_TYPE_MX:
			snprintf(store[i], sizeof(store[i]), "%u %s", c & 7,
				 hosts[(c >> 3) % (sizeof(hosts) / sizeof(hosts[0]))]);
			break;
		case DNS_TYPE_TXT: {
			size_t k = 0;
			for (; k < sizeof(store[i]) - 1 && k < (size_t)(c & 31); k++)
				store[i][k] = (char)(s->b[(h + k) % s->n] | 1);
			store[i][k] = '\0';
			break;
		}
		default:
			snprintf(store[i], sizeof(store[i]), "%s",
				 hosts[c % (sizeof(hosts) / sizeof(hosts[0]))][0] == '.'
					 ? "ns.example.net"
					 : hosts[c % (sizeof(hosts) / sizeof(hosts[0]))]);
			break;
		}
		rr[i] = store[i];
	}
	return pf_mkres(type, st, rr);
}

static struct pf fake;

/* Every stage in order, one session and transaction, in one mode. */
static void run_stages(struct smtp_policy_ctx *ctx, struct smtp_policy_request *base,
		       enum pf_mode mode, struct script *sc, char *const *actions, size_t nact,
		       bool soft_bounce, struct seq_out *o)
{
	memset(o, 0, sizeof(*o));
	memset(&fake, 0, sizeof(fake));
	fake.mode = mode;
	fake.gen = gen_answer;
	fake.gctx = sc;
	for (size_t i = 0; i < nact && i < 8; i++)
		fake.actions[fake.nactions++] = strcmp(actions[i], "!") == 0 ? NULL : actions[i];
	struct smtp_policy_lookups lk = { pf_dns, pf_policy, &fake };
	struct smtp_policy_callbacks cb = { on_event, on_trace, o, &lk };
	for (int st = 0; st < SMTP_STAGE_MAX; st++) {
		struct smtp_policy_request req = *base;
		req.stage = (enum smtp_policy_stage)st;
		req.session = &o->sess;
		struct smtp_policy_result *res = &o->res[st];
		for (int run = 0;; run++) {
			FUZZ_CHECK(run < 2000);
			size_t evlen = strlen(o->ev), trlen = strlen(o->tr);
			struct smtp_policy_actions abefore = o->acts;
			int rc = smtp_policy_check(ctx, &req, &o->acts, &cb, res);
			FUZZ_CHECK(rc == 0);
			if (res->decision != SMTP_POLICY_PENDING)
				break;
			FUZZ_CHECK(mode == PF_WAITING);
			FUZZ_CHECK(fake.asked_now == 1);
			FUZZ_CHECK(strlen(o->ev) == evlen && strlen(o->tr) == trlen);
			FUZZ_CHECK(memcmp(&abefore, &o->acts, sizeof(abefore)) == 0);
			pf_arrive(&fake);
		}
		check_result(res, soft_bounce);
		FUZZ_CHECK(o->acts.nprepend <= SMTP_POLICY_PREPEND_MAX);
		FUZZ_CHECK(strlen(o->acts.filter) < SMTP_POLICY_TEXT_MAX);
		pf_forget(&fake);
	}
	FUZZ_CHECK(!fake.overflow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!env)
		setup();
	if (size > 8192)
		return 0;
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	enum { NLINES = 12 };
	char *line[NLINES] = { 0 };
	size_t linelen[NLINES] = { 0 };
	char *s = buf;
	for (int i = 0; i < NLINES && s; i++) {
		line[i] = s;
		char *nl = memchr(s, '\n', size - (size_t)(s - buf));
		if (nl) {
			*nl = '\0';
			linelen[i] = (size_t)(nl - s);
			s = nl + 1;
		} else {
			linelen[i] = size - (size_t)(s - buf);
			s = NULL;
		}
	}
#define L(i) (line[i] ? line[i] : "")
#define OPT(i) (line[i] && strcmp(line[i], "-") != 0 ? line[i] : NULL)
	unsigned flags = line[7] && line[7][0] ? (unsigned char)line[7][0] : 0;
	/* the DNS script may hold NULs: its bytes, not a string */
	struct script sc = { (const uint8_t *)line[8], line[8] ? linelen[8] : 0 };
	char *actions[8];
	size_t nact = 0;
	for (char *a = line[9]; a && nact < 8;) {
		char *bar = strchr(a, '|');
		if (bar)
			*bar = '\0';
		actions[nact++] = a;
		a = bar ? bar + 1 : NULL;
	}

	struct smtp_policy_config cfg = { 0 };
	cfg.lists[SMTP_LIST_CLIENT] = L(0);
	cfg.lists[SMTP_LIST_RECIPIENT] = L(1);
	cfg.lists[SMTP_LIST_RELAY] = "permit_mynetworks, defer_unauth_destination";
	cfg.lists[SMTP_LIST_DATA] = (flags & 16) ? "c1" : "reject_unauth_pipelining";
	class_def = L(2);
	cfg.restriction_classes = *L(2) ? "c1" : "";
	cfg.class_value = class_value;
	cfg.delay_reject = !(flags & 1);
	cfg.soft_bounce = flags & 2;
	cfg.reject_unlisted_recipient = true;
	cfg.reject_unlisted_sender = flags & 4;
	smtp_policy_codes_defaults(&cfg.codes);
	if (flags & 128) {
		cfg.codes.unknown_address_tempfail_action = SMTP_POLICY_TEMPFAIL_DEFER;
		cfg.codes.unknown_client_reject_code = 550;
	}
	cfg.mynetworks = mynetworks;
	cfg.mydestination = mydest;
	cfg.relay_domains = relay;
	cfg.myorigin = "example.net";
	cfg.myhostname = "mx.example.net";
	cfg.relay_recipient_maps = (flags & 8) ? "inline:{ a@relay.example=1 }" : "";
	cfg.relay_clientcerts = "inline:{ AA:01=listed }";
	cfg.local_recipient_maps = "";
	cfg.rbl_reply_maps = L(10);
	cfg.access.parent_matches_subdomains = true;
	cfg.access.recipient_delimiter = "+";

	struct smtp_policy *p;
	char err[512];
	int rc = smtp_policy_compile(&cfg, &p, err, sizeof(err));
	if (rc < 0) {
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOTSUP || rc == -ENOMEM);
		FUZZ_CHECK(err[0] && !strchr(err, '\n'));
		free(buf);
		return 0;
	}
	for (size_t i = 0; i < smtp_policy_service_count(p); i++) {
		const struct smtp_policy_service *sv = smtp_policy_service_get(p, i);
		FUZZ_CHECK(sv && sv->index == i && sv->endpoint && sv->default_action &&
			   sv->timeout > 0 && sv->try_limit > 0);
	}
	struct smtp_policy_ctx *ctx;
	rc = smtp_policy_ctx_new(p, rd, &ctx);
	if (rc < 0) {
		/* an inline: table whose text is bad is refused when opened */
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
		smtp_policy_free(p);
		free(buf);
		return 0;
	}
	struct smtp_policy_request req = {
		.client_addr = *L(3) ? L(3) : "192.0.2.1",
		.client_name = flags & 32 ? "client.example" : "unknown",
		.reverse_name = flags & 32 ? "client.example" : "unknown",
		.client_name_status = (enum smtp_policy_name_status)((flags >> 2) % 5),
		.reverse_name_status = (enum smtp_policy_name_status)((flags >> 3) % 4),
		.helo = OPT(4),
		.sender = OPT(5),
		.recipient = *L(6) ? L(6) : "u@example.net",
		.protocol = flags & 4 ? "SMTP" : "ESMTP",
		.recipient_count = flags & 32 ? 2 : 0,
		.unauth_pipelining = flags & 64,
		.now = 1700000000,
		.client_port = 1025,
	};
	/* line 12: TLS and the client certificate */
	const char *tl = L(11);
	struct smtp_policy_ccert ccert = { .trusted = tl[0] == '+',
					   .fingerprint = tl + (tl[0] == '+'),
					   .pkey_fingerprint = "BB:02" };
	req.tls = tl[0] != '\0';
	req.ccert = req.tls && strcmp(tl, "-") != 0 ? &ccert : NULL;
	static struct seq_out direct, waiting, failing;
	run_stages(ctx, &req, PF_DIRECT, &sc, actions, nact, cfg.soft_bounce, &direct);
	run_stages(ctx, &req, PF_WAITING, &sc, actions, nact, cfg.soft_bounce, &waiting);
	/* replay equals direct, byte for byte */
	FUZZ_CHECK(strcmp(direct.ev, waiting.ev) == 0);
	FUZZ_CHECK(strcmp(direct.tr, waiting.tr) == 0);
	FUZZ_CHECK(memcmp(direct.res, waiting.res, sizeof(direct.res)) == 0);
	FUZZ_CHECK(memcmp(&direct.acts, &waiting.acts, sizeof(direct.acts)) == 0);
	FUZZ_CHECK(memcmp(&direct.sess, &waiting.sess, sizeof(direct.sess)) == 0);
	run_stages(ctx, &req, PF_FAILING, &sc, actions, nact, cfg.soft_bounce, &failing);
	struct smtp_policy_stats st;
	smtp_policy_ctx_stats(ctx, &st);
	FUZZ_CHECK(st.replay_diverged == 0);
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
	free(buf);
	return 0;
}
