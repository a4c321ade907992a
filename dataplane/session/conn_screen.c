/* The screen's glue (conn_screen.h): the codec (smtp/smtp_screen.h) on a connection of a
 * worker, its DNS questions to the resolver, its cache record through the state service,
 * its log lines and counters. */
#include "dataplane/session/conn_screen.h"

#include "dataplane/session/conn_internal.h"
#include "mgmt/screen.h"
#include "smtp/smtp_proxy_protocol.h"
#include "smtp/smtp_screen.h"

/* The cache lookup is on the way of every screened client (postscreen's is a local
 * btree read): a state service slower than this is treated as "not in the cache". */
#define CONN_SCREEN_CACHE_TIMEOUT_MS 2000
/* A cache write holds the screen's conclusion at most this long. */
#define CONN_SCREEN_STORE_TIMEOUT_MS 2000

/* A request of the screen in flight: the svc_request's owner. sc is NULL once the screen
 * went away. */
struct conn_screen_op {
	enum conn_op_kind kind;      /* CONN_OP_SCREEN */
	struct conn_screen *sc;
	unsigned idx;                /* the DNS question; SMTP_SCREEN_ZONES_MAX: the cache */
	struct svc_request *r;
};

#define CONN_SCREEN_CACHE_IDX SMTP_SCREEN_ZONES_MAX

/* postscreen_upstream_proxy_protocol = haproxy: the PROXY header's bytes while it is
 * awaited (allocated at accept, freed when it is in). */
struct conn_screen_proxy {
	uint64_t deadline_ms;        /* the transport's clock */
	uint16_t len;
	char buf[SMTP_PROXY_HEADER_MAX];
};

struct conn_screen {
	struct conn_worker *w;
	struct conn_pick pick;       /* the generation (held: its nconns counts us) */
	const struct mx_screen *scr;
	struct smtp_screen *s;
	void *owner;
	struct mx_inet_addr peer, local;
	uint16_t port, local_port;
	struct conn_screen_op **ops; /* [nops], made when the first request goes out */
	uint8_t nops;
	bool waiting_cache;          /* the screen starts when the cache answers */
	/* the screen's conclusion (its last reply, or the pass to the SMTP session) waits
	 * until the cache record is written, as postscreen writes its cache first: a client
	 * that reconnects at once finds its record */
	bool storing;
	uint64_t store_deadline_ms;
	bool asked_dns;
	bool finished;               /* the conclusion is counted and stored */
	bool counted;                /* in w->screen_counts (conn_screen_count()) */
	struct conn_screen_proxy *proxy; /* the PROXY header awaited; NULL: none or read */
	uint64_t cache_deadline_ms;
	int64_t wall_s;
	/* the transport's clock (its now_ms) is the monotonic clock minus this: every time
	 * the codec sees and every deadline it gives back is on the transport's clock */
	uint64_t clock_offset_ms;
};

static uint64_t conn_screen_now(const struct conn_screen *sc)
{
	return mx_clock_monotonic_ms() - sc->clock_offset_ms;
}

static void conn_screen_log(void *arg, const char *line)
{
	(void)arg;
	mx_log_as(MX_LOG_POSTSCREEN, MX_LOG_INFO, "%s", line);
}

/* Send r for sc (idx: the question, or the cache); false when it could not go (r freed). */
static bool conn_screen_submit(struct conn_screen *sc, struct svc_request *r, unsigned idx,
			       uint64_t timeout_ms)
{
	struct conn_worker *w = sc->w;
	unsigned slot = idx == CONN_SCREEN_CACHE_IDX ? 0 : idx + 1;
	if (!sc->ops) {
		unsigned n = 1 + sc->scr->cfg->nzones;
		sc->ops = calloc(n, sizeof(*sc->ops));
		if (!sc->ops) {
			svc_request_free(r);
			return false;
		}
		sc->nops = (uint8_t)n;
	}
	assert(slot < sc->nops && !sc->ops[slot]);
	struct conn_screen_op *op = w->svc ? malloc(sizeof(*op)) : NULL;
	if (!op) {
		svc_request_free(r);
		return false;
	}
	*op = (struct conn_screen_op){ .kind = CONN_OP_SCREEN, .sc = sc, .idx = idx, .r = r };
	r->owner = op;
	r->deadline_ms = mx_clock_monotonic_ms() + timeout_ms;
	if (svc_submit(w->svc, r) < 0) {
		free(op);
		svc_request_free(r);
		return false;
	}
	sc->ops[slot] = op;
	return true;
}

/* Write the cache record; the conclusion waits for the write (conn_screen_answer()), or
 * for its deadline. */
static void conn_screen_store(struct conn_screen *sc, const char *rec, uint32_t keep_s)
{
	struct svc_request *r = sc->w->svc ? svc_request_new(SVC_STATE) : NULL;
	if (!r || !(r->u.state.value = strdup(rec))) {
		svc_request_free(r);
		return;
	}
	struct svc_state *st = &r->u.state;
	snprintf(st->map, sizeof(st->map), "%s", sc->scr->cache_map);
	st->op = SVC_STATE_PUT;
	mx_inet_format(&sc->peer, st->key, sizeof(st->key));
	st->value_len = strlen(rec);
	st->ttl_s = keep_s;
	if (conn_screen_submit(sc, r, CONN_SCREEN_CACHE_IDX, CONN_SCREEN_STORE_TIMEOUT_MS)) {
		sc->storing = true;
		sc->store_deadline_ms = conn_screen_now(sc) + CONN_SCREEN_STORE_TIMEOUT_MS + 500;
	}
}

/* After every step of the codec: ask the DNS questions once the tests start, and when
 * the screen concluded, count it and store its record. */
static void conn_screen_after(struct conn_screen *sc)
{
	enum smtp_screen_state st = smtp_screen_state(sc->s);
	if (st == SMTP_SCREEN_ST_EARLY && !sc->asked_dns) {
		sc->asked_dns = true;
		unsigned nq = smtp_screen_queries(sc->s);
		uint64_t now = conn_screen_now(sc);
		for (unsigned i = 0; i < nq; i++) {
			struct svc_request *r = svc_request_new(SVC_DNS);
			bool sent = false;
			if (r && smtp_screen_query_name(sc->s, i, r->u.dns.name,
							sizeof(r->u.dns.name)) == 0) {
				r->u.dns.type = DNS_TYPE_A;
				sent = conn_screen_submit(sc, r, i, sc->scr->dnsbl_timeout_ms);
			} else {
				svc_request_free(r);
			}
			/* a question that cannot be asked is a failed lookup: not listed */
			if (!sent)
				smtp_screen_dns_answer(sc->s, i, NULL, now);
		}
		st = smtp_screen_state(sc->s);
	}
	if ((st != SMTP_SCREEN_ST_PASS && st != SMTP_SCREEN_ST_CLOSE) || sc->finished)
		return;
	sc->finished = true;
	struct mx_counters *ct = &sc->w->counters;
	struct smtp_screen_outcome o = smtp_screen_outcome(sc->s);
	ct->screen_pregreet_fail += o.pregreet_fail;
	ct->screen_dnsbl_fail += o.dnsbl_fail;
	ct->screen_deep_fail += o.pipelining_fail || o.non_smtp_fail || o.bare_newline_fail;
	ct->screen_pass_new += o.pass_new;
	ct->screen_pass_old += o.pass_old;
	ct->screen_denylisted += o.denylisted;
	ct->screen_too_many += o.too_many;
	ct->screen_allowlisted += o.allowlisted;
	mx_screen_count_listed(sc->scr, o.dnsbl_listed);
	if (st == SMTP_SCREEN_ST_PASS)
		ct->screen_passed++;
	else
		ct->screen_closed++;
	char rec[128];
	uint32_t keep;
	int64_t wall = (int64_t)(mx_clock_wall_us() / 1000000u);
	if (sc->scr->cache_map[0] &&
	    smtp_screen_cache_record(sc->s, wall, rec, sizeof(rec), &keep))
		conn_screen_store(sc, rec, keep);
}

/* postscreen_client_connection_count_limit: this connection counted among its client
 * address's in the screen (by exact address and service, as each postscreen process keeps
 * its own table), in the table every worker shares, so a client's connections are counted
 * together whichever worker took them. Returns the count with this one, or 0 when the
 * table has no room near the client (then no limit applies, as for anvil's). The count
 * goes down when the screen lets the connection go (conn_screen_free()), passed or not,
 * as postscreen's does when it hands the client over or drops it. */
static uint32_t conn_screen_count(struct conn_screen *sc)
{
	struct conn_worker *w = sc->w;
	int service = sc->pick.cg->svc[sc->pick.k].screen_service;
	if (!w->screen_counts || service < 0 || !sc->scr->cfg->client_connection_count_limit)
		return 0;
	struct anvil_key k;
	anvil_key_make(&k, &sc->peer, 32, 128, (unsigned)service);
	uint32_t count = 0, rate = 0;
	if (anvil_connect(w->screen_counts, &k, mx_clock_monotonic_ms() / 1000u, 1, &count,
			  &rate, NULL) < 0) {
		w->counters.anvil_untracked++;
		return 0;
	}
	sc->counted = true;
	return count;
}

static void conn_screen_uncount(struct conn_screen *sc)
{
	if (!sc->counted)
		return;
	struct anvil_key k;
	anvil_key_make(&k, &sc->peer, 32, 128,
		       (unsigned)sc->pick.cg->svc[sc->pick.k].screen_service);
	int rc = anvil_disconnect(sc->w->screen_counts, &k, mx_clock_monotonic_ms() / 1000u, 1);
	assert(rc == 0); /* an entry with open connections is never moved or evicted */
	(void)rc;
	sc->counted = false;
}

static void conn_screen_begin(struct conn_screen *sc, const char *cache)
{
	char warn[256];
	enum smtp_screen_acl acl = mx_screen_access(sc->scr, sc->pick.svc->cfg, &sc->peer, warn,
						    sizeof(warn));
	if (warn[0])
		mx_log(MX_LOG_WARNING, "postscreen_access_list: %s", warn);
	sc->waiting_cache = false;
	smtp_screen_start(sc->s, acl, cache, conn_screen_now(sc), sc->wall_s);
	conn_screen_after(sc);
}

bool conn_screen_wanted(const struct conn_pick *p)
{
	return p->svc->screen != NULL;
}

/* The screen proper begins: the client counted, then its cache record asked for (the
 * screen starts when it comes) or the screen started now. now_ms is the transport's. */
static void conn_screen_open(struct conn_screen *sc, uint64_t now_ms)
{
	struct conn_worker *w = sc->w;
	struct smtp_screen_client cl = { .addr = sc->peer, .port = sc->port, .server = sc->local,
					 .server_port = sc->local_port,
					 .concurrency = conn_screen_count(sc) };
	smtp_screen_set_client(sc->s, &cl);
	/* the temporary allowlist first: its answer decides whether there is a test (a
	 * client over its connection limit is refused before it is looked at) */
	bool too_many = cl.concurrency > sc->scr->cfg->client_connection_count_limit &&
			sc->scr->cfg->client_connection_count_limit;
	if (sc->scr->cache_map[0] && w->svc && !too_many) {
		struct svc_request *r = svc_request_new(SVC_STATE);
		if (r) {
			struct svc_state *st = &r->u.state;
			snprintf(st->map, sizeof(st->map), "%s", sc->scr->cache_map);
			st->op = SVC_STATE_GET;
			mx_inet_format(&sc->peer, st->key, sizeof(st->key));
			if (conn_screen_submit(sc, r, CONN_SCREEN_CACHE_IDX,
					       CONN_SCREEN_CACHE_TIMEOUT_MS)) {
				sc->waiting_cache = true;
				sc->cache_deadline_ms =
					now_ms + CONN_SCREEN_CACHE_TIMEOUT_MS + 500;
				return;
			}
		}
	}
	conn_screen_begin(sc, NULL);
}

struct conn_screen *conn_screen_new(struct conn_worker *w, const struct conn_pick *p,
				    const struct mx_inet_addr *peer, uint16_t port,
				    const struct mx_inet_addr *local, uint16_t local_port,
				    uint64_t now_ms)
{
	assert(p->svc->screen);
	struct conn_screen *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return NULL;
	sc->w = w;
	sc->pick = *p;
	sc->scr = p->svc->screen;
	sc->peer = mx_inet_unmap(peer);
	sc->local = mx_inet_unmap(local);
	sc->port = port;
	sc->local_port = local_port;
	struct smtp_screen_client cl = { .addr = sc->peer, .port = port, .server = sc->local,
					 .server_port = local_port };
	if (!(sc->s = smtp_screen_new(sc->scr->cfg, &cl, conn_screen_log, sc)) ||
	    (sc->scr->proxy_haproxy && !(sc->proxy = malloc(sizeof(*sc->proxy))))) {
		smtp_screen_free(sc->s);
		free(sc);
		return NULL;
	}
	p->cg->nconns++;
	w->counters.screen_connections++;
	sc->wall_s = (int64_t)(mx_clock_wall_us() / 1000000u);
	sc->clock_offset_ms = mx_clock_monotonic_ms() - now_ms;
	if (sc->proxy) {
		/* postscreen_upstream_proxy_protocol: nothing is screened, counted or logged
		 * until the header names the client (conn_screen_proxy_input()) */
		sc->proxy->len = 0;
		sc->proxy->deadline_ms = now_ms + sc->scr->proxy_timeout_ms;
		return sc;
	}
	conn_screen_open(sc, now_ms);
	return sc;
}

/* The header could not be had: postscreen's psc_endpt_lookup_done() after a failed
 * endpoint lookup: "421 4.3.2 No system resources" and the close, no CONNECT line; why
 * as postscreen's warning says it after "haproxy read: ". */
static void conn_screen_proxy_failed(struct conn_screen *sc, const char *why)
{
	mx_log_as(MX_LOG_POSTSCREEN, MX_LOG_WARNING, "haproxy read: %s", why);
	free(sc->proxy);
	sc->proxy = NULL;
	sc->w->counters.proxy_failed++;
	smtp_screen_refuse(sc->s, "421 4.3.2 No system resources\r\n");
	conn_screen_after(sc);
}

/* Header bytes; once it is whole the client it names is screened (a LOCAL header, the
 * proxy's own health check, keeps the connection's endpoints). Returns the bytes taken:
 * the rest is the client's (a pregreet, or SMTP after the greeting). Unlike postscreen,
 * which reads the header with one read(2) and fails a header TCP cut in two, the bytes
 * are gathered until the header is whole or postscreen_upstream_proxy_timeout ends. */
static size_t conn_screen_proxy_input(struct conn_screen *sc, const char *buf, size_t len,
				      uint64_t now_ms)
{
	struct smtp_proxy_header h;
	char why[4 * SMTP_PROXY_HEADER_MAX + 200];
	size_t used = 0;
	int rc = conn_proxy_feed(sc->proxy->buf, &sc->proxy->len, buf, len, &h, &used, why,
				 sizeof(why));
	if (rc == 0)
		return used;
	if (rc < 0) {
		conn_screen_proxy_failed(sc, why);
		return used;
	}
	free(sc->proxy);
	sc->proxy = NULL;
	if (!h.use_connection) {
		sc->peer = mx_inet_unmap(&h.src);
		sc->port = h.src_port;
		sc->local = mx_inet_unmap(&h.dst);
		sc->local_port = h.dst_port;
	}
	conn_screen_open(sc, now_ms);
	return used;
}

void *conn_screen_answer(struct svc_request *r)
{
	struct conn_screen_op *op = r->owner;
	struct conn_screen *sc = op->sc;
	unsigned idx = op->idx;
	free(op);
	if (!sc) {
		svc_request_free(r);
		return NULL;
	}
	sc->ops[idx == CONN_SCREEN_CACHE_IDX ? 0 : idx + 1] = NULL;
	if (idx == CONN_SCREEN_CACHE_IDX) {
		if (sc->waiting_cache) {
			const char *v = r->status == 0 && r->u.state.value ? r->u.state.value : NULL;
			if (r->status < 0 && r->status != -ENOENT)
				mx_log(MX_LOG_WARNING, "postscreen_cache_map %s: lookup of %s: %s",
				       sc->scr->cache_map, sc->s ? conn_screen_client(sc) : "?",
				       strerror(-r->status));
			conn_screen_begin(sc, v);
		} else if (sc->storing) {
			if (r->status < 0)
				mx_log(MX_LOG_WARNING, "postscreen_cache_map %s: update of %s: %s",
				       sc->scr->cache_map, conn_screen_client(sc),
				       strerror(-r->status));
			sc->storing = false;
		}
	} else {
		const struct dns_result *res = r->kind == SVC_DNS ? r->u.dns.result : NULL;
		smtp_screen_dns_answer(sc->s, idx, res, conn_screen_now(sc));
		conn_screen_after(sc);
	}
	svc_request_free(r);
	return sc->owner;
}

void conn_screen_set_owner(struct conn_screen *sc, void *owner)
{
	sc->owner = owner;
}

void *conn_screen_owner(const struct conn_screen *sc)
{
	return sc->owner;
}

enum conn_screen_state conn_screen_state(const struct conn_screen *sc)
{
	if (sc->storing)
		return CONN_SCREEN_SCREENING;
	switch (smtp_screen_state(sc->s)) {
	case SMTP_SCREEN_ST_PASS:
		return CONN_SCREEN_PASS;
	case SMTP_SCREEN_ST_CLOSE:
		return CONN_SCREEN_CLOSE;
	default:
		return CONN_SCREEN_SCREENING;
	}
}

bool conn_screen_wants_input(const struct conn_screen *sc)
{
	if (sc->proxy)
		return true;
	return !sc->waiting_cache && !sc->storing && smtp_screen_wants_input(sc->s);
}

size_t conn_screen_input(struct conn_screen *sc, const char *buf, size_t len, uint64_t now_ms)
{
	size_t off = 0;
	if (sc->proxy) {
		off = conn_screen_proxy_input(sc, buf, len, now_ms);
		if (sc->proxy || off == len)
			return off;
	}
	if (sc->waiting_cache)
		return off;
	size_t used = smtp_screen_input(sc->s, buf + off, len - off, now_ms);
	conn_screen_after(sc);
	return off + used;
}

struct mx_span conn_screen_output(const struct conn_screen *sc)
{
	return sc->storing ? mx_span_make("", 0) : smtp_screen_output(sc->s);
}

void conn_screen_output_done(struct conn_screen *sc, size_t n)
{
	smtp_screen_output_done(sc->s, n);
}

uint64_t conn_screen_deadline(const struct conn_screen *sc)
{
	if (sc->proxy)
		return sc->proxy->deadline_ms;
	if (sc->storing)
		return sc->store_deadline_ms;
	return sc->waiting_cache ? sc->cache_deadline_ms : smtp_screen_deadline(sc->s);
}

void conn_screen_timer(struct conn_screen *sc, uint64_t now_ms)
{
	if (sc->proxy) {
		if (now_ms >= sc->proxy->deadline_ms)
			conn_screen_proxy_failed(sc, "time limit exceeded");
		return;
	}
	if (sc->storing) {
		/* the state service answers by the request's deadline; this bounds a stuck
		 * one: the reply goes out without the record */
		if (now_ms >= sc->store_deadline_ms)
			sc->storing = false;
		return;
	}
	if (sc->waiting_cache) {
		/* the state service answers by its deadline; this only bounds a stuck one */
		if (now_ms >= sc->cache_deadline_ms)
			conn_screen_begin(sc, NULL);
		return;
	}
	smtp_screen_timer(sc->s, now_ms);
	conn_screen_after(sc);
}

void conn_screen_peer_closed(struct conn_screen *sc, uint64_t now_ms)
{
	if (sc->proxy) {
		conn_screen_proxy_failed(sc, "EOF");
		return;
	}
	if (sc->waiting_cache) {
		/* the client left before the screen began: as a hang-up in its first test */
		conn_screen_begin(sc, NULL);
	}
	smtp_screen_peer_closed(sc->s, now_ms);
	conn_screen_after(sc);
}

void conn_screen_shutdown(struct conn_screen *sc, uint64_t now_ms)
{
	if (sc->proxy) {
		/* nobody to screen yet: the shutdown reply, without a test */
		free(sc->proxy);
		sc->proxy = NULL;
		smtp_screen_refuse(sc->s, "421 4.3.2 Service shutting down\r\n");
		conn_screen_after(sc);
		return;
	}
	if (sc->waiting_cache)
		conn_screen_begin(sc, NULL);
	smtp_screen_shutdown(sc->s, now_ms);
	conn_screen_after(sc);
}

struct conn *conn_screen_pass(struct conn_screen *sc)
{
	assert(smtp_screen_state(sc->s) == SMTP_SCREEN_ST_PASS);
	struct conn *c = conn_new_picked(sc->w, &sc->pick, &sc->peer, sc->port, &sc->local,
					 sc->local_port);
	/* as postscreen hands smtpd the client with the socket: the session behind the
	 * screen never reads a PROXY header of its own */
	if (c)
		conn_proxy_skip(c);
	return c;
}

const char *conn_screen_client(const struct conn_screen *sc)
{
	static __thread char buf[INET6_ADDRSTRLEN + 10];
	char a[INET6_ADDRSTRLEN];
	snprintf(buf, sizeof(buf), "[%s]:%u", mx_inet_format(&sc->peer, a, sizeof(a)),
		 sc->port);
	return buf;
}

void conn_screen_free(struct conn_screen *sc)
{
	if (!sc)
		return;
	for (unsigned i = 0; i < sc->nops; i++) {
		if (sc->ops[i]) {
			svc_request_cancel(sc->ops[i]->r);
			sc->ops[i]->sc = NULL;
		}
	}
	free(sc->ops);
	free(sc->proxy);
	smtp_screen_free(sc->s);
	conn_screen_uncount(sc);
	sc->pick.cg->nconns--;
	free(sc);
}

size_t conn_screen_memory(const struct conn_screen *sc)
{
	return sizeof(*sc) + smtp_screen_memory(sc->s) + sc->nops * sizeof(*sc->ops) +
	       (sc->proxy ? sizeof(*sc->proxy) : 0);
}
