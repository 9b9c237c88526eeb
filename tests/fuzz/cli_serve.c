/*
 * cli_serve.c - `durable serve`'s argument parser for fuzz_cli: serve.c
 * itself (its parsers are static), with a wrapper that parses and stops.
 */
#include "cli/serve.c"

#include "fuzz.h"

int fuzz_cli_serve(int argc, char **argv)
{
    struct serve_args a;
    char host[256];
    int port = 0;
    int rc = parse_args(argc, argv, &a);

    if (rc == 0 && a.listen)
        rc = parse_listen(a.listen, host, sizeof(host), &port);
    return rc;
}
