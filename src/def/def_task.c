/*
 * def_task.c - one element of "steps": its fields, its type (looked up by
 * name through def_options.find_type; the type checks its own config), its
 * retry policy and its dependencies.
 *
 * Each field has a handler (tables below) that checks the value at the
 * current path and stores it in the plan step. Fields that depend on each
 * other are settled in step_finish once the whole step has been walked:
 * defaults, max_retries (the step's or its config's) against retry.max_attempts,
 * and the action.
 * `action` may be written on the step and in config (the old format); the
 * second of the two must agree with the first, and the name is checked
 * against the known actions where it first appears.
 */
#include "util/common.h"

#include <stdlib.h>
#include <string.h>

#include "def/def_int.h"

bool def_id_is_valid(const char *id)
{
    size_t i;

    for (i = 0; id[i]; i++) {
        char c = id[i];
        if (i >= DEF_MAX_ID_LEN)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return i > 0;
}

void def_action_check(struct parser *p, const char *action)
{
    def_action_name_fn name = p->opts ? p->opts->action_name : NULL;
    void *ud = p->opts ? p->opts->find_type_ud : NULL;
    struct def_quoted q1, q2;
    const char **known;
    const char *best;
    size_t n, i;

    if (!name)
        return;
    for (n = 0; name(ud, n); n++) {
        if (strcmp(name(ud, n), action) == 0)
            return;
    }
    known = xcalloc(n + 1, sizeof(*known));
    for (i = 0; i < n; i++)
        known[i] = name(ud, i);
    best = def_suggest(p, action, known, n, NULL);
    free(known);
    if (best)
        def_error(p, "unknown action %s (did you mean %s?)", def_quote(&q1, action),
                  def_quote(&q2, best));
    else
        def_error(p, "unknown action %s", def_quote(&q1, action));
}

/* The action written at the current path; `other` is the one written at the
 * other place (step or config), if seen already. */
static void action_seen(struct parser *p, const char *action, const char *other,
                        const char *other_where)
{
    struct def_quoted q1, q2;

    if (!other)
        def_action_check(p, action);
    else if (strcmp(action, other) != 0)
        def_error(p, "action %s does not match %s %s", def_quote(&q1, action), other_where,
                  def_quote(&q2, other));
}

/* ---- config members any type may take ---- */

void def_check_max_retries(durable_step_check *chk, json_t *v)
{
    def_get_int(chk->p, v, 0, DEF_MAX_ATTEMPTS - 1, &chk->c->max_retries);
}

void def_config_action(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    const char *s;

    if (!def_get_string(p, v, &s))
        return;
    action_seen(p, s, c->action, "the step's action");
    c->config_action = s;
}

/* ---- retry ---- */

static void retry_max_attempts(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    if (def_get_int(p, v, 1, DEF_MAX_ATTEMPTS, &c->st->retry.max_attempts))
        c->has_max_attempts = true;
}

static void retry_initial(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    def_get_number(p, v, 0, DEF_MAX_SECONDS, false, &c->st->retry.initial_interval_s);
}

static void retry_coefficient(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    def_get_number(p, v, 1, DEF_MAX_BACKOFF_COEFFICIENT, false, &c->st->retry.backoff_coefficient);
}

static void retry_max_interval(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    def_get_number(p, v, 0, DEF_MAX_SECONDS, false, &c->st->retry.max_interval_s);
}

static void retry_non_retryable(struct parser *p, void *ctx, json_t *v)
{
    struct retry_policy *r = &((struct step_ctx *)ctx)->st->retry;
    size_t i, mark;
    const char *s;

    if (!json_is_array(v)) {
        def_error(p, "expected an array of error codes, got %s", def_type_name(v));
        return;
    }
    r->non_retryable_errors = xcalloc(json_array_size(v), sizeof(char *));
    for (i = 0; i < json_array_size(v); i++) {
        mark = def_path_index(p, i);
        if (def_get_string(p, json_array_get(v, i), &s))
            r->non_retryable_errors[r->n_non_retryable_errors++] = xstrdup(s);
        def_path_pop(p, mark);
    }
}

/* clang-format off */
static const struct def_field retry_fields[] = {
    { "max_attempts", retry_max_attempts },
    { "initial_interval_seconds", retry_initial },
    { "backoff_coefficient", retry_coefficient },
    { "max_interval_seconds", retry_max_interval },
    { "non_retryable_errors", retry_non_retryable },
};
/* clang-format on */

/* ---- step fields ---- */

static void step_id(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    struct def_quoted q;
    const char *id;
    json_t *first;

    if (!def_get_string(p, v, &id))
        return;
    if (!def_id_is_valid(id)) {
        def_error(p, "invalid step id %s: use 1 to %d letters, digits, '_', '.' or '-'",
                  def_quote(&q, id), DEF_MAX_ID_LEN);
        return;
    }
    first = json_object_get(p->ids, id);
    if (first && (size_t)json_integer_value(first) != c->index) {
        def_error(p, "duplicate step id %s (first used by steps[%" JSON_INTEGER_FORMAT "])",
                  def_quote(&q, id), json_integer_value(first));
        return;
    }
    c->st->id = xstrdup(id);
}

/* A type no lookup knows: an error naming the closest known type, or the
 * known ones. A typo must not run as something else. */
static void type_unknown(struct parser *p, const char *type)
{
    const struct def_options *o = p->opts;
    struct def_quoted q1, q2;
    const char *known[64];
    const char *best;
    struct dbuf list;
    size_t n;

    for (n = 0; n < DUR_ARRAY_LEN(known) && o->type_name(o->find_type_ud, n); n++)
        known[n] = o->type_name(o->find_type_ud, n);
    best = def_suggest(p, type, known, n, NULL);
    if (best) {
        def_error(p, "unknown step type %s (did you mean %s?)", def_quote(&q1, type),
                  def_quote(&q2, best));
        return;
    }
    dbuf_init(&list, 0);
    for (size_t i = 0; i < n; i++)
        dbuf_addf(&list, "%s%s", i ? ", " : "", known[i]);
    def_error(p, "unknown step type %s (known: %s; \"task\" simulates a unit of work)",
              def_quote(&q1, type), list.buf);
    dbuf_release(&list);
}

static void step_type(struct parser *p, void *ctx, json_t *v)
{
    const struct def_options *o = p->opts;
    struct step_ctx *c = ctx;
    const char *type;

    if (!def_get_string(p, v, &type) || !type[0])
        return; /* blank: as absent, a task */
    c->st->type = xstrdup(type);
    if (o && o->find_type && o->type_name && !o->find_type(o->find_type_ud, type))
        type_unknown(p, type);
}

static void step_config(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    if (!json_is_object(v)) {
        def_error(p, "expected an object, got %s", def_type_name(v));
        return;
    }
    json_decref(c->st->config);
    c->st->config = json_incref(v);
    def_check_step_config(p, c, v);
}

/* One entry of depends_on: resolves it or says why not. */
static void step_dep(struct parser *p, struct step_ctx *c, json_t *v)
{
    struct def_quoted q1, q2;
    const char *name, *best;
    json_t *idx;
    size_t d;

    if (!json_is_string(v)) {
        def_error(p, "expected a step id, got %s", def_type_name(v));
        return;
    }
    name = json_string_value(v);
    idx = json_object_get(p->ids, name);
    if (!idx) {
        best = def_suggest(p, name, p->id_list, p->n_ids, c->st->id);
        if (best)
            def_error(p, "unknown step %s (did you mean %s?)", def_quote(&q1, name),
                      def_quote(&q2, best));
        else
            def_error(p, "unknown step %s", def_quote(&q1, name));
        return;
    }
    d = (size_t)json_integer_value(idx);
    if (d == c->index)
        def_error(p, "step %s depends on itself", def_quote(&q1, name));
    else if (p->dep_seen[d] == c->index + 1)
        def_error(p, "duplicate dependency %s", def_quote(&q1, name));
    else
        c->st->deps[c->st->n_deps++] = d;
    p->dep_seen[d] = c->index + 1;
}

static void step_depends_on(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    size_t i, mark;

    if (!json_is_array(v)) {
        def_error(p, "expected an array of step ids, got %s", def_type_name(v));
        return;
    }
    c->st->deps = xcalloc(json_array_size(v), sizeof(size_t));
    for (i = 0; i < json_array_size(v); i++) {
        mark = def_path_index(p, i);
        step_dep(p, c, json_array_get(v, i));
        def_path_pop(p, mark);
    }
}

static void step_if(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    const char *s;

    if (!def_get_string(p, v, &s))
        return;
    free(c->st->if_expr);
    c->st->if_expr = xstrdup(s);
    def_expr_compile(p, s, &c->st->if_compiled);
}

static void step_retry(struct parser *p, void *ctx, json_t *v)
{
    if (!json_is_object(v)) {
        def_error(p, "expected an object, got %s", def_type_name(v));
        return;
    }
    def_walk(p, v, retry_fields, DUR_ARRAY_LEN(retry_fields), ctx);
}

static void step_timeout(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    double s;

    if (def_get_number(p, v, 0, DEF_MAX_SECONDS, true, &s))
        c->st->timeout_ms = def_seconds_to_ms(s);
}

/* `rate_limit: {per_second: N}`. */
static void rate_per_second(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    double n;

    if (def_get_number(p, v, 0, 1000, true, &n))
        c->st->rate_per_second = n;
}

/* clang-format off */
static const struct def_field rate_fields[] = {
    { "per_second", rate_per_second },
};
/* clang-format on */

static void step_rate_limit(struct parser *p, void *ctx, json_t *v)
{
    if (!json_is_object(v)) {
        def_error(p, "expected an object such as {\"per_second\": 5}, got %s", def_type_name(v));
        return;
    }
    if (!json_object_get(v, "per_second")) {
        size_t mark = def_path_key(p, "per_second");
        def_error(p, "required");
        def_path_pop(p, mark);
    }
    def_walk(p, v, rate_fields, DUR_ARRAY_LEN(rate_fields), ctx);
}

/* The older orchestrator's step-level retry count: N retries, N+1 attempts. */
static void step_max_retries(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    def_get_int(p, v, 0, DEF_MAX_ATTEMPTS - 1, &c->step_max_retries);
}

static void step_name(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;

    def_get_label(p, v, DEF_MAX_NAME_LEN, &c->st->name);
}

static void step_action(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    const char *s;

    if (!def_get_string(p, v, &s))
        return;
    action_seen(p, s, c->config_action, "config.action");
    c->action = s;
}

/* clang-format off */
static const struct def_field step_fields[] = {
    { "id", step_id },
    { "type", step_type },
    { "config", step_config },
    { "depends_on", step_depends_on },
    { "if", step_if },
    { "retry", step_retry },
    { "timeout_seconds", step_timeout },
    { "max_retries", step_max_retries },
    { "name", step_name },
    { "action", step_action },
    { "rate_limit", step_rate_limit },
};
/* clang-format on */

/* Warns at `key` (below config when in_config) that it is ignored. */
static void warn_ignored(struct parser *p, bool in_config, const char *key, const char *why)
{
    size_t mark = p->path.len;

    if (in_config)
        def_path_key(p, "config");
    def_path_key(p, key);
    def_warn(p, "ignored: %s takes precedence", why);
    def_path_pop(p, mark);
}

/* The retry count written as max_retries (the step's, else its config's),
 * unless retry.max_attempts is given: max_attempts is N+1. */
static void step_retries(struct parser *p, struct step_ctx *c)
{
    bool at_step = c->step_max_retries >= 0;
    int n = at_step ? c->step_max_retries : c->max_retries;

    if (at_step && c->max_retries >= 0)
        warn_ignored(p, true, "max_retries", "the step's max_retries");
    if (n >= 0 && c->has_max_attempts)
        warn_ignored(p, !at_step, "max_retries", "retry.max_attempts");
    else if (n >= 0)
        c->st->retry.max_attempts = n + 1;
}

/* Settles what depends on several fields, once the step has been walked. */
static void step_finish(struct parser *p, struct step_ctx *c)
{
    struct plan_step *st = c->st;

    if (!st->type)
        st->type = xstrdup("task");
    if (!st->name && st->id)
        st->name = xstrdup(st->id);
    step_retries(p, c);
    if (c->action || c->config_action)
        st->action = xstrdup(c->action ? c->action : c->config_action);
}

/* The type a step's `type` names, "task" when it names none. A name the
 * lookup does not know is an error (step_type) and gives NULL, its config
 * unchecked; without type_name it is a task. NULL without a lookup. */
static const durable_step_type *find_type(struct parser *p, const char *name)
{
    const struct def_options *o = p->opts;
    const durable_step_type *t = NULL;

    if (!o || !o->find_type)
        return NULL;
    if (!name)
        return o->find_type(o->find_type_ud, "task");
    t = o->find_type(o->find_type_ud, name);
    return t || o->type_name ? t : o->find_type(o->find_type_ud, "task");
}

void def_step_parse(struct parser *p, size_t i, json_t *v)
{
    struct step_ctx c = {
        .index = i, .st = &p->plan->steps[i], .max_retries = -1, .step_max_retries = -1
    };
    const char *type;
    size_t mark;

    if (!json_is_object(v)) {
        def_error(p, "expected an object, got %s", def_type_name(v));
        return;
    }
    type = json_string_value(json_object_get(v, "type"));
    c.type = find_type(p, type && type[0] ? type : NULL);
    c.st->step_type = c.type;
    if (!json_object_get(v, "id")) {
        mark = def_path_key(p, "id");
        def_error(p, "required");
        def_path_pop(p, mark);
    }
    def_walk(p, v, step_fields, DUR_ARRAY_LEN(step_fields), &c);
    if (!json_object_get(v, "config")) {
        /* Types with required config fields say which are missing; a type
         * that parses its config into data (task) makes its defaults. */
        mark = def_path_key(p, "config");
        def_check_step_config(p, &c, c.st->config);
        def_path_pop(p, mark);
    }
    step_finish(p, &c);
}

/* ---- a step inside a step's config (a map's template) ---- */

/* clang-format off */
static const struct def_field sub_step_fields[] = {
    { "type", step_type },
    { "config", step_config },
    { "retry", step_retry },
    { "timeout_seconds", step_timeout },
    { "max_retries", step_max_retries },
    { "name", step_name },
};
/* clang-format on */

void def_sub_step_free(struct plan_step *st)
{
    if (!st)
        return;
    def_step_release(st);
    free(st);
}

struct plan_step *def_check_sub_step(durable_step_check *chk, json_t *v)
{
    struct parser *p = chk->p;
    struct plan_step *st = xcalloc(1, sizeof(*st));
    struct step_ctx c = { .index = SIZE_MAX, .st = st, .max_retries = -1, .step_max_retries = -1 };
    const char *type;
    size_t mark;

    st->config = json_object();
    st->retry.max_attempts = 1;
    st->retry.initial_interval_s = 1.0;
    st->retry.backoff_coefficient = 2.0;
    st->retry.max_interval_s = 60.0;
    if (!json_is_object(v)) {
        def_error(p, "expected an object, got %s", def_type_name(v));
        return st;
    }
    type = json_string_value(json_object_get(v, "type"));
    c.type = find_type(p, type && type[0] ? type : NULL);
    st->step_type = c.type;
    def_walk(p, v, sub_step_fields, DUR_ARRAY_LEN(sub_step_fields), &c);
    if (!json_object_get(v, "config")) {
        mark = def_path_key(p, "config");
        def_check_step_config(p, &c, st->config);
        def_path_pop(p, mark);
    }
    step_retries(p, &c);
    if (!st->type)
        st->type = xstrdup("task");
    return st;
}
