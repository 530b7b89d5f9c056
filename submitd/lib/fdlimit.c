/* How many sessions the descriptor limit allows (DESIGN §9). */
#include "fdlimit.h"

#include "util.h"

int fd_budget(int max_sessions, int workers, int listeners, unsigned long long hard_limit,
              struct fd_budget *b)
{
    unsigned long long fixed = FD_BASE + (unsigned long long)FD_PER_WORKER * (unsigned)workers +
                               (unsigned)listeners;
    unsigned long long avail = hard_limit > fixed ? hard_limit - fixed : 0;
    unsigned long long ms = max_sessions > 0 ? (unsigned)max_sessions : 0;
    unsigned long long reserve;

    b->limit = hard_limit;
    b->need = fixed + (unsigned long long)FD_PER_SESSION * ms;
    b->max_sessions = max_sessions;
    b->data_sessions = max_sessions;
    b->use = b->need;
    if (b->need <= hard_limit)
        return 0;
    b->use = hard_limit;
    /* An idle session holds only its socket; the spool file of a session in DATA
     * comes out of a pool of its own, so that a low limit is not halved for files
     * only a few sessions hold at once. */
    reserve = avail / FD_DATA_SHARE;
    if (reserve > FD_DATA_MAX)
        reserve = FD_DATA_MAX;
    if (reserve < 1)
        reserve = 1;
    if (ms + reserve <= avail) {
        /* Every session fits; DATA gets what is left. */
        b->data_sessions = (int)(avail - ms);
        return 1;
    }
    /* Even with no room at all one session is allowed: the accept path refuses
     * cleanly at the limit, and a server that serves nobody helps no one. */
    b->max_sessions = avail > reserve ? (int)(avail - reserve) : 1;
    b->data_sessions = (int)reserve < b->max_sessions ? (int)reserve : b->max_sessions;
    return 1;
}

void fd_budget_warning(const struct fd_budget *b, int configured, char *out, size_t outlen)
{
    str_fmt(out, outlen,
            "descriptor limit %llu is below the %llu that max_sessions = %d needs: "
            "max_sessions %s %d, at most %d of them in DATA at once "
            "(raise the hard limit, e.g. LimitNOFILE=, to serve more)",
            b->limit, b->need, configured,
            b->max_sessions < configured ? "lowered to" : "kept at", b->max_sessions,
            b->data_sessions);
}
