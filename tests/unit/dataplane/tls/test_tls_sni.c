/* tls_server_sni_maps (mgmt/tls_conf.c, dataplane/tls/tls_ctx.c): names a client sends in
 * SNI choose the certificate. Three certificates made here (the default one and two
 * named ones, RSA 2048 and ECDSA P-256); handshakes with an OpenSSL client in memory that
 * sends a name (or none) and reads the subject of the certificate it got: two names, a
 * parent-domain entry (".example"), an unknown name and an invalid one get the default;
 * the maps in an inline: table and in a hash: table of the store; the first map wins; the
 * lookup order and host name check alone; and builds that fail with the file and reason
 * (a missing file, a key that does not match, a pattern table, a bad key, a table not
 * built). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dataplane/tls/tls_ctx.h"
#include "dataplane/tls/tls_server.h"
#include "mgmt/config.h"
#include "mgmt/tls_conf.h"
#include "tables/tables_env.h"
#include "testing.h"

/* ---- certificates: chain files holding the key, then the self-signed certificate ---- */

static char dir[256];
static char def_pem[300], a_pem[300], b_pem[300], mismatch_pem[300];

static void make_chain(const char *path, const char *cn, const char *alg, EVP_PKEY *sign_with)
{
	EVP_PKEY *k = strcmp(alg, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
					       : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(k != NULL);
	X509 *x = X509_new();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	/* mismatch: the certificate carries another key than the file's */
	X509_set_pubkey(x, sign_with ? sign_with : k);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
				   0);
	X509_set_issuer_name(x, name);
	CHECK(X509_sign(x, sign_with ? sign_with : k, EVP_sha256()) > 0);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
		CHECK(PEM_write_X509(f, x) == 1);
		fclose(f);
	}
	X509_free(x);
	EVP_PKEY_free(k);
}

static void make_certs(void)
{
	snprintf(dir, sizeof(dir), "%s/snitest.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	snprintf(def_pem, sizeof(def_pem), "%s/default.pem", dir);
	snprintf(a_pem, sizeof(a_pem), "%s/a.pem", dir);
	snprintf(b_pem, sizeof(b_pem), "%s/b.pem", dir);
	snprintf(mismatch_pem, sizeof(mismatch_pem), "%s/mismatch.pem", dir);
	make_chain(def_pem, "default.example", "RSA", NULL);
	make_chain(a_pem, "a.example", "RSA", NULL);
	make_chain(b_pem, "b.example", "EC", NULL);
	EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	make_chain(mismatch_pem, "mismatch.example", "EC", other);
	EVP_PKEY_free(other);
}

static void remove_certs(void)
{
	const char *files[] = { def_pem, a_pem, b_pem, mismatch_pem };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
}

/* A service's TLS settings from main.cf lines; NULL with err. */
static struct mx_tls_conf *conf_from(const char *lines, struct tables_env *env, char *err,
				     size_t errlen)
{
	char text[8192];
	snprintf(text, sizeof(text),
		 "myhostname = mx.test.example\n"
		 "mxgate_table_directory = %s/tables\n"
		 "smtpd_tls_security_level = may\n"
		 "smtpd_tls_chain_files = %s\n%s",
		 dir, def_pem, lines);
	char *diag = NULL;
	size_t dn = 0;
	FILE *f = open_memstream(&diag, &dn);
	struct mx_config *cfg = NULL;
	int rc = mx_config_load_string(text, "t.cf", &cfg, f);
	fclose(f);
	struct mx_tls_conf *t = NULL;
	err[0] = '\0';
	if (rc < 0)
		snprintf(err, errlen, "%s", diag ? diag : "load failed");
	else if (mx_tls_conf_build(cfg, "smtp", env, &t, err, errlen) < 0)
		t = NULL;
	free(diag);
	mx_config_free(cfg);
	return t;
}

/* ---- a client in memory ---- */

/* Handshake with a client that sends `sni` (NULL: none); the subject CN of the
 * certificate it got into cn, the server's SNI record into *status. False when the
 * handshake failed. */
static bool handshake_sni(SSL_CTX *sctx, const char *sni, char *cn, size_t cap,
			  enum tls_sni_status *status)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *client = SSL_new(cctx);
	BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
	SSL_set_bio(client, c_in, c_out);
	SSL_set_connect_state(client);
	if (sni)
		CHECK(SSL_set_tlsext_host_name(client, sni) == 1);
	struct tls_server *server = tls_server_new(sctx);
	CHECK(server != NULL);
	bool ok = false;
	for (int i = 0; i < 50 && server; i++) {
		int r = SSL_do_handshake(client);
		char buf[65536];
		int n;
		while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0) {
			char *heap = malloc((size_t)n);
			memcpy(heap, buf, (size_t)n);
			tls_server_input(server, heap, (size_t)n);
			free(heap);
		}
		struct mx_span out = tls_server_output(server);
		if (out.len) {
			BIO_write(c_in, out.ptr, (int)out.len);
			tls_server_output_done(server, out.len);
		}
		if (r == 1 && tls_server_state(server) == TLS_SERVER_OPEN) {
			ok = true;
			break;
		}
		if (tls_server_failed(server))
			break;
	}
	cn[0] = '\0';
	X509 *peer = SSL_get1_peer_certificate(client);
	if (peer) {
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
					  (int)cap);
		X509_free(peer);
	}
	const struct tls_sni *rec = server ? tls_server_sni(server) : NULL;
	*status = rec ? rec->status : TLS_SNI_NONE;
	tls_server_free(server);
	SSL_free(client);
	SSL_CTX_free(cctx);
	ERR_clear_error();
	return ok;
}

static void expect(SSL_CTX *sctx, const char *sni, const char *want_cn,
		   enum tls_sni_status want_status)
{
	char cn[256];
	enum tls_sni_status st;
	CHECK(handshake_sni(sctx, sni, cn, sizeof(cn), &st));
	CHECK_STR_EQ(cn, want_cn);
	if (st != want_status)
		fprintf(stderr, "  sni %s: status %s, want %s\n", sni ? sni : "(none)",
			tls_sni_status_name(st), tls_sni_status_name(want_status));
	CHECK_INT_EQ(st, want_status);
}

/* The names every map of these tests gives. */
static void expect_names(struct mx_tls_conf *t)
{
	struct tls_worker *w = NULL;
	char err[512];
	CHECK_INT_EQ(tls_worker_new(&w, err, sizeof(err)), 0);
	SSL_CTX *sctx = tls_ctx_new(w, t, err, sizeof(err));
	CHECK(sctx != NULL);
	if (!sctx) {
		tls_worker_free(w);
		return;
	}
	expect(sctx, "a.example", "a.example", TLS_SNI_MATCHED);
	expect(sctx, "A.Example", "a.example", TLS_SNI_MATCHED); /* names fold */
	expect(sctx, "mail.b.example", "b.example", TLS_SNI_MATCHED); /* .b.example */
	expect(sctx, "x.y.b.example", "b.example", TLS_SNI_MATCHED);
	/* .b.example is for subdomains: b.example itself is not in the map */
	expect(sctx, "b.example", "default.example", TLS_SNI_UNMATCHED);
	expect(sctx, "unknown.example", "default.example", TLS_SNI_UNMATCHED);
	expect(sctx, NULL, "default.example", TLS_SNI_NONE);
	/* not a host name: ignored, the default */
	expect(sctx, "-bad.example", "default.example", TLS_SNI_INVALID);
	expect(sctx, "192.0.2.1", "default.example", TLS_SNI_INVALID);
	/* the chain's context made on first use is reused */
	expect(sctx, "a.example", "a.example", TLS_SNI_MATCHED);
	tls_ctx_free(sctx);
	tls_worker_free(w);
}

static void test_inline(void)
{
	char lines[2048], err[1024];
	snprintf(lines, sizeof(lines),
		 "tls_server_sni_maps = inline:{ a.example=%s, .b.example=%s }\n", a_pem,
		 b_pem);
	struct mx_tls_conf *t = conf_from(lines, NULL, err, sizeof(err));
	if (!t)
		fprintf(stderr, "  %s\n", err);
	CHECK(t != NULL);
	if (!t)
		return;
	CHECK(t->sni);
	CHECK_INT_EQ(t->nsni_names, 2);
	CHECK_INT_EQ(t->nsni_chains, 2);
	expect_names(t);
	mx_tls_conf_free(t);
}

static void test_hash(void)
{
	char tdir[300], err[1024], text[2048], lines[1024];
	snprintf(tdir, sizeof(tdir), "%s/tables", dir);
	CHECK(mkdir(tdir, 0700) == 0);
	struct tables_env *env = NULL;
	CHECK_INT_EQ(tables_env_open(tdir, NULL, &env, err, sizeof(err)), 0);
	if (!env)
		return;
	/* the same file for two names: one chain */
	snprintf(text, sizeof(text),
		 "# names and their chains\n"
		 "a.example %s\n"
		 "alias.example %s\n"
		 ".b.example %s\n",
		 a_pem, a_pem, b_pem);
	CHECK_INT_EQ(tables_build(env, "hash:/etc/mxgate/sni", text, strlen(text), NULL, NULL,
				  NULL, err, sizeof(err)),
		     0);
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = hash:/etc/mxgate/sni\n");
	struct mx_tls_conf *t = conf_from(lines, env, err, sizeof(err));
	if (!t)
		fprintf(stderr, "  %s\n", err);
	CHECK(t != NULL);
	if (t) {
		CHECK_INT_EQ(t->nsni_names, 3);
		CHECK_INT_EQ(t->nsni_chains, 2);
		expect_names(t);
		mx_tls_conf_free(t);
	}
	/* the build opens the store itself when it is given none */
	tables_env_close(env);
	t = conf_from(lines, NULL, err, sizeof(err));
	if (!t)
		fprintf(stderr, "  %s\n", err);
	CHECK(t != NULL);
	if (t)
		CHECK_INT_EQ(mx_tls_conf_sni_find(t, "alias.example"),
			     mx_tls_conf_sni_find(t, "a.example"));
	mx_tls_conf_free(t);
	/* a table that was never built fails the build */
	t = conf_from("tls_server_sni_maps = hash:/etc/mxgate/nothing\n", NULL, err,
		      sizeof(err));
	CHECK(t == NULL);
	CHECK(strstr(err, "t.cf:5: tls_server_sni_maps: hash:/etc/mxgate/nothing is not in "
			  "mxgate_table_directory") != NULL);
	mx_tls_conf_free(t);
	char path[400];
	snprintf(path, sizeof(path), "%s/data.mdb", tdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", tdir);
	unlink(path);
	rmdir(tdir);
}

static void test_first_map_wins(void)
{
	char lines[2048], err[1024];
	snprintf(lines, sizeof(lines),
		 "tls_server_sni_maps = inline:{ a.example=%s },\n"
		 "    inline:{ a.example=%s, .b.example=%s }\n",
		 a_pem, b_pem, b_pem);
	struct mx_tls_conf *t = conf_from(lines, NULL, err, sizeof(err));
	CHECK(t != NULL);
	if (t) {
		int a = mx_tls_conf_sni_find(t, "a.example");
		int b = mx_tls_conf_sni_find(t, "x.b.example");
		CHECK(a >= 0 && b >= 0 && a != b);
		CHECK_STR_EQ(t->sni_chains[a].files, a_pem);
	}
	mx_tls_conf_free(t);
}

static void test_lookup(void)
{
	CHECK(mx_tls_conf_sni_valid("a.example"));
	CHECK(mx_tls_conf_sni_valid("x_y.example"));
	CHECK(mx_tls_conf_sni_valid("example"));
	CHECK(mx_tls_conf_sni_valid("1a.example"));
	CHECK(!mx_tls_conf_sni_valid(""));
	CHECK(!mx_tls_conf_sni_valid("a.example.")); /* a trailing dot */
	CHECK(!mx_tls_conf_sni_valid(".example"));
	CHECK(!mx_tls_conf_sni_valid("a..example"));
	CHECK(!mx_tls_conf_sni_valid("-a.example"));
	CHECK(!mx_tls_conf_sni_valid("a-.example"));
	CHECK(!mx_tls_conf_sni_valid("a b.example"));
	CHECK(!mx_tls_conf_sni_valid("a\x80.example"));
	CHECK(!mx_tls_conf_sni_valid("192.0.2.1")); /* all numeric */
	char label[80], name[300];
	memset(label, 'a', 63);
	label[63] = '\0';
	CHECK(mx_tls_conf_sni_valid(label));
	memset(label, 'a', 64);
	label[64] = '\0';
	CHECK(!mx_tls_conf_sni_valid(label));
	/* 255 bytes in all, not 256 */
	snprintf(name, sizeof(name), "%.63s.%.63s.%.63s.%.63s", label, label, label, label);
	CHECK_INT_EQ(strlen(name), 255);
	CHECK(mx_tls_conf_sni_valid(name));
	snprintf(name, sizeof(name), "%.63s.%.63s.%.63s.%.63sb", label, label, label, label);
	CHECK(!mx_tls_conf_sni_valid(name));

	char lines[2048], err[1024];
	snprintf(lines, sizeof(lines),
		 "tls_server_sni_maps = inline:{ mail.example=%s, .example=%s, "
		 "Upper.Example.Net=%s }\n",
		 a_pem, b_pem, a_pem);
	struct mx_tls_conf *t = conf_from(lines, NULL, err, sizeof(err));
	CHECK(t != NULL);
	if (!t)
		return;
	int a = mx_tls_conf_sni_find(t, "mail.example");
	int b = mx_tls_conf_sni_find(t, "other.example");
	CHECK(a >= 0 && b >= 0 && a != b);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "MAIL.EXAMPLE"), a);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "x.mail.example"), b); /* .example, not mail */
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "upper.example.net"), a);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "example"), -1);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "example.org"), -1);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, "-x.example"), -1);
	CHECK_INT_EQ(mx_tls_conf_sni_find(t, ""), -1);
	mx_tls_conf_free(t);
}

static void expect_fail(const char *lines, const char *want1, const char *want2)
{
	char err[1024];
	struct mx_tls_conf *t = conf_from(lines, NULL, err, sizeof(err));
	CHECK(t == NULL);
	if (!strstr(err, want1) || (want2 && !strstr(err, want2)))
		fprintf(stderr, "  got: %s\n  want: %s ... %s\n", err, want1, want2 ? want2 : "");
	CHECK(strstr(err, want1) != NULL);
	CHECK(!want2 || strstr(err, want2) != NULL);
	mx_tls_conf_free(t);
}

static void test_failures(void)
{
	char lines[2048], missing[400];
	snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = inline:{ a.example=%s }\n",
		 missing);
	expect_fail(lines, "t.cf:5: tls_server_sni_maps (a.example): ", "missing.pem: No such file");
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = inline:{ m.example=%s }\n",
		 mismatch_pem);
	expect_fail(lines, "tls_server_sni_maps (m.example): ", "do not go together");
	expect_fail("tls_server_sni_maps = cidr:/etc/x.cidr\n",
		    "tls_server_sni_maps: cidr:/etc/x.cidr: only hash:, lmdb: and inline:", NULL);
	expect_fail("tls_server_sni_maps = static:/etc/x.pem\n", "only hash:", NULL);
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = inline:{ bad!name.example=%s }\n",
		 a_pem);
	expect_fail(lines, "is not a host name or .domain", NULL);
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = inline:{ ..example=%s }\n",
		 a_pem);
	expect_fail(lines, "\"..example\" is not a host name", NULL);
	expect_fail("tls_server_sni_maps = inline:{ a.example= }\n", "", NULL);
	expect_fail("tls_server_sni_maps = nosuch:/x\n", "tls_server_sni_maps: nosuch:/x", NULL);
	/* a file without a certificate after its key */
	char keyonly[400];
	snprintf(keyonly, sizeof(keyonly), "%s/keyonly.pem", dir);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	FILE *f = fopen(keyonly, "w");
	CHECK(f && k && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
	if (f)
		fclose(f);
	EVP_PKEY_free(k);
	snprintf(lines, sizeof(lines), "tls_server_sni_maps = inline:{ k.example=%s }\n",
		 keyonly);
	expect_fail(lines, "tls_server_sni_maps (k.example)", "no certificate in the file");
	unlink(keyonly);
}

int main(void)
{
	make_certs();
	RUN_TEST(test_lookup);
	RUN_TEST(test_inline);
	RUN_TEST(test_hash);
	RUN_TEST(test_first_map_wins);
	RUN_TEST(test_failures);
	remove_certs();
	rmdir(dir);
	return TEST_RESULT();
}
