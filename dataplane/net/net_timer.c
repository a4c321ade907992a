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
	/* A timer already due goes in the next slot to be visited. */
	uint32_t tick = net_tick_le(t->expire, w->now) ? w->now + 1 : t->expire;
	struct net_timer **head = &w->slot[tick & (NET_TIMER_SLOTS - 1)];
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

unsigned net_timer_advance(struct net_timer_wheel *w, uint32_t now_ms,
			   void (*fire)(void *arg, struct net_timer *t), void *arg)
{
	unsigned fired = 0;
	if (!net_tick_le(w->now, now_ms))
		return 0; /* time does not go backwards */
	/* A long stall visits each slot at most once: beyond one turn, every slot is due. */
	uint32_t steps = now_ms - w->now;
	if (steps > NET_TIMER_SLOTS)
		steps = NET_TIMER_SLOTS;
	uint32_t start = now_ms - steps;
	for (uint32_t i = 1; i <= steps && w->armed; i++) {
		uint32_t tick = start + i;
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
