/*
 * data_transform.c - the `data_transform` step type, the older
 * orchestrator's shape: config.transforms, a list of
 *   {"type": "rename", "from": F, "to": T}   move a field (absent: nothing)
 *   {"type": "copy", "from": F, "to": T}     copy a field (absent: nothing)
 *   {"type": "set", "field": F, "value": V}  set a field to V (any JSON)
 *   {"type": "delete", "field": F}           remove a field
 * applied in order to the run's input; the step's output is the result.
 * A field is a key of the object, "a.b" meaning key b of the object at a.
 *
 * The check translates the list into one jq program over the run context
 * (`.input | T1 | T2 ...`, field paths and values written as JSON
 * literals, so no user text is ever jq syntax) and keeps it as the step's
 * expression (plan_step.expr, compiled once at parse time); the behaviour
 * is then that of `transform` (steps_eval_start). One engine path for both
 * shapes, rather than a second interpreter of the same operations in C.
 * Values are taken as written: `{{ }}` in them is not a template.
 * Everything here runs on the parsing thread, or on the scheduler's.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <stdlib.h>
#include <string.h>

/* A transform's fields by its type: which of from/to/field/value it takes. */
struct transform_kind {
    const char *name;
    bool from_to; /* from, to; else field (and value when has_value) */
    bool has_value;
};

static const struct transform_kind kinds[] = {
    { "rename", true, false },
    { "copy", true, false },
    { "set", false, true },
    { "delete", false, false },
};

static const struct transform_kind *kind_of(const char *name)
{
    for (size_t i = 0; i < DUR_ARRAY_LEN(kinds); i++) {
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    }
    return NULL;
}

/* ---- config ---- */

char *steps_field_path(durable_step_check *chk, const json_t *t, const char *key)
{
    json_t *v = json_object_get(t, key), *keys;
    size_t mark = def_check_key(chk, key);
    const char *s, *dot;
    char *text = NULL;

    if (!v) {
        def_check_error(chk, "required");
    } else if (def_check_string(chk, v, &s)) {
        keys = json_array();
        for (; (dot = strchr(s, '.')) != NULL; s = dot + 1)
            json_array_append_new(keys, json_stringn(s, (size_t)(dot - s)));
        json_array_append_new(keys, json_string(s));
        text = json_dumps(keys, JSON_COMPACT);
        json_decref(keys);
        if (text && strstr(text, "\"\"") != NULL) { /* an empty key: "", "a.", "a..b" */
            def_check_error(chk, "expected a field name (\"a\", or \"a.b\" for key b of a)");
            free(text);
            text = NULL;
        }
    }
    def_check_pop(chk, mark);
    return text;
}

/* Warns of t's members that kind k does not take. */
static void unknown_members(durable_step_check *chk, json_t *t, const struct transform_kind *k)
{
    struct def_quoted q;
    const char *key;
    json_t *v;
    size_t mark;

    json_object_foreach(t, key, v)
    {
        bool known = strcmp(key, "type") == 0 ||
                     (k->from_to ? strcmp(key, "from") == 0 || strcmp(key, "to") == 0
                                 : strcmp(key, "field") == 0 ||
                                           (k->has_value && strcmp(key, "value") == 0));
        if (known)
            continue;
        mark = def_check_key(chk, key);
        def_check_warn(chk, "unknown field %s", def_quote(&q, key));
        def_check_pop(chk, mark);
    }
}

/* Appends the jq of transform t, of kind k (the path points at t). False
 * when a member is invalid (reported). */
static bool kind_prog(durable_step_check *chk, const json_t *t, const struct transform_kind *k,
                      struct dbuf *prog)
{
    char *a = steps_field_path(chk, t, k->from_to ? "from" : "field");
    char *b = k->from_to ? steps_field_path(chk, t, "to") : NULL;
    json_t *value = json_object_get(t, "value");
    char *v = NULL;
    size_t mark;
    bool ok = a && (b || !k->from_to);

    if (k->has_value && !value) {
        mark = def_check_key(chk, "value");
        def_check_error(chk, "required");
        def_check_pop(chk, mark);
        ok = false;
    }
    if (!ok) {
        /* nothing to write */
    } else if (strcmp(k->name, "rename") == 0) { /* the source absent (or null): nothing */
        dbuf_addf(prog,
                  "(getpath(%s) as $v | if $v == null then . else delpaths([%s]) | "
                  "setpath(%s; $v) end)",
                  a, a, b);
    } else if (strcmp(k->name, "copy") == 0) {
        dbuf_addf(prog, "(getpath(%s) as $v | if $v == null then . else setpath(%s; $v) end)", a,
                  b);
    } else if (k->has_value) { /* set: the value as a JSON literal, which jq reads as such */
        v = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        dbuf_addf(prog, "setpath(%s; %s)", a, v);
    } else {
        dbuf_addf(prog, "delpaths([%s])", a);
    }
    free(v);
    free(b);
    free(a);
    return ok;
}

/* Appends transform t's jq (the path points at t). False when invalid. */
static bool transform_prog(durable_step_check *chk, json_t *t, struct dbuf *prog)
{
    static const char *const names[] = { "rename", "copy", "set", "delete", NULL };
    const struct transform_kind *k;
    const char *type = NULL;
    size_t mark;

    if (!json_is_object(t)) {
        def_check_error(chk, "expected an object, got %s", def_type_name(t));
        return false;
    }
    mark = def_check_key(chk, "type");
    if (!json_object_get(t, "type"))
        def_check_error(chk, "required");
    else if (def_check_string(chk, json_object_get(t, "type"), &type) && !kind_of(type))
        def_check_one_of(chk, json_object_get(t, "type"), names, false);
    def_check_pop(chk, mark);
    k = type ? kind_of(type) : NULL;
    if (!k)
        return false;
    unknown_members(chk, t, k);
    return kind_prog(chk, t, k, prog);
}

static void dt_transforms(durable_step_check *chk, json_t *v)
{
    struct dbuf prog;
    size_t i, mark;
    bool ok = true;

    if (!json_is_array(v)) {
        def_check_error(chk, "expected an array of transforms, got %s", def_type_name(v));
        return;
    }
    dbuf_init(&prog, 0);
    dbuf_adds(&prog, ".input");
    for (i = 0; i < json_array_size(v); i++) {
        dbuf_adds(&prog, " | ");
        mark = def_check_index(chk, i);
        ok = transform_prog(chk, json_array_get(v, i), &prog) && ok;
        def_check_pop(chk, mark);
    }
    if (ok)
        def_check_expression(chk, prog.buf);
    dbuf_release(&prog);
}

/* clang-format off */
static const struct def_check_field dt_fields[] = {
    { "transforms", dt_transforms },
};
/* clang-format on */

static void dt_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "transforms");
    def_check_walk(chk, dt_fields, DUR_ARRAY_LEN(dt_fields));
    def_check_not_template(chk, "transforms");
}

const durable_step_type steps_data_transform_type = {
    .name = "data_transform",
    .check = dt_check,
    .start = steps_eval_start,
    .answers_at_once = true,
};
