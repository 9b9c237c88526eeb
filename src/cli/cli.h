/*
 * cli.h - the `durable` command line: one function per command.
 *
 * Each command takes the arguments after its name (argv[0] is the command
 * name) and returns the process exit code: 0 success, 1 failure of the work
 * (invalid file, failed run), 2 usage errors. Commands use only the public
 * API (durable.h), the util base layer and, for `serve`, the HTTP layer
 * (http/http.h).
 */
#ifndef DURABLE_CLI_CLI_H
#define DURABLE_CLI_CLI_H

#include "util/common.h"

int cli_run(int argc, char **argv);
int cli_validate(int argc, char **argv);
/* `durable approve|reject` (approve.c): argv[0] says which. */
int cli_approve(int argc, char **argv);
/* `durable serve` (serve.c): returns 0 after SIGTERM/SIGINT. */
int cli_serve(int argc, char **argv);

/* Reads a whole file of at most max_len bytes. OUT: *out (caller frees),
 * *out_len. Returns 0, or prints "durable: cannot read FILE: why" and returns -1. */
int cli_read_file(const char *path, size_t max_len, char **out, size_t *out_len);

#endif
