/* The dpdk transport's counters: the workers' SMTP counters summed, and the statistics
 * line (packets, steering, mbufs, cycles and CPU time per packet, message and session,
 * memory per connection, the stacks' counters). Read from the management thread while the
 * workers run: relaxed atomic loads, slightly stale. */
#include "dataplane/dpdk/dpdk_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/log.h"

void dpdk_transport_counters(const struct dpdk_transport *t, struct mx_counters *sum,
			     uint64_t *open_connections)
{
	memset(sum, 0, sizeof(*sum));
	uint64_t open = 0;
	for (unsigned i = 0; i < t->nworkers; i++) {
		conn_worker_counters_add(sum, &t->workers[i].cw);
		open += dp_stat_get(&t->workers[i].st.nconns);
	}
	if (open_connections)
		*open_connections = open;
}

/* CPU time the kernel accounted to a thread, in ns (schedstat's first field): unlike TSC
 * cycles it excludes time the thread was preempted, which matters when lcores share
 * cores with other work. 0 when unknown. */
static uint64_t dp_thread_cpu_ns(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", (int)tid);
	FILE *f = tid > 0 ? fopen(path, "re") : NULL;
	unsigned long long ns = 0;
	if (f) {
		if (fscanf(f, "%llu", &ns) != 1)
			ns = 0;
		fclose(f);
	}
	return ns;
}

void dpdk_transport_log_statistics(const struct dpdk_transport *t, const char *when)
{
	struct dp_stats s = { 0 };
	struct net_counters nc = { 0 };
	uint64_t conns_open = 0, buffers = 0, time_wait = 0, cpu_ns = 0;
	for (unsigned i = 0; i < t->nworkers; i++) {
		const struct dp_worker *w = &t->workers[i];
		s.rx_packets += dp_stat_get(&w->st.rx_packets);
		s.tx_packets += dp_stat_get(&w->st.tx_packets);
		s.tx_dropped += dp_stat_get(&w->st.tx_dropped);
		s.rx_multiseg_drop += dp_stat_get(&w->st.rx_multiseg_drop);
		s.steered_out += dp_stat_get(&w->st.steered_out);
		s.steer_drops += dp_stat_get(&w->st.steer_drops);
		s.busy_cycles += dp_stat_get(&w->st.busy_cycles);
		s.total_cycles += dp_stat_get(&w->st.total_cycles);
		s.idle_sleeps += dp_stat_get(&w->st.idle_sleeps);
		s.conn_memory += dp_stat_get(&w->st.conn_memory);
		s.nconns += dp_stat_get(&w->st.nconns);
		cpu_ns += dp_thread_cpu_ns(__atomic_load_n(&w->tid, __ATOMIC_RELAXED));
		for (unsigned pi = 0; pi < t->nports; pi++) {
			if (!w->stack[pi])
				continue;
			/* the stacks' counters are plain integers one lcore writes; a
			 * statistics line tolerates a torn read of a counter being bumped */
			const struct net_counters *c = net_stack_counters(w->stack[pi]);
			const uint64_t *src = (const uint64_t *)c;
			uint64_t *dst = (uint64_t *)&nc;
			for (size_t k = 0; k < sizeof(nc) / sizeof(uint64_t); k++)
				dst[k] += __atomic_load_n(&src[k], __ATOMIC_RELAXED);
			conns_open += net_stack_conn_count(w->stack[pi]);
			buffers += net_stack_buffers_in_use(w->stack[pi]);
			time_wait += net_stack_time_wait_count(w->stack[pi]);
		}
	}
	uint64_t in_use = 0, total = 0, missed = 0;
	for (unsigned pi = 0; pi < t->nports; pi++) {
		if (t->port[pi].pool) {
			in_use += rte_mempool_in_use_count(t->port[pi].pool);
			total += t->port[pi].pool->size;
		}
		struct rte_eth_stats es;
		if (t->ports_started && rte_eth_stats_get(t->port[pi].port_id, &es) == 0)
			missed += es.imissed + es.rx_nombuf;
	}
	struct mx_counters sum;
	dpdk_transport_counters(t, &sum, NULL);
	uint64_t msgs = sum.messages_accepted, sess = sum.connections_accepted;
	char line[2048];
	size_t n = (size_t)snprintf(
		line, sizeof(line),
		"dpdk statistics (%s): workers=%u rx_packets=%" PRIu64 " tx_packets=%" PRIu64
		" tx_dropped=%" PRIu64 " rx_missed=%" PRIu64 " rx_multiseg_drop=%" PRIu64
		" steered=%" PRIu64 " steer_drops=%" PRIu64 " mbufs_in_use=%" PRIu64
		" mbufs_total=%" PRIu64 " tsc_hz=%" PRIu64 " busy_cycles=%" PRIu64
		" total_cycles=%" PRIu64 " idle_sleeps=%" PRIu64 " cycles_per_packet=%" PRIu64
		" cycles_per_message=%" PRIu64 " cycles_per_session=%" PRIu64
		" worker_cpu_ns=%" PRIu64 " cpu_ns_per_message=%" PRIu64 " open_connections=%" PRIu64 " stack_connections=%" PRIu64
		" time_wait=%" PRIu64 " stack_buffers=%" PRIu64 " conn_memory_bytes=%" PRIu64
		" conn_bytes_each=%" PRIu64 " tcb_bytes=%zu",
		when, t->nworkers, s.rx_packets, s.tx_packets, s.tx_dropped, missed,
		s.rx_multiseg_drop, s.steered_out, s.steer_drops, in_use, total, t->tsc_hz,
		s.busy_cycles, s.total_cycles, s.idle_sleeps,
		s.rx_packets ? s.busy_cycles / s.rx_packets : 0, msgs ? s.busy_cycles / msgs : 0,
		sess ? s.busy_cycles / sess : 0, cpu_ns, msgs ? cpu_ns / msgs : 0, s.nconns, conns_open, time_wait, buffers,
		s.conn_memory, s.nconns ? s.conn_memory / s.nconns : 0, net_conn_size());
#define DP_NC(name)                                                                        \
	if (n < sizeof(line))                                                              \
		n += (size_t)snprintf(line + n, sizeof(line) - n, " " #name "=%" PRIu64, nc.name);
	DP_NC(rx_bad_eth) DP_NC(rx_bad_ip) DP_NC(rx_bad_csum) DP_NC(rx_ip_fragments)
	DP_NC(rx_bad_tcp) DP_NC(rx_proto_unknown) DP_NC(rx_icmp) DP_NC(rx_arp) DP_NC(rx_ipv6)
	DP_NC(tx_alloc_fail) DP_NC(tcp_syn) DP_NC(tcp_syn_cookie_sent) DP_NC(tcp_syn_cookie_ok)
	DP_NC(tcp_syn_cookie_bad) DP_NC(tcp_accept) DP_NC(tcp_rst_sent) DP_NC(tcp_rst_limited)
	DP_NC(tcp_rst_rcvd) DP_NC(tcp_challenge_ack) DP_NC(tcp_paws_drop) DP_NC(tcp_ooo_segs)
	DP_NC(tcp_dup_segs) DP_NC(tcp_retransmits) DP_NC(tcp_rto) DP_NC(tcp_fast_retransmit)
	DP_NC(tcp_timeouts) DP_NC(tcp_conn_full) DP_NC(tcp_buf_alloc_fail) DP_NC(fault_drop)
	DP_NC(fault_dup) DP_NC(fault_delay)
#undef DP_NC
	mx_log(MX_LOG_INFO, "%s", line);
}
