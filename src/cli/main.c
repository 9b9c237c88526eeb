/*
 * main.c - the `durable` command: dispatches to one function per command.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "durable.h"

const char *cli_db(const char *flag)
{
    const char *env = getenv("DURABLE_DB"); /* NOLINT(concurrency-mt-unsafe): no thread yet */

    if (flag)
        return flag;
    return env && env[strspn(env, " \t")] ? env : NULL;
}

bool cli_db_is_file(const char *location)
{
    return strncmp(location, "postgres://", 11) != 0 && strncmp(location, "postgresql:", 11) != 0;
}

void cli_db_label(const char *location, char *out, size_t n)
{
    const char *scheme = strstr(location, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    const char *pw = strstr(location, "password=");

    if (colon)
        snprintf(out, n, "%.*s:***%s", (int)(colon - location), location, at);
    else if (pw)
        snprintf(out, n, "%.*spassword=***%s", (int)(pw - location), location,
                 pw + strcspn(pw, " "));
    else
        snprintf(out, n, "%s", location);
}

static const char usage[] =
        "usage: durable COMMAND [ARGS]\n"
        "\n"
        "commands:\n"
        "  serve           serve the HTTP API, the web UI and live events (default\n"
        "                  http://127.0.0.1:8000), resuming unfinished runs\n"
        "  run FILE        run a workflow file with live progress (resumable with --id)\n"
        "  validate FILE…  check workflow files and print every error with its location\n"
        "  approve|reject --server URL RUN STEP\n"
        "                  decide an approval step through a running server\n"
        "  runs            list runs (--status S, --workflow W, time ranges, --input F=V)\n"
        "  show RUN        print a run's steps table\n"
        "  cancel RUN      cancel an unfinished run\n"
        "  retry RUN       resume a failed run from its failed steps\n"
        "  pause RUN       pause a run: running steps finish, nothing new starts\n"
        "  resume RUN      resume a paused run\n"
        "  restart RUN --from STEP\n"
        "                  a new run of a finished run, again from STEP\n"
        "  logs RUN        print a run's execution log (--level L)\n"
        "  signal RUN NAME [JSON]\n"
        "                  send a signal to a run\n"
        "  delete RUN      delete a finished run\n"
        "  purge           delete finished runs (--older-than D, --workflow W,\n"
        "                  --status S, --dry-run)\n"
        "                  (these eleven act through --server URL or on --db PATH)\n"
        "  schedule add|list|pause|resume|rm\n"
        "                  the schedules that start runs on a cron expression or an\n"
        "                  interval (through --server URL or on --db PATH)\n"
        "  bulk --server URL ACTION [filters]\n"
        "                  cancel or retry every run the filters match, in one commit\n"
        "  version         print the version\n"
        "\n"
        "`durable COMMAND --help` describes each command.\n";

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (!cmd) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            puts("usage: durable version\n\nprints the version of durable");
            return 0;
        }
        printf("durable %s\n", durable_version());
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return cli_run(argc - 1, argv + 1);
    if (strcmp(cmd, "validate") == 0)
        return cli_validate(argc - 1, argv + 1);
    if (strcmp(cmd, "approve") == 0 || strcmp(cmd, "reject") == 0)
        return cli_approve(argc - 1, argv + 1);
    if (strcmp(cmd, "runs") == 0 || strcmp(cmd, "show") == 0 || strcmp(cmd, "cancel") == 0 ||
        strcmp(cmd, "retry") == 0 || strcmp(cmd, "logs") == 0 || strcmp(cmd, "signal") == 0 ||
        strcmp(cmd, "delete") == 0 || strcmp(cmd, "purge") == 0 || strcmp(cmd, "pause") == 0 ||
        strcmp(cmd, "resume") == 0 || strcmp(cmd, "restart") == 0 || strcmp(cmd, "bulk") == 0)
        return cli_ops(argc - 1, argv + 1);
    if (strcmp(cmd, "schedule") == 0)
        return cli_schedule(argc - 1, argv + 1);
    fprintf(stderr, "durable: unknown command \"%s\"\n\n%s", cmd, usage);
    return 2;
}
