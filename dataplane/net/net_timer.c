/* Timer wheel; see net_timer.h. */
#include "net_timer.h"

#include <assert.h>
#include <string.h>

void net_timer_wheel_init(struct net_timer_wheel *w, uint32_t now_ms)
{
	memset(w, 0, sizeof(*w));
	w->now = now_ms;
}

static void timer_link(struct net_timer_wheel *w, struct net_timer *t)
{
	/* A timer already due goes in the next slot to be visited; one due beyond the fine
	 * span in the coarse slot of its 4.096 s, whose turn (timer_cascade()) comes after
	 * w->now and no later than its expiry. */
	uint32_t tick = net_tick_le(t->expire, w->now) ? w->now + 1 : t->expire;
	struct net_timer **head;
	if (tick - w->now > NET_TIMER_SLOTS)
		head = &w->coarse[(tick >> NET_TIMER_SHIFT) & (NET_TIMER_COARSE - 1)];
	else
		head = &w->slot[tick & (NET_TIMER_SLOTS - 1)];
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
}

void net_timer_arm(struct net_timer_wheel *w, struct net_timer *t, uint32_t at)
{
	if (net_timer_armed(t))
		net_timer_cancel(w, t);
	t->expire = at;
	timer_link(w, t);
	w->armed++;
}

void net_timer_cancel(struct net_timer_wheel *w, struct net_timer *t)
{
	if (!net_timer_armed(t))
		return;
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->next = 0;
	t->pprev = 0;
	assert(w->armed > 0);
	w->armed--;
}

/* The coarse slot of the 4.096 s that begin now (w->now + 1): its timers go down into the
 * fine slots, or back to a coarse slot when their round is a later one. */
static void timer_cascade(struct net_timer_wheel *w, uint32_t index)
{
	struct net_timer *list = w->coarse[index & (NET_TIMER_COARSE - 1)];
	w->coarse[index & (NET_TIMER_COARSE - 1)] = 0;
	while (list) {
		struct net_timer *t = list;
		list = t->next;
		timer_link(w, t);
	}
}

unsigned net_timer_advance(struct net_timer_wheel *w, uint32_t now_ms,
			   void (*fire)(void *arg, struct net_timer *t), void *arg)
{
	unsigned fired = 0;
	if (!net_tick_le(w->now, now_ms))
		return 0; /* time does not go backwards */
	/* A long stall visits each slot at most once: beyond one turn, every slot is due.
	 * The coarse slots of the 4.096 s skipped go down first (all of them after a stall
	 * of a whole coarse turn), so none of their timers waits for its next round. */
	uint32_t steps = now_ms - w->now;
	if (steps > NET_TIMER_SLOTS) {
		uint32_t start = now_ms - NET_TIMER_SLOTS;
		uint32_t from = (w->now >> NET_TIMER_SHIFT) + 1, to = start >> NET_TIMER_SHIFT;
		uint32_t n = to - from + 1 < NET_TIMER_COARSE ? to - from + 1 : NET_TIMER_COARSE;
		if (!net_tick_le(from << NET_TIMER_SHIFT, start))
			n = 0; /* no 4.096 s began in (w->now, start] */
		w->now = start;
		for (uint32_t k = 0; k < n && w->armed; k++)
			timer_cascade(w, from + k);
		steps = NET_TIMER_SLOTS;
	}
	uint32_t start = now_ms - steps;
	for (uint32_t i = 1; i <= steps && w->armed; i++) {
		uint32_t tick = start + i;
		if ((tick & (NET_TIMER_SLOTS - 1)) == 0) {
			w->now = tick - 1; /* due ones land in this tick's slot */
			timer_cascade(w, tick >> NET_TIMER_SHIFT);
		}
		struct net_timer **head = &w->slot[tick & (NET_TIMER_SLOTS - 1)];
		/* Detach the slot so timers re-armed by the callback into this same slot
		 * are not visited again in this pass. */
		struct net_timer *list = *head;
		*head = 0;
		if (list)
			list->pprev = &list;
		while (list) {
			struct net_timer *t = list;
			list = t->next;
			if (list)
				list->pprev = &list;
			if (net_tick_le(t->expire, now_ms)) {
				t->next = 0;
				t->pprev = 0;
				w->armed--;
				w->now = tick - 1; /* re-arming from fire() lands ahead */
				fire(arg, t);
				fired++;
			} else {
				/* A later round: back into its slot. */
				t->next = *head;
				if (t->next)
					t->next->pprev = &t->next;
				*head = t;
				t->pprev = head;
			}
		}
	}
	w->now = now_ms;
	return fired;
}
