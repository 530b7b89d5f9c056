#ifndef SUBMITD_CTL_H
#define SUBMITD_CTL_H

#include "config.h"
#include "ipc.h"
#include "ipc_codec.h"

/*
 * The worker's end of the control channel with the master (the messages are in
 * ipc_codec.h). A worker says CTL_READY once it serves; at a reload (SIGHUP to the
 * master) it receives the files the master opened for it, then CTL_RELOAD, applies
 * what it owns and answers CTL_RELOADED. Workers never act on signals for this:
 * systemctl kill may send SIGHUP to every process of the service at once.
 */

struct ctl_files {
    int fd[CTL_FILE_KINDS];     /* -1: not sent */
};

void ctl_files_init(struct ctl_files *f);
void ctl_files_close(struct ctl_files *f);
/*
 * Reads the channel (non-blocking) until it is empty or a reload is complete.
 * Returns 1 when CTL_RELOAD arrived (the files are in f), 0 when there is nothing
 * more, -1 when the master is gone. A malformed message is fatal.
 */
int ctl_read(int chan, struct ipc_msg *m, struct ctl_files *f);
/* CTL_READY; fatal when the master cannot be told. */
void ctl_ready(int chan);
/* CTL_RELOADED with ok, or with the reason the worker kept its settings. */
void ctl_reloaded(int chan, int ok, const char *why);
/*
 * The new configuration from the CONF file in f, with the keys only a restart can
 * change kept from old (config_keep_restart_keys). 0, or -1 with err.
 */
int ctl_reload_config(const struct ctl_files *f, const struct config *old, struct config *out,
                      char *err, size_t errlen);

#endif
