/*
 * The current settings of new sessions (smtp_settings.h), reference-counted under
 * one lock: a reload in worker 0 swaps them while other workers start sessions.
 */
#include "smtp_settings.h"

#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smtp_settings *current_settings;

struct smtp_settings *smtp_settings_get(void)
{
    struct smtp_settings *set;

    pthread_mutex_lock(&settings_lock);
    set = current_settings;
    set->refs++;
    pthread_mutex_unlock(&settings_lock);
    return set;
}

void smtp_settings_put(struct smtp_settings *set)
{
    int left;

    pthread_mutex_lock(&settings_lock);
    left = --set->refs;
    pthread_mutex_unlock(&settings_lock);
    if (left == 0) {
        SSL_CTX_free(set->ssl_ctx);
        free(set);
    }
}

void smtp_settings_install(struct smtp_settings *set)
{
    struct smtp_settings *old;

    if (set != NULL)
        set->refs = 1;
    pthread_mutex_lock(&settings_lock);
    old = current_settings;
    current_settings = set;
    pthread_mutex_unlock(&settings_lock);
    if (old != NULL)
        smtp_settings_put(old);
}

struct smtp_settings *smtp_settings_new(const struct config *c, SSL_CTX *ctx)
{
    struct smtp_settings *set = calloc(1, sizeof(*set));

    if (set == NULL)
        return NULL;
    set->cfg = *c;
    set->ssl_ctx = ctx;
    return set;
}
