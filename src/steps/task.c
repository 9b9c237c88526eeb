/*
 * task.c - the `task` step type: a simulated unit of work.
 *
 * start() asks for a timer of duration_seconds (a timer, not a sleeping
 * thread, so 10,000 tasks in flight cost 10,000 heap entries); timer() then
 * fails at random with fail_probability or succeeds with
 * {"duration_seconds": d}. A task of 0 s does the latter in start().
 *
 * The config is parsed once, at parse time, into a struct task_params kept
 * by the plan step (plan_step.type_data), rather than read again from the
 * JSON config at every attempt: a task's start is on the scheduler's hot
 * path (W1/W2 benchmarks), where two object lookups per call would be
 * paid for nothing. The params are immutable, like the plan.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>
#include <stdlib.h>

struct task_params {
    double duration_s;       /* default 1.0, >= 0 */
    double fail_probability; /* default 0.0, in [0, 1] */
};

static const struct task_params default_params = { .duration_s = 1.0 };

/* ---- config ---- */

static void task_duration(durable_step_check *chk, json_t *v)
{
    struct task_params *tp = def_check_data(chk);

    def_check_number(chk, v, 0, DEF_MAX_SECONDS, false, &tp->duration_s);
}

static void task_fail_probability(durable_step_check *chk, json_t *v)
{
    struct task_params *tp = def_check_data(chk);

    def_check_number(chk, v, 0, 1, false, &tp->fail_probability);
}

/* clang-format off */
static const struct def_check_field task_fields[] = {
    { "duration_seconds", task_duration },
    { "fail_probability", task_fail_probability },
    { "max_retries", def_check_max_retries },
};
/* clang-format on */

static void task_check(durable_step_check *chk, void *ud)
{
    struct task_params *tp = xmalloc(sizeof(*tp));

    (void)ud;
    *tp = default_params;
    def_check_set_data(chk, tp, free);
    def_check_walk(chk, task_fields, DUR_ARRAY_LEN(task_fields));
}

/* ---- behaviour ---- */

static const struct task_params *params_of(const durable_step_call *c)
{
    return c->step->type_data ? c->step->type_data : &default_params;
}

static void task_timer(durable_step_call *c, void *ud)
{
    const struct task_params *tp = params_of(c);
    double p = tp->fail_probability;

    (void)ud;
    if (p > 0 && rand_unit() < p) {
        steps_fail(c->out, "random_failure", "simulated failure (fail_probability %g)", p);
        return;
    }
    c->out->kind = STEP_OUT_DONE;
    c->out->output = json_pack("{s:f}", "duration_seconds", tp->duration_s);
}

/* A task of 0 s answers at once, without a trip through the timer heap. */
static void task_start(durable_step_call *c, void *ud)
{
    int64_t ms = (int64_t)llround(params_of(c)->duration_s * 1000.0);

    if (ms <= 0) {
        task_timer(c, ud);
        return;
    }
    c->out->kind = STEP_OUT_TIMER;
    c->out->timer_ms = ms;
}

const durable_step_type steps_task_type = {
    .name = "task",
    .check = task_check,
    .start = task_start,
    .timer = task_timer,
    .answers_at_once = true,
};
