/*
 * def_int.h - private types shared by the files of the def layer.
 *
 * A parse is one struct parser, owned by the calling thread for the length of
 * def_parse(). It carries the report being filled, the JSON path of the value
 * being checked (so every diagnostic knows where it is without the checkers
 * passing paths around), and the plan being built. The plan is only handed
 * out when no error was found; otherwise def_parse frees it.
 *
 * Files: def.c (entry points, top level, steps), def_task.c (step fields,
 * retry), def_graph.c (dependents, topological order, cycles,
 * "did you mean"), def_diag.c (report, paths, quoting, number checks),
 * def_plan.c (plan lifetime, retry delays), def_check.c (a step type's
 * view of its config: durable_step_check, expressions, templates),
 * def_yaml.c (YAML to a jansson document, with the location of every node),
 * def_yaml_shape.c (the older YAML shape rewritten to the current one).
 *
 * YAML parses also fill `ylocs` (where each value was written) and keep, in
 * `nodes`, the JSON node at each level of the current path, so that a
 * diagnostic at a path can say "(line L, column C)". JSON parses leave both
 * empty and pay nothing for them.
 */
#ifndef DURABLE_DEF_DEF_INT_H
#define DURABLE_DEF_DEF_INT_H

#include "util/common.h"

#include "def/def.h"

struct def_ylocs; /* def_yaml.c */

/* One level of the current path (YAML parses only): the node there (NULL
 * when the path names a missing member), its container, and its key (for a
 * mapping member; borrowed for as long as the level is pushed) or index. */
struct def_path_node {
    size_t mark; /* p->path.len before this level was added */
    json_t *node;
    json_t *parent;
    const char *key;
    size_t index;
};

#define DEF_PATH_NODES 32 /* deeper than any path the checkers build */

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
    size_t *dep_seen;        /* per step: 1 + index of the step that last listed it */
    struct def_ylocs *ylocs; /* YAML only: where each value was written; else NULL */
    struct def_path_node nodes[DEF_PATH_NODES]; /* YAML only: nodes[0] is the root */
    size_t n_nodes;
    size_t n_exprs; /* jq programs compiled (or about to be) so far */
};

/* Per-step state while its fields are walked. */
struct step_ctx {
    size_t index;
    struct plan_step *st;
    const durable_step_type *type; /* from the step's type, known before its fields are
                                      walked; NULL when the parse has no find_type */
    const char *not_template;      /* def_check_not_template's key, or NULL */
    const char *action;            /* the step-level `action`, borrowed */
    const char *config_action;
    int max_retries;      /* config.max_retries, or -1 */
    int step_max_retries; /* the step's own max_retries (the older orchestrator's), or -1 */
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

/* Path stack: each push returns a mark to pop back to. For YAML, a key
 * the user wrote under an older name is shown under that name. */
size_t def_path_key(struct parser *p, const char *key);
size_t def_path_index(struct parser *p, size_t i);
void def_path_pop(struct parser *p, size_t mark);
/* Empties the path; for YAML, makes root the node at the empty path. */
void def_path_reset(struct parser *p, json_t *root);

/* Walks obj's members in document order: known keys go to their handler,
 * others get the warning `unknown field "KEY"`. */
void def_walk(struct parser *p, json_t *obj, const struct def_field *fields, size_t n_fields,
              void *ctx);

/* `schedules` of a definition (def_schedule.c): every member checked. */
void def_schedules_parse(struct parser *p, json_t *v);

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
/* Checks a name against opts->action_name and reports it when unknown. */
void def_action_check(struct parser *p, const char *action);
/* The `action` field of a config (any kind): checked against the step's. */
void def_config_action(struct parser *p, void *ctx, json_t *v);

/* ---- step configs (def_check.c) ---- */

/* One step's config being checked: what durable_step_check is. */
struct durable_step_check {
    struct parser *p;
    struct step_ctx *c;
    json_t *config;    /* borrowed */
    char *config_text; /* durable_step_check_config's, made on demand; owned */
};

/* Runs c->type's check on config (the path points at it), then compiles
 * the config's {{ }} templates into c->st->templates (left NULL when there
 * are none). */
void def_check_step_config(struct parser *p, struct step_ctx *c, json_t *config);
/* Frees what a plan step holds, not the step itself (def_plan.c). */
void def_step_release(struct plan_step *st);
/* Compiles `src` (the path points at it) into *out, or reports jq's error. */
void def_expr_compile(struct parser *p, const char *src, struct expr **out);

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

/* ---- entry points (def.c) ---- */

/* Starts a parse: p reports into report, or into local (initialised here,
 * released by the caller) when report is NULL. */
void def_parser_init(struct parser *p, struct def_report *local, struct def_report *report,
                     const struct def_options *opts);
/* Ends a parse: fills err with the first error when code is not DURABLE_OK
 * and releases what p holds. Returns code. */
durable_code def_parser_finish(struct parser *p, durable_code code, durable_error *err);
/* DURABLE_ETOOBIG, reported, when len exceeds DEF_MAX_TEXT. */
durable_code def_check_size(struct parser *p, size_t len);
/* Reports a NUL byte in text with its line and column; false if found. */
bool def_check_nul(struct parser *p, const char *text, size_t len);
/* Validates a document (borrowed; an object) into a plan, passes 2 to 4:
 * DURABLE_OK with *out_plan, or DURABLE_EINVAL when any error was reported,
 * including errors reported before the call. */
durable_code def_parse_root(struct parser *p, json_t *root, struct plan **out_plan);

/* ---- YAML (def_yaml.c, def_yaml_shape.c) ---- */

/* Where a value was written, 1-based; line 0 when unknown. */
struct def_mark {
    int line;
    int column;
};

/* Pass 1 for YAML: *out_root (owned; NULL when the text holds no document)
 * and p->ylocs, or an error reported and DURABLE_ESYNTAX, DURABLE_ETOOBIG
 * or DURABLE_ENOMEM. The root may be any type. */
durable_code def_yaml_load(struct parser *p, const char *text, size_t len, json_t **out_root);
void def_ylocs_free(struct def_ylocs *l); /* accepts NULL */
/* Where the value at the current path was written (see def.h); false when
 * not known. */
bool def_yaml_locate(const struct parser *p, struct def_mark *out);
/* The name the user wrote for parent's member `key` when the older shape
 * was rewritten, else NULL. */
const char *def_yaml_written_key(const struct parser *p, const json_t *parent, const char *key);
/* The older shape's names and values rewritten in place (root is an
 * object); mistakes are reported at their paths. */
void def_yaml_shape(struct parser *p, json_t *root);
/* Shape helpers (def_yaml.c): member `key` of obj is now called `to`, or
 * carries the location and written name of obj's member `from`. */
void def_ylocs_rename(struct parser *p, json_t *obj, const char *key, const char *to);
void def_ylocs_move(struct parser *p, json_t *obj, const char *from, const char *to);
/* Keeps v (a reference is taken) alive until the parse ends, so that no new
 * node can reuse its address while locations are keyed by address. */
void def_ylocs_bury(struct parser *p, json_t *v);

/* ---- plan (def_plan.c) ---- */

/* An empty plan with n zeroed steps (defaults set), one reference. */
struct plan *def_plan_alloc(size_t n_steps);
/* A positive duration in seconds as milliseconds, rounded, at least 1. */
int64_t def_seconds_to_ms(double s);

#endif
