/*
 * steps.h - step types: one small vtable per type, one file per type.
 *
 * The scheduler calls start() when a step attempt's start has committed. A
 * type answers with an outcome: done at once (output), failed (error code and
 * message), "call my timer() at now + timer_ms" (the way a simulated task
 * waits without a thread), "wait durably" (the step becomes `waiting` in the
 * store, with its wake-up time, before anything else happens: delays and
 * approvals; timer() is called at the wake-up time, also after a restart),
 * or "decided" (an approval's timeout, committed as a decision). Types know
 * nothing of the store: the engine commits what they answer. All calls
 * happen on the scheduler thread and must not block.
 *
 * Files: task.c (task, and the registry), expr_steps.c (condition,
 * transform, log), wait_steps.c (delay, approval).
 */
#ifndef DURABLE_STEPS_STEPS_H
#define DURABLE_STEPS_STEPS_H

#include "util/common.h"

#include <jansson.h>

#include "def/def.h"
#include "util/util.h"

enum step_outcome_kind {
    STEP_OUT_DONE = 0, /* finished: output holds the result */
    STEP_OUT_FAIL,     /* the attempt failed: error_code, error_msg */
    STEP_OUT_TIMER,    /* call timer() after timer_ms */
    STEP_OUT_WAIT,     /* wait durably until wake_at_ms (0: until decided), then timer() */
    STEP_OUT_DECIDE,   /* approval decided without a person: output {approved, by, comment, at} */
};

struct step_outcome {
    enum step_outcome_kind kind;
    json_t *output;       /* DONE, DECIDE: owned by the outcome (the caller takes it) */
    int64_t timer_ms;     /* TIMER */
    int64_t wake_at_ms;   /* WAIT: Unix ms, 0 for none */
    json_t *data;         /* WAIT: members for the step_waiting event, owned, or NULL */
    char error_code[32];  /* FAIL: "random_failure", "timeout", ... */
    char error_msg[256];  /* FAIL */
};

/* What a step sees of its run. Borrowed for the call. */
struct step_call {
    const struct plan_step *step;
    const char *run_id;
    int attempt;
    const char *idempotency_key;
    json_t *config;  /* the step's config with its {{ }} templates rendered for this
                        attempt (step->config itself when it has none) */
    json_t *ctx;     /* the run context {input, steps, run} of SPEC §3; NULL unless
                        the step has an expression (step->expr) */
};

struct step_type {
    enum step_kind kind;
    void (*start)(const struct step_call *c, struct step_outcome *out);
    void (*timer)(const struct step_call *c, struct step_outcome *out); /* may be NULL */
};

extern const struct step_type steps_condition_type; /* expr_steps.c */
extern const struct step_type steps_transform_type;
extern const struct step_type steps_log_type;
extern const struct step_type steps_delay_type; /* wait_steps.c */
extern const struct step_type steps_approval_type;

/* The vtable for a kind, or NULL when the kind is not implemented. */
const struct step_type *steps_type_for(enum step_kind kind);

/* The error code of a failed expression (runtime jq error, limits). */
#define STEPS_EXPRESSION_ERROR "expression_error"
/* The error code of a config that is invalid once rendered. */
#define STEPS_INVALID_CONFIG "invalid_config"

/* Convenience: fill a FAIL outcome. */
void steps_fail(struct step_outcome *out, const char *code, const char *fmt, ...) DUR_PRINTF(3, 4);

#endif
