/* The screen's glue (postscreen(8) in the worker): a screened connection lives here, with
 * no SMTP session, until the screen lets it through (then conn_screen_pass() makes its
 * struct conn on the same connection) or ends it. It asks the resolver for the DNSBL
 * answers and the state service for the client's temporary allowlist record, logs what
 * the screen says, writes the record back when a test passed, and counts the outcomes.
 *
 * What one costs while it screens (x86-64): struct conn_screen (144 bytes) and the
 * codec's object (368 bytes, smtp_screen_memory()); the teaser and replies take an output
 * buffer (at most 3 KiB) only while they wait to be sent, the dummy engine 544 bytes plus
 * a line buffer of line_length_limit only when it runs, and a 32-byte record per DNS
 * question or cache request in flight (with the request itself, which the service
 * holds). The transport adds its own connection state (TCP control block, timers). */
#ifndef MXGATE_DATAPLANE_SESSION_CONN_SCREEN_H
#define MXGATE_DATAPLANE_SESSION_CONN_SCREEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/session/conn.h"
#include "mxgate/inet.h"
#include "mxgate/span.h"

struct conn_screen;

enum conn_screen_state {
	CONN_SCREEN_SCREENING, /* the screen has it */
	CONN_SCREEN_PASS,      /* let it through: conn_screen_pass() */
	CONN_SCREEN_CLOSE,     /* send the output, then close */
	CONN_SCREEN_STATE_MAX
};

/* Whether a connection picked for a service (conn_pick()) is screened: its service has
 * a screen. Then conn_screen_new(), else conn_new_picked(), on the same pick (a second
 * pick would count the connection twice in a canary's share). */
bool conn_screen_wanted(const struct conn_pick *p);

/* A new screened connection on the generation and service p picked. NULL when out of
 * memory (refuse the connection). now_ms is the transport's clock (milliseconds,
 * monotonic): every now_ms passed later and every deadline given back is on it. */
struct conn_screen *conn_screen_new(struct conn_worker *w, const struct conn_pick *p,
				    const struct mx_inet_addr *peer, uint16_t port,
				    const struct mx_inet_addr *local, uint16_t local_port,
				    uint64_t now_ms);
/* The transport's handle, given back by conn_service_answer() for the screen's answers. */
void conn_screen_set_owner(struct conn_screen *sc, void *owner);
void *conn_screen_owner(const struct conn_screen *sc);

enum conn_screen_state conn_screen_state(const struct conn_screen *sc);
/* True while it reads client bytes (smtp_screen_wants_input()). */
bool conn_screen_wants_input(const struct conn_screen *sc);
/* Client bytes; returns how many were consumed (the rest stays the caller's and, at PASS,
 * goes to the SMTP session after its greeting). */
size_t conn_screen_input(struct conn_screen *sc, const char *buf, size_t len, uint64_t now_ms);
struct mx_span conn_screen_output(const struct conn_screen *sc);
void conn_screen_output_done(struct conn_screen *sc, size_t n);
/* When conn_screen_timer() is due (the transport's ms): the greet wait, the command time
 * limit, or the cache lookup's bound; UINT64_MAX once it passed or closed. */
uint64_t conn_screen_deadline(const struct conn_screen *sc);
void conn_screen_timer(struct conn_screen *sc, uint64_t now_ms);
void conn_screen_peer_closed(struct conn_screen *sc, uint64_t now_ms);
void conn_screen_shutdown(struct conn_screen *sc, uint64_t now_ms);
/* At PASS: the connection's SMTP session, on the generation and service it was screened
 * with (conn_new_picked()). Greet it (conn_greet()), then give it the bytes not consumed.
 * NULL when out of memory (close the connection). The screen is still to be freed. */
struct conn *conn_screen_pass(struct conn_screen *sc);
/* "[192.0.2.1]:12345", for the transport's own log lines. */
const char *conn_screen_client(const struct conn_screen *sc);
/* Free it; its requests in flight find nobody when they come back. NULL is a no-op. */
void conn_screen_free(struct conn_screen *sc);
size_t conn_screen_memory(const struct conn_screen *sc);

#endif
