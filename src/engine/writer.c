/*
 * writer.c - the writer thread: group commit of transitions.
 *
 * Every producer appends commit items to one queue. The writer takes all that
 * is queued (up to WRITER_MAX_BATCH), applies them in one transaction and
 * commits: while one fsync runs, the next batch gathers, so the cost of a
 * commit is shared by everything that arrived meanwhile. Only after COMMIT
 * returns does anyone learn of the batch: subscribers get its events, waiting
 * callers their replies, the scheduler the items. That ordering is the
 * durability contract.
 *
 * A step completion with an action carries a fallback (the failure the step
 * gets if the action refuses), so the refusal and its consequence commit in
 * the same transaction without a round trip through the scheduler.
 *
 * Items may come as a chain (after_prev: a step's START and the outcome its
 * type gave at once, then maybe the run's finish): a chain is never split
 * across batches, and an item of it is applied only if the one before it
 * applied as itself (else it is chain_broken). A bulk operation's items
 * (with_prev) are likewise never split, each applied whatever became of
 * the one before: one transaction, all of it or none after a crash.
 *
 * A caller either waits for its item (engine_commit_wait: a condition
 * variable) or is called back on this thread after the commit
 * (engine_commit_async: struct commit_reply's on_done), so that a server
 * can have many starts in one batch without a thread blocked on each.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRITER_MAX_BATCH   4096
#define WRITER_MAX_RETRIES 5

struct commit_item *commit_item_new(enum transition_kind kind, const char *run_id)
{
    struct commit_item *ci = xcalloc(1, sizeof(*ci));

    ci->t.kind = kind;
    ci->t.at_ms = clock_wall_ms();
    ci->t.run_id = commit_item_str(ci, run_id);
    return ci;
}

struct commit_item *commit_item_cancel(const char *run_id)
{
    struct commit_item *ci = commit_item_new(TR_RUN_FINISH, run_id);

    ci->t.run_status = RUN_CANCELLED;
    ci->notify_sched = true;
    return ci;
}

const char *commit_item_str(struct commit_item *ci, const char *s)
{
    char *copy;

    if (!s)
        return NULL;
    DUR_ASSERT(ci->n_own < (int)DUR_ARRAY_LEN(ci->own));
    copy = xstrdup(s);
    ci->own[ci->n_own++] = copy;
    return copy;
}

void commit_item_free(struct commit_item *ci)
{
    int i;

    if (!ci)
        return;
    for (i = 0; i < ci->n_own; i++)
        free(ci->own[i]);
    free(ci->step_inits);
    for (size_t k = 0; ci->copies && k < ci->t.n_copies; k++)
        free((char *)ci->copies[k].output_json);
    free(ci->copies);
    json_decref(ci->output);
    plan_unref(ci->plan);
    free(ci);
}

durable_code engine_commit_submit(struct durable *d, struct commit_item *ci)
{
    struct commit_item *last = ci, *next;

    while (last->next)
        last = last->next;
    if (queue_push_list(&d->commit_queue, &ci->node, &last->node))
        return DURABLE_OK;
    for (; ci; ci = next) {
        next = ci->next;
        commit_item_free(ci);
    }
    return DURABLE_ECLOSED;
}

durable_code engine_commit_wait(struct durable *d, struct commit_item *ci,
                                struct transition_result *out_result, durable_error *err)
{
    struct commit_reply reply;
    durable_code rc;

    memset(&reply, 0, sizeof(reply));
    pthread_mutex_init(&reply.mu, NULL);
    pthread_cond_init(&reply.cond, NULL);
    ci->reply = &reply;
    rc = engine_commit_submit(d, ci);
    if (rc != DURABLE_OK) {
        err_set(err, rc, "the engine is shutting down");
        goto done;
    }
    pthread_mutex_lock(&reply.mu);
    while (!reply.done)
        pthread_cond_wait(&reply.cond, &reply.mu);
    pthread_mutex_unlock(&reply.mu);
    rc = reply.code;
    if (rc != DURABLE_OK)
        err_set(err, rc, "%s", reply.err.msg);
    else if (out_result)
        *out_result = reply.result;
done:
    pthread_cond_destroy(&reply.cond);
    pthread_mutex_destroy(&reply.mu);
    return rc;
}

durable_code engine_commit_async(struct durable *d, struct commit_item *ci,
                                 struct commit_reply *reply)
{
    DUR_ASSERT(reply->on_done);
    ci->reply = reply;
    return engine_commit_submit(d, ci);
}

/* The next batch: what is left of the list taken last time, else the whole
 * queue (waiting while it is empty), cut after WRITER_MAX_BATCH items but
 * never inside a chain; the rest is left in *backlog (writer thread only).
 * A backlog shorter than the bound is topped up from the queue without
 * waiting (what is queued came after it), so that batches are as full as
 * when the queue itself was cut. Returns NULL when the queue is closed and
 * drained, or (!wait) empty. */
static struct commit_item *take_batch(struct durable *d, struct commit_item **backlog, bool wait)
{
    struct commit_item *head = *backlog, *last;
    bool can_top_up = head != NULL;
    int n = 1;

    if (!head)
        head = (struct commit_item *)queue_take(&d->commit_queue, wait ? QUEUE_FOREVER : 0);
    if (!head)
        return NULL;
    last = head;
    for (;;) {
        while (last->next &&
               (n < WRITER_MAX_BATCH || last->next->after_prev || last->next->with_prev)) {
            last = last->next;
            n++;
        }
        if (last->next || !can_top_up || n >= WRITER_MAX_BATCH)
            break;
        last->next = (struct commit_item *)queue_take(&d->commit_queue, 0);
        can_top_up = false;
    }
    *backlog = last->next;
    last->next = NULL;
    return head;
}

/* Applies one item. Returns DURABLE_EIO (or another store failure, why in
 * *fatal) only when the whole transaction must be rolled back; per-item
 * refusals are recorded in the item. */
static durable_code apply_item(struct durable *d, struct commit_item *ci, struct store_events *ev,
                               durable_error *fatal)
{
    durable_error err = { 0 };
    struct transition_result res;
    durable_code rc;

    memset(&res, 0, sizeof(res));
    rc = store_apply(d->store, &ci->t, ev, &res, &err);
    if (rc == DURABLE_EACTION && ci->has_fallback) {
        snprintf(ci->error_msg, sizeof(ci->error_msg), "%s", err.msg);
        ci->fallback.error_message = ci->error_msg;
        err_clear(&err);
        rc = store_apply(d->store, &ci->fallback, ev, &res, &err);
        if (rc == DURABLE_OK) {
            ci->applied = APPLIED_FALLBACK;
            ci->code = DURABLE_OK;
            goto done;
        }
    }
    if (rc == DURABLE_EIO) {
        *fatal = err;
        return rc;
    }
    ci->code = rc;
    ci->applied = rc == DURABLE_OK ? APPLIED_PRIMARY : APPLIED_NONE;
    if (rc != DURABLE_OK && rc != DURABLE_ECONFLICT && !ci->reply)
        log_warn("transition %d of run %s not applied: %s", (int)ci->t.kind,
                 ci->t.run_id ? ci->t.run_id : "-", err.msg);
done:
    if (res.signal_payload) {
        /* A signal completed a step at its WAIT: its output, for the scheduler. */
        json_decref(ci->output);
        ci->output = json_loads(res.signal_payload, JSON_DECODE_ANY, NULL);
        free(res.signal_payload);
        res.signal_payload = NULL;
    }
    ci->result = res;
    if (ci->reply) {
        ci->reply->err = err;
        ci->reply->result = res;
    }
    return DURABLE_OK;
}

/* Tells the store the batch's transitions (store_tx_prefetch). */
static durable_code prefetch(struct durable *d, const struct commit_item *batch, durable_error *err)
{
    const struct transition **t;
    const struct commit_item *ci;
    size_t n = 0;
    durable_code rc;

    for (ci = batch; ci; ci = ci->next)
        n++;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    t = xmalloc(n * sizeof(*t));
    n = 0;
    for (ci = batch; ci; ci = ci->next)
        t[n++] = &ci->t;
    rc = store_tx_prefetch(d->store, t, n, err);
    free(t);
    return rc;
}

/* Opens the batch's transaction (behind a COMMIT not answered yet, when
 * the store overlaps) and tells the store its transitions. */
static durable_code begin_batch(struct durable *d, struct commit_item *batch, durable_error *err)
{
    durable_code rc = store_tx_begin(d->store, err);

    return rc == DURABLE_OK ? prefetch(d, batch, err) : rc;
}

/* Applies the batch in the transaction begin_batch opened, and sends its
 * COMMIT (store_tx_commit_send). On failure the caller rolls back. */
static durable_code apply_batch(struct durable *d, struct commit_item *batch,
                                struct store_events *ev, durable_error *err)
{
    struct commit_item *ci, *prev = NULL;
    durable_code rc;

    for (ci = batch; ci; prev = ci, ci = ci->next) {
        ci->chain_broken =
                ci->after_prev && prev && (prev->applied != APPLIED_PRIMARY || prev->chain_broken);
        if (ci->chain_broken || ci->barrier) {
            ci->code = ci->barrier ? DURABLE_OK : DURABLE_ECONFLICT;
            ci->applied = APPLIED_NONE;
            continue;
        }
        if (ci->with_prev)
            FAILPOINT("writer.bulk_item"); /* inside a bulk operation's transaction */
        rc = apply_item(d, ci, ev, err);
        if (rc != DURABLE_OK)
            return rc;
    }
    FAILPOINT("writer.before_commit");
    return store_tx_commit_send(d->store, ev, err);
}

/* The answer of the batch's COMMIT; rolled back on failure. */
static durable_code commit_wait(struct durable *d, struct store_events *ev, durable_error *err)
{
    durable_code rc = store_tx_commit_wait(d->store, ev, err);

    if (rc != DURABLE_OK) {
        store_tx_rollback(d->store);
        return rc;
    }
    FAILPOINT("writer.after_commit");
    return DURABLE_OK;
}

/* The batch in one transaction, committed before it returns. */
static durable_code commit_batch(struct durable *d, struct commit_item *batch,
                                 struct store_events *ev, durable_error *err)
{
    durable_code rc;

    store_events_clear(ev);
    rc = begin_batch(d, batch, err);
    if (rc == DURABLE_OK)
        rc = apply_batch(d, batch, ev, err);
    if (rc != DURABLE_OK) {
        store_tx_rollback(d->store);
        return rc;
    }
    return commit_wait(d, ev, err);
}

/* Whether e ends its run, and with what status (*out). */
static bool finish_status(const struct store_event *e, enum run_status *out)
{
    return (strcmp(e->type, "run_completed") == 0 || strcmp(e->type, "run_failed") == 0 ||
            strcmp(e->type, "run_cancelled") == 0) &&
           run_status_parse(e->type + 4, out);
}

/* Calls every subscriber for every event (unless !to_subscribers), then
 * wakes the durable_run_wait callers whose run finished.
 * subs_mu is held across the callbacks - the one lock that is - so that
 * durable_unsubscribe returning means the callback will not run again; the
 * callbacks' contract (durable.h) forbids calling back into durable. */
void engine_events_publish(struct durable *d, const struct store_events *ev, bool to_subscribers)
{
    bool any_finish = false;
    enum run_status st;
    size_t i, j;

    pthread_mutex_lock(&d->subs_mu);
    for (i = 0; i < ev->n; i++) {
        const struct store_event *e = &ev->items[i];
        durable_event pub = { .run_id = e->run_id,
                              .seq = e->seq,
                              .global_id = e->global_id,
                              .type = e->type,
                              .step_id = e->step_id,
                              .at_ms = e->at_ms,
                              .data_json = e->data_json };
        for (j = 0; to_subscribers && j < d->n_subs; j++)
            d->subs[j].fn(&pub, d->subs[j].ud);
        if (finish_status(e, &st))
            any_finish = true;
    }
    pthread_mutex_unlock(&d->subs_mu);
    if (!any_finish)
        return;
    pthread_mutex_lock(&d->finish_mu);
    for (i = 0; i < ev->n && d->waiters; i++) {
        struct run_waiter *w;
        if (!finish_status(&ev->items[i], &st))
            continue;
        for (w = d->waiters; w; w = w->next) {
            if (strcmp(w->run_id, ev->items[i].run_id) == 0) {
                w->finished = true;
                w->final = st;
                pthread_cond_signal(&w->cond);
            }
        }
    }
    pthread_mutex_unlock(&d->finish_mu);
}

/* Hands committed items on: replies are signalled (or their on_done
 * called), scheduler items passed, the rest freed. */
static void dispatch(struct durable *d, struct commit_item *batch)
{
    struct commit_item *ci, *next, *to_sched = NULL, **tail = &to_sched;

    for (ci = batch; ci; ci = next) {
        next = ci->next;
        ci->next = NULL;
        if (ci->reply && ci->reply->on_done) {
            struct commit_reply *r = ci->reply;
            ci->reply = NULL;
            r->code = ci->code;
            r->done = true;
            r->on_done(r); /* r belongs to on_done now */
        } else if (ci->reply) {
            struct commit_reply *r = ci->reply;
            ci->reply = NULL;
            pthread_mutex_lock(&r->mu);
            r->code = ci->code;
            r->done = true;
            pthread_cond_signal(&r->cond);
            pthread_mutex_unlock(&r->mu);
        }
        if (ci->notify_sched) {
            /* Refusals too: the scheduler must learn that a run ended. */
            *tail = ci;
            tail = &ci->next;
        } else {
            commit_item_free(ci);
        }
    }
    if (to_sched)
        engine_sched_committed(d, to_sched);
}

/* After repeated failures (the disk full, a write error): answer every
 * caller with the error and drop the batch, which was rolled back. The
 * scheduler forgets the runs concerned and loads them again from the store
 * a moment later (engine.c, on_store_failed), which is also how the writer
 * learns that the fault is gone: their next transition commits. */
static void fail_batch(struct durable *d, struct commit_item *batch, const durable_error *err)
{
    durable_error why = { 0 };
    struct commit_item *ci;

    err_set(&why, DURABLE_EIO, "the database cannot be written: %s", err->msg);
    engine_health_set_writer_error(d, why.msg);
    log_error("giving up on a batch of transitions: %s", err->msg);
    for (ci = batch; ci; ci = ci->next) {
        ci->code = DURABLE_EIO;
        ci->applied = APPLIED_NONE;
        ci->chain_broken = false;
        if (ci->reply)
            ci->reply->err = why;
    }
    dispatch(d, batch);
}

/* Metrics of a committed batch: its size and the transitions it applied. */
static void observe_batch(struct durable *d, const struct commit_item *batch)
{
    const struct commit_item *ci;
    uint64_t n = 0, n_applied = 0;

    for (ci = batch; ci; ci = ci->next) {
        n++;
        if (ci->applied != APPLIED_NONE)
            n_applied++;
    }
    atomic_fetch_add_explicit(&d->n_commits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->n_transitions, n_applied, memory_order_relaxed);
    engine_hist_observe(&d->batch_size, (double)n);
}

/* Hands a batch on once its commit is settled: rc is its first try's
 * outcome (err: why it failed, NULL when it did not); a failed batch is
 * tried again, alone and to the end, up to WRITER_MAX_RETRIES tries in
 * all, then answered with the error. */
static void settle(struct durable *d, struct commit_item *batch, struct store_events *ev,
                   durable_code rc, durable_error *err)
{
    /* While the store is failing, one try: callers learn at once. */
    int tries = 1, max_tries = atomic_load(&d->store_failed) ? 1 : WRITER_MAX_RETRIES;

    while (rc != DURABLE_OK && tries < max_tries) {
        log_warn("commit failed, retrying: %s", err->msg);
        usleep(20000u << tries);
        err_clear(err);
        rc = commit_batch(d, batch, ev, err);
        tries++;
    }
    if (rc != DURABLE_OK) {
        if (d->cluster)
            engine_cluster_publish(d, NULL);
        fail_batch(d, batch, err);
        return;
    }
    if (atomic_load(&d->store_failed))
        engine_health_set_writer_error(d, NULL);
    observe_batch(d, batch);
    /* On a cluster, subscribers see every node's events in global id
     * order (cluster.c). */
    if (d->cluster)
        engine_cluster_publish(d, ev);
    else
        engine_events_publish(d, ev, true);
    dispatch(d, batch);
}

/* Waits for the answer of pending's COMMIT, batch begun behind it (*rc).
 * Committed, pending is returned, to be handed on once batch's COMMIT is
 * sent; failed, both were rolled back: pending is tried again alone and
 * handed on, and batch begun again (*rc, err). */
static struct commit_item *wait_pending(struct durable *d, struct commit_item *pending,
                                        struct store_events *pending_ev, struct commit_item *batch,
                                        durable_code *rc, durable_error *err)
{
    durable_error perr = { 0 };
    durable_code prc = commit_wait(d, pending_ev, &perr);

    if (prc == DURABLE_OK)
        return pending;
    settle(d, pending, pending_ev, prc, &perr);
    if (d->cluster)
        engine_cluster_committing(d); /* the hand-over ended it */
    err_clear(err);
    *rc = begin_batch(d, batch, err);
    return NULL;
}

/* Hands on a batch committed while the next one's COMMIT is on its way. */
static void hand_on_committed(struct durable *d, struct commit_item *batch, struct store_events *ev)
{
    settle(d, batch, ev, DURABLE_OK, NULL);
    if (d->cluster)
        engine_cluster_committing(d); /* the hand-over ended the next one's */
}

/* One batch after another. When the store overlaps (PostgreSQL), the next
 * batch is taken when the answer of the COMMIT before has come, and its
 * BEGIN and guards sent behind it before that answer is read; it is
 * applied and its COMMIT sent, and only then is the one before handed on,
 * so that the server works on one batch while this thread hands on the
 * other. */
static void *writer_main(void *arg)
{
    struct durable *d = arg;
    struct store_events evs[2] = { { 0 }, { 0 } }, *ev = &evs[0], *pending_ev = &evs[1], *swap;
    struct commit_item *batch, *backlog = NULL, *pending = NULL, *done;
    bool overlaps = store_tx_overlaps(d->store);

    pthread_setname_np(pthread_self(), "durable-writer");
    for (;;) {
        durable_error err = { 0 };
        durable_code rc;

        if (pending)
            store_tx_commit_ready(d->store);
        batch = take_batch(d, &backlog, pending == NULL);
        if (!batch && !pending)
            break; /* the queue closed and drained */
        if (!batch) {
            /* None to begin behind pending's COMMIT. */
            rc = commit_wait(d, pending_ev, &err);
            settle(d, pending, pending_ev, rc, &err);
            pending = NULL;
            continue;
        }
        if (d->cluster)
            engine_cluster_committing(d);
        store_events_clear(ev);
        rc = begin_batch(d, batch, &err);
        done = pending ? wait_pending(d, pending, pending_ev, batch, &rc, &err) : NULL;
        pending = NULL;
        if (rc == DURABLE_OK)
            rc = apply_batch(d, batch, ev, &err);
        if (done)
            hand_on_committed(d, done, pending_ev);
        if (rc == DURABLE_OK && !overlaps)
            rc = commit_wait(d, ev, &err);
        else if (rc != DURABLE_OK)
            store_tx_rollback(d->store);
        if (rc != DURABLE_OK || !overlaps) {
            settle(d, batch, ev, rc, &err);
            continue;
        }
        pending = batch;
        swap = pending_ev;
        pending_ev = ev;
        ev = swap;
    }
    store_events_release(&evs[0]);
    store_events_release(&evs[1]);
    return NULL;
}

void engine_writer_start(struct durable *d)
{
    int rc = pthread_create(&d->writer, NULL, writer_main, d);
    DUR_ASSERT(rc == 0);
}

void engine_writer_stop(struct durable *d)
{
    queue_close(&d->commit_queue);
    pthread_join(d->writer, NULL);
}
