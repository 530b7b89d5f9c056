/* The worker's end of the control channel with the master (ctl.h). */
#include "ctl.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ctl_files_init(struct ctl_files *f)
{
    for (int i = 0; i < CTL_FILE_KINDS; i++)
        f->fd[i] = -1;
}

void ctl_files_close(struct ctl_files *f)
{
    for (int i = 0; i < CTL_FILE_KINDS; i++) {
        if (f->fd[i] >= 0)
            close(f->fd[i]);
        f->fd[i] = -1;
    }
}

int ctl_read(int chan, struct ipc_msg *m, struct ctl_files *f)
{
    for (;;) {
        int r = ipc_recv(chan, m), kind;

        if (r < 0 && errno == EAGAIN)
            return 0;
        if (r < 0)
            fatal("control channel: %s", strerror(errno));
        if (r == 0)
            return -1;
        switch (m->type) {
        case IPC_CTL_FILE:
            if (m->fd < 0 || ipc_dec_ctl_file(m, &kind) != 0)
                fatal("malformed file message from the master");
            if (f->fd[kind] >= 0)
                close(f->fd[kind]);
            f->fd[kind] = m->fd;
            m->fd = -1;
            break;
        case IPC_CTL_RELOAD:
            if (m->fd >= 0 || ipc_end(m) != 0)
                fatal("malformed reload message from the master");
            return 1;
        default:
            fatal("unexpected message type %u from the master", m->type);
        }
    }
}

static void ctl_send(int chan, struct ipc_msg *m)
{
    if (ipc_send(chan, m) != 0 && errno != EPIPE && errno != ECONNRESET)
        fatal("control channel: %s", strerror(errno));
}

void ctl_ready(int chan)
{
    struct ipc_msg *m = malloc(sizeof(*m));

    if (m == NULL)
        fatal("out of memory");
    ipc_init(m, IPC_CTL_READY, 0);
    ctl_send(chan, m);
    free(m);
}

void ctl_reloaded(int chan, int ok, const char *why)
{
    struct ipc_msg *m = malloc(sizeof(*m));
    struct ipc_reloaded r;

    if (m == NULL)
        fatal("out of memory");
    memset(&r, 0, sizeof(r));
    r.ok = ok;
    str_lcpy(r.why, why != NULL ? why : "", sizeof(r.why));
    if (ipc_enc_ctl_reloaded(m, &r) != 0)
        fatal("cannot encode a reload answer");
    ctl_send(chan, m);
    free(m);
}

int ctl_reload_config(const struct ctl_files *f, const struct config *old, struct config *out,
                      char *err, size_t errlen)
{
    if (f->fd[CTL_FILE_CONF] < 0) {
        str_fmt(err, errlen, "the master sent no configuration");
        return -1;
    }
    if (config_load_fd(out, old->path, f->fd[CTL_FILE_CONF], err, errlen) != 0)
        return -1;
    config_keep_restart_keys(out, old, NULL, NULL);
    return 0;
}
