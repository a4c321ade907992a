/* TLS in the connection glue: both transports hand conn_input() the bytes they received
 * and send what conn_output() gives, so TLS placed here serves both (RFC 3207 STARTTLS,
 * and implicit TLS on a smtpd_tls_wrappermode service). The layer itself is
 * dataplane/tls/tls_server.c; this file starts it, moves plaintext between it and the
 * engine, and writes Postfix's log lines:
 *
 *     setting up TLS connection from unknown[192.0.2.1]           (smtpd_tls_loglevel 2)
 *     unknown[192.0.2.1]: Reusing old session (RFC 5077 session ticket)     (level 2)
 *     unknown[192.0.2.1]: subject_CN=client.example, issuer=Example CA,
 *         fingerprint=AB:..., pkey_fingerprint=CD:...       (level 2, a client certificate)
 *     Anonymous TLS connection established from unknown[192.0.2.1]: TLSv1.3 with cipher
 *         TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature
 *         RSA-PSS (2048 bits) server-digest SHA256                          (level 1)
 *         (Trusted or Untrusted instead of Anonymous with a client certificate)
 *     SSL_accept error from unknown[192.0.2.1]: -1                          (always)
 *     warning: TLS library problem: error:0A00010B:SSL routines::wrong version number
 *     lost connection after STARTTLS from unknown[192.0.2.1]
 *
 * After the 220 of STARTTLS the engine's output goes out in plaintext up to and including
 * that reply, and everything after it is encrypted; input after the command was thrown
 * away by the engine, and input read later is ciphertext. */
#include "dataplane/session/conn_internal.h"

/* Encrypt more of the engine's replies only while less than this waits to be sent: the
 * ciphertext buffer stays small and the engine's own high-water mark holds the rest. */
#define CONN_TLS_OUT_HIGH 16384

static unsigned conn_tls_loglevel(const struct conn *c)
{
	return c->svc->tls ? c->svc->tls->loglevel : 0;
}

/* RFC 1891 xtext, as Postfix's xtext_quote(): bytes outside '!'..'~', '+' and '=' become
 * "+XX". */
static void conn_tls_xtext(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=') {
			out[o++] = '+';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
}

int conn_tls_start(struct conn *c)
{
	assert(!c->tls && c->tls_ctx);
	/* what the engine queued so far (the 220 of STARTTLS last) goes out in plaintext */
	c->tls_plain_out = smtp_session_output(c->s).len;
	c->tls = tls_server_new(c->tls_ctx);
	if (!c->tls) {
		/* the caller ends the session (conn_feed()) or refuses the connection */
		mx_log(MX_LOG_WARNING, "out of memory for TLS: closing connection from %s",
		       c->client);
		return -ENOMEM;
	}
	smtp_session_tls_begin(c->s);
	c->tls_deadline_ms = 0;
	if (conn_tls_loglevel(c) >= 2)
		mx_log(MX_LOG_INFO, "setting up TLS connection from %s", c->client);
	return 0;
}

/* Postfix's Received: lines for the session (smtpd.c, smtpd_tls_received_header). */
static void conn_tls_received(struct conn *c, const struct tls_server_info *i)
{
	char buf[1024];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "\t(using %s with cipher %s (%d/%d bits)",
				    i->protocol, i->cipher, i->cipher_usebits, i->cipher_algbits);
	bool cont = false;
	if (i->kex_name && n < sizeof(buf)) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n\t key-exchange %s",
				      i->kex_name);
		if (n < sizeof(buf) && i->kex_curve)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " (%s)", i->kex_curve);
		else if (n < sizeof(buf) && i->kex_bits > 0)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " (%d bits)", i->kex_bits);
		cont = true;
	}
	if (i->sig_name && n < sizeof(buf)) {
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s server-signature %s",
				      cont ? "" : "\r\n\t", i->sig_name);
		if (n < sizeof(buf) && i->sig_curve)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " (%s)", i->sig_curve);
		else if (n < sizeof(buf) && i->sig_bits > 0)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " (%d bits)", i->sig_bits);
		if (n < sizeof(buf) && i->sig_digest)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, " server-digest %s",
					      i->sig_digest);
	}
	/* the client certificate's line (Postfix's smtpd.c) */
	const struct tls_server_peer *pr = c->tls_peer ? &c->tls_peer->p : NULL;
	if (n < sizeof(buf) && pr)
		snprintf(buf + n, sizeof(buf) - n, ")\r\n\t(Client CN \"%s\", Issuer \"%s\" (%s))",
			 pr->cn, pr->issuer_cn, pr->trusted ? "verified OK" : "not verified");
	else if (n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - n, ")\r\n\t(%s)",
			 c->svc->tls && c->svc->tls->ask_ccert
				 ? "Client did not present a certificate"
				 : "No client certificate requested");
	if (smtp_session_set_tls_received(c->s, buf) < 0)
		mx_log(MX_LOG_WARNING, "out of memory: Received: of %s without its TLS lines",
		       c->client);
}

/* What tls_server_sni_maps made of the name the client sent in SNI, in Postfix's words
 * (tls/tls_misc.c): said once, when the handshake ends. Returns the name to show in the
 * "established from CLIENT to NAME" line, or NULL. */
static const char *conn_tls_sni_log(const struct conn *c)
{
	const struct tls_sni *sni = tls_server_sni(c->tls);
	if (!sni)
		return NULL;
	switch (sni->status) {
	case TLS_SNI_MATCHED:
		return sni->name;
	case TLS_SNI_UNMATCHED:
		mx_log(MX_LOG_INFO, "TLS SNI %s from %s not matched, using default chain",
		       sni->name, c->client);
		return sni->name;
	case TLS_SNI_INVALID:
		mx_log(MX_LOG_WARNING, "TLS SNI from %s is invalid: %s", c->client, sni->name);
		return NULL;
	case TLS_SNI_CHANGED:
		mx_log(MX_LOG_WARNING, "TLS SNI changed from %s initially %s after hello retry",
		       c->client, sni->name);
		return NULL;
	case TLS_SNI_FAILED:
		mx_log(MX_LOG_WARNING, "TLS SNI %s from %s: the context of its certificate chain "
				       "cannot be made (out of memory)", sni->name, c->client);
		return NULL;
	case TLS_SNI_NONE:
	case TLS_SNI_STATUS_MAX:
		break;
	}
	return NULL;
}

/* The handshake completed: the log line, Received:, the policy attributes, and the
 * session's clock restarts (the handshake had smtpd_starttls_timeout). */
static void conn_tls_established(struct conn *c)
{
	struct tls_server_info i;
	tls_server_info(c->tls, &i);
	c->tls_protocol = i.protocol ? i.protocol : "";
	c->tls_cipher = i.cipher ? i.cipher : "";
	c->tls_keysize = i.cipher_usebits;
	c->deadline_ms = 0;
	c->tls_deadline_ms = 0;
	c->w->counters.tls_established++;
	if (i.reused)
		c->w->counters.tls_resumed++;
	unsigned level = conn_tls_loglevel(c);
	const char *sni = conn_tls_sni_log(c);
	const char *kind = "Anonymous";
	if (c->svc->tls && c->svc->tls->ask_ccert) {
		struct conn_tls_peer *cp = malloc(sizeof(*cp));
		struct tls_server_peer *pr = cp ? &cp->p : NULL;
		if (cp && tls_server_peer(c->tls, c->svc->tls->fingerprint_digest, pr)) {
			c->tls_peer = cp;
			conn_tls_xtext(pr->trusted ? pr->cn : "", cp->subject_x,
				       sizeof(cp->subject_x));
			conn_tls_xtext(pr->trusted ? pr->issuer_cn : "", cp->issuer_x,
				       sizeof(cp->issuer_x));
			cp->ccert = (struct smtp_policy_ccert){
				.trusted = pr->trusted,
				.fingerprint = pr->fingerprint,
				.pkey_fingerprint = pr->pkey_fingerprint,
			};
			kind = pr->trusted ? "Trusted" : "Untrusted";
			if (level >= 2)
				mx_log(MX_LOG_INFO, "%s: subject_CN=%s, issuer=%s, fingerprint=%s, "
						    "pkey_fingerprint=%s",
				       c->client, pr->cn, pr->issuer_cn, pr->fingerprint,
				       pr->pkey_fingerprint);
		} else {
			free(cp);
		}
	}
	if (level >= 2 && i.reused)
		mx_log(MX_LOG_INFO, "%s: Reusing old session (RFC 5077 session ticket)", c->client);
	if (level >= 1) {
		char extra[256] = "";
		size_t n = 0;
		if (i.kex_name)
			n += (size_t)snprintf(extra + n, sizeof(extra) - n, " key-exchange %s",
					      i.kex_name);
		if (i.kex_name && n < sizeof(extra) && i.kex_curve)
			n += (size_t)snprintf(extra + n, sizeof(extra) - n, " (%s)", i.kex_curve);
		else if (i.kex_name && n < sizeof(extra) && i.kex_bits > 0)
			n += (size_t)snprintf(extra + n, sizeof(extra) - n, " (%d bits)",
					      i.kex_bits);
		if (i.sig_name && n < sizeof(extra)) {
			n += (size_t)snprintf(extra + n, sizeof(extra) - n, " server-signature %s",
					      i.sig_name);
			if (n < sizeof(extra) && i.sig_curve)
				n += (size_t)snprintf(extra + n, sizeof(extra) - n, " (%s)",
						      i.sig_curve);
			else if (n < sizeof(extra) && i.sig_bits > 0)
				n += (size_t)snprintf(extra + n, sizeof(extra) - n, " (%d bits)",
						      i.sig_bits);
			if (n < sizeof(extra) && i.sig_digest)
				snprintf(extra + n, sizeof(extra) - n, " server-digest %s",
					 i.sig_digest);
		}
		/* Postfix 3.4+: "from CLIENT to NAME" when the client's SNI was taken */
		mx_log(MX_LOG_INFO, "%s TLS connection established from %s%s%s: %s with cipher "
				    "%s (%d/%d bits)%s",
		       kind, c->client, sni ? " to " : "", sni ? sni : "", i.protocol, i.cipher,
		       i.cipher_usebits, i.cipher_algbits, extra);
	}
	if (c->svc->tls && c->svc->tls->received_header)
		conn_tls_received(c, &i);
	if (c->svc->tls && c->svc->tls->req_ccert && !(c->tls_peer && c->tls_peer->p.trusted)) {
		/* smtpd_tls_req_ccert: Postfix's smtpd_start_tls() */
		const char *why = c->tls_peer ? "Client certificate not trusted"
					      : "No client certificate presented";
		mx_log(MX_LOG_INFO, "NOQUEUE: abort: TLS from %s: %s", c->client, why);
		smtp_session_tls_refuse(c->s, why);
	}
	/* smtpd_client_new_tls_session_rate_limit: a full handshake counts */
	conn_anvil_tls_established(c, i.reused);
}

/* After the layer moved: log the handshake's end, or its failure and the session's. */
static void conn_tls_progress(struct conn *c)
{
	if (tls_server_take_established(c->tls))
		conn_tls_established(c);
	enum tls_server_state st = tls_server_state(c->tls);
	if ((st != TLS_SERVER_FAILED && st != TLS_SERVER_CLOSED) || c->tls_done_logged)
		return;
	c->tls_done_logged = true;
	if (st == TLS_SERVER_FAILED) {
		c->w->counters.protocol_errors++;
		c->w->counters.tls_failed++;
		if (!c->tls_protocol)
			(void)conn_tls_sni_log(c);
		if (!c->tls_protocol)
			mx_log(MX_LOG_INFO, "SSL_accept error from %s: -1", c->client);
		else
			mx_log(MX_LOG_INFO, "SSL_read error from %s: -1", c->client);
		mx_log(MX_LOG_WARNING, "TLS library problem: %s", tls_server_reason(c->tls));
	}
	/* a failure or the client's close_notify ends the session: a message in progress is
	 * dropped, "lost connection after ..." unless it had ended (QUIT) */
	conn_peer_closed(c);
}

size_t conn_tls_input(struct conn *c, const char *buf, size_t len)
{
	if (!c->tls_rate_checked && c->svc->tls && c->svc->tls->wrappermode) {
		/* Postfix's smtpd_proto(): a client over its new TLS session rate gets no
		 * handshake at all in wrappermode, it is hung up on */
		c->tls_rate_checked = true;
		if (conn_anvil_tls_refused(c)) {
			conn_hangup(c);
			return len;
		}
	}
	size_t used = tls_server_input(c->tls, buf, len);
	conn_tls_progress(c);
	/* plaintext to the engine while it takes it (it stops when it waits for a verdict,
	 * or its output is at its high-water mark; conn_pending_input() says more waits) */
	while (tls_server_state(c->tls) == TLS_SERVER_OPEN && !conn_waiting(c)) {
		struct mx_span p = tls_server_plain(c->tls);
		if (p.len == 0)
			break;
		size_t u = conn_feed(c, p.ptr, p.len);
		tls_server_plain_done(c->tls, u);
		conn_tls_progress(c);
		if (u < p.len || conn_closed(c) || c->delay_ms)
			break;
	}
	return used;
}

struct mx_span conn_tls_output(struct conn *c)
{
	if (c->tls_plain_out) {
		/* the replies up to the 220 of STARTTLS, in plaintext */
		struct mx_span out = smtp_session_output(c->s);
		if (out.len > c->tls_plain_out)
			out.len = c->tls_plain_out;
		return out;
	}
	if (tls_server_state(c->tls) == TLS_SERVER_OPEN) {
		for (;;) {
			struct mx_span out = smtp_session_output(c->s);
			if (out.len == 0 || tls_server_output(c->tls).len >= CONN_TLS_OUT_HIGH)
				break;
			size_t n = tls_server_write(c->tls, out.ptr, out.len);
			if (n == 0)
				break;
			conn_session_output_done(c, n);
		}
		conn_tls_progress(c);
		/* the session is over and its last reply encrypted: close_notify follows */
		if (smtp_session_closed(c->s) && smtp_session_output(c->s).len == 0)
			tls_server_shutdown(c->tls);
	}
	return tls_server_output(c->tls);
}

void conn_tls_output_done(struct conn *c, size_t n)
{
	if (c->tls_plain_out) {
		assert(n <= c->tls_plain_out);
		conn_session_output_done(c, n);
		c->tls_plain_out -= n;
		return;
	}
	tls_server_output_done(c->tls, n);
}

bool conn_tls_ended(const struct conn *c)
{
	enum tls_server_state st = tls_server_state(c->tls);
	return st == TLS_SERVER_FAILED || st == TLS_SERVER_CLOSED;
}

uint64_t conn_tls_handshake_deadline(struct conn *c, uint64_t now_ms)
{
	/* smtpd_starttls_timeout bounds the whole handshake from its start */
	if (!c->tls_deadline_ms) {
		unsigned s = c->svc->tls ? c->svc->tls->starttls_timeout_s : 300;
		c->tls_deadline_ms = now_ms + (uint64_t)(s ? s : 1) * 1000u;
	}
	return c->tls_deadline_ms;
}

void conn_tls_policy_attrs(const struct conn *c, struct smtp_delegation_request *r)
{
	smtp_delegation_request_init(r);
	if (!c->tls || !c->tls_protocol)
		return;
	/* Postfix's encryption_protocol, encryption_cipher, encryption_keysize
	 * (SMTPD_POLICY_README) */
	r->encryption_protocol = c->tls_protocol;
	r->encryption_cipher = c->tls_cipher;
	r->encryption_keysize = (unsigned)c->tls_keysize;
	const struct conn_tls_peer *cp = c->tls_peer;
	if (!cp)
		return;
	/* the fingerprints whether trusted or not; the names only when trusted, xtext
	 * (Postfix 3.7 check_policy_service()) */
	r->ccert_fingerprint = cp->p.fingerprint;
	r->ccert_pubkey_fingerprint = cp->p.pkey_fingerprint;
	r->ccert_subject = cp->subject_x[0] ? cp->subject_x : NULL;
	r->ccert_issuer = cp->issuer_x[0] ? cp->issuer_x : NULL;
}
