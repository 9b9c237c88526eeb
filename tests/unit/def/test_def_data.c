/*
 * test_def_data.c - the definition parser against the files of
 * tests/data/def: every valid/NAME.json (def_parse) and valid/NAME.yaml
 * (def_parse_yaml) must parse into the plan dump in valid/NAME.expected,
 * every invalid/NAME.json or .yaml must fail with exactly the report in
 * invalid/NAME.expected (def_report_format output).
 *
 * NAME is the file name up to its first '.', so files that must give the
 * same result share one .expected: order_processing.json,
 * order_processing.yaml and order_processing.old.yaml (the older YAML
 * shape) all give the plan in order_processing.expected.
 *
 * One cmocka test per file, in name order. DURABLE_UPDATE_EXPECTED=1
 * rewrites the .expected files from the current output (review the diff).
 *
 * Plan dump: a header line, then one line per step in topological order,
 * then the warnings:
 *   plan NAME [version=V] [timeout_ms=N] [input=JSON] [description="..."]
 *   step ID type=T kind=K deps=A,B|- attempts=N backoff=I*C^n<=M
 *        duration=S fail=P timeout_ms=N [action=A] [if="..."] [name="..."]
 *        [non_retryable=A,B]
 *   warning: WHERE: MESSAGE
 */
#include "util/common.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "def/def.h"
#include "steps/steps.h"
#include "store/store.h"
#include "util/util.h"

static bool update_expected; /* DURABLE_UPDATE_EXPECTED is set */

struct case_file {
    char *json_path; /* the definition, .json or .yaml */
    char *expected_path;
    bool is_valid;
    bool is_yaml;
};

static char *read_all(const char *path, size_t *len)
{
    char *text_out;
    FILE *f = fopen(path, "rb");
    struct dbuf b;
    char chunk[4096];
    size_t n;

    if (!f)
        return NULL;
    dbuf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        dbuf_add(&b, chunk, n);
    fclose(f);
    text_out = dbuf_detach(&b, len);
    dbuf_release(&b); /* detach leaves an empty buffer behind */
    return text_out;
}

static void dump_list(struct dbuf *out, const char *label, const struct plan *p, const size_t *idx,
                      size_t n)
{
    size_t i;

    dbuf_addf(out, " %s=", label);
    if (n == 0)
        dbuf_adds(out, "-");
    for (i = 0; i < n; i++)
        dbuf_addf(out, "%s%s", i ? "," : "", p->steps[idx[i]].id);
}

/* A task's duration and failure probability (what its config says, with
 * their defaults); 1 and 0 for the other types. */
static void task_params(const struct plan_step *st, double *duration_s, double *fail_p)
{
    json_t *d = json_object_get(st->config, "duration_seconds");
    json_t *f = json_object_get(st->config, "fail_probability");
    bool is_task = st->step_type == &steps_task_type;

    *duration_s = is_task && json_is_number(d) ? json_number_value(d) : 1.0;
    *fail_p = is_task && json_is_number(f) ? json_number_value(f) : 0.0;
}

static void dump_step(struct dbuf *out, const struct plan *p, const struct plan_step *st)
{
    double duration_s, fail_p;
    size_t i;

    task_params(st, &duration_s, &fail_p);
    dbuf_addf(out, "step %s type=%s kind=%s", st->id, st->type, st->step_type->name);
    dump_list(out, "deps", p, st->deps, st->n_deps);
    dbuf_addf(out, " attempts=%d backoff=%g*%g^n<=%g duration=%g fail=%g timeout_ms=%lld",
              st->retry.max_attempts, st->retry.initial_interval_s, st->retry.backoff_coefficient,
              st->retry.max_interval_s, duration_s, fail_p, (long long)st->timeout_ms);
    if (st->action)
        dbuf_addf(out, " action=%s", st->action);
    if (st->if_expr)
        dbuf_addf(out, " if=\"%s\"", st->if_expr);
    if (st->rate_per_second > 0)
        dbuf_addf(out, " rate=%g/s", st->rate_per_second);
    if (strcmp(st->name, st->id) != 0)
        dbuf_addf(out, " name=\"%s\"", st->name);
    for (i = 0; i < st->retry.n_non_retryable_errors; i++)
        dbuf_addf(out, "%s%s", i ? "," : " non_retryable=", st->retry.non_retryable_errors[i]);
    dbuf_adds(out, "\n");
}

static void dump_plan(struct dbuf *out, const struct plan *p)
{
    char *input = json_dumps(p->input, JSON_COMPACT | JSON_SORT_KEYS);
    size_t i;

    dbuf_addf(out, "plan %s", p->name);
    if (p->version)
        dbuf_addf(out, " version=%s", p->version);
    if (p->timeout_ms)
        dbuf_addf(out, " timeout_ms=%lld", (long long)p->timeout_ms);
    if (p->code_version)
        dbuf_addf(out, " code_version=%d", p->code_version);
    if (p->concurrency_limit)
        dbuf_addf(out, " concurrency=%d", p->concurrency_limit);
    if (p->concurrency_key)
        dbuf_addf(out, " concurrency_key=\"%s\"", p->concurrency_key);
    if (json_object_size(p->input))
        dbuf_addf(out, " input=%s", input);
    if (p->description)
        dbuf_addf(out, " description=\"%s\"", p->description);
    dbuf_adds(out, "\n");
    free(input);
    for (i = 0; i < p->n_steps; i++)
        dump_step(out, p, &p->steps[p->topo[i]]);
}

static void write_expected(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A YAML plan's definition is what gets stored; parsed back as JSON it
 * must give the same plan (warnings aside: they name YAML locations). */
static void assert_json_round_trip(const struct plan *plan, const struct def_options *opts)
{
    char *json = json_dumps(plan->definition, JSON_COMPACT);
    struct plan *again = NULL;
    struct dbuf a, b;

    assert_non_null(json);
    assert_int_equal(def_parse(json, strlen(json), opts, &again, NULL, NULL), DURABLE_OK);
    dbuf_init(&a, 0);
    dbuf_init(&b, 0);
    dump_plan(&a, plan);
    dump_plan(&b, again);
    assert_string_equal(a.buf, b.buf);
    dbuf_release(&a);
    dbuf_release(&b);
    plan_unref(again);
    free(json);
}

static void run_case(void **state)
{
    const struct case_file *c = *state;
    const struct def_options opts = { .action_name = store_builtin_action_name,
                                      .find_type = steps_builtin_find,
                                      .type_name = steps_builtin_name };
    struct def_report rep;
    struct plan *plan = NULL;
    durable_error err = { DURABLE_OK, "" };
    struct dbuf out;
    char *text, *expected;
    size_t len = 0, expected_len = 0;
    durable_code code;

    text = read_all(c->json_path, &len);
    assert_non_null(text);
    def_report_init(&rep);
    dbuf_init(&out, 0);
    if (c->is_yaml)
        code = def_parse_yaml(text, len, &opts, &plan, &rep, &err);
    else
        code = def_parse(text, len, &opts, &plan, &rep, &err);
    if (c->is_valid && code == DURABLE_OK)
        dump_plan(&out, plan);
    if (c->is_valid && code == DURABLE_OK && c->is_yaml)
        assert_json_round_trip(plan, &opts);
    def_report_format(&rep, &out);
    if (update_expected)
        write_expected(c->expected_path, out.buf);
    expected = read_all(c->expected_path, &expected_len);
    if (!expected || strcmp(expected, out.buf) != 0)
        print_error("%s\n--- expected\n%s--- got (code %d)\n%s", c->json_path,
                    expected ? expected : "(missing)\n", code, out.buf);
    assert_non_null(expected);
    assert_string_equal(expected, out.buf);
    if (c->is_valid) {
        assert_int_equal(code, DURABLE_OK);
        assert_int_equal(rep.n_errors, 0);
    } else {
        assert_true(code == DURABLE_EINVAL || code == DURABLE_ESYNTAX || code == DURABLE_ETOOBIG);
        assert_null(plan);
        assert_true(rep.n_errors > 0);
        assert_true(strlen(err.msg) > 0);
    }
    free(expected);
    free(text);
    dbuf_release(&out);
    def_report_release(&rep);
    plan_unref(plan);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* Appends a case for every NAME*.json and NAME*.yaml in
 * DURABLE_TEST_DATA/def/SUB, sorted. Returns false if the directory cannot
 * be read. */
static bool add_cases(const char *sub, bool is_valid, struct CMUnitTest **tests, size_t *n)
{
    char *dir = xasprintf("%s/def/%s", DURABLE_TEST_DATA, sub);
    char **names = NULL;
    size_t n_names = 0, i, len;
    struct dirent *e;
    DIR *d = opendir(dir);

    if (!d) {
        fprintf(stderr, "cannot open %s\n", dir);
        free(dir);
        return false;
    }
    /* One thread reads this directory stream. */
    while ((e = readdir(d)) != NULL) { /* NOLINT(concurrency-mt-unsafe) */
        if (!has_suffix(e->d_name, ".json") && !has_suffix(e->d_name, ".yaml"))
            continue;
        names = xrealloc(names, (n_names + 1) * sizeof(*names));
        names[n_names++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n_names > 1)
        qsort(names, n_names, sizeof(*names), cmp_names);
    *tests = xrealloc(*tests, (*n + n_names) * sizeof(**tests));
    for (i = 0; i < n_names; i++) {
        struct case_file *c = xcalloc(1, sizeof(*c));
        len = strcspn(names[i], ".");
        c->json_path = xasprintf("%s/%s", dir, names[i]);
        c->expected_path = xasprintf("%s/%.*s.expected", dir, (int)len, names[i]);
        c->is_valid = is_valid;
        c->is_yaml = has_suffix(names[i], ".yaml");
        (*tests)[*n] = (struct CMUnitTest){ .name = xasprintf("%s/%s", sub, names[i]),
                                            .test_func = run_case,
                                            .initial_state = c };
        (*n)++;
        free(names[i]);
    }
    free(names);
    free(dir);
    return true;
}

int main(void)
{
    struct CMUnitTest *tests = NULL;
    size_t n = 0, i;
    int failed;

    /* Read once, before any test runs: nothing else touches the environment. */
    update_expected = getenv("DURABLE_UPDATE_EXPECTED") != NULL; /* NOLINT(concurrency-mt-unsafe) */
    if (!add_cases("valid", true, &tests, &n) || !add_cases("invalid", false, &tests, &n) ||
        n < 20) {
        fprintf(stderr, "only %zu data files found\n", n);
        return 1;
    }
    failed = _cmocka_run_group_tests("def_data", tests, n, NULL, NULL);
    for (i = 0; i < n; i++) {
        struct case_file *c = tests[i].initial_state;
        free(c->json_path);
        free(c->expected_path);
        free(c);
        free((char *)tests[i].name);
    }
    free(tests);
    return failed;
}
