#ifndef SUBMITD_UTIL_H
#define SUBMITD_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bounded string copy: always terminates, returns strlen(src) like BSD strlcpy. */
size_t str_lcpy(char *dst, const char *src, size_t size);
/* Formats into dst; returns 0, or -1 when the result did not fit (dst is still terminated). */
int str_fmt(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* ASCII lower-casing in place. */
void str_lower(char *s);
/* Parses a decimal integer in [min, max]; returns 0 or -1. */
int str_to_ll(const char *s, long long min, long long max, long long *out);

/* Writes all of buf, retrying on EINTR and short writes. Returns 0 or -1 (errno set). */
int write_all(int fd, const void *buf, size_t len);
/* fsyncs the directory that holds path (or the directory itself when is_dir). */
int fsync_dir(const char *dir);
/* mkdir -p with mode; existing directories are fine. */
int mkdir_p(const char *path, mode_t mode);

/* Lower-case hex of len bytes into out (needs 2*len+1). */
void hex_encode(const unsigned char *in, size_t len, char *out);
/* Current time as ISO-8601 UTC "YYYY-MM-DDTHH:MM:SSZ" (needs 21 bytes). */
void iso_time_utc(char *out, size_t outlen, long long epoch);
/*
 * Parses "YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|+HH:MM|-HH:MM|+HHMM|-HHMM]" (no zone:
 * UTC) into seconds since the epoch. Impossible dates (February 30) are refused.
 * Returns 0, or -1.
 */
int iso_time_parse(const char *s, long long *out);
/* Monotonic milliseconds. */
uint64_t now_ms(void);

/* Directory of the running executable (from /proc/self/exe), for finding helpers. */
int exe_dir(char *out, size_t outlen);

/*
 * Iterates a comma-separated list (configuration values): copies item number idx (0-based, spaces trimmed)
 * into out. Returns 1 when it exists, 0 past the end, -1 when it does not fit.
 */
int str_list_item(const char *list, int idx, char *out, size_t outlen);

#endif
