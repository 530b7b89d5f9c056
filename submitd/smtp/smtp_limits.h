#ifndef SUBMITD_SMTP_LIMITS_H
#define SUBMITD_SMTP_LIMITS_H

#include <stddef.h>

/*
 * Session accounting shared by all worker threads: max_sessions in all, and
 * max_sessions_per_ip per client address (an IPv6 client counts by its /64), and
 * the session ids.
 */

/* Before the threads start. Returns -1 when memory is short. */
int smtp_limits_init(int max_sessions, int max_sessions_per_ip);
/* A reload's new per-address limit, for new sessions. */
void smtp_limits_set_per_ip(int max_sessions_per_ip);
/* Counts a new session of ip in, or returns 0 when a limit is reached (*why_global:
 * which one). */
int smtp_limits_enter(const char *ip, int *why_global);
void smtp_limits_leave(const char *ip);
void smtp_limits_free(void);

/* The sessions that may hold a spool file at once (before the threads start). */
void smtp_limits_set_data_max(int max);
/* Takes one of them for a session reaching DATA, or returns 0 when none is free. */
int smtp_limits_data_enter(void);
void smtp_limits_data_leave(void);

/* A new session id: random per process, then a counter. */
void smtp_session_id(char *out, size_t outlen);

#endif
