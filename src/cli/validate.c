/*
 * validate.c - `durable validate FILE...`, and cli_read_file(), which every
 * command that takes a file uses.
 *
 * Validation goes through the public durable_validate(), so the command
 * sees exactly what the library and the HTTP API would: one line per
 * diagnostic, each prefixed here with the file name. Results go to stdout
 * (they are the command's output); usage and unreadable files to stderr.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"
#include "util/util.h"

#define VALIDATE_MAX_BYTES ((size_t)1024 * 1024) /* SPEC §9: definitions are at most 1 MiB */

static const char validate_usage[] =
        "usage: durable validate FILE...\n"
        "\n"
        "Checks workflow definitions (JSON) without running them. For each FILE it\n"
        "prints \"FILE: ok\", or every error with where it is, one per line:\n"
        "  FILE: steps[2].depends_on[0]: unknown step \"chrage\" (did you mean \"charge\"?)\n"
        "  FILE: line 7, column 3: '}' expected near '\"b\"'\n"
        "Warnings (unknown fields, ignored settings) are printed as\n"
        "  FILE: warning: WHERE: MESSAGE\n"
        "and do not make a file invalid. FILE \"-\" reads standard input.\n"
        "\n"
        "Exit status: 0 every file is valid, 1 a file is invalid or unreadable,\n"
        "2 usage error.\n";

int cli_read_file(const char *path, size_t max_len, char **out, size_t *out_len)
{
    bool is_stdin = strcmp(path, "-") == 0;
    char chunk[64 * 1024];
    char why[128] = "";
    struct dbuf b;
    ssize_t n;
    int fd = -1;
    int rc = -1;

    *out = NULL;
    *out_len = 0;
    dbuf_init(&b, max_len);
    fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_errno(errno, why, sizeof(why));
        goto done;
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err_errno(errno, why, sizeof(why));
            goto done;
        }
        if (n == 0)
            break;
        if (dbuf_add(&b, chunk, (size_t)n) != DURABLE_OK) {
            snprintf(why, sizeof(why), "the file is larger than %zu bytes", max_len);
            goto done;
        }
    }
    *out = dbuf_detach(&b, out_len);
    rc = 0;

done:
    if (rc != 0)
        fprintf(stderr, "durable: cannot read \"%s\": %s\n", path, why);
    if (fd >= 0 && !is_stdin)
        close(fd);
    dbuf_release(&b);
    return rc;
}

/* Prints each line of report prefixed with "FILE: ". */
static void print_report(const char *path, const char *report)
{
    const char *line = report, *nl;

    while (*line) {
        nl = strchr(line, '\n');
        if (!nl)
            nl = line + strlen(line);
        printf("%s: %.*s\n", path, (int)(nl - line), line);
        line = *nl ? nl + 1 : nl;
    }
}

/* Returns 0 when the file is valid, 1 otherwise. */
static int validate_file(const char *path)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    char *report = NULL;
    size_t len = 0;
    durable_code code;

    if (cli_read_file(path, VALIDATE_MAX_BYTES, &text, &len) != 0)
        return 1;
    code = durable_validate(text, len, &report, &err);
    if (report)
        print_report(path, report);
    else if (code != DURABLE_OK)
        printf("%s: %s\n", path, err.msg[0] ? err.msg : durable_strerror(code));
    if (code == DURABLE_OK)
        printf("%s: ok\n", path);
    durable_free(report);
    free(text);
    return code == DURABLE_OK ? 0 : 1;
}

int cli_validate(int argc, char **argv)
{
    bool options_done = false;
    int i, n_files = 0, status = 0;

    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (options_done || arg[0] != '-' || strcmp(arg, "-") == 0) {
            n_files++;
        } else if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(validate_usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "durable validate: unknown option \"%s\"\n\n%s", arg, validate_usage);
            return 2;
        }
    }
    if (n_files == 0) {
        fputs(validate_usage, stderr);
        return 2;
    }
    options_done = false;
    for (i = 1; i < argc; i++) {
        if (!options_done && strcmp(argv[i], "--") == 0)
            options_done = true;
        else if (validate_file(argv[i]) != 0)
            status = 1;
    }
    fflush(stdout);
    return status;
}
