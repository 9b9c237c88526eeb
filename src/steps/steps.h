/*
 * steps.h - step types: one small vtable per type, one file per type.
 *
 * The scheduler calls start() when a step attempt's start has committed. A
 * type answers with an outcome: done at once (output), failed (error code and
 * message), or "call my timer() at now + timer_ms" - the way a simulated task
 * waits without a thread, and the way delays will wait. Types that do I/O
 * (http_request) or wait for a person (approval) will add asynchronous
 * outcomes. Types know nothing of the store: the engine commits what they
 * answer. All calls happen on the scheduler thread and must not block.
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
};

struct step_outcome {
    enum step_outcome_kind kind;
    json_t *output;       /* DONE: owned by the outcome (the caller takes it) */
    int64_t timer_ms;     /* TIMER */
    char error_code[32];  /* FAIL: "random_failure", "timeout", ... */
    char error_msg[256];  /* FAIL */
};

/* What a step sees of its run. Borrowed for the call. */
struct step_call {
    const struct plan_step *step;
    const char *run_id;
    int attempt;
    const char *idempotency_key;
};

struct step_type {
    enum step_kind kind;
    void (*start)(const struct step_call *c, struct step_outcome *out);
    void (*timer)(const struct step_call *c, struct step_outcome *out); /* may be NULL */
};

/* The vtable for a kind, or NULL when the kind is not implemented. */
const struct step_type *steps_type_for(enum step_kind kind);

/* Convenience: fill a FAIL outcome. */
void steps_fail(struct step_outcome *out, const char *code, const char *fmt, ...) DUR_PRINTF(3, 4);

#endif
