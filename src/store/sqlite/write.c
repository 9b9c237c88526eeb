/*
 * write.c - the SQLite backend's row operations (struct store_rows_ops,
 * backend.h): the reads and writes store_apply (store/apply.c) decides
 * over, each one or a few cached statements on the write connection,
 * inside the writer's open transaction. Nothing here decides whether a
 * transition applies: the guards and events are apply.c's.
 *
 * Event numbering: s->last_gid is the last global id given out (read at
 * store_tx_begin, given back by events_undo); s->seq_run/seq_last the last
 * seq of one run, known inside the transaction (read by run_get, or given
 * out by the last append), so that numbering the next event of that run
 * needs no statement.
 *
 * Writer thread only.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdio.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

/* ---- reads ---- */

/* Copies column col's text into out (out_len bytes), truncated, "" for
 * NULL. Not snprintf: this runs four times per step transition. */
static void col_copy(sqlite3_stmt *st, int col, char *out, size_t out_len)
{
    const char *v = col_text(st, col);
    size_t n = v ? (size_t)sqlite3_column_bytes(st, col) : 0;

    if (n >= out_len)
        n = out_len - 1;
    if (n > 0)
        memcpy(out, v, n);
    out[n] = '\0';
}

static durable_code sqlite_run_get(struct store *base, const char *run_id, const char *step_id,
                                   struct store_run_state *out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&s->w, ST_RUN_STEP_GUARD, &st, err, "ss", run_id, step_id);

    memset(out, 0, sizeof(*out));
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &out->has_run, err);
    if (rc == DURABLE_OK && out->has_run) {
        col_copy(st, 0, out->run_status, sizeof(out->run_status));
        col_copy(st, 1, out->order_id, sizeof(out->order_id));
        out->has_step = col_text(st, 3) != NULL;
        col_copy(st, 3, out->step_status, sizeof(out->step_status));
        out->attempt = sqlite3_column_int(st, 4);
        col_copy(st, 5, out->step_type, sizeof(out->step_type));
        /* The events that follow are numbered from here. */
        snprintf(s->seq_run, sizeof(s->seq_run), "%s", run_id);
        s->seq_last = sqlite3_column_int64(st, 2);
    }
    stmt_release(st);
    return rc;
}

static durable_code sqlite_run_by_key(struct store *base, const char *workflow_id, const char *key,
                                      char out[ID_MAX], bool *out_found, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&s->w, ST_RUN_BY_KEY, &st, err, "ss", workflow_id, key);

    *out_found = false;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    if (rc == DURABLE_OK && *out_found)
        col_copy_id(st, 0, out);
    stmt_release(st);
    return rc;
}

static durable_code sqlite_workflow_exists(struct store *base, const char *workflow_id,
                                           bool *out_found, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&s->w, ST_WF_EXISTS, &st, err, "s", workflow_id);

    *out_found = false;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    stmt_release(st);
    return rc;
}

static durable_code sqlite_workflow_latest(struct store *base, const char *name,
                                           const char *definition, struct transition_result *out,
                                           bool *out_same, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->w, ST_WF_LATEST, &st, err, "s", name);

    out->version = 0;
    *out_same = false;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && has_row) {
        const char *def = col_text(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        col_copy_id(st, 0, out->id);
        out->version = sqlite3_column_int(st, 1);
        *out_same = def && len == strlen(definition) && memcmp(def, definition, len) == 0;
    }
    stmt_release(st);
    return rc;
}

static durable_code sqlite_order_get(struct store *base, const char *order_id,
                                     char out[STORE_NAME_MAX], bool *out_found, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&s->w, ST_ORDER_STATUS, &st, err, "s", order_id);

    *out_found = false;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    if (rc == DURABLE_OK && *out_found)
        col_copy(st, 0, out, STORE_NAME_MAX);
    stmt_release(st);
    return rc;
}

/* ---- writes ---- */

static durable_code sqlite_step_write(struct store *base, enum store_step_write w,
                                      const struct transition *t, bool *out_changed,
                                      durable_error *err)
{
    struct conn *c = &sqlite_of(base)->w;
    durable_code rc;

    switch (w) {
    case STEP_W_START:
        rc = stmt_exec(c, ST_STEP_START, err, "ssiI", t->run_id, t->step_id, t->attempt, t->at_ms);
        break;
    case STEP_W_RUN:
        rc = stmt_exec(c, ST_STEP_RUN, err, "ssiIs", t->run_id, t->step_id, t->attempt, t->at_ms,
                       t->output_json);
        break;
    case STEP_W_COMPLETE:
        rc = stmt_exec(c, ST_STEP_COMPLETE, err, "sssI", t->run_id, t->step_id, t->output_json,
                       t->at_ms);
        break;
    case STEP_W_RETRY:
        rc = stmt_exec(c, ST_STEP_RETRY, err, "ssIss", t->run_id, t->step_id, t->wake_at_ms,
                       t->error_message, t->error_code);
        break;
    case STEP_W_FAIL:
        rc = stmt_exec(c, ST_STEP_FAIL, err, "ssIss", t->run_id, t->step_id, t->at_ms,
                       t->error_message, t->error_code);
        break;
    case STEP_W_SKIP:
        rc = stmt_exec(c, ST_STEP_SKIP, err, "ssI", t->run_id, t->step_id, t->at_ms);
        break;
    case STEP_W_WAIT:
        rc = stmt_exec(c, ST_STEP_WAIT, err, "ssTs", t->run_id, t->step_id, t->wake_at_ms,
                       t->signal_name);
        break;
    case STEP_W_RESTART:
        rc = stmt_exec(c, ST_STEP_RESTART, err, "ssI", t->run_id, t->step_id, t->at_ms);
        break;
    case STEP_W_PROGRESS:
        rc = stmt_exec(c, ST_STEP_PROGRESS, err, "sss", t->run_id, t->step_id, t->output_json);
        break;
    default:
        return err_set(err, DURABLE_EINVAL, "unknown step write %d", (int)w);
    }
    if (out_changed)
        *out_changed = rc == DURABLE_OK && sqlite3_changes(c->db) > 0;
    return rc;
}

static durable_code sqlite_run_write(struct store *base, enum store_run_write w,
                                     const struct transition *t, durable_error *err)
{
    struct conn *c = &sqlite_of(base)->w;
    durable_code rc;

    switch (w) {
    case RUN_W_START:
        return stmt_exec(c, ST_RUN_RUNNING, err, "sI", t->run_id, t->at_ms);
    case RUN_W_RECOMPUTE:
        return stmt_exec(c, ST_RUN_RECOMPUTE, err, "s", t->run_id);
    case RUN_W_FINISH:
        rc = stmt_exec(c, ST_RUN_FINISH, err, "ssssI", t->run_id, run_status_name(t->run_status),
                       t->output_json, t->error_message, t->at_ms);
        if (rc == DURABLE_OK)
            rc = stmt_exec(c, ST_STEPS_CANCEL, err, "sI", t->run_id, t->at_ms);
        return rc;
    case RUN_W_PAUSE:
        return stmt_exec(c, ST_RUN_PAUSE, err, "s", t->run_id);
    case RUN_W_RESUME:
        return stmt_exec(c, ST_RUN_RESUME, err, "s", t->run_id);
    default:
        return err_set(err, DURABLE_EINVAL, "unknown run write %d", (int)w);
    }
}

static durable_code sqlite_run_insert(struct store *base, const struct transition *t,
                                      const char *run_id, const char *input_json,
                                      durable_error *err)
{
    struct conn *c = &sqlite_of(base)->w;
    durable_code rc = stmt_exec(c, ST_RUN_INSERT, err, "sssssITssI", run_id, t->workflow_id,
                                input_json, t->order_id, t->idempotency_key, t->at_ms,
                                t->deadline_ms, t->restarted_from, t->restarted_step, t->priority);

    for (size_t i = 0; rc == DURABLE_OK && i < t->n_steps; i++) {
        const struct transition_step_init *si = &t->steps[i];
        rc = stmt_exec(c, ST_STEP_INSERT, err, "sIssis", run_id, (int64_t)i, si->step_id, si->type,
                       si->max_attempts, si->depends_on_json ? si->depends_on_json : "[]");
    }
    return rc;
}

static durable_code sqlite_step_insert(struct store *base, const char *run_id, int idx,
                                       const struct transition_step_init *si, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_STEP_INSERT, err, "sIssis", run_id, (int64_t)idx,
                     si->step_id, si->type, si->max_attempts,
                     si->depends_on_json ? si->depends_on_json : "[]");
}

static durable_code sqlite_run_retry(struct store *base, const char *run_id, int64_t deadline_ms,
                                     void (*fn)(void *ud, const char *step_id), void *ud,
                                     durable_error *err)
{
    struct conn *c = &sqlite_of(base)->w;
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = stmt_get(c, ST_STEPS_TO_RETRY, &st, err, "s", run_id);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        fn(ud, col_text(st, 0));
    }
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = stmt_exec(c, ST_STEPS_RETRY, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_exec(c, ST_RUN_RETRY, err, "sT", run_id, deadline_ms);
    return rc;
}

static durable_code sqlite_kv_get(struct store *base, const char *key, char **out,
                                  durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    durable_code rc = stmt_get(&sqlite_of(base)->w, ST_KV_GET, &st, err, "s", key);

    *out = NULL;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &found, err);
    if (rc == DURABLE_OK && found)
        *out = col_strdup(st, 0);
    stmt_release(st);
    return rc;
}

static durable_code sqlite_kv_put(struct store *base, const char *key, const char *value,
                                  int64_t at_ms, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_KV_PUT, err, "ssI", key, value, at_ms);
}

static durable_code sqlite_order_insert(struct store *base, const char *order_id, double amount,
                                        int64_t at_ms, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_ORDER_INSERT, err, "sfI", order_id, amount, at_ms);
}

static durable_code sqlite_order_set_status(struct store *base, const char *order_id,
                                            const char *status, int64_t at_ms, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_ORDER_SET_STATUS, err, "ssI", order_id, status, at_ms);
}

static durable_code sqlite_workflow_insert(struct store *base, const struct transition_result *wf,
                                           const struct transition *t, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_WF_INSERT, err, "ssisIT", wf->id, t->wf_name,
                     wf->version, t->wf_definition, t->at_ms, t->wf_retain_ms);
}

/* ---- signals ---- */

/* ---- schedules ---- */

static durable_code sqlite_schedule_get(struct store *base, const char *id, bool *out_found,
                                        bool *out_paused, int64_t *out_last_tick,
                                        durable_error *err)
{
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&sqlite_of(base)->w, ST_SCHED_GET, &st, err, "s", id);

    *out_found = false;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    if (rc == DURABLE_OK && *out_found) {
        *out_paused = sqlite3_column_int(st, 0) != 0;
        *out_last_tick = sqlite3_column_int64(st, 1);
    }
    stmt_release(st);
    return rc;
}

static durable_code sqlite_schedule_put(struct store *base, const struct schedule_record *r,
                                        int64_t at_ms, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_SCHED_PUT, err, "sssTssssiII", r->id, r->workflow_name,
                     r->cron, r->cron ? 0 : r->every_ms, r->tz, r->input_json, r->overlap,
                     r->catch_up, r->catch_up_max, r->anchor_ms, at_ms);
}

static durable_code sqlite_schedule_write(struct store *base, const struct transition *t,
                                          const char *run_id, durable_error *err)
{
    struct conn *c = &sqlite_of(base)->w;

    if (t->kind == TR_SCHEDULE_SET && t->schedule_op == SCHEDULE_DELETE)
        return stmt_exec(c, ST_SCHED_DELETE, err, "s", t->schedule_id);
    if (t->kind == TR_SCHEDULE_SET)
        return stmt_exec(c, ST_SCHED_PAUSE, err, "siI", t->schedule_id,
                         t->schedule_op == SCHEDULE_PAUSE, t->at_ms);
    return stmt_exec(c, ST_SCHED_FIRE, err, "sIiiIs", t->schedule_id, t->tick_ms,
                     t->kind == TR_RUN_CREATE, t->kind == TR_SCHEDULE_TICK, t->at_ms, run_id);
}

static durable_code sqlite_signal_insert(struct store *base, const struct transition *t,
                                         int64_t seq, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_SIGNAL_INSERT, err, "ssssII", t->signal_id, t->run_id,
                     t->signal_name, t->output_json ? t->output_json : "null", seq, t->at_ms);
}

static durable_code sqlite_signal_next(struct store *base, const char *run_id, const char *name,
                                       char out_id[ID_MAX], struct dbuf *payload,
                                       durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&sqlite_of(base)->w, ST_SIGNAL_NEXT, &st, err, "ss", run_id, name);

    out_id[0] = '\0';
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && has_row) {
        col_copy_id(st, 0, out_id);
        dbuf_add(payload, col_text(st, 1), (size_t)sqlite3_column_bytes(st, 1));
    }
    stmt_release(st);
    return rc;
}

static durable_code sqlite_signal_take(struct store *base, const char *signal_id,
                                       const char *step_id, int64_t at_ms, durable_error *err)
{
    return stmt_exec(&sqlite_of(base)->w, ST_SIGNAL_TAKE, err, "ssI", signal_id, step_id, at_ms);
}

static durable_code sqlite_signal_waiter(struct store *base, const char *run_id, const char *name,
                                         char out_step[STORE_STEP_ID_MAX], int *out_attempt,
                                         durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&sqlite_of(base)->w, ST_SIGNAL_WAITER, &st, err, "ss", run_id, name);

    out_step[0] = '\0';
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && has_row) {
        col_copy(st, 0, out_step, STORE_STEP_ID_MAX);
        *out_attempt = sqlite3_column_int(st, 1);
    }
    stmt_release(st);
    return rc;
}

/* ---- events ---- */

static durable_code sqlite_event_append(struct store *base, const struct event_key *k,
                                        const char *type, const char *data,
                                        struct store_event_ids *out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    int64_t seq = 0;
    durable_code rc;

    if (strcmp(k->run_id, s->seq_run) == 0) {
        rc = DURABLE_OK;
        seq = s->seq_last + 1;
    } else {
        rc = stmt_get(&s->w, ST_RUN_LAST_SEQ, &st, err, "s", k->run_id);
        if (rc == DURABLE_OK)
            rc = stmt_step(st, &has_row, err);
        if (rc == DURABLE_OK && !has_row)
            rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", k->run_id);
        if (rc == DURABLE_OK)
            seq = sqlite3_column_int64(st, 0) + 1;
        stmt_release(st);
    }
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_EVENT_INSERT, err, "sIssIsI", k->run_id, seq, type, k->step_id,
                       k->at_ms, data, s->last_gid + 1);
    }
    if (rc != DURABLE_OK) {
        store_seq_forget(s);
        return rc;
    }
    s->last_gid++;
    snprintf(s->seq_run, sizeof(s->seq_run), "%s", k->run_id);
    s->seq_last = seq;
    out->seq = seq;
    out->gid = s->last_gid;
    return DURABLE_OK;
}

static void sqlite_events_undo(struct store *base, int64_t first_gid)
{
    struct sqlite_store *s = sqlite_of(base);

    s->last_gid = first_gid - 1;
    store_seq_forget(s);
}

static durable_code sqlite_savepoint(struct store *base, enum store_savepoint op,
                                     durable_error *err)
{
    static const enum stmt_id ids[] = {
        [SAVEPOINT_BEGIN] = ST_SAVEPOINT,
        [SAVEPOINT_RELEASE] = ST_SP_RELEASE,
        [SAVEPOINT_ROLLBACK] = ST_SP_ROLLBACK,
    };

    if (op < SAVEPOINT_BEGIN || op > SAVEPOINT_ROLLBACK)
        return err_set(err, DURABLE_EINVAL, "unknown savepoint operation %d", (int)op);
    return stmt_exec(&sqlite_of(base)->w, ids[op], err, "");
}

const struct store_rows_ops sqlite_rows_ops = {
    .run_get = sqlite_run_get,
    .run_by_key = sqlite_run_by_key,
    .workflow_exists = sqlite_workflow_exists,
    .workflow_latest = sqlite_workflow_latest,
    .order_get = sqlite_order_get,
    .kv_get = sqlite_kv_get,
    .schedule_get = sqlite_schedule_get,
    .schedule_put = sqlite_schedule_put,
    .schedule_write = sqlite_schedule_write,
    .kv_put = sqlite_kv_put,
    .step_write = sqlite_step_write,
    .run_write = sqlite_run_write,
    .run_insert = sqlite_run_insert,
    .step_insert = sqlite_step_insert,
    .run_retry = sqlite_run_retry,
    .order_insert = sqlite_order_insert,
    .order_set_status = sqlite_order_set_status,
    .workflow_insert = sqlite_workflow_insert,
    .event_append = sqlite_event_append,
    .events_undo = sqlite_events_undo,
    .savepoint = sqlite_savepoint,
    .signal_insert = sqlite_signal_insert,
    .signal_next = sqlite_signal_next,
    .signal_take = sqlite_signal_take,
    .signal_waiter = sqlite_signal_waiter,
    .runs_delete = sqlite_runs_delete,
    .workflow_delete = sqlite_workflow_delete,
};
