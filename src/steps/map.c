/*
 * map.c - the `map` step type: a step template run once per element of a
 * list computed from the run context.
 *
 *   {"id": "each", "type": "map", "depends_on": ["fetch"],
 *    "config": {"items": ".steps.fetch.output.rows", "max_concurrency": 8,
 *               "on_item_failure": "fail_fast",
 *               "step": {"type": "http_request", "retry": {"max_attempts": 3},
 *                        "config": {"url": "{{ .item.url }}"}}}}
 *
 * The check compiles `items` as the step's jq expression (plan_step.expr),
 * parses `step` as a step of its own (def_check_sub_step: its type, config
 * and templates, retry, timeout) and keeps both in plan_step.type_data
 * (struct steps_map). The engine runs the items (engine/map.c): start()
 * here is never called by it.
 */
#include "util/common.h"

#include <string.h>

#include "steps/steps.h"

static void map_data_free(void *data)
{
    struct steps_map *m = data;

    if (!m)
        return;
    def_sub_step_free(m->tmpl);
    free(m);
}

static struct steps_map *map_data(durable_step_check *chk)
{
    struct steps_map *m = def_check_data(chk);

    if (!m) {
        m = xcalloc(1, sizeof(*m));
        m->max_concurrency = STEPS_MAP_CONCURRENCY;
        def_check_set_data(chk, m, map_data_free);
    }
    return m;
}

static void map_items(durable_step_check *chk, json_t *v)
{
    const char *s;

    if (!def_check_string(chk, v, &s))
        return;
    if (!s[0]) {
        def_check_error(chk, "must not be empty: a jq expression giving a list, such as "
                             "\".steps.fetch.output.rows\"");
        return;
    }
    if (strstr(s, "{{")) {
        def_check_error(chk, "a jq expression, not a {{ }} template: write it without the braces");
        return;
    }
    def_check_expression(chk, s);
}

static bool is_blank(const json_t *v)
{
    return json_is_null(v) || (json_is_string(v) && json_string_value(v)[0] == '\0');
}

static void map_concurrency(durable_step_check *chk, json_t *v)
{
    int n;

    if (is_blank(v))
        return; /* the default */
    if (def_check_int(chk, v, 1, STEPS_MAP_MAX_CONCURRENCY, &n))
        map_data(chk)->max_concurrency = n;
}

/* Edit distance of a and b (short names), for a suggestion. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j, prev[32], cur[32];

    if (la >= 31 || lb >= 31)
        return 99;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(cur));
    }
    return prev[lb];
}

static void map_policy(durable_step_check *chk, json_t *v)
{
    static const char *const policies[] = { "fail_fast", "collect" };
    struct def_quoted q;
    const char *s;

    if (is_blank(v))
        return; /* fail_fast */
    if (!def_check_string(chk, v, &s))
        return;
    for (size_t i = 0; i < DUR_ARRAY_LEN(policies); i++) {
        if (strcmp(s, policies[i]) == 0) {
            map_data(chk)->collect = i == 1;
            return;
        }
        if (distance(s, policies[i]) <= 3) {
            def_check_error(chk, "unknown policy %s (did you mean \"%s\"?)", def_quote(&q, s),
                            policies[i]);
            return;
        }
    }
    def_check_error(chk, "unknown policy %s (expected \"fail_fast\" or \"collect\")",
                    def_quote(&q, s));
}

/* The types a template cannot be: they wait durably, start runs, or block
 * a thread (an item is no step of its own in the store). */
static bool template_refused(const durable_step_type *t)
{
    static const char *const refused[] = { "approval", "delay", "wait_signal", "map" };

    if (t->blocking)
        return true;
    for (size_t i = 0; i < DUR_ARRAY_LEN(refused); i++) {
        if (strcmp(t->name, refused[i]) == 0)
            return true;
    }
    return false;
}

static void map_step(durable_step_check *chk, json_t *v)
{
    struct steps_map *m = map_data(chk);
    struct plan_step *st = def_check_sub_step(chk, v);
    size_t mark;

    def_sub_step_free(m->tmpl);
    m->tmpl = st;
    if (json_is_object(v) && json_object_get(json_object_get(v, "config"), "action")) {
        size_t mark2 = def_check_key(chk, "config");
        size_t mark3 = def_check_key(chk, "action");
        def_check_error(chk, "business actions are not applied per item: put the action on the "
                             "map step");
        def_check_pop(chk, mark3);
        def_check_pop(chk, mark2);
    }
    if (st->step_type && template_refused(st->step_type)) {
        mark = def_check_key(chk, "type");
        def_check_error(chk,
                        "type \"%s\" cannot run per item in a map (approval, delay, "
                        "wait_signal, map and blocking types cannot)",
                        st->step_type->name);
        def_check_pop(chk, mark);
    }
}

/* clang-format off */
static const struct def_check_field map_fields[] = {
    { "items", map_items },
    { "max_concurrency", map_concurrency },
    { "on_item_failure", map_policy },
    { "step", map_step },
};
/* clang-format on */

static void map_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    map_data(chk);
    def_check_require(chk, "items");
    def_check_require(chk, "step");
    def_check_not_template(chk, "step"); /* rendered per item, with .item and .index */
    def_check_walk(chk, map_fields, DUR_ARRAY_LEN(map_fields));
}

static void map_start(durable_step_call *c, void *ud)
{
    (void)ud;
    steps_fail(c->out, "unsupported", "a map step is run by the engine");
}

const durable_step_type steps_map_type = {
    .name = "map",
    .check = map_check,
    .start = map_start,
};
