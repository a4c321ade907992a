/* mgmt/log.c: Postfix-style log lines, one write(2) each (the gateway's through its writer
 * thread). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/log.h"
#include "testing.h"

static char dir[] = "/tmp/mxgate-test-log-XXXXXX";

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	buf[got] = '\0';
	fclose(f);
	if (len)
		*len = got;
	return buf;
}

/* Check "Mon DD HH:MM:SS host tag[pid]: " and return what follows, or NULL. */
static const char *check_header(const char *line, const char *host, const char *tag)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	bool month_ok = false;
	for (int i = 0; i < 12; i++)
		month_ok |= strncmp(line, months[i], 3) == 0;
	CHECK(month_ok);
	/* " D" or "DD" day, space padded as syslog does. */
	CHECK(line[3] == ' ');
	CHECK((line[4] == ' ' || (line[4] >= '1' && line[4] <= '3')) && line[5] >= '0' &&
	      line[5] <= '9');
	CHECK(line[6] == ' ' && line[9] == ':' && line[12] == ':' && line[15] == ' ');
	for (int i = 7; i < 15; i++)
		if (i != 9 && i != 12)
			CHECK(line[i] >= '0' && line[i] <= '9');
	char want[256];
	snprintf(want, sizeof(want), "%s %s[%ld]: ", host, tag, (long)getpid());
	if (strncmp(line + 16, want, strlen(want)) != 0) {
		fprintf(stderr, "  line \"%.80s\" lacks \"%s\" at 16\n", line, want);
		CHECK(false);
		return NULL;
	}
	return line + 16 + strlen(want);
}

static void test_format_and_levels(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/levels.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "mx1.example.com", "smtpd"), 0);
	mx_log(MX_LOG_INFO, "4ABC123: client=unknown[%s]", "192.0.2.1");
	mx_log(MX_LOG_WARNING, "w %d", 1);
	mx_log(MX_LOG_ERROR, "e");
	mx_log(MX_LOG_FATAL, "f");
	mx_log_close();

	char *text = slurp(path, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	const char *want[] = { "4ABC123: client=unknown[192.0.2.1]\n", "warning: w 1\n",
			       "error: e\n", "fatal: f\n" };
	const char *p = text;
	for (int i = 0; i < 4; i++) {
		const char *rest = check_header(p, "mx1", "mxgate/smtpd");
		CHECK(rest && strncmp(rest, want[i], strlen(want[i])) == 0);
		p = strchr(p, '\n');
		if (!p)
			break;
		p++;
	}
	CHECK(p && *p == '\0');
	free(text);
}

static void test_local_time(void)
{
	/* The time is local time, as syslog writes it: with TZ at UTC-10 the hour is the
	 * UTC hour plus 10. */
	char path[128];
	snprintf(path, sizeof(path), "%s/tz.log", dir);
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	setenv("TZ", "XYZ-10", 1);
	CHECK_INT_EQ(mx_log_open(path, "h", "t"), 0);
	time_t before = time(NULL);
	mx_log(MX_LOG_INFO, "now");
	time_t after = time(NULL);
	mx_log_close();
	char *text = slurp(path, NULL);
	bool found = false;
	for (time_t t = before; t <= after && text; t++) {
		struct tm tm;
		gmtime_r(&t, &tm);
		tm.tm_hour += 10; /* normalize through timegm */
		time_t shifted = timegm(&tm);
		gmtime_r(&shifted, &tm);
		char stamp[32];
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
		found |= strncmp(text, stamp, strlen(stamp)) == 0;
	}
	if (!found)
		fprintf(stderr, "  line: %s", text ? text : "(none)");
	CHECK(found);
	free(text);
	if (old)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	free(old);
	tzset();
}

static void test_append_and_reopen(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/append.log", dir);
	FILE *f = fopen(path, "w");
	fputs("existing line\n", f);
	fclose(f);
	CHECK_INT_EQ(mx_log_open(path, "h", "a"), 0);
	mx_log(MX_LOG_INFO, "one");
	/* Re-opening (log rotation) replaces the file descriptor and the tags. */
	CHECK_INT_EQ(mx_log_open(path, "h2", "b"), 0);
	mx_log(MX_LOG_INFO, "two");
	mx_log_close();
	char *text = slurp(path, NULL);
	CHECK(text && strncmp(text, "existing line\n", 14) == 0);
	CHECK(text && strstr(text, " h mxgate/a[") && strstr(text, "]: one\n"));
	CHECK(text && strstr(text, " h2 mxgate/b[") && strstr(text, "]: two\n"));
	free(text);

	/* A file the log creates is not world-readable (mail logs hold addresses). */
	snprintf(path, sizeof(path), "%s/created.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "h", "a"), 0);
	mx_log_close();
	struct stat st;
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK_INT_EQ(st.st_mode & 0777 & ~0640, 0);

	/* A file that cannot be opened is an error, and logging goes on to stderr. */
	char bad[160];
	snprintf(bad, sizeof(bad), "%s/no/such/dir/x.log", dir);
	CHECK_INT_EQ(mx_log_open(bad, "h", "x"), -ENOENT);
}

static void test_truncation_and_sanitizing(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/long.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "h", "long"), 0);
	char *big = malloc(100000);
	memset(big, 'x', 99999);
	big[99999] = '\0';
	mx_log(MX_LOG_WARNING, "%s", big);
	/* A client-supplied string cannot start a second line or send terminal codes. */
	mx_log(MX_LOG_INFO, "helo=<%s>", "evil\r\nNov 22 10:00:00 h mxgate/smtpd[1]: forged\x1b[2J");
	mx_log(MX_LOG_INFO, "utf8=%s tab=[\t]", "caf\xc3\xa9");
	mx_log(MX_LOG_INFO, "%s", "");
	mx_log_close();
	size_t len = 0;
	char *text = slurp(path, &len);
	CHECK(text != NULL);
	if (!text) {
		free(big);
		return;
	}
	char *nl = strchr(text, '\n');
	CHECK(nl != NULL);
	size_t first = nl ? (size_t)(nl - text) + 1 : 0;
	CHECK(first <= 2048);
	CHECK(first > 2000);
	CHECK(nl && nl[-1] == 'x');
	const char *second = nl + 1;
	const char *rest = check_header(second, "h", "mxgate/long");
	CHECK(rest && strncmp(rest, "helo=<evil??Nov 22 10:00:00 h mxgate/smtpd[1]: forged?[2J>\n",
			      59) == 0);
	CHECK(strstr(text, "utf8=caf\xc3\xa9 tab=[?]\n") != NULL);
	/* Four lines in all. */
	int lines = 0;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	CHECK_INT_EQ(lines, 4);
	free(text);
	free(big);
}

static void test_short_hostname_and_tags(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/tags.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "mx7.example.net", NULL), 0);
	mx_log(MX_LOG_INFO, "a");
	CHECK_INT_EQ(mx_log_open(path, "odd host", "odd service"), 0);
	mx_log(MX_LOG_INFO, "b");
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	host[strcspn(host, ".")] = '\0';
	CHECK_INT_EQ(mx_log_open(path, NULL, "smtpd"), 0);
	mx_log(MX_LOG_INFO, "c");
	mx_log_close();
	char *text = slurp(path, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	char *l2 = strchr(text, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	const char *r = check_header(text, "mx7", "mxgate");
	CHECK(r && strncmp(r, "a\n", 2) == 0);
	r = check_header(l2, "odd_host", "mxgate/odd_service");
	CHECK(r && strncmp(r, "b\n", 2) == 0);
	r = check_header(l3, host, "mxgate/smtpd");
	CHECK(r && strncmp(r, "c\n", 2) == 0);
	free(text);
}

#define THREADS 8
#define LINES_PER_THREAD 3000

static void *logger(void *arg)
{
	int id = (int)(intptr_t)arg;
	char pad[300];
	memset(pad, 'a' + id, sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	/* half the threads batch, as poll loops do, flushing every 7 lines */
	bool batch = id % 2 == 0;
	if (batch && mx_log_batch_begin() != 0)
		return NULL;
	for (int i = 0; i < LINES_PER_THREAD; i++) {
		mx_log(MX_LOG_INFO, "thread=%d seq=%d %s end", id, i, pad + (i % 200));
		if (batch && i % 7 == 6)
			mx_log_batch_flush();
	}
	if (batch)
		mx_log_batch_end();
	return NULL;
}

static void test_threads_do_not_interleave(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/threads.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "h", "smtpd"), 0);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, logger, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	mx_log_close();

	char *text = slurp(path, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	int next[THREADS] = { 0 };
	int lines = 0, bad = 0;
	for (char *line = text; *line;) {
		char *end = strchr(line, '\n');
		if (!end)
			break;
		*end = '\0';
		int id = -1, seq = -1, n = 0;
		const char *body = strstr(line, "]: thread=");
		if (body && sscanf(body, "]: thread=%d seq=%d %n", &id, &seq, &n) == 2 && id >= 0 &&
		    id < THREADS) {
			/* Each thread's lines arrive whole and in its order. */
			const char *pad = body + n;
			size_t padlen = strlen(pad) - 4;
			bool whole = strcmp(pad + padlen, " end") == 0 &&
				     padlen == 299 - (size_t)(seq % 200) &&
				     strspn(pad, (char[]){ (char)('a' + id), 0 }) == padlen;
			if (!whole || seq != next[id])
				bad++;
			next[id] = seq + 1;
		} else {
			bad++;
		}
		lines++;
		line = end + 1;
	}
	CHECK_INT_EQ(bad, 0);
	CHECK_INT_EQ(lines, THREADS * LINES_PER_THREAD);
	free(text);
}

/* A batching thread's lines wait for the flush, whole and in order; a warning flushes
 * what came before it and goes out at once; a full batch flushes itself. */
static void test_batches(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/batch.log", dir);
	CHECK_INT_EQ(mx_log_open(path, "h", "smtpd"), 0);
	CHECK_INT_EQ(mx_log_batch_begin(), 0);
	mx_log(MX_LOG_INFO, "b1");
	mx_log(MX_LOG_INFO, "b2");
	size_t len = 0;
	char *text = slurp(path, &len);
	CHECK_INT_EQ(len, 0);
	free(text);
	mx_log(MX_LOG_WARNING, "w");
	text = slurp(path, &len);
	const char *b1 = text ? strstr(text, "]: b1\n") : NULL;
	const char *b2 = text ? strstr(text, "]: b2\n") : NULL;
	const char *w = text ? strstr(text, "]: warning: w\n") : NULL;
	CHECK(b1 && b2 && w && b1 < b2 && b2 < w);
	free(text);
	mx_log(MX_LOG_INFO, "b3");
	mx_log_batch_flush();
	text = slurp(path, NULL);
	CHECK(text && strstr(text, "]: b3\n"));
	free(text);

	/* more than the batch holds: it is written before it would overflow */
	char big[1500];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (int i = 0; i < 100; i++)
		mx_log(MX_LOG_INFO, "n=%d %s", i, big);
	size_t before_flush = 0;
	text = slurp(path, &before_flush);
	free(text);
	mx_log_batch_end(); /* flushes the rest; later lines go out one by one */
	mx_log(MX_LOG_INFO, "after");
	text = slurp(path, &len);
	CHECK(before_flush > 0 && before_flush < len);
	int seen = 0;
	for (const char *p = text; p && (p = strstr(p, "]: n=")); p++) {
		int n = -1;
		sscanf(p, "]: n=%d", &n);
		CHECK_INT_EQ(n, seen);
		seen++;
	}
	CHECK_INT_EQ(seen, 100);
	CHECK(text && strstr(text, "]: after\n"));
	free(text);
	mx_log_close();
}

static void test_stderr(void)
{
	/* Without a file, lines go to standard error. */
	char path[128];
	snprintf(path, sizeof(path), "%s/stderr.log", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int saved = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	CHECK_INT_EQ(mx_log_open("", "h", "main"), 0);
	mx_log(MX_LOG_ERROR, "to stderr");
	mx_log_close(); /* must not close stderr */
	mx_log(MX_LOG_INFO, "still stderr");
	CHECK(fcntl(STDERR_FILENO, F_GETFD) != -1);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char *text = slurp(path, NULL);
	CHECK(text && strstr(text, " h mxgate/main[") && strstr(text, "]: error: to stderr\n"));
	CHECK(text && strstr(text, "]: still stderr\n"));
	free(text);
}

/* ---- syslog: a fake /dev/log (a datagram socket bound in the test's directory) ---- */

static int fake_devlog(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		perror("fake /dev/log");
		CHECK(false);
	}
	return fd;
}

/* The next datagram (waiting for it up to 5 s: the writer thread sends it), or "". */
static const char *devlog_recv(int fd, char *buf, size_t cap)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n = poll(&pfd, 1, 5000) == 1 ? recv(fd, buf, cap - 1, MSG_DONTWAIT) : -1;
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* Whether nothing more arrives: once the writer has sent all it holds (few lines here,
 * fewer than the kernel queues), no datagram is waiting. */
static bool devlog_quiet(int fd)
{
	mx_log_drain();
	char buf[64];
	return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* "<PRI>Mmm dd hh:mm:ss TAG[pid]: " as glibc's syslog(3) sends it: no host name, no
 * newline. Returns the text after it, or NULL. */
static const char *check_syslog(const char *dgram, int pri, const char *tag)
{
	char want[64];
	snprintf(want, sizeof(want), "<%d>", pri);
	if (strncmp(dgram, want, strlen(want)) != 0) {
		fprintf(stderr, "  datagram \"%.60s\" does not start with %s\n", dgram, want);
		CHECK(false);
		return NULL;
	}
	const char *p = dgram + strlen(want);
	/* the time stamp: check_header() checks it with a host name after it */
	char line[2200];
	snprintf(line, sizeof(line), "%.16shost %s", p, p + 16);
	const char *rest = check_header(line, "host", tag);
	CHECK(!strchr(dgram, '\n'));
	return rest ? p + (rest - line) - 5 : NULL;
}

static void test_syslog(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/devlog", dir);
	int fd = fake_devlog(sock);
	char warn[256] = "x";
	struct mx_log_conf c = { .syslog_socket = sock, .syslog_name = "mxgate",
				 .facility = LOG_MAIL, .hostname = "mx1.example",
				 .process = "smtpd" };
	CHECK_INT_EQ(mx_log_open_conf(&c, warn, sizeof(warn)), 0);
	CHECK_STR_EQ(warn, "");
	uint64_t drops = mx_log_dropped();

	char buf[4096];
	/* mail.info = 2 * 8 + 6 */
	mx_log(MX_LOG_INFO, "4ZhQ5N0Bc9z01: client=unknown[%s]", "192.0.2.1");
	const char *r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), 22, "mxgate/smtpd");
	CHECK(r && strcmp(r, "4ZhQ5N0Bc9z01: client=unknown[192.0.2.1]") == 0);
	/* severities as Postfix's msg_syslog.c maps them */
	mx_log(MX_LOG_WARNING, "w");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), LOG_MAIL | LOG_WARNING,
			 "mxgate/smtpd");
	CHECK(r && strcmp(r, "warning: w") == 0);
	mx_log(MX_LOG_ERROR, "e");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), LOG_MAIL | LOG_ERR, "mxgate/smtpd");
	CHECK(r && strcmp(r, "error: e") == 0);
	mx_log(MX_LOG_FATAL, "f");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), LOG_MAIL | LOG_CRIT, "mxgate/smtpd");
	CHECK(r && strcmp(r, "fatal: f") == 0);
	/* another program name for one line, and for a thread */
	mx_log_as(MX_LOG_QMGR, MX_LOG_INFO, "ID: removed");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), 22, "mxgate/qmgr");
	CHECK(r && strcmp(r, "ID: removed") == 0);
	mx_log_set_process(MX_LOG_SMTP);
	mx_log(MX_LOG_INFO, "t");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), 22, "mxgate/smtp");
	CHECK(r && strcmp(r, "t") == 0);
	mx_log_set_process(MX_LOG_PROC_MAX); /* back to the default */
	mx_log(MX_LOG_INFO, "t2");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), 22, "mxgate/smtpd");
	CHECK(r && strcmp(r, "t2") == 0);

	/* a batch: one datagram per line, in order, after the flush */
	CHECK_INT_EQ(mx_log_batch_begin(), 0);
	for (int i = 0; i < 100; i++)
		mx_log(MX_LOG_INFO, "batch %d", i);
	CHECK(devlog_quiet(fd));
	mx_log_batch_end();
	for (int i = 0; i < 100; i++) {
		char want[32];
		snprintf(want, sizeof(want), "batch %d", i);
		r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), 22, "mxgate/smtpd");
		CHECK(r && strcmp(r, want) == 0);
	}
	CHECK(devlog_quiet(fd));
	CHECK(mx_log_dropped() == drops);

	/* another facility and name; a control character cannot start a second record */
	c.facility = LOG_LOCAL3;
	c.syslog_name = "postfix-mx";
	CHECK_INT_EQ(mx_log_open_conf(&c, warn, sizeof(warn)), 0);
	mx_log(MX_LOG_INFO, "a\nb");
	r = check_syslog(devlog_recv(fd, buf, sizeof(buf)), LOG_LOCAL3 | LOG_INFO,
			 "postfix-mx/smtpd");
	CHECK(r && strcmp(r, "a?b") == 0);
	mx_log_close();
	close(fd);
	unlink(sock);
}

/* The fake daemon's reader: counts lines and the drop warnings' numbers until "end". */
struct devlog_reader {
	int fd;
	int got, last, disorder;
	uint64_t warned;
};

static void *devlog_read_all(void *arg)
{
	struct devlog_reader *rd = arg;
	char buf[4096];
	for (;;) {
		ssize_t n = recv(rd->fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			break;
		buf[n] = '\0';
		const char *t = strstr(buf, "]: ");
		if (!t)
			continue;
		t += 3;
		unsigned long long w = 0;
		int k = -1;
		if (strcmp(t, "end") == 0)
			break;
		if (sscanf(t, "warning: %llu log line(s) dropped", &w) == 1) {
			rd->warned += w;
		} else if (sscanf(t, "n=%d", &k) == 1 || sscanf(t, "m=%d", &k) == 1) {
			if (t[0] == 'm')
				k += 3000;
			rd->disorder += k <= rd->last;
			rd->last = k;
			rd->got++;
		}
	}
	return NULL;
}

/* A daemon that does not read: the writer's sends stall, the queue fills, lines are
 * dropped and counted, and no logging thread waits. When the daemon reads again, what was
 * queued arrives whole and in order, and warnings say how many were dropped. */
static void test_syslog_full_never_blocks(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/devlog-full", dir);
	int fd = fake_devlog(sock);
	struct mx_log_conf c = { .syslog_socket = sock, .facility = LOG_MAIL, .hostname = "h",
				 .process = "smtpd" };
	CHECK_INT_EQ(mx_log_open_conf(&c, NULL, 0), 0);
	uint64_t before = mx_log_dropped();
	char pad[1000];
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	/* more than the kernel (10 datagrams by default) and the queue (512 kB) hold */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_INT_EQ(mx_log_batch_begin(), 0);
	for (int i = 0; i < 3000; i++) {
		mx_log(MX_LOG_INFO, "n=%d %s", i, pad);
		if (i % 10 == 9)
			mx_log_batch_flush();
	}
	mx_log_batch_end();
	for (int i = 0; i < 3000; i++)
		mx_log(MX_LOG_INFO, "m=%d", i);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(secs < 5);
	CHECK(mx_log_dropped() > before);

	struct devlog_reader rd = { .fd = fd, .last = -1 };
	pthread_t th;
	pthread_create(&th, NULL, devlog_read_all, &rd);
	mx_log_drain();
	mx_log(MX_LOG_INFO, "end");
	pthread_join(th, NULL);
	uint64_t dropped = mx_log_dropped() - before;
	CHECK(dropped > 0 && dropped < 6000);
	CHECK_INT_EQ((uint64_t)rd.got + dropped, 6000);
	CHECK_INT_EQ(rd.disorder, 0);
	CHECK_INT_EQ(rd.warned, dropped);
	mx_log_close();
	close(fd);
	unlink(sock);
}

/* No daemon yet: open says so and succeeds; lines are counted; when the daemon comes,
 * the next line (a second later: reconnects are rate limited) reaches it. */
static void test_syslog_daemon_late(void)
{
	char sock[128];
	snprintf(sock, sizeof(sock), "%s/devlog-late", dir);
	unlink(sock);
	char warn[256];
	struct mx_log_conf c = { .syslog_socket = sock, .facility = LOG_MAIL, .hostname = "h",
				 .process = "smtpd" };
	CHECK_INT_EQ(mx_log_open_conf(&c, warn, sizeof(warn)), 0);
	CHECK(strstr(warn, sock) && strstr(warn, "dropped"));
	uint64_t before = mx_log_dropped();
	mx_log(MX_LOG_INFO, "lost");
	mx_log_drain();
	CHECK(mx_log_dropped() == before + 1);
	int fd = fake_devlog(sock);
	char buf[4096];
	bool got = false;
	for (int i = 0; i < 30 && !got; i++) {
		mx_log(MX_LOG_INFO, "hello %d", i);
		mx_log_drain(); /* sent, or dropped: nothing waits in the writer */
		ssize_t n;
		while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
			buf[n] = '\0';
			got |= strstr(buf, "]: hello ") != NULL;
		}
		if (!got)
			usleep(100 * 1000);
	}
	CHECK(got);
	/* a maillog_file wins over syslog, as in Postfix */
	char path[128];
	snprintf(path, sizeof(path), "%s/wins.log", dir);
	c.maillog_file = path;
	CHECK_INT_EQ(mx_log_open_conf(&c, warn, sizeof(warn)), 0);
	mx_log(MX_LOG_INFO, "to the file");
	CHECK(devlog_quiet(fd));
	char *text = slurp(path, NULL);
	CHECK(text && strstr(text, " h mxgate/smtpd[") && strstr(text, "]: to the file\n"));
	free(text);
	mx_log_close();
	close(fd);
	unlink(sock);
}

static void test_facility_names(void)
{
	CHECK_INT_EQ(mx_log_facility_code("mail"), LOG_MAIL);
	CHECK_INT_EQ(mx_log_facility_code("MAIL"), LOG_MAIL);
	CHECK_INT_EQ(mx_log_facility_code("local7"), LOG_LOCAL7);
	CHECK_INT_EQ(mx_log_facility_code("daemon"), LOG_DAEMON);
	CHECK_INT_EQ(mx_log_facility_code("authpriv"), LOG_AUTHPRIV);
	CHECK_INT_EQ(mx_log_facility_code("local8"), -EINVAL);
	CHECK_INT_EQ(mx_log_facility_code(""), -EINVAL);
	CHECK_INT_EQ(mx_log_facility_code(NULL), -EINVAL);
	CHECK_STR_EQ(mx_log_proc_name(MX_LOG_CLEANUP), "cleanup");
	CHECK_STR_EQ(mx_log_proc_name(MX_LOG_POSTSCREEN), "postscreen");
	CHECK_STR_EQ(mx_log_proc_name(MX_LOG_MGMT), "mgmt");
	CHECK_STR_EQ(mx_log_proc_name(MX_LOG_PROC_MAX), "?");
}

/* maillog_file = /dev/stdout or /dev/stderr: the descriptor itself, even a socket (as
 * systemd's journal stream), which open("/dev/stderr") refuses. */
static void test_dev_stderr_socket(void)
{
	int sv[2];
	CHECK_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int saved = dup(STDERR_FILENO);
	dup2(sv[0], STDERR_FILENO);
	struct mx_log_conf c = { .maillog_file = "/dev/stderr", .hostname = "h",
				 .process = "smtpd" };
	int rc = mx_log_open_conf(&c, NULL, 0);
	mx_log(MX_LOG_INFO, "through the socket");
	mx_log_close();
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(sv[0]);
	CHECK_INT_EQ(rc, 0);
	char buf[512];
	ssize_t n = recv(sv[1], buf, sizeof(buf) - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(strstr(buf, " h mxgate/smtpd[") && strstr(buf, "]: through the socket\n"));
	close(sv[1]);
}

/* A reader of the pipe that drains it into buf until EOF. */
struct pipe_reader {
	int fd;
	char *buf;
	size_t len, cap;
};

static void *pipe_reader_main(void *arg)
{
	struct pipe_reader *r = arg;
	for (;;) {
		if (r->len + 4096 > r->cap) {
			r->cap = r->cap ? 2 * r->cap : 1 << 20;
			r->buf = realloc(r->buf, r->cap);
		}
		ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
		if (n <= 0)
			break;
		r->len += (size_t)n;
	}
	r->buf[r->len] = '\0';
	return NULL;
}

/* The gateway's maillog_file is written by the writer thread: a pipe whose reader stalls
 * (maillog_file = /dev/stdout under a supervisor that stopped reading) costs lines,
 * counted and reported, never the logging thread's time (with one write(2) per line the
 * loop below would wait forever: 1.5 MB into a 64 KB pipe), and the close returns. Every
 * line that arrives is whole. */
static void test_file_stalled_reader_never_blocks(void)
{
	int p[2];
	CHECK_INT_EQ(pipe(p), 0);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p[1]);
	struct mx_log_conf c = { .maillog_file = path, .hostname = "h", .process = "smtpd" };
	CHECK_INT_EQ(mx_log_open_conf(&c, NULL, 0), 0);
	close(p[1]); /* the log has its own open of the pipe */
	uint64_t before = mx_log_dropped();
	for (int i = 0; i < 20000; i++)
		mx_log(MX_LOG_INFO, "line %05d of a log nobody reads, padded to about eighty", i);
	CHECK(mx_log_dropped() > before);
	struct pipe_reader r = { .fd = p[0] };
	pthread_t t;
	CHECK_INT_EQ(pthread_create(&t, NULL, pipe_reader_main, &r), 0);
	mx_log_drain(); /* what the queue still holds goes out (or is dropped) first */
	mx_log(MX_LOG_INFO, "the reader is back");
	mx_log_close();
	pthread_join(t, NULL);
	close(p[0]);
	CHECK(strstr(r.buf, "log line(s) dropped: the log file's writer fell behind\n") != NULL);
	CHECK(strstr(r.buf, "]: the reader is back\n") != NULL);
	size_t lines = 0;
	for (char *l = r.buf; *l; lines++) {
		char *nl = strchr(l, '\n');
		CHECK(nl != NULL);
		if (!nl)
			break;
		*nl = '\0';
		const char *text = check_header(l, "h", "mxgate/smtpd");
		CHECK(text != NULL);
		if (text && strncmp(text, "line ", 5) == 0)
			CHECK(strlen(text) == strlen("line 00000 of a log nobody reads, padded to "
						     "about eighty"));
		l = nl + 1;
	}
	CHECK(lines > 2);
	free(r.buf);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN_TEST(test_format_and_levels);
	RUN_TEST(test_local_time);
	RUN_TEST(test_append_and_reopen);
	RUN_TEST(test_truncation_and_sanitizing);
	RUN_TEST(test_short_hostname_and_tags);
	RUN_TEST(test_threads_do_not_interleave);
	RUN_TEST(test_batches);
	RUN_TEST(test_stderr);
	RUN_TEST(test_syslog);
	RUN_TEST(test_syslog_full_never_blocks);
	RUN_TEST(test_syslog_daemon_late);
	RUN_TEST(test_facility_names);
	RUN_TEST(test_dev_stderr_socket);
	RUN_TEST(test_file_stalled_reader_never_blocks);
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return TEST_RESULT();
}
