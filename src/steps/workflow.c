/*
 * workflow.c - the `workflow` step type: a child run.
 *
 * start() asks for a child run of config.workflow with config.input
 * (STEP_OUT_CHILD): the engine creates it (idempotency key: this step's
 * key, so a restart finds the same child) and ends the step with the
 * child's outcome: its output, or a failure. It starts runs, so its start
 * is not answered before the attempt's start has committed.
 */
#include "util/common.h"

#include "steps/steps.h"

/* ---- config ---- */

static void workflow_name(durable_step_check *chk, json_t *v)
{
    const char *s;

    if (def_check_string(chk, v, &s) && !s[0])
        def_check_error(chk, "must not be empty");
}

static void workflow_input(durable_step_check *chk, json_t *v)
{
    if (!def_is_templated(v) && !json_is_object(v))
        def_check_error(chk, "expected an object, got %s", def_type_name(v));
}

/* clang-format off */
static const struct def_check_field workflow_fields[] = {
    { "workflow", workflow_name },
    { "input", workflow_input },
};
/* clang-format on */

static void workflow_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "workflow");
    def_check_walk(chk, workflow_fields, DUR_ARRAY_LEN(workflow_fields));
}

/* ---- behaviour ---- */

static void workflow_start(durable_step_call *c, void *ud)
{
    json_t *wf = json_object_get(c->config, "workflow");
    json_t *input = json_object_get(c->config, "input");

    (void)ud;
    if (!json_is_string(wf) || json_string_length(wf) == 0) {
        steps_fail(c->out, STEPS_INVALID_CONFIG, "config.workflow: expected a workflow name");
        return;
    }
    if (input && !json_is_object(input)) {
        steps_fail(c->out, STEPS_INVALID_CONFIG, "config.input: expected an object");
        return;
    }
    c->out->kind = STEP_OUT_CHILD;
    c->out->data = json_pack("{s:O, s:O?}", "workflow", wf, "input", input);
}

const durable_step_type steps_workflow_type = {
    .name = "workflow",
    .check = workflow_check,
    .start = workflow_start,
};
