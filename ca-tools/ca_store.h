#ifndef SUBMITD_CA_STORE_H
#define SUBMITD_CA_STORE_H

/*
 * Files of submit-ca. Every file is first written completely to a temporary name in
 * its final directory and fsynced ("staged"), then put in place in one step:
 * either replacing what is there (rename) or refusing to (no-replace rename, or
 * link). A crash therefore never leaves a half-written key or certificate under
 * its real name, and a refused overwrite leaves the old file untouched.
 */

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum ca_stage_state { CA_STAGE_EMPTY = 0, CA_STAGE_WRITTEN, CA_STAGE_COMMITTED };

struct ca_stage {
    char final[PATH_MAX];
    char tmp[PATH_MAX];
    int state;   /* enum ca_stage_state */
};

void ca_stage_init(struct ca_stage *st);
/* Writes the contents of a memory BIO to a temporary file next to final, with mode. */
int ca_stage_write(struct ca_stage *st, const char *final, mode_t mode, BIO *data);
/*
 * Puts the staged file under its final name. With replace == 0 an existing file is
 * an error ("... already exists; refusing to overwrite") and is left alone.
 */
int ca_stage_commit(struct ca_stage *st, int replace);
/* Removes the temporary file of a stage that was not committed. */
void ca_stage_discard(struct ca_stage *st);
/* Removes the final file of a committed stage again (to roll back a failed step). */
void ca_stage_undo(struct ca_stage *st);

/* 1 when something (even a dangling link) exists at path, 0 when not, -1 on error. */
int ca_path_exists(const char *path);
/* Joins dir and name; -1 (with a message) when it does not fit. */
int ca_path_join(char *out, size_t outlen, const char *dir, const char *name);

/*
 * Reads the first line of a password file (without the line end). Refuses an empty
 * line or one that does not fit into out.
 */
int ca_read_password_file(const char *path, char *out, size_t outlen);

#define CA_PASSPHRASE_MAX 1024

/*
 * The CA directory holds the private key (0600) and what everybody may read: ca.crt
 * and crl.pem (0644). It is made searchable by others (at least --x--x: mode 0711
 * when created by init, so not listable) because submitd reads the CRL again as its
 * unprivileged user whenever the file changes. Prints a line when the mode changed.
 */
int ca_dir_publish(const char *dir);

/*
 * Opens the CA directory, which must be one that only root can change (safedir.h):
 * it holds the CA key, and the daemon trusts the certificate and the CRL in it, so
 * a user who could write it or a directory above it could swap them (or, with a
 * link in its place, have root write and chmod elsewhere). A descriptor, or -1
 * after an error naming the directory at fault.
 */
int ca_dir_open(const char *dir);

/* The CA: ca_dir/ca.crt, ca_dir/ca.key and ca_dir/crl.pem. */
struct ca_authority {
    char dir[PATH_MAX];
    char cert_path[PATH_MAX];
    char key_path[PATH_MAX];
    char crl_path[PATH_MAX];
    X509 *cert;
    EVP_PKEY *key;
};

/* Fills in the paths for ca_dir (trailing slashes removed); loads nothing. */
int ca_authority_paths(struct ca_authority *ca, const char *ca_dir);
/*
 * Loads and checks the CA certificate and key: the directory must pass ca_dir_open(),
 * the certificate must be a CA, the key must match it. Warns when the CA certificate has expired. An encrypted key
 * is opened with the first line of passphrase_file; without one, an admin at a
 * terminal is asked, and otherwise the error says that a passphrase is needed.
 */
int ca_authority_load(struct ca_authority *ca, const char *ca_dir, const char *passphrase_file);
void ca_authority_free(struct ca_authority *ca);

/* 1 when the PEM bundle at path holds cert, 0 when not, -1 when it cannot be read. */
int ca_bundle_contains(const char *path, X509 *cert);

/* The crlNumber of the CRL file at path: 0 and *number when readable, 1 when there
 * is no usable CRL there (missing, unreadable or without a number: warned about). */
int ca_crl_file_number(const char *path, uint64_t *number);

#endif
