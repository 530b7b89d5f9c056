/* Unit tests of submitd/lib/log.c: one line per event, repeated lines counted. */
#include "unit.h"

#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char captured[65536];

/* Runs fn with stderr going to a temporary file; the output lands in captured. */
static void capture(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    int saved = dup(2);
    size_t n;

    if (tmp == NULL || saved < 0) {
        captured[0] = '\0';
        return;
    }
    fflush(stderr);
    dup2(fileno(tmp), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    n = fread(captured, 1, sizeof(captured) - 1, tmp);
    captured[n] = '\0';
    fclose(tmp);
}

static int count(const char *needle)
{
    int n = 0;

    for (const char *p = captured; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void same_warning_many_times(void)
{
    for (int i = 0; i < 1000; i++)
        log_warn("accept: %s", "Too many open files");
}

TEST(test_repeats_are_written_once)
{
    capture(same_warning_many_times);
    CHECK(count("warning: accept: Too many open files\n") == 1);
    CHECK(count("\n") == 1);
}

static void lines_that_differ(void)
{
    for (int i = 0; i < 50; i++)
        log_warn("session=%d connection lost", i);
}

TEST(test_different_lines_are_all_written)
{
    capture(lines_that_differ);
    CHECK(count("connection lost\n") == 50);
}

static void info_repeats(void)
{
    for (int i = 0; i < 5; i++)
        log_info("an informational line");
}

TEST(test_info_lines_are_not_counted)
{
    capture(info_repeats);
    CHECK(count("info: an informational line\n") == 5);
}

/* A repeated line is reported with its count when its entry makes room for others
 * (or when its interval has passed). */
static void repeats_then_many_others(void)
{
    for (int i = 0; i < 7; i++)
        log_err("queue channel: %s", "Broken pipe");
    for (int i = 0; i < 40; i++)
        log_warn("another line %d", i);
}

TEST(test_count_is_reported)
{
    capture(repeats_then_many_others);
    CHECK(count("error: queue channel: Broken pipe\n") == 1);
    CHECK(count("error: queue channel: Broken pipe (repeated 6 times in the last 0s)\n") == 1);
    CHECK(count("another line") == 40);
}

/* Same text from two call sites: two events, both written. */
static void same_text_two_sites(void)
{
    log_warn("%s", "disk full");
    log_warn("disk full");
}

TEST(test_call_sites_are_distinct)
{
    capture(same_text_two_sites);
    CHECK(count("warning: disk full\n") == 2);
}

int main(void)
{
    log_init("test_log", 1, LOG_LVL_DEBUG);
    RUN(test_repeats_are_written_once);
    RUN(test_different_lines_are_all_written);
    RUN(test_info_lines_are_not_counted);
    RUN(test_count_is_reported);
    RUN(test_call_sites_are_distinct);
    return UNIT_DONE();
}
