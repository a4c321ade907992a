/* Postfix's anvil(8) limits for one connection: the connection count and rate when it is
 * greeted, the message and recipient rates at MAIL, RCPT and VRFY (through the engine's
 * rate hook), the count given back when it ends. The counts live in the table every worker
 * shares (tables/anvil.h), keyed by service and client range, so a client's connections
 * are counted together whichever worker holds them.
 *
 * What Postfix's smtpd does (smtpd.c smtpd_proto(), mail_cmd(), rcpt_cmd(), vrfy_cmd(),
 * and smtpd_peer.c for the range), and so this file:
 *   - a client in smtpd_client_event_limit_exceptions, or one allowed to use XCLIENT
 *     (smtpd_authorized_xclient_hosts), is neither counted nor limited;
 *   - every other connection is counted when it is greeted (after the client's name is
 *     looked up, before smtpd_client_restrictions), whatever the limits say, so that the
 *     count is right when a reload sets one; refused connections count too, until they
 *     close;
 *   - count > smtpd_client_connection_count_limit (when > 0): the log says
 *       warning: Connection concurrency limit exceeded: 51 from NAME[ADDR] for service smtp
 *     and the client gets "421 4.7.0 MYHOSTNAME Error: too many connections from ADDR"
 *     instead of the greeting, then the connection closes;
 *   - rate > smtpd_client_connection_rate_limit (when > 0): the same with
 *       warning: Connection rate limit exceeded: 31 from NAME[ADDR] for service smtp
 *   - MAIL and RCPT/VRFY are counted only when their limit is set; over it the engine
 *     answers 450 4.7.1 (smtp_session.h) and the log says
 *       warning: Message delivery request rate limit exceeded: 11 from NAME[ADDR] for
 *         service smtp
 *       warning: Recipient address rate limit exceeded: 21 from NAME[ADDR] for service smtp
 *   - new TLS sessions (smtpd_client_new_tls_session_rate_limit, when > 0), as Postfix's
 *     starttls_cmd(), smtpd_proto() and smtpd_start_tls(): before a handshake the rate
 *     is only looked at (anvil's newtls_stat): over the limit, STARTTLS gets "454 4.7.0
 *     Error: too many new TLS sessions from NAME[ADDR]" with
 *       warning: Refusing STARTTLS request from NAME[ADDR] for service smtp
 *     and a wrappermode connection is closed before its handshake with
 *       warning: Refusing TLS service request from NAME[ADDR] for service smtps
 *     After a handshake that did not resume a session the rate is counted (anvil's
 *     newtls); over the limit:
 *       warning: New TLS session rate limit exceeded: 3 from NAME[ADDR] for service smtp
 *     and the next command gets "421 4.7.0 MYHOSTNAME Error: too many new TLS sessions
 *     from NAME[ADDR]", then the session closes (Postfix sends it at once; the engine
 *     answers a line, as for smtpd_tls_req_ccert). A wrappermode session whose client was
 *     not counted yet when its handshake ended (its name lookup still running) is not
 *     counted;
 * Not copied: after XCLIENT from an authorized client names a client outside
 * smtpd_authorized_xclient_hosts, Postfix counts the connection again under the proxy's
 * own range; mxgate leaves such connections uncounted for their whole life. */
#include "dataplane/session/conn_internal.h"

/* Monotonic seconds: anvil counts in whole seconds of event_time(). */
static uint64_t conn_anvil_now(void)
{
	return mx_clock_monotonic_ms() / 1000u;
}

static unsigned conn_anvil_unit(const struct conn *c)
{
	return c->cfg->anvil_rate_time_unit_s ? c->cfg->anvil_rate_time_unit_s : 1;
}

/* The client cannot be tracked (the table has no room near its key): it goes unlimited,
 * counted, with one warning per worker a minute at most. */
static void conn_anvil_untracked(struct conn *c)
{
	struct conn_worker *w = c->w;
	w->counters.anvil_untracked++;
	uint64_t now = mx_clock_monotonic_ms();
	if (w->anvil_warned_ms && now - w->anvil_warned_ms < 60000)
		return;
	w->anvil_warned_ms = now;
	mx_log(MX_LOG_WARNING, "anvil: no room to count %s for service %s (mxgate_anvil_"
			       "table_size): it is not limited (%" PRIu64 " such connections on "
			       "this worker)", c->client, c->svc->name, w->counters.anvil_untracked);
}

bool conn_anvil_connect(struct conn *c)
{
	const struct mx_config *cfg = c->cfg;
	if (!c->w->anvil || c->xclient_allowed ||
	    (cfg->event_limit_exceptions && netlist_match(cfg->event_limit_exceptions, &c->addr)))
		return false;
	if (c->anvil_service < 0) {
		/* more service names than the table tells apart (anvil_service()) */
		conn_anvil_untracked(c);
		return false;
	}
	anvil_key_make(&c->anvil_key, &c->addr, cfg->client_ipv4_prefix_length,
		       cfg->client_ipv6_prefix_length, (unsigned)c->anvil_service);
	uint32_t count = 0, rate = 0;
	struct anvil_effect fx = { 0 };
	if (anvil_connect(c->w->anvil, &c->anvil_key, conn_anvil_now(), conn_anvil_unit(c),
			  &count, &rate, &fx) < 0) {
		conn_anvil_untracked(c);
		return false;
	}
	c->anvil_tracked = true;
	if (fx.evicted)
		c->w->counters.anvil_evicted++;

	const char *what = NULL;
	uint32_t value = 0;
	if (cfg->client_connection_count_limit && count > cfg->client_connection_count_limit) {
		what = "Connection concurrency";
		value = count;
		c->w->counters.anvil_connection_count_refused++;
	} else if (cfg->client_connection_rate_limit &&
		   rate > cfg->client_connection_rate_limit) {
		what = "Connection rate";
		value = rate;
		c->w->counters.anvil_connection_rate_refused++;
	}
	if (!what)
		return false;
	c->gc->anvil_refused++;
	/* smtpd.c smtpd_proto(): the warning, then the 421 instead of the greeting */
	mx_log(MX_LOG_WARNING, "%s limit exceeded: %" PRIu32 " from %s for service %s", what,
	       value, c->client, c->svc->name);
	char text[600];
	snprintf(text, sizeof(text), "4.7.0 %s Error: too many connections from %s",
		 cfg->myhostname, c->addr_str);
	smtp_session_greet_reject(c->s, 421, text);
	return true;
}

void conn_anvil_disconnect(struct conn *c)
{
	if (!c->anvil_tracked)
		return;
	c->anvil_tracked = false;
	int rc = anvil_disconnect(c->w->anvil, &c->anvil_key, conn_anvil_now(),
				  conn_anvil_unit(c));
	/* a tracked connection's entry is never evicted (tables/anvil.h) */
	assert(rc == 0);
	(void)rc;
}

/* Whether smtpd_client_new_tls_session_rate_limit applies to c: a limit, a table, and a
 * client that is counted (not an exception, not an XCLIENT host). */
static bool conn_anvil_newtls_applies(const struct conn *c)
{
	const struct mx_config *cfg = c->cfg;
	return cfg->client_new_tls_session_rate_limit && c->w->anvil && !c->xclient_allowed &&
	       c->anvil_service >= 0 &&
	       !(cfg->event_limit_exceptions && netlist_match(cfg->event_limit_exceptions, &c->addr));
}

/* anvil's newtls_stat: the client's new TLS sessions in this window, not counting. */
static uint32_t conn_anvil_newtls_stat(const struct conn *c)
{
	const struct mx_config *cfg = c->cfg;
	struct anvil_key k;
	if (c->anvil_tracked)
		k = c->anvil_key;
	else
		anvil_key_make(&k, &c->addr, cfg->client_ipv4_prefix_length,
			       cfg->client_ipv6_prefix_length, (unsigned)c->anvil_service);
	struct anvil_view v;
	if (anvil_lookup(c->w->anvil, &k, conn_anvil_now(), conn_anvil_unit(c), &v) < 0)
		return 0;
	return v.rate[ANVIL_RATE_NEWTLS];
}

bool conn_anvil_tls_refused(struct conn *c)
{
	if (!conn_anvil_newtls_applies(c) ||
	    conn_anvil_newtls_stat(c) <= c->cfg->client_new_tls_session_rate_limit)
		return false;
	c->w->counters.anvil_newtls_rate_refused++;
	mx_log(MX_LOG_WARNING, "Refusing TLS service request from %s for service %s", c->client,
	       c->svc->name);
	return true;
}

void conn_anvil_tls_established(struct conn *c, bool reused)
{
	uint32_t rate = 0;
	unsigned limit = c->cfg->client_new_tls_session_rate_limit;
	if (reused || !conn_anvil_newtls_applies(c) || !c->anvil_tracked ||
	    anvil_event(c->w->anvil, &c->anvil_key, ANVIL_RATE_NEWTLS, conn_anvil_now(),
			conn_anvil_unit(c), &rate) < 0 ||
	    rate <= limit)
		return;
	c->w->counters.anvil_newtls_rate_refused++;
	mx_log(MX_LOG_WARNING, "New TLS session rate limit exceeded: %" PRIu32 " from %s for "
			       "service %s", rate, c->client, c->svc->name);
	char why[CONN_CLIENT_MAX + 40];
	snprintf(why, sizeof(why), "too many new TLS sessions from %s", c->client);
	smtp_session_tls_refuse_as(c->s, "4.7.0", why);
}

/* The engine's rate hook (smtp_session_set_rate_hook()): MAIL, RCPT, VRFY, AUTH, and
 * STARTTLS (which only looks). */
bool conn_anvil_rate_over(void *arg, enum smtp_rate_event event)
{
	struct conn *c = arg;
	const struct mx_config *cfg = c->cfg;
	if (event == SMTP_RATE_NEWTLS) {
		if (!conn_anvil_newtls_applies(c) ||
		    conn_anvil_newtls_stat(c) <= cfg->client_new_tls_session_rate_limit)
			return false;
		c->w->counters.anvil_newtls_rate_refused++;
		mx_log(MX_LOG_WARNING, "Refusing STARTTLS request from %s for service %s",
		       c->client, c->svc->name);
		return true;
	}
	unsigned limit = event == SMTP_RATE_MESSAGE ? cfg->client_message_rate_limit
			 : event == SMTP_RATE_AUTH  ? cfg->client_auth_rate_limit
						    : cfg->client_recipient_rate_limit;
	if (!limit || !c->anvil_tracked)
		return false;
	uint32_t rate = 0;
	enum anvil_rate r = event == SMTP_RATE_MESSAGE ? ANVIL_RATE_MESSAGE
			    : event == SMTP_RATE_AUTH  ? ANVIL_RATE_AUTH
						       : ANVIL_RATE_RECIPIENT;
	if (anvil_event(c->w->anvil, &c->anvil_key, r, conn_anvil_now(), conn_anvil_unit(c),
			&rate) < 0 || rate <= limit)
		return false;
	if (event == SMTP_RATE_AUTH) {
		c->w->counters.anvil_auth_rate_refused++;
		mx_log(MX_LOG_WARNING, "AUTH command rate limit exceeded: %" PRIu32
				       " from %s for service %s", rate, c->client, c->svc->name);
	} else if (event == SMTP_RATE_MESSAGE) {
		c->w->counters.anvil_message_rate_refused++;
		mx_log(MX_LOG_WARNING, "Message delivery request rate limit exceeded: %" PRIu32
				       " from %s for service %s", rate, c->client, c->svc->name);
	} else {
		c->w->counters.anvil_recipient_rate_refused++;
		mx_log(MX_LOG_WARNING, "Recipient address rate limit exceeded: %" PRIu32
				       " from %s for service %s", rate, c->client, c->svc->name);
	}
	return true;
}
