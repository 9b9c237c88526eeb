/*
 * apply.c - store_apply: the guard, row changes and events of each
 * transition, on the write connection inside the writer's open transaction.
 *
 * Every guard runs before the first write, so a transition refused with
 * DURABLE_ECONFLICT, DURABLE_ENOTFOUND or DURABLE_EINVAL has written nothing
 * and the rest of the batch may go on. The only refusal that comes after a
 * write, a business action refusing (DURABLE_EACTION), is undone with a
 * savepoint taken before the step's completion, so the completion and the
 * action's effect commit together or not at all (exactly-once actions).
 * DURABLE_EIO means the transaction must be rolled back. On any error the
 * events this call appended are taken off the caller's list again.
 *
 * Writer thread only.
 */
#include "util/common.h"

#include "store/store.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

static durable_code require(const char *value, const char *field, durable_error *err)
{
    if (!value)
        return err_set(err, DURABLE_EINVAL, "transition without %s", field);
    return DURABLE_OK;
}

/* Parses JSON text (NULL gives null, or dflt when given) into *out (owned). */
static durable_code parse_json(const char *text, const char *dflt, json_t **out, const char *what,
                               durable_error *err)
{
    json_error_t jerr;

    if (!text && !dflt) {
        *out = json_null();
        return DURABLE_OK;
    }
    *out = json_loads(text ? text : dflt, JSON_DECODE_ANY, &jerr);
    if (!*out)
        return err_set(err, DURABLE_EINVAL, "%s is not valid JSON: %s", what, jerr.text);
    return DURABLE_OK;
}

/* Whether a row exists for key with statement id (a SELECT 1 ... = ?1). */
static durable_code row_exists(struct sqlite_store *s, enum stmt_id id, const char *key, bool *out,
                               durable_error *err)
{
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(&s->w, id, &st, err, "s", key);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, out, err);
    stmt_release(st);
    return rc;
}

/* The run must exist and be unfinished, or, for a retry (need_failed),
 * have failed. */
static durable_code guard_run(struct sqlite_store *s, const char *run_id, bool need_failed,
                              durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->w, ST_RUN_GUARD, &st, err, "s", run_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK)
        rc = store_guard_run(run_id, col_text(st, 0), need_failed, err);
    stmt_release(st);
    return rc;
}

/* A step transition's guard: the run must exist and be unfinished, the step
 * exist with a status g allows (and, if g says so, be at t's attempt).
 * Reads both in one statement, and remembers the run's last event seq for
 * the events that follow. OUT *out_order_id (may be NULL): the run's order,
 * owned, or NULL. */
static durable_code guard_step(struct sqlite_store *s, const struct transition *t,
                               const struct step_guard *g, char **out_order_id, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    struct guard_row row;
    durable_code rc = stmt_get(&s->w, ST_RUN_STEP_GUARD, &st, err, "ss", t->run_id, t->step_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", t->run_id);
    if (rc != DURABLE_OK)
        goto done;
    row.run_status = col_text(st, 0);
    row.step_status = col_text(st, 3);
    row.attempt = sqlite3_column_int(st, 4);
    rc = store_guard_step(g, t, &row, err);
    if (rc == DURABLE_OK) {
        if (out_order_id)
            *out_order_id = col_strdup(st, 1);
        snprintf(s->seq_run, sizeof(s->seq_run), "%s", t->run_id);
        s->seq_last = sqlite3_column_int64(st, 2);
    }
done:
    stmt_release(st);
    return rc;
}

/* Appends an event of t's step, or of t's run for the run kinds, with its
 * data (event_data.c; owned, freed even on error). */
static durable_code emit(struct sqlite_store *s, const struct transition *t,
                         struct store_events *ev, const char *type, char *data, durable_error *err)
{
    bool is_step = (t->kind >= TR_STEP_START && t->kind <= TR_STEP_SKIP) ||
                   t->kind == TR_STEP_WAIT || t->kind == TR_STEP_DECIDE;
    struct event_key k = { t->run_id, is_step ? t->step_id : NULL, t->at_ms };

    return store_event_append_text(s, ev, &k, type, data, err);
}

/* ---- step transitions ---- */

/* The run's status from its steps' (see store.h). */
static durable_code run_recompute(struct sqlite_store *s, const char *run_id, durable_error *err)
{
    return stmt_exec(&s->w, ST_RUN_RECOMPUTE, err, "s", run_id);
}

/* step_started, and the run running (from the attempt's START). */
static durable_code step_started(struct sqlite_store *s, const struct transition *t,
                                 struct store_events *ev, durable_error *err)
{
    char *data = store_event_data_step_started(t->attempt, t->run_id, t->step_id);
    durable_code rc = emit(s, t, ev, "step_started", data, err);

    if (rc == DURABLE_OK)
        rc = stmt_exec(&s->w, ST_RUN_RUNNING, err, "sI", t->run_id, t->at_ms);
    return rc;
}

/* step_completed, its data built around the output text the engine encoded
 * (or a decision apply_step_decide checked), without parsing it again. */
static durable_code step_completed(struct sqlite_store *s, const struct transition *t,
                                   struct store_events *ev, durable_error *err)
{
    struct event_key k = { t->run_id, t->step_id, t->at_ms };

    return store_event_append_text(s, ev, &k, "step_completed",
                                   store_event_data_step_completed(t->attempt, t->output_json),
                                   err);
}

static durable_code step_start(struct sqlite_store *s, const struct transition *t,
                               struct store_events *ev, durable_error *err)
{
    durable_code rc = stmt_exec(&s->w, ST_STEP_START, err, "ssiI", t->run_id, t->step_id,
                                t->attempt, t->at_ms);

    if (rc == DURABLE_OK)
        rc = step_started(s, t, ev, err);
    return rc;
}

/* An attempt started and completed in one transaction (TR_STEP_COMPLETE
 * with_start): one UPDATE of the step for both, and both events. */
static durable_code step_start_complete(struct sqlite_store *s, const struct transition *t,
                                        struct store_events *ev, durable_error *err)
{
    durable_code rc = DURABLE_OK;

    if (t->action)
        rc = err_set(err, DURABLE_EINVAL, "a completion with its start cannot carry an action");
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_STEP_RUN, err, "ssiIs", t->run_id, t->step_id, t->attempt,
                       t->at_ms, t->output_json);
    }
    if (rc == DURABLE_OK)
        rc = step_started(s, t, ev, err);
    if (rc == DURABLE_OK)
        rc = step_completed(s, t, ev, err);
    return rc;
}

/* Releases the action's savepoint, first rolling back to it if rc failed. */
static durable_code savepoint_end(struct sqlite_store *s, durable_code rc, durable_error *err)
{
    durable_code rc2 = DURABLE_OK;

    if (rc != DURABLE_OK)
        rc2 = stmt_exec(&s->w, ST_SP_ROLLBACK, err, "");
    if (rc2 == DURABLE_OK)
        rc2 = stmt_exec(&s->w, ST_SP_RELEASE, err, "");
    return rc2 != DURABLE_OK ? rc2 : rc;
}

/* The order's current status, owned. DURABLE_EACTION if there is no order. */
static durable_code order_status(struct sqlite_store *s, const char *order_id, char **out,
                                 durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->w, ST_ORDER_STATUS, &st, err, "s", order_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_EACTION, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK) {
        *out = col_strdup(st, 0);
        if (!*out)
            *out = xstrdup("");
    }
    stmt_release(st);
    return rc;
}

/* Applies the built-in action t->action (store_builtin_actions) to the run's
 * order inside the caller's savepoint: DURABLE_EACTION if it refuses. */
static durable_code action_apply(struct sqlite_store *s, const struct transition *t,
                                 const char *order_id, struct store_events *events,
                                 durable_error *err)
{
    const struct store_action *a = store_action_find(t->action);
    char *from = NULL;
    const char *to = NULL;
    durable_code rc;

    if (!a)
        return err_set(err, DURABLE_EACTION, "unknown action \"%s\"", t->action);
    if (!order_id)
        return DURABLE_OK; /* a run without an order: nothing to act on */
    rc = order_status(s, order_id, &from, err);
    if (rc == DURABLE_OK)
        rc = store_action_check(a, from, &to, err);
    if (rc == DURABLE_OK)
        rc = stmt_exec(&s->w, ST_ORDER_SET_STATUS, err, "ssI", order_id, to, t->at_ms);
    if (rc == DURABLE_OK) {
        char *data = store_event_data_action_applied(a->name, order_id, from, to);
        struct event_key k = { t->run_id, t->step_id, t->at_ms };
        rc = store_event_append_text(s, events, &k, "action_applied", data, err);
    }
    free(from);
    return rc;
}

static durable_code step_complete(struct sqlite_store *s, const struct transition *t,
                                  const char *order_id, struct store_events *ev, durable_error *err)
{
    bool in_savepoint = false;
    durable_code rc = DURABLE_OK;

    if (t->action) {
        rc = stmt_exec(&s->w, ST_SAVEPOINT, err, "");
        in_savepoint = rc == DURABLE_OK;
    }
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_STEP_COMPLETE, err, "sssI", t->run_id, t->step_id, t->output_json,
                       t->at_ms);
    }
    if (rc == DURABLE_OK)
        rc = step_completed(s, t, ev, err);
    if (rc == DURABLE_OK && t->action)
        rc = action_apply(s, t, order_id, ev, err);
    if (in_savepoint)
        rc = savepoint_end(s, rc, err);
    return rc;
}

static durable_code step_failed_event(struct sqlite_store *s, const struct transition *t,
                                      bool is_final, struct store_events *ev, durable_error *err)
{
    char *data =
            store_event_data_step_failed(t->attempt, t->error_message, t->error_code, is_final);

    return emit(s, t, ev, "step_failed", data, err);
}

static durable_code step_retry(struct sqlite_store *s, const struct transition *t,
                               struct store_events *ev, durable_error *err)
{
    durable_code rc = stmt_exec(&s->w, ST_STEP_RETRY, err, "ssIss", t->run_id, t->step_id,
                                t->wake_at_ms, t->error_message, t->error_code);

    if (rc == DURABLE_OK)
        rc = step_failed_event(s, t, false, ev, err);
    if (rc == DURABLE_OK) {
        rc = emit(s, t, ev, "retry_scheduled",
                  store_event_data_retry_scheduled(t->attempt + 1, t->at_ms, t->wake_at_ms), err);
    }
    return rc;
}

static durable_code step_fail(struct sqlite_store *s, const struct transition *t,
                              struct store_events *ev, durable_error *err)
{
    durable_code rc = stmt_exec(&s->w, ST_STEP_FAIL, err, "ssIss", t->run_id, t->step_id, t->at_ms,
                                t->error_message, t->error_code);

    if (rc == DURABLE_OK)
        rc = step_failed_event(s, t, true, ev, err);
    return rc;
}

static durable_code step_skip(struct sqlite_store *s, const struct transition *t,
                              struct store_events *ev, durable_error *err)
{
    durable_code rc = stmt_exec(&s->w, ST_STEP_SKIP, err, "ssI", t->run_id, t->step_id, t->at_ms);

    if (rc == DURABLE_OK) {
        rc = emit(s, t, ev, "step_skipped", xstrdup("{}"), err);
    }
    return rc;
}

static durable_code step_wait(struct sqlite_store *s, const struct transition *t,
                              struct store_events *ev, durable_error *err)
{
    char *data = NULL;
    durable_code rc =
            store_event_data_step_waiting(t->wait_json, t->attempt, t->wake_at_ms, &data, err);

    if (rc == DURABLE_OK)
        rc = stmt_exec(&s->w, ST_STEP_WAIT, err, "ssT", t->run_id, t->step_id, t->wake_at_ms);
    if (rc == DURABLE_OK) {
        rc = emit(s, t, ev, "step_waiting", data, err);
        data = NULL;
    }
    free(data);
    return rc;
}

/* Guards, applies a STEP_* transition, then recomputes the run's status. */
static durable_code apply_step(struct sqlite_store *s, const struct transition *t,
                               struct store_events *ev, durable_error *err)
{
    const struct step_guard *g = store_step_guard(t->with_start ? TR_STEP_START : t->kind);
    char *order_id = NULL;
    durable_code rc = require(t->step_id, "step_id", err);

    if (rc == DURABLE_OK)
        rc = guard_step(s, t, g, &order_id, err);
    if (rc == DURABLE_OK) {
        switch (t->kind) {
        case TR_STEP_START:
            rc = step_start(s, t, ev, err);
            break;
        case TR_STEP_COMPLETE:
            if (t->with_start)
                rc = step_start_complete(s, t, ev, err);
            else
                rc = step_complete(s, t, order_id, ev, err);
            break;
        case TR_STEP_RETRY:
            rc = step_retry(s, t, ev, err);
            break;
        case TR_STEP_FAIL:
            rc = step_fail(s, t, ev, err);
            break;
        case TR_STEP_WAIT:
            rc = step_wait(s, t, ev, err);
            break;
        default:
            rc = step_skip(s, t, ev, err);
            break;
        }
    }
    /* A START has made the run running already (step_start). */
    if (rc == DURABLE_OK && t->kind != TR_STEP_START)
        rc = run_recompute(s, t->run_id, err);
    free(order_id);
    return rc;
}

/* The step must be an approval waiting for a decision (of attempt
 * t->attempt unless 0). OUT *out_attempt: its current attempt. */
static durable_code guard_decide(struct sqlite_store *s, const struct transition *t,
                                 int *out_attempt, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    const char *status, *type;
    enum step_status st_status = STEP_S_PENDING;
    durable_code rc = stmt_get(&s->w, ST_STEP_DECIDE_GUARD, &st, err, "ss", t->run_id, t->step_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row) {
        rc = err_set(err, DURABLE_ENOTFOUND, "step \"%s\" not found in run \"%s\"", t->step_id,
                     t->run_id);
    }
    if (rc == DURABLE_OK) {
        status = col_text(st, 0);
        type = col_text(st, 2);
        *out_attempt = sqlite3_column_int(st, 1);
        if (!type || strcmp(type, "approval") != 0) {
            rc = err_set(err, DURABLE_ECONFLICT, "step \"%s\" is not an approval step", t->step_id);
        } else if (!step_status_parse(status, &st_status) || st_status != STEP_S_WAITING) {
            rc = err_set(err, DURABLE_ECONFLICT,
                         "step \"%s\" is not waiting for a decision: it is %s", t->step_id,
                         status ? status : "unknown");
        } else if (t->attempt > 0 && t->attempt != *out_attempt) {
            rc = err_set(err, DURABLE_ECONFLICT,
                         "cannot decide step \"%s\": attempt %d is not the current attempt %d",
                         t->step_id, t->attempt, *out_attempt);
        }
    }
    stmt_release(st);
    return rc;
}

/* A decision on an approval step: approval_decided, then the completion. */
static durable_code apply_step_decide(struct sqlite_store *s, const struct transition *t,
                                      struct store_events *ev, durable_error *err)
{
    struct transition done = *t;
    json_t *output = NULL;
    durable_code rc = require(t->step_id, "step_id", err);

    if (rc == DURABLE_OK)
        rc = guard_run(s, t->run_id, false, err);
    if (rc == DURABLE_OK)
        rc = guard_decide(s, t, &done.attempt, err);
    if (rc == DURABLE_OK)
        rc = parse_json(t->output_json, NULL, &output, "decision", err);
    if (rc == DURABLE_OK && !json_is_object(output))
        rc = err_set(err, DURABLE_EINVAL, "a decision must be a JSON object");
    if (rc == DURABLE_OK)
        rc = emit(s, t, ev, "approval_decided", xstrdup(t->output_json), err);
    if (rc == DURABLE_OK) {
        done.kind = TR_STEP_COMPLETE;
        done.action = NULL;
        rc = step_complete(s, &done, NULL, ev, err);
    }
    if (rc == DURABLE_OK)
        rc = run_recompute(s, t->run_id, err);
    json_decref(output);
    return rc;
}

/* ---- run transitions ---- */

static durable_code apply_run_finish(struct sqlite_store *s, const struct transition *t,
                                     struct store_events *ev, durable_error *err)
{
    const char *status = run_status_name(t->run_status);
    char type[32];
    durable_code rc;

    if (!run_status_is_final(t->run_status)) {
        return err_set(err, DURABLE_EINVAL, "cannot finish run \"%s\" as \"%s\"", t->run_id,
                       status);
    }
    rc = guard_run(s, t->run_id, false, err);
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_RUN_FINISH, err, "ssssI", t->run_id, status, t->output_json,
                       t->error_message, t->at_ms);
    }
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_STEPS_CANCEL, err, "sI", t->run_id, t->at_ms);
    }
    if (rc == DURABLE_OK) {
        snprintf(type, sizeof(type), "run_%s", status);
        rc = emit(s, t, ev, type,
                  store_event_data_run_finished(t->run_status, t->output_json, t->error_message),
                  err);
    }
    return rc;
}

/* Each step of the JSON array `steps` (ids) must be running: it runs again
 * from t->at_ms under the same attempt and idempotency key. Nothing is
 * written unless every step is running: several steps are guarded before
 * the first is written; a single step's UPDATE is its own guard (it
 * changes no row unless the step is running), which saves a read per run
 * at recovery. */
static durable_code restart_steps(struct sqlite_store *s, const struct transition *t, json_t *steps,
                                  durable_error *err)
{
    const struct step_guard *g = store_step_guard(TR_RUN_RECOVERED);
    struct transition st = *t;
    durable_code rc = DURABLE_OK;
    size_t k, n = json_array_size(steps);

    for (k = 0; rc == DURABLE_OK && k < n; k++) {
        st.step_id = json_string_value(json_array_get(steps, k));
        if (!st.step_id)
            rc = err_set(err, DURABLE_EINVAL, "recovered steps must be step ids");
        else if (n > 1)
            rc = guard_step(s, &st, g, NULL, err);
    }
    for (k = 0; rc == DURABLE_OK && k < n; k++) {
        st.step_id = json_string_value(json_array_get(steps, k));
        rc = stmt_exec(&s->w, ST_STEP_RESTART, err, "ssI", t->run_id, st.step_id, t->at_ms);
        if (rc == DURABLE_OK && sqlite3_changes(s->w.db) == 0) {
            rc = guard_step(s, &st, g, NULL, err); /* says why */
            if (rc == DURABLE_OK)
                rc = err_set(err, DURABLE_ECONFLICT, "cannot restart step \"%s\"", st.step_id);
        }
    }
    return rc;
}

/* One `recovered` event per run, which also restarts the steps that were
 * running (instead of a TR_STEP_START each): what a restart writes per run
 * is one transition. A finished run is refused: by its steps, which are no
 * longer running once it has finished (TR_RUN_FINISH cancels them), or by
 * reading the run when no step is listed. */
static durable_code apply_run_recovered(struct sqlite_store *s, const struct transition *t,
                                        struct store_events *ev, durable_error *err)
{
    json_t *steps = NULL;
    durable_code rc = parse_json(t->recovered_json, "[]", &steps, "recovered steps", err);

    if (rc == DURABLE_OK && !json_is_array(steps))
        rc = err_set(err, DURABLE_EINVAL, "recovered steps must be an array");
    if (rc == DURABLE_OK && json_array_size(steps) == 0)
        rc = guard_run(s, t->run_id, false, err);
    if (rc == DURABLE_OK)
        rc = restart_steps(s, t, steps, err);
    if (rc == DURABLE_OK) {
        rc = emit(s, t, ev, "recovered", store_event_data_recovered(t->recovered_json), err);
    }
    json_decref(steps);
    return rc;
}

/* The ids of the run's failed and cancelled steps, in definition order. */
struct step_ids {
    char **ids; /* each owned */
    size_t n, cap;
};

static void step_ids_release(struct step_ids *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
}

static durable_code steps_to_retry(struct sqlite_store *s, const char *run_id, struct step_ids *l,
                                   durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = stmt_get(&s->w, ST_STEPS_TO_RETRY, &st, err, "s", run_id);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 8;
            l->ids = xrealloc(l->ids, l->cap * sizeof(*l->ids));
        }
        l->ids[l->n++] = xstrdup(col_text(st, 0) ? col_text(st, 0) : "");
    }
    stmt_release(st);
    return rc;
}

/* A failed run runs again from its failed (and, because of the failure,
 * cancelled) steps: they become pending with attempt 0, so their attempts
 * count from 1 again while the history keeps the earlier ones. Completed
 * and skipped steps are kept. */
static durable_code apply_run_retry(struct sqlite_store *s, const struct transition *t,
                                    struct store_events *ev, durable_error *err)
{
    struct step_ids steps = { NULL, 0, 0 };
    durable_code rc = guard_run(s, t->run_id, true, err);

    if (rc == DURABLE_OK)
        rc = steps_to_retry(s, t->run_id, &steps, err);
    if (rc == DURABLE_OK)
        rc = stmt_exec(&s->w, ST_STEPS_RETRY, err, "s", t->run_id);
    if (rc == DURABLE_OK)
        rc = stmt_exec(&s->w, ST_RUN_RETRY, err, "sT", t->run_id, t->deadline_ms);
    if (rc == DURABLE_OK) {
        rc = emit(s, t, ev, "run_retried",
                  store_event_data_run_retried((const char *const *)steps.ids, steps.n), err);
    }
    step_ids_release(&steps);
    return rc;
}

/* The run already started with t's idempotency key, if any. */
static durable_code run_by_key(struct sqlite_store *s, const struct transition *t, char out[ID_MAX],
                               bool *out_found, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    durable_code rc;

    *out_found = false;
    if (!t->idempotency_key)
        return DURABLE_OK;
    rc = stmt_get(&s->w, ST_RUN_BY_KEY, &st, err, "ss", t->workflow_id, t->idempotency_key);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    if (rc == DURABLE_OK && *out_found)
        col_copy_id(st, 0, out);
    stmt_release(st);
    return rc;
}

/* The workflow and the order a new run names must exist. */
static durable_code run_create_check(struct sqlite_store *s, const struct transition *t,
                                     durable_error *err)
{
    bool found = false;
    durable_code rc = row_exists(s, ST_WF_EXISTS, t->workflow_id, &found, err);

    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "workflow \"%s\" not found", t->workflow_id);
    if (rc == DURABLE_OK && t->create_order && !isfinite(t->order_amount))
        rc = err_set(err, DURABLE_EINVAL, "order amount must be a finite number");
    if (rc == DURABLE_OK && t->order_id && !t->create_order) {
        rc = row_exists(s, ST_ORDER_EXISTS, t->order_id, &found, err);
        if (rc == DURABLE_OK && !found)
            rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", t->order_id);
    }
    for (size_t i = 0; rc == DURABLE_OK && i < t->n_steps; i++) {
        rc = require(t->steps[i].step_id, "step id", err);
        if (rc == DURABLE_OK)
            rc = require(t->steps[i].type, "step type", err);
    }
    return rc;
}

static durable_code run_create_rows(struct sqlite_store *s, const struct transition *t,
                                    const char *run_id, const char *input, durable_error *err)
{
    durable_code rc = stmt_exec(&s->w, ST_RUN_INSERT, err, "sssssIT", run_id, t->workflow_id, input,
                                t->order_id, t->idempotency_key, t->at_ms, t->deadline_ms);

    for (size_t i = 0; rc == DURABLE_OK && i < t->n_steps; i++) {
        const struct transition_step_init *si = &t->steps[i];
        rc = stmt_exec(&s->w, ST_STEP_INSERT, err, "sIssis", run_id, (int64_t)i, si->step_id,
                       si->type, si->max_attempts,
                       si->depends_on_json ? si->depends_on_json : "[]");
    }
    return rc;
}

static durable_code apply_run_create(struct sqlite_store *s, const struct transition *t,
                                     struct store_events *ev, struct transition_result *res,
                                     durable_error *err)
{
    const char *input_text = t->input_json ? t->input_json : "{}";
    size_t input_len = strlen(input_text);
    bool found = false;
    durable_code rc = require(t->workflow_id, "workflow_id", err);

    if (rc == DURABLE_OK)
        rc = run_by_key(s, t, res->id, &found, err);
    if (rc != DURABLE_OK || found)
        return rc; /* res->created stays false */
    /* The engine parsed and encoded the input (store.h): only its shape is
     * checked here, so the text is not parsed a second time. */
    if (input_len < 2 || input_text[0] != '{' || input_text[input_len - 1] != '}')
        rc = err_set(err, DURABLE_EINVAL, "run input must be a JSON object");
    if (rc == DURABLE_OK)
        rc = run_create_check(s, t, err);
    if (rc == DURABLE_OK) {
        if (t->run_id)
            snprintf(res->id, sizeof(res->id), "%s", t->run_id);
        else
            id_new("run_", res->id, sizeof(res->id));
        if (t->create_order)
            rc = stmt_exec(&s->w, ST_ORDER_INSERT, err, "sfI", t->order_id, t->order_amount,
                           t->at_ms);
        if (rc == DURABLE_OK)
            rc = run_create_rows(s, t, res->id, input_text, err);
    }
    if (rc == DURABLE_OK) {
        rc = store_event_append_text(
                s, ev, &(struct event_key){ res->id, NULL, t->at_ms }, "run_created",
                store_event_data_run_created(t->workflow_id, input_text, t->order_id), err);
    }
    res->created = rc == DURABLE_OK;
    return rc;
}

/* ---- workflows and orders ---- */

static durable_code apply_workflow_put(struct sqlite_store *s, const struct transition *t,
                                       struct transition_result *res, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    bool is_same = false;
    durable_code rc = require(t->wf_name, "workflow name", err);

    if (rc == DURABLE_OK)
        rc = require(t->wf_definition, "workflow definition", err);
    if (rc == DURABLE_OK)
        rc = stmt_get(&s->w, ST_WF_LATEST, &st, err, "s", t->wf_name);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && has_row) {
        const char *def = col_text(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        res->version = sqlite3_column_int(st, 1);
        is_same = def && len == strlen(t->wf_definition) && memcmp(def, t->wf_definition, len) == 0;
        if (is_same)
            col_copy_id(st, 0, res->id); /* identical to the latest version */
    }
    stmt_release(st);
    if (rc == DURABLE_OK && !is_same) {
        res->version++;
        id_new("wf_", res->id, sizeof(res->id));
        rc = stmt_exec(&s->w, ST_WF_INSERT, err, "ssisI", res->id, t->wf_name, res->version,
                       t->wf_definition, t->at_ms);
        res->created = rc == DURABLE_OK;
    }
    return rc;
}

static durable_code apply_order_create(struct sqlite_store *s, const struct transition *t,
                                       struct transition_result *res, durable_error *err)
{
    bool found = false;
    durable_code rc = require(t->order_id, "order_id", err);

    if (rc == DURABLE_OK && strlen(t->order_id) >= ID_MAX)
        rc = err_set(err, DURABLE_EINVAL, "order id \"%s\" is too long", t->order_id);
    if (rc == DURABLE_OK && !isfinite(t->order_amount))
        rc = err_set(err, DURABLE_EINVAL, "order amount must be a finite number");
    if (rc == DURABLE_OK)
        rc = row_exists(s, ST_ORDER_EXISTS, t->order_id, &found, err);
    if (rc == DURABLE_OK && found)
        rc = err_set(err, DURABLE_ECONFLICT, "order \"%s\" already exists", t->order_id);
    if (rc == DURABLE_OK) {
        rc = stmt_exec(&s->w, ST_ORDER_INSERT, err, "sfI", t->order_id, t->order_amount, t->at_ms);
    }
    if (rc == DURABLE_OK) {
        snprintf(res->id, sizeof(res->id), "%s", t->order_id);
        res->created = true;
    }
    return rc;
}

/* ---- entry point ---- */

static durable_code check_run_id(const struct transition *t, durable_error *err)
{
    if (t->kind == TR_WORKFLOW_PUT || t->kind == TR_ORDER_CREATE)
        return DURABLE_OK;
    if (!t->run_id)
        return t->kind == TR_RUN_CREATE ? DURABLE_OK : require(NULL, "run_id", err);
    if (strlen(t->run_id) >= ID_MAX)
        return err_set(err, DURABLE_EINVAL, "run id \"%s\" is too long", t->run_id);
    return DURABLE_OK;
}

durable_code sqlite_apply(struct store *base, const struct transition *t,
                          struct store_events *events, struct transition_result *result,
                          durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct transition_result res = { .created = false };
    size_t n0 = events ? events->n : 0;
    int64_t gid0 = s->last_gid;
    durable_code rc = check_run_id(t, err);

    if (rc != DURABLE_OK)
        return rc;
    switch (t->kind) {
    case TR_WORKFLOW_PUT:
        rc = apply_workflow_put(s, t, &res, err);
        break;
    case TR_ORDER_CREATE:
        rc = apply_order_create(s, t, &res, err);
        break;
    case TR_RUN_CREATE:
        rc = apply_run_create(s, t, events, &res, err);
        break;
    case TR_STEP_START:
    case TR_STEP_COMPLETE:
    case TR_STEP_RETRY:
    case TR_STEP_FAIL:
    case TR_STEP_SKIP:
    case TR_STEP_WAIT:
        rc = apply_step(s, t, events, err);
        break;
    case TR_STEP_DECIDE:
        rc = apply_step_decide(s, t, events, err);
        break;
    case TR_RUN_FINISH:
        rc = apply_run_finish(s, t, events, err);
        break;
    case TR_RUN_RECOVERED:
        rc = apply_run_recovered(s, t, events, err);
        break;
    case TR_RUN_RETRY:
        rc = apply_run_retry(s, t, events, err);
        break;
    default:
        rc = err_set(err, DURABLE_EINVAL, "unknown transition kind %d", (int)t->kind);
        break;
    }
    if (rc != DURABLE_OK && events)
        store_events_truncate(events, n0);
    if (rc != DURABLE_OK) {
        s->last_gid = gid0; /* what this call wrote is undone: its ids are free */
        store_seq_forget(s);
    }
    if (rc == DURABLE_OK && result)
        *result = res;
    return rc;
}
