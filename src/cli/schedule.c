/*
 * schedule.c - `durable schedule add|list|pause|resume|rm`: the schedules
 * (POST/GET/DELETE /schedules) through a running server (--server URL,
 * client.c) or on a database file (--db PATH, durable_schedule_*). Both
 * give the schedule's JSON, which one printer shows.
 *
 * A database file is opened with DURABLE_RECOVER_NONE: no schedule fires
 * in this process; the next `durable serve --db PATH` fires them.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"
#include "util/util.h"

/* The options of `schedule add` and the members of the schedule they set
 * (a string member, but catch_up_max, an integer, and paused, a flag). */
static const struct {
    const char *option;
    const char *member;
} add_options[] = {
    { "--cron", "cron" },
    { "--every", "every" },
    { "--id", "id" },
    { "--timezone", "timezone" },
    { "--input", "input" },
    { "--overlap", "overlap" },
    { "--catch-up", "catch_up" },
    { "--catch-up-max", "catch_up_max" },
};
#define N_ADD DUR_ARRAY_LEN(add_options)

struct sched_args {
    const char *verb; /* add, list, pause, resume, rm */
    const char *server;
    const char *token;
    const char *db;
    const char *arg; /* add: WORKFLOW; pause, resume, rm: ID */
    const char *values[N_ADD];
    bool paused;
};

static const char usage[] =
        "usage: durable schedule add (--server URL | --db PATH) WORKFLOW\n"
        "                            (--cron EXPR | --every INTERVAL) [--id ID]\n"
        "                            [--timezone TZ] [--input JSON] [--overlap P]\n"
        "                            [--catch-up C] [--catch-up-max N] [--paused]\n"
        "       durable schedule list (--server URL | --db PATH)\n"
        "       durable schedule pause|resume|rm (--server URL | --db PATH) ID\n"
        "\n"
        "Schedules start runs of WORKFLOW on a cron expression or an interval.\n"
        "\n"
        "  --cron EXPR        minute hour day-of-month month day-of-week, or @daily...\n"
        "  --every INTERVAL   90s, 5m, 1h30m (1s to 366d)\n"
        "  --id ID            the schedule's id (default: a new sch_ id); an existing\n"
        "                     id replaces that schedule's definition\n"
        "  --timezone TZ      an IANA time zone for --cron (default UTC)\n"
        "  --input JSON       the input object of every run (default {})\n"
        "  --overlap P        skip (default), queue_one, allow or cancel_previous\n"
        "  --catch-up C       none, last (default) or all\n"
        "  --catch-up-max N   with all: at most N missed ticks (1 to 1000, default 100)\n"
        "  --paused           create it paused\n"
        "\n"
        "list prints id, workflow, when, time zone, state and the next fire time.\n"
        "rm deletes a schedule; the runs it started stay.\n"
        "\n"
        "  --server URL   a running `durable serve` (such as http://127.0.0.1:8000)\n"
        "  --token T      the server's bearer token (default: $DURABLE_TOKEN)\n"
        "  --db PATH      a database file no server has open (default $DURABLE_DB)\n"
        "\n"
        "Exit status: 0 done, 1 it failed (refused, no such schedule, server down),\n"
        "2 usage error.\n";

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "durable schedule: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n\n%s", usage);
    return 2;
}

/* The slot of option o, or NULL. */
static const char **option_slot(struct sched_args *a, const char *o)
{
    if (strcmp(o, "--server") == 0)
        return &a->server;
    if (strcmp(o, "--token") == 0)
        return &a->token;
    if (strcmp(o, "--db") == 0)
        return &a->db;
    if (strcmp(a->verb, "add") != 0)
        return NULL;
    for (size_t i = 0; i < N_ADD; i++) {
        if (strcmp(o, add_options[i].option) == 0)
            return &a->values[i];
    }
    return NULL;
}

/* add's own checks: 0, or 2 after a usage error. */
static int check_add(const struct sched_args *a)
{
    const char *input = a->values[4], *max = a->values[7];
    json_t *j;

    if (!a->values[0] == !a->values[1])
        return usage_error("%s", a->values[0] ? "--cron and --every exclude each other"
                                              : "--cron EXPR or --every INTERVAL is required");
    if (input) {
        j = json_loads(input, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            return usage_error("--input is a JSON object such as '{\"n\": 1}', not \"%s\"", input);
        }
        json_decref(j);
    }
    if (max && (strspn(max, "0123456789") != strlen(max) || !max[0] || strlen(max) > 4))
        return usage_error("--catch-up-max is a whole number from 1 to 1000, not \"%s\"", max);
    return 0;
}

static int check_args(struct sched_args *a);

/* Returns 0, 1 after printing --help, or 2 after a usage error. */
static int parse_args(int argc, char **argv, struct sched_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot;

        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            printf("%s", usage);
            return 1;
        }
        if (o[0] != '-' || o[1] == '\0') {
            if (a->arg || strcmp(a->verb, "list") == 0)
                return usage_error("unexpected argument \"%s\"", o);
            a->arg = o;
            continue;
        }
        if (strcmp(o, "--paused") == 0 && strcmp(a->verb, "add") == 0) {
            a->paused = true;
            continue;
        }
        slot = option_slot(a, o);
        if (!slot)
            return usage_error("unknown option \"%s\"", o);
        if (i + 1 >= argc)
            return usage_error("%s needs a value", o);
        *slot = argv[++i];
    }
    return check_args(a);
}

/* The checks once every argument is taken: 0, or 2 after a usage error. */
static int check_args(struct sched_args *a)
{
    if (strcmp(a->verb, "list") != 0 && !a->arg)
        return usage_error("%s",
                           strcmp(a->verb, "add") == 0 ? "WORKFLOW is required" : "ID is required");
    if (!a->server)
        a->db = cli_db(a->db);
    if (!a->server == !a->db)
        return usage_error("%s", a->db ? "--server and --db exclude each other"
                                       : "--server URL or --db PATH is required");
    return strcmp(a->verb, "add") == 0 ? check_add(a) : 0;
}

/* add's body: the schedule's JSON text (owned). */
static char *add_body(const struct sched_args *a)
{
    json_t *o = json_object();
    char *out;

    json_object_set_new(o, "workflow", json_string(a->arg));
    for (size_t i = 0; i < N_ADD; i++) {
        const char *v = a->values[i];

        if (!v)
            continue;
        if (strcmp(add_options[i].member, "input") == 0)
            json_object_set_new(o, "input", json_loads(v, 0, NULL));
        else if (strcmp(add_options[i].member, "catch_up_max") == 0)
            json_object_set_new(o, "catch_up_max", json_integer(strtoll(v, NULL, 10)));
        else
            json_object_set_new(o, add_options[i].member, json_string(v));
    }
    if (a->paused)
        json_object_set_new(o, "paused", json_true());
    out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}

/* Where the command acts: srv.url set, or d open. */
struct sched_target {
    struct cli_server srv;
    durable *d;
};

/* The verb on the database file: the answer's JSON text (durable_free), or
 * NULL (rm); false after printing why. */
static bool call_db(durable *d, const struct sched_args *a, const char *body, char **out)
{
    bool shows = strcmp(a->verb, "pause") == 0 || strcmp(a->verb, "resume") == 0;
    durable_error err = { 0 };
    durable_code rc;

    *out = NULL;
    if (body)
        rc = durable_schedule_create(d, body, out, &err);
    else if (strcmp(a->verb, "list") == 0)
        rc = durable_schedules_list(d, out, &err);
    else if (strcmp(a->verb, "rm") == 0)
        rc = durable_schedule_delete(d, a->arg, &err);
    else
        rc = durable_schedule_pause(d, a->arg, strcmp(a->verb, "pause") == 0, &err);
    if (rc == DURABLE_OK && shows)
        rc = durable_schedule_get(d, a->arg, out, &err);
    if (rc != DURABLE_OK)
        fprintf(stderr, "durable schedule %s: %s\n", a->verb, err.msg);
    return rc == DURABLE_OK;
}

/* The verb through the server: the answer's JSON text (free); false after
 * printing why. */
static bool call_server(const struct cli_server *srv, const struct sched_args *a, const char *body,
                        char **out)
{
    char *id = a->arg ? cli_url_escape(a->arg) : NULL, *path;
    const char *method = "POST";
    bool ok;

    if (body) {
        path = xstrdup("/schedules");
    } else if (strcmp(a->verb, "list") == 0) {
        path = xstrdup("/schedules");
        method = "GET";
    } else if (strcmp(a->verb, "rm") == 0) {
        path = xasprintf("/schedules/%s", id);
        method = "DELETE";
    } else {
        path = xasprintf("/schedules/%s/%s", id, a->verb);
    }
    ok = cli_http_call(srv, method, path, body, out) == 0;
    free(path);
    free(id);
    return ok;
}

/* The answer of the verb as JSON (a schedule, the list, or {} for rm);
 * NULL after printing why. */
static json_t *call(struct sched_target *t, const struct sched_args *a)
{
    char *text = NULL, *body = strcmp(a->verb, "add") == 0 ? add_body(a) : NULL;
    json_t *doc = NULL;
    bool ok;

    if (t->d) {
        ok = call_db(t->d, a, body, &text);
        if (ok)
            doc = json_loads(text ? text : "{}", 0, NULL);
        durable_free(text);
    } else {
        ok = call_server(&t->srv, a, body, &text);
        if (ok)
            doc = json_loads(text && *text ? text : "{}", 0, NULL);
        free(text);
    }
    free(body);
    return doc;
}

/* "every 90s" or "cron 30 2 * * *" */
static void print_when(const json_t *s, char *out, size_t n)
{
    const char *cron = json_string_value(json_object_get(s, "cron"));
    const char *every = json_string_value(json_object_get(s, "every"));

    if (cron)
        snprintf(out, n, "cron %s", cron);
    else
        snprintf(out, n, "every %s", every ? every : "?");
}

static const char *str_or(const json_t *s, const char *key, const char *dflt)
{
    const char *v = json_string_value(json_object_get(s, key));

    return v ? v : dflt;
}

static void print_header(void)
{
    printf("%-24s %-20s %-22s %-16s %-7s %s\n", "ID", "WORKFLOW", "WHEN", "TIMEZONE", "STATE",
           "NEXT");
}

static void print_row(const json_t *s)
{
    const char *next = json_string_value(json_array_get(json_object_get(s, "next"), 0));
    char when[300];

    print_when(s, when, sizeof when);
    printf("%-24s %-20s %-22s %-16s %-7s %s\n", str_or(s, "id", "?"), str_or(s, "workflow", "?"),
           when, str_or(s, "timezone", "UTC"),
           json_is_true(json_object_get(s, "paused")) ? "paused" : "active", next ? next : "-");
}

static void print_done(const struct sched_args *a, const json_t *doc)
{
    size_t i;
    json_t *s;

    if (strcmp(a->verb, "rm") == 0) {
        printf("schedule %s deleted\n", a->arg);
        return;
    }
    if (strcmp(a->verb, "list") != 0) {
        printf("schedule %s %s\n", str_or(doc, "id", a->arg),
               strcmp(a->verb, "add") == 0     ? "created"
               : strcmp(a->verb, "pause") == 0 ? "paused"
                                               : "resumed");
        json_array_foreach(json_object_get(doc, "next"), i, s)
        {
            printf("  next: %s\n", json_string_value(s));
        }
        return;
    }
    print_header();
    json_array_foreach(doc, i, s)
    {
        print_row(s);
    }
}

/* Opens the database file (no run resumed, no schedule fired) or readies
 * the client. 0, or 1 after printing why. */
static int open_target(const struct sched_args *a, struct sched_target *t)
{
    durable_options opts = { .db_path = a->db, .recovery = DURABLE_RECOVER_NONE };
    durable_error err = { 0 };

    if (!a->db) {
        t->srv.cmd = "schedule";
        t->srv.url = a->server;
        t->srv.token =
                a->token ? a->token : getenv("DURABLE_TOKEN"); /* NOLINT(concurrency-mt-unsafe) */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
            return 0;
        fprintf(stderr, "durable schedule: could not start libcurl\n");
        return 1;
    }
    if (cli_db_is_file(a->db) &&
        access(strncmp(a->db, "sqlite:", 7) == 0 ? a->db + 7 : a->db, F_OK) != 0) {
        fprintf(stderr, "durable schedule %s: no database at \"%s\"\n", a->verb, a->db);
        return 1;
    }
    t->d = durable_open(&opts, &err);
    if (t->d)
        return 0;
    fprintf(stderr, "durable schedule %s: %s%s\n", a->verb, err.msg,
            err.code == DURABLE_ECONFLICT ? " (use --server URL)" : "");
    return 1;
}

int cli_schedule(int argc, char **argv)
{
    static const char *const verbs[] = { "add", "list", "pause", "resume", "rm" };
    struct sched_args a = { 0 };
    struct sched_target t = { 0 };
    json_t *doc;
    int rc;

    for (size_t i = 0; argc > 1 && i < DUR_ARRAY_LEN(verbs); i++) {
        if (strcmp(argv[1], verbs[i]) == 0)
            a.verb = verbs[i];
    }
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s", usage);
        return 0;
    }
    if (!a.verb)
        return usage_error("%s", argc > 1
                                         ? "the action is add, list, pause, resume or rm"
                                         : "an action is required: add, list, pause, resume or rm");
    rc = parse_args(argc - 1, argv + 1, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (open_target(&a, &t) != 0)
        return 1;
    doc = call(&t, &a);
    if (doc)
        print_done(&a, doc);
    json_decref(doc);
    if (t.d)
        durable_close(t.d);
    else
        curl_global_cleanup();
    return doc ? 0 : 1;
}
