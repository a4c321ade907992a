/* The gateway's families (gateway_metrics.h): collect functions that read the owners'
 * memory when the registry is read. Nothing here runs on a worker. */
#include "dataplane/gateway_metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/session/conn.h"
#include "dataplane/spool/queue_id.h"
#include "dataplane/svc/svc_resolver.h"
#include "mgmt/log.h"
#include "mgmt/screen.h"
#include "mxgate/counters.h"
#include "mxgate/worker_metrics.h"

/* ---- the workers' event counters: "smtp" ---- */

#define GM_NCOUNTERS (sizeof(struct mx_counters) / sizeof(uint64_t))
_Static_assert(sizeof(struct mx_counters) % sizeof(uint64_t) == 0, "counters are uint64_t");

static const char *const gm_counter_names[] = {
#define GM_NAME(name) #name,
	MX_COUNTERS(GM_NAME)
#undef GM_NAME
};
_Static_assert(sizeof(gm_counter_names) / sizeof(gm_counter_names[0]) == GM_NCOUNTERS,
	       "one name per counter");

/* What a counter means, where a word helps; a counter added to mxgate/counters.h without a
 * row here still gets a family (its help then names it). */
static const struct {
	const char *counter, *help;
} gm_counter_help[] = {
	{ "connections_accepted", "SMTP connections accepted (sessions started)." },
	{ "connections_refused", "Connections refused at accept (limits, no service)." },
	{ "connections_closed", "SMTP connections closed." },
	{ "connections_timed_out", "SMTP connections closed by smtpd_timeout." },
	{ "commands", "SMTP commands received." },
	{ "protocol_errors", "SMTP protocol errors (Postfix's error count)." },
	{ "pipelining_violations", "Commands sent ahead without PIPELINING." },
	{ "bare_newlines", "Bare LF line ends seen." },
	{ "messages_accepted", "Messages acknowledged with 250 after the spool made them durable." },
	{ "messages_rejected", "Messages refused at DATA or end of data (4xx or 5xx)." },
	{ "messages_discarded", "Messages discarded by an action (DISCARD)." },
	{ "recipients_accepted", "RCPT TO commands accepted." },
	{ "recipients_rejected", "RCPT TO commands refused." },
	{ "bytes_received", "Bytes received from SMTP clients." },
	{ "spool_failures", "Messages the spool could not make durable (451/452)." },
	{ "proxy_failed", "Connections whose PROXY protocol header was bad." },
};

/* "connections_accepted" -> "mxgate_smtp_connections_accepted_total"; counters named
 * after their subsystem (anvil_, screen_, tls_) keep it: "mxgate_anvil_..._total";
 * byte counts are "..._bytes_total". */
static void gm_counter_family_name(const char *counter, char *buf, size_t len)
{
	static const char *const own[] = { "anvil_", "screen_", "tls_", "sasl_", "policy_",
					   "checks_", "resolver_" };
	bool prefixed = false;
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strncmp(counter, own[i], strlen(own[i])) == 0)
			prefixed = true;
	size_t n = strlen(counter);
	if (n > 6 && strncmp(counter, "bytes_", 6) == 0)
		snprintf(buf, len, "mxgate_smtp_%s_bytes_total", counter + 6);
	else
		snprintf(buf, len, "mxgate_%s%s_total", prefixed ? "" : "smtp_", counter);
}

/* ---- the families ---- */

enum gm_group {
	GM_SMTP,
	GM_REPLIES,
	GM_LATENCY,
	GM_GENERATION,
	GM_SPOOL,
	GM_RELAY,
	GM_RESOLVER,
	GM_CHECKS,
	GM_AUTH,
	GM_RELAY_DELAY,
	GM_ANVIL_SHARE,
	GM_LOG,
	GM_RELAY_OLDEST,
	GM_RELAY_NEXTHOP,
	GM_GROUP_MAX
};

struct gateway_metrics {
	struct gateway_metrics_params p;
	int handle[GM_GROUP_MAX];
	/* "smtp": open connections, then one per counter, with names made at start */
	struct mx_metric_family smtp[1 + GM_NCOUNTERS];
	char smtp_name[GM_NCOUNTERS][MX_METRIC_NAME_MAX + 1];
	char smtp_help[GM_NCOUNTERS][128];
};

static void gm_counters(const struct gateway_metrics *g, struct mx_counters *sum, uint64_t *open)
{
	g->p.ops->counters(g->p.impl, sum, open);
}

static void gm_collect_smtp(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	struct mx_counters sum;
	uint64_t open = 0;
	gm_counters(g, &sum, &open);
	if (i == 0) {
		mx_metrics_u64(sink, NULL, open);
		return;
	}
	uint64_t v[GM_NCOUNTERS];
	memcpy(v, &sum, sizeof(v));
	mx_metrics_u64(sink, NULL, v[i - 1]);
}

/* ---- replies by code ---- */

static const struct mx_metric_family gm_replies[] = {
	{ .name = "mxgate_smtp_replies_total",
	  .help = "SMTP replies sent, by reply code and enhanced status code (RFC 3463; empty: "
		  "none; other: past the per-worker table).",
	  .type = MX_METRIC_COUNTER, .labels = { "code", "enhanced" } },
};

#define GM_REPLY_MERGE (MX_REPLY_SLOTS * 4)

static void gm_collect_replies(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)i;
	struct gateway_metrics *g = ctx;
	/* the workers' tables merged by key (a worker's table is bounded, and so are the
	 * keys a gateway sends: the merge table holds four tables' worth) */
	struct {
		uint32_t key;
		uint64_t n;
	} *merged = calloc(GM_REPLY_MERGE, sizeof(*merged));
	if (!merged)
		return;
	unsigned nm = 0;
	uint64_t other = 0;
	unsigned nw = g->p.ops->workers(g->p.impl);
	for (unsigned w = 0; w < nw; w++) {
		const struct conn_worker *cw = g->p.ops->worker(g->p.impl, w);
		if (!cw)
			continue;
		const struct mx_reply_counts *t = &cw->metrics.replies;
		other += __atomic_load_n(&t->other, __ATOMIC_RELAXED);
		for (unsigned s = 0; s < MX_REPLY_SLOTS; s++) {
			uint32_t key = atomic_load_explicit(&t->slot[s].key, memory_order_acquire);
			if (!key)
				continue;
			uint64_t n = __atomic_load_n(&t->slot[s].n, __ATOMIC_RELAXED);
			unsigned k = 0;
			while (k < nm && merged[k].key != key)
				k++;
			if (k == nm) {
				if (nm == GM_REPLY_MERGE) {
					other += n;
					continue;
				}
				merged[nm++].key = key;
			}
			merged[k].n += n;
		}
	}
	for (unsigned k = 0; k < nm; k++) {
		uint32_t key = merged[k].key;
		char code[8], enh[16] = "";
		snprintf(code, sizeof(code), "%u", mx_reply_key_code(key));
		if (mx_reply_key_class(key))
			snprintf(enh, sizeof(enh), "%u.%u.%u", mx_reply_key_class(key),
				 mx_reply_key_subject(key), mx_reply_key_detail(key));
		const char *lv[2] = { code, enh };
		mx_metrics_u64(sink, lv, merged[k].n);
	}
	if (other) {
		const char *lv[2] = { "other", "other" };
		mx_metrics_u64(sink, lv, other);
	}
	free(merged);
}

/* ---- latency histograms ---- */

static const struct mx_metric_family gm_latency[MX_LAT_MAX] = {
	[MX_LAT_GREETING] = {
		.name = "mxgate_smtp_greeting_seconds",
		.help = "From the session's start (accept, or the screen's pass) to its first reply "
			"(the 220 greeting or a refusal).",
		.type = MX_METRIC_HISTOGRAM, .buckets = mx_latency_buckets_s,
		.nbuckets = MX_LATENCY_BUCKETS },
	[MX_LAT_DATA_FINAL] = {
		.name = "mxgate_smtp_data_final_reply_seconds",
		.help = "From the final dot of a message to its final reply (250 once durable, or "
			"a refusal).",
		.type = MX_METRIC_HISTOGRAM, .buckets = mx_latency_buckets_s,
		.nbuckets = MX_LATENCY_BUCKETS },
	[MX_LAT_RESTRICTIONS] = {
		.name = "mxgate_restrictions_evaluation_seconds",
		.help = "One stage of the restriction lists evaluated, waits for DNS, policy "
			"servers and greylisting included.",
		.type = MX_METRIC_HISTOGRAM, .buckets = mx_latency_buckets_s,
		.nbuckets = MX_LATENCY_BUCKETS },
	[MX_LAT_DNS] = {
		.name = "mxgate_resolver_answer_seconds",
		.help = "From a worker's DNS question (client names, RBL and RHSBL lookups, the "
			"screen's DNSBL sites excluded) to the resolver service's answer, cache hits "
			"included.",
		.type = MX_METRIC_HISTOGRAM, .buckets = mx_latency_buckets_s,
		.nbuckets = MX_LATENCY_BUCKETS },
	[MX_LAT_POLICY] = {
		.name = "mxgate_policy_answer_seconds",
		.help = "From a check_policy_service query to the policy service's answer.",
		.type = MX_METRIC_HISTOGRAM, .buckets = mx_latency_buckets_s,
		.nbuckets = MX_LATENCY_BUCKETS },
};

static void gm_collect_latency(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	uint64_t counts[MX_LATENCY_NBOUNDS + 1] = { 0 }, sum_us = 0;
	unsigned nw = g->p.ops->workers(g->p.impl);
	for (unsigned w = 0; w < nw; w++) {
		const struct conn_worker *cw = g->p.ops->worker(g->p.impl, w);
		if (!cw)
			continue;
		const struct mx_latency_hist *h = &cw->metrics.lat[i];
		for (unsigned b = 0; b <= MX_LATENCY_NBOUNDS; b++)
			counts[b] += __atomic_load_n(&h->count[b], __ATOMIC_RELAXED);
		sum_us += __atomic_load_n(&h->sum_us, __ATOMIC_RELAXED);
	}
	mx_metrics_hist(sink, NULL, counts, (double)sum_us / 1e6);
}

/* ---- header_checks and body_checks ---- */

static const struct mx_metric_family gm_checks[] = {
	{ .name = "mxgate_checks_messages_total",
	  .help = "Messages header_checks/body_checks decided, by outcome (accept, reject, "
		  "discard, tempfail) and by envelope action asked for (hold, filter, redirect, "
		  "bcc).",
	  .type = MX_METRIC_COUNTER, .labels = { "action" } },
};

static void gm_collect_checks(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)i;
	struct gateway_metrics *g = ctx;
	static const char *const names[MX_CHECKS_ACTION_MAX] = {
		[MX_CHECKS_ACCEPT] = "accept",     [MX_CHECKS_REJECT] = "reject",
		[MX_CHECKS_DISCARD] = "discard",   [MX_CHECKS_TEMPFAIL] = "tempfail",
		[MX_CHECKS_HOLD] = "hold",         [MX_CHECKS_FILTER] = "filter",
		[MX_CHECKS_REDIRECT] = "redirect", [MX_CHECKS_BCC] = "bcc",
	};
	uint64_t sum[MX_CHECKS_ACTION_MAX] = { 0 };
	unsigned nw = g->p.ops->workers(g->p.impl);
	for (unsigned w = 0; w < nw; w++) {
		const struct conn_worker *cw = g->p.ops->worker(g->p.impl, w);
		for (unsigned a = 0; cw && a < MX_CHECKS_ACTION_MAX; a++)
			sum[a] += __atomic_load_n(&cw->metrics.checks[a], __ATOMIC_RELAXED);
	}
	for (unsigned a = 0; a < MX_CHECKS_ACTION_MAX; a++) {
		const char *lv[1] = { names[a] };
		mx_metrics_u64(sink, lv, sum[a]);
	}
}

/* ---- SMTP AUTH ---- */

static const struct mx_metric_family gm_auth[] = {
	{ .name = "mxgate_sasl_authentications_total",
	  .help = "SMTP AUTH exchanges by outcome: success (235), failed (535), tempfail (454: "
		  "the auth server did not answer), aborted (the client's \"*\").",
	  .type = MX_METRIC_COUNTER, .labels = { "outcome" } },
};

static void gm_collect_auth(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)i;
	struct gateway_metrics *g = ctx;
	static const char *const names[MX_AUTH_OUTCOME_MAX] = {
		[MX_AUTH_SUCCESS] = "success", [MX_AUTH_FAILED] = "failed",
		[MX_AUTH_TEMPFAIL] = "tempfail", [MX_AUTH_ABORTED] = "aborted",
	};
	uint64_t sum[MX_AUTH_OUTCOME_MAX] = { 0 };
	unsigned nw = g->p.ops->workers(g->p.impl);
	for (unsigned w = 0; w < nw; w++) {
		const struct conn_worker *cw = g->p.ops->worker(g->p.impl, w);
		for (unsigned a = 0; cw && a < MX_AUTH_OUTCOME_MAX; a++)
			sum[a] += __atomic_load_n(&cw->metrics.auth[a], __ATOMIC_RELAXED);
	}
	for (unsigned a = 0; a < MX_AUTH_OUTCOME_MAX; a++) {
		const char *lv[1] = { names[a] };
		mx_metrics_u64(sink, lv, sum[a]);
	}
}

/* ---- generations and services ---- */

enum gm_gen_family {
	GM_GEN_INFO,
	GM_GEN_CONNECTIONS,
	GM_GEN_OPEN,
	GM_GEN_MSG_ACCEPTED,
	GM_GEN_MSG_REJECTED,
	GM_GEN_RCPT_ACCEPTED,
	GM_GEN_RCPT_REJECTED,
	GM_GEN_RCPT_DEFERRED,
	GM_GEN_REFUSALS,
	GM_GEN_DNSBL,
	GM_GEN_REFUSED,
	GM_GEN_ANVIL_REFUSED,
	GM_GEN_TIMED_OUT,
	GM_GEN_MAX
};

#define GM_GS { "generation", "service" }
static const struct mx_metric_family gm_generation[GM_GEN_MAX] = {
	[GM_GEN_INFO] = { .name = "mxgate_generation_info",
			  .help = "1 for each configuration generation held: current, canary "
				  "or retiring (its last connections still open).",
			  .type = MX_METRIC_GAUGE, .labels = { "generation", "role" } },
	[GM_GEN_CONNECTIONS] = { .name = "mxgate_service_sessions_total",
				 .help = "SMTP sessions by service and configuration generation.",
				 .type = MX_METRIC_COUNTER, .labels = GM_GS,
				 .stat_key = "connections" },
	[GM_GEN_OPEN] = { .name = "mxgate_service_sessions_open",
			  .help = "SMTP sessions open now, by service and generation.",
			  .type = MX_METRIC_GAUGE, .labels = GM_GS, .stat_key = "open" },
	[GM_GEN_MSG_ACCEPTED] = { .name = "mxgate_service_messages_accepted_total",
				  .help = "Messages accepted, by service and generation.",
				  .type = MX_METRIC_COUNTER, .labels = GM_GS,
				  .stat_key = "messages_accepted" },
	[GM_GEN_MSG_REJECTED] = { .name = "mxgate_service_messages_rejected_total",
				  .help = "Messages refused at DATA or end of data, by service and "
					  "generation.",
				  .type = MX_METRIC_COUNTER, .labels = GM_GS,
				  .stat_key = "messages_rejected" },
	[GM_GEN_RCPT_ACCEPTED] = { .name = "mxgate_service_recipients_accepted_total",
				   .help = "Recipients accepted, by service and generation.",
				   .type = MX_METRIC_COUNTER, .labels = GM_GS,
				   .stat_key = "recipients_accepted" },
	[GM_GEN_RCPT_REJECTED] = { .name = "mxgate_service_recipients_rejected_total",
				   .help = "Recipients refused with 5xx, by service and generation.",
				   .type = MX_METRIC_COUNTER, .labels = GM_GS,
				   .stat_key = "recipients_rejected" },
	[GM_GEN_RCPT_DEFERRED] = { .name = "mxgate_service_recipients_deferred_total",
				   .help = "Recipients refused with 4xx, by service and generation.",
				   .type = MX_METRIC_COUNTER, .labels = GM_GS,
				   .stat_key = "recipients_deferred" },
	[GM_GEN_REFUSALS] = { .name = "mxgate_restriction_refusals_total",
			      .help = "Recipients refused, by the restriction list that refused "
				      "(smtpd_recipient_restrictions; empty: no list, a rate limit) "
				      "and the restriction as main.cf writes it "
				      "(reject_rbl_client zen.spamhaus.org), generation and outcome "
				      "(reject: 5xx, defer: 4xx); bounded per worker, the rest is "
				      "\"other\".",
			      .type = MX_METRIC_COUNTER,
			      .labels = { "generation", "list", "restriction", "outcome" } },
	[GM_GEN_DNSBL] = { .name = "mxgate_screen_dnsbl_listed_total",
			   .help = "Screened clients each DNSBL site of postscreen_dnsbl_sites "
				   "listed, by generation and service.",
			   .type = MX_METRIC_COUNTER,
			   .labels = { "generation", "service", "site" } },
	[GM_GEN_REFUSED] = { .name = "mxgate_service_connections_refused_total",
			     .help = "Connections refused at accept (mxgate_max_connections, out "
				     "of memory, stopping), by the service they reached and "
				     "generation.",
			     .type = MX_METRIC_COUNTER, .labels = GM_GS },
	[GM_GEN_ANVIL_REFUSED] = { .name = "mxgate_service_anvil_refusals_total",
				   .help = "Connections refused with 421 by "
					   "smtpd_client_connection_count_limit or "
					   "smtpd_client_connection_rate_limit, by service and "
					   "generation.",
				   .type = MX_METRIC_COUNTER, .labels = GM_GS },
	[GM_GEN_TIMED_OUT] = { .name = "mxgate_service_timeouts_total",
			       .help = "Sessions closed by smtpd_timeout, by service and "
				       "generation.",
			       .type = MX_METRIC_COUNTER, .labels = GM_GS },
};

struct gm_gen_visit {
	unsigned family;
	struct mx_metrics_sink *sink;
	char id[24];
};

static void gm_gen_reject(void *ctx, const char *list, const char *restriction,
			  uint64_t rejected, uint64_t deferred)
{
	struct gm_gen_visit *v = ctx;
	const char *lr[4] = { v->id, list, restriction, "reject" };
	mx_metrics_u64(v->sink, lr, rejected);
	const char *ld[4] = { v->id, list, restriction, "defer" };
	mx_metrics_u64(v->sink, ld, deferred);
}

/* A service's screen sites (and its stress variant's, added to the site of the same
 * text: a site is one label whatever variant listed the client). */
static void gm_gen_dnsbl(struct gm_gen_visit *v, const char *service, const struct mx_service *svc)
{
	const struct mx_screen *scr[2] = { svc->screen, svc->stress ? svc->stress->screen : NULL };
	if (scr[1] == scr[0])
		scr[1] = NULL;
	for (unsigned a = 0; a < 2; a++) {
		for (unsigned k = 0; scr[a] && scr[a]->sites && k < scr[a]->cfg->nsites; k++) {
			const char *text = scr[a]->sites[k].text;
			/* the stress variant's site already shown with the base's */
			bool shown = false;
			for (unsigned j = 0; a == 1 && scr[0] && scr[0]->sites &&
					     j < scr[0]->cfg->nsites; j++)
				shown = shown || strcmp(scr[0]->sites[j].text, text) == 0;
			if (shown)
				continue;
			uint64_t n = 0;
			for (unsigned b = a; b < 2; b++)
				for (unsigned j = 0; scr[b] && scr[b]->sites && j < scr[b]->cfg->nsites;
				     j++)
					if (strcmp(scr[b]->sites[j].text, text) == 0)
						n += atomic_load_explicit(&scr[b]->sites[j].listed,
									  memory_order_relaxed);
			const char *lv[3] = { v->id, service, text };
			mx_metrics_u64(v->sink, lv, n);
		}
	}
}

static void gm_gen_one(void *ctx, const struct mx_generation *g, const char *role)
{
	struct gm_gen_visit *v = ctx;
	snprintf(v->id, sizeof(v->id), "%" PRIu64, g->id);
	if (v->family == GM_GEN_INFO) {
		const char *lv[2] = { v->id, role };
		mx_metrics_u64(v->sink, lv, 1);
		return;
	}
	if (v->family == GM_GEN_REFUSALS) {
		mx_generation_rejects_by_list(g, gm_gen_reject, v);
		return;
	}
	if (v->family == GM_GEN_DNSBL) {
		for (unsigned s = 0; s < g->nservices; s++)
			gm_gen_dnsbl(v, g->services[s].name, &g->services[s]);
		return;
	}
	for (unsigned s = 0; s < g->nservices; s++) {
		struct mx_gen_counters c;
		mx_generation_service_counters(g, s, &c);
		uint64_t val = 0;
		switch ((enum gm_gen_family)v->family) {
		case GM_GEN_CONNECTIONS: val = c.connections; break;
		case GM_GEN_OPEN: val = c.connections - c.connections_closed; break;
		case GM_GEN_MSG_ACCEPTED: val = c.messages_accepted; break;
		case GM_GEN_MSG_REJECTED: val = c.messages_rejected; break;
		case GM_GEN_RCPT_ACCEPTED: val = c.recipients_accepted; break;
		case GM_GEN_RCPT_REJECTED: val = c.recipients_rejected; break;
		case GM_GEN_RCPT_DEFERRED: val = c.recipients_deferred; break;
		case GM_GEN_REFUSED: val = c.connections_refused; break;
		case GM_GEN_ANVIL_REFUSED: val = c.anvil_refused; break;
		case GM_GEN_TIMED_OUT: val = c.timed_out; break;
		default: break;
		}
		const char *lv[2] = { v->id, g->services[s].name };
		mx_metrics_u64(v->sink, lv, val);
	}
}

static void gm_collect_generation(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	struct gm_gen_visit v = { .family = i, .sink = sink };
	reload_visit_generations(g->p.reload, gm_gen_one, &v);
}

/* ---- spools and relays ---- */

enum {
	GM_SP_COMMITTED,
	GM_SP_FAILED,
	GM_SP_SYNCS,
	GM_SP_BYTES,
	GM_SP_PUNCHED,
	GM_SP_SLEEPS,
	GM_SP_WAKEUPS,
	GM_SP_MAX
};

static const struct mx_metric_family gm_spool[GM_SP_MAX] = {
	[GM_SP_COMMITTED] = { .name = "mxgate_spool_messages_committed_total",
			      .help = "Messages made durable (fdatasync) by the spool writer.",
			      .type = MX_METRIC_COUNTER, .labels = { "spool" },
			      .stat_key = "committed" },
	[GM_SP_FAILED] = { .name = "mxgate_spool_messages_failed_total",
			   .help = "Messages the spool writer failed (a failed write or sync).",
			   .type = MX_METRIC_COUNTER, .labels = { "spool" },
			   .stat_key = "failed" },
	[GM_SP_SYNCS] = { .name = "mxgate_spool_syncs_total",
			  .help = "Group commits (fdatasync calls); messages per sync is "
				  "committed / syncs.",
			  .type = MX_METRIC_COUNTER, .labels = { "spool" }, .stat_key = "syncs" },
	[GM_SP_BYTES] = { .name = "mxgate_spool_bytes",
			  .help = "Bytes the spool's segments occupy (what mxgate_spool_quota "
				  "counts).",
			  .type = MX_METRIC_GAUGE, .labels = { "spool" }, .stat_key = "bytes" },
	[GM_SP_PUNCHED] = { .name = "mxgate_spool_punched_bytes_total",
			    .help = "Bytes given back from messages that never became durable.",
			    .type = MX_METRIC_COUNTER, .labels = { "spool" },
			    .stat_key = "punched" },
	[GM_SP_SLEEPS] = { .name = "mxgate_spool_writer_sleeps_total",
			   .help = "Times the spool writer blocked for want of work.",
			   .type = MX_METRIC_COUNTER, .labels = { "spool" },
			   .stat_key = "writer_sleeps" },
	[GM_SP_WAKEUPS] = { .name = "mxgate_spool_writer_wakeups_total",
			    .help = "Times a worker or another thread had to wake the sleeping "
				    "spool writer (a futex call; none while it is busy).",
			    .type = MX_METRIC_COUNTER, .labels = { "spool" },
			    .stat_key = "writer_wakeups" },
};

static void gm_collect_spool(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	for (unsigned k = 0; k < g->p.nspools; k++) {
		struct spool_stats st;
		spool_stats(g->p.spools[k], &st);
		const uint64_t v[GM_SP_MAX] = { st.committed,	  st.failed,
						st.syncs,	  st.bytes,
						st.punched,	  st.writer_sleeps,
						st.writer_wakeups };
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		const char *lv[1] = { idx };
		mx_metrics_u64(sink, lv, v[i]);
	}
}

enum {
	GM_RL_QUEUED, GM_RL_SENT, GM_RL_DEFERRED, GM_RL_BOUNCED, GM_RL_EXPIRED, GM_RL_NOTIFIED,
	GM_RL_REMOVED, GM_RL_RECLAIMED, GM_RL_RELOCATED, GM_RL_MAX
};

#define GM_RELAY(idx, nm, typ, key, hlp)                                                   \
	[idx] = { .name = nm, .help = hlp, .type = typ, .labels = { "spool" }, .stat_key = key }
static const struct mx_metric_family gm_relay[GM_RL_MAX] = {
	/* by state: counted under the relay's lock at read time (relay_queue_states()) */
	[GM_RL_QUEUED] = { .name = "mxgate_relay_queue_messages",
			   .help = "Live messages in the queue (not yet delivered to every "
				   "recipient), by state: hold, active (an attempt running), "
				   "deferred (backoff), waiting (for a connection to a busy next "
				   "hop), ready (for a delivery thread).",
			   .type = MX_METRIC_GAUGE, .labels = { "spool", "state" },
			   .stat_key = "queued" },
	GM_RELAY(GM_RL_SENT, "mxgate_relay_recipients_sent_total", MX_METRIC_COUNTER, "sent",
		 "Recipients the next hop accepted."),
	GM_RELAY(GM_RL_DEFERRED, "mxgate_relay_deferrals_total", MX_METRIC_COUNTER, "deferred",
		 "Delivery attempts that left recipients pending (retried with backoff)."),
	GM_RELAY(GM_RL_BOUNCED, "mxgate_relay_recipients_bounced_total", MX_METRIC_COUNTER,
		 "bounced", "Recipients the next hop refused for good."),
	GM_RELAY(GM_RL_EXPIRED, "mxgate_relay_recipients_expired_total", MX_METRIC_COUNTER,
		 "expired", "Recipients returned after their queue lifetime."),
	GM_RELAY(GM_RL_NOTIFIED, "mxgate_relay_notifications_total", MX_METRIC_COUNTER,
		 "notifications", "Delivery status notifications spooled."),
	GM_RELAY(GM_RL_REMOVED, "mxgate_relay_messages_removed_total", MX_METRIC_COUNTER,
		 "removed", "Messages retired (every recipient done)."),
	GM_RELAY(GM_RL_RECLAIMED, "mxgate_relay_segments_reclaimed_total", MX_METRIC_COUNTER,
		 "segments_reclaimed", "Spool segments deleted."),
	GM_RELAY(GM_RL_RELOCATED, "mxgate_relay_messages_relocated_total", MX_METRIC_COUNTER,
		 "relocated", "Messages copied forward to free old segments."),
};

static const struct mx_metric_family gm_relay_delay[] = {
	{ .name = "mxgate_relay_delivery_delay_seconds",
	  .help = "From a message's arrival to a recipient's final status (sent or bounced), as "
		  "Postfix's delay=.",
	  .type = MX_METRIC_HISTOGRAM, .labels = { "spool" }, .buckets = mx_latency_buckets_s,
	  .nbuckets = MX_LATENCY_BUCKETS },
};

static void gm_collect_relay_delay(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)i;
	struct gateway_metrics *g = ctx;
	for (unsigned k = 0; k < g->p.nspools; k++) {
		uint64_t counts[MX_LATENCY_NBOUNDS + 1], sum_us;
		relay_delivery_delays(g->p.relays[k], counts, &sum_us);
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		const char *lv[1] = { idx };
		mx_metrics_hist(sink, lv, counts, (double)sum_us / 1e6);
	}
}

static void gm_collect_relay(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	for (unsigned k = 0; k < g->p.nspools; k++) {
		struct relay_stats rs;
		relay_stats(g->p.relays[k], &rs);
		const uint64_t v[GM_RL_MAX] = { rs.queued,  rs.sent,    rs.deferred,
						rs.bounced, rs.expired, rs.notified,
						rs.removed, rs.reclaimed, rs.relocated };
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		if (i == GM_RL_QUEUED) {
			struct relay_queue_states qs;
			relay_queue_states(g->p.relays[k], &qs);
			for (unsigned st = 0; st < RELAY_QS_MAX; st++) {
				const char *ls[2] = { idx, relay_qstate_name(st) };
				mx_metrics_u64(sink, ls, qs.messages[st]);
			}
			continue;
		}
		const char *lv[1] = { idx };
		mx_metrics_u64(sink, lv, v[i]);
	}
}

/* ---- the queue's oldest message, and the next hops ---- */

static const struct mx_metric_family gm_relay_oldest[] = {
	{ .name = "mxgate_relay_queue_oldest_age_seconds",
	  .help = "Age of the oldest live message in the queue (since its queue ID was made); "
		  "0 when the queue is empty.",
	  .type = MX_METRIC_GAUGE, .labels = { "spool" } },
};

static void gm_collect_relay_oldest(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)i;
	struct gateway_metrics *g = ctx;
	uint64_t now_us = queue_id_clock_us();
	for (unsigned k = 0; k < g->p.nspools; k++) {
		struct relay_queue_states qs;
		relay_queue_states(g->p.relays[k], &qs);
		double age = qs.oldest_arrival_us && qs.oldest_arrival_us < now_us
				     ? (double)(now_us - qs.oldest_arrival_us) / 1e6 : 0.0;
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		const char *lv[1] = { idx };
		mx_metrics_f64(sink, lv, age);
	}
}

enum { GM_NH_ATTEMPTS, GM_NH_DELIVERED, GM_NH_DEFERRED, GM_NH_BOUNCED, GM_NH_MAX };

#define GM_NH(idx, nm, hlp)                                                                \
	[idx] = { .name = nm, .help = hlp, .type = MX_METRIC_COUNTER,                      \
		  .labels = { "spool", "nexthop" } }
static const struct mx_metric_family gm_relay_nexthop[GM_NH_MAX] = {
	GM_NH(GM_NH_ATTEMPTS, "mxgate_relay_nexthop_attempts_total",
	      "Delivery transactions tried per next hop (the destination's key, as "
	      "smtp:192.0.2.1:25; past 64 per relay: other)."),
	GM_NH(GM_NH_DELIVERED, "mxgate_relay_nexthop_recipients_delivered_total",
	      "Recipients the next hop accepted."),
	GM_NH(GM_NH_DEFERRED, "mxgate_relay_nexthop_recipients_deferred_total",
	      "Recipients deferred at the next hop (4xx, no connection, timeout)."),
	GM_NH(GM_NH_BOUNCED, "mxgate_relay_nexthop_recipients_bounced_total",
	      "Recipients the next hop refused for good (5xx)."),
};

struct gm_nh_visit {
	unsigned family;
	const char *spool;
	struct mx_metrics_sink *sink;
};

static void gm_nh_one(void *ctx, const char *nexthop, const struct relay_nexthop_counts *c)
{
	const struct gm_nh_visit *v = ctx;
	const uint64_t val[GM_NH_MAX] = { c->attempts, c->delivered, c->deferred, c->bounced };
	const char *lv[2] = { v->spool, nexthop };
	mx_metrics_u64(v->sink, lv, val[v->family]);
}

static void gm_collect_relay_nexthop(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	for (unsigned k = 0; k < g->p.nspools; k++) {
		char idx[12];
		snprintf(idx, sizeof(idx), "%u", k);
		struct gm_nh_visit v = { .family = i, .spool = idx, .sink = sink };
		relay_nexthops(g->p.relays[k], gm_nh_one, &v);
	}
}

/* ---- the resolver ---- */

#define GM_RES_COUNTER(what, hlp)                                                          \
	{ .name = "mxgate_resolver_" what "_total", .help = hlp, .type = MX_METRIC_COUNTER }
#define GM_RES_GAUGE(what, hlp)                                                            \
	{ .name = "mxgate_resolver_" what, .help = hlp, .type = MX_METRIC_GAUGE }
/* in SVC_RESOLVER_STATS order */
static const struct mx_metric_family gm_resolver[] = {
	GM_RES_COUNTER("requests", "DNS questions the workers asked."),
	GM_RES_COUNTER("cache_hits", "Answered from the cache."),
	GM_RES_COUNTER("cache_misses", "Not in the cache (merged or sent)."),
	GM_RES_COUNTER("merges", "Waited on the same question already on the wire."),
	GM_RES_COUNTER("queries", "DNS messages sent (UDP and TCP, retries included)."),
	GM_RES_COUNTER("answers", "Responses accepted."),
	GM_RES_COUNTER("timeouts", "Tries that got no answer in time."),
	GM_RES_COUNTER("tcp_fallbacks", "Truncated UDP answers asked again over TCP."),
	GM_RES_COUNTER("servfails", "SERVFAIL, REFUSED and other error RCODEs."),
	GM_RES_COUNTER("malformed", "Answers that did not parse."),
	GM_RES_COUNTER("mismatched", "Datagrams that answer no query of ours."),
	GM_RES_COUNTER("tempfails", "Requests answered TEMPFAIL."),
	GM_RES_COUNTER("expired", "Requests whose own deadline came first."),
	GM_RES_COUNTER("busy", "Requests refused: too many questions in flight."),
	GM_RES_COUNTER("cache_evictions", "Cache entries dropped for room."),
	GM_RES_GAUGE("cache_entries", "Entries in the cache."),
	GM_RES_GAUGE("cache_bytes", "Bytes the cache holds (estimated)."),
	GM_RES_GAUGE("in_flight", "Questions on the wire."),
	GM_RES_GAUGE("tcp_connections", "TCP connections open to resolvers."),
};
_Static_assert(sizeof(gm_resolver) / sizeof(gm_resolver[0]) ==
		       sizeof(struct svc_resolver_stats) / sizeof(uint64_t),
	       "a family per resolver statistic");

static void gm_collect_resolver(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	struct svc_resolver_stats st;
	svc_resolver_statistics(g->p.resolver, &st);
	uint64_t v[sizeof(st) / sizeof(uint64_t)];
	memcpy(v, &st, sizeof(v));
	mx_metrics_u64(sink, NULL, v[i]);
}

/* ---- the shared anvil sync (svc_anvil.h) ---- */

#define GM_AS_COUNTER(what, hlp)                                                           \
	{ .name = "mxgate_anvil_share_" what "_total", .help = hlp, .type = MX_METRIC_COUNTER }
enum { GM_AS_SYNCS, GM_AS_COUNTERS, GM_AS_EVENTS, GM_AS_FAILED, GM_AS_ERRORS, GM_AS_OUTAGES,
       GM_AS_SKIPPED, GM_AS_ROUND, GM_AS_UP, GM_AS_MAX };
static const struct mx_metric_family gm_anvil_share[GM_AS_MAX] = {
	[GM_AS_SYNCS] = GM_AS_COUNTER("syncs", "Sync rounds that reached memcached."),
	[GM_AS_COUNTERS] = GM_AS_COUNTER("counters", "Counters sent and answered with a total."),
	[GM_AS_EVENTS] = GM_AS_COUNTER("events", "Local events those counters carried."),
	[GM_AS_FAILED] = GM_AS_COUNTER("failed", "Counters not sent or not answered (kept "
						 "pending for the next round)."),
	[GM_AS_ERRORS] = GM_AS_COUNTER("errors", "Error replies from memcached."),
	[GM_AS_OUTAGES] = GM_AS_COUNTER("outages", "Times memcached became unavailable."),
	[GM_AS_SKIPPED] = GM_AS_COUNTER("skipped", "Counters whose key the key format could "
						   "not make."),
	[GM_AS_ROUND] = { .name = "mxgate_anvil_share_round_seconds",
			  .help = "How long the last sync round took (the lag beyond the "
				  "interval).",
			  .type = MX_METRIC_GAUGE },
	[GM_AS_UP] = { .name = "mxgate_anvil_share_up",
		       .help = "1 while memcached answers the sync, 0 while it is unavailable.",
		       .type = MX_METRIC_GAUGE },
};

static void gm_collect_anvil_share(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	struct gateway_metrics *g = ctx;
	struct svc_anvil_stats st;
	svc_anvil_stats(g->p.anvil_share, &st);
	const uint64_t v[GM_AS_MAX] = { st.syncs,  st.counters, st.events,
					st.failed, st.errors,   st.outages,
					st.skipped, 0,          st.down ? 0 : 1 };
	if (i == GM_AS_ROUND)
		mx_metrics_f64(sink, NULL, (double)st.round_ms / 1e3);
	else
		mx_metrics_u64(sink, NULL, v[i]);
}

/* ---- the log writer ---- */

static const struct mx_metric_family gm_log[] = {
	{ .name = "mxgate_log_lines_dropped_total",
	  .help = "Log lines the syslog socket could not take (full, or no daemon "
		  "listening) since start.",
	  .type = MX_METRIC_COUNTER },
};

static void gm_collect_log(void *ctx, unsigned i, struct mx_metrics_sink *sink)
{
	(void)ctx;
	(void)i;
	mx_metrics_u64(sink, NULL, mx_log_dropped());
}

/* ---- registration ---- */

int gateway_metrics_register(struct gateway_metrics **out, const struct gateway_metrics_params *p)
{
	struct gateway_metrics *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->p = *p;
	g->smtp[0] = (struct mx_metric_family){
		.name = "mxgate_smtp_connections_open",
		.help = "SMTP connections open now.",
		.type = MX_METRIC_GAUGE,
		.stat_key = "open_connections",
	};
	for (size_t i = 0; i < GM_NCOUNTERS; i++) {
		const char *c = gm_counter_names[i];
		gm_counter_family_name(c, g->smtp_name[i], sizeof(g->smtp_name[i]));
		snprintf(g->smtp_help[i], sizeof(g->smtp_help[i]),
			 "The workers' %s counter (mxgate/counters.h).", c);
		for (size_t k = 0; k < sizeof(gm_counter_help) / sizeof(gm_counter_help[0]); k++)
			if (strcmp(gm_counter_help[k].counter, c) == 0)
				snprintf(g->smtp_help[i], sizeof(g->smtp_help[i]), "%s",
					 gm_counter_help[k].help);
		g->smtp[1 + i] = (struct mx_metric_family){
			.name = g->smtp_name[i],
			.help = g->smtp_help[i],
			.type = MX_METRIC_COUNTER,
			.stat_key = c,
		};
	}
	struct {
		const char *subsystem;
		const struct mx_metric_family *fams;
		unsigned n;
		mx_metrics_collect_fn *fn;
		bool on;
	} groups[GM_GROUP_MAX] = {
		[GM_SMTP] = { "smtp", g->smtp, 1 + GM_NCOUNTERS, gm_collect_smtp, true },
		[GM_REPLIES] = { "replies", gm_replies, 1, gm_collect_replies, p->ops->worker },
		[GM_LATENCY] = { "latency", gm_latency, MX_LAT_MAX, gm_collect_latency,
				 p->ops->worker },
		[GM_GENERATION] = { "generation", gm_generation, GM_GEN_MAX,
				    gm_collect_generation, p->reload },
		[GM_SPOOL] = { "spool", gm_spool, GM_SP_MAX, gm_collect_spool, p->nspools },
		[GM_RELAY] = { "relay", gm_relay, GM_RL_MAX, gm_collect_relay, p->nspools },
		[GM_RESOLVER] = { "resolver", gm_resolver,
				  sizeof(gm_resolver) / sizeof(gm_resolver[0]),
				  gm_collect_resolver, p->resolver },
		[GM_CHECKS] = { "checks", gm_checks, 1, gm_collect_checks, p->ops->worker },
		[GM_AUTH] = { "sasl", gm_auth, 1, gm_collect_auth, p->ops->worker },
		[GM_RELAY_DELAY] = { "relay_delay", gm_relay_delay, 1, gm_collect_relay_delay,
				     p->nspools },
		[GM_ANVIL_SHARE] = { "anvil_share", gm_anvil_share, GM_AS_MAX,
				     gm_collect_anvil_share, p->anvil_share },
		[GM_LOG] = { "log", gm_log, 1, gm_collect_log, true },
		[GM_RELAY_OLDEST] = { "relay_state", gm_relay_oldest, 1, gm_collect_relay_oldest,
				      p->nspools },
		[GM_RELAY_NEXTHOP] = { "relay_nexthop", gm_relay_nexthop, GM_NH_MAX,
				       gm_collect_relay_nexthop, p->nspools },
	};
	for (unsigned k = 0; k < GM_GROUP_MAX; k++) {
		if (!groups[k].on)
			continue;
		int h = mx_metrics_register(p->m, groups[k].subsystem, groups[k].fams,
					    groups[k].n, groups[k].fn, g);
		if (h < 0) {
			gateway_metrics_unregister(g);
			return h;
		}
		g->handle[k] = h;
	}
	*out = g;
	return 0;
}

void gateway_metrics_unregister(struct gateway_metrics *g)
{
	if (!g)
		return;
	for (unsigned k = 0; k < GM_GROUP_MAX; k++)
		mx_metrics_unregister(g->p.m, g->handle[k]);
	free(g);
}
