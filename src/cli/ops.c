/*
 * ops.c - the operations commands: `durable runs [--status S] [--workflow
 * W]`, `durable show RUN`, `durable cancel RUN`, `durable retry RUN`,
 * `durable pause RUN`, `durable resume RUN`, `durable restart RUN --from STEP`,
 * `durable logs RUN [--level L]`, `durable signal RUN NAME [JSON]`, `durable delete RUN` and
 * `durable purge [--older-than D] [--workflow NAME] [--status S] [--dry-run]`, each against a
 * running server (--server URL, the HTTP API through client.c, token from --token or DURABLE_TOKEN)
 * or a database file (--db PATH, the public API).
 *
 * A database file is opened with DURABLE_RECOVER_NONE: this process resumes
 * no run of its own accord, so reading, cancelling or listing executes
 * nothing. A file a server has open is refused by the engine's lock (the
 * server executes its runs): such a database is operated with --server.
 * A run a `durable run` process is executing (it shares the file) is only
 * read: cancelling, retrying or signalling it here would race with that
 * process.
 * `retry --db` is the exception that executes: the run goes on in this
 * process, which follows it to its end (Ctrl-C leaves it to the next
 * process that opens the file). One thread, besides the engine's.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "durable.h"
#include "util/util.h"

#define OPS_PAGE 500

struct ops_args {
    const char *cmd;
    const char *server;
    const char *token;
    const char *db;
    const char *status;
    const char *workflow;
    const char *level;
    const char *run;
    const char *name;       /* signal: the signal's name; bulk: the action */
    const char *payload;    /* signal: its payload (JSON text), or NULL */
    const char *older_than; /* purge: a duration */
    const char *from;       /* restart: the step to restart from */
    /* runs and bulk: the filters beyond status and workflow (RFC 3339
       times, FIELD=VALUE of the input), and the flags of bulk and purge */
    const char
            *times[4]; /* --created-after, --created-before, --finished-after, --finished-before */
    const char *input;
    bool dry_run;
    bool all;
};

/* The time options, in the order of ops_args.times and of the API's names. */
static const char *const time_options[] = { "--created-after", "--created-before",
                                            "--finished-after", "--finished-before" };
static const char *const time_params[] = { "created_after", "created_before", "finished_after",
                                           "finished_before" };

/* Where the command acts: srv.url set, or d open. */
struct ops_target {
    struct cli_server srv;
    durable *d;
};

struct ops_command {
    const char *name;
    const char *usage;
    const char *options; /* the command's own options, " --status --workflow " */
    bool needs_run;
    int n_more; /* positional arguments after RUN (required ones: 1) */
    int (*fn)(struct ops_target *t, const struct ops_args *a);
};

static const char target_help[] =
        "  --server URL   a running `durable serve` (such as http://127.0.0.1:8000)\n"
        "  --token T      the server's bearer token (default: $DURABLE_TOKEN)\n"
        "  --db PATH      a database file no server has open (`durable run`'s;\n"
        "                 default $DURABLE_DB)\n"
        "\n"
        "Exit status: 0 done, 1 it failed (no such run, refused, server down),\n"
        "2 usage error.\n";

static const char *const run_statuses[] = { "pending", "running",   "waiting", "completed",
                                            "failed",  "cancelled", "paused" };
static const char *const log_levels[] = { "debug", "info", "warning", "error" };

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static bool one_of(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, list[i]) == 0)
            return true;
    }
    return false;
}

/* A failure of the public API, printed. Returns 1. */
static int db_failed(const struct ops_args *a, const durable_error *err)
{
    fprintf(stderr, "durable %s: %s\n", a->cmd, err->msg);
    return 1;
}

/* GET path (server) as JSON. Returns 0, or 1 after printing why. */
static json_t *server_get(struct ops_target *t, const char *method, const char *path)
{
    char *body = NULL;
    json_t *doc = NULL;

    if (cli_http_call(&t->srv, method, path, NULL, &body) == 0) {
        doc = json_loads(body, 0, NULL);
        if (!doc)
            fprintf(stderr, "durable %s: the server's answer is not JSON\n", t->srv.cmd);
    }
    free(body);
    return doc;
}

/* Takes text (a durable_free string) and parses it. */
static json_t *parse_owned(char *text)
{
    json_t *doc = json_loads(text ? text : "null", 0, NULL);

    durable_free(text);
    return doc;
}

/* The run's JSON, from either target; NULL after printing why. */
static json_t *run_doc(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };
    char *path, *run, *text = NULL;
    json_t *doc;

    if (t->d) {
        if (durable_run_get(t->d, a->run, &text, &err) != DURABLE_OK) {
            db_failed(a, &err);
            return NULL;
        }
        return parse_owned(text);
    }
    run = cli_url_escape(a->run);
    path = xasprintf("/runs/%s", run);
    doc = server_get(t, "GET", path);
    free(path);
    free(run);
    return doc;
}

/* ---- runs ---- */

/* The input filter FIELD=VALUE as the field (owned) and the value's JSON
 * text (owned): VALUE as JSON when it is a JSON scalar, else as a string.
 * false after printing why. */
static bool input_filter(const struct ops_args *a, char **field, char **value)
{
    const char *eq = a->input ? strchr(a->input, '=') : NULL;
    json_t *j;

    *field = *value = NULL;
    if (!a->input)
        return true;
    if (!eq || eq == a->input) {
        fprintf(stderr, "durable %s: --input is FIELD=VALUE, not \"%s\"\n", a->cmd, a->input);
        return false;
    }
    *field = xasprintf("%.*s", (int)(eq - a->input), a->input);
    j = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!j || json_is_object(j) || json_is_array(j)) {
        json_decref(j);
        j = json_string(eq + 1);
    }
    *value = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!*value) {
        fprintf(stderr, "durable %s: --input's value is not UTF-8 text\n", a->cmd);
        free(*field);
        *field = NULL;
        return false;
    }
    return true;
}

/* The list's query string after "?limit=N" (owned). */
static char *runs_query(const struct ops_args *a, const char *field, const char *value)
{
    struct dbuf b;
    char *out;

    dbuf_init(&b, 1 << 20);
    if (a->status)
        dbuf_addf(&b, "&status=%s", a->status);
    if (a->workflow) {
        char *wf = cli_url_escape(a->workflow);
        dbuf_addf(&b, "&workflow_id=%s", wf);
        free(wf);
    }
    for (size_t i = 0; i < DUR_ARRAY_LEN(time_params); i++) {
        char *v = a->times[i] ? cli_url_escape(a->times[i]) : NULL;
        if (v)
            dbuf_addf(&b, "&%s=%s", time_params[i], v);
        free(v);
    }
    if (field) {
        char *f = cli_url_escape(field), *v = cli_url_escape(value);
        dbuf_addf(&b, "&input.%s=%s", f, v);
        free(f);
        free(v);
    }
    out = xstrdup(b.buf);
    dbuf_release(&b);
    return out;
}

static json_t *runs_doc(struct ops_target *t, const struct ops_args *a)
{
    durable_run_filter f = { .status = a->status, .workflow_id = a->workflow, .limit = OPS_PAGE };
    durable_error err = { 0 };
    char *text = NULL, *path, *query, *field, *value;
    int64_t *slots[] = { &f.created_after_ms, &f.created_before_ms, &f.finished_after_ms,
                         &f.finished_before_ms };
    json_t *doc = NULL;

    if (!input_filter(a, &field, &value))
        return NULL;
    if (t->d) {
        for (size_t i = 0; i < DUR_ARRAY_LEN(slots); i++) {
            if (a->times[i])
                clock_parse_rfc3339(a->times[i], slots[i]); /* checked by check_args */
        }
        f.input_field = field;
        f.input_value = value;
        if (durable_runs_list(t->d, &f, &text, NULL, &err) != DURABLE_OK)
            db_failed(a, &err);
        else
            doc = parse_owned(text);
    } else {
        query = runs_query(a, field, value);
        path = xasprintf("/runs?limit=%d%s", OPS_PAGE, query);
        doc = server_get(t, "GET", path);
        free(path);
        free(query);
    }
    free(field);
    free(value);
    return doc;
}

static int cmd_runs(struct ops_target *t, const struct ops_args *a)
{
    json_t *runs = runs_doc(t, a), *r;
    size_t i;

    if (!runs)
        return 1;
    if (json_array_size(runs) == 0)
        puts("no runs");
    else
        printf("%-32s %-10s %-24s %s\n", "RUN", "STATUS", "WORKFLOW", "CREATED");
    json_array_foreach(runs, i, r)
    {
        char wf[160];
        snprintf(wf, sizeof(wf), "%s v%lld",
                 json_string_value(json_object_get(r, "workflow_name")) ?: "?",
                 (long long)json_integer_value(json_object_get(r, "workflow_version")));
        printf("%-32s %-10s %-24s %s\n", json_string_value(json_object_get(r, "id")) ?: "?",
               json_string_value(json_object_get(r, "status")) ?: "?", wf,
               json_string_value(json_object_get(r, "created_at")) ?: "");
    }
    json_decref(runs);
    return 0;
}

/* ---- show, cancel, retry ---- */

/* Prints the run's steps table (the one `durable run` draws), then its
 * error, why it is held back, and its waiting approvals with how to decide
 * them. */
static void print_run(struct ops_target *t, json_t *run)
{
    struct view v;
    char *text = json_dumps(run, JSON_COMPACT);
    const char *error = json_string_value(json_object_get(run, "error_message"));
    const char *waiting =
            json_string_value(json_object_get(json_object_get(run, "waiting"), "message"));
    json_t *st;
    size_t i;

    memset(&v, 0, sizeof(v));
    v.tty = isatty(STDOUT_FILENO);
    cli_view_load(&v, text);
    cli_view_draw(&v);
    if (error)
        printf("error: %s\n", error);
    if (waiting) /* held back by a concurrency limit (a server's answer only) */
        printf("not running yet: %s\n", waiting);
    json_array_foreach(json_object_get(run, "steps"), i, st)
    {
        const char *type = json_string_value(json_object_get(st, "type"));
        const char *status = json_string_value(json_object_get(st, "status"));
        if (type && status && strcmp(type, "approval") == 0 && strcmp(status, "waiting") == 0)
            printf("step %s waits for a person: durable approve|reject --server %s %s %s\n",
                   json_string_value(json_object_get(st, "step_id")),
                   t->srv.url ? t->srv.url : "URL", v.run_id,
                   json_string_value(json_object_get(st, "step_id")));
    }
    cli_view_release(&v);
    free(text);
}

static int cmd_show(struct ops_target *t, const struct ops_args *a)
{
    json_t *run = run_doc(t, a);

    if (!run)
        return 1;
    print_run(t, run);
    json_decref(run);
    return 0;
}

/* POST /runs/RUN/VERB on the server. Returns the exit code. */
static int server_post(struct ops_target *t, const struct ops_args *a, const char *verb)
{
    char *run = cli_url_escape(a->run);
    char *path = xasprintf("/runs/%s/%s", run, verb);
    json_t *doc = server_get(t, "POST", path);
    int rc = doc ? 0 : 1;

    json_decref(doc);
    free(path);
    free(run);
    return rc;
}

/* True, after saying so, when a `durable run` process executes the run:
 * a change made here would race with it. */
static bool executed_elsewhere(struct ops_target *t, const struct ops_args *a)
{
    if (!t->d || !durable_run_elsewhere(t->d, a->run))
        return false;
    fprintf(stderr,
            "durable %s: run %s is being executed by another durable process (durable run); "
            "stop it first\n",
            a->cmd, a->run);
    return true;
}

static int cmd_cancel(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };

    if (executed_elsewhere(t, a))
        return 1;
    if (t->d && durable_run_cancel(t->d, a->run, &err) != DURABLE_OK)
        return db_failed(a, &err);
    if (!t->d && server_post(t, a, "cancel") != 0)
        return 1;
    printf("run %s cancelled\n", a->run);
    return 0;
}

/* Pauses (or resumes) the run. With --db the resume is recorded, and the
 * run goes on in the next process that executes runs on the file. */
static int pause_or_resume(struct ops_target *t, const struct ops_args *a, bool pause)
{
    durable_error err = { 0 };
    durable_code rc;

    if (executed_elsewhere(t, a))
        return 1;
    if (t->d) {
        rc = pause ? durable_run_pause(t->d, a->run, &err) : durable_run_resume(t->d, a->run, &err);
        if (rc != DURABLE_OK)
            return db_failed(a, &err);
    } else if (server_post(t, a, pause ? "pause" : "resume") != 0) {
        return 1;
    }
    if (pause)
        printf("run %s paused: running steps finish, nothing new starts until it is resumed\n",
               a->run);
    else if (t->d)
        printf("run %s resumed: it goes on in the next process that runs it (durable serve "
               "--db %s)\n",
               a->run, a->db);
    else
        printf("run %s resumed\n", a->run);
    return 0;
}

static int cmd_pause(struct ops_target *t, const struct ops_args *a)
{
    return pause_or_resume(t, a, true);
}

static int cmd_resume(struct ops_target *t, const struct ops_args *a)
{
    return pause_or_resume(t, a, false);
}

/* Follows a run retried in this process until it finishes. */
static int follow_retried(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };
    const char *status = NULL;
    json_t *run;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    while (!interrupted && !status) {
        if (durable_run_wait(t->d, a->run, 200, &status, &err) != DURABLE_OK) {
            if (err.code != DURABLE_ETIMEOUT)
                return db_failed(a, &err);
            err.code = DURABLE_OK;
        }
    }
    if (interrupted) {
        printf("interrupted; the run goes on when a process opens %s again (durable serve "
               "--db %s)\n",
               a->db, a->db);
        return 130;
    }
    run = run_doc(t, a);
    if (run)
        print_run(t, run);
    json_decref(run);
    return strcmp(status, "completed") == 0 ? 0 : 1;
}

static int cmd_retry(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };

    if (executed_elsewhere(t, a))
        return 1;
    if (t->d) {
        if (durable_run_retry(t->d, a->run, &err) != DURABLE_OK)
            return db_failed(a, &err);
        printf("run %s retried: running again here until it finishes\n", a->run);
        fflush(stdout);
        return follow_retried(t, a);
    }
    if (server_post(t, a, "retry") != 0)
        return 1;
    printf("run %s retried: running again (durable show --server %s %s)\n", a->run, t->srv.url,
           a->run);
    return 0;
}

/* durable restart RUN --from STEP: a new run linked to RUN. With --db this
 * process runs it and follows it to its end, as retry does. */
static int cmd_restart(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };
    struct ops_args follow = *a;
    char *new_id = NULL;
    int rc;

    if (!a->from || !a->from[0]) {
        fprintf(stderr, "durable restart: --from STEP is required (the step to restart from)\n");
        return 2;
    }
    if (t->d) {
        if (durable_run_restart(t->d, a->run, a->from, &new_id, &err) != DURABLE_OK)
            return db_failed(a, &err);
        printf("run %s restarted from step %s as run %s: running here until it finishes\n", a->run,
               a->from, new_id);
        fflush(stdout);
        follow.run = new_id;
        rc = follow_retried(t, &follow);
        durable_free(new_id);
        return rc;
    } else {
        char *run = cli_url_escape(a->run), *path = xasprintf("/runs/%s/restart", run);
        json_t *req = json_pack("{s:s}", "from_step", a->from);
        char *body = json_dumps(req, JSON_COMPACT), *out = NULL;
        json_t *doc = NULL;

        if (cli_http_call(&t->srv, "POST", path, body, &out) == 0)
            doc = json_loads(out, 0, NULL);
        free(out);
        free(body);
        json_decref(req);
        free(path);
        free(run);
        if (!doc)
            return 1;
        printf("run %s restarted from step %s as run %s (durable show --server %s %s)\n", a->run,
               a->from, json_string_value(json_object_get(doc, "id")), t->srv.url,
               json_string_value(json_object_get(doc, "id")));
        json_decref(doc);
    }
    return 0;
}

/* ---- logs ---- */

/* One page of the run's log from after. */
static json_t *logs_doc(struct ops_target *t, const struct ops_args *a, int64_t after)
{
    durable_log_filter f = { .level = a->level, .after_seq = after, .limit = 1000 };
    durable_error err = { 0 };
    char *text = NULL, *path, *run;
    json_t *doc;

    if (t->d) {
        if (durable_run_logs(t->d, a->run, &f, &text, &err) != DURABLE_OK) {
            db_failed(a, &err);
            return NULL;
        }
        return parse_owned(text);
    }
    run = cli_url_escape(a->run);
    path = xasprintf("/runs/%s/logs?limit=1000&after=%lld&level=%s", run, (long long)after,
                     a->level ? a->level : "debug");
    doc = server_get(t, "GET", path);
    free(path);
    free(run);
    return doc;
}

static int cmd_logs(struct ops_target *t, const struct ops_args *a)
{
    int64_t after = 0;
    size_t n = 1000, i;
    json_t *page, *ln;

    while (n == 1000) {
        page = logs_doc(t, a, after);
        if (!page)
            return 1;
        n = json_array_size(json_object_get(page, "logs"));
        json_array_foreach(json_object_get(page, "logs"), i, ln)
        {
            json_t *step = json_object_get(ln, "step_id");
            printf("%s %-7s %s%s%s\n", json_string_value(json_object_get(ln, "at")) ?: "",
                   json_string_value(json_object_get(ln, "level")) ?: "",
                   json_is_string(step) ? json_string_value(step) : "",
                   json_is_string(step) ? ": " : "",
                   json_string_value(json_object_get(ln, "message")) ?: "");
        }
        after = json_integer_value(json_object_get(page, "next_after"));
        json_decref(page);
    }
    return 0;
}

/* ---- signal ---- */

static int cmd_signal(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };
    char *out = NULL;
    json_t *doc = NULL;

    if (executed_elsewhere(t, a))
        return 1;
    if (t->d) {
        if (durable_signal_send(t->d, a->run, a->name, a->payload, &out, &err) != DURABLE_OK)
            return db_failed(a, &err);
        doc = parse_owned(out);
    } else {
        char *run = cli_url_escape(a->run), *name = cli_url_escape(a->name);
        char *path = xasprintf("/runs/%s/signals/%s", run, name);
        char *body = NULL;
        if (cli_http_call(&t->srv, "POST", path, a->payload ? a->payload : "", &body) == 0)
            doc = json_loads(body, 0, NULL);
        free(body);
        free(path);
        free(name);
        free(run);
        if (!doc)
            return 1;
    }
    if (json_is_string(json_object_get(doc, "taken_by")))
        printf("signal %s sent to run %s: taken by step %s\n", a->name, a->run,
               json_string_value(json_object_get(doc, "taken_by")));
    else
        printf("signal %s sent to run %s: kept until a step waits for it\n", a->name, a->run);
    json_decref(doc);
    return 0;
}

/* ---- delete, purge ---- */

static int cmd_delete(struct ops_target *t, const struct ops_args *a)
{
    durable_error err = { 0 };

    if (t->d && durable_run_delete(t->d, a->run, &err) != DURABLE_OK)
        return db_failed(a, &err);
    if (!t->d) {
        char *run = cli_url_escape(a->run);
        char *path = xasprintf("/runs/%s", run);
        int rc = cli_http_call(&t->srv, "DELETE", path, NULL, NULL);

        free(path);
        free(run);
        if (rc != 0)
            return 1;
    }
    printf("run %s deleted\n", a->run);
    return 0;
}

/* Appends "&name=value" (escaped) to b when value is set. */
static void query_add(struct dbuf *b, const char *name, const char *value)
{
    char *v;

    if (!value)
        return;
    v = cli_url_escape(value);
    dbuf_addf(b, "%s%s=%s", b->len ? "&" : "", name, v);
    free(v);
}

static int purge_server(struct ops_target *t, const struct ops_args *a, int64_t *out_n)
{
    struct dbuf q;
    char *path;
    json_t *doc;

    dbuf_init(&q, 4096);
    query_add(&q, "older_than", a->older_than);
    query_add(&q, "workflow", a->workflow);
    query_add(&q, "status", a->status);
    if (a->dry_run)
        query_add(&q, "dry_run", "true");
    if (!a->older_than && !a->workflow && !a->status) /* the command's word: every one */
        query_add(&q, "all", "true");
    path = xasprintf("/runs%s%s", q.len ? "?" : "", q.len ? q.buf : "");
    dbuf_release(&q);
    doc = server_get(t, "DELETE", path);
    free(path);
    if (!doc)
        return 1;
    *out_n = json_integer_value(json_object_get(doc, "deleted"));
    json_decref(doc);
    return 0;
}

/* ---- bulk ---- */

/* POST /runs/bulk's body for the arguments (owned), NULL after printing why. */
static char *bulk_body(const struct ops_args *a)
{
    json_t *body, *flt;
    char *field, *value, *out;

    if (!input_filter(a, &field, &value))
        return NULL;
    flt = json_object();
    if (a->status)
        json_object_set_new(flt, "status", json_string(a->status));
    if (a->workflow)
        json_object_set_new(flt, "workflow", json_string(a->workflow));
    for (size_t i = 0; i < DUR_ARRAY_LEN(time_params); i++) {
        if (a->times[i])
            json_object_set_new(flt, time_params[i], json_string(a->times[i]));
    }
    if (field)
        json_object_set_new(flt, "input",
                            json_pack("{so}", field, json_loads(value, JSON_DECODE_ANY, NULL)));
    body = json_pack("{sssosbsb}", "action", a->name, "filter", flt, "dry_run", a->dry_run, "all",
                     a->all);
    out = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    free(field);
    free(value);
    return out;
}

static int cmd_bulk(struct ops_target *t, const struct ops_args *a)
{
    char *body = bulk_body(a), *answer = NULL;
    json_t *doc = NULL;

    if (!body)
        return 1;
    if (cli_http_call(&t->srv, "POST", "/runs/bulk", body, &answer) == 0)
        doc = json_loads(answer, 0, NULL);
    free(answer);
    free(body);
    if (!doc)
        return 1;
    printf("%s: %lld runs matched, %lld %s\n", a->name,
           (long long)json_integer_value(json_object_get(doc, "matched")),
           (long long)json_integer_value(json_object_get(doc, "touched")),
           a->dry_run ? "would change (dry run: nothing changed)" : "changed");
    json_decref(doc);
    return 0;
}

static int cmd_purge(struct ops_target *t, const struct ops_args *a)
{
    durable_purge p = { .workflow = a->workflow, .status = a->status, .dry_run = a->dry_run };
    durable_error err = { 0 };
    int64_t ms = 0, n = 0;

    if (t->d) {
        if (a->older_than) {
            if (duration_parse(a->older_than, &ms, &err) != DURABLE_OK)
                return db_failed(a, &err);
            p.finished_before_ms = clock_wall_ms() - ms;
        }
        if (durable_runs_purge(t->d, &p, &n, &err) != DURABLE_OK)
            return db_failed(a, &err);
    } else if (purge_server(t, a, &n) != 0) {
        return 1;
    }
    if (a->dry_run)
        printf("%lld finished runs would be deleted (dry run)\n", (long long)n);
    else
        printf("deleted %lld finished runs\n", (long long)n);
    return 0;
}

/* ---- the commands ---- */

#define FILTER_HELP                                                                       \
    "  --status S     only runs in status S: pending, running, waiting, completed,\n"     \
    "                 failed, cancelled or paused\n"                                      \
    "  --workflow W   only runs of workflow W (an id, or a name for every version)\n"     \
    "  --created-after T, --created-before T\n"                                           \
    "                 created at or after T, before T (RFC 3339: 2026-01-31T12:00:00Z)\n" \
    "  --finished-after T, --finished-before T\n"                                         \
    "                 finished at or after T, before T\n"                                 \
    "  --input FIELD=VALUE\n"                                                             \
    "                 the input's FIELD (a.b for a nested one) equals VALUE (JSON:\n"     \
    "                 7 is the number, '\"7\"' the string; other text is a string)\n"
#define FILTER_OPTIONS                                                                          \
    " --status --workflow --created-after --created-before --finished-after --finished-before " \
    "--input "

static const struct ops_command commands[] = {
    { "runs",
      "usage: durable runs (--server URL | --db PATH) [--status S] [--workflow W]\n"
      "                    [--created-after T] [--created-before T]\n"
      "                    [--finished-after T] [--finished-before T] [--input FIELD=VALUE]\n"
      "\n"
      "Lists the runs, newest first (at most 500): id, status, workflow and version,\n"
      "creation time.\n"
      "\n" FILTER_HELP,
      FILTER_OPTIONS, false, 0, cmd_runs },
    { "bulk",
      "usage: durable bulk --server URL ACTION [filters] [--dry-run] [--all]\n"
      "\n"
      "Applies ACTION (cancel, retry, pause or resume) to every run the filters\n"
      "match, in one commit, and prints how many runs matched and how many it\n"
      "changed (a finished run is not cancelled, only a failed one is retried,\n"
      "only a paused one resumed; code-first runs are not paused). At most\n"
      "10000 runs. Without any filter it refuses, unless --all.\n"
      "\n" FILTER_HELP "  --dry-run      count only, change nothing\n"
      "  --all          allow an empty filter: every run\n",
      FILTER_OPTIONS " --dry-run --all ", false, 1, cmd_bulk },
    { "show",
      "usage: durable show (--server URL | --db PATH) RUN\n"
      "\n"
      "Prints the run's steps table (as `durable run` draws it), its error, and how\n"
      "to decide the approvals it waits for.\n",
      " ", true, 0, cmd_show },
    { "cancel",
      "usage: durable cancel (--server URL | --db PATH) RUN\n"
      "\n"
      "Cancels an unfinished run: running steps are abandoned, pending ones\n"
      "cancelled. A finished run cannot be cancelled.\n",
      " ", true, 0, cmd_cancel },
    { "retry",
      "usage: durable retry (--server URL | --db PATH) RUN\n"
      "\n"
      "Resumes a failed run from its failed steps; completed steps are kept. With\n"
      "--server the server runs it on; with --db this command runs it and follows\n"
      "it to its end (exit 0 when it completes, 1 when it fails again).\n",
      " ", true, 0, cmd_retry },
    { "pause",
      "usage: durable pause (--server URL | --db PATH) RUN\n"
      "\n"
      "Pauses an unfinished run: steps running finish, nothing new starts (no ready\n"
      "step, retry or delay) until `durable resume`. A finished or paused run\n"
      "cannot be paused.\n",
      " ", true, 0, cmd_pause },
    { "resume",
      "usage: durable resume (--server URL | --db PATH) RUN\n"
      "\n"
      "Resumes a paused run: what became ready while it was paused starts. With\n"
      "--db the resume is recorded and the run goes on in the next process that\n"
      "executes the file's runs (durable serve --db PATH).\n",
      " ", true, 0, cmd_resume },
    { "restart",
      "usage: durable restart (--server URL | --db PATH) RUN --from STEP\n"
      "\n"
      "Restarts a finished run (completed, failed or cancelled) from STEP as a new\n"
      "run linked to it: STEP and the steps depending on it run again (their\n"
      "business actions apply again); the others keep the original's outputs.\n"
      "With --db this command runs the new run and follows it to its end (exit 0\n"
      "when it completes).\n"
      "\n"
      "  --from STEP    the step to restart from\n",
      " --from ", true, 0, cmd_restart },
    { "logs",
      "usage: durable logs (--server URL | --db PATH) RUN [--level L]\n"
      "\n"
      "Prints the run's execution log, oldest first: time, level, step, message\n"
      "(the messages of its `log` steps at their level; retries and failed\n"
      "attempts as warning, failures as error, the run's start and end as info).\n"
      "\n"
      "  --level L      the least level shown: debug (default), info, warning, error\n",
      " --level ", true, 0, cmd_logs },
    { "signal",
      "usage: durable signal (--server URL | --db PATH) RUN NAME [JSON]\n"
      "\n"
      "Sends the signal NAME (1 to 64 of [A-Za-z0-9_.-]) to an unfinished run, with\n"
      "JSON as its payload (default null). A step waiting for NAME (wait_signal)\n"
      "takes it at once; otherwise it is kept for the first step that waits for it.\n",
      " ", true, 2, cmd_signal },
    { "delete",
      "usage: durable delete (--server URL | --db PATH) RUN\n"
      "\n"
      "Deletes a finished run (completed, failed or cancelled) with its steps,\n"
      "events and signals. An unfinished run is refused: cancel it first.\n",
      " ", true, 0, cmd_delete },
    { "purge",
      "usage: durable purge (--server URL | --db PATH) [--older-than D]\n"
      "                     [--workflow NAME] [--status S] [--dry-run]\n"
      "\n"
      "Deletes the finished runs selected (all of them without an option), oldest\n"
      "first, in batches of 500 per transaction, and prints how many it deleted.\n"
      "\n"
      "  --older-than D  finished more than D ago: a whole number and a unit,\n"
      "                  ms, s, m, h or d (30d, 12h, 90s)\n"
      "  --workflow NAME runs of every version of workflow NAME\n"
      "  --status S      completed, failed or cancelled\n"
      "  --dry-run       count them, delete nothing\n",
      " --older-than --workflow --status --dry-run ", false, 0, cmd_purge },
};

static int usage_error(const struct ops_command *c, const char *fmt, const char *what)
{
    fprintf(stderr, "durable %s: ", c->name);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n\n%s\n%s", c->usage, target_help);
    return 2;
}

/* The slot of option o for command c, or NULL. */
static const char **option_slot(const struct ops_command *c, struct ops_args *a, const char *o)
{
    char key[40];

    if (strcmp(o, "--server") == 0)
        return &a->server;
    if (strcmp(o, "--token") == 0)
        return &a->token;
    if (strcmp(o, "--db") == 0)
        return &a->db;
    snprintf(key, sizeof(key), " %.30s ", o);
    if (!strstr(c->options, key))
        return NULL;
    if (strcmp(o, "--status") == 0)
        return &a->status;
    if (strcmp(o, "--workflow") == 0)
        return &a->workflow;
    if (strcmp(o, "--older-than") == 0)
        return &a->older_than;
    if (strcmp(o, "--from") == 0)
        return &a->from;
    if (strcmp(o, "--input") == 0)
        return &a->input;
    for (size_t i = 0; i < DUR_ARRAY_LEN(time_options); i++) {
        if (strcmp(o, time_options[i]) == 0)
            return &a->times[i];
    }
    return &a->level;
}

/* Whether o is a positional argument: not an option, or a signal's JSON
 * (which may start with '-'). */
static bool is_positional(const struct ops_command *c, const struct ops_args *a, const char *o)
{
    return o[0] != '-' || o[1] == '\0' || (c->n_more > 1 && a->name && !a->payload);
}

/* Takes positional argument o: RUN, then signal's NAME and JSON. False
 * when the command takes no more. */
static bool take_positional(const struct ops_command *c, struct ops_args *a, const char *o)
{
    if (c->needs_run && !a->run)
        a->run = o;
    else if (c->n_more > 0 && !a->name)
        a->name = o;
    else if (c->n_more > 1 && !a->payload)
        a->payload = o;
    else
        return false;
    return true;
}

static int check_args(const struct ops_command *c, struct ops_args *a);

/* Takes o when it is a flag of c (an option without a value). */
static bool take_flag(const struct ops_command *c, struct ops_args *a, const char *o)
{
    bool *slot = strcmp(o, "--dry-run") == 0 ? &a->dry_run
                 : strcmp(o, "--all") == 0   ? &a->all
                                             : NULL;
    char key[40];

    snprintf(key, sizeof(key), " %.30s ", o);
    if (!slot || !strstr(c->options, key))
        return false;
    *slot = true;
    return true;
}

/* Returns 0, 1 after printing --help, or 2 after a usage error. */
static int parse_args(const struct ops_command *c, int argc, char **argv, struct ops_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **slot;

        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            printf("%s\n%s", c->usage, target_help);
            return 1;
        }
        if (is_positional(c, a, o)) {
            if (!take_positional(c, a, o))
                return usage_error(c, "unexpected argument \"%s\"", o);
            continue;
        }
        if (take_flag(c, a, o))
            continue;
        slot = option_slot(c, a, o);
        if (!slot)
            return usage_error(c, "unknown option \"%s\"", o);
        if (i + 1 >= argc)
            return usage_error(c, "%s needs a value", o);
        *slot = argv[++i];
    }
    return check_args(c, a);
}

/* purge's own checks: 0, or 2 after a usage error. */
static int check_purge(const struct ops_command *c, const struct ops_args *a)
{
    durable_error err = { 0 };
    int64_t ms;

    if (a->status && !one_of(a->status, run_statuses + 3, 3))
        return usage_error(c, "--status is completed, failed or cancelled, not \"%s\"", a->status);
    if (a->older_than && duration_parse(a->older_than, &ms, &err) != DURABLE_OK)
        return usage_error(c, "--older-than: %s", err.msg);
    if (a->workflow && !a->workflow[0])
        return usage_error(c, "%s", "--workflow needs a workflow name");
    return 0;
}

/* The checks of parse_args once every argument is taken: 0, or 2 after a
 * usage error. */
static int check_args(const struct ops_command *c, struct ops_args *a)
{
    int64_t ms;

    if (c->fn == cmd_bulk && !a->name)
        return usage_error(c, "%s", "ACTION is required: cancel, retry, pause or resume");
    if ((c->needs_run && !a->run) || (c->n_more > 0 && !a->name))
        return usage_error(c, "%s", !a->run ? "RUN is required" : "NAME is required");
    for (size_t i = 0; i < DUR_ARRAY_LEN(time_options); i++) {
        if (a->times[i] && !clock_parse_rfc3339(a->times[i], &ms))
            return usage_error(c, "%s is an RFC 3339 time such as 2026-01-31T12:00:00Z",
                               time_options[i]);
    }
    if (c->fn == cmd_bulk && !a->server)
        return usage_error(c, "%s", "bulk works through a server: --server URL is required");
    if (!a->server)
        a->db = cli_db(a->db);
    if (!a->server == !a->db)
        return usage_error(c, "%s",
                           a->db ? "--server and --db exclude each other"
                                 : "--server URL or --db PATH is required");
    if (a->status && !one_of(a->status, run_statuses, DUR_ARRAY_LEN(run_statuses)))
        return usage_error(c,
                           "--status is pending, running, waiting, completed, failed, "
                           "cancelled or paused, not \"%s\"",
                           a->status);
    if (strcmp(c->name, "purge") == 0 && check_purge(c, a) != 0)
        return 2;
    if (a->level && !one_of(a->level, log_levels, DUR_ARRAY_LEN(log_levels)))
        return usage_error(c, "--level is debug, info, warning or error, not \"%s\"", a->level);
    return 0;
}

/* Opens a->db without resuming any run. NULL after printing why. */
static durable *open_db(const struct ops_args *a)
{
    durable_options opts = { .db_path = a->db, .recovery = DURABLE_RECOVER_NONE };
    durable_error err = { 0 };
    durable *d;

    if (cli_db_is_file(a->db) &&
        access(strncmp(a->db, "sqlite:", 7) == 0 ? a->db + 7 : a->db, F_OK) != 0) {
        fprintf(stderr, "durable %s: no database at \"%s\"\n", a->cmd, a->db);
        return NULL;
    }
    d = durable_open(&opts, &err);
    if (!d)
        fprintf(stderr, "durable %s: %s%s\n", a->cmd, err.msg,
                err.code == DURABLE_ECONFLICT ? " (use --server URL)" : "");
    return d;
}

int cli_ops(int argc, char **argv)
{
    const struct ops_command *c = NULL;
    struct ops_target t = { 0 };
    struct ops_args a = { .cmd = argv[0] };
    int rc;

    for (size_t i = 0; i < DUR_ARRAY_LEN(commands); i++) {
        if (strcmp(argv[0], commands[i].name) == 0)
            c = &commands[i];
    }
    DUR_ASSERT(c);
    rc = parse_args(c, argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (a.db) {
        t.d = open_db(&a);
        if (!t.d)
            return 1;
        rc = c->fn(&t, &a);
        durable_close(t.d);
        return rc;
    }
    t.srv.cmd = a.cmd;
    t.srv.url = a.server;
    t.srv.token = a.token ? a.token : getenv("DURABLE_TOKEN"); /* NOLINT(concurrency-mt-unsafe) */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "durable %s: could not start libcurl\n", a.cmd);
        return 1;
    }
    rc = c->fn(&t, &a);
    curl_global_cleanup();
    return rc;
}
