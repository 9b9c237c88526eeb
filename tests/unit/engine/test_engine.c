/*
 * test_engine.c - the engine through the public API (durable.h): runs on a
 * real SQLite file in a temporary directory, with real threads and timers.
 * Each test asserts what a user would check: statuses, outputs, the history,
 * the order's status.
 */
#include "util/common.h"

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

/* The steps listed by the first `recovered` event, as compact JSON text
 * (static buffer). */
static const char *recovered_steps(json_t *events)
{
    static char buf[256];
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "type")), "recovered") == 0) {
            char *t =
                    json_dumps(json_object_get(json_object_get(e, "data"), "steps"), JSON_COMPACT);
            snprintf(buf, sizeof(buf), "%s", t ? t : "");
            free(t);
            return buf;
        }
    }
    return "";
}

static char *order_status(durable *d, const char *order)
{
    durable_error err = { 0 };
    char *text = NULL, *status;
    json_t *j;
    assert_int_equal(DURABLE_OK, durable_order_get(d, order, &text, &err));
    j = json_loads(text, 0, NULL);
    status = strdup(json_string_value(json_object_get(j, "status")));
    json_decref(j);
    durable_free(text);
    return status;
}

static const char chain_def[] =
        "{\"name\":\"chain\",\"steps\":["
        "{\"id\":\"a\",\"config\":{\"duration_seconds\":0.01}},"
        "{\"id\":\"b\",\"config\":{\"duration_seconds\":0.01},\"depends_on\":[\"a\"]},"
        "{\"id\":\"c\",\"config\":{\"duration_seconds\":0.01},\"depends_on\":[\"b\"]}]}";

static void test_chain_completes_in_order(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, chain_def), *run = start(f->d, wf, NULL, NULL);
    json_t *r, *ev, *e;
    size_t i;
    int64_t expect = 1;

    assert_string_equal("completed", wait_run(f->d, run));
    r = get_run(f->d, run);
    assert_string_equal("completed", json_string_value(json_object_get(r, "status")));
    /* The run's output is its leaf's output. */
    assert_non_null(json_object_get(json_object_get(json_object_get(r, "output"), "c"),
                                    "duration_seconds"));
    ev = get_events(f->d, run);
    json_array_foreach(ev, i, e)
    {
        assert_int_equal(expect++, json_integer_value(json_object_get(e, "seq")));
    }
    /* a, b, c strictly one after the other. */
    assert_int_equal(8, json_array_size(ev));
    assert_string_equal("run_created",
                        json_string_value(json_object_get(json_array_get(ev, 0), "type")));
    assert_string_equal("b", json_string_value(json_object_get(json_array_get(ev, 3), "step_id")));
    assert_string_equal("step_started",
                        json_string_value(json_object_get(json_array_get(ev, 3), "type")));
    assert_string_equal("run_completed",
                        json_string_value(json_object_get(json_array_get(ev, 7), "type")));
    json_decref(ev);
    json_decref(r);
    durable_free(run);
    durable_free(wf);
}

static void test_parallel_branches_overlap(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"fan\",\"steps\":["
            "{\"id\":\"root\",\"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"x\",\"config\":{\"duration_seconds\":0.3},\"depends_on\":[\"root\"]},"
            "{\"id\":\"y\",\"config\":{\"duration_seconds\":0.3},\"depends_on\":[\"root\"]},"
            "{\"id\":\"join\",\"config\":{\"duration_seconds\":0},\"depends_on\":[\"x\",\"y\"]}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev;

    assert_string_equal("completed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    /* Both branches started (in file order) before either completed. */
    assert_string_equal("x", json_string_value(json_object_get(json_array_get(ev, 3), "step_id")));
    assert_string_equal("step_started",
                        json_string_value(json_object_get(json_array_get(ev, 3), "type")));
    assert_string_equal("y", json_string_value(json_object_get(json_array_get(ev, 4), "step_id")));
    assert_string_equal("step_started",
                        json_string_value(json_object_get(json_array_get(ev, 4), "type")));
    assert_int_equal(1, count_events(ev, "step_started", "join"));
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

static void test_retries_then_fails(void **state)
{
    struct fixture *f = *state;
    char *wf =
            reg(f->d,
                "{\"name\":\"flaky\",\"steps\":[{\"id\":\"f\",\"config\":"
                "{\"duration_seconds\":0,\"fail_probability\":1,\"max_retries\":2},"
                "\"retry\":{\"initial_interval_seconds\":0.02,\"backoff_coefficient\":3}},"
                "{\"id\":\"never\",\"config\":{\"duration_seconds\":0},\"depends_on\":[\"f\"]}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev, *r, *e;
    size_t i;
    int64_t delays[2] = { 0 }, n = 0;

    assert_string_equal("failed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    assert_int_equal(3, count_events(ev, "step_started", "f"));
    assert_int_equal(3, count_events(ev, "step_failed", "f"));
    assert_int_equal(2, count_events(ev, "retry_scheduled", "f"));
    json_array_foreach(ev, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "type")), "retry_scheduled") == 0)
            delays[n++] =
                    json_integer_value(json_object_get(json_object_get(e, "data"), "delay_ms"));
    }
    assert_int_equal(20, delays[0]);
    assert_int_equal(60, delays[1]);
    r = get_run(f->d, run);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error_message")), "\"f\""));
    assert_string_equal("failed", json_string_value(json_object_get(step_of(r, "f"), "status")));
    assert_int_equal(3, json_integer_value(json_object_get(step_of(r, "f"), "attempt")));
    assert_string_equal("cancelled",
                        json_string_value(json_object_get(step_of(r, "never"), "status")));
    json_decref(r);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

static void test_attempt_timeout_and_non_retryable(void **state)
{
    struct fixture *f = *state;
    char *wf =
            reg(f->d,
                "{\"name\":\"slow\",\"steps\":[{\"id\":\"s\",\"config\":{\"duration_seconds\":30},"
                "\"timeout_seconds\":0.05,\"retry\":{\"max_attempts\":5,"
                "\"non_retryable_errors\":[\"timeout\"]}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *r;

    assert_string_equal("failed", wait_run(f->d, run));
    r = get_run(f->d, run);
    assert_int_equal(1, json_integer_value(json_object_get(step_of(r, "s"), "attempt")));
    assert_non_null(strstr(json_string_value(json_object_get(r, "error_message")), "timed out"));
    json_decref(r);
    durable_free(run);
    durable_free(wf);
}

static void test_run_deadline(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"deadline\",\"timeout_seconds\":0.1,"
                         "\"steps\":[{\"id\":\"s\",\"config\":{\"duration_seconds\":30}}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *r;

    assert_string_equal("failed", wait_run(f->d, run));
    r = get_run(f->d, run);
    assert_non_null(
            strstr(json_string_value(json_object_get(r, "error_message")), "run timed out"));
    assert_string_equal("cancelled", json_string_value(json_object_get(step_of(r, "s"), "status")));
    json_decref(r);
    durable_free(run);
    durable_free(wf);
}

static void test_order_actions_exactly_once(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *order = NULL, *wf, *run, *st;
    json_t *ev;

    assert_int_equal(DURABLE_OK, durable_order_create(f->d, 25, &order, &err));
    wf = reg(
            f->d,
            "{\"name\":\"order\",\"steps\":["
            "{\"id\":\"v\",\"config\":{\"duration_seconds\":0,\"action\":\"validate_order\"}},"
            "{\"id\":\"c\",\"config\":{\"duration_seconds\":0,\"action\":\"charge_payment\"},\"depends_on\":[\"v\"]},"
            "{\"id\":\"s\",\"config\":{\"duration_seconds\":0,\"action\":\"ship_order\"},\"depends_on\":[\"c\"]}]}");
    run = start(f->d, wf, order, NULL);
    assert_string_equal("completed", wait_run(f->d, run));
    st = order_status(f->d, order);
    assert_string_equal("shipped", st);
    ev = get_events(f->d, run);
    assert_int_equal(3, count_events(ev, "action_applied", NULL));
    json_decref(ev);
    free(st);
    durable_free(run);
    durable_free(wf);
    durable_free(order);
}

static void test_refused_action_retries_then_fails(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *order = NULL, *wf, *run, *st;
    json_t *ev, *r;

    assert_int_equal(DURABLE_OK, durable_order_create(f->d, 5, &order, &err));
    /* Charging a pending order is refused: the attempt fails and retries. */
    wf = reg(
            f->d,
            "{\"name\":\"bad-order\",\"steps\":[{\"id\":\"c\",\"config\":{\"duration_seconds\":0,"
            "\"action\":\"charge_payment\",\"max_retries\":1},\"retry\":{\"initial_interval_seconds\":0.01}}]}");
    run = start(f->d, wf, order, NULL);
    assert_string_equal("failed", wait_run(f->d, run));
    st = order_status(f->d, order);
    assert_string_equal("pending", st);
    ev = get_events(f->d, run);
    assert_int_equal(0, count_events(ev, "action_applied", NULL));
    assert_int_equal(0, count_events(ev, "step_completed", NULL));
    assert_int_equal(2, count_events(ev, "step_failed", "c"));
    r = get_run(f->d, run);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error_message")), "validated"));
    json_decref(r);
    json_decref(ev);
    free(st);
    durable_free(run);
    durable_free(wf);
    durable_free(order);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf =
            reg(f->d,
                "{\"name\":\"long\",\"steps\":[{\"id\":\"a\",\"config\":{\"duration_seconds\":30}},"
                "{\"id\":\"b\",\"depends_on\":[\"a\"]}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *r;

    assert_int_equal(DURABLE_OK, durable_run_cancel(f->d, run, &err));
    assert_string_equal("cancelled", wait_run(f->d, run));
    r = get_run(f->d, run);
    assert_string_equal("cancelled", json_string_value(json_object_get(step_of(r, "a"), "status")));
    assert_string_equal("cancelled", json_string_value(json_object_get(step_of(r, "b"), "status")));
    assert_int_equal(DURABLE_ECONFLICT, durable_run_cancel(f->d, run, &err));
    err.code = DURABLE_OK;
    assert_int_equal(DURABLE_ENOTFOUND, durable_run_cancel(f->d, "run_nope", &err));
    json_decref(r);
    durable_free(run);
    durable_free(wf);
}

static void test_idempotent_start(void **state)
{
    struct fixture *f = *state;
    durable_run_request req = { .workflow = "chain", .idempotency_key = "k1" };
    durable_error err = { 0 };
    char *wf = reg(f->d, chain_def), *r1 = NULL, *r2 = NULL;
    bool existed = true;

    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &r1, &existed, &err));
    assert_false(existed);
    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &r2, &existed, &err));
    assert_true(existed);
    assert_string_equal(r1, r2);
    assert_string_equal("completed", wait_run(f->d, r1));
    durable_free(r1);
    durable_free(r2);
    durable_free(wf);
}

static void test_bad_requests(void **state)
{
    struct fixture *f = *state;
    durable_run_request req = { .workflow = "chain" };
    durable_error err = { 0 };
    char *wf = reg(f->d, chain_def), *run = NULL, *id = NULL;
    const char *bad = "{\"name\":\"x\",\"steps\":[{\"id\":\"a\",\"depends_on\":[\"b\"]}]}";

    req.input_json = "{\"a\":";
    assert_int_equal(DURABLE_ESYNTAX, durable_run_start(f->d, &req, &run, NULL, &err));
    err.code = DURABLE_OK;
    req.input_json = "[1]";
    assert_int_equal(DURABLE_EINVAL, durable_run_start(f->d, &req, &run, NULL, &err));
    err.code = DURABLE_OK;
    req.input_json = NULL;
    req.order_id = "ord_missing";
    assert_int_equal(DURABLE_ENOTFOUND, durable_run_start(f->d, &req, &run, NULL, &err));
    err.code = DURABLE_OK;
    req.workflow = "no-such-workflow";
    req.order_id = NULL;
    assert_int_equal(DURABLE_ENOTFOUND, durable_run_start(f->d, &req, &run, NULL, &err));
    err.code = DURABLE_OK;
    assert_int_equal(DURABLE_EINVAL,
                     durable_workflow_register(f->d, bad, strlen(bad), &id, NULL, NULL, &err));
    assert_string_equal("steps[0].depends_on[0]: unknown step \"b\"", err.msg);
    assert_null(run);
    assert_null(id);
    durable_free(wf);
}

static void test_versions(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *v2 =
            "{\"name\":\"chain\",\"steps\":[{\"id\":\"only\",\"config\":{\"duration_seconds\":0}}]}";
    char *id1 = NULL, *id2 = NULL, *id3 = NULL;
    int version = 0;
    bool created = false;

    assert_int_equal(DURABLE_OK, durable_workflow_register(f->d, chain_def, strlen(chain_def), &id1,
                                                           &version, &created, &err));
    assert_int_equal(1, version);
    assert_true(created);
    assert_int_equal(DURABLE_OK, durable_workflow_register(f->d, v2, strlen(v2), &id2, &version,
                                                           &created, &err));
    assert_int_equal(2, version);
    assert_true(created);
    assert_int_equal(DURABLE_OK, durable_workflow_register(f->d, v2, strlen(v2), &id3, &version,
                                                           &created, &err));
    assert_int_equal(2, version);
    assert_false(created);
    assert_string_equal(id2, id3);
    durable_free(id1);
    durable_free(id2);
    durable_free(id3);
}

/* Closing mid-run and opening again resumes the run: the completed step is
 * not run again, the running one is run again with the same attempt, under
 * the run's `recovered` event. */
static void test_resume_after_reopen(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"resume\",\"steps\":[{\"id\":\"a\",\"config\":{\"duration_seconds\":0}},"
            "{\"id\":\"b\",\"config\":{\"duration_seconds\":0.4},\"depends_on\":[\"a\"]}]}");
    char *run = start(f->d, wf, NULL, NULL);
    json_t *ev = NULL;
    int tries;

    for (tries = 0; tries < 500; tries++) {
        json_decref(ev);
        ev = get_events(f->d, run);
        if (count_events(ev, "step_started", "b") == 1)
            break;
        usleep(10000);
    }
    assert_int_equal(1, count_events(ev, "step_started", "b"));
    json_decref(ev);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_string_equal("completed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    /* b restarts under its `recovered` event, without a second START */
    assert_int_equal(1, count_events(ev, "recovered", NULL));
    assert_int_equal(1, count_events(ev, "step_started", "a"));
    assert_int_equal(1, count_events(ev, "step_started", "b"));
    assert_int_equal(1, count_events(ev, "step_completed", "b"));
    assert_string_equal("[\"b\"]", recovered_steps(ev));
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

/* 10,000 runs with a 2 s task in flight at once need no more threads than one. */
static void test_many_runs_few_threads(void **state)
{
    enum { N = 10000 };
    struct fixture *f = *state;
    char *wf = reg(
            f->d,
            "{\"name\":\"wait\",\"steps\":[{\"id\":\"w\",\"config\":{\"duration_seconds\":2}}]}");
    char **runs = calloc(N, sizeof(*runs));
    int i, base = count_threads(), peak;

    for (i = 0; i < N; i++)
        runs[i] = start(f->d, wf, NULL, NULL);
    peak = count_threads();
    assert_int_equal(base, peak);
    for (i = 0; i < N; i++) {
        assert_string_equal("completed", wait_run(f->d, runs[i]));
        durable_free(runs[i]);
    }
    free(runs);
    durable_free(wf);
}

struct seq_check {
    pthread_mutex_t mu;
    int64_t last_seq; /* guarded by mu */
    bool in_order;    /* guarded by mu */
};

static void on_ev(const durable_event *ev, void *ud)
{
    struct seq_check *c = ud;
    pthread_mutex_lock(&c->mu);
    if (ev->seq != c->last_seq + 1)
        c->in_order = false;
    c->last_seq = ev->seq;
    pthread_mutex_unlock(&c->mu);
}

/* The fixture's database holds this one run: every event a subscriber sees
 * is the run's, in sequence, and they are all of its history. */
static void test_subscribers_see_every_event_in_order(void **state)
{
    struct fixture *f = *state;
    struct seq_check c = { .in_order = true };
    char *wf = reg(f->d, chain_def), *run;
    json_t *ev;
    int sub;

    pthread_mutex_init(&c.mu, NULL);
    sub = durable_subscribe(f->d, on_ev, &c);
    assert_true(sub > 0);
    run = start(f->d, wf, NULL, NULL);
    assert_string_equal("completed", wait_run(f->d, run));
    ev = get_events(f->d, run);
    /* Delivery follows the commit: wait for the last one to arrive. */
    for (int tries = 0; tries < 1000; tries++) {
        int64_t seen;
        pthread_mutex_lock(&c.mu);
        seen = c.last_seq;
        pthread_mutex_unlock(&c.mu);
        if (seen >= (int64_t)json_array_size(ev))
            break;
        usleep(5000);
    }
    durable_unsubscribe(f->d, sub);
    pthread_mutex_lock(&c.mu);
    assert_true(c.in_order);
    assert_int_equal(json_array_size(ev), c.last_seq);
    pthread_mutex_unlock(&c.mu);
    pthread_mutex_destroy(&c.mu);
    json_decref(ev);
    durable_free(run);
    durable_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_completes_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_branches_overlap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_then_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_timeout_and_non_retryable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_actions_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_action_retries_then_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_runs_few_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribers_see_every_event_in_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
