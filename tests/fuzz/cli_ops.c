/*
 * cli_ops.c - the argument parser of `durable runs|show|cancel|retry|logs`
 * for fuzz_cli: ops.c itself (its parser is static), with a wrapper that
 * parses and stops.
 */
#include "cli/ops.c"

#include "fuzz.h"

int fuzz_cli_ops(int argc, char **argv)
{
    struct ops_args a = { .cmd = argv[0] };

    for (size_t i = 0; i < DUR_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[0], commands[i].name) == 0)
            return parse_args(&commands[i], argc, argv, &a);
    }
    return -1;
}
