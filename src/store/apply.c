/*
 * apply.c - store_apply: the guard, row changes and events of each
 * transition, for every backend, over the backend's row operations
 * (struct store_rows_ops, backend.h), inside the writer's open transaction.
 *
 * Every guard runs before the first write, so a transition refused with
 * DURABLE_ECONFLICT, DURABLE_ENOTFOUND or DURABLE_EINVAL has written nothing
 * and the rest of the batch may go on. The only refusal that comes after a
 * write, a business action refusing (DURABLE_EACTION), is undone with a
 * savepoint taken before the step's completion, so the completion and the
 * action's effect commit together or not at all (exactly-once actions).
 * DURABLE_EIO means the transaction must be rolled back. On any error the
 * events this call appended are taken off the caller's list again and
 * their ids given back to the backend (events_undo).
 *
 * Writer thread only.
 */
#include "util/common.h"

#include "store/store.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"

/* One store_apply call: the store, its rows, the caller's event list, and
 * the events this call appended (so that a failure can undo them). */
struct apply {
    struct store *s;
    const struct store_rows_ops *rows;
    struct store_events *ev; /* may be NULL */
    size_t n_appended;
    int64_t first_gid; /* the gid of the first event appended */
    int64_t last_seq;  /* the seq of the last event appended */
    bool fence;        /* t->by_owner: refused on a run this node no longer owns */
};

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

/* Appends an event at k with its data (event_data.c; owned, freed even on
 * error) through the backend, then to the caller's list. */
static durable_code append(struct apply *a, const struct event_key *k, const char *type, char *data,
                           durable_error *err)
{
    struct store_event_ids ids = { 0, 0 };
    durable_code rc = a->rows->event_append(a->s, k, type, data, &ids, err);

    if (rc == DURABLE_OK) {
        if (a->n_appended++ == 0)
            a->first_gid = ids.gid;
        a->last_seq = ids.seq;
        if (a->ev) {
            store_events_push(a->ev, k, ids.seq, ids.gid, type, data);
            data = NULL;
        }
    }
    free(data);
    return rc;
}

/* Appends an event of t's step, or of t's run for the run kinds. */
static durable_code emit(struct apply *a, const struct transition *t, const char *type, char *data,
                         durable_error *err)
{
    bool is_step = (t->kind >= TR_STEP_START && t->kind <= TR_STEP_SKIP) ||
                   t->kind == TR_STEP_WAIT || t->kind == TR_STEP_DECIDE || t->kind == TR_MAP_ITEM;
    struct event_key k = { t->run_id, is_step ? t->step_id : NULL, t->at_ms };

    return append(a, &k, type, data, err);
}

/* Reads the run of t (and, with step_id, that step): DURABLE_ENOTFOUND
 * when there is no such run, DURABLE_EFENCED when the executor's
 * transition comes from a node that no longer owns it (the fence: the
 * backend keeps the run's row locked until COMMIT, so a takeover waits). */
static durable_code run_get(struct apply *a, const char *run_id, const char *step_id,
                            struct store_run_state *out, durable_error *err)
{
    durable_code rc = a->rows->run_get(a->s, run_id, step_id, out, err);

    if (rc == DURABLE_OK && !out->has_run)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK && a->fence && out->not_owner) {
        rc = err_set(err, DURABLE_EFENCED,
                     "run \"%s\" was taken over by another node: this node's write is dropped",
                     run_id);
    }
    return rc;
}

/* A caller's decision, cancel, retry, pause or resume: the run's owner is
 * told. */
static bool tells_owner(const struct transition *t)
{
    return !t->by_owner &&
           (t->kind == TR_STEP_DECIDE || t->kind == TR_RUN_FINISH || t->kind == TR_RUN_RETRY ||
            t->kind == TR_SIGNAL_SEND || t->kind == TR_RUN_PAUSE || t->kind == TR_RUN_RESUME);
}

/* The run must exist and be unfinished, or, for a retry (need_failed),
 * have failed. */
static durable_code guard_run(struct apply *a, const char *run_id, bool need_failed,
                              durable_error *err)
{
    struct store_run_state row;
    durable_code rc = run_get(a, run_id, NULL, &row, err);

    if (rc == DURABLE_OK)
        rc = store_guard_run(run_id, row.run_status, need_failed, err);
    return rc;
}

/* A step transition's guard: the run must exist and be unfinished, the step
 * exist with a status g allows (and, if g says so, be at t's attempt).
 * OUT *st: what was read (the run's order for an action). */
static durable_code guard_step(struct apply *a, const struct transition *t,
                               const struct step_guard *g, struct store_run_state *st, bool is_read,
                               durable_error *err)
{
    durable_code rc = is_read ? DURABLE_OK : run_get(a, t->run_id, t->step_id, st, err);

    if (rc == DURABLE_OK) {
        struct guard_row row = { st->run_status, st->has_step ? st->step_status : NULL,
                                 st->attempt };
        rc = store_guard_step(g, t, &row, err);
    }
    return rc;
}

/* ---- step transitions ---- */

static durable_code step_write(struct apply *a, enum store_step_write w, const struct transition *t,
                               durable_error *err)
{
    return a->rows->step_write(a->s, w, t, NULL, err);
}

static durable_code run_write(struct apply *a, enum store_run_write w, const struct transition *t,
                              durable_error *err)
{
    return a->rows->run_write(a->s, w, t, err);
}

/* step_started, and the run running (from the attempt's START). */
static durable_code step_started(struct apply *a, const struct transition *t, durable_error *err)
{
    char *data = store_event_data_step_started(t->attempt, t->run_id, t->step_id);
    durable_code rc = emit(a, t, "step_started", data, err);

    if (rc == DURABLE_OK)
        rc = run_write(a, RUN_W_START, t, err);
    return rc;
}

/* step_completed, its data built around the output text the engine encoded
 * (or a decision apply_step_decide checked), without parsing it again. */
static durable_code step_completed(struct apply *a, const struct transition *t, durable_error *err)
{
    struct event_key k = { t->run_id, t->step_id, t->at_ms };

    return append(a, &k, "step_completed",
                  store_event_data_step_completed(t->attempt, t->output_json), err);
}

static durable_code step_start(struct apply *a, const struct transition *t, durable_error *err)
{
    durable_code rc = step_write(a, STEP_W_START, t, err);

    if (rc == DURABLE_OK)
        rc = step_started(a, t, err);
    return rc;
}

/* An attempt started and completed in one transaction (TR_STEP_COMPLETE
 * with_start): one change of the step's row for both, and both events. */
static durable_code step_start_complete(struct apply *a, const struct transition *t,
                                        durable_error *err)
{
    durable_code rc = DURABLE_OK;

    if (t->action)
        rc = err_set(err, DURABLE_EINVAL, "a completion with its start cannot carry an action");
    if (rc == DURABLE_OK)
        rc = step_write(a, STEP_W_RUN, t, err);
    if (rc == DURABLE_OK)
        rc = step_started(a, t, err);
    if (rc == DURABLE_OK)
        rc = step_completed(a, t, err);
    return rc;
}

/* Releases the action's savepoint, first rolling back to it if rc failed. */
static durable_code savepoint_end(struct apply *a, durable_code rc, durable_error *err)
{
    durable_code rc2 = DURABLE_OK;

    if (rc != DURABLE_OK)
        rc2 = a->rows->savepoint(a->s, SAVEPOINT_ROLLBACK, err);
    if (rc2 == DURABLE_OK)
        rc2 = a->rows->savepoint(a->s, SAVEPOINT_RELEASE, err);
    return rc2 != DURABLE_OK ? rc2 : rc;
}

/* Applies the built-in action t->action (store_builtin_actions) to the run's
 * order ("" for none) inside the caller's savepoint: DURABLE_EACTION if it
 * refuses. */
static durable_code action_apply(struct apply *a, const struct transition *t, const char *order_id,
                                 durable_error *err)
{
    const struct store_action *act = store_action_find(t->action);
    char from[STORE_NAME_MAX];
    bool found = false;
    const char *to = NULL;
    durable_code rc;

    if (!act)
        return err_set(err, DURABLE_EACTION, "unknown action \"%s\"", t->action);
    if (!order_id[0])
        return DURABLE_OK; /* a run without an order: nothing to act on */
    rc = a->rows->order_get(a->s, order_id, from, &found, err);
    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_EACTION, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK)
        rc = store_action_check(act, from, &to, err);
    if (rc == DURABLE_OK)
        rc = a->rows->order_set_status(a->s, order_id, to, t->at_ms, err);
    if (rc == DURABLE_OK) {
        char *data = store_event_data_action_applied(act->name, order_id, from, to);
        struct event_key k = { t->run_id, t->step_id, t->at_ms };
        rc = append(a, &k, "action_applied", data, err);
    }
    return rc;
}

/* ---- registered actions (durable_action_register) ---- */

struct durable_action_tx {
    struct apply *a;
    const struct transition *t;
    durable_code rc; /* the first failure of a get, put or refusal */
    durable_error err;
};

/* Remembers the first failure; returns rc. */
static durable_code tx_fail(durable_action_tx *tx, durable_code rc, const durable_error *err)
{
    if (rc != DURABLE_OK && tx->rc == DURABLE_OK) {
        tx->rc = rc;
        tx->err = *err;
    }
    return rc;
}

durable_code durable_action_get(durable_action_tx *tx, const char *key, char **out_value_json)
{
    durable_error err = { 0 };
    durable_code rc;

    if (!tx || !out_value_json)
        return DURABLE_EINVAL;
    *out_value_json = NULL;
    rc = store_kv_key_check(key, &err);
    if (rc == DURABLE_OK)
        rc = tx->a->rows->kv_get(tx->a->s, key, out_value_json, &err);
    return tx_fail(tx, rc, &err);
}

durable_code durable_action_put(durable_action_tx *tx, const char *key, const char *value_json)
{
    durable_error err = { 0 };
    durable_code rc;
    json_t *v;

    if (!tx)
        return DURABLE_EINVAL;
    rc = store_kv_key_check(key, &err);
    if (rc == DURABLE_OK) {
        v = value_json ? json_loads(value_json, JSON_DECODE_ANY, NULL) : NULL;
        if (!v)
            rc = err_set(&err, DURABLE_EINVAL, "the value of key \"%.64s\" is not JSON", key);
        json_decref(v);
    }
    if (rc == DURABLE_OK)
        rc = tx->a->rows->kv_put(tx->a->s, key, value_json, tx->t->at_ms, &err);
    return tx_fail(tx, rc, &err);
}

void durable_action_refuse(durable_action_tx *tx, const char *message)
{
    durable_error err = { 0 };

    if (tx)
        tx_fail(tx, err_set(&err, DURABLE_EACTION, "%s", message ? message : ""), &err);
}

/* Calls the registered action t->action_fn inside the caller's savepoint:
 * DURABLE_EACTION with its message if it refused or misused a key, and the
 * store's error (DURABLE_EIO) if a read or write failed. */
static durable_code action_call(struct apply *a, const struct transition *t, durable_error *err)
{
    char key[2 * ID_MAX];
    durable_action_tx tx = { a, t, DURABLE_OK, { 0 } };
    durable_action_call call = { t->action, t->run_id,      t->step_id,
                                 key,       t->output_json, t->input_json ? t->input_json : "{}" };
    struct event_key k = { t->run_id, t->step_id, t->at_ms };

    snprintf(key, sizeof(key), "%s/%s", t->run_id, t->step_id);
    t->action_fn(&tx, &call, t->action_ud);
    if (tx.rc == DURABLE_EIO || tx.rc == DURABLE_EFENCED) {
        *err = tx.err;
        return tx.rc;
    }
    if (tx.rc != DURABLE_OK)
        return err_set(err, DURABLE_EACTION, "%s", tx.err.msg);
    return append(a, &k, "action_applied",
                  store_event_data_action_applied(t->action, NULL, NULL, NULL), err);
}

static durable_code step_complete(struct apply *a, const struct transition *t, const char *order_id,
                                  durable_error *err)
{
    bool in_savepoint = false;
    durable_code rc = DURABLE_OK;

    if (t->action) {
        rc = a->rows->savepoint(a->s, SAVEPOINT_BEGIN, err);
        in_savepoint = rc == DURABLE_OK;
    }
    if (rc == DURABLE_OK)
        rc = step_write(a, STEP_W_COMPLETE, t, err);
    if (rc == DURABLE_OK)
        rc = step_completed(a, t, err);
    if (rc == DURABLE_OK && t->action)
        rc = t->action_fn ? action_call(a, t, err) : action_apply(a, t, order_id, err);
    if (in_savepoint)
        rc = savepoint_end(a, rc, err);
    return rc;
}

static durable_code step_failed_event(struct apply *a, const struct transition *t, bool is_final,
                                      durable_error *err)
{
    char *data =
            store_event_data_step_failed(t->attempt, t->error_message, t->error_code, is_final);

    return emit(a, t, "step_failed", data, err);
}

static durable_code step_retry(struct apply *a, const struct transition *t, durable_error *err)
{
    durable_code rc = step_write(a, STEP_W_RETRY, t, err);

    if (rc == DURABLE_OK)
        rc = step_failed_event(a, t, false, err);
    if (rc == DURABLE_OK) {
        rc = emit(a, t, "retry_scheduled",
                  store_event_data_retry_scheduled(t->attempt + 1, t->at_ms, t->wake_at_ms), err);
    }
    return rc;
}

static durable_code step_fail(struct apply *a, const struct transition *t, durable_error *err)
{
    durable_code rc = step_write(a, STEP_W_FAIL, t, err);

    if (rc == DURABLE_OK)
        rc = step_failed_event(a, t, true, err);
    return rc;
}

static durable_code step_skip(struct apply *a, const struct transition *t, durable_error *err)
{
    durable_code rc = step_write(a, STEP_W_SKIP, t, err);

    if (rc == DURABLE_OK)
        rc = emit(a, t, "step_skipped", xstrdup("{}"), err);
    return rc;
}

/* A step that waits for signal t->signal_name takes the oldest one sent
 * before and not taken yet, if any: it completes at once with its payload
 * (*out_taken, res->signal_payload). */
static durable_code signal_take_earlier(struct apply *a, const struct transition *t,
                                        struct transition_result *res, bool *out_taken,
                                        durable_error *err)
{
    struct transition done = *t;
    struct dbuf payload;
    char id[ID_MAX];
    durable_code rc;

    dbuf_init(&payload, 0);
    rc = a->rows->signal_next(a->s, t->run_id, t->signal_name, id, &payload, err);
    *out_taken = rc == DURABLE_OK && id[0];
    if (*out_taken)
        rc = a->rows->signal_take(a->s, id, t->step_id, t->at_ms, err);
    if (rc == DURABLE_OK && *out_taken) {
        done.kind = TR_STEP_COMPLETE;
        done.action = NULL;
        done.output_json = payload.len ? payload.buf : "null";
        rc = step_complete(a, &done, "", err);
    }
    if (rc == DURABLE_OK && *out_taken) {
        res->signal_taken = true;
        res->signal_payload = dbuf_detach(&payload, NULL);
    }
    dbuf_release(&payload);
    return rc;
}

static durable_code step_wait(struct apply *a, const struct transition *t,
                              struct transition_result *res, durable_error *err)
{
    char *data = NULL;
    bool taken = false;
    durable_code rc = t->signal_name ? signal_take_earlier(a, t, res, &taken, err) : DURABLE_OK;

    if (rc != DURABLE_OK || taken)
        return rc;
    rc = store_event_data_step_waiting(t->wait_json, t->attempt, t->wake_at_ms, &data, err);

    if (rc == DURABLE_OK)
        rc = step_write(a, STEP_W_WAIT, t, err);
    if (rc == DURABLE_OK) {
        rc = emit(a, t, "step_waiting", data, err);
        data = NULL;
    }
    free(data);
    return rc;
}

/* A step reached by code (t->insert_step): its row is inserted unless the
 * run has it already (an earlier execution recorded it, or a retry reset
 * it to pending); an unknown or finished run is left to the guard. OUT
 * *st: the run and the step as they are now (the guard's read: one read
 * for both). */
static durable_code insert_step(struct apply *a, const struct transition *t,
                                struct store_run_state *st, durable_error *err)
{
    durable_code rc;

    if (!a->rows->step_insert)
        return err_set(err, DURABLE_EUNSUPPORTED, "this store cannot add steps to a run");
    rc = run_get(a, t->run_id, t->step_id, st, err);
    if (rc != DURABLE_OK || !st->has_run || st->has_step)
        return rc;
    if (store_guard_run(t->run_id, st->run_status, false, NULL) != DURABLE_OK)
        return DURABLE_OK; /* the guard refuses it below, with the same reason */
    rc = a->rows->step_insert(a->s, t->run_id, t->insert_idx, t->insert_step, err);
    if (rc == DURABLE_OK) { /* the row as the insert wrote it */
        st->has_step = true;
        snprintf(st->step_status, sizeof(st->step_status), "%s", "pending");
        snprintf(st->step_type, sizeof(st->step_type), "%s", t->insert_step->type);
        st->attempt = 0;
    }
    return rc;
}

/* Guards, applies a STEP_* transition, then recomputes the run's status. */
static durable_code apply_step(struct apply *a, const struct transition *t,
                               struct transition_result *res, durable_error *err)
{
    const struct step_guard *g = store_step_guard(t->with_start ? TR_STEP_START : t->kind);
    struct store_run_state st = { .has_run = false };
    durable_code rc = require(t->step_id, "step_id", err);

    if (rc == DURABLE_OK && t->insert_step)
        rc = insert_step(a, t, &st, err);
    if (rc == DURABLE_OK)
        rc = guard_step(a, t, g, &st, t->insert_step != NULL, err);
    if (rc == DURABLE_OK) {
        switch (t->kind) {
        case TR_STEP_START:
            rc = step_start(a, t, err);
            break;
        case TR_STEP_COMPLETE:
            if (t->with_start)
                rc = step_start_complete(a, t, err);
            else
                rc = step_complete(a, t, st.order_id, err);
            break;
        case TR_STEP_RETRY:
            rc = step_retry(a, t, err);
            break;
        case TR_STEP_FAIL:
            rc = step_fail(a, t, err);
            break;
        case TR_STEP_WAIT:
            rc = step_wait(a, t, res, err);
            break;
        default:
            rc = step_skip(a, t, err);
            break;
        }
    }
    /* A START has made the run running already (step_start). */
    if (rc == DURABLE_OK && t->kind != TR_STEP_START)
        rc = run_write(a, RUN_W_RECOMPUTE, t, err);
    return rc;
}

/* An item of a running map step (steps/map.c): its progress on the step's
 * row and one event, the step still running. One row change and one event
 * per item, whatever the number of items. */
static durable_code apply_map_item(struct apply *a, const struct transition *t, durable_error *err)
{
    struct store_run_state st = { .has_run = false };
    durable_code rc = require(t->step_id, "step_id", err);

    if (rc == DURABLE_OK)
        rc = require(t->map_event, "map_event", err);
    if (rc == DURABLE_OK)
        rc = require(t->map_event_json, "map_event_json", err);
    if (rc == DURABLE_OK)
        rc = guard_step(a, t, store_step_guard(TR_MAP_ITEM), &st, false, err);
    if (rc == DURABLE_OK && t->output_json)
        rc = step_write(a, STEP_W_PROGRESS, t, err);
    if (rc == DURABLE_OK)
        rc = emit(a, t, t->map_event, xstrdup(t->map_event_json), err);
    return rc;
}

/* The run must be unfinished and the step an approval waiting for a
 * decision (of attempt t->attempt unless 0). OUT *out_attempt: its
 * current attempt. */
static durable_code guard_decide(struct apply *a, const struct transition *t, int *out_attempt,
                                 durable_error *err)
{
    struct store_run_state st;
    enum step_status st_status = STEP_S_PENDING;
    durable_code rc = run_get(a, t->run_id, t->step_id, &st, err);

    if (rc == DURABLE_OK && !st.has_step) { /* 404 before 409, even once finished */
        rc = err_set(err, DURABLE_ENOTFOUND, "step \"%s\" not found in run \"%s\"", t->step_id,
                     t->run_id);
    }
    if (rc == DURABLE_OK)
        rc = store_guard_run(t->run_id, st.run_status, false, err);
    if (rc != DURABLE_OK)
        return rc;
    *out_attempt = st.attempt;
    if (strcmp(st.step_type, "approval") != 0)
        return err_set(err, DURABLE_ECONFLICT, "step \"%s\" is not an approval step", t->step_id);
    if (!step_status_parse(st.step_status, &st_status) || st_status != STEP_S_WAITING) {
        return err_set(err, DURABLE_ECONFLICT,
                       "step \"%s\" is not waiting for a decision: it is %s", t->step_id,
                       st.step_status);
    }
    if (t->attempt > 0 && t->attempt != *out_attempt) {
        return err_set(err, DURABLE_ECONFLICT,
                       "cannot decide step \"%s\": attempt %d is not the current attempt %d",
                       t->step_id, t->attempt, *out_attempt);
    }
    return DURABLE_OK;
}

/* A decision on an approval step: approval_decided, then the completion. */
static durable_code apply_step_decide(struct apply *a, const struct transition *t,
                                      durable_error *err)
{
    struct transition done = *t;
    json_t *output = NULL;
    durable_code rc = require(t->step_id, "step_id", err);

    if (rc == DURABLE_OK)
        rc = guard_decide(a, t, &done.attempt, err);
    if (rc == DURABLE_OK)
        rc = parse_json(t->output_json, NULL, &output, "decision", err);
    if (rc == DURABLE_OK && !json_is_object(output))
        rc = err_set(err, DURABLE_EINVAL, "a decision must be a JSON object");
    if (rc == DURABLE_OK)
        rc = emit(a, t, "approval_decided", xstrdup(t->output_json), err);
    if (rc == DURABLE_OK) {
        done.kind = TR_STEP_COMPLETE;
        done.action = NULL;
        rc = step_complete(a, &done, "", err);
    }
    if (rc == DURABLE_OK)
        rc = run_write(a, RUN_W_RECOMPUTE, t, err);
    json_decref(output);
    return rc;
}

/* ---- signals ---- */

/* A signal to an unfinished run: stored with its signal_received event,
 * and taken at once by the first step waiting for its name, if any. */
static durable_code apply_signal_send(struct apply *a, const struct transition *t,
                                      struct transition_result *res, durable_error *err)
{
    struct event_key k = { t->run_id, NULL, t->at_ms };
    struct transition done = *t;
    char step[STORE_STEP_ID_MAX];
    durable_code rc = require(t->signal_id, "signal_id", err);

    if (rc == DURABLE_OK)
        rc = require(t->signal_name, "signal_name", err);
    if (rc == DURABLE_OK)
        rc = guard_run(a, t->run_id, false, err);
    if (rc == DURABLE_OK) {
        rc = append(a, &k, "signal_received",
                    store_event_data_signal_received(t->signal_id, t->signal_name, t->output_json),
                    err);
    }
    if (rc == DURABLE_OK) {
        res->seq = a->last_seq;
        rc = a->rows->signal_insert(a->s, t, a->last_seq, err);
    }
    if (rc == DURABLE_OK)
        rc = a->rows->signal_waiter(a->s, t->run_id, t->signal_name, step, &done.attempt, err);
    if (rc != DURABLE_OK || !step[0])
        return rc;
    rc = a->rows->signal_take(a->s, t->signal_id, step, t->at_ms, err);
    if (rc == DURABLE_OK) {
        done.kind = TR_STEP_COMPLETE;
        done.step_id = step;
        done.action = NULL;
        done.output_json = t->output_json ? t->output_json : "null";
        rc = step_complete(a, &done, "", err);
    }
    if (rc == DURABLE_OK)
        rc = run_write(a, RUN_W_RECOMPUTE, t, err);
    if (rc == DURABLE_OK)
        snprintf(res->signal_step, sizeof(res->signal_step), "%s", step);
    return rc;
}

/* ---- run transitions ---- */

static durable_code apply_run_finish(struct apply *a, const struct transition *t,
                                     durable_error *err)
{
    const char *status = run_status_name(t->run_status);
    char type[32];
    durable_code rc;

    if (!run_status_is_final(t->run_status)) {
        return err_set(err, DURABLE_EINVAL, "cannot finish run \"%s\" as \"%s\"", t->run_id,
                       status);
    }
    rc = guard_run(a, t->run_id, false, err);
    if (rc == DURABLE_OK)
        rc = run_write(a, RUN_W_FINISH, t, err);
    if (rc == DURABLE_OK) {
        snprintf(type, sizeof(type), "run_%s", status);
        rc = emit(a, t, type,
                  store_event_data_run_finished(t->run_status, t->output_json, t->error_message),
                  err);
    }
    return rc;
}

/* Each step of the JSON array `steps` (ids) must be running: it runs again
 * from t->at_ms under the same attempt and idempotency key. Nothing is
 * written unless every step is running: several steps are guarded before
 * the first is written; a single step's write is its own guard (it
 * changes no row unless the step is running), which saves a read per run
 * at recovery. */
static durable_code restart_steps(struct apply *a, const struct transition *t, json_t *steps,
                                  durable_error *err)
{
    const struct step_guard *g = store_step_guard(TR_RUN_RECOVERED);
    struct store_run_state row;
    struct transition st = *t;
    bool changed = false;
    durable_code rc = DURABLE_OK;
    size_t k, n = json_array_size(steps);

    for (k = 0; rc == DURABLE_OK && k < n; k++) {
        st.step_id = json_string_value(json_array_get(steps, k));
        if (!st.step_id)
            rc = err_set(err, DURABLE_EINVAL, "recovered steps must be step ids");
        else if (n > 1)
            rc = guard_step(a, &st, g, &row, false, err);
    }
    for (k = 0; rc == DURABLE_OK && k < n; k++) {
        st.step_id = json_string_value(json_array_get(steps, k));
        rc = a->rows->step_write(a->s, STEP_W_RESTART, &st, &changed, err);
        if (rc == DURABLE_OK && !changed) {
            rc = guard_step(a, &st, g, &row, false, err); /* says why */
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
static durable_code apply_run_recovered(struct apply *a, const struct transition *t,
                                        durable_error *err)
{
    json_t *steps = NULL;
    durable_code rc = parse_json(t->recovered_json, "[]", &steps, "recovered steps", err);

    if (rc == DURABLE_OK && !json_is_array(steps))
        rc = err_set(err, DURABLE_EINVAL, "recovered steps must be an array");
    if (rc == DURABLE_OK && json_array_size(steps) == 0)
        rc = guard_run(a, t->run_id, false, err);
    if (rc == DURABLE_OK)
        rc = restart_steps(a, t, steps, err);
    if (rc == DURABLE_OK)
        rc = emit(a, t, "recovered", store_event_data_recovered(t->recovered_json), err);
    json_decref(steps);
    return rc;
}

/* The ids of the run's failed and cancelled steps, in definition order. */
struct step_ids {
    char **ids; /* each owned */
    size_t n, cap;
};

static void step_ids_add(void *ud, const char *step_id)
{
    struct step_ids *l = ud;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->ids = xrealloc(l->ids, l->cap * sizeof(*l->ids));
    }
    l->ids[l->n++] = xstrdup(step_id ? step_id : "");
}

static void step_ids_release(struct step_ids *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
}

/* A failed run runs again from its failed (and, because of the failure,
 * cancelled) steps: they become pending with attempt 0, so their attempts
 * count from 1 again while the history keeps the earlier ones. Completed
 * and skipped steps are kept. */
static durable_code apply_run_retry(struct apply *a, const struct transition *t, durable_error *err)
{
    struct step_ids steps = { NULL, 0, 0 };
    durable_code rc = guard_run(a, t->run_id, true, err);

    if (rc == DURABLE_OK) {
        rc = a->rows->run_retry(a->s, t->run_id, t->deadline_ms, step_ids_add, &steps, err);
    }
    if (rc == DURABLE_OK) {
        rc = emit(a, t, "run_retried",
                  store_event_data_run_retried((const char *const *)steps.ids, steps.n), err);
    }
    step_ids_release(&steps);
    return rc;
}

/* A caller pauses an unfinished run, or resumes a paused one: the run's
 * status alone changes (its steps keep theirs), with run_paused or
 * run_resumed (data {}). */
static durable_code apply_run_pause(struct apply *a, const struct transition *t, bool pause,
                                    durable_error *err)
{
    struct store_run_state row;
    enum run_status st = RUN_PENDING;
    durable_code rc = run_get(a, t->run_id, NULL, &row, err);

    if (rc == DURABLE_OK && !run_status_parse(row.run_status, &st)) {
        rc = err_set(err, DURABLE_EIO, "run \"%s\" has an unknown status \"%s\"", t->run_id,
                     row.run_status);
    }
    if (rc == DURABLE_OK && pause && (run_status_is_final(st) || st == RUN_PAUSED)) {
        rc = err_set(err, DURABLE_ECONFLICT, "run %s is %s, only an unfinished run can be paused",
                     t->run_id, row.run_status);
    }
    if (rc == DURABLE_OK && !pause && st != RUN_PAUSED) {
        rc = err_set(err, DURABLE_ECONFLICT, "run %s is %s, only a paused run can be resumed",
                     t->run_id, row.run_status);
    }
    if (rc == DURABLE_OK)
        rc = run_write(a, pause ? RUN_W_PAUSE : RUN_W_RESUME, t, err);
    if (rc == DURABLE_OK)
        rc = emit(a, t, pause ? "run_paused" : "run_resumed", xstrdup("{}"), err);
    return rc;
}

/* The workflow and the order a new run names must exist. */
static durable_code run_create_check(struct apply *a, const struct transition *t,
                                     durable_error *err)
{
    char status[STORE_NAME_MAX];
    bool found = false;
    durable_code rc = a->rows->workflow_exists(a->s, t->workflow_id, &found, err);

    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "workflow \"%s\" not found", t->workflow_id);
    if (rc == DURABLE_OK && t->create_order && !isfinite(t->order_amount))
        rc = err_set(err, DURABLE_EINVAL, "order amount must be a finite number");
    if (rc == DURABLE_OK && t->order_id && !t->create_order) {
        rc = a->rows->order_get(a->s, t->order_id, status, &found, err);
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

/* A restarted run's step kept from the original: completed with the
 * original's output (or skipped), at creation, without an attempt of its
 * own; its event names the original run. */
static durable_code copy_step(struct apply *a, const struct transition *t, const char *run_id,
                              const struct transition_step_copy *si, durable_error *err)
{
    bool done = si->status == STEP_S_COMPLETED;
    struct transition c = { .kind = done ? TR_STEP_COMPLETE : TR_STEP_SKIP,
                            .at_ms = t->at_ms,
                            .run_id = run_id,
                            .step_id = si->step_id,
                            .attempt = si->attempt,
                            .output_json = si->output_json ? si->output_json : "null" };
    struct event_key k = { run_id, si->step_id, t->at_ms };
    durable_code rc = step_write(a, done ? STEP_W_RUN : STEP_W_SKIP, &c, err);

    if (rc == DURABLE_OK) {
        rc = append(a, &k, done ? "step_completed" : "step_skipped",
                    store_event_data_step_copied(si->attempt, done ? c.output_json : NULL,
                                                 t->restarted_from),
                    err);
    }
    return rc;
}

/* ---- schedules ---- */

static durable_code schedules_supported(struct apply *a, durable_error *err)
{
    if (!a->rows->schedule_get)
        return err_set(err, DURABLE_EUNSUPPORTED, "this store has no schedules yet");
    return DURABLE_OK;
}

static durable_code schedule_id_check(const char *id, durable_error *err)
{
    if (!id)
        return require(NULL, "schedule_id", err);
    if (!*id || strlen(id) >= ID_MAX)
        return err_set(err, DURABLE_EINVAL, "schedule id must be 1 to %d bytes", ID_MAX - 1);
    return DURABLE_OK;
}

/* The guard of a tick: the schedule exists and tick_ms is after its last
 * tick (a tick fires once). */
static durable_code schedule_tick_guard(struct apply *a, const struct transition *t,
                                        durable_error *err)
{
    bool found = false, paused = false;
    int64_t last = 0;
    durable_code rc = schedules_supported(a, err);

    if (rc == DURABLE_OK)
        rc = schedule_id_check(t->schedule_id, err);
    if (rc == DURABLE_OK)
        rc = a->rows->schedule_get(a->s, t->schedule_id, &found, &paused, &last, err);
    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "schedule \"%s\" not found", t->schedule_id);
    if (rc == DURABLE_OK && t->tick_ms <= last)
        rc = err_set(err, DURABLE_ECONFLICT,
                     "schedule \"%s\": tick %lld is not after its last tick %lld", t->schedule_id,
                     (long long)t->tick_ms, (long long)last);
    return rc;
}

static durable_code apply_schedule_put(struct apply *a, const struct transition *t,
                                       struct transition_result *res, durable_error *err)
{
    const struct schedule_record *r = t->schedule;
    bool found = false, paused = false;
    int64_t last = 0;
    durable_code rc = schedules_supported(a, err);

    if (!r)
        return rc != DURABLE_OK ? rc : require(NULL, "schedule", err);
    if (rc == DURABLE_OK)
        rc = schedule_id_check(r->id, err);
    if (rc == DURABLE_OK && (!r->workflow_name || !r->tz || !r->input_json || !r->overlap ||
                             !r->catch_up || (!r->cron && r->every_ms <= 0)))
        rc = err_set(err, DURABLE_EINVAL, "schedule \"%s\" is incomplete", r->id);
    if (rc == DURABLE_OK)
        rc = a->rows->schedule_get(a->s, r->id, &found, &paused, &last, err);
    if (rc == DURABLE_OK)
        rc = a->rows->schedule_put(a->s, r, t->at_ms, err);
    if (rc == DURABLE_OK) {
        snprintf(res->id, sizeof(res->id), "%s", r->id);
        res->created = !found;
    }
    return rc;
}

static durable_code apply_schedule_set(struct apply *a, const struct transition *t,
                                       durable_error *err)
{
    bool found = false, paused = false;
    int64_t last = 0;
    durable_code rc = schedules_supported(a, err);

    if (rc == DURABLE_OK)
        rc = schedule_id_check(t->schedule_id, err);
    if (rc == DURABLE_OK && (t->schedule_op < SCHEDULE_PAUSE || t->schedule_op > SCHEDULE_DELETE))
        rc = err_set(err, DURABLE_EINVAL, "unknown schedule operation %d", (int)t->schedule_op);
    if (rc == DURABLE_OK)
        rc = a->rows->schedule_get(a->s, t->schedule_id, &found, &paused, &last, err);
    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "schedule \"%s\" not found", t->schedule_id);
    if (rc == DURABLE_OK)
        rc = a->rows->schedule_write(a->s, t, NULL, err);
    return rc;
}

static durable_code apply_schedule_tick(struct apply *a, const struct transition *t,
                                        durable_error *err)
{
    durable_code rc = schedule_tick_guard(a, t, err);

    if (rc == DURABLE_OK)
        rc = a->rows->schedule_write(a->s, t, NULL, err);
    return rc;
}

/* ---- runs ---- */

/* The run an idempotency key made already (*out_found, its id in res).
 * A schedule's tick that starts this run is guarded first, so a tick fired
 * already refuses the run and writes nothing; when the key's run exists, it
 * stands for the tick. */
static durable_code run_create_existing(struct apply *a, const struct transition *t,
                                        struct transition_result *res, bool *out_found,
                                        durable_error *err)
{
    durable_code rc = DURABLE_OK;

    if (t->schedule_id)
        rc = schedule_tick_guard(a, t, err);
    if (rc == DURABLE_OK && t->idempotency_key)
        rc = a->rows->run_by_key(a->s, t->workflow_id, t->idempotency_key, res->id, out_found, err);
    if (rc == DURABLE_OK && *out_found && t->schedule_id)
        rc = a->rows->schedule_write(a->s, t, res->id, err);
    return rc;
}

static durable_code apply_run_create(struct apply *a, const struct transition *t,
                                     struct transition_result *res, durable_error *err)
{
    const char *input_text = t->input_json ? t->input_json : "{}";
    size_t input_len = strlen(input_text);
    bool found = false;
    durable_code rc = require(t->workflow_id, "workflow_id", err);

    if (rc == DURABLE_OK)
        rc = run_create_existing(a, t, res, &found, err);
    if (rc != DURABLE_OK || found)
        return rc; /* res->created stays false */
    /* The engine parsed and encoded the input (store.h): only its shape is
     * checked here, so the text is not parsed a second time. */
    if (input_len < 2 || input_text[0] != '{' || input_text[input_len - 1] != '}')
        rc = err_set(err, DURABLE_EINVAL, "run input must be a JSON object");
    if (rc == DURABLE_OK)
        rc = run_create_check(a, t, err);
    if (rc == DURABLE_OK) {
        if (t->run_id)
            snprintf(res->id, sizeof(res->id), "%s", t->run_id);
        else
            id_new("run_", res->id, sizeof(res->id));
        if (t->create_order)
            rc = a->rows->order_insert(a->s, t->order_id, t->order_amount, t->at_ms, err);
        if (rc == DURABLE_OK)
            rc = a->rows->run_insert(a->s, t, res->id, input_text, err);
        if (rc == DURABLE_OK && t->schedule_id)
            rc = a->rows->schedule_write(a->s, t, res->id, err);
    }
    if (rc == DURABLE_OK) {
        rc = append(a, &(struct event_key){ res->id, NULL, t->at_ms }, "run_created",
                    store_event_data_run_created(t->workflow_id, input_text, t->order_id), err);
    }
    for (size_t i = 0; rc == DURABLE_OK && t->restarted_from && i < t->n_copies; i++)
        rc = copy_step(a, t, res->id, &t->copies[i], err);
    res->created = rc == DURABLE_OK;
    return rc;
}

/* ---- workflows and orders ---- */

static durable_code apply_workflow_put(struct apply *a, const struct transition *t,
                                       struct transition_result *res, durable_error *err)
{
    bool is_same = false;
    durable_code rc = require(t->wf_name, "workflow name", err);

    if (rc == DURABLE_OK)
        rc = require(t->wf_definition, "workflow definition", err);
    if (rc == DURABLE_OK)
        rc = a->rows->workflow_latest(a->s, t->wf_name, t->wf_definition, res, &is_same, err);
    if (rc == DURABLE_OK && !is_same) {
        res->version++; /* 1 for a new name */
        id_new("wf_", res->id, sizeof(res->id));
        rc = a->rows->workflow_insert(a->s, res, t, err);
        res->created = rc == DURABLE_OK;
    }
    return rc;
}

static durable_code apply_order_create(struct apply *a, const struct transition *t,
                                       struct transition_result *res, durable_error *err)
{
    char status[STORE_NAME_MAX];
    bool found = false;
    durable_code rc = require(t->order_id, "order_id", err);

    if (rc == DURABLE_OK && strlen(t->order_id) >= ID_MAX)
        rc = err_set(err, DURABLE_EINVAL, "order id \"%s\" is too long", t->order_id);
    if (rc == DURABLE_OK && !isfinite(t->order_amount))
        rc = err_set(err, DURABLE_EINVAL, "order amount must be a finite number");
    if (rc == DURABLE_OK)
        rc = a->rows->order_get(a->s, t->order_id, status, &found, err);
    if (rc == DURABLE_OK && found)
        rc = err_set(err, DURABLE_ECONFLICT, "order \"%s\" already exists", t->order_id);
    if (rc == DURABLE_OK)
        rc = a->rows->order_insert(a->s, t->order_id, t->order_amount, t->at_ms, err);
    if (rc == DURABLE_OK) {
        snprintf(res->id, sizeof(res->id), "%s", t->order_id);
        res->created = true;
    }
    return rc;
}

/* ---- deletion ---- */

static void forget_deleted(void *ud, const char *run_id)
{
    struct store *s = ud;

    if (s->cache)
        run_cache_forget_at_commit(s->cache, run_id); /* gone at commit */
}

static durable_code apply_runs_delete(struct apply *a, const struct transition *t,
                                      struct transition_result *res, durable_error *err)
{
    const struct store_purge *q = t->purge;
    struct store_run_state row;
    enum run_status st;
    durable_code rc;

    if (!q)
        return require(NULL, "purge", err);
    if (!q->dry_run && (q->limit < 1 || q->limit > STORE_PURGE_MAX))
        return err_set(err, DURABLE_EINVAL, "a deletion's limit is 1 to %d, got %d",
                       STORE_PURGE_MAX, q->limit);
    if (q->status && (!run_status_parse(q->status, &st) || !run_status_is_final(st)))
        return err_set(err, DURABLE_EINVAL,
                       "only finished runs are deleted: status is completed, failed or "
                       "cancelled, got \"%.40s\"",
                       q->status);
    if (q->run_id) {
        if (strlen(q->run_id) >= ID_MAX)
            return err_set(err, DURABLE_ENOTFOUND, "run \"%.40s...\" not found", q->run_id);
        rc = run_get(a, q->run_id, NULL, &row, err);
        if (rc != DURABLE_OK)
            return rc;
        if (!run_status_parse(row.run_status, &st))
            return err_set(err, DURABLE_EIO, "run \"%s\" has an unknown status \"%s\"", q->run_id,
                           row.run_status);
        if (!run_status_is_final(st))
            return err_set(err, DURABLE_ECONFLICT,
                           "run %s is %s: only a finished run (completed, failed or cancelled) "
                           "can be deleted; cancel it first",
                           q->run_id, row.run_status);
    }
    return a->rows->runs_delete(a->s, q, forget_deleted, a->s, &res->deleted, err);
}

static durable_code apply_workflow_delete(struct apply *a, const struct transition *t,
                                          durable_error *err)
{
    bool found = false, used = false;
    durable_code rc = require(t->wf_name, "wf_name", err);

    if (rc != DURABLE_OK)
        return rc;
    rc = a->rows->workflow_delete(a->s, t->wf_name, t->wf_version, &found, &used, err);
    if (rc != DURABLE_OK)
        return rc;
    if (!found)
        return err_set(err, DURABLE_ENOTFOUND, "workflow \"%.80s\" has no version %d", t->wf_name,
                       t->wf_version);
    if (used)
        return err_set(err, DURABLE_ECONFLICT,
                       "workflow \"%.80s\" version %d has runs: delete them first", t->wf_name,
                       t->wf_version);
    return DURABLE_OK;
}

/* ---- entry point ---- */

static durable_code check_run_id(const struct transition *t, durable_error *err)
{
    if (t->kind == TR_WORKFLOW_PUT || t->kind == TR_ORDER_CREATE || t->kind == TR_RUNS_DELETE ||
        t->kind == TR_WORKFLOW_DELETE || t->kind == TR_SCHEDULE_PUT || t->kind == TR_SCHEDULE_SET ||
        t->kind == TR_SCHEDULE_TICK)
        return DURABLE_OK;
    if (!t->run_id)
        return t->kind == TR_RUN_CREATE ? DURABLE_OK : require(NULL, "run_id", err);
    if (strlen(t->run_id) >= ID_MAX)
        return err_set(err, DURABLE_EINVAL, "run id \"%s\" is too long", t->run_id);
    return DURABLE_OK;
}

/* The run takes a place of its concurrency group where several nodes
 * count them in the store; in one process the engine counts (admitted). */
static durable_code apply_run_admit(struct apply *a, const struct transition *t,
                                    struct transition_result *res, durable_error *err)
{
    durable_code rc = require(t->flow_key, "a concurrency group", err);

    if (rc == DURABLE_OK)
        rc = guard_run(a, t->run_id, false, err);
    if (rc != DURABLE_OK)
        return rc;
    res->admitted = true;
    if (!a->rows->flow_admit)
        return DURABLE_OK;
    return a->rows->flow_admit(a->s, t, res, err);
}

/* A step's place under its rate limit where several nodes share it; in
 * one process the engine hands places out (now). */
static durable_code apply_rate_take(struct apply *a, const struct transition *t,
                                    struct transition_result *res, durable_error *err)
{
    durable_code rc = require(t->flow_key, "a rate limit", err);

    if (rc == DURABLE_OK && !(t->rate_interval_ms > 0))
        rc = err_set(err, DURABLE_EINVAL, "a rate limit needs an interval above 0");
    if (rc == DURABLE_OK)
        rc = guard_run(a, t->run_id, false, err);
    if (rc != DURABLE_OK || !a->rows->rate_take)
        return rc;
    return a->rows->rate_take(a->s, t, res, err);
}

static durable_code apply_kind(struct apply *a, const struct transition *t,
                               struct transition_result *res, durable_error *err)
{
    switch (t->kind) {
    case TR_WORKFLOW_PUT:
        return apply_workflow_put(a, t, res, err);
    case TR_ORDER_CREATE:
        return apply_order_create(a, t, res, err);
    case TR_RUN_CREATE:
        return apply_run_create(a, t, res, err);
    case TR_STEP_START:
    case TR_STEP_COMPLETE:
    case TR_STEP_RETRY:
    case TR_STEP_FAIL:
    case TR_STEP_SKIP:
    case TR_STEP_WAIT:
        return apply_step(a, t, res, err);
    case TR_SIGNAL_SEND:
        return apply_signal_send(a, t, res, err);
    case TR_STEP_DECIDE:
        return apply_step_decide(a, t, err);
    case TR_RUN_FINISH:
        return apply_run_finish(a, t, err);
    case TR_RUN_RECOVERED:
        return apply_run_recovered(a, t, err);
    case TR_RUN_RETRY:
        return apply_run_retry(a, t, err);
    case TR_RUNS_DELETE:
        return apply_runs_delete(a, t, res, err);
    case TR_WORKFLOW_DELETE:
        return apply_workflow_delete(a, t, err);
    case TR_RUN_PAUSE:
    case TR_RUN_RESUME:
        return apply_run_pause(a, t, t->kind == TR_RUN_PAUSE, err);
    case TR_SCHEDULE_PUT:
        return apply_schedule_put(a, t, res, err);
    case TR_SCHEDULE_SET:
        return apply_schedule_set(a, t, err);
    case TR_SCHEDULE_TICK:
        return apply_schedule_tick(a, t, err);
    case TR_MAP_ITEM:
        return apply_map_item(a, t, err);
    case TR_RUN_ADMIT:
        return apply_run_admit(a, t, res, err);
    case TR_RATE_TAKE:
        return apply_rate_take(a, t, res, err);
    default:
        return err_set(err, DURABLE_EINVAL, "unknown transition kind %d", (int)t->kind);
    }
}

durable_code store_apply(struct store *s, const struct transition *t, struct store_events *events,
                         struct transition_result *result, durable_error *err)
{
    struct apply a = { .s = s, .rows = s->ops->rows, .ev = events, .fence = t->by_owner };
    struct transition_result res = { .created = false };
    size_t n0 = events ? events->n : 0;
    durable_code rc;

    if (!a.rows) /* a backend still being written */
        return err_set(err, DURABLE_EUNSUPPORTED, "this store cannot apply transitions yet");
    rc = check_run_id(t, err);
    if (rc != DURABLE_OK)
        return rc;
    rc = apply_kind(&a, t, &res, err);
    if (rc == DURABLE_OK && a.rows->run_notify && tells_owner(t))
        rc = a.rows->run_notify(s, t->run_id, err);
    if (rc != DURABLE_OK) {
        free(res.signal_payload);
        if (events)
            store_events_truncate(events, n0);
        if (a.n_appended > 0)
            a.rows->events_undo(s, a.first_gid); /* its ids are free again */
        return rc;
    }
    if (t->kind == TR_RUN_RETRY && s->cache)
        run_cache_forget_at_commit(s->cache, t->run_id); /* no longer finished */
    if (result)
        *result = res;
    return rc;
}
