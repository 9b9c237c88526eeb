/*
 * cli_run.c - `durable run`'s argument parser for fuzz_cli: run.c itself
 * (its parser is static), with a wrapper that parses and stops.
 */
#include "cli/run.c"

#include "fuzz.h"

int fuzz_cli_run(int argc, char **argv)
{
    struct run_args a;

    return parse_args(argc, argv, &a);
}
