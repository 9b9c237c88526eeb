/*
 * fuzz_cli.c - fuzz target: the argument parsers of the `durable` command.
 * An input is the arguments separated by NUL bytes (at most 32); the first
 * byte picks the command (serve, run, approve, reject, runs, show, cancel,
 * retry, logs), given as argv[0] as main() does. Only the parsers run
 * (cli_*.c): never the command. Their messages go to stdout and stderr
 * (run it with -close_fd_mask=3). Seeds: tests/fuzz/corpus/cli.
 */
#include "util/common.h"

#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 32

static const char *const names[] = { "serve", "run",    "approve", "reject", "runs",
                                     "show",  "cancel", "retry",   "logs" };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    unsetenv("DURABLE_TOKEN"); /* NOLINT(concurrency-mt-unsafe): no thread yet */
    unsetenv("DURABLE_DB");    /* NOLINT(concurrency-mt-unsafe) */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *argv[MAX_ARGS + 2];
    char *buf, *p, *end;
    int argc = 1;
    size_t cmd;

    if (size < 1)
        return 0;
    cmd = data[0] % DUR_ARRAY_LEN(names);
    buf = malloc(size); /* the arguments and a final NUL */
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    argv[0] = (char *)names[cmd];
    end = buf + size - 1;
    for (p = buf; p < end && argc <= MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    if (cmd == 0)
        fuzz_cli_serve(argc, argv);
    else if (cmd == 1)
        fuzz_cli_run(argc, argv);
    else if (cmd <= 3)
        fuzz_cli_approve(argc, argv);
    else
        fuzz_cli_ops(argc, argv);
    free(buf);
    return 0;
}
