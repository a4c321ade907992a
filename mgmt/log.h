/* Postfix-style log lines, so a postmaster's log tooling (pflogsumm, grep habits) works:
 *     Nov 22 10:14:55 mx1 mxgate/smtpd[1234]: 4ABC123: client=unknown[192.0.2.1]
 * Lines go to `maillog_file` when it is set (as Postfix 3.4+), else to syslog: datagrams
 * to /dev/log, "<PRI>Mmm dd hh:mm:ss NAME/process[pid]: text" as syslog(3) sends them,
 * with `syslog_facility` and `syslog_name` (mx_log_open_conf). Before either is opened
 * (unit tests, start-up errors) they go to standard error. Each line (or batch of whole
 * lines) is written with a single write(2) on an O_APPEND descriptor, or one datagram each
 * on a non-blocking socket, so worker threads may log concurrently without interleaving
 * and never wait for a syslog daemon: a line the socket cannot take now is dropped and
 * counted (mx_log_dropped). Not for the per-byte path: one line per event. */
#ifndef MXGATE_MGMT_LOG_H
#define MXGATE_MGMT_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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

/* The Postfix program a line is logged as: "NAME/smtpd[pid]: ...". pflogsumm and other
 * log readers tell events apart by it (client= from smtpd, message-id= from cleanup,
 * from=<>, size= from qmgr, to=<>, status= from smtp). */
enum mx_log_proc {
	MX_LOG_SMTPD,      /* the SMTP server: connect, client=, NOQUEUE: reject, TLS, SASL */
	MX_LOG_POSTSCREEN, /* the screen: CONNECT, PASS NEW, DNSBL rank, PREGREET */
	MX_LOG_CLEANUP,    /* message-id=, header_checks actions */
	MX_LOG_QMGR,       /* from=<>, size=, nrcpt= (queue active); removed; expired */
	MX_LOG_SMTP,       /* the relay's delivery status lines */
	MX_LOG_LMTP,       /* the same over LMTP */
	MX_LOG_BOUNCE,     /* sender non-delivery notification: ID */
	MX_LOG_MASTER,     /* start, stop, SIGHUP */
	MX_LOG_MGMT,       /* mxgate's own: the management thread (statistics, reload) */
	MX_LOG_PROC_MAX,
};
const char *mx_log_proc_name(enum mx_log_proc p);

/* Where lines go, and how they are tagged. */
struct mx_log_conf {
	const char *maillog_file;  /* non-empty: lines go to this file, none to syslog */
	const char *syslog_socket; /* else: syslog's datagram socket (NULL: "/dev/log") */
	const char *syslog_name;   /* NAME in "NAME/smtpd[pid]" (NULL or "": "mxgate") */
	int facility;              /* a LOG_* facility of <syslog.h> (LOG_MAIL...) */
	const char *hostname;      /* the short host name in file lines (NULL: gethostname) */
	const char *process;       /* the process lines are logged as by default ("smtpd") */
};

/* Opens what `c` says and makes it the target of every thread's lines (call before the
 * threads start; again after a fork or privilege change is fine). Returns 0 or a negative
 * errno (the maillog_file cannot be opened: nothing changed). A syslog socket that is not
 * there yet is no error: lines are counted as dropped until it answers (it is tried again
 * at most once a second), and `warn` (if not NULL) says so, else warn[0] is '\0'. */
int mx_log_open_conf(const struct mx_log_conf *c, char *warn, size_t warnlen);

/* Postfix's syslog_facility names (msg_syslog.c): auth, authpriv, cron, daemon, ftp,
 * kern, lpr, mail, news, syslog, user, uucp, local0..local7, any case. Returns the LOG_*
 * value or -EINVAL. */
int mx_log_facility_code(const char *name);

/* The process this thread's mx_log() lines are logged as (the relay thread: qmgr). */
void mx_log_set_process(enum mx_log_proc p);
/* One line as process `p`, whatever the thread's default. */
void mx_log_as(enum mx_log_proc p, enum mx_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mx_log_asv(enum mx_log_proc p, enum mx_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* Waits until the syslog writer has sent (or dropped) every line queued so far; at once
 * when logging to a file. For tests, and before a fork or exit. */
void mx_log_drain(void);

/* Lines the syslog socket could not take (full, or no daemon listening) since start. */
uint64_t mx_log_dropped(void);

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
