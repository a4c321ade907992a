/* A private memcached for the tests of the memcache clients (test_dict_memcache.c,
 * test_anvil_svc.c): a free port of 127.0.0.1, the server started there and killed, a
 * connection to it. memcached must be installed (deploy/install-deps.sh). Header-only:
 * each test is one executable. */
#ifndef MXGATE_TESTS_MEMCACHED_HARNESS_H
#define MXGATE_TESTS_MEMCACHED_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mxgate/clock.h"

#define MEMCACHED "/usr/bin/memcached"

/* A TCP port of 127.0.0.1 free a moment ago, or -1. */
static inline int mch_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return ntohs(sin.sin_port);
}

/* A blocking connection to 127.0.0.1:port, or -1. */
static inline int mch_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(0x7f000001) };
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* memcached on 127.0.0.1:port, its messages in logdir/memcached.log: its pid once it
 * accepts connections (within 5 s), or -1. */
static inline pid_t mch_start(int port, const char *logdir)
{
	char portbuf[16];
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		char out[160];
		snprintf(out, sizeof(out), "%s/memcached.log", logdir);
		FILE *f = freopen(out, "a", stderr);
		(void)f;
		/* as root memcached wants a user to drop to */
		if (geteuid() == 0)
			execl(MEMCACHED, "memcached", "-l", "127.0.0.1", "-p", portbuf, "-U", "0",
			      "-m", "16", "-t", "1", "-u", "nobody", (char *)NULL);
		else
			execl(MEMCACHED, "memcached", "-l", "127.0.0.1", "-p", portbuf, "-U", "0",
			      "-m", "16", "-t", "1", (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return -1;
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while (mx_clock_monotonic_ms() < end) {
		int fd = mch_connect(port);
		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(20000);
	}
	fprintf(stderr, "memcached did not start on port %d (see %s/memcached.log)\n", port,
		logdir);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Kill the memcached *pid (if any) and wait for it. */
static inline void mch_stop(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = -1;
}

#endif
