/* The control socket (control.h): a UNIX-domain stream socket served by one thread, one
 * request per connection.
 *
 * Why one thread and one connection at a time: operator tools are rare and short, and a
 * command (a queue change) must not race another; every read and write has a deadline, so
 * the worst a stuck or hostile local client can do is delay the next one by the timeout.
 * The thread never touches the data path: commands call into their owners (the relay),
 * which take their own locks. */
#include "mgmt/control.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mgmt/log.h"
#include "mxgate/clock.h"

/* How long the client waits for the next piece of a reply: a command may legitimately
 * run for a while (changing every message of a large queue waits for its records to be
 * durable), so this is much longer than the server's own per-step timeout. */
#define CONTROL_CLIENT_REPLY_TIMEOUT_MS 300000
#define CONTROL_OUT_BUF 16384
#define CONTROL_BACKLOG 16
#define CONTROL_MAX_COMMANDS 64

struct control_cmd {
	char *name;
	char *usage;
	control_cmd_fn *fn;
	void *ctx;
};

struct control_server {
	char *path;
	int lfd;
	int stop_pipe[2];
	pthread_t thread;
	bool started;
	dev_t sock_dev; /* the socket file we bound: removed at free only if still ours */
	ino_t sock_ino;
	unsigned timeout_ms;
	struct control_cmd cmds[CONTROL_MAX_COMMANDS];
	size_t ncmds;
	char *req;   /* CONTROL_REQUEST_MAX bytes */
	char **argv; /* CONTROL_MAX_ARGS + 1 */
};

struct control_out {
	struct control_server *s;
	int fd;
	bool gone;   /* the client went away or stalled: later writes are dropped */
	char last;   /* the last byte handed to control_write(), to end the output with LF */
	size_t len;
	char buf[CONTROL_OUT_BUF];
};

/* Wait until fd is ready for `events`, the stop pipe is readable, or the deadline passes.
 * Returns 1 ready, 0 timeout, -ECANCELED stop requested, or a negative errno. */
static int control_wait(struct control_server *s, int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - (int64_t)mx_clock_monotonic_ms();
		if (left <= 0)
			return 0;
		struct pollfd p[2] = {
			{ .fd = fd, .events = events },
			{ .fd = s->stop_pipe[0], .events = POLLIN },
		};
		int n = poll(p, 2, left > INT32_MAX ? INT32_MAX : (int)left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents)
			return -ECANCELED;
		if (n > 0)
			return 1;
	}
}

/* ---- output ---- */

static void control_flush(struct control_out *out)
{
	size_t off = 0;
	while (!out->gone && off < out->len) {
		ssize_t n = send(out->fd, out->buf + off, out->len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* Each write has its own deadline: a client that reads slowly but
			 * steadily gets its output; one that stopped reading is dropped. */
			int w = control_wait(out->s, out->fd, POLLOUT,
					     (int64_t)mx_clock_monotonic_ms() + out->s->timeout_ms);
			if (w > 0)
				continue;
			if (w == 0)
				mx_log(MX_LOG_WARNING, "control: timeout writing to the client");
		}
		out->gone = true;
	}
	out->len = 0;
}

void control_write(struct control_out *out, const void *p, size_t n)
{
	const char *c = p;
	if (n == 0)
		return;
	out->last = c[n - 1];
	while (n > 0 && !out->gone) {
		size_t room = sizeof(out->buf) - out->len;
		size_t k = n < room ? n : room;
		memcpy(out->buf + out->len, c, k);
		out->len += k;
		c += k;
		n -= k;
		if (out->len == sizeof(out->buf))
			control_flush(out);
	}
}

void control_printf(struct control_out *out, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		control_write(out, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		/* Better a visible gap than a silent one: the operator sees the line was
		 * cut. */
		control_write(out, small, sizeof(small) - 1);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	control_write(out, big, (size_t)n);
	free(big);
}

/* ---- the request ---- */

int control_request_parse(char *line, size_t len, char **argv, int max_args,
			  const char **why)
{
	assert(max_args >= 1);
	if (len == 0) {
		*why = "empty request";
		return -EINVAL;
	}
	int argc = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ') {
			unsigned char ch = (unsigned char)line[i];
			if (ch <= 0x20 || ch == 0x7f) {
				*why = "control character in request";
				return -EINVAL;
			}
			continue;
		}
		/* a word ends at a space or at the end of the line */
		if (i == start) {
			*why = "empty word in request";
			return -EINVAL;
		}
		if (argc == max_args) {
			*why = "too many words in request";
			return -E2BIG;
		}
		argv[argc++] = line + start;
		if (i < len)
			line[i] = '\0';
		start = i + 1;
	}
	/* the caller's buffer ends the last word: it has room for a NUL at line[len] */
	line[len] = '\0';
	argv[argc] = NULL;
	return argc;
}

static void control_builtin_help(struct control_server *s, struct control_out *out)
{
	for (size_t i = 0; i < s->ncmds; i++)
		control_printf(out, "%s%s%s\n", s->cmds[i].name, s->cmds[i].usage[0] ? " " : "",
			       s->cmds[i].usage);
}

/* Read one LF-terminated request into s->req under one deadline for the whole request,
 * so a client trickling bytes cannot stretch it. Returns its length without the LF,
 * -E2BIG when no LF came within CONTROL_REQUEST_MAX bytes, or another negative errno
 * (-ETIMEDOUT, -ECONNRESET for EOF before the LF, -ECANCELED). */
static long control_read_request(struct control_server *s, int fd)
{
	int64_t deadline = (int64_t)mx_clock_monotonic_ms() + s->timeout_ms;
	size_t len = 0;
	for (;;) {
		int w = control_wait(s, fd, POLLIN, deadline);
		if (w == 0)
			return -ETIMEDOUT;
		if (w < 0)
			return w;
		/* CONTROL_REQUEST_MAX counts the LF; one byte stays free for the NUL the
		 * parser writes after the last word. */
		ssize_t n = recv(fd, s->req + len, CONTROL_REQUEST_MAX - len, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		char *lf = memchr(s->req + len, '\n', (size_t)n);
		if (lf)
			return lf - s->req;
		len += (size_t)n;
		if (len == CONTROL_REQUEST_MAX)
			return -E2BIG;
	}
}

static void control_serve(struct control_server *s, int fd)
{
	struct control_out *out = calloc(1, sizeof(*out));
	if (!out)
		return;
	out->s = s;
	out->fd = fd;
	out->last = '\n';

	int status = 2;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
		mx_log(MX_LOG_WARNING, "control: SO_PEERCRED: %s", strerror(errno));
		free(out);
		return;
	}
	/* The socket's mode already keeps others out; this holds even when someone
	 * loosened it or the directory. */
	if (cred.uid != 0 && cred.uid != geteuid()) {
		mx_log(MX_LOG_WARNING, "control: request from uid %u pid %d refused",
		       (unsigned)cred.uid, (int)cred.pid);
		control_printf(out, "permission denied\n");
		goto reply;
	}

	long len = control_read_request(s, fd);
	if (len == -E2BIG) {
		mx_log(MX_LOG_WARNING, "control: request from pid %d longer than %u bytes",
		       (int)cred.pid, (unsigned)CONTROL_REQUEST_MAX);
		control_printf(out, "request too long (at most %u bytes)\n",
			       (unsigned)CONTROL_REQUEST_MAX);
		goto reply;
	}
	if (len < 0) {
		if (len == -ETIMEDOUT)
			mx_log(MX_LOG_WARNING, "control: timeout reading the request of pid %d",
			       (int)cred.pid);
		free(out);
		return;
	}
	const char *why = NULL;
	int argc = control_request_parse(s->req, (size_t)len, s->argv, CONTROL_MAX_ARGS, &why);
	if (argc < 0) {
		mx_log(MX_LOG_WARNING, "control: bad request from pid %d: %s", (int)cred.pid, why);
		control_printf(out, "bad request: %s\n", why);
		goto reply;
	}
	if (strcmp(s->argv[0], "help") == 0) {
		control_builtin_help(s, out);
		status = 0;
		goto reply;
	}
	const struct control_cmd *cmd = NULL;
	for (size_t i = 0; i < s->ncmds && !cmd; i++)
		if (strcmp(s->cmds[i].name, s->argv[0]) == 0)
			cmd = &s->cmds[i];
	if (!cmd) {
		control_printf(out, "unknown command: %.100s (\"help\" lists them)\n",
			       s->argv[0]);
		goto reply;
	}
	status = cmd->fn(cmd->ctx, argc, s->argv, out);
	assert(status >= 0 && status <= 2);

reply:
	if (out->last != '\n')
		control_write(out, "\n", 1);
	control_printf(out, "status %d\n", status);
	control_flush(out);
	free(out);
}

static void *control_thread(void *arg)
{
	struct control_server *s = arg;
	mx_log_set_process(MX_LOG_MGMT); /* queue commands, reloads: the management plane */
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = s->lfd, .events = POLLIN },
			{ .fd = s->stop_pipe[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			mx_log(MX_LOG_ERROR, "control: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ECONNABORTED)
				continue;
			/* EMFILE and friends: back off instead of spinning on a ready socket */
			mx_log(MX_LOG_WARNING, "control: accept: %s", strerror(errno));
			struct pollfd st = { .fd = s->stop_pipe[0], .events = POLLIN };
			if (poll(&st, 1, 100) > 0)
				break;
			continue;
		}
		control_serve(s, fd);
		close(fd);
	}
	return NULL;
}

/* ---- the server's life ---- */

/* Is something listening on path? 1 yes, 0 no (refused: a stale socket file), or a
 * negative errno. */
static int control_probe(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(fd);
	/* EAGAIN: a listener whose backlog is full is still a listener */
	if (rc == 0 || e == EAGAIN || e == EINPROGRESS)
		return 1;
	if (e == ECONNREFUSED)
		return 0;
	return -e;
}

static int control_fill_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	size_t n = strlen(path);
	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

static void control_errno(char *err, size_t errlen, const char *path, int rc)
{
	const char *why = strerror(-rc);
	snprintf(err, errlen, "control socket %s: %s", path, why ? why : "?");
}

int control_server_create(struct control_server **out, const char *path, char *err,
			  size_t errlen)
{
	*out = NULL;
	struct sockaddr_un sa;
	int rc = control_fill_addr(&sa, path);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: %s", path,
			 rc == -ENAMETOOLONG ? "path too long for a UNIX-domain socket"
					     : "empty path");
		return rc;
	}
	struct control_server *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path)) || !(s->req = malloc(CONTROL_REQUEST_MAX + 1)) ||
	    !(s->argv = calloc(CONTROL_MAX_ARGS + 1, sizeof(*s->argv)))) {
		if (s) {
			free(s->path);
			free(s->req);
			free(s->argv);
		}
		free(s);
		snprintf(err, errlen, "control socket %s: out of memory", path);
		return -ENOMEM;
	}
	s->lfd = -1;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	s->timeout_ms = CONTROL_IO_TIMEOUT_MS;

	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "control socket %s: exists and is not a socket",
				 path);
			rc = -EEXIST;
			goto fail;
		}
		rc = control_probe(&sa);
		if (rc > 0) {
			snprintf(err, errlen, "control socket %s: another process answers on it",
				 path);
			rc = -EADDRINUSE;
			goto fail;
		}
		if (rc < 0) {
			snprintf(err, errlen, "control socket %s: %s", path, strerror(-rc));
			goto fail;
		}
		/* Nobody answers: left behind by a gateway that did not stop cleanly. */
		if (unlink(path) != 0 && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "control socket %s: remove stale socket: %s", path,
				 strerror(errno));
			goto fail;
		}
	} else if (errno != ENOENT) {
		rc = -errno;
		control_errno(err, errlen, sa.sun_path, rc);
		goto fail;
	}

	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = -errno;
		control_errno(err, errlen, sa.sun_path, rc);
		goto fail;
	}
	/* Tighten the mode before listen(): until then a connect is refused anyway, so
	 * nobody gets in through the umask's mode. */
	if (chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
		rc = -errno;
		control_errno(err, errlen, sa.sun_path, rc);
		unlink(path);
		goto fail;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	if (listen(s->lfd, CONTROL_BACKLOG) != 0 || pipe2(s->stop_pipe, O_CLOEXEC) != 0) {
		rc = -errno;
		control_errno(err, errlen, sa.sun_path, rc);
		unlink(path);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	free(s->path);
	free(s->req);
	free(s->argv);
	free(s);
	return rc;
}

int control_register(struct control_server *s, const char *name, const char *usage,
		     control_cmd_fn *fn, void *ctx)
{
	assert(!s->started);
	const char *why = NULL;
	char tmp[128];
	size_t n = strlen(name);
	/* a name must be one word of the protocol */
	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	memcpy(tmp, name, n + 1);
	char *av[2];
	if (control_request_parse(tmp, n, av, 1, &why) != 1 || strcmp(name, "help") == 0)
		return -EINVAL;
	for (size_t i = 0; i < s->ncmds; i++)
		if (strcmp(s->cmds[i].name, name) == 0)
			return -EEXIST;
	if (s->ncmds == CONTROL_MAX_COMMANDS)
		return -ENOSPC;
	struct control_cmd *c = &s->cmds[s->ncmds];
	c->name = strdup(name);
	c->usage = strdup(usage ? usage : "");
	if (!c->name || !c->usage) {
		free(c->name);
		free(c->usage);
		return -ENOMEM;
	}
	c->fn = fn;
	c->ctx = ctx;
	s->ncmds++;
	return 0;
}

void control_server_set_timeout(struct control_server *s, unsigned ms)
{
	assert(!s->started && ms > 0);
	s->timeout_ms = ms;
}

int control_server_start(struct control_server *s)
{
	assert(!s->started);
	/* The thread takes no signal: the main thread waits for them with sigwaitinfo(). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&s->thread, NULL, control_thread, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return -rc;
	s->started = true;
	return 0;
}

void control_server_free(struct control_server *s)
{
	if (!s)
		return;
	if (s->started) {
		char c = 0;
		while (write(s->stop_pipe[1], &c, 1) < 0 && errno == EINTR)
			;
		pthread_join(s->thread, NULL);
	}
	/* Remove the socket file only if it is still the one we bound: a second gateway
	 * refused at start-up must not take the running one's socket away. */
	struct stat st;
	if (lstat(s->path, &st) == 0 && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
		unlink(s->path);
	close(s->lfd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	for (size_t i = 0; i < s->ncmds; i++) {
		free(s->cmds[i].name);
		free(s->cmds[i].usage);
	}
	free(s->path);
	free(s->req);
	free(s->argv);
	free(s);
}

/* ---- the client ---- */

static void control_set_timeout(int fd, int opt, unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv));
}

/* Line-buffered copy of the reply that holds back the latest complete line: only at the
 * end is it known to be the "status N" line. */
struct control_reply {
	FILE *out;
	char *held; /* the latest complete line, LF included */
	size_t held_len, held_cap;
	char *part; /* an incomplete line */
	size_t part_len, part_cap;
};

static int control_append(char **p, size_t *len, size_t *cap, const char *src, size_t n)
{
	if (*len + n > *cap) {
		size_t c = *cap ? *cap : 256;
		while (c < *len + n)
			c *= 2;
		char *q = realloc(*p, c);
		if (!q)
			return -ENOMEM;
		*p = q;
		*cap = c;
	}
	memcpy(*p + *len, src, n);
	*len += n;
	return 0;
}

static int control_reply_feed(struct control_reply *r, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf ? (size_t)(lf - p) + 1 : n;
		if (control_append(&r->part, &r->part_len, &r->part_cap, p, k) < 0)
			return -ENOMEM;
		p += k;
		n -= k;
		if (!lf)
			break;
		/* a newer complete line: the held one was not the last */
		if (r->held_len)
			fwrite(r->held, 1, r->held_len, r->out);
		r->held_len = 0;
		if (control_append(&r->held, &r->held_len, &r->held_cap, r->part, r->part_len) < 0)
			return -ENOMEM;
		r->part_len = 0;
	}
	return 0;
}

/* At EOF: the command's status from the held line, or -EPROTO (everything is then
 * copied out). */
static int control_reply_end(struct control_reply *r)
{
	if (r->part_len == 0 && r->held_len == strlen("status N\n") &&
	    memcmp(r->held, "status ", 7) == 0 && r->held[7] >= '0' && r->held[7] <= '2' &&
	    r->held[8] == '\n')
		return r->held[7] - '0';
	fwrite(r->held, 1, r->held_len, r->out);
	fwrite(r->part, 1, r->part_len, r->out);
	return -EPROTO;
}

int control_request(const char *path, int argc, char **argv, FILE *out, char *err,
		    size_t errlen)
{
	if (argc < 1) {
		snprintf(err, errlen, "empty request");
		return -EINVAL;
	}
	size_t total = 0;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (n == 0) {
			snprintf(err, errlen, "empty argument");
			return -EINVAL;
		}
		for (size_t j = 0; j < n; j++) {
			unsigned char ch = (unsigned char)argv[i][j];
			if (ch <= 0x20 || ch == 0x7f) {
				snprintf(err, errlen, "argument with a blank or control character");
				return -EINVAL;
			}
		}
		total += n + 1;
	}
	struct sockaddr_un sa;
	int rc = control_fill_addr(&sa, path);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	char *req = malloc(total);
	if (!req) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	size_t off = 0;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		memcpy(req + off, argv[i], n);
		off += n;
		req[off++] = i + 1 < argc ? ' ' : '\n';
	}

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		free(req);
		return rc;
	}
	/* SO_SNDTIMEO bounds connect() too: a server whose backlog is full makes it wait. */
	control_set_timeout(fd, SO_SNDTIMEO, CONTROL_IO_TIMEOUT_MS);
	control_set_timeout(fd, SO_RCVTIMEO, CONTROL_CLIENT_REPLY_TIMEOUT_MS);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = errno == EAGAIN ? -ETIMEDOUT : -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		close(fd);
		free(req);
		return rc;
	}
	for (off = 0; off < total;) {
		ssize_t n = send(fd, req + off, total - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			snprintf(err, errlen, "%s: timeout sending the request", path);
			close(fd);
			free(req);
			return -ETIMEDOUT;
		} else {
			/* The server refused early (request too long) and closed: its reply
			 * is still there to read. */
			break;
		}
	}
	free(req);

	struct control_reply r = { .out = out };
	char buf[16384];
	rc = 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (control_reply_feed(&r, buf, (size_t)n) < 0) {
				snprintf(err, errlen, "out of memory");
				rc = -ENOMEM;
				break;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			snprintf(err, errlen, "%s: no reply within %d s", path,
				 CONTROL_CLIENT_REPLY_TIMEOUT_MS / 1000);
			fwrite(r.held, 1, r.held_len, out);
			fwrite(r.part, 1, r.part_len, out);
			rc = -ETIMEDOUT;
			break;
		}
		/* EOF, or a reset after the server's reply (it closed with our unread
		 * request bytes pending): what arrived decides */
		rc = control_reply_end(&r);
		if (rc == -EPROTO)
			snprintf(err, errlen, "%s: the gateway closed the connection without a "
				 "status (stopped?)", path);
		break;
	}
	close(fd);
	free(r.held);
	free(r.part);
	return rc;
}
