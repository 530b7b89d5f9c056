/* The table of smtp sessions known to authz (see authz_grant.h). */
#include "authz_grant.h"

#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static struct {
    struct grant **bucket;
    size_t nbucket;
    size_t count, max;
    struct grant *oldest, *newest;   /* creation order, for eviction */
    uint64_t evicted;
    uint64_t generation;             /* the newest record's gen */
} t;

static size_t hash(const char *s)
{
    size_t h = 5381;

    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h % t.nbucket;
}

int grant_init(size_t max)
{
    grant_free_all();
    t.max = max < 16 ? 16 : max;
    t.nbucket = t.max * 2 + 1;
    t.bucket = calloc(t.nbucket, sizeof(*t.bucket));
    return t.bucket != NULL ? 0 : -1;
}

struct grant *grant_find(const char *session)
{
    if (t.bucket == NULL)
        return NULL;
    for (struct grant *g = t.bucket[hash(session)]; g != NULL; g = g->hnext)
        if (strcmp(g->session, session) == 0)
            return g;
    return NULL;
}

static void unlink_grant(struct grant *g)
{
    struct grant **pp = &t.bucket[hash(g->session)];

    while (*pp != g)
        pp = &(*pp)->hnext;
    *pp = g->hnext;
    if (g->older != NULL)
        g->older->newer = g->newer;
    else
        t.oldest = g->newer;
    if (g->newer != NULL)
        g->newer->older = g->older;
    else
        t.newest = g->older;
    t.count--;
    explicit_bzero(g, sizeof(*g));
    free(g);
}

struct grant *grant_create(const char *session)
{
    struct grant *g;
    size_t h;

    if (t.bucket == NULL || session[0] == '\0' || grant_find(session) != NULL)
        return NULL;
    if (t.count >= t.max) {
        /* Only a misbehaving smtp process fills the table: it does not end the
         * sessions it starts. */
        if (t.evicted++ % 1000 == 0)
            log_warn("more than %zu sessions without an end: forgetting the oldest "
                     "(session=%s); %llu forgotten so far", t.max, t.oldest->session,
                     (unsigned long long)t.evicted);
        unlink_grant(t.oldest);
    }
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    str_lcpy(g->session, session, sizeof(g->session));
    g->gen = ++t.generation;
    h = hash(session);
    g->hnext = t.bucket[h];
    t.bucket[h] = g;
    g->older = t.newest;
    if (t.newest != NULL)
        t.newest->newer = g;
    else
        t.oldest = g;
    t.newest = g;
    t.count++;
    return g;
}

void grant_end(const char *session)
{
    struct grant *g = grant_find(session);

    if (g != NULL)
        unlink_grant(g);
}

size_t grant_count(void)
{
    return t.count;
}

void grant_free_all(void)
{
    while (t.oldest != NULL)
        unlink_grant(t.oldest);
    free(t.bucket);
    memset(&t, 0, sizeof(t));
}
