/*
 * test_expr.c - unit tests of expr.c through expr.h: compiling jq programs,
 * evaluating them on a run context, the jansson <-> jq conversions, the
 * sandbox prelude, the limits, and 8 threads evaluating at once (run under
 * TSan too).
 *
 * jq compiles are slow (tens of ms each), so tests reuse expressions where
 * they can; identical sources are cached by the layer anyway.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

static const char *const context_text =
        "{\"input\":{\"order_id\":\"o1\",\"amount\":1500,\"tags\":[\"a\",\"b\"],\"ratio\":0.25},"
        "\"steps\":{\"review\":{\"status\":\"completed\",\"output\":{\"approved\":true}}},"
        "\"run\":{\"id\":\"r1\"}}";

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (!j)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return j;
}

static json_t *context(void)
{
    return load(context_text);
}

/* Compiles src, evaluates it on ctx and returns the result (fails the test
 * on any error). */
static json_t *eval_ok(const char *src, json_t *ctx)
{
    durable_error err = { 0 };
    struct expr *e = NULL;
    json_t *out = NULL;

    if (expr_compile(src, &e, &err) != DURABLE_OK)
        fail_msg("compile %s: %s", src, err.msg);
    if (expr_eval(e, ctx, &out, &err) != DURABLE_OK)
        fail_msg("eval %s: %s", src, err.msg);
    expr_free(e);
    assert_non_null(out);
    return out;
}

/* Evaluates src on ctx and checks the compact JSON of the result. */
static void check_eval(const char *src, json_t *ctx, const char *want)
{
    json_t *out = eval_ok(src, ctx);
    char *got = json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT);

    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", src, got, want);
    free(got);
    json_decref(out);
}

static void check_compile_error(const char *src, durable_code code, const char *want_msg)
{
    durable_error err = { 0 };
    struct expr *e = (struct expr *)&err; /* must be reset to NULL */

    assert_int_equal(expr_compile(src, &e, &err), code);
    assert_null(e);
    assert_int_equal(err.code, code);
    if (strcmp(err.msg, want_msg) != 0)
        fail_msg("%s: got message \"%s\", want \"%s\"", src, err.msg, want_msg);
}

static void check_eval_error(const char *src, json_t *ctx, durable_code code, const char *want_msg)
{
    durable_error err = { 0 };
    struct expr *e = NULL;
    json_t *out = json_true();

    assert_int_equal(expr_compile(src, &e, &err), DURABLE_OK);
    assert_int_equal(expr_eval(e, ctx, &out, &err), code);
    assert_null(out);
    if (strcmp(err.msg, want_msg) != 0)
        fail_msg("%s: got message \"%s\", want \"%s\"", src, err.msg, want_msg);
    expr_free(e);
}

static void test_compile_errors(void **state)
{
    (void)state;
    check_compile_error(
            ".a $$ b", DURABLE_EINVAL,
            "jq: syntax error, unexpected '$', expecting $end (Unix shell quoting issues?) at "
            "<top-level>, line 1");
    check_compile_error(
            ".a ` 1", DURABLE_EINVAL,
            "jq: syntax error, unexpected INVALID_CHARACTER, expecting $end (Unix shell quoting "
            "issues?) at <top-level>, line 1");
    /* Programs that end too early are located at their last line. */
    check_compile_error(".[", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 1");
    check_compile_error(".a |", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 1");
    check_compile_error(".a and\n\n(.b", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 3");
    check_compile_error("def f: 1;", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 1");
    check_compile_error("if . then 1 else 2", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 1");
    /* Ending inside a string is refused before libjq, which leaks the
     * string it was reading (found by tests/fuzz/fuzz_expr). */
    check_compile_error("\"", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 1");
    check_compile_error(".a + \"x\\(.b + \"y\")\"\n+ \"z", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 2");
    check_compile_error("\"a\\(1", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 1");
    check_compile_error("# \"\n\"a\\\"", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 2");
    /* A closer that does not match what is open pops nothing (jq's lexer):
     * here `)` does not end the interpolation, whose `{` is open, so the
     * quote after it opens a string that never ends. */
    check_compile_error("\"abc\\(.{{ .t)x\"{{ ", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 1");
    check_compile_error("[.a)\"", DURABLE_EINVAL,
                        "jq: syntax error, unterminated string at <top-level>, line 1");
    /* A syntax error inside an interpolation is found by compiling its body
     * alone first: libjq leaks the string around it otherwise. */
    check_compile_error("\"a\\(1 +)\"", DURABLE_EINVAL,
                        "jq: in a string interpolation \\( ): syntax error, unexpected ')'");
    check_compile_error("\"a\\(\"b\\(1 1)\")\"", DURABLE_EINVAL,
                        "jq: in a string interpolation \\( ): syntax error, unexpected "
                        "LITERAL");
    check_compile_error("\"a\\()\"", DURABLE_EINVAL,
                        "jq: in a string interpolation \\( ): syntax error, unexpected ')'");
    {
        /* a body that needs its program around it, or ends in a comment */
        struct expr *ok = NULL;
        assert_int_equal(expr_compile(". as $x | \"a\\($x)\\(def f: 2; f)\\(. # c\n)\"", &ok, NULL),
                         DURABLE_OK);
        expr_free(ok);
    }
    check_compile_error("\"a\\(import \"x\" as y; 1)\"", DURABLE_EINVAL,
                        "jq: import and include are not allowed");
    /* and one that matches does: back in the string, which the quote ends */
    check_compile_error("\"a\\((.b))\" | (", DURABLE_EINVAL,
                        "jq: syntax error, unexpected end of expression at <top-level>, line 1");
    check_compile_error(
            "1 +\n2 +\n] 3", DURABLE_EINVAL,
            "jq: syntax error, unexpected INVALID_CHARACTER (Unix shell quoting issues?) at "
            "<top-level>, line 3");
    check_compile_error("nosuch(1)", DURABLE_EINVAL,
                        "jq: nosuch/1 is not defined at <top-level>, line 1");
    check_compile_error(".a |\n$x", DURABLE_EINVAL, "jq: $x is not defined at <top-level>, line 2");
    check_compile_error("", DURABLE_EINVAL, "jq: empty expression");
    check_compile_error(" \n\t", DURABLE_EINVAL, "jq: empty expression");
    check_compile_error("import \"a\" as a; .", DURABLE_EINVAL,
                        "jq: import and include are not allowed");
    check_compile_error("include \"a\"; .", DURABLE_EINVAL,
                        "jq: import and include are not allowed");
    /* A failed compile is not cached: the next try fails the same way. */
    check_compile_error("nosuch(1)", DURABLE_EINVAL,
                        "jq: nosuch/1 is not defined at <top-level>, line 1");
}

static void test_compile_error_null_err(void **state)
{
    struct expr *e = NULL;

    (void)state;
    assert_int_equal(expr_compile(".a $$", &e, NULL), DURABLE_EINVAL);
    assert_null(e);
}

static void test_eval_context(void **state)
{
    json_t *ctx = context();

    (void)state;
    check_eval(".steps.review.output.approved", ctx, "true");
    check_eval(".input.amount > 1000", ctx, "true");
    check_eval(".input.amount < 1000", ctx, "false");
    check_eval(".input.missing", ctx, "null");
    check_eval(".input.order_id", ctx, "\"o1\"");
    check_eval(".run.id", ctx, "\"r1\"");
    check_eval(".steps.review.status == \"completed\" and .steps.review.output.approved", ctx,
               "true");
    check_eval("[.input.tags[] | ascii_upcase]", ctx, "[\"A\",\"B\"]");
    check_eval("{id: .input.order_id, double: (.input.amount * 2)}", ctx,
               "{\"id\":\"o1\",\"double\":3000}");
    check_eval(".", load("null"), "null");
    json_decref(ctx);
}

static void test_round_trips(void **state)
{
    static const char *const values[] = {
        "null",
        "true",
        "false",
        "0",
        "-7",
        "1500",
        "0.25",
        "-1.5",
        "1e+300",
        "\"\"",
        "\"h\\u00e9llo \\\"w\\\"\\n\"",
        "\"a\\u0000b\"",
        "[]",
        "{}",
        "[1,[2,[3,{\"k\":[null]}]]]",
        "{\"a\":{\"b\":[1,2.5,\"x\"]},\"\":0,\"k\":1}",
        "9007199254740992",
        "-9007199254740992",
    };

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(values); i++) {
        json_t *in = load(values[i]);
        json_t *out = eval_ok(".", in);
        if (!json_equal(in, out))
            fail_msg("round trip of %s changed it", values[i]);
        assert_int_equal(json_typeof(in), json_typeof(out));
        json_decref(out);
        json_decref(in);
    }
}

static void test_numbers(void **state)
{
    json_t *ctx = context();
    json_t *out;

    (void)state;
    /* Integral results are integers, others reals. */
    out = eval_ok(".input.amount / 3 | floor", ctx);
    assert_true(json_is_integer(out));
    assert_int_equal(json_integer_value(out), 500);
    json_decref(out);
    out = eval_ok("3.0", ctx);
    assert_true(json_is_integer(out));
    json_decref(out);
    out = eval_ok(".input.amount / 4", ctx);
    assert_true(json_is_integer(out));
    assert_int_equal(json_integer_value(out), 375);
    json_decref(out);
    out = eval_ok(".input.ratio * 2", ctx);
    assert_true(json_is_real(out));
    assert_true(json_real_value(out) == 0.5);
    json_decref(out);
    out = eval_ok("1e19", ctx); /* integral but beyond int64: a real */
    assert_true(json_is_real(out));
    json_decref(out);
    out = eval_ok("-0", ctx);
    assert_true(json_is_integer(out));
    assert_int_equal(json_integer_value(out), 0);
    json_decref(out);
    /* jq's NaN and infinities, the way jq prints them. */
    check_eval("nan", ctx, "null");
    out = eval_ok("infinite", ctx);
    assert_true(json_is_real(out) && json_real_value(out) > 1e308);
    json_decref(out);
    out = eval_ok("-infinite", ctx);
    assert_true(json_is_real(out) && json_real_value(out) < -1e308);
    json_decref(out);
    json_decref(ctx);
}

static void test_first_output_only(void **state)
{
    json_t *ctx = context();

    (void)state;
    check_eval(".input.tags[]", ctx, "\"a\"");
    check_eval("1, error(\"never reached\")", ctx, "1");
    check_eval("empty", ctx, "null");
    check_eval("first(range(10; 0; -1))", ctx, "10");
    check_eval("limit(1; repeat(1))", ctx, "1");
    check_eval("repeat(1)", ctx, "1"); /* an infinite generator: first only */
    check_eval("range(1e18)", ctx, "0");
    check_eval("try repeat(2) catch .", ctx, "2");
    /* halt stops without output; after output, halt changes nothing. */
    check_eval("halt", ctx, "null");
    check_eval("1, halt", ctx, "1");
    check_eval("(halt, 2)", ctx, "null");
    json_decref(ctx);
}

/* libjq 1.6 aborts the process when a program paused inside a path
 * expression is reset (jq_start, jq_teardown): here the first output comes
 * while `..` still has work pending. The same expression must run again
 * afterwards. (Programs stopped early inside a path expression leak in jq
 * 1.6: those are in test_expr_paths.c, without leak detection.) */
static void test_path_expressions(void **state)
{
    static const char *const cases[][2] = {
        { "leaf_paths | select(.[0] == \"run\")", "[\"run\",\"id\"]" },
        { "paths | select(length == 2 and .[0] == \"run\")", "[\"run\",\"id\"]" },
        { "[paths] | length", "14" },
        { "path(..)", "[]" },
        { "getpath([\"input\",\"tags\"]) |= . + [\"c\"] | .input.tags", "[\"a\",\"b\",\"c\"]" },
        { "[leaf_paths | join(\".\")?] | first", "\"input.order_id\"" },
    };
    json_t *ctx = context();

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(cases); i++) {
        check_eval(cases[i][0], ctx, cases[i][1]);
        check_eval(cases[i][0], ctx, cases[i][1]); /* cached: the same jq_state again */
    }
    json_decref(ctx);
}

static void test_runtime_errors(void **state)
{
    json_t *ctx = context();

    (void)state;
    check_eval_error(".input.order_id.b", ctx, DURABLE_ESTEP,
                     "jq: Cannot index string with string \"b\"");
    check_eval_error("error(\"x\")", ctx, DURABLE_ESTEP, "jq: x");
    check_eval_error("error({\"a\":1})", ctx, DURABLE_ESTEP, "jq: {\"a\":1} (not a string)");
    check_eval_error(".input.amount + \"s\"", ctx, DURABLE_ESTEP,
                     "jq: number (1500) and string (\"s\") cannot be added");
    check_eval_error(".input.order_id | tonumber", ctx, DURABLE_ESTEP,
                     "jq: Invalid numeric literal at EOF at line 1, column 2 (while parsing 'o1')");
    check_eval_error("\"bye\" | halt_error", ctx, DURABLE_ESTEP, "jq: bye");
    check_eval_error("{\"code\": 3} | halt_error(1)", ctx, DURABLE_ESTEP,
                     "jq: {\"code\":3} (not a string)");
    /* try/catch handles errors inside the program. */
    check_eval("try error(\"x\") catch .", ctx, "\"x\"");
    /* A state that failed evaluates normally next time. */
    {
        durable_error err = { 0 };
        struct expr *e = NULL;
        json_t *out = NULL, *s = load("\"str\""), *o = load("{\"b\":2}");
        assert_int_equal(expr_compile(".b", &e, &err), DURABLE_OK);
        assert_int_equal(expr_eval(e, s, &out, &err), DURABLE_ESTEP);
        assert_null(out);
        assert_int_equal(expr_eval(e, o, &out, NULL), DURABLE_OK);
        assert_int_equal(json_integer_value(out), 2);
        json_decref(out);
        expr_free(e);
        json_decref(s);
        json_decref(o);
    }
    json_decref(ctx);
}

static void test_truthy(void **state)
{
    static const char *const truthy[] = { "true", "0", "\"\"", "[]", "{}", "\"false\"", "1.5" };
    static const char *const falsy[] = { "false", "null" };

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(truthy); i++) {
        json_t *v = load(truthy[i]);
        if (!expr_truthy(v))
            fail_msg("%s should be truthy", truthy[i]);
        json_decref(v);
    }
    for (size_t i = 0; i < DUR_ARRAY_LEN(falsy); i++) {
        json_t *v = load(falsy[i]);
        if (expr_truthy(v))
            fail_msg("%s should be falsy", falsy[i]);
        json_decref(v);
    }
    assert_false(expr_truthy(NULL));
}

static void test_sandbox(void **state)
{
    json_t *ctx = context();

    (void)state;
    check_eval("env", ctx, "{}");
    check_eval("$ENV", ctx, "{}");
    check_eval("env.PATH", ctx, "null");
    check_eval("$ENV.HOME", ctx, "null");
    check_eval_error("input", ctx, DURABLE_ESTEP, "jq: input is not available");
    check_eval_error("[inputs]", ctx, DURABLE_ESTEP, "jq: inputs is not available");
    check_eval(".run.id | stderr", ctx, "\"r1\"");
    check_eval("input_filename", ctx, "null");
    check_eval_error("input_line_number", ctx, DURABLE_ESTEP, "jq: Unknown input line number");
    check_eval(".run | debug | .id", ctx, "\"r1\""); /* no debug callback: prints nothing */
    /* The user's own definitions and bindings work behind the prelude. */
    check_eval("def twice: . * 2; .input.amount | twice", ctx, "3000");
    check_eval("def env: 5; env", ctx, "5");
    check_eval(".input as $in | $in.order_id", ctx, "\"o1\"");
    check_eval("1, 2 | . * 10", ctx, "10");
    check_eval("# a comment\n.run.id # another", ctx, "\"r1\"");
    json_decref(ctx);
}

static void test_cache_shares_programs(void **state)
{
    struct expr *a = NULL, *b = NULL, *c = NULL;
    json_t *out = NULL, *ctx = context();

    (void)state;
    assert_int_equal(expr_compile(".run.id", &a, NULL), DURABLE_OK);
    assert_int_equal(expr_compile(".run.id", &b, NULL), DURABLE_OK);
    assert_ptr_equal(a, b);
    assert_string_equal(expr_source(a), ".run.id");
    expr_free(a);
    /* b still works after a's reference is gone. */
    assert_int_equal(expr_eval(b, ctx, &out, NULL), DURABLE_OK);
    assert_string_equal(json_string_value(out), "r1");
    json_decref(out);
    assert_int_equal(expr_compile(".run.id ", &c, NULL), DURABLE_OK);
    assert_ptr_not_equal(b, c);
    expr_free(b);
    expr_free(c);
    expr_free(NULL);
    json_decref(ctx);
}

/* ---- hostile input ---- */

static json_t *nested_arrays(int depth)
{
    json_t *v = json_array();

    for (int i = 1; i < depth; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, v);
        v = outer;
    }
    return v;
}

static void test_long_expressions(void **state)
{
    size_t n = 100000;
    char *src = malloc(n + 1);
    struct expr *e = NULL;
    durable_error err = { 0 };
    json_t *ctx = load("{\"a\":1}"), *out = NULL;

    (void)state;
    /* 100,000 characters: over the limit, refused before jq sees it. */
    for (size_t i = 0; i < n; i += 2)
        memcpy(src + i, ".a", 2);
    src[n] = '\0';
    assert_int_equal(expr_compile(src, &e, &err), DURABLE_ETOOBIG);
    assert_null(e);
    assert_string_equal(err.msg, "jq: expression longer than 16384 bytes");
    /* At the limit it compiles and runs: .a.a.a... fails on the number. */
    src[EXPR_MAX_SRC_LEN] = '\0';
    assert_int_equal(expr_compile(src, &e, NULL), DURABLE_OK);
    err = (durable_error){ 0 };
    assert_int_equal(expr_eval(e, ctx, &out, &err), DURABLE_ESTEP);
    assert_string_equal(err.msg, "jq: Cannot index number with string \"a\"");
    expr_free(e);
    /* Deep nesting in the program itself: jq's parser stops it. */
    memset(src, '[', 8000);
    memset(src + 8000, ']', 8000);
    src[16000] = '\0';
    err = (durable_error){ 0 };
    assert_int_equal(expr_compile(src, &e, &err), DURABLE_OK);
    assert_int_equal(expr_eval(e, ctx, &out, &err), DURABLE_ETOOBIG);
    assert_string_equal(err.msg, "expression result nested deeper than 256 levels");
    expr_free(e);
    for (size_t i = 0; i < 4000; i++) {
        memcpy(src + 3 * i, "{a:", 3);
        src[12001 + i] = '}';
    }
    src[12000] = '1';
    src[16001] = '\0';
    err = (durable_error){ 0 };
    assert_int_equal(expr_compile(src, &e, &err), DURABLE_EINVAL);
    assert_string_equal(err.msg, "jq: memory exhausted at <top-level>, line 1");
    free(src);
    json_decref(ctx);
}

static void test_deep_input(void **state)
{
    struct expr *e = NULL;
    durable_error err = { 0 };
    json_t *deep = nested_arrays(EXPR_MAX_DEPTH + 1), *ok = nested_arrays(EXPR_MAX_DEPTH);
    json_t *out = NULL;

    (void)state;
    assert_int_equal(expr_compile("length", &e, NULL), DURABLE_OK);
    assert_int_equal(expr_eval(e, deep, &out, &err), DURABLE_ETOOBIG);
    assert_null(out);
    assert_string_equal(err.msg, "expression input nested deeper than 256 levels");
    assert_int_equal(expr_eval(e, ok, &out, NULL), DURABLE_OK);
    assert_int_equal(json_integer_value(out), 1);
    json_decref(out);
    expr_free(e);
    /* The whole value back: 256 levels pass, 257 do not. */
    assert_int_equal(expr_compile(".", &e, NULL), DURABLE_OK);
    assert_int_equal(expr_eval(e, ok, &out, NULL), DURABLE_OK);
    assert_true(json_equal(out, ok));
    json_decref(out);
    expr_free(e);
    json_decref(deep);
    json_decref(ok);
}

static void test_huge_output(void **state)
{
    struct expr *e = NULL;
    durable_error err = { 0 };
    json_t *out = NULL, *ctx = load("{}");
    static const char *const huge[] = {
        "[range(300000)]",                                  /* many small values */
        "\"x\" * 2000000",                                  /* one long string */
        "[range(20)] | map({(tostring): (\"y\" * 60000)})", /* over the limit in an object */
        "reduce range(100000) as $i (null; [.])",           /* deep: caught by the depth limit */
    };

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(huge); i++) {
        err = (durable_error){ 0 };
        assert_int_equal(expr_compile(huge[i], &e, NULL), DURABLE_OK);
        if (expr_eval(e, ctx, &out, &err) != DURABLE_ETOOBIG)
            fail_msg("%s: expected ETOOBIG, got %d (%s)", huge[i], err.code, err.msg);
        assert_null(out);
        expr_free(e);
    }
    /* Just under the limit is fine. */
    assert_int_equal(expr_compile("\"x\" * 1000000", &e, NULL), DURABLE_OK);
    assert_int_equal(expr_eval(e, ctx, &out, NULL), DURABLE_OK);
    assert_int_equal(json_string_length(out), 1000000);
    json_decref(out);
    expr_free(e);
    json_decref(ctx);
}

/* ---- threads ---- */

#define N_THREADS 8
#define N_ROUNDS  400

struct worker {
    int id;
    int failures;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char src[64];
    struct expr *shared = NULL, *own = NULL;
    json_t *ctx = context(), *out = NULL;

    snprintf(src, sizeof(src), ".input.amount + %d", w->id);
    if (expr_compile(".steps.review.output.approved", &shared, NULL) != DURABLE_OK ||
        expr_compile(src, &own, NULL) != DURABLE_OK) {
        w->failures++;
        goto done;
    }
    for (int i = 0; i < N_ROUNDS; i++) {
        json_object_set_new(json_object_get(ctx, "input"), "amount", json_integer(i));
        if (expr_eval(shared, ctx, &out, NULL) != DURABLE_OK || !json_is_true(out))
            w->failures++;
        json_decref(out);
        out = NULL;
        if (expr_eval(own, ctx, &out, NULL) != DURABLE_OK || json_integer_value(out) != i + w->id)
            w->failures++;
        json_decref(out);
        out = NULL;
        if (i % 100 == 0) { /* churn the cache while others evaluate */
            struct expr *tmp = NULL;
            if (expr_compile(".run.id", &tmp, NULL) != DURABLE_OK)
                w->failures++;
            expr_free(tmp);
        }
    }
done:
    expr_free(shared);
    expr_free(own);
    json_decref(ctx);
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t th[N_THREADS];
    struct worker w[N_THREADS];

    (void)state;
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){ .id = i, .failures = 0 };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_compile_error_null_err),
        cmocka_unit_test(test_eval_context),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_first_output_only),
        cmocka_unit_test(test_path_expressions),
        cmocka_unit_test(test_runtime_errors),
        cmocka_unit_test(test_truthy),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_cache_shares_programs),
        cmocka_unit_test(test_long_expressions),
        cmocka_unit_test(test_deep_input),
        cmocka_unit_test(test_huge_output),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
