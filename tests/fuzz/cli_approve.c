/*
 * cli_approve.c - `durable approve|reject`'s argument parser for fuzz_cli:
 * approve.c itself (its parser is static), with a wrapper that parses and
 * stops.
 */
#include "cli/approve.c"

#include "fuzz.h"

int fuzz_cli_approve(int argc, char **argv)
{
    struct approve_args a = { 0 };

    return parse_args(argc, argv, &a);
}
