/* The SASL service (dataplane/svc/svc_sasl.h) against a fake Dovecot (dovecot_fake.h) on a
 * UNIX socket and on TCP, through the service set with a fake worker: the mechanism list
 * for EHLO (unknown until connected, filtered by sec_opts), OK, FAIL, temporary FAIL, CONT
 * then OK, unknown mechanisms, the AUTH line's fields, CANCEL, deadlines (Dovecot too
 * slow, its late replies swallowed, a late challenge cancelled), an exchange that never
 * gets its CONT, a connection dropped mid-exchange, Dovecot down (one warning, TEMPFAIL at
 * once) and up again, a protocol error, cancelled requests, bad requests, an endpoint
 * first named by a request, the directory's bounds and mechanism objects, stop with an
 * exchange in flight, and the statistics line. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_sasl.h"
#include "dataplane/svc/svc_sasl_internal.h"
#include "dovecot_fake.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "testing.h"

static char log_path[128];
static char dir[64];

/* ---- a worker's side ---- */

struct worker {
	struct svc_set *set;
	struct svc_client *c;
	struct svc_sasl_directory *d;
	struct svc_sasl_params params;
	int wake;
	struct svc_request *got[64];
	unsigned ngot;
};

static void start(struct worker *w, const char *endpoint, uint32_t timeout_ms,
		  uint32_t client_wait_ms)
{
	memset(w, 0, sizeof(*w));
	w->d = svc_sasl_directory_new();
	CHECK(w->d != NULL);
	if (endpoint)
		CHECK_INT_EQ(svc_sasl_directory_want(w->d, endpoint), 0);
	w->params = (struct svc_sasl_params){ .directory = w->d, .timeout_ms = timeout_ms,
					      .client_wait_ms = client_wait_ms };
	struct svc_set_params sp = { .workers = 1, .ops = { [SVC_SASL] = &svc_sasl_ops },
				     .params = { [SVC_SASL] = &w->params } };
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
	svc_set_stop(w->set);
	svc_client_free(w->c);
	svc_set_free(w->set);
	svc_sasl_directory_free(w->d);
	close(w->wake);
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

static unsigned wait_answers(struct worker *w, unsigned n, unsigned ms)
{
	uint64_t end = mx_clock_monotonic_ms() + ms;
	while (w->ngot < n && mx_clock_monotonic_ms() < end) {
		struct pollfd p = { .fd = w->wake, .events = POLLIN };
		poll(&p, 1, 20);
		uint64_t v;
		ssize_t k = read(w->wake, &v, sizeof(v));
		(void)k;
		svc_client_poll(w->c, on_answer, w);
	}
	return w->ngot;
}

static struct svc_request *take(struct worker *w)
{
	if (w->ngot == 0)
		return NULL;
	struct svc_request *r = w->got[0];
	memmove(w->got, w->got + 1, (w->ngot - 1) * sizeof(w->got[0]));
	w->ngot--;
	return r;
}

static void set_data(struct svc_request *r, const char *word)
{
	char b64[256];
	ssize_t n = smtp_dovecot_b64_encode(word, strlen(word), b64, sizeof(b64));
	CHECK(n >= 0);
	free(r->u.sasl.data);
	r->u.sasl.data = malloc((size_t)n + 1);
	memcpy(r->u.sasl.data, b64, (size_t)n);
	r->u.sasl.data_len = (size_t)n;
}

/* A START request; word (NULL: no initial response) is the fake's script. */
static struct svc_request *start_req(const char *endpoint, const char *mech, const char *word,
				     uint32_t deadline_ms)
{
	struct svc_request *r = svc_request_new(SVC_SASL);
	CHECK_INT_EQ(r->u.sasl.result, SVC_SASL_TEMPFAIL); /* until answered */
	struct svc_sasl *q = &r->u.sasl;
	snprintf(q->endpoint, sizeof(q->endpoint), "%s", endpoint);
	q->op = SVC_SASL_START;
	snprintf(q->mech, sizeof(q->mech), "%s", mech);
	q->sec_opts = SMTP_DOVECOT_SEC_NOANONYMOUS;
	snprintf(q->service, sizeof(q->service), "smtp");
	mx_inet_parse("192.0.2.25", &q->local);
	mx_inet_parse("198.51.100.7", &q->remote);
	q->local_port = 25;
	q->remote_port = 40000;
	q->secured = true;
	if (word) {
		q->has_initial_response = true;
		set_data(r, word);
	}
	r->deadline_ms = mx_clock_monotonic_ms() + deadline_ms;
	return r;
}

static struct svc_request *step_req(const char *endpoint, enum svc_sasl_op op,
				    uint64_t exchange, const char *word, uint32_t deadline_ms)
{
	struct svc_request *r = svc_request_new(SVC_SASL);
	struct svc_sasl *q = &r->u.sasl;
	snprintf(q->endpoint, sizeof(q->endpoint), "%s", endpoint);
	q->op = op;
	q->exchange = exchange;
	if (word)
		set_data(r, word);
	r->deadline_ms = mx_clock_monotonic_ms() + deadline_ms;
	return r;
}

/* Submit r and wait for its answer (NULL when none came in time). */
static struct svc_request *ask(struct worker *w, struct svc_request *r)
{
	CHECK_INT_EQ(svc_submit(w->c, r), 0);
	svc_client_flush(w->c);
	wait_answers(w, 1, 5000);
	CHECK_INT_EQ(w->ngot, 1);
	return take(w);
}

/* Ask, then check the answer's result and text; returns the exchange. */
static uint64_t expect(struct worker *w, struct svc_request *r, enum svc_sasl_result result,
		       const char *text)
{
	struct svc_request *a = ask(w, r);
	if (!a)
		return 0;
	CHECK_INT_EQ(a->status, 0);
	CHECK_STR_EQ(svc_sasl_result_name(a->u.sasl.result), svc_sasl_result_name(result));
	CHECK(a->u.sasl.text != NULL);
	if (a->u.sasl.text && text)
		CHECK_STR_EQ(a->u.sasl.text, text);
	uint64_t x = a->u.sasl.exchange;
	svc_request_free(a);
	return x;
}

/* Wait until the endpoint's mechanisms are known (true) or ms passed. */
static bool wait_mechs(struct worker *w, const char *endpoint, unsigned ms)
{
	char list[256];
	uint64_t end = mx_clock_monotonic_ms() + ms;
	while (mx_clock_monotonic_ms() < end) {
		if (svc_sasl_mech_list(w->d, endpoint, 0, list, sizeof(list)) > 0)
			return true;
		usleep(5000);
	}
	return false;
}

static char *read_log(void)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return strdup("");
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return strdup(buf);
}

static void truncate_log(void)
{
	FILE *f = fopen(log_path, "w");
	if (f)
		fclose(f);
}

static unsigned count_in_log(const char *needle)
{
	char *log = read_log();
	unsigned n = 0;
	for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
		n++;
	free(log);
	return n;
}

static void endpoint_of(const struct fake_dovecot *f, char *out, size_t cap)
{
	snprintf(out, cap, "unix:%s", f->path);
}

/* ---- tests ---- */

static void test_names(void)
{
	CHECK_STR_EQ(svc_kind_name(SVC_SASL), "sasl");
	CHECK_STR_EQ(svc_sasl_op_name(SVC_SASL_CANCEL), "cancel");
	CHECK_STR_EQ(svc_sasl_op_name(SVC_SASL_OP_MAX), "?");
	CHECK_STR_EQ(svc_sasl_result_name(SVC_SASL_BAD_MECH), "bad-mech");
	CHECK_STR_EQ(svc_sasl_result_name(SVC_SASL_RESULT_MAX), "?");
	/* svc_request_free() frees data and text */
	struct svc_request *r = svc_request_new(SVC_SASL);
	r->u.sasl.data = strdup("x");
	r->u.sasl.text = strdup("y");
	svc_request_free(r);
}

static void test_directory(void)
{
	struct svc_sasl_directory *d = svc_sasl_directory_new();
	CHECK_INT_EQ(svc_sasl_directory_want(d, "unix:/run/dovecot/auth-client"), 0);
	CHECK_INT_EQ(svc_sasl_directory_want(d, "unix:/run/dovecot/auth-client"), 0);
	CHECK_INT_EQ(svc_sasl_directory_count(d), 1);
	CHECK_INT_EQ(svc_sasl_directory_want(d, "tcp:1.2.3.4:5"), -EINVAL);
	CHECK_INT_EQ(svc_sasl_directory_want(d, "inet:127.0.0.1"), -EINVAL);
	CHECK_INT_EQ(svc_sasl_directory_want(d, ""), -EINVAL);
	char big[SVC_ENDPOINT_MAX + 10];
	memset(big, 'a', sizeof(big));
	memcpy(big, "unix:", 5);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(svc_sasl_directory_want(d, big), -EINVAL);
	for (int i = 1; i < SVC_SASL_ENDPOINTS_MAX; i++) {
		char e[64];
		snprintf(e, sizeof(e), "inet:127.0.0.1:%d", 1000 + i);
		CHECK_INT_EQ(svc_sasl_directory_want(d, e), 0);
	}
	CHECK_INT_EQ(svc_sasl_directory_want(d, "inet:127.0.0.1:9"), -ENOSPC);
	CHECK_INT_EQ(svc_sasl_directory_want(d, "inet:127.0.0.1:1001"), 0); /* known */
	CHECK_INT_EQ(svc_sasl_directory_count(d), SVC_SASL_ENDPOINTS_MAX);
	char out[64] = "x";
	CHECK_INT_EQ(svc_sasl_mech_list(d, "unix:/run/dovecot/auth-client", 0, out, sizeof(out)), 0);
	CHECK_STR_EQ(out, "");
	CHECK_INT_EQ(svc_sasl_mech_list(d, "unix:/nowhere", 0, out, sizeof(out)), 0);
	CHECK_INT_EQ(svc_sasl_mech_list(NULL, "unix:/nowhere", 0, out, sizeof(out)), 0);

	/* published lists: from codecs that went through a handshake */
	struct smtp_dovecot *c[SVC_SASL_MECH_VERSIONS + 2];
	for (int i = 0; i < SVC_SASL_MECH_VERSIONS + 2; i++) {
		CHECK_INT_EQ(smtp_dovecot_new(4, &c[i]), 0);
		char hs[256];
		snprintf(hs, sizeof(hs),
			 "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tX%d\nDONE\n", i);
		size_t used;
		struct smtp_dovecot_event ev;
		CHECK_INT_EQ(smtp_dovecot_step(c[i], hs, strlen(hs), &used, &ev),
			     SMTP_DOVECOT_EV_READY);
	}
	const char *ep = "unix:/run/dovecot/auth-client";
	uint64_t now = 1000;
	for (int i = 0; i < SVC_SASL_MECH_VERSIONS; i++) {
		CHECK(svc_sasl_directory_publish(d, 0, c[i], now));
		char want[64];
		snprintf(want, sizeof(want), "PLAIN X%d", i);
		CHECK_INT_EQ(svc_sasl_mech_list(d, ep, 0, out, sizeof(out)), strlen(want));
		CHECK_STR_EQ(out, want);
		CHECK_INT_EQ(svc_sasl_mech_list(d, ep, SMTP_DOVECOT_SEC_NOPLAINTEXT, out,
						sizeof(out)), 2);
		CHECK_INT_EQ(svc_sasl_mech_list(d, ep, 0, out, 5), 0); /* does not fit */
		CHECK_STR_EQ(out, "");
	}
	/* a ninth distinct list while the others are fresh: not published (unknown) */
	CHECK(!svc_sasl_directory_publish(d, 0, c[SVC_SASL_MECH_VERSIONS], now));
	CHECK_INT_EQ(svc_sasl_mech_list(d, ep, 0, out, sizeof(out)), 0);
	/* an earlier one again: reused, no new object needed */
	CHECK(svc_sasl_directory_publish(d, 0, c[3], now));
	CHECK_STR_EQ((svc_sasl_mech_list(d, ep, 0, out, sizeof(out)), out), "PLAIN X3");
	CHECK(svc_sasl_directory_publish(d, 0, NULL, now));
	CHECK_INT_EQ(svc_sasl_mech_list(d, ep, 0, out, sizeof(out)), 0);
	/* after the grace period an old object makes room */
	now += SVC_SASL_MECH_GRACE_MS;
	CHECK(svc_sasl_directory_publish(d, 0, c[SVC_SASL_MECH_VERSIONS + 1], now));
	CHECK_STR_EQ((svc_sasl_mech_list(d, ep, 0, out, sizeof(out)), out), "PLAIN X9");
	for (int i = 0; i < SVC_SASL_MECH_VERSIONS + 2; i++)
		smtp_dovecot_free(c[i]);
	svc_sasl_directory_free(d);
	svc_sasl_directory_free(NULL);
}

/* transport: 0 UNIX, 1 TCP to an address, 2 TCP to a name ("localhost": a lookup, maybe
 * ::1 refused first) */
static void test_exchanges(int transport)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	if (transport == 1)
		snprintf(ep, sizeof(ep), "inet:127.0.0.1:%u", (unsigned)f->port);
	else if (transport == 2)
		snprintf(ep, sizeof(ep), "inet:localhost:%u", (unsigned)f->port);
	else
		endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	char list[256];
	CHECK_INT_EQ(svc_sasl_mech_list(w.d, ep, SMTP_DOVECOT_SEC_NOANONYMOUS, list, sizeof(list)),
		     11);
	CHECK_STR_EQ(list, "PLAIN LOGIN");
	svc_sasl_mech_list(w.d, ep, 0, list, sizeof(list));
	CHECK_STR_EQ(list, "PLAIN LOGIN ANONYMOUS");
	svc_sasl_mech_list(w.d, ep, SMTP_DOVECOT_SEC_NOPLAINTEXT, list, sizeof(list));
	CHECK_STR_EQ(list, "ANONYMOUS");
	CHECK_INT_EQ(svc_sasl_mech_list(w.d, ep, SMTP_DOVECOT_SEC_NOPLAINTEXT |
					SMTP_DOVECOT_SEC_NOANONYMOUS, list, sizeof(list)), 0);

	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	char line[1024];
	fake_last(f, "AUTH", line, sizeof(line));
	CHECK(strstr(line, "\tPLAIN\tservice=smtp\t") != NULL);
	CHECK(strstr(line, "\tlip=192.0.2.25\trip=198.51.100.7\t") != NULL);
	CHECK(strstr(line, "\tlport=25\trport=40000\tsecured\tresp=b2s=") != NULL);
	CHECK_INT_EQ(fake_count(f, "VERSION\t1\t"), 1);
	CHECK_INT_EQ(fake_count(f, "CPID\t"), 1);
	expect(&w, start_req(ep, "plain", "fail", 5000), SVC_SASL_FAIL, "bad password");
	expect(&w, start_req(ep, "PLAIN", "temp", 5000), SVC_SASL_TEMPFAIL, "try later");
	/* CONT, then OK */
	uint64_t x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE,
			    "Y2hhbGxlbmdl");
	CHECK(x != 0);
	expect(&w, step_req(ep, SVC_SASL_CONT, x, "ok", 5000), SVC_SASL_OK, "bob");
	/* the exchange is over: another CONT for it is refused */
	expect(&w, step_req(ep, SVC_SASL_CONT, x, "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	/* LOGIN without an initial response: an empty challenge, then a wrong answer */
	x = expect(&w, start_req(ep, "LOGIN", NULL, 5000), SVC_SASL_CONTINUE, "");
	fake_last(f, "AUTH", line, sizeof(line));
	CHECK(strstr(line, "resp=") == NULL);
	expect(&w, step_req(ep, SVC_SASL_CONT, x, "nope", 5000), SVC_SASL_FAIL, "wrong answer");
	/* a CONT that is not base64 ends the exchange at Dovecot too */
	x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE, NULL);
	struct svc_request *r = step_req(ep, SVC_SASL_CONT, x, NULL, 5000);
	r->u.sasl.data = strdup("not base64!");
	r->u.sasl.data_len = strlen(r->u.sasl.data);
	unsigned cancels = fake_count(f, "CANCEL\t");
	expect(&w, r, SVC_SASL_FAIL, SMTP_DOVECOT_REASON_BAD_CONT);
	/* unknown and disallowed mechanisms, a bad initial response */
	expect(&w, start_req(ep, "CRAM-MD5", "ok", 5000), SVC_SASL_BAD_MECH, "");
	expect(&w, start_req(ep, "ANONYMOUS", "ok", 5000), SVC_SASL_BAD_MECH, "");
	r = start_req(ep, "PLAIN", NULL, 5000);
	r->u.sasl.has_initial_response = true;
	r->u.sasl.data = strdup("b2s");
	r->u.sasl.data_len = 3;
	expect(&w, r, SVC_SASL_FAIL, SMTP_DOVECOT_REASON_BAD_INITIAL);
	/* too much data */
	r = start_req(ep, "PLAIN", NULL, 5000);
	r->u.sasl.has_initial_response = true;
	r->u.sasl.data = calloc(1, SVC_SASL_DATA_MAX + 1);
	memset(r->u.sasl.data, 'A', SVC_SASL_DATA_MAX);
	r->u.sasl.data_len = SVC_SASL_DATA_MAX + 1;
	expect(&w, r, SVC_SASL_FAIL, "SASL response limit exceeded");
	/* CANCEL is answered at once and reaches Dovecot */
	x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE, NULL);
	expect(&w, step_req(ep, SVC_SASL_CANCEL, x, NULL, 5000), SVC_SASL_TEMPFAIL, "");
	expect(&w, step_req(ep, SVC_SASL_CANCEL, x, NULL, 5000), SVC_SASL_TEMPFAIL, "");
	for (int i = 0; i < 100 && fake_count(f, "CANCEL\t") < cancels + 2; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_count(f, "CANCEL\t"), cancels + 2);
	/* one connection for all of it */
	CHECK_INT_EQ(fake_accepted(f), 1);
	stop(&w);
	fake_stop(f);
}

static void test_exchanges_unix(void)
{
	test_exchanges(0);
}

static void test_exchanges_tcp(void)
{
	test_exchanges(1);
}

static void test_exchanges_name(void)
{
	test_exchanges(2);
}

/* Deadlines: Dovecot too slow; its late reply is swallowed, its late challenge cancelled;
 * an exchange whose CONT never comes is cancelled. */
static void test_deadlines(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 400, 700);
	CHECK(wait_mechs(&w, ep, 3000));
	uint64_t t0 = mx_clock_monotonic_ms();
	expect(&w, start_req(ep, "PLAIN", "slow", 200), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST); /* the request's deadline */
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 190 && took < 1500);
	t0 = mx_clock_monotonic_ms();
	expect(&w, start_req(ep, "PLAIN", "slow", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST); /* the service's timeout_ms */
	took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 390 && took < 2000);
	/* a request whose deadline passed before the service took it: not sent */
	unsigned auths = fake_count(f, "AUTH\t");
	struct svc_request *r = start_req(ep, "PLAIN", "ok", 0);
	r->deadline_ms = mx_clock_monotonic_ms() - 1;
	struct svc_request *a = ask(&w, r);
	if (a) {
		/* the worker's queue or the service answers it; either way a TEMPFAIL */
		CHECK(a->status == -ETIMEDOUT ||
		      (a->status == 0 && a->u.sasl.result == SVC_SASL_TEMPFAIL));
		svc_request_free(a);
	}
	CHECK_INT_EQ(fake_count(f, "AUTH\t"), auths);
	/* a late OK is swallowed; a late CONT gets a CANCEL */
	expect(&w, start_req(ep, "PLAIN", "late", 200), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	expect(&w, start_req(ep, "PLAIN", "latecont", 200), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	for (int i = 0; i < 200 && fake_count(f, "CANCEL\t") < 1; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_count(f, "CANCEL\t"), 1);
	/* the connection is fine after all that */
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	/* a CONTINUE whose CONT never comes: cancelled after client_wait_ms */
	uint64_t x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE, NULL);
	for (int i = 0; i < 300 && fake_count(f, "CANCEL\t") < 2; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_count(f, "CANCEL\t"), 2);
	expect(&w, step_req(ep, SVC_SASL_CONT, x, "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	CHECK_INT_EQ(fake_accepted(f), 1);
	stop(&w);
	fake_stop(f);
}

/* The connection drops mid-exchange; Dovecot down, then up again. */
static void test_drop_and_restart(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	uint64_t x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE, NULL);
	/* two in flight: one waits for Dovecot when the connection drops */
	CHECK_INT_EQ(svc_submit(w.c, start_req(ep, "PLAIN", "slow", 5000)), 0);
	CHECK_INT_EQ(svc_submit(w.c, start_req(ep, "PLAIN", "drop", 5000)), 0);
	svc_client_flush(w.c);
	CHECK_INT_EQ(wait_answers(&w, 2, 3000), 2);
	for (struct svc_request *a; (a = take(&w));) {
		CHECK_INT_EQ(a->status, 0);
		CHECK_INT_EQ(a->u.sasl.result, SVC_SASL_TEMPFAIL);
		CHECK_STR_EQ(a->u.sasl.text, SMTP_DOVECOT_REASON_CONN_LOST);
		svc_request_free(a);
	}
	/* a CONT of the old connection's exchange, even once a new one is up */
	CHECK(wait_mechs(&w, ep, 3000));
	CHECK_INT_EQ(fake_accepted(f), 2);
	expect(&w, step_req(ep, SVC_SASL_CONT, x, "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");

	char want[256];
	snprintf(want, sizeof(want),
		 "warning: SASL: Connection lost to Dovecot auth socket '%s': closed by the server",
		 f->path);
	CHECK_INT_EQ(count_in_log(want), 1);
	/* Dovecot goes away: TEMPFAIL at once, no mechanisms, one warning */
	truncate_log();
	fake_down(f);
	char list[64];
	for (int i = 0; i < 300 && svc_sasl_mech_list(w.d, ep, 0, list, sizeof(list)); i++)
		usleep(10000);
	CHECK_INT_EQ(svc_sasl_mech_list(w.d, ep, 0, list, sizeof(list)), 0);
	uint64_t t0 = mx_clock_monotonic_ms();
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_NO_SERVER);
	CHECK(mx_clock_monotonic_ms() - t0 < 1000);
	usleep(1200 * 1000); /* several tries (250, 500 ms back-off) */
	snprintf(want, sizeof(want),
		 "warning: SASL: Connect to Dovecot auth socket '%s' failed: No such file or "
		 "directory", f->path);
	CHECK_INT_EQ(count_in_log(want), 1);
	/* the drop within a minute of the last one is counted, not logged */
	CHECK_INT_EQ(count_in_log("warning: SASL: Connection lost to Dovecot auth socket"), 0);
	/* up again: it reconnects by itself */
	fake_up(f);
	CHECK(wait_mechs(&w, ep, 5000));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	CHECK_INT_EQ(count_in_log("SASL: connected to Dovecot auth socket"), 1);
	stop(&w);
	fake_stop(f);
}

/* Dovecot speaks nonsense: warning, TEMPFAIL, reconnect. */
static void test_protocol_error(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	truncate_log();
	expect(&w, start_req(ep, "PLAIN", "garbage", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	CHECK_INT_EQ(count_in_log("warning: SASL: Protocol error on Dovecot auth socket"), 1);
	CHECK(wait_mechs(&w, ep, 3000));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	stop(&w);
	fake_stop(f);

	/* a handshake with another major version never becomes ready */
	f = fake_start(dir, "VERSION\t2\t0\nDONE\n");
	endpoint_of(f, ep, sizeof(ep));
	start(&w, ep, 3000, 0);
	CHECK(!wait_mechs(&w, ep, 500));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_NO_SERVER);
	stop(&w);
	fake_stop(f);
}

/* Requests the worker gave up on must not leave exchanges at Dovecot. */
static void test_cancelled(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	/* cancelled before the service saw it: never sent */
	struct svc_request *r = start_req(ep, "PLAIN", "cont", 5000);
	svc_request_cancel(r);
	struct svc_request *a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -ECANCELED);
		CHECK_INT_EQ(a->u.sasl.result, SVC_SASL_TEMPFAIL);
		svc_request_free(a);
	}
	CHECK_INT_EQ(fake_count(f, "AUTH\t"), 0);
	/* cancelled while Dovecot works on it; its challenge gets a CANCEL */
	r = start_req(ep, "PLAIN", "latecont", 5000);
	CHECK_INT_EQ(svc_submit(w.c, r), 0);
	svc_client_flush(w.c);
	usleep(100 * 1000);
	svc_request_cancel(r);
	wait_answers(&w, 1, 3000);
	a = take(&w);
	CHECK(a == r);
	if (a) {
		CHECK_INT_EQ(a->status, -ECANCELED);
		svc_request_free(a);
	}
	for (int i = 0; i < 100 && fake_count(f, "CANCEL\t") < 1; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_count(f, "CANCEL\t"), 1);
	/* a cancelled CONT: CANCEL instead of CONT */
	uint64_t x = expect(&w, start_req(ep, "PLAIN", "cont", 5000), SVC_SASL_CONTINUE, NULL);
	r = step_req(ep, SVC_SASL_CONT, x, "ok", 5000);
	svc_request_cancel(r);
	a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -ECANCELED);
		svc_request_free(a);
	}
	for (int i = 0; i < 100 && fake_count(f, "CANCEL\t") < 2; i++)
		usleep(10000);
	CHECK_INT_EQ(fake_count(f, "CANCEL\t"), 2);
	CHECK_INT_EQ(fake_count(f, "CONT\t"), 0);
	stop(&w);
	fake_stop(f);
}

static void test_bad_requests(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, NULL, 3000, 0); /* nothing wanted yet */
	/* a request names the endpoint first: TEMPFAIL now, connected soon after */
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_NO_SERVER);
	CHECK(wait_mechs(&w, ep, 3000));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	/* invalid: empty endpoint, unterminated mech, bad op, data without bytes */
	struct svc_request *r = start_req("", "PLAIN", "ok", 5000);
	struct svc_request *a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -EINVAL);
		svc_request_free(a);
	}
	r = start_req(ep, "PLAIN", "ok", 5000);
	memset(r->u.sasl.mech, 'A', sizeof(r->u.sasl.mech));
	a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -EINVAL);
		svc_request_free(a);
	}
	r = start_req(ep, "PLAIN", NULL, 5000);
	r->u.sasl.op = SVC_SASL_OP_MAX;
	a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -EINVAL);
		svc_request_free(a);
	}
	r = start_req(ep, "PLAIN", NULL, 5000);
	r->u.sasl.data_len = 4;
	a = ask(&w, r);
	if (a) {
		CHECK_INT_EQ(a->status, -EINVAL);
		svc_request_free(a);
	}
	/* an endpoint that cannot be used: one warning for many requests */
	truncate_log();
	expect(&w, start_req("tcp:nowhere", "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_NO_SERVER);
	expect(&w, start_req("tcp:nowhere", "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_NO_SERVER);
	CHECK_INT_EQ(count_in_log("warning: SASL: cannot use Dovecot auth socket 'tcp:nowhere': "
				  "bad endpoint syntax"), 1);
	/* exchanges made up */
	expect(&w, step_req(ep, SVC_SASL_CONT, 12345, "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	expect(&w, step_req(ep, SVC_SASL_CANCEL, 12345, NULL, 5000), SVC_SASL_TEMPFAIL, "");
	expect(&w, step_req("unix:/nowhere/x", SVC_SASL_CONT, 1, "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	stop(&w);
	fake_stop(f);
}

static void count_answer(void *arg, struct svc_request *r)
{
	unsigned *n = arg;
	if (r->status == 0 && r->u.sasl.result == SVC_SASL_TEMPFAIL)
		(*n)++;
	svc_request_free(r);
}

/* Dovecot never answers requests given up on: once they fill the table the connection is
 * made afresh rather than refusing every AUTH. */
static void test_stuck(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	unsigned n = 0, want = 4096;
	for (unsigned i = 0; i < want; i++)
		CHECK_INT_EQ(svc_submit(w.c, start_req(ep, "PLAIN", "slow", 200)), 0);
	svc_client_flush(w.c);
	uint64_t end = mx_clock_monotonic_ms() + 10000;
	while (n < want && mx_clock_monotonic_ms() < end) {
		struct pollfd pf = { .fd = w.wake, .events = POLLIN };
		poll(&pf, 1, 20);
		eventfd_t v;
		eventfd_read(w.wake, &v);
		svc_client_poll(w.c, count_answer, &n);
	}
	CHECK_INT_EQ(n, want);
	truncate_log();
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_TEMPFAIL,
	       SMTP_DOVECOT_REASON_CONN_LOST);
	CHECK_INT_EQ(count_in_log("requests unanswered: reconnecting"), 1);
	CHECK(wait_mechs(&w, ep, 3000));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	CHECK_INT_EQ(fake_accepted(f), 2);
	stop(&w);
	fake_stop(f);
}

/* Stop with an exchange waiting for Dovecot, and the statistics line. */
static void test_stop_and_statistics(void)
{
	struct fake_dovecot *f = fake_start(dir, NULL);
	char ep[SVC_ENDPOINT_MAX];
	endpoint_of(f, ep, sizeof(ep));
	struct worker w;
	start(&w, ep, 3000, 0);
	CHECK(wait_mechs(&w, ep, 3000));
	expect(&w, start_req(ep, "PLAIN", "ok", 5000), SVC_SASL_OK, "alice");
	expect(&w, start_req(ep, "PLAIN", "fail", 5000), SVC_SASL_FAIL, NULL);
	truncate_log();
	svc_set_log_statistics(w.set, "SIGUSR1");
	CHECK_INT_EQ(count_in_log("sasl statistics (SIGUSR1): requests=2 ok=1 continue=0 fail=1 "
				  "tempfail=0 bad_mech=0 no_server=0 conn_lost=0 timeouts=0 "
				  "cancels=0 connects=1 drops=0"), 1);
	struct svc_request *r = start_req(ep, "PLAIN", "slow", 60000);
	CHECK_INT_EQ(svc_submit(w.c, r), 0);
	svc_client_flush(w.c);
	for (int i = 0; i < 100 && fake_count(f, "AUTH\t") < 3; i++)
		usleep(10000);
	svc_set_stop(w.set); /* answers it -ECANCELED */
	svc_client_poll(w.c, on_answer, &w);
	CHECK_INT_EQ(w.ngot, 1);
	if (w.ngot == 1)
		CHECK_INT_EQ(w.got[0]->status, -ECANCELED);
	char list[64];
	CHECK_INT_EQ(svc_sasl_mech_list(w.d, ep, 0, list, sizeof(list)), 0);
	stop(&w); /* a second svc_set_stop() is a no-op */
	fake_stop(f);
}

int main(void)
{
	snprintf(log_path, sizeof(log_path), "/tmp/test_sasl_svc-%d.log", (int)getpid());
	snprintf(dir, sizeof(dir), "/tmp/test_sasl_svc-%d.d", (int)getpid());
	unlink(log_path);
	if (mkdir(dir, 0700) < 0 || mx_log_open(log_path, "test", "mxgate") != 0) {
		fprintf(stderr, "cannot set up %s\n", dir);
		return 1;
	}
	RUN_TEST(test_names);
	RUN_TEST(test_directory);
	RUN_TEST(test_exchanges_unix);
	RUN_TEST(test_exchanges_tcp);
	RUN_TEST(test_exchanges_name);
	RUN_TEST(test_deadlines);
	RUN_TEST(test_drop_and_restart);
	RUN_TEST(test_protocol_error);
	RUN_TEST(test_cancelled);
	RUN_TEST(test_bad_requests);
	RUN_TEST(test_stuck);
	RUN_TEST(test_stop_and_statistics);
	mx_log_close();
	rmdir(dir);
	if (testing_failures == 0)
		unlink(log_path);
	return TEST_RESULT();
}
