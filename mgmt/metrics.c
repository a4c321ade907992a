/* The metrics registry (mgmt/metrics.h): groups of families with their collect functions,
 * and the readers' walk over them. */
#include "mgmt/metrics.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgate/worker_metrics.h"

_Static_assert(MX_LATENCY_NBOUNDS == MX_LATENCY_BUCKETS, "one bucket list");
_Static_assert(MX_LATENCY_BUCKETS <= MX_METRIC_BUCKETS_MAX, "bucket bound");

const double mx_latency_buckets_s[MX_LATENCY_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,   0.1,     0.25,   0.5,   1,      2.5,   10,    30,
};

/* A bound on groups: each subsystem registers one or a few. */
#define METRICS_GROUPS_MAX 64
/* A bound on the families of one group. */
#define METRICS_GROUP_FAMILIES_MAX 256

struct metrics_group {
	int handle; /* 0: free */
	const char *subsystem;
	const struct mx_metric_family *fams;
	unsigned n;
	mx_metrics_collect_fn *collect;
	void *ctx;
};

struct mx_metrics {
	pthread_mutex_t lock;
	struct metrics_group group[METRICS_GROUPS_MAX];
	int next_handle;
};

/* What a collect function writes to: the family being read and the reader's callback. */
struct mx_metrics_sink {
	const char *subsystem;
	const struct mx_metric_family *f;
	mx_metrics_visit_fn *fn;
	void *ctx;
	size_t samples;
};

const char *mx_metric_type_name(enum mx_metric_type t)
{
	static const char *const names[MX_METRIC_TYPE_MAX] = {
		[MX_METRIC_COUNTER] = "counter",
		[MX_METRIC_GAUGE] = "gauge",
		[MX_METRIC_HISTOGRAM] = "histogram",
	};
	return (unsigned)t < MX_METRIC_TYPE_MAX ? names[t] : "untyped";
}

struct mx_metrics *mx_metrics_new(void)
{
	struct mx_metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	m->next_handle = 1;
#ifndef NDEBUG
	/* the latency bounds in seconds are the workers' microsecond bounds */
	static const uint64_t us[MX_LATENCY_NBOUNDS] = MX_LATENCY_BOUNDS_US;
	for (unsigned i = 0; i < MX_LATENCY_BUCKETS; i++)
		assert((uint64_t)(mx_latency_buckets_s[i] * 1e6 + 0.5) == us[i]);
#endif
	return m;
}

void mx_metrics_free(struct mx_metrics *m)
{
	if (!m)
		return;
	for (unsigned i = 0; i < METRICS_GROUPS_MAX; i++)
		assert(m->group[i].handle == 0);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for names (colons excluded for labels, which also may not
 * start with "__"), at most MX_METRIC_NAME_MAX. */
static bool metrics_name_ok(const char *s, bool label)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > MX_METRIC_NAME_MAX)
		return false;
	if (label && n >= 2 && s[0] == '_' && s[1] == '_')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			  (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static unsigned metrics_nlabels(const struct mx_metric_family *f)
{
	unsigned n = 0;
	while (n < MX_METRIC_LABELS_MAX && f->labels[n])
		n++;
	return n;
}

static bool metrics_family_ok(const struct mx_metric_family *f)
{
	if (!metrics_name_ok(f->name, false) || !f->help || (unsigned)f->type >= MX_METRIC_TYPE_MAX)
		return false;
	if (strchr(f->help, '\n'))
		return false;
	unsigned nl = metrics_nlabels(f);
	for (unsigned i = 0; i < nl; i++) {
		if (!metrics_name_ok(f->labels[i], true))
			return false;
		if (f->type == MX_METRIC_HISTOGRAM && strcmp(f->labels[i], "le") == 0)
			return false;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(f->labels[i], f->labels[j]) == 0)
				return false;
	}
	if (f->type == MX_METRIC_HISTOGRAM) {
		if (!f->buckets || f->nbuckets == 0 || f->nbuckets > MX_METRIC_BUCKETS_MAX)
			return false;
		for (unsigned i = 1; i < f->nbuckets; i++)
			if (!(f->buckets[i] > f->buckets[i - 1]))
				return false;
	}
	return true;
}

/* Whether name is a family of a registered group. Lock held. */
static bool metrics_name_taken(const struct mx_metrics *m, const char *name)
{
	for (unsigned g = 0; g < METRICS_GROUPS_MAX; g++) {
		const struct metrics_group *gr = &m->group[g];
		for (unsigned i = 0; gr->handle && i < gr->n; i++)
			if (strcmp(gr->fams[i].name, name) == 0)
				return true;
	}
	return false;
}

int mx_metrics_register(struct mx_metrics *m, const char *subsystem,
			const struct mx_metric_family *fams, unsigned n,
			mx_metrics_collect_fn *collect, void *ctx)
{
	if (!subsystem || !fams || n == 0 || n > METRICS_GROUP_FAMILIES_MAX || !collect)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (!metrics_family_ok(&fams[i]))
			return -EINVAL;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(fams[i].name, fams[j].name) == 0)
				return -EINVAL;
	}
	int rc = -ENOMEM;
	pthread_mutex_lock(&m->lock);
	for (unsigned i = 0; i < n; i++)
		if (metrics_name_taken(m, fams[i].name)) {
			rc = -EINVAL;
			goto out;
		}
	for (unsigned g = 0; g < METRICS_GROUPS_MAX; g++) {
		struct metrics_group *gr = &m->group[g];
		if (gr->handle)
			continue;
		*gr = (struct metrics_group){ .handle = m->next_handle++, .subsystem = subsystem,
					      .fams = fams, .n = n, .collect = collect,
					      .ctx = ctx };
		rc = gr->handle;
		break;
	}
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void mx_metrics_unregister(struct mx_metrics *m, int handle)
{
	if (!m || handle <= 0)
		return;
	pthread_mutex_lock(&m->lock);
	for (unsigned g = 0; g < METRICS_GROUPS_MAX; g++)
		if (m->group[g].handle == handle)
			m->group[g] = (struct metrics_group){ 0 };
	pthread_mutex_unlock(&m->lock);
}

void mx_metrics_u64(struct mx_metrics_sink *sink, const char *const *label_values, uint64_t v)
{
	assert(sink->f->type != MX_METRIC_HISTOGRAM);
	struct mx_metric_sample s = { .label_values = label_values, .is_int = true, .u = v,
				      .d = (double)v };
	sink->samples++;
	sink->fn(sink->ctx, sink->subsystem, sink->f, &s);
}

void mx_metrics_f64(struct mx_metrics_sink *sink, const char *const *label_values, double v)
{
	assert(sink->f->type != MX_METRIC_HISTOGRAM);
	struct mx_metric_sample s = { .label_values = label_values, .d = v };
	sink->samples++;
	sink->fn(sink->ctx, sink->subsystem, sink->f, &s);
}

void mx_metrics_hist(struct mx_metrics_sink *sink, const char *const *label_values,
		     const uint64_t *counts, double sum)
{
	assert(sink->f->type == MX_METRIC_HISTOGRAM);
	uint64_t total = 0;
	for (unsigned i = 0; i <= sink->f->nbuckets; i++)
		total += counts[i];
	struct mx_metric_sample s = { .label_values = label_values, .is_int = true, .u = total,
				      .d = (double)total, .bucket_counts = counts, .sum = sum };
	sink->samples++;
	sink->fn(sink->ctx, sink->subsystem, sink->f, &s);
}

size_t mx_metrics_visit(struct mx_metrics *m, const char *subsystem, mx_metrics_visit_fn *fn,
			void *ctx)
{
	/* Groups in handle order (the order of registration), whatever slot they took. */
	size_t total = 0;
	pthread_mutex_lock(&m->lock);
	int last = 0;
	for (;;) {
		struct metrics_group *next = NULL;
		for (unsigned g = 0; g < METRICS_GROUPS_MAX; g++) {
			struct metrics_group *gr = &m->group[g];
			if (gr->handle > last && (!next || gr->handle < next->handle))
				next = gr;
		}
		if (!next)
			break;
		last = next->handle;
		if (subsystem && strcmp(subsystem, next->subsystem) != 0)
			continue;
		for (unsigned i = 0; i < next->n; i++) {
			struct mx_metrics_sink sink = { .subsystem = next->subsystem,
							.f = &next->fams[i], .fn = fn, .ctx = ctx };
			next->collect(next->ctx, i, &sink);
			total += sink.samples;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return total;
}

/* ---- the statistics lines ---- */

struct metrics_stat {
	const char *label_name, *label_value;
	const struct mx_metric_family *cur; /* the family being summed */
	bool cur_int;
	uint64_t u;
	double d;
	char *buf;
	size_t len, n;
};

static int metrics_label_index(const struct mx_metric_family *f, const char *name)
{
	for (unsigned i = 0; i < metrics_nlabels(f); i++)
		if (strcmp(f->labels[i], name) == 0)
			return (int)i;
	return -1;
}

/* Write the family summed so far. */
static void metrics_stat_flush(struct metrics_stat *st)
{
	if (!st->cur || st->n >= st->len - 1)
		return;
	int k = st->cur_int ? snprintf(st->buf + st->n, st->len - st->n, " %s=%llu",
				       st->cur->stat_key, (unsigned long long)st->u)
			    : snprintf(st->buf + st->n, st->len - st->n, " %s=%g",
				       st->cur->stat_key, st->d);
	if (k > 0)
		st->n += (size_t)k;
	if (st->n >= st->len)
		st->n = st->len - 1;
	st->cur = NULL;
}

static void metrics_stat_visit(void *ctx, const char *subsystem,
			       const struct mx_metric_family *f,
			       const struct mx_metric_sample *s)
{
	(void)subsystem;
	struct metrics_stat *st = ctx;
	if (!f->stat_key)
		return;
	if (st->label_name && metrics_nlabels(f) > 0) {
		int li = metrics_label_index(f, st->label_name);
		if (li < 0 || strcmp(s->label_values[li], st->label_value) != 0)
			return;
	}
	if (st->cur != f) {
		metrics_stat_flush(st);
		st->cur = f;
		st->cur_int = true;
		st->u = 0;
		st->d = 0;
	}
	st->cur_int = st->cur_int && s->is_int;
	st->u += s->u;
	st->d += s->d;
}

size_t mx_metrics_stat_line(struct mx_metrics *m, const char *subsystem,
			    const char *label_name, const char *label_value, char *buf,
			    size_t len)
{
	assert(len > 0);
	buf[0] = '\0';
	struct metrics_stat st = { .label_name = label_name,
				   .label_value = label_value ? label_value : "",
				   .buf = buf, .len = len };
	mx_metrics_visit(m, subsystem, metrics_stat_visit, &st);
	metrics_stat_flush(&st);
	return st.n;
}

struct metrics_get {
	const char *name;
	const char *const *label_values;
	bool found;
	uint64_t v;
};

static void metrics_get_visit(void *ctx, const char *subsystem,
			      const struct mx_metric_family *f, const struct mx_metric_sample *s)
{
	(void)subsystem;
	struct metrics_get *g = ctx;
	if (g->found || strcmp(f->name, g->name) != 0)
		return;
	if (g->label_values)
		for (unsigned i = 0; i < metrics_nlabels(f); i++)
			if (strcmp(g->label_values[i], s->label_values[i]) != 0)
				return;
	g->found = true;
	g->v = s->is_int ? s->u : (uint64_t)s->d;
}

int mx_metrics_get(struct mx_metrics *m, const char *name, const char *const *label_values,
		   uint64_t *v)
{
	struct metrics_get g = { .name = name, .label_values = label_values };
	mx_metrics_visit(m, NULL, metrics_get_visit, &g);
	if (!g.found)
		return -ENOENT;
	*v = g.v;
	return 0;
}
