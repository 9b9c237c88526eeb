/*
 * wait_signal.c - the `wait_signal` step type: wait durably for a named
 * signal sent to the run (POST /runs/{id}/signals/{name}, durable_signal).
 *
 * start() answers STEP_OUT_WAIT with {"waiting_for": "signal", "signal":
 * NAME}: the engine commits the step as waiting for that signal, and the
 * store completes it with the signal's payload as output, either at once
 * (a signal of that name was sent earlier and not taken yet) or when one
 * is sent (engine/signals.c). timer() is the timeout (config.timeout
 * seconds, none by default): the attempt fails with code "timeout". The
 * config is the rendered one (templates allowed): values are checked again
 * here, an invalid one fails the attempt with "invalid_config".
 */
#include "util/common.h"

#include "steps/steps.h"

#include <math.h>
#include <string.h>

#define SIGNAL_NAME_MAX 64

static bool signal_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= SIGNAL_NAME_MAX &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* ---- config ---- */

static void wait_signal_name(durable_step_check *chk, json_t *v)
{
    struct def_quoted q;
    const char *s;

    if (def_is_templated(v) || !def_check_string(chk, v, &s))
        return;
    if (!signal_name_ok(s))
        def_check_error(chk, "a signal's name is 1 to %d of [A-Za-z0-9_.-], got %s",
                        SIGNAL_NAME_MAX, def_quote(&q, s));
}

static void wait_signal_timeout(durable_step_check *chk, json_t *v)
{
    def_check_seconds(chk, v, true);
}

/* clang-format off */
static const struct def_check_field wait_signal_fields[] = {
    { "signal", wait_signal_name },
    { "timeout", wait_signal_timeout },
};
/* clang-format on */

static void wait_signal_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "signal");
    def_check_walk(chk, wait_signal_fields, DUR_ARRAY_LEN(wait_signal_fields));
}

/* ---- behaviour ---- */

static void wait_signal_start(durable_step_call *c, void *ud)
{
    const char *name = json_string_value(json_object_get(c->config, "signal"));
    double s = 0;

    (void)ud;
    if (!name || !signal_name_ok(name)) {
        steps_fail(c->out, STEPS_INVALID_CONFIG,
                   "config.signal: expected a name of 1 to %d of [A-Za-z0-9_.-]", SIGNAL_NAME_MAX);
        return;
    }
    if (json_object_get(c->config, "timeout") &&
        !steps_config_seconds(c, "timeout", true, &s, c->out))
        return;
    c->out->kind = STEP_OUT_WAIT;
    c->out->wake_at_ms = s > 0 ? clock_wall_ms() + llround(s * 1000.0) : 0;
    c->out->data = json_pack("{s:s, s:s}", "waiting_for", "signal", "signal", name);
}

static void wait_signal_timer(durable_step_call *c, void *ud)
{
    (void)ud;
    steps_fail(c->out, "timeout", "no signal \"%s\" within %gs",
               json_string_value(json_object_get(c->config, "signal")),
               json_number_value(json_object_get(c->config, "timeout")));
}

const durable_step_type steps_wait_signal_type = {
    .name = "wait_signal",
    .check = wait_signal_check,
    .start = wait_signal_start,
    .timer = wait_signal_timer,
    .answers_at_once = true,
};
