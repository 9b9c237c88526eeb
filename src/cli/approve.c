/*
 * approve.c - `durable approve|reject --server URL RUN STEP [--by NAME]
 * [--comment TEXT] [--token T]`: decides an approval step through a
 * running server's HTTP API (SPEC §8), POST URL/runs/RUN/steps/STEP/approve
 * (or /reject) with {"by", "comment"}.
 *
 * A client of the server, not of the store: the decision is made by the
 * process that executes the run. The request is client.c's.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static const char approve_usage[] =
        "usage: durable approve|reject --server URL RUN STEP [--by NAME] [--comment TEXT]\n"
        "                              [--token T]\n"
        "\n"
        "Decides an approval step that is waiting for a person, through the HTTP API\n"
        "of a running `durable serve` at URL (such as http://127.0.0.1:8000):\n"
        "`approve` and `reject` both complete the step, with output {\"approved\",\n"
        "\"by\", \"comment\", \"at\"}; the run then goes on.\n"
        "\n"
        "  --server URL    the server's base URL (required)\n"
        "  --by NAME       who decides (default: $USER)\n"
        "  --comment TEXT  why\n"
        "  --token T       the server's bearer token (default: $DURABLE_TOKEN)\n"
        "\n"
        "Exit status: 0 decided, 1 the server refused (the step is not waiting, was\n"
        "decided already, no such run or step) or could not be reached, 2 usage error.\n";

struct approve_args {
    bool is_approve;
    const char *server;
    const char *run;
    const char *step;
    const char *by;
    const char *comment;
    const char *token;
};

/* Parses argv (argv[0] is "approve" or "reject"). Returns 0, 1 for --help,
 * or 2 after printing a usage error. */
static int parse_args(int argc, char **argv, struct approve_args *a)
{
    const char *pos[2];
    int i, n_pos = 0;

    a->is_approve = strcmp(argv[0], "approve") == 0;
    for (i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **dst = NULL;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
            return 1;
        if (strcmp(o, "--server") == 0)
            dst = &a->server;
        else if (strcmp(o, "--by") == 0)
            dst = &a->by;
        else if (strcmp(o, "--comment") == 0)
            dst = &a->comment;
        else if (strcmp(o, "--token") == 0)
            dst = &a->token;
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "durable %s: %s needs a value\n\n%s", argv[0], o, approve_usage);
                return 2;
            }
            *dst = argv[++i];
        } else if (o[0] == '-' && o[1] != '\0') {
            fprintf(stderr, "durable %s: unknown option \"%s\"\n\n%s", argv[0], o, approve_usage);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = o;
        } else {
            fprintf(stderr, "durable %s: unexpected argument \"%s\"\n\n%s", argv[0], o,
                    approve_usage);
            return 2;
        }
    }
    if (!a->server || n_pos != 2) {
        fprintf(stderr, "durable %s: %s\n\n%s", argv[0],
                !a->server ? "--server URL is required" : "RUN and STEP are required",
                approve_usage);
        return 2;
    }
    a->run = pos[0];
    a->step = pos[1];
    return 0;
}

/* Sends the decision. Returns the exit code. */
static int send_decision(const char *cmd, const struct approve_args *a)
{
    struct cli_server srv = { .cmd = cmd, .url = a->server, .token = a->token };
    char *path = NULL, *payload = NULL, *run = NULL, *step = NULL;
    json_t *req = json_object();
    bool bad;
    int rc = 1;

    /* Absent fields are left out, not sent as null; json_string refuses
     * text that is not UTF-8, and so does the set. */
    bad = a->by && json_object_set_new(req, "by", json_string(a->by)) != 0;
    bad = bad || (a->comment && json_object_set_new(req, "comment", json_string(a->comment)) != 0);
    payload = bad ? NULL : json_dumps(req, JSON_COMPACT);
    if (!payload) {
        fprintf(stderr, "durable %s: --by and --comment must be UTF-8 text\n", cmd);
        goto done;
    }
    run = cli_url_escape(a->run);
    step = cli_url_escape(a->step);
    path = xasprintf("/runs/%s/steps/%s/%s", run, step, a->is_approve ? "approve" : "reject");
    rc = cli_http_call(&srv, "POST", path, payload, NULL);
    if (rc == 0)
        printf("%s %s: %s\n", a->run, a->step, a->is_approve ? "approved" : "rejected");
done:
    free(path);
    free(run);
    free(step);
    free(payload);
    json_decref(req);
    return rc;
}

int cli_approve(int argc, char **argv)
{
    struct approve_args a = { 0 };
    int rc = parse_args(argc, argv, &a);

    if (rc == 1) {
        fputs(approve_usage, stdout);
        return 0;
    }
    if (rc != 0)
        return rc;
    if (!a.by)
        a.by = getenv("USER"); /* NOLINT(concurrency-mt-unsafe): one thread here */
    if (!a.token)
        a.token = getenv("DURABLE_TOKEN"); /* NOLINT(concurrency-mt-unsafe) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "durable %s: could not start libcurl\n", argv[0]);
        return 1;
    }
    rc = send_decision(argv[0], &a);
    curl_global_cleanup();
    return rc;
}
