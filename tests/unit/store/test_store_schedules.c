/*
 * test_store_schedules.c - the conformance tests of schedules
 * (TR_SCHEDULE_PUT, TR_SCHEDULE_SET, TR_SCHEDULE_TICK and TR_RUN_CREATE
 * with a tick), linked into test_store, so they run on SQLite and, as
 * test_store_on_pg, on PostgreSQL: a tick fires once, with its run in one
 * transaction or skipped, a tick not after the last is refused having
 * written nothing, and pause, resume, replace and delete.
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
#include "test_store_schedules.h"
#include "util/util.h"

static void copy_schedule(const struct schedule_record *r, void *ud)
{
    struct schedule_record *out = ud;

    *out = *r;
    out->workflow_name = xstrdup(r->workflow_name);
    out->cron = r->cron ? xstrdup(r->cron) : NULL;
    out->tz = xstrdup(r->tz);
    out->input_json = xstrdup(r->input_json);
    out->overlap = xstrdup(r->overlap);
    out->catch_up = xstrdup(r->catch_up);
}

static struct schedule_record read_schedule(struct fixture *f, const char *id)
{
    struct schedule_record r = { .fired = -1 };
    durable_error err = { 0 };

    if (store_schedules_read(f->s, id, copy_schedule, &r, &err) != DURABLE_OK)
        fail_msg("store_schedules_read: %s", err.msg);
    return r;
}

static durable_code fire(struct fixture *f, const char *id, int64_t tick, bool with_run,
                         durable_error *err)
{
    static const struct transition_step_init steps[] = { { "a", "task", 1, "[]" } };
    char key[128];
    struct transition t = { .kind = with_run ? TR_RUN_CREATE : TR_SCHEDULE_TICK,
                            .at_ms = tick,
                            .schedule_id = id,
                            .tick_ms = tick,
                            .workflow_id = f->wf_id,
                            .input_json = "{}",
                            .idempotency_key = key,
                            .steps = steps,
                            .n_steps = 1 };

    snprintf(key, sizeof key, "schedule:%s:%lld", id, (long long)tick);
    err_clear(err);
    return apply1(f, &t, NULL, err);
}

/* A tick fires once: with its run (the run and last_tick in one
 * transaction) or skipped; again, or an earlier one, is refused having
 * written nothing. Pause, resume, replace and delete. */
void test_schedule_ticks_once(void **state)
{
    struct fixture *f = *state;
    struct schedule_record def = { .id = "nightly",
                                   .workflow_name = (char *)"wf",
                                   .every_ms = 1000,
                                   .tz = (char *)"UTC",
                                   .input_json = (char *)"{\"a\":1}",
                                   .overlap = (char *)"skip",
                                   .catch_up = (char *)"last",
                                   .catch_up_max = 100,
                                   .anchor_ms = T0 };
    struct transition put = { .kind = TR_SCHEDULE_PUT, .at_ms = T0, .schedule = &def };
    struct transition set = { .kind = TR_SCHEDULE_SET, .at_ms = T0, .schedule_id = "nightly" };
    struct transition_result res;
    struct schedule_record r;
    durable_error err = { 0 };
    int64_t total = 0;
    struct store_run_query q = { .page = { .limit = 10 } };
    char *page = NULL;

    apply_ok(f, &put, &res);
    assert_true(res.created);
    r = read_schedule(f, "nightly");
    assert_string_equal(r.workflow_name, "wf");
    assert_null(r.cron);
    assert_true(r.every_ms == 1000 && r.last_tick_ms == 0 && r.fired == 0 && !r.paused);
    schedule_record_release(&r);

    assert_int_equal(fire(f, "nightly", T0 + 1000, true, &err), DURABLE_OK);
    assert_int_equal(fire(f, "nightly", T0 + 1000, true, &err), DURABLE_ECONFLICT);
    assert_non_null(strstr(err.msg, "not after its last tick"));
    assert_int_equal(fire(f, "nightly", T0 + 1000, false, &err), DURABLE_ECONFLICT);
    assert_int_equal(fire(f, "nightly", T0 + 500, true, &err), DURABLE_ECONFLICT);
    assert_int_equal(fire(f, "nightly", T0 + 2000, false, &err), DURABLE_OK);
    assert_int_equal(fire(f, "nightly", T0 + 2000, true, &err), DURABLE_ECONFLICT);
    assert_int_equal(fire(f, "nightly", T0 + 3000, true, &err), DURABLE_OK);
    assert_int_equal(fire(f, "nosuch", T0 + 3000, true, &err), DURABLE_ENOTFOUND);
    r = read_schedule(f, "nightly");
    assert_true(r.last_tick_ms == T0 + 3000 && r.fired == 2 && r.skipped == 1);
    schedule_record_release(&r);
    /* Two runs, one per fired tick. */
    assert_int_equal(store_runs_list(f->s, &q, &page, &total, &err), DURABLE_OK);
    free(page);
    assert_true(total == 2);

    /* Replacing the definition keeps the last tick and counts. */
    def.every_ms = 0;
    def.cron = (char *)"*/5 * * * *";
    apply_ok(f, &put, &res);
    assert_false(res.created);
    r = read_schedule(f, "nightly");
    assert_string_equal(r.cron, "*/5 * * * *");
    assert_true(r.every_ms == 0 && r.last_tick_ms == T0 + 3000 && r.fired == 2);
    schedule_record_release(&r);

    set.schedule_op = SCHEDULE_PAUSE;
    apply_ok(f, &set, NULL);
    r = read_schedule(f, "nightly");
    assert_true(r.paused);
    schedule_record_release(&r);
    set.schedule_op = SCHEDULE_RESUME;
    apply_ok(f, &set, NULL);
    r = read_schedule(f, "nightly");
    assert_false(r.paused);
    schedule_record_release(&r);
    set.schedule_op = SCHEDULE_DELETE;
    apply_ok(f, &set, NULL);
    assert_int_equal(store_schedules_read(f->s, "nightly", copy_schedule, &r, &err),
                     DURABLE_ENOTFOUND);
    assert_int_equal(apply1(f, &set, NULL, &err), DURABLE_ENOTFOUND);
}
