/* mxgate-loadgen's --also specs: "KIND:src=RANGE[,concurrency=N][,rate=R]", every value
 * bounded, every error with its reason. Apart from the rest of loadgen_mix.c so that the
 * option parser (and its fuzz harness) need nothing but this and loadgen_args.c. */
#include "loadgen.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *loadgen_class_kind_name(enum loadgen_class_kind k)
{
	switch (k) {
	case LOADGEN_CLASS_PREGREET:
		return "pregreet";
	case LOADGEN_CLASS_LISTED:
		return "listed";
	case LOADGEN_CLASS_SYNFLOOD:
		return "synflood";
	case LOADGEN_CLASS_MAX:
		break;
	}
	return "?";
}

static int spec_bad(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return -EINVAL;
}

/* One "key=value" of a spec (bounded copy already made by the caller). */
static int spec_item(struct loadgen_class_spec *out, char *item, bool *have_src, char *err,
		     size_t errlen)
{
	char *eq = strchr(item, '=');
	if (!eq || eq == item || !eq[1])
		return spec_bad(err, errlen, "expected key=value");
	*eq = 0;
	const char *v = eq + 1;
	char *end;
	if (strcmp(item, "src") == 0) {
		if (loadgen_args_range(v, &out->src_base, &out->src_count) < 0)
			return spec_bad(err, errlen, "src: not A.B.C.D/N, A-B or one address");
		*have_src = true;
		return 0;
	}
	if (strcmp(item, "concurrency") == 0) {
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		if (errno || *end || *v == '-' || n < 1 || n > (1u << 24))
			return spec_bad(err, errlen, "concurrency: not 1..16777216");
		out->concurrency = (uint32_t)n;
		return 0;
	}
	if (strcmp(item, "rate") == 0) {
		errno = 0;
		double r = strtod(v, &end);
		if (errno || *end || !isfinite(r) || r < 0 || r > 1e9)
			return spec_bad(err, errlen, "rate: not 0..1e9 per second");
		out->rate = r;
		return 0;
	}
	return spec_bad(err, errlen, "unknown key (src, concurrency, rate)");
}

int loadgen_class_spec_parse(const char *s, struct loadgen_class_spec *out, char *err,
			     size_t errlen)
{
	char buf[LOADGEN_NAME_MAX];
	size_t n = strlen(s);
	if (n == 0 || n >= sizeof(buf))
		return spec_bad(err, errlen, "empty or too long");
	memcpy(buf, s, n + 1);
	memset(out, 0, sizeof(*out));
	char *colon = strchr(buf, ':');
	if (!colon)
		return spec_bad(err, errlen, "expected KIND:src=RANGE[,...]");
	*colon = 0;
	enum loadgen_class_kind k;
	for (k = 0; k < LOADGEN_CLASS_MAX; k++)
		if (strcmp(buf, loadgen_class_kind_name(k)) == 0)
			break;
	if (k == LOADGEN_CLASS_MAX)
		return spec_bad(err, errlen, "kind is not pregreet, listed or synflood");
	out->kind = k;
	out->concurrency = 1000;
	bool have_src = false;
	char *item = colon + 1;
	for (;;) {
		char *comma = strchr(item, ',');
		if (comma)
			*comma = 0;
		int rc = spec_item(out, item, &have_src, err, errlen);
		if (rc < 0)
			return rc;
		if (!comma)
			break;
		item = comma + 1;
	}
	if (!have_src)
		return spec_bad(err, errlen, "src= is required");
	if (k == LOADGEN_CLASS_SYNFLOOD && out->rate <= 0)
		return spec_bad(err, errlen, "synflood needs rate= (SYNs per second)");
	return 0;
}
