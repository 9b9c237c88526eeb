/*
 * expr.h - jq expressions and {{ }} templates over a run's context.
 *
 * SPEC §3: `if`, `condition` and `transform` hold a jq program, and strings
 * in a step's `config` may hold `{{ EXPR }}` templates. Both are evaluated
 * against the run context {"input": ..., "steps": {"ID": {"status": ...,
 * "output": ...}}, "run": {"id": ...}}. Everything is compiled once, when a
 * definition is registered, so a syntax error is a validation error and not
 * a failed run; evaluation then only runs the compiled program.
 *
 * Main types, all immutable once compiled and shareable between threads:
 *   struct expr              one compiled jq program (expr.c)
 *   struct template          a string with {{ }} parts (template.c)
 *   struct config_templates  a config object with its templated strings
 *                            (template.c)
 *
 * Semantics. An expression yields its first output; a program with no
 * output (`empty`, `halt`) yields JSON null. Values cross as jansson json_t;
 * numbers inside jq are doubles, so an integer beyond 2^53 loses precision
 * on the way in, and a result that is integral (and fits int64) comes back
 * as a JSON integer, any other number as a real (NaN as null, infinities as
 * the largest finite double, as jq prints them). A template that is exactly
 * one `{{ EXPR }}` keeps the value's JSON type; otherwise each value is
 * interpolated as jq's `tostring` would (strings raw, others compact JSON).
 *
 * Sandbox and libjq 1.6 work-arounds (details in expr.c). Every program is
 * wrapped so that: `env` and `$ENV` are {}, `input`/`inputs` fail, `stderr`
 * and `debug` print nothing, `import`/`include` are refused (libjq aborts
 * the process on an import without a library path), `halt` ends the program
 * without output (null), `halt_error` is `error(.)`, and the program stops
 * right after its first output, so infinite generators (`repeat(1)`) are
 * fine. One wart of the wrapper: a program ending in a dangling
 * `EXPR as $x` is accepted (as `EXPR as $x | .`).
 *
 * What jq 1.6 leaves open, in process: no cap on evaluation time or memory.
 * `until(false; .)` or a catastrophic regex never returns (and holds the jq
 * mutex, so every other expression waits), and a program that allocates
 * absurdly (`[] | .[1e9] = 1`, `"" | gsub(""; "x")`) makes libjq abort the
 * process on out-of-memory. A program stopped early inside a path
 * expression (`first(paths)`, `any(paths; f)`) leaks a few dozen bytes
 * inside libjq per evaluation. libjq also loads `$HOME/.jq` into every
 * program if that file exists, as the jq command does. Results are capped at
 * EXPR_MAX_OUTPUT bytes, inputs and results at EXPR_MAX_DEPTH levels.
 *
 * Threads. libjq 1.6 is not thread-safe (global state in the error callback
 * plumbing, dtoa and builtins; non-atomic jv reference counts). Every libjq
 * call of this layer runs under one process-wide mutex in expr.c, a leaf
 * lock held for one compile or one evaluation (never across a callback or
 * I/O), so every function here may be called from any thread: the engine
 * evaluates on its scheduler thread while registrations compile on HTTP
 * threads. A compile costs 15-30 ms of libjq time (it re-binds jq's builtins
 * each time) and blocks evaluations meanwhile; identical sources therefore
 * share one compiled program (a refcounted cache, also under the mutex).
 *
 * Errors: DURABLE_EINVAL for a bad expression or template (message
 * "jq: syntax error, ... at <top-level>, line 1"), DURABLE_ETOOBIG over a
 * limit, DURABLE_ESTEP for a runtime error ("jq: Cannot index string with
 * string \"b\""). Config errors name the path ("config.url: jq: ...").
 */
#ifndef DURABLE_EXPR_EXPR_H
#define DURABLE_EXPR_EXPR_H

#include "util/common.h"

#include <jansson.h>

#include "durable.h"
#include "util/util.h"

#define EXPR_MAX_SRC_LEN   16384 /* bytes of one expression */
#define EXPR_MAX_DEPTH     256   /* nesting of inputs and results (jq's parser limit) */
#define EXPR_MAX_OUTPUT    ((size_t)1024 * 1024) /* bytes of results per call, compact JSON */
#define EXPR_MAX_TEMPLATES 256                   /* {{ }} expressions in one template or config */

struct expr;
struct template;
struct config_templates;

/* ---- expressions ---- */

/* Compiles the jq program src (borrowed). OUT *out: a new reference, release
 * with expr_free(); set to NULL on failure. DURABLE_EINVAL for a syntax or
 * binding error (an empty program is one), DURABLE_ETOOBIG over
 * EXPR_MAX_SRC_LEN. Takes the jq mutex. */
durable_code expr_compile(const char *src, struct expr **out, durable_error *err);

/* Runs e on context (borrowed, not modified). OUT *out: a new reference to
 * the first output, JSON null when there is none; NULL on failure.
 * DURABLE_ESTEP for a jq runtime error (`error(x)`, `halt_error`), DURABLE_ETOOBIG
 * when context or the result is nested deeper than EXPR_MAX_DEPTH or the
 * result is over EXPR_MAX_OUTPUT. Takes the jq mutex. */
durable_code expr_eval(const struct expr *e, json_t *context, json_t **out, durable_error *err);

/* The program text as compiled. Valid while e is. */
const char *expr_source(const struct expr *e);

/* jq truthiness: false and null (and a NULL pointer) are false, anything
 * else, including 0 and "", is true. */
bool expr_truthy(json_t *v);

/* Drops a reference; accepts NULL. Takes the jq mutex. */
void expr_free(struct expr *e);

/* ---- templates ---- */

/* Parses s (borrowed): text outside `{{ ... }}` is literal; inside, the
 * trimmed text is a jq program. The closing `}}` is found the way jq reads
 * the program, so braces of object literals and `}}` inside jq strings do
 * not close it. A string without `{{` is a literal template. OUT *out on
 * success (expr_template_free), NULL on failure: DURABLE_EINVAL for an
 * unterminated `{{` or an empty expression (message gives the byte offset of
 * the `{{`) or a jq error (prefixed "expression at offset N: " when the
 * string is more than one template). There is no escape for a literal
 * `{{`: a string that needs one can use `{{ "{{" }}`. */
durable_code expr_template_compile(const char *s, struct template **out, durable_error *err);

/* True when t is exactly one `{{ EXPR }}` and so keeps its value's type. */
bool expr_template_is_single(const struct template *t);

/* True when t has at least one `{{ }}` part. */
bool expr_template_has_exprs(const struct template *t);

/* Renders t against ctx (borrowed). OUT *out: a new reference, the value of
 * a single template or else a JSON string; NULL on failure. Errors as
 * expr_eval; all of t's expressions run under one hold of the jq mutex and
 * share the EXPR_MAX_OUTPUT budget. */
durable_code expr_template_render(const struct template *t, json_t *ctx, json_t **out,
                                  durable_error *err);

/* Accepts NULL. */
void expr_template_free(struct template *t);

/* ---- configs ---- */

/* Walks config (borrowed; any JSON value, usually a step's config object)
 * and compiles every string that contains `{{`, in objects and arrays at any
 * depth (not object keys). OUT *out on success (keeps its own copy of
 * config), NULL on failure. Errors name the path: `config.url: jq: ...`,
 * `config.items[2]: unterminated "{{" at offset 4`. DURABLE_ETOOBIG for more
 * than EXPR_MAX_TEMPLATES expressions or config nested deeper than
 * EXPR_MAX_DEPTH. */
durable_code expr_config_compile(json_t *config, struct config_templates **out, durable_error *err);

/* Number of templated strings found (0: rendering returns a plain copy). */
size_t expr_config_n_templates(const struct config_templates *c);

/* Renders a deep copy of the config with every templated string replaced by
 * its rendered value. OUT *out: a new reference; NULL on failure, with the
 * path in the message (`config.url: jq: ...`). An expression that yields
 * null (or nothing) is DURABLE_ESTEP `config.url: template "{{ .input.ulr }}"
 * rendered null`: in a config it is almost always a mistyped path; a
 * definition says `// default` for an optional value. All the config's expressions
 * run under one hold of the jq mutex and share the EXPR_MAX_OUTPUT budget. */
durable_code expr_config_render(const struct config_templates *c, json_t *ctx, json_t **out,
                                durable_error *err);

/* Accepts NULL. */
void expr_config_free(struct config_templates *c);

#endif
