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
 * only the first. */
int mx_policy_build(const struct mx_config *cfg, struct smtp_policy **out, FILE *diag,
		    char *err, size_t errlen);

/* True when the policy looks anything up in the table store (a hash/cidr/regexp/pcre table
 * or an RBL zone; static: and inline: need none). */
bool mx_policy_needs_tables(const struct smtp_policy *p);

/* For `mxgate --check`: warn on diag about every table or zone the policy names that is
 * not in mxgate_table_directory (each would answer 451 4.3.5 to every client), or that
 * cannot be read. Returns the number of warnings. */
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
