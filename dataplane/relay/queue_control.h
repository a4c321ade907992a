/* The queue commands of the control socket (mgmt/control.h), which `mxgate-queue` sends
 * while the gateway runs, and the output formats they share with mxgate-queue's offline
 * mode (gateway stopped: it reads and changes the spools itself).
 *
 * Commands (over every relay, one per spool directory; IDs are queue IDs or ALL):
 *   queue-list                  the queue as Postfix's mailq / postqueue -p shows it
 *   queue-show ID...            envelope records then the message, as postcat -q
 *   queue-hold ID...|ALL        postsuper -h      "mxgate-queue: ID: placed on hold"
 *   queue-release ID...|ALL     postsuper -H      "mxgate-queue: ID: released from hold"
 *   queue-delete ID...|ALL      postsuper -d      "mxgate-queue: ID: removed"
 *   queue-requeue ID...|ALL     postsuper -r      "mxgate-queue: ID: requeued"
 *   queue-flush [ID...]         postqueue -f / -i (silent, as postqueue)
 * hold, release, delete and requeue end with postsuper's summary line ("mxgate-queue:
 * Placed on hold: 2 messages"). Exit status: 0, 1 when an ID was not found, invalid, or a
 * change failed, 2 for usage. */
#ifndef MXGATE_DATAPLANE_RELAY_QUEUE_CONTROL_H
#define MXGATE_DATAPLANE_RELAY_QUEUE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/relay/relay.h"
#include "mgmt/control.h"

struct queue_control;

/* Register the queue commands over relays[0..n) (n >= 1; the array is copied, the relays
 * must outlive the server) on a control server not started yet. Returns 0 or a negative
 * errno with err. */
int queue_control_register(struct queue_control **out, struct control_server *server,
			   struct relay *const *relays, size_t n, char *err, size_t errlen);
/* After the server is freed (no command runs any more). NULL is a no-op. */
void queue_control_free(struct queue_control *qc);

/* ---- output formats (shared with mxgate-queue's offline mode) ---- */

/* Where formatted output goes: the control socket, or stdout. */
struct queue_sink {
	void (*write)(void *ctx, const void *p, size_t n);
	void *ctx;
};
void queue_sink_printf(struct queue_sink *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* mailq: queue_list_message() for each message, then queue_list_end() (the "-- N Kbytes
 * in M Requests." footer, or "Mail queue is empty"). */
struct queue_list {
	struct queue_sink *out;
	uint64_t bytes;
	unsigned long count;
};
void queue_list_message(struct queue_list *l, const struct relay_msg_info *info,
			const struct spool_record *rec);
void queue_list_end(struct queue_list *l);

/* postcat -q: envelope records, then the message (rec->message) with CRLF shown as LF.
 * entry (may be NULL: unknown) gives each recipient's delivery state: decided ones are
 * shown as done_recipient. */
void queue_show_message(struct queue_sink *o, const struct spool_msg_entry *entry,
			const struct spool_record *rec);

/* postsuper's messages: a changed message, and the summary. Nothing for FLUSH. */
void queue_admin_report(struct queue_sink *o, enum relay_op op, const char *id);
void queue_admin_summary(struct queue_sink *o, enum relay_op op, unsigned long n);

#endif
