/*
 * def_check.c - a step type's view of its config while a definition is
 * parsed (durable_step_check: the public functions for user types, the
 * def_check_* ones of def.h for the built-in types in steps/), and the
 * expressions of a step: `if`, the type's expression (condition, transform)
 * and the `{{ }}` templates of its config, all compiled here so that a
 * syntax error is a located validation error, never a failed run (SPEC §3).
 *
 * Each type's schema lives with its behaviour, in steps/; this layer only
 * calls it (def_check_step_config) and knows no type by name. A config value
 * that is a template (a string holding `{{`) is known only when the attempt
 * starts: the checks accept it and the step type checks the rendered value.
 * Compiling costs 15-30 ms of libjq time per distinct expression (expr.h),
 * paid once per parse. Everything here runs on the parsing thread.
 */
#include "util/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "def/def_int.h"
#include "expr/expr.h"

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
        def_error(p,
                  "the definition has more than %d expressions (conditions and {{ }} "
                  "templates)",
                  DEF_MAX_EXPRESSIONS);
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
        json_object_foreach((json_t *)v, key, m)
        {
            if (!skip_key || strcmp(key, skip_key) != 0)
                n += count_templates(m, NULL, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m) n += count_templates(m, NULL, depth + 1);
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

/* Compiles config's {{ }} templates into c->st->templates (left NULL when
 * there are none); `skip_key` (may be NULL) is a member that is not one. */
static void config_templates(struct parser *p, struct step_ctx *c, json_t *config,
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
            where = xasprintf("%.*s%.*s", (int)base, p->path.buf, (int)(colon - err.msg), err.msg);
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

/* ---- durable_step_check ---- */

json_t *def_check_config(const durable_step_check *chk)
{
    return chk->config;
}

static void report_v(durable_step_check *chk, bool is_warning, const char *fmt, va_list ap)
        DUR_PRINTF(3, 0);

static void report_v(durable_step_check *chk, bool is_warning, const char *fmt, va_list ap)
{
    char msg[DURABLE_ERROR_MSG_SIZE];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (is_warning)
        def_warn(chk->p, "%s", msg);
    else
        def_error(chk->p, "%s", msg);
}

void def_check_error(durable_step_check *chk, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_v(chk, false, fmt, ap);
    va_end(ap);
}

void def_check_warn(durable_step_check *chk, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    report_v(chk, true, fmt, ap);
    va_end(ap);
}

size_t def_check_key(durable_step_check *chk, const char *key)
{
    return def_path_key(chk->p, key);
}

size_t def_check_index(durable_step_check *chk, size_t i)
{
    return def_path_index(chk->p, i);
}

void def_check_pop(durable_step_check *chk, size_t mark)
{
    def_path_pop(chk->p, mark);
}

void def_check_walk(durable_step_check *chk, const struct def_check_field *fields, size_t n)
{
    struct def_quoted q;
    const char *key;
    json_t *v;
    size_t i, mark;

    json_object_foreach(chk->config, key, v)
    {
        mark = def_path_key(chk->p, key);
        for (i = 0; i < n && strcmp(fields[i].key, key) != 0; i++)
            ;
        if (i < n)
            fields[i].fn(chk, v);
        else if (strcmp(key, "action") == 0)
            def_config_action(chk->p, chk->c, v);
        else
            def_warn(chk->p, "unknown field %s", def_quote(&q, key));
        def_path_pop(chk->p, mark);
    }
}

void def_check_require(durable_step_check *chk, const char *key)
{
    size_t mark;

    if (json_object_get(chk->config, key))
        return;
    mark = def_path_key(chk->p, key);
    def_error(chk->p, "required");
    def_path_pop(chk->p, mark);
}

bool def_check_string(durable_step_check *chk, const json_t *v, const char **out)
{
    return def_get_string(chk->p, v, out);
}

bool def_check_number(durable_step_check *chk, const json_t *v, double lo, double hi, bool lo_open,
                      double *out)
{
    return def_get_number(chk->p, v, lo, hi, lo_open, out);
}

bool def_check_int(durable_step_check *chk, const json_t *v, int lo, int hi, int *out)
{
    return def_get_int(chk->p, v, lo, hi, out);
}

void def_check_seconds(durable_step_check *chk, const json_t *v, bool lo_open)
{
    double d;

    if (!def_is_templated(v))
        def_get_number(chk->p, v, 0, DEF_MAX_SECONDS, lo_open, &d);
}

void def_check_one_of(durable_step_check *chk, const json_t *v, const char *const *allowed,
                      bool any_case)
{
    struct def_quoted q;
    struct dbuf list;
    const char *s;
    size_t i;

    if (def_is_templated(v) || !def_get_string(chk->p, v, &s))
        return;
    for (i = 0; allowed[i]; i++) {
        if ((any_case ? strcasecmp(allowed[i], s) : strcmp(allowed[i], s)) == 0)
            return;
    }
    dbuf_init(&list, 0);
    for (i = 0; allowed[i]; i++)
        dbuf_addf(&list, "%s%s", i ? ", " : "", allowed[i]);
    def_error(chk->p, "expected one of %s, got %s", list.buf, def_quote(&q, s));
    dbuf_release(&list);
}

void def_check_expression(durable_step_check *chk, const char *src)
{
    expr_free(chk->c->st->expr);
    chk->c->st->expr = NULL;
    def_expr_compile(chk->p, src, &chk->c->st->expr);
}

void def_check_not_template(durable_step_check *chk, const char *key)
{
    chk->c->not_template = key;
}

void def_check_set_data(durable_step_check *chk, void *data, void (*free_fn)(void *data))
{
    struct plan_step *st = chk->c->st;

    if (st->type_data && st->type_data_free)
        st->type_data_free(st->type_data);
    st->type_data = data;
    st->type_data_free = free_fn;
}

void *def_check_data(const durable_step_check *chk)
{
    return chk->c->st->type_data;
}

void def_check_step_config(struct parser *p, struct step_ctx *c, json_t *config)
{
    durable_step_check chk = { .p = p, .c = c, .config = config };

    c->not_template = NULL;
    if (c->type && c->type->check)
        c->type->check(&chk, c->type->ud);
    free(chk.config_text);
    config_templates(p, c, config, c->not_template);
}

/* ---- the public side, for user types ---- */

DURABLE_API const char *durable_step_check_config(durable_step_check *chk)
{
    if (!chk->config_text)
        chk->config_text = json_dumps(chk->config, JSON_COMPACT);
    return chk->config_text ? chk->config_text : "{}";
}

/* A report at path (dot-separated keys) below the config. The keys stay
 * alive until the path is popped (def_path_key borrows them). */
static void check_report(durable_step_check *chk, bool is_warning, const char *path,
                         const char *message)
{
    size_t mark = chk->p->path.len;
    char *copy = xstrdup(path ? path : "");
    char *key = copy, *dot;

    while (*key) {
        dot = strchr(key, '.');
        if (dot)
            *dot = '\0';
        def_path_key(chk->p, key);
        if (!dot)
            break;
        key = dot + 1;
    }
    if (is_warning)
        def_warn(chk->p, "%s", message ? message : "");
    else
        def_error(chk->p, "%s", message ? message : "");
    def_path_pop(chk->p, mark);
    free(copy);
}

DURABLE_API void durable_step_check_error(durable_step_check *chk, const char *path,
                                          const char *message)
{
    check_report(chk, false, path, message);
}

DURABLE_API void durable_step_check_warning(durable_step_check *chk, const char *path,
                                            const char *message)
{
    check_report(chk, true, path, message);
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
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    if (!parse_tail(s + 19, &ms, &off))
        return false;
    *out_ms = ((days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec) -
               (int64_t)off * 60) *
                      1000 +
              ms;
    return true;
}
