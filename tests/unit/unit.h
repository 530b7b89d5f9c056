#ifndef SUBMITD_UNIT_H
#define SUBMITD_UNIT_H
/*
 * Minimal unit-test harness. Each tests/unit/test_*.c defines tests with TEST(name)
 * and lists them in main() with RUN(name); UNIT_DONE() prints
 * "<file>: N passed, N failed" and returns the exit status.
 */
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed, unit_cur_failed;

#define TEST(name) static void name(void)
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            printf("  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            unit_cur_failed = 1;                                                    \
        }                                                                           \
    } while (0)
#define CHECK_STR(a, b)                                                             \
    do {                                                                            \
        const char *a_ = (a), *b_ = (b);                                            \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                      \
            printf("  FAIL %s:%d: %s == %s (\"%s\" vs \"%s\")\n", __FILE__, __LINE__,  \
                   #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                 \
            unit_cur_failed = 1;                                                    \
        }                                                                           \
    } while (0)
#define RUN(name)                                                                   \
    do {                                                                            \
        unit_cur_failed = 0;                                                        \
        name();                                                                     \
        if (unit_cur_failed) {                                                      \
            unit_failed++;                                                          \
            printf("FAIL %s\n", #name);                                             \
        } else {                                                                    \
            unit_passed++;                                                          \
            printf("ok   %s\n", #name);                                             \
        }                                                                           \
    } while (0)
#define UNIT_DONE()                                                                 \
    (printf("%s: %d passed, %d failed\n", __FILE__, unit_passed, unit_failed),      \
     unit_failed ? 1 : 0)

#endif
