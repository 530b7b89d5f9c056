#ifndef SUBMITD_IPC_CODEC_H
#define SUBMITD_IPC_CODEC_H

#include "ipc.h"

#include <stddef.h>
#include <stdint.h>

/*
 * One codec per message type between our processes (DESIGN §2): a struct with named
 * fields, and its encoder and decoder side by side in ipc_codec.c. Nothing else
 * puts or gets fields by position, so what crosses a boundary is reviewable here.
 *
 * Decoders check structure only: field kinds, sizes (a string longer than its
 * field is malformed), no NUL in strings, counts within their maximum, nothing
 * after the last field. A decoder returning -1 means the peer broke the protocol;
 * the receiver treats that as fatal. What the values mean (is this session
 * granted, is the sender owned, is there a CR in an address) is the receiver's
 * business, because a refusal there is an answer, not a protocol violation.
 *
 * Who may send what:
 *   smtp  -> authz   IDENTITY, PASSWORD, SENDER, AUTHZID, AUDIT, SESSION_END
 *   authz -> smtp    RESULT (also to an AUDIT sent with a request id)
 *   smtp  -> queue   OPEN, COMMIT, ABORT
 *   queue -> smtp    OPENED, COMMITTED
 *   queue -> authz   GRANT_CHECK (answered by GRANT), RELAY_AUDIT, ACCEPT (answered
 *                    by RESULT)
 *   master -> each   CTL_FILE (with its descriptor), CTL_RELOAD
 *   each -> master   CTL_READY (no fields), CTL_RELOADED
 * A session is named by its id only: authz answers for the user of its own grant.
 */

#define IPC_SESSION_MAX 32
#define IPC_IP_MAX 64
#define IPC_TLS_MAX 128
#define IPC_ADDR_MAX 320
#define IPC_USER_MAX 128
#define IPC_REPLY_MAX 256
#define IPC_REASON_MAX 512
#define IPC_RCPTS_MAX 2048       /* a comma-separated recipient list in an audit row */
#define IPC_EVENT_MAX 32
#define IPC_DECISION_MAX 16
#define IPC_QID_MAX 32
#define IPC_PASSWORD_MAX 512
#define IPC_CHAIN_MAX 8          /* certificates sent for one client, leaf first */
#define IPC_FROM_MAX 16          /* addresses of one header From field */
#define IPC_RCPT_MAX 100000      /* recipients of one envelope */

/* IPC_AUTHZ_IDENTITY: the certificate chain as the client sent it, DER, leaf first;
 * ncert 0 when it sent none. On decode, cert[] points into the message buffer. */
struct ipc_identity {
    char session[IPC_SESSION_MAX];
    char client_ip[IPC_IP_MAX];
    char tls[IPC_TLS_MAX];               /* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
    int ncert;
    const unsigned char *cert[IPC_CHAIN_MAX];
    size_t cert_len[IPC_CHAIN_MAX];
};
int ipc_enc_identity(struct ipc_msg *m, uint64_t id, const struct ipc_identity *v);
int ipc_dec_identity(struct ipc_msg *m, struct ipc_identity *v);

/* IPC_AUTHZ_PASSWORD: AUTH PLAIN (auth_password). Wipe both sides after use. */
struct ipc_password {
    char session[IPC_SESSION_MAX];
    char client_ip[IPC_IP_MAX];
    char tls[IPC_TLS_MAX];
    char authcid[IPC_USER_MAX];
    char password[IPC_PASSWORD_MAX];
};
int ipc_enc_password(struct ipc_msg *m, uint64_t id, const struct ipc_password *v);
int ipc_dec_password(struct ipc_msg *m, struct ipc_password *v);

/* IPC_AUTHZ_SENDER: may the session's user send as address (MAIL FROM)? */
struct ipc_sender {
    char session[IPC_SESSION_MAX];
    char address[IPC_ADDR_MAX];
};
int ipc_enc_sender(struct ipc_msg *m, uint64_t id, const struct ipc_sender *v);
int ipc_dec_sender(struct ipc_msg *m, struct ipc_sender *v);

/* IPC_AUTHZ_AUTHZID: may the session's user act as authzid (the authorization
 * identity of AUTH EXTERNAL)? Only as itself: named by its user name or by an
 * address it owns. Never empty: "AUTH EXTERNAL =" needs no question. */
struct ipc_authzid {
    char session[IPC_SESSION_MAX];
    char authzid[IPC_ADDR_MAX];
};
int ipc_enc_authzid(struct ipc_msg *m, uint64_t id, const struct ipc_authzid *v);
int ipc_dec_authzid(struct ipc_msg *m, struct ipc_authzid *v);

/* The addresses of a message's From field, for check_header_from: 0 (no field to
 * check) to IPC_FROM_MAX. smtp reads them at the end of data and sends them with
 * COMMIT; the queue passes them to authz with ACCEPT, which refuses the message
 * unless the session's user owns every one. */
struct ipc_header_from {
    int naddr;
    char addr[IPC_FROM_MAX][IPC_ADDR_MAX];
};

/* IPC_AUTHZ_AUDIT: a row about a session. User and certificate columns come from
 * authz's grant for the session, never from smtp; client_ip and tls are used only
 * for a session without a grant (refused before an identity existed). */
struct ipc_audit {
    char session[IPC_SESSION_MAX];
    char client_ip[IPC_IP_MAX];
    char tls[IPC_TLS_MAX];
    char event[IPC_EVENT_MAX];
    char decision[IPC_DECISION_MAX];     /* accept, reject, tempfail */
    char reason[IPC_REASON_MAX];
    char mail_from[IPC_ADDR_MAX];
    char rcpt[IPC_RCPTS_MAX];
    char queue_id[IPC_QID_MAX];
    long long size;                      /* -1: none */
    long long nrcpt;                     /* recipients of a submission; 0 otherwise */
};
/* id 0: no answer. Any other id: authz answers with RESULT once the row is written
 * (ALLOW) or could not be (TEMPFAIL). The decision is reject or tempfail: accept rows
 * come from the queue (ACCEPT), which holds the message. */
int ipc_enc_audit(struct ipc_msg *m, uint64_t id, const struct ipc_audit *v);
int ipc_dec_audit(struct ipc_msg *m, struct ipc_audit *v);

/* IPC_AUTHZ_SESSION_END: the session is over; its grant goes. */
struct ipc_session_end {
    char session[IPC_SESSION_MAX];
};
int ipc_enc_session_end(struct ipc_msg *m, const struct ipc_session_end *v);
int ipc_dec_session_end(struct ipc_msg *m, struct ipc_session_end *v);

/* IPC_AUTHZ_RESULT: the answer to IDENTITY, PASSWORD, SENDER, HEADER_FROM and
 * AUTHZID. */
struct ipc_result {
    int decision;                        /* enum ipc_decision */
    char user[IPC_USER_MAX];             /* the granted user (IDENTITY, PASSWORD) */
    char reply[IPC_REPLY_MAX];           /* the SMTP reply of a refusal */
    uint64_t rcpt_budget;                /* SENDER: recipients left; UINT64_MAX: no limit */
};
int ipc_enc_result(struct ipc_msg *m, uint64_t id, const struct ipc_result *v);
int ipc_dec_result(struct ipc_msg *m, struct ipc_result *v);

/* IPC_QUEUE_OPEN (smtp -> queue) and IPC_AUTHZ_GRANT_CHECK (queue -> authz): an
 * envelope for a session. On decode rcpt is allocated: ipc_envelope_free(). */
struct ipc_envelope {
    char session[IPC_SESSION_MAX];
    char mail_from[IPC_ADDR_MAX];
    int nrcpt;
    char (*rcpt)[IPC_ADDR_MAX];
};
int ipc_enc_envelope(struct ipc_msg *m, enum ipc_type type, uint64_t id,
                     const struct ipc_envelope *v);
int ipc_dec_envelope(struct ipc_msg *m, struct ipc_envelope *v);
void ipc_envelope_free(struct ipc_envelope *v);

/* IPC_AUTHZ_GRANT: authz's answer to GRANT_CHECK. The user and client address
 * are authz's own, from the grant; the queue writes them into the spool file. */
struct ipc_grant {
    int decision;                        /* enum ipc_decision */
    char user[IPC_USER_MAX];
    char client_ip[IPC_IP_MAX];
    char reason[IPC_REASON_MAX];
};
int ipc_enc_grant(struct ipc_msg *m, uint64_t id, const struct ipc_grant *v);
int ipc_dec_grant(struct ipc_msg *m, struct ipc_grant *v);

/* IPC_QUEUE_OPENED and IPC_QUEUE_COMMITTED: status 0 is success (OPENED then
 * carries the spool file's descriptor in m->fd). A failed COMMIT says why: the spool
 * could not store the message, authz could not record it (its accept row), or authz
 * refused it (its header From). */
enum { IPC_QUEUE_OK = 0, IPC_QUEUE_NOT_STORED = 1, IPC_QUEUE_NOT_RECORDED = 2,
       IPC_QUEUE_REFUSED = 3 /* authz refused it: the reason is the SMTP reply */ };
struct ipc_queue_answer {
    int status;
    char queue_id[IPC_QID_MAX];
    char reason[IPC_REASON_MAX];
};
int ipc_enc_queue_answer(struct ipc_msg *m, enum ipc_type type, uint64_t id,
                         const struct ipc_queue_answer *v);
int ipc_dec_queue_answer(struct ipc_msg *m, struct ipc_queue_answer *v);

/* IPC_QUEUE_COMMIT: the message is written; size is the bytes of its BODY records. */
struct ipc_commit {
    char queue_id[IPC_QID_MAX];
    uint64_t size;
    struct ipc_header_from from;
};
int ipc_enc_commit(struct ipc_msg *m, uint64_t id, const struct ipc_commit *v);
int ipc_dec_commit(struct ipc_msg *m, struct ipc_commit *v);

/* IPC_QUEUE_ABORT: the transaction ended without a commit; the file goes. */
struct ipc_abort {
    char queue_id[IPC_QID_MAX];
};
int ipc_enc_abort(struct ipc_msg *m, const struct ipc_abort *v);
int ipc_dec_abort(struct ipc_msg *m, struct ipc_abort *v);

/* IPC_AUTHZ_RELAY_AUDIT: a relay outcome (relayed, deferred, bounced) from queue. */
struct ipc_relay_audit {
    char session[IPC_SESSION_MAX];
    char event[IPC_EVENT_MAX];
    char reason[IPC_REASON_MAX];
    char user[IPC_USER_MAX];
    char client_ip[IPC_IP_MAX];
    char mail_from[IPC_ADDR_MAX];
    char rcpt[IPC_RCPTS_MAX];
    char queue_id[IPC_QID_MAX];
    long long size;
};
int ipc_enc_relay_audit(struct ipc_msg *m, const struct ipc_relay_audit *v);
int ipc_dec_relay_audit(struct ipc_msg *m, struct ipc_relay_audit *v);

/*
 * IPC_AUTHZ_ACCEPT: the queue holds a message ready to queue, fsynced. authz checks
 * its header From (DENY with the SMTP reply when an address is not the user's),
 * charges it against the user's hourly limits and writes its accept row, and answers
 * RESULT once both are committed durably (ALLOW) or could not be (TEMPFAIL). Only then does
 * the queue make the file relayable and let smtp send the 250. The user and client
 * are the ones authz confirmed for the envelope at OPEN; the row's identity columns
 * come from authz's grant while the session has one.
 */
struct ipc_accept {
    char session[IPC_SESSION_MAX];
    char user[IPC_USER_MAX];
    char client_ip[IPC_IP_MAX];
    char queue_id[IPC_QID_MAX];
    char mail_from[IPC_ADDR_MAX];
    char rcpt[IPC_RCPTS_MAX];            /* comma-separated, "..." when cut short */
    uint64_t nrcpt;
    uint64_t size;                       /* the message's bytes */
    struct ipc_header_from from;
};
int ipc_enc_accept(struct ipc_msg *m, uint64_t id, const struct ipc_accept *v);
int ipc_dec_accept(struct ipc_msg *m, struct ipc_accept *v);

/* 1 when s has no byte below 0x20 and no DEL: safe in an envelope, a spool record
 * or an SMTP command line. */
int ipc_text_clean(const char *s);

/*
 * The control channel between the master and each worker. A reload is a series of
 * CTL_FILE messages, each carrying a descriptor the master (root) opened: the
 * configuration file and, for smtp, the server certificate, its key and client_ca,
 * which the unprivileged process could not open itself; then CTL_RELOAD. The worker
 * answers CTL_RELOADED with ok 1, or 0 and the reason it kept its settings.
 */
enum ctl_file_kind { CTL_FILE_CONF = 0, CTL_FILE_CERT, CTL_FILE_KEY, CTL_FILE_CLIENT_CA,
                     CTL_FILE_KINDS };
int ipc_enc_ctl_file(struct ipc_msg *m, int kind, int fd);
int ipc_dec_ctl_file(struct ipc_msg *m, int *kind);

struct ipc_reloaded {
    int ok;
    char why[IPC_REASON_MAX];
};
int ipc_enc_ctl_reloaded(struct ipc_msg *m, const struct ipc_reloaded *v);
int ipc_dec_ctl_reloaded(struct ipc_msg *m, struct ipc_reloaded *v);

#endif
