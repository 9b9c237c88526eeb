/*
 * schedules.c - schedules: the public calls (durable_schedule_*), the
 * check of a schedule's JSON, and the schedule thread (`durable-cron`)
 * that fires due ticks.
 *
 * The thread is a caller like any other: it reads the schedules, and for
 * each due tick submits one transition and waits for its commit: the run's
 * creation with the tick (TR_RUN_CREATE with schedule_id: the run and the
 * schedule's last_tick commit together), or the tick's skip
 * (TR_SCHEDULE_TICK). The store refuses a tick not after last_tick, so a
 * tick fires once across restarts; its run's idempotency key
 * "schedule:<id>:<tick ms>" names it. It sleeps on its condition until the
 * earliest next tick, a change of a schedule, or the end of a run a due
 * queue_one tick waits for (a subscriber wakes it; the ends of other runs
 * do not: it reads the schedules again only when something is due or
 * changed). It never blocks the scheduler.
 *
 * Catch-up: the ticks due are those after last_tick (or the creation) up
 * to now. The newest is on time when less than a grace late (the period,
 * at most 60 s); the others were missed (downtime). none: missed ticks are
 * skipped, the on-time one fires; last: the newest due tick fires once;
 * all: the newest catch_up_max due ticks fire, oldest first.
 */
#include "util/common.h"

#include "engine/engine_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "def/cron.h"

#define SCHEDULE_ID_MAX       40
#define SCHEDULE_NEXT_SHOWN   5
#define SCHEDULE_CATCH_UP_MAX 1000
#define SCHEDULE_SCAN_MAX     100000 /* cron ticks looked at in one catch-up */
#define SCHEDULE_IDLE_MS      60000

struct schedules {
    pthread_t thread;
    pthread_mutex_t mu; /* a leaf: guards the three below */
    pthread_cond_t cond;
    bool stop;
    bool dirty; /* a schedule changed or a run watched finished: look again */
    /* The runs whose end a due tick waits for (queue_one), as the last
     * pass found them: the subscriber wakes the thread when one ends. */
    char (*watch)[ID_MAX];
    size_t n_watch, cap_watch;
    int sub_id;
    /* measured: ticks fired and the time spent firing them (bench) */
    int64_t ticks;
};

static const char *const overlaps[] = { "skip", "queue_one", "allow", "cancel_previous", NULL };
static const char *const catch_ups[] = { "none", "last", "all", NULL };
static const char *const fields[] = { "id",           "workflow", "cron",    "every",
                                      "timezone",     "input",    "overlap", "catch_up",
                                      "catch_up_max", "paused",   NULL };

/* ---- the JSON of a schedule ---- */

static bool one_of(const char *v, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return true;
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[32], cur[32];

    if (la > 30 || lb > 30)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c)
                c = prev[j] + 1;
            if (cur[j - 1] + 1 < c)
                c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static durable_code unknown_name(const char *what, const char *v, const char *const *names,
                                 durable_error *err)
{
    const char *best = NULL;
    size_t best_d = 3;
    char list[160] = "";

    for (size_t i = 0; names[i]; i++) {
        size_t dd = edit_distance(v, names[i]);
        if (dd < best_d) {
            best_d = dd;
            best = names[i];
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", names[i]);
    }
    if (best)
        return err_set(err, DURABLE_EINVAL, "%s: \"%.40s\" is unknown (did you mean \"%s\"?)", what,
                       v, best);
    return err_set(err, DURABLE_EINVAL, "%s: \"%.40s\" is not one of %s", what, v, list);
}

/* A string member: absent, null or "" give NULL. */
static durable_code opt_string(json_t *doc, const char *key, const char **out, durable_error *err)
{
    json_t *v = json_object_get(doc, key);

    *out = NULL;
    if (!v || json_is_null(v))
        return DURABLE_OK;
    if (!json_is_string(v))
        return err_set(err, DURABLE_EINVAL, "%s: must be a string", key);
    if (json_string_length(v) > CRON_TEXT_MAX)
        return err_set(err, DURABLE_EINVAL, "%s: longer than %d bytes", key, CRON_TEXT_MAX);
    if (json_string_value(v)[0])
        *out = json_string_value(v);
    return DURABLE_OK;
}

static bool id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > SCHEDULE_ID_MAX)
        return false;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.'))
            return false;
    return true;
}

/* A schedule's string members (NULL when absent, null or ""). */
struct schedule_strings {
    const char *id, *wf, *cron, *every, *tz, *overlap, *catch_up;
};

static durable_code read_strings(json_t *doc, struct schedule_strings *ss, durable_error *err)
{
    const char *key;
    json_t *v;
    durable_code rc;

    json_object_foreach(doc, key, v)
    {
        if (!one_of(key, fields))
            return unknown_name("field", key, fields, err);
    }
    if ((rc = opt_string(doc, "id", &ss->id, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "workflow", &ss->wf, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "cron", &ss->cron, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "every", &ss->every, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "timezone", &ss->tz, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "overlap", &ss->overlap, err)) != DURABLE_OK ||
        (rc = opt_string(doc, "catch_up", &ss->catch_up, err)) != DURABLE_OK)
        return rc;
    return DURABLE_OK;
}

/* id (or a new one) and workflow, which must exist. */
static durable_code check_names(durable *d, const struct schedule_strings *ss,
                                struct schedule_record *r, durable_error *err)
{
    struct workflow_record w;
    durable_code rc;

    if (ss->id && !id_ok(ss->id))
        return err_set(err, DURABLE_EINVAL,
                       "id: 1 to %d letters, digits, '_', '-' or '.', got \"%.40s\"",
                       SCHEDULE_ID_MAX, ss->id);
    if (ss->id)
        snprintf(r->id, sizeof(r->id), "%.40s", ss->id);
    else
        id_new("sch_", r->id, sizeof(r->id));
    if (!ss->wf)
        return err_set(err, DURABLE_EINVAL, "workflow: required (the name of a workflow)");
    memset(&w, 0, sizeof(w));
    rc = store_workflow_get(d->store, ss->wf, &w, err);
    if (rc == DURABLE_ENOTFOUND) {
        err_clear(err);
        return err_set(err, DURABLE_EINVAL, "workflow: no workflow named \"%.60s\"", ss->wf);
    }
    if (rc != DURABLE_OK)
        return rc;
    workflow_record_release(&w);
    r->workflow_name = (char *)ss->wf;
    return DURABLE_OK;
}

/* cron or every, and the time zone. */
static durable_code check_when(const struct schedule_strings *ss, struct schedule_record *r,
                               durable_error *err)
{
    struct cron_spec spec;
    durable_code rc;

    if (!ss->cron == !ss->every)
        return err_set(err, DURABLE_EINVAL,
                       ss->cron ? "cron, every: give one of them, not both"
                                : "cron: required, or every (a cron expression such as "
                                  "\"0 3 * * *\", or an interval such as \"90s\")");
    if (ss->cron) {
        rc = cron_parse(ss->cron, &spec, err);
        if (rc != DURABLE_OK) {
            err_prefix(err, "cron: ");
            return rc;
        }
        r->cron = (char *)ss->cron;
    } else {
        rc = cron_parse_every(ss->every, &r->every_ms, err);
        if (rc != DURABLE_OK)
            return rc;
    }
    r->tz = (char *)(ss->tz ? ss->tz : "UTC");
    rc = cron_tz_check(r->tz, err);
    if (rc != DURABLE_OK)
        err_prefix(err, "timezone: ");
    return rc;
}

/* overlap, catch_up and catch_up_max. */
static durable_code check_policies(json_t *doc, const struct schedule_strings *ss,
                                   struct schedule_record *r, durable_error *err)
{
    json_t *v;

    r->overlap = (char *)(ss->overlap ? ss->overlap : "skip");
    if (!one_of(r->overlap, overlaps))
        return unknown_name("overlap", r->overlap, overlaps, err);
    r->catch_up = (char *)(ss->catch_up ? ss->catch_up : "last");
    if (!one_of(r->catch_up, catch_ups))
        return unknown_name("catch_up", r->catch_up, catch_ups, err);
    r->catch_up_max = 100;
    v = json_object_get(doc, "catch_up_max");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > SCHEDULE_CATCH_UP_MAX)
            return err_set(err, DURABLE_EINVAL, "catch_up_max: an integer from 1 to %d",
                           SCHEDULE_CATCH_UP_MAX);
        r->catch_up_max = (int)json_integer_value(v);
    }
    return DURABLE_OK;
}

/* The largest input of a schedule, as compact JSON text. */
#define SCHEDULE_INPUT_MAX ((size_t)64 * 1024)

/* paused and input (owned in *out_input). */
static durable_code check_input(json_t *doc, struct schedule_record *r, char **out_input,
                                durable_error *err)
{
    json_t *v = json_object_get(doc, "paused");

    if (v && !json_is_null(v) && !json_is_boolean(v))
        return err_set(err, DURABLE_EINVAL, "paused: must be true or false");
    r->paused = json_is_true(v);
    v = json_object_get(doc, "input");
    if (v && !json_is_null(v) && !json_is_object(v))
        return err_set(err, DURABLE_EINVAL, "input: must be a JSON object");
    *out_input = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : xstrdup("{}");
    if (strlen(*out_input) > SCHEDULE_INPUT_MAX)
        return err_set(err, DURABLE_EINVAL, "input: larger than 64 KiB");
    r->input_json = *out_input;
    return DURABLE_OK;
}

/* Checks a schedule's JSON into r (strings borrowed from doc, input owned
 * in *out_input): every error names its member. */
static durable_code schedule_check(durable *d, json_t *doc, struct schedule_record *r,
                                   char **out_input, durable_error *err)
{
    struct schedule_strings ss = { 0 };
    durable_code rc;

    memset(r, 0, sizeof(*r));
    *out_input = NULL;
    if (!json_is_object(doc))
        return err_set(err, DURABLE_EINVAL, "a schedule is a JSON object");
    rc = read_strings(doc, &ss, err);
    if (rc == DURABLE_OK)
        rc = check_names(d, &ss, r, err);
    if (rc == DURABLE_OK)
        rc = check_when(&ss, r, err);
    if (rc == DURABLE_OK)
        rc = check_policies(doc, &ss, r, err);
    if (rc == DURABLE_OK)
        rc = check_input(doc, r, out_input, err);
    return rc;
}

/* The tick after after_ms, -1 for none. */
static int64_t tick_after(const struct schedule_record *r, const struct cron_spec *spec,
                          int64_t after_ms)
{
    int64_t at = -1;
    durable_error err = { 0 };

    if (!r->cron)
        return cron_every_next(r->anchor_ms, r->every_ms, after_ms);
    if (cron_next(spec, r->tz, after_ms, &at, &err) != DURABLE_OK)
        return -1;
    return at;
}

static void add_time(json_t *o, const char *key, int64_t ms)
{
    char t[32];

    if (ms <= 0) {
        json_object_set_new(o, key, json_null());
        return;
    }
    clock_format_rfc3339(ms, t);
    json_object_set_new(o, key, json_string(t));
}

static json_t *schedule_json(const struct schedule_record *r, int64_t now_ms)
{
    json_t *o = json_object(), *next = json_array(), *input;
    struct cron_spec spec;
    durable_error err = { 0 };
    int64_t at;

    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "workflow", json_string(r->workflow_name));
    json_object_set_new(o, "cron", r->cron ? json_string(r->cron) : json_null());
    if (r->cron) {
        json_object_set_new(o, "every", json_null());
    } else {
        char every[32];
        if (r->every_ms % 1000 == 0)
            snprintf(every, sizeof every, "%llds", (long long)(r->every_ms / 1000));
        else
            snprintf(every, sizeof every, "%lldms", (long long)r->every_ms);
        json_object_set_new(o, "every", json_string(every));
    }
    json_object_set_new(o, "timezone", json_string(r->tz));
    input = json_loads(r->input_json, 0, NULL);
    json_object_set_new(o, "input", input ? input : json_object());
    json_object_set_new(o, "overlap", json_string(r->overlap));
    json_object_set_new(o, "catch_up", json_string(r->catch_up));
    json_object_set_new(o, "catch_up_max", json_integer(r->catch_up_max));
    json_object_set_new(o, "paused", json_boolean(r->paused));
    add_time(o, "last_tick", r->last_tick_ms);
    json_object_set_new(o, "last_run_id",
                        r->last_run_id[0] ? json_string(r->last_run_id) : json_null());
    json_object_set_new(o, "fired", json_integer(r->fired));
    json_object_set_new(o, "skipped", json_integer(r->skipped));
    add_time(o, "created_at", r->created_at_ms);
    /* The next fire times from now (a tick due but not fired yet first). */
    if (!r->cron || cron_parse(r->cron, &spec, &err) == DURABLE_OK) {
        int64_t after = r->last_tick_ms > r->anchor_ms ? r->last_tick_ms : r->anchor_ms;
        at = tick_after(r, &spec, after);
        if (at > 0 && at < now_ms - 1000) /* missed: the next ones from now */
            at = tick_after(r, &spec, now_ms - 1);
        for (int i = 0; i < SCHEDULE_NEXT_SHOWN && at > 0; i++) {
            char t[32];
            clock_format_rfc3339(at, t);
            json_array_append_new(next, json_string(t));
            at = tick_after(r, &spec, at);
        }
    }
    json_object_set_new(o, "next", next);
    return o;
}

/* ---- the public calls ---- */

static void schedules_wake(durable *d)
{
    struct schedules *sc = d->schedules;

    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    sc->dirty = true;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->mu);
}

static void json_of_one(const struct schedule_record *r, void *ud)
{
    json_t **out = ud;

    *out = schedule_json(r, clock_wall_ms());
}

static void json_of_each(const struct schedule_record *r, void *ud)
{
    json_array_append_new(ud, schedule_json(r, clock_wall_ms()));
}

durable_code durable_schedule_get(durable *d, const char *id, char **out_json, durable_error *err)
{
    json_t *o = NULL;
    durable_code rc;

    if (!d || !id || !out_json)
        return err_set(err, DURABLE_EINVAL, "a schedule id is required");
    rc = store_schedules_read(d->store, id, json_of_one, &o, err);
    if (rc == DURABLE_OK && o)
        *out_json = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return rc;
}

durable_code durable_schedules_list(durable *d, char **out_json, durable_error *err)
{
    json_t *a = json_array();
    durable_code rc;

    if (!d || !out_json) {
        json_decref(a);
        return err_set(err, DURABLE_EINVAL, "no output");
    }
    rc = store_schedules_read(d->store, NULL, json_of_each, a, err);
    if (rc == DURABLE_OK)
        *out_json = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return rc;
}

durable_code durable_schedule_create(durable *d, const char *spec_json, char **out_json,
                                     durable_error *err)
{
    json_error_t jerr;
    json_t *doc;
    struct schedule_record r;
    struct commit_item *ci;
    struct transition_result res;
    char *input = NULL;
    durable_code rc;

    if (!d || !spec_json)
        return err_set(err, DURABLE_EINVAL, "a schedule is a JSON object");
    doc = json_loads(spec_json, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc)
        return err_set(err, DURABLE_ESYNTAX, "line %d, column %d: %s", jerr.line, jerr.column,
                       jerr.text);
    rc = schedule_check(d, doc, &r, &input, err);
    if (rc == DURABLE_OK) {
        ci = commit_item_new(TR_SCHEDULE_PUT, NULL);
        r.anchor_ms = ci->t.at_ms;
        ci->t.schedule = &r;
        memset(&res, 0, sizeof(res));
        rc = engine_commit_wait(d, ci, &res, err);
    }
    if (rc == DURABLE_OK && r.paused) {
        ci = commit_item_new(TR_SCHEDULE_SET, NULL);
        ci->t.schedule_id = commit_item_str(ci, r.id);
        ci->t.schedule_op = SCHEDULE_PAUSE;
        rc = engine_commit_wait(d, ci, NULL, err);
    }
    if (rc == DURABLE_OK) {
        schedules_wake(d);
        if (out_json)
            rc = durable_schedule_get(d, r.id, out_json, err);
    }
    free(input);
    json_decref(doc);
    return rc;
}

durable_code engine_schedules_of_definition(durable *d, const struct plan *plan, durable_error *err)
{
    json_t *list = json_object_get(plan->definition, "schedules"), *v;
    durable_code rc = DURABLE_OK;
    size_t i;

    json_array_foreach(list, i, v)
    {
        json_t *one = json_deep_copy(v);
        char *text;

        json_object_set_new(one, "workflow", json_string(plan->name));
        text = json_dumps(one, JSON_COMPACT);
        json_decref(one);
        rc = durable_schedule_create(d, text, NULL, err);
        free(text);
        if (rc != DURABLE_OK) {
            err_prefix(err, "schedules: ");
            break;
        }
    }
    return rc;
}

static durable_code schedule_set(durable *d, const char *id, enum schedule_op op,
                                 durable_error *err)
{
    struct commit_item *ci;
    durable_code rc;

    if (!d || !id || !*id || strlen(id) >= ID_MAX)
        return err_set(err, DURABLE_EINVAL, "a schedule id is required");
    ci = commit_item_new(TR_SCHEDULE_SET, NULL);
    ci->t.schedule_id = commit_item_str(ci, id);
    ci->t.schedule_op = op;
    rc = engine_commit_wait(d, ci, NULL, err);
    if (rc == DURABLE_OK)
        schedules_wake(d);
    return rc;
}

durable_code durable_schedule_pause(durable *d, const char *id, bool paused, durable_error *err)
{
    return schedule_set(d, id, paused ? SCHEDULE_PAUSE : SCHEDULE_RESUME, err);
}

durable_code durable_schedule_delete(durable *d, const char *id, durable_error *err)
{
    return schedule_set(d, id, SCHEDULE_DELETE, err);
}

/* ---- firing ---- */

static durable_code tick_skip(durable *d, const char *id, int64_t tick, durable_error *err)
{
    struct commit_item *ci = commit_item_new(TR_SCHEDULE_TICK, NULL);

    ci->t.schedule_id = commit_item_str(ci, id);
    ci->t.tick_ms = tick;
    return engine_commit_wait(d, ci, NULL, err);
}

static void found_one(const struct schedule_record *r, void *ud)
{
    (void)r;
    *(bool *)ud = true;
}

/* Whether schedule id still exists (a delete may commit while a tick of it
 * is being fired). */
static bool schedule_exists(durable *d, const char *id)
{
    durable_error err = { 0 };
    bool found = false;

    return store_schedules_read(d->store, id, found_one, &found, &err) != DURABLE_ENOTFOUND &&
           found;
}

/* Whether the run is unfinished. */
static bool run_unfinished(durable *d, const char *run_id)
{
    enum run_status st = RUN_COMPLETED;
    durable_error err = { 0 };

    if (!run_id[0] || store_run_status(d->store, run_id, &st, &err) != DURABLE_OK)
        return false;
    return !run_status_is_final(st);
}

/* Wakes the thread when run_id ends. */
static void watch_run(struct schedules *sc, const char *run_id)
{
    if (!run_id[0])
        return;
    pthread_mutex_lock(&sc->mu);
    if (sc->n_watch == sc->cap_watch) {
        sc->cap_watch = sc->cap_watch ? 2 * sc->cap_watch : 8;
        sc->watch = xrealloc(sc->watch, sc->cap_watch * sizeof(*sc->watch));
    }
    snprintf(sc->watch[sc->n_watch++], ID_MAX, "%s", run_id);
    pthread_mutex_unlock(&sc->mu);
}

/* Fires tick of r by its overlap policy. *io_prev: the schedule's last run,
 * the new one after a start. Returns false when queue_one waits for the
 * previous run to finish (the tick stays due). */
static bool fire_tick(durable *d, const struct schedule_record *r, int64_t tick,
                      char io_prev[ID_MAX])
{
    durable_run_request req = { 0 };
    durable_error err = { 0 };
    char run_id[ID_MAX];
    durable_code rc;

    if (strcmp(r->overlap, "queue_one") == 0)
        watch_run(d->schedules, io_prev); /* before the read: its end wakes */
    if (run_unfinished(d, io_prev)) {
        if (strcmp(r->overlap, "skip") == 0) {
            rc = tick_skip(d, r->id, tick, &err);
            /* ENOTFOUND: deleted meanwhile, nothing to record */
            if (rc != DURABLE_OK && rc != DURABLE_ECONFLICT && rc != DURABLE_ENOTFOUND)
                log_warn("schedule %s: tick not recorded: %s", r->id, err.msg);
            return true;
        }
        if (strcmp(r->overlap, "queue_one") == 0)
            return false;
        if (strcmp(r->overlap, "cancel_previous") == 0)
            (void)durable_run_cancel(d, io_prev, &err);
        err_clear(&err);
    }
    req.workflow = r->workflow_name;
    req.input_json = r->input_json;
    rc = engine_schedule_run_start(d, &req, r->id, tick, run_id, &err);
    if (rc == DURABLE_OK) {
        snprintf(io_prev, ID_MAX, "%s", run_id);
    } else if (rc == DURABLE_ENOTFOUND && !schedule_exists(d, r->id)) {
        return true; /* deleted meanwhile: nothing to fire */
    } else if (rc != DURABLE_ECONFLICT && rc != DURABLE_ECLOSED) {
        /* A tick that cannot start its run (its workflow is gone) is
         * recorded as skipped, so that it is not tried forever. */
        log_warn("schedule %s: tick not started: %s", r->id, err.msg);
        err_clear(&err);
        (void)tick_skip(d, r->id, tick, &err);
    }
    return true;
}

/* The ticks of r due at now (after its last tick or anchor): the newest
 * `want` of them in ring (a ring of want slots, *out_n of them seen in all),
 * the newest in *out_newest; returns the tick after now (-1: none). */
struct due_ticks {
    int64_t *ring;
    int want, n;
    int64_t newest;
};

static int64_t due_collect(const struct schedule_record *r, const struct cron_spec *spec,
                           int64_t now, struct due_ticks *due)
{
    int64_t after = r->last_tick_ms > r->anchor_ms ? r->last_tick_ms : r->anchor_ms;
    int64_t t = tick_after(r, spec, after);
    int scanned = 0;

    due->n = 0;
    due->newest = -1;
    if (!r->cron && t > 0 && t <= now) { /* an interval's due ticks, without a scan */
        int64_t k = (now - r->anchor_ms) / r->every_ms;
        int64_t first = t;

        due->newest = r->anchor_ms + k * r->every_ms;
        for (int64_t at = due->newest - (int64_t)(due->want - 1) * r->every_ms; at <= due->newest;
             at += r->every_ms)
            if (at >= first)
                due->ring[due->n++ % due->want] = at;
        return due->newest + r->every_ms;
    }
    while (t > 0 && t <= now && scanned++ < SCHEDULE_SCAN_MAX) {
        due->ring[due->n++ % due->want] = t;
        due->newest = t;
        t = tick_after(r, spec, t);
    }
    return t;
}

/* Fires the due ticks of r by its catch-up policy. */
static void due_fire(durable *d, const struct schedule_record *r, const struct due_ticks *due,
                     int64_t now)
{
    durable_error err = { 0 };
    int64_t grace = r->cron ? 60000 : (r->every_ms < 60000 ? r->every_ms : 60000);
    bool on_time = now - due->newest < grace;
    char prev[ID_MAX];

    snprintf(prev, sizeof prev, "%s", r->last_run_id);
    if (strcmp(r->catch_up, "all") == 0) {
        int have = due->n < due->want ? due->n : due->want;
        int start = due->n < due->want ? 0 : due->n % due->want;

        for (int i = 0; i < have; i++)
            if (!fire_tick(d, r, due->ring[(start + i) % due->want], prev))
                break;
    } else if (strcmp(r->catch_up, "none") == 0 && !on_time) {
        (void)tick_skip(d, r->id, due->newest, &err);
    } else { /* last, or none on time */
        (void)fire_tick(d, r, due->newest, prev);
    }
}

/* Fires what is due of r at now; returns its next tick (-1: none). */
static int64_t schedule_process(durable *d, const struct schedule_record *r, int64_t now)
{
    struct cron_spec spec;
    durable_error err = { 0 };
    struct due_ticks due = { 0 };
    int64_t t;

    if (r->cron && cron_parse(r->cron, &spec, &err) != DURABLE_OK)
        return -1;
    due.want = strcmp(r->catch_up, "all") == 0 ? r->catch_up_max : 1;
    due.ring = xcalloc((size_t)due.want, sizeof(*due.ring));
    t = due_collect(r, &spec, now, &due);
    if (due.n > 0 && !r->paused) {
        due_fire(d, r, &due, now);
        pthread_mutex_lock(&d->schedules->mu);
        d->schedules->ticks++;
        pthread_mutex_unlock(&d->schedules->mu);
    }
    free(due.ring);
    return t;
}

struct sched_list {
    struct schedule_record *items;
    size_t n, cap;
};

static void list_add(const struct schedule_record *r, void *ud)
{
    struct sched_list *l = ud;
    struct schedule_record *c;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->items = xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    c = &l->items[l->n++];
    *c = *r;
    c->workflow_name = xstrdup(r->workflow_name);
    c->cron = r->cron ? xstrdup(r->cron) : NULL;
    c->tz = xstrdup(r->tz);
    c->input_json = xstrdup(r->input_json);
    c->overlap = xstrdup(r->overlap);
    c->catch_up = xstrdup(r->catch_up);
}

static void on_event(const durable_event *ev, void *ud)
{
    struct schedules *sc = ud;

    if (ev->step_id || strncmp(ev->type, "run_", 4) != 0 || strcmp(ev->type, "run_created") == 0 ||
        strcmp(ev->type, "run_retried") == 0)
        return;
    pthread_mutex_lock(&sc->mu);
    for (size_t i = 0; i < sc->n_watch; i++) {
        if (strcmp(sc->watch[i], ev->run_id) == 0) {
            sc->dirty = true;
            pthread_cond_signal(&sc->cond);
            break;
        }
    }
    pthread_mutex_unlock(&sc->mu);
}

static void *schedules_main(void *arg)
{
    durable *d = arg;
    struct schedules *sc = d->schedules;

    for (;;) {
        struct sched_list l = { 0 };
        durable_error err = { 0 };
        int64_t now = clock_wall_ms(), wake = now + SCHEDULE_IDLE_MS;
        struct timespec ts;

        pthread_mutex_lock(&sc->mu);
        sc->dirty = false;
        sc->n_watch = 0; /* this pass watches again what it waits for */
        if (sc->stop) {
            pthread_mutex_unlock(&sc->mu);
            break;
        }
        pthread_mutex_unlock(&sc->mu);
        if (store_schedules_read(d->store, NULL, list_add, &l, &err) != DURABLE_OK)
            log_warn("schedules: cannot read: %s", err.msg);
        for (size_t i = 0; i < l.n; i++) {
            if (!l.items[i].paused) {
                int64_t next = schedule_process(d, &l.items[i], now);
                if (next > 0 && next < wake)
                    wake = next;
            }
            schedule_record_release(&l.items[i]);
        }
        free(l.items);
        pthread_mutex_lock(&sc->mu);
        ts.tv_sec = (time_t)(wake / 1000);
        ts.tv_nsec = (long)(wake % 1000) * 1000000L;
        while (!sc->stop && !sc->dirty && clock_wall_ms() < wake)
            if (pthread_cond_timedwait(&sc->cond, &sc->mu, &ts) != 0)
                break;
        pthread_mutex_unlock(&sc->mu);
    }
    return NULL;
}

void engine_schedules_start(durable *d)
{
    struct schedules *sc;
    durable_error err = { 0 };

    if (d->recovery == DURABLE_RECOVER_NONE)
        return; /* a one-shot command fires nothing */
    if (store_schedules_read(d->store, "", list_add, &(struct sched_list){ 0 }, &err) ==
        DURABLE_EUNSUPPORTED)
        return; /* this backend has no schedules yet */
    sc = xcalloc(1, sizeof(*sc));
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cond, NULL);
    d->schedules = sc;
    sc->sub_id = durable_subscribe(d, on_event, sc);
    if (pthread_create(&sc->thread, NULL, schedules_main, d) != 0) {
        log_warn("schedules: cannot start the schedule thread");
        durable_unsubscribe(d, sc->sub_id);
        pthread_cond_destroy(&sc->cond);
        pthread_mutex_destroy(&sc->mu);
        free(sc);
        d->schedules = NULL;
        return;
    }
    pthread_setname_np(sc->thread, "durable-cron");
}

void engine_schedules_stop(durable *d)
{
    struct schedules *sc = d->schedules;

    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    sc->stop = true;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->mu);
    pthread_join(sc->thread, NULL);
    durable_unsubscribe(d, sc->sub_id);
    pthread_cond_destroy(&sc->cond);
    pthread_mutex_destroy(&sc->mu);
    free(sc->watch);
    free(sc);
    d->schedules = NULL;
}
