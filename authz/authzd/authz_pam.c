/* PAM account management for the authz process. */
#include "authz_pam.h"

#include "config.h"
#include "ipc_codec.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * The conversation: with a password (AUTH PLAIN), it answers the prompts that do
 * not echo with it; every other prompt is refused, since nobody is there to ask.
 *
 * GCC 12's analyzer cannot tell r[i] from r[i + 1] inside the loop, so it takes the
 * second copy of the password for an overwrite of the first and reports a leak that
 * cannot happen: every copy is either handed to PAM in r or freed under refuse.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wanalyzer-malloc-leak"
#endif
static int conversation(int num_msg, const struct pam_message **msg,
                        struct pam_response **resp, void *appdata)
{
    const char *password = appdata;
    struct pam_response *r;

    *resp = NULL;
    if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG)
        return PAM_CONV_ERR;
    r = calloc((size_t)num_msg, sizeof(*r));
    if (r == NULL)
        return PAM_BUF_ERR;
    for (int i = 0; i < num_msg; i++) {
        switch (msg[i]->msg_style) {
        case PAM_PROMPT_ECHO_OFF:
            if (password == NULL || (r[i].resp = strdup(password)) == NULL)
                goto refuse;
            break;
        case PAM_ERROR_MSG:
        case PAM_TEXT_INFO:
            break;
        default:
            goto refuse;
        }
    }
    *resp = r;
    return PAM_SUCCESS;
refuse:
    for (int i = 0; i < num_msg; i++) {
        if (r[i].resp != NULL) {
            explicit_bzero(r[i].resp, strlen(r[i].resp));
            free(r[i].resp);
        }
    }
    free(r);
    return PAM_CONV_ERR;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static int verdict(int rc)
{
    switch (rc) {
    case PAM_SUCCESS:
        return IPC_ALLOW;
    case PAM_USER_UNKNOWN:
    case PAM_PERM_DENIED:
    case PAM_ACCT_EXPIRED:
    case PAM_AUTH_ERR:
    case PAM_NEW_AUTHTOK_REQD:
    case PAM_MAXTRIES:
    case PAM_CRED_INSUFFICIENT:
        return IPC_DENY;
    default:
        /* Unknown results fail closed, but temporarily. */
        return IPC_TEMPFAIL;
    }
}

int authz_pam_check(const struct config *cfg, const char *user, const char *password,
                    char *why, size_t whylen)
{
    struct pam_conv conv = { conversation, (void *)(uintptr_t)password };
    pam_handle_t *ph = NULL;
    int rc;

    rc = pam_start_confdir(cfg->pam_service, user, &conv,
                           cfg->pam_confdir[0] ? cfg->pam_confdir : NULL, &ph);
    if (rc != PAM_SUCCESS) {
        str_fmt(why, whylen, "pam_start(%s): %s", cfg->pam_service, pam_strerror(ph, rc));
        return IPC_TEMPFAIL;
    }
    if (password != NULL) {
        rc = pam_authenticate(ph, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        if (rc != PAM_SUCCESS) {
            str_fmt(why, whylen, "authentication: %s", pam_strerror(ph, rc));
            pam_end(ph, rc);
            return verdict(rc);
        }
    }
    rc = pam_acct_mgmt(ph, PAM_SILENT);
    str_fmt(why, whylen, "%s%s", password ? "account: " : "", pam_strerror(ph, rc));
    pam_end(ph, rc);
    return verdict(rc);
}

/*
 * PAM, run as root, reads its configuration from pam_confdir and loads the modules
 * it names: whoever could change that directory, one above it, or the service's
 * file could run code as root. So they must be root's alone (safedir.h); when they
 * are not, every check is a temporary failure that says why. Without pam_confdir
 * the system's /etc/pam.d is used and is the system's business.
 */
static int pam_confdir_trusted(const struct config *cfg, char *why, size_t whylen)
{
    char msg[PATH_MAX + 128];
    struct stat st;
    int dir, bad;

    if (cfg->pam_confdir[0] == '\0')
        return 0;
    dir = safedir_open_trusted(cfg->pam_confdir, 0, msg, sizeof(msg));
    if (dir < 0) {
        str_fmt(why, whylen, "pam_confdir: %s", msg);
        return -1;
    }
    bad = fstatat(dir, cfg->pam_service, &st, 0) == 0 &&
          ((st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) != 0);
    close(dir);
    if (bad) {
        str_fmt(why, whylen, "pam_confdir: %s/%s is owned by uid %u with mode %04o: it "
                "must be root's and writable by root alone", cfg->pam_confdir,
                cfg->pam_service, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/*
 * Every check starts PAM afresh (pam_start reads the service's file, pam_end drops
 * everything), so a changed stack applies to the next session. What need not be
 * redone each time is loading the modules: libpam dlopens every module the file
 * names at pam_start and dlcloses it at pam_end, about a dozen system calls and the
 * symbol relocation of each module, per session. A handle that stays open, and is
 * never used for a check, keeps them loaded, so a check's dlopen only finds the
 * loaded copy. It is made anew every RESIDENT_MAX_AGE seconds, so that a module
 * updated on disk (a security fix to pam_unix.so, say) is loaded within that time;
 * the ownership of pam_confdir is checked again then too.
 */
#define RESIDENT_MAX_AGE 60

static int refuse_all(int num_msg, const struct pam_message **msg,
                      struct pam_response **resp, void *appdata)
{
    (void)num_msg;
    (void)msg;
    (void)appdata;
    *resp = NULL;
    return PAM_CONV_ERR;
}

/*
 * Whether checks may run, decided again every RESIDENT_MAX_AGE seconds: pam_confdir
 * must still be root's alone (why says what is wrong when it is not), and the resident
 * handle is made anew from it.
 */
static int ready_to_check(const struct config *cfg, char *why, size_t whylen)
{
    static const struct pam_conv conv = { refuse_all, NULL };
    static pam_handle_t *resident;
    static time_t since;
    static int trusted;
    time_t now = time(NULL);

    if (since != 0 && now - since < RESIDENT_MAX_AGE && now >= since)
        return trusted;
    if (resident != NULL)
        pam_end(resident, PAM_SUCCESS);
    resident = NULL;
    since = now;
    trusted = pam_confdir_trusted(cfg, why, whylen) == 0;
    /* A failure to start only costs speed: the check's own pam_start reports it. */
    if (trusted && pam_start_confdir(cfg->pam_service, NULL, &conv,
                                     cfg->pam_confdir[0] ? cfg->pam_confdir : NULL,
                                     &resident) != PAM_SUCCESS) {
        if (resident != NULL)
            pam_end(resident, PAM_SUCCESS);
        resident = NULL;
    }
    return trusted;
}

/* The worker's loop: one user name in, one verdict out, until the socket closes. */
static void pam_worker_main(const struct config *cfg, int fd)
{
    char req[1024], out[300], untrusted[300] = "";

    for (;;) {
        ssize_t n = recv(fd, req, sizeof(req) - 1, 0);
        const char *user = req + 1, *password = NULL;
        int d;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 1)
            _exit(0);
        req[n] = '\0';
        /* "A" user: account check; "P" user NUL password: authentication too. */
        if (req[0] == 'P') {
            size_t ul = strlen(user);
            if ((ssize_t)(ul + 2) > n)
                _exit(1);
            password = user + ul + 1;
        }
        if (ready_to_check(cfg, untrusted, sizeof(untrusted))) {
            d = authz_pam_check(cfg, user, password, out + 1, sizeof(out) - 1);
        } else {
            d = IPC_TEMPFAIL;
            str_lcpy(out + 1, untrusted, sizeof(out) - 1);
        }
        explicit_bzero(req, sizeof(req));
        out[0] = (char)('0' + d);
        if (send(fd, out, 1 + strlen(out + 1), MSG_NOSIGNAL) < 0)
            _exit(0);
    }
}

int pam_worker_spawn(const struct config *cfg, struct pam_worker *w)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    w->pid = fork();
    if (w->pid < 0) {
        w->pid = 0;
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (w->pid == 0) {
        /* Child: PAM only. The database handle inherited from the parent is never
         * touched, and _exit skips every exit handler. */
        close(sv[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        pam_worker_main(cfg, sv[1]);
    }
    close(sv[1]);
    w->fd = sv[0];
    w->busy = 0;
    return 0;
}

int pam_worker_send(struct pam_worker *w, const char *user, const char *password)
{
    char req[1024];
    size_t ul = strlen(user), pl = password ? strlen(password) : 0;
    int rc;

    if (2 + ul + pl >= sizeof(req))
        return -1;
    req[0] = password ? 'P' : 'A';
    memcpy(req + 1, user, ul + 1);
    if (password)
        memcpy(req + 2 + ul, password, pl);
    rc = send(w->fd, req, 1 + ul + (password ? 1 + pl : 0), MSG_NOSIGNAL) < 0 ? -1 : 0;
    explicit_bzero(req, sizeof(req));
    if (rc == 0)
        w->busy = 1;
    return rc;
}

int pam_worker_recv(struct pam_worker *w, char *why, size_t whylen)
{
    char buf[300];
    ssize_t n;

    do {
        n = recv(w->fd, buf, sizeof(buf) - 1, 0);
    } while (n < 0 && errno == EINTR);
    w->busy = 0;
    if (n < 1 || buf[0] < '0' + IPC_ALLOW || buf[0] > '0' + IPC_TEMPFAIL) {
        str_lcpy(why, "the PAM worker ended without an answer", whylen);
        pam_worker_kill(w);
        return IPC_TEMPFAIL;
    }
    buf[n] = '\0';
    str_lcpy(why, buf + 1, whylen);
    return buf[0] - '0';
}

/* ---- pam_cache ---------------------------------------------------------------------
 * A fixed table indexed by a hash of the user name: a user whose slot another user
 * took is simply checked by PAM again. */
#define PAM_CACHE_SLOTS 1024

struct pam_cached {
    char user[IPC_USER_MAX];
    int verdict;
    uint64_t at;              /* now_ms() of the check */
    char why[128];
};

static struct pam_cached *pam_cached;

static struct pam_cached *pam_cache_slot(const char *user)
{
    uint32_t h = 2166136261u;

    if (pam_cached == NULL && (pam_cached = calloc(PAM_CACHE_SLOTS, sizeof(*pam_cached))) == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &pam_cached[h % PAM_CACHE_SLOTS];
}

int pam_cache_get(const char *user, int max_age, char *why, size_t whylen)
{
    struct pam_cached *c;

    if (max_age <= 0 || (c = pam_cache_slot(user)) == NULL || c->user[0] == '\0' ||
        strcmp(c->user, user) != 0 || now_ms() - c->at >= (uint64_t)max_age * 1000u)
        return -1;
    str_fmt(why, whylen, "%s (PAM result of %llu s ago)", c->why,
            (unsigned long long)((now_ms() - c->at) / 1000u));
    return c->verdict;
}

void pam_cache_put(const char *user, int verdict, const char *why)
{
    struct pam_cached *c;

    if ((verdict != IPC_ALLOW && verdict != IPC_DENY) || (c = pam_cache_slot(user)) == NULL ||
        str_lcpy(c->user, user, sizeof(c->user)) >= sizeof(c->user)) {
        return;
    }
    c->verdict = verdict;
    c->at = now_ms();
    str_lcpy(c->why, why, sizeof(c->why));
}

void pam_worker_kill(struct pam_worker *w)
{
    int status;

    if (w->pid <= 0)
        return;
    kill(w->pid, SIGKILL);
    close(w->fd);
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    w->pid = 0;
    w->fd = -1;
    w->busy = 0;
}
