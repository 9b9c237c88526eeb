/*
 * def.c - the entry points: def_parse() (JSON text to a validated plan),
 * def_parse_yaml() and def_parse_any(), and the top level of a definition
 * (name, version, description, input, timeout_seconds, retain_finished,
 * steps, code_version, schedules: def_schedule.c).
 * A definition with `code_version` describes a code-first workflow (a C
 * function registered under that name and version): it has no steps, its
 * runs' steps are added as the code reaches them (engine/code.c).
 *
 * The parse runs in four passes over one jansson document: load (syntax
 * errors with line and column; for YAML, def_yaml.c, then the older shape
 * rewritten by def_yaml_shape.c), collect the step ids (so depends_on may
 * point forward), walk every field in document order (each checker reports
 * at the current JSON path), then the graph (dependents, cycles, topological
 * order). A plan is returned only when no pass found an error.
 *
 * Nothing here recurses over user data: jansson bounds nesting at 2048,
 * def_yaml.c at DEF_YAML_MAX_DEPTH, and the graph code is iterative, so
 * 10,000 chained steps are safe.
 */
#include "util/common.h"

#include "def/def.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def/def_int.h"

/* Edit-distance cells one parse may spend on "did you mean" (~20 ms). */
#define SUGGEST_BUDGET (20L * 1000 * 1000)

/* ---- top-level fields ---- */

static void top_name(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    def_get_label(p, v, DEF_MAX_NAME_LEN, &p->plan->name);
}

static void top_version(struct parser *p, void *ctx, json_t *v)
{
    char num[40];

    (void)ctx;
    if (json_is_string(v)) {
        p->plan->version = xstrdup(json_string_value(v));
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        p->plan->version = xstrdup(num);
    } else if (json_is_real(v)) {
        snprintf(num, sizeof(num), "%.15g", json_real_value(v));
        p->plan->version = xstrdup(num);
    } else {
        def_error(p, "expected a string or a number, got %s", def_type_name(v));
    }
}

static void top_description(struct parser *p, void *ctx, json_t *v)
{
    const char *s;

    (void)ctx;
    if (def_get_string(p, v, &s))
        p->plan->description = xstrdup(s);
}

static void top_input(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    if (!json_is_object(v)) {
        def_error(p, "expected an object, got %s", def_type_name(v));
        return;
    }
    json_decref(p->plan->input);
    p->plan->input = json_incref(v);
}

static void top_timeout(struct parser *p, void *ctx, json_t *v)
{
    double s;

    (void)ctx;
    if (def_get_number(p, v, 0, DEF_MAX_SECONDS, true, &s))
        p->plan->timeout_ms = def_seconds_to_ms(s);
}

static void top_retain(struct parser *p, void *ctx, json_t *v)
{
    const char *s;
    durable_error e;

    (void)ctx;
    memset(&e, 0, sizeof(e));
    if (def_get_string(p, v, &s) &&
        duration_parse(s, &p->plan->retain_finished_ms, &e) != DURABLE_OK)
        def_error(p, "%s", e.msg);
}

static void top_code_version(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    def_get_int(p, v, 1, 1000000000, &p->plan->code_version);
}

/* `concurrency`: {"limit": N} or {"key": JQ, "limit": N}. */
#define DEF_MAX_CONCURRENCY 1000000

static void conc_limit(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    def_get_int(p, v, 1, DEF_MAX_CONCURRENCY, &p->plan->concurrency_limit);
}

static void conc_key(struct parser *p, void *ctx, json_t *v)
{
    const char *s, *c;

    (void)ctx;
    if (!def_get_string(p, v, &s))
        return;
    for (c = s; *c == ' ' || *c == '\t' || *c == '\n' || *c == '\r'; c++)
        ;
    if (!*c) {
        def_error(p, "a blank key; leave `key` out for one limit over all the workflow's runs");
        return;
    }
    free(p->plan->concurrency_key);
    p->plan->concurrency_key = xstrdup(s);
    def_expr_compile(p, s, &p->plan->concurrency_key_compiled);
}

/* clang-format off */
static const struct def_field conc_fields[] = {
    { "key", conc_key },
    { "limit", conc_limit },
};
/* clang-format on */

static void top_concurrency(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    if (!json_is_object(v)) {
        def_error(p,
                  "expected an object such as {\"key\": \".input.customer_id\", \"limit\": 1}, "
                  "got %s",
                  def_type_name(v));
        return;
    }
    if (!json_object_get(v, "limit")) {
        size_t mark = def_path_key(p, "limit");
        def_error(p, "required");
        def_path_pop(p, mark);
    }
    def_walk(p, v, conc_fields, DUR_ARRAY_LEN(conc_fields), NULL);
}

static void top_steps(struct parser *p, void *ctx, json_t *v)
{
    size_t i, mark;

    (void)ctx;
    if (!json_is_array(v)) {
        def_error(p, "expected an array of steps, got %s", def_type_name(v));
        return;
    }
    if (json_array_size(v) == 0) {
        def_error(p, "a workflow needs at least one step");
        return;
    }
    if (json_array_size(v) > DEF_MAX_STEPS) {
        def_error(p, "too many steps (%zu; the limit is %d)", json_array_size(v), DEF_MAX_STEPS);
        return;
    }
    for (i = 0; i < json_array_size(v); i++) {
        mark = def_path_index(p, i);
        def_step_parse(p, i, json_array_get(v, i));
        def_path_pop(p, mark);
    }
}

static void top_schedules(struct parser *p, void *ctx, json_t *v)
{
    (void)ctx;
    def_schedules_parse(p, v);
}

/* clang-format off */
static const struct def_field top_fields[] = {
    { "name", top_name },
    { "version", top_version },
    { "description", top_description },
    { "input", top_input },
    { "timeout_seconds", top_timeout },
    { "retain_finished", top_retain },
    { "steps", top_steps },
    { "code_version", top_code_version },
    { "schedules", top_schedules },
    { "concurrency", top_concurrency },
};
/* clang-format on */

/* ---- the passes ---- */

/* Syntax errors (jansson's text, made lowercase and free of C names). */
static void syntax_error(struct parser *p, const json_error_t *je)
{
    static const char nul_hint[] = " without JSON_ALLOW_NUL";
    char where[64];
    char text[sizeof(je->text)];
    char *s;

    /* jansson says column 0 when it read nothing on the line (empty text). */
    snprintf(where, sizeof(where), "line %d, column %d", je->line, je->column > 0 ? je->column : 1);
    snprintf(text, sizeof(text), "%s", je->text);
    s = strstr(text, nul_hint);
    if (s)
        memmove(s, s + strlen(nul_hint), strlen(s + strlen(nul_hint)) + 1);
    for (s = text; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
    }
    if (text[0] >= 'A' && text[0] <= 'Z')
        text[0] = (char)(text[0] - 'A' + 'a');
    def_error_at(p, where, "%s", text);
}

/* jansson stops at a NUL byte as if the text ended there, which gives a
 * misleading message; name the byte instead. Returns false if one is found. */
bool def_check_nul(struct parser *p, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    const char *s;
    int line = 1, column = 1;
    char where[64];

    if (!nul)
        return true;
    for (s = text; s < nul; s++) {
        if (*s == '\n') {
            line++;
            column = 1;
        } else if (((unsigned char)*s & 0xc0) != 0x80) {
            column++;
        }
    }
    snprintf(where, sizeof(where), "line %d, column %d", line, column);
    def_error_at(p, where, "unexpected NUL byte");
    return false;
}

/* Pass 2: the first step holding each valid id, so references resolve
 * whatever their position. Reports nothing: pass 3 does. */
static void collect_ids(struct parser *p, json_t *steps, size_t n)
{
    const char *id;
    size_t i;

    p->id_list = xcalloc(n, sizeof(*p->id_list));
    for (i = 0; i < n; i++) {
        id = json_string_value(json_object_get(json_array_get(steps, i), "id"));
        if (!id || !def_id_is_valid(id) || json_object_get(p->ids, id))
            continue;
        json_object_set_new(p->ids, id, json_integer((json_int_t)i));
        p->id_list[p->n_ids++] = id;
    }
}

static void parse_root(struct parser *p, json_t *root)
{
    json_t *steps = json_object_get(root, "steps");
    size_t n = 0;

    if (json_is_array(steps) && json_array_size(steps) <= DEF_MAX_STEPS)
        n = json_array_size(steps);
    p->plan = def_plan_alloc(n);
    p->dep_seen = xcalloc(n, sizeof(*p->dep_seen));
    collect_ids(p, steps, n);
    if (!json_object_get(root, "name"))
        def_error_at(p, "name", "required");
    if (!steps && !json_object_get(root, "code_version"))
        def_error_at(p, "steps", "a workflow needs at least one step");
    if (steps && json_object_get(root, "code_version"))
        def_error_at(p, "steps", "a code-first workflow (code_version) has no steps");
    if (json_object_get(root, "concurrency") && json_object_get(root, "code_version"))
        def_error_at(p, "concurrency",
                     "a code-first workflow (code_version) takes no concurrency limit");
    def_walk(p, root, top_fields, DUR_ARRAY_LEN(top_fields), NULL);
    def_graph_build(p);
}

/* Pass 1: the document. Returns DURABLE_ESYNTAX or DURABLE_EINVAL (not an
 * object) after reporting, or DURABLE_OK with *out_root owned. */
static durable_code load(struct parser *p, const char *text, size_t len, json_t **out_root)
{
    json_error_t je;
    json_t *root;

    *out_root = NULL;
    if (!def_check_nul(p, text, len))
        return DURABLE_ESYNTAX;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root) {
        syntax_error(p, &je);
        return DURABLE_ESYNTAX;
    }
    if (!json_is_object(root)) {
        def_error_at(p, "", "a workflow definition must be a JSON object, got %s",
                     def_type_name(root));
        json_decref(root);
        return DURABLE_EINVAL;
    }
    *out_root = root;
    return DURABLE_OK;
}

/* Hands the finished plan over: the document, the id index, one reference. */
static struct plan *finish(struct parser *p, json_t *root)
{
    struct plan *plan = p->plan;

    p->plan = NULL;
    plan->definition = json_incref(root);
    plan->step_index = p->ids;
    p->ids = NULL;
    return plan;
}

durable_code def_parse_root(struct parser *p, json_t *root, struct plan **out_plan)
{
    def_path_reset(p, root);
    parse_root(p, root);
    if (p->n_errors)
        return DURABLE_EINVAL;
    *out_plan = finish(p, root);
    return DURABLE_OK;
}

void def_parser_init(struct parser *p, struct def_report *local, struct def_report *report,
                     const struct def_options *opts)
{
    *p = (struct parser){ 0 };
    def_report_init(local);
    p->rep = report ? report : local;
    p->opts = opts;
    p->suggest_budget = SUGGEST_BUDGET;
    p->ids = json_object();
    dbuf_init(&p->path, 0);
}

durable_code def_parser_finish(struct parser *p, durable_code code, durable_error *err)
{
    if (code != DURABLE_OK)
        err_set(err, code, "%s", p->first_error);
    plan_unref(p->plan);
    json_decref(p->ids);
    free(p->id_list);
    free(p->dep_seen);
    dbuf_release(&p->path);
    def_ylocs_free(p->ylocs);
    *p = (struct parser){ 0 };
    return code;
}

durable_code def_check_size(struct parser *p, size_t len)
{
    if (len <= (size_t)DEF_MAX_TEXT)
        return DURABLE_OK;
    def_error_at(p, "", "definition is larger than %d bytes", DEF_MAX_TEXT);
    return DURABLE_ETOOBIG;
}

durable_code def_parse(const char *text, size_t len, const struct def_options *opts,
                       struct plan **out_plan, struct def_report *report, durable_error *err)
{
    struct def_report local;
    struct parser p;
    json_t *root = NULL;
    durable_code code;

    *out_plan = NULL;
    def_parser_init(&p, &local, report, opts);
    if (!text) {
        text = "";
        len = 0;
    }
    code = def_check_size(&p, len);
    if (code == DURABLE_OK)
        code = load(&p, text, len, &root);
    if (code == DURABLE_OK)
        code = def_parse_root(&p, root, out_plan);
    code = def_parser_finish(&p, code, err);
    json_decref(root);
    def_report_release(&local);
    return code;
}

/* ---- YAML ---- */

/* YAML's names for the JSON types, for messages about YAML documents. */
static const char *yaml_type_name(const json_t *v)
{
    if (json_is_object(v))
        return "mapping";
    if (json_is_array(v))
        return "sequence";
    return def_type_name(v);
}

/* Whether the text (not an error) is to be read as JSON instead, in AUTO
 * mode: a scalar alone (see def.h). */
static bool is_json_fallback(const json_t *root)
{
    return root && !json_is_object(root) && !json_is_array(root);
}

/* The document is stored as compact JSON, which a later def_parse() must be
 * able to read back: it must fit in DEF_MAX_TEXT too (escapes and longer
 * names can make it larger than the YAML was). */
static durable_code check_converted_size(struct parser *p, const json_t *root)
{
    if (json_dumpb(root, NULL, 0, JSON_COMPACT) <= (size_t)DEF_MAX_TEXT)
        return DURABLE_OK;
    def_error_at(p, "", "definition is larger than %d bytes once converted to JSON", DEF_MAX_TEXT);
    return DURABLE_ETOOBIG;
}

/* def_parse_yaml(), or, in AUTO mode (opts NULL or format AUTO) when the
 * text turns out to be no YAML definition (is_json_fallback), def_parse(). */
static durable_code parse_yaml(const char *text, size_t len, const struct def_options *opts,
                               struct plan **out_plan, struct def_report *report,
                               durable_error *err)
{
    bool json_fallback = !opts || opts->format == DEF_FORMAT_AUTO;
    struct def_report local;
    struct parser p;
    json_t *root = NULL;
    durable_code code;

    *out_plan = NULL;
    def_parser_init(&p, &local, report, opts);
    if (!text) {
        text = "";
        len = 0;
    }
    code = def_check_size(&p, len);
    if (code == DURABLE_OK)
        code = def_yaml_load(&p, text, len, &root);
    if (code == DURABLE_OK && json_fallback && is_json_fallback(root)) {
        def_parser_finish(&p, DURABLE_OK, NULL);
        json_decref(root);
        def_report_release(&local);
        return def_parse(text, len, opts, out_plan, report, err);
    }
    if (code == DURABLE_OK && !root) {
        def_error_at(&p, "", "the definition is empty: it holds no YAML document");
        code = DURABLE_EINVAL;
    } else if (code == DURABLE_OK && !json_is_object(root)) {
        def_error_at(&p, "", "a workflow definition must be a mapping, got %s",
                     yaml_type_name(root));
        code = DURABLE_EINVAL;
    }
    if (code == DURABLE_OK) {
        def_yaml_shape(&p, root);
        code = check_converted_size(&p, root);
    }
    if (code == DURABLE_OK)
        code = def_parse_root(&p, root, out_plan);
    code = def_parser_finish(&p, code, err);
    json_decref(root);
    def_report_release(&local);
    return code;
}

durable_code def_parse_yaml(const char *text, size_t len, const struct def_options *opts,
                            struct plan **out_plan, struct def_report *report, durable_error *err)
{
    struct def_options yaml = opts ? *opts : (struct def_options){ 0 };

    yaml.format = DEF_FORMAT_YAML;
    return parse_yaml(text, len, &yaml, out_plan, report, err);
}

durable_code def_parse_any(const char *text, size_t len, const struct def_options *opts,
                           struct plan **out_plan, struct def_report *report, durable_error *err)
{
    enum def_format format = opts ? opts->format : DEF_FORMAT_AUTO;

    if (format == DEF_FORMAT_JSON)
        return def_parse(text, len, opts, out_plan, report, err);
    if (format == DEF_FORMAT_YAML)
        return def_parse_yaml(text, len, opts, out_plan, report, err);
    if (text_looks_json(text, len))
        return def_parse(text, len, opts, out_plan, report, err);
    return parse_yaml(text, len, opts, out_plan, report, err);
}
