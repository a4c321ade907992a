/* The greylisting rules (tables/greylist.c) against the real thing: Debian's postgrey,
 * started on a private UNIX socket with its database in a temporary directory, and the
 * built-in logic (allowlists, then greylist_answer() over an in-memory store that honours
 * the records' TTLs) answer the same sequences of policy requests; every action must be
 * the same string. postgrey's policy_test_time attribute sets its clock, so the sequences
 * span days (retry windows, the hourly auto-allowlist count) without waiting.
 *
 * Three configurations: subnets with the auto-allowlist; lookup by host with the
 * auto-allowlist off, a custom text with %s and %r and a one-day retry window; other
 * prefix lengths with the DEFER action. Each runs a scripted sequence and a seeded
 * random one.
 *
 * postgrey must be installed (deploy/install-deps.sh): without it this test fails naming
 * the package; it never skips. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tables/greylist.h"
#include "testing.h"

#define POSTGREY "/usr/sbin/postgrey"
#define HEADER "X-Greylist: delayed %t seconds by postgrey-%v at %h"
#define HOST "gl-test.example"

extern char **environ;

static char dir[128];

static const char clients_file[] = "# test allowlist\n"
				   "allowed.example\n"
				   "/^mail\\d+\\.allow\\.example$/\n"
				   "10.1.2\n"
				   "1.2\n"
				   "2001:db8:9::/48\n"
				   "198.18.0.0/15\n";
static const char recipients_file[] = "postmaster@\n"
				      "allowed.example\n"
				      "joe@special.example\n"
				      "/^list-/\n";

/* ---- the built-in side: an in-memory store with TTLs ---- */

struct mem_entry {
	char key[GREYLIST_KEY_MAX + 1];
	struct greylist_record r;
	int64_t expires; /* 0: never */
};

struct mem_store {
	struct mem_entry *e;
	size_t n, cap;
	int64_t now;
};

static int mem_get(void *ctx, const char *key, struct greylist_record *out)
{
	struct mem_store *m = ctx;
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->e[i].key, key) != 0)
			continue;
		if (m->e[i].expires && m->now >= m->e[i].expires)
			return -ENOENT;
		*out = m->e[i].r;
		return 0;
	}
	return -ENOENT;
}

static int mem_put(void *ctx, const char *key, const struct greylist_record *r, uint32_t ttl_s)
{
	struct mem_store *m = ctx;
	struct mem_entry *e = NULL;
	for (size_t i = 0; i < m->n && !e; i++)
		if (strcmp(m->e[i].key, key) == 0)
			e = &m->e[i];
	if (!e) {
		if (m->n == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 64;
			m->e = realloc(m->e, m->cap * sizeof(*m->e));
			if (!m->e)
				abort();
		}
		e = &m->e[m->n++];
		snprintf(e->key, sizeof(e->key), "%s", key);
	}
	e->r = *r;
	e->expires = ttl_s ? m->now + ttl_s : 0;
	return 0;
}

struct config {
	const char *name;
	struct greylist_params p;
	unsigned v4, v6;          /* 32/128: --lookup-by-host */
	const char *action, *text;
	const char *retry_window_opt; /* postgrey's --retry-window value */
};

struct side {
	const struct config *cfg;
	struct greylist_allowlist *allow;
	struct greylist_instances inst;
	struct mem_store store;
};

static void builtin(struct side *s, int64_t now, const char *addr, const char *name,
		    const char *sender, const char *rcpt, const char *instance, char *out,
		    size_t cap)
{
	struct mx_inet_addr a;
	if (!mx_inet_parse(addr, &a))
		abort();
	if (greylist_allowlist_client(s->allow, name, &a) ||
	    greylist_allowlist_recipient(s->allow, rcpt)) {
		snprintf(out, cap, "DUNNO");
		return;
	}
	char snorm[600], net[64], client[64], key[GREYLIST_KEY_MAX + 1];
	if (greylist_sender_normalize(sender, snorm, sizeof(snorm)) < 0)
		abort();
	greylist_client_net(&a, s->cfg->v4, s->cfg->v6, net, sizeof(net));
	greylist_addr_format(&a, client, sizeof(client));
	greylist_triplet_key(net, snorm, rcpt, key, sizeof(key));
	struct greylist_request r = {
		.map = "memory:",
		.client = client,
		.key = key,
		.recipient = rcpt,
		.instance = instance,
		.action = s->cfg->action,
		.text = s->cfg->text,
		.header = HEADER,
		.host = HOST,
		.params = s->cfg->p,
	};
	struct greylist_store st = { .get = mem_get, .put = mem_put, .ctx = &s->store };
	s->store.now = now;
	enum greylist_verdict v;
	int rc = greylist_answer(&r, now, "1.37", "", &s->inst, &st, &v, out, cap);
	if (rc < 0)
		snprintf(out, cap, "(error %d)", rc);
}

/* ---- postgrey ---- */

struct postgrey {
	pid_t pid;
	int fd;
	char sock[200];
	char log[200];
};

static bool postgrey_start(struct postgrey *g, const struct config *c)
{
	char db[200], cf[200], rf[200];
	snprintf(db, sizeof(db), "%s/db-%s", dir, c->name);
	snprintf(cf, sizeof(cf), "%s/clients", dir);
	snprintf(rf, sizeof(rf), "%s/recipients", dir);
	snprintf(g->sock, sizeof(g->sock), "%s/sock-%s", dir, c->name);
	snprintf(g->log, sizeof(g->log), "%s/postgrey-%s.log", dir, c->name);
	mkdir(db, 0700);
	struct passwd *pw = getpwnam("postgrey");
	if (pw && chown(db, pw->pw_uid, pw->pw_gid) != 0)
		perror("chown");
	char o_unix[256], o_db[256], o_delay[64], o_age[64], o_rw[64], o_awl[64], o_wc[256],
		o_wr[256], o_text[600], o_action[100], o_v4[32], o_v6[32];
	snprintf(o_unix, sizeof(o_unix), "--unix=%s", g->sock);
	snprintf(o_db, sizeof(o_db), "--dbdir=%s", db);
	snprintf(o_delay, sizeof(o_delay), "--delay=%u", c->p.delay_s);
	snprintf(o_age, sizeof(o_age), "--max-age=%u", c->p.max_age_s / 86400);
	snprintf(o_rw, sizeof(o_rw), "--retry-window=%s", c->retry_window_opt);
	snprintf(o_awl, sizeof(o_awl), "--auto-whitelist-clients=%u", c->p.awl_clients);
	snprintf(o_wc, sizeof(o_wc), "--whitelist-clients=%s", cf);
	snprintf(o_wr, sizeof(o_wr), "--whitelist-recipients=%s", rf);
	snprintf(o_text, sizeof(o_text), "--greylist-text=%s", c->text);
	snprintf(o_action, sizeof(o_action), "--greylist-action=%s", c->action);
	snprintf(o_v4, sizeof(o_v4), "--ipv4cidr=%u", c->v4);
	snprintf(o_v6, sizeof(o_v6), "--ipv6cidr=%u", c->v6);
	char *argv[32];
	int n = 0;
	argv[n++] = POSTGREY;
	argv[n++] = o_unix;
	argv[n++] = o_db;
	argv[n++] = "--user=postgrey";
	argv[n++] = "--group=postgrey";
	argv[n++] = o_delay;
	argv[n++] = o_age;
	argv[n++] = o_rw;
	argv[n++] = o_awl;
	argv[n++] = o_wc;
	argv[n++] = o_wr;
	argv[n++] = o_text;
	argv[n++] = o_action;
	argv[n++] = "--hostname=" HOST;
	argv[n++] = "--x-greylist-header=" HEADER;
	if (c->v4 == 32 && c->v6 == 128) {
		argv[n++] = "--lookup-by-host";
	} else {
		argv[n++] = o_v4;
		argv[n++] = o_v6;
	}
	argv[n] = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, g->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int rc = posix_spawn(&g->pid, POSTGREY, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "posix_spawn %s: %s\n", POSTGREY, strerror(rc));
		return false;
	}
	for (int i = 0; i < 300; i++) {
		g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		if (strlen(g->sock) >= sizeof(sun.sun_path))
			break;
		memcpy(sun.sun_path, g->sock, strlen(g->sock) + 1);
		if (connect(g->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return true;
		close(g->fd);
		g->fd = -1;
		int status;
		if (waitpid(g->pid, &status, WNOHANG) == g->pid) {
			g->pid = 0;
			break;
		}
		usleep(100 * 1000);
	}
	fprintf(stderr, "postgrey (%s) did not start; see %s\n", c->name, g->log);
	return false;
}

static void postgrey_stop(struct postgrey *g)
{
	if (g->fd >= 0)
		close(g->fd);
	if (g->pid <= 0)
		return;
	/* postgrey may take its time over SIGTERM (Net::Server): then SIGKILL */
	kill(g->pid, SIGTERM);
	for (int i = 0; i < 40 && waitpid(g->pid, NULL, WNOHANG) == 0; i++)
		usleep(50 * 1000);
	if (waitpid(g->pid, NULL, WNOHANG) == 0) {
		kill(g->pid, SIGKILL);
		waitpid(g->pid, NULL, 0);
	}
	g->pid = 0;
}

/* One query; false when postgrey does not answer. */
static bool postgrey_ask(struct postgrey *g, int64_t now, const char *addr, const char *name,
			 const char *sender, const char *rcpt, const char *instance, char *out,
			 size_t cap)
{
	char req[2048];
	int n = snprintf(req, sizeof(req),
			 "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
			 "client_address=%s\nclient_name=%s\nreverse_client_name=%s\n"
			 "helo_name=helo.example\nsender=%s\nrecipient=%s\ninstance=%s\n"
			 "etrn_domain=\npolicy_test_time=%lld\n\n",
			 addr, name, name, sender, rcpt, instance, (long long)now);
	if (write(g->fd, req, (size_t)n) != n)
		return false;
	char buf[2048];
	size_t got = 0;
	while (got < 2 || memcmp(buf + got - 2, "\n\n", 2) != 0) {
		struct pollfd pfd = { .fd = g->fd, .events = POLLIN };
		if (poll(&pfd, 1, 20000) != 1)
			return false;
		ssize_t r = read(g->fd, buf + got, sizeof(buf) - 1 - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
		if (got >= sizeof(buf) - 1)
			return false;
	}
	buf[got - 2] = '\0';
	if (strncmp(buf, "action=", 7) != 0)
		return false;
	size_t alen = strlen(buf + 7);
	if (alen >= cap)
		return false;
	memcpy(out, buf + 7, alen + 1);
	return true;
}

/* ---- the sequences ---- */

static const struct {
	const char *addr, *name;
} clients[] = {
	{ "192.0.2.10", "mail.a.example" },
	{ "192.0.2.99", "unknown" },           /* same /24 */
	{ "198.51.100.5", "mx1.b.example" },
	{ "2001:db8:1:2::25", "v6.c.example" },
	{ "2001:db8:1:2::26", "unknown" },     /* same /64 */
	{ "2001:db8:1:3::1", "x.d.example" },
	{ "203.0.113.7", "mail12.allow.example" }, /* regexp */
	{ "203.0.113.8", "smtp.allowed.example" }, /* name suffix */
	{ "10.1.2.3", "unknown" },             /* "10.1.2" */
	{ "1.2.0.9", "unknown" },              /* "1.2" is 1.2.0.0/24 */
	{ "1.2.5.9", "unknown" },              /* ... so this is not */
	{ "2001:db8:9:1::1", "unknown" },      /* 2001:db8:9::/48 */
	{ "198.19.4.4", "unknown" },           /* 198.18.0.0/15 */
	{ "192.0.3.10", "notallowed.example" },
};
static const char *const senders[] = {
	"",
	"user@s.example",
	"bounce-123-4567@lists.example",
	"bounce-999-4567@lists.example",
	"prvs=0123456789=joe@batv.example",
	"prvs=9876543210=joe@batv.example",
	"User+tag@S.Example",
	"a.12.b@x.example",
	"MAILER-DAEMON",
};
static const char *const recipients[] = {
	"rcpt1@r.example",
	"Rcpt1@R.example",
	"rcpt2@r.example",
	"postmaster@r.example",
	"x@sub.allowed.example",
	"joe+ext@special.example",
	"list-a@r.example",
	"noat",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng;
static uint32_t rnd(uint32_t n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33) % n;
}

static unsigned compared, differed;
static unsigned n_defer, n_prepend, n_dunno; /* postgrey's answers by kind */

static void one(struct side *s, struct postgrey *g, int64_t now, unsigned ci, const char *sender,
		const char *rcpt, const char *instance)
{
	char a[GREYLIST_ACTION_MAX], b[GREYLIST_ACTION_MAX];
	if (!postgrey_ask(g, now, clients[ci].addr, clients[ci].name, sender, rcpt, instance, a,
			  sizeof(a))) {
		fprintf(stderr, "%s: postgrey did not answer (see %s)\n", s->cfg->name, g->log);
		differed++;
		return;
	}
	builtin(s, now, clients[ci].addr, clients[ci].name, sender, rcpt, instance, b, sizeof(b));
	compared++;
	if (strncmp(a, "DEFER", 5) == 0)
		n_defer++;
	else if (strncmp(a, "PREPEND ", 8) == 0)
		n_prepend++;
	else if (strcmp(a, "DUNNO") == 0)
		n_dunno++;
	if (strcmp(a, b) != 0) {
		differed++;
		if (differed < 20)
			fprintf(stderr,
				"%s: t=%lld %s[%s] <%s> -> <%s> instance %s:\n  postgrey: %s\n  "
				"built-in: %s\n",
				s->cfg->name, (long long)now, clients[ci].name, clients[ci].addr,
				sender, rcpt, instance, a, b);
	}
}

static void run_config(const struct config *c, unsigned steps, uint64_t seed)
{
	struct side s = { .cfg = c };
	greylist_instances_init(&s.inst);
	s.allow = greylist_allowlist_new();
	char err[300];
	CHECK_INT_EQ(greylist_allowlist_add(s.allow, GREYLIST_LIST_CLIENTS, clients_file,
					    strlen(clients_file), NULL, NULL, err, sizeof(err)),
		     0);
	CHECK_INT_EQ(greylist_allowlist_add(s.allow, GREYLIST_LIST_RECIPIENTS, recipients_file,
					    strlen(recipients_file), NULL, NULL, err, sizeof(err)),
		     0);
	struct postgrey g = { .fd = -1 };
	if (!postgrey_start(&g, c)) {
		CHECK(!"postgrey started");
		postgrey_stop(&g);
		greylist_allowlist_free(s.allow);
		return;
	}
	int64_t t = 1700000000;
	int64_t d = c->p.delay_s;
	/* scripted: new, early retry, pass with header, pass, second recipient of the same
	 * message, another message; the retry window; the auto-allowlist over hours */
	one(&s, &g, t, 0, senders[1], recipients[0], "m1");
	one(&s, &g, t + d / 2, 0, senders[1], recipients[0], "m2");
	one(&s, &g, t + d, 0, senders[1], recipients[0], "m3");
	one(&s, &g, t + d + 1, 0, senders[1], recipients[0], "m4");
	one(&s, &g, t + d + 2, 1, senders[6], recipients[2], "m5");
	one(&s, &g, t + 2 * d + 2, 1, senders[6], recipients[2], "m6");
	one(&s, &g, t + 2 * d + 2, 1, senders[6], recipients[1], "m6");
	one(&s, &g, t + 2 * d + 3, 1, senders[7], recipients[1], "m6");
	t += 3 * d;
	one(&s, &g, t, 2, senders[2], recipients[0], "m7");
	t += (int64_t)c->p.retry_window_s + 1;
	one(&s, &g, t, 2, senders[3], recipients[0], "m8");
	one(&s, &g, t + d, 2, senders[3], recipients[0], "m9");
	for (int h = 0; h < 8; h++) {
		t += 3601;
		char inst[16];
		snprintf(inst, sizeof(inst), "h%d", h);
		one(&s, &g, t, 3, senders[h % COUNT(senders)], recipients[h % 3], inst);
		one(&s, &g, t + d, 3, senders[h % COUNT(senders)], recipients[h % 3], inst);
		one(&s, &g, t + d + 1, 4, senders[(h + 1) % COUNT(senders)], recipients[2], inst);
	}
	/* random: time moves by seconds, hours, or (rarely) days, within max_age */
	rng = seed;
	char inst[16] = "r0";
	unsigned ninst = 0;
	int64_t end = t + 25 * 86400;
	for (unsigned i = 0; i < steps; i++) {
		uint32_t k = rnd(100);
		if (k < 70)
			t += rnd((uint32_t)d * 2 + 1);
		else if (k < 97)
			t += rnd(3 * 3600);
		else
			t += rnd(3 * 86400);
		if (t > end)
			t = end;
		if (rnd(3) != 0)
			snprintf(inst, sizeof(inst), "r%u", ++ninst);
		one(&s, &g, t, rnd(COUNT(clients)), senders[rnd(COUNT(senders))],
		    recipients[rnd(COUNT(recipients))], inst);
	}
	postgrey_stop(&g);
	greylist_allowlist_free(s.allow);
	free(s.store.e);
}

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		abort();
}

static void test_against_postgrey(void)
{
	struct config c1 = { .name = "subnet", .v4 = 24, .v6 = 64, .action = "DEFER_IF_PERMIT",
			     .text = GREYLIST_DEFAULT_TEXT, .retry_window_opt = "2" };
	greylist_params_init(&c1.p);
	c1.p.delay_s = 60;
	c1.p.awl_clients = 3;
	struct config c2 = { .name = "host", .v4 = 32, .v6 = 128, .action = "DEFER_IF_PERMIT",
			     .text = "Wait %s more seconds for %r please",
			     .retry_window_opt = "1" };
	greylist_params_init(&c2.p);
	c2.p.delay_s = 120;
	c2.p.awl_clients = 0;
	c2.p.retry_window_s = 86400;
	struct config c3 = { .name = "prefix", .v4 = 16, .v6 = 48, .action = "DEFER",
			     .text = "450 4.7.1 try again later (%r)", .retry_window_opt = "6h" };
	greylist_params_init(&c3.p);
	c3.p.delay_s = 30;
	c3.p.retry_window_s = 6 * 3600;
	c3.p.max_age_s = 30 * 86400;
	run_config(&c1, 1200, 1);
	run_config(&c2, 800, 2);
	run_config(&c3, 800, 3);
	fprintf(stderr, "compared %u answers (%u deferred, %u with the header, %u DUNNO), %u "
			"differed\n",
		compared, n_defer, n_prepend, n_dunno, differed);
	CHECK(compared > 2800);
	/* the sequences reach every kind of answer */
	CHECK(n_defer > 300);
	CHECK(n_prepend > 40);
	CHECK(n_dunno > 300);
	CHECK_INT_EQ(differed, 0);
}

int main(void)
{
	if (access(POSTGREY, X_OK) != 0) {
		fprintf(stderr, "%s is missing: install the Debian package postgrey "
				"(deploy/install-deps.sh)\n", POSTGREY);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	/* in /tmp itself: postgrey drops to its own user, who must reach the directory */
	snprintf(dir, sizeof(dir), "/tmp/mxgate-greylist-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(dir, 0755);
	write_file("clients", clients_file);
	write_file("recipients", recipients_file);
	RUN_TEST(test_against_postgrey);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
	if (testing_failures == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return TEST_RESULT();
}
