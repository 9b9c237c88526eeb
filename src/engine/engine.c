/*
 * engine.c - the scheduler thread: run state in memory and the decisions
 * that turn committed transitions into the next ones. Its private types and
 * the step-lifecycle core other files call are in engine_int.h; the timer
 * heap is timers.c, adopting and recovering runs recover.c, child runs
 * children.c.
 *
 * Everything in struct sched below the inbox is touched by the scheduler
 * thread only. Other threads reach it through the inbox (committed items from
 * the writer, resume requests from callers). A step moves only when the
 * writer reports its previous transition committed, so what the scheduler
 * acts on is always what the database holds; after a crash the store alone
 * rebuilds this state (adopt_record).
 *
 * Timers are a binary min-heap of (due, run id, step, generation); a timer
 * whose generation no longer matches its step is stale and ignored, which is
 * how a finished attempt disarms its timeout without a heap delete.
 *
 * A run in memory is one incarnation of it (run_state.gen, new each time a
 * run is adopted). A retried run is dropped when it fails and adopted again
 * after TR_RUN_RETRY commits; timers and committed items of the earlier
 * incarnation carry its number and are ignored, so a late result from
 * before the retry can neither complete a step of the new one nor make the
 * scheduler forget it.
 */
#include "util/common.h"

#include "engine/engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

/* ---- run table (chained hash on the run id) ---- */

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

struct run_state *sched_run_find(struct sched *s, const char *id)
{
    struct run_state *r = s->buckets[hash_str(id) & (s->n_buckets - 1)];
    while (r && strcmp(r->id, id) != 0)
        r = r->hnext;
    return r;
}

static void run_table_grow(struct sched *s)
{
    size_t n = s->n_buckets * 2, i;
    struct run_state **b = xcalloc(n, sizeof(struct run_state *));

    for (i = 0; i < s->n_buckets; i++) {
        struct run_state *r = s->buckets[i], *next;
        for (; r; r = next) {
            next = r->hnext;
            r->hnext = b[hash_str(r->id) & (n - 1)];
            b[hash_str(r->id) & (n - 1)] = r;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->n_buckets = n;
}

void sched_run_insert(struct sched *s, struct run_state *r)
{
    size_t i;

    if (s->n_runs >= s->n_buckets)
        run_table_grow(s);
    i = hash_str(r->id) & (s->n_buckets - 1);
    r->hnext = s->buckets[i];
    s->buckets[i] = r;
    s->n_runs++;
}

static void run_free(struct run_state *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; r->steps && i < r->plan->n_steps; i++) {
        steps_pool_release(r->steps[i].pooled); /* cancelled if unanswered */
        json_decref(r->steps[i].output);
        json_decref(r->steps[i].config);
        free(r->steps[i].if_error);
        sched_map_free(r->steps[i].map);
    }
    free(r->steps);
    free(r->children);
    free(r->order_id);
    free(r->input_json);
    json_decref(r->input);
    json_decref(r->order);
    plan_unref(r->plan);
    free(r);
}

void sched_run_drop(struct sched *s, const char *id)
{
    struct run_state **pp = &s->buckets[hash_str(id) & (s->n_buckets - 1)];

    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->hnext;
    if (*pp) {
        struct run_state *r = *pp;
        *pp = r->hnext;
        s->n_runs--;
        flow_on_drop(s, r);
        engine_run_unlock(s->d, r->id);
        run_free(r);
    }
}

/* How long a run forgotten when the store failed waits before it is loaded
 * again: every try costs a commit, so not more often than this. */
#define SCHED_RELOAD_MS 1000

/* A transition of r was lost with a batch the store could not commit (the
 * disk full, a write error: writer.c, fail_batch, rolled back). r is
 * forgotten, and loaded again from the store after SCHED_RELOAD_MS as a
 * restart would (TM_RELOAD, then a barrier through the writer, so that
 * nothing r queued before is still on its way when the store is read). Its
 * parent too: the parent's step, started again, links the child again. */
void sched_run_reload_later(struct sched *s, struct run_state *r)
{
    char parent_id[ID_MAX];
    bool has_parent = r->has_parent;
    struct run_state *p;

    snprintf(parent_id, sizeof(parent_id), "%s", r->parent_id);
    sched_timer_push(s, r, 0, TM_RELOAD, clock_wall_ms() + SCHED_RELOAD_MS);
    sched_run_drop(s, r->id);
    p = has_parent ? sched_run_find(s, parent_id) : NULL;
    if (p)
        sched_run_reload_later(s, p);
}

/* TM_RELOAD: the barrier; the run is loaded when it comes back. */
static void submit_reload(struct sched *s, const char *run_id)
{
    struct commit_item *ci = commit_item_new(TR_RUN_RECOVERED, run_id);

    ci->barrier = true;
    sched_submit(s, ci);
}

struct run_state *sched_run_new(struct sched *s, const char *id, struct plan *plan,
                                const char *order_id, double order_amount, const char *input_json)
{
    struct run_state *r = xcalloc(1, sizeof(*r));
    size_t i;

    r->input_json = input_json ? xstrdup(input_json) : NULL;
    r->order_amount = order_amount;
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->gen = ++s->next_run_gen;
    r->plan = plan_ref(plan);
    r->order_id = order_id ? xstrdup(order_id) : NULL;
    r->steps = xcalloc(plan->n_steps, sizeof(*r->steps));
    for (i = 0; i < plan->n_steps; i++)
        r->steps[i].n_deps_left = plan->steps[i].n_deps;
    return r;
}

/* ---- submitting transitions ---- */

/* Submits an item, or a chain of them (ci->next ...). */
void sched_submit(struct sched *s, struct commit_item *ci)
{
    struct commit_item *c;

    for (c = ci; c; c = c->next) {
        c->notify_sched = true;
        c->t.by_owner = true; /* fenced on a shared database (store.h) */
        c->fallback.by_owner = true;
    }
    if (s->capture) {
        DUR_ASSERT(!*s->capture);
        *s->capture = ci;
        return;
    }
    /* ECLOSED only while shutting down: the run resumes at the next open. */
    engine_commit_submit(s->d, ci);
}

static struct commit_item *step_item(struct run_state *r, size_t i, enum transition_kind kind)
{
    struct commit_item *ci = commit_item_new(kind, r->id);

    ci->step_idx = i;
    ci->run_gen = r->gen;
    ci->t.step_id = r->plan->steps[i].id;
    ci->t.attempt = r->steps[i].attempt;
    ci->plan = plan_ref(r->plan); /* keeps step_id valid until freed */
    return ci;
}

static bool is_non_retryable(const struct plan_step *ps, const char *code)
{
    size_t k;

    for (k = 0; k < ps->retry.n_non_retryable_errors; k++) {
        if (strcmp(ps->retry.non_retryable_errors[k], code) == 0)
            return true;
    }
    return false;
}

/* Fills t (owned strings in ci) with the failure of attempt `attempt`:
 * a retry after back-off, or a final failure. */
static void make_failure(struct commit_item *ci, struct transition *t, const struct plan_step *ps,
                         int attempt, const char *code, const char *msg)
{
    t->error_code = commit_item_str(ci, code);
    t->error_message = commit_item_str(ci, msg);
    if (attempt < ps->retry.max_attempts && !is_non_retryable(ps, code)) {
        t->kind = TR_STEP_RETRY;
        t->wake_at_ms = t->at_ms + def_retry_delay_ms(&ps->retry, attempt + 1);
    } else {
        t->kind = TR_STEP_FAIL;
    }
}

/* The attempt of ss ends: the engine lets go of its pooled call, which is
 * cancelled if it is still unanswered (a timeout). */
static void release_pooled(struct step_state *ss)
{
    steps_pool_release(ss->pooled);
    ss->pooled = NULL;
}

void sched_submit_failure(struct sched *s, struct run_state *r, size_t i, const char *code,
                          const char *msg)
{
    struct commit_item *ci = step_item(r, i, TR_STEP_FAIL);

    make_failure(ci, &ci->t, &r->plan->steps[i], r->steps[i].attempt, code, msg);
    release_pooled(&r->steps[i]);
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++;
    sched_submit(s, ci);
}

static struct commit_item *finish_item(struct run_state *r, enum run_status status,
                                       const char *error, const char *output_json)
{
    struct commit_item *ci = commit_item_new(TR_RUN_FINISH, r->id);

    ci->run_gen = r->gen;
    ci->t.run_status = status;
    ci->t.error_message = commit_item_str(ci, error);
    ci->t.output_json = commit_item_str(ci, output_json);
    return ci;
}

/* A completed run's output: the outputs of its leaf steps, with step *last
 * counted as completed with last_output when last is not NULL. Owned text. */
static char *run_output(const struct run_state *r, const size_t *last, json_t *last_output)
{
    json_t *out = json_object();
    char *text;
    size_t i;

    for (i = 0; i < r->plan->n_steps; i++) {
        if (r->plan->steps[i].n_dependents > 0)
            continue;
        if (last && i == *last)
            json_object_set(out, r->plan->steps[i].id, last_output);
        else if (r->steps[i].st == SS_COMPLETED)
            json_object_set(out, r->plan->steps[i].id, r->steps[i].output);
    }
    text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    return text;
}

/* A completion that settles the run's last step has the run's own
 * completion chained to it: applied only if the step's is (not if its
 * action refused and its fallback applied instead). */
void sched_submit_complete(struct sched *s, struct run_state *r, size_t i, json_t *output)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct commit_item *ci = step_item(r, i, TR_STEP_COMPLETE);
    char *text = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);

    ci->t.output_json = commit_item_str(ci, text ? text : "null");
    free(text);
    ci->output = output;
    if (ps->action && engine_action_find(s->d, ps->action, &ci->t.action_fn, &ci->t.action_ud)) {
        const char *input = r->input_json;
        char *text_in = input ? NULL : json_dumps(r->input, JSON_COMPACT);
        ci->t.input_json = commit_item_str(ci, input ? input : text_in ? text_in : "{}");
        free(text_in);
        ci->t.action = ps->action;
    } else if (ps->action && r->order_id) {
        ci->t.action = ps->action;
    }
    if (ci->t.action) {
        ci->has_fallback = true;
        ci->fallback = ci->t;
        ci->fallback.action = NULL;
        ci->fallback.action_fn = NULL;
        ci->fallback.input_json = NULL;
        ci->fallback.output_json = NULL;
        /* The message is the action's refusal, filled in by the writer. */
        make_failure(ci, &ci->fallback, ps, r->steps[i].attempt, "action_failed", "");
    }
    if (!r->finishing && r->n_settled + 1 == r->plan->n_steps) {
        char *run_text = run_output(r, &i, output);
        ci->next = finish_item(r, RUN_COMPLETED, NULL, run_text);
        ci->next->after_prev = true;
        r->finish_chained = true;
        free(run_text);
    }
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++;
    sched_submit(s, ci);
}

/* Starts attempt `attempt` of step i. A type with a pure start is asked at
 * once, on the committed data the run context holds, and its answer (a
 * completion, failure or wait) is chained to the START: one commit per
 * step instead of two, and nothing outside the engine has seen the attempt
 * before both commit. A type that answers with a timer has it armed now. */
void sched_submit_start(struct sched *s, struct run_state *r, size_t i, int attempt)
{
    const durable_step_type *type = r->plan->steps[i].step_type;
    struct commit_item *ci, *then = NULL;

    r->steps[i].attempt = attempt;
    r->steps[i].st = SS_STARTING;
    ci = step_item(r, i, TR_STEP_START);
    if (type && type->answers_at_once) {
        ci->began = true;
        s->capture = &then;
        sched_on_started(s, r, i);
        s->capture = NULL;
    }
    if (then && then->t.kind == TR_STEP_COMPLETE && !then->t.action) {
        /* Started and completed at once: one transition, which changes
         * the step's row once (TR_STEP_COMPLETE with_start). */
        then->t.with_start = true;
        commit_item_free(ci);
        ci = then;
    } else if (then) {
        then->after_prev = true;
        ci->next = then; /* with what is chained to it */
    }
    sched_submit(s, ci);
}

void sched_submit_finish(struct sched *s, struct run_state *r, enum run_status status,
                         const char *error, const char *output_json)
{
    r->finishing = true;
    sched_submit(s, finish_item(r, status, error, output_json));
}

/* ---- decisions ---- */

void sched_check_finished(struct sched *s, struct run_state *r)
{
    char *text;

    if (!r->finishing && !r->finish_chained && r->n_settled == r->plan->n_steps) {
        text = run_output(r, NULL, NULL);
        sched_submit_finish(s, r, RUN_COMPLETED, NULL, text);
        free(text);
    }
}

/* ---- expressions (SPEC §3) ---- */

static const char *st_name(enum step_st st)
{
    switch (st) {
    case SS_PENDING:
    case SS_SKIPPING:
        return step_status_name(STEP_S_PENDING);
    case SS_RETRYING:
        return step_status_name(STEP_S_RETRYING);
    case SS_WAITING:
        return step_status_name(STEP_S_WAITING);
    case SS_COMPLETED:
        return step_status_name(STEP_S_COMPLETED);
    case SS_SKIPPED:
        return step_status_name(STEP_S_SKIPPED);
    case SS_FAILED:
        return step_status_name(STEP_S_FAILED);
    case SS_CANCELLED:
        return step_status_name(STEP_S_CANCELLED);
    default:
        return step_status_name(STEP_S_RUNNING);
    }
}

/* The run context {input, steps: {ID: {status, output}}, run: {id, order}}
 * (order: {id, amount} of the run's demo order, or null), a new
 * reference. Built per evaluation: O(steps), cheap next to a jq call. The
 * run's input and order are made into JSON at the first call and kept. */
static json_t *run_context(struct run_state *r);

json_t *sched_run_context(struct run_state *r)
{
    return run_context(r);
}

static json_t *run_context(struct run_state *r)
{
    json_t *steps = json_object();
    size_t i;

    if (!r->input) {
        r->input = r->input_json ? json_loads(r->input_json, JSON_DECODE_ANY, NULL) : NULL;
        if (!r->input)
            r->input = json_object();
        free(r->input_json);
        r->input_json = NULL;
    }
    if (!r->order) {
        r->order = r->order_id
                           ? json_pack("{s:s, s:f}", "id", r->order_id, "amount", r->order_amount)
                           : json_null();
    }

    for (i = 0; i < r->plan->n_steps; i++) {
        const struct step_state *ss = &r->steps[i];
        json_object_set_new(steps, r->plan->steps[i].id,
                            json_pack("{s:s, s:O}", "status", st_name(ss->st), "output",
                                      ss->output ? ss->output : json_null()));
    }
    return json_pack("{s:O, s:o, s:{s:s, s:O}}", "input", r->input, "steps", steps, "run", "id",
                     r->id, "order", r->order);
}

/* Evaluates step i's `if`: 1 true, 0 false, -1 error (kept in if_error). */
static int eval_if(struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_state *ss = &r->steps[i];
    durable_error err = { 0 };
    json_t *ctx = run_context(r), *v = NULL;
    int res;

    ss->if_checked = true;
    free(ss->if_error);
    ss->if_error = NULL;
    if (expr_eval(ps->if_compiled, ctx, &v, &err) != DURABLE_OK) {
        ss->if_error = xasprintf("if: %s", err.msg);
        res = -1;
    } else {
        res = expr_truthy(v) ? 1 : 0;
    }
    json_decref(v);
    json_decref(ctx);
    return res;
}

/* All of step i's dependencies are settled: skip it or start it. A step
 * after a skipped one is skipped unless its own `if` decides (a join). */
void sched_on_ready(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    bool skip = false;
    size_t k;

    if (r->finishing || r->paused || r->flow_held || r->steps[i].st != SS_PENDING)
        return; /* a paused run's ready steps start at its resume, a held
                   run's once it is admitted (flow.c) */
    for (k = 0; k < ps->n_deps && !ps->if_compiled; k++) {
        if (r->steps[ps->deps[k]].st == SS_SKIPPED)
            skip = true;
    }
    /* An `if` that cannot be evaluated starts the step, whose attempt then
     * fails with the error (sched_on_started): the failure is in the history. */
    if (ps->if_compiled && eval_if(r, i) == 0)
        skip = true;
    if (skip) {
        r->steps[i].st = SS_SKIPPING;
        sched_submit(s, step_item(r, i, TR_STEP_SKIP));
        return;
    }
    if (!flow_rate_admit(s, r, i))
        return; /* started by its TM_RATE timer */
    sched_submit_start(s, r, i, 1);
}

static void on_settled(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    size_t k;

    r->n_settled++;
    for (k = 0; k < ps->n_dependents; k++) {
        size_t j = ps->dependents[k];
        DUR_ASSERT(r->steps[j].n_deps_left > 0);
        if (--r->steps[j].n_deps_left == 0)
            sched_on_ready(s, r, j);
    }
    sched_check_finished(s, r);
}

/* A `workflow` step starts its child run (data: {workflow, input}): a
 * RUN_CREATE keyed by the step's idempotency key, handled in
 * sched_on_child_created once committed. */
static void start_child(struct sched *s, struct run_state *r, size_t i, json_t *data)
{
    json_t *input = json_object_get(data, "input");
    char key[ID_MAX + DEF_MAX_ID_LEN + 16];
    char *input_text = input ? json_dumps(input, JSON_COMPACT) : NULL;
    struct commit_item *ci = NULL;
    durable_error err = { 0 };

    /* One child per attempt: started again after a restart (same attempt)
     * the key finds the same child; a retry starts a new one. */
    snprintf(key, sizeof(key), "%s/%s#%d", r->id, r->plan->steps[i].id, r->steps[i].attempt);
    if (engine_child_item(s->d, json_string_value(json_object_get(data, "workflow")), input_text,
                          key, &ci, &err) != DURABLE_OK) {
        free(input_text);
        sched_submit_failure(s, r, i, "child_error", err.msg);
        return;
    }
    free(input_text);
    ci->is_child = true;
    snprintf(ci->parent_id, sizeof(ci->parent_id), "%s", r->id);
    ci->parent_gen = r->gen;
    ci->parent_step = i;
    ci->parent_step_gen = r->steps[i].gen;
    sched_submit(s, ci);
}

/* The attempt waits durably: committed as `waiting` before its timer is armed. */
static void submit_wait(struct sched *s, struct run_state *r, size_t i, struct step_outcome *o)
{
    struct commit_item *ci = step_item(r, i, TR_STEP_WAIT);
    char *text = o->data ? json_dumps(o->data, JSON_COMPACT) : NULL;
    const char *signal = json_string_value(json_object_get(o->data, "signal"));
    const char *waiting_for = json_string_value(json_object_get(o->data, "waiting_for"));

    ci->t.wake_at_ms = o->wake_at_ms;
    ci->t.wait_json = commit_item_str(ci, text);
    free(text);
    /* A wait_signal step: a signal kept for it completes it at once. */
    if (signal && waiting_for && strcmp(waiting_for, "signal") == 0)
        ci->t.signal_name = commit_item_str(ci, signal);
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++; /* the attempt's timeout does not count the wait */
    sched_submit(s, ci);
}

static void submit_decide(struct sched *s, struct run_state *r, size_t i, json_t *output)
{
    struct commit_item *ci = step_item(r, i, TR_STEP_DECIDE);
    char *text = json_dumps(output, JSON_COMPACT);

    ci->t.output_json = commit_item_str(ci, text);
    free(text);
    json_decref(output);
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++;
    sched_submit(s, ci);
}

static void handle_outcome(struct sched *s, struct run_state *r, size_t i, struct step_outcome *o)
{
    switch (o->kind) {
    case STEP_OUT_TIMER:
        sched_timer_push(s, r, i, TM_STEP, clock_wall_ms() + o->timer_ms);
        break;
    case STEP_OUT_WAIT:
        submit_wait(s, r, i, o);
        break;
    case STEP_OUT_DECIDE:
        submit_decide(s, r, i, o->output ? o->output : json_object());
        o->output = NULL;
        break;
    case STEP_OUT_DONE:
        sched_submit_complete(s, r, i, o->output ? o->output : json_null());
        o->output = NULL;
        break;
    case STEP_OUT_FAIL:
    case STEP_OUT_NONE: /* steps_call answers for a type that did not */
        sched_submit_failure(s, r, i, o->error_code, o->error_msg);
        break;
    case STEP_OUT_CHILD:
        start_child(s, r, i, o->data);
        break;
    case STEP_OUT_IO: {
        struct step_io_tag tag = { .step_idx = i, .run_gen = r->gen, .gen = r->steps[i].gen };
        snprintf(tag.run_id, sizeof(tag.run_id), "%s", r->id);
        steps_io_submit(s->io, o->io_request, &tag);
        o->io_request = NULL;
        break;
    }
    }
    json_decref(o->data);
    o->data = NULL;
}

static void step_call_init(durable_step_call *c, const struct run_state *r, size_t i, char *key,
                           size_t key_len)
{
    memset(c, 0, sizeof(*c));
    snprintf(key, key_len, "%s/%s", r->id, r->plan->steps[i].id);
    c->step = &r->plan->steps[i];
    c->step_id = c->step->id;
    c->run_id = r->id;
    c->attempt = r->steps[i].attempt;
    c->idempotency_key = key;
    c->config = r->steps[i].config ? r->steps[i].config : r->plan->steps[i].config;
}

/* Renders step i's config templates for this attempt (kept in ss->config
 * until the attempt's timer calls are over). False with msg on a runtime
 * error. Rendering again after a restart gives the same config: the
 * context holds only committed data. */
static bool render_config(struct run_state *r, size_t i, char *msg, size_t msg_len)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_state *ss = &r->steps[i];
    durable_error err = { 0 };
    json_t *ctx, *cfg = NULL;
    bool ok;

    json_decref(ss->config);
    ss->config = NULL;
    if (!ps->templates)
        return true;
    ctx = run_context(r);
    ok = expr_config_render(ps->templates, ctx, &cfg, &err) == DURABLE_OK;
    json_decref(ctx);
    if (ok)
        ss->config = cfg;
    else
        snprintf(msg, msg_len, "%s", err.msg);
    return ok;
}

/* A blocking type's attempt goes to the step pool; its answer comes back
 * as an MSG_IO (on_io_done), from whichever thread gives it. */
static void start_pooled(struct sched *s, struct run_state *r, size_t i,
                         const durable_step_call *proto)
{
    struct step_io_tag tag = { .step_idx = i, .run_gen = r->gen, .gen = r->steps[i].gen };
    char *config = json_dumps(proto->config, JSON_COMPACT | JSON_ENCODE_ANY);

    snprintf(tag.run_id, sizeof(tag.run_id), "%s", r->id);
    release_pooled(&r->steps[i]);
    r->steps[i].pooled = steps_pool_submit(s->pool, r->plan->steps[i].step_type, proto,
                                           config ? config : "{}", &tag);
    free(config);
}

/* Calls the type's start (or timer, when is_timer) for step i with its
 * rendered config and, when it has an expression, the run context. */
static void call_type(struct sched *s, struct run_state *r, size_t i, bool is_timer)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_outcome out = { 0 };
    durable_step_call call;
    char key[ID_MAX + DEF_MAX_ID_LEN + 2];
    char msg[DURABLE_ERROR_MSG_SIZE];

    if (ps->templates && !r->steps[i].config && !render_config(r, i, msg, sizeof(msg))) {
        sched_submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    if (strcmp(ps->step_type->name, steps_map_type.name) == 0) {
        if (!is_timer)
            sched_map_start(s, r, i);
        return;
    }
    step_call_init(&call, r, i, key, sizeof(key));
    if (ps->step_type->blocking && !is_timer) {
        start_pooled(s, r, i, &call);
        return;
    }
    call.out = &out;
    if (ps->expr)
        call.ctx = run_context(r);
    steps_call(ps->step_type, &call, is_timer);
    json_decref(call.ctx);
    handle_outcome(s, r, i, &out);
}

/* The START of step i committed: hand it to its type. */
void sched_on_started(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_state *ss = &r->steps[i];
    char msg[DURABLE_ERROR_MSG_SIZE];

    ss->st = SS_RUNNING;
    ss->started_us = clock_mono_us();
    if (!ps->step_type) {
        sched_submit_failure(s, r, i, "unsupported", "this step type is not supported");
        return;
    }
    /* Started again after a restart: the `if` was true or failed before;
     * evaluated again on the same committed data, it says the same. */
    if (ps->if_compiled && !ss->if_checked)
        eval_if(r, i);
    if (ss->if_error) {
        snprintf(msg, sizeof(msg), "%s", ss->if_error);
        sched_submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    if (ps->timeout_ms > 0)
        sched_timer_push(s, r, i, TM_TIMEOUT, clock_wall_ms() + ps->timeout_ms);
    if (!render_config(r, i, msg, sizeof(msg))) {
        sched_submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    call_type(s, r, i, false);
}

static void on_timer(struct sched *s, const struct timer *t)
{
    struct run_state *r;
    struct step_state *ss;

    if (t->kind == TM_RETAIN) {
        sched_retain_due(s);
        return;
    }
    r = sched_run_find(s, t->run_id);
    if (t->kind == TM_RELOAD) {
        if (!r)
            submit_reload(s, t->run_id);
        return;
    }
    if (!r || r->finishing || t->run_gen != r->gen)
        return;
    if (t->kind == TM_DEADLINE) {
        char msg[96];
        snprintf(msg, sizeof(msg), "run timed out after %.3gs",
                 (double)r->plan->timeout_ms / 1000.0);
        sched_submit_finish(s, r, RUN_FAILED, msg, NULL);
        return;
    }
    ss = &r->steps[t->step_idx];
    if (t->gen != ss->gen)
        return;
    if (t->kind == TM_MAP_ITEM) {
        if (ss->st == SS_RUNNING)
            sched_map_timer(s, r, t);
        return;
    }
    if (t->kind == TM_RATE) {
        flow_rate_due(s, r, t->step_idx);
        return;
    }
    if (r->paused && ((t->kind == TM_RETRY && ss->st == SS_RETRYING) ||
                      (t->kind == TM_WAKE && ss->st == SS_WAITING))) {
        ss->held = true; /* acted on at the resume */
        return;
    }
    if (t->kind == TM_RETRY && ss->st == SS_RETRYING) {
        sched_submit_start(s, r, t->step_idx, ss->attempt + 1);
    } else if (t->kind == TM_TIMEOUT && ss->st == SS_RUNNING) {
        char msg[96];
        snprintf(msg, sizeof(msg), "attempt %d timed out after %.3gs", ss->attempt,
                 (double)r->plan->steps[t->step_idx].timeout_ms / 1000.0);
        sched_submit_failure(s, r, t->step_idx, "timeout", msg);
    } else if ((t->kind == TM_STEP && ss->st == SS_RUNNING) ||
               (t->kind == TM_WAKE && ss->st == SS_WAITING)) {
        call_type(s, r, t->step_idx, true);
    }
}

static void on_step_failed(struct sched *s, struct run_state *r, size_t i, const char *msg)
{
    char err[384];

    r->steps[i].st = SS_FAILED;
    if (r->finishing)
        return;
    snprintf(err, sizeof(err), "step \"%s\" failed: %s", r->plan->steps[i].id, msg ? msg : "");
    sched_submit_finish(s, r, RUN_FAILED, err, NULL);
}

/* ---- committed items ---- */

/* An attempt of step i has its result committed: its time since START. */
static void observe_attempt(struct sched *s, struct step_state *ss)
{
    if (ss->started_us > 0) {
        engine_hist_observe(&s->d->step_seconds, (double)(clock_mono_us() - ss->started_us) / 1e6);
        ss->started_us = 0;
    }
}

/* A decision committed (a person's, or the scheduler's own on timeout). */
void sched_on_decided(struct sched *s, struct run_state *r, size_t i, const struct transition *t)
{
    struct step_state *ss = &r->steps[i];

    if (ss->st != SS_WAITING && ss->st != SS_FINISHING)
        return;
    observe_attempt(s, ss);
    ss->gen++; /* disarms the timeout */
    ss->st = SS_COMPLETED;
    json_decref(ss->output);
    ss->output = t->output_json ? json_loads(t->output_json, 0, NULL) : NULL;
    on_settled(s, r, i);
}

void sched_on_resumed(struct sched *s, struct run_state *r)
{
    r->paused = false;
    flow_on_resumed(s, r);
    for (size_t k = 0; k < r->plan->n_steps && !r->finishing; k++) {
        size_t i = r->plan->topo[k];
        struct step_state *ss = &r->steps[i];
        bool held = ss->held;

        ss->held = false;
        if (held && ss->st == SS_RETRYING)
            sched_submit_start(s, r, i, ss->attempt + 1);
        else if (held && ss->st == SS_WAITING)
            call_type(s, r, i, true);
        else if (ss->st == SS_PENDING && ss->n_deps_left == 0)
            sched_on_ready(s, r, i);
        else if (ss->st == SS_RUNNING && ss->map)
            sched_map_resumed(s, r, i);
    }
    sched_check_finished(s, r);
}

/* A caller's pause or resume committed. A run resumed that is not in
 * memory is adopted from the store (unless this process resumes no run of
 * its own accord: the next one that does starts it). */
static void on_pause_committed(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    if (ci->applied == APPLIED_NONE)
        return;
    if (!r) {
        if (ci->t.kind == TR_RUN_RESUME && s->d->recovery != DURABLE_RECOVER_NONE)
            sched_resume_run(s, ci->t.run_id, true);
        return;
    }
    if (ci->t.kind == TR_RUN_PAUSE)
        r->paused = true;
    else if (r->paused)
        sched_on_resumed(s, r);
}

/* A decision made through durable_step_decide (any thread) committed. A
 * run not in memory is adopted from the store, which already holds it. */
static void on_external_decision(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    long i;

    if (ci->applied == APPLIED_NONE)
        return;
    if (!r) {
        sched_resume_run(s, ci->t.run_id, true);
        return;
    }
    i = plan_step_index(r->plan, ci->t.step_id);
    if (i >= 0 && !r->finishing)
        sched_on_decided(s, r, (size_t)i, &ci->t);
}

/* A signal committed (durable_signal, any thread): the step that took it,
 * if one waited, completed with its payload. A run not in memory (a
 * code-first run among them) is adopted from the store. */
static void on_signal(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    struct transition t = { .kind = TR_STEP_DECIDE, .run_id = ci->t.run_id };
    long i;

    if (ci->applied == APPLIED_NONE || !ci->result.signal_step[0])
        return;
    if (!r) {
        /* A process that resumes no run of its own accord (durable signal
         * --db) leaves it to the next one that does. */
        if (s->d->recovery != DURABLE_RECOVER_NONE)
            sched_resume_run(s, ci->t.run_id, true);
        return;
    }
    i = plan_step_index(r->plan, ci->result.signal_step);
    t.output_json = ci->t.output_json;
    if (i >= 0 && !r->finishing)
        sched_on_decided(s, r, (size_t)i, &t);
}

/* A refused step transition whose step has moved on without it (a person
 * decided before an approval's timeout did) changes nothing. */
static bool refused_but_moved_on(const struct run_state *r, const struct commit_item *ci)
{
    enum step_st st;

    if (ci->code != DURABLE_ECONFLICT || !ci->t.step_id || ci->step_idx >= r->plan->n_steps)
        return false;
    st = r->steps[ci->step_idx].st;
    return st == SS_COMPLETED;
}

static void on_step_committed(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    size_t i = ci->step_idx;
    const struct transition *t = ci->applied == APPLIED_FALLBACK ? &ci->fallback : &ci->t;

    if (t->kind == TR_STEP_COMPLETE || t->kind == TR_STEP_RETRY || t->kind == TR_STEP_FAIL)
        observe_attempt(s, &r->steps[i]);
    switch (t->kind) {
    case TR_STEP_START:
        if (!ci->began)
            sched_on_started(s, r, i);
        break;
    case TR_STEP_COMPLETE:
        r->steps[i].st = SS_COMPLETED;
        r->steps[i].output = ci->output;
        ci->output = NULL;
        on_settled(s, r, i);
        break;
    case TR_STEP_SKIP:
        r->steps[i].st = SS_SKIPPED;
        on_settled(s, r, i);
        break;
    case TR_STEP_WAIT:
        if (ci->result.signal_taken) { /* a signal sent earlier: completed at once */
            json_decref(r->steps[i].output);
            r->steps[i].st = SS_COMPLETED;
            r->steps[i].output = ci->output;
            ci->output = NULL;
            on_settled(s, r, i);
            break;
        }
        r->steps[i].st = SS_WAITING;
        if (!r->finishing && t->wake_at_ms > 0)
            sched_timer_push(s, r, i, TM_WAKE, t->wake_at_ms);
        break;
    case TR_STEP_DECIDE:
        sched_on_decided(s, r, i, t);
        break;
    case TR_STEP_RETRY:
        r->steps[i].st = SS_RETRYING;
        if (!r->finishing)
            sched_timer_push(s, r, i, TM_RETRY, t->wake_at_ms);
        break;
    case TR_STEP_FAIL:
        on_step_failed(s, r, i, t->error_message);
        break;
    default:
        break;
    }
}

/* What ci was chained to was refused, or answered by its fallback: the
 * scheduler has dealt with that; a run finish chained to a completion that
 * did not apply is simply not due yet. */
static void on_chain_broken(struct sched *s, struct commit_item *ci)
{
    struct run_state *r = sched_run_find(s, ci->t.run_id);

    if (r && ci->run_gen == r->gen && ci->t.kind == TR_RUN_FINISH) {
        r->finish_chained = false;
        sched_check_finished(s, r);
    }
}

/* A transition of r was refused: r is forgotten. On a cluster the run may
 * still be this node's (a write left from before the node joined again
 * came first): reloaded if so. */
static void drop_refused(struct sched *s, struct run_state *r, durable_code code)
{
    log_debug("run %s: transition refused (%s), dropping it from memory", r->id,
              durable_strerror(code));
    /* On a cluster the run is still this node's in the store (a write the
     * database failed), or maybe another's (a refusal), or nobody's (the
     * fence refused a write of a run this node released when it joined
     * again): claimed again, it is reloaded from the store, and not left
     * unexecuted until a restart. A claim takes only a run that is free or
     * this node's, so asking costs a run another node owns nothing. */
    if (s->d->cluster &&
        (code == DURABLE_ECONFLICT || code == DURABLE_EIO || code == DURABLE_EFENCED))
        engine_cluster_want(s->d, r->id);
    sched_run_drop(s, r->id);
}

/* When ci was lost with a batch the store could not commit, its run is
 * loaded again later (not for a person's transition: they were answered
 * 503 and the run is untouched; a run's creation: children.c). When ci is
 * the barrier of such a reload, the run is loaded now, unless adopted
 * meanwhile. True in both cases: ci is dealt with. */
static bool on_store_failed(struct sched *s, struct commit_item *ci)
{
    struct run_state *r;

    if (ci->barrier) {
        sched_resume_run(s, ci->t.run_id, false);
        return true;
    }
    if (ci->code != DURABLE_EIO || ci->t.kind == TR_RUN_CREATE)
        return false;
    r = sched_run_find(s, ci->t.run_id);
    if (r && ci->run_gen == r->gen)
        sched_run_reload_later(s, r);
    return true;
}

/* A caller's transition of run r (r NULL when not in memory): a cancel,
 * decision, signal, pause or resume through the API. False when ci is not
 * one. */
static bool on_caller_committed(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    if (r && ci->t.kind == TR_RUN_FINISH && ci->run_gen == 0 && ci->applied != APPLIED_NONE) {
        /* cancelled through the API: forget it now, and its children */
        sched_on_run_finished(s, r, &ci->t);
        sched_run_drop(s, r->id);
    } else if (ci->t.kind == TR_STEP_DECIDE && ci->run_gen == 0) {
        on_external_decision(s, r, ci);
    } else if (ci->t.kind == TR_SIGNAL_SEND) {
        on_signal(s, r, ci);
    } else if (ci->t.kind == TR_RUN_PAUSE || ci->t.kind == TR_RUN_RESUME) {
        on_pause_committed(s, r, ci);
    } else {
        return false;
    }
    return true;
}

static void on_committed(struct sched *s, struct commit_item *ci)
{
    struct run_state *r;

    if (on_store_failed(s, ci))
        return;
    if (ci->chain_broken) {
        on_chain_broken(s, ci);
        return;
    }
    if (ci->t.kind == TR_RUN_CREATE) {
        if (ci->is_child)
            sched_on_child_created(s, ci);
        else if (ci->applied != APPLIED_NONE && ci->result.created)
            sched_adopt_new(s, ci);
        return;
    }
    r = sched_run_find(s, ci->t.run_id);
    if (on_caller_committed(s, r, ci))
        return;
    if (!r || ci->run_gen != r->gen)
        return; /* not in memory, or from an earlier incarnation */
    if (ci->t.kind == TR_RUN_ADMIT && ci->applied != APPLIED_NONE) {
        flow_on_admitted(s, r, &ci->result);
        return;
    }
    if (ci->t.kind == TR_RATE_TAKE && ci->applied != APPLIED_NONE) {
        flow_on_rate_taken(s, r, ci->step_idx, ci->result.wait_ms);
        return;
    }
    if (ci->t.kind == TR_RUN_FINISH) {
        if (ci->applied != APPLIED_NONE)
            sched_on_run_finished(s, r, &ci->t);
        if (ci->applied != APPLIED_NONE || ci->code == DURABLE_ECONFLICT ||
            ci->code == DURABLE_EFENCED)
            sched_run_drop(s, r->id);
        return;
    }
    if (ci->applied == APPLIED_NONE && refused_but_moved_on(r, ci))
        return;
    if (ci->applied == APPLIED_NONE) {
        /* Refused: the run finished elsewhere (cancel) or the store failed.
         * Forget it; the store is the truth and a restart resumes it. */
        drop_refused(s, r, ci->code);
        return;
    }
    if (ci->t.kind == TR_RUN_RECOVERED)
        sched_on_recovered(s, r);
    else
        on_step_committed(s, r, ci);
}

/* ---- the thread ---- */

static void msg_free(struct sched_msg *m)
{
    struct commit_item *ci, *next;

    for (ci = m->items; ci; ci = next) {
        next = ci->next;
        commit_item_free(ci);
    }
    json_decref(m->out.output);
    free(m);
}

/* An http_request ended (I/O thread), or a blocking type answered (any
 * thread): its outcome, if its attempt is still the one running. */
static void on_io_done(struct sched *s, struct sched_msg *m)
{
    struct run_state *r = sched_run_find(s, m->tag.run_id);
    struct step_state *ss;

    if (!r || r->finishing || r->gen != m->tag.run_gen || m->tag.step_idx >= r->plan->n_steps)
        return;
    ss = &r->steps[m->tag.step_idx];
    if (ss->gen != m->tag.gen || ss->st != SS_RUNNING)
        return; /* timed out, or its run was cancelled: a late result */
    if (m->tag.item > 0) {
        sched_map_io_done(s, r, m);
        return;
    }
    release_pooled(ss); /* answered: nothing to cancel */
    handle_outcome(s, r, m->tag.step_idx, &m->out);
}

static void post(struct sched *s, struct sched_msg *m);

/* steps_io's and the step pool's done callback, on the I/O thread or the
 * answering one: to the inbox. */
static void io_done(void *ud, const struct step_io_tag *tag, struct step_outcome *out)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_IO;
    m->tag = *tag;
    m->out = *out;
    out->output = NULL;
    post(ud, m);
}

static void post(struct sched *s, struct sched_msg *m)
{
    if (!queue_push(&s->inbox, &m->node))
        msg_free(m);
}

void engine_sched_child_ended(struct durable *d, const struct step_io_tag *parent,
                              const char *child_id)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_CHILD_ENDED;
    m->tag = *parent;
    snprintf(m->run_id, sizeof(m->run_id), "%s", child_id);
    post(d->sched, m);
}

void engine_sched_committed(struct durable *d, struct commit_item *items)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_COMMITTED;
    m->items = items;
    post(d->sched, m);
}

static void post_resume(struct durable *d, const char *run_id, bool is_retry)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_RESUME;
    m->is_retry = is_retry;
    snprintf(m->run_id, sizeof(m->run_id), "%s", run_id);
    post(d->sched, m);
}

void engine_sched_cluster(struct durable *d, enum sched_cluster_msg what, const char *run_id)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_CLUSTER;
    m->cluster = what;
    snprintf(m->run_id, sizeof(m->run_id), "%s", run_id ? run_id : "");
    post(d->sched, m);
}

void engine_sched_types_changed(struct durable *d)
{
    struct sched_msg *m = xcalloc(1, sizeof(*m));

    m->kind = MSG_TYPES;
    post(d->sched, m);
}

void engine_sched_resume(struct durable *d, const char *run_id)
{
    post_resume(d, run_id, false);
}

void engine_sched_retry(struct durable *d, const char *run_id)
{
    post_resume(d, run_id, true);
}

static void handle_msg(struct sched *s, struct sched_msg *m)
{
    struct commit_item *ci, *next;

    if (m->kind == MSG_RESUME)
        sched_resume_run(s, m->run_id, m->is_retry);
    if (m->kind == MSG_IO)
        on_io_done(s, m);
    if (m->kind == MSG_CLUSTER)
        sched_on_cluster(s, m->cluster, m->run_id);
    if (m->kind == MSG_TYPES)
        sched_resume_unresolved(s);
    if (m->kind == MSG_CHILD_ENDED)
        sched_on_code_child_ended(s, m);
    for (ci = m->items; ci; ci = next) {
        next = ci->next;
        if (ci->t.kind == TR_RUNS_DELETE)
            sched_retain_committed(s, ci); /* retention's batch: no run */
        else
            on_committed(s, ci);
        commit_item_free(ci);
    }
    m->items = NULL;
    msg_free(m);
}

static void fire_due_timers(struct sched *s)
{
    int64_t now = clock_wall_ms();

    while (s->n_heap && s->heap[0].due_ms <= now) {
        struct timer t = sched_timer_pop(s);
        on_timer(s, &t);
    }
}

/* Waits for a message or the next timer. Returns the messages taken (a
 * list), or NULL. */
static struct sched_msg *wait_for_work(struct sched *s)
{
    int64_t wait_ms = QUEUE_FOREVER;

    if (s->n_heap) {
        /* Timers are due in Unix time; the wait itself is monotonic. */
        wait_ms = s->heap[0].due_ms - clock_wall_ms();
        if (wait_ms < 0)
            wait_ms = 0;
    }
    return (struct sched_msg *)queue_take(&s->inbox, wait_ms);
}

static void handle_msgs(struct sched *s, struct sched_msg *m)
{
    struct sched_msg *next;

    for (; m; m = next) {
        next = m->next;
        handle_msg(s, m);
    }
}

/* Runs until the inbox is closed; the messages taken with the close are
 * still handled (the writer is still open), later ones are dropped. */
static void *sched_main(void *arg)
{
    struct sched *s = arg;

    pthread_setname_np(pthread_self(), "durable-sched");
    for (;;) {
        flow_pump(s); /* first: what recovery held */
        handle_msgs(s, wait_for_work(s));
        if (queue_is_closed(&s->inbox))
            break;
        fire_due_timers(s);
    }
    return NULL;
}

/* How many runs recovery adopts between two looks at the inbox. */
#define RECOVERY_DRAIN_RUNS 256

/* Before the thread starts, the recovering thread is the scheduler: it
 * handles what the writer has committed so far, so that committed items
 * are freed (their memory reused rather than 100,000 of them held until
 * the end) and restarted steps go to their types during recovery. */
static void drain_inbox(struct sched *s)
{
    handle_msgs(s, (struct sched_msg *)queue_take(&s->inbox, 0));
}

/* Frees what is left in the inbox, unhandled. */
static void drop_inbox(struct sched *s)
{
    struct sched_msg *m = (struct sched_msg *)queue_take(&s->inbox, 0), *next;

    for (; m; m = next) {
        next = m->next;
        msg_free(m);
    }
}

struct recovery {
    struct sched *s;
    size_t n_runs;
};

/* store_runs_unfinished's callback at start-up. */
static durable_code adopt_record(const struct run_record *rec, void *ud)
{
    struct recovery *rv = ud;

    sched_adopt_run(rv->s, rec, false);
    if (++rv->n_runs % RECOVERY_DRAIN_RUNS == 0)
        drain_inbox(rv->s);
    return DURABLE_OK;
}

durable_code engine_sched_start(struct durable *d, const char *http_allow, int step_threads,
                                durable_error *err)
{
    struct sched *s = xcalloc(1, sizeof(*s));
    durable_code rc = DURABLE_OK;

    s->d = d;
    queue_init(&s->inbox);
    s->n_buckets = 1024;
    s->buckets = xcalloc(s->n_buckets, sizeof(struct run_state *));
    s->flow = flow_new();
    d->store->run_note_ud = s->flow;
    d->store->run_note = flow_note;
    d->store->step_note = flow_step_note;
    d->sched = s;
    s->pool = steps_pool_new(io_done, s, step_threads > 0 ? (size_t)step_threads : 0);
    rc = steps_io_start(io_done, s, http_allow, &s->io, err);
    /* Recovery runs before the thread starts, so nothing races with it. */
    if (rc == DURABLE_OK && d->recovery == DURABLE_RECOVER_ALL && !d->cluster) {
        struct recovery rv = { .s = s };
        rc = store_runs_unfinished(d->store, adopt_record, &rv, err);
    }
    if (rc == DURABLE_OK)
        sched_retain_init(s);
    if (rc == DURABLE_OK && pthread_create(&d->scheduler, NULL, sched_main, s) != 0)
        rc = err_set(err, DURABLE_ENOMEM, "could not start the scheduler thread");
    if (rc != DURABLE_OK) {
        steps_io_stop(s->io);
        s->io = NULL;
        steps_pool_free(s->pool);
        s->pool = NULL;
    }
    return rc;
}

void engine_sched_stop(struct durable *d)
{
    struct sched *s = d->sched;
    size_t i;

    if (!s)
        return;
    queue_close(&s->inbox);
    pthread_join(d->scheduler, NULL);
    /* The I/O thread may still post until it is joined: the closed inbox
     * drops it. */
    steps_io_stop(s->io);
    s->io = NULL;
    drop_inbox(s);
    for (i = 0; i < s->n_buckets; i++) {
        struct run_state *r = s->buckets[i], *rn;
        for (; r; r = rn) {
            rn = r->hnext;
            run_free(r);
        }
    }
    free(s->buckets);
    free(s->heap);
    free(s->unresolved);
    /* Every pooled call is released (cancelled) with its run above: the
     * pool's threads end once their start() calls return. */
    steps_pool_free(s->pool);
    s->pool = NULL;
}

void engine_sched_free(struct durable *d)
{
    struct sched *s = d->sched;

    if (!s)
        return;
    /* After a failed start the writer's last items are still there. */
    queue_close(&s->inbox);
    drop_inbox(s);
    queue_release(&s->inbox);
    if (s->d->store && s->d->store->run_note_ud == s->flow) {
        s->d->store->run_note = NULL;
        s->d->store->step_note = NULL;
        s->d->store->run_note_ud = NULL;
    }
    flow_free(s->flow);
    free(s);
    d->sched = NULL;
}
