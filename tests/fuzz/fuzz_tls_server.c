/* libFuzzer harness for the TLS layer's record handling (dataplane/tls/tls_server.c): fuzz
 * bytes as the ciphertext a client sends, against a server context with an ECDSA
 * certificate made once at start. OpenSSL's parsers are not the target; the glue is: its
 * BIO over the caller's buffer, the plaintext bound, the output buffer, failure and close.
 *
 * The context has tls_server_sni_maps (".example" and "fuzz.example"): a ClientHello's
 * server_name goes through the servername callback and the lookup; the name kept for the
 * log is printable and bounded, and a matched name is one the maps have.
 *
 * Input layout: [0] piece-size seed, [1] engine seed, [2..] ciphertext, fed in pieces
 * (sizes from the seed, each piece in a heap buffer of exactly its size); between pieces
 * the "engine" takes some plaintext or none, and writes a reply.
 *
 * Invariants (abort on violation): input is consumed whole unless decrypted plaintext waits
 * at its bound; no plaintext before the handshake completed or after a failure; plaintext
 * never exceeds TLS_SERVER_PLAIN_MAX; nothing is taken after a failure or close; a failure
 * has a reason; output is bounded; the layer's memory is bounded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dataplane/tls/tls_ctx.h"
#include "dataplane/tls/tls_server.h"
#include "fuzz_check.h"
#include "mgmt/tls_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the service's settings, kept for the process as a generation keeps them */
static struct mx_tls_conf fuzz_conf;

static SSL_CTX *fuzz_ctx(void)
{
	static SSL_CTX *ctx;
	if (ctx)
		return ctx;
	/* a key and a self-signed certificate in memory, as mgmt/tls_conf.c would have read
	 * them from files */
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	FUZZ_CHECK(k && x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	FUZZ_CHECK(X509_sign(x, k, EVP_sha256()) > 0);
	fuzz_conf.level = MX_TLS_LEVEL_MAY;
	fuzz_conf.session_timeout_s = 3600;
	fuzz_conf.starttls_timeout_s = 300;
	fuzz_conf.min_version = TLS1_VERSION;
	fuzz_conf.max_version = TLS1_3_VERSION;
	FUZZ_CHECK(mx_tls_conf_ciphers("medium", "", fuzz_conf.ciphers,
				       sizeof(fuzz_conf.ciphers), NULL, 0) == 0);
	memcpy(fuzz_conf.session_context, "fuzz", 5);
	unsigned char *p = NULL;
	int n = i2d_PrivateKey(k, &p);
	FUZZ_CHECK(n > 0);
	fuzz_conf.creds[0].key.p = p;
	fuzz_conf.creds[0].key.len = (size_t)n;
	p = NULL;
	n = i2d_X509(x, &p);
	FUZZ_CHECK(n > 0);
	fuzz_conf.creds[0].certs[0].p = p;
	fuzz_conf.creds[0].certs[0].len = (size_t)n;
	fuzz_conf.creds[0].ncerts = 1;
	fuzz_conf.ncreds = 1;
	/* tls_server_sni_maps: a ClientHello's server_name reaches the lookup (a name and a
	 * parent domain, both to one chain: the same key and certificate) */
	static struct mx_tls_sni_chain chain;
	static struct mx_tls_sni_name names[] = { { (char *)".example", 0 },
						  { (char *)"fuzz.example", 0 } };
	chain.creds[0] = fuzz_conf.creds[0];
	chain.ncreds = 1;
	chain.files = (char *)"fuzz.pem";
	fuzz_conf.sni = true;
	fuzz_conf.sni_chains = &chain;
	fuzz_conf.nsni_chains = 1;
	fuzz_conf.sni_names = names;
	fuzz_conf.nsni_names = 2;
	struct tls_worker *w = NULL;
	FUZZ_CHECK(tls_worker_new(&w, NULL, 0) == 0);
	ctx = tls_ctx_new(w, &fuzz_conf, NULL, 0);
	FUZZ_CHECK(ctx != NULL);
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx; /* kept for the process, as a worker keeps its context */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	SSL_CTX *ctx = fuzz_ctx();
	uint32_t rng = (uint32_t)data[0] * 2654435761u + 1u, eng = data[1];
	struct tls_server *t = tls_server_new(ctx);
	if (!t)
		return 0;
	size_t off = 2;
	for (int rounds = 0; off < size && rounds < 100000; rounds++) {
		rng = rng * 1103515245u + 12345u;
		size_t want = 1 + (rng >> 8) % 600;
		size_t len = size - off < want ? size - off : want;
		char *piece = malloc(len);
		FUZZ_CHECK(piece != NULL);
		memcpy(piece, data + off, len);
		enum tls_server_state before = tls_server_state(t);
		size_t used = tls_server_input(t, piece, len);
		free(piece);
		FUZZ_CHECK(used <= len);
		enum tls_server_state st = tls_server_state(t);
		struct mx_span plain = tls_server_plain(t);
		FUZZ_CHECK(plain.len <= TLS_SERVER_PLAIN_MAX);
		if (before == TLS_SERVER_FAILED || before == TLS_SERVER_CLOSED)
			FUZZ_CHECK(used == len && plain.len == 0);
		if (st == TLS_SERVER_HANDSHAKE)
			FUZZ_CHECK(plain.len == 0 && used == len);
		if (st == TLS_SERVER_FAILED)
			FUZZ_CHECK(tls_server_reason(t)[0] != '\0');
		const struct tls_sni *sni = tls_server_sni(t);
		if (sni) {
			/* the name as kept for the log: printable, bounded */
			FUZZ_CHECK(sni->status < TLS_SNI_STATUS_MAX);
			size_t nl = strnlen(sni->name, sizeof(sni->name));
			FUZZ_CHECK(nl < sizeof(sni->name));
			for (size_t i = 0; i < nl; i++)
				FUZZ_CHECK(sni->name[i] >= '!' && sni->name[i] <= '~');
			if (sni->status == TLS_SNI_MATCHED)
				FUZZ_CHECK(mx_tls_conf_sni_find(&fuzz_conf, sni->name) == 0);
		}
		if (used < len)
			FUZZ_CHECK(st == TLS_SERVER_OPEN && plain.len > 0);
		off += used ? used : len; /* a stalled engine: what it would have kept, dropped */
		/* the engine takes some, all or none, and answers */
		eng = eng * 33u + 7u;
		if (plain.len && (eng & 3)) {
			volatile char sink = 0;
			size_t take = (eng & 1) ? plain.len : 1 + eng % plain.len;
			for (size_t i = 0; i < take; i++)
				sink ^= plain.ptr[i];
			(void)sink;
			tls_server_plain_done(t, take);
		}
		if (eng & 8)
			tls_server_write(t, "250 2.0.0 Ok\r\n", 14);
		struct mx_span out = tls_server_output(t);
		FUZZ_CHECK(out.len <= (1u << 20));
		if (out.len && (eng & 16))
			tls_server_output_done(t, out.len);
		FUZZ_CHECK(tls_server_memory(t) <= 4096 + TLS_SERVER_PLAIN_MAX + (1u << 20));
	}
	tls_server_shutdown(t);
	tls_server_free(t);
	return 0;
}
