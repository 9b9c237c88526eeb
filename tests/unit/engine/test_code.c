/*
 * test_code.c - code-first workflows through the public API: a step's
 * result is recorded and returned without running again when the function
 * is executed again (after a failure and a retry, and after a restart, on
 * registration); a loop's steps get the ids name, name#2, ...; a function
 * whose calls no longer match the history stops with nondeterminism and
 * runs nothing, and a retry with the original code completes the run; a run
 * whose function is not registered waits; parallel steps get their ids in
 * call order whatever order they finish in; a durable sleep unwinds and the
 * function runs again when it is over, also after a restart; durable_now
 * and durable_random return their recorded values after a restart; a step
 * with a retry policy is tried again after its backoff (also across a
 * restart) and fails with its last error when its attempts run out; a step
 * that answers at once commits its start with its completion; a child
 * workflow is waited for without a thread and found again by its key after
 * a restart, its failure fails the parent's step, and a retry of the parent
 * retries the child.
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

/* How often each step function ran, and how the workflows behave. Set by
 * the test before a run, read by the workflow threads meanwhile: the test
 * waits for the run (a commit) in between, which orders the accesses. */
static int calls_a, calls_b, calls_item;
static int fail_after_a; /* the workflow fails once after step a */
static int stop_after_a; /* the workflow returns DURABLE_ECLOSED after a (a "crash") */
static int swapped;
static int fail_b;                                 /* step b fails */
static int skip_b; /* the workflow ends after a */ /* the workflow calls b before a */
static char b_arg[] = "x";

static durable_code step_a(const durable_step_info *info, void *arg, char **out, durable_error *err)
{
    (void)arg;
    (void)err;
    calls_a++;
    assert_string_equal(info->step_id, "a");
    *out = strdup("{\"a\":1}");
    return DURABLE_OK;
}

static durable_code step_b(const durable_step_info *info, void *arg, char **out, durable_error *err)
{
    char buf[160];

    calls_b++;
    if (fail_b)
        return err_set(err, DURABLE_ESTEP, "b refuses");
    snprintf(buf, sizeof(buf), "{\"b\":\"%s\",\"key\":\"%s\"}", (const char *)arg,
             info->idempotency_key);
    *out = strdup(buf);
    return DURABLE_OK;
}

static durable_code two_steps(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    char *a = NULL;

    (void)input;
    if (swapped)
        DURABLE_TRY(durable_step(ctx, "b", step_b, b_arg, NULL, err));
    DURABLE_TRY(durable_step(ctx, "a", step_a, NULL, &a, err));
    assert_string_equal(a, "{\"a\":1}");
    durable_free(a);
    if (fail_after_a) {
        fail_after_a = 0;
        return err_set(err, DURABLE_EINVAL, "failing once after a");
    }
    if (stop_after_a)
        return DURABLE_ECLOSED;
    if (skip_b) {
        *out = strdup("{}");
        return DURABLE_OK;
    }
    if (!swapped)
        DURABLE_TRY(durable_step(ctx, "b", step_b, b_arg, out, err));
    else
        *out = strdup("{\"swapped\":true}");
    return DURABLE_OK;
}

static durable_code step_item(const durable_step_info *info, void *arg, char **out,
                              durable_error *err)
{
    char buf[64];

    (void)err;
    calls_item++;
    snprintf(buf, sizeof(buf), "{\"i\":%d,\"id\":\"%s\"}", *(int *)arg, info->step_id);
    *out = strdup(buf);
    return DURABLE_OK;
}

static durable_code loop(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    for (int i = 0; i < 5; i++)
        DURABLE_TRY(durable_step(ctx, "item", step_item, &i, NULL, err));
    *out = NULL;
    return DURABLE_OK;
}

static atomic_int calls_par;

/* Sleeps *arg ms, so that later calls finish first. */
static durable_code slow_step(const durable_step_info *info, void *arg, char **out,
                              durable_error *err)
{
    struct timespec ts = { 0, *(int *)arg * 1000000L };
    char buf[96];

    (void)err;
    nanosleep(&ts, NULL);
    atomic_fetch_add(&calls_par, 1);
    snprintf(buf, sizeof(buf), "{\"id\":\"%s\"}", info->step_id);
    *out = strdup(buf);
    return DURABLE_OK;
}

/* Three async steps finishing in reverse order, then one in line. */
static durable_code parallel(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    static int ms[3] = { 80, 40, 5 };
    durable_future *f[3];
    char *o[3] = { NULL, NULL, NULL }, buf[256];
    int last = 3;

    (void)input;
    for (int i = 0; i < 3; i++)
        DURABLE_TRY(durable_step_async(ctx, "p", slow_step, &ms[i], &f[i], err));
    DURABLE_TRY(durable_wait_all(ctx, f, 3, err));
    for (int i = 0; i < 3; i++)
        DURABLE_TRY(durable_future_get(f[i], &o[i], err));
    snprintf(buf, sizeof(buf), "[%s,%s,%s]", o[0], o[1], o[2]);
    for (int i = 0; i < 3; i++)
        durable_free(o[i]);
    if (fail_after_a) {
        fail_after_a = 0;
        return err_set(err, DURABLE_EINVAL, "failing once after the parallel steps");
    }
    DURABLE_TRY(durable_step(ctx, "after", step_item, &last, NULL, err));
    *out = strdup(buf);
    return DURABLE_OK;
}

static atomic_int invocations;

/* a, a 300 ms sleep, b: executed twice (before and after the sleep). */
static durable_code sleepy(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    atomic_fetch_add(&invocations, 1);
    DURABLE_TRY(durable_step(ctx, "a", step_a, NULL, NULL, err));
    DURABLE_TRY(durable_sleep(ctx, "nap", 300, err));
    DURABLE_TRY(durable_step(ctx, "b", step_b, b_arg, out, err));
    return DURABLE_OK;
}

/* 1,000 steps "n"; with stop_after_a it "crashes" after the 500th. */
static durable_code long_loop(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    for (int i = 0; i < 1000; i++) {
        DURABLE_TRY(durable_step(ctx, "n", step_item, &i, NULL, err));
        if (stop_after_a && i == 499)
            return DURABLE_ECLOSED;
    }
    *out = NULL;
    return DURABLE_OK;
}

/* Each execution's recorded now and random; stop_after_a "crashes" after
 * them the first time. */
static int64_t seen_now[4];
static uint64_t seen_rand[4];
static int n_seen;

static durable_code clocky(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    int64_t now = 0;
    uint64_t r = 0, r2 = 0;
    char buf[96];

    (void)input;
    DURABLE_TRY(durable_now(ctx, &now, err));
    DURABLE_TRY(durable_random(ctx, &r, err));
    DURABLE_TRY(durable_random(ctx, &r2, err));
    if (n_seen < 4) {
        seen_now[n_seen] = now;
        seen_rand[n_seen++] = r;
    }
    if (stop_after_a)
        return DURABLE_ECLOSED;
    DURABLE_TRY(durable_step(ctx, "a", step_a, NULL, NULL, err));
    snprintf(buf, sizeof(buf), "{\"differ\":%s}", r != r2 ? "true" : "false");
    *out = strdup(buf);
    return DURABLE_OK;
}

/* Fails until its call number reaches flaky_ok (0: always), and records
 * the attempt and key each call saw. */
static atomic_int calls_flaky;
static int flaky_ok;
static int flaky_attempts[8];
static char flaky_key[160];

static durable_code flaky_step(const durable_step_info *info, void *arg, char **out,
                               durable_error *err)
{
    int n = atomic_fetch_add(&calls_flaky, 1) + 1;

    (void)arg;
    if (n <= 8)
        flaky_attempts[n - 1] = info->attempt;
    if (n > 1 && strcmp(flaky_key, info->idempotency_key) != 0)
        return err_set(err, DURABLE_ESTEP, "the key changed");
    snprintf(flaky_key, sizeof(flaky_key), "%s", info->idempotency_key);
    if (flaky_ok == 0 || n < flaky_ok)
        return err_set(err, DURABLE_ESTEP, "flaky call %d fails", n);
    *out = strdup("{\"ok\":true}");
    return DURABLE_OK;
}

static durable_step_opts flaky_opts;

static durable_code retrying(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    atomic_fetch_add(&invocations, 1);
    DURABLE_TRY(durable_step_ex(ctx, "flaky", flaky_step, NULL, &flaky_opts, out, err));
    return DURABLE_OK;
}

/* The same step as an async one beside a step without a policy. */
static durable_code retrying_async(durable_ctx *ctx, const char *input, char **out,
                                   durable_error *err)
{
    durable_future *f[2];
    int one = 1;

    (void)input;
    DURABLE_TRY(durable_step_async_ex(ctx, "flaky", flaky_step, NULL, &flaky_opts, &f[0], err));
    DURABLE_TRY(durable_step_async(ctx, "item", step_item, &one, &f[1], err));
    DURABLE_TRY(durable_wait_all(ctx, f, 2, err));
    DURABLE_TRY(durable_future_get(f[0], out, err));
    return DURABLE_OK;
}

/* The child: one step, then (with kid_stop) a "crash" before it ends,
 * or (with kid_fail) a failure. */
static atomic_int calls_kid, kid_stop, kid_fail;

static durable_code kid_step(const durable_step_info *info, void *arg, char **out,
                             durable_error *err)
{
    (void)info;
    (void)arg;
    (void)err;
    atomic_fetch_add(&calls_kid, 1);
    *out = strdup("{\"kid\":7}");
    return DURABLE_OK;
}

static durable_code kid(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    DURABLE_TRY(durable_step(ctx, "k", kid_step, NULL, out, err));
    if (atomic_load(&kid_stop))
        return DURABLE_ECLOSED;
    if (atomic_load(&kid_fail))
        return err_set(err, DURABLE_EINVAL, "the kid refuses");
    return DURABLE_OK;
}

/* Calls a child of a workflow nobody defined. */
static durable_code orphan(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    (void)input;
    DURABLE_TRY(durable_child(ctx, "nosuch", NULL, NULL, out, err));
    return DURABLE_OK;
}

/* Calls a code-first child, then a JSON one. */
static durable_code parent(durable_ctx *ctx, const char *input, char **out, durable_error *err)
{
    char *k = NULL, *j = NULL, buf[256];
    durable_code rc;

    (void)input;
    atomic_fetch_add(&invocations, 1);
    DURABLE_TRY(durable_child(ctx, "kid", NULL, "{\"x\":1}", &k, err));
    rc = durable_child(ctx, "jkid", "jk-1", "{\"n\":21}", &j, err);
    if (rc != DURABLE_OK) { /* suspended until jkid ends: k is read again then */
        durable_free(k);
        return rc;
    }
    snprintf(buf, sizeof(buf), "{\"kid\":%s,\"jkid\":%s}", k, j);
    durable_free(k);
    durable_free(j);
    *out = strdup(buf);
    return DURABLE_OK;
}

static void reset(void)
{
    calls_a = calls_b = calls_item = 0;
    atomic_store(&calls_par, 0);
    atomic_store(&invocations, 0);
    fail_after_a = stop_after_a = swapped = fail_b = skip_b = 0;
    n_seen = 0;
    atomic_store(&calls_flaky, 0);
    flaky_ok = 0;
    memset(flaky_attempts, 0, sizeof(flaky_attempts));
    flaky_key[0] = '\0';
    atomic_store(&calls_kid, 0);
    atomic_store(&kid_stop, 0);
    atomic_store(&kid_fail, 0);
    flaky_opts = (durable_step_opts){ .max_attempts = 3, .initial_backoff_ms = 20 };
}

static char *code_start(durable *d, const char *name, const char *key)
{
    durable_error err = { 0 };
    char *run = NULL;

    if (durable_start(d, name, key, "{\"who\":\"ann\"}", &run, &err) != DURABLE_OK)
        fail_msg("start: %s", err.msg);
    return run;
}

static void test_memoized_after_retry(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *run;
    json_t *doc;

    reset();
    fail_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "two", "k1");
    assert_string_equal(wait_run(f->d, run), "failed");
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 0);
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_a, 1); /* recorded: not run again */
    assert_int_equal(calls_b, 1);
    doc = get_run(f->d, run);
    assert_int_equal(json_array_size(json_object_get(doc, "steps")), 2);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "a"), "type")), "code");
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "b"), "status")),
                        "completed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "output"), "b")),
                        "x");
    json_decref(doc);
    /* the same key returns the same run, completed: nothing runs */
    {
        char *again = code_start(f->d, "two", "k1");
        assert_string_equal(again, run);
        durable_free(again);
    }
    assert_int_equal(calls_b, 1);
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_ECONFLICT);
    durable_free(run);
}

/* The function "crashes" after a (returns DURABLE_ECLOSED: the run stays
 * unfinished); the engine is reopened without the function (the run
 * waits), then the function is registered and the run resumes, a not run
 * again. */
static void test_resumed_on_registration(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    char *run;
    json_t *doc;

    reset();
    stop_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "two", "k2");
    assert_int_equal(durable_run_wait(f->d, run, 300, &status, &err), DURABLE_ETIMEOUT);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    err = (durable_error){ 0 };
    assert_int_equal(durable_run_wait(f->d, run, 300, &status, &err), DURABLE_ETIMEOUT);
    doc = get_run(f->d, run);
    assert_string_not_equal(json_string_value(json_object_get(doc, "status")), "failed");
    json_decref(doc);
    stop_after_a = 0;
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 1);
    doc = get_run(f->d, run);
    assert_non_null(strstr(
            json_string_value(json_object_get(json_object_get(doc, "output"), "key")), "/b"));
    json_decref(doc);
    durable_free(run);
}

static void test_loop_ids(void **state)
{
    static const char *const ids[] = { "item", "item#2", "item#3", "item#4", "item#5" };
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *steps;
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "loop", 1, loop, NULL, &err), DURABLE_OK);
    run = code_start(f->d, "loop", NULL);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_item, 5);
    doc = get_run(f->d, run);
    steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 5);
    for (size_t i = 0; i < 5; i++) {
        json_t *st = json_array_get(steps, i);
        assert_string_equal(json_string_value(json_object_get(st, "step_id")), ids[i]);
        assert_string_equal(json_string_value(json_object_get(json_object_get(st, "output"), "id")),
                            ids[i]);
    }
    json_decref(doc);
    durable_free(run);
}

static void test_nondeterminism(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *msg;
    char *run;
    json_t *doc;

    reset();
    fail_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "two", "k3");
    assert_string_equal(wait_run(f->d, run), "failed");
    /* the code changes: b first */
    swapped = 1;
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "failed");
    assert_int_equal(calls_b, 0); /* no step ran */
    doc = get_run(f->d, run);
    msg = json_string_value(json_object_get(doc, "error_message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "nondeterminism: step 1 of run"));
    assert_non_null(strstr(msg, "is \"b\" in the code but \"a\" in the history"));
    json_decref(doc);
    /* the code is fixed: a retry completes it */
    swapped = 0;
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 1);
    durable_free(run);
}

/* Ids and positions follow the calls, not the finishing order; after a
 * failure and a retry the recorded outputs come back, nothing runs again. */
static void test_parallel(void **state)
{
    static const char *const ids[] = { "p", "p#2", "p#3", "after" };
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *steps, *deps;
    char *run, *out;

    reset();
    fail_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "par", 1, parallel, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "par", NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    assert_int_equal(atomic_load(&calls_par), 3);
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_par), 3);
    doc = get_run(f->d, run);
    steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(json_string_value(json_object_get(json_array_get(steps, i), "step_id")),
                            ids[i]);
    }
    deps = json_object_get(step_of(doc, "after"), "depends_on");
    assert_int_equal(json_array_size(deps), 3);
    out = json_dumps(json_object_get(doc, "output"), JSON_COMPACT);
    assert_string_equal(out, "[{\"id\":\"p\"},{\"id\":\"p#2\"},{\"id\":\"p#3\"}]");
    free(out);
    json_decref(doc);
    durable_free(run);
}

/* The sleep unwinds (the run waits, no invocation under way), the function
 * runs again at the wake-up time, a not run again; and a sleep survives a
 * restart with its recorded wake-up time. */
static void test_sleep(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    json_t *doc;
    char *run;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "sleepy", 1, sleepy, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "sleepy", "s1");
    assert_int_equal(durable_run_wait(f->d, run, 100, &status, &err), DURABLE_ETIMEOUT);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "waiting");
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "nap"), "status")),
                        "waiting");
    json_decref(doc);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&invocations), 2);
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 1);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "nap"), "type")), "sleep");
    assert_non_null(json_object_get(json_object_get(step_of(doc, "nap"), "output"), "woke_at"));
    json_decref(doc);
    durable_free(run);

    /* a restart during the sleep */
    reset();
    run = code_start(f->d, "sleepy", "s2");
    err = (durable_error){ 0 };
    assert_int_equal(durable_run_wait(f->d, run, 100, &status, &err), DURABLE_ETIMEOUT);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    assert_int_equal(durable_workflow_fn_register(f->d, "sleepy", 1, sleepy, NULL, &err),
                     DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 1);
    durable_free(run);
}

/* A loop of 1,000 steps stopped in the middle, resumed after a restart:
 * every step ran once, the last is n#1000. */
static void test_long_loop_resumed(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    json_t *doc, *steps;
    size_t n = 0;
    char *run;

    reset();
    stop_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "long", 1, long_loop, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "long", NULL);
    for (int tries = 0; tries < 600; tries++) {
        doc = get_run(f->d, run);
        n = json_array_size(json_object_get(doc, "steps"));
        json_decref(doc);
        if (n == 500)
            break;
        assert_int_equal(durable_run_wait(f->d, run, 50, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    assert_int_equal(n, 500);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    stop_after_a = 0;
    assert_int_equal(durable_workflow_fn_register(f->d, "long", 1, long_loop, NULL, &err),
                     DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(calls_item, 1000);
    doc = get_run(f->d, run);
    steps = json_object_get(doc, "steps");
    assert_int_equal(json_array_size(steps), 1000);
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 999), "step_id")),
                        "n#1000");
    json_decref(doc);
    durable_free(run);
}

/* The code ends while the history goes on: b failed (recorded), then the
 * code no longer calls b. */
static void test_nondeterminism_early_end(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *msg;
    char *run;
    json_t *doc;

    reset();
    fail_b = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "two", 1, two_steps, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "two", "k4");
    assert_string_equal(wait_run(f->d, run), "failed");
    skip_b = 1;
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    msg = json_string_value(json_object_get(doc, "error_message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "ended after 1 steps in the code but the history has \"b\""));
    json_decref(doc);
    assert_int_equal(calls_a, 1);
    assert_int_equal(calls_b, 1);
    durable_free(run);
}

/* now and random are recorded: after a "crash" and a restart the second
 * execution sees the values of the first. */
static void test_now_random_recorded(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    struct timespec ts = { 0, 20 * 1000000L };
    size_t n = 0;
    json_t *doc;
    char *run;

    reset();
    stop_after_a = 1;
    assert_int_equal(durable_workflow_fn_register(f->d, "clocky", 1, clocky, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "clocky", NULL);
    for (int tries = 0; tries < 600; tries++) { /* until the three values are recorded */
        doc = get_run(f->d, run);
        n = json_array_size(json_object_get(doc, "steps"));
        json_decref(doc);
        if (n == 3)
            break;
        assert_int_equal(durable_run_wait(f->d, run, 20, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    durable_close(f->d); /* joins the workflow threads: n_seen is read after */
    assert_int_equal(n, 3);
    assert_int_equal(n_seen, 1);
    nanosleep(&ts, NULL); /* the clock moves on */
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    stop_after_a = 0;
    assert_int_equal(durable_workflow_fn_register(f->d, "clocky", 1, clocky, NULL, &err),
                     DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(n_seen, 2);
    assert_true(seen_now[0] > 0);
    assert_true(seen_now[1] == seen_now[0]);
    assert_true(seen_rand[1] == seen_rand[0]);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "now"), "type")), "now");
    assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(step_of(doc, "now"), "output"), "value")),
                     seen_now[0]);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "random#2"), "type")),
                        "random");
    assert_true(json_is_true(json_object_get(json_object_get(doc, "output"), "differ")));
    assert_int_equal(json_array_size(json_object_get(doc, "steps")), 4);
    json_decref(doc);
    durable_free(run);
}

/* Fails twice, then succeeds: three attempts under one key, each failure
 * recorded with a retry_scheduled event, the function executed again after
 * each backoff. */
static void test_retry_policy(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *events, *st;
    char *run;

    reset();
    flaky_ok = 3;
    assert_int_equal(durable_workflow_fn_register(f->d, "retrying", 1, retrying, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "retrying", NULL);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_flaky), 3);
    assert_int_equal(flaky_attempts[0], 1);
    assert_int_equal(flaky_attempts[1], 2);
    assert_int_equal(flaky_attempts[2], 3);
    assert_int_equal(atomic_load(&invocations), 3);
    doc = get_run(f->d, run);
    st = step_of(doc, "flaky");
    assert_int_equal(json_integer_value(json_object_get(st, "attempt")), 3);
    assert_string_equal(json_string_value(json_object_get(st, "status")), "completed");
    assert_int_equal(json_integer_value(json_object_get(st, "max_attempts")), 3);
    json_decref(doc);
    events = get_events(f->d, run);
    assert_int_equal(count_events(events, "retry_scheduled", "flaky"), 2);
    assert_int_equal(count_events(events, "step_started", "flaky"), 3);
    json_decref(events);
    durable_free(run);
}

/* Every attempt fails: the run fails with the step's last error; an async
 * step with the same policy does too. */
static void test_retry_exhausted(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *msg;
    json_t *doc;
    char *run;

    reset();
    flaky_opts.max_attempts = 2;
    assert_int_equal(durable_workflow_fn_register(f->d, "retrying", 1, retrying, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "retrying", NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    assert_int_equal(atomic_load(&calls_flaky), 2);
    doc = get_run(f->d, run);
    msg = json_string_value(json_object_get(doc, "error_message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "step \"flaky\" failed: flaky call 2 fails"));
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "flaky"), "status")),
                        "failed");
    assert_int_equal(json_integer_value(json_object_get(step_of(doc, "flaky"), "attempt")), 2);
    json_decref(doc);
    durable_free(run);

    reset();
    flaky_ok = 2;
    assert_int_equal(
            durable_workflow_fn_register(f->d, "retrying_async", 1, retrying_async, NULL, &err),
            DURABLE_OK);
    run = code_start(f->d, "retrying_async", NULL);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_flaky), 2);
    assert_int_equal(calls_item, 1); /* recorded: not run again after the backoff */
    doc = get_run(f->d, run);
    assert_int_equal(json_integer_value(json_object_get(step_of(doc, "flaky"), "attempt")), 2);
    assert_true(json_is_true(json_object_get(json_object_get(doc, "output"), "ok")));
    json_decref(doc);
    durable_free(run);

    reset();
    flaky_opts.backoff_factor = 0.5; /* refused */
    run = code_start(f->d, "retrying", NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    assert_int_equal(atomic_load(&calls_flaky), 0);
    doc = get_run(f->d, run);
    assert_non_null(
            strstr(json_string_value(json_object_get(doc, "error_message")), "backoff_factor"));
    json_decref(doc);
    durable_free(run);
}

/* A restart during the backoff: the wait goes on from its recorded
 * wake-up time and the next attempt runs under the same key. */
static void test_retry_resumed(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    json_t *doc;
    char *run;

    reset();
    flaky_ok = 2;
    flaky_opts.initial_backoff_ms = 2000; /* longer than the restart below */
    assert_int_equal(durable_workflow_fn_register(f->d, "retrying", 1, retrying, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "retrying", NULL);
    for (int tries = 0; tries < 600 && atomic_load(&calls_flaky) < 1; tries++) {
        assert_int_equal(durable_run_wait(f->d, run, 10, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    durable_close(f->d);
    assert_int_equal(atomic_load(&calls_flaky), 1);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "flaky"), "status")),
                        "retrying");
    json_decref(doc);
    assert_int_equal(durable_workflow_fn_register(f->d, "retrying", 1, retrying, NULL, &err),
                     DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_flaky), 2);
    assert_int_equal(flaky_attempts[1], 2);
    durable_free(run);
}

/* The number of runs of workflow `name`. */
static int64_t runs_of(durable *d, const char *name)
{
    durable_run_filter rf = { .workflow_id = name };
    durable_error err = { 0 };
    int64_t total = -1;
    char *list = NULL;

    assert_int_equal(durable_runs_list(d, &rf, &list, &total, &err), DURABLE_OK);
    durable_free(list);
    return total;
}

/* A parent waits for a code-first child that "crashes" (the process closes
 * between the child's start and its end), then for a JSON child: after the
 * restart the parent finds the same child, which resumes and wakes it. */
static void test_child(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    bool is_waiting = false;
    json_t *doc;
    char *run, *out;

    reset();
    atomic_store(&kid_stop, 1);
    free(reg(f->d, "{\"name\":\"jkid\",\"steps\":[{\"id\":\"x\",\"type\":\"transform\","
                   "\"config\":{\"expression\":\".input.n * 2\"}}]}"));
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    assert_int_equal(durable_workflow_fn_register(f->d, "parent", 1, parent, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "parent", "p1");
    for (int tries = 0; tries < 600; tries++) { /* until the parent waits, the kid ran */
        doc = get_run(f->d, run);
        is_waiting = strcmp(json_string_value(json_object_get(doc, "status")), "waiting") == 0;
        json_decref(doc);
        if (is_waiting && atomic_load(&calls_kid) >= 1)
            break;
        assert_int_equal(durable_run_wait(f->d, run, 10, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "waiting");
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "kid"), "status")),
                        "waiting");
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "kid"), "type")), "child");
    json_decref(doc);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    atomic_store(&kid_stop, 0);
    assert_int_equal(durable_workflow_fn_register(f->d, "parent", 1, parent, NULL, &err),
                     DURABLE_OK);
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_kid), 1); /* recorded in the child, not run again */
    assert_int_equal(runs_of(f->d, "kid"), 1);
    assert_int_equal(runs_of(f->d, "jkid"), 1);
    doc = get_run(f->d, run);
    out = json_dumps(json_object_get(json_object_get(doc, "output"), "kid"), JSON_COMPACT);
    assert_string_equal(out, "{\"kid\":7}");
    free(out);
    out = json_dumps(json_object_get(json_object_get(doc, "output"), "jkid"), JSON_COMPACT);
    assert_non_null(strstr(out, "42"));
    free(out);
    json_decref(doc);
    durable_free(run);
}

/* A failed child fails the parent's step; a retry of the parent retries
 * the child (the same run), which then completes. */
static void test_child_failed(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *msg;
    json_t *doc;
    char *run;

    reset();
    atomic_store(&kid_fail, 1);
    free(reg(f->d, "{\"name\":\"jkid\",\"steps\":[{\"id\":\"x\",\"type\":\"transform\","
                   "\"config\":{\"expression\":\".input.n * 2\"}}]}"));
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    assert_int_equal(durable_workflow_fn_register(f->d, "parent", 1, parent, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "parent", "p2");
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    msg = json_string_value(json_object_get(doc, "error_message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "step \"kid\" failed: child run "));
    assert_non_null(strstr(msg, "failed: the kid refuses"));
    json_decref(doc);
    atomic_store(&kid_fail, 0);
    assert_int_equal(durable_run_retry(f->d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(runs_of(f->d, "kid"), 1);
    assert_int_equal(atomic_load(&calls_kid), 1);
    durable_free(run);

    /* a child of an unknown workflow: the step fails, saying so */
    assert_int_equal(durable_workflow_fn_register(f->d, "orphan", 1, orphan, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "orphan", NULL);
    assert_string_equal(wait_run(f->d, run), "failed");
    doc = get_run(f->d, run);
    assert_string_equal(json_string_value(json_object_get(step_of(doc, "nosuch"), "status")),
                        "failed");
    msg = json_string_value(json_object_get(doc, "error_message"));
    assert_non_null(strstr(msg, "could not start the child run"));
    assert_non_null(strstr(msg, "nosuch"));
    json_decref(doc);
    durable_free(run);
}

/* answers_at_once: a step's start commits with its completion (one
 * transition, both events); a failed attempt commits its start, then its
 * retry, and the next attempt completes. */
static void test_answers_at_once(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc, *events;
    char *run;

    reset();
    flaky_ok = 2;
    flaky_opts.answers_at_once = true;
    assert_int_equal(durable_workflow_fn_register(f->d, "retrying", 1, retrying, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "retrying", NULL);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_flaky), 2);
    doc = get_run(f->d, run);
    assert_int_equal(json_integer_value(json_object_get(step_of(doc, "flaky"), "attempt")), 2);
    assert_non_null(json_object_get(step_of(doc, "flaky"), "started_at"));
    json_decref(doc);
    events = get_events(f->d, run);
    assert_int_equal(count_events(events, "step_started", "flaky"), 2);
    assert_int_equal(count_events(events, "retry_scheduled", "flaky"), 1);
    assert_int_equal(count_events(events, "step_completed", "flaky"), 1);
    json_decref(events);
    durable_free(run);
}

static void test_refusals(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };

    assert_int_equal(durable_workflow_fn_register(f->d, "bad name", 1, loop, NULL, &err),
                     DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_workflow_fn_register(f->d, "loop", 0, loop, NULL, &err),
                     DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_step(NULL, "x", step_a, NULL, NULL, &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_step_ex(NULL, "x", step_a, NULL, NULL, NULL, &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_now(NULL, NULL, &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_random(NULL, NULL, &err), DURABLE_EINVAL);
    err = (durable_error){ 0 };
    assert_int_equal(durable_child(NULL, "kid", NULL, NULL, NULL, &err), DURABLE_EINVAL);
}

/* A JSON workflow's `workflow` step whose child is a code-first workflow:
 * the step ends with the child's output once the child finishes. */
static void test_json_parent_code_child(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    json_t *doc;
    char *run, *out;

    reset();
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    free(reg(f->d, "{\"name\":\"jparent\",\"steps\":[{\"id\":\"c\",\"type\":\"workflow\","
                   "\"config\":{\"workflow\":\"kid\",\"input\":{\"x\":1}}}]}"));
    run = start(f->d, "jparent", NULL, "jp-1");
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_kid), 1);
    doc = get_run(f->d, run);
    out = json_dumps(json_object_get(step_of(doc, "c"), "output"), JSON_COMPACT);
    assert_string_equal(out, "{\"kid\":7}");
    free(out);
    json_decref(doc);
    durable_free(run);
}

/* The id of the one run of workflow `name` (durable_free it). */
static char *only_run_of(durable *d, const char *name)
{
    durable_run_filter rf = { .workflow_id = name };
    durable_error err = { 0 };
    char *list = NULL, *id;
    json_t *runs;

    assert_int_equal(durable_runs_list(d, &rf, &list, NULL, &err), DURABLE_OK);
    runs = json_loads(list, 0, NULL);
    durable_free(list);
    assert_int_equal(json_array_size(runs), 1);
    id = strdup(json_string_value(json_object_get(json_array_get(runs, 0), "id")));
    json_decref(runs);
    return id;
}

/* Cancels run once its code-first child `kid` has run its step and is left
 * unfinished; the child is then cancelled too. */
static void cancel_waiting_parent(durable *d, const char *run)
{
    durable_error err = { 0 };
    const char *status = NULL;
    char *kid_run;
    json_t *doc;

    for (int tries = 0; tries < 600 && atomic_load(&calls_kid) < 1; tries++) {
        assert_int_equal(durable_run_wait(d, run, 10, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    kid_run = only_run_of(d, "kid");
    doc = get_run(d, kid_run);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "running");
    json_decref(doc);
    assert_int_equal(durable_run_cancel(d, run, &err), DURABLE_OK);
    assert_string_equal(wait_run(d, run), "cancelled");
    assert_string_equal(wait_run(d, kid_run), "cancelled");
    assert_int_equal(atomic_load(&calls_kid), 1);
    durable_free(kid_run);
}

/* A JSON parent cancelled while its `workflow` step waits for a code-first
 * child cancels the child. */
static void test_cancelled_json_parent_cancels_code_child(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *run;

    reset();
    atomic_store(&kid_stop, 1); /* the kid's invocation ends, its run unfinished */
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    free(reg(f->d, "{\"name\":\"jparent\",\"steps\":[{\"id\":\"c\",\"type\":\"workflow\","
                   "\"config\":{\"workflow\":\"kid\",\"input\":{\"x\":1}}}]}"));
    run = start(f->d, "jparent", NULL, "jp-3");
    cancel_waiting_parent(f->d, run);
    durable_free(run);
}

/* A code-first parent cancelled while durable_child waits cancels the
 * child. */
static void test_cancelled_code_parent_cancels_child(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    char *run;

    reset();
    atomic_store(&kid_stop, 1);
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    assert_int_equal(durable_workflow_fn_register(f->d, "parent", 1, parent, NULL, &err),
                     DURABLE_OK);
    run = code_start(f->d, "parent", "p3");
    cancel_waiting_parent(f->d, run);
    durable_free(run);
}

/* The same across a restart while the child is unfinished: the parent's
 * step finds the child by its key and waits for it again. */
static void test_json_parent_code_child_restart(void **state)
{
    struct fixture *f = *state;
    durable_error err = { 0 };
    const char *status = NULL;
    char *run;

    reset();
    atomic_store(&kid_stop, 1);
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    free(reg(f->d, "{\"name\":\"jparent\",\"steps\":[{\"id\":\"c\",\"type\":\"workflow\","
                   "\"config\":{\"workflow\":\"kid\",\"input\":{\"x\":1}}}]}"));
    run = start(f->d, "jparent", NULL, "jp-2");
    for (int tries = 0; tries < 600 && atomic_load(&calls_kid) < 1; tries++) {
        assert_int_equal(durable_run_wait(f->d, run, 10, &status, &err), DURABLE_ETIMEOUT);
        err = (durable_error){ 0 };
    }
    assert_int_equal(durable_run_wait(f->d, run, 100, &status, &err), DURABLE_ETIMEOUT);
    durable_close(f->d);
    f->d = open_db(f->db, DURABLE_RECOVER_ALL, DURABLE_DURABILITY_PROCESS);
    atomic_store(&kid_stop, 0);
    assert_int_equal(durable_workflow_fn_register(f->d, "kid", 1, kid, NULL, &err), DURABLE_OK);
    assert_string_equal(wait_run(f->d, run), "completed");
    assert_int_equal(atomic_load(&calls_kid), 1); /* recorded in the child, not run again */
    assert_int_equal(runs_of(f->d, "kid"), 1);
    durable_free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memoized_after_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resumed_on_registration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loop_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nondeterminism, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sleep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_loop_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nondeterminism_early_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_now_random_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_parent_code_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_parent_code_child_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_json_parent_cancels_code_child, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_code_parent_cancels_child, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
