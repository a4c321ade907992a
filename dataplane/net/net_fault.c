/* Seeded fault injection: drop, duplicate, reorder (hold a frame back a random time up to
 * delay_us) received and sent frames. The machines we test on have no netem
 * (docs/ARCHITECTURE.md, "Transports"); this gives the same disorder in-process and reproducibly. When off,
 * the stack pays one predicted branch per frame (s->fault == NULL). */
#include "net_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FAULT_HELD_MAX 256

struct fault_frame {
	uint8_t *data;
	uint32_t len;
	uint64_t release_us;
	bool tx;
	unsigned rx_flags;
	struct net_tx_meta meta;
};

struct net_fault {
	struct net_fault_config cfg;
	uint64_t rng;
	unsigned nheld;
	bool releasing;
	struct fault_frame held[FAULT_HELD_MAX];
};

int net_fault_parse(const char *spec, struct net_fault_config *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = spec;
	while (*p) {
		const char *eq = strchr(p, '=');
		if (!eq)
			return -EINVAL;
		size_t klen = (size_t)(eq - p);
		char *end;
		errno = 0;
		unsigned long long v = strtoull(eq + 1, &end, 10);
		if (errno || end == eq + 1 || (*end && *end != ','))
			return -EINVAL;
		static const char *const pct_keys[] = { "rx_drop", "rx_dup", "rx_reorder",
							"tx_drop", "tx_dup", "tx_reorder",
							"drop",    "dup",    "reorder" };
		unsigned *const pct_dst[] = { &out->rx_drop_pct, &out->rx_dup_pct,
					      &out->rx_reorder_pct, &out->tx_drop_pct,
					      &out->tx_dup_pct, &out->tx_reorder_pct };
		bool known = false;
		if (klen == 4 && !strncmp(p, "seed", 4)) {
			out->seed = v;
			known = true;
		} else if (klen == 8 && !strncmp(p, "delay_us", 8)) {
			if (v == 0 || v > 10000000)
				return -EINVAL;
			out->delay_us = (uint32_t)v;
			known = true;
		}
		for (unsigned i = 0; i < 9 && !known; i++) {
			if (strlen(pct_keys[i]) != klen || strncmp(p, pct_keys[i], klen) != 0)
				continue;
			if (v > 100)
				return -EINVAL;
			if (i < 6) {
				*pct_dst[i] = (unsigned)v;
			} else {
				*pct_dst[i - 6] = (unsigned)v; /* both ways */
				*pct_dst[i - 3] = (unsigned)v;
			}
			known = true;
		}
		if (!known)
			return -EINVAL;
		p = *end ? end + 1 : end;
	}
	return 0;
}

static uint64_t fault_rand(struct net_fault *f)
{
	/* xorshift64*: reproducible from the seed, good enough for coin flips. */
	uint64_t x = f->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	f->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static bool coin(struct net_fault *f, unsigned pct)
{
	return pct && (fault_rand(f) % 100) < pct;
}

int net_stack_set_fault(struct net_stack *s, const struct net_fault_config *cfg)
{
	net_fault_free(s);
	if (!cfg)
		return 0;
	struct net_fault *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->cfg = *cfg;
	if (!f->cfg.delay_us)
		f->cfg.delay_us = 2000;
	f->rng = cfg->seed ? cfg->seed : 0x9e3779b97f4a7c15ULL;
	s->fault = f;
	return 0;
}

void net_fault_free(struct net_stack *s)
{
	struct net_fault *f = s->fault;
	if (!f)
		return;
	for (unsigned i = 0; i < f->nheld; i++)
		free(f->held[i].data);
	free(f);
	s->fault = NULL;
}

static void tx_copy(struct net_stack *s, const uint8_t *frame, size_t len,
		    const struct net_tx_meta *meta)
{
	uint8_t *d;
	void *h = s->ops.tx_alloc(s->ops.ctx, &d, len);
	if (!h) {
		s->cnt.tx_alloc_fail++;
		return;
	}
	memcpy(d, frame, len);
	s->ops.tx_send(s->ops.ctx, h, len, meta);
}

/* Hold a copy; false when the hold queue is full or memory is short. */
static bool hold(struct net_stack *s, const uint8_t *frame, size_t len, bool tx,
		 unsigned rx_flags, const struct net_tx_meta *meta)
{
	struct net_fault *f = s->fault;
	if (f->nheld == FAULT_HELD_MAX)
		return false;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return false;
	memcpy(copy, frame, len);
	struct fault_frame *h = &f->held[f->nheld++];
	h->data = copy;
	h->len = (uint32_t)len;
	h->release_us = s->now_us + 1 + fault_rand(f) % f->cfg.delay_us;
	h->tx = tx;
	h->rx_flags = rx_flags;
	if (meta)
		h->meta = *meta;
	s->cnt.fault_delay++;
	return true;
}

void net_fault_rx(struct net_stack *s, const uint8_t *frame, size_t len, unsigned rx_flags,
		  void (*deliver)(struct net_stack *, const uint8_t *, size_t, unsigned))
{
	struct net_fault *f = s->fault;
	if (coin(f, f->cfg.rx_drop_pct)) {
		s->cnt.fault_drop++;
		return;
	}
	if (coin(f, f->cfg.rx_reorder_pct) && hold(s, frame, len, false, rx_flags, NULL))
		return;
	deliver(s, frame, len, rx_flags);
	if (s->fault && coin(f, f->cfg.rx_dup_pct)) {
		s->cnt.fault_dup++;
		deliver(s, frame, len, rx_flags);
	}
}

bool net_fault_tx(struct net_stack *s, const uint8_t *frame, size_t len,
		  const struct net_tx_meta *meta)
{
	struct net_fault *f = s->fault;
	if (f->releasing)
		return false; /* a held frame going out now */
	if (coin(f, f->cfg.tx_drop_pct)) {
		s->cnt.fault_drop++;
		return true;
	}
	if (coin(f, f->cfg.tx_reorder_pct) && hold(s, frame, len, true, 0, meta))
		return true;
	if (coin(f, f->cfg.tx_dup_pct)) {
		s->cnt.fault_dup++;
		f->releasing = true;
		tx_copy(s, frame, len, meta);
		f->releasing = false;
	}
	return false;
}

void net_fault_poll(struct net_stack *s,
		    void (*deliver)(struct net_stack *, const uint8_t *, size_t, unsigned))
{
	struct net_fault *f = s->fault;
	for (unsigned i = 0; i < f->nheld;) {
		struct fault_frame h = f->held[i];
		if (h.release_us > s->now_us) {
			i++;
			continue;
		}
		f->held[i] = f->held[--f->nheld];
		if (h.tx) {
			f->releasing = true;
			tx_copy(s, h.data, h.len, &h.meta);
			f->releasing = false;
		} else {
			deliver(s, h.data, h.len, h.rx_flags);
		}
		free(h.data);
		if (s->fault != f)
			return; /* switched off by a callback */
	}
}
