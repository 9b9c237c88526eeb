/*
 * test_def_yaml.c - YAML definitions through def.h and durable_validate():
 * how DEF_FORMAT_AUTO tells the formats apart, the document handed to the
 * store (current shape, readable back as JSON), merge-key precedence, and
 * hostile input (billion laughs, deep and wide documents, 10,000 steps,
 * floods of errors) that must be refused or accepted quickly and without
 * leaks. The exact messages are in tests/data/def/{valid,invalid}, as
 * NAME.yaml and NAME.expected.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "def/def.h"
#include "steps/steps.h"
#include "store/store.h"
#include "util/util.h"

static const struct def_options auto_opts = { .action_name = store_builtin_action_name,
                                              .find_type = steps_builtin_find };
static const struct def_options yaml_opts = { .action_name = store_builtin_action_name,
                                              .format = DEF_FORMAT_YAML,
                                              .find_type = steps_builtin_find };
static const struct def_options json_opts = { .action_name = store_builtin_action_name,
                                              .format = DEF_FORMAT_JSON,
                                              .find_type = steps_builtin_find };

/* The code of def_parse_any(text) and its first error ("" when none). */
static durable_code first_error(const struct def_options *opts, const char *text, size_t len,
                                char msg[DURABLE_ERROR_MSG_SIZE])
{
    durable_error err = { DURABLE_OK, "" };
    struct plan *plan = NULL;
    durable_code code = def_parse_any(text, len, opts, &plan, NULL, &err);

    assert_true((code == DURABLE_OK) == (plan != NULL));
    plan_unref(plan);
    snprintf(msg, DURABLE_ERROR_MSG_SIZE, "%s", code == DURABLE_OK ? "" : err.msg);
    return code;
}

/* The formatted report of a YAML text that must fail with `want`. */
static char *yaml_report(const char *text, size_t len, durable_code want)
{
    char *text_out;
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf out;

    def_report_init(&rep);
    assert_int_equal(def_parse_yaml(text, len, &auto_opts, &plan, &rep, NULL), want);
    assert_null(plan);
    dbuf_init(&out, 0);
    def_report_format(&rep, &out);
    def_report_release(&rep);
    text_out = dbuf_detach(&out, NULL);
    dbuf_release(&out); /* detach leaves an empty buffer behind */
    return text_out;
}

static struct plan *yaml_plan(const char *text)
{
    durable_error err = { DURABLE_OK, "" };
    struct plan *plan = NULL;

    if (def_parse_yaml(text, strlen(text), &auto_opts, &plan, NULL, &err) != DURABLE_OK)
        fail_msg("%s", err.msg);
    return plan;
}

/* ---- telling the formats apart ---- */

struct auto_case {
    const char *text;
    durable_code code;
    const char *msg;
};

static void test_auto_format(void **state)
{
    static const struct auto_case cases[] = {
        { "{\"name\":\"j\",\"steps\":[{\"id\":\"a\"}]}", DURABLE_OK, "" },
        { "name: y\nsteps: [{id: a}]\n", DURABLE_OK, "" },
        { "\xef\xbb\xbfname: bom\nsteps: [{id: a}]\n", DURABLE_OK, "" },
        { "---\n{name: flow, steps: [{id: a}]}\n", DURABLE_OK, "" },
        /* '{' or '[' first, or nothing at all: JSON, as before YAML existed */
        { "{name: flow, steps: [{id: a}]}", DURABLE_ESYNTAX,
          "line 1, column 5: string or '}' expected near 'name'" },
        { " \n\t[1, 2,]", DURABLE_ESYNTAX, "line 2, column 8: unexpected token near ']'" },
        { "[]", DURABLE_EINVAL, "a workflow definition must be a JSON object, got array" },
        { "", DURABLE_ESYNTAX, "line 1, column 1: unexpected token near end of file" },
        { " \n\n", DURABLE_ESYNTAX, "line 3, column 1: unexpected token near end of file" },
        /* a scalar alone is no definition in either format: JSON's words */
        { "5", DURABLE_EINVAL, "a workflow definition must be a JSON object, got number" },
        { "null", DURABLE_EINVAL, "a workflow definition must be a JSON object, got null" },
        { "\"text\"", DURABLE_EINVAL, "a workflow definition must be a JSON object, got string" },
        { "nul", DURABLE_ESYNTAX, "line 1, column 3: invalid token near 'nul'" },
        /* anything else is YAML */
        { "- id: a\n", DURABLE_EINVAL, "a workflow definition must be a mapping, got sequence" },
        { "# nothing\n", DURABLE_EINVAL, "the definition is empty: it holds no YAML document" },
        { "\"unterminated", DURABLE_ESYNTAX,
          "line 1, column 14: found unexpected end of stream while scanning a quoted scalar "
          "started at line 1, column 1" },
        { "name: x\nname: y\n", DURABLE_ESYNTAX,
          "line 2, column 1: duplicate key \"name\" (first at line 1, column 1)" },
    };
    char msg[DURABLE_ERROR_MSG_SIZE];
    size_t i;

    (void)state;
    for (i = 0; i < DUR_ARRAY_LEN(cases); i++) {
        durable_code code = first_error(&auto_opts, cases[i].text, strlen(cases[i].text), msg);
        if (code != cases[i].code || strcmp(msg, cases[i].msg) != 0)
            fail_msg("case %zu (%s): got %d \"%s\", want %d \"%s\"", i, cases[i].text, code, msg,
                     cases[i].code, cases[i].msg);
    }
    /* NULL options and NULL text behave as AUTO and as "" */
    assert_int_equal(first_error(NULL, "name: y\nsteps: [{id: a}]\n", 24, msg), DURABLE_OK);
    assert_int_equal(first_error(&auto_opts, NULL, 0, msg), DURABLE_ESYNTAX);
    assert_string_equal(msg, "line 1, column 1: unexpected token near end of file");
}

static void test_explicit_format(void **state)
{
    const char *flow = "{name: flow, steps: [{id: a}]}";
    const char *block = "name: y\nsteps: [{id: a}]\n";
    char msg[DURABLE_ERROR_MSG_SIZE];

    (void)state;
    assert_int_equal(first_error(&yaml_opts, flow, strlen(flow), msg), DURABLE_OK);
    assert_int_equal(first_error(&json_opts, block, strlen(block), msg), DURABLE_ESYNTAX);
    assert_string_equal(msg, "line 1, column 4: invalid token near 'name'");
    assert_int_equal(first_error(&yaml_opts, "5", 1, msg), DURABLE_EINVAL);
    assert_string_equal(msg, "a workflow definition must be a mapping, got number");
    assert_int_equal(first_error(&yaml_opts, "", 0, msg), DURABLE_EINVAL);
    assert_string_equal(msg, "the definition is empty: it holds no YAML document");
    /* def_parse stays JSON whatever the options say */
    assert_int_equal(
            def_parse(block, strlen(block), &yaml_opts, &(struct plan *){ NULL }, NULL, NULL),
            DURABLE_ESYNTAX);
}

static void test_durable_validate(void **state)
{
    const char *good = "name: v\nsteps:\n  - id: a\n    colour: red\n";
    const char *bad = "name: v\nsteps:\n  - id: a\n    depends_on: [b]\n";
    durable_error err = { DURABLE_OK, "" };
    char *report = NULL;

    (void)state;
    assert_int_equal(durable_validate(good, strlen(good), &report, &err), DURABLE_OK);
    assert_string_equal(report, "warning: steps[0].colour (line 4, column 13): unknown field "
                                "\"colour\"\n");
    free(report);
    assert_int_equal(durable_validate(bad, strlen(bad), &report, &err), DURABLE_EINVAL);
    assert_string_equal(report, "steps[0].depends_on[0] (line 4, column 18): unknown step \"b\"\n");
    assert_string_equal(err.msg, "steps[0].depends_on[0] (line 4, column 18): unknown step \"b\"");
    free(report);
}

/* ---- the document handed to the store ---- */

static void test_definition_has_current_shape(void **state)
{
    const char *yaml = "name: old\n"
                       "version: 2.10\n"
                       "tasks:\n"
                       "  - id: a\n"
                       "    type: activity\n"
                       "    activity_type: fetch\n"
                       "    timeout: 1.5m\n"
                       "    retry_policy: {maximum_attempts: 3, initial_interval: 500ms,\n"
                       "                   maximum_interval: 1h, multiplier: 1.5}\n"
                       "  - id: b\n"
                       "    depends_on: [a]\n"
                       "    start_to_close_timeout: 30\n";
    const char *want = "{\"name\":\"old\",\"version\":\"2.10\",\"steps\":["
                       "{\"id\":\"a\",\"type\":\"fetch\",\"timeout_seconds\":90,"
                       "\"retry\":{\"max_attempts\":3,\"initial_interval_seconds\":0.5,"
                       "\"max_interval_seconds\":3600,\"backoff_coefficient\":1.5}},"
                       "{\"id\":\"b\",\"depends_on\":[\"a\"],\"timeout_seconds\":30}]}";
    struct plan *plan = yaml_plan(yaml);
    char *got = json_dumps(plan->definition, JSON_COMPACT);

    (void)state;
    assert_string_equal(got, want);
    assert_string_equal(plan->version, "2.10");
    assert_int_equal(plan->steps[0].timeout_ms, 90000);
    assert_int_equal(plan->steps[0].retry.max_attempts, 3);
    assert_int_equal(def_retry_delay_ms(&plan->steps[0].retry, 2), 500);
    assert_int_equal(plan->steps[1].timeout_ms, 30000);
    free(got);
    plan_unref(plan);
}

/* Durations are the double nearest their value: "0.3s" is 0.3 (not
 * 3 * 0.1), "1.1h" the integer 3960, "100ms" 0.1 (not 0). */
static void test_durations_exact(void **state)
{
    const char *yaml = "name: ms\n"
                       "tasks:\n"
                       "  - id: a\n"
                       "    timeout: 100ms\n"
                       "    retry_policy: {initial_interval: 0.3s, maximum_interval: 1.1h}\n"
                       "  - id: b\n"
                       "    timeout: 1500 ms\n";
    struct plan *plan = yaml_plan(yaml);
    json_t *a = json_array_get(json_object_get(plan->definition, "steps"), 0);
    json_t *retry = json_object_get(a, "retry");
    json_t *max = json_object_get(retry, "max_interval_seconds");

    (void)state;
    assert_true(json_real_value(json_object_get(a, "timeout_seconds")) == 0.1);
    assert_true(json_real_value(json_object_get(retry, "initial_interval_seconds")) == 0.3);
    assert_true(json_is_integer(max));
    assert_int_equal(json_integer_value(max), 3960);
    assert_int_equal(plan->steps[0].timeout_ms, 100);
    assert_int_equal(def_retry_delay_ms(&plan->steps[0].retry, 2), 300);
    assert_int_equal(plan->steps[1].timeout_ms, 1500);
    plan_unref(plan);
}

static void test_human_approval(void **state)
{
    const char *yaml = "name: approve\ntasks:\n  - id: ok\n    type: activity\n"
                       "    activity_type: human_approval\n";
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf out;

    (void)state;
    def_report_init(&rep);
    dbuf_init(&out, 0);
    assert_int_equal(def_parse_yaml(yaml, strlen(yaml), &auto_opts, &plan, &rep, NULL), DURABLE_OK);
    assert_ptr_equal(plan->steps[0].step_type, &steps_approval_type);
    plan_unref(plan);
    dbuf_release(&out);
    def_report_release(&rep);
}

static void test_merge_precedence(void **state)
{
    const char *yaml = "name: merge\n"
                       "a: &a {x: a, y: a, z: a}\n"
                       "b: &b {x: b, y: b, w: b}\n"
                       "input:\n"
                       "  y: explicit\n"
                       "  <<: [*b, *a]\n"
                       "steps: [{id: s}]\n";
    struct plan *plan = yaml_plan(yaml);
    char *input = json_dumps(plan->input, JSON_COMPACT | JSON_SORT_KEYS);

    (void)state;
    assert_string_equal(input, "{\"w\":\"b\",\"x\":\"b\",\"y\":\"explicit\",\"z\":\"a\"}");
    free(input);
    plan_unref(plan);
}

static void test_locations(void **state)
{
    const char *yaml = "name: loc\n"
                       "deps: &deps [nope]\n"
                       "steps:\n"
                       "  - id: a\n"
                       "    depends_on: *deps\n"
                       "    config:\n"
                       "      fail_probability: off\n"
                       "      max_retries:\n"
                       "  - {id: b, type: 7}\n";
    char *report = yaml_report(yaml, strlen(yaml), DURABLE_EINVAL);

    (void)state;
    /* inside an alias: at the alias; booleans and nulls at their place
     * (they are shared singletons in jansson: located by container) */
    assert_string_equal(report,
                        "warning: deps (line 2, column 7): unknown field \"deps\"\n"
                        "steps[0].depends_on[0] (line 5, column 17): unknown step \"nope\"\n"
                        "steps[0].config.fail_probability (line 7, column 25): expected a "
                        "number, got boolean\n"
                        "steps[0].config.max_retries (line 8, column 19): expected an integer, "
                        "got null\n"
                        "steps[1].type (line 9, column 19): expected a string, got number\n");
    free(report);
}

/* ---- hostile input ---- */

/* "Billion laughs": nine levels of ten aliases of `leaf`. */
static char *laughs(const char *leaf)
{
    static const char levels[] = "abcdefghi";
    char *text_out;
    struct dbuf b;
    size_t i, j;

    dbuf_init(&b, 0);
    dbuf_addf(&b, "name: laughs\nsteps: [{id: a}]\nl0: &l0 %s\n", leaf);
    for (i = 1; i < sizeof(levels); i++) {
        dbuf_addf(&b, "%c: &l%zu [", levels[i - 1], i);
        for (j = 0; j < 10; j++)
            dbuf_addf(&b, "%s*l%zu", j ? ", " : "", i - 1);
        dbuf_adds(&b, "]\n");
    }
    text_out = dbuf_detach(&b, NULL);
    dbuf_release(&b);
    return text_out;
}

static void test_billion_laughs(void **state)
{
    char *text = laughs("[x, x, x, x, x, x, x, x, x, x]");
    char msg[DURABLE_ERROR_MSG_SIZE];
    char *report = NULL;
    durable_error err = { DURABLE_OK, "" };

    /* The caps stop the expansion; how fast is the benchmarks' business,
     * not a unit test's (no wall-clock assertions here). */
    (void)state;
    assert_int_equal(first_error(&auto_opts, text, strlen(text), msg), DURABLE_ETOOBIG);
    assert_string_equal(msg, "line 8, column 24: the document has more than 524288 nodes once "
                             "aliases are expanded");
    assert_int_equal(durable_validate(text, strlen(text), &report, &err), DURABLE_ETOOBIG);
    assert_null(report);
    free(text);
    text = laughs("\"a string of forty bytes, copied a lot..\"");
    assert_int_equal(first_error(&auto_opts, text, strlen(text), msg), DURABLE_ETOOBIG);
    assert_string_equal(msg, "line 8, column 14: the document has more than 1048576 bytes of "
                             "text once aliases are expanded");
    free(text);
}

static void test_converted_size(void **state)
{
    struct dbuf b;
    char msg[DURABLE_ERROR_MSG_SIZE];
    size_t i;

    (void)state;
    /* 4 bytes of YAML ("\x01") become 6 of JSON ("\u0001") */
    dbuf_init(&b, 0);
    dbuf_adds(&b, "name: big\nsteps: [{id: a}]\ndescription: \"");
    for (i = 0; i < 200000; i++)
        dbuf_adds(&b, "\\x01");
    dbuf_adds(&b, "\"\n");
    assert_true(b.len < (size_t)DEF_MAX_TEXT);
    assert_int_equal(first_error(&yaml_opts, b.buf, b.len, msg), DURABLE_ETOOBIG);
    assert_string_equal(msg, "definition is larger than 1048576 bytes once converted to JSON");
    /* and the text itself over the limit */
    dbuf_reset(&b);
    dbuf_adds(&b, "name: big\nsteps: [{id: a}]\n");
    while (b.len <= (size_t)DEF_MAX_TEXT)
        dbuf_adds(&b, "# a comment line that makes the text larger than the limit\n");
    assert_int_equal(first_error(&yaml_opts, b.buf, b.len, msg), DURABLE_ETOOBIG);
    assert_string_equal(msg, "definition is larger than 1048576 bytes");
    dbuf_release(&b);
}

static void test_deep(void **state)
{
    struct dbuf b;
    char msg[DURABLE_ERROR_MSG_SIZE];
    size_t i;

    (void)state;
    dbuf_init(&b, 0);
    /* 512 levels are fine: the root mapping, then 511 sequences */
    dbuf_adds(&b, "name: deep\nsteps: [{id: a}]\ninput: {x: ");
    for (i = 0; i < 510; i++)
        dbuf_adds(&b, "[");
    for (i = 0; i < 510; i++)
        dbuf_adds(&b, "]");
    dbuf_adds(&b, "}\n");
    assert_int_equal(first_error(&yaml_opts, b.buf, b.len, msg), DURABLE_OK);
    /* a block sequence 300,000 levels deep, never closed */
    dbuf_reset(&b);
    dbuf_adds(&b, "name: deep\ninput:\n");
    for (i = 0; i < 300000; i++)
        dbuf_adds(&b, "- ");
    assert_int_equal(first_error(&yaml_opts, b.buf, b.len, msg), DURABLE_ESYNTAX);
    dbuf_release(&b);
    assert_non_null(strstr(msg, "nesting is deeper than 512 levels"));
}

static void test_many_steps(void **state)
{
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf b;
    size_t i;

    (void)state;
    dbuf_init(&b, 0);
    dbuf_adds(&b, "name: many\ntasks:\n");
    for (i = 0; i < DEF_MAX_STEPS; i++) {
        dbuf_addf(&b,
                  "  - id: s%zu\n    type: activity\n    activity_type: task\n"
                  "    timeout: 1m\n",
                  i);
        if (i > 0)
            dbuf_addf(&b, "    depends_on: [s%zu]\n", i - 1);
    }
    def_report_init(&rep);
    assert_int_equal(def_parse_yaml(b.buf, b.len, &auto_opts, &plan, &rep, NULL), DURABLE_OK);
    assert_int_equal(plan->n_steps, DEF_MAX_STEPS);
    assert_int_equal(plan->steps[DEF_MAX_STEPS - 1].timeout_ms, 60000);
    assert_int_equal(plan->topo[DEF_MAX_STEPS - 1], DEF_MAX_STEPS - 1);
    plan_unref(plan);
    def_report_release(&rep);
    /* the same with two errors in every step: 100 listed, all counted; the
     * older shape's mistakes come first */
    dbuf_reset(&b);
    dbuf_adds(&b, "name: many\ntasks:\n");
    for (i = 0; i < DEF_MAX_STEPS; i++)
        dbuf_addf(&b, "  - {id: s%zu, depends_on: [x%zu], timeout: soon}\n", i, i);
    def_report_init(&rep);
    assert_int_equal(def_parse_yaml(b.buf, b.len, &auto_opts, &plan, &rep, NULL), DURABLE_EINVAL);
    assert_int_equal(rep.n, DEF_MAX_DIAGS + 1);
    assert_int_equal(rep.n_errors, 2 * DEF_MAX_STEPS);
    assert_string_equal(rep.items[1].where, "tasks[1].timeout (line 4, column 41)");
    def_report_release(&rep);
    dbuf_release(&b);
}

static void test_wide_mapping(void **state)
{
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf b;
    size_t i;

    (void)state;
    /* 40,000 unknown fields in one mapping: each warning's location is a
     * lookup in that mapping; only the listed ones may pay for it */
    dbuf_init(&b, 0);
    dbuf_adds(&b, "name: wide\ntasks:\n  - id: a\n    config:\n");
    for (i = 0; i < 40000; i++)
        dbuf_addf(&b, "      k%zu: %zu\n", i, i);
    def_report_init(&rep);
    assert_int_equal(def_parse_yaml(b.buf, b.len, &auto_opts, &plan, &rep, NULL), DURABLE_OK);
    assert_int_equal(rep.n, DEF_MAX_DIAGS + 1);
    assert_string_equal(rep.items[99].where, "tasks[0].config.k99 (line 104, column 12)");
    plan_unref(plan);
    def_report_release(&rep);
    dbuf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto_format),
        cmocka_unit_test(test_explicit_format),
        cmocka_unit_test(test_durable_validate),
        cmocka_unit_test(test_definition_has_current_shape),
        cmocka_unit_test(test_durations_exact),
        cmocka_unit_test(test_human_approval),
        cmocka_unit_test(test_merge_precedence),
        cmocka_unit_test(test_locations),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_converted_size),
        cmocka_unit_test(test_deep),
        cmocka_unit_test(test_many_steps),
        cmocka_unit_test(test_wide_mapping),
    };

    return cmocka_run_group_tests_name("def_yaml", tests, NULL, NULL);
}
