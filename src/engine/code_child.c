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
 * events wakes the parent when a child it waits for finishes (and cancels
 * the child when the parent ends first); the parent registers its wait
 * before it reads the child's status, so a child that finishes in between
 * wakes it too. The waits are memory only: after a restart the parent's
 * re-execution reaches the step again and reads the child's status from
 * the store.
 *
 * Threads: struct code_children's mu guards the waits; it is taken on the
 * workflow threads and in the event callback (the writer's or cluster
 * thread, under the engine's subscriber lock), and code.c's lock is taken
 * after it (code_wake), never before.
 */
#include "util/common.h"

#include "engine/code_int.h"
#include "steps/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A parent waiting for its child: a code-first parent (fn), or a JSON
 * run's step attempt (is_sched, tag) told through the scheduler. */
struct child_wait {
    char child_id[ID_MAX];
    char parent_id[ID_MAX];
    const struct code_fn *fn; /* the parent's */
    bool is_sched;
    struct step_io_tag tag;
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

/* A committed event: a run that ended wakes the parents waiting for it,
 * and cancels the children it was waiting for (its step no longer
 * waits: the parent was cancelled, failed or timed out). */
static void on_event(const durable_event *ev, void *ud)
{
    struct code_children *ch = ud;
    struct child_wait found[8];
    size_t n = 0, i = 0;
    bool more = true;

    if (ev->step_id || !is_run_end(ev->type))
        return;
    while (more) {
        pthread_mutex_lock(&ch->mu);
        for (n = 0; i < ch->n_waits && n < DUR_ARRAY_LEN(found);) {
            if (strcmp(ch->waits[i].child_id, ev->run_id) == 0 ||
                strcmp(ch->waits[i].parent_id, ev->run_id) == 0) {
                found[n++] = ch->waits[i];
                ch->waits[i] = ch->waits[--ch->n_waits];
            } else {
                i++;
            }
        }
        more = i < ch->n_waits;
        pthread_mutex_unlock(&ch->mu);
        for (size_t k = 0; k < n; k++) {
            /* The parent ended waiting: its child is cancelled as a caller
             * would (one that has ended since is left as it is; stopping,
             * by nobody). */
            if (strcmp(found[k].parent_id, ev->run_id) == 0)
                (void)engine_commit_submit(ch->d, commit_item_cancel(found[k].child_id));
            else if (found[k].is_sched)
                engine_sched_child_ended(ch->d, &found[k].tag, found[k].child_id);
            else
                code_wake(ch->d, found[k].parent_id, found[k].fn);
        }
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

static bool same_wait(const struct child_wait *a, const struct child_wait *b)
{
    return strcmp(a->child_id, b->child_id) == 0 && strcmp(a->parent_id, b->parent_id) == 0 &&
           a->is_sched == b->is_sched &&
           (!a->is_sched || (a->tag.step_idx == b->tag.step_idx &&
                             a->tag.run_gen == b->tag.run_gen && a->tag.gen == b->tag.gen));
}

/* Registers w (once). */
static void wait_add(struct code_children *ch, const struct child_wait *w)
{
    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->n_waits; i++) {
        if (same_wait(&ch->waits[i], w)) {
            pthread_mutex_unlock(&ch->mu);
            return;
        }
    }
    if (ch->n_waits == ch->cap_waits) {
        ch->cap_waits = ch->cap_waits ? ch->cap_waits * 2 : 16;
        ch->waits = xrealloc(ch->waits, ch->cap_waits * sizeof(*ch->waits));
    }
    ch->waits[ch->n_waits++] = *w;
    pthread_mutex_unlock(&ch->mu);
}

/* Takes w back: false if it was not there (the child's end took it). */
static bool wait_remove(struct code_children *ch, const struct child_wait *w)
{
    bool found = false;

    pthread_mutex_lock(&ch->mu);
    for (size_t i = 0; i < ch->n_waits && !found; i++) {
        if (same_wait(&ch->waits[i], w)) {
            ch->waits[i] = ch->waits[--ch->n_waits];
            found = true;
        }
    }
    pthread_mutex_unlock(&ch->mu);
    return found;
}

static struct child_wait sched_wait(const char *child_id, const struct step_io_tag *parent)
{
    struct child_wait w = { .is_sched = true, .tag = *parent };

    snprintf(w.child_id, sizeof(w.child_id), "%s", child_id);
    snprintf(w.parent_id, sizeof(w.parent_id), "%s", parent->run_id);
    return w;
}

void engine_code_child_wait(struct durable *d, const char *child_id,
                            const struct step_io_tag *parent)
{
    struct child_wait w = sched_wait(child_id, parent);

    code_children_subscribe(d);
    wait_add(*code_children_of(d), &w);
}

bool engine_code_child_unwait(struct durable *d, const char *child_id,
                              const struct step_io_tag *parent)
{
    struct child_wait w = sched_wait(child_id, parent);

    return wait_remove(*code_children_of(d), &w);
}

/* The child step's call: its id and attempt. */
struct child_call {
    char step_id[CODE_STEP_ID_SIZE];
    int attempt;
};

/* A transition of the step: kind, and its output, error or wait data. */
struct step_change {
    enum transition_kind kind;
    const char *output_json;
    const char *error_code;
    const char *error;
    const char *wait_json;
};

/* Commits the step's transition and waits. */
static durable_code step_commit(durable_ctx *ctx, const struct child_call *call,
                                const struct step_change *sc, durable_error *err)
{
    struct commit_item *ci = code_item_new(sc->kind, durable_ctx_run_id(ctx));

    ci->t.step_id = commit_item_str(ci, call->step_id);
    ci->t.attempt = call->attempt;
    ci->t.output_json = commit_item_str(ci, sc->output_json);
    ci->t.error_code = sc->error_code;
    ci->t.error_message = commit_item_str(ci, sc->error);
    ci->t.wait_json = commit_item_str(ci, sc->wait_json);
    return engine_commit_wait(code_ctx_durable(ctx), ci, NULL, err);
}

/* Ends the waiting step with the finished child's outcome: DURABLE_OK
 * with *out_json, or DURABLE_ESTEP. */
static durable_code child_end(durable_ctx *ctx, const struct child_call *call,
                              const struct run_record *child, char **out_json, durable_error *err)
{
    durable_error why = { 0 };
    char msg[512];
    durable_code rc;

    if (child->status == RUN_COMPLETED) {
        const char *out = child->output_json ? child->output_json : "null";
        struct step_change sc = { .kind = TR_STEP_COMPLETE, .output_json = out };
        rc = step_commit(ctx, call, &sc, &why);
        if (rc == DURABLE_OK && out_json)
            *out_json = xstrdup(out);
        return rc == DURABLE_OK ? DURABLE_OK : code_call_stop(ctx, rc, &why, err);
    }
    snprintf(msg, sizeof(msg), "child run %s %s%s%s", child->id, run_status_name(child->status),
             child->error_message ? ": " : "", child->error_message ? child->error_message : "");
    {
        struct step_change sc = {
            .kind = TR_STEP_FAIL,
            .error_code = child->status == RUN_CANCELLED ? "child_cancelled" : "child_failed",
            .error = msg,
        };
        rc = step_commit(ctx, call, &sc, &why);
    }
    if (rc == DURABLE_OK)
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", call->step_id, msg);
    return code_call_stop(ctx, rc == DURABLE_OK ? DURABLE_ESTEP : rc, &why, err);
}

/* The child could not be started: a request the engine refuses (an
 * unknown workflow, bad input) fails the step; anything else (closing,
 * the store failing) stops the execution with it, recording nothing. */
static durable_code start_failed(durable_ctx *ctx, const struct child_call *call,
                                 const durable_error *cause, durable_error *err)
{
    struct step_change sc = { .kind = TR_STEP_FAIL, .error_code = "child_error" };
    durable_error why = { 0 };
    char msg[400];
    durable_code rc;

    if (cause->code != DURABLE_ENOTFOUND && cause->code != DURABLE_EINVAL &&
        cause->code != DURABLE_ETOOBIG)
        return code_call_stop(ctx, cause->code != DURABLE_OK ? cause->code : DURABLE_EIO, cause,
                              err);
    snprintf(msg, sizeof(msg), "could not start the child run: %s", cause->msg);
    sc.error = msg;
    rc = step_commit(ctx, call, &sc, &why);
    if (rc == DURABLE_OK)
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", call->step_id, msg);
    return code_call_stop(ctx, rc == DURABLE_OK ? DURABLE_ESTEP : rc, &why, err);
}

/* A step recorded as finished: its output (*is_done true), or its
 * failure. */
static durable_code child_recorded(durable_ctx *ctx, const char *step_id,
                                   const struct code_rec_view *rec, char **out_json, bool *is_done,
                                   durable_error *err)
{
    durable_error why = { 0 };

    *is_done = false;
    if (!rec->recorded)
        return DURABLE_OK;
    if (strcmp(rec->status, "completed") == 0) {
        if (out_json)
            *out_json = rec->output ? json_dumps(rec->output, JSON_COMPACT | JSON_ENCODE_ANY)
                                    : xstrdup("null");
        code_call_done(ctx, step_id);
        *is_done = true;
        return DURABLE_OK;
    }
    if (strcmp(rec->status, "failed") == 0) {
        err_set(&why, DURABLE_ESTEP, "step \"%s\" failed: %s", step_id,
                rec->error ? rec->error : "no reason recorded");
        return code_call_stop(ctx, DURABLE_ESTEP, &why, err);
    }
    return DURABLE_OK;
}

/* The child started (child_id): registers the parent's wait, then ends the
 * step if the child has finished (retrying it first if it failed before
 * this attempt of the step began: is_retry), else suspends. */
static durable_code child_watch(durable_ctx *ctx, const struct child_call *call,
                                const char *child_id, bool is_retry, char **out_json,
                                durable_error *err)
{
    struct durable *d = code_ctx_durable(ctx);
    struct code_children *ch = *code_children_of(d);
    struct run_record child = { .n_steps = 0 };
    durable_error why = { 0 };
    struct child_wait w = { .fn = code_ctx_fn(ctx) };
    durable_code rc;

    snprintf(w.child_id, sizeof(w.child_id), "%s", child_id);
    snprintf(w.parent_id, sizeof(w.parent_id), "%s", durable_ctx_run_id(ctx));
    wait_add(ch, &w);
    rc = store_run_load(d->store, child_id, &child, &why);
    if (rc == DURABLE_OK && is_retry && child.status == RUN_FAILED) {
        /* The parent's step was retried: so is its failed child. */
        run_record_release(&child);
        child = (struct run_record){ .n_steps = 0 };
        rc = durable_run_retry(d, child_id, &why);
        if (rc == DURABLE_OK)
            rc = store_run_load(d->store, child_id, &child, &why);
    }
    if (rc == DURABLE_OK && run_status_is_final(child.status)) {
        wait_remove(ch, &w);
        rc = child_end(ctx, call, &child, out_json, err);
    } else if (rc == DURABLE_OK) {
        err_set(&why, DURABLE_ESUSPENDED, "step \"%s\" waits for child run %s", call->step_id,
                child_id);
        rc = code_call_stop(ctx, DURABLE_ESUSPENDED, &why, err);
    } else {
        wait_remove(ch, &w);
        rc = code_call_stop(ctx, rc, &why, err);
    }
    run_record_release(&child);
    return rc;
}

durable_code durable_child(durable_ctx *ctx, const char *workflow, const char *key,
                           const char *input_json, char **out_json, durable_error *err)
{
    char own_key[ID_MAX + CODE_STEP_ID_SIZE + 1], wait[ID_MAX + 32];
    struct child_call call = { .attempt = 1 };
    struct code_rec_view rec;
    durable_run_request req = { .workflow = workflow, .input_json = input_json };
    durable_error why = { 0 };
    char *child_id = NULL;
    bool existed = false, is_fresh, is_done = false;
    durable_code rc;

    if (out_json)
        *out_json = NULL;
    rc = code_call_begin(ctx, workflow, call.step_id, &rec, err);
    if (rc == DURABLE_OK)
        rc = child_recorded(ctx, call.step_id, &rec, out_json, &is_done, err);
    if (rc != DURABLE_OK || is_done)
        return rc;
    is_fresh = !rec.recorded || strcmp(rec.status, "pending") == 0;
    if (!is_fresh && rec.attempt > 0)
        call.attempt = rec.attempt;
    if (is_fresh && (rc = code_call_start(ctx, call.step_id, "child")) != DURABLE_OK) {
        err_set(&why, rc, "could not record step \"%s\"", call.step_id);
        return code_call_stop(ctx, rc, &why, err);
    }
    if (!key || !key[0]) {
        snprintf(own_key, sizeof(own_key), "%s/%s", durable_ctx_run_id(ctx), call.step_id);
        key = own_key;
    }
    req.idempotency_key = key;
    /* The same key every time: the child this step started before, if any. */
    rc = durable_run_start(code_ctx_durable(ctx), &req, &child_id, &existed, &why);
    if (rc != DURABLE_OK)
        return start_failed(ctx, &call, &why, err);
    if (!rec.recorded || strcmp(rec.status, "waiting") != 0) {
        struct step_change sc = { .kind = TR_STEP_WAIT, .wait_json = wait };
        snprintf(wait, sizeof(wait), "{\"child_run_id\":\"%s\"}", child_id);
        rc = step_commit(ctx, &call, &sc, &why);
        if (rc != DURABLE_OK)
            rc = code_call_stop(ctx, rc, &why, err);
    }
    if (rc == DURABLE_OK)
        rc = child_watch(ctx, &call, child_id, existed && is_fresh, out_json, err);
    if (rc == DURABLE_OK)
        code_call_done(ctx, call.step_id);
    free(child_id);
    return rc;
}
