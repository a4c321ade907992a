/* A real unbound (Debian package `unbound`) for the resolver's test and benchmark: started
 * in the foreground with its configuration in a temporary directory, on 127.0.0.1 at a
 * free port, serving local zones only (no recursion, no network). Header-only, ru_
 * prefix. */
#ifndef MXGATE_TESTS_RESOLVER_UNBOUND_H
#define MXGATE_TESTS_RESOLVER_UNBOUND_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define RU_UNBOUND "/usr/sbin/unbound"

struct ru {
	char dir[64];
	uint16_t port;
	pid_t pid;
};

/* A port free on 127.0.0.1 for UDP and TCP at the time of asking. */
static inline uint16_t ru_free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t sl = sizeof(sin);
		int u = socket(AF_INET, SOCK_DGRAM, 0);
		int t = socket(AF_INET, SOCK_STREAM, 0);
		bool ok = bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
			  getsockname(u, (struct sockaddr *)&sin, &sl) == 0 &&
			  bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(u);
		close(t);
		if (ok)
			return ntohs(sin.sin_port);
	}
	return 0;
}

/* Start unbound with `zones` (server: clauses, one per line). 0; -ENOENT when the
 * package is missing (the caller fails naming it); another -errno with a message. */
static inline int ru_start(struct ru *u, const char *zones)
{
	memset(u, 0, sizeof(*u));
	if (access(RU_UNBOUND, X_OK) != 0)
		return -ENOENT;
	snprintf(u->dir, sizeof(u->dir), "/tmp/mxgate-unbound.XXXXXX");
	if (!mkdtemp(u->dir))
		return -errno;
	u->port = ru_free_port();
	char path[128];
	snprintf(path, sizeof(path), "%s/unbound.conf", u->dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f,
		"server:\n"
		"  interface: 127.0.0.1\n"
		"  port: %u\n"
		"  do-ip6: no\n"
		"  do-daemonize: no\n"
		"  username: \"\"\n"
		"  chroot: \"\"\n"
		"  directory: \"%s\"\n"
		"  pidfile: \"\"\n"
		"  use-syslog: no\n"
		"  logfile: \"%s/unbound.log\"\n"
		"  verbosity: 1\n"
		"  num-threads: 1\n"
		"  access-control: 127.0.0.0/8 allow\n"
		"  module-config: \"iterator\"\n"
		"  auto-trust-anchor-file: \"\"\n"
		"  ratelimit: 0\n"
		"  ip-ratelimit: 0\n"
		"%s"
		"remote-control:\n"
		"  control-enable: no\n",
		u->port, u->dir, u->dir, zones);
	fclose(f);
	u->pid = fork();
	if (u->pid < 0)
		return -errno;
	if (u->pid == 0) {
		char out[128];
		snprintf(out, sizeof(out), "%s/stderr", u->dir);
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(RU_UNBOUND, "unbound", "-d", "-c", path, (char *)NULL);
		_exit(127);
	}
	return 0;
}

/* unbound's own words, for a failure message. */
static inline void ru_dump(const struct ru *u)
{
	const char *files[] = { "stderr", "unbound.log" };
	for (int i = 0; i < 2; i++) {
		char path[128], buf[4096];
		snprintf(path, sizeof(path), "%s/%s", u->dir, files[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		fprintf(stderr, "--- unbound %s ---\n%s\n", files[i], buf);
	}
}

static inline bool ru_running(const struct ru *u)
{
	int st;
	return u->pid > 0 && waitpid(u->pid, &st, WNOHANG) == 0;
}

static inline void ru_stop(struct ru *u)
{
	if (u->pid > 0) {
		kill(u->pid, SIGTERM);
		int st;
		waitpid(u->pid, &st, 0);
		u->pid = 0;
	}
	if (u->dir[0]) {
		const char *files[] = { "unbound.conf", "unbound.log", "stderr" };
		char path[128];
		for (int i = 0; i < 3; i++) {
			snprintf(path, sizeof(path), "%s/%s", u->dir, files[i]);
			unlink(path);
		}
		rmdir(u->dir);
		u->dir[0] = '\0';
	}
}

#endif
