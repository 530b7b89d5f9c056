/*
 * SASL for the session (smtp_sasl.h). Responses are decoded once, by
 * sasl_b64_decode(); a response that cannot be used is refused, audited and
 * counted as a protocol error. Passwords only pass through to authz and are wiped
 * here at once.
 */
#include "smtp_sasl.h"

#include "log.h"
#include "smtp_req.h"
#include "util.h"

#include <limits.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

/*
 * Which mechanisms EHLO names after TLS. EXTERNAL needs a certificate authz
 * accepted, and is not used under second-factor (the certificate alone is not
 * enough there). PLAIN is for a client without a certificate (fallback), or for
 * the certificate's user (second-factor).
 */
unsigned sasl_offered(const struct session *s)
{
    int mode = s->cfg->auth_password;
    int cert_ok = s->identity_known && s->identity_decision == IPC_ALLOW;
    unsigned m = 0;

    if (cert_ok && mode != AUTH_PASSWORD_SECOND_FACTOR)
        m |= SASL_EXTERNAL;
    if ((mode == AUTH_PASSWORD_FALLBACK && !s->peer.sha256[0]) ||
        (mode == AUTH_PASSWORD_SECOND_FACTOR && cert_ok))
        m |= SASL_PLAIN;
    return m;
}

/*
 * Decodes a base64 response into out (at most outlen - 1 bytes and a NUL after
 * them; the bytes may hold NULs). Returns the number of bytes, or -1 when the
 * response is empty, not base64, or too long for out.
 */
static int sasl_b64_decode(const char *in, char *out, size_t outlen)
{
    size_t len = strlen(in);
    int n;

    /* Check the size before decoding: EVP_DecodeBlock writes 3 bytes for every 4
     * and knows nothing of the output buffer. */
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= outlen || len > INT_MAX)
        return -1;
    n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts padding bytes as output. */
    n -= (in[len - 1] == '=') + (len >= 2 && in[len - 2] == '=');
    out[n] = '\0';
    return n;
}

/*
 * A SASL response that cannot be used (cancelled, not base64, malformed): refused,
 * and audited and logged with the mechanism and the problem, so that a client
 * that cannot authenticate leaves a trace an administrator finds. Nothing of the
 * response itself is written: it may hold a password, or bytes unfit for a log.
 * It counts as a protocol error, which bounds the rows one connection can cause.
 */
static void auth_unusable(struct session *s, const char *mech, const char *problem,
                          const char *smtp_reply)
{
    char why[160];

    str_fmt(why, sizeof(why), "AUTH %s %s", mech, problem);
    log_info("session=%s client=%s %s", s->id, s->client_ip, why);
    req_audit(s, "auth", "reject", why, NULL, -1);
    s->errors++;
    session_reply(s, "%s", smtp_reply);
}

/* Why a SASL response is not base64 of at most outlen - 1 bytes. A client that
 * sends nothing after the 334 and goes on with its commands (msmtp's "auth
 * external" without "user") is told apart: the fix is in its configuration. */
static const char *b64_problem(const char *resp, size_t outlen)
{
    const char *arg;

    if (strlen(resp) / 4 * 3 >= outlen)
        return "response too long";
    if (smtp_parse_verb(resp, &arg) != CMD_UNKNOWN)
        return "response is not valid base64 but an SMTP command (no response was "
               "sent after the 334)";
    return "response is not valid base64";
}

/* The AUTH PLAIN response (RFC 4616): authzid NUL authcid NUL password. */
static void auth_plain_response(struct session *s, const char *resp)
{
    char buf[1024];
    const char *authzid, *authcid, *password;
    size_t zl, cl;
    int n, rc;

    s->auth_pending = AUTH_PENDING_NONE;
    if (strcmp(resp, "*") == 0) {
        auth_unusable(s, "PLAIN", "cancelled by the client", "501 5.7.0 Authentication cancelled");
        return;
    }
    n = sasl_b64_decode(resp, buf, sizeof(buf));
    if (n < 0) {
        auth_unusable(s, "PLAIN",
                      resp[0] == '\0' ? "response is empty" : b64_problem(resp, sizeof(buf)),
                      "501 5.5.2 Cannot decode response");
        return;
    }
    authzid = buf;
    zl = strlen(authzid);
    authcid = (size_t)n > zl ? buf + zl + 1 : NULL;
    cl = authcid ? strlen(authcid) : 0;
    password = authcid && (size_t)n > zl + 1 + cl ? authcid + cl + 1 : NULL;
    if (authcid == NULL || password == NULL || cl == 0 || password[0] == '\0' ||
        (size_t)n != zl + cl + strlen(password) + 2 || (zl > 0 && strcmp(authzid, authcid) != 0)) {
        explicit_bzero(buf, sizeof(buf));
        auth_unusable(s, "PLAIN", "response malformed (not authzid NUL authcid NUL password)",
                      "501 5.5.2 Malformed AUTH PLAIN response");
        return;
    }
    rc = req_password(s, authcid, password);
    explicit_bzero(buf, sizeof(buf));
    if (rc != 0)
        session_reply(s, "454 4.7.0 Temporary authentication failure");
}

/* The EXTERNAL response: empty ("=" or an empty line) or an authorization identity
 * for authz to check. */
static void auth_external_response(struct session *s, const char *resp)
{
    char authzid[256];
    int n;

    s->auth_pending = AUTH_PENDING_NONE;
    if (strcmp(resp, "*") == 0) {
        auth_unusable(s, "EXTERNAL", "cancelled by the client",
                      "501 5.7.0 Authentication cancelled");
        return;
    }
    if (strcmp(resp, "=") == 0 || resp[0] == '\0') {
        s->auth_done = 1;
        session_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    /* An authorization identity is text: a NUL in it is as bad as no base64. */
    n = sasl_b64_decode(resp, authzid, sizeof(authzid));
    if (n < 0 || strlen(authzid) != (size_t)n) {
        auth_unusable(s, "EXTERNAL", b64_problem(resp, sizeof(authzid)),
                      "501 5.5.2 Cannot decode response");
        return;
    }
    /* Decoded bytes go into an audit row and a log line: none may be a control. */
    if (!ipc_text_clean(authzid)) {
        auth_unusable(s, "EXTERNAL", "authzid holds a control character",
                      "501 5.5.4 Malformed authorization identity");
        return;
    }
    if (req_authzid(s, authzid) != 0)
        session_reply(s, "454 4.7.0 Temporary authentication failure");
}

void sasl_response(struct session *s, const char *line)
{
    if (s->auth_pending == AUTH_PENDING_PLAIN)
        auth_plain_response(s, line);
    else
        auth_external_response(s, line);
}

/* AUTH is allowed after HELO and TLS (the command table's guards), outside a
 * transaction, once. */
void sasl_cmd_auth(struct session *s, const char *arg)
{
    char mech[32];
    size_t n;

    if (s->state != SS_READY) {
        session_reply(s, "503 5.5.1 Error: AUTH not allowed during a mail transaction");
        return;
    }
    if (s->auth_done) {
        session_reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    n = strcspn(arg, " ");
    if (n == 0 || n >= sizeof(mech)) {
        session_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    memcpy(mech, arg, n);
    mech[n] = '\0';
    if (strcasecmp(mech, "PLAIN") == 0 && (sasl_offered(s) & SASL_PLAIN)) {
        if (arg[n] == ' ') {
            auth_plain_response(s, arg + n + 1);
        } else {
            s->auth_pending = AUTH_PENDING_PLAIN;
            session_reply(s, "334 ");
        }
        return;
    }
    /* EXTERNAL is a known mechanism whenever certificates alone may authenticate,
     * even before authz has accepted one: the client then hears why not. */
    if (strcasecmp(mech, "EXTERNAL") != 0 ||
        s->cfg->auth_password == AUTH_PASSWORD_SECOND_FACTOR) {
        session_reply(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    if (!check_identity(s))
        return;
    if (arg[n] != ' ') {
        /* No initial response: ask for it (RFC 4954); "=" or "" means none. */
        s->auth_pending = AUTH_PENDING_EXTERNAL;
        session_reply(s, "334 ");
        return;
    }
    auth_external_response(s, arg + n + 1);
}

void sasl_on_password(struct session *s, const struct ipc_result *r)
{
    if (r->decision == IPC_ALLOW) {
        str_lcpy(s->user, r->user, sizeof(s->user));
        s->password_ok = 1;
        s->auth_done = 1;
        log_info("session=%s client=%s authenticated user=%s by password", s->id, s->client_ip,
                 s->user);
        session_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    session_reply(s, "%s", r->reply);
    if (r->decision == IPC_DENY && ++s->auth_failures >= 3) {
        session_reply(s, "421 4.7.0 %s Too many failed authentications", s->cfg->hostname);
        session_set_state(s, SS_CLOSING);
    }
}

void sasl_on_authzid(struct session *s, const struct ipc_result *r)
{
    if (r->decision == IPC_ALLOW) {
        s->auth_done = 1;
        session_reply(s, "235 2.7.0 Authentication successful");
    } else {
        session_reply(s, "%s", r->reply);
    }
}
