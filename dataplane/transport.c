/* Which transports this mxgate has: the kernel one always, the dpdk one when it was built
 * with libdpdk (MXGATE_HAVE_DPDK). */
#include "dataplane/transport.h"

#include <stddef.h>

#ifdef MXGATE_HAVE_DPDK
#include "dataplane/dpdk/dpdk_transport.h"
#endif

const struct transport_ops *transport_ops_for(enum mx_transport t)
{
	switch (t) {
	case MX_TRANSPORT_KERNEL:
		return &kernel_transport_ops;
	case MX_TRANSPORT_DPDK:
#ifdef MXGATE_HAVE_DPDK
		return &dpdk_transport_ops;
#else
		return NULL;
#endif
	case MX_TRANSPORT_MAX:
		break;
	}
	return NULL;
}

const char *transport_dpdk_version(void)
{
#ifdef MXGATE_HAVE_DPDK
	return dpdk_transport_version();
#else
	return NULL;
#endif
}
