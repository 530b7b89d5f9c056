#ifndef SUBMITD_SMTP_SETTINGS_H
#define SUBMITD_SMTP_SETTINGS_H

#include "config.h"

#include <openssl/ssl.h>

/*
 * What a reload (SIGHUP to the master) may change for new sessions: the settings
 * and the TLS context built from the server certificate, its key and client_ca. A
 * session takes a reference at its start and gives it back when it is freed, so
 * sessions in progress finish on the settings they began with.
 */
struct smtp_settings {
    int refs;                   /* under the lock in smtp_settings.c */
    struct config cfg;
    SSL_CTX *ssl_ctx;
};

/* New settings holding ctx (NULL when memory is short; ctx stays the caller's). */
struct smtp_settings *smtp_settings_new(const struct config *c, SSL_CTX *ctx);
/* Makes set the settings of new sessions (NULL: none, at exit); the previous ones
 * go with their last session. */
void smtp_settings_install(struct smtp_settings *set);
struct smtp_settings *smtp_settings_get(void);
void smtp_settings_put(struct smtp_settings *set);

#endif
