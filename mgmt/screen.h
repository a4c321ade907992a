/* A service's screen (postscreen(8) in front of it, master.cf's postscreen line): the
 * codec's compiled parameters (smtp/smtp_screen.h), postscreen_access_list, and where the
 * temporary allowlist lives. Built with the generation, immutable, one per service (and
 * one per stress variant: postscreen_greet_wait and postscreen_command_time_limit depend
 * on stress). */
#ifndef MXGATE_MGMT_SCREEN_H
#define MXGATE_MGMT_SCREEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mgmt/config.h"
#include "mxgate/inet.h"
#include "smtp/smtp_screen.h"

#define MX_SCREEN_ACL_MAX 16   /* postscreen_access_list elements */
#define MX_SCREEN_MAP_MAX 256  /* postscreen_cache_map */

struct table_cidr;

enum mx_screen_acl_kind {
	MX_SCREEN_ACL_PERMIT,           /* permit */
	MX_SCREEN_ACL_REJECT,           /* reject */
	MX_SCREEN_ACL_DUNNO,            /* dunno */
	MX_SCREEN_ACL_MYNETWORKS,       /* permit_mynetworks */
	MX_SCREEN_ACL_CIDR,             /* cidr:/file, read when the generation is built */
	MX_SCREEN_ACL_KIND_MAX
};

struct mx_screen_acl {
	enum mx_screen_acl_kind kind;
	struct table_cidr *cidr;
	char name[MX_SCREEN_MAP_MAX];   /* "cidr:/etc/postfix/postscreen_access.cidr" */
};

#define MX_SCREEN_SITE_TEXT_MAX 128 /* a DNSBL site as written, for the statistics */

/* Per DNSBL site: the site as postscreen_dnsbl_sites writes it (cut at
 * MX_SCREEN_SITE_TEXT_MAX - 1 bytes) and how many clients it listed (the site's answer had
 * an address in its filter before the score was final: its weight counted). Workers add
 * (relaxed atomics: a listing is at most once per screened connection), the statistics
 * read. */
struct mx_screen_site_stat {
	char text[MX_SCREEN_SITE_TEXT_MAX];
	atomic_uint_fast64_t listed;
};

struct mx_screen {
	struct smtp_screen_config *cfg;
	struct mx_screen_acl acl[MX_SCREEN_ACL_MAX];
	unsigned nacl;
	char cache_map[MX_SCREEN_MAP_MAX];  /* "" : no cache */
	uint32_t dnsbl_timeout_ms;
	/* postscreen_upstream_proxy_protocol = haproxy: a PROXY header comes first, within
	 * proxy_timeout_ms (postscreen_upstream_proxy_timeout) */
	bool proxy_haproxy;
	uint32_t proxy_timeout_ms;
	struct mx_screen_site_stat *sites;  /* [cfg->nsites], NULL when none */
};

/* Count one screened client's listings: bit k of listed (smtp_screen_outcome()'s
 * dnsbl_listed) is site k of s->cfg->sites. */
void mx_screen_count_listed(const struct mx_screen *s, uint64_t listed);

/* Compile cfg's postscreen_* parameters. 0, or a negative errno with the reason in err
 * (naming the parameter). */
int mx_screen_build(const struct mx_config *cfg, struct mx_screen **out, char *err,
		    size_t errlen);
void mx_screen_free(struct mx_screen *s);

/* postscreen_access_list for a client, as Postfix's server_acl_eval(): the first
 * permit/reject decides, dunno stops with no decision, permit_mynetworks permits a client
 * in mynetworks, a table's value (permit, reject, dunno, or such a list) decides when it is
 * not dunno. An unknown word in a table's value is postscreen's "unknown command": a
 * warning (in warn, else warn[0] = 0) and no decision. */
enum smtp_screen_acl mx_screen_access(const struct mx_screen *s, const struct mx_config *cfg,
				      const struct mx_inet_addr *addr, char *warn,
				      size_t warnlen);
/* The same, and which element decided (for `mxgate explain`): *entry its index in
 * s->acl, or -1 when none did (no element matched: dunno). */
enum smtp_screen_acl mx_screen_access_entry(const struct mx_screen *s,
					    const struct mx_config *cfg,
					    const struct mx_inet_addr *addr, int *entry,
					    char *warn, size_t warnlen);

#endif
