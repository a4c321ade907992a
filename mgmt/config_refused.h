/* Postfix parameters mxgate does not implement, one row each (config_refused.c): what a
 * value of each means for a gateway that does not honour it. */
#ifndef MXGATE_MGMT_CONFIG_REFUSED_H
#define MXGATE_MGMT_CONFIG_REFUSED_H

#include <stddef.h>

/* When a row's value is refused (an error). A value not refused is a warning when the row
 * says so (MX_REFUSED_NEVER rows always, others for their `warn` values), else accepted
 * silently: it asks for what mxgate does anyway. */
enum mx_refused_pred {
	MX_REFUSED_NEVER,    /* harmless for a gateway: always a warning */
	MX_REFUSED_NONEMPTY, /* any value but the empty one */
	MX_REFUSED_YES,      /* yes (any case) */
	MX_REFUSED_NONZERO,  /* a value other than 0 */
	MX_REFUSED_ALWAYS,   /* any value at all */
	MX_REFUSED_NOT_IN,   /* any value not in `harmless` nor in `warn` */
	MX_REFUSED_PRED_MAX,
};

struct mx_refused_def {
	/* Exact, or a prefix when it ends in '*' ("postscreen_*"), or a suffix when it
	 * starts with '*' ("*_destination_rate_delay", Postfix's per-transport names). */
	const char *name;
	enum mx_refused_pred pred;
	const char *harmless; /* MX_REFUSED_NOT_IN: "a|b" (any case; "" is the empty value) */
	const char *warn;     /* values that warn (warn_why) instead of being refused */
	const char *warn_why;
	const char *why;      /* what mxgate does instead: the error's or warning's text */
};

enum mx_refused_verdict {
	MX_REFUSED_OK,     /* what mxgate does anyway: no message */
	MX_REFUSED_WARN,   /* a warning: row->why (NEVER rows) or row->warn_why */
	MX_REFUSED_REFUSE, /* an error: "not implemented by mxgate: row->why" */
	MX_REFUSED_VERDICT_MAX,
};

extern const struct mx_refused_def mx_refused[];
extern const size_t mx_refused_count;

/* The row for `name`: an exact row, else the longest prefix or suffix row; NULL when
 * none. Known parameters (config_params.h) are looked up there first by the loader. */
const struct mx_refused_def *mx_refused_find(const char *name);

/* What value `value` (expanded) of the row's parameter is. */
enum mx_refused_verdict mx_refused_judge(const struct mx_refused_def *row, const char *value);

#endif
