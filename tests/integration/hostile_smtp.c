/*
 * A compromised smtp process, for tests/integration/test_compromised_smtp.py.
 *
 * Installed in place of submitd-smtp, it is started by the master with the real
 * program's descriptors. A child process drops to smtp_user, as the real smtp
 * process does, and plays the attacker on the authz and queue channels: requests
 * for sessions authz never granted, another user's sender, a second identity for a
 * session, CR/LF in the envelope, a record after BODY, an envelope rewritten
 * through the descriptor, a descriptor kept past COMMIT, a commit of a file it
 * never opened, a message over max_message_size, two AUTH PLAIN at once, a
 * session name used again while PAM decides about its identity. Every outcome is written to $SUBMITD_HOSTILE_REPORT as
 *     name<TAB>outcome<TAB>detail
 * (outcome: allow, deny, tempfail, refused, ok, error) for the test to judge.
 * Then the parent becomes the real smtp process ($SUBMITD_HOSTILE_REAL), so the
 * test can check that the next honest client is served by the same authz and
 * queue processes.
 *
 * Certificates come from $SUBMITD_HOSTILE_ALICE and $SUBMITD_HOSTILE_BOB (PEM):
 * they are public, and a compromised smtp process sees every client's.
 */
#include "config.h"
#include "ipc.h"
#include "ipc_codec.h"
#include "privdrop.h"
#include "spool.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *report;
static int authz_fd = -1, queue_fd = -1;
static struct ipc_msg *m;
static uint64_t next_id = 1;

static void note(const char *name, const char *outcome, const char *detail)
{
    fprintf(report, "%s\t%s\t%s\n", name, outcome, detail ? detail : "");
    fflush(report);
}

static const char *decision_word(int d)
{
    return d == IPC_ALLOW ? "allow" : d == IPC_DENY ? "deny" : "tempfail";
}

/* Sends m on fd and receives the answer of type want into m. 0, or -1. */
static int ask(int fd, enum ipc_type want)
{
    if (ipc_send(fd, m) != 0)
        return -1;
    for (;;) {
        int r = ipc_recv(fd, m);
        if (r <= 0)
            return -1;
        if (m->type == want)
            return 0;
    }
}

static int authz_result(const char *name, struct ipc_result *r)
{
    if (ask(authz_fd, IPC_AUTHZ_RESULT) != 0 || ipc_dec_result(m, r) != 0) {
        note(name, "error", "no answer from authz");
        return -1;
    }
    note(name, decision_word(r->decision), r->reply);
    return 0;
}

/* Sends an IDENTITY for session with the certificate at pem_path (none when NULL),
 * without waiting for the answer. 0, or -1. */
static int identity_send(const char *session, const char *pem_path)
{
    struct ipc_identity v;
    FILE *f = pem_path ? fopen(pem_path, "r") : NULL;
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int len = x ? i2d_X509(x, &der) : -1, rc;

    if (f != NULL)
        fclose(f);
    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, session, sizeof(v.session));
    str_lcpy(v.client_ip, "203.0.113.66", sizeof(v.client_ip));
    str_lcpy(v.tls, "TLSv1.3 TLS_AES_256_GCM_SHA384", sizeof(v.tls));
    if (len > 0) {
        v.ncert = 1;
        v.cert[0] = der;
        v.cert_len[0] = (size_t)len;
    }
    rc = ipc_enc_identity(m, next_id++, &v) == 0 && ipc_send(authz_fd, m) == 0 ? 0 : -1;
    OPENSSL_free(der);
    X509_free(x);
    return rc;
}

/* The next answer from authz into r (its request id stays in m->id). 0, or -1. */
static int next_result(struct ipc_result *r)
{
    int got;

    while ((got = ipc_recv(authz_fd, m)) > 0 && m->type != IPC_AUTHZ_RESULT)
        ;
    return got > 0 && ipc_dec_result(m, r) == 0 ? 0 : -1;
}

static void identity(const char *name, const char *session, const char *pem_path)
{
    struct ipc_result r;

    if (identity_send(session, pem_path) != 0)
        note(name, "error", "cannot send");
    else if (next_result(&r) != 0)
        note(name, "error", "no answer from authz");
    else
        note(name, decision_word(r.decision), r.reply);
}

static void sender(const char *name, const char *session, const char *addr)
{
    struct ipc_sender v;
    struct ipc_result r;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, session, sizeof(v.session));
    str_lcpy(v.address, addr, sizeof(v.address));
    if (ipc_enc_sender(m, next_id++, &v) != 0)
        note(name, "error", "cannot encode");
    else
        (void)authz_result(name, &r);
}

/* OPEN; returns the descriptor (queue id in qid) or -1 after noting the refusal. */
static int open_msg(const char *name, const char *session, const char *from, char *qid,
                    size_t qidlen)
{
    struct ipc_envelope v;
    struct ipc_queue_answer a;
    char rcpt[1][IPC_ADDR_MAX];

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, session, sizeof(v.session));
    str_lcpy(v.mail_from, from, sizeof(v.mail_from));
    str_lcpy(rcpt[0], "victim@example.net", sizeof(rcpt[0]));
    v.nrcpt = 1;
    v.rcpt = rcpt;
    if (ipc_enc_envelope(m, IPC_QUEUE_OPEN, next_id++, &v) != 0 ||
        ask(queue_fd, IPC_QUEUE_OPENED) != 0 || ipc_dec_queue_answer(m, &a) != 0) {
        note(name, "error", "no answer from the queue");
        return -1;
    }
    if (a.status != 0 || m->fd < 0) {
        note(name, "refused", a.reason);
        if (m->fd >= 0)
            close(m->fd);
        return -1;
    }
    str_lcpy(qid, a.queue_id, qidlen);
    return m->fd;
}

/* COMMIT of qid; header_from: the From address to have authz check, or NULL. */
static void commit_from(const char *name, const char *qid, uint64_t size,
                        const char *header_from)
{
    struct ipc_commit *v = calloc(1, sizeof(*v));
    struct ipc_queue_answer a;

    str_lcpy(v->queue_id, qid, sizeof(v->queue_id));
    v->size = size;
    if (header_from != NULL) {
        v->from.naddr = 1;
        str_lcpy(v->from.addr[0], header_from, sizeof(v->from.addr[0]));
    }
    if (ipc_enc_commit(m, next_id++, v) != 0 || ask(queue_fd, IPC_QUEUE_COMMITTED) != 0 ||
        ipc_dec_queue_answer(m, &a) != 0) {
        note(name, "error", "no answer from the queue");
        free(v);
        return;
    }
    free(v);
    note(name, a.status == 0 ? "ok" : "refused", a.reason);
}

static void commit(const char *name, const char *qid, uint64_t size)
{
    commit_from(name, qid, size, NULL);
}

/* A message from header_from with a marker the test looks for upstream. */
static size_t body_from(int fd, const char *header_from, const char *marker)
{
    char text[512];

    str_fmt(text, sizeof(text), "From: %s\r\nSubject: %s\r\n\r\n%s\r\n", header_from, marker,
            marker);
    return spool_put(fd, SPOOL_BODY, text, strlen(text)) == 0 ? strlen(text) : 0;
}

static size_t body(int fd, const char *marker)
{
    return body_from(fd, "alice@example.com", marker);
}

static void end_session(const char *session)
{
    struct ipc_session_end v;

    str_lcpy(v.session, session, sizeof(v.session));
    if (ipc_enc_session_end(m, &v) == 0)
        (void)ipc_send(authz_fd, m);
}

/*
 * In one burst, under one session name: an IDENTITY with first_pem, SESSION_END,
 * and an IDENTITY with second_pem (no certificate when NULL). The first goes to
 * PAM, whose verdict comes after the name has a new record: it must not land on
 * it. Notes each answer as NAME_first and NAME_second (detail: the user).
 */
static void reused_session(const char *name, const char *session, const char *first_pem,
                           const char *second_pem)
{
    struct ipc_session_end e;
    struct ipc_result r;
    uint64_t first_id = next_id;
    char step[96];

    memset(&e, 0, sizeof(e));
    str_lcpy(e.session, session, sizeof(e.session));
    if (identity_send(session, first_pem) != 0 || ipc_enc_session_end(m, &e) != 0 ||
        ipc_send(authz_fd, m) != 0 || identity_send(session, second_pem) != 0) {
        note(name, "error", "cannot send");
        return;
    }
    for (int k = 0; k < 2; k++) {
        if (next_result(&r) != 0) {
            note(name, "error", "no answer from authz");
            return;
        }
        str_fmt(step, sizeof(step), "%s_%s", name, m->id == first_id ? "first" : "second");
        note(step, decision_word(r.decision), r.user);
    }
}

/* Two AUTH PLAIN requests for one session in one burst (auth_password = fallback,
 * a session without a certificate): the second must not reach PAM while the first
 * is there. Notes the answers as password_first and password_second. */
static void two_passwords(void)
{
    struct ipc_password v;
    struct ipc_result r;
    uint64_t first_id;
    const char *users[2] = {"alice", "bob"};

    identity("identity_no_cert", "h-pw", NULL);
    first_id = next_id;
    for (int i = 0; i < 2; i++) {
        memset(&v, 0, sizeof(v));
        str_lcpy(v.session, "h-pw", sizeof(v.session));
        str_lcpy(v.client_ip, "203.0.113.66", sizeof(v.client_ip));
        str_lcpy(v.authcid, users[i], sizeof(v.authcid));
        str_lcpy(v.password, "not-the-password", sizeof(v.password));
        if (ipc_enc_password(m, next_id++, &v) != 0 || ipc_send(authz_fd, m) != 0) {
            note("password", "error", "cannot send");
            return;
        }
    }
    for (int k = 0; k < 2; k++) {
        if (next_result(&r) != 0) {
            note("password", "error", "no answer from authz");
            return;
        }
        note(m->id == first_id ? "password_first" : "password_second",
             decision_word(r.decision), r.reply);
    }
}

/* A message of session h-alice whose From field is header_from, committed with
 * reported as the From address smtp claims (none when NULL). */
static void from_step(const char *sender_step, const char *commit_step, const char *header_from,
                      const char *marker, const char *reported)
{
    char qid[IPC_QID_MAX];
    size_t n;
    int fd;

    sender(sender_step, "h-alice", "alice@example.com");
    fd = open_msg(sender_step, "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd < 0)
        return;
    n = body_from(fd, header_from, marker);
    close(fd);
    commit_from(commit_step, qid, n, reported);
}

static void attack(const struct config *cfg, const char *alice_pem, const char *bob_pem)
{
    char qid[IPC_QID_MAX], path[PATH_MAX];
    size_t n;
    int fd, fd2;

    /* The spool is not ours: no way around the descriptors the queue hands out. */
    str_fmt(path, sizeof(path), "%s/queue", cfg->spool);
    fd = open(path, O_RDONLY | O_DIRECTORY);
    note("spool_directory", fd >= 0 ? "ok" : "refused", strerror(errno));
    if (fd >= 0)
        close(fd);

    identity("identity_alice", "h-alice", alice_pem);
    identity("identity_bob", "h-bob", bob_pem);
    identity("identity_again", "h-alice", bob_pem);
    sender("sender_ungranted", "h-ghost", "alice@example.com");
    sender("sender_other_user", "h-alice", "bob@example.com");
    sender("sender_crlf", "h-alice", "alice@example.com\r\nRCPT TO:<x@evil.test>");

    fd = open_msg("open_ungranted", "h-ghost", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0)
        close(fd);
    sender("sender_alice", "h-alice", "alice@example.com");
    fd = open_msg("open_other_sender", "h-alice", "bob@example.com", qid, sizeof(qid));
    if (fd >= 0)
        close(fd);
    fd = open_msg("open_crlf", "h-alice", "alice@example.com\r\nRCPT TO:<x@evil.test>", qid,
                  sizeof(qid));
    if (fd >= 0)
        close(fd);

    /* A record after BODY: a second envelope sender. */
    sender("sender_alice_2", "h-alice", "alice@example.com");
    fd = open_msg("open_for_record_after_body", "h-alice", "alice@example.com", qid,
                  sizeof(qid));
    if (fd >= 0) {
        n = body(fd, "HOSTILE-RECORD-AFTER-BODY");
        (void)spool_put_str(fd, SPOOL_FROM, "ceo@example.com");
        close(fd);
        /* Announced with room for the record, so that its type is what is refused
         * (a file larger than the size announced is refused before it is read). */
        commit("commit_record_after_body", qid, n + 64);
    }
    /* The approved sender was used up by that OPEN. */
    fd = open_msg("open_without_sender", "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0)
        close(fd);

    /* The envelope rewritten through the descriptor (O_APPEND can be turned off). */
    sender("sender_alice_3", "h-alice", "alice@example.com");
    fd = open_msg("open_for_rewrite", "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0) {
        n = body(fd, "HOSTILE-REWRITTEN-ENVELOPE");
        if (fcntl(fd, F_SETFL, 0) != 0 || pwrite(fd, "X", 1, 6) != 1)
            note("rewrite_envelope", "error", strerror(errno));
        close(fd);
        commit("commit_rewritten_envelope", qid, n);
    }

    /* A descriptor kept past COMMIT could change the message after the check. */
    sender("sender_alice_4", "h-alice", "alice@example.com");
    fd = open_msg("open_for_kept_descriptor", "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0) {
        n = body(fd, "HOSTILE-KEPT-DESCRIPTOR");
        fd2 = dup(fd);
        close(fd);
        commit("commit_kept_descriptor", qid, n);
        close(fd2);
    }
    commit("commit_not_opened", "0000000000000000NOPE", 10);

    /* More than max_message_size (and the fields smtp adds) in well-formed records:
     * smtp's limit is smtp's to enforce, so the queue checks it again. */
    sender("sender_alice_7", "h-alice", "alice@example.com");
    fd = open_msg("open_for_oversize", "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0) {
        size_t big = (size_t)cfg->max_message_size + SPOOL_ADDED_MAX + 1;
        char *text = malloc(big);

        n = 0;
        if (text != NULL) {
            int k = snprintf(text, big, "Subject: HOSTILE-OVERSIZE\r\n\r\n");

            memset(text + k, 'o', big - (size_t)k);
            for (size_t i = (size_t)k + 998; i + 2 < big; i += 1000)
                memcpy(text + i, "\r\n", 2);
            memcpy(text + big - 2, "\r\n", 2);
            if (spool_put(fd, SPOOL_BODY, text, big) == 0)
                n = big;
        }
        free(text);
        close(fd);
        commit("commit_oversize", qid, n);
    }

    /* A header From of another user, reported with the commit: authz checks it
     * before it records the message, whatever smtp decided. */
    from_step("sender_alice_6", "commit_header_from_other_user", "bob@example.com",
              "HOSTILE-FOREIGN-FROM", "bob@example.com");
    /* The same, and smtp reports the user's own address, or none: the queue reads
     * the From field of the message itself. */
    from_step("sender_alice_8", "commit_header_from_reported_as_own", "CEO <ceo@example.org>",
              "HOSTILE-HIDDEN-FROM", "alice@example.com");
    from_step("sender_alice_9", "commit_header_from_unreported",
              "alice@example.com, ceo@example.org", "HOSTILE-UNREPORTED-FROM", NULL);
    /* A From field behind a bare CR, which the queue's reading would not see as a
     * line of its own and a later reader might: refused, as smtp refuses bare CR. */
    from_step("sender_alice_11", "commit_from_behind_bare_cr",
              "alice@example.com\r\nX-Note: x\rFrom: ceo@example.org", "HOSTILE-BARE-CR",
              "alice@example.com");
    /* Two From fields: smtp would have refused the message; so does the queue. */
    from_step("sender_alice_10", "commit_two_from_fields",
              "alice@example.com\r\nFrom: ceo@example.org", "HOSTILE-TWO-FROMS",
              "alice@example.com");

    /* The positive control: a correct exchange is accepted, so the refusals above
     * are about what was wrong, not about how this program talks. */
    sender("sender_alice_5", "h-alice", "alice@example.com");
    fd = open_msg("open_control", "h-alice", "alice@example.com", qid, sizeof(qid));
    if (fd >= 0) {
        n = body(fd, "HOSTILE-CONTROL-MESSAGE");
        close(fd);
        commit("commit_control", qid, n);
    }
    /* An accept row claiming a big submission for bob: accepted messages are the
     * queue's word, so authz refuses it (a reject row that says why), and rows do
     * not count against a rate limit (only the queue's accepts do). */
    {
        struct ipc_audit *a = calloc(1, sizeof(*a));
        struct ipc_result r;

        str_lcpy(a->session, "h-bob", sizeof(a->session));
        str_lcpy(a->event, "submission", sizeof(a->event));
        str_lcpy(a->decision, "accept", sizeof(a->decision));
        str_lcpy(a->reason, "HOSTILE-AUDIT-ROW", sizeof(a->reason));
        str_lcpy(a->queue_id, "0000000000000000FAKE", sizeof(a->queue_id));
        a->size = 100;
        a->nrcpt = 1000;
        if (ipc_enc_audit(m, next_id++, a) != 0 || ask(authz_fd, IPC_AUTHZ_RESULT) != 0 ||
            ipc_dec_result(m, &r) != 0)
            note("audit_fake_submission", "error", "no answer from authz");
        else
            note("audit_fake_submission", decision_word(r.decision), r.reply);
        free(a);
    }
    /* A session name used again while PAM decides about its first identity. */
    reused_session("reused_other_user", "h-reused", alice_pem, bob_pem);
    sender("reused_other_user_sender_alice", "h-reused", "alice@example.com");
    sender("reused_other_user_sender_bob", "h-reused", "bob@example.com");
    reused_session("reused_no_cert", "h-reused-nocert", alice_pem, NULL);
    sender("reused_no_cert_sender_alice", "h-reused-nocert", "alice@example.com");
    two_passwords();
    end_session("h-pw");
    end_session("h-alice");
    end_session("h-bob");
    end_session("h-reused");
    end_session("h-reused-nocert");
    note("done", "ok", "");
}

int main(int argc, char **argv)
{
    struct config cfg;
    const char *conf = CONFIG_DEFAULT_PATH, *real = getenv("SUBMITD_HOSTILE_REAL");
    const char *out = getenv("SUBMITD_HOSTILE_REPORT");
    char err[1024];
    pid_t pid;
    int opt, status;

    while ((opt = getopt(argc, argv, "c:fl:L:a:q:m:")) != -1) {
        if (opt == 'c')
            conf = optarg;
        else if (opt == 'a' && authz_fd < 0)
            authz_fd = atoi(optarg);
        else if (opt == 'q' && queue_fd < 0)
            queue_fd = atoi(optarg);
    }
    if (real == NULL || out == NULL || config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "hostile-smtp: needs SUBMITD_HOSTILE_REAL, SUBMITD_HOSTILE_REPORT and "
                        "a configuration\n");
        return 2;
    }
    pid = fork();
    if (pid == 0) {
        report = fopen(out, "w");
        m = malloc(sizeof(*m));
        if (report == NULL || m == NULL)
            _exit(3);
        privdrop(cfg.smtp_user);
        attack(&cfg, getenv("SUBMITD_HOSTILE_ALICE"), getenv("SUBMITD_HOSTILE_BOB"));
        fclose(report);
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return 3;
    /* Become the real smtp process with the same descriptors. */
    execv(real, argv);
    fprintf(stderr, "hostile-smtp: cannot run %s: %s\n", real, strerror(errno));
    return 127;
}
