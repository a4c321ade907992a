/* systemd's service notification (sd_notify(3)), without libsystemd: a Type=notify unit
 * (deploy/mxgate.service) learns that the gateway is ready, reloading or stopping from
 * datagrams on the UNIX socket NOTIFY_SOCKET names.
 *
 * The socket is connected once at start (sdnotify_open()), so that notifications still
 * reach systemd after a chroot (the path is no longer reachable) and after the change of
 * user. Process-wide: one connection, like the log. */
#ifndef MXGATE_DATAPLANE_SDNOTIFY_H
#define MXGATE_DATAPLANE_SDNOTIFY_H

#include <stdint.h>

/* Connect to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace) and unset it
 * (nothing started later is systemd's main process). Returns 1 connected, 0 no
 * NOTIFY_SOCKET (not under systemd: every send is a no-op), or a negative errno. */
int sdnotify_open(void);

/* Send one notification: newline-separated VAR=VALUE assignments ("READY=1",
 * "STOPPING=1", "STATUS=..."). Returns 0 (also when not connected), or a negative errno. */
int sdnotify_send(const char *state);

/* "RELOADING=1" with MONOTONIC_USEC=now_us (CLOCK_MONOTONIC), as systemd 253's
 * Type=notify-reload wants; older systemd ignores the time. */
int sdnotify_reloading(uint64_t now_us);

void sdnotify_close(void);

#endif
