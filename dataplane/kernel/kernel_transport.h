/* The kernel transport: the gateway over Linux sockets and epoll, the portable baseline
 * beside the DPDK dataplane.
 *
 * N worker threads, each with its own epoll loop and its own SO_REUSEPORT listening socket
 * per configured address, so the kernel spreads connections over the workers and a
 * connection lives its whole life on one thread (no locks on the data path). Per worker:
 * edge-triggered non-blocking sockets, one shared read buffer (a connection keeps only the
 * bytes the engine has not consumed yet, bounded by one read), a binary heap of deadlines
 * for the idle timeout and the error-sleep delay (no timerfd per connection), and a limit
 * on connections. */
#ifndef MXGATE_DATAPLANE_KERNEL_KERNEL_TRANSPORT_H
#define MXGATE_DATAPLANE_KERNEL_KERNEL_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/transport.h"
#include "mxgate/counters.h"

struct kernel_transport;

/* Create the listening sockets (every worker's, so a bad or busy address is reported now,
 * before anything runs) and the workers' state. Returns 0, or a negative errno with a
 * message in err. */
int kernel_transport_create(struct kernel_transport **out,
			    const struct transport_params *p, char *err, size_t errlen);

/* Start the worker threads. Returns 0 or a negative errno (threads already started are
 * stopped again). */
int kernel_transport_start(struct kernel_transport *kt);

/* Ask every worker to stop: close the listeners, answer every session 421 (a message
 * being committed finishes its commit first), flush, close, within shutdown_grace_ms.
 * Callable from any thread, once or more. */
void kernel_transport_stop(struct kernel_transport *kt);

/* Wait for the workers to finish (after kernel_transport_stop()). */
void kernel_transport_join(struct kernel_transport *kt);

/* True when a worker ended on an internal error (it also raised SIGTERM). */
bool kernel_transport_failed(const struct kernel_transport *kt);

/* The sum of the workers' counters (a slightly stale view while they run), and the number
 * of open connections. */
void kernel_transport_counters(const struct kernel_transport *kt, struct mx_counters *sum,
			       uint64_t *open_connections);

/* After kernel_transport_join() and spool_stop(): the workers' spool clients go too. */
void kernel_transport_destroy(struct kernel_transport *kt);

#endif
