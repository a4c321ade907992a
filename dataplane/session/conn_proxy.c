/* smtpd_upstream_proxy_protocol = haproxy: the PROXY protocol header (v1 or v2) a load
 * balancer sends before the client's first byte, read before the greeting so the real
 * client drives policy, anvil's limits, the log and Received:.
 *
 * As Postfix's smtpd (smtpd_peer.c, smtpd_haproxy.c, global/haproxy_srvr.c):
 * - the header must arrive within smtpd_upstream_proxy_timeout; nothing is logged as
 *   "connect from" until it did;
 * - a bad header, a timeout or an EOF: "warning: haproxy read: ...", the client becomes
 *   unknown[unknown], it gets "421 4.3.0 $myhostname Server local error" instead of the
 *   greeting, and the connection closes (no command is ever taken from it);
 * - a v2 LOCAL header (the proxy's own health check) keeps the connection's endpoints.
 *
 * The bytes are kept in a buffer of SMTP_PROXY_HEADER_MAX (allocated at accept, freed when
 * the header is in) because the parser wants the whole header contiguous and TCP may cut
 * it anywhere; only the header's bytes are consumed, what follows is SMTP (or, in
 * wrappermode, TLS). The SMTP session made at accept never saw a byte: it is told the real
 * client. */
#include "dataplane/session/conn_internal.h"

#include "smtp/smtp_proxy_protocol.h"

int conn_proxy_init(struct conn *c)
{
	if (!c->cfg->smtpd_upstream_proxy_haproxy)
		return 0;
	c->proxy_buf = malloc(SMTP_PROXY_HEADER_MAX);
	return c->proxy_buf ? 0 : -ENOMEM;
}

uint64_t conn_proxy_deadline(struct conn *c, uint64_t now_ms)
{
	if (!c->proxy_deadline_ms)
		c->proxy_deadline_ms =
			now_ms + (uint64_t)c->cfg->smtpd_upstream_proxy_timeout_s * 1000u;
	return c->proxy_deadline_ms;
}

/* The header could not be had: Postfix's fall-back-and-hang-up. */
static void conn_proxy_failed(struct conn *c)
{
	free(c->proxy_buf);
	c->proxy_buf = NULL;
	snprintf(c->addr_str, sizeof(c->addr_str), "unknown");
	conn_set_client(c, NULL, c->addr_str);
	c->greeted = true;
	c->w->counters.proxy_failed++;
	mx_log(MX_LOG_INFO, "connect from %s", c->client);
	char text[300];
	snprintf(text, sizeof(text), "4.3.0 %s Server local error", c->cfg->myhostname);
	smtp_session_greet_reject(c->s, 421, text);
}

void conn_proxy_timeout(struct conn *c)
{
	mx_log(MX_LOG_WARNING, "haproxy read: timeout error");
	conn_proxy_failed(c);
}

void conn_proxy_eof(struct conn *c)
{
	mx_log(MX_LOG_WARNING, "haproxy read: EOF");
	conn_proxy_failed(c);
}

/* The bytes as Postfix's escape() shows them in its warning: C escapes for \r, \n, \t,
 * octal for other control and non-ASCII bytes, so a client cannot forge log lines. */
static const char *conn_proxy_escape(const char *p, size_t n, char *buf, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch == '\r' || ch == '\n' || ch == '\t' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = ch == '\r' ? 'r' : ch == '\n' ? 'n' : ch == '\t' ? 't' : '\\';
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)snprintf(buf + o, cap - o, "\\%03o", ch);
		} else {
			buf[o++] = (char)ch;
		}
	}
	buf[o] = '\0';
	return buf;
}

/* The client the header names: its addresses, and the session told about it. */
static void conn_proxy_take(struct conn *c, const struct smtp_proxy_header *h)
{
	if (h->use_connection)
		return;
	struct mx_inet_addr client = mx_inet_unmap(&h->src);
	struct mx_inet_addr server = mx_inet_unmap(&h->dst);
	char addr_str[INET6_ADDRSTRLEN];
	mx_inet_format(&client, addr_str, sizeof(addr_str));
	struct smtp_client_info info = {
		.addr = addr_str,
		.port = h->src_port,
		.bare_newline_excluded = c->cfg->bare_newline_exclusions &&
					 netlist_match(c->cfg->bare_newline_exclusions, &client),
		.xclient_authorized = c->cfg->xclient_hosts &&
				      netlist_match(c->cfg->xclient_hosts, &client),
	};
	smtp_session_set_client(c->s, &info);
	c->xclient_allowed = info.xclient_authorized;
	c->addr = client;
	conn_auth_offer(c); /* smtpd_sasl_exceptions_networks names the real client */
	c->port = h->src_port;
	memcpy(c->addr_str, addr_str, sizeof(addr_str));
	c->server = server;
	c->server_port = h->dst_port;
	conn_set_client(c, NULL, c->addr_str);
}

int conn_proxy_feed(char *hbuf, uint16_t *hlen, const char *buf, size_t len,
		    struct smtp_proxy_header *h, size_t *used, char *why, size_t whylen)
{
	size_t before = *hlen;
	size_t take = SMTP_PROXY_HEADER_MAX - before;
	if (take > len)
		take = len;
	memcpy(hbuf + before, buf, take);
	*hlen = (uint16_t)(before + take);

	char err[160] = "";
	ssize_t n = smtp_proxy_parse(hbuf, *hlen, 0, h, err, sizeof(err));
	if (n == 0 && *hlen < SMTP_PROXY_HEADER_MAX) {
		*used = take; /* more to come */
		return 0;
	}
	if (n <= 0) {
		char shown[4 * SMTP_PROXY_HEADER_MAX + 1];
		snprintf(why, whylen, "%s: %s", n == 0 ? "header too long" : err,
			 conn_proxy_escape(hbuf, *hlen, shown, sizeof(shown)));
		*used = len; /* nothing more is read from it */
		return -1;
	}
	/* The parser said "need more" for the bytes before this call, so the header ends
	 * within what this call brought. */
	assert((size_t)n > before && (size_t)n <= before + take);
	*used = (size_t)n - before;
	return 1;
}

size_t conn_proxy_input(struct conn *c, const char *buf, size_t len)
{
	struct smtp_proxy_header h;
	char why[4 * SMTP_PROXY_HEADER_MAX + 200];
	size_t used = 0;
	int rc = conn_proxy_feed(c->proxy_buf, &c->proxy_len, buf, len, &h, &used, why,
				 sizeof(why));
	if (rc == 0)
		return used;
	if (rc < 0) {
		mx_log(MX_LOG_WARNING, "haproxy read: %s", why);
		conn_proxy_failed(c);
		return used;
	}
	conn_proxy_take(c, &h);
	free(c->proxy_buf);
	c->proxy_buf = NULL;
	/* the greeting was asked for while the header was awaited: it begins now */
	if (c->greet_asked)
		conn_greet(c);
	return used;
}

void conn_proxy_skip(struct conn *c)
{
	free(c->proxy_buf);
	c->proxy_buf = NULL;
}
