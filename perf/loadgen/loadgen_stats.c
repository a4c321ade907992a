/* The generator's counters, latency histograms and kept error texts; the text report and
 * the JSON result. No DPDK, no clock reads (times come in as microseconds). */
#include "loadgen.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *loadgen_lat_name(enum loadgen_lat k)
{
	switch (k) {
	case LOADGEN_LAT_CONNECT:
		return "connect";
	case LOADGEN_LAT_EHLO:
		return "ehlo";
	case LOADGEN_LAT_MAIL:
		return "mail";
	case LOADGEN_LAT_RCPT:
		return "rcpt";
	case LOADGEN_LAT_DATA:
		return "data";
	case LOADGEN_LAT_DOT:
		return "dot";
	case LOADGEN_LAT_QUIT:
		return "quit";
	case LOADGEN_LAT_MAX:
		break;
	}
	return "?";
}

const char *loadgen_err_name(enum loadgen_err e)
{
	switch (e) {
	case LOADGEN_ERR_CONNECT:
		return "connect";
	case LOADGEN_ERR_GREETING:
		return "greeting";
	case LOADGEN_ERR_EHLO:
		return "ehlo";
	case LOADGEN_ERR_MAIL:
		return "mail";
	case LOADGEN_ERR_RCPT:
		return "rcpt";
	case LOADGEN_ERR_DATA:
		return "data";
	case LOADGEN_ERR_DOT:
		return "dot";
	case LOADGEN_ERR_QUIT:
		return "quit";
	case LOADGEN_ERR_PROTOCOL:
		return "protocol";
	case LOADGEN_ERR_LOST:
		return "lost";
	case LOADGEN_ERR_TIMEOUT:
		return "timeout";
	case LOADGEN_ERR_LOCAL:
		return "local";
	case LOADGEN_ERR_MAX:
		break;
	}
	return "?";
}

/* ---- histograms ---- */

/* Bucket of v: v itself below LOADGEN_HIST_SUB; above, 32 buckets per power of two. */
static unsigned hist_index(uint64_t v)
{
	if (v < LOADGEN_HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 5 */
	unsigned shift = msb - 5;
	unsigned idx = (msb - 4) * LOADGEN_HIST_SUB + (unsigned)((v >> shift) & 31);
	return idx < LOADGEN_HIST_BUCKETS ? idx : LOADGEN_HIST_BUCKETS - 1;
}

uint64_t loadgen_hist_upper(unsigned i)
{
	if (i < LOADGEN_HIST_SUB)
		return i;
	unsigned msb = i / LOADGEN_HIST_SUB + 4;
	uint64_t sub = i % LOADGEN_HIST_SUB;
	unsigned shift = msb - 5;
	return ((LOADGEN_HIST_SUB + sub + 1) << shift) - 1;
}

void loadgen_hist_add(struct loadgen_hist *h, uint64_t us)
{
	h->n++;
	h->sum += us;
	if (us > h->max)
		h->max = us;
	h->b[hist_index(us)]++;
}

uint64_t loadgen_hist_quantile(const struct loadgen_hist *h, double q)
{
	if (h->n == 0)
		return 0;
	if (q >= 1)
		return h->max;
	if (q < 0)
		q = 0;
	/* the rank of the value wanted, 1-based: ceil(q * n), at least 1 */
	uint64_t rank = (uint64_t)(q * (double)h->n);
	if ((double)rank < q * (double)h->n)
		rank++;
	if (rank == 0)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LOADGEN_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t u = loadgen_hist_upper(i);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}

/* ---- counters and errors ---- */

int loadgen_stats_init(struct loadgen_stats *st, uint32_t errors_kept)
{
	memset(st, 0, sizeof(*st));
	if (errors_kept) {
		st->kept = calloc(errors_kept, sizeof(*st->kept));
		if (!st->kept)
			return -ENOMEM;
	}
	st->kept_max = errors_kept;
	return 0;
}

void loadgen_stats_free(struct loadgen_stats *st)
{
	free(st->kept);
	st->kept = NULL;
}

void loadgen_stats_error(struct loadgen_stats *st, enum loadgen_err kind, uint16_t code,
			 const char *fmt, ...)
{
	assert((unsigned)kind < LOADGEN_ERR_MAX);
	st->errors[kind]++;
	st->errors_total++;
	if (st->nkept >= st->kept_max)
		return;
	struct loadgen_error_record *r = &st->kept[st->nkept++];
	r->kind = kind;
	r->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
	va_end(ap);
}

/* ---- reports ---- */

static double secs(const struct loadgen_stats *st)
{
	uint64_t us = st->end_us > st->start_us ? st->end_us - st->start_us : 0;
	return us ? (double)us / 1e6 : 0;
}

static double per_sec(uint64_t n, double s)
{
	return s > 0 ? (double)n / s : 0;
}

static const double quantiles[] = { 0.5, 0.9, 0.99 };

void loadgen_report_text(FILE *out, const struct loadgen_config *cfg,
			 const struct loadgen_stats *st, const struct loadgen_report_extra *x)
{
	double s = secs(st);
	fprintf(out,
		"loadgen: %.3f s, sessions %llu started, %llu greeted, %llu done, %llu failed; "
		"messages %llu started, %llu accepted, %llu refused; rcpts %llu sent, %llu "
		"accepted, %llu refused\n",
		s, (unsigned long long)st->sessions_started,
		(unsigned long long)st->sessions_greeted, (unsigned long long)st->sessions_done,
		(unsigned long long)st->sessions_failed, (unsigned long long)st->messages_started,
		(unsigned long long)st->messages_accepted,
		(unsigned long long)st->messages_refused, (unsigned long long)st->rcpts_sent,
		(unsigned long long)st->rcpts_accepted, (unsigned long long)st->rcpts_refused);
	fprintf(out, "loadgen: %.1f messages/s, %.1f sessions/s, %.1f MB/s content\n",
		per_sec(st->messages_accepted, s), per_sec(st->sessions_done, s),
		per_sec(st->bytes_content, s) / 1e6);
	if (st->connect_deferred)
		fprintf(out, "loadgen: %llu opens deferred (the connection table was full)\n",
			(unsigned long long)st->connect_deferred);
	if (cfg->pregreet)
		fprintf(out, "loadgen: pregreet: %llu rejected by the screen (521, close), "
			     "%.1f rejects/s\n",
			(unsigned long long)st->sessions_rejected, per_sec(st->sessions_rejected, s));
	if (cfg->listed)
		fprintf(out, "loadgen: listed: %llu refused at RCPT by the screen (550), "
			     "%.1f rejects/s\n",
			(unsigned long long)st->sessions_rejected, per_sec(st->sessions_rejected, s));
	if (cfg->idle)
		fprintf(out, "loadgen: idle sessions held at most %llu; ramp %.3f s\n",
			(unsigned long long)st->idle_max,
			st->all_greeted_us > st->start_us
				? (double)(st->all_greeted_us - st->start_us) / 1e6
				: 0.0);
	for (unsigned k = 0; k < LOADGEN_LAT_MAX; k++) {
		const struct loadgen_hist *h = &st->lat[k];
		if (!h->n)
			continue;
		fprintf(out, "loadgen: latency %-7s n=%llu p50=%lluus p90=%lluus p99=%lluus "
			     "max=%lluus\n",
			loadgen_lat_name(k), (unsigned long long)h->n,
			(unsigned long long)loadgen_hist_quantile(h, 0.5),
			(unsigned long long)loadgen_hist_quantile(h, 0.9),
			(unsigned long long)loadgen_hist_quantile(h, 0.99),
			(unsigned long long)h->max);
	}
	fprintf(out, "loadgen: errors %llu", (unsigned long long)st->errors_total);
	for (unsigned e = 0; e < LOADGEN_ERR_MAX; e++)
		if (st->errors[e])
			fprintf(out, " %s=%llu", loadgen_err_name(e),
				(unsigned long long)st->errors[e]);
	fputc('\n', out);
	for (uint32_t i = 0; i < st->nkept; i++)
		fprintf(out, "loadgen: error %s: %s\n", loadgen_err_name(st->kept[i].kind),
			st->kept[i].text);
	if (x) {
		fprintf(out,
			"loadgen: port %s, rx %llu tx %llu dropped %llu packets; %llu bytes per "
			"session",
			x->port_driver ? x->port_driver : "-", (unsigned long long)x->rx_packets,
			(unsigned long long)x->tx_packets, (unsigned long long)x->tx_dropped,
			(unsigned long long)x->session_memory);
		if (x->total_cycles)
			fprintf(out, "; busy %.1f%%",
				100.0 * (double)x->busy_cycles / (double)x->total_cycles);
		fputc('\n', out);
	}
}

void loadgen_json_string(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	if (cap < 3) {
		if (cap)
			out[0] = 0;
		return;
	}
	out[o++] = '"';
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		size_t n;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			n = 2;
		} else if (c < 0x20 || c == 0x7f) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else if (c >= 0x80) {
			/* replies may hold any 8-bit byte: keep the JSON valid UTF-8 */
			esc[0] = '?';
			n = 1;
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n + 2 > cap)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = 0;
}

int loadgen_report_json(const char *path, const struct loadgen_config *cfg,
			const struct loadgen_stats *st, const struct loadgen_report_extra *x)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	double s = secs(st);
	char a[INET_ADDRSTRLEN], q[LOADGEN_NAME_MAX * 6 + 3];
	struct in_addr ia = { cfg->server };
	inet_ntop(AF_INET, &ia, a, sizeof(a));
	loadgen_json_string(q, sizeof(q), cfg->label);
	fprintf(f, "{\n  \"label\": %s,\n", q);
	fprintf(f,
		"  \"config\": {\"server\": \"%s:%u\", \"concurrency\": %u, \"sessions\": %llu, "
		"\"messages_per_session\": %u, \"size\": %u, \"rcpts\": %u, \"rate\": %g, "
		"\"rate_of\": \"%s\", \"pipelining\": %s, \"idle\": %s, \"sources\": %u, "
		"\"bad_rcpt_every\": %u, \"handshakes\": %u, \"pregreet\": %s},\n",
		a, cfg->server_port, cfg->concurrency, (unsigned long long)cfg->sessions,
		cfg->messages, cfg->size, cfg->rcpts, cfg->rate, loadgen_rate_of_name(cfg->rate_of),
		cfg->pipelining ? "true" : "false", cfg->idle ? "true" : "false",
		cfg->src_count ? cfg->src_count : 1, cfg->bad_rcpt_every, cfg->handshakes,
		cfg->pregreet ? "true" : "false");
	fprintf(f,
		"  \"seconds\": %.6f,\n  \"sessions\": {\"started\": %llu, \"connected\": %llu, "
		"\"greeted\": %llu, \"done\": %llu, \"failed\": %llu, \"idle_max\": %llu, "
		"\"connect_deferred\": %llu, \"rejected\": %llu},\n",
		s, (unsigned long long)st->sessions_started,
		(unsigned long long)st->sessions_connected, (unsigned long long)st->sessions_greeted,
		(unsigned long long)st->sessions_done, (unsigned long long)st->sessions_failed,
		(unsigned long long)st->idle_max, (unsigned long long)st->connect_deferred,
		(unsigned long long)st->sessions_rejected);
	fprintf(f,
		"  \"messages\": {\"started\": %llu, \"accepted\": %llu, \"refused\": %llu},\n"
		"  \"rcpts\": {\"sent\": %llu, \"accepted\": %llu, \"refused\": %llu},\n"
		"  \"bytes_content\": %llu,\n",
		(unsigned long long)st->messages_started, (unsigned long long)st->messages_accepted,
		(unsigned long long)st->messages_refused, (unsigned long long)st->rcpts_sent,
		(unsigned long long)st->rcpts_accepted, (unsigned long long)st->rcpts_refused,
		(unsigned long long)st->bytes_content);
	fprintf(f,
		"  \"messages_per_s\": %.3f,\n  \"sessions_per_s\": %.3f,\n  \"rejects_per_s\": "
		"%.3f,\n",
		per_sec(st->messages_accepted, s), per_sec(st->sessions_done, s),
		per_sec(st->sessions_rejected, s));
	fprintf(f, "  \"ramp_s\": %.6f,\n",
		st->all_greeted_us > st->start_us
			? (double)(st->all_greeted_us - st->start_us) / 1e6
			: 0.0);
	fprintf(f, "  \"latency_us\": {");
	bool first = true;
	for (unsigned k = 0; k < LOADGEN_LAT_MAX; k++) {
		const struct loadgen_hist *h = &st->lat[k];
		fprintf(f, "%s\n    \"%s\": {\"n\": %llu", first ? "" : ",", loadgen_lat_name(k),
			(unsigned long long)h->n);
		first = false;
		static const char *qn[] = { "p50", "p90", "p99" };
		for (unsigned i = 0; i < sizeof(quantiles) / sizeof(quantiles[0]); i++)
			fprintf(f, ", \"%s\": %llu", qn[i],
				(unsigned long long)loadgen_hist_quantile(h, quantiles[i]));
		fprintf(f, ", \"max\": %llu, \"mean\": %.1f}", (unsigned long long)h->max,
			h->n ? (double)h->sum / (double)h->n : 0.0);
	}
	fprintf(f, "\n  },\n");
	loadgen_hist_json(f, st);
	fprintf(f, "  \"errors\": {\"total\": %llu", (unsigned long long)st->errors_total);
	for (unsigned e = 0; e < LOADGEN_ERR_MAX; e++)
		fprintf(f, ", \"%s\": %llu", loadgen_err_name(e), (unsigned long long)st->errors[e]);
	fprintf(f, "},\n  \"errors_kept\": [");
	for (uint32_t i = 0; i < st->nkept; i++) {
		char t[LOADGEN_ERROR_TEXT_MAX * 6 + 3];
		loadgen_json_string(t, sizeof(t), st->kept[i].text);
		fprintf(f, "%s\n    {\"kind\": \"%s\", \"code\": %u, \"text\": %s}", i ? "," : "",
			loadgen_err_name(st->kept[i].kind), st->kept[i].code, t);
	}
	fprintf(f, "%s],\n", st->nkept ? "\n  " : "");
	if (x) {
		char d[LOADGEN_NAME_MAX];
		loadgen_json_string(d, sizeof(d), x->port_driver ? x->port_driver : "");
		fprintf(f,
			"  \"port\": {\"driver\": %s, \"rx_packets\": %llu, \"tx_packets\": %llu, "
			"\"tx_dropped\": %llu},\n  \"session_memory_bytes\": %llu,\n"
			"  \"busy_cycles\": %llu,\n  \"total_cycles\": %llu,\n  \"tsc_hz\": %llu\n",
			d, (unsigned long long)x->rx_packets, (unsigned long long)x->tx_packets,
			(unsigned long long)x->tx_dropped, (unsigned long long)x->session_memory,
			(unsigned long long)x->busy_cycles, (unsigned long long)x->total_cycles,
			(unsigned long long)x->tsc_hz);
	} else {
		fprintf(f, "  \"session_memory_bytes\": 0\n");
	}
	fprintf(f, "}\n");
	if (fclose(f) != 0)
		return -errno;
	return 0;
}
