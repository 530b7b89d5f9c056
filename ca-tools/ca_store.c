/* Staged file writes and loading of the CA for submit-ca. */
#include "ca_store.h"

#include "ca_msg.h"
#include "ca_x509.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ca_stage_init(struct ca_stage *st)
{
    memset(st, 0, sizeof(*st));
}

/* The directory part of path ("." when there is none). */
static void dir_of(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        str_lcpy(out, ".", outlen);
    } else if (slash == path) {
        str_lcpy(out, "/", outlen);
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= outlen)
            n = outlen - 1;
        memcpy(out, path, n);
        out[n] = '\0';
    }
}

int ca_stage_write(struct ca_stage *st, const char *final, mode_t mode, BIO *data)
{
    char dir[PATH_MAX];
    const char *base = strrchr(final, '/');
    char *bytes = NULL;
    long len;
    int fd;

    ca_stage_init(st);
    base = base != NULL ? base + 1 : final;
    dir_of(final, dir, sizeof(dir));
    if (str_lcpy(st->final, final, sizeof(st->final)) >= sizeof(st->final) ||
        str_fmt(st->tmp, sizeof(st->tmp), "%s/.%s.XXXXXX", dir, base) != 0) {
        ca_err("%s: path too long", final);
        return -1;
    }
    len = BIO_get_mem_data(data, &bytes);
    if (len < 0 || bytes == NULL) {
        ca_err("%s: nothing to write", final);
        return -1;
    }
    /* mkostemp creates the file 0600 with O_EXCL: a key is never readable by others. */
    fd = mkostemp(st->tmp, O_CLOEXEC);
    if (fd < 0) {
        ca_err("cannot create a temporary file in %s: %s", dir, strerror(errno));
        return -1;
    }
    st->state = CA_STAGE_WRITTEN;
    if ((mode != 0600 && fchmod(fd, mode) != 0) || write_all(fd, bytes, (size_t)len) != 0 ||
        fsync(fd) != 0) {
        ca_err("cannot write %s: %s", st->tmp, strerror(errno));
        close(fd);
        ca_stage_discard(st);
        return -1;
    }
    if (close(fd) != 0) {
        ca_err("cannot write %s: %s", st->tmp, strerror(errno));
        ca_stage_discard(st);
        return -1;
    }
    return 0;
}

/* Renames without replacing; falls back to link+unlink where the kernel or file
 * system has no RENAME_NOREPLACE. Returns 0 or -1 with errno. */
static int rename_noreplace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return -1;
    if (link(from, to) != 0)
        return -1;
    if (unlink(from) != 0) {
        int saved = errno;
        unlink(to);
        errno = saved;
        return -1;
    }
    return 0;
}

int ca_stage_commit(struct ca_stage *st, int replace)
{
    char dir[PATH_MAX];
    int rc;

    if (st->state != CA_STAGE_WRITTEN) {
        ca_err("%s: internal error: nothing staged", st->final);
        return -1;
    }
    rc = replace ? rename(st->tmp, st->final) : rename_noreplace(st->tmp, st->final);
    if (rc != 0) {
        if (errno == EEXIST)
            ca_err("%s already exists; refusing to overwrite", st->final);
        else
            ca_err("cannot rename %s to %s: %s", st->tmp, st->final, strerror(errno));
        return -1;
    }
    st->state = CA_STAGE_COMMITTED;
    dir_of(st->final, dir, sizeof(dir));
    if (fsync_dir(dir) != 0) {
        ca_err("cannot sync directory %s: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

void ca_stage_discard(struct ca_stage *st)
{
    if (st->state == CA_STAGE_WRITTEN && unlink(st->tmp) != 0 && errno != ENOENT)
        ca_warn("cannot remove %s: %s", st->tmp, strerror(errno));
    if (st->state == CA_STAGE_WRITTEN)
        st->state = CA_STAGE_EMPTY;
}

void ca_stage_undo(struct ca_stage *st)
{
    char dir[PATH_MAX];

    if (st->state != CA_STAGE_COMMITTED)
        return;
    if (unlink(st->final) != 0 && errno != ENOENT)
        ca_warn("cannot remove %s: %s", st->final, strerror(errno));
    dir_of(st->final, dir, sizeof(dir));
    fsync_dir(dir);
    st->state = CA_STAGE_EMPTY;
}

int ca_path_exists(const char *path)
{
    struct stat sb;

    if (lstat(path, &sb) == 0)
        return 1;
    if (errno == ENOENT)
        return 0;
    ca_err("cannot examine %s: %s", path, strerror(errno));
    return -1;
}

int ca_path_join(char *out, size_t outlen, const char *dir, const char *name)
{
    if (str_fmt(out, outlen, "%s/%s", dir, name) != 0) {
        ca_err("%s/%s: path too long", dir, name);
        return -1;
    }
    return 0;
}

int ca_read_password_file(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        ca_err("cannot read password file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fgets(out, (int)outlen, f) == NULL) {
        out[0] = '\0';
        if (ferror(f)) {
            ca_err("cannot read password file %s: %s", path, strerror(errno));
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    n = strlen(out);
    if (n == outlen - 1 && out[n - 1] != '\n') {
        OPENSSL_cleanse(out, outlen);
        ca_err("password file %s: first line longer than %zu bytes", path, outlen - 2);
        return -1;
    }
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    if (n == 0) {
        ca_err("password file %s: first line is empty", path);
        return -1;
    }
    return 0;
}

int ca_authority_paths(struct ca_authority *ca, const char *ca_dir)
{
    size_t n;

    memset(ca, 0, sizeof(*ca));
    if (str_lcpy(ca->dir, ca_dir, sizeof(ca->dir)) >= sizeof(ca->dir)) {
        ca_err("ca_dir %s: path too long", ca_dir);
        return -1;
    }
    n = strlen(ca->dir);
    while (n > 1 && ca->dir[n - 1] == '/')
        ca->dir[--n] = '\0';
    if (n == 0) {
        ca_err("ca_dir is empty");
        return -1;
    }
    if (ca_path_join(ca->cert_path, sizeof(ca->cert_path), ca->dir, "ca.crt") != 0 ||
        ca_path_join(ca->key_path, sizeof(ca->key_path), ca->dir, "ca.key") != 0 ||
        ca_path_join(ca->crl_path, sizeof(ca->crl_path), ca->dir, "crl.pem") != 0)
        return -1;
    return 0;
}

static FILE *open_ca_file(const struct ca_authority *ca, const char *path)
{
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        if (errno == ENOENT)
            ca_err("%s: no such file; create the CA in %s with \"submit-ca init\"", path,
                   ca->dir);
        else
            ca_err("cannot read %s: %s", path, strerror(errno));
    }
    return f;
}

/* What the key's password callback was given, and whether it was asked at all. */
struct key_pass {
    const char *pass;      /* NULL: none given */
    int asked;
};

static int key_pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct key_pass *kp = u;
    size_t n;

    (void)rwflag;
    kp->asked = 1;
    if (kp->pass == NULL) {
        /* An admin at a terminal is asked; a script gets a clear error instead. */
        if (isatty(STDIN_FILENO))
            return PEM_def_callback(buf, size, 0, NULL);
        return -1;
    }
    n = strlen(kp->pass);
    if (size < 0 || n > (size_t)size)
        return -1;
    memcpy(buf, kp->pass, n);
    return (int)n;
}

static EVP_PKEY *load_key(const struct ca_authority *ca, FILE *f, const char *passphrase_file)
{
    char pass[CA_PASSPHRASE_MAX];
    struct key_pass kp = { NULL, 0 };
    EVP_PKEY *key;

    if (passphrase_file != NULL) {
        if (ca_read_password_file(passphrase_file, pass, sizeof(pass)) != 0)
            return NULL;
        kp.pass = pass;
    }
    key = PEM_read_PrivateKey(f, NULL, key_pass_cb, &kp);
    if (passphrase_file != NULL)
        OPENSSL_cleanse(pass, sizeof(pass));
    if (key == NULL && kp.asked && passphrase_file == NULL) {
        ERR_clear_error();
        if (isatty(STDIN_FILENO))
            ca_err("%s: wrong passphrase", ca->key_path);
        else
            ca_err("%s is encrypted: give its passphrase with --passphrase-file FILE",
                   ca->key_path);
    } else if (key == NULL && kp.asked) {
        ERR_clear_error();
        ca_err("%s: wrong passphrase (from %s)", ca->key_path, passphrase_file);
    } else if (key == NULL) {
        ca_err_ssl("%s: cannot load the private key", ca->key_path);
    } else if (!kp.asked && passphrase_file != NULL) {
        ca_warn("%s is not encrypted: --passphrase-file %s was not needed", ca->key_path,
                passphrase_file);
    }
    return key;
}

int ca_authority_load(struct ca_authority *ca, const char *ca_dir, const char *passphrase_file)
{
    FILE *f;
    char when[32];
    int dirfd;

    if (ca_authority_paths(ca, ca_dir) != 0 || (dirfd = ca_dir_open(ca->dir)) < 0)
        return -1;
    close(dirfd);
    if ((f = open_ca_file(ca, ca->cert_path)) == NULL)
        return -1;
    ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (ca->cert == NULL) {
        ca_err_ssl("%s: not a PEM certificate", ca->cert_path);
        return -1;
    }
    if ((f = open_ca_file(ca, ca->key_path)) == NULL)
        goto fail;
    ca->key = load_key(ca, f, passphrase_file);
    fclose(f);
    if (ca->key == NULL)
        goto fail;
    if (X509_check_ca(ca->cert) < 1) {
        ca_err("%s is not a CA certificate", ca->cert_path);
        goto fail;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        ca_err("%s does not belong to %s", ca->key_path, ca->cert_path);
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) < 0 &&
        ca_time_iso(X509_get0_notAfter(ca->cert), when, sizeof(when), NULL) == 0)
        ca_warn("the CA certificate %s expired on %s", ca->cert_path, when);
    return 0;
fail:
    ca_authority_free(ca);
    return -1;
}

void ca_authority_free(struct ca_authority *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    ca->cert = NULL;
    ca->key = NULL;
}

int ca_bundle_contains(const char *path, X509 *cert)
{
    FILE *f = fopen(path, "re");
    X509 *x;
    int found = 0;

    if (f == NULL) {
        ca_err("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while (!found && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        found = X509_cmp(x, cert) == 0;
        X509_free(x);
    }
    fclose(f);
    /* The loop ends on "no start line" at the end of the file. */
    ERR_clear_error();
    return found;
}

int ca_crl_file_number(const char *path, uint64_t *number)
{
    FILE *f = fopen(path, "re");
    X509_CRL *crl;
    int rc = 1;

    if (f == NULL) {
        if (errno != ENOENT)
            ca_warn("cannot read the previous CRL %s: %s", path, strerror(errno));
        return 1;
    }
    crl = PEM_read_X509_CRL(f, NULL, NULL, NULL);
    fclose(f);
    if (crl == NULL) {
        ERR_clear_error();
        ca_warn("%s is not a PEM CRL; it will be replaced", path);
        return 1;
    }
    if (ca_crl_number(crl, number) == 0)
        rc = 0;
    else
        ca_warn("%s has no usable crlNumber", path);
    X509_CRL_free(crl);
    return rc;
}

int ca_dir_open(const char *dir)
{
    char why[PATH_MAX + 128];
    int fd = safedir_open_trusted(dir, 0, why, sizeof(why));

    if (fd >= 0)
        return fd;
    if (access(dir, F_OK) != 0 && errno == ENOENT)
        ca_err("ca_dir: %s: %s; create the CA in it with \"submit-ca init\"", dir,
               strerror(ENOENT));
    else
        ca_err("ca_dir: %s", why);
    return -1;
}

/* Changes the mode on the opened directory: a name could be swapped in between. */
int ca_dir_publish(const char *dir)
{
    struct stat sb;
    mode_t mode;
    int fd = ca_dir_open(dir);

    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0) {
        ca_err("cannot examine %s: %s", dir, strerror(errno));
        close(fd);
        return -1;
    }
    mode = sb.st_mode & 07777;
    if ((mode & 0011) == 0011) {
        close(fd);
        return 0;
    }
    if (fchmod(fd, mode | 0011) != 0) {
        ca_warn("cannot make %s searchable (mode %04o): submitd cannot reload the CRL "
                "in it without a restart: %s", dir, (unsigned)(mode | 0011), strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    printf("ca_dir: %s mode %04o (ca.key stays private)\n", dir, (unsigned)(mode | 0011));
    return 0;
}
