#include "dataplane/kernel/kernel_transport.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/kernel/kernel_internal.h"
#include "dataplane/session/conn.h"
#include "mgmt/log.h"
#include "mxgate/errf.h"
#include "mxgate/clock.h"

/* One read(2) at most this much. It is also the bound on what a connection keeps between
 * calls: it only reads again once the engine has consumed what it holds. */
#define KT_READ_CHUNK 32768
/* Read rounds one connection gets per wake-up before the others have their turn. */
#define KT_ROUNDS 8
#define KT_ACCEPT_BURST 64
#define KT_EVENTS 256
/* After EMFILE/ENFILE, stop accepting this long rather than spin on the listener. */
#define KT_ACCEPT_PAUSE_MS 100
#define KT_WARN_INTERVAL_MS 1000
/* A screened connection that ended waits at most this long for its last reply to leave
 * (a client that does not read it does not keep the slot). */
#define KT_SCREEN_LINGER_MS 10000

static const char kt_refusal[] = "421 4.3.2 Service currently unavailable\r\n";

/* ---- deadlines: a binary min-heap per worker ----
 * Every connection is in its worker's heap from accept to close, keyed by its earliest
 * deadline. Activity moves the idle deadline later without touching the heap (the key is
 * allowed to be early: when it comes up, the real deadline is recomputed and the entry
 * sinks); only a deadline that moves earlier (an error-sleep hold) sifts up. */

static uint64_t kt_due(const struct kt_conn *k)
{
	if (k->hold_until && k->hold_until < k->idle_at)
		return k->hold_until;
	return k->idle_at;
}

static void kt_heap_set(struct kt_worker *w, size_t i, struct kt_conn *k)
{
	w->heap[i] = k;
	k->heap_idx = i;
}

static void kt_heap_up(struct kt_worker *w, size_t i)
{
	struct kt_conn *k = w->heap[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (w->heap[parent]->heap_key <= k->heap_key)
			break;
		kt_heap_set(w, i, w->heap[parent]);
		i = parent;
	}
	kt_heap_set(w, i, k);
}

static void kt_heap_down(struct kt_worker *w, size_t i)
{
	struct kt_conn *k = w->heap[i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint64_t mk = k->heap_key;
		if (l < w->heap_len && w->heap[l]->heap_key < mk) {
			m = l;
			mk = w->heap[l]->heap_key;
		}
		if (r < w->heap_len && w->heap[r]->heap_key < mk)
			m = r;
		if (m == i)
			break;
		kt_heap_set(w, i, w->heap[m]);
		i = m;
	}
	kt_heap_set(w, i, k);
}

static int kt_heap_push(struct kt_worker *w, struct kt_conn *k)
{
	if (w->heap_len == w->heap_cap) {
		size_t cap = w->heap_cap ? w->heap_cap * 2 : 256;
		struct kt_conn **h = realloc(w->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		w->heap = h;
		w->heap_cap = cap;
	}
	k->heap_key = kt_due(k);
	kt_heap_set(w, w->heap_len++, k);
	kt_heap_up(w, k->heap_idx);
	return 0;
}

static void kt_heap_remove(struct kt_worker *w, struct kt_conn *k)
{
	size_t i = k->heap_idx;
	assert(i < w->heap_len && w->heap[i] == k);
	struct kt_conn *last = w->heap[--w->heap_len];
	k->heap_idx = SIZE_MAX;
	if (last == k)
		return;
	kt_heap_set(w, i, last);
	kt_heap_up(w, i);
	kt_heap_down(w, last->heap_idx);
}

/* The deadline may have moved earlier (a hold, or STARTTLS: smtpd_starttls_timeout
 * replaces a later smtpd_timeout): fix the entry's place. */
static void kt_heap_update(struct kt_worker *w, struct kt_conn *k)
{
	uint64_t due = kt_due(k);
	if (due < k->heap_key) {
		k->heap_key = due;
		kt_heap_up(w, k->heap_idx);
	}
}

/* ---- lists ---- */

static void kt_ready_push(struct kt_worker *w, struct kt_conn *k)
{
	if (k->in_ready || k->dead)
		return;
	k->in_ready = true;
	k->ready_next = NULL;
	k->ready_prev = w->ready_tail;
	if (w->ready_tail)
		w->ready_tail->ready_next = k;
	else
		w->ready_head = k;
	w->ready_tail = k;
}

static void kt_ready_remove(struct kt_worker *w, struct kt_conn *k)
{
	if (!k->in_ready)
		return;
	if (k->ready_prev)
		k->ready_prev->ready_next = k->ready_next;
	else
		w->ready_head = k->ready_next;
	if (k->ready_next)
		k->ready_next->ready_prev = k->ready_prev;
	else
		w->ready_tail = k->ready_prev;
	k->in_ready = false;
	k->ready_prev = k->ready_next = NULL;
}

/* ---- connections ---- */

/* Close now: the session has ended (or the peer is gone, or time is up). Logs the
 * disconnect line. The struct itself lives until the end of this loop iteration, because
 * later events of the same epoll batch may still point at it. */
static void kt_close(struct kt_worker *w, struct kt_conn *k)
{
	if (k->dead)
		return;
	k->dead = true;
	kt_heap_remove(w, k);
	kt_ready_remove(w, k);
	if (k->prev)
		k->prev->next = k->next;
	else
		w->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;

	/* close(2) with unread input sends a RST, and a RST can make the peer's TCP drop
	 * our last reply (the 221 or 421) before the client reads it. Read what is there
	 * (bounded) so the close is a FIN after the reply. */
	char sink[4096];
	for (int i = 0; i < 4 && !k->eof; i++)
		if (read(k->fd, sink, sizeof(sink)) <= 0)
			break;
	/* The session's end is accounted for before the FIN: a client that saw the close
	 * and connects again is not counted twice (anvil's connection count, as Postfix's
	 * smtpd disconnects from anvil before it closes). */
	conn_free(k->c);
	k->c = NULL;
	conn_screen_free(k->sc);
	k->sc = NULL;
	close(k->fd);
	k->fd = -1;
	free(k->in);
	k->in = NULL;
	__atomic_store_n(&w->nconns, w->nconns - 1, __ATOMIC_RELAXED);
	k->next = w->dead;
	w->dead = k;
}

static void kt_free_dead(struct kt_worker *w)
{
	while (w->dead) {
		struct kt_conn *k = w->dead;
		w->dead = k->next;
		free(k);
	}
}

/* Send what the engine has queued. Returns 1 when all of it went out, 0 when the socket
 * is full (EPOLLOUT will call us back), -1 when the connection is gone (closed here). */
static int kt_flush(struct kt_worker *w, struct kt_conn *k, uint64_t now)
{
	for (;;) {
		struct mx_span out = conn_output(k->c);
		if (out.len == 0)
			return 1;
		ssize_t n = send(k->fd, out.ptr, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			conn_output_done(k->c, (size_t)n);
			k->idle_at = conn_deadline(k->c, now, 0, true);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		/* EPIPE, ECONNRESET, ETIMEDOUT: the peer is gone */
		k->eof = true;
		conn_peer_closed(k->c);
		kt_close(w, k);
		return -1;
	}
}

/* Keep the part of a read the engine did not consume. */
static int kt_keep(struct kt_conn *k, const char *p, size_t n)
{
	assert(k->in_len == 0 && n <= KT_READ_CHUNK);
	if (!k->in && !(k->in = malloc(KT_READ_CHUNK)))
		return -ENOMEM;
	memcpy(k->in, p, n);
	k->in_len = n;
	return 0;
}

static void kt_consume(struct kt_conn *k, size_t used)
{
	assert(used <= k->in_len);
	k->in_len -= used;
	if (k->in_len == 0) {
		/* an idle connection holds no buffer */
		free(k->in);
		k->in = NULL;
	} else if (used) {
		memmove(k->in, k->in + used, k->in_len);
	}
}

/* After conn_input(): start an error-sleep hold if the engine asked for one. Returns true
 * when the connection is now held. */
static bool kt_after_input(struct kt_worker *w, struct kt_conn *k, uint64_t now)
{
	uint32_t delay = conn_take_delay_ms(k->c);
	if (delay == 0)
		return false;
	/* smtpd_error_sleep_time: Postfix sleeps before it answers; a worker cannot sleep,
	 * so the reply (and further input) waits on the timer heap instead. The idle
	 * timeout does not run during the hold. */
	k->hold_until = now + delay;
	if (k->idle_at < k->hold_until + conn_timeout_ms(k->c))
		k->idle_at = k->hold_until + conn_timeout_ms(k->c);
	kt_heap_update(w, k);
	return true;
}

static void kt_fail_conn(struct kt_worker *w, struct kt_conn *k, const char *why)
{
	mx_log(MX_LOG_WARNING, "%s: closing connection from %s", why, conn_client(k->c));
	conn_shutdown(k->c);
	kt_flush(w, k, mx_clock_monotonic_ms());
	if (!k->dead)
		kt_close(w, k);
}

static void kt_screen_service(struct kt_worker *w, struct kt_conn *k, uint64_t now);

/* Do what can be done for one connection now: send, read, feed the engine, close. */
static void kt_service(struct kt_worker *w, struct kt_conn *k, uint64_t now)
{
	if (k->dead || (k->hold_until && now < k->hold_until))
		return;
	if (k->sc) {
		kt_screen_service(w, k, now);
		return;
	}
	for (int round = 0; round < KT_ROUNDS; round++) {
		int fr = kt_flush(w, k, now);
		if (fr < 0)
			return;
		if (conn_closed(k->c) || k->eof) {
			/* Nothing more will be read: close once the last reply is out (or the
			 * idle timer gives up on a client that does not read it). */
			if (fr == 1)
				kt_close(w, k);
			return;
		}
		if (fr == 0)
			return; /* the client is not reading: stop reading it too */
		if (conn_waiting(k->c))
			return; /* the spool writer wakes us (kt_spool_news) */

		/* bytes kept from an earlier read, or over TLS plaintext decrypted already */
		if (k->in_len || conn_pending_input(k->c)) {
			size_t before = k->in_len;
			size_t used = conn_input(k->c, k->in, k->in_len);
			kt_consume(k, used);
			k->idle_at = conn_deadline(k->c, now, 0, false); /* a request may have ended */
			kt_heap_update(w, k);
			if (kt_after_input(w, k, now))
				return;
			if (used == 0 && conn_output(k->c).len == 0 && !conn_closed(k->c) &&
			    k->in_len == before && !conn_waiting(k->c)) {
				/* no input taken, nothing to send, not closed: the engine cannot
				 * make progress, and spinning here would starve the worker */
				kt_fail_conn(w, k, "error: SMTP engine made no progress");
				return;
			}
			continue;
		}
		if (!k->readable)
			return;

		ssize_t n = read(k->fd, w->scratch, KT_READ_CHUNK);
		if (n > 0) {
			w->cw.counters.bytes_received += (uint64_t)n;
			/* A short read drained the socket (stream sockets, epoll(7)), unless
			 * the peer hung up: then the EOF is still to be read, and no further
			 * edge will announce it. */
			if ((size_t)n < KT_READ_CHUNK && !k->hangup)
				k->readable = false;
			size_t used = conn_input(k->c, w->scratch, (size_t)n);
			k->idle_at = conn_deadline(k->c, now, (size_t)n, false);
			kt_heap_update(w, k); /* STARTTLS may have brought it closer */
			if (used < (size_t)n && kt_keep(k, w->scratch + used, (size_t)n - used) < 0) {
				kt_fail_conn(w, k, "warning: out of memory");
				return;
			}
			if (kt_after_input(w, k, now))
				return;
			continue;
		}
		if (n == 0) {
			k->eof = true;
			k->readable = false;
			conn_peer_closed(k->c);
			continue; /* send what is queued, then close */
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			k->readable = false;
			return;
		}
		/* ECONNRESET and friends: nobody to talk to */
		k->eof = true;
		k->readable = false;
		conn_peer_closed(k->c);
		kt_close(w, k);
		return;
	}
	/* Out of rounds with work left: let the other connections run first. */
	kt_ready_push(w, k);
}

/* ---- screened connections (postscreen): no SMTP session until the screen lets them
 * through ---- */

/* Send the screen's replies. 1 all out, 0 the socket is full, -1 the peer is gone. */
static int kt_screen_flush(struct kt_conn *k, uint64_t now)
{
	for (;;) {
		struct mx_span out = conn_screen_output(k->sc);
		if (out.len == 0)
			return 1;
		ssize_t n = send(k->fd, out.ptr, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			conn_screen_output_done(k->sc, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		k->eof = true;
		conn_screen_peer_closed(k->sc, now);
		return -1;
	}
}

/* The screen let the connection through: its SMTP session starts on it, greets, and
 * reads what the client sent that the screen did not consume. */
static void kt_screen_pass(struct kt_worker *w, struct kt_conn *k, uint64_t now)
{
	struct conn *c = conn_screen_pass(k->sc);
	if (!c) {
		mx_log(MX_LOG_WARNING, "out of memory: closing connection from %s",
		       conn_screen_client(k->sc));
		kt_close(w, k);
		return;
	}
	conn_screen_free(k->sc);
	k->sc = NULL;
	k->c = c;
	conn_set_owner(c, k);
	k->idle_at = conn_deadline(c, now, 0, false);
	kt_heap_update(w, k);
	if (k->eof)
		conn_peer_closed(c);
	else
		conn_greet(c);
	kt_service(w, k, now);
}

static void kt_screen_service(struct kt_worker *w, struct kt_conn *k, uint64_t now)
{
	for (int round = 0; round < KT_ROUNDS; round++) {
		int fr = kt_screen_flush(k, now);
		enum conn_screen_state st = conn_screen_state(k->sc);
		if (st == CONN_SCREEN_CLOSE || fr < 0) {
			if (fr != 0 || k->eof) {
				kt_close(w, k);
				return;
			}
			/* the last reply waits for a client that does not read: bounded */
			if (k->idle_at > now + KT_SCREEN_LINGER_MS) {
				k->idle_at = now + KT_SCREEN_LINGER_MS;
				kt_heap_update(w, k);
			}
			return;
		}
		if (st == CONN_SCREEN_PASS) {
			if (fr == 1)
				kt_screen_pass(w, k, now);
			return;
		}
		k->idle_at = conn_screen_deadline(k->sc);
		kt_heap_update(w, k);
		if (fr == 0 || !conn_screen_wants_input(k->sc))
			return;
		if (k->in_len) {
			size_t used = conn_screen_input(k->sc, k->in, k->in_len, now);
			kt_consume(k, used);
			/* nothing taken: peeked at (a pregreet; a decision may follow at
			 * once), or the engine waits for its output to leave */
			if (used == 0 && conn_screen_state(k->sc) == st &&
			    conn_screen_wants_input(k->sc))
				return;
			continue;
		}
		if (!k->readable)
			return;
		ssize_t n = read(k->fd, w->scratch, KT_READ_CHUNK);
		if (n > 0) {
			w->cw.counters.bytes_received += (uint64_t)n;
			if ((size_t)n < KT_READ_CHUNK && !k->hangup)
				k->readable = false;
			size_t used = conn_screen_input(k->sc, w->scratch, (size_t)n, now);
			if (used < (size_t)n &&
			    kt_keep(k, w->scratch + used, (size_t)n - used) < 0) {
				conn_screen_shutdown(k->sc, now);
				continue;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			k->readable = false;
			return;
		}
		k->eof = true;
		k->readable = false;
		conn_screen_peer_closed(k->sc, now);
	}
	kt_ready_push(w, k);
}

/* Refuse a new connection with 421; why: what the warning says ("mxgate_max_connections
 * = 100 reached", "out of memory"). */
static void kt_refuse(struct kt_worker *w, int fd, const struct mx_inet_addr *peer,
		      uint64_t now, const char *why)
{
	/* Best effort: the socket buffer of a fresh connection has room for one line. */
	ssize_t n = send(fd, kt_refusal, sizeof(kt_refusal) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
	close(fd);
	w->cw.counters.connections_refused++;
	w->refused_since_warning++;
	/* One warning per interval: a flood must not turn into a log flood. */
	if (now - w->refused_warned_at >= KT_WARN_INTERVAL_MS || w->refused_warned_at == 0) {
		char addr[INET6_ADDRSTRLEN];
		struct mx_inet_addr a = mx_inet_unmap(peer);
		mx_log(MX_LOG_WARNING,
		       "worker %u: %s: refused unknown[%s] (%u connections refused since the "
		       "last warning)",
		       w->index, why, mx_inet_format(&a, addr, sizeof(addr)),
		       w->refused_since_warning);
		w->refused_warned_at = now;
		w->refused_since_warning = 0;
	}
}

static void kt_new_conn(struct kt_worker *w, const struct kt_listener *l, int fd,
			const struct sockaddr_storage *ss, uint64_t now)
{
	struct mx_inet_addr peer = { 0 };
	uint16_t port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		peer.family = AF_INET;
		memcpy(peer.bytes, &sin->sin_addr, 4);
		port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		peer.family = AF_INET6;
		memcpy(peer.bytes, &sin6->sin6_addr, 16);
		port = ntohs(sin6->sin6_port);
	} else {
		close(fd);
		return;
	}
	if (w->kt->p.max_connections && w->nconns >= w->kt->p.max_connections) {
		char why[64];
		snprintf(why, sizeof(why), "mxgate_max_connections = %u reached",
			 w->kt->p.max_connections);
		conn_count_refused_at(&w->cw, &l->addr, l->port, false);
		kt_refuse(w, fd, &peer, now, why);
		return;
	}

	/* Replies are batched by the engine (one send per pipelined group), so Nagle only
	 * adds delay. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	/* the address the client reached (the listener's may be a wildcard): the service is
	 * found by it, and policy servers are told it */
	struct mx_inet_addr local = l->addr;
	struct sockaddr_storage ls;
	socklen_t lsl = sizeof(ls);
	if (getsockname(fd, (struct sockaddr *)&ls, &lsl) == 0) {
		if (ls.ss_family == AF_INET) {
			local.family = AF_INET;
			memcpy(local.bytes, &((struct sockaddr_in *)&ls)->sin_addr, 4);
		} else if (ls.ss_family == AF_INET6) {
			local.family = AF_INET6;
			memcpy(local.bytes, &((struct sockaddr_in6 *)&ls)->sin6_addr, 16);
		}
	}
	struct kt_conn *k = calloc(1, sizeof(*k));
	struct conn_pick pick;
	struct conn_screen *sc = NULL;
	struct conn *c = NULL;
	if (k && conn_pick(&w->cw, &peer, &local, l->port, false, &pick) == 0) {
		/* a service with a screen: the screen holds the connection, no session yet */
		if (conn_screen_wanted(&pick))
			sc = conn_screen_new(&w->cw, &pick, &peer, port, &local, l->port, now);
		else
			c = conn_new_picked(&w->cw, &pick, &peer, port, &local, l->port);
	}
	if (!c && !sc) {
		free(k);
		conn_count_refused_at(&w->cw, &local, l->port, false);
		kt_refuse(w, fd, &peer, now, "out of memory, or no service on this address");
		return;
	}
	k->h.kind = KT_CONN;
	k->fd = fd;
	k->c = c;
	k->sc = sc;
	if (c)
		conn_set_owner(c, k);
	else
		conn_screen_set_owner(sc, k);
	k->heap_idx = SIZE_MAX;
	k->idle_at = c ? conn_deadline(c, now, 0, false) : conn_screen_deadline(sc);
	struct epoll_event ev = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.ptr = k,
	};
	if (kt_heap_push(w, k) < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		mx_log(MX_LOG_WARNING, "cannot register connection from %s: %s",
		       c ? conn_client(c) : conn_screen_client(sc),
		       strerror(errno ? errno : ENOMEM));
		if (k->heap_idx != SIZE_MAX)
			kt_heap_remove(w, k);
		conn_free(c);
		conn_screen_free(sc);
		close(fd);
		free(k);
		return;
	}
	k->next = w->conns;
	if (w->conns)
		w->conns->prev = k;
	w->conns = k;
	__atomic_store_n(&w->nconns, w->nconns + 1, __ATOMIC_RELAXED);
	if (sc) {
		/* the screen sent its teaser (or decided at once): read, send, wait */
		k->readable = true;
		kt_service(w, k, now);
		return;
	}

	/* Talking before the greeting. Whatever is already readable now, right after
	 * accept and before our 220 exists, was sent by a client that did not wait for the
	 * greeting (RFC 5321 3.1: the client waits for it; spam bots often do not). Those
	 * bytes go to the engine BEFORE smtp_session_greet(), which is how the engine
	 * knows they came first: with smtpd_forbid_unauth_pipelining it answers
	 * "554 5.5.0 Error: SMTP protocol synchronization" and closes, and no 220 is sent.
	 * This catches what arrived with or right after the handshake; it is not
	 * postscreen's greet-wait, which would delay every client. */
	ssize_t n = read(fd, w->scratch, KT_READ_CHUNK);
	if (n > 0) {
		w->cw.counters.bytes_received += (uint64_t)n;
		k->readable = (size_t)n == KT_READ_CHUNK;
		size_t used = conn_input(c, w->scratch, (size_t)n);
		if (used < (size_t)n && kt_keep(k, w->scratch + used, (size_t)n - used) < 0) {
			kt_fail_conn(w, k, "warning: out of memory");
			return;
		}
		kt_after_input(w, k, now);
	} else if (n == 0) {
		k->eof = true; /* connected and closed at once: a port scan */
		conn_peer_closed(c);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		k->eof = true;
		conn_peer_closed(c);
	}
	if (!conn_closed(c) && !k->eof)
		conn_greet(c);
	kt_service(w, k, now);
}

/* A service answered a request of one of this worker's connections. */
static void kt_svc_answer(void *arg, struct svc_request *r)
{
	struct kt_worker *w = arg;
	struct kt_conn *k = conn_service_answer(r);
	if (k && !k->dead)
		kt_ready_push(w, k);
}

/* The spool writer has news for a connection of this worker (a commit's result, or room
 * for more message bytes): let the connection act on it, then service it. */
static void kt_spool_news(void *owner, void *arg)
{
	struct kt_worker *w = arg;
	struct conn *c = owner;
	struct kt_conn *k = conn_owner(c);
	if (k->dead)
		return;
	conn_spool_news(c);
	kt_ready_push(w, k);
}

static void kt_pause_accept(struct kt_worker *w, bool pause, uint64_t now)
{
	if (w->listeners_closed || w->accept_paused == pause)
		return;
	kt_listeners_pause(w, pause);
	w->accept_paused = pause;
	w->accept_resume_at = now + KT_ACCEPT_PAUSE_MS;
}

static void kt_accept(struct kt_worker *w, struct kt_listener *l, uint64_t now)
{
	for (int i = 0; i < KT_ACCEPT_BURST && !w->stopping; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			kt_new_conn(w, l, fd, &ss, now);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case EPERM: /* a firewall rule refused it */
			continue;
		default:
			/* EMFILE, ENFILE, ENOBUFS, ENOMEM: the pending connection stays in
			 * the backlog and the level-triggered listener would fire again at
			 * once, so pause instead of spinning. */
			if (now - w->accept_warned_at >= KT_WARN_INTERVAL_MS ||
			    w->accept_warned_at == 0) {
				mx_log(MX_LOG_WARNING, "accept on %s: %s; pausing new connections",
				       l->name, strerror(errno));
				w->accept_warned_at = now;
			}
			kt_pause_accept(w, true, now);
			return;
		}
	}
}

static void kt_begin_stop(struct kt_worker *w, uint64_t now)
{
	w->stopping = true;
	w->stop_deadline = now + w->kt->p.shutdown_grace_ms;
	kt_listeners_close(w);
	for (struct kt_conn *k = w->conns, *next; k; k = next) {
		next = k->next;
		if (k->sc) {
			conn_screen_shutdown(k->sc, now);
			kt_service(w, k, now);
			continue;
		}
		/* conn_shutdown() never interrupts a commit: a connection waiting for one
		 * gets its 250 (or 451) first and the 421 after it (conn_spool_news()). */
		conn_shutdown(k->c);
		k->hold_until = 0;
		kt_service(w, k, now);
	}
}

static void kt_run_timers(struct kt_worker *w, uint64_t now)
{
	while (w->heap_len && w->heap[0]->heap_key <= now) {
		struct kt_conn *k = w->heap[0];
		uint64_t due = kt_due(k);
		if (due > now) {
			/* activity moved the deadline since the key was set */
			k->heap_key = due;
			kt_heap_down(w, 0);
			continue;
		}
		if (k->hold_until && k->hold_until <= now) {
			k->hold_until = 0;
			k->heap_key = kt_due(k);
			kt_heap_down(w, 0);
			kt_service(w, k, now);
			continue;
		}
		if (k->sc) {
			/* the screen's greet wait, command time limit, or a last reply that
			 * is not read */
			if (conn_screen_state(k->sc) != CONN_SCREEN_SCREENING) {
				kt_close(w, k);
				continue;
			}
			conn_screen_timer(k->sc, now);
			k->idle_at = conn_screen_deadline(k->sc);
			k->heap_key = kt_due(k) > now ? kt_due(k) : now + 1;
			kt_heap_down(w, 0);
			kt_service(w, k, now);
			continue;
		}
		/* smtpd_timeout */
		if (!conn_closed(k->c) && !k->eof) {
			conn_timeout(k->c);
			kt_flush(w, k, now);
		}
		/* Either way this connection has had its time: a client that does not read
		 * our 421 (or our last reply) does not keep the slot. */
		if (!k->dead)
			kt_close(w, k);
	}
}

static void kt_run_ready(struct kt_worker *w, uint64_t now)
{
	/* Only those queued before this pass: kt_service() may queue again. */
	struct kt_conn *tail = w->ready_tail;
	while (w->ready_head) {
		struct kt_conn *k = w->ready_head;
		bool last = k == tail;
		kt_ready_remove(w, k);
		kt_service(w, k, now);
		if (last)
			break;
	}
}

static int kt_wait_timeout(const struct kt_worker *w, uint64_t now)
{
	if (w->ready_head)
		return 0;
	uint64_t next = UINT64_MAX;
	if (w->heap_len)
		next = w->heap[0]->heap_key;
	if (w->stopping && w->stop_deadline < next)
		next = w->stop_deadline;
	if (w->accept_paused && w->accept_resume_at < next)
		next = w->accept_resume_at;
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

static void kt_worker_fail(struct kt_worker *w, const char *what)
{
	mx_log(MX_LOG_FATAL, "worker %u: %s: %s", w->index, what, strerror(errno));
	atomic_store(&w->kt->failed, true);
	/* main waits for signals; this one makes it stop the other workers too */
	kill(getpid(), SIGTERM);
}

static void *kt_worker_main(void *arg)
{
	struct kt_worker *w = arg;
	struct epoll_event evs[KT_EVENTS];
	mx_log_batch_begin();

	for (;;) {
		uint64_t now = mx_clock_monotonic_ms();
		if (!w->stopping && atomic_load(&w->kt->stop))
			kt_begin_stop(w, now);
		kt_free_dead(w);
		if (w->stopping && (!w->conns || now >= w->stop_deadline))
			break;
		if (w->accept_paused && now >= w->accept_resume_at)
			kt_pause_accept(w, false, now);
		if (!w->stopping) {
			/* a reload may have added or dropped services */
			char err[256];
			if (kt_listeners_reconcile(w, err, sizeof(err)) < 0)
				mx_log(MX_LOG_WARNING, "worker %u: %s", w->index, err);
		}

		/* the quiescent point: no generation pointer read in this iteration is held
		 * without a reference any more, and idle generations are let go */
		conn_worker_release_gens(&w->cw);
		atomic_fetch_add_explicit(&w->qs, 1, memory_order_release);
		/* the lines of the last batch of events leave in one write(2) before we wait,
		 * and the services hear about this batch's requests */
		mx_log_batch_flush();
		if (w->cw.svc)
			svc_client_flush(w->cw.svc);
		atomic_store_explicit(&w->blocked, true, memory_order_release);
		int n = epoll_wait(w->epfd, evs, KT_EVENTS, kt_wait_timeout(w, now));
		atomic_store_explicit(&w->blocked, false, memory_order_seq_cst);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			kt_worker_fail(w, "epoll_wait");
			break;
		}
		now = mx_clock_monotonic_ms();
		/* See every table change committed so far (an LMDB read transaction is a
		 * snapshot): mxgate-map's replacements take effect within one iteration. */
		if (n > 0)
			conn_worker_renew_tables(&w->cw);
		for (int i = 0; i < n; i++) {
			struct kt_handle *h = evs[i].data.ptr;
			switch (h->kind) {
			case KT_LISTENER:
				kt_accept(w, (struct kt_listener *)h, now);
				break;
			case KT_WAKE: {
				/* a stop request, or news from the spool writer */
				uint64_t v;
				ssize_t r = read(w->wake_fd, &v, sizeof(v));
				(void)r;
				spool_client_poll(w->cw.spool_client, kt_spool_news, w);
				if (w->cw.svc)
					svc_client_poll(w->cw.svc, kt_svc_answer, w);
				break;
			}
			case KT_CONN: {
				struct kt_conn *k = (struct kt_conn *)h;
				if (k->dead)
					break;
				if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					k->readable = true;
				if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					k->hangup = true;
				kt_service(w, k, now);
				break;
			}
			case KT_KIND_MAX:
				assert(!"bad handle");
				break;
			}
		}
		kt_run_ready(w, now);
		kt_run_timers(w, mx_clock_monotonic_ms());
	}

	/* Stopped: whatever is left had its grace period. */
	kt_listeners_close(w);
	while (w->conns) {
		struct kt_conn *k = w->conns;
		if (k->sc)
			conn_screen_shutdown(k->sc, mx_clock_monotonic_ms());
		else if (!conn_closed(k->c) && !k->eof)
			conn_shutdown(k->c);
		kt_close(w, k);
	}
	kt_free_dead(w);
	/* gone: quiescent for good */
	atomic_store_explicit(&w->blocked, true, memory_order_release);
	mx_log_batch_end();
	return NULL;
}

/* ---- setup ---- */

void kernel_transport_destroy(struct kernel_transport *kt)
{
	if (!kt)
		return;
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		assert(!w->started);
		kt_listeners_close(w);
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		free(w->scratch);
		free(w->heap);
		conn_worker_fini(&w->cw);
	}
	free(kt->workers);
	free(kt);
}

int kernel_transport_create(struct kernel_transport **out,
			    const struct transport_params *p, char *err, size_t errlen)
{
	int rc;

	if (p->workers < 1 || p->workers > QUEUE_ID_MAX_WORKERS)
		return mx_errf(err, errlen, -EINVAL, "mxgate_workers: %u is out of range 1..%u",
			       p->workers, QUEUE_ID_MAX_WORKERS);
	struct kernel_transport *kt = calloc(1, sizeof(*kt));
	if (!kt)
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	kt->p = *p;
	kt->workers = calloc(p->workers, sizeof(*kt->workers));
	if (!kt->workers) {
		free(kt);
		return mx_errf(err, errlen, -ENOMEM, "out of memory");
	}
	kt->nworkers = p->workers;
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		w->kt = kt;
		w->index = i;
		w->epfd = w->wake_fd = -1;
		w->listeners_closed = true; /* until they exist */
		atomic_init(&w->blocked, true); /* not running yet: quiescent */
	}
	/* the addresses of the published generation: free to bind, before any worker has */
	struct mx_generation *cur = atomic_load(&p->gens->current);
	if ((rc = kt_listeners_check(kt, cur, err, errlen)) < 0)
		goto fail;
	for (unsigned i = 0; i < kt->nworkers; i++) {
		if ((rc = conn_worker_init(&kt->workers[i].cw, p, i, err, errlen)) < 0)
			goto fail;
	}
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		w->scratch = malloc(KT_READ_CHUNK);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->wake_fd >= 0)
			w->cw.spool_client = spool_client_new(w->cw.spool, w->wake_fd);
		if (w->wake_fd >= 0 && p->svc)
			w->cw.svc = svc_client_new(p->svc, i, w->wake_fd);
		if (!w->scratch || w->epfd < 0 || w->wake_fd < 0 || !w->cw.spool_client ||
		    (p->svc && !w->cw.svc)) {
			rc = -(errno ? errno : ENOMEM);
			mx_errf(err, errlen, rc, "worker %u setup: %s", i, strerror(-rc));
			goto fail;
		}
		w->wake_h.kind = KT_WAKE;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &w->wake_h };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) != 0) {
			rc = -errno;
			mx_errf(err, errlen, rc, "epoll_ctl: %s", strerror(-rc));
			goto fail;
		}
		w->listeners_closed = false;
		if ((rc = kt_listeners_reconcile(w, err, errlen)) < 0)
			goto fail;
	}
	*out = kt;
	return 0;

fail:
	kernel_transport_destroy(kt);
	return rc;
}

int kernel_transport_start(struct kernel_transport *kt)
{
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		int rc = pthread_create(&w->thread, NULL, kt_worker_main, w);
		if (rc != 0) {
			kernel_transport_stop(kt);
			kernel_transport_join(kt);
			return -rc;
		}
		w->started = true;
		char name[16];
		snprintf(name, sizeof(name), "mxgate-w%u", i % 10000u);
		pthread_setname_np(w->thread, name);
	}
	return 0;
}

void kernel_transport_stop(struct kernel_transport *kt)
{
	atomic_store(&kt->stop, true);
	/* eventfd_write(): an eventfd write cannot fail but for EAGAIN (already non-zero:
	 * the worker wakes anyway); and it does not go through the write() that fault
	 * injection (libfiu) fails, so a stop is never lost in tests */
	for (unsigned i = 0; i < kt->nworkers; i++)
		(void)eventfd_write(kt->workers[i].wake_fd, 1);
}

void kernel_transport_join(struct kernel_transport *kt)
{
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		if (w->started) {
			pthread_join(w->thread, NULL);
			w->started = false;
		}
	}
}

bool kernel_transport_failed(const struct kernel_transport *kt)
{
	return atomic_load(&kt->failed);
}

void kernel_transport_counters(const struct kernel_transport *kt, struct mx_counters *sum,
			       uint64_t *open_connections)
{
	memset(sum, 0, sizeof(*sum));
	uint64_t open = 0;
	for (unsigned i = 0; i < kt->nworkers; i++) {
		conn_worker_counters_add(sum, &kt->workers[i].cw);
		open += __atomic_load_n(&kt->workers[i].nconns, __ATOMIC_RELAXED);
	}
	if (open_connections)
		*open_connections = open;
}

/* ---- the transport ops (dataplane/transport.h) ---- */

static int kt_ops_create(void **impl, const struct transport_params *p, char *err,
			 size_t errlen)
{
	return kernel_transport_create((struct kernel_transport **)impl, p, err, errlen);
}

static int kt_ops_start(void *impl)
{
	return kernel_transport_start(impl);
}

static void kt_ops_stop(void *impl)
{
	kernel_transport_stop(impl);
}

static void kt_ops_join(void *impl)
{
	kernel_transport_join(impl);
}

static bool kt_ops_failed(const void *impl)
{
	return kernel_transport_failed(impl);
}

static void kt_ops_counters(const void *impl, struct mx_counters *sum, uint64_t *open)
{
	kernel_transport_counters(impl, sum, open);
}

static unsigned kt_ops_workers(const void *impl)
{
	const struct kernel_transport *kt = impl;
	return kt->nworkers;
}

static void kt_ops_describe(const void *impl, char *buf, size_t len)
{
	const struct kernel_transport *kt = impl;
	const struct mx_generation *g = atomic_load(&kt->p.gens->current);
	size_t n = (size_t)snprintf(buf, len, "kernel, %u worker(s), listening on", kt->nworkers);
	for (unsigned i = 0; i < g->nservices && n < len; i++) {
		const struct mx_service *svc = &g->services[i];
		n += (size_t)snprintf(buf + n, len - n, "%s %s (", i ? "," : "", svc->name);
		for (unsigned j = 0; j < svc->nlisten && n < len; j++) {
			const struct mx_listen_addr *la = &svc->listen[j];
			bool v6 = strchr(la->host, ':') && la->host[0] != '[';
			n += (size_t)snprintf(buf + n, len - n, "%s%s%s%s:%u", j ? " " : "",
					      v6 ? "[" : "", la->host, v6 ? "]" : "",
					      (unsigned)la->port);
		}
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, ")");
	}
}

/* Every worker passed a quiescent point since the call: it ended an iteration, or waits
 * in epoll_wait() (or has stopped). */
static unsigned kt_ops_worker_limit(const struct mx_config *boot, unsigned workers)
{
	(void)boot;
	return workers;
}

static void kt_ops_synchronize(void *impl)
{
	struct kernel_transport *kt = impl;
	uint64_t *seen = calloc(kt->nworkers, sizeof(*seen));
	for (unsigned i = 0; seen && i < kt->nworkers; i++)
		seen[i] = atomic_load_explicit(&kt->workers[i].qs, memory_order_acquire);
	for (unsigned i = 0; i < kt->nworkers; i++) {
		struct kt_worker *w = &kt->workers[i];
		while (!atomic_load_explicit(&w->blocked, memory_order_acquire) &&
		       (!seen || atomic_load_explicit(&w->qs, memory_order_acquire) == seen[i])) {
			struct timespec ts = { 0, 50000 };
			nanosleep(&ts, NULL);
		}
	}
	free(seen);
}

/* A generation was published: wake the workers so that they open or close listeners
 * now, not at their next event. */
static void kt_ops_services_changed(void *impl)
{
	struct kernel_transport *kt = impl;
	for (unsigned i = 0; i < kt->nworkers; i++)
		(void)eventfd_write(kt->workers[i].wake_fd, 1);
}

static int kt_ops_check_services(void *impl, const struct mx_generation *g, char *err,
				 size_t errlen)
{
	return kt_listeners_check(impl, g, err, errlen);
}

static void kt_ops_destroy(void *impl)
{
	kernel_transport_destroy(impl);
}

static const struct conn_worker *kt_ops_worker(const void *impl, unsigned i)
{
	const struct kernel_transport *kt = impl;
	return i < kt->nworkers ? &kt->workers[i].cw : NULL;
}

const struct transport_ops kernel_transport_ops = {
	.name = "kernel",
	.create = kt_ops_create,
	.start = kt_ops_start,
	.stop = kt_ops_stop,
	.join = kt_ops_join,
	.failed = kt_ops_failed,
	.counters = kt_ops_counters,
	.workers = kt_ops_workers,
	.worker_limit = kt_ops_worker_limit,
	.synchronize = kt_ops_synchronize,
	.check_services = kt_ops_check_services,
	.services_changed = kt_ops_services_changed,
	.describe = kt_ops_describe,
	.destroy = kt_ops_destroy,
	.worker = kt_ops_worker,
};
