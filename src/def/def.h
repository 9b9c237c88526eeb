/*
 * def.h - workflow definitions: parse JSON into a validated, immutable plan.
 *
 * A plan is what the engine executes: the steps in file order, their
 * dependency edges (both directions, as indices), a stable topological order
 * (ties broken by file order), and each step's retry and timeout policy.
 * Plans are immutable once def_parse() returns them and are shared between
 * threads by reference count (plan_ref / plan_unref, atomic).
 *
 * Validation collects every problem it finds, not just the first, each with
 * where it is: a JSON path such as `steps[2].depends_on[0]`, and for syntax
 * errors `line L, column C`. Unknown fields are warnings; everything else is
 * an error and no plan is produced.
 *
 * This layer knows nothing of the database or threads.
 */
#ifndef DURABLE_DEF_DEF_H
#define DURABLE_DEF_DEF_H

#include "util/common.h"

#include <jansson.h>
#include <stdatomic.h>

#include "durable.h"
#include "util/util.h"

/* Step kinds. A type string that SPEC §1 does not name is a TASK. */
enum step_kind {
    STEP_TASK = 0,
    STEP_HTTP_REQUEST,
    STEP_DELAY,
    STEP_APPROVAL,
    STEP_CONDITION,
    STEP_TRANSFORM,
    STEP_LOG,
    STEP_WORKFLOW,
};

#define DEF_MAX_STEPS     10000
#define DEF_MAX_TEXT      (1024 * 1024) /* a definition's size limit, bytes */
#define DEF_MAX_ID_LEN    128
#define DEF_MAX_ATTEMPTS  1000
#define DEF_MAX_NAME_LEN  200      /* characters of a workflow or step name */
#define DEF_MAX_SECONDS   31536000 /* one year: bound of every duration and interval */
#define DEF_MAX_BACKOFF_COEFFICIENT 100
#define DEF_MAX_DIAGS     100      /* diagnostics listed per parse (all are counted) */

/* The built-in business actions (SPEC §1), NULL-terminated. The store
 * implements exactly these. */
extern const char *const def_builtin_actions[];

struct retry_policy {
    int max_attempts;              /* >= 1; default 1 (config.max_retries N means N+1) */
    double initial_interval_s;     /* default 1 */
    double backoff_coefficient;    /* default 2, >= 1 */
    double max_interval_s;         /* default 60 */
    char **non_retryable_errors;   /* error codes that fail at once; may be NULL */
    size_t n_non_retryable_errors;
};

struct plan_step {
    char *id;            /* unique, [A-Za-z0-9_.-]{1,128} */
    char *name;          /* label, defaults to id */
    char *type;          /* the type string as written ("task", "validate", ...) */
    enum step_kind kind;
    json_t *config;      /* owned; an object, never NULL (empty when absent) */
    char *action;        /* config.action, or NULL */
    char *if_expr;       /* the `if` expression, or NULL */
    size_t *deps;        /* indices into plan->steps, in the order written */
    size_t n_deps;
    size_t *dependents;  /* indices of steps that depend on this one, ascending */
    size_t n_dependents;
    struct retry_policy retry;
    int64_t timeout_ms;  /* one attempt; 0 means none */
    /* task parameters (STEP_TASK) */
    double duration_s;        /* default 1.0, >= 0 */
    double fail_probability;  /* default 0.0, in [0, 1] */
};

struct plan {
    atomic_int refs;
    char *name;
    char *version;        /* the definition's own informational version, or NULL */
    char *description;    /* or NULL */
    json_t *input;        /* default input object, never NULL (empty when absent) */
    int64_t timeout_ms;   /* whole run; 0 means none */
    struct plan_step *steps; /* file order */
    size_t n_steps;
    size_t *topo;         /* n_steps indices: stable topological order */
    json_t *definition;   /* the parsed definition as given */
    json_t *step_index;   /* id -> index (integer), for plan_step_index */
};

/* One diagnostic. `where` is "steps[2].depends_on[0]", "line 7, column 3",
 * or "" for the document as a whole. */
struct def_diag {
    bool is_warning;
    char *where;
    char *message;
};

/* In document order (missing required fields first, cycles last). At most
 * DEF_MAX_DIAGS entries per parse are listed, then one warning saying the
 * rest were left out; n_errors counts every error, listed or not. */
struct def_report {
    struct def_diag *items;
    size_t n;
    size_t n_errors;
};

void def_report_init(struct def_report *r);
void def_report_release(struct def_report *r);
/* Appends every diagnostic as "WHERE: MESSAGE" (warnings prefixed by
 * "warning: "), one per line, to out. */
void def_report_format(const struct def_report *r, struct dbuf *out);

struct def_options {
    /* NULL-terminated list of known action names; NULL accepts any name. */
    const char *const *known_actions;
};

/* Parses and validates a JSON definition. On success *out_plan holds a plan
 * with one reference. On failure *out_plan is NULL, the code is
 * DURABLE_ESYNTAX (malformed JSON) or DURABLE_EINVAL (invalid definition)
 * and err->msg is the first error as "WHERE: MESSAGE". Either way `report`
 * (may be NULL; initialised by the caller, appended to) receives every
 * diagnostic, warnings included.
 * opts may be NULL. Texts over DEF_MAX_TEXT bytes are DURABLE_ETOOBIG.
 *
 * Messages (WHERE is a JSON path; values are quoted JSON-style and cut at
 * 80 bytes):
 *   line L, column C: TEXT FROM JANSSON             malformed JSON, NUL byte
 *   name: required                                  also steps[i].id
 *   steps: a workflow needs at least one step
 *   steps[1].depends_on: expected an array of step ids, got string
 *   steps[0].config.fail_probability: must be between 0 and 1, got 1.5
 *   steps[0].config.max_retries: must be an integer between 0 and 999, got -1
 *   steps[0].timeout_seconds: must be greater than 0 and at most 31536000, got 0
 *   steps[1].id: invalid step id "a b": use 1 to 128 letters, digits, '_', '.' or '-'
 *   steps[2].id: duplicate step id "x" (first used by steps[0])
 *   steps[1].type: step type "http_request" is not supported yet
 *   steps[2].depends_on[0]: unknown step "chrage" (did you mean "charge"?)
 *   steps[1].depends_on[0]: step "x" depends on itself
 *   steps[1].depends_on[1]: duplicate dependency "a"
 *   steps[1].config.action: unknown action "chrage_payment" (did you mean "charge_payment"?)
 *   steps[1].action: action "a" does not match config.action "b"
 *   steps[1].config.action: action "b" does not match the step's action "a"
 *   steps: cycle validate → charge → validate      one per strongly connected component
 *   warning: steps[0].config.foo: unknown field "foo"
 *   warning: steps[0].config.max_retries: ignored: retry.max_attempts takes precedence
 * Plan: steps in file order; deps in the order written; dependents
 * ascending; topo is Kahn's algorithm taking the ready step with the lowest
 * file index; plan->definition holds a reference to the parsed document. */
durable_code def_parse(const char *text, size_t len, const struct def_options *opts,
        struct plan **out_plan, struct def_report *report, durable_error *err);

struct plan *plan_ref(struct plan *p);
void plan_unref(struct plan *p); /* frees at zero; accepts NULL */

/* Index of the step with this id, or -1. */
long plan_step_index(const struct plan *p, const char *id);

/* Back-off before attempt `next_attempt` (>= 2) after attempt next_attempt-1
 * failed: initial * coefficient^(next_attempt-2), capped at max, in ms. */
int64_t def_retry_delay_ms(const struct retry_policy *r, int next_attempt);

/* The kind for a type string (unknown strings are STEP_TASK). */
enum step_kind def_step_kind(const char *type);
const char *def_step_kind_name(enum step_kind k);

#endif
