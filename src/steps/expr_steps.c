/*
 * expr_steps.c - the step types that only compute: `condition` and
 * `transform`. Their output is the value of config.expression (compiled at
 * parse time into plan_step.expr) on the run context. They are two names
 * of one behaviour and one schema, so they share this file.
 *
 * data_transform.c and conditional.c, the older orchestrator's shapes,
 * compile their configs into such an expression and share the behaviour
 * (steps_eval_start).
 *
 * Evaluation takes the jq mutex (expr.h) on the scheduler thread: an
 * evaluation is microseconds for the expressions a workflow holds; a
 * pathological program blocks the scheduler (expr.h says why jq 1.6 cannot
 * be interrupted).
 */
#include "util/common.h"

#include "steps/steps.h"

#include "expr/expr.h"

/* ---- config ---- */

static void expr_expression(durable_step_check *chk, json_t *v)
{
    const char *s;

    if (def_check_string(chk, v, &s))
        def_check_expression(chk, s);
}

/* clang-format off */
static const struct def_check_field expr_fields[] = {
    { "expression", expr_expression },
};
/* clang-format on */

static void eval_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "expression");
    def_check_walk(chk, expr_fields, DUR_ARRAY_LEN(expr_fields));
    def_check_not_template(chk, "expression");
}

/* ---- behaviour ---- */

void steps_eval_start(durable_step_call *c, void *ud)
{
    durable_error err = { 0 };
    json_t *v = NULL;

    (void)ud;
    if (!c->step->expr || !c->ctx) {
        steps_fail(c->out, STEPS_INVALID_CONFIG, "the step has no expression");
        return;
    }
    if (expr_eval(c->step->expr, c->ctx, &v, &err) != DURABLE_OK) {
        steps_fail(c->out, STEPS_EXPRESSION_ERROR, "%s", err.msg);
        return;
    }
    c->out->kind = STEP_OUT_DONE;
    c->out->output = v;
}

const durable_step_type steps_condition_type = {
    .name = "condition",
    .check = eval_check,
    .start = steps_eval_start,
    .answers_at_once = true,
};

const durable_step_type steps_transform_type = {
    .name = "transform",
    .check = eval_check,
    .start = steps_eval_start,
    .answers_at_once = true,
};
