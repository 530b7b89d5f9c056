#ifndef SUBMITD_MASTER_H
#define SUBMITD_MASTER_H

#include "config.h"

#include <limits.h>

/*
 * What the master's modules share (master.c says what the master is). Each module
 * has its own header; this one holds only the state that all of them read, defined
 * in master.c, and includes no other header of the master's.
 */

#define MAX_LISTENERS 16
#define MAX_WORKERS 64

/* The three worker programs, in the order they are started. */
enum { P_AUTHZ = 0, P_QUEUE, P_SMTP, NPROC };
extern const char *const proc_names[NPROC];

extern struct config cfg;          /* the running configuration */
extern int foreground;             /* -f: the workers log to stderr too */
extern char libexec[PATH_MAX];     /* the directory of the worker programs */

#endif
