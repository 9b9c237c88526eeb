/*
 * test_def_parse.c - unit tests of the def layer through def.h: plan shape
 * and topological order, retry back-off arithmetic, plan lifetime, the
 * public durable_validate(), and hostile input (deep nesting, NUL bytes,
 * invalid UTF-8, huge numbers, 10,000-step chains and cycles, floods of
 * errors) that must neither crash nor leak nor take long.
 */
#include "util/common.h"

#include <limits.h>
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

static const struct def_options builtin = { .action_name = store_builtin_action_name,
                                            .find_type = steps_builtin_find };

/* Parses text; returns the code. *plan and rep are the caller's to release. */
static durable_code parse(const char *text, struct plan **plan, struct def_report *rep,
                          durable_error *err)
{
    def_report_init(rep);
    err_clear(err);
    return def_parse(text, strlen(text), &builtin, plan, rep, err);
}

/* The formatted report of text, which must be invalid with code `want`. */
static char *report_of(const char *text, size_t len, durable_code want)
{
    char *text_out;
    struct def_report rep;
    struct plan *plan = NULL;
    struct dbuf out;

    def_report_init(&rep);
    assert_int_equal(def_parse(text, len, &builtin, &plan, &rep, NULL), want);
    assert_null(plan);
    dbuf_init(&out, 0);
    def_report_format(&rep, &out);
    def_report_release(&rep);
    text_out = dbuf_detach(&out, NULL);
    dbuf_release(&out); /* detach leaves an empty buffer behind */
    return text_out;
}

static void assert_topo(const struct plan *p, const char *const *ids)
{
    size_t i;

    for (i = 0; i < p->n_steps; i++)
        assert_string_equal(p->steps[p->topo[i]].id, ids[i]);
}

/* ---- plan shape ---- */

static void test_topo_stable(void **state)
{
    /* z y x w v, x after w: independent steps keep file order. */
    const char *text = "{\"name\":\"t\",\"steps\":[{\"id\":\"z\"},{\"id\":\"y\"},"
                       "{\"id\":\"x\",\"depends_on\":[\"w\"]},{\"id\":\"w\"},{\"id\":\"v\"}]}";
    const char *const want[] = { "z", "y", "w", "x", "v" };
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_OK);
    assert_topo(p, want);
    assert_int_equal(p->refs, 1);
    assert_int_equal(rep.n, 0);
    plan_unref(p);
    def_report_release(&rep);
}

static void test_diamond_edges(void **state)
{
    const char *text = "{\"name\":\"d\",\"steps\":["
                       "{\"id\":\"join\",\"depends_on\":[\"right\",\"left\"]},"
                       "{\"id\":\"right\",\"depends_on\":[\"start\"]},"
                       "{\"id\":\"left\",\"depends_on\":[\"start\"]},{\"id\":\"start\"}]}";
    const char *const want[] = { "start", "right", "left", "join" };
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_OK);
    assert_topo(p, want);
    /* deps in the order written, dependents ascending */
    assert_int_equal(p->steps[0].n_deps, 2);
    assert_int_equal(p->steps[0].deps[0], 1);
    assert_int_equal(p->steps[0].deps[1], 2);
    assert_int_equal(p->steps[3].n_dependents, 2);
    assert_int_equal(p->steps[3].dependents[0], 1);
    assert_int_equal(p->steps[3].dependents[1], 2);
    assert_int_equal(p->steps[0].n_dependents, 0);
    assert_int_equal(plan_step_index(p, "left"), 2);
    assert_int_equal(plan_step_index(p, "nope"), -1);
    assert_int_equal(plan_step_index(p, NULL), -1);
    assert_non_null(p->definition);
    assert_true(json_is_object(p->steps[0].config));
    assert_string_equal(p->steps[0].type, "task");
    assert_string_equal(p->steps[0].name, "join");
    plan_unref(p);
    def_report_release(&rep);
}

static void test_defaults_and_ref(void **state)
{
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_int_equal(parse("{\"name\":\"m\",\"steps\":[{\"id\":\"a\"}]}", &p, &rep, &err),
                     DURABLE_OK);
    assert_int_equal(p->steps[0].retry.max_attempts, 1);
    assert_true(p->steps[0].retry.initial_interval_s == 1.0);
    assert_true(p->steps[0].retry.backoff_coefficient == 2.0);
    assert_true(p->steps[0].retry.max_interval_s == 60.0);
    assert_ptr_equal(p->steps[0].step_type, &steps_task_type);
    assert_non_null(p->steps[0].type_data); /* the task's parsed config, defaults */
    assert_int_equal(p->steps[0].timeout_ms, 0);
    assert_int_equal(p->timeout_ms, 0);
    assert_null(p->steps[0].action);
    assert_null(p->version);
    assert_true(json_is_object(p->input));
    assert_ptr_equal(plan_ref(p), p);
    assert_int_equal(p->refs, 2);
    plan_unref(p);
    assert_int_equal(p->refs, 1);
    plan_unref(p); /* frees: ASan reports a leak or a double free otherwise */
    plan_unref(NULL);
    assert_null(plan_ref(NULL));
    def_report_release(&rep);
}

/* A type name resolves to its type at parse time; a name no type has is a
 * task; without a lookup, steps have no type. */
static void test_kinds(void **state)
{
    const char *text = "{\"name\":\"k\",\"steps\":[{\"id\":\"a\",\"type\":\"http_request\","
                       "\"config\":{\"url\":\"http://x\"}},{\"id\":\"b\",\"type\":\"activity\"},"
                       "{\"id\":\"c\",\"type\":\"workflow\",\"config\":{\"workflow\":\"w\"}}]}";
    struct def_report rep;
    struct plan *p = NULL;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, NULL), DURABLE_OK);
    assert_ptr_equal(p->steps[0].step_type, &steps_http_type);
    assert_ptr_equal(p->steps[1].step_type, &steps_task_type);
    assert_string_equal(p->steps[1].type, "activity");
    assert_ptr_equal(p->steps[2].step_type, &steps_workflow_type);
    plan_unref(p);
    def_report_release(&rep);
    assert_int_equal(def_parse(text, strlen(text), NULL, &p, NULL, NULL), DURABLE_OK);
    assert_null(p->steps[0].step_type);
    plan_unref(p);
    assert_ptr_equal(steps_builtin_find(NULL, "approval"), &steps_approval_type);
    assert_null(steps_builtin_find(NULL, "activity"));
}

/* ---- retry arithmetic ---- */

static void test_retry_delay(void **state)
{
    struct retry_policy r = {
        .max_attempts = 10, .initial_interval_s = 1, .backoff_coefficient = 2, .max_interval_s = 60
    };
    const int64_t want[] = { 0, 0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
    int i;

    (void)state;
    for (i = 0; i < (int)DUR_ARRAY_LEN(want); i++)
        assert_int_equal(def_retry_delay_ms(&r, i), want[i]);
    assert_int_equal(def_retry_delay_ms(&r, 1000), 60000);
    assert_int_equal(def_retry_delay_ms(&r, INT_MAX), 60000);
    assert_int_equal(def_retry_delay_ms(&r, -5), 0);
    assert_int_equal(def_retry_delay_ms(NULL, 3), 0);
    r.initial_interval_s = 0.5;
    r.backoff_coefficient = 3;
    r.max_interval_s = 10;
    assert_int_equal(def_retry_delay_ms(&r, 2), 500);
    assert_int_equal(def_retry_delay_ms(&r, 3), 1500);
    assert_int_equal(def_retry_delay_ms(&r, 4), 4500);
    assert_int_equal(def_retry_delay_ms(&r, 5), 10000);
    r.backoff_coefficient = 1;
    assert_int_equal(def_retry_delay_ms(&r, INT_MAX), 500);
    r.initial_interval_s = 0;
    r.backoff_coefficient = 2;
    assert_int_equal(def_retry_delay_ms(&r, INT_MAX), 0);
    r.initial_interval_s = 100;
    assert_int_equal(def_retry_delay_ms(&r, 2), 10000); /* initial above max: max */
    r.initial_interval_s = 1e-300;
    r.backoff_coefficient = 1e300;
    r.max_interval_s = 31536000;
    assert_int_equal(def_retry_delay_ms(&r, INT_MAX), 31536000000LL);
}

static void test_retry_from_definition(void **state)
{
    const char *text =
            "{\"name\":\"r\",\"steps\":[{\"id\":\"a\",\"config\":{\"max_retries\":4}},"
            "{\"id\":\"b\",\"config\":{\"max_retries\":4},\"retry\":{\"max_attempts\":2}},"
            "{\"id\":\"c\",\"timeout_seconds\":0.0004}]}";
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_OK);
    assert_int_equal(p->steps[0].retry.max_attempts, 5);
    assert_int_equal(p->steps[1].retry.max_attempts, 2);
    assert_int_equal(p->steps[2].timeout_ms, 1); /* positive never rounds to "none" */
    assert_int_equal(rep.n, 1);
    assert_true(rep.items[0].is_warning);
    assert_string_equal(rep.items[0].where, "steps[1].config.max_retries");
    plan_unref(p);
    def_report_release(&rep);
}

/* A workflow's own retention window: a duration as --retain-finished takes. */
static void test_retain_finished(void **state)
{
    static const struct {
        const char *value;
        const char *error; /* NULL: accepted */
    } cases[] = {
        { "\"30d\"", NULL },
        { "\"90s\"", NULL },
        { "\"30 days\"", "retain_finished: " },
        { "\"\"", "retain_finished: " },
        { "\"0d\"", "retain_finished: " },
        { "30", "retain_finished: expected a string" },
    };
    char text[160];
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    for (size_t i = 0; i < DUR_ARRAY_LEN(cases); i++) {
        snprintf(text, sizeof(text),
                 "{\"name\":\"k\",\"retain_finished\":%s,\"steps\":[{\"id\":\"a\"}]}",
                 cases[i].value);
        err_clear(&err);
        if (!cases[i].error) {
            assert_int_equal(parse(text, &p, &rep, &err), DURABLE_OK);
            assert_int_equal(p->retain_finished_ms, i == 0 ? 30LL * 86400000 : 90000);
            plan_unref(p);
        } else {
            assert_int_equal(parse(text, &p, &rep, &err), DURABLE_EINVAL);
            assert_null(p);
            assert_ptr_equal(strstr(err.msg, cases[i].error), err.msg);
        }
        def_report_release(&rep);
    }
    /* absent: the server's window */
    assert_int_equal(parse("{\"name\":\"k\",\"steps\":[{\"id\":\"a\"}]}", &p, &rep, &err),
                     DURABLE_OK);
    assert_int_equal(p->retain_finished_ms, 0);
    plan_unref(p);
    def_report_release(&rep);
}

/* ---- errors and the public entry ---- */

static void test_first_error_and_options(void **state)
{
    const char *text = "{\"name\":\"e\",\"steps\":[{\"id\":\"a\",\"config\":{\"action\":\"x\"}},"
                       "{\"id\":\"b\",\"depends_on\":[\"chrage\"]}]}";
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_EINVAL);
    assert_null(p);
    assert_int_equal(err.code, DURABLE_EINVAL);
    assert_string_equal(err.msg, "steps[0].config.action: unknown action \"x\"");
    assert_int_equal(rep.n_errors, 2);
    def_report_release(&rep);
    /* without an action list any name goes; a NULL report is fine */
    err_clear(&err);
    assert_int_equal(def_parse(text, strlen(text), NULL, &p, NULL, &err), DURABLE_EINVAL);
    assert_string_equal(err.msg, "steps[1].depends_on[0]: unknown step \"chrage\"");
    assert_int_equal(def_parse(NULL, 5, NULL, &p, NULL, NULL), DURABLE_ESYNTAX);
    assert_null(p);
}

static void test_durable_validate(void **state)
{
    const char *bad = "{\"name\":\"v\",\"steps\":[{\"id\":\"charge\"},"
                      "{\"id\":\"ship\",\"depends_on\":[\"chrage\"]}],\"x\":1}";
    const char *good = "{\"name\":\"v\",\"steps\":[{\"id\":\"a\"}]}";
    durable_error err = { DURABLE_OK, "" };
    char *report = NULL;
    char *big;

    (void)state;
    assert_int_equal(durable_validate(bad, strlen(bad), &report, &err), DURABLE_EINVAL);
    assert_string_equal(report, "steps[1].depends_on[0]: unknown step \"chrage\" "
                                "(did you mean \"charge\"?)\nwarning: x: unknown field \"x\"\n");
    durable_free(report);
    assert_int_equal(durable_validate(good, strlen(good), &report, NULL), DURABLE_OK);
    assert_string_equal(report, "");
    durable_free(report);
    assert_int_equal(durable_validate("{", 1, &report, NULL), DURABLE_ESYNTAX);
    assert_string_equal(report, "line 1, column 1: string or '}' expected near end of file\n");
    durable_free(report);
    big = xcalloc(DEF_MAX_TEXT + 2, 1);
    memset(big, ' ', DEF_MAX_TEXT + 1);
    err_clear(&err);
    report = (char *)1;
    assert_int_equal(durable_validate(big, DEF_MAX_TEXT + 1, &report, &err), DURABLE_ETOOBIG);
    assert_null(report);
    assert_string_equal(err.msg, "definition is larger than 1048576 bytes");
    free(big);
}

/* ---- hostile input ---- */

/* head, then n copies of open, then n copies of close, then tail. */
static char *nested(const char *head, const char *open, const char *close, size_t n,
                    const char *tail)
{
    struct dbuf b;
    char *text_out;
    size_t i;

    dbuf_init(&b, 0);
    dbuf_adds(&b, head);
    for (i = 0; i < n; i++)
        dbuf_adds(&b, open);
    for (i = 0; i < n; i++)
        dbuf_adds(&b, close);
    dbuf_adds(&b, tail);
    text_out = dbuf_detach(&b, NULL);
    dbuf_release(&b);
    return text_out;
}

static void test_deep_nesting(void **state)
{
    const size_t depth = 100000;
    char *text, *report;

    (void)state;
    text = nested("{\"name\":\"n\",\"steps\":[{\"id\":\"a\",\"config\":{\"x\":", "[", "]", depth,
                  "}}]}");
    report = report_of(text, strlen(text), DURABLE_ESYNTAX);
    assert_non_null(strstr(report, "maximum parsing depth reached"));
    free(report);
    free(text);
    /* 100,000 objects open at the root, never closed */
    text = nested("", "{\"a\":", "", depth, "");
    report = report_of(text, strlen(text), DURABLE_ESYNTAX);
    assert_non_null(strstr(report, "maximum parsing depth reached"));
    free(report);
    free(text);
}

static void test_bytes(void **state)
{
    const char nul[] = "{\"name\":\"x\",\n \"steps\":[{\"id\":\"a\0b\"}]}";
    const char bad_utf8[] = "{\"name\":\"\xc3\x28\",\"steps\":[{\"id\":\"a\"}]}";
    const char escaped_nul[] = "{\"name\":\"a\\u0000b\",\"steps\":[{\"id\":\"a\"}]}";
    char *report;

    (void)state;
    report = report_of(nul, sizeof(nul) - 1, DURABLE_ESYNTAX);
    assert_string_equal(report, "line 2, column 19: unexpected NUL byte\n");
    free(report);
    report = report_of(bad_utf8, sizeof(bad_utf8) - 1, DURABLE_ESYNTAX);
    assert_non_null(strstr(report, "line 1, column "));
    assert_non_null(strstr(report, "unable to decode byte 0xc3"));
    free(report);
    report = report_of(escaped_nul, sizeof(escaped_nul) - 1, DURABLE_ESYNTAX);
    assert_non_null(strstr(report, "\\u0000 is not allowed near"));
    assert_null(strstr(report, "JSON_ALLOW_NUL"));
    free(report);
}

static void test_numbers(void **state)
{
    const char *big_int = "{\"name\":\"x\",\"steps\":[{\"id\":\"a\",\"config\":"
                          "{\"max_retries\":123456789012345678901234567890}}]}";
    const char *big_real = "{\"name\":\"x\",\"steps\":[{\"id\":\"a\",\"config\":"
                           "{\"max_retries\":1e300},\"retry\":{\"max_attempts\":-1e300}}]}";
    char *report;

    (void)state;
    report = report_of(big_int, strlen(big_int), DURABLE_ESYNTAX);
    assert_non_null(strstr(report, "too big integer"));
    free(report);
    report = report_of(big_real, strlen(big_real), DURABLE_EINVAL);
    assert_string_equal(
            report,
            "steps[0].config.max_retries: must be an integer between 0 and 999, got 1e+300\n"
            "steps[0].retry.max_attempts: must be an integer between 1 and 1000, got -1e+300\n");
    free(report);
}

/* A definition of n steps, step i written as fmt(i). */
static char *many_steps(size_t n, const char *(*step)(size_t i, char *buf, size_t len))
{
    char *text_out;
    struct dbuf b;
    char buf[512];
    size_t i;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"name\":\"many\",\"steps\":[");
    for (i = 0; i < n; i++) {
        dbuf_adds(&b, i ? "," : "");
        dbuf_adds(&b, step(i, buf, sizeof(buf)));
    }
    dbuf_adds(&b, "]}");
    text_out = dbuf_detach(&b, NULL);
    dbuf_release(&b); /* detach leaves an empty buffer behind */
    return text_out;
}

static const char *chain_step(size_t i, char *buf, size_t len)
{
    /* written backwards: s0 depends on s1, ..., the last step is first to run */
    if (i + 1 < DEF_MAX_STEPS)
        snprintf(buf, len, "{\"id\":\"s%zu\",\"depends_on\":[\"s%zu\"]}", i, i + 1);
    else
        snprintf(buf, len, "{\"id\":\"s%zu\"}", i);
    return buf;
}

static const char *ring_step(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "{\"id\":\"s%zu\",\"depends_on\":[\"s%zu\"]}", i, (i + 1) % DEF_MAX_STEPS);
    return buf;
}

static void test_long_chain(void **state)
{
    char *text = many_steps(DEF_MAX_STEPS, chain_step);
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;
    size_t i;

    (void)state;
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_OK);
    for (i = 0; i < DEF_MAX_STEPS; i++)
        assert_int_equal(p->topo[i], DEF_MAX_STEPS - 1 - i);
    plan_unref(p);
    def_report_release(&rep);
    free(text);
}

static void test_long_cycle(void **state)
{
    char *text = many_steps(DEF_MAX_STEPS, ring_step);
    char *report = report_of(text, strlen(text), DURABLE_EINVAL);

    (void)state;
    assert_string_equal(
            report, "steps: cycle s0 \xe2\x86\x92 s9999 \xe2\x86\x92 s9998 \xe2\x86\x92 s9997 "
                    "\xe2\x86\x92 s9996 \xe2\x86\x92 s9995 \xe2\x86\x92 s9994 \xe2\x86\x92 s9993 "
                    "\xe2\x86\x92 s9992 \xe2\x86\x92 s9991 \xe2\x86\x92 s9990 \xe2\x86\x92 s9989 "
                    "\xe2\x86\x92 s9988 \xe2\x86\x92 s9987 \xe2\x86\x92 s9986 \xe2\x86\x92 s9985 "
                    "\xe2\x86\x92 ... (9983 more) \xe2\x86\x92 s1 \xe2\x86\x92 s0\n");
    free(report);
    free(text);
}

static void test_too_many_steps(void **state)
{
    char *text = many_steps(DEF_MAX_STEPS + 1, ring_step);
    char *report = report_of(text, strlen(text), DURABLE_EINVAL);

    (void)state;
    assert_string_equal(report, "steps: too many steps (10001; the limit is 10000)\n");
    free(report);
    free(text);
}

static const char *flood_step(size_t i, char *buf, size_t len)
{
    /* long ids that differ only at the end keep the edit distance busy */
    snprintf(buf, len, "{\"id\":\"%0120zu\",\"depends_on\":[\"x%0119zu\"],\"bad\":1}", i, i);
    return buf;
}

static void test_error_flood(void **state)
{
    char *text = many_steps(3000, flood_step);
    struct def_report rep;
    struct plan *p = NULL;
    durable_error err;

    (void)state;
    assert_true(strlen(text) < (size_t)DEF_MAX_TEXT);
    assert_int_equal(parse(text, &p, &rep, &err), DURABLE_EINVAL);
    assert_int_equal(rep.n, DEF_MAX_DIAGS + 1);
    assert_int_equal(rep.n_errors, 3000);
    assert_true(rep.items[DEF_MAX_DIAGS].is_warning);
    assert_string_equal(rep.items[DEF_MAX_DIAGS].message,
                        "too many problems; only the first 100 are listed");
    def_report_release(&rep);
    free(text);
}

static void test_sql_ids(void **state)
{
    const char *text = "{\"name\":\"x\",\"steps\":[{\"id\":\"a\\\"); DROP TABLE runs;--\"},"
                       "{\"id\":\"b\\n\\u0001\"}]}";
    char *report = report_of(text, strlen(text), DURABLE_EINVAL);

    (void)state;
    assert_string_equal(
            report,
            "steps[0].id: invalid step id \"a\\\"); DROP TABLE runs;--\": use 1 to 128 letters, "
            "digits, '_', '.' or '-'\n"
            "steps[1].id: invalid step id \"b\\n\\u0001\": use 1 to 128 letters, digits, '_', "
            "'.' or '-'\n");
    free(report);
}

static void test_long_values_are_cut(void **state)
{
    struct dbuf b;
    char *report;
    size_t i;

    (void)state;
    dbuf_init(&b, 0);
    dbuf_adds(&b, "{\"name\":\"x\",\"steps\":[{\"id\":\"a\",\"depends_on\":[\"");
    for (i = 0; i < 5000; i++)
        dbuf_adds(&b, "\xc3\xa9"); /* é: the cut must not split it */
    dbuf_adds(&b, "\"]}]}");
    report = report_of(b.buf, b.len, DURABLE_EINVAL);
    assert_true(strlen(report) < 200);
    assert_non_null(strstr(report, "\xc3\xa9...\"\n"));
    free(report);
    dbuf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topo_stable),
        cmocka_unit_test(test_diamond_edges),
        cmocka_unit_test(test_defaults_and_ref),
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_retry_from_definition),
        cmocka_unit_test(test_first_error_and_options),
        cmocka_unit_test(test_durable_validate),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_long_chain),
        cmocka_unit_test(test_long_cycle),
        cmocka_unit_test(test_too_many_steps),
        cmocka_unit_test(test_retain_finished),
        cmocka_unit_test(test_error_flood),
        cmocka_unit_test(test_sql_ids),
        cmocka_unit_test(test_long_values_are_cut),
    };

    return cmocka_run_group_tests_name("def_parse", tests, NULL, NULL);
}
