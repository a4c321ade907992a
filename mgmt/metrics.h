/* The metrics registry: one place that knows every counter, gauge and histogram of the
 * gateway, read by the Prometheus endpoint (mgmt/metrics_http.h), the SIGUSR1 statistics
 * lines, the control socket's `status` and DPDK telemetry.
 *
 * A subsystem registers a group of families (name, help, type, label names, histogram
 * buckets) with one collect function. Nothing is copied into the registry: at read time
 * the collect function reads the subsystem's own memory (the workers' per-worker structs,
 * summed; a service thread's stats) and reports samples through the sink. So the fast path
 * keeps incrementing its own worker's memory with plain stores, and a read costs only the
 * reader.
 *
 * Threads: registration, unregistration and reads take the registry's mutex, never held
 * by a worker. A collect function runs on the reading thread with that mutex held; it must
 * not call back into the registry. */
#ifndef MXGATE_MGMT_METRICS_H
#define MXGATE_MGMT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mx_metric_type {
	MX_METRIC_COUNTER,
	MX_METRIC_GAUGE,
	MX_METRIC_HISTOGRAM,
	MX_METRIC_TYPE_MAX
};

/* "counter", "gauge", "histogram" (the exposition format's TYPE words). */
const char *mx_metric_type_name(enum mx_metric_type t);

#define MX_METRIC_LABELS_MAX 4
#define MX_METRIC_BUCKETS_MAX 24
#define MX_METRIC_NAME_MAX 96

/* One family as registered; the strings must outlive the registration (literals). */
struct mx_metric_family {
	const char *name;   /* "mxgate_smtp_connections_accepted_total": [a-zA-Z_:][a-zA-Z0-9_:]* */
	const char *help;   /* one line */
	enum mx_metric_type type;
	const char *labels[MX_METRIC_LABELS_MAX]; /* label names, NULL-terminated early */
	/* Histograms: the upper bounds of the buckets in the family's unit, ascending; +Inf
	 * is implied after the last. */
	const double *buckets;
	unsigned nbuckets;
	/* The key of this value in a statistics line ("connections_accepted"), NULL: none
	 * (mx_metrics_stat_line()). */
	const char *stat_key;
};

/* One sample as a reader sees it: the label values (as many as the family has names),
 * and the value, or for a histogram the per-bucket (not cumulative) counts, nbuckets + 1
 * of them with +Inf last, and the sum. */
struct mx_metric_sample {
	const char *const *label_values;
	bool is_int;
	uint64_t u;
	double d;
	const uint64_t *bucket_counts;
	double sum;
};

struct mx_metrics;
struct mx_metrics_sink;

/* What a collect function does: for family fams[i] of its group, report each sample
 * (label values, value) through the sink. */
typedef void mx_metrics_collect_fn(void *ctx, unsigned i, struct mx_metrics_sink *sink);

/* A counter or gauge that is an integer. label_values: as many as the family has label
 * names (NULL when it has none). */
void mx_metrics_u64(struct mx_metrics_sink *sink, const char *const *label_values, uint64_t v);
/* A gauge in base units that is not an integer (seconds). */
void mx_metrics_f64(struct mx_metrics_sink *sink, const char *const *label_values, double v);
/* A histogram: counts[0..nbuckets] per bucket (not cumulative; +Inf last), and the sum of
 * the observations in the family's unit. */
void mx_metrics_hist(struct mx_metrics_sink *sink, const char *const *label_values,
		     const uint64_t *counts, double sum);

/* An empty registry, or NULL when out of memory. */
struct mx_metrics *mx_metrics_new(void);
/* Every group must be unregistered first (asserted). NULL is a no-op. */
void mx_metrics_free(struct mx_metrics *m);

/* Register n families under subsystem ("smtp", "spool", "dpdk") read by collect(ctx, i,
 * sink). Returns a handle > 0, or a negative errno: -EINVAL (a name or label that the
 * exposition format refuses, a name already registered, a histogram without buckets),
 * -ENOMEM. */
int mx_metrics_register(struct mx_metrics *m, const char *subsystem,
			const struct mx_metric_family *fams, unsigned n,
			mx_metrics_collect_fn *collect, void *ctx);
/* After it returns the group's collect function is not running and never runs again. */
void mx_metrics_unregister(struct mx_metrics *m, int handle);

/* What a reader is called with: the family, its subsystem and one sample. */
typedef void mx_metrics_visit_fn(void *ctx, const char *subsystem,
				 const struct mx_metric_family *f,
				 const struct mx_metric_sample *s);

/* Call fn for every sample of every family (of subsystem only, unless NULL), in the order
 * of registration, families in their group's order. Returns how many samples. */
size_t mx_metrics_visit(struct mx_metrics *m, const char *subsystem, mx_metrics_visit_fn *fn,
			void *ctx);

/* The statistics line's body: " key=value" for every family of subsystem that has a
 * stat_key and a sample to show, in registration order; of a labelled family the sum of
 * the samples whose label label_name is label_value (of all, when label_name is NULL).
 * Returns the length (truncated at len - 1, always terminated). */
size_t mx_metrics_stat_line(struct mx_metrics *m, const char *subsystem,
			    const char *label_name, const char *label_value, char *buf,
			    size_t len);

/* The value of one integer sample: the family `name` with the given label values (NULL:
 * the first sample). 0 and *v, or -ENOENT. */
int mx_metrics_get(struct mx_metrics *m, const char *name, const char *const *label_values,
		   uint64_t *v);

/* ---- the text exposition format 0.0.4 (mgmt/metrics_prom.c) ---- */

/* A growing text buffer; oom is set (and the text truncated) when it could not grow. */
struct mx_metrics_text {
	char *p;
	size_t len, cap;
	bool oom;
};

void mx_metrics_text_free(struct mx_metrics_text *t);

/* The whole registry in the Prometheus text format, version 0.0.4: # HELP and # TYPE per
 * family, label values escaped (\\, \", \n), histograms as cumulative _bucket{le=...}
 * lines with +Inf, _sum and _count. 0, or -ENOMEM (t is freed). */
int mx_metrics_render_prom(struct mx_metrics *m, struct mx_metrics_text *t);

/* Label value escaping of the text format (backslash, double quote, line feed) into buf;
 * returns the length it needs (as snprintf). */
size_t mx_metrics_escape_label(const char *v, char *buf, size_t len);

/* ---- histograms kept per worker (the fast path's side) ---- */

/* Observation buckets in microseconds shared by the gateway's latency histograms:
 * 100 us ... 30 s. The families report them in seconds. */
#define MX_LATENCY_BUCKETS 16
extern const double mx_latency_buckets_s[MX_LATENCY_BUCKETS];

#endif
