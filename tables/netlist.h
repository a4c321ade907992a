/* A list of IPv4/IPv6 networks as Postfix writes them (mynetworks and friends):
 * "127.0.0.0/8 [::1]/128, 192.0.2.7 [2001:db8::]/32" separated by commas and/or whitespace.
 * Matching is "any entry contains the address". Tables (`type:name`) inside such a list
 * arrive with the table engine; until then the parser refuses them with a clear message. */
#ifndef MXGATE_TABLES_NETLIST_H
#define MXGATE_TABLES_NETLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "mxgate/inet.h"

struct netlist;

/* Parse `text`. Returns 0 and *out (an empty list when text is blank), or -EINVAL with a
 * human-readable reason in err ("bad address '10.0.0.300/8'"). */
int netlist_parse(const char *text, struct netlist **out, char *err, size_t errlen);
bool netlist_match(const struct netlist *nl, const struct mx_inet_addr *addr);
size_t netlist_count(const struct netlist *nl);
void netlist_free(struct netlist *nl);

#endif
