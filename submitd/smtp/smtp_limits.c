/*
 * Session accounting shared by all workers (smtp_limits.h), under one lock.
 */
#include "smtp_limits.h"

#include "log.h"
#include "netaddr.h"
#include "util.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct ip_count {
    char ip[64];
    int n;
};

static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ip_count *ip_table;
static size_t ip_table_size;
static int sessions_total;
static int max_total, max_per_ip;
/* Sessions holding a spool file, and how many may (fd_budget in lib/fdlimit.c):
 * counted without the lock, since DATA is not tied to any client address. */
static int data_total, data_max = INT_MAX;

static uint32_t id_prefix;   /* random per process, set before threads start */
static uint32_t id_counter;

int smtp_limits_init(int max_sessions, int max_sessions_per_ip)
{
    max_total = max_sessions;
    max_per_ip = max_sessions_per_ip;
    ip_table_size = (size_t)max_sessions * 2 + 16;
    ip_table = calloc(ip_table_size, sizeof(*ip_table));
    if (getrandom(&id_prefix, sizeof(id_prefix), 0) != sizeof(id_prefix))
        id_prefix = (uint32_t)getpid();
    return ip_table == NULL ? -1 : 0;
}

void smtp_limits_set_data_max(int max)
{
    data_max = max < 1 ? 1 : max;
}

int smtp_limits_data_enter(void)
{
    int n = __atomic_add_fetch(&data_total, 1, __ATOMIC_RELAXED);

    if (n <= data_max)
        return 1;
    __atomic_sub_fetch(&data_total, 1, __ATOMIC_RELAXED);
    return 0;
}

void smtp_limits_data_leave(void)
{
    __atomic_sub_fetch(&data_total, 1, __ATOMIC_RELAXED);
}

void smtp_limits_set_per_ip(int max_sessions_per_ip)
{
    pthread_mutex_lock(&limits_lock);
    max_per_ip = max_sessions_per_ip;
    pthread_mutex_unlock(&limits_lock);
}

void smtp_limits_free(void)
{
    free(ip_table);
    ip_table = NULL;
}

static size_t ip_hash(const char *ip)
{
    size_t h = 5381;

    for (; *ip; ip++)
        h = h * 33 + (unsigned char)*ip;
    return h % ip_table_size;
}

static struct ip_count *ip_slot(const char *ip, int create)
{
    size_t i = ip_hash(ip);

    /* Open addressing; the table has twice as many slots as sessions allowed, and
     * entries whose count drops to zero stay as tombstones with n == 0. */
    for (size_t k = 0; k < ip_table_size; k++, i = (i + 1) % ip_table_size) {
        if (ip_table[i].ip[0] == '\0') {
            if (!create)
                return NULL;
            str_lcpy(ip_table[i].ip, ip, sizeof(ip_table[i].ip));
            return &ip_table[i];
        }
        if (strcmp(ip_table[i].ip, ip) == 0)
            return &ip_table[i];
    }
    return NULL;
}

/* Drops addresses with no session left (the table is then full of them). */
static void ip_table_compact(void)
{
    size_t live = 0;
    struct ip_count *old = ip_table;

    ip_table = calloc(ip_table_size, sizeof(*ip_table));
    if (ip_table == NULL) {
        ip_table = old;
        return;
    }
    for (size_t i = 0; i < ip_table_size; i++)
        if (old[i].n > 0) {
            /* The new table has room for every live entry of the old one, so a slot
             * is always found; if not, the old table stays, counts intact. */
            struct ip_count *slot = ip_slot(old[i].ip, 1);

            if (slot == NULL) {
                free(ip_table);
                ip_table = old;
                return;
            }
            *slot = old[i];
            live++;
        }
    free(old);
    log_debug("session table compacted: %zu addresses with sessions", live);
}

int smtp_limits_enter(const char *ip, int *why_global)
{
    struct ip_count *c;
    char key[64];
    int ok = 0;

    if (addr_limit_key(ip, key, sizeof(key)) != 0)
        str_lcpy(key, ip, sizeof(key));
    pthread_mutex_lock(&limits_lock);
    *why_global = sessions_total >= max_total;
    if (!*why_global) {
        c = ip_slot(key, 1);
        if (c == NULL) {
            ip_table_compact();
            c = ip_slot(key, 1);
        }
        if (c != NULL && c->n < max_per_ip) {
            c->n++;
            sessions_total++;
            ok = 1;
        }
    }
    pthread_mutex_unlock(&limits_lock);
    return ok;
}

void smtp_limits_leave(const char *ip)
{
    struct ip_count *c;
    char key[64];

    if (addr_limit_key(ip, key, sizeof(key)) != 0)
        str_lcpy(key, ip, sizeof(key));
    pthread_mutex_lock(&limits_lock);
    c = ip_slot(key, 0);
    if (c != NULL && c->n > 0) {
        c->n--;
        sessions_total--;
    }
    pthread_mutex_unlock(&limits_lock);
}

void smtp_session_id(char *out, size_t outlen)
{
    str_fmt(out, outlen, "%08x%08x", id_prefix,
            __atomic_add_fetch(&id_counter, 1, __ATOMIC_RELAXED));
}
