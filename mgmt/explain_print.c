/* `mxgate explain`'s output of what was asked: DNS answers, policy exchanges, the client's
 * name, the resolver's settings (explain.h). Whatever came from the network is escaped, so
 * the explanation shows exactly what a server said and a hostile answer cannot forge a
 * line of it. */
#include "mgmt/explain.h"

#include <string.h>
#include <sys/socket.h>

#define EXPLAIN_RECORDS_SHOWN 10 /* records of one DNS answer printed */

void mx_explain_print_text(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 32 || c >= 127)
			fprintf(f, "\\%03o", c);
		else
			fputc(c, f);
	}
}

static void mx_explain_print_str(FILE *f, const char *s)
{
	mx_explain_print_text(f, s, strlen(s));
}

/* One record of r as the output shows it. */
static void mx_explain_print_record(FILE *f, enum dns_type type, const struct dns_result *r,
				    const struct dns_result_record *rec)
{
	if (type == DNS_TYPE_A || type == DNS_TYPE_AAAA) {
		char t[INET6_ADDRSTRLEN];
		fputs(mx_inet_format(&rec->addr, t, sizeof(t)), f);
	} else if (type == DNS_TYPE_TXT) {
		fputc('"', f);
		mx_explain_print_text(f, dns_result_txt(r, rec), rec->txt_len);
		fputc('"', f);
	} else if (type == DNS_TYPE_MX) {
		const char *n = dns_result_name(r, rec);
		fprintf(f, "%u ", rec->pref);
		if (*n)
			mx_explain_print_str(f, n);
		else
			fputs(". (null MX)", f);
	} else {
		mx_explain_print_str(f, dns_result_name(r, rec));
	}
}

void mx_explain_print_dns(FILE *f, const char *indent, enum dns_type type, const char *name,
			  const struct dns_result *r, bool cached)
{
	fprintf(f, "%sdns: %s ", indent, dns_type_name(type));
	mx_explain_print_str(f, name);
	fputs(" -> ", f);
	const char *again = cached ? ", answered before" : "";
	switch (r->status) {
	case DNS_RESULT_OK:
		for (unsigned i = 0; i < r->nrecords && i < EXPLAIN_RECORDS_SHOWN; i++) {
			fputs(i ? ", " : "", f);
			mx_explain_print_record(f, type, r, &r->records[i]);
		}
		if (r->nrecords > EXPLAIN_RECORDS_SHOWN)
			fprintf(f, ", ... (%u records)", r->nrecords);
		fprintf(f, " (ttl %u%s)\n", r->ttl, again);
		return;
	case DNS_RESULT_NODATA:
		fprintf(f, "NODATA: the name has no %s record (ttl %u%s)\n", dns_type_name(type),
			r->ttl, again);
		return;
	case DNS_RESULT_NXDOMAIN:
		fprintf(f, "NXDOMAIN: no such name (ttl %u%s)\n", r->ttl, again);
		return;
	case DNS_RESULT_TEMPFAIL:
	case DNS_RESULT_STATUS_MAX:
		break;
	}
	fputs("TEMPFAIL (", f);
	mx_explain_print_str(f, r->why[0] ? r->why : "temporary failure");
	fprintf(f, "%s)\n", again);
}

/* The request's attributes, one a line: "name=value" (empty values only when verbose). */
static void mx_explain_print_request(FILE *f, const char *indent, const char *request,
				     size_t len, bool verbose)
{
	const char *p = request, *end = request + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *eq = memchr(p, '=', n);
		if (n > 0 && (verbose || !eq || eq + 1 < p + n)) {
			fprintf(f, "%s  > ", indent);
			mx_explain_print_text(f, p, n);
			fputc('\n', f);
		}
		p += n + (nl != NULL);
	}
}

void mx_explain_print_policy(FILE *f, const char *indent, const struct smtp_policy_service *svc,
			     const char *request, size_t len,
			     const struct mx_explain_policy_reply *reply, bool verbose)
{
	fprintf(f, "%spolicy ", indent);
	mx_explain_print_str(f, svc->endpoint ? svc->endpoint : "");
	fprintf(f, " (timeout %us, %u %s):\n", svc->timeout, svc->try_limit,
		svc->try_limit == 1 ? "try" : "tries");
	if (request)
		mx_explain_print_request(f, indent, request, len, verbose);
	if (reply->error == 0) {
		fprintf(f, "%s  < action=", indent);
		mx_explain_print_str(f, reply->action);
		if (reply->tries > 1)
			fprintf(f, " (at try %u)", reply->tries);
		fputc('\n', f);
		return;
	}
	fprintf(f, "%s  failed", indent);
	if (reply->tries > 0)
		fprintf(f, " after %u %s", reply->tries, reply->tries == 1 ? "try" : "tries");
	fputs(": ", f);
	mx_explain_print_str(f, reply->why[0] ? reply->why : strerror(-reply->error));
	fprintf(f, "\n%s  default action applies (smtpd_policy_service_default_action): ", indent);
	mx_explain_print_str(f, svc->default_action ? svc->default_action : "");
	fputc('\n', f);
}

/* "ok", "temporary failure", ...: a name status as the output says it. */
static const char *mx_explain_peer_status(enum smtp_policy_name_status s)
{
	switch (s) {
	case SMTP_POLICY_NAME_OK:
		return "ok";
	case SMTP_POLICY_NAME_TEMP:
		return "temporary failure";
	case SMTP_POLICY_NAME_PERM:
		return "permanent: no name";
	case SMTP_POLICY_NAME_FORGED:
		return "permanent: the name does not resolve back to the address";
	case SMTP_POLICY_NAME_DEFAULT:
	case SMTP_POLICY_NAME_STATUS_MAX:
		break;
	}
	return "?";
}

void mx_explain_print_peer(FILE *f, const char *indent, const struct mx_explain_peer *p)
{
	for (unsigned i = 0; i < p->nlookups; i++)
		mx_explain_print_dns(f, indent, p->lookups[i].type, p->lookups[i].name,
				     p->lookups[i].result, p->lookups[i].cached);
	if (p->warning[0]) {
		fprintf(f, "%swould log: warning: ", indent);
		mx_explain_print_str(f, p->warning);
		fputc('\n', f);
	}
	fprintf(f, "%s=> client name ", indent);
	mx_explain_print_str(f, p->name);
	fprintf(f, " (%s), reverse name ", mx_explain_peer_status(p->name_status));
	mx_explain_print_str(f, p->reverse_name);
	fprintf(f, " (%s)\n", mx_explain_peer_status(p->reverse_name_status));
}

void mx_explain_print_resolver(FILE *f, const struct mx_explain_dns_opts *o)
{
	fputs("DNS: ", f);
	for (unsigned i = 0; i < o->nservers; i++) {
		char t[INET6_ADDRSTRLEN];
		mx_inet_format(&o->servers[i].addr, t, sizeof(t));
		fprintf(f, o->servers[i].addr.family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u",
			i ? ", " : "", t, o->servers[i].port);
	}
	fprintf(f, " (%s), %u ms a try, %u %s%s\n", o->source, o->timeout_ms, o->attempts,
		o->attempts == 1 ? "round" : "rounds", o->rotate ? ", rotate" : "");
}
