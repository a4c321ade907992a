/* TLS contexts of one worker, and the session-ticket keys every worker shares.
 *
 * OpenSSL 3.0 serialises threads that share a library context (its fetch caches and
 * provider store take locks), so each worker has its own OSSL_LIB_CTX, and its own
 * SSL_CTX per service made in it from the service's settings (mgmt/tls_conf.h); the
 * ticket cipher and MAC are fetched once per worker.
 *
 * Session tickets (RFC 5077, RFC 8446 4.6.1): a client's connections land on any worker
 * (RSS, SO_REUSEPORT), so a ticket issued on one must resume on another. The keys are
 * one set per gateway (process): a current key that encrypts new tickets and the one
 * before it, which still decrypts (a ticket of the previous key is renewed). A key is
 * replaced once it is older than the longest smtpd_tls_session_cache_timeout of any
 * context made, so a ticket stays usable for at least its lifetime. Keys are random,
 * never written anywhere; a restart invalidates every ticket (clients do a full
 * handshake). Keys are read under a mutex once per full handshake or resumption, never
 * per byte. */
#ifndef MXGATE_DATAPLANE_TLS_TLS_CTX_H
#define MXGATE_DATAPLANE_TLS_TLS_CTX_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "mgmt/tls_conf.h"

struct tls_worker;

/* A worker's library context. 0 or a negative errno with err. */
int tls_worker_new(struct tls_worker **out, char *err, size_t errlen);
/* Every SSL_CTX made with it is freed already. NULL is fine. */
void tls_worker_free(struct tls_worker *w);

/* The server context of a service for this worker: conf's settings, in w's library
 * context, with the shared ticket keys. With tls_server_sni_maps (conf->sni) it looks at
 * the name a client sends (SNI) and serves the certificate the maps give it: a context
 * per chain, made in this worker from conf's loaded keys on the first client that asks
 * for it, and selected for the connection (SSL_set_SSL_CTX()); the outcome is recorded
 * in the connection (tls_server_sni()). conf must outlive the context. NULL with err.
 * Free with tls_ctx_free() (never SSL_CTX_free(): it owns the chains' contexts). */
SSL_CTX *tls_ctx_new(struct tls_worker *w, const struct mx_tls_conf *conf, char *err,
		     size_t errlen);
/* NULL is fine. Every connection on it (or its chains' contexts) is freed already. */
void tls_ctx_free(SSL_CTX *ctx);

/* For tests: forget the ticket keys (the next ticket makes a new set), as a restart
 * would. */
void tls_ctx_forget_keys(void);

#endif
