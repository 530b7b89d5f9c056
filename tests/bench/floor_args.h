/* The command-line numbers of the benchmark's floor programs (durable_floor.c,
 * crossing_floor.c). */
#ifndef SUBMITD_FLOOR_ARGS_H
#define SUBMITD_FLOOR_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* TEXT as a number from 1 to MAX; anything else ends PROG with status 2 and says why. */
static inline long floor_number(const char *prog, const char *text, long max)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0 || v > max) {
        fprintf(stderr, "%s: not a number from 1 to %ld: %s\n", prog, max, text);
        exit(2);
    }
    return v;
}

#endif
