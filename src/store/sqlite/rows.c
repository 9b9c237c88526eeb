/*
 * rows.c - the records of the JSON documents (store.h, struct run_row ...)
 * read from SQLite: a run with its steps, a run's events, an order, and the
 * pages of runs, workflows and orders with their totals, and every run's
 * events by global id. docs.c builds the documents from them.
 *
 * Any thread: each function takes a read connection from the store's pool,
 * reads, hands each row to the caller's callback (its strings are
 * SQLite's, borrowed for the call), releases its statements and gives the
 * connection back. Events are copied into a struct store_events instead.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "store/sqlite/sqlite_int.h"

/* A time column (Unix ms), 0 when NULL. */
static int64_t col_time(sqlite3_stmt *st, int col)
{
    return sqlite3_column_int64(st, col);
}

/* ---- runs ---- */

static void step_row_of(sqlite3_stmt *st, const struct store_row_fns *fn)
{
    struct step_row r = {
        .step_id = col_text(st, 0),
        .type = col_text(st, 1),
        .status = col_text(st, 2),
        .attempt = sqlite3_column_int(st, 3),
        .max_attempts = sqlite3_column_int(st, 4),
        .depends_on_json = col_text(st, 5),
        .started_at_ms = col_time(st, 6),
        .completed_at_ms = col_time(st, 7),
        .wake_at_ms = col_time(st, 8),
        .error_message = col_text(st, 9),
        .output_json = col_text(st, 10),
    };
    fn->step(fn->ud, &r);
}

static durable_code steps_read(struct conn *c, const char *run_id, const struct store_row_fns *fn,
                               durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = stmt_get(c, ST_STEPS_JSON, &st, err, "s", run_id);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        step_row_of(st, fn);
    }
    stmt_release(st);
    return rc;
}

/* A run from a row of RUN_COLS (sqlite.c). */
static void run_row_of(sqlite3_stmt *st, const struct store_row_fns *fn)
{
    struct run_row r = {
        .id = col_text(st, 0),
        .workflow_id = col_text(st, 1),
        .workflow_name = col_text(st, 2),
        .workflow_version = sqlite3_column_int(st, 3),
        .status = col_text(st, 4),
        .input_json = col_text(st, 5),
        .output_json = col_text(st, 6),
        .order_id = col_text(st, 7),
        .idempotency_key = col_text(st, 8),
        .error_message = col_text(st, 9),
        .created_at_ms = col_time(st, 10),
        .started_at_ms = col_time(st, 11),
        .completed_at_ms = col_time(st, 12),
        .restarted_from = col_text(st, 13),
        .restarted_step = col_text(st, 14),
        .priority = sqlite3_column_int64(st, 15),
    };
    fn->run(fn->ud, &r);
}

/* The run and its steps in one read transaction (one snapshot, one WAL
 * read lock). */
static durable_code run_read_locked(struct conn *c, const char *run_id,
                                    const struct store_row_fns *fn, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = store_read_begin(c, err);

    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_RUN_JSON, &st, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK)
        run_row_of(st, fn);
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = steps_read(c, run_id, fn, err);
    store_read_end(c);
    return rc;
}

durable_code sqlite_run_read(struct store *base, const char *run_id, const struct store_row_fns *fn,
                             durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    durable_code rc = run_read_locked(c, run_id, fn, err);

    store_reader_put(s, c);
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

/* Appends the events of st's rows (seq, type, step_id, at, data, gid,
 * run_id) to out; run_id is the run's when the rows do not have it. */
static durable_code events_of_rows(sqlite3_stmt *st, const char *run_id, struct store_events *out,
                                   durable_error *err)
{
    bool has_row = true;
    durable_code rc = DURABLE_OK;

    while (rc == DURABLE_OK) {
        struct event_key k;
        const char *type, *data;
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        k.run_id = run_id ? run_id : col_text(st, 6);
        k.run_id = k.run_id ? k.run_id : "";
        k.step_id = col_text(st, 2);
        k.at_ms = col_time(st, 3);
        type = col_text(st, 1);
        data = col_text(st, 4);
        store_events_push(out, &k, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 5),
                          type ? type : "", data ? xstrdup(data) : NULL);
    }
    return rc;
}

durable_code sqlite_events_read(struct store *base, const char *run_id, int64_t after_seq,
                                struct store_events *out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    sqlite3_stmt *st = NULL;
    durable_code rc = run_exists(c, run_id, err);

    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_EVENTS_JSON, &st, err, "sI", run_id, after_seq);
    if (rc == DURABLE_OK)
        rc = events_of_rows(st, run_id, out, err);
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

durable_code sqlite_events_since(struct store *base, int64_t after_gid, int limit,
                                 struct store_events *out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(c, ST_EVENTS_SINCE, &st, err, "Ii", after_gid, limit);

    if (rc == DURABLE_OK)
        rc = events_of_rows(st, NULL, out, err);
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

/* ---- orders ---- */

/* An order from a row (id, amount, status, created_at, updated_at). */
static void order_row_of(sqlite3_stmt *st, const struct store_row_fns *fn)
{
    struct order_row o = {
        .id = col_text(st, 0),
        .amount = sqlite3_column_double(st, 1),
        .status = col_text(st, 2),
        .created_at_ms = col_time(st, 3),
        .updated_at_ms = col_time(st, 4),
    };
    fn->order(fn->ud, &o);
}

durable_code sqlite_order_read(struct store *base, const char *order_id,
                               const struct store_row_fns *fn, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(c, ST_ORDER_JSON, &st, err, "s", order_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK)
        order_row_of(st, fn);
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

durable_code sqlite_kv_read(struct store *base, const char *key, char **out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    sqlite3_stmt *st = NULL;
    bool found = false;
    durable_code rc = stmt_get(c, ST_KV_READ, &st, err, "s", key);

    *out = NULL;
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &found, err);
    if (rc == DURABLE_OK && found)
        *out = col_strdup(st, 0);
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

static void schedule_of(sqlite3_stmt *st, struct schedule_record *r)
{
    memset(r, 0, sizeof(*r));
    col_copy_id(st, 0, r->id);
    r->workflow_name = col_strdup(st, 1);
    r->cron = col_strdup(st, 2);
    r->every_ms = sqlite3_column_int64(st, 3);
    r->tz = col_strdup(st, 4);
    r->input_json = col_strdup(st, 5);
    r->overlap = col_strdup(st, 6);
    r->catch_up = col_strdup(st, 7);
    r->catch_up_max = sqlite3_column_int(st, 8);
    r->paused = sqlite3_column_int(st, 9) != 0;
    r->anchor_ms = sqlite3_column_int64(st, 10);
    r->last_tick_ms = sqlite3_column_int64(st, 11);
    r->fired = sqlite3_column_int64(st, 12);
    r->skipped = sqlite3_column_int64(st, 13);
    r->created_at_ms = sqlite3_column_int64(st, 14);
    r->updated_at_ms = sqlite3_column_int64(st, 15);
    col_copy_id(st, 16, r->last_run_id);
}

durable_code sqlite_schedules_read(struct store *base, const char *id,
                                   void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                                   durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c = store_reader_take(s);
    sqlite3_stmt *st = NULL;
    bool has_row = false, any = false;
    durable_code rc = id ? stmt_get(c, ST_SCHED_READ, &st, err, "s", id)
                         : stmt_get(c, ST_SCHED_LIST, &st, err, "");

    while (rc == DURABLE_OK && (rc = stmt_step(st, &has_row, err)) == DURABLE_OK && has_row) {
        struct schedule_record r;

        schedule_of(st, &r);
        fn(&r, ud);
        schedule_record_release(&r);
        any = true;
    }
    if (rc == DURABLE_OK && id && !any)
        rc = err_set(err, DURABLE_ENOTFOUND, "schedule \"%s\" not found", id);
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

/* ---- pages ---- */

/* Hands the current row to fn. */
typedef void (*page_row_fn)(sqlite3_stmt *st, const struct store_row_fns *fn);

/* A list: its page statement (?1, ?2 filters, possibly unused; ?3 limit; ?4
 * offset) and its count statement (binding count_fmt of ?1, ?2). */
struct list_query {
    enum stmt_id list_id;
    enum stmt_id count_id;
    const char *count_fmt; /* "", "s" or "ss" */
    const char *arg1;
    const char *arg2;
    page_row_fn row;
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
                                const struct store_row_fns *fn, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc =
            stmt_get(c, q->list_id, &st, err, "ssii", q->arg1, q->arg2, page.limit, page.offset);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        q->row(st, fn);
    }
    stmt_release(st);
    return rc;
}

/* Reads the total and the page in one read transaction, so they agree. */
static durable_code page_read(struct sqlite_store *s, const struct list_query *q,
                              struct store_page page, const struct store_row_fns *fn,
                              int64_t *out_total, durable_error *err)
{
    struct conn *c = store_reader_take(s);
    durable_code rc = store_read_begin(c, err);

    if (rc == DURABLE_OK)
        rc = count_locked(c, q, out_total, err);
    if (rc == DURABLE_OK)
        rc = page_locked(c, q, page, fn, err);
    store_read_end(c);
    store_reader_put(s, c);
    return rc;
}

/* An input filter as ST_RUNS_*_FILTERED binds it: the JSON path of the
 * field, the kind of value and the value (owned). */
struct input_bind {
    char path[STORE_INPUT_DEPTH * 67 + 2];
    const char *kind;
    char *value;
};

static void input_bind_init(struct input_bind *b, const struct store_run_query *rq)
{
    json_t *j;
    size_t n = 0;

    memset(b, 0, sizeof(*b));
    if (!rq->input_field)
        return;
    /* Names are [A-Za-z0-9_-] (store_input_field_check): quoted as they are. */
    n += (size_t)snprintf(b->path, sizeof(b->path), "$");
    for (const char *p = rq->input_field; *p && n + 4 < sizeof(b->path);) {
        size_t len = strcspn(p, ".");
        n += (size_t)snprintf(b->path + n, sizeof(b->path) - n, ".\"%.*s\"", (int)len, p);
        p += len;
        if (*p == '.')
            p++;
    }
    j = json_loads(rq->input_value, JSON_DECODE_ANY, NULL);
    if (json_is_number(j)) {
        b->kind = "number";
        b->value = json_dumps(j, JSON_ENCODE_ANY);
    } else if (json_is_string(j)) {
        b->kind = "text";
        b->value = xstrdup(json_string_value(j));
    } else {
        b->kind = json_is_true(j) ? "true" : json_is_false(j) ? "false" : "null";
    }
    json_decref(j);
}

/* The runs page with every filter (ST_RUNS_*_FILTERED), total and page in
 * one read transaction. */
static durable_code runs_page_filtered(struct sqlite_store *s, const struct store_run_query *rq,
                                       const struct store_row_fns *fn, int64_t *out_total,
                                       durable_error *err)
{
    static const char fmt[] = "ssiiIITTsss";
    struct conn *c = store_reader_take(s);
    struct input_bind ib;
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    int64_t after = rq->created_after_ms, before = rq->created_before_ms;
    durable_code rc;

    if (!before)
        before = INT64_MAX;
    input_bind_init(&ib, rq);
    rc = store_read_begin(c, err);
    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_RUNS_COUNT_FILTERED, &st, err, fmt, rq->status, rq->workflow,
                      rq->page.limit, rq->page.offset, after, before, rq->finished_after_ms,
                      rq->finished_before_ms, rq->input_field ? ib.path : NULL, ib.kind, ib.value);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && out_total)
        *out_total = has_row ? sqlite3_column_int64(st, 0) : 0;
    stmt_release(st);
    st = NULL;
    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_RUNS_LIST_FILTERED, &st, err, fmt, rq->status, rq->workflow,
                      rq->page.limit, rq->page.offset, after, before, rq->finished_after_ms,
                      rq->finished_before_ms, rq->input_field ? ib.path : NULL, ib.kind, ib.value);
    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        run_row_of(st, fn);
    }
    stmt_release(st);
    store_read_end(c);
    store_reader_put(s, c);
    free(ib.value);
    return rc;
}

durable_code sqlite_runs_page(struct store *base, const struct store_run_query *rq,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err)
{
    /* Indexed by (status given) + 2 * (workflow given). */
    static const struct list_query variants[4] = {
        { ST_RUNS_LIST, ST_RUNS_COUNT, "", NULL, NULL, run_row_of },
        { ST_RUNS_LIST_STATUS, ST_RUNS_COUNT_STATUS, "s", NULL, NULL, run_row_of },
        { ST_RUNS_LIST_WF, ST_RUNS_COUNT_WF, "ss", NULL, NULL, run_row_of },
        { ST_RUNS_LIST_STATUS_WF, ST_RUNS_COUNT_STATUS_WF, "ss", NULL, NULL, run_row_of },
    };
    struct list_query q = variants[(rq->status ? 1 : 0) + (rq->workflow ? 2 : 0)];

    if (store_run_query_extended(rq))
        return runs_page_filtered(sqlite_of(base), rq, fn, out_total, err);

    q.arg1 = rq->status;
    q.arg2 = rq->workflow;
    return page_read(sqlite_of(base), &q, rq->page, fn, out_total, err);
}

static void workflow_row_of(sqlite3_stmt *st, const struct store_row_fns *fn)
{
    struct workflow_row w = {
        .id = col_text(st, 0),
        .name = col_text(st, 1),
        .version = sqlite3_column_int(st, 2),
        .created_at_ms = col_time(st, 3),
        /* A description that is not a string is not one. */
        .description = sqlite3_column_type(st, 4) == SQLITE_TEXT ? col_text(st, 4) : NULL,
    };
    fn->workflow(fn->ud, &w);
}

durable_code sqlite_workflows_page(struct store *base, struct store_page page,
                                   const struct store_row_fns *fn, int64_t *out_total,
                                   durable_error *err)
{
    static const struct list_query q = { ST_WF_LIST, ST_WF_COUNT, "", NULL, NULL, workflow_row_of };

    return page_read(sqlite_of(base), &q, page, fn, out_total, err);
}

durable_code sqlite_orders_page(struct store *base, struct store_page page,
                                const struct store_row_fns *fn, int64_t *out_total,
                                durable_error *err)
{
    static const struct list_query q = { ST_ORDERS_LIST, ST_ORDERS_COUNT, "", NULL,
                                         NULL,           order_row_of };

    return page_read(sqlite_of(base), &q, page, fn, out_total, err);
}
