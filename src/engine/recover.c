/*
 * recover.c - adopting runs into the scheduler's memory: a run just created,
 * or one found unfinished in the store (at start-up, on a resume by key, after
 * a retry or for a decision). Its state is rebuilt from the store's record
 * alone; steps that were running restart under their attempt and key once
 * the run's TR_RUN_RECOVERED commits.
 *
 * Scheduler thread only (and engine_sched_start, before that thread exists).
 */
#include "util/common.h"

#include "engine/engine_int.h"

#include <string.h>

/* Remembers a run whose definition did not load, to try again at the next
 * step type registration (sched_resume_unresolved). */
static void keep_unresolved(struct sched *s, const char *run_id)
{
    size_t i;

    for (i = 0; i < s->n_unresolved; i++) {
        if (strcmp(s->unresolved[i], run_id) == 0)
            return;
    }
    s->unresolved = xrealloc(s->unresolved, (s->n_unresolved + 1) * sizeof(*s->unresolved));
    snprintf(s->unresolved[s->n_unresolved++], ID_MAX, "%s", run_id);
}

void sched_resume_unresolved(struct sched *s)
{
    char(*ids)[ID_MAX] = s->unresolved;
    size_t i, n = s->n_unresolved;

    s->unresolved = NULL;
    s->n_unresolved = 0;
    for (i = 0; i < n; i++)
        sched_resume_run(s, ids[i], false);
    free(ids);
}

/* Arms the run's time limit, if it has one: due at deadline_ms when the
 * store has it (set at creation, and again by a retry), else counted from
 * created_at_ms (runs created before the store kept it). */
static void arm_deadline(struct sched *s, struct run_state *r, int64_t created_at_ms,
                         int64_t deadline_ms)
{
    if (r->plan->timeout_ms > 0) {
        sched_timer_push(s, r, 0, TM_DEADLINE,
                         deadline_ms > 0 ? deadline_ms : created_at_ms + r->plan->timeout_ms);
    }
}

static void recount(struct run_state *r);

/* A restart's new run: the steps kept from the original are settled. */
static void restore_copies(struct run_state *r, const struct transition *t)
{
    for (size_t k = 0; k < t->n_copies; k++) {
        const struct transition_step_copy *c = &t->copies[k];
        long i = plan_step_index(r->plan, c->step_id);

        if (i < 0)
            continue;
        r->steps[i].attempt = c->attempt;
        if (c->status == STEP_S_COMPLETED) {
            r->steps[i].st = SS_COMPLETED;
            r->steps[i].output =
                    c->output_json ? json_loads(c->output_json, JSON_DECODE_ANY, NULL) : NULL;
        } else {
            r->steps[i].st = SS_SKIPPED;
        }
    }
    recount(r);
}

/* A run just created (its RUN_CREATE committed). */
void sched_adopt_new(struct sched *s, struct commit_item *ci)
{
    struct run_state *r;
    size_t k;

    if (sched_run_find(s, ci->result.id))
        return;
    if (ci->plan->code_version > 0) {
        engine_code_adopt(s->d, ci->result.id, ci->plan);
        return;
    }
    r = sched_run_new(s, ci->result.id, ci->plan, ci->t.order_id, ci->t.order_amount,
                      ci->t.input_json);
    sched_run_insert(s, r);
    if (ci->t.n_copies > 0)
        restore_copies(r, &ci->t);
    flow_on_adopt(s, r, false, ci->t.priority, ci->t.at_ms);
    arm_deadline(s, r, ci->t.at_ms, ci->t.deadline_ms);
    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        if (r->steps[i].n_deps_left == 0)
            sched_on_ready(s, r, i);
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
            sched_timer_push(s, r, (size_t)i, TM_RETRY, sr->wake_at_ms);
        /* A waiting step waits on: a delay or an approval's timeout fires
         * at its stored time (at once when past); an approval without a
         * timeout has no timer at all. */
        if (ss->st == SS_WAITING && sr->wake_at_ms > 0)
            sched_timer_push(s, r, (size_t)i, TM_WAKE, sr->wake_at_ms);
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
 * then go to their types (sched_on_recovered). The JSON array of their ids is
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
    sched_submit(s, ci);
}

/* The run's TR_RUN_RECOVERED committed: the steps it restarted are started
 * again, as if their START had just committed. */
void sched_on_recovered(struct sched *s, struct run_state *r)
{
    size_t k;

    FAILPOINT("recover.restart"); /* recorded as recovered, steps not started again */
    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        struct step_state *ss = &r->steps[i];
        if (!ss->is_restarting)
            continue;
        ss->is_restarting = false;
        if (!r->finishing && ss->st == SS_STARTING)
            sched_on_started(s, r, i);
    }
}

/* Whether the run had been let in by its concurrency limit (flow.c): its
 * first START committed, so its status left pending; a paused run, when a
 * step of it has left pending. */
static bool was_admitted(const struct run_state *r, const struct run_record *rec)
{
    if (rec->status == RUN_PENDING)
        return false;
    if (rec->status != RUN_PAUSED)
        return true;
    for (size_t i = 0; i < r->plan->n_steps; i++) {
        if (r->steps[i].st != SS_PENDING)
            return true;
    }
    return false;
}

/* A run found unfinished in the store: after a restart or a resume by key
 * (is_retry false: its TR_RUN_RECOVERED restarts the steps that were
 * running and records a `recovered` event), or just retried or adopted for
 * a decision (is_retry true: such steps get a new START, same attempt). */
durable_code sched_adopt_run(struct sched *s, const struct run_record *rec, bool is_retry)
{
    durable_error err = { 0 };
    struct plan *plan = NULL;
    struct run_state *r;
    bool any_failed = false;
    size_t k;

    if (!is_retry)
        FAILPOINT("recover.adopt"); /* in the middle of a recovery or a claim */
    if (sched_run_find(s, rec->id))
        return DURABLE_OK;
    if (engine_plan_get(s->d, rec->workflow_id, rec->definition, &plan, &err) != DURABLE_OK) {
        log_warn("run %s waits for its definition to load (resumed when a step type or an "
                 "action is registered): %s",
                 rec->id, err.msg);
        keep_unresolved(s, rec->id);
        return DURABLE_OK;
    }
    if (plan->code_version > 0) {
        engine_code_adopt(s->d, rec->id, plan);
        plan_unref(plan);
        return DURABLE_OK;
    }
    r = sched_run_new(s, rec->id, plan, rec->order_id, rec->order_amount, rec->input_json);
    plan_unref(plan);
    sched_run_insert(s, r);
    r->paused = rec->status == RUN_PAUSED; /* steps that were running restart, nothing new */
    restore_steps(s, r, rec, &any_failed);
    recount(r);
    flow_on_adopt(s, r, was_admitted(r, rec), rec->priority, rec->created_at_ms);
    if (!is_retry)
        submit_recovered(s, r);
    if (any_failed) {
        sched_submit_finish(s, r, RUN_FAILED, "a step had failed before the restart", NULL);
        return DURABLE_OK;
    }
    arm_deadline(s, r, rec->created_at_ms, rec->deadline_ms);
    for (k = 0; k < r->plan->n_steps; k++) {
        size_t i = r->plan->topo[k];
        if (r->steps[i].st == SS_RUNNING)
            sched_submit_start(s, r, i, r->steps[i].attempt > 0 ? r->steps[i].attempt : 1);
        else if (r->steps[i].st == SS_PENDING && r->steps[i].n_deps_left == 0)
            sched_on_ready(s, r, i);
    }
    sched_check_finished(s, r);
    return DURABLE_OK;
}

void sched_resume_run(struct sched *s, const char *run_id, bool is_retry)
{
    struct run_state *r = sched_run_find(s, run_id);
    struct run_record rec;
    durable_error err = { 0 };

    if (s->d->cluster) {
        /* Only the run's owner executes it: claimed first (SCHED_WAKE). */
        engine_cluster_want(s->d, run_id);
        return;
    }
    if (r) {
        /* Active already (a resume by key came first), unless it is the
         * failed incarnation, which its RUN_FINISH, committed before the
         * retry, should have dropped: that one is stale. */
        if (!is_retry || !r->finishing)
            return;
        sched_run_drop(s, run_id);
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
        sched_adopt_run(s, &rec, is_retry);
    else
        engine_run_unlock(s->d, run_id);
    run_record_release(&rec);
}

/* ---- a cluster of nodes (cluster.c) ---- */

/* A run of this node that a caller changed, maybe on another node (a
 * decision, a cancel, a retry), or that it claimed for a caller: the store
 * says what changed. */
static void refresh_run(struct sched *s, const struct run_record *rec)
{
    struct run_state *r = sched_run_find(s, rec->id);

    if (r && r->finishing && !run_status_is_final(rec->status)) {
        sched_run_drop(s, rec->id); /* the failed incarnation of a retried run */
        r = NULL;
    }
    if (!r) {
        if (!run_status_is_final(rec->status))
            sched_adopt_run(s, rec, true);
        return;
    }
    if (run_status_is_final(rec->status)) {
        struct transition t = { .kind = TR_RUN_FINISH, .run_id = rec->id };
        t.run_status = rec->status;
        t.output_json = rec->output_json;
        t.error_message = rec->error_message;
        if (!r->finishing)
            sched_on_run_finished(s, r, &t); /* cancelled: its children too */
        sched_run_drop(s, rec->id);
        return;
    }
    if (rec->status == RUN_PAUSED)
        r->paused = true;
    else if (r->paused)
        sched_on_resumed(s, r);
    for (size_t k = 0; k < rec->n_steps; k++) {
        const struct step_record *sr = &rec->steps[k];
        long i = plan_step_index(r->plan, sr->step_id);
        if (i >= 0 && sr->status == STEP_S_COMPLETED && r->steps[i].st == SS_WAITING) {
            struct transition t = { .kind = TR_STEP_DECIDE, .run_id = rec->id };
            t.output_json = sr->output_json;
            sched_on_decided(s, r, (size_t)i, &t);
        }
    }
}

/* The node lost its lease: its runs may be another node's now. */
static void forget_all(struct sched *s)
{
    size_t n = 0;

    for (size_t i = 0; i < s->n_buckets; i++) {
        while (s->buckets[i]) {
            sched_run_drop(s, s->buckets[i]->id);
            n++;
        }
    }
    if (n > 0)
        log_warn("this node lost its lease: it stops executing its %zu runs", n);
}

void sched_on_cluster(struct sched *s, enum sched_cluster_msg what, const char *run_id)
{
    struct run_record rec;
    durable_error err = { 0 };

    if (what == SCHED_FENCE) {
        forget_all(s);
        return;
    }
    if (what == SCHED_CLAIMS_BEGIN || what == SCHED_CLAIMS_END) {
        flow_claims(s, what == SCHED_CLAIMS_BEGIN);
        return;
    }
    if (what == SCHED_FLOW) {
        flow_wake(s);
        return;
    }
    if (what == SCHED_CLAIMED && sched_run_find(s, run_id))
        return;
    memset(&rec, 0, sizeof(rec));
    if (store_run_load(s->d->store, run_id, &rec, &err) != DURABLE_OK) {
        log_error("cannot resume run %s: %s", run_id, err.msg);
        return;
    }
    if (what == SCHED_CLAIMED && !run_status_is_final(rec.status))
        sched_adopt_run(s, &rec, false); /* as recovery: its `recovered` event */
    else if (what == SCHED_WAKE)
        refresh_run(s, &rec);
    run_record_release(&rec);
}
