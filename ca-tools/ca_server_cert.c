/*
 * submit-ca server-cert HOSTNAME: a new key and certificate for the daemon, written
 * over tls_key and tls_cert, and recorded in the admin log.
 */
#include "ca_cmd.h"

#include "ca_cert.h"
#include "ca_log.h"
#include "ca_msg.h"
#include "cli_db.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int ca_cmd_server_cert(const struct config *cfg, const struct ca_opts *o)
{
    struct ca_authority ca;
    struct ca_cert_spec spec;
    struct ca_cert_info ci;
    struct ca_stage key_st, cert_st;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *key_pem = NULL, *cert_pem = NULL;
    struct db *db;
    char ips[CA_MAX_IPS * 48] = "";
    long long now = (long long)time(NULL);
    int rc = 1;

    ca_stage_init(&key_st);
    ca_stage_init(&cert_st);
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL)
        return 1;
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0) {
        db_close(db);
        return 1;
    }
    for (int i = 0; i < o->nips; i++) {
        size_t n = strlen(ips);
        str_fmt(ips + n, sizeof(ips) - n, "%s%s", i ? "," : "", o->ips[i]);
    }
    memset(&spec, 0, sizeof(spec));
    spec.kind = CA_CERT_SERVER;
    /* A commonName holds at most 64 bytes; a longer name lives in the SAN alone. */
    spec.cn = strlen(o->name) <= CA_CN_MAX ? o->name : NULL;
    spec.dns = o->name;
    spec.ips = o->ips;
    spec.nips = o->nips;
    spec.not_before = now - CA_BACKDATE_SECONDS;
    if (ca_validity_end(&ca, now, o->days > 0 ? o->days : CA_DAYS_SERVER, &spec.not_after) != 0)
        goto out;
    if ((key = ca_key_generate(o->key_type)) == NULL ||
        (cert = ca_cert_build(&spec, key, ca.cert, ca.key)) == NULL ||
        ca_cert_info(cert, &ci) != 0 || (key_pem = ca_pem_key(key)) == NULL ||
        (cert_pem = ca_pem_cert(cert)) == NULL)
        goto out;
    /*
     * Renewal replaces both files. The key goes first: each file is replaced whole, and
     * a reload between the two renames is the only moment they do not match.
     */
    if (ca_stage_write(&key_st, cfg->tls_key, 0600, key_pem) != 0 ||
        ca_stage_write(&cert_st, cfg->tls_cert, 0644, cert_pem) != 0 ||
        ca_stage_commit(&key_st, 1) != 0 || ca_stage_commit(&cert_st, 1) != 0)
        goto out;
    ca_print_cert(&ci);
    printf("certificate: %s\n", cfg->tls_cert);
    printf("key: %s\n", cfg->tls_key);
    /* A running daemon keeps the old pair until told: new sessions get the new one,
     * sessions in progress are not dropped. */
    printf("a running submitd uses it after a reload: systemctl reload submitd "
           "(or kill -HUP the master process)\n");
    if (ca_log_record(db, "server-cert", ci.serial, NULL, "host=%s%s%s not_after=%s", o->name,
                      ips[0] ? " ip=" : "", ips, ci.not_after) != 0)
        goto out;
    rc = 0;
out:
    ca_stage_discard(&key_st);
    ca_stage_discard(&cert_st);
    BIO_free(key_pem);
    BIO_free(cert_pem);
    X509_free(cert);
    EVP_PKEY_free(key);
    ca_authority_free(&ca);
    db_close(db);
    return rc;
}
