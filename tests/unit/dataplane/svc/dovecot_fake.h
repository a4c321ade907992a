/* A fake Dovecot auth server for the SASL service's tests: a thread that listens on a UNIX
 * socket (and a TCP port on 127.0.0.1), sends Dovecot 2.3's handshake at connect, and
 * answers every AUTH by a script named in its initial response (base64 of a keyword):
 *   ok        OK, user=alice                 fail      FAIL, reason=bad password
 *   temp      FAIL code=temp_fail, reason=try later
 *   cont      CONT "challenge"; a CONT "ok" then gets OK user=bob, anything else FAIL
 *   drop      the connection is closed       slow      never answered
 *   late      OK after 600 ms                latecont  CONT after 600 ms
 *   garbage   a reply for an id never sent (a protocol error)
 *   (none)    CONT with an empty challenge (LOGIN's first step)
 * Every line it reads is kept (fake_count() counts lines with a prefix). It can go down
 * (listener closed and unlinked, clients closed) and come up again, as a restarted
 * Dovecot does. Test code only: bounded buffers, aborts on setup failures. */
#ifndef MXGATE_TESTS_DOVECOT_FAKE_H
#define MXGATE_TESTS_DOVECOT_FAKE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mxgate/clock.h"
#include "smtp/smtp_dovecot_auth.h"

#define FAKE_CLIENTS 8
#define FAKE_LATER 32
#define FAKE_LOG_MAX (1 << 20)

struct fake_client {
	int fd;
	char buf[65536];
	size_t len;
};

struct fake_later {
	int fd;          /* -1: free */
	uint64_t at;
	char line[256];
};

struct fake_dovecot {
	pthread_t thread;
	int cmd[2];                 /* commands to the thread: 'q' quit, 'd' down, 'u' up */
	int lunix, ltcp;
	char path[108];
	uint16_t port;
	pthread_mutex_t mu;
	unsigned acks;              /* commands done */
	unsigned accepted;          /* connections accepted */
	char *log;                  /* every line read, LF-terminated */
	size_t log_len;
	const char *handshake;      /* sent at connect */
	struct fake_client cl[FAKE_CLIENTS];
	struct fake_later later[FAKE_LATER];
};

#define FAKE_HANDSHAKE                                                                    \
	"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"                \
	"MECH\tANONYMOUS\tanonymous\nSPID\t4242\nCUID\t1\nCOOKIE\t0123456789abcdef\nDONE\n"

static void fake_send(int fd, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t k = send(fd, s + off, n - off, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		off += (size_t)k;
	}
}

static void fake_listen_unix(struct fake_dovecot *f)
{
	f->lunix = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	unlink(f->path);
	if (f->lunix < 0 || bind(f->lunix, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f->lunix, 16) < 0)
		abort();
}

static void fake_close_client(struct fake_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}

/* Answer one line read from client c (NUL-terminated, without LF). */
static void fake_line(struct fake_dovecot *f, struct fake_client *c, char *line)
{
	pthread_mutex_lock(&f->mu);
	size_t n = strlen(line);
	if (f->log_len + n + 1 < FAKE_LOG_MAX) {
		memcpy(f->log + f->log_len, line, n);
		f->log_len += n;
		f->log[f->log_len++] = '\n';
		f->log[f->log_len] = '\0';
	}
	pthread_mutex_unlock(&f->mu);

	char *fields[64];
	int nf = 0;
	for (char *s = line; nf < 64;) {
		fields[nf++] = s;
		char *t = strchr(s, '\t');
		if (!t)
			break;
		*t = '\0';
		s = t + 1;
	}
	if (nf < 2)
		return;
	const char *id = fields[1];
	char word[64] = "";
	bool has_resp = false;
	int data_field = -1;
	if (strcmp(fields[0], "AUTH") == 0) {
		for (int i = 3; i < nf; i++)
			if (strncmp(fields[i], "resp=", 5) == 0) {
				has_resp = true;
				data_field = i;
			}
	} else if (strcmp(fields[0], "CONT") == 0 && nf >= 3) {
		data_field = 2;
	} else {
		return; /* VERSION, CPID, CANCEL: logged only */
	}
	if (data_field >= 0) {
		const char *b = fields[data_field] + (has_resp ? 5 : 0);
		ssize_t k = smtp_dovecot_b64_decode(mx_span_make(b, strlen(b)), word,
						    sizeof(word) - 1);
		word[k > 0 ? k : 0] = '\0';
	}
	char out[512];
	if (strcmp(fields[0], "CONT") == 0) {
		if (strcmp(word, "ok") == 0)
			snprintf(out, sizeof(out), "OK\t%s\tuser=bob\n", id);
		else
			snprintf(out, sizeof(out), "FAIL\t%s\treason=wrong answer\n", id);
		fake_send(c->fd, out);
		return;
	}
	if (!has_resp) {
		snprintf(out, sizeof(out), "CONT\t%s\t\n", id);
	} else if (strcmp(word, "ok") == 0) {
		snprintf(out, sizeof(out), "OK\t%s\tuser=alice\n", id);
	} else if (strcmp(word, "fail") == 0) {
		snprintf(out, sizeof(out), "FAIL\t%s\treason=bad password\tuser=alice\n", id);
	} else if (strcmp(word, "temp") == 0) {
		snprintf(out, sizeof(out), "FAIL\t%s\tcode=temp_fail\treason=try later\n", id);
	} else if (strcmp(word, "cont") == 0) {
		snprintf(out, sizeof(out), "CONT\t%s\tY2hhbGxlbmdl\n", id); /* "challenge" */
	} else if (strcmp(word, "drop") == 0) {
		fake_close_client(c);
		return;
	} else if (strcmp(word, "late") == 0 || strcmp(word, "latecont") == 0) {
		for (int i = 0; i < FAKE_LATER; i++) {
			if (f->later[i].fd >= 0)
				continue;
			f->later[i].fd = c->fd;
			f->later[i].at = mx_clock_monotonic_ms() + 600;
			snprintf(f->later[i].line, sizeof(f->later[i].line),
				 word[4] ? "CONT\t%s\tY2hhbGxlbmdl\n" : "OK\t%s\tuser=carol\n", id);
			break;
		}
		return;
	} else if (strcmp(word, "garbage") == 0) {
		snprintf(out, sizeof(out), "OK\t4294967295\tuser=x\n");
	} else {
		return; /* slow, or unknown: never answered */
	}
	fake_send(c->fd, out);
}

static void fake_read(struct fake_dovecot *f, struct fake_client *c)
{
	ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len - 1, 0);
	if (k <= 0) {
		fake_close_client(c);
		return;
	}
	c->len += (size_t)k;
	char *nl;
	while (c->fd >= 0 && (nl = memchr(c->buf, '\n', c->len))) {
		*nl = '\0';
		size_t used = (size_t)(nl - c->buf) + 1;
		fake_line(f, c, c->buf);
		if (c->fd < 0)
			return;
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
	}
	if (c->len >= sizeof(c->buf) - 1)
		fake_close_client(c);
}

static void fake_accept(struct fake_dovecot *f, int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	for (int i = 0; i < FAKE_CLIENTS; i++) {
		if (f->cl[i].fd < 0) {
			f->cl[i].fd = fd;
			f->cl[i].len = 0;
			pthread_mutex_lock(&f->mu);
			f->accepted++;
			pthread_mutex_unlock(&f->mu);
			fake_send(fd, f->handshake);
			return;
		}
	}
	close(fd);
}

static void *fake_main(void *arg)
{
	struct fake_dovecot *f = arg;
	for (;;) {
		struct pollfd pf[3 + FAKE_CLIENTS];
		int map[3 + FAKE_CLIENTS];
		int n = 0;
		pf[n] = (struct pollfd){ .fd = f->cmd[0], .events = POLLIN };
		map[n++] = -1;
		if (f->lunix >= 0) {
			pf[n] = (struct pollfd){ .fd = f->lunix, .events = POLLIN };
			map[n++] = -2;
		}
		pf[n] = (struct pollfd){ .fd = f->ltcp, .events = POLLIN };
		map[n++] = -3;
		for (int i = 0; i < FAKE_CLIENTS; i++)
			if (f->cl[i].fd >= 0) {
				pf[n] = (struct pollfd){ .fd = f->cl[i].fd, .events = POLLIN };
				map[n++] = i;
			}
		int timeout = 20;
		poll(pf, (nfds_t)n, timeout);
		uint64_t now = mx_clock_monotonic_ms();
		for (int i = 0; i < FAKE_LATER; i++) {
			if (f->later[i].fd < 0 || f->later[i].at > now)
				continue;
			for (int k = 0; k < FAKE_CLIENTS; k++)
				if (f->cl[k].fd == f->later[i].fd)
					fake_send(f->later[i].fd, f->later[i].line);
			f->later[i].fd = -1;
		}
		for (int i = 0; i < n; i++) {
			if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (map[i] == -1) {
				char cmd;
				if (read(f->cmd[0], &cmd, 1) != 1 || cmd == 'q')
					return NULL;
				if (cmd == 'd') {
					close(f->lunix);
					f->lunix = -1;
					unlink(f->path);
					for (int k = 0; k < FAKE_CLIENTS; k++)
						fake_close_client(&f->cl[k]);
					for (int k = 0; k < FAKE_LATER; k++)
						f->later[k].fd = -1;
				} else if (cmd == 'u') {
					fake_listen_unix(f);
				}
				pthread_mutex_lock(&f->mu);
				f->acks++;
				pthread_mutex_unlock(&f->mu);
				break; /* the poll set changed */
			} else if (map[i] == -2) {
				fake_accept(f, f->lunix);
			} else if (map[i] == -3) {
				fake_accept(f, f->ltcp);
			} else if (f->cl[map[i]].fd >= 0) {
				fake_read(f, &f->cl[map[i]]);
			}
		}
	}
}

static struct fake_dovecot *fake_start(const char *dir, const char *handshake)
{
	struct fake_dovecot *f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	f->log = calloc(1, FAKE_LOG_MAX);
	f->handshake = handshake ? handshake : FAKE_HANDSHAKE;
	pthread_mutex_init(&f->mu, NULL);
	for (int i = 0; i < FAKE_CLIENTS; i++)
		f->cl[i].fd = -1;
	for (int i = 0; i < FAKE_LATER; i++)
		f->later[i].fd = -1;
	static unsigned seq;
	snprintf(f->path, sizeof(f->path), "%s/auth-%u", dir, seq++);
	fake_listen_unix(f);
	f->ltcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(f->ltcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	if (f->ltcp < 0 || bind(f->ltcp, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(f->ltcp, 16) < 0 || getsockname(f->ltcp, (struct sockaddr *)&sin, &len) < 0)
		abort();
	f->port = ntohs(sin.sin_port);
	if (pipe(f->cmd) < 0 || pthread_create(&f->thread, NULL, fake_main, f) != 0)
		abort();
	return f;
}

/* Run a command on the fake's thread and wait until it is done. */
static void fake_command(struct fake_dovecot *f, char cmd)
{
	pthread_mutex_lock(&f->mu);
	unsigned want = f->acks + 1;
	pthread_mutex_unlock(&f->mu);
	if (write(f->cmd[1], &cmd, 1) != 1)
		abort();
	for (;;) {
		pthread_mutex_lock(&f->mu);
		bool done = f->acks >= want;
		pthread_mutex_unlock(&f->mu);
		if (done)
			return;
		usleep(1000);
	}
}

static void fake_down(struct fake_dovecot *f)
{
	fake_command(f, 'd');
}

static void fake_up(struct fake_dovecot *f)
{
	fake_command(f, 'u');
}

/* Lines read so far that start with prefix. */
static unsigned fake_count(struct fake_dovecot *f, const char *prefix)
{
	unsigned n = 0;
	size_t pl = strlen(prefix);
	pthread_mutex_lock(&f->mu);
	for (const char *s = f->log; *s;) {
		if (strncmp(s, prefix, pl) == 0)
			n++;
		const char *nl = strchr(s, '\n');
		if (!nl)
			break;
		s = nl + 1;
	}
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* The last line read that starts with prefix, copied into out ("" when none). */
static void fake_last(struct fake_dovecot *f, const char *prefix, char *out, size_t cap)
{
	size_t pl = strlen(prefix);
	out[0] = '\0';
	pthread_mutex_lock(&f->mu);
	for (const char *s = f->log; *s;) {
		const char *nl = strchr(s, '\n');
		size_t n = nl ? (size_t)(nl - s) : strlen(s);
		if (strncmp(s, prefix, pl) == 0)
			snprintf(out, cap, "%.*s", (int)n, s);
		if (!nl)
			break;
		s = nl + 1;
	}
	pthread_mutex_unlock(&f->mu);
}

static unsigned fake_accepted(struct fake_dovecot *f)
{
	pthread_mutex_lock(&f->mu);
	unsigned n = f->accepted;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static void fake_stop(struct fake_dovecot *f)
{
	if (write(f->cmd[1], "q", 1) != 1)
		abort();
	pthread_join(f->thread, NULL);
	for (int i = 0; i < FAKE_CLIENTS; i++)
		fake_close_client(&f->cl[i]);
	if (f->lunix >= 0)
		close(f->lunix);
	unlink(f->path);
	close(f->ltcp);
	close(f->cmd[0]);
	close(f->cmd[1]);
	pthread_mutex_destroy(&f->mu);
	free(f->log);
	free(f);
}

#endif
