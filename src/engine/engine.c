/*
 * engine.c - the scheduler thread: run state in memory, the timer heap, and
 * the decisions that turn committed transitions into the next ones.
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

#include "engine/engine.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expr/expr.h"
#include "steps/steps.h"

enum step_st {
    SS_PENDING = 0,
    SS_STARTING,
    SS_RUNNING,
    SS_FINISHING,
    SS_RETRYING,
    SS_COMPLETED,
    SS_SKIPPING,
    SS_SKIPPED,
    SS_FAILED,
    SS_CANCELLED,
    SS_WAITING, /* WAIT committed: a delay or an approval (timer TM_WAKE, or a decision) */
};

struct step_state {
    enum step_st st;
    int attempt;
    uint32_t gen;       /* bumped when an attempt ends: disarms its timers */
    size_t n_deps_left; /* dependencies not yet completed or skipped */
    json_t *output;     /* COMPLETED: owned */
    int64_t started_us; /* clock_mono_us when the attempt's START committed, or 0 */
    json_t *config;     /* the attempt's rendered config, owned; NULL: not rendered yet */
    bool if_checked;    /* the `if` was evaluated (on_ready) in this incarnation */
    char *if_error;     /* owned: the `if` failed to evaluate; the attempt fails with it */
    bool is_restarting; /* STARTING: was running at a restart, goes to its type once the
                           run's TR_RUN_RECOVERED commits (on_recovered) */
};

struct run_state {
    char id[ID_MAX];
    uint64_t gen; /* incarnation, from sched.next_run_gen */
    struct plan *plan;
    char *order_id;
    /* For expressions, built on first use (run_context): most runs never
     * evaluate one, and recovery adopts many runs at once. */
    char *input_json;    /* the run's input as stored (owned), until parsed */
    double order_amount; /* its demo order's amount, when order_id */
    json_t *input;       /* the parsed input (owned), or NULL until needed */
    json_t *order;       /* {"id", "amount"} of its demo order, or null (owned), or NULL */
    struct step_state *steps;
    size_t n_settled;    /* completed or skipped */
    bool finishing;      /* RUN_FINISH submitted, or a step failed for good */
    bool finish_chained; /* a RUN_FINISH is chained to the last step's completion
                            (submit_complete), until the chain commits or breaks */
    /* child runs (`workflow` steps): the step waiting for this run, and the
     * runs this one started (cancelled when it finishes). In memory only:
     * after a restart the parent's step starts again, finds its child by
     * idempotency key and links it again. */
    bool has_parent;
    char parent_id[ID_MAX];
    uint64_t parent_gen;
    size_t parent_step;
    uint32_t parent_step_gen;
    char (*children)[ID_MAX];
    size_t n_children;
    struct run_state *hnext;
};

enum timer_kind {
    TM_STEP = 0, /* the step type's own timer (task duration) */
    TM_RETRY,    /* back-off over: start the next attempt */
    TM_TIMEOUT,  /* the attempt's timeout_seconds */
    TM_DEADLINE, /* the run's timeout_seconds */
    TM_WAKE,     /* a waiting step's wake-up time (delay, approval timeout) */
};

struct timer {
    int64_t due_ms;   /* Unix ms */
    uint64_t run_gen; /* the run's incarnation */
    uint32_t gen;
    enum timer_kind kind;
    size_t step_idx;
    char run_id[ID_MAX];
};

enum msg_kind { MSG_COMMITTED, MSG_RESUME, MSG_IO };

struct sched_msg {
    struct sched_msg *next;
    enum msg_kind kind;
    struct commit_item *items; /* MSG_COMMITTED, owned */
    char run_id[ID_MAX];       /* MSG_RESUME */
    bool is_retry;             /* MSG_RESUME: after TR_RUN_RETRY */
    struct step_io_tag tag;    /* MSG_IO: the attempt whose request ended */
    struct step_outcome out;   /* MSG_IO: its outcome (output owned) */
};

struct sched {
    struct durable *d;
    pthread_mutex_t mu;
    pthread_cond_t cond;    /* CLOCK_MONOTONIC */
    struct sched_msg *head; /* guarded by mu */
    struct sched_msg *tail; /* guarded by mu */
    bool stop;              /* guarded by mu */
    bool closed;            /* guarded by mu: stopped, messages are dropped */
    /* scheduler thread only */
    struct run_state **buckets;
    size_t n_buckets;
    size_t n_runs;
    struct timer *heap;
    size_t n_heap;
    size_t cap_heap;
    uint64_t next_run_gen;
    struct commit_item **capture; /* submit_start: where submit() puts the one
                                     item a pure start produced, or NULL */
    struct step_io *io;           /* the I/O thread (steps/http.c): http_request transfers */
};

/* ---- run table (chained hash on the run id) ---- */

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static struct run_state *run_find(struct sched *s, const char *id)
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

static void run_insert(struct sched *s, struct run_state *r)
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
        json_decref(r->steps[i].output);
        json_decref(r->steps[i].config);
        free(r->steps[i].if_error);
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

static void run_drop(struct sched *s, const char *id)
{
    struct run_state **pp = &s->buckets[hash_str(id) & (s->n_buckets - 1)];

    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->hnext;
    if (*pp) {
        struct run_state *r = *pp;
        *pp = r->hnext;
        s->n_runs--;
        engine_run_unlock(s->d, r->id);
        run_free(r);
    }
}

static struct run_state *run_new(struct sched *s, const char *id, struct plan *plan,
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

/* ---- timer heap ---- */

static bool timer_before(const struct timer *a, const struct timer *b)
{
    return a->due_ms < b->due_ms;
}

static void timer_push(struct sched *s, const struct run_state *r, size_t step_idx,
                       enum timer_kind kind, int64_t due_ms)
{
    struct timer t = { .due_ms = due_ms, .kind = kind, .step_idx = step_idx };
    size_t i;

    t.gen = kind == TM_DEADLINE ? 0 : r->steps[step_idx].gen;
    t.run_gen = r->gen;
    snprintf(t.run_id, sizeof(t.run_id), "%s", r->id);
    if (s->n_heap == s->cap_heap) {
        s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 256;
        s->heap = xrealloc(s->heap, s->cap_heap * sizeof(*s->heap));
    }
    i = s->n_heap++;
    while (i > 0 && timer_before(&t, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = t;
}

static struct timer timer_pop(struct sched *s)
{
    struct timer top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!timer_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

/* ---- submitting transitions ---- */

/* Submits an item, or a chain of them (ci->next ...). */
static void submit(struct sched *s, struct commit_item *ci)
{
    struct commit_item *c;

    for (c = ci; c; c = c->next)
        c->notify_sched = true;
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

static void submit_failure(struct sched *s, struct run_state *r, size_t i, const char *code,
                           const char *msg)
{
    struct commit_item *ci = step_item(r, i, TR_STEP_FAIL);

    make_failure(ci, &ci->t, &r->plan->steps[i], r->steps[i].attempt, code, msg);
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++;
    submit(s, ci);
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
static void submit_complete(struct sched *s, struct run_state *r, size_t i, json_t *output)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct commit_item *ci = step_item(r, i, TR_STEP_COMPLETE);
    char *text = json_dumps(output, JSON_COMPACT | JSON_ENCODE_ANY);

    ci->t.output_json = commit_item_str(ci, text ? text : "null");
    free(text);
    ci->output = output;
    if (ps->action && r->order_id) {
        ci->t.action = ps->action;
        ci->has_fallback = true;
        ci->fallback = ci->t;
        ci->fallback.action = NULL;
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
    submit(s, ci);
}

static void on_started(struct sched *s, struct run_state *r, size_t i);

/* Starts attempt `attempt` of step i. A type with a pure start is asked at
 * once, on the committed data the run context holds, and its answer (a
 * completion, failure or wait) is chained to the START: one commit per
 * step instead of two, and nothing outside the engine has seen the attempt
 * before both commit. A type that answers with a timer has it armed now. */
static void submit_start(struct sched *s, struct run_state *r, size_t i, int attempt)
{
    const durable_step_type *type = r->plan->steps[i].step_type;
    struct commit_item *ci, *then = NULL;

    r->steps[i].attempt = attempt;
    r->steps[i].st = SS_STARTING;
    ci = step_item(r, i, TR_STEP_START);
    if (type && type->answers_at_once) {
        ci->began = true;
        s->capture = &then;
        on_started(s, r, i);
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
    submit(s, ci);
}

static void submit_finish(struct sched *s, struct run_state *r, enum run_status status,
                          const char *error, const char *output_json)
{
    r->finishing = true;
    submit(s, finish_item(r, status, error, output_json));
}

/* ---- decisions ---- */

static void check_finished(struct sched *s, struct run_state *r)
{
    char *text;

    if (!r->finishing && !r->finish_chained && r->n_settled == r->plan->n_steps) {
        text = run_output(r, NULL, NULL);
        submit_finish(s, r, RUN_COMPLETED, NULL, text);
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
static void on_ready(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    bool skip = false;
    size_t k;

    if (r->finishing || r->steps[i].st != SS_PENDING)
        return;
    for (k = 0; k < ps->n_deps && !ps->if_compiled; k++) {
        if (r->steps[ps->deps[k]].st == SS_SKIPPED)
            skip = true;
    }
    /* An `if` that cannot be evaluated starts the step, whose attempt then
     * fails with the error (on_started): the failure is in the history. */
    if (ps->if_compiled && eval_if(r, i) == 0)
        skip = true;
    if (skip) {
        r->steps[i].st = SS_SKIPPING;
        submit(s, step_item(r, i, TR_STEP_SKIP));
        return;
    }
    submit_start(s, r, i, 1);
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
            on_ready(s, r, j);
    }
    check_finished(s, r);
}

/* A `workflow` step starts its child run (data: {workflow, input}): a
 * RUN_CREATE keyed by the step's idempotency key, handled in
 * on_child_created once committed. */
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
        submit_failure(s, r, i, "child_error", err.msg);
        return;
    }
    free(input_text);
    ci->is_child = true;
    snprintf(ci->parent_id, sizeof(ci->parent_id), "%s", r->id);
    ci->parent_gen = r->gen;
    ci->parent_step = i;
    ci->parent_step_gen = r->steps[i].gen;
    submit(s, ci);
}

/* The attempt waits durably: committed as `waiting` before its timer is armed. */
static void submit_wait(struct sched *s, struct run_state *r, size_t i, struct step_outcome *o)
{
    struct commit_item *ci = step_item(r, i, TR_STEP_WAIT);
    char *text = o->data ? json_dumps(o->data, JSON_COMPACT) : NULL;

    ci->t.wake_at_ms = o->wake_at_ms;
    ci->t.wait_json = commit_item_str(ci, text);
    free(text);
    r->steps[i].st = SS_FINISHING;
    r->steps[i].gen++; /* the attempt's timeout does not count the wait */
    submit(s, ci);
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
    submit(s, ci);
}

static void handle_outcome(struct sched *s, struct run_state *r, size_t i, struct step_outcome *o)
{
    switch (o->kind) {
    case STEP_OUT_TIMER:
        timer_push(s, r, i, TM_STEP, clock_wall_ms() + o->timer_ms);
        break;
    case STEP_OUT_WAIT:
        submit_wait(s, r, i, o);
        break;
    case STEP_OUT_DECIDE:
        submit_decide(s, r, i, o->output ? o->output : json_object());
        o->output = NULL;
        break;
    case STEP_OUT_DONE:
        submit_complete(s, r, i, o->output ? o->output : json_null());
        o->output = NULL;
        break;
    case STEP_OUT_FAIL:
    case STEP_OUT_NONE: /* steps_call answers for a type that did not */
        submit_failure(s, r, i, o->error_code, o->error_msg);
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
        submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    step_call_init(&call, r, i, key, sizeof(key));
    call.out = &out;
    if (ps->expr)
        call.ctx = run_context(r);
    steps_call(ps->step_type, &call, is_timer);
    json_decref(call.ctx);
    handle_outcome(s, r, i, &out);
}

/* The START of step i committed: hand it to its type. */
static void on_started(struct sched *s, struct run_state *r, size_t i)
{
    const struct plan_step *ps = &r->plan->steps[i];
    struct step_state *ss = &r->steps[i];
    char msg[DURABLE_ERROR_MSG_SIZE];

    ss->st = SS_RUNNING;
    ss->started_us = clock_mono_us();
    if (!ps->step_type) {
        submit_failure(s, r, i, "unsupported", "this step type is not supported");
        return;
    }
    /* Started again after a restart: the `if` was true or failed before;
     * evaluated again on the same committed data, it says the same. */
    if (ps->if_compiled && !ss->if_checked)
        eval_if(r, i);
    if (ss->if_error) {
        snprintf(msg, sizeof(msg), "%s", ss->if_error);
        submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    if (ps->timeout_ms > 0)
        timer_push(s, r, i, TM_TIMEOUT, clock_wall_ms() + ps->timeout_ms);
    if (!render_config(r, i, msg, sizeof(msg))) {
        submit_failure(s, r, i, STEPS_EXPRESSION_ERROR, msg);
        return;
    }
    call_type(s, r, i, false);
}

static void on_timer(struct sched *s, const struct timer *t)
{
    struct run_state *r = run_find(s, t->run_id);
    struct step_state *ss;

    if (!r || r->finishing || t->run_gen != r->gen)
        return;
    if (t->kind == TM_DEADLINE) {
        char msg[96];
        snprintf(msg, sizeof(msg), "run timed out after %.3gs",
                 (double)r->plan->timeout_ms / 1000.0);
        submit_finish(s, r, RUN_FAILED, msg, NULL);
        return;
    }
    ss = &r->steps[t->step_idx];
    if (t->gen != ss->gen)
        return;
    if (t->kind == TM_RETRY && ss->st == SS_RETRYING) {
        submit_start(s, r, t->step_idx, ss->attempt + 1);
    } else if (t->kind == TM_TIMEOUT && ss->st == SS_RUNNING) {
        char msg[96];
        snprintf(msg, sizeof(msg), "attempt %d timed out after %.3gs", ss->attempt,
                 (double)r->plan->steps[t->step_idx].timeout_ms / 1000.0);
        submit_failure(s, r, t->step_idx, "timeout", msg);
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
    submit_finish(s, r, RUN_FAILED, err, NULL);
}

/* ---- adopting runs ---- */

/* Arms the run's time limit, if it has one: due at deadline_ms when the
 * store has it (set at creation, and again by a retry), else counted from
 * created_at_ms (runs created before the store kept it). */
static void arm_deadline(struct sched *s, struct run_state *r, int64_t created_at_ms,
                         int64_t deadline_ms)
{
    if (r->plan->timeout_ms > 0) {
        timer_push(s, r, 0, TM_DEADLINE,
                   deadline_ms > 0 ? deadline_ms : created_at_ms + r->plan->timeout_ms);
    }
}

/* A run just created (its RUN_CREATE committed). */
static void adopt_new(struct sched *s, struct commit_item *ci)
{
    struct run_state *r;
    size_t k;

    if (run_find(s, ci->result.id))
        return;
    r = run_new(s, ci->result.id, ci->plan, ci->t.order_id, ci->t.order_amount, ci->t.input_json);
    run_insert(s, r);
    arm_deadline(s, r, ci->t.at_ms, ci->t.deadline_ms);
    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        if (r->steps[i].n_deps_left == 0)
            on_ready(s, r, i);
    }
}

static enum step_st st_from_record(enum step_status status)
{
    static const struct {
        enum step_status status;
        enum step_st st;
    } map[] = {
        { STEP_S_COMPLETED, SS_COMPLETED }, { STEP_S_SKIPPED, SS_SKIPPED },
        { STEP_S_FAILED, SS_FAILED },       { STEP_S_CANCELLED, SS_CANCELLED },
        { STEP_S_RETRYING, SS_RETRYING },   { STEP_S_RUNNING, SS_RUNNING },
        { STEP_S_WAITING, SS_WAITING },
    };
    size_t k;

    for (k = 0; k < DUR_ARRAY_LEN(map); k++) {
        if (status == map[k].status)
            return map[k].st;
    }
    return SS_PENDING;
}

/* Restores step states from the record (whose steps come in any order:
 * each is found in the plan by id). */
static void restore_steps(struct sched *s, struct run_state *r, const struct run_record *rec,
                          bool *out_any_failed)
{
    size_t k;

    for (k = 0; k < rec->n_steps; k++) {
        const struct step_record *sr = &rec->steps[k];
        long i = plan_step_index(r->plan, sr->step_id);
        struct step_state *ss;

        if (i < 0)
            continue;
        ss = &r->steps[i];
        ss->st = st_from_record(sr->status);
        ss->attempt = sr->attempt;
        if (ss->st == SS_COMPLETED)
            ss->output =
                    sr->output_json ? json_loads(sr->output_json, JSON_DECODE_ANY, NULL) : NULL;
        if (ss->st == SS_RETRYING)
            timer_push(s, r, (size_t)i, TM_RETRY, sr->wake_at_ms);
        /* A waiting step waits on: a delay or an approval's timeout fires
         * at its stored time (at once when past); an approval without a
         * timeout has no timer at all. */
        if (ss->st == SS_WAITING && sr->wake_at_ms > 0)
            timer_push(s, r, (size_t)i, TM_WAKE, sr->wake_at_ms);
        if (ss->st == SS_FAILED)
            *out_any_failed = true;
    }
}

static void recount(struct run_state *r)
{
    size_t i, k;

    r->n_settled = 0;
    for (i = 0; i < r->plan->n_steps; i++) {
        const struct plan_step *ps = &r->plan->steps[i];
        enum step_st st = r->steps[i].st;
        if (st == SS_COMPLETED || st == SS_SKIPPED)
            r->n_settled++;
        r->steps[i].n_deps_left = 0;
        for (k = 0; k < ps->n_deps; k++) {
            enum step_st d = r->steps[ps->deps[k]].st;
            if (d != SS_COMPLETED && d != SS_SKIPPED)
                r->steps[i].n_deps_left++;
        }
    }
}

/* Records that the run was recovered, in one transition that also restarts
 * the steps that were running under their attempt and idempotency key
 * (rather than a TR_STEP_START each): they are STARTING until it commits,
 * then go to their types (on_recovered). The JSON array of their ids is
 * written without jansson: step ids are validated by the definition parser
 * (letters, digits, `_`, `.`, `-`) and need no escaping. */
static void submit_recovered(struct sched *s, struct run_state *r)
{
    struct commit_item *ci = commit_item_new(TR_RUN_RECOVERED, r->id);
    struct dbuf running;
    size_t i;

    dbuf_init(&running, 0);
    dbuf_adds(&running, "[");
    for (i = 0; i < r->plan->n_steps; i++) {
        struct step_state *ss = &r->steps[i];
        if (ss->st != SS_RUNNING)
            continue;
        dbuf_addf(&running, "%s\"%s\"", running.len > 1 ? "," : "", r->plan->steps[i].id);
        ss->st = SS_STARTING;
        ss->attempt = ss->attempt > 0 ? ss->attempt : 1; /* as the store does */
        ss->is_restarting = true;
    }
    dbuf_adds(&running, "]");
    ci->run_gen = r->gen;
    ci->t.recovered_json = commit_item_str(ci, running.buf);
    dbuf_release(&running);
    submit(s, ci);
}

/* The run's TR_RUN_RECOVERED committed: the steps it restarted are started
 * again, as if their START had just committed. */
static void on_recovered(struct sched *s, struct run_state *r)
{
    size_t k;

    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        struct step_state *ss = &r->steps[i];
        if (!ss->is_restarting)
            continue;
        ss->is_restarting = false;
        if (!r->finishing && ss->st == SS_STARTING)
            on_started(s, r, i);
    }
}

/* A run found unfinished in the store: after a restart or a resume by key
 * (is_retry false: its TR_RUN_RECOVERED restarts the steps that were
 * running and records a `recovered` event), or just retried or adopted for
 * a decision (is_retry true: such steps get a new START, same attempt). */
static durable_code adopt_run(struct sched *s, const struct run_record *rec, bool is_retry)
{
    durable_error err = { 0 };
    struct plan *plan = NULL;
    struct run_state *r;
    bool any_failed = false;
    size_t k;

    if (run_find(s, rec->id))
        return DURABLE_OK;
    if (engine_plan_get(s->d, rec->workflow_id, rec->definition, &plan, &err) != DURABLE_OK) {
        log_error("cannot resume run %s: %s", rec->id, err.msg);
        return DURABLE_OK;
    }
    r = run_new(s, rec->id, plan, rec->order_id, rec->order_amount, rec->input_json);
    plan_unref(plan);
    run_insert(s, r);
    restore_steps(s, r, rec, &any_failed);
    recount(r);
    if (!is_retry)
        submit_recovered(s, r);
    if (any_failed) {
        submit_finish(s, r, RUN_FAILED, "a step had failed before the restart", NULL);
        return DURABLE_OK;
    }
    arm_deadline(s, r, rec->created_at_ms, rec->deadline_ms);
    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        if (r->steps[i].st == SS_RUNNING)
            submit_start(s, r, i, r->steps[i].attempt > 0 ? r->steps[i].attempt : 1);
        else if (r->steps[i].st == SS_PENDING && r->steps[i].n_deps_left == 0)
            on_ready(s, r, i);
    }
    check_finished(s, r);
    return DURABLE_OK;
}

static void resume_run(struct sched *s, const char *run_id, bool is_retry)
{
    struct run_state *r = run_find(s, run_id);
    struct run_record rec;
    durable_error err = { 0 };

    if (r) {
        /* Active already (a resume by key came first), unless it is the
         * failed incarnation, which its RUN_FINISH, committed before the
         * retry, should have dropped: that one is stale. */
        if (!is_retry || !r->finishing)
            return;
        run_drop(s, run_id);
    }
    if (!engine_run_lock(s->d, run_id)) {
        log_info("run %s is being executed by another process", run_id);
        return;
    }
    memset(&rec, 0, sizeof(rec));
    if (store_run_load(s->d->store, run_id, &rec, &err) != DURABLE_OK) {
        log_error("cannot resume run %s: %s", run_id, err.msg);
        engine_run_unlock(s->d, run_id);
        return;
    }
    if (!run_status_is_final(rec.status))
        adopt_run(s, &rec, is_retry);
    else
        engine_run_unlock(s->d, run_id);
    run_record_release(&rec);
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
static void on_decided(struct sched *s, struct run_state *r, size_t i, const struct transition *t)
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

/* A decision made through durable_step_decide (any thread) committed. A
 * run not in memory is adopted from the store, which already holds it. */
static void on_external_decision(struct sched *s, struct run_state *r, struct commit_item *ci)
{
    long i;

    if (ci->applied == APPLIED_NONE)
        return;
    if (!r) {
        resume_run(s, ci->t.run_id, true);
        return;
    }
    i = plan_step_index(r->plan, ci->t.step_id);
    if (i >= 0 && !r->finishing)
        on_decided(s, r, (size_t)i, &ci->t);
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
            on_started(s, r, i);
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
        r->steps[i].st = SS_WAITING;
        if (!r->finishing && t->wake_at_ms > 0)
            timer_push(s, r, i, TM_WAKE, t->wake_at_ms);
        break;
    case TR_STEP_DECIDE:
        on_decided(s, r, i, t);
        break;
    case TR_STEP_RETRY:
        r->steps[i].st = SS_RETRYING;
        if (!r->finishing)
            timer_push(s, r, i, TM_RETRY, t->wake_at_ms);
        break;
    case TR_STEP_FAIL:
        on_step_failed(s, r, i, t->error_message);
        break;
    default:
        break;
    }
}

/* ---- child runs (`workflow` steps) ---- */

/* The parent run whose step attempt (step, sgen) waits for a child, if it
 * still does. */
static struct run_state *waiting_parent(struct sched *s, const char *pid, uint64_t pgen,
                                        size_t step, uint32_t sgen)
{
    struct run_state *p = run_find(s, pid);

    if (!p || p->gen != pgen || p->finishing || step >= p->plan->n_steps)
        return NULL;
    if (p->steps[step].gen != sgen || p->steps[step].st != SS_RUNNING)
        return NULL;
    return p;
}

/* Ends the parent's step with its child's outcome: the child's output, or
 * a failure (retryable like any other: the next attempt starts a new
 * child). */
/* How a child run ended; strings borrowed. */
struct child_end {
    const char *id;
    enum run_status status;
    const char *output_json; /* or NULL */
    const char *error;       /* or NULL */
};

static void deliver_child(struct sched *s, struct run_state *p, size_t step,
                          const struct child_end *e)
{
    const char *child_id = e->id, *output_json = e->output_json, *error = e->error;
    enum run_status status = e->status;
    json_t *out;
    char msg[384];

    if (status == RUN_COMPLETED) {
        out = output_json ? json_loads(output_json, JSON_DECODE_ANY, NULL) : NULL;
        submit_complete(s, p, step, out ? out : json_object());
        return;
    }
    snprintf(msg, sizeof(msg), "child run %s %s%s%s", child_id, run_status_name(status),
             error ? ": " : "", error ? error : "");
    submit_failure(s, p, step, status == RUN_CANCELLED ? "child_cancelled" : "child_failed", msg);
}

static void link_child(struct run_state *p, size_t step, struct run_state *c)
{
    c->has_parent = true;
    snprintf(c->parent_id, sizeof(c->parent_id), "%s", p->id);
    c->parent_gen = p->gen;
    c->parent_step = step;
    c->parent_step_gen = p->steps[step].gen;
    p->children = xrealloc(p->children, (p->n_children + 1) * sizeof(*p->children));
    snprintf(p->children[p->n_children++], ID_MAX, "%s", c->id);
}

/* A child that finished before its parent's step linked it (a restart):
 * its outcome from the store. */
static void deliver_from_store(struct sched *s, struct run_state *p, size_t step,
                               const char *child_id)
{
    durable_error err = { 0 };
    struct run_record rec = { .n_steps = 0 };

    if (store_run_load(s->d->store, child_id, &rec, &err) == DURABLE_OK &&
        run_status_is_final(rec.status)) {
        struct child_end e = { child_id, rec.status, rec.output_json, rec.error_message };
        deliver_child(s, p, step, &e);
    } else {
        submit_failure(s, p, step, "child_error",
                       err.msg[0] ? err.msg : "the child run is executed by another process");
    }
    run_record_release(&rec);
}

/* A child's RUN_CREATE committed: created now, or found by its key (the
 * parent's step started again after a restart). */
static void on_child_created(struct sched *s, struct commit_item *ci)
{
    struct run_state *p =
            waiting_parent(s, ci->parent_id, ci->parent_gen, ci->parent_step, ci->parent_step_gen);
    struct run_state *c;
    char msg[128];

    if (ci->applied == APPLIED_NONE || !ci->result.created)
        engine_run_unlock(s->d, ci->t.run_id); /* the id claimed for a run not created */
    if (ci->applied == APPLIED_NONE) {
        snprintf(msg, sizeof(msg), "could not start the child run: %s", durable_strerror(ci->code));
        if (p)
            submit_failure(s, p, ci->parent_step, "child_error", msg);
        return;
    }
    if (ci->result.created)
        adopt_new(s, ci);
    if (!p)
        return; /* the parent moved on: the child runs alone */
    c = run_find(s, ci->result.id);
    if (!c && !ci->result.created) {
        resume_run(s, ci->result.id, true);
        c = run_find(s, ci->result.id);
    }
    if (c)
        link_child(p, ci->parent_step, c);
    else
        deliver_from_store(s, p, ci->parent_step, ci->result.id);
}

/* Run r's RUN_FINISH committed (before it is dropped): its parent's step
 * ends with it; its unfinished children are cancelled. */
static void on_run_finished(struct sched *s, struct run_state *r, const struct transition *t)
{
    struct run_state *p, *c;
    size_t k;

    if (r->has_parent) {
        p = waiting_parent(s, r->parent_id, r->parent_gen, r->parent_step, r->parent_step_gen);
        struct child_end e = { r->id, t->run_status, t->output_json, t->error_message };
        if (p)
            deliver_child(s, p, r->parent_step, &e);
    }
    for (k = 0; k < r->n_children; k++) {
        c = run_find(s, r->children[k]);
        if (c && !c->finishing)
            submit_finish(s, c, RUN_CANCELLED, NULL, NULL);
    }
}

/* What ci was chained to was refused, or answered by its fallback: the
 * scheduler has dealt with that; a run finish chained to a completion that
 * did not apply is simply not due yet. */
static void on_chain_broken(struct sched *s, struct commit_item *ci)
{
    struct run_state *r = run_find(s, ci->t.run_id);

    if (r && ci->run_gen == r->gen && ci->t.kind == TR_RUN_FINISH) {
        r->finish_chained = false;
        check_finished(s, r);
    }
}

static void on_committed(struct sched *s, struct commit_item *ci)
{
    struct run_state *r;

    if (ci->chain_broken) {
        on_chain_broken(s, ci);
        return;
    }
    if (ci->t.kind == TR_RUN_CREATE) {
        if (ci->is_child)
            on_child_created(s, ci);
        else if (ci->applied != APPLIED_NONE && ci->result.created)
            adopt_new(s, ci);
        return;
    }
    r = run_find(s, ci->t.run_id);
    if (r && ci->t.kind == TR_RUN_FINISH && ci->run_gen == 0 && ci->applied != APPLIED_NONE) {
        /* cancelled through the API: forget it now, and its children */
        on_run_finished(s, r, &ci->t);
        run_drop(s, r->id);
        return;
    }
    if (ci->t.kind == TR_STEP_DECIDE && ci->run_gen == 0) {
        on_external_decision(s, r, ci);
        return;
    }
    if (!r || ci->run_gen != r->gen)
        return; /* not in memory, or from an earlier incarnation */
    if (ci->t.kind == TR_RUN_FINISH) {
        if (ci->applied != APPLIED_NONE)
            on_run_finished(s, r, &ci->t);
        if (ci->applied != APPLIED_NONE || ci->code == DURABLE_ECONFLICT)
            run_drop(s, r->id);
        return;
    }
    if (ci->applied == APPLIED_NONE && refused_but_moved_on(r, ci))
        return;
    if (ci->applied == APPLIED_NONE) {
        /* Refused: the run finished elsewhere (cancel) or the store failed.
         * Forget it; the store is the truth and a restart resumes it. */
        log_debug("run %s: transition refused (%s), dropping it from memory", r->id,
                  durable_strerror(ci->code));
        run_drop(s, r->id);
        return;
    }
    if (ci->t.kind == TR_RUN_RECOVERED)
        on_recovered(s, r);
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

/* An http_request ended (I/O thread): its outcome, if its attempt is still
 * the one running. */
static void on_io_done(struct sched *s, struct sched_msg *m)
{
    struct run_state *r = run_find(s, m->tag.run_id);
    struct step_state *ss;

    if (!r || r->finishing || r->gen != m->tag.run_gen || m->tag.step_idx >= r->plan->n_steps)
        return;
    ss = &r->steps[m->tag.step_idx];
    if (ss->gen != m->tag.gen || ss->st != SS_RUNNING)
        return; /* timed out, or its run was cancelled: a late result */
    handle_outcome(s, r, m->tag.step_idx, &m->out);
}

static void post(struct sched *s, struct sched_msg *m);

/* steps_io's done callback, on the I/O thread: to the inbox. */
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
    bool closed;

    pthread_mutex_lock(&s->mu);
    closed = s->closed;
    if (!closed) {
        if (s->tail)
            s->tail->next = m;
        else
            s->head = m;
        s->tail = m;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    if (closed)
        msg_free(m);
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
        resume_run(s, m->run_id, m->is_retry);
    if (m->kind == MSG_IO)
        on_io_done(s, m);
    for (ci = m->items; ci; ci = next) {
        next = ci->next;
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
        struct timer t = timer_pop(s);
        on_timer(s, &t);
    }
}

/* Waits for a message or the next timer. Returns the messages taken (a
 * list) and whether to stop. Called with s->mu not held. */
static struct sched_msg *wait_for_work(struct sched *s, bool *out_stop)
{
    struct sched_msg *msgs;

    pthread_mutex_lock(&s->mu);
    if (!s->head && !s->stop) {
        if (s->n_heap) {
            int64_t wait_ms = s->heap[0].due_ms - clock_wall_ms();
            if (wait_ms > 0) {
                struct timespec ts;
                int64_t ns;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ns = ts.tv_nsec + (wait_ms % 1000) * 1000000;
                ts.tv_sec += (time_t)(wait_ms / 1000) + (time_t)(ns / 1000000000);
                ts.tv_nsec = (long)(ns % 1000000000);
                pthread_cond_timedwait(&s->cond, &s->mu, &ts);
            }
        } else {
            pthread_cond_wait(&s->cond, &s->mu);
        }
    }
    msgs = s->head;
    s->head = s->tail = NULL;
    *out_stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return msgs;
}

static void *sched_main(void *arg)
{
    struct sched *s = arg;
    bool stop = false;

    pthread_setname_np(pthread_self(), "durable-sched");
    while (!stop) {
        struct sched_msg *m = wait_for_work(s, &stop), *next;
        for (; m; m = next) {
            next = m->next;
            handle_msg(s, m);
        }
        if (!stop)
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
    struct sched_msg *m, *next;

    pthread_mutex_lock(&s->mu);
    m = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    for (; m; m = next) {
        next = m->next;
        handle_msg(s, m);
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

    adopt_run(rv->s, rec, false);
    if (++rv->n_runs % RECOVERY_DRAIN_RUNS == 0)
        drain_inbox(rv->s);
    return DURABLE_OK;
}

durable_code engine_sched_start(struct durable *d, durable_error *err)
{
    struct sched *s = xcalloc(1, sizeof(*s));
    pthread_condattr_t ca;
    durable_code rc = DURABLE_OK;

    s->d = d;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->n_buckets = 1024;
    s->buckets = xcalloc(s->n_buckets, sizeof(struct run_state *));
    d->sched = s;
    rc = steps_io_start(io_done, s, &s->io, err);
    /* Recovery runs before the thread starts, so nothing races with it. */
    if (rc == DURABLE_OK && d->recovery == DURABLE_RECOVER_ALL) {
        struct recovery rv = { .s = s };
        rc = store_runs_unfinished(d->store, adopt_record, &rv, err);
    }
    if (rc == DURABLE_OK && pthread_create(&d->scheduler, NULL, sched_main, s) != 0)
        rc = err_set(err, DURABLE_ENOMEM, "could not start the scheduler thread");
    if (rc != DURABLE_OK) {
        steps_io_stop(s->io);
        s->io = NULL;
    }
    return rc;
}

void engine_sched_stop(struct durable *d)
{
    struct sched *s = d->sched;
    struct sched_msg *m, *next;
    size_t i;

    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(d->scheduler, NULL);
    /* The I/O thread may still post until it is joined. */
    steps_io_stop(s->io);
    s->io = NULL;
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    m = s->head;
    s->head = s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    for (; m; m = next) {
        next = m->next;
        msg_free(m);
    }
    for (i = 0; i < s->n_buckets; i++) {
        struct run_state *r = s->buckets[i], *rn;
        for (; r; r = rn) {
            rn = r->hnext;
            run_free(r);
        }
    }
    free(s->buckets);
    free(s->heap);
}

void engine_sched_free(struct durable *d)
{
    struct sched *s = d->sched;

    if (!s)
        return;
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
    d->sched = NULL;
}
