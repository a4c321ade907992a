/* The commands of a session (HELO/EHLO, XCLIENT, MAIL, RCPT, the engine's own refusals)
 * and the restriction lists that decide them: the verdicts, the counts and Postfix's log
 * lines. */
#include "dataplane/session/conn_internal.h"

/* The reply for a spool error: 452 4.3.1 when storage ran out, else 451 4.3.0. */
void conn_spool_refusal(struct conn *c, int rc)
{
	if (rc == -ENOSPC || rc == -EDQUOT)
		conn_verdict(c, 452, CONN_SPOOL_FULL_TEXT, false);
	else
		conn_verdict(c, 451, CONN_SPOOL_ERROR_TEXT, false);
}

/* Refuse a new transaction (at MAIL) or a message (at DATA) when the spool is full or
 * over its quota, before the client sends anything big. Returns true when refused. */
bool conn_storage_refused(struct conn *c, const char *cmd)
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

/* ---- events ---- */

void conn_on_helo(struct conn *c, const struct smtp_event *ev)
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
	c->check = (struct conn_check){ .at = CONN_AT_HELO, .stage = SMTP_STAGE_HELO,
					.cmd = ev->u.helo.esmtp ? "EHLO" : "HELO",
					.unauth_pipelining = ev->unauth_pipelining,
					.esmtp = ev->u.helo.esmtp };
	conn_check_start(c);
}

void conn_helo_decided(struct conn *c, const struct smtp_policy_result *res)
{
	enum conn_cmd cmd = c->check.esmtp ? CONN_CMD_EHLO : CONN_CMD_HELO;
	if (res->decision != SMTP_POLICY_ACCEPT) {
		conn_count(c, cmd, false);
		conn_policy_verdict(c, res);
		/* Postfix does not record a refused HELO name */
		free(c->helo);
		c->helo = NULL;
		return;
	}
	conn_count(c, cmd, true);
	conn_auth_offer(c); /* the mechanisms as Dovecot offers them now */
	conn_accept(c);
	/* an accepted EHLO in a transaction makes the engine queue an RSET event now */
	c->helo_answered = true;
}

/* XCLIENT from a client in smtpd_authorized_xclient_hosts (the engine refused it from
 * anyone else): the session goes on as the client it names, for the restriction lists,
 * Received: and the log, as Postfix's xclient_cmd() does. */
void conn_on_xclient(struct conn *c, const struct smtp_event *ev)
{
	const struct smtp_xclient *x = ev->u.xclient;
	const struct smtp_xclient_value *addr = &x->attr[SMTP_XCLIENT_ADDR];
	const struct smtp_xclient_value *name = &x->attr[SMTP_XCLIENT_NAME];
	const struct smtp_xclient_value *rname = &x->attr[SMTP_XCLIENT_REVERSE_NAME];
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
	/* Postfix's xclient_cmd(): NAME sets the verified name and its status ([UNAVAILABLE]:
	 * permanent, [TEMPUNAVAIL]: temporary), and an available NAME the reverse name too;
	 * REVERSE_NAME sets the reverse name and its status. */
	char *new_name = NULL, *new_rname = NULL, *new_helo = NULL;
	enum conn_peer_status name_st = c->name_status, rname_st = c->reverse_name_status;
	bool oom = false;
	if (name->present) {
		name_st = name->tempunavail ? CONN_PEER_TEMP
			  : name->unavailable ? CONN_PEER_PERM : CONN_PEER_OK;
		if (name_st == CONN_PEER_OK) {
			oom |= !(new_name = conn_dup(name->value));
			oom |= !(new_rname = conn_dup(name->value));
			rname_st = CONN_PEER_OK;
		}
	} else if (c->name) {
		oom |= !(new_name = strdup(c->name)); /* NAME not given: unchanged */
	}
	if (rname->present) {
		free(new_rname);
		new_rname = NULL;
		rname_st = rname->tempunavail ? CONN_PEER_TEMP
			   : rname->unavailable ? CONN_PEER_PERM : CONN_PEER_OK;
		if (rname_st == CONN_PEER_OK)
			oom |= !(new_rname = conn_dup(rname->value));
	} else if (!new_rname && !name->present && c->reverse_name) {
		oom |= !(new_rname = strdup(c->reverse_name));
	}
	if (helo->present && !helo->unavailable)
		oom |= !(new_helo = conn_dup(helo->value));
	if (oom) {
		free(new_name);
		free(new_rname);
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
	free(c->reverse_name);
	c->reverse_name = new_rname;
	c->name_status = name_st;
	c->reverse_name_status = rname_st;
	free(c->helo);
	c->helo = new_helo;
	conn_set_client(c, c->name, c->addr_str);
	/* A new client: with smtpd_delay_reject = no its client restrictions decide now, and
	 * a refusal answers XCLIENT (Postfix's xclient_cmd()). */
	if (c->policy_session)
		memset(c->policy_session, 0, sizeof(*c->policy_session));
	c->check = (struct conn_check){
		.at = CONN_AT_XCLIENT, .stage = SMTP_STAGE_CONNECT, .cmd = "CONNECT",
		.xclient = { .code = 0,
			     .xclient_authorized = c->cfg->xclient_hosts &&
						   netlist_match(c->cfg->xclient_hosts, &c->addr) },
	};
	conn_check_start(c);
}

void conn_xclient_decided(struct conn *c, const struct smtp_policy_result *res)
{
	struct smtp_verdict v = c->check.xclient;
	if (res->hangup)
		conn_hangup(c);
	if (res->decision != SMTP_POLICY_ACCEPT) {
		v.code = res->code;
		v.text = res->text;
		v.disconnect = res->disconnect || res->hangup;
		v.access_denied = !v.disconnect;
		conn_count(c, CONN_CMD_XCLIENT, false);
	} else {
		conn_count(c, CONN_CMD_XCLIENT, true);
	}
	smtp_session_verdict(c->s, &v);
}

void conn_on_mail(struct conn *c, const struct smtp_event *ev)
{
	conn_txn_reset(c);
	if (conn_storage_refused(c, "MAIL")) {
		conn_count(c, CONN_CMD_MAIL, false);
		return;
	}
	c->sender = conn_dup(ev->u.mail.addr);
	c->mail_params = conn_dup(ev->u.mail.params);
	if (c->w->actions_pooled) {
		c->actions = c->w->actions_pool[--c->w->actions_pooled];
		smtp_policy_actions_reset(c->actions);
	} else {
		c->actions = calloc(1, sizeof(*c->actions));
	}
	if (!c->sender || !c->mail_params || !c->actions) {
		conn_txn_reset(c);
		conn_count(c, CONN_CMD_MAIL, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	c->mail_size = ev->u.mail.size;
	if (ev->u.mail.auth.len) {
		/* MAIL's AUTH= (RFC 4954 section 5): sasl_sender for the log and policy
		 * servers, "<>" being none; Postfix keeps the value made printable */
		char val[300], shown[300];
		size_t n = 0;
		bool is_null = false;
		if (smtp_dovecot_mail_auth_param(ev->u.mail.auth, val, sizeof(val) - 1, &n,
						 &is_null) < 0) {
			conn_printable(ev->u.mail.auth, shown, sizeof(shown));
			c->sasl_sender = strdup(shown);
		} else if (!is_null) {
			c->sasl_sender = strdup(conn_printable(mx_span_make(val, n), shown,
								sizeof(shown)));
		}
	}
	c->transactions++;
	c->check = (struct conn_check){ .at = CONN_AT_MAIL, .stage = SMTP_STAGE_MAIL,
					.cmd = "MAIL", .unauth_pipelining = ev->unauth_pipelining };
	conn_check_start(c);
}

void conn_mail_decided(struct conn *c, const struct smtp_policy_result *res)
{
	if (res->decision != SMTP_POLICY_ACCEPT) {
		conn_txn_reset(c);
		conn_count(c, CONN_CMD_MAIL, false);
		conn_policy_verdict(c, res);
		return;
	}
	conn_count(c, CONN_CMD_MAIL, true);
	conn_accept(c);
}

void conn_on_rcpt(struct conn *c, const struct smtp_event *ev)
{
	char *rcpt = conn_dup(ev->u.rcpt.addr), *params = conn_dup(ev->u.rcpt.params);
	if (!rcpt || !params) {
		free(rcpt);
		free(params);
		conn_count(c, CONN_CMD_RCPT, false);
		conn_verdict(c, 451, "4.3.0 Error: insufficient system resources", false);
		return;
	}
	c->check = (struct conn_check){ .at = CONN_AT_RCPT, .stage = SMTP_STAGE_RCPT,
					.cmd = "RCPT", .unauth_pipelining = ev->unauth_pipelining,
					.rcpt = rcpt, .rcpt_params = params };
	conn_check_start(c);
}

void conn_rcpt_decided(struct conn *c, const struct smtp_policy_result *res)
{
	if (res->decision != SMTP_POLICY_ACCEPT) {
		c->w->counters.recipients_rejected++;
		/* per generation: what a canary's policy refuses, and what it only defers */
		bool deferred = res->code >= 400 && res->code < 500;
		if (deferred)
			c->gc->recipients_deferred++;
		else
			c->gc->recipients_rejected++;
		mx_generation_count_list_reject(
			c->gen->g, c->w->index,
			res->class_name		  ? res->class_name
			: res->list < SMTP_LIST_MAX ? smtp_restriction_list_name(res->list)
						    : "",
			res->restriction, deferred);
		conn_count(c, CONN_CMD_RCPT, false);
		conn_policy_verdict(c, res);
		return;
	}
	struct mx_span addr = mx_span_cstr(c->check.rcpt);
	struct mx_span params = mx_span_cstr(c->check.rcpt_params);

	/* Order matters: nothing may fail after the recipient is in the envelope, or a
	 * recipient the client saw refused would still get the message. */
	int rc = 0;
	if (!c->first_rcpt && !(c->first_rcpt = conn_dup(addr)))
		rc = -ENOMEM;
	if (rc == 0 && !c->msg)
		rc = conn_open_message(c);
	/* An envelope error is sticky: once one recipient could not be recorded, every
	 * later one and DATA fail too, so no message goes out with part of its envelope. */
	if (rc == 0)
		rc = spool_msg_add_rcpt(c->msg, addr, params);
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

void conn_on_error(struct conn *c, const struct smtp_event *ev)
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
	if (kind == SMTP_ERR_RATE_LIMIT) {
		/* anvil's message or recipient rate (conn_anvil.c logged it): a refused
		 * command, not a protocol error; a RCPT is a deferred recipient */
		if (strcmp(where, "RCPT") == 0) {
			c->w->counters.recipients_rejected++;
			c->gc->recipients_deferred++;
			mx_generation_count_reject(c->gen->g, c->w->index,
						   "smtpd_client_recipient_rate_limit", true);
		}
		conn_count_refused(c, ev);
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

