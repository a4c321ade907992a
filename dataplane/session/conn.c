#include "dataplane/session/conn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_session.h"
#include "tables/netlist.h"

/* Postfix's wording for every failure to store a message (cleanup's "queue file write
 * error"), with the 4.3.0 enhanced code it sends. */
#define CONN_SPOOL_ERROR_TEXT "4.3.0 Error: queue file write error"
/* Postfix's smtpd refuses with this when the queue file system is short of space
 * (smtpd_check.c, "Insufficient system storage"); we send it for a full disk and for a
 * spool over mxgate_spool_quota. */
#define CONN_SPOOL_FULL_TEXT "4.3.1 Insufficient system storage"

/* "NAME[ADDR]": a name is at most 255 bytes (RFC 1035), an address INET6_ADDRSTRLEN. */
#define CONN_CLIENT_MAX (256 + INET6_ADDRSTRLEN + 2)

/* The commands the disconnect line counts, in the order of Postfix's command table
 * (smtpd_cmd_table), "unknown" last. */
enum conn_cmd {
	CONN_CMD_HELO,
	CONN_CMD_EHLO,
	CONN_CMD_XCLIENT,
	CONN_CMD_XFORWARD,
	CONN_CMD_STARTTLS,
	CONN_CMD_AUTH,
	CONN_CMD_MAIL,
	CONN_CMD_RCPT,
	CONN_CMD_DATA,
	CONN_CMD_BDAT,
	CONN_CMD_RSET,
	CONN_CMD_NOOP,
	CONN_CMD_VRFY,
	CONN_CMD_HELP,
	CONN_CMD_ETRN,
	CONN_CMD_QUIT,
	CONN_CMD_UNKNOWN,
	CONN_CMD_MAX,
};

static const char *const conn_cmd_names[CONN_CMD_MAX] = {
	"helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data",
	"bdat", "rset", "noop", "vrfy", "help", "etrn", "quit", "unknown",
};

struct conn_cmd_count {
	unsigned ok, total;
};

struct conn_gen {
	struct mx_generation *g;         /* this worker's reference */
	struct conn_gen_service *svc;    /* [g->nservices] */
	unsigned nconns;                 /* this worker's connections on it */
	struct conn_gen *next;
};

/* One service of a held generation, as this worker uses it. */
struct conn_gen_service {
	bool ready;                      /* made on first use */
	bool delay_reject;               /* smtpd_delay_reject: no per-session policy state */
	struct smtp_policy_ctx *policy;  /* table handles on the worker's reader */
};

struct conn {
	struct conn_worker *w;
	struct conn_gen *gen;          /* the generation it started with, for its whole life */
	const struct mx_service *svc;  /* its service there */
	const struct mx_config *cfg;   /* the service's parameters */
	struct smtp_policy_ctx *policy;
	struct mx_gen_counters *gc;    /* this worker's counters of the generation */
	struct smtp_session *s;
	struct mx_inet_addr addr;      /* unmapped */
	uint16_t port;
	char addr_str[INET6_ADDRSTRLEN];
	char client[CONN_CLIENT_MAX];  /* "unknown[192.0.2.1]", "NAME[ADDR]" after XCLIENT */
	char *name;                    /* the client's verified name; NULL: "unknown" */

	/* The transaction. */
	char *helo;                    /* as given; NULL before HELO/EHLO */
	char *sender;                  /* NULL before MAIL; "" for <> */
	char *mail_params;
	char *first_rcpt;              /* for Received: "for <rcpt>" */
	unsigned nrcpt;                /* accepted recipients */
	char queue_id[QUEUE_ID_SIZE];  /* "" until the first accepted recipient */
	/* Policy's envelope actions (HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND) for this
	 * transaction; allocated at MAIL (it is several KiB, and most connections never
	 * get that far), freed with the transaction. */
	struct smtp_policy_actions *actions;
	/* What the evaluator keeps across commands with smtpd_delay_reject = no
	 * (defer_if_permit from the client, helo or sender list); NULL with delay_reject. */
	struct smtp_policy_session *policy_session;
	/* header_checks and body_checks on the message being received (between DATA and its
	 * end; NULL when none are configured). */
	struct smtp_checks *checks;
	struct spool_msg *msg;         /* from the first accepted recipient to the end */
	bool message_open;             /* between the DATA verdict and the end */
	bool commit_pending;           /* handed to the spool writer, result not back yet */
	bool shutdown_deferred;        /* a stop arrived while a commit was pending */
	void *owner;                   /* the transport's handle */
	enum conn_cmd data_cmd;        /* DATA or BDAT: which counts the message */

	/* For the log. */
	struct conn_cmd_count cmds[CONN_CMD_MAX];
	bool helo_answered;            /* an RSET event right after is EHLO's implicit one */
	uint32_t delay_ms;
	bool lost_logged;

	/* smtpd_timeout: when the connection's time is up (monotonic ms), and the request
	 * count it was computed for (conn_deadline()) */
	uint64_t deadline_ms;
	uint64_t deadline_requests;
};

/* ---- small helpers ---- */

static char *conn_dup(struct mx_span v)
{
	char *p = malloc(v.len + 1);
	if (p) {
		memcpy(p, v.ptr, v.len);
		p[v.len] = '\0';
	}
	return p;
}

/* A span for a log line: control bytes would let a client forge log lines, so they
 * are shown as '?', and the length is bounded (Postfix bounds its log values too). */
static const char *conn_printable(struct mx_span v, char *buf, size_t cap)
{
	size_t n = v.len < cap - 1 ? v.len : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v.ptr[i];
		buf[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	buf[n] = '\0';
	return buf;
}

static const char *conn_printable_str(const char *s, char *buf, size_t cap)
{
	return conn_printable(mx_span_cstr(s ? s : ""), buf, cap);
}

static void conn_count(struct conn *c, enum conn_cmd cmd, bool ok)
{
	c->cmds[cmd].total++;
	if (ok)
		c->cmds[cmd].ok++;
	c->w->counters.commands++;
}

/* The last reply line the engine queued (its output ends with it), without CRLF; used to
 * log the engine's own refusals with the exact text the client saw. */
static const char *conn_last_reply(const struct conn *c, char *buf, size_t cap)
{
	struct mx_span out = smtp_session_output(c->s);
	size_t end = out.len;
	if (end >= 2 && out.ptr[end - 2] == '\r' && out.ptr[end - 1] == '\n')
		end -= 2;
	size_t start = end;
	while (start > 0 && out.ptr[start - 1] != '\n')
		start--;
	return conn_printable(mx_span_make(out.ptr + start, end - start), buf, cap);
}

/* "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <x@y>: Relay access denied;
 * from=<a@b> to=<x@y> proto=ESMTP helo=<h>", exactly as Postfix's smtpd logs a
 * restriction's refusal (the from= and to= parts only when known); other kinds
 * (reject_warning, warn, info, hold, discard, filter, redirect, bcc, prepend) the same
 * way. */
static void conn_log_action(struct conn *c, const char *kind, const char *cmd,
			    const char *text, const char *rcpt)
{
	char from[600] = "", to[600] = "", helo[300], tmp[520], shown[700];
	if (c->sender)
		snprintf(from, sizeof(from), " from=<%s>",
			 conn_printable_str(c->sender, tmp, sizeof(tmp)));
	if (rcpt)
		snprintf(to, sizeof(to), " to=<%s>", conn_printable_str(rcpt, tmp, sizeof(tmp)));
	mx_log(MX_LOG_INFO, "%s: %s: %s from %s: %s;%s%s proto=%s helo=<%s>",
	       c->queue_id[0] ? c->queue_id : "NOQUEUE", kind, cmd, c->client,
	       conn_printable_str(text, shown, sizeof(shown)), from, to,
	       smtp_session_protocol(c->s), conn_printable_str(c->helo, helo, sizeof(helo)));
}

static void conn_log_reject(struct conn *c, const char *cmd, const char *reply,
			    const char *rcpt)
{
	conn_log_action(c, "reject", cmd, reply, rcpt);
}

static void conn_txn_reset(struct conn *c)
{
	spool_msg_release(c->msg);
	c->msg = NULL;
	c->commit_pending = false;
	free(c->sender);
	free(c->mail_params);
	free(c->first_rcpt);
	c->sender = c->mail_params = c->first_rcpt = NULL;
	c->nrcpt = 0;
	c->queue_id[0] = '\0';
	c->message_open = false;
	free(c->actions);
	c->actions = NULL;
	smtp_checks_free(c->checks);
	c->checks = NULL;
}

static int conn_verdict(struct conn *c, uint16_t code, const char *text, bool disconnect)
{
	struct smtp_verdict v = { .code = code, .text = text, .disconnect = disconnect };
	int rc = smtp_session_verdict(c->s, &v);
	assert(rc == 0);
	return rc;
}

static void conn_accept(struct conn *c)
{
	conn_verdict(c, 0, NULL, false);
}

static bool conn_policy_check(struct conn *c, enum smtp_policy_stage stage, const char *cmd,
			      const char *rcpt, bool unauth_pipelining,
			      struct smtp_policy_result *res);

/* ---- generations ---- */

/* This worker's hold on g: found, or taken now (a reference of the worker's own). The
 * pointer g was read from the publisher during this poll iteration, so it is alive: the
 * management thread drops a generation only after every worker passed a quiescent point
 * since it was unpublished. NULL when out of memory. */
static struct conn_gen *conn_gen_hold(struct conn_worker *w, struct mx_generation *g)
{
	for (struct conn_gen *cg = w->held; cg; cg = cg->next)
		if (cg->g == g)
			return cg;
	struct conn_gen *cg = calloc(1, sizeof(*cg));
	if (!cg || !(cg->svc = calloc(g->nservices, sizeof(*cg->svc)))) {
		free(cg);
		return NULL;
	}
	cg->g = mx_generation_get(g);
	cg->next = w->held;
	w->held = cg;
	return cg;
}

/* Service i of a held generation, made usable by this worker: the policy context on the
 * worker's LMDB reader, the scratch grown for its checks. 0 or a negative errno. */
static int conn_gen_service_ready(struct conn_worker *w, struct conn_gen *cg, unsigned i)
{
	struct conn_gen_service *cs = &cg->svc[i];
	if (cs->ready)
		return 0;
	const struct mx_service *svc = &cg->g->services[i];
	int rc = smtp_policy_ctx_new(svc->policy, w->tables, &cs->policy);
	if (rc < 0)
		return rc;
	for (int k = 0; svc->checks.any && k < SMTP_CHECKS_CLASS_MAX; k++)
		if (svc->checks.cfg.set[k] &&
		    (rc = checks_scratch_alloc(svc->checks.cfg.set[k], &w->checks_scratch)) < 0)
			return rc;
	const char *dr = mx_config_get(svc->cfg, "smtpd_delay_reject");
	cs->delay_reject = !dr || strcasecmp(dr, "yes") == 0;
	cs->ready = true;
	return 0;
}

/* Unlink *pp (no connection uses it) and drop the worker's reference. */
static void conn_gen_release(struct conn_worker *w, struct conn_gen **pp)
{
	(void)w;
	struct conn_gen *cg = *pp;
	*pp = cg->next;
	for (unsigned i = 0; i < cg->g->nservices; i++)
		smtp_policy_ctx_free(cg->svc[i].policy);
	free(cg->svc);
	mx_generation_put(cg->g);
	free(cg);
}

/* ---- lifecycle ---- */

int conn_worker_init(struct conn_worker *w, const struct transport_params *p, unsigned index,
		     char *err, size_t errlen)
{
	int rc;
	*w = (struct conn_worker){ .gens = p->gens, .spool = p->spools[index % p->nspools],
				   .index = index };
	queue_id_gen_init(&w->qid, index, p->queue_id_floor_us);
	if (p->tables && (rc = tables_reader_open(p->tables, &w->tables)) < 0)
		return mx_errf(err, errlen, rc, "table reader: %s", strerror(-rc));
	/* the generation published now: its policy and checks are ready before the first
	 * connection, and a broken table store shows here rather than at a client */
	struct conn_gen *cg = conn_gen_hold(w, atomic_load(&p->gens->current));
	for (unsigned i = 0; cg && i < cg->g->nservices; i++)
		if ((rc = conn_gen_service_ready(w, cg, i)) < 0)
			return mx_errf(err, errlen, rc, "service %s: %s", cg->g->services[i].name,
				       strerror(-rc));
	return cg ? 0 : mx_errf(err, errlen, -ENOMEM, "out of memory");
}

void conn_worker_fini(struct conn_worker *w)
{
	spool_client_free(w->spool_client);
	while (w->held)
		conn_gen_release(w, &w->held);
	checks_scratch_free(w->checks_scratch);
	tables_reader_close(w->tables);
	w->spool_client = NULL;
	w->checks_scratch = NULL;
	w->tables = NULL;
}

void conn_worker_release_gens(struct conn_worker *w)
{
	struct mx_generation *cur = atomic_load_explicit(&w->gens->current,
							 memory_order_acquire);
	struct mx_generation *can = atomic_load_explicit(&w->gens->canary,
							 memory_order_acquire);
	for (struct conn_gen **pp = &w->held; *pp;) {
		struct conn_gen *cg = *pp;
		if (cg->nconns == 0 && cg->g != cur && cg->g != can)
			conn_gen_release(w, pp);
		else
			pp = &cg->next;
	}
}

void conn_worker_renew_tables(struct conn_worker *w)
{
	/* An LMDB read transaction is a snapshot: mxgate-map's replacements are seen from
	 * the next renewal on. */
	if (w->tables && tables_reader_renew(w->tables) < 0)
		mx_log(MX_LOG_WARNING, "worker %u: cannot renew the table reader; lookups use the "
				       "previous snapshot", w->index);
}

void conn_worker_counters_add(struct mx_counters *sum, const struct conn_worker *w)
{
#define CONN_ADD(name) sum->name += __atomic_load_n(&w->counters.name, __ATOMIC_RELAXED);
	MX_COUNTERS(CONN_ADD)
#undef CONN_ADD
}

struct conn *conn_new(struct conn_worker *w, const struct mx_inet_addr *peer, uint16_t port,
		      const struct mx_inet_addr *local, uint16_t local_port)
{
	struct mx_inet_addr client = mx_inet_unmap(peer);
	struct mx_generation *g = mx_gen_pick(w->gens, &client, &w->canary_acc);
	int si = mx_generation_service_at(g, local, local_port);
	if (si < 0) {
		/* a listener of the other published generation (a canary that adds or drops
		 * a service): serve it from the one that has it */
		struct mx_generation *cur = atomic_load(&w->gens->current);
		struct mx_generation *can = atomic_load(&w->gens->canary);
		g = g == cur && can ? can : cur;
		si = mx_generation_service_at(g, local, local_port);
		if (si < 0)
			return NULL;
	}
	struct conn_gen *cg = conn_gen_hold(w, g);
	if (!cg || conn_gen_service_ready(w, cg, (unsigned)si) < 0)
		return NULL;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	c->gen = cg;
	c->svc = &g->services[si];
	c->cfg = c->svc->cfg;
	c->policy = cg->svc[si].policy;
	c->gc = &g->counters[w->index];
	c->addr = client;
	c->port = port;
	mx_inet_format(&c->addr, c->addr_str, sizeof(c->addr_str));
	/* No reverse DNS in this version: Postfix shows such a client as unknown[addr]. */
	snprintf(c->client, sizeof(c->client), "unknown[%s]", c->addr_str);

	struct smtp_client_info info = {
		.addr = c->addr_str,
		.name = NULL,
		.port = port,
		.bare_newline_excluded = c->cfg->bare_newline_exclusions &&
					 netlist_match(c->cfg->bare_newline_exclusions, &c->addr),
		.xclient_authorized = c->cfg->xclient_hosts &&
				      netlist_match(c->cfg->xclient_hosts, &c->addr),
	};
	c->s = smtp_session_new(&c->cfg->smtp, &info);
	if (!c->s) {
		free(c);
		return NULL;
	}
	if (!cg->svc[si].delay_reject &&
	    !(c->policy_session = calloc(1, sizeof(*c->policy_session)))) {
		smtp_session_free(c->s);
		free(c);
		return NULL;
	}
	cg->nconns++;
	c->gc->connections++;
	w->counters.connections_accepted++;
	mx_log(MX_LOG_INFO, "connect from %s", c->client);
	return c;
}

uint64_t conn_timeout_ms(const struct conn *c)
{
	return (uint64_t)(c->cfg->smtpd_timeout_s ? c->cfg->smtpd_timeout_s : 1) * 1000u;
}

void conn_greet(struct conn *c)
{
	/* With smtpd_delay_reject = no, smtpd_client_restrictions decide here (with yes the
	 * evaluator defers them to RCPT and accepts now). */
	struct smtp_policy_result res;
	if (!conn_policy_check(c, SMTP_STAGE_CONNECT, "CONNECT", NULL, false, &res)) {
		/* Postfix keeps talking: the refusal stands for the greeting and later
		 * commands get 503 (a 421/521 from a table still closes). */
		if (res.disconnect)
			smtp_session_greet_reject(c->s, res.code, res.text);
		else
			smtp_session_greet_deny(c->s, res.code, res.text);
		return;
	}
	smtp_session_greet(c->s);
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	/* "disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4":
	 * each command used, as ok/total when some failed (Postfix 3.0+). */
	char line[512];
	size_t n = 0;
	unsigned ok = 0, total = 0;
	for (int i = 0; i < CONN_CMD_MAX; i++) {
		const struct conn_cmd_count *k = &c->cmds[i];
		ok += k->ok;
		total += k->total;
		if (k->total == 0)
			continue;
		if (k->ok == k->total)
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u", conn_cmd_names[i],
					      k->total);
		else
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%u/%u",
					      conn_cmd_names[i], k->ok, k->total);
	}
	if (ok == total)
		snprintf(line + n, sizeof(line) - n, " commands=%u", total);
	else
		snprintf(line + n, sizeof(line) - n, " commands=%u/%u", ok, total);
	mx_log(MX_LOG_INFO, "disconnect from %s%s", c->client, line);

	conn_txn_reset(c);
	free(c->helo);
	free(c->name);
	free(c->policy_session);
	smtp_session_free(c->s);
	c->gen->nconns--;
	c->gc->connections_closed++;
	c->w->counters.connections_closed++;
	free(c);
}

const char *conn_client(const struct conn *c)
{
	return c->client;
}

size_t conn_memory(const struct conn *c)
{
	size_t n = sizeof(*c) + smtp_session_memory(c->s);
	if (c->message_open)
		n += SPOOL_FRAGMENT_SIZE;
	return n;
}

void conn_set_owner(struct conn *c, void *owner)
{
	c->owner = owner;
}

void *conn_owner(const struct conn *c)
{
	return c->owner;
}

/* The reply for a spool error: 452 4.3.1 when storage ran out, else 451 4.3.0. */
static void conn_spool_refusal(struct conn *c, int rc)
{
	if (rc == -ENOSPC || rc == -EDQUOT)
		conn_verdict(c, 452, CONN_SPOOL_FULL_TEXT, false);
	else
		conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
}

/* Refuse a new transaction (at MAIL) or a message (at DATA) when the spool is full or
 * over its quota, before the client sends anything big. Returns true when refused. */
static bool conn_storage_refused(struct conn *c, const char *cmd)
{
	int rc = spool_storage_check(c->w->spool);
	if (rc == 0)
		return false;
	char reply[128];
	snprintf(reply, sizeof(reply), "452 %s", CONN_SPOOL_FULL_TEXT);
	mx_log(MX_LOG_WARNING, "%s: spool %s", c->queue_id[0] ? c->queue_id : "NOQUEUE",
	       rc == -EDQUOT ? "is over mxgate_spool_quota" : "file system is full");
	conn_log_reject(c, cmd, reply, NULL);
	conn_verdict(c, 452, CONN_SPOOL_FULL_TEXT, false);
	return true;
}

/* ---- policy ---- */

struct conn_policy_log {
	struct conn *c;
	const char *cmd;
	const char *rcpt;
};

/* What the restriction lists want logged (warn_if_reject, WARN, INFO, HOLD...). */
static void conn_policy_event(void *ctx, const char *kind, const char *text)
{
	struct conn_policy_log *pl = ctx;
	conn_log_action(pl->c, kind, pl->cmd, text, pl->rcpt);
}

/* Evaluate the restriction lists of `stage` (cmd names it in logs: "RCPT"). Returns true
 * when the command may be accepted; otherwise the refusal is logged and in *res (code,
 * text, disconnect) for the verdict. */
static bool conn_policy_check(struct conn *c, enum smtp_policy_stage stage, const char *cmd,
			      const char *rcpt, bool unauth_pipelining,
			      struct smtp_policy_result *res)
{
	struct smtp_policy_request req = {
		.stage = stage,
		.client_addr = c->addr_str,
		.client_name = c->name ? c->name : "unknown",
		.reverse_name = c->name ? c->name : "unknown",
		.helo = c->helo,
		.sender = c->sender,
		.recipient = rcpt,
		.protocol = smtp_session_protocol(c->s),
		.recipient_count = c->nrcpt,
		.unauth_pipelining = unauth_pipelining,
		.now = mx_clock_wall_s(),
		.session = c->policy_session,
	};
	struct conn_policy_log pl = { .c = c, .cmd = cmd, .rcpt = rcpt };
	struct smtp_policy_callbacks cb = { .event = conn_policy_event, .ctx = &pl };
	int rc = smtp_policy_check(c->policy, &req, c->actions, &cb, res);
	if (rc < 0) {
		/* A request the evaluator cannot take is our bug, not the client's: refuse it
		 * the way a broken table is refused, never let it pass. */
		mx_log(MX_LOG_WARNING, "%s: policy evaluation failed for %s: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", cmd, strerror(-rc));
		*res = (struct smtp_policy_result){ .decision = SMTP_POLICY_DEFER, .code = 451 };
		snprintf(res->text, sizeof(res->text), "4.3.5 Server configuration error");
	}
	if (res->decision == SMTP_POLICY_ACCEPT)
		return true;
	char reply[SMTP_POLICY_TEXT_MAX + 8];
	snprintf(reply, sizeof(reply), "%u %s", res->code, res->text);
	conn_log_reject(c, cmd, reply, rcpt);
	return false;
}

static void conn_policy_verdict(struct conn *c, const struct smtp_policy_result *res)
{
	conn_verdict(c, res->code, res->text, res->disconnect);
}

/* ---- events ---- */

static void conn_on_helo(struct conn *c, const struct smtp_event *ev)
{
	char *h = conn_dup(ev->u.helo.name);
	if (!h) {
		/* Out of memory: refuse this command, keep the session. */
		conn_count(c, ev->u.helo.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	free(c->helo);
	c->helo = h;
	struct smtp_policy_result res;
	if (!conn_policy_check(c, SMTP_STAGE_HELO, ev->u.helo.esmtp ? "EHLO" : "HELO", NULL,
			       ev->unauth_pipelining, &res)) {
		conn_count(c, ev->u.helo.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO, false);
		conn_policy_verdict(c, &res);
		/* Postfix does not record a refused HELO name */
		free(c->helo);
		c->helo = NULL;
		return;
	}
	conn_count(c, ev->u.helo.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO, true);
	conn_accept(c);
	/* an accepted EHLO in a transaction makes the engine queue an RSET event now */
	c->helo_answered = true;
}

/* XCLIENT from a client in smtpd_authorized_xclient_hosts (the engine refused it from
 * anyone else): the session goes on as the client it names, for the restriction lists,
 * Received: and the log, as Postfix's xclient_cmd() does. */
static void conn_on_xclient(struct conn *c, const struct smtp_event *ev)
{
	const struct smtp_xclient *x = ev->u.xclient;
	const struct smtp_xclient_value *addr = &x->attr[SMTP_XCLIENT_ADDR];
	const struct smtp_xclient_value *name = &x->attr[SMTP_XCLIENT_NAME];
	const struct smtp_xclient_value *port = &x->attr[SMTP_XCLIENT_PORT];
	const struct smtp_xclient_value *helo = &x->attr[SMTP_XCLIENT_HELO];

	struct mx_inet_addr a = c->addr;
	if (addr->present && !addr->unavailable) {
		char text[INET6_ADDRSTRLEN + 1];
		size_t n = addr->value.len < sizeof(text) - 1 ? addr->value.len : sizeof(text) - 1;
		memcpy(text, addr->value.ptr, n);
		text[n] = '\0';
		struct mx_inet_addr parsed;
		/* the engine checked the syntax; a failure here keeps the old address */
		if (mx_inet_parse(text, &parsed))
			a = mx_inet_unmap(&parsed);
	}
	char *new_name = NULL, *new_helo = NULL;
	bool oom = false;
	if (name->present && !name->unavailable)
		oom |= !(new_name = conn_dup(name->value));
	else if (!name->present && c->name)
		oom |= !(new_name = strdup(c->name)); /* NAME not given: unchanged */
	if (helo->present && !helo->unavailable)
		oom |= !(new_helo = conn_dup(helo->value));
	if (oom) {
		free(new_name);
		free(new_helo);
		conn_count(c, CONN_CMD_XCLIENT, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	conn_txn_reset(c);
	c->addr = a;
	mx_inet_format(&c->addr, c->addr_str, sizeof(c->addr_str));
	if (port->present && !port->unavailable) {
		/* 1 to 5 digits (the engine checked); Postfix takes 99999 too, we keep 16 bits */
		unsigned long p = 0;
		for (size_t i = 0; i < port->value.len && i < 5; i++)
			p = p * 10 + (unsigned long)(port->value.ptr[i] - '0');
		c->port = (uint16_t)(p <= 65535 ? p : 0);
	}
	free(c->name);
	c->name = new_name;
	free(c->helo);
	c->helo = new_helo;
	snprintf(c->client, sizeof(c->client), "%s[%s]", c->name ? c->name : "unknown",
		 c->addr_str);
	struct smtp_verdict v = {
		.code = 0,
		.xclient_authorized = c->cfg->xclient_hosts &&
				      netlist_match(c->cfg->xclient_hosts, &c->addr),
	};
	/* A new client: with smtpd_delay_reject = no its client restrictions decide now, and
	 * a refusal answers XCLIENT (Postfix's xclient_cmd()). */
	if (c->policy_session)
		memset(c->policy_session, 0, sizeof(*c->policy_session));
	struct smtp_policy_result res;
	if (!conn_policy_check(c, SMTP_STAGE_CONNECT, "CONNECT", NULL, false, &res)) {
		v.code = res.code;
		v.text = res.text;
		v.disconnect = res.disconnect;
		v.access_denied = !res.disconnect;
		conn_count(c, CONN_CMD_XCLIENT, false);
	} else {
		conn_count(c, CONN_CMD_XCLIENT, true);
	}
	smtp_session_verdict(c->s, &v);
}

static void conn_on_mail(struct conn *c, const struct smtp_event *ev)
{
	conn_txn_reset(c);
	if (conn_storage_refused(c, "MAIL")) {
		conn_count(c, CONN_CMD_MAIL, false);
		return;
	}
	c->sender = conn_dup(ev->u.mail.addr);
	c->mail_params = conn_dup(ev->u.mail.params);
	c->actions = calloc(1, sizeof(*c->actions));
	if (!c->sender || !c->mail_params || !c->actions) {
		conn_txn_reset(c);
		conn_count(c, CONN_CMD_MAIL, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	struct smtp_policy_result res;
	if (!conn_policy_check(c, SMTP_STAGE_MAIL, "MAIL", NULL, ev->unauth_pipelining, &res)) {
		conn_txn_reset(c);
		conn_count(c, CONN_CMD_MAIL, false);
		conn_policy_verdict(c, &res);
		return;
	}
	conn_count(c, CONN_CMD_MAIL, true);
	conn_accept(c);
}

/* The first accepted recipient opens the queue file, as Postfix's smtpd does: the queue
 * ID is assigned here and logged with the client. */
static int conn_open_message(struct conn *c)
{
	queue_id_next(&c->w->qid, queue_id_clock_us(), c->queue_id);
	struct spool_envelope env = {
		.queue_id = c->queue_id,
		.arrival = mx_clock_wall_s(),
		.client_addr = c->addr_str,
		.client_port = c->port,
		.client_name = c->name ? c->name : "unknown",
		.helo = smtp_session_helo(c->s),
		.protocol = smtp_session_protocol(c->s),
		.sender = mx_span_cstr(c->sender),
		.mail_params = mx_span_cstr(c->mail_params),
	};
	c->msg = spool_msg_new(c->w->spool_client, c);
	if (!c->msg)
		return -ENOMEM;
	int rc = spool_msg_begin(c->msg, &env);
	if (rc < 0)
		return rc;
	mx_log(MX_LOG_INFO, "%s: client=%s", c->queue_id, c->client);
	return 0;
}

static void conn_on_rcpt(struct conn *c, const struct smtp_event *ev)
{
	char *rcpt = conn_dup(ev->u.rcpt.addr);
	if (!rcpt) {
		conn_count(c, CONN_CMD_RCPT, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	struct smtp_policy_result res;
	bool ok = conn_policy_check(c, SMTP_STAGE_RCPT, "RCPT", rcpt, ev->unauth_pipelining,
				    &res);
	free(rcpt);
	if (!ok) {
		c->w->counters.recipients_rejected++;
		/* per generation: what a canary's policy refuses, and what it only defers */
		bool deferred = res.code >= 400 && res.code < 500;
		if (deferred)
			c->gc->recipients_deferred++;
		else
			c->gc->recipients_rejected++;
		mx_generation_count_reject(c->gen->g, c->w->index, res.restriction, deferred);
		conn_count(c, CONN_CMD_RCPT, false);
		conn_policy_verdict(c, &res);
		return;
	}

	/* Order matters: nothing may fail after the recipient is in the envelope, or a
	 * recipient the client saw refused would still get the message. */
	int rc = 0;
	if (!c->first_rcpt && !(c->first_rcpt = conn_dup(ev->u.rcpt.addr)))
		rc = -ENOMEM;
	if (rc == 0 && !c->msg)
		rc = conn_open_message(c);
	/* An envelope error is sticky: once one recipient could not be recorded, every
	 * later one and DATA fail too, so no message goes out with part of its envelope. */
	if (rc == 0)
		rc = spool_msg_add_rcpt(c->msg, ev->u.rcpt.addr, ev->u.rcpt.params);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: queue file write error: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.recipients_rejected++;
		conn_count(c, CONN_CMD_RCPT, false);
		conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
		if (c->nrcpt == 0) {
			/* nothing accepted yet: the next recipient may start afresh */
			spool_msg_release(c->msg);
			c->msg = NULL;
			free(c->first_rcpt);
			c->first_rcpt = NULL;
			c->queue_id[0] = '\0';
		}
		return;
	}
	c->nrcpt++;
	c->w->counters.recipients_accepted++;
	c->gc->recipients_accepted++;
	conn_count(c, CONN_CMD_RCPT, true);
	conn_accept(c);
}

/* A header of our own making (PREPEND, Received:): like the client's headers it passes
 * header_checks, as smtpd's do in Postfix's cleanup. */
static int conn_store_header(struct conn *c, const char *p, size_t n)
{
	if (c->checks)
		return smtp_checks_header(c->checks, p, n);
	return spool_msg_append(c->msg, p, n);
}

static int conn_checks_emit(void *ctx, const char *p, size_t n)
{
	struct conn *c = ctx;
	return spool_msg_append(c->msg, p, n);
}

/* "4ZhQ5N0Bc9z01: warning: header Subject: x from unknown[192.0.2.1]; from=<a@b>
 * to=<c@d> proto=ESMTP helo=<h>: text", as Postfix's cleanup logs a check's action. */
static void conn_checks_log(void *ctx, const struct smtp_checks_log *ev)
{
	struct conn *c = ctx;
	char line[1400], sender[520], rcpt[520], helo[300];
	smtp_checks_log_format(line, sizeof(line), ev, c->queue_id, c->client,
			       conn_printable_str(c->sender, sender, sizeof(sender)),
			       conn_printable_str(c->first_rcpt, rcpt, sizeof(rcpt)),
			       smtp_session_protocol(c->s),
			       conn_printable_str(c->helo, helo, sizeof(helo)));
	char shown[1400];
	mx_log(MX_LOG_INFO, "%s", conn_printable_str(line, shown, sizeof(shown)));
}

/* The checks' state lives only while a message is being received. */
static int conn_checks_open(struct conn *c)
{
	static const struct smtp_checks_ops ops = { .emit = conn_checks_emit,
						    .log = conn_checks_log };
	int rc = smtp_checks_new(&c->svc->checks.cfg, c->w->checks_scratch, &ops, c, &c->checks);
	if (rc < 0)
		return rc;
	smtp_checks_begin(c->checks);
	return 0;
}

/* Our Received: header goes first in the stored message (RFC 5321 4.4). */
static int conn_write_received(struct conn *c)
{
	char stack[1024];
	int64_t now = mx_clock_wall_s();
	time_t tt = (time_t)now;
	struct tm tm;
	int tz = 0;
	if (localtime_r(&tt, &tm))
		tz = (int)(tm.tm_gmtoff / 60);
	const char *single = c->nrcpt == 1 ? c->first_rcpt : NULL;
	size_t need = smtp_received_header(stack, sizeof(stack), c->s, c->queue_id, single, now,
					   tz);
	if (need < sizeof(stack))
		return conn_store_header(c, stack, need);
	char *big = malloc(need + 1);
	if (!big)
		return -ENOMEM;
	smtp_received_header(big, need + 1, c->s, c->queue_id, single, now, tz);
	int rc = conn_store_header(c, big, need);
	free(big);
	return rc;
}

/* PREPEND actions of the restriction lists go above our Received:, as smtpd writes them
 * first. The evaluator keeps them to one header line; a CR or LF that got through would
 * split it, so the line is cut there. */
static int conn_write_prepends(struct conn *c)
{
	for (unsigned i = 0; c->actions && i < c->actions->nprepend; i++) {
		char line[SMTP_POLICY_TEXT_MAX + 2];
		const char *h = c->actions->prepend[i];
		size_t n = strcspn(h, "\r\n");
		memcpy(line, h, n);
		memcpy(line + n, "\r\n", 2);
		int rc = conn_store_header(c, line, n + 2);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void conn_on_data(struct conn *c, const struct smtp_event *ev)
{
	enum conn_cmd cmd = ev->u.data.bdat ? CONN_CMD_BDAT : CONN_CMD_DATA;
	/* The engine refuses DATA without an accepted recipient itself, so the message
	 * exists here. */
	int rc = c->msg && spool_msg_nrcpt(c->msg) > 0 && !c->message_open ? 0 : -EINVAL;
	struct smtp_policy_result res;
	if (rc == 0 && !conn_policy_check(c, SMTP_STAGE_DATA, ev->u.data.bdat ? "BDAT" : "DATA",
					  NULL, ev->unauth_pipelining, &res)) {
		c->cmds[cmd].total++;
		c->w->counters.commands++;
		conn_policy_verdict(c, &res);
		return;
	}
	if (rc == 0 && spool_storage_check(c->w->spool) < 0) {
		c->cmds[cmd].total++;
		c->w->counters.commands++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_storage_refused(c, "DATA");
		conn_txn_reset(c);
		return;
	}
	if (rc == 0 && c->svc->checks.any)
		rc = conn_checks_open(c);
	if (rc == 0)
		rc = conn_write_prepends(c);
	if (rc == 0)
		rc = conn_write_received(c);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: queue file write error: %s",
		       c->queue_id[0] ? c->queue_id : "NOQUEUE", strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		/* data stays "not ok" in the disconnect counts */
		c->cmds[cmd].total++;
		c->w->counters.commands++;
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	/* Counted as ok only once the message is queued (Postfix counts data=1 for a
	 * message it accepted, data=0/1 for one it refused at the end). */
	c->cmds[cmd].total++;
	c->w->counters.commands++;
	c->message_open = true;
	c->data_cmd = cmd;
	conn_accept(c);
}

static bool conn_header_is(struct mx_span text, const char *name)
{
	size_t n = strlen(name);
	return text.len > n && text.ptr[n] == ':' && mx_span_eq_nocase(mx_span_make(text.ptr, n),
									mx_span_cstr(name));
}

/* Postfix's cleanup logs "ID: message-id=<...>"; postmasters trace mail by it. */
static void conn_log_message_id(struct conn *c, struct mx_span text)
{
	size_t i = strlen("Message-ID:"), end = text.len;
	while (i < end && (text.ptr[i] == ' ' || text.ptr[i] == '\t' || text.ptr[i] == '\r' ||
			   text.ptr[i] == '\n'))
		i++;
	while (end > i && (text.ptr[end - 1] == '\r' || text.ptr[end - 1] == '\n' ||
			   text.ptr[end - 1] == ' ' || text.ptr[end - 1] == '\t'))
		end--;
	char buf[256];
	mx_log(MX_LOG_INFO, "%s: message-id=%s", c->queue_id,
	       conn_printable(mx_span_make(text.ptr + i, end - i), buf, sizeof(buf)));
}

/* The commit's result is known: answer the final dot. */
static void conn_commit_done(struct conn *c, int rc)
{
	c->commit_pending = false;
	uint64_t size = spool_msg_size(c->msg);
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "%s: %s: %s", c->queue_id,
		       rc == -ENOSPC || rc == -EDQUOT ? "not enough space in the spool"
						       : "queue file write error",
		       strerror(-rc));
		c->w->counters.spool_failures++;
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_spool_refusal(c, rc);
		conn_txn_reset(c);
		return;
	}
	char sender[520];
	mx_log(MX_LOG_INFO, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (queued as %s)",
	       c->queue_id, conn_printable_str(c->sender, sender, sizeof(sender)), size,
	       c->nrcpt, c->queue_id);
	c->w->counters.messages_accepted++;
	c->gc->messages_accepted++;
	c->cmds[c->data_cmd].ok++;
	struct smtp_verdict v = { .code = 0, .queue_id = c->queue_id };
	smtp_session_verdict(c->s, &v); /* formats the reply now: the ID may go */
	/* The transaction is over; the next one gets a new ID at its first recipient. */
	conn_txn_reset(c);
}

/* The message is complete and passed every check, but policy said DISCARD: the client
 * hears "250 ... queued as ID" (as Postfix answers) and nothing is stored. */
static void conn_discard(struct conn *c)
{
	char sender[520];
	mx_log(MX_LOG_INFO, "%s: from=<%s>, size=%" PRIu64 ", nrcpt=%u (discarded)", c->queue_id,
	       conn_printable_str(c->sender, sender, sizeof(sender)), spool_msg_size(c->msg),
	       c->nrcpt);
	c->w->counters.messages_discarded++;
	c->cmds[c->data_cmd].ok++;
	struct smtp_verdict v = { .code = 0, .queue_id = c->queue_id };
	smtp_session_verdict(c->s, &v);
	conn_txn_reset(c);
}

static void conn_on_message_end(struct conn *c, const struct smtp_event *ev)
{
	(void)ev;
	c->message_open = false;
	/* header_checks/body_checks: what is still buffered goes out, and the verdict. */
	struct smtp_checks_verdict cv = { .outcome = SMTP_CHECKS_ACCEPT };
	if (c->checks) {
		int rc = smtp_checks_end(c->checks, &cv);
		if (rc < 0) {
			conn_commit_done(c, rc);
			return;
		}
	}
	struct smtp_policy_result res;
	if (!conn_policy_check(c, SMTP_STAGE_END_OF_DATA, "END-OF-MESSAGE", NULL, false, &res)) {
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_policy_verdict(c, &res);
		conn_txn_reset(c);
		return;
	}
	/* A DISCARD from the restriction lists decided before the content was seen: Postfix
	 * answers 250 whatever header_checks say then. */
	if (c->actions && c->actions->discard) {
		conn_discard(c);
		return;
	}
	if (cv.outcome == SMTP_CHECKS_REJECT || cv.outcome == SMTP_CHECKS_TEMPFAIL) {
		/* cleanup's refusal: the log line was written by the checks' log event */
		c->w->counters.messages_rejected++;
		c->gc->messages_rejected++;
		conn_verdict(c, (uint16_t)cv.code, cv.reply, false);
		conn_txn_reset(c);
		return;
	}
	if (cv.outcome == SMTP_CHECKS_DISCARD) {
		conn_discard(c);
		return;
	}
	/* Envelope actions: the restriction lists' (from MAIL and RCPT), then the content
	 * checks'. A FILTER or REDIRECT from the checks comes later, so it wins, as in
	 * Postfix where cleanup applies its own after smtpd's. */
	const char *bcc[1 + SMTP_CHECKS_BCC_MAX];
	unsigned nbcc = 0;
	struct spool_envelope_actions ea = { .bcc = bcc };
	if (c->actions) {
		ea.hold_reason = c->actions->hold ? c->actions->hold_reason : NULL;
		ea.filter = c->actions->filter;
		ea.redirect = c->actions->redirect;
		if (c->actions->bcc[0])
			bcc[nbcc++] = c->actions->bcc;
	}
	if (cv.hold && !ea.hold_reason)
		ea.hold_reason = cv.hold_reason ? cv.hold_reason : "";
	if (cv.filter)
		ea.filter = cv.filter;
	if (cv.redirect)
		ea.redirect = cv.redirect;
	for (unsigned i = 0; i < cv.nbcc && nbcc < 1 + SMTP_CHECKS_BCC_MAX; i++)
		bcc[nbcc++] = cv.bcc[i];
	ea.nbcc = nbcc;
	int rc = spool_msg_finish_envelope(c->msg, &ea);
	if (rc < 0) {
		conn_commit_done(c, rc);
		return;
	}
	/* The durable commit runs on the spool writer thread (group commit); the verdict
	 * follows in conn_spool_news(), and the engine holds the pipeline until then. */
	rc = spool_msg_commit(c->msg);
	if (rc < 0) {
		conn_commit_done(c, rc);
		return;
	}
	c->commit_pending = true;
}

void conn_spool_news(struct conn *c)
{
	if (!c->commit_pending || !c->msg)
		return; /* room for more bytes: the transport services us again */
	int rc = spool_msg_result(c->msg);
	if (rc > 0)
		return;
	conn_commit_done(c, rc);
	if (c->shutdown_deferred) {
		/* the stop that arrived while we waited: its 421 follows this reply */
		c->shutdown_deferred = false;
		conn_shutdown(c);
	}
}

bool conn_waiting(struct conn *c)
{
	if (c->commit_pending)
		return true;
	return c->message_open && c->msg && spool_msg_busy(c->msg);
}

/* Count a command the engine refused, by the verb it says it last saw. */
static void conn_count_refused(struct conn *c, const struct smtp_event *ev)
{
	const char *where = smtp_session_where(c->s);
	/* 500: a line that is no command at all (unknown verb, bad syntax, too long) */
	if (ev->u.error.kind == SMTP_ERR_UNKNOWN_COMMAND || ev->u.error.code == 500) {
		conn_count(c, CONN_CMD_UNKNOWN, false);
		return;
	}
	if (ev->u.error.code == 0)
		return; /* no reply of its own (junk command limit) */
	for (int i = 0; i < CONN_CMD_UNKNOWN; i++) {
		if (strcasecmp(where, conn_cmd_names[i]) == 0) {
			conn_count(c, (enum conn_cmd)i, false);
			return;
		}
	}
	/* "END-OF-MESSAGE": the message was counted at DATA and stays "not ok" */
	c->w->counters.commands++;
}

static void conn_on_error(struct conn *c, const struct smtp_event *ev)
{
	char reply[600];
	const char *where = smtp_session_where(c->s);
	enum smtp_error_kind kind = ev->u.error.kind;

	if (kind == SMTP_ERR_RECIPIENT_OVERSHOOT) {
		/* Postfix counts these RCPTs as successful commands and logs nothing */
		c->w->counters.recipients_rejected++;
		conn_count(c, CONN_CMD_RCPT, true);
		return;
	}
	c->w->counters.protocol_errors++;
	switch (kind) {
	case SMTP_ERR_UNAUTH_PIPELINING:
		/* Postfix 3.9: "improper command pipelining after CONNECT from ..." */
		c->w->counters.pipelining_violations++;
		mx_log(MX_LOG_INFO, "improper command pipelining after %s from %s", where,
		       c->client);
		return;
	case SMTP_ERR_BARE_NEWLINE:
		c->w->counters.bare_newlines++;
		mx_log(MX_LOG_INFO, "bare <LF> received after %s from %s", where, c->client);
		return;
	case SMTP_ERR_HARD_ERROR_LIMIT:
		mx_log(MX_LOG_INFO, "too many errors after %s from %s", where, c->client);
		return;
	case SMTP_ERR_TOO_MANY_RECIPIENTS:
		conn_log_reject(c, "RCPT", conn_last_reply(c, reply, sizeof(reply)), NULL);
		c->w->counters.recipients_rejected++;
		break;
	case SMTP_ERR_NO_VALID_RECIPIENTS:
		conn_log_reject(c, "DATA", conn_last_reply(c, reply, sizeof(reply)), NULL);
		break;
	case SMTP_ERR_MESSAGE_TOO_BIG:
	case SMTP_ERR_TOO_MANY_HOPS:
		if (strcmp(where, "MAIL") == 0) {
			/* MAIL FROM with a SIZE= above message_size_limit */
			conn_log_reject(c, "MAIL", conn_last_reply(c, reply, sizeof(reply)), NULL);
		} else {
			conn_log_reject(c, "END-OF-MESSAGE",
					conn_last_reply(c, reply, sizeof(reply)), NULL);
			c->w->counters.messages_rejected++;
			c->gc->messages_rejected++;
		}
		break;
	default:
		break;
	}
	conn_count_refused(c, ev);
}

size_t conn_input(struct conn *c, const char *buf, size_t len)
{
	size_t off = 0;

	for (;;) {
		if (conn_waiting(c))
			return off;
		size_t used = 0;
		bool helo_answered = c->helo_answered;
		c->helo_answered = false;
		struct smtp_event ev = smtp_session_step(c->s, buf + off, len - off, &used);
		assert(used <= len - off);
		off += used;
		switch (ev.type) {
		case SMTP_EV_NONE:
			return off;
		case SMTP_EV_BLOCKED:
			/* Every verdict but a pending commit's is given before step() is called
			 * again, so this is the output buffer at its high-water mark (the
			 * transport flushes it) or a commit the spool has not answered yet. */
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending);
			return off;
		case SMTP_EV_HELO:
			conn_on_helo(c, &ev);
			break;
		case SMTP_EV_MAIL:
			conn_on_mail(c, &ev);
			break;
		case SMTP_EV_RCPT:
			conn_on_rcpt(c, &ev);
			break;
		case SMTP_EV_DATA:
			conn_on_data(c, &ev);
			break;
		case SMTP_EV_XCLIENT:
			conn_on_xclient(c, &ev);
			break;
		case SMTP_EV_HEADER:
			if (c->message_open) {
				/* An append error is sticky in the message: the commit reports
				 * it. */
				if (c->checks)
					smtp_checks_header(c->checks, ev.u.header.text.ptr,
							   ev.u.header.text.len);
				else
					spool_msg_append(c->msg, ev.u.header.text.ptr,
							 ev.u.header.text.len);
				if (conn_header_is(ev.u.header.text, "Message-ID"))
					conn_log_message_id(c, ev.u.header.text);
			}
			break;
		case SMTP_EV_HEADERS_END:
			if (c->message_open && c->checks)
				smtp_checks_headers_end(c->checks);
			break;
		case SMTP_EV_BODY:
			if (c->message_open) {
				if (c->checks)
					smtp_checks_body(c->checks, ev.u.body.ptr, ev.u.body.len);
				else
					spool_msg_append(c->msg, ev.u.body.ptr, ev.u.body.len);
			}
			break;
		case SMTP_EV_MESSAGE_END:
			if (c->message_open) {
				conn_on_message_end(c, &ev);
			} else {
				/* DATA was refused by us (spool), so the engine cannot be here;
				 * answer with the same refusal rather than pretend. */
				conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
			}
			break;
		case SMTP_EV_MESSAGE_ABORT:
			conn_txn_reset(c);
			break;
		case SMTP_EV_RSET:
			conn_txn_reset(c);
			if (!helo_answered)
				conn_count(c, CONN_CMD_RSET, true);
			break;
		case SMTP_EV_PROTOCOL_ERROR:
			conn_on_error(c, &ev);
			if (ev.u.error.delay_ms > c->delay_ms)
				c->delay_ms = ev.u.error.delay_ms;
			if (ev.u.error.closing || c->delay_ms)
				return off;
			break;
		case SMTP_EV_QUIT:
			conn_count(c, CONN_CMD_QUIT, true);
			return off;
		case SMTP_EV_CLOSE:
			return off;
		case SMTP_EV_MAX:
			assert(!"SMTP_EV_MAX is not an event");
			return off;
		}
		if (ev.needs_verdict)
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending);
	}
}

struct mx_span conn_output(const struct conn *c)
{
	return smtp_session_output(c->s);
}

void conn_output_done(struct conn *c, size_t n)
{
	smtp_session_output_done(c->s, n);
}

uint64_t conn_deadline(struct conn *c, uint64_t now_ms, size_t received, bool sent)
{
	const struct mx_config *cfg = c->cfg;
	uint64_t timeout = (uint64_t)(cfg->smtpd_timeout_s ? cfg->smtpd_timeout_s : 1) * 1000u;
	uint64_t requests = smtp_session_requests(c->s);
	if (!cfg->smtpd_per_request_deadline) {
		/* Postfix's default: smtpd_timeout for each read and each write */
		if (received || sent || !c->deadline_ms)
			c->deadline_ms = now_ms + timeout;
		return c->deadline_ms;
	}
	if (!c->deadline_ms || requests != c->deadline_requests) {
		/* a new request (command line, message content, BDAT chunk) has smtpd_timeout
		 * from now, however its bytes trickle in */
		c->deadline_requests = requests;
		c->deadline_ms = now_ms + timeout;
	} else if (received && smtp_session_in_data(c->s)) {
		/* smtpd_min_data_rate: content moves the deadline of DATA or BDAT by
		 * received / rate seconds, never past smtpd_timeout from now (Postfix 3.7) */
		uint64_t rate = cfg->smtpd_min_data_rate ? cfg->smtpd_min_data_rate : 1;
		uint64_t later = c->deadline_ms + (uint64_t)received * 1000u / rate;
		c->deadline_ms = later < now_ms + timeout ? later : now_ms + timeout;
	}
	return c->deadline_ms;
}

uint32_t conn_take_delay_ms(struct conn *c)
{
	uint32_t d = c->delay_ms;
	c->delay_ms = 0;
	return d;
}

bool conn_closed(const struct conn *c)
{
	return smtp_session_closed(c->s);
}

bool conn_in_data(const struct conn *c)
{
	return smtp_session_in_data(c->s);
}

/* Drain the events the engine has after a timeout, shutdown or lost peer (the abort of a
 * message in progress) without feeding it input. */
static void conn_drain(struct conn *c)
{
	for (int i = 0; i < 16; i++) {
		size_t used;
		struct smtp_event ev = smtp_session_step(c->s, NULL, 0, &used);
		if (ev.type == SMTP_EV_NONE || ev.type == SMTP_EV_BLOCKED)
			break;
		if (ev.type == SMTP_EV_MESSAGE_ABORT || ev.type == SMTP_EV_RSET)
			conn_txn_reset(c);
		if (ev.needs_verdict && smtp_session_verdict_pending(c->s))
			conn_verdict(c, 421, "4.3.2 Service shutting down", true);
	}
	/* Whatever the engine said, nothing of an unfinished message may stay behind. */
	if (c->message_open || c->msg)
		conn_txn_reset(c);
}

/* "timeout after DATA (1234 bytes) from unknown[192.0.2.1]" as Postfix. */
static void conn_log_after(struct conn *c, const char *what)
{
	char bytes[48] = "";
	if (c->message_open)
		snprintf(bytes, sizeof(bytes), " (%" PRIu64 " bytes)",
			 spool_msg_size(c->msg));
	mx_log(MX_LOG_INFO, "%s after %s%s from %s", what, smtp_session_where(c->s), bytes,
	       c->client);
}

void conn_timeout(struct conn *c)
{
	if (smtp_session_closed(c->s))
		return;
	conn_log_after(c, "timeout");
	c->w->counters.connections_timed_out++;
	smtp_session_timeout(c->s);
	conn_drain(c);
}

void conn_shutdown(struct conn *c)
{
	if (smtp_session_closed(c->s))
		return;
	if (c->commit_pending) {
		/* its 250 (or 451) first, then the 421: conn_spool_news() */
		c->shutdown_deferred = true;
		return;
	}
	smtp_session_shutdown(c->s);
	conn_drain(c);
}

void conn_peer_closed(struct conn *c)
{
	if (!smtp_session_closed(c->s) && !c->lost_logged) {
		conn_log_after(c, "lost connection");
		c->lost_logged = true;
	}
	smtp_session_peer_closed(c->s);
	conn_drain(c);
}
