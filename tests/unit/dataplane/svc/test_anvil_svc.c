/* The anvil sync thread's work (dataplane/svc/svc_anvil.c), one round at a time
 * (svc_anvil_sync()), against a real memcached started here on a free port of 127.0.0.1
 * and against fake servers:
 *   - two tables (two gateways) on one memcached: each one's events reach memcached as
 *     the counter anvil:smtp:ADDR:KIND:UNIT:WINDOW under key_format, and each table's
 *     rate becomes the cluster's total plus what it counted since;
 *   - memcached killed: the sync fails, one warning ("...; anvil rates are counted on this
 *     node only"), none again while it stays down, no connection tried before
 *     retry_pause, the local counts go on; the statistics say down;
 *   - memcached back: the info line once, the events counted meanwhile reach it;
 *   - a server answering SERVER_ERROR: the events stay pending, a warning saying what it
 *     said; a server that never answers: the sync gives up after the file's timeout;
 *   - files refused: not memcache:, a domain list, a backup, a missing file.
 * memcached must be installed (deploy/install-deps.sh): without it this test fails and
 * says which package to install. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/svc/svc_anvil.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "memcached_harness.h"
#include "testing.h"

#define UNIT 3600

static char dir[64];
static char log_path[128];
static int port;
static pid_t mc_pid = -1;

/* ---- memcached ---- */

static bool memcached_start(void)
{
	mc_pid = mch_start(port, dir);
	return mc_pid > 0;
}

static void memcached_stop(void)
{
	mch_stop(&mc_pid);
}

/* memcached's counter for key as a number; -1 when absent. */
static long memcached_counter(const char *key)
{
	int fd = mch_connect(port);
	if (fd < 0)
		return -1;
	char cmd[300];
	int n = snprintf(cmd, sizeof(cmd), "get %s\r\n", key);
	if (write(fd, cmd, (size_t)n) != n) {
		close(fd);
		return -1;
	}
	char buf[1024];
	size_t got = 0;
	while (got < sizeof(buf) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) <= 0)
			break;
		ssize_t k = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (k <= 0)
			break;
		got += (size_t)k;
		buf[got] = '\0';
		if (got >= 5 && strcmp(buf + got - 5, "END\r\n") == 0)
			break;
	}
	close(fd);
	buf[got] = '\0';
	long v = -1;
	if (sscanf(buf, "VALUE %*s %*u %*u\r\n%ld", &v) != 1)
		return -1;
	return v;
}

/* ---- helpers ---- */

static unsigned count_in_log(const char *needle)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return 0;
	char *log = calloc(1, 1 << 20);
	size_t len = fread(log, 1, (1 << 20) - 1, f);
	log[len] = '\0';
	fclose(f);
	unsigned n = 0;
	for (const char *p = log; (p = strstr(p, needle)); p++)
		n++;
	free(log);
	return n;
}

static void write_file(const char *name, const char *text)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static void write_conf(const char *name, int p, const char *extra)
{
	char text[512];
	snprintf(text, sizeof(text), "memcache = inet:127.0.0.1:%d\nkey_format = test:%%s\n"
		 "timeout = 1\nretry_pause = 1\n%s", p, extra);
	write_file(name, text);
}

struct node {
	struct anvil *table;
	struct svc_anvil *sync;
	int service;
};

static int node_open(struct node *n, const char *conf, unsigned mask, char *err, size_t len)
{
	memset(n, 0, sizeof(*n));
	CHECK_INT_EQ(anvil_new(1024, (uint64_t)(uintptr_t)n, &n->table), 0);
	/* two services: the name's host part is not in the key */
	anvil_service(n->table, "submission");
	n->service = anvil_service(n->table, "192.0.2.10:smtp");
	char spec[200];
	snprintf(spec, sizeof(spec), "memcache:%s/%s", dir, conf);
	struct svc_anvil_params p = { .spec = spec, .name = "anvil_test", .read_mask = mask };
	return svc_anvil_new(&n->sync, n->table, &p, err, len);
}

static void node_close(struct node *n)
{
	svc_anvil_free(n->sync);
	anvil_free(n->table);
}

static uint64_t now_s(void)
{
	return mx_clock_monotonic_ms() / 1000u;
}

static struct anvil_key client(const struct node *n, const char *addr)
{
	struct mx_inet_addr a;
	struct anvil_key k;
	CHECK(mx_inet_parse(addr, &a));
	anvil_key_make(&k, &a, 32, 84, (unsigned)n->service);
	return k;
}

/* A connection of k that ends at once: the rate it was held against. */
static uint32_t conn(struct node *n, const struct anvil_key *k)
{
	uint32_t count = 0, rate = 0;
	CHECK_INT_EQ(anvil_connect(n->table, k, now_s(), UNIT, &count, &rate, NULL), 0);
	CHECK_INT_EQ(anvil_disconnect(n->table, k, now_s(), UNIT), 0);
	return rate;
}

static void key_of(char *out, size_t cap, const char *addr, const char *kind)
{
	snprintf(out, cap, "test:anvil:smtp:%s:%s:%u:%llu", addr, kind, UNIT,
		 (unsigned long long)(mx_clock_wall_us() / 1000000u / UNIT));
}

/* ---- tests ---- */

static void test_two_nodes(void)
{
	struct node a, b;
	char err[512] = "";
	CHECK_INT_EQ(node_open(&a, "shared.cf", 0, err, sizeof(err)), 0);
	CHECK_INT_EQ(node_open(&b, "shared.cf", 0, err, sizeof(err)), 0);
	if (!a.sync || !b.sync) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	/* nothing to send yet: a round that reaches nothing is still a round */
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0);
	struct anvil_key ka = client(&a, "192.0.2.1"), kb = client(&b, "192.0.2.1");
	char key[200];
	key_of(key, sizeof(key), "192.0.2.1", "connect");
	CHECK_INT_EQ(conn(&a, &ka), 1);
	CHECK_INT_EQ(conn(&a, &ka), 2);
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0);
	CHECK_INT_EQ(memcached_counter(key), 2);
	CHECK_INT_EQ(conn(&b, &kb), 1); /* B did not read yet: its own count */
	CHECK_INT_EQ(svc_anvil_sync(b.sync), 0);
	CHECK_INT_EQ(memcached_counter(key), 3);
	CHECK_INT_EQ(conn(&b, &kb), 4); /* 3 in the cluster + this one */
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0); /* A reads back 3 (B's 4th still pending) */
	CHECK_INT_EQ(conn(&a, &ka), 4);
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0);
	CHECK_INT_EQ(svc_anvil_sync(b.sync), 0);
	CHECK_INT_EQ(memcached_counter(key), 5);
	/* a message event of a connected client */
	uint32_t count, rate;
	CHECK_INT_EQ(anvil_connect(a.table, &ka, now_s(), UNIT, &count, &rate, NULL), 0);
	CHECK_INT_EQ(anvil_event(a.table, &ka, ANVIL_RATE_MESSAGE, now_s(), UNIT, &rate), 0);
	CHECK_INT_EQ(rate, 1);
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0);
	key_of(key, sizeof(key), "192.0.2.1", "message");
	CHECK_INT_EQ(memcached_counter(key), 1);
	CHECK_INT_EQ(anvil_disconnect(a.table, &ka, now_s(), UNIT), 0);
	struct svc_anvil_stats st;
	svc_anvil_stats(a.sync, &st);
	CHECK(st.syncs >= 5);
	CHECK(st.counters >= 4);
	CHECK_INT_EQ(st.events, 5); /* 4 connections, 1 message */
	CHECK_INT_EQ(st.failed, 0);
	CHECK(!st.down);
	svc_anvil_log_statistics(a.sync, "test");
	CHECK_INT_EQ(count_in_log("anvil share statistics (test): map=memcache:"), 1);
	node_close(&a);
	node_close(&b);
}

static void test_down_and_back(void)
{
	struct node a;
	char err[512] = "";
	CHECK_INT_EQ(node_open(&a, "shared.cf", 0, err, sizeof(err)), 0);
	if (!a.sync)
		return;
	struct anvil_key k = client(&a, "192.0.2.2");
	char key[200];
	key_of(key, sizeof(key), "192.0.2.2", "connect");
	CHECK_INT_EQ(conn(&a, &k), 1);
	CHECK_INT_EQ(svc_anvil_sync(a.sync), 0);
	CHECK_INT_EQ(memcached_counter(key), 1);
	memcached_stop();
	CHECK_INT_EQ(conn(&a, &k), 2);
	int rc = svc_anvil_sync(a.sync);
	CHECK(rc < 0 && rc != -EAGAIN);
	CHECK_INT_EQ(count_in_log("anvil rates are counted on this node only"), 1);
	CHECK_INT_EQ(count_in_log("anvil_test: memcache:"), 1);
	struct svc_anvil_stats st;
	svc_anvil_stats(a.sync, &st);
	CHECK(st.down);
	CHECK_INT_EQ(st.outages, 1);
	CHECK(st.failed >= 1);
	/* within retry_pause: nothing tried, nothing logged; the local count goes on */
	CHECK_INT_EQ(svc_anvil_sync(a.sync), -EAGAIN);
	CHECK_INT_EQ(conn(&a, &k), 3);
	CHECK_INT_EQ(count_in_log("anvil rates are counted on this node only"), 1);
	CHECK(memcached_start());
	/* after retry_pause (1 s) the next sync reaches it: wait for that, bounded */
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while ((rc = svc_anvil_sync(a.sync)) != 0 && mx_clock_monotonic_ms() < end)
		usleep(50000);
	CHECK_INT_EQ(rc, 0);
	CHECK_INT_EQ(count_in_log("is back; anvil rates are shared with the other nodes again"), 1);
	/* memcached restarted empty: the two counted while it was away went to it */
	CHECK_INT_EQ(memcached_counter(key), 2);
	svc_anvil_stats(a.sync, &st);
	CHECK(!st.down);
	CHECK_INT_EQ(st.outages, 1);
	node_close(&a);
}

/* A fake memcached: answers every command line with `reply`, or never when NULL. */
struct fake {
	int lfd;
	int port;
	const char *reply;
	pthread_t thread;
	volatile bool stop;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	while (!f->stop) {
		struct pollfd p = { .fd = f->lfd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(f->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		char buf[4096], line[512];
		size_t ll = 0;
		while (!f->stop) {
			struct pollfd q = { .fd = fd, .events = POLLIN };
			if (poll(&q, 1, 50) <= 0)
				continue;
			ssize_t k = read(fd, buf, sizeof(buf));
			if (k <= 0)
				break;
			/* one reply per command line ("add ..." and "incr ..."; an add's data
			 * line "0" is not one) */
			for (ssize_t i = 0; i < k; i++) {
				if (buf[i] != '\n') {
					if (ll < sizeof(line) - 1)
						line[ll++] = buf[i];
					continue;
				}
				line[ll] = '\0';
				ll = 0;
				if (f->reply && (!strncmp(line, "add ", 4) || !strncmp(line, "incr ", 5)) &&
				    write(fd, f->reply, strlen(f->reply)) < 0)
					break;
			}
		}
		close(fd);
	}
	return NULL;
}

static void fake_start(struct fake *f, const char *reply)
{
	memset(f, 0, sizeof(*f));
	f->reply = reply;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	CHECK_INT_EQ(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	CHECK_INT_EQ(listen(f->lfd, 16), 0);
	CHECK_INT_EQ(getsockname(f->lfd, (struct sockaddr *)&sin, &sl), 0);
	f->port = ntohs(sin.sin_port);
	pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
	f->stop = true;
	pthread_join(f->thread, NULL);
	close(f->lfd);
}

static void test_silent_server(void)
{
	struct fake f;
	fake_start(&f, NULL);
	write_conf("silent.cf", f.port, "");
	struct node a;
	char err[512] = "";
	CHECK_INT_EQ(node_open(&a, "silent.cf", 0, err, sizeof(err)), 0);
	if (a.sync) {
		struct anvil_key k = client(&a, "192.0.2.3");
		CHECK_INT_EQ(conn(&a, &k), 1);
		uint64_t t = mx_clock_monotonic_ms();
		CHECK_INT_EQ(svc_anvil_sync(a.sync), -ETIMEDOUT);
		uint64_t took = mx_clock_monotonic_ms() - t;
		CHECK(took >= 900 && took < 3000); /* the file's timeout = 1 */
		CHECK_INT_EQ(count_in_log("unavailable: Connection timed out; anvil rates"), 1);
		CHECK_INT_EQ(conn(&a, &k), 2); /* counted here all the same */
		node_close(&a);
	}
	fake_stop(&f);
}

static void test_error_server(void)
{
	struct fake f;
	fake_start(&f, "SERVER_ERROR out of memory\r\n");
	write_conf("error.cf", f.port, "");
	struct node a;
	char err[512] = "";
	CHECK_INT_EQ(node_open(&a, "error.cf", 0, err, sizeof(err)), 0);
	if (a.sync) {
		struct anvil_key k = client(&a, "192.0.2.4");
		CHECK_INT_EQ(conn(&a, &k), 1);
		CHECK_INT_EQ(svc_anvil_sync(a.sync), -EIO);
		CHECK_INT_EQ(count_in_log("it said SERVER_ERROR out of memory; anvil rates are "
					  "counted on this node only"), 1);
		struct svc_anvil_stats st;
		svc_anvil_stats(a.sync, &st);
		CHECK(st.errors >= 1);
		CHECK(st.down);
		CHECK_INT_EQ(st.counters, 0);
		CHECK_INT_EQ(conn(&a, &k), 2);
		node_close(&a);
	}
	fake_stop(&f);
}

static void test_refused_files(void)
{
	struct anvil *t = NULL;
	CHECK_INT_EQ(anvil_new(1024, 1, &t), 0);
	struct svc_anvil *s = NULL;
	char err[512], spec[200];
	struct svc_anvil_params p = { .spec = "lmdb:/tmp/x", .name = "anvil_test" };
	CHECK_INT_EQ(svc_anvil_new(&s, t, &p, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "only memcache:/path") != NULL);
	write_conf("domain.cf", port, "domain = example.com\n");
	snprintf(spec, sizeof(spec), "memcache:%s/domain.cf", dir);
	p.spec = spec;
	CHECK_INT_EQ(svc_anvil_new(&s, t, &p, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "domain:") != NULL);
	write_conf("backup.cf", port, "backup = btree:/tmp/nothing\n");
	snprintf(spec, sizeof(spec), "memcache:%s/backup.cf", dir);
	CHECK_INT_EQ(svc_anvil_new(&s, t, &p, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "backup:") != NULL);
	snprintf(spec, sizeof(spec), "memcache:%s/missing.cf", dir);
	CHECK_INT_EQ(svc_anvil_new(&s, t, &p, err, sizeof(err)), -ENOENT);
	write_file("typo.cf", "tll = 5\n");
	snprintf(spec, sizeof(spec), "memcache:%s/typo.cf", dir);
	CHECK_INT_EQ(svc_anvil_new(&s, t, &p, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 1") != NULL);
	CHECK(s == NULL);
	CHECK(!anvil_shared(t));
	anvil_free(t);
}

/* The thread: started, syncing on its own within a few intervals, stopped. */
static void test_thread(void)
{
	struct node a;
	char err[512] = "";
	CHECK_INT_EQ(node_open(&a, "shared.cf", 0, err, sizeof(err)), 0);
	if (!a.sync)
		return;
	CHECK_INT_EQ(svc_anvil_start(a.sync, err, sizeof(err)), 0);
	struct anvil_key k = client(&a, "192.0.2.5");
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	char key[200];
	key_of(key, sizeof(key), "192.0.2.5", "connect");
	conn(&a, &k);
	while (memcached_counter(key) != 1 && mx_clock_monotonic_ms() < end)
		usleep(20000);
	CHECK_INT_EQ(memcached_counter(key), 1);
	node_close(&a);
}

int main(void)
{
	if (access(MEMCACHED, X_OK) != 0) {
		fprintf(stderr, "FAIL: %s not found: install the Debian package memcached "
				"(deploy/install-deps.sh installs it)\n", MEMCACHED);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-anvil-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(dir, 0755);
	snprintf(log_path, sizeof(log_path), "%s/mxgate.log", dir);
	if (mx_log_open(log_path, "test", "mxgate") != 0)
		return 1;
	port = mch_free_port();
	bool up = port > 0 && memcached_start();
	CHECK(up);
	if (up) {
		write_conf("shared.cf", port, "");
		RUN_TEST(test_two_nodes);
		RUN_TEST(test_down_and_back);
		RUN_TEST(test_silent_server);
		RUN_TEST(test_error_server);
		RUN_TEST(test_refused_files);
		RUN_TEST(test_thread);
	}
	memcached_stop();
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return TEST_RESULT();
}
