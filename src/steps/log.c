/*
 * log.c - the `log` step type: config.message (a template rendered by the
 * engine before start) written to the log at config.level, and kept as
 * the output {"message"}, so it is in the history.
 */
#include "util/common.h"

#include "steps/steps.h"

#include <stdlib.h>
#include <string.h>

/* ---- config ---- */

static void log_message(durable_step_check *chk, json_t *v)
{
    const char *s;

    def_check_string(chk, v, &s);
}

static void log_level(durable_step_check *chk, json_t *v)
{
    static const char *const allowed[] = { "debug", "info", "warn", "warning", "error", NULL };

    def_check_one_of(chk, v, allowed, false);
}

/* clang-format off */
static const struct def_check_field log_fields[] = {
    { "message", log_message },
    { "level", log_level },
};
/* clang-format on */

static void log_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    def_check_require(chk, "message");
    def_check_walk(chk, log_fields, DUR_ARRAY_LEN(log_fields));
}

/* ---- behaviour ---- */

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

static void log_start(durable_step_call *c, void *ud)
{
    json_t *m = json_object_get(c->config, "message");
    const char *level = json_string_value(json_object_get(c->config, "level"));
    durable_log_level lv = level_of(level);
    char *text = NULL;

    (void)ud;
    if ((int)lv < 0) {
        steps_fail(c->out, STEPS_INVALID_CONFIG, "config.level: unknown level \"%.40s\"", level);
        return;
    }
    /* A message that is one template keeps its value's type: shown as JSON. */
    if (json_is_string(m))
        text = xstrdup(json_string_value(m));
    else
        text = json_dumps(m ? m : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    log_msg(lv, "run %s, step %s: %s", c->run_id, c->step->id, text ? text : "");
    c->out->kind = STEP_OUT_DONE;
    c->out->output = json_pack("{s:s}", "message", text ? text : "");
    free(text);
}

const durable_step_type steps_log_type = {
    .name = "log",
    .check = log_check,
    .start = log_start,
    .answers_at_once = true,
};
