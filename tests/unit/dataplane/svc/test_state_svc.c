/* The state service (dataplane/svc/svc_state.h), started alone in a service set with a
 * fake worker: PUT, GET, DEL of LMDB maps opened on first use, misses, bad requests, a
 * spec that does not open (one warning for many requests), the bound on open maps,
 * deadlines, cancelled requests, several maps and two workers at once, the periodic
 * sweep of expired entries, the statistics line, and a stop with requests queued. */
#include <errno.h>
#include <ftw.h>
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
#include "dataplane/svc/svc_state.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "testing.h"

static char dir[64];
static char log_path[128];

struct worker {
	struct svc_set *set;
	struct svc_client *c[2];
	int wake[2];
	struct svc_request *got[64];
	unsigned ngot;
};

static void start(struct worker *w, const struct svc_state_params *pp, unsigned workers)
{
	memset(w, 0, sizeof(*w));
	struct svc_set_params sp = { .workers = workers, .ops = { [SVC_STATE] = &svc_state_ops },
				     .params = { [SVC_STATE] = pp } };
	char err[256] = "";
	int rc = svc_set_start(&w->set, &sp, err, sizeof(err));
	CHECK_INT_EQ(rc, 0);
	if (rc != 0)
		fprintf(stderr, "svc_set_start: %s\n", err);
	for (unsigned i = 0; i < workers; i++) {
		w->wake[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		w->c[i] = svc_client_new(w->set, i, w->wake[i]);
	}
}

static void stop(struct worker *w)
{
	for (unsigned i = 0; i < 2; i++)
		svc_client_free(w->c[i]);
	svc_set_free(w->set);
	for (unsigned i = 0; i < 2; i++)
		if (w->wake[i] > 0)
			close(w->wake[i]);
	for (unsigned i = 0; i < w->ngot; i++)
		svc_request_free(w->got[i]);
}

static void on_answer(void *arg, struct svc_request *r)
{
	struct worker *w = arg;
	if (w->ngot < sizeof(w->got) / sizeof(w->got[0]))
		w->got[w->ngot++] = r;
	else
		svc_request_free(r);
}

static struct svc_request *request(const char *map, enum svc_state_op op, const char *key,
				   const char *value, uint32_t ttl_s, unsigned deadline_ms)
{
	struct svc_request *r = svc_request_new(SVC_STATE);
	snprintf(r->u.state.map, sizeof(r->u.state.map), "%s", map);
	r->u.state.op = op;
	snprintf(r->u.state.key, sizeof(r->u.state.key), "%s", key);
	if (value) {
		r->u.state.value = strdup(value);
		r->u.state.value_len = strlen(value);
	}
	r->u.state.ttl_s = ttl_s;
	r->deadline_ms = mx_clock_monotonic_ms() + deadline_ms;
	return r;
}

/* Wait until n answers arrived in all (or ms passed). */
static unsigned wait_answers(struct worker *w, unsigned n, unsigned ms)
{
	uint64_t end = mx_clock_monotonic_ms() + ms;
	while (w->ngot < n && mx_clock_monotonic_ms() < end) {
		struct pollfd p[2] = { { .fd = w->wake[0], .events = POLLIN },
				       { .fd = w->c[1] ? w->wake[1] : -1, .events = POLLIN } };
		poll(p, 2, 20);
		for (unsigned i = 0; i < 2; i++) {
			if (!w->c[i])
				continue;
			uint64_t v;
			ssize_t k = read(w->wake[i], &v, sizeof(v));
			(void)k;
			svc_client_poll(w->c[i], on_answer, w);
		}
	}
	return w->ngot;
}

/* Submit r from worker 0 and wait for its answer: the answer (the worker's again). */
static struct svc_request *ask(struct worker *w, struct svc_request *r)
{
	CHECK_INT_EQ(svc_submit(w->c[0], r), 0);
	svc_client_flush(w->c[0]);
	unsigned before = w->ngot;
	CHECK_INT_EQ(wait_answers(w, before + 1, 5000), before + 1);
	if (w->ngot != before + 1)
		return NULL;
	w->ngot--;
	return w->got[before];
}

/* One request, its status (and for a GET, the value into val). */
static int op(struct worker *w, const char *map, enum svc_state_op o, const char *key,
	      const char *value, uint32_t ttl, char *val, size_t cap)
{
	struct svc_request *r = ask(w, request(map, o, key, value, ttl, 3000));
	if (!r)
		return -999;
	int st = r->status;
	if (val) {
		val[0] = '\0';
		if (st == 0 && r->u.state.value) {
			CHECK_INT_EQ(r->u.state.value[r->u.state.value_len], 0);
			snprintf(val, cap, "%s", r->u.state.value);
		}
	}
	svc_request_free(r);
	return st;
}

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

static void test_ops(void)
{
	struct worker w;
	struct svc_state_params pp;
	svc_state_params_init(&pp);
	start(&w, &pp, 1);
	char map[128], val[SVC_DICT_VALUE_MAX + 1];
	snprintf(map, sizeof(map), "btree:%s/postscreen_cache", dir);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "192.0.2.1", NULL, 0, val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, "192.0.2.1", "1;2;3", 60, NULL, 0), 0);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "192.0.2.1", NULL, 0, val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "1;2;3");
	/* the file is NAME.lmdb */
	char path[160];
	snprintf(path, sizeof(path), "%s/postscreen_cache.lmdb", dir);
	CHECK_INT_EQ(access(path, F_OK), 0);
	/* an empty value */
	CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, "empty", NULL, 0, NULL, 0), 0);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "empty", NULL, 0, val, sizeof(val)), 0);
	CHECK_STR_EQ(val, "");
	/* a second map, and the first one's entry is not in it */
	char map2[128];
	snprintf(map2, sizeof(map2), "lmdb:%s/greylist", dir);
	CHECK_INT_EQ(op(&w, map2, SVC_STATE_GET, "192.0.2.1", NULL, 0, val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(op(&w, map2, SVC_STATE_PUT, "192.0.2.1/a@b/c@d", "1800000000", 0, NULL, 0),
		     0);
	CHECK_INT_EQ(op(&w, map2, SVC_STATE_GET, "192.0.2.1/a@b/c@d", NULL, 0, val, sizeof(val)),
		     0);
	CHECK_STR_EQ(val, "1800000000");
	/* DEL */
	CHECK_INT_EQ(op(&w, map, SVC_STATE_DEL, "192.0.2.1", NULL, 0, NULL, 0), 0);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "192.0.2.1", NULL, 0, val, sizeof(val)), -ENOENT);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_DEL, "192.0.2.1", NULL, 0, NULL, 0), 0);
	/* bad requests */
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "", NULL, 0, val, sizeof(val)), -EINVAL);
	CHECK_INT_EQ(op(&w, "", SVC_STATE_GET, "k", NULL, 0, val, sizeof(val)), -EINVAL);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_OP_MAX, "k", NULL, 0, NULL, 0), -EINVAL);
	struct svc_request *r = request(map, SVC_STATE_PUT, "k", NULL, 0, 3000);
	r->u.state.value = malloc(SVC_DICT_VALUE_MAX + 1);
	memset(r->u.state.value, 'v', SVC_DICT_VALUE_MAX + 1);
	r->u.state.value_len = SVC_DICT_VALUE_MAX + 1;
	r = ask(&w, r);
	CHECK(r && r->status == -EINVAL);
	svc_request_free(r);
	r = request(map, SVC_STATE_PUT, "k", NULL, 0, 3000);
	r->u.state.value_len = 3; /* and no value */
	r = ask(&w, r);
	CHECK(r && r->status == -EINVAL);
	svc_request_free(r);
	/* a deadline passed before the service took it */
	r = request(map, SVC_STATE_GET, "empty", NULL, 0, 0);
	r->deadline_ms = mx_clock_monotonic_ms() - 1;
	r = ask(&w, r);
	CHECK(r && r->status == -ETIMEDOUT);
	svc_request_free(r);
	/* a cancelled GET is not done; a cancelled PUT is */
	r = request(map, SVC_STATE_GET, "empty", NULL, 0, 3000);
	svc_request_cancel(r);
	r = ask(&w, r);
	CHECK(r && r->status == -ECANCELED);
	svc_request_free(r);
	r = request(map, SVC_STATE_PUT, "cancelled", "v", 0, 3000);
	svc_request_cancel(r);
	r = ask(&w, r);
	CHECK(r && r->status == 0);
	svc_request_free(r);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "cancelled", NULL, 0, val, sizeof(val)), 0);

	/* the statistics line */
	svc_set_log_statistics(w.set, "test");
	CHECK_INT_EQ(count_in_log("state statistics (test): requests=20 hits=4 misses=3 puts=4 "
				  "dels=2 failed=5 timeouts=1 cancelled=1 swept=0"), 1);
	stop(&w);

	/* a restart keeps the entries */
	start(&w, &pp, 1);
	CHECK_INT_EQ(op(&w, map2, SVC_STATE_GET, "192.0.2.1/a@b/c@d", NULL, 0, val, sizeof(val)),
		     0);
	CHECK_STR_EQ(val, "1800000000");
	stop(&w);
}

static void test_bad_specs(void)
{
	struct worker w;
	struct svc_state_params pp;
	svc_state_params_init(&pp);
	pp.maps_max = 2;
	start(&w, &pp, 1);
	char val[64];
	/* refused types: -EINVAL each time, one warning */
	for (int i = 0; i < 5; i++)
		CHECK_INT_EQ(op(&w, "proxy:btree:/var/lib/x", SVC_STATE_GET, "k", NULL, 0, val,
				sizeof(val)), -EINVAL);
	CHECK_INT_EQ(count_in_log("warning: state service: state: unsupported dictionary type "
				  "\"proxy\""), 1);
	char map[128];
	snprintf(map, sizeof(map), "btree:%s/one", dir);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, "k", "v", 0, NULL, 0), 0);
	/* the third distinct spec is over maps_max = 2 (the failed one holds a slot) */
	snprintf(map, sizeof(map), "btree:%s/two", dir);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, "k", "v", 0, NULL, 0), -EMFILE);
	snprintf(map, sizeof(map), "btree:%s/one", dir);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "k", NULL, 0, val, sizeof(val)), 0);
	stop(&w);

	/* parameters the service refuses */
	struct svc_set *set = NULL;
	pp.maps_max = 0;
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_STATE] = &svc_state_ops },
				     .params = { [SVC_STATE] = &pp } };
	char err[256];
	CHECK_INT_EQ(svc_set_start(&set, &sp, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "state: maps_max must be") != NULL);
	svc_state_params_init(&pp);
	pp.sweep_max = 0;
	CHECK_INT_EQ(svc_set_start(&set, &sp, err, sizeof(err)), -EINVAL);
	CHECK(set == NULL);
}

static void test_two_workers(void)
{
	struct worker w;
	start(&w, NULL, 2); /* NULL: the defaults */
	char map[128];
	snprintf(map, sizeof(map), "hash:%s/two_workers", dir);
	/* 20 puts from each worker at once, then 20 gets from each */
	for (int i = 0; i < 40; i++) {
		char key[32], value[32];
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(value, sizeof(value), "v%d", i);
		CHECK_INT_EQ(svc_submit(w.c[i % 2], request(map, SVC_STATE_PUT, key, value, 0,
							     5000)), 0);
	}
	svc_client_flush(w.c[0]);
	svc_client_flush(w.c[1]);
	CHECK_INT_EQ(wait_answers(&w, 40, 10000), 40);
	for (unsigned i = 0; i < w.ngot; i++) {
		CHECK_INT_EQ(w.got[i]->status, 0);
		svc_request_free(w.got[i]);
	}
	w.ngot = 0;
	for (int i = 0; i < 40; i++) {
		char key[32];
		snprintf(key, sizeof(key), "k%d", i);
		CHECK_INT_EQ(svc_submit(w.c[1 - i % 2], request(map, SVC_STATE_GET, key, NULL, 0,
								 5000)), 0);
	}
	svc_client_flush(w.c[0]);
	svc_client_flush(w.c[1]);
	CHECK_INT_EQ(wait_answers(&w, 40, 10000), 40);
	unsigned ok = 0;
	for (unsigned i = 0; i < w.ngot; i++) {
		struct svc_request *r = w.got[i];
		if (r->status == 0 && r->u.state.value && r->u.state.key[0] == 'k' &&
		    strcmp(r->u.state.value + 1, r->u.state.key + 1) == 0)
			ok++;
		svc_request_free(r);
	}
	w.ngot = 0;
	CHECK_INT_EQ(ok, 40);
	stop(&w);
}

static void test_sweep(void)
{
	struct worker w;
	struct svc_state_params pp;
	svc_state_params_init(&pp);
	pp.sweep_interval_ms = 200;
	pp.sweep_max = 3;
	start(&w, &pp, 1);
	char map[128];
	snprintf(map, sizeof(map), "btree:%s/sweep", dir);
	for (int i = 0; i < 5; i++) {
		char key[16];
		snprintf(key, sizeof(key), "e%d", i);
		CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, key, "v", 1, NULL, 0), 0);
	}
	CHECK_INT_EQ(op(&w, map, SVC_STATE_PUT, "keep", "v", 0, NULL, 0), 0);
	/* after a second they expire; sweeps of at most 3 drop all 5, in two sweeps or more */
	uint64_t end = mx_clock_monotonic_ms() + 5000;
	while (mx_clock_monotonic_ms() < end && !count_in_log("swept=5")) {
		usleep(100000);
		svc_set_log_statistics(w.set, "sweep");
	}
	CHECK_INT_EQ(count_in_log("swept=5"), 1);
	char needle[160];
	snprintf(needle, sizeof(needle), "state service: %s: dropped ", map);
	CHECK(count_in_log(needle) >= 2);
	CHECK_INT_EQ(count_in_log("dropped 4 expired"), 0);
	CHECK_INT_EQ(count_in_log("dropped 5 expired"), 0);
	char val[16];
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "keep", NULL, 0, val, sizeof(val)), 0);
	CHECK_INT_EQ(op(&w, map, SVC_STATE_GET, "e0", NULL, 0, val, sizeof(val)), -ENOENT);
	stop(&w);
}

static void test_stop_with_queue(void)
{
	/* requests submitted right before the stop are answered, done or -ECANCELED */
	struct worker w;
	start(&w, NULL, 1);
	char map[128];
	snprintf(map, sizeof(map), "btree:%s/stop", dir);
	for (int i = 0; i < 30; i++)
		CHECK_INT_EQ(svc_submit(w.c[0], request(map, SVC_STATE_PUT, "k", "v", 0, 5000)),
			     0);
	svc_client_flush(w.c[0]);
	svc_set_stop(w.set);
	svc_client_poll(w.c[0], on_answer, &w);
	CHECK_INT_EQ(w.ngot, 30);
	for (unsigned i = 0; i < w.ngot; i++)
		CHECK(w.got[i]->status == 0 || w.got[i]->status == -ECANCELED);
	stop(&w);
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
	snprintf(dir, sizeof(dir), "/tmp/mxgate-test-state-XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(log_path, sizeof(log_path), "%s/mxgate.log", dir);
	if (mx_log_open(log_path, "test", "mxgate") != 0)
		return 1;
	RUN_TEST(test_ops);
	RUN_TEST(test_bad_specs);
	RUN_TEST(test_two_workers);
	RUN_TEST(test_sweep);
	RUN_TEST(test_stop_with_queue);
	if (testing_failures) {
		char *log = read_log();
		fprintf(stderr, "--- log ---\n%s", log);
		free(log);
	}
	mx_log_close();
	nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return TEST_RESULT();
}
