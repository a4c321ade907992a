/* `mxgate reload` and `mxgate status`: the operator's side of the gateway's management
 * commands (dataplane/reload.h serves them on the control socket, mgmt/control.h).
 *
 *   mxgate reload [-c FILE] [--canary PERCENT% | --canary-clients LIST]
 *   mxgate reload [-c FILE] --promote | --abort
 *   mxgate status [-c FILE]
 *
 * FILE (default /etc/mxgate/mxgate.cf) says where the control socket is; given
 * explicitly to a reload that builds, it is also the file the gateway reloads from (a
 * candidate configuration for a canary, say). Without -c the gateway reloads the file it
 * runs. */
#include "mgmt/control_cmd.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/config.h"
#include "mgmt/control.h"

#define CONTROL_CMD_MAX_ARGS 16

static int control_cmd_usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s reload [-c FILE] [--canary PERCENT%% | --canary-clients LIST]\n"
		"       %s reload [-c FILE] --promote | --abort\n"
		"       %s status [-c FILE]\n"
		"\n"
		"  reload                 build the configuration again and serve new connections\n"
		"                         with it (open ones keep theirs); a configuration with\n"
		"                         errors changes nothing\n"
		"  --canary 10%%           serve only that share of new connections with it\n"
		"  --canary-clients LIST  ... or the clients in LIST (addresses, CIDRs; commas)\n"
		"  --promote, --abort     the canary serves everything / nothing from now on\n"
		"  status                 the generations in service and what each one did\n"
		"  -c FILE                the configuration (default /etc/mxgate/mxgate.cf): where\n"
		"                         the control socket is, and what reload -c reads\n",
		prog, prog, prog);
	return 2;
}

int mx_control_cmd_main(int argc, char **argv, const char *default_path)
{
	const char *prog = "mxgate";
	if (argc < 1)
		return control_cmd_usage(stderr, prog);
	const char *cmd = argv[0];
	bool reload = strcmp(cmd, "reload") == 0;
	const char *path = NULL;
	bool ends_canary = false; /* --promote, --abort: -c only finds the socket */
	char *req[CONTROL_CMD_MAX_ARGS + 1];
	int nreq = 0;
	req[nreq++] = (char *)cmd;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			control_cmd_usage(stdout, prog);
			return 0;
		}
		if (strcmp(a, "-c") == 0 && i + 1 < argc) {
			path = argv[++i];
			continue;
		}
		bool takes_value = strcmp(a, "--canary") == 0 || strcmp(a, "--canary-clients") == 0;
		bool flag = strcmp(a, "--promote") == 0 || strcmp(a, "--abort") == 0;
		if (!reload || !(takes_value || flag) || (takes_value && i + 1 >= argc) ||
		    nreq + 2 > CONTROL_CMD_MAX_ARGS) {
			fprintf(stderr, "%s %s: unexpected argument '%s'\n", prog, cmd, a);
			return control_cmd_usage(stderr, prog);
		}
		req[nreq++] = (char *)a;
		ends_canary |= flag;
		if (takes_value)
			req[nreq++] = argv[++i];
	}

	/* The configuration names the socket. One with errors is not sent: the gateway would
	 * refuse it for the same reasons, and it keeps what it runs. */
	const char *cfg_path = path ? path : default_path;
	struct mx_config *cfg = NULL;
	int rc = mx_config_load(cfg_path, &cfg, stderr);
	if (rc < 0) {
		mx_config_report_failure(stderr, prog, cfg_path, rc);
		if (reload)
			fprintf(stderr, "%s reload: nothing was sent; the gateway keeps the "
					"configuration it runs\n",
				prog);
		return 1;
	}
	char abs[PATH_MAX];
	if (reload && path && !ends_canary) {
		/* the gateway reads the file itself: give it a path that does not depend on
		 * this shell's working directory */
		if (!realpath(path, abs)) {
			fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
			mx_config_free(cfg);
			return 1;
		}
		req[nreq++] = "-c";
		req[nreq++] = abs;
	}
	req[nreq] = NULL;
	char err[512];
	int status = control_request(cfg->control_socket, nreq, req, stdout, err, sizeof(err));
	if (status < 0) {
		fprintf(stderr, "%s %s: %s%s\n", prog, cmd, err,
			status == -ENOENT || status == -ECONNREFUSED
				? " (is mxgate running with this configuration?)"
				: "");
		status = 1;
	}
	mx_config_free(cfg);
	return status;
}
