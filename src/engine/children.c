/*
 * children.c - child runs (`workflow` steps): linking a child to the parent
 * step that waits for it, and ending that step with the child's outcome.
 * The link is in memory only: after a restart the parent's step starts
 * again, finds its child by idempotency key and links it again. A parent
 * that finishes cancels its unfinished children. A code-first child is not
 * the scheduler's: its parent's step waits for the commit of its end
 * (engine_code_child_wait, code_child.c), told by a MSG_CHILD_ENDED; a
 * parent that ends first has it cancelled there.
 *
 * Scheduler thread only.
 */
#include "util/common.h"

#include "engine/engine_int.h"

#include <stdlib.h>

/* The parent run whose step attempt (step, sgen) waits for a child, if it
 * still does. */
static struct run_state *waiting_parent(struct sched *s, const char *pid, uint64_t pgen,
                                        size_t step, uint32_t sgen)
{
    struct run_state *p = sched_run_find(s, pid);

    if (!p || p->gen != pgen || p->finishing || step >= p->plan->n_steps)
        return NULL;
    if (p->steps[step].gen != sgen || p->steps[step].st != SS_RUNNING)
        return NULL;
    return p;
}

/* Ends the parent's step with its child's outcome: the child's output, or
 * a failure (retryable like any other: the next attempt starts a new
 * child). */
/* The step (and item, when item > 0: a map's) a child's end goes to. */
struct child_to {
    size_t step;
    size_t item;
    uint32_t item_gen;
};

static void deliver_child(struct sched *s, struct run_state *p, const struct child_to *to,
                          const struct child_end *e)
{
    size_t step = to->step;
    const char *child_id = e->id, *output_json = e->output_json, *error = e->error;
    enum run_status status = e->status;
    json_t *out;
    char msg[384];

    if (to->item > 0) {
        sched_map_child_ended(s, p, step, to->item, to->item_gen, e);
        return;
    }
    if (status == RUN_COMPLETED) {
        out = output_json ? json_loads(output_json, JSON_DECODE_ANY, NULL) : NULL;
        sched_submit_complete(s, p, step, out ? out : json_object());
        return;
    }
    snprintf(msg, sizeof(msg), "child run %s %s%s%s", child_id, run_status_name(status),
             error ? ": " : "", error ? error : "");
    sched_submit_failure(s, p, step, status == RUN_CANCELLED ? "child_cancelled" : "child_failed",
                         msg);
}

static void link_child(struct run_state *p, const struct child_to *to, struct run_state *c)
{
    c->has_parent = true;
    snprintf(c->parent_id, sizeof(c->parent_id), "%s", p->id);
    c->parent_gen = p->gen;
    c->parent_step = to->step;
    c->parent_step_gen = p->steps[to->step].gen;
    c->parent_item = to->item;
    c->parent_item_gen = to->item_gen;
    p->children = xrealloc(p->children, (p->n_children + 1) * sizeof(*p->children));
    snprintf(p->children[p->n_children++], ID_MAX, "%s", c->id);
}

/* A child that finished before its parent's step linked it (a restart):
 * its outcome from the store. */
static void deliver_from_store(struct sched *s, struct run_state *p, const struct child_to *to,
                               const char *child_id)
{
    durable_error err = { 0 };
    struct run_record rec = { .n_steps = 0 };

    if (store_run_load(s->d->store, child_id, &rec, &err) == DURABLE_OK &&
        run_status_is_final(rec.status)) {
        struct child_end e = { child_id, rec.status, rec.output_json, rec.error_message };
        deliver_child(s, p, to, &e);
    } else {
        struct child_end e = { child_id, RUN_FAILED, NULL,
                               err.msg[0] ? err.msg
                                          : "the child run is executed by another process" };
        if (to->item > 0)
            sched_map_child_ended(s, p, to->step, to->item, to->item_gen, &e);
        else
            sched_submit_failure(s, p, to->step, "child_error", e.error);
    }
    run_record_release(&rec);
}

/* The parent's step waits for child_id, a code-first run: registered
 * before the child's status is read, so an end committed in between is
 * posted; whoever takes the wait back (here, or the subscription) delivers. */
static void wait_code_child(struct sched *s, struct run_state *p, const struct child_to *to,
                            const char *child_id)
{
    size_t step = to->step;
    struct step_io_tag tag = { .step_idx = step,
                               .run_gen = p->gen,
                               .gen = p->steps[step].gen,
                               .item = to->item,
                               .item_gen = to->item_gen };
    durable_error err = { 0 };
    struct run_record rec = { .n_steps = 0 };
    durable_code rc;

    snprintf(tag.run_id, sizeof(tag.run_id), "%s", p->id);
    engine_code_child_wait(s->d, child_id, &tag);
    rc = store_run_load(s->d->store, child_id, &rec, &err);
    if (rc != DURABLE_OK && engine_code_child_unwait(s->d, child_id, &tag)) {
        struct child_end e = { child_id, RUN_FAILED, NULL, err.msg };
        if (to->item > 0)
            sched_map_child_ended(s, p, step, to->item, to->item_gen, &e);
        else
            sched_submit_failure(s, p, step, "child_error", err.msg);
    } else if (rc == DURABLE_OK && run_status_is_final(rec.status) &&
               engine_code_child_unwait(s->d, child_id, &tag)) {
        struct child_end e = { child_id, rec.status, rec.output_json, rec.error_message };
        deliver_child(s, p, to, &e);
    }
    run_record_release(&rec);
}

void sched_on_code_child_ended(struct sched *s, const struct sched_msg *m)
{
    struct run_state *p =
            waiting_parent(s, m->tag.run_id, m->tag.run_gen, m->tag.step_idx, m->tag.gen);
    struct child_to to = { m->tag.step_idx, m->tag.item, m->tag.item_gen };

    if (p)
        deliver_from_store(s, p, &to, m->run_id);
}

/* A child's RUN_CREATE committed: created now, or found by its key (the
 * parent's step started again after a restart). */
void sched_on_child_created(struct sched *s, struct commit_item *ci)
{
    struct run_state *p =
            waiting_parent(s, ci->parent_id, ci->parent_gen, ci->parent_step, ci->parent_step_gen);
    struct child_to to = { ci->parent_step, ci->parent_item, ci->parent_item_gen };
    struct run_state *c;
    char msg[128];

    if (ci->applied == APPLIED_NONE || !ci->result.created)
        engine_run_unlock(s->d, ci->t.run_id); /* the id claimed for a run not created */
    if (ci->code == DURABLE_EIO) {
        /* The store failed, not the child: the parent starts the step again
         * once loaded again (its key finds a child created meanwhile). */
        if (p)
            sched_run_reload_later(s, p);
        return;
    }
    if (ci->applied == APPLIED_NONE) {
        snprintf(msg, sizeof(msg), "could not start the child run: %s", durable_strerror(ci->code));
        if (p && to.item > 0) {
            struct child_end e = { ci->t.run_id, RUN_FAILED, NULL, msg };
            sched_map_child_ended(s, p, to.step, to.item, to.item_gen, &e);
        } else if (p) {
            sched_submit_failure(s, p, ci->parent_step, "child_error", msg);
        }
        return;
    }
    if (ci->result.created)
        sched_adopt_new(s, ci);
    if (!p)
        return; /* the parent moved on: the child runs alone */
    c = sched_run_find(s, ci->result.id);
    if (!c && !ci->result.created) {
        sched_resume_run(s, ci->result.id, true);
        c = sched_run_find(s, ci->result.id);
    }
    if (c)
        link_child(p, &to, c);
    else if (ci->plan && ci->plan->code_version > 0)
        wait_code_child(s, p, &to, ci->result.id);
    else
        deliver_from_store(s, p, &to, ci->result.id);
}

/* Run r's RUN_FINISH committed (before it is dropped): its parent's step
 * ends with it; its unfinished children are cancelled. */
void sched_on_run_finished(struct sched *s, struct run_state *r, const struct transition *t)
{
    struct run_state *p, *c;
    size_t k;

    if (r->has_parent) {
        p = waiting_parent(s, r->parent_id, r->parent_gen, r->parent_step, r->parent_step_gen);
        struct child_end e = { r->id, t->run_status, t->output_json, t->error_message };
        struct child_to to = { r->parent_step, r->parent_item, r->parent_item_gen };
        if (p)
            deliver_child(s, p, &to, &e);
    }
    for (k = 0; k < r->n_children; k++) {
        c = sched_run_find(s, r->children[k]);
        if (c && !c->finishing)
            sched_submit_finish(s, c, RUN_CANCELLED, NULL, NULL);
    }
}
