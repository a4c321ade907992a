/* TLS contexts per worker, session-ticket keys per gateway (dataplane/tls/tls_ctx.h). */
#include "dataplane/tls/tls_ctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mxgate/clock.h"
#include "dataplane/tls/tls_server.h"
#include "mxgate/errf.h"

struct tls_worker {
	OSSL_LIB_CTX *lib;
	EVP_CIPHER *ticket_cipher; /* AES-256-CBC (Postfix's tls_session_ticket_cipher) */
};

/* The app data of a service's context and of its SNI chains' contexts (all share it): the
 * ticket callback finds the worker there, the servername callback the settings and the
 * chains' contexts, made in this worker on first use. */
struct tls_ctx_app {
	struct tls_worker *w;
	const struct mx_tls_conf *conf;
	SSL_CTX **sni; /* [conf->nsni_chains] */
};

/* ---- the gateway's ticket keys ---- */

#define TLS_TICKET_NAME 16
#define TLS_TICKET_AES 32
#define TLS_TICKET_HMAC 32

struct tls_ticket_key {
	unsigned char name[TLS_TICKET_NAME];
	unsigned char aes[TLS_TICKET_AES];
	unsigned char hmac[TLS_TICKET_HMAC];
	uint64_t born_ms;
	bool set;
};

/* One set per process: the workers of the gateway share it (see the header). */
static struct {
	pthread_mutex_t mu;
	struct tls_ticket_key cur, prev;
	uint64_t lifetime_ms; /* the longest session timeout of any context made */
} tls_keys = { .mu = PTHREAD_MUTEX_INITIALIZER };

void tls_ctx_forget_keys(void)
{
	pthread_mutex_lock(&tls_keys.mu);
	OPENSSL_cleanse(&tls_keys.cur, sizeof(tls_keys.cur));
	OPENSSL_cleanse(&tls_keys.prev, sizeof(tls_keys.prev));
	pthread_mutex_unlock(&tls_keys.mu);
}

static void tls_keys_note_lifetime(unsigned seconds)
{
	pthread_mutex_lock(&tls_keys.mu);
	if ((uint64_t)seconds * 1000u > tls_keys.lifetime_ms)
		tls_keys.lifetime_ms = (uint64_t)seconds * 1000u;
	pthread_mutex_unlock(&tls_keys.mu);
}

/* The key new tickets are encrypted with (made or replaced now when due), copied into
 * *k. 0, or -1 when no random bytes could be had. */
static int tls_keys_current(OSSL_LIB_CTX *lib, struct tls_ticket_key *k)
{
	int rc = 0;
	uint64_t now = mx_clock_monotonic_ms();
	pthread_mutex_lock(&tls_keys.mu);
	uint64_t life = tls_keys.lifetime_ms ? tls_keys.lifetime_ms : 3600000u;
	if (!tls_keys.cur.set || now - tls_keys.cur.born_ms >= life) {
		struct tls_ticket_key fresh = { .born_ms = now, .set = true };
		if (RAND_bytes_ex(lib, fresh.name, sizeof(fresh.name), 0) != 1 ||
		    RAND_priv_bytes_ex(lib, fresh.aes, sizeof(fresh.aes), 0) != 1 ||
		    RAND_priv_bytes_ex(lib, fresh.hmac, sizeof(fresh.hmac), 0) != 1) {
			rc = -1;
		} else {
			tls_keys.prev = tls_keys.cur;
			tls_keys.cur = fresh;
		}
		OPENSSL_cleanse(&fresh, sizeof(fresh));
	}
	if (rc == 0)
		*k = tls_keys.cur;
	pthread_mutex_unlock(&tls_keys.mu);
	return rc;
}

/* The key named `name`: 1 the current one, 2 the previous one (renew the ticket), 0 none
 * (or it expired: the previous key is good for one lifetime after it was replaced). */
static int tls_keys_find(const unsigned char *name, struct tls_ticket_key *k)
{
	int found = 0;
	uint64_t now = mx_clock_monotonic_ms();
	pthread_mutex_lock(&tls_keys.mu);
	uint64_t life = tls_keys.lifetime_ms ? tls_keys.lifetime_ms : 3600000u;
	if (tls_keys.cur.set && memcmp(tls_keys.cur.name, name, TLS_TICKET_NAME) == 0) {
		*k = tls_keys.cur;
		found = 1;
	} else if (tls_keys.prev.set && memcmp(tls_keys.prev.name, name, TLS_TICKET_NAME) == 0 &&
		   now - tls_keys.prev.born_ms < 2 * life) {
		*k = tls_keys.prev;
		found = 2;
	}
	pthread_mutex_unlock(&tls_keys.mu);
	return found;
}

/* SSL_CTX_set_tlsext_ticket_key_evp_cb(): enc 1 encrypts a new ticket (name and IV out),
 * enc 0 decrypts one (name and IV in). Returns 1 (use), 2 (use and issue a new ticket),
 * 0 (unknown key: full handshake), -1 (error). */
static int tls_ticket_cb(SSL *ssl, unsigned char *key_name, unsigned char *iv,
			 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	const struct tls_ctx_app *app = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct tls_worker *w = app->w;
	struct tls_ticket_key k;
	int rc;
	if (enc) {
		if (tls_keys_current(w->lib, &k) < 0)
			return -1;
		memcpy(key_name, k.name, TLS_TICKET_NAME);
		if (RAND_bytes_ex(w->lib, iv, (size_t)EVP_CIPHER_get_iv_length(w->ticket_cipher),
				  0) != 1) {
			OPENSSL_cleanse(&k, sizeof(k));
			return -1;
		}
		rc = 1;
	} else {
		rc = tls_keys_find(key_name, &k);
		if (rc == 0)
			return 0;
	}
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	int ok = EVP_MAC_CTX_set_params(hctx, params) == 1 &&
		 (enc ? EVP_EncryptInit_ex(cctx, w->ticket_cipher, NULL, k.aes, iv)
		      : EVP_DecryptInit_ex(cctx, w->ticket_cipher, NULL, k.aes, iv)) == 1;
	OPENSSL_cleanse(&k, sizeof(k));
	return ok ? rc : -1;
}

/* ---- workers ---- */

int tls_worker_new(struct tls_worker **out, char *err, size_t errlen)
{
	*out = NULL;
	struct tls_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	/* a context of its own; OpenSSL's configuration file is not read (the TLS settings
	 * are the smtpd_tls_* parameters) */
	w->lib = OSSL_LIB_CTX_new();
	if (w->lib)
		w->ticket_cipher = EVP_CIPHER_fetch(w->lib, "AES-256-CBC", NULL);
	if (!w->lib || !w->ticket_cipher) {
		char why[256];
		ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
		ERR_clear_error();
		tls_worker_free(w);
		return mx_errf(err, errlen, -ENOMEM, "cannot make a TLS library context: %s", why);
	}
	*out = w;
	return 0;
}

void tls_worker_free(struct tls_worker *w)
{
	if (!w)
		return;
	EVP_CIPHER_free(w->ticket_cipher);
	OSSL_LIB_CTX_free(w->lib);
	free(w);
}

/* ---- contexts ---- */

/* What a ticket needs on every context of a service. */
static void tls_ctx_tickets(SSL_CTX *ctx, const struct mx_tls_conf *conf)
{
	if (conf->session_timeout_s) {
		tls_keys_note_lifetime(conf->session_timeout_s);
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb);
	}
}

/* The name for the log: up to 255 bytes, bytes outside '!'..'~' as '?' (a client's bytes
 * never reach the log raw). */
static void tls_ctx_sni_copy(char *dst, size_t cap, const char *name)
{
	size_t i = 0;
	for (; name[i] && i + 1 < cap; i++) {
		unsigned char ch = (unsigned char)name[i];
		dst[i] = ch >= '!' && ch <= '~' ? (char)ch : '?';
	}
	dst[i] = '\0';
}

/* SSL_CTX_set_tlsext_servername_callback(), with the ClientHello's server_name (RFC 6066
 * section 3): Postfix's server_sni_callback() and tls_cert_cb() in one. A name that is not
 * a host name is ignored (NOACK); a known name switches the connection to its chain's
 * context (the same settings, another certificate); an unknown one keeps the default. A
 * second ClientHello (after a HelloRetryRequest) must carry the same name. */
static int tls_ctx_servername(SSL *ssl, int *alert, void *arg)
{
	struct tls_ctx_app *app = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (!name || !*name)
		return SSL_TLSEXT_ERR_NOACK;
	struct tls_sni *rec = tls_server_sni_record(ssl);
	char seen[sizeof(rec->name)];
	tls_ctx_sni_copy(seen, sizeof(seen), name);
	if (rec && rec->status != TLS_SNI_NONE) {
		/* the HelloRetryRequest's second ClientHello: the choice is made */
		if (strcmp(rec->name, seen) != 0) {
			rec->status = TLS_SNI_CHANGED;
			return SSL_TLSEXT_ERR_NOACK;
		}
		return rec->status == TLS_SNI_INVALID || rec->status == TLS_SNI_CHANGED
			       ? SSL_TLSEXT_ERR_NOACK
			       : SSL_TLSEXT_ERR_OK;
	}
	if (rec)
		memcpy(rec->name, seen, sizeof(seen));
	if (!mx_tls_conf_sni_valid(name)) {
		if (rec)
			rec->status = TLS_SNI_INVALID;
		return SSL_TLSEXT_ERR_NOACK;
	}
	int c = mx_tls_conf_sni_find(app->conf, name);
	if (c < 0) {
		if (rec)
			rec->status = TLS_SNI_UNMATCHED;
		return SSL_TLSEXT_ERR_OK;
	}
	if (!app->sni[c]) {
		/* first use in this worker: made from the keys and chains the generation
		 * loaded (no file is read here) */
		char err[256];
		SSL_CTX *ctx = mx_tls_conf_sni_ssl_ctx(app->conf, (unsigned)c, app->w->lib, err,
						       sizeof(err));
		if (ctx) {
			SSL_CTX_set_app_data(ctx, app);
			tls_ctx_tickets(ctx, app->conf);
		}
		app->sni[c] = ctx;
	}
	if (!app->sni[c] || !SSL_set_SSL_CTX(ssl, app->sni[c])) {
		if (rec)
			rec->status = TLS_SNI_FAILED;
		ERR_clear_error();
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	if (rec)
		rec->status = TLS_SNI_MATCHED;
	return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_ctx_new(struct tls_worker *w, const struct mx_tls_conf *conf, char *err,
		     size_t errlen)
{
	struct tls_ctx_app *app = calloc(1, sizeof(*app));
	if (app && conf->nsni_chains)
		app->sni = calloc(conf->nsni_chains, sizeof(*app->sni));
	if (!app || (conf->nsni_chains && !app->sni)) {
		free(app);
		mx_errf(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	app->w = w;
	app->conf = conf;
	SSL_CTX *ctx = mx_tls_conf_ssl_ctx(conf, w->lib, err, errlen);
	if (!ctx) {
		free(app->sni);
		free(app);
		return NULL;
	}
	SSL_CTX_set_app_data(ctx, app);
	tls_ctx_tickets(ctx, conf);
	if (conf->sni) {
		SSL_CTX_set_tlsext_servername_callback(ctx, tls_ctx_servername);
		SSL_CTX_set_tlsext_servername_arg(ctx, app);
	}
	return ctx;
}

void tls_ctx_free(SSL_CTX *ctx)
{
	if (!ctx)
		return;
	struct tls_ctx_app *app = SSL_CTX_get_app_data(ctx);
	for (unsigned i = 0; app && i < app->conf->nsni_chains; i++)
		SSL_CTX_free(app->sni[i]);
	if (app)
		free(app->sni);
	free(app);
	SSL_CTX_free(ctx);
}
