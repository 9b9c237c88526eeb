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
    STEP_OUT_IO,       /* hand io_request to the I/O thread (steps_io_submit); its outcome
                          comes back through the done callback */
    STEP_OUT_CHILD,    /* start a child run: data is {"workflow": NAME, "input": {...}}; the
                          step ends with the child (engine.c) */
};

struct step_io_request; /* http.c: one HTTP request to make */

struct step_outcome {
    enum step_outcome_kind kind;
    json_t *output;       /* DONE, DECIDE: owned by the outcome (the caller takes it) */
    int64_t timer_ms;     /* TIMER */
    int64_t wake_at_ms;   /* WAIT: Unix ms, 0 for none */
    json_t *data;         /* WAIT: members for the step_waiting event; CHILD: the child;
                             owned, or NULL */
    struct step_io_request *io_request; /* IO: owned by the outcome (the caller takes it) */
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
    /* start() has no effect outside its outcome and reads only what its call
     * holds: the engine may ask it before the attempt's START has committed
     * and commit the START and the answer in one transaction. Not so for a
     * type that acts on the world (http_request) or starts runs (workflow). */
    bool pure_start;
    void (*start)(const struct step_call *c, struct step_outcome *out);
    void (*timer)(const struct step_call *c, struct step_outcome *out); /* may be NULL */
};

extern const struct step_type steps_condition_type; /* expr_steps.c */
extern const struct step_type steps_transform_type;
extern const struct step_type steps_log_type;
extern const struct step_type steps_delay_type; /* wait_steps.c */
extern const struct step_type steps_approval_type;
extern const struct step_type steps_workflow_type;

extern const struct step_type steps_http_type; /* http.c */

/* The vtable for a kind, or NULL when the kind is not implemented. */
const struct step_type *steps_type_for(enum step_kind kind);

/* ---- the I/O thread (http.c) ----
 *
 * One thread (`durable-io`) runs libcurl's multi interface for every
 * http_request attempt in flight. The scheduler hands it requests with
 * steps_io_submit (a queue guarded by io->mu; the thread is woken with
 * curl_multi_wakeup), never waiting on it; when a request ends the thread
 * calls the done callback with the request's tag and its outcome (DONE with
 * {status, headers, body}, or FAIL "http_error" / "http_status"); the
 * engine's callback posts it to the scheduler's inbox. Nothing else is
 * shared: the multi handle and the transfers are the I/O thread's alone. */
struct step_io;

/* Identifies the attempt a request belongs to; copied through unchanged. */
struct step_io_tag {
    char run_id[ID_MAX];
    size_t step_idx;
    uint64_t run_gen;
    uint32_t gen;
};

/* Called on the I/O thread; takes out->output (set it to NULL or take it).
 * Must not block (post to a queue). */
typedef void (*step_io_done_fn)(void *ud, const struct step_io_tag *tag, struct step_outcome *out);

#define STEPS_HTTP_MAX_BODY   ((size_t)1024 * 1024) /* response bodies, bytes */
#define STEPS_HTTP_TIMEOUT_MS 30000                 /* default timeout_seconds */

/* Starts the I/O thread. DURABLE_ENOMEM when it cannot. */
durable_code steps_io_start(step_io_done_fn done, void *ud, struct step_io **out,
                            durable_error *err);
/* Takes ownership of req (freed even when stopping). Any thread. */
void steps_io_submit(struct step_io *io, struct step_io_request *req,
                     const struct step_io_tag *tag);
/* Aborts what is in flight (no callback for it), joins the thread, frees
 * io. Accepts NULL. */
void steps_io_stop(struct step_io *io);
void steps_io_request_free(struct step_io_request *req); /* accepts NULL */

/* The error code of a failed expression (runtime jq error, limits). */
#define STEPS_EXPRESSION_ERROR "expression_error"
/* The error code of a config that is invalid once rendered. */
#define STEPS_INVALID_CONFIG "invalid_config"

/* Convenience: fill a FAIL outcome. */
void steps_fail(struct step_outcome *out, const char *code, const char *fmt, ...) DUR_PRINTF(3, 4);

#endif
