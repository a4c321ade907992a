/* The anvil sync thread (svc_anvil.h): anvil's rate counters shared through memcached.
 *
 * One round (svc_anvil_sync()): the wall clock's offset from the monotonic one is given to
 * the table (windows are aligned on wall time), then the table is walked in batches of
 * SVC_ANVIL_BATCH counters (anvil_share_collect(): each counter's pending events become
 * in flight); each batch goes out SVC_ANVIL_PIPELINE add + incr pairs at a time on one
 * kept connection, and the replies, read in order, give each counter the cluster's total
 * (anvil_share_applied()). Whatever is not answered goes back to pending
 * (anvil_share_failed()), so an outage loses no local event: those events still count on
 * this node and reach memcached when it is back within their window.
 *
 * Each exchange is bounded by the file's timeout; while memcached is down the round sends
 * nothing, and a connection is tried once per retry_pause. */
#include "dataplane/svc/svc_anvil.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/svc/svc.h"
#include "dataplane/svc/svc_dict_internal.h"
#include "dataplane/svc/svc_policy_internal.h"
#include "mgmt/log.h"
#include "mxgate/clock.h"
#include "mxgate/errf.h"
#include "tables/anvil_wire.h"
#include "tables/memcache_conf.h"

#define SVC_ANVIL_RBUF 16384
#define SVC_ANVIL_WARN_MS 60000u     /* error replies: one warning a minute */

struct svc_anvil_counters {
	atomic_uint_fast64_t syncs, counters, events, failed, errors, outages, skipped;
	atomic_uint_fast64_t round_ms;   /* how long the last round took */
	atomic_bool down;
};

struct svc_anvil {
	struct anvil *table;
	char spec[SVC_DICT_SPEC_MAX + 1];
	char name[SVC_DICT_NAME_MAX + 1];
	unsigned interval_ms;
	unsigned read_mask;
	struct memcache_conf conf;
	struct svc_policy_target target;
	int fd;                           /* -1: not connected */
	bool down;                        /* said so in the log */
	uint64_t retry_at;                /* monotonic ms: no connection tried before */
	struct svc_warn_limit warn;       /* error replies */
	struct anvil_wire_reader reader;
	struct anvil_delta *batch;        /* [SVC_ANVIL_BATCH] */
	char *wbuf;                       /* [SVC_ANVIL_PIPELINE * ANVIL_WIRE_PAIR_MAX] */
	bool *sent;                       /* [SVC_ANVIL_PIPELINE]: a pair went out */
	char rbuf[SVC_ANVIL_RBUF];
	size_t rlen, roff;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	struct svc_anvil_counters n;
};

#define SVC_ANVIL_ADD(s, field, v) \
	atomic_fetch_add_explicit(&(s)->n.field, (v), memory_order_relaxed)
#define SVC_ANVIL_GET(s, field) \
	((uint64_t)atomic_load_explicit(&(s)->n.field, memory_order_relaxed))

int svc_anvil_new(struct svc_anvil **out, struct anvil *a, const struct svc_anvil_params *p,
		  char *err, size_t errlen)
{
	*out = NULL;
	const char *name = p->name ? p->name : "mxgate_anvil_rate_map";
	if (strncmp(p->spec, "memcache:", 9) != 0 || p->spec[9] != '/')
		return mx_errf(err, errlen, -EINVAL, "%s = %s: only memcache:/path (a "
			       "memcache_table(5) file) is supported", name, p->spec);
	if (strlen(p->spec) > SVC_DICT_SPEC_MAX)
		return mx_errf(err, errlen, -EINVAL, "%s: longer than %d bytes", name,
			       SVC_DICT_SPEC_MAX);
	struct svc_anvil *s = calloc(1, sizeof(*s));
	if (!s)
		return mx_errf(err, errlen, -ENOMEM, "%s: out of memory", name);
	s->table = a;
	s->fd = -1;
	snprintf(s->spec, sizeof(s->spec), "%s", p->spec);
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->interval_ms = p->interval_ms ? p->interval_ms : SVC_ANVIL_INTERVAL_MS;
	s->read_mask = p->read_mask & ((1u << ANVIL_RATE_MAX) - 1);
	atomic_init(&s->stop, false);
	char why[512];
	int rc = svc_dict_mc_read_file(p->spec + 9, &s->conf, why, sizeof(why));
	if (rc == 0 && s->conf.ndomains) {
		rc = -EINVAL;
		snprintf(why, sizeof(why), "%s: domain: anvil's counters are not addresses "
			 "(leave domain unset)", p->spec + 9);
	}
	if (rc == 0 && s->conf.backup[0]) {
		rc = -EINVAL;
		snprintf(why, sizeof(why), "%s: backup: not used for anvil's counters (a node "
			 "without memcached counts on its own table; leave backup unset)",
			 p->spec + 9);
	}
	if (rc == 0 && (rc = svc_policy_target_parse(s->conf.memcache, &s->target, why,
						    sizeof(why))) < 0)
		rc = -EINVAL;
	if (rc == 0 && (rc = anvil_wire_reader_init(&s->reader, s->conf.line_size_limit)) < 0)
		snprintf(why, sizeof(why), "out of memory");
	if (rc == 0) {
		s->batch = calloc(SVC_ANVIL_BATCH, sizeof(*s->batch));
		s->wbuf = malloc((size_t)SVC_ANVIL_PIPELINE * ANVIL_WIRE_PAIR_MAX);
		s->sent = calloc(SVC_ANVIL_PIPELINE, sizeof(*s->sent));
		if (!s->batch || !s->wbuf || !s->sent) {
			rc = -ENOMEM;
			snprintf(why, sizeof(why), "out of memory");
		}
	}
	/* the windows are aligned from the first event on (the thread's first round comes
	 * an interval later) */
	int64_t offset = (int64_t)(mx_clock_wall_us() / 1000000u) -
			 (int64_t)(mx_clock_monotonic_ms() / 1000u);
	if (rc == 0 && (rc = anvil_share_enable(a, offset)) < 0)
		snprintf(why, sizeof(why), "out of memory for the table's shared counts");
	if (rc < 0) {
		svc_anvil_free(s);
		return mx_errf(err, errlen, rc, "%s = %s: %s", name, p->spec, why);
	}
	*out = s;
	return 0;
}

/* ---- the connection ---- */

/* The connection comes from the memcache dictionary's code (svc_dict_internal.h). */
static int svc_anvil_connect(struct svc_anvil *s, uint64_t until)
{
	int fd = svc_dict_mc_dial(&s->target, until);
	if (fd < 0)
		return fd;
	s->fd = fd;
	s->rlen = s->roff = 0;
	return 0;
}

static void svc_anvil_disconnect(struct svc_anvil *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->rlen = s->roff = 0;
}

/* memcached is unavailable (why: an errno's text or the server's words): the warning once
 * per outage, no connection tried before retry_pause. */
static void svc_anvil_mark_down(struct svc_anvil *s, const char *why)
{
	s->retry_at = mx_clock_monotonic_ms() + (uint64_t)s->conf.retry_pause * 1000u;
	if (s->down)
		return;
	s->down = true;
	atomic_store_explicit(&s->n.down, true, memory_order_relaxed);
	SVC_ANVIL_ADD(s, outages, 1);
	mx_log(MX_LOG_WARNING, "%s: %s: memcache server %s unavailable: %s; anvil rates are "
	       "counted on this node only", s->name, s->spec, s->target.name, why);
}

static void svc_anvil_mark_up(struct svc_anvil *s)
{
	if (!s->down)
		return;
	s->down = false;
	atomic_store_explicit(&s->n.down, false, memory_order_relaxed);
	mx_log(MX_LOG_INFO, "%s: %s: memcache server %s is back; anvil rates are shared with "
	       "the other nodes again", s->name, s->spec, s->target.name);
}

static int svc_anvil_send(struct svc_anvil *s, size_t n, uint64_t until)
{
	return svc_dict_mc_send_all(s->fd, s->wbuf, n, until);
}

/* The replies of one pair into s->reader: 0, or a negative errno (the connection is of
 * no more use). */
static int svc_anvil_read_pair(struct svc_anvil *s, uint64_t until)
{
	anvil_wire_reader_start(&s->reader);
	for (;;) {
		if (s->roff < s->rlen) {
			size_t used;
			int rc = anvil_wire_reader_feed(&s->reader, s->rbuf + s->roff,
							s->rlen - s->roff, &used);
			s->roff += used;
			if (rc < 0)
				return rc;
			if (rc == 1)
				return 0;
		}
		s->roff = s->rlen = 0;
		ssize_t k = recv(s->fd, s->rbuf, sizeof(s->rbuf), 0);
		if (k == 0)
			return -ECONNRESET;
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			int rc = svc_dict_mc_wait(s->fd, POLLIN, until);
			if (rc < 0)
				return rc;
			continue;
		}
		s->rlen = (size_t)k;
	}
}

/* An error reply: counted, a warning a minute at most, and memcached is taken as down. */
static void svc_anvil_error_reply(struct svc_anvil *s)
{
	SVC_ANVIL_ADD(s, errors, 1);
	char why[160];
	snprintf(why, sizeof(why), "it said %s%s%s", memcache_reply_kind_name(s->reader.error_kind),
		 s->reader.error[0] ? " " : "", s->reader.error);
	if (!s->down) {
		svc_anvil_mark_down(s, why);
		s->warn.at = mx_clock_monotonic_ms();
		return;
	}
	uint64_t now = mx_clock_monotonic_ms();
	if (!s->warn.at || now - s->warn.at >= SVC_ANVIL_WARN_MS) {
		s->warn.at = now;
		mx_log(MX_LOG_WARNING, "%s: %s: memcache server %s %s; anvil rates are counted "
		       "on this node only", s->name, s->spec, s->target.name, why);
	}
}

/* Send d[0..n) (n <= SVC_ANVIL_PIPELINE) and take their totals. 0, or a negative errno
 * for a connection that failed (every counter not answered is pending again). */
static int svc_anvil_exchange(struct svc_anvil *s, const struct anvil_delta *d, size_t n,
			      uint64_t wall_s)
{
	char service[ANVIL_SERVICE_NAME_MAX];
	char key[ANVIL_WIRE_KEY_MAX + 1], mkey[MEMCACHE_KEY_MAX + 1];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		s->sent[i] = false;
		long kl = -EINVAL;
		if (anvil_service_name(s->table, d[i].key.service, service, sizeof(service)))
			kl = anvil_wire_key(key, sizeof(key), service, &d[i]);
		if (kl > 0)
			kl = memcache_conf_key(&s->conf, key, mkey, sizeof(mkey));
		long w = kl > 0 ? anvil_wire_encode(s->wbuf + len, ANVIL_WIRE_PAIR_MAX, mkey,
						    (size_t)kl, d[i].n,
						    anvil_wire_exptime(&d[i], wall_s))
				: -EINVAL;
		if (w < 0) {
			/* no key for it: counted here only (its events stay pending) */
			SVC_ANVIL_ADD(s, skipped, 1);
			anvil_share_failed(s->table, &d[i]);
			continue;
		}
		len += (size_t)w;
		s->sent[i] = true;
	}
	if (!len)
		return 0;
	uint64_t until = mx_clock_monotonic_ms() + (uint64_t)s->conf.timeout * 1000u;
	int rc = 0;
	if (s->fd < 0)
		rc = svc_anvil_connect(s, until);
	if (rc == 0)
		rc = svc_anvil_send(s, len, until);
	bool errored = false;
	for (size_t i = 0; i < n; i++) {
		if (!s->sent[i])
			continue;
		if (rc == 0)
			rc = svc_anvil_read_pair(s, until);
		if (rc < 0) {
			SVC_ANVIL_ADD(s, failed, 1);
			anvil_share_failed(s->table, &d[i]);
			continue;
		}
		if (s->reader.result == 0) {
			SVC_ANVIL_ADD(s, counters, 1);
			SVC_ANVIL_ADD(s, events, d[i].n);
			anvil_share_applied(s->table, &d[i], s->reader.total);
			continue;
		}
		/* -ENOENT: the counter went between add and incr (memcached evicted it);
		 * -EIO: memcached said it cannot. Both are tried again next time. */
		SVC_ANVIL_ADD(s, failed, 1);
		anvil_share_failed(s->table, &d[i]);
		if (s->reader.result == -EIO)
			errored = true;
	}
	if (rc < 0) {
		svc_anvil_disconnect(s);
		return rc;
	}
	if (errored) {
		svc_anvil_error_reply(s);
		return -EIO;
	}
	return 0;
}

int svc_anvil_sync(struct svc_anvil *s)
{
	uint64_t mono_ms = mx_clock_monotonic_ms();
	uint64_t wall_s = mx_clock_wall_us() / 1000000u;
	uint64_t mono_s = mono_ms / 1000u;
	/* the workers count in monotonic seconds; windows are wall seconds / unit */
	anvil_share_set_offset(s->table, (int64_t)wall_s - (int64_t)mono_s);
	if (s->down && s->fd < 0 && mono_ms < s->retry_at)
		return -EAGAIN;
	struct anvil_cursor cur = { 0 };
	bool reached = false;
	int rc = 0;
	do {
		size_t n = anvil_share_collect(s->table, mono_s, s->read_mask, &cur, s->batch,
					       SVC_ANVIL_BATCH);
		for (size_t i = 0; i < n; i += SVC_ANVIL_PIPELINE) {
			size_t k = n - i < SVC_ANVIL_PIPELINE ? n - i : SVC_ANVIL_PIPELINE;
			if (rc < 0) {
				/* memcached failed this round: the rest waits for the next */
				for (size_t j = 0; j < k; j++) {
					SVC_ANVIL_ADD(s, failed, 1);
					anvil_share_failed(s->table, &s->batch[i + j]);
				}
				continue;
			}
			rc = svc_anvil_exchange(s, s->batch + i, k, wall_s);
			if (rc == 0 && s->fd >= 0)
				reached = true;
			if (rc < 0 && rc != -EIO) {
				char why[128];
				snprintf(why, sizeof(why), "%s", strerror(-rc));
				svc_anvil_mark_down(s, why);
			}
		}
	} while (!cur.done);
	if (rc == 0 && !reached && s->down) {
		/* nothing to send: a connection says whether memcached is back */
		uint64_t until = mx_clock_monotonic_ms() + (uint64_t)s->conf.timeout * 1000u;
		if (s->fd >= 0 || (rc = svc_anvil_connect(s, until)) == 0) {
			reached = true;
		} else {
			char why[128];
			snprintf(why, sizeof(why), "%s", strerror(-rc));
			svc_anvil_mark_down(s, why);
		}
	}
	atomic_store_explicit(&s->n.round_ms, mx_clock_monotonic_ms() - mono_ms,
			      memory_order_relaxed);
	if (rc == 0) {
		SVC_ANVIL_ADD(s, syncs, 1);
		if (reached)
			svc_anvil_mark_up(s);
	}
	return rc;
}

static void *svc_anvil_main(void *arg)
{
	struct svc_anvil *s = arg;
	uint64_t next = mx_clock_monotonic_ms();
	while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
		uint64_t now = mx_clock_monotonic_ms();
		if (now < next) {
			uint64_t left = next - now;
			/* a short sleep: the stop flag is seen within one interval */
			struct timespec ts = { .tv_sec = (time_t)(left / 1000),
					       .tv_nsec = (long)(left % 1000) * 1000000L };
			nanosleep(&ts, NULL);
			continue;
		}
		next = now + s->interval_ms;
		svc_anvil_sync(s);
	}
	return NULL;
}

int svc_anvil_start(struct svc_anvil *s, char *err, size_t errlen)
{
	int rc = svc_thread_start(&s->thread, svc_anvil_main, s, "mx-anvil", err, errlen);
	if (rc == 0) {
		s->running = true;
		mx_log(MX_LOG_INFO, "%s: anvil rates are shared through %s (memcache server %s, "
		       "every %u ms)", s->name, s->spec, s->target.name, s->interval_ms);
	}
	return rc;
}

void svc_anvil_free(struct svc_anvil *s)
{
	if (!s)
		return;
	if (s->running) {
		atomic_store_explicit(&s->stop, true, memory_order_release);
		pthread_join(s->thread, NULL);
	}
	svc_anvil_disconnect(s);
	anvil_wire_reader_free(&s->reader);
	free(s->batch);
	free(s->wbuf);
	free(s->sent);
	free(s);
}

void svc_anvil_stats(struct svc_anvil *s, struct svc_anvil_stats *out)
{
	out->syncs = SVC_ANVIL_GET(s, syncs);
	out->counters = SVC_ANVIL_GET(s, counters);
	out->events = SVC_ANVIL_GET(s, events);
	out->failed = SVC_ANVIL_GET(s, failed);
	out->errors = SVC_ANVIL_GET(s, errors);
	out->outages = SVC_ANVIL_GET(s, outages);
	out->skipped = SVC_ANVIL_GET(s, skipped);
	out->round_ms = SVC_ANVIL_GET(s, round_ms);
	out->down = atomic_load_explicit(&s->n.down, memory_order_relaxed);
}

void svc_anvil_log_statistics(struct svc_anvil *s, const char *when)
{
	struct svc_anvil_stats st;
	svc_anvil_stats(s, &st);
	mx_log(MX_LOG_INFO,
	       "anvil share statistics (%s): map=%s memcache=%s syncs=%" PRIu64
	       " counters=%" PRIu64 " events=%" PRIu64 " failed=%" PRIu64 " errors=%" PRIu64
	       " outages=%" PRIu64 " skipped=%" PRIu64 " round_ms=%" PRIu64 " unavailable=%d",
	       when, s->spec, st.down ? "down" : "up", st.syncs, st.counters, st.events,
	       st.failed, st.errors, st.outages, st.skipped, st.round_ms, st.down ? 1 : 0);
}
