/* Unprivileged running (privdrop.h).
 *
 * Capabilities are set with the capset(2) and prctl(2) system calls rather than libcap:
 * the gateway needs one mask in one thread, which is a dozen lines, and libcap would be one
 * more run-time dependency for it (its cap_set_proc() is the same per-thread capset()). */
#include "dataplane/privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mxgate/errf.h"

/* Not in every libc's headers: the ambient set (Linux 4.3). */
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

int privdrop_plan_make(struct privdrop_plan *p, const char *user, const char *chroot_dir,
		       char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	if (strlen(user) >= sizeof(p->user))
		return mx_errf(err, errlen, -EINVAL, "mail_owner = %s: name too long", user);
	snprintf(p->user, sizeof(p->user), "%s", user);
	if (chroot_dir && *chroot_dir) {
		struct stat st;
		if (strlen(chroot_dir) >= sizeof(p->chroot_dir))
			return mx_errf(err, errlen, -ENAMETOOLONG, "mxgate_chroot: path too long");
		if (stat(chroot_dir, &st) != 0)
			return mx_errf(err, errlen, -errno, "mxgate_chroot = %s: %s", chroot_dir,
				       strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return mx_errf(err, errlen, -ENOTDIR, "mxgate_chroot = %s: not a directory",
				       chroot_dir);
		snprintf(p->chroot_dir, sizeof(p->chroot_dir), "%s", chroot_dir);
	}
	errno = 0;
	struct passwd *pw = getpwnam(user);
	if (!pw)
		return mx_errf(err, errlen, -ENOENT,
			       "mail_owner = %s: %s (create it: adduser --system --group "
			       "--no-create-home %s, or set mail_owner to an existing "
			       "unprivileged user)",
			       user, errno ? strerror(errno) : "no such user", user);
	if (pw->pw_uid == 0)
		return mx_errf(err, errlen, -EPERM,
			       "mail_owner = %s: user has privileged user ID 0 (as Postfix, mxgate "
			       "refuses a root mail_owner)",
			       user);
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	if (geteuid() != 0)
		return 0; /* not root: nothing to drop (the caller says so) */
	p->active = true;
	int n = PRIVDROP_MAX_GROUPS;
	if (getgrouplist(user, pw->pw_gid, p->groups, &n) < 0)
		return mx_errf(err, errlen, -E2BIG, "mail_owner = %s: more than %d groups", user,
			       PRIVDROP_MAX_GROUPS);
	p->ngroups = n;
	return 0;
}

/* nftw() takes no context: the walk's owner and outcome, one walk at a time (start-up,
 * the main thread). */
static struct {
	uid_t uid;
	gid_t gid;
	int max_depth;
	long changed;
	int err;
	char path[PATH_MAX];
} privdrop_walk;

static int privdrop_walk_one(const char *path, const struct stat *st, int type,
			     struct FTW *ftw)
{
	/* at the depth limit, a directory is changed but not entered */
	int next = type == FTW_D && privdrop_walk.max_depth >= 0 &&
			   ftw->level >= privdrop_walk.max_depth
		       ? FTW_SKIP_SUBTREE
		       : FTW_CONTINUE;
	if (st->st_uid == privdrop_walk.uid && st->st_gid == privdrop_walk.gid)
		return next;
	if (lchown(path, privdrop_walk.uid, privdrop_walk.gid) != 0) {
		privdrop_walk.err = -errno;
		snprintf(privdrop_walk.path, sizeof(privdrop_walk.path), "%s", path);
		return FTW_STOP;
	}
	privdrop_walk.changed++;
	return next;
}

/* Components of an absolute path: "/" 0, "/var" 1, "/var/spool/" 2. */
static int privdrop_components(const char *path)
{
	int n = 0;
	for (const char *p = path; *p; p++)
		if (*p != '/' && (p == path || p[-1] == '/'))
			n++;
	return n;
}

long privdrop_own_tree(const char *path, uid_t uid, gid_t gid, int max_depth, char *err,
		       size_t errlen)
{
	struct stat st;
	if (path[0] != '/' || privdrop_components(path) < 2)
		return mx_errf(err, errlen, -EPERM,
			       "%s: will not give a system directory to the gateway's user (name a "
			       "directory of its own)",
			       path);
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : mx_errf(err, errlen, -errno, "%s: %s", path,
						     strerror(errno));
	privdrop_walk.uid = uid;
	privdrop_walk.gid = gid;
	privdrop_walk.max_depth = max_depth;
	privdrop_walk.changed = 0;
	privdrop_walk.err = 0;
	/* FTW_PHYS: a link is changed itself, never what it points at; FTW_MOUNT: a file
	 * system mounted below is someone else's; FTW_ACTIONRETVAL: the depth limit skips
	 * subtrees. 64 descriptors at most. */
	int rc = nftw(path, privdrop_walk_one, 64, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL);
	if (privdrop_walk.err)
		return mx_errf(err, errlen, privdrop_walk.err, "chown %s: %s", privdrop_walk.path,
			       strerror(-privdrop_walk.err));
	if (rc < 0)
		return mx_errf(err, errlen, -errno, "%s: %s", path, strerror(errno));
	return privdrop_walk.changed;
}

int privdrop_chroot_has(const char *dir, const char *path)
{
	char buf[2 * PATH_MAX];
	snprintf(buf, sizeof(buf), "%s/%s", dir, path);
	return access(buf, F_OK) == 0 ? 0 : -errno;
}

static int privdrop_capset(uint64_t keep)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	memset(d, 0, sizeof(d));
	for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
		d[i].effective = (uint32_t)(keep >> (32 * i));
		d[i].permitted = (uint32_t)(keep >> (32 * i));
	}
	return syscall(SYS_capset, &h, d) == 0 ? 0 : -errno;
}

int privdrop_apply(const struct privdrop_plan *p, uint64_t keep, char *err, size_t errlen)
{
	if (!p->active)
		return 0;
	if (p->chroot_dir[0] && (chroot(p->chroot_dir) != 0 || chdir("/") != 0))
		return mx_errf(err, errlen, -errno, "mxgate_chroot = %s: %s", p->chroot_dir,
			       strerror(errno));
	/* The bounding set first (it needs CAP_SETPCAP, which goes with it): nothing outside
	 * `keep` can come back, not even through an execve() of a set-user-ID program.
	 * EINVAL past the kernel's last capability ends the loop. */
	for (int cap = 0; cap < 64; cap++) {
		if (keep & PRIVDROP_CAP(cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			if (errno == EINVAL)
				break;
			return mx_errf(err, errlen, -errno, "drop capability %d from the bounding "
				       "set: %s", cap, strerror(errno));
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		return mx_errf(err, errlen, -errno, "clear the ambient capabilities: %s",
			       strerror(errno));
	/* Keep the permitted set across the change of user in this thread (only: the flag
	 * is per thread, so every other thread loses all of its capabilities). */
	if (keep && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
		return mx_errf(err, errlen, -errno, "PR_SET_KEEPCAPS: %s", strerror(errno));
	/* glibc runs these in every thread of the process (its setxid broadcast), so no
	 * thread stays root. Groups first: they need the privilege about to go. */
	if (setgroups((size_t)p->ngroups, p->groups) != 0 ||
	    setresgid(p->gid, p->gid, p->gid) != 0 || setresuid(p->uid, p->uid, p->uid) != 0)
		return mx_errf(err, errlen, -errno, "become %s (uid %u gid %u): %s", p->user,
			       (unsigned)p->uid, (unsigned)p->gid, strerror(errno));
	int rc = privdrop_capset(keep);
	if (rc < 0)
		return mx_errf(err, errlen, rc, "capset: %s", strerror(-rc));
	if (keep)
		prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	/* A change of user makes the process undumpable, which also hides /proc/PID from its
	 * own user and stops LeakSanitizer's and a debugger's ptrace: the user may see what
	 * it runs as. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	/* The drop must hold: if root can be had back, it did not happen. */
	uid_t r, e, s;
	if (setuid(0) == 0 || getresuid(&r, &e, &s) != 0 || r != p->uid || e != p->uid ||
	    s != p->uid)
		return mx_errf(err, errlen, -EPERM, "the change of user to %s did not hold",
			       p->user);
	return 0;
}

void privdrop_caps_text(uint64_t caps, char *buf, size_t len)
{
	static const char *const names[] = {
		[CAP_CHOWN] = "cap_chown",
		[CAP_DAC_OVERRIDE] = "cap_dac_override",
		[CAP_NET_BIND_SERVICE] = "cap_net_bind_service",
		[CAP_NET_ADMIN] = "cap_net_admin",
		[CAP_NET_RAW] = "cap_net_raw",
		[CAP_IPC_LOCK] = "cap_ipc_lock",
		[CAP_SYS_ADMIN] = "cap_sys_admin",
		[CAP_SYS_RAWIO] = "cap_sys_rawio",
	};
	size_t n = 0;
	if (len)
		buf[0] = '\0';
	if (!caps) {
		snprintf(buf, len, "none");
		return;
	}
	for (int cap = 0; cap < 64; cap++) {
		if (!(caps & PRIVDROP_CAP(cap)))
			continue;
		const char *name = (size_t)cap < sizeof(names) / sizeof(names[0]) ? names[cap]
										: NULL;
		int w = name ? snprintf(buf + n, n < len ? len - n : 0, "%s%s", n ? "," : "", name)
			     : snprintf(buf + n, n < len ? len - n : 0, "%scap_%d", n ? "," : "",
					cap);
		if (w > 0)
			n += (size_t)w;
	}
}
