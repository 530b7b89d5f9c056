/* Delivery status notifications (RFC 3464, RFC 3462 multipart/report). */
#include "queue_dsn.h"

#include "spool.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DSN_MAX_HEADERS 65536   /* the original header section is cut here */

/* A growing output buffer; a failed append leaves failed set and the rest ignored. */
struct out {
    char *p;
    size_t len, cap;
    int failed;
};

static void put_bytes(struct out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *p;
        while (cap < o->len + n + 1)
            cap *= 2;
        p = realloc(o->p, cap);
        if (p == NULL) {
            o->failed = 1;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = 1;
        return;
    }
    put_bytes(o, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void rfc5322_date(char *out, size_t outlen, long long t)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL) {
        str_lcpy(out, "Thu, 01 Jan 1970 00:00:00 +0000", outlen);
        return;
    }
    str_fmt(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
            months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "5.1.1" from "550 5.1.1 text", or a default by the reply's class. */
static void status_of(const char *reply, char *out, size_t outlen)
{
    const char *p = reply;
    int a, b, c, used = 0;

    if (reply[0] != '5') {
        str_lcpy(out, "4.4.7", outlen);
        return;
    }
    if (strlen(p) > 4 && p[3] == ' ' &&
        sscanf(p + 4, "%1d.%3d.%3d%n", &a, &b, &c, &used) == 3 && a == 5 &&
        (p[4 + used] == ' ' || p[4 + used] == '\0')) {
        str_fmt(out, outlen, "%d.%d.%d", a, b, c);
        return;
    }
    str_lcpy(out, "5.0.0", outlen);
}

/* The header section of the message (up to the empty line), cut at a line end. */
static size_t header_len(const struct spool_msg *m)
{
    const char *end = m->body ? memmem(m->body, m->body_len, "\r\n\r\n", 4) : NULL;
    size_t n = end ? (size_t)(end - m->body) + 2 : m->body_len;

    if (n > DSN_MAX_HEADERS) {
        n = DSN_MAX_HEADERS;
        while (n > 0 && m->body[n - 1] != '\n')
            n--;
    }
    return n;
}

int dsn_build(const struct spool_msg *orig, const char *hostname, const char *upstream,
              long long now, struct spool_msg *dsn)
{
    struct out o = { 0 };
    char date[64], arrival[64], status[16], boundary[64];
    const char *remote = upstream;
    char host[256];
    size_t hl;

    memset(dsn, 0, sizeof(*dsn));
    spool_new_id(dsn->id);
    dsn->time = now;
    str_lcpy(dsn->user, orig->user, sizeof(dsn->user));
    dsn->from[0] = '\0';                 /* the null sender: never bounced in turn */
    if (spool_add_rcpt(dsn, orig->from) != 0) {
        spool_msg_free(dsn);
        return -1;
    }
    /* The Remote-MTA is a host name; the upstream is configured as host:port (or a
     * list of them, of which the first is named when the one used is unknown). */
    str_lcpy(host, upstream, sizeof(host));
    host[strcspn(host, ",")] = '\0';
    if (host[0] == '[') {
        char *e = strchr(host, ']');
        if (e != NULL)
            *e = '\0';
        remote = host + 1;
    } else {
        char *colon = strrchr(host, ':');
        if (colon != NULL && strchr(host, ':') == colon)
            *colon = '\0';
        remote = host;
    }
    rfc5322_date(date, sizeof(date), now);
    rfc5322_date(arrival, sizeof(arrival), orig->time);
    str_fmt(boundary, sizeof(boundary), "=_%s/%s", orig->id, dsn->id);

    put(&o, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", hostname);
    put(&o, "To: <%s>\r\n", orig->from);
    put(&o, "Subject: Undelivered Mail Returned to Sender\r\n");
    put(&o, "Date: %s\r\n", date);
    put(&o, "Message-ID: <%s.dsn@%s>\r\n", dsn->id, hostname);
    put(&o, "Auto-Submitted: auto-replied\r\n");
    put(&o, "MIME-Version: 1.0\r\n");
    put(&o, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            "\tboundary=\"%s\"\r\n", boundary);
    put(&o, "\r\nThis is a MIME-encapsulated delivery status notification.\r\n\r\n");

    put(&o, "--%s\r\n", boundary);
    put(&o, "Content-Type: text/plain; charset=us-ascii\r\n"
            "Content-Description: Notification\r\n\r\n");
    put(&o, "This is the mail system at host %s.\r\n\r\n", hostname);
    put(&o, "Your message could not be delivered to one or more recipients.\r\n");
    put(&o, "It was accepted on %s with queue id %s.\r\n\r\n", arrival, orig->id);
    for (int i = 0; i < orig->nrcpt; i++) {
        const char *r = orig->rreply[i] ? orig->rreply[i] : "";
        if (orig->rstate[i] != SPOOL_RCPT_FAILED)
            continue;
        if (r[0] == '5')
            put(&o, "<%s>: the mail server %s refused it:\r\n    %s\r\n\r\n", orig->rcpt[i],
                remote, r);
        else
            put(&o, "<%s>: it could not be delivered in time; the last attempt said:\r\n"
                    "    %s\r\n\r\n", orig->rcpt[i], r[0] ? r : "(no reply)");
    }

    put(&o, "--%s\r\n", boundary);
    put(&o, "Content-Type: message/delivery-status\r\n"
            "Content-Description: Delivery report\r\n\r\n");
    put(&o, "Reporting-MTA: dns; %s\r\n", hostname);
    put(&o, "X-Submitd-Queue-ID: %s\r\n", orig->id);
    put(&o, "Arrival-Date: %s\r\n", arrival);
    for (int i = 0; i < orig->nrcpt; i++) {
        const char *r = orig->rreply[i] ? orig->rreply[i] : "";
        if (orig->rstate[i] != SPOOL_RCPT_FAILED)
            continue;
        status_of(r, status, sizeof(status));
        put(&o, "\r\nFinal-Recipient: rfc822; %s\r\n", orig->rcpt[i]);
        put(&o, "Action: failed\r\n");
        put(&o, "Status: %s\r\n", status);
        if (r[0] >= '2' && r[0] <= '5' && remote[0] != '\0')
            put(&o, "Remote-MTA: dns; %s\r\n", remote);
        if (r[0] >= '2' && r[0] <= '5')
            put(&o, "Diagnostic-Code: smtp; %s\r\n", r);
        else if (r[0] != '\0')
            put(&o, "Diagnostic-Code: X-submitd; %s\r\n", r);
        put(&o, "Last-Attempt-Date: %s\r\n", date);
    }
    put(&o, "\r\n");

    put(&o, "--%s\r\n", boundary);
    put(&o, "Content-Type: text/rfc822-headers\r\n"
            "Content-Description: Undelivered message headers\r\n\r\n");
    hl = header_len(orig);
    put_bytes(&o, orig->body ? orig->body : "", hl);
    if (hl < 2 || memcmp(orig->body + hl - 2, "\r\n", 2) != 0)
        put(&o, "\r\n");
    put(&o, "\r\n--%s--\r\n", boundary);

    if (o.failed) {
        free(o.p);
        spool_msg_free(dsn);
        return -1;
    }
    dsn->body = o.p;
    dsn->body_len = o.len;
    return 0;
}
