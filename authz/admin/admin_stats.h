#ifndef SUBMITD_ADMIN_STATS_H
#define SUBMITD_ADMIN_STATS_H

/*
 * submit-admin stats [--json|--prometheus] (DESIGN §5): the state of the service at a
 * glance. The queue is read from the spool as queue list reads it; decisions and
 * refusals of the last hour and client certificates expiring within 30 days come
 * from the database; the CRL(s) named by `crl`, the server certificate (tls_cert) and
 * our CA certificate (ca_dir/ca.crt) are read from their files.
 *
 * --prometheus prints the text exposition format (one HELP and TYPE line per metric
 * family, names starting submitd_), for node-exporter's textfile directory.
 *
 * Whatever can be read is printed; each part that cannot is named on stderr and the
 * exit status is then 1. argv[0] is the first word after "stats". Exit status.
 */
int admin_stats(const char *config_path, const char *sub, int argc, char **argv);

/* The usage of stats, printed after a misuse of it. */
extern const char admin_stats_usage[];

#endif
