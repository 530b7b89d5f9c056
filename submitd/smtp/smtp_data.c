/*
 * The message of a transaction (smtp_data.h). The byte-level end-of-data machine
 * and the header parsers are pure functions in smtp_parse.c; this file drives them
 * and writes the spool records through the descriptor the queue handed over.
 */
#include "smtp_data.h"

#include "log.h"
#include "smtp_limits.h"
#include "smtp_req.h"
#include "spool.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STAGE_MAX (64 * 1024)

/* tx->oversize: which limit the message exceeded, refused at the end of data. */
enum { OVERSIZE_MESSAGE = 1, OVERSIZE_HEADER };

void data_cmd(struct session *s, const char *arg)
{
    if (arg[0] != '\0') {
        session_reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->state != SS_RCPT) {
        session_reply(s, s->state == SS_MAIL ? "503 5.5.1 Error: need RCPT command"
                                             : "503 5.5.1 Error: need MAIL command");
        return;
    }
    /* The spool file is one descriptor more, out of a pool of its own (DESIGN §9):
     * when it is empty the client is told to come back, and its session stays. */
    if (!s->tx->data_slot) {
        if (!smtp_limits_data_enter()) {
            /* One line for all: log.c counts repeats instead of writing each. */
            log_warn("DATA refused: every spool descriptor is in use");
            session_reply(s, "452 4.3.1 Insufficient system resources, try again later");
            return;
        }
        s->tx->data_slot = 1;
    }
    if (req_open(s) != 0) {
        tx_data_leave(s->tx);
        session_reply(s, "452 4.3.1 Insufficient system storage");
    }
}

void data_on_opened(struct session *s, int status, const char *qid, const char *why, int fd)
{
    struct smtp_tx *tx = s->tx;

    if (status != 0 || fd < 0 || !spool_id_valid(qid)) {
        log_err("session=%s client=%s queue refused the message: %s", s->id, s->client_ip, why);
        if (fd >= 0)
            close(fd);
        tx_data_leave(tx);
        session_reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    tx->spool_fd = fd;
    str_lcpy(tx->queue_id, qid, sizeof(tx->queue_id));
    tx->stage = malloc(STAGE_MAX);
    if (tx->stage == NULL) {
        tx_end(s);
        session_reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    data_parser_init(&tx->dp);
    session_set_state(s, SS_DATA);
    session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* ---- writing the spool file ------------------------------------------------ */

static void stage_write(struct session *s, const char *p, size_t n)
{
    struct smtp_tx *tx = s->tx;

    if (tx->write_error || tx->oversize)
        return;
    tx->spooled += (long long)n;
    while (n > 0) {
        size_t room = STAGE_MAX - tx->stagelen;
        size_t c = n < room ? n : room;

        memcpy(tx->stage + tx->stagelen, p, c);
        tx->stagelen += c;
        p += c;
        n -= c;
        if (tx->stagelen == STAGE_MAX) {
            if (spool_put(tx->spool_fd, SPOOL_BODY, tx->stage, tx->stagelen) != 0) {
                log_err("session=%s client=%s spool write failed: %s", s->id, s->client_ip,
                        strerror(errno));
                tx->write_error = 1;
                return;
            }
            tx->stagelen = 0;
        }
    }
}

static void rfc5322_date(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outlen, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* The Received field: TLS version, cipher and the certificate's fingerprint
 * prefix; the client's address and HELO name unless hide_client. A one-recipient
 * Received ends "for <a@b>; date"; otherwise just "; date" (naming many
 * recipients would disclose Bcc addresses to every one). */
static void received_header(const struct session *s, const char *date, char *buf, size_t len)
{
    const struct config *cfg = s->cfg;
    const struct smtp_tx *tx = s->tx;
    int one = tx->nrcpt == 1;
    char fpr[17];

    str_lcpy(fpr, s->peer.sha256, sizeof(fpr));
    if (cfg->hide_client)
        str_fmt(buf, len,
                "Received: by %s (submitd) with ESMTPSA id %s\r\n"
                "\t(version=%s cert=sha256:%s)\r\n\t%s%s%s; %s\r\n",
                cfg->hostname, tx->queue_id, s->peer.tls, fpr, one ? "for <" : "",
                one ? tx->rcpt[0] : "", one ? ">" : "", date);
    else
        str_fmt(buf, len,
                "Received: from %s ([%s])\r\n\tby %s (submitd) with ESMTPSA id %s\r\n"
                "\t(version=%s cert=sha256:%s)\r\n\t%s%s%s; %s\r\n",
                s->helo, s->client_ip, cfg->hostname, tx->queue_id, s->peer.tls, fpr,
                one ? "for <" : "", one ? tx->rcpt[0] : "", one ? ">" : "", date);
}

/* The headers we add at the top: Received, and Message-ID/Date when missing
 * (RFC 6409 §8). Then what was collected as it was: the header section (its first
 * hl bytes) and whatever of the body came with it. */
static void write_prelude(struct session *s, size_t hl)
{
    struct smtp_tx *tx = s->tx;
    char buf[SPOOL_ADDED_FIELD_MAX], date[64];   /* the queue counts on this bound */
    int has_date = smtp_header_present(tx->hdrbuf, hl, "Date");
    int has_msgid = smtp_header_present(tx->hdrbuf, hl, "Message-ID");

    rfc5322_date(date, sizeof(date));
    received_header(s, date, buf, sizeof(buf));
    stage_write(s, buf, strlen(buf));
    if (!has_msgid) {
        str_fmt(buf, sizeof(buf), "Message-ID: <%s.%s@%s>\r\n", tx->queue_id, s->id,
                s->cfg->hostname);
        stage_write(s, buf, strlen(buf));
    }
    if (!has_date) {
        str_fmt(buf, sizeof(buf), "Date: %s\r\n", date);
        stage_write(s, buf, strlen(buf));
    }
    if (s->cfg->check_header_from) {
        char *from = malloc(4096);
        int n = from ? smtp_header_value(tx->hdrbuf, hl, "From", from, 4096) : -1;

        tx->header_from_count = n;
        tx->header_from = from;
    }
    stage_write(s, tx->hdrbuf, tx->hdrlen);
    free(tx->hdrbuf);
    tx->hdrbuf = NULL;
    tx->hdrlen = 0;
    tx->hdrcap = 0;
    tx->in_body = 1;
}

/* Grows the header buffer for n more bytes, never beyond max_header_size (the scan
 * lets no more in). Returns 0, or -1 when memory is short. */
static int header_reserve(struct smtp_tx *tx, size_t max, size_t n)
{
    size_t need = tx->hdrlen + n, cap;
    char *q;

    if (need <= tx->hdrcap)
        return 0;
    if (need > max)
        return -1;
    cap = tx->hdrcap ? tx->hdrcap : 8192;
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    q = realloc(tx->hdrbuf, cap);
    if (q == NULL)
        return -1;
    tx->hdrbuf = q;
    tx->hdrcap = cap;
    return 0;
}

/*
 * GCC 12's analyzer follows the header buffer into tx->hdrbuf (tx is the heap
 * transaction reached through the session) and then loses it, reporting a leak on
 * a path where the buffer is owned by tx and freed by tx_end. The sanitizer run of
 * the test suite checks this file for real leaks (LeakSanitizer).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
/*
 * Collects the header bytes at the front of p: the whole header section is kept,
 * up to max_header_size, so that the From check reads all of it. When the section
 * is complete the prelude is written. Returns how many bytes were taken; the rest
 * of p is body.
 */
static size_t header_take(struct session *s, const char *p, size_t n)
{
    struct smtp_tx *tx = s->tx;
    enum header_scan st;
    size_t take = smtp_header_scan(tx->hdrbuf, tx->hdrlen, p, n,
                                   (size_t)s->cfg->max_header_size, &st);

    if (st == HDR_OVER) {
        /* Refused at the end of data: what was collected is no longer needed. */
        tx->oversize = OVERSIZE_HEADER;
        free(tx->hdrbuf);
        tx->hdrbuf = NULL;
        tx->hdrlen = 0;
        tx->hdrcap = 0;
        return n;
    }
    if (take > 0 && header_reserve(tx, (size_t)s->cfg->max_header_size, take) != 0) {
        log_err("session=%s client=%s no memory for a header section of %zu bytes",
                s->id, s->client_ip, tx->hdrlen + take);
        tx->write_error = 1;
        return n;
    }
    if (take > 0)
        memcpy(tx->hdrbuf + tx->hdrlen, p, take);
    tx->hdrlen += take;
    if (st == HDR_DONE)
        write_prelude(s, tx->hdrlen - 2); /* the fields, without the empty line */
    return take;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* Feeds message bytes: the header section is collected first, then everything
 * streams to the spool file. After a refusal only the size is still counted. */
static void data_output(struct session *s, const char *p, size_t n)
{
    struct smtp_tx *tx = s->tx;

    tx->msg_size += (long long)n;
    if (tx->oversize || tx->write_error)
        return;
    if (tx->msg_size > s->cfg->max_message_size) {
        tx->oversize = OVERSIZE_MESSAGE;
        return;
    }
    if (!tx->in_body) {
        size_t took = header_take(s, p, n);

        p += took;
        n -= took;
    }
    if (tx->in_body && n > 0)
        stage_write(s, p, n);
}

/* ---- the end of data ------------------------------------------------------- */

/* Hands the complete spool file to the queue, with the header From addresses authz
 * is to check; the 250 waits for its answer. */
static void data_commit(struct session *s, const struct ipc_header_from *from)
{
    char rcpts[2048];

    close(s->tx->spool_fd);
    s->tx->spool_fd = -1;
    tx_data_leave(s->tx);
    if (req_commit(s, from) != 0) {
        tx_rcpt_list(s, rcpts, sizeof(rcpts));
        req_audit(s, "data", "tempfail", "queue unavailable", rcpts, s->tx->msg_size);
        session_reply(s, "452 4.3.1 Insufficient system storage");
        tx_end(s);
    }
}

/*
 * check_header_from: every address of the From field must be owned by the user.
 * authz decides that when the queue asks it to record the message (ACCEPT), so the
 * addresses travel with the commit. A field that cannot be read is refused here.
 * Returns -1 when the transaction ended here (the reply is given), else 0 with the
 * addresses in *from (none when the message has no From field: the envelope sender
 * was checked).
 */
static int header_from_read(struct session *s, struct ipc_header_from *from)
{
    struct smtp_tx *tx = s->tx;
    char addrs[IPC_FROM_MAX][SMTP_ADDR_MAX + 1];
    const char *why = NULL;
    char rcpts[2048];
    int n = 0;

    if (tx->header_from_count == 0)
        return 0;
    if (tx->header_from_count > 1)
        why = "more than one From field";
    else if (tx->header_from == NULL || tx->header_from_count < 0 ||
             (n = smtp_parse_mailbox_list(tx->header_from, strlen(tx->header_from), addrs,
                                          IPC_FROM_MAX)) <= 0)
        why = "unreadable From field";
    if (why == NULL) {
        from->naddr = n;
        for (int i = 0; i < n; i++)
            str_lcpy(from->addr[i], addrs[i], sizeof(from->addr[i]));
        return 0;
    }
    tx_rcpt_list(s, rcpts, sizeof(rcpts));
    req_audit(s, "data", "reject", why, rcpts, tx->msg_size);
    session_reply(s, "550 5.6.0 Message header From is malformed: %s", why);
    tx_end(s);
    return -1;
}

/* Why a complete message is refused for its content, or NULL (the reply; the audit
 * reason in *reason). */
static const char *data_refusal(const struct smtp_tx *tx, const char **reason)
{
    if (tx->dp.bare) {
        *reason = "bare CR or LF in message";
        return "550 5.5.2 Bare CR or LF not allowed";
    }
    if (tx->dp.nul) {
        *reason = "NUL character in message";
        return "550 5.6.0 NUL character not allowed";
    }
    if (tx->dp.line_too_long) {
        *reason = "line longer than 1000 octets in message";
        return "500 5.5.2 Line too long";
    }
    if (tx->oversize == OVERSIZE_MESSAGE) {
        *reason = "message exceeds max_message_size";
        return "552 5.3.4 Message size exceeds fixed limit";
    }
    if (tx->oversize == OVERSIZE_HEADER) {
        *reason = "header section exceeds max_header_size";
        return "552 5.3.4 Message header exceeds max_header_size";
    }
    return NULL;
}

static void data_finish(struct session *s)
{
    struct smtp_tx *tx = s->tx;
    const char *reason = NULL, *decision = "reject";
    const char *err_reply = data_refusal(tx, &reason);
    struct ipc_header_from from;
    char rcpts[2048];

    if (err_reply == NULL) {
        /* No empty line: the whole message was header. */
        if (!tx->in_body && !tx->write_error)
            write_prelude(s, tx->hdrlen);
        if (!tx->write_error && tx->stagelen > 0 &&
            spool_put(tx->spool_fd, SPOOL_BODY, tx->stage, tx->stagelen) != 0) {
            log_err("session=%s client=%s spool write failed: %s", s->id, s->client_ip,
                    strerror(errno));
            tx->write_error = 1;
        }
        if (tx->write_error) {
            err_reply = "452 4.3.1 Insufficient system storage";
            reason = "spool write failed";
            decision = "tempfail";
        }
    }
    if (err_reply != NULL) {
        tx_rcpt_list(s, rcpts, sizeof(rcpts));
        req_audit(s, "data", decision, reason, rcpts, tx->msg_size);
        session_reply(s, "%s", err_reply);
        tx_end(s);
        return;
    }
    memset(&from, 0, sizeof(from));
    if (s->cfg->check_header_from && header_from_read(s, &from) != 0)
        return;
    data_commit(s, &from);
}

void data_input(struct session *s)
{
    struct smtp_tx *tx = s->tx;
    char out[SESS_INBUF + 2];
    size_t outlen, used;

    used = data_parse(&tx->dp, s->inbuf, s->inlen, out, &outlen);
    /* A message already refused is only read to its end, never stored. */
    if (outlen > 0 && !tx->dp.bare && !tx->dp.nul)
        data_output(s, out, outlen);
    memmove(s->inbuf, s->inbuf + used, s->inlen - used);
    s->inlen -= used;
    if (tx->dp.state == DS_END)
        data_finish(s);
}

/* ---- the answers that end the transaction ---------------------------------- */

/* A whole 5xx reply line ("550 5.7.1 ..."), as authz words a refusal. */
static int permanent_reply(const char *r)
{
    return r[0] == '5' && isdigit((unsigned char)r[1]) && isdigit((unsigned char)r[2]) &&
           r[3] == ' ' && r[4] != '\0' && ipc_text_clean(r);
}

void data_on_committed(struct session *s, int status, const char *qid, const char *why)
{
    struct smtp_tx *tx = s->tx;
    char rcpts[2048];

    if (status == IPC_QUEUE_REFUSED && strcmp(qid, tx->queue_id) == 0) {
        /* authz refused it (its header From) and wrote the row. */
        log_info("session=%s client=%s message refused: %s", s->id, s->client_ip, why);
        session_reply(s, "%s", permanent_reply(why) ? why : "550 5.7.1 Message refused");
    } else if (status != IPC_QUEUE_OK || strcmp(qid, tx->queue_id) != 0) {
        tx_rcpt_list(s, rcpts, sizeof(rcpts));
        log_err("session=%s client=%s queue commit of %s failed: %s", s->id, s->client_ip,
                tx->queue_id, why);
        req_audit(s, "data", "tempfail", why[0] ? why : "queue commit failed", rcpts,
                  tx->msg_size);
        if (status == IPC_QUEUE_NOT_RECORDED)
            session_reply(s, "451 4.3.0 Message not queued: it could not be recorded; "
                             "try again later");
        else
            session_reply(s, "452 4.3.1 Insufficient system storage");
    } else if (s->detached) {
        /* Queued and recorded all the same: the client may send it again. */
        log_warn("session=%s client=%s queued id=%s user=%s from=<%s> nrcpt=%d size=%lld, "
                 "but the client left before the 250", s->id, s->client_ip, tx->queue_id,
                 s->user, tx->mail_from, tx->nrcpt, tx->msg_size);
    } else {
        /* The queue answers once the file and its accept row are durable (DESIGN §9):
         * the 250 follows at once. */
        log_info("session=%s client=%s queued id=%s user=%s from=<%s> nrcpt=%d size=%lld",
                 s->id, s->client_ip, tx->queue_id, s->user, tx->mail_from, tx->nrcpt,
                 tx->msg_size);
        session_reply(s, "250 2.0.0 Ok: queued as %s", tx->queue_id);
    }
    /* The file belongs to the queue now (or is gone): nothing to abort. */
    tx->spool_fd = -1;
    tx_end(s);
}
