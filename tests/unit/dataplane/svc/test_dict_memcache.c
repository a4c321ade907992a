/* memcache: dicts (memcache_table(5)) against a real memcached, started here on a free
 * port of 127.0.0.1 with a private directory and killed at the end:
 *   - put, get, del and expiry through memcached (key_format applied: the entry is looked
 *     at in memcached directly);
 *   - two dicts on one memcached, each with its own backup (two gateways), see each
 *     other's writes;
 *   - memcached killed: the dicts go on with their backups, one warning each, no more;
 *     a dict without a backup fails fast (no connection tried again before retry_pause);
 *   - memcached back: used again (one info line), a backup hit refreshes it;
 *   - a server that accepts and never answers: timeouts within the deadline, then the
 *     backup, then no more waiting while it is down;
 *   - a deadline already passed.
 * memcached must be installed (deploy/install-deps.sh): without it this test fails and
 * says which package to install. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/svc/svc_dict.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "memcached_harness.h"
#include "testing.h"


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

/* Ask memcached directly: "get key"; the value into out (NUL-terminated), true on a hit. */
static bool memcached_get(const char *key, char *out, size_t cap)
{
	int fd = mch_connect(port);
	if (fd < 0)
		return false;
	char cmd[300];
	int n = snprintf(cmd, sizeof(cmd), "get %s\r\n", key);
	if (write(fd, cmd, (size_t)n) != n) {
		close(fd);
		return false;
	}
	char buf[2048];
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
	unsigned flags, bytes;
	int off = 0;
	if (sscanf(buf, "VALUE %*s %u %u\r\n%n", &flags, &bytes, &off) != 2 || !off ||
	    bytes >= cap)
		return false;
	memcpy(out, buf + off, bytes);
	out[bytes] = '\0';
	return true;
}

/* ---- helpers ---- */

static char *read_log(void)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return strdup("");
	char *buf = calloc(1, 1 << 20);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static unsigned count_in_log(const char *needle)
{
	char *log = read_log();
	unsigned n = 0;
	for (const char *p = log; (p = strstr(p, needle)); p++)
		n++;
	free(log);
	return n;
}

static void write_conf(const char *name, const char *extra)
{
	char path[160];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	fprintf(f, "# %s\nmemcache = inet:127.0.0.1:%d\nkey_format = test:%%s\ntimeout = 1\n"
		   "retry_pause = 1\n%s", name, port, extra);
	fclose(f);
}

static struct svc_dict *open_conf(const char *name, const char *param)
{
	char spec[200], err[512] = "";
	snprintf(spec, sizeof(spec), "memcache:%s/%s", dir, name);
	struct svc_dict *d = NULL;
	int rc = svc_dict_open(spec, param, &d, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "  open %s: %s\n", spec, err);
	CHECK_INT_EQ(rc, 0);
	return d;
}

static uint64_t wall_ms(void)
{
	return mx_clock_wall_us() / 1000u;
}

static uint64_t deadline(unsigned ms)
{
	return mx_clock_monotonic_ms() + ms;
}

static int get(struct svc_dict *d, const char *key, char *val, size_t cap)
{
	size_t len = 0;
	int rc = svc_dict_get(d, key, val, cap - 1, &len, wall_ms(), deadline(5000));
	val[rc == 0 ? len : 0] = '\0';
	return rc;
}

static int put(struct svc_dict *d, const char *key, const char *val, uint32_t ttl)
{
	return svc_dict_put(d, key, val, strlen(val), ttl, wall_ms(), deadline(5000));
}

/* dicts used across the tests: a and b are two gateways with their own backups; n has
 * no backup */
static struct svc_dict *a, *b, *n;

/* ---- tests ---- */

static void test_open_errors(void)
{
	char spec[200], err[512];
	struct svc_dict *d;
	write_conf("bad1.cf", "tll = 5\n");
	snprintf(spec, sizeof(spec), "memcache:%s/bad1.cf", dir);
	CHECK_INT_EQ(svc_dict_open(spec, "x_map", &d, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "line 6: unknown parameter \"tll\"") != NULL);
	char extra[200];
	snprintf(extra, sizeof(extra), "backup = memcache:%s/n.cf\n", dir);
	write_conf("bad2.cf", extra);
	snprintf(spec, sizeof(spec), "memcache:%s/bad2.cf", dir);
	CHECK_INT_EQ(svc_dict_open(spec, "x_map", &d, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "the backup must be a local table") != NULL);
	write_conf("bad3.cf", "backup = proxy:btree:/x\n");
	snprintf(spec, sizeof(spec), "memcache:%s/bad3.cf", dir);
	CHECK_INT_EQ(svc_dict_open(spec, "x_map", &d, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "unsupported dictionary type \"proxy\"") != NULL);
	FILE *f = fopen(spec + 9, "w");
	fprintf(f, "memcache = tcp:127.0.0.1:1\n");
	fclose(f);
	CHECK_INT_EQ(svc_dict_open(spec, "x_map", &d, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "invalid transport name") != NULL);
}

static void test_put_get_del(void)
{
	char val[SVC_DICT_VALUE_MAX + 1], raw[SVC_DICT_VALUE_MAX + 1];
	CHECK_INT_EQ(get(n, "192.0.2.1", val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(put(n, "192.0.2.1", "PASS NEW 1800000000", 0), 0);
	CHECK_INT_EQ(get(n, "192.0.2.1", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "PASS NEW 1800000000");
	/* in memcached itself, under key_format's key */
	CHECK(memcached_get("test:192.0.2.1", raw, sizeof(raw)));
	CHECK_STR_EQ(raw, "PASS NEW 1800000000");
	CHECK_INT_EQ(svc_dict_del(n, "192.0.2.1", wall_ms(), deadline(5000)), 0);
	CHECK_INT_EQ(get(n, "192.0.2.1", val, sizeof(val)), -ENOENT);
	CHECK(!memcached_get("test:192.0.2.1", raw, sizeof(raw)));
	CHECK_INT_EQ(svc_dict_del(n, "192.0.2.1", wall_ms(), deadline(5000)), 0);
	/* a value as large as a dict takes */
	char big[SVC_DICT_VALUE_MAX + 1];
	memset(big, 'v', SVC_DICT_VALUE_MAX);
	big[SVC_DICT_VALUE_MAX] = '\0';
	CHECK_INT_EQ(put(n, "big", big, 0), 0);
	CHECK_INT_EQ(get(n, "big", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, big);
	/* a host name (every address tried: memcached listens on 127.0.0.1 only) */
	char path[160];
	snprintf(path, sizeof(path), "%s/host.cf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "memcache = inet:localhost:%d\nkey_format = test:%%s\n", port);
	fclose(f);
	struct svc_dict *h = open_conf("host.cf", "by_name");
	if (h) {
		CHECK_INT_EQ(put(n, "named", "yes", 0), 0);
		CHECK_INT_EQ(get(h, "named", val, sizeof(val)), 0);
		CHECK_STR_EQ(val, "yes");
		svc_dict_close(h);
	}
	/* memcached takes no spaces in keys: skipped, as Postfix skips them */
	CHECK_INT_EQ(put(n, "a b", "v", 0), -EINVAL);
	CHECK_INT_EQ(get(n, "a b", val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(count_in_log("skipping update for name \"a b\""), 1);
}

static void test_expiry(void)
{
	char val[64];
	CHECK_INT_EQ(put(n, "short", "s", 1), 0);
	CHECK_INT_EQ(put(n, "long", "l", 60), 0);
	CHECK_INT_EQ(get(n, "short", val, sizeof(val)), 0);
	/* memcached's clock ticks in whole seconds: 1 s entries are gone within 2 */
	usleep(2200 * 1000);
	CHECK_INT_EQ(get(n, "short", val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(get(n, "long", val, sizeof(val)), 0);
	/* with a backup, the backup's copy expires too */
	CHECK_INT_EQ(put(a, "short-a", "s", 1), 0);
	usleep(2200 * 1000);
	CHECK_INT_EQ(get(a, "short-a", val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(svc_dict_sweep(a, wall_ms(), 100), 1); /* the backup's entry */
	CHECK_INT_EQ(svc_dict_sweep(n, wall_ms(), 100), 0); /* memcached expires its own */
}

static void test_two_gateways(void)
{
	char val[64];
	CHECK_INT_EQ(put(a, "198.51.100.7", "from a", 0), 0);
	CHECK_INT_EQ(get(b, "198.51.100.7", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "from a");
	CHECK_INT_EQ(put(b, "198.51.100.8", "from b", 0), 0);
	CHECK_INT_EQ(get(a, "198.51.100.8", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "from b");
	/* b's write replaces a's in memcached */
	CHECK_INT_EQ(put(b, "198.51.100.7", "b again", 0), 0);
	CHECK_INT_EQ(get(a, "198.51.100.7", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "b again");
	/* n (no backup, same memcached and key_format) sees them too */
	CHECK_INT_EQ(get(n, "198.51.100.8", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "from b");
}

static void test_memcached_down_and_back(void)
{
	char val[64];
	CHECK_INT_EQ(count_in_log("unavailable"), 0);
	memcached_stop();

	/* a goes on with its backup: writes and reads work, one warning */
	CHECK_INT_EQ(put(a, "203.0.113.1", "while down", 0), 0);
	CHECK_INT_EQ(get(a, "203.0.113.1", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "while down");
	CHECK_INT_EQ(get(a, "198.51.100.7", val, sizeof(val)), 0); /* a's backup: a wrote it */
	CHECK_STR_EQ(val, "from a");
	CHECK_INT_EQ(get(a, "198.51.100.8", val, sizeof(val)), -ENOENT); /* b's, not here */
	for (int i = 0; i < 20; i++)
		CHECK_INT_EQ(get(a, "203.0.113.1", val, sizeof(val)), 0);
	CHECK_INT_EQ(count_in_log("warning: gw_a: "), 1);
	CHECK_INT_EQ(count_in_log("unavailable (Connection refused): going on with the backup"),
		     1);
	/* b does not see what a wrote while memcached was away */
	CHECK_INT_EQ(get(b, "203.0.113.1", val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(count_in_log("warning: gw_b: "), 1);
	/* n has no backup: its requests fail, fast, with one warning */
	uint64_t t = mx_clock_monotonic_ms();
	for (int i = 0; i < 50; i++)
		CHECK_INT_EQ(get(n, "198.51.100.8", val, sizeof(val)), -ECONNREFUSED);
	CHECK(mx_clock_monotonic_ms() - t < 1000);
	CHECK_INT_EQ(put(n, "x", "y", 0), -ECONNREFUSED);
	CHECK_INT_EQ(count_in_log("no backup, requests fail until it is back"), 1);
	/* a delete while down reaches the backup */
	CHECK_INT_EQ(svc_dict_del(a, "198.51.100.7", wall_ms(), deadline(5000)), 0);
	CHECK_INT_EQ(get(a, "198.51.100.7", val, sizeof(val)), -ENOENT);
	/* retry_pause (1 s) passes while memcached is still away: tried, still down, no new
	 * warning */
	usleep(1100 * 1000);
	CHECK_INT_EQ(get(a, "203.0.113.1", val, sizeof(val)), 0);
	CHECK_INT_EQ(count_in_log("warning: gw_a: "), 1);

	/* memcached back (empty): after retry_pause, a uses it again */
	CHECK(memcached_start());
	usleep(1100 * 1000);
	CHECK_INT_EQ(get(a, "203.0.113.1", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "while down");
	CHECK_INT_EQ(count_in_log("gw_a: memcache:"), 2);
	char back[64];
	snprintf(back, sizeof(back), ":%d is back\n", port);
	CHECK_INT_EQ(count_in_log(back), 1);
	/* the backup hit refreshed memcached: b sees it now */
	char raw[64];
	CHECK(memcached_get("test:203.0.113.1", raw, sizeof(raw)));
	CHECK_INT_EQ(get(b, "203.0.113.1", val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "while down");
	CHECK_INT_EQ(count_in_log(back), 2); /* a's and b's */
	/* writes go to memcached again */
	CHECK_INT_EQ(put(a, "203.0.113.2", "after", 0), 0);
	CHECK_INT_EQ(get(b, "203.0.113.2", val, sizeof(val)), 0);
	CHECK_INT_EQ(get(n, "203.0.113.2", val, sizeof(val)), 0);
	CHECK_INT_EQ(count_in_log("unavailable"), 3); /* still one warning each */
	CHECK_INT_EQ(count_in_log(back), 3);
}

static void test_silent_server(void)
{
	/* a server that accepts connections (the kernel's backlog) and never answers */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t sl = sizeof(sin);
	CHECK_INT_EQ(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	CHECK_INT_EQ(listen(lfd, 16), 0);
	CHECK_INT_EQ(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	char path[160], spec[200];
	snprintf(path, sizeof(path), "%s/silent.cf", dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "memcache = inet:127.0.0.1:%d\ntimeout = 1\nmax_try = 2\nretry_pause = 1\n"
		   "backup = lmdb:%s/silent_backup\n", ntohs(sin.sin_port), dir);
	fclose(f);
	snprintf(spec, sizeof(spec), "memcache:%s", path);
	struct svc_dict *s = NULL;
	char err[512];
	CHECK_INT_EQ(svc_dict_open(spec, "silent", &s, err, sizeof(err)), 0);
	if (!s) {
		close(lfd);
		return;
	}
	/* a deadline shorter than the timeout: -ETIMEDOUT from memcached, then the backup
	 * (which has nothing): the miss */
	char val[64];
	size_t len;
	uint64_t t = mx_clock_monotonic_ms();
	CHECK_INT_EQ(svc_dict_get(s, "k", val, sizeof(val), &len, wall_ms(), deadline(300)),
		     -ENOENT);
	uint64_t took = mx_clock_monotonic_ms() - t;
	CHECK(took >= 250 && took < 900);
	CHECK_INT_EQ(count_in_log("silent: memcache:"), 1);
	CHECK_INT_EQ(count_in_log("(Connection timed out)"), 1);
	/* down now: the put goes to the backup at once */
	t = mx_clock_monotonic_ms();
	CHECK_INT_EQ(svc_dict_put(s, "k", "v", 1, 0, wall_ms(), deadline(5000)), 0);
	CHECK_INT_EQ(svc_dict_get(s, "k", val, sizeof(val), &len, wall_ms(), deadline(5000)), 0);
	CHECK(mx_clock_monotonic_ms() - t < 700); /* not timeout (1 s): no try while down */
	svc_dict_close(s);
	close(lfd);
}

static void test_deadline_passed(void)
{
	char val[64];
	size_t len;
	uint64_t past = mx_clock_monotonic_ms() - 1;
	CHECK_INT_EQ(svc_dict_get(n, "203.0.113.2", val, sizeof(val), &len, wall_ms(), past),
		     -ETIMEDOUT);
	CHECK_INT_EQ(svc_dict_put(n, "x", "y", 1, 0, wall_ms(), past), -ETIMEDOUT);
	/* with a backup: the backup answers */
	CHECK_INT_EQ(svc_dict_get(a, "203.0.113.1", val, sizeof(val), &len, wall_ms(), past), 0);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	if (access(MEMCACHED, X_OK) != 0) {
		fprintf(stderr, "FAIL: %s not found: install the Debian package memcached "
				"(deploy/install-deps.sh installs it)\n", MEMCACHED);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-memcache-XXXXXX");
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
		char extra[256];
		snprintf(extra, sizeof(extra), "backup = btree:%s/backup_a\n", dir);
		write_conf("a.cf", extra);
		snprintf(extra, sizeof(extra), "backup = btree:%s/backup_b\n", dir);
		write_conf("b.cf", extra);
		write_conf("n.cf", "");
		a = open_conf("a.cf", "gw_a");
		b = open_conf("b.cf", "gw_b");
		n = open_conf("n.cf", "gw_n");
		if (a && b && n) {
			RUN_TEST(test_open_errors);
			RUN_TEST(test_put_get_del);
			RUN_TEST(test_expiry);
			RUN_TEST(test_two_gateways);
			RUN_TEST(test_memcached_down_and_back);
			RUN_TEST(test_silent_server);
			RUN_TEST(test_deadline_passed);
		}
		svc_dict_close(a);
		svc_dict_close(b);
		svc_dict_close(n);
	}
	memcached_stop();
	if (testing_failures) {
		char *log = read_log();
		fprintf(stderr, "--- log ---\n%s", log);
		free(log);
	}
	mx_log_close();
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return TEST_RESULT();
}
