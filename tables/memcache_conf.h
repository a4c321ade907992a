/* A memcache_table(5) configuration file, sans-I/O: the text in, the parameters out, and
 * the lookup key as key_format and domain make it.
 *
 * The file has main.cf's form (memcache_table(5): "the same format as the Postfix main.cf
 * file"): "name = value" lines, '#' comment lines, blank lines, and lines that start with
 * white space continue the one before. As Postfix's cfg_parser, there is no $name
 * expansion and a later line for a name wins. Unlike Postfix, a name the manual does not
 * list is an error (a misspelt "tll" would otherwise be silently the default). */
#ifndef MXGATE_TABLES_MEMCACHE_CONF_H
#define MXGATE_TABLES_MEMCACHE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMCACHE_CONF_TEXT_MAX (64u * 1024u)   /* the file */
#define MEMCACHE_CONF_VALUE_MAX 1023           /* one parameter's value */
#define MEMCACHE_CONF_SERVER_MAX 255           /* "inet:host:port", "unix:/path" */
#define MEMCACHE_CONF_BACKUP_MAX 1023          /* "btree:/var/lib/mxgate/x" */
#define MEMCACHE_CONF_FORMAT_MAX 255           /* key_format */
#define MEMCACHE_CONF_DOMAINS_MAX 64           /* entries of domain */
#define MEMCACHE_CONF_DOMAIN_MAX 255           /* one entry */

struct memcache_conf_domain {
	bool negate;                        /* "!example.com" */
	char name[MEMCACHE_CONF_DOMAIN_MAX + 1];
};

/* The parameters, with memcache_table(5)'s defaults. */
struct memcache_conf {
	char memcache[MEMCACHE_CONF_SERVER_MAX + 1];  /* inet:localhost:11211 */
	char backup[MEMCACHE_CONF_BACKUP_MAX + 1];    /* "" (none) */
	uint32_t flags;                                /* 0 */
	uint32_t ttl;                                  /* 3600 s */
	char key_format[MEMCACHE_CONF_FORMAT_MAX + 1]; /* "%s" */
	unsigned ndomains;                             /* 0: no domain list */
	struct memcache_conf_domain domain[MEMCACHE_CONF_DOMAINS_MAX];
	uint32_t data_size_limit;                      /* 10240 */
	uint32_t line_size_limit;                      /* 1024 */
	uint32_t max_try;                              /* 2 */
	uint32_t retry_pause;                          /* 1 s */
	uint32_t timeout;                              /* 2 s */
};

/* The defaults. */
void memcache_conf_init(struct memcache_conf *c);
/* Parse the file's text (len bytes, at most MEMCACHE_CONF_TEXT_MAX; NULs refused) over
 * the defaults. 0, or -EINVAL / -E2BIG with err naming the line ("line 3: unknown
 * parameter \"tll\""). Refused: key_digest (not built), a domain entry that is a file or
 * a table ("/path", "type:table": only domain names), a key_format with an expansion the
 * manual does not list, numbers out of bounds. */
int memcache_conf_parse(struct memcache_conf *c, const char *text, size_t len, char *err,
			size_t errlen);

/* The memcached key for an application's key (memcache_table(5), "MEMCACHE KEY
 * PARAMETERS"): the domain list applied (when set, only user@domain with a non-empty
 * user and a listed domain), then key_format expanded (%%, %s, %u, %d, %S, %U, %D,
 * %1..%9). Returns the key's length (written to out, NUL-terminated), 0 when the key is
 * skipped (the manual's "silently suppressed": not an address, no such domain part, a
 * domain not listed, an empty result, or a result memcached cannot take as a key:
 * longer than 250 bytes, spaces or control characters), or -ENOBUFS when cap is too
 * small. */
long memcache_conf_key(const struct memcache_conf *c, const char *key, char *out, size_t cap);

#endif
