/* mgmt/screen.c: a service's screen compiled from its postscreen_* parameters, and
 * postscreen_access_list as Postfix's server_acl_eval() decides it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "load_config.h"
#include "mgmt/screen.h"
#include "testing.h"

static char dir[] = "/tmp/mxgate-test-screen-XXXXXX";

static char *write_file(const char *name, const char *text)
{
	char *path = NULL;
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	return path;
}

static struct mx_screen *build(const char *extra, struct load *l, char *err, size_t errlen)
{
	char text[4096];
	snprintf(text, sizeof(text), "myhostname = mx.example.com\nmynetworks = 192.0.2.0/24\n"
		 "%s", extra);
	*l = load(text);
	if (l->rc != 0) {
		fprintf(stderr, "  load: %s\n", l->diag);
		return NULL;
	}
	struct mx_screen *s = NULL;
	err[0] = '\0';
	if (mx_screen_build(l->cfg, &s, err, errlen) < 0)
		return NULL;
	return s;
}

static enum smtp_screen_acl acl(const struct mx_screen *s, const struct mx_config *cfg,
				const char *addr, char *warn, size_t warnlen)
{
	struct mx_inet_addr a;
	CHECK(mx_inet_parse(addr, &a));
	return mx_screen_access(s, cfg, &a, warn, warnlen);
}

static void test_defaults(void)
{
	struct load l;
	char err[256], warn[256];
	struct mx_screen *s = build("", &l, err, sizeof(err));
	CHECK(s != NULL);
	if (s) {
		const struct smtp_screen_config *c = s->cfg;
		CHECK_STR_EQ(c->greet_banner, "mx.example.com ESMTP mxgate");
		CHECK_INT_EQ(c->greet_wait_ms, 6000);
		CHECK_INT_EQ(c->greet_action, SMTP_SCREEN_IGNORE);
		CHECK_INT_EQ(c->greet_ttl_s, 86400);
		CHECK_INT_EQ(c->dnsbl_threshold, 1);
		CHECK_INT_EQ(c->dnsbl_allowlist_threshold, 0);
		CHECK_INT_EQ(c->dnsbl_min_ttl_s, 60);
		CHECK_INT_EQ(c->dnsbl_max_ttl_s, 3600);
		CHECK_INT_EQ(s->dnsbl_timeout_ms, 10000);
		CHECK_INT_EQ(c->pipelining_action, SMTP_SCREEN_ENFORCE);
		CHECK_INT_EQ(c->non_smtp_action, SMTP_SCREEN_DROP);
		CHECK_INT_EQ(c->bare_newline_action, SMTP_SCREEN_IGNORE);
		CHECK_INT_EQ(c->pipelining_ttl_s, 30 * 86400);
		CHECK_INT_EQ(c->command_count_limit, 20);
		CHECK_INT_EQ(c->command_time_limit_ms, 300000);
		CHECK_INT_EQ(c->cache_retention_s, 7 * 86400);
		CHECK_INT_EQ(c->nforbidden, 3);
		CHECK_INT_EQ(c->nforbidden_re, 1);
		CHECK_STR_EQ(s->cache_map, "btree:/var/lib/mxgate/postscreen_cache");
		/* permit_mynetworks */
		CHECK_INT_EQ(acl(s, l.cfg, "192.0.2.9", warn, sizeof(warn)), SMTP_SCREEN_ACL_PERMIT);
		CHECK_INT_EQ(acl(s, l.cfg, "198.51.100.1", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_DUNNO);
	}
	mx_screen_free(s);
	load_free(&l);
}

static void test_old_names(void)
{
	struct load l;
	char err[256];
	struct mx_screen *s = build("postscreen_blacklist_action = drop\n"
				    "postscreen_dnsbl_whitelist_threshold = -2\n"
				    "postscreen_dnsbl_ttl = 5\n", &l, err, sizeof(err));
	CHECK(s != NULL);
	if (s) {
		CHECK_INT_EQ(s->cfg->denylist_action, SMTP_SCREEN_DROP);
		CHECK_INT_EQ(s->cfg->dnsbl_allowlist_threshold, -2);
		CHECK_INT_EQ(s->cfg->dnsbl_max_ttl_s, 5 * 3600);
	}
	mx_screen_free(s);
	load_free(&l);
	/* the new names win */
	s = build("postscreen_blacklist_action = drop\npostscreen_denylist_action = enforce\n",
		  &l, err, sizeof(err));
	CHECK(s && s->cfg->denylist_action == SMTP_SCREEN_ENFORCE);
	mx_screen_free(s);
	load_free(&l);
}

static void test_access_list(void)
{
	char *cidr = write_file("acl.cidr", "192.0.2.5 reject\n198.51.100.0/24 permit\n"
					    "203.0.113.1 dunno\n203.0.113.2 bounce\n"
					    "203.0.113.3 reject, permit\n");
	char *reply = write_file("reply.map", "# names\nzen.example   Zen List\n");
	char extra[1024];
	snprintf(extra, sizeof(extra),
		 "postscreen_access_list = cidr:%s, permit_mynetworks\n"
		 "postscreen_dnsbl_sites = zen.example*2, other.example\n"
		 "postscreen_dnsbl_reply_map = texthash:%s\n", cidr, reply);
	struct load l;
	char err[256], warn[256];
	struct mx_screen *s = build(extra, &l, err, sizeof(err));
	if (!s)
		fprintf(stderr, "  build: %s\n", err);
	CHECK(s != NULL);
	if (s) {
		/* the table first: a reject beats mynetworks */
		CHECK_INT_EQ(acl(s, l.cfg, "192.0.2.5", warn, sizeof(warn)), SMTP_SCREEN_ACL_REJECT);
		CHECK_INT_EQ(acl(s, l.cfg, "192.0.2.6", warn, sizeof(warn)), SMTP_SCREEN_ACL_PERMIT);
		CHECK_INT_EQ(acl(s, l.cfg, "198.51.100.7", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_PERMIT);
		/* dunno in a table goes on to the next element */
		CHECK_INT_EQ(acl(s, l.cfg, "203.0.113.1", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_DUNNO);
		CHECK_STR_EQ(warn, "");
		CHECK_INT_EQ(acl(s, l.cfg, "203.0.113.2", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_DUNNO);
		CHECK(strstr(warn, "unknown command: bounce") != NULL);
		CHECK_INT_EQ(acl(s, l.cfg, "203.0.113.3", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_REJECT);
		CHECK_INT_EQ(acl(s, l.cfg, "::ffff:192.0.2.5", warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_REJECT);
		CHECK_STR_EQ(s->cfg->zones[0].shown, "Zen List");
		CHECK_STR_EQ(s->cfg->zones[1].shown, "other.example");
		/* which element decided (mxgate explain): the table, mynetworks, none */
		struct mx_inet_addr a;
		int entry = 99;
		CHECK(mx_inet_parse("192.0.2.5", &a));
		CHECK_INT_EQ(mx_screen_access_entry(s, l.cfg, &a, &entry, warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_REJECT);
		CHECK_INT_EQ(entry, 0);
		CHECK(mx_inet_parse("192.0.2.6", &a));
		CHECK_INT_EQ(mx_screen_access_entry(s, l.cfg, &a, &entry, warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_PERMIT);
		CHECK_INT_EQ(entry, 1);
		CHECK(mx_inet_parse("198.18.0.1", &a));
		CHECK_INT_EQ(mx_screen_access_entry(s, l.cfg, &a, &entry, warn, sizeof(warn)),
			     SMTP_SCREEN_ACL_DUNNO);
		CHECK_INT_EQ(entry, -1);
	}
	mx_screen_free(s);
	load_free(&l);
	free(cidr);
	free(reply);
}

/* Per-site counters: named by the sites as written, one count per listed bit. */
static void test_site_counters(void)
{
	struct load l;
	char err[256];
	struct mx_screen *s = build("postscreen_dnsbl_sites = zen.example=127.0.0.[2..11]*3, "
				    "zen.example*-1\n  wl.example*-3\n", &l, err, sizeof(err));
	CHECK(s != NULL);
	if (s) {
		CHECK_INT_EQ(s->cfg->nsites, 3);
		CHECK(s->sites != NULL);
		CHECK_STR_EQ(s->sites[0].text, "zen.example=127.0.0.[2..11]*3");
		CHECK_STR_EQ(s->sites[1].text, "zen.example*-1");
		CHECK_STR_EQ(s->sites[2].text, "wl.example*-3");
		mx_screen_count_listed(s, 0);
		mx_screen_count_listed(s, 1u | 4u);
		mx_screen_count_listed(s, 4u);
		mx_screen_count_listed(s, ~0ull); /* bits past the sites count nothing */
		CHECK_INT_EQ(atomic_load(&s->sites[0].listed), 2);
		CHECK_INT_EQ(atomic_load(&s->sites[1].listed), 1);
		CHECK_INT_EQ(atomic_load(&s->sites[2].listed), 3);
	}
	mx_screen_free(s);
	load_free(&l);
	/* no sites: nothing allocated, counting is a no-op */
	s = build("", &l, err, sizeof(err));
	CHECK(s != NULL);
	if (s) {
		CHECK(s->sites == NULL);
		mx_screen_count_listed(s, 1u);
	}
	mx_screen_free(s);
	load_free(&l);
}

static void test_errors(void)
{
	static const struct {
		const char *extra, *want;
	} cases[] = {
		{ "postscreen_access_list = hash:/x\n", "only cidr: tables" },
		{ "postscreen_access_list = permit_inet_interfaces\n", "unknown element" },
		{ "postscreen_access_list = cidr:/nonexistent/x.cidr\n", "No such file" },
		{ "postscreen_dnsbl_sites = zen.example*x\n", "bad DNSBL weight factor" },
		{ "postscreen_dnsbl_sites = zen.example=127.0.0.300\n", "bad DNSBL filter" },
		{ "postscreen_dnsbl_reply_map = hash:/x\n", "texthash: and inline:" },
		{ "postscreen_allowlist_interfaces = 192.0.2.1\n", "static:all" },
		{ "postscreen_whitelist_interfaces = !192.0.2.1 static:all\n", "static:all" },
		{ "postscreen_cache_map = proxy:btree:/x\n", "btree:, hash:, lmdb: or memcache:" },
		{ "postscreen_forbidden_commands = hash:/x\n", "only command names" },
		{ "postscreen_forbidden_commands = regexp:{{/(/ x}}\n", "bad pattern" },
		{ "postscreen_forbidden_commands = regexp:{{^x x}}\n", "bad rule" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct load l;
		char err[256];
		struct mx_screen *s = build(cases[i].extra, &l, err, sizeof(err));
		CHECK(s == NULL);
		if (!strstr(err, cases[i].want))
			fprintf(stderr, "  %s: %s\n", cases[i].extra, err);
		CHECK(strstr(err, cases[i].want) != NULL);
		mx_screen_free(s);
		load_free(&l);
	}
}

int main(void)
{
	if (!mkdtemp(dir))
		return 1;
	RUN_TEST(test_defaults);
	RUN_TEST(test_old_names);
	RUN_TEST(test_access_list);
	RUN_TEST(test_errors);
	RUN_TEST(test_site_counters);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	return TEST_RESULT();
}
