/* A scripted policy server for the policy service's tests, on 127.0.0.1, [::1] or a UNIX
 * socket, in a thread of its own. Each request says how to answer it in its "recipient"
 * attribute (the service sends requests untouched, so a test scripts its own reply):
 *
 *   ok:ACTION         action=ACTION and the empty line
 *   id:ACTION         action=ACTION conn=<connection number> req=<requests on it>
 *   delay:MS:ACTION   the same as ok:, MS milliseconds later
 *   hex:HEX           exactly these bytes (hex-encoded)
 *   hexclose:HEX      these bytes, then close the connection
 *   trail:ACTION      the reply, then "extra=1\n" after it in the same write
 *   huge              20000 octets of 'x' without a newline
 *   half              "action=DUN", then close the connection
 *   close             close the connection without a word
 *   never             read the request and never answer
 *   flaky:ACTION      close without a reply on odd-numbered flaky requests, else ok:
 *   first:ACTION      ok: for a connection's first request; close on any later one
 *
 * It counts what the tests check: connections accepted, requests, connections open now
 * and at most, the most requests seen on one connection, connections the client closed. */
#ifndef MXGATE_TESTS_POLICY_SERVER_H
#define MXGATE_TESTS_POLICY_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mxgate/clock.h"

#define PSRV_CONNS 128
#define PSRV_IN_MAX (64 * 1024)

struct psrv_conn {
	int fd;               /* -1: free slot */
	int id;               /* 1, 2, ... in accept order */
	unsigned requests;
	size_t inlen;
	char in[PSRV_IN_MAX];
	uint64_t reply_at;    /* a delayed reply is due (0: none) */
	char reply[4200];
	size_t reply_len;
};

struct psrv {
	int lfd;
	int family;
	unsigned port;
	char path[108];
	char endpoint[300];   /* for the service: "inet:127.0.0.1:PORT" or "unix:PATH" */
	pthread_t thread;
	bool running;
	int ctl;              /* eventfd: wake the thread to look at stop/drop */
	atomic_bool stop, drop;
	atomic_int accepted, requests, open, peak_open, max_on_conn, eofs, bad, flaky;
	struct psrv_conn conns[PSRV_CONNS];
};

static int psrv_unhex(const char *s, char *out, size_t cap)
{
	size_t n = 0;
	for (; s[0] && s[1] && n < cap; s += 2) {
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			return -1;
		out[n++] = (char)v;
	}
	return (int)n;
}

static void psrv_close(struct psrv *s, struct psrv_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->reply_at = 0;
	atomic_fetch_sub(&s->open, 1);
}

static void psrv_send(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

/* Answer one request as its script says. Returns false when the connection was closed. */
static bool psrv_answer(struct psrv *s, struct psrv_conn *c, const char *req, size_t len)
{
	atomic_fetch_add(&s->requests, 1);
	c->requests++;
	int most = atomic_load(&s->max_on_conn);
	while ((int)c->requests > most &&
	       !atomic_compare_exchange_weak(&s->max_on_conn, &most, (int)c->requests))
		;
	static const char first[] = "request=smtpd_access_policy\n";
	if (len < sizeof(first) - 1 || memcmp(req, first, sizeof(first) - 1) != 0)
		atomic_fetch_add(&s->bad, 1);
	char script[4200] = "";
	const char *r = NULL;
	for (const char *p = req; p < req + len;) {
		if ((size_t)(req + len - p) > 10 && memcmp(p, "recipient=", 10) == 0) {
			r = p + 10;
			break;
		}
		const char *nl = memchr(p, '\n', (size_t)(req + len - p));
		if (!nl)
			break;
		p = nl + 1;
	}
	if (r) {
		const char *e = memchr(r, '\n', (size_t)(req + len - r));
		size_t n = (size_t)(e - r) < sizeof(script) - 1 ? (size_t)(e - r) : sizeof(script) - 1;
		memcpy(script, r, n);
		script[n] = '\0';
	}
	char out[4300];
	int n;
	if (strncmp(script, "ok:", 3) == 0) {
		n = snprintf(out, sizeof(out), "action=%s\n\n", script + 3);
		psrv_send(c->fd, out, (size_t)n);
	} else if (strncmp(script, "id:", 3) == 0) {
		n = snprintf(out, sizeof(out), "action=%s conn=%d req=%u\n\n", script + 3, c->id,
			     c->requests);
		psrv_send(c->fd, out, (size_t)n);
	} else if (strncmp(script, "delay:", 6) == 0) {
		char *action;
		unsigned long ms = strtoul(script + 6, &action, 10);
		if (*action == ':')
			action++;
		n = snprintf(c->reply, sizeof(c->reply), "action=%s\n\n", action);
		c->reply_len = (size_t)n;
		c->reply_at = mx_clock_monotonic_ms() + ms;
	} else if (strncmp(script, "hex:", 4) == 0 || strncmp(script, "hexclose:", 9) == 0) {
		bool close_after = script[3] != ':';
		n = psrv_unhex(script + (close_after ? 9 : 4), out, sizeof(out));
		if (n > 0)
			psrv_send(c->fd, out, (size_t)n);
		if (close_after) {
			psrv_close(s, c);
			return false;
		}
	} else if (strncmp(script, "trail:", 6) == 0) {
		n = snprintf(out, sizeof(out), "action=%s\n\nextra=1\n", script + 6);
		psrv_send(c->fd, out, (size_t)n);
	} else if (strcmp(script, "huge") == 0) {
		static char x[20000];
		memset(x, 'x', sizeof(x));
		ssize_t k = send(c->fd, x, sizeof(x), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)k;
	} else if (strcmp(script, "half") == 0) {
		psrv_send(c->fd, "action=DUN", 10);
		psrv_close(s, c);
		return false;
	} else if (strcmp(script, "close") == 0) {
		psrv_close(s, c);
		return false;
	} else if (strncmp(script, "flaky:", 6) == 0) {
		if (atomic_fetch_add(&s->flaky, 1) % 2 == 0) {
			psrv_close(s, c);
			return false;
		}
		n = snprintf(out, sizeof(out), "action=%s\n\n", script + 6);
		psrv_send(c->fd, out, (size_t)n);
	} else if (strncmp(script, "first:", 6) == 0) {
		if (c->requests > 1) {
			psrv_close(s, c);
			return false;
		}
		n = snprintf(out, sizeof(out), "action=%s\n\n", script + 6);
		psrv_send(c->fd, out, (size_t)n);
	} else if (strcmp(script, "never") != 0) {
		atomic_fetch_add(&s->bad, 1);
	}
	return true;
}

static void psrv_read(struct psrv *s, struct psrv_conn *c)
{
	ssize_t k = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0) {
		atomic_fetch_add(&s->eofs, 1);
		psrv_close(s, c);
		return;
	}
	c->inlen += (size_t)k;
	for (;;) {
		char *end = memmem(c->in, c->inlen, "\n\n", 2);
		if (!end)
			break;
		size_t len = (size_t)(end - c->in) + 2;
		if (!psrv_answer(s, c, c->in, len))
			return;
		memmove(c->in, c->in + len, c->inlen - len);
		c->inlen -= len;
	}
	if (c->inlen == sizeof(c->in)) {
		atomic_fetch_add(&s->bad, 1);
		psrv_close(s, c);
	}
}

static void *psrv_main(void *arg)
{
	struct psrv *s = arg;
	int next_id = 1;
	struct pollfd pfd[PSRV_CONNS + 2];
	int slot[PSRV_CONNS + 2];
	while (!atomic_load(&s->stop)) {
		uint64_t now = mx_clock_monotonic_ms(), wake = UINT64_MAX;
		int n = 0;
		pfd[n] = (struct pollfd){ .fd = s->ctl, .events = POLLIN };
		slot[n++] = -1;
		pfd[n] = (struct pollfd){ .fd = s->lfd, .events = POLLIN };
		slot[n++] = -2;
		for (int i = 0; i < PSRV_CONNS; i++) {
			if (s->conns[i].fd < 0)
				continue;
			pfd[n] = (struct pollfd){ .fd = s->conns[i].fd, .events = POLLIN };
			slot[n++] = i;
			if (s->conns[i].reply_at && s->conns[i].reply_at < wake)
				wake = s->conns[i].reply_at;
		}
		int timeout = wake == UINT64_MAX ? 1000 : wake <= now ? 0 : (int)(wake - now);
		poll(pfd, (nfds_t)n, timeout);
		if (pfd[0].revents) {
			uint64_t v;
			ssize_t k = read(s->ctl, &v, sizeof(v));
			(void)k;
			if (atomic_exchange(&s->drop, false))
				for (int i = 0; i < PSRV_CONNS; i++)
					if (s->conns[i].fd >= 0)
						psrv_close(s, &s->conns[i]);
		}
		for (int k = 1; k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (slot[k] == -2) {
				int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				int i = 0;
				while (i < PSRV_CONNS && s->conns[i].fd >= 0)
					i++;
				if (i == PSRV_CONNS) {
					close(fd);
					continue;
				}
				struct psrv_conn *c = &s->conns[i];
				c->fd = fd;
				c->id = next_id++;
				c->requests = 0;
				c->inlen = 0;
				c->reply_at = 0;
				atomic_fetch_add(&s->accepted, 1);
				int open = atomic_fetch_add(&s->open, 1) + 1;
				int peak = atomic_load(&s->peak_open);
				while (open > peak &&
				       !atomic_compare_exchange_weak(&s->peak_open, &peak, open))
					;
			} else if (s->conns[slot[k]].fd >= 0) {
				psrv_read(s, &s->conns[slot[k]]);
			}
		}
		now = mx_clock_monotonic_ms();
		for (int i = 0; i < PSRV_CONNS; i++) {
			struct psrv_conn *c = &s->conns[i];
			if (c->fd >= 0 && c->reply_at && c->reply_at <= now) {
				c->reply_at = 0;
				psrv_send(c->fd, c->reply, c->reply_len);
			}
		}
	}
	for (int i = 0; i < PSRV_CONNS; i++)
		if (s->conns[i].fd >= 0)
			psrv_close(s, &s->conns[i]);
	return NULL;
}

/* family AF_INET (127.0.0.1), AF_INET6 ([::1]) or AF_UNIX (a fresh path). listening=false
 * binds without listen(): connecting is refused. NULL on failure. */
static struct psrv *psrv_start(int family, bool listening)
{
	struct psrv *s = calloc(1, sizeof(*s));
	s->family = family;
	for (int i = 0; i < PSRV_CONNS; i++)
		s->conns[i].fd = -1;
	s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (family == AF_UNIX) {
		static atomic_int seq;
		snprintf(s->path, sizeof(s->path), "/tmp/mxgate-policy-%d-%d.sock", (int)getpid(),
			 atomic_fetch_add(&seq, 1));
		unlink(s->path);
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", s->path);
		if (bind(s->lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			return NULL;
		snprintf(s->endpoint, sizeof(s->endpoint), "unix:%s", s->path);
	} else if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET,
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sin);
		if (bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
		    getsockname(s->lfd, (struct sockaddr *)&sin, &len) < 0)
			return NULL;
		s->port = ntohs(sin.sin_port);
		snprintf(s->endpoint, sizeof(s->endpoint), "inet:127.0.0.1:%u", s->port);
	} else {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
		socklen_t len = sizeof(sin6);
		if (bind(s->lfd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0 ||
		    getsockname(s->lfd, (struct sockaddr *)&sin6, &len) < 0)
			return NULL;
		s->port = ntohs(sin6.sin6_port);
		snprintf(s->endpoint, sizeof(s->endpoint), "inet:[::1]:%u", s->port);
	}
	if (listening && listen(s->lfd, 128) < 0)
		return NULL;
	s->ctl = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->running = listening && pthread_create(&s->thread, NULL, psrv_main, s) == 0;
	return s;
}

static void psrv_kick(struct psrv *s)
{
	uint64_t one = 1;
	ssize_t k = write(s->ctl, &one, sizeof(one));
	(void)k;
}

/* Close every connection the server has (as a server restart would). */
static void psrv_drop_all(struct psrv *s)
{
	atomic_store(&s->drop, true);
	psrv_kick(s);
}

static void psrv_stop(struct psrv *s)
{
	if (s->running) {
		atomic_store(&s->stop, true);
		psrv_kick(s);
		pthread_join(s->thread, NULL);
	}
	close(s->lfd);
	close(s->ctl);
	if (s->family == AF_UNIX)
		unlink(s->path);
	free(s);
}

#endif
