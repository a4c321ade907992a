/* The greylist service (dataplane/svc/svc_greylist.h) alone in a service set with a fake
 * worker, over an LMDB map in a temporary directory: a new triplet is greylisted with
 * postgrey's text, an early retry too, a retry after the delay passes with the header
 * (the record's first-seen is moved into the past through the dict, so nothing sleeps),
 * the next one is DUNNO, a second recipient of the same message gets no second header,
 * the client is auto-allowlisted after its passes, the state survives a restart of the
 * service, malformed requests, a bad spec (one warning for many), a passed deadline, a
 * cancelled request, the statistics line; and two services (two gateways) sharing a real
 * memcached (memcache: map): a triplet first seen at one passes at the other.
 *
 * memcached must be installed (deploy/install-deps.sh): without it the shared case fails
 * naming the package. */
#include <errno.h>
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_dict.h"
#include "dataplane/svc/svc_greylist.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "tables/greylist.h"
#include "testing.h"

static char dir[64];
static char log_path[128];
static char map[160];

struct worker {
	struct svc_set *set;
	struct svc_client *c;
	int wake;
	struct svc_request *got;
};

static void start(struct worker *w)
{
	memset(w, 0, sizeof(*w));
	struct svc_greylist_params gp;
	svc_greylist_params_init(&gp);
	gp.version = "TEST";
	struct svc_set_params sp = { .workers = 1,
				     .ops = { [SVC_GREYLIST] = &svc_greylist_ops },
				     .params = { [SVC_GREYLIST] = &gp } };
	char err[256] = "";
	int rc = svc_set_start(&w->set, &sp, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	if (rc != 0)
		fprintf(stderr, "svc_set_start: %s\n", err);
	w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->c = svc_client_new(w->set, 0, w->wake);
}

static void stop(struct worker *w)
{
	svc_client_free(w->c);
	svc_set_free(w->set);
	close(w->wake);
}

static void on_answer(void *arg, struct svc_request *r)
{
	struct worker *w = arg;
	w->got = r;
}

struct req {
	const char *map, *client, *sender, *rcpt, *instance, *header;
	uint32_t delay, awl;
};

static struct svc_request *make(const struct req *q, unsigned deadline_ms)
{
	struct svc_request *r = svc_request_new(SVC_GREYLIST);
	struct mx_inet_addr a;
	mx_inet_parse(q->client, &a);
	char net[64], client[64], snorm[300], key[GREYLIST_KEY_MAX + 1];
	greylist_client_net(&a, 24, 64, net, sizeof(net));
	greylist_addr_format(&a, client, sizeof(client));
	greylist_sender_normalize(q->sender, snorm, sizeof(snorm));
	greylist_triplet_key(net, snorm, q->rcpt, key, sizeof(key));
	struct greylist_request g = {
		.map = q->map ? q->map : map,
		.client = client,
		.key = key,
		.recipient = q->rcpt,
		.instance = q->instance,
		.action = "DEFER_IF_PERMIT",
		.text = GREYLIST_DEFAULT_TEXT,
		.header = q->header ? q->header : "X-Greylist: delayed %t seconds by mxgate-%v at %h; %d",
		.host = "mx.test",
	};
	greylist_params_init(&g.params);
	g.params.delay_s = q->delay ? q->delay : 300;
	g.params.awl_clients = q->awl;
	char buf[GREYLIST_REQUEST_MAX];
	size_t need;
	long n = greylist_request_encode(&g, buf, sizeof(buf), &need);
	CHECK(n > 0);
	r->u.policy.request = malloc((size_t)n);
	memcpy(r->u.policy.request, buf, (size_t)n);
	r->u.policy.request_len = (size_t)n;
	r->deadline_ms = mx_clock_monotonic_ms() + deadline_ms;
	return r;
}

static struct svc_request *ask_r(struct worker *w, struct svc_request *r)
{
	w->got = NULL;
	CHECK_INT_EQ(svc_submit(w->c, r), 0);
	svc_client_flush(w->c);
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while (!w->got && mx_clock_monotonic_ms() < end) {
		struct pollfd p = { .fd = w->wake, .events = POLLIN };
		poll(&p, 1, 20);
		uint64_t v;
		ssize_t k = read(w->wake, &v, sizeof(v));
		(void)k;
		svc_client_poll(w->c, on_answer, w);
	}
	CHECK(w->got != NULL);
	return w->got;
}

/* The answer's status, and its action copied to out. */
static int ask(struct worker *w, const struct req *q, char *out, size_t cap)
{
	struct svc_request *r = ask_r(w, make(q, 5000));
	if (!r)
		return -999;
	int st = r->status;
	snprintf(out, cap, "%s", r->u.policy.action ? r->u.policy.action : "(none)");
	svc_request_free(r);
	return st;
}

/* Move a triplet's first and last seen `ago` seconds into the past (the service is
 * stopped: one LMDB environment per file and process). */
static void age_record_in(const char *spec, const struct req *q, int64_t ago);
static void age_record(const struct req *q, int64_t ago)
{
	age_record_in(map, q, ago);
}

static void age_record_in(const char *spec, const struct req *q, int64_t ago)
{
	struct mx_inet_addr a;
	mx_inet_parse(q->client, &a);
	char net[64], snorm[300], key[GREYLIST_KEY_MAX + 1];
	greylist_client_net(&a, 24, 64, net, sizeof(net));
	greylist_sender_normalize(q->sender, snorm, sizeof(snorm));
	greylist_triplet_key(net, snorm, q->rcpt, key, sizeof(key));
	struct svc_dict *d = NULL;
	char err[300];
	CHECK_INT_EQ(svc_dict_open(spec, "test", &d, err, sizeof(err)), 0);
	if (!d)
		return;
	uint64_t wall = mx_clock_wall_us() / 1000u;
	char val[64];
	size_t len = 0;
	CHECK_INT_EQ(svc_dict_get(d, key, val, sizeof(val), &len, wall, mx_clock_monotonic_ms() + 5000),
		     0);
	struct greylist_record r;
	CHECK_INT_EQ(greylist_record_parse(val, len, &r), 0);
	r.a -= ago;
	r.b -= ago;
	len = greylist_record_format(&r, val, sizeof(val));
	CHECK_INT_EQ(svc_dict_put(d, key, val, len, 0, wall, mx_clock_monotonic_ms() + 5000), 0);
	svc_dict_close(d);
}

static void test_greylisting(void)
{
	struct worker w;
	char act[GREYLIST_ACTION_MAX];
	struct req q = { .client = "192.0.2.10", .sender = "a@s.example",
			 .rcpt = "rcpt@example.com", .instance = "m1", .awl = 2 };
	start(&w);
	CHECK_INT_EQ(ask(&w, &q, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DEFER_IF_PERMIT 4.2.0 Greylisted, see "
			  "http://postgrey.schweikert.ch/help/example.com.html");
	q.instance = "m2";
	CHECK_INT_EQ(ask(&w, &q, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT 4.2.0 ", 22) == 0);
	/* the same message to a second recipient: greylisted too */
	struct req q2 = q;
	q2.rcpt = "other@example.com";
	CHECK_INT_EQ(ask(&w, &q2, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT ", 16) == 0);
	stop(&w);

	age_record(&q, 400);
	age_record(&q2, 400);
	start(&w);
	q.instance = q2.instance = "m3";
	CHECK_INT_EQ(ask(&w, &q, act, sizeof(act)), 0);
	CHECK(strncmp(act, "PREPEND X-Greylist: delayed 400 seconds by mxgate-TEST at mx.test; ",
		      67) == 0);
	/* the same message's second recipient passes without a second header */
	CHECK_INT_EQ(ask(&w, &q2, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DUNNO");
	/* passed before */
	q.instance = "m4";
	CHECK_INT_EQ(ask(&w, &q, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DUNNO");
	/* the client passed once: not yet allowlisted (2 passes needed) */
	struct req q3 = { .client = "192.0.2.10", .sender = "new@s.example",
			  .rcpt = "rcpt@example.com", .instance = "m5", .awl = 2 };
	CHECK_INT_EQ(ask(&w, &q3, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT ", 16) == 0);
	/* the header can be turned off */
	struct req q4 = { .client = "198.51.100.1", .sender = "x@y", .rcpt = "r@z",
			  .instance = "n1", .header = "", .delay = 1 };
	CHECK_INT_EQ(ask(&w, &q4, act, sizeof(act)), 0);
	stop(&w);
	age_record(&q4, 5);
	/* after a restart the state is still there */
	start(&w);
	q4.instance = "n2";
	CHECK_INT_EQ(ask(&w, &q4, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DUNNO");
	stop(&w);
	age_record(&q3, 400);
	start(&w);
	q3.instance = "m6";
	CHECK_INT_EQ(ask(&w, &q3, act, sizeof(act)), 0);
	CHECK(strncmp(act, "PREPEND ", 8) == 0);
	/* two passes counted an hour apart are needed: the second came within the hour, so a
	 * new triplet of this client is still greylisted */
	struct req q5 = q3;
	q5.sender = "another@s.example";
	q5.instance = "m7";
	CHECK_INT_EQ(ask(&w, &q5, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT ", 16) == 0);
	/* with one pass enough, it is allowlisted at once */
	q5.awl = 1;
	q5.sender = "third@s.example";
	CHECK_INT_EQ(ask(&w, &q5, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DUNNO");
	stop(&w);
}

static void test_failures(void)
{
	struct worker w;
	char act[GREYLIST_ACTION_MAX];
	start(&w);
	/* malformed */
	struct svc_request *r = svc_request_new(SVC_GREYLIST);
	r->u.policy.request = strdup("map=x\n\n");
	r->u.policy.request_len = strlen(r->u.policy.request);
	r->deadline_ms = mx_clock_monotonic_ms() + 5000;
	r = ask_r(&w, r);
	CHECK_INT_EQ(r ? r->status : 0, -EBADMSG);
	svc_request_free(r);
	/* a spec the store refuses: -EINVAL, warned once for many */
	struct req q = { .map = "cdb:/nonexistent/x", .client = "192.0.2.1", .sender = "a@b",
			 .rcpt = "c@d", .instance = "i" };
	for (int i = 0; i < 5; i++)
		CHECK_INT_EQ(ask(&w, &q, act, sizeof(act)), -EINVAL);
	/* a deadline already passed */
	q.map = NULL;
	r = make(&q, 0);
	r->deadline_ms = mx_clock_monotonic_ms() - 1;
	r = ask_r(&w, r);
	CHECK_INT_EQ(r ? r->status : 0, -ETIMEDOUT);
	svc_request_free(r);
	/* cancelled before it was begun */
	r = make(&q, 5000);
	svc_request_cancel(r);
	r = ask_r(&w, r);
	CHECK_INT_EQ(r ? r->status : 0, -ECANCELED);
	svc_request_free(r);
	svc_set_log_statistics(w.set, "test");
	stop(&w);
	FILE *f = fopen(log_path, "r");
	char line[1024];
	unsigned warned = 0, stats = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (strstr(line, "warning: greylist: ") && strstr(line, "cdb:"))
			warned++;
		if (strstr(line, "greylist statistics (test): requests=8 ") &&
		    strstr(line, "failed=6") && strstr(line, "timeouts=1") &&
		    strstr(line, "cancelled=1"))
			stats++;
	}
	if (f)
		fclose(f);
	CHECK_INT_EQ(warned, 1);
	CHECK_INT_EQ(stats, 1);
}

/* ---- two gateways over one memcached ---- */

#define MEMCACHED "/usr/bin/memcached"

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(sin);
	int p = -1;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		p = ntohs(sin.sin_port);
	close(fd);
	return p;
}

static pid_t memcached_start(int port)
{
	char portbuf[16];
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	pid_t pid = fork();
	if (pid == 0) {
		char out[160];
		snprintf(out, sizeof(out), "%s/memcached.log", dir);
		FILE *f = freopen(out, "a", stderr);
		(void)f;
		/* as root memcached wants a user to drop to */
		execl(MEMCACHED, "memcached", "-l", "127.0.0.1", "-p", portbuf, "-U", "0", "-m", "16",
		      "-t", "1", geteuid() == 0 ? "-u" : (char *)NULL, "nobody", (char *)NULL);
		_exit(127);
	}
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while (pid > 0 && mx_clock_monotonic_ms() < end) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					   .sin_addr.s_addr = htonl(0x7f000001) };
		bool up = connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
		close(fd);
		if (up)
			return pid;
		usleep(20000);
	}
	fprintf(stderr, "memcached did not start on port %d (see %s/memcached.log)\n", port, dir);
	return pid;
}

static void test_shared_memcache(void)
{
	if (access(MEMCACHED, X_OK) != 0) {
		fprintf(stderr, "%s is missing: install the Debian package memcached "
				"(deploy/install-deps.sh)\n", MEMCACHED);
		CHECK(!"memcached installed");
		return;
	}
	int port = free_port();
	pid_t mc = memcached_start(port);
	char cf[128], spec[160];
	snprintf(cf, sizeof(cf), "%s/greylist.cf", dir);
	FILE *f = fopen(cf, "w");
	if (!f) {
		CHECK(f != NULL);
		return;
	}
	fprintf(f, "# memcache_table(5)\nmemcache = inet:127.0.0.1:%d\nkey_format = greylist:%%s\n",
		port);
	fclose(f);
	snprintf(spec, sizeof(spec), "memcache:%s", cf);
	struct worker a, b;
	char act[GREYLIST_ACTION_MAX];
	start(&a);
	start(&b);
	struct req q = { .map = spec, .client = "192.0.2.50", .sender = "x@s.example",
			 .rcpt = "r@example.com", .instance = "s1" };
	CHECK_INT_EQ(ask(&a, &q, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT 4.2.0 Greylisted", 32) == 0);
	/* the other gateway sees the same triplet: an early retry */
	q.instance = "s2";
	CHECK_INT_EQ(ask(&b, &q, act, sizeof(act)), 0);
	CHECK(strncmp(act, "DEFER_IF_PERMIT 4.2.0 Greylisted", 32) == 0);
	age_record_in(spec, &q, 400);
	q.instance = "s3";
	CHECK_INT_EQ(ask(&b, &q, act, sizeof(act)), 0);
	CHECK(strncmp(act, "PREPEND X-Greylist: delayed 400 seconds", 39) == 0);
	/* and the first gateway now lets it through */
	q.instance = "s4";
	CHECK_INT_EQ(ask(&a, &q, act, sizeof(act)), 0);
	CHECK_STR_EQ(act, "DUNNO");
	stop(&a);
	stop(&b);
	if (mc > 0) {
		kill(mc, SIGKILL);
		waitpid(mc, NULL, 0);
	}
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
	snprintf(dir, sizeof(dir), "/tmp/mxgate-greylist-svc-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(log_path, sizeof(log_path), "%s/mxgate.log", dir);
	snprintf(map, sizeof(map), "lmdb:%s/greylist", dir);
	if (mx_log_open(log_path, "test", "mxgate") != 0) {
		perror("log");
		return 1;
	}
	RUN_TEST(test_greylisting);
	RUN_TEST(test_failures);
	RUN_TEST(test_shared_memcache);
	if (testing_failures == 0)
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s\n", dir);
	return TEST_RESULT();
}
