#ifndef SUBMITD_UNIT_H
#define SUBMITD_UNIT_H
/*
 * Minimal unit-test harness. Each tests/unit/test_*.c defines tests with TEST(name)
 * and lists them in main() with RUN(name); UNIT_DONE() prints
 * "<file>: N passed, N failed, N skipped" and returns the exit status.
 *
 * A test that cannot run here (it needs root, say) calls SKIP("why") and returns at
 * once: RUN prints "SKIP <name>: why" and counts it as skipped, never as passed, so
 * the totals of make test show every skip with its reason.
 */
#include <stdio.h>
#include <string.h>

static int unit_passed, unit_failed, unit_skipped, unit_cur_failed;
static const char *unit_cur_skip __attribute__((unused));

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
/* Ends the current test as skipped; reason says what it needs that is missing. */
#define SKIP(reason)                                                                \
    do {                                                                            \
        unit_cur_skip = (reason);                                                   \
        return;                                                                     \
    } while (0)
#define RUN(name)                                                                   \
    do {                                                                            \
        unit_cur_failed = 0;                                                        \
        unit_cur_skip = NULL;                                                       \
        name();                                                                     \
        if (unit_cur_failed) {                                                      \
            unit_failed++;                                                          \
            printf("FAIL %s\n", #name);                                             \
        } else if (unit_cur_skip != NULL) {                                         \
            unit_skipped++;                                                         \
            printf("SKIP %s: %s\n", #name, unit_cur_skip);                          \
        } else {                                                                    \
            unit_passed++;                                                          \
            printf("ok   %s\n", #name);                                             \
        }                                                                           \
    } while (0)
#define UNIT_DONE()                                                                 \
    (printf("%s: %d passed, %d failed, %d skipped\n", __FILE__, unit_passed,       \
            unit_failed, unit_skipped),                                             \
     unit_failed ? 1 : 0)

#endif
