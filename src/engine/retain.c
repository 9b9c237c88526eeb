/*
 * retain.c - deleting finished runs: retention's passes on the scheduler's
 * timer heap, and the public durable_run_delete, durable_runs_purge and
 * durable_workflow_delete. Every deletion is a transition (TR_RUNS_DELETE,
 * TR_WORKFLOW_DELETE) the writer commits like any other, in batches of at
 * most DURABLE_PURGE_BATCH runs, so other commits go between two batches
 * and a crash leaves each run with all its rows or none.
 *
 * Retention (durable_options.retain_finished_ms, and a workflow version's
 * own retain_finished, which the store keeps beside it): a TM_RETAIN timer
 * submits one batch (runs finished before now minus their version's window,
 * or minus the engine's); when it commits, a full batch submits the next at
 * once, a partial one arms the timer for the next pass (a tenth of the
 * engine's window, within 1 s and DURABLE_RETAIN_PASS_MAX_MS; without one,
 * DURABLE_RETAIN_PASS_MAX_MS, since only the store knows the versions'
 * windows). No thread of its own.
 *
 * Scheduler thread for the sched_retain_* functions; the public functions
 * from any thread.
 */
#include "util/common.h"

#include "engine/engine_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t pass_interval(const struct sched *s)
{
    int64_t ms = s->d->retain_finished_ms / 10;

    if (s->d->retain_finished_ms == 0)
        return DURABLE_RETAIN_PASS_MAX_MS;
    if (ms < 1000)
        ms = 1000;
    if (ms > DURABLE_RETAIN_PASS_MAX_MS)
        ms = DURABLE_RETAIN_PASS_MAX_MS;
    return ms;
}

void sched_retain_init(struct sched *s)
{
    if (s->d->recovery == DURABLE_RECOVER_ALL)
        sched_timer_push_plain(s, TM_RETAIN, clock_wall_ms() + 1000);
}

void sched_retain_due(struct sched *s)
{
    struct commit_item *ci;
    struct store_purge *q;

    if (s->retain_busy)
        return;
    ci = commit_item_new(TR_RUNS_DELETE, NULL);
    q = xcalloc(1, sizeof(*q));
    q->finished_before_ms = INT64_MAX;
    q->retain_now_ms = clock_wall_ms();
    q->retain_default_ms = s->d->retain_finished_ms;
    q->limit = DURABLE_PURGE_BATCH;
    ci->own[ci->n_own++] = q;
    ci->t.purge = q;
    ci->t.at_ms = clock_wall_ms();
    ci->notify_sched = true;
    s->retain_busy = true;
    if (engine_commit_submit(s->d, ci) != DURABLE_OK) {
        commit_item_free(ci); /* shutting down */
        s->retain_busy = false;
    }
}

void sched_retain_committed(struct sched *s, struct commit_item *ci)
{
    s->retain_busy = false;
    if (ci->code == DURABLE_OK && ci->result.deleted >= DURABLE_PURGE_BATCH) {
        log_debug("retention: deleted %lld finished runs, more to go",
                  (long long)ci->result.deleted);
        sched_retain_due(s);
        return;
    }
    if (ci->code == DURABLE_OK && ci->result.deleted > 0)
        log_debug("retention: deleted %lld finished runs", (long long)ci->result.deleted);
    else if (ci->code != DURABLE_OK)
        log_warn("retention: a batch of deletions failed (%s); trying again later",
                 durable_strerror(ci->code));
    sched_timer_push_plain(s, TM_RETAIN, clock_wall_ms() + pass_interval(s));
}

/* ---- the public API ---- */

static durable_code delete_batch(durable *d, const struct store_purge *q, int64_t *out_n,
                                 durable_error *err)
{
    struct commit_item *ci = commit_item_new(TR_RUNS_DELETE, NULL);
    struct transition_result res;
    durable_code rc;

    ci->t.purge = q;
    ci->t.at_ms = clock_wall_ms();
    memset(&res, 0, sizeof(res));
    rc = engine_commit_wait(d, ci, &res, err);
    *out_n = rc == DURABLE_OK ? res.deleted : 0;
    return rc;
}

durable_code durable_run_delete(durable *d, const char *run_id, durable_error *err)
{
    struct store_purge q = { .run_id = run_id, .finished_before_ms = INT64_MAX, .limit = 1 };
    int64_t n = 0;

    if (!d || !run_id || !run_id[0])
        return err_set(err, DURABLE_EINVAL, "deleting a run needs its id");
    return delete_batch(d, &q, &n, err);
}

durable_code durable_runs_purge(durable *d, const durable_purge *p, int64_t *out_deleted,
                                durable_error *err)
{
    struct store_purge q = { .limit = DURABLE_PURGE_BATCH };
    enum run_status st;
    int64_t n = 0, total = 0;
    durable_code rc;

    if (out_deleted)
        *out_deleted = 0;
    if (!d || !p)
        return err_set(err, DURABLE_EINVAL, "a purge needs an engine and what to delete");
    if (p->status && (!run_status_parse(p->status, &st) || !run_status_is_final(st)))
        return err_set(err, DURABLE_EINVAL,
                       "only finished runs are deleted: status is completed, failed or "
                       "cancelled, got \"%.40s\"",
                       p->status);
    q.finished_before_ms = p->finished_before_ms > 0 ? p->finished_before_ms : INT64_MAX;
    q.workflow = p->workflow && p->workflow[0] ? p->workflow : NULL;
    q.status = p->status;
    q.dry_run = p->dry_run;
    do {
        rc = delete_batch(d, &q, &n, err);
        total += n;
    } while (rc == DURABLE_OK && !q.dry_run && n >= q.limit);
    if (out_deleted)
        *out_deleted = total;
    return rc;
}

durable_code durable_workflow_delete(durable *d, const char *name, int version, durable_error *err)
{
    struct commit_item *ci;

    if (!d || !name || !name[0])
        return err_set(err, DURABLE_EINVAL, "deleting a workflow version needs its name");
    if (version < 1)
        return err_set(err, DURABLE_EINVAL, "a workflow version is 1 or more, got %d", version);
    ci = commit_item_new(TR_WORKFLOW_DELETE, NULL);
    ci->t.wf_name = commit_item_str(ci, name);
    ci->t.wf_version = version;
    ci->t.at_ms = clock_wall_ms();
    return engine_commit_wait(d, ci, NULL, err);
}
