/*
 * test_store.c - the store's conformance suite: what every backend must do,
 * through store.h only (SQLite's own tests: test_store_sqlite.c). Set
 * DURABLE_TEST_STORE to a location to run it against another backend.
 *
 * Each test gets a fresh database in its own temporary directory (removed
 * afterwards) and drives the store the way the engine's writer does: one
 * transaction per transition, or several in one batch. Assertions read back
 * through the store's own JSON and record reads.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "def/def.h"
#include "store/store.h"

#include "store_test.h"
#include "test_store_delete.h"
#include "test_store_schedules.h"

/* ---- schema ---- */

static void test_open_error(void **state)
{
    durable_error err = { DURABLE_OK, "" };
    struct store *s = NULL;

    (void)state;
    assert_int_equal(store_open("/nonexistent-dir/x/durable.db", DURABLE_DURABILITY_FULL, &s, &err),
                     DURABLE_EIO);
    assert_null(s);
    assert_non_null(strstr(err.msg, "could not open database \"/nonexistent-dir/x/durable.db\": "));
}

/* ---- workflows ---- */

static void test_workflow_versions(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result r1, r2, r3;
    struct workflow_record w;

    put_workflow(f, "shop", wf_def, &r1); /* identical to the setup's */
    assert_false(r1.created);
    assert_int_equal(r1.version, 1);
    assert_string_equal(r1.id, f->wf_id);
    put_workflow(f, "shop", "{\"name\":\"shop\",\"steps\":[1]}", &r2);
    assert_true(r2.created);
    assert_int_equal(r2.version, 2);
    assert_string_not_equal(r2.id, r1.id);
    put_workflow(f, "other", wf_def, &r3);
    assert_true(r3.created);
    assert_int_equal(r3.version, 1);
    assert_true(f->ev.n == 0);

    assert_int_equal(store_workflow_get(f->s, "shop", &w, &err), DURABLE_OK);
    assert_string_equal(w.id, r2.id);
    assert_int_equal(w.version, 2);
    assert_string_equal(w.name, "shop");
    workflow_record_release(&w);
    assert_int_equal(store_workflow_get(f->s, r1.id, &w, &err), DURABLE_OK);
    assert_int_equal(w.version, 1);
    assert_string_equal(w.definition, wf_def);
    assert_int_equal(w.created_at_ms, T0);
    workflow_record_release(&w);
    assert_int_equal(store_workflow_get(f->s, "nope", &w, &err), DURABLE_ENOTFOUND);
    assert_string_equal(err.msg, "workflow \"nope\" not found");
}

/* ---- runs ---- */

static void test_run_create_idempotency(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result r1, r2, r3, r4;
    char found_id[ID_MAX];
    bool found = false;

    create_run(f, NULL, NULL, "k1", &r1);
    assert_true(r1.created);
    assert_int_equal(f->ev.n, 1);
    assert_string_equal(f->ev.items[0].type, "run_created");
    assert_int_equal(f->ev.items[0].seq, 1);
    create_run(f, NULL, NULL, "k1", &r2);
    assert_false(r2.created);
    assert_string_equal(r2.id, r1.id);
    assert_int_equal(f->ev.n, 1); /* nothing written */
    assert_int_equal(event_count(f, r1.id), 1);

    create_run(f, "run_x", NULL, NULL, &r3);
    create_run(f, "run_y", NULL, NULL, &r4);
    assert_true(r3.created && r4.created);
    assert_string_equal(r3.id, "run_x");
    assert_string_equal(r4.id, "run_y");

    assert_int_equal(store_run_find_by_key(f->s, f->wf_id, "k1", found_id, &found, &err),
                     DURABLE_OK);
    assert_true(found);
    assert_string_equal(found_id, r1.id);
    assert_int_equal(store_run_find_by_key(f->s, f->wf_id, "k2", found_id, &found, &err),
                     DURABLE_OK);
    assert_false(found);
    assert_run_status(f, r1.id, RUN_PENDING);
}

static void test_run_create_refusals(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = { .kind = TR_RUN_CREATE,
                            .at_ms = T0,
                            .run_id = "run_z",
                            .workflow_id = f->wf_id,
                            .order_id = "ord_missing" };

    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
    assert_string_equal(err.msg, "order \"ord_missing\" not found");
    err_clear(&err);
    t.order_id = NULL;
    t.workflow_id = "wf_missing";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
    assert_string_equal(err.msg, "workflow \"wf_missing\" not found");
    err_clear(&err);
    t.workflow_id = f->wf_id;
    t.input_json = "[1]";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
    assert_int_equal(f->ev.n, 0);
    assert_int_equal(store_run_status(f->s, "run_z", &(enum run_status){ RUN_PENDING }, &err),
                     DURABLE_ENOTFOUND);
}

static void test_transitions_and_seqs(void **state)
{
    struct fixture *f = *state;
    static const char *const want[] = { "run_created",     "step_started", "step_failed",
                                        "retry_scheduled", "step_started", "step_completed",
                                        "step_skipped",    "step_started", "step_failed",
                                        "run_failed" };
    struct transition t;
    json_t *evs;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    assert_run_status(f, "run_1", RUN_RUNNING);
    t = step_tr(TR_STEP_RETRY, "run_1", "a", 1, T0 + 20);
    t.wake_at_ms = T0 + 1020;
    t.error_message = "boom";
    t.error_code = "random_failure";
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_1", RUN_WAITING);
    assert_step_status(f, "run_1", "a", STEP_S_RETRYING);
    step_ok(f, TR_STEP_START, "run_1", "a", 2);
    assert_run_status(f, "run_1", RUN_RUNNING);
    t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 2, T0 + 30);
    t.output_json = "{\"ok\":true}";
    apply_ok(f, &t, NULL);
    step_ok(f, TR_STEP_SKIP, "run_1", "c", 0);
    step_ok(f, TR_STEP_START, "run_1", "b", 1);
    t = step_tr(TR_STEP_FAIL, "run_1", "b", 1, T0 + 40);
    t.error_message = "bad";
    apply_ok(f, &t, NULL);
    t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 50);
    t.run_status = RUN_FAILED;
    t.error_message = "step \"b\" failed";
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_1", RUN_FAILED);
    {
        /* The record says how the run ended (a parent's step reads it). */
        durable_error err = { DURABLE_OK, "" };
        struct run_record r;

        assert_int_equal(store_run_load(f->s, "run_1", &r, &err), DURABLE_OK);
        assert_int_equal(r.status, RUN_FAILED);
        assert_string_equal(r.error_message, "step \"b\" failed");
        run_record_release(&r);
    }

    evs = events_of(f, "run_1", 0);
    assert_int_equal(json_array_size(evs), DUR_ARRAY_LEN(want));
    assert_seqs_dense(evs);
    for (size_t i = 0; i < DUR_ARRAY_LEN(want); i++) {
        assert_string_equal(event_type(evs, i), want[i]);
        assert_string_equal(f->ev.items[i].type, want[i]);
        assert_int_equal(f->ev.items[i].seq, (int64_t)i + 1);
    }
    json_decref(evs);
}

/* The data of the events written by test_transitions_and_seqs' kinds. */
static void test_event_data(void **state)
{
    struct fixture *f = *state;
    struct transition t;
    json_t *evs, *d;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t = step_tr(TR_STEP_RETRY, "run_1", "a", 1, T0 + 20);
    t.wake_at_ms = T0 + 1020;
    t.error_message = "boom";
    t.error_code = "timeout";
    apply_ok(f, &t, NULL);
    evs = events_of(f, "run_1", 0);
    d = json_object_get(json_array_get(evs, 0), "data");
    assert_string_equal(json_string_value(json_object_get(d, "workflow_id")), f->wf_id);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "input"), "n")), 1);
    assert_true(json_is_null(json_object_get(d, "order_id")));
    d = json_object_get(json_array_get(evs, 1), "data");
    assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
    assert_string_equal(json_string_value(json_object_get(d, "idempotency_key")), "run_1/a");
    d = json_object_get(json_array_get(evs, 2), "data");
    assert_string_equal(json_string_value(json_object_get(d, "error")), "boom");
    assert_string_equal(json_string_value(json_object_get(d, "code")), "timeout");
    assert_true(json_is_false(json_object_get(d, "final")));
    d = json_object_get(json_array_get(evs, 3), "data");
    assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "delay_ms")), 1000);
    assert_string_equal(json_string_value(json_object_get(d, "wake_at")),
                        "2023-11-14T22:13:21.020Z");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 3), "step_id")), "a");
    json_decref(evs);
    evs = events_of(f, "run_1", 2); /* after */
    assert_int_equal(json_array_size(evs), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "seq")), 3);
    json_decref(evs);
}

static void test_guards(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t;
    size_t n;

    create_run(f, "run_1", NULL, NULL, NULL);
    t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 5);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT); /* a is pending */
    step_ok(f, TR_STEP_START, "run_1", "a", 2);
    err_clear(&err);
    t.attempt = 1; /* a late result from attempt 1 */
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg,
                        "cannot complete step \"a\": attempt 1 is not the current attempt 2");
    err_clear(&err);
    t = step_tr(TR_STEP_SKIP, "run_1", "a", 0, T0 + 5);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    err_clear(&err);
    t = step_tr(TR_STEP_START, "run_1", "zz", 1, T0 + 5);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);

    t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 6);
    t.run_status = RUN_CANCELLED;
    apply_ok(f, &t, NULL);
    n = event_count(f, "run_1");
    err_clear(&err);
    t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 2, T0 + 7); /* after cancel: ignored */
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run \"run_1\" is already cancelled");
    err_clear(&err);
    t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 8);
    t.run_status = RUN_COMPLETED;
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_int_equal(event_count(f, "run_1"), n);
    assert_run_status(f, "run_1", RUN_CANCELLED);
}

static void test_run_finish_cancels_leftovers(void **state)
{
    struct fixture *f = *state;
    struct transition t;
    json_t *run, *evs;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    step_ok(f, TR_STEP_SKIP, "run_1", "c", 0);
    t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 9);
    t.run_status = RUN_CANCELLED;
    apply_ok(f, &t, NULL);
    run = doc_of(store_run_json, f, "run_1");
    assert_string_equal(step_field(run, "a", "status"), step_status_name(STEP_S_CANCELLED));
    assert_string_equal(step_field(run, "b", "status"), step_status_name(STEP_S_CANCELLED));
    assert_string_equal(step_field(run, "c", "status"), step_status_name(STEP_S_SKIPPED));
    assert_string_equal(json_string_value(json_object_get(run, "completed_at")),
                        "2023-11-14T22:13:20.009Z");
    json_decref(run);
    evs = events_of(f, "run_1", 0);
    assert_string_equal(event_type(evs, json_array_size(evs) - 1), "run_cancelled");
    json_decref(evs);
}

static void test_tx_rollback_discards(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_START, "run_1", "a", 1, T0 + 3);

    create_run(f, "run_1", NULL, NULL, NULL);
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK);
    store_tx_rollback(f->s);
    assert_int_equal(event_count(f, "run_1"), 1);
    assert_step_status(f, "run_1", "a", STEP_S_PENDING);
    step_ok(f, TR_STEP_START, "run_1", "a", 1); /* seq 2 again: no gap */
    assert_int_equal(f->ev.items[f->ev.n - 1].seq, 2);
}

/* ---- actions ---- */

static void complete_with_action(struct fixture *f, const char *run_id, const char *step_id,
                                 const char *action)
{
    struct transition t = step_tr(TR_STEP_COMPLETE, run_id, step_id, 1, T0 + 100);

    t.action = action;
    t.output_json = "{}";
    step_ok(f, TR_STEP_START, run_id, step_id, 1);
    apply_ok(f, &t, NULL);
}

static void test_actions_move_order(void **state)
{
    struct fixture *f = *state;
    char buf[32];
    json_t *evs, *d;

    create_order(f, "ord_1", 12.5);
    create_run(f, "run_1", "ord_1", NULL, NULL);
    assert_string_equal(order_status(f, "ord_1", buf), "pending");
    complete_with_action(f, "run_1", "a", "validate_order");
    assert_string_equal(order_status(f, "ord_1", buf), "validated");
    complete_with_action(f, "run_1", "b", "charge_payment");
    assert_string_equal(order_status(f, "ord_1", buf), "charged");
    complete_with_action(f, "run_1", "c", "ship_order");
    assert_string_equal(order_status(f, "ord_1", buf), "shipped");

    evs = events_of(f, "run_1", 0);
    assert_seqs_dense(evs);
    assert_string_equal(event_type(evs, 3), "action_applied");
    d = json_object_get(json_array_get(evs, 3), "data");
    assert_string_equal(json_string_value(json_object_get(d, "action")), "validate_order");
    assert_string_equal(json_string_value(json_object_get(d, "order_id")), "ord_1");
    assert_string_equal(json_string_value(json_object_get(d, "from")), "pending");
    assert_string_equal(json_string_value(json_object_get(d, "to")), "validated");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 3), "step_id")), "a");
    json_decref(evs);
}

static void test_action_refused_leaves_no_trace(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 100);
    json_t *before, *after;
    char reason[DURABLE_ERROR_MSG_SIZE];
    size_t n_ev;

    create_order(f, "ord_1", 3);
    create_run(f, "run_1", "ord_1", NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    before = doc_of(store_order_json, f, "ord_1");
    n_ev = f->ev.n;
    t.action = "charge_payment";
    t.output_json = "{\"x\":1}";
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_EACTION);
    assert_string_equal(
            err.msg,
            "action \"charge_payment\" needs order status \"validated\", found \"pending\"");
    assert_int_equal(f->ev.n, n_ev);
    /* The writer goes on in the same transaction with a failure. */
    t.kind = TR_STEP_FAIL;
    snprintf(reason, sizeof(reason), "%s", err.msg);
    t.error_message = reason;
    t.error_code = "action_failed";
    err_clear(&err);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);

    after = doc_of(store_order_json, f, "ord_1");
    assert_true(json_equal(before, after));
    assert_step_status(f, "run_1", "a", STEP_S_FAILED);
    assert_int_equal(event_count(f, "run_1"), 3); /* created, started, failed */
    json_decref(before);
    json_decref(after);
}

/* A registered action (durable_action_register): counts its calls in the
 * key/value table, or (ud non-NULL) writes and then refuses with ud. */
static void count_action(durable_action_tx *tx, const durable_action_call *call, void *ud)
{
    char *v = NULL, buf[64];
    long n = 0;

    assert_string_equal(call->action, "count");
    assert_string_equal(call->idempotency_key, "run_1/a");
    assert_string_equal(call->output_json, "{\"x\":1}");
    assert_int_equal(durable_action_get(tx, "counter", &v), DURABLE_OK);
    if (v)
        n = strtol(v, NULL, 10);
    free(v);
    snprintf(buf, sizeof(buf), "%ld", n + 1);
    assert_int_equal(durable_action_put(tx, "counter", buf), DURABLE_OK);
    if (ud)
        durable_action_refuse(tx, ud);
}

static char *kv_value(struct fixture *f, const char *key)
{
    durable_error err = { DURABLE_OK, "" };
    char *v = NULL;

    assert_int_equal(store_kv_get(f->s, key, &v, &err), DURABLE_OK);
    return v;
}

static void test_registered_action_commits_with_step(void **state)
{
    struct fixture *f = *state;
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 100);
    json_t *evs, *d;
    char *v;

    create_run(f, "run_1", NULL, NULL, NULL);
    assert_null(kv_value(f, "counter"));
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.action = "count";
    t.action_fn = count_action;
    t.output_json = "{\"x\":1}";
    apply_ok(f, &t, NULL);
    v = kv_value(f, "counter");
    assert_string_equal(v, "1");
    free(v);
    assert_step_status(f, "run_1", "a", STEP_S_COMPLETED);
    evs = events_of(f, "run_1", 0);
    assert_string_equal(event_type(evs, 3), "action_applied");
    d = json_object_get(json_array_get(evs, 3), "data");
    assert_string_equal(json_string_value(json_object_get(d, "action")), "count");
    assert_null(json_object_get(d, "order_id"));
    json_decref(evs);
}

static void test_registered_action_refused_writes_nothing(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 100);
    static char refusal[] = "out of stock";
    size_t n_ev;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    n_ev = f->ev.n;
    t.action = "count";
    t.action_fn = count_action;
    t.action_ud = refusal;
    t.output_json = "{\"x\":1}";
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_EACTION);
    assert_string_equal(err.msg, "out of stock");
    assert_int_equal(f->ev.n, n_ev);
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);
    assert_null(kv_value(f, "counter"));
    assert_step_status(f, "run_1", "a", STEP_S_RUNNING);
    assert_int_equal(store_kv_get(f->s, "", &(char *){ NULL }, &err), DURABLE_EINVAL);
}

static void test_action_refused_step_still_running(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 100);
    char buf[32];

    create_order(f, "ord_1", 3);
    create_run(f, "run_1", "ord_1", NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.action = "ship_order";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EACTION);
    assert_step_status(f, "run_1", "a", STEP_S_RUNNING);
    assert_int_equal(event_count(f, "run_1"), 2);
    assert_string_equal(order_status(f, "ord_1", buf), "pending");
    err_clear(&err);
    t.action = "launch_rocket";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EACTION);
    assert_string_equal(err.msg, "unknown action \"launch_rocket\"");
}

static void test_action_without_order_is_skipped(void **state)
{
    struct fixture *f = *state;

    create_run(f, "run_1", NULL, NULL, NULL);
    complete_with_action(f, "run_1", "a", "charge_payment");
    assert_step_status(f, "run_1", "a", STEP_S_COMPLETED);
    assert_int_equal(event_count(f, "run_1"), 3); /* no action_applied */
}

static void test_order_create(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = {
        .kind = TR_ORDER_CREATE, .at_ms = T0, .order_id = "ord_1", .order_amount = 2
    };
    struct transition_result res;

    apply_ok(f, &t, &res);
    assert_string_equal(res.id, "ord_1");
    assert_true(res.created);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "order \"ord_1\" already exists");
    err_clear(&err);
    t.order_id = "ord_2";
    t.order_amount = NAN;
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
}

/* ---- reads ---- */

struct run_counter {
    size_t n;
    int64_t last;
    bool is_ordered;
};

static durable_code count_run(const struct run_record *r, void *ud)
{
    struct run_counter *c = ud;

    c->is_ordered = c->is_ordered && r->created_at_ms >= c->last;
    c->last = r->created_at_ms;
    c->n++;
    assert_int_equal(r->n_steps, 3);
    assert_string_equal(r->steps[0].step_id, "a");
    assert_string_equal(r->steps[2].step_id, "c");
    assert_string_equal(r->definition, wf_def);
    return c->n == 1000 ? DURABLE_ECLOSED : DURABLE_OK;
}

static void test_unfinished_listing(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct run_counter c = { 0, 0, true };
    static const struct transition_step_init steps[] = { { "a", "task", 1, "[]" },
                                                         { "b", "task", 1, "[]" },
                                                         { "c", "task", 1, "[]" } };
    struct transition t = {
        .kind = TR_RUN_CREATE, .workflow_id = f->wf_id, .steps = steps, .n_steps = 3
    };
    char id[ID_MAX];

    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    for (int i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "run_%04d", i);
        t.run_id = id;
        t.at_ms = T0 + 600 - i; /* newest first, so order comes from created_at */
        assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK);
    }
    for (int i = 0; i < 600; i += 3) {
        struct transition fin = step_tr(TR_RUN_FINISH, NULL, NULL, 0, T0 + 700);
        snprintf(id, sizeof(id), "run_%04d", i);
        fin.run_id = id;
        fin.run_status = RUN_COMPLETED;
        assert_int_equal(store_apply(f->s, &fin, &f->ev, NULL, &err), DURABLE_OK);
    }
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);
    assert_int_equal(store_runs_unfinished(f->s, count_run, &c, &err), DURABLE_OK);
    assert_int_equal(c.n, 400);
    assert_true(c.is_ordered);
}

/* Runs of two workflows, all created in the same millisecond, over more
 * than one page: each run once, in id order (the page cursor's second
 * key), with its own workflow's definition and all its steps, whatever
 * their order. */
struct wf_checker {
    const char *wf_b;
    const char *def_b;
    char last[ID_MAX];
    size_t n;
};

static durable_code check_run_wf(const struct run_record *r, void *ud)
{
    struct wf_checker *c = ud;
    bool is_b = strcmp(r->workflow_id, c->wf_b) == 0;
    unsigned seen = 0;

    assert_true(strcmp(c->last, r->id) < 0);
    snprintf(c->last, sizeof(c->last), "%s", r->id);
    c->n++;
    assert_string_equal(r->definition, is_b ? c->def_b : wf_def);
    assert_int_equal(r->n_steps, 3);
    for (size_t k = 0; k < r->n_steps; k++)
        seen |= 1u << (r->steps[k].step_id[0] - 'a');
    assert_int_equal(seen, 7);
    return DURABLE_OK;
}

static void test_unfinished_pages_and_workflows(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    static const char def_b[] = "{\"name\":\"other\",\"steps\":[]}";
    struct wf_checker c = { .def_b = def_b };
    struct transition_result res;
    char id[ID_MAX];
    /* c first in the definition: the store lists steps by id */
    static const struct transition_step_init steps[] = { { "c", "task", 1, "[]" },
                                                         { "a", "task", 1, "[]" },
                                                         { "b", "task", 1, "[]" } };
    struct transition t = { .kind = TR_RUN_CREATE, .at_ms = T0, .steps = steps, .n_steps = 3 };

    put_workflow(f, "other", def_b, &res);
    c.wf_b = res.id;
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    for (int i = 0; i < 700; i++) {
        snprintf(id, sizeof(id), "run_%04d", (i * 3) % 700); /* not created in id order */
        t.run_id = id;
        t.workflow_id = i % 2 ? res.id : f->wf_id;
        assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK);
    }
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);
    assert_int_equal(store_runs_unfinished(f->s, check_run_wf, &c, &err), DURABLE_OK);
    assert_int_equal(c.n, 700);
}

static durable_code stop_at_two(const struct run_record *r, void *ud)
{
    int *n = ud;
    (void)r;
    return ++*n == 2 ? DURABLE_ECLOSED : DURABLE_OK;
}

static void test_unfinished_stops(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    int n = 0;

    create_run(f, "run_1", NULL, NULL, NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    create_run(f, "run_3", NULL, NULL, NULL);
    assert_int_equal(store_runs_unfinished(f->s, stop_at_two, &n, &err), DURABLE_ECLOSED);
    assert_int_equal(n, 2);
}

static void test_run_load(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_RETRY, "run_1", "a", 1, T0 + 20);
    struct run_record r;

    create_order(f, "ord_1", 1);
    create_run(f, "run_1", "ord_1", NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.wake_at_ms = T0 + 500;
    apply_ok(f, &t, NULL);
    assert_int_equal(store_run_load(f->s, "run_1", &r, &err), DURABLE_OK);
    assert_string_equal(r.id, "run_1");
    assert_string_equal(r.workflow_id, f->wf_id);
    assert_int_equal(r.status, RUN_WAITING);
    assert_string_equal(r.input_json, "{\"n\":1}");
    assert_string_equal(r.order_id, "ord_1");
    assert_int_equal(r.created_at_ms, T0 + 1);
    assert_int_equal(r.deadline_ms, 0);
    assert_int_equal(r.n_steps, 3);
    assert_int_equal(r.steps[0].status, STEP_S_RETRYING);
    assert_int_equal(r.steps[0].attempt, 1);
    assert_int_equal(r.steps[0].wake_at_ms, T0 + 500);
    assert_int_equal(r.steps[0].started_at_ms, T0 + 10);
    assert_null(r.steps[0].output_json);
    assert_null(r.output_json); /* unfinished: no output, no error (store.h) */
    assert_null(r.error_message);
    run_record_release(&r);
    assert_int_equal(store_run_load(f->s, "nope", &r, &err), DURABLE_ENOTFOUND);
}

static void assert_keys(json_t *obj, const char *const *keys)
{
    assert_true(json_is_object(obj));
    for (; *keys; keys++) {
        if (!json_object_get(obj, *keys))
            fail_msg("missing field \"%s\"", *keys);
    }
}

static void test_json_shapes(void **state)
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
                                            "steps",
                                            NULL };
    static const char *const step_keys[] = { "step_id",       "type",         "status",
                                             "attempt",       "max_attempts", "depends_on",
                                             "started_at",    "completed_at", "wake_at",
                                             "error_message", "output",       NULL };
    static const char *const order_keys[] = { "id",         "amount",     "status",
                                              "created_at", "updated_at", NULL };
    struct fixture *f = *state;
    json_t *run, *a, *b, *order;

    create_order(f, "ord_1", 12.5);
    create_run(f, "run_1", "ord_1", "key-1", NULL);
    complete_with_action(f, "run_1", "a", NULL);
    run = doc_of(store_run_json, f, "run_1");
    assert_keys(run, run_keys);
    assert_string_equal(json_string_value(json_object_get(run, "workflow_name")), "shop");
    assert_int_equal(json_integer_value(json_object_get(run, "workflow_version")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(run, "input"), "n")), 1);
    assert_true(json_is_null(json_object_get(run, "output")));
    assert_string_equal(json_string_value(json_object_get(run, "idempotency_key")), "key-1");
    assert_string_equal(json_string_value(json_object_get(run, "created_at")),
                        "2023-11-14T22:13:20.001Z");
    assert_true(json_is_null(json_object_get(run, "completed_at")));
    assert_int_equal(json_array_size(json_object_get(run, "steps")), 3);
    a = json_array_get(json_object_get(run, "steps"), 0);
    b = json_array_get(json_object_get(run, "steps"), 1);
    assert_keys(a, step_keys);
    assert_true(json_is_object(json_object_get(a, "output")));
    assert_int_equal(json_integer_value(json_object_get(a, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(a, "max_attempts")), 3);
    assert_string_equal(json_string_value(json_object_get(a, "type")), "task");
    assert_true(json_is_null(json_object_get(b, "output")));
    assert_true(json_is_null(json_object_get(b, "started_at")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(b, "depends_on"), 0)),
                        "a");
    json_decref(run);

    order = doc_of(store_order_json, f, "ord_1");
    assert_keys(order, order_keys);
    assert_true(json_real_value(json_object_get(order, "amount")) == 12.5);
    assert_string_equal(json_string_value(json_object_get(order, "status")), "pending");
    json_decref(order);
}

static void test_not_found_reads(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    char *out = NULL;

    assert_int_equal(store_run_json(f->s, "run_nope", &out, &err), DURABLE_ENOTFOUND);
    assert_string_equal(err.msg, "run \"run_nope\" not found");
    err_clear(&err);
    assert_int_equal(store_events_json(f->s, "run_nope", 0, &out, &err), DURABLE_ENOTFOUND);
    err_clear(&err);
    assert_int_equal(store_order_json(f->s, "ord_nope", &out, &err), DURABLE_ENOTFOUND);
    assert_string_equal(err.msg, "order \"ord_nope\" not found");
    assert_null(out);
}

/* The step's record from store_run_load (fields copied into out). */
static void load_step(struct fixture *f, const char *run_id, const char *step_id,
                      struct step_record *out)
{
    durable_error err = { DURABLE_OK, "" };
    struct run_record r;
    size_t k;

    assert_int_equal(store_run_load(f->s, run_id, &r, &err), DURABLE_OK);
    for (k = 0; k < r.n_steps && strcmp(r.steps[k].step_id, step_id) != 0; k++)
        ;
    assert_true(k < r.n_steps);
    out->attempt = r.steps[k].attempt;
    out->started_at_ms = r.steps[k].started_at_ms;
    assert_int_equal(r.steps[k].status, STEP_S_RUNNING);
    run_record_release(&r);
}

/* TR_RUN_RECOVERED restarts the running steps it lists (same attempt, a new
 * started_at) with one `recovered` event and nothing else. */
static void test_recovered_event(void **state)
{
    struct fixture *f = *state;
    struct transition t = step_tr(TR_RUN_RECOVERED, "run_1", NULL, 0, T0 + 90);
    struct step_record sr;
    json_t *evs, *d;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 2);
    t.recovered_json = "[\"a\"]";
    apply_ok(f, &t, NULL);
    load_step(f, "run_1", "a", &sr);
    assert_int_equal(sr.attempt, 2);
    assert_int_equal(sr.started_at_ms, T0 + 90);
    evs = events_of(f, "run_1", 0);
    assert_int_equal(json_array_size(evs), 3);
    assert_string_equal(event_type(evs, 2), "recovered");
    assert_true(json_is_null(json_object_get(json_array_get(evs, 2), "step_id")));
    d = json_object_get(json_array_get(evs, 2), "data");
    assert_string_equal(json_string_value(json_array_get(json_object_get(d, "steps"), 0)), "a");
    json_decref(evs);
    /* still running: completes under the attempt it kept */
    step_ok(f, TR_STEP_COMPLETE, "run_1", "a", 2);
}

/* One batch as the writer applies it, told to the store first
 * (store_tx_prefetch): a transition written without a guard read (the
 * recovery of one step) before the first guarded one of the same run, and
 * a second guarded one. Whatever the store read ahead for the run is stale
 * after the first writes: the events still number 3, 4, 5, 6 and the
 * guards see the step running, then completed. */
static void test_batch_read_ahead(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition rec = step_tr(TR_RUN_RECOVERED, "run_1", NULL, 0, T0 + 90);
    struct transition done = step_tr(TR_STEP_COMPLETE, "run_1", "a", 2, T0 + 95);
    struct transition again = step_tr(TR_STEP_COMPLETE, "run_1", "a", 2, T0 + 96);
    struct transition start_b = step_tr(TR_STEP_START, "run_1", "b", 1, T0 + 97);
    const struct transition *batch[] = { &rec, &done, &again, &start_b };
    json_t *evs;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 2);
    rec.recovered_json = "[\"a\"]";
    done.output_json = "{}";
    again.output_json = "{}";
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_tx_prefetch(f->s, batch, 4, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &rec, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &done, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &again, &f->ev, NULL, &err), DURABLE_ECONFLICT);
    assert_int_equal(store_apply(f->s, &start_b, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);
    evs = events_of(f, "run_1", 0);
    assert_int_equal(json_array_size(evs), 5);
    assert_string_equal(event_type(evs, 2), "recovered");
    assert_string_equal(event_type(evs, 3), "step_completed");
    assert_string_equal(event_type(evs, 4), "step_started");
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, i), "seq")),
                         (json_int_t)i + 1);
    json_decref(evs);
    assert_step_status(f, "run_1", "a", STEP_S_COMPLETED);
    assert_step_status(f, "run_1", "b", STEP_S_RUNNING);
}

/* A recovered step that is not running, or a finished run, refuses the
 * whole transition before anything is written. */
static void test_recovered_refusals(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_RUN_RECOVERED, "run_1", NULL, 0, T0 + 90);
    struct transition fin = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 95);
    struct step_record sr;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.recovered_json = "[\"a\", \"b\"]"; /* b is pending */
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "cannot restart step \"b\": it is pending");
    load_step(f, "run_1", "a", &sr);
    assert_int_equal(sr.started_at_ms, T0 + 10);
    assert_int_equal(event_count(f, "run_1"), 2);
    err_clear(&err);
    t.recovered_json = "[\"b\"]"; /* one step: refused by its own UPDATE */
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "cannot restart step \"b\": it is pending");
    err_clear(&err);
    t.recovered_json = "[\"zz\"]";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
    err_clear(&err);
    t.recovered_json = "[1]";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
    err_clear(&err);
    t.recovered_json = "{}";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
    err_clear(&err);
    assert_int_equal(event_count(f, "run_1"), 2);
    fin.run_status = RUN_CANCELLED;
    apply_ok(f, &fin, NULL);
    t.recovered_json = "[\"a\"]"; /* cancelled with its run */
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    err_clear(&err);
    t.recovered_json = "[]";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run \"run_1\" is already cancelled");
    assert_int_equal(event_count(f, "run_1"), 3);
}

struct reader {
    struct fixture *f;
    atomic_bool stop;
    int n_reads;
    int n_errors;
    size_t last_events;
    bool is_monotonic;
};

/* Reads the run and its events until told to stop: each read must succeed
 * and see at least as many events as the one before (committed state only). */
static void *reader_main(void *arg)
{
    struct reader *rd = arg;

    while (!atomic_load(&rd->stop)) {
        durable_error err = { DURABLE_OK, "" };
        char *text = NULL;
        json_t *evs;

        if (store_run_json(rd->f->s, "run_1", &text, &err) != DURABLE_OK)
            rd->n_errors++;
        free(text);
        text = NULL;
        if (store_events_json(rd->f->s, "run_1", 0, &text, &err) != DURABLE_OK) {
            rd->n_errors++;
            continue;
        }
        evs = json_loads(text, 0, NULL);
        free(text);
        rd->is_monotonic = rd->is_monotonic && json_array_size(evs) >= rd->last_events;
        rd->last_events = json_array_size(evs);
        json_decref(evs);
        rd->n_reads++;
    }
    return NULL;
}

static void test_reads_beside_the_writer(void **state)
{
    struct fixture *f = *state;
    struct reader rd = { .f = f, .is_monotonic = true };
    pthread_t th;

    create_run(f, "run_1", NULL, NULL, NULL);
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    for (int i = 1; i <= 100; i++) {
        struct transition t = step_tr(TR_STEP_RETRY, "run_1", "a", i, T0 + 10LL * i);
        t.wake_at_ms = T0 + 10LL * i + 5;
        step_ok(f, TR_STEP_START, "run_1", "a", i);
        apply_ok(f, &t, NULL);
    }
    atomic_store(&rd.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(rd.n_errors, 0);
    assert_true(rd.is_monotonic);
    assert_true(rd.n_reads > 0);
    assert_int_equal(event_count(f, "run_1"), 1 + 100 * 3);
}

/* ---- migration 2: global event ids ---- */

/* Global ids follow commit order across runs, with no gap where a
 * transition was refused inside a batch or a transaction rolled back. */
static void test_global_ids(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_2", "a", 1, T0 + 100);
    json_t *evs;

    create_order(f, "ord_1", 1);
    create_run(f, "run_1", NULL, NULL, NULL);    /* gid 1 */
    create_run(f, "run_2", "ord_1", NULL, NULL); /* gid 2 */
    step_ok(f, TR_STEP_START, "run_2", "a", 1);  /* gid 3 */
    /* One batch, as the writer does it: a completion whose action refuses
     * (the order is pending), then its fallback failure. */
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    t.action = "charge_payment";
    t.output_json = "{}";
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_EACTION);
    t = step_tr(TR_STEP_FAIL, "run_2", "a", 1, T0 + 100);
    t.error_message = "refused";
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK); /* gid 4 */
    t = step_tr(TR_STEP_START, "run_1", "a", 1, T0 + 100);
    assert_int_equal(store_apply(f->s, &t, &f->ev, NULL, &err), DURABLE_OK); /* gid 5 */
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);
    assert_int_equal(f->ev.n, 5);
    /* A transaction rolled back gives its ids out again. */
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    t = step_tr(TR_STEP_START, "run_1", "b", 1, T0 + 101);
    assert_int_equal(store_apply(f->s, &t, NULL, NULL, &err), DURABLE_OK);
    store_tx_rollback(f->s);
    step_ok(f, TR_STEP_SKIP, "run_2", "c", 0); /* gid 6 */
    assert_int_equal(f->ev.n, 6);
    for (size_t i = 0; i < f->ev.n; i++)
        assert_int_equal(f->ev.items[i].global_id, (int64_t)i + 1);

    evs = events_of(f, "run_2", 0);
    assert_int_equal(json_array_size(evs), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "id")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 1), "id")), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 2), "id")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 3), "id")), 6);
    json_decref(evs);
}

static json_t *since(struct fixture *f, int64_t after, int limit)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;

    return parse_out(store_events_since(f->s, after, limit, &text, &err), &text, &err);
}

static void test_events_since(void **state)
{
    struct fixture *f = *state;
    json_t *evs, *e;

    create_run(f, "run_1", NULL, NULL, NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    step_ok(f, TR_STEP_START, "run_2", "a", 1);
    evs = since(f, 0, 0);
    assert_int_equal(json_array_size(evs), 4);
    e = json_array_get(evs, 2);
    assert_int_equal(json_integer_value(json_object_get(e, "id")), 3);
    assert_string_equal(json_string_value(json_object_get(e, "run_id")), "run_1");
    assert_int_equal(json_integer_value(json_object_get(e, "seq")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "step_started");
    assert_string_equal(json_string_value(json_object_get(e, "step_id")), "a");
    assert_string_equal(json_string_value(json_object_get(e, "at")), "2023-11-14T22:13:20.010Z");
    assert_true(json_is_object(json_object_get(e, "data")));
    json_decref(evs);
    evs = since(f, 2, 1);
    assert_int_equal(json_array_size(evs), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "id")), 3);
    json_decref(evs);
    evs = since(f, 4, 10);
    assert_int_equal(json_array_size(evs), 0);
    json_decref(evs);
    evs = since(f, -5, -1); /* clamped: after 0, one event */
    assert_int_equal(json_array_size(evs), 1);
    json_decref(evs);
}

/* ---- retry ---- */

static void fail_run(struct fixture *f, const char *run_id)
{
    struct transition t = step_tr(TR_STEP_FAIL, run_id, "b", 1, T0 + 40);

    t.error_message = "bad";
    t.error_code = "random_failure";
    apply_ok(f, &t, NULL);
    t = step_tr(TR_RUN_FINISH, run_id, NULL, 0, T0 + 50);
    t.run_status = RUN_FAILED;
    t.error_message = "step \"b\" failed: bad";
    apply_ok(f, &t, NULL);
}

static void test_run_retry_transition(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 30);
    json_t *run, *b, *evs, *last;

    create_run(f, "run_1", NULL, NULL, NULL);
    t.output_json = "{\"x\":1}";
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    apply_ok(f, &t, NULL);
    t = step_tr(TR_RUN_RETRY, "run_1", NULL, 0, T0 + 35);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run run_1 is running, only a failed run can be retried");
    step_ok(f, TR_STEP_START, "run_1", "b", 1);
    fail_run(f, "run_1"); /* b failed, c cancelled */
    assert_step_status(f, "run_1", "c", STEP_S_CANCELLED);

    t = step_tr(TR_RUN_RETRY, "run_1", NULL, 0, T0 + 60);
    t.deadline_ms = T0 + 5000;
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_1", RUN_RUNNING);
    run = doc_of(store_run_json, f, "run_1");
    assert_true(json_is_null(json_object_get(run, "error_message")));
    assert_true(json_is_null(json_object_get(run, "completed_at")));
    assert_string_equal(step_field(run, "a", "status"), step_status_name(STEP_S_COMPLETED));
    assert_string_equal(step_field(run, "b", "status"), step_status_name(STEP_S_PENDING));
    assert_string_equal(step_field(run, "c", "status"), step_status_name(STEP_S_PENDING));
    b = json_array_get(json_object_get(run, "steps"), 1);
    assert_int_equal(json_integer_value(json_object_get(b, "attempt")), 0);
    assert_true(json_is_null(json_object_get(b, "error_message")));
    assert_true(json_is_null(json_object_get(b, "started_at")));
    assert_int_equal(
            json_integer_value(json_object_get(
                    json_object_get(json_array_get(json_object_get(run, "steps"), 0), "output"),
                    "x")),
            1);
    json_decref(run);
    evs = events_of(f, "run_1", 0);
    assert_seqs_dense(evs);
    last = json_array_get(evs, json_array_size(evs) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "type")), "run_retried");
    assert_true(json_is_null(json_object_get(last, "step_id")));
    assert_string_equal(json_string_value(json_array_get(
                                json_object_get(json_object_get(last, "data"), "steps"), 0)),
                        "b");
    assert_string_equal(json_string_value(json_array_get(
                                json_object_get(json_object_get(last, "data"), "steps"), 1)),
                        "c");
    json_decref(evs);
    {
        struct run_record r;
        assert_int_equal(store_run_load(f->s, "run_1", &r, &err), DURABLE_OK);
        assert_int_equal(r.deadline_ms, T0 + 5000);
        run_record_release(&r);
    }
    /* The attempts count from 1 again. */
    step_ok(f, TR_STEP_START, "run_1", "b", 1);
    assert_step_status(f, "run_1", "b", STEP_S_RUNNING);
    err_clear(&err);
    t = step_tr(TR_RUN_RETRY, "run_nope", NULL, 0, T0 + 70);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
}

/* A restart's run: created with the original named, its kept steps
 * completed (or skipped) at once with copied_from in their events, the
 * others pending. */
static void test_run_create_restart(void **state)
{
    struct fixture *f = *state;
    static const struct transition_step_init steps[] = {
        { "a", "task", 3, "[]" },
        { "b", "task", 1, "[\"a\"]" },
        { "c", "log", 1, NULL },
    };
    static const struct transition_step_copy copies[] = {
        { "a", STEP_S_COMPLETED, 2, "{\"x\":7}" },
        { "c", STEP_S_SKIPPED, 0, NULL },
    };
    struct transition t = { .kind = TR_RUN_CREATE,
                            .at_ms = T0 + 90,
                            .run_id = "run_2",
                            .workflow_id = f->wf_id,
                            .input_json = "{\"n\":1}",
                            .restarted_from = "run_1",
                            .restarted_step = "b",
                            .copies = copies,
                            .n_copies = DUR_ARRAY_LEN(copies),
                            .steps = steps,
                            .n_steps = DUR_ARRAY_LEN(steps) };
    json_t *run, *evs, *from, *data;

    create_run(f, "run_1", NULL, NULL, NULL);
    apply_ok(f, &t, NULL);
    run = doc_of(store_run_json, f, "run_2");
    from = json_object_get(run, "restarted_from");
    assert_string_equal(json_string_value(json_object_get(from, "run_id")), "run_1");
    assert_string_equal(json_string_value(json_object_get(from, "step_id")), "b");
    assert_string_equal(step_field(run, "a", "status"), "completed");
    assert_string_equal(step_field(run, "b", "status"), "pending");
    assert_string_equal(step_field(run, "c", "status"), "skipped");
    assert_string_equal(json_string_value(json_object_get(run, "status")), "pending");
    json_decref(run);
    run = doc_of(store_run_json, f, "run_1");
    assert_null(json_object_get(run, "restarted_from"));
    json_decref(run);
    evs = events_of(f, "run_2", 0);
    assert_seqs_dense(evs);
    assert_int_equal(json_array_size(evs), 3);
    data = json_object_get(json_array_get(evs, 1), "data");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 1), "type")),
                        "step_completed");
    assert_string_equal(json_string_value(json_object_get(data, "copied_from")), "run_1");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(data, "output"), "x")), 7);
    assert_int_equal(json_integer_value(json_object_get(data, "attempt")), 2);
    data = json_object_get(json_array_get(evs, 2), "data");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 2), "type")),
                        "step_skipped");
    assert_string_equal(json_string_value(json_object_get(data, "copied_from")), "run_1");
    json_decref(evs);
    /* The step restarted from runs under the new run's key. */
    step_ok(f, TR_STEP_START, "run_2", "b", 1);
    assert_run_status(f, "run_2", RUN_RUNNING);
}

/* ---- lists ---- */

static json_t *runs_list(struct fixture *f, const char *status, const char *wf, int limit,
                         int offset, int64_t *total)
{
    durable_error err = { DURABLE_OK, "" };
    struct store_run_query q = { .status = status, .workflow = wf, .page = { limit, offset } };
    char *text = NULL;

    return parse_out(store_runs_list(f->s, &q, &text, total, &err), &text, &err);
}

static const char *id_at(json_t *list, size_t i)
{
    return json_string_value(json_object_get(json_array_get(list, i), "id"));
}

/* Pause and resume: only the run's status changes; step transitions leave
 * a paused run paused; a paused run is unfinished (recovery lists it, a
 * cancel applies); the refusals name the status. */
static void test_run_pause_transitions(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_RUN_PAUSE, "run_1", NULL, 0, T0 + 20);
    struct transition c = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 30);
    struct run_counter counter = { 0, 0, true };
    json_t *evs, *last, *list;
    int64_t total = 0;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_1", RUN_PAUSED);
    evs = events_of(f, "run_1", 0);
    assert_seqs_dense(evs);
    last = json_array_get(evs, json_array_size(evs) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "type")), "run_paused");
    assert_true(json_is_null(json_object_get(last, "step_id")));
    assert_int_equal(json_object_size(json_object_get(last, "data")), 0);
    json_decref(evs);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run run_1 is paused, only an unfinished run can be paused");
    err_clear(&err);

    /* The step that was running finishes; the run stays paused. */
    c.output_json = "{}";
    apply_ok(f, &c, NULL);
    assert_run_status(f, "run_1", RUN_PAUSED);
    step_ok(f, TR_STEP_START, "run_1", "b", 1);
    assert_run_status(f, "run_1", RUN_PAUSED);
    assert_int_equal(store_runs_unfinished(f->s, count_run, &counter, &err), DURABLE_OK);
    assert_int_equal(counter.n, 1);
    list = runs_list(f, "paused", NULL, 10, 0, &total);
    assert_int_equal(total, 1);
    assert_string_equal(id_at(list, 0), "run_1");
    json_decref(list);

    t = step_tr(TR_RUN_RESUME, "run_1", NULL, 0, T0 + 40);
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_1", RUN_RUNNING); /* b runs */
    evs = events_of(f, "run_1", 0);
    last = json_array_get(evs, json_array_size(evs) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "type")), "run_resumed");
    json_decref(evs);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run run_1 is running, only a paused run can be resumed");
    err_clear(&err);

    /* A run that never started is pending again once resumed. */
    create_run(f, "run_2", NULL, NULL, NULL);
    t = step_tr(TR_RUN_PAUSE, "run_2", NULL, 0, T0 + 50);
    apply_ok(f, &t, NULL);
    t = step_tr(TR_RUN_RESUME, "run_2", NULL, 0, T0 + 51);
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_2", RUN_PENDING);

    /* A paused run can be cancelled; a finished one neither paused nor resumed. */
    t = step_tr(TR_RUN_PAUSE, "run_2", NULL, 0, T0 + 52);
    apply_ok(f, &t, NULL);
    t = step_tr(TR_RUN_FINISH, "run_2", NULL, 0, T0 + 53);
    t.run_status = RUN_CANCELLED;
    apply_ok(f, &t, NULL);
    assert_run_status(f, "run_2", RUN_CANCELLED);
    t = step_tr(TR_RUN_RESUME, "run_2", NULL, 0, T0 + 54);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    err_clear(&err);
    t = step_tr(TR_RUN_PAUSE, "run_2", NULL, 0, T0 + 55);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_string_equal(err.msg, "run run_2 is cancelled, only an unfinished run can be paused");
    err_clear(&err);
    t = step_tr(TR_RUN_PAUSE, "run_nope", NULL, 0, T0 + 56);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
}

static void test_runs_list(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result v2;
    struct store_run_query q = { .page = { 0, 0 } };
    char *text = NULL;
    int64_t total = -1;
    json_t *l;

    create_run(f, "run_1", NULL, NULL, NULL); /* all at T0 + 1: insertion order decides */
    create_run(f, "run_2", NULL, NULL, NULL);
    put_workflow(f, "shop", "{\"name\":\"shop\",\"steps\":[2]}", &v2);
    snprintf(f->wf_id, sizeof(f->wf_id), "%s", v2.id);
    create_run(f, "run_3", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_2", "b", 1);
    fail_run(f, "run_2");

    l = runs_list(f, NULL, NULL, 0, 0, &total);
    assert_int_equal(total, 3);
    assert_int_equal(json_array_size(l), 3);
    assert_string_equal(id_at(l, 0), "run_3");
    assert_string_equal(id_at(l, 2), "run_1");
    assert_null(json_object_get(json_array_get(l, 0), "steps"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 0), "workflow_version")),
                     2);
    json_decref(l);
    l = runs_list(f, NULL, NULL, 1, 1, &total);
    assert_int_equal(total, 3);
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(id_at(l, 0), "run_2");
    json_decref(l);
    l = runs_list(f, run_status_name(RUN_FAILED), NULL, 0, 0, &total);
    assert_int_equal(total, 1);
    assert_string_equal(id_at(l, 0), "run_2");
    json_decref(l);
    l = runs_list(f, NULL, "shop", 0, 0, &total); /* a name: every version */
    assert_int_equal(total, 3);
    json_decref(l);
    l = runs_list(f, NULL, v2.id, 0, 0, &total); /* an id: that version */
    assert_int_equal(total, 1);
    assert_string_equal(id_at(l, 0), "run_3");
    json_decref(l);
    l = runs_list(f, run_status_name(RUN_PENDING), "shop", 0, 5, &total);
    assert_int_equal(total, 2);
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    l = runs_list(f, NULL, "nope", 0, 0, &total);
    assert_int_equal(total, 0);
    json_decref(l);
    q.status = "done";
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    assert_string_equal(err.msg, "unknown run status \"done\"");
    assert_null(text);
}

/* A run created at at_ms with input (its steps as create_run's). */
static void create_run_at(struct fixture *f, const char *run_id, int64_t at_ms, const char *input)
{
    static const struct transition_step_init steps[] = {
        { "a", "task", 3, "[]" },
        { "b", "task", 1, "[\"a\"]" },
    };
    struct transition t = { .kind = TR_RUN_CREATE,
                            .at_ms = at_ms,
                            .run_id = run_id,
                            .workflow_id = f->wf_id,
                            .input_json = input,
                            .steps = steps,
                            .n_steps = DUR_ARRAY_LEN(steps) };
    apply_ok(f, &t, NULL);
}

/* The ids a filtered list shows, newest first, joined by ',' (owned). */
static char *filtered(struct fixture *f, struct store_run_query q, int64_t *total)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL, buf[256] = "";
    json_t *l;

    l = parse_out(store_runs_list(f->s, &q, &text, total, &err), &text, &err);
    for (size_t i = 0; i < json_array_size(l); i++) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "", id_at(l, i));
    }
    json_decref(l);
    return xstrdup(buf);
}

#define ASSERT_FILTERED(f, q, want, want_total) \
    do {                                        \
        int64_t total_ = -1;                    \
        char *got_ = filtered(f, q, &total_);   \
        assert_string_equal(got_, want);        \
        assert_int_equal(total_, want_total);   \
        free(got_);                             \
    } while (0)

static void test_runs_list_filters(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store_run_query q = { .page = { 0, 0 } };
    char *text = NULL;
    int64_t total = 0;

    create_run_at(f, "run_1", T0 + 1000,
                  "{\"customer_id\":7,\"tier\":\"gold\",\"a\":{\"b\":true}}");
    create_run_at(f, "run_2", T0 + 2000, "{\"customer_id\":\"7\",\"tier\":\"gold\"}");
    create_run_at(f, "run_3", T0 + 3000, "{\"customer_id\":7.0,\"tier\":null,\"a\":{\"b\":false}}");
    create_run_at(f, "run_4", T0 + 4000, "{\"other\":1}");
    step_ok(f, TR_STEP_START, "run_2", "b", 1);
    fail_run(f, "run_2"); /* completed_at T0 + 50 */

    /* time ranges: after inclusive, before exclusive */
    q.created_after_ms = T0 + 2000;
    ASSERT_FILTERED(f, q, "run_4,run_3,run_2", 3);
    q.created_before_ms = T0 + 4000;
    ASSERT_FILTERED(f, q, "run_3,run_2", 2);
    q.page.limit = 1;
    q.page.offset = 1;
    ASSERT_FILTERED(f, q, "run_2", 2);
    q = (struct store_run_query){ .created_before_ms = T0 + 1000 };
    ASSERT_FILTERED(f, q, "", 0);
    q = (struct store_run_query){ .finished_after_ms = T0 + 50, .finished_before_ms = T0 + 51 };
    ASSERT_FILTERED(f, q, "run_2", 1);
    q = (struct store_run_query){ .finished_after_ms = T0 + 51 };
    ASSERT_FILTERED(f, q, "", 0);

    /* input: numbers by value, strings apart, nested paths, literals */
    q = (struct store_run_query){ .input_field = "customer_id", .input_value = "7" };
    ASSERT_FILTERED(f, q, "run_3,run_1", 2);
    q.input_value = "7.0";
    ASSERT_FILTERED(f, q, "run_3,run_1", 2);
    q.input_value = "\"7\"";
    ASSERT_FILTERED(f, q, "run_2", 1);
    q.input_value = "8";
    ASSERT_FILTERED(f, q, "", 0);
    q = (struct store_run_query){ .input_field = "tier", .input_value = "\"gold\"" };
    ASSERT_FILTERED(f, q, "run_2,run_1", 2);
    q.input_value = "null"; /* a null value, not a missing field */
    ASSERT_FILTERED(f, q, "run_3", 1);
    q = (struct store_run_query){ .input_field = "a.b", .input_value = "true" };
    ASSERT_FILTERED(f, q, "run_1", 1);
    q.input_value = "false";
    ASSERT_FILTERED(f, q, "run_3", 1);
    q = (struct store_run_query){ .input_field = "nope", .input_value = "null" };
    ASSERT_FILTERED(f, q, "", 0);

    /* combined with status and time */
    q = (struct store_run_query){ .status = "failed",
                                  .input_field = "tier",
                                  .input_value = "\"gold\"",
                                  .created_after_ms = T0 + 1500 };
    ASSERT_FILTERED(f, q, "run_2", 1);
    q.status = "pending";
    ASSERT_FILTERED(f, q, "", 0);

    /* hostile filters */
    q = (struct store_run_query){ .input_field = "a..b", .input_value = "1" };
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    assert_non_null(strstr(err.msg, "empty name"));
    q.input_field = "x'); DROP TABLE runs; --";
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    q.input_field = "a.b.c.d.e.f.g.h.i";
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    q.input_field = "tier";
    q.input_value = "{\"x\":1}";
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    q.input_value = "gold"; /* not JSON */
    assert_int_equal(store_runs_list(f->s, &q, &text, &total, &err), DURABLE_EINVAL);
    assert_null(text);
}

static void test_workflows_and_orders_lists(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store_page page = { 0, 0 };
    struct transition t = { .kind = TR_WORKFLOW_PUT,
                            .at_ms = T0 + 5,
                            .wf_name = "zeta",
                            .wf_definition =
                                    "{\"name\":\"zeta\",\"description\":\"last\",\"steps\":[]}" };
    char *text = NULL;
    int64_t total = 0;
    json_t *l, *w;

    apply_ok(f, &t, NULL);
    l = parse_out(store_workflows_list(f->s, page, &text, &total, &err), &text, &err);
    assert_int_equal(total, 2);
    w = json_array_get(l, 0);
    assert_string_equal(json_string_value(json_object_get(w, "name")), "zeta");
    assert_string_equal(json_string_value(json_object_get(w, "description")), "last");
    assert_int_equal(json_integer_value(json_object_get(w, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(w, "created_at")),
                        "2023-11-14T22:13:20.005Z");
    assert_null(json_object_get(w, "definition"));
    assert_true(json_is_null(json_object_get(json_array_get(l, 1), "description")));
    json_decref(l);

    w = doc_of(store_workflow_json, f, "zeta");
    assert_string_equal(
            json_string_value(json_object_get(json_object_get(w, "definition"), "description")),
            "last");
    json_decref(w);

    create_order(f, "ord_1", 1);
    t = (struct transition){
        .kind = TR_ORDER_CREATE, .at_ms = T0 + 9, .order_id = "ord_2", .order_amount = 2.5
    };
    apply_ok(f, &t, NULL);
    page.limit = 1;
    l = parse_out(store_orders_list(f->s, page, &text, &total, &err), &text, &err);
    assert_int_equal(total, 2);
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(id_at(l, 0), "ord_2");
    assert_true(json_real_value(json_object_get(json_array_get(l, 0), "amount")) == 2.5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "status")),
                        "pending");
    json_decref(l);
}

/* ---- inspection ---- */

static void test_counts_and_ping(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    int64_t runs[STORE_N_RUN_STATUSES], steps[STORE_N_STEP_STATUSES];

    create_run(f, "run_1", NULL, NULL, NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_2", "b", 1);
    fail_run(f, "run_2");
    assert_int_equal(store_count_runs(f->s, runs, &err), DURABLE_OK);
    assert_string_equal(store_run_statuses[0], run_status_name(RUN_PENDING));
    assert_int_equal(runs[0], 1);
    assert_string_equal(store_run_statuses[4], run_status_name(RUN_FAILED));
    assert_int_equal(runs[4], 1);
    assert_int_equal(runs[1] + runs[2] + runs[3] + runs[5], 0);
    assert_null(store_run_statuses[STORE_N_RUN_STATUSES]);
    assert_int_equal(store_count_steps(f->s, steps, &err), DURABLE_OK);
    assert_string_equal(store_step_statuses[0], step_status_name(STEP_S_PENDING));
    assert_int_equal(steps[0], 3);
    assert_string_equal(store_step_statuses[5], step_status_name(STEP_S_FAILED));
    assert_int_equal(steps[5], 1);
    assert_string_equal(store_step_statuses[7], step_status_name(STEP_S_CANCELLED));
    assert_int_equal(steps[7], 2);
    assert_null(store_step_statuses[STORE_N_STEP_STATUSES]);
    assert_int_equal(store_ping(f->s, &err), DURABLE_OK);
}

/* A START and its completion as one transition (TR_STEP_COMPLETE
 * with_start, what the writer makes of a chained pair): one change of the
 * step, both events with dense seqs, the run running; refused like a START
 * (nothing written) once the step has completed, and with an action. */
static void test_start_and_complete_at_once(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t;
    json_t *evs, *run;
    size_t n0;

    create_run(f, "run_1", NULL, NULL, NULL);
    t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 10);
    t.with_start = true;
    t.output_json = "{\"n\":1}";
    apply_ok(f, &t, NULL);
    assert_step_status(f, "run_1", "a", STEP_S_COMPLETED);
    assert_run_status(f, "run_1", RUN_RUNNING);
    run = doc_of(store_run_json, f, "run_1");
    assert_non_null(json_object_get(run, "started_at"));
    json_decref(run);
    evs = events_of(f, "run_1", 0);
    assert_int_equal(json_array_size(evs), 3);
    assert_seqs_dense(evs);
    assert_string_equal(event_type(evs, 1), "step_started");
    assert_string_equal(event_type(evs, 2), "step_completed");
    json_decref(evs);

    n0 = f->ev.n;
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "completed"));
    t = step_tr(TR_STEP_COMPLETE, "run_1", "b", 1, T0 + 20);
    t.with_start = true;
    t.action = "charge_payment";
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
    assert_step_status(f, "run_1", "b", STEP_S_PENDING);
    assert_int_equal(f->ev.n, n0);
    evs = events_of(f, "run_1", 0);
    assert_int_equal(json_array_size(evs), 3);
    json_decref(evs);
}

/* The output of step_id of run_id, as stored, parsed (owned). */
static json_t *run_step_output(struct fixture *f, const char *run_id, const char *step_id)
{
    json_t *run = doc_of(store_run_json, f, run_id);
    json_t *steps = json_object_get(run, "steps"), *out = NULL;

    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *st = json_array_get(steps, i);
        if (strcmp(json_string_value(json_object_get(st, "step_id")), step_id) == 0)
            out = json_incref(json_object_get(st, "output"));
    }
    json_decref(run);
    assert_non_null(out);
    return out;
}

/* One batch read ahead as the writer makes them (store_tx_prefetch, then
 * each transition in order): a run created, its steps started and
 * completed at once and the run finished, each transition's guard seeing
 * the ones before it (a second completion and a second finish refused); an
 * action refused among them takes back its own writes only; a step
 * completed beside one that waits leaves its run waiting; an output with
 * quotes, backslashes, a newline and a non-ASCII character is stored as
 * given; every event of the database is numbered densely. */
static void test_batch_create_to_finish(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    static const struct transition_step_init steps[] = { { "a", "task", 1, "[]" },
                                                         { "b", "log", 1, "[\"a\"]" } };
    static const char out_a[] = "{\"s\":\"q\\\"u\\\\o\\nte \\u00e9 {x,y}\"}";
    struct transition create = { .kind = TR_RUN_CREATE,
                                 .at_ms = T0 + 1,
                                 .run_id = "run_n",
                                 .workflow_id = f->wf_id,
                                 .input_json = "{}",
                                 .steps = steps,
                                 .n_steps = DUR_ARRAY_LEN(steps) };
    struct transition a = step_tr(TR_STEP_COMPLETE, "run_n", "a", 1, T0 + 2);
    struct transition b = step_tr(TR_STEP_COMPLETE, "run_n", "b", 1, T0 + 3);
    struct transition fin = step_tr(TR_RUN_FINISH, "run_n", NULL, 0, T0 + 4);
    struct transition refused = step_tr(TR_STEP_COMPLETE, "run_o", "a", 1, T0 + 5);
    struct transition wb = step_tr(TR_STEP_COMPLETE, "run_w", "b", 1, T0 + 6);
    struct transition wait = step_tr(TR_STEP_WAIT, "run_w", "a", 1, T0 + 1);
    const struct transition *batch[] = { &create, &a, &b, &b, &fin, &fin, &refused, &wb };
    static const char *const want[] = { "run_created",  "step_started",   "step_completed",
                                        "step_started", "step_completed", "run_completed" };
    json_t *evs, *out, *want_out = json_loads(out_a, 0, NULL);
    size_t n0;

    a.with_start = b.with_start = wb.with_start = true;
    a.output_json = out_a;
    b.output_json = "\"\\\\\"";
    fin.run_status = RUN_COMPLETED;
    fin.output_json = "{\"done\":true}";
    refused.action = "charge_payment";
    refused.output_json = "{}";
    wb.output_json = "1";
    create_order(f, "ord_1", 3);
    create_run(f, "run_o", "ord_1", NULL, NULL);
    step_ok(f, TR_STEP_START, "run_o", "a", 1);
    create_run(f, "run_w", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_w", "a", 1);
    wait.signal_name = "go";
    apply_ok(f, &wait, NULL);
    assert_run_status(f, "run_w", RUN_WAITING);
    n0 = f->ev.n;

    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_tx_prefetch(f->s, batch, DUR_ARRAY_LEN(batch), &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &create, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &a, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &b, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_apply(f->s, &b, &f->ev, NULL, &err), DURABLE_ECONFLICT);
    assert_int_equal(store_apply(f->s, &fin, &f->ev, NULL, &err), DURABLE_OK);
    err_clear(&err);
    assert_int_equal(store_apply(f->s, &fin, &f->ev, NULL, &err), DURABLE_ECONFLICT);
    err_clear(&err);
    assert_int_equal(store_apply(f->s, &refused, &f->ev, NULL, &err), DURABLE_EACTION);
    err_clear(&err);
    assert_int_equal(store_apply(f->s, &wb, &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);

    assert_int_equal(f->ev.n, n0 + DUR_ARRAY_LEN(want) + 2); /* and run_w's b */
    for (size_t i = 0; i < f->ev.n; i++)
        assert_int_equal(f->ev.items[i].global_id, (int64_t)i + 1);
    assert_run_status(f, "run_n", RUN_COMPLETED);
    assert_step_status(f, "run_n", "a", STEP_S_COMPLETED);
    assert_step_status(f, "run_n", "b", STEP_S_COMPLETED);
    evs = events_of(f, "run_n", 0);
    assert_int_equal(json_array_size(evs), DUR_ARRAY_LEN(want));
    for (size_t i = 0; i < DUR_ARRAY_LEN(want); i++)
        assert_string_equal(event_type(evs, i), want[i]);
    assert_seqs_dense(evs);
    assert_true(json_equal(
            json_object_get(json_object_get(json_array_get(evs, 2), "data"), "output"), want_out));
    json_decref(evs);
    out = run_step_output(f, "run_n", "a");
    assert_true(json_equal(out, want_out));
    json_decref(out);
    out = run_step_output(f, "run_n", "b");
    assert_string_equal(json_string_value(out), "\\");
    json_decref(out);

    assert_step_status(f, "run_o", "a", STEP_S_RUNNING);
    assert_int_equal(event_count(f, "run_o"), 2);
    assert_step_status(f, "run_w", "b", STEP_S_COMPLETED);
    assert_step_status(f, "run_w", "a", STEP_S_WAITING);
    assert_run_status(f, "run_w", RUN_WAITING);
    json_decref(want_out);
}

/* One transaction writes steps of two runs and cancels one of them right
 * after its step's start (its guard then needs no read): the cancel finds
 * the step the transaction started (a backend that holds step writes back
 * sends them before anything that reads or writes steps), and the other
 * run's step goes on to complete. */
static void test_batch_step_writes_in_order(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition s1 = step_tr(TR_STEP_START, "run_1", "a", 1, T0 + 2);
    struct transition s2 = step_tr(TR_STEP_START, "run_2", "a", 1, T0 + 2);
    struct transition c1 = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 3);
    struct transition d2 = step_tr(TR_STEP_COMPLETE, "run_2", "a", 1, T0 + 4);
    struct transition s2b = step_tr(TR_STEP_START, "run_2", "b", 1, T0 + 5);
    const struct transition *batch[] = { &s2, &s1, &c1, &d2, &s2b };
    json_t *out;

    c1.run_status = RUN_CANCELLED;
    d2.output_json = "{\"n\":2}";
    create_run(f, "run_1", NULL, NULL, NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    assert_int_equal(store_tx_begin(f->s, &err), DURABLE_OK);
    assert_int_equal(store_tx_prefetch(f->s, batch, DUR_ARRAY_LEN(batch), &err), DURABLE_OK);
    for (size_t i = 0; i < DUR_ARRAY_LEN(batch); i++)
        assert_int_equal(store_apply(f->s, batch[i], &f->ev, NULL, &err), DURABLE_OK);
    assert_int_equal(store_tx_commit(f->s, &f->ev, &err), DURABLE_OK);

    assert_run_status(f, "run_1", RUN_CANCELLED);
    assert_step_status(f, "run_1", "a", STEP_S_CANCELLED);
    assert_step_status(f, "run_1", "b", STEP_S_CANCELLED);
    assert_run_status(f, "run_2", RUN_RUNNING);
    assert_step_status(f, "run_2", "a", STEP_S_COMPLETED);
    assert_step_status(f, "run_2", "b", STEP_S_RUNNING);
    out = run_step_output(f, "run_2", "a");
    assert_int_equal(json_integer_value(json_object_get(out, "n")), 2);
    json_decref(out);
}

/* ---- signals ---- */

/* A signal to run_1: its result in *res (seq, the step that took it). */
static durable_code send_signal(struct fixture *f, const char *run_id, const char *id,
                                const char *name, const char *payload,
                                struct transition_result *res, durable_error *err)
{
    struct transition t = step_tr(TR_SIGNAL_SEND, run_id, NULL, 0, T0 + 100);

    t.signal_id = id;
    t.signal_name = name;
    t.output_json = payload;
    memset(res, 0, sizeof(*res));
    return apply1(f, &t, res, err);
}

/* Step step_id of run_1 starts, then waits for signal name. */
static void wait_for(struct fixture *f, const char *step_id, const char *name,
                     struct transition_result *res)
{
    struct transition t = step_tr(TR_STEP_WAIT, "run_1", step_id, 1, T0 + 200);

    step_ok(f, TR_STEP_START, "run_1", step_id, 1);
    t.signal_name = name;
    memset(res, 0, sizeof(*res));
    apply_ok(f, &t, res);
}

/* The output of step_id as compact JSON text (owned). */
static char *step_output(struct fixture *f, const char *step_id)
{
    json_t *run = doc_of(store_run_json, f, "run_1");
    json_t *steps = json_object_get(run, "steps");
    char *text = NULL;

    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *st = json_array_get(steps, i);
        if (strcmp(json_string_value(json_object_get(st, "step_id")), step_id) == 0)
            text = json_dumps(json_object_get(st, "output"), JSON_COMPACT | JSON_ENCODE_ANY);
    }
    json_decref(run);
    assert_non_null(text);
    return text;
}

static void assert_output(struct fixture *f, const char *step_id, const char *want)
{
    char *text = step_output(f, step_id);

    assert_string_equal(text, want);
    free(text);
}

/* Signals sent before a wait are kept and taken first sent, first taken,
 * each by one wait; a signal sent while a step waits completes it at
 * once; another name wakes nothing. */
static void test_signals_kept_and_taken(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result res;
    json_t *evs, *data;

    create_run(f, "run_1", NULL, NULL, NULL);
    assert_int_equal(send_signal(f, "run_1", "sig_1", "go", "{\"n\":1}", &res, &err), DURABLE_OK);
    assert_int_equal(res.seq, 2); /* after run_created */
    assert_string_equal(res.signal_step, "");
    assert_int_equal(send_signal(f, "run_1", "sig_2", "go", "{\"n\":2}", &res, &err), DURABLE_OK);
    assert_int_equal(res.seq, 3);

    wait_for(f, "a", "go", &res);
    assert_true(res.signal_taken);
    assert_string_equal(res.signal_payload, "{\"n\":1}");
    free(res.signal_payload);
    assert_step_status(f, "run_1", "a", STEP_S_COMPLETED);
    assert_output(f, "a", "{\"n\":1}");
    wait_for(f, "b", "go", &res);
    assert_true(res.signal_taken);
    free(res.signal_payload);
    assert_output(f, "b", "{\"n\":2}");

    /* None left: c waits, and the run with it. */
    wait_for(f, "c", "go", &res);
    assert_false(res.signal_taken);
    assert_null(res.signal_payload);
    assert_step_status(f, "run_1", "c", STEP_S_WAITING);
    assert_run_status(f, "run_1", RUN_WAITING);
    assert_int_equal(send_signal(f, "run_1", "sig_3", "other", NULL, &res, &err), DURABLE_OK);
    assert_string_equal(res.signal_step, "");
    assert_step_status(f, "run_1", "c", STEP_S_WAITING);
    assert_int_equal(send_signal(f, "run_1", "sig_4", "go", "[3]", &res, &err), DURABLE_OK);
    assert_string_equal(res.signal_step, "c");
    assert_step_status(f, "run_1", "c", STEP_S_COMPLETED);
    assert_output(f, "c", "[3]");
    assert_run_status(f, "run_1", RUN_RUNNING);

    evs = events_of(f, "run_1", 0);
    assert_seqs_dense(evs);
    assert_string_equal(event_type(evs, 1), "signal_received");
    data = json_object_get(json_array_get(evs, 1), "data");
    assert_string_equal(json_string_value(json_object_get(data, "signal_id")), "sig_1");
    assert_string_equal(json_string_value(json_object_get(data, "name")), "go");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(data, "payload"), "n")), 1);
    /* The last signal's event, then the completion it caused. */
    assert_string_equal(event_type(evs, json_array_size(evs) - 2), "signal_received");
    assert_string_equal(event_type(evs, json_array_size(evs) - 1), "step_completed");
    assert_true(json_is_null(json_object_get(
            json_object_get(json_array_get(evs, json_array_size(evs) - 3), "data"), "payload")));
    json_decref(evs);
}

/* A signal needs a run that exists and has not finished; a refused one
 * leaves nothing behind. */
static void test_signals_refused(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result res;
    struct transition t;
    size_t n;

    assert_int_equal(send_signal(f, "run_nope", "sig_1", "go", "1", &res, &err), DURABLE_ENOTFOUND);
    create_run(f, "run_1", NULL, NULL, NULL);
    t = step_tr(TR_RUN_FINISH, "run_1", NULL, 0, T0 + 50);
    t.run_status = RUN_CANCELLED;
    apply_ok(f, &t, NULL);
    n = event_count(f, "run_1");
    err_clear(&err);
    assert_int_equal(send_signal(f, "run_1", "sig_2", "go", "1", &res, &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "run_1"));
    assert_int_equal(event_count(f, "run_1"), n);
}

/* A map step's items (TR_MAP_ITEM): one event each, the progress over the
 * step's output shown as `progress` (output null) while it runs, the step
 * and the run still running; refused when the step is not running or at
 * another attempt, and by a finished run, writing nothing; once completed
 * the progress is counted from the output. */
static void test_map_items(void **state)
{
    static const struct transition_step_init steps[] = { { "each", "map", 1, "[]" } };
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition c = { .kind = TR_RUN_CREATE,
                            .at_ms = T0 + 1,
                            .run_id = "run_m",
                            .workflow_id = f->wf_id,
                            .input_json = "{}",
                            .steps = steps,
                            .n_steps = 1 };
    struct transition t = step_tr(TR_MAP_ITEM, "run_m", "each", 1, T0 + 10);
    json_t *run, *st, *evs, *e;
    size_t n;

    apply_ok(f, &c, NULL);
    t.map_event = "map_item_completed";
    t.map_event_json = "{\"index\":0,\"attempt\":1,\"output\":7,\"map_attempt\":1}";
    t.output_json = "{\"total\":2,\"done\":1,\"failed\":0,\"running\":1}";
    n = event_count(f, "run_m");
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT); /* pending */
    assert_int_equal(event_count(f, "run_m"), n);
    step_ok(f, TR_STEP_START, "run_m", "each", 1);
    t.attempt = 2;
    err_clear(&err);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT); /* another attempt */
    t.attempt = 1;
    apply_ok(f, &t, NULL);
    t.map_event = "map_item_failed";
    t.map_event_json = "{\"index\":1,\"attempt\":1,\"code\":\"x\",\"message\":\"m\","
                       "\"final\":true,\"map_attempt\":1}";
    t.output_json = "{\"total\":2,\"done\":1,\"failed\":1,\"running\":0}";
    apply_ok(f, &t, NULL);
    assert_step_status(f, "run_m", "each", STEP_S_RUNNING);
    assert_run_status(f, "run_m", RUN_RUNNING);

    run = doc_of(store_run_json, f, "run_m");
    st = json_array_get(json_object_get(run, "steps"), 0);
    assert_true(json_is_null(json_object_get(st, "output")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "progress"), "failed")),
                     1);
    json_decref(run);
    evs = events_of(f, "run_m", 0);
    assert_int_equal(json_array_size(evs), n + 3);
    e = json_array_get(evs, n + 1);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "map_item_completed");
    assert_string_equal(json_string_value(json_object_get(e, "step_id")), "each");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(e, "data"), "output")), 7);
    assert_seqs_dense(evs);
    json_decref(evs);

    t = step_tr(TR_STEP_COMPLETE, "run_m", "each", 1, T0 + 20);
    t.output_json = "{\"results\":[7,null],\"errors\":[{\"index\":1}]}";
    apply_ok(f, &t, NULL);
    run = doc_of(store_run_json, f, "run_m");
    st = json_array_get(json_object_get(run, "steps"), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "progress"), "done")),
                     1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "progress"), "total")),
                     2);
    assert_true(json_is_object(json_object_get(st, "output")));
    json_decref(run);
    t = step_tr(TR_MAP_ITEM, "run_m", "each", 1, T0 + 30); /* a late item */
    t.map_event = "map_item_completed";
    t.map_event_json = "{}";
    n = event_count(f, "run_m");
    err_clear(&err);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_int_equal(event_count(f, "run_m"), n);
}

int main(void)
{
#define T(fn)  cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TE(fn) cmocka_unit_test_setup_teardown(fn, setup_empty, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_error),
        T(test_workflow_versions),
        T(test_run_create_idempotency),
        T(test_run_create_refusals),
        T(test_transitions_and_seqs),
        T(test_event_data),
        T(test_guards),
        T(test_run_finish_cancels_leftovers),
        T(test_tx_rollback_discards),
        T(test_actions_move_order),
        T(test_action_refused_leaves_no_trace),
        T(test_action_refused_step_still_running),
        T(test_registered_action_commits_with_step),
        T(test_registered_action_refused_writes_nothing),
        T(test_action_without_order_is_skipped),
        T(test_order_create),
        T(test_unfinished_listing),
        T(test_unfinished_pages_and_workflows),
        T(test_unfinished_stops),
        T(test_run_load),
        T(test_json_shapes),
        T(test_not_found_reads),
        T(test_recovered_event),
        T(test_batch_read_ahead),
        T(test_recovered_refusals),
        T(test_reads_beside_the_writer),
        T(test_global_ids),
        T(test_events_since),
        T(test_run_retry_transition),
        T(test_runs_list),
        T(test_runs_list_filters),
        T(test_workflows_and_orders_lists),
        T(test_counts_and_ping),
        T(test_start_and_complete_at_once),
        T(test_batch_create_to_finish),
        T(test_batch_step_writes_in_order),
        T(test_signals_kept_and_taken),
        T(test_signals_refused),
        T(test_map_items),
        T(test_delete_run),
        T(test_purge_selects),
        T(test_retention_windows),
        T(test_deleted_event_ids_not_reused),
        T(test_workflow_version_delete),
        T(test_schedule_ticks_once),
        T(test_run_pause_transitions),
        T(test_run_create_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
