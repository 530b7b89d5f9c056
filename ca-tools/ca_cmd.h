#ifndef SUBMITD_CA_CMD_H
#define SUBMITD_CA_CMD_H

/*
 * The commands of submit-ca, one file each (ca_init.c, ca_server_cert.c, ca_issue.c,
 * ca_renew.c, ca_revoke.c, ca_crl.c, ca_list.c, ca_log.c). The command line is parsed
 * and every argument is validated in submit-ca.c (misuse, exit 2) before a command
 * runs; a command returns the exit status: 0 on success, 1 on failure (after printing
 * one line on stderr).
 */

#include "ca_p12.h"
#include "ca_store.h"
#include "ca_util.h"
#include "ca_x509.h"
#include "config.h"

#define CA_MAX_IPS 16
#define CA_PASSWORD_MAX 1024

/* Defaults, in days. */
#define CA_DAYS_ROOT 3650
#define CA_DAYS_SERVER 825   /* Apple clients refuse longer TLS server certificates */
#define CA_DAYS_CLIENT 365
#define CA_DAYS_CRL 7

/* Certificates start a few minutes in the past so that a client whose clock runs
 * slightly behind still accepts them at once. */
#define CA_BACKDATE_SECONDS 300

struct ca_opts {
    const char *config_path;
    const char *name;                  /* positional: HOSTNAME or USER */
    char serial[CA_SERIAL_HEX_MAX + 1];/* revoke SERIAL, normalized; "" when not given */
    const char *cn;
    long long days;                    /* 0: the command's default */
    enum ca_key_type key_type;
    const char *ips[CA_MAX_IPS];
    int nips;
    const char *email;
    const char *out_dir;               /* NULL: current directory */
    const char *p12_password_file;
    enum ca_p12_format p12_format;
    const char *user;                  /* list/revoke --user */
    long long expiring;                /* list --expiring; -1 when not given */
    int json;
    int reason;                        /* CA_REASON_* */
    const char *passphrase_file;       /* of the CA key; NULL: not encrypted */
    const char *csr;                   /* issue/renew --csr: sign this request */
    int revoke_old;                    /* renew --revoke-old */
    int add;                           /* issue --add: another valid certificate */
    int shared;                        /* issue/renew --shared: an address with two owners */
    int blocked;                       /* list --blocked: certificates submit-admin blocked */
};

int ca_cmd_init(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_server_cert(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_issue(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_renew(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_revoke(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_crl(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_list(const struct config *cfg, const struct ca_opts *o);
int ca_cmd_log(const struct config *cfg, const struct ca_opts *o);

#endif
