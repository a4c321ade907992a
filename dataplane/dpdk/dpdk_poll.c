/* A worker's poll loop (dp_worker_main): each iteration polls, runs the stacks' and the
 * connections' timers and the spool's news, services the ready connections and sends;
 * idle sleeps, quiescent points for publishing generations, the listening ports following
 * the published generations, and the stop. The SMTP connections are glued here to the
 * stack (net_conn_*) and the session engine (conn_*): accept, service, close. */
#include "dataplane/dpdk/dpdk_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>

#include "mgmt/log.h"

#define DP_RX_ROUNDS 32 /* bursts per port (and ring) an iteration takes before timers */
#define DP_ROUNDS 8       /* service rounds one connection gets before the others */
#define DP_IDLE_SPINS 256 /* empty iterations before an idle sleep */
#define DP_IDLE_SHORT_US 100000 /* idle time before the sleeps grow */
#define DP_WARN_INTERVAL_MS 1000
#define DP_MEM_WALK 256    /* connections whose memory one iteration adds up */
#define DP_MEM_SAMPLE 4096 /* connections whose memory a second's statistics add up */
/* Connections closed since the peak (or accepted since the last time, then none for a
 * second) before the allocator is asked to give memory back */
#define DP_TRIM_DROP 4096
/* A screened connection that ended waits at most this long for its last reply to leave. */
#define DP_SCREEN_LINGER_MS 10000

static const char dp_refusal[] = "421 4.3.2 Service currently unavailable\r\n";

/* ---- connections ---- */

static void dp_ready_push(struct dp_worker *w, struct dp_conn *k)
{
	if (k->in_ready || k->dead)
		return;
	k->in_ready = true;
	k->ready_next = NULL;
	if (w->ready_tail)
		w->ready_tail->ready_next = k;
	else
		w->ready_head = k;
	w->ready_tail = k;
}

static uint64_t dp_due_ms(const struct dp_conn *k)
{
	if (k->hold_until_ms && k->hold_until_ms < k->idle_at_ms)
		return k->hold_until_ms;
	return k->idle_at_ms;
}

static void dp_timer_set(struct dp_worker *w, struct dp_conn *k)
{
	net_timer_arm(w->wheel, &k->timer, (uint32_t)dp_due_ms(k));
}

/* Unlink a connection that is over; the struct is freed at the end of the iteration,
 * since the ready list may still name it. */
static void dp_forget(struct dp_worker *w, struct dp_conn *k)
{
	k->dead = true;
	if (w->mem_cursor == k)
		w->mem_cursor = k->next; /* the memory walk goes on from the next one */
	net_timer_cancel(w->wheel, &k->timer);
	if (k->prev)
		k->prev->next = k->next;
	else
		w->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	conn_free(k->c);
	k->c = NULL;
	conn_screen_free(k->sc);
	k->sc = NULL;
	k->nc = NULL;
	dp_stat_add(&w->st.nconns, (uint64_t)-1);
	k->next = w->dead;
	w->dead = k;
}

/* Close after the last reply: FIN once the queued bytes are out. Unread input is
 * discarded first, since the stack answers a close with unread data by RST (RFC 2525
 * 2.17), and a RST could make the client lose our last reply. */
static void dp_close(struct dp_worker *w, struct dp_conn *k)
{
	if (k->dead)
		return;
	size_t n;
	for (int i = 0; i < 64 && net_conn_peek(k->nc, &n) && n; i++)
		net_conn_consume(k->nc, n);
	net_conn_set_user(k->nc, NULL);
	net_conn_close(k->nc);
	dp_forget(w, k);
}

/* Send what the engine queued. 1: all of it went out; 0: the send buffer is full
 * (NET_EV_WRITABLE follows). */
static int dp_flush(struct dp_worker *w, struct dp_conn *k)
{
	for (;;) {
		struct mx_span out = conn_output(k->c);
		if (out.len == 0)
			return 1;
		size_t n = net_conn_write(k->nc, out.ptr, out.len);
		if (n == 0)
			return 0;
		conn_output_done(k->c, n);
		k->idle_at_ms = conn_deadline(k->c, w->now_ms, 0, true);
	}
}

static bool dp_after_input(struct dp_worker *w, struct dp_conn *k)
{
	uint32_t delay = conn_take_delay_ms(k->c);
	if (delay == 0)
		return false;
	/* smtpd_error_sleep_time: the reply and further input wait on the timer wheel */
	k->hold_until_ms = w->now_ms + delay;
	if (k->idle_at_ms < k->hold_until_ms + conn_timeout_ms(k->c))
		k->idle_at_ms = k->hold_until_ms + conn_timeout_ms(k->c);
	dp_timer_set(w, k);
	return true;
}

static void dp_fail_conn(struct dp_worker *w, struct dp_conn *k, const char *why)
{
	mx_log(MX_LOG_WARNING, "%s: closing connection from %s", why, conn_client(k->c));
	conn_shutdown(k->c);
	dp_flush(w, k);
	dp_close(w, k);
}

static void dp_screen_service(struct dp_worker *w, struct dp_conn *k);

/* Do what can be done for one connection now: send, read, feed the engine, close. */
static void dp_service(struct dp_worker *w, struct dp_conn *k)
{
	if (k->dead || (k->hold_until_ms && w->now_ms < k->hold_until_ms))
		return;
	if (k->sc) {
		dp_screen_service(w, k);
		return;
	}
	for (int round = 0; round < DP_ROUNDS; round++) {
		int fr = dp_flush(w, k);
		if (conn_closed(k->c) || k->eof) {
			if (fr == 1)
				dp_close(w, k);
			return;
		}
		if (fr == 0 || conn_waiting(k->c))
			return; /* NET_EV_WRITABLE or the spool writer wakes us */
		size_t len;
		const uint8_t *p = net_conn_peek(k->nc, &len);
		if (len == 0 && conn_pending_input(k->c)) {
			/* over TLS: plaintext decrypted already, which the engine can take now */
			conn_input(k->c, NULL, 0);
			if (dp_after_input(w, k))
				return;
			continue;
		}
		if (len == 0) {
			if (net_conn_eof(k->nc)) {
				k->eof = true;
				conn_peer_closed(k->c);
				continue; /* send what is queued, then close */
			}
			return; /* NET_EV_READABLE brings more */
		}
		size_t used = conn_input(k->c, (const char *)p, len);
		if (used) {
			net_conn_consume(k->nc, used);
			w->cw.counters.bytes_received += used;
			k->idle_at_ms = conn_deadline(k->c, w->now_ms, used, false);
			/* STARTTLS: smtpd_starttls_timeout may come before the armed
			 * smtpd_timeout (a later deadline is found when the timer fires) */
			if ((int32_t)((uint32_t)dp_due_ms(k) - k->timer.expire) < 0)
				dp_timer_set(w, k);
		}
		if (dp_after_input(w, k))
			return;
		if (used == 0 && conn_output(k->c).len == 0 && !conn_closed(k->c) &&
		    !conn_waiting(k->c)) {
			/* nothing taken, nothing to say, not closed: no progress is possible */
			dp_fail_conn(w, k, "error: SMTP engine made no progress");
			return;
		}
	}
	dp_ready_push(w, k);
}

/* ---- screened connections (postscreen): no SMTP session until the screen lets them
 * through; what the screen does not consume stays in the stack's receive buffer ---- */

static int dp_screen_flush(struct dp_conn *k)
{
	for (;;) {
		struct mx_span out = conn_screen_output(k->sc);
		if (out.len == 0)
			return 1;
		size_t n = net_conn_write(k->nc, out.ptr, out.len);
		if (n == 0)
			return 0;
		conn_screen_output_done(k->sc, n);
	}
}

/* The screen let the connection through: its SMTP session starts on it and greets; the
 * bytes the client sent that the screen did not consume are read after the greeting. */
static void dp_screen_pass(struct dp_worker *w, struct dp_conn *k)
{
	struct conn *c = conn_screen_pass(k->sc);
	if (!c) {
		mx_log(MX_LOG_WARNING, "out of memory: closing connection from %s",
		       conn_screen_client(k->sc));
		dp_close(w, k);
		return;
	}
	conn_screen_free(k->sc);
	k->sc = NULL;
	k->c = c;
	conn_set_owner(c, k);
	k->idle_at_ms = conn_deadline(c, w->now_ms, 0, false);
	dp_timer_set(w, k);
	if (k->eof)
		conn_peer_closed(c);
	else
		conn_greet(c);
	dp_service(w, k);
}

static void dp_screen_service(struct dp_worker *w, struct dp_conn *k)
{
	for (int round = 0; round < DP_ROUNDS; round++) {
		int fr = dp_screen_flush(k);
		enum conn_screen_state st = conn_screen_state(k->sc);
		if (st == CONN_SCREEN_CLOSE) {
			if (fr == 1 || k->eof) {
				dp_close(w, k);
				return;
			}
			if (k->idle_at_ms > w->now_ms + DP_SCREEN_LINGER_MS) {
				k->idle_at_ms = w->now_ms + DP_SCREEN_LINGER_MS;
				dp_timer_set(w, k);
			}
			return;
		}
		if (st == CONN_SCREEN_PASS) {
			if (fr == 1)
				dp_screen_pass(w, k);
			return;
		}
		uint64_t due = conn_screen_deadline(k->sc);
		if (due != k->idle_at_ms) {
			k->idle_at_ms = due;
			dp_timer_set(w, k);
		}
		if (fr == 0 || !conn_screen_wants_input(k->sc))
			return;
		size_t len;
		const uint8_t *p = net_conn_peek(k->nc, &len);
		if (len == 0) {
			if (net_conn_eof(k->nc) && !k->eof) {
				k->eof = true;
				conn_screen_peer_closed(k->sc, w->now_ms);
				continue;
			}
			return;
		}
		size_t used = conn_screen_input(k->sc, (const char *)p, len, w->now_ms);
		if (used == 0) {
			/* peeked at (a pregreet; a decision may follow at once), or the
			 * engine waits for its output to leave */
			if (conn_screen_state(k->sc) == st && conn_screen_wants_input(k->sc))
				return;
			continue;
		}
		net_conn_consume(k->nc, used);
		w->cw.counters.bytes_received += used;
	}
	dp_ready_push(w, k);
}

static void dp_refuse(struct dp_worker *w, struct net_conn *nc, const char *why)
{
	net_conn_write(nc, dp_refusal, sizeof(dp_refusal) - 1);
	/* per service: the service is found by the port the client reached */
	int family;
	uint8_t addr[16];
	uint16_t local_port;
	net_conn_local(nc, &family, addr, &local_port);
	conn_count_refused_at(&w->cw, &(struct mx_inet_addr){ .family = family }, local_port,
			      true);
	net_conn_close(nc);
	w->cw.counters.connections_refused++;
	w->refused_since_warning++;
	if (w->now_ms - w->refused_warned_ms >= DP_WARN_INTERVAL_MS || !w->refused_warned_ms) {
		mx_log(MX_LOG_WARNING, "worker %u: %s: refused %u connection(s) since the last "
				       "warning", w->index, why, w->refused_since_warning);
		w->refused_warned_ms = w->now_ms;
		w->refused_since_warning = 0;
	}
}

static void dp_accept(struct dp_worker *w, struct net_conn *nc)
{
	if (w->stopping) {
		dp_refuse(w, nc, "stopping");
		return;
	}
	unsigned max = w->t->p.max_connections;
	if (max && w->st.nconns >= max) {
		dp_refuse(w, nc, "mxgate_max_connections reached");
		return;
	}
	int family;
	uint8_t addr[16];
	struct mx_inet_addr peer = { 0 };
	uint16_t port;
	net_conn_peer(nc, &family, addr, &port);
	peer.family = family;
	memcpy(peer.bytes, addr, family == AF_INET ? 4 : 16);
	/* a service listens on its TCP port on every port address: found by the port */
	struct mx_inet_addr local = { 0 };
	uint16_t local_port;
	net_conn_local(nc, &family, addr, &local_port);
	local.family = family;
	memcpy(local.bytes, addr, family == AF_INET ? 4 : 16);

	struct dp_conn *k = calloc(1, sizeof(*k));
	struct conn_pick pick;
	struct conn_screen *sc = NULL;
	struct conn *c = NULL;
	if (k && conn_pick(&w->cw, &peer, &local, local_port, true, &pick) == 0) {
		/* a service with a screen: the screen holds the connection, no session yet */
		if (conn_screen_wanted(&pick))
			sc = conn_screen_new(&w->cw, &pick, &peer, port, &local, local_port,
					     w->now_ms);
		else
			c = conn_new_picked(&w->cw, &pick, &peer, port, &local, local_port);
	}
	if (!c && !sc) {
		free(k);
		dp_refuse(w, nc, "out of memory, or no service on this port");
		return;
	}
	k->nc = nc;
	k->c = c;
	k->sc = sc;
	if (c)
		conn_set_owner(c, k);
	else
		conn_screen_set_owner(sc, k);
	net_conn_set_user(nc, k);
	k->idle_at_ms = c ? conn_deadline(c, w->now_ms, 0, false) : conn_screen_deadline(sc);
	dp_timer_set(w, k);
	k->next = w->conns;
	if (w->conns)
		w->conns->prev = k;
	w->conns = k;
	dp_stat_add(&w->st.nconns, 1);
	if (sc) {
		dp_service(w, k);
		return;
	}

	/* Talking before the greeting: bytes that came with the handshake's last ACK were
	 * sent before our 220 existed. They go to the engine before smtp_session_greet(),
	 * which is how it knows (as on the kernel transport). */
	size_t len;
	const uint8_t *p = net_conn_peek(nc, &len);
	if (len) {
		size_t used = conn_input(c, (const char *)p, len);
		net_conn_consume(nc, used);
		w->cw.counters.bytes_received += used;
		dp_after_input(w, k);
	} else if (net_conn_eof(nc)) {
		k->eof = true;
		conn_peer_closed(c);
	}
	if (!conn_closed(c) && !k->eof)
		conn_greet(c);
	dp_service(w, k);
}

void dp_event(void *ctx, struct net_conn *nc, enum net_event ev)
{
	struct dp_port_ctx *pc = ctx;
	struct dp_worker *w = pc->w;
	struct dp_conn *k = net_conn_user(nc);
	switch (ev) {
	case NET_EV_ACCEPT:
		dp_accept(w, nc);
		break;
	case NET_EV_READABLE:
	case NET_EV_WRITABLE:
		if (k)
			dp_service(w, k);
		break;
	case NET_EV_ABORT:
		/* the handle dies when we return */
		if (k && !k->dead) {
			if (k->sc && !k->eof)
				conn_screen_peer_closed(k->sc, w->now_ms);
			else if (k->c && !conn_closed(k->c) && !k->eof)
				conn_peer_closed(k->c);
			dp_forget(w, k);
		}
		break;
	case NET_EV_CONNECTED:
	case NET_EV_MAX:
		break;
	}
}

static void dp_timer_fire(void *arg, struct net_timer *tm)
{
	struct dp_worker *w = arg;
	struct dp_conn *k = (struct dp_conn *)((char *)tm - offsetof(struct dp_conn, timer));
	if (k->dead)
		return;
	if (dp_due_ms(k) > w->now_ms) {
		dp_timer_set(w, k); /* activity moved the deadline */
		return;
	}
	if (k->hold_until_ms && k->hold_until_ms <= w->now_ms) {
		k->hold_until_ms = 0;
		dp_timer_set(w, k);
		dp_service(w, k);
		return;
	}
	if (k->sc) {
		/* the screen's greet wait or command time limit, or a last reply not read */
		if (conn_screen_state(k->sc) != CONN_SCREEN_SCREENING) {
			dp_close(w, k);
			return;
		}
		conn_screen_timer(k->sc, w->now_ms);
		dp_service(w, k);
		return;
	}
	/* smtpd_timeout: a client that does not read our 421 does not keep the slot */
	if (!conn_closed(k->c) && !k->eof) {
		conn_timeout(k->c);
		dp_flush(w, k);
	}
	dp_close(w, k);
}

static void dp_spool_news(void *owner, void *arg)
{
	struct dp_worker *w = arg;
	struct conn *c = owner;
	struct dp_conn *k = conn_owner(c);
	if (k->dead)
		return;
	conn_spool_news(c);
	dp_ready_push(w, k);
}

/* A service answered a request of one of this worker's connections. */
static void dp_svc_answer(void *arg, struct svc_request *r)
{
	struct dp_worker *w = arg;
	struct dp_conn *k = conn_service_answer(r);
	if (k && !k->dead)
		dp_ready_push(w, k);
}

static void dp_run_ready(struct dp_worker *w)
{
	struct dp_conn *tail = w->ready_tail;
	while (w->ready_head) {
		struct dp_conn *k = w->ready_head;
		bool last = k == tail;
		w->ready_head = k->ready_next;
		if (!w->ready_head)
			w->ready_tail = NULL;
		k->in_ready = false;
		k->ready_next = NULL;
		dp_service(w, k);
		if (last)
			break;
	}
}

static void dp_free_dead(struct dp_worker *w)
{
	while (w->dead) {
		struct dp_conn *k = w->dead;
		if (k->in_ready) {
			/* still linked in the ready list: leave it for the next pass */
			break;
		}
		w->dead = k->next;
		free(k);
	}
}

/* ---- the poll loop ---- */

void dp_update_clock(struct dp_worker *w, uint64_t tsc)
{
	w->now_us = (tsc - w->t->tsc_start) / w->t->tsc_per_us;
	w->now_ms = w->now_us / 1000;
}

/* Give the allocator's free pages back to the kernel. jemalloc (the release builds')
 * returns dirty pages only as it allocates and frees (its decay runs on those ticks; no
 * background thread): once a million connections closed, an idle worker allocates nothing
 * and the gateway kept its peak RSS. Its mallctl is looked up at run time, so a build on
 * glibc's malloc trims with malloc_trim() instead; under AddressSanitizer, whose allocator
 * is neither (glibc's malloc_trim() then walks arenas that were never set up, and crashes),
 * nothing is trimmed. A few milliseconds of madvise(2) for a large release, so only after
 * DP_TRIM_DROP closes (dp_housekeeping()). */
#if defined(__SANITIZE_ADDRESS__)
#define DP_TRIM_NONE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DP_TRIM_NONE 1
#endif
#endif

#ifdef DP_TRIM_NONE
static void dp_memory_trim(void)
{
}
#else
typedef int (*dp_mallctl_fn)(const char *, void *, size_t *, void *, size_t);
static dp_mallctl_fn dp_mallctl;
static pthread_once_t dp_mallctl_once = PTHREAD_ONCE_INIT;

static void dp_mallctl_lookup(void)
{
	dp_mallctl = (dp_mallctl_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "mallctl");
}

static void dp_memory_trim(void)
{
	pthread_once(&dp_mallctl_once, dp_mallctl_lookup); /* every worker trims */
	/* "arena.<MALLCTL_ARENAS_ALL>.purge": 4096 is jemalloc's "all arenas" index */
	if (dp_mallctl && dp_mallctl("arena.4096.purge", NULL, NULL, NULL, 0) == 0)
		return;
	malloc_trim(0);
}
#endif

/* Once a millisecond: tell the stacks whether their pool runs low (an eighth left:
 * pressure on; a quarter again: off), and once a second sample connection memory. */
static void dp_housekeeping(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	if (w->now_ms != w->pressure_ms) {
		w->pressure_ms = w->now_ms;
		for (unsigned pi = 0; pi < t->nports; pi++) {
			unsigned avail = rte_mempool_avail_count(t->port[pi].pool);
			unsigned size = t->port[pi].pool->size;
			bool low = w->pressure ? avail < size / 4 : avail < size / 8;
			if (low != w->pressure) {
				w->pressure = low;
				for (unsigned i = 0; i < t->nports; i++)
					net_stack_set_pressure(w->stack[i], low);
			}
		}
	}
	/* The connections' memory, once a second: every connection up to DP_MEM_SAMPLE of
	 * them, beyond that a sample of DP_MEM_SAMPLE (taken round the list from where the
	 * last one stopped) scaled to the count. Walking a million each second cost a
	 * third of the worker's core in cache misses, and stalled the loop while it ran;
	 * the sample is walked DP_MEM_WALK per iteration. */
	uint64_t n = w->st.nconns;
	/* Memory goes back to the kernel after many closes (idle sessions released, a
	 * flood gone), and after a ramp of many accepts once a second passed without one:
	 * each greeting took a send buffer (the stack's sndbuf, 64 KiB) until its ACK came,
	 * and a thousand of them at once left 64 MB of free pages to an allocator that is not
	 * asked for memory any more. */
	uint64_t acc = w->cw.counters.connections_accepted;
	if (acc != w->acc_seen) {
		w->acc_seen = acc;
		w->acc_changed_ms = w->now_ms;
	}
	if (n > w->conn_peak)
		w->conn_peak = n;
	if ((w->conn_peak - n >= DP_TRIM_DROP || (n == 0 && w->conn_peak > 0) ||
	     (acc - w->trim_acc >= DP_TRIM_DROP && w->now_ms - w->acc_changed_ms >= 1000)) &&
	    w->now_ms - w->trimmed_ms >= 1000) {
		w->trimmed_ms = w->now_ms;
		w->conn_peak = n;
		w->trim_acc = acc;
		dp_memory_trim();
	}
	if (!w->conns || !n) {
		w->mem_cursor = NULL;
		w->mem_left = 0;
		if (w->st.conn_memory)
			__atomic_store_n(&w->st.conn_memory, 0, __ATOMIC_RELAXED);
		return;
	}
	if (!w->mem_left && w->now_ms - w->sampled_ms >= 1000) {
		w->sampled_ms = w->now_ms;
		w->mem_left = w->mem_walked = n < DP_MEM_SAMPLE ? (uint32_t)n : DP_MEM_SAMPLE;
		w->mem_sum = 0;
		if (n <= DP_MEM_SAMPLE || !w->mem_cursor)
			w->mem_cursor = w->conns;
	}
	for (unsigned i = 0; i < DP_MEM_WALK && w->mem_left; i++) {
		struct dp_conn *k = w->mem_cursor ? w->mem_cursor : w->conns;
		w->mem_sum += sizeof(*k) + net_conn_size() +
			      (k->sc ? conn_screen_memory(k->sc) : conn_memory(k->c));
		w->mem_cursor = k->next;
		if (--w->mem_left == 0)
			__atomic_store_n(&w->st.conn_memory, w->mem_sum * n / w->mem_walked,
					 __ATOMIC_RELAXED);
	}
}

static void dp_begin_stop(struct dp_worker *w)
{
	w->stopping = true;
	w->stop_deadline_ms = w->now_ms + w->t->p.shutdown_grace_ms;
	for (struct dp_conn *k = w->conns, *next; k; k = next) {
		next = k->next;
		if (k->sc) {
			conn_screen_shutdown(k->sc, w->now_ms);
			dp_service(w, k);
			continue;
		}
		/* never interrupts a commit: its 250 (or 451) comes first, then the 421 */
		conn_shutdown(k->c);
		k->hold_until_ms = 0;
		dp_service(w, k);
	}
}

/* One iteration: poll, steer, run timers and the spool's news, service, send. Returns
 * whether it did anything. */
static bool dp_iterate(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	unsigned work = 0;
	/* Take what is queued before any timer runs: under a backlog (a burst of thousands of
	 * closes, a flood) an ACK that arrived in time must not sit in the ring while its
	 * retransmission timer fires. Bounded, so timers and the spool still get their turn. */
	for (unsigned round = 0; round < DP_RX_ROUNDS; round++) {
		unsigned got = 0;
		for (unsigned pi = 0; pi < t->nports; pi++)
			got += dp_poll_port(w, pi);
		got += dp_poll_ring(w);
		work += got;
		if (got < DP_BURST)
			break;
	}
	for (unsigned pi = 0; pi < t->nports; pi++)
		net_stack_poll(w->stack[pi], w->now_us);
	if (spool_client_pending(w->cw.spool_client)) {
		spool_client_poll(w->cw.spool_client, dp_spool_news, w);
		work++;
	}
	if (w->cw.svc && svc_client_pending(w->cw.svc)) {
		svc_client_poll(w->cw.svc, dp_svc_answer, w);
		work++;
	}
	work += net_timer_advance(w->wheel, (uint32_t)w->now_ms, dp_timer_fire, w);
	if (w->ready_head) {
		dp_run_ready(w);
		work++;
	}
	for (unsigned pi = 0; pi < t->nports; pi++) {
		if (w->ntx[pi]) {
			dp_tx_flush_port(w, pi);
			work++;
		}
	}
	dp_free_dead(w);
	mx_log_batch_flush(); /* this iteration's connect, queued and disconnect lines */
	if (w->cw.svc)
		svc_client_flush(w->cw.svc); /* the services hear of this iteration's requests */
	/* see table changes committed since the last snapshot, between batches */
	if (work && w->now_us - w->renewed_us >= 1000) {
		w->renewed_us = w->now_us;
		conn_worker_renew_tables(&w->cw);
	}
	dp_housekeeping(w);
	return work != 0;
}

/* How long an idle poll loop sleeps, idle_us after its last work. For the first
 * DP_IDLE_SHORT_US the short sleep (a reply waiting for the spool's fdatasync must not
 * wait for us too); then a hundredth of the time idle, so the first packet after an idle
 * spell of T waits at most T/100, up to the configured maximum: an idle gateway wakes
 * about a hundred times a second instead of ten thousand. */
static uint64_t dp_idle_sleep_us(const struct dpdk_config *dc, uint64_t idle_us)
{
	uint64_t base = dc->idle_sleep_us, max = dc->idle_sleep_max_us;
	if (idle_us < DP_IDLE_SHORT_US || max <= base)
		return base;
	uint64_t us = idle_us / 100;
	return us < base ? base : us > max ? max : us;
}

/* Whether port is among the n in ports. */
static bool dp_port_in(const uint16_t *ports, unsigned n, uint16_t port)
{
	for (unsigned i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

/* Listen on a TCP port on every DPDK port. When one stack refuses, those that took it
 * let it go again, so the stacks agree with w->listening. 0 or a negative errno. */
static int dp_listen_port(struct dp_worker *w, uint16_t port)
{
	for (unsigned pi = 0; pi < w->t->nports; pi++) {
		int rc = net_stack_listen(w->stack[pi], port);
		if (rc < 0) {
			while (pi-- > 0)
				net_stack_unlisten(w->stack[pi], port);
			return rc;
		}
	}
	return 0;
}

static void dp_unlisten_port(struct dp_worker *w, uint16_t port)
{
	for (unsigned pi = 0; pi < w->t->nports; pi++)
		net_stack_unlisten(w->stack[pi], port);
}

/* Make the stacks listen on exactly the TCP ports the published generations' services
 * use (current and canary): the ports a reload adds open, the ports it drops close (a SYN
 * there gets RST; connections open there finish with the generation they started with).
 * Ports close before new ones open, so the stacks never hold more than the larger of the
 * old and the new set, which dp_ops_check_services kept within DP_LISTEN_MAX. */
void dp_listen_reconcile(struct dp_worker *w)
{
	struct dpdk_transport *t = w->t;
	struct mx_generation *gens[2] = {
		atomic_load_explicit(&t->p.gens->current, memory_order_acquire),
		atomic_load_explicit(&t->p.gens->canary, memory_order_acquire),
	};
	uint64_t cur = gens[0] ? gens[0]->id : 0, can = gens[1] ? gens[1]->id : 0;
	if (cur == w->listen_cur && can == w->listen_can)
		return;
	uint16_t want[DP_LISTEN_MAX];
	unsigned nwant = 0;
	for (int k = 0; k < 2; k++) {
		for (unsigned i = 0; gens[k] && i < gens[k]->nservices; i++) {
			const struct mx_service *svc = &gens[k]->services[i];
			for (unsigned j = 0; j < svc->nlisten; j++) {
				uint16_t port = svc->listen[j].port;
				if (dp_port_in(want, nwant, port))
					continue;
				if (nwant == DP_LISTEN_MAX) {
					mx_log(MX_LOG_WARNING, "worker %u: cannot listen on TCP port "
							       "%u: %s",
					       w->index, (unsigned)port, strerror(ENOSPC));
					continue;
				}
				want[nwant++] = port;
			}
		}
	}
	for (unsigned l = 0; l < w->nlistening;) {
		uint16_t port = w->listening[l];
		if (dp_port_in(want, nwant, port)) {
			l++;
			continue;
		}
		dp_unlisten_port(w, port);
		memmove(&w->listening[l], &w->listening[l + 1],
			(w->nlistening - l - 1) * sizeof(w->listening[0]));
		w->nlistening--;
	}
	for (unsigned i = 0; i < nwant; i++) {
		uint16_t port = want[i];
		if (dp_port_in(w->listening, w->nlistening, port))
			continue;
		int rc = dp_listen_port(w, port);
		if (rc < 0) {
			mx_log(MX_LOG_WARNING, "worker %u: cannot listen on TCP port %u: %s",
			       w->index, (unsigned)port, strerror(-rc));
			continue;
		}
		w->listening[w->nlistening++] = port;
	}
	w->listen_cur = cur;
	w->listen_can = can;
}

int dp_worker_main(void *arg)
{
	struct dp_worker *w = arg;
	struct dpdk_transport *t = w->t;
	__atomic_store_n(&w->tid, gettid(), __ATOMIC_RELAXED);
	/* The idle sleep is short; the kernel's default timer slack (50 us) would stretch every
	 * one of them by half again, and a client waiting for a reply waits that much more. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	/* one write(2) per iteration for all its log lines, not one per line */
	mx_log_batch_begin();
	unsigned idle = 0;
	uint64_t last = rte_rdtsc();
	dp_update_clock(w, last);
	uint64_t busy_at_us = w->now_us;
	rte_rcu_qsbr_thread_online(t->qsbr, w->index);
	for (;;) {
		if (!w->stopping && atomic_load_explicit(&t->stop, memory_order_relaxed))
			dp_begin_stop(w);
		if (w->stopping && (!w->conns || w->now_ms >= w->stop_deadline_ms))
			break;
		if (!w->stopping)
			dp_listen_reconcile(w); /* a reload may have added or dropped services */
		bool busy = dp_iterate(w);
		/* the quiescent point: generation pointers read in this iteration are held
		 * with references now, and idle generations are let go */
		conn_worker_release_gens(&w->cw);
		rte_rcu_qsbr_quiescent(t->qsbr, w->index);
		uint64_t now = rte_rdtsc();
		if (busy) {
			dp_stat_add(&w->st.busy_cycles, now - last);
			dp_stat_add(&w->st.busy_iterations, 1);
		}
		dp_stat_add(&w->st.total_cycles, now - last);
		dp_stat_add(&w->st.iterations, 1);
		last = now;
		dp_update_clock(w, now);
		idle = busy ? 0 : idle + 1;
		if (busy)
			busy_at_us = w->now_us;
		if (idle >= DP_IDLE_SPINS && t->dc.idle_sleep_us) {
			/* nothing to do for a while: give the core back briefly (clients, the
			 * spool writer and the kernel share it on small machines) */
			uint64_t us = dp_idle_sleep_us(&t->dc, w->now_us - busy_at_us);
			/* an answer from a service is due: no long sleep before it is picked up */
			if (w->cw.svc && svc_client_in_flight(w->cw.svc))
				us = t->dc.idle_sleep_us;
			struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000 };
			/* asleep is quiescent: a reload does not wait for the sleep to end */
			rte_rcu_qsbr_thread_offline(t->qsbr, w->index);
			nanosleep(&ts, NULL);
			rte_rcu_qsbr_thread_online(t->qsbr, w->index);
			dp_stat_add(&w->st.idle_sleeps, 1);
			uint64_t after = rte_rdtsc();
			dp_stat_add(&w->st.total_cycles, after - last);
			last = after;
			dp_update_clock(w, after);
		}
	}
	rte_rcu_qsbr_thread_offline(t->qsbr, w->index);
	/* Out of grace: close whatever is left, then keep the stacks running a little so
	 * the last replies and FINs leave (and are retransmitted if lost). */
	while (w->conns) {
		struct dp_conn *k = w->conns;
		if (k->sc) {
			conn_screen_shutdown(k->sc, w->now_ms);
			dp_screen_flush(k);
			dp_close(w, k);
			continue;
		}
		if (!conn_closed(k->c) && !k->eof)
			conn_shutdown(k->c);
		dp_flush(w, k);
		dp_close(w, k);
	}
	uint64_t until = w->now_ms + 500;
	for (;;) {
		uint32_t open = 0;
		for (unsigned pi = 0; pi < t->nports; pi++)
			open += net_stack_conn_count(w->stack[pi]);
		if (open == 0 || w->now_ms >= until)
			break;
		dp_iterate(w);
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
		dp_update_clock(w, rte_rdtsc());
	}
	dp_free_dead(w);
	mx_log_batch_end();
	return 0;
}
