/* The bridge between mxgate.cf and the restriction evaluator: builds the immutable
 * struct smtp_policy (smtp/smtp_restrictions.h) from the Postfix parameters of a loaded
 * configuration. The gateway calls it at start, `mxgate --check` to report what cannot
 * work, and `mxgate explain` to evaluate one request. */
#ifndef MXGATE_MGMT_POLICY_H
#define MXGATE_MGMT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mxgate/inet.h"
#include "mgmt/config.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_restrictions.h"
#include "tables/dns_conf.h"

/* Returns 0 and *out, or a negative errno with one line in err (from
 * smtp_policy_compile()). With diag, every error is also written there as
 * "FILE:LINE: problem" (the line of the list or class that holds it), all of them, not
 * only the first, with the warnings of mx_policy_warn_never_match(). A restriction that
 * needs DNS when no resolver is configured is an error too (-ENOENT,
 * mx_policy_check_zones()): every query would fail. A bad mxgate_dns_servers is -EINVAL. */
int mx_policy_build(const struct mx_config *cfg, struct smtp_policy **out, FILE *diag,
		    char *err, size_t errlen);

/* Warn on diag about restrictions that can never match in mxgate today (they need SASL or
 * TLS client certificates: permit_sasl_authenticated, reject_*sender_login_mismatch,
 * check_sasl_access, permit_tls_clientcerts, permit_tls_all_clientcerts,
 * check_ccert_access), in the lists and classes the file sets, as
 * "FILE:LINE: warning: LIST: WORD can never match: ...". Returns how many. */
int mx_policy_warn_never_match(const struct mx_config *cfg, FILE *diag);

/* DNS lookups need a resolver: mxgate_dns_servers, or else a nameserver line in
 * /etc/resolv.conf. Without one, every RBL zone the policy names (reject_rbl_client,
 * reject_rhsbl_*, permit_dnswl_client, permit_rhswl_client) must have local data in
 * mxgate_table_directory (mxgate-map -z: a local zone answers first, DNS is asked only
 * when there is none), and no restriction may need DNS (reject_unknown_*,
 * check_*_{mx,ns,a}_access). Each problem is an error written to diag (may be NULL) as
 * "FILE:LINE: LIST: RBL zone ZONE: ..." or "FILE:LINE: LIST: RESTRICTION needs DNS ...";
 * the first also goes to err. Returns how many (0: none), opening the table directory
 * read-only for the check only when there is no resolver and the policy names a zone.
 * mx_policy_build() calls it; the start path and a reload get it from there. */
int mx_policy_check_zones(const struct mx_config *cfg, const struct smtp_policy *p, FILE *diag,
			  char *err, size_t errlen);

/* The same, with resolv_conf in place of /etc/resolv.conf (for tests). */
int mx_policy_check_dns(const struct mx_config *cfg, const struct smtp_policy *p,
			const char *resolv_conf, FILE *diag, char *err, size_t errlen);

/* The nameserver lines of a resolv.conf file (resolv.conf(5)): how many name a valid
 * address (0 when the file is missing). */
unsigned mx_policy_resolv_conf_nameservers(const char *path);

/* mxgate_dns_servers: "ADDR", "[ADDR]" or "[ADDR]:PORT" (and "IPV4:PORT"), separated by
 * commas and/or white space; port 53 when not given. Returns how many (up to max are
 * stored in out), or -EINVAL with the bad word in err. */
int mx_policy_dns_servers(const char *value, struct dns_server *out, size_t max, char *err,
			  size_t errlen);

/* True when the policy looks anything up in the table store (a hash/cidr/regexp/pcre
 * table; static: and inline: need none). An RBL zone does not count: without a store it is
 * asked in DNS; with one, its local data answers first (the store is opened whenever it
 * exists). */
bool mx_policy_needs_tables(const struct smtp_policy *p);

/* For `mxgate --check`: warn on diag about every table the policy names that is not in
 * mxgate_table_directory (each would answer 451 4.3.5 to every client), or that cannot be
 * read. Returns the number of warnings. (A missing zone is an error of
 * mx_policy_build().) */
int mx_policy_check_tables(const struct mx_config *cfg, const struct smtp_policy *p,
			   FILE *diag);

/* header_checks, mime_header_checks, nested_header_checks and body_checks compiled from
 * the files they name (read now: Postfix too reads regexp:/pcre: check files at start),
 * with the limits smtp_checks needs. A set that names the same files as header_checks (the
 * $header_checks default) shares its compiled database. */
struct mx_checks {
	struct checks *owned[SMTP_CHECKS_CLASS_MAX];
	struct smtp_checks_config cfg;
	bool any; /* some set is configured */
};

/* Returns 0 (cc->any false when nothing is configured), or a negative errno with
 * "header_checks: reason" in err. */
int mx_checks_build(const struct mx_config *cfg, struct mx_checks *cc, char *err,
		    size_t errlen);
void mx_checks_free(struct mx_checks *cc);

#endif
