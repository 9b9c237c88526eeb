/*
 * expr_steps.c - the step types that only compute: `condition` and
 * `transform` (output: the value of config.expression, compiled at parse
 * time, on the run context) and `log` (config.message, a template rendered
 * by the engine before start, written to the log at config.level and kept
 * as the output, so it is in the history).
 *
 * Evaluation takes the jq mutex (expr.h) on the scheduler thread: an
 * evaluation is microseconds for the expressions a workflow holds; a
 * pathological program blocks the scheduler (expr.h says why jq 1.6 cannot
 * be interrupted).
 */
#include "util/common.h"

#include "steps/steps.h"

#include <string.h>

#include "expr/expr.h"

static void eval_start(const struct step_call *c, struct step_outcome *out)
{
    durable_error err = { 0 };
    json_t *v = NULL;

    if (!c->step->expr || !c->ctx) {
        steps_fail(out, STEPS_INVALID_CONFIG, "the step has no expression");
        return;
    }
    if (expr_eval(c->step->expr, c->ctx, &v, &err) != DURABLE_OK) {
        steps_fail(out, STEPS_EXPRESSION_ERROR, "%s", err.msg);
        return;
    }
    out->kind = STEP_OUT_DONE;
    out->output = v;
}

const struct step_type steps_condition_type = {
    .kind = STEP_CONDITION,
    .pure_start = true,
    .start = eval_start,
};

const struct step_type steps_transform_type = {
    .kind = STEP_TRANSFORM,
    .pure_start = true,
    .start = eval_start,
};

static durable_log_level level_of(const char *s)
{
    if (!s || strcmp(s, "info") == 0)
        return DURABLE_LOG_INFO;
    if (strcmp(s, "debug") == 0)
        return DURABLE_LOG_DEBUG;
    if (strcmp(s, "warn") == 0 || strcmp(s, "warning") == 0)
        return DURABLE_LOG_WARN;
    if (strcmp(s, "error") == 0)
        return DURABLE_LOG_ERROR;
    return (durable_log_level)-1;
}

static void log_start(const struct step_call *c, struct step_outcome *out)
{
    json_t *m = json_object_get(c->config, "message");
    const char *level = json_string_value(json_object_get(c->config, "level"));
    durable_log_level lv = level_of(level);
    char *text = NULL;

    if ((int)lv < 0) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.level: unknown level \"%.40s\"", level);
        return;
    }
    /* A message that is one template keeps its value's type: shown as JSON. */
    if (json_is_string(m))
        text = xstrdup(json_string_value(m));
    else
        text = json_dumps(m ? m : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    log_msg(lv, "run %s, step %s: %s", c->run_id, c->step->id, text ? text : "");
    out->kind = STEP_OUT_DONE;
    out->output = json_pack("{s:s}", "message", text ? text : "");
    free(text);
}

const struct step_type steps_log_type = {
    .kind = STEP_LOG,
    .pure_start = true,
    .start = log_start,
};
