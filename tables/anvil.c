/* The shared anvil table (anvil.h): shards with a spin lock each, a bounded window of
 * slots per key, Postfix's fixed rate window. */
#include "tables/anvil.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct anvil_key) == 20, "anvil_key is compared with memcmp");

#define ANVIL_SHARDS_MAX 64u
#define ANVIL_SPINS 256 /* spins on a held lock before each sched_yield() */
/* anvil.c counts up to INT_MAX (its counters are ints) and stops there. */
#define ANVIL_COUNT_MAX ((uint32_t)INT_MAX)

struct anvil_entry {
	struct anvil_key key;
	bool used;
	uint32_t count;                 /* connections open now */
	uint32_t rate[ANVIL_RATE_MAX];  /* events since start */
	uint64_t start;                 /* the rate window's start, seconds */
	uint64_t expires;               /* count == 0: forgotten from this second on */
};

/* What an entry counts for sharing (anvil.h, anvil_share_*), beside it in its own array so
 * that a table that does not share costs nothing more. */
struct anvil_share_slot {
	uint64_t win;                    /* the aligned window these count in, + 1 (0: none) */
	uint32_t unit;                   /* its anvil_rate_time_unit */
	uint8_t touched;                 /* 1 << rate: counted here in this window */
	uint32_t pending[ANVIL_RATE_MAX];
	uint32_t inflight[ANVIL_RATE_MAX];
	uint32_t cluster[ANVIL_RATE_MAX];
};

/* One shard: its lock and its slots, on cache lines of its own. */
struct anvil_shard {
	alignas(64) atomic_uint lock;
	uint32_t used;                  /* slots with used set */
	struct anvil_entry *slot;       /* [a->slots_per_shard] */
	struct anvil_share_slot *share; /* [a->slots_per_shard], when shared */
};

struct anvil {
	struct anvil_shard *shard;      /* [nshards] */
	unsigned nshards;
	unsigned shard_bits;            /* nshards == 1 << shard_bits */
	size_t slots_per_shard;         /* a power of two >= ANVIL_PROBE */
	uint64_t seed;
	bool shared;                    /* anvil_share_enable() */
	atomic_int_fast64_t wall_offset; /* wall minus monotonic seconds, when shared */
	pthread_mutex_t names_lock;     /* anvil_service() only */
	unsigned nnames;
	char names[ANVIL_SERVICES_MAX][ANVIL_SERVICE_NAME_MAX];
};

const char *anvil_rate_name(enum anvil_rate r)
{
	static const char *const names[ANVIL_RATE_MAX] = {
		[ANVIL_RATE_CONNECT] = "connect",
		[ANVIL_RATE_MESSAGE] = "message",
		[ANVIL_RATE_RECIPIENT] = "recipient",
		[ANVIL_RATE_AUTH] = "auth",
		[ANVIL_RATE_NEWTLS] = "newtls",
	};
	return (unsigned)r < ANVIL_RATE_MAX ? names[r] : "?";
}

/* ---- keys ---- */

void anvil_key_make(struct anvil_key *k, const struct mx_inet_addr *a, unsigned v4_prefix,
		    unsigned v6_prefix, unsigned service)
{
	memset(k, 0, sizeof(*k));
	unsigned bits = a->family == AF_INET ? 32 : 128;
	unsigned prefix = a->family == AF_INET ? v4_prefix : v6_prefix;
	if (prefix > bits)
		prefix = bits;
	k->family = a->family;
	k->prefix = (uint8_t)prefix;
	k->service = (uint16_t)service;
	/* Postfix's mask_addr(): whole bytes within the prefix, then the partial byte */
	unsigned whole = prefix / 8, rest = prefix % 8;
	memcpy(k->addr, a->bytes, whole);
	if (rest)
		k->addr[whole] = (uint8_t)(a->bytes[whole] & (0xffu << (8 - rest)));
}

const char *anvil_key_range(const struct anvil_key *k, char *buf, size_t len)
{
	struct mx_inet_addr a = { .family = k->family };
	memcpy(a.bytes, k->addr, sizeof(a.bytes));
	char text[INET6_ADDRSTRLEN];
	mx_inet_format(&a, text, sizeof(text));
	unsigned bits = k->family == AF_INET ? 32 : 128;
	if (k->prefix < bits)
		snprintf(buf, len, "%s/%u", text, k->prefix);
	else
		snprintf(buf, len, "%s", text);
	return buf;
}

/* A seeded mix of the key's 20 bytes (the murmur3 finalizer after each word): the top
 * bits pick the shard, the low bits the home slot. */
static uint64_t anvil_hash(const struct anvil *a, const struct anvil_key *k)
{
	uint64_t w[3] = { 0, 0, 0 };
	memcpy(w, k, sizeof(*k));
	uint64_t h = a->seed;
	for (int i = 0; i < 3; i++) {
		h ^= w[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
		h *= 0xc4ceb9fe1a85ec53ull;
		h ^= h >> 29;
	}
	return h;
}

/* ---- the lock ---- */

static inline void anvil_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static void anvil_lock(struct anvil_shard *s)
{
	for (unsigned spins = 0;; spins++) {
		if (!atomic_load_explicit(&s->lock, memory_order_relaxed) &&
		    !atomic_exchange_explicit(&s->lock, 1, memory_order_acquire))
			return;
		if (spins < ANVIL_SPINS) {
			anvil_cpu_relax();
		} else {
			spins = 0;
			sched_yield();
		}
	}
}

static void anvil_unlock(struct anvil_shard *s)
{
	atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* ---- the table ---- */

int anvil_new(size_t capacity, uint64_t seed, struct anvil **out)
{
	*out = NULL;
	if (capacity < ANVIL_CAPACITY_MIN || capacity > ANVIL_CAPACITY_MAX)
		return -EINVAL;
	size_t cap = ANVIL_CAPACITY_MIN;
	while (cap < capacity)
		cap <<= 1;
	/* as many shards as keep ANVIL_PROBE slots (and more) in each */
	unsigned bits = 0;
	while ((1u << (bits + 1)) <= ANVIL_SHARDS_MAX && (cap >> (bits + 1)) >= ANVIL_PROBE * 4)
		bits++;
	struct anvil *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->shard_bits = bits;
	a->nshards = 1u << bits;
	a->slots_per_shard = cap >> bits;
	a->seed = seed;
	a->shard = aligned_alloc(64, sizeof(*a->shard) * a->nshards);
	if (!a->shard) {
		free(a);
		return -ENOMEM;
	}
	memset(a->shard, 0, sizeof(*a->shard) * a->nshards);
	for (unsigned i = 0; i < a->nshards; i++) {
		atomic_init(&a->shard[i].lock, 0);
		a->shard[i].slot = calloc(a->slots_per_shard, sizeof(struct anvil_entry));
		if (!a->shard[i].slot) {
			anvil_free(a);
			return -ENOMEM;
		}
	}
	atomic_init(&a->wall_offset, 0);
	pthread_mutex_init(&a->names_lock, NULL);
	*out = a;
	return 0;
}

void anvil_free(struct anvil *a)
{
	if (!a)
		return;
	for (unsigned i = 0; a->shard && i < a->nshards; i++) {
		free(a->shard[i].slot);
		free(a->shard[i].share);
	}
	free(a->shard);
	pthread_mutex_destroy(&a->names_lock);
	free(a);
}

int anvil_service(struct anvil *a, const char *name)
{
	int id = -ENOSPC;
	pthread_mutex_lock(&a->names_lock);
	for (unsigned i = 0; i < a->nnames; i++) {
		if (strncmp(a->names[i], name, ANVIL_SERVICE_NAME_MAX - 1) == 0) {
			id = (int)i;
			break;
		}
	}
	if (id < 0 && a->nnames < ANVIL_SERVICES_MAX) {
		snprintf(a->names[a->nnames], ANVIL_SERVICE_NAME_MAX, "%s", name);
		id = (int)a->nnames++;
	}
	pthread_mutex_unlock(&a->names_lock);
	return id;
}

size_t anvil_capacity(const struct anvil *a)
{
	return a->slots_per_shard * a->nshards;
}

size_t anvil_entries(struct anvil *a)
{
	size_t n = 0;
	for (unsigned i = 0; i < a->nshards; i++) {
		anvil_lock(&a->shard[i]);
		n += a->shard[i].used;
		anvil_unlock(&a->shard[i]);
	}
	return n;
}

/* Gone as far as Postfix is concerned: no connection, and its expiry time has come. */
static bool anvil_expired(const struct anvil_entry *e, uint64_t now)
{
	return e->count == 0 && now >= e->expires;
}

/* The shard of k (locked on return) and the slot holding k, or NULL. An expired entry is
 * found too: the caller decides what that means. */
static struct anvil_entry *anvil_find(struct anvil *a, const struct anvil_key *k,
				      struct anvil_shard **sp, size_t *home)
{
	uint64_t h = anvil_hash(a, k);
	struct anvil_shard *s = &a->shard[a->shard_bits ? h >> (64 - a->shard_bits) : 0];
	size_t mask = a->slots_per_shard - 1;
	*sp = s;
	*home = (size_t)h & mask;
	anvil_lock(s);
	for (size_t i = 0; i < ANVIL_PROBE; i++) {
		struct anvil_entry *e = &s->slot[(*home + i) & mask];
		if (e->used && memcmp(&e->key, k, sizeof(*k)) == 0)
			return e;
	}
	return NULL;
}

/* A slot of k's window for a new key (see anvil.h), or NULL when all hold connections. */
static struct anvil_entry *anvil_victim(struct anvil *a, struct anvil_shard *s, size_t home,
					uint64_t now, bool *evicted)
{
	size_t mask = a->slots_per_shard - 1;
	struct anvil_entry *idle = NULL;
	*evicted = false;
	for (size_t i = 0; i < ANVIL_PROBE; i++) {
		struct anvil_entry *e = &s->slot[(home + i) & mask];
		if (!e->used)
			return e;
		if (anvil_expired(e, now))
			return e;
		if (e->count == 0 && (!idle || e->expires < idle->expires))
			idle = e;
	}
	*evicted = idle != NULL;
	return idle;
}

/* Postfix's ANVIL_REMOTE_INCR_RATE(): a window that has passed starts again now. */
static uint32_t anvil_incr(struct anvil_entry *e, enum anvil_rate r, uint64_t now,
			   unsigned unit)
{
	if (e->start + unit < now) {
		memset(e->rate, 0, sizeof(e->rate));
		e->start = now;
	}
	if (e->rate[r] < ANVIL_COUNT_MAX)
		e->rate[r]++;
	return e->rate[r];
}

/* ---- sharing (anvil.h, anvil_share_*) ---- */

static struct anvil_share_slot *anvil_share_of(struct anvil_shard *s, const struct anvil_entry *e)
{
	return &s->share[e - s->slot];
}

/* The aligned window of monotonic second now: wall seconds / unit, + 1 (0 means none). */
static uint64_t anvil_share_window(struct anvil *a, uint64_t now_s, unsigned unit_s)
{
	int64_t off = atomic_load_explicit(&a->wall_offset, memory_order_relaxed);
	int64_t wall = (int64_t)now_s + off;
	if (wall < 0)
		wall = 0;
	return (uint64_t)wall / (unit_s ? unit_s : 1) + 1;
}

/* The slot's counts moved to window win (of unit): a new window starts at zero. Events
 * in flight for the old window are forgotten here; their answers no longer match. */
static void anvil_share_roll(struct anvil_share_slot *sh, uint64_t win, unsigned unit_s)
{
	if (sh->win == win && sh->unit == unit_s)
		return;
	memset(sh, 0, sizeof(*sh));
	sh->win = win;
	sh->unit = unit_s;
}

static uint32_t anvil_share_sum(const struct anvil_share_slot *sh, enum anvil_rate r)
{
	uint64_t n = (uint64_t)sh->cluster[r] + sh->inflight[r] + sh->pending[r];
	return n > ANVIL_COUNT_MAX ? ANVIL_COUNT_MAX : (uint32_t)n;
}

/* After e's local count of r went up (shard locked): count it for sharing too, and return
 * the rate a limit is held against (anvil.h): the local rate alone when not shared. */
static uint32_t anvil_share_count(struct anvil *a, struct anvil_shard *s, struct anvil_entry *e,
				  enum anvil_rate r, uint64_t now_s, unsigned unit_s)
{
	uint32_t local = e->rate[r];
	if (!a->shared)
		return local;
	struct anvil_share_slot *sh = anvil_share_of(s, e);
	anvil_share_roll(sh, anvil_share_window(a, now_s, unit_s), unit_s);
	if (sh->pending[r] < ANVIL_COUNT_MAX)
		sh->pending[r]++;
	sh->touched |= (uint8_t)(1u << r);
	uint32_t shared = anvil_share_sum(sh, r);
	return shared > local ? shared : local;
}

/* anvil_lookup() of a shared table: each rate at least the window's shared sum. */
static void anvil_share_view(struct anvil *a, struct anvil_shard *s, struct anvil_entry *e,
			     uint64_t now_s, unsigned unit_s, struct anvil_view *out)
{
	struct anvil_share_slot *sh = anvil_share_of(s, e);
	if (sh->win != anvil_share_window(a, now_s, unit_s) || sh->unit != unit_s)
		return;
	for (unsigned r = 0; r < ANVIL_RATE_MAX; r++) {
		uint32_t n = anvil_share_sum(sh, (enum anvil_rate)r);
		if (n > out->rate[r])
			out->rate[r] = n;
	}
}

int anvil_share_enable(struct anvil *a, int64_t wall_offset_s)
{
	for (unsigned i = 0; i < a->nshards; i++) {
		if (a->shard[i].share)
			continue;
		a->shard[i].share = calloc(a->slots_per_shard, sizeof(struct anvil_share_slot));
		if (!a->shard[i].share)
			return -ENOMEM;
	}
	atomic_store(&a->wall_offset, wall_offset_s);
	a->shared = true;
	return 0;
}

bool anvil_shared(const struct anvil *a)
{
	return a->shared;
}

void anvil_share_set_offset(struct anvil *a, int64_t wall_offset_s)
{
	atomic_store_explicit(&a->wall_offset, wall_offset_s, memory_order_relaxed);
}

/* Slots looked at per lock of a shard: a walk never holds a lock long. */
#define ANVIL_SHARE_STRIDE 256u

size_t anvil_share_collect(struct anvil *a, uint64_t now_s, unsigned read_mask,
			   struct anvil_cursor *cur, struct anvil_delta *out, size_t max)
{
	assert(a->shared && max >= ANVIL_RATE_MAX);
	size_t n = 0;
	cur->done = false;
	while (cur->shard < a->nshards) {
		struct anvil_shard *s = &a->shard[cur->shard];
		size_t end = cur->slot + ANVIL_SHARE_STRIDE;
		if (end > a->slots_per_shard)
			end = a->slots_per_shard;
		anvil_lock(s);
		for (; cur->slot < end; cur->slot++) {
			if (max - n < ANVIL_RATE_MAX) {
				anvil_unlock(s);
				return n;
			}
			struct anvil_entry *e = &s->slot[cur->slot];
			if (!e->used || anvil_expired(e, now_s))
				continue;
			struct anvil_share_slot *sh = &s->share[cur->slot];
			if (!sh->unit)
				continue; /* never counted for sharing */
			uint64_t win = anvil_share_window(a, now_s, sh->unit);
			unsigned kinds = 0;
			if (sh->win == win)
				kinds = sh->touched;
			if (e->count > 0) {
				anvil_share_roll(sh, win, sh->unit);
				kinds |= read_mask;
			}
			for (unsigned r = 0; r < ANVIL_RATE_MAX; r++) {
				if (!(kinds & (1u << r)))
					continue;
				struct anvil_delta *d = &out[n++];
				memset(d, 0, sizeof(*d));
				d->key = e->key;
				d->rate = (uint8_t)r;
				d->unit = sh->unit;
				d->window = win - 1;
				d->n = sh->pending[r];
				sh->inflight[r] += sh->pending[r];
				sh->pending[r] = 0;
			}
		}
		anvil_unlock(s);
		if (cur->slot >= a->slots_per_shard) {
			cur->shard++;
			cur->slot = 0;
		}
	}
	cur->done = true;
	return n;
}

/* The share slot of d's entry, when it still counts d's window (shard locked on return,
 * also when NULL). */
static struct anvil_share_slot *anvil_share_find(struct anvil *a, const struct anvil_delta *d,
						 struct anvil_shard **sp)
{
	size_t home;
	struct anvil_entry *e = anvil_find(a, &d->key, sp, &home);
	if (!e || d->rate >= ANVIL_RATE_MAX)
		return NULL;
	struct anvil_share_slot *sh = anvil_share_of(*sp, e);
	if (sh->win != d->window + 1 || sh->unit != d->unit)
		return NULL;
	return sh;
}

void anvil_share_applied(struct anvil *a, const struct anvil_delta *d, uint64_t total)
{
	struct anvil_shard *s;
	struct anvil_share_slot *sh = anvil_share_find(a, d, &s);
	if (sh) {
		sh->inflight[d->rate] -= d->n <= sh->inflight[d->rate] ? d->n
								      : sh->inflight[d->rate];
		sh->cluster[d->rate] = total > ANVIL_COUNT_MAX ? ANVIL_COUNT_MAX : (uint32_t)total;
	}
	anvil_unlock(s);
}

void anvil_share_failed(struct anvil *a, const struct anvil_delta *d)
{
	struct anvil_shard *s;
	struct anvil_share_slot *sh = anvil_share_find(a, d, &s);
	if (sh) {
		uint32_t n = d->n <= sh->inflight[d->rate] ? d->n : sh->inflight[d->rate];
		sh->inflight[d->rate] -= n;
		uint64_t p = (uint64_t)sh->pending[d->rate] + n;
		sh->pending[d->rate] = p > ANVIL_COUNT_MAX ? ANVIL_COUNT_MAX : (uint32_t)p;
	}
	anvil_unlock(s);
}

const char *anvil_service_name(struct anvil *a, unsigned id, char *buf, size_t len)
{
	const char *rv = NULL;
	pthread_mutex_lock(&a->names_lock);
	if (id < a->nnames) {
		snprintf(buf, len, "%s", a->names[id]);
		rv = buf;
	}
	pthread_mutex_unlock(&a->names_lock);
	return rv;
}

int anvil_connect(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		  unsigned unit_s, uint32_t *count, uint32_t *rate, struct anvil_effect *fx)
{
	struct anvil_shard *s;
	size_t home;
	bool evicted = false;
	struct anvil_entry *e = anvil_find(a, k, &s, &home);
	if (e && anvil_expired(e, now_s)) {
		/* the timer would have deleted it: this is a first connection again */
		e->used = false;
		s->used--;
	}
	if (!e || !e->used) {
		if (!e && !(e = anvil_victim(a, s, home, now_s, &evicted))) {
			anvil_unlock(s);
			return -ENOSPC;
		}
		if (!e->used)
			s->used++;
		/* ANVIL_REMOTE_FIRST_CONN() */
		memset(e, 0, sizeof(*e));
		e->key = *k;
		e->used = true;
		e->count = 1;
		e->rate[ANVIL_RATE_CONNECT] = 1;
		e->start = now_s;
		if (a->shared)
			memset(anvil_share_of(s, e), 0, sizeof(struct anvil_share_slot));
	} else {
		/* ANVIL_REMOTE_NEXT_CONN() */
		anvil_incr(e, ANVIL_RATE_CONNECT, now_s, unit_s);
		if (e->count < ANVIL_COUNT_MAX)
			e->count++;
	}
	*count = e->count;
	*rate = anvil_share_count(a, s, e, ANVIL_RATE_CONNECT, now_s, unit_s);
	anvil_unlock(s);
	if (fx)
		fx->evicted = evicted;
	return 0;
}

int anvil_disconnect(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		     unsigned unit_s)
{
	struct anvil_shard *s;
	size_t home;
	struct anvil_entry *e = anvil_find(a, k, &s, &home);
	int rc = -ENOENT;
	if (e && e->count > 0) {
		/* ANVIL_REMOTE_DROP_ONE(): the last one starts the expiry timer */
		if (--e->count == 0)
			e->expires = now_s + unit_s;
		rc = 0;
	}
	anvil_unlock(s);
	return rc;
}

int anvil_event(struct anvil *a, const struct anvil_key *k, enum anvil_rate r,
		uint64_t now_s, unsigned unit_s, uint32_t *rate)
{
	/* every rate but the connection rate, which anvil_connect() counts */
	if (r == ANVIL_RATE_CONNECT || (unsigned)r >= ANVIL_RATE_MAX)
		return -EINVAL;
	struct anvil_shard *s;
	size_t home;
	struct anvil_entry *e = anvil_find(a, k, &s, &home);
	int rc = -ENOENT;
	if (e && !anvil_expired(e, now_s)) {
		anvil_incr(e, r, now_s, unit_s);
		*rate = anvil_share_count(a, s, e, r, now_s, unit_s);
		rc = 0;
	}
	anvil_unlock(s);
	return rc;
}

int anvil_lookup(struct anvil *a, const struct anvil_key *k, uint64_t now_s,
		 unsigned unit_s, struct anvil_view *out)
{
	struct anvil_shard *s;
	size_t home;
	struct anvil_entry *e = anvil_find(a, k, &s, &home);
	int rc = -ENOENT;
	if (e && !anvil_expired(e, now_s)) {
		out->count = e->count;
		/* anvil_remote_lookup(): "do not report stale information" */
		if (e->start + unit_s < now_s)
			memset(out->rate, 0, sizeof(out->rate));
		else
			memcpy(out->rate, e->rate, sizeof(out->rate));
		if (a->shared)
			anvil_share_view(a, s, e, now_s, unit_s, out);
		rc = 0;
	}
	anvil_unlock(s);
	return rc;
}
