#include "dataplane/session/conn_internal.h"

#include "smtp/smtp_proxy_protocol.h"

const char *const conn_cmd_names[CONN_CMD_MAX] = {
	"helo", "ehlo", "xclient", "xforward", "starttls", "auth", "mail", "rcpt", "data",
	"bdat", "rset", "noop", "vrfy", "help", "etrn", "quit", "unknown",
};


/* ---- small helpers ---- */

char *conn_dup(struct mx_span v)
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
const char *conn_printable(struct mx_span v, char *buf, size_t cap)
{
	size_t n = v.len < cap - 1 ? v.len : cap - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)v.ptr[i];
		buf[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	buf[n] = '\0';
	return buf;
}

const char *conn_printable_str(const char *s, char *buf, size_t cap)
{
	return conn_printable(mx_span_cstr(s ? s : ""), buf, cap);
}

/* "DDD" at line[0..3): the number, or 0. */
static unsigned conn_reply_digits(const char *p, size_t n)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	return v;
}

/* The start of a reply line as it leaves the session (at most its first
 * CONN_REPLY_HEAD bytes, n of them): the last line of a reply (a space or nothing after
 * its code, RFC 5321 4.2.1) is counted by its code and enhanced status code (RFC 3463:
 * class "." subject "." detail, each of 1 to 3 digits) in the worker's fixed table, and
 * timed: the first reply is the greeting, the first after the final dot is the message's
 * final reply. */
static void conn_reply_seen(struct conn *c, const char *line, size_t n)
{
	struct mx_worker_metrics *wm = &c->w->metrics;
	if (n < 4 || (line[3] != ' ' && line[3] != '\r' && line[3] != '\n'))
		return; /* a continuation line, or not a reply */
	unsigned code = conn_reply_digits(line, 3);
	if (code < 200 || code > 599)
		return;
	unsigned part[3] = { 0, 0, 0 }, np = 0;
	size_t i = 4, start = 4;
	while (i < n && np < 3) {
		if (line[i] >= '0' && line[i] <= '9' && i - start < 3) {
			i++;
			continue;
		}
		bool sep = np < 2 ? line[i] == '.' : (line[i] == ' ' || line[i] == '\r');
		if (i == start || !sep)
			break;
		part[np++] = conn_reply_digits(line + start, i - start);
		start = ++i;
	}
	/* the class of an enhanced code is the reply's (2, 4, 5); else none */
	if (np < 3 || part[0] != code / 100)
		part[0] = part[1] = part[2] = 0;
	mx_reply_count(&wm->replies, mx_reply_key(code, part[0], part[1], part[2]));
	uint64_t now = 0;
	if (!c->greeting_timed) {
		c->greeting_timed = true;
		now = mx_clock_wall_us();
		mx_latency_observe(&wm->lat[MX_LAT_GREETING],
				   now > c->started_us ? now - c->started_us : 0);
	}
	if (c->dot_us) {
		now = now ? now : mx_clock_wall_us();
		mx_latency_observe(&wm->lat[MX_LAT_DATA_FINAL], now > c->dot_us ? now - c->dot_us : 0);
		c->dot_us = 0;
	}
}

/* The session's output bytes [p, p + n) are leaving (sent, or handed to TLS): find the
 * replies' line ends in them, keeping a line's start across calls. */
static void conn_reply_scan(struct conn *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (c->reply_col < CONN_REPLY_HEAD)
			c->reply_head[c->reply_col] = p[i];
		if (c->reply_col < UINT8_MAX)
			c->reply_col++;
		if (p[i] == '\n') {
			conn_reply_seen(c, c->reply_head,
					c->reply_col < CONN_REPLY_HEAD ? c->reply_col : CONN_REPLY_HEAD);
			c->reply_col = 0;
		}
	}
}

void conn_session_output_done(struct conn *c, size_t n)
{
	struct mx_span out = smtp_session_output(c->s);
	conn_reply_scan(c, out.ptr, n < out.len ? n : out.len);
	smtp_session_output_done(c->s, n);
}

void conn_count_add(struct conn *c, enum conn_cmd cmd, unsigned total, unsigned ok)
{
	if (!c->cmds && !(c->cmds = calloc(CONN_CMD_MAX, sizeof(*c->cmds))))
		return;
	c->cmds[cmd].total += total;
	c->cmds[cmd].ok += ok;
}

void conn_count(struct conn *c, enum conn_cmd cmd, bool ok)
{
	conn_count_add(c, cmd, 1, ok);
	c->w->counters.commands++;
}

bool conn_set_client(struct conn *c, const char *name, const char *addr)
{
	char buf[CONN_CLIENT_MAX];
	snprintf(buf, sizeof(buf), "%s[%s]", name ? name : "unknown", addr);
	size_t n = strlen(buf) + 1;
	char *p = malloc(n);
	if (!p)
		return false;
	memcpy(p, buf, n);
	free(c->client);
	c->client = p;
	return true;
}

/* The last reply line the engine queued (its output ends with it), without CRLF; used to
 * log the engine's own refusals with the exact text the client saw. */
const char *conn_last_reply(const struct conn *c, char *buf, size_t cap)
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
void conn_log_action(struct conn *c, const char *kind, const char *cmd,
			    const char *text, const char *rcpt)
{
	char from[600] = "", to[600] = "", helo[300] = "", sasl[700] = "", tmp[520], shown[700];
	if (c->sender)
		snprintf(from, sizeof(from), " from=<%s>",
			 conn_printable_str(c->sender, tmp, sizeof(tmp)));
	if (rcpt)
		snprintf(to, sizeof(to), " to=<%s>", conn_printable_str(rcpt, tmp, sizeof(tmp)));
	/* Postfix's log_whatsup(): helo=<> only once HELO/EHLO named one, then the SASL
	 * login's method, name and MAIL AUTH= sender */
	if (c->helo)
		snprintf(helo, sizeof(helo), " helo=<%s>",
			 conn_printable_str(c->helo, tmp, sizeof(tmp)));
	if (c->sasl_username)
		snprintf(sasl, sizeof(sasl), " sasl_method=%s sasl_username=%s%s%s",
			 c->sasl_method ? c->sasl_method : "",
			 conn_printable_str(c->sasl_username, tmp, sizeof(tmp)),
			 c->sasl_sender ? " sasl_sender=" : "", c->sasl_sender ? c->sasl_sender : "");
	mx_log(MX_LOG_INFO, "%s: %s: %s from %s: %s;%s%s proto=%s%s%s",
	       c->queue_id[0] ? c->queue_id : "NOQUEUE", kind, cmd, c->client,
	       conn_printable_str(text, shown, sizeof(shown)), from, to,
	       smtp_session_protocol(c->s), helo, sasl);
}

void conn_log_reject(struct conn *c, const char *cmd, const char *reply,
			    const char *rcpt)
{
	conn_log_action(c, "reject", cmd, reply, rcpt);
}

void conn_txn_reset(struct conn *c)
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
	c->message_id_seen = false;
	if (c->actions && c->w->actions_pooled < CONN_ACTIONS_POOL_MAX)
		c->w->actions_pool[c->w->actions_pooled++] = c->actions;
	else
		free(c->actions);
	c->actions = NULL;
	conn_checks_close(c);
	free(c->end_cv);
	c->end_cv = NULL;
	free(c->sasl_sender);
	c->sasl_sender = NULL;
}

int conn_verdict(struct conn *c, uint16_t code, const char *text, bool disconnect)
{
	struct smtp_verdict v = { .code = code, .text = text, .disconnect = disconnect };
	int rc = smtp_session_verdict(c->s, &v);
	assert(rc == 0);
	return rc;
}

void conn_hangup(struct conn *c)
{
	smtp_session_peer_closed(c->s);
}

void conn_accept(struct conn *c)
{
	conn_verdict(c, 0, NULL, false);
}

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
	if (!cg || !(cg->svc = calloc(2 * (size_t)g->nservices, sizeof(*cg->svc)))) {
		free(cg);
		return NULL;
	}
	cg->g = mx_generation_get(g);
	cg->next = w->held;
	w->held = cg;
	return cg;
}

/* Entry k of cg->svc: service k, or for k >= nservices the stress variant of service
 * k - nservices. */
static const struct mx_service *conn_gen_service_of(const struct mx_generation *g, unsigned k)
{
	return k < g->nservices ? &g->services[k] : g->services[k - g->nservices].stress;
}

/* Entry i of a held generation (conn_gen_service_of()), made usable by this worker: the
 * policy context on the worker's LMDB reader, the scratch grown for its checks. 0 or a
 * negative errno. */
static int conn_gen_service_ready(struct conn_worker *w, struct conn_gen *cg, unsigned i)
{
	struct conn_gen_service *cs = &cg->svc[i];
	if (cs->ready)
		return 0;
	const struct mx_service *svc = conn_gen_service_of(cg->g, i);
	int rc = smtp_policy_ctx_new(svc->policy, w->tables, &cs->policy);
	if (rc < 0)
		return rc;
	/* the service's id in the shared anvil table: by name, so it is the same in every
	 * generation and a reload keeps the counts */
	cs->anvil_service = w->anvil ? anvil_service(w->anvil, svc->name) : -ENOENT;
	cs->screen_service = w->screen_counts ? anvil_service(w->screen_counts, svc->name)
					      : -ENOENT;
	for (int k = 0; svc->checks.any && k < SMTP_CHECKS_CLASS_MAX; k++)
		if (svc->checks.cfg.set[k] &&
		    (rc = checks_scratch_alloc(svc->checks.cfg.set[k], &w->checks_scratch)) < 0)
			return rc;
	if (svc->tls && !cs->tls_ctx) {
		/* this worker's own context for the service (OpenSSL 3.0 serialises threads
		 * that share one), made from the generation's keys and certificates */
		char err[512];
		if (!w->tls && (rc = tls_worker_new(&w->tls, err, sizeof(err))) < 0) {
			mx_log(MX_LOG_WARNING, "worker %u: service %s: %s", w->index, svc->name, err);
			return rc;
		}
		cs->tls_ctx = tls_ctx_new(w->tls, svc->tls, err, sizeof(err));
		if (!cs->tls_ctx) {
			mx_log(MX_LOG_WARNING, "worker %u: service %s: TLS context: %s", w->index,
			       svc->name, err);
			return -EINVAL;
		}
	}
	cs->ready = true;
	return 0;
}

/* Unlink *pp (no connection uses it) and drop the worker's reference. */
static void conn_gen_release(struct conn_worker *w, struct conn_gen **pp)
{
	(void)w;
	struct conn_gen *cg = *pp;
	*pp = cg->next;
	for (unsigned i = 0; i < 2 * cg->g->nservices; i++) {
		smtp_policy_ctx_free(cg->svc[i].policy);
		tls_ctx_free(cg->svc[i].tls_ctx);
	}
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
				   .anvil = p->anvil, .screen_counts = p->screen_counts,
				   .sasl = p->sasl, .index = index };
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
	svc_client_free(w->svc);
	w->svc = NULL;
	while (w->held)
		conn_gen_release(w, &w->held);
	while (w->checks_pooled)
		smtp_checks_free(w->checks_pool[--w->checks_pooled]);
	while (w->actions_pooled)
		free(w->actions_pool[--w->actions_pooled]);
	checks_scratch_free(w->checks_scratch);
	tls_worker_free(w->tls); /* after every SSL_CTX made in it */
	w->tls = NULL;
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

void conn_count_refused_at(struct conn_worker *w, const struct mx_inet_addr *local,
			   uint16_t local_port, bool by_port)
{
	/* the worker may read a published generation until its next quiescent point */
	struct mx_generation *g = atomic_load_explicit(&w->gens->current, memory_order_acquire);
	if (!g)
		return;
	struct mx_inet_addr a = mx_inet_unmap(local);
	int si = mx_generation_service_at(g, by_port ? NULL : &a, local_port);
	if (si < 0)
		return;
	mx_generation_counter_slot(g, w->index, (unsigned)si)->connections_refused++;
}

int conn_pick(struct conn_worker *w, const struct mx_inet_addr *peer,
	      const struct mx_inet_addr *local, uint16_t local_port, bool by_port,
	      struct conn_pick *out)
{
	struct mx_inet_addr client = mx_inet_unmap(peer);
	struct mx_generation *g = mx_gen_pick(w->gens, &client, &w->canary_acc);
	const struct mx_inet_addr *match = by_port ? NULL : local;
	int si = mx_generation_service_at(g, match, local_port);
	if (si < 0) {
		/* a listener of the other published generation (a canary that adds or drops
		 * a service): serve it from the one that has it */
		struct mx_generation *cur = atomic_load(&w->gens->current);
		struct mx_generation *can = atomic_load(&w->gens->canary);
		g = g == cur && can ? can : cur;
		si = mx_generation_service_at(g, match, local_port);
		if (si < 0)
			return -ENOENT;
	}
	/* Under stress a new connection gets the service's stress variant (the values with
	 * stress = yes), as a process master(8) starts under stress does; it keeps it for
	 * its whole life. A variant that borrows the service's lists uses its context. */
	const struct mx_service *svc = &g->services[si];
	unsigned k = (unsigned)si;
	if (svc->stress && atomic_load_explicit(&w->gens->stress, memory_order_relaxed)) {
		if (svc->stress->policy != svc->policy)
			k += g->nservices;
		svc = svc->stress;
	}
	struct conn_gen *cg = conn_gen_hold(w, g);
	if (!cg || conn_gen_service_ready(w, cg, k) < 0)
		return -ENOMEM;
	*out = (struct conn_pick){ .cg = cg, .k = k, .svc = svc };
	return 0;
}

struct conn *conn_new(struct conn_worker *w, const struct mx_inet_addr *peer, uint16_t port,
		      const struct mx_inet_addr *local, uint16_t local_port, bool by_port)
{
	struct conn_pick p;
	if (conn_pick(w, peer, local, local_port, by_port, &p) < 0)
		return NULL;
	return conn_new_picked(w, &p, peer, port, local, local_port);
}

struct conn *conn_new_picked(struct conn_worker *w, const struct conn_pick *p,
			     const struct mx_inet_addr *peer, uint16_t port,
			     const struct mx_inet_addr *local, uint16_t local_port)
{
	struct mx_inet_addr client = mx_inet_unmap(peer);
	struct conn_gen *cg = p->cg;
	const struct mx_service *svc = p->svc;
	struct mx_generation *g = cg->g;
	unsigned k = p->k;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->w = w;
	c->gen = cg;
	c->svc = svc;
	c->cfg = svc->cfg;
	c->policy = cg->svc[k].policy;
	c->anvil_service = cg->svc[k].anvil_service;
	/* a stress variant with lists of its own is entry k + nservices (conn_pick()): it
	 * counts under its service, the generation's slots are per service */
	c->gc = mx_generation_counter_slot(g, w->index, k < g->nservices ? k : k - g->nservices);
	c->addr = client;
	c->port = port;
	mx_inet_format(&c->addr, c->addr_str, sizeof(c->addr_str));
	c->server = mx_inet_unmap(local);
	c->server_port = local_port;
	c->started_us = mx_clock_wall_us();
	/* No reverse DNS in this version: Postfix shows such a client as unknown[addr]. */
	if (!conn_set_client(c, NULL, c->addr_str)) {
		free(c);
		return NULL;
	}

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
		free(c->client);
		free(c);
		return NULL;
	}
	c->xclient_allowed = info.xclient_authorized;
	smtp_session_set_rate_hook(c->s, conn_anvil_rate_over, c);
	conn_auth_offer(c);
	if (conn_proxy_init(c) < 0) {
		smtp_session_free(c->s);
		free(c->client);
		free(c);
		return NULL;
	}
	c->tls_ctx = cg->svc[k].tls_ctx;
	if (svc->tls) {
		/* STARTTLS is offered at may and encrypt; in wrappermode TLS starts now, before
		 * the greeting, and is never offered */
		smtp_session_set_tls(c->s, !svc->tls->wrappermode,
				     svc->tls->level == MX_TLS_LEVEL_ENCRYPT);
		if (svc->tls->wrappermode && conn_tls_start(c) < 0) {
			smtp_session_free(c->s);
			free(c->proxy_buf);
			free(c->client);
			free(c);
			return NULL;
		}
	}
	cg->nconns++;
	c->gc->connections++;
	w->counters.connections_accepted++;
	c->name_status = c->reverse_name_status = CONN_PEER_PERM;
	return c;
}

uint64_t conn_timeout_ms(const struct conn *c)
{
	return (uint64_t)(c->cfg->smtpd_timeout_s ? c->cfg->smtpd_timeout_s : 1) * 1000u;
}

void conn_greet(struct conn *c)
{
	c->greet_asked = true;
	if (c->proxy_buf)
		return; /* after the PROXY header (conn_proxy_input()) */
	/* Postfix looks the client's name up before it greets (smtpd_peer_init()) */
	if (c->cfg->smtpd_peername_lookup && c->w->svc) {
		conn_peer_lookup(c);
		return;
	}
	conn_greet_now(c);
}

void conn_greet_now(struct conn *c)
{
	c->greeted = true;
	mx_log(MX_LOG_INFO, "connect from %s", c->client);
	if (smtp_session_closed(c->s))
		return; /* the client went away while its name was looked up */
	/* anvil(8)'s connection count and rate, before the client restrictions as in
	 * Postfix's smtpd_proto() */
	if (conn_anvil_connect(c))
		return;
	/* With smtpd_delay_reject = no, smtpd_client_restrictions decide here (with yes the
	 * evaluator defers them to RCPT and accepts now). */
	c->check = (struct conn_check){ .at = CONN_AT_GREET, .stage = SMTP_STAGE_CONNECT,
					.cmd = "CONNECT" };
	conn_check_start(c);
}

void conn_greet_decided(struct conn *c, const struct smtp_policy_result *res)
{
	if (res->hangup) {
		conn_hangup(c);
		return;
	}
	if (res->decision != SMTP_POLICY_ACCEPT) {
		/* Postfix keeps talking: the refusal stands for the greeting and later
		 * commands get 503 (a 421/521 from a table still closes). */
		if (res->disconnect)
			smtp_session_greet_reject(c->s, res->code, res->text);
		else
			smtp_session_greet_deny(c->s, res->code, res->text);
		return;
	}
	smtp_session_greet(c->s);
}

void conn_free(struct conn *c)
{
	if (!c)
		return;
	/* "disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4":
	 * each command used, as ok/total when some failed (Postfix 3.0+, smtpd.c
	 * smtpd_format_cmd_stats()). */
	char line[512];
	size_t n = 0;
	unsigned ok = 0, total = 0;
	for (int i = 0; c->cmds && i < CONN_CMD_MAX; i++) {
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
	/* "0/0" when no command came: Postfix marks an abnormal session that way too */
	if (ok == total && total != 0)
		snprintf(line + n, sizeof(line) - n, " commands=%u", total);
	else
		snprintf(line + n, sizeof(line) - n, " commands=%u/%u", ok, total);
	mx_log(MX_LOG_INFO, "disconnect from %s%s", c->client, line);

	conn_anvil_disconnect(c);
	conn_auth_abandon(c);
	conn_wait_cancel(c);
	conn_check_abandon(c);
	conn_txn_reset(c);
	free(c->helo);
	free(c->name);
	free(c->reverse_name);
	free(c->policy_session);
	free(c->proxy_buf);
	free(c->sasl_username);
	free(c->sasl_method);
	tls_server_free(c->tls);
	free(c->tls_peer);
	free(c->cmds);
	free(c->client);
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
	size_t n = sizeof(*c) + smtp_session_memory(c->s) + (c->tls ? tls_server_memory(c->tls) : 0) +
		   strlen(c->client) + 1 + (c->cmds ? CONN_CMD_MAX * sizeof(*c->cmds) : 0) +
		   (c->policy_session ? sizeof(*c->policy_session) : 0);
	if (c->proxy_buf)
		n += SMTP_PROXY_HEADER_MAX;
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

size_t conn_input(struct conn *c, const char *buf, size_t len)
{
	size_t off = 0;
	if (c->proxy_buf) {
		/* the PROXY header comes before anything else, TLS's ClientHello too */
		off = conn_proxy_input(c, buf, len);
		if (c->proxy_buf || smtp_session_closed(c->s))
			return c->proxy_buf ? off : len;
	}
	return off + (c->tls ? conn_tls_input(c, buf + off, len - off)
			     : conn_feed(c, buf + off, len - off));
}

bool conn_pending_input(const struct conn *c)
{
	return c->tls && tls_server_plain(c->tls).len > 0 && !conn_closed(c) && !c->op &&
	       !c->commit_pending;
}

size_t conn_feed(struct conn *c, const char *buf, size_t len)
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
			/* Every verdict but a pending commit's or a check's that waits for a
			 * service is given before step() is called again, so this is the output
			 * buffer at its high-water mark (the transport flushes it), a commit the
			 * spool has not answered yet, or a lookup in flight. */
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending || c->op);
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
		case SMTP_EV_AUTH:
			conn_on_auth(c, &ev);
			break;
		case SMTP_EV_AUTH_RESPONSE:
			conn_on_auth_response(c, &ev);
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
			/* Postfix's cleanup: "ID: message-id=<>" for a message without one */
			if (c->message_open && !c->message_id_seen)
				mx_log_as(MX_LOG_CLEANUP, MX_LOG_INFO, "%s: message-id=<>",
					  c->queue_id);
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
			c->dot_us = mx_clock_wall_us(); /* until the final reply (metrics) */
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
		case SMTP_EV_STARTTLS:
			/* RFC 3207 4.2: the transaction and HELO are forgotten; the engine threw
			 * away what followed the command (off is at the end of this input) */
			conn_count(c, CONN_CMD_STARTTLS, true);
			conn_txn_reset(c);
			free(c->helo);
			c->helo = NULL;
			if (conn_tls_start(c) < 0) {
				/* no TLS after our 220: the session ends */
				smtp_session_peer_closed(c->s);
				conn_drain(c);
				return len;
			}
			/* and a login, as Postfix's smtpd_start_tls() resets SASL; AUTH is
			 * offered again with smtpd_sasl_tls_security_options */
			conn_auth_reset(c);
			conn_auth_offer(c);
			break;
		case SMTP_EV_CLOSE:
			return off;
		case SMTP_EV_MAX:
			assert(!"SMTP_EV_MAX is not an event");
			return off;
		}
		if (ev.needs_verdict)
			assert(!smtp_session_verdict_pending(c->s) || c->commit_pending || c->op);
	}
}

struct mx_span conn_output(struct conn *c)
{
	return c->tls ? conn_tls_output(c) : smtp_session_output(c->s);
}

void conn_output_done(struct conn *c, size_t n)
{
	if (c->tls)
		conn_tls_output_done(c, n);
	else
		conn_session_output_done(c, n);
}

uint64_t conn_deadline(struct conn *c, uint64_t now_ms, size_t received, bool sent)
{
	const struct mx_config *cfg = c->cfg;
	uint64_t timeout = (uint64_t)(cfg->smtpd_timeout_s ? cfg->smtpd_timeout_s : 1) * 1000u;
	if (c->proxy_buf)
		return conn_proxy_deadline(c, now_ms);
	uint64_t requests = smtp_session_requests(c->s);
	if (c->tls && tls_server_state(c->tls) == TLS_SERVER_HANDSHAKE)
		return conn_tls_handshake_deadline(c, now_ms);
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
	return smtp_session_closed(c->s) || (c->tls && conn_tls_ended(c));
}

bool conn_in_data(const struct conn *c)
{
	return smtp_session_in_data(c->s);
}

/* Drain the events the engine has after a timeout, shutdown or lost peer (the abort of a
 * message in progress) without feeding it input. */
void conn_drain(struct conn *c)
{
	/* an answer a command waited for has nobody to answer now */
	conn_wait_cancel(c);
	conn_check_abandon(c);
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
	if (c->proxy_buf) {
		conn_proxy_timeout(c);
		return;
	}
	if (smtp_session_closed(c->s))
		return;
	conn_log_after(c, "timeout");
	c->w->counters.connections_timed_out++;
	c->gc->timed_out++;
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
	if (c->proxy_buf)
		conn_proxy_eof(c);
	if (!smtp_session_closed(c->s) && !c->lost_logged) {
		conn_log_after(c, "lost connection");
		c->lost_logged = true;
	}
	smtp_session_peer_closed(c->s);
	conn_drain(c);
}

