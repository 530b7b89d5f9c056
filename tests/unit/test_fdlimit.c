/* Unit tests of submitd/lib/fdlimit.c: max_sessions against the descriptor limit. */
#include "unit.h"

#include "fdlimit.h"

#include <limits.h>

TEST(test_fits)
{
    struct fd_budget b;

    /* 1000 sessions, 2 workers, 2 listeners: 20 + 8 + 2 + 2000. */
    CHECK(fd_budget(1000, 2, 2, 20000, &b) == 0);
    CHECK(b.need == 2030 && b.use == 2030 && b.max_sessions == 1000 && b.limit == 20000);
    CHECK(fd_budget(1000, 2, 2, 2030, &b) == 0 && b.max_sessions == 1000);
    CHECK(fd_budget(1000, 2, 2, ULLONG_MAX, &b) == 0 && b.use == 2030);
    CHECK(b.data_sessions == 1000);
}

TEST(test_lowered)
{
    struct fd_budget b;
    char msg[512];

    /* One descriptor short: every session still fits, DATA gets the other 999. */
    CHECK(fd_budget(1000, 2, 2, 2029, &b) == 1);
    CHECK(b.max_sessions == 1000 && b.data_sessions == 999 && b.use == 2029 &&
          b.need == 2030);
    fd_budget_warning(&b, 1000, msg, sizeof(msg));
    CHECK(strstr(msg, "max_sessions kept at 1000, at most 999 of them in DATA") != NULL);
    /* One worker, two listeners, a hard limit of 64: 38 left, 38 / 16 for DATA. */
    CHECK(fd_budget(1000, 1, 2, 64, &b) == 1 && b.max_sessions == 36 &&
          b.data_sessions == 2 && b.use == 64);
    fd_budget_warning(&b, 1000, msg, sizeof(msg));
    CHECK(strstr(msg, "descriptor limit 64 is below the 2026 that max_sessions = 1000 needs: "
                      "max_sessions lowered to 36, at most 2 of them in DATA at once") == msg);
    /* This machine's hard limit: the DATA pool is capped, idle sessions get the rest. */
    CHECK(fd_budget(100000, 2, 2, 20000, &b) == 1 && b.data_sessions == 512 &&
          b.max_sessions == 20000 - 30 - 512);
    /* A small max_sessions that does not fit twice: DATA no wider than the sessions. */
    CHECK(fd_budget(40, 1, 2, 64, &b) == 1 && b.max_sessions == 36 && b.data_sessions == 2);
    CHECK(fd_budget(30, 1, 2, 64, &b) == 1 && b.max_sessions == 30 && b.data_sessions == 8);
}

TEST(test_no_room_still_one)
{
    struct fd_budget b;

    CHECK(fd_budget(1000, 4, 2, 30, &b) == 1 && b.max_sessions == 1 && b.use == 30);
    CHECK(b.data_sessions == 1);
    CHECK(fd_budget(5, 1, 1, 0, &b) == 1 && b.max_sessions == 1 && b.data_sessions == 1);
}

int main(void)
{
    RUN(test_fits);
    RUN(test_lowered);
    RUN(test_no_room_still_one);
    return UNIT_DONE();
}
