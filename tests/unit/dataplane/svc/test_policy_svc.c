/* The policy service (dataplane/svc/svc_policy.h) against a scripted policy server
 * (policy_server.h) over TCP (IPv4 and IPv6) and a UNIX socket: replies parsed and bad
 * ones refused without a crash (random replies checked against the reply reader itself),
 * one connection for many requests, reconnects for request_limit, max_idle and max_ttl,
 * a timeout then a retry then the failure within the deadline, refused connections,
 * host names looked up, bounded pools, two workers at once, a stop with requests in
 * flight, and the Postfix-style warnings and the statistics line in the log. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_policy.h"
#include "dataplane/svc/svc_policy_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "policy_server.h"
#include "smtp/smtp_address.h"
#include "smtp/smtp_delegation.h"
#include "testing.h"

static char log_path[128];

/* ---- a worker's side ---- */

struct worker {
	struct svc_set *set;
	struct svc_client *c;
	int wake;
	struct svc_request *got[256];
	unsigned ngot;
};

static struct svc_policy_params test_params(void)
{
	struct svc_policy_params p;
	svc_policy_params_init(&p);
	p.retry_delay_ms = 100; /* Postfix's 1s would make the tests slow */
	return p;
}

static void start(struct worker *w, const struct svc_policy_params *pp, unsigned workers)
{
	memset(w, 0, sizeof(*w));
	struct svc_set_params sp = { .workers = workers, .ops = { [SVC_POLICY] = &svc_policy_ops },
				     .params = { [SVC_POLICY] = pp } };
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

/* Limits per request, as the evaluator fills them from smtpd_policy_service_*. */
struct limits {
	uint32_t timeout_ms, max_idle_ms, max_ttl_ms, deadline_ms;
	unsigned try_limit, request_limit;
	uint32_t retry_delay_ms; /* 0: the service's */
};

static const struct limits defaults = { .timeout_ms = 3000, .max_idle_ms = 300000,
					.max_ttl_ms = 1000000, .deadline_ms = 10000,
					.try_limit = 2 };

/* A request to endpoint whose recipient is the server's script. */
static struct svc_request *request(const char *endpoint, const char *script,
				   const struct limits *l)
{
	struct svc_request *r = svc_request_new(SVC_POLICY);
	snprintf(r->u.policy.endpoint, sizeof(r->u.policy.endpoint), "%s", endpoint);
	r->u.policy.timeout_ms = l->timeout_ms;
	r->u.policy.max_idle_ms = l->max_idle_ms;
	r->u.policy.max_ttl_ms = l->max_ttl_ms;
	r->u.policy.try_limit = l->try_limit;
	r->u.policy.request_limit = l->request_limit;
	r->u.policy.retry_delay_ms = l->retry_delay_ms;
	r->deadline_ms = mx_clock_monotonic_ms() + l->deadline_ms;
	struct smtp_delegation_request q;
	smtp_delegation_request_init(&q);
	q.protocol_state = SMTP_DELEGATION_RCPT;
	q.protocol_name = "ESMTP";
	q.client_address = "192.0.2.1";
	q.client_name = "mail.example.test";
	q.helo_name = "mail.example.test";
	q.sender = "a@example.org";
	q.recipient = script;
	size_t len = 0;
	int rc = smtp_delegation_request_encode(&q, NULL, 0, &len);
	CHECK_INT_EQ(rc, -ENOSPC);
	r->u.policy.request = malloc(len);
	rc = smtp_delegation_request_encode(&q, r->u.policy.request, len, &r->u.policy.request_len);
	CHECK_INT_EQ(rc, 0);
	return r;
}

static void on_answer(void *arg, struct svc_request *r)
{
	struct worker *w = arg;
	if (w->ngot < sizeof(w->got) / sizeof(w->got[0]))
		w->got[w->ngot++] = r;
	else
		svc_request_free(r);
}

static void submit(struct worker *w, struct svc_request *r)
{
	CHECK_INT_EQ(svc_submit(w->c, r), 0);
	svc_client_flush(w->c);
}

/* Wait until n answers arrived (or ms passed). Returns how many arrived. */
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

/* Take the answers collected so far (oldest first) and forget them. */
static struct svc_request *take(struct worker *w)
{
	if (w->ngot == 0)
		return NULL;
	struct svc_request *r = w->got[0];
	memmove(w->got, w->got + 1, (w->ngot - 1) * sizeof(w->got[0]));
	w->ngot--;
	return r;
}

/* One request, answered: its status, the action copied into action (may be NULL). */
static int ask(struct worker *w, const char *endpoint, const char *script,
	       const struct limits *l, char *action, size_t cap)
{
	submit(w, request(endpoint, script, l));
	CHECK_INT_EQ(wait_answers(w, 1, l->deadline_ms + 5000), 1);
	struct svc_request *r = take(w);
	if (!r)
		return -999;
	int status = r->status;
	if (action)
		snprintf(action, cap, "%s", r->u.policy.action ? r->u.policy.action : "");
	/* an answer has its action; a failure none */
	CHECK((status == 0) == (r->u.policy.action != NULL));
	if (r->u.policy.action)
		CHECK(strlen(r->u.policy.action) <= SVC_POLICY_ACTION_MAX);
	svc_request_free(r);
	return status;
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

/* The value of name=NUMBER in the last statistics line. */
static long stat_of(const char *name)
{
	char *log = read_log();
	const char *line = NULL;
	for (char *p = strstr(log, "policy statistics"); p; p = strstr(p + 1, "policy statistics"))
		line = p;
	long v = -1;
	if (line) {
		char key[64];
		snprintf(key, sizeof(key), " %s=", name);
		const char *k = strstr(line, key);
		const char *eol = strchr(line, '\n');
		if (k && (!eol || k < eol))
			v = strtol(k + strlen(key), NULL, 10);
	}
	free(log);
	return v;
}

static long stats(struct worker *w, const char *name)
{
	svc_set_log_statistics(w->set, "test");
	return stat_of(name);
}

/* ---- endpoints ---- */

static void check_endpoint(const char *text, int want, bool numeric, const char *host,
			   const char *port)
{
	/* in a heap buffer of exactly its size, so a read past the end is caught */
	size_t n = strlen(text);
	char *copy = malloc(n + 1);
	memcpy(copy, text, n + 1);
	struct svc_policy_target t;
	char err[256] = "";
	int rc = svc_policy_target_parse(copy, &t, err, sizeof(err));
	if (rc != want)
		fprintf(stderr, "endpoint \"%s\": %d (%s), expected %d\n", text, rc, err, want);
	CHECK_INT_EQ(rc, want);
	CHECK_INT_EQ(svc_policy_endpoint_check(copy, err, sizeof(err)), want);
	if (rc == 0) {
		CHECK_INT_EQ(t.numeric, numeric);
		if (host)
			CHECK_STR_EQ(t.host, host);
		if (port)
			CHECK_STR_EQ(t.port, port);
	} else {
		CHECK(err[0] != '\0');
	}
	/* every prefix parses or fails, without reading past its end */
	for (size_t k = 0; k < n; k++) {
		char *pre = malloc(k + 1);
		memcpy(pre, text, k);
		pre[k] = '\0';
		int prc = svc_policy_target_parse(pre, &t, err, sizeof(err));
		CHECK(prc == 0 || prc == -EINVAL || prc == -ENAMETOOLONG);
		free(pre);
	}
	free(copy);
}

static void test_endpoints(void)
{
	check_endpoint("inet:127.0.0.1:10023", 0, true, "127.0.0.1", "10023");
	check_endpoint("inet:localhost:10023", 0, false, "localhost", "10023");
	check_endpoint("inet:policy.example.com:10023", 0, false, "policy.example.com", "10023");
	check_endpoint("inet:[::1]:10023", 0, true, "::1", "10023");
	check_endpoint("inet:[IPv6:2001:db8::1]:9998", 0, true, "2001:db8::1", "9998");
	check_endpoint("inet:::1:10023", 0, true, "::1", "10023"); /* split at the last ':' */
	check_endpoint("inet::10023", 0, false, "localhost", "10023");
	check_endpoint("inet:10023", 0, false, "localhost", "10023");
	check_endpoint("inet:127.0.0.1:postgrey", 0, false, "127.0.0.1", "postgrey");
	check_endpoint("unix:/var/spool/postfix/private/policy", 0, true, NULL, NULL);
	check_endpoint("unix:private/policyd-spf", 0, true, NULL, NULL);
	check_endpoint("local:/run/policy.sock", 0, true, NULL, NULL);
	check_endpoint("inet:", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:127.0.0.1:", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:[::1]", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:[::1]:", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:[::1", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:[::1]x:1", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:[IPv6:10.0.0.1]:1", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:127.0.0.1:0", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:127.0.0.1:65536", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:127.0.0.1:12ab", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:bad host:1", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:-bad.example:1", -EINVAL, false, NULL, NULL);
	check_endpoint("inet:a..b:1", -EINVAL, false, NULL, NULL);
	check_endpoint("tcp:127.0.0.1:1", -EINVAL, false, NULL, NULL);
	check_endpoint("127.0.0.1:10023", -EINVAL, false, NULL, NULL);
	check_endpoint("unix:", -EINVAL, false, NULL, NULL);
	check_endpoint(":x", -EINVAL, false, NULL, NULL);
	check_endpoint("", -EINVAL, false, NULL, NULL);
	char path[200] = "unix:/";
	memset(path + 6, 'p', 150);
	path[156] = '\0';
	check_endpoint(path, -ENAMETOOLONG, false, NULL, NULL);
	char longname[SVC_ENDPOINT_MAX + 10];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memcpy(longname, "inet:", 5);
	check_endpoint(longname, -ENAMETOOLONG, false, NULL, NULL);

	for (int s = 0; s < SVC_POLICY_JOB_STATE_MAX; s++)
		CHECK(strcmp(svc_policy_job_state_name((enum svc_policy_job_state)s), "?") != 0);
	for (int s = 0; s < SVC_POLICY_CONN_STATE_MAX; s++)
		CHECK(strcmp(svc_policy_conn_state_name((enum svc_policy_conn_state)s), "?") != 0);
	CHECK_STR_EQ(svc_policy_job_state_name(SVC_POLICY_JOB_STATE_MAX), "?");
	CHECK_STR_EQ(svc_policy_conn_state_name(SVC_POLICY_CONN_STATE_MAX), "?");
}

/* ---- replies ---- */

static void hexify(const char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[(unsigned char)p[i] >> 4];
		out[2 * i + 1] = digits[(unsigned char)p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int ask_raw(struct worker *w, struct psrv *s, const char *bytes, size_t n, bool close_after,
		   const struct limits *l, char *action, size_t cap)
{
	char script[4200];
	strcpy(script, close_after ? "hexclose:" : "hex:");
	hexify(bytes, n, script + strlen(script));
	return ask(w, s->endpoint, script, l, action, cap);
}

#define RAW(s) (s), sizeof(s) - 1

static void test_replies(int family)
{
	struct psrv *s = psrv_start(family, true);
	CHECK(s != NULL);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	char action[SVC_POLICY_ACTION_MAX];
	struct limits l = defaults;

	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:DUNNO", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "DUNNO");
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:DEFER_IF_PERMIT Greylisted, see x", &l, action,
			 sizeof(action)),
		     0);
	CHECK_STR_EQ(action, "DEFER_IF_PERMIT Greylisted, see x");
	/* what the evaluator classifies, the service passes through untouched */
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:5.7.2", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "5.7.2");
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:550", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "550");
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "");
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:a=b=c \xc3\xa9t\xc3\xa9", &l, action, sizeof(action)),
		     0);
	CHECK_STR_EQ(action, "a=b=c \xc3\xa9t\xc3\xa9");
	CHECK_INT_EQ(ask_raw(&w, s, RAW("foo=bar\naction=REJECT no\naction=OK\nx=\n\n"), false, &l,
			     action, sizeof(action)),
		     0);
	CHECK_STR_EQ(action, "REJECT no");
	/* the longest action the reader takes, and one octet more */
	static char script[SMTP_DELEGATION_VALUE_MAX + 1];
	memcpy(script, "ok:", 3);
	memset(script + 3, 'A', SMTP_DELEGATION_ACTION_MAX);
	script[3 + SMTP_DELEGATION_ACTION_MAX] = '\0';
	CHECK_INT_EQ(ask(&w, s->endpoint, script, &l, action, sizeof(action)), 0);
	CHECK_INT_EQ(strlen(action), SMTP_DELEGATION_ACTION_MAX);
	CHECK_INT_EQ(action[0], 'A');
	strcat(script, "A");
	CHECK_INT_EQ(ask(&w, s->endpoint, script, &l, NULL, 0), -EMSGSIZE);

	/* malformed replies: the reader's errors, each after try_limit tries */
	CHECK_INT_EQ(ask_raw(&w, s, RAW("result=DUNNO\n\n"), false, &l, action, sizeof(action)),
		     -ENOMSG);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action=DUNNO\r\n\r\n"), false, &l, NULL, 0), -EBADMSG);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action=DU\0NNO\n\n"), false, &l, NULL, 0), -EBADMSG);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action\n\n"), false, &l, NULL, 0), -EBADMSG);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("=DUNNO\n\n"), false, &l, NULL, 0), -EBADMSG);
	CHECK_INT_EQ(ask(&w, s->endpoint, "huge", &l, NULL, 0), -EMSGSIZE);
	char many[70 * 4 + 16] = "";
	for (int i = 0; i < 70; i++)
		strcat(many, "x=1\n");
	strcat(many, "action=OK\n\n");
	CHECK_INT_EQ(ask_raw(&w, s, many, strlen(many), false, &l, NULL, 0), -EMSGSIZE);
	/* not UTF-8 under smtputf8: not retried, and the connection stays */
	long failed_before = stats(&w, "fail_malformed");
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action=REJECT \xff\xfe\n\n"), false, &l, NULL, 0), -EILSEQ);
	CHECK_INT_EQ(stats(&w, "fail_malformed"), failed_before);
	CHECK_INT_EQ(stats(&w, "bad_utf8"), 1);
	/* half a reply, then the server closes; no reply at all */
	CHECK_INT_EQ(ask(&w, s->endpoint, "half", &l, NULL, 0), -ECONNRESET);
	CHECK_INT_EQ(ask(&w, s->endpoint, "close", &l, NULL, 0), -ECONNRESET);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action=OK\n"), true, &l, NULL, 0), -ECONNRESET);
	/* a reply followed by more: the action counts, the connection goes */
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:DUNNO", &l, action, sizeof(action)), 0);
	int accepted = atomic_load(&s->accepted);
	CHECK_INT_EQ(ask(&w, s->endpoint, "trail:OK", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "OK");
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:DUNNO", &l, action, sizeof(action)), 0);
	CHECK_INT_EQ(atomic_load(&s->accepted), accepted + 1);
	CHECK_INT_EQ(atomic_load(&s->bad), 0);

	char *log = read_log();
	CHECK(strstr(log, "warning: problem talking to server ") != NULL);
	CHECK(strstr(log, "warning: malformed UTF-8 in policy server ") != NULL);
	free(log);
	stop(&w);

	/* smtputf8 off: the same reply is taken as it is */
	pp.smtputf8 = false;
	start(&w, &pp, 1);
	CHECK_INT_EQ(ask_raw(&w, s, RAW("action=REJECT \xff\n\n"), false, &l, action, sizeof(action)),
		     0);
	CHECK_STR_EQ(action, "REJECT \xff");
	stop(&w);
	psrv_stop(s);
}

static void test_replies_tcp(void)
{
	test_replies(AF_INET);
}

static void test_replies_unix(void)
{
	test_replies(AF_UNIX);
}

/* Random replies: whatever the bytes, the service answers what the reply reader itself
 * makes of them (and never crashes, never leaves the action unterminated). */
static void test_random_replies(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.try_limit = 1;
	static const char *const pieces[] = { "action", "=", "\n", "\n\n", "\r", "DUNNO",
					      "5.7.2", " ", "x", "\xc3\xa9", "\xff", "550 ",
					      "action=", "a=b\n", "" };
	unsigned seed = 12345;
	for (int iter = 0; iter < 400; iter++) {
		char reply[1500];
		size_t n = 0;
		int parts = (int)(rand_r(&seed) % 12);
		if (rand_r(&seed) % 2)
			n += (size_t)snprintf(reply, sizeof(reply), "action=");
		for (int k = 0; k < parts && n < 1000; k++) {
			unsigned pick = (unsigned)rand_r(&seed) % (sizeof(pieces) / sizeof(pieces[0]) + 1);
			if (pick == sizeof(pieces) / sizeof(pieces[0])) {
				reply[n++] = (char)(rand_r(&seed) & 0xff); /* any byte, NUL too */
			} else {
				size_t m = strlen(pieces[pick]);
				memcpy(reply + n, pieces[pick], m);
				n += m;
			}
		}
		if (rand_r(&seed) % 3)
			reply[n++] = '\n', reply[n++] = '\n';
		/* the oracle: the codec on the whole reply */
		struct smtp_delegation_reader rd;
		smtp_delegation_reader_init(&rd, 0);
		size_t used;
		int rc = n ? smtp_delegation_reader_feed(&rd, reply, n, &used) : 0;
		int want;
		char want_action[SVC_POLICY_ACTION_MAX] = "";
		if (rc == 1) {
			struct mx_span a = smtp_delegation_reader_action(&rd);
			want = smtp_utf8_valid(a.ptr, a.len) ? 0 : -EILSEQ;
			if (want == 0)
				memcpy(want_action, a.ptr, a.len);
		} else if (rc == 0) {
			want = -ECONNRESET; /* incomplete, then the server closed */
		} else {
			want = rc;
		}
		char action[SVC_POLICY_ACTION_MAX];
		int got = ask_raw(&w, s, reply, n, true, &l, action, sizeof(action));
		if (got != want)
			fprintf(stderr, "random reply %d: got %d, want %d\n", iter, got, want);
		CHECK_INT_EQ(got, want);
		if (got == 0)
			CHECK_STR_EQ(action, want_action);
	}
	stop(&w);
	psrv_stop(s);
}

/* ---- connections ---- */

static void test_reuse(int family)
{
	struct psrv *s = psrv_start(family, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	for (int i = 1; i <= 50; i++) {
		char action[256], want[64];
		CHECK_INT_EQ(ask(&w, s->endpoint, "id:DUNNO", &defaults, action, sizeof(action)), 0);
		snprintf(want, sizeof(want), "DUNNO conn=1 req=%d", i);
		CHECK_STR_EQ(action, want);
	}
	CHECK_INT_EQ(atomic_load(&s->accepted), 1);
	CHECK_INT_EQ(stats(&w, "conns_opened"), 1);
	CHECK_INT_EQ(stats(&w, "conns_reused"), 49);
	CHECK_INT_EQ(stats(&w, "replies"), 50);
	CHECK_INT_EQ(stats(&w, "conns_open"), 1);
	CHECK_INT_EQ(stats(&w, "conns_idle"), 1);
	CHECK_INT_EQ(stats(&w, "in_flight"), 0);
	stop(&w);
	psrv_stop(s);
}

static void test_reuse_tcp(void)
{
	test_reuse(AF_INET);
}

static void test_reuse_tcp6(void)
{
	test_reuse(AF_INET6);
}

static void test_reuse_unix(void)
{
	test_reuse(AF_UNIX);
}

static void test_request_limit(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.request_limit = 3;
	for (int i = 1; i <= 10; i++) {
		char action[256], want[64];
		CHECK_INT_EQ(ask(&w, s->endpoint, "id:OK", &l, action, sizeof(action)), 0);
		snprintf(want, sizeof(want), "OK conn=%d req=%d", (i - 1) / 3 + 1, (i - 1) % 3 + 1);
		CHECK_STR_EQ(action, want);
	}
	CHECK_INT_EQ(atomic_load(&s->accepted), 4);
	CHECK_INT_EQ(atomic_load(&s->max_on_conn), 3);
	CHECK_INT_EQ(stats(&w, "conns_closed_limit"), 3);
	stop(&w);
	psrv_stop(s);
}

static void test_max_idle(void)
{
	struct psrv *s = psrv_start(AF_UNIX, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.max_idle_ms = 150;
	char action[256];
	CHECK_INT_EQ(ask(&w, s->endpoint, "id:OK", &l, action, sizeof(action)), 0);
	CHECK_INT_EQ(ask(&w, s->endpoint, "id:OK", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "OK conn=1 req=2"); /* within max_idle: the same connection */
	usleep(500 * 1000);
	/* the service closed the idle connection by itself: the server saw it go */
	CHECK_INT_EQ(atomic_load(&s->eofs), 1);
	CHECK_INT_EQ(stats(&w, "conns_closed_idle"), 1);
	CHECK_INT_EQ(stats(&w, "conns_open"), 0);
	CHECK_INT_EQ(ask(&w, s->endpoint, "id:OK", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "OK conn=2 req=1");
	stop(&w);
	psrv_stop(s);
}

static void test_max_ttl(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.max_ttl_ms = 250;
	l.max_idle_ms = 0; /* no idle limit: only the age closes */
	uint64_t t0 = mx_clock_monotonic_ms();
	int n = 0;
	while (mx_clock_monotonic_ms() - t0 < 1000) {
		CHECK_INT_EQ(ask(&w, s->endpoint, "ok:OK", &l, NULL, 0), 0);
		n++;
		usleep(50 * 1000);
	}
	int accepted = atomic_load(&s->accepted);
	/* about one connection per 250 ms over 1 s, never one per request */
	CHECK(accepted >= 3 && accepted <= 6);
	CHECK(n > accepted * 2);
	CHECK(stats(&w, "conns_closed_ttl") >= 2);
	/* the age never cuts a request short: a reply that takes longer than the TTL */
	char action[64];
	CHECK_INT_EQ(ask(&w, s->endpoint, "delay:400:SLOW", &l, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "SLOW");
	stop(&w);
	psrv_stop(s);
}

/* A server closed the pooled connection (a restart): the next request still succeeds, on
 * a new connection, without a retry. */
static void test_server_restart(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:OK", &defaults, NULL, 0), 0);
	psrv_drop_all(s);
	usleep(100 * 1000);
	char action[64];
	CHECK_INT_EQ(ask(&w, s->endpoint, "id:OK", &defaults, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "OK conn=2 req=1");
	CHECK_INT_EQ(stats(&w, "retries"), 0);
	CHECK_INT_EQ(stats(&w, "conns_closed_peer"), 1);

	/* the server closes as the request arrives (a close that crosses it): sent again
	 * at once on a new connection, costing no try (try_limit 1 here) and no delay */
	struct limits l = defaults;
	l.try_limit = 1;
	int accepted = atomic_load(&s->accepted);
	CHECK_INT_EQ(ask(&w, s->endpoint, "first:A", &l, action, sizeof(action)), 0);
	uint64_t t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "first:B", &l, action, sizeof(action)), 0);
	CHECK(mx_clock_monotonic_ms() - t0 < 90); /* under the retry delay */
	CHECK_STR_EQ(action, "B");
	/* the pooled connection (conn=2) failed A over to a new one, which failed B over */
	CHECK_INT_EQ(atomic_load(&s->accepted), accepted + 2);
	CHECK_INT_EQ(stats(&w, "stale_resent"), 2);
	CHECK_INT_EQ(stats(&w, "retries"), 0);
	/* a fresh connection that fails the same way is a failed try */
	CHECK_INT_EQ(ask(&w, s->endpoint, "close", &l, NULL, 0), -ECONNRESET);
	CHECK_INT_EQ(stats(&w, "stale_resent"), 3); /* (the pooled one first) */
	CHECK_INT_EQ(stats(&w, "fail_closed"), 1);

	/* a server that closes after every reply, queried back to back */
	for (int i = 0; i < 30; i++) {
		static const char reply[] = "action=OK\n\n";
		CHECK_INT_EQ(ask_raw(&w, s, reply, sizeof(reply) - 1, true, &l, NULL, 0), 0);
	}
	CHECK_INT_EQ(stats(&w, "retries"), 0);
	stop(&w);
	psrv_stop(s);
}

/* ---- failures, retries, deadlines ---- */

static void test_timeout_retry(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.timeout_ms = 200;
	l.deadline_ms = 3000;
	uint64_t t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "never", &l, NULL, 0), -ETIMEDOUT);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	/* try 200 ms, delay 100 ms, try 200 ms */
	CHECK(took >= 480 && took < 1500);
	CHECK_INT_EQ(atomic_load(&s->requests), 2);
	CHECK_INT_EQ(atomic_load(&s->accepted), 2); /* the retry used a fresh connection */
	CHECK_INT_EQ(stats(&w, "retries"), 1);
	CHECK_INT_EQ(stats(&w, "fail_timeout"), 2);
	CHECK_INT_EQ(stats(&w, "failed"), 1);

	/* the request's own retry delay (a service's smtpd_policy_service_retry_delay) wins
	 * over the service's default: try 200 ms, delay 700 ms, try 200 ms */
	l.retry_delay_ms = 700;
	t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "never", &l, NULL, 0), -ETIMEDOUT);
	took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 1080 && took < 2500);
	CHECK_INT_EQ(atomic_load(&s->requests), 4);
	l.retry_delay_ms = 0;

	/* the first try fails (the server closes), the retry succeeds */
	CHECK_INT_EQ(ask(&w, s->endpoint, "flaky:PERMIT", &l, NULL, 0), 0);
	CHECK_INT_EQ(stats(&w, "retries"), 3);
	CHECK_INT_EQ(stats(&w, "fail_closed"), 1);

	/* the deadline comes before the per-try timeout: answered at the deadline */
	l.timeout_ms = 10000;
	l.deadline_ms = 300;
	t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "never", &l, NULL, 0), -ETIMEDOUT);
	took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 290 && took < 800);

	/* no room for a retry before the deadline: the first failure is the answer */
	l.timeout_ms = 200;
	l.deadline_ms = 250;
	t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "never", &l, NULL, 0), -ETIMEDOUT);
	took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 190 && took < 700);

	/* try_limit 0: tries until the deadline */
	l.timeout_ms = 100;
	l.deadline_ms = 1000;
	l.try_limit = 0;
	int before = atomic_load(&s->requests);
	t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "close", &l, NULL, 0), -ECONNRESET);
	took = mx_clock_monotonic_ms() - t0;
	CHECK(took < 1500);
	CHECK(atomic_load(&s->requests) - before >= 5); /* every 100 ms for a second */

	/* a deadline already passed */
	struct svc_request *r = request(s->endpoint, "ok:OK", &defaults);
	r->deadline_ms = mx_clock_monotonic_ms() - 1;
	submit(&w, r);
	CHECK_INT_EQ(wait_answers(&w, 1, 2000), 1);
	r = take(&w);
	CHECK_INT_EQ(r ? r->status : 0, -ETIMEDOUT);
	svc_request_free(r);
	stop(&w);
	psrv_stop(s);
}

/* A request whose session went away before it was sent (svc_request_cancel()) is answered
 * -ECANCELED without taking one of the server's connections. */
static void test_cancelled_unsent(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	pp.conns_per_endpoint = 1; /* the second request waits for the first's connection */
	struct worker w;
	start(&w, &pp, 1);
	struct svc_request *first = request(s->endpoint, "delay:300:DUNNO", &defaults);
	struct svc_request *second = request(s->endpoint, "ok:OK", &defaults);
	submit(&w, first);
	submit(&w, second);
	svc_request_cancel(second);
	CHECK_INT_EQ(wait_answers(&w, 2, 5000), 2);
	/* the cancelled one comes back first: it need not wait for the connection */
	struct svc_request *b = take(&w), *a = take(&w);
	CHECK(a == first && b == second);
	CHECK_INT_EQ(a ? a->status : -1, 0);
	CHECK_INT_EQ(b ? b->status : 0, -ECANCELED);
	CHECK_INT_EQ(atomic_load(&s->requests), 1); /* the server never saw the second */
	CHECK_INT_EQ(stats(&w, "cancelled"), 1);
	svc_request_free(a);
	svc_request_free(b);
	stop(&w);
	psrv_stop(s);
}

static void test_refused(void)
{
	struct svc_policy_params pp = test_params();
	struct worker w;
	truncate_log();
	start(&w, &pp, 1);
	struct limits l = defaults;
	/* TCP: a port bound but not listening */
	struct psrv *s = psrv_start(AF_INET, false);
	uint64_t t0 = mx_clock_monotonic_ms();
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:OK", &l, NULL, 0), -ECONNREFUSED);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	CHECK(took >= 95 && took < 1000); /* two tries, the retry delay between them */
	CHECK_INT_EQ(stats(&w, "fail_connect"), 2);
	char *log = read_log();
	char want[400];
	snprintf(want, sizeof(want), "warning: connect to 127.0.0.1:%u: Connection refused",
		 s->port);
	CHECK(strstr(log, want) != NULL);
	snprintf(want, sizeof(want),
		 "warning: problem talking to server 127.0.0.1:%u: Connection refused", s->port);
	CHECK(strstr(log, want) != NULL);
	free(log);
	psrv_stop(s);
	/* UNIX: a socket bound but not listening, and no socket at all */
	s = psrv_start(AF_UNIX, false);
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:OK", &l, NULL, 0), -ECONNREFUSED);
	psrv_stop(s);
	CHECK_INT_EQ(ask(&w, "unix:/nonexistent/mxgate-policy.sock", "ok:OK", &l, NULL, 0),
		     -ENOENT);
	stop(&w);
}

static void test_names(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "inet:localhost:%u", s->port);
	char action[64];
	for (int i = 0; i < 3; i++)
		CHECK_INT_EQ(ask(&w, endpoint, "id:OK", &defaults, action, sizeof(action)), 0);
	CHECK_STR_EQ(action, "OK conn=1 req=3");
	CHECK_INT_EQ(stats(&w, "retries"), 0);
	/* a name that does not resolve: answered by the deadline, with Postfix's errno
	 * (or a timeout, should this machine's resolver not answer in time) */
	struct limits l = defaults;
	l.deadline_ms = 4000;
	uint64_t t0 = mx_clock_monotonic_ms();
	int rc = ask(&w, "inet:no-such-host.invalid:10023", "ok:OK", &l, NULL, 0);
	CHECK(rc == -EADDRNOTAVAIL || rc == -ETIMEDOUT);
	CHECK(mx_clock_monotonic_ms() - t0 < 4500);
	if (rc == -EADDRNOTAVAIL) {
		CHECK(stats(&w, "fail_lookup") >= 1);
		char *log = read_log();
		CHECK(strstr(log, "warning: host or service no-such-host.invalid:10023 not found: ") !=
		      NULL);
		free(log);
	}
	stop(&w);
	psrv_stop(s);
}

static void test_invalid(void)
{
	struct svc_policy_params pp = test_params();
	pp.endpoints_max = 2;
	struct worker w;
	start(&w, &pp, 1);
	CHECK_INT_EQ(ask(&w, "tcp:127.0.0.1:1", "ok:OK", &defaults, NULL, 0), -EINVAL);
	CHECK_INT_EQ(ask(&w, "inet:127.0.0.1", "ok:OK", &defaults, NULL, 0), -EINVAL);
	/* a request that does not end with the empty line */
	struct svc_request *r = request("inet:127.0.0.1:9", "ok:OK", &defaults);
	r->u.policy.request_len--;
	submit(&w, r);
	/* no request at all */
	r = svc_request_new(SVC_POLICY);
	snprintf(r->u.policy.endpoint, sizeof(r->u.policy.endpoint), "inet:127.0.0.1:9");
	r->deadline_ms = mx_clock_monotonic_ms() + 1000;
	submit(&w, r);
	/* two requests in one */
	r = request("inet:127.0.0.1:9", "ok:OK", &defaults);
	r->u.policy.request[10] = '\n';
	r->u.policy.request[11] = '\n';
	submit(&w, r);
	/* an endpoint without its NUL */
	r = request("inet:127.0.0.1:9", "ok:OK", &defaults);
	memset(r->u.policy.endpoint, 'x', sizeof(r->u.policy.endpoint));
	submit(&w, r);
	CHECK_INT_EQ(wait_answers(&w, 4, 3000), 4);
	for (int i = 0; i < 4; i++) {
		r = take(&w);
		CHECK_INT_EQ(r ? r->status : 0, -EINVAL);
		svc_request_free(r);
	}
	CHECK_INT_EQ(stats(&w, "invalid"), 6);
	/* more distinct endpoints than allowed, at once */
	struct psrv *s = psrv_start(AF_INET, true);
	struct limits l = defaults;
	submit(&w, request(s->endpoint, "delay:300:A", &l));
	l.max_idle_ms = 1234; /* another endpoint: the same address, other limits */
	submit(&w, request(s->endpoint, "delay:300:B", &l));
	l.max_idle_ms = 4321;
	submit(&w, request(s->endpoint, "ok:C", &l));
	CHECK_INT_EQ(wait_answers(&w, 3, 3000), 3);
	r = take(&w);
	CHECK_INT_EQ(r ? r->status : 0, -EMFILE);
	svc_request_free(r);
	for (int i = 0; i < 2; i++) {
		r = take(&w);
		CHECK_INT_EQ(r ? r->status : -1, 0);
		svc_request_free(r);
	}
	CHECK_INT_EQ(atomic_load(&s->accepted), 2); /* one pool per endpoint and limits */
	stop(&w);
	psrv_stop(s);
}

/* ---- many at once ---- */

static void test_pool_bound(void)
{
	struct psrv *s = psrv_start(AF_UNIX, true);
	struct svc_policy_params pp = test_params();
	pp.conns_per_endpoint = 4;
	struct worker w;
	start(&w, &pp, 1);
	uint64_t t0 = mx_clock_monotonic_ms();
	for (int i = 0; i < 20; i++) {
		char script[32];
		snprintf(script, sizeof(script), "delay:100:R%d", i);
		CHECK_INT_EQ(svc_submit(w.c, request(s->endpoint, script, &defaults)), 0);
	}
	svc_client_flush(w.c);
	CHECK_INT_EQ(wait_answers(&w, 20, 10000), 20);
	uint64_t took = mx_clock_monotonic_ms() - t0;
	/* 20 requests of 100 ms on 4 connections: 5 rounds */
	CHECK(took >= 480 && took < 3000);
	CHECK_INT_EQ(atomic_load(&s->peak_open), 4);
	CHECK_INT_EQ(atomic_load(&s->accepted), 4);
	bool seen[20] = { false };
	struct svc_request *r;
	while ((r = take(&w))) {
		int k = -1;
		CHECK_INT_EQ(r->status, 0);
		if (r->u.policy.action && sscanf(r->u.policy.action, "R%d", &k) == 1 && k >= 0 &&
		    k < 20)
			seen[k] = true;
		svc_request_free(r);
	}
	for (int i = 0; i < 20; i++)
		CHECK(seen[i]);
	stop(&w);

	/* the total bound: an idle connection of another endpoint makes room */
	pp.conns_per_endpoint = 4;
	pp.conns_max = 1;
	start(&w, &pp, 1);
	struct psrv *s2 = psrv_start(AF_INET, true);
	CHECK_INT_EQ(ask(&w, s->endpoint, "ok:A", &defaults, NULL, 0), 0);
	CHECK_INT_EQ(ask(&w, s2->endpoint, "ok:B", &defaults, NULL, 0), 0);
	CHECK_INT_EQ(stats(&w, "conns_closed_evicted"), 1);
	CHECK_INT_EQ(stats(&w, "conns_open"), 1);
	stop(&w);
	psrv_stop(s2);
	psrv_stop(s);
}

#define PER_WORKER 300

struct two {
	struct svc_set *set;
	const char *endpoint;
	unsigned index;
	unsigned ok, wrong;
	int wake;
};

static void two_on_answer(void *arg, struct svc_request *r)
{
	struct two *t = arg;
	char want[64];
	snprintf(want, sizeof(want), "W%u-%u", t->index, (unsigned)(uintptr_t)r->owner);
	if (r->status == 0 && r->u.policy.action && strcmp(r->u.policy.action, want) == 0 &&
	    r->worker == t->index)
		t->ok++;
	else
		t->wrong++;
	svc_request_free(r);
}

static void *two_main(void *arg)
{
	struct two *t = arg;
	int wake = t->wake;
	struct svc_client *c = svc_client_new(t->set, t->index, wake);
	unsigned sent = 0;
	unsigned seed = t->index + 7;
	uint64_t end = mx_clock_monotonic_ms() + 30000;
	while (t->ok + t->wrong < PER_WORKER && mx_clock_monotonic_ms() < end) {
		while (sent < PER_WORKER && sent - (t->ok + t->wrong) < 32) {
			char script[64];
			snprintf(script, sizeof(script), "delay:%u:W%u-%u", rand_r(&seed) % 4, t->index,
				 sent);
			struct svc_request *r = request(t->endpoint, script, &defaults);
			r->owner = (void *)(uintptr_t)sent;
			if (svc_submit(c, r) != 0) {
				svc_request_free(r);
				break;
			}
			sent++;
		}
		svc_client_flush(c);
		struct pollfd p = { .fd = wake, .events = POLLIN };
		poll(&p, 1, 20);
		uint64_t v;
		ssize_t k = read(wake, &v, sizeof(v));
		(void)k;
		svc_client_poll(c, two_on_answer, t);
	}
	/* the wake fd stays open until the services stopped: the service may still be
	 * writing it for the last batch of answers this worker already took */
	svc_client_free(c);
	return NULL;
}

static void test_two_workers(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	pp.conns_per_endpoint = 6;
	struct svc_set_params sp = { .workers = 2, .ops = { [SVC_POLICY] = &svc_policy_ops },
				     .params = { [SVC_POLICY] = &pp } };
	struct svc_set *set;
	char err[256];
	CHECK_INT_EQ(svc_set_start(&set, &sp, err, sizeof(err)), 0);
	struct two t[2] = { { set, s->endpoint, 0, 0, 0, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) },
			    { set, s->endpoint, 1, 0, 0, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, two_main, &t[i]);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT_EQ(t[i].ok, PER_WORKER);
		CHECK_INT_EQ(t[i].wrong, 0);
	}
	CHECK(atomic_load(&s->peak_open) <= 6);
	CHECK_INT_EQ(atomic_load(&s->requests), 2 * PER_WORKER);
	svc_set_free(set);
	close(t[0].wake);
	close(t[1].wake);
	psrv_stop(s);
}

static void test_stop_in_flight(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	pp.conns_per_endpoint = 2;
	struct worker w;
	start(&w, &pp, 1);
	struct limits l = defaults;
	l.timeout_ms = 60000;
	l.deadline_ms = 60000;
	for (int i = 0; i < 10; i++)
		CHECK_INT_EQ(svc_submit(w.c, request(s->endpoint, "never", &l)), 0);
	svc_client_flush(w.c);
	usleep(200 * 1000);
	CHECK_INT_EQ(atomic_load(&s->requests), 2); /* two connections, eight queued */
	CHECK_INT_EQ(stats(&w, "in_flight"), 10);
	CHECK_INT_EQ(stats(&w, "queued"), 8);
	uint64_t t0 = mx_clock_monotonic_ms();
	svc_set_stop(w.set);
	CHECK(mx_clock_monotonic_ms() - t0 < 1000);
	CHECK_INT_EQ(wait_answers(&w, 10, 2000), 10);
	struct svc_request *r;
	while ((r = take(&w))) {
		CHECK_INT_EQ(r->status, -ECANCELED);
		svc_request_free(r);
	}
	usleep(100 * 1000);
	CHECK_INT_EQ(atomic_load(&s->eofs), 2); /* the sockets were closed */
	CHECK_INT_EQ(atomic_load(&s->open), 0);
	stop(&w);

	/* a stop while a request waits out its retry delay, and one still in the ring */
	pp.retry_delay_ms = 5000;
	start(&w, &pp, 1);
	submit(&w, request(s->endpoint, "close", &defaults));
	usleep(200 * 1000);
	CHECK_INT_EQ(stats(&w, "retries"), 1);
	CHECK_INT_EQ(svc_submit(w.c, request(s->endpoint, "ok:OK", &defaults)), 0); /* no wake */
	svc_set_stop(w.set);
	CHECK_INT_EQ(wait_answers(&w, 2, 2000), 2);
	for (int i = 0; i < 2; i++) {
		r = take(&w);
		CHECK_INT_EQ(r ? r->status : 0, -ECANCELED);
		svc_request_free(r);
	}
	stop(&w);
	psrv_stop(s);
}

static void test_statistics(void)
{
	struct psrv *s = psrv_start(AF_INET, true);
	struct svc_policy_params pp = test_params();
	struct worker w;
	start(&w, &pp, 1);
	for (int i = 0; i < 3; i++)
		CHECK_INT_EQ(ask(&w, s->endpoint, "ok:OK", &defaults, NULL, 0), 0);
	struct limits l = defaults;
	l.timeout_ms = 50;
	CHECK_INT_EQ(ask(&w, s->endpoint, "never", &l, NULL, 0), -ETIMEDOUT);
	CHECK_INT_EQ(ask(&w, "tcp:127.0.0.1:1", "ok:OK", &defaults, NULL, 0), -EINVAL);
	svc_set_log_statistics(w.set, "SIGUSR1");
	char *log = read_log();
	CHECK(strstr(log, "policy statistics (SIGUSR1): requests=5 replies=3 failed=2 invalid=1 "
			  "cancelled=0 retries=1 fail_connect=0 fail_timeout=2 fail_closed=0 "
			  "fail_malformed=0 fail_lookup=0 bad_utf8=0 stale_resent=0 conns_opened=2 "
			  "conns_reused=3 ") !=
	      NULL);
	free(log);
	CHECK_INT_EQ(stat_of("conns_closed_error"), 2);
	CHECK_INT_EQ(stat_of("conns_open"), 0);
	stop(&w);
	psrv_stop(s);
}

int main(void)
{
	snprintf(log_path, sizeof(log_path), "/tmp/test_policy_svc-%d.log", (int)getpid());
	unlink(log_path);
	if (mx_log_open(log_path, "test", "mxgate") != 0) {
		fprintf(stderr, "cannot open %s\n", log_path);
		return 1;
	}
	RUN_TEST(test_endpoints);
	RUN_TEST(test_replies_tcp);
	RUN_TEST(test_replies_unix);
	RUN_TEST(test_random_replies);
	RUN_TEST(test_reuse_tcp);
	RUN_TEST(test_reuse_tcp6);
	RUN_TEST(test_reuse_unix);
	RUN_TEST(test_request_limit);
	RUN_TEST(test_max_idle);
	RUN_TEST(test_max_ttl);
	RUN_TEST(test_server_restart);
	RUN_TEST(test_timeout_retry);
	RUN_TEST(test_cancelled_unsent);
	RUN_TEST(test_refused);
	RUN_TEST(test_names);
	RUN_TEST(test_invalid);
	RUN_TEST(test_pool_bound);
	RUN_TEST(test_two_workers);
	RUN_TEST(test_stop_in_flight);
	RUN_TEST(test_statistics);
	mx_log_close();
	if (testing_failures == 0)
		unlink(log_path);
	return TEST_RESULT();
}
