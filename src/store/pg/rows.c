/*
 * rows.c - the records of the JSON documents (store.h, struct run_row ...)
 * read from PostgreSQL: a run with its steps, a run's events, an order,
 * the pages of runs, workflows and orders with their totals, and every
 * run's events by global id. docs.c builds the documents from them.
 *
 * Any thread. Each read is one round trip (pg_reads): a run and its steps,
 * or a page and its total, are pipelined in one REPEATABLE READ
 * transaction, so they agree. The connection is given back before the
 * rows are handed to the callbacks, whose strings are borrowed from the
 * result for the call. Lists are newest first by (created_at, ord): ord is
 * the insertion order (schema.c), as SQLite's rowid.
 */
#include "util/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_int.h"

/* A run's columns as run_row_of reads them. */
#define RUN_COLS                                                        \
    "SELECT r.id, r.workflow_id, w.name, w.version, r.status, r.input," \
    " r.output, r.order_id, r.idempotency_key, r.error_message,"        \
    " r.created_at, r.started_at, r.completed_at, r.restarted_from,"    \
    " r.restarted_step, r.priority FROM runs r JOIN workflows w ON w.id = r.workflow_id"
/* The runs list's filters: $1 a status or NULL, $2 a workflow id or name
 * (every version) or NULL, $3 <= created_at < $4, $5 <= completed_at < $6
 * (each NULL for none), $7 the input field's path as a text[] and $8 the
 * JSON it must equal (jsonb: numbers by value), or NULL. An unnamed
 * statement is planned with its parameters' values, so a filter that is
 * NULL costs nothing. */
#define RUNS_WHERE                                                                       \
    " WHERE ($1::text IS NULL OR r.status = $1)"                                         \
    " AND ($2::text IS NULL OR r.workflow_id IN (SELECT id FROM workflows WHERE id = $2" \
    " OR name = $2))"                                                                    \
    " AND ($3::bigint IS NULL OR r.created_at >= $3::bigint)"                            \
    " AND ($4::bigint IS NULL OR r.created_at < $4::bigint)"                             \
    " AND ($5::bigint IS NULL OR r.completed_at >= $5::bigint)"                          \
    " AND ($6::bigint IS NULL OR r.completed_at < $6::bigint)"                           \
    " AND ($7::text[] IS NULL OR (r.input::jsonb #> $7::text[]) = $8::jsonb)"

static const char sql_run[] = RUN_COLS " WHERE r.id = $1";
static const char sql_steps[] = "SELECT step_id, type, status, attempt, max_attempts, depends_on,"
                                " started_at, completed_at, wake_at, error_message, output"
                                " FROM steps WHERE run_id = $1 ORDER BY idx";
/* The run's row, joined with its events after $2: one row of NULL event
 * columns when it has none, no row when there is no such run. */
static const char sql_events[] = "SELECT e.seq, e.type, e.step_id, e.at, e.data, e.gid"
                                 " FROM runs r LEFT JOIN events e ON e.run_id = r.id"
                                 " AND e.seq > $2::bigint WHERE r.id = $1 ORDER BY e.seq";
static const char sql_events_since[] = "SELECT seq, type, step_id, at, data, gid, run_id"
                                       " FROM events WHERE gid > $1::bigint ORDER BY gid"
                                       " LIMIT $2::integer";
static const char sql_order[] = "SELECT id, amount, status, created_at, updated_at FROM orders"
                                " WHERE id = $1";
static const char sql_runs_page[] = RUN_COLS RUNS_WHERE
        " ORDER BY r.created_at DESC, r.ord DESC LIMIT $9::integer OFFSET $10::integer";
static const char sql_runs_count[] = "SELECT count(*) FROM runs r" RUNS_WHERE;
/* A description that is not a string is not one. */
static const char sql_workflows_page[] =
        "SELECT id, name, version, created_at,"
        " CASE WHEN json_typeof(definition::json -> 'description') = 'string'"
        " THEN definition::json ->> 'description' END"
        " FROM workflows ORDER BY created_at DESC, ord DESC LIMIT $1::integer OFFSET $2::integer";
static const char sql_workflows_count[] = "SELECT count(*) FROM workflows";
static const char sql_orders_page[] =
        "SELECT id, amount, status, created_at, updated_at FROM orders"
        " ORDER BY created_at DESC, ord DESC LIMIT $1::integer OFFSET $2::integer";
static const char sql_orders_count[] = "SELECT count(*) FROM orders";

static int cell_int(const PGresult *r, int row, int col)
{
    return (int)pg_cell_int64(r, row, col);
}

/* ---- runs ---- */

static void step_row_of(const PGresult *r, int i, const struct store_row_fns *fn)
{
    struct step_row s = {
        .step_id = pg_cell_text(r, i, 0),
        .type = pg_cell_text(r, i, 1),
        .status = pg_cell_text(r, i, 2),
        .attempt = cell_int(r, i, 3),
        .max_attempts = cell_int(r, i, 4),
        .depends_on_json = pg_cell_text(r, i, 5),
        .started_at_ms = pg_cell_int64(r, i, 6),
        .completed_at_ms = pg_cell_int64(r, i, 7),
        .wake_at_ms = pg_cell_int64(r, i, 8),
        .error_message = pg_cell_text(r, i, 9),
        .output_json = pg_cell_text(r, i, 10),
    };
    fn->step(fn->ud, &s);
}

/* A run from a row of RUN_COLS. */
static void run_row_of(const PGresult *r, int i, const struct store_row_fns *fn)
{
    struct run_row run = {
        .id = pg_cell_text(r, i, 0),
        .workflow_id = pg_cell_text(r, i, 1),
        .workflow_name = pg_cell_text(r, i, 2),
        .workflow_version = cell_int(r, i, 3),
        .status = pg_cell_text(r, i, 4),
        .input_json = pg_cell_text(r, i, 5),
        .output_json = pg_cell_text(r, i, 6),
        .order_id = pg_cell_text(r, i, 7),
        .idempotency_key = pg_cell_text(r, i, 8),
        .error_message = pg_cell_text(r, i, 9),
        .created_at_ms = pg_cell_int64(r, i, 10),
        .started_at_ms = pg_cell_int64(r, i, 11),
        .completed_at_ms = pg_cell_int64(r, i, 12),
        .restarted_from = pg_cell_text(r, i, 13),
        .restarted_step = pg_cell_text(r, i, 14),
        .priority = pg_cell_int64(r, i, 15),
    };
    fn->run(fn->ud, &run);
}

durable_code pg_run_read(struct store *base, const char *run_id, const struct store_row_fns *fn,
                         durable_error *err)
{
    const char *params[1] = { run_id };
    const struct pg_query q[2] = {
        { "read a run", sql_run, 1, params },
        { "read a run's steps", sql_steps, 1, params },
    };
    PGresult *res[2] = { NULL, NULL };
    durable_code rc = pg_reads(pg_of(base), q, 2, res, err);

    if (rc == DURABLE_OK && PQntuples(res[0]) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        run_row_of(res[0], 0, fn);
        for (int i = 0; i < PQntuples(res[1]); i++)
            step_row_of(res[1], i, fn);
    }
    pg_results_clear(res, 2);
    return rc;
}

/* ---- events ---- */

/* Appends the events of r's rows (seq, type, step_id, at, data, gid,
 * run_id) to out, skipping a row without an event; run_id is the run's
 * when the rows do not have it. */
static void events_of_rows(const PGresult *r, const char *run_id, struct store_events *out)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct event_key k;
        const char *type = pg_cell_text(r, i, 1);
        const char *data = pg_cell_text(r, i, 4);

        if (PQgetisnull(r, i, 0))
            continue;
        k.run_id = run_id ? run_id : PQgetvalue(r, i, 6);
        k.step_id = pg_cell_text(r, i, 2);
        k.at_ms = pg_cell_int64(r, i, 3);
        store_events_push(out, &k, pg_cell_int64(r, i, 0), pg_cell_int64(r, i, 5), type ? type : "",
                          data ? xstrdup(data) : NULL);
    }
}

durable_code pg_events_read(struct store *base, const char *run_id, int64_t after_seq,
                            struct store_events *out, durable_error *err)
{
    char after[24];
    const char *params[2] = { run_id, after };
    const struct pg_query q = { "read a run's events", sql_events, 2, params };
    PGresult *r = NULL;
    durable_code rc;

    snprintf(after, sizeof(after), "%lld", (long long)after_seq);
    rc = pg_reads(pg_of(base), &q, 1, &r, err);
    if (rc == DURABLE_OK && PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK)
        events_of_rows(r, run_id, out);
    PQclear(r);
    return rc;
}

durable_code pg_events_since(struct store *base, int64_t after_gid, int limit,
                             struct store_events *out, durable_error *err)
{
    char after[24], lim[16];
    const char *params[2] = { after, lim };
    const struct pg_query q = { "read events", sql_events_since, 2, params };
    PGresult *r = NULL;
    durable_code rc;

    snprintf(after, sizeof(after), "%lld", (long long)after_gid);
    snprintf(lim, sizeof(lim), "%d", limit);
    rc = pg_reads(pg_of(base), &q, 1, &r, err);
    if (rc == DURABLE_OK)
        events_of_rows(r, NULL, out);
    PQclear(r);
    return rc;
}

/* ---- orders ---- */

/* An order from a row (id, amount, status, created_at, updated_at). */
static void order_row_of(const PGresult *r, int i, const struct store_row_fns *fn)
{
    struct order_row o = {
        .id = pg_cell_text(r, i, 0),
        .amount = strtod(PQgetvalue(r, i, 1), NULL),
        .status = pg_cell_text(r, i, 2),
        .created_at_ms = pg_cell_int64(r, i, 3),
        .updated_at_ms = pg_cell_int64(r, i, 4),
    };
    fn->order(fn->ud, &o);
}

durable_code pg_order_read(struct store *base, const char *order_id, const struct store_row_fns *fn,
                           durable_error *err)
{
    const char *params[1] = { order_id };
    const struct pg_query q = { "read an order", sql_order, 1, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    if (rc == DURABLE_OK && PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK)
        order_row_of(r, 0, fn);
    PQclear(r);
    return rc;
}

durable_code pg_kv_read(struct store *base, const char *key, char **out, durable_error *err)
{
    const char *params[1] = { key };
    const struct pg_query q = { "read a key", "SELECT value FROM kv WHERE key = $1", 1, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    *out = NULL;
    if (rc == DURABLE_OK && PQntuples(r) > 0)
        *out = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* A schedule's columns as schedule_of reads them. */
#define SCHED_COLS                                                                          \
    "id, workflow_name, cron, coalesce(every_ms, 0), tz, input, overlap, catch_up,"         \
    " catch_up_max, paused, anchor_at, coalesce(last_tick, 0), fired, skipped, created_at," \
    " updated_at, coalesce(last_run_id, '')"

static void schedule_of(const PGresult *r, int i, struct schedule_record *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(r, i, 0));
    out->workflow_name = xstrdup(PQgetvalue(r, i, 1));
    out->cron = PQgetisnull(r, i, 2) ? NULL : xstrdup(PQgetvalue(r, i, 2));
    out->every_ms = pg_cell_int64(r, i, 3);
    out->tz = xstrdup(PQgetvalue(r, i, 4));
    out->input_json = xstrdup(PQgetvalue(r, i, 5));
    out->overlap = xstrdup(PQgetvalue(r, i, 6));
    out->catch_up = xstrdup(PQgetvalue(r, i, 7));
    out->catch_up_max = (int)pg_cell_int64(r, i, 8);
    out->paused = strcmp(PQgetvalue(r, i, 9), "t") == 0;
    out->anchor_ms = pg_cell_int64(r, i, 10);
    out->last_tick_ms = pg_cell_int64(r, i, 11);
    out->fired = pg_cell_int64(r, i, 12);
    out->skipped = pg_cell_int64(r, i, 13);
    out->created_at_ms = pg_cell_int64(r, i, 14);
    out->updated_at_ms = pg_cell_int64(r, i, 15);
    snprintf(out->last_run_id, sizeof(out->last_run_id), "%s", PQgetvalue(r, i, 16));
}

durable_code pg_schedules_read(struct store *base, const char *id,
                               void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                               durable_error *err)
{
    const char *params[1] = { id };
    const struct pg_query q = { "read the schedules",
                                id ? "SELECT " SCHED_COLS " FROM schedules WHERE id = $1"
                                   : "SELECT " SCHED_COLS " FROM schedules ORDER BY created_at, id",
                                id ? 1 : 0, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    if (rc == DURABLE_OK && id && PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "schedule \"%s\" not found", id);
    for (int i = 0; rc == DURABLE_OK && i < PQntuples(r); i++) {
        struct schedule_record rec;

        schedule_of(r, i, &rec);
        fn(&rec, ud);
        schedule_record_release(&rec);
    }
    PQclear(r);
    return rc;
}

/* ---- pages ---- */

typedef void (*page_row_fn)(const PGresult *r, int i, const struct store_row_fns *fn);

/* Reads the total (q[0]) and the page (q[1]) in one snapshot, then hands
 * each row of the page to row. */
static durable_code page_read(struct pg_store *s, const struct pg_query q[2], page_row_fn row,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err)
{
    PGresult *res[2] = { NULL, NULL };
    durable_code rc = pg_reads(s, q, 2, res, err);

    if (rc == DURABLE_OK) {
        if (out_total)
            *out_total = PQntuples(res[0]) > 0 ? pg_cell_int64(res[0], 0, 0) : 0;
        for (int i = 0; i < PQntuples(res[1]); i++)
            row(res[1], i, fn);
    }
    pg_results_clear(res, 2);
    return rc;
}

/* The page's limit and offset as text parameters. */
struct page_params {
    char limit[16];
    char offset[16];
};

static void page_params_init(struct page_params *p, struct store_page page)
{
    snprintf(p->limit, sizeof(p->limit), "%d", page.limit);
    snprintf(p->offset, sizeof(p->offset), "%d", page.offset);
}

/* A time bound as a text parameter, NULL for none (0). */
static const char *time_param(int64_t ms, char buf[24])
{
    if (!ms)
        return NULL;
    snprintf(buf, 24, "%lld", (long long)ms);
    return buf;
}

durable_code pg_runs_page(struct store *base, const struct store_run_query *rq,
                          const struct store_row_fns *fn, int64_t *out_total, durable_error *err)
{
    struct page_params pp;
    char t[4][24];
    char path[STORE_INPUT_DEPTH * 67 + 4];
    size_t n = 0;
    const char *params[10] = {
        rq->status,
        rq->workflow,
        time_param(rq->created_after_ms, t[0]),
        time_param(rq->created_before_ms, t[1]),
        time_param(rq->finished_after_ms, t[2]),
        time_param(rq->finished_before_ms, t[3]),
        NULL,
        NULL,
        pp.limit,
        pp.offset,
    };
    const struct pg_query q[2] = {
        { "count runs", sql_runs_count, 8, params },
        { "list runs", sql_runs_page, 10, params },
    };

    if (rq->input_field) {
        /* Names are [A-Za-z0-9_-] (store_input_field_check), each quoted
         * (an unquoted NULL would be a null element). */
        n += (size_t)snprintf(path, sizeof(path), "{\"");
        for (const char *p = rq->input_field; *p && n + 5 < sizeof(path); p++) {
            if (*p == '.') {
                path[n++] = '"';
                path[n++] = ',';
                path[n++] = '"';
            } else {
                path[n++] = *p;
            }
        }
        snprintf(path + n, sizeof(path) - n, "\"}");
        params[6] = path;
        params[7] = rq->input_value;
    }
    page_params_init(&pp, rq->page);
    return page_read(pg_of(base), q, run_row_of, fn, out_total, err);
}

static void workflow_row_of(const PGresult *r, int i, const struct store_row_fns *fn)
{
    struct workflow_row w = {
        .id = pg_cell_text(r, i, 0),
        .name = pg_cell_text(r, i, 1),
        .version = cell_int(r, i, 2),
        .created_at_ms = pg_cell_int64(r, i, 3),
        .description = pg_cell_text(r, i, 4),
    };
    fn->workflow(fn->ud, &w);
}

durable_code pg_workflows_page(struct store *base, struct store_page page,
                               const struct store_row_fns *fn, int64_t *out_total,
                               durable_error *err)
{
    struct page_params pp;
    const char *params[2] = { pp.limit, pp.offset };
    const struct pg_query q[2] = {
        { "count workflows", sql_workflows_count, 0, NULL },
        { "list workflows", sql_workflows_page, 2, params },
    };

    page_params_init(&pp, page);
    return page_read(pg_of(base), q, workflow_row_of, fn, out_total, err);
}

durable_code pg_orders_page(struct store *base, struct store_page page,
                            const struct store_row_fns *fn, int64_t *out_total, durable_error *err)
{
    struct page_params pp;
    const char *params[2] = { pp.limit, pp.offset };
    const struct pg_query q[2] = {
        { "count orders", sql_orders_count, 0, NULL },
        { "list orders", sql_orders_page, 2, params },
    };

    page_params_init(&pp, page);
    return page_read(pg_of(base), q, order_row_of, fn, out_total, err);
}
