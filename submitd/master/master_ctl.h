#ifndef SUBMITD_MASTER_CTL_H
#define SUBMITD_MASTER_CTL_H

#include "ipc.h"

#include <time.h>

/*
 * The control channel with each worker (ipc_codec.h: READY, RELOAD, RELOADED):
 * readiness, which the master reports to systemd, and SIGHUP's reload, which the
 * master checks whole and then hands to the workers as descriptors of the files.
 */

/* A new worker p speaks on fd; it is not ready until it says so. */
void control_attach(int p, int fd);
/* The channel of worker p, -1 when there is none. */
int control_fd(int p);
/* Closes every channel (the workers are gone). */
void control_close_all(void);
/* Reads what worker p sent. 0, or -1 when it broke the protocol: its channel is
 * closed and the caller kills it. */
int control_read(int p, struct ipc_msg *m);
/* 1 when every worker said it is ready. */
int control_all_ready(void);
/* Tells systemd (Type=notify) that the service serves, with a status line. */
void notify_ready(const char *status);

/* SIGHUP: checks the configuration again and asks each worker to reload. */
void reload_begin(void);
/* 1 when no worker's answer to a reload is awaited. */
int reload_idle(void);
/* Gives up waiting for the answers once the reload's deadline is past. */
void reload_expire(time_t now);

#endif
