/*
 * def_int.h - private types shared by the files of the def layer.
 *
 * A parse is one struct parser, owned by the calling thread for the length of
 * def_parse(). It carries the report being filled, the JSON path of the value
 * being checked (so every diagnostic knows where it is without the checkers
 * passing paths around), and the plan being built. The plan is only handed
 * out when no error was found; otherwise def_parse frees it.
 *
 * Files: def.c (entry point, top level, steps), def_task.c (step fields,
 * task config, retry), def_graph.c (dependents, topological order, cycles,
 * "did you mean"), def_diag.c (report, paths, quoting, number checks),
 * def_plan.c (plan lifetime, retry delays, kinds, durable_validate).
 */
#ifndef DURABLE_DEF_DEF_INT_H
#define DURABLE_DEF_DEF_INT_H

#include "util/common.h"

#include "def/def.h"

struct parser {
    struct def_report *rep; /* never NULL: the caller's or a local one */
    const struct def_options *opts;
    struct dbuf path;                         /* where we are: "steps[2].config" ("" at the root) */
    size_t n_listed;                          /* diagnostics this parse added to rep */
    size_t n_errors;                          /* errors found, listed or not */
    char first_error[DURABLE_ERROR_MSG_SIZE]; /* "WHERE: MESSAGE" of the first error */
    long suggest_budget;                      /* edit-distance cells left for "did you mean" */
    struct plan *plan;    /* being built; steps allocated, zeroed, defaults set */
    json_t *ids;          /* id -> index of its first step (integer); owned */
    const char **id_list; /* valid unique ids in file order, borrowed from the JSON */
    size_t n_ids;
    size_t *dep_seen; /* per step: 1 + index of the step that last listed it */
};

/* Per-step state while its fields are walked. */
struct step_ctx {
    size_t index;
    struct plan_step *st;
    bool check_config;  /* the kind is implemented: its config is validated */
    const char *action; /* the step-level `action`, borrowed */
    const char *config_action;
    int max_retries; /* config.max_retries, or -1 */
    bool has_max_attempts;
};

/* A field handler: checks v (the path already points at it) and stores it. */
struct def_field {
    const char *key;
    void (*fn)(struct parser *p, void *ctx, json_t *v);
};

/* ---- diagnostics (def_diag.c) ---- */

/* Records an error or a warning at the current path. */
void def_error(struct parser *p, const char *fmt, ...) DUR_PRINTF(2, 3);
void def_warn(struct parser *p, const char *fmt, ...) DUR_PRINTF(2, 3);
/* Records an error at an explicit place ("line 3, column 7"). */
void def_error_at(struct parser *p, const char *where, const char *fmt, ...) DUR_PRINTF(3, 4);

/* Path stack: each push returns a mark to pop back to. */
size_t def_path_key(struct parser *p, const char *key);
size_t def_path_index(struct parser *p, size_t i);
void def_path_pop(struct parser *p, size_t mark);

/* A value quoted for a message: JSON escapes, cut at a character boundary
 * with "..." when long. Returns q->s. */
struct def_quoted {
    char s[128];
};
const char *def_quote(struct def_quoted *q, const char *s);

/* The JSON type of v as a noun: "string", "number", "object", ... */
const char *def_type_name(const json_t *v);

/* Walks obj's members in document order: known keys go to their handler,
 * others get the warning `unknown field "KEY"`. */
void def_walk(struct parser *p, json_t *obj, const struct def_field *fields, size_t n_fields,
              void *ctx);

/* Type and range checks. Each reports at the current path and returns false
 * when v is unusable; on success it stores the value. */
bool def_get_string(struct parser *p, const json_t *v, const char **out);
bool def_get_number(struct parser *p, const json_t *v, double lo, double hi, bool lo_open,
                    double *out);
bool def_get_int(struct parser *p, const json_t *v, int lo, int hi, int *out);
/* A string of 1..max_chars characters (UTF-8), copied. */
bool def_get_label(struct parser *p, const json_t *v, size_t max_chars, char **out);

/* ---- steps (def_task.c) ---- */

/* Walks one element of "steps" (the path points at it) into p->plan->steps[i]. */
void def_step_parse(struct parser *p, size_t i, json_t *v);
/* True when id matches [A-Za-z0-9_.-]{1,128}. */
bool def_id_is_valid(const char *id);
/* Checks a name against opts->known_actions and reports it when unknown. */
void def_action_check(struct parser *p, const char *action);

/* ---- graph (def_graph.c) ---- */

/* Fills every step's dependents, reports each cycle once (one per strongly
 * connected component) and, when there is none, sets plan->topo. */
void def_graph_build(struct parser *p);

/* The candidate closest to name by edit distance when it is close enough
 * ("chrage" -> "charge"), else NULL. exclude (may be NULL) is never
 * suggested (a step's own id). Ties go to the earliest candidate. Spends
 * p->suggest_budget; once it is gone there are no more suggestions. */
const char *def_suggest(struct parser *p, const char *name, const char *const *cands,
                        size_t n_cands, const char *exclude);

/* ---- plan (def_plan.c) ---- */

/* An empty plan with n zeroed steps (defaults set), one reference. */
struct plan *def_plan_alloc(size_t n_steps);
/* A positive duration in seconds as milliseconds, rounded, at least 1. */
int64_t def_seconds_to_ms(double s);

#endif
