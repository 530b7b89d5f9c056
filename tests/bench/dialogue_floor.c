/*
 * submitd-dialogue-floor: the least a mail submission server over TLS with client
 * certificates can do per message (make bench).
 *
 *     submitd-dialogue-floor --cert FILE --key FILE --ca FILE --port-file FILE
 *
 * It listens on a free port of 127.0.0.1, writes the port number to --port-file, and
 * serves one connection after another, as openssl s_server does for OpenSSL's floor:
 * the greeting, EHLO, STARTTLS, a TLS handshake that requires a client certificate
 * and verifies its chain against --ca (as s_server -Verify 1 does), EHLO again, then
 * MAIL, RCPT, DATA and QUIT, each answered at once with a fixed reply. The message is
 * read and thrown away. Nothing is checked, kept, logged or relayed: no process split,
 * no audit, no PAM, no spool. The benchmark runs its load generator against it in each
 * shape, and the machine's CPU per message (the load generator's own taken off, as for
 * the servers it measures) is the floor under what the TLS and SMTP dialogue of that
 * shape cost any server.
 *
 * Its TLS is as lean as submitd's own (submitd/smtp/tls.c), which is leaner than
 * s_server's defaults: resumption state in a session cache with one ticket per
 * handshake instead of two stateless tickets, one read(2) for what the socket holds,
 * and a client chain verified once, not at every handshake (authz caches its
 * verdicts the same way). So this floor does not overstate what the dialogue costs:
 * it is below OpenSSL's own floor plus the dialogue.
 *
 * It stops on SIGTERM and then prints what it served:
 *
 *     dialogue-floor: sessions=N messages=N
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define LINE_MAX_LEN 1000 /* an SMTP text line, CRLF included (RFC 5321 4.5.3.1.6) */
#define IDLE_SECONDS 10   /* the longest wait for a client (SO_RCVTIMEO, SO_SNDTIMEO) */

struct conn {
    int fd;
    SSL *ssl;
    char buf[16 * 1024];
    size_t off, len;
};

static volatile sig_atomic_t stopping;
static long sessions, messages;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "submitd-dialogue-floor: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* More bytes into the buffer; 0, or -1 when the peer is gone or broke the protocol. */
static int fill(struct conn *c)
{
    int n;

    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof(c->buf))
        return -1;
    do {
        if (c->ssl != NULL)
            n = SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len));
        else
            n = (int)recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    } while (n < 0 && c->ssl == NULL && errno == EINTR && !stopping);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 0;
}

/* The next line, CRLF stripped, into line; 0, or -1 when there is none. */
static int read_line(struct conn *c, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);

        if (nl != NULL) {
            size_t n = (size_t)(nl - (c->buf + c->off));

            if (n > 0 && nl[-1] == '\r')
                n--;
            if (n >= cap)
                return -1;
            memcpy(line, c->buf + c->off, n);
            line[n] = '\0';
            c->off = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        if (c->len - c->off >= LINE_MAX_LEN || fill(c) != 0)
            return -1;
    }
}

static int reply(struct conn *c, const char *text)
{
    size_t len = strlen(text);

    if (c->ssl != NULL)
        return SSL_write(c->ssl, text, (int)len) == (int)len ? 0 : -1;
    while (len > 0) {
        ssize_t n = send(c->fd, text, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads the message up to its dot line and throws it away. */
static int swallow_data(struct conn *c)
{
    char line[LINE_MAX_LEN + 1] = { 0 };

    for (;;) {
        if (read_line(c, line, sizeof(line)) != 0)
            return -1;
        if (strcmp(line, ".") == 0)
            return 0;
    }
}

static int is(const char *line, const char *verb)
{
    size_t n = strlen(verb), len = strlen(line);

    return len >= n && strncasecmp(line, verb, n) == 0 && (len == n || line[n] == ' ');
}

/* One session from the greeting to QUIT; it ends at the first thing that fails. */
static void serve(SSL_CTX *ctx, int fd)
{
    static struct conn c;
    char line[LINE_MAX_LEN + 1] = { 0 };

    c.fd = fd;
    c.ssl = NULL;
    c.off = c.len = 0;
    sessions++;
    if (reply(&c, "220 floor.localhost ESMTP\r\n") != 0)
        goto out;
    while (read_line(&c, line, sizeof(line)) == 0) {
        const char *r;

        if (is(line, "EHLO"))
            r = c.ssl == NULL ? "250-floor.localhost\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n"
                                "250 STARTTLS\r\n"
                              : "250-floor.localhost\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n"
                                "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
        else if (is(line, "STARTTLS") && c.ssl == NULL)
            r = "220 2.0.0 Ready to start TLS\r\n";
        else if (is(line, "MAIL") && c.ssl != NULL)
            r = "250 2.1.0 Ok\r\n";
        else if (is(line, "RCPT") && c.ssl != NULL)
            r = "250 2.1.5 Ok\r\n";
        else if (is(line, "DATA") && c.ssl != NULL)
            r = "354 End data with <CR><LF>.<CR><LF>\r\n";
        else if (is(line, "RSET") || is(line, "NOOP"))
            r = "250 2.0.0 Ok\r\n";
        else if (is(line, "QUIT"))
            r = "221 2.0.0 Bye\r\n";
        else
            r = "502 5.5.2 Error: command not recognized\r\n";
        if (reply(&c, r) != 0)
            break;
        if (strncmp(r, "221 ", 4) == 0)
            break;
        if (strncmp(r, "354 ", 4) == 0) {
            char queued[64];

            (void)snprintf(queued, sizeof(queued), "250 2.0.0 Ok: queued as F%ld\r\n",
                           messages + 1);
            if (swallow_data(&c) != 0 || reply(&c, queued) != 0)
                break;
            messages++;
        }
        if (strncmp(r, "220 ", 4) == 0) {
            /* Nothing may follow STARTTLS in plaintext (RFC 3207 4.2). */
            if (c.off != c.len || (c.ssl = SSL_new(ctx)) == NULL ||
                SSL_set_fd(c.ssl, fd) != 1 || SSL_accept(c.ssl) != 1)
                break;
            c.off = c.len = 0;
        }
    }
out:
    if (c.ssl != NULL) {
        (void)SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    ERR_clear_error();
    close(fd);
}

/* The client certificate whose chain verified last, by its SHA-256. */
static unsigned char verified[EVP_MAX_MD_SIZE];
static unsigned int verified_len;

/* The chain is verified against --ca the first time a client certificate is seen;
 * the same certificate again is taken on that verdict. */
static int verify_once(X509_STORE_CTX *x, void *arg)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    X509 *leaf = X509_STORE_CTX_get0_cert(x);

    (void)arg;
    if (leaf == NULL || X509_digest(leaf, EVP_sha256(), md, &len) != 1)
        return 0;
    if (len == verified_len && memcmp(md, verified, len) == 0)
        return 1;
    if (X509_verify_cert(x) != 1)
        return 0;
    memcpy(verified, md, len);
    verified_len = len;
    return 1;
}

static SSL_CTX *context(const char *cert, const char *key, const char *ca)
{
    static const unsigned char sid_ctx[] = "submitd-dialogue-floor";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *names;

    if (ctx == NULL)
        die("cannot create a TLS context");
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        die(cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die(key);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
        (names = SSL_load_client_CA_file(ca)) == NULL)
        die(ca);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_cert_verify_callback(ctx, verify_once, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_read_ahead(ctx, 1);
    return ctx;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "cert", required_argument, NULL, 'c' },  { "key", required_argument, NULL, 'k' },
        { "ca", required_argument, NULL, 'a' },    { "port-file", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 },
    };
    const char *cert = NULL, *key = NULL, *ca = NULL, *port_file = NULL;
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);
    struct sigaction act;
    SSL_CTX *ctx;
    FILE *pf;
    int opt, lfd, one = 1;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'a': ca = optarg; break;
        case 'p': port_file = optarg; break;
        default: cert = NULL; optind = argc; break;
        }
    }
    if (cert == NULL || key == NULL || ca == NULL || port_file == NULL || optind != argc) {
        fprintf(stderr, "usage: submitd-dialogue-floor --cert FILE --key FILE --ca FILE "
                        "--port-file FILE\n");
        return 2;
    }
    ctx = context(cert, key, ca);
    memset(&act, 0, sizeof(act));
    act.sa_handler = on_term;    /* no SA_RESTART: accept(2) returns at once */
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0)
        die("cannot listen on 127.0.0.1");
    if ((pf = fopen(port_file, "w")) == NULL || fprintf(pf, "%u\n", ntohs(sa.sin_port)) < 0 ||
        fclose(pf) != 0)
        die(port_file);
    while (!stopping) {
        int fd = accept(lfd, NULL, NULL);

        if (fd >= 0) {
            /* One connection at a time: a client silent for IDLE_SECONDS is dropped, so
             * that it cannot hold up the ones queued behind it. */
            struct timeval idle = { IDLE_SECONDS, 0 };

            /* Replies go out at once, as submitd's do: no wait for the client's ACK. */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof(idle));
            (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &idle, sizeof(idle));
            serve(ctx, fd);
        }
        else if (errno != EINTR && errno != ECONNABORTED)
            die("accept");
    }
    printf("dialogue-floor: sessions=%ld messages=%ld\n", sessions, messages);
    SSL_CTX_free(ctx);
    close(lfd);
    return 0;
}
