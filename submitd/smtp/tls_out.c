/* The TLS records a session sends, on their way to the socket (tls_out.h). */
#include "tls_out.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What a session gathers before it must send: a full-size TLS record and then some.
 * A client that pipelines commands without reading the replies fills it, and then
 * the socket, and then its commands are no longer read (smtp_io.c). */
#define TLS_OUT_MAX (17 * 1024)

static BIO_METHOD *out_method;
static pthread_once_t out_once = PTHREAD_ONCE_INIT;

/* Room for n more bytes; -1 when memory is short. */
static int out_reserve(struct tls_out *o, size_t n)
{
    size_t cap = o->cap ? o->cap : 1024;
    unsigned char *p;

    if (o->len + n <= o->cap)
        return 0;
    while (cap < o->len + n)
        cap *= 2;
    if ((p = realloc(o->buf, cap)) == NULL)
        return -1;
    o->buf = p;
    o->cap = cap;
    return 0;
}

int tls_out_send(struct tls_out *o)
{
    size_t off = 0;

    while (off < o->len) {
        ssize_t n = write(o->fd, o->buf + off, o->len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    if (off == o->len) {
        /* An idle session keeps no buffer. */
        tls_out_free(o);
        return 0;
    }
    memmove(o->buf, o->buf + off, o->len - off);
    o->len -= off;
    o->blocked = 1;
    return 1;
}

void tls_out_free(struct tls_out *o)
{
    free(o->buf);
    o->buf = NULL;
    o->len = o->cap = 0;
    o->replies = 0;
    o->blocked = 0;
}

static int out_write(BIO *b, const char *in, int inl)
{
    struct tls_out *o = BIO_get_data(b);
    size_t n;

    BIO_clear_retry_flags(b);
    if (o == NULL || inl < 0)
        return -1;
    n = (size_t)inl;
    /* Too much to gather: what waits goes first. */
    if (o->len > 0 && o->len + n > TLS_OUT_MAX) {
        int r = tls_out_send(o);

        if (r < 0)
            return -1;
        if (r > 0) {
            BIO_set_retry_write(b);
            return -1;
        }
    }
    if (out_reserve(o, n) != 0)
        return -1;
    memcpy(o->buf + o->len, in, n);
    o->len += n;
    return inl;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct tls_out *o = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the session sends (tls_out_send) when it is time */
    case BIO_CTRL_WPENDING:
        return o != NULL ? (long)o->len : 0;
    case BIO_CTRL_GET_CLOSE:
        return BIO_NOCLOSE;
    case BIO_CTRL_SET_CLOSE:
        return 1;
    default:
        return 0;
    }
}

static int out_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void out_method_init(void)
{
    int index = BIO_get_new_index();
    BIO_METHOD *m;

    /* Without a type of its own no session can start TLS: tls_begin says so. */
    if (index == -1)
        return;
    m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK, "submitd TLS out");
    if (m == NULL || BIO_meth_set_write(m, out_write) != 1 ||
        BIO_meth_set_ctrl(m, out_ctrl) != 1 || BIO_meth_set_create(m, out_create) != 1) {
        BIO_meth_free(m);
        return;
    }
    out_method = m;
}

BIO *tls_out_bio(struct tls_out *o)
{
    BIO *b;

    if (pthread_once(&out_once, out_method_init) != 0 || out_method == NULL)
        return NULL;
    if ((b = BIO_new(out_method)) == NULL)
        return NULL;
    BIO_set_data(b, o);
    return b;
}
