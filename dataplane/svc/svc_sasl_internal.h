/* Inside the SASL service: the directory's parts only the service thread touches
 * (svc_sasl_directory.c), for svc_sasl.c. */
#ifndef MXGATE_DATAPLANE_SVC_SVC_SASL_INTERNAL_H
#define MXGATE_DATAPLANE_SVC_SVC_SASL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/svc/svc_sasl.h"
#include "smtp/smtp_dovecot_auth.h"

/* Distinct mechanism lists kept per endpoint (published ones stay until the directory is
 * freed, unless retired long ago: see svc_sasl_directory_publish()). */
#define SVC_SASL_MECH_VERSIONS 8
/* A list no longer published may be freed this long after: a reader holds the pointer
 * only within one svc_sasl_mech_list() call (no blocking, microseconds). */
#define SVC_SASL_MECH_GRACE_MS 60000

/* The eventfd svc_sasl_directory_want() writes (EFD_NONBLOCK), for the service. */
int svc_sasl_directory_wake_fd(const struct svc_sasl_directory *d);
/* Endpoints wanted so far (slots 0 .. n-1 never change once counted). */
unsigned svc_sasl_directory_count(const struct svc_sasl_directory *d);
const char *svc_sasl_directory_endpoint(const struct svc_sasl_directory *d, unsigned i);
/* The slot of endpoint, or -1. */
int svc_sasl_directory_find(const struct svc_sasl_directory *d, const char *endpoint);
/* Service thread only: publish the mechanisms of slot i (codec READY), or "unknown"
 * (codec NULL). Publishes a new object only when the list changed. Returns false when
 * the list could not be published (out of memory, or SVC_SASL_MECH_VERSIONS distinct
 * lists none of which may be freed yet): "unknown" is published instead; try again
 * later. */
bool svc_sasl_directory_publish(struct svc_sasl_directory *d, unsigned i,
				const struct smtp_dovecot *codec, uint64_t now_ms);

#endif
