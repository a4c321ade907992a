/* The parse hooks of the TLS parameters whose syntax is more than their type's: the
 * protocol lists and the cipher exclusions are checked when the configuration is read, so
 * a typo is reported at its line (mgmt/tls_conf.c applies them). */
#include "mgmt/config_internal.h"
#include "mgmt/tls_conf.h"

int cfg_parse_tls_protocols(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	int lo, hi;
	uint64_t off;
	char err[256];
	if (mx_tls_conf_protocols(pv->value, &lo, &hi, &off, err, sizeof(err)) < 0) {
		mx_param_report(pv, false, "parameter %s: %s", pv->def->name, err);
		return -1;
	}
	return 0;
}

int cfg_parse_tls_exclude(const struct mx_param_value *pv, struct mx_config *cfg)
{
	(void)cfg;
	char buf[1024], err[256];
	if (mx_tls_conf_ciphers("medium", pv->value, buf, sizeof(buf), err, sizeof(err)) < 0) {
		mx_param_report(pv, false, "parameter %s: %s", pv->def->name, err);
		return -1;
	}
	return 0;
}
