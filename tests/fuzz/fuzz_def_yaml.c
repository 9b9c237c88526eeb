/*
 * fuzz_def_yaml.c - fuzz target: any bytes as a YAML definition
 * (def_parse_yaml: libyaml's events into a located tree, the older
 * `tasks:` shape rewritten, then the checks def_parse makes). Seeds: the
 * definitions of tests/data/def and examples/.
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
    fuzz_def_check((const char *)data, size, DEF_FORMAT_YAML);
    return 0;
}
