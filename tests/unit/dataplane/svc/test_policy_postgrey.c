/* The policy service against a real policy server: Debian's postgrey (greylisting, the
 * tutorials' standard check_policy_service), started twice, on 127.0.0.1:<free port> and
 * on a UNIX socket, with --delay=2. For each transport: a new triplet is greylisted
 * (DEFER_IF_PERMIT), so is an early retry, a retry after the delay passes with postgrey's
 * X-Greylist header (PREPEND), the next one is DUNNO, and another recipient is greylisted
 * afresh. All over one persistent connection per server.
 *
 * postgrey must be installed (deploy/install-deps.sh): without it this test fails and says
 * so; it never skips. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_policy.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "smtp/smtp_delegation.h"
#include "testing.h"

#define POSTGREY "/usr/sbin/postgrey"
#define DELAY_S 2

extern char **environ;

static char dir[64];
static char log_path[128];

struct postgrey {
	pid_t pid;
	char endpoint[200];
	char log[128];
	char path[100];   /* UNIX socket, or "" */
	unsigned port;    /* TCP port, or 0 */
};

static unsigned free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &len);
	close(fd);
	return ntohs(sin.sin_port);
}

/* A directory postgrey may write to once it dropped to its user. */
static void make_dir(const char *path, uid_t uid, gid_t gid)
{
	mkdir(path, 0700);
	if (chown(path, uid, gid) != 0 && getuid() == 0)
		fprintf(stderr, "chown %s: %s\n", path, strerror(errno));
}

static bool postgrey_start(struct postgrey *g, bool unix_socket, const char *user,
			   const char *group, uid_t uid, gid_t gid)
{
	const char *kind = unix_socket ? "unix" : "inet";
	char db[128], listen_opt[200], dbdir_opt[160], user_opt[80], group_opt[80], wl_c[128],
		wl_r[128];
	snprintf(db, sizeof(db), "%s/db-%s", dir, kind);
	make_dir(db, uid, gid);
	if (unix_socket) {
		char sockdir[80];
		snprintf(sockdir, sizeof(sockdir), "%s/sock", dir);
		make_dir(sockdir, uid, gid);
		snprintf(g->path, sizeof(g->path), "%s/policy", sockdir);
		snprintf(listen_opt, sizeof(listen_opt), "--unix=%s", g->path);
		snprintf(g->endpoint, sizeof(g->endpoint), "unix:%s", g->path);
	} else {
		g->port = free_port();
		snprintf(listen_opt, sizeof(listen_opt), "--inet=127.0.0.1:%u", g->port);
		snprintf(g->endpoint, sizeof(g->endpoint), "inet:127.0.0.1:%u", g->port);
	}
	snprintf(dbdir_opt, sizeof(dbdir_opt), "--dbdir=%s", db);
	snprintf(user_opt, sizeof(user_opt), "--user=%s", user);
	snprintf(group_opt, sizeof(group_opt), "--group=%s", group);
	snprintf(wl_c, sizeof(wl_c), "--whitelist-clients=%s/empty", dir);
	snprintf(wl_r, sizeof(wl_r), "--whitelist-recipients=%s/empty", dir);
	char delay_opt[32];
	snprintf(delay_opt, sizeof(delay_opt), "--delay=%d", DELAY_S);
	char *argv[] = { POSTGREY, listen_opt, dbdir_opt, user_opt, group_opt, delay_opt, wl_c,
			 wl_r, "--auto-whitelist-clients=0", "--hostname=mxgate-test", NULL };
	snprintf(g->log, sizeof(g->log), "%s/postgrey-%s.log", dir, kind);
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
	/* ready when it accepts a connection */
	uint64_t end = mx_clock_monotonic_ms() + 20000;
	while (mx_clock_monotonic_ms() < end) {
		int fd;
		int ok;
		if (unix_socket) {
			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			struct sockaddr_un sun = { .sun_family = AF_UNIX };
			snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", g->path);
			ok = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
		} else {
			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			struct sockaddr_in sin = { .sin_family = AF_INET,
						   .sin_port = htons((uint16_t)g->port),
						   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
			ok = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		}
		close(fd);
		if (ok)
			return true;
		int status;
		if (waitpid(g->pid, &status, WNOHANG) == g->pid) {
			g->pid = 0;
			break;
		}
		usleep(100 * 1000);
	}
	fprintf(stderr, "postgrey (%s) did not start; its output:\n", kind);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "cat %s >&2", g->log);
	if (system(cmd) != 0)
		fprintf(stderr, "(none)\n");
	return false;
}

static void postgrey_stop(struct postgrey *g)
{
	if (g->pid <= 0)
		return;
	kill(g->pid, SIGTERM);
	int status;
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while (waitpid(g->pid, &status, WNOHANG) == 0) {
		if (mx_clock_monotonic_ms() > end) {
			kill(g->pid, SIGKILL);
			waitpid(g->pid, &status, 0);
			break;
		}
		usleep(50 * 1000);
	}
	g->pid = 0;
}

/* ---- the service ---- */

struct worker {
	struct svc_set *set;
	struct svc_client *c;
	int wake;
	struct svc_request *got;
};

static void on_answer(void *arg, struct svc_request *r)
{
	struct worker *w = arg;
	w->got = r;
}

/* A RCPT query for the triplet (client, sender, recipient), as smtpd sends it. */
static int query(struct worker *w, const char *endpoint, const char *recipient, char *action,
		 size_t cap)
{
	struct smtp_delegation_request q;
	smtp_delegation_request_init(&q);
	q.protocol_state = SMTP_DELEGATION_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = "192.0.2.10";
	q.client_name = "mail.example.test";
	q.reverse_client_name = "mail.example.test";
	q.client_port = 40000;
	q.server_address = "192.0.2.25";
	q.server_port = 25;
	q.helo_name = "mail.example.test";
	q.sender = "alice@example.org";
	q.recipient = recipient;
	q.instance = "4a1b.6752f0c1.8d2e3.0";
	struct svc_request *r = svc_request_new(SVC_POLICY);
	size_t len = 0;
	smtp_delegation_request_encode(&q, NULL, 0, &len);
	r->u.policy.request = malloc(len);
	CHECK_INT_EQ(smtp_delegation_request_encode(&q, r->u.policy.request, len,
						    &r->u.policy.request_len),
		     0);
	snprintf(r->u.policy.endpoint, sizeof(r->u.policy.endpoint), "%s", endpoint);
	/* Postfix's defaults: timeout 100s (here 10s), max_idle 300s, max_ttl 1000s */
	r->u.policy.timeout_ms = 10000;
	r->u.policy.max_idle_ms = 300000;
	r->u.policy.max_ttl_ms = 1000000;
	r->u.policy.try_limit = 2;
	r->deadline_ms = mx_clock_monotonic_ms() + 25000;
	CHECK_INT_EQ(svc_submit(w->c, r), 0);
	svc_client_flush(w->c);
	w->got = NULL;
	uint64_t end = mx_clock_monotonic_ms() + 30000;
	while (!w->got && mx_clock_monotonic_ms() < end) {
		struct pollfd p = { .fd = w->wake, .events = POLLIN };
		poll(&p, 1, 50);
		uint64_t v;
		ssize_t k = read(w->wake, &v, sizeof(v));
		(void)k;
		svc_client_poll(w->c, on_answer, w);
	}
	CHECK(w->got != NULL);
	if (!w->got)
		return -999;
	int status = w->got->status;
	snprintf(action, cap, "%s", w->got->u.policy.action ? w->got->u.policy.action : "");
	svc_request_free(w->got);
	w->got = NULL;
	return status;
}

static enum smtp_delegation_action_kind kind_of(const char *action)
{
	struct smtp_delegation_action a;
	smtp_delegation_action_classify(mx_span_cstr(action), &a);
	return a.kind;
}

static void check_kind(const char *what, const char *action,
		       enum smtp_delegation_action_kind want)
{
	enum smtp_delegation_action_kind got = kind_of(action);
	if (got != want)
		fprintf(stderr, "%s: action \"%s\" is %s, expected %s\n", what, action,
			smtp_delegation_action_kind_name(got), smtp_delegation_action_kind_name(want));
	CHECK_INT_EQ(got, want);
}

static struct postgrey servers[2];

static void test_greylisting(void)
{
	struct svc_policy_params pp;
	svc_policy_params_init(&pp);
	struct worker w = { 0 };
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_POLICY] = &svc_policy_ops },
				     .params = { [SVC_POLICY] = &pp } };
	char err[256];
	CHECK_INT_EQ(svc_set_start(&w.set, &sp, err, sizeof(err)), 0);
	w.wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w.c = svc_client_new(w.set, 0, w.wake);
	char action[SVC_POLICY_ACTION_MAX];

	for (int i = 0; i < 2; i++) {
		/* a new triplet: greylisted (postgrey's --greylist-action, DEFER_IF_PERMIT,
		 * which smtpd turns into 450 4.7.1 when the rest would accept) */
		CHECK_INT_EQ(query(&w, servers[i].endpoint, "bob@example.net", action,
				   sizeof(action)),
			     0);
		check_kind("first try", action, SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT);
		CHECK(strstr(action, "Greylisted") != NULL);
		/* too early: still greylisted */
		CHECK_INT_EQ(query(&w, servers[i].endpoint, "bob@example.net", action,
				   sizeof(action)),
			     0);
		check_kind("early retry", action, SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT);
	}
	sleep(DELAY_S + 1);
	for (int i = 0; i < 2; i++) {
		/* after the delay: passes, with the header saying how long it waited */
		CHECK_INT_EQ(query(&w, servers[i].endpoint, "bob@example.net", action,
				   sizeof(action)),
			     0);
		check_kind("retry after the delay", action, SMTP_DELEGATION_ACTION_PREPEND);
		CHECK(strncmp(action, "PREPEND X-Greylist: delayed ", 28) == 0);
		CHECK(strstr(action, "by postgrey-") != NULL);
		/* and from then on, nothing to say */
		CHECK_INT_EQ(query(&w, servers[i].endpoint, "bob@example.net", action,
				   sizeof(action)),
			     0);
		check_kind("next message", action, SMTP_DELEGATION_ACTION_DUNNO);
		CHECK_STR_EQ(action, "DUNNO");
		/* another recipient is another triplet */
		CHECK_INT_EQ(query(&w, servers[i].endpoint, "carol@example.net", action,
				   sizeof(action)),
			     0);
		check_kind("another triplet", action, SMTP_DELEGATION_ACTION_DEFER_IF_PERMIT);
	}

	/* ten queries per server, one connection each */
	svc_set_log_statistics(w.set, "test");
	FILE *f = fopen(log_path, "r");
	char line[4096] = "", last[4096] = "";
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "policy statistics"))
			snprintf(last, sizeof(last), "%s", line);
	if (f)
		fclose(f);
	if (!strstr(last, " requests=10 replies=10 failed=0 ") ||
	    !strstr(last, " conns_opened=2 conns_reused=8 "))
		fprintf(stderr, "statistics: %s\n", last);
	CHECK(strstr(last, " requests=10 replies=10 failed=0 ") != NULL);
	CHECK(strstr(last, " conns_opened=2 conns_reused=8 ") != NULL);

	svc_client_free(w.c);
	svc_set_free(w.set);
	close(w.wake);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	if (access(POSTGREY, X_OK) != 0) {
		fprintf(stderr, "FAIL: %s not found: install the Debian package postgrey "
				"(deploy/install-deps.sh installs it)\n",
			POSTGREY);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/mxgate-postgrey-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(dir, 0755);
	snprintf(log_path, sizeof(log_path), "%s/mxgate.log", dir);
	if (mx_log_open(log_path, "test", "mxgate") != 0)
		return 1;
	char empty[128];
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	fclose(fopen(empty, "w"));

	/* as root, postgrey drops to its own user (the package creates it); otherwise it
	 * runs as whoever runs the test */
	const char *user, *group;
	uid_t uid = getuid();
	gid_t gid = getgid();
	static char ubuf[64], gbuf[64];
	if (uid == 0) {
		struct passwd *pw = getpwnam("postgrey");
		if (!pw) {
			fprintf(stderr, "FAIL: no user postgrey: reinstall the Debian package "
					"postgrey\n");
			return 1;
		}
		user = "postgrey";
		group = "postgrey";
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	} else {
		struct passwd *pw = getpwuid(uid);
		struct group *gr = getgrgid(gid);
		snprintf(ubuf, sizeof(ubuf), "%s", pw ? pw->pw_name : "nobody");
		snprintf(gbuf, sizeof(gbuf), "%s", gr ? gr->gr_name : "nogroup");
		user = ubuf;
		group = gbuf;
	}
	bool up = postgrey_start(&servers[0], false, user, group, uid, gid) &&
		  postgrey_start(&servers[1], true, user, group, uid, gid);
	CHECK(up);
	if (up)
		RUN_TEST(test_greylisting);
	postgrey_stop(&servers[0]);
	postgrey_stop(&servers[1]);
	mx_log_close();
	if (testing_failures == 0)
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s for a look\n", dir);
	return TEST_RESULT();
}
