/*
 * The TLS records a session sends, on their way to the socket.
 *
 * OpenSSL writes a session's records through a BIO of ours rather than a socket BIO,
 * and the BIO only gathers them: the session sends them with tls_out_send() when it
 * is time, all in one write(2), so one TCP segment. The session ticket goes with the
 * reply that follows the handshake, the replies of one turn together, the last reply
 * with the close_notify. On loopback and LAN connections every write(2) costs the
 * sender the receiver's packet processing too.
 *
 * When it is time is smtp_io.c's to say: replies leave at the end of every turn, and
 * so does anything else before the session waits for the client. Only records the
 * client never waits for, such as the ticket, stay while the session waits for authz
 * or the queue.
 */
#ifndef SUBMITD_TLS_OUT_H
#define SUBMITD_TLS_OUT_H

#include <openssl/bio.h>
#include <stddef.h>

struct tls_out {
    int fd;                 /* the session's socket */
    int replies;            /* replies wait in buf, not only protocol records */
    int blocked;            /* the socket took only part: wait until it is writable */
    unsigned char *buf;     /* records not sent yet (freed once empty) */
    size_t len, cap;
};

/* A new write BIO that gathers into o (its fd set), or NULL when memory is short.
 * Past a full-size record it sends what waits before it gathers more, and reports
 * a retry when the socket is full. It does not own o and never closes the socket. */
BIO *tls_out_bio(struct tls_out *o);

/* Sends what waits. Returns 0 when nothing is left, 1 when the socket is full and
 * some is left (o->blocked), -1 on an error of the connection. */
int tls_out_send(struct tls_out *o);

/* Forgets what waits (the connection is gone). */
void tls_out_free(struct tls_out *o);

#endif
