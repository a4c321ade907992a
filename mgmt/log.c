/* Postfix-style log lines:
 *     Nov 22 10:14:55 mx1 mxgate/smtpd[1234]: warning: text
 * in local time, as syslog and Postfix's maillog_file write them, so pflogsumm and a
 * postmaster's grep habits work unchanged.
 *
 * Each line is formatted into a bounded buffer and written with one write(2) on a
 * descriptor opened with O_APPEND: lines from concurrent threads (and processes sharing the
 * file) never interleave. A line longer than MX_LOG_LINE_MAX is cut, never overflowed.
 * Control characters in the text are shown as '?', as Postfix's printable() does, so a
 * client-supplied string cannot forge a second log line.
 *
 * A poll-loop thread may batch (mx_log_batch_begin): its informational lines collect in a
 * per-thread buffer that mx_log_batch_flush() writes with one write(2) at the end of each
 * iteration, instead of one system call per connect, queued and disconnect line. Lines
 * stay whole and in order; a warning or worse flushes the batch and is written at once. */
#include "mgmt/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxgate/clock.h"

/* One line, newline included. Postfix's syslog lines are cut near 2 kB too. */
#define MX_LOG_LINE_MAX 2048
#define MX_LOG_TAG_MAX 128

static pthread_mutex_t mx_log_lock = PTHREAD_MUTEX_INITIALIZER;
static int mx_log_fd = STDERR_FILENO;
static bool mx_log_own_fd; /* opened by mx_log_open(), closed by mx_log_close() */
static char mx_log_host[MX_LOG_TAG_MAX] = "localhost";
static char mx_log_service[MX_LOG_TAG_MAX] = "mxgate";

/* The calling thread's batch (NULL: write each line at once). */
#define MX_LOG_BATCH_MAX (16 * MX_LOG_LINE_MAX)
struct mx_log_batch {
	size_t len;
	char buf[MX_LOG_BATCH_MAX];
};
static __thread struct mx_log_batch *mx_log_batch;

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

int mx_log_open(const char *path, const char *hostname, const char *service)
{
	int fd = STDERR_FILENO;
	bool own = false;
	if (path && *path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd < 0)
			return -errno;
		own = true;
	}

	char host[HOST_NAME_MAX + 1] = "";
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

	pthread_mutex_lock(&mx_log_lock);
	if (mx_log_own_fd)
		close(mx_log_fd);
	mx_log_fd = fd;
	mx_log_own_fd = own;
	mx_log_set_tag(mx_log_host, sizeof(mx_log_host), hostname, hlen);
	if (service && *service) {
		char tag[MX_LOG_TAG_MAX];
		snprintf(tag, sizeof(tag), "mxgate/%s", service);
		mx_log_set_tag(mx_log_service, sizeof(mx_log_service), tag, strlen(tag));
	} else {
		snprintf(mx_log_service, sizeof(mx_log_service), "mxgate");
	}
	pthread_mutex_unlock(&mx_log_lock);
	return 0;
}

void mx_log_close(void)
{
	pthread_mutex_lock(&mx_log_lock);
	if (mx_log_own_fd)
		close(mx_log_fd);
	mx_log_fd = STDERR_FILENO;
	mx_log_own_fd = false;
	pthread_mutex_unlock(&mx_log_lock);
}

/* One write: O_APPEND makes it atomic against other writers of the file. The loop only
 * runs again after EINTR or a short write (a full disk), where a cut line is better than a
 * lost one. */
static void mx_log_write(const char *p, size_t len)
{
	pthread_mutex_lock(&mx_log_lock);
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(mx_log_fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
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

void mx_logv(enum mx_log_level level, const char *fmt, va_list ap)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	if ((unsigned)level >= MX_LOG_LEVEL_MAX)
		level = MX_LOG_ERROR;

	struct tm tm;
	time_t secs = (time_t)mx_clock_wall_s();
	localtime_r(&secs, &tm);

	char line[MX_LOG_LINE_MAX];
	const size_t room = sizeof(line) - 1; /* the last byte is kept for the newline */

	/* Months are spelled out here rather than by strftime(), which follows the locale:
	 * syslog's format is the C locale's. The tags are set before any thread logs. */
	int head = snprintf(line, room, "%s %2d %02d:%02d:%02d %s %s[%ld]: %s",
			    months[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			    mx_log_host, mx_log_service, (long)getpid(), mx_log_prefix[level]);
	size_t len = head < 0 ? 0 : (size_t)head < room ? (size_t)head : room - 1;

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
}

void mx_log(enum mx_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mx_logv(level, fmt, ap);
	va_end(ap);
}
