/* libFuzzer harness for the restriction lists: any bytes as main.cf restriction lists, a
 * restriction class, inline: access tables and the request, compiled and evaluated at every
 * stage. The input is lines:
 *   1 smtpd_client_restrictions   2 smtpd_recipient_restrictions   3 class "c1" (if not empty)
 *   4 client address   5 helo ("-" none)   6 sender ("-" none)   7 recipient   8 flags
 * Invariants: compiling fails with a one-line message or succeeds; evaluation never fails
 * on a request that makes sense; a refusal is a 4xx/5xx whose text is printable, bounded and
 * consistent with its decision; the envelope actions stay bounded. Tables are inline:
 * (no storage); zones are looked up in an empty store (451, never a crash). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_check.h"
#include "smtp/smtp_restrictions.h"

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

static void no_event(void *ctx, const char *kind, const char *text)
{
	(void)ctx;
	FUZZ_CHECK(kind && text && strlen(text) < 4096);
}

static void no_trace(void *ctx, enum smtp_restriction_list l, const char *r, const char *o,
		     const char *d)
{
	(void)ctx;
	FUZZ_CHECK((unsigned)l < SMTP_LIST_MAX && r && o && d);
}

static void check_result(const struct smtp_policy_result *res, bool soft_bounce)
{
	if (res->decision == SMTP_POLICY_ACCEPT) {
		FUZZ_CHECK(res->code == 0);
		return;
	}
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
	char *line[8] = { 0 };
	char *s = buf;
	for (int i = 0; i < 8; i++) {
		line[i] = s;
		char *nl = s ? strchr(s, '\n') : NULL;
		if (nl) {
			*nl = '\0';
			s = nl + 1;
		} else {
			s = NULL;
			for (int j = i + 1; j < 8; j++)
				line[j] = NULL;
			break;
		}
	}
#define L(i) (line[i] ? line[i] : "")
#define OPT(i) (line[i] && strcmp(line[i], "-") != 0 ? line[i] : NULL)
	unsigned flags = line[7] && line[7][0] ? (unsigned char)line[7][0] : 0;

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
	cfg.mynetworks = mynetworks;
	cfg.mydestination = mydest;
	cfg.relay_domains = relay;
	cfg.myorigin = "example.net";
	cfg.relay_recipient_maps = (flags & 8) ? "inline:{ a@relay.example=1 }" : "";
	cfg.local_recipient_maps = "";
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
	struct smtp_policy_ctx *ctx;
	rc = smtp_policy_ctx_new(p, rd, &ctx);
	if (rc < 0) {
		/* an inline: table whose text is bad is refused when opened */
		FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM);
		smtp_policy_free(p);
		free(buf);
		return 0;
	}
	struct smtp_policy_session sess = { 0 };
	struct smtp_policy_actions acts = { 0 };
	struct smtp_policy_callbacks cb = { no_event, no_trace, NULL };
	for (int st = 0; st < SMTP_STAGE_MAX; st++) {
		struct smtp_policy_request req = {
			.stage = (enum smtp_policy_stage)st,
			.client_addr = *L(3) ? L(3) : "192.0.2.1",
			.client_name = "unknown",
			.reverse_name = "unknown",
			.helo = OPT(4),
			.sender = OPT(5),
			.recipient = *L(6) ? L(6) : "u@example.net",
			.protocol = "ESMTP",
			.recipient_count = flags & 32 ? 2 : 0,
			.unauth_pipelining = flags & 64,
			.now = 1700000000,
			.session = &sess,
		};
		struct smtp_policy_result res;
		rc = smtp_policy_check(ctx, &req, &acts, &cb, &res);
		FUZZ_CHECK(rc == 0);
		check_result(&res, cfg.soft_bounce);
		FUZZ_CHECK(acts.nprepend <= SMTP_POLICY_PREPEND_MAX);
		FUZZ_CHECK(strlen(acts.filter) < SMTP_POLICY_TEXT_MAX);
	}
	smtp_policy_ctx_free(ctx);
	smtp_policy_free(p);
	free(buf);
	return 0;
}
