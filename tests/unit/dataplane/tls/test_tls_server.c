/* The TLS layer (dataplane/tls/) and a service's TLS settings (mgmt/tls_conf.c): a
 * handshake between an OpenSSL client in memory and the server layer, whole and byte by
 * byte; plaintext both ways, and its bound; garbage before and after the handshake
 * (a clean failure with a reason, never a crash); resumption with a ticket issued by one
 * worker's context on another's, and not after the keys are gone; the memory an idle
 * connection holds; the parameters' parsers and the failures of loading keys and
 * certificates. Certificates are made here (RSA 2048 and ECDSA P-256). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dataplane/tls/tls_ctx.h"
#include "dataplane/tls/tls_server.h"
#include "mgmt/config.h"
#include "mgmt/tls_conf.h"
#include "testing.h"

/* ---- counting OpenSSL's allocations (set before OpenSSL allocates anything) ---- */

static size_t live_bytes;

struct alloc_head {
	size_t n;
	size_t pad; /* keeps the payload 16-byte aligned */
};

static void *count_malloc(size_t n, const char *file, int line)
{
	(void)file, (void)line;
	struct alloc_head *h = malloc(sizeof(*h) + n);
	if (!h)
		return NULL;
	h->n = n;
	__atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
	return h + 1;
}

static void count_free(void *p, const char *file, int line)
{
	(void)file, (void)line;
	if (!p)
		return;
	struct alloc_head *h = (struct alloc_head *)p - 1;
	__atomic_sub_fetch(&live_bytes, h->n, __ATOMIC_RELAXED);
	free(h);
}

static void *count_realloc(void *p, size_t n, const char *file, int line)
{
	if (!p)
		return count_malloc(n, file, line);
	if (n == 0) {
		count_free(p, file, line);
		return NULL;
	}
	struct alloc_head *h = (struct alloc_head *)p - 1;
	size_t old = h->n;
	struct alloc_head *nh = realloc(h, sizeof(*nh) + n);
	if (!nh)
		return NULL;
	nh->n = n;
	__atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&live_bytes, old, __ATOMIC_RELAXED);
	return nh + 1;
}

/* ---- certificates ---- */

static char dir[256];
static char rsa_crt[300], rsa_key[300], ec_crt[300], ec_key[300], other_key[300];

static void write_pem_key(const char *path, EVP_PKEY *k)
{
	FILE *f = fopen(path, "w");
	CHECK(f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
	if (f)
		fclose(f);
}

static void make_cert(EVP_PKEY *k, const char *crt_path)
{
	X509 *x = X509_new();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"mx.test",
				   -1, -1, 0);
	X509_set_issuer_name(x, name);
	CHECK(X509_sign(x, k, EVP_sha256()) > 0);
	FILE *f = fopen(crt_path, "w");
	CHECK(f && PEM_write_X509(f, x) == 1);
	if (f)
		fclose(f);
	X509_free(x);
}

static void make_certs(void)
{
	snprintf(dir, sizeof(dir), "%s/tlstest.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(rsa_crt, sizeof(rsa_crt), "%s/rsa.crt", dir);
	snprintf(rsa_key, sizeof(rsa_key), "%s/rsa.key", dir);
	snprintf(ec_crt, sizeof(ec_crt), "%s/ec.crt", dir);
	snprintf(ec_key, sizeof(ec_key), "%s/ec.key", dir);
	snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(rsa && ec && other);
	write_pem_key(rsa_key, rsa);
	make_cert(rsa, rsa_crt);
	write_pem_key(ec_key, ec);
	make_cert(ec, ec_crt);
	write_pem_key(other_key, other);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(other);
}

static void remove_certs(void)
{
	const char *files[] = { rsa_crt, rsa_key, ec_crt, ec_key, other_key };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	rmdir(dir);
}

/* A service's TLS settings from main.cf text (plus the lines given); NULL with err. */
static struct mx_tls_conf *conf_from(const char *lines, char *err, size_t errlen)
{
	char text[4096];
	snprintf(text, sizeof(text),
		 "myhostname = mx.test.example\n"
		 "smtpd_tls_security_level = may\n%s", lines);
	char *diag = NULL;
	size_t dn = 0;
	FILE *f = open_memstream(&diag, &dn);
	struct mx_config *cfg = NULL;
	int rc = mx_config_load_string(text, "t.cf", &cfg, f);
	fclose(f);
	struct mx_tls_conf *t = NULL;
	if (rc < 0)
		snprintf(err, errlen, "%s", diag ? diag : "load failed");
	else if (mx_tls_conf_build(cfg, "smtp", NULL, &t, err, errlen) < 0)
		t = NULL;
	free(diag);
	mx_config_free(cfg);
	return t;
}

static struct mx_tls_conf *rsa_conf(void)
{
	char lines[1024], err[512] = "";
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 rsa_crt, rsa_key);
	struct mx_tls_conf *t = conf_from(lines, err, sizeof(err));
	if (!t)
		fprintf(stderr, "  %s\n", err);
	CHECK(t != NULL);
	return t;
}

/* ---- a client in memory ---- */

struct pair {
	SSL_CTX *cctx;
	SSL *client;
	BIO *c_in, *c_out;   /* what the client reads, what it wrote */
	struct tls_server *server;
};

static void pair_init(struct pair *p, SSL_CTX *sctx, SSL_SESSION *resume)
{
	memset(p, 0, sizeof(*p));
	p->cctx = SSL_CTX_new(TLS_client_method());
	p->client = SSL_new(p->cctx);
	p->c_in = BIO_new(BIO_s_mem());
	p->c_out = BIO_new(BIO_s_mem());
	SSL_set_bio(p->client, p->c_in, p->c_out);
	SSL_set_connect_state(p->client);
	if (resume)
		SSL_set_session(p->client, resume);
	p->server = tls_server_new(sctx);
	CHECK(p->server != NULL);
}

static void pair_fini(struct pair *p)
{
	SSL_free(p->client);
	SSL_CTX_free(p->cctx);
	tls_server_free(p->server);
}

/* Move the client's bytes to the server (in pieces of at most `piece` bytes, each in a
 * heap buffer of exactly its size) and the server's to the client. Returns bytes moved. */
static size_t pump(struct pair *p, size_t piece)
{
	size_t moved = 0;
	char buf[65536];
	int n;
	while ((n = BIO_read(p->c_out, buf, sizeof(buf))) > 0) {
		for (int off = 0; off < n;) {
			size_t len = (size_t)(n - off) < piece ? (size_t)(n - off) : piece;
			char *heap = malloc(len);
			memcpy(heap, buf + off, len);
			size_t used = tls_server_input(p->server, heap, len);
			free(heap);
			CHECK(used == len || tls_server_plain(p->server).len > 0);
			if (used == 0)
				break;
			off += (int)used;
			moved += used;
		}
	}
	struct mx_span out = tls_server_output(p->server);
	if (out.len) {
		BIO_write(p->c_in, out.ptr, (int)out.len);
		tls_server_output_done(p->server, out.len);
		moved += out.len;
	}
	return moved;
}

static bool handshake(struct pair *p, size_t piece)
{
	for (int i = 0; i < 50; i++) {
		int r = SSL_do_handshake(p->client);
		pump(p, piece);
		if (r == 1 && tls_server_state(p->server) == TLS_SERVER_OPEN)
			return true;
		if (tls_server_failed(p->server))
			return false;
	}
	return false;
}

/* What the client reads now (after a pump). */
static size_t client_read(struct pair *p, char *buf, size_t cap)
{
	pump(p, SIZE_MAX);
	int n = SSL_read(p->client, buf, (int)cap);
	return n > 0 ? (size_t)n : 0;
}

/* ---- tests ---- */

static void exchange(SSL_CTX *sctx, size_t piece, const char *want_sig)
{
	struct pair p;
	pair_init(&p, sctx, NULL);
	CHECK(handshake(&p, piece));
	CHECK(tls_server_take_established(p.server));
	CHECK(!tls_server_take_established(p.server));
	struct tls_server_info i;
	tls_server_info(p.server, &i);
	CHECK_STR_EQ(i.protocol, "TLSv1.3");
	CHECK(i.cipher_usebits >= 128);
	CHECK_STR_EQ(i.kex_name, "X25519");
	CHECK_STR_EQ(i.sig_name, want_sig);
	CHECK(!i.reused);
	/* a command to the server, byte by byte too */
	CHECK_INT_EQ(SSL_write(p.client, "EHLO client\r\n", 13), 13);
	pump(&p, piece);
	struct mx_span plain = tls_server_plain(p.server);
	CHECK_MEM_EQ(plain.ptr, plain.len, "EHLO client\r\n", 13);
	tls_server_plain_done(p.server, 5);
	plain = tls_server_plain(p.server);
	CHECK_MEM_EQ(plain.ptr, plain.len, "client\r\n", 8);
	tls_server_plain_done(p.server, plain.len);
	CHECK_INT_EQ(tls_server_plain(p.server).len, 0);
	/* a reply to the client */
	CHECK_INT_EQ(tls_server_write(p.server, "250 ok\r\n", 8), 8);
	char buf[64];
	size_t n = client_read(&p, buf, sizeof(buf));
	CHECK_MEM_EQ(buf, n, "250 ok\r\n", 8);
	/* close_notify from the client ends the layer */
	SSL_shutdown(p.client);
	pump(&p, piece);
	CHECK_INT_EQ(tls_server_state(p.server), TLS_SERVER_CLOSED);
	CHECK_STR_EQ(tls_server_reason(p.server), "client sent close_notify");
	pair_fini(&p);
}

static void test_handshake(void)
{
	struct tls_worker *w = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	struct mx_tls_conf *conf = rsa_conf();
	SSL_CTX *sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	CHECK(sctx != NULL);
	if (sctx) {
		exchange(sctx, SIZE_MAX, "RSA-PSS");
		exchange(sctx, 1, "RSA-PSS"); /* byte by byte */
		exchange(sctx, 7, "RSA-PSS");
	}
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);

	/* ECDSA alone, and through smtpd_tls_chain_files (key then certificate) */
	char lines[1024];
	snprintf(lines, sizeof(lines), "smtpd_tls_eccert_file = %s\nsmtpd_tls_eckey_file = %s\n",
		 ec_crt, ec_key);
	conf = conf_from(lines, err, sizeof(err));
	CHECK(conf != NULL);
	sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	if (sctx)
		exchange(sctx, SIZE_MAX, "ECDSA");
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);

	char chain[300];
	snprintf(chain, sizeof(chain), "%s/chain.pem", dir);
	FILE *out = fopen(chain, "w");
	FILE *in = fopen(ec_key, "r");
	int ch;
	while (in && out && (ch = fgetc(in)) != EOF)
		fputc(ch, out);
	if (in)
		fclose(in);
	in = fopen(ec_crt, "r");
	while (in && out && (ch = fgetc(in)) != EOF)
		fputc(ch, out);
	if (in)
		fclose(in);
	if (out)
		fclose(out);
	snprintf(lines, sizeof(lines), "smtpd_tls_chain_files = %s\n", chain);
	conf = conf_from(lines, err, sizeof(err));
	CHECK(conf != NULL);
	CHECK_INT_EQ(conf ? conf->ncreds : 0, 1);
	sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	if (sctx)
		exchange(sctx, 3, "ECDSA");
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);
	unlink(chain);
	tls_worker_free(w);
}

static void test_garbage(void)
{
	struct tls_worker *w = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	struct mx_tls_conf *conf = rsa_conf();
	SSL_CTX *sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	if (!sctx) {
		tls_worker_free(w);
		mx_tls_conf_free(conf);
		return;
	}
	/* plaintext SMTP where a ClientHello belongs */
	struct tls_server *t = tls_server_new(sctx);
	static const char smtp[] = "EHLO plain.example\r\nMAIL FROM:<a@b>\r\n";
	CHECK_INT_EQ(tls_server_input(t, smtp, sizeof(smtp) - 1), sizeof(smtp) - 1);
	CHECK(tls_server_failed(t));
	CHECK(strlen(tls_server_reason(t)) > 0);
	fprintf(stderr, "  plaintext instead of TLS: %s\n", tls_server_reason(t));
	/* nothing more is read, nothing is written */
	CHECK_INT_EQ(tls_server_input(t, smtp, 4), 4);
	CHECK_INT_EQ(tls_server_write(t, "x", 1), 0);
	CHECK_INT_EQ(tls_server_plain(t).len, 0);
	tls_server_free(t);

	/* random bytes, fed whole and byte by byte, with many seeds: a failure or a wait for
	 * more, never a crash or plaintext */
	uint32_t seed = 12345;
	for (int round = 0; round < 200; round++) {
		t = tls_server_new(sctx);
		size_t len = 1 + (size_t)(round * 37 % 700);
		char *junk = malloc(len);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			junk[i] = (char)(seed >> 16);
		}
		if (round % 3 == 0 && len > 5) {
			/* something like a record header, to go deeper */
			junk[0] = 0x16, junk[1] = 0x03, junk[2] = 0x01;
			junk[3] = (char)((len - 5) >> 8), junk[4] = (char)(len - 5);
		}
		if (round % 2) {
			for (size_t i = 0; i < len && !tls_server_failed(t); i++) {
				char *one = malloc(1);
				*one = junk[i];
				CHECK_INT_EQ(tls_server_input(t, one, 1), 1);
				free(one);
			}
		} else {
			CHECK_INT_EQ(tls_server_input(t, junk, len), len);
		}
		CHECK_INT_EQ(tls_server_plain(t).len, 0);
		CHECK(tls_server_state(t) == TLS_SERVER_HANDSHAKE || tls_server_failed(t));
		free(junk);
		tls_server_free(t);
	}

	/* a record changed after the handshake: bad record MAC, the layer fails */
	struct pair p;
	pair_init(&p, sctx, NULL);
	CHECK(handshake(&p, SIZE_MAX));
	CHECK_INT_EQ(SSL_write(p.client, "MAIL FROM:<a@b>\r\n", 17), 17);
	char buf[4096];
	int n = BIO_read(p.c_out, buf, sizeof(buf));
	CHECK(n > 20);
	if (n > 20) {
		buf[n - 3] ^= 0x40;
		CHECK_INT_EQ(tls_server_input(p.server, buf, (size_t)n), n);
	}
	CHECK(tls_server_failed(p.server));
	fprintf(stderr, "  changed record: %s\n", tls_server_reason(p.server));
	CHECK_INT_EQ(tls_server_plain(p.server).len, 0);
	/* the alert it sends is output, and the layer reads nothing more */
	CHECK(tls_server_output(p.server).len > 0);
	pair_fini(&p);

	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);
	tls_worker_free(w);
}

static void test_plain_bound(void)
{
	struct tls_worker *w = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	struct mx_tls_conf *conf = rsa_conf();
	SSL_CTX *sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	if (sctx) {
		struct pair p;
		pair_init(&p, sctx, NULL);
		CHECK(handshake(&p, SIZE_MAX));
		/* three times the bound, nobody takes the plaintext */
		static char big[3 * TLS_SERVER_PLAIN_MAX];
		memset(big, 'x', sizeof(big));
		CHECK_INT_EQ(SSL_write(p.client, big, sizeof(big)), sizeof(big));
		static char cipher[4 * TLS_SERVER_PLAIN_MAX];
		int n = BIO_read(p.c_out, cipher, sizeof(cipher));
		CHECK(n > (int)sizeof(big));
		size_t off = 0, total = 0;
		for (int rounds = 0; rounds < 100 && off < (size_t)n; rounds++) {
			size_t used = tls_server_input(p.server, cipher + off, (size_t)n - off);
			off += used;
			struct mx_span pl = tls_server_plain(p.server);
			CHECK(pl.len <= TLS_SERVER_PLAIN_MAX);
			if (off < (size_t)n)
				CHECK(pl.len > 0); /* it stopped because the plaintext waits */
			total += pl.len;
			tls_server_plain_done(p.server, pl.len);
		}
		/* records decrypted but not delivered come with the next (empty) input */
		for (int rounds = 0; rounds < 10; rounds++) {
			tls_server_input(p.server, NULL, 0);
			struct mx_span pl = tls_server_plain(p.server);
			total += pl.len;
			tls_server_plain_done(p.server, pl.len);
		}
		CHECK_INT_EQ(off, n);
		CHECK_INT_EQ(total, sizeof(big));
		pair_fini(&p);
	}
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);
	tls_worker_free(w);
}

/* A full handshake on worker a, then resumption with its ticket on worker b. */
static void test_resumption(void)
{
	struct tls_worker *a = NULL, *b = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&a, err, sizeof(err)), 0);
	CHECK_INT_EQ(tls_worker_new(&b, err, sizeof(err)), 0);
	struct mx_tls_conf *conf = rsa_conf();
	SSL_CTX *ca = conf ? tls_ctx_new(a, conf, err, sizeof(err)) : NULL;
	SSL_CTX *cb = conf ? tls_ctx_new(b, conf, err, sizeof(err)) : NULL;
	CHECK(ca && cb);
	if (ca && cb) {
		struct pair p;
		pair_init(&p, ca, NULL);
		CHECK(handshake(&p, SIZE_MAX));
		char buf[16];
		client_read(&p, buf, sizeof(buf)); /* TLS 1.3: the ticket comes after */
		SSL_SESSION *sess = SSL_get1_session(p.client);
		CHECK(sess && SSL_SESSION_is_resumable(sess));
		/* a client that leaves without close_notify makes its session unresumable */
		SSL_shutdown(p.client);
		pair_fini(&p);

		struct pair q;
		pair_init(&q, cb, sess);
		CHECK(handshake(&q, SIZE_MAX));
		struct tls_server_info i;
		tls_server_info(q.server, &i);
		CHECK(i.reused);
		CHECK(SSL_session_reused(q.client) == 1);
		CHECK(i.sig_name == NULL); /* resumption signs nothing */
		pair_fini(&q);

		/* the keys are gone (a restart): a full handshake, never a failure */
		tls_ctx_forget_keys();
		pair_init(&q, cb, sess);
		CHECK(handshake(&q, SIZE_MAX));
		tls_server_info(q.server, &i);
		CHECK(!i.reused);
		pair_fini(&q);
		SSL_SESSION_free(sess);
	}
	tls_ctx_free(ca);
	tls_ctx_free(cb);
	mx_tls_conf_free(conf);

	/* smtpd_tls_session_cache_timeout = 0: no ticket is issued */
	char lines[1024];
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n"
				       "smtpd_tls_session_cache_timeout = 0\n", rsa_crt, rsa_key);
	conf = conf_from(lines, err, sizeof(err));
	SSL_CTX *c0 = conf ? tls_ctx_new(a, conf, err, sizeof(err)) : NULL;
	CHECK(c0 != NULL);
	if (c0) {
		struct pair p;
		pair_init(&p, c0, NULL);
		CHECK(handshake(&p, SIZE_MAX));
		char buf[16];
		client_read(&p, buf, sizeof(buf));
		SSL_SESSION *sess = SSL_get1_session(p.client);
		CHECK(!sess || !SSL_SESSION_is_resumable(sess));
		SSL_SESSION_free(sess);
		pair_fini(&p);
	}
	tls_ctx_free(c0);
	mx_tls_conf_free(conf);
	tls_worker_free(a);
	tls_worker_free(b);
}

/* Client certificates (smtpd_tls_ask_ccert): one the CA file holds is trusted, another is
 * not, none is none; fingerprints are OpenSSL's digest of the DER in Postfix's form. */
static void test_client_certs(void)
{
	struct tls_worker *w = NULL;
	char err[512], lines[1024];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n"
				       "smtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = %s\n",
		 rsa_crt, rsa_key, ec_crt);
	struct mx_tls_conf *conf = conf_from(lines, err, sizeof(err));
	if (!conf)
		fprintf(stderr, "  %s\n", err);
	CHECK(conf && conf->ask_ccert && conf->ca_pem);
	CHECK_STR_EQ(conf ? conf->fingerprint_digest : "", "sha256");
	SSL_CTX *sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	CHECK(sctx != NULL);
	for (int k = 0; sctx && k < 3; k++) {
		struct pair p;
		pair_init(&p, sctx, NULL);
		/* 0: the CA file's own (self-signed) certificate, 1: another, 2: none */
		if (k < 2) {
			CHECK(SSL_use_certificate_file(p.client, k == 0 ? ec_crt : rsa_crt,
						       SSL_FILETYPE_PEM) == 1);
			CHECK(SSL_use_PrivateKey_file(p.client, k == 0 ? ec_key : rsa_key,
						      SSL_FILETYPE_PEM) == 1);
		}
		CHECK(handshake(&p, SIZE_MAX));
		struct tls_server_peer peer;
		bool present = tls_server_peer(p.server, "sha256", &peer);
		CHECK(present == (k < 2));
		if (k == 0) {
			CHECK(peer.trusted);
			CHECK_STR_EQ(peer.cn, "mx.test");
			CHECK_STR_EQ(peer.issuer_cn, "mx.test");
			/* the digest of the certificate's DER, as openssl x509 -fingerprint */
			FILE *f = fopen(ec_crt, "r");
			X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
			if (f)
				fclose(f);
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int n = 0;
			CHECK(x && X509_digest(x, EVP_sha256(), md, &n) == 1 && n == 32);
			char want[100];
			for (unsigned i = 0; i < n; i++)
				snprintf(want + 3 * i, sizeof(want) - 3 * i, "%02X%s", md[i],
					 i + 1 < n ? ":" : "");
			CHECK_STR_EQ(peer.fingerprint, want);
			CHECK_INT_EQ(strlen(peer.pkey_fingerprint), 95);
			CHECK(strcmp(peer.fingerprint, peer.pkey_fingerprint) != 0);
			X509_free(x);
		} else if (k == 1) {
			CHECK(!peer.trusted);
			CHECK_INT_EQ(strlen(peer.fingerprint), 95);
		}
		pair_fini(&p);
	}
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);

	/* a CA file without a certificate fails the build */
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n"
				       "smtpd_tls_ask_ccert = yes\nsmtpd_tls_CAfile = %s\n",
		 rsa_crt, rsa_key, rsa_key);
	conf = conf_from(lines, err, sizeof(err));
	CHECK(conf == NULL);
	CHECK(strstr(err, "smtpd_tls_CAfile") && strstr(err, "no certificate"));
	tls_worker_free(w);
}

/* The bytes one idle TLS connection holds after its handshake: OpenSSL's (counted by the
 * allocator hooks: what freeing the server connection gives back) plus the layer's own. */
static void test_idle_memory(void)
{
	struct tls_worker *w = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	struct mx_tls_conf *conf = rsa_conf();
	SSL_CTX *sctx = conf ? tls_ctx_new(w, conf, err, sizeof(err)) : NULL;
	if (sctx) {
		struct pair p;
		pair_init(&p, sctx, NULL);
		CHECK(handshake(&p, SIZE_MAX));
		char buf[64];
		client_read(&p, buf, sizeof(buf));
		/* one command and its reply, then idle */
		SSL_write(p.client, "NOOP\r\n", 6);
		pump(&p, SIZE_MAX);
		tls_server_plain_done(p.server, tls_server_plain(p.server).len);
		tls_server_write(p.server, "250 2.0.0 Ok\r\n", 14);
		client_read(&p, buf, sizeof(buf));
		CHECK_INT_EQ(tls_server_output(p.server).len, 0);
		size_t ours = tls_server_memory(p.server);
		size_t before = live_bytes;
		tls_server_free(p.server);
		p.server = NULL;
		size_t openssl = before - live_bytes;
		fprintf(stderr, "  idle TLS connection (TLSv1.3, RSA 2048): %zu bytes in OpenSSL "
				"+ %zu bytes of the layer = %zu bytes\n",
			openssl, ours, openssl + ours);
		/* without SSL_MODE_RELEASE_BUFFERS the read and write buffers alone would be
		 * over 34 KiB */
		CHECK(openssl + ours < 16384);
		pair_fini(&p);
	}
	tls_ctx_free(sctx);
	mx_tls_conf_free(conf);
	tls_worker_free(w);
}

static void test_protocols(void)
{
	int lo, hi;
	uint64_t off;
	char err[256];
	CHECK_INT_EQ(mx_tls_conf_protocols(">=TLSv1", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK_INT_EQ(lo, TLS1_VERSION);
	CHECK_INT_EQ(hi, TLS1_3_VERSION);
	CHECK_INT_EQ(off, 0);
	CHECK_INT_EQ(mx_tls_conf_protocols(">=TLSv1.2", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK_INT_EQ(lo, TLS1_2_VERSION);
	CHECK_INT_EQ(mx_tls_conf_protocols("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", &lo, &hi, &off, err,
					   sizeof(err)), 0);
	CHECK_INT_EQ(lo, TLS1_2_VERSION);
	CHECK_INT_EQ(hi, TLS1_3_VERSION);
	CHECK_INT_EQ(mx_tls_conf_protocols("!TLSv1.1", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK_INT_EQ(lo, TLS1_VERSION);
	CHECK_INT_EQ(off, SSL_OP_NO_TLSv1_1); /* a hole */
	CHECK_INT_EQ(mx_tls_conf_protocols("TLSv1.2 TLSv1.3", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK_INT_EQ(lo, TLS1_2_VERSION);
	CHECK_INT_EQ(mx_tls_conf_protocols("<=TLSv1.2", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK_INT_EQ(hi, TLS1_2_VERSION);
	CHECK_INT_EQ(mx_tls_conf_protocols("", &lo, &hi, &off, err, sizeof(err)), 0);
	CHECK(mx_tls_conf_protocols("TLSv1.4", &lo, &hi, &off, err, sizeof(err)) < 0);
	CHECK(strstr(err, "TLSv1.4") != NULL);
	CHECK(mx_tls_conf_protocols("!TLSv1 !TLSv1.1 !TLSv1.2 !TLSv1.3", &lo, &hi, &off, err,
				    sizeof(err)) < 0);
	CHECK(mx_tls_conf_protocols(">=TLSv1.3 <=TLSv1.2", &lo, &hi, &off, err, sizeof(err)) < 0);

	char buf[512];
	CHECK_INT_EQ(mx_tls_conf_ciphers("high", "RC4 aNULL", buf, sizeof(buf), err, sizeof(err)),
		     0);
	CHECK_STR_EQ(buf, "aNULL:-aNULL:HIGH:@STRENGTH:!RC4:!aNULL");
	CHECK(mx_tls_conf_ciphers("super", "", buf, sizeof(buf), err, sizeof(err)) < 0);
	CHECK(mx_tls_conf_ciphers("medium", "RC4;rm", buf, sizeof(buf), err, sizeof(err)) < 0);
}

/* Keys and certificates that do not load fail with the file and the reason. */
static void test_load_failures(void)
{
	char lines[1024], err[512];
	struct mx_tls_conf *t;

	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s/none.crt\n", dir);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "none.crt") && strstr(err, "No such file"));
	CHECK(strstr(err, "t.cf:"));

	/* a key that is not the certificate's */
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 ec_crt, other_key);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t == NULL);
	fprintf(stderr, "  mismatched key: %s\n", err);
	CHECK(strstr(err, ec_crt) != NULL);

	/* a certificate file without a key */
	snprintf(lines, sizeof(lines), "smtpd_tls_cert_file = %s\n", rsa_crt);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "no private key"));

	/* may without any certificate: an error, not a STARTTLS that always fails */
	t = conf_from("", err, sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "needs a certificate"));

	/* none: no TLS, nothing loaded */
	char e2[64];
	struct mx_config *cfg = NULL;
	CHECK_INT_EQ(mx_config_load_string("myhostname = a.example\n", "t.cf", &cfg, NULL), 0);
	CHECK_INT_EQ(mx_tls_conf_build(cfg, "smtp", NULL, &t, e2, sizeof(e2)), 0);
	CHECK(t == NULL);
	mx_config_free(cfg);

	/* the old names: smtpd_enforce_tls = yes is encrypt, wrappermode implies it */
	snprintf(lines, sizeof(lines), "smtpd_tls_security_level =\nsmtpd_enforce_tls = yes\n"
				       "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 rsa_crt, rsa_key);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t && t->level == MX_TLS_LEVEL_ENCRYPT && !t->wrappermode);
	mx_tls_conf_free(t);
	snprintf(lines, sizeof(lines), "smtpd_tls_security_level = none\n"
				       "smtpd_tls_wrappermode = yes\n"
				       "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 rsa_crt, rsa_key);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t && t->level == MX_TLS_LEVEL_ENCRYPT && t->wrappermode);
	mx_tls_conf_free(t);

	/* smtpd_tls_req_ccert below the encrypt level: an error, not Postfix's warning */
	snprintf(lines, sizeof(lines), "smtpd_tls_req_ccert = yes\n"
				       "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 rsa_crt, rsa_key);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "t.cf:3: smtpd_tls_req_ccert = yes needs smtpd_tls_security_level = "
			  "encrypt"));
	snprintf(lines, sizeof(lines), "smtpd_tls_security_level = encrypt\n"
				       "smtpd_tls_req_ccert = yes\n"
				       "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n",
		 rsa_crt, rsa_key);
	t = conf_from(lines, err, sizeof(err));
	CHECK(t && t->req_ccert && t->ask_ccert);
	mx_tls_conf_free(t);

	/* a protocol typo is a configuration error at its line */
	t = conf_from("smtpd_tls_protocols = >=TLSv1.5\n", err, sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "t.cf:3") && strstr(err, "smtpd_tls_protocols"));
}

int main(void)
{
	/* before OpenSSL allocates anything */
	CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free);
	make_certs();
	RUN_TEST(test_protocols);
	RUN_TEST(test_handshake);
	RUN_TEST(test_garbage);
	RUN_TEST(test_plain_bound);
	RUN_TEST(test_resumption);
	RUN_TEST(test_client_certs);
	RUN_TEST(test_idle_memory);
	RUN_TEST(test_load_failures);
	remove_certs();
	return TEST_RESULT();
}
