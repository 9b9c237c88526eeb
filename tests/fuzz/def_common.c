/*
 * def_common.c - a definition through the whole of the def layer, as the
 * engine sees it: the parser, the checks of every built-in step type
 * (their configs, every jq expression and {{ }} template compiled) and the
 * report's text. Shared by fuzz_def_json, fuzz_def_yaml and fuzz_expr.
 */
#include "util/common.h"

#include "fuzz.h"

#include <stdlib.h>

#include "def/def.h"
#include "steps/steps.h"
#include "store/store.h"
#include "util/util.h"

int fuzz_def_check(const char *text, size_t len, int format)
{
    struct def_options opts = { .find_type = steps_builtin_find,
                                .type_name = steps_builtin_name,
                                .action_name = store_builtin_action_name,
                                .format = (enum def_format)format };
    struct def_report rep;
    struct plan *plan = NULL;
    durable_error err = { 0 };
    struct dbuf out;
    durable_code code;

    def_report_init(&rep);
    dbuf_init(&out, 0);
    code = def_parse_any(text, len, &opts, &plan, &rep, &err);
    def_report_format(&rep, &out);
    if (plan) {
        DUR_ASSERT(code == DURABLE_OK);
        plan_unref(plan);
    } else {
        DUR_ASSERT(code != DURABLE_OK && err.msg[0] != '\0');
    }
    dbuf_release(&out);
    def_report_release(&rep);
    return (int)code;
}
