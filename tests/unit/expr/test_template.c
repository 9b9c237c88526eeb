/*
 * test_template.c - unit tests of template.c through expr.h: `{{ }}`
 * templates in strings (literal text, one template keeping its type,
 * interpolation, the scanner's reading of braces and jq strings, errors with
 * offsets) and configs rendered as a whole (paths in errors, a null
 * refused).
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

static const char *const context_text =
        "{\"input\":{\"order_id\":\"o1\",\"amount\":1500,\"ratio\":0.1,\"tags\":[\"a\",\"b\"],"
        "\"note\":null},"
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

static char *dump(json_t *v)
{
    return json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
}

/* Renders template s on the test context; checks the compact JSON result. */
static void check_render(const char *s, const char *want)
{
    durable_error err = { 0 };
    struct template *t = NULL;
    json_t *ctx = load(context_text), *out = NULL;
    char *got;

    if (expr_template_compile(s, &t, &err) != DURABLE_OK)
        fail_msg("compile %s: %s", s, err.msg);
    if (expr_template_render(t, ctx, &out, &err) != DURABLE_OK)
        fail_msg("render %s: %s", s, err.msg);
    got = dump(out);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", s, got, want);
    free(got);
    json_decref(out);
    json_decref(ctx);
    expr_template_free(t);
}

static void check_compile_error(const char *s, durable_code code, const char *want)
{
    durable_error err = { 0 };
    struct template *t = (struct template *)&err;

    assert_int_equal(expr_template_compile(s, &t, &err), code);
    assert_null(t);
    if (strcmp(err.msg, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", s, err.msg, want);
}

static void test_literal(void **state)
{
    struct template *t = NULL;

    (void)state;
    check_render("plain text", "\"plain text\"");
    check_render("", "\"\"");
    check_render("a } b }} c { d", "\"a } b }} c { d\"");
    assert_int_equal(expr_template_compile("no templates", &t, NULL), DURABLE_OK);
    assert_false(expr_template_has_exprs(t));
    assert_false(expr_template_is_single(t));
    expr_template_free(t);
    expr_template_free(NULL);
}

static void test_single_keeps_type(void **state)
{
    struct template *t = NULL;

    (void)state;
    check_render("{{ .input.amount }}", "1500");
    check_render("{{.input.amount}}", "1500");
    check_render("{{ .steps.review.output.approved }}", "true");
    check_render("{{ .input.tags }}", "[\"a\",\"b\"]");
    check_render("{{ .input }}",
                 "{\"order_id\":\"o1\",\"amount\":1500,\"ratio\":0.1,\"tags\":[\"a\",\"b\"],"
                 "\"note\":null}");
    check_render("{{ .input.note }}", "null");
    check_render("{{ .input.missing }}", "null");
    check_render("{{ .input.order_id }}", "\"o1\"");
    check_render("{{\n  .run.id\n}}", "\"r1\"");
    assert_int_equal(expr_template_compile("{{ .a }}", &t, NULL), DURABLE_OK);
    assert_true(expr_template_is_single(t));
    assert_true(expr_template_has_exprs(t));
    expr_template_free(t);
    /* Text around a single template makes it a string. */
    check_render(" {{ .input.amount }}", "\" 1500\"");
    check_render("{{ .input.amount }} ", "\"1500 \"");
}

static void test_interpolation(void **state)
{
    (void)state;
    check_render("http://shop.local/orders/{{ .input.order_id }}",
                 "\"http://shop.local/orders/o1\"");
    check_render("{{ .run.id }}/{{ .input.order_id }}: {{ .input.amount }}", "\"r1/o1: 1500\"");
    /* Non-strings as compact JSON, numbers the way jq prints them. */
    check_render("tags={{ .input.tags }} ok={{ .steps.review.output.approved }} "
                 "ratio={{ .input.ratio }} none={{ .input.note }}",
                 "\"tags=[\\\"a\\\",\\\"b\\\"] ok=true ratio=0.1 none=null\"");
    check_render("x={{ .input.amount / 7 }}", "\"x=214.28571428571428\"");
    check_render("x{{ {a: .input.amount} }}", "\"x{\\\"a\\\":1500}\"");
    check_render("{{ .input.tags[] }}!", "\"a!\""); /* first output only */
    check_render("[{{ empty }}]", "\"[null]\"");
}

static void test_scanner(void **state)
{
    (void)state;
    /* Braces of object literals do not close the template. */
    check_render("{{ {\"x\": {\"y\": 1}} | .x.y }}", "1");
    check_render("{{ {a:{b:2}}}}", "{\"a\":{\"b\":2}}");
    check_render("v={{ {a:{b:2}}.a.b }}.", "\"v=2.\"");
    /* "}}" inside a jq string does not either, nor in an interpolation. */
    check_render("{{ \"}}\" }}", "\"}}\"");
    check_render("<{{ \"a}}b\" }}>", "\"<a}}b>\"");
    check_render("{{ \"\\(.input.tags | {t: .}) }}\" }}",
                 "\"{\\\"t\\\":[\\\"a\\\",\\\"b\\\"]} }}\"");
    check_render("{{ \"q\\\"}}\" }}", "\"q\\\"}}\"");
    check_render("{{ \"\\(\"\\(1 + 1)}}\")\" }}", "\"2}}\"");
    /* A comment runs to the end of its line, as in jq. */
    check_render("{{ .run.id # note }}\n}}", "\"r1\"");
    /* The way to write a literal "{{". */
    check_render("a {{ \"{{\" }} b", "\"a {{ b\"");
    /* Two templates side by side. */
    check_render("{{1}}{{2}}", "\"12\"");
    check_render("{{ .run.id }}}", "\"r1}\"");
}

static void test_errors(void **state)
{
    (void)state;
    check_compile_error("abc {{ .input", DURABLE_EINVAL, "unterminated \"{{\" at offset 4");
    check_compile_error("{{ \"}}", DURABLE_EINVAL, "unterminated \"{{\" at offset 0");
    check_compile_error("ok {{ .a }} then {{ {a: 1}", DURABLE_EINVAL,
                        "unterminated \"{{\" at offset 17");
    check_compile_error("x {{ }} y", DURABLE_EINVAL, "empty expression in \"{{ }}\" at offset 2");
    check_compile_error(
            "{{.a $$}}", DURABLE_EINVAL,
            "jq: syntax error, unexpected '$', expecting $end (Unix shell quoting issues?) at "
            "<top-level>, line 1");
    check_compile_error(
            "id: {{ nosuch }}", DURABLE_EINVAL,
            "expression at offset 4: jq: nosuch/0 is not defined at <top-level>, line 1");
    {
        /* 40 strings, each opening an interpolation: over the scanner's 32. */
        char deep[200];
        int n = snprintf(deep, sizeof(deep), "{{ ");
        for (int i = 0; i < 40; i++)
            n += snprintf(deep + n, sizeof(deep) - (size_t)n, "\"\\(");
        snprintf(deep + n, sizeof(deep) - (size_t)n, " }}");
        check_compile_error(deep, DURABLE_EINVAL, "\"{{\" at offset 0 nested too deeply");
    }
}

static void test_render_errors(void **state)
{
    durable_error err = { 0 };
    struct template *t = NULL;
    json_t *ctx = load(context_text), *out = NULL;

    (void)state;
    assert_int_equal(expr_template_compile("a {{ .run.id }} b {{ .input.order_id.x }}", &t, NULL),
                     DURABLE_OK);
    assert_int_equal(expr_template_render(t, ctx, &out, &err), DURABLE_ESTEP);
    assert_null(out);
    assert_string_equal(err.msg,
                        "expression at offset 18: jq: Cannot index string with string \"x\"");
    expr_template_free(t);
    err = (durable_error){ 0 };
    assert_int_equal(expr_template_compile("{{ error(\"nope\") }}", &t, NULL), DURABLE_OK);
    assert_int_equal(expr_template_render(t, ctx, &out, &err), DURABLE_ESTEP);
    assert_string_equal(err.msg, "jq: nope");
    expr_template_free(t);
    /* Interpolated text shares the output limit. */
    err = (durable_error){ 0 };
    assert_int_equal(expr_template_compile("{{ \"x\" * 600000 }}{{ \"y\" * 600000 }}", &t, NULL),
                     DURABLE_OK);
    assert_int_equal(expr_template_render(t, ctx, &out, &err), DURABLE_ETOOBIG);
    assert_string_equal(err.msg,
                        "expression at offset 18: expression result larger than 1048576 bytes");
    expr_template_free(t);
    err = (durable_error){ 0 };
    assert_int_equal(expr_template_compile("{{ [range(300000)] }} and more", &t, NULL), DURABLE_OK);
    assert_int_equal(expr_template_render(t, ctx, &out, &err), DURABLE_ETOOBIG);
    expr_template_free(t);
    json_decref(ctx);
}

/* ---- configs ---- */

static void test_config_render(void **state)
{
    durable_error err = { 0 };
    struct config_templates *c = NULL;
    json_t *ctx = load(context_text), *out = NULL;
    json_t *config =
            load("{\"url\":\"http://shop.local/orders/{{ .input.order_id }}\","
                 "\"method\":\"POST\",\"timeout_seconds\":30,"
                 "\"headers\":{\"X-Run\":\"{{ .run.id }}\",\"Content-Type\":\"application/json\"},"
                 "\"body\":{\"amount\":\"{{ .input.amount }}\",\"approved\":\"{{ "
                 ".steps.review.output.approved }}\",\"items\":[1,\"{{ .input.tags }}\",null]},"
                 "\"literal\":\"no {braces} here\"}");
    char *got;

    (void)state;
    assert_int_equal(expr_config_compile(config, &c, &err), DURABLE_OK);
    assert_int_equal(expr_config_n_templates(c), 5);
    /* The compiled config is a copy: changing the original changes nothing. */
    json_object_set_new(config, "method", json_string("GET"));
    assert_int_equal(expr_config_render(c, ctx, &out, &err), DURABLE_OK);
    got = dump(out);
    assert_string_equal(
            got,
            "{\"url\":\"http://shop.local/orders/o1\",\"method\":\"POST\",\"timeout_seconds\":30,"
            "\"headers\":{\"X-Run\":\"r1\",\"Content-Type\":\"application/json\"},"
            "\"body\":{\"amount\":1500,\"approved\":true,\"items\":[1,[\"a\",\"b\"],null]},"
            "\"literal\":\"no {braces} here\"}");
    free(got);
    json_decref(out);
    /* Rendering twice gives fresh copies. */
    assert_int_equal(expr_config_render(c, ctx, &out, NULL), DURABLE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "url")),
                        "http://shop.local/orders/o1");
    json_decref(out);
    expr_config_free(c);
    expr_config_free(NULL);
    json_decref(config);
    json_decref(ctx);
}

static void test_config_plain_and_root(void **state)
{
    struct config_templates *c = NULL;
    json_t *ctx = load(context_text), *out = NULL;
    json_t *plain = load("{\"a\":[1,{\"b\":\"c\"}],\"d\":null}");
    json_t *root = load("\"{{ .input.amount }}\"");

    (void)state;
    assert_int_equal(expr_config_compile(plain, &c, NULL), DURABLE_OK);
    assert_int_equal(expr_config_n_templates(c), 0);
    assert_int_equal(expr_config_render(c, ctx, &out, NULL), DURABLE_OK);
    assert_true(json_equal(out, plain));
    assert_ptr_not_equal(out, plain);
    json_decref(out);
    expr_config_free(c);
    /* A config that is itself one template string. */
    assert_int_equal(expr_config_compile(root, &c, NULL), DURABLE_OK);
    assert_int_equal(expr_config_render(c, ctx, &out, NULL), DURABLE_OK);
    assert_int_equal(json_integer_value(out), 1500);
    json_decref(out);
    expr_config_free(c);
    json_decref(plain);
    json_decref(root);
    json_decref(ctx);
}

static void check_config_error(const char *config_text, durable_code code, const char *want)
{
    durable_error err = { 0 };
    struct config_templates *c = (struct config_templates *)&err;
    json_t *config = load(config_text);

    assert_int_equal(expr_config_compile(config, &c, &err), code);
    assert_null(c);
    if (strcmp(err.msg, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", config_text, err.msg, want);
    json_decref(config);
}

static void test_config_compile_errors(void **state)
{
    (void)state;
    check_config_error(
            "{\"url\":\"{{ .a $$ }}\"}", DURABLE_EINVAL,
            "config.url: jq: syntax error, unexpected '$', expecting $end (Unix shell quoting "
            "issues?) at <top-level>, line 1");
    check_config_error(
            "{\"headers\":{\"Content-Type\":\"x {{ nosuch }}\"}}", DURABLE_EINVAL,
            "config.headers[\"Content-Type\"]: expression at offset 2: jq: nosuch/0 is not "
            "defined at <top-level>, line 1");
    check_config_error("{\"ok\":\"{{ .a }}\",\"items\":[1,2,\"a {{ .b\"]}", DURABLE_EINVAL,
                       "config.items[2]: unterminated \"{{\" at offset 2");
    check_config_error("[\"{{}}\"]", DURABLE_EINVAL,
                       "config[0]: empty expression in \"{{ }}\" at offset 0");
    {
        /* More expressions than the limit, counted over the whole config. */
        json_t *big = json_object();
        struct config_templates *c = NULL;
        durable_error err = { 0 };
        char key[16];
        for (int i = 0; i < 3; i++) {
            json_t *arr = json_array();
            for (int j = 0; j < 100; j++)
                json_array_append_new(arr, json_string("{{ .run.id }}"));
            snprintf(key, sizeof(key), "k%d", i);
            json_object_set_new(big, key, arr);
        }
        assert_int_equal(expr_config_compile(big, &c, &err), DURABLE_ETOOBIG);
        assert_null(c);
        assert_string_equal(err.msg, "config.k2[56]: more than 256 expressions in one config");
        json_decref(big);
    }
}

static void test_config_render_errors(void **state)
{
    durable_error err = { 0 };
    struct config_templates *c = NULL;
    json_t *ctx = load(context_text), *out = NULL;
    json_t *config = load("{\"a\":\"{{ .run.id }}\",\"b\":{\"c\":[\"x {{ .run.id }} "
                          "{{ .input.order_id.x }}\"]}}");

    (void)state;
    assert_int_equal(expr_config_compile(config, &c, NULL), DURABLE_OK);
    assert_int_equal(expr_config_render(c, ctx, &out, &err), DURABLE_ESTEP);
    assert_null(out);
    assert_string_equal(
            err.msg,
            "config.b.c[0]: expression at offset 16: jq: Cannot index string with string \"x\"");
    expr_config_free(c);
    json_decref(config);
    /* A context too deep for jq is refused before anything runs. */
    {
        json_t *deep = json_array();
        for (int i = 0; i < EXPR_MAX_DEPTH + 5; i++) {
            json_t *o = json_array();
            json_array_append_new(o, deep);
            deep = o;
        }
        config = load("{\"a\":\"{{ length }}\"}");
        assert_int_equal(expr_config_compile(config, &c, NULL), DURABLE_OK);
        err = (durable_error){ 0 };
        assert_int_equal(expr_config_render(c, deep, &out, &err), DURABLE_ETOOBIG);
        assert_string_equal(err.msg, "expression input nested deeper than 256 levels");
        expr_config_free(c);
        json_decref(config);
        json_decref(deep);
    }
    json_decref(ctx);
}

/* Renders config_text on the test context; expects it refused with want. */
static void check_config_null(const char *config_text, const char *want)
{
    durable_error err = { 0 };
    struct config_templates *c = NULL;
    json_t *ctx = load(context_text), *out = NULL, *config = load(config_text);

    assert_int_equal(expr_config_compile(config, &c, NULL), DURABLE_OK);
    assert_int_equal(expr_config_render(c, ctx, &out, &err), DURABLE_ESTEP);
    assert_null(out);
    if (strcmp(err.msg, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", config_text, err.msg, want);
    expr_config_free(c);
    json_decref(config);
    json_decref(ctx);
}

static void test_config_null(void **state)
{
    struct config_templates *c = NULL;
    json_t *ctx = load(context_text), *out = NULL;
    json_t *config = load("{\"note\":\"{{ .input.note // \\\"none\\\" }}\",\"d\":null,"
                          "\"s\":\"{{ \\\"null\\\" }}\"}");

    (void)state;
    /* A mistyped path, alone or inside text, names the field and the expression. */
    check_config_null("{\"url\":\"{{ .input.ulr }}\"}",
                      "config.url: template \"{{ .input.ulr }}\" rendered null");
    check_config_null(
            "{\"a\":\"{{ .run.id }}\",\"h\":{\"X-Id\":\"id={{ .run.id }}/{{ .input.ordr }}\"}}",
            "config.h[\"X-Id\"]: template \"{{ .input.ordr }}\" rendered null");
    check_config_null("[\"{{ empty }}\"]", "config[0]: template \"{{ empty }}\" rendered null");
    check_config_null("{\"n\":\"{{ .input.note }}\"}",
                      "config.n: template \"{{ .input.note }}\" rendered null");
    /* `//` gives a default; a literal null and the string "null" are values. */
    assert_int_equal(expr_config_compile(config, &c, NULL), DURABLE_OK);
    assert_int_equal(expr_config_render(c, ctx, &out, NULL), DURABLE_OK);
    assert_string_equal(json_string_value(json_object_get(out, "note")), "none");
    assert_true(json_is_null(json_object_get(out, "d")));
    assert_string_equal(json_string_value(json_object_get(out, "s")), "null");
    json_decref(out);
    expr_config_free(c);
    json_decref(config);
    json_decref(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal),
        cmocka_unit_test(test_single_keeps_type),
        cmocka_unit_test(test_interpolation),
        cmocka_unit_test(test_scanner),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_config_render),
        cmocka_unit_test(test_config_plain_and_root),
        cmocka_unit_test(test_config_compile_errors),
        cmocka_unit_test(test_config_render_errors),
        cmocka_unit_test(test_config_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
