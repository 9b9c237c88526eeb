/*
 * test_signals.c - signals through the public API: a code-first wait takes
 * a signal sent before it began and one sent while it waits (also after a
 * restart in between); two signals are taken by two waits in the order
 * sent, each once; a wait times out, and its timeout is recorded (a later
 * execution returns it at once); a JSON `wait_signal` step completes with
 * the payload; bad signals are refused with a clear error.
 */
#include "util/common.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"
#include "util/util.h"

static atomic_int gate_open; /* step "gate" returns once set */
static atomic_int calls_after;

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static durable_code step_gate(const durable_step_info *info, void *arg, char **out,
                              durable_error *err)
{
    (void)info;
    (void)arg;
    (void)err;
    while (!atomic_load(&gate_open))
        pause_ms(5);
    *out = strdup("{}");
    return DURABLE_OK;
}

static durable_code step_after(const durable_step_info *info, void *arg, char **out,
                               durable_error *err)
{
    (void)info;
    (void)arg;
    (void)err;
    atomic_fetch_add(&calls_after, 1);
    *out = strdup("{}");
    return DURABLE_OK;
}

/* gate, then wait for "go" without limit: the output is its payload. */
static durable_code one_wait(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    DURABLE_TRY(durable_step(ctx, "gate", step_gate, NULL, NULL, err));
    DURABLE_TRY(durable_wait_signal(ctx, "go", -1, out, err));
    return DURABLE_OK;
}

/* Two waits for "go": the output is [first payload, second payload]. */
static durable_code two_waits(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    char *p1 = NULL, *p2 = NULL;

    (void)input;
    DURABLE_TRY(durable_wait_signal(ctx, "go", -1, &p1, err));
    if (durable_wait_signal(ctx, "go", -1, &p2, err) != DURABLE_OK) {
        durable_free(p1);
        return err->code;
    }
    *out = xasprintf("[%s,%s]", p1, p2);
    durable_free(p1);
    durable_free(p2);
    return DURABLE_OK;
}

/* A 150 ms wait for "late", a 50 ms sleep, then step "after":
 * {"timed_out": bool}. */
static durable_code short_wait(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    char *p = NULL;
    durable_code rc = durable_wait_signal(ctx, "late", 150, &p, err);

    (void)input;
    if (rc != DURABLE_OK && rc != DURABLE_ETIMEOUT)
        return rc;
    *err = (durable_error){ 0 };
    DURABLE_TRY(durable_sleep(ctx, "nap", 50, err));
    DURABLE_TRY(durable_step(ctx, "after", step_after, NULL, NULL, err));
    *out = xasprintf("{\"timed_out\":%s}", rc == DURABLE_ETIMEOUT ? "true" : "false");
    durable_free(p);
    return DURABLE_OK;
}

static void reset(void)
{
    atomic_store(&gate_open, 0);
    atomic_store(&calls_after, 0);
}

static char *begin(durable *d, const char *name)
{
    durable_error err = { 0 };
    char *run = NULL;

    if (durable_start(d, name, NULL, "{}", &run, &err) != DURABLE_OK)
        fail_msg("start: %s", err.msg);
    return run;
}

/* Waits (10 s at most) until the run's status is want. */
static void wait_status(durable *d, const char *run, const char *want)
{
    for (int i = 0; i < 2000; i++) {
        json_t *doc = get_run(d, run);
        bool ok = strcmp(json_string_value(json_object_get(doc, "status")), want) == 0;
        json_decref(doc);
        if (ok)
            return;
        pause_ms(5);
    }
    fail_msg("run %s never became %s", run, want);
}

static void send_ok(durable *d, const char *run, const char *name, const char *payload)
{
    durable_error err = { 0 };

    if (durable_signal(d, run, name, payload, &err) != DURABLE_OK)
        fail_msg("signal: %s", err.msg);
}

static char *output_text(durable *d, const char *run)
{
    json_t *doc = get_run(d, run);
    char *text = json_dumps(json_object_get(doc, "output"), JSON_COMPACT | JSON_ENCODE_ANY);

    json_decref(doc);
    return text;
}

static void assert_output(durable *d, const char *run, const char *want)
{
    char *text = output_text(d, run);

    assert_string_equal(text, want);
    free(text);
}

/* The signal is sent while step "gate" runs, before the wait begins: the
 * wait takes it when it is reached. */
static void test_signal_before_wait(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *evs;
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "one", 1, one_wait, NULL, &err),
                     DURABLE_OK);
    run = begin(f->d, "one");
    send_ok(f->d, run, "go", "{\"early\":true}");
    atomic_store(&gate_open, 1);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_output(f->d, run, "{\"early\":true}");
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "go"), "type")),
                        "wait_signal");
    json_decref(doc);
    evs = get_events(f->d, run);
    assert_int_equal(count_events(evs, "signal_received", NULL), 1);
    assert_int_equal(count_events(evs, "step_waiting", "go"), 0); /* taken at once */
    assert_int_equal(count_events(evs, "step_completed", "go"), 1);
    json_decref(evs);
    durable_free(run);
}

/* The run waits (no thread held), the engine is closed and opened again,
 * the function registered again; a signal of another name wakes nothing,
 * the right one completes the run with its payload. */
static void test_signal_after_wait_and_restart(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    json_t *doc;
    char *run;

    reset();
    atomic_store(&gate_open, 1);
    assert_int_equal(durable_workflow_fn_register(f->d, "one", 1, one_wait, NULL, &err),
                     DURABLE_OK);
    run = begin(f->d, "one");
    wait_status(f->d, run, "waiting");
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_int_equal(durable_workflow_fn_register(f->d, "one", 1, one_wait, NULL, &err),
                     DURABLE_OK);
    send_ok(f->d, run, "other", "1");
    assert_int_equal(durable_run_wait(f->d, run, 300, &status, &err), DURABLE_ETIMEOUT);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "go"), "status")),
                        "waiting");
    json_decref(doc);
    send_ok(f->d, run, "go", NULL);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_output(f->d, run, "null");
    durable_free(run);
}

/* Two signals, two waits: first sent, first taken; each taken once. The
 * first arrives while the first wait waits, the second is kept for the
 * second wait. */
static void test_two_signals_two_waits(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *evs, *doc;
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_waits, NULL, &err),
                     DURABLE_OK);
    run = begin(f->d, "two");
    wait_status(f->d, run, "waiting");
    send_ok(f->d, run, "go", "\"first\"");
    send_ok(f->d, run, "go", "\"second\"");
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_output(f->d, run, "[\"first\",\"second\"]");
    doc = get_run(f->d, run);
    assert_int_equal(json_array_size(json_object_get(doc, "steps")), 2);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "go#2"), "output")),
                        "second");
    json_decref(doc);
    evs = get_events(f->d, run);
    assert_int_equal(count_events(evs, "signal_received", NULL), 2);
    assert_int_equal(count_events(evs, "step_completed", "go"), 1);
    assert_int_equal(count_events(evs, "step_completed", "go#2"), 1);
    json_decref(evs);
    durable_free(run);
}

/* No signal within 150 ms: DURABLE_ETIMEOUT, the step failed with code
 * timeout, the function goes on and sleeps; executed again after the
 * sleep, the wait returns the recorded timeout at once (no new wait). */
static void test_wait_timeout_recorded(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *evs;
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "short", 1, short_wait, NULL, &err),
                     DURABLE_OK);
    run = begin(f->d, "short");
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_output(f->d, run, "{\"timed_out\":true}");
    assert_int_equal(atomic_load(&calls_after), 1);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "late"), "status")),
                        "failed");
    json_decref(doc);
    evs = get_events(f->d, run);
    assert_int_equal(count_events(evs, "step_waiting", "late"), 1); /* waited once */
    assert_int_equal(count_events(evs, "step_failed", "late"), 1);
    assert_int_equal(count_events(evs, "step_completed", "nap"), 1);
    json_decref(evs);
    /* Finished: a signal is refused. */
    assert_int_equal(durable_signal(f->d, run, "late", "1", &err), DURABLE_ECONFLICT);
    durable_free(run);
}

/* A JSON workflow: wait_signal, then a step reading its output. */
static void test_json_wait_signal(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf, *run, *sent = NULL;
    json_t *doc, *o;

    wf = reg(f->d, "{\"name\":\"sig\",\"steps\":["
                   "{\"id\":\"approve\",\"type\":\"wait_signal\",\"config\":{\"signal\":\"ok\"}},"
                   "{\"id\":\"t\",\"type\":\"transform\",\"depends_on\":[\"approve\"],"
                   "\"config\":{\"expression\":\"{who: .steps.approve.output.by}\"}}]}");
    run = start(f->d, wf, NULL, NULL);
    wait_status(f->d, run, "waiting");
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "approve"), "status")),
                        "waiting");
    json_decref(doc);
    assert_int_equal(durable_signal_send(f->d, run, "ok", "{\"by\":\"ann\"}", &sent, &err),
                     DURABLE_OK);
    o = json_loads(sent, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "taken_by")), "approve");
    assert_string_equal(json_string_value(json_object_get(o, "name")), "ok");
    assert_true(json_integer_value(json_object_get(o, "seq")) > 1);
    json_decref(o);
    durable_free(sent);
    assert_string_equal(wait_run(f->d, run), "completed");
    doc = get_run(f->d, run);
    assert_string_equal(
            json_string_value(json_object_get(json_object_get(step_of(doc, "t"), "output"), "who")),
            "ann");
    json_decref(doc);
    durable_free(run);
    durable_free(wf);
}

/* A JSON wait_signal step with a timeout and no signal fails with code
 * timeout. */
static void test_json_wait_signal_timeout(void **state)
{
    struct fixture *f = *state;
    char *wf, *run;
    json_t *evs;

    wf = reg(f->d, "{\"name\":\"sigt\",\"steps\":[{\"id\":\"w\",\"type\":\"wait_signal\","
                   "\"config\":{\"signal\":\"ok\",\"timeout\":0.2}}]}");
    run = start(f->d, wf, NULL, NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    evs = get_events(f->d, run);
    {
        bool seen = false;
        for (size_t i = 0; i < json_array_size(evs); i++) {
            json_t *e = json_array_get(evs, i);
            if (strcmp(json_string_value(json_object_get(e, "type")), "step_failed") == 0) {
                json_t *data = json_object_get(e, "data");
                assert_string_equal(json_string_value(json_object_get(data, "code")), "timeout");
                seen = true;
            }
        }
        assert_true(seen);
    }
    json_decref(evs);
    durable_free(run);
    durable_free(wf);
}

static void test_signal_refusals(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "one", 1, one_wait, NULL, &err),
                     DURABLE_OK);
    run = begin(f->d, "one");
    assert_int_equal(durable_signal(f->d, run, "bad name", "1", &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "[A-Za-z0-9_.-]"));
    err = (durable_error){ 0 };
    assert_int_equal(durable_signal(f->d, run, "", "1", &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_signal(f->d, run, "go", "{nope", &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "not JSON"));
    err = (durable_error){ 0 };
    assert_int_equal(durable_signal(f->d, "run_nope", "go", "1", &err), DURABLE_ENOTFOUND);
    err = (durable_error){ 0 };
    /* none of them was kept: the wait takes the one sent now */
    send_ok(f->d, run, "go", "7");
    atomic_store(&gate_open, 1);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_output(f->d, run, "7");
    durable_free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signal_before_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_after_wait_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_signals_two_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_timeout_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_wait_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_wait_signal_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
