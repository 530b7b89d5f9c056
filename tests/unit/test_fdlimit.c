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
}

TEST(test_lowered)
{
    struct fd_budget b;
    char msg[512];

    CHECK(fd_budget(1000, 2, 2, 2029, &b) == 1);
    CHECK(b.max_sessions == 999 && b.use == 2029 && b.need == 2030);
    /* One worker, two listeners, a hard limit of 64: (64 - 26) / 2 sessions. */
    CHECK(fd_budget(1000, 1, 2, 64, &b) == 1 && b.max_sessions == 19 && b.use == 64);
    fd_budget_warning(&b, 1000, msg, sizeof(msg));
    CHECK(strstr(msg, "descriptor limit 64 is below the 2026 that max_sessions = 1000 needs: "
                      "max_sessions lowered to 19") == msg);
}

TEST(test_no_room_still_one)
{
    struct fd_budget b;

    CHECK(fd_budget(1000, 4, 2, 30, &b) == 1 && b.max_sessions == 1 && b.use == 30);
    CHECK(fd_budget(5, 1, 1, 0, &b) == 1 && b.max_sessions == 1);
}

int main(void)
{
    RUN(test_fits);
    RUN(test_lowered);
    RUN(test_no_room_still_one);
    return UNIT_DONE();
}
