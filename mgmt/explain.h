/* `mxgate explain`: evaluate the restriction lists of mxgate.cf for one imagined session
 * (client address and name, HELO, sender, recipients) without sending mail, and print
 * every restriction tried, what it matched, which one decided, and the reply a client
 * would get -- how an administrator tests a policy change before it meets real mail. */
#ifndef MXGATE_MGMT_EXPLAIN_H
#define MXGATE_MGMT_EXPLAIN_H

/* argv[0] is "explain". Exit status: 0 every stage accepted, 1 something was refused,
 * 2 usage or configuration error. */
int mx_explain_main(int argc, char **argv, const char *default_config);

#endif
