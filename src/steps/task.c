/*
 * task.c - the `task` step type: a simulated unit of work.
 *
 * start() asks for a timer of duration_seconds (a timer, not a sleeping
 * thread, so 10,000 tasks in flight cost 10,000 heap entries); timer() then
 * fails at random with fail_probability or succeeds with
 * {"duration_seconds": d}. A task of 0 s does the latter in start(). Also
 * holds the registry of step types.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>
#include <stdio.h>

static void task_timer(const struct step_call *c, struct step_outcome *out)
{
    double p = c->step->fail_probability;

    if (p > 0 && rand_unit() < p) {
        steps_fail(out, "random_failure", "simulated failure (fail_probability %g)", p);
        return;
    }
    out->kind = STEP_OUT_DONE;
    out->output = json_pack("{s:f}", "duration_seconds", c->step->duration_s);
}

/* A task of 0 s answers at once, without a trip through the timer heap. */
static void task_start(const struct step_call *c, struct step_outcome *out)
{
    int64_t ms = (int64_t)llround(c->step->duration_s * 1000.0);

    if (ms <= 0) {
        task_timer(c, out);
        return;
    }
    out->kind = STEP_OUT_TIMER;
    out->timer_ms = ms;
}

static const struct step_type task_type = {
    .kind = STEP_TASK,
    .pure_start = true,
    .start = task_start,
    .timer = task_timer,
};

const struct step_type *steps_type_for(enum step_kind kind)
{
    switch (kind) {
    case STEP_TASK:
        return &task_type;
    case STEP_CONDITION:
        return &steps_condition_type;
    case STEP_TRANSFORM:
        return &steps_transform_type;
    case STEP_LOG:
        return &steps_log_type;
    case STEP_DELAY:
        return &steps_delay_type;
    case STEP_APPROVAL:
        return &steps_approval_type;
    case STEP_HTTP_REQUEST:
        return &steps_http_type;
    case STEP_WORKFLOW:
        return &steps_workflow_type;
    default:
        return NULL;
    }
}

void steps_fail(struct step_outcome *out, const char *code, const char *fmt, ...)
{
    va_list ap;

    out->kind = STEP_OUT_FAIL;
    snprintf(out->error_code, sizeof(out->error_code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(out->error_msg, sizeof(out->error_msg), fmt, ap);
    va_end(ap);
}
