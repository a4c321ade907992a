/* Stress: when the gateway's open connections near mxgate_max_connections, new sessions
 * get the values a configuration gives under stress (`${stress?{X}:{Y}}`: X), as Postfix's
 * processes do when master(8) finds every process of a service busy (STRESS_README).
 *
 * Postfix's master(8) enters stress for a service when a connection arrives with all of its
 * processes busy, and keeps it until the service stayed below its process limit for 1000
 * seconds. mxgate cannot queue a connection until a process frees up: at
 * mxgate_max_connections it refuses with 421. So it enters stress before that, when
 * enter_percent of the capacity is in use, and leaves it when no more than leave_percent
 * is in use and stress lasted min_ms (hysteresis and a dwell time, so that a load
 * hovering at the threshold does not flap).
 *
 * This is the state machine alone: no clock reads (time is passed in), no logging, no
 * shared state. The management thread feeds it once per housekeeping tick
 * (dataplane/reload.c) and publishes the state for the workers to read at accept. */
#ifndef MXGATE_MGMT_STRESS_H
#define MXGATE_MGMT_STRESS_H

#include <stdbool.h>
#include <stdint.h>

enum mx_stress_state {
	MX_STRESS_OFF, /* new sessions get the normal values */
	MX_STRESS_ON,  /* new sessions get the values with stress = yes */
	MX_STRESS_STATE_MAX,
};

const char *mx_stress_state_name(enum mx_stress_state s);

/* What one update did. */
enum mx_stress_change {
	MX_STRESS_UNCHANGED,
	MX_STRESS_ENTERED,
	MX_STRESS_LEFT,
	MX_STRESS_CHANGE_MAX,
};

struct mx_stress_limits {
	unsigned enter_percent; /* 1..100: enter when in_use >= this % of capacity */
	unsigned leave_percent; /* < enter_percent: leave when in_use <= this % ... */
	uint64_t min_ms;        /* ... and stress lasted this long */
};

struct mx_stress {
	enum mx_stress_state state;
	int64_t since_ms;       /* when the current state began (0: never changed) */
	uint64_t entered;       /* times stress began */
	uint64_t stressed_ms;   /* time spent in stress, up to since_ms of the current one */
	uint64_t peak;          /* the most connections in use seen during stress */
};

/* Feed one observation: in_use connections of capacity (the sum of every worker's
 * mxgate_max_connections; 0 means no limit, so never stress) at now_ms (any monotonic
 * clock in milliseconds). Returns what changed; s->state says where it is now. */
enum mx_stress_change mx_stress_update(struct mx_stress *s, const struct mx_stress_limits *l,
				       uint64_t in_use, uint64_t capacity, int64_t now_ms);

/* Milliseconds spent in stress up to now_ms, the current stress included. */
uint64_t mx_stress_total_ms(const struct mx_stress *s, int64_t now_ms);

#endif
