#ifndef SUBMITD_LOG_H
#define SUBMITD_LOG_H

/*
 * One line per event. On stderr with a timestamp and the program name, or, when
 * stderr is the journal, with a "<N>" priority prefix instead of the timestamp; or
 * to syslog (facility syslog_facility). Callers put the session id in
 * the message ("session=%s ...") so an admin can follow one client with grep.
 */
enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Where lines go (the `log` key): auto is the journal when stderr is one
 * (JOURNAL_STREAM), syslog otherwise. */
enum log_dest { LOG_DEST_AUTO = 0, LOG_DEST_STDERR, LOG_DEST_SYSLOG };

/* At start, before the configuration: stderr when foreground, else syslog (mail). */
void log_init(const char *progname, int foreground, int level);
/* Once the configuration is read: foreground (-f) always means stderr; else dest,
 * with syslog lines in facility ("mail" when NULL or unknown). */
void log_setup(int foreground, int dest, const char *facility);
/* 1 when stderr is the journal's stream (JOURNAL_STREAM matches it). */
int log_journal_stream(void);
void log_set_level(int level);
int log_level_parse(const char *name); /* -1 when unknown */
const char *log_level_name(int level);
/* Warnings and errors repeated identically from one call site are written once per
 * interval, then as one line with their count (see log.c). */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes the counts of repeated lines whose interval has passed; called from event
 * loops once a second, so a burst that stopped is still reported. */
void log_flush_repeats(void);
/* Between these, the calling thread's lines to stderr are collected and written
 * together at log_turn_end() (or when the buffer is full, or by fatal()): an event
 * loop brackets each turn with them, so a turn costs one write(2), not one a line.
 * Syslog lines are sent at once. */
void log_turn_begin(void);
void log_turn_end(void);
/* Logs at LOG_LVL_ERR and _exits 1 (no exit handlers): for broken invariants and
 * fatal set-up errors. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A client address for "client=%s", never empty (fail2ban matches on it). */
#define LOG_IP(ip) ((ip)[0] != '\0' ? (ip) : "unknown")

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
