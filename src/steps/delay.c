/*
 * delay.c - the `delay` step type: wait durably for config.seconds, or
 * until config.until (RFC 3339), then complete with {"woke_at"}.
 *
 * start() answers STEP_OUT_WAIT: the engine commits the step as `waiting`
 * with its wake-up time (TR_STEP_WAIT) before it arms a timer, so a restart
 * finds the time in the store and re-arms it (at once when it is past);
 * timer() is called once the time comes. The config is the rendered one
 * (templates allowed): values are checked again here, an invalid one fails
 * the attempt with "invalid_config".
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>

/* ---- config ---- */

static void delay_seconds(durable_step_check *chk, json_t *v)
{
    def_check_seconds(chk, v, false);
}

static void delay_until(durable_step_check *chk, json_t *v)
{
    struct def_quoted q;
    const char *s;
    int64_t ms;

    if (def_is_templated(v) || !def_check_string(chk, v, &s))
        return;
    if (!def_parse_rfc3339(s, &ms))
        def_check_error(chk,
                        "expected an RFC 3339 date-time such as \"2026-11-22T13:05:00Z\", got %s",
                        def_quote(&q, s));
}

/* clang-format off */
static const struct def_check_field delay_fields[] = {
    { "seconds", delay_seconds },
    { "until", delay_until },
};
/* clang-format on */

static void delay_check(durable_step_check *chk, void *ud)
{
    json_t *config = def_check_config(chk);
    bool has_s = json_object_get(config, "seconds") != NULL;
    bool has_u = json_object_get(config, "until") != NULL;

    (void)ud;
    def_check_walk(chk, delay_fields, DUR_ARRAY_LEN(delay_fields));
    if (!has_s && !has_u)
        def_check_error(chk, "a delay needs \"seconds\" or \"until\"");
    else if (has_s && has_u)
        def_check_error(chk, "a delay takes \"seconds\" or \"until\", not both");
}

/* ---- behaviour ---- */

static void delay_start(durable_step_call *c, void *ud)
{
    json_t *until = json_object_get(c->config, "until");
    int64_t wake;
    double s;

    (void)ud;
    if (until) {
        if (!json_is_string(until) || !def_parse_rfc3339(json_string_value(until), &wake)) {
            steps_fail(c->out, STEPS_INVALID_CONFIG,
                       "config.until: expected an RFC 3339 date-time such as "
                       "\"2026-11-22T13:05:00Z\"");
            return;
        }
    } else {
        if (!steps_config_seconds(c, "seconds", false, &s, c->out))
            return;
        wake = clock_wall_ms() + llround(s * 1000.0);
    }
    c->out->kind = STEP_OUT_WAIT;
    c->out->wake_at_ms = wake > 0 ? wake : 1;
}

static void delay_timer(durable_step_call *c, void *ud)
{
    char buf[32];

    (void)ud;
    c->out->kind = STEP_OUT_DONE;
    c->out->output = json_pack("{s:s}", "woke_at", steps_now_text(buf));
}

const durable_step_type steps_delay_type = {
    .name = "delay",
    .check = delay_check,
    .start = delay_start,
    .timer = delay_timer,
    .answers_at_once = true,
};
