#ifndef SUBMITD_QUEUE_DSN_H
#define SUBMITD_QUEUE_DSN_H

struct spool_msg;

/*
 * Builds the delivery status notification (RFC 3464) for the recipients of orig that
 * are in state SPOOL_RCPT_FAILED: a new queue message from the null sender to
 * orig->from, multipart/report; report-type=delivery-status, with a part for people,
 * a message/delivery-status part naming each failed recipient with the upstream's
 * reply, and the original header section (text/rfc822-headers).
 *
 * A recipient whose reply is not a 5xx reply failed because its time in the queue ran
 * out (queue_lifetime): it is reported with status 4.4.7 and its last reply.
 * hostname is this server (Reporting-MTA), upstream the host that answered
 * (Remote-MTA; may be empty). Returns 0, or -1 when out of memory.
 */
int dsn_build(const struct spool_msg *orig, const char *hostname, const char *upstream,
              long long now, struct spool_msg *dsn);

#endif
