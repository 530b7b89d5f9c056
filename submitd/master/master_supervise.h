#ifndef SUBMITD_MASTER_SUPERVISE_H
#define SUBMITD_MASTER_SUPERVISE_H

/*
 * The workers: the master starts submitd-authz, submitd-queue and submitd-smtp
 * with the socketpairs between them and the listeners named on their command lines,
 * and restarts all three together when one dies (a half-dead set could leave
 * requests unanswered or frames half-read), backing off when they keep dying.
 */

/* The smtp event-loop threads: smtp_workers, or one per core; at most MAX_WORKERS. */
int nworkers(void);
/* SIGTERM and SIGINT stop the service, SIGHUP reloads, SIGCHLD is a worker's
 * end; SIGPIPE, SIGUSR1 and SIGUSR2 are ignored (DESIGN §5). */
void supervise_signals(void);
/* Starts the workers and supervises them until SIGTERM; returns once they stopped. */
void supervise(void);

#endif
