/* The built-in policy that stands until the restriction engine lands: mxgate is never an
 * open relay. A recipient is accepted when the client is in mynetworks
 * (permit_mynetworks) or the recipient's domain is in mydestination or relay_domains
 * (reject_unauth_destination); otherwise
 *     554 5.7.1 <rcpt>: Relay access denied
 * exactly as Postfix words it (relay_domains_reject_code 554). */
#ifndef MXGATE_SMTP_RELAY_POLICY_H
#define MXGATE_SMTP_RELAY_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "mxgate/inet.h"
#include "mxgate/span.h"
#include "smtp/smtp_session.h"
#include "tables/domain_list.h"
#include "tables/netlist.h"

struct smtp_relay_policy {
	const struct netlist *mynetworks;
	const struct domain_list *mydestination;
	const struct domain_list *relay_domains;
	const char *myorigin; /* the domain an unqualified recipient ("postmaster") gets */
};

/* Decide one recipient (the address as the engine gives it: no <>, route stripped).
 * Returns true when it may be accepted. Otherwise fills *v with the refusal, whose text is
 * formatted into buf[0..cap). */
bool smtp_relay_policy_check(const struct smtp_relay_policy *p,
			     const struct mx_inet_addr *client, struct mx_span rcpt,
			     struct smtp_verdict *v, char *buf, size_t cap);

/* The domain part of an address: after the last '@' outside a quoted local part; an empty
 * span for an address without one. */
struct mx_span smtp_address_domain(struct mx_span addr);

#endif
