/*
 * code_child.c - child workflows of code-first runs (durable_child): a
 * step that starts a run of another workflow (code-first or JSON) and
 * waits for it without a thread.
 *
 * The child is started with an idempotency key (the caller's, or
 * "PARENT_RUN/STEP_ID"), so every execution of the parent finds the same
 * child: nothing but the key needs recording. The step waits (status
 * "waiting", its step_waiting event names the child) and the parent's
 * execution unwinds (DURABLE_ESUSPENDED). A subscription to committed
 * events wakes the parent when a child it waits for finishes; the parent
 * registers its wait before it reads the child's status, so a child that
 * finishes in between wakes it too. The waits are memory only: after a
 * restart the parent's re-execution reaches the step again and reads the
 * child's status from the store.
 *
 * Threads: struct code_children's mu guards the waits; it is taken on the
 * workflow threads and in the event callback (the writer's or cluster
 * thread, under the engine's subscriber lock), and code.c's lock is taken
 * after it (code_wake), never before.
 */
#include "util/common.h"

#include "engine/code_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parent waiting for its child. */
struct child_wait {
    char child_id[ID_MAX];
    char parent_id[ID_MAX];
    const struct code_fn *fn; /* the parent's */
};

struct code_children {
    struct durable *d;
    pthread_mutex_t mu;
    struct child_wait *waits; /* guarded by mu */
    size_t n_waits, cap_waits;
    bool is_subscribed; /* guarded by mu: a subscription exists or is being made */
    int sub;            /* guarded by mu: its id, 0 until made */
};

struct code_children *code_children_new(struct durable *d)
{
    struct code_children *ch = xcalloc(1, sizeof(*ch));

    ch->d = d;
    pthread_mutex_init(&ch->mu, NULL);
    return ch;
}

void code_children_free(struct code_children *ch)
{
    if (!ch)
        return;
    free(ch->waits);
    pthread_mutex_destroy(&ch->mu);
    free(ch);
}

static bool is_run_end(const char *type)
{
    return strcmp(type, "run_completed") == 0 || strcmp(type, "run_failed") == 0 ||
           strcmp(type, "run_cancelled") == 0;
}

/* A committed event: a run that ended wakes the parents waiting for it. */
static void on_event(const durable_event *ev, void *ud)
{
    struct code_children *ch = ud;
    struct child_wait woken[8];
    size_t n = 0, i = 0;
    bool more = true;

    if (ev->step_id || !is_run_end(ev->type))
        return;
    while (more) {
        pthread_mutex_lock(&ch->mu);
        for (n = 0; i < ch->n_waits && n < DUR_ARRAY_LEN(woken);) {
            if (strcmp(ch->waits[i].child_id, ev->run_id) == 0) {
                woken[n++] = ch->waits[i];
                ch->waits[i] = ch->waits[--ch->n_waits];
            } else {
                i++;
            }
        }
        more = i < ch->n_waits;
        pthread_mutex_unlock(&ch->mu);
        for (size_t k = 0; k < n; k++)
            code_wake(ch->d, woken[k].parent_id, woken[k].fn);
    }
}

void code_children_subscribe(struct durable *d)
{
    struct code_children *ch = *code_children_of(d);
    bool to_make;
    int sub;

    pthread_mutex_lock(&ch->mu);
    to_make = !ch->is_subscribed;
    ch->is_subscribed = true;
    pthread_mutex_unlock(&ch->mu);
    if (!to_make)
        return;
    sub = durable_subscribe(d, on_event, ch); /* outside mu: the callback takes it */
    pthread_mutex_lock(&ch->mu);
    ch->sub = sub;
    pthread_mutex_unlock(&ch->mu);
}

void code_children_stop(struct durable *d)
{
    struct code_children *ch = *code_children_of(d);
    int sub;

    pthread_mutex_lock(&ch->mu);
    sub = ch->sub;
    ch->sub = 0;
    pthread_mutex_unlock(&ch->mu);
    if (sub)
        durable_unsubscribe(d, sub);
}

/* Registers the parent's wait for child_id (once). */
static void wait_add(struct code_children *ch, const char *child_id, const char *parent_id,
                     const struct code_fn *fn)
{
    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->n_waits; i++) {
        if (strcmp(ch->waits[i].child_id, child_id) == 0 &&
            strcmp(ch->waits[i].parent_id, parent_id) == 0) {
            pthread_mutex_unlock(&ch->mu);
            return;
        }
    }
    if (ch->n_waits == ch->cap_waits) {
        ch->cap_waits = ch->cap_waits ? ch->cap_waits * 2 : 16;
        ch->waits = xrealloc(ch->waits, ch->cap_waits * sizeof(*ch->waits));
    }
    snprintf(ch->waits[ch->n_waits].child_id, ID_MAX, "%s", child_id);
    snprintf(ch->waits[ch->n_waits].parent_id, ID_MAX, "%s", parent_id);
    ch->waits[ch->n_waits++].fn = fn;
    pthread_mutex_unlock(&ch->mu);
}

static void wait_remove(struct code_children *ch, const char *child_id, const char *parent_id)
{
    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->n_waits; i++) {
        if (strcmp(ch->waits[i].child_id, child_id) == 0 &&
            strcmp(ch->waits[i].parent_id, parent_id) == 0) {
            ch->waits[i] = ch->waits[--ch->n_waits];
            break;
        }
    }
    pthread_mutex_unlock(&ch->mu);
}

/* Commits the step's transition (kind, with output or error) and waits. */
static durable_code step_commit(durable_ctx *ctx, enum transition_kind kind, const char *step_id,
                                int attempt, const char *output_json, const char *error_code,
                                const char *error, const char *wait_json, durable_error *err)
{
    struct commit_item *ci = code_item_new(kind, durable_ctx_run_id(ctx));

    ci->t.step_id = commit_item_str(ci, step_id);
    ci->t.attempt = attempt;
    ci->t.output_json = commit_item_str(ci, output_json);
    ci->t.error_code = error_code;
    ci->t.error_message = commit_item_str(ci, error);
    ci->t.wait_json = commit_item_str(ci, wait_json);
    return engine_commit_wait(code_ctx_durable(ctx), ci, NULL, err);
}

/* Ends the waiting step with the finished child's outcome: DURABLE_OK
 * with *out_json, or DURABLE_ESTEP. */
static durable_code child_end(durable_ctx *ctx, const char *step_id, int attempt,
                              const struct run_record *child, char **out_json, durable_error *err)
{
    durable_error why = { 0 };
    char msg[512];
    durable_code rc;

    if (child->status == RUN_COMPLETED) {
        const char *out = child->output_json ? child->output_json : "null";
        rc = step_commit(ctx, TR_STEP_COMPLETE, step_id, attempt, out, NULL, NULL, NULL, &why);
        if (rc == DURABLE_OK && out_json)
            *out_json = xstrdup(out);
        return rc == DURABLE_OK ? DURABLE_OK : code_call_stop(ctx, rc, &why, err);
    }
    snprintf(msg, sizeof(msg), "child run %s %s%s%s", child->id, run_status_name(child->status),
             child->error_message ? ": " : "", child->error_message ? child->error_message : "");
    rc = step_commit(ctx, TR_STEP_FAIL, step_id, attempt, NULL,
                     child->status == RUN_CANCELLED ? "child_cancelled" : "child_failed", msg, NULL,
                     &why);
    if (rc == DURABLE_OK)
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", step_id, msg);
    return code_call_stop(ctx, rc == DURABLE_OK ? DURABLE_ESTEP : rc, &why, err);
}

/* The child could not be started: a request the engine refuses (an
 * unknown workflow, bad input) fails the step; anything else (closing,
 * the store failing) stops the execution with it, recording nothing. */
static durable_code start_failed(durable_ctx *ctx, const char *step_id, int attempt,
                                 const durable_error *cause, durable_error *err)
{
    durable_error why = { 0 };
    char msg[400];
    durable_code rc;

    if (cause->code != DURABLE_ENOTFOUND && cause->code != DURABLE_EINVAL &&
        cause->code != DURABLE_ETOOBIG)
        return code_call_stop(ctx, cause->code != DURABLE_OK ? cause->code : DURABLE_EIO, cause,
                              err);
    snprintf(msg, sizeof(msg), "could not start the child run: %s", cause->msg);
    rc = step_commit(ctx, TR_STEP_FAIL, step_id, attempt, NULL, "child_error", msg, NULL, &why);
    if (rc == DURABLE_OK)
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", step_id, msg);
    return code_call_stop(ctx, rc == DURABLE_OK ? DURABLE_ESTEP : rc, &why, err);
}

durable_code durable_child(durable_ctx *ctx, const char *workflow, const char *key,
                           const char *input_json, char **out_json, durable_error *err)
{
    char step_id[CODE_STEP_ID_SIZE], own_key[ID_MAX + CODE_STEP_ID_SIZE + 1], wait[ID_MAX + 32];
    struct code_rec_view rec;
    struct durable *d;
    struct code_children *ch;
    durable_run_request req = { .workflow = workflow, .input_json = input_json };
    struct run_record child = { .n_steps = 0 };
    durable_error why = { 0 };
    char *child_id = NULL;
    bool existed = false, is_fresh, is_waiting;
    int attempt;
    durable_code rc;

    if (out_json)
        *out_json = NULL;
    rc = code_call_begin(ctx, workflow, step_id, &rec, err);
    if (rc != DURABLE_OK)
        return rc;
    d = code_ctx_durable(ctx);
    ch = *code_children_of(d);
    if (rec.recorded && strcmp(rec.status, "completed") == 0) {
        if (out_json)
            *out_json = rec.output ? json_dumps(rec.output, JSON_COMPACT | JSON_ENCODE_ANY)
                                   : xstrdup("null");
        code_call_done(ctx, step_id);
        return DURABLE_OK;
    }
    if (rec.recorded && strcmp(rec.status, "failed") == 0) {
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", step_id,
                rec.error ? rec.error : "no reason recorded");
        return code_call_stop(ctx, DURABLE_ESTEP, &why, err);
    }
    is_waiting = rec.recorded && strcmp(rec.status, "waiting") == 0;
    is_fresh = !rec.recorded || strcmp(rec.status, "pending") == 0;
    attempt = rec.recorded && rec.attempt > 0 && !is_fresh ? rec.attempt : 1;
    if (is_fresh) {
        rc = code_call_start(ctx, step_id, "child");
        if (rc != DURABLE_OK) {
            err_set(&why, rc, "could not record step \"%s\"", step_id);
            return code_call_stop(ctx, rc, &why, err);
        }
    }
    if (!key || !key[0]) {
        snprintf(own_key, sizeof(own_key), "%s/%s", durable_ctx_run_id(ctx), step_id);
        key = own_key;
    }
    req.idempotency_key = key;
    /* The same key every time: the child this step started before, if any. */
    rc = durable_run_start(d, &req, &child_id, &existed, &why);
    if (rc != DURABLE_OK)
        return start_failed(ctx, step_id, attempt, &why, err);
    if (!is_waiting) {
        snprintf(wait, sizeof(wait), "{\"child_run_id\":\"%s\"}", child_id);
        rc = step_commit(ctx, TR_STEP_WAIT, step_id, attempt, NULL, NULL, NULL, wait, &why);
        if (rc != DURABLE_OK) {
            free(child_id);
            return code_call_stop(ctx, rc, &why, err);
        }
    }
    wait_add(ch, child_id, durable_ctx_run_id(ctx), code_ctx_fn(ctx));
    rc = store_run_load(d->store, child_id, &child, &why);
    if (rc == DURABLE_OK && existed && is_fresh && child.status == RUN_FAILED) {
        /* The parent's step was retried: so is its failed child. */
        run_record_release(&child);
        child = (struct run_record){ .n_steps = 0 };
        rc = durable_run_retry(d, child_id, &why);
        if (rc == DURABLE_OK)
            rc = store_run_load(d->store, child_id, &child, &why);
    }
    if (rc == DURABLE_OK && run_status_is_final(child.status)) {
        wait_remove(ch, child_id, durable_ctx_run_id(ctx));
        rc = child_end(ctx, step_id, attempt, &child, out_json, err);
    } else if (rc == DURABLE_OK) {
        err_set(&why, DURABLE_ESUSPENDED, "step \"%s\" waits for child run %s", step_id, child_id);
        rc = code_call_stop(ctx, DURABLE_ESUSPENDED, &why, err);
    } else {
        wait_remove(ch, child_id, durable_ctx_run_id(ctx));
        rc = code_call_stop(ctx, rc, &why, err);
    }
    if (rc == DURABLE_OK)
        code_call_done(ctx, step_id);
    run_record_release(&child);
    free(child_id);
    return rc;
}
