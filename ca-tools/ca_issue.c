/* submit-ca init, server-cert and issue: creating the CA and certificates. */
#include "ca_cmd.h"

#include "ca_log.h"
#include "ca_msg.h"
#include "db.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DAY_SECONDS 86400LL

static void print_cert(const struct ca_cert_info *ci)
{
    printf("serial: %s\n", ci->serial);
    printf("sha256: %s\n", ci->sha256);
    printf("not_after: %s\n", ci->not_after);
}

/*
 * The end of a new certificate's validity: days from now, but never past the CA
 * certificate, which could no longer vouch for it then.
 */
static int validity_end(const struct ca_authority *ca, long long now, long long days,
                        long long *end)
{
    const ASN1_TIME *ca_end = X509_get0_notAfter(ca->cert);
    char when[32];
    long long ca_end_epoch;

    if (ca_time_iso(ca_end, when, sizeof(when), &ca_end_epoch) != 0)
        return -1;
    *end = now + days * DAY_SECONDS;
    if (ca_end_epoch <= now + DAY_SECONDS) {
        ca_err("the CA certificate %s expires on %s; create a new CA first", ca->cert_path,
               when);
        return -1;
    }
    if (*end > ca_end_epoch) {
        ca_warn("validity shortened to the end of the CA certificate (%s)", when);
        *end = ca_end_epoch;
    }
    return 0;
}

/* ---- init ------------------------------------------------------------------ */

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
    if ((db = ca_open_db(cfg)) == NULL || init_make_dir(&ca) != 0)
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
    print_cert(&ci);
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

/* ---- server-cert --------------------------------------------------------------- */

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
    if ((db = ca_open_db(cfg)) == NULL)
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
    if (validity_end(&ca, now, o->days > 0 ? o->days : CA_DAYS_SERVER, &spec.not_after) != 0)
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
    print_cert(&ci);
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

/* ---- issue ----------------------------------------------------------------------- */

enum { ISSUE_CRT = 0, ISSUE_KEY, ISSUE_P12, ISSUE_NFILES };

struct issue_files {
    int n;                                /* 1 (certificate only, --csr) or ISSUE_NFILES */
    char path[ISSUE_NFILES][PATH_MAX];
    struct ca_stage st[ISSUE_NFILES];
};

static int issue_paths(struct issue_files *f, const char *dir, const char *user)
{
    static const char *const ext[ISSUE_NFILES] = { "crt", "key", "p12" };
    char name[CA_USER_MAX + 8];

    for (int i = 0; i < f->n; i++) {
        int e;

        if (str_fmt(name, sizeof(name), "%s.%s", user, ext[i]) != 0 ||
            ca_path_join(f->path[i], sizeof(f->path[i]), dir, name) != 0)
            return -1;
        if ((e = ca_path_exists(f->path[i])) < 0)
            return -1;
        if (e > 0) {
            ca_err("%s already exists; refusing to overwrite", f->path[i]);
            return -1;
        }
    }
    return 0;
}

/* 16 characters of about 5.8 bits each. */
static int generate_password(char *out, size_t outlen)
{
    unsigned char rnd[64];
    int rc;

    do {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            ca_err_ssl("cannot draw a random password");
            return -1;
        }
        rc = ca_password_from_bytes(rnd, sizeof(rnd), out, outlen, 16);
    } while (rc != 0);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return 0;
}

/* The user, the sender address it owns, the certificate row and its ca_log row. */
static int issue_rows(struct db *db, const char *dbpath, const char *command,
                      const struct ca_opts *o, const struct ca_cert_info *ci)
{
    struct db_cert row;
    int enabled = 1, r;

    r = db_user_add(db, o->name);
    if (r != DB_OK && r != DB_EXISTS) {
        ca_err("cannot add user %s: %s", o->name, db_errmsg(db));
        return -1;
    }
    if (db_user_get(db, o->name, &enabled) == DB_OK && !enabled)
        ca_warn("user %s is disabled: the certificate is not accepted until the user is "
                "enabled", o->name);
    r = db_sender_add(db, o->name, o->email);
    if (r != DB_OK && r != DB_EXISTS) {
        if (r == DB_NOTFOUND)
            ca_err("%s: cannot add sender %s: no user %s", dbpath, o->email, o->name);
        else
            ca_err("cannot add sender %s to user %s: %s", o->email, o->name, db_errmsg(db));
        return -1;
    }
    memset(&row, 0, sizeof(row));
    if (str_lcpy(row.serial, ci->serial, sizeof(row.serial)) >= sizeof(row.serial) ||
        str_lcpy(row.user, o->name, sizeof(row.user)) >= sizeof(row.user) ||
        str_lcpy(row.subject, ci->subject, sizeof(row.subject)) >= sizeof(row.subject) ||
        str_lcpy(row.issuer, ci->issuer, sizeof(row.issuer)) >= sizeof(row.issuer)) {
        ca_err("certificate %s: a field does not fit the database record", ci->serial);
        return -1;
    }
    str_lcpy(row.sha256, ci->sha256, sizeof(row.sha256));
    row.not_before = ci->not_before_epoch;
    row.not_after = ci->not_after_epoch;
    row.status = CERT_VALID;
    r = db_cert_insert(db, &row);
    if (r == DB_EXISTS) {
        ca_err("%s: a certificate with serial %s is already recorded", dbpath, ci->serial);
        return -1;
    }
    if (r != DB_OK) {
        if (r == DB_NOTFOUND)
            ca_err("%s: cannot record certificate %s: no user %s", dbpath, ci->serial, o->name);
        else
            ca_err("cannot record certificate %s of user %s: %s", ci->serial, o->name,
                   db_errmsg(db));
        return -1;
    }
    if (o->csr != NULL)
        return ca_log_record(db, command, ci->serial, o->name,
                             "email=%s sha256=%s not_after=%s csr=%s", o->email, ci->sha256,
                             ci->not_after, o->csr);
    return ca_log_record(db, command, ci->serial, o->name,
                         "email=%s sha256=%s not_after=%s p12=%s", o->email, ci->sha256,
                         ci->not_after, o->p12_format == CA_P12_MODERN ? "modern" : "legacy");
}

/* All rows or none: a failed issue leaves no new user, sender or log row behind. */
static int issue_record(struct db *db, const char *dbpath, const char *command,
                        const struct ca_opts *o, const struct ca_cert_info *ci)
{
    if (db_begin(db) != DB_OK) {
        ca_err("cannot start a transaction: %s", db_errmsg(db));
        return -1;
    }
    if (issue_rows(db, dbpath, command, o, ci) != 0) {
        db_rollback(db);
        return -1;
    }
    if (db_commit(db) != DB_OK) {
        ca_err("cannot record certificate %s of user %s: %s", ci->serial, o->name,
               db_errmsg(db));
        db_rollback(db);
        return -1;
    }
    return 0;
}

/*
 * Files are written under temporary names, then the certificate is recorded, and
 * only then do the files get their real names: a usable certificate never exists
 * without its database row. If putting the files in place fails after all, the row
 * is marked revoked so that the certificate is refused.
 */
static int issue_commit(struct issue_files *f, struct db *db, const char *dbpath,
                        const char *command, const struct ca_opts *o,
                        const struct ca_cert_info *ci)
{
    if (issue_record(db, dbpath, command, o, ci) != 0)
        return -1;
    for (int i = 0; i < f->n; i++) {
        if (ca_stage_commit(&f->st[i], 0) == 0)
            continue;
        /* Stage i too: it may have been renamed before its directory failed to sync. */
        for (int j = 0; j <= i; j++)
            ca_stage_undo(&f->st[j]);
        if (ca_revoke_serial(db, dbpath, ci->serial, o->name,
                             CA_REASON_CESSATION_OF_OPERATION) == 0)
            ca_err("certificate %s of user %s was not delivered and has been revoked",
                   ci->serial, o->name);
        else
            ca_err("certificate %s of user %s was not delivered and could not be revoked; "
                   "revoke it with \"submit-ca revoke %s\"", ci->serial, o->name, ci->serial);
        return -1;
    }
    return 0;
}

static int issue_prepare_dir(const char *dir)
{
    struct stat sb;

    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) {
            ca_err("%s is not a directory", dir);
            return -1;
        }
        return 0;
    }
    if (errno != ENOENT || mkdir_p(dir, 0700) != 0) {
        ca_err("cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* What issue writes, in memory: PEM certificate, and unless --csr, key and PKCS#12. */
static int issue_encode(const struct ca_opts *o, EVP_PKEY *key, X509 *cert, X509 *ca_cert,
                        const char *password, BIO *pem[ISSUE_NFILES])
{
    char friendly[CA_USER_MAX + CA_EMAIL_MAX + 8];

    if ((pem[ISSUE_CRT] = ca_pem_cert(cert)) == NULL)
        return -1;
    if (o->csr != NULL)
        return 0;
    if (str_fmt(friendly, sizeof(friendly), "%s <%s>", o->name, o->email) != 0) {
        ca_err("user %s: name and address too long", o->name);
        return -1;
    }
    if ((pem[ISSUE_KEY] = ca_pem_key(key)) == NULL ||
        (pem[ISSUE_P12] = ca_p12_encode(key, cert, ca_cert, friendly, password,
                                        o->p12_format)) == NULL)
        return -1;
    return 0;
}

static void issue_print(const struct ca_opts *o, const struct issue_files *files,
                        const struct ca_cert_info *ci, const char *password)
{
    print_cert(ci);
    printf("certificate: %s\n", files->path[ISSUE_CRT]);
    if (o->csr != NULL) {
        printf("give_user: %s (the key never left the user's device)\n",
               files->path[ISSUE_CRT]);
        return;
    }
    printf("key: %s\n", files->path[ISSUE_KEY]);
    printf("pkcs12: %s\n", files->path[ISSUE_P12]);
    printf("pkcs12_format: %s\n", ca_p12_format_describe(o->p12_format));
    if (password != NULL)
        printf("p12_password: %s\n", password);
    printf("give_user: %s, and its password by another channel\n", files->path[ISSUE_P12]);
}

/*
 * Everything of issue once the database is open and the CA loaded (shared with
 * renew). serial_out, when not NULL, receives the new certificate's serial.
 */
static int issue_with_db(const struct config *cfg, const struct ca_opts *o, struct db *db,
                         const struct ca_authority *ca, const char *command, char *serial_out,
                         size_t serial_outlen)
{
    const char *dir = o->out_dir != NULL ? o->out_dir : ".";
    struct issue_files files;
    struct ca_cert_spec spec;
    struct ca_cert_info ci;
    char password[CA_PASSWORD_MAX] = "";
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *pem[ISSUE_NFILES] = { NULL, NULL, NULL };
    static const mode_t modes[ISSUE_NFILES] = { 0644, 0600, 0600 };
    long long now = (long long)time(NULL);
    int rc = 1, generated = 0;

    memset(&files, 0, sizeof(files));
    files.n = o->csr != NULL ? 1 : ISSUE_NFILES;
    for (int i = 0; i < ISSUE_NFILES; i++)
        ca_stage_init(&files.st[i]);
    if (issue_prepare_dir(dir) != 0 || issue_paths(&files, dir, o->name) != 0)
        return 1;
    if (o->csr != NULL) {
        if ((key = ca_csr_public_key(o->csr)) == NULL)
            return 1;
    } else if (o->p12_password_file != NULL) {
        if (ca_read_password_file(o->p12_password_file, password, sizeof(password)) != 0)
            return 1;
    } else {
        if (generate_password(password, sizeof(password)) != 0)
            return 1;
        generated = 1;
    }

    memset(&spec, 0, sizeof(spec));
    spec.kind = CA_CERT_CLIENT;
    spec.cn = o->name;
    spec.email = o->email;
    spec.not_before = now - CA_BACKDATE_SECONDS;
    if (validity_end(ca, now, o->days > 0 ? o->days : CA_DAYS_CLIENT, &spec.not_after) != 0)
        goto out;
    if (key == NULL && (key = ca_key_generate(CA_KEY_EC)) == NULL)
        goto out;
    if ((cert = ca_cert_build(&spec, key, ca->cert, ca->key)) == NULL ||
        ca_cert_info(cert, &ci) != 0 || issue_encode(o, key, cert, ca->cert, password, pem) != 0)
        goto out;
    for (int i = 0; i < files.n; i++)
        if (ca_stage_write(&files.st[i], files.path[i], modes[i], pem[i]) != 0)
            goto out;
    if (issue_commit(&files, db, cfg->database, command, o, &ci) != 0)
        goto out;
    issue_print(o, &files, &ci, generated ? password : NULL);
    if (serial_out != NULL)
        str_lcpy(serial_out, ci.serial, serial_outlen);
    rc = 0;
out:
    for (int i = 0; i < ISSUE_NFILES; i++) {
        ca_stage_discard(&files.st[i]);
        BIO_free(pem[i]);
    }
    OPENSSL_cleanse(password, sizeof(password));
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

struct db *ca_open_db(const struct config *cfg)
{
    char err[512];
    struct db *db = db_open(cfg->database, err, sizeof(err));

    if (db == NULL)
        ca_err("%s", err);
    return db;
}

struct valid_cert {
    int64_t now;
    struct db_cert first;    /* the valid certificate that expires first */
    int count;
};

static int valid_cert_cb(void *arg, const struct db_cert *c)
{
    struct valid_cert *vc = arg;

    if (!db_cert_in_force(c, vc->now))
        return 0;
    if (vc->count++ == 0)
        vc->first = *c;
    return 0;
}

/*
 * No silent surprises: a second valid certificate for a user, or an address that
 * another user owns, must be asked for (--add, --shared). Returns 0 when issue may
 * go on, else 1 after naming what is in the way.
 */
static int issue_check(struct db *db, const struct ca_opts *o, const char *command)
{
    static struct valid_cert vc;
    char owner[128], expires[DB_TIME_TEXT_LEN];
    int r;

    memset(&vc, 0, sizeof(vc));
    vc.now = (int64_t)time(NULL);
    if (!o->add && strcmp(command, "issue") == 0) {
        if (db_cert_list(db, o->name, DB_TIME_NONE, valid_cert_cb, &vc) != DB_OK) {
            ca_err("cannot read the certificates of user %s: %s", o->name, db_errmsg(db));
            return 1;
        }
        if (vc.count > 0) {
            ca_err("user %s already has %d valid certificate%s: %s (expires %s); use "
                   "\"submit-ca renew %s\", or issue --add for another one", o->name, vc.count,
                   vc.count == 1 ? "" : "s", vc.first.serial,
                   db_time_text(vc.first.not_after, expires, sizeof(expires)), o->name);
            return 1;
        }
    }
    if (o->shared || o->email == NULL)
        return 0;
    r = db_sender_other_owner(db, o->name, o->email, owner, sizeof(owner));
    if (r == DB_NOTFOUND)
        return 0;
    if (r == DB_OK)
        ca_err("%s: %s is owned by user %s; add --shared to give it to %s as well", command,
               o->email, owner, o->name);
    else
        ca_err("cannot read the owners of %s: %s", o->email, db_errmsg(db));
    return 1;
}

int ca_cmd_issue(const struct config *cfg, const struct ca_opts *o)
{
    struct ca_authority ca;
    struct db *db;
    int rc;

    if ((db = ca_open_db(cfg)) == NULL)
        return 1;
    if (issue_check(db, o, "issue") != 0) {
        db_close(db);
        return 1;
    }
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0) {
        db_close(db);
        return 1;
    }
    rc = issue_with_db(cfg, o, db, &ca, "issue", NULL, 0);
    ca_authority_free(&ca);
    db_close(db);
    return rc;
}

/* ---- renew ------------------------------------------------------------------------ */

struct renew_mailbox {
    char addr[CA_EMAIL_MAX + 1];
    int count;
};

/* The user's mailbox addresses ("@domain" entries name no mailbox). */
static int renew_mailbox_cb(void *arg, const char *address)
{
    struct renew_mailbox *m = arg;

    if (address[0] == '@')
        return 0;
    if (m->count++ == 0)
        str_lcpy(m->addr, address, sizeof(m->addr));
    return 0;
}

/* The previous certificates of the user that still work: printed, or collected. */
struct renew_cert {
    char serial[CA_SERIAL_HEX_MAX + 1];
    char not_after[32];
};

struct renew_previous {
    const char *new_serial;
    int64_t now;
    struct renew_cert *certs;
    size_t n, cap;
    size_t total;            /* certificates of the user, in any state */
    int failed;
};

static int renew_previous_cb(void *arg, const struct db_cert *c)
{
    struct renew_previous *p = arg;

    p->total++;
    if (p->new_serial == NULL || !db_cert_in_force(c, p->now) ||
        strcmp(c->serial, p->new_serial) == 0)
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void *v;

        if (cap > 100000 || (v = realloc(p->certs, cap * sizeof(*p->certs))) == NULL) {
            ca_err("user %s: too many certificates", c->user);
            p->failed = 1;
            return 1;
        }
        p->certs = v;
        p->cap = cap;
    }
    str_lcpy(p->certs[p->n].serial, c->serial, sizeof(p->certs[0].serial));
    db_time_text(c->not_after, p->certs[p->n].not_after, sizeof(p->certs[0].not_after));
    p->n++;
    return 0;
}

/* The address for the new certificate: --email, or the user's only mailbox. */
static int renew_address(const struct config *cfg, struct db *db, const char *user,
                         struct renew_mailbox *mb)
{
    memset(mb, 0, sizeof(*mb));
    if (db_sender_list(db, user, renew_mailbox_cb, mb) != DB_OK) {
        ca_err("cannot list the addresses of user %s: %s", user, db_errmsg(db));
        return -1;
    }
    if (mb->count != 1) {
        ca_err("%s: user %s owns %d mailbox addresses; choose one with --email",
               cfg->database, user, mb->count);
        return -1;
    }
    if (!ca_valid_email(mb->addr)) {
        ca_err("%s: address %s of user %s cannot go into a certificate; choose one with "
               "--email", cfg->database, mb->addr, user);
        return -1;
    }
    return 0;
}

/*
 * A new key and certificate for a user who already has one, for the same address.
 * The previous certificates stay valid until they expire, so renewing never locks a
 * user out; with --revoke-old they are revoked (superseded) at once and the CRL is
 * rewritten.
 */
int ca_cmd_renew(const struct config *cfg, const struct ca_opts *o)
{
    struct renew_mailbox mb;
    struct renew_previous prev;
    struct ca_authority ca;
    struct ca_opts ro = *o;
    char serial[CA_SERIAL_HEX_MAX + 1];
    struct db *db;
    int r, rc = 1, loaded = 0;

    memset(&prev, 0, sizeof(prev));
    if ((db = ca_open_db(cfg)) == NULL)
        return 1;
    r = db_user_get(db, o->name, NULL);
    if (r == DB_NOTFOUND) {
        ca_err("%s: no user %s; use \"submit-ca issue\"", cfg->database, o->name);
        goto out;
    }
    if (r != DB_OK || db_cert_list(db, o->name, DB_TIME_NONE, renew_previous_cb, &prev) != DB_OK) {
        ca_err("cannot look up user %s: %s", o->name, db_errmsg(db));
        goto out;
    }
    if (prev.total == 0) {
        ca_err("%s: user %s has no certificate to renew; use \"submit-ca issue\"",
               cfg->database, o->name);
        goto out;
    }
    if (ro.email == NULL) {
        if (renew_address(cfg, db, o->name, &mb) != 0)
            goto out;
        ro.email = mb.addr;
    } else if (issue_check(db, o, "renew") != 0) {
        goto out;
    }
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0)
        goto out;
    loaded = 1;
    if (issue_with_db(cfg, &ro, db, &ca, "renew", serial, sizeof(serial)) != 0)
        goto out;

    memset(&prev, 0, sizeof(prev));
    prev.new_serial = serial;
    prev.now = (int64_t)time(NULL);
    if (db_cert_list(db, o->name, DB_TIME_NONE, renew_previous_cb, &prev) != DB_OK || prev.failed) {
        ca_err("cannot list the previous certificates of user %s: %s", o->name,
               db_errmsg(db));
        goto out;
    }
    for (size_t i = 0; i < prev.n; i++) {
        if (!o->revoke_old) {
            printf("previous: %s not_after=%s\n", prev.certs[i].serial, prev.certs[i].not_after);
            continue;
        }
        if (ca_revoke_serial(db, cfg->database, prev.certs[i].serial, o->name,
                             CA_REASON_SUPERSEDED) != 0)
            goto out;
    }
    if (o->revoke_old && prev.n > 0 && ca_crl_publish(cfg, &ca, db, CA_DAYS_CRL) != 0) {
        ca_err("revoked in %s, but the CRL was not rewritten; run \"submit-ca crl\"",
               cfg->database);
        goto out;
    }
    rc = 0;
out:
    free(prev.certs);
    if (loaded)
        ca_authority_free(&ca);
    db_close(db);
    return rc;
}
