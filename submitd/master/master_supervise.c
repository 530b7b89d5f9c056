/* Starting, supervising and stopping the workers (see master_supervise.h). */
#include "master_supervise.h"

#include "master.h"
#include "master_ctl.h"
#include "master_listen.h"

#include "ipc.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

static pid_t pids[NPROC];
static volatile sig_atomic_t got_term, got_chld, got_hup;

struct argv_buf {
    char *argv[4 * MAX_WORKERS + 4 * MAX_LISTENERS + 16];
    char store[4 * MAX_WORKERS + 4 * MAX_LISTENERS + 16][16];
    int argc;
    int pass[2 * MAX_WORKERS + MAX_LISTENERS + 4];
    int npass;
};

static void arg_add(struct argv_buf *a, const char *s)
{
    a->argv[a->argc++] = (char *)(uintptr_t)s;
    a->argv[a->argc] = NULL;
}

static void arg_fd(struct argv_buf *a, const char *flag, int fd)
{
    arg_add(a, flag);
    str_fmt(a->store[a->argc], sizeof(a->store[0]), "%d", fd);
    arg_add(a, a->store[a->argc]);
    a->pass[a->npass++] = fd;
}

static pid_t spawn(int which, struct argv_buf *a)
{
    char path[PATH_MAX];
    pid_t pid;

    str_fmt(path, sizeof(path), "%s/%s", libexec, proc_names[which]);
    pid = fork();
    if (pid < 0)
        fatal("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    /* Child: die with the master, keep exactly the descriptors named in argv. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        _exit(1);
    for (int i = 0; i < a->npass; i++)
        if (fcntl(a->pass[i], F_SETFD, 0) != 0)
            _exit(1);
    {
        sigset_t none;
        struct sigaction ign;

        /* Until the worker sets its own handlers, a signal sent to the whole
         * service (systemctl kill) must not stop it: ignored dispositions survive
         * execv, the master's handlers would not. */
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigaction(SIGHUP, &ign, NULL);
        sigaction(SIGUSR1, &ign, NULL);
        sigaction(SIGUSR2, &ign, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    execv(path, a->argv);
    fprintf(stderr, "submitd: cannot run %s: %s\n", path, strerror(errno));
    _exit(127);
}

int nworkers(void)
{
    long n = cfg.smtp_workers > 0 ? cfg.smtp_workers : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static void start_all(void)
{
    int nw = nworkers();
    int smtp_authz[MAX_WORKERS][2], smtp_queue[MAX_WORKERS][2], queue_authz[2], ctl[NPROC][2];
    static struct argv_buf a_authz, a_queue, a_smtp;
    struct argv_buf *bufs[NPROC] = { &a_authz, &a_queue, &a_smtp };

    for (int i = 0; i < nw; i++)
        if (ipc_socketpair(smtp_authz[i]) != 0 || ipc_socketpair(smtp_queue[i]) != 0)
            fatal("socketpair: %s", strerror(errno));
    if (ipc_socketpair(queue_authz) != 0)
        fatal("socketpair: %s", strerror(errno));
    for (int p = 0; p < NPROC; p++)
        if (ipc_socketpair(ctl[p]) != 0 ||
            fcntl(ctl[p][0], F_SETFL, fcntl(ctl[p][0], F_GETFL) | O_NONBLOCK) != 0)
            fatal("socketpair: %s", strerror(errno));

    for (int p = 0; p < NPROC; p++) {
        memset(bufs[p], 0, sizeof(*bufs[p]));
        arg_add(bufs[p], proc_names[p]);
        arg_add(bufs[p], "-c");
        arg_add(bufs[p], cfg.path);
        if (foreground)
            arg_add(bufs[p], "-f");
        arg_fd(bufs[p], "-m", ctl[p][1]);
    }
    for (int i = 0; i < nw; i++) {
        arg_fd(&a_authz, "-s", smtp_authz[i][1]);
        arg_fd(&a_queue, "-s", smtp_queue[i][1]);
        arg_fd(&a_smtp, "-a", smtp_authz[i][0]);
        arg_fd(&a_smtp, "-q", smtp_queue[i][0]);
    }
    arg_fd(&a_authz, "-q", queue_authz[1]);
    arg_fd(&a_queue, "-a", queue_authz[0]);
    for (int i = 0; i < listen_count(); i++) {
        int implicit, fd = listen_fd(i, &implicit);

        arg_fd(&a_smtp, implicit ? "-L" : "-l", fd);
    }

    for (int p = 0; p < NPROC; p++) {
        pids[p] = spawn(p, bufs[p]);
        log_info("started %s (pid %d)", proc_names[p], (int)pids[p]);
    }
    /* The master keeps no channel open: a child's peer sees end-of-file when the
     * child dies, which is how the others notice and exit. */
    for (int i = 0; i < nw; i++) {
        close(smtp_authz[i][0]);
        close(smtp_authz[i][1]);
        close(smtp_queue[i][0]);
        close(smtp_queue[i][1]);
    }
    close(queue_authz[0]);
    close(queue_authz[1]);
    for (int p = 0; p < NPROC; p++) {
        close(ctl[p][1]);
        control_attach(p, ctl[p][0]);
    }
}

static int which_child(pid_t pid)
{
    for (int p = 0; p < NPROC; p++)
        if (pids[p] == pid)
            return p;
    return -1;
}

/* Sends SIGTERM to the living children and waits up to `grace` seconds. */
static void stop_all(int grace)
{
    time_t until = time(NULL) + grace;

    for (int p = 0; p < NPROC; p++)
        if (pids[p] > 0)
            kill(pids[p], SIGTERM);
    for (;;) {
        int alive = 0, status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int p = which_child(pid);
            if (p >= 0)
                pids[p] = 0;
        }
        for (int p = 0; p < NPROC; p++)
            alive += pids[p] > 0;
        if (alive == 0) {
            control_close_all();
            return;
        }
        if (time(NULL) >= until) {
            for (int p = 0; p < NPROC; p++)
                if (pids[p] > 0) {
                    log_warn("%s (pid %d) did not stop in %d s: killing it", proc_names[p],
                             (int)pids[p], grace);
                    kill(pids[p], SIGKILL);
                }
            until = time(NULL) + 5;
        }
        usleep(50000);
    }
}

static void on_signal(int sig)
{
    if (sig == SIGCHLD)
        got_chld = 1;
    else if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

static void describe_exit(int status, char *out, size_t outlen)
{
    if (WIFEXITED(status))
        str_fmt(out, outlen, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        str_fmt(out, outlen, "killed by signal %d", WTERMSIG(status));
    else
        str_fmt(out, outlen, "stopped");
}

void supervise(void)
{
    sigset_t block, old;
    int restarts = 0;
    time_t last_start = time(NULL);
    struct ipc_msg *m = malloc(sizeof(*m));

    if (m == NULL)
        fatal("out of memory");
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    start_all();
    for (;;) {
        struct pollfd pfd[NPROC];
        struct timespec tick = { 1, 0 };
        int status;
        pid_t pid;

        for (int p = 0; p < NPROC; p++) {
            pfd[p].fd = control_fd(p);
            pfd[p].events = POLLIN;
            pfd[p].revents = 0;
        }
        /* Signals are let in only while waiting here, so none is missed. */
        if (!got_term && !got_chld && !got_hup &&
            ppoll(pfd, NPROC, &tick, &old) < 0 && errno != EINTR)
            fatal("ppoll: %s", strerror(errno));
        if (got_term) {
            log_info("stopping");
            sd_notify(0, "STOPPING=1");
            stop_all(10);
            log_info("stopped");
            free(m);
            return;
        }
        for (int p = 0; p < NPROC; p++)
            if (control_fd(p) >= 0 && (pfd[p].revents & (POLLIN | POLLHUP | POLLERR)) &&
                control_read(p, m) != 0 && pids[p] > 0)
                kill(pids[p], SIGKILL);
        /* A reload waits until the set serves and the last one is answered. */
        if (got_hup && !got_chld && control_all_ready() && reload_idle()) {
            got_hup = 0;
            reload_begin();
        }
        reload_expire(time(NULL));
        if (!got_chld)
            continue;
        got_chld = 0;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int p = which_child(pid);
            char how[64];
            int delay;

            if (p < 0)
                continue;
            pids[p] = 0;
            describe_exit(status, how, sizeof(how));
            log_err("%s (pid %d) %s: restarting the worker processes", proc_names[p], (int)pid,
                    how);
            stop_all(10);
            /* Back off when the set keeps dying, so a broken configuration or a
             * full disk does not turn into a fork storm. */
            restarts = time(NULL) - last_start < 10 ? restarts + 1 : 0;
            delay = restarts == 0 ? 1 : restarts > 5 ? 30 : 1 << restarts;
            sigprocmask(SIG_SETMASK, &old, NULL);
            for (int s = 0; s < delay * 10 && !got_term; s++)
                usleep(100000);
            sigprocmask(SIG_BLOCK, &block, NULL);
            if (got_term)
                break;
            last_start = time(NULL);
            got_chld = 0;
            start_all();
        }
    }
}

void supervise_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* No signal but SIGTERM and SIGINT stops the service (DESIGN §5). */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}
