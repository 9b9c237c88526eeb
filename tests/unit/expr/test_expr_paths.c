/*
 * test_expr_paths.c - programs that stop inside a jq path expression.
 *
 * libjq 1.6 has two bugs here. Resetting a program paused inside a path
 * expression (`leaf_paths`: the first output comes while `..` still has
 * work) fails an assertion and aborts the process; expr.c avoids that by
 * running every program to its end behind a `label | ... | ., break`
 * wrapper. And unwinding a path expression by break or error (`first(paths)`,
 * `any(paths; f)`, `paths | error`) leaks the path's keys, a few dozen bytes
 * per evaluation, inside libjq. That leak is libjq's and cannot be avoided
 * from outside, so this executable runs without leak detection
 * (tests/unit/expr/CMakeLists.txt); everything else about these programs -
 * no abort, the right answer, the expression still usable - is checked.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

static const char *const context_text =
        "{\"input\":{\"order_id\":\"o1\",\"amount\":1500,\"tags\":[\"a\",\"b\"]},"
        "\"steps\":{\"review\":{\"status\":\"completed\",\"output\":{\"approved\":true}}},"
        "\"run\":{\"id\":\"r1\"}}";

static void check(struct expr *e, json_t *ctx, durable_code want_code, const char *want)
{
    durable_error err = { 0 };
    json_t *out = NULL;
    durable_code rc = expr_eval(e, ctx, &out, &err);
    char *got;

    if (rc != want_code)
        fail_msg("%s: got code %d (%s), want %d", expr_source(e), rc, err.msg, want_code);
    got = rc == DURABLE_OK ? json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT) : strdup(err.msg);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", expr_source(e), got, want);
    free(got);
    json_decref(out);
}

static void test_stopped_inside_paths(void **state)
{
    static const struct {
        const char *src;
        durable_code code;
        const char *want;
    } cases[] = {
        { "leaf_paths", DURABLE_OK, "[\"input\",\"order_id\"]" },
        { "first(leaf_paths)", DURABLE_OK, "[\"input\",\"order_id\"]" },
        { "paths", DURABLE_OK, "[\"input\"]" },
        { "paths(type == \"number\")", DURABLE_OK, "[\"input\",\"amount\"]" },
        { "any(paths; length > 2)", DURABLE_OK, "true" },
        { "paths | halt", DURABLE_OK, "null" },
        { "paths | error(\"x\")", DURABLE_ESTEP, "jq: x" },
        { "leaf_paths | halt_error", DURABLE_ESTEP, "jq: [\"input\",\"order_id\"] (not a string)" },
        { "path(.input | ..) | select(length > 1)", DURABLE_OK, "[\"input\",\"order_id\"]" },
    };
    json_t *ctx = json_loads(context_text, 0, NULL);

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(cases); i++) {
        struct expr *e = NULL;
        durable_error err = { 0 };
        if (expr_compile(cases[i].src, &e, &err) != DURABLE_OK)
            fail_msg("compile %s: %s", cases[i].src, err.msg);
        for (int round = 0; round < 3; round++)
            check(e, ctx, cases[i].code, cases[i].want);
        expr_free(e);
    }
    json_decref(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stopped_inside_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
