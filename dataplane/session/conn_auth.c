/* SMTP AUTH for a connection: what EHLO offers, and each step of an exchange handed to the
 * SASL service (dataplane/svc/svc_sasl.h: Dovecot's auth server) while the connection
 * waits, as Postfix's smtpd_sasl_glue.c / xsasl_dovecot_server.c do it:
 *
 *     AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=  -> START -> OK        -> 235 2.7.0 Authentication successful
 *     AUTH LOGIN                       -> START -> CONTINUE  -> 334 VXNlcm5hbWU6
 *     <base64>                         -> CONT  -> ...
 *     *                                -> CANCEL              -> 501 5.7.0 Authentication aborted
 *
 * Log lines as Postfix's: "warning: unknown[192.0.2.1]: SASL PLAIN authentication failed:
 * REASON, sasl_username=NAME" and "... SASL LOGIN authentication aborted"; a success shows
 * in the queue ID line ("client=..., sasl_method=PLAIN, sasl_username=alice"). */
#include "dataplane/session/conn_internal.h"

#include "dataplane/svc/svc_sasl.h"
#include "smtp/smtp_dovecot_auth.h"

/* What one exchange step may take when the service never answers (it answers by then). */
#define CONN_AUTH_STEP_TIMEOUT_MS 60000
/* Postfix 3.7's reason for a mechanism Dovecot does not offer (xsasl_dovecot_server_first();
 * later Postfix versions add the name, which Debian 12's does not). */
#define CONN_AUTH_BAD_MECH "Invalid authentication mechanism"

/* smtpd_sasl_security_options, or smtpd_sasl_tls_security_options inside TLS. */
static unsigned conn_auth_sec_opts(const struct conn *c)
{
	return smtp_session_tls_active(c->s) ? c->cfg->sasl_tls_sec_opts
					     : c->cfg->sasl_sec_opts;
}

void conn_auth_offer(struct conn *c)
{
	const struct mx_config *cfg = c->cfg;
	if (!cfg->sasl_auth_enable || !cfg->sasl_endpoint) {
		smtp_session_set_auth(c->s, false, NULL, 0);
		return;
	}
	/* smtpd_sasl_exceptions_networks: not announced, but AUTH still works (Postfix keeps
	 * it for "backwards compatibility", smtpd.c) */
	bool hidden = cfg->sasl_exceptions_networks &&
		      netlist_match(cfg->sasl_exceptions_networks, &c->addr);
	char mechs[256] = "";
	if (c->w->sasl && !hidden)
		svc_sasl_mech_list(c->w->sasl, cfg->sasl_endpoint, conn_auth_sec_opts(c), mechs,
				   sizeof(mechs));
	bool tls = smtp_session_tls_active(c->s);
	unsigned flags = (cfg->tls_auth_only && !tls ? SMTP_AUTH_NEED_TLS : 0) |
			 (cfg->broken_sasl_auth_clients ? SMTP_AUTH_BROKEN_CLIENTS : 0);
	smtp_session_set_auth(c->s, true, mechs, flags);
}

/* The exchange ended (either way): the session counts it, Postfix style. */
static void conn_auth_end(struct conn *c, bool ok)
{
	c->sasl_exchange = 0;
	c->sasl_in_exchange = false;
	conn_count(c, CONN_CMD_AUTH, ok);
}

/* Tell the service the exchange is over for us (the client gave up, or said something
 * Dovecot must not see). Nobody waits for the answer. */
static void conn_auth_cancel(struct conn *c)
{
	if (!c->sasl_exchange || !c->w->svc)
		return;
	struct svc_request *r = svc_request_new(SVC_SASL);
	if (!r)
		return;
	r->u.sasl.op = SVC_SASL_CANCEL;
	snprintf(r->u.sasl.endpoint, sizeof(r->u.sasl.endpoint), "%s", c->cfg->sasl_endpoint);
	r->u.sasl.exchange = c->sasl_exchange;
	r->deadline_ms = mx_clock_monotonic_ms() + CONN_AUTH_STEP_TIMEOUT_MS;
	if (svc_submit(c->w->svc, r) < 0)
		svc_request_free(r);
}

/* A failed exchange: Postfix's warning, then 535 (454 for a temporary failure). */
static void conn_auth_failed(struct conn *c, bool temp, const char *reason, const char *user)
{
	char shown[256];
	struct mx_span rs = mx_span_cstr(reason ? reason : "");
	mx_log(MX_LOG_WARNING, "%s: SASL %s authentication failed: %s, sasl_username=%s",
	       c->client, c->sasl_mech,
	       rs.len ? conn_printable(rs, shown, sizeof(shown)) : SMTP_DOVECOT_REASON_UNAVAILABLE,
	       user && user[0] ? user : "(unavailable)");
	char reply[SMTP_POLICY_TEXT_MAX];
	smtp_dovecot_fail_reply(temp, rs, reply, sizeof(reply));
	/* "535 5.7.8 ..." -> code and text */
	uint16_t code = (uint16_t)((reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0'));
	c->w->metrics.auth[temp ? MX_AUTH_TEMPFAIL : MX_AUTH_FAILED]++;
	conn_auth_end(c, false);
	conn_verdict(c, code, reply + 4, false);
}

/* Send one step (START or CONT) and wait for its answer (conn_auth_answer()). */
static void conn_auth_step(struct conn *c, enum svc_sasl_op op, struct mx_span data,
			   bool has_data)
{
	struct svc_request *r = svc_request_new(SVC_SASL);
	if (!r || (data.len && !(r->u.sasl.data = malloc(data.len)))) {
		svc_request_free(r);
		conn_auth_failed(c, true, "out of memory", NULL);
		return;
	}
	struct svc_sasl *q = &r->u.sasl;
	q->op = op;
	snprintf(q->endpoint, sizeof(q->endpoint), "%s", c->cfg->sasl_endpoint);
	q->exchange = c->sasl_exchange;
	if (data.len)
		memcpy(q->data, data.ptr, data.len);
	q->data_len = data.len;
	if (op == SVC_SASL_START) {
		snprintf(q->mech, sizeof(q->mech), "%s", c->sasl_mech);
		q->sec_opts = conn_auth_sec_opts(c);
		q->secured = smtp_session_tls_active(c->s);
		snprintf(q->service, sizeof(q->service), "%s", c->cfg->sasl_service);
		q->remote = c->addr;
		q->remote_port = c->port;
		q->local = c->server;
		q->local_port = c->server_port;
		q->has_initial_response = has_data;
	}
	if (!conn_wait_submit(c, r, CONN_WAIT_SASL, CONN_AUTH_STEP_TIMEOUT_MS))
		conn_auth_failed(c, true, SMTP_DOVECOT_REASON_NO_SERVER, NULL);
}

void conn_on_auth(struct conn *c, const struct smtp_event *ev)
{
	struct mx_span mech = ev->u.auth.mech;
	size_t n = mech.len < sizeof(c->sasl_mech) - 1 ? mech.len : sizeof(c->sasl_mech) - 1;
	memcpy(c->sasl_mech, mech.ptr, n);
	c->sasl_mech[n] = '\0';
	c->sasl_in_exchange = true;
	c->sasl_exchange = 0;
	if (mech.len >= sizeof(c->sasl_mech)) {
		/* longer than any RFC 4422 name */
		conn_auth_failed(c, false, CONN_AUTH_BAD_MECH, NULL);
		return;
	}
	if (!c->w->sasl) {
		conn_auth_failed(c, true, SMTP_DOVECOT_REASON_NO_SERVER, NULL);
		return;
	}
	struct mx_span ir = ev->u.auth.response;
	if (ev->u.auth.has_response && !(ir.len == 1 && ir.ptr[0] == '=') &&
	    smtp_dovecot_b64_decode(ir, NULL, 0) < 0) {
		conn_auth_failed(c, false, SMTP_DOVECOT_REASON_BAD_INITIAL, NULL);
		return;
	}
	conn_auth_step(c, SVC_SASL_START, ir, ev->u.auth.has_response);
}

void conn_on_auth_response(struct conn *c, const struct smtp_event *ev)
{
	if (!c->sasl_in_exchange) {
		conn_verdict(c, 503, "5.5.1 Error: no authentication in progress", false);
		return;
	}
	if (ev->u.auth.too_long) {
		conn_auth_cancel(c);
		conn_auth_end(c, false);
		conn_verdict(c, 500, "5.5.6 SASL response limit exceeded", false);
		return;
	}
	size_t limit = c->cfg->smtp.sasl_response_limit;
	switch (smtp_dovecot_response_parse(ev->u.auth.response, limit)) {
	case SMTP_DOVECOT_RESP_CANCEL:
		mx_log(MX_LOG_WARNING, "%s: SASL %s authentication aborted", c->client,
		       c->sasl_mech);
		c->w->metrics.auth[MX_AUTH_ABORTED]++;
		conn_auth_cancel(c);
		conn_auth_end(c, false);
		conn_verdict(c, 501, "5.7.0 Authentication aborted", false);
		return;
	case SMTP_DOVECOT_RESP_TOO_LONG:
		conn_auth_cancel(c);
		conn_auth_end(c, false);
		conn_verdict(c, 500, "5.5.6 SASL response limit exceeded", false);
		return;
	case SMTP_DOVECOT_RESP_BAD_BASE64:
		conn_auth_cancel(c);
		conn_auth_failed(c, false, SMTP_DOVECOT_REASON_BAD_CONT, NULL);
		return;
	case SMTP_DOVECOT_RESP_DATA:
	case SMTP_DOVECOT_RESP_RESULT_MAX:
		break;
	}
	conn_auth_step(c, SVC_SASL_CONT, ev->u.auth.response, true);
}

void conn_auth_answer(struct conn *c, struct svc_request *r)
{
	struct svc_sasl *a = &r->u.sasl;
	enum svc_sasl_result res = r->status == 0 ? a->result : SVC_SASL_TEMPFAIL;
	const char *text = r->status == 0 && a->text ? a->text : "";
	switch (res) {
	case SVC_SASL_CONTINUE:
		c->sasl_exchange = a->exchange;
		conn_verdict(c, 334, text, false);
		return;
	case SVC_SASL_OK: {
		char user[256];
		conn_printable(mx_span_cstr(text), user, sizeof(user));
		free(c->sasl_username);
		free(c->sasl_method);
		c->sasl_username = strdup(user);
		c->sasl_method = strdup(c->sasl_mech);
		if (!c->sasl_username || !c->sasl_method) {
			free(c->sasl_username);
			c->sasl_username = NULL;
			conn_auth_failed(c, true, "out of memory", user);
			return;
		}
		if (c->cfg->sasl_authenticated_header &&
		    smtp_session_set_auth_header(c->s, c->sasl_username) < 0)
			mx_log(MX_LOG_WARNING, "%s: out of memory for the Authenticated sender "
			       "line", c->client);
		conn_auth_end(c, true);
		c->w->metrics.auth[MX_AUTH_SUCCESS]++;
		conn_verdict(c, 235, "2.7.0 Authentication successful", false);
		return;
	}
	case SVC_SASL_BAD_MECH:
		conn_auth_failed(c, false, CONN_AUTH_BAD_MECH, NULL);
		return;
	case SVC_SASL_FAIL: {
		char user[256];
		conn_auth_failed(c, false, text,
				 a->user ? conn_printable(mx_span_cstr(a->user), user, sizeof(user))
					 : NULL);
		return;
	}
	case SVC_SASL_TEMPFAIL:
	case SVC_SASL_RESULT_MAX:
		conn_auth_failed(c, true, text[0] ? text : SMTP_DOVECOT_REASON_CONN_LOST, NULL);
		return;
	}
}

void conn_auth_reset(struct conn *c)
{
	conn_auth_abandon(c);
	free(c->sasl_username);
	free(c->sasl_method);
	c->sasl_username = c->sasl_method = NULL;
}

void conn_auth_abandon(struct conn *c)
{
	if (c->sasl_in_exchange)
		conn_auth_cancel(c);
	c->sasl_in_exchange = false;
	c->sasl_exchange = 0;
}
