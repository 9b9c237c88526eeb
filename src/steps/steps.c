/*
 * steps.c - what the step types share: the table of built-in types (what
 * the engine registers at durable_open, and what durable_validate looks
 * names up in), calling a type, the public accessors and answers of a
 * durable_step_call (durable.h), and small helpers.
 *
 * Everything here runs on the thread of the call (the scheduler's, or the
 * parsing thread for steps_builtin_find); nothing is shared, except a
 * pooled call's answer, which pool.c takes from any thread.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adding a type: its file, and its line here. */
/* clang-format off */
const durable_step_type *const steps_builtin[] = {
    &steps_task_type,
    &steps_http_type,
    &steps_delay_type,
    &steps_approval_type,
    &steps_wait_signal_type,
    &steps_map_type,
    &steps_condition_type,
    &steps_transform_type,
    &steps_log_type,
    &steps_workflow_type,
    &steps_data_transform_type,
    &steps_conditional_type,
    NULL,
};
/* clang-format on */

const durable_step_type *steps_builtin_find(void *ud, const char *name)
{
    size_t i;

    (void)ud;
    for (i = 0; steps_builtin[i]; i++) {
        if (strcmp(steps_builtin[i]->name, name) == 0)
            return steps_builtin[i];
    }
    return NULL;
}

const char *steps_builtin_name(void *ud, size_t i)
{
    size_t k;

    (void)ud;
    for (k = 0; steps_builtin[k] && k < i; k++)
        ;
    return steps_builtin[k] ? steps_builtin[k]->name : NULL;
}

void steps_call(const durable_step_type *t, durable_step_call *c, bool is_timer)
{
    c->out->kind = STEP_OUT_NONE;
    if (is_timer && !t->timer)
        steps_fail(c->out, "unsupported", "step type \"%s\" has no timer", t->name);
    else if (is_timer)
        t->timer(c, t->ud);
    else
        t->start(c, t->ud);
    if (c->out->kind == STEP_OUT_NONE)
        steps_fail(c->out, "no_answer", "step type \"%s\" did not answer", t->name);
    free(c->config_text);
    c->config_text = NULL;
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

bool steps_config_seconds(const durable_step_call *c, const char *key, bool positive,
                          double *seconds, struct step_outcome *out)
{
    json_t *v = json_object_get(c->config, key);
    double d;

    if (!json_is_number(v)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.%s: expected a number of seconds", key);
        return false;
    }
    d = json_number_value(v);
    if (!(d >= 0) || d > DEF_MAX_SECONDS || (positive && d == 0)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.%s: must be %s 0 and at most %d, got %g", key,
                   positive ? "greater than" : "at least", DEF_MAX_SECONDS, d);
        return false;
    }
    *seconds = d;
    return true;
}

const char *steps_now_text(char buf[32])
{
    clock_format_rfc3339(clock_wall_ms(), buf);
    return buf;
}

/* ---- the public side of a call (durable.h) ---- */

DURABLE_API const char *durable_step_call_run_id(const durable_step_call *call)
{
    return call->run_id;
}

DURABLE_API const char *durable_step_call_step_id(const durable_step_call *call)
{
    return call->step_id;
}

DURABLE_API int durable_step_call_attempt(const durable_step_call *call)
{
    return call->attempt;
}

DURABLE_API const char *durable_step_call_idempotency_key(const durable_step_call *call)
{
    return call->idempotency_key;
}

DURABLE_API const char *durable_step_call_config(durable_step_call *call)
{
    if (!call->config_text)
        call->config_text = json_dumps(call->config, JSON_COMPACT);
    return call->config_text ? call->config_text : "{}";
}

/* Gives the answer o to call: to the pool for a pooled call, else into
 * call->out unless it is answered already. */
static void answer(durable_step_call *call, struct step_outcome *o)
{
    if (call->is_pooled) {
        steps_pool_answer(call, o);
    } else if (call->out->kind == STEP_OUT_NONE) {
        *call->out = *o;
    } else {
        json_decref(o->output);
    }
}

DURABLE_API void durable_step_done(durable_step_call *call, const char *output_json)
{
    struct step_outcome o = { 0 };
    json_error_t jerr;

    o.output = json_loads(output_json ? output_json : "null", JSON_DECODE_ANY, &jerr);
    if (o.output)
        o.kind = STEP_OUT_DONE;
    else
        steps_fail(&o, "invalid_output", "the step's output is not JSON: %s", jerr.text);
    answer(call, &o);
}

DURABLE_API void durable_step_fail(durable_step_call *call, const char *code, const char *message)
{
    struct step_outcome o = { 0 };

    steps_fail(&o, code && code[0] ? code : "step_failed", "%s", message ? message : "");
    answer(call, &o);
}
