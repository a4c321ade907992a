/* mxgate-loadgen's traffic classes (loadgen_mix.h): each class's configuration, the
 * dispatch of the stack's events to the engine that owns a connection, and the classes'
 * reports. No DPDK here. */
#include "loadgen_mix.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void loadgen_class_config(const struct loadgen_config *base,
			  const struct loadgen_class_spec *sp, struct loadgen_config *out)
{
	*out = *base;
	out->nalso = 0;
	out->src_base = sp->src_base;
	out->src_count = sp->src_count;
	out->concurrency = sp->concurrency;
	out->handshakes = sp->concurrency;
	out->rate = sp->rate;
	out->rate_of = LOADGEN_RATE_SESSIONS;
	out->sessions = 0; /* for the main class's --duration */
	out->idle = false;
	out->pregreet = sp->kind == LOADGEN_CLASS_PREGREET;
	out->listed = sp->kind == LOADGEN_CLASS_LISTED;
	out->messages = 1;
	out->rcpts = 1;
	out->bad_rcpt_every = 0;
	out->bad_rcpt[0] = 0;
	out->json[0] = 0;
	snprintf(out->helo, sizeof(out->helo), "%s.example", loadgen_class_kind_name(sp->kind));
	/* the main label (cut to leave room), a space, the kind */
	snprintf(out->label, sizeof(out->label), "%.*s%s%s", (int)(sizeof(out->label) - 16),
		 base->label, base->label[0] ? " " : "", loadgen_class_kind_name(sp->kind));
}

int loadgen_mix_src_cover(const struct loadgen_config *base, uint32_t *src_base,
			  uint32_t *src_count)
{
	uint32_t lo, hi;
	if (base->src_count) {
		lo = ntohl(base->src_base);
		hi = lo + base->src_count - 1;
	} else {
		lo = hi = ntohl(base->local);
	}
	for (uint32_t i = 0; i < base->nalso; i++) {
		const struct loadgen_class_spec *sp = &base->also[i];
		if (sp->kind == LOADGEN_CLASS_SYNFLOOD)
			continue;
		uint32_t a = ntohl(sp->src_base), b = a + sp->src_count - 1;
		if (a < lo)
			lo = a;
		if (b > hi)
			hi = b;
	}
	*src_base = htonl(lo);
	*src_count = hi - lo + 1; /* < 2^32: reserved blocks bound every range */
	/* the stack takes every address of the cover as its own, and drops what comes from
	 * its own addresses: the server (or the router) must lie outside */
	uint32_t srv = ntohl(base->server), hop = ntohl(base->next_hop);
	if ((srv >= lo && srv <= hi) || (base->next_hop && hop >= lo && hop <= hi))
		return -EINVAL;
	return 0;
}

struct loadgen_class {
	enum loadgen_class_kind kind;
	struct loadgen_config cfg;
	struct loadgen_stats st;
	struct loadgen *lg; /* NULL for the SYN flood */
};

struct loadgen_mix {
	struct loadgen_class cls[LOADGEN_ALSO_MAX];
	uint32_t n;
	struct loadgen_synflood sf;
	bool have_sf;
	double duration_s;
	uint64_t start_us;
};

struct loadgen_mix *loadgen_mix_new(const struct loadgen_config *base, const uint8_t smac[6],
				    uint64_t now_us)
{
	struct loadgen_mix *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->duration_s = base->duration_s;
	m->start_us = now_us;
	for (uint32_t i = 0; i < base->nalso; i++) {
		const struct loadgen_class_spec *sp = &base->also[i];
		if (sp->kind == LOADGEN_CLASS_SYNFLOOD) {
			if (m->have_sf) {
				loadgen_mix_free(m);
				errno = EINVAL; /* one flood: its rate says how much */
				return NULL;
			}
			loadgen_synflood_init(&m->sf, sp, base->server, base->server_port, smac,
					      now_us ^ 0x5eedULL, now_us);
			m->have_sf = true;
			continue;
		}
		struct loadgen_class *c = &m->cls[m->n];
		c->kind = sp->kind;
		loadgen_class_config(base, sp, &c->cfg);
		if (loadgen_stats_init(&c->st, c->cfg.errors_kept) < 0) {
			loadgen_mix_free(m);
			errno = ENOMEM;
			return NULL;
		}
		m->n++;
		c->lg = loadgen_new(&c->cfg, &c->st, now_us);
		if (!c->lg) {
			int e = errno;
			loadgen_mix_free(m);
			errno = e;
			return NULL;
		}
	}
	return m;
}

void loadgen_mix_free(struct loadgen_mix *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n; i++) {
		loadgen_free(m->cls[i].lg);
		loadgen_stats_free(&m->cls[i].st);
	}
	free(m);
}

void loadgen_mix_attach(struct loadgen_mix *m, struct net_stack *s)
{
	for (uint32_t i = 0; i < m->n; i++)
		loadgen_attach(m->cls[i].lg, s);
}

void loadgen_mix_event(struct loadgen_mix *m, struct loadgen *main_lg, struct net_conn *c,
		       int ev)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (loadgen_owns(m->cls[i].lg, c)) {
			loadgen_event(m->cls[i].lg, c, ev);
			return;
		}
	loadgen_event(main_lg, c, ev);
}

void loadgen_mix_tick(struct loadgen_mix *m, uint64_t now_us)
{
	for (uint32_t i = 0; i < m->n; i++) {
		loadgen_tick(m->cls[i].lg, now_us);
		/* the class's clock stops with its last session (its rates are its own) */
		if (!m->cls[i].st.end_us && loadgen_done(m->cls[i].lg))
			m->cls[i].st.end_us = now_us;
	}
	if (m->have_sf && m->duration_s > 0 &&
	    now_us - m->start_us >= (uint64_t)(m->duration_s * 1e6))
		loadgen_synflood_stop(&m->sf, now_us);
}

void loadgen_mix_release(struct loadgen_mix *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		loadgen_release(m->cls[i].lg);
	if (m->have_sf)
		loadgen_synflood_stop(&m->sf, m->sf.end_us);
}

bool loadgen_mix_done(const struct loadgen_mix *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		if (!loadgen_done(m->cls[i].lg))
			return false;
	return !m->have_sf || m->sf.stopped;
}

uint32_t loadgen_mix_active(const struct loadgen_mix *m)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->n; i++)
		n += loadgen_active(m->cls[i].lg);
	return n;
}

struct loadgen_synflood *loadgen_mix_synflood(struct loadgen_mix *m)
{
	return m->have_sf ? &m->sf : NULL;
}

uint64_t loadgen_mix_errors(const struct loadgen_mix *m)
{
	uint64_t n = 0;
	for (uint32_t i = 0; i < m->n; i++)
		n += m->cls[i].st.errors_total;
	return n;
}

int loadgen_mix_json_path(char *out, size_t cap, const char *json_path, const char *kind)
{
	size_t n = strlen(json_path);
	size_t stem = n >= 5 && strcmp(json_path + n - 5, ".json") == 0 ? n - 5 : n;
	int w = snprintf(out, cap, "%.*s.%s.json", (int)stem, json_path, kind);
	if (w < 0 || (size_t)w >= cap)
		return -ENAMETOOLONG;
	return 0;
}

static int synflood_json(const struct loadgen_synflood *sf, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	double s = sf->end_us > sf->start_us ? (double)(sf->end_us - sf->start_us) / 1e6 : 0;
	fprintf(f,
		"{\"kind\": \"synflood\", \"rate_target\": %.1f, \"syns_sent\": %" PRIu64
		", \"seconds\": %.3f, \"syns_per_s\": %.1f, \"synacks_seen\": %" PRIu64
		", \"rsts_seen\": %" PRIu64 ", \"src_count\": %" PRIu32 "}\n",
		sf->rate, sf->sent, s, s > 0 ? (double)sf->sent / s : 0.0, sf->synack_seen,
		sf->rst_seen, sf->src_count);
	return fclose(f) == 0 ? 0 : -EIO;
}

int loadgen_mix_report(const struct loadgen_mix *m, FILE *out, const char *json_path,
		       const struct loadgen_report_extra *x, uint64_t end_us)
{
	int status = 0;
	char path[LOADGEN_NAME_MAX + 32];
	for (uint32_t i = 0; i < m->n; i++) {
		const struct loadgen_class *c = &m->cls[i];
		struct loadgen_stats st = c->st;
		if (!st.end_us)
			st.end_us = end_us;
		fprintf(out, "\n== class %s ==\n", loadgen_class_kind_name(c->kind));
		loadgen_report_text(out, &c->cfg, &st, x);
		if (json_path && json_path[0]) {
			int rc = loadgen_mix_json_path(path, sizeof(path), json_path,
						       loadgen_class_kind_name(c->kind));
			if (rc == 0)
				rc = loadgen_report_json(path, &c->cfg, &st, x);
			if (rc < 0)
				status = rc;
		}
	}
	if (m->have_sf) {
		const struct loadgen_synflood *sf = &m->sf;
		double s = sf->end_us > sf->start_us ? (double)(sf->end_us - sf->start_us) / 1e6
						     : 0;
		fprintf(out,
			"\n== class synflood ==\nSYNs sent %" PRIu64 " in %.2f s (%.0f/s, target "
			"%.0f/s) from %" PRIu32 " addresses; answers seen: %" PRIu64
			" SYN-ACK, %" PRIu64 " RST\n",
			sf->sent, s, s > 0 ? (double)sf->sent / s : 0.0, sf->rate, sf->src_count,
			sf->synack_seen, sf->rst_seen);
		if (json_path && json_path[0]) {
			int rc = loadgen_mix_json_path(path, sizeof(path), json_path, "synflood");
			if (rc == 0)
				rc = synflood_json(sf, path);
			if (rc < 0)
				status = rc;
		}
	}
	return status;
}
