/* The relay's delivery status line, in Postfix's form (global/log_adhoc.c):
 *     ID: to=<rcpt>, relay=host[addr]:port, delay=1.2, delays=0.01/0/0.15/1, dsn=2.0.0,
 *     status=sent (250 2.0.0 Ok: queued as X)
 * so pflogsumm and a postmaster's habits read the gateway's deliveries as Postfix's. Pure
 * formatting: the caller passes the times and logs the line. */
#ifndef MXGATE_DATAPLANE_RELAY_RELAY_LOG_H
#define MXGATE_DATAPLANE_RELAY_RELAY_LOG_H

#include <stddef.h>
#include <stdint.h>

/* The moments of one delivery attempt, wall clock in microseconds; 0 means "did not
 * happen" (Postfix's TIME_STAMPED()). */
struct relay_log_times {
	uint64_t arrival_us; /* the message arrived (its queue file was opened) */
	uint64_t active_us;  /* this attempt began (Postfix: entered the active queue) */
	uint64_t handoff_us; /* the delivery to this recipient's next hop began */
	uint64_t setup_us;   /* the connection was ready (greeting, EHLO, TLS done) */
	uint64_t done_us;    /* the attempt's outcome was known */
};

/* Postfix's format_tv() with two significant digits and at most two decimals
 * (delay_max_res = 2): 0, 0.01, 0.25, 1.2, 51. Writes a NUL-terminated string of at most
 * cap - 1 bytes; returns its length. */
size_t relay_log_format_tv(char *buf, size_t cap, uint64_t us);

/* The whole line after "ID: " is formatted as log_adhoc() does: delay= is done minus
 * arrival; delays=a/b/c/d are before the attempt, in the queue manager, connection
 * set-up, and transmission, with log_adhoc()'s rules for moments that did not happen.
 * Returns the length written (cut to cap - 1, NUL-terminated). */
size_t relay_log_delivery(char *buf, size_t cap, const char *id, const char *to,
			  const char *relay, const struct relay_log_times *t, const char *dsn,
			  const char *status, const char *text);

#endif
