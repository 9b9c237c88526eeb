/*
 * test_steps.c - step types beyond task, through the public API (durable.h):
 * expressions and skips (SPEC §3), delays and approvals (durable waits that
 * survive a reopen), on a real SQLite file in a temporary directory, with
 * real threads and timers.
 */
#include "util/common.h"

#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"
#include "util/util.h"

static char *start_in(durable *d, const char *wf, const char *input)
{
    durable_run_request req = { .workflow = wf, .input_json = input };
    durable_error err = { 0 };
    char *run = NULL;
    if (durable_run_start(d, &req, &run, NULL, &err) != DURABLE_OK)
        fail_msg("start: %s", err.msg);
    return run;
}

static const char *step_status(json_t *run, const char *id)
{
    return json_string_value(json_object_get(step_of(run, id), "status"));
}

/* The data of the first event of type (and step). Borrowed from events. */
static json_t *event_data(json_t *events, const char *type, const char *step)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *sid = json_string_value(json_object_get(e, "step_id"));
        if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 &&
            (!step || (sid && strcmp(sid, step) == 0)))
            return json_object_get(e, "data");
    }
    fail_msg("no event %s", type);
    return NULL;
}

/* Waits until step `id` of run has `status` (10 s at most). */
static void wait_step(durable *d, const char *run, const char *id, const char *status)
{
    int tries;
    for (tries = 0; tries < 1000; tries++) {
        json_t *j = get_run(d, run);
        bool ok = strcmp(step_status(j, id), status) == 0;
        json_decref(j);
        if (ok)
            return;
        usleep(10000);
    }
    fail_msg("step %s never became %s", id, status);
}

/* ---- expressions ---- */

/* a false `if` skips its step and the steps after it that have no `if`;
 * a join with its own `if` decides for itself. */
static void test_if_false_skips_and_join_decides(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"branch\",\"steps\":["
            "{\"id\":\"a\",\"type\":\"transform\",\"config\":{\"expression\":\".input.amount\"}},"
            "{\"id\":\"big\",\"depends_on\":[\"a\"],\"if\":\".steps.a.output > 1000\","
            " \"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"after_big\",\"depends_on\":[\"big\"],\"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"small\",\"depends_on\":[\"a\"],\"if\":\".steps.a.output <= 1000\","
            " \"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"join\",\"depends_on\":[\"after_big\",\"small\"],"
            " \"if\":\".steps.small.status == \\\"completed\\\" or .steps.after_big.status == \\\"completed\\\"\","
            " \"type\":\"log\",\"config\":{\"message\":\"amount {{ .input.amount }} via {{ .steps.small.status }}\"}},"
            "{\"id\":\"never\",\"depends_on\":[\"after_big\"],\"if\":\"false\",\"config\":{\"duration_seconds\":0}}"
            "]}");
    char *run = start_in(f->d, wf, "{\"amount\": 20}");
    json_t *j, *ev;

    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_string_equal("completed", step_status(j, "a"));
    assert_string_equal("skipped", step_status(j, "big"));
    assert_string_equal("skipped", step_status(j, "after_big"));
    assert_string_equal("completed", step_status(j, "small"));
    assert_string_equal("completed", step_status(j, "join"));
    assert_string_equal("skipped", step_status(j, "never"));
    assert_string_equal("amount 20 via completed",
                        json_string_value(json_object_get(
                                json_object_get(step_of(j, "join"), "output"), "message")));
    ev = get_events(f->d, run);
    assert_int_equal(0, count_events(ev, "step_started", "big"));
    assert_int_equal(1, count_events(ev, "step_skipped", "after_big"));
    /* the log message is in the history */
    assert_string_equal("amount 20 via completed",
                        json_string_value(json_object_get(
                                json_object_get(event_data(ev, "step_completed", "join"), "output"),
                                "message")));
    json_decref(ev);
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* condition and transform output their expression's value; a config string
 * that is one template keeps the value's JSON type. */
static void test_condition_transform_and_typed_templates(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"calc\",\"steps\":["
            "{\"id\":\"t\",\"type\":\"transform\","
            " \"config\":{\"expression\":\"{total: (.input.items | map(.price) | add), n: (.input.items | length)}\"}},"
            "{\"id\":\"c\",\"type\":\"condition\",\"depends_on\":[\"t\"],"
            " \"config\":{\"expression\":\".steps.t.output.total > 10\"}},"
            "{\"id\":\"w\",\"type\":\"delay\",\"depends_on\":[\"c\"],"
            " \"config\":{\"seconds\":\"{{ .input.wait }}\"}},"
            "{\"id\":\"l\",\"type\":\"log\",\"depends_on\":[\"w\"],\"if\":\".steps.c.output\","
            " \"config\":{\"message\":\"{{ .steps.t.output }}\",\"level\":\"debug\"}}"
            "]}");
    char *run = start_in(f->d, wf, "{\"items\":[{\"price\":4},{\"price\":7.5}],\"wait\":0.05}");
    json_t *j, *out;

    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    out = json_object_get(step_of(j, "t"), "output");
    assert_true(json_number_value(json_object_get(out, "total")) == 11.5);
    assert_int_equal(2, json_integer_value(json_object_get(out, "n")));
    assert_true(json_is_true(json_object_get(step_of(j, "c"), "output")));
    /* "{{ .input.wait }}" rendered to the number 0.05: the delay accepted it */
    assert_string_equal("completed", step_status(j, "w"));
    assert_string_equal("{\"total\":11.5,\"n\":2}",
                        json_string_value(json_object_get(
                                json_object_get(step_of(j, "l"), "output"), "message")));
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* A runtime jq error fails the attempt with jq's message, code expression_error. */
static void test_runtime_expression_errors(void **state)
{
    struct fixture *f = *state;
    static const char *const defs[] = {
        "{\"name\":\"e1\",\"steps\":[{\"id\":\"x\",\"type\":\"transform\","
        "\"config\":{\"expression\":\".input.s | tonumber\"}}]}",
        "{\"name\":\"e2\",\"steps\":[{\"id\":\"x\",\"if\":\".input.s | tonumber > 1\","
        "\"config\":{\"duration_seconds\":0}}]}",
        "{\"name\":\"e3\",\"steps\":[{\"id\":\"x\",\"type\":\"log\","
        "\"config\":{\"message\":\"n={{ .input.s | tonumber }}\"}}]}",
    };
    size_t k;

    for (k = 0; k < sizeof(defs) / sizeof(defs[0]); k++) {
        char *wf = reg(f->d, defs[k]);
        char *run = start_in(f->d, wf, "{\"s\":\"abc\"}");
        json_t *j, *ev, *data;
        const char *msg;

        assert_string_equal("failed", wait_run(f->d, run));
        j = get_run(f->d, run);
        assert_string_equal("failed", step_status(j, "x"));
        msg = json_string_value(json_object_get(step_of(j, "x"), "error_message"));
        assert_non_null(msg);
        assert_non_null(strstr(msg, "jq: "));
        assert_non_null(strstr(msg, "abc"));
        ev = get_events(f->d, run);
        data = event_data(ev, "step_failed", "x");
        assert_string_equal("expression_error", json_string_value(json_object_get(data, "code")));
        json_decref(ev);
        json_decref(j);
        durable_free(run);
        durable_free(wf);
    }
}

/* A config template that renders null (a mistyped path) fails the step,
 * naming the step, the field and the expression; `//` gives a default. */
static void test_template_rendering_null_fails(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"typo\",\"steps\":["
                         "{\"id\":\"ok\",\"type\":\"log\",\"config\":"
                         "{\"message\":\"{{ .input.missing // \\\"none\\\" }}\"}},"
                         "{\"id\":\"fetch\",\"type\":\"http_request\",\"depends_on\":[\"ok\"],"
                         "\"config\":{\"url\":\"{{ .input.ulr }}\"}}]}");
    char *run = start_in(f->d, wf, "{\"url\":\"http://127.0.0.1:9/\"}");
    json_t *j, *ev;

    assert_string_equal("failed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_string_equal("completed", step_status(j, "ok"));
    assert_string_equal("failed", step_status(j, "fetch"));
    assert_string_equal("config.url: template \"{{ .input.ulr }}\" rendered null",
                        json_string_value(json_object_get(step_of(j, "fetch"), "error_message")));
    assert_string_equal("step \"fetch\" failed: config.url: template \"{{ .input.ulr }}\" "
                        "rendered null",
                        json_string_value(json_object_get(j, "error_message")));
    ev = get_events(f->d, run);
    assert_string_equal(
            "expression_error",
            json_string_value(json_object_get(event_data(ev, "step_failed", "fetch"), "code")));
    json_decref(ev);
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* Expressions compile at registration: a syntax error is a located EINVAL. */
static void test_registration_errors_are_located(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *def;
        const char *prefix;
    } cases[] = {
        { "{\"name\":\"r1\",\"steps\":[{\"id\":\"a\"},{\"id\":\"b\",\"if\":\".x |\"}]}",
          "steps[1].if: jq: syntax error" },
        { "{\"name\":\"r2\",\"steps\":[{\"id\":\"a\",\"type\":\"condition\","
          "\"config\":{\"expression\":\"(\"}}]}",
          "steps[0].config.expression: jq: syntax error" },
        { "{\"name\":\"r3\",\"steps\":[{\"id\":\"a\",\"type\":\"log\","
          "\"config\":{\"message\":\"hi {{ .input.name\"}}]}",
          "steps[0].config.message: unterminated" },
        { "{\"name\":\"r4\",\"steps\":[{\"id\":\"a\",\"type\":\"delay\","
          "\"config\":{\"seconds\":\"{{ ]] }}\"}}]}",
          "steps[0].config.seconds: jq: syntax error" },
    };
    size_t k;

    for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        durable_error err = { 0 };
        char *id = NULL;
        assert_int_equal(DURABLE_EINVAL,
                         durable_workflow_register(f->d, cases[k].def, strlen(cases[k].def), &id,
                                                   NULL, NULL, &err));
        assert_null(id);
        if (strncmp(err.msg, cases[k].prefix, strlen(cases[k].prefix)) != 0)
            fail_msg("got \"%s\", want \"%s...\"", err.msg, cases[k].prefix);
    }
}

/* ---- delay ---- */

static void test_delay_waits_durably(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"nap\",\"steps\":["
            "{\"id\":\"nap\",\"type\":\"delay\",\"config\":{\"seconds\":0.6}},"
            "{\"id\":\"after\",\"depends_on\":[\"nap\"],\"config\":{\"duration_seconds\":0}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    int64_t t0 = clock_wall_ms();
    json_t *j, *ev;
    char *st;

    wait_step(f->d, run, "nap", "waiting");
    j = get_run(f->d, run);
    st = strdup(json_string_value(json_object_get(j, "status")));
    assert_string_equal("waiting", st);
    free(st);
    assert_true(json_is_string(json_object_get(step_of(j, "nap"), "wake_at")));
    json_decref(j);
    /* close while it waits; reopening re-arms the stored wake-up time */
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_string_equal("completed", wait_run(f->d, run));
    assert_true(clock_wall_ms() - t0 >= 550);
    j = get_run(f->d, run);
    assert_true(json_is_string(
            json_object_get(json_object_get(step_of(j, "nap"), "output"), "woke_at")));
    ev = get_events(f->d, run);
    assert_int_equal(1, count_events(ev, "step_started", "nap"));
    assert_int_equal(1, count_events(ev, "step_waiting", "nap"));
    assert_int_equal(1, count_events(ev, "step_completed", "nap"));
    json_decref(ev);
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* `until` in the past fires at once, also after a reopen. */
static void test_delay_until_past(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"past\",\"steps\":[{\"id\":\"d\",\"type\":\"delay\","
                         "\"config\":{\"until\":\"2001-02-03T04:05:06.5+01:00\"}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev;

    assert_string_equal("completed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    assert_string_equal(
            "2001-02-03T03:05:06.500Z",
            json_string_value(json_object_get(event_data(ev, "step_waiting", "d"), "wake_at")));
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

/* ---- approval ---- */

static const char approval_def[] =
        "{\"name\":\"appr\",\"steps\":["
        "{\"id\":\"ask\",\"type\":\"approval\",\"config\":{\"prompt\":\"ship {{ .input.what }}?\"}},"
        "{\"id\":\"ship\",\"depends_on\":[\"ask\"],\"if\":\".steps.ask.output.approved\","
        " \"config\":{\"duration_seconds\":0}}]}";

static void test_approval_approve_after_reopen(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, approval_def);
    char *run = start_in(f->d, wf, "{\"what\":\"books\"}");
    durable_error err = { 0 };
    json_t *j, *ev, *out;

    wait_step(f->d, run, "ask", "waiting");
    ev = get_events(f->d, run);
    assert_string_equal("ship books?", json_string_value(json_object_get(
                                               event_data(ev, "step_waiting", "ask"), "prompt")));
    json_decref(ev);
    /* not waiting for a decision: not started, unknown, not an approval */
    assert_int_equal(DURABLE_ECONFLICT,
                     durable_step_decide(f->d, run, "ship", true, "x", NULL, &err));
    assert_int_equal(DURABLE_ENOTFOUND,
                     durable_step_decide(f->d, run, "nope", true, "x", NULL, &err));
    assert_int_equal(DURABLE_ENOTFOUND,
                     durable_step_decide(f->d, "run_nope", "ask", true, "x", NULL, &err));
    /* still waiting after a reopen */
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    usleep(100000);
    j = get_run(f->d, run);
    assert_string_equal("waiting", json_string_value(json_object_get(j, "status")));
    assert_string_equal("waiting", step_status(j, "ask"));
    json_decref(j);
    assert_int_equal(DURABLE_OK,
                     durable_step_decide(f->d, run, "ask", true, "alice", "looks fine", &err));
    assert_int_equal(DURABLE_ECONFLICT,
                     durable_step_decide(f->d, run, "ask", false, "bob", NULL, &err));
    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    out = json_object_get(step_of(j, "ask"), "output");
    assert_true(json_is_true(json_object_get(out, "approved")));
    assert_string_equal("alice", json_string_value(json_object_get(out, "by")));
    assert_string_equal("looks fine", json_string_value(json_object_get(out, "comment")));
    assert_true(json_is_string(json_object_get(out, "at")));
    assert_string_equal("completed", step_status(j, "ship"));
    ev = get_events(f->d, run);
    assert_int_equal(1, count_events(ev, "approval_decided", "ask"));
    assert_int_equal(1, count_events(ev, "step_started", "ask"));
    json_decref(ev);
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

static void test_approval_reject_skips_branch(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, approval_def);
    char *run = start_in(f->d, wf, "{\"what\":\"cars\"}");
    durable_error err = { 0 };
    json_t *j;

    wait_step(f->d, run, "ask", "waiting");
    assert_int_equal(DURABLE_OK, durable_step_decide(f->d, run, "ask", false, NULL, NULL, &err));
    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_true(json_is_false(
            json_object_get(json_object_get(step_of(j, "ask"), "output"), "approved")));
    assert_string_equal("skipped", step_status(j, "ship"));
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* on_timeout: reject and approve complete the step (by "timeout"), fail fails it. */
static void test_approval_timeouts(void **state)
{
    struct fixture *f = *state;
    static const char *const modes[] = { "reject", "approve", "fail" };
    size_t k;

    for (k = 0; k < 3; k++) {
        char def[512];
        char *wf, *run;
        json_t *j, *out;

        snprintf(def, sizeof(def),
                 "{\"name\":\"to_%s\",\"steps\":[{\"id\":\"ask\",\"type\":\"approval\","
                 "\"config\":{\"timeout_seconds\":0.2,\"on_timeout\":\"%s\"}}]}",
                 modes[k], modes[k]);
        wf = reg(f->d, def);
        run = start(f->d, wf, NULL, NULL);
        assert_string_equal(k == 2 ? "failed" : "completed", wait_run(f->d, run));
        j = get_run(f->d, run);
        out = json_object_get(step_of(j, "ask"), "output");
        if (k < 2) {
            assert_int_equal(k == 1, json_is_true(json_object_get(out, "approved")));
            assert_string_equal("timeout", json_string_value(json_object_get(out, "by")));
        } else {
            assert_string_equal("failed", step_status(j, "ask"));
        }
        json_decref(j);
        durable_free(run);
        durable_free(wf);
    }
}

/* Many waiting approvals cost rows, not timers; a burst of decisions ends them all. */
static void test_many_waiting_approvals(void **state)
{
    enum { N = 300 };
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"many\",\"steps\":[{\"id\":\"ask\",\"type\":\"approval\"}]}");
    char *runs[N];
    durable_error err = { 0 };
    size_t k;

    for (k = 0; k < N; k++)
        runs[k] = start(f->d, wf, NULL, NULL);
    for (k = 0; k < N; k++)
        wait_step(f->d, runs[k], "ask", "waiting");
    for (k = 0; k < N; k++)
        assert_int_equal(DURABLE_OK,
                         durable_step_decide(f->d, runs[k], "ask", k % 2 == 0, "bulk", NULL, &err));
    for (k = 0; k < N; k++) {
        assert_string_equal("completed", wait_run(f->d, runs[k]));
        durable_free(runs[k]);
    }
    durable_free(wf);
}

/* A decision for a run that no engine has in memory (opened with
 * RECOVER_NONE) is committed, and the engine adopts and finishes the run. */
static void test_decide_run_not_in_memory(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, approval_def);
    char *run = start_in(f->d, wf, "{\"what\":\"x\"}");
    durable_error err = { 0 };

    wait_step(f->d, run, "ask", "waiting");
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_NONE, DURABLE_DURABILITY_PROCESS);
    assert_int_equal(DURABLE_OK, durable_step_decide(f->d, run, "ask", true, "carol", NULL, &err));
    assert_string_equal("completed", wait_run(f->d, run));
    durable_free(run);
    durable_free(wf);
}

/* The run's demo order is in the context: run.order.{id, amount}. */
static void test_order_in_context(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"big\",\"steps\":["
                         "{\"id\":\"big\",\"type\":\"condition\","
                         "\"config\":{\"expression\":\".run.order.amount > 1000\"}},"
                         "{\"id\":\"who\",\"type\":\"transform\","
                         "\"config\":{\"expression\":\"[.run.id, .run.order.id]\"}}]}");
    durable_run_request req = { .workflow = wf, .create_order = true, .order_amount = 1500 };
    durable_error err = { 0 };
    char *run = NULL;
    json_t *j, *who;

    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &run, NULL, &err));
    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_true(json_is_true(json_object_get(step_of(j, "big"), "output")));
    who = json_object_get(step_of(j, "who"), "output");
    assert_string_equal(run, json_string_value(json_array_get(who, 0)));
    assert_string_equal(json_string_value(json_object_get(j, "order_id")),
                        json_string_value(json_array_get(who, 1)));
    json_decref(j);
    durable_free(run);
    durable_free(wf);
}

/* ---- workflow (child runs) ---- */

static char *child_of(durable *d, const char *wf, const char *parent, const char *step)
{
    durable_error err = { 0 };
    char key[160], *id = NULL;

    snprintf(key, sizeof(key), "%s/%s#1", parent, step);
    if (durable_run_find(d, wf, key, &id, &err) != DURABLE_OK)
        fail_msg("child of %s: %s", parent, err.msg);
    return id;
}

static void test_child_workflow_output_and_failure(void **state)
{
    struct fixture *f = *state;
    char *c1 = reg(f->d, "{\"name\":\"child-double\",\"steps\":[{\"id\":\"t\","
                         "\"type\":\"transform\",\"config\":{\"expression\":\".input.n * 2\"}}]}");
    char *c2 = reg(f->d,
                   "{\"name\":\"child-bad\",\"steps\":[{\"id\":\"t\","
                   "\"type\":\"transform\",\"config\":{\"expression\":\"error(\\\"no\\\")\"}}]}");
    char *wf = reg(f->d, "{\"name\":\"parent\",\"steps\":["
                         "{\"id\":\"kid\",\"type\":\"workflow\",\"config\":{\"workflow\":"
                         "\"{{ .input.which }}\",\"input\":{\"n\":\"{{ .input.n }}\"}}},"
                         "{\"id\":\"after\",\"type\":\"log\",\"depends_on\":[\"kid\"],"
                         "\"config\":{\"message\":\"got {{ .steps.kid.output.t }}\"}}]}");
    char *run = start_in(f->d, wf, "{\"which\":\"child-double\",\"n\":21}");
    char *child;
    json_t *j;

    assert_string_equal("completed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_int_equal(42, json_integer_value(json_object_get(
                                 json_object_get(step_of(j, "kid"), "output"), "t")));
    assert_string_equal("got 42",
                        json_string_value(json_object_get(
                                json_object_get(step_of(j, "after"), "output"), "message")));
    json_decref(j);
    child = child_of(f->d, "child-double", run, "kid");
    assert_string_equal("completed", wait_run(f->d, child));
    durable_free(child);
    durable_free(run);

    run = start_in(f->d, wf, "{\"which\":\"child-bad\",\"n\":1}");
    assert_string_equal("failed", wait_run(f->d, run));
    j = get_run(f->d, run);
    assert_string_equal("failed", step_status(j, "kid"));
    assert_non_null(strstr(json_string_value(json_object_get(step_of(j, "kid"), "error_message")),
                           "failed"));
    json_decref(j);
    durable_free(run);

    run = start_in(f->d, wf, "{\"which\":\"no-such-workflow\",\"n\":1}");
    assert_string_equal("failed", wait_run(f->d, run));
    durable_free(run);
    durable_free(wf);
    durable_free(c1);
    durable_free(c2);
}

static const char waiting_child_def[] =
        "{\"name\":\"child-waits\",\"steps\":[{\"id\":\"nap\",\"type\":\"delay\","
        "\"config\":{\"seconds\":\"{{ .input.s }}\"}}]}";
static const char waiting_parent_def[] =
        "{\"name\":\"parent-waits\",\"steps\":[{\"id\":\"kid\",\"type\":\"workflow\","
        "\"config\":{\"workflow\":\"child-waits\",\"input\":{\"s\":\"{{ .input.s }}\"}}}]}";

static void test_cancel_parent_cancels_child(void **state)
{
    struct fixture *f = *state;
    char *c = reg(f->d, waiting_child_def);
    char *wf = reg(f->d, waiting_parent_def);
    char *run = start_in(f->d, wf, "{\"s\":3600}");
    durable_error err = { 0 };
    char *child;

    wait_step(f->d, run, "kid", "running");
    usleep(200000);
    child = child_of(f->d, "child-waits", run, "kid");
    wait_step(f->d, child, "nap", "waiting");
    assert_int_equal(DURABLE_OK, durable_run_cancel(f->d, run, &err));
    assert_string_equal("cancelled", wait_run(f->d, run));
    assert_string_equal("cancelled", wait_run(f->d, child));
    durable_free(child);
    durable_free(run);
    durable_free(wf);
    durable_free(c);
}

static void test_child_across_reopen(void **state)
{
    struct fixture *f = *state;
    char *c = reg(f->d, waiting_child_def);
    char *wf = reg(f->d, waiting_parent_def);
    char *run = start_in(f->d, wf, "{\"s\":0.5}");
    durable_run_filter filter = { .workflow_id = "child-waits" };
    durable_error err = { 0 };
    int64_t total = 0;
    char *child, *list = NULL;

    wait_step(f->d, run, "kid", "running");
    usleep(100000);
    child = child_of(f->d, "child-waits", run, "kid");
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_string_equal("completed", wait_run(f->d, run));
    assert_string_equal("completed", wait_run(f->d, child));
    assert_int_equal(DURABLE_OK, durable_runs_list(f->d, &filter, &list, &total, &err));
    assert_int_equal(1, total);
    durable_free(list);
    durable_free(child);
    durable_free(run);
    durable_free(wf);
    durable_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_if_false_skips_and_join_decides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_condition_transform_and_typed_templates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_runtime_expression_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template_rendering_null_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registration_errors_are_located, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_waits_durably, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay_until_past, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_approve_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_reject_skips_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_waiting_approvals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decide_run_not_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_in_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_workflow_output_and_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_parent_cancels_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_across_reopen, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
