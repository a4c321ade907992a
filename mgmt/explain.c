/* `mxgate explain` (explain.h): the command line, the imagined session, the evaluator fed
 * as the gateway's connection feeds it, and the explanation.
 *
 * Each command's check runs as dataplane/session/conn_check.c runs it: the lookups
 * callbacks answer from the check's memo; a question not in it goes into it unanswered and
 * the check returns PENDING; the answer is asked for (here, blocking), and the check is
 * replayed with the same request until it decides. Then the memo is dropped; DNS answers
 * stay in the resolver's cache for the run (explain_dns.c). The same evaluator, the same
 * replay, the same bound on lookups a command may make: the decision shown is the
 * gateway's.
 *
 * The evaluator delivers its trace lines and events only when a check completes, after
 * every question was answered. So a stage's lines and lookups are collected and printed
 * together: each lookup under the trace line of the restriction that asked it, found with
 * smtp_policy_ctx_kept() (the number of lines kept when the question was asked; the
 * restriction's own line comes after its questions). */
#include "mgmt/explain.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mgmt/config.h"
#include "mgmt/master.h"
#include "mgmt/policy.h"
#include "mgmt/screen.h"
#include "mxgate/clock.h"
#include "mxgate/inet.h"
#include "smtp/smtp_restrictions.h"
#include "tables/tables_env.h"

#define EXPLAIN_MAX_RCPT 64
#define EXPLAIN_MEMO_MAX SMTP_POLICY_LOOKUPS_MAX /* as the gateway's connection */
#define EXPLAIN_USE_GREYLIST (-2)
#define EXPLAIN_USES_MAX 1024  /* lookups shown under one stage's lines (memo hits) */
#define EXPLAIN_LINES_MAX 4096 /* trace lines and events of one stage */

static void mx_explain_usage(FILE *f, const char *default_config)
{
	fprintf(f,
		"usage: mxgate explain [-c FILE] [--no-dns] [--no-policy] [-v]\n"
		"                      [client=ADDRESS] [name=HOSTNAME] [helo=NAME]\n"
		"                      [sender=ADDRESS] [recipient=ADDRESS]... [protocol=ESMTP]\n"
		"\n"
		"Runs the restriction lists of FILE (default %s) as a session with these\n"
		"values would meet them: CONNECT, HELO, MAIL, each RCPT, DATA and END-OF-MESSAGE,\n"
		"against the tables in mxgate_table_directory (read-only; a running gateway is\n"
		"not disturbed). Prints every restriction tried and what it matched, the DNS\n"
		"answers and policy server exchanges it used, the one that decided, and the\n"
		"reply. sender= with an empty value is the null sender <>.\n"
		"Each postscreen service of mxgate_master_file first shows its screen's verdict\n"
		"for the client (access list, DNSBL sites and score, the tests; its cache is\n"
		"not read).\n"
		"Defaults: client=192.0.2.1 helo=unknown.example sender=<>.\n"
		"\n"
		"DNS questions go to the servers the gateway asks (mxgate_dns_servers, else the\n"
		"nameserver lines of /etc/resolv.conf), with its timeouts; check_policy_service\n"
		"servers are asked with the smtpd_policy_service_* settings. Without name= the\n"
		"client's name is looked up as the gateway looks it up at connect (PTR, then\n"
		"the name's addresses; not with smtpd_peername_lookup = no); name= sets it\n"
		"instead (name=unknown: no name).\n"
		"  --no-dns      ask no DNS question: each is a temporary failure, and the\n"
		"                client has no name unless name= gives one\n"
		"  --no-policy   contact no policy server: each query fails (the service's\n"
		"                default action applies)\n"
		"  -v            show the policy requests whole (empty attributes too)\n"
		"Exit status: 0 all accepted, 1 something refused, 2 usage or configuration\n"
		"error.\n",
		default_config);
}

/* ---------------------------------------------------------------------------------------
 * What one check asked and printed */

/* A question of the check being evaluated, and its answer (the gateway's conn_memo). */
struct mx_explain_memo {
	bool policy;
	bool answered;
	enum dns_type type;                     /* DNS */
	const struct smtp_policy_service *svc;  /* policy */
	char *key;                              /* the name, or the request bytes */
	size_t keylen;
	struct dns_result *result;              /* DNS (a reference) */
	bool cached;                            /* DNS: asked earlier in the run */
	bool shown;                             /* printed already for this check */
	struct mx_explain_policy_reply *reply;  /* policy */
};

/* A lookup the deciding run of a check made, in order. */
struct mx_explain_use {
	size_t pos;  /* smtp_policy_ctx_kept() when it was asked */
	int memo;    /* the memo entry, or -1: not made (the memo was full), or
		      * EXPLAIN_USE_GREYLIST: check_greylist's question (name: its triplet) */
	bool policy; /* memo -1: what it was */
	enum dns_type type;
	char *name;  /* memo -1, DNS: the name */
};

/* A trace line or event, kept until the check's end. */
struct mx_explain_line {
	bool event;
	size_t rec; /* its place among what the evaluator delivered */
	enum smtp_restriction_list list;
	char *a, *b, *c; /* trace: restriction, outcome, detail; event: kind, text */
};

struct mx_explain_run {
	FILE *f;
	struct mx_explain_dns *dns; /* NULL: --no-dns */
	bool no_policy, verbose, smtputf8;
	struct smtp_policy_ctx *pc;
	struct mx_explain_memo memo[EXPLAIN_MEMO_MAX];
	unsigned nmemo;
	struct mx_explain_use *uses;
	size_t nuses, capuses;
	unsigned uses_over;
	struct mx_explain_line *lines;
	size_t nlines, caplines, delivered;
	unsigned lines_over;
};

static char *mx_explain_strdup(const char *s)
{
	return strdup(s ? s : "");
}

static void mx_explain_print_trace(FILE *f, enum smtp_restriction_list list,
				   const char *restriction, const char *outcome, const char *detail)
{
	fprintf(f, "  %-31s %s -> %s%s%s%s\n", smtp_restriction_list_name(list), restriction,
		outcome, detail && *detail ? " (" : "", detail ? detail : "",
		detail && *detail ? ")" : "");
}

/* Keep a trace line or event for the check's end. */
static void mx_explain_keep(struct mx_explain_run *x, bool event,
			    enum smtp_restriction_list list, const char *a, const char *b,
			    const char *c)
{
	size_t rec = x->delivered++;
	if (x->nlines >= EXPLAIN_LINES_MAX) {
		x->lines_over++;
		return;
	}
	if (x->nlines == x->caplines) {
		size_t cap = x->caplines ? x->caplines * 2 : 32;
		struct mx_explain_line *l = realloc(x->lines, cap * sizeof(*l));
		if (!l) {
			x->lines_over++;
			return;
		}
		x->lines = l;
		x->caplines = cap;
	}
	struct mx_explain_line *l = &x->lines[x->nlines];
	*l = (struct mx_explain_line){ .event = event, .rec = rec, .list = list };
	l->a = mx_explain_strdup(a);
	l->b = mx_explain_strdup(b);
	l->c = event ? NULL : mx_explain_strdup(c);
	if (!l->a || !l->b || (!event && !l->c)) {
		free(l->a);
		free(l->b);
		free(l->c);
		x->lines_over++;
		return;
	}
	x->nlines++;
}

static void mx_explain_trace(void *ctx, enum smtp_restriction_list list,
			     const char *restriction, const char *outcome, const char *detail)
{
	mx_explain_keep(ctx, false, list, restriction, outcome, detail);
}

static void mx_explain_event(void *ctx, const char *kind, const char *text)
{
	mx_explain_keep(ctx, true, SMTP_LIST_MAX, kind, text, NULL);
}

/* Note that the running check used a lookup (memo index i, or -1: not made). */
static void mx_explain_use(struct mx_explain_run *x, int i, bool policy, enum dns_type type,
			   const char *name)
{
	if (x->nuses >= EXPLAIN_USES_MAX) {
		x->uses_over++;
		return;
	}
	if (x->nuses == x->capuses) {
		size_t cap = x->capuses ? x->capuses * 2 : 16;
		struct mx_explain_use *u = realloc(x->uses, cap * sizeof(*u));
		if (!u) {
			x->uses_over++;
			return;
		}
		x->uses = u;
		x->capuses = cap;
	}
	x->uses[x->nuses++] = (struct mx_explain_use){
		.pos = smtp_policy_ctx_kept(x->pc), .memo = i, .policy = policy, .type = type,
		.name = i < 0 && name ? strdup(name) : NULL,
	};
}

static void mx_explain_uses_clear(struct mx_explain_run *x)
{
	for (size_t i = 0; i < x->nuses; i++)
		free(x->uses[i].name);
	x->nuses = 0;
	x->uses_over = 0;
}

static struct mx_explain_memo *mx_explain_memo_find(struct mx_explain_run *x, bool policy,
						    enum dns_type type,
						    const struct smtp_policy_service *svc,
						    const char *key, size_t keylen)
{
	for (unsigned i = 0; i < x->nmemo; i++) {
		struct mx_explain_memo *m = &x->memo[i];
		if (m->policy == policy && m->type == type && m->svc == svc &&
		    m->keylen == keylen && memcmp(m->key, key, keylen) == 0)
			return m;
	}
	return NULL;
}

/* The question the check waits for, or NULL. */
static struct mx_explain_memo *mx_explain_memo_waiting(struct mx_explain_run *x)
{
	for (unsigned i = 0; i < x->nmemo; i++)
		if (!x->memo[i].answered)
			return &x->memo[i];
	return NULL;
}

/* A new question, unanswered; NULL when the memo is full or out of memory. */
static struct mx_explain_memo *mx_explain_memo_add(struct mx_explain_run *x, bool policy,
						   enum dns_type type,
						   const struct smtp_policy_service *svc,
						   const char *key, size_t keylen)
{
	if (x->nmemo == EXPLAIN_MEMO_MAX)
		return NULL;
	char *k = malloc(keylen + 1);
	if (!k)
		return NULL;
	memcpy(k, key, keylen);
	k[keylen] = '\0';
	struct mx_explain_memo *m = &x->memo[x->nmemo++];
	*m = (struct mx_explain_memo){ .policy = policy, .type = type, .svc = svc, .key = k,
				       .keylen = keylen };
	return m;
}

static void mx_explain_memo_clear(struct mx_explain_run *x)
{
	for (unsigned i = 0; i < x->nmemo; i++) {
		free(x->memo[i].key);
		dns_result_put(x->memo[i].result);
		free(x->memo[i].reply);
	}
	x->nmemo = 0;
}

/* The evaluator's DNS question (smtp_policy_lookups.dns), as conn_lookup_dns(). */
static int mx_explain_lookup_dns(void *ctx, enum dns_type type, const char *name,
				 const struct dns_result **out)
{
	struct mx_explain_run *x = ctx;
	size_t len = strlen(name);
	struct mx_explain_memo *m = mx_explain_memo_find(x, false, type, NULL, name, len);
	if (m && m->answered) {
		mx_explain_use(x, (int)(m - x->memo), false, type, name);
		if (!m->result)
			return -ENOMEM;
		*out = m->result;
		return 1;
	}
	if (m || mx_explain_memo_waiting(x))
		return -EBUSY; /* asked and not answered: the evaluator asks one at a time */
	if (!mx_explain_memo_add(x, false, type, NULL, name, len)) {
		mx_explain_use(x, -1, false, type, name);
		return -ENOMEM; /* the evaluator's "could not be sent": a temporary failure */
	}
	return 0;
}

/* The evaluator's policy query (smtp_policy_lookups.policy), as conn_lookup_policy(). */
static int mx_explain_lookup_policy(void *ctx, const struct smtp_policy_service *svc,
				    const char *request, size_t len, const char **action)
{
	struct mx_explain_run *x = ctx;
	struct mx_explain_memo *m = mx_explain_memo_find(x, true, DNS_TYPE_A, svc, request, len);
	if (m && m->answered) {
		mx_explain_use(x, (int)(m - x->memo), true, DNS_TYPE_A, NULL);
		if (!m->reply)
			return -ENOMEM;
		if (m->reply->error < 0)
			return m->reply->error;
		*action = m->reply->action;
		return 1;
	}
	if (m || mx_explain_memo_waiting(x))
		return -EBUSY;
	if (!mx_explain_memo_add(x, true, DNS_TYPE_A, svc, request, len)) {
		mx_explain_use(x, -1, true, DNS_TYPE_A, NULL);
		return -ENOMEM; /* a failed query: the default action */
	}
	return 0;
}

/* check_greylist's question (smtp_policy_lookups.greylist): not asked. The answer lives in
 * the running gateway's state store, which only its greylist service reads and writes
 * (an LMDB file is not to be opened by a second process's environment meanwhile, and
 * asking would count as an attempt); explain shows the triplet and goes on as if the
 * triplet had passed (DUNNO). */
static int mx_explain_lookup_greylist(void *ctx, const char *request, size_t len,
				      const char **action)
{
	struct mx_explain_run *x = ctx;
	char key[GREYLIST_KEY_MAX + 1] = "?";
	for (const char *p = request, *end = request + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (ll > 4 && memcmp(p, "key=", 4) == 0 && ll - 4 <= GREYLIST_KEY_MAX) {
			memcpy(key, p + 4, ll - 4);
			key[ll - 4] = '\0';
		}
		p += ll + 1;
	}
	mx_explain_use(x, EXPLAIN_USE_GREYLIST, false, DNS_TYPE_A, key);
	*action = "DUNNO";
	return 1;
}

/* Ask what the check waits for, blocking (the gateway hands it to a service thread). */
static void mx_explain_answer(struct mx_explain_run *x, struct mx_explain_memo *m)
{
	m->answered = true;
	if (!m->policy) {
		if (x->dns)
			m->result = mx_explain_dns_lookup(x->dns, m->type, m->key, &m->cached);
		else
			m->result = dns_result_tempfail(m->type, "not asked: --no-dns");
		return;
	}
	m->reply = malloc(sizeof(*m->reply));
	if (!m->reply)
		return;
	if (x->no_policy) {
		*m->reply = (struct mx_explain_policy_reply){ .error = -ENOSYS };
		snprintf(m->reply->why, sizeof(m->reply->why), "not asked: --no-policy");
		return;
	}
	mx_explain_policy_query(m->svc, m->key, m->keylen, x->smtputf8, m->reply);
}

/* ---------------------------------------------------------------------------------------
 * One command's check */

static void mx_explain_print_use(struct mx_explain_run *x, const struct mx_explain_use *u)
{
	if (u->memo == EXPLAIN_USE_GREYLIST) {
		fprintf(x->f, "    greylist triplet %s: would ask the greylist service "
			"(mxgate_greylist_map); taken as passed (DUNNO)\n",
			u->name ? u->name : "?");
		return;
	}
	if (u->memo < 0) {
		fprintf(x->f, "    %s%s%s: not asked: more than %d lookups in one command (the "
			"gateway's bound): %s\n",
			u->policy ? "policy query" : dns_type_name(u->type), u->name ? " " : "",
			u->name ? u->name : "", EXPLAIN_MEMO_MAX,
			u->policy ? "the query failed" : "a temporary failure");
		return;
	}
	struct mx_explain_memo *m = &x->memo[u->memo];
	bool again = m->shown;
	m->shown = true;
	if (!m->policy && m->result)
		mx_explain_print_dns(x->f, "    ", m->type, m->key, m->result,
				     m->cached || again);
	else if (m->policy && m->reply)
		mx_explain_print_policy(x->f, "    ", m->svc, m->key, m->keylen, m->reply,
					x->verbose);
	else
		fprintf(x->f, "    %s: out of memory\n", m->policy ? "policy query" : m->key);
}

/* Print the check's lines with their lookups, and forget them. */
static void mx_explain_flush(struct mx_explain_run *x)
{
	size_t u = 0;
	for (size_t li = 0; li < x->nlines; li++) {
		const struct mx_explain_line *l = &x->lines[li];
		if (l->event) {
			fprintf(x->f, "  would log: %s: %s\n", l->a, l->b);
			continue;
		}
		mx_explain_print_trace(x->f, l->list, l->a, l->b, l->c);
		for (; u < x->nuses && x->uses[u].pos <= l->rec; u++)
			mx_explain_print_use(x, &x->uses[u]);
	}
	if (u < x->nuses)
		fprintf(x->f, "  lookups (their restriction's line is not shown):\n");
	for (; u < x->nuses; u++)
		mx_explain_print_use(x, &x->uses[u]);
	if (x->lines_over)
		fprintf(x->f, "  (%u more trace lines not shown)\n", x->lines_over);
	if (x->uses_over)
		fprintf(x->f, "  (%u more lookups not shown)\n", x->uses_over);
	for (size_t li = 0; li < x->nlines; li++) {
		free(x->lines[li].a);
		free(x->lines[li].b);
		free(x->lines[li].c);
	}
	x->nlines = 0;
	x->lines_over = 0;
	x->delivered = 0;
	mx_explain_uses_clear(x);
}

/* Run the check of req to its decision, answering what it waits for and replaying it.
 * Returns smtp_policy_check()'s status, or -EPROTO when the evaluator waits for nothing
 * or does not converge (a bug). */
static int mx_explain_check(struct mx_explain_run *x, const struct smtp_policy_request *req,
			    struct smtp_policy_actions *actions, struct smtp_policy_result *res)
{
	const struct smtp_policy_lookups lk = {
		.dns = mx_explain_lookup_dns, .policy = mx_explain_lookup_policy, .ctx = x,
		.greylist = mx_explain_lookup_greylist,
	};
	const struct smtp_policy_callbacks cb = {
		.event = mx_explain_event, .trace = mx_explain_trace, .ctx = x, .lookups = &lk,
	};
	/* one run per answer, and the one that decides */
	for (unsigned run = 0; run <= EXPLAIN_MEMO_MAX + 1; run++) {
		mx_explain_uses_clear(x);
		x->delivered = 0;
		int rc = smtp_policy_check(x->pc, req, actions, &cb, res);
		if (rc < 0 || res->decision != SMTP_POLICY_PENDING)
			return rc;
		struct mx_explain_memo *m = mx_explain_memo_waiting(x);
		if (!m)
			return -EPROTO;
		mx_explain_answer(x, m);
	}
	return -EPROTO;
}

/* One stage; returns true when accepted. */
static bool mx_explain_stage(struct mx_explain_run *x, struct smtp_policy_request *req,
			     struct smtp_policy_actions *actions, const char *label)
{
	struct smtp_policy_result res;
	struct smtp_policy_stats before, after;
	fprintf(x->f, "%s\n", label);
	smtp_policy_ctx_stats(x->pc, &before);
	int rc = mx_explain_check(x, req, actions, &res);
	smtp_policy_ctx_stats(x->pc, &after);
	mx_explain_flush(x);
	mx_explain_memo_clear(x);
	if (after.replay_diverged != before.replay_diverged)
		fprintf(x->f, "  (a replay of this check asked something else: a bug, please "
			      "report it)\n");
	if (rc == -EPROTO) {
		fprintf(x->f, "  => evaluation failed: the evaluator waits for no question (a "
			      "bug, please report it)\n");
		return false;
	}
	if (rc < 0) {
		fprintf(x->f, "  => evaluation failed: %s\n", strerror(-rc));
		return false;
	}
	if (res.decision == SMTP_POLICY_ACCEPT) {
		fprintf(x->f, "  => accepted\n");
		return true;
	}
	if (res.hangup)
		fprintf(x->f, "  => the connection is closed without a reply (HANGUP)\n");
	else
		fprintf(x->f, "  => %u %s%s\n", res.code, res.text,
			res.disconnect ? " (and the connection is closed)" : "");
	if (res.list < SMTP_LIST_MAX)
		fprintf(x->f, "     decided by %s: %s\n", smtp_restriction_list_name(res.list),
			res.restriction);
	return false;
}

/* ---------------------------------------------------------------------------------------
 * The session */

/* The command line. */
struct mx_explain_args {
	const char *config_path;
	const char *client, *name, *helo, *sender, *protocol;
	const char *rcpts[EXPLAIN_MAX_RCPT];
	unsigned nrcpt;
	bool no_dns, no_policy, verbose;
};

/* Returns 0, 1 (help printed) or 2 (usage error, said). */
static int mx_explain_args(int argc, char **argv, const char *default_config,
			   struct mx_explain_args *x)
{
	enum { OPT_NO_DNS = 256, OPT_NO_POLICY };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "no-dns", no_argument, NULL, OPT_NO_DNS },
		{ "no-policy", no_argument, NULL, OPT_NO_POLICY },
		{ NULL, 0, NULL, 0 },
	};
	*x = (struct mx_explain_args){
		.config_path = default_config, .client = "192.0.2.1", .helo = "unknown.example",
		.sender = "", .protocol = "ESMTP",
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:hv", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			x->config_path = optarg;
			break;
		case 'h':
			mx_explain_usage(stdout, default_config);
			return 1;
		case 'v':
			x->verbose = true;
			break;
		case OPT_NO_DNS:
			x->no_dns = true;
			break;
		case OPT_NO_POLICY:
			x->no_policy = true;
			break;
		default:
			mx_explain_usage(stderr, default_config);
			return 2;
		}
	}
	for (int i = optind; i < argc; i++) {
		const char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "mxgate explain: expected NAME=VALUE, got \"%s\"\n",
				argv[i]);
			return 2;
		}
		size_t kl = (size_t)(eq - argv[i]);
		const char *v = eq + 1;
#define KEY(k) (kl == strlen(k) && strncmp(argv[i], k, kl) == 0)
		if (KEY("client") || KEY("client_address"))
			x->client = v;
		else if (KEY("name") || KEY("client_name"))
			x->name = *v ? v : "unknown";
		else if (KEY("helo") || KEY("helo_name"))
			x->helo = v;
		else if (KEY("sender"))
			x->sender = v;
		else if (KEY("protocol") || KEY("protocol_name"))
			x->protocol = v;
		else if (KEY("recipient") || KEY("rcpt")) {
			if (x->nrcpt == EXPLAIN_MAX_RCPT) {
				fprintf(stderr, "mxgate explain: at most %d recipients\n",
					EXPLAIN_MAX_RCPT);
				return 2;
			}
			x->rcpts[x->nrcpt++] = v;
		} else {
			fprintf(stderr, "mxgate explain: unknown attribute \"%.*s\"\n", (int)kl,
				argv[i]);
			return 2;
		}
#undef KEY
	}
	return 0;
}

/* The table store, read-only, whenever it exists: tables, and local RBL zones that answer
 * before DNS. Returns 0 (*env and *rd NULL when there is none and the policy needs no
 * table) or -1 after saying why. */
static int mx_explain_tables(const struct mx_config *cfg, const struct smtp_policy *policy,
			     struct tables_env **env, struct tables_reader **rd)
{
	bool needs = mx_policy_needs_tables(policy);
	struct stat st;
	if (!needs && stat(cfg->table_directory, &st) < 0)
		return 0; /* zones, if any, are asked in DNS */
	char err[512];
	struct tables_env_opts o = { .read_only = true };
	if (tables_env_open(cfg->table_directory, &o, env, err, sizeof(err)) < 0) {
		if (!needs) {
			fprintf(stderr,
				"mxgate explain: warning: mxgate_table_directory: %s: RBL zones "
				"are asked in DNS only\n",
				err);
			return 0;
		}
		fprintf(stderr, "mxgate explain: mxgate_table_directory: %s\n", err);
		return -1;
	}
	if (tables_reader_open(*env, rd) < 0) {
		fprintf(stderr, "mxgate explain: cannot read the table store\n");
		return -1;
	}
	return 0;
}

/* The resolver the gateway would use; 0, or -1 after saying why. */
static int mx_explain_resolver(const struct mx_config *cfg, const struct mx_explain_args *a,
			       struct mx_explain_dns **out)
{
	*out = NULL;
	if (a->no_dns) {
		printf("DNS: not asked (--no-dns): every lookup is a temporary failure\n");
		return 0;
	}
	struct mx_explain_dns_opts o;
	char err[256];
	if (mx_explain_dns_opts_init(&o, mx_config_get(cfg, "mxgate_dns_servers"), NULL, err,
				     sizeof(err)) < 0) {
		fprintf(stderr, "mxgate explain: mxgate_dns_servers: %s\n", err);
		return -1;
	}
	if (mx_explain_dns_new(&o, out) < 0) {
		fprintf(stderr, "mxgate explain: cannot start the DNS resolver\n");
		return -1;
	}
	mx_explain_print_resolver(stdout, &o);
	return 0;
}

/* The client's name: name= as given, else looked up as at connect when the gateway
 * would (smtpd_peername_lookup). Fills *peer (which the caller clears): the request's
 * names and statuses. 0, or -1 (out of memory). */
static int mx_explain_client_name(struct mx_explain_run *x, const struct mx_explain_args *a,
				  bool lookup, const struct mx_inet_addr *addr,
				  struct mx_explain_peer *peer)
{
	memset(peer, 0, sizeof(*peer));
	if (a->name || !x->dns || !lookup) {
		/* given (the evaluator takes "unknown" as no name), or not looked up: no name,
		 * as the gateway's connection starts */
		snprintf(peer->name, sizeof(peer->name), "%s", a->name ? a->name : "unknown");
		snprintf(peer->reverse_name, sizeof(peer->reverse_name), "%s", peer->name);
		peer->name_status = peer->reverse_name_status =
			a->name ? SMTP_POLICY_NAME_DEFAULT : SMTP_POLICY_NAME_PERM;
		if (!a->name)
			fprintf(x->f, "client name: not looked up (%s): unknown\n",
				!lookup ? "smtpd_peername_lookup = no" : "--no-dns");
		return 0;
	}
	fprintf(x->f, "client name, looked up as the gateway does at connect:\n");
	if (mx_explain_peer_lookup(x->dns, addr, peer) < 0) {
		fprintf(stderr, "mxgate explain: out of memory\n");
		return -1;
	}
	mx_explain_print_peer(x->f, "  ", peer);
	return 0;
}

/* The screen of every postscreen service of mxgate_master_file, printed before the
 * session as the client meets it first; true when one would refuse the client. A service
 * whose configuration or screen cannot be built is said and skipped (the gateway would not
 * start with it). */
static bool mx_explain_screens(struct mx_explain_run *x, const struct mx_config *cfg,
			       const struct mx_inet_addr *addr)
{
	const struct mx_master *m = mx_config_master(cfg);
	bool refused = false;
	for (size_t i = 0; m && i < m->nservices; i++) {
		const struct mx_master_service *ms = &m->services[i];
		if (!ms->screen)
			continue;
		struct mx_config *own = NULL;
		if (ms->noverrides && mx_config_load_service(cfg, ms, &own, stderr) < 0) {
			fprintf(x->f, "screen (postscreen) of service %s: its configuration has "
				      "errors (above)\n", ms->name);
			continue;
		}
		const struct mx_config *scfg = own ? own : cfg;
		struct mx_screen *scr = NULL;
		char err[512];
		if (mx_screen_build(scfg, &scr, err, sizeof(err)) < 0)
			fprintf(x->f, "screen (postscreen) of service %s: %s\n", ms->name, err);
		else if (mx_explain_screen(x->f, x->dns, ms->name, scfg, scr, addr,
					   mx_clock_wall_s()))
			refused = true;
		mx_screen_free(scr);
		mx_config_free(own);
	}
	return refused;
}

/* Every stage of the session; returns true when something was refused. */
static bool mx_explain_session(struct mx_explain_run *x, const struct mx_explain_args *a,
			       const char *addr, const struct mx_explain_peer *peer,
			       struct smtp_policy_actions *actions)
{
	struct smtp_policy_session sess = { 0 };
	struct smtp_policy_request req = {
		.client_addr = addr,
		.client_name = peer->name,
		.reverse_name = peer->reverse_name,
		.client_name_status = peer->name_status,
		.reverse_name_status = peer->reverse_name_status,
		.protocol = a->protocol,
		.now = mx_clock_wall_s(),
		.session = &sess,
	};
	req.stage = SMTP_STAGE_CONNECT;
	if (!mx_explain_stage(x, &req, NULL, "CONNECT"))
		return true;
	req.stage = SMTP_STAGE_HELO;
	req.helo = a->helo;
	char label[700];
	snprintf(label, sizeof(label), "EHLO %s", a->helo);
	if (!mx_explain_stage(x, &req, NULL, label))
		return true;
	req.stage = SMTP_STAGE_MAIL;
	req.sender = a->sender;
	snprintf(label, sizeof(label), "MAIL FROM:<%s>", a->sender);
	if (!mx_explain_stage(x, &req, actions, label))
		return true;
	bool refused = false;
	unsigned accepted = 0;
	for (unsigned i = 0; i < a->nrcpt; i++) {
		req.stage = SMTP_STAGE_RCPT;
		req.recipient = a->rcpts[i];
		req.recipient_count = accepted;
		snprintf(label, sizeof(label), "RCPT TO:<%s>", a->rcpts[i]);
		if (mx_explain_stage(x, &req, actions, label))
			accepted++;
		else
			refused = true;
	}
	req.recipient = NULL;
	req.recipient_count = accepted;
	if (accepted > 0) {
		req.stage = SMTP_STAGE_DATA;
		if (!mx_explain_stage(x, &req, actions, "DATA"))
			return true;
		req.stage = SMTP_STAGE_END_OF_DATA;
		if (!mx_explain_stage(x, &req, actions, "END-OF-MESSAGE"))
			refused = true;
	} else if (a->nrcpt == 0) {
		fprintf(x->f,
			"(no recipient= given: RCPT, DATA and END-OF-MESSAGE not evaluated)\n");
	}
	return refused;
}

static void mx_explain_print_actions(const struct smtp_policy_actions *actions)
{
	if (actions->hold)
		printf("message would be held: %s\n", actions->hold_reason);
	if (actions->discard)
		printf("message would be discarded: %s\n", actions->discard_reason);
	if (actions->filter[0])
		printf("message would be delivered via FILTER %s\n", actions->filter);
	if (actions->redirect[0])
		printf("message would be redirected to <%s>\n", actions->redirect);
	if (actions->bcc[0])
		printf("a blind copy would go to <%s>\n", actions->bcc);
	for (unsigned i = 0; i < actions->nprepend; i++)
		printf("header would be prepended: %s\n", actions->prepend[i]);
}

int mx_explain_main(int argc, char **argv, const char *default_config)
{
	struct mx_explain_args a;
	int arc = mx_explain_args(argc, argv, default_config, &a);
	if (arc != 0)
		return arc == 1 ? 0 : 2;
	struct mx_inet_addr ia;
	if (!mx_inet_parse(a.client, &ia)) {
		fprintf(stderr, "mxgate explain: client=%s is not a numeric IPv4/IPv6 address\n",
			a.client);
		return 2;
	}
	char addr[INET6_ADDRSTRLEN];
	struct mx_inet_addr ua = mx_inet_unmap(&ia);
	mx_inet_format(&ua, addr, sizeof(addr));

	struct mx_config *cfg = NULL;
	int lrc = mx_config_load(a.config_path, &cfg, stderr);
	if (lrc < 0) {
		mx_config_report_failure(stderr, "mxgate explain", a.config_path, lrc);
		return 2;
	}
	int status = 2;
	struct smtp_policy *policy = NULL;
	struct tables_env *env = NULL;
	struct tables_reader *rd = NULL;
	struct smtp_policy_actions *actions = NULL;
	struct mx_explain_peer peer = { 0 };
	struct mx_explain_run x = { .f = stdout, .no_policy = a.no_policy,
				    .verbose = a.verbose,
				    .smtputf8 = cfg->smtp.enable_smtputf8 };
	char err[512];
	if (mx_policy_build(cfg, &policy, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate explain: %s: %s\n", a.config_path, err);
		goto out;
	}
	if (mx_explain_tables(cfg, policy, &env, &rd) < 0)
		goto out;
	if (smtp_policy_ctx_new(policy, rd, &x.pc) < 0 ||
	    !(actions = calloc(1, sizeof(*actions)))) {
		fprintf(stderr, "mxgate explain: out of memory\n");
		goto out;
	}
	printf("configuration %s\n", a.config_path);
	if (mx_explain_resolver(cfg, &a, &x.dns) < 0)
		goto out;
	if (cfg->anvil_rate_map && cfg->anvil_rate_map[0])
		printf("anvil rate limits: shared with the other gateways through %s (windows "
		       "aligned on anvil_rate_time_unit; connection counts per gateway)\n",
		       cfg->anvil_rate_map);
	if (a.no_policy && smtp_policy_service_count(policy) > 0)
		printf("policy servers: not contacted (--no-policy): each query fails\n");
	if (mx_explain_client_name(&x, &a, cfg->smtpd_peername_lookup, &ua, &peer) < 0)
		goto out;
	bool screened = mx_explain_screens(&x, cfg, &ua);
	printf("client %s[%s], helo=<%s>, sender=<%s>\n", peer.name, addr, a.helo, a.sender);
	bool refused = mx_explain_session(&x, &a, addr, &peer, actions) || screened;
	mx_explain_print_actions(actions);
	status = refused ? 1 : 0;
out:
	fflush(stdout);
	mx_explain_peer_clear(&peer);
	mx_explain_memo_clear(&x);
	mx_explain_uses_clear(&x);
	free(x.uses);
	free(x.lines);
	free(actions);
	mx_explain_dns_free(x.dns);
	smtp_policy_ctx_free(x.pc);
	tables_reader_close(rd);
	tables_env_close(env);
	smtp_policy_free(policy);
	mx_config_free(cfg);
	return status;
}
