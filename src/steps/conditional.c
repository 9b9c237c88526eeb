/*
 * conditional.c - the `conditional` step type, the older orchestrator's
 * shape: config.condition {"field", "operator", "value"} tested on the
 * run's input; the step's output is true or false, which later steps
 * branch on like a `condition` step's (`"if": ".steps.ID.output"`, or
 * `"if": ".steps.ID.output | not"`).
 *
 * Operators: eq, ne (any value); gt, gte, lt, lte (a number or a string,
 * compared only with a field of the same type: otherwise false); in (an
 * array holding the field's value); contains (the field is a string
 * holding the value, an array with an element equal to it, or an object
 * with that key); exists (the field is present and not null; `value`
 * false asks for the opposite). A field is a key of the input, "a.b"
 * meaning key b of the object at a; one that cannot be reached is null.
 *
 * Like data_transform.c, the check translates the condition into a jq
 * program (field path and value as JSON literals) kept as the step's
 * expression, and the behaviour is `condition`'s (steps_eval_start).
 */
#include "util/common.h"

#include "steps/steps.h"

#include <stdlib.h>
#include <string.h>

/* An operator: its name, the jq testing $x (the field's value) against
 * $c (the condition's), and the types $c may have (a mask; 0: any). */
struct cond_op {
    const char *name;
    const char *jq;
    unsigned types;
};

#define T_NUM  (1u << 0)
#define T_STR  (1u << 1)
#define T_ARR  (1u << 2)
#define T_BOOL (1u << 3)

static const struct cond_op ops[] = {
    { "eq", "$x == $c", 0 },
    { "ne", "$x != $c", 0 },
    { "gt", "($x|type) == ($c|type) and $x > $c", T_NUM | T_STR },
    { "gte", "($x|type) == ($c|type) and $x >= $c", T_NUM | T_STR },
    { "lt", "($x|type) == ($c|type) and $x < $c", T_NUM | T_STR },
    { "lte", "($x|type) == ($c|type) and $x <= $c", T_NUM | T_STR },
    { "in", "any($c[]; . == $x)", T_ARR },
    { "contains",
      "($x|type) as $t | if $t == \"string\" then ($c|type) == \"string\" and ($x|contains($c))"
      " elif $t == \"array\" then any($x[]; . == $c)"
      " elif $t == \"object\" then ($c|type) == \"string\" and ($x|has($c)) else false end",
      0 },
    { "exists", "($x != null) == $c", T_BOOL },
};

static const struct cond_op *op_of(const char *name)
{
    for (size_t i = 0; i < DUR_ARRAY_LEN(ops); i++) {
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    }
    return NULL;
}

static bool type_ok(const json_t *v, unsigned types)
{
    return types == 0 || ((types & T_NUM) && json_is_number(v)) ||
           ((types & T_STR) && json_is_string(v)) || ((types & T_ARR) && json_is_array(v)) ||
           ((types & T_BOOL) && json_is_boolean(v));
}

static const char *types_text(unsigned types)
{
    switch (types) {
    case T_NUM | T_STR:
        return "a number or a string";
    case T_ARR:
        return "an array of values";
    default:
        return "true or false";
    }
}

/* ---- config ---- */

/* The operator at condition.operator (the path points at the condition),
 * or NULL (reported). */
static const struct cond_op *check_op(durable_step_check *chk, const json_t *cond)
{
    static const char *const names[] = { "eq",  "ne", "gt",       "gte",    "lt",
                                         "lte", "in", "contains", "exists", NULL };
    json_t *v = json_object_get(cond, "operator");
    size_t mark = def_check_key(chk, "operator");
    const struct cond_op *op = NULL;
    const char *s;

    if (!v)
        def_check_error(chk, "required");
    else if (def_check_string(chk, v, &s) && !(op = op_of(s)))
        def_check_one_of(chk, v, names, false);
    def_check_pop(chk, mark);
    return op;
}

/* The value as a JSON literal (exists: true when absent), or NULL
 * (reported). */
static char *check_value(durable_step_check *chk, const json_t *cond, const struct cond_op *op)
{
    json_t *v = json_object_get(cond, "value");
    size_t mark = def_check_key(chk, "value");
    char *text = NULL;

    if (!v && op->types == T_BOOL)
        text = xstrdup("true");
    else if (!v)
        def_check_error(chk, "required");
    else if (!type_ok(v, op->types))
        def_check_error(chk, "%s takes %s, got %s", op->name, types_text(op->types),
                        def_type_name(v));
    else
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    def_check_pop(chk, mark);
    return text;
}

static void unknown_members(durable_step_check *chk, json_t *cond)
{
    struct def_quoted q;
    const char *key;
    json_t *v;
    size_t mark;

    json_object_foreach(cond, key, v)
    {
        if (strcmp(key, "field") == 0 || strcmp(key, "operator") == 0 || strcmp(key, "value") == 0)
            continue;
        mark = def_check_key(chk, key);
        def_check_warn(chk, "unknown field %s", def_quote(&q, key));
        def_check_pop(chk, mark);
    }
}

static void cond_condition(durable_step_check *chk, json_t *v)
{
    const struct cond_op *op;
    char *path = NULL, *value = NULL, *prog = NULL;

    if (!json_is_object(v)) {
        def_check_error(chk, "expected an object {\"field\", \"operator\", \"value\"}, got %s",
                        def_type_name(v));
        return;
    }
    unknown_members(chk, v);
    path = steps_field_path(chk, v, "field");
    op = check_op(chk, v);
    if (op)
        value = check_value(chk, v, op);
    if (path && value) {
        prog = xasprintf("(.input | try getpath(%s) catch null) as $x | (%s) as $c | %s", path,
                         value, op->jq);
        def_check_expression(chk, prog);
    }
    free(prog);
    free(value);
    free(path);
}

/* clang-format off */
static const struct def_check_field cond_fields[] = {
    { "condition", cond_condition },
};
/* clang-format on */

static void cond_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "condition");
    def_check_walk(chk, cond_fields, DUR_ARRAY_LEN(cond_fields));
    def_check_not_template(chk, "condition");
}

const durable_step_type steps_conditional_type = {
    .name = "conditional",
    .check = cond_check,
    .start = steps_eval_start,
    .answers_at_once = true,
};
