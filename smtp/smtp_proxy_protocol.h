/* The PROXY protocol, versions 1 and 2 (HAProxy's doc/proxy-protocol.txt, 2020/03/05), as
 * the receiver: what smtpd_upstream_proxy_protocol = haproxy reads before the SMTP
 * greeting. Sans-I/O and stateless: the caller keeps the bytes that arrived since accept()
 * and calls smtp_proxy_parse() on all of them each time more arrive; the answer is "need
 * more", an error, or the header's length and contents. The bytes after the header are
 * SMTP and are never consumed (a client that pipelines EHLO behind the header keeps it).
 *
 * What Postfix does (global/haproxy_srvr.c, smtpd/smtpd_haproxy.c, smtpd/smtpd_peer.c), and
 * how this parser relates to it:
 * - v1 "PROXY TCP4|TCP6 ...": Postfix splits on runs of spaces and takes TCP4/TCP6 in any
 *   case; this parser follows the specification (exactly one space, upper case, no leading
 *   zeros, CRLF only), which every sender produces.
 * - v1 "PROXY UNKNOWN": Postfix refuses it ("would sidestep address-based access
 *   control"); the specification says SHOULD accept and use the real connection. Refused
 *   here too unless SMTP_PROXY_ACCEPT_UNKNOWN.
 * - v2 LOCAL (health checks): Postfix uses the real connection's endpoints; so does this
 *   parser (use_connection), whatever family and addresses follow.
 * - v2 PROXY with anything but TCP over IPv4/IPv6: Postfix refuses ("unsupported network
 *   protocol"); refused here unless SMTP_PROXY_ACCEPT_UNKNOWN, which takes it as
 *   "use the real connection" (the specification's fallback for what a receiver does not
 *   implement).
 * - v2 TLVs: Postfix skips them; this parser walks them with bounds, extracts AUTHORITY
 *   (SNI), SSL (with its version, CN, cipher, signature and key algorithms) and UNIQUE_ID,
 *   verifies a CRC32C when one is present, and ignores the others.
 * - Postfix reads at most 536 bytes (HAPROXY_HEADER_MAX_LEN, the minimum TCP MSS the
 *   specification designs the header to fit in); a longer v2 header fails there, and here.
 * - IPv4-mapped IPv6 addresses: Postfix turns them into IPv4; this parser reports what was
 *   sent; mx_inet_unmap() gives Postfix's view.
 * - Any failure, or no header within smtpd_upstream_proxy_timeout (5s), and Postfix sends
 *   SMTP_PROXY_REPLY_FAILED and hangs up; the error text here matches its log wording
 *   where it has one. */
#ifndef MXGATE_SMTP_PROXY_PROTOCOL_H
#define MXGATE_SMTP_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mxgate/inet.h"
#include "mxgate/span.h"

/* The v1 line, CRLF included, is at most 107 bytes (specification 2.1). */
#define SMTP_PROXY_V1_MAX 107
/* Any header, v2 TLVs included, is at most this long (Postfix's HAPROXY_HEADER_MAX_LEN). */
#define SMTP_PROXY_HEADER_MAX 536
/* The fixed part of a v2 header: signature, version/command, family, length. */
#define SMTP_PROXY_V2_FIXED 16
/* What Postfix's smtpd answers instead of the greeting when the header is bad (%s:
 * myhostname), then hangs up (smtpd.c, SMTPD_FLAG_HANGUP). */
#define SMTP_PROXY_REPLY_FAILED "421 4.3.0 %s Server local error"
/* smtpd_upstream_proxy_timeout default, seconds. */
#define SMTP_PROXY_TIMEOUT_DEFAULT 5

/* Flags for smtp_proxy_parse(). */
#define SMTP_PROXY_ACCEPT_UNKNOWN 0x1u /* v1 UNKNOWN, v2 PROXY over UNSPEC/UDP/UNIX: use the
                                          connection's endpoints instead of refusing */

enum smtp_proxy_command {
	SMTP_PROXY_CMD_LOCAL, /* v2 0x0: the proxy's own connection (health check) */
	SMTP_PROXY_CMD_PROXY, /* v2 0x1, and every v1 header */
	SMTP_PROXY_CMD_MAX,
};

enum smtp_proxy_family {
	SMTP_PROXY_FAM_UNSPEC, /* v2 0x0; v1 UNKNOWN */
	SMTP_PROXY_FAM_INET,   /* v2 0x1; v1 TCP4 */
	SMTP_PROXY_FAM_INET6,  /* v2 0x2; v1 TCP6 */
	SMTP_PROXY_FAM_UNIX,   /* v2 0x3 */
	SMTP_PROXY_FAM_MAX,
};

enum smtp_proxy_transport {
	SMTP_PROXY_TRANS_UNSPEC, /* v2 0x0 */
	SMTP_PROXY_TRANS_STREAM, /* v2 0x1; v1 TCP4/TCP6 */
	SMTP_PROXY_TRANS_DGRAM,  /* v2 0x2 */
	SMTP_PROXY_TRANS_MAX,
};

const char *smtp_proxy_command_name(enum smtp_proxy_command c);
const char *smtp_proxy_family_name(enum smtp_proxy_family f);
const char *smtp_proxy_transport_name(enum smtp_proxy_transport t);

/* PP2_TYPE_SSL's client bits (specification 2.2.6). */
#define SMTP_PROXY_SSL_CLIENT_SSL 0x01u
#define SMTP_PROXY_SSL_CLIENT_CERT_CONN 0x02u
#define SMTP_PROXY_SSL_CLIENT_CERT_SESS 0x04u
/* PP2_TYPE_UNIQUE_ID is at most 128 bytes (specification 2.2.5). */
#define SMTP_PROXY_UNIQUE_ID_MAX 128

/* TLS as the proxy saw it (PP2_TYPE_SSL and its sub-TLVs). Strings are UTF-8 without
 * control characters; an absent one is empty. */
struct smtp_proxy_ssl {
	uint8_t client;          /* SMTP_PROXY_SSL_CLIENT_* */
	uint32_t verify;         /* 0: the client's certificate was verified */
	struct mx_span version;  /* PP2_SUBTYPE_SSL_VERSION, "TLSv1.3" */
	struct mx_span cn;       /* PP2_SUBTYPE_SSL_CN, the client certificate's CN */
	struct mx_span cipher;   /* PP2_SUBTYPE_SSL_CIPHER */
	struct mx_span sig_alg;  /* PP2_SUBTYPE_SSL_SIG_ALG */
	struct mx_span key_alg;  /* PP2_SUBTYPE_SSL_KEY_ALG */
};

/* A parsed header. Spans point into the buffer given to smtp_proxy_parse(). */
struct smtp_proxy_header {
	unsigned version;                  /* 1 or 2 */
	enum smtp_proxy_command command;
	enum smtp_proxy_family family;
	enum smtp_proxy_transport transport;
	/* Use the connection's own endpoints, not src/dst: v2 LOCAL, or (with
	 * SMTP_PROXY_ACCEPT_UNKNOWN) v1 UNKNOWN and v2 PROXY over what mxgate does not take. */
	bool use_connection;
	struct mx_inet_addr src, dst;      /* the client and the server it connected to */
	uint16_t src_port, dst_port;       /* host order */
	bool has_authority;
	struct mx_span authority;          /* PP2_TYPE_AUTHORITY: the SNI or host name */
	bool has_ssl;
	struct smtp_proxy_ssl ssl;
	bool has_unique_id;
	struct mx_span unique_id;          /* PP2_TYPE_UNIQUE_ID: opaque bytes */
	bool crc_verified;                 /* a PP2_TYPE_CRC32C was present and matched */
};

/* Parse the header at the start of buf[0..len). Returns:
 *   > 0  the header's length (the SMTP stream starts there), *out filled;
 *   0    need more bytes (a prefix of a possible header, shorter than the bounds);
 *   -EINVAL           not a PROXY header, malformed, truncated TLV, CRC32C mismatch;
 *   -EMSGSIZE         longer than SMTP_PROXY_V1_MAX (v1) or SMTP_PROXY_HEADER_MAX (v2);
 *   -EPROTONOSUPPORT  well formed, but UNKNOWN/UNSPEC/UDP/UNIX without
 *                     SMTP_PROXY_ACCEPT_UNKNOWN.
 * Errors are explained in err (may be NULL). An error may be reported as soon as a prefix
 * shows it; a prefix of a valid header is never an error. *out is unspecified unless the
 * result is > 0. */
ssize_t smtp_proxy_parse(const void *buf, size_t len, unsigned flags,
			 struct smtp_proxy_header *out, char *err, size_t errlen);

/* CRC32C (Castagnoli, RFC 4960 appendix B) of n bytes, as PP2_TYPE_CRC32C uses it. */
uint32_t smtp_proxy_crc32c(const void *p, size_t n);

#endif
