/* mxgate-loadgen's traffic classes (--also): several kinds of client against the same
 * server at the same time, from one process on one port, each with its own source range,
 * rate, counters and report. The main class is the one the other options describe (the
 * legitimate senders, usually); each --also adds one engine (struct loadgen) with its own
 * stats on the same stack, or the SYN flood, which needs no engine: raw SYNs from random
 * addresses of its range that the stack never sees again (their SYN-ACKs are addressed to
 * no address of ours and are dropped; they are counted here, from the received frames).
 *
 *   loadgen_spec.c      the --also specs (what loadgen_args.c calls)
 *   loadgen_mix.c       the classes: their configurations, the dispatch of
 *                       the stack's events to the engine owning a connection, the report
 *   loadgen_synflood.c  the SYN flood: rate, random sources, the frame, what came back
 *
 * No DPDK here: the main loop asks for SYN frames and hands received frames in. */
#ifndef MXGATE_PERF_LOADGEN_MIX_H
#define MXGATE_PERF_LOADGEN_MIX_H

#include "loadgen.h"

/* ---- loadgen_synflood.c ---- */

struct loadgen_synflood {
	double rate;                 /* SYNs per second (> 0) */
	uint32_t src_base, src_count; /* host order */
	uint32_t dst;                /* the server, network order */
	uint16_t dport;              /* host order */
	uint8_t smac[6], dmac[6];
	bool have_dmac;              /* the server's MAC, learned from its frames */
	bool stopped;
	uint64_t rng;                /* xorshift64* state (never 0) */
	double tokens;
	uint64_t tokens_at_us;
	uint64_t sent;               /* SYNs handed out as frames */
	uint64_t synack_seen;        /* SYN-ACKs from the server to a flood address */
	uint64_t rst_seen;           /* RSTs from the server to a flood address */
	uint64_t start_us, end_us;   /* first SYN, last SYN */
};

#define LOADGEN_SYN_FRAME_LEN 60 /* Ethernet's minimum: 14 + 20 + 24 (MSS option) + 2 pad */

void loadgen_synflood_init(struct loadgen_synflood *sf, const struct loadgen_class_spec *sp,
			   uint32_t server, uint16_t server_port, const uint8_t smac[6],
			   uint64_t seed, uint64_t now_us);
/* A received frame: learns the server's MAC (its ARP or IPv4 frames) and counts its SYN-ACKs
 * and RSTs to flood addresses. Reads only within len. */
void loadgen_synflood_observe(struct loadgen_synflood *sf, const uint8_t *frame, size_t len);
/* How many SYNs are due now (the rate's tokens, at most max); 0 until the server's MAC is
 * known or after loadgen_synflood_stop(). The caller sends that many frames. */
uint32_t loadgen_synflood_due(struct loadgen_synflood *sf, uint64_t now_us, uint32_t max);
/* One SYN from a random source address and port of the range into buf (cap >=
 * LOADGEN_SYN_FRAME_LEN), checksums done; its length, or 0 when cap is too small. */
size_t loadgen_synflood_frame(struct loadgen_synflood *sf, uint8_t *buf, size_t cap,
			      uint64_t now_us);
void loadgen_synflood_stop(struct loadgen_synflood *sf, uint64_t now_us);

/* ---- loadgen_mix.c ---- */

struct loadgen_mix;

/* The configuration of a class: the main one's (server, link, timeouts, sizes), with the
 * class's sources, concurrency and rate, its mode, and no session limit (it runs for the
 * main one's --duration). */
void loadgen_class_config(const struct loadgen_config *base,
			  const struct loadgen_class_spec *sp, struct loadgen_config *out);
/* The smallest range holding the main class's sources and every session class's (the
 * stack's own addresses; the SYN flood's are left out: their answers must not be ours).
 * Network-order base. 0, or -EINVAL when the server or the next hop falls inside it (the
 * stack would take the server's address for its own). */
int loadgen_mix_src_cover(const struct loadgen_config *base, uint32_t *src_base,
			  uint32_t *src_count);

/* The classes of base->also, with their stats; NULL with errno. smac: our MAC (the SYNs'
 * source). */
struct loadgen_mix *loadgen_mix_new(const struct loadgen_config *base, const uint8_t smac[6],
				    uint64_t now_us);
void loadgen_mix_free(struct loadgen_mix *m);
void loadgen_mix_attach(struct loadgen_mix *m, struct net_stack *s);
/* The stack's event: to the class that owns c, else to main (the main class's engine). */
void loadgen_mix_event(struct loadgen_mix *m, struct loadgen *main_lg, struct net_conn *c,
		       int ev);
void loadgen_mix_tick(struct loadgen_mix *m, uint64_t now_us);
void loadgen_mix_release(struct loadgen_mix *m);
bool loadgen_mix_done(const struct loadgen_mix *m);
uint32_t loadgen_mix_active(const struct loadgen_mix *m);
/* The SYN flood of the mix, or NULL. */
struct loadgen_synflood *loadgen_mix_synflood(struct loadgen_mix *m);
/* Errors counted by every class. */
uint64_t loadgen_mix_errors(const struct loadgen_mix *m);
/* Each class's report after the main one's: text to out, and JSON beside json_path
 * ("run.json" -> "run.pregreet.json", ...) when it is set. 0 or -errno. */
int loadgen_mix_report(const struct loadgen_mix *m, FILE *out, const char *json_path,
		       const struct loadgen_report_extra *x, uint64_t end_us);
/* "run.json" + "pregreet" -> "run.pregreet.json" (".json" or not at the end). 0, or
 * -ENAMETOOLONG. */
int loadgen_mix_json_path(char *out, size_t cap, const char *json_path, const char *kind);

#endif
