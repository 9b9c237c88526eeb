/*
 * test_api_more.c - the listing and inspecting half of durable.h (what the
 * HTTP API serves): lists with filters and paging, a workflow's detail,
 * retrying a failed run, every run's events by global id, the DB snapshot,
 * health and metrics. Real runs on a real SQLite file in a temporary
 * directory, checked as a client of the API would check them.
 */
#include "util/common.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"

/* ---- helpers ---- */

/* Parses the text a call wrote to *text (freed). */
static json_t *parsed(durable_code rc, char **text, const durable_error *err)
{
    json_t *v;

    if (rc != DURABLE_OK)
        fail_msg("call failed (%d): %s", (int)rc, err->msg);
    v = json_loads(*text, 0, NULL);
    durable_free(*text);
    *text = NULL;
    assert_non_null(v);
    return v;
}

static json_t *runs(durable *d, const char *status, const char *wf, int limit, int offset,
                    int64_t *total)
{
    durable_run_filter flt = {
        .status = status, .workflow_id = wf, .limit = limit, .offset = offset
    };
    durable_error err = { 0 };
    char *text = NULL;

    *total = -1;
    return parsed(durable_runs_list(d, &flt, &text, total, &err), &text, &err);
}

static json_t *run_events(durable *d, const char *run)
{
    durable_error err = { 0 };
    char *text = NULL;

    return parsed(durable_run_events(d, run, 0, &text, &err), &text, &err);
}

static json_t *run_doc(durable *d, const char *run)
{
    durable_error err = { 0 };
    char *text = NULL;

    return parsed(durable_run_get(d, run, &text, &err), &text, &err);
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void assert_keys(json_t *obj, const char *const *keys)
{
    assert_true(json_is_object(obj));
    for (; *keys; keys++) {
        if (!json_object_get(obj, *keys))
            fail_msg("missing field \"%s\"", *keys);
    }
}

static const char quick_def[] = "{\"name\":\"alpha\",\"steps\":["
                                "{\"id\":\"a\",\"config\":{\"duration_seconds\":0}}]}";
static const char failing_def[] = "{\"name\":\"alpha\",\"steps\":[{\"id\":\"a\",\"config\":"
                                  "{\"duration_seconds\":0,\"fail_probability\":1}}]}";
static const char long_def[] = "{\"name\":\"beta\",\"steps\":["
                               "{\"id\":\"w\",\"config\":{\"duration_seconds\":30}}]}";

/* ---- lists ---- */

/* alpha v1: 3 completed; alpha v2: 2 failed; beta: 1 cancelled. Returns
 * the run ids in start order (owned) and alpha v1's id in *out_v1. */
static char **six_runs(durable *d, char **out_v1)
{
    durable_error err = { 0 };
    char **ids = calloc(6, sizeof(*ids));
    char *v1 = reg(d, quick_def), *v2, *beta;
    int i;

    for (i = 0; i < 3; i++)
        ids[i] = start(d, v1, NULL, NULL);
    v2 = reg(d, failing_def);
    for (i = 3; i < 5; i++)
        ids[i] = start(d, "alpha", NULL, NULL); /* the name: its latest version */
    beta = reg(d, long_def);
    ids[5] = start(d, beta, NULL, NULL);
    for (i = 0; i < 5; i++)
        wait_run(d, ids[i]);
    assert_int_equal(DURABLE_OK, durable_run_cancel(d, ids[5], &err));
    assert_string_equal("cancelled", wait_run(d, ids[5]));
    durable_free(v2);
    durable_free(beta);
    *out_v1 = v1;
    return ids;
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        durable_free(ids[i]);
    free(ids);
}

static void test_runs_list_filters_and_paging(void **state)
{
    static const char *const run_keys[] = { "id",
                                            "workflow_id",
                                            "workflow_name",
                                            "workflow_version",
                                            "status",
                                            "input",
                                            "output",
                                            "order_id",
                                            "idempotency_key",
                                            "error_message",
                                            "created_at",
                                            "started_at",
                                            "completed_at",
                                            NULL };
    struct fixture *f = *state;
    char *v1 = NULL;
    char **ids = six_runs(f->d, &v1);
    int64_t total;
    json_t *all, *l, *e;
    size_t i;

    all = runs(f->d, NULL, NULL, 0, 0, &total);
    assert_int_equal(6, total);
    assert_int_equal(6, json_array_size(all));
    /* Newest first: the runs in reverse start order. */
    for (i = 0; i < 6; i++)
        assert_string_equal(ids[5 - i], str(json_array_get(all, i), "id"));
    for (i = 1; i < 6; i++) {
        assert_true(strcmp(str(json_array_get(all, i - 1), "created_at"),
                           str(json_array_get(all, i), "created_at")) >= 0);
    }
    assert_keys(json_array_get(all, 0), run_keys);
    assert_string_equal("beta", str(json_array_get(all, 0), "workflow_name"));
    assert_int_equal(
            2, json_integer_value(json_object_get(json_array_get(all, 1), "workflow_version")));

    l = runs(f->d, NULL, NULL, 2, 1, &total);
    assert_int_equal(6, total);
    assert_int_equal(2, json_array_size(l));
    assert_true(json_equal(json_array_get(l, 0), json_array_get(all, 1)));
    assert_true(json_equal(json_array_get(l, 1), json_array_get(all, 2)));
    json_decref(l);
    l = runs(f->d, NULL, NULL, 10, 6, &total);
    assert_int_equal(6, total);
    assert_int_equal(0, json_array_size(l));
    json_decref(l);

    l = runs(f->d, "completed", NULL, 0, 0, &total);
    assert_int_equal(3, total);
    json_array_foreach(l, i, e)
    {
        assert_string_equal("completed", str(e, "status"));
        assert_string_equal(v1, str(e, "workflow_id"));
    }
    json_decref(l);
    l = runs(f->d, "failed", NULL, 0, 0, &total);
    assert_int_equal(2, total);
    assert_string_equal(ids[4], str(json_array_get(l, 0), "id"));
    assert_string_equal("failed", str(json_array_get(l, 1), "status"));
    json_decref(l);
    l = runs(f->d, "cancelled", NULL, 0, 0, &total);
    assert_int_equal(1, total);
    json_decref(l);
    l = runs(f->d, "running", NULL, 0, 0, &total);
    assert_int_equal(0, total);
    assert_int_equal(0, json_array_size(l));
    json_decref(l);

    l = runs(f->d, NULL, "alpha", 0, 0, &total); /* a name: every version */
    assert_int_equal(5, total);
    json_decref(l);
    l = runs(f->d, NULL, v1, 0, 0, &total); /* an id: that version only */
    assert_int_equal(3, total);
    json_decref(l);
    l = runs(f->d, "failed", "alpha", 1, 0, &total);
    assert_int_equal(2, total);
    assert_int_equal(1, json_array_size(l));
    json_decref(l);
    l = runs(f->d, "completed", "beta", 0, 0, &total);
    assert_int_equal(0, total);
    json_decref(l);

    json_decref(all);
    free_ids(ids, 6);
    durable_free(v1);
}

static void test_runs_list_limits_and_errors(void **state)
{
    struct fixture *f = *state;
    durable_run_filter flt = { .status = "done" };
    durable_error err = { 0 };
    char *wf = reg(f->d, quick_def), *text = NULL, *last = NULL;
    int64_t total = 0;
    json_t *l;
    int i;

    for (i = 0; i < 61; i++) {
        durable_free(last);
        last = start(f->d, wf, NULL, NULL);
    }
    wait_run(f->d, last);
    l = runs(f->d, NULL, NULL, 0, 0, &total); /* 0: the default, 50 */
    assert_int_equal(61, total);
    assert_int_equal(50, json_array_size(l));
    json_decref(l);
    l = runs(f->d, NULL, NULL, 100000, 0, &total); /* clamped to 500 */
    assert_int_equal(61, json_array_size(l));
    json_decref(l);
    l = runs(f->d, NULL, NULL, -4, -9, &total); /* clamped to 1, offset 0 */
    assert_int_equal(1, json_array_size(l));
    assert_string_equal(last, str(json_array_get(l, 0), "id"));
    json_decref(l);
    l = parsed(durable_runs_list(f->d, NULL, &text, NULL, &err), &text, &err); /* no filter */
    assert_int_equal(50, json_array_size(l));
    json_decref(l);

    assert_int_equal(DURABLE_EINVAL, durable_runs_list(f->d, &flt, &text, &total, &err));
    assert_string_equal("unknown run status \"done\"", err.msg);
    assert_null(text);
    durable_free(last);
    durable_free(wf);
}

static void test_workflows_list_and_get(void **state)
{
    static const char *const keys[] = { "id", "name", "version", "created_at", NULL };
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *v1 = reg(f->d, quick_def), *v2 = reg(f->d, failing_def), *beta = reg(f->d, long_def);
    char *text = NULL;
    int64_t total = 0;
    json_t *l, *w;

    l = parsed(durable_workflows_list(f->d, 0, 0, &text, &total, &err), &text, &err);
    assert_int_equal(3, total);
    assert_int_equal(3, json_array_size(l));
    assert_keys(json_array_get(l, 0), keys);
    /* Newest first; every version is listed. */
    assert_string_equal(beta, str(json_array_get(l, 0), "id"));
    assert_string_equal(v2, str(json_array_get(l, 1), "id"));
    assert_int_equal(2, json_integer_value(json_object_get(json_array_get(l, 1), "version")));
    assert_string_equal(v1, str(json_array_get(l, 2), "id"));
    assert_null(json_object_get(json_array_get(l, 0), "definition"));
    json_decref(l);
    l = parsed(durable_workflows_list(f->d, 1, 2, &text, &total, &err), &text, &err);
    assert_int_equal(3, total);
    assert_int_equal(1, json_array_size(l));
    assert_string_equal(v1, str(json_array_get(l, 0), "id"));
    json_decref(l);

    w = parsed(durable_workflow_get(f->d, "alpha", &text, &err), &text, &err);
    assert_string_equal(v2, str(w, "id")); /* a name: its latest version */
    assert_string_equal("alpha", str(w, "name"));
    assert_int_equal(2, json_integer_value(json_object_get(w, "version")));
    assert_true(json_is_object(json_object_get(w, "definition")));
    assert_string_equal("alpha", str(json_object_get(w, "definition"), "name"));
    assert_int_equal(1,
                     json_array_size(json_object_get(json_object_get(w, "definition"), "steps")));
    assert_int_equal(24, strlen(str(w, "created_at"))); /* 2026-11-22T13:05:01.123Z */
    json_decref(w);
    w = parsed(durable_workflow_get(f->d, v1, &text, &err), &text, &err);
    assert_int_equal(1, json_integer_value(json_object_get(w, "version")));
    json_decref(w);
    assert_int_equal(DURABLE_ENOTFOUND, durable_workflow_get(f->d, "gamma", &text, &err));
    assert_string_equal("workflow \"gamma\" not found", err.msg);
    assert_null(text);
    durable_free(v1);
    durable_free(v2);
    durable_free(beta);
}

/* A definition is stored with its numbers as written: 0.1 (or a YAML
 * "100ms") is not 0.10000000000000001; one with a number needing 17
 * digits keeps them all. */
static void test_definition_numbers_as_written(void **state)
{
    static const char yaml[] = "name: ms\ntasks:\n  - id: a\n    timeout: 100ms\n";
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *id = reg(f->d, "{\"name\":\"tenth\",\"input\":{\"n\":12.5},\"steps\":[{\"id\":\"a\","
                         "\"config\":{\"duration_seconds\":0.1,\"fail_probability\":0.3}}]}");
    char *odd = reg(f->d, "{\"name\":\"odd\",\"input\":{\"n\":0.30000000000000004},"
                          "\"steps\":[{\"id\":\"a\"}]}");
    char *text = NULL;

    assert_int_equal(DURABLE_OK, durable_workflow_get(f->d, "tenth", &text, &err));
    assert_non_null(strstr(text, "{\"duration_seconds\":0.1,\"fail_probability\":0.3}"));
    assert_non_null(strstr(text, "{\"n\":12.5}"));
    durable_free(text);
    assert_int_equal(DURABLE_OK, durable_workflow_get(f->d, "odd", &text, &err));
    assert_non_null(strstr(text, "{\"n\":0.30000000000000004}"));
    durable_free(odd);
    durable_free(text);
    durable_free(id);
    id = NULL;
    assert_int_equal(DURABLE_OK,
                     durable_workflow_register(f->d, yaml, strlen(yaml), &id, NULL, NULL, &err));
    assert_int_equal(DURABLE_OK, durable_workflow_get(f->d, "ms", &text, &err));
    assert_non_null(strstr(text, "\"timeout_seconds\":0.1}"));
    durable_free(text);
    durable_free(id);
}

static void test_orders_list(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *ids[3] = { NULL, NULL, NULL }, *text = NULL;
    int64_t total = 0;
    json_t *l;
    int i;

    for (i = 0; i < 3; i++)
        assert_int_equal(DURABLE_OK, durable_order_create(f->d, 10.0 + i, &ids[i], &err));
    l = parsed(durable_orders_list(f->d, 2, 0, &text, &total, &err), &text, &err);
    assert_int_equal(3, total);
    assert_int_equal(2, json_array_size(l));
    assert_string_equal(ids[2], str(json_array_get(l, 0), "id"));
    assert_true(json_real_value(json_object_get(json_array_get(l, 0), "amount")) == 12.0);
    assert_string_equal("pending", str(json_array_get(l, 0), "status"));
    assert_non_null(str(json_array_get(l, 0), "updated_at"));
    assert_string_equal(ids[1], str(json_array_get(l, 1), "id"));
    json_decref(l);
    for (i = 0; i < 3; i++)
        durable_free(ids[i]);
}

/* ---- retry ---- */

static const char pay_def[] =
        "{\"name\":\"pay\",\"steps\":["
        "{\"id\":\"prep\",\"config\":{\"duration_seconds\":0}},"
        "{\"id\":\"charge\",\"config\":{\"duration_seconds\":0,\"action\":\"charge_payment\"},"
        "\"depends_on\":[\"prep\"]},"
        "{\"id\":\"ship\",\"config\":{\"duration_seconds\":0},\"depends_on\":[\"charge\"]}]}";

/* A run fails because its order is not validated yet; another run
 * validates the order; the retry then completes the first run without
 * running its completed step again. */
static void test_retry_completes_after_the_cause_is_fixed(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *order = NULL, *pay, *validate, *run, *fix;
    json_t *ev, *r, *o;
    char *text = NULL;

    assert_int_equal(DURABLE_OK, durable_order_create(f->d, 20, &order, &err));
    pay = reg(f->d, pay_def);
    validate = reg(f->d, "{\"name\":\"validate\",\"steps\":[{\"id\":\"v\",\"config\":"
                         "{\"duration_seconds\":0,\"action\":\"validate_order\"}}]}");
    run = start(f->d, pay, order, NULL);
    assert_string_equal("failed", wait_run(f->d, run));
    r = run_doc(f->d, run);
    assert_string_equal("failed", str(step_of(r, "charge"), "status"));
    assert_string_equal("cancelled", str(step_of(r, "ship"), "status"));
    json_decref(r);

    fix = start(f->d, validate, order, NULL);
    assert_string_equal("completed", wait_run(f->d, fix));
    assert_int_equal(DURABLE_OK, durable_run_retry(f->d, run, &err));
    assert_string_equal("completed", wait_run(f->d, run));

    o = parsed(durable_order_get(f->d, order, &text, &err), &text, &err);
    assert_string_equal("charged", str(o, "status"));
    json_decref(o);
    r = run_doc(f->d, run);
    assert_true(json_is_null(json_object_get(r, "error_message")));
    assert_non_null(json_object_get(r, "completed_at"));
    assert_int_equal(1, json_integer_value(json_object_get(step_of(r, "charge"), "attempt")));
    assert_string_equal("completed", str(step_of(r, "ship"), "status"));
    json_decref(r);
    ev = run_events(f->d, run);
    assert_int_equal(1, count_events(ev, "step_started", "prep"));
    assert_int_equal(1, count_events(ev, "step_completed", "prep"));
    assert_int_equal(2, count_events(ev, "step_started", "charge"));
    assert_int_equal(1, count_events(ev, "action_applied", "charge"));
    assert_int_equal(1, count_events(ev, "run_retried", NULL));
    assert_int_equal(0, count_events(ev, "recovered", NULL));
    assert_int_equal(1, count_events(ev, "run_failed", NULL));
    assert_int_equal(1, count_events(ev, "run_completed", NULL));
    json_decref(ev);
    durable_free(fix);
    durable_free(run);
    durable_free(validate);
    durable_free(pay);
    durable_free(order);
}

/* A step that always fails fails again after a retry, with fresh attempts;
 * the completed step before it keeps its one completion. */
static void test_retry_fails_again_with_new_attempts(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf =
            reg(f->d, "{\"name\":\"doomed\",\"steps\":["
                      "{\"id\":\"ok\",\"config\":{\"duration_seconds\":0}},"
                      "{\"id\":\"bad\",\"config\":{\"duration_seconds\":0,\"fail_probability\":1,"
                      "\"max_retries\":1},\"retry\":{\"initial_interval_seconds\":0.01},"
                      "\"depends_on\":[\"ok\"]},"
                      "{\"id\":\"after\",\"config\":{\"duration_seconds\":0},"
                      "\"depends_on\":[\"bad\"]}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev, *r, *e;
    int64_t expect = 1;
    size_t i;

    assert_string_equal("failed", wait_run(f->d, run));
    assert_int_equal(DURABLE_OK, durable_run_retry(f->d, run, &err));
    assert_string_equal("failed", wait_run(f->d, run));
    ev = run_events(f->d, run);
    assert_int_equal(1, count_events(ev, "step_completed", "ok"));
    assert_int_equal(1, count_events(ev, "step_started", "ok"));
    assert_int_equal(4, count_events(ev, "step_started", "bad"));
    assert_int_equal(4, count_events(ev, "step_failed", "bad"));
    assert_int_equal(0, count_events(ev, "step_started", "after"));
    assert_int_equal(2, count_events(ev, "run_failed", NULL));
    assert_int_equal(1, count_events(ev, "run_retried", NULL));
    json_array_foreach(ev, i, e)
    {
        assert_int_equal(expect++, json_integer_value(json_object_get(e, "seq")));
        /* After the retry, attempts count from 1 again. */
        if (strcmp(str(e, "type"), "run_retried") == 0) {
            json_t *next = json_array_get(ev, i + 1);
            assert_string_equal("step_started", str(next, "type"));
            assert_string_equal("bad", str(next, "step_id"));
            assert_int_equal(1, json_integer_value(
                                        json_object_get(json_object_get(next, "data"), "attempt")));
            assert_string_equal("bad",
                                json_string_value(json_array_get(
                                        json_object_get(json_object_get(e, "data"), "steps"), 0)));
        }
    }
    r = run_doc(f->d, run);
    assert_int_equal(2, json_integer_value(json_object_get(step_of(r, "bad"), "attempt")));
    assert_string_equal("cancelled", str(step_of(r, "after"), "status"));
    assert_string_equal("completed", str(step_of(r, "ok"), "status"));
    json_decref(r);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

static void test_retry_refusals(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *quick = reg(f->d, quick_def), *slow = reg(f->d, long_def);
    char *done = start(f->d, quick, NULL, NULL), *busy = start(f->d, slow, NULL, NULL);
    char want[160];

    assert_string_equal("completed", wait_run(f->d, done));
    assert_int_equal(DURABLE_ECONFLICT, durable_run_retry(f->d, done, &err));
    snprintf(want, sizeof(want), "run %s is completed, only a failed run can be retried", done);
    assert_string_equal(want, err.msg);
    err.code = DURABLE_OK;
    assert_int_equal(DURABLE_ECONFLICT, durable_run_retry(f->d, busy, &err));
    err.code = DURABLE_OK;
    assert_int_equal(DURABLE_ENOTFOUND, durable_run_retry(f->d, "run_nope", &err));
    err.code = DURABLE_OK;
    assert_int_equal(DURABLE_OK, durable_run_cancel(f->d, busy, &err));
    assert_string_equal("cancelled", wait_run(f->d, busy));
    assert_int_equal(DURABLE_ECONFLICT, durable_run_retry(f->d, busy, &err));
    durable_free(busy);
    durable_free(done);
    durable_free(slow);
    durable_free(quick);
}

/* An event's time ("2026-11-22T13:05:01.123Z") in Unix ms. */
static int64_t event_ms(json_t *ev)
{
    struct tm tm;
    int ms = 0;

    memset(&tm, 0, sizeof(tm));
    assert_int_equal(7, sscanf(str(ev, "at"), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                               &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms));
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* The last event of type in events. */
static json_t *last_event(json_t *events, const char *type)
{
    json_t *found = NULL, *e;
    size_t i;

    json_array_foreach(events, i, e)
    {
        if (strcmp(str(e, "type"), type) == 0)
            found = e;
    }
    assert_non_null(found);
    return found;
}

/* A run failed by its time limit gets the whole limit again when retried
 * (and fails by it again here: its step is too slow). */
static void test_retry_restarts_the_run_time_limit(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf = reg(f->d, "{\"name\":\"late\",\"timeout_seconds\":0.2,\"steps\":["
                         "{\"id\":\"s\",\"config\":{\"duration_seconds\":30}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev;

    assert_string_equal("failed", wait_run(f->d, run));
    assert_int_equal(DURABLE_OK, durable_run_retry(f->d, run, &err));
    assert_string_equal("failed", wait_run(f->d, run));
    ev = run_events(f->d, run);
    /* Failed by a new limit counted from the retry, not at once by the
     * old one counted from the creation. */
    assert_int_equal(2, count_events(ev, "step_started", "s"));
    assert_int_equal(2, count_events(ev, "run_failed", NULL));
    assert_true(event_ms(last_event(ev, "run_failed")) - event_ms(last_event(ev, "run_retried")) >=
                150);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

/* ---- every run's events ---- */

struct gid_log {
    pthread_mutex_t mu;
    int64_t ids[64]; /* guarded by mu */
    int n;           /* guarded by mu */
};

static void on_event(const durable_event *ev, void *ud)
{
    struct gid_log *g = ud;

    pthread_mutex_lock(&g->mu);
    if (g->n < 64)
        g->ids[g->n++] = ev->global_id;
    pthread_mutex_unlock(&g->mu);
}

static void test_events_since(void **state)
{
    struct fixture *f = *state;
    struct gid_log g = { .n = 0 };
    durable_error err = { 0 };
    char *wf = reg(f->d, quick_def), *r1, *r2, *text = NULL;
    json_t *all, *page, *e;
    int64_t prev = 0;
    size_t i;
    int sub, n_seen = 0;

    pthread_mutex_init(&g.mu, NULL);
    sub = durable_subscribe(f->d, on_event, &g);
    r1 = start(f->d, wf, NULL, NULL);
    r2 = start(f->d, wf, NULL, NULL);
    wait_run(f->d, r1);
    wait_run(f->d, r2);
    all = parsed(durable_events_since(f->d, 0, 0, &text, &err), &text, &err);
    assert_int_equal(8, json_array_size(all)); /* 4 events per run */
    json_array_foreach(all, i, e)
    {
        int64_t id = json_integer_value(json_object_get(e, "id"));
        assert_true(id > prev);
        prev = id;
        assert_true(strcmp(str(e, "run_id"), r1) == 0 || strcmp(str(e, "run_id"), r2) == 0);
        assert_non_null(str(e, "type"));
        assert_non_null(str(e, "at"));
        assert_true(json_integer_value(json_object_get(e, "seq")) >= 1);
    }
    /* Subscribers saw the same ids, in the same order. */
    for (int tries = 0; tries < 1000 && n_seen < 8; tries++) {
        pthread_mutex_lock(&g.mu);
        n_seen = g.n;
        pthread_mutex_unlock(&g.mu);
        if (n_seen < 8)
            usleep(2000);
    }
    durable_unsubscribe(f->d, sub);
    assert_int_equal(8, g.n);
    for (i = 0; i < 8; i++)
        assert_int_equal(g.ids[i],
                         json_integer_value(json_object_get(json_array_get(all, i), "id")));
    /* Paging by id. */
    page = parsed(durable_events_since(f->d, g.ids[2], 3, &text, &err), &text, &err);
    assert_int_equal(3, json_array_size(page));
    assert_true(json_equal(json_array_get(page, 0), json_array_get(all, 3)));
    assert_true(json_equal(json_array_get(page, 2), json_array_get(all, 5)));
    json_decref(page);
    page = parsed(durable_events_since(f->d, g.ids[7], 10, &text, &err), &text, &err);
    assert_int_equal(0, json_array_size(page));
    json_decref(page);
    /* Run events carry the same id. */
    page = run_events(f->d, r2);
    e = json_array_get(page, 0);
    for (i = 0; i < json_array_size(all); i++) {
        json_t *a = json_array_get(all, i);
        if (strcmp(str(a, "run_id"), r2) == 0 && json_integer_value(json_object_get(a, "seq")) == 1)
            assert_int_equal(json_integer_value(json_object_get(a, "id")),
                             json_integer_value(json_object_get(e, "id")));
    }
    json_decref(page);
    json_decref(all);
    pthread_mutex_destroy(&g.mu);
    durable_free(r1);
    durable_free(r2);
    durable_free(wf);
}

/* ---- snapshot ---- */

static json_t *table_of(json_t *snap, const char *name)
{
    size_t i;
    json_t *t;

    json_array_foreach(json_object_get(snap, "tables"), i, t)
    {
        if (strcmp(str(t, "name"), name) == 0)
            return t;
    }
    fail_msg("no table %s", name);
    return NULL;
}

/* Rows of table whose column `col` equals value. */
static int rows_with(json_t *table, const char *col, const char *value)
{
    size_t i, k;
    json_t *c, *row;
    int idx = -1, n = 0;

    json_array_foreach(json_object_get(table, "columns"), i, c)
    {
        if (strcmp(json_string_value(c), col) == 0)
            idx = (int)i;
    }
    assert_true(idx >= 0);
    json_array_foreach(json_object_get(table, "rows"), k, row)
    {
        const char *v = json_string_value(json_array_get(row, (size_t)idx));
        if (v && strcmp(v, value) == 0)
            n++;
    }
    return n;
}

static void test_db_snapshot(void **state)
{
    static const char *const tables[] = { "workflows", "runs",          "steps", "events",
                                          "signals",   "orders",        "kv",    "gid_floor",
                                          "schedules", "schema_version" };
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *order = NULL, *wf, *run, *text = NULL;
    json_t *snap, *t, *ev;

    assert_int_equal(DURABLE_OK, durable_order_create(f->d, 5, &order, &err));
    wf = reg(f->d, pay_def);
    run = start(f->d, wf, order, NULL);
    wait_run(f->d, run);
    ev = run_events(f->d, run);
    snap = parsed(durable_db_snapshot(f->d, 0, &text, &err), &text, &err);
    assert_int_equal(DUR_ARRAY_LEN(tables), json_array_size(json_object_get(snap, "tables")));
    for (size_t i = 0; i < DUR_ARRAY_LEN(tables); i++) {
        t = table_of(snap, tables[i]);
        assert_true(json_array_size(json_object_get(t, "columns")) > 0);
        assert_true(json_is_array(json_object_get(t, "rows")));
        assert_true(json_is_integer(json_object_get(t, "total")));
    }
    assert_int_equal(1, rows_with(table_of(snap, "runs"), "id", run));
    assert_int_equal(3, rows_with(table_of(snap, "steps"), "run_id", run));
    assert_int_equal((int)json_array_size(ev), rows_with(table_of(snap, "events"), "run_id", run));
    assert_int_equal((json_int_t)json_array_size(ev),
                     json_integer_value(json_object_get(table_of(snap, "events"), "total")));
    assert_int_equal(1, rows_with(table_of(snap, "orders"), "id", order));
    assert_int_equal(1, rows_with(table_of(snap, "workflows"), "name", "pay"));
    json_decref(snap);
    snap = parsed(durable_db_snapshot(f->d, 1, &text, &err), &text, &err);
    t = table_of(snap, "events");
    assert_int_equal(1, json_array_size(json_object_get(t, "rows")));
    assert_int_equal((json_int_t)json_array_size(ev),
                     json_integer_value(json_object_get(t, "total")));
    json_decref(snap);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
    durable_free(order);
}

/* ---- health and metrics ---- */

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    const char *p = text;

    while ((p = strstr(p, line)) != NULL) {
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
        p += n;
    }
    return false;
}

/* Every line is a comment or `name[{labels}] value`. */
static void assert_exposition_format(const char *text)
{
    const char *line = text;

    while (*line) {
        const char *end = strchr(line, '\n');
        const char *sp;
        assert_non_null(end); /* every line ends with a newline */
        if (line[0] != '#') {
            sp = memchr(line, ' ', (size_t)(end - line));
            assert_non_null(sp);
            assert_true(strncmp(line, "durable_", 8) == 0);
            assert_null(memchr(sp + 1, ' ', (size_t)(end - sp - 1)));
        }
        line = end + 1;
    }
}

struct scraper {
    durable *d;
    atomic_bool stop;
    int n_errors;
};

/* Scrapes metrics and health beside the engine's threads (for TSan). */
static void *scrape_main(void *arg)
{
    struct scraper *sc = arg;

    while (!atomic_load(&sc->stop)) {
        durable_error err = { 0 };
        char *text = NULL;
        if (durable_metrics(sc->d, &text, &err) != DURABLE_OK ||
            durable_health(sc->d, &err) != DURABLE_OK)
            sc->n_errors++;
        durable_free(text);
    }
    return NULL;
}

static void test_health_and_metrics(void **state)
{
    enum { N = 5 };
    static const char *const zero_runs[] = { "pending", "running", "waiting", "failed",
                                             "cancelled" };
    static const char *const zero_steps[] = { "pending", "running", "retrying", "waiting",
                                              "failed",  "skipped", "cancelled" };
    struct fixture *f = *state;
    struct scraper sc = { .d = f->d };
    durable_error err = { 0 };
    char *wf, *ids[N], *text = NULL;
    char line[96];
    pthread_t th;
    size_t i;

    assert_int_equal(DURABLE_OK, durable_health(f->d, &err));
    assert_int_equal(0, pthread_create(&th, NULL, scrape_main, &sc));
    wf = reg(f->d,
             "{\"name\":\"two\",\"steps\":["
             "{\"id\":\"a\",\"config\":{\"duration_seconds\":0.05}},"
             "{\"id\":\"b\",\"config\":{\"duration_seconds\":0.05},\"depends_on\":[\"a\"]}]}");
    for (i = 0; i < N; i++)
        ids[i] = start(f->d, wf, NULL, NULL);
    for (i = 0; i < N; i++)
        assert_string_equal("completed", wait_run(f->d, ids[i]));
    atomic_store(&sc.stop, true);
    assert_int_equal(0, pthread_join(th, NULL));
    assert_int_equal(0, sc.n_errors);

    /* A run's completion commits with its last step's, so the scheduler
     * may record that attempt's time a moment after the run reads as
     * completed: scrape until it has (bounded), then check everything. */
    for (i = 0; i < 2500; i++) {
        durable_free(text);
        assert_int_equal(DURABLE_OK, durable_metrics(f->d, &text, &err));
        if (has_line(text, "durable_step_duration_seconds_count 10"))
            break;
        usleep(2000);
    }
    assert_exposition_format(text);
    assert_true(has_line(text, "# TYPE durable_runs gauge"));
    assert_true(has_line(text, "durable_runs{status=\"completed\"} 5"));
    for (i = 0; i < DUR_ARRAY_LEN(zero_runs); i++) {
        snprintf(line, sizeof(line), "durable_runs{status=\"%s\"} 0", zero_runs[i]);
        assert_true(has_line(text, line));
    }
    assert_true(has_line(text, "# TYPE durable_steps gauge"));
    assert_true(has_line(text, "durable_steps{status=\"completed\"} 10"));
    for (i = 0; i < DUR_ARRAY_LEN(zero_steps); i++) {
        snprintf(line, sizeof(line), "durable_steps{status=\"%s\"} 0", zero_steps[i]);
        assert_true(has_line(text, line));
    }
    /* Ten attempts of at least 50 ms each. */
    assert_true(has_line(text, "# TYPE durable_step_duration_seconds histogram"));
    assert_true(has_line(text, "durable_step_duration_seconds_bucket{le=\"0.001\"} 0"));
    assert_true(has_line(text, "durable_step_duration_seconds_bucket{le=\"0.025\"} 0"));
    assert_true(has_line(text, "durable_step_duration_seconds_bucket{le=\"60\"} 10"));
    assert_true(has_line(text, "durable_step_duration_seconds_bucket{le=\"+Inf\"} 10"));
    assert_true(has_line(text, "durable_step_duration_seconds_count 10"));
    {
        const char *sum = strstr(text, "\ndurable_step_duration_seconds_sum ");
        assert_non_null(sum);
        sum += strlen("\ndurable_step_duration_seconds_sum ");
        assert_true(strtod(sum, NULL) >= 10 * 0.05 && strtod(sum, NULL) < 60);
    }
    /* 1 registration + 5 runs x (create, 2 starts, 2 completions, finish). */
    assert_true(has_line(text, "# TYPE durable_commit_batch_size histogram"));
    assert_true(has_line(text, "durable_commit_batch_size_sum 31"));
    assert_true(has_line(text, "# TYPE durable_commits_total counter"));
    assert_true(has_line(text, "# TYPE durable_transitions_total counter"));
    assert_true(has_line(text, "durable_transitions_total 31"));
    {
        const char *c = strstr(text, "\ndurable_commits_total ");
        const char *bc = strstr(text, "\ndurable_commit_batch_size_count ");
        long long commits, batches;
        assert_non_null(c);
        assert_non_null(bc);
        commits = strtoll(c + strlen("\ndurable_commits_total "), NULL, 10);
        batches = strtoll(bc + strlen("\ndurable_commit_batch_size_count "), NULL, 10);
        assert_true(commits >= 1 && commits <= 31);
        assert_int_equal(commits, batches);
        snprintf(line, sizeof(line), "durable_commit_batch_size_bucket{le=\"4096\"} %lld", commits);
        assert_true(has_line(text, line));
    }
    durable_free(text);
    assert_int_equal(DURABLE_OK, durable_health(f->d, &err));
    for (i = 0; i < N; i++)
        durable_free(ids[i]);
    durable_free(wf);
}

/* "sqlite:PATH" opens the file at PATH, and two spellings of one file
 * exclude each other as servers (two executors would run steps twice). */
static void test_sqlite_location_is_the_same_file(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    char loc[128];
    durable_options o = { .db_path = loc };
    durable *d;

    durable_close(f->d);
    f->d = NULL;
    snprintf(loc, sizeof(loc), "sqlite:%s", f->db);
    d = durable_open(&o, &err);
    assert_non_null(d);
    o.db_path = f->db;
    assert_null(durable_open(&o, &err));
    assert_int_equal(err.code, DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "is in use by another durable process"));
    durable_close(d);
    o.db_path = "mysql://nobody@localhost/x";
    err.code = DURABLE_OK;
    assert_null(durable_open(&o, &err));
    assert_int_equal(err.code, DURABLE_EUNSUPPORTED);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_FULL);
}

/* ---- idempotency keys across versions, child workflows ---- */

static void test_key_reuse_compare(void **state)
{
    struct fixture *f = *state;
    durable_run_request req = { .workflow = "alpha",
                                .input_json = "{\"n\":1,\"m\":2}",
                                .idempotency_key = "k" };
    durable_run_reuse r = { 0 };
    durable_error err = { 0 };
    char *v1 = reg(f->d, quick_def), *v2, *run = NULL, *again = NULL;
    bool existed = true;

    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &run, &existed, &err));
    assert_false(existed);
    req.input_json = "{\"m\":2,\"n\":1}"; /* the same input, keys in another order */
    assert_int_equal(DURABLE_OK, durable_run_compare(f->d, &req, run, &r, &err));
    assert_int_equal(1, r.run_version);
    assert_int_equal(1, r.requested_version);
    assert_false(r.input_differs);
    req.input_json = "{\"n\":2}";
    assert_int_equal(DURABLE_OK, durable_run_compare(f->d, &req, run, &r, &err));
    assert_true(r.input_differs);
    v2 = reg(f->d, failing_def);
    req.input_json = "{\"n\":1,\"m\":2}";
    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &again, &existed, &err));
    assert_true(existed); /* per name, across versions */
    assert_string_equal(run, again);
    assert_int_equal(DURABLE_OK, durable_run_compare(f->d, &req, again, &r, &err));
    assert_int_equal(1, r.run_version);
    assert_int_equal(2, r.requested_version);
    assert_false(r.input_differs);
    assert_int_equal(DURABLE_ENOTFOUND, durable_run_compare(f->d, &req, "run_nope", &r, &err));
    wait_run(f->d, run);
    durable_free(again);
    durable_free(run);
    durable_free(v2);
    durable_free(v1);
}

static void test_workflow_warnings_name_unknown_children(void **state)
{
    static const char parent[] =
            "{\"name\":\"parent\",\"steps\":[{\"id\":\"a\",\"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"b\",\"type\":\"workflow\",\"config\":{\"workflow\":\"alpha\"}},"
            "{\"id\":\"c\",\"type\":\"workflow\",\"config\":{\"workflow\":\"parent\"}},"
            "{\"id\":\"d\",\"type\":\"workflow\",\"config\":{\"workflow\":\"{{ input.w }}\"}}]}";
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *report = NULL, *v1;

    assert_int_equal(DURABLE_OK,
                     durable_workflow_warnings(f->d, parent, strlen(parent), &report, &err));
    assert_string_equal(
            "warning: steps[1].config.workflow: no workflow \"alpha\" is registered yet\n", report);
    durable_free(report);
    v1 = reg(f->d, quick_def);
    assert_int_equal(DURABLE_OK,
                     durable_workflow_warnings(f->d, parent, strlen(parent), &report, &err));
    assert_string_equal("", report);
    durable_free(report);
    report = NULL;
    assert_int_equal(DURABLE_ESYNTAX, durable_workflow_warnings(f->d, "{", 1, &report, &err));
    assert_null(report);
    durable_free(v1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sqlite_location_is_the_same_file),
        T(test_runs_list_filters_and_paging),
        T(test_runs_list_limits_and_errors),
        T(test_workflows_list_and_get),
        T(test_definition_numbers_as_written),
        T(test_orders_list),
        T(test_retry_completes_after_the_cause_is_fixed),
        T(test_retry_fails_again_with_new_attempts),
        T(test_retry_refusals),
        T(test_retry_restarts_the_run_time_limit),
        T(test_events_since),
        T(test_db_snapshot),
        T(test_health_and_metrics),
        T(test_key_reuse_compare),
        T(test_workflow_warnings_name_unknown_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
