/* The control socket (mgmt/control.h): round trips through control_request(), the
 * protocol's bounds, a client that stalls (reading or writing) delaying the next one by
 * no more than the timeout, stale and live socket files, the peer check. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/control.h"
#include "testing.h"

static char dir[] = "/tmp/test_control.XXXXXX";
static char sock_path[256];

struct counter {
	pthread_mutex_t lock;
	int calls;
};

static int cmd_echo(void *ctx, int argc, char **argv, struct control_out *out)
{
	struct counter *c = ctx;
	pthread_mutex_lock(&c->lock);
	c->calls++;
	pthread_mutex_unlock(&c->lock);
	for (int i = 1; i < argc; i++)
		control_printf(out, "%d:%s\n", i, argv[i]);
	return 0;
}

/* exit status from the first argument, output without a final newline */
static int cmd_exit(void *ctx, int argc, char **argv, struct control_out *out)
{
	(void)ctx;
	if (argc != 2)
		return 2;
	control_printf(out, "no newline");
	return atoi(argv[1]) == 1 ? 1 : 0;
}

/* N bytes of output: larger than any socket buffer when N is large */
static int cmd_big(void *ctx, int argc, char **argv, struct control_out *out)
{
	(void)ctx;
	if (argc != 2)
		return 2;
	long n = atol(argv[1]);
	char line[100];
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\n';
	for (long i = 0; i < n / (long)sizeof(line); i++)
		control_write(out, line, sizeof(line));
	/* a long formatted line goes through the slow path of control_printf */
	control_printf(out, "%0700d\n", 7);
	static const char nul[] = "a\0b\n";
	control_write(out, nul, 4);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run a request; the output in *buf (malloc'd) and the status returned. */
static int request(const char *path, int argc, char **argv, char **buf, size_t *len)
{
	char *p = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&p, &n);
	char err[256] = "";
	int rc = control_request(path, argc, argv, f, err, sizeof(err));
	fclose(f);
	if (rc < 0)
		fprintf(stderr, "  control_request: %d %s\n", rc, err);
	*buf = p;
	if (len)
		*len = n;
	return rc;
}

static int raw_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strnlen(path, sizeof(sa.sun_path) - 1));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Everything the server sends until it closes. */
static char *raw_read_all(int fd)
{
	char *p = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&p, &n);
	char buf[4096];
	ssize_t k;
	while ((k = read(fd, buf, sizeof(buf))) > 0)
		fwrite(buf, 1, (size_t)k, f);
	fclose(f);
	return p;
}

static struct counter counter = { .lock = PTHREAD_MUTEX_INITIALIZER };

static struct control_server *server(unsigned timeout_ms)
{
	struct control_server *s = NULL;
	char err[256] = "";
	int rc = control_server_create(&s, sock_path, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "control_server_create: %s\n", err);
		return NULL;
	}
	CHECK_INT_EQ(control_register(s, "echo", "[WORD...]", cmd_echo, &counter), 0);
	CHECK_INT_EQ(control_register(s, "exit", "0|1", cmd_exit, NULL), 0);
	CHECK_INT_EQ(control_register(s, "big", "BYTES", cmd_big, NULL), 0);
	CHECK_INT_EQ(control_register(s, "echo", "", cmd_echo, NULL), -EEXIST);
	CHECK_INT_EQ(control_register(s, "two words", "", cmd_echo, NULL), -EINVAL);
	CHECK_INT_EQ(control_register(s, "", "", cmd_echo, NULL), -EINVAL);
	CHECK_INT_EQ(control_register(s, "help", "", cmd_echo, NULL), -EINVAL);
	if (timeout_ms)
		control_server_set_timeout(s, timeout_ms);
	CHECK_INT_EQ(control_server_start(s), 0);
	return s;
}

static void test_round_trip(void)
{
	struct control_server *s = server(0);
	CHECK(s);
	if (!s)
		return;
	struct stat st;
	CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_INT_EQ(st.st_mode & 07777, 0600);

	char *out;
	char *av[] = { "echo", "a", "b@c.example", "4ZhQ5N0Bc9z01", NULL };
	CHECK_INT_EQ(request(sock_path, 4, av, &out, NULL), 0);
	CHECK_STR_EQ(out, "1:a\n2:b@c.example\n3:4ZhQ5N0Bc9z01\n");
	free(out);

	/* a status other than 0, and output without its final newline */
	char *ex1[] = { "exit", "1" };
	CHECK_INT_EQ(request(sock_path, 2, ex1, &out, NULL), 1);
	CHECK_STR_EQ(out, "no newline\n");
	free(out);
	char *ex2[] = { "exit" };
	CHECK_INT_EQ(request(sock_path, 1, ex2, &out, NULL), 2);
	free(out);

	/* unknown command */
	char *un[] = { "frobnicate", "x" };
	CHECK_INT_EQ(request(sock_path, 2, un, &out, NULL), 2);
	CHECK(strstr(out, "unknown command: frobnicate") != NULL);
	free(out);

	/* help lists what is registered */
	char *help[] = { "help" };
	CHECK_INT_EQ(request(sock_path, 1, help, &out, NULL), 0);
	CHECK_STR_EQ(out, "echo [WORD...]\nexit 0|1\nbig BYTES\n");
	free(out);

	/* output far larger than the socket buffers, NUL bytes kept */
	char *big[] = { "big", "3000000" };
	size_t len = 0;
	CHECK_INT_EQ(request(sock_path, 2, big, &out, &len), 0);
	CHECK_INT_EQ(len, 3000000 / 100 * 100 + 701 + 4);
	if (len >= 4)
		CHECK(memcmp(out + len - 4, "a\0b\n", 4) == 0);
	free(out);

	/* the client refuses what the protocol cannot carry */
	char err[128];
	char *bad1[] = { "echo", "a b" };
	CHECK_INT_EQ(control_request(sock_path, 2, bad1, stdout, err, sizeof(err)), -EINVAL);
	char *bad2[] = { "echo", "" };
	CHECK_INT_EQ(control_request(sock_path, 2, bad2, stdout, err, sizeof(err)), -EINVAL);
	char *bad3[] = { "echo", "a\nb" };
	CHECK_INT_EQ(control_request(sock_path, 2, bad3, stdout, err, sizeof(err)), -EINVAL);

	control_server_free(s);
	/* the socket file goes with the server; then nobody answers */
	CHECK(stat(sock_path, &st) != 0 && errno == ENOENT);
	CHECK_INT_EQ(control_request(sock_path, 1, av, stdout, err, sizeof(err)), -ENOENT);
}

static void test_bounds(void)
{
	struct control_server *s = server(0);
	CHECK(s);
	if (!s)
		return;
	char *out;

	/* the longest request allowed: CONTROL_REQUEST_MAX bytes with the LF */
	size_t word = CONTROL_REQUEST_MAX - strlen("echo ") - 1;
	char *w = malloc(word + 1);
	memset(w, 'w', word);
	w[word] = '\0';
	char *ok[] = { "echo", w };
	size_t len;
	CHECK_INT_EQ(request(sock_path, 2, ok, &out, &len), 0);
	CHECK_INT_EQ(len, word + 3);
	free(out);
	free(w);

	/* one byte more is refused with status 2 */
	w = malloc(word + 2);
	memset(w, 'w', word + 1);
	w[word + 1] = '\0';
	char *toolong[] = { "echo", w };
	CHECK_INT_EQ(request(sock_path, 2, toolong, &out, NULL), 2);
	CHECK(strstr(out, "request too long") != NULL);
	free(out);
	free(w);

	/* far longer (the client's write fails midway): still status 2, not a hang */
	size_t huge = 4u << 20;
	w = malloc(huge + 1);
	memset(w, 'h', huge);
	w[huge] = '\0';
	char *hugev[] = { "echo", w };
	CHECK_INT_EQ(request(sock_path, 2, hugev, &out, NULL), 2);
	free(out);
	free(w);

	/* at most CONTROL_MAX_ARGS words */
	char **av = calloc(CONTROL_MAX_ARGS + 2, sizeof(*av));
	av[0] = "echo";
	for (int i = 1; i <= CONTROL_MAX_ARGS; i++)
		av[i] = "x";
	CHECK_INT_EQ(request(sock_path, CONTROL_MAX_ARGS, av, &out, NULL), 0);
	free(out);
	CHECK_INT_EQ(request(sock_path, CONTROL_MAX_ARGS + 1, av, &out, NULL), 2);
	CHECK(strstr(out, "too many words") != NULL);
	free(out);
	free(av);

	/* malformed requests written raw: double space, CR, an empty line, a tab */
	static const char *const raw[] = { "echo  a\n", "echo a\r\n", "\n", "echo\ta\n" };
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		int fd = raw_connect(sock_path);
		CHECK(fd >= 0);
		if (fd < 0)
			continue;
		CHECK(write(fd, raw[i], strlen(raw[i])) == (ssize_t)strlen(raw[i]));
		char *r = raw_read_all(fd);
		close(fd);
		size_t rl = strlen(r);
		CHECK(rl >= 9 && strcmp(r + rl - 9, "status 2\n") == 0);
		CHECK(strncmp(r, "bad request: ", 13) == 0);
		free(r);
	}
	/* bytes after the LF are ignored: one request per connection */
	int fd = raw_connect(sock_path);
	CHECK(write(fd, "echo a\necho b\n", 14) == 14);
	char *r = raw_read_all(fd);
	close(fd);
	CHECK_STR_EQ(r, "1:a\nstatus 0\n");
	free(r);

	control_server_free(s);
}

static void test_parse(void)
{
	char *argv[4];
	const char *why = NULL;
	char a[] = "queue-hold ALL";
	CHECK_INT_EQ(control_request_parse(a, strlen(a), argv, 3, &why), 2);
	CHECK_STR_EQ(argv[0], "queue-hold");
	CHECK_STR_EQ(argv[1], "ALL");
	CHECK(argv[2] == NULL);
	char b[] = "a b c d";
	CHECK_INT_EQ(control_request_parse(b, strlen(b), argv, 3, &why), -E2BIG);
	char c[] = "a ";
	CHECK_INT_EQ(control_request_parse(c, strlen(c), argv, 3, &why), -EINVAL);
	char d[] = " a";
	CHECK_INT_EQ(control_request_parse(d, strlen(d), argv, 3, &why), -EINVAL);
	char e[] = "a\x7f";
	CHECK_INT_EQ(control_request_parse(e, strlen(e), argv, 3, &why), -EINVAL);
	/* UTF-8 is allowed in a word (an address) */
	char f[] = "echo \xc3\xa9t\xc3\xa9@example.com";
	CHECK_INT_EQ(control_request_parse(f, strlen(f), argv, 3, &why), 2);
	CHECK_STR_EQ(argv[1], "\xc3\xa9t\xc3\xa9@example.com");
	/* a NUL inside the line is not a word byte */
	char g[] = "a\0b";
	CHECK_INT_EQ(control_request_parse(g, 3, argv, 3, &why), -EINVAL);
	char h[1] = "";
	CHECK_INT_EQ(control_request_parse(h, 0, argv, 3, &why), -EINVAL);
}

static void test_sequential(void)
{
	struct control_server *s = server(0);
	CHECK(s);
	if (!s)
		return;
	pthread_mutex_lock(&counter.lock);
	counter.calls = 0;
	pthread_mutex_unlock(&counter.lock);
	int bad = 0;
	for (int i = 0; i < 500; i++) {
		char num[16];
		snprintf(num, sizeof(num), "%d", i);
		char *av[] = { "echo", num };
		char *out;
		int rc = request(sock_path, 2, av, &out, NULL);
		char want[32];
		snprintf(want, sizeof(want), "1:%d\n", i);
		if (rc != 0 || strcmp(out, want) != 0)
			bad++;
		free(out);
	}
	CHECK_INT_EQ(bad, 0);
	pthread_mutex_lock(&counter.lock);
	CHECK_INT_EQ(counter.calls, 500);
	pthread_mutex_unlock(&counter.lock);
	control_server_free(s);
}

/* A client that connects and says nothing, or asks for a lot and never reads, holds the
 * server for about the timeout and no longer. */
static void test_stalled_clients(void)
{
	const unsigned timeout_ms = 400;
	struct control_server *s = server(timeout_ms);
	CHECK(s);
	if (!s)
		return;
	char *av[] = { "echo", "next" };
	char *out;

	int silent = raw_connect(sock_path);
	CHECK(silent >= 0);
	usleep(50000); /* let the server pick it up first */
	double t0 = now_s();
	CHECK_INT_EQ(request(sock_path, 2, av, &out, NULL), 0);
	double waited = now_s() - t0;
	CHECK_STR_EQ(out, "1:next\n");
	free(out);
	CHECK(waited >= timeout_ms / 1000.0 * 0.5);
	CHECK(waited < timeout_ms / 1000.0 + 1.0);
	/* the silent one was closed without a reply */
	char *r = raw_read_all(silent);
	CHECK_STR_EQ(r, "");
	free(r);
	close(silent);

	/* a trickling client cannot stretch the request deadline */
	int trickle = raw_connect(sock_path);
	t0 = now_s();
	ssize_t wr = 0;
	for (int i = 0; i < 20 && wr >= 0; i++) {
		wr = send(trickle, "e", 1, MSG_NOSIGNAL);
		usleep(50000);
	}
	r = raw_read_all(trickle);
	CHECK(now_s() - t0 < timeout_ms / 1000.0 + 1.0);
	CHECK_STR_EQ(r, "");
	free(r);
	close(trickle);

	/* asks for 8 MB and never reads */
	int greedy = raw_connect(sock_path);
	CHECK(write(greedy, "big 8000000\n", 12) == 12);
	usleep(50000);
	t0 = now_s();
	CHECK_INT_EQ(request(sock_path, 2, av, &out, NULL), 0);
	waited = now_s() - t0;
	CHECK_STR_EQ(out, "1:next\n");
	free(out);
	CHECK(waited < timeout_ms / 1000.0 + 1.5);
	close(greedy);

	/* the server stops promptly even with a silent client connected */
	silent = raw_connect(sock_path);
	usleep(50000);
	t0 = now_s();
	control_server_free(s);
	CHECK(now_s() - t0 < 0.3);
	close(silent);
}

static void test_stale_and_live(void)
{
	char err[256];
	struct stat st;
	/* a socket file nobody listens on (a gateway killed with -9) is replaced */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, sock_path, strnlen(sock_path, sizeof(sa.sun_path) - 1));
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(fd);
	CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode));
	char *av[] = { "echo", "x" };
	CHECK_INT_EQ(control_request(sock_path, 2, av, stdout, err, sizeof(err)),
		     -ECONNREFUSED);
	struct control_server *s = server(0);
	CHECK(s);
	if (!s)
		return;
	char *out;
	CHECK_INT_EQ(request(sock_path, 2, av, &out, NULL), 0);
	free(out);

	/* a live one is not: the second server is refused and the first keeps working */
	struct control_server *s2 = NULL;
	CHECK_INT_EQ(control_server_create(&s2, sock_path, err, sizeof(err)), -EADDRINUSE);
	CHECK(s2 == NULL);
	CHECK(strstr(err, "another process answers") != NULL);
	CHECK_INT_EQ(request(sock_path, 2, av, &out, NULL), 0);
	CHECK_STR_EQ(out, "1:x\n");
	free(out);
	control_server_free(s);

	/* a file that is not a socket is never removed */
	FILE *f = fopen(sock_path, "w");
	fclose(f);
	CHECK_INT_EQ(control_server_create(&s2, sock_path, err, sizeof(err)), -EEXIST);
	CHECK(stat(sock_path, &st) == 0 && S_ISREG(st.st_mode));
	unlink(sock_path);

	/* a path too long for sun_path */
	char longp[200];
	memset(longp, 'p', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	CHECK_INT_EQ(control_server_create(&s2, longp, err, sizeof(err)), -ENAMETOOLONG);

	/* a server whose socket file was replaced leaves the new one alone */
	s = server(0);
	CHECK(s);
	if (!s)
		return;
	CHECK(unlink(sock_path) == 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	control_server_free(s);
	CHECK(stat(sock_path, &st) == 0);
	close(fd);
	unlink(sock_path);
}

/* SO_PEERCRED: another user is refused even when the socket's mode lets it in. */
static void test_peer_check(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "  skip test_peer_check: needs root\n");
		return;
	}
	struct control_server *s = server(0);
	CHECK(s);
	if (!s)
		return;
	CHECK(chmod(dir, 0755) == 0);
	CHECK(chmod(sock_path, 0666) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		char *av[] = { "echo", "x" };
		char *out;
		int rc = request(sock_path, 2, av, &out, NULL);
		int ok = rc == 2 && strstr(out, "permission denied") && !strstr(out, "1:x");
		_exit(ok ? 0 : 11);
	}
	int wst = 0;
	CHECK(waitpid(pid, &wst, 0) == pid);
	CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
	CHECK(chmod(dir, 0700) == 0);
	control_server_free(s);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(sock_path, sizeof(sock_path), "%s/control", dir);
	RUN_TEST(test_parse);
	RUN_TEST(test_round_trip);
	RUN_TEST(test_bounds);
	RUN_TEST(test_sequential);
	RUN_TEST(test_stalled_clients);
	RUN_TEST(test_stale_and_live);
	RUN_TEST(test_peer_check);
	unlink(sock_path);
	rmdir(dir);
	return TEST_RESULT();
}
