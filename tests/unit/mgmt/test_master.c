/* mgmt/master.c and the services of mgmt/config.c: master.cf in Postfix's master(5)
 * syntax (every form, errors at their lines, Debian 12's stock file), `postconf -M`'s
 * printed form, and each service's effective configuration (main.cf with its -o
 * overrides). */
#include <errno.h>
#include <stdbool.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "mgmt/config_params.h"
#include "mgmt/master.h"
#include "testing.h"

struct parsed {
	int rc;
	struct mx_master *m;
	char *diag;
};

/* Parse from a heap buffer of exactly the text's length (ASan sees any over-read). */
static struct parsed parse_n(const char *text, size_t len)
{
	struct parsed p = { 0 };
	char *buf = malloc(len ? len : 1);
	memcpy(buf, text, len);
	size_t n = 0;
	FILE *f = open_memstream(&p.diag, &n);
	p.rc = mx_master_parse(buf, len, "m.cf", &p.m, f);
	fclose(f);
	free(buf);
	return p;
}

static struct parsed parse(const char *text)
{
	return parse_n(text, strlen(text));
}

static void parsed_free(struct parsed *p)
{
	mx_master_free(p->m);
	free(p->diag);
	*p = (struct parsed){ 0 };
}

static void expect_master_error(const char *text, const char *want)
{
	struct parsed p = parse(text);
	if (p.rc != -EINVAL || !strstr(p.diag, want))
		fprintf(stderr, "  master.cf:\n%s\n  rc %d, diag:\n%s  want: %s\n", text, p.rc,
			p.diag, want);
	CHECK_INT_EQ(p.rc, -EINVAL);
	CHECK(strstr(p.diag, want) != NULL);
	parsed_free(&p);
}

static char *printed(const struct mx_master *m)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	mx_master_print(f, m, NULL);
	fclose(f);
	return out;
}

#define SMTP_LINE "smtp      inet  n       -       y       -       -       smtpd\n"
#define SMTP_PRINTED "smtp       inet  n       -       y       -       -       smtpd\n"

static void test_forms(void)
{
	struct parsed p = parse(
		"# comment\n"
		"\n"
		SMTP_LINE
		"submission inet n       -       y       -       -       smtpd\n"
		"  -o syslog_name=postfix/submission\n"
		"  # a comment inside the entry\n"
		"  -o { smtpd_client_restrictions = permit_mynetworks, reject }\n"
		"\t-osmtpd_banner=$myhostname\n"
		"  -o {smtpd_timeout=30s}\n"
		"127.0.0.1:10025 inet n  -       n       -       -       smtpd\r\n"
		"[::1]:2525 inet  n       -       n       -       -       smtpd -o "
		"smtpd_helo_required=yes\n"
		"*:2526 inet n - n - - smtpd\n"
		"2527 inet n - n - - smtpd\n"
		"pickup    unix  n       -       y       60      1       pickup\n"
		"maildrop  unix  -       n       n       -       -       pipe\n"
		"  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}");
	CHECK_INT_EQ(p.rc, 0);
	if (!p.m) {
		fprintf(stderr, "%s", p.diag);
		return;
	}
	CHECK_INT_EQ(p.m->nentries, 8);
	CHECK_INT_EQ(p.m->nservices, 6);
	const struct mx_master_service *s = mx_master_find(p.m, "smtp");
	CHECK(s && s->line == 3 && s->listen_count == 2 && s->noverrides == 0);
	if (s) {
		CHECK_STR_EQ(s->listen[0].host, "0.0.0.0");
		CHECK_STR_EQ(s->listen[1].host, "::");
		CHECK_INT_EQ(s->listen[0].port, 25);
	}
	s = mx_master_find(p.m, "submission");
	CHECK(s && s->listen[0].port == 587 && s->noverrides == 4);
	if (s && s->noverrides == 4) {
		CHECK_STR_EQ(s->overrides[0].name, "syslog_name");
		CHECK_STR_EQ(s->overrides[0].value, "postfix/submission");
		CHECK_INT_EQ(s->overrides[0].line, 5);
		CHECK_STR_EQ(s->overrides[1].name, "smtpd_client_restrictions");
		CHECK_STR_EQ(s->overrides[1].value, "permit_mynetworks, reject");
		CHECK_INT_EQ(s->overrides[1].line, 7);
		CHECK_STR_EQ(s->overrides[2].name, "smtpd_banner");
		CHECK_STR_EQ(s->overrides[2].value, "$myhostname");
		CHECK_STR_EQ(s->overrides[3].name, "smtpd_timeout");
		CHECK_STR_EQ(s->overrides[3].value, "30s");
	}
	s = mx_master_find(p.m, "127.0.0.1:10025");
	CHECK(s && s->listen_count == 1 && s->listen[0].port == 10025);
	if (s)
		CHECK_STR_EQ(s->listen[0].host, "127.0.0.1");
	s = mx_master_find(p.m, "[::1]:2525");
	CHECK(s && s->listen_count == 1 && s->listen[0].port == 2525 && s->noverrides == 1);
	if (s)
		CHECK_STR_EQ(s->listen[0].host, "::1");
	s = mx_master_find(p.m, "*:2526");
	CHECK(s && s->listen_count == 2 && s->listen[1].port == 2526);
	s = mx_master_find(p.m, "2527");
	CHECK(s && s->listen_count == 2 && s->listen[0].port == 2527);
	CHECK(mx_master_find(p.m, "pickup") == NULL);
	/* the skipped entries are warnings, at their lines */
	CHECK(strstr(p.diag, "m.cf:14: warning: service pickup/unix (pickup): skipped: "));
	CHECK(strstr(p.diag, "m.cf:15: warning: service maildrop/unix (pipe): skipped: "));

	/* as postconf -M prints them */
	char *out = printed(p.m);
	CHECK_STR_EQ(out,
		     SMTP_PRINTED
		     "submission inet  n       -       y       -       -       smtpd -o "
		     "syslog_name=postfix/submission -o {smtpd_client_restrictions=permit_"
		     "mynetworks, reject} -o smtpd_banner=$myhostname -o smtpd_timeout=30s\n"
		     "127.0.0.1:10025 inet n   -       n       -       -       smtpd\n"
		     "[::1]:2525 inet  n       -       n       -       -       smtpd -o "
		     "smtpd_helo_required=yes\n"
		     "*:2526     inet  n       -       n       -       -       smtpd\n"
		     "2527       inet  n       -       n       -       -       smtpd\n"
		     "pickup     unix  n       -       y       60      1       pickup\n"
		     "maildrop   unix  -       n       n       -       -       pipe "
		     "flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}\n");
	free(out);
	/* only some */
	out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	const char *names[] = { "pickup/unix", "smtp", "nosuch/inet", NULL };
	CHECK_INT_EQ(mx_master_print(f, p.m, names), 1);
	fclose(f);
	CHECK_STR_EQ(out, "pickup     unix  n       -       y       60      1       pickup\n"
			  SMTP_PRINTED);
	free(out);
	parsed_free(&p);
}

static void test_errors(void)
{
	expect_master_error(SMTP_LINE "bad inet n - y - -\n", "m.cf:2: bad field count: 7");
	expect_master_error(SMTP_LINE "x tcp n - y - - smtpd\n", "m.cf:2: bad type field");
	expect_master_error(SMTP_LINE "x inet maybe - y - - smtpd\n", "m.cf:2: bad private field");
	expect_master_error(SMTP_LINE "x unix n - y 1x - pickup\n", "m.cf:2: bad wakeup field");
	expect_master_error(SMTP_LINE "x unix n - y - many pickup\n", "m.cf:2: bad maxproc field");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd\n  -o {a = b\n",
			    "m.cf:3: unbalanced {}");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd -o novalue\n",
			    "m.cf:2: -o novalue: expected name=value");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd\n -o\n",
			    "m.cf:3: service 2525: -o without name=value");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd -o =x\n", "expected name=value");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd -o {a b=x}\n",
			    "bad parameter name");
	/* global parameters cannot be set per service */
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd\n"
			    "  -o smtpd_timeout=10s\n  -o mxgate_workers=2\n",
			    "m.cf:4: service 2525: -o mxgate_workers: a global parameter; it can be "
			    "set in main.cf only");
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd -o relayhost=[192.0.2.1]\n",
			    "-o relayhost: a global parameter");
	/* anvil's window is anvil(8)'s, one for every service */
	expect_master_error(SMTP_LINE "2525 inet n - y - - smtpd -o anvil_rate_time_unit=10s\n",
			    "-o anvil_rate_time_unit: a global parameter");
	/* names */
	expect_master_error(SMTP_LINE "nosuchservice inet n - y - - smtpd\n",
			    "m.cf:2: service nosuchservice: \"nosuchservice\" is not a port");
	expect_master_error(SMTP_LINE "mx.example.com:25 inet n - y - - smtpd\n",
			    "is not a numeric IPv4 address (mxgate does no DNS lookups)");
	expect_master_error(SMTP_LINE "::1:25 inet n - y - - smtpd\n",
			    "write an IPv6 address as [ADDR]:PORT");
	expect_master_error(SMTP_LINE "[::1]25 inet n - y - - smtpd\n", "expected [IPV6]:PORT");
	expect_master_error(SMTP_LINE "[127.0.0.1]:25 inet n - y - - smtpd\n",
			    "not a numeric IPv6 address");
	expect_master_error(SMTP_LINE "0 inet n - y - - smtpd\n", "is not a port number");
	expect_master_error(SMTP_LINE "65536 inet n - y - - smtpd\n", "is not a port number");
	expect_master_error(SMTP_LINE "25 inet n - y - - smtpd\n",
			    "m.cf:2: service 25: listens on port 25 as service smtp (line 1) does");
	expect_master_error(SMTP_LINE "smtp inet n - y - - smtpd\n",
			    "m.cf:2: duplicate service smtp/inet (also line 1)");
	/* what skipping would change: refused */
	expect_master_error("smtp inet n - y - 1 postscreen\n"
			    "dnsblog unix - - y - 0 dnsblog\n",
			    "m.cf:1: service smtp (postscreen): no \"smtpd pass\" service to hand "
			    "clients to");
	expect_master_error(SMTP_LINE "other pass - - y - - smtpd\n",
			    "m.cf:2: service other/pass (smtpd): not implemented by mxgate: an "
			    "smtpd that is not an inet listener");
	expect_master_error("smtp inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\n"
			    "smtpd pass - - y - - smtpd\n", "m.cf:3: duplicate service smtpd/pass");
	expect_master_error(SMTP_LINE "628 inet n - y - - qmqpd\n",
			    "service 628/inet (qmqpd): not implemented by mxgate: mxgate does not "
			    "accept QMQP");
	expect_master_error(SMTP_LINE "2000 inet n - y - - mydaemon\n",
			    "an inet service mxgate cannot provide");
	expect_master_error("pickup unix n - y 60 1 pickup\n",
			    "no inet smtpd service: mxgate would accept no mail");
	expect_master_error(SMTP_LINE "x unix - - y - - smtp\x01\n",
			    "m.cf:2: control character 0x01");
	/* all problems, in line order */
	struct parsed p = parse("a inet n - y - - smtpd\nb tcp n - y - - smtpd\n"
				"c inet n - y - - smtpd -o x\n");
	CHECK_STR_EQ(p.diag, "m.cf:1: service a: \"a\" is not a port number or a service name "
			     "in /etc/services\n"
			     "m.cf:2: bad type field: \"tcp\"\n"
			     "m.cf:3: service c: \"c\" is not a port number or a service name in "
			     "/etc/services\n");
	parsed_free(&p);
	/* warnings alone */
	p = parse("  leading continuation\n" SMTP_LINE "  -v\n");
	CHECK_INT_EQ(p.rc, 0);
	CHECK(strstr(p.diag, "m.cf:1: warning: logical line must not start with whitespace"));
	CHECK(strstr(p.diag, "m.cf:3: warning: service smtp: argument \"-v\" ignored"));
	parsed_free(&p);
	/* bounds */
	char *big = malloc(MX_MASTER_FILE_MAX + 2);
	memset(big, '#', MX_MASTER_FILE_MAX + 1);
	p = parse_n(big, MX_MASTER_FILE_MAX + 1);
	CHECK_INT_EQ(p.rc, -EFBIG);
	parsed_free(&p);
	free(big);
	char text[8192];
	size_t len = 0;
	for (int i = 0; i < 17; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"%d inet n - y - - smtpd\n", 3000 + i);
	expect_master_error(text, "more than 16 smtpd services");
}

/* Debian 12's stock master.cf (the postfix package's conffile): warnings only, one
 * service. Without the package this fails, naming it: the test must not pass unchecked. */
/* postscreen in front of smtpd, as Postfix writes it: one service with the screen on,
 * the postscreen line's overrides then the pass line's. */
static void test_postscreen(void)
{
	struct parsed p = parse("smtpd pass - - y - - smtpd\n  -o smtpd_banner=inner\n"
				"smtp inet n - y - 1 postscreen\n"
				"  -o postscreen_greet_action=enforce\n"
				"dnsblog unix - - y - 0 dnsblog\n"
				"2525 inet n - y - - smtpd\n");
	CHECK_INT_EQ(p.rc, 0);
	if (p.m) {
		CHECK_INT_EQ(p.m->nservices, 2);
		const struct mx_master_service *s = &p.m->services[0];
		CHECK_STR_EQ(s->name, "smtp");
		CHECK(s->screen);
		CHECK_INT_EQ(s->noverrides, 2);
		if (s->noverrides == 2) {
			CHECK_STR_EQ(s->overrides[0].name, "postscreen_greet_action");
			CHECK_STR_EQ(s->overrides[1].name, "smtpd_banner");
			CHECK_STR_EQ(s->overrides[1].value, "inner");
			CHECK_INT_EQ(s->overrides[1].line, 2);
		}
		CHECK(!p.m->services[1].screen);
	}
	parsed_free(&p);
	/* a pass service without postscreen: skipped with a warning */
	p = parse("smtp inet n - y - - smtpd\nsmtpd pass - - y - - smtpd\n");
	CHECK_INT_EQ(p.rc, 0);
	CHECK(p.diag && strstr(p.diag, "m.cf:2: warning: service smtpd/pass (smtpd): skipped"));
	parsed_free(&p);
}

static void test_debian(void)
{
	const char *path = "/etc/postfix/master.cf";
	if (access(path, R_OK) != 0) {
		fprintf(stderr, "  FAIL: %s is missing: install Debian package 'postfix' "
				"(deploy/install-deps.sh installs it)\n",
			path);
		CHECK(false);
		return;
	}
	struct mx_master *m = NULL;
	char *diag = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&diag, &n);
	int rc = mx_master_load(path, &m, f);
	fclose(f);
	CHECK_INT_EQ(rc, 0);
	CHECK(m && m->nservices == 1 && strcmp(m->services[0].name, "smtp") == 0);
	CHECK(m && m->nentries >= 20);
	CHECK(strstr(diag, ": warning: service pickup/unix (pickup): skipped") != NULL);
	CHECK(strstr(diag, ": warning: service relay/unix (smtp): skipped: a delivery transport"));
	CHECK(strstr(diag, "warning: service maildrop/unix (pipe)") != NULL);
	/* every line of the diagnostics is a warning */
	for (const char *p = diag; p && *p; p = strchr(p, '\n') + 1) {
		CHECK(strstr(p, ": warning: ") && strstr(p, ": warning: ") < strchr(p, '\n'));
		if (!strchr(p, '\n'))
			break;
	}
	if (m && getenv("MXGATE_PRINT"))
		mx_master_print(stdout, m, NULL);
	mx_master_free(m);
	free(diag);
	CHECK_INT_EQ(mx_master_load("/nonexistent/master.cf", &m, NULL), -ENOENT);
}

/* The whole text, split at every offset into two buffers of exactly their length, gives
 * the same result as whole: the reader sees one buffer, so this checks that no parse
 * depends on bytes past the end (ASan), and byte by byte every prefix parses or fails
 * cleanly. */
static void test_every_prefix(void)
{
	static const char text[] = SMTP_LINE
		"submission inet n - y - - smtpd\n  -o { smtpd_banner = $myhostname ESMTP }\n"
		"  -osmtpd_timeout=10s -v\n"
		"[::1]:2525 inet n - n - - smtpd\r\n"
		"pickup unix n - y 60 1 pickup\n";
	size_t len = sizeof(text) - 1;
	for (size_t cut = 0; cut <= len; cut++) {
		struct parsed p = parse_n(text, cut);
		CHECK(p.rc == 0 || p.rc == -EINVAL);
		CHECK((p.rc == 0) == (p.m != NULL));
		parsed_free(&p);
	}
	struct parsed whole = parse_n(text, len);
	CHECK_INT_EQ(whole.rc, 0);
	CHECK(whole.m && whole.m->nservices == 3);
	parsed_free(&whole);
}

/* ------------------------------------------------------------------------------------
 * Services' effective configurations. */

static char dir[64];

static char *write_file(const char *name, const char *text)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

struct loaded {
	int rc;
	struct mx_config *cfg;
	char *diag;
};

static struct loaded load_with_master(const char *main_cf, const char *master_cf)
{
	char *mpath = write_file("master.cf", master_cf);
	char *text = NULL;
	if (asprintf(&text, "myhostname = mx.example.com\nmxgate_master_file = %s\n%s", mpath,
		     main_cf) < 0)
		text = NULL;
	char *cpath = write_file("mxgate.cf", text);
	struct loaded l = { 0 };
	size_t n = 0;
	FILE *f = open_memstream(&l.diag, &n);
	l.rc = mx_config_load(cpath, &l.cfg, f);
	fclose(f);
	free(text);
	free(mpath);
	free(cpath);
	return l;
}

static void loaded_free(struct loaded *l)
{
	mx_config_free(l->cfg);
	free(l->diag);
	*l = (struct loaded){ 0 };
}

static struct mx_config *service(const struct loaded *l, const char *name, char **diag)
{
	const struct mx_master *m = mx_config_master(l->cfg);
	const struct mx_master_service *svc = m ? mx_master_find(m, name) : NULL;
	CHECK(svc != NULL);
	if (!svc)
		return NULL;
	struct mx_config *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(diag, &n);
	int rc = mx_config_load_service(l->cfg, svc, &out, f);
	fclose(f);
	if (rc != 0)
		fprintf(stderr, "  service %s: rc %d: %s", name, rc, *diag);
	CHECK_INT_EQ(rc, 0);
	CHECK(!out || mx_config_service(out) == svc);
	return out;
}

static void test_services(void)
{
	struct loaded l = load_with_master(
		"mynetworks = 192.0.2.0/24\n"
		"my_clients = permit_mynetworks, reject\n"
		"smtpd_client_restrictions = $my_clients\n"
		"smtpd_banner = $myhostname ESMTP $mail_name\n"
		"mail_name = Gate\n",
		SMTP_LINE
		"submission inet n - y - - smtpd\n"
		"  -o mail_name=Submit\n"
		"  -o my_clients=permit_mynetworks,reject_unauth_destination\n"
		"  -o smtpd_timeout=20s -o mynetworks=198.51.100.0/24\n"
		"  -o message_size_limit=1000\n"
		"  -o smtpd_client_connection_count_limit=5\n"
		"  -o smtpd_client_ipv4_prefix_length=24\n");
	CHECK_INT_EQ(l.rc, 0);
	if (!l.cfg) {
		fprintf(stderr, "%s", l.diag);
		return;
	}
	CHECK_STR_EQ(l.diag, "");
	/* main.cf alone keeps mxgate_listen; the services are there for the lead to bind */
	CHECK_INT_EQ(l.cfg->listen_count, 1);
	CHECK(mx_config_service(l.cfg) == NULL);
	CHECK_INT_EQ(mx_config_master(l.cfg)->nservices, 2);

	char *diag = NULL;
	struct mx_config *smtp = service(&l, "smtp", &diag);
	CHECK_STR_EQ(diag, "");
	free(diag);
	if (smtp) {
		CHECK_STR_EQ(smtp->smtpd_banner, "mx.example.com ESMTP Gate");
		CHECK_STR_EQ(mx_config_get(smtp, "smtpd_client_restrictions"),
			     "permit_mynetworks, reject");
		CHECK_INT_EQ(smtp->listen_count, 2);
		CHECK_INT_EQ(smtp->listen[0].port, 25);
		CHECK_INT_EQ(smtp->smtpd_timeout_s, 300);
		CHECK_INT_EQ(smtp->client_connection_count_limit, 50);
		CHECK_INT_EQ(smtp->client_ipv4_prefix_length, 32);
	}
	diag = NULL;
	struct mx_config *sub = service(&l, "submission", &diag);
	CHECK_STR_EQ(diag, "");
	free(diag);
	if (sub) {
		/* the override replaces the value, and $name elsewhere sees it */
		CHECK_STR_EQ(sub->mail_name, "Submit");
		CHECK_STR_EQ(sub->smtpd_banner, "mx.example.com ESMTP Submit");
		CHECK_STR_EQ(mx_config_get(sub, "smtpd_client_restrictions"),
			     "permit_mynetworks,reject_unauth_destination");
		CHECK_INT_EQ(sub->smtpd_timeout_s, 20);
		CHECK_INT_EQ(sub->smtp.message_size_limit, 1000);
		CHECK_INT_EQ(netlist_count(sub->mynetworks), 1);
		/* anvil's limits per service; the exceptions follow the service's mynetworks */
		CHECK_INT_EQ(sub->client_connection_count_limit, 5);
		CHECK_INT_EQ(sub->client_ipv4_prefix_length, 24);
		struct mx_inet_addr a;
		CHECK(mx_inet_parse("198.51.100.7", &a));
		CHECK(netlist_match(sub->event_limit_exceptions, &a));
		CHECK(mx_inet_parse("192.0.2.7", &a));
		CHECK(!netlist_match(sub->event_limit_exceptions, &a));
		CHECK_INT_EQ(sub->listen[0].port, 587);
		/* where each value comes from */
		unsigned line;
		const char *file = mx_config_source(sub, "smtpd_timeout", &line);
		CHECK(file && strstr(file, "master.cf") && line == 5);
		file = mx_config_source(sub, "smtpd_banner", &line);
		CHECK(file && strstr(file, "mxgate.cf") && line == 6);
		CHECK_INT_EQ(mx_config_line(sub, "mail_name"), 3);
		/* restart-class parameters are the same: a service changes only live ones */
		const char *names[4];
		CHECK_INT_EQ(mx_config_restart_changes(l.cfg, sub, names, 4), 0);
	}
	mx_config_free(smtp);
	mx_config_free(sub);
	loaded_free(&l);

	/* A bad override fails the whole load, at its master.cf line. */
	l = load_with_master("", SMTP_LINE "2525 inet n - y - - smtpd\n"
				 "  -o smtpd_timeout=never\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "/master.cf:3: parameter smtpd_timeout: bad time value or unit: "
			     "never") != NULL);
	loaded_free(&l);
	/* An override that breaks a main.cf value that refers to it: said at main.cf's line,
	 * naming the service. */
	l = load_with_master("mydestination = $dest\ndest = example.com\n",
			     SMTP_LINE "2525 inet n - y - - smtpd -o dest=bad..example\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "/mxgate.cf:3: parameter mydestination: bad domain") != NULL);
	CHECK(strstr(l.diag, "(with the -o overrides of service 2525, ") != NULL);
	loaded_free(&l);
	/* Refused Postfix parameters are refused per service too. */
	l = load_with_master("", SMTP_LINE "submission inet n - y - - smtpd\n"
				 "  -o smtpd_tls_dcert_file=/etc/postfix/dsa.pem\n"
				 "  -o smtpd_milters=inet:127.0.0.1:8891\n"
				 "  -o syslog_name=postfix/submission\n"
				 "  -o smtpd_sasl_type=dovecot\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "/master.cf:3: smtpd_tls_dcert_file: not implemented by "
			     "mxgate") != NULL);
	CHECK(strstr(l.diag, "/master.cf:4: smtpd_milters: not implemented by mxgate") != NULL);
	CHECK(strstr(l.diag, "/master.cf:5: warning: service submission: -o "
			     "syslog_name=postfix/submission: not applied per service") != NULL);
	loaded_free(&l);
	/* A global parameter in -o is an error of the master file. */
	l = load_with_master("", SMTP_LINE "2525 inet n - y - - smtpd -o maillog_file=/x\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "/master.cf:2: service 2525: -o maillog_file: a global parameter"));
	CHECK(strstr(l.diag, "/mxgate.cf:2: parameter mxgate_master_file: "));
	loaded_free(&l);
	/* main.cf parameters that only master.cf uses are in use; mxgate_listen is not */
	l = load_with_master("mua_restrictions = permit_mynetworks, reject\n"
			     "mxgate_listen = 127.0.0.1:2525\n",
			     SMTP_LINE "submission inet n - y - - smtpd\n"
			     "  -o smtpd_client_restrictions=$mua_restrictions\n"
			     "  -o unknown_to_all=1\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK(strstr(l.diag, "mua_restrictions") == NULL);
	CHECK(strstr(l.diag, "/mxgate.cf:4: warning: mxgate_listen is not used") != NULL);
	CHECK(strstr(l.diag, "/master.cf:4: warning: unused parameter: unknown_to_all=1"));
	loaded_free(&l);
	/* a missing master file */
	struct mx_config *cfg = NULL;
	char *diag2 = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&diag2, &n);
	CHECK_INT_EQ(mx_config_load_string("myhostname = mx.example.com\n"
					   "mxgate_master_file = /nonexistent/master.cf\n",
					   "t.cf", &cfg, f),
		     -EINVAL);
	fclose(f);
	CHECK(strstr(diag2, "t.cf:2: parameter mxgate_master_file: /nonexistent/master.cf: "
			    "No such file or directory") != NULL);
	free(diag2);
	/* without a master file there is no service to load */
	CHECK_INT_EQ(mx_config_load_string("myhostname = mx.example.com\n", "t.cf", &cfg, NULL),
		     0);
	struct mx_config *none = NULL;
	CHECK(mx_config_master(cfg) == NULL);
	CHECK_INT_EQ(mx_config_load_service(cfg, NULL, &none, NULL), -EINVAL);
	CHECK(none == NULL);
	mx_config_free(cfg);
}

static void test_restart_changes(void)
{
	struct mx_config *a = NULL, *b = NULL;
	CHECK_INT_EQ(mx_config_load_string("myhostname = mx.example.com\n", "a", &a, NULL), 0);
	CHECK_INT_EQ(mx_config_load_string("myhostname = mx.example.com\nmxgate_workers = 3\n"
					   "smtpd_timeout = 10s\nmaillog_file = /var/log/m\n",
					   "b", &b, NULL),
		     0);
	const char *names[1];
	CHECK_INT_EQ(mx_config_restart_changes(a, b, names, 1), 2);
	CHECK_STR_EQ(names[0], "maillog_file");
	/* the registry's classes */
	for (size_t i = 0; i < MX_P_MAX; i++) {
		const struct mx_param_def *d = &mx_params[i];
		CHECK(d->scope < MX_SCOPE_MAX && d->reload < MX_RELOAD_MAX);
		/* a parameter a service may set is one a new generation can change */
		if (d->scope == MX_SCOPE_SERVICE)
			CHECK(d->reload == MX_RELOAD_LIVE);
		CHECK(d->field == MX_FIELD_NONE || d->offset < sizeof(struct mx_config));
	}
	CHECK_STR_EQ(mx_param_scope_name(MX_SCOPE_GLOBAL), "global");
	CHECK_STR_EQ(mx_param_reload_name(MX_RELOAD_RESTART), "restart");
	CHECK(mx_params[MX_P_MXGATE_TRANSPORT].scope == MX_SCOPE_GLOBAL);
	CHECK(mx_params[MX_P_SMTPD_RECIPIENT_RESTRICTIONS].scope == MX_SCOPE_SERVICE);
	mx_config_free(a);
	mx_config_free(b);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-master-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	RUN_TEST(test_forms);
	RUN_TEST(test_errors);
	RUN_TEST(test_postscreen);
	RUN_TEST(test_debian);
	RUN_TEST(test_every_prefix);
	RUN_TEST(test_services);
	RUN_TEST(test_restart_changes);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return TEST_RESULT();
}
