/* Postfix-style log lines:
 *     Nov 22 10:14:55 mx1 mxgate/smtpd[1234]: warning: text
 * in local time, as syslog and Postfix's maillog_file write them, so pflogsumm and a
 * postmaster's grep habits work unchanged. A line longer than MX_LOG_LINE_MAX is cut,
 * never overflowed. Control characters in the text are shown as '?', as Postfix's
 * printable() does, so a client-supplied string cannot forge a second log line.
 *
 * maillog_file: each line is formatted into a bounded buffer and written with one write(2)
 * on a descriptor opened with O_APPEND, so lines from concurrent threads (and processes
 * sharing the file) never interleave. The gateway's log (mx_log_open_conf()) is written by
 * the writer thread below from the same bounded queue as syslog's, never by the thread
 * that logs: a write(2) to a file can wait for the disk, and one to /dev/stdout or
 * /dev/stderr (Postfix's container idiom) for whoever reads the pipe; a worker must not.
 * The tools' logs (mx_log_open()) are written at once.
 *
 * syslog (no maillog_file, as Postfix): one datagram per line on an AF_UNIX socket of our
 * own connected to /dev/log (mxgate_syslog_socket), in the form glibc's syslog(3) sends,
 * "<PRI>Mmm dd hh:mm:ss NAME/process[pid]: text" (RFC 3164 section 4.1; the daemon adds the
 * host name). Not syslog(3) itself: it blocks when the daemon falls behind and the socket
 * is full (the kernel queues only net.unix.max_dgram_qlen datagrams, 10 by default), and a
 * worker thread must never wait. Here a logging thread appends its line to a bounded queue
 * in memory (a memcpy under the mutex) and a writer thread of ours sends the queue with
 * sendmmsg(2), waiting at most a second on a stalled daemon. A line the full queue cannot
 * take is dropped and counted (mx_log_dropped()), and the next line that gets through is
 * preceded by a warning that says how many.
 *
 * A poll-loop thread may batch (mx_log_batch_begin): its informational lines collect in a
 * per-thread buffer that mx_log_batch_flush() hands over (one write(2), or one append to
 * the syslog queue) at the end of each iteration, instead of one call per connect, queued
 * and disconnect line. Lines stay whole and in order; a warning or worse flushes the batch
 * and is written at once. */
#include "mgmt/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "mxgate/clock.h"

/* One line, newline included. Postfix's syslog lines are cut near 2 kB too. */
#define MX_LOG_LINE_MAX 2048
#define MX_LOG_TAG_MAX 128

/* Lines per sendmmsg(2) when the writer sends to syslog; bytes queued for it at most
 * (a few thousand lines: seconds of a busy gateway's log while the daemon is slow). */
#define MX_LOG_MMSG_MAX 64
#define MX_LOG_QUEUE_MAX (512 * 1024)

static pthread_mutex_t mx_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int mx_log_fd = STDERR_FILENO;
static bool mx_log_own_fd; /* opened by mx_log_open(), closed by mx_log_close() */
static char mx_log_host[MX_LOG_TAG_MAX] = "localhost";
static char mx_log_name[MX_LOG_TAG_MAX] = "mxgate"; /* syslog_name */
static char mx_log_service[MX_LOG_TAG_MAX] = "smtpd"; /* the default process */
static bool mx_log_tag_bare = true; /* no process: "mxgate[pid]" (before any open) */

/* syslog: the socket (mx_log_fd) is a datagram socket connected to mx_log_sun; lines
 * wait in mx_log_queue (under mx_log_lock) for the writer thread. */
static bool mx_log_syslog;
/* maillog_file through the writer thread (the gateway's log) */
static bool mx_log_threaded_file;
/* that file is a pipe, socket or terminal: its reader may stall (mx_log_write_stream) */
static bool mx_log_stream;
static int mx_log_facility = LOG_MAIL;
static struct sockaddr_un mx_log_sun;
static _Atomic uint64_t mx_log_drops; /* lines the queue or the socket did not take */
static uint64_t mx_log_drops_at_open; /* the writer reports drops from here on */
static pthread_cond_t mx_log_cond = PTHREAD_COND_INITIALIZER;
static pthread_t mx_log_writer;
static bool mx_log_writer_on, mx_log_writer_stop;
static char *mx_log_queue, *mx_log_spare; /* MX_LOG_QUEUE_MAX each */
static size_t mx_log_queued;
static bool mx_log_sending;                 /* the writer holds lines taken from the queue */
static pthread_cond_t mx_log_idle = PTHREAD_COND_INITIALIZER; /* queue empty, none held */

/* The calling thread's process (-1: mx_log_service). */
static __thread int mx_log_thread_proc = -1;

/* The calling thread's batch (NULL: write each line at once). */
#define MX_LOG_BATCH_MAX (16 * MX_LOG_LINE_MAX)
struct mx_log_batch {
	size_t len;
	char buf[MX_LOG_BATCH_MAX];
};
static __thread struct mx_log_batch *mx_log_batch;
/* This thread's last line heads ("Dec  7 21:30:05 host mxgate/smtpd[123]: " and the
 * like), by process and level, for the second and the opening they were made in: a
 * worker writes three to five lines a message, and formatting the head with snprintf()
 * cost as much as the rest of the line. */
#define MX_LOG_HEADS 4
struct mx_log_head {
	const char *proc;
	enum mx_log_level level;
	time_t secs;
	unsigned opening;
	long pid;
	bool syslog;
	size_t len; /* 0: empty */
	char text[512];
};
static __thread struct mx_log_head mx_log_heads[MX_LOG_HEADS];
static __thread unsigned mx_log_head_next;
/* This thread's last time stamp ("Dec  7 21:30:05") and the second it is for. */
static __thread time_t mx_log_stamp_secs = -1;
static __thread unsigned mx_log_stamp_opening;
static __thread char mx_log_stamp[24];
/* Counts the opens: a time stamp made before the last one (which read TZ again) is made
 * anew. */
static _Atomic unsigned mx_log_openings;
/* The process's ID, taken at the first line and forgotten in a forked child. */
static _Atomic long mx_log_pid;
static pthread_once_t mx_log_pid_once = PTHREAD_ONCE_INIT;

static void mx_log_pid_forget(void)
{
	atomic_store_explicit(&mx_log_pid, 0, memory_order_relaxed);
}

static void mx_log_pid_watch_forks(void)
{
	pthread_atfork(NULL, NULL, mx_log_pid_forget);
}

static const char *const mx_log_prefix[MX_LOG_LEVEL_MAX] = {
	[MX_LOG_INFO] = "",
	[MX_LOG_WARNING] = "warning: ",
	[MX_LOG_ERROR] = "error: ",
	[MX_LOG_FATAL] = "fatal: ",
};

/* Copy `s` into dst as a log tag: no blanks or control characters, bounded. */
static void mx_log_set_tag(char *dst, size_t cap, const char *s, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && s[i] && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];
		dst[j++] = (ch <= ' ' || ch == 0x7f) ? '_' : (char)ch;
	}
	dst[j] = '\0';
}

const char *mx_log_proc_name(enum mx_log_proc p)
{
	static const char *const names[MX_LOG_PROC_MAX] = {
		[MX_LOG_SMTPD] = "smtpd",     [MX_LOG_POSTSCREEN] = "postscreen",
		[MX_LOG_CLEANUP] = "cleanup", [MX_LOG_QMGR] = "qmgr",
		[MX_LOG_SMTP] = "smtp",       [MX_LOG_LMTP] = "lmtp",
		[MX_LOG_BOUNCE] = "bounce",   [MX_LOG_MASTER] = "master",
		[MX_LOG_MGMT] = "mgmt",
	};
	return (unsigned)p < MX_LOG_PROC_MAX ? names[p] : "?";
}

int mx_log_facility_code(const char *name)
{
	static const struct {
		const char *name;
		int code;
	} facilities[] = {
		{ "auth", LOG_AUTH },     { "authpriv", LOG_AUTHPRIV }, { "cron", LOG_CRON },
		{ "daemon", LOG_DAEMON }, { "ftp", LOG_FTP },           { "kern", LOG_KERN },
		{ "lpr", LOG_LPR },       { "mail", LOG_MAIL },         { "news", LOG_NEWS },
		{ "syslog", LOG_SYSLOG }, { "user", LOG_USER },         { "uucp", LOG_UUCP },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },     { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },     { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; name && i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(name, facilities[i].name) == 0)
			return facilities[i].code;
	return -EINVAL;
}

void mx_log_set_process(enum mx_log_proc p)
{
	mx_log_thread_proc = (unsigned)p < MX_LOG_PROC_MAX ? (int)p : -1;
}

uint64_t mx_log_dropped(void)
{
	return atomic_load(&mx_log_drops);
}

/* (Re)connect the syslog socket (by the opener before the writer starts, then by the
 * writer only). Returns 0 or a negative errno. */
static int mx_log_connect(void)
{
	if (connect(mx_log_fd, (const struct sockaddr *)&mx_log_sun, sizeof(mx_log_sun)) == 0)
		return 0;
	return -errno;
}

static void *mx_log_writer_main(void *arg);

/* Stop the writer after it sent what is queued (bounded: a send waits 1 s at most). Lines
 * logged from then until the target changes are dropped and counted (mx_log_write). */
static void mx_log_writer_join(void)
{
	pthread_mutex_lock(&mx_log_lock);
	bool on = mx_log_writer_on;
	mx_log_writer_stop = true;
	pthread_cond_signal(&mx_log_cond);
	pthread_mutex_unlock(&mx_log_lock);
	if (on)
		pthread_join(mx_log_writer, NULL);
	pthread_mutex_lock(&mx_log_lock);
	mx_log_writer_stop = false;
	pthread_mutex_unlock(&mx_log_lock);
}

/* The writer thread, with every signal blocked: the log may be opened before the process
 * blocks the signals its main thread takes with sigtimedwait(), and a SIGTERM delivered to
 * a thread that does not block it would kill the process instead of stopping it. Returns
 * pthread_create()'s result. */
static int mx_log_writer_start(void)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&mx_log_writer, NULL, mx_log_writer_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* The writer's two buffers (kept across opens). 0 or -ENOMEM. */
static int mx_log_queue_alloc(void)
{
	if (!mx_log_queue)
		mx_log_queue = malloc(MX_LOG_QUEUE_MAX);
	if (!mx_log_spare)
		mx_log_spare = malloc(MX_LOG_QUEUE_MAX);
	return mx_log_queue && mx_log_spare ? 0 : -ENOMEM;
}

/* Open what `c` says; without a maillog_file, syslog when `gateway` is true, else
 * standard error. gateway: the writer thread writes (syslog, or the file). */
static int mx_log_open_target(const struct mx_log_conf *c, bool gateway, char *warn,
			      size_t warnlen)
{
	if (warn && warnlen)
		warn[0] = '\0';
	int fd = STDERR_FILENO;
	bool own = false, sys = false, threaded = false;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (c->maillog_file && *c->maillog_file) {
		/* Postfix's container idiom, maillog_file = /dev/stdout: the descriptor we
		 * were given, not a new open of /proc/self/fd/N, which fails when it is a
		 * socket (systemd's journal stream) */
		int std = strcmp(c->maillog_file, "/dev/stdout") == 0	? STDOUT_FILENO
			  : strcmp(c->maillog_file, "/dev/stderr") == 0 ? STDERR_FILENO
									: -1;
		if (std >= 0)
			fd = fcntl(std, F_DUPFD_CLOEXEC, 3);
		else
			fd = open(c->maillog_file,
				  O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd < 0)
			return -errno;
		own = true;
		if (gateway && mx_log_queue_alloc() < 0) {
			close(fd);
			return -ENOMEM;
		}
		threaded = gateway;
	} else if (gateway) {
		const char *path = c->syslog_socket && *c->syslog_socket ? c->syslog_socket
									 : "/dev/log";
		if (strlen(path) >= sizeof(sun.sun_path))
			return -ENAMETOOLONG;
		memcpy(sun.sun_path, path, strlen(path) + 1);
		if (mx_log_queue_alloc() < 0)
			return -ENOMEM;
		/* Blocking, for the writer thread only, but never for long: a daemon that
		 * reads nothing for a second costs the lines of that send, not the writer. */
		fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		struct timeval tv = { .tv_sec = 1 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		own = sys = threaded = true;
	}

	char host[HOST_NAME_MAX + 1] = "";
	const char *hostname = c->hostname;
	if (!hostname || !*hostname) {
		if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
			snprintf(host, sizeof(host), "localhost");
		hostname = host;
	}
	/* syslog shows the short name: the part before the first dot. */
	size_t hlen = strcspn(hostname, ".");
	if (hlen == 0) {
		hostname = "localhost";
		hlen = strlen(hostname);
	}

	/* localtime_r() need not read TZ itself; make sure it was. */
	tzset();
	atomic_fetch_add_explicit(&mx_log_openings, 1, memory_order_relaxed);

	mx_log_writer_join(); /* the old target's queue goes out first */
	pthread_mutex_lock(&mx_log_lock);
	if (mx_log_own_fd)
		close(mx_log_fd);
	mx_log_fd = fd;
	mx_log_own_fd = own;
	mx_log_syslog = sys;
	mx_log_threaded_file = threaded && !sys;
	struct stat st;
	mx_log_stream = mx_log_threaded_file && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode);
	mx_log_sun = sun;
	mx_log_facility = c->facility & LOG_FACMASK;
	mx_log_set_tag(mx_log_host, sizeof(mx_log_host), hostname, hlen);
	const char *name = c->syslog_name && *c->syslog_name ? c->syslog_name : "mxgate";
	mx_log_set_tag(mx_log_name, sizeof(mx_log_name), name, strlen(name));
	const char *proc = c->process && *c->process ? c->process : NULL;
	mx_log_tag_bare = proc == NULL;
	mx_log_set_tag(mx_log_service, sizeof(mx_log_service), proc ? proc : "",
		       proc ? strlen(proc) : 0);
	mx_log_queued = 0;
	int crc = sys ? mx_log_connect() : 0;
	mx_log_drops_at_open = atomic_load(&mx_log_drops);
	int trc = threaded ? mx_log_writer_start() : 0;
	mx_log_writer_on = threaded && trc == 0;
	if (sys && trc != 0) { /* no writer: standard error rather than nothing */
		close(mx_log_fd);
		mx_log_fd = STDERR_FILENO;
		mx_log_own_fd = false;
		mx_log_syslog = false;
	}
	if (trc != 0)
		mx_log_threaded_file = false; /* the file, written at once */
	pthread_mutex_unlock(&mx_log_lock);
	if (trc != 0)
		return -trc;
	if (crc < 0 && warn && warnlen)
		snprintf(warn, warnlen,
			 "syslog socket %s: %s; log lines are dropped until a syslog daemon "
			 "listens there (or set maillog_file)",
			 sun.sun_path, strerror(-crc));
	return 0;
}

int mx_log_open_conf(const struct mx_log_conf *c, char *warn, size_t warnlen)
{
	return mx_log_open_target(c, true, warn, warnlen);
}

int mx_log_open(const char *path, const char *hostname, const char *service)
{
	struct mx_log_conf c = { .maillog_file = path, .hostname = hostname, .process = service };
	return mx_log_open_target(&c, false, NULL, 0);
}

void mx_log_close(void)
{
	mx_log_writer_join();
	pthread_mutex_lock(&mx_log_lock);
	if (mx_log_own_fd)
		close(mx_log_fd);
	mx_log_fd = STDERR_FILENO;
	mx_log_own_fd = false;
	mx_log_syslog = false;
	mx_log_threaded_file = false;
	pthread_mutex_unlock(&mx_log_lock);
}

/* One write: O_APPEND makes it atomic against other writers of the file. The loop only
 * runs again after EINTR or a short write (a full disk), where a cut line is better than a
 * lost one. The caller holds mx_log_lock, or is the writer thread of a threaded file (the
 * only thread that writes it then). */
static void mx_log_write_file(const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(mx_log_fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
}

/* Whether a failed send means the daemon went away (restarted): connect again. */
static bool mx_log_send_reconnect(int err)
{
	return err == ECONNREFUSED || err == ENOTCONN || err == ENOENT || err == EDESTADDRREQ;
}

static size_t mx_log_count_lines(const char *p, size_t len)
{
	size_t n = 0;
	for (const char *q = p; (q = memchr(q, '\n', len - (size_t)(q - p))); q++)
		n++;
	return n;
}

/* The writer's write to a pipe, socket or terminal: whole lines, at most PIPE_BUF bytes
 * at a time, each once poll(2) says there is room for them (so the write does not wait),
 * and dropped and counted when the reader took nothing for a second, so that the writer,
 * and a close that waits for it, never hang on a reader that went to sleep. */
static void mx_log_write_stream(const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		size_t n = 0;
		while (off + n < len) {
			const char *nl = memchr(p + off + n, '\n', len - off - n);
			size_t l = nl ? (size_t)(nl - (p + off + n)) + 1 : len - off - n;
			if (n && n + l > PIPE_BUF)
				break;
			n += l;
		}
		struct pollfd pfd = { .fd = mx_log_fd, .events = POLLOUT };
		int r;
		do
			r = poll(&pfd, 1, 1000);
		while (r < 0 && errno == EINTR);
		if (r <= 0 || (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) {
			atomic_fetch_add(&mx_log_drops, mx_log_count_lines(p + off, len - off));
			return;
		}
		mx_log_write_file(p + off, n);
		off += n;
	}
}

/* The writer's state between sends. */
struct mx_log_sender {
	uint64_t retry_ms; /* no reconnect before this (monotonic) */
	uint64_t told;     /* drops a warning has reported */
};

/* Send whole lines (each ends with '\n', which is not sent) as one datagram each, with as
 * few sendmmsg(2) calls as the socket allows. Returns how many bytes of `p` were sent
 * (whole lines), or -1 after dropping the rest: the daemon is gone, or read nothing for
 * the send timeout. */
static ssize_t mx_log_send_chunk(struct mx_log_sender *st, const char *p, size_t len)
{
	struct iovec iov[MX_LOG_MMSG_MAX];
	struct mmsghdr mm[MX_LOG_MMSG_MAX];
	unsigned n = 0;
	size_t o = 0;
	while (o < len && n < MX_LOG_MMSG_MAX) {
		const char *nl = memchr(p + o, '\n', len - o);
		size_t l = nl ? (size_t)(nl - (p + o)) : len - o;
		iov[n] = (struct iovec){ .iov_base = (void *)(p + o), .iov_len = l };
		mm[n] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[n], .msg_iovlen = 1 } };
		n++;
		o += l + (nl ? 1 : 0);
	}
	for (bool retried = false;;) {
		int sent = sendmmsg(mx_log_fd, mm, n, MSG_NOSIGNAL);
		if (sent > 0) {
			size_t done = 0;
			for (int i = 0; i < sent; i++)
				done += iov[i].iov_len + 1;
			return (ssize_t)(done < len ? done : len);
		}
		if (sent < 0 && errno == EINTR)
			continue;
		uint64_t now = mx_clock_monotonic_ms();
		if (sent < 0 && mx_log_send_reconnect(errno) && !retried && now >= st->retry_ms) {
			retried = true;
			if (mx_log_connect() == 0)
				continue;
			st->retry_ms = now + 1000;
		}
		return -1;
	}
}

/* A warning line, formatted by the writer itself. */
static size_t mx_log_formatf(char *line, const char *proc, enum mx_log_level level,
			     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static const char *mx_log_thread_proc_name(void);

/* Send what the queue held; count what cannot be sent. */
static void mx_log_send_lines(struct mx_log_sender *st, const char *p, size_t len)
{
	size_t off = 0;
	while (off < len) {
		uint64_t drops = atomic_load(&mx_log_drops);
		if (drops > st->told) {
			char line[MX_LOG_LINE_MAX];
			size_t n = mx_log_formatf(line, mx_log_thread_proc_name(), MX_LOG_WARNING,
						  "%" PRIu64 " log line(s) dropped: %s",
						  drops - st->told,
						  mx_log_syslog ? "the syslog socket was full or "
								  "nobody listened"
								: "the log file's writer fell "
								  "behind");
			if (!mx_log_syslog) {
				if (mx_log_stream)
					mx_log_write_stream(line, n);
				else
					mx_log_write_file(line, n);
				st->told = drops;
			} else if (mx_log_send_chunk(st, line, n) > 0) {
				st->told = drops;
			}
		}
		if (!mx_log_syslog) {
			/* a file: what could not be had in the queue was dropped (see above),
			 * the rest is written whole */
			if (mx_log_stream)
				mx_log_write_stream(p + off, len - off);
			else
				mx_log_write_file(p + off, len - off);
			return;
		}
		ssize_t sent = mx_log_send_chunk(st, p + off, len - off);
		if (sent < 0) {
			atomic_fetch_add(&mx_log_drops, mx_log_count_lines(p + off, len - off));
			return;
		}
		off += (size_t)sent;
	}
}

static void *mx_log_writer_main(void *arg)
{
	(void)arg;
	/* not the count now: lines may have been dropped between the open and this thread's
	 * first run, and they are reported too */
	pthread_mutex_lock(&mx_log_lock);
	struct mx_log_sender st = { .told = mx_log_drops_at_open };
	pthread_mutex_unlock(&mx_log_lock);
	pthread_mutex_lock(&mx_log_lock);
	for (;;) {
		while (!mx_log_queued && !mx_log_writer_stop) {
			mx_log_sending = false;
			pthread_cond_broadcast(&mx_log_idle);
			pthread_cond_wait(&mx_log_cond, &mx_log_lock);
		}
		if (!mx_log_queued)
			break; /* stopping, and all sent */
		char *out = mx_log_queue;
		size_t len = mx_log_queued;
		mx_log_queue = mx_log_spare;
		mx_log_spare = out;
		mx_log_queued = 0;
		mx_log_sending = true;
		pthread_mutex_unlock(&mx_log_lock);
		mx_log_send_lines(&st, out, len);
		pthread_mutex_lock(&mx_log_lock);
	}
	mx_log_sending = false;
	mx_log_writer_on = false; /* later lines are dropped and counted, not queued */
	pthread_cond_broadcast(&mx_log_idle);
	pthread_mutex_unlock(&mx_log_lock);
	return NULL;
}

void mx_log_drain(void)
{
	pthread_mutex_lock(&mx_log_lock);
	while (mx_log_writer_on && !mx_log_writer_stop && (mx_log_queued || mx_log_sending))
		pthread_cond_wait(&mx_log_idle, &mx_log_lock);
	pthread_mutex_unlock(&mx_log_lock);
}

/* A tool's file: written now. syslog, or the gateway's file: queued for the writer, or
 * dropped and counted when the queue is full. */
static void mx_log_write(const char *p, size_t len)
{
	pthread_mutex_lock(&mx_log_lock);
	if (!mx_log_syslog && !mx_log_threaded_file) {
		mx_log_write_file(p, len);
	} else if (!mx_log_writer_on || mx_log_queued + len > MX_LOG_QUEUE_MAX) {
		atomic_fetch_add(&mx_log_drops, mx_log_count_lines(p, len));
	} else {
		memcpy(mx_log_queue + mx_log_queued, p, len);
		if (!mx_log_queued)
			pthread_cond_signal(&mx_log_cond);
		mx_log_queued += len;
		mx_log_sending = true; /* not idle until the writer has seen it */
	}
	pthread_mutex_unlock(&mx_log_lock);
}

int mx_log_batch_begin(void)
{
	if (mx_log_batch)
		return 0;
	mx_log_batch = calloc(1, sizeof(*mx_log_batch));
	return mx_log_batch ? 0 : -ENOMEM;
}

void mx_log_batch_flush(void)
{
	struct mx_log_batch *b = mx_log_batch;
	if (b && b->len) {
		mx_log_write(b->buf, b->len);
		b->len = 0;
	}
}

void mx_log_batch_end(void)
{
	mx_log_batch_flush();
	free(mx_log_batch);
	mx_log_batch = NULL;
}

/* Format one line for the current target into line[MX_LOG_LINE_MAX], newline included
 * (not sent to syslog). Returns its length. */
static size_t mx_log_format(char *line, const char *proc, enum mx_log_level level,
			    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static size_t mx_log_format(char *line, const char *proc, enum mx_log_level level,
			    const char *fmt, va_list ap)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	/* Postfix's msg_syslog.c: info, warning, error, fatal (and panic) are LOG_INFO,
	 * LOG_WARNING, LOG_ERR and LOG_CRIT. */
	static const int severity[MX_LOG_LEVEL_MAX] = {
		[MX_LOG_INFO] = LOG_INFO,
		[MX_LOG_WARNING] = LOG_WARNING,
		[MX_LOG_ERROR] = LOG_ERR,
		[MX_LOG_FATAL] = LOG_CRIT,
	};
	/* The time stamp is made once a second per thread: a busy worker writes thousands of
	 * lines a second (three per connection a screen turns away), and localtime_r() with
	 * its time zone rules cost more than the rest of the line. */
	time_t secs = (time_t)mx_clock_wall_s();
	unsigned opening = atomic_load_explicit(&mx_log_openings, memory_order_relaxed);
	if (secs != mx_log_stamp_secs || opening != mx_log_stamp_opening) {
		struct tm tm;
		localtime_r(&secs, &tm);
		snprintf(mx_log_stamp, sizeof(mx_log_stamp), "%s %2d %02d:%02d:%02d",
			 months[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		mx_log_stamp_secs = secs;
		mx_log_stamp_opening = opening;
	}
	long pid = atomic_load_explicit(&mx_log_pid, memory_order_relaxed);
	if (!pid) {
		/* glibc no longer caches getpid(): it is a system call */
		pthread_once(&mx_log_pid_once, mx_log_pid_watch_forks);
		pid = (long)getpid();
		atomic_store_explicit(&mx_log_pid, pid, memory_order_relaxed);
	}

	const size_t room = MX_LOG_LINE_MAX - 1; /* the last byte is kept for the newline */

	/* Months are spelled out here rather than by strftime(), which follows the locale:
	 * syslog's format is the C locale's. The tags are set before any thread logs. A
	 * syslog datagram has no host name: the daemon adds its own (as syslog(3)). */
	size_t len;
	bool sys = mx_log_syslog;
	struct mx_log_head *hc = NULL;
	for (unsigned i = 0; i < MX_LOG_HEADS; i++) {
		struct mx_log_head *h = &mx_log_heads[i];
		if (h->len && h->proc == proc && h->level == level && h->secs == secs &&
		    h->opening == opening && h->pid == pid && h->syslog == sys) {
			hc = h;
			break;
		}
	}
	if (hc) {
		memcpy(line, hc->text, hc->len);
		len = hc->len;
	} else {
		char pri[16] = "", host[MX_LOG_TAG_MAX + 1] = "";
		if (sys)
			snprintf(pri, sizeof(pri), "<%d>", mx_log_facility | severity[level]);
		else
			snprintf(host, sizeof(host), "%s ", mx_log_host);
		int head = snprintf(line, room, "%s%s %s%s%s%s[%ld]: %s", pri, mx_log_stamp,
				    host, mx_log_name, proc ? "/" : "", proc ? proc : "", pid,
				    mx_log_prefix[level]);
		len = head < 0 ? 0 : (size_t)head < room ? (size_t)head : room - 1;
		if (len && len < sizeof(hc->text)) {
			hc = &mx_log_heads[mx_log_head_next++ % MX_LOG_HEADS];
			*hc = (struct mx_log_head){ .proc = proc, .level = level, .secs = secs,
						    .opening = opening, .pid = pid, .syslog = sys,
						    .len = len };
			memcpy(hc->text, line, len);
		}
	}

	int body = vsnprintf(line + len, room - len, fmt, ap);
	size_t text_start = len;
	if (body > 0)
		len += (size_t)body < room - len ? (size_t)body : room - len - 1;
	for (size_t i = text_start; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];
		if (ch < 0x20 || ch == 0x7f)
			line[i] = '?';
	}
	line[len++] = '\n';
	return len;
}

static size_t mx_log_formatf(char *line, const char *proc, enum mx_log_level level,
			     const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = mx_log_format(line, proc, level, fmt, ap);
	va_end(ap);
	return n;
}

/* The process this thread logs as by default (NULL: none, "mxgate[pid]"). */
static const char *mx_log_thread_proc_name(void)
{
	if (mx_log_thread_proc >= 0)
		return mx_log_proc_name(mx_log_thread_proc);
	return mx_log_tag_bare ? NULL : mx_log_service;
}

/* proc: the process name, or NULL for the thread's. */
static void mx_log_emit(const char *proc, enum mx_log_level level, const char *fmt,
			va_list ap) __attribute__((format(printf, 3, 0)));
static void mx_log_emit(const char *proc, enum mx_log_level level, const char *fmt,
			va_list ap)
{
	if ((unsigned)level >= MX_LOG_LEVEL_MAX)
		level = MX_LOG_ERROR;
	if (!proc)
		proc = mx_log_thread_proc_name();

	char line[MX_LOG_LINE_MAX];
	size_t len = mx_log_format(line, proc, level, fmt, ap);

	struct mx_log_batch *b = mx_log_batch;
	if (b && level == MX_LOG_INFO) {
		if (b->len + len > sizeof(b->buf))
			mx_log_batch_flush();
		memcpy(b->buf + b->len, line, len);
		b->len += len;
		return;
	}
	if (b)
		mx_log_batch_flush(); /* what came before this line goes first */
	mx_log_write(line, len);
	/* the process is about to end: the line must be out first */
	if (level == MX_LOG_FATAL)
		mx_log_drain();
}

void mx_logv(enum mx_log_level level, const char *fmt, va_list ap)
{
	mx_log_emit(NULL, level, fmt, ap);
}

void mx_log_asv(enum mx_log_proc p, enum mx_log_level level, const char *fmt, va_list ap)
{
	mx_log_emit(mx_log_proc_name(p), level, fmt, ap);
}

void mx_log_as(enum mx_log_proc p, enum mx_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mx_log_asv(p, level, fmt, ap);
	va_end(ap);
}

void mx_log(enum mx_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mx_logv(level, fmt, ap);
	va_end(ap);
}
