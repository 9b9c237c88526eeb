/*
 * code.c - code-first workflows: C functions registered by name and
 * version (durable_workflow_fn_register), executed on a pool of workflow
 * threads (started at the first registration: a process without any has
 * none), whose steps (durable_step) are step rows added to the run as the
 * code reaches them.
 *
 * A code-first run is an ordinary run of a workflow version whose
 * definition has `code_version` and no steps. The scheduler never executes
 * it: whenever it would adopt one (created, recovered, resumed by key,
 * retried) it hands the run to engine_code_adopt, which queues an
 * invocation if this process registered that name and version (else the
 * run waits, unfinished, for a process that does; on a cluster it is
 * released for a node that did to claim). An invocation reads the
 * run's document once (its steps in call order), then calls the function
 * from the top: a step recorded as completed returns its output, one not
 * recorded yet commits its START (inserting its row, without waiting),
 * runs, and returns once its COMPLETE has committed; the run's RUN_FINISH
 * follows the function's return. Step ids are given on the workflow thread
 * in call order (`name`, `name#2`, ...), so they do not depend on timing.
 * An async step (durable_step_async) is the same call whose function and
 * commit run on a thread of its own (a durable_future). A sleep records
 * its wake-up and unwinds (DURABLE_ESUSPENDED): the invocation ends, and a
 * timer queues the run again at the wake-up time.
 * A step with a retry policy (durable_step_ex) waits for its backoff the
 * same way; durable_now and durable_random record a value as a step;
 * child workflows are in code_child.c.
 *
 * Threads: struct code_exec's mu (a leaf) guards the registry, the job
 * list, the timers and the set of runs queued or being invoked (one
 * invocation per run at a time); a durable_ctx belongs to the workflow
 * thread invoking it; a future's result fields to its thread until it is
 * joined.
 * Workflow threads submit to the commit queue like any caller; they never
 * touch scheduler state. engine_code_stop runs before the writer stops, so
 * every step a function finishes is committed.
 */
#include "util/common.h"

#include "engine/code_int.h"
#include "engine/engine.h"
#include "util/pool.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define CODE_MAX_FNS      256
#define CODE_THREADS      4
#define CODE_STEP_THREADS 32 /* the most async steps running at once */
#define CODE_OUTPUT_MAX   ((size_t)1024 * 1024)

struct code_fn {
    char name[CODE_NAME_MAX + 1];
    int version;
    durable_workflow_fn fn;
    void *ud;
    char workflow_id[ID_MAX];
};

struct code_job {
    struct code_job *next;
    char run_id[ID_MAX];
    const struct code_fn *fn; /* registry entries are never freed before stop */
};

/* A sleeping run's wake-up (memory only: after a restart the run's
 * re-execution reaches its sleep again and arms it again). */
struct code_timer {
    int64_t due_ms; /* Unix ms */
    char run_id[ID_MAX];
    const struct code_fn *fn;
};

/* A run queued or being invoked; again: adopted once more meanwhile. */
struct code_active {
    struct code_active *next; /* its hash bucket's list */
    char run_id[ID_MAX];
    bool again;
};

struct code_exec {
    struct durable *d;
    struct pool pool;         /* `durable-async`: async steps, at most CODE_STEP_THREADS */
    pthread_mutex_t done_mu;  /* a leaf: guards futures' is_pending */
    pthread_cond_t done_cond; /* a future is done */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct code_fn *fns[CODE_MAX_FNS]; /* guarded by mu; entries immutable once added */
    size_t n_fns;                      /* guarded by mu */
    struct code_job *head, *tail;      /* guarded by mu: queued invocations */
    struct code_active **active;       /* guarded by mu: runs queued or being invoked,
                                          a hash table of n_buckets lists */
    size_t n_active, n_buckets;        /* guarded by mu */
    struct code_timer *timers;         /* guarded by mu: sleeping runs' wake-ups, a
                                          binary min-heap on due_ms */
    size_t n_timers, cap_timers;       /* guarded by mu */
    bool is_stopping;                  /* guarded by mu */
    pthread_t threads[CODE_THREADS];
    size_t n_threads;
    struct code_children *children; /* code_child.c */
};

/* One recorded step of the run, in call (idx) order. */
struct code_rec {
    const char *step_id; /* borrowed from the run document */
    const char *status;
    const char *error;
    json_t *output; /* borrowed */
    int attempt;
    int64_t wake_at_ms; /* a waiting sleep's wake-up, or 0 */
};

/* The number of times a name was called in this execution. */
struct code_name_count {
    char *name;
    int n;
};

/* One step call of an execution. An async step's thread writes rc, out
 * and err before it ends; the workflow thread reads them after joining it
 * (durable_wait_all, or the end of the execution). */
struct durable_future {
    struct durable_future *next; /* the ctx's list */
    struct durable *d;
    char run_id[ID_MAX];
    char step_id[CODE_STEP_ID_SIZE];
    int attempt;
    durable_step_fn fn;
    void *arg;
    durable_step_opts opts;    /* its retry policy, defaults filled in */
    struct code_exec *c;       /* to arm the wake-up of a retry */
    struct commit_item *start; /* answers_at_once: the START not submitted yet, or NULL */
    const struct code_fn *wf;  /* the workflow to invoke then */
    struct pool_job job;       /* on the async pool: future_job */
    bool is_pending;           /* guarded by c->done_mu: queued or running there */
    durable_code rc;
    char *out; /* owned: the output text when rc is OK */
    durable_error err;
};

struct durable_ctx {
    struct durable *d;
    const struct code_fn *fn;
    const char *run_id;
    struct code_rec *recs;
    size_t n_recs;
    size_t pos; /* the next call's position */
    struct code_name_count *names;
    size_t n_names;
    struct dbuf deps;        /* JSON array: the steps a new one depends on */
    durable_future *futures; /* every step of this execution, owned */
    durable_code stop;       /* not OK: every later call returns it */
    durable_error stop_err;
};

static bool name_is_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > CODE_NAME_MAX)
        return false;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* ---- the set of active runs and the job list (mu held) ---- */

/* FNV-1a of the run id. */
static size_t run_hash(const char *run_id)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)run_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)h;
}

/* The run's entry in the active set, or NULL. */
static struct code_active *active_find(struct code_exec *c, const char *run_id)
{
    struct code_active *a = c->n_buckets ? c->active[run_hash(run_id) % c->n_buckets] : NULL;

    while (a && strcmp(a->run_id, run_id) != 0)
        a = a->next;
    return a;
}

static void active_add(struct code_exec *c, const char *run_id)
{
    struct code_active *a = xcalloc(1, sizeof(*a));
    size_t b;

    if (c->n_active >= c->n_buckets) { /* at most one entry per bucket on average */
        size_t n = c->n_buckets ? c->n_buckets * 2 : 64;
        struct code_active **t = xcalloc(n, sizeof(struct code_active *));
        for (size_t i = 0; i < c->n_buckets; i++) {
            while (c->active[i]) {
                struct code_active *e = c->active[i];
                c->active[i] = e->next;
                e->next = t[run_hash(e->run_id) % n];
                t[run_hash(e->run_id) % n] = e;
            }
        }
        free(c->active);
        c->active = t;
        c->n_buckets = n;
    }
    snprintf(a->run_id, ID_MAX, "%s", run_id);
    b = run_hash(run_id) % c->n_buckets;
    a->next = c->active[b];
    c->active[b] = a;
    c->n_active++;
}

static void active_remove(struct code_exec *c, const char *run_id)
{
    struct code_active **p = c->n_buckets ? &c->active[run_hash(run_id) % c->n_buckets] : NULL;

    while (p && *p && strcmp((*p)->run_id, run_id) != 0)
        p = &(*p)->next;
    if (p && *p) {
        struct code_active *a = *p;
        *p = a->next;
        free(a);
        c->n_active--;
    }
}

/* Appends job to the queue and wakes a thread. */
static void job_push(struct code_exec *c, struct code_job *job)
{
    job->next = NULL;
    if (c->tail)
        c->tail->next = job;
    else
        c->head = job;
    c->tail = job;
    pthread_cond_signal(&c->cond);
}

/* An invocation of job ended: the run leaves the active set, unless it was
 * adopted again meanwhile (a retry committed while it was finishing): then
 * the job is queued again. Returns whether it was. */
static bool active_end(struct code_exec *c, struct code_job *job)
{
    struct code_active *a = active_find(c, job->run_id);

    if (a && a->again && !c->is_stopping) {
        a->again = false;
        job_push(c, job);
        return true;
    }
    if (a)
        active_remove(c, job->run_id);
    return false;
}

static const struct code_fn *fn_find(const struct code_exec *c, const char *name, int version)
{
    for (size_t i = 0; i < c->n_fns; i++) {
        if (c->fns[i]->version == version && strcmp(c->fns[i]->name, name) == 0)
            return c->fns[i];
    }
    return NULL;
}

/* Queues an invocation of run_id unless one is queued or under way (then
 * that one is asked to run again). mu held. */
static void job_queue(struct code_exec *c, const char *run_id, const struct code_fn *fn)
{
    struct code_active *a = active_find(c, run_id);
    struct code_job *job;

    if (a) {
        a->again = true;
        return;
    }
    job = xcalloc(1, sizeof(*job));
    snprintf(job->run_id, sizeof(job->run_id), "%s", run_id);
    job->fn = fn;
    active_add(c, run_id);
    job_push(c, job);
}

/* Arms run_id's wake-up at due_ms (any thread; takes mu): pushed on the
 * heap; a thread is woken only when it is the earliest. */
static void timer_add(struct code_exec *c, const char *run_id, const struct code_fn *fn,
                      int64_t due_ms)
{
    struct code_timer t = { .due_ms = due_ms, .fn = fn };
    size_t i;

    snprintf(t.run_id, sizeof(t.run_id), "%s", run_id);
    pthread_mutex_lock(&c->mu);
    if (c->n_timers == c->cap_timers) {
        c->cap_timers = c->cap_timers ? c->cap_timers * 2 : 16;
        c->timers = xrealloc(c->timers, c->cap_timers * sizeof(*c->timers));
    }
    for (i = c->n_timers++; i > 0 && c->timers[(i - 1) / 2].due_ms > due_ms; i = (i - 1) / 2)
        c->timers[i] = c->timers[(i - 1) / 2];
    c->timers[i] = t;
    if (i == 0)
        pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* Removes the earliest wake-up from the heap. mu held. */
static void timer_pop(struct code_exec *c)
{
    struct code_timer last = c->timers[--c->n_timers];
    size_t i = 0, n = c->n_timers;

    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n)
            break;
        if (k + 1 < n && c->timers[k + 1].due_ms < c->timers[k].due_ms)
            k++;
        if (c->timers[k].due_ms >= last.due_ms)
            break;
        c->timers[i] = c->timers[k];
        i = k;
    }
    if (n > 0)
        c->timers[i] = last;
}

/* Queues the runs whose wake-up is due; returns the earliest one left
 * (0: none). mu held. */
static int64_t timers_fire(struct code_exec *c)
{
    int64_t now = clock_wall_ms();

    while (c->n_timers > 0 && c->timers[0].due_ms <= now) {
        job_queue(c, c->timers[0].run_id, c->timers[0].fn);
        timer_pop(c);
    }
    return c->n_timers > 0 ? c->timers[0].due_ms : 0;
}

void engine_code_adopt(struct durable *d, const char *run_id, const struct plan *plan)
{
    struct code_exec *c = d->code;
    const struct code_fn *fn;

    pthread_mutex_lock(&c->mu);
    fn = fn_find(c, plan->name, plan->code_version);
    if (fn && !c->is_stopping)
        job_queue(c, run_id, fn);
    pthread_mutex_unlock(&c->mu);
    if (fn)
        return;
    if (d->cluster) {
        /* Not here: released, a node that registered it claims it. */
        log_info("run %s goes to a node registering %s@%d", run_id, plan->name, plan->code_version);
        engine_cluster_give(d, run_id);
        return;
    }
    log_info("run %s waits for a process registering %s@%d", run_id, plan->name,
             plan->code_version);
}

/* ---- one execution ---- */

struct commit_item *code_item_new(enum transition_kind kind, const char *run_id)
{
    struct commit_item *ci = commit_item_new(kind, run_id);

    ci->t.by_owner = true; /* the executor's: fenced on a shared database (store.h) */
    return ci;
}

/* Stops the execution with code rc (the first stop wins); returns the
 * stop's code, with its message in err. */
static durable_code ctx_stop(durable_ctx *ctx, durable_code rc, const durable_error *why,
                             durable_error *err)
{
    if (ctx->stop == DURABLE_OK) {
        ctx->stop = rc;
        err_set(&ctx->stop_err, rc, "%s", why && why->msg[0] ? why->msg : durable_strerror(rc));
    }
    return err_set(err, ctx->stop, "%s", ctx->stop_err.msg);
}

/* The id of the next call of name: name, then name#2, name#3, ... */
static void next_step_id(durable_ctx *ctx, const char *name, char out[CODE_STEP_ID_SIZE])
{
    struct code_name_count *nc = NULL;

    for (size_t i = 0; i < ctx->n_names && !nc; i++) {
        if (strcmp(ctx->names[i].name, name) == 0)
            nc = &ctx->names[i];
    }
    if (!nc) {
        ctx->names = xrealloc(ctx->names, (ctx->n_names + 1) * sizeof(*ctx->names));
        nc = &ctx->names[ctx->n_names++];
        nc->name = xstrdup(name);
        nc->n = 0;
    }
    nc->n++;
    if (nc->n == 1)
        snprintf(out, CODE_STEP_ID_SIZE, "%s", name);
    else
        snprintf(out, CODE_STEP_ID_SIZE, "%s#%d", name, nc->n);
}

/* Submits the step's START, inserting its row (depends_on: the steps the
 * code last waited for), without waiting: the COMPLETE that follows on the
 * same queue commits after it. */
static struct commit_item *start_item(durable_ctx *ctx, const char *step_id, const char *type,
                                      int attempt, int max_attempts)
{
    struct commit_item *ci = code_item_new(TR_STEP_START, ctx->run_id);
    struct transition_step_init *si = xcalloc(1, sizeof(*si));

    ci->t.step_id = commit_item_str(ci, step_id);
    ci->t.attempt = attempt;
    si->step_id = ci->t.step_id;
    si->type = type;
    si->max_attempts = max_attempts;
    si->depends_on_json = commit_item_str(ci, ctx->deps.len ? ctx->deps.buf : "[]");
    ci->step_inits = si;
    ci->t.insert_step = si;
    ci->t.insert_idx = (int)ctx->pos;
    return ci;
}

static durable_code submit_start(durable_ctx *ctx, const char *step_id, const char *type,
                                 int attempt, int max_attempts)
{
    return engine_commit_submit(ctx->d, start_item(ctx, step_id, type, attempt, max_attempts));
}

/* The step function's output as JSON text (owned), or a failure in err. */
static durable_code check_output(char *out, char **out_text, durable_error *err)
{
    json_t *v;

    *out_text = NULL;
    if (!out) {
        *out_text = xstrdup("null");
        return DURABLE_OK;
    }
    if (strlen(out) > CODE_OUTPUT_MAX) {
        free(out);
        return err_set(err, DURABLE_ETOOBIG, "step output is over %zu bytes", CODE_OUTPUT_MAX);
    }
    v = json_loads(out, JSON_DECODE_ANY, NULL);
    if (!v) {
        free(out);
        return err_set(err, DURABLE_ESTEP, "step output is not JSON");
    }
    json_decref(v);
    *out_text = out;
    return DURABLE_OK;
}

/* The wait after failed attempt `attempt` (from 1). */
static int64_t backoff_ms(const durable_step_opts *o, int attempt)
{
    double ms = (double)o->initial_backoff_ms;

    for (int i = 1; i < attempt && ms < (double)o->max_backoff_ms; i++)
        ms *= o->backoff_factor;
    return ms < (double)o->max_backoff_ms ? (int64_t)ms : o->max_backoff_ms;
}

/* Runs f's step function and commits its outcome (on the workflow thread,
 * or on f's own thread for an async step): f->rc, f->out, f->err. */
static void future_execute(durable_future *f)
{
    char key[ID_MAX + CODE_STEP_ID_SIZE + 1];
    durable_step_info info = { f->run_id, f->step_id, key, f->attempt };
    struct commit_item *ci;
    char *out = NULL;
    durable_code rc, crc;
    bool is_retry;
    int64_t wake_ms;

    snprintf(key, sizeof(key), "%s/%s", f->run_id, f->step_id);
    rc = f->fn(&info, f->arg, &out, &f->err);
    if (rc == DURABLE_OK)
        rc = check_output(out, &f->out, &f->err);
    else
        free(out);
    if (f->start && rc == DURABLE_OK) {
        /* Answered: the START becomes the completion, both in one change. */
        ci = f->start;
        f->start = NULL;
        ci->t.kind = TR_STEP_COMPLETE;
        ci->t.with_start = true;
        ci->t.at_ms = clock_wall_ms();
        ci->t.output_json = commit_item_str(ci, f->out);
        f->rc = engine_commit_wait(f->d, ci, NULL, &f->err);
        if (f->rc != DURABLE_OK) {
            free(f->out);
            f->out = NULL;
        }
        return;
    }
    if (f->start) { /* failed: the START goes first, then the failure */
        engine_commit_submit(f->d, f->start);
        f->start = NULL;
    }
    is_retry = rc != DURABLE_OK && f->attempt < f->opts.max_attempts;
    ci = code_item_new(rc == DURABLE_OK ? TR_STEP_COMPLETE
                       : is_retry       ? TR_STEP_RETRY
                                        : TR_STEP_FAIL,
                       f->run_id);
    ci->t.step_id = commit_item_str(ci, f->step_id);
    ci->t.attempt = f->attempt;
    if (rc == DURABLE_OK) {
        ci->t.output_json = commit_item_str(ci, f->out);
    } else {
        ci->t.error_code = "step_failed";
        ci->t.error_message =
                commit_item_str(ci, f->err.msg[0] ? f->err.msg : durable_strerror(rc));
        err_clear(&f->err);
        if (is_retry) {
            ci->t.wake_at_ms = ci->t.at_ms + backoff_ms(&f->opts, f->attempt);
            rc = err_set(&f->err, DURABLE_ESUSPENDED, "step \"%s\" waits to retry: %s", f->step_id,
                         ci->t.error_message);
        } else {
            rc = err_set(&f->err, DURABLE_ESTEP, "step \"%s\" failed: %s", f->step_id,
                         ci->t.error_message);
        }
    }
    wake_ms = ci->t.wake_at_ms;
    crc = engine_commit_wait(f->d, ci, NULL, &f->err);
    if (crc == DURABLE_OK && is_retry)
        timer_add(f->c, f->run_id, f->wf, wake_ms);
    f->rc = crc != DURABLE_OK ? crc : rc;
    if (f->rc != DURABLE_OK) {
        free(f->out);
        f->out = NULL;
    }
}

static void future_job(struct pool_job *job)
{
    durable_future *f = (durable_future *)(void *)((char *)job - offsetof(durable_future, job));
    struct code_exec *c = f->c;

    future_execute(f);
    pthread_mutex_lock(&c->done_mu);
    f->is_pending = false;
    pthread_cond_broadcast(&c->done_cond);
    pthread_mutex_unlock(&c->done_mu);
}

/* Runs f on the async pool, or here when no thread can be had. */
static void future_submit(struct code_exec *c, durable_future *f)
{
    pthread_mutex_lock(&c->done_mu);
    f->is_pending = true;
    pthread_mutex_unlock(&c->done_mu);
    f->job.run = future_job;
    if (!pool_submit(&c->pool, &f->job))
        future_job(&f->job);
}

/* Waits until f is done (its result fields are then the caller's). */
static void future_wait(struct code_exec *c, durable_future *f)
{
    pthread_mutex_lock(&c->done_mu);
    while (f->is_pending)
        pthread_cond_wait(&c->done_cond, &c->done_mu);
    pthread_mutex_unlock(&c->done_mu);
}

static bool future_is_pending(struct code_exec *c, durable_future *f)
{
    bool is_pending;

    pthread_mutex_lock(&c->done_mu);
    is_pending = f->is_pending;
    pthread_mutex_unlock(&c->done_mu);
    return is_pending;
}

/* The checks every step call begins with, and its id (OUT step_id) and
 * record (OUT *out_rec, NULL when not recorded yet). */
static durable_code call_begin(durable_ctx *ctx, const char *name, char step_id[CODE_STEP_ID_SIZE],
                               const struct code_rec **out_rec, durable_error *err)
{
    const struct code_rec *rec = NULL;
    durable_error why = { 0 };

    if (!ctx || !name_is_valid(name))
        return err_set(err, DURABLE_EINVAL,
                       "a step needs a context and a name of 1 to 64 of [A-Za-z0-9_.-]");
    if (ctx->stop != DURABLE_OK)
        return ctx_stop(ctx, ctx->stop, NULL, err);
    next_step_id(ctx, name, step_id);
    if (ctx->pos < ctx->n_recs)
        rec = &ctx->recs[ctx->pos];
    if (rec && strcmp(rec->step_id, step_id) != 0) {
        err_set(&why, DURABLE_ENONDETERMINISM,
                "nondeterminism: step %zu of run %s is \"%s\" in the code but \"%s\" in the "
                "history",
                ctx->pos + 1, ctx->run_id, step_id, rec->step_id);
        return ctx_stop(ctx, DURABLE_ENONDETERMINISM, &why, err);
    }
    *out_rec = rec;
    return DURABLE_OK;
}

/* The call at this position as a future (owned by ctx): resolved from the
 * record, or with its START submitted and f->fn to run (*out_run true). */
/* What a step call runs: its function, argument and retry policy. */
struct step_call {
    durable_step_fn fn;
    void *arg;
    const durable_step_opts *opts;
};

static durable_future *call_future(durable_ctx *ctx, const char *step_id,
                                   const struct code_rec *rec, const struct step_call *call,
                                   bool *out_run)
{
    const durable_step_opts *opts = call->opts;
    durable_future *f = xcalloc(1, sizeof(*f));
    durable_code rc = DURABLE_OK;

    f->d = ctx->d;
    snprintf(f->run_id, sizeof(f->run_id), "%s", ctx->run_id);
    snprintf(f->step_id, sizeof(f->step_id), "%s", step_id);
    f->fn = call->fn;
    f->arg = call->arg;
    f->opts = *opts;
    f->c = ctx->d->code;
    f->wf = ctx->fn;
    f->attempt = 1;
    f->next = ctx->futures;
    ctx->futures = f;
    *out_run = false;
    if (rec && strcmp(rec->status, "completed") == 0) {
        f->out = rec->output ? json_dumps(rec->output, JSON_COMPACT | JSON_ENCODE_ANY)
                             : xstrdup("null");
    } else if (rec && strcmp(rec->status, "failed") == 0) {
        f->rc = err_set(&f->err, DURABLE_ESTEP, "step \"%s\" failed: %s", step_id,
                        rec->error ? rec->error : "no reason recorded");
    } else if (rec && strcmp(rec->status, "running") == 0) {
        /* Left running by a crash: runs again under its attempt and key. */
        f->attempt = rec->attempt > 0 ? rec->attempt : 1;
        *out_run = true;
    } else if (rec && strcmp(rec->status, "retrying") == 0 && rec->wake_at_ms > clock_wall_ms()) {
        /* Its backoff is not over: the run waits for it, holding no thread. */
        timer_add(f->c, ctx->run_id, ctx->fn, rec->wake_at_ms);
        f->rc = err_set(&f->err, DURABLE_ESUSPENDED, "step \"%s\" waits to retry", step_id);
    } else {
        if (rec && strcmp(rec->status, "retrying") == 0)
            f->attempt = rec->attempt + 1;
        if (opts->answers_at_once)
            f->start = start_item(ctx, step_id, "code", f->attempt, opts->max_attempts);
        else
            rc = submit_start(ctx, step_id, "code", f->attempt, opts->max_attempts);
        if (rc != DURABLE_OK)
            f->rc = err_set(&f->err, rc, "could not record step \"%s\"", step_id);
        *out_run = rc == DURABLE_OK;
    }
    ctx->pos++;
    return f;
}

/* The steps the next ones depend on become exactly fs[0..n). */
static void deps_set(durable_ctx *ctx, durable_future *const *fs, size_t n)
{
    dbuf_reset(&ctx->deps);
    dbuf_adds(&ctx->deps, "[");
    for (size_t i = 0; i < n; i++)
        dbuf_addf(&ctx->deps, "%s\"%s\"", i ? "," : "", fs[i]->step_id);
    dbuf_adds(&ctx->deps, "]");
}

/* The retry policy of opts (NULL: one attempt), defaults filled in. */
static durable_code opts_fill(const durable_step_opts *opts, durable_step_opts *o,
                              durable_error *err)
{
    *o = opts ? *opts : (durable_step_opts){ .max_attempts = 1 };
    if (o->max_attempts < 0 || o->initial_backoff_ms < 0 || o->max_backoff_ms < 0 ||
        (o->backoff_factor != 0 && o->backoff_factor < 1) || o->max_attempts > 1000)
        return err_set(err, DURABLE_EINVAL,
                       "a step's retry policy needs max_attempts 0 to 1000, backoffs of 0 ms or "
                       "more and a backoff_factor of 0 (the default) or at least 1");
    if (o->max_attempts == 0)
        o->max_attempts = 1;
    if (o->initial_backoff_ms == 0)
        o->initial_backoff_ms = 1000;
    if (o->backoff_factor == 0)
        o->backoff_factor = 2;
    if (o->max_backoff_ms == 0)
        o->max_backoff_ms = 60000;
    if (o->max_backoff_ms < o->initial_backoff_ms)
        o->max_backoff_ms = o->initial_backoff_ms;
    return DURABLE_OK;
}

durable_code durable_step(durable_ctx *ctx, const char *name, durable_step_fn fn, void *arg,
                          char **out_json, durable_error *err)
{
    return durable_step_ex(ctx, name, fn, arg, NULL, out_json, err);
}

/* NOLINTNEXTLINE(readability-function-size): the public signature (durable.h) */
durable_code durable_step_ex(durable_ctx *ctx, const char *name, durable_step_fn fn, void *arg,
                             const durable_step_opts *opts, char **out_json, durable_error *err)
{
    char step_id[CODE_STEP_ID_SIZE];
    const struct code_rec *rec = NULL;
    durable_future *f = NULL;
    durable_step_opts o = { .max_attempts = 1 };
    bool to_run = false;
    durable_code rc =
            fn ? opts_fill(opts, &o, err) : err_set(err, DURABLE_EINVAL, "a step needs a function");

    if (rc == DURABLE_OK)
        rc = call_begin(ctx, name, step_id, &rec, err);
    if (rc != DURABLE_OK)
        return rc;
    {
        struct step_call sc = { fn, arg, &o };
        f = call_future(ctx, step_id, rec, &sc, &to_run);
    }
    if (to_run)
        future_execute(f);
    if (f->rc != DURABLE_OK)
        return ctx_stop(ctx, f->rc, &f->err, err);
    deps_set(ctx, &f, 1);
    if (out_json) {
        *out_json = f->out;
        f->out = NULL;
    }
    return DURABLE_OK;
}

durable_code durable_step_async(durable_ctx *ctx, const char *name, durable_step_fn fn, void *arg,
                                durable_future **out, durable_error *err)
{
    return durable_step_async_ex(ctx, name, fn, arg, NULL, out, err);
}

/* NOLINTNEXTLINE(readability-function-size): the public signature (durable.h) */
durable_code durable_step_async_ex(durable_ctx *ctx, const char *name, durable_step_fn fn,
                                   void *arg, const durable_step_opts *opts, durable_future **out,
                                   durable_error *err)
{
    char step_id[CODE_STEP_ID_SIZE];
    const struct code_rec *rec = NULL;
    durable_future *f = NULL;
    durable_step_opts o = { .max_attempts = 1 };
    bool to_run = false;
    durable_code rc;

    if (!out || !fn)
        return err_set(err, DURABLE_EINVAL, "an async step needs a function and a future");
    rc = opts_fill(opts, &o, err);
    if (rc == DURABLE_OK)
        rc = call_begin(ctx, name, step_id, &rec, err);
    if (rc != DURABLE_OK)
        return rc;
    {
        struct step_call sc = { fn, arg, &o };
        f = call_future(ctx, step_id, rec, &sc, &to_run);
    }
    if (to_run)
        future_submit(ctx->d->code, f);
    *out = f;
    return DURABLE_OK;
}

durable_code durable_wait_all(durable_ctx *ctx, durable_future *const *futures, size_t n,
                              durable_error *err)
{
    const durable_future *failed = NULL;

    if (!ctx || (n > 0 && !futures))
        return err_set(err, DURABLE_EINVAL, "wait_all needs a context and futures");
    for (size_t i = 0; i < n; i++) {
        durable_future *f = futures[i];
        future_wait(ctx->d->code, f);
        if (f->rc != DURABLE_OK && !failed)
            failed = f;
    }
    if (ctx->stop != DURABLE_OK)
        return ctx_stop(ctx, ctx->stop, NULL, err);
    if (failed)
        return ctx_stop(ctx, failed->rc, &failed->err, err);
    deps_set(ctx, futures, n);
    return DURABLE_OK;
}

durable_code durable_future_get(durable_future *f, char **out_json, durable_error *err)
{
    if (!f || !out_json)
        return err_set(err, DURABLE_EINVAL, "future_get needs a future and an output");
    if (future_is_pending(f->c, f))
        return err_set(err, DURABLE_EINVAL, "step \"%s\" was not waited for", f->step_id);
    if (f->rc != DURABLE_OK)
        return err_set(err, f->rc, "%s", f->err.msg);
    *out_json = xstrdup(f->out ? f->out : "null");
    return DURABLE_OK;
}

/* Commits a sleep step's transition (WAIT until wake_ms, or COMPLETE)
 * and waits for it. */
static durable_code sleep_commit(durable_ctx *ctx, const char *step_id, int attempt,
                                 int64_t wake_ms, bool is_done, durable_error *err)
{
    struct commit_item *ci = code_item_new(is_done ? TR_STEP_COMPLETE : TR_STEP_WAIT, ctx->run_id);
    char out[64];

    ci->t.step_id = commit_item_str(ci, step_id);
    ci->t.attempt = attempt;
    ci->t.wake_at_ms = wake_ms;
    if (is_done) {
        snprintf(out, sizeof(out), "{\"woke_at\":%" PRId64 "}", wake_ms);
        ci->t.output_json = commit_item_str(ci, out);
    }
    return engine_commit_wait(ctx->d, ci, NULL, err);
}

durable_code durable_sleep(durable_ctx *ctx, const char *name, int64_t ms, durable_error *err)
{
    char step_id[CODE_STEP_ID_SIZE];
    const struct code_rec *rec = NULL;
    durable_error why = { 0 };
    int64_t wake_ms = clock_wall_ms() + (ms > 0 ? ms : 0);
    int attempt = 1;
    durable_code rc = call_begin(ctx, name, step_id, &rec, err);
    bool is_waiting = rec && strcmp(rec->status, "waiting") == 0 && rec->wake_at_ms > 0;

    if (rc != DURABLE_OK)
        return rc;
    if (rec && strcmp(rec->status, "completed") == 0) {
        rc = DURABLE_OK;
    } else if (is_waiting && rec->wake_at_ms <= clock_wall_ms()) {
        rc = sleep_commit(ctx, step_id, rec->attempt, rec->wake_at_ms, true, &why);
    } else if (is_waiting) {
        timer_add(ctx->d->code, ctx->run_id, ctx->fn, rec->wake_at_ms);
        rc = err_set(&why, DURABLE_ESUSPENDED, "step \"%s\" sleeps", step_id);
    } else {
        if (rec && strcmp(rec->status, "running") == 0)
            attempt = rec->attempt > 0 ? rec->attempt : 1;
        else
            rc = submit_start(ctx, step_id, "sleep", attempt, 1);
        if (rc == DURABLE_OK)
            rc = sleep_commit(ctx, step_id, attempt, wake_ms, false, &why);
        if (rc == DURABLE_OK) {
            timer_add(ctx->d->code, ctx->run_id, ctx->fn, wake_ms);
            rc = err_set(&why, DURABLE_ESUSPENDED, "step \"%s\" sleeps", step_id);
        }
    }
    if (rc != DURABLE_OK)
        return ctx_stop(ctx, rc, &why, err);
    ctx->pos++;
    dbuf_reset(&ctx->deps);
    dbuf_addf(&ctx->deps, "[\"%s\"]", step_id);
    return DURABLE_OK;
}

const char *durable_ctx_run_id(const durable_ctx *ctx)
{
    return ctx ? ctx->run_id : NULL;
}

void *durable_ctx_userdata(const durable_ctx *ctx)
{
    return ctx ? ctx->fn->ud : NULL;
}

/* ---- an invocation ---- */

/* Unix ms of the document's RFC 3339 time, 0 if none. */
static int64_t parse_time(const char *s)
{
    int64_t ms = 0;

    return s && clock_parse_rfc3339(s, &ms) ? ms : 0;
}

/* The run's recorded steps, from its document (steps in idx order). */
static void load_recs(durable_ctx *ctx, json_t *doc)
{
    json_t *steps = json_object_get(doc, "steps");
    size_t n = json_array_size(steps);

    ctx->recs = xcalloc(n ? n : 1, sizeof(*ctx->recs));
    for (size_t i = 0; i < n; i++) {
        json_t *st = json_array_get(steps, i);
        struct code_rec *r = &ctx->recs[ctx->n_recs++];
        r->step_id = json_string_value(json_object_get(st, "step_id"));
        r->status = json_string_value(json_object_get(st, "status"));
        r->error = json_string_value(json_object_get(st, "error_message"));
        r->output = json_object_get(st, "output");
        r->attempt = (int)json_integer_value(json_object_get(st, "attempt"));
        r->wake_at_ms = parse_time(json_string_value(json_object_get(st, "wake_at")));
        if (!r->step_id || !r->status)
            ctx->n_recs--;
    }
}

/* Commits the run's end after the function returned rc. */
static void finish_run(durable_ctx *ctx, durable_code rc, char *output, const durable_error *err)
{
    struct commit_item *ci;
    char *text = NULL;
    durable_error cerr = { 0 };

    if (rc == DURABLE_OK && ctx->stop == DURABLE_OK && ctx->pos < ctx->n_recs) {
        /* The code ended before the history did: it took another path. */
        err_set(&cerr, DURABLE_ENONDETERMINISM,
                "nondeterminism: run %s ended after %zu steps in the code but the history has "
                "\"%s\" next",
                ctx->run_id, ctx->pos, ctx->recs[ctx->pos].step_id);
        ctx_stop(ctx, DURABLE_ENONDETERMINISM, &cerr, NULL);
    }
    if (ctx->stop != DURABLE_OK)
        rc = ctx->stop;
    if (rc == DURABLE_ECLOSED || rc == DURABLE_ECONFLICT || rc == DURABLE_ESUSPENDED ||
        rc == DURABLE_EFENCED) {
        free(output);
        return; /* closing (the run resumes at the next open), cancelled, asleep, or taken
                   over by another node */
    }
    ci = code_item_new(TR_RUN_FINISH, ctx->run_id);
    if (rc == DURABLE_OK)
        rc = check_output(output, &text, &cerr);
    else
        free(output);
    if (rc == DURABLE_OK) {
        ci->t.run_status = RUN_COMPLETED;
        ci->t.output_json = commit_item_str(ci, text);
    } else {
        const durable_error *why = ctx->stop != DURABLE_OK   ? &ctx->stop_err
                                   : cerr.code != DURABLE_OK ? &cerr
                                                             : err;
        ci->t.run_status = RUN_FAILED;
        ci->t.error_code = rc == DURABLE_ENONDETERMINISM ? "nondeterminism" : "workflow_failed";
        ci->t.error_message =
                commit_item_str(ci, why && why->msg[0] ? why->msg : durable_strerror(rc));
    }
    free(text);
    if (engine_commit_wait(ctx->d, ci, NULL, &cerr) != DURABLE_OK && cerr.code != DURABLE_ECONFLICT)
        log_warn("could not finish run %s: %s", ctx->run_id, cerr.msg);
}

static void ctx_release(durable_ctx *ctx);

/* Waits for the async steps the function did not wait for, so that the
 * run finishes after them. */
static void ctx_join(durable_ctx *ctx)
{
    for (durable_future *f = ctx->futures; f; f = f->next)
        future_wait(ctx->d->code, f);
}

static bool run_is_final(json_t *doc)
{
    enum run_status st = RUN_PENDING;
    const char *name = json_string_value(json_object_get(doc, "status"));

    return name && run_status_parse(name, &st) && run_status_is_final(st);
}

static void invoke(struct code_exec *c, const struct code_job *job)
{
    durable_ctx ctx = { .d = c->d, .fn = job->fn, .run_id = job->run_id };
    durable_error err = { 0 };
    char *doc_text = NULL, *input = NULL, *output = NULL;
    json_t *doc = NULL;
    durable_code rc;

    dbuf_init(&ctx.deps, 0);
    rc = store_run_json(c->d->store, job->run_id, &doc_text, &err);
    if (rc == DURABLE_OK) {
        doc = json_loads(doc_text, 0, NULL);
        if (!doc)
            rc = err_set(&err, DURABLE_EIO, "the run's document is not JSON");
    }
    if (rc != DURABLE_OK) {
        log_error("cannot execute run %s: %s", job->run_id, err.msg);
        goto done;
    }
    if (run_is_final(doc))
        goto done;
    load_recs(&ctx, doc);
    input = json_dumps(json_object_get(doc, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
    rc = job->fn->fn(&ctx, input ? input : "{}", &output, &err);
    ctx_join(&ctx);
    finish_run(&ctx, rc, rc == DURABLE_OK ? output : NULL, &err);
    if (rc != DURABLE_OK)
        free(output);
done:
    ctx_release(&ctx);
    free(input);
    json_decref(doc);
    free(doc_text);
}

/* Frees the execution's state (its steps' threads joined). */
static void ctx_release(durable_ctx *ctx)
{
    ctx_join(ctx);
    while (ctx->futures) {
        durable_future *f = ctx->futures;
        ctx->futures = f->next;
        if (f->start)
            commit_item_free(f->start);
        free(f->out);
        free(f);
    }
    dbuf_release(&ctx->deps);
    for (size_t i = 0; i < ctx->n_names; i++)
        free(ctx->names[i].name);
    free(ctx->names);
    free(ctx->recs);
}

/* Waits until a job is queued (a due wake-up queues one) or the
 * executor stops. mu held. */
static void wait_for_job(struct code_exec *c)
{
    for (;;) {
        int64_t next = timers_fire(c);
        struct timespec ts;

        if (c->head || c->is_stopping)
            return;
        if (next == 0) {
            pthread_cond_wait(&c->cond, &c->mu);
            continue;
        }
        /* The default condition clock is CLOCK_REALTIME: wake-ups are wall times. */
        ts.tv_sec = (time_t)(next / 1000);
        ts.tv_nsec = (long)(next % 1000) * 1000000L;
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
}

static void *code_main(void *arg)
{
    struct code_exec *c = arg;
    struct code_job *job;
    bool requeued;

    pthread_setname_np(pthread_self(), "durable-code");
    for (;;) {
        pthread_mutex_lock(&c->mu);
        wait_for_job(c);
        job = c->head;
        if (job) {
            c->head = job->next;
            if (!c->head)
                c->tail = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        if (!job)
            return NULL;
        invoke(c, job);
        pthread_mutex_lock(&c->mu);
        requeued = active_end(c, job);
        pthread_mutex_unlock(&c->mu);
        if (!requeued) {
            engine_run_unlock(c->d, job->run_id);
            free(job);
        }
    }
}

/* ---- lifecycle ---- */

durable_code engine_code_start(struct durable *d, durable_error *err)
{
    struct code_exec *c = xcalloc(1, sizeof(*c));

    c->d = d;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    pool_init(&c->pool, "durable-async", CODE_STEP_THREADS);
    pthread_mutex_init(&c->done_mu, NULL);
    pthread_cond_init(&c->done_cond, NULL);
    c->children = code_children_new(d);
    d->code = c;
    (void)err;
    return DURABLE_OK;
}

/* Starts the workflow threads, at the first registration: a process with
 * no code-first workflow has none. Called with c->mu held. */
static durable_code start_threads(struct code_exec *c, durable_error *err)
{
    while (c->n_threads < CODE_THREADS && !c->is_stopping) {
        if (pthread_create(&c->threads[c->n_threads], NULL, code_main, c) != 0)
            return c->n_threads ? DURABLE_OK
                                : err_set(err, DURABLE_ENOMEM, "could not start a workflow thread");
        c->n_threads++;
    }
    return DURABLE_OK;
}

void engine_code_stop(struct durable *d)
{
    struct code_exec *c = d->code;

    if (!c)
        return;
    code_children_stop(d);
    pthread_mutex_lock(&c->mu);
    c->is_stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < c->n_threads; i++)
        pthread_join(c->threads[i], NULL);
    c->n_threads = 0;
    /* every invocation has waited for its steps: the pool is idle */
    pool_stop(&c->pool);
}

void engine_code_free(struct durable *d)
{
    struct code_exec *c = d->code;

    if (!c)
        return;
    while (c->head) {
        struct code_job *job = c->head;
        c->head = job->next;
        free(job);
    }
    for (size_t i = 0; i < c->n_fns; i++)
        free(c->fns[i]);
    free(c->timers);
    for (size_t i = 0; i < c->n_buckets; i++) {
        while (c->active[i]) {
            struct code_active *a = c->active[i];
            c->active[i] = a->next;
            free(a);
        }
    }
    free(c->active);
    code_children_free(c->children);
    pthread_cond_destroy(&c->done_cond);
    pthread_mutex_destroy(&c->done_mu);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
    free(c);
    d->code = NULL;
}

/* ---- the public calls ---- */

struct resume {
    struct durable *d;
    const char *workflow_id;
};

/* Resumes an unfinished run of the workflow version just registered. */
static durable_code resume_one(const struct run_record *r, void *ud)
{
    const struct resume *rs = ud;

    if (strcmp(r->workflow_id, rs->workflow_id) == 0)
        engine_sched_resume(rs->d, r->id);
    return DURABLE_OK;
}

/* Tells the cluster which code-first workflows this process executes, so
 * that it claims their runs (and no others of code). */
static void cluster_code_workflows(struct durable *d)
{
    struct code_exec *c = d->code;
    const char *ids[CODE_MAX_FNS];
    size_t n;

    /* Under mu, so that two registrations give their lists in order (the
     * store's lock is a leaf). */
    pthread_mutex_lock(&c->mu);
    n = c->n_fns;
    for (size_t i = 0; i < n; i++)
        ids[i] = c->fns[i]->workflow_id;
    engine_cluster_code_workflows(d, ids, n);
    pthread_mutex_unlock(&c->mu);
}

/* Adds fn to the registry. DURABLE_ECONFLICT when its name and version
 * are there already. */
static durable_code fn_add(struct code_exec *c, struct code_fn *fn, durable_error *err)
{
    durable_code rc = DURABLE_OK;

    pthread_mutex_lock(&c->mu);
    if (fn_find(c, fn->name, fn->version))
        rc = err_set(err, DURABLE_ECONFLICT, "workflow \"%s\" version %d is registered already",
                     fn->name, fn->version);
    else if (c->n_fns == CODE_MAX_FNS)
        rc = err_set(err, DURABLE_ETOOBIG, "too many workflow functions (the limit is %d)",
                     CODE_MAX_FNS);
    else
        rc = start_threads(c, err);
    if (rc == DURABLE_OK)
        c->fns[c->n_fns++] = fn;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

durable_code durable_workflow_fn_register(durable *d, const char *name, int version,
                                          durable_workflow_fn fn, void *ud, durable_error *err)
{
    struct code_fn *f = NULL;
    char def[CODE_NAME_MAX + 64];
    char *wf_id = NULL;
    durable_code rc;

    if (!d || !fn || !name_is_valid(name) || version < 1)
        return err_set(err, DURABLE_EINVAL,
                       "a workflow function needs a function, a name of 1 "
                       "to 64 of [A-Za-z0-9_.-] and a version from 1");
    /* The name needs no escaping: its characters are checked above. */
    snprintf(def, sizeof(def), "{\"name\":\"%s\",\"code_version\":%d}", name, version);
    rc = durable_workflow_register(d, def, strlen(def), &wf_id, NULL, NULL, err);
    if (rc != DURABLE_OK)
        return rc;
    f = xcalloc(1, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->workflow_id, sizeof(f->workflow_id), "%s", wf_id);
    f->version = version;
    f->fn = fn;
    f->ud = ud;
    free(wf_id);
    code_children_subscribe(d);
    rc = fn_add(d->code, f, err);
    if (rc != DURABLE_OK) {
        free(f);
        return rc;
    }
    if (d->cluster)
        cluster_code_workflows(d);
    {
        struct resume rs = { d, f->workflow_id };
        rc = store_runs_unfinished(d->store, resume_one, &rs, err);
    }
    return rc;
}

durable_code durable_start(durable *d, const char *name, const char *key, const char *input_json,
                           char **out_run_id, durable_error *err)
{
    durable_run_request req = { .workflow = name,
                                .input_json = input_json,
                                .idempotency_key = key };

    return durable_run_start(d, &req, out_run_id, NULL, err);
}

/* ---- recorded values (durable_now, durable_random) ---- */

/* Records the value of a call that answers at once as step `name` of
 * `type`: its row inserted, started and completed in one transaction
 * (TR_STEP_COMPLETE with_start), output {"value": value_json}. Recorded
 * already: *out_value is the recorded value (borrowed from the record). */
static durable_code record_value(durable_ctx *ctx, const char *name, const char *type,
                                 const char *value_json, json_t **out_value, durable_error *err)
{
    char step_id[CODE_STEP_ID_SIZE];
    const struct code_rec *rec = NULL;
    struct commit_item *ci;
    struct transition_step_init *si;
    durable_error why = { 0 };
    char out[64];
    durable_code rc = call_begin(ctx, name, step_id, &rec, err);

    *out_value = NULL;
    if (rc != DURABLE_OK)
        return rc;
    if (rec && strcmp(rec->status, "completed") == 0) {
        *out_value = json_object_get(rec->output, "value");
    } else {
        ci = code_item_new(TR_STEP_COMPLETE, ctx->run_id);
        si = xcalloc(1, sizeof(*si));
        ci->t.step_id = commit_item_str(ci, step_id);
        ci->t.attempt = 1;
        ci->t.with_start = true;
        snprintf(out, sizeof(out), "{\"value\":%s}", value_json);
        ci->t.output_json = commit_item_str(ci, out);
        si->step_id = ci->t.step_id;
        si->type = type;
        si->max_attempts = 1;
        si->depends_on_json = commit_item_str(ci, ctx->deps.len ? ctx->deps.buf : "[]");
        ci->step_inits = si;
        ci->t.insert_step = si;
        ci->t.insert_idx = (int)ctx->pos;
        rc = engine_commit_wait(ctx->d, ci, NULL, &why);
        if (rc != DURABLE_OK)
            return ctx_stop(ctx, rc, &why, err);
    }
    ctx->pos++;
    dbuf_reset(&ctx->deps);
    dbuf_addf(&ctx->deps, "[\"%s\"]", step_id);
    return DURABLE_OK;
}

durable_code durable_now(durable_ctx *ctx, int64_t *out_ms, durable_error *err)
{
    char text[32];
    json_t *v = NULL;
    int64_t now = clock_wall_ms();
    durable_code rc;

    if (!out_ms)
        return err_set(err, DURABLE_EINVAL, "durable_now needs an output");
    snprintf(text, sizeof(text), "%" PRId64, now);
    rc = record_value(ctx, "now", "now", text, &v, err);
    if (rc != DURABLE_OK)
        return rc;
    *out_ms = v ? (int64_t)json_integer_value(v) : now;
    return DURABLE_OK;
}

durable_code durable_random(durable_ctx *ctx, uint64_t *out_value, durable_error *err)
{
    char text[32];
    json_t *v = NULL;
    uint64_t r = 0;
    char why[128];
    durable_code rc;

    if (!out_value)
        return err_set(err, DURABLE_EINVAL, "durable_random needs an output");
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        return err_set(err, DURABLE_EIO, "no random bytes: %s", err_errno(errno, why, sizeof(why)));
    /* a string: JSON readers keep 53 bits of a number */
    snprintf(text, sizeof(text), "\"%" PRIu64 "\"", r);
    rc = record_value(ctx, "random", "random", text, &v, err);
    if (rc != DURABLE_OK)
        return rc;
    if (v)
        r = strtoull(json_string_value(v) ? json_string_value(v) : "0", NULL, 10);
    *out_value = r;
    return DURABLE_OK;
}

/* ---- for code_child.c (code_int.h) ---- */

durable_code code_call_begin(durable_ctx *ctx, const char *name, char step_id[CODE_STEP_ID_SIZE],
                             struct code_rec_view *rec, durable_error *err)
{
    const struct code_rec *r = NULL;
    durable_code rc = call_begin(ctx, name, step_id, &r, err);

    *rec = (struct code_rec_view){ .recorded = false };
    if (rc == DURABLE_OK && r)
        *rec = (struct code_rec_view){ true, r->status, r->error, r->output, r->attempt };
    return rc;
}

durable_code code_call_start(durable_ctx *ctx, const char *step_id, const char *type)
{
    return submit_start(ctx, step_id, type, 1, 1);
}

void code_call_done(durable_ctx *ctx, const char *step_id)
{
    ctx->pos++;
    dbuf_reset(&ctx->deps);
    dbuf_addf(&ctx->deps, "[\"%s\"]", step_id);
}

durable_code code_call_stop(durable_ctx *ctx, durable_code rc, const durable_error *why,
                            durable_error *err)
{
    return ctx_stop(ctx, rc, why, err);
}

struct durable *code_ctx_durable(const durable_ctx *ctx)
{
    return ctx->d;
}

const struct code_fn *code_ctx_fn(const durable_ctx *ctx)
{
    return ctx->fn;
}

void code_wake(struct durable *d, const char *run_id, const struct code_fn *fn)
{
    struct code_exec *c = d->code;

    pthread_mutex_lock(&c->mu);
    if (!c->is_stopping)
        job_queue(c, run_id, fn);
    pthread_mutex_unlock(&c->mu);
}

struct code_children **code_children_of(struct durable *d)
{
    return &d->code->children;
}

/* ---- signals (durable_wait_signal; the sending side is signals.c) ---- */

/* The run is executed again once this invocation ends (a signal completed
 * its wait as the wait was recorded); returns DURABLE_ESUSPENDED. */
static durable_code requeue(durable_ctx *ctx, const char *step_id, durable_error *why)
{
    struct code_exec *c = ctx->d->code;

    pthread_mutex_lock(&c->mu);
    job_queue(c, ctx->run_id, ctx->fn);
    pthread_mutex_unlock(&c->mu);
    return err_set(why, DURABLE_ESUSPENDED, "step \"%s\" took a signal", step_id);
}

/* One durable_wait_signal call: its step, the signal, its attempt and
 * its wake-up time (0: no timeout). */
struct signal_wait {
    char step_id[CODE_STEP_ID_SIZE];
    const char *name;
    int attempt;
    int64_t wake_ms;
};

/* Commits the wait's WAIT for its signal (until w->wake_ms), or
 * (is_timeout) its failure with code "timeout". *out_taken: a signal sent
 * earlier completed the step at once. */
static durable_code wait_signal_commit(durable_ctx *ctx, const struct signal_wait *w,
                                       bool is_timeout, bool *out_taken, durable_error *err)
{
    struct commit_item *ci = code_item_new(is_timeout ? TR_STEP_FAIL : TR_STEP_WAIT, ctx->run_id);
    struct transition_result res;
    char text[CODE_NAME_MAX + 64];
    durable_code rc;

    memset(&res, 0, sizeof(res));
    ci->t.step_id = commit_item_str(ci, w->step_id);
    ci->t.attempt = w->attempt;
    if (is_timeout) {
        snprintf(text, sizeof(text), "no signal \"%s\" within the timeout", w->name);
        ci->t.error_code = "timeout";
        ci->t.error_message = commit_item_str(ci, text);
    } else {
        /* The name needs no escaping: call_begin checked its characters. */
        snprintf(text, sizeof(text), "{\"waiting_for\":\"signal\",\"signal\":\"%s\"}", w->name);
        ci->t.wake_at_ms = w->wake_ms;
        ci->t.wait_json = commit_item_str(ci, text);
        ci->t.signal_name = commit_item_str(ci, w->name);
    }
    rc = engine_commit_wait(ctx->d, ci, &res, err);
    *out_taken = rc == DURABLE_OK && res.signal_taken;
    return rc;
}

static durable_code suspend_for(durable_ctx *ctx, const struct signal_wait *w, int64_t wake_ms,
                                durable_error *why)
{
    if (wake_ms > 0)
        timer_add(ctx->d->code, ctx->run_id, ctx->fn, wake_ms);
    return err_set(why, DURABLE_ESUSPENDED, "step \"%s\" waits for signal \"%s\"", w->step_id,
                   w->name);
}

/* A wait recorded as waiting: times out when its time has passed, else
 * suspends (its wake-up armed again). */
static durable_code wait_signal_again(durable_ctx *ctx, struct signal_wait *w,
                                      const struct code_rec *rec, durable_error *why)
{
    bool taken = false;
    durable_code rc;

    if (rec->wake_at_ms == 0 || rec->wake_at_ms > clock_wall_ms())
        return suspend_for(ctx, w, rec->wake_at_ms, why);
    w->attempt = rec->attempt;
    rc = wait_signal_commit(ctx, w, true, &taken, why);
    if (rc == DURABLE_ECONFLICT) /* a signal came first: its commit wakes the run */
        return requeue(ctx, w->step_id, why);
    return rc == DURABLE_OK ? DURABLE_ETIMEOUT : rc;
}

/* A wait not recorded yet, or left running by a crash: its START (unless
 * recorded) and WAIT, then it suspends, unless the WAIT took a signal. */
static durable_code wait_signal_first(durable_ctx *ctx, struct signal_wait *w,
                                      const struct code_rec *rec, durable_error *why)
{
    bool taken = false;
    durable_code rc = DURABLE_OK;

    if (rec && strcmp(rec->status, "running") == 0)
        w->attempt = rec->attempt > 0 ? rec->attempt : 1;
    else
        rc = submit_start(ctx, w->step_id, "wait_signal", w->attempt, 1);
    if (rc == DURABLE_OK)
        rc = wait_signal_commit(ctx, w, false, &taken, why);
    if (rc == DURABLE_OK)
        rc = taken ? requeue(ctx, w->step_id, why) : suspend_for(ctx, w, w->wake_ms, why);
    return rc;
}

durable_code durable_wait_signal(durable_ctx *ctx, const char *name, int64_t timeout_ms,
                                 char **out_payload_json, durable_error *err)
{
    struct signal_wait w = { .name = name, .attempt = 1 };
    const struct code_rec *rec = NULL;
    durable_error why = { 0 };
    durable_code rc;

    if (out_payload_json)
        *out_payload_json = NULL;
    w.wake_ms = timeout_ms < 0 ? 0 : clock_wall_ms() + timeout_ms;
    rc = call_begin(ctx, name, w.step_id, &rec, err);
    if (rc != DURABLE_OK)
        return rc;
    if (rec && strcmp(rec->status, "completed") == 0)
        rc = DURABLE_OK;
    else if (rec && strcmp(rec->status, "failed") == 0)
        rc = DURABLE_ETIMEOUT; /* the only way a wait fails */
    else if (rec && strcmp(rec->status, "waiting") == 0)
        rc = wait_signal_again(ctx, &w, rec, &why);
    else
        rc = wait_signal_first(ctx, &w, rec, &why);
    if (rc != DURABLE_OK && rc != DURABLE_ETIMEOUT)
        return ctx_stop(ctx, rc, &why, err);
    ctx->pos++;
    dbuf_reset(&ctx->deps);
    dbuf_addf(&ctx->deps, "[\"%s\"]", w.step_id);
    if (rc == DURABLE_ETIMEOUT)
        return err_set(err, DURABLE_ETIMEOUT, "no signal \"%s\" within the timeout (step \"%s\")",
                       name, w.step_id);
    if (out_payload_json) {
        *out_payload_json = rec && rec->output
                                    ? json_dumps(rec->output, JSON_COMPACT | JSON_ENCODE_ANY)
                                    : xstrdup("null");
    }
    return DURABLE_OK;
}
