/* Unprivileged running (dataplane/privdrop.h): the plan's refusals (a user that does not
 * exist, root, a chroot that is not a directory), giving a tree to a user (links not
 * followed), the capability names, and, run as root, the drop itself in a child process:
 * its IDs, groups and capability sets afterwards, root not regained, and the chroot. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/privdrop.h"
#include "testing.h"

static void test_plan_refusals(void)
{
	struct privdrop_plan p;
	char err[512];
	CHECK_INT_EQ(privdrop_plan_make(&p, "no-such-user-mxgate-test", "", err, sizeof(err)),
		     -ENOENT);
	CHECK(strstr(err, "mail_owner = no-such-user-mxgate-test") != NULL);
	CHECK(strstr(err, "adduser --system --group --no-create-home") != NULL);
	CHECK_INT_EQ(privdrop_plan_make(&p, "root", "", err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "privileged user ID 0") != NULL);
	CHECK_INT_EQ(privdrop_plan_make(&p, "nobody", "/etc/passwd", err, sizeof(err)),
		     -ENOTDIR);
	CHECK(strstr(err, "mxgate_chroot = /etc/passwd: not a directory") != NULL);
	CHECK_INT_EQ(privdrop_plan_make(&p, "nobody", "/nonexistent-chroot", err, sizeof(err)),
		     -ENOENT);
	CHECK_INT_EQ(privdrop_plan_make(&p, "nobody", "", err, sizeof(err)), 0);
	CHECK_INT_EQ((int)p.uid, (int)getpwnam("nobody")->pw_uid);
	CHECK(p.active == (geteuid() == 0));
	CHECK_STR_EQ(p.chroot_dir, "");
}

static void test_caps_text(void)
{
	char buf[256];
	privdrop_caps_text(0, buf, sizeof(buf));
	CHECK_STR_EQ(buf, "none");
	privdrop_caps_text(PRIVDROP_CAP(CAP_NET_BIND_SERVICE), buf, sizeof(buf));
	CHECK_STR_EQ(buf, "cap_net_bind_service");
	privdrop_caps_text(PRIVDROP_CAP(CAP_NET_RAW) | PRIVDROP_CAP(CAP_NET_ADMIN) |
				   PRIVDROP_CAP(40),
			   buf, sizeof(buf));
	CHECK_STR_EQ(buf, "cap_net_admin,cap_net_raw,cap_40");
	char small[8];
	privdrop_caps_text(PRIVDROP_CAP(CAP_NET_BIND_SERVICE), small, sizeof(small));
	CHECK_INT_EQ((int)strlen(small), 7); /* cut, terminated */
}

static void test_own_tree(void)
{
	char err[512];
	CHECK_INT_EQ((int)privdrop_own_tree("/nonexistent/mxgate-test", 0, 0, -1, err,
					     sizeof(err)),
		     0);
	/* system directories are never given away, whoever runs this */
	CHECK_INT_EQ((int)privdrop_own_tree("/", 0, 0, -1, err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "will not give a system directory") != NULL);
	CHECK_INT_EQ((int)privdrop_own_tree("/var/", 0, 0, -1, err, sizeof(err)), -EPERM);
	CHECK_INT_EQ((int)privdrop_own_tree("//tmp", 0, 0, -1, err, sizeof(err)), -EPERM);
	CHECK_INT_EQ((int)privdrop_own_tree("relative/dir", 0, 0, -1, err, sizeof(err)), -EPERM);
	if (geteuid() != 0) {
		printf("  (not root: the chown walk is checked as root only)\n");
		return;
	}
	struct passwd *pw = getpwnam("nobody");
	CHECK(pw != NULL);
	if (!pw)
		return;
	char dir[] = "/tmp/privdrop-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char a[128], b[128], link[128], outside[] = "/tmp/privdrop-outside-XXXXXX";
	int ofd = mkstemp(outside);
	CHECK(ofd >= 0);
	close(ofd);
	snprintf(a, sizeof(a), "%s/seg", dir);
	snprintf(b, sizeof(b), "%s/seg/1", dir);
	snprintf(link, sizeof(link), "%s/link", dir);
	CHECK_INT_EQ(mkdir(a, 0700), 0);
	int fd = open(b, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0);
	close(fd);
	CHECK_INT_EQ(symlink(outside, link), 0);
	/* depth 0: the directory only; depth 1: and seg and link, not seg/1 */
	CHECK_INT_EQ((int)privdrop_own_tree(dir, pw->pw_uid, pw->pw_gid, 0, err, sizeof(err)), 1);
	CHECK_INT_EQ((int)privdrop_own_tree(dir, pw->pw_uid, pw->pw_gid, 1, err, sizeof(err)), 2);
	struct stat st;
	CHECK_INT_EQ(stat(b, &st), 0);
	CHECK_INT_EQ((int)st.st_uid, 0);
	/* all: seg/1 too; what the link points at stays root's */
	CHECK_INT_EQ((int)privdrop_own_tree(dir, pw->pw_uid, pw->pw_gid, -1, err, sizeof(err)),
		     1);
	CHECK_INT_EQ(stat(b, &st), 0);
	CHECK_INT_EQ((int)st.st_uid, (int)pw->pw_uid);
	CHECK_INT_EQ(lstat(link, &st), 0);
	CHECK_INT_EQ((int)st.st_uid, (int)pw->pw_uid);
	CHECK_INT_EQ(stat(outside, &st), 0);
	CHECK_INT_EQ((int)st.st_uid, 0);
	/* again: nothing left to change */
	CHECK_INT_EQ((int)privdrop_own_tree(dir, pw->pw_uid, pw->pw_gid, -1, err, sizeof(err)),
		     0);
	unlink(link);
	unlink(b);
	rmdir(a);
	rmdir(dir);
	unlink(outside);
}

/* A "Name:\t<hex>" capability line of /proc/self/status, read through f (opened before
 * a chroot hides /proc; the kernel writes the file anew at each read from its start). */
static unsigned long long status_hex(FILE *f, const char *name)
{
	char line[256];
	unsigned long long v = ~0ull;
	size_t n = strlen(name);
	rewind(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, n) == 0 && line[n] == ':')
			v = strtoull(line + n + 1, NULL, 16);
	return v;
}

/* In a child (the drop cannot be undone): 0 when every expectation held, else the number
 * of the first that failed. */
static int child_drop(const struct privdrop_plan *p, uint64_t keep)
{
	char err[512];
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return 9;
	if (privdrop_apply(p, keep, err, sizeof(err)) < 0) {
		fprintf(stderr, "  privdrop_apply: %s\n", err);
		return 1;
	}
	uid_t r, e, s;
	gid_t gr, ge, gs;
	if (getresuid(&r, &e, &s) != 0 || r != p->uid || e != p->uid || s != p->uid)
		return 2;
	if (getresgid(&gr, &ge, &gs) != 0 || gr != p->gid || ge != p->gid || gs != p->gid)
		return 3;
	gid_t groups[PRIVDROP_MAX_GROUPS];
	int n = getgroups(PRIVDROP_MAX_GROUPS, groups);
	if (n != p->ngroups)
		return 4;
	if (status_hex(f, "CapEff") != keep || status_hex(f, "CapPrm") != keep ||
	    status_hex(f, "CapBnd") != keep || status_hex(f, "CapInh") != 0)
		return 5;
	if (setuid(0) == 0 || seteuid(0) == 0)
		return 6;
	if (prctl(PR_GET_DUMPABLE) != 1)
		return 7;
	if (p->chroot_dir[0] && access("/marker", F_OK) != 0)
		return 8;
	return 0;
}

static void test_apply(void)
{
	if (geteuid() != 0) {
		printf("  (not root: privdrop_apply is checked as root only)\n");
		return;
	}
	char dir[] = "/tmp/privdrop-root-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	CHECK_INT_EQ(chmod(dir, 0755), 0); /* the user looks inside its root */
	char marker[128];
	snprintf(marker, sizeof(marker), "%s/marker", dir);
	int fd = open(marker, O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	const uint64_t keeps[] = { 0, PRIVDROP_CAP(CAP_NET_BIND_SERVICE) };
	for (int chrooted = 0; chrooted < 2; chrooted++) {
		for (size_t k = 0; k < sizeof(keeps) / sizeof(keeps[0]); k++) {
			struct privdrop_plan p;
			char err[512];
			CHECK_INT_EQ(privdrop_plan_make(&p, "nobody", chrooted ? dir : "", err,
							sizeof(err)),
				     0);
			fflush(NULL);
			pid_t pid = fork();
			CHECK(pid >= 0);
			if (pid == 0)
				_exit(child_drop(&p, keeps[k]));
			int st = 0;
			CHECK_INT_EQ((int)waitpid(pid, &st, 0), (int)pid);
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				fprintf(stderr, "  chroot %d keep %llx: child status %d\n", chrooted,
					(unsigned long long)keeps[k], st);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	unlink(marker);
	rmdir(dir);
}

int main(void)
{
	RUN_TEST(test_plan_refusals);
	RUN_TEST(test_caps_text);
	RUN_TEST(test_own_tree);
	RUN_TEST(test_apply);
	return TEST_RESULT();
}
