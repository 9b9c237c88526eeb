/*
 * durable.h - the public C API of libdurable, the durable workflow engine.
 *
 * A `durable` handle is one engine over one store (a SQLite file). It owns a
 * writer thread (group commit) and a scheduler thread; every function below
 * may be called from any thread unless it says otherwise. Every state change
 * of a run is committed to the store before anything acts on it, so a crash
 * at any instant loses nothing: reopening the store resumes unfinished runs.
 *
 * Conventions: functions return a durable_code (DURABLE_OK is 0) and take a
 * `durable_error *err` last, which may be NULL; on failure it holds the code
 * and a lowercase message. Strings returned through `char **out` are owned by
 * the caller and released with durable_free(). Out-parameters are written
 * only on success. Input strings are borrowed for the call.
 */
#ifndef DURABLE_DURABLE_H
#define DURABLE_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DURABLE_API __attribute__((visibility("default")))

/* Status codes. Append only: values never change. */
typedef enum durable_code {
    DURABLE_OK = 0,
    DURABLE_EINVAL = 1,           /* invalid argument or definition (HTTP 400/422) */
    DURABLE_ENOMEM = 2,           /* out of memory */
    DURABLE_ETOOBIG = 3,          /* input over a hard limit (HTTP 413) */
    DURABLE_ENOTFOUND = 4,        /* no such workflow, run, step or order (HTTP 404) */
    DURABLE_ECONFLICT = 5,        /* the current state forbids it (HTTP 409) */
    DURABLE_EIO = 6,              /* the database or the file system failed (HTTP 503) */
    DURABLE_ESYNTAX = 7,          /* malformed JSON or YAML (HTTP 400) */
    DURABLE_EUNSUPPORTED = 8,     /* a feature that does not exist yet */
    DURABLE_ECLOSED = 9,          /* the engine is shutting down (HTTP 503) */
    DURABLE_ETIMEOUT = 10,        /* a wait ran out of time */
    DURABLE_EACTION = 11,         /* a business action refused (wrong order status) */
    DURABLE_ESTEP = 12,           /* a step attempt failed */
    DURABLE_EFENCED = 13,         /* another node executes the run now (PostgreSQL cluster) */
    DURABLE_ESUSPENDED = 14,      /* a workflow function must return now: its run waits */
    DURABLE_ENONDETERMINISM = 15, /* a workflow function's calls do not match its run's history */
} durable_code;

#define DURABLE_ERROR_MSG_SIZE 256

typedef struct durable_error {
    durable_code code;
    char msg[DURABLE_ERROR_MSG_SIZE];
} durable_error;

/* Short text for a code ("invalid argument"). Static storage. */
DURABLE_API const char *durable_strerror(durable_code code);

/* The library version ("0.1.0"). Static storage. */
DURABLE_API const char *durable_version(void);

/* Releases a string or buffer returned by this API. Accepts NULL. */
DURABLE_API void durable_free(void *p);

/* Called when an allocation fails; the default prints and aborts. The hook
 * must not return. */
typedef void (*durable_oom_fn)(size_t size);
DURABLE_API void durable_set_oom_handler(durable_oom_fn fn);

/* Log levels and the logging hook. The library never prints on its own; by
 * default messages at WARN and above go to stderr. */
typedef enum durable_log_level {
    DURABLE_LOG_DEBUG = 0,
    DURABLE_LOG_INFO = 1,
    DURABLE_LOG_WARN = 2,
    DURABLE_LOG_ERROR = 3,
} durable_log_level;
typedef void (*durable_log_fn)(durable_log_level level, const char *msg, void *ud);
DURABLE_API void durable_set_log_handler(durable_log_fn fn, void *ud, durable_log_level min);

/* ---- opening a store ------------------------------------------------- */

typedef struct durable durable;

typedef enum durable_durability {
    DURABLE_DURABILITY_FULL = 0,    /* fsync every commit: survives a power cut */
    DURABLE_DURABILITY_PROCESS = 1, /* survives a process crash, not a power cut */
} durable_durability;

typedef enum durable_recovery {
    DURABLE_RECOVER_ALL = 0,  /* resume every unfinished run at open (server) */
    DURABLE_RECOVER_NONE = 1, /* resume runs only through durable_run_start (one-shot CLI) */
} durable_recovery;

typedef struct durable_options {
    const char *db_path;           /* SQLite file; NULL means "durable.db" */
    durable_durability durability; /* default FULL */
    durable_recovery recovery;     /* default RECOVER_ALL */
    /* The hosts http_request steps may reach, comma-separated ("api.example.com,
     * 10.0.0.5,[::1]"; names as written in URLs, compared without case, no port):
     * a request to any other host fails with "http_forbidden" and makes no
     * connection. NULL: any host; "": none. The defence against a definition
     * written to reach internal services from the engine's network. */
    const char *http_allow;
    /* On a database shared by several nodes (PostgreSQL): this node's name (NULL: "HOSTNAME:PID"; a
     * restart under the same name takes its runs back at once) and its lease in ms (0: 10,000),
     * after which the other nodes take its runs over. */
    const char *node_id;
    int64_t lease_ms;
    /* The most threads that run blocking step types' start() at once
     * (durable_step_type.blocking); 0: 8; at most 1024. Made as needed. */
    int step_threads;
    /* Retention: finished runs (completed, failed, cancelled) whose finish is
     * older than this many ms are deleted with their steps, events and
     * signals, in batches, by a pass of the engine every
     * DURABLE_RETAIN_PASS_MAX_MS at most; 0: kept for ever. A workflow
     * version's own window (retain_finished in its definition) applies to
     * its runs instead. Only an engine that resumes runs
     * (DURABLE_RECOVER_ALL) deletes. */
    int64_t retain_finished_ms;
    /* Rate limits per step type, "TYPE=N[,TYPE=N...]": the first attempts of
     * the steps of type TYPE, over every run and workflow, start at most N
     * per second (N above 0, at most 1000; 0.5 is one every two seconds). A
     * step's own rate_limit wins over its type's. TYPE is a type registered
     * by durable_open (the built-in ones). NULL or "": none. */
    const char *rate_limits;
} durable_options;

/* How many finished runs one transaction of retention or purge deletes at
 * most: other commits go between two batches. */
#define DURABLE_PURGE_BATCH        500
/* The longest time between two retention passes. */
#define DURABLE_RETAIN_PASS_MAX_MS 60000

/* Opens (creating and migrating as needed) the store and starts the engine's
 * threads. Runs left unfinished by a crash are resumed per opts->recovery.
 * opts may be NULL for defaults. Returns NULL and fills err on failure. */
DURABLE_API durable *durable_open(const durable_options *opts, durable_error *err);

/* Stops accepting work, commits every transition already queued, joins the
 * engine's threads and closes the store. Runs still in flight stay
 * unfinished in the store and resume at the next open. Accepts NULL. */
DURABLE_API void durable_close(durable *d);

/* ---- definitions ------------------------------------------------------ */

/* Parses, validates and stores a definition (JSON text). A name seen before
 * with different content becomes its next version; identical content returns
 * the latest version with *out_created false. On an invalid definition the
 * code is DURABLE_EINVAL (or DURABLE_ESYNTAX) and err->msg holds the first
 * located error; durable_validate() lists all of them.
 * OUT: *out_workflow_id (caller frees), *out_version, *out_created (each may be NULL). */
DURABLE_API durable_code durable_workflow_register(durable *d, const char *text,
                                                   size_t text_len,        /* the definition */
                                                   char **out_workflow_id, /* OUT, may be NULL */
                                                   int *out_version,       /* OUT, may be NULL */
                                                   bool *out_created,      /* OUT, may be NULL */
                                                   durable_error *err);

/* Validates a definition without a store. Returns DURABLE_OK when valid.
 * OUT: *out_report, owned, one line per error or warning
 * ("steps[2].depends_on[0]: unknown step \"chrage\" (did you mean \"charge\"?)"),
 * possibly empty; written on success and on EINVAL/ESYNTAX. */
DURABLE_API durable_code durable_validate(const char *text, size_t text_len, char **out_report,
                                          durable_error *err);

/* What only d can tell about a valid definition, in durable_validate's
 * report format: one warning per `workflow` step naming a workflow that d
 * has not registered ("warning: steps[1].config.workflow: no workflow \"x\"
 * is registered yet"); a name written as a template, or the definition's
 * own name, is not checked. OUT: *out_report, owned, possibly empty. */
DURABLE_API durable_code durable_workflow_warnings(durable *d, const char *text, size_t text_len,
                                                   char **out_report, durable_error *err);

/* ---- step types -------------------------------------------------------- */

/* A step type is registered, not built in: every type the engine knows
 * (task, http_request, delay, approval, wait_signal, map, condition,
 * transform, log, workflow, data_transform, conditional) is a
 * durable_step_type given to durable_step_type_register() at durable_open,
 * and a program adds its own the same way. A definition's step names its type by `type` (absent or
 * blank: `task`); a name that no registered type has makes the definition
 * invalid, with a suggestion.
 *
 * An attempt is a durable_step_call, answered once with durable_step_done()
 * or durable_step_fail(). Two kinds of type:
 *
 * - Not blocking (the default): start() is called on the engine's
 *   scheduler thread, must not block, and answers before returning; the
 *   call is valid only during start(). Left unanswered, the attempt fails
 *   with code "no_answer".
 *
 * - Blocking (.blocking = true): start() is called on one of the engine's
 *   step threads (at most durable_options.step_threads, default 8, made as
 *   needed) and may block (a database query, a slow API). It may also
 *   return without answering and answer later from any thread: the call
 *   stays valid until it is answered, and must be answered exactly once,
 *   even after cancel() (that answer is then ignored; it is what frees the
 *   call). While every step thread is busy, further attempts of blocking
 *   types wait in a queue (in memory, FIFO) for one; built-in steps never
 *   use these threads, and an attempt answered later from another thread
 *   holds none while it waits. An attempt's timeout_seconds counts from its
 *   start, so the time spent waiting for a thread counts too.
 *
 * Either way, the idempotency key is the same for every attempt of the
 * step and after a restart: a call unanswered when the process stops (a
 * crash, a kill) is started again, with that key, when the engine opens
 * again and resumes the run. */
typedef struct durable_step_call durable_step_call;
/* One step's config being validated (durable_validate, registration, or a
 * stored definition loaded again); valid only during check(). */
typedef struct durable_step_check durable_step_check;

typedef struct durable_step_type {
    /* 1 to 64 of [a-z0-9_], starting with a letter; unique per engine. */
    const char *name;
    /* Checks a step's config and reports problems with
     * durable_step_check_error() (they make the definition invalid) or
     * durable_step_check_warning(). NULL accepts any config. Called on the
     * thread that parses the definition. Whatever the check, `{{ }}`
     * templates in the config are compiled and rendered for each attempt:
     * the calls see the rendered config. */
    void (*check)(durable_step_check *chk, void *ud);
    /* An attempt begins (required). */
    void (*start)(durable_step_call *call, void *ud);
    /* The timer a built-in type asked for has fired; NULL when the type
     * never asks for one (user types cannot yet). */
    void (*timer)(durable_step_call *call, void *ud);
    /* A blocking type's call (started, unanswered) is given up: its run
     * was cancelled or failed, its attempt timed out, or the engine is
     * closing (durable_close waits for running start() calls to return, so
     * a start() that blocks should return when cancelled). Called once, on
     * the scheduler's thread or the one closing the engine, possibly while
     * start() still runs on another: it must not block (signal the work to
     * stop). Answers from then on are ignored, but the call must still be
     * answered once. May be NULL. Never called for a type that is not
     * blocking. */
    void (*cancel)(durable_step_call *call, void *ud);
    /* start() answers from its call alone and has no effect outside its
     * answer, so the engine may call it before the attempt's start has
     * committed and commit both at once (one commit per step instead of
     * two). False for a type that acts on the world (an HTTP request). */
    bool answers_at_once;
    /* start() runs on a step thread, may block, and may answer later from
     * any thread (above). Not with answers_at_once nor timer. */
    bool blocking;
    void *ud; /* passed to every call */
} durable_step_type;

/* Registers a step type: the description is copied (its name too), ud is
 * kept as given. DURABLE_EINVAL for a name that is not valid, a NULL start,
 * or a blocking type with a timer or answers_at_once; DURABLE_ECONFLICT
 * when the name is registered already (the built-in types included). Any
 * thread. A stored workflow's steps are resolved when its plan is first
 * loaded (at durable_open for the runs it resumes, at
 * durable_workflow_register or the first start otherwise) and stay so while
 * the engine is open. A run that durable_open could not resume because its
 * definition names a type not registered yet is resumed when a type is
 * registered: so a program opens the engine, registers its types, and its
 * unfinished runs go on (as with durable_workflow_fn_register). */
DURABLE_API durable_code durable_step_type_register(durable *d, const durable_step_type *type,
                                                    durable_error *err);

/* ---- business actions ---------------------------------------------------
 * A business action changes the program's own state in the transaction
 * that completes the step naming it (a task's "action" field), so that a
 * step's effect on that state happens exactly once, whatever crashes. It
 * reads and writes an engine-owned key/value table through the transaction
 * only (durable_action_get, durable_action_put) and may refuse
 * (durable_action_refuse): the step then fails with code "action_failed"
 * and the message, and none of the action's writes is kept. The history
 * gets an `action_applied` event {action} with the step's completion. */
typedef struct durable_action_tx durable_action_tx;

/* What the action is about; strings valid until fn returns. */
typedef struct durable_action_call {
    const char *action; /* the registered name */
    const char *run_id;
    const char *step_id;
    const char *idempotency_key; /* "RUN_ID/STEP_ID" */
    const char *output_json;     /* the step's output */
    const char *input_json;      /* the run's input */
} durable_action_call;

/* Called on the engine's writer thread inside the open transaction: it
 * holds up every commit while it runs, so it must be quick (no network, no
 * waiting) and must not call the engine. Calls of the same step may happen
 * again only if the transaction did not commit. */
typedef void (*durable_action_fn)(durable_action_tx *tx, const durable_action_call *call, void *ud);

/* Registers an action: name as a built-in's (1 to 128 letters, digits,
 * '_', '.' or '-'), fn called with ud. DURABLE_EINVAL for a bad name or a NULL
 * fn; DURABLE_ECONFLICT when a built-in or registered action has the name.
 * Any thread; a run resumed by durable_open whose definition names an
 * action not registered yet waits for it, as for step types. */
DURABLE_API durable_code durable_action_register(durable *d, const char *name, durable_action_fn fn,
                                                 void *ud, durable_error *err);
/* In fn: the value of key (1 to 256 bytes) as JSON text in *out_value_json
 * (free with durable_free), NULL when the key has none. */
DURABLE_API durable_code durable_action_get(durable_action_tx *tx, const char *key,
                                            char **out_value_json);
/* In fn: key's value becomes value_json (any JSON value). DURABLE_EINVAL
 * for a bad key or text that is not JSON: the step fails as if refused. */
DURABLE_API durable_code durable_action_put(durable_action_tx *tx, const char *key,
                                            const char *value_json);
/* In fn: refuses the action with message (the step's error). */
DURABLE_API void durable_action_refuse(durable_action_tx *tx, const char *message);
/* Any thread: the committed value of key, as durable_action_get. */
DURABLE_API durable_code durable_kv_get(durable *d, const char *key, char **out_value_json,
                                        durable_error *err);

/* The step's config as compact JSON text; valid until check() returns. */
DURABLE_API const char *durable_step_check_config(durable_step_check *chk);
/* Reports a problem at `path`, relative to the step's config ("url",
 * "headers.accept"; "" or NULL for the config itself): the definition
 * is invalid and the report says "steps[2].config.url: MESSAGE". */
DURABLE_API void durable_step_check_error(durable_step_check *chk, const char *path,
                                          const char *message);
/* The same as a warning: the definition stays valid. */
DURABLE_API void durable_step_check_warning(durable_step_check *chk, const char *path,
                                            const char *message);

/* What the call is about. Strings are valid as long as the call is: until
 * start() returns, or for a blocking type until the call is answered. */
DURABLE_API const char *durable_step_call_run_id(const durable_step_call *call);
DURABLE_API const char *durable_step_call_step_id(const durable_step_call *call);
DURABLE_API int durable_step_call_attempt(const durable_step_call *call); /* from 1 */
/* "RUN_ID/STEP_ID": the same for every attempt of the step, also after a
 * restart, so that an effect outside can be made once. */
DURABLE_API const char *durable_step_call_idempotency_key(const durable_step_call *call);
/* The step's config for this attempt, templates rendered, as compact JSON. */
DURABLE_API const char *durable_step_call_config(durable_step_call *call);

/* Answers the call: the attempt completed with output (JSON text of any
 * value; NULL is null). Output that is not JSON fails the attempt
 * (code "invalid_output"). A call is answered once: a second answer made
 * while the call is still valid (inside start()) is ignored; a blocking
 * type's call is freed by its answer, so it must not be used after it.
 * Any thread. */
DURABLE_API void durable_step_done(durable_step_call *call, const char *output_json);
/* Answers the call: the attempt failed with an error code (such as
 * "card_declined", cut at 31 bytes) and a message (cut at 255); the step's
 * retry policy decides what follows. */
DURABLE_API void durable_step_fail(durable_step_call *call, const char *code, const char *message);

/* ---- code-first workflows (durable steps in C) ------------------------- */

/* A workflow can be ordinary C code: a function registered by name and
 * version, started like any run (durable_start), whose steps are calls to
 * durable_step(). Each step's result is committed before durable_step
 * returns it; when the function runs again (after a crash, a restart or a
 * retry) a step already recorded returns its recorded result without
 * running. A code-first run is a run like any other: same tables, HTTP API,
 * events and UI, its steps (type "code") appearing as they are reached.
 *
 * The function runs on one of the engine's workflow threads (never the
 * scheduler's), from the top, every time the run is executed: at the
 * start, and again after a restart or a retry. So it must be
 * deterministic: given the same step results it makes the same
 * durable_step calls in the same order with the same names, and it acts on
 * the world only inside step functions. A step function must not call
 * durable_* functions with the context. The context is used only on the
 * thread that runs the function, until the function returns.
 *
 * Step ids: the first call of a name is that name ("create_record"); later
 * calls of the same name in the same execution get "name#2", "name#3", ...
 * (a loop), counted on the workflow's own thread in call order. At call
 * position p, a recorded step whose id differs stops the run: durable_step
 * returns DURABLE_ENONDETERMINISM without running anything, and the run
 * fails with an error starting "nondeterminism: " that names both ids (so
 * does a function that returns while the history has further steps);
 * durable_run_retry executes it again (with the fixed code). */
typedef struct durable_ctx durable_ctx;

/* The workflow: input_json is the run's input object as JSON text, valid
 * during the call. Returns DURABLE_OK with *out_output_json (JSON text
 * allocated with malloc or returned by durable_step, freed by the engine;
 * NULL means null) to complete the run, or an error code (in err) to fail
 * it. Every code a durable call returns other than DURABLE_OK must be
 * returned at once (DURABLE_TRY). */
typedef durable_code (*durable_workflow_fn)(durable_ctx *ctx, const char *input_json,
                                            char **out_output_json, durable_error *err);

/* What a step function is running. Strings are valid during the call. */
typedef struct durable_step_info {
    const char *run_id;
    const char *step_id;         /* "name" or "name#N" */
    const char *idempotency_key; /* "RUN_ID/STEP_ID": the same for every attempt, also
                                    after a crash, so that an effect outside can be made once */
    int attempt;                 /* from 1 */
} durable_step_info;

/* A step's side effect. Returns DURABLE_OK with *out_json (JSON text
 * allocated with malloc, freed by the engine; NULL means null, at most
 * 1 MiB), or an error code with err filled: the step fails (recorded, the
 * run fails; durable_run_retry runs the step again). */
typedef durable_code (*durable_step_fn)(const durable_step_info *info, void *arg, char **out_json,
                                        durable_error *err);

/* Returns the code of a durable call at once when it is not DURABLE_OK. */
#define DURABLE_TRY(call)                   \
    do {                                    \
        durable_code durable_try_ = (call); \
        if (durable_try_ != DURABLE_OK)     \
            return durable_try_;            \
    } while (0)

/* Registers fn as version `version` (>= 1) of workflow `name` (1 to 64 of
 * [A-Za-z0-9_.-]) and stores its definition ({"name", "code_version"}) as
 * a workflow version like a JSON definition. Runs are pinned to the version
 * they started under: a run of version 2 is executed only by a process that
 * registered version 2 of the name; until then it waits (it is not
 * failed). Call it every time the program starts, after durable_open:
 * registration resumes this version's unfinished runs (re-executing fn from
 * the top; recorded steps return at once). ud is kept as given and
 * returned by durable_ctx_userdata. DURABLE_ECONFLICT when this name and
 * version are registered already. Any thread. */
DURABLE_API durable_code durable_workflow_fn_register(durable *d, const char *name, int version,
                                                      durable_workflow_fn fn, void *ud,
                                                      durable_error *err);

/* Starts a run of the latest version of workflow `name` with idempotency
 * key `key` (may be NULL) and input_json (a JSON object, or NULL for {}):
 * durable_run_start, so a key that started a run already returns that run
 * (resuming it if it is unfinished). OUT: *out_run_id (caller frees). */
DURABLE_API durable_code durable_start(durable *d, const char *name, const char *key,
                                       const char *input_json, char **out_run_id,
                                       durable_error *err);

/* Inside a workflow function: the step `name` (1 to 64 of [A-Za-z0-9_.-]).
 * Recorded as completed: returns its output at once, fn is not called.
 * Otherwise fn(info, arg, ...) runs on this thread and its result is
 * committed before this returns. OUT: *out_json (caller frees; may be
 * NULL to ignore the output). Returns DURABLE_OK; DURABLE_ESTEP when the
 * step failed (now or in the record); DURABLE_ENONDETERMINISM (see above);
 * DURABLE_ECONFLICT when the run was cancelled meanwhile; DURABLE_ECLOSED
 * when the engine is closing (the run resumes at the next open);
 * DURABLE_ESUSPENDED when this or an earlier call suspended the run
 * (durable_sleep, durable_child, a retry's backoff). After a
 * code other than DURABLE_OK, every later durable call of this execution
 * returns it again and runs nothing. */
DURABLE_API durable_code durable_step(durable_ctx *ctx, const char *name, durable_step_fn fn,
                                      void *arg, char **out_json, durable_error *err);

/* A step's retry policy (SPEC §4 for JSON steps, in milliseconds): a
 * failing fn is tried again up to max_attempts times in all; after failed
 * attempt n the step waits min(initial_backoff_ms * backoff_factor^(n-1),
 * max_backoff_ms). Each failed attempt is recorded (step status
 * "retrying", its error, a retry_scheduled event; the step's attempt counts
 * up), and the wait is a durable sleep: the call returns
 * DURABLE_ESUSPENDED, the run waits holding no thread, and the function is
 * executed again at the wake-up time (after a restart too), when the next
 * attempt runs with the same idempotency key. The last failure returns
 * DURABLE_ESTEP with fn's error. A zero field takes its default:
 * max_attempts 1 (no retry), initial_backoff_ms 1000, backoff_factor 2,
 * max_backoff_ms 60000. DURABLE_EINVAL for a negative field, a factor
 * below 1 or more than 1000 attempts.
 * answers_at_once: fn returns quickly (a computation, no waiting on the
 * outside): the step's start is not committed before fn runs but with its
 * completion, in one commit instead of two (like the JSON step types that
 * answer at once); the step is never seen "running". A failed attempt
 * commits its start and then its failure. After a crash during fn, the
 * step is not recorded (at this attempt) and runs again under the same id,
 * key and attempt. */
typedef struct durable_step_opts {
    int max_attempts;
    int64_t initial_backoff_ms;
    double backoff_factor;
    int64_t max_backoff_ms;
    bool answers_at_once;
} durable_step_opts;

/* durable_step with a retry policy (opts NULL: durable_step). */
DURABLE_API durable_code durable_step_ex(durable_ctx *ctx, const char *name, durable_step_fn fn,
                                         void *arg, const durable_step_opts *opts, char **out_json,
                                         durable_error *err);

/* Parallel steps. durable_step_async takes the step's id and position
 * now, on the workflow thread, in call order (so ids do not depend on
 * which step finishes first), and runs fn on the engine's step pool (at
 * most 32 threads; more steps wait their turn) unless the step is
 * recorded; durable_wait_all waits for every future given, and
 * returns DURABLE_ESTEP (or another stop code, see durable_step) if one of
 * them failed; then durable_future_get gives each output. A future belongs
 * to ctx and is freed when the function returns (steps not waited for are
 * waited for then). The steps started after a wait depend on the steps
 * waited for; async steps depend on the last step waited for before them.
 * OUT: *out (borrowed from ctx). */
typedef struct durable_future durable_future;
DURABLE_API durable_code durable_step_async(durable_ctx *ctx, const char *name, durable_step_fn fn,
                                            void *arg, durable_future **out, durable_error *err);
/* durable_step_async with a retry policy (opts NULL: durable_step_async):
 * a step waiting for its next attempt makes durable_wait_all return
 * DURABLE_ESUSPENDED. */
DURABLE_API durable_code durable_step_async_ex(durable_ctx *ctx, const char *name,
                                               durable_step_fn fn, void *arg,
                                               const durable_step_opts *opts, durable_future **out,
                                               durable_error *err);
DURABLE_API durable_code durable_wait_all(durable_ctx *ctx, durable_future *const *futures,
                                          size_t n, durable_error *err);
/* A waited-for future's output. OUT: *out_json (caller frees). */
DURABLE_API durable_code durable_future_get(durable_future *f, char **out_json, durable_error *err);

/* A durable sleep of ms milliseconds, as step `name` (type "sleep"): the
 * first time, its wake-up time is recorded and DURABLE_ESUSPENDED is
 * returned, which the function must return at once (DURABLE_TRY): the
 * run waits (status "waiting") holding no thread, only a timer entry. At
 * the wake-up time the function is executed again from the top; recorded
 * steps return at once, and this call, the sleep now over, returns
 * DURABLE_OK (its output {"woke_at"}). After a restart the wake-up time is
 * the recorded one. */
DURABLE_API durable_code durable_sleep(durable_ctx *ctx, const char *name, int64_t ms,
                                       durable_error *err);

/* A child workflow, as step `workflow` (its name, which must also be a
 * valid step name; type "child"): starts a run of the latest version of
 * workflow `workflow` (code-first or a JSON definition) with input_json (a
 * JSON object, or NULL) and idempotency key `key` (NULL: "RUN_ID/STEP_ID"
 * of this call), and waits for it holding no thread: the first time it
 * returns DURABLE_ESUSPENDED (return it at once, DURABLE_TRY); the step
 * waits (its step_waiting event has {"child_run_id"}) and the function is
 * executed again when the child finishes. Then it returns DURABLE_OK with
 * the child's output (OUT *out_json, caller frees; may be NULL), or
 * DURABLE_ESTEP when the child failed or was cancelled (the step fails
 * with "child run ID failed: ..."). Every execution finds the same child
 * by its key, also after a crash between the child's start and its end.
 * A retry of the parent after its child failed retries that child. */
DURABLE_API durable_code durable_child(durable_ctx *ctx, const char *workflow, const char *key,
                                       const char *input_json, char **out_json, durable_error *err);

/* Recorded values: the first execution takes the value (the wall clock in
 * Unix milliseconds; 64 random bits from the system's generator) and
 * records it as a step at this position ("now", "now#2", ...; "random",
 * ...; types "now" and "random", output {"value"}; one commit); every
 * later execution returns the recorded value, so code that branches on it
 * takes the same path again. Checked for determinism like durable_step.
 * OUT: *out_ms, *out_value. */
DURABLE_API durable_code durable_now(durable_ctx *ctx, int64_t *out_ms, durable_error *err);
DURABLE_API durable_code durable_random(durable_ctx *ctx, uint64_t *out_value, durable_error *err);

/* Waits for the signal `name` (1 to 64 of [A-Za-z0-9_.-]), as step `name`
 * (type "wait_signal"): a signal of that name sent to the run earlier and
 * not taken yet is taken at once (the oldest first), else the run waits
 * (status "waiting") holding no thread, and this returns
 * DURABLE_ESUSPENDED, which the function must return at once
 * (DURABLE_TRY); it is executed again from the top when the signal
 * arrives (durable_signal, POST /runs/{id}/signals/{name}) or the timeout
 * passes. Each signal is taken by exactly one wait, in the same
 * transaction as the step's completion. timeout_ms < 0 waits without
 * limit. OUT: *out_payload_json, the signal's payload (caller frees; may
 * be NULL to ignore it). Recorded: a later execution returns the recorded
 * payload at once, or DURABLE_ETIMEOUT again when the wait timed out
 * (the step failed with code "timeout"); DURABLE_ETIMEOUT does not stop
 * the run, the function decides. Other codes as durable_step. */
DURABLE_API durable_code durable_wait_signal(durable_ctx *ctx, const char *name, int64_t timeout_ms,
                                             char **out_payload_json, durable_error *err);

/* The run being executed (valid until the function returns), and the ud
 * given to durable_workflow_fn_register. */
DURABLE_API const char *durable_ctx_run_id(const durable_ctx *ctx);
DURABLE_API void *durable_ctx_userdata(const durable_ctx *ctx);

/* ---- runs ------------------------------------------------------------- */

typedef struct durable_run_request {
    const char *workflow;        /* workflow id, or name for its latest version */
    const char *input_json;      /* JSON object, or NULL for the definition's defaults */
    const char *order_id;        /* demo order to attach, or NULL */
    const char *idempotency_key; /* NULL, or a key: per workflow name, so a second start
                                    of any version of the workflow, with any input,
                                    returns the first run (durable_run_compare says
                                    how it differs) */
    bool create_order;           /* create a demo order of order_amount and attach it, in
                                    the run's own transaction (order_id must be NULL);
                                    nothing is created when the key returns a run */
    double order_amount;
    int priority; /* -DURABLE_PRIORITY_MAX..DURABLE_PRIORITY_MAX, default 0: among runs
                     held back by the workflow's concurrency limit, higher starts first
                     (then older); stored with the run */
} durable_run_request;
#define DURABLE_PRIORITY_MAX 1000000

/* Starts a run (committed before this returns). With an idempotency key that
 * already started a run of this workflow, returns that run with *out_existed
 * true and, if it is unfinished and not being executed by this engine,
 * resumes it. OUT: *out_run_id (caller frees). */
DURABLE_API durable_code durable_run_start(durable *d, const durable_run_request *req,
                                           char **out_run_id, /* OUT */
                                           bool *out_existed, /* OUT, may be NULL */
                                           durable_error *err);

/* How an asynchronous start ended. Every field is borrowed for the callback. */
typedef struct durable_run_started {
    durable_code code;        /* DURABLE_OK, or why no run was started */
    const char *run_id;       /* the run (new, or the one the key had started); NULL on error */
    bool existed;             /* the idempotency key returned an earlier run */
    const durable_error *err; /* why, when code is not DURABLE_OK */
} durable_run_started;

typedef void (*durable_run_started_fn)(const durable_run_started *outcome, void *ud);

/* durable_run_start without waiting for the commit: validates the request
 * and queues the run's creation, then returns. fn(outcome, ud) is called
 * exactly once, when the creation has committed (or failed), on the
 * engine's writer thread: it must return quickly and must not call into
 * durable. When this returns an error, nothing was queued and fn is never
 * called. Lets a server answer many starts from a few threads, all sharing
 * one commit. */
DURABLE_API durable_code durable_run_start_async(durable *d, const durable_run_request *req,
                                                 durable_run_started_fn fn, void *ud,
                                                 durable_error *err);

/* The run that idempotency_key started for this workflow (id or name),
 * DURABLE_ENOTFOUND if none. OUT: *out_run_id (caller frees). */
DURABLE_API durable_code durable_run_find(durable *d, const char *workflow,
                                          const char *idempotency_key, char **out_run_id,
                                          durable_error *err);

/* How the run an idempotency key returned compares with the request that
 * named the key again. */
typedef struct durable_run_reuse {
    int run_version;       /* the workflow version the run is of */
    int requested_version; /* the version req->workflow names (by name: the latest) */
    bool input_differs;    /* the request's input, the definition's defaults merged,
                              is not the run's (compared as canonical JSON text:
                              compact, keys sorted) */
} durable_run_reuse;

/* Compares run run_id (the one req's idempotency key returned) with req.
 * OUT: *out. */
DURABLE_API durable_code durable_run_compare(durable *d, const durable_run_request *req,
                                             const char *run_id, durable_run_reuse *out,
                                             durable_error *err);

/* True when another process (a concurrent `durable run` of the same run)
 * is executing the run, so this one will only see it finish. */
DURABLE_API bool durable_run_elsewhere(durable *d, const char *run_id);

/* Cancels a run: running steps are abandoned, pending ones become cancelled.
 * DURABLE_ECONFLICT when the run has already finished. */
DURABLE_API durable_code durable_run_cancel(durable *d, const char *run_id, durable_error *err);

/* Waits until the run is finished (completed, failed or cancelled) or
 * timeout_ms passes (negative: no limit). OUT: *out_status, static storage. */
DURABLE_API durable_code durable_run_wait(durable *d, const char *run_id, int64_t timeout_ms,
                                          const char **out_status, durable_error *err);

/* The run as JSON: id, workflow_id, workflow_name, workflow_version, status,
 * input, output, order_id, idempotency_key, error_message, created_at,
 * started_at, completed_at and steps[] (SPEC §6). OUT: *out_json (caller frees). */
DURABLE_API durable_code durable_run_get(durable *d, const char *run_id, char **out_json,
                                         durable_error *err);

/* The run's history as a JSON array of events with seq > after_seq. */
DURABLE_API durable_code durable_run_events(durable *d, const char *run_id, int64_t after_seq,
                                            char **out_json, durable_error *err);

/* ---- execution logs ------------------------------------------------------ */

/* Which log lines of a run durable_run_logs returns. */
typedef struct durable_log_filter {
    const char *level; /* the least level shown: "debug" (NULL), "info", "warning", "error" */
    int64_t after_seq; /* only lines of events with seq > after_seq (paging) */
    int limit;         /* at most this many lines: 0 means 100; clamped to 1..1000 */
} durable_log_filter;

/* A run's execution log, built from its history: a `log` step's message at
 * its own level (its step_completed output {"message", "level"}), and one
 * line per event of the engine's own: retries and failed attempts are
 * warnings, a step's or the run's failure an error, the run's creation,
 * end, recovery and retry and a step waiting or decided are info, a step's
 * start, completion and skip debug. OUT: *out_json (caller frees):
 * {"logs": [{"seq", "at", "level", "step_id", "message"}], "next_after"}
 * oldest first, where next_after is the after_seq that continues after
 * this page (the last event read). DURABLE_ENOTFOUND for an unknown run,
 * DURABLE_EINVAL for an unknown level. filter may be NULL: every line. */
DURABLE_API durable_code durable_run_logs(durable *d, const char *run_id,
                                          const durable_log_filter *filter, char **out_json,
                                          durable_error *err);

/* ---- live events ------------------------------------------------------ */

/* One committed transition. Every field is borrowed for the callback. */
typedef struct durable_event {
    const char *run_id;
    int64_t seq;           /* per run, from 1, no gaps */
    int64_t global_id;     /* across all runs, increasing in commit order */
    const char *type;      /* "step_started", "run_completed", ... */
    const char *step_id;   /* NULL for run events */
    int64_t at_ms;         /* Unix time in milliseconds */
    const char *data_json; /* the event's data object */
} durable_event;

typedef void (*durable_event_fn)(const durable_event *ev, void *ud);

/* Registers fn to see every event after its transaction has committed, in
 * commit order. fn runs on the engine's writer thread (on a database shared
 * by several nodes, on the engine's cluster thread, and it sees every
 * node's events): it must return quickly and must not call into durable. Returns a subscription id
 * (> 0). After durable_unsubscribe returns, fn is not running and will not be called again, so ud
 * may be freed. Events that committed before durable_run_wait returned may still be on their way to
 * fn when it returns. */
DURABLE_API int durable_subscribe(durable *d, durable_event_fn fn, void *ud);
DURABLE_API void durable_unsubscribe(durable *d, int subscription_id);

/* ---- schedules ----------------------------------------------------------- */

/* A schedule starts runs of a workflow on a cron expression or an interval
 * (README, "Schedules"). spec_json: {"id"?, "workflow", "cron" | "every",
 * "timezone"?, "input"?, "overlap"?, "catch_up"?, "catch_up_max"?,
 * "paused"?}; blank optional members take their defaults; an id given
 * again replaces that schedule's definition (its last tick kept).
 * DURABLE_ESYNTAX for malformed JSON, DURABLE_EINVAL naming the member
 * otherwise. OUT: *out_json, the schedule as durable_schedule_get shows it
 * (may be NULL; caller frees). */
DURABLE_API durable_code durable_schedule_create(durable *d, const char *spec_json, char **out_json,
                                                 durable_error *err);
/* A schedule as JSON, with "next": its next 5 fire times.
 * DURABLE_ENOTFOUND when there is none. */
DURABLE_API durable_code durable_schedule_get(durable *d, const char *id, char **out_json,
                                              durable_error *err);
/* Every schedule, oldest first, as a JSON array. */
DURABLE_API durable_code durable_schedules_list(durable *d, char **out_json, durable_error *err);
/* Pauses (no tick fires; ticks due while paused are handled by the
 * catch-up rule at resume) or resumes a schedule. DURABLE_ENOTFOUND. */
DURABLE_API durable_code durable_schedule_pause(durable *d, const char *id, bool paused,
                                                durable_error *err);
/* Deletes a schedule; its runs stay. DURABLE_ENOTFOUND. */
DURABLE_API durable_code durable_schedule_delete(durable *d, const char *id, durable_error *err);

/* ---- listing and inspecting (for the HTTP API) ------------------------------ */

/* Lists are JSON arrays in the shapes of SPEC §6, newest first. limit is
 * clamped to 1..500 (0 means 50); a negative offset is 0; *out_total receives
 * the number of matching rows ignoring limit/offset (may be NULL), read in
 * the same snapshot as the page.
 * - runs: the run object of durable_run_get without "steps"; status must be
 *   a run status (else DURABLE_EINVAL "unknown run status \"x\""); a
 *   workflow_id that matches nothing gives an empty list, not an error.
 * - workflows: every version, {id, name, version, description (the
 *   definition's, or null), created_at}, without the definition.
 * - orders: the object of durable_order_get. */
typedef struct durable_run_filter {
    const char *status;      /* NULL: any */
    const char *workflow_id; /* NULL: any; an id, or a name meaning every version */
    int limit;
    int offset;
    /* Time ranges, Unix ms, 0 for no bound: created_after <= created_at <
     * created_before, and the same of a finished run's finish time (an
     * unfinished run matches no finished_* bound). */
    int64_t created_after_ms;
    int64_t created_before_ms;
    int64_t finished_after_ms;
    int64_t finished_before_ms;
    /* NULL, or a field of the run's input ("customer_id", "a.b": names of
     * [A-Za-z0-9_-], at most 8 deep) whose value must equal input_value, the
     * JSON text of a string, number, true, false or null (numbers compare
     * by value: 7 matches 7.0 but not "7"). DURABLE_EINVAL otherwise. */
    const char *input_field;
    const char *input_value;
} durable_run_filter;

DURABLE_API durable_code durable_runs_list(durable *d, const durable_run_filter *filter,
                                           char **out_json, int64_t *out_total, durable_error *err);
/* Bulk operations: req->action ("cancel" or "retry") applied to every run
 * req->filter matches (its limit and offset ignored), in ONE commit: after
 * a crash either every change of it is in the database or none. At most
 * DURABLE_BULK_MAX runs: more match -> DURABLE_ETOOBIG with the count in
 * the message and in out->matched, nothing done. out->matched: the runs the
 * filter matched; out->touched: those the action changed (cancel:
 * unfinished ones; retry: failed ones); with dry_run nothing is written and
 * out->touched is how many would be. A filter with no condition at all (no
 * status, workflow, time bound nor input filter) is DURABLE_EINVAL unless
 * all is true. An unknown action: DURABLE_EINVAL. */
#define DURABLE_BULK_MAX 10000
typedef struct durable_bulk_request {
    const char *action;
    durable_run_filter filter;
    bool all;     /* an empty filter means every run */
    bool dry_run; /* count, change nothing */
} durable_bulk_request;
typedef struct durable_bulk_result {
    int64_t matched;
    int64_t touched;
} durable_bulk_result;
DURABLE_API durable_code durable_runs_bulk(durable *d, const durable_bulk_request *req,
                                           durable_bulk_result *out, durable_error *err);
DURABLE_API durable_code durable_workflows_list(durable *d, int limit, int offset, char **out_json,
                                                int64_t *out_total, durable_error *err);
DURABLE_API durable_code durable_orders_list(durable *d, int limit, int offset, char **out_json,
                                             int64_t *out_total, durable_error *err);

/* A workflow: id, name, version, definition, created_at. id_or_name as in
 * durable_run_start. */
DURABLE_API durable_code durable_workflow_get(durable *d, const char *id_or_name, char **out_json,
                                              durable_error *err);

/* Resumes a failed run from its failed steps (and the steps cancelled
 * because of the failure); completed steps are kept. DURABLE_ECONFLICT when
 * the run has not failed ("run X is completed, only a failed run can be
 * retried"), DURABLE_ENOTFOUND when there is no such run. Returns once the
 * retry has committed (the run is "running", a "run_retried" event lists
 * the steps reset, their attempts count from 1 again); the run then goes on
 * in the background, like a new one (durable_run_wait). */
DURABLE_API durable_code durable_run_retry(durable *d, const char *run_id, durable_error *err);

/* Deletes a finished run (completed, failed or cancelled) with its steps,
 * events and signals, in one transaction; its child runs are kept (they
 * are runs of their own). DURABLE_ENOTFOUND when there is no such run,
 * DURABLE_ECONFLICT when it is not finished ("run X is running: only a
 * finished run ... can be deleted"). */
DURABLE_API durable_code durable_run_delete(durable *d, const char *run_id, durable_error *err);

/* Which finished runs durable_runs_purge deletes: every condition given. */
typedef struct durable_purge {
    int64_t finished_before_ms; /* finished before this Unix ms time; 0: any time */
    const char *workflow;       /* runs of every version of this workflow; NULL: any */
    const char *status;         /* "completed", "failed" or "cancelled"; NULL: any of them */
    bool dry_run;               /* count them, delete nothing */
} durable_purge;

/* Deletes the finished runs p selects (as durable_run_delete), oldest
 * finished first, DURABLE_PURGE_BATCH per transaction, and gives their
 * number (dry run: the number it would delete) in *out_deleted.
 * DURABLE_EINVAL for a status that is not a finished one. */
DURABLE_API durable_code durable_runs_purge(durable *d, const durable_purge *p,
                                            int64_t *out_deleted, durable_error *err);

/* Deletes version `version` of workflow `name`. DURABLE_ENOTFOUND when it
 * does not exist, DURABLE_ECONFLICT when runs of it are stored (delete them
 * first). */
DURABLE_API durable_code durable_workflow_delete(durable *d, const char *name, int version,
                                                 durable_error *err);
/* Pauses an unfinished run: steps running finish (their outcome is
 * recorded), nothing new starts (no ready step, no retry's next attempt, no
 * delay or approval timeout acted on) until durable_run_resume; a decision
 * or a signal is recorded, what follows it waits. The run's status is
 * "paused" (a "run_paused" event); a paused run that a restart resumes
 * stays paused (the steps that were running at the crash run again, as
 * for any run). Returns once the pause has committed. DURABLE_ECONFLICT
 * when the run has finished or is paused already, DURABLE_ENOTFOUND when
 * there is no such run, DURABLE_EUNSUPPORTED for a code-first run. A
 * step whose start the engine had submitted just before may still start. */
DURABLE_API durable_code durable_run_pause(durable *d, const char *run_id, durable_error *err);

/* Resumes a paused run: what became ready while it was paused starts. Its
 * status is again what its steps make it (a "run_resumed" event).
 * DURABLE_ECONFLICT when the run is not paused, DURABLE_ENOTFOUND when there
 * is no such run. */
DURABLE_API durable_code durable_run_resume(durable *d, const char *run_id, durable_error *err);

/* Restarts a finished run (completed, failed or cancelled) from step
 * from_step: a NEW run of the same workflow version, input and order,
 * whose document names the original (restarted_from: {run_id, step_id}).
 * from_step and every step depending on it, transitively, run again (their
 * idempotency keys are the new run's, and a business action of theirs
 * applies again); every other step that completed (or was skipped) in the
 * original is kept: recorded at once, completed with the original's output
 * (or skipped), its event's data naming the original ("copied_from"); the
 * others run. OUT *out_run_id: the new run's id (free with durable_free).
 * Returns once the new run has committed; it goes on in the background.
 * DURABLE_EINVAL for a blank or unknown from_step (the message suggests
 * the closest step id), DURABLE_ECONFLICT when the run has not finished,
 * DURABLE_ENOTFOUND when there is no such run, DURABLE_EUNSUPPORTED for a
 * code-first run. */
DURABLE_API durable_code durable_run_restart(durable *d, const char *run_id, const char *from_step,
                                             char **out_run_id, durable_error *err);

/* Decides an approval step that is waiting for a person: approve (true) or
 * reject (false), by whom and why (`by` and `comment` may be NULL; they are
 * cut at 200 and 4096 bytes, and must be UTF-8). In one transaction an `approval_decided` event and
 * the step's completion commit, with output {"approved", "by", "comment", "at"} (both decisions
 * complete the step; later steps branch on steps.ID.output.approved); the run then goes on in the
 * background. Works whether or not this engine has the run in memory. DURABLE_ENOTFOUND for an
 * unknown run or step; DURABLE_ECONFLICT when the step is not an approval waiting for a decision
 * (not started yet, decided already, timed out) or the run has finished. */
DURABLE_API durable_code durable_step_decide(durable *d, const char *run_id, const char *step_id,
                                             bool approve, const char *by, const char *comment,
                                             durable_error *err);

/* Sends signal `name` (1 to 64 of [A-Za-z0-9_.-]) to an unfinished run
 * with payload_json (any JSON text, at most 1 MiB; NULL means null). In
 * one transaction the signal is stored and a `signal_received` event
 * appended; a step waiting for that name (a `wait_signal` step, or
 * durable_wait_signal) takes it at once, else it is kept for the first
 * wait of that name (first sent, first taken). Any thread; works whether
 * or not this engine (or this node) executes the run. DURABLE_ENOTFOUND
 * for an unknown run, DURABLE_ECONFLICT for a finished one,
 * DURABLE_EINVAL for a bad name or a payload that is not JSON,
 * DURABLE_ETOOBIG for a payload over 1 MiB. */
DURABLE_API durable_code durable_signal(durable *d, const char *run_id, const char *name,
                                        const char *payload_json, durable_error *err);
/* durable_signal, and the signal stored: OUT *out_json (caller frees; may
 * be NULL) {"id", "run_id", "name", "seq" (its signal_received event's),
 * "taken_by" (the step that took it at once, or null)}. */
DURABLE_API durable_code durable_signal_send(durable *d, const char *run_id, const char *name,
                                             const char *payload_json, char **out_json,
                                             durable_error *err);

/* Events of every run with global_id > after_id, oldest first, at most
 * limit (0 means 1000; clamped to 1..1000) as a JSON array of events that
 * also carry run_id and id (the global id): {id, run_id, seq, type,
 * step_id, at, data}. Ids have no gaps and a reader never sees id N+1
 * before N. */
DURABLE_API durable_code durable_events_since(durable *d, int64_t after_id, int limit,
                                              char **out_json, durable_error *err);

/* Every table: {"tables": [{"name", "columns": [...], "rows": [[...]...],
 * "total"}]}, newest rows first, at most rows_per_table rows each (0 means
 * 50; clamped to 1..200). Cells are the stored values (times as Unix ms);
 * text over 200 bytes is cut and ends with "…". */
DURABLE_API durable_code durable_db_snapshot(durable *d, int rows_per_table, char **out_json,
                                             durable_error *err);

/* DURABLE_OK when the database answers a read and the writer is not
 * failing; DURABLE_EIO otherwise, with why. Cheap: one indexed read. */
DURABLE_API durable_code durable_health(durable *d, durable_error *err);

/* Prometheus text exposition (text/plain; version=0.0.4): runs and steps by
 * state (gauges, from the database), step duration histogram, commit batch
 * size histogram, commits and transitions (counters, since open). */
DURABLE_API durable_code durable_metrics(durable *d, char **out_text, durable_error *err);

/* ---- demo orders -------------------------------------------------------- */

/* Creates an order {amount, status "pending"}. OUT: *out_order_id (caller frees). */
DURABLE_API durable_code durable_order_create(durable *d, double amount, char **out_order_id,
                                              durable_error *err);

/* The order as JSON: id, amount, status, created_at, updated_at. */
DURABLE_API durable_code durable_order_get(durable *d, const char *order_id, char **out_json,
                                           durable_error *err);

#ifdef __cplusplus
}
#endif
#endif
