/* The dpdk transport: the gateway on DPDK ports through mxgate's own TCP/IP stack
 * (dataplane/net/), one poll loop per worker lcore, no kernel on the data path.
 *
 * Layout. rte_eal_init() takes mxgate_dpdk_eal_args; every EAL lcore but the main one
 * runs a worker; the main lcore (main.c's thread) only waits for signals and does
 * management, and never touches a packet. Each worker has, for every port, its own RX
 * and TX queue and its own stack instance (the port's MAC and addresses, its own
 * connection table, timer wheel and counters), its own LMDB reader, policy context,
 * checks scratch and spool client, exactly like a kernel-transport worker; a connection
 * lives its whole life on the lcore that owns its flow, so nothing on the data path locks.
 *
 * Flow steering, per port:
 *   - one queue pair per worker where the port has them: a NIC with RSS gets a symmetric
 *     Toeplitz key (0x6d5a repeated), so both directions of a flow hash alike; af_packet
 *     with qpairs=N fans out by the kernel's symmetric flow hash; net_tap by its flow
 *     hash. The queue a flow's SYN arrives on owns it. A packet that lands elsewhere later
 *     (af_packet's rollover when a ring is full) is a stray: the owner recorded at SYN
 *     time in a shared table of flow tags is looked up and the packet is handed over;
 *   - fewer queues than workers, or mxgate_dpdk_steering = software: our own keyed flow
 *     hash names the owner of every TCP packet, and a packet polled by another lcore is
 *     handed to its owner over that lcore's ring (rte_ring, multi-producer). A TX queue
 *     shared by several lcores is taken under a spinlock.
 *   ARP, ND and ICMP are answered by whichever lcore receives them.
 *
 * Buffers. One mbuf pool per port. A received frame is handed to the stack, which copies
 * what it keeps, and freed at once; frames the stack sends are allocated from the pool and
 * sent in bursts at the end of each iteration. When the pool runs low the stacks are told
 * (net_stack_set_pressure): windows stop growing and SYNs are answered with cookies.
 *
 * Cycles. Each iteration reads the TSC; iterations that did work add to busy cycles, all
 * add to total cycles. The statistics report busy cycles per packet, message and session.
 * TSC cycles are wall time: on shared cores they include time the lcore was preempted,
 * and on af_packet they include the kernel work the TX syscall does for the peer (a veth
 * runs the receiver's stack inline), so the CPU time the kernel accounted to the worker
 * threads is reported beside them (worker_cpu_ns, cpu_ns_per_message). An idle loop sleeps mxgate_dpdk_idle_sleep_us (0: never), so a gateway sharing cores
 * with its clients and spool writer leaves them the CPU. */
#ifndef MXGATE_DATAPLANE_DPDK_DPDK_TRANSPORT_H
#define MXGATE_DATAPLANE_DPDK_DPDK_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/dpdk/dpdk_config.h"
#include "dataplane/transport.h"
#include "mxgate/counters.h"

struct dpdk_transport;

/* Initialise the EAL (once per process), set up the ports, queues and pools, and build
 * every worker's state; p->workers is ignored (the EAL's worker lcores decide; a
 * configured mxgate_workers that differs is an error). *workers says how many. Returns 0,
 * or a negative errno with a message in err. */
int dpdk_transport_create(struct dpdk_transport **out, const struct transport_params *p,
			  const struct dpdk_config *dc, unsigned *workers, char *err,
			  size_t errlen);

/* Launch the poll loops on the worker lcores. 0 or a negative errno. */
int dpdk_transport_start(struct dpdk_transport *t);

/* Ask every worker to stop (421 to every session, commits finish first, flush, close
 * within shutdown_grace_ms). Any thread, once or more. */
void dpdk_transport_stop(struct dpdk_transport *t);
void dpdk_transport_join(struct dpdk_transport *t);
bool dpdk_transport_failed(const struct dpdk_transport *t);

/* Sum of the workers' SMTP counters and open connections (slightly stale while running). */
void dpdk_transport_counters(const struct dpdk_transport *t, struct mx_counters *sum,
			     uint64_t *open_connections);

/* Log the dataplane's own statistics line ("dpdk statistics (WHEN): key=value ..."):
 * packets, steering, mbufs, cycles per packet/message/session, memory per connection,
 * and the stacks' counters. */
void dpdk_transport_log_statistics(const struct dpdk_transport *t, const char *when);

/* After join and spool_stop(): ports closed, EAL cleaned up. */
void dpdk_transport_destroy(struct dpdk_transport *t);

/* The DPDK release this mxgate was built against ("DPDK 22.11.4"). */
const char *dpdk_transport_version(void);

#endif
