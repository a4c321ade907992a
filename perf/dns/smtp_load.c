/* The load client of the DNS benchmarks (perf/dns/bench_*.py): many concurrent SMTP
 * sessions, each one
 *
 *     connect, 220 greeting, EHLO,
 *     [XCLIENT ADDR=a (220, a new greeting), EHLO again],
 *     MAIL FROM, RCPT TO (any reply is taken and counted by its code),
 *     [DATA and a small message, when the RCPT got a 2xx and --data is given],
 *     QUIT, 221, then the server's close.
 *
 * Each command waits for its reply (no pipelining), as an ordinary client does, so a session
 * that the server parks at RCPT (a DNS or policy lookup in flight) holds its slot until the
 * reply comes. XCLIENT (Postfix XCLIENT_README) lets one client act as many: address i of
 * the run is --xclient-base + (i mod --xclient-count), so each session asks the DNSBL a
 * distinct name, or (count 1) always the same one.
 *
 * One thread, epoll, non-blocking sockets: a C client, so that the load generator is not
 * what a benchmark measures (a Python one tops out below the gateway on this machine).
 * Sessions start as slots free up (--concurrency), at most --rate per second, until
 * --sessions have started or --duration seconds have passed; then the open ones finish.
 * A session that takes longer than --timeout seconds is ended and counted as failed.
 *
 * SIGTERM or SIGINT ends the run early: no new session starts, the open ones are cut and
 * counted as "cut" (not as failed), and the output is written as usual.
 *
 * Output: one JSON object on stdout at the end (counts, RCPT reply codes, failures by
 * step, session and RCPT latency percentiles, peaks, the client's own CPU seconds, so that
 * a benchmark can take them out of the machine's busy time, the CLOCK_MONOTONIC time the
 * run started and when, after that, the last RCPT reply came); with --progress-ms, a JSON line on
 * stderr at that interval (started, done, open, sessions waiting for their RCPT reply).
 * Exit status 0 when every session finished its script (whatever the RCPT codes), 1 when
 * some failed, 2 on bad usage. Benchmark use only; never part of the product. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_BUF 8192        /* one reply; an EHLO reply is well under 1 KiB */
#define LOAD_EVENTS 256
#define LOAD_FAIL_KINDS 64   /* distinct "step code" failure keys kept */
#define LOAD_SAMPLES_MAX (16u << 20)

enum load_state {
	LOAD_CONNECTING,
	LOAD_GREETING,
	LOAD_EHLO1,   /* EHLO before XCLIENT */
	LOAD_XCLIENT, /* waiting for the 220 that starts the new session */
	LOAD_EHLO2,
	LOAD_MAIL,
	LOAD_RCPT,
	LOAD_DATA,
	LOAD_DOT,
	LOAD_QUIT,
	LOAD_EOF, /* 221 read: waiting for the server to close first (no TIME_WAIT here) */
	LOAD_STATE_MAX
};

static const char *load_state_name(enum load_state s)
{
	static const char *const names[LOAD_STATE_MAX] = {
		[LOAD_CONNECTING] = "connect", [LOAD_GREETING] = "greeting",
		[LOAD_EHLO1] = "EHLO",         [LOAD_XCLIENT] = "XCLIENT",
		[LOAD_EHLO2] = "EHLO2",        [LOAD_MAIL] = "MAIL",
		[LOAD_RCPT] = "RCPT",          [LOAD_DATA] = "DATA",
		[LOAD_DOT] = "dot",            [LOAD_QUIT] = "QUIT",
		[LOAD_EOF] = "close",
	};
	return (unsigned)s < LOAD_STATE_MAX ? names[s] : "?";
}

struct load_slot {
	int fd; /* -1: free */
	enum load_state state;
	uint64_t index;      /* the session's number in the run */
	double t_start, t_rcpt, deadline;
	size_t have;
	char buf[LOAD_BUF];
};

struct load_samples {
	double *v;
	size_t n, cap;
};

struct load_fail {
	char key[32];
	uint64_t n;
};

struct load_opts {
	struct sockaddr_in server;
	unsigned concurrency;
	uint64_t sessions;  /* 0: no limit (then --duration) */
	double duration;    /* 0: no limit (then --sessions) */
	double rate;        /* session starts per second, 0: no limit */
	bool xclient;
	uint32_t xclient_base; /* host order */
	uint32_t xclient_count;
	const char *mail, *rcpt, *helo;
	bool data;
	double timeout;
	unsigned progress_ms;
};

static struct load_opts o;
static struct load_slot *slots;
static int ep;
static uint64_t started, completed, failed, completed_in_window;
static uint64_t rcpt_codes[1000];
static struct load_fail fails[LOAD_FAIL_KINDS];
static uint64_t fails_other;
static struct load_samples lat_session, lat_rcpt;
static unsigned open_now, waiting_rcpt, peak_open, peak_waiting_rcpt;
static double t0, window_end, last_rcpt;
static uint64_t cut;
static volatile sig_atomic_t load_stop;

static void load_on_signal(int sig)
{
	(void)sig;
	load_stop = 1;
}

static double load_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load_sample(struct load_samples *s, double v)
{
	if (s->n == s->cap) {
		if (s->cap >= LOAD_SAMPLES_MAX)
			return;
		size_t cap = s->cap ? s->cap * 2 : 4096;
		double *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
}

static void load_fail_count(const char *key)
{
	for (unsigned i = 0; i < LOAD_FAIL_KINDS; i++) {
		if (fails[i].n == 0) {
			snprintf(fails[i].key, sizeof(fails[i].key), "%s", key);
			fails[i].n = 1;
			return;
		}
		if (strcmp(fails[i].key, key) == 0) {
			fails[i].n++;
			return;
		}
	}
	fails_other++;
}

static void load_close(struct load_slot *s)
{
	if (s->state == LOAD_RCPT)
		waiting_rcpt--;
	close(s->fd); /* also leaves the epoll set */
	s->fd = -1;
	open_now--;
}

static void load_failed(struct load_slot *s, const char *why, int code)
{
	char key[32];
	if (code > 0)
		snprintf(key, sizeof(key), "%s %d", load_state_name(s->state), code);
	else
		snprintf(key, sizeof(key), "%s: %s", load_state_name(s->state), why);
	load_fail_count(key);
	failed++;
	load_close(s);
}

static void load_done(struct load_slot *s)
{
	double t = load_now();
	load_sample(&lat_session, (t - s->t_start) * 1000.0);
	completed++;
	if (t <= window_end)
		completed_in_window++;
	load_close(s);
}

/* Send a whole command; a tiny write to an idle socket never comes up short, and one that
 * does is counted as a failure rather than queued. */
static bool load_send(struct load_slot *s, const char *text, size_t len)
{
	ssize_t n = send(s->fd, text, len, MSG_NOSIGNAL);
	if (n == (ssize_t)len)
		return true;
	load_failed(s, n < 0 ? strerror(errno) : "short write", 0);
	return false;
}

static bool load_sendf(struct load_slot *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool load_sendf(struct load_slot *s, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		load_failed(s, "command too long", 0);
		return false;
	}
	return load_send(s, line, (size_t)n);
}

static void load_start(unsigned i)
{
	struct load_slot *s = &slots[i];
	s->index = started++;
	s->have = 0;
	s->state = LOAD_CONNECTING;
	s->t_start = load_now();
	s->deadline = s->t_start + o.timeout;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		char key[32];
		snprintf(key, sizeof(key), "socket: %s", strerror(errno));
		load_fail_count(key);
		failed++;
		return;
	}
	open_now++;
	if (open_now > peak_open)
		peak_open = open_now;
	int one = 1;
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)&o.server, sizeof(o.server)) < 0 &&
	    errno != EINPROGRESS) {
		load_failed(s, strerror(errno), 0);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = i };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0)
		load_failed(s, strerror(errno), 0);
}

/* The first complete reply in s->buf: its code (100..599), and *used the bytes it spans;
 * 0 when incomplete; -1 when malformed (a line that is not "DDD-" or "DDD ..."). */
static int load_reply(const struct load_slot *s, size_t *used)
{
	size_t pos = 0;
	int code = 0;
	while (pos < s->have) {
		const char *line = s->buf + pos;
		const char *nl = memchr(line, '\n', s->have - pos);
		if (!nl)
			return 0;
		size_t len = (size_t)(nl - line);
		if (len < 3 || line[0] < '1' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
		    line[2] < '0' || line[2] > '9')
			return -1;
		int c = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (code && c != code)
			return -1;
		code = c;
		pos += len + 1;
		if (len == 3 || line[3] == ' ' || line[3] == '\r') {
			*used = pos;
			return code;
		}
		if (line[3] != '-')
			return -1;
	}
	return 0;
}

static const char load_message[] =
	"From: <load@client.test>\r\n"
	"To: <sink@localhost>\r\n"
	"Subject: perf/dns load\r\n"
	"\r\n"
	"A small message from perf/dns/smtp_load.\r\n"
	".\r\n";

/* One reply for the session's current step: send the next command. */
static void load_step(struct load_slot *s, int code)
{
	switch (s->state) {
	case LOAD_GREETING:
	case LOAD_XCLIENT:
		if (code != 220)
			break;
		if (s->state == LOAD_GREETING && o.xclient) {
			if (load_sendf(s, "EHLO %s\r\n", o.helo))
				s->state = LOAD_EHLO1;
		} else if (load_sendf(s, "EHLO %s\r\n", o.helo)) {
			s->state = LOAD_EHLO2;
		}
		return;
	case LOAD_EHLO1: {
		if (code != 250)
			break;
		uint32_t a = o.xclient_base + (uint32_t)(s->index % o.xclient_count);
		if (load_sendf(s, "XCLIENT ADDR=%u.%u.%u.%u\r\n", a >> 24, (a >> 16) & 255,
			       (a >> 8) & 255, a & 255))
			s->state = LOAD_XCLIENT;
		return;
	}
	case LOAD_EHLO2:
		if (code != 250)
			break;
		if (load_sendf(s, "MAIL FROM:<%s>\r\n", o.mail))
			s->state = LOAD_MAIL;
		return;
	case LOAD_MAIL:
		if (code != 250)
			break;
		if (load_sendf(s, "RCPT TO:<%s>\r\n", o.rcpt)) {
			s->state = LOAD_RCPT;
			s->t_rcpt = load_now();
			if (++waiting_rcpt > peak_waiting_rcpt)
				peak_waiting_rcpt = waiting_rcpt;
		}
		return;
	case LOAD_RCPT:
		waiting_rcpt--;
		last_rcpt = load_now();
		load_sample(&lat_rcpt, (last_rcpt - s->t_rcpt) * 1000.0);
		rcpt_codes[code]++;
		s->state = LOAD_QUIT; /* keeps load_failed() from counting waiting_rcpt twice */
		if (o.data && code / 100 == 2) {
			if (load_send(s, "DATA\r\n", 6))
				s->state = LOAD_DATA;
		} else if (load_send(s, "QUIT\r\n", 6)) {
			s->state = LOAD_QUIT;
		}
		return;
	case LOAD_DATA:
		if (code != 354)
			break;
		if (load_send(s, load_message, sizeof(load_message) - 1))
			s->state = LOAD_DOT;
		return;
	case LOAD_DOT:
		if (code != 250)
			break;
		if (load_send(s, "QUIT\r\n", 6))
			s->state = LOAD_QUIT;
		return;
	case LOAD_QUIT:
		if (code != 221)
			break;
		s->state = LOAD_EOF;
		return;
	case LOAD_CONNECTING:
	case LOAD_EOF:
	case LOAD_STATE_MAX:
		break;
	}
	load_failed(s, "unexpected reply", code);
}

static void load_readable(struct load_slot *s)
{
	for (;;) {
		if (s->have == sizeof(s->buf)) {
			load_failed(s, "reply too long", 0);
			return;
		}
		ssize_t n = recv(s->fd, s->buf + s->have, sizeof(s->buf) - s->have, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			if (s->state == LOAD_EOF && errno == ECONNRESET)
				load_done(s); /* the 221 was read: the session is over */
			else
				load_failed(s, strerror(errno), 0);
			return;
		}
		if (n == 0) {
			if (s->state == LOAD_EOF)
				load_done(s);
			else
				load_failed(s, "closed by the server", 0);
			return;
		}
		s->have += (size_t)n;
		for (;;) {
			size_t used = 0;
			int code = load_reply(s, &used);
			if (code == 0)
				break;
			if (code < 0 || s->state == LOAD_EOF) {
				load_failed(s, code < 0 ? "malformed reply" : "reply after 221", 0);
				return;
			}
			memmove(s->buf, s->buf + used, s->have - used);
			s->have -= used;
			load_step(s, code);
			if (s->fd < 0)
				return;
		}
	}
}

static void load_event(unsigned i, uint32_t events)
{
	struct load_slot *s = &slots[i];
	if (s->fd < 0)
		return;
	if (s->state == LOAD_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			load_failed(s, strerror(err), 0);
			return;
		}
		if (!(events & (EPOLLOUT | EPOLLIN)))
			return;
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
		epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
		s->state = LOAD_GREETING;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		load_readable(s);
}

static int load_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void load_print_pct(const char *name, struct load_samples *s, bool comma)
{
	printf("\"%s\": {\"n\": %zu", name, s->n);
	if (s->n) {
		qsort(s->v, s->n, sizeof(double), load_cmp_double);
		const double q[] = { 0.5, 0.9, 0.99, 0.999 };
		const char *qn[] = { "p50", "p90", "p99", "p999" };
		for (unsigned k = 0; k < 4; k++)
			printf(", \"%s\": %.3f", qn[k], s->v[(size_t)(q[k] * (double)(s->n - 1))]);
		printf(", \"max\": %.3f", s->v[s->n - 1]);
	}
	printf("}%s", comma ? ", " : "");
}

static void load_usage(void)
{
	fprintf(stderr,
		"usage: smtp_load --host A.B.C.D --port N [--concurrency N] [--sessions N]\n"
		"       [--duration S] [--rate N] [--xclient-base A.B.C.D [--xclient-count N]]\n"
		"       [--mail ADDR] [--rcpt ADDR] [--helo NAME] [--data] [--timeout S]\n"
		"       [--progress-ms N]\n");
	exit(2);
}

static void load_parse(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'p' },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "sessions", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'd' },
		{ "rate", required_argument, NULL, 'r' },
		{ "xclient-base", required_argument, NULL, 'x' },
		{ "xclient-count", required_argument, NULL, 'n' },
		{ "mail", required_argument, NULL, 'm' },
		{ "rcpt", required_argument, NULL, 't' },
		{ "helo", required_argument, NULL, 'e' },
		{ "data", no_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "progress-ms", required_argument, NULL, 'P' },
		{ 0, 0, 0, 0 },
	};
	o.server.sin_family = AF_INET;
	o.concurrency = 100;
	o.xclient_count = 1u << 24;
	o.mail = "load@client.test";
	o.rcpt = "sink@localhost";
	o.helo = "load.client.test";
	o.timeout = 120;
	bool have_host = false, have_port = false;
	int c;
	struct in_addr a;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			if (inet_pton(AF_INET, optarg, &o.server.sin_addr) != 1)
				load_usage();
			have_host = true;
			break;
		case 'p':
			o.server.sin_port = htons((uint16_t)atoi(optarg));
			have_port = true;
			break;
		case 'c':
			o.concurrency = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 's':
			o.sessions = strtoull(optarg, NULL, 10);
			break;
		case 'd':
			o.duration = atof(optarg);
			break;
		case 'r':
			o.rate = atof(optarg);
			break;
		case 'x':
			if (inet_pton(AF_INET, optarg, &a) != 1)
				load_usage();
			o.xclient = true;
			o.xclient_base = ntohl(a.s_addr);
			break;
		case 'n':
			o.xclient_count = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'm':
			o.mail = optarg;
			break;
		case 't':
			o.rcpt = optarg;
			break;
		case 'e':
			o.helo = optarg;
			break;
		case 'D':
			o.data = true;
			break;
		case 'T':
			o.timeout = atof(optarg);
			break;
		case 'P':
			o.progress_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			load_usage();
		}
	}
	if (!have_host || !have_port || o.concurrency == 0 || o.xclient_count == 0 ||
	    (o.sessions == 0 && o.duration <= 0) || optind != argc)
		load_usage();
}

int main(int argc, char **argv)
{
	load_parse(argc, argv);
	/* room for every session's socket */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	slots = calloc(o.concurrency, sizeof(*slots));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!slots || ep < 0) {
		perror("smtp_load");
		return 2;
	}
	for (unsigned i = 0; i < o.concurrency; i++)
		slots[i].fd = -1;
	struct sigaction sa = { .sa_handler = load_on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	t0 = load_now();
	window_end = o.duration > 0 ? t0 + o.duration : 1e300;
	double next_scan = t0 + 0.1, next_progress = t0 + o.progress_ms / 1000.0;
	unsigned next_free = 0;
	struct epoll_event evs[LOAD_EVENTS];
	for (;;) {
		double now = load_now();
		if (load_stop) {
			for (unsigned i = 0; i < o.concurrency; i++) {
				if (slots[i].fd >= 0) {
					load_close(&slots[i]);
					cut++;
				}
			}
			break;
		}
		bool may_start = (o.sessions == 0 || started < o.sessions) && now < window_end;
		/* start sessions into free slots, within the rate */
		for (unsigned k = 0; may_start && k < o.concurrency && open_now < o.concurrency;
		     k++) {
			if (o.rate > 0 && (double)started >= (now - t0) * o.rate + 1)
				break;
			if (o.sessions && started >= o.sessions)
				break;
			unsigned i = next_free;
			next_free = (next_free + 1) % o.concurrency;
			if (slots[i].fd < 0)
				load_start(i);
		}
		if (!may_start && open_now == 0)
			break;
		int n = epoll_wait(ep, evs, LOAD_EVENTS, 10);
		for (int k = 0; k < n; k++)
			load_event(evs[k].data.u32, evs[k].events);
		now = load_now();
		if (now >= next_scan) {
			next_scan = now + 0.1;
			for (unsigned i = 0; i < o.concurrency; i++)
				if (slots[i].fd >= 0 && now > slots[i].deadline)
					load_failed(&slots[i], "timed out", 0);
		}
		if (o.progress_ms && now >= next_progress) {
			next_progress = now + o.progress_ms / 1000.0;
			fprintf(stderr,
				"{\"t\": %.3f, \"started\": %" PRIu64 ", \"completed\": %" PRIu64
				", \"failed\": %" PRIu64 ", \"open\": %u, \"waiting_rcpt\": %u}\n",
				now - t0, started, completed, failed, open_now, waiting_rcpt);
		}
	}
	double elapsed = load_now() - t0;
	struct rusage ru;
	double cpu_s = 0;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	double window = o.duration > 0 && o.duration < elapsed ? o.duration : elapsed;
	printf("{\"started\": %" PRIu64 ", \"completed\": %" PRIu64 ", \"failed\": %" PRIu64
	       ", \"cut\": %" PRIu64 ", \"elapsed_s\": %.3f, \"sessions_per_s\": %.1f, \"window_s\": %.3f"
	       ", \"completed_in_window\": %" PRIu64 ", \"window_sessions_per_s\": %.1f"
	       ", \"peak_open\": %u, \"peak_waiting_rcpt\": %u, \"cpu_s\": %.3f"
	       ", \"t0_monotonic\": %.6f, \"last_rcpt_s\": %.6f, \"rcpt_codes\": {",
	       started, completed, failed, cut, elapsed, elapsed > 0 ? (double)completed / elapsed : 0,
	       window, completed_in_window,
	       window > 0 ? (double)completed_in_window / window : 0, peak_open,
	       peak_waiting_rcpt, cpu_s, t0, last_rcpt > 0 ? last_rcpt - t0 : 0.0);
	bool first = true;
	for (int c = 0; c < 1000; c++) {
		if (rcpt_codes[c]) {
			printf("%s\"%d\": %" PRIu64, first ? "" : ", ", c, rcpt_codes[c]);
			first = false;
		}
	}
	printf("}, \"failures\": {");
	first = true;
	for (unsigned i = 0; i < LOAD_FAIL_KINDS && fails[i].n; i++) {
		printf("%s\"%s\": %" PRIu64, first ? "" : ", ", fails[i].key, fails[i].n);
		first = false;
	}
	if (fails_other)
		printf("%s\"other\": %" PRIu64, first ? "" : ", ", fails_other);
	printf("}, ");
	load_print_pct("session_ms", &lat_session, true);
	load_print_pct("rcpt_ms", &lat_rcpt, false);
	printf("}\n");
	return failed ? 1 : 0;
}
