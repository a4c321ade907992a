/* The command-line side of the gateway's management commands: `mxgate reload` and `mxgate
 * status` (mgmt/control_cmd.c). */
#ifndef MXGATE_MGMT_CONTROL_CMD_H
#define MXGATE_MGMT_CONTROL_CMD_H

/* argv[0] is "reload" or "status". Returns the exit status: 0, 1 (refused, failed, or the
 * gateway does not answer), 2 (usage). */
int mx_control_cmd_main(int argc, char **argv, const char *default_path);

#endif
