/* mgmt/config_refused.c and the policy checks of mgmt/policy.c: Postfix parameters mxgate
 * does not implement are refused when they would change what is accepted, encrypted,
 * filtered, rewritten or routed, and warned about when harmless; Debian 12's stock main.cf
 * loads with warnings only; every parameter `postconf -d` knows is classified (this needs
 * Debian's postfix package, and fails without it); restrictions that can never match are
 * warnings; an RBL zone without local data is an error. */
#include <errno.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "mgmt/config_params.h"
#include "mgmt/config_refused.h"
#include "mgmt/policy.h"
#include "load_config.h"
#include "testing.h"


/* `line` (line 2, after myhostname) is refused with exactly one error naming it. */
static void expect_refused(const char *line)
{
	char text[1024], want[256];
	snprintf(text, sizeof(text), "myhostname = mx.example.com\n%s\n", line);
	size_t nl = strcspn(line, " =");
	snprintf(want, sizeof(want), "t.cf:2: %.*s: not implemented by mxgate: ", (int)nl, line);
	struct load l = load(text);
	if (l.rc != -EINVAL || strncmp(l.diag, want, strlen(want)) != 0 ||
	    strchr(l.diag, '\n') != l.diag + strlen(l.diag) - 1)
		fprintf(stderr, "  \"%s\": rc %d, want one line \"%s...\", got:\n%s", line, l.rc,
			want, l.diag);
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strncmp(l.diag, want, strlen(want)) == 0);
	load_free(&l);
}

/* `line` loads; with want NULL silently, else with that warning (all of the output). */
static void expect_accepted(const char *line, const char *want)
{
	char text[1024];
	snprintf(text, sizeof(text), "myhostname = mx.example.com\n%s\n", line);
	struct load l = load(text);
	if (l.rc != 0 || (want ? !strstr(l.diag, want) : l.diag[0] != '\0'))
		fprintf(stderr, "  \"%s\": rc %d, want %s, got:\n%s", line, l.rc,
			want ? want : "no message", l.diag);
	CHECK_INT_EQ(l.rc, 0);
	CHECK(want ? strstr(l.diag, want) != NULL : l.diag[0] == '\0');
	load_free(&l);
}

static void test_refused(void)
{
	/* issue 12's list */
	expect_refused("smtpd_milters = inet:127.0.0.1:8891");
	expect_refused("non_smtpd_milters = inet:127.0.0.1:8891");
	expect_refused("content_filter = amavis:[127.0.0.1]:10024");
	expect_refused("smtpd_proxy_filter = 127.0.0.1:10025");
	expect_refused("virtual_alias_domains = example.org");
	expect_refused("virtual_alias_maps = hash:/etc/postfix/virtual");
	expect_refused("virtual_mailbox_domains = example.org");
	expect_refused("virtual_mailbox_maps = hash:/etc/postfix/vmailbox");
	expect_refused("canonical_maps = hash:/etc/postfix/canonical");
	expect_refused("sender_canonical_maps = hash:/etc/postfix/sc");
	expect_refused("recipient_canonical_maps = hash:/etc/postfix/rc");
	expect_refused("masquerade_domains = example.com");
	expect_refused("always_bcc = archive@example.com");
	expect_refused("sender_bcc_maps = hash:/etc/postfix/sbcc");
	expect_refused("recipient_bcc_maps = hash:/etc/postfix/rbcc");
	/* the server's TLS is implemented; what it does not do is refused */
	expect_refused("smtpd_tls_dcert_file = /etc/postfix/dsa.pem");
	expect_refused("smtpd_tls_eecdh_grade = strong");
	expect_refused("tls_medium_cipherlist = ALL");
	expect_refused("tls_ssl_options = NO_TICKET");
	expect_refused("tls_session_ticket_cipher = aes-128-cbc");
	/* AUTH through Dovecot only: Cyrus (Postfix's default type) is refused */
	{
		struct load l = load("myhostname = mx.example.com\nsmtpd_sasl_auth_enable = yes\n");
		CHECK_INT_EQ(l.rc, -EINVAL);
		CHECK(strstr(l.diag, "t.cf:2: smtpd_sasl_auth_enable = yes needs smtpd_sasl_type = "
				     "dovecot") != NULL);
		load_free(&l);
	}
	expect_refused("smtpd_sasl_mechanism_filter = plain");
	expect_refused("smtp_tls_security_level = encrypt");
	expect_refused("smtp_tls_security_level = dane");
	expect_refused("smtp_tls_security_level = verify");
	expect_refused("smtp_tls_security_level = secure");
	expect_refused("smtpd_client_connection_limit_exceptions = 192.0.2.0/24");
	expect_refused("postscreen_command_filter = pcre:/etc/postfix/command_filter");
	expect_refused("postscreen_enforce_tls = yes");
	expect_refused("postscreen_tls_security_level = encrypt");
	expect_refused("postscreen_discard_ehlo_keyword_address_maps = cidr:/etc/postfix/esmtp_access");
	expect_refused("postscreen_some_future_parameter = 1");
	expect_refused("relocated_maps = hash:/etc/postfix/relocated");
	expect_refused("receive_override_options = no_address_mappings");
	/* and others the table's comment explains */
	expect_refused("default_transport = error");
	expect_refused("sender_dependent_relayhost_maps = hash:/etc/postfix/sdr");
	expect_refused("smtp_fallback_relay = [192.0.2.9]");
	expect_refused("master_service_disable = inet");
	expect_refused("strict_8bitmime = yes");
	expect_refused("allow_untrusted_routing = yes");
	expect_refused("smtp_generic_maps = hash:/etc/postfix/generic");
	expect_refused("smtp_sasl_auth_enable = yes");
	expect_refused("smtp_tcp_port = 2525");
	expect_refused("milter_header_checks = regexp:/etc/postfix/mh");
	/* a value with $name is judged expanded */
	expect_refused("content_filter = $filter\nfilter = smtp:[127.0.0.1]:10024");
	expect_accepted("content_filter = $filter\nfilter =", NULL);

	/* values that ask for what mxgate does anyway */
	expect_accepted("smtpd_milters =", NULL);
	expect_accepted("content_filter =", NULL);
	expect_accepted("virtual_alias_maps =", NULL);
	expect_accepted("smtpd_tls_security_level = none", NULL);
	expect_accepted("smtpd_use_tls = no", NULL);
	expect_accepted("smtpd_tls_ask_ccert = no", NULL);
	/* SNI is implemented (mgmt/tls_conf.c): the maps are read with the generation */
	expect_accepted("tls_server_sni_maps = hash:/etc/postfix/sni", NULL);
	expect_accepted("smtpd_tls_eecdh_grade = auto", NULL);
	expect_accepted("tls_medium_cipherlist = aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH", NULL);
	/* implemented: known parameters, no message (the files are read with the
	 * generation) */
	expect_accepted("smtpd_tls_security_level = encrypt", NULL);
	expect_accepted("smtpd_tls_wrappermode = yes", NULL);
	expect_accepted("smtpd_enforce_tls = yes", NULL);
	expect_accepted("smtpd_sasl_auth_enable = no", NULL);
	expect_accepted("smtpd_client_new_tls_session_rate_limit = 0", NULL);
	/* counted through anvil (conn_anvil.c) */
	expect_accepted("smtpd_client_new_tls_session_rate_limit = 10", NULL);
	expect_accepted("smtpd_client_auth_rate_limit = 0", NULL);
	expect_accepted("smtpd_client_connection_limit_exceptions =", NULL);
	/* the anvil limits mxgate implements (config_params.c), at any value */
	expect_accepted("smtpd_client_connection_count_limit = 0", NULL);
	expect_accepted("smtpd_client_connection_count_limit = 50", NULL);
	expect_accepted("smtpd_client_connection_rate_limit = 30", NULL);
	expect_accepted("smtpd_client_message_rate_limit = 100", NULL);
	expect_accepted("smtpd_client_recipient_rate_limit = 1000", NULL);
	expect_accepted("anvil_rate_time_unit = 2m", NULL);
	expect_accepted("default_transport = smtp", NULL);
	expect_accepted("smtp_tcp_port = smtp", NULL);
	/* opportunistic TLS: the server offers it; the relay does not encrypt yet */
	expect_accepted("smtpd_tls_security_level = may", NULL);
	expect_accepted("smtp_tls_security_level = may",
			"t.cf:2: warning: smtp_tls_security_level = may: the relay does not "
			"encrypt yet");
	/* what a gateway does not do */
	expect_accepted("biff = no", "t.cf:2: warning: biff: not implemented by mxgate, "
				     "ignored: mxgate delivers nothing locally");
	expect_accepted("alias_maps = hash:/etc/aliases", "warning: alias_maps: not "
							  "implemented by mxgate, ignored");
	expect_accepted("inet_interfaces = all", "warning: inet_interfaces: not implemented");
	expect_accepted("readme_directory = no", "warning: readme_directory: not implemented");
	expect_accepted("mailbox_size_limit = 0", "warning: mailbox_size_limit: not implemented");
	expect_accepted("smtpd_tls_cert_file = /etc/ssl/certs/x.pem", NULL);
	expect_accepted("smtpd_tls_CAfile = /etc/ssl/certs/ca.pem", NULL);
	expect_accepted("smtpd_tls_ask_ccert = yes", NULL);
	expect_accepted("smtpd_tls_CApath = /etc/ssl/certs",
			"warning: smtpd_tls_CApath: not implemented by mxgate, ignored: "
			"mxgate verifies client certificates against smtpd_tls_CAfile only");
	expect_accepted("smtpd_tls_session_cache_database = btree:/var/lib/postfix/x",
			"warning: smtpd_tls_session_cache_database: not implemented by mxgate, "
			"ignored: mxgate resumes TLS sessions with tickets");
	expect_accepted("lmtp_destination_concurrency_limit = 2",
			"warning: lmtp_destination_concurrency_limit: not implemented");
	/* a user-defined parameter in use is the operator's own, whatever its name */
	expect_accepted("local_domains = example.com\nmydestination = $local_domains", NULL);
	/* unknown names are still just unused */
	expect_accepted("no_such_postfix_parameter = 1", "t.cf:2: warning: unused parameter: "
							 "no_such_postfix_parameter=1");
	/* lookup */
	CHECK(mx_refused_find("postscreen_watchdog_timeout") != NULL);
	CHECK_STR_EQ(mx_refused_find("smtpd_tls_dcert_file")->name, "smtpd_tls_dcert_file");
	CHECK_STR_EQ(mx_refused_find("smtpd_tls_loglevel")->name, "smtpd_tls_*");
	CHECK_STR_EQ(mx_refused_find("relay_destination_rate_delay")->name,
		     "*_destination_rate_delay");
	CHECK(mx_refused_find("nothing_like_it") == NULL);
	/* no row names a parameter mxgate knows (the registry comes first) */
	for (size_t i = 0; i < mx_refused_count; i++) {
		const char *n = mx_refused[i].name;
		CHECK(mx_refused[i].why && *mx_refused[i].why);
		if (!strchr(n, '*') && mx_param_find(n, strlen(n))) {
			fprintf(stderr, "  %s is known and refused\n", n);
			CHECK(false);
		}
	}
}

/* Read a whole file, or NULL. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 16);
	size_t n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Debian 12's main.cf as its postfix package writes it for an Internet site: its
 * main.cf.debian and main.cf.tls, then the settings its postinst adds. */
static void test_debian_main_cf(void)
{
	char *debian = slurp("/usr/share/postfix/main.cf.debian");
	char *tls = slurp("/usr/share/postfix/main.cf.tls");
	if (!debian || !tls) {
		fprintf(stderr, "  /usr/share/postfix/main.cf.debian or main.cf.tls is missing: "
				"install Debian's postfix package (deploy/install-deps.sh)\n");
		CHECK(false);
		free(debian);
		free(tls);
		return;
	}
	char *text = NULL;
	CHECK(asprintf(&text,
		       "%s%s"
		       "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated "
		       "defer_unauth_destination\n"
		       "myhostname = debian.example.com\n"
		       "alias_maps = hash:/etc/aliases\n"
		       "alias_database = hash:/etc/aliases\n"
		       "myorigin = $myhostname\n"
		       "mydestination = $myhostname, debian.example.com, localhost.example.com, "
		       ", localhost\n"
		       "relayhost = \n"
		       "mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n"
		       "mailbox_size_limit = 0\n"
		       "recipient_delimiter = +\n"
		       "inet_interfaces = all\n"
		       "inet_protocols = all\n",
		       debian, tls) > 0);
	struct load l = load(text);
	if (l.rc != 0)
		fprintf(stderr, "  Debian's main.cf:\n%s", l.diag);
	CHECK_INT_EQ(l.rc, 0);
	/* warnings only (TLS "may" with Debian's snakeoil certificate is implemented) */
	for (const char *p = l.diag; *p;) {
		const char *nl = strchr(p, '\n');
		if (!strstr(p, ": warning: ") || strstr(p, ": warning: ") > nl) {
			fprintf(stderr, "  not a warning: %.*s\n", (int)(nl - p), p);
			CHECK(false);
		}
		p = nl + 1;
	}
	CHECK(strstr(l.diag, "smtpd_tls_security_level") == NULL);
	CHECK(strstr(l.diag, "smtpd_tls_cert_file") == NULL);
	CHECK(strstr(l.diag, "warning: smtp_tls_security_level = may: the relay does not "
			     "encrypt yet") != NULL);
	CHECK(strstr(l.diag, "warning: biff: not implemented by mxgate, ignored") != NULL);
	CHECK(strstr(l.diag, "unused parameter") == NULL);
	/* the policy builds, warning that permit_sasl_authenticated can never match */
	if (l.cfg) {
		struct smtp_policy *p = NULL;
		char err[512], *diag = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_build(l.cfg, &p, f, err, sizeof(err)), 0);
		fclose(f);
		CHECK(strstr(diag, "warning: smtpd_relay_restrictions: permit_sasl_authenticated "
				   "can never match: smtpd_sasl_auth_enable = no"));
		smtp_policy_free(p);
		free(diag);
	}
	load_free(&l);
	free(text);
	free(debian);
	free(tls);
}

/* Every parameter Debian's Postfix knows (postconf -d, with its stock master.cf, whose
 * transports add per-transport names) is known to mxgate or has a row. */
static void test_every_postfix_parameter(void)
{
	if (access("/usr/sbin/postconf", X_OK) != 0) {
		fprintf(stderr, "  FAIL: /usr/sbin/postconf is missing: install Debian package "
				"'postfix' (deploy/install-deps.sh installs it)\n");
		CHECK(false);
		return;
	}
	char dir[] = "/tmp/mxgate-test-refused-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "printf 'compatibility_level = 3.6\\n' > %s/main.cf && "
		 "cp /etc/postfix/master.cf %s/master.cf && touch -d '1 minute ago' %s/*.cf && "
		 "/usr/sbin/postconf -c %s -d 2>/dev/null",
		 dir, dir, dir, dir);
	FILE *p = popen(cmd, "r");
	char line[8192];
	size_t names = 0, unclassified = 0;
	while (p && fgets(line, sizeof(line), p)) {
		size_t n = strcspn(line, " =");
		line[n] = '\0';
		names++;
		if (mx_param_find(line, n) || mx_refused_find(line))
			continue;
		fprintf(stderr, "  %s: neither known nor in config_refused.c\n", line);
		unclassified++;
	}
	int status = p ? pclose(p) : -1;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(names > 800);
	CHECK_INT_EQ(unclassified, 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

static void test_policy_checks(void)
{
	/* never-matching restrictions: a warning each, at the list's line, in lists and
	 * classes the file sets */
	struct load l = load("myhostname = mx.example.com\n"
			     "smtpd_restriction_classes = auth_only\n"
			     "auth_only = permit_tls_clientcerts, reject\n"
			     "smtpd_sender_restrictions = reject_sender_login_mismatch\n"
			     "smtpd_recipient_restrictions = permit_sasl_authenticated,\n"
			     "    check_ccert_access inline:{x=OK} reject_unauth_destination\n");
	CHECK_INT_EQ(l.rc, 0);
	if (l.cfg) {
		char *diag = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_warn_never_match(l.cfg, f), 4);
		fclose(f);
		CHECK(strstr(diag, "t.cf:4: warning: smtpd_sender_restrictions: "
				   "reject_sender_login_mismatch can never match"));
		CHECK(strstr(diag, "t.cf:5: warning: smtpd_recipient_restrictions: "
				   "permit_sasl_authenticated can never match"));
		CHECK(strstr(diag, "t.cf:5: warning: smtpd_recipient_restrictions: "
				   "check_ccert_access can never match: smtpd_tls_ask_ccert = no"));
		CHECK(strstr(diag, "t.cf:3: warning: auth_only: permit_tls_clientcerts can never "
				   "match"));
		free(diag);
	}
	load_free(&l);
	/* the default relay list names permit_sasl_authenticated: not the operator's */
	l = load("myhostname = mx.example.com\n");
	CHECK_INT_EQ(mx_policy_warn_never_match(l.cfg, stderr), 0);
	load_free(&l);

	/* an RBL zone with no local data is asked in DNS: fine with a resolver */
	char dir[] = "/tmp/mxgate-test-zone-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char text[1024];
	snprintf(text, sizeof(text),
		 "myhostname = mx.example.com\nmxgate_table_directory = %s/none\n"
		 "smtpd_client_restrictions = permit_mynetworks,\n"
		 "    reject_rbl_client zen.example=127.0.0.[2..11]\n"
		 "smtpd_sender_restrictions = reject_rhsbl_sender dbl.example,\n"
		 "    reject_unknown_sender_domain, check_sender_mx_access inline:{x=DUNNO}\n"
		 "smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:10023\n"
		 "mxgate_dns_servers = 127.0.0.1 [::1]:5353\n",
		 dir);
	l = load(text);
	CHECK_INT_EQ(l.rc, 0);
	if (l.cfg) {
		struct smtp_policy *p = NULL;
		char err[512], *diag = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_build(l.cfg, &p, f, err, sizeof(err)), 0);
		fclose(f);
		CHECK(p != NULL);
		CHECK_STR_EQ(diag, "");
		free(diag);
		/* no resolver: each zone without data and each DNS restriction is an error,
		 * at its list's line */
		diag = NULL;
		f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_check_dns(l.cfg, p, "/nonexistent/resolv.conf", f, err,
						 sizeof(err)),
			     0); /* mxgate_dns_servers is set */
		fclose(f);
		free(diag);
		smtp_policy_free(p);
	}
	load_free(&l);
	/* without a resolver: the policy is built where one is configured (so the test does
	 * not depend on this machine's /etc/resolv.conf), then checked against a
	 * configuration with the same lines and none */
#define LISTS                                                                             \
	"myhostname = mx.example.com\nmxgate_table_directory = %s/none\n"                   \
	"smtpd_client_restrictions = permit_mynetworks,\n"                                   \
	"    reject_rbl_client zen.example=127.0.0.[2..11]\n"                                \
	"smtpd_sender_restrictions = reject_rhsbl_sender dbl.example,\n"                     \
	"    reject_unknown_sender_domain\n%s"
	char text2[1024];
	snprintf(text, sizeof(text), LISTS, dir, "mxgate_dns_servers = 127.0.0.1\n");
	snprintf(text2, sizeof(text2), LISTS, dir, "");
#undef LISTS
	l = load(text);
	struct load l2 = load(text2);
	if (l.cfg && l2.cfg) {
		struct smtp_policy *p = NULL;
		char err[512], *diag = NULL;
		size_t n = 0;
		char rc[64];
		snprintf(rc, sizeof(rc), "%s/resolv.conf", dir);
		FILE *r = fopen(rc, "w");
		fprintf(r, "# no resolver here\nsearch example.com\nnameserver bogus\n");
		fclose(r);
		CHECK_INT_EQ(mx_policy_resolv_conf_nameservers(rc), 0);
		CHECK_INT_EQ(mx_policy_resolv_conf_nameservers("/nonexistent"), 0);
		CHECK_INT_EQ(mx_policy_build(l.cfg, &p, NULL, err, sizeof(err)), 0);
		FILE *f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_check_dns(l2.cfg, p, rc, f, err, sizeof(err)), 3);
		fclose(f);
		CHECK(strstr(diag, "t.cf:5: smtpd_sender_restrictions: reject_unknown_sender_domain "
				   "needs DNS lookups, and no DNS resolver is configured "
				   "(mxgate_dns_servers is empty and ") != NULL);
		CHECK(strstr(diag, "t.cf:3: smtpd_client_restrictions: RBL zone zen.example has no "
				   "local data in mxgate_table_directory") != NULL);
		CHECK(strstr(diag, "t.cf:5: smtpd_sender_restrictions: RBL zone dbl.example has no "
				   "local data") != NULL);
		CHECK(strstr(err, "smtpd_sender_restrictions: reject_unknown_sender_domain") == err);
		free(diag);
		/* with a nameserver line, none */
		r = fopen(rc, "w");
		fprintf(r, "nameserver 192.0.2.53 # comment\nnameserver fe80::1%%eth0\n");
		fclose(r);
		/* the scoped link-local one is not one the resolver can use: it counts as none */
		CHECK_INT_EQ(mx_policy_resolv_conf_nameservers(rc), 1);
		CHECK_INT_EQ(mx_policy_check_dns(l2.cfg, p, rc, NULL, err, sizeof(err)), 0);
		smtp_policy_free(p);
	}
	load_free(&l);
	load_free(&l2);
	/* mxgate_dns_servers */
	{
		struct dns_server sv[4];
		char err[200];
		CHECK_INT_EQ(mx_policy_dns_servers("", sv, 4, err, sizeof(err)), 0);
		CHECK_INT_EQ(mx_policy_dns_servers("127.0.0.1, [::1]:5353 192.0.2.1:54 ::2", sv, 4,
						   err, sizeof(err)),
			     4);
		CHECK_INT_EQ(sv[0].port, 53);
		CHECK_INT_EQ(sv[1].port, 5353);
		CHECK_INT_EQ(sv[2].port, 54);
		CHECK_INT_EQ(sv[3].port, 53);
		CHECK_INT_EQ(mx_policy_dns_servers("resolver.example", sv, 4, err, sizeof(err)),
			     -EINVAL);
		CHECK_STR_EQ(err, "'resolver.example' is not a numeric address with an optional port "
				  "(192.0.2.1:53, [2001:db8::1]:53)");
		CHECK_INT_EQ(mx_policy_dns_servers("[::1]x", sv, 4, err, sizeof(err)), -EINVAL);
		CHECK_INT_EQ(mx_policy_dns_servers("127.0.0.1:0", sv, 4, err, sizeof(err)), -EINVAL);
		CHECK_INT_EQ(mx_policy_dns_servers("[::1]:65536", sv, 4, err, sizeof(err)), -EINVAL);
	}
	l = load("myhostname = mx.example.com\nmxgate_dns_servers = dns.example\n");
	if (l.cfg) {
		struct smtp_policy *p = NULL;
		char err[512], *diag = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&diag, &n);
		CHECK_INT_EQ(mx_policy_build(l.cfg, &p, f, err, sizeof(err)), -EINVAL);
		fclose(f);
		CHECK(strstr(diag, "t.cf:2: mxgate_dns_servers: 'dns.example' is not a numeric") !=
		      NULL);
		free(diag);
	}
	load_free(&l);
	/* no zone: no table directory needed */
	l = load("myhostname = mx.example.com\nmxgate_table_directory = /nonexistent\n"
		 "smtpd_client_restrictions = permit_mynetworks, reject\n");
	if (l.cfg) {
		struct smtp_policy *p = NULL;
		char err[512];
		CHECK_INT_EQ(mx_policy_build(l.cfg, &p, NULL, err, sizeof(err)), 0);
		CHECK_INT_EQ(mx_policy_check_zones(l.cfg, p, NULL, err, sizeof(err)), 0);
		smtp_policy_free(p);
	}
	load_free(&l);
	snprintf(text, sizeof(text), "rm -rf %s", dir);
	CHECK(system(text) == 0);
}

int main(void)
{
	RUN_TEST(test_refused);
	RUN_TEST(test_debian_main_cf);
	RUN_TEST(test_every_postfix_parameter);
	RUN_TEST(test_policy_checks);
	return TEST_RESULT();
}
