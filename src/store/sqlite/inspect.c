/*
 * inspect.c - the store seen from outside: a snapshot of every table for the
 * live DB viewer, counts by status for the metrics, and a health read.
 *
 * Any thread, through a read connection of the store's pool. The snapshot
 * reads all its tables in one read transaction, so that they agree with one
 * another (a run's steps and events are the run's). Its statements live in
 * sqlite.c like every other; `SELECT *` keeps the viewer true to the schema
 * as migrations change it, and test_store checks that every table of the
 * schema is in snapshot_tables below.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

#define SNAPSHOT_ROWS_DEFAULT 50
#define SNAPSHOT_ROWS_MAX     200

/* Every table of the schema, in the order the viewer shows them. */
static const struct snapshot_table {
    const char *name;
    enum stmt_id rows; /* newest first, LIMIT ?1 */
    enum stmt_id count;
} snapshot_tables[] = {
    { "workflows", ST_SNAP_WORKFLOWS, ST_WF_COUNT },
    { "runs", ST_SNAP_RUNS, ST_RUNS_COUNT },
    { "steps", ST_SNAP_STEPS, ST_SNAP_STEPS_COUNT },
    { "events", ST_SNAP_EVENTS, ST_SNAP_EVENTS_COUNT },
    { "signals", ST_SNAP_SIGNALS, ST_SNAP_SIGNALS_COUNT },
    { "orders", ST_SNAP_ORDERS, ST_ORDERS_COUNT },
    { "kv", ST_SNAP_KV, ST_SNAP_KV_COUNT },
    { "gid_floor", ST_SNAP_GID_FLOOR, ST_SNAP_GID_FLOOR_COUNT },
    { "schedules", ST_SNAP_SCHEDULES, ST_SNAP_SCHEDULES_COUNT },
    { "schema_version", ST_SNAP_SCHEMA_VERSION, ST_SNAP_SCHEMA_VERSION_COUNT },
};

/* ---- snapshot ---- */

static json_t *cell(sqlite3_stmt *st, int col)
{
    json_t *v = NULL;

    switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
        v = json_integer(sqlite3_column_int64(st, col));
        break;
    case SQLITE_FLOAT:
        v = json_real(sqlite3_column_double(st, col));
        break;
    case SQLITE_TEXT:
        v = store_snapshot_text(col_text(st, col), (size_t)sqlite3_column_bytes(st, col));
        break;
    case SQLITE_BLOB: {
        char desc[48];
        snprintf(desc, sizeof(desc), "(%d bytes)", sqlite3_column_bytes(st, col));
        v = json_string(desc);
        break;
    }
    default:
        break;
    }
    /* json_stringn refuses invalid UTF-8, which a damaged file may hold. */
    return v ? v : json_null();
}

static json_t *columns_of(sqlite3_stmt *st)
{
    json_t *cols = json_array();
    int i;

    for (i = 0; i < sqlite3_column_count(st); i++)
        json_array_append_new(cols, json_string(sqlite3_column_name(st, i)));
    return cols;
}

static durable_code table_rows(struct conn *c, const struct snapshot_table *t, int max_rows,
                               json_t *table, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    json_t *rows = json_array();
    bool has_row = true;
    durable_code rc = stmt_get(c, t->rows, &st, err, "i", max_rows);

    if (rc == DURABLE_OK)
        json_object_set_new(table, "columns", columns_of(st));
    while (rc == DURABLE_OK) {
        json_t *row;
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        row = json_array();
        for (int i = 0; i < sqlite3_column_count(st); i++)
            json_array_append_new(row, cell(st, i));
        json_array_append_new(rows, row);
    }
    stmt_release(st);
    json_object_set_new(table, "rows", rows);
    return rc;
}

static durable_code table_total(struct conn *c, const struct snapshot_table *t, json_t *table,
                                durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(c, t->count, &st, err, "");

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK)
        json_object_set_new(table, "total",
                            json_integer(has_row ? sqlite3_column_int64(st, 0) : 0));
    stmt_release(st);
    return rc;
}

/* Reads every table into tables, on the taken connection c. */
static durable_code snapshot_locked(struct conn *c, int max_rows, json_t *tables,
                                    durable_error *err)
{
    durable_code rc = store_read_begin(c, err);

    for (size_t i = 0; rc == DURABLE_OK && i < DUR_ARRAY_LEN(snapshot_tables); i++) {
        const struct snapshot_table *t = &snapshot_tables[i];
        json_t *table = json_pack("{s:s}", "name", t->name);
        rc = table_rows(c, t, max_rows, table, err);
        if (rc == DURABLE_OK)
            rc = table_total(c, t, table, err);
        json_array_append_new(tables, table);
    }
    store_read_end(c);
    return rc;
}

durable_code sqlite_snapshot_json(struct store *base, int rows_per_table, char **out,
                                  durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    json_t *tables = json_array();
    json_t *doc = json_pack("{s:o}", "tables", tables);
    int max_rows = store_clamp_limit(rows_per_table, SNAPSHOT_ROWS_DEFAULT, SNAPSHOT_ROWS_MAX);
    char *text = NULL;
    durable_code rc;

    c = store_reader_take(s);
    rc = snapshot_locked(c, max_rows, tables, err);
    store_reader_put(s, c);
    if (rc == DURABLE_OK) {
        text = json_dumps(doc, JSON_COMPACT);
        if (!text)
            rc = err_set(err, DURABLE_EIO, "could not encode the snapshot");
    }
    if (rc == DURABLE_OK)
        *out = text;
    json_decref(doc);
    return rc;
}

/* ---- counts by status ---- */

static durable_code count_by_status(struct sqlite_store *s, enum stmt_id id,
                                    const char *const *statuses, int64_t *out, size_t n,
                                    durable_error *err)
{
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc;

    memset(out, 0, n * sizeof(*out));
    c = store_reader_take(s);
    rc = stmt_get(c, id, &st, err, "");
    while (rc == DURABLE_OK) {
        const char *status;
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        status = col_text(st, 0);
        for (size_t i = 0; status && i < n; i++) {
            if (strcmp(status, statuses[i]) == 0)
                out[i] = sqlite3_column_int64(st, 1);
        }
    }
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}

durable_code sqlite_count_runs(struct store *base, int64_t out[STORE_N_RUN_STATUSES],
                               durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return count_by_status(s, ST_RUNS_BY_STATUS, store_run_statuses, out, STORE_N_RUN_STATUSES,
                           err);
}

durable_code sqlite_count_steps(struct store *base, int64_t out[STORE_N_STEP_STATUSES],
                                durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    return count_by_status(s, ST_STEPS_BY_STATUS, store_step_statuses, out, STORE_N_STEP_STATUSES,
                           err);
}

/* ---- health ---- */

durable_code sqlite_ping(struct store *base, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_PING, &st, err, "");
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_EIO, "could not read the database: no schema version");
    stmt_release(st);
    store_reader_put(s, c);
    return rc;
}
