/*
 * test_util.c - unit tests of util.h: the JSON string escaper that lets
 * event frames be built by concatenation must give the bytes jansson gives,
 * for every byte a string can hold, and keep dbuf's hard limit.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* s escaped by dbuf_add_json_string equals jansson's encoding of it. */
static void assert_same_as_jansson(const char *s)
{
    struct dbuf b;
    json_t *j = json_string(s);
    char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);

    dbuf_init(&b, 0);
    assert_int_equal(dbuf_add_json_string(&b, s), DURABLE_OK);
    assert_string_equal(b.buf, want);
    free(want);
    json_decref(j);
    dbuf_release(&b);
}

static void test_json_string_every_ascii_byte(void **state)
{
    char one[2] = { 0, 0 };
    int c;

    (void)state;
    for (c = 1; c < 128; c++) {
        one[0] = (char)c;
        assert_same_as_jansson(one);
    }
}

static void test_json_string_mixed(void **state)
{
    (void)state;
    assert_same_as_jansson("");
    assert_same_as_jansson("run_01m81r/validate");
    assert_same_as_jansson("quote \" backslash \\ slash / tab \t nl \n cr \r bell \a del \x7f");
    assert_same_as_jansson("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80 end"); /* UTF-8 kept as is */
}

static void test_json_string_null_and_limit(void **state)
{
    struct dbuf b;

    (void)state;
    dbuf_init(&b, 8);
    assert_int_equal(dbuf_add_json_string(&b, NULL), DURABLE_OK);
    assert_string_equal(b.buf, "null");
    dbuf_reset(&b);
    assert_int_equal(dbuf_add_json_string(&b, "0123456789"), DURABLE_ETOOBIG);
    assert_true(b.len <= 8);
    dbuf_release(&b);
}

/* RFC 3339 times: zones, fractions, and what is refused. */
static void test_rfc3339_parse(void **state)
{
    static const char *const bad[] = { "",
                                       "2026-01-31",
                                       "2026-01-31 12:00:00Z",
                                       "2026-13-01T00:00:00Z",
                                       "2026-02-30T00:00:00Z",
                                       "2026-01-31T24:00:00Z",
                                       "2026-01-31T12:00:00",
                                       "2026-01-31T12:00:00.Z",
                                       "2026-01-31T12:00:00+1:00",
                                       "2026-01-31T12:00:00Zjunk",
                                       "yesterday and then some" };
    int64_t ms = -1;
    char text[32];

    (void)state;
    assert_true(clock_parse_rfc3339("1970-01-01T00:00:00Z", &ms));
    assert_int_equal(ms, 0);
    assert_true(clock_parse_rfc3339("2023-11-14T22:13:20.5Z", &ms));
    assert_int_equal(ms, 1700000000500LL);
    assert_true(clock_parse_rfc3339("2023-11-15t00:13:20.123456+02:00", &ms));
    assert_int_equal(ms, 1700000000123LL);
    assert_true(clock_parse_rfc3339("2023-11-14T21:13:20-01:00", &ms));
    assert_int_equal(ms, 1700000000000LL);
    clock_format_rfc3339(1700000000123LL, text);
    assert_true(clock_parse_rfc3339(text, &ms));
    assert_int_equal(ms, 1700000000123LL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(clock_parse_rfc3339(bad[i], &ms));
    assert_false(clock_parse_rfc3339(NULL, &ms));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_string_every_ascii_byte),
        cmocka_unit_test(test_json_string_mixed),
        cmocka_unit_test(test_json_string_null_and_limit),
        cmocka_unit_test(test_rfc3339_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
