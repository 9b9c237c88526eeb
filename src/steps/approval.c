/*
 * approval.c - the `approval` step type: wait durably for a person's
 * decision.
 *
 * start() answers STEP_OUT_WAIT with wake-up time now + timeout_seconds, or
 * none (a waiting approval costs a row and nothing else). A person's
 * decision is a store transition made by durable_step_decide, not a call
 * here; timer() is the timeout: on_timeout reject (default) or approve
 * decide with by "timeout" (STEP_OUT_DECIDE), fail fails the attempt. The
 * config is the rendered one (templates allowed): values are checked again
 * here, an invalid one fails the attempt with "invalid_config".
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>
#include <string.h>

/* ---- config ---- */

static void approval_prompt(durable_step_check *chk, json_t *v)
{
    const char *s;

    def_check_string(chk, v, &s);
}

static void approval_timeout(durable_step_check *chk, json_t *v)
{
    def_check_seconds(chk, v, true);
}

static void approval_on_timeout(durable_step_check *chk, json_t *v)
{
    static const char *const allowed[] = { "reject", "approve", "fail", NULL };

    def_check_one_of(chk, v, allowed, false);
}

/* clang-format off */
static const struct def_check_field approval_fields[] = {
    { "prompt", approval_prompt },
    { "timeout_seconds", approval_timeout },
    { "on_timeout", approval_on_timeout },
};
/* clang-format on */

static void approval_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_walk(chk, approval_fields, DUR_ARRAY_LEN(approval_fields));
}

/* ---- behaviour ---- */

static void approval_start(durable_step_call *c, void *ud)
{
    json_t *prompt = json_object_get(c->config, "prompt");
    const char *on_timeout = json_string_value(json_object_get(c->config, "on_timeout"));
    double s = 0;

    (void)ud;
    if (json_object_get(c->config, "timeout_seconds") &&
        !steps_config_seconds(c, "timeout_seconds", true, &s, c->out))
        return;
    if (on_timeout && strcmp(on_timeout, "reject") != 0 && strcmp(on_timeout, "approve") != 0 &&
        strcmp(on_timeout, "fail") != 0) {
        steps_fail(c->out, STEPS_INVALID_CONFIG,
                   "config.on_timeout: expected reject, approve or fail, got \"%.40s\"",
                   on_timeout);
        return;
    }
    c->out->kind = STEP_OUT_WAIT;
    c->out->wake_at_ms = s > 0 ? clock_wall_ms() + llround(s * 1000.0) : 0;
    c->out->data = json_pack("{s:O?, s:s}", "prompt", prompt, "waiting_for", "approval");
}

static void approval_timer(durable_step_call *c, void *ud)
{
    const char *on_timeout = json_string_value(json_object_get(c->config, "on_timeout"));
    char buf[32];

    (void)ud;
    if (on_timeout && strcmp(on_timeout, "fail") == 0) {
        steps_fail(c->out, "approval_timeout", "no decision within %gs",
                   json_number_value(json_object_get(c->config, "timeout_seconds")));
        return;
    }
    c->out->kind = STEP_OUT_DECIDE;
    c->out->output = json_pack("{s:b, s:s, s:n, s:s}", "approved",
                               on_timeout && strcmp(on_timeout, "approve") == 0, "by", "timeout",
                               "comment", "at", steps_now_text(buf));
}

const durable_step_type steps_approval_type = {
    .name = "approval",
    .check = approval_check,
    .start = approval_start,
    .timer = approval_timer,
    .answers_at_once = true,
};
