/* A list of domains as Postfix writes them (mydestination, relay_domains): names separated
 * by commas and/or whitespace, case-insensitive. `.example.com` matches subdomains of
 * example.com only; with `parent_matches_subdomains` (Postfix's
 * parent_domain_matches_subdomains, which lists relay_domains but not mydestination by
 * default) `example.com` also matches its subdomains. */
#ifndef MXGATE_TABLES_DOMAIN_LIST_H
#define MXGATE_TABLES_DOMAIN_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "mxgate/span.h"

struct domain_list;

/* Returns 0 and *out, or -EINVAL with a reason in err. */
int domain_list_parse(const char *text, bool parent_matches_subdomains,
		      struct domain_list **out, char *err, size_t errlen);
bool domain_list_match(const struct domain_list *dl, struct mx_span domain);
size_t domain_list_count(const struct domain_list *dl);
void domain_list_free(struct domain_list *dl);

#endif
