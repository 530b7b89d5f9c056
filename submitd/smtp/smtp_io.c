/*
 * The socket side of a session (smtp_io.h): reading into inbuf, writing outbuf,
 * the TLS handshake, epoll interest, timeouts, and the session's life in the
 * worker's slot table. It implements the session's port over the worker's
 * socketpairs to authz and queue.
 *
 * Reading is paused whenever the session waits for an answer (identity, sender,
 * queue file, commit) or for the STARTTLS 220 to leave; pipelined input stays in
 * inbuf meanwhile and is processed when the answer arrives.
 *
 * With TLS, OpenSSL's records gather in s->tls_out and leave at the end of a pump
 * (session_send), together: replies always, other records (a session ticket, a key
 * update) too unless the session waits for authz or the queue. Then they stay and
 * leave with the replies that follow the answer. So the ticket goes with the first
 * reply after the handshake, and the close_notify with the last reply.
 */
#include "smtp_io.h"

#include "ipc_codec.h"
#include "log.h"
#include "session.h"
#include "smtp_answer.h"
#include "smtp_cmd.h"
#include "smtp_limits.h"
#include "smtp_proxy.h"
#include "smtp_settings.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static void session_close(struct session *s);
static int session_begin(struct session *s);

/* ---- the port: requests over the worker's socketpairs ------------------------ */

static int io_send(struct session *s, enum session_peer to, struct ipc_msg *m)
{
    return ipc_send(to == PEER_AUTHZ ? s->w->authz_fd : s->w->queue_fd, m);
}

static const struct session_port io_port = { io_send };

/* ---- output ---------------------------------------------------------------- */

/* Writes as much of outbuf as the socket takes. Returns -1 on a fatal error. */
static int session_flush(struct session *s)
{
    while (s->outlen > 0) {
        ssize_t n;

        if (s->ssl != NULL && !s->handshaking) {
            int r = SSL_write(s->ssl, s->outbuf, (int)(s->outlen > 65536 ? 65536 : s->outlen));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    s->ssl_want_write = (e == SSL_ERROR_WANT_WRITE);
                    s->ssl_write_wants_read = (e == SSL_ERROR_WANT_READ);
                    return 0;
                }
                ERR_clear_error();
                return -1;
            }
            n = r;
            s->tls_out.replies = 1;
        } else if (s->ssl == NULL) {
            n = write(s->fd, s->outbuf, s->outlen);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return 0;
                return -1;
            }
        } else {
            return 0; /* handshake in progress: replies wait for it */
        }
        memmove(s->outbuf, s->outbuf + n, s->outlen - (size_t)n);
        s->outlen -= (size_t)n;
    }
    s->ssl_want_write = 0;
    s->ssl_write_wants_read = 0;
    return 0;
}

static void update_interest(struct session *s)
{
    struct epoll_event ev;
    /* A client that does not read its replies is not read either: its commands
     * would only pile up more replies (and memory) behind the blocked socket. */
    int reading = s->wait == WAIT_NONE && s->state != SS_CLOSING && s->outlen == 0 &&
                  !s->tls_out.blocked && s->inlen < SESS_INBUF;

    if (s->closed)
        return;
    memset(&ev, 0, sizeof(ev));
    /* Level-triggered: ask only for what can be acted on now, or a half-closed
     * peer would wake this worker in a loop while the session waits. */
    if (reading || s->handshaking || s->ssl_write_wants_read)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if ((s->outlen > 0 && !s->ssl_write_wants_read) || s->ssl_want_write || s->tls_out.blocked)
        ev.events |= EPOLLOUT;
    /* Most turns leave the interest as it was: no system call then. */
    if (ev.events == s->ev_mask)
        return;
    ev.data.u64 = EV_HANDLE(s->slot, s->gen);
    if (epoll_ctl(s->w->epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0)
        log_err("session=%s client=%s epoll_ctl: %s", s->id, s->client_ip, strerror(errno));
    else
        s->ev_mask = ev.events;
}

/* ---- TLS ------------------------------------------------------------------- */

static int tls_begin(struct session *s)
{
    BIO *rbio = NULL, *wbio = NULL;

    s->ssl = SSL_new(s->set->ssl_ctx);
    s->tls_out.fd = s->fd;
    /* Records come straight from the socket and go out through s->tls_out. */
    if (s->ssl == NULL || (rbio = BIO_new_socket(s->fd, BIO_NOCLOSE)) == NULL ||
        (wbio = tls_out_bio(&s->tls_out)) == NULL) {
        log_err("session=%s client=%s cannot create TLS session", s->id, s->client_ip);
        BIO_free(rbio);
        ERR_clear_error();
        return -1;
    }
    SSL_set_bio(s->ssl, rbio, wbio);
    s->handshaking = 1;
    /* The handshake and the first command after it get tls_handshake_timeout, not
     * the whole idle timeout: a slot is cheap to hold before anyone is known. */
    s->tls_checked = time(NULL);
    s->tls_deadline = s->tls_checked + s->cfg->tls_handshake_timeout;
    return 0;
}

/* After every handshake: what the client showed, and the chain it sent in DER for
 * authz, which verifies it and answers with the session's identity. */
static void tls_established(struct session *s)
{
    X509 *chain[IPC_CHAIN_MAX];
    unsigned char *der[IPC_CHAIN_MAX];
    size_t derlen[IPC_CHAIN_MAX];
    int n, ncert = 0;

    tls_peer_identity(s->ssl, &s->peer);
    n = tls_peer_chain(s->ssl, chain, IPC_CHAIN_MAX);
    memset(der, 0, sizeof(der));
    for (int i = 0; i < n; i++) {
        int len = i2d_X509(chain[i], &der[i]);
        if (len <= 0)
            break;
        derlen[i] = (size_t)len;
        ncert = i + 1;
    }
    /* A leaf that cannot be encoded leaves nothing to verify: a temporary failure. */
    session_tls_established(s, der, derlen, n > 0 && ncert == 0 ? -1 : ncert);
    for (int i = 0; i < n; i++)
        OPENSSL_free(der[i]);
}

/* Drives the handshake; returns -1 when the session must close. */
static int tls_continue(struct session *s)
{
    int r = SSL_accept(s->ssl);

    if (r == 1) {
        s->handshaking = 0;
        s->ssl_want_write = 0;
        tls_established(s);
        return 0;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        s->ssl_want_write = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        s->ssl_want_write = 1;
        return 0;
    default: {
        unsigned long e = ERR_peek_error();
        log_info("session=%s client=%s TLS handshake failed: %s", s->id, s->client_ip,
                 e ? ERR_reason_error_string(e) : "connection closed");
        ERR_clear_error();
        return -1;
    }
    }
}

/* ---- input ----------------------------------------------------------------- */

/*
 * A session holds an input buffer only while there is input in it: thousands of
 * idle sessions would otherwise keep 4 KiB each for nothing (an eighth of what an
 * idle TLS session costs). An emptied buffer goes back to the worker, which keeps one
 * for the next read, so a busy session does not allocate for every command.
 */
int inbuf_take(struct session *s)
{
    if (s->inbuf != NULL)
        return 0;
    if (s->w != NULL && s->w->spare_inbuf != NULL) {
        s->inbuf = s->w->spare_inbuf;
        s->w->spare_inbuf = NULL;
        return 0;
    }
    s->inbuf = malloc(SESS_INBUF);
    if (s->inbuf != NULL)
        return 0;
    log_err("session=%s client=%s out of memory for its input", s->id, s->client_ip);
    return -1;
}

/* Gives the buffer back once it is empty (or the session is over: force). It is
 * wiped first: the next session to use it must not find this one's bytes (an AUTH
 * PLAIN line, a message) past its own. */
static void inbuf_give(struct session *s, int force)
{
    if (s->inbuf == NULL || (s->inlen > 0 && !force))
        return;
    explicit_bzero(s->inbuf, SESS_INBUF);
    if (s->w != NULL && s->w->spare_inbuf == NULL)
        s->w->spare_inbuf = s->inbuf;
    else
        free(s->inbuf);
    s->inbuf = NULL;
    s->inlen = 0;
}

/* Writes a post-handshake message (our KeyUpdate) as far as it goes now. Returns -1,
 * logged, when the connection failed. */
static int post_handshake_step(struct session *s)
{
    int r = SSL_do_handshake(s->ssl);

    if (r == 1)
        return 0;
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_WRITE:
        s->ssl_want_write = 1;
        return 0;
    case SSL_ERROR_WANT_READ:
        return 0;
    default:
        ERR_clear_error();
        log_info("session=%s client=%s connection failed while sending a TLS key update",
                 s->id, s->client_ip);
        return -1;
    }
}

/*
 * A client's TLS 1.3 KeyUpdate that asks for ours is answered now. OpenSSL would
 * send our KeyUpdate only before the next reply (RFC 8446 4.6.3 allows that), so a
 * client that waits for the new keys before it writes again would wait for nothing.
 * SSL_key_update() puts the connection into the state that writes it, and the
 * handshake step writes it; it leaves with the other records of the pump (or, when
 * the output buffer was full, session_send moves it on once there is room).
 */
static int key_update_answer(struct session *s)
{
    if (SSL_get_key_update_type(s->ssl) == SSL_KEY_UPDATE_NONE ||
        SSL_key_update(s->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) != 1) {
        ERR_clear_error();
        return 0;
    }
    return post_handshake_step(s);
}

/* Reads what the socket has. Returns 1 when bytes arrived, 0 when nothing more
 * is available now, -1 when the client closed the connection or it failed, -2 when
 * the session is over for a reason already logged. */
static int session_read(struct session *s)
{
    size_t room = SESS_INBUF - s->inlen;
    ssize_t n;

    if (room == 0)
        return 0;
    if (inbuf_take(s) != 0)
        return -2;    /* logged */
    if (s->ssl != NULL) {
        int r = SSL_read(s->ssl, s->inbuf + s->inlen, (int)room);
        if (r <= 0) {
            /* Asked before anything else is done with the connection: the answer
             * describes the last call. */
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return key_update_answer(s) == 0 ? 0 : -2;
            if (e == SSL_ERROR_WANT_WRITE) {
                s->ssl_want_write = 1;
                return 0;
            }
            ERR_clear_error();
            return -1;
        }
        /* The bytes read are the client's either way: when the answer failed, the
         * connection is dead and the next write says so, after they were handled. */
        (void)key_update_answer(s);
        n = r;
    } else {
        n = read(s->fd, s->inbuf + s->inlen, room);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return -1;
    }
    s->inlen += (size_t)n;
    s->last_active = time(NULL);
    return 1;
}

/* Whether the records that wait may stay while the session waits for authz or the
 * queue: only TLS 1.3 records after the handshake that hold no reply (the ticket, a
 * key update), which the client does not wait for. A TLS 1.2 handshake ends with the
 * server's Finished, which the client does wait for. Nothing stays while part of it
 * could not leave: the session asked to hear when the socket is writable. */
static int send_may_wait(const struct session *s)
{
    return s->wait != WAIT_NONE && !s->handshaking && !s->tls_out.replies &&
           !s->tls_out.blocked && SSL_version(s->ssl) == TLS1_3_VERSION;
}

/*
 * Sends the records that wait, unless they may wait for the replies that follow an
 * answer of authz or the queue (send_may_wait). A session that is closing writes its
 * close_notify first, to leave with the last reply. Returns -1 when the connection
 * failed.
 */
static int session_send(struct session *s)
{
    if (s->ssl == NULL || send_may_wait(s))
        return 0;
    /* Written, or else tried again in release_connection. */
    if (s->state == SS_CLOSING && s->outlen == 0 && !s->handshaking && !s->tls_shut) {
        s->tls_shut = SSL_shutdown(s->ssl) >= 0;
        ERR_clear_error();
    }
    if (s->tls_out.len > 0 && tls_out_send(&s->tls_out) < 0)
        return -1;
    /* A post-handshake message (our KeyUpdate) that OpenSSL wrote while the buffer
     * was full is still inside OpenSSL, and only another handshake step hands it
     * over: take it now that the buffer is empty, or a client waiting for our new
     * keys would wait for nothing. */
    if (s->tls_out.len == 0 && !s->handshaking && !s->tls_shut && SSL_in_init(s->ssl)) {
        if (post_handshake_step(s) != 0)
            return -1;
        if (s->tls_out.len > 0 && tls_out_send(&s->tls_out) < 0)
            return -1;
    }
    return 0;
}

/* How often one pump starts over for input that waits inside OpenSSL; the session
 * is pumped again at its next event anyway, so this only needs to be enough. */
#define PUMP_ROUNDS 4

/* Moves the session as far as it can go now: handshake, commands, replies, reads. */
static void session_pump(struct session *s)
{
    int rounds = 0;

    if (s->closed)
        return;
    if (s->proxy_pending) {
        int r = session_proxy_read(s);

        if (r < 0) {
            session_close(s);
            return;
        }
        if (r == 0 || session_begin(s) != 0) {
            if (!s->closed) {
                inbuf_give(s, 0);
                update_interest(s);
            }
            return;
        }
    }
again:
    for (;;) {
        int held_back;

        if (s->handshaking) {
            if (tls_continue(s) != 0) {
                session_close(s);
                return;
            }
            if (s->handshaking)
                break;
        }
        session_input(s);
        held_back = s->outlen >= OUTBUF_PAUSE; /* commands wait in inbuf for the replies */
        if (s->wait == WAIT_STARTTLS_FLUSH) {
            if (session_flush(s) != 0) {
                session_close(s);
                return;
            }
            if (s->outlen > 0)
                break;
            session_starttls_reset(s);
            if (tls_begin(s) != 0) {
                session_close(s);
                return;
            }
            continue;
        }
        if (s->wait != WAIT_NONE || s->state == SS_CLOSING)
            break;
        /* Replies first: while they cannot leave, nothing more is read. They leave
         * before the read, too: the client's next command may come back meanwhile.
         * Other records wait for the end of the pump, and for a reply to go with. */
        if (session_flush(s) != 0 ||
            ((s->tls_out.replies || s->tls_out.blocked) && session_send(s) != 0)) {
            session_close(s);
            return;
        }
        if (s->outlen > 0 || s->tls_out.blocked)
            break;
        if (held_back)
            continue; /* the replies have left: the commands they held back are next */
        int r = session_read(s);
        if (r < 0) {
            if (r == -1)
                log_info("session=%s client=%s connection closed by client", s->id,
                         s->client_ip);
            session_close(s);
            return;
        }
        if (r == 0)
            break;
    }
    if (session_flush(s) != 0 || session_send(s) != 0) {
        session_close(s);
        return;
    }
    if (s->state == SS_CLOSING && s->outlen == 0 && !s->tls_out.blocked &&
        s->wait == WAIT_NONE) {
        session_close(s);
        return;
    }
    /* The replies left only now, and commands the client pipelined wait inside
     * OpenSSL, read ahead from the socket: no readiness event will announce them. */
    if (s->ssl != NULL && !s->handshaking && s->wait == WAIT_NONE && s->outlen == 0 &&
        !s->tls_out.blocked && s->inlen < SESS_INBUF && SSL_has_pending(s->ssl) &&
        rounds++ < PUMP_ROUNDS)
        goto again;
    inbuf_give(s, 0);
    update_interest(s);
}

/* ---- lifecycle ------------------------------------------------------------- */

void sockaddr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, (socklen_t)iplen);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, (socklen_t)iplen);
    else
        str_lcpy(ip, "unknown", iplen);
}

/* Puts s into a free slot of the worker's table with a new generation. The free
 * slots are kept on a stack, so that a worker holding thousands of sessions does
 * not scan its table for each new connection. */
static int slot_take(struct worker *w, struct session *s)
{
    uint32_t slot;

    if (w->nfree == 0) {
        uint32_t n = w->nslots ? w->nslots * 2 : 64;
        struct session **p;
        uint32_t *f;

        if (n <= w->nslots)
            return -1;
        p = realloc(w->slots, sizeof(*p) * n);
        if (p == NULL)
            return -1;
        w->slots = p;
        f = realloc(w->free_slots, sizeof(*f) * n);
        if (f == NULL)
            return -1;
        w->free_slots = f;
        memset(p + w->nslots, 0, sizeof(*p) * (n - w->nslots));
        /* Pushed from the top down, so that the lowest slots are taken first. */
        for (uint32_t k = n; k > w->nslots; k--)
            w->free_slots[w->nfree++] = k - 1;
        w->nslots = n;
    }
    slot = w->free_slots[--w->nfree];
    /* Generation 0 names the worker's own descriptors, never a session. */
    if (++w->generation == 0)
        w->generation = 1;
    w->slots[slot] = s;
    s->slot = slot;
    s->gen = w->generation;
    return 0;
}

/* Empties a slot; no later event or answer with its old generation finds it. */
static void slot_give(struct worker *w, uint32_t slot)
{
    w->slots[slot] = NULL;
    w->free_slots[w->nfree++] = slot;
}

void session_start(struct worker *w, int fd, const struct sockaddr_storage *ss, int implicit_tls)
{
    struct session *s = calloc(1, sizeof(*s));
    struct epoll_event ev;

    if (s == NULL || slot_take(w, s) != 0) {
        char ip[64];

        sockaddr_text(ss, ip, sizeof(ip));
        smtp_limits_leave(ip);
        close(fd);
        free(s);
        return;
    }
    s->w = w;
    s->port = &io_port;
    s->msg = w->msg;
    /* The settings of the moment stay the session's to its end, a reload between
     * (a new server certificate, new limits) notwithstanding. */
    s->set = smtp_settings_get();
    s->cfg = &s->set->cfg;
    s->fd = fd;
    s->implicit_tls = implicit_tls;
    s->last_active = time(NULL);
    smtp_session_id(s->id, sizeof(s->id));
    sockaddr_text(ss, s->client_ip, sizeof(s->client_ip));
    /* Behind a balancer the client is counted once its PROXY header names it;
     * the worker loop counted everyone else at the accept. */
    s->counted = s->cfg->proxy_protocol == PROXY_PROTOCOL_NO;
    s->proxy_pending = !s->counted;
    if (s->proxy_pending && !session_proxy_trusted(s)) {
        log_info("session=%s client=%s connect from [%s] refused: not in proxy_trusted", s->id,
                 s->client_ip, s->client_ip);
        slot_give(w, s->slot);
        close(fd);
        smtp_settings_put(s->set);
        free(s);
        return;
    }
    s->proxy_deadline = s->last_active + proxy_header_timeout(s);

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP;
    s->ev_mask = ev.events;
    ev.data.u64 = EV_HANDLE(s->slot, s->gen);
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        /* Never registered, so no event can name it: freed at once. */
        log_err("epoll_ctl add: %s", strerror(errno));
        slot_give(w, s->slot);
        if (s->counted)
            smtp_limits_leave(s->client_ip);
        close(fd);
        smtp_settings_put(s->set);
        free(s);
        return;
    }
    /* The PROXY header may be there already: session_pump() reads it and begins. */
    if (s->proxy_pending || session_begin(s) == 0)
        session_pump(s);
}

/*
 * The client is known: counted (behind a balancer, only now), logged, greeted or
 * asked for its TLS handshake. Returns -1 when the session was closed instead.
 */
static int session_begin(struct session *s)
{
    int global;

    if (!s->counted) {
        if (!smtp_limits_enter(s->client_ip, &global)) {
            static const char msg[] = "421 4.7.0 Too many sessions, try again later\r\n";

            log_warn("connect from [%s] refused: %s client=%s", s->client_ip,
                     global ? "max_sessions reached" : "max_sessions_per_ip reached",
                     s->client_ip);
            /* On the implicit-TLS port a plaintext reply means nothing: just close. */
            if (!s->implicit_tls)
                (void)!write(s->fd, msg, sizeof(msg) - 1);
            session_close(s);
            return -1;
        }
        s->counted = 1;
    }
    if (s->proxy_pending)
        log_info("session=%s client=%s connect from [%s] via PROXY%s from [%s]%s", s->id,
                 s->client_ip, s->client_ip, s->proxy_local ? " LOCAL" : "", s->proxy_ip,
                 s->implicit_tls ? " (implicit TLS)" : "");
    else
        log_info("session=%s client=%s connect from [%s]%s", s->id, s->client_ip, s->client_ip,
                 s->implicit_tls ? " (implicit TLS)" : "");
    s->proxy_pending = 0;
    if (s->implicit_tls) {
        if (tls_begin(s) != 0) {
            session_close(s);
            return -1;
        }
    } else {
        session_greet(s);
    }
    return 0;
}

/* Gives the connection back: descriptor, TLS state, and the session's place in
 * the per-address count. */
static void release_connection(struct session *s)
{
    epoll_ctl(s->w->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (s->ssl != NULL) {
        if (!s->handshaking && !s->tls_shut)
            (void)SSL_shutdown(s->ssl);
        /* The last reply, the close_notify or an alert: what the socket takes now. */
        if (s->tls_out.len > 0)
            (void)tls_out_send(&s->tls_out);
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
    }
    tls_out_free(&s->tls_out);
    inbuf_give(s, 1);
    close(s->fd);
    s->fd = -1;
    if (s->counted)
        smtp_limits_leave(s->client_ip);
}

/*
 * Ends the session. It may be called from the handling of any event, also one
 * that is not the session's own (an answer from authz or queue), and more than
 * once: the session leaves the slot table at once, so that no later event or
 * answer finds it, but its memory stays until session_reap() at the end of the
 * batch, because the callers up the stack may still look at it.
 */
static void session_close(struct session *s)
{
    struct worker *w = s->w;

    if (s->closed)
        return;
    if (!s->detached) {
        /* A connection refused before its greeting was logged with the reason. */
        if (!s->proxy_pending)
            log_info("session=%s client=%s disconnect%s%s", s->id, s->client_ip,
                     s->user[0] ? " user=" : "", s->user);
        release_connection(s);
        /* A message being committed is the queue's now and may be relayed: keep
         * the session until the answer, so that its accept is still audited. */
        if (s->wait == WAIT_COMMIT) {
            s->detached = 1;
            return;
        }
    }
    session_end(s);
    slot_give(w, s->slot);
    s->closed = 1;
    s->next_closed = w->closed;
    w->closed = s;
}

int session_reap(struct worker *w)
{
    int n = 0;

    while (w->closed != NULL) {
        struct session *s = w->closed;

        w->closed = s->next_closed;
        free(s->outbuf);
        smtp_settings_put(s->set);
        free(s);
        n++;
    }
    return n;
}

void session_shutdown(struct session *s)
{
    if (!s->detached && !s->proxy_pending && s->state != SS_CLOSING && !s->handshaking &&
        s->wait != WAIT_STARTTLS_FLUSH) {
        session_reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
        (void)session_flush(s);
    }
    session_close(s);
}

static struct session *session_for(struct worker *w, uint64_t id)
{
    uint32_t slot = EV_SLOT(id), gen = EV_GEN(id);

    if (slot < w->nslots && w->slots[slot] != NULL && w->slots[slot]->gen == gen)
        return w->slots[slot];
    return NULL;
}

void session_on_event(struct worker *w, uint64_t handle, uint32_t events)
{
    struct session *s = session_for(w, handle);

    /* Closed earlier in this batch, or its client gone while the commit is
     * pending: the event is stale. */
    if (s == NULL || s->detached)
        return;
    /* Both directions are gone: no reply can reach the client any more, and
     * nothing it sent is acknowledged. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        log_info("session=%s client=%s connection lost", s->id, s->client_ip);
        session_close(s);
        return;
    }
    session_pump(s);
}

void session_on_ipc(struct worker *w, struct ipc_msg *m)
{
    struct session *s = session_for(w, m->id);

    if (s == NULL) {
        /* The session is gone: give an opened file back. */
        if (session_answer_orphan(m))
            (void)ipc_send(w->queue_fd, m);
        return;
    }
    if (session_answer(s, m) == ANSWER_CLOSE) {
        session_close(s);
        return;
    }
    session_pump(s);
}

/* ---- timeouts -------------------------------------------------------------- */

/* The TLS handshake and the first command after it are due within
 * tls_handshake_timeout; time spent waiting for our own processes is not the
 * client's and moves the deadline. Returns 1 when it has passed. */
static int tls_deadline_passed(struct session *s, time_t now, int internal)
{
    if (s->tls_deadline == 0)
        return 0;
    if (internal && now > s->tls_checked)
        s->tls_deadline += now - s->tls_checked;
    s->tls_checked = now;
    return !internal && now > s->tls_deadline;
}

void session_check_timeout(struct session *s, time_t now)
{
    if (s->proxy_pending) {
        if (now > s->proxy_deadline) {
            log_info("session=%s client=%s PROXY header refused: not received within %d s",
                     s->id, s->client_ip, (int)proxy_header_timeout(s));
            session_close(s);
        }
        return;
    }

    /* While the session waits for our own processes the client is not at fault;
     * the clock runs from the request. An answer that never comes still ends
     * the session, with a temporary failure. */
    int internal = s->wait != WAIT_NONE && s->wait != WAIT_STARTTLS_FLUSH;
    time_t since = internal ? s->wait_since : s->last_active;
    int tls_late = !s->detached && tls_deadline_passed(s, now, internal);
    const struct config *cfg = s->cfg;

    if (now - since <= cfg->timeout && !tls_late)
        return;
    if (s->detached) {
        log_err("session=%s client=%s no commit answer from the queue in %d s", s->id, s->client_ip,
                cfg->timeout);
        session_close(s);
        return;
    }
    if (tls_late) {
        log_info("session=%s client=%s %s not done within tls_handshake_timeout (%d s)",
                 s->id, s->client_ip,
                 s->handshaking ? "TLS handshake" : "first command after the TLS handshake",
                 cfg->tls_handshake_timeout);
        if (!s->handshaking)
            session_reply(s, "421 4.4.2 %s Error: timeout exceeded", cfg->hostname);
    } else if (internal) {
        log_err("session=%s client=%s no answer from the %s process in %d s", s->id, s->client_ip,
                s->wait == WAIT_OPEN || s->wait == WAIT_COMMIT ? "queue" : "authz",
                cfg->timeout);
        session_reply(s, "421 4.3.0 %s Internal timeout, try again later", cfg->hostname);
    } else {
        log_info("session=%s client=%s timeout after %d s", s->id, s->client_ip, cfg->timeout);
        if (!s->handshaking && s->wait != WAIT_STARTTLS_FLUSH)
            session_reply(s, "421 4.4.2 %s Error: timeout exceeded", cfg->hostname);
    }
    (void)session_flush(s);
    session_close(s);
}
