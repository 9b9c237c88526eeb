/*
 * def_yaml_shape.c - the older YAML shape rewritten to the current one, for
 * def_parse_yaml(): `tasks`, `type: activity` with `activity_type`, and the
 * Temporal-style names of timeouts and retry policies (def.h lists them).
 *
 * The rewrite is done in place on the converted document, before
 * validation, so that the validator, the stored document and any later JSON
 * parse of it see one shape. A renamed member keeps its place in its
 * mapping and its location, and messages still name it as the user wrote it
 * (def_ylocs_rename). Values taken out are buried, not freed, because
 * locations are keyed by address (def_yaml.c). Each mistake is reported at
 * its path and leaves the document so that validation adds no second
 * message about the same thing.
 */
#include "util/common.h"

#include <math.h>
#include <string.h>

#include "def/def_int.h"

/* An older name: `from` means `to`; durations accept "30s" and the like. */
struct alias {
    const char *from;
    const char *to;
    bool is_duration;
};

/* clang-format off */
static const struct alias top_aliases[] = {
    { "tasks", "steps", false },
};

static const struct alias step_aliases[] = {
    { "retry_policy", "retry", false },
    { "timeout", "timeout_seconds", true },
    { "start_to_close_timeout", "timeout_seconds", true },
};

static const struct alias retry_aliases[] = {
    { "maximum_attempts", "max_attempts", false },
    { "initial_interval", "initial_interval_seconds", true },
    { "max_interval", "max_interval_seconds", true },
    { "maximum_interval", "max_interval_seconds", true },
    { "multiplier", "backoff_coefficient", false },
    { "non_retryable_error_types", "non_retryable_errors", false },
};
/* clang-format on */

#define DURATION_MAX_DIGITS 18 /* beyond, a double no longer counts seconds exactly */

/* Seconds in "30s", "1.5m", "500ms", "2h", "1d" (spaces allowed around the
 * number); false when s is not such a string. The digits are read as a
 * whole number and divided once at the end, so "100ms" is the double
 * nearest 0.1 (multiplying by 0.001 gave 0.10000000000000001). */
static bool parse_duration(const char *s, double *out)
{
    static const struct {
        const char *unit;
        double times, per;
    } units[] = {
        { "ms", 1, 1000 }, { "s", 1, 1 }, { "m", 60, 1 }, { "h", 3600, 1 }, { "d", 86400, 1 }
    };
    double v = 0, scale = 1;
    size_t i, n_digits = 0;
    bool in_fraction = false;

    while (*s == ' ')
        s++;
    for (; (*s >= '0' && *s <= '9') || (*s == '.' && !in_fraction); s++) {
        if (*s == '.') {
            in_fraction = true;
            continue;
        }
        if (++n_digits > DURATION_MAX_DIGITS)
            return false;
        if (in_fraction)
            scale *= 10;
        v = v * 10 + (*s - '0');
    }
    if (n_digits == 0)
        return false;
    while (*s == ' ')
        s++;
    for (i = 0; i < DUR_ARRAY_LEN(units); i++) {
        size_t len = strlen(units[i].unit);
        if (strncmp(s, units[i].unit, len) == 0 && strspn(s + len, " ") == strlen(s + len)) {
            *out = v * units[i].times / (scale * units[i].per);
            return true;
        }
    }
    return false;
}

/* Rewrites obj's duration member `key` (the path points at it) as a number
 * of seconds. Numbers stay; other types are left to the validator. False
 * after reporting a string that is no duration. */
static bool duration_to_seconds(struct parser *p, json_t *obj, const char *key, json_t *v)
{
    struct def_quoted q;
    double seconds;

    if (!json_is_string(v))
        return true;
    if (!parse_duration(json_string_value(v), &seconds)) {
        def_error(p, "expected a duration such as \"30s\", \"5m\" or \"1h\", got %s",
                  def_quote(&q, json_string_value(v)));
        return false;
    }
    def_ylocs_bury(p, v);
    if (seconds == floor(seconds) && seconds < 9e15)
        json_object_set_new(obj, key, json_integer((json_int_t)seconds));
    else
        json_object_set_new(obj, key, json_real(seconds));
    return true;
}

/* Renames obj's member `from` to `to`, keeping its place in obj. */
static void rename_member(struct parser *p, json_t *obj, const char *from, const char *to)
{
    json_t *copy = json_object();
    const char *key;
    json_t *v;

    json_object_foreach(obj, key, v)
    {
        json_object_set(copy, strcmp(key, from) == 0 ? to : key, v);
    }
    def_ylocs_rename(p, obj, from, to);
    json_object_clear(obj);
    json_object_update(obj, copy);
    json_decref(copy);
}

static void remove_member(struct parser *p, json_t *obj, const char *key)
{
    def_ylocs_bury(p, json_object_get(obj, key));
    json_object_del(obj, key);
}

/* Applies a table of older names to obj (the path points at obj). */
static void apply_aliases(struct parser *p, json_t *obj, const struct alias *a, size_t n)
{
    const char *written;
    size_t i, mark;
    json_t *v;

    for (i = 0; i < n; i++) {
        v = json_object_get(obj, a[i].from);
        if (!v)
            continue;
        mark = def_path_key(p, a[i].from);
        if (json_object_get(obj, a[i].to)) {
            written = def_yaml_written_key(p, obj, a[i].to);
            if (written)
                def_error(p, "\"%s\" is an older name of \"%s\", which is also given (as \"%s\")",
                          a[i].from, a[i].to, written);
            else
                def_error(p, "\"%s\" is an older name of \"%s\", which is also given", a[i].from,
                          a[i].to);
            remove_member(p, obj, a[i].from);
        } else if (a[i].is_duration && !duration_to_seconds(p, obj, a[i].from, v)) {
            remove_member(p, obj, a[i].from);
        } else {
            rename_member(p, obj, a[i].from, a[i].to);
        }
        def_path_pop(p, mark);
    }
}

/* `type: activity` with `activity_type: X` becomes `type: X`. */
static void shape_activity(struct parser *p, json_t *step)
{
    json_t *type = json_object_get(step, "type"), *at = json_object_get(step, "activity_type");
    bool is_activity = json_is_string(type) && strcmp(json_string_value(type), "activity") == 0;
    struct def_quoted q;
    size_t mark;

    if (is_activity && !at) {
        mark = def_path_key(p, "type");
        def_error(p, "type \"activity\" needs activity_type (the step type, such as "
                     "http_request)");
        def_path_pop(p, mark);
        remove_member(p, step, "type"); /* said once: not an unknown type too */
        return;
    }
    if (!at)
        return;
    mark = def_path_key(p, "activity_type");
    if (json_is_string(type) && !is_activity) {
        def_error(p, "activity_type needs type \"activity\", got %s",
                  def_quote(&q, json_string_value(type)));
    } else if (!is_activity) {
        def_error(p, "activity_type needs type \"activity\"");
    } else if (!json_is_string(at)) {
        def_error(p, "expected a string, got %s", def_type_name(at));
        remove_member(p, step, "type");
    } else {
        def_ylocs_bury(p, type);
        if (strcmp(json_string_value(at), "human_approval") == 0)
            json_object_set_new(step, "type", json_string("approval"));
        else
            json_object_set(step, "type", at);
        def_ylocs_move(p, step, "activity_type", "type");
    }
    def_path_pop(p, mark);
    remove_member(p, step, "activity_type");
}

static void shape_step(struct parser *p, json_t *step)
{
    json_t *retry;
    size_t mark;

    if (!json_is_object(step))
        return;
    apply_aliases(p, step, step_aliases, DUR_ARRAY_LEN(step_aliases));
    shape_activity(p, step);
    retry = json_object_get(step, "retry");
    if (json_is_object(retry)) {
        mark = def_path_key(p, "retry");
        apply_aliases(p, retry, retry_aliases, DUR_ARRAY_LEN(retry_aliases));
        def_path_pop(p, mark);
    }
}

void def_yaml_shape(struct parser *p, json_t *root)
{
    json_t *steps;
    size_t i, mark, mark_i;

    def_path_reset(p, root);
    apply_aliases(p, root, top_aliases, DUR_ARRAY_LEN(top_aliases));
    steps = json_object_get(root, "steps");
    if (!json_is_array(steps))
        return;
    mark = def_path_key(p, "steps");
    for (i = 0; i < json_array_size(steps); i++) {
        mark_i = def_path_index(p, i);
        shape_step(p, json_array_get(steps, i));
        def_path_pop(p, mark_i);
    }
    def_path_pop(p, mark);
}
