/* Unit tests of the shared helpers in submitd/lib/util.c. */
#include "unit.h"

#include "util.h"

TEST(iso_time_forms)
{
    long long t = -1;

    CHECK(iso_time_parse("1970-01-01T00:00:00Z", &t) == 0 && t == 0);
    CHECK(iso_time_parse("2024-02-29", &t) == 0 && t == 1709164800);
    CHECK(iso_time_parse("2024-02-29 00:01", &t) == 0 && t == 1709164860);
    CHECK(iso_time_parse("2024-02-29T00:00:00.999Z", &t) == 0 && t == 1709164800);
    CHECK(iso_time_parse("2024-02-29T02:00:00+02:00", &t) == 0 && t == 1709164800);
    CHECK(iso_time_parse("2024-02-28T22:00:00-0200", &t) == 0 && t == 1709164800);
}

TEST(iso_time_refusals)
{
    long long t;

    CHECK(iso_time_parse("", &t) != 0);
    CHECK(iso_time_parse("2023-02-29", &t) != 0);       /* not a leap year */
    CHECK(iso_time_parse("2024-04-31", &t) != 0);
    CHECK(iso_time_parse("2024-01-01T24:00", &t) != 0);
    CHECK(iso_time_parse("2024-01-01T10:00Zjunk", &t) != 0);
    CHECK(iso_time_parse("2024-01-01T10:00+25:00", &t) != 0);
    CHECK(iso_time_parse("1969-12-31", &t) != 0);
    CHECK(iso_time_parse("24-01-01", &t) != 0);
}

TEST(iso_time_round_trip)
{
    char buf[32];
    long long t;

    iso_time_utc(buf, sizeof(buf), 1800000000);
    CHECK_STR(buf, "2027-01-15T08:00:00Z");
    CHECK(iso_time_parse(buf, &t) == 0 && t == 1800000000);
}

int main(void)
{
    RUN(iso_time_forms);
    RUN(iso_time_refusals);
    RUN(iso_time_round_trip);
    return UNIT_DONE();
}
