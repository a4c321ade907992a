/* The kernel transport's internals, shared by kernel_transport.c (the workers' event
 * loops, connections, deadlines) and kernel_listen.c (listeners, opened and closed as
 * generations add and drop services). */
#ifndef MXGATE_DATAPLANE_KERNEL_KERNEL_INTERNAL_H
#define MXGATE_DATAPLANE_KERNEL_KERNEL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dataplane/kernel/kernel_transport.h"
#include "dataplane/session/conn.h"
#include "dataplane/session/conn_screen.h"
#include "mxgate/inet.h"

#define KT_LISTEN_BACKLOG 1024

enum kt_kind {
	KT_LISTENER,
	KT_WAKE,
	KT_CONN,
	KT_KIND_MAX,
};

/* epoll_event.data.ptr points at one of these, first member of each object. */
struct kt_handle {
	enum kt_kind kind;
};

/* A listening socket of one worker (SO_REUSEPORT: each worker has its own for every
 * address, and the kernel spreads connections over them). */
struct kt_listener {
	struct kt_handle h;
	int fd;
	struct mx_inet_addr addr;     /* as configured ("0.0.0.0", "::": any) */
	uint16_t port;
	struct sockaddr_storage ss;
	socklen_t sl;
	char name[80];                /* "127.0.0.1:25", "[::]:25" */
	bool wanted;                  /* kt_listeners_reconcile()'s scratch */
	struct kt_listener *next;
};

struct kt_worker;

struct kt_conn {
	struct kt_handle h;
	int fd;
	bool readable;   /* edge-triggered: the socket may have more to read */
	/* epoll said the peer closed or reset (EPOLLRDHUP, EPOLLHUP, EPOLLERR). The close
	 * may have come in the same event as the client's last bytes, and edge-triggered
	 * epoll will not report it again: reading goes on until read(2) says EOF or error,
	 * even after a short read. */
	bool hangup;
	bool eof;        /* the peer closed its side (or reset) */
	bool dead;       /* closed; freed at the end of the loop iteration */
	bool in_ready;
	struct conn *c;
	/* The screen that holds the connection until it passes (c is NULL meanwhile); NULL
	 * for a service without a screen, and once it passed. */
	struct conn_screen *sc;
	char *in;        /* unconsumed input, KT_READ_CHUNK bytes when allocated */
	size_t in_len;
	uint64_t idle_at;    /* smtpd_timeout deadline (monotonic ms) */
	uint64_t hold_until; /* smtpd_error_sleep_time: no I/O before this; 0 = none */
	uint64_t heap_key;
	size_t heap_idx;
	struct kt_conn *prev, *next;             /* the worker's connections */
	struct kt_conn *ready_prev, *ready_next; /* work left over from a wake-up */
};

struct kt_worker {
	struct kernel_transport *kt;
	unsigned index;
	pthread_t thread;
	bool started;
	int epfd;
	struct kt_handle wake_h;
	int wake_fd;
	struct kt_listener *listeners;
	bool listeners_closed;
	/* the generations the listeners were last made for (their IDs; 0: none) */
	uint64_t listen_cur, listen_can;
	/* quiescent points (kernel_transport_synchronize()): iterations ended, and whether it
	 * is waiting in epoll_wait() now (quiescent for as long as it waits) */
	atomic_uint_fast64_t qs;
	atomic_bool blocked;
	struct conn_worker cw;
	char *scratch;

	struct kt_conn **heap; /* min-heap on heap_key */
	size_t heap_len, heap_cap;
	struct kt_conn *conns;
	struct kt_conn *ready_head, *ready_tail;
	struct kt_conn *dead;
	uint64_t nconns; /* read by other threads with __atomic loads */

	bool stopping;
	uint64_t stop_deadline;
	bool accept_paused;
	uint64_t accept_resume_at;
	uint64_t refused_warned_at;
	unsigned refused_since_warning;
	uint64_t accept_warned_at;
};

struct kernel_transport {
	struct transport_params p;
	struct kt_worker *workers;
	unsigned nworkers;
	atomic_bool stop;
	atomic_bool failed;
};


/* ---- kernel_listen.c ---- */

/* Open, keep and close this worker's listeners so that they are the addresses of the
 * services of the published generations (current and canary). Cheap when nothing
 * changed. The worker's own thread, or the creating thread before it runs. 0, or a
 * negative errno with err (a listener that could not be opened; the others are kept). */
int kt_listeners_reconcile(struct kt_worker *w, char *err, size_t errlen);
/* Close every listener of the worker (a stop). */
void kt_listeners_close(struct kt_worker *w);
/* Stop or resume taking connections on every listener. */
void kt_listeners_pause(struct kt_worker *w, bool pause);
/* Can g's services listen where they say: numeric addresses, a port, and no other process
 * holding an address this gateway does not listen on yet. */
int kt_listeners_check(const struct kernel_transport *kt, const struct mx_generation *g,
		       char *err, size_t errlen);

#endif
