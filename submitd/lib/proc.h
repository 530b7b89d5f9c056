#ifndef SUBMITD_PROC_H
#define SUBMITD_PROC_H

#include "config.h"

/*
 * The start of every worker program the master runs (submitd-smtp, -authz, -queue):
 * logging under the program's name, the configuration, and the signals.
 */

/* Sets up logging and loads the configuration; fatal on error. */
void proc_start(const char *name, int foreground, const char *conf, struct config *cfg);
/* SIGTERM and SIGINT call on_term; SIGPIPE (peers may vanish), SIGHUP, SIGUSR1 and
 * SIGUSR2 (a signal sent to the whole service) are ignored. */
void proc_signals(void (*on_term)(int));
/* A descriptor number from the command line; fatal unless it is open. */
int proc_fd_arg(const char *s);

#endif
