/*
 * submitd-crossing-floor: what one question across a process boundary costs, the way
 * submitd's processes ask each other (make bench).
 *
 *     submitd-crossing-floor ROUNDS
 *
 * DESIGN section 2 splits the daemon into processes that do not trust each other:
 * smtp asks authz about every identity, sender, header From and accepted message,
 * asks the queue to open and to commit a file, the queue asks authz whether the
 * envelope is granted, and authz asks a PAM worker. Each question is a round trip:
 * a datagram on an AF_UNIX SOCK_SEQPACKET socketpair, a sleeping process woken from
 * epoll_wait, its answer, and the asker woken in turn. This program does ROUNDS of
 * those between two processes and nothing else: no parsing, no work behind the
 * answer, a 200-byte question and a 40-byte answer, about the sizes of submitd's.
 * It is a floor under the cost of the split, not a model of any one question.
 *
 * The benchmark reads the machine's CPU around the run, because much of this work
 * (the scheduler, the wake-ups) is done in the kernel on either side; the two
 * processes' own CPU per round trip is printed as a check:
 *
 *     crossing-floor: rounds=N process_cpu_us=X
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor_args.h"

#define QUESTION 200
#define ANSWER 40

static void die(const char *what)
{
    fprintf(stderr, "submitd-crossing-floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Waits in epoll_wait for the peer's datagram, as submitd's event loops do, and reads
 * it; returns its length, 0 when the peer closed its end. */
static ssize_t wait_and_read(int ep, int fd, char *buf, size_t len)
{
    struct epoll_event ev;
    ssize_t n;

    for (;;) {
        int r = epoll_wait(ep, &ev, 1, -1);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("epoll_wait");
        n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR)
            die("recv");
    }
}

static int loop_for(int fd)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll");
    return ep;
}

static void send_all(int fd, const char *buf, size_t len)
{
    while (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
        if (errno != EINTR)
            die("send");
}

/* The answering side: every question gets an answer, until the asker closes. */
static void answerer(int fd)
{
    char buf[QUESTION], answer[ANSWER];
    int ep = loop_for(fd);

    memset(answer, 'a', sizeof(answer));
    while (wait_and_read(ep, fd, buf, sizeof(buf)) > 0)
        send_all(fd, answer, sizeof(answer));
    _exit(0);
}

static double cpu_us(int who)
{
    struct rusage ru;

    if (getrusage(who, &ru) != 0)
        die("getrusage");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int main(int argc, char **argv)
{
    char question[QUESTION], buf[ANSWER + 1];
    long rounds;
    int sv[2], ep, status;
    pid_t pid;
    double c0;

    if (argc != 2) {
        fprintf(stderr, "usage: submitd-crossing-floor ROUNDS\n");
        return 2;
    }
    rounds = floor_number("submitd-crossing-floor", argv[1], 100000000);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        die("socketpair");
    c0 = cpu_us(RUSAGE_SELF);
    if ((pid = fork()) < 0)
        die("fork");
    if (pid == 0) {
        close(sv[0]);
        answerer(sv[1]);
    }
    close(sv[1]);
    ep = loop_for(sv[0]);
    memset(question, 'q', sizeof(question));
    for (long i = 0; i < rounds; i++) {
        send_all(sv[0], question, sizeof(question));
        if (wait_and_read(ep, sv[0], buf, sizeof(buf)) != ANSWER) {
            fprintf(stderr, "submitd-crossing-floor: the answering process did not answer "
                            "round %ld\n", i + 1);
            kill(pid, SIGKILL);
            return 1;
        }
    }
    close(sv[0]);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "submitd-crossing-floor: the answering process failed\n");
        return 1;
    }
    printf("crossing-floor: rounds=%ld process_cpu_us=%.2f\n", rounds,
           (cpu_us(RUSAGE_SELF) - c0 + cpu_us(RUSAGE_CHILDREN)) / (double)rounds);
    return 0;
}
