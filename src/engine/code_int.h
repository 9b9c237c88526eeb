/*
 * code_int.h - what code.c lends the other files of code-first workflows
 * (code_child.c): a step call's checks and record, its START, and queueing
 * an invocation of a run. Each call takes the workflow thread's ctx, as in
 * code.c, except code_wake (any thread).
 */
#ifndef DURABLE_ENGINE_CODE_INT_H
#define DURABLE_ENGINE_CODE_INT_H

#include "engine/engine.h"

#include <jansson.h>

#define CODE_NAME_MAX     64
#define CODE_STEP_ID_SIZE (CODE_NAME_MAX + 16)

struct code_fn;
struct code_children;

/* The record of a step at a call's position (borrowed from the run's
 * document until the function returns). */
struct code_rec_view {
    bool recorded;
    const char *status;
    const char *error;
    json_t *output;
    int attempt;
};

/* A step call's checks (see durable_step): its id (OUT step_id) and record. */
durable_code code_call_begin(durable_ctx *ctx, const char *name, char step_id[CODE_STEP_ID_SIZE],
                             struct code_rec_view *rec, durable_error *err);
/* Submits the START of a step not recorded yet (attempt 1), inserting its row. */
durable_code code_call_start(durable_ctx *ctx, const char *step_id, const char *type);
/* The call at this position is done: the next step depends on it. */
void code_call_done(durable_ctx *ctx, const char *step_id);
/* Stops the execution with rc (see ctx_stop in code.c). */
durable_code code_call_stop(durable_ctx *ctx, durable_code rc, const durable_error *why,
                            durable_error *err);
struct durable *code_ctx_durable(const durable_ctx *ctx);
/* A transition of the run's executor: by_owner, so that on a database
 * shared by several nodes it applies only while this node owns the run,
 * and does not NOTIFY the owner (store.h). */
struct commit_item *code_item_new(enum transition_kind kind, const char *run_id);
const struct code_fn *code_ctx_fn(const durable_ctx *ctx);

/* Queues an invocation of run_id (of fn), or asks the one under way to run
 * again. Any thread; takes code.c's lock (a leaf). */
void code_wake(struct durable *d, const char *run_id, const struct code_fn *fn);
/* The children's state of d (code_child.c), created with code.c's. */
struct code_children **code_children_of(struct durable *d);

/* code_child.c: its state's life, and the subscription that wakes a parent
 * when its child finishes (started at the first registration, outside
 * every lock; stopped before the writer). */
struct code_children *code_children_new(struct durable *d);
void code_children_subscribe(struct durable *d);
void code_children_stop(struct durable *d);
void code_children_free(struct code_children *ch);

#endif
