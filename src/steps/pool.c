/*
 * pool.c - the step worker pool: the threads (`durable-step`) that call a
 * blocking step type's start() (durable_step_type.blocking), and the calls
 * that outlive it, answered later from any thread.
 *
 * A pooled call is one heap object shared by three holders, each with a
 * reference: the engine (until it has the answer, or gives up on the call:
 * steps_pool_release), the worker (while start() runs, or until it finds
 * the call cancelled before starting it) and the type (until its one answer,
 * durable_step_done/fail; a call whose start() was never called has no
 * answer to wait for, and the worker drops that reference too). The last
 * one frees it.
 *
 *   PENDING --answer--> ANSWERED   (the outcome goes to the done callback)
 *   PENDING --release-> CANCELLED  (cancel() is called if start() was)
 *
 * An answer in any other state is dropped. The state, `started` and the
 * references are guarded by the call's mu, and the done callback is made
 * under it: once steps_pool_release has returned, no answer of that call
 * reaches the engine, which is what lets durable_close free the engine while
 * a type still holds calls it was told to cancel.
 *
 * The threads are util's pool (made on demand, up to the pool's size,
 * living until steps_pool_free; a call waits in its FIFO while every thread
 * is busy). Lock order: a call's mu, then the done callback's own (the
 * scheduler's inbox); the pool's mu is never held with a call's.
 */
#include "util/common.h"

#include "steps/steps.h"
#include "util/pool.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum pool_call_state { PC_PENDING = 0, PC_ANSWERED, PC_CANCELLED };

struct pool_call {
    durable_step_call call; /* first: what the type is given */
    struct pool_job job;    /* in the pool's queue: run_call */
    const durable_step_type *type;
    step_io_done_fn done;
    void *done_ud;
    struct step_io_tag tag;
    struct step_outcome out; /* call.out points here; unused: answers build their own */
    char *step_id;
    char *key;
    pthread_mutex_t mu;
    enum pool_call_state state; /* guarded by mu */
    bool is_started;            /* guarded by mu: start() was called */
    bool is_answered;           /* guarded by mu: the type gave its answer */
    int refs;                   /* guarded by mu */
};

struct step_pool {
    step_io_done_fn done;
    void *done_ud;
    struct pool threads;
};

static struct pool_call *pool_call_of(durable_step_call *c)
{
    return (struct pool_call *)(void *)c;
}

static void pool_call_unref(struct pool_call *pc, int n)
{
    bool is_last;

    pthread_mutex_lock(&pc->mu);
    DUR_ASSERT(pc->refs >= n);
    pc->refs -= n;
    is_last = pc->refs == 0;
    pthread_mutex_unlock(&pc->mu);
    if (!is_last)
        return;
    pthread_mutex_destroy(&pc->mu);
    free(pc->call.config_text);
    free(pc->step_id);
    free(pc->key);
    free(pc);
}

struct step_pool *steps_pool_new(step_io_done_fn done, void *ud, size_t max_threads)
{
    struct step_pool *p = xcalloc(1, sizeof(*p));

    p->done = done;
    p->done_ud = ud;
    pool_init(&p->threads, "durable-step", max_threads > 0 ? max_threads : STEPS_POOL_THREADS);
    return p;
}

/* Calls start() unless the call was released first (its answer reference
 * is then the worker's to drop: nobody was given the call). */
static void run_call(struct pool_job *job)
{
    struct pool_call *pc =
            (struct pool_call *)(void *)((char *)job - offsetof(struct pool_call, job));
    bool is_live, is_unanswered;

    pthread_mutex_lock(&pc->mu);
    is_live = pc->state == PC_PENDING;
    pc->is_started = is_live;
    is_unanswered = !is_live && !pc->is_answered;
    if (is_unanswered)
        pc->is_answered = true;
    pthread_mutex_unlock(&pc->mu);
    if (is_live)
        pc->type->start(&pc->call, pc->type->ud);
    pool_call_unref(pc, is_unanswered ? 2 : 1);
}

durable_step_call *steps_pool_submit(struct step_pool *p, const durable_step_type *type,
                                     const durable_step_call *proto, const char *config_text,
                                     const struct step_io_tag *tag)
{
    struct pool_call *pc = xcalloc(1, sizeof(*pc));

    pc->type = type;
    pc->done = p->done;
    pc->done_ud = p->done_ud;
    pc->tag = *tag;
    pc->step_id = xstrdup(proto->step_id);
    pc->key = xstrdup(proto->idempotency_key);
    pc->call.step_id = pc->step_id;
    pc->call.run_id = pc->tag.run_id;
    pc->call.attempt = proto->attempt;
    pc->call.idempotency_key = pc->key;
    pc->call.config_text = xstrdup(config_text);
    pc->call.out = &pc->out;
    pc->call.is_pooled = true;
    pthread_mutex_init(&pc->mu, NULL);
    pc->refs = 3; /* the engine's, the worker's, the answer's */
    pc->job.run = run_call;
    if (!pool_submit(&p->threads, &pc->job)) {
        /* No thread could be made: no worker holds the call (nobody else
         * has it yet), and it is answered as failed at once. */
        pc->refs--;
        durable_step_fail(&pc->call, "no_worker", "could not start a step worker thread");
    }
    return &pc->call;
}

void steps_pool_release(durable_step_call *c)
{
    struct pool_call *pc;
    bool is_cancel = false;

    if (!c)
        return;
    pc = pool_call_of(c);
    pthread_mutex_lock(&pc->mu);
    if (pc->state == PC_PENDING) {
        pc->state = PC_CANCELLED;
        is_cancel = pc->is_started && pc->type->cancel;
    }
    pthread_mutex_unlock(&pc->mu);
    /* Outside mu: cancel() may answer the call (ignored now). */
    if (is_cancel)
        pc->type->cancel(c, pc->type->ud);
    pool_call_unref(pc, 1);
}

void steps_pool_answer(durable_step_call *c, struct step_outcome *o)
{
    struct pool_call *pc = pool_call_of(c);
    bool is_first;

    pthread_mutex_lock(&pc->mu);
    is_first = !pc->is_answered;
    pc->is_answered = true;
    if (is_first && pc->state == PC_PENDING) {
        pc->state = PC_ANSWERED;
        pc->done(pc->done_ud, &pc->tag, o); /* takes o->output */
    }
    pthread_mutex_unlock(&pc->mu);
    json_decref(o->output);
    o->output = NULL;
    if (is_first)
        pool_call_unref(pc, 1);
}

void steps_pool_free(struct step_pool *p)
{
    if (!p)
        return;
    /* The threads take what is queued (released calls: not started) and
     * end; a start() still running is waited for. */
    pool_stop(&p->threads);
    free(p);
}
