/* master.cf: Postfix's master(5) syntax, read for mxgate's services (master.h).
 *
 * Reading: a logical line starts with non-whitespace and continues on lines that start
 * with whitespace; empty lines and lines whose first non-blank is '#' are skipped, also
 * inside an entry (Postfix's readlline()); line ends may be LF or CRLF. Tokens are
 * separated by whitespace, and a {group} (balanced braces, Postfix 3.0) is part of one
 * token whatever it holds; a token that is a whole {group} stands for its inside, blanks
 * around it stripped (extpar()). `-o name=value`, `-oname=value` and `-o { name = value }`
 * set a parameter for the service.
 *
 * Every problem is collected with its line and printed sorted by line, as the main.cf
 * reader does. */
#include "mgmt/master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mgmt/config_params.h"
#include "mxgate/inet.h"

#define MASTER_SHOW_MAX 80 /* bytes of a token quoted in a message */
#define MASTER_DIAGS_MAX 1000

struct master_diag {
	unsigned line;
	size_t seq;
	char *text;
};

struct master_ctx {
	const char *file;
	struct mx_master *m;
	struct master_diag *diags;
	size_t ndiags, capdiags;
	unsigned errors;
	bool oom;
};

static void master_diag(struct master_ctx *x, unsigned line, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void master_diag(struct master_ctx *x, unsigned line, bool warning, const char *fmt, ...)
{
	if (!warning)
		x->errors++;
	if (x->ndiags >= MASTER_DIAGS_MAX)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (x->ndiags == x->capdiags) {
		size_t ncap = x->capdiags ? x->capdiags * 2 : 16;
		struct master_diag *nd = realloc(x->diags, ncap * sizeof(*nd));
		if (!nd) {
			x->oom = true;
			return;
		}
		x->diags = nd;
		x->capdiags = ncap;
	}
	char *text = NULL;
	if (asprintf(&text, "%s%s", warning ? "warning: " : "", msg) < 0) {
		x->oom = true;
		return;
	}
	x->diags[x->ndiags] = (struct master_diag){ .line = line, .seq = x->ndiags, .text = text };
	x->ndiags++;
}

static int master_diag_cmp(const void *a, const void *b)
{
	const struct master_diag *p = a, *q = b;
	if (p->line != q->line)
		return p->line < q->line ? -1 : 1;
	return p->seq < q->seq ? -1 : p->seq > q->seq;
}

static void master_diag_flush(struct master_ctx *x, FILE *diag)
{
	if (x->ndiags > 1)
		qsort(x->diags, x->ndiags, sizeof(*x->diags), master_diag_cmp);
	for (size_t i = 0; i < x->ndiags; i++) {
		if (diag)
			fprintf(diag, "%s:%u: %s\n", x->file, x->diags[i].line, x->diags[i].text);
		free(x->diags[i].text);
	}
	if (diag && x->ndiags >= MASTER_DIAGS_MAX)
		fprintf(diag, "%s: more problems not shown\n", x->file);
	free(x->diags);
	x->diags = NULL;
	x->ndiags = x->capdiags = 0;
}

static bool master_is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* ---------------------------------------------------------------------------------------
 * Tokens of one logical line. */

struct master_token {
	const char *p; /* into the logical line */
	size_t len;
	unsigned line; /* the physical line it starts on */
};

/* The inside of a token that is one whole {group}, blanks around it stripped; the token
 * itself otherwise. Returns true when it was a group. */
static bool master_ungroup(const char *p, size_t len, const char **out, size_t *outlen)
{
	*out = p;
	*outlen = len;
	if (len < 2 || p[0] != '{' || p[len - 1] != '}')
		return false;
	/* the first brace must close at the end */
	int level = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '{')
			level++;
		else if (p[i] == '}' && --level == 0 && i != len - 1)
			return false;
	}
	p++;
	len -= 2;
	while (len && master_is_space(*p)) {
		p++;
		len--;
	}
	while (len && master_is_space(p[len - 1]))
		len--;
	*out = p;
	*outlen = len;
	return true;
}

static bool master_has_space(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (master_is_space(p[i]))
			return true;
	return false;
}

/* ---------------------------------------------------------------------------------------
 * Entries. */

static char *master_strndup(struct master_ctx *x, const char *p, size_t n)
{
	char *s = strndup(p, n);
	if (!s)
		x->oom = true;
	return s;
}

/* An argument as postconf -M prints it: a {group} without braces when it has no blanks
 * inside, with them (and its blanks stripped) when it has. */
static char *master_print_form(struct master_ctx *x, const char *p, size_t n)
{
	const char *in;
	size_t inlen;
	if (!master_ungroup(p, n, &in, &inlen) || !master_has_space(in, inlen))
		return master_strndup(x, in, inlen);
	char *s = NULL;
	if (asprintf(&s, "{%.*s}", (int)inlen, in) < 0) {
		x->oom = true;
		return NULL;
	}
	return s;
}

/* An -o value as postconf -M prints it: "name=value" with the blanks around both
 * stripped, in braces when the value holds blanks. */
static char *master_print_override(struct master_ctx *x, const char *p, size_t n)
{
	const char *in;
	size_t inlen;
	master_ungroup(p, n, &in, &inlen);
	const char *eq = memchr(in, '=', inlen);
	if (!eq)
		return master_print_form(x, p, n);
	size_t nl = (size_t)(eq - in);
	while (nl && master_is_space(in[nl - 1]))
		nl--;
	const char *v = eq + 1, *end = in + inlen;
	while (v < end && master_is_space(*v))
		v++;
	bool brace = master_has_space(in, nl) || master_has_space(v, (size_t)(end - v));
	char *s = NULL;
	if (asprintf(&s, "%s%.*s=%.*s%s", brace ? "{" : "", (int)nl, in, (int)(end - v), v,
		     brace ? "}" : "") < 0) {
		x->oom = true;
		return NULL;
	}
	return s;
}

static bool master_push_arg(struct master_ctx *x, struct mx_master_entry *e, char *arg)
{
	if (!arg)
		return false;
	char **argv = realloc(e->argv, (e->argc + 1) * sizeof(*argv));
	if (!argv) {
		free(arg);
		x->oom = true;
		return false;
	}
	e->argv = argv;
	e->argv[e->argc++] = arg;
	return true;
}

/* -o VALUE: "name=value" with blanks around both stripped. */
static bool master_override(struct master_ctx *x, struct mx_master_service *svc,
			    const char *p, size_t n, unsigned line)
{
	const char *in;
	size_t inlen;
	master_ungroup(p, n, &in, &inlen);
	const char *eq = memchr(in, '=', inlen);
	size_t nl = eq ? (size_t)(eq - in) : 0;
	while (nl && master_is_space(in[nl - 1]))
		nl--;
	if (!eq || nl == 0) {
		master_diag(x, line, false, "-o %.*s: expected name=value", (int)(inlen > 80 ? 80 : inlen),
			    in);
		return false;
	}
	for (size_t i = 0; i < nl; i++) {
		char ch = in[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
			master_diag(x, line, false, "-o %.*s: bad parameter name", (int)nl, in);
			return false;
		}
	}
	const char *v = eq + 1, *end = in + inlen;
	while (v < end && master_is_space(*v))
		v++;
	char *name = master_strndup(x, in, nl), *value = master_strndup(x, v, (size_t)(end - v));
	struct mx_master_override *o =
		realloc(svc->overrides, (svc->noverrides + 1) * sizeof(*o));
	if (!name || !value || !o) {
		free(name);
		free(value);
		if (o)
			svc->overrides = o;
		x->oom = true;
		return false;
	}
	svc->overrides = o;
	svc->overrides[svc->noverrides++] =
		(struct mx_master_override){ .name = name, .value = value, .line = line };

	/* The registry says which parameters a service may set. */
	const struct mx_param_def *def = mx_param_find(name, nl);
	if (def && def->id == MX_P_SYSLOG_NAME)
		/* Debian's master.cf has it on submission and smtps: Postfix tags that
		 * service's lines postfix/submission/smtpd. mxgate tags all lines with main.cf's
		 * syslog_name; pflogsumm counts both alike. */
		master_diag(x, line, true,
			    "service %s: -o syslog_name=%s: not applied per service; its lines "
			    "carry main.cf's syslog_name",
			    svc->name, value);
	else if (def && def->scope == MX_SCOPE_GLOBAL)
		master_diag(x, line, false,
			    "service %s: -o %s: a global parameter; it can be set in main.cf only",
			    svc->name, name);
	return true;
}

/* A port: a number 1..65535 or a name /etc/services knows (with Postfix's three as
 * fallbacks, for a minimal system). 0 when neither. */
static unsigned master_port(const char *s)
{
	size_t n = strlen(s);
	if (n && n <= 5 && strspn(s, "0123456789") == n) {
		unsigned long v = strtoul(s, NULL, 10);
		return v >= 1 && v <= 65535 ? (unsigned)v : 0;
	}
	struct servent *se = getservbyname(s, "tcp");
	if (se)
		return ntohs((uint16_t)se->s_port);
	if (strcmp(s, "smtp") == 0)
		return 25;
	if (strcmp(s, "submission") == 0)
		return 587;
	if (strcmp(s, "smtps") == 0 || strcmp(s, "submissions") == 0)
		return 465;
	return 0;
}

/* The listen addresses of an inet service name: [HOST:]PORT, [IPV6]:PORT, *:PORT. */
static bool master_listen(struct master_ctx *x, struct mx_master_service *svc)
{
	char buf[128];
	const char *name = svc->name;
	if (strlen(name) >= sizeof(buf)) {
		master_diag(x, svc->line, false, "service %.60s...: name too long", name);
		return false;
	}
	snprintf(buf, sizeof(buf), "%s", name);
	char *host = NULL, *port = buf;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (!close || close[1] != ':') {
			master_diag(x, svc->line, false,
				    "service %s: expected [IPV6]:PORT", name);
			return false;
		}
		*close = '\0';
		host = buf + 1;
		port = close + 2;
	} else {
		char *colon = strrchr(buf, ':');
		if (colon) {
			if (strchr(buf, ':') != colon) {
				master_diag(x, svc->line, false,
					    "service %s: write an IPv6 address as [ADDR]:PORT",
					    name);
				return false;
			}
			*colon = '\0';
			host = buf;
			port = colon + 1;
		}
	}
	unsigned p = master_port(port);
	if (!p) {
		master_diag(x, svc->line, false,
			    "service %s: \"%s\" is not a port number or a service name in "
			    "/etc/services",
			    name, port);
		return false;
	}
	if (!host || strcmp(host, "*") == 0 || !*host) {
		snprintf(svc->listen[0].host, sizeof(svc->listen[0].host), "0.0.0.0");
		snprintf(svc->listen[1].host, sizeof(svc->listen[1].host), "::");
		svc->listen[0].port = svc->listen[1].port = (uint16_t)p;
		svc->listen_count = 2;
		return true;
	}
	struct mx_inet_addr a;
	bool v6 = name[0] == '[';
	if (!mx_inet_parse(host, &a) || (a.family == AF_INET6) != v6) {
		master_diag(x, svc->line, false,
			    "service %s: \"%s\" is not a numeric %s address (mxgate does no DNS "
			    "lookups)",
			    name, host, v6 ? "IPv6" : "IPv4");
		return false;
	}
	/* inet_pton() took it: at most INET6_ADDRSTRLEN - 1 bytes */
	size_t hl = strlen(host);
	if (hl >= sizeof(svc->listen[0].host))
		return false;
	memcpy(svc->listen[0].host, host, hl + 1);
	svc->listen[0].port = (uint16_t)p;
	svc->listen_count = 1;
	return true;
}

/* What an entry that is not an inet smtpd is, for its message. NULL: unknown. */
static const char *master_skip_why(const char *command, bool *refuse)
{
	static const struct {
		const char *command;
		bool refuse;
		const char *why;
	} known[] = {
		{ "qmqpd", true, "mxgate does not accept QMQP: mail this listener accepts would "
				 "be refused" },
		{ "smtp", false, "a delivery transport: mxgate's relay delivers (relayhost, "
				 "transport_maps)" },
		{ "lmtp", false, "a delivery transport: mxgate's relay delivers (relayhost, "
				 "transport_maps, mxgate_relay_protocol)" },
		{ "local", false, "local delivery, which a gateway does not do" },
		{ "virtual", false, "local delivery, which a gateway does not do" },
		{ "pipe", false, "delivery to a program, which a gateway does not do" },
		{ "spawn", false, "runs a program for a restriction (check_policy_service) that "
				  "mxgate --check refuses" },
		{ "error", false, "Postfix's error transport; mxgate bounces by itself" },
		{ "discard", false, "Postfix's discard transport" },
		{ "pickup", false, "local submission, which mxgate does not accept" },
		{ "cleanup", false, "one of Postfix's internal services; mxgate does its work "
				    "itself" },
		{ "qmgr", false, "one of Postfix's internal services; mxgate's relay schedules "
				 "itself" },
		{ "oqmgr", false, "one of Postfix's internal services; mxgate's relay schedules "
				  "itself" },
		{ "trivial-rewrite", false, "one of Postfix's internal services; mxgate does "
					    "not rewrite addresses" },
		{ "bounce", false, "one of Postfix's internal services; mxgate bounces by "
				   "itself" },
		{ "verify", false, "address verification, used only by restrictions mxgate "
				   "--check refuses" },
		{ "flush", false, "one of Postfix's internal services (ETRN)" },
		{ "proxymap", false, "one of Postfix's internal services; mxgate reads its "
				     "tables itself" },
		{ "showq", false, "one of Postfix's internal services; see mxgate-queue" },
		{ "anvil", false, "one of Postfix's internal services" },
		{ "scache", false, "one of Postfix's internal services" },
		{ "tlsmgr", false, "one of Postfix's internal services (TLS is not offered "
				   "yet)" },
		{ "tlsproxy", false, "one of Postfix's internal services (TLS is not offered "
				     "yet)" },
		{ "dnsblog", false, "a postscreen helper" },
		{ "postlogd", false, "one of Postfix's internal services; mxgate logs to "
				     "maillog_file or syslog" },
		{ "smtpd", true, "an smtpd that is not an inet listener (a unix/fifo service, or "
				 "a pass service not named smtpd) is not supported: mail it "
				 "would accept would be refused" },
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(known[i].command, command) == 0) {
			*refuse = known[i].refuse;
			return known[i].why;
		}
	}
	*refuse = false;
	return NULL;
}

static bool master_column_ok(enum mx_master_column col, const char *v)
{
	switch (col) {
	case MX_MASTER_TYPE:
		return !strcmp(v, "inet") || !strcmp(v, "unix") || !strcmp(v, "unix-dgram") ||
		       !strcmp(v, "fifo") || !strcmp(v, "pass");
	case MX_MASTER_PRIVATE:
	case MX_MASTER_UNPRIV:
	case MX_MASTER_CHROOT:
		return !strcmp(v, "y") || !strcmp(v, "n") || !strcmp(v, "-");
	case MX_MASTER_WAKEUP: {
		size_t n = strspn(v, "0123456789");
		return !strcmp(v, "-") || (n > 0 && n <= 9 && (!v[n] || !strcmp(v + n, "?")));
	}
	case MX_MASTER_MAXPROC: {
		size_t n = strspn(v, "0123456789");
		return !strcmp(v, "-") || (n > 0 && n <= 9 && !v[n]);
	}
	case MX_MASTER_SERVICE:
	case MX_MASTER_COLUMN_MAX:
		break;
	}
	return true;
}

static const char *const master_column_names[MX_MASTER_COLUMN_MAX] = {
	"service", "type", "private", "unpriv", "chroot", "wakeup", "maxproc",
};

/* The arguments of an inet smtpd: -o overrides; other options are warned about. */
static void master_smtpd_args(struct master_ctx *x, struct mx_master_service *svc,
			      const struct master_token *t, size_t nt)
{
	for (size_t i = 8; i < nt; i++) {
		const char *a = t[i].p;
		size_t n = t[i].len;
		if (n >= 2 && a[0] == '-' && a[1] == 'o') {
			if (n > 2) {
				master_override(x, svc, a + 2, n - 2, t[i].line);
			} else if (i + 1 < nt) {
				i++;
				master_override(x, svc, t[i].p, t[i].len, t[i].line);
			} else {
				master_diag(x, t[i].line, false,
					    "service %s: -o without name=value", svc->name);
			}
			continue;
		}
		master_diag(x, t[i].line, true,
			    "service %s: argument \"%.*s\" ignored (mxgate's smtpd takes -o "
			    "name=value only)",
			    svc->name, (int)(n > MASTER_SHOW_MAX ? MASTER_SHOW_MAX : n), a);
	}
}

static void master_entry(struct master_ctx *x, const struct master_token *t, size_t nt)
{
	struct mx_master *m = x->m;
	unsigned line = t[0].line;
	if (nt < 8) {
		master_diag(x, line, false,
			    "bad field count: %zu (a service has 8 fields: service type private "
			    "unpriv chroot wakeup maxproc command)",
			    nt);
		return;
	}
	if (m->nentries >= MX_MASTER_ENTRIES_MAX) {
		master_diag(x, line, false, "more than %d entries", MX_MASTER_ENTRIES_MAX);
		return;
	}
	struct mx_master_entry *entries = realloc(m->entries, (m->nentries + 1) * sizeof(*entries));
	if (!entries) {
		x->oom = true;
		return;
	}
	m->entries = entries;
	struct mx_master_entry *e = &m->entries[m->nentries++];
	*e = (struct mx_master_entry){ .line = line };
	bool ok = true;
	for (int col = 0; col < MX_MASTER_COLUMN_MAX; col++) {
		e->column[col] = master_strndup(x, t[col].p, t[col].len);
		if (!e->column[col])
			return;
		if (!master_column_ok((enum mx_master_column)col, e->column[col])) {
			master_diag(x, t[col].line, false, "bad %s field: \"%.*s\"",
				    master_column_names[col],
				    (int)(t[col].len > MASTER_SHOW_MAX ? MASTER_SHOW_MAX
								       : t[col].len),
				    t[col].p);
			ok = false;
		}
	}
	/* The command and its arguments, as postconf -M shows them ("-oX" as "-o X"). */
	for (size_t i = 7; i < nt; i++) {
		const char *a = t[i].p;
		size_t n = t[i].len;
		bool value = i > 8 && t[i - 1].len == 2 && !memcmp(t[i - 1].p, "-o", 2);
		if (i > 7 && n > 2 && a[0] == '-' && a[1] == 'o') {
			if (!master_push_arg(x, e, master_strndup(x, "-o", 2)))
				return;
			a += 2;
			n -= 2;
			value = true;
		}
		char *arg = value ? master_print_override(x, a, n) : master_print_form(x, a, n);
		if (!master_push_arg(x, e, arg))
			return;
	}
	if (!ok)
		return;

	const char *name = e->column[MX_MASTER_SERVICE], *type = e->column[MX_MASTER_TYPE];
	const char *command = e->argv[0];
	for (size_t i = 0; i + 1 < m->nentries; i++) {
		if (!strcmp(m->entries[i].column[MX_MASTER_SERVICE], name) &&
		    m->entries[i].column[MX_MASTER_TYPE] &&
		    !strcmp(m->entries[i].column[MX_MASTER_TYPE], type)) {
			master_diag(x, line, false, "duplicate service %s/%s (also line %u)", name,
				    type, m->entries[i].line);
			return;
		}
	}
	/* postscreen hands clients that pass to the pass service named smtpd
	 * (smtpd_service_name): its -o apply to every postscreen service */
	if (!strcmp(type, "pass") && !strcmp(command, "smtpd") && !strcmp(name, "smtpd")) {
		if (m->pass.name) {
			master_diag(x, line, false, "a second smtpd pass service (also line %u)",
				    m->pass.line);
			return;
		}
		m->pass.line = line;
		if (!(m->pass.name = master_strndup(x, name, strlen(name))))
			return;
		master_smtpd_args(x, &m->pass, t, nt);
		return;
	}
	bool screen = !strcmp(type, "inet") && !strcmp(command, "postscreen");
	if (!screen && (strcmp(type, "inet") != 0 || strcmp(command, "smtpd") != 0)) {
		bool refuse;
		const char *why = master_skip_why(command, &refuse);
		if (!why) {
			/* An unknown inet program accepts something mxgate will not. */
			refuse = strcmp(type, "inet") == 0;
			why = refuse ? "an inet service mxgate cannot provide: what it accepts "
				       "would be refused"
				     : "a program mxgate does not run";
		}
		if (strcmp(command, "smtpd") != 0 && strcmp(type, "inet") == 0 &&
		    strcmp(command, "qmqpd") != 0) {
			refuse = true;
			why = "an inet service mxgate cannot provide: what it accepts would be "
			      "refused";
		}
		master_diag(x, line, !refuse, "service %s/%s (%s): %s%s", name, type, command,
			    refuse ? "not implemented by mxgate: " : "skipped: ", why);
		return;
	}

	/* An inet smtpd: a service. */
	if (m->nservices >= MX_MASTER_SERVICES_MAX) {
		master_diag(x, line, false, "service %s: more than %d smtpd services", name,
			    MX_MASTER_SERVICES_MAX);
		return;
	}
	struct mx_master_service *svcs = realloc(m->services, (m->nservices + 1) * sizeof(*svcs));
	if (!svcs) {
		x->oom = true;
		return;
	}
	m->services = svcs;
	struct mx_master_service *svc = &m->services[m->nservices++];
	*svc = (struct mx_master_service){ .line = line, .screen = screen };
	svc->name = master_strndup(x, name, strlen(name));
	if (!svc->name)
		return;
	if (!master_listen(x, svc))
		return;
	/* Two services on one address and port cannot both listen. */
	for (size_t s = 0; s + 1 < m->nservices; s++) {
		const struct mx_master_service *o = &m->services[s];
		for (unsigned i = 0; i < o->listen_count; i++)
			for (unsigned j = 0; j < svc->listen_count; j++)
				if (o->listen[i].port == svc->listen[j].port &&
				    (!strcmp(o->listen[i].host, svc->listen[j].host))) {
					master_diag(x, line, false,
						    "service %s: listens on port %u as service %s "
						    "(line %u) does",
						    name, svc->listen[j].port, o->name, o->line);
					return;
				}
	}
	master_smtpd_args(x, svc, t, nt);
}

/* Split a logical line into tokens; {groups} stay inside one token. Returns the count,
 * or SIZE_MAX after an error. lines[i] is the physical line of byte i. */
static size_t master_tokens(struct master_ctx *x, const char *s, size_t len,
			    const unsigned *lines, struct master_token *t, size_t max)
{
	size_t n = 0, i = 0;
	while (i < len) {
		while (i < len && master_is_space(s[i]))
			i++;
		if (i >= len)
			break;
		size_t start = i;
		int level = 0;
		for (; i < len; i++) {
			if (s[i] == '{')
				level++;
			else if (s[i] == '}' && level > 0)
				level--;
			else if (s[i] == '}')
				break;
			else if (level == 0 && master_is_space(s[i]))
				break;
		}
		if (level > 0 || (i < len && s[i] == '}')) {
			master_diag(x, lines[start], false, "unbalanced {} in \"%.*s\"",
				    (int)(i - start > MASTER_SHOW_MAX ? MASTER_SHOW_MAX : i - start),
				    s + start);
			return SIZE_MAX;
		}
		if (n == max) {
			master_diag(x, lines[start], false, "more than %d fields", (int)max);
			return SIZE_MAX;
		}
		t[n++] = (struct master_token){ .p = s + start, .len = i - start,
						.line = lines[start] };
	}
	return n;
}

static void master_logical_line(struct master_ctx *x, const char *s, size_t len,
				const unsigned *lines)
{
	struct master_token t[MX_MASTER_ARGS_MAX + 8];
	size_t nt = master_tokens(x, s, len, lines, t, sizeof(t) / sizeof(t[0]));
	if (nt != SIZE_MAX && nt > 0)
		master_entry(x, t, nt);
}

static void master_read(struct master_ctx *x, const char *text, size_t len)
{
	char *logical = malloc(len + 1);
	unsigned *lines = malloc((len + 1) * sizeof(*lines));
	if (!logical || !lines) {
		free(logical);
		free(lines);
		x->oom = true;
		return;
	}
	size_t llen = 0;
	bool open = false, discarding = false, broken = false;
	unsigned line = 0;
	for (size_t pos = 0; pos <= len && !x->oom;) {
		bool at_end = pos == len;
		const char *phys = text + pos;
		size_t plen = 0;
		if (!at_end) {
			const char *nl = memchr(phys, '\n', len - pos);
			plen = nl ? (size_t)(nl - phys) : len - pos;
			pos += plen + (nl != NULL);
			line++;
			if (plen && phys[plen - 1] == '\r')
				plen--;
		} else {
			pos++;
		}
		size_t first = 0;
		while (first < plen && master_is_space(phys[first]))
			first++;
		bool skip = !at_end && (first == plen || phys[first] == '#');
		if (skip)
			continue;
		bool continuation = !at_end && first > 0;
		if (!continuation) {
			if (open && !discarding && !broken)
				master_logical_line(x, logical, llen, lines);
			open = discarding = broken = false;
			llen = 0;
			if (at_end)
				break;
			open = true;
		} else if (!open) {
			master_diag(x, line, true,
				    "logical line must not start with whitespace: \"%.*s\"",
				    (int)(plen > 30 ? 30 : plen), phys);
			open = discarding = true;
			continue;
		}
		if (discarding || broken)
			continue;
		for (size_t i = 0; i < plen; i++) {
			unsigned char ch = (unsigned char)phys[i];
			if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
				master_diag(x, line, false,
					    "control character 0x%02x in the text (column %zu)", ch,
					    i + 1);
				broken = true;
				break;
			}
		}
		if (broken)
			continue;
		/* Joined with a blank, so a continuation is a new token. */
		if (llen) {
			logical[llen] = ' ';
			lines[llen++] = line;
		}
		memcpy(logical + llen, phys, plen);
		for (size_t i = 0; i < plen; i++)
			lines[llen + i] = line;
		llen += plen;
	}
	free(logical);
	free(lines);
}

static void master_free_entry(struct mx_master_entry *e)
{
	for (int c = 0; c < MX_MASTER_COLUMN_MAX; c++)
		free(e->column[c]);
	for (size_t i = 0; i < e->argc; i++)
		free(e->argv[i]);
	free(e->argv);
}

static void master_service_free(struct mx_master_service *svc)
{
	free(svc->name);
	for (size_t i = 0; i < svc->noverrides; i++) {
		free(svc->overrides[i].name);
		free(svc->overrides[i].value);
	}
	free(svc->overrides);
}

/* Every postscreen service takes the smtpd pass line's overrides after its own; a
 * postscreen service without a pass service to hand clients to is an error (Postfix's
 * postscreen would fail every client that passed), a pass service without postscreen a
 * warning. */
static void master_screen_pass(struct master_ctx *x)
{
	struct mx_master *m = x->m;
	bool any = false;
	for (size_t s = 0; s < m->nservices && !x->oom; s++) {
		struct mx_master_service *svc = &m->services[s];
		if (!svc->screen)
			continue;
		any = true;
		if (!m->pass.name) {
			master_diag(x, svc->line, false, "service %s (postscreen): no \"smtpd pass\" "
				    "service to hand clients to", svc->name);
			continue;
		}
		for (size_t i = 0; i < m->pass.noverrides; i++) {
			const struct mx_master_override *o = &m->pass.overrides[i];
			struct mx_master_override *n =
				realloc(svc->overrides, (svc->noverrides + 1) * sizeof(*n));
			char *name = strdup(o->name), *value = strdup(o->value);
			if (!n || !name || !value) {
				if (n)
					svc->overrides = n;
				free(name);
				free(value);
				x->oom = true;
				return;
			}
			svc->overrides = n;
			n[svc->noverrides++] = (struct mx_master_override){
				.name = name, .value = value, .line = o->line };
		}
	}
	if (m->pass.name && !any)
		master_diag(x, m->pass.line, true, "service smtpd/pass (smtpd): skipped: no "
			    "postscreen service hands clients to it");
}

void mx_master_free(struct mx_master *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nentries; i++)
		master_free_entry(&m->entries[i]);
	free(m->entries);
	for (size_t s = 0; s < m->nservices; s++)
		master_service_free(&m->services[s]);
	master_service_free(&m->pass);
	free(m->services);
	free(m->path);
	free(m);
}

int mx_master_parse(const char *text, size_t len, const char *name, struct mx_master **out,
		    FILE *diag)
{
	*out = NULL;
	if (len > MX_MASTER_FILE_MAX) {
		if (diag)
			fprintf(diag, "%s: file is larger than %u bytes\n", name,
				MX_MASTER_FILE_MAX);
		return -EFBIG;
	}
	struct master_ctx x = { .file = name };
	x.m = calloc(1, sizeof(*x.m));
	if (!x.m || !(x.m->path = strdup(name))) {
		mx_master_free(x.m);
		return -ENOMEM;
	}
	master_read(&x, text, len);
	if (!x.oom)
		master_screen_pass(&x);
	if (!x.oom && !x.errors && x.m->nservices == 0)
		master_diag(&x, 0, false, "no inet smtpd service: mxgate would accept no mail");
	master_diag_flush(&x, diag);
	if (x.oom) {
		mx_master_free(x.m);
		return -ENOMEM;
	}
	if (x.errors) {
		mx_master_free(x.m);
		return -EINVAL;
	}
	*out = x.m;
	return 0;
}

int mx_master_load(const char *path, struct mx_master **out, FILE *diag)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		close(fd);
		return -e;
	}
	char *buf = malloc(MX_MASTER_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, MX_MASTER_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return -e;
		}
		if (n == 0 || (len += (size_t)n) > MX_MASTER_FILE_MAX)
			break;
	}
	close(fd);
	int rc = mx_master_parse(buf, len, path, out, diag);
	free(buf);
	return rc;
}

const struct mx_master_service *mx_master_find(const struct mx_master *m, const char *name)
{
	for (size_t i = 0; m && i < m->nservices; i++)
		if (strcmp(m->services[i].name, name) == 0)
			return &m->services[i];
	return NULL;
}

/* postconf -M: the columns padded to 10, 5, 7, 7, 7, 7, 7 (a longer one pushes the rest
 * right, at least one blank between two), then the command and its arguments. */
static void master_print_entry(FILE *f, const struct mx_master_entry *e)
{
	static const int widths[MX_MASTER_COLUMN_MAX] = { 10, 5, 7, 7, 7, 7, 7 };
	size_t col = 0, target = 0;
	for (int c = 0; c < MX_MASTER_COLUMN_MAX; c++) {
		fputs(e->column[c], f);
		col += strlen(e->column[c]);
		target += (size_t)widths[c] + 1;
		size_t pad = target > col ? target - col : 1;
		for (size_t i = 0; i < pad; i++)
			fputc(' ', f);
		col += pad;
	}
	for (size_t i = 0; i < e->argc; i++)
		fprintf(f, "%s%s", i ? " " : "", e->argv[i]);
	fputc('\n', f);
}

size_t mx_master_print(FILE *f, const struct mx_master *m, const char *const *names)
{
	size_t unmatched = 0;
	if (!names || !names[0]) {
		for (size_t i = 0; i < m->nentries; i++)
			master_print_entry(f, &m->entries[i]);
		return 0;
	}
	for (size_t k = 0; names[k]; k++) {
		const char *slash = strchr(names[k], '/');
		size_t nl = slash ? (size_t)(slash - names[k]) : strlen(names[k]);
		bool found = false;
		for (size_t i = 0; i < m->nentries; i++) {
			const struct mx_master_entry *e = &m->entries[i];
			if (strlen(e->column[MX_MASTER_SERVICE]) != nl ||
			    strncmp(e->column[MX_MASTER_SERVICE], names[k], nl) != 0)
				continue;
			if (slash && strcmp(e->column[MX_MASTER_TYPE], slash + 1) != 0)
				continue;
			master_print_entry(f, e);
			found = true;
		}
		unmatched += !found;
	}
	return unmatched;
}
