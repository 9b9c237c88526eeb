/*
 * approve.c - `durable approve|reject --server URL RUN STEP [--by NAME]
 * [--comment TEXT] [--token T]`: decides an approval step through a
 * running server's HTTP API (SPEC §8), POST URL/runs/RUN/steps/STEP/approve
 * (or /reject) with {"by", "comment"}.
 *
 * A client of the server, not of the store: the decision is made by the
 * process that executes the run. One blocking libcurl easy request, with
 * connect and total time limits; the response body is read up to
 * APPROVE_MAX_BODY bytes, for the error message the server gives.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define APPROVE_MAX_BODY  ((size_t)64 * 1024)
#define APPROVE_TIMEOUT_S 30L

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

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct dbuf *b = ud;
    size_t len = size * n;

    if (dbuf_add(b, p, len) != DURABLE_OK)
        return 0; /* over the limit: curl stops with CURLE_WRITE_ERROR */
    return len;
}

/* The request's URL, with RUN and STEP escaped. Caller frees. */
static char *make_url(CURL *h, const struct approve_args *a)
{
    size_t n = strlen(a->server);
    char *run = curl_easy_escape(h, a->run, 0);
    char *step = curl_easy_escape(h, a->step, 0);
    char *url;

    while (n > 0 && a->server[n - 1] == '/')
        n--;
    url = xasprintf("%.*s/runs/%s/steps/%s/%s", (int)n, a->server, run ? run : "", step ? step : "",
                    a->is_approve ? "approve" : "reject");
    curl_free(run);
    curl_free(step);
    return url;
}

/* The server's error message in body ({"error": {"message"}}), or the body. */
static void print_refusal(const char *cmd, long status, const struct dbuf *body)
{
    json_t *j = json_loads(body->buf, 0, NULL);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));

    fprintf(stderr, "durable %s: the server answered %ld: %s\n", cmd, status,
            msg ? msg : (body->len ? body->buf : "(no body)"));
    json_decref(j);
}

/* Sends the decision. Returns the exit code. */
static int send_decision(const char *cmd, const struct approve_args *a)
{
    CURL *h = NULL;
    struct curl_slist *hdr = NULL;
    struct dbuf body;
    char *url = NULL, *payload = NULL, *auth = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    json_t *req = NULL;
    long status = 0;
    CURLcode cc;
    bool bad;
    int rc = 1;

    dbuf_init(&body, APPROVE_MAX_BODY);
    h = curl_easy_init();
    /* Absent fields are left out, not sent as null; json_string refuses
     * text that is not UTF-8, and so does the set. */
    req = json_object();
    bad = a->by && json_object_set_new(req, "by", json_string(a->by)) != 0;
    bad = bad || (a->comment && json_object_set_new(req, "comment", json_string(a->comment)) != 0);
    payload = bad ? NULL : json_dumps(req, JSON_COMPACT);
    if (!h || !payload) {
        fprintf(stderr, "durable %s: --by and --comment must be UTF-8 text\n", cmd);
        goto done;
    }
    url = make_url(h, a);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    if (a->token) {
        auth = xasprintf("Authorization: Bearer %s", a->token);
        hdr = curl_slist_append(hdr, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, APPROVE_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "durable %s: could not reach %s: %s\n", cmd, a->server,
                errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        print_refusal(cmd, status, &body);
        goto done;
    }
    printf("%s %s: %s\n", a->run, a->step, a->is_approve ? "approved" : "rejected");
    rc = 0;
done:
    curl_slist_free_all(hdr);
    if (h)
        curl_easy_cleanup(h);
    free(auth);
    free(url);
    free(payload);
    json_decref(req);
    dbuf_release(&body);
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
