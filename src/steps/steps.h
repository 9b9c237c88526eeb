/*
 * steps.h - step types: each is a durable_step_type (durable.h), described
 * in its own file next to its behaviour and its config's check, and
 * registered by the engine at durable_open through the same call a user
 * type is (durable_step_type_register); steps_builtin lists them.
 *
 * A definition's step resolves its type by name at parse time (def layer,
 * through def_options.find_type: the engine's registry, or
 * steps_builtin_find where there is no engine, as in durable_validate) and
 * keeps it in plan_step.step_type; check() validates the config then, with
 * located diagnostics (def.h's def_check_*).
 *
 * The scheduler calls start() when a step attempt's start has committed. A
 * type answers with an outcome: done at once (output), failed (error code and
 * message), "call my timer() at now + timer_ms" (the way a simulated task
 * waits without a thread), "wait durably" (the step becomes `waiting` in the
 * store, with its wake-up time, before anything else happens: delays and
 * approvals; timer() is called at the wake-up time, also after a restart),
 * or "decided" (an approval's timeout, committed as a decision). Types know
 * nothing of the store: the engine commits what they answer. Every call of
 * a built-in type happens on the scheduler thread and must not block; a
 * program's blocking type (durable_step_type.blocking) is called on the
 * step pool's threads instead, and answered from any thread (pool.c).
 *
 * A call is a durable_step_call: the public accessors (durable.h) give a
 * user type its ids and config as text, and durable_step_done/fail fill its
 * outcome; the built-in types read the struct below directly (the rendered
 * config as json_t, the run context, the parsed plan step) and may answer
 * with every outcome kind.
 *
 * Files: steps.c (the built-in table, calls, the public call accessors),
 * pool.c (the step worker pool and pooled calls),
 * task.c, http.c (http_request, and the I/O thread), delay.c, approval.c,
 * workflow.c, log.c, map.c (its config; engine/map.c runs the items),
 * expr_steps.c (condition and transform: one behaviour,
 * one schema), data_transform.c and conditional.c (the older orchestrator's
 * shapes, compiled into the same kind of expression).
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
    STEP_OUT_NONE,     /* not answered (yet): steps_call makes it a failure */
};

struct step_io_request; /* http.c: one HTTP request to make */

struct step_outcome {
    enum step_outcome_kind kind;
    json_t *output;     /* DONE, DECIDE: owned by the outcome (the caller takes it) */
    int64_t timer_ms;   /* TIMER */
    int64_t wake_at_ms; /* WAIT: Unix ms, 0 for none */
    json_t *data;       /* WAIT: members for the step_waiting event; CHILD: the child;
                           owned, or NULL */
    struct step_io_request *io_request; /* IO: owned by the outcome (the caller takes it) */
    char error_code[32];                /* FAIL: "random_failure", "timeout", ... */
    char error_msg[256];                /* FAIL */
};

/* What a step sees of its run: one call of a type's start or timer, on
 * the scheduler thread, borrowed for the call; or a pooled call (is_pooled:
 * a heap object of pool.c, with step NULL, config NULL and config_text
 * set), valid until answered. */
struct durable_step_call {
    const struct plan_step *step; /* NULL in a pooled call */
    const char *step_id;
    const char *run_id;
    int attempt;
    const char *idempotency_key;
    json_t *config;           /* the step's config with its {{ }} templates rendered for this
                                 attempt (step->config itself when it has none) */
    json_t *ctx;              /* the run context {input, steps, run} of SPEC §3; NULL unless
                                 the step has an expression (step->expr) */
    struct step_outcome *out; /* the answer: set by the type (steps_call inits it) */
    char *config_text;        /* durable_step_call_config's, made on demand; owned */
    bool is_pooled;           /* a blocking type's call (pool.c): answered through
                                 steps_pool_answer, from any thread */
};

/* The built-in types, in registration order, NULL-terminated. Each is
 * defined in its own file. */
extern const durable_step_type *const steps_builtin[];
extern const durable_step_type steps_task_type;      /* task.c */
extern const durable_step_type steps_http_type;      /* http.c */
extern const durable_step_type steps_delay_type;     /* delay.c */
extern const durable_step_type steps_approval_type;  /* approval.c */
extern const durable_step_type steps_condition_type; /* expr_steps.c */
extern const durable_step_type steps_transform_type; /* expr_steps.c */
extern const durable_step_type steps_log_type;       /* log.c */
extern const durable_step_type steps_workflow_type;  /* workflow.c */
/* The older orchestrator's shapes, compiled into an expression at parse time. */
extern const durable_step_type steps_data_transform_type; /* data_transform.c */
extern const durable_step_type steps_conditional_type;    /* conditional.c */
/* Durable waits for a signal sent to the run. */
extern const durable_step_type steps_wait_signal_type; /* wait_signal.c */
/* A step template run once per element of a list (map.c; run by engine/map.c). */
extern const durable_step_type steps_map_type;

#define STEPS_MAP_CONCURRENCY     8       /* max_concurrency when absent or blank */
#define STEPS_MAP_MAX_CONCURRENCY 1000    /* its bound */
#define STEPS_MAP_MAX_ITEMS       1000000 /* a list longer fails the step */

/* What a map step's check keeps (plan_step.type_data). */
struct steps_map {
    struct plan_step *tmpl; /* the step run per item (def_check_sub_step) */
    int max_concurrency;    /* items in flight at most */
    bool collect;           /* on_item_failure "collect" (else fail fast) */
};

/* The start of the types whose output is their expression's value on the
 * run context (plan_step.expr): condition, transform, and the two above
 * (expr_steps.c). */
void steps_eval_start(durable_step_call *c, void *ud);
/* Member key of t (the check's path points at t) read as a field path, "a"
 * or "a.b" (key b of the object at a): the keys as a JSON array text, to
 * free(), for jq's getpath; NULL (reported at t.KEY) when absent or not a
 * field name (data_transform.c). */
char *steps_field_path(durable_step_check *chk, const json_t *t, const char *key);

/* def_find_type_fn over steps_builtin (ud unused): for parses with no
 * engine, such as durable_validate. */
const durable_step_type *steps_builtin_find(void *ud, const char *name);
/* The i-th built-in type's name, NULL past the last (def_type_name_fn). */
const char *steps_builtin_name(void *ud, size_t i);

/* Calls t's start (or timer, when is_timer) with c (its out set by the
 * caller), then releases what the call made on demand. An unanswered call
 * is a failure "no_answer"; a timer call to a type without a timer is
 * "unsupported". */
void steps_call(const durable_step_type *t, durable_step_call *c, bool is_timer);

/* ---- the I/O thread (http.c) ----
 *
 * One thread (`durable-io`) runs libcurl's multi interface for every
 * http_request attempt in flight. The scheduler hands it requests with
 * steps_io_submit (a queue guarded by io->mu; the thread is woken with
 * curl_multi_wakeup), never waiting on it; when a request ends the thread
 * calls the done callback with the request's tag and its outcome (DONE with
 * {status, headers, body}, or FAIL "http_error" / "http_status" /
 * "http_forbidden", a host outside the allow-list); the
 * engine's callback posts it to the scheduler's inbox. Nothing else is
 * shared: the multi handle and the transfers are the I/O thread's alone. */
struct step_io;

/* Identifies the attempt a request belongs to; copied through unchanged. */
struct step_io_tag {
    char run_id[ID_MAX];
    size_t step_idx;
    uint64_t run_gen;
    uint32_t gen;
    size_t item;       /* a map step's item (engine/map.c): its index + 1, 0 for none */
    uint32_t item_gen; /* that item's attempt generation */
};

/* Called on the I/O thread; takes out->output (set it to NULL or take it).
 * Must not block (post to a queue). */
typedef void (*step_io_done_fn)(void *ud, const struct step_io_tag *tag, struct step_outcome *out);

#define STEPS_HTTP_MAX_BODY   ((size_t)1024 * 1024) /* response bodies, bytes */
#define STEPS_HTTP_TIMEOUT_MS 30000                 /* default timeout_seconds */

/* Starts the I/O thread. http_allow (copied; NULL: any host) is the
 * comma-separated hosts requests may reach (durable_options.http_allow):
 * a request to another fails "http_forbidden" without a connection.
 * DURABLE_ENOMEM when it cannot. */
durable_code steps_io_start(step_io_done_fn done, void *ud, const char *http_allow,
                            struct step_io **out, durable_error *err);
/* Takes ownership of req (freed even when stopping). Any thread. */
void steps_io_submit(struct step_io *io, struct step_io_request *req,
                     const struct step_io_tag *tag);
/* Aborts what is in flight (no callback for it), joins the thread, frees
 * io. Accepts NULL. */
void steps_io_stop(struct step_io *io);
void steps_io_request_free(struct step_io_request *req); /* accepts NULL */

/* ---- the step worker pool (pool.c) ----
 *
 * A blocking type's start() (durable_step_type.blocking) is called on one
 * of the pool's threads (`durable-step`), made on demand up to its size;
 * while all are busy a call waits in the pool's FIFO. The call is on the
 * heap and stays valid after start() returns, until the type answers it
 * (from any thread): the answer goes to the done callback with the call's
 * tag, like an HTTP request's outcome. The engine holds each call until it
 * has the answer or gives up on it (steps_pool_release: the type's cancel()
 * is called if start() was and no answer came; later answers are dropped). */
struct step_pool;

#define STEPS_POOL_THREADS 8 /* durable_options.step_threads's default */

/* A pool of at most max_threads threads (0: STEPS_POOL_THREADS); none is
 * started yet. done is called on the answering thread, under the call's
 * lock: it must not block (post to a queue). */
struct step_pool *steps_pool_new(step_io_done_fn done, void *ud, size_t max_threads);
/* Queues type's start() for a copy of proto's ids (step_id, attempt,
 * idempotency_key; run_id comes from tag) with config_text (copied). The
 * returned call is the engine's until steps_pool_release. Scheduler thread. */
durable_step_call *steps_pool_submit(struct step_pool *p, const durable_step_type *type,
                                     const durable_step_call *proto, const char *config_text,
                                     const struct step_io_tag *tag);
/* The engine is done with c (accepts NULL): if unanswered, it is cancelled
 * (its type's cancel() called, when start() was, on this thread) and its
 * answer will be dropped. */
void steps_pool_release(durable_step_call *c);
/* durable_step_done/fail of a pooled call: o (its output taken) goes to
 * the done callback if c is still pending. Any thread. */
void steps_pool_answer(durable_step_call *c, struct step_outcome *o);
/* Lets the threads finish what they are running (calls still queued are
 * released ones: skipped), joins them and frees p. Accepts NULL. */
void steps_pool_free(struct step_pool *p);

/* The error code of a failed expression (runtime jq error, limits). */
#define STEPS_EXPRESSION_ERROR "expression_error"
/* The error code of a config that is invalid once rendered. */
#define STEPS_INVALID_CONFIG   "invalid_config"

/* config[key] as seconds in [0, DEF_MAX_SECONDS] (> 0 when positive);
 * false, with out a FAIL invalid_config, when it is not. */
bool steps_config_seconds(const durable_step_call *c, const char *key, bool positive,
                          double *seconds, struct step_outcome *out);
/* The wall clock now as RFC 3339, in buf. Returns buf. */
const char *steps_now_text(char buf[32]);

/* Convenience: fill a FAIL outcome. */
void steps_fail(struct step_outcome *out, const char *code, const char *fmt, ...) DUR_PRINTF(3, 4);

#endif
