/* Error reporting for functions that return a negative errno and explain it in a
 * caller-supplied buffer (`char *err, size_t errlen`), the convention of every parser and
 * file-format reader in the tree. */
#ifndef MXGATE_ERRF_H
#define MXGATE_ERRF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Format the reason into err (when err and errlen allow) and return rc, so a failure
 * reads `return mx_errf(err, errlen, -EINVAL, "bad address '%s'", tok);`. */
static inline int mx_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static inline int mx_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

#endif
