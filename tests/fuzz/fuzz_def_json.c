/*
 * fuzz_def_json.c - fuzz target: any bytes as a JSON definition (def_parse:
 * jansson, the schema, the graph, each step type's config check, every
 * expression compiled). Seeds: tests/data/def and examples/.
 */
#include "util/common.h"

#include "fuzz.h"

#include "def/def.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_def_check((const char *)data, size, DEF_FORMAT_JSON);
    return 0;
}
