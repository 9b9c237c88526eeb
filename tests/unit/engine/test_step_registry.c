/*
 * test_step_registry.c - a step type registered from C through the public
 * API (durable_step_type_register), as a program would: its check rejects
 * a bad config with a located error, its start answers done or failed at
 * once, and a workflow using it runs to the end. Also the registration's
 * refusals (a taken name, an invalid name, no start).
 */
#include "util/common.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

/* config {"who": NAME}: "who" is required and must be a string. */
static void greet_check(durable_step_check *chk, void *ud)
{
    json_t *cfg = json_loads(durable_step_check_config(chk), 0, NULL);
    json_t *who = json_object_get(cfg, "who");

    (void)ud;
    if (!who)
        durable_step_check_error(chk, "who", "required");
    else if (!json_is_string(who))
        durable_step_check_error(chk, "who", "expected a string");
    if (json_object_get(cfg, "shout"))
        durable_step_check_warning(chk, "shout", "ignored");
    json_decref(cfg);
}

/* Done with {"hello", "key", "attempt", "step"}; "nobody" fails. */
static void greet_start(durable_step_call *call, void *ud)
{
    json_t *cfg = json_loads(durable_step_call_config(call), 0, NULL);
    const char *who = json_string_value(json_object_get(cfg, "who"));
    json_t *out;
    char *text;

    (*(int *)ud)++;
    if (who && strcmp(who, "nobody") == 0) {
        durable_step_fail(call, "no_one_there", "nobody to greet");
    } else {
        out = json_pack("{s:s?, s:s, s:i, s:s, s:s}", "hello", who, "key",
                        durable_step_call_idempotency_key(call), "attempt",
                        durable_step_call_attempt(call), "step", durable_step_call_step_id(call),
                        "run", durable_step_call_run_id(call));
        text = json_dumps(out, JSON_COMPACT);
        durable_step_done(call, text);
        durable_step_fail(call, "late", "ignored: answered already");
        free(text);
        json_decref(out);
    }
    json_decref(cfg);
}

static int n_calls;

static const durable_step_type greet = {
    .name = "greet",
    .check = greet_check,
    .start = greet_start,
    .answers_at_once = true,
    .ud = &n_calls,
};

static void test_user_type_runs(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf, *run, *run2;
    json_t *doc, *out;

    n_calls = 0;
    assert_int_equal(durable_step_type_register(f->d, &greet, &err), DURABLE_OK);
    wf = reg(f->d,
             "{\"name\":\"hello\",\"steps\":["
             "{\"id\":\"hi\",\"type\":\"greet\",\"config\":{\"who\":\"{{ .input.who }}\"}},"
             "{\"id\":\"after\",\"depends_on\":[\"hi\"],\"config\":{\"duration_seconds\":0}}]}");
    {
        durable_run_request req = { .workflow = wf, .input_json = "{\"who\":\"world\"}" };
        assert_int_equal(durable_run_start(f->d, &req, &run, NULL, &err), DURABLE_OK);
    }
    assert_string_equal(wait_run(f->d, run), "completed");
    doc = get_run(f->d, run);
    out = json_object_get(step_of(doc, "hi"), "output");
    assert_string_equal(json_string_value(json_object_get(out, "hello")), "world");
    assert_int_equal(json_integer_value(json_object_get(out, "attempt")), 1);
    assert_string_equal(json_string_value(json_object_get(out, "step")), "hi");
    assert_string_equal(json_string_value(json_object_get(out, "run")), run);
    assert_true(strstr(json_string_value(json_object_get(out, "key")), "/hi") != NULL);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "after"), "status")),
                        "completed");
    json_decref(doc);

    {
        durable_run_request req = { .workflow = wf, .input_json = "{\"who\":\"nobody\"}" };
        assert_int_equal(durable_run_start(f->d, &req, &run2, NULL, &err), DURABLE_OK);
    }
    assert_string_equal(wait_run(f->d, run2), "failed");
    doc = get_run(f->d, run2);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "hi"), "status")), "failed");
    json_decref(doc);
    assert_int_equal(n_calls, 2);
    durable_free(run);
    durable_free(run2);
    durable_free(wf);
}

static void test_user_type_check(void **state)
{
    struct fixture *f = *state;
    char *report = NULL;
    const char *bad = "{\"name\":\"bad\",\"steps\":[{\"id\":\"a\",\"type\":\"greet\"},"
                      "{\"id\":\"b\",\"type\":\"greet\",\"config\":{\"who\":3,\"shout\":1}}]}";
    durable_error err = { 0 };

    assert_int_equal(durable_step_type_register(f->d, &greet, &err), DURABLE_OK);
    assert_int_equal(durable_workflow_register(f->d, bad, strlen(bad), NULL, NULL, NULL, &err),
                     DURABLE_EINVAL);
    assert_string_equal(err.msg, "steps[0].config.who: required");
    /* durable_validate knows the built-in types only: greet is none. */
    assert_int_equal(durable_validate(bad, strlen(bad), &report, NULL), DURABLE_EINVAL);
    assert_non_null(strstr(report, "steps[0].type: unknown step type \"greet\""));
    durable_free(report);
}

static void test_register_refusals(void **state)
{
    struct fixture *f = *state;
    durable_step_type t = greet;
    durable_error err = { 0 };

    t.name = "task";
    assert_int_equal(durable_step_type_register(f->d, &t, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "step type \"task\" is registered already");
    t.name = "Greet";
    assert_int_equal(durable_step_type_register(f->d, &t, &err), DURABLE_EINVAL);
    t.name = "";
    assert_int_equal(durable_step_type_register(f->d, &t, NULL), DURABLE_EINVAL);
    t.name = NULL;
    assert_int_equal(durable_step_type_register(f->d, &t, NULL), DURABLE_EINVAL);
    t.name = "greet";
    t.start = NULL;
    assert_int_equal(durable_step_type_register(f->d, &t, NULL), DURABLE_EINVAL);
    assert_int_equal(durable_step_type_register(f->d, &greet, NULL), DURABLE_OK);
    assert_int_equal(durable_step_type_register(f->d, &greet, NULL), DURABLE_ECONFLICT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_type_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_type_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_register_refusals, setup, teardown),
    };
    return cmocka_run_group_tests_name("step_registry", tests, NULL, NULL);
}
