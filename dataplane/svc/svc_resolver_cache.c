/* The resolver's data structures: an intrusive chained hash map keyed with SipHash, the
 * answer cache on it (TTL expiry, LRU bounds on entries and bytes), and the min-heap of
 * deadlines the epoll loop waits on. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/svc/svc_resolver_internal.h"

/* ---- hash map ---- */

int svc_resolver_hmap_init(struct svc_resolver_hmap *m, size_t buckets, size_t max_buckets)
{
	size_t n = 16;
	while (n < buckets)
		n <<= 1;
	m->buckets = calloc(n, sizeof(*m->buckets));
	if (!m->buckets)
		return -ENOMEM;
	m->mask = n - 1;
	m->count = 0;
	m->max_buckets = max_buckets < n ? n : max_buckets;
	return 0;
}

void svc_resolver_hmap_free(struct svc_resolver_hmap *m)
{
	free(m->buckets);
	m->buckets = NULL;
}

static void svc_resolver_hmap_grow(struct svc_resolver_hmap *m)
{
	size_t n = (m->mask + 1) * 2;
	struct svc_resolver_hnode **b = calloc(n, sizeof(*b));
	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i <= m->mask; i++) {
		struct svc_resolver_hnode *e = m->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			size_t k = (size_t)e->hash & (n - 1);
			e->next = b[k];
			b[k] = e;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->mask = n - 1;
}

void svc_resolver_hmap_insert(struct svc_resolver_hmap *m, struct svc_resolver_hnode *n,
			      uint64_t hash)
{
	if (m->count >= m->mask + 1 && (m->mask + 1) * 2 <= m->max_buckets)
		svc_resolver_hmap_grow(m);
	size_t k = (size_t)hash & m->mask;
	n->hash = hash;
	n->next = m->buckets[k];
	m->buckets[k] = n;
	m->count++;
}

void svc_resolver_hmap_remove(struct svc_resolver_hmap *m, struct svc_resolver_hnode *n)
{
	struct svc_resolver_hnode **p = &m->buckets[(size_t)n->hash & m->mask];
	while (*p && *p != n)
		p = &(*p)->next;
	assert(*p == n); /* removing what is not there is a bug */
	*p = n->next;
	n->next = NULL;
	m->count--;
}

struct svc_resolver_hnode *svc_resolver_hmap_first(const struct svc_resolver_hmap *m,
						   uint64_t hash)
{
	struct svc_resolver_hnode *e = m->buckets[(size_t)hash & m->mask];
	while (e && e->hash != hash)
		e = e->next;
	return e;
}

struct svc_resolver_hnode *svc_resolver_hmap_next(const struct svc_resolver_hnode *n,
						  uint64_t hash)
{
	struct svc_resolver_hnode *e = n->next;
	while (e && e->hash != hash)
		e = e->next;
	return e;
}

/* ---- SipHash-2-4 ---- */

static inline uint64_t svc_resolver_rotl(uint64_t x, unsigned b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t svc_resolver_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#define SVC_RESOLVER_SIPROUND(v0, v1, v2, v3)                                              \
	do {                                                                               \
		v0 += v1;                                                                  \
		v1 = svc_resolver_rotl(v1, 13);                                            \
		v1 ^= v0;                                                                  \
		v0 = svc_resolver_rotl(v0, 32);                                            \
		v2 += v3;                                                                  \
		v3 = svc_resolver_rotl(v3, 16);                                            \
		v3 ^= v2;                                                                  \
		v0 += v3;                                                                  \
		v3 = svc_resolver_rotl(v3, 21);                                            \
		v3 ^= v0;                                                                  \
		v2 += v1;                                                                  \
		v1 = svc_resolver_rotl(v1, 17);                                            \
		v1 ^= v2;                                                                  \
		v2 = svc_resolver_rotl(v2, 32);                                            \
	} while (0)

uint64_t svc_resolver_siphash(const uint8_t key[16], const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t k0 = svc_resolver_le64(key), k1 = svc_resolver_le64(key + 8);
	/* the initialisation constants spell "somepseudorandomlygeneratedbytes" */
	uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = k1 ^ 0x7465646279746573ULL;
	size_t whole = len & ~(size_t)7;
	for (size_t i = 0; i < whole; i += 8) {
		uint64_t m = svc_resolver_le64(in + i);
		v3 ^= m;
		SVC_RESOLVER_SIPROUND(v0, v1, v2, v3);
		SVC_RESOLVER_SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	/* the last block: the remaining bytes, and the length's low byte on top */
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[whole + i] << (8 * i);
	v3 ^= b;
	SVC_RESOLVER_SIPROUND(v0, v1, v2, v3);
	SVC_RESOLVER_SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	for (int r = 0; r < 4; r++)
		SVC_RESOLVER_SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- timer heap ---- */

void svc_resolver_timer_init(struct svc_resolver_timer *t, enum svc_resolver_timer_kind kind)
{
	t->when = 0;
	t->pos = SIZE_MAX;
	t->kind = kind;
}

static void svc_resolver_heap_set(struct svc_resolver_heap *h, size_t i,
				  struct svc_resolver_timer *t)
{
	h->t[i] = t;
	t->pos = i;
}

static void svc_resolver_heap_up(struct svc_resolver_heap *h, size_t i)
{
	struct svc_resolver_timer *t = h->t[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->t[parent]->when <= t->when)
			break;
		svc_resolver_heap_set(h, i, h->t[parent]);
		i = parent;
	}
	svc_resolver_heap_set(h, i, t);
}

static void svc_resolver_heap_down(struct svc_resolver_heap *h, size_t i)
{
	struct svc_resolver_timer *t = h->t[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->t[c + 1]->when < h->t[c]->when)
			c++;
		if (t->when <= h->t[c]->when)
			break;
		svc_resolver_heap_set(h, i, h->t[c]);
		i = c;
	}
	svc_resolver_heap_set(h, i, t);
}

int svc_resolver_heap_arm(struct svc_resolver_heap *h, struct svc_resolver_timer *t,
			  uint64_t when)
{
	if (t->pos != SIZE_MAX) {
		uint64_t old = t->when;
		t->when = when;
		if (when < old)
			svc_resolver_heap_up(h, t->pos);
		else
			svc_resolver_heap_down(h, t->pos);
		return 0;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 256;
		struct svc_resolver_timer **nt = realloc(h->t, cap * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		h->t = nt;
		h->cap = cap;
	}
	t->when = when;
	svc_resolver_heap_set(h, h->n++, t);
	svc_resolver_heap_up(h, t->pos);
	return 0;
}

void svc_resolver_heap_disarm(struct svc_resolver_heap *h, struct svc_resolver_timer *t)
{
	if (t->pos == SIZE_MAX)
		return;
	size_t i = t->pos;
	assert(i < h->n && h->t[i] == t);
	t->pos = SIZE_MAX;
	h->n--;
	if (i == h->n)
		return;
	struct svc_resolver_timer *moved = h->t[h->n];
	svc_resolver_heap_set(h, i, moved);
	/* the last timer, moved into the hole, may belong above or below it */
	if (i > 0 && h->t[(i - 1) / 2]->when > moved->when)
		svc_resolver_heap_up(h, i);
	else
		svc_resolver_heap_down(h, i);
}

struct svc_resolver_timer *svc_resolver_heap_min(const struct svc_resolver_heap *h)
{
	return h->n ? h->t[0] : NULL;
}

void svc_resolver_heap_free(struct svc_resolver_heap *h)
{
	free(h->t);
	h->t = NULL;
	h->n = h->cap = 0;
}

/* ---- the cache ---- */

int svc_resolver_cache_init(struct svc_resolver_cache *c, size_t max_entries,
			    uint64_t max_bytes)
{
	memset(c, 0, sizeof(*c));
	c->max_entries = max_entries;
	c->max_bytes = max_bytes;
	return svc_resolver_hmap_init(&c->map, 1024, max_entries);
}

static void svc_resolver_lru_unlink(struct svc_resolver_cache *c, struct svc_resolver_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void svc_resolver_lru_push(struct svc_resolver_cache *c, struct svc_resolver_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void svc_resolver_entry_drop(struct svc_resolver_cache *c, struct svc_resolver_entry *e)
{
	svc_resolver_hmap_remove(&c->map, &e->node);
	svc_resolver_lru_unlink(c, e);
	c->entries--;
	c->bytes -= e->bytes;
	dns_result_put(e->result);
	free(e);
}

void svc_resolver_cache_free(struct svc_resolver_cache *c)
{
	while (c->lru_tail)
		svc_resolver_entry_drop(c, c->lru_tail);
	svc_resolver_hmap_free(&c->map);
}

static struct svc_resolver_entry *svc_resolver_cache_find(struct svc_resolver_cache *c,
							  enum dns_type type, const char *name,
							  size_t len, uint64_t hash)
{
	for (struct svc_resolver_hnode *n = svc_resolver_hmap_first(&c->map, hash); n;
	     n = svc_resolver_hmap_next(n, hash)) {
		struct svc_resolver_entry *e =
			svc_resolver_container_of(n, struct svc_resolver_entry, node);
		if (e->type == type && e->name_len == len && memcmp(e->name, name, len) == 0)
			return e;
	}
	return NULL;
}

struct dns_result *svc_resolver_cache_get(struct svc_resolver_cache *c, enum dns_type type,
					  const char *name, size_t len, uint64_t hash,
					  uint64_t now_ms)
{
	if (!c->map.buckets)
		return NULL;
	struct svc_resolver_entry *e = svc_resolver_cache_find(c, type, name, len, hash);
	if (!e)
		return NULL;
	if (now_ms >= e->expires_ms) {
		svc_resolver_entry_drop(c, e);
		return NULL;
	}
	if (c->lru_head != e) {
		svc_resolver_lru_unlink(c, e);
		svc_resolver_lru_push(c, e);
	}
	return e->result;
}

void svc_resolver_cache_put(struct svc_resolver_cache *c, enum dns_type type,
			    const char *name, size_t len, uint64_t hash,
			    struct dns_result *result, uint32_t ttl_s, uint64_t now_ms)
{
	if (ttl_s == 0 || c->max_entries == 0 || !c->map.buckets || len > DNS_HOSTNAME_MAX)
		return;
	struct svc_resolver_entry *old = svc_resolver_cache_find(c, type, name, len, hash);
	if (old)
		svc_resolver_entry_drop(c, old);
	size_t bytes = sizeof(struct svc_resolver_entry) + len + 1 + dns_result_size(result);
	if (bytes > c->max_bytes)
		return;
	struct svc_resolver_entry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return;
	e->expires_ms = now_ms + (uint64_t)ttl_s * 1000u;
	e->result = dns_result_get(result);
	e->bytes = bytes;
	e->type = type;
	e->name_len = (uint8_t)len;
	memcpy(e->name, name, len);
	e->name[len] = '\0';
	svc_resolver_hmap_insert(&c->map, &e->node, hash);
	svc_resolver_lru_push(c, e);
	c->entries++;
	c->bytes += bytes;
	while (c->entries > c->max_entries || c->bytes > c->max_bytes) {
		/* the least recently used goes first; e itself fits, so it stays */
		assert(c->lru_tail != e);
		svc_resolver_entry_drop(c, c->lru_tail);
		c->evictions++;
	}
}
