/* Stress: the state machine (mgmt/stress.c: thresholds, hysteresis, dwell time, time
 * passed in), and a configuration's two variants (mgmt/config.c: `stress` empty and
 * "yes", both ${stress?..} syntaxes, nested, in -o overrides of master.cf services), and
 * the generation's services under stress (mgmt/generation.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mgmt/config.h"
#include "mgmt/generation.h"
#include "mgmt/master.h"
#include "mgmt/stress.h"
#include "load_config.h"
#include "testing.h"

/* ------------------------------------------------------------------------------------
 * The state machine. */

static const struct mx_stress_limits limits = { .enter_percent = 90, .leave_percent = 70,
						.min_ms = 10000 };

static void test_names(void)
{
	CHECK_STR_EQ(mx_stress_state_name(MX_STRESS_OFF), "off");
	CHECK_STR_EQ(mx_stress_state_name(MX_STRESS_ON), "on");
	CHECK_STR_EQ(mx_stress_state_name(MX_STRESS_STATE_MAX), "?");
}

static void test_enter_at_threshold(void)
{
	struct mx_stress s = { 0 };
	/* 17 of 20 is 85%: below 90 */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 17, 20, 1000), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(s.state, MX_STRESS_OFF);
	/* 18 of 20 is exactly 90% */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 18, 20, 2000), MX_STRESS_ENTERED);
	CHECK_INT_EQ(s.state, MX_STRESS_ON);
	CHECK_INT_EQ(s.entered, 1);
	CHECK_INT_EQ(s.since_ms, 2000);
	CHECK_INT_EQ(s.peak, 18);
	/* staying there changes nothing */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 20, 20, 3000), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(s.peak, 20);
	CHECK_INT_EQ(s.entered, 1);
}

static void test_hysteresis_and_dwell(void)
{
	struct mx_stress s = { 0 };
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 95, 100, 0), MX_STRESS_ENTERED);
	/* between the thresholds: stays in stress, long after the dwell time too */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 80, 100, 5000), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 71, 100, 60000), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(s.state, MX_STRESS_ON);
	/* at the leave threshold, but before the dwell time: stays */
	struct mx_stress t = { 0 };
	CHECK_INT_EQ(mx_stress_update(&t, &limits, 90, 100, 100000), MX_STRESS_ENTERED);
	CHECK_INT_EQ(mx_stress_update(&t, &limits, 0, 100, 109999), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_update(&t, &limits, 0, 100, 110000), MX_STRESS_LEFT);
	CHECK_INT_EQ(t.state, MX_STRESS_OFF);
	CHECK_INT_EQ(mx_stress_total_ms(&t, 200000), 10000);
	/* at exactly 70% after the dwell time: leaves */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 70, 100, 60001), MX_STRESS_LEFT);
	CHECK_INT_EQ(s.since_ms, 60001);
	CHECK_INT_EQ(mx_stress_total_ms(&s, 70000), 60001);
	/* between the thresholds when off: stays off (no flapping at 80%) */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 80, 100, 60002), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 89, 100, 60003), MX_STRESS_UNCHANGED);
	/* and again */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 90, 100, 70000), MX_STRESS_ENTERED);
	CHECK_INT_EQ(s.entered, 2);
	CHECK_INT_EQ(s.peak, 90);
	CHECK_INT_EQ(mx_stress_total_ms(&s, 75000), 65001);
}

static void test_no_limit_and_edges(void)
{
	struct mx_stress s = { 0 };
	/* capacity 0 is "no limit": never stress */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 1000000, 0, 0), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(s.state, MX_STRESS_OFF);
	/* 100%: only a full gateway; leave at 0%: only an empty one */
	struct mx_stress_limits full = { .enter_percent = 100, .leave_percent = 0, .min_ms = 0 };
	CHECK_INT_EQ(mx_stress_update(&s, &full, 9, 10, 1), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_update(&s, &full, 10, 10, 2), MX_STRESS_ENTERED);
	CHECK_INT_EQ(mx_stress_update(&s, &full, 1, 10, 3), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_update(&s, &full, 0, 10, 3), MX_STRESS_LEFT);
	/* a clock that went backwards does not end the dwell time early */
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 10, 10, 50000), MX_STRESS_ENTERED);
	CHECK_INT_EQ(mx_stress_update(&s, &limits, 0, 10, 40000), MX_STRESS_UNCHANGED);
	CHECK_INT_EQ(mx_stress_total_ms(&s, 40000), 1);
	/* large counts do not overflow */
	struct mx_stress b = { 0 };
	CHECK_INT_EQ(mx_stress_update(&b, &limits, 9000000000ull, 10000000000ull, 1),
		     MX_STRESS_ENTERED);
	/* without a capacity any more (cannot happen at run time), stress ends */
	CHECK_INT_EQ(mx_stress_update(&b, &limits, 5, 0, 2), MX_STRESS_LEFT);
}

/* ------------------------------------------------------------------------------------
 * A configuration's two variants. */


static void test_defaults(void)
{
	struct load l = load("myhostname = mx.example.com\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(l.diag, "");
	const struct mx_config *cfg = l.cfg, *s = mx_config_stress(cfg);
	/* Postfix's defaults, expanded without and with stress */
	CHECK_STR_EQ(mx_config_get(cfg, "stress"), "");
	CHECK_STR_EQ(mx_config_get(cfg, "smtpd_timeout"), "300s");
	CHECK_INT_EQ(cfg->smtpd_timeout_s, 300);
	CHECK_INT_EQ(cfg->smtp.hard_error_limit, 20);
	CHECK_INT_EQ(cfg->smtp.junk_command_limit, 100);
	CHECK(!cfg->stress);
	CHECK(s != NULL);
	if (!s)
		goto out;
	CHECK(s->stress);
	CHECK_STR_EQ(mx_config_get(s, "stress"), "yes");
	CHECK_STR_EQ(mx_config_get(s, "smtpd_timeout"), "10s");
	CHECK_INT_EQ(s->smtpd_timeout_s, 10);
	CHECK_INT_EQ(s->smtp.hard_error_limit, 1);
	CHECK_INT_EQ(s->smtp.junk_command_limit, 1);
	/* the rest is the same; mxgate keeps its deadline on in both */
	CHECK_INT_EQ(s->smtp.soft_error_limit, 10);
	CHECK(s->smtpd_per_request_deadline && cfg->smtpd_per_request_deadline);
	CHECK_STR_EQ(s->myhostname, "mx.example.com");
	CHECK(s->smtp.myhostname == s->myhostname);
	CHECK(mx_config_stress(s) == NULL);
	const char *names[8];
	/* Postfix's: smtpd_starttls_timeout = ${stress?{10}:{300}}s too, and postscreen's */
	CHECK_INT_EQ(mx_config_stress_changes(cfg, names, 8), 6);
	CHECK_STR_EQ(names[0], "smtpd_hard_error_limit");
	CHECK_STR_EQ(names[1], "smtpd_junk_command_limit");
	CHECK_STR_EQ(names[2], "smtpd_timeout");
	CHECK_STR_EQ(names[3], "postscreen_greet_wait");
	CHECK_STR_EQ(names[4], "postscreen_command_time_limit");
	CHECK_STR_EQ(names[5], "smtpd_starttls_timeout");
	CHECK_INT_EQ(mx_config_stress_changes(cfg, names, 1), 6);
	CHECK_INT_EQ(mx_config_stress_changes(s, names, 8), 0);
out:
	load_free(&l);
}

static void test_no_variant(void)
{
	/* nothing depends on stress: one configuration serves both */
	struct load l = load("myhostname = mx.example.com\nsmtpd_timeout = 60s\n"
			     "smtpd_hard_error_limit = 5\nsmtpd_junk_command_limit = 7\n"
			     "postscreen_greet_wait = 6s\npostscreen_command_time_limit = 60s\n"
			     "smtpd_starttls_timeout = 60s\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK(l.cfg && mx_config_stress(l.cfg) == NULL);
	CHECK(l.cfg && mx_config_stress_changes(l.cfg, NULL, 0) == 0);
	load_free(&l);
}

/* Each syntax Postfix has for it: 3.0's ${name?{a}:{b}}, 2.2's ${name?a}${name:b}, blanks
 * around braces, nesting, $stress itself, a user parameter that refers to it. */
static void test_forms(void)
{
	struct load l = load(
		"myhostname = mx.example.com\n"
		"smtpd_timeout = ${stress?{2}:{300}}s\n"
		"smtpd_hard_error_limit = ${stress?3}${stress:30}\n"
		"smtpd_soft_error_limit = ${stress ? {2} : {12}}\n"
		"smtpd_junk_command_limit = ${stress?{${junk_stress}}:{$junk_normal}}\n"
		"junk_stress = ${{$smtpd_hard_error_limit} == {3} ? {4} : {99}}\n"
		"junk_normal = 50\n"
		"smtpd_banner = $myhostname ESMTP stress=[$stress]\n"
		"smtpd_recipient_limit = ${stress:{500}}${stress?{${stress_rcpt}}}\n"
		"stress_rcpt = 50\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(l.diag, "");
	const struct mx_config *c = l.cfg, *s = c ? mx_config_stress(c) : NULL;
	CHECK(s != NULL);
	if (!s)
		goto out;
	CHECK_INT_EQ(c->smtpd_timeout_s, 300);
	CHECK_INT_EQ(s->smtpd_timeout_s, 2);
	CHECK_INT_EQ(c->smtp.hard_error_limit, 30);
	CHECK_INT_EQ(s->smtp.hard_error_limit, 3);
	CHECK_INT_EQ(c->smtp.soft_error_limit, 12);
	CHECK_INT_EQ(s->smtp.soft_error_limit, 2);
	CHECK_INT_EQ(c->smtp.junk_command_limit, 50);
	CHECK_INT_EQ(s->smtp.junk_command_limit, 4);
	CHECK_STR_EQ(c->smtpd_banner, "mx.example.com ESMTP stress=[]");
	CHECK_STR_EQ(s->smtpd_banner, "mx.example.com ESMTP stress=[yes]");
	CHECK_INT_EQ(c->smtp.recipient_limit, 500);
	CHECK_INT_EQ(s->smtp.recipient_limit, 50);
out:
	load_free(&l);
}

static void test_errors(void)
{
	/* a value wrong only under stress fails the load, and says so */
	struct load l = load("myhostname = mx.example.com\n"
			     "smtpd_timeout = ${stress?{0}:{300}}s\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "t.cf:2: ") == l.diag);
	CHECK(strstr(l.diag, "smtpd_timeout") && strstr(l.diag, "(under stress: with stress = yes)"));
	CHECK(strchr(l.diag, '\n') == l.diag + strlen(l.diag) - 1);
	load_free(&l);
	/* a value wrong in both: one message, from the normal load */
	l = load("myhostname = mx.example.com\nsmtpd_timeout = ${stress?{x}:{y}}\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "under stress") == NULL);
	load_free(&l);
	/* `stress` is mxgate's */
	l = load("myhostname = mx.example.com\nstress = yes\n");
	CHECK_INT_EQ(l.rc, -EINVAL);
	CHECK(strstr(l.diag, "t.cf:2: parameter stress: is set by mxgate itself"));
	load_free(&l);
	/* warnings are said once, not again for the variant */
	l = load("myhostname = mx.example.com\nsmtpd_timeout = ${stress?{5}:{9}}s\n"
		 "unused_thing = 1\n");
	CHECK_INT_EQ(l.rc, 0);
	CHECK_STR_EQ(l.diag, "t.cf:3: warning: unused parameter: unused_thing=1\n");
	load_free(&l);
}

/* ------------------------------------------------------------------------------------
 * master.cf services: -o overrides with stress forms, and the generation. */

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

static const char main_cf_fmt[] =
	"myhostname = mx.example.com\n"
	"mxgate_master_file = %s\n"
	"mxgate_spool_directory = %s\n"
	"mxgate_table_directory = %s\n"
	"smtpd_timeout = 60s\n"
	"smtpd_hard_error_limit = 20\n"
	"smtpd_junk_command_limit = 100\n"
	"postscreen_greet_wait = 6s\n"
	"postscreen_command_time_limit = 300s\n"
	"smtpd_starttls_timeout = 300s\n"
	"%s";

/* Write main.cf and master.cf; returns main.cf's path. */
static char *write_config(const char *main_extra, const char *master_cf)
{
	char *mpath = write_file("master.cf", master_cf);
	char *text = NULL;
	if (asprintf(&text, main_cf_fmt, mpath, dir, dir, main_extra) < 0)
		text = NULL;
	char *cpath = write_file("mxgate.cf", text);
	free(text);
	free(mpath);
	return cpath;
}

static void test_services(void)
{
	char *cpath = write_config(
		"", "smtp inet n - n - - smtpd\n"
		    "127.0.0.1:2601 inet n - n - - smtpd\n"
		    "  -o smtpd_timeout=${stress?{3}:{30}}s\n"
		    "  -o { smtpd_hard_error_limit = ${stress?{2}:{$stress_errors}} }\n"
		    "127.0.0.1:2602 inet n - n - - smtpd\n"
		    "  -o smtpd_timeout=${stress?5}${stress:50}s\n"
		    "  -o smtpd_client_restrictions=${stress?{reject}:{permit}}\n"
		    "127.0.0.1:2603 inet n - n - - smtpd\n"
		    "  -o smtpd_client_restrictions=${stress?{reject}:{permit}}\n"
		    "127.0.0.1:2604 inet n - n - - smtpd\n"
		    "  -o stress=yes\n");
	/* the last service sets stress itself: refused at its master.cf line */
	struct mx_config *cfg = NULL;
	char *diag = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&diag, &n);
	int rc = mx_config_load(cpath, &cfg, f);
	fclose(f);
	CHECK_INT_EQ(rc, -EINVAL);
	CHECK(strstr(diag, "master.cf:11: parameter stress: is set by mxgate itself"));
	free(diag);
	free(cpath);

	cpath = write_config("stress_errors = 7\n",
			     "smtp inet n - n - - smtpd\n"
			     "127.0.0.1:2601 inet n - n - - smtpd\n"
			     "  -o smtpd_timeout=${stress?{3}:{30}}s\n"
			     "  -o { smtpd_hard_error_limit = ${stress?{2}:{$stress_errors}} }\n"
			     "127.0.0.1:2602 inet n - n - - smtpd\n"
			     "  -o smtpd_timeout=${stress?5}${stress:50}s\n"
			     "  -o smtpd_client_restrictions=${stress?{reject}:{permit}}\n"
			     "127.0.0.1:2603 inet n - n - - smtpd\n"
			     "  -o smtpd_client_restrictions=${stress?{reject}:{permit}}\n");
	diag = NULL;
	f = open_memstream(&diag, &n);
	struct mx_generation_opts o = { .path = cpath, .id = 1, .nworkers = 1, .diag = f };
	struct mx_generation *g = NULL;
	char err[512] = "";
	rc = mx_generation_build(&o, &g, err, sizeof(err));
	fclose(f);
	if (rc != 0)
		fprintf(stderr, "  build: %s\n%s", err, diag);
	CHECK_INT_EQ(rc, 0);
	free(diag);
	free(cpath);
	if (!g)
		return;
	CHECK_INT_EQ(g->nservices, 4);
	/* smtp: main.cf's values, none depends on stress: no variant */
	const struct mx_service *smtp = &g->services[0];
	CHECK(smtp->stress == NULL);
	CHECK(mx_generation_service(g, 0, true) == smtp);
	CHECK(mx_generation_service(g, 0, false) == smtp);
	/* 2601: timeout and error limit (a nested $name) under stress; the lists are the
	 * service's (only session parameters differ) */
	const struct mx_service *a = &g->services[1], *as = a->stress;
	CHECK(as != NULL);
	if (as) {
		CHECK(mx_generation_service(g, 1, true) == as);
		CHECK(mx_generation_service(g, 1, false) == a);
		CHECK_STR_EQ(as->name, a->name);
		CHECK_INT_EQ(as->nlisten, a->nlisten);
		CHECK_INT_EQ(a->cfg->smtpd_timeout_s, 30);
		CHECK_INT_EQ(as->cfg->smtpd_timeout_s, 3);
		CHECK_INT_EQ(a->cfg->smtp.hard_error_limit, 7);
		CHECK_INT_EQ(as->cfg->smtp.hard_error_limit, 2);
		CHECK(as->borrowed && as->policy == a->policy);
		CHECK(mx_config_service(as->cfg) == mx_config_service(a->cfg));
	}
	/* 2602: the 2.2 form; a restriction list depends on stress: compiled for it */
	const struct mx_service *b = &g->services[2], *bs = b->stress;
	CHECK(bs != NULL);
	if (bs) {
		CHECK_INT_EQ(b->cfg->smtpd_timeout_s, 50);
		CHECK_INT_EQ(bs->cfg->smtpd_timeout_s, 5);
		CHECK_STR_EQ(mx_config_get(b->cfg, "smtpd_client_restrictions"), "permit");
		CHECK_STR_EQ(mx_config_get(bs->cfg, "smtpd_client_restrictions"), "reject");
		CHECK(!bs->borrowed && bs->policy && bs->policy != b->policy);
	}
	/* 2603: only the list */
	const struct mx_service *c = &g->services[3], *cs = c->stress;
	CHECK(cs != NULL);
	if (cs) {
		CHECK_INT_EQ(cs->cfg->smtpd_timeout_s, 60);
		CHECK(!cs->borrowed && cs->policy != c->policy);
	}
	mx_generation_put(g);
}

/* Without a master file: the one service has main.cf's variant, with Postfix's
 * defaults. */
static void test_default_service(void)
{
	char *cpath = write_file("plain.cf", "myhostname = mx.example.com\n"
					     "mxgate_listen = 127.0.0.1:2600\n");
	char *text = NULL;
	if (asprintf(&text,
		     "myhostname = mx.example.com\nmxgate_listen = 127.0.0.1:2600\n"
		     "mxgate_spool_directory = %s\nmxgate_table_directory = %s\n",
		     dir, dir) < 0)
		text = NULL;
	free(cpath);
	cpath = write_file("plain.cf", text);
	free(text);
	struct mx_generation_opts o = { .path = cpath, .id = 1, .nworkers = 1 };
	struct mx_generation *g = NULL;
	char err[512] = "";
	int rc = mx_generation_build(&o, &g, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  build: %s\n", err);
	CHECK_INT_EQ(rc, 0);
	free(cpath);
	if (!g)
		return;
	const struct mx_service *s = mx_generation_service(g, 0, true);
	CHECK(s == g->services[0].stress && s != NULL);
	if (s) {
		CHECK(s->cfg == mx_config_stress(g->cfg));
		CHECK_INT_EQ(s->cfg->smtpd_timeout_s, 10);
		CHECK(s->borrowed && s->policy == g->services[0].policy);
	}
	CHECK_INT_EQ(mx_generation_service(g, 0, false)->cfg->smtpd_timeout_s, 300);
	mx_generation_put(g);
}

int main(void)
{
	RUN_TEST(test_names);
	RUN_TEST(test_enter_at_threshold);
	RUN_TEST(test_hysteresis_and_dwell);
	RUN_TEST(test_no_limit_and_edges);
	RUN_TEST(test_defaults);
	RUN_TEST(test_no_variant);
	RUN_TEST(test_forms);
	RUN_TEST(test_errors);
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-stress-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_services);
	RUN_TEST(test_default_service);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return TEST_RESULT();
}
