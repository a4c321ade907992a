/* sd_notify without libsystemd (dataplane/sdnotify.h): a fake NOTIFY_SOCKET (a datagram
 * socket of the test's own, at a path and in the abstract namespace) receives exactly the
 * datagrams systemd would; without NOTIFY_SOCKET every send is a no-op; a bad value is an
 * error, not a crash. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dataplane/sdnotify.h"
#include "testing.h"

/* A datagram socket bound at path ("@name": abstract); returns its fd. */
static int fake_systemd(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	memcpy(sa.sun_path, path, len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen++;
	CHECK_INT_EQ(bind(fd, (struct sockaddr *)&sa, salen), 0);
	return fd;
}

/* The next datagram, as a string ("" when none is waiting). */
static const char *next_datagram(int fd)
{
	static char buf[512];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void check_protocol(const char *where)
{
	int fd = fake_systemd(where);
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", where, 1), 0);
	CHECK_INT_EQ(sdnotify_open(), 1);
	/* unset: nothing the gateway starts later takes it for its own */
	CHECK(getenv("NOTIFY_SOCKET") == NULL);
	CHECK_INT_EQ(sdnotify_send("READY=1\nSTATUS=accepting mail"), 0);
	CHECK_STR_EQ(next_datagram(fd), "READY=1\nSTATUS=accepting mail");
	CHECK_INT_EQ(sdnotify_reloading(123456789), 0);
	CHECK_STR_EQ(next_datagram(fd), "RELOADING=1\nMONOTONIC_USEC=123456789");
	CHECK_INT_EQ(sdnotify_send("READY=1"), 0);
	CHECK_STR_EQ(next_datagram(fd), "READY=1");
	CHECK_INT_EQ(sdnotify_send("STOPPING=1"), 0);
	CHECK_STR_EQ(next_datagram(fd), "STOPPING=1");
	CHECK_STR_EQ(next_datagram(fd), ""); /* one datagram each, nothing more */
	sdnotify_close();
	/* closed: sends are no-ops again */
	CHECK_INT_EQ(sdnotify_send("READY=1"), 0);
	CHECK_STR_EQ(next_datagram(fd), "");
	close(fd);
}

static void test_path_socket(void)
{
	char dir[] = "/tmp/sdnotify-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[128];
	snprintf(path, sizeof(path), "%s/notify", dir);
	check_protocol(path);
	unlink(path);
	rmdir(dir);
}

static void test_survives_unlinked_path(void)
{
	char dir[] = "/tmp/sdnotify-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[128];
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = fake_systemd(path);
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", path, 1), 0);
	CHECK_INT_EQ(sdnotify_open(), 1);
	/* what a chroot does to the path: it is no longer there to be found */
	unlink(path);
	CHECK_INT_EQ(sdnotify_send("READY=1"), 0);
	CHECK_STR_EQ(next_datagram(fd), "READY=1");
	sdnotify_close();
	close(fd);
	rmdir(dir);
}

static void test_abstract_socket(void)
{
	char name[64];
	snprintf(name, sizeof(name), "@mxgate-sdnotify-test-%d", (int)getpid());
	check_protocol(name);
}

static void test_not_under_systemd(void)
{
	unsetenv("NOTIFY_SOCKET");
	CHECK_INT_EQ(sdnotify_open(), 0);
	CHECK_INT_EQ(sdnotify_send("READY=1"), 0);
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", "", 1), 0);
	CHECK_INT_EQ(sdnotify_open(), 0);
}

static void test_bad_values(void)
{
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", "relative/path", 1), 0);
	CHECK_INT_EQ(sdnotify_open(), -EINVAL);
	char longpath[200];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", longpath, 1), 0);
	CHECK_INT_EQ(sdnotify_open(), -EINVAL);
	/* nobody listening there */
	CHECK_INT_EQ(setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1), 0);
	CHECK_INT_EQ(sdnotify_open(), -ENOENT);
	CHECK_INT_EQ(sdnotify_send("READY=1"), 0); /* still a no-op */
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	RUN_TEST(test_path_socket);
	RUN_TEST(test_survives_unlinked_path);
	RUN_TEST(test_abstract_socket);
	RUN_TEST(test_not_under_systemd);
	RUN_TEST(test_bad_values);
	return TEST_RESULT();
}
