/* A service's TLS settings (mgmt/tls_conf.h): Postfix's smtpd_tls_* parameters as
 * postconf(5) describes them, the keys and certificates read once per generation. */
#include "mgmt/tls_conf.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "mxgate/ctype.h"
#include "mxgate/errf.h"
#include "mxgate/list.h"
#include "tables/tables_env.h"

#define MX_TLS_FILE_MAX (1u << 20) /* a PEM file larger than this is not a key or a chain */

const char *mx_tls_level_name(enum mx_tls_level l)
{
	static const char *const names[MX_TLS_LEVEL_MAX] = { "none", "may", "encrypt" };
	return l < MX_TLS_LEVEL_MAX ? names[l] : "?";
}

/* The latest OpenSSL error as text ("error:0A00018F:SSL routines::ee key too small"),
 * and the queue emptied. */
static const char *mx_tls_conf_ossl_error(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, cap);
	else
		snprintf(buf, cap, "unknown error");
	ERR_clear_error();
	return buf;
}

/* ---- protocols and ciphers ---- */

/* The versions Postfix names, lowest first. SSLv2 is known and never offered. */
static const struct {
	const char *name;
	int version;
	uint64_t off;
} mx_tls_conf_versions[] = {
	{ "SSLv3", SSL3_VERSION, SSL_OP_NO_SSLv3 },
	{ "TLSv1", TLS1_VERSION, SSL_OP_NO_TLSv1 },
	{ "TLSv1.1", TLS1_1_VERSION, SSL_OP_NO_TLSv1_1 },
	{ "TLSv1.2", TLS1_2_VERSION, SSL_OP_NO_TLSv1_2 },
	{ "TLSv1.3", TLS1_3_VERSION, SSL_OP_NO_TLSv1_3 },
};
#define MX_TLS_NVERSIONS (sizeof(mx_tls_conf_versions) / sizeof(mx_tls_conf_versions[0]))

static int mx_tls_conf_version_index(const char *p, size_t n)
{
	for (size_t i = 0; i < MX_TLS_NVERSIONS; i++)
		if (strlen(mx_tls_conf_versions[i].name) == n &&
		    strncasecmp(mx_tls_conf_versions[i].name, p, n) == 0)
			return (int)i;
	if (n == 5 && strncasecmp(p, "SSLv2", 5) == 0)
		return -2; /* known, never offered */
	return -1;
}

int mx_tls_conf_protocols(const char *list, int *min_version, int *max_version,
			  uint64_t *off, char *err, size_t errlen)
{
	/* postconf(5) smtpd_tls_protocols: ">=TLSv1", "<=TLSv1.3" bounds (Postfix 3.6), or
	 * names to exclude ("!SSLv3"), or (the oldest form) names to include */
	bool on[MX_TLS_NVERSIONS], any_plain = false, plain[MX_TLS_NVERSIONS] = { false };
	for (size_t i = 0; i < MX_TLS_NVERSIONS; i++)
		/* OpenSSL 3 has no SSLv3 */
		on[i] = mx_tls_conf_versions[i].version >= TLS1_VERSION;
	const char *p = list;
	while (*p) {
		size_t skip = strspn(p, " \t\r\n,:");
		p += skip;
		size_t n = strcspn(p, " \t\r\n,:");
		if (n == 0)
			break;
		const char *w = p;
		size_t wn = n;
		int op = 0; /* 0 include, '!' exclude, '>' at least, '<' at most */
		if (w[0] == '!') {
			op = '!';
			w++, wn--;
		} else if (wn >= 2 && (w[0] == '>' || w[0] == '<') && w[1] == '=') {
			op = w[0];
			w += 2, wn -= 2;
		}
		int k = mx_tls_conf_version_index(w, wn);
		if (k == -1)
			return mx_errf(err, errlen, -EINVAL, "unknown TLS protocol \"%.*s\"",
				       (int)n, p);
		p += n;
		if (k == -2) {
			if (op == '<')
				return mx_errf(err, errlen, -EINVAL, "no TLS protocol at or below "
								     "SSLv2 can be offered");
			continue; /* SSLv2 is never offered */
		}
		for (size_t i = 0; i < MX_TLS_NVERSIONS; i++) {
			if (op == '!' && i == (size_t)k)
				on[i] = false;
			else if (op == '>' && i < (size_t)k)
				on[i] = false;
			else if (op == '<' && i > (size_t)k)
				on[i] = false;
		}
		if (op == 0)
			plain[k] = any_plain = true;
	}
	if (any_plain)
		for (size_t i = 0; i < MX_TLS_NVERSIONS; i++)
			on[i] = on[i] && plain[i];
	int lo = -1, hi = -1;
	uint64_t holes = 0;
	for (size_t i = 0; i < MX_TLS_NVERSIONS; i++) {
		if (!on[i])
			continue;
		if (lo < 0)
			lo = (int)i;
		hi = (int)i;
	}
	if (lo < 0)
		return mx_errf(err, errlen, -EINVAL, "\"%s\" leaves no TLS protocol enabled", list);
	for (int i = lo; i <= hi; i++)
		if (!on[i])
			holes |= mx_tls_conf_versions[i].off;
	*min_version = mx_tls_conf_versions[lo].version;
	*max_version = mx_tls_conf_versions[hi].version;
	*off = holes;
	return 0;
}

int mx_tls_conf_ciphers(const char *grade, const char *exclude, char *buf, size_t cap,
			char *err, size_t errlen)
{
	/* Postfix's tls_{high,medium,low,export,null}_cipherlist defaults (postconf -d);
	 * config_refused.c refuses other values of those parameters. */
	static const struct {
		const char *grade, *list;
	} grades[] = {
		{ "high", "aNULL:-aNULL:HIGH:@STRENGTH" },
		{ "medium", "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH" },
		{ "low", "aNULL:-aNULL:HIGH:MEDIUM:LOW:+RC4:@STRENGTH" },
		{ "export", "aNULL:-aNULL:HIGH:MEDIUM:LOW:EXPORT:+RC4:@STRENGTH" },
		{ "null", "eNULL:!aNULL" },
	};
	const char *base = NULL;
	for (size_t i = 0; i < sizeof(grades) / sizeof(grades[0]); i++)
		if (strcasecmp(grade, grades[i].grade) == 0)
			base = grades[i].list;
	if (!base)
		return mx_errf(err, errlen, -EINVAL, "unknown cipher grade \"%s\" (expected one "
						     "of: high medium low export null)", grade);
	size_t len = (size_t)snprintf(buf, cap, "%s", base);
	const char *p = exclude ? exclude : "";
	while (*p) {
		p += strspn(p, " \t\r\n,:");
		size_t n = strcspn(p, " \t\r\n,:");
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++)
			if (!(p[i] == '-' || p[i] == '+' || p[i] == '_' || p[i] == '.' ||
			      (p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'Z') ||
			      (p[i] >= 'a' && p[i] <= 'z')))
				return mx_errf(err, errlen, -EINVAL, "bad cipher exclusion \"%.*s\"",
					       (int)n, p);
		if (len < cap)
			len += (size_t)snprintf(buf + len, cap - len, ":!%.*s", (int)n, p);
		p += n;
	}
	if (len >= cap)
		return mx_errf(err, errlen, -EINVAL, "cipher exclusion list too long");
	return 0;
}

/* ---- keys and certificates ---- */

static void mx_tls_conf_cred_free(struct mx_tls_cred *c)
{
	if (c->key.p)
		OPENSSL_cleanse(c->key.p, c->key.len); /* a private key does not linger */
	free(c->key.p);
	for (unsigned i = 0; i < c->ncerts; i++)
		free(c->certs[i].p);
	memset(c, 0, sizeof(*c));
}

void mx_tls_conf_free(struct mx_tls_conf *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->ncreds; i++)
		mx_tls_conf_cred_free(&t->creds[i]);
	for (unsigned i = 0; i < t->nsni_chains; i++) {
		for (unsigned j = 0; j < t->sni_chains[i].ncreds; j++)
			mx_tls_conf_cred_free(&t->sni_chains[i].creds[j]);
		free(t->sni_chains[i].files);
	}
	free(t->sni_chains);
	for (unsigned i = 0; i < t->nsni_names; i++)
		free(t->sni_names[i].name);
	free(t->sni_names);
	free(t->ca_pem);
	free(t);
}

/* Where a parameter's value came from, for messages: "FILE:LINE: " or "". */
static void mx_tls_conf_where(const struct mx_config *cfg, const char *param, char *buf,
			   size_t cap)
{
	unsigned line = 0;
	const char *file = mx_config_source(cfg, param, &line);
	if (file && line)
		snprintf(buf, cap, "%s:%u: ", file, line);
	else
		buf[0] = '\0';
}

static int mx_tls_conf_der_dup(struct mx_tls_der *d, const unsigned char *p, long len)
{
	if (len <= 0 || !(d->p = malloc((size_t)len)))
		return -ENOMEM;
	memcpy(d->p, p, (size_t)len);
	d->len = (size_t)len;
	return 0;
}

enum mx_tls_conf_pem_want {
	MX_TLS_PEM_KEY = 1,
	MX_TLS_PEM_CERTS = 2,
	MX_TLS_PEM_GROUPS = 4, /* smtpd_tls_chain_files: each key starts a new credential */
};

/* Read the PEM objects of `path` into creds[*ncreds] (up to MX_TLS_CREDS_MAX): private keys
 * and certificates as `want` says. cur: the credential being filled (its index), updated
 * when a key starts a new one. 0, or a negative errno with err. */
static int mx_tls_conf_read_pem(struct mx_tls_cred *creds, unsigned *ncreds, const char *where,
				const char *param, const char *path, unsigned want, int *cur,
				char *err, size_t errlen)
{
	char why[256];
	FILE *f = fopen(path, "r");
	if (!f)
		return mx_errf(err, errlen, -errno, "%s%s: %s: %s", where, param, path,
			       strerror(errno));
	BIO *bio = BIO_new_fp(f, BIO_CLOSE);
	if (!bio) {
		fclose(f);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	int rc = 0, nkeys = 0, ncerts = 0;
	size_t total = 0;
	for (;;) {
		char *name = NULL, *header = NULL;
		unsigned char *data = NULL;
		long len = 0;
		if (!PEM_read_bio(bio, &name, &header, &data, &len)) {
			unsigned long e = ERR_peek_last_error();
			if (ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
				ERR_clear_error(); /* the end of the file */
			else
				rc = mx_errf(err, errlen, -EINVAL, "%s%s: %s: %s", where, param, path,
					     mx_tls_conf_ossl_error(why, sizeof(why)));
			break;
		}
		total += (size_t)len;
		bool is_key = strcmp(name, "PRIVATE KEY") == 0 ||
			      strcmp(name, "RSA PRIVATE KEY") == 0 ||
			      strcmp(name, "EC PRIVATE KEY") == 0;
		bool is_cert = strcmp(name, "CERTIFICATE") == 0 ||
			       strcmp(name, "TRUSTED CERTIFICATE") == 0;
		if (strcmp(name, "ENCRYPTED PRIVATE KEY") == 0 ||
		    (header && strstr(header, "ENCRYPTED")))
			rc = mx_errf(err, errlen, -EINVAL, "%s%s: %s: the private key is encrypted "
							   "(a gateway cannot ask for its "
							   "passphrase)", where, param, path);
		else if (total > MX_TLS_FILE_MAX)
			rc = mx_errf(err, errlen, -EFBIG, "%s%s: %s: larger than %u bytes", where,
				     param, path, MX_TLS_FILE_MAX);
		else if (is_key && (want & MX_TLS_PEM_KEY)) {
			if ((want & MX_TLS_PEM_GROUPS) || *cur < 0) {
				if (*ncreds == MX_TLS_CREDS_MAX)
					rc = mx_errf(err, errlen, -E2BIG, "%s%s: more than %d keys",
						     where, param, MX_TLS_CREDS_MAX);
				else
					*cur = (int)(*ncreds)++;
			}
			if (rc == 0) {
				struct mx_tls_cred *c = &creds[*cur];
				if (c->key.p && !(want & MX_TLS_PEM_GROUPS)) {
					nkeys++; /* the first key of a key file counts */
				} else if (mx_tls_conf_der_dup(&c->key, data, len) < 0) {
					rc = -ENOMEM;
				} else {
					nkeys++;
				}
			}
		} else if (is_cert && (want & MX_TLS_PEM_CERTS)) {
			if (*cur < 0) {
				rc = mx_errf(err, errlen, -EINVAL, "%s%s: %s: a certificate before "
								   "its private key", where, param, path);
			} else {
				struct mx_tls_cred *c = &creds[*cur];
				if (c->ncerts == MX_TLS_CHAIN_MAX)
					rc = mx_errf(err, errlen, -E2BIG, "%s%s: %s: a chain longer "
									  "than %d certificates",
						     where, param, path, MX_TLS_CHAIN_MAX);
				else if (mx_tls_conf_der_dup(&c->certs[c->ncerts], data, len) < 0)
					rc = -ENOMEM;
				else
					c->ncerts++, ncerts++;
			}
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		if (rc < 0)
			break;
	}
	BIO_free(bio);
	if (rc == -ENOMEM)
		return mx_errf(err, errlen, rc, "out of memory");
	if (rc < 0)
		return rc;
	if ((want & MX_TLS_PEM_KEY) && nkeys == 0)
		return mx_errf(err, errlen, -EINVAL, "%s%s: %s: no private key in the file", where,
			       param, path);
	if ((want & MX_TLS_PEM_CERTS) && ncerts == 0)
		return mx_errf(err, errlen, -EINVAL, "%s%s: %s: no certificate in the file", where,
			       param, path);
	return 0;
}

/* A list of chain files (smtpd_tls_chain_files' syntax: names separated by commas or
 * white space; each file holds private keys, each followed by its chain) into creds. */
static int mx_tls_conf_chain_files(struct mx_tls_cred *creds, unsigned *ncreds,
				   const char *where, const char *param, const char *list,
				   char *err, size_t errlen)
{
	for (const char *p = list; *p;) {
		p += strspn(p, " \t\r\n,");
		size_t n = strcspn(p, " \t\r\n,");
		if (n == 0)
			break;
		char path[1024];
		if (n >= sizeof(path))
			return mx_errf(err, errlen, -ENAMETOOLONG, "%s%s: %.64s...: file name too "
								   "long", where, param, p);
		snprintf(path, sizeof(path), "%.*s", (int)n, p);
		p += n;
		int cur = -1;
		unsigned first = *ncreds;
		int rc = mx_tls_conf_read_pem(creds, ncreds, where, param, path,
					      MX_TLS_PEM_KEY | MX_TLS_PEM_CERTS | MX_TLS_PEM_GROUPS,
					      &cur, err, errlen);
		if (rc < 0)
			return rc;
		for (unsigned i = first; i < *ncreds; i++)
			snprintf(creds[i].source, sizeof(creds[i].source), "%.*s",
				 (int)sizeof(creds[i].source) - 1, path);
	}
	return 0;
}

/* The certificates of t->ca_pem into store (when not NULL) and their subjects into names
 * (when not NULL). Returns how many, or -1 when the text does not parse. */
static int mx_tls_conf_ca_store(const struct mx_tls_conf *t, OSSL_LIB_CTX *lib,
				X509_STORE *store, STACK_OF(X509_NAME) *names)
{
	BIO *bio = BIO_new_mem_buf(t->ca_pem, (int)t->ca_len);
	if (!bio)
		return -1;
	STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, NULL, lib, NULL);
	BIO_free(bio);
	if (!infos)
		return -1;
	int n = 0;
	for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *xi = sk_X509_INFO_value(infos, i);
		if (!xi->x509)
			continue;
		n++;
		if (store)
			X509_STORE_add_cert(store, xi->x509);
		if (names) {
			X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(xi->x509));
			if (nm && !sk_X509_NAME_push(names, nm))
				X509_NAME_free(nm);
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	return n;
}

/* smtpd_tls_CAfile: kept as text (a bundle of up to MX_TLS_FILE_MAX bytes), parsed here
 * once to check it and again by each worker's context. */
static int mx_tls_conf_read_ca(struct mx_tls_conf *t, const char *path, const char *where,
			       char *err, size_t errlen)
{
	char why[256];
	FILE *f = fopen(path, "r");
	if (!f)
		return mx_errf(err, errlen, -errno, "%ssmtpd_tls_CAfile: %s: %s", where, path,
			       strerror(errno));
	char *buf = malloc(MX_TLS_FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, MX_TLS_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (!buf)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	if (n > MX_TLS_FILE_MAX) {
		free(buf);
		return mx_errf(err, errlen, -EFBIG, "%ssmtpd_tls_CAfile: %s: larger than %u bytes",
			       where, path, MX_TLS_FILE_MAX);
	}
	buf[n] = '\0';
	t->ca_pem = buf;
	t->ca_len = n;
	int ncerts = mx_tls_conf_ca_store(t, NULL, NULL, NULL);
	if (ncerts <= 0)
		return mx_errf(err, errlen, -EINVAL, "%ssmtpd_tls_CAfile: %s: no certificate in "
						     "the file%s%s",
			       where, path, ncerts < 0 ? ": " : "",
			       ncerts < 0 ? mx_tls_conf_ossl_error(why, sizeof(why)) : "");
	ERR_clear_error();
	return 0;
}

/* A key and certificate pair of parameters (smtpd_tls_cert_file and _key_file, or the
 * ec ones): the certificates of the one, the key of the other (often the same file). */
static int mx_tls_conf_pair(struct mx_tls_conf *t, const struct mx_config *cfg,
			 const char *cert_param, const char *key_param, char *err, size_t errlen)
{
	const char *cert = mx_config_get(cfg, cert_param);
	const char *key = mx_config_get(cfg, key_param);
	char where[300];
	if (!cert || !*cert)
		return 0;
	if (!key || !*key)
		key = cert;
	int cur = -1, rc;
	/* the key file by default is the certificate file: then its line is that one's */
	const char *kp = key_param;
	mx_tls_conf_where(cfg, key_param, where, sizeof(where));
	if (!where[0]) {
		kp = cert_param;
		mx_tls_conf_where(cfg, cert_param, where, sizeof(where));
	}
	if ((rc = mx_tls_conf_read_pem(t->creds, &t->ncreds, where, kp, key, MX_TLS_PEM_KEY, &cur,
				       err, errlen)) < 0)
		return rc;
	mx_tls_conf_where(cfg, cert_param, where, sizeof(where));
	if ((rc = mx_tls_conf_read_pem(t->creds, &t->ncreds, where, cert_param, cert,
				       MX_TLS_PEM_CERTS, &cur, err, errlen)) < 0)
		return rc;
	snprintf(t->creds[cur].source, sizeof(t->creds[cur].source), "%s%s%s", cert,
		 strcmp(cert, key) ? " and " : "", strcmp(cert, key) ? key : "");
	return 0;
}

static unsigned mx_tls_conf_uint(const struct mx_config *cfg, const char *name, unsigned def)
{
	const char *v = mx_config_get(cfg, name);
	if (!v || !*v)
		return def;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	/* the registry checked the syntax (time units included); seconds */
	unsigned long mul = 1;
	switch (*end) {
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	case 'w': mul = 604800; break;
	default: break;
	}
	n *= mul;
	return n > 0xffffffffu ? 0xffffffffu : (unsigned)n;
}

static bool mx_tls_conf_bool(const struct mx_config *cfg, const char *name)
{
	const char *v = mx_config_get(cfg, name);
	return v && strcasecmp(v, "yes") == 0;
}

/* ---- tls_server_sni_maps ---- */

bool mx_tls_conf_sni_valid(const char *name)
{
	/* Postfix's valid_hostname() (util/valid_hostname.c), without its wildcard form */
	size_t label = 0, total = 0;
	bool non_numeric = false;
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++, total++) {
		unsigned char ch = (unsigned char)*p;
		if (total >= 255)
			return false;
		if (mx_ctype_is_alnum(ch) || ch == '_') {
			if (++label > 63)
				return false;
			if (!mx_ctype_is_digit(ch))
				non_numeric = true;
		} else if (ch == '.') {
			if (label == 0 || p[1] == '\0')
				return false;
			label = 0;
		} else if (ch == '-') {
			non_numeric = true;
			if (++label == 1 || p[1] == '\0' || p[1] == '.')
				return false;
		} else {
			return false;
		}
	}
	return non_numeric;
}

static int mx_tls_conf_sni_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mx_tls_sni_name *)a)->name,
		      ((const struct mx_tls_sni_name *)b)->name);
}

static int mx_tls_conf_sni_index(const struct mx_tls_conf *t, const char *key)
{
	struct mx_tls_sni_name k = { .name = (char *)key };
	const struct mx_tls_sni_name *n = bsearch(&k, t->sni_names, t->nsni_names,
						  sizeof(*t->sni_names), mx_tls_conf_sni_cmp);
	return n ? (int)n->chain : -1;
}

int mx_tls_conf_sni_find(const struct mx_tls_conf *t, const char *name)
{
	if (!t->nsni_names || !mx_tls_conf_sni_valid(name))
		return -1;
	char key[256]; /* a valid name has at most 255 bytes */
	size_t n = strlen(name);
	for (size_t i = 0; i <= n; i++)
		key[i] = mx_ctype_lower(name[i]);
	/* tls_server_sni_maps (postconf(5)): the name, then each ancestor domain with a
	 * leading dot, as Postfix's tls_cert_cb() walks them */
	for (const char *cp = key; cp; cp = strchr(cp + 1, '.')) {
		int c = mx_tls_conf_sni_index(t, cp);
		if (c >= 0)
			return c;
	}
	return -1;
}

/* An entry read from a map while building: its name, value, and the map's order. */
struct mx_tls_sni_entry {
	char *name, *value;
	unsigned seq; /* first map, first entry wins for a name */
};

struct mx_tls_sni_read {
	struct mx_tls_sni_entry *e;
	unsigned n, cap;
	const char *spec, *where;
	int rc;
	char *err;
	size_t errlen;
};

static int mx_tls_conf_sni_entry(void *ctx, const char *key, const char *value)
{
	struct mx_tls_sni_read *r = ctx;
	char name[256];
	size_t n = strlen(key);
	/* a key is a host name or a parent domain with its leading dot ("postconf(5)") */
	const char *host = key[0] == '.' ? key + 1 : key;
	if (n >= sizeof(name) || !mx_tls_conf_sni_valid(host)) {
		r->rc = mx_errf(r->err, r->errlen, -EINVAL, "%stls_server_sni_maps: %s: key "
							    "\"%.255s\" is not a host name or "
							    ".domain",
				r->where, r->spec, key);
		return 1;
	}
	if (!value || !*value) {
		r->rc = mx_errf(r->err, r->errlen, -EINVAL, "%stls_server_sni_maps: %s: %s: no "
							    "chain files", r->where, r->spec, key);
		return 1;
	}
	if (r->n == MX_TLS_SNI_NAMES_MAX) {
		r->rc = mx_errf(r->err, r->errlen, -E2BIG, "%stls_server_sni_maps: more than %u "
							   "names", r->where, MX_TLS_SNI_NAMES_MAX);
		return 1;
	}
	if (r->n == r->cap) {
		unsigned cap = r->cap ? 2 * r->cap : 16;
		struct mx_tls_sni_entry *e = realloc(r->e, cap * sizeof(*e));
		if (!e) {
			r->rc = mx_errf(r->err, r->errlen, -ENOMEM, "out of memory");
			return 1;
		}
		r->e = e, r->cap = cap;
	}
	for (size_t i = 0; i <= n; i++)
		name[i] = mx_ctype_lower(key[i]);
	struct mx_tls_sni_entry *e = &r->e[r->n];
	e->name = strdup(name);
	e->value = strdup(value);
	e->seq = r->n;
	if (!e->name || !e->value) {
		free(e->name);
		free(e->value);
		r->rc = mx_errf(r->err, r->errlen, -ENOMEM, "out of memory");
		return 1;
	}
	r->n++;
	return 0;
}

static int mx_tls_conf_sni_by_name(const void *a, const void *b)
{
	const struct mx_tls_sni_entry *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

static int mx_tls_conf_sni_by_value(const void *a, const void *b)
{
	const struct mx_tls_sni_entry *const *x = a, *const *y = b;
	return strcmp((*x)->value, (*y)->value);
}

/* Read every map of tls_server_sni_maps (hash:/lmdb: from the table store, inline:),
 * load each distinct value's chain files and check them by making a context. */
static int mx_tls_conf_sni_build(struct mx_tls_conf *t, const struct mx_config *cfg,
				 struct tables_env *tables, char *err, size_t errlen)
{
	const char *maps = mx_config_get(cfg, "tls_server_sni_maps");
	if (!maps || !*maps)
		return 0;
	t->sni = true;
	char where[300], spec[4096], why[512];
	mx_tls_conf_where(cfg, "tls_server_sni_maps", where, sizeof(where));
	struct mx_tls_sni_read r = { .where = where, .err = err, .errlen = errlen };
	struct tables_env *own = NULL;
	struct tables_reader *rd = NULL;
	int rc = 0;
	long n;
	const char *p = maps, *word;
	while (rc == 0 && (n = mx_list_next_braced(&p, &word)) != 0) {
		enum table_kind kind;
		const char *tname;
		if (n < 0 || (size_t)n >= sizeof(spec)) {
			rc = mx_errf(err, errlen, -EINVAL, "%stls_server_sni_maps: %s", where,
				     n < 0 ? "unbalanced braces" : "a table name too long");
			break;
		}
		memcpy(spec, word, (size_t)n);
		spec[n] = '\0';
		if ((rc = table_spec_parse(spec, &kind, &tname, why, sizeof(why))) < 0) {
			mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s: %s", where, spec, why);
			break;
		}
		if (kind != TABLE_KIND_HASH && kind != TABLE_KIND_INLINE) {
			/* the whole map is read at the build: a pattern table cannot be listed
			 * as names, and static: would give every name one chain (that is the
			 * default certificate's job) */
			rc = mx_errf(err, errlen, -EINVAL, "%stls_server_sni_maps: %s: only hash:, "
							   "lmdb: and inline: tables can map SNI "
							   "names", where, spec);
			break;
		}
		if (kind == TABLE_KIND_HASH && !rd) {
			struct tables_env_opts o = { .read_only = true };
			if (!tables && (rc = tables_env_open(cfg->table_directory, &o, &own, why,
							     sizeof(why))) < 0) {
				mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s: "
							 "mxgate_table_directory %s: %s",
					where, spec, cfg->table_directory, why);
				break;
			}
			if ((rc = tables_reader_open(tables ? tables : own, &rd)) < 0) {
				mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s: cannot read "
							 "the table store: %s",
					where, spec, strerror(-rc));
				break;
			}
		}
		struct table *tb = NULL;
		if ((rc = table_open(kind == TABLE_KIND_HASH ? rd : NULL, spec, &tb, why,
				     sizeof(why))) < 0) {
			mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s: %s", where, spec, why);
			break;
		}
		r.spec = spec;
		r.rc = 0;
		rc = table_list(tb, mx_tls_conf_sni_entry, &r);
		table_close(tb);
		if (r.rc < 0) {
			rc = r.rc;
		} else if (rc == -ENOENT) {
			mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s is not in "
						 "mxgate_table_directory %s (build it with mxgate-map)",
				where, spec, cfg->table_directory);
		} else if (rc < 0) {
			mx_errf(err, errlen, rc, "%stls_server_sni_maps: %s: %s", where, spec,
				strerror(-rc));
		}
	}
	tables_reader_close(rd);
	tables_env_close(own);
	if (rc < 0)
		goto out;
	/* the names, sorted; a name in an earlier map (or earlier in one) wins, as Postfix
	 * tries the maps in order for each name */
	qsort(r.e, r.n, sizeof(*r.e), mx_tls_conf_sni_by_name);
	unsigned keep = 0;
	for (unsigned i = 0; i < r.n; i++) {
		if (keep && strcmp(r.e[keep - 1].name, r.e[i].name) == 0) {
			free(r.e[i].name);
			free(r.e[i].value);
			continue;
		}
		r.e[keep++] = r.e[i];
	}
	r.n = keep;
	/* one chain per distinct value */
	struct mx_tls_sni_entry **byv = r.n ? malloc(r.n * sizeof(*byv)) : NULL;
	t->sni_names = r.n ? calloc(r.n, sizeof(*t->sni_names)) : NULL;
	t->sni_chains = r.n ? calloc(r.n < MX_TLS_SNI_CHAINS_MAX ? r.n : MX_TLS_SNI_CHAINS_MAX,
				     sizeof(*t->sni_chains))
			    : NULL;
	if (r.n && (!byv || !t->sni_names || !t->sni_chains)) {
		free(byv);
		rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < r.n; i++)
		byv[i] = &r.e[i];
	qsort(byv, r.n, sizeof(*byv), mx_tls_conf_sni_by_value);
	for (unsigned i = 0; i < r.n && rc == 0; i++) {
		struct mx_tls_sni_entry *e = byv[i];
		if (i == 0 || strcmp(byv[i - 1]->value, e->value) != 0) {
			if (t->nsni_chains == MX_TLS_SNI_CHAINS_MAX) {
				rc = mx_errf(err, errlen, -E2BIG, "%stls_server_sni_maps: more than "
								  "%u distinct chain file lists",
					     where, MX_TLS_SNI_CHAINS_MAX);
				break;
			}
			struct mx_tls_sni_chain *c = &t->sni_chains[t->nsni_chains++];
			if (!(c->files = strdup(e->value))) {
				rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
				break;
			}
			char param[TABLE_KEY_MAX + 64];
			snprintf(param, sizeof(param), "tls_server_sni_maps (%s)", e->name);
			rc = mx_tls_conf_chain_files(c->creds, &c->ncreds, where, param, e->value,
						     err, errlen);
			for (unsigned k = 0; rc == 0 && k < c->ncreds; k++)
				if (c->creds[k].ncerts == 0)
					rc = mx_errf(err, errlen, -EINVAL, "%s%s: %s: a private key "
									   "without its certificate",
						     where, param, c->creds[k].source);
			if (rc == 0 && c->ncreds == 0)
				rc = mx_errf(err, errlen, -EINVAL, "%s%s: no chain files", where,
					     param);
			if (rc == 0) {
				/* a key that does not match its certificate shows now */
				SSL_CTX *ctx = mx_tls_conf_sni_ssl_ctx(t, t->nsni_chains - 1, NULL,
								       why, sizeof(why));
				if (!ctx)
					rc = mx_errf(err, errlen, -EINVAL, "%s%s: %s", where, param,
						     why);
				SSL_CTX_free(ctx);
			}
		}
		/* the entries are still in name order in r.e: the index is the same */
		unsigned at = (unsigned)(e - r.e);
		t->sni_names[at].chain = t->nsni_chains - 1;
	}
	free(byv);
	if (rc < 0)
		goto out;
	for (unsigned i = 0; i < r.n; i++) {
		t->sni_names[i].name = r.e[i].name;
		r.e[i].name = NULL;
	}
	t->nsni_names = r.n;
out:
	for (unsigned i = 0; i < r.n; i++) {
		free(r.e[i].name);
		free(r.e[i].value);
	}
	free(r.e);
	return rc;
}

/* Postfix's smtpd.c: an explicit security level wins over smtpd_use_tls and
 * smtpd_enforce_tls; wrappermode implies enforcement. */
static enum mx_tls_level mx_tls_conf_level(const struct mx_config *cfg, bool wrapper)
{
	const char *lv = mx_config_get(cfg, "smtpd_tls_security_level");
	enum mx_tls_level l = MX_TLS_LEVEL_NONE;
	if (lv && *lv) {
		if (strcasecmp(lv, "may") == 0)
			l = MX_TLS_LEVEL_MAY;
		else if (strcasecmp(lv, "encrypt") == 0)
			l = MX_TLS_LEVEL_ENCRYPT;
	} else if (mx_tls_conf_bool(cfg, "smtpd_enforce_tls")) {
		l = MX_TLS_LEVEL_ENCRYPT;
	} else if (mx_tls_conf_bool(cfg, "smtpd_use_tls")) {
		l = MX_TLS_LEVEL_MAY;
	}
	return wrapper ? MX_TLS_LEVEL_ENCRYPT : l;
}

int mx_tls_conf_build(const struct mx_config *cfg, const char *service,
		      struct tables_env *tables, struct mx_tls_conf **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	bool wrapper = mx_tls_conf_bool(cfg, "smtpd_tls_wrappermode");
	enum mx_tls_level level = mx_tls_conf_level(cfg, wrapper);
	if (level == MX_TLS_LEVEL_NONE)
		return 0;
	struct mx_tls_conf *t = calloc(1, sizeof(*t));
	if (!t)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	t->level = level;
	t->wrappermode = wrapper;
	t->received_header = mx_tls_conf_bool(cfg, "smtpd_tls_received_header");
	t->preempt = mx_tls_conf_bool(cfg, "tls_preempt_cipherlist");
	t->loglevel = mx_tls_conf_uint(cfg, "smtpd_tls_loglevel", 0);
	t->starttls_timeout_s = mx_tls_conf_uint(cfg, "smtpd_starttls_timeout", 300);
	t->session_timeout_s = mx_tls_conf_uint(cfg, "smtpd_tls_session_cache_timeout", 3600);
	snprintf(t->session_context, sizeof(t->session_context), "mxgate/%s", service);

	char where[300], why[256];
	int rc;
	/* postconf(5): the mandatory protocols and ciphers apply where TLS is required */
	bool mand = level == MX_TLS_LEVEL_ENCRYPT;
	const char *pp = mand ? "smtpd_tls_mandatory_protocols" : "smtpd_tls_protocols";
	const char *cp = mand ? "smtpd_tls_mandatory_ciphers" : "smtpd_tls_ciphers";
	const char *protocols = mx_config_get(cfg, pp);
	if ((rc = mx_tls_conf_protocols(protocols ? protocols : "", &t->min_version,
					&t->max_version, &t->version_off, why,
					sizeof(why))) < 0) {
		mx_tls_conf_where(cfg, pp, where, sizeof(where));
		mx_errf(err, errlen, rc, "%s%s: %s", where, pp, why);
		goto fail;
	}
	char exclude[2048];
	const char *ex = mx_config_get(cfg, "smtpd_tls_exclude_ciphers");
	const char *mex = mand ? mx_config_get(cfg, "smtpd_tls_mandatory_exclude_ciphers") : "";
	snprintf(exclude, sizeof(exclude), "%s %s", ex ? ex : "", mex ? mex : "");
	const char *grade = mx_config_get(cfg, cp);
	if ((rc = mx_tls_conf_ciphers(grade ? grade : "medium", exclude, t->ciphers,
				      sizeof(t->ciphers), why, sizeof(why))) < 0) {
		mx_tls_conf_where(cfg, cp, where, sizeof(where));
		mx_errf(err, errlen, rc, "%s%s: %s", where, cp, why);
		goto fail;
	}

	const char *chain = mx_config_get(cfg, "smtpd_tls_chain_files");
	if (chain && *chain) {
		/* each file: private keys, each followed by its chain (postconf(5)) */
		mx_tls_conf_where(cfg, "smtpd_tls_chain_files", where, sizeof(where));
		if ((rc = mx_tls_conf_chain_files(t->creds, &t->ncreds, where,
						  "smtpd_tls_chain_files", chain, err, errlen)) < 0)
			goto fail;
	} else {
		if ((rc = mx_tls_conf_pair(t, cfg, "smtpd_tls_cert_file", "smtpd_tls_key_file", err,
					errlen)) < 0 ||
		    (rc = mx_tls_conf_pair(t, cfg, "smtpd_tls_eccert_file", "smtpd_tls_eckey_file",
					err, errlen)) < 0)
			goto fail;
	}
	/* client certificates: the CAs are read now, like the server's own files */
	t->ask_ccert = mx_tls_conf_bool(cfg, "smtpd_tls_ask_ccert");
	t->req_ccert = mx_tls_conf_bool(cfg, "smtpd_tls_req_ccert");
	if (t->req_ccert && level != MX_TLS_LEVEL_ENCRYPT) {
		/* Postfix warns and ignores it; an operator who set it must not believe
		 * clients are checked when they are not */
		mx_tls_conf_where(cfg, "smtpd_tls_req_ccert", where, sizeof(where));
		rc = mx_errf(err, errlen, -EINVAL, "%ssmtpd_tls_req_ccert = yes needs "
						   "smtpd_tls_security_level = encrypt (clients "
						   "could send in plaintext without a certificate)",
			     where);
		goto fail;
	}
	t->ask_ccert = t->ask_ccert || t->req_ccert;
	t->ccert_verifydepth = mx_tls_conf_uint(cfg, "smtpd_tls_ccert_verifydepth", 9);
	const char *dg = mx_config_get(cfg, "smtpd_tls_fingerprint_digest");
	snprintf(t->fingerprint_digest, sizeof(t->fingerprint_digest), "%s",
		 dg && *dg ? dg : "sha256");
	const char *ca = mx_config_get(cfg, "smtpd_tls_CAfile");
	if (t->ask_ccert && ca && *ca) {
		mx_tls_conf_where(cfg, "smtpd_tls_CAfile", where, sizeof(where));
		if ((rc = mx_tls_conf_read_ca(t, ca, where, err, errlen)) < 0)
			goto fail;
	}
	if (t->ncreds == 0) {
		/* Postfix would offer STARTTLS and fail it ("TLS not available due to local
		 * problem"); a configuration that cannot encrypt is an error here. */
		mx_tls_conf_where(cfg, "smtpd_tls_security_level", where, sizeof(where));
		rc = mx_errf(err, errlen, -EINVAL, "%sservice %s: TLS level %s%s needs a "
						   "certificate: set smtpd_tls_cert_file (and "
						   "smtpd_tls_key_file) or smtpd_tls_chain_files",
			     where, service, mx_tls_level_name(level),
			     wrapper ? " (smtpd_tls_wrappermode)" : "");
		goto fail;
	}
	for (unsigned i = 0; i < t->ncreds; i++) {
		if (t->creds[i].ncerts == 0 || !t->creds[i].key.p) {
			rc = mx_errf(err, errlen, -EINVAL, "%s: a private key without its "
							   "certificate", t->creds[i].source);
			goto fail;
		}
	}
	/* Build a context once now: a key that does not match its certificate, a cipher
	 * list that leaves nothing, is said here rather than at the first client. */
	SSL_CTX *ctx = mx_tls_conf_ssl_ctx(t, NULL, err, errlen);
	if (!ctx) {
		rc = -EINVAL;
		goto fail;
	}
	SSL_CTX_free(ctx);
	if ((rc = mx_tls_conf_sni_build(t, cfg, tables, err, errlen)) < 0)
		goto fail;
	*out = t;
	return 0;
fail:
	mx_tls_conf_free(t);
	return rc;
}

/* One credential into ctx: the key, the leaf and its chain. */
static int mx_tls_conf_use_cred(SSL_CTX *ctx, const struct mx_tls_cred *c, OSSL_LIB_CTX *lib,
			     char *err, size_t errlen)
{
	char why[256];
	const unsigned char *p = c->key.p;
	EVP_PKEY *key = d2i_AutoPrivateKey_ex(NULL, &p, (long)c->key.len, lib, NULL);
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509 *leaf = NULL;
	int rc = 0;
	if (!key || !chain) {
		rc = mx_errf(err, errlen, -EINVAL, "%s: cannot read the private key: %s", c->source,
			     mx_tls_conf_ossl_error(why, sizeof(why)));
		goto out;
	}
	for (unsigned i = 0; i < c->ncerts; i++) {
		X509 *x = X509_new_ex(lib, NULL);
		p = c->certs[i].p;
		if (!x || !d2i_X509(&x, &p, (long)c->certs[i].len)) {
			X509_free(x);
			rc = mx_errf(err, errlen, -EINVAL, "%s: cannot read certificate %u: %s",
				     c->source, i + 1, mx_tls_conf_ossl_error(why, sizeof(why)));
			goto out;
		}
		if (i == 0)
			leaf = x;
		else if (!sk_X509_push(chain, x)) {
			X509_free(x);
			rc = mx_errf(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
	}
	/* checks that the key matches the leaf's public key */
	if (SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) != 1)
		rc = mx_errf(err, errlen, -EINVAL, "%s: the key and certificate do not go together, "
						   "or are refused: %s",
			     c->source, mx_tls_conf_ossl_error(why, sizeof(why)));
out:
	X509_free(leaf);
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	return rc;
}

/* Every client certificate is accepted at the handshake: SSL_get_verify_result() keeps
 * whether it verified (trusted), which is what the restrictions ask. */
static int mx_tls_conf_verify_any(int ok, X509_STORE_CTX *x)
{
	(void)ok, (void)x;
	return 1;
}

/* A server context with t's settings and the keys and chains creds[ncreds]. */
static SSL_CTX *mx_tls_conf_ctx_with(const struct mx_tls_conf *t, const struct mx_tls_cred *creds,
				     unsigned ncreds, OSSL_LIB_CTX *lib, char *err, size_t errlen)
{
	char why[256];
	SSL_CTX *ctx = SSL_CTX_new_ex(lib, NULL, TLS_server_method());
	if (!ctx) {
		mx_errf(err, errlen, -ENOMEM, "cannot make a TLS context: %s",
			mx_tls_conf_ossl_error(why, sizeof(why)));
		return NULL;
	}
	/* no renegotiation at all: a client could make the server do handshakes at will */
	uint64_t opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | t->version_off;
	if (t->preempt)
		opts |= SSL_OP_CIPHER_SERVER_PREFERENCE;
	if (t->session_timeout_s == 0)
		opts |= SSL_OP_NO_TICKET; /* postconf(5): 0 disables session resumption */
	SSL_CTX_set_options(ctx, opts);
	/* OpenSSL's read and write buffers are taken per record and given back when
	 * drained, so an idle connection holds none (docs/ARCHITECTURE.md, TLS). */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* No server-side session cache: a worker's cache would not be seen by the others.
	 * Resumption is by tickets, whose keys every worker shares (dataplane/tls/). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, t->session_timeout_s ? 1 : 0);
	SSL_CTX_set_timeout(ctx, (long)t->session_timeout_s);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)t->session_context,
				       (unsigned)strlen(t->session_context));
	if (SSL_CTX_set_min_proto_version(ctx, t->min_version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, t->max_version) != 1) {
		mx_errf(err, errlen, -EINVAL, "protocol versions refused: %s",
			mx_tls_conf_ossl_error(why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
		mx_errf(err, errlen, -EINVAL, "cipher list \"%s\" leaves no cipher: %s", t->ciphers,
			mx_tls_conf_ossl_error(why, sizeof(why)));
		goto fail;
	}
	for (unsigned i = 0; i < ncreds; i++)
		if (mx_tls_conf_use_cred(ctx, &creds[i], lib, err, errlen) < 0)
			goto fail;
	if (t->ask_ccert) {
		/* ask for a certificate, take any (Postfix records whether it is trusted and
		 * leaves the decision to the restrictions), offer the CAs' names */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE,
				   mx_tls_conf_verify_any);
		SSL_CTX_set_verify_depth(ctx, (int)t->ccert_verifydepth);
		if (t->ca_pem) {
			STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
			if (!names || mx_tls_conf_ca_store(t, lib, SSL_CTX_get_cert_store(ctx),
							   names) < 0) {
				sk_X509_NAME_pop_free(names, X509_NAME_free);
				mx_errf(err, errlen, -EINVAL, "smtpd_tls_CAfile: %s",
					mx_tls_conf_ossl_error(why, sizeof(why)));
				goto fail;
			}
			SSL_CTX_set_client_CA_list(ctx, names); /* takes them */
		}
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *mx_tls_conf_ssl_ctx(const struct mx_tls_conf *t, OSSL_LIB_CTX *lib, char *err,
			     size_t errlen)
{
	return mx_tls_conf_ctx_with(t, t->creds, t->ncreds, lib, err, errlen);
}

SSL_CTX *mx_tls_conf_sni_ssl_ctx(const struct mx_tls_conf *t, unsigned chain,
				 OSSL_LIB_CTX *lib, char *err, size_t errlen)
{
	assert(chain < t->nsni_chains);
	const struct mx_tls_sni_chain *c = &t->sni_chains[chain];
	return mx_tls_conf_ctx_with(t, c->creds, c->ncreds, lib, err, errlen);
}
