/* Per-address bound on refused-identity audit rows (see authz_refusals.h). */
#include "authz_refusals.h"

#include "util.h"

#include <arpa/inet.h>
#include <string.h>

#define SLOTS 512

struct slot {
    char key[64];              /* the address, or its /64 for IPv6 */
    time_t start;              /* of the current window */
    int rows;                  /* written in this window */
    long long counted;         /* refused beyond REFUSAL_ROWS, not written yet */
    /* The last counted refusal, for the summary row. */
    char session[64], ip[64], event[32], decision[16], reason[256], sha256[65], user[128];
};

static struct slot slots[SLOTS];

static void address_key(const char *ip, char *key, size_t keylen)
{
    struct in6_addr a6;

    if (ip != NULL && inet_pton(AF_INET6, ip, &a6) == 1 && !IN6_IS_ADDR_V4MAPPED(&a6)) {
        char text[INET6_ADDRSTRLEN];

        memset(a6.s6_addr + 8, 0, 8);
        inet_ntop(AF_INET6, &a6, text, sizeof(text));
        str_fmt(key, keylen, "%s/64", text);
    } else {
        str_lcpy(key, ip ? ip : "", keylen);
    }
}

static void copy(char *dst, size_t n, const char *src)
{
    str_lcpy(dst, src ? src : "", n);
}

static void write_summary(struct slot *s, int (*write)(const struct db_audit *row))
{
    struct db_audit row;
    char reason[512];

    if (s->counted == 0)
        return;
    str_fmt(reason, sizeof(reason), "%s; and %lld more refusals from %s within %d s, not "
            "written one by one (this row is the last)", s->reason, s->counted, s->key,
            REFUSAL_WINDOW);
    memset(&row, 0, sizeof(row));
    row.session = s->session;
    row.event = s->event;
    row.decision = s->decision;
    row.reason = reason;
    row.client_ip = s->ip;
    row.user = s->user[0] ? s->user : NULL;
    row.cert_sha256 = s->sha256[0] ? s->sha256 : NULL;
    row.size = -1;
    (void)write(&row);
    s->counted = 0;
}

int refusal_admit(const struct db_audit *row, time_t now,
                  int (*write)(const struct db_audit *row))
{
    char key[64];
    struct slot *s = NULL, *oldest = &slots[0];

    address_key(row->client_ip, key, sizeof(key));
    for (int i = 0; i < SLOTS; i++) {
        if (slots[i].key[0] != '\0' && strcmp(slots[i].key, key) == 0) {
            s = &slots[i];
            break;
        }
        if (slots[i].start < oldest->start)
            oldest = &slots[i];
    }
    if (s == NULL) {
        /* The address seen longest ago gives its place, its count written first. */
        s = oldest;
        write_summary(s, write);
        memset(s, 0, sizeof(*s));
        copy(s->key, sizeof(s->key), key);
        s->start = now;
    }
    if (now - s->start >= REFUSAL_WINDOW) {
        write_summary(s, write);
        s->start = now;
        s->rows = 0;
    }
    if (s->rows < REFUSAL_ROWS) {
        s->rows++;
        return 1;
    }
    s->counted++;
    copy(s->session, sizeof(s->session), row->session);
    copy(s->ip, sizeof(s->ip), row->client_ip);
    copy(s->event, sizeof(s->event), row->event);
    copy(s->decision, sizeof(s->decision), row->decision);
    copy(s->reason, sizeof(s->reason), row->reason);
    copy(s->sha256, sizeof(s->sha256), row->cert_sha256);
    copy(s->user, sizeof(s->user), row->user);
    return 0;
}

void refusal_flush(time_t now, int flush_all, int (*write)(const struct db_audit *row))
{
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].counted > 0 && (flush_all || now - slots[i].start >= REFUSAL_WINDOW))
            write_summary(&slots[i], write);
}
