/*
 * test_flow.c - concurrency limits through the public API: three runs of one
 * customer under `limit: 1` execute one at a time, in the order started,
 * while another customer's run is not held; the held runs say why in their
 * document (`waiting`); a restart in the middle keeps the run that was
 * executing as the one in use; a limit over the whole workflow bounds the
 * runs executing at once (checked on the stored start and end times); a
 * higher priority is let in first, also after a restart.
 */
#include "util/common.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "durable.h"
#include "engine_test.h"
#include "util/util.h"

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static char *start_input(durable *d, const char *wf, const char *input)
{
    durable_run_request req = { .workflow = wf, .input_json = input };
    durable_error err = { 0 };
    char *run = NULL;

    if (durable_run_start(d, &req, &run, NULL, &err) != DURABLE_OK)
        fail_msg("start: %s", err.msg);
    return run;
}

static char *status_of(durable *d, const char *run)
{
    json_t *j = get_run(d, run);
    char *s = xstrdup(json_string_value(json_object_get(j, "status")));

    json_decref(j);
    return s;
}

/* Waits (up to 60 s) until the run has the status. */
static void wait_status(durable *d, const char *run, const char *want)
{
    for (int i = 0; i < 6000; i++) {
        char *s = status_of(d, run);
        bool ok = strcmp(s, want) == 0;
        free(s);
        if (ok)
            return;
        pause_ms(10);
    }
    {
        json_t *j = get_run(d, run);
        char *text = json_dumps(j, JSON_COMPACT);
        print_error("%s\n", text);
        free(text);
        json_decref(j);
    }
    fail_msg("run %s never became %s", run, want);
}

/* The held run's `waiting` says: concurrency, key, 1 of 1 in use. A run
 * just started is held once the scheduler has taken it in: polled. */
static void assert_held(durable *d, const char *run, const char *key)
{
    json_t *j = get_run(d, run);
    json_t *w = json_object_get(j, "waiting");
    char msg[128];

    for (int i = 0; i < 6000 && !w; i++) {
        json_decref(j);
        pause_ms(10);
        j = get_run(d, run);
        w = json_object_get(j, "waiting");
    }
    assert_string_equal("pending", json_string_value(json_object_get(j, "status")));
    assert_non_null(w);
    assert_string_equal("concurrency", json_string_value(json_object_get(w, "reason")));
    assert_string_equal(key, json_string_value(json_object_get(w, "key")));
    assert_int_equal(1, json_integer_value(json_object_get(w, "in_use")));
    assert_int_equal(1, json_integer_value(json_object_get(w, "limit")));
    snprintf(msg, sizeof(msg), "waiting for concurrency key %s, 1 of 1 in use", key);
    assert_string_equal(msg, json_string_value(json_object_get(w, "message")));
    json_decref(j);
}

static void approve(durable *d, const char *run)
{
    durable_error err = { 0 };

    if (durable_step_decide(d, run, "ok", true, "test", NULL, &err) != DURABLE_OK)
        fail_msg("approve %s: %s", run, err.msg);
}

static const char per_customer[] =
        "{\"name\":\"per_customer\",\"concurrency\":{\"key\":\".input.customer_id\",\"limit\":1},"
        "\"steps\":[{\"id\":\"ok\",\"type\":\"approval\"}]}";

static void test_one_per_key_across_restart(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, per_customer);
    char *a = start_input(f->d, wf, "{\"customer_id\":\"customer-7\"}");
    char *b = start_input(f->d, wf, "{\"customer_id\":\"customer-7\"}");
    char *c = start_input(f->d, wf, "{\"customer_id\":\"customer-7\"}");
    char *other = start_input(f->d, wf, "{\"customer_id\":\"customer-8\"}");
    json_t *j;

    wait_status(f->d, a, "waiting");
    wait_status(f->d, other, "waiting"); /* another key: not held */
    assert_held(f->d, b, "customer-7");
    assert_held(f->d, c, "customer-7");

    /* The listing says it too. */
    {
        durable_error err = { 0 };
        char *text = NULL;
        size_t i, n_waiting = 0;
        json_t *list, *r;
        durable_run_filter filter = { .limit = 50 };
        assert_int_equal(DURABLE_OK, durable_runs_list(f->d, &filter, &text, NULL, &err));
        list = json_loads(text, 0, NULL);
        durable_free(text);
        json_array_foreach(list, i, r)
        {
            if (json_object_get(r, "waiting"))
                n_waiting++;
        }
        assert_int_equal(2, n_waiting);
        json_decref(list);
    }

    approve(f->d, a);
    assert_string_equal("completed", wait_run(f->d, a));
    wait_status(f->d, b, "waiting"); /* the older one next */
    assert_held(f->d, c, "customer-7");

    /* A restart: b executes, c is held again. */
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    pause_ms(300);
    assert_held(f->d, c, "customer-7");
    j = get_run(f->d, b);
    assert_string_equal("waiting", json_string_value(json_object_get(j, "status")));
    assert_null(json_object_get(j, "waiting"));
    json_decref(j);

    approve(f->d, b);
    assert_string_equal("completed", wait_run(f->d, b));
    wait_status(f->d, c, "waiting");
    approve(f->d, c);
    assert_string_equal("completed", wait_run(f->d, c));
    approve(f->d, other);
    assert_string_equal("completed", wait_run(f->d, other));
    j = get_run(f->d, c);
    assert_null(json_object_get(j, "waiting"));
    json_decref(j);
    durable_free(wf);
    durable_free(a);
    durable_free(b);
    durable_free(c);
    durable_free(other);
}

/* A held run cancelled leaves the queue; the next one goes on. */
static void test_held_run_cancelled(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf = reg(f->d, per_customer);
    char *a = start_input(f->d, wf, "{\"customer_id\":7}");
    char *b = start_input(f->d, wf, "{\"customer_id\":7}");
    char *c = start_input(f->d, wf, "{\"customer_id\":7}");

    wait_status(f->d, a, "waiting");
    assert_held(f->d, b, "7"); /* a number's key is its JSON text */
    assert_int_equal(DURABLE_OK, durable_run_cancel(f->d, b, &err));
    assert_string_equal("cancelled", wait_run(f->d, b));
    approve(f->d, a);
    wait_status(f->d, c, "waiting");
    approve(f->d, c);
    assert_string_equal("completed", wait_run(f->d, c));
    durable_free(wf);
    durable_free(a);
    durable_free(b);
    durable_free(c);
}

/* A higher priority starts first, also after a restart (it is stored);
 * a priority out of range is refused. */
static void test_priority_across_restart(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *wf = reg(f->d, per_customer);
    char *a = start_input(f->d, wf, "{\"customer_id\":\"c\"}");
    durable_run_request req = { .workflow = wf, .input_json = "{\"customer_id\":\"c\"}" };
    char *low = NULL, *high = NULL, *bad = NULL;
    json_t *j;

    wait_status(f->d, a, "waiting"); /* else `high` could go before it too */
    low = start_input(f->d, wf, "{\"customer_id\":\"c\"}");

    req.priority = 5;
    assert_int_equal(DURABLE_OK, durable_run_start(f->d, &req, &high, NULL, &err));
    req.priority = DURABLE_PRIORITY_MAX + 1;
    assert_int_equal(DURABLE_EINVAL, durable_run_start(f->d, &req, &bad, NULL, &err));
    assert_non_null(strstr(err.msg, "priority must be an integer from -1000000 to 1000000"));
    assert_held(f->d, low, "c");
    assert_held(f->d, high, "c");
    j = get_run(f->d, high);
    assert_int_equal(5, json_integer_value(json_object_get(j, "priority")));
    json_decref(j);

    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    approve(f->d, a);
    wait_status(f->d, high, "waiting"); /* created later, started first */
    assert_held(f->d, low, "c");
    approve(f->d, high);
    wait_status(f->d, low, "waiting");
    approve(f->d, low);
    assert_string_equal("completed", wait_run(f->d, low));
    durable_free(wf);
    durable_free(a);
    durable_free(low);
    durable_free(high);
}

static int64_t ms_of(json_t *run, const char *field)
{
    int64_t ms = 0;

    assert_true(clock_parse_rfc3339(json_string_value(json_object_get(run, field)), &ms));
    return ms;
}

/* `limit: 2` without a key: of 6 runs, never more than 2 between their
 * start and their end. */
static void test_whole_workflow_limit(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"two\",\"concurrency\":{\"limit\":2},"
                         "\"steps\":[{\"id\":\"t\",\"type\":\"task\","
                         "\"config\":{\"duration_seconds\":0.2}}]}");
    char *runs[6];
    int64_t from[6], to[6];

    for (int i = 0; i < 6; i++)
        runs[i] = start_input(f->d, wf, "{}");
    for (int i = 0; i < 6; i++) {
        json_t *j;
        assert_string_equal("completed", wait_run(f->d, runs[i]));
        j = get_run(f->d, runs[i]);
        from[i] = ms_of(j, "started_at");
        to[i] = ms_of(j, "completed_at");
        json_decref(j);
    }
    for (int i = 0; i < 6; i++) {
        int n = 0;
        for (int k = 0; k < 6; k++) {
            if (from[k] <= from[i] && from[i] < to[k])
                n++;
        }
        assert_true(n <= 2);
        durable_free(runs[i]);
    }
    durable_free(wf);
}

/* `rate_limit: {per_second: 5}`: 6 runs' steps start at least 200 ms
 * apart (about 1 s from the first to the last: the places are 200 ms apart
 * from the first's, and the first step starts once its place is committed,
 * up to a commit after it - 100 ms allowed, the rest a loaded machine only
 * makes longer), and a step waiting for its place says so (`waiting` on
 * the step). */
static void test_step_rate_limit(void **state)
{
    struct fixture *f = *state;
    char *wf = reg(f->d, "{\"name\":\"rated\",\"steps\":[{\"id\":\"t\",\"type\":\"task\","
                         "\"rate_limit\":{\"per_second\":5},"
                         "\"config\":{\"duration_seconds\":0}}]}");
    char *runs[6];
    int64_t first = 0, last = 0;
    bool seen = false;

    for (int i = 0; i < 6; i++)
        runs[i] = start_input(f->d, wf, "{}");
    for (int i = 0; i < 6 && !seen; i++) {
        json_t *j = get_run(f->d, runs[5]);
        json_t *w = json_object_get(step_of(j, "t"), "waiting");
        if (w) {
            assert_string_equal("rate_limit", json_string_value(json_object_get(w, "reason")));
            assert_string_equal("waiting for the rate limit of step t, 5 per second",
                                json_string_value(json_object_get(w, "message")));
            seen = true;
        }
        json_decref(j);
        pause_ms(20);
    }
    for (int i = 0; i < 6; i++) {
        json_t *j;
        int64_t at;
        assert_string_equal("completed", wait_run(f->d, runs[i]));
        j = get_run(f->d, runs[i]);
        at = ms_of(step_of(j, "t"), "started_at");
        first = i == 0 || at < first ? at : first;
        last = at > last ? at : last;
        assert_null(json_object_get(step_of(j, "t"), "waiting"));
        json_decref(j);
        durable_free(runs[i]);
    }
    assert_true(seen);
    assert_true(last - first >= 900);
    durable_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_per_key_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_run_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_workflow_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priority_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_rate_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
