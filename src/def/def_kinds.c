/*
 * def_kinds.c - the config of each implemented step kind other than task,
 * and the expressions of a step: `if`, condition/transform `expression`, and
 * the `{{ }}` templates of its config, all compiled here so that a syntax
 * error is a located validation error, never a failed run (SPEC §3).
 *
 * A config value that is a template (a string holding `{{`) is known only
 * when the attempt starts: the static check accepts it and the step type
 * checks the rendered value (steps/). Compiling costs 15-30 ms of libjq time
 * per distinct expression (expr.h), paid once per parse.
 */
#include "util/common.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "def/def_int.h"
#include "expr/expr.h"

/* The kinds that have an implementation (and so a config schema). A kind
 * named by SPEC §1 but absent here is an error, never a silent task. */
static const bool kind_implemented[] = {
    [STEP_TASK] = true,      [STEP_DELAY] = true, [STEP_APPROVAL] = true,
    [STEP_CONDITION] = true, [STEP_TRANSFORM] = true, [STEP_LOG] = true,
    [STEP_HTTP_REQUEST] = true, [STEP_WORKFLOW] = true,
};

bool def_kind_implemented(enum step_kind k)
{
    return (size_t)k < DUR_ARRAY_LEN(kind_implemented) && kind_implemented[k];
}

bool def_is_templated(const json_t *v)
{
    return json_is_string(v) && strstr(json_string_value(v), "{{") != NULL;
}

/* ---- expressions ---- */

/* Counts n more expressions; false (reported) when over the limit. */
static bool expr_budget(struct parser *p, size_t n)
{
    if (p->n_exprs + n <= DEF_MAX_EXPRESSIONS) {
        p->n_exprs += n;
        return true;
    }
    if (p->n_exprs <= DEF_MAX_EXPRESSIONS) /* said once */
        def_error(p, "the definition has more than %d expressions (conditions and {{ }} "
                  "templates)", DEF_MAX_EXPRESSIONS);
    p->n_exprs = DEF_MAX_EXPRESSIONS + 1;
    return false;
}

/* Occurrences of "{{" in the strings of v, at any depth (an upper bound of
 * its templates' expressions, counted before paying for compiling them). */
static size_t count_templates(const json_t *v, const char *skip_key, int depth)
{
    const char *key, *s;
    json_t *m;
    size_t i, n = 0;

    if (depth > EXPR_MAX_DEPTH)
        return 0;
    if (json_is_string(v)) {
        for (s = strstr(json_string_value(v), "{{"); s; s = strstr(s + 2, "{{"))
            n++;
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, m) {
            if (!skip_key || strcmp(key, skip_key) != 0)
                n += count_templates(m, NULL, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m)
            n += count_templates(m, NULL, depth + 1);
    }
    return n;
}

void def_expr_compile(struct parser *p, const char *src, struct expr **out)
{
    durable_error err = { 0 };

    if (!expr_budget(p, 1))
        return;
    if (expr_compile(src, out, &err) != DURABLE_OK)
        def_error(p, "%s", err.msg);
}

void def_config_templates(struct parser *p, struct step_ctx *c, json_t *config,
                          const char *skip_key)
{
    durable_error err = { 0 };
    json_t *copy = NULL;
    struct config_templates *t = NULL;
    const char *colon;
    char *where;
    size_t base;

    if (!expr_budget(p, count_templates(config, skip_key, 0)))
        return;
    if (skip_key && json_object_get(config, skip_key)) {
        copy = json_copy(config);
        json_object_del(copy, skip_key);
        config = copy;
    }
    if (expr_config_compile(config, &t, &err) != DURABLE_OK) {
        /* err.msg is "config.url: jq: ..."; the path points at the config. */
        base = p->path.len >= 6 ? p->path.len - 6 : 0;
        colon = strstr(err.msg, ": ");
        if (colon && strncmp(err.msg, "config", 6) == 0) {
            where = xasprintf("%.*s%.*s", (int)base, p->path.buf, (int)(colon - err.msg),
                              err.msg);
            def_error_at(p, where, "%s", colon + 2);
            free(where);
        } else {
            def_error(p, "%s", err.msg);
        }
    } else if (expr_config_n_templates(t) > 0) {
        expr_config_free(c->st->templates);
        c->st->templates = t;
        t = NULL;
    }
    expr_config_free(t);
    json_decref(copy);
}

/* ---- shared checks ---- */

static void want_seconds(struct parser *p, json_t *v, bool lo_open)
{
    double d;

    if (!def_is_templated(v))
        def_get_number(p, v, 0, DEF_MAX_SECONDS, lo_open, &d);
}

static void want_string(struct parser *p, json_t *v)
{
    const char *s;

    def_get_string(p, v, &s);
}

/* v must be a string among `allowed` (NULL-terminated; ignoring case when
 * any_case), or a template. */
static void want_one_of_case(struct parser *p, json_t *v, const char *const *allowed,
                             bool any_case)
{
    struct def_quoted q;
    struct dbuf list;
    const char *s;
    size_t i;

    if (def_is_templated(v) || !def_get_string(p, v, &s))
        return;
    for (i = 0; allowed[i]; i++) {
        if ((any_case ? strcasecmp(allowed[i], s) : strcmp(allowed[i], s)) == 0)
            return;
    }
    dbuf_init(&list, 0);
    for (i = 0; allowed[i]; i++)
        dbuf_addf(&list, "%s%s", i ? ", " : "", allowed[i]);
    def_error(p, "expected one of %s, got %s", list.buf, def_quote(&q, s));
    dbuf_release(&list);
}

static void want_one_of(struct parser *p, json_t *v, const char *const *allowed)
{
    want_one_of_case(p, v, allowed, false);
}

/* Reports `required` for a missing member of config. */
static void want_member(struct parser *p, json_t *config, const char *key)
{
    size_t mark;

    if (json_object_get(config, key))
        return;
    mark = def_path_key(p, key);
    def_error(p, "required");
    def_path_pop(p, mark);
}

/* ---- delay ---- */

static void delay_seconds(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    want_seconds(p, v, false);
}

static void delay_until(struct parser *p, void *ctx, json_t *v)
{
    struct def_quoted q;
    const char *s;
    int64_t ms;

    (void)ctx;
    if (def_is_templated(v) || !def_get_string(p, v, &s))
        return;
    if (!def_parse_rfc3339(s, &ms))
        def_error(p, "expected an RFC 3339 date-time such as \"2026-11-22T13:05:00Z\", got %s",
                  def_quote(&q, s));
}

/* clang-format off */
static const struct def_field delay_fields[] = {
    { "seconds", delay_seconds },
    { "until", delay_until },
    { "action", def_config_action },
};
/* clang-format on */

static void delay_config(struct parser *p, struct step_ctx *c, json_t *config)
{
    bool has_s = json_object_get(config, "seconds") != NULL;
    bool has_u = json_object_get(config, "until") != NULL;

    def_walk(p, config, delay_fields, DUR_ARRAY_LEN(delay_fields), c);
    if (!has_s && !has_u)
        def_error(p, "a delay needs \"seconds\" or \"until\"");
    else if (has_s && has_u)
        def_error(p, "a delay takes \"seconds\" or \"until\", not both");
}

/* ---- approval ---- */

static void approval_prompt(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    want_string(p, v);
}

static void approval_timeout(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    want_seconds(p, v, true);
}

static void approval_on_timeout(struct parser *p, void *ctx, json_t *v)
{
    static const char *const allowed[] = { "reject", "approve", "fail", NULL };

    (void)ctx;
    want_one_of(p, v, allowed);
}

/* clang-format off */
static const struct def_field approval_fields[] = {
    { "prompt", approval_prompt },
    { "timeout_seconds", approval_timeout },
    { "on_timeout", approval_on_timeout },
    { "action", def_config_action },
};
/* clang-format on */

/* ---- condition, transform ---- */

static void expr_expression(struct parser *p, void *ctx, json_t *v)
{
    struct step_ctx *c = ctx;
    const char *s;

    if (def_get_string(p, v, &s))
        def_expr_compile(p, s, &c->st->expr);
}

/* clang-format off */
static const struct def_field expr_fields[] = {
    { "expression", expr_expression },
    { "action", def_config_action },
};
/* clang-format on */

/* ---- workflow ---- */

static void workflow_name(struct parser *p, void *ctx, json_t *v)
{
    const char *s;

    (void)ctx;
    if (def_get_string(p, v, &s) && !s[0])
        def_error(p, "must not be empty");
}

static void workflow_input(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    if (!def_is_templated(v) && !json_is_object(v))
        def_error(p, "expected an object, got %s", def_type_name(v));
}

/* clang-format off */
static const struct def_field workflow_fields[] = {
    { "workflow", workflow_name },
    { "input", workflow_input },
    { "action", def_config_action },
};
/* clang-format on */

/* ---- log ---- */

static void log_message(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    want_string(p, v);
}

static void log_level(struct parser *p, void *ctx, json_t *v)
{
    static const char *const allowed[] = { "debug", "info", "warn", "warning", "error", NULL };

    (void)ctx;
    want_one_of(p, v, allowed);
}

/* clang-format off */
static const struct def_field log_fields[] = {
    { "message", log_message },
    { "level", log_level },
    { "action", def_config_action },
};
/* clang-format on */

/* ---- http_request ---- */

static void http_url(struct parser *p, void *ctx, json_t *v)
{
    struct def_quoted q;
    const char *s;

    (void)ctx;
    if (def_is_templated(v) || !def_get_string(p, v, &s))
        return;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        def_error(p, "expected an http:// or https:// URL, got %s", def_quote(&q, s));
}

static void http_method(struct parser *p, void *ctx, json_t *v)
{
    static const char *const allowed[] = { "GET",    "POST", "PUT",     "PATCH",
                                           "DELETE", "HEAD", "OPTIONS", NULL };

    (void)ctx;
    want_one_of_case(p, v, allowed, true);
}

static void http_headers(struct parser *p, void *ctx, json_t *v)
{
    const char *key;
    json_t *h;
    size_t mark;

    (void)ctx;
    if (def_is_templated(v))
        return;
    if (!json_is_object(v)) {
        def_error(p, "expected an object of header names to strings, got %s", def_type_name(v));
        return;
    }
    json_object_foreach(v, key, h) {
        mark = def_path_key(p, key);
        want_string(p, h);
        def_path_pop(p, mark);
    }
}

static void http_body(struct parser *p, void *ctx, json_t *v)
{
    (void)p;
    (void)ctx;
    (void)v;
}

static void want_status(struct parser *p, json_t *v)
{
    int code;

    if (!def_is_templated(v))
        def_get_int(p, v, 100, 599, &code);
}

static void http_expect_status(struct parser *p, void *ctx, json_t *v)
{
    size_t i, mark;

    (void)ctx;
    if (!json_is_array(v)) {
        want_status(p, v);
        return;
    }
    if (json_array_size(v) == 0)
        def_error(p, "expected at least one status");
    for (i = 0; i < json_array_size(v); i++) {
        mark = def_path_index(p, i);
        want_status(p, json_array_get(v, i));
        def_path_pop(p, mark);
    }
}

static void http_timeout(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    want_seconds(p, v, true);
}

/* clang-format off */
static const struct def_field http_fields[] = {
    { "url", http_url },
    { "method", http_method },
    { "headers", http_headers },
    { "body", http_body },
    { "expect_status", http_expect_status },
    { "timeout_seconds", http_timeout },
    { "action", def_config_action },
};
/* clang-format on */

void def_kind_config(struct parser *p, struct step_ctx *c, json_t *config)
{
    const char *skip = NULL;

    switch (c->kind) {
    case STEP_DELAY:
        delay_config(p, c, config);
        break;
    case STEP_APPROVAL:
        def_walk(p, config, approval_fields, DUR_ARRAY_LEN(approval_fields), c);
        break;
    case STEP_CONDITION:
    case STEP_TRANSFORM:
        want_member(p, config, "expression");
        def_walk(p, config, expr_fields, DUR_ARRAY_LEN(expr_fields), c);
        skip = "expression";
        break;
    case STEP_WORKFLOW:
        want_member(p, config, "workflow");
        def_walk(p, config, workflow_fields, DUR_ARRAY_LEN(workflow_fields), c);
        break;
    case STEP_LOG:
        want_member(p, config, "message");
        def_walk(p, config, log_fields, DUR_ARRAY_LEN(log_fields), c);
        break;
    case STEP_HTTP_REQUEST:
        want_member(p, config, "url");
        def_walk(p, config, http_fields, DUR_ARRAY_LEN(http_fields), c);
        break;
    default:
        return;
    }
    def_config_templates(p, c, config, skip);
}

/* ---- RFC 3339 ---- */

static bool digits(const char *s, int n, int *out)
{
    int i, v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : dm[m - 1];
}

/* The fraction and offset after "YYYY-MM-DDTHH:MM:SS": ms and offset in
 * minutes (east positive). */
static bool parse_tail(const char *s, int *out_ms, int *out_off_min)
{
    int ms = 0, scale = 100, oh, om;

    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return false;
        for (; *s >= '0' && *s <= '9'; s++) {
            ms += (*s - '0') * scale;
            scale /= 10;
        }
    }
    *out_ms = ms;
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
        *out_off_min = 0;
        return true;
    }
    if ((s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &oh) || s[3] != ':' ||
        !digits(s + 4, 2, &om) || s[6] != '\0' || oh > 23 || om > 59)
        return false;
    *out_off_min = (s[0] == '-' ? -1 : 1) * (oh * 60 + om);
    return true;
}

bool def_parse_rfc3339(const char *s, int64_t *out_ms)
{
    int y, mo, d, h, mi, sec, ms, off;

    if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 60)
        return false;
    if (!parse_tail(s + 19, &ms, &off))
        return false;
    *out_ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)off * 60) *
                      1000 +
              ms;
    return true;
}
