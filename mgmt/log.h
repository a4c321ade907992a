/* Postfix-style log lines, so a postmaster's log tooling (pflogsumm, grep habits) works:
 *     Nov 22 10:14:55 mx1 mxgate/smtpd[1234]: 4ABC123: client=unknown[192.0.2.1]
 * Lines go to `maillog_file` when it is set (as Postfix 3.4+), else to stderr. Each line (or
 * batch of whole lines) is written with a single write(2) on an O_APPEND descriptor, so
 * worker threads may log concurrently without interleaving. Not for the per-byte path: one
 * line per event. */
#ifndef MXGATE_MGMT_LOG_H
#define MXGATE_MGMT_LOG_H

#include <stdarg.h>

enum mx_log_level {
	MX_LOG_INFO,    /* no prefix, as Postfix's informational lines */
	MX_LOG_WARNING, /* "warning: " */
	MX_LOG_ERROR,   /* "error: " */
	MX_LOG_FATAL,   /* "fatal: " */
	MX_LOG_LEVEL_MAX,
};

/* Where lines go and how they are tagged: `service` is e.g. "smtpd" (shown as
 * "mxgate/smtpd[pid]"), `hostname` the short host name. path NULL or "" means stderr.
 * Returns 0 or a negative errno (the file could not be opened). */
int mx_log_open(const char *path, const char *hostname, const char *service);
void mx_log(enum mx_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void mx_logv(enum mx_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
void mx_log_close(void);

/* Batching for a poll-loop thread: from mx_log_batch_begin() on, this thread's
 * informational lines are kept in a per-thread buffer (16 lines' worth at least) and
 * written by mx_log_batch_flush() with one write(2); the loop flushes at the end of each
 * iteration, so a line is never held longer than that. Warnings and worse flush the batch
 * and are written at once. mx_log_batch_end() flushes and goes back to writing each line.
 * begin returns 0 or -ENOMEM (then lines are simply written one by one). */
int mx_log_batch_begin(void);
void mx_log_batch_flush(void);
void mx_log_batch_end(void);

#endif
