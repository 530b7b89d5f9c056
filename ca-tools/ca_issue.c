/*
 * submit-ca issue USER: a client certificate (key, certificate and PKCS#12 file, or
 * only the certificate of a --csr), with its user, sender address, database row and
 * admin-log row. The issuing itself (ca_issue.h) is shared with renew.
 */
#include "ca_cmd.h"

#include "ca_cert.h"
#include "ca_issue.h"
#include "ca_log.h"
#include "ca_msg.h"
#include "ca_revoke.h"
#include "cli_db.h"
#include "db.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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
    ca_print_cert(ci);
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
int ca_issue_with_db(const struct config *cfg, const struct ca_opts *o, struct db *db,
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
    if (ca_validity_end(ca, now, o->days > 0 ? o->days : CA_DAYS_CLIENT, &spec.not_after) != 0)
        goto out;
    if (key == NULL && (key = ca_key_generate(CA_KEY_EC)) == NULL)
        goto out;
    if ((cert = ca_cert_build(&spec, key, ca->cert, ca->key)) == NULL ||
        ca_cert_info(cert, &ci) != 0 || issue_encode(o, key, cert, ca->cert, password, pem) != 0)
        goto out;
    for (int i = 0; i < files.n; i++)
        if (ca_stage_write(&files.st[i], files.path[i], modes[i], pem[i]) != 0)
            goto out;
    if (issue_commit(&files, db, config_database_shown(cfg), command, o, &ci) != 0)
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
int ca_issue_check(struct db *db, const struct ca_opts *o, const char *command)
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

    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL)
        return 1;
    if (ca_issue_check(db, o, "issue") != 0) {
        db_close(db);
        return 1;
    }
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0) {
        db_close(db);
        return 1;
    }
    rc = ca_issue_with_db(cfg, o, db, &ca, "issue", NULL, 0);
    ca_authority_free(&ca);
    db_close(db);
    return rc;
}
