#include "smtp/smtp_relay_policy.h"

#include <stdio.h>

struct mx_span smtp_address_domain(struct mx_span addr)
{
	bool quoted = false;
	size_t at = addr.len;

	/* RFC 5321 4.1.2: a quoted local part may itself contain '@'; only an '@' outside
	 * the quotes separates the domain. */
	for (size_t i = 0; i < addr.len; i++) {
		char c = addr.ptr[i];
		if (quoted && c == '\\' && i + 1 < addr.len) {
			i++;
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		else if (c == '@' && !quoted)
			at = i;
	}
	if (at == addr.len)
		return mx_span_make(addr.ptr + addr.len, 0);
	return mx_span_make(addr.ptr + at + 1, addr.len - at - 1);
}

bool smtp_relay_policy_check(const struct smtp_relay_policy *p,
			     const struct mx_inet_addr *client, struct mx_span rcpt,
			     struct smtp_verdict *v, char *buf, size_t cap)
{
	struct mx_inet_addr unmapped = mx_inet_unmap(client);

	if (p->mynetworks && netlist_match(p->mynetworks, &unmapped))
		return true;

	struct mx_span domain = smtp_address_domain(rcpt);
	/* Postfix qualifies a bare local part with $myorigin before deciding. */
	if (domain.len == 0 && p->myorigin)
		domain = mx_span_cstr(p->myorigin);
	/* A trailing dot names the same domain ("example.com." is "example.com"). */
	if (domain.len > 1 && domain.ptr[domain.len - 1] == '.')
		domain.len--;

	if ((p->mydestination && domain_list_match(p->mydestination, domain)) ||
	    (p->relay_domains && domain_list_match(p->relay_domains, domain)))
		return true;

	/* Postfix shows the address as the client wrote it, inside <>. */
	snprintf(buf, cap, "5.7.1 <%.*s>: Relay access denied", (int)rcpt.len, rcpt.ptr);
	*v = (struct smtp_verdict){ .code = 554, .text = buf };
	return false;
}
