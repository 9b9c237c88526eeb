/*
 * fuzz_expr.c - fuzz target: jq programs and {{ }} templates, alone and
 * inside hostile definitions. The first byte chooses where the rest (X)
 * goes, so that each input costs one jq compilation (15-30 ms of libjq):
 *   0  expr_compile(X)                  1  expr_template_compile(X)
 *   2  a step's "if": X                 3  a transform's "expression": X
 *   4  a log message and an http_request url and header holding X (templates)
 *   5  X as a config key and value, nested in arrays and objects
 * Programs are compiled only, never run: jq 1.6 cannot bound a program's
 * time (expr.h). Seeds: tests/fuzz/corpus/expr.
 */
#include "util/common.h"

#include "fuzz.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "def/def.h"
#include "expr/expr.h"

#define MAX_SRC 4096 /* longer inputs say nothing new and slow the fuzzer */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Compiles src directly as a program (mode 0) or a template (1). */
static void compile_direct(const char *src, bool is_template)
{
    durable_error err = { 0 };

    if (is_template) {
        struct template *t = NULL;
        if (expr_template_compile(src, &t, &err) == DURABLE_OK) {
            (void)expr_template_is_single(t);
            (void)expr_template_has_exprs(t);
        }
        expr_template_free(t);
    } else {
        struct expr *e = NULL;
        if (expr_compile(src, &e, &err) == DURABLE_OK)
            DUR_ASSERT(strcmp(expr_source(e), src) == 0);
        expr_free(e);
    }
}

/* The definition of mode 2..5 around x (a JSON string, stolen). */
static json_t *definition(int mode, json_t *x)
{
    json_t *step = json_pack("{s:s}", "id", "a");
    json_t *config = json_object();

    switch (mode) {
    case 2:
        json_object_set_new(step, "if", x);
        json_object_set_new(step, "type", json_string("log"));
        json_object_set_new(config, "message", json_string("m"));
        break;
    case 3:
        json_object_set_new(step, "type", json_string("transform"));
        json_object_set_new(config, "expression", x);
        break;
    case 4:
        json_object_set_new(step, "type", json_string("http_request"));
        json_object_set_new(config, "url", json_incref(x));
        json_object_set_new(config, "headers", json_pack("{s:O}", "X-A", x));
        json_object_set_new(config, "body", x);
        break;
    default:
        json_object_set_new(step, "type", json_string("log"));
        json_object_set_new(config, "message", json_pack("[{s:[O]}]", "k", x));
        json_object_set(config, json_string_value(x), x);
        json_decref(x);
        break;
    }
    json_object_set_new(step, "config", config);
    return json_pack("{s:s,s:[o]}", "name", "fuzz", "steps", step);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int mode;
    char *src;
    json_t *x, *def;
    char *text;

    if (size < 1 || size > MAX_SRC)
        return 0;
    mode = data[0] % 6;
    src = malloc(size);
    memcpy(src, data + 1, size - 1);
    src[size - 1] = '\0';
    if (mode < 2) {
        compile_direct(src, mode == 1);
        free(src);
        return 0;
    }
    x = json_string(src); /* NULL when not UTF-8: a definition cannot hold it */
    free(src);
    if (!x)
        return 0;
    def = definition(mode, x);
    text = json_dumps(def, JSON_COMPACT);
    json_decref(def);
    fuzz_def_check(text, strlen(text), DEF_FORMAT_JSON);
    free(text);
    return 0;
}
