/* A per-lcore timer wheel with millisecond ticks: O(1) arm and cancel, and an advance that
 * visits only the slots whose tick has come. A timer further out than the wheel's span
 * sits in its slot until its round comes (the expiry is compared on each visit), so any
 * delay works; the span is chosen so retransmission and delayed-ACK timers fire on their
 * first visit. Intrusive: the node lives in the control block, nothing is allocated. */
#ifndef MXGATE_DATAPLANE_NET_TIMER_H
#define MXGATE_DATAPLANE_NET_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define NET_TIMER_SLOTS 4096u /* power of two; 4.096 s span at 1 ms */

struct net_timer {
	struct net_timer *next, **pprev; /* pprev NULL: not armed */
	uint32_t expire; /* ms tick, compared modulo 2^32 */
};

struct net_timer_wheel {
	uint32_t now; /* the last tick advanced to */
	uint32_t armed;
	struct net_timer *slot[NET_TIMER_SLOTS];
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
