/* How many sessions the descriptor limit allows (DESIGN §9). */
#include "fdlimit.h"

#include "util.h"

int fd_budget(int max_sessions, int workers, int listeners, unsigned long long hard_limit,
              struct fd_budget *b)
{
    unsigned long long fixed = FD_BASE + (unsigned long long)FD_PER_WORKER * (unsigned)workers +
                               (unsigned)listeners;
    unsigned long long fit;

    b->limit = hard_limit;
    b->need = fixed + (unsigned long long)FD_PER_SESSION * (unsigned)max_sessions;
    b->max_sessions = max_sessions;
    b->use = b->need;
    if (b->need <= hard_limit)
        return 0;
    b->use = hard_limit;
    fit = hard_limit > fixed ? (hard_limit - fixed) / FD_PER_SESSION : 0;
    /* Even with no room at all one session is allowed: the accept path refuses
     * cleanly at the limit, and a server that serves nobody helps no one. */
    b->max_sessions = fit < 1 ? 1 : (int)fit;
    return 1;
}

void fd_budget_warning(const struct fd_budget *b, int configured, char *out, size_t outlen)
{
    str_fmt(out, outlen,
            "descriptor limit %llu is below the %llu that max_sessions = %d needs: "
            "max_sessions lowered to %d (raise the hard limit, e.g. LimitNOFILE=, to serve more)",
            b->limit, b->need, configured, b->max_sessions);
}
