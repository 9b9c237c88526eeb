/*
 * test_cron.c - unit tests of cron.h: cron fields (lists, ranges, steps,
 * names, macros), the day-of-month / day-of-week OR rule, Feb 29, fire
 * times across daylight saving time in a real zone (Europe/Paris), the
 * interval syntax, and located errors for bad input.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "def/cron.h"

/* Instants used below (Unix ms, UTC). */
#define T_2026_01_01      1767225600000LL
#define T_2026_02_01      1769904000000LL
#define T_2026_02_06      1770336000000LL
#define T_2026_02_13      1770940800000LL
#define T_2026_02_20      1771545600000LL
#define T_2028_02_29      1835395200000LL
#define T_2026_03_28_0200 1774663200000LL /* 03:00 in Paris (CET) */
#define T_2026_03_29_0100 1774746000000LL /* the spring-forward instant: 03:00 CEST */
#define T_2026_03_30_0030 1774830600000LL /* 02:30 CEST */
#define T_2026_10_24_1200 1792843200000LL
#define T_2026_10_25_0030 1792888200000LL /* 02:30 CEST, the first of two */
#define T_2026_10_26_0130 1792978200000LL /* 02:30 CET */

static struct cron_spec parse_ok(const char *text)
{
    struct cron_spec s;
    durable_error err = { 0 };

    if (cron_parse(text, &s, &err) != DURABLE_OK)
        fail_msg("cron_parse(\"%s\"): %s", text, err.msg);
    return s;
}

static int64_t next(const char *text, const char *tz, int64_t after)
{
    struct cron_spec s = parse_ok(text);
    durable_error err = { 0 };
    int64_t at = 0;

    if (cron_next(&s, tz, after, &at, &err) != DURABLE_OK)
        fail_msg("cron_next(\"%s\"): %s", text, err.msg);
    return at;
}

static void assert_bad(const char *text, const char *want)
{
    struct cron_spec s;
    durable_error err = { 0 };

    assert_int_equal(cron_parse(text, &s, &err), DURABLE_EINVAL);
    if (!strstr(err.msg, want))
        fail_msg("cron_parse(\"%s\"): \"%s\" lacks \"%s\"", text, err.msg, want);
}

static void test_fields(void **state)
{
    struct cron_spec s;

    (void)state;
    s = parse_ok("*/15 9-17/4 1,15 JAN-mar mon-FRI");
    assert_true(s.minutes == ((1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45)));
    assert_int_equal(s.hours, (1u << 9) | (1u << 13) | (1u << 17));
    assert_int_equal(s.mdays, (1u << 1) | (1u << 15));
    assert_int_equal(s.months, (1u << 1) | (1u << 2) | (1u << 3));
    assert_int_equal(s.wdays, 0x3e);
    assert_false(s.mday_star);
    s = parse_ok("5/20 * * * 7"); /* 7 is Sunday; a/n runs to the end */
    assert_true(s.minutes == ((1ULL << 5) | (1ULL << 25) | (1ULL << 45)));
    assert_int_equal(s.wdays, 1);
    assert_true(s.mday_star);
    s = parse_ok("  @daily ");
    assert_true(s.minutes == 1 && s.hours == 1);
    s = parse_ok("@hourly");
    assert_true(s.minutes == 1 && s.hours == 0xffffff);
}

static void test_bad_input(void **state)
{
    (void)state;
    assert_bad("", "empty");
    assert_bad("61 * * * *", "cron field 1 (minute), column 1: out of range 0-59");
    assert_bad("* 24 * * *", "cron field 2 (hour), column 3: out of range 0-23");
    assert_bad("* * 0 * *", "field 3 (day-of-month)");
    assert_bad("* * * * MOX", "cron field 5 (day-of-week), column 9");
    assert_bad("* * * 13 *", "out of range 1-12");
    assert_bad("* * * *", "has 4 fields, needs 5");
    assert_bad("* * * * * *", "more than 5 fields");
    assert_bad("5-1 * * * *", "must go up");
    assert_bad("*/0 * * * *", "positive number");
    assert_bad("1- * * * *", "needs an end");
    assert_bad("1,,2 * * * *", "column 3");
    assert_bad("@reboot", "no known macro");
    assert_bad("99999 * * * *", "not a number");
}

static void test_dom_dow_or(void **state)
{
    (void)state;
    /* Both restricted: the 13th or any Friday. */
    assert_true(next("0 0 13 * FRI", NULL, T_2026_02_01) == T_2026_02_06);
    assert_true(next("0 0 13 * FRI", NULL, T_2026_02_06) == T_2026_02_13);
    assert_true(next("0 0 13 * FRI", NULL, T_2026_02_13) == T_2026_02_20);
    /* Day-of-month `*`: Fridays only; day-of-week `*`: the 13th only. */
    assert_true(next("0 0 * * 5", "UTC", T_2026_02_06) == T_2026_02_13);
    assert_true(next("0 0 13 * *", "UTC", T_2026_02_01) == T_2026_02_13);
}

static void test_feb_29(void **state)
{
    struct cron_spec s = parse_ok("0 0 30 2 *");
    durable_error err = { 0 };
    int64_t at = 0;

    (void)state;
    assert_true(next("0 0 29 2 *", NULL, T_2026_01_01) == T_2028_02_29);
    assert_int_equal(cron_next(&s, NULL, T_2026_01_01, &at, &err), DURABLE_OK);
    assert_true(at == -1); /* never */
}

static void test_dst_paris(void **state)
{
    (void)state;
    /* Spring forward (29 March 2026, 02:00 -> 03:00): 02:30 does not exist
       and fires once, at the end of the gap, then at 02:30 the next day. */
    assert_true(next("30 2 * * *", "Europe/Paris", T_2026_03_28_0200) == T_2026_03_29_0100);
    assert_true(next("30 2 * * *", "Europe/Paris", T_2026_03_29_0100) == T_2026_03_30_0030);
    /* Fall back (25 October 2026, 03:00 -> 02:00): 02:30 happens twice and
       fires at the first only. */
    assert_true(next("30 2 * * *", "Europe/Paris", T_2026_10_24_1200) == T_2026_10_25_0030);
    assert_true(next("30 2 * * *", "Europe/Paris", T_2026_10_25_0030) == T_2026_10_26_0130);
    /* The same expression in UTC. */
    assert_true(next("30 0 * * *", "UTC", T_2026_10_24_1200) == T_2026_10_25_0030);
}

static void test_time_zones(void **state)
{
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(cron_tz_check("Europe/Paris", &err), DURABLE_OK);
    assert_int_equal(cron_tz_check("America/New_York", &err), DURABLE_OK);
    assert_int_equal(cron_tz_check("", &err), DURABLE_OK);
    assert_int_equal(cron_tz_check("Europe/Pariss", &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "\"Europe/Pariss\" is unknown"));
    err_clear(&err);
    assert_int_equal(cron_tz_check("../../etc/passwd", &err), DURABLE_EINVAL);
    err_clear(&err);
    assert_int_equal(
            cron_tz_check("Europe/Paris/Paris/Paris/Paris/Paris/Paris/Paris/Paris/Paris/Paris",
                          &err),
            DURABLE_EINVAL);
}

static void test_every(void **state)
{
    int64_t ms = 0;
    durable_error err = { 0 };

    (void)state;
    assert_int_equal(cron_parse_every("90s", &ms, &err), DURABLE_OK);
    assert_true(ms == 90000);
    assert_int_equal(cron_parse_every("1h30m", &ms, &err), DURABLE_OK);
    assert_true(ms == 5400000);
    assert_int_equal(cron_parse_every("1500ms", &ms, &err), DURABLE_OK);
    assert_true(ms == 1500);
    assert_int_equal(cron_parse_every("0s", &ms, &err), DURABLE_EINVAL);
    assert_int_equal(cron_parse_every("500ms", &ms, &err), DURABLE_EINVAL);
    assert_int_equal(cron_parse_every("367d", &ms, &err), DURABLE_EINVAL);
    err_clear(&err);
    assert_int_equal(cron_parse_every("10x", &ms, &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "column 3: a unit is expected"));
    assert_int_equal(cron_parse_every("", &ms, &err), DURABLE_EINVAL);
    assert_int_equal(cron_parse_every("s", &ms, &err), DURABLE_EINVAL);
    assert_true(cron_every_next(1000, 1000, 1000) == 2000);
    assert_true(cron_every_next(1000, 1000, 2500) == 3000);
    assert_true(cron_every_next(5000, 1000, 100) == 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),     cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_dom_dow_or), cmocka_unit_test(test_feb_29),
        cmocka_unit_test(test_dst_paris),  cmocka_unit_test(test_time_zones),
        cmocka_unit_test(test_every),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
