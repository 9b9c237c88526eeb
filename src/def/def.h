/*
 * def.h - workflow definitions: parse JSON or YAML into a validated,
 * immutable plan.
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
 * YAML (def_parse_yaml, def_yaml.c) is converted to the same jansson
 * document, with the older shape's names rewritten to the current ones, and
 * then validated by the same code as JSON: a YAML definition and its JSON
 * equivalent give the same plan, and plan->definition holds the converted
 * JSON document, which is what gets stored.
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

struct expr;             /* expr/expr.h: a compiled jq program */
struct config_templates; /* expr/expr.h: a config's {{ }} strings, compiled */

#define DEF_MAX_STEPS               10000
#define DEF_MAX_TEXT                (1024 * 1024) /* a definition's size limit, bytes */
#define DEF_MAX_ID_LEN              128
#define DEF_MAX_ATTEMPTS            1000
#define DEF_MAX_NAME_LEN            200      /* characters of a workflow or step name */
#define DEF_MAX_SECONDS             31536000 /* one year: bound of every duration and interval */
#define DEF_MAX_BACKOFF_COEFFICIENT 100
#define DEF_MAX_DIAGS               100 /* diagnostics listed per parse (all are counted) */
/* jq programs per definition (`if`s, expressions, {{ }} templates). libjq
 * 1.6 takes 15-30 ms of CPU to compile one (expr.h), under a lock the
 * scheduler's evaluations also take: this bounds what one registration
 * costs (a few seconds at most). */
#define DEF_MAX_EXPRESSIONS         256
#define DEF_YAML_MAX_DEPTH          512 /* nesting of YAML sequences and mappings */
/* Nodes (scalars, sequences, mappings) of a YAML document once its aliases
 * are expanded. Each node takes at least 2 bytes of JSON, so a document over
 * this limit could never be stored within DEF_MAX_TEXT anyway. */
#define DEF_YAML_MAX_NODES          (DEF_MAX_TEXT / 2)

struct retry_policy {
    int max_attempts;            /* >= 1; default 1 (config.max_retries N means N+1) */
    double initial_interval_s;   /* default 1 */
    double backoff_coefficient;  /* default 2, >= 1 */
    double max_interval_s;       /* default 60 */
    char **non_retryable_errors; /* error codes that fail at once; may be NULL */
    size_t n_non_retryable_errors;
};

struct plan_step {
    char *id;   /* unique, [A-Za-z0-9_.-]{1,128} */
    char *name; /* label, defaults to id */
    char *type; /* the type string as written ("task", "validate", ...) */
    /* The type the name resolved to at parse time (def_options.find_type;
     * a name it does not know is "task"), borrowed from the registry, which
     * outlives every plan; NULL only when the parse had no find_type. */
    const durable_step_type *step_type;
    json_t *config; /* owned; an object, never NULL (empty when absent) */
    char *action;   /* config.action, or NULL */
    char *if_expr;  /* the `if` expression, or NULL */
    size_t *deps;   /* indices into plan->steps, in the order written */
    size_t n_deps;
    size_t *dependents;    /* indices of steps that depend on this one, ascending */
    char *depends_on_json; /* the deps' ids as a JSON array, written once per plan for
                              every run's step rows */
    size_t n_dependents;
    struct retry_policy retry;
    int64_t timeout_ms;     /* one attempt; 0 means none */
    double rate_per_second; /* `rate_limit.per_second`: first attempts started per second
                               over every run of the workflow (engine/flow.c); 0: none */
    /* What the type's check parsed from the config once for every attempt
     * (def_check_set_data), or NULL; freed with the plan by type_data_free. */
    void *type_data;
    void (*type_data_free)(void *data);
    /* Expressions, compiled at parse time (SPEC §3), owned by the plan and,
     * like it, immutable and shareable between threads (expr.h). */
    struct expr *if_compiled;           /* the `if`, or NULL */
    struct expr *expr;                  /* the type's expression (def_check_expression):
                                           condition, transform: config.expression */
    struct config_templates *templates; /* the config's {{ }} strings, or NULL when none
                                           (for condition/transform, `expression` is
                                           not a template) */
};

struct plan {
    atomic_int refs;
    char *name;
    char *version;      /* the definition's own informational version, or NULL */
    char *description;  /* or NULL */
    json_t *input;      /* default input object, never NULL (empty when absent) */
    int64_t timeout_ms; /* whole run; 0 means none */
    /* how long its finished runs are kept (retain_finished); 0: the server's window */
    int64_t retain_finished_ms;
    int code_version; /* > 0: a code-first workflow, no steps (engine/code.c) */
    /* `concurrency: {key, limit}`: at most concurrency_limit runs of this
     * workflow name (per value of the key, when there is one) execute at
     * once (engine/flow.c); 0: no limit. */
    int concurrency_limit;
    char *concurrency_key;                 /* the jq source, or NULL: one group per name */
    struct expr *concurrency_key_compiled; /* or NULL */
    struct plan_step *steps;               /* file order */
    size_t n_steps;
    size_t *topo;       /* n_steps indices: stable topological order */
    json_t *definition; /* the parsed definition as given */
    json_t *step_index; /* id -> index (integer), for plan_step_index */
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

/* The text formats of a definition, for def_parse_any(). */
enum def_format {
    DEF_FORMAT_AUTO = 0, /* JSON when it starts with '{' or '[', else YAML (see def_parse_any) */
    DEF_FORMAT_JSON,
    DEF_FORMAT_YAML,
};

/* The type a step's `type` names, or NULL when none has it. Called on the parsing thread; the
 * result must outlive every plan parsed with it. */
typedef const durable_step_type *(*def_find_type_fn)(void *ud, const char *name);

/* The name of the i-th step type find_type knows, NULL past the last:
 * the candidates of "did you mean" for a type no lookup finds. */
typedef const char *(*def_type_name_fn)(void *ud, size_t i);

/* The i-th known business action's name, NULL past the last (the built-in
 * ones: the store's store_builtin_action_name; the engine adds the
 * registered ones). */
typedef const char *(*def_action_name_fn)(void *ud, size_t i);

struct def_options {
    /* Step types by name; NULL leaves every step's type NULL, unchecked. */
    def_find_type_fn find_type;
    void *find_type_ud;
    /* Their names (same ud). With it, a name find_type does not know is
     * an error; without it, a task. */
    def_type_name_fn type_name;
    /* The known action names (called with find_type_ud); NULL accepts any
     * name. */
    def_action_name_fn action_name;
    /* Used by def_parse_any() only; def_parse and def_parse_yaml ignore it. */
    enum def_format format;
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
 *   steps[1].if: jq: syntax error, unexpected end of expression at <top-level>, line 1
 *   steps[2].config.expression: jq: syntax error, ...        (condition, transform)
 *   steps[3].config.message: expression at offset 2: jq: ... (a {{ }} template in any string)
 *   steps[4].config.expression: required                     (condition, transform; log's message;
 *                                                             http_request's url)
 *   steps[5].config: a delay needs "seconds" or "until"
 *   steps[5].config.until: expected an RFC 3339 date-time such as "2026-11-22T13:05:00Z", got "x"
 *   steps[6].config.on_timeout: expected one of reject, approve, fail, got "maybe"
 *   steps[7].config.url: expected an http:// or https:// URL, got "ftp://x"
 *   (a config value that is a {{ }} template is checked when rendered, by the step type)
 *   steps[2].depends_on[0]: unknown step "chrage" (did you mean "charge"?)
 *   steps[1].depends_on[0]: step "x" depends on itself
 *   steps[1].depends_on[1]: duplicate dependency "a"
 *   steps[1].config.action: unknown action "chrage_payment" (did you mean "charge_payment"?)
 *   steps[1].action: action "a" does not match config.action "b"
 *   steps[1].config.action: action "b" does not match the step's action "a"
 *   steps: cycle validate → charge → validate      one per strongly connected component
 *   warning: steps[0].config.foo: unknown field "foo"
 *   warning: steps[0].config.max_retries: ignored: retry.max_attempts takes precedence
 *   warning: steps[0].max_retries: ignored: retry.max_attempts takes precedence
 *   warning: steps[0].config.max_retries: ignored: the step's max_retries takes precedence
 * Plan: steps in file order; deps in the order written; dependents
 * ascending; topo is Kahn's algorithm taking the ready step with the lowest
 * file index; plan->definition holds a reference to the parsed document. */
durable_code def_parse(const char *text, size_t len, const struct def_options *opts,
                       struct plan **out_plan, struct def_report *report, durable_error *err);

/* Parses and validates a YAML definition: the same contract, schema and
 * messages as def_parse(), with these differences. opts->format is ignored.
 *
 * The document: exactly one YAML document, whose root is a mapping with
 * string keys. Plain scalars are typed as YAML 1.1 users expect: null (~,
 * null, Null, NULL, nothing), booleans (true/false, yes/no, on/off, each
 * also Capitalised or UPPER; not y/n), integers (decimal as in YAML 1.2, so
 * 010 is ten; 0x1F; 0o17; no 1_000, no 0b101, no sexagesimal), floats (1.5,
 * .5, 1., 1e3, -2.5E-3); anything else (dates too) is a string, and so is
 * every quoted or block scalar. The standard tags !!str !!int !!float !!bool
 * !!null !!map !!seq and the non-specific "!" are honoured; any other tag is
 * an error. Anchors and aliases are expanded (an alias is a copy); merge
 * keys ("<<: *base" or "<<: [*a, *b]") are supported: explicit keys win
 * over merged ones, earlier merged mappings over later ones. A top-level
 * `version` written as a plain number is kept as a string, as written
 * (version: 1.10 is "1.10", not 1.1).
 *
 * The older shape is accepted and rewritten to the current one (the
 * document in plan->definition has the current shape; messages name fields
 * as the user wrote them): `tasks` for `steps`; `type: activity` with
 * `activity_type: X` for `type: X` (X = human_approval becomes approval);
 * in a step, `timeout` and `start_to_close_timeout` for `timeout_seconds`,
 * `retry_policy` for `retry`; in a retry policy, `maximum_attempts` for
 * `max_attempts`, `initial_interval` for `initial_interval_seconds`,
 * `max_interval` and `maximum_interval` for `max_interval_seconds`,
 * `multiplier` for `backoff_coefficient`, `non_retryable_error_types` for
 * `non_retryable_errors`. These older duration fields take a number of
 * seconds or a string NUMBER UNIT, unit ms, s, m, h or d ("500ms", "1.5m").
 *
 * Messages. A YAML-level problem stops the parse with one error (code
 * DURABLE_ESYNTAX unless said), located by line and column, 1-based, in
 * characters (libyaml's texts, with the context's start when it differs):
 *   line 3, column 5: mapping values are not allowed in this context
 *   line 6, column 6: did not find expected key while parsing a block mapping started at line 3,
 * column 5 line 3, column 1: tab characters cannot indent YAML; use spaces     (any error at a tab)
 *   line 1, column 10: invalid UTF-8: incomplete sequence starting with byte 0xe9
 *   line 2, column 15: invalid UTF-8: unexpected byte 0xff
 *   line 2, column 16: control characters are not allowed (U+0001)
 *   line 3, column 10: unexpected NUL byte
 *   line 1, column 7: NUL characters are not allowed in strings         ("\0" escapes)
 *   line 4, column 3: duplicate key "id" (first at line 2, column 3)
 *   line 5, column 7: mapping keys must be strings: on is read as a boolean (write "on")
 *   line 5, column 7: mapping keys must be strings: ~ is read as null (write "~")
 *   line 3, column 5: mapping keys must be strings, got sequence
 *   line 4, column 13: unsupported tag "!secret"
 *   line 4, column 32: "1.5" is not a valid !!int
 *   line 4, column 32: .inf is not a number JSON can hold
 *   line 2, column 12: integer 99999999999999999999 is too big
 *   line 2, column 44: number 1e400 is too big
 *   line 4, column 13: alias *defaults has no anchor before it
 *   line 2, column 5: merge key "<<" needs a mapping or a sequence of mappings, got number
 *   line 5, column 11: merge key "<<" needs a mapping or a sequence of mappings, got number in the
 * sequence line 3, column 1: expected one YAML document, found a second one line 2, column 519:
 * nesting is deeper than 512 levels line 8, column 20: the document has more than 524288 nodes once
 * aliases are expanded   (ETOOBIG) line 8, column 14: the document has more than 1048576 bytes of
 * text once aliases are expanded   (ETOOBIG) definition is larger than 1048576 bytes once converted
 * to JSON     (ETOOBIG) a workflow definition must be a mapping, got sequence              (EINVAL)
 *   the definition is empty: it holds no YAML document                 (EINVAL)
 * Validation messages are those of def_parse, and each diagnostic at a
 * path carries, between the path and the message, where the value it is
 * about was written; for a missing value, where its mapping was; inside a
 * copy made for an alias, where the alias is:
 *   steps[2].depends_on[0] (line 15, column 9): unknown step "chrage" (did you mean "charge"?)
 *   steps[2].id (line 13, column 5): required
 *   warning: steps[2].colour (line 16, column 13): unknown field "colour"
 * Diagnostics about the whole document or the graph (`name: required`,
 * `steps: cycle ...`) carry no location. Paths name fields as written
 * (`tasks[4].timeout`, not `steps[4].timeout_seconds`). Mistakes in the
 * older shape come first, all listed, and validation still runs (EINVAL):
 *   tasks (line 3, column 3): "tasks" is an older name of "steps", which is also given
 *   tasks[0].timeout (line 4, column 14): "timeout" is an older name of "timeout_seconds", which is
 * also given tasks[1].start_to_close_timeout (line 8, column 29): "start_to_close_timeout" is an
 * older name of "timeout_seconds", which is also given (as "timeout") tasks[2].timeout (line 10,
 * column 14): expected a duration such as "30s", "5m" or "1h", got "soon" tasks[0].type (line 4,
 * column 11): type "activity" needs activity_type (the step type, such as http_request)
 *   tasks[1].activity_type (line 6, column 20): activity_type needs type "activity"
 *   tasks[2].activity_type (line 9, column 20): activity_type needs type "activity", got "task"
 *   tasks[3].activity_type (line 12, column 20): expected a string, got number */
durable_code def_parse_yaml(const char *text, size_t len, const struct def_options *opts,
                            struct plan **out_plan, struct def_report *report, durable_error *err);

/* def_parse() or def_parse_yaml() as opts->format says (opts may be NULL:
 * AUTO). AUTO reads the text as JSON when its first character other than
 * space, tab, CR or LF is '{' or '[', or when there is none; otherwise as
 * YAML, unless the YAML document is a scalar alone: such a text is no
 * definition in either format, and is read as JSON so that JSON values
 * ("5", "null", a misspelt "nul") get JSON's messages. A YAML definition
 * in flow style ("{name: x, ...}") therefore needs DEF_FORMAT_YAML, or a
 * "---" line before it. The public durable_validate() uses AUTO. */
durable_code def_parse_any(const char *text, size_t len, const struct def_options *opts,
                           struct plan **out_plan, struct def_report *report, durable_error *err);

struct plan *plan_ref(struct plan *p);
void plan_unref(struct plan *p); /* frees at zero; accepts NULL */

/* Index of the step with this id, or -1. */
long plan_step_index(const struct plan *p, const char *id);

/* Back-off before attempt `next_attempt` (>= 2) after attempt next_attempt-1
 * failed: initial * coefficient^(next_attempt-2), capped at max, in ms. */
int64_t def_retry_delay_ms(const struct retry_policy *r, int next_attempt);

/* Parses an RFC 3339 date-time ("2026-11-22T13:05:01.123Z", offsets
 * "+02:00" allowed; "t" and "z" accepted; a space is not) into Unix ms.
 * False when s is not one, or out of the years 1970..9999. */
bool def_parse_rfc3339(const char *s, int64_t *out_ms);

/* True when v is a string holding `{{`: its value is known only once the
 * config is rendered, so static checks leave it to the step type. */
bool def_is_templated(const json_t *v);

/* ---- checking a step's config (durable_step_check) ----
 *
 * A step type's check() gets one durable_step_check for the step; these
 * are the def layer's side of it, for the built-in types (steps/), which
 * report at paths below the step's config exactly as the rest of the
 * definition is reported ("steps[2].config.url (line 9, column 12): ...").
 * The current path starts at the step's config; every report is made at
 * the current path. All of it happens on the parsing thread, during
 * check(). */

/* The step's config: an object, borrowed for the check. */
json_t *def_check_config(const durable_step_check *chk);
void def_check_error(durable_step_check *chk, const char *fmt, ...) DUR_PRINTF(2, 3);
void def_check_warn(durable_step_check *chk, const char *fmt, ...) DUR_PRINTF(2, 3);
/* Path stack: each push returns a mark to pop back to. */
size_t def_check_key(durable_step_check *chk, const char *key);
size_t def_check_index(durable_step_check *chk, size_t i);
void def_check_pop(durable_step_check *chk, size_t mark);

/* A config member's checker: v is the value, the path points at it. */
struct def_check_field {
    const char *key;
    void (*fn)(durable_step_check *chk, json_t *v);
};
/* Walks the config's members in document order: each known key goes to its
 * checker, `action` (the step's business action, any type) to the def
 * layer's, anything else is the warning `unknown field "KEY"`. */
void def_check_walk(durable_step_check *chk, const struct def_check_field *fields, size_t n);
/* config.max_retries, the older shape's retry count (N retries: N+1
 * attempts; retry.max_attempts wins), for the types that take it. */
void def_check_max_retries(durable_step_check *chk, json_t *v);
/* Reports `required` at config.KEY when the config has no such member. */
void def_check_require(durable_step_check *chk, const char *key);

/* Type and range checks at the current path: each reports and returns false
 * when v is unusable, and on success stores it. */
bool def_check_string(durable_step_check *chk, const json_t *v, const char **out);
bool def_check_number(durable_step_check *chk, const json_t *v, double lo, double hi, bool lo_open,
                      double *out);
bool def_check_int(durable_step_check *chk, const json_t *v, int lo, int hi, int *out);
/* A number of seconds in [0, DEF_MAX_SECONDS] ((0, ...] when lo_open), or a template. */
void def_check_seconds(durable_step_check *chk, const json_t *v, bool lo_open);
/* A string among allowed (NULL-terminated; any case when any_case), or a template. */
void def_check_one_of(durable_step_check *chk, const json_t *v, const char *const *allowed,
                      bool any_case);

/* A value quoted for a message: JSON escapes, cut at a character boundary
 * with "..." when long. Returns q->s. */
struct def_quoted {
    char s[128];
};
const char *def_quote(struct def_quoted *q, const char *s);
/* The JSON type of v as a noun: "string", "number", "object", ... */
const char *def_type_name(const json_t *v);

/* Compiles src (the path points at it) as the step's expression
 * (plan_step.expr, evaluated on the run context), or reports jq's error. */
void def_check_expression(durable_step_check *chk, const char *src);
/* Config member `key` is no {{ }} template (an expression of its own):
 * the templates compiled after check() leave it alone. */
void def_check_not_template(durable_step_check *chk, const char *key);
/* Keeps data (parsed from the config) in plan_step.type_data, freed with
 * the plan by free_fn (may be NULL). Replaces what was kept before. */
void def_check_set_data(durable_step_check *chk, void *data, void (*free_fn)(void *data));
/* What def_check_set_data kept, or NULL. */
void *def_check_data(const durable_step_check *chk);
/* Parses v (the path points at it) as a step inside the config: its
 * type (resolved like a step's, a located error with a suggestion for an
 * unknown name), config (checked by that type, its {{ }} templates
 * compiled), retry, timeout_seconds, max_retries and name; no id,
 * depends_on, if or action (warned as unknown fields). Always returns a
 * step (def_sub_step_free), its step_type NULL when unknown. A map's
 * template (steps/map.c). */
struct plan_step *def_check_sub_step(durable_step_check *chk, json_t *v);
void def_sub_step_free(struct plan_step *st); /* accepts NULL */

#endif
