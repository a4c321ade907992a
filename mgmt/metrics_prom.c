/* The registry in Prometheus's text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): per family one # HELP
 * and one # TYPE line, then its samples, each `name{label="value",...} value`; a
 * histogram as cumulative `_bucket{le="..."}` lines ending with le="+Inf", then `_sum` and
 * `_count`. */
#include "mgmt/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on one scrape: a registry is a few thousand samples; past this something is
 * wrong and the output stops growing (oom set). */
#define PROM_TEXT_MAX (64u << 20)

void mx_metrics_text_free(struct mx_metrics_text *t)
{
	free(t->p);
	*t = (struct mx_metrics_text){ 0 };
}

static bool prom_reserve(struct mx_metrics_text *t, size_t more)
{
	if (t->oom)
		return false;
	if (t->len + more + 1 <= t->cap)
		return true;
	size_t cap = t->cap ? t->cap : 4096;
	while (cap < t->len + more + 1)
		cap *= 2;
	char *p = cap <= PROM_TEXT_MAX ? realloc(t->p, cap) : NULL;
	if (!p) {
		t->oom = true;
		return false;
	}
	t->p = p;
	t->cap = cap;
	return true;
}

static void prom_put(struct mx_metrics_text *t, const char *s, size_t n)
{
	if (!prom_reserve(t, n))
		return;
	memcpy(t->p + t->len, s, n);
	t->len += n;
	t->p[t->len] = '\0';
}

static void prom_puts(struct mx_metrics_text *t, const char *s)
{
	prom_put(t, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void prom_printf(struct mx_metrics_text *t,
							       const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		prom_put(t, buf, (size_t)n);
		return;
	}
	if (!prom_reserve(t, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(t->p + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

size_t mx_metrics_escape_label(const char *v, char *buf, size_t len)
{
	size_t n = 0;
	for (const char *p = v; *p; p++) {
		const char *rep = NULL;
		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '"')
			rep = "\\\"";
		else if (*p == '\n')
			rep = "\\n";
		size_t k = rep ? 2 : 1;
		for (size_t i = 0; i < k; i++) {
			if (n + 1 < len)
				buf[n] = rep ? rep[i] : *p;
			n++;
		}
	}
	if (len > 0)
		buf[n < len ? n : len - 1] = '\0';
	return n;
}

/* HELP text escaping: backslash and line feed (the help of a family has no line feed,
 * mx_metrics_register() refuses it; a backslash is possible). */
static void prom_help(struct mx_metrics_text *t, const char *help)
{
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			prom_puts(t, "\\\\");
		else
			prom_put(t, p, 1);
	}
}

static void prom_label_value(struct mx_metrics_text *t, const char *v)
{
	char small[256];
	size_t n = mx_metrics_escape_label(v, small, sizeof(small));
	if (n < sizeof(small)) {
		prom_put(t, small, n);
		return;
	}
	char *big = malloc(n + 1);
	if (!big) {
		t->oom = true;
		return;
	}
	mx_metrics_escape_label(v, big, n + 1);
	prom_put(t, big, n);
	free(big);
}

/* {a="x",b="y"} (and le= for a bucket); nothing when there are no labels. */
static void prom_labels(struct mx_metrics_text *t, const struct mx_metric_family *f,
			const char *const *values, const char *le)
{
	bool any = false;
	for (unsigned i = 0; i < MX_METRIC_LABELS_MAX && f->labels[i]; i++) {
		prom_puts(t, any ? "," : "{");
		prom_puts(t, f->labels[i]);
		prom_puts(t, "=\"");
		prom_label_value(t, values && values[i] ? values[i] : "");
		prom_puts(t, "\"");
		any = true;
	}
	if (le) {
		prom_puts(t, any ? ",le=\"" : "{le=\"");
		prom_puts(t, le);
		prom_puts(t, "\"");
		any = true;
	}
	if (any)
		prom_puts(t, "}");
}

/* A float as the format writes it: Go's ParseFloat reads %.17g, and +Inf, -Inf, NaN. */
static void prom_float(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else
		snprintf(buf, len, "%.17g", v);
}

struct prom_state {
	struct mx_metrics_text *t;
	const struct mx_metric_family *last;
};

static void prom_visit(void *ctx, const char *subsystem, const struct mx_metric_family *f,
		       const struct mx_metric_sample *s)
{
	(void)subsystem;
	struct prom_state *st = ctx;
	struct mx_metrics_text *t = st->t;
	if (st->last != f) {
		/* a family's samples come together (mx_metrics_visit()), so one HELP/TYPE */
		st->last = f;
		prom_printf(t, "# HELP %s ", f->name);
		prom_help(t, f->help);
		prom_printf(t, "\n# TYPE %s %s\n", f->name, mx_metric_type_name(f->type));
	}
	char num[64];
	if (f->type != MX_METRIC_HISTOGRAM) {
		prom_puts(t, f->name);
		prom_labels(t, f, s->label_values, NULL);
		if (s->is_int)
			prom_printf(t, " %" PRIu64 "\n", s->u);
		else {
			prom_float(num, sizeof(num), s->d);
			prom_printf(t, " %s\n", num);
		}
		return;
	}
	uint64_t cum = 0;
	for (unsigned i = 0; i <= f->nbuckets; i++) {
		cum += s->bucket_counts[i];
		char le[64];
		if (i < f->nbuckets)
			snprintf(le, sizeof(le), "%g", f->buckets[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		prom_printf(t, "%s_bucket", f->name);
		prom_labels(t, f, s->label_values, le);
		prom_printf(t, " %" PRIu64 "\n", cum);
	}
	prom_printf(t, "%s_sum", f->name);
	prom_labels(t, f, s->label_values, NULL);
	prom_float(num, sizeof(num), s->sum);
	prom_printf(t, " %s\n", num);
	prom_printf(t, "%s_count", f->name);
	prom_labels(t, f, s->label_values, NULL);
	prom_printf(t, " %" PRIu64 "\n", cum);
}

int mx_metrics_render_prom(struct mx_metrics *m, struct mx_metrics_text *t)
{
	*t = (struct mx_metrics_text){ 0 };
	struct prom_state st = { .t = t };
	if (!prom_reserve(t, 0))
		return -ENOMEM;
	t->p[0] = '\0';
	mx_metrics_visit(m, NULL, prom_visit, &st);
	if (t->oom) {
		mx_metrics_text_free(t);
		return -ENOMEM;
	}
	return 0;
}
