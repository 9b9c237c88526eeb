/*
 * wait_steps.c - the step types that wait durably: `delay` and `approval`.
 *
 * Both answer start() with STEP_OUT_WAIT: the engine commits the step as
 * `waiting` with its wake-up time (TR_STEP_WAIT) before it arms a timer, so
 * a restart finds the time in the store and re-arms it (at once when it is
 * past). timer() is then called once the time comes:
 *   delay     wake-up = now + seconds, or `until`; timer() completes with
 *             {"woke_at"}.
 *   approval  wake-up = now + timeout_seconds, or none (a waiting approval
 *             costs a row and nothing else); a person's decision is a
 *             store transition made by durable_step_decide, not a call
 *             here; timer() is the timeout: on_timeout reject (default)
 *             or approve decide with by "timeout", fail fails the attempt.
 *   workflow  start a child run of config.workflow with config.input: the
 *             engine creates it (idempotency key: this step's key, so a
 *             restart finds the same child) and ends the step with the
 *             child's outcome: its output, or a failure.
 * The config is the rendered one (templates allowed): values are checked
 * again here, an invalid one fails the attempt with "invalid_config".
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>
#include <string.h>

static const char *now_text(char buf[32])
{
    clock_format_rfc3339(clock_wall_ms(), buf);
    return buf;
}

/* config[key] as seconds in [0, DEF_MAX_SECONDS] (> 0 when positive). */
static bool get_seconds(const struct step_call *c, const char *key, bool positive, double *out,
                        struct step_outcome *o)
{
    json_t *v = json_object_get(c->config, key);
    double d;

    if (!json_is_number(v)) {
        steps_fail(o, STEPS_INVALID_CONFIG, "config.%s: expected a number of seconds", key);
        return false;
    }
    d = json_number_value(v);
    if (!(d >= 0) || d > DEF_MAX_SECONDS || (positive && d == 0)) {
        steps_fail(o, STEPS_INVALID_CONFIG, "config.%s: must be %s 0 and at most %d, got %g", key,
                   positive ? "greater than" : "at least", DEF_MAX_SECONDS, d);
        return false;
    }
    *out = d;
    return true;
}

/* ---- delay ---- */

static void delay_start(const struct step_call *c, struct step_outcome *out)
{
    json_t *until = json_object_get(c->config, "until");
    int64_t wake;
    double s;

    if (until) {
        if (!json_is_string(until) || !def_parse_rfc3339(json_string_value(until), &wake)) {
            steps_fail(out, STEPS_INVALID_CONFIG,
                       "config.until: expected an RFC 3339 date-time such as "
                       "\"2026-11-22T13:05:00Z\"");
            return;
        }
    } else {
        if (!get_seconds(c, "seconds", false, &s, out))
            return;
        wake = clock_wall_ms() + llround(s * 1000.0);
    }
    out->kind = STEP_OUT_WAIT;
    out->wake_at_ms = wake > 0 ? wake : 1;
}

static void delay_timer(const struct step_call *c, struct step_outcome *out)
{
    char buf[32];

    (void)c;
    out->kind = STEP_OUT_DONE;
    out->output = json_pack("{s:s}", "woke_at", now_text(buf));
}

const struct step_type steps_delay_type = {
    .kind = STEP_DELAY,
    .pure_start = true,
    .start = delay_start,
    .timer = delay_timer,
};

/* ---- approval ---- */

static void approval_start(const struct step_call *c, struct step_outcome *out)
{
    json_t *prompt = json_object_get(c->config, "prompt");
    const char *on_timeout = json_string_value(json_object_get(c->config, "on_timeout"));
    double s = 0;

    if (json_object_get(c->config, "timeout_seconds") &&
        !get_seconds(c, "timeout_seconds", true, &s, out))
        return;
    if (on_timeout && strcmp(on_timeout, "reject") != 0 && strcmp(on_timeout, "approve") != 0 &&
        strcmp(on_timeout, "fail") != 0) {
        steps_fail(out, STEPS_INVALID_CONFIG,
                   "config.on_timeout: expected reject, approve or fail, got \"%.40s\"",
                   on_timeout);
        return;
    }
    out->kind = STEP_OUT_WAIT;
    out->wake_at_ms = s > 0 ? clock_wall_ms() + llround(s * 1000.0) : 0;
    out->data = json_pack("{s:O?, s:s}", "prompt", prompt, "waiting_for", "approval");
}

static void approval_timer(const struct step_call *c, struct step_outcome *out)
{
    const char *on_timeout = json_string_value(json_object_get(c->config, "on_timeout"));
    char buf[32];

    if (on_timeout && strcmp(on_timeout, "fail") == 0) {
        steps_fail(out, "approval_timeout", "no decision within %gs",
                   json_number_value(json_object_get(c->config, "timeout_seconds")));
        return;
    }
    out->kind = STEP_OUT_DECIDE;
    out->output = json_pack("{s:b, s:s, s:n, s:s}", "approved",
                            on_timeout && strcmp(on_timeout, "approve") == 0, "by", "timeout",
                            "comment", "at", now_text(buf));
}

const struct step_type steps_approval_type = {
    .kind = STEP_APPROVAL,
    .pure_start = true,
    .start = approval_start,
    .timer = approval_timer,
};

/* ---- workflow (child runs) ---- */

static void workflow_start(const struct step_call *c, struct step_outcome *out)
{
    json_t *wf = json_object_get(c->config, "workflow");
    json_t *input = json_object_get(c->config, "input");

    if (!json_is_string(wf) || json_string_length(wf) == 0) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.workflow: expected a workflow name");
        return;
    }
    if (input && !json_is_object(input)) {
        steps_fail(out, STEPS_INVALID_CONFIG, "config.input: expected an object");
        return;
    }
    out->kind = STEP_OUT_CHILD;
    out->data = json_pack("{s:O, s:O?}", "workflow", wf, "input", input);
}

const struct step_type steps_workflow_type = {
    .kind = STEP_WORKFLOW,
    .start = workflow_start,
};
