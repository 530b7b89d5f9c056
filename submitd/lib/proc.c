/* Common start-up of the worker programs. */
#include "proc.h"

#include "log.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>

void proc_start(const char *name, int foreground, const char *conf, struct config *cfg)
{
    char err[1024];

    log_init(name, foreground, LOG_LVL_INFO);
    if (config_load(cfg, conf, err, sizeof(err)) != 0)
        fatal("%s", err);
    log_setup(foreground, cfg->log_mode, cfg->syslog_facility);
    log_set_level(cfg->log_level);
}

void proc_signals(void (*on_term)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* systemctl kill -s SIG delivers to every process of the service: none of these
     * may stop a worker (which would restart the whole set). The master asks for a
     * reload over the control channel, never by signal; the queue process sets its
     * own SIGUSR1 (flush) afterwards. */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}

int proc_fd_arg(const char *s)
{
    long long v;

    if (str_to_ll(s, 3, 65535, &v) != 0 || fcntl((int)v, F_GETFD) < 0)
        fatal("bad descriptor argument \"%s\" (this program is run by submitd)", s);
    return (int)v;
}
