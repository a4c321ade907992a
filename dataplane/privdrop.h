/* Unprivileged running: mail_owner and mxgate_chroot (issue 16).
 *
 * The gateway starts as root, binds its listeners (kernel transport) or initialises the
 * EAL and its ports (dpdk transport), opens its spools, table store, log and control
 * socket, and then becomes mail_owner, as Postfix's daemons do after master(8) started
 * them: every thread's user and group IDs become the user's (setresuid/setresgid and
 * setgroups, which glibc applies to every thread of the process), and only the
 * capabilities it still needs stay, in the calling thread (which threads started after
 * the drop inherit). What it keeps and why: docs/ARCHITECTURE.md, "Unprivileged running".
 *
 * Before the drop, what the user must write is given to it (privdrop_own_tree()), as
 * Postfix's `postfix set-permissions` does for a queue made by an earlier root-only
 * version. */
#ifndef MXGATE_DATAPLANE_PRIVDROP_H
#define MXGATE_DATAPLANE_PRIVDROP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <linux/capability.h> /* CAP_NET_BIND_SERVICE... for PRIVDROP_CAP() */

#define PRIVDROP_MAX_GROUPS 64

/* Capability numbers as <linux/capability.h> has them, as a bit mask. */
#define PRIVDROP_CAP(n) (UINT64_C(1) << (n))

/* Who to become and where to chroot, resolved while the user database is still
 * reachable (before a chroot). */
struct privdrop_plan {
	bool active;      /* started as root: the drop happens */
	char user[33];
	uid_t uid;
	gid_t gid;
	gid_t groups[PRIVDROP_MAX_GROUPS]; /* the user's supplementary groups, gid first */
	int ngroups;
	char chroot_dir[PATH_MAX]; /* "" = no chroot */
};

/* Look user up (getpwnam, getgrouplist) and fill p. When the process is not root, p->active
 * is false and nothing is looked up beyond the user (0: nothing to do). Returns 0, or a
 * negative errno with err: -ENOENT the user does not exist, -EPERM the user is root (as
 * Postfix refuses a privileged mail_owner), -ENOTDIR chroot_dir is not a directory. */
int privdrop_plan_make(struct privdrop_plan *p, const char *user, const char *chroot_dir,
		       char *err, size_t errlen);

/* Give path, and what is below it down to max_depth levels (-1: all; 0: path only), to
 * uid:gid where it belongs to someone else (lchown, symbolic links are not followed, other
 * file systems below it are not entered). A missing path is not an error; a path of fewer
 * than two components ("/", "/var") is refused (-EPERM): a directory of the gateway's own
 * is wanted, not a system one. Returns how many entries changed owner, or a negative
 * errno with err. */
long privdrop_own_tree(const char *path, uid_t uid, gid_t gid, int max_depth, char *err,
		       size_t errlen);

/* Whether `path`, as read after a chroot into dir, exists: dir + path is there. 0, or a
 * negative errno. */
int privdrop_chroot_has(const char *dir, const char *path);

/* Become p's user in every thread, chroot first when p says so, and keep exactly `keep`
 * (a PRIVDROP_CAP() mask) in the calling thread's permitted and effective sets and the
 * bounding set; every other thread has none. After it, regaining root fails (checked).
 * Returns 0, or a negative errno with err (the process must then exit: it may be half
 * changed). */
int privdrop_apply(const struct privdrop_plan *p, uint64_t keep, char *err, size_t errlen);

/* "cap_net_bind_service,cap_net_raw" ("none" for 0) into buf. */
void privdrop_caps_text(uint64_t caps, char *buf, size_t len);

#endif
