/* sd_notify(3) over a connected datagram socket (sdnotify.h). The protocol is one
 * datagram of newline-separated assignments to the socket in $NOTIFY_SOCKET; systemd knows
 * the sender from the credentials the kernel attaches (SO_PASSCRED on its side). */
#include "dataplane/sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int sdnotify_fd = -1;

int sdnotify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	/* an abstract name is '@' then the name; a path must be absolute */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
				      (path[0] == '@' ? 0 : 1));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	sdnotify_close();
	sdnotify_fd = fd;
	unsetenv("NOTIFY_SOCKET");
	return 1;
}

int sdnotify_send(const char *state)
{
	if (sdnotify_fd < 0)
		return 0;
	ssize_t n;
	do
		n = send(sdnotify_fd, state, strlen(state), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

int sdnotify_reloading(uint64_t now_us)
{
	char buf[64];
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_us);
	return sdnotify_send(buf);
}

void sdnotify_close(void)
{
	if (sdnotify_fd >= 0)
		close(sdnotify_fd);
	sdnotify_fd = -1;
}
