/* The SASL service (svc_sasl_ops, kind SVC_SASL): one thread that speaks Dovecot's
 * auth-client protocol (smtp/smtp_dovecot_auth.h) for the workers' SMTP AUTH, as Postfix's
 * smtpd does with smtpd_sasl_type = dovecot (xsasl_dovecot_server.c), but over one
 * persistent connection per endpoint shared by every session (Dovecot multiplexes requests
 * by id).
 *
 * A worker submits a struct svc_request of kind SVC_SASL (svc.h) with u.sasl filled:
 *   START   endpoint, mech, sec_opts, service, the session's addresses, ports and TLS
 *           facts, and the initial response in data when has_initial_response. The answer
 *           sets exchange (when CONTINUE) and result/text.
 *   CONT    endpoint, exchange, and the client's base64 line in data.
 *   CANCEL  endpoint, exchange: the session gave up ("*", timeout, gone). Answered at once
 *           (result TEMPFAIL, text ""), never waits for Dovecot.
 * The request comes back with status 0 and result/text set (svc.h: svc_sasl_result), or
 * with a negative status (-ECANCELED when the service stopped, -ETIMEDOUT from the
 * worker's own queue), to be answered as TEMPFAIL. A START or CONT is answered by its
 * deadline_ms at the latest, and by params.timeout_ms after it was sent to Dovecot: then
 * TEMPFAIL SMTP_DOVECOT_REASON_CONN_LOST (what Postfix's smtpd tells the client when its
 * read from Dovecot times out) and the exchange is cancelled (smtp_dovecot_cancel(): while
 * Dovecot still works on it no CANCEL line is written, because below protocol 1.4 Dovecot
 * confirms none and the id could never be reused safely; its late reply is swallowed, and
 * a late challenge is answered with CANCEL). A request the worker cancelled
 * (svc_request_cancel()) is still answered: a START not yet sent gets -ECANCELED without
 * reaching Dovecot, one whose challenge comes back gets -ECANCELED and its exchange a
 * CANCEL, so nothing leaks there. An exchange answered CONTINUE that sees neither CONT nor
 * CANCEL for params.client_wait_ms is cancelled at Dovecot. A connection whose request
 * table is half full of given-up requests Dovecot never answered is reconnected.
 *
 * Connections: the service connects at start to every endpoint the directory wants, keeps
 * the connection, reconnects with a back-off (1 s doubling to 30 s) when it drops or cannot
 * be made, and logs as Postfix does ("warning: SASL: Connect to Dovecot auth socket
 * 'private/auth' failed: No such file or directory") once per outage, not per try. While an endpoint has no ready connection its requests get
 * TEMPFAIL SMTP_DOVECOT_REASON_NO_SERVER at once; when a connection drops, every exchange
 * in flight on it, and any later CONT of one of them, gets TEMPFAIL
 * SMTP_DOVECOT_REASON_CONN_LOST. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_SASL_H
#define MXGATE_DATAPLANE_SVC_SVC_SASL_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/svc/svc.h"

/* Distinct endpoints a directory holds (svc_sasl_directory_want() says -ENOSPC beyond). */
#define SVC_SASL_ENDPOINTS_MAX 16

/* Which endpoints the service keeps connections to, and what each offers (for EHLO). Made
 * by main.c before the services start and given to the service in its params and to every
 * worker; lives until after the services stopped (svc_set_stop()). */
struct svc_sasl_directory;

/* NULL when out of memory. */
struct svc_sasl_directory *svc_sasl_directory_new(void);
/* After the service stopped; NULL is a no-op. */
void svc_sasl_directory_free(struct svc_sasl_directory *d);
/* Main thread (start and each reload): the service should connect to endpoint and keep it
 * (at most SVC_SASL_ENDPOINTS_MAX distinct endpoints; -ENOSPC beyond; -EINVAL for an
 * endpoint that is not "unix:PATH"/"inet:HOST:PORT" or too long). Idempotent; an endpoint
 * is never dropped (a reload that stops using one leaves an idle connection). */
int svc_sasl_directory_want(struct svc_sasl_directory *d, const char *endpoint);
/* Any thread, lock-free (workers call it at EHLO): the EHLO AUTH list ("PLAIN LOGIN") the
 * endpoint offers through sec_opts, into out (NUL-terminated). Returns its length, 0 when
 * the endpoint's mechanisms are not known (not connected yet, Dovecot down), none pass, or
 * the list does not fit cap. */
size_t svc_sasl_mech_list(const struct svc_sasl_directory *d, const char *endpoint,
			  unsigned sec_opts, char *out, size_t cap);

struct svc_sasl_params {
	struct svc_sasl_directory *directory;
	uint32_t timeout_ms; /* per exchange step (Postfix has none; e.g. 30 s); a request's
				own deadline_ms may come first; also bounds connect and
				handshake. 0: 30 s */
	/* How long an exchange answered CONTINUE waits for its CONT (or CANCEL) before the
	 * service cancels it at Dovecot (a worker that lost it). 0: 10 minutes, beyond
	 * smtpd_timeout (300 s) */
	uint32_t client_wait_ms;
};

#endif
