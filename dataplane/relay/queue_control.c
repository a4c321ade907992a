/* The queue commands of the control socket, and the mailq/postcat/postsuper formats
 * (queue_control.h). Output is formatted here, on the gateway's side, so mxgate-queue
 * only copies it: what an operator sees does not depend on the tool's version. */
#include "dataplane/relay/queue_control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/spool/queue_id.h"
#include "dataplane/spool/spool_envelope.h"
#include "dataplane/spool/spool_recovery.h"
#include "dataplane/spool/spool_segment.h"
#include "mgmt/control.h"

struct queue_control;

/* The context of one admin command: which operation it is. */
struct queue_admin_cmd {
	struct queue_control *qc;
	enum relay_op op;
};

struct queue_control {
	struct relay **relays;
	size_t n;
	struct queue_admin_cmd admin[RELAY_OP_MAX];
};

/* ---- output ---- */

void queue_sink_printf(struct queue_sink *o, const char *fmt, ...)
{
	char small[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		o->write(o->ctx, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big) {
		o->write(o->ctx, small, sizeof(small) - 1);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	o->write(o->ctx, big, (size_t)n);
	free(big);
}

/* s with control characters shown as '?', as Postfix's printable() does for mailq: an
 * address or a next hop's reply must not be able to forge a line of the listing. At most
 * cap - 1 bytes. */
static const char *queue_printable(const char *s, char *buf, size_t cap)
{
	size_t j = 0;
	for (size_t i = 0; s[i] && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[j++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	buf[j] = '\0';
	return buf;
}

/* asctime(3)'s form without its newline, "Sun Nov 22 12:36:25 2026", in local time as
 * showq prints it. */
static void queue_asctime(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t <= 0 || !localtime_r(&tt, &tm) || strftime(out, 32, "%a %b %e %H:%M:%S %Y", &tm) == 0)
		snprintf(out, 32, "??");
}

static enum spool_rcpt_state queue_rcpt_state(const struct spool_msg_entry *e, size_t i)
{
	return e && i < e->nrstate ? (enum spool_rcpt_state)e->rstate[i] : SPOOL_RCPT_PENDING;
}

/* A reason line of showq: right-aligned to column 78 when it fits, in parentheses. */
static void queue_reason_line(struct queue_sink *o, const char *reason)
{
	char buf[SPOOL_DELIVERY_MAX_TEXT + 1];
	queue_printable(reason, buf, sizeof(buf));
	int pad = 76 - (int)strlen(buf);
	queue_sink_printf(o, "%*s(%s)\n", pad > 0 ? pad : 0, "", buf);
}

/* Postfix's showq/postqueue columns: "%-11s %7s %-20s %s" for the heading and the
 * recipients, "%-11s %7ld %20.20s %s" for the sender line, where the ID carries its
 * status character (`*` active, `!` held). */
#define QUEUE_LIST_STRING "%-11s %7s %-20s %s\n"

void queue_list_message(struct queue_list *l, const struct relay_msg_info *info,
			const struct spool_record *rec)
{
	struct queue_sink *o = l->out;
	if (l->count == 0)
		queue_sink_printf(o, QUEUE_LIST_STRING, "-Queue ID-", "--Size--",
				  "----Arrival Time----", "-Sender/Recipient-------");
	else
		queue_sink_printf(o, "\n");
	l->count++;
	l->bytes += info->size;

	char idst[QUEUE_ID_SIZE + 1];
	snprintf(idst, sizeof(idst), "%s%c", info->id,
		 info->held ? '!' : info->active ? '*' : ' ');
	char when[32], addr[1024];
	queue_asctime(rec->arrival, when);
	/* the null sender is shown as Postfix shows it (empty_address_recipient) */
	queue_sink_printf(o, "%-11s %7" PRIu64 " %20.20s %s\n", idst, info->size, when,
			  rec->sender[0] ? queue_printable(rec->sender, addr, sizeof(addr))
					 : "MAILER-DAEMON");

	/* Pending recipients under the last deferral (or hold) reason; recipients the next
	 * hop refused, whose DSN is still owed, under the reply it gave. Sent ones are
	 * done and not shown. */
	const struct spool_msg_entry *e = info->entry;
	bool reason_shown = false;
	for (size_t i = 0; i < rec->nrcpt; i++) {
		if (queue_rcpt_state(e, i) != SPOOL_RCPT_PENDING)
			continue;
		if (!reason_shown && info->reason && info->reason[0])
			queue_reason_line(o, info->reason);
		reason_shown = true;
		queue_sink_printf(o, QUEUE_LIST_STRING, "", "", "",
				  queue_printable(rec->rcpts[i].addr, addr, sizeof(addr)));
	}
	const char *last = NULL;
	for (size_t i = 0; i < rec->nrcpt; i++) {
		if (queue_rcpt_state(e, i) != SPOOL_RCPT_FAILED)
			continue;
		const char *why = e->rtext && i < e->nrstate && e->rtext[i] ? e->rtext[i]
									    : "undeliverable";
		if (!last || strcmp(last, why) != 0)
			queue_reason_line(o, why);
		last = why;
		queue_sink_printf(o, QUEUE_LIST_STRING, "", "", "",
				  queue_printable(rec->rcpts[i].addr, addr, sizeof(addr)));
	}
}

void queue_list_end(struct queue_list *l)
{
	if (l->count == 0)
		queue_sink_printf(l->out, "Mail queue is empty\n");
	else
		queue_sink_printf(l->out, "\n-- %" PRIu64 " Kbytes in %lu Request%s.\n",
				  l->bytes / 1024, l->count, l->count == 1 ? "" : "s");
}

void queue_show_message(struct queue_sink *o, const struct spool_msg_entry *entry,
			const struct spool_record *rec)
{
	const char *id = rec->queue_id;
	char when[32];
	queue_asctime(rec->arrival, when);
	/* postcat's record names where Postfix has one; named_attribute for the rest */
	queue_sink_printf(o, "*** ENVELOPE RECORDS %s ***\n", id);
	queue_sink_printf(o, "message_size: %" PRIu64 "\n", rec->size);
	queue_sink_printf(o, "message_arrival_time: %s\n", when);
	queue_sink_printf(o, "named_attribute: client_name=%s\n",
			  rec->client_name ? rec->client_name : "unknown");
	queue_sink_printf(o, "named_attribute: client_address=%s\n",
			  rec->client_addr ? rec->client_addr : "");
	queue_sink_printf(o, "named_attribute: client_port=%u\n", (unsigned)rec->client_port);
	queue_sink_printf(o, "named_attribute: helo_name=%s\n", rec->helo ? rec->helo : "");
	queue_sink_printf(o, "named_attribute: protocol_name=%s\n",
			  rec->protocol ? rec->protocol : "");
	if (rec->hold_reason)
		queue_sink_printf(o, "named_attribute: hold_reason=%s\n", rec->hold_reason);
	if (entry && entry->held && entry->hold_reason)
		queue_sink_printf(o, "named_attribute: held=%s\n", entry->hold_reason);
	if (rec->filter)
		queue_sink_printf(o, "content_filter: %s\n", rec->filter);
	queue_sink_printf(o, "sender: %s\n", rec->sender);
	for (size_t i = 0; i < rec->nmail_params; i++)
		queue_sink_printf(o, "named_attribute: mail_parameter=%s\n", rec->mail_params[i]);
	for (size_t i = 0; i < rec->nrcpt; i++) {
		const struct spool_rcpt *r = &rec->rcpts[i];
		for (size_t j = 0; j < r->nparams; j++)
			queue_sink_printf(o, "named_attribute: rcpt_parameter=%s\n", r->params[j]);
		queue_sink_printf(o, "original_recipient: %s\n", r->addr);
		queue_sink_printf(o, "%s: %s\n",
				  queue_rcpt_state(entry, i) == SPOOL_RCPT_PENDING ? "recipient"
										   : "done_recipient",
				  r->addr);
	}
	queue_sink_printf(o, "*** MESSAGE CONTENTS %s ***\n", id);
	/* lines as Postfix stores them: LF, not CRLF */
	const char *p = rec->message ? rec->message : "";
	size_t n = rec->message ? rec->size : 0, start = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == '\r' && p[i + 1] == '\n') {
			o->write(o->ctx, p + start, i - start);
			start = i + 1;
			i++;
		}
	}
	if (start < n)
		o->write(o->ctx, p + start, n - start);
	if (n > 0 && p[n - 1] != '\n')
		o->write(o->ctx, "\n", 1);
	queue_sink_printf(o, "*** HEADER EXTRACTED %s ***\n", id);
	queue_sink_printf(o, "*** MESSAGE FILE END %s ***\n", id);
}

static const char *const queue_done_word[RELAY_OP_MAX] = {
	[RELAY_HOLD] = "placed on hold",
	[RELAY_RELEASE] = "released from hold",
	[RELAY_DELETE] = "removed",
	[RELAY_REQUEUE] = "requeued",
	[RELAY_FLUSH] = NULL,
};

static const char *const queue_summary_word[RELAY_OP_MAX] = {
	[RELAY_HOLD] = "Placed on hold",
	[RELAY_RELEASE] = "Released from hold",
	[RELAY_DELETE] = "Deleted",
	[RELAY_REQUEUE] = "Requeued",
	[RELAY_FLUSH] = NULL,
};

void queue_admin_report(struct queue_sink *o, enum relay_op op, const char *id)
{
	if (queue_done_word[op])
		queue_sink_printf(o, "mxgate-queue: %s: %s\n", id, queue_done_word[op]);
}

void queue_admin_summary(struct queue_sink *o, enum relay_op op, unsigned long n)
{
	if (queue_summary_word[op])
		queue_sink_printf(o, "mxgate-queue: %s: %lu message%s\n", queue_summary_word[op],
				  n, n == 1 ? "" : "s");
}

/* ---- the commands ---- */

static void queue_sink_control(void *ctx, const void *p, size_t n)
{
	control_write(ctx, p, n);
}

static int queue_list_cb(void *ctx, const struct relay_msg_info *info,
			 const struct spool_record *rec)
{
	queue_list_message(ctx, info, rec);
	return 0;
}

static int queue_cmd_list(void *ctx, int argc, char **argv, struct control_out *out)
{
	struct queue_control *qc = ctx;
	(void)argv;
	if (argc != 1) {
		control_printf(out, "usage: queue-list\n");
		return 2;
	}
	struct queue_sink sink = { queue_sink_control, out };
	struct queue_list l = { .out = &sink };
	int status = 0;
	for (size_t i = 0; i < qc->n; i++) {
		int rc = relay_list(qc->relays[i], queue_list_cb, &l);
		if (rc < 0) {
			control_printf(out, "mxgate-queue: warning: cannot list spool %zu: %s\n",
				       i + 1, strerror(-rc));
			status = 1;
		}
	}
	queue_list_end(&l);
	return status;
}

static int queue_cmd_show(void *ctx, int argc, char **argv, struct control_out *out)
{
	struct queue_control *qc = ctx;
	if (argc < 2) {
		control_printf(out, "usage: queue-show ID...\n");
		return 2;
	}
	struct queue_sink sink = { queue_sink_control, out };
	int status = 0;
	for (int a = 1; a < argc; a++) {
		if (!queue_id_valid(argv[a])) {
			control_printf(out, "mxgate-queue: warning: invalid mail queue id: %s\n",
				       argv[a]);
			status = 1;
			continue;
		}
		int rc = -ENOENT;
		char err[256] = "";
		for (size_t i = 0; i < qc->n && rc == -ENOENT; i++) {
			struct spool_record *rec = NULL;
			rc = relay_read(qc->relays[i], argv[a], &rec, err, sizeof(err));
			if (rc == 0) {
				queue_show_message(&sink, NULL, rec);
				spool_record_free(rec);
			}
		}
		if (rc == -ENOENT) {
			control_printf(out, "mxgate-queue: warning: %s: no such message\n", argv[a]);
			status = 1;
		} else if (rc == -EDESTADDRREQ) {
			control_printf(out, "mxgate-queue: warning: %s: no next hop is configured "
					    "(relayhost and transport_maps are empty)\n", argv[a]);
			status = 1;
		} else if (rc < 0) {
			control_printf(out, "mxgate-queue: warning: %s: %s\n", argv[a],
				       err[0] ? err : strerror(-rc));
			status = 1;
		}
	}
	return status;
}

static int queue_cmd_admin(void *ctx, int argc, char **argv, struct control_out *out)
{
	const struct queue_admin_cmd *cmd = ctx;
	struct queue_control *qc = cmd->qc;
	enum relay_op op = cmd->op;
	if (argc < 2 && op != RELAY_FLUSH) {
		control_printf(out, "usage: %s ID...|ALL\n", argv[0]);
		return 2;
	}
	struct queue_sink sink = { queue_sink_control, out };
	unsigned long changed = 0;
	int status = 0;
	bool all = argc < 2; /* flush without IDs */
	for (int a = 1; a < argc; a++)
		if (strcmp(argv[a], "ALL") == 0)
			all = true;
	if (all) {
		for (size_t i = 0; i < qc->n; i++) {
			int rc = relay_admin(qc->relays[i], op, NULL);
			if (rc == -EDESTADDRREQ) {
				control_printf(out, "mxgate-queue: warning: no next hop is configured "
						    "(relayhost and transport_maps are empty): mail "
						    "stays in the queue\n");
				status = 1;
				break;
			} else if (rc < 0) {
				control_printf(out, "mxgate-queue: warning: spool %zu: %s\n", i + 1,
					       strerror(-rc));
				status = 1;
			} else {
				changed += (unsigned long)rc;
			}
		}
		queue_admin_summary(&sink, op, changed);
		return status;
	}
	for (int a = 1; a < argc; a++) {
		if (!queue_id_valid(argv[a])) {
			control_printf(out, "mxgate-queue: warning: invalid mail queue id: %s\n",
				       argv[a]);
			status = 1;
			continue;
		}
		int rc = -ENOENT;
		for (size_t i = 0; i < qc->n && rc == -ENOENT; i++)
			rc = relay_admin(qc->relays[i], op, argv[a]);
		if (rc == -ENOENT) {
			control_printf(out, "mxgate-queue: warning: %s: no such message\n", argv[a]);
			status = 1;
		} else if (rc == -EDESTADDRREQ) {
			control_printf(out, "mxgate-queue: warning: %s: no next hop is configured "
					    "(relayhost and transport_maps are empty)\n", argv[a]);
			status = 1;
		} else if (rc < 0) {
			control_printf(out, "mxgate-queue: warning: %s: %s\n", argv[a],
				       strerror(-rc));
			status = 1;
		} else if (rc > 0) {
			queue_admin_report(&sink, op, argv[a]);
			changed += (unsigned long)rc;
		}
	}
	queue_admin_summary(&sink, op, changed);
	return status;
}

int queue_control_register(struct queue_control **out, struct control_server *server,
			   struct relay *const *relays, size_t n, char *err, size_t errlen)
{
	*out = NULL;
	if (n == 0) {
		snprintf(err, errlen, "control socket: no relay to serve");
		return -EINVAL;
	}
	struct queue_control *qc = calloc(1, sizeof(*qc));
	if (!qc || !(qc->relays = calloc(n, sizeof(*qc->relays)))) {
		free(qc);
		snprintf(err, errlen, "control socket: out of memory");
		return -ENOMEM;
	}
	memcpy(qc->relays, relays, n * sizeof(*relays));
	qc->n = n;
	for (int op = 0; op < RELAY_OP_MAX; op++)
		qc->admin[op] = (struct queue_admin_cmd){ qc, (enum relay_op)op };
	const struct {
		const char *name, *usage;
		control_cmd_fn *fn;
		void *ctx;
	} cmds[] = {
		{ "queue-list", "", queue_cmd_list, qc },
		{ "queue-show", "ID...", queue_cmd_show, qc },
		{ "queue-hold", "ID...|ALL", queue_cmd_admin, &qc->admin[RELAY_HOLD] },
		{ "queue-release", "ID...|ALL", queue_cmd_admin, &qc->admin[RELAY_RELEASE] },
		{ "queue-delete", "ID...|ALL", queue_cmd_admin, &qc->admin[RELAY_DELETE] },
		{ "queue-requeue", "ID...|ALL", queue_cmd_admin, &qc->admin[RELAY_REQUEUE] },
		{ "queue-flush", "[ID...]", queue_cmd_admin, &qc->admin[RELAY_FLUSH] },
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int rc = control_register(server, cmds[i].name, cmds[i].usage, cmds[i].fn,
					  cmds[i].ctx);
		if (rc < 0) {
			snprintf(err, errlen, "control socket: register %s: %s", cmds[i].name,
				 strerror(-rc));
			queue_control_free(qc);
			return rc;
		}
	}
	*out = qc;
	return 0;
}

void queue_control_free(struct queue_control *qc)
{
	if (!qc)
		return;
	free(qc->relays);
	free(qc);
}
