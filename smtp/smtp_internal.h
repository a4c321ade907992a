/* What smtp_received.c needs from a session; not part of the engine's public API. */
#ifndef MXGATE_SMTP_INTERNAL_H
#define MXGATE_SMTP_INTERNAL_H

#include "mxgate/span.h"
#include "smtp/smtp_session.h"

struct smtp_received_info {
	struct mx_span helo;        /* neutered HELO name, empty before HELO */
	const char *client_name;    /* "unknown" without a verified reverse name */
	const char *client_addr;    /* numeric */
	const char *myhostname;
	const char *mail_name;
	const char *protocol;       /* SMTP, ESMTP, UTF8SMTP */
};

void smtp_session_received_info(const struct smtp_session *s, struct smtp_received_info *out);

#endif
