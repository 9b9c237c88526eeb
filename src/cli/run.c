/*
 * run.c - `durable run FILE`: register a definition, start (or resume) a run
 * and show its progress until it finishes.
 *
 * The engine calls on_event on its writer thread after each commit; the
 * callback only copies the event onto a queue, and the main thread prints.
 * On a terminal the main thread redraws a table of the steps in place; when
 * output is not a terminal it prints one plain line per transition. With
 * --id KEY a second invocation finds the run KEY started: unfinished, it is
 * resumed (after a crash); finished, its stored outcome is printed and
 * nothing runs again.
 */
#include "util/common.h"

#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "util/queue.h"
#include "util/util.h"

static const char run_usage[] =
        "usage: durable run FILE [--input JSON] [--order AMOUNT] [--id KEY] [--db PATH]\n"
        "                        [--durability full|process]\n"
        "\n"
        "Registers the workflow in FILE, starts a run and shows its progress.\n"
        "\n"
        "  --input JSON       the run's input (a JSON object)\n"
        "  --order AMOUNT     create a demo order of AMOUNT and attach it to the run\n"
        "  --id KEY           idempotency key: run the same command again after a crash\n"
        "                     to resume that run; after it finished, print its outcome\n"
        "  --db LOCATION      a SQLite file (PATH or sqlite:PATH; default $DURABLE_DB,\n"
        "                     else ./durable.db) or postgres://USER@HOST:PORT/DB\n"
        "  --durability MODE  full (default): every commit is fsynced and survives a power\n"
        "                     cut; process: survives a crash of durable but not of the\n"
        "                     machine, and is faster\n"
        "\n"
        "Exit status: 0 the run completed, 1 it failed or was cancelled, 2 usage error or\n"
        "invalid definition.\n";

struct run_args {
    const char *file;
    const char *input;
    const char *order;
    const char *key;
    const char *db;
    durable_durability durability;
    double order_amount; /* valid when order != NULL */
};

/* ---- the event queue: the writer thread pushes, the main thread takes ----
 * Every event is queued, whatever its run (a child run's too, and before
 * the run's id is known): follow() keeps those of the run it shows. */

struct ev_node {
    QUEUE_LINK(struct ev_node);
    char run_id[ID_MAX];
    int64_t seq;
    int64_t at_ms;
    char type[32];
    char *step_id;
    char *data;
};

static void on_event(const durable_event *ev, void *ud)
{
    struct ev_node *n = xcalloc(1, sizeof(*n));

    snprintf(n->run_id, sizeof(n->run_id), "%s", ev->run_id);
    n->seq = ev->seq;
    n->at_ms = ev->at_ms;
    snprintf(n->type, sizeof(n->type), "%s", ev->type);
    n->step_id = ev->step_id ? xstrdup(ev->step_id) : NULL;
    n->data = xstrdup(ev->data_json ? ev->data_json : "{}");
    queue_push(ud, &n->node); /* never closed */
}

static void ev_node_free(struct ev_node *n)
{
    free(n->step_id);
    free(n->data);
    free(n);
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* One plain line per transition (output not a terminal). */
static void print_plain(const struct ev_node *e)
{
    json_t *data = json_loads(e->data, 0, NULL);
    char at[32];

    clock_format_rfc3339(e->at_ms, at);
    printf("%s %s", at, e->type);
    if (e->step_id)
        printf(" %s", e->step_id);
    if (json_object_get(data, "attempt"))
        printf(" attempt=%d", (int)json_integer_value(json_object_get(data, "attempt")));
    if (json_is_string(json_object_get(data, "error")))
        printf(" error=\"%s\"", json_string_value(json_object_get(data, "error")));
    if (json_object_get(data, "delay_ms"))
        printf(" delay_ms=%lld", (long long)json_integer_value(json_object_get(data, "delay_ms")));
    if (json_is_string(json_object_get(data, "action")))
        printf(" action=%s %s->%s", json_string_value(json_object_get(data, "action")),
               json_string_value(json_object_get(data, "from")) ?: "",
               json_string_value(json_object_get(data, "to")) ?: "");
    putchar('\n');
    fflush(stdout);
    json_decref(data);
}

/* Applies an event to the view. Returns true when it ends the run. */
static bool view_apply(struct view *v, const struct ev_node *e)
{
    struct step_view *sv = cli_view_step(v, e->step_id);
    json_t *data = json_loads(e->data, 0, NULL);
    bool end = false;

    if (strcmp(e->type, "step_started") == 0 && sv) {
        snprintf(sv->status, sizeof(sv->status), "running");
        sv->attempt = (int)json_integer_value(json_object_get(data, "attempt"));
        sv->started_ms = e->at_ms;
        sv->ended_ms = 0;
    } else if (strcmp(e->type, "step_completed") == 0 && sv) {
        snprintf(sv->status, sizeof(sv->status), "completed");
        sv->ended_ms = e->at_ms;
    } else if (strcmp(e->type, "step_failed") == 0 && sv) {
        snprintf(sv->status, sizeof(sv->status), "%s",
                 json_is_true(json_object_get(data, "final")) ? "failed" : "retrying");
        sv->ended_ms = e->at_ms;
    } else if (strcmp(e->type, "step_skipped") == 0 && sv) {
        snprintf(sv->status, sizeof(sv->status), "skipped");
    } else if (strcmp(e->type, "run_paused") == 0) {
        snprintf(v->status, sizeof(v->status), "paused");
    } else if (strcmp(e->type, "run_completed") == 0 || strcmp(e->type, "run_failed") == 0 ||
               strcmp(e->type, "run_cancelled") == 0) {
        snprintf(v->status, sizeof(v->status), "%s", e->type + 4);
        end = true;
    } else if (strcmp(v->status, "pending") == 0 || strcmp(e->type, "run_resumed") == 0) {
        snprintf(v->status, sizeof(v->status), "running");
    }
    json_decref(data);
    return end;
}

/* ---- arguments ---- */

static bool parse_amount(const char *s, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v >= 0) || v > 1e12)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct run_args *a)
{
    const char *durability = NULL;
    int i;

    memset(a, 0, sizeof(*a));
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char **slot = NULL;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(run_usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--input") == 0)
            slot = &a->input;
        else if (strcmp(arg, "--order") == 0)
            slot = &a->order;
        else if (strcmp(arg, "--id") == 0)
            slot = &a->key;
        else if (strcmp(arg, "--db") == 0)
            slot = &a->db;
        else if (strcmp(arg, "--durability") == 0)
            slot = &durability;
        else if (arg[0] == '-' && arg[1] != '\0') {
            fprintf(stderr, "durable run: unknown option \"%s\"\n\n%s", arg, run_usage);
            return -1;
        } else if (!a->file) {
            a->file = arg;
            continue;
        } else {
            fprintf(stderr, "durable run: one file at a time (got \"%s\" too)\n", arg);
            return -1;
        }
        if (i + 1 >= argc)
            goto missing;
        *slot = argv[++i];
    }
    if (!a->file) {
        fputs(run_usage, stderr);
        return -1;
    }
    if (durability && strcmp(durability, "process") == 0)
        a->durability = DURABLE_DURABILITY_PROCESS;
    else if (durability && strcmp(durability, "full") != 0) {
        fprintf(stderr, "durable run: --durability is \"full\" or \"process\", not \"%s\"\n",
                durability);
        return -1;
    }
    if (a->order && !parse_amount(a->order, &a->order_amount)) {
        fprintf(stderr, "durable run: --order needs an amount from 0 to 1e12, not \"%s\"\n",
                a->order);
        return -1;
    }
    return 0;
missing:
    fprintf(stderr, "durable run: %s needs a value\n", argv[i]);
    return -1;
}

/* ---- the command ---- */

/* Prints a validator's report, one "FILE: LINE" on stderr per line. */
static void print_report(const char *file, const char *report)
{
    const char *line, *nl;

    for (line = report; line && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) {
            fprintf(stderr, "%s: %s\n", file, line);
            break;
        }
        fprintf(stderr, "%s: %.*s\n", file, (int)(nl - line), line);
    }
}

/* Validates the definition before anything touches the database; prints
 * every located error and warning ("FILE: warning: WHERE: MESSAGE") on
 * stderr. Returns 0, or 2 when the file is invalid. */
static int validate_file(const char *file, const char *text, size_t len)
{
    durable_error err = { 0 };
    char *report = NULL;
    durable_code rc;

    rc = durable_validate(text, len, &report, &err);
    print_report(file, report);
    if (rc == DURABLE_OK) {
        durable_free(report);
        return 0;
    }
    if (!report || !*report)
        fprintf(stderr, "%s: %s\n", file, err.msg);
    durable_free(report);
    return 2;
}

/* Registers the file's workflow and prints the warnings only the
 * database can tell (a child workflow it does not have). Returns the exit
 * code (0 on success). OUT: *out_wf. */
static int register_file(durable *d, const char *file, const char *text, size_t len, char **out_wf)
{
    durable_error err = { 0 };
    char *report = NULL;

    if (durable_workflow_register(d, text, len, out_wf, NULL, NULL, &err) != DURABLE_OK) {
        fprintf(stderr, "durable run: %s: %s\n", file, err.msg);
        return err.code == DURABLE_EINVAL || err.code == DURABLE_ESYNTAX ? 2 : 1;
    }
    if (durable_workflow_warnings(d, text, len, &report, &err) == DURABLE_OK)
        print_report(file, report);
    durable_free(report);
    return 0;
}

/* Says on stderr, in one line, when the run --id KEY returned is of
 * another version of the workflow or had another input: the key is per
 * workflow name, so this invocation runs nothing new. */
static void note_reused(durable *d, const durable_run_request *req, const char *run_id)
{
    durable_run_reuse r = { 0 };
    durable_error err = { 0 };
    char what[96];
    bool other_version;

    if (durable_run_compare(d, req, run_id, &r, &err) != DURABLE_OK)
        return;
    other_version = r.run_version != r.requested_version;
    if (!other_version && !r.input_differs)
        return;
    if (other_version)
        snprintf(what, sizeof(what), " of version %d (this file is version %d)%s", r.run_version,
                 r.requested_version, r.input_differs ? ", with another input" : "");
    else
        snprintf(what, sizeof(what), " started with another input");
    fprintf(stderr,
            "durable run: note: --id %s returned the earlier run %s%s; a key names one run of "
            "a workflow, whatever its version; to run %s, use another --id\n",
            req->idempotency_key, run_id, what, other_version ? "this version" : "with this input");
}

/* Starts the run, or finds the one --id started. OUT: run id, existed. */
static int start_run(durable *d, const struct run_args *a, const char *wf, const char *key,
                     char **out_run, bool *out_existed)
{
    durable_run_request req = { .workflow = wf, .input_json = a->input, .idempotency_key = key };
    durable_error err = { 0 };

    /* The order is created with the run, in its transaction: a crash leaves
     * both or neither, and a resumed run keeps the order it has. */
    req.create_order = a->order != NULL;
    req.order_amount = a->order_amount;
    if (durable_run_start(d, &req, out_run, out_existed, &err) != DURABLE_OK) {
        fprintf(stderr, "durable run: could not start the run: %s\n", err.msg);
        return err.code == DURABLE_EINVAL || err.code == DURABLE_ESYNTAX ? 2 : 1;
    }
    if (*out_existed)
        note_reused(d, &req, *out_run);
    return 0;
}

static void print_summary(durable *d, const struct view *v)
{
    durable_error err = { 0 };
    char *json = NULL;
    json_t *run = NULL;
    const char *order_id, *error;
    int64_t took_ms;

    if (durable_run_get(d, v->run_id, &json, &err) != DURABLE_OK)
        return;
    run = json_loads(json, 0, NULL);
    printf("run %s %s", v->run_id, json_string_value(json_object_get(run, "status")) ?: "?");
    took_ms = cli_iso_to_ms(json_string_value(json_object_get(run, "completed_at"))) -
              cli_iso_to_ms(json_string_value(json_object_get(run, "created_at")));
    printf(" in %.1fs", (double)took_ms / 1000.0);
    error = json_string_value(json_object_get(run, "error_message"));
    if (error)
        printf(": %s", error);
    order_id = json_string_value(json_object_get(run, "order_id"));
    if (order_id) {
        char *ojson = NULL;
        if (durable_order_get(d, order_id, &ojson, &err) == DURABLE_OK) {
            json_t *o = json_loads(ojson, 0, NULL);
            printf("; order %s %s", order_id,
                   json_string_value(json_object_get(o, "status")) ?: "?");
            json_decref(o);
        }
        durable_free(ojson);
    }
    putchar('\n');
    json_decref(run);
    durable_free(json);
}

/* Whether the run has finished (completed, failed or cancelled) in the
 * store; *status (may be NULL) gets its status then. */
static bool run_finished(durable *d, const char *run_id, const char **status)
{
    durable_error err = { 0 };
    const char *st = NULL;

    if (durable_run_wait(d, run_id, 0, &st, &err) != DURABLE_OK)
        return false;
    if (status)
        *status = st;
    return true;
}

/* Says that approval step step_id of v's run waits for a person, and how
 * to decide it: this process cannot (SPEC §8), a server opening the same
 * database can, once this process has stopped (it holds the file). */
static void print_approval_hint(struct view *v, const char *step_id, const char *db)
{
    printf("step %s waits for a person's approval; `durable run` cannot take decisions:\n"
           "  stop it (Ctrl-C), serve the database (durable serve --db %s), then\n"
           "  durable approve --server URL %s %s   (or reject, or in the web UI)\n",
           step_id, db ? db : "durable.db", v->run_id, step_id);
    fflush(stdout);
    v->lines_drawn = 0; /* the table is drawn again below the hint */
}

/* The hint for an approval step that starts waiting (event e). */
static void hint_on_event(struct view *v, const struct ev_node *e, const char *db)
{
    json_t *data = json_loads(e->data, 0, NULL);
    const char *wf = json_string_value(json_object_get(data, "waiting_for"));

    if (e->step_id && wf && strcmp(wf, "approval") == 0)
        print_approval_hint(v, e->step_id, db);
    json_decref(data);
}

/* The hint for each approval step that was waiting already (a resumed
 * run's), from the run's JSON. */
static void hint_on_resume(struct view *v, const char *run_json, const char *db)
{
    json_t *run = json_loads(run_json, 0, NULL), *st;
    size_t i;

    json_array_foreach(json_object_get(run, "steps"), i, st)
    {
        const char *type = json_string_value(json_object_get(st, "type"));
        const char *status = json_string_value(json_object_get(st, "status"));
        const char *id = json_string_value(json_object_get(st, "step_id"));
        if (id && type && status && strcmp(type, "approval") == 0 && strcmp(status, "waiting") == 0)
            print_approval_hint(v, id, db);
    }
    json_decref(run);
}

/* Shows the events of v's run in list e (others are a child run's) and
 * frees the list. Returns true when one ends the run. */
static bool show_events(struct view *v, struct ev_node *e, const char *db)
{
    struct ev_node *next;
    bool end = false;

    for (; e; e = next) {
        next = e->next;
        if (strcmp(e->run_id, v->run_id) == 0) {
            if (!v->tty)
                print_plain(e);
            if (view_apply(v, e))
                end = true;
            if (strcmp(e->type, "step_waiting") == 0)
                hint_on_event(v, e, db);
        }
        ev_node_free(e);
    }
    return end;
}

/* Follows the run until it finishes or the user interrupts. Events come
 * from this process's engine; the stored status is also checked now and
 * then, which is how a run executed by another process is seen to end.
 * The writer hands out a batch's events only after committing it, so a
 * status read as final may be ahead of the last events: those are waited
 * for a moment longer (a run executed elsewhere sends none). */
static void follow(durable *d, struct queue *q, struct view *v, const char *db, bool was_finished)
{
    const char *status = NULL;
    bool end = false;
    int64_t next_check = clock_mono_ms() + 1000, grace_end = 0;

    /* Finished already: before this invocation (no events will come), or
     * in the moment since it started the run (its events are on the way). */
    if (run_finished(d, v->run_id, &status)) {
        snprintf(v->status, sizeof(v->status), "%s", status);
        end = was_finished;
        grace_end = clock_mono_ms() + 1000;
    }

    while (!end && !interrupted) {
        int64_t now;

        if (show_events(v, (struct ev_node *)queue_take(q, v->tty ? 100 : 200), db))
            end = true;
        now = clock_mono_ms();
        if (!end && grace_end) {
            end = now >= grace_end;
        } else if (!end && now >= next_check) {
            if (run_finished(d, v->run_id, &status)) {
                snprintf(v->status, sizeof(v->status), "%s", status);
                grace_end = now + 1000;
            }
            next_check = now + 1000;
        }
        if (v->tty)
            cli_view_draw(v);
    }
}

/* True when idempotency key already names a finished run of workflow wf. */
static bool key_run_finished(durable *d, const char *wf, const char *key)
{
    durable_error err = { 0 };
    char *run_id = NULL;
    bool finished = false;

    if (durable_run_find(d, wf, key, &run_id, &err) == DURABLE_OK)
        finished = run_finished(d, run_id, NULL);
    durable_free(run_id);
    return finished;
}

static int run_with(durable *d, const struct run_args *a, const char *text, size_t len)
{
    struct queue q;
    struct view v;
    char *wf = NULL, *run_id = NULL, *json = NULL, key[ID_MAX];
    durable_error err = { 0 };
    bool existed = false, was_finished;
    int sub, ret;

    queue_init(&q);
    memset(&v, 0, sizeof(v));
    v.tty = isatty(STDOUT_FILENO);
    ret = register_file(d, a->file, text, len, &wf);
    if (ret)
        goto done;
    if (a->key)
        snprintf(key, sizeof(key), "%s", a->key);
    else
        id_new("cli-", key, sizeof(key));
    sub = durable_subscribe(d, on_event, &q);
    /* Whether the key's run had finished is read before starting: once
     * started, this process may resume and finish it before we look. */
    was_finished = key_run_finished(d, wf, key);
    ret = start_run(d, a, wf, key, &run_id, &existed);
    if (ret)
        goto unsubscribe;
    snprintf(v.run_id, sizeof(v.run_id), "%s", run_id);
    if (durable_run_get(d, run_id, &json, &err) == DURABLE_OK)
        cli_view_load(&v, json);
    if (existed && was_finished)
        printf("already finished: run %s (id %s)\n", run_id, key);
    else if (existed && durable_run_elsewhere(d, run_id))
        printf("run %s (id %s) is being executed by another durable process; waiting for it to "
               "finish\n",
               run_id, key);
    else if (existed)
        printf("resuming run %s (id %s)\n", run_id, key);
    if (existed && !was_finished && json)
        hint_on_resume(&v, json, a->db);
    else if (!a->key)
        printf("run %s started; to resume it after a crash: durable run %s --id %s\n", run_id,
               a->file, key);
    fflush(stdout);
    follow(d, &q, &v, a->db, existed && was_finished);
    if (interrupted) {
        printf("interrupted; the run continues with: durable run %s --id %s\n", a->file, key);
        ret = 130;
        goto unsubscribe;
    }
    if (v.tty)
        cli_view_draw(&v);
    print_summary(d, &v);
    ret = strcmp(v.status, "completed") == 0 ? 0 : 1;
unsubscribe:
    durable_unsubscribe(d, sub);
    {
        struct ev_node *e = (struct ev_node *)queue_take(&q, 0), *next;
        for (; e; e = next) {
            next = e->next;
            ev_node_free(e);
        }
    }
done:
    durable_free(json);
    durable_free(run_id);
    durable_free(wf);
    cli_view_release(&v);
    queue_release(&q);
    return ret;
}

int cli_run(int argc, char **argv)
{
    durable_options opts = { 0 };
    struct run_args a;
    durable_error err = { 0 };
    durable *d = NULL;
    char *text = NULL;
    size_t len = 0;
    int ret;

    ret = parse_args(argc, argv, &a);
    if (ret)
        return ret > 0 ? 0 : 2;
    a.db = cli_db(a.db);
    if (cli_read_file(a.file, (size_t)1024 * 1024, &text, &len) != 0)
        return 2;
    ret = validate_file(a.file, text, len);
    if (ret) {
        free(text);
        return ret;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    opts.db_path = a.db;
    opts.durability = a.durability;
    opts.recovery = DURABLE_RECOVER_NONE;
    d = durable_open(&opts, &err);
    if (!d) {
        fprintf(stderr, "durable run: %s\n", err.msg);
        free(text);
        return 1;
    }
    ret = run_with(d, &a, text, len);
    durable_close(d);
    free(text);
    return ret;
}
