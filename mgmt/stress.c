/* The stress state machine (see stress.h): thresholds with hysteresis and a dwell time. */
#include "mgmt/stress.h"

#include <assert.h>

const char *mx_stress_state_name(enum mx_stress_state s)
{
	switch (s) {
	case MX_STRESS_OFF:
		return "off";
	case MX_STRESS_ON:
		return "on";
	case MX_STRESS_STATE_MAX:
		break;
	}
	return "?";
}

/* The one place the state changes. */
static void mx_stress_enter_state(struct mx_stress *s, enum mx_stress_state to, int64_t now_ms)
{
	assert(to < MX_STRESS_STATE_MAX && to != s->state);
	if (s->state == MX_STRESS_ON && now_ms > s->since_ms)
		s->stressed_ms += (uint64_t)(now_ms - s->since_ms);
	if (to == MX_STRESS_ON) {
		s->entered++;
		s->peak = 0;
	}
	s->state = to;
	s->since_ms = now_ms;
}

/* in_use >= percent% of capacity, without overflow (both below 2^64 / 100 in practice:
 * connection counts). */
static bool mx_stress_at_least(uint64_t in_use, uint64_t capacity, unsigned percent)
{
	return in_use * 100 >= capacity * percent;
}

enum mx_stress_change mx_stress_update(struct mx_stress *s, const struct mx_stress_limits *l,
				       uint64_t in_use, uint64_t capacity, int64_t now_ms)
{
	assert(l->enter_percent >= 1 && l->enter_percent <= 100 &&
	       l->leave_percent < l->enter_percent);
	switch (s->state) {
	case MX_STRESS_OFF:
		if (capacity == 0 || !mx_stress_at_least(in_use, capacity, l->enter_percent))
			return MX_STRESS_UNCHANGED;
		mx_stress_enter_state(s, MX_STRESS_ON, now_ms);
		s->peak = in_use;
		return MX_STRESS_ENTERED;
	case MX_STRESS_ON:
		if (in_use > s->peak)
			s->peak = in_use;
		/* without a limit (capacity 0) there is nothing to be stressed about */
		if (capacity != 0) {
			if (now_ms < s->since_ms || (uint64_t)(now_ms - s->since_ms) < l->min_ms)
				return MX_STRESS_UNCHANGED;
			if (in_use * 100 > capacity * l->leave_percent)
				return MX_STRESS_UNCHANGED;
		}
		mx_stress_enter_state(s, MX_STRESS_OFF, now_ms);
		return MX_STRESS_LEFT;
	case MX_STRESS_STATE_MAX:
		break;
	}
	assert(!"bad stress state");
	return MX_STRESS_UNCHANGED;
}

uint64_t mx_stress_total_ms(const struct mx_stress *s, int64_t now_ms)
{
	uint64_t t = s->stressed_ms;
	if (s->state == MX_STRESS_ON && now_ms > s->since_ms)
		t += (uint64_t)(now_ms - s->since_ms);
	return t;
}
