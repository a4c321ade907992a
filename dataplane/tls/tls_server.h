/* The TLS layer of one server connection: OpenSSL over the connection's byte stream,
 * without a socket. Ciphertext the transport received goes in (tls_server_input()),
 * plaintext for the SMTP engine comes out (tls_server_plain()); the engine's replies go
 * in (tls_server_write()) and ciphertext to send comes out (tls_server_output()). The
 * bytes move through a BIO of our own that reads straight from the caller's buffer and
 * appends to an output buffer, so nothing is copied twice and an idle connection holds
 * no buffer: ours are taken when bytes wait and freed when drained, and OpenSSL's are
 * released when empty (SSL_MODE_RELEASE_BUFFERS, set on every context).
 *
 * A handshake failure, a bad record or an alert ends the layer (tls_server_failed()): the
 * reason is kept for the log and the connection is to be closed once the output (an alert)
 * is sent. Every input is bounded: decrypted plaintext waits up to TLS_SERVER_PLAIN_MAX
 * bytes (beyond that, ciphertext is left with the caller until the engine takes some),
 * ciphertext to send up to what the engine writes (bounded by its own high-water mark)
 * plus a handshake flight. One worker drives a connection; nothing here locks. */
#ifndef MXGATE_DATAPLANE_TLS_TLS_SERVER_H
#define MXGATE_DATAPLANE_TLS_TLS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "mxgate/span.h"

/* One TLS record's plaintext (RFC 8446 5.1: 2^14) and room for a command line. */
#define TLS_SERVER_PLAIN_MAX (16384 + 4096)

enum tls_server_state {
	TLS_SERVER_HANDSHAKE, /* before the handshake completed */
	TLS_SERVER_OPEN,      /* application data flows */
	TLS_SERVER_CLOSED,    /* the client sent close_notify */
	TLS_SERVER_FAILED,    /* handshake failure, bad record, alert: close */
	TLS_SERVER_STATE_MAX,
};

const char *tls_server_state_name(enum tls_server_state s);

struct tls_server;

/* A server connection on ctx (its settings and ticket keys). NULL when out of memory. */
struct tls_server *tls_server_new(SSL_CTX *ctx);
void tls_server_free(struct tls_server *t);

/* Feed received ciphertext; advances the handshake and decrypts what it can. Returns how
 * many bytes were taken: all of them, unless decrypted plaintext is waiting at its bound
 * (offer the rest again after tls_server_plain_done()), or the layer failed or closed. */
size_t tls_server_input(struct tls_server *t, const char *buf, size_t len);

/* Decrypted bytes for the engine, and how many it took. */
struct mx_span tls_server_plain(const struct tls_server *t);
void tls_server_plain_done(struct tls_server *t, size_t n);

/* Encrypt plaintext (the engine's replies). Returns how many bytes were taken: 0 before
 * the handshake completed or after a failure. */
size_t tls_server_write(struct tls_server *t, const char *buf, size_t len);

/* Send close_notify (once); after it nothing more is written. */
void tls_server_shutdown(struct tls_server *t);

/* Ciphertext to send, and how many bytes were sent. */
struct mx_span tls_server_output(const struct tls_server *t);
void tls_server_output_done(struct tls_server *t, size_t n);

enum tls_server_state tls_server_state(const struct tls_server *t);
bool tls_server_failed(const struct tls_server *t);
/* Why it failed: OpenSSL's error text ("error:0A00010B:SSL routines::wrong version
 * number"), or "lost connection", "client sent close_notify". "" when it did not. */
const char *tls_server_reason(const struct tls_server *t);

/* True once after the handshake completed (for the log line that says so). */
bool tls_server_take_established(struct tls_server *t);

/* What was negotiated, as Postfix's tls_get_signature_params() reports it: valid once the
 * handshake completed. Strings are static or OpenSSL's, valid while t lives. */
struct tls_server_info {
	const char *protocol;     /* "TLSv1.3" */
	const char *cipher;       /* "TLS_AES_256_GCM_SHA384" */
	int cipher_usebits, cipher_algbits;
	const char *kex_name;     /* "X25519", "ECDHE", "DHE"; NULL below TLS 1.3 */
	const char *kex_curve;    /* ECDHE: "prime256v1" */
	int kex_bits;             /* DHE: the group's bits */
	const char *sig_name;     /* "RSA-PSS", "ECDSA"; NULL when resumed or below 1.3 */
	const char *sig_curve;    /* "prime256v1" for ECDSA */
	int sig_bits;             /* RSA key bits */
	const char *sig_digest;   /* "SHA256" */
	bool reused;              /* resumed (a session ticket) */
};
void tls_server_info(const struct tls_server *t, struct tls_server_info *out);

/* The client's certificate (smtpd_tls_ask_ccert), as Postfix describes it: its common
 * name and its issuer's (control characters and parentheses as '?'), fingerprints of the
 * certificate and of its public key (DER SubjectPublicKeyInfo) with `digest` ("sha256"),
 * uppercase hex pairs joined by ':', and whether it verified against the CAs. Returns
 * false (and *out cleared) when the client presented none. */
struct tls_server_peer {
	bool trusted;
	char cn[256], issuer_cn[256];
	char fingerprint[EVP_MAX_MD_SIZE * 3 + 1];
	char pkey_fingerprint[EVP_MAX_MD_SIZE * 3 + 1];
};
bool tls_server_peer(const struct tls_server *t, const char *digest,
		     struct tls_server_peer *out);

/* The name the client sent in TLS SNI (RFC 6066 section 3) and what tls_server_sni_maps
 * made of it (dataplane/tls/tls_ctx.c chooses the certificate; the connection glue logs
 * it as Postfix does). Kept only when the service has SNI maps and the client sent a
 * name. */
enum tls_sni_status {
	TLS_SNI_NONE,      /* no name, or the service has no tls_server_sni_maps */
	TLS_SNI_MATCHED,   /* its chain was chosen */
	TLS_SNI_UNMATCHED, /* no entry: the default chain ("not matched") */
	TLS_SNI_INVALID,   /* not a host name: ignored, the default chain */
	TLS_SNI_CHANGED,   /* another name after a HelloRetryRequest: ignored */
	TLS_SNI_FAILED,    /* its chain's context could not be made: the handshake fails */
	TLS_SNI_STATUS_MAX,
};

const char *tls_sni_status_name(enum tls_sni_status s);

struct tls_sni {
	enum tls_sni_status status;
	char name[256]; /* as sent, up to 255 bytes, bytes outside '!'..'~' as '?' */
};

/* The SNI record of t, or NULL when none was kept. */
const struct tls_sni *tls_server_sni(const struct tls_server *t);

/* For the servername callback: the record of the connection whose SSL is ssl, made now
 * (a name is rare enough not to cost memory on every connection); NULL when ssl is not a
 * tls_server's or out of memory. */
struct tls_sni *tls_server_sni_record(SSL *ssl);

/* Bytes this connection's TLS state holds now, ours and OpenSSL's as far as we can count
 * (the SSL object is measured in the unit test). */
size_t tls_server_memory(const struct tls_server *t);

#endif
