/* mxgate-loadgen: the latency histograms themselves in the JSON result, so that a reader
 * can draw a latency CDF (perf/side_by_side.py plots them) instead of having only the
 * three percentiles. Each kind of reply (loadgen_lat_name()) becomes a list of
 * [upper bound in microseconds, count] pairs for its non-empty buckets, in increasing
 * order: a bucket holds the values from the previous pair's bound + 1 up to its own. */
#include <stdbool.h>
#include <stdio.h>

#include "loadgen.h"

void loadgen_hist_json(FILE *f, const struct loadgen_stats *st)
{
	fprintf(f, "  \"latency_hist_us\": {");
	for (unsigned k = 0; k < LOADGEN_LAT_MAX; k++) {
		const struct loadgen_hist *h = &st->lat[k];
		fprintf(f, "%s\n    \"%s\": [", k ? "," : "", loadgen_lat_name(k));
		bool first = true;
		for (unsigned i = 0; i < LOADGEN_HIST_BUCKETS; i++) {
			if (h->b[i] == 0)
				continue;
			/* the last bucket is open-ended: its bound is the largest value seen */
			uint64_t upper = i == LOADGEN_HIST_BUCKETS - 1 ? h->max : loadgen_hist_upper(i);
			fprintf(f, "%s[%llu, %llu]", first ? "" : ", ", (unsigned long long)upper,
				(unsigned long long)h->b[i]);
			first = false;
		}
		fprintf(f, "]");
	}
	fprintf(f, "\n  },\n");
}
