/*
 * test_store_delete.c - the conformance tests of deletion (TR_RUNS_DELETE,
 * TR_WORKFLOW_DELETE), linked into test_store, so they run on SQLite and,
 * as test_store_on_pg, on PostgreSQL: a finished run goes with its steps,
 * events and signals, an unfinished one is refused, a purge selects by
 * finish time, workflow and status, oldest first, at most its limit, a dry
 * run counts, event ids are never given out again, the cache of finished
 * runs forgets a deleted one, a retention pass takes each workflow
 * version's own window, else the server's, and a workflow version goes only
 * without runs.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_test.h"
#include "test_store_delete.h"

/* Run run_id finishes with status st at T0 + at. */
static void finish(struct fixture *f, const char *run_id, enum run_status st, int64_t at)
{
    struct transition t = step_tr(TR_RUN_FINISH, run_id, NULL, 0, T0 + at);

    t.run_status = st;
    t.error_message = st == RUN_FAILED ? "boom" : NULL;
    apply_ok(f, &t, NULL);
}

static durable_code purge(struct fixture *f, const struct store_purge *q, int64_t *out_n,
                          durable_error *err)
{
    struct transition t = { .kind = TR_RUNS_DELETE, .at_ms = T0 + 1000, .purge = q };
    struct transition_result res;
    durable_code rc;

    memset(&res, 0, sizeof(res));
    rc = apply1(f, &t, &res, err);
    *out_n = res.deleted;
    return rc;
}

static durable_code delete_run(struct fixture *f, const char *run_id, durable_error *err)
{
    struct store_purge q = { .run_id = run_id, .finished_before_ms = INT64_MAX, .limit = 1 };
    int64_t n = 0;
    durable_code rc = purge(f, &q, &n, err);

    if (rc == DURABLE_OK)
        assert_int_equal(n, 1);
    return rc;
}

static void assert_gone(struct fixture *f, const char *run_id)
{
    durable_error err = { DURABLE_OK, "" };
    char *out = NULL;
    enum run_status st;

    assert_int_equal(store_run_json(f->s, run_id, &out, &err), DURABLE_ENOTFOUND);
    assert_int_equal(store_events_json(f->s, run_id, 0, &out, &err), DURABLE_ENOTFOUND);
    assert_int_equal(store_run_status(f->s, run_id, &st, &err), DURABLE_ENOTFOUND);
}

static int64_t count_runs(struct fixture *f)
{
    durable_error err = { DURABLE_OK, "" };
    int64_t c[STORE_N_RUN_STATUSES], n = 0;

    assert_int_equal(store_count_runs(f->s, c, &err), DURABLE_OK);
    for (int i = 0; i < STORE_N_RUN_STATUSES; i++)
        n += c[i];
    return n;
}

void test_delete_run(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_SIGNAL_SEND, "run_1", NULL, 0, T0 + 5);
    size_t before;
    int64_t c[STORE_N_STEP_STATUSES], steps = 0;
    char *doc = NULL;

    create_run(f, "run_1", NULL, "k1", NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.signal_id = "sig_1";
    t.signal_name = "go";
    t.output_json = "{}";
    apply_ok(f, &t, NULL); /* a signal row of run_1 */
    before = event_count(f, "run_2");
    /* unfinished: refused, and says why */
    assert_int_equal(delete_run(f, "run_1", &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "only a finished run"));
    assert_int_equal(delete_run(f, "run_none", &err), DURABLE_ENOTFOUND);
    finish(f, "run_1", RUN_CANCELLED, 9);
    /* read once: the finished run's document is cached */
    assert_int_equal(store_run_json(f->s, "run_1", &doc, &err), DURABLE_OK);
    free(doc);
    assert_int_equal(delete_run(f, "run_1", &err), DURABLE_OK);
    assert_gone(f, "run_1");
    assert_int_equal(delete_run(f, "run_1", &err), DURABLE_ENOTFOUND);
    /* the other run is whole; no step of run_1 is left */
    assert_int_equal(event_count(f, "run_2"), before);
    assert_run_status(f, "run_2", RUN_PENDING);
    assert_int_equal(count_runs(f), 1);
    assert_int_equal(store_count_steps(f->s, c, &err), DURABLE_OK);
    for (int i = 0; i < STORE_N_STEP_STATUSES; i++)
        steps += c[i];
    assert_int_equal(steps, 3);
    /* its idempotency key is free again: a new run takes it */
    {
        struct transition_result res;
        create_run(f, "run_3", NULL, "k1", &res);
        assert_true(res.created);
    }
}

void test_purge_selects(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result other;
    struct store_purge q = { .finished_before_ms = INT64_MAX, .limit = 100 };
    int64_t n = -1;
    static const char *const ids[] = { "run_a", "run_b", "run_c", "run_d", "run_e" };
    static const enum run_status st[] = { RUN_COMPLETED, RUN_FAILED, RUN_COMPLETED, RUN_CANCELLED,
                                          RUN_COMPLETED };
    /* finished at T0+50, +40, +30, +20, +10: run_e finished first */

    for (size_t i = 0; i < DUR_ARRAY_LEN(ids); i++) {
        create_run(f, ids[i], NULL, NULL, NULL);
        finish(f, ids[i], st[i], 50 - 10 * (int64_t)i);
    }
    create_run(f, "run_open", NULL, NULL, NULL); /* unfinished: never selected */
    put_workflow(f, "other", "{\"name\":\"other\",\"steps\":[]}", &other);
    {
        struct transition t = { .kind = TR_RUN_CREATE,
                                .at_ms = T0 + 1,
                                .run_id = "run_x",
                                .workflow_id = other.id,
                                .input_json = "{}" };
        apply_ok(f, &t, NULL);
        finish(f, "run_x", RUN_COMPLETED, 5);
    }
    /* dry runs count and delete nothing */
    q.dry_run = true;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 6);
    q.workflow = "shop";
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 5);
    q.status = "completed";
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 3);
    q.status = NULL;
    q.finished_before_ms = T0 + 30; /* run_e (10) and run_d (20) */
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(count_runs(f), 7);
    /* a status that is not a finished one is refused */
    q.status = "running";
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_EINVAL);
    q.status = NULL;
    /* the oldest first, at most the limit */
    q.dry_run = false;
    q.finished_before_ms = INT64_MAX;
    q.limit = 2;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_gone(f, "run_e");
    assert_gone(f, "run_d");
    assert_run_status(f, "run_c", RUN_COMPLETED);
    q.limit = 0;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_EINVAL);
    /* by status, then the rest of the workflow */
    q.limit = 100;
    q.status = "failed";
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    assert_gone(f, "run_b");
    q.status = NULL;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 0);
    assert_run_status(f, "run_open", RUN_PENDING);
    assert_run_status(f, "run_x", RUN_COMPLETED); /* another workflow */
    assert_int_equal(count_runs(f), 2);
}

/* A run of a new workflow version named name (own window retain_ms, 0:
 * none), finished at T0 + 10. */
static void finished_run_of(struct fixture *f, const char *name, int64_t retain_ms,
                            const char *run_id)
{
    char def[128];
    struct transition_result wf;
    struct transition w = { .kind = TR_WORKFLOW_PUT,
                            .at_ms = T0,
                            .wf_name = name,
                            .wf_definition = def,
                            .wf_retain_ms = retain_ms };
    struct transition t = {
        .kind = TR_RUN_CREATE, .at_ms = T0 + 1, .run_id = run_id, .input_json = "{}"
    };

    snprintf(def, sizeof(def), "{\"name\":\"%s\",\"steps\":[]}", name);
    apply_ok(f, &w, &wf);
    t.workflow_id = wf.id;
    apply_ok(f, &t, NULL);
    finish(f, run_id, RUN_COMPLETED, 10);
}

void test_retention_windows(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store_purge q = { .finished_before_ms = INT64_MAX, .limit = 100, .dry_run = true };
    int64_t n = -1;

    create_run(f, "run_plain", NULL, NULL, NULL); /* "shop": no window of its own */
    finish(f, "run_plain", RUN_COMPLETED, 10);
    finished_run_of(f, "short", 100, "run_short");
    finished_run_of(f, "long", 1000000, "run_long");
    create_run(f, "run_open", NULL, NULL, NULL);
    /* 500 ms after they finished, no server window: only the short one's
     * window has passed */
    q.retain_now_ms = T0 + 510;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    /* a server window of 200 ms takes the version without one too, and
     * never the long one */
    q.retain_default_ms = 200;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    /* a server window longer than the short one's keeps only the plain */
    q.retain_default_ms = 1000;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    /* the other filters still hold */
    q.retain_default_ms = 200;
    q.workflow = "short";
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    q.workflow = NULL;
    q.dry_run = false;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 2);
    assert_gone(f, "run_short");
    assert_gone(f, "run_plain");
    assert_run_status(f, "run_long", RUN_COMPLETED);
    assert_run_status(f, "run_open", RUN_PENDING);
    /* long after: the long one goes at last */
    q.retain_now_ms = T0 + 10 + 1000000 + 1;
    assert_int_equal(purge(f, &q, &n, &err), DURABLE_OK);
    assert_int_equal(n, 1);
    assert_gone(f, "run_long");
    assert_run_status(f, "run_open", RUN_PENDING);
}

void test_deleted_event_ids_not_reused(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    int64_t last, first_new;
    json_t *evs;

    create_run(f, "run_1", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    finish(f, "run_1", RUN_COMPLETED, 9);
    last = f->ev.items[f->ev.n - 1].global_id;
    assert_true(last >= 3);
    assert_int_equal(delete_run(f, "run_1", &err), DURABLE_OK);
    store_events_clear(&f->ev);
    create_run(f, "run_2", NULL, NULL, NULL);
    first_new = f->ev.items[0].global_id;
    assert_int_equal(first_new, last + 1);
    evs = events_of(f, "run_2", 0);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(evs, 0), "seq")), 1);
    json_decref(evs);
}

void test_workflow_version_delete(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition_result v1, v2;
    struct transition t = { .kind = TR_WORKFLOW_DELETE, .at_ms = T0, .wf_name = "solo" };
    char *out = NULL;

    put_workflow(f, "solo", "{\"name\":\"solo\",\"steps\":[]}", &v1);
    put_workflow(f, "solo", "{\"name\":\"solo\",\"description\":\"2\",\"steps\":[]}", &v2);
    assert_int_equal(v2.version, 2);
    t.wf_version = 1;
    apply_ok(f, &t, NULL);
    assert_int_equal(store_workflow_json(f->s, v1.id, &out, &err), DURABLE_ENOTFOUND);
    assert_int_equal(store_workflow_json(f->s, v2.id, &out, &err), DURABLE_OK);
    free(out);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ENOTFOUND);
    /* a version with a run is refused until the run is gone */
    create_run(f, "run_1", NULL, NULL, NULL); /* of shop version 1 */
    t.wf_name = "shop";
    err_clear(&err);
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "has runs"));
    finish(f, "run_1", RUN_COMPLETED, 9);
    assert_int_equal(delete_run(f, "run_1", &err), DURABLE_OK);
    apply_ok(f, &t, NULL);
    assert_int_equal(store_workflow_json(f->s, "shop", &out, &err), DURABLE_ENOTFOUND);
    t.wf_name = NULL;
    assert_int_equal(apply1(f, &t, NULL, &err), DURABLE_EINVAL);
}
