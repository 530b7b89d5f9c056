/*
 * submit-ca init: a new CA in ca_dir (key, self-signed certificate, an empty CRL),
 * its certificate published in client_ca when that is another file, and the
 * operation recorded in the admin log.
 */
#include "ca_cmd.h"

#include "ca_cert.h"
#include "ca_crl.h"
#include "ca_log.h"
#include "ca_msg.h"
#include "cli_db.h"
#include "db.h"
#include "safedir.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY_SECONDS 86400LL

static int init_refuse_existing(const struct ca_authority *ca)
{
    const char *paths[] = { ca->key_path, ca->cert_path };
    const char *names[] = { "ca.key", "ca.crt" };

    for (int i = 0; i < 2; i++) {
        int e = ca_path_exists(paths[i]);
        if (e < 0)
            return -1;
        if (e > 0) {
            ca_err("CA already exists in %s (%s); refusing to overwrite", ca->dir, names[i]);
            return -1;
        }
    }
    return 0;
}

/*
 * Missing directories above ca_dir are made as root's (0755), ca_dir itself 0711;
 * all of them must be directories only root can change (ca_dir_open).
 */
static int init_make_dir(const struct ca_authority *ca)
{
    char base[NAME_MAX + 1], why[PATH_MAX + 128];
    struct stat sb;
    int parent, fd;

    parent = safedir_open_parent(ca->dir, base, sizeof(base), SAFEDIR_CREATE, why, sizeof(why));
    if (parent < 0) {
        ca_err("ca_dir: %s", why);
        return -1;
    }
    if (mkdirat(parent, base, 0711) != 0 && errno != EEXIST) {
        ca_err("cannot create %s: %s", ca->dir, strerror(errno));
        close(parent);
        return -1;
    }
    close(parent);
    if ((fd = ca_dir_open(ca->dir)) < 0)
        return -1;
    /* Others may pass through (submitd reads crl.pem), but not list it. */
    if (fstat(fd, &sb) == 0 && (sb.st_mode & 044) != 0)
        ca_warn("%s can be listed by other users (mode %03o); the CA key belongs in a "
                "directory of mode 0711 or 0700", ca->dir, (unsigned)(sb.st_mode & 0777));
    close(fd);
    return ca_dir_publish(ca->dir);
}

/*
 * The daemon trusts the certificates in client_ca. When that is another file than the
 * CA's own certificate, a missing file is created with it; an existing one (perhaps a
 * bundle of several CAs) is left alone and only checked.
 */
static int init_publish_client_ca(const struct config *cfg, const struct ca_authority *ca,
                                  BIO *cert_pem)
{
    struct ca_stage st;
    int e;

    if (cfg->client_ca[0] == '\0' || strcmp(cfg->client_ca, ca->cert_path) == 0)
        return 0;
    if ((e = ca_path_exists(cfg->client_ca)) < 0)
        return -1;
    if (e > 0) {
        if ((e = ca_bundle_contains(cfg->client_ca, ca->cert)) < 0)
            return -1;
        if (e == 0)
            ca_warn("client_ca %s does not contain the new CA certificate: add %s to it",
                    cfg->client_ca, ca->cert_path);
        return 0;
    }
    ca_stage_init(&st);
    if (ca_stage_write(&st, cfg->client_ca, 0644, cert_pem) != 0 ||
        ca_stage_commit(&st, 0) != 0) {
        ca_stage_discard(&st);
        return -1;
    }
    printf("client_ca: %s\n", cfg->client_ca);
    return 0;
}

/* The passphrase of a new CA key: the first line of the file, 8 bytes at least. */
static int init_passphrase(const char *path, char *out, size_t outlen)
{
    if (ca_read_password_file(path, out, outlen) != 0)
        return -1;
    if (strlen(out) < 8) {
        OPENSSL_cleanse(out, outlen);
        ca_err("passphrase file %s: at least 8 characters are needed for a CA key", path);
        return -1;
    }
    return 0;
}

int ca_cmd_init(const struct config *cfg, const struct ca_opts *o)
{
    struct ca_authority ca;
    struct ca_cert_spec spec;
    struct ca_cert_info ci;
    struct ca_stage key_st, cert_st;
    BIO *key_pem = NULL, *cert_pem = NULL;
    X509_CRL *crl = NULL;
    struct db *db = NULL;
    char pass[CA_PASSPHRASE_MAX] = "";
    long long now = (long long)time(NULL);
    long long days = o->days > 0 ? o->days : CA_DAYS_ROOT;
    int rc = 1;

    ca_stage_init(&key_st);
    ca_stage_init(&cert_st);
    if (ca_authority_paths(&ca, cfg->ca_dir) != 0 || init_refuse_existing(&ca) != 0)
        return 1;
    if (o->passphrase_file != NULL && init_passphrase(o->passphrase_file, pass, sizeof(pass)) != 0)
        return 1;
    /* The database records the operation: it must be usable before anything is made. */
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL || init_make_dir(&ca) != 0)
        goto out;

    memset(&spec, 0, sizeof(spec));
    spec.kind = CA_CERT_ROOT;
    spec.cn = o->cn != NULL ? o->cn : "submitd CA";
    spec.not_before = now - CA_BACKDATE_SECONDS;
    spec.not_after = now + days * DAY_SECONDS;
    if ((ca.key = ca_key_generate(o->key_type)) == NULL ||
        (ca.cert = ca_cert_build(&spec, ca.key, NULL, ca.key)) == NULL ||
        ca_cert_info(ca.cert, &ci) != 0)
        goto out;
    /* An empty CRL from the start: a verifier that checks CRLs rejects everyone without one. */
    crl = ca_crl_build(ca.cert, ca.key, NULL, 0, (uint64_t)now, now,
                       now + CA_DAYS_CRL * DAY_SECONDS);
    if (crl == NULL || (cert_pem = ca_pem_cert(ca.cert)) == NULL)
        goto out;
    key_pem = pass[0] != '\0' ? ca_pem_key_encrypted(ca.key, pass) : ca_pem_key(ca.key);
    if (key_pem == NULL)
        goto out;

    if (ca_stage_write(&key_st, ca.key_path, 0600, key_pem) != 0 ||
        ca_stage_write(&cert_st, ca.cert_path, 0644, cert_pem) != 0)
        goto out;
    /* Neither file may replace an existing one, even if it appeared since the check. */
    if (ca_stage_commit(&key_st, 0) != 0 || ca_stage_commit(&cert_st, 0) != 0) {
        ca_stage_undo(&cert_st);
        ca_stage_undo(&key_st);
        goto out;
    }
    ca_print_cert(&ci);
    printf("certificate: %s\n", ca.cert_path);
    printf("key: %s\n", ca.key_path);
    if (ca_crl_write(cfg, &ca, crl) != 0) {
        ca_err("the CA was created but its CRL was not written; run \"submit-ca crl\"");
        goto out;
    }
    if (init_publish_client_ca(cfg, &ca, cert_pem) != 0)
        goto out;
    if (ca_log_record(db, "init", ci.serial, NULL, "subject=\"%s\" key=%s days=%lld encrypted=%s",
                      ci.subject, o->key_type == CA_KEY_RSA ? "rsa-3072" : "ec-p256", days,
                      pass[0] != '\0' ? "yes" : "no") != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(pass, sizeof(pass));
    ca_stage_discard(&key_st);
    ca_stage_discard(&cert_st);
    BIO_free(key_pem);
    BIO_free(cert_pem);
    X509_CRL_free(crl);
    ca_authority_free(&ca);
    if (db != NULL)
        db_close(db);
    return rc;
}
