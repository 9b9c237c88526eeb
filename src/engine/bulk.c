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
 * action (pause, resume) is one more entry.
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
};

struct bulk_action {
    const char *name;
    /* Whether the action changes a run of status st. */
    bool (*applies)(enum run_status st);
    /* The commit item for one run (NULL with err set: the operation fails). */
    struct commit_item *(*item)(struct durable *d, const struct bulk_run *r, durable_error *err);
    /* After the commit, for each run it changed; may be NULL. */
    void (*after)(struct durable *d, const char *run_id);
};

static bool unfinished(enum run_status st)
{
    return !run_status_is_final(st);
}

static bool failed(enum run_status st)
{
    return st == RUN_FAILED;
}

static struct commit_item *cancel_item(struct durable *d, const struct bulk_run *r,
                                       durable_error *err)
{
    struct commit_item *ci = commit_item_new(TR_RUN_FINISH, r->id);

    (void)d;
    (void)err;
    ci->t.run_status = RUN_CANCELLED;
    ci->notify_sched = true;
    return ci;
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

static const struct bulk_action bulk_actions[] = {
    { "cancel", unfinished, cancel_item, NULL },
    { "retry", failed, retry_item, engine_sched_retry },
};

static const struct bulk_action *action_find(const char *name)
{
    for (size_t i = 0; name && i < DUR_ARRAY_LEN(bulk_actions); i++) {
        if (strcmp(bulk_actions[i].name, name) == 0)
            return &bulk_actions[i];
    }
    return NULL;
}

/* ---- the matched runs ---- */

struct bulk_runs {
    struct bulk_run *items;
    size_t n;
    size_t cap;
};

static void collect(void *ud, const struct run_row *row)
{
    struct bulk_runs *rs = ud;
    struct bulk_run *r;
    enum run_status st;

    if (!row->id || !row->workflow_id || !row->status || !run_status_parse(row->status, &st))
        return;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->items = xrealloc(rs->items, rs->cap * sizeof(*rs->items));
    }
    r = &rs->items[rs->n++];
    snprintf(r->id, sizeof(r->id), "%s", row->id);
    snprintf(r->workflow_id, sizeof(r->workflow_id), "%s", row->workflow_id);
    r->status = st;
}

/* ---- waiting for the commit ---- */

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

static void bulk_done(struct commit_reply *r)
{
    struct bulk_reply *br = (struct bulk_reply *)r;
    struct bulk_wait *w = br->w;

    pthread_mutex_lock(&w->mu);
    if (--w->n_left == 0)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* Submits the list (ownership taken), waits for its one commit and counts
 * the items that applied. */
static durable_code commit_all(struct durable *d, const struct bulk_action *a,
                               struct commit_item *head, struct bulk_reply *replies, size_t n,
                               int64_t *out_touched, durable_error *err)
{
    struct bulk_wait w;
    durable_code rc = DURABLE_OK;
    int64_t touched = 0;

    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    w.n_left = n;
    for (size_t i = 0; i < n; i++)
        replies[i].w = &w;
    if (engine_commit_submit(d, head) != DURABLE_OK) {
        rc = err_set(err, DURABLE_ECLOSED, "the engine is shutting down");
        goto done;
    }
    pthread_mutex_lock(&w.mu);
    while (w.n_left > 0)
        pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    for (size_t i = 0; i < n; i++) {
        if (replies[i].reply.code == DURABLE_OK) {
            touched++;
            if (a->after)
                a->after(d, replies[i].run_id);
        } else if (replies[i].reply.code != DURABLE_ECONFLICT && rc == DURABLE_OK) {
            /* The batch failed as a whole (EIO): nothing committed. */
            rc = replies[i].reply.err.code
                         ? err_set(err, replies[i].reply.err.code, "%s", replies[i].reply.err.msg)
                         : err_set(err, replies[i].reply.code, "the bulk %s did not commit",
                                   a->name);
        }
    }
    *out_touched = touched;
done:
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

static bool filter_empty(const durable_run_filter *f)
{
    return !f->status && !f->workflow_id && !f->created_after_ms && !f->created_before_ms &&
           !f->finished_after_ms && !f->finished_before_ms && !f->input_field;
}

durable_code durable_runs_bulk(durable *d, const char *action, const durable_run_filter *filter,
                               bool all, bool dry_run, int64_t *out_matched, int64_t *out_touched,
                               durable_error *err)
{
    static const durable_run_filter none = { 0 };
    const struct bulk_action *a = action_find(action);
    struct store_run_query q;
    struct bulk_runs rs = { 0 };
    struct bulk_reply *replies = NULL;
    struct commit_item *head = NULL, **tail = &head;
    int64_t total = 0, touched = 0;
    size_t n = 0;
    durable_code rc;

    if (!d || !out_matched || !out_touched)
        return err_set(err, DURABLE_EINVAL, "a bulk operation needs an engine and its answers");
    if (!a)
        return err_set(err, DURABLE_EINVAL,
                       "unknown bulk action \"%.60s\" (expected cancel or retry)",
                       action ? action : "");
    if (!filter)
        filter = &none;
    if (filter_empty(filter) && !all)
        return err_set(err, DURABLE_EINVAL,
                       "an empty filter matches every run: give a condition, or all");
    memset(&q, 0, sizeof(q));
    q.status = filter->status;
    q.workflow = filter->workflow_id;
    q.created_after_ms = filter->created_after_ms;
    q.created_before_ms = filter->created_before_ms;
    q.finished_after_ms = filter->finished_after_ms;
    q.finished_before_ms = filter->finished_before_ms;
    q.input_field = filter->input_field;
    q.input_value = filter->input_value;
    rc = store_runs_match(d->store, &q, DURABLE_BULK_MAX, collect, &rs, &total, err);
    if (rc == DURABLE_OK && total > DURABLE_BULK_MAX) {
        *out_matched = total;
        rc = err_set(err, DURABLE_ETOOBIG,
                     "%lld runs match, over the limit of %d for one bulk operation: narrow the "
                     "filter",
                     (long long)total, DURABLE_BULK_MAX);
    }
    if (rc != DURABLE_OK)
        goto done;
    for (size_t i = 0; i < rs.n; i++)
        n += a->applies(rs.items[i].status) ? 1 : 0;
    if (dry_run || n == 0) {
        touched = dry_run ? (int64_t)n : 0;
        goto done;
    }
    replies = xcalloc(n, sizeof(*replies));
    n = 0;
    for (size_t i = 0; i < rs.n; i++) {
        struct commit_item *ci;
        if (!a->applies(rs.items[i].status))
            continue;
        ci = a->item(d, &rs.items[i], err);
        if (!ci) {
            rc = err->code ? err->code : DURABLE_EIO;
            break;
        }
        replies[n].reply.on_done = bulk_done;
        memcpy(replies[n].run_id, rs.items[i].id, ID_MAX);
        ci->reply = &replies[n].reply;
        ci->with_prev = n > 0;
        *tail = ci;
        tail = &ci->next;
        n++;
    }
    if (rc != DURABLE_OK) {
        struct commit_item *next;
        for (struct commit_item *ci = head; ci; ci = next) {
            next = ci->next;
            commit_item_free(ci);
        }
        goto done;
    }
    rc = commit_all(d, a, head, replies, n, &touched, err);
done:
    if (rc == DURABLE_OK) {
        *out_matched = total;
        *out_touched = touched;
    }
    free(replies);
    free(rs.items);
    return rc;
}
