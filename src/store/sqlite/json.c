/*
 * json.c - the JSON documents of SPEC §6 read from the store: a run with its
 * steps, a run's events, an order, a workflow, and the lists of runs,
 * workflows, orders and of every run's events by global id.
 *
 * Any thread: each public function takes a read connection from the store's
 * pool, reads, releases its statements and gives the connection back, and
 * builds the document with jansson. A finished run's document is cached
 * (store_run_forget invalidates it). Times are RFC 3339 UTC with milliseconds, or
 * null when unset. Stored JSON text (input, output, depends_on, event data)
 * is parsed back into values; text that does not parse is a damaged
 * database and fails with DURABLE_EIO rather than being passed on.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

/* A text column as a JSON string, or null. */
static json_t *col_string(sqlite3_stmt *st, int col)
{
    const char *t = col_text(st, col);
    json_t *v = t ? json_string(t) : NULL;
    return v ? v : json_null();
}

/* A time column (Unix ms) as RFC 3339, or null. */
static json_t *col_time(sqlite3_stmt *st, int col)
{
    char buf[32];

    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    clock_format_rfc3339(sqlite3_column_int64(st, col), buf);
    return json_string(buf);
}

/* A column holding JSON text, parsed into *out (owned); NULL gives null. */
static durable_code col_json(sqlite3_stmt *st, int col, json_t **out, const char *what,
                             const char *owner, durable_error *err)
{
    const char *text = col_text(st, col);
    json_error_t jerr;

    *out = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : json_null();
    if (!*out) {
        return err_set(err, DURABLE_EIO, "stored %s of \"%s\" is not valid JSON: %s", what, owner,
                       jerr.text);
    }
    return DURABLE_OK;
}

/* Dumps doc (borrowed) into *out, owned by the caller. */
static durable_code dump(const json_t *doc, char **out, durable_error *err)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);

    if (!text)
        return err_set(err, DURABLE_EIO, "could not encode a JSON document");
    *out = text;
    return DURABLE_OK;
}

/* ---- runs ---- */

static durable_code step_row_json(sqlite3_stmt *st, const char *run_id, json_t *steps,
                                  durable_error *err)
{
    json_t *depends_on = NULL;
    json_t *output = NULL;
    json_t *step;
    durable_code rc = col_json(st, 5, &depends_on, "depends_on", run_id, err);

    if (rc == DURABLE_OK)
        rc = col_json(st, 10, &output, "step output", run_id, err);
    if (rc == DURABLE_OK) {
        step = json_object();
        json_object_set_new(step, "step_id", col_string(st, 0));
        json_object_set_new(step, "type", col_string(st, 1));
        json_object_set_new(step, "status", col_string(st, 2));
        json_object_set_new(step, "attempt", json_integer(sqlite3_column_int(st, 3)));
        json_object_set_new(step, "max_attempts", json_integer(sqlite3_column_int(st, 4)));
        json_object_set(step, "depends_on", depends_on);
        json_object_set_new(step, "started_at", col_time(st, 6));
        json_object_set_new(step, "completed_at", col_time(st, 7));
        json_object_set_new(step, "wake_at", col_time(st, 8));
        json_object_set_new(step, "error_message", col_string(st, 9));
        json_object_set(step, "output", output);
        json_array_append_new(steps, step);
    }
    json_decref(depends_on);
    json_decref(output);
    return rc;
}

static durable_code steps_json(struct conn *c, const char *run_id, json_t *steps,
                               durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = stmt_get(c, ST_STEPS_JSON, &st, err, "s", run_id);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        rc = step_row_json(st, run_id, steps, err);
    }
    stmt_release(st);
    return rc;
}

static durable_code run_row_json(sqlite3_stmt *st, const char *run_id, json_t *run,
                                 durable_error *err)
{
    json_t *input = NULL;
    json_t *output = NULL;
    durable_code rc = col_json(st, 5, &input, "input", run_id, err);

    if (rc == DURABLE_OK)
        rc = col_json(st, 6, &output, "output", run_id, err);
    if (rc == DURABLE_OK) {
        json_object_set_new(run, "id", col_string(st, 0));
        json_object_set_new(run, "workflow_id", col_string(st, 1));
        json_object_set_new(run, "workflow_name", col_string(st, 2));
        json_object_set_new(run, "workflow_version", json_integer(sqlite3_column_int(st, 3)));
        json_object_set_new(run, "status", col_string(st, 4));
        json_object_set(run, "input", input);
        json_object_set(run, "output", output);
        json_object_set_new(run, "order_id", col_string(st, 7));
        json_object_set_new(run, "idempotency_key", col_string(st, 8));
        json_object_set_new(run, "error_message", col_string(st, 9));
        json_object_set_new(run, "created_at", col_time(st, 10));
        json_object_set_new(run, "started_at", col_time(st, 11));
        json_object_set_new(run, "completed_at", col_time(st, 12));
    }
    json_decref(input);
    json_decref(output);
    return rc;
}

/* Fills run with the run's fields and steps, read in one read transaction
 * (one snapshot, one WAL read lock). */
static durable_code run_json_read(struct conn *c, const char *run_id, json_t *run,
                                  durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    json_t *steps = json_array();
    durable_code rc = store_read_begin(c, err);

    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_RUN_JSON, &st, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK)
        rc = run_row_json(st, run_id, run, err);
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = steps_json(c, run_id, steps, err);
    store_read_end(c);
    if (rc == DURABLE_OK)
        json_object_set(run, "steps", steps);
    json_decref(steps);
    return rc;
}

/* ---- the cache of finished runs (store_int.h) ---- */

void store_run_cache_init(struct sqlite_store *s)
{
    pthread_mutex_init(&s->cache_mu, NULL);
    s->cache = xcalloc(RUN_CACHE_SLOTS, sizeof(*s->cache));
}

void store_run_cache_release(struct sqlite_store *s)
{
    if (s->cache) {
        for (size_t i = 0; i < RUN_CACHE_SLOTS; i++)
            free(s->cache[i].json);
        free(s->cache);
        s->cache = NULL;
        free(s->unfinished);
        pthread_mutex_destroy(&s->cache_mu);
    }
}

/* FNV-1a of the run id. */
static struct run_cache_slot *cache_slot(struct sqlite_store *s, const char *run_id)
{
    uint32_t h = 2166136261u;

    for (; *run_id; run_id++)
        h = (h ^ (unsigned char)*run_id) * 16777619u;
    return &s->cache[h % RUN_CACHE_SLOTS];
}

/* A copy of run_id's cached JSON into *out (owned), or false. *out_gen gets
 * the slot's generation either way, for cache_put. */
static bool cache_get(struct sqlite_store *s, const char *run_id, char **out, uint64_t *out_gen)
{
    struct run_cache_slot *e = cache_slot(s, run_id);
    bool hit;

    pthread_mutex_lock(&s->cache_mu);
    hit = e->json && strcmp(e->id, run_id) == 0;
    if (hit) {
        *out = xmalloc(e->len + 1);
        memcpy(*out, e->json, e->len + 1);
    }
    *out_gen = e->gen;
    pthread_mutex_unlock(&s->cache_mu);
    return hit;
}

/* Keeps a copy of json as run_id's, unless the slot was invalidated since
 * gen was read (the run may have changed after it was read). */
static void cache_put(struct sqlite_store *s, const char *run_id, const char *json, uint64_t gen)
{
    struct run_cache_slot *e = cache_slot(s, run_id);
    size_t len = strlen(json);
    char *copy = NULL;

    if (len > RUN_CACHE_DOC_MAX || strlen(run_id) >= ID_MAX)
        return;
    copy = xmalloc(len + 1);
    memcpy(copy, json, len + 1);
    pthread_mutex_lock(&s->cache_mu);
    if (e->gen == gen) {
        char *old = e->json;
        e->json = copy;
        e->len = len;
        snprintf(e->id, sizeof(e->id), "%s", run_id);
        copy = old;
    }
    pthread_mutex_unlock(&s->cache_mu);
    free(copy);
}

/* Drops the cached JSON of run_id, if any, and keeps a reader that read the
 * run before this call from caching what it read. */
static void run_forget(struct sqlite_store *s, const char *run_id)
{
    struct run_cache_slot *e = cache_slot(s, run_id);
    char *old = NULL;

    pthread_mutex_lock(&s->cache_mu);
    e->gen++;
    if (e->json && strcmp(e->id, run_id) == 0) {
        old = e->json;
        e->json = NULL;
        e->id[0] = '\0';
    }
    pthread_mutex_unlock(&s->cache_mu);
    free(old);
}

void store_run_forget_at_commit(struct sqlite_store *s, const char *run_id)
{
    if (s->n_unfinished == s->cap_unfinished) {
        s->cap_unfinished = s->cap_unfinished ? s->cap_unfinished * 2 : 8;
        s->unfinished = xrealloc(s->unfinished, s->cap_unfinished * sizeof(*s->unfinished));
    }
    snprintf(s->unfinished[s->n_unfinished++], ID_MAX, "%s", run_id);
}

void store_run_forget_pending(struct sqlite_store *s, bool committed)
{
    for (size_t i = 0; committed && i < s->n_unfinished; i++)
        run_forget(s, s->unfinished[i]);
    s->n_unfinished = 0;
}

static bool run_is_finished(const json_t *run)
{
    enum run_status st;

    return run_status_parse(json_string_value(json_object_get(run, "status")), &st) &&
           run_status_is_final(st);
}

durable_code sqlite_run_json(struct store *base, const char *run_id, char **out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = NULL;
    json_t *run = NULL;
    uint64_t gen = 0;
    durable_code rc;

    if (cache_get(s, run_id, out, &gen))
        return DURABLE_OK;
    run = json_object();
    c = store_reader_take(s);
    rc = run_json_read(c, run_id, run, err);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        rc = dump(run, out, err);
    if (rc == DURABLE_OK && run_is_finished(run))
        cache_put(s, run_id, *out, gen);
    json_decref(run);
    return rc;
}

/* ---- events ---- */

static durable_code run_exists(struct conn *c, const char *run_id, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(c, ST_RUN_STATUS, &st, err, "s", run_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    stmt_release(st);
    return rc;
}

/* One event from a row (seq, type, step_id, at, data, gid[, run_id]): the
 * global id is `id`; run_id is there when the row has it. */
static durable_code event_row_json(sqlite3_stmt *st, const char *run_id, json_t *events,
                                   durable_error *err)
{
    json_t *data = NULL;
    json_t *ev;
    durable_code rc = col_json(st, 4, &data, "event data", run_id, err);

    if (rc == DURABLE_OK) {
        ev = json_object();
        json_object_set_new(ev, "id", json_integer(sqlite3_column_int64(st, 5)));
        if (sqlite3_column_count(st) > 6)
            json_object_set_new(ev, "run_id", col_string(st, 6));
        json_object_set_new(ev, "seq", json_integer(sqlite3_column_int64(st, 0)));
        json_object_set_new(ev, "type", col_string(st, 1));
        json_object_set_new(ev, "step_id", col_string(st, 2));
        json_object_set_new(ev, "at", col_time(st, 3));
        json_object_set(ev, "data", data);
        json_array_append_new(events, ev);
    }
    json_decref(data);
    return rc;
}

static durable_code events_json_locked(struct conn *c, const char *run_id, int64_t after_seq,
                                       json_t *events, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = run_exists(c, run_id, err);

    if (rc == DURABLE_OK) {
        rc = stmt_get(c, ST_EVENTS_JSON, &st, err, "sI", run_id, after_seq);
    }
    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        rc = event_row_json(st, run_id, events, err);
    }
    stmt_release(st);
    return rc;
}

durable_code sqlite_events_json(struct store *base, const char *run_id, int64_t after_seq,
                                char **out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    json_t *events = json_array();
    durable_code rc;

    c = store_reader_take(s);
    rc = events_json_locked(c, run_id, after_seq, events, err);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        rc = dump(events, out, err);
    json_decref(events);
    return rc;
}

/* ---- orders ---- */

/* An order from a row (id, amount, status, created_at, updated_at). */
static json_t *order_row_json(sqlite3_stmt *st)
{
    json_t *order = json_object();

    json_object_set_new(order, "id", col_string(st, 0));
    json_object_set_new(order, "amount", json_real(sqlite3_column_double(st, 1)));
    json_object_set_new(order, "status", col_string(st, 2));
    json_object_set_new(order, "created_at", col_time(st, 3));
    json_object_set_new(order, "updated_at", col_time(st, 4));
    return order;
}

durable_code sqlite_order_json(struct store *base, const char *order_id, char **out,
                               durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    json_t *order = NULL;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_ORDER_JSON, &st, err, "s", order_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK)
        order = order_row_json(st);
    stmt_release(st);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        rc = dump(order, out, err);
    json_decref(order);
    return rc;
}

/* ---- workflows ---- */

durable_code sqlite_workflow_json(struct store *base, const char *id_or_name, char **out,
                                  durable_error *err)
{
    struct workflow_record w = { .version = 0 };
    json_t *doc = NULL;
    json_t *definition = NULL;
    json_error_t jerr;
    char created[32];
    durable_code rc = store_workflow_get(base, id_or_name, &w, err);

    if (rc != DURABLE_OK)
        goto done;
    definition = json_loads(w.definition, 0, &jerr);
    if (!definition) {
        rc = err_set(err, DURABLE_EIO, "stored definition of \"%s\" is not valid JSON: %s", w.id,
                     jerr.text);
        goto done;
    }
    clock_format_rfc3339(w.created_at_ms, created);
    doc = json_pack("{s:s, s:s, s:i, s:O, s:s}", "id", w.id, "name", w.name, "version", w.version,
                    "definition", definition, "created_at", created);
    rc = doc ? dump(doc, out, err) : err_set(err, DURABLE_EIO, "could not encode a workflow");
done:
    json_decref(doc);
    json_decref(definition);
    workflow_record_release(&w);
    return rc;
}

/* ---- lists ---- */

/* Appends the element of the current row to list. */
typedef durable_code (*list_row_fn)(sqlite3_stmt *st, json_t *list, durable_error *err);

/* A list: its page statement (?1, ?2 filters, possibly unused; ?3 limit; ?4
 * offset) and its count statement (binding count_fmt of ?1, ?2). */
struct list_query {
    enum stmt_id list_id;
    enum stmt_id count_id;
    const char *count_fmt; /* "", "s" or "ss" */
    const char *arg1;
    const char *arg2;
    list_row_fn row;
};

static durable_code count_locked(struct conn *c, const struct list_query *q, int64_t *out,
                                 durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(c, q->count_id, &st, err, q->count_fmt, q->arg1, q->arg2);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK)
        *out = has_row ? sqlite3_column_int64(st, 0) : 0;
    stmt_release(st);
    return rc;
}

static durable_code page_locked(struct conn *c, const struct list_query *q, struct store_page page,
                                json_t *list, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc =
            stmt_get(c, q->list_id, &st, err, "ssii", q->arg1, q->arg2, page.limit, page.offset);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        rc = q->row(st, list, err);
    }
    stmt_release(st);
    return rc;
}

/* Reads the total and the page in one read transaction, so they agree. */
static durable_code list_json(struct sqlite_store *s, const struct list_query *q,
                              struct store_page page, char **out, int64_t *out_total,
                              durable_error *err)
{
    struct conn *c;
    json_t *list = json_array();
    int64_t total = 0;
    durable_code rc;

    page.limit = store_clamp_limit(page.limit, STORE_LIST_DEFAULT, STORE_LIST_MAX);
    page.offset = page.offset < 0 ? 0 : page.offset;
    c = store_reader_take(s);
    rc = store_read_begin(c, err);
    if (rc == DURABLE_OK)
        rc = count_locked(c, q, &total, err);
    if (rc == DURABLE_OK)
        rc = page_locked(c, q, page, list, err);
    store_read_end(c);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        rc = dump(list, out, err);
    if (rc == DURABLE_OK && out_total)
        *out_total = total;
    json_decref(list);
    return rc;
}

static durable_code run_list_row(sqlite3_stmt *st, json_t *list, durable_error *err)
{
    json_t *run = json_object();
    const char *id = col_text(st, 0);
    durable_code rc = run_row_json(st, id ? id : "", run, err);

    if (rc == DURABLE_OK)
        json_array_append(list, run);
    json_decref(run);
    return rc;
}

durable_code sqlite_runs_list(struct store *base, const struct store_run_query *rq, char **out,
                              int64_t *out_total, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    /* Indexed by (status given) + 2 * (workflow given). */
    static const struct list_query variants[4] = {
        { ST_RUNS_LIST, ST_RUNS_COUNT, "", NULL, NULL, run_list_row },
        { ST_RUNS_LIST_STATUS, ST_RUNS_COUNT_STATUS, "s", NULL, NULL, run_list_row },
        { ST_RUNS_LIST_WF, ST_RUNS_COUNT_WF, "ss", NULL, NULL, run_list_row },
        { ST_RUNS_LIST_STATUS_WF, ST_RUNS_COUNT_STATUS_WF, "ss", NULL, NULL, run_list_row },
    };
    const char *status = rq->status, *workflow = rq->workflow;
    struct list_query q;
    enum run_status st;

    if (status && !run_status_parse(status, &st))
        return err_set(err, DURABLE_EINVAL, "unknown run status \"%s\"", status);
    q = variants[(status ? 1 : 0) + (workflow ? 2 : 0)];
    q.arg1 = status;
    q.arg2 = workflow;
    return list_json(s, &q, rq->page, out, out_total, err);
}

static durable_code workflow_list_row(sqlite3_stmt *st, json_t *list, durable_error *err)
{
    json_t *wf = json_object();

    (void)err;
    json_object_set_new(wf, "id", col_string(st, 0));
    json_object_set_new(wf, "name", col_string(st, 1));
    json_object_set_new(wf, "version", json_integer(sqlite3_column_int(st, 2)));
    /* A description that is not a string is not one. */
    json_object_set_new(wf, "description",
                        sqlite3_column_type(st, 4) == SQLITE_TEXT ? col_string(st, 4)
                                                                  : json_null());
    json_object_set_new(wf, "created_at", col_time(st, 3));
    json_array_append_new(list, wf);
    return DURABLE_OK;
}

durable_code sqlite_workflows_list(struct store *base, struct store_page page, char **out,
                                   int64_t *out_total, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    static const struct list_query q = {
        ST_WF_LIST, ST_WF_COUNT, "", NULL, NULL, workflow_list_row
    };

    return list_json(s, &q, page, out, out_total, err);
}

static durable_code order_list_row(sqlite3_stmt *st, json_t *list, durable_error *err)
{
    (void)err;
    json_array_append_new(list, order_row_json(st));
    return DURABLE_OK;
}

durable_code sqlite_orders_list(struct store *base, struct store_page page, char **out,
                                int64_t *out_total, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    static const struct list_query q = { ST_ORDERS_LIST, ST_ORDERS_COUNT, "", NULL,
                                         NULL,           order_list_row };

    return list_json(s, &q, page, out, out_total, err);
}

/* ---- every run's events ---- */

durable_code sqlite_events_since(struct store *base, int64_t after_gid, int limit, char **out,
                                 durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    sqlite3_stmt *st = NULL;
    json_t *events = json_array();
    bool has_row = true;
    durable_code rc;

    limit = store_clamp_limit(limit, STORE_EVENTS_MAX, STORE_EVENTS_MAX);
    c = store_reader_take(s);
    rc = stmt_get(c, ST_EVENTS_SINCE, &st, err, "Ii", after_gid < 0 ? 0 : after_gid, limit);
    while (rc == DURABLE_OK) {
        const char *run_id;
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        run_id = col_text(st, 6);
        rc = event_row_json(st, run_id ? run_id : "", events, err);
    }
    stmt_release(st);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        rc = dump(events, out, err);
    json_decref(events);
    return rc;
}
