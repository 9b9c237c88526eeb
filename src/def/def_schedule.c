/*
 * def_schedule.c - `schedules` in a workflow definition: an array of
 * schedules of this workflow, each the shape of POST /schedules without
 * `workflow` and with a required `id` (registering the definition again
 * then replaces each schedule instead of adding one). Every member is
 * checked here, located ("schedules[0].cron: ..."), so that a definition
 * that registers has schedules that can be created; the engine creates
 * them after the definition's commit (durable_workflow_register).
 */
#include "util/common.h"

#include "def/def.h"

#include <stdio.h>
#include <string.h>

#include "def/cron.h"
#include "def/def_int.h"

#define DEF_MAX_SCHEDULES    100
#define DEF_SCHEDULE_ID_MAX  40
#define DEF_CATCH_UP_MAX_MAX 1000

/* What one schedule has (absent, null and "" are absent). */
struct sched_ctx {
    bool has_id, has_cron, has_every;
};

/* A string member, "" and null being absent: false when absent or bad. */
static bool opt_string(struct parser *p, json_t *v, const char **out)
{
    if (json_is_null(v))
        return false;
    if (!def_get_string(p, v, out))
        return false;
    return (*out)[0] != '\0';
}

static void s_id(struct parser *p, void *ctx, json_t *v)
{
    const char *s;
    size_t n;

    if (!opt_string(p, v, &s))
        return;
    ((struct sched_ctx *)ctx)->has_id = true; /* present: a bad one is its own error */
    n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.");
    if (n != strlen(s) || n > DEF_SCHEDULE_ID_MAX) {
        def_error(p, "1 to %d letters, digits, '_', '-' or '.', got \"%.40s\"", DEF_SCHEDULE_ID_MAX,
                  s);
        return;
    }
}

static void s_cron(struct parser *p, void *ctx, json_t *v)
{
    struct cron_spec spec;
    durable_error err = { 0 };
    const char *s;

    if (!opt_string(p, v, &s))
        return;
    ((struct sched_ctx *)ctx)->has_cron = true;
    if (cron_parse(s, &spec, &err) != DURABLE_OK)
        def_error(p, "%s", err.msg);
}

static void s_every(struct parser *p, void *ctx, json_t *v)
{
    durable_error err = { 0 };
    const char *s;
    int64_t ms;

    if (!opt_string(p, v, &s))
        return;
    ((struct sched_ctx *)ctx)->has_every = true;
    if (cron_parse_every(s, &ms, &err) != DURABLE_OK)
        def_error(p, "%s", err.msg);
}

static void s_timezone(struct parser *p, void *ctx, json_t *v)
{
    durable_error err = { 0 };
    const char *s;

    (void)ctx;
    if (opt_string(p, v, &s) && cron_tz_check(s, &err) != DURABLE_OK)
        def_error(p, "%s", err.msg);
}

static void one_of(struct parser *p, json_t *v, const char *const *names, const char *list)
{
    const char *s;

    if (!opt_string(p, v, &s))
        return;
    for (size_t i = 0; names[i]; i++) {
        if (strcmp(s, names[i]) == 0)
            return;
    }
    def_error(p, "\"%.40s\" is not one of %s", s, list);
}

static void s_overlap(struct parser *p, void *ctx, json_t *v)
{
    static const char *const names[] = { "skip", "queue_one", "allow", "cancel_previous", NULL };

    (void)ctx;
    one_of(p, v, names, "skip, queue_one, allow, cancel_previous");
}

static void s_catch_up(struct parser *p, void *ctx, json_t *v)
{
    static const char *const names[] = { "none", "last", "all", NULL };

    (void)ctx;
    one_of(p, v, names, "none, last, all");
}

static void s_catch_up_max(struct parser *p, void *ctx, json_t *v)
{
    int n;

    (void)ctx;
    if (!json_is_null(v))
        def_get_int(p, v, 1, DEF_CATCH_UP_MAX_MAX, &n);
}

static void s_input(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    if (!json_is_null(v) && !json_is_object(v))
        def_error(p, "expected an object, got %s", def_type_name(v));
}

static void s_paused(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    if (!json_is_null(v) && !json_is_boolean(v))
        def_error(p, "expected true or false, got %s", def_type_name(v));
}

static void s_workflow(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    (void)v;
    def_error(p, "a definition's schedules start this workflow: leave workflow out");
}

/* clang-format off */
static const struct def_field schedule_fields[] = {
    { "id", s_id },
    { "cron", s_cron },
    { "every", s_every },
    { "timezone", s_timezone },
    { "input", s_input },
    { "overlap", s_overlap },
    { "catch_up", s_catch_up },
    { "catch_up_max", s_catch_up_max },
    { "paused", s_paused },
    { "workflow", s_workflow },
};
/* clang-format on */

static void schedule_parse(struct parser *p, json_t *v)
{
    struct sched_ctx c = { 0 };

    if (!json_is_object(v)) {
        def_error(p, "expected a schedule object, got %s", def_type_name(v));
        return;
    }
    def_walk(p, v, schedule_fields, DUR_ARRAY_LEN(schedule_fields), &c);
    if (!c.has_id)
        def_error(p, "id is required in a definition's schedule (registering the definition "
                     "again then replaces it)");
    if (c.has_cron == c.has_every)
        def_error(p, c.has_cron ? "cron, every: give one of them, not both"
                                : "cron or every is required (\"0 3 * * *\", \"90s\")");
}

void def_schedules_parse(struct parser *p, json_t *v)
{
    if (!json_is_array(v)) {
        def_error(p, "expected an array of schedules, got %s", def_type_name(v));
        return;
    }
    if (json_array_size(v) > DEF_MAX_SCHEDULES) {
        def_error(p, "too many schedules (%zu; the limit is %d)", json_array_size(v),
                  DEF_MAX_SCHEDULES);
        return;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        size_t mark = def_path_index(p, i);

        schedule_parse(p, json_array_get(v, i));
        def_path_pop(p, mark);
    }
}
