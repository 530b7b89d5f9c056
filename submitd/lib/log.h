#ifndef SUBMITD_LOG_H
#define SUBMITD_LOG_H

/*
 * One line per event. In the foreground lines go to stderr with a timestamp and the
 * program name; otherwise to syslog (facility mail). Callers put the session id in
 * the message ("session=%s ...") so an admin can follow one client with grep.
 */
enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(const char *progname, int foreground, int level);
void log_set_level(int level);
int log_level_parse(const char *name); /* -1 when unknown */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs at LOG_LVL_ERR and _exits 1 (no exit handlers): for broken invariants and
 * fatal set-up errors. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
