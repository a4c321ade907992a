/* A per-lcore timer wheel with millisecond ticks: O(1) arm and cancel, and an advance that
 * visits only the slots whose tick has come. Two levels: timers due within the fine
 * wheel's span (4.096 s: retransmission and delayed-ACK timers) sit in a slot per tick;
 * later ones (an idle connection's smtpd_timeout, minutes) in a coarse slot per 4.096 s,
 * moved down into the fine wheel when their 4.096 s come. So a million idle timers cost
 * nothing while they wait: with one level each was visited every 4.096 s (244,000 visits
 * a second, each a cache miss). A timer beyond the coarse span (70 minutes) sits in its
 * coarse slot until its round comes (the expiry is compared on each visit), so any delay
 * works. Intrusive: the node lives in the control block, nothing is allocated. */
#ifndef MXGATE_DATAPLANE_NET_TIMER_H
#define MXGATE_DATAPLANE_NET_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define NET_TIMER_SLOTS 4096u /* power of two; 4.096 s span at 1 ms */
#define NET_TIMER_SHIFT 12    /* log2(NET_TIMER_SLOTS): a coarse slot's ticks */
#define NET_TIMER_COARSE 1024u /* power of two; coarse slots of 4.096 s: 70 minutes */

struct net_timer {
	struct net_timer *next, **pprev; /* pprev NULL: not armed */
	uint32_t expire; /* ms tick, compared modulo 2^32 */
};

struct net_timer_wheel {
	uint32_t now; /* the last tick advanced to */
	uint32_t armed;
	struct net_timer *slot[NET_TIMER_SLOTS];
	struct net_timer *coarse[NET_TIMER_COARSE];
};

void net_timer_wheel_init(struct net_timer_wheel *w, uint32_t now_ms);
/* Arm (or re-arm) t to fire at tick `at`; a time in the past fires on the next advance. */
void net_timer_arm(struct net_timer_wheel *w, struct net_timer *t, uint32_t at);
void net_timer_cancel(struct net_timer_wheel *w, struct net_timer *t);
static inline bool net_timer_armed(const struct net_timer *t)
{
	return t->pprev != 0;
}
/* Advance to now_ms and call fire(arg, t) for each expired timer (it is disarmed first
 * and may be re-armed by the callback). Returns how many fired. */
unsigned net_timer_advance(struct net_timer_wheel *w, uint32_t now_ms,
			   void (*fire)(void *arg, struct net_timer *t), void *arg);

/* Wrap-safe tick comparison. */
static inline bool net_tick_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

#endif
