/*
 * log.c - the `log` step type: config.message (a template rendered by the
 * engine before start) written to the log at config.level (debug, info,
 * warning, error; "warn" is read as warning), and kept as the output
 * {"message", "level"}, so both are in the history (step_completed).
 *
 * The older orchestrator's placeholders are honoured too: "{order_id}" (a
 * single brace around a field name, "a.b" for key b of a) is replaced, once
 * `{{ }}` templates are rendered, by that field of the run's input (a
 * string as it is, another value as JSON); one the input does not have is
 * left as written. A message with placeholders gets the expression
 * `.input` at parse time, which is what gives its calls the run context
 * (the engine builds it only for a step with an expression).
 */
#include "util/common.h"

#include "steps/steps.h"

#include <stdlib.h>
#include <string.h>

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* The length of the placeholder "{NAME}" at s (s[0] == '{', s inside the
 * text that starts at start), or 0 when s holds none there: a brace of
 * "{{" opens no placeholder. */
static size_t placeholder_len(const char *start, const char *s)
{
    size_t n = 1;

    if ((s > start && s[-1] == '{') || s[1] == '{')
        return 0;
    while (is_name_char(s[n]))
        n++;
    return n > 1 && s[n] == '}' && s[n + 1] != '}' ? n + 1 : 0;
}

static bool has_placeholder(const char *s)
{
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '{' && placeholder_len(s, s + i))
            return true;
    }
    return false;
}

/* ---- config ---- */

static void log_message(durable_step_check *chk, json_t *v)
{
    const char *s;

    if (def_check_string(chk, v, &s) && has_placeholder(s))
        def_check_expression(chk, ".input");
}

static void log_level(durable_step_check *chk, json_t *v)
{
    static const char *const allowed[] = { "debug", "info", "warning", "error", "warn", NULL };

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

static const char *const level_names[] = {
    [DURABLE_LOG_DEBUG] = "debug",
    [DURABLE_LOG_INFO] = "info",
    [DURABLE_LOG_WARN] = "warning",
    [DURABLE_LOG_ERROR] = "error",
};

/* The value of placeholder name (len bytes) in input, as text to free(),
 * or NULL when input has no such field. */
static char *field_text(const json_t *input, const char *name, size_t len)
{
    const json_t *v = input;
    const char *end = name + len, *dot;
    char *text;

    while (v && name < end) {
        dot = memchr(name, '.', (size_t)(end - name));
        if (!dot)
            dot = end;
        v = json_is_object(v) ? json_object_getn(v, name, (size_t)(dot - name)) : NULL;
        name = dot + 1;
    }
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return text;
}

/* text with its placeholders replaced from input (see the top). */
static char *fill_placeholders(const char *text, const json_t *input)
{
    struct dbuf out;
    size_t i, n;
    char *v;

    dbuf_init(&out, 0);
    for (i = 0; text[i]; i++) {
        n = text[i] == '{' ? placeholder_len(text, text + i) : 0;
        v = n ? field_text(input, text + i + 1, n - 2) : NULL;
        if (v) {
            dbuf_adds(&out, v);
            free(v);
            i += n - 1;
        } else {
            dbuf_add(&out, text + i, 1);
        }
    }
    return dbuf_detach(&out, NULL);
}

/* The message to log: a string as rendered, its placeholders filled when
 * the step has the run context; a message that is one template keeps its
 * value's type, and is shown as JSON. Returns text to free(). */
static char *message_text(const durable_step_call *c)
{
    json_t *m = json_object_get(c->config, "message");
    char *text;

    if (!json_is_string(m))
        return json_dumps(m ? m : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (c->ctx && has_placeholder(json_string_value(m)))
        return fill_placeholders(json_string_value(m), json_object_get(c->ctx, "input"));
    text = xstrdup(json_string_value(m));
    return text;
}

static void log_start(durable_step_call *c, void *ud)
{
    const char *level = json_string_value(json_object_get(c->config, "level"));
    durable_log_level lv = level_of(level);
    char *text = NULL;

    (void)ud;
    if ((int)lv < 0) {
        steps_fail(c->out, STEPS_INVALID_CONFIG, "config.level: unknown level \"%.40s\"", level);
        return;
    }
    text = message_text(c);
    log_msg(lv, "run %s, step %s: %s", c->run_id, c->step->id, text ? text : "");
    c->out->kind = STEP_OUT_DONE;
    c->out->output = json_pack("{s:s, s:s}", "message", text ? text : "", "level", level_names[lv]);
    free(text);
}

const durable_step_type steps_log_type = {
    .name = "log",
    .check = log_check,
    .start = log_start,
    .answers_at_once = true,
};
