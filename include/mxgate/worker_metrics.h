/* What a worker counts for the metrics registry (mgmt/metrics.h) besides its event
 * counters (mxgate/counters.h): latency histograms and SMTP replies by code. Each worker
 * owns one struct mx_worker_metrics and is its only writer: plain increments, no atomic
 * read-modify-write, no lock. Readers (the management thread) sum the workers' structs
 * with relaxed loads and tolerate a slightly old view. */
#ifndef MXGATE_WORKER_METRICS_H
#define MXGATE_WORKER_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

/* Upper bounds of the latency buckets in microseconds (+Inf follows): 100 us to 30 s. The
 * registry reports them in seconds (mx_latency_buckets_s[] in mgmt/metrics.c). */
#define MX_LATENCY_BOUNDS_US                                                               \
	{ 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,    \
	  1000000, 2500000, 10000000, 30000000 }
#define MX_LATENCY_NBOUNDS 16

struct mx_latency_hist {
	uint64_t count[MX_LATENCY_NBOUNDS + 1]; /* per bucket, not cumulative; +Inf last */
	uint64_t sum_us;
};

static inline void mx_latency_observe(struct mx_latency_hist *h, uint64_t us)
{
	static const uint64_t bound[MX_LATENCY_NBOUNDS] = MX_LATENCY_BOUNDS_US;
	unsigned i = 0;
	while (i < MX_LATENCY_NBOUNDS && us > bound[i])
		i++;
	h->count[i]++;
	h->sum_us += us;
}

/* Reply codes with their enhanced status code (RFC 3463), as the client saw them: the
 * final line of every reply. Open addressing on a fixed table; a pair that finds no slot
 * is counted in `other`. A slot's key is written once, with release, after which only its
 * count changes, so a reader that loads the key (acquire) and sees it non-zero reads a
 * whole key. */
#define MX_REPLY_SLOTS 128

struct mx_reply_slot {
	_Atomic uint32_t key;   /* mx_reply_key(); 0: free */
	uint64_t n;
};

struct mx_reply_counts {
	struct mx_reply_slot slot[MX_REPLY_SLOTS];
	uint64_t other;
};

/* code 200..599; enhanced class.subject.detail with class 0 for none (class below 8,
 * subject and detail each below 1000). Bits: code - 199 (1..400, never 0) in 31..23,
 * class in 22..20, subject in 19..10, detail in 9..0. */
static inline uint32_t mx_reply_key(unsigned code, unsigned cls, unsigned subject,
				    unsigned detail)
{
	return (uint32_t)(code - 199) << 23 | (uint32_t)(cls & 7) << 20 |
	       (uint32_t)(subject & 0x3ff) << 10 | (uint32_t)(detail & 0x3ff);
}

static inline unsigned mx_reply_key_code(uint32_t key) { return (key >> 23) + 199; }
static inline unsigned mx_reply_key_class(uint32_t key) { return (key >> 20) & 7; }
static inline unsigned mx_reply_key_subject(uint32_t key) { return (key >> 10) & 0x3ff; }
static inline unsigned mx_reply_key_detail(uint32_t key) { return key & 0x3ff; }

static inline void mx_reply_count(struct mx_reply_counts *t, uint32_t key)
{
	unsigned h = (unsigned)((key * 2654435761u) >> 25) % MX_REPLY_SLOTS;
	for (unsigned probe = 0; probe < 8; probe++) {
		struct mx_reply_slot *s = &t->slot[(h + probe) % MX_REPLY_SLOTS];
		uint32_t k = atomic_load_explicit(&s->key, memory_order_relaxed);
		if (k == key) {
			s->n++;
			return;
		}
		if (k == 0) {
			s->n = 1;
			atomic_store_explicit(&s->key, key, memory_order_release);
			return;
		}
	}
	t->other++;
}

enum mx_latency {
	MX_LAT_GREETING,     /* accepted to the 220 greeting (or the first reply) */
	MX_LAT_DATA_FINAL,   /* end of data (the final dot) to the final reply */
	MX_LAT_RESTRICTIONS, /* a restriction stage evaluated, waits included */
	MX_LAT_DNS,          /* a DNS question asked of the resolver service to its answer */
	MX_LAT_POLICY,       /* a policy server query (check_policy_service) to its answer */
	MX_LAT_MAX
};

/* What header_checks/body_checks decided for a message (one outcome each, and the
 * envelope actions they asked for). */
enum mx_checks_action {
	MX_CHECKS_ACCEPT,
	MX_CHECKS_REJECT,
	MX_CHECKS_DISCARD,
	MX_CHECKS_TEMPFAIL,
	MX_CHECKS_HOLD,
	MX_CHECKS_FILTER,
	MX_CHECKS_REDIRECT,
	MX_CHECKS_BCC,
	MX_CHECKS_ACTION_MAX
};

/* How SMTP AUTH exchanges ended (SASL through Dovecot's auth server). */
enum mx_auth_outcome {
	MX_AUTH_SUCCESS,  /* 235 */
	MX_AUTH_FAILED,   /* 535: the credentials were refused */
	MX_AUTH_TEMPFAIL, /* 454: the auth server could not answer */
	MX_AUTH_ABORTED,  /* the client sent "*" */
	MX_AUTH_OUTCOME_MAX
};

struct mx_worker_metrics {
	struct mx_latency_hist lat[MX_LAT_MAX];
	struct mx_reply_counts replies;
	uint64_t checks[MX_CHECKS_ACTION_MAX];
	uint64_t auth[MX_AUTH_OUTCOME_MAX];
};

#endif
