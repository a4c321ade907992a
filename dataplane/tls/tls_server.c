/* The TLS layer of one server connection (dataplane/tls/tls_server.h). */
#include "dataplane/tls/tls_server.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* Ciphertext waiting to be sent: the engine's replies (bounded by its output buffer, and
 * the glue writes only below TLS_SERVER_OUT_HIGH), a handshake flight (a certificate chain
 * of at most MX_TLS_CHAIN_MAX certificates) and alerts. Past this the connection is
 * failed rather than grown without end. */
#define TLS_SERVER_OUT_MAX (1u << 20)

struct tls_server {
	SSL *ssl;
	enum tls_server_state state;
	bool established;        /* not yet taken by tls_server_take_established() */
	bool shutdown_sent;
	/* the input of the call in progress, read by the BIO */
	const char *in;
	size_t in_len, in_off;
	/* ciphertext to send: out[out_off..out_len) */
	char *out;
	size_t out_len, out_off, out_cap;
	/* plaintext for the engine: plain[plain_off..plain_len) */
	char *plain;
	size_t plain_len, plain_off;
	char reason[256];
	char sig_curve[32];
	struct tls_sni *sni;     /* made by the servername callback (tls_server_sni_record) */
};

const char *tls_server_state_name(enum tls_server_state s)
{
	static const char *const names[TLS_SERVER_STATE_MAX] = { "HANDSHAKE", "OPEN", "CLOSED",
								 "FAILED" };
	return s < TLS_SERVER_STATE_MAX ? names[s] : "?";
}

/* ---- the BIO: reads the caller's buffer, appends to ours ---- */

static BIO_METHOD *tls_bio_method;
static pthread_once_t tls_bio_once = PTHREAD_ONCE_INIT;

static int tls_bio_read(BIO *b, char *buf, int len)
{
	struct tls_server *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	size_t avail = t->in ? t->in_len - t->in_off : 0;
	if (avail == 0 || len <= 0) {
		BIO_set_retry_read(b); /* more will come: "need more input" */
		return -1;
	}
	size_t n = avail < (size_t)len ? avail : (size_t)len;
	memcpy(buf, t->in + t->in_off, n);
	t->in_off += n;
	return (int)n;
}

static int tls_bio_write(BIO *b, const char *buf, int len)
{
	struct tls_server *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	size_t n = (size_t)len;
	if (t->out_off && t->out_off == t->out_len)
		t->out_off = t->out_len = 0;
	if (t->out_len + n > t->out_cap) {
		if (t->out_off) {
			memmove(t->out, t->out + t->out_off, t->out_len - t->out_off);
			t->out_len -= t->out_off;
			t->out_off = 0;
		}
		size_t cap = t->out_cap ? t->out_cap : 4096;
		while (cap < t->out_len + n)
			cap *= 2;
		if (cap > TLS_SERVER_OUT_MAX)
			return -1; /* the connection fails: see TLS_SERVER_OUT_MAX */
		if (cap > t->out_cap) {
			char *p = realloc(t->out, cap);
			if (!p)
				return -1;
			t->out = p;
			t->out_cap = cap;
		}
	}
	memcpy(t->out + t->out_len, buf, n);
	t->out_len += n;
	return len;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* the transport sends what tls_server_output() holds */
	default:
		return 0;
	}
}

static int tls_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_bio_make_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mxgate conn");
	if (m && (!BIO_meth_set_read(m, tls_bio_read) || !BIO_meth_set_write(m, tls_bio_write) ||
		  !BIO_meth_set_ctrl(m, tls_bio_ctrl) || !BIO_meth_set_create(m, tls_bio_create))) {
		BIO_meth_free(m);
		m = NULL;
	}
	tls_bio_method = m; /* made once, never changed: shared by every worker */
}

/* ---- the connection ---- */

/* Every change of t->state goes through here: HANDSHAKE -> OPEN -> CLOSED, and from
 * HANDSHAKE or OPEN to FAILED; CLOSED and FAILED are final. */
static void tls_server_enter(struct tls_server *t, enum tls_server_state next)
{
	assert(next < TLS_SERVER_STATE_MAX);
	assert(t->state != TLS_SERVER_CLOSED && t->state != TLS_SERVER_FAILED);
	assert(next != TLS_SERVER_OPEN || t->state == TLS_SERVER_HANDSHAKE);
	assert(next != TLS_SERVER_CLOSED || t->state == TLS_SERVER_OPEN);
	t->state = next;
	if (next == TLS_SERVER_OPEN)
		t->established = true;
}

struct tls_server *tls_server_new(SSL_CTX *ctx)
{
	pthread_once(&tls_bio_once, tls_bio_make_method);
	if (!tls_bio_method)
		return NULL;
	struct tls_server *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	BIO *bio = t->ssl ? BIO_new(tls_bio_method) : NULL;
	if (!bio) {
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(bio, t);
	SSL_set_bio(t->ssl, bio, bio); /* the SSL owns it (one reference for both) */
	SSL_set_accept_state(t->ssl);
	SSL_set_app_data(t->ssl, t); /* the servername callback finds the connection */
	t->state = TLS_SERVER_HANDSHAKE;
	return t;
}

void tls_server_free(struct tls_server *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t->out);
	free(t->plain);
	free(t->sni);
	free(t);
}

const char *tls_sni_status_name(enum tls_sni_status s)
{
	static const char *const names[TLS_SNI_STATUS_MAX] = {
		"none", "matched", "unmatched", "invalid", "changed", "failed",
	};
	return s < TLS_SNI_STATUS_MAX ? names[s] : "?";
}

const struct tls_sni *tls_server_sni(const struct tls_server *t)
{
	return t->sni;
}

struct tls_sni *tls_server_sni_record(SSL *ssl)
{
	struct tls_server *t = SSL_get_app_data(ssl);
	if (t && !t->sni)
		t->sni = calloc(1, sizeof(*t->sni));
	return t ? t->sni : NULL;
}

/* The layer failed: keep OpenSSL's first reason (the queue is this thread's, cleared
 * before each call into the library). */
static void tls_server_fail(struct tls_server *t, int ssl_error)
{
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, t->reason, sizeof(t->reason));
	else if (ssl_error == SSL_ERROR_SYSCALL)
		snprintf(t->reason, sizeof(t->reason), "lost connection");
	else
		snprintf(t->reason, sizeof(t->reason), "TLS error %d", ssl_error);
	ERR_clear_error();
	tls_server_enter(t, TLS_SERVER_FAILED);
}

static void tls_server_advance(struct tls_server *t)
{
	ERR_clear_error();
	if (t->state == TLS_SERVER_HANDSHAKE) {
		int r = SSL_do_handshake(t->ssl);
		if (r == 1) {
			tls_server_enter(t, TLS_SERVER_OPEN);
		} else {
			int e = SSL_get_error(t->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				tls_server_fail(t, e);
			return;
		}
	}
	while (t->state == TLS_SERVER_OPEN) {
		if (t->plain_off == t->plain_len)
			t->plain_off = t->plain_len = 0;
		if (t->plain_len == TLS_SERVER_PLAIN_MAX) {
			if (t->plain_off == 0)
				break; /* the engine has not taken any: wait for it */
			memmove(t->plain, t->plain + t->plain_off, t->plain_len - t->plain_off);
			t->plain_len -= t->plain_off;
			t->plain_off = 0;
		}
		if (!SSL_has_pending(t->ssl) && t->in_off == t->in_len)
			break; /* nothing to decrypt */
		if (!t->plain && !(t->plain = malloc(TLS_SERVER_PLAIN_MAX))) {
			snprintf(t->reason, sizeof(t->reason), "out of memory");
			tls_server_enter(t, TLS_SERVER_FAILED);
			break;
		}
		int r = SSL_read(t->ssl, t->plain + t->plain_len,
				 (int)(TLS_SERVER_PLAIN_MAX - t->plain_len));
		if (r > 0) {
			t->plain_len += (size_t)r;
			continue;
		}
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN) {
			snprintf(t->reason, sizeof(t->reason), "client sent close_notify");
			tls_server_enter(t, TLS_SERVER_CLOSED);
			ERR_clear_error();
			break;
		}
		tls_server_fail(t, e);
	}
	if (t->plain && t->plain_len == t->plain_off) {
		/* an idle connection holds no plaintext buffer */
		free(t->plain);
		t->plain = NULL;
		t->plain_len = t->plain_off = 0;
	}
}

size_t tls_server_input(struct tls_server *t, const char *buf, size_t len)
{
	if (t->state == TLS_SERVER_FAILED || t->state == TLS_SERVER_CLOSED)
		return len; /* nothing after the end is read */
	t->in = buf;
	t->in_len = len;
	t->in_off = 0;
	tls_server_advance(t);
	size_t used = t->in_off;
	t->in = NULL;
	t->in_len = t->in_off = 0;
	if (t->state == TLS_SERVER_FAILED || t->state == TLS_SERVER_CLOSED)
		return len;
	return used;
}

struct mx_span tls_server_plain(const struct tls_server *t)
{
	return mx_span_make(t->plain ? t->plain + t->plain_off : NULL, t->plain_len - t->plain_off);
}

void tls_server_plain_done(struct tls_server *t, size_t n)
{
	assert(n <= t->plain_len - t->plain_off);
	t->plain_off += n;
	if (t->plain_off == t->plain_len) {
		free(t->plain);
		t->plain = NULL;
		t->plain_len = t->plain_off = 0;
		/* records OpenSSL has decrypted already wait in it; tls_server_input() with
		 * no bytes collects them */
		if (t->state == TLS_SERVER_OPEN && SSL_has_pending(t->ssl))
			tls_server_advance(t);
	}
}

size_t tls_server_write(struct tls_server *t, const char *buf, size_t len)
{
	if (t->state != TLS_SERVER_OPEN || t->shutdown_sent || len == 0)
		return 0;
	ERR_clear_error();
	int n = len > INT32_MAX ? INT32_MAX : (int)len;
	int r = SSL_write(t->ssl, buf, n);
	if (r > 0)
		return (size_t)r;
	int e = SSL_get_error(t->ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		tls_server_fail(t, e);
	return 0;
}

void tls_server_shutdown(struct tls_server *t)
{
	if (t->shutdown_sent || t->state == TLS_SERVER_HANDSHAKE || t->state == TLS_SERVER_FAILED)
		return;
	t->shutdown_sent = true;
	ERR_clear_error();
	(void)SSL_shutdown(t->ssl); /* writes close_notify; the reply is not waited for */
	ERR_clear_error();
}

struct mx_span tls_server_output(const struct tls_server *t)
{
	return mx_span_make(t->out ? t->out + t->out_off : NULL, t->out_len - t->out_off);
}

void tls_server_output_done(struct tls_server *t, size_t n)
{
	assert(n <= t->out_len - t->out_off);
	t->out_off += n;
	if (t->out_off == t->out_len) {
		free(t->out); /* an idle connection holds no output buffer */
		t->out = NULL;
		t->out_len = t->out_off = t->out_cap = 0;
	}
}

enum tls_server_state tls_server_state(const struct tls_server *t)
{
	return t->state;
}

bool tls_server_failed(const struct tls_server *t)
{
	return t->state == TLS_SERVER_FAILED;
}

const char *tls_server_reason(const struct tls_server *t)
{
	return t->reason;
}

bool tls_server_take_established(struct tls_server *t)
{
	bool e = t->established;
	t->established = false;
	return e;
}

void tls_server_info(const struct tls_server *t, struct tls_server_info *out)
{
	*out = (struct tls_server_info){ 0 };
	SSL *ssl = t->ssl;
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	out->protocol = SSL_get_version(ssl);
	out->cipher = c ? SSL_CIPHER_get_name(c) : "NONE";
	out->cipher_usebits = c ? SSL_CIPHER_get_bits(c, &out->cipher_algbits) : 0;
	out->reused = SSL_session_reused(ssl) == 1;
	/* Postfix reports the key exchange and signature for TLS 1.3 only */
	if (SSL_version(ssl) < TLS1_3_VERSION)
		return;
	/* named as Debian's Postfix 3.7 names them (from the peer's key type): X25519 and
	 * X448 by name, an EC curve as ECDHE with the curve, a finite-field group as DHE */
	int nid = SSL_get_negotiated_group(ssl);
	if (nid == NID_X25519 || nid == NID_X448) {
		out->kex_name = OBJ_nid2sn(nid);
	} else if (nid == NID_ffdhe2048 || nid == NID_ffdhe3072 || nid == NID_ffdhe4096 ||
		   nid == NID_ffdhe6144 || nid == NID_ffdhe8192) {
		out->kex_name = "DHE";
		out->kex_bits = nid == NID_ffdhe2048 ? 2048 : nid == NID_ffdhe3072 ? 3072
			      : nid == NID_ffdhe4096 ? 4096 : nid == NID_ffdhe6144 ? 6144 : 8192;
	} else if (nid > 0 && !(nid & TLSEXT_nid_unknown)) {
		out->kex_name = "ECDHE";
		out->kex_curve = OBJ_nid2sn(nid);
	}
	if (out->reused)
		return; /* resumption uses no signature */
	EVP_PKEY *key = SSL_get_privatekey(ssl);
	if (key) {
		if (EVP_PKEY_is_a(key, "RSA")) {
			out->sig_name = "RSA-PSS"; /* TLS 1.3 signs with PSS (RFC 8446 4.2.3) */
			out->sig_bits = EVP_PKEY_get_bits(key);
		} else if (EVP_PKEY_is_a(key, "EC")) {
			out->sig_name = "ECDSA";
			struct tls_server *mt = (struct tls_server *)t; /* a cache of the name */
			size_t n = 0;
			if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
							   mt->sig_curve, sizeof(mt->sig_curve),
							   &n) == 1)
				out->sig_curve = mt->sig_curve;
		} else {
			out->sig_name = EVP_PKEY_get0_type_name(key);
		}
	}
	int dnid = 0;
	if (SSL_get_signature_nid(ssl, &dnid) == 1 && dnid != NID_undef)
		out->sig_digest = OBJ_nid2sn(dnid);
	ERR_clear_error();
}

/* Postfix's tls_digest_encode(): "AB:CD:..." */
static void tls_server_fprint(const unsigned char *der, int len, const EVP_MD *md, char *out,
			      size_t cap)
{
	unsigned char buf[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	out[0] = '\0';
	if (len <= 0 || EVP_Digest(der, (size_t)len, buf, &n, md, NULL) != 1)
		return;
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (unsigned i = 0; i < n && o + 3 < cap; i++) {
		out[o++] = hex[buf[i] >> 4];
		out[o++] = hex[buf[i] & 15];
		if (i + 1 < n)
			out[o++] = ':';
	}
	out[o] = '\0';
}

/* A name's common name for logs and Received: (Postfix's comment_sanitize() keeps a
 * comment well-formed: no parentheses, no controls). */
static void tls_server_cn(const X509_NAME *name, char *out, size_t cap)
{
	out[0] = '\0';
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	const ASN1_STRING *s = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i))
				      : NULL;
	if (!s)
		return;
	const unsigned char *p = ASN1_STRING_get0_data(s);
	size_t n = (size_t)ASN1_STRING_length(s);
	if (n >= cap)
		n = cap - 1;
	for (size_t k = 0; k < n; k++) {
		unsigned char c = p[k];
		out[k] = (c < 32 || c == 127 || c == '(' || c == ')' || c == '"' || c == '\\')
				 ? '?' : (char)c;
	}
	out[n] = '\0';
}

bool tls_server_peer(const struct tls_server *t, const char *digest,
		     struct tls_server_peer *out)
{
	memset(out, 0, sizeof(*out));
	X509 *x = SSL_get0_peer_certificate(t->ssl);
	if (!x)
		return false;
	out->trusted = SSL_get_verify_result(t->ssl) == X509_V_OK;
	tls_server_cn(X509_get_subject_name(x), out->cn, sizeof(out->cn));
	tls_server_cn(X509_get_issuer_name(x), out->issuer_cn, sizeof(out->issuer_cn));
	EVP_MD *md = EVP_MD_fetch(NULL, digest, NULL);
	if (md) {
		unsigned char *der = NULL;
		int len = i2d_X509(x, &der);
		tls_server_fprint(der, len, md, out->fingerprint, sizeof(out->fingerprint));
		OPENSSL_free(der);
		der = NULL;
		len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
		tls_server_fprint(der, len, md, out->pkey_fingerprint,
				  sizeof(out->pkey_fingerprint));
		OPENSSL_free(der);
		EVP_MD_free(md);
	}
	ERR_clear_error();
	return true;
}

size_t tls_server_memory(const struct tls_server *t)
{
	return sizeof(*t) + t->out_cap + (t->plain ? TLS_SERVER_PLAIN_MAX : 0) +
	       (t->sni ? sizeof(*t->sni) : 0);
}
