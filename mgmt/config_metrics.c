/* mxgate_metrics_listen: the Prometheus endpoint's address (mgmt/metrics_http.h). */
#include <stdlib.h>

#include "mgmt/config.h"
#include "mgmt/config_internal.h"
#include "mxgate/list.h"

int cfg_parse_metrics_listen(const struct mx_param_value *pv, struct mx_config *cfg)
{
	cfg->metrics_listen_set = false;
	/* the same syntax and checks as mxgate_listen, parsed into a scratch configuration
	 * so that mxgate_listen's own addresses stay as they are */
	struct mx_config *tmp = calloc(1, sizeof(*tmp));
	if (!tmp) {
		mx_param_report(pv, false, "parameter %s: out of memory", pv->def->name);
		return -1;
	}
	const char *cur = pv->value, *word;
	/* empty (only white space or commas): no endpoint */
	if (mx_list_next(&cur, &word) == 0) {
		free(tmp);
		return 0;
	}
	int rc = cfg_parse_listen(pv, tmp);
	if (rc == 0 && tmp->listen_count > 1) {
		mx_param_report(pv, false, "parameter %s: one address only (got %u)",
				pv->def->name, tmp->listen_count);
		rc = -1;
	}
	if (rc == 0 && tmp->listen_count == 1) {
		cfg->metrics_listen = tmp->listen[0];
		cfg->metrics_listen_set = true;
	}
	free(tmp);
	return rc;
}
