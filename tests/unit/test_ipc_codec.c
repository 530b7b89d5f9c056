/*
 * Unit tests of submitd/lib/ipc_codec.c: every message type survives a round trip
 * field by field, and every decoder refuses what its peer may not send (a
 * truncated message, trailing bytes, a count beyond its maximum, a string longer
 * than its field, the wrong field kind).
 */
#include "ipc_codec.h"
#include "unit.h"
#include "util.h"

#include <stdlib.h>

static struct ipc_msg *m;

#define SET(field, text) str_lcpy(field, text, sizeof(field))

/* Rewinds m for decoding, as ipc_recv leaves a received message. */
static void rewind_msg(void)
{
    m->rpos = 16;
}

/* Decodes with dec after cutting the last byte off: must fail. */
#define CHECK_TRUNCATED(dec, out)                                                   \
    do {                                                                            \
        uint32_t len_ = m->len;                                                     \
        m->len = len_ - 1;                                                          \
        rewind_msg();                                                               \
        CHECK(dec(m, out) != 0);                                                    \
        m->len = len_;                                                              \
    } while (0)

/* Decodes with dec after appending a stray field: must fail. */
#define CHECK_TRAILING(dec, out)                                                    \
    do {                                                                            \
        uint32_t len_ = m->len;                                                     \
        CHECK(ipc_put_u64(m, 1) == 0);                                              \
        rewind_msg();                                                               \
        CHECK(dec(m, out) != 0);                                                    \
        m->len = len_;                                                              \
    } while (0)

TEST(test_identity_round_trip)
{
    static const unsigned char leaf[] = { 0x30, 0x00, 0x00, 0x41 }, ca[] = { 0x30, 0x01 };
    struct ipc_identity in, out;

    memset(&in, 0, sizeof(in));
    SET(in.session, "0123456789abcdef");
    SET(in.client_ip, "2001:db8::1");
    SET(in.tls, "TLSv1.3 TLS_AES_128_GCM_SHA256");
    in.ncert = 2;
    in.cert[0] = leaf;
    in.cert_len[0] = sizeof(leaf);
    in.cert[1] = ca;
    in.cert_len[1] = sizeof(ca);
    CHECK(ipc_enc_identity(m, 42, &in) == 0);
    CHECK(m->type == IPC_AUTHZ_IDENTITY && m->id == 42);
    rewind_msg();
    CHECK(ipc_dec_identity(m, &out) == 0);
    CHECK_STR(out.session, in.session);
    CHECK_STR(out.client_ip, in.client_ip);
    CHECK_STR(out.tls, in.tls);
    CHECK(out.ncert == 2);
    /* DER may hold NUL bytes: they arrive intact. */
    CHECK(out.cert_len[0] == sizeof(leaf) && memcmp(out.cert[0], leaf, sizeof(leaf)) == 0);
    CHECK(out.cert_len[1] == sizeof(ca) && memcmp(out.cert[1], ca, sizeof(ca)) == 0);
    CHECK_TRUNCATED(ipc_dec_identity, &out);
    CHECK_TRAILING(ipc_dec_identity, &out);

    in.ncert = 0;
    CHECK(ipc_enc_identity(m, 1, &in) == 0);
    rewind_msg();
    CHECK(ipc_dec_identity(m, &out) == 0 && out.ncert == 0);
    in.ncert = IPC_CHAIN_MAX + 1;
    CHECK(ipc_enc_identity(m, 1, &in) != 0);
}

TEST(test_identity_count_beyond_maximum)
{
    struct ipc_identity out;

    ipc_init(m, IPC_AUTHZ_IDENTITY, 1);
    ipc_put_str(m, "s");
    ipc_put_str(m, "ip");
    ipc_put_str(m, "tls");
    ipc_put_u64(m, IPC_CHAIN_MAX + 1);
    for (int i = 0; i <= IPC_CHAIN_MAX; i++)
        ipc_put_bytes(m, "x", 1);
    rewind_msg();
    CHECK(ipc_dec_identity(m, &out) != 0);
    /* A string where bytes belong. */
    ipc_init(m, IPC_AUTHZ_IDENTITY, 1);
    ipc_put_str(m, "s");
    ipc_put_str(m, "ip");
    ipc_put_str(m, "tls");
    ipc_put_u64(m, 1);
    ipc_put_str(m, "x");
    rewind_msg();
    CHECK(ipc_dec_identity(m, &out) != 0);
}

TEST(test_password_round_trip)
{
    struct ipc_password in, out;

    memset(&in, 0, sizeof(in));
    SET(in.session, "s1");
    SET(in.client_ip, "192.0.2.7");
    SET(in.tls, "TLSv1.2 X");
    SET(in.authcid, "alice");
    SET(in.password, "correct horse");
    CHECK(ipc_enc_password(m, 7, &in) == 0);
    rewind_msg();
    CHECK(ipc_dec_password(m, &out) == 0);
    CHECK_STR(out.authcid, "alice");
    CHECK_STR(out.password, "correct horse");
    CHECK_STR(out.client_ip, "192.0.2.7");
    CHECK_TRUNCATED(ipc_dec_password, &out);
    CHECK_TRAILING(ipc_dec_password, &out);
    /* An empty password is not a request. */
    in.password[0] = '\0';
    CHECK(ipc_enc_password(m, 7, &in) == 0);
    rewind_msg();
    CHECK(ipc_dec_password(m, &out) != 0);
}

TEST(test_sender_and_commit_header_from_round_trip)
{
    struct ipc_sender s_in, s_out;
    struct ipc_commit *h_in = calloc(1, sizeof(*h_in)), *h_out = calloc(1, sizeof(*h_out));

    memset(&s_in, 0, sizeof(s_in));
    SET(s_in.session, "abc");
    SET(s_in.address, "alice@example.com");
    CHECK(ipc_enc_sender(m, 3, &s_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_sender(m, &s_out) == 0);
    CHECK_STR(s_out.session, "abc");
    CHECK_STR(s_out.address, "alice@example.com");
    CHECK_TRUNCATED(ipc_dec_sender, &s_out);
    CHECK_TRAILING(ipc_dec_sender, &s_out);

    /* The header From addresses travel with COMMIT (0 to IPC_FROM_MAX). */
    SET(h_in->queue_id, "Q1");
    h_in->size = 42;
    h_in->from.naddr = 2;
    SET(h_in->from.addr[0], "a@b");
    SET(h_in->from.addr[1], "c@d");
    CHECK(ipc_enc_commit(m, 4, h_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_commit(m, h_out) == 0);
    CHECK(h_out->size == 42 && h_out->from.naddr == 2);
    CHECK_STR(h_out->from.addr[1], "c@d");
    CHECK_TRUNCATED(ipc_dec_commit, h_out);
    CHECK_TRAILING(ipc_dec_commit, h_out);
    h_in->from.naddr = 0;
    CHECK(ipc_enc_commit(m, 4, h_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_commit(m, h_out) == 0 && h_out->from.naddr == 0);
    h_in->from.naddr = IPC_FROM_MAX + 1;
    CHECK(ipc_enc_commit(m, 4, h_in) != 0);
    h_in->from.naddr = -1;
    CHECK(ipc_enc_commit(m, 4, h_in) != 0);
    free(h_in);
    free(h_out);
}

TEST(test_authzid_round_trip)
{
    struct ipc_authzid in, out;
    char longer[IPC_ADDR_MAX + 1];

    memset(&in, 0, sizeof(in));
    SET(in.session, "0123456789abcdef");
    SET(in.authzid, "alice@example.com");
    CHECK(ipc_enc_authzid(m, 9, &in) == 0);
    CHECK(m->type == IPC_AUTHZ_AUTHZID && m->id == 9);
    rewind_msg();
    CHECK(ipc_dec_authzid(m, &out) == 0);
    CHECK_STR(out.session, in.session);
    CHECK_STR(out.authzid, "alice@example.com");
    CHECK_TRUNCATED(ipc_dec_authzid, &out);
    CHECK_TRAILING(ipc_dec_authzid, &out);

    /* An empty authzid is "AUTH EXTERNAL =", which needs no question: neither side
     * may send it. */
    in.authzid[0] = '\0';
    CHECK(ipc_enc_authzid(m, 9, &in) != 0);
    ipc_init(m, IPC_AUTHZ_AUTHZID, 9);
    CHECK(ipc_put_str(m, "abc") == 0 && ipc_put_str(m, "") == 0);
    rewind_msg();
    CHECK(ipc_dec_authzid(m, &out) != 0);

    /* Longer than any address: malformed. */
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    ipc_init(m, IPC_AUTHZ_AUTHZID, 9);
    CHECK(ipc_put_str(m, "abc") == 0 && ipc_put_str(m, longer) == 0);
    rewind_msg();
    CHECK(ipc_dec_authzid(m, &out) != 0);
}

TEST(test_audit_and_session_end_round_trip)
{
    struct ipc_audit *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
    struct ipc_session_end e_in, e_out;

    SET(in->session, "s");
    SET(in->client_ip, "198.51.100.1");
    SET(in->event, "submission");
    SET(in->decision, "accept");
    SET(in->reason, "why");
    SET(in->mail_from, "a@b");
    SET(in->rcpt, "c@d,e@f");
    SET(in->queue_id, "Q1");
    in->size = -1;
    in->nrcpt = 2;
    CHECK(ipc_enc_audit(m, 0, in) == 0);
    rewind_msg();
    CHECK(ipc_dec_audit(m, out) == 0);
    CHECK(out->size == -1 && out->nrcpt == 2);
    CHECK_STR(out->rcpt, "c@d,e@f");
    CHECK_STR(out->decision, "accept");
    CHECK_TRUNCATED(ipc_dec_audit, out);
    CHECK_TRAILING(ipc_dec_audit, out);
    in->size = 12345;
    CHECK(ipc_enc_audit(m, 0, in) == 0);
    rewind_msg();
    CHECK(ipc_dec_audit(m, out) == 0 && out->size == 12345);

    SET(e_in.session, "gone");
    CHECK(ipc_enc_session_end(m, &e_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_session_end(m, &e_out) == 0);
    CHECK_STR(e_out.session, "gone");
    CHECK_TRAILING(ipc_dec_session_end, &e_out);
    free(in);
    free(out);
}

TEST(test_result_round_trip)
{
    struct ipc_result in, out;

    memset(&in, 0, sizeof(in));
    in.decision = IPC_TEMPFAIL;
    SET(in.user, "bob");
    SET(in.reply, "454 4.7.0 Temporary authentication failure");
    in.rcpt_budget = UINT64_MAX;
    CHECK(ipc_enc_result(m, 9, &in) == 0);
    rewind_msg();
    CHECK(ipc_dec_result(m, &out) == 0);
    CHECK(out.decision == IPC_TEMPFAIL && out.rcpt_budget == UINT64_MAX);
    CHECK_STR(out.user, "bob");
    CHECK_TRUNCATED(ipc_dec_result, &out);
    CHECK_TRAILING(ipc_dec_result, &out);
    /* A decision outside the enum. */
    in.decision = 3;
    CHECK(ipc_enc_result(m, 9, &in) == 0);
    rewind_msg();
    CHECK(ipc_dec_result(m, &out) != 0);
}

TEST(test_envelope_round_trip)
{
    struct ipc_envelope in, out;

    memset(&in, 0, sizeof(in));
    SET(in.session, "s2");
    SET(in.mail_from, "alice@example.com");
    in.nrcpt = 3;
    in.rcpt = calloc(3, sizeof(*in.rcpt));
    SET(in.rcpt[0], "x@y");
    SET(in.rcpt[1], "y@z");
    SET(in.rcpt[2], "z@x");
    CHECK(ipc_enc_envelope(m, IPC_QUEUE_OPEN, 5, &in) == 0);
    CHECK(m->type == IPC_QUEUE_OPEN);
    rewind_msg();
    CHECK(ipc_dec_envelope(m, &out) == 0);
    CHECK(out.nrcpt == 3);
    CHECK_STR(out.rcpt[2], "z@x");
    CHECK_STR(out.mail_from, "alice@example.com");
    ipc_envelope_free(&out);
    CHECK(out.rcpt == NULL);
    CHECK(ipc_enc_envelope(m, IPC_AUTHZ_GRANT_CHECK, 5, &in) == 0);
    CHECK(m->type == IPC_AUTHZ_GRANT_CHECK);
    CHECK_TRUNCATED(ipc_dec_envelope, &out);
    CHECK_TRAILING(ipc_dec_envelope, &out);
    CHECK(ipc_enc_envelope(m, IPC_QUEUE_COMMIT, 5, &in) != 0);
    in.nrcpt = 0;
    CHECK(ipc_enc_envelope(m, IPC_QUEUE_OPEN, 5, &in) != 0);
    ipc_envelope_free(&in);
}

TEST(test_envelope_count_larger_than_the_message)
{
    struct ipc_envelope out;

    /* A count of recipients the message cannot hold is refused before any
     * allocation is made for it. */
    ipc_init(m, IPC_QUEUE_OPEN, 1);
    ipc_put_str(m, "s");
    ipc_put_str(m, "a@b");
    ipc_put_u64(m, IPC_RCPT_MAX);
    ipc_put_str(m, "c@d");
    rewind_msg();
    CHECK(ipc_dec_envelope(m, &out) != 0);
    CHECK(out.rcpt == NULL);
    ipc_init(m, IPC_QUEUE_OPEN, 1);
    ipc_put_str(m, "s");
    ipc_put_str(m, "a@b");
    ipc_put_u64(m, (uint64_t)IPC_RCPT_MAX + 1);
    rewind_msg();
    CHECK(ipc_dec_envelope(m, &out) != 0);
}

TEST(test_grant_and_queue_answers_round_trip)
{
    struct ipc_grant g_in, g_out;
    struct ipc_queue_answer q_in, q_out;
    struct ipc_commit c_in, c_out;
    struct ipc_abort a_in, a_out;

    memset(&g_in, 0, sizeof(g_in));
    g_in.decision = IPC_ALLOW;
    SET(g_in.user, "alice");
    SET(g_in.client_ip, "127.0.0.1");
    CHECK(ipc_enc_grant(m, 11, &g_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_grant(m, &g_out) == 0);
    CHECK(g_out.decision == IPC_ALLOW);
    CHECK_STR(g_out.user, "alice");
    CHECK_STR(g_out.client_ip, "127.0.0.1");
    CHECK_TRUNCATED(ipc_dec_grant, &g_out);
    CHECK_TRAILING(ipc_dec_grant, &g_out);

    memset(&q_in, 0, sizeof(q_in));
    q_in.status = 1;
    SET(q_in.queue_id, "ABC");
    SET(q_in.reason, "disk full");
    CHECK(ipc_enc_queue_answer(m, IPC_QUEUE_COMMITTED, 12, &q_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_queue_answer(m, &q_out) == 0);
    CHECK(q_out.status == 1);
    CHECK_STR(q_out.reason, "disk full");
    CHECK_TRUNCATED(ipc_dec_queue_answer, &q_out);
    CHECK_TRAILING(ipc_dec_queue_answer, &q_out);
    CHECK(ipc_enc_queue_answer(m, IPC_AUTHZ_RESULT, 12, &q_in) != 0);
    /* A commit that authz could not record keeps its own status for smtp's reply. */
    q_in.status = IPC_QUEUE_NOT_RECORDED;
    CHECK(ipc_enc_queue_answer(m, IPC_QUEUE_COMMITTED, 12, &q_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_queue_answer(m, &q_out) == 0 && q_out.status == IPC_QUEUE_NOT_RECORDED);
    q_in.status = IPC_QUEUE_REFUSED;
    CHECK(ipc_enc_queue_answer(m, IPC_QUEUE_COMMITTED, 12, &q_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_queue_answer(m, &q_out) == 0 && q_out.status == IPC_QUEUE_REFUSED);
    q_in.status = IPC_QUEUE_REFUSED + 1;
    CHECK(ipc_enc_queue_answer(m, IPC_QUEUE_COMMITTED, 12, &q_in) != 0);

    SET(c_in.queue_id, "ABC");
    c_in.size = 99;
    CHECK(ipc_enc_commit(m, 13, &c_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_commit(m, &c_out) == 0 && c_out.size == 99);
    CHECK_STR(c_out.queue_id, "ABC");
    CHECK_TRAILING(ipc_dec_commit, &c_out);

    SET(a_in.queue_id, "ABC");
    CHECK(ipc_enc_abort(m, &a_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_abort(m, &a_out) == 0);
    CHECK_STR(a_out.queue_id, "ABC");
    CHECK_TRAILING(ipc_dec_abort, &a_out);
}

TEST(test_relay_audit_and_accept_round_trip)
{
    struct ipc_relay_audit *in = calloc(1, sizeof(*in)), *out = calloc(1, sizeof(*out));
    struct ipc_accept *c_in = calloc(1, sizeof(*c_in)), *c_out = calloc(1, sizeof(*c_out));

    SET(in->session, "s");
    SET(in->event, "relayed");
    SET(in->user, "alice");
    SET(in->client_ip, "::1");
    SET(in->queue_id, "Q");
    in->size = 77;
    CHECK(ipc_enc_relay_audit(m, in) == 0);
    rewind_msg();
    CHECK(ipc_dec_relay_audit(m, out) == 0);
    CHECK(out->size == 77);
    CHECK_STR(out->event, "relayed");
    CHECK_STR(out->user, "alice");
    CHECK_TRUNCATED(ipc_dec_relay_audit, out);
    CHECK_TRAILING(ipc_dec_relay_audit, out);

    SET(c_in->session, "s");
    SET(c_in->user, "alice");
    SET(c_in->client_ip, "::1");
    SET(c_in->queue_id, "Q");
    SET(c_in->mail_from, "alice@example.com");
    SET(c_in->rcpt, "b@example.com,c@example.com");
    c_in->nrcpt = 4;
    c_in->size = 5000;
    CHECK(ipc_enc_accept(m, 9, c_in) == 0);
    CHECK(m->id == 9 && m->type == IPC_AUTHZ_ACCEPT);
    rewind_msg();
    CHECK(ipc_dec_accept(m, c_out) == 0 && c_out->nrcpt == 4 && c_out->size == 5000);
    CHECK_STR(c_out->user, "alice");
    CHECK_STR(c_out->client_ip, "::1");
    CHECK_STR(c_out->mail_from, "alice@example.com");
    CHECK_STR(c_out->rcpt, "b@example.com,c@example.com");
    CHECK_TRUNCATED(ipc_dec_accept, c_out);
    CHECK_TRAILING(ipc_dec_accept, c_out);
    /* More recipients than any envelope holds is a broken protocol. */
    c_in->nrcpt = IPC_RCPT_MAX + 1;
    CHECK(ipc_enc_accept(m, 9, c_in) == 0);
    rewind_msg();
    CHECK(ipc_dec_accept(m, c_out) == -1);
    free(c_in);
    free(c_out);
    free(in);
    free(out);
}

TEST(test_string_longer_than_its_field)
{
    struct ipc_sender out;
    char longer[IPC_SESSION_MAX + 1];

    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    ipc_init(m, IPC_AUTHZ_SENDER, 1);
    ipc_put_str(m, longer);
    ipc_put_str(m, "a@b");
    rewind_msg();
    CHECK(ipc_dec_sender(m, &out) != 0);
}

TEST(test_text_clean)
{
    CHECK(ipc_text_clean("alice@example.com"));
    CHECK(ipc_text_clean(""));
    CHECK(!ipc_text_clean("a@b\r\nRCPT TO:<x@y>"));
    CHECK(!ipc_text_clean("a\nb"));
    CHECK(!ipc_text_clean("a\tb"));
    CHECK(!ipc_text_clean("a\x7f"));
    CHECK(ipc_text_clean("\xc3\xa9t\xc3\xa9@example.com"));  /* UTF-8 is fine */
}

int main(void)
{
    m = malloc(sizeof(*m));
    if (m == NULL)
        return 1;
    RUN(test_identity_round_trip);
    RUN(test_identity_count_beyond_maximum);
    RUN(test_password_round_trip);
    RUN(test_sender_and_commit_header_from_round_trip);
    RUN(test_authzid_round_trip);
    RUN(test_audit_and_session_end_round_trip);
    RUN(test_result_round_trip);
    RUN(test_envelope_round_trip);
    RUN(test_envelope_count_larger_than_the_message);
    RUN(test_grant_and_queue_answers_round_trip);
    RUN(test_relay_audit_and_accept_round_trip);
    RUN(test_string_longer_than_its_field);
    RUN(test_text_clean);
    free(m);
    return UNIT_DONE();
}
