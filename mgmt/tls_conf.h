/* A service's TLS settings, read once from its parameters when a generation is built
 * (Postfix's names and meanings, postconf(5)): the security level, the certificates and
 * keys (loaded into memory and checked here, so a reload with a key that does not load or
 * does not match fails with the file and the reason, and `mxgate --check` says so), the
 * protocols and ciphers, and what the log and Received: say.
 *
 *   smtpd_tls_security_level  none | may | encrypt; empty: the old smtpd_use_tls and
 *                             smtpd_enforce_tls decide (Postfix's order)
 *   smtpd_tls_wrappermode     TLS from the first byte (port 465): implies encrypt
 *   smtpd_tls_cert_file / key_file, smtpd_tls_eccert_file / eckey_file,
 *   smtpd_tls_chain_files     (when set, the others are not read, as Postfix)
 *   smtpd_tls_[mandatory_]protocols, smtpd_tls_[mandatory_]ciphers,
 *   smtpd_tls_[mandatory_]exclude_ciphers, tls_preempt_cipherlist: the mandatory ones
 *                             apply at the encrypt level (and in wrappermode)
 *   smtpd_tls_session_cache_timeout  ticket lifetime; 0 turns resumption off
 *   smtpd_starttls_timeout, smtpd_tls_loglevel, smtpd_tls_received_header
 *   smtpd_tls_ask_ccert, smtpd_tls_CAfile, smtpd_tls_ccert_verifydepth,
 *   smtpd_tls_fingerprint_digest: client certificates, asked for and verified (any
 *                             certificate is accepted; whether it is trusted is
 *                             recorded for the restrictions)
 *   tls_server_sni_maps       names a client sends in SNI to key and chain files (the
 *                             syntax of smtpd_tls_chain_files); every entry of the maps
 *                             is read, and its files loaded and checked, when the
 *                             generation is built, so a worker only looks names up in
 *                             memory (a change of the maps or the files needs a reload)
 *
 * The parsed material is immutable and shared by every worker; each worker makes its own
 * SSL_CTX from it in its own OSSL_LIB_CTX (mx_tls_conf_ssl_ctx()). */
#ifndef MXGATE_MGMT_TLS_CONF_H
#define MXGATE_MGMT_TLS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "mgmt/config.h"

enum mx_tls_level {
	MX_TLS_LEVEL_NONE,    /* no STARTTLS */
	MX_TLS_LEVEL_MAY,     /* STARTTLS offered, plaintext allowed */
	MX_TLS_LEVEL_ENCRYPT, /* STARTTLS required before MAIL (530), or wrappermode */
	MX_TLS_LEVEL_MAX,
};

const char *mx_tls_level_name(enum mx_tls_level l);

/* One private key with its certificate chain (leaf first), as DER. */
#define MX_TLS_CHAIN_MAX 16
#define MX_TLS_CREDS_MAX 4
struct mx_tls_der {
	unsigned char *p;
	size_t len;
};

struct mx_tls_cred {
	struct mx_tls_der key;
	struct mx_tls_der certs[MX_TLS_CHAIN_MAX];
	unsigned ncerts;
	char source[256]; /* the file(s) it came from, for messages */
};

/* tls_server_sni_maps: the distinct values of the maps (each a list of chain files, read
 * as smtpd_tls_chain_files), and every name, sorted, with the value it maps to. */
#define MX_TLS_SNI_NAMES_MAX 65536u
#define MX_TLS_SNI_CHAINS_MAX 1024u
struct mx_tls_sni_chain {
	struct mx_tls_cred creds[MX_TLS_CREDS_MAX];
	unsigned ncreds;
	char *files; /* the value in the map, for messages */
};

struct mx_tls_sni_name {
	char *name;     /* lower case: "mail.example.com", or ".example.com" for subdomains */
	unsigned chain; /* index into sni_chains */
};

struct mx_tls_conf {
	enum mx_tls_level level;
	bool wrappermode;
	bool received_header;
	unsigned loglevel;              /* smtpd_tls_loglevel 0..4 */
	unsigned starttls_timeout_s;    /* smtpd_starttls_timeout */
	unsigned session_timeout_s;     /* smtpd_tls_session_cache_timeout; 0: no resumption */
	bool preempt;                   /* tls_preempt_cipherlist */
	int min_version, max_version;   /* TLS1_VERSION ...; 0: the library's bound */
	uint64_t version_off;           /* SSL_OP_NO_* for holes in the protocol list */
	char ciphers[1024];             /* the OpenSSL cipher list of the grade, exclusions */
	char session_context[64];       /* SSL session id context: the service's name */
	bool ask_ccert;                 /* smtpd_tls_ask_ccert (or req_ccert) */
	bool req_ccert;                 /* smtpd_tls_req_ccert (at the encrypt level) */
	unsigned ccert_verifydepth;     /* smtpd_tls_ccert_verifydepth */
	char fingerprint_digest[16];    /* smtpd_tls_fingerprint_digest: "sha256" */
	char *ca_pem;                   /* smtpd_tls_CAfile's contents (NUL-terminated) */
	size_t ca_len;
	struct mx_tls_cred creds[MX_TLS_CREDS_MAX];
	unsigned ncreds;
	bool sni;                       /* tls_server_sni_maps is set: SNI is looked at */
	struct mx_tls_sni_chain *sni_chains;
	unsigned nsni_chains;
	struct mx_tls_sni_name *sni_names; /* sorted by name (strcmp) */
	unsigned nsni_names;
};

struct tables_env;

/* Read a service's TLS parameters from cfg. *out is NULL when the level is none and the
 * service is not in wrappermode (no TLS at all); else the settings, with every key and
 * certificate loaded and checked by building a context once. tables: the gateway's table
 * store, where tls_server_sni_maps' hash: and lmdb: tables are read (NULL: the build
 * opens mxgate_table_directory itself, read-only, when the maps name such a table; never
 * while the gateway has it open: LMDB forbids two opens of one store in a process).
 * Returns 0, or a negative errno with err ("FILE:LINE: smtpd_tls_cert_file /etc/x.pem:
 * ...: no such file"). */
int mx_tls_conf_build(const struct mx_config *cfg, const char *service,
		      struct tables_env *tables, struct mx_tls_conf **out, char *err,
		      size_t errlen);
void mx_tls_conf_free(struct mx_tls_conf *t);

/* A server SSL_CTX with t's settings in library context lib (NULL: the default one).
 * Returns NULL with err on failure. The caller adds session-ticket keys. */
SSL_CTX *mx_tls_conf_ssl_ctx(const struct mx_tls_conf *t, OSSL_LIB_CTX *lib, char *err,
			     size_t errlen);

/* The same for the SNI chain `chain` (an index into t->sni_chains): t's settings with that
 * chain's keys and certificates instead of the default ones. */
SSL_CTX *mx_tls_conf_sni_ssl_ctx(const struct mx_tls_conf *t, unsigned chain,
				 OSSL_LIB_CTX *lib, char *err, size_t errlen);

/* Whether name (from a client's SNI) is a host name by Postfix's valid_hostname(): labels
 * of letters, digits, '-' (not first or last) and '_', up to 63 bytes, up to 255 in all,
 * not all numeric. */
bool mx_tls_conf_sni_valid(const char *name);

/* The SNI chain for name, as Postfix's tls_server_sni_maps lookup: the name itself, then
 * each parent domain with a leading dot ("mail.example.com", ".example.com", ".com"),
 * case-insensitively. Returns the chain's index, or -1 when nothing matches (the default
 * certificate) or name is not a valid host name. */
int mx_tls_conf_sni_find(const struct mx_tls_conf *t, const char *name);

/* Postfix's protocol list ("!SSLv2, !SSLv3", ">=TLSv1.2", "TLSv1.2 TLSv1.3"): the lowest
 * and highest version left and the holes between. 0, or -EINVAL with err. */
int mx_tls_conf_protocols(const char *list, int *min_version, int *max_version,
			  uint64_t *off, char *err, size_t errlen);

/* Postfix's cipher grade (high, medium, low, export, null) with exclusions (words of
 * exclude, each "!word"), as an OpenSSL cipher list in buf. 0, or -EINVAL with err. */
int mx_tls_conf_ciphers(const char *grade, const char *exclude, char *buf, size_t cap,
			char *err, size_t errlen);

#endif
