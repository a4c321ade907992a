/* Per-thread event counters. Each worker owns one struct and is its only writer, so plain
 * increments suffice; readers (metrics) tolerate a torn, slightly old view. */
#ifndef MXGATE_COUNTERS_H
#define MXGATE_COUNTERS_H

#include <stdint.h>

#define MX_COUNTERS(X)                                                                     \
	X(connections_accepted)                                                            \
	X(connections_refused)                                                             \
	X(connections_closed)                                                              \
	X(connections_timed_out)                                                           \
	X(commands)                                                                        \
	X(protocol_errors)                                                                 \
	X(pipelining_violations)                                                           \
	X(bare_newlines)                                                                   \
	X(messages_accepted)                                                               \
	X(messages_rejected)                                                               \
	X(messages_discarded)                                                              \
	X(recipients_accepted)                                                             \
	X(recipients_rejected)                                                             \
	X(bytes_received)                                                                  \
	X(spool_failures)                                                                  \
	X(anvil_connection_count_refused)                                                  \
	X(anvil_connection_rate_refused)                                                   \
	X(anvil_message_rate_refused)                                                      \
	X(anvil_recipient_rate_refused)                                                    \
	X(anvil_auth_rate_refused)                                                         \
	X(anvil_newtls_rate_refused)                                                       \
	X(anvil_untracked)                                                                 \
	X(anvil_evicted)                                                                   \
	X(proxy_failed)                                                                    \
	X(screen_connections)                                                              \
	X(screen_pregreet_fail)                                                            \
	X(screen_dnsbl_fail)                                                               \
	X(screen_deep_fail)                                                                \
	X(screen_pass_new)                                                                 \
	X(screen_pass_old)                                                                 \
	X(screen_denylisted)                                                               \
	X(screen_too_many)                                                                 \
	X(screen_allowlisted)                                                              \
	X(screen_passed)                                                                   \
	X(screen_closed)                                                                   \
	X(tls_established)                                                                 \
	X(tls_resumed)                                                                     \
	X(tls_failed)

struct mx_counters {
#define MX_COUNTER_FIELD(name) uint64_t name;
	MX_COUNTERS(MX_COUNTER_FIELD)
#undef MX_COUNTER_FIELD
};

#endif
