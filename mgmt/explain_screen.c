/* `mxgate explain`: the screen's verdict for the client (explain.h, "The screen").
 *
 * Nothing here scores or decides: the service's compiled screen (mgmt/screen.c) gives the
 * access list's verdict and which element gave it, and the screen codec itself
 * (smtp/smtp_screen.h) is run for the client as the gateway's connection runs it
 * (dataplane/session/conn_screen.c): started with that verdict and no cache record,
 * given the DNS answers of its questions, and its timer fired at each deadline as a client
 * that waits quietly would let it fire. Its outcome (the sites that listed the client, the
 * score, the conclusion), the lines it would log and the bytes the client would see are
 * what is printed. */
#include "mgmt/explain.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/screen.h"
#include "mxgate/clock.h"
#include "smtp/smtp_screen.h"
#include "tables/table_cidr.h"

#define EXPLAIN_SCREEN_LOG_MAX 4096  /* the screen's log lines for one client */
#define EXPLAIN_SCREEN_TIMERS_MAX 8  /* the greet wait, then the dummy engine's wait */
#define EXPLAIN_SCREEN_START_MS 1000 /* the codec's monotonic time at connect */

/* The lines the codec would log, kept in order (truncated past the bound, said so). */
struct mx_explain_screen_log {
	char buf[EXPLAIN_SCREEN_LOG_MAX];
	size_t len;
	bool truncated;
};

static void mx_explain_screen_logged(void *arg, const char *line)
{
	struct mx_explain_screen_log *l = arg;
	size_t n = strlen(line);
	if (l->len + n + 1 >= sizeof(l->buf)) {
		l->truncated = true;
		return;
	}
	memcpy(l->buf + l->len, line, n);
	l->buf[l->len + n] = '\n';
	l->len += n + 1;
}

static const char *mx_explain_acl_verdict(enum smtp_screen_acl v)
{
	switch (v) {
	case SMTP_SCREEN_ACL_PERMIT: return "permit";
	case SMTP_SCREEN_ACL_REJECT: return "reject";
	case SMTP_SCREEN_ACL_DUNNO:
	case SMTP_SCREEN_ACL_MAX: break;
	}
	return "dunno";
}

/* postscreen_access_list's line: the verdict and the element that gave it. */
static enum smtp_screen_acl mx_explain_screen_acl(FILE *f, const struct mx_config *cfg,
						  const struct mx_screen *scr,
						  const struct mx_inet_addr *addr)
{
	char warn[256];
	int entry;
	enum smtp_screen_acl v = mx_screen_access_entry(scr, cfg, addr, &entry, warn,
							sizeof(warn));
	fprintf(f, "  postscreen_access_list: %s", mx_explain_acl_verdict(v));
	if (scr->nacl == 0) {
		fprintf(f, " (the list is empty)\n");
	} else if (entry < 0) {
		fprintf(f, " (no element matched)\n");
	} else {
		const struct mx_screen_acl *e = &scr->acl[entry];
		switch (e->kind) {
		case MX_SCREEN_ACL_MYNETWORKS:
			fprintf(f, " (permit_mynetworks: the client is in mynetworks)\n");
			break;
		case MX_SCREEN_ACL_CIDR: {
			struct mx_inet_addr a = mx_inet_unmap(addr);
			const char *value = table_cidr_scan(e->cidr, &a);
			fprintf(f, " (%s: \"", e->name);
			mx_explain_print_text(f, value ? value : "", value ? strlen(value) : 0);
			fprintf(f, "\")\n");
			break;
		}
		default:
			fprintf(f, " (%s)\n", e->name[0] ? e->name : mx_explain_acl_verdict(v));
			break;
		}
	}
	if (warn[0])
		fprintf(f, "    would log: warning: %s\n", warn);
	return v;
}

/* One site of postscreen_dnsbl_sites and what its answer did to the score. */
static void mx_explain_screen_site(FILE *f, const struct smtp_screen_config *c, unsigned k,
				   const struct dns_result *res, bool counted, bool listed)
{
	const struct smtp_screen_site *site = &c->sites[k];
	fprintf(f, "    site %s%s weight %d: ", c->zones[site->zone].domain,
		site->has_filter ? " (with a filter)," : ",", site->weight);
	if (!counted) {
		fprintf(f, "its answer came too late to count\n");
		return;
	}
	unsigned n = 0;
	if (res && res->status == DNS_RESULT_OK)
		for (unsigned i = 0; i < res->nrecords; i++)
			if (res->records[i].addr.family == AF_INET)
				n++;
	if (n == 0) {
		fprintf(f, "not listed\n");
		return;
	}
	if (listed)
		fprintf(f, "listed%s: %+d\n", site->has_filter ? ", the filter matched" : "",
			site->weight);
	else
		fprintf(f, "answered, but no address is in the filter: not listed\n");
}

static void mx_explain_screen_thresholds(FILE *f, const struct smtp_screen_config *c,
					 const struct smtp_screen_outcome *o)
{
	if (!o->dnsbl_scored) {
		if (c->nsites)
			fprintf(f, "  DNSBL score: not computed (the test did not run)\n");
		return;
	}
	fprintf(f, "  DNSBL score %d: postscreen_dnsbl_threshold %d %s", o->dnsbl_score,
		c->dnsbl_threshold,
		o->dnsbl_score >= c->dnsbl_threshold ? "reached" : "not reached");
	if (c->dnsbl_allowlist_threshold >= 0)
		fprintf(f, "; postscreen_dnsbl_allowlist_threshold %d (off: not negative)\n",
			c->dnsbl_allowlist_threshold);
	else
		fprintf(f, "; postscreen_dnsbl_allowlist_threshold %d %s\n",
			c->dnsbl_allowlist_threshold,
			o->dnsbl_score <= c->dnsbl_allowlist_threshold
				? "reached: the other tests are skipped"
				: "not reached");
}

/* The tests a client that is neither allow- nor denylisted meets. */
static void mx_explain_screen_tests(FILE *f, const struct smtp_screen_config *c)
{
	if (c->greet_banner[0])
		fprintf(f, "  tests: the teaser \"220-%s\", then the greet wait of %u ms "
			   "(postscreen_greet_wait; a client that talks first fails it: "
			   "postscreen_greet_action = %s)\n",
			c->greet_banner, (unsigned)c->greet_wait_ms,
			smtp_screen_action_name(c->greet_action));
	else
		fprintf(f, "  tests: no pregreet test (postscreen_greet_banner is empty)\n");
	if (c->pipelining_enable || c->non_smtp_enable || c->bare_newline_enable)
		fprintf(f, "  deep tests after the greeting, in the dummy engine:%s%s%s; a client "
			   "that passes them is told 450 4.3.2 at RCPT and passes when it "
			   "comes back\n",
			c->pipelining_enable ? " pipelining" : "",
			c->non_smtp_enable ? " non-SMTP commands" : "",
			c->bare_newline_enable ? " bare newlines" : "");
}

/* The conclusion, from the codec's state and outcome; true when the client is refused. */
static bool mx_explain_screen_verdict(FILE *f, const struct smtp_screen_config *c,
				      const struct smtp_screen *s)
{
	struct smtp_screen_outcome o = smtp_screen_outcome(s);
	enum smtp_screen_state st = smtp_screen_state(s);
	if (o.allowlisted) {
		fprintf(f, "  => allowlisted: straight to the SMTP server, no tests\n");
		return false;
	}
	if (o.denylisted && c->denylist_action != SMTP_SCREEN_IGNORE) {
		fprintf(f, "  => denylisted -> postscreen_denylist_action = %s\n",
			smtp_screen_action_name(c->denylist_action));
		return true;
	}
	if (o.dnsbl_fail && c->dnsbl_action != SMTP_SCREEN_IGNORE) {
		fprintf(f, "  => DNSBL rank %d -> postscreen_dnsbl_action = %s%s\n", o.dnsbl_score,
			smtp_screen_action_name(c->dnsbl_action),
			c->dnsbl_action == SMTP_SCREEN_ENFORCE
				? " (the dummy engine rejects every RCPT with a 550)" : "");
		return true;
	}
	if (o.denylisted)
		fprintf(f, "  (denylisted, but postscreen_denylist_action = ignore)\n");
	if (o.dnsbl_fail)
		fprintf(f, "  (DNSBL rank %d, but postscreen_dnsbl_action = ignore)\n",
			o.dnsbl_score);
	if (st == SMTP_SCREEN_ST_PASS)
		fprintf(f, "  => a client that waits for the greeting passes: PASS NEW, then the "
			   "SMTP server\n");
	else if (st == SMTP_SCREEN_ST_SMTPD)
		fprintf(f, "  => a client that waits for the greeting meets the deep tests; it "
			   "reaches the SMTP server when it comes back after passing them\n");
	else
		fprintf(f, "  => the screen closes the connection (%s)\n",
			smtp_screen_state_name(st));
	return false;
}

bool mx_explain_screen(FILE *f, struct mx_explain_dns *dns, const char *service,
		       const struct mx_config *cfg, const struct mx_screen *scr,
		       const struct mx_inet_addr *addr, int64_t wall_s)
{
	const struct smtp_screen_config *c = scr->cfg;
	fprintf(f, "screen (postscreen) of service %s:\n", service);
	enum smtp_screen_acl acl = mx_explain_screen_acl(f, cfg, scr, addr);
	struct mx_explain_screen_log log = { .len = 0 };
	struct smtp_screen_client client = { .addr = *addr };
	struct smtp_screen *s = smtp_screen_new(c, &client, mx_explain_screen_logged, &log);
	if (!s) {
		fprintf(f, "  (out of memory)\n");
		return false;
	}
	uint64_t now = EXPLAIN_SCREEN_START_MS;
	smtp_screen_start(s, acl, NULL, now, wall_s);
	/* the DNSBL questions, one per distinct domain, answered in order */
	struct dns_result *res[SMTP_SCREEN_ZONES_MAX] = { NULL };
	unsigned nq = smtp_screen_queries(s);
	if (c->nsites && nq == 0)
		fprintf(f, "  postscreen_dnsbl_sites: not asked\n");
	else if (nq)
		fprintf(f, "  postscreen_dnsbl_sites:\n");
	for (unsigned i = 0; i < nq && i < SMTP_SCREEN_ZONES_MAX; i++) {
		char name[300];
		bool cached = false;
		if (smtp_screen_query_name(s, i, name, sizeof(name)) < 0) {
			snprintf(name, sizeof(name), "(%s: the name is too long)",
				 c->zones[i].domain);
			res[i] = dns_result_tempfail(DNS_TYPE_A, "not asked: an invalid name");
		} else if (!dns) {
			res[i] = dns_result_tempfail(DNS_TYPE_A, "not asked: --no-dns");
		} else {
			res[i] = mx_explain_dns_lookup(dns, DNS_TYPE_A, name, &cached);
		}
		mx_explain_print_dns(f, "    ", DNS_TYPE_A, name, res[i], cached);
		smtp_screen_dns_answer(s, i, res[i], now);
	}
	/* a client that says nothing: the greet wait ends, then the dummy engine's */
	for (unsigned t = 0; t < EXPLAIN_SCREEN_TIMERS_MAX &&
	     smtp_screen_state(s) == SMTP_SCREEN_ST_EARLY; t++) {
		uint64_t d = smtp_screen_deadline(s);
		if (d == UINT64_MAX)
			break;
		now = d > now ? d : now;
		smtp_screen_timer(s, now);
	}
	struct smtp_screen_outcome o = smtp_screen_outcome(s);
	for (unsigned k = 0; k < c->nsites && nq; k++) {
		unsigned z = c->sites[k].zone;
		mx_explain_screen_site(f, c, k, z < SMTP_SCREEN_ZONES_MAX ? res[z] : NULL,
				       o.dnsbl_scored, (o.dnsbl_listed >> k) & 1u);
	}
	mx_explain_screen_thresholds(f, c, &o);
	if (!o.allowlisted && !(o.denylisted && c->denylist_action != SMTP_SCREEN_IGNORE))
		mx_explain_screen_tests(f, c);
	/* what the codec would log and send (the CONNECT line says nothing here) */
	for (char *line = log.buf, *nl; line < log.buf + log.len; line = nl + 1) {
		nl = memchr(line, '\n', (size_t)(log.buf + log.len - line));
		if (!nl)
			break;
		if (strncmp(line, "CONNECT from ", 13) != 0) {
			fprintf(f, "  would log: ");
			mx_explain_print_text(f, line, (size_t)(nl - line));
			fprintf(f, "\n");
		}
	}
	if (log.truncated)
		fprintf(f, "  (more log lines)\n");
	struct mx_span out = smtp_screen_output(s);
	for (size_t i = 0; i < out.len;) {
		const char *p = out.ptr + i;
		const char *nl = memchr(p, '\n', out.len - i);
		size_t n = nl ? (size_t)(nl - p) + 1 : out.len - i;
		size_t shown = n;
		while (shown && (p[shown - 1] == '\n' || p[shown - 1] == '\r'))
			shown--;
		fprintf(f, "  client sees: ");
		mx_explain_print_text(f, p, shown);
		fprintf(f, "\n");
		i += n;
	}
	bool refused = mx_explain_screen_verdict(f, c, s);
	if (scr->cache_map[0])
		fprintf(f, "  postscreen_cache_map %s: not read: a client whose tests there have "
			   "not expired is PASS OLD at once, without any of the above\n",
			scr->cache_map);
	for (unsigned i = 0; i < SMTP_SCREEN_ZONES_MAX; i++)
		dns_result_put(res[i]);
	smtp_screen_free(s);
	return refused;
}
