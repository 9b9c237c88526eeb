/*
 * bulk.c - bulk operations on runs (durable_runs_bulk): one action applied
 * to every run a filter matches, as ONE commit.
 *
 * The matching runs are read in one snapshot (store_runs_match, at most
 * DURABLE_BULK_MAX), then one commit item per run the action applies to is
 * made and the items are submitted as one list linked with_prev: the
 * writer never splits such a list across batches and applies each item
 * whatever became of the one before, so the whole operation is one
 * transaction (a SIGKILL leaves all of it or none). The store checks each
 * run's status again as it applies (a run that finished meanwhile is not
 * cancelled: ECONFLICT, matched but not touched). Caller transitions (not
 * by_owner): on a PostgreSQL cluster the store notifies each run's owner,
 * as a single cancel or retry does.
 *
 * The actions are a table (bulk_actions): the statuses an action changes,
 * the commit item it makes for a run, and what follows its commit. A new
 * action is one more entry. Pause passes over code-first runs (a code-first
 * run cannot be paused: durable_run_pause): whether a run's workflow is
 * code-first is read once per workflow of the matched runs.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

/* One matched run, as the action needs it. */
struct bulk_run {
    char id[ID_MAX];
    char workflow_id[ID_MAX];
    enum run_status status;
    bool code_first;
};

struct bulk_action {
    const char *name;
    /* Whether the action changes the run. */
    bool (*applies)(const struct bulk_run *r);
    /* The commit item for one run (NULL with err set: the operation fails). */
    struct commit_item *(*item)(struct durable *d, const struct bulk_run *r, durable_error *err);
    /* After the commit, for each run it changed; may be NULL. */
    void (*after)(struct durable *d, const char *run_id);
};

static bool unfinished(const struct bulk_run *r)
{
    return !run_status_is_final(r->status);
}

static bool failed(const struct bulk_run *r)
{
    return r->status == RUN_FAILED;
}

static bool pausable(const struct bulk_run *r)
{
    return !run_status_is_final(r->status) && r->status != RUN_PAUSED && !r->code_first;
}

static bool paused(const struct bulk_run *r)
{
    return r->status == RUN_PAUSED;
}

static struct commit_item *cancel_item(struct durable *d, const struct bulk_run *r,
                                       durable_error *err)
{
    (void)d;
    (void)err;
    return commit_item_cancel(r->id);
}

static struct commit_item *retry_item(struct durable *d, const struct bulk_run *r,
                                      durable_error *err)
{
    struct workflow_record wf;
    struct plan *plan = NULL;
    struct commit_item *ci = NULL;

    memset(&wf, 0, sizeof(wf));
    if (store_workflow_get(d->store, r->workflow_id, &wf, err) == DURABLE_OK &&
        engine_plan_get(d, wf.id, wf.definition, &plan, err) == DURABLE_OK) {
        ci = commit_item_new(TR_RUN_RETRY, r->id);
        if (plan->timeout_ms > 0)
            ci->t.deadline_ms = ci->t.at_ms + plan->timeout_ms;
    }
    plan_unref(plan);
    workflow_record_release(&wf);
    return ci;
}

static struct commit_item *pause_item(struct durable *d, const struct bulk_run *r,
                                      durable_error *err)
{
    struct commit_item *ci = commit_item_new(TR_RUN_PAUSE, r->id);

    (void)d;
    (void)err;
    ci->notify_sched = true;
    return ci;
}

static struct commit_item *resume_item(struct durable *d, const struct bulk_run *r,
                                       durable_error *err)
{
    struct commit_item *ci = commit_item_new(TR_RUN_RESUME, r->id);

    (void)d;
    (void)err;
    ci->notify_sched = true;
    return ci;
}

static const struct bulk_action bulk_actions[] = {
    { "cancel", unfinished, cancel_item, NULL },
    { "retry", failed, retry_item, engine_sched_retry },
    { "pause", pausable, pause_item, NULL },
    { "resume", paused, resume_item, NULL },
};

static const struct bulk_action *action_find(const char *name)
{
    for (size_t i = 0; name && i < DUR_ARRAY_LEN(bulk_actions); i++) {
        if (strcmp(bulk_actions[i].name, name) == 0)
            return &bulk_actions[i];
    }
    return NULL;
}

/* ---- the operation ---- */

/* Every item's reply; the writer calls on_done for each after the commit. */
struct bulk_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t n_left; /* guarded by mu */
};

struct bulk_reply {
    struct commit_reply reply; /* first: on_done's argument is this */
    struct bulk_wait *w;
    char run_id[ID_MAX];
};

struct bulk_op {
    struct durable *d;
    const struct bulk_action *a;
    struct bulk_run *runs; /* the matched runs */
    size_t n_runs;
    size_t cap;
    size_t n_apply;             /* those the action applies to */
    struct bulk_reply *replies; /* n_apply */
    durable_bulk_result res;
};

static void collect(void *ud, const struct run_row *row)
{
    struct bulk_op *op = ud;
    struct bulk_run *r;
    enum run_status st;

    if (!row->id || !row->workflow_id || !row->status || !run_status_parse(row->status, &st))
        return;
    if (op->n_runs == op->cap) {
        op->cap = op->cap ? op->cap * 2 : 64;
        op->runs = xrealloc(op->runs, op->cap * sizeof(*op->runs));
    }
    r = &op->runs[op->n_runs++];
    snprintf(r->id, sizeof(r->id), "%s", row->id);
    snprintf(r->workflow_id, sizeof(r->workflow_id), "%s", row->workflow_id);
    r->status = st;
}

static void bulk_done(struct commit_reply *r)
{
    struct bulk_reply *br = (struct bulk_reply *)r;
    struct bulk_wait *w = br->w;

    pthread_mutex_lock(&w->mu);
    if (--w->n_left == 0)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* One item per run the action applies to, linked with_prev (NULL and err
 * set when one cannot be made; nothing is left allocated then). */
static struct commit_item *make_items(struct bulk_op *op, durable_error *err)
{
    struct commit_item *head = NULL, **tail = &head, *next;
    size_t n = 0;

    op->replies = xcalloc(op->n_apply, sizeof(*op->replies));
    for (size_t i = 0; i < op->n_runs; i++) {
        struct commit_item *ci;
        if (!op->a->applies(&op->runs[i]))
            continue;
        ci = op->a->item(op->d, &op->runs[i], err);
        if (!ci)
            goto fail;
        op->replies[n].reply.on_done = bulk_done;
        memcpy(op->replies[n].run_id, op->runs[i].id, ID_MAX);
        ci->reply = &op->replies[n].reply;
        ci->with_prev = n > 0;
        *tail = ci;
        tail = &ci->next;
        n++;
    }
    return head;
fail:
    for (struct commit_item *ci = head; ci; ci = next) {
        next = ci->next;
        commit_item_free(ci);
    }
    return NULL;
}

/* The first failure among the replies other than a refusal (ECONFLICT: the
 * run changed meanwhile), into err; DURABLE_OK when none. */
static durable_code reply_failure(const struct bulk_op *op, durable_error *err)
{
    for (size_t i = 0; i < op->n_apply; i++) {
        const struct commit_reply *r = &op->replies[i].reply;
        if (r->code == DURABLE_OK || r->code == DURABLE_ECONFLICT)
            continue;
        if (r->err.code)
            return err_set(err, r->err.code, "%s", r->err.msg);
        return err_set(err, r->code, "the bulk %s did not commit", op->a->name);
    }
    return DURABLE_OK;
}

/* Submits the items as one list, waits for its one commit and counts the
 * runs it changed. */
static durable_code commit_all(struct bulk_op *op, durable_error *err)
{
    struct commit_item *head = make_items(op, err);
    struct bulk_wait w;
    durable_code rc;

    if (!head)
        return err->code ? err->code : DURABLE_EIO;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    w.n_left = op->n_apply;
    for (size_t i = 0; i < op->n_apply; i++)
        op->replies[i].w = &w;
    if (engine_commit_submit(op->d, head) != DURABLE_OK) {
        rc = err_set(err, DURABLE_ECLOSED, "the engine is shutting down");
    } else {
        pthread_mutex_lock(&w.mu);
        while (w.n_left > 0)
            pthread_cond_wait(&w.cond, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = reply_failure(op, err);
    }
    for (size_t i = 0; rc == DURABLE_OK && i < op->n_apply; i++) {
        if (op->replies[i].reply.code != DURABLE_OK)
            continue;
        op->res.touched++;
        if (op->a->after)
            op->a->after(op->d, op->replies[i].run_id);
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

static bool filter_empty(const durable_run_filter *f)
{
    return !f->status && !f->workflow_id && !f->created_after_ms && !f->created_before_ms &&
           !f->finished_after_ms && !f->finished_before_ms && !f->input_field;
}

/* Marks the matched runs whose workflow is code-first, reading each
 * workflow's plan once. */
static durable_code mark_code_first(struct bulk_op *op, durable_error *err)
{
    for (size_t i = 0; i < op->n_runs; i++) {
        struct workflow_record wf;
        struct plan *plan = NULL;
        durable_code rc;
        size_t j;

        for (j = 0; j < i && strcmp(op->runs[j].workflow_id, op->runs[i].workflow_id) != 0; j++)
            ;
        if (j < i) {
            op->runs[i].code_first = op->runs[j].code_first;
            continue;
        }
        memset(&wf, 0, sizeof(wf));
        rc = store_workflow_get(op->d->store, op->runs[i].workflow_id, &wf, err);
        if (rc == DURABLE_OK)
            rc = engine_plan_get(op->d, wf.id, wf.definition, &plan, err);
        if (rc == DURABLE_OK)
            op->runs[i].code_first = plan->code_version > 0;
        plan_unref(plan);
        workflow_record_release(&wf);
        if (rc != DURABLE_OK)
            return rc;
    }
    return DURABLE_OK;
}

/* Reads the runs the request's filter matches into op. */
static durable_code match(struct bulk_op *op, const durable_run_filter *f, durable_error *err)
{
    struct store_row_fns fn = { .run = collect, .ud = op };
    struct store_run_query q;
    durable_code rc;

    engine_run_query(&q, f);
    rc = store_runs_match(op->d->store, &q, DURABLE_BULK_MAX, &fn, &op->res.matched, err);
    if (rc == DURABLE_OK && op->res.matched > DURABLE_BULK_MAX)
        rc = err_set(err, DURABLE_ETOOBIG,
                     "%lld runs match, over the limit of %d for one bulk operation: narrow the "
                     "filter",
                     (long long)op->res.matched, DURABLE_BULK_MAX);
    if (rc == DURABLE_OK && op->a->applies == pausable)
        rc = mark_code_first(op, err);
    for (size_t i = 0; i < op->n_runs; i++)
        op->n_apply += op->a->applies(&op->runs[i]) ? 1 : 0;
    return rc;
}

durable_code durable_runs_bulk(durable *d, const durable_bulk_request *req,
                               durable_bulk_result *out, durable_error *err)
{
    struct bulk_op op;
    durable_code rc;

    if (!d || !req || !out)
        return err_set(err, DURABLE_EINVAL,
                       "a bulk operation needs an engine, a request and "
                       "its answer");
    memset(&op, 0, sizeof(op));
    op.d = d;
    op.a = action_find(req->action);
    if (!op.a)
        return err_set(err, DURABLE_EINVAL,
                       "unknown bulk action \"%.60s\" (expected cancel, retry, pause or resume)",
                       req->action ? req->action : "");
    if (filter_empty(&req->filter) && !req->all)
        return err_set(err, DURABLE_EINVAL,
                       "an empty filter matches every run: give a condition, or all");
    rc = match(&op, &req->filter, err);
    if (rc == DURABLE_OK && req->dry_run)
        op.res.touched = (int64_t)op.n_apply;
    else if (rc == DURABLE_OK && op.n_apply > 0)
        rc = commit_all(&op, err);
    if (rc == DURABLE_OK || rc == DURABLE_ETOOBIG)
        *out = op.res;
    free(op.replies);
    free(op.runs);
    return rc;
}
