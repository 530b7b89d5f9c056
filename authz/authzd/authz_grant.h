#ifndef SUBMITD_AUTHZ_GRANT_H
#define SUBMITD_AUTHZ_GRANT_H

#include "ipc_codec.h"

#include <stddef.h>
#include <stdint.h>

/*
 * What authz knows about each smtp session (DESIGN §2): created by the session's
 * IDENTITY request, ended by SESSION_END. It is the only source of a session's
 * user: smtp names sessions, never users, so a compromised smtp process can only
 * act for identities authz itself established from a verified certificate (or a
 * PAM password). Audit rows about the session take their user, address and
 * certificate columns from here.
 *
 * The table is bounded: an honest smtp process ends every session it starts, and
 * when one does not, the oldest sessions are forgotten first (their requests are
 * then refused as not granted).
 */
struct grant {
    char session[IPC_SESSION_MAX];
    uint64_t gen;                /* unique per record: a session name smtp ended and
                                    used again is another record */
    char client_ip[IPC_IP_MAX];
    char tls[IPC_TLS_MAX];
    char sha256[65];             /* of the client certificate; "" without one */
    char subject[512];
    char cert_user[IPC_USER_MAX]; /* the user the certificate belongs to, even when
                                    refused (revoked, user disabled): for audit rows */
    char user[IPC_USER_MAX];     /* the granted user; "" while there is none */
    int cert_ok;                 /* the certificate identified user (PAM included) */
    int password_ok;             /* AUTH PLAIN accepted for user */
    int password_pending;        /* an AUTH PLAIN is with PAM: no second one meanwhile */
    int identity_pending;        /* the IDENTITY answer is not given yet */
    /* The current transaction: the sender authz approved, consumed by the queue's
     * GRANT_CHECK, and the recipient budget given with it. */
    char sender[IPC_ADDR_MAX];
    int has_sender;
    uint64_t rcpt_budget;
    /* Table links. */
    struct grant *hnext;
    struct grant *older, *newer;
};

/* Sizes the table for max sessions at once. Returns 0 or -1. */
int grant_init(size_t max);
/* The session's record, or NULL. */
struct grant *grant_find(const char *session);
/* A new, empty record for session (the oldest record goes when the table is full).
 * NULL when the session already has one or memory is short. */
struct grant *grant_create(const char *session);
/* Forgets the session (nothing when unknown). */
void grant_end(const char *session);
size_t grant_count(void);
void grant_free_all(void);

#endif
