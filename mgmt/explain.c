#include "mgmt/explain.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/config.h"
#include "mgmt/policy.h"
#include "mxgate/clock.h"
#include "mxgate/inet.h"
#include "smtp/smtp_restrictions.h"
#include "tables/tables_env.h"

#define EXPLAIN_MAX_RCPT 64

static void mx_explain_usage(FILE *f, const char *default_config)
{
	fprintf(f,
		"usage: mxgate explain [-c FILE] [client=ADDRESS] [name=HOSTNAME] [helo=NAME]\n"
		"                      [sender=ADDRESS] [recipient=ADDRESS]... [protocol=ESMTP]\n"
		"\n"
		"Runs the restriction lists of FILE (default %s) as a session with these\n"
		"values would meet them: CONNECT, HELO, MAIL, each RCPT, DATA and END-OF-MESSAGE,\n"
		"against the tables in mxgate_table_directory (read-only; a running gateway is\n"
		"not disturbed). Prints every restriction tried and what it matched, the one that\n"
		"decided, and the reply. sender= with an empty value is the null sender <>.\n"
		"Defaults: client=192.0.2.1 name=unknown helo=unknown.example sender=<>.\n"
		"Exit status: 0 all accepted, 1 something refused, 2 usage or configuration\n"
		"error.\n",
		default_config);
}

struct mx_explain_out {
	FILE *f;
};

static void mx_explain_trace(void *ctx, enum smtp_restriction_list list,
			     const char *restriction, const char *outcome, const char *detail)
{
	struct mx_explain_out *o = ctx;
	fprintf(o->f, "  %-31s %s -> %s%s%s%s\n", smtp_restriction_list_name(list), restriction,
		outcome, detail && *detail ? " (" : "", detail ? detail : "",
		detail && *detail ? ")" : "");
}

static void mx_explain_event(void *ctx, const char *kind, const char *text)
{
	struct mx_explain_out *o = ctx;
	fprintf(o->f, "  would log: %s: %s\n", kind, text);
}

/* One stage; returns true when accepted. */
static bool mx_explain_stage(struct smtp_policy_ctx *pc, struct smtp_policy_request *req,
			     struct smtp_policy_actions *actions, const char *label,
			     struct mx_explain_out *o)
{
	struct smtp_policy_result res;
	struct smtp_policy_callbacks cb = {
		.event = mx_explain_event, .trace = mx_explain_trace, .ctx = o,
	};
	fprintf(o->f, "%s\n", label);
	int rc = smtp_policy_check(pc, req, actions, &cb, &res);
	if (rc < 0) {
		fprintf(o->f, "  => evaluation failed: %s\n", strerror(-rc));
		return false;
	}
	if (res.decision == SMTP_POLICY_ACCEPT) {
		fprintf(o->f, "  => accepted\n");
		return true;
	}
	fprintf(o->f, "  => %u %s%s\n", res.code, res.text,
		res.disconnect ? " (and the connection is closed)" : "");
	if (res.list < SMTP_LIST_MAX)
		fprintf(o->f, "     decided by %s: %s\n", smtp_restriction_list_name(res.list),
			res.restriction);
	return false;
}

int mx_explain_main(int argc, char **argv, const char *default_config)
{
	const char *config_path = default_config;
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			mx_explain_usage(stdout, default_config);
			return 0;
		default:
			mx_explain_usage(stderr, default_config);
			return 2;
		}
	}

	const char *client = "192.0.2.1", *name = "unknown", *helo = "unknown.example";
	const char *sender = "", *protocol = "ESMTP";
	const char *rcpts[EXPLAIN_MAX_RCPT];
	unsigned nrcpt = 0;
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
			client = v;
		else if (KEY("name") || KEY("client_name"))
			name = *v ? v : "unknown";
		else if (KEY("helo") || KEY("helo_name"))
			helo = v;
		else if (KEY("sender"))
			sender = v;
		else if (KEY("protocol") || KEY("protocol_name"))
			protocol = v;
		else if (KEY("recipient") || KEY("rcpt")) {
			if (nrcpt == EXPLAIN_MAX_RCPT) {
				fprintf(stderr, "mxgate explain: at most %d recipients\n",
					EXPLAIN_MAX_RCPT);
				return 2;
			}
			rcpts[nrcpt++] = v;
		} else {
			fprintf(stderr, "mxgate explain: unknown attribute \"%.*s\"\n", (int)kl,
				argv[i]);
			return 2;
		}
#undef KEY
	}
	struct mx_inet_addr a;
	if (!mx_inet_parse(client, &a)) {
		fprintf(stderr, "mxgate explain: client=%s is not a numeric IPv4/IPv6 address\n",
			client);
		return 2;
	}
	char addr[INET6_ADDRSTRLEN];
	struct mx_inet_addr ua = mx_inet_unmap(&a);
	mx_inet_format(&ua, addr, sizeof(addr));

	struct mx_config *cfg = NULL;
	int lrc = mx_config_load(config_path, &cfg, stderr);
	if (lrc < 0) {
		mx_config_report_failure(stderr, "mxgate explain", config_path, lrc);
		return 2;
	}
	int status = 2;
	struct smtp_policy *policy = NULL;
	struct tables_env *env = NULL;
	struct tables_reader *rd = NULL;
	struct smtp_policy_ctx *pc = NULL;
	char err[512];
	if (mx_policy_build(cfg, &policy, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "mxgate explain: %s: %s\n", config_path, err);
		goto out;
	}
	if (mx_policy_needs_tables(policy)) {
		struct tables_env_opts o = { .read_only = true };
		if (tables_env_open(cfg->table_directory, &o, &env, err, sizeof(err)) < 0) {
			fprintf(stderr, "mxgate explain: mxgate_table_directory: %s\n", err);
			goto out;
		}
		if (tables_reader_open(env, &rd) < 0) {
			fprintf(stderr, "mxgate explain: cannot read the table store\n");
			goto out;
		}
	}
	if (smtp_policy_ctx_new(policy, rd, &pc) < 0) {
		fprintf(stderr, "mxgate explain: out of memory\n");
		goto out;
	}

	struct mx_explain_out o = { .f = stdout };
	struct smtp_policy_actions *actions = calloc(1, sizeof(*actions));
	if (!actions)
		goto out;
	printf("client %s[%s], helo=<%s>, sender=<%s>, configuration %s\n", name, addr, helo,
	       sender, config_path);
	struct smtp_policy_request req = {
		.client_addr = addr,
		.client_name = name,
		.reverse_name = name,
		.protocol = protocol,
		.now = mx_clock_wall_s(),
	};
	bool refused = false;
	req.stage = SMTP_STAGE_CONNECT;
	if (!mx_explain_stage(pc, &req, NULL, "CONNECT", &o)) {
		refused = true;
		goto done;
	}
	req.stage = SMTP_STAGE_HELO;
	req.helo = helo;
	char label[700];
	snprintf(label, sizeof(label), "EHLO %s", helo);
	if (!mx_explain_stage(pc, &req, NULL, label, &o)) {
		refused = true;
		goto done;
	}
	req.stage = SMTP_STAGE_MAIL;
	req.sender = sender;
	snprintf(label, sizeof(label), "MAIL FROM:<%s>", sender);
	if (!mx_explain_stage(pc, &req, actions, label, &o)) {
		refused = true;
		goto done;
	}
	unsigned accepted = 0;
	for (unsigned i = 0; i < nrcpt; i++) {
		req.stage = SMTP_STAGE_RCPT;
		req.recipient = rcpts[i];
		req.recipient_count = accepted;
		snprintf(label, sizeof(label), "RCPT TO:<%s>", rcpts[i]);
		if (mx_explain_stage(pc, &req, actions, label, &o))
			accepted++;
		else
			refused = true;
	}
	req.recipient = NULL;
	req.recipient_count = accepted;
	if (accepted > 0) {
		req.stage = SMTP_STAGE_DATA;
		if (!mx_explain_stage(pc, &req, actions, "DATA", &o)) {
			refused = true;
			goto done;
		}
		req.stage = SMTP_STAGE_END_OF_DATA;
		if (!mx_explain_stage(pc, &req, actions, "END-OF-MESSAGE", &o))
			refused = true;
	} else if (nrcpt == 0) {
		printf("(no recipient= given: RCPT, DATA and END-OF-MESSAGE not evaluated)\n");
	}
done:
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
	free(actions);
	status = refused ? 1 : 0;
out:
	smtp_policy_ctx_free(pc);
	tables_reader_close(rd);
	tables_env_close(env);
	smtp_policy_free(policy);
	mx_config_free(cfg);
	return status;
}
