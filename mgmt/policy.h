/* The bridge between mxgate.cf and the restriction evaluator: builds the immutable
 * struct smtp_policy (smtp/smtp_restrictions.h) from the Postfix parameters of a loaded
 * configuration. The gateway calls it at start, `mxgate --check` to report what cannot
 * work, and `mxgate explain` to evaluate one request. */
#ifndef MXGATE_MGMT_POLICY_H
#define MXGATE_MGMT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mgmt/config.h"
#include "smtp/smtp_checks.h"
#include "smtp/smtp_restrictions.h"

/* Returns 0 and *out, or a negative errno with one line in err (from
 * smtp_policy_compile()). With diag, every error is also written there as
 * "FILE:LINE: problem" (the line of the list or class that holds it), all of them, not
 * only the first, with the warnings of mx_policy_warn_never_match(). An RBL zone without
 * local data is an error too (-ENOENT, mx_policy_check_zones()): there is no resolver to
 * ask, so every query would fail. */
int mx_policy_build(const struct mx_config *cfg, struct smtp_policy **out, FILE *diag,
		    char *err, size_t errlen);

/* Warn on diag about restrictions that can never match in mxgate today (they need SASL or
 * TLS client certificates: permit_sasl_authenticated, reject_*sender_login_mismatch,
 * check_sasl_access, permit_tls_clientcerts, permit_tls_all_clientcerts,
 * check_ccert_access), in the lists and classes the file sets, as
 * "FILE:LINE: warning: LIST: WORD can never match: ...". Returns how many. */
int mx_policy_warn_never_match(const struct mx_config *cfg, FILE *diag);

/* Every RBL zone the policy names (reject_rbl_client, reject_rhsbl_*, permit_dnswl_client,
 * permit_rhswl_client) must have local data in mxgate_table_directory (mxgate-map -z):
 * there is no DNS resolver yet. Each one that has none is an error written to diag (may be
 * NULL) as "FILE:LINE: LIST: RBL zone ZONE: ..."; the first also goes to err. Returns
 * how many have none (0: all are there), opening the table directory read-only for the
 * check (it needs none when the policy names no zone). mx_policy_build() calls it; the
 * start path and a reload get it from there. */
int mx_policy_check_zones(const struct mx_config *cfg, const struct smtp_policy *p, FILE *diag,
			  char *err, size_t errlen);

/* True when the policy looks anything up in the table store (a hash/cidr/regexp/pcre table
 * or an RBL zone; static: and inline: need none). */
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
