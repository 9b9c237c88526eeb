/*
 * inspect.c - the PostgreSQL store seen from outside: a snapshot of every
 * table for the live DB viewer (the JSON shape of sqlite/inspect.c), and
 * counts by status for the metrics.
 *
 * Any thread, through a read connection of the pool. The snapshot reads
 * every table and its total in one round trip and one REPEATABLE READ
 * snapshot (pg_reads), so the tables agree with one another. `SELECT *`
 * keeps the viewer true to the schema as migrations change it; the test
 * checks that every table of the schema is in snapshot_tables. Cells are
 * typed by the column's type: integers and floats as numbers, booleans as
 * booleans, anything else as text cut at STORE_SNAPSHOT_CELL_MAX bytes.
 */
#include "util/common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_int.h"

#define SNAPSHOT_ROWS_DEFAULT 50
#define SNAPSHOT_ROWS_MAX     200

/* The type oids of PostgreSQL's catalog (pg_type.dat) that a cell shows
 * as other than text: fixed since PostgreSQL 7. */
#define OID_BOOL   16
#define OID_INT8   20
#define OID_INT2   21
#define OID_INT4   23
#define OID_FLOAT4 700
#define OID_FLOAT8 701

/* Every table of the schema, in the order the viewer shows them (SQLite's
 * first, then those of many nodes): newest rows first, $1 of them. */
static const struct snapshot_table {
    const char *name;
    const char *rows;
    const char *count;
} snapshot_tables[] = {
    { "workflows", "SELECT * FROM workflows ORDER BY created_at DESC, ord DESC LIMIT $1::integer",
      "SELECT count(*) FROM workflows" },
    { "runs", "SELECT * FROM runs ORDER BY created_at DESC, ord DESC LIMIT $1::integer",
      "SELECT count(*) FROM runs" },
    /* The steps of the newest runs first, each run's in definition order. */
    { "steps",
      "SELECT s.* FROM runs r JOIN steps s ON s.run_id = r.id"
      " ORDER BY r.created_at DESC, r.ord DESC, s.idx LIMIT $1::integer",
      "SELECT count(*) FROM steps" },
    { "events", "SELECT * FROM events ORDER BY gid DESC LIMIT $1::integer",
      "SELECT count(*) FROM events" },
    { "signals", "SELECT * FROM signals ORDER BY created_at DESC, id DESC LIMIT $1::integer",
      "SELECT count(*) FROM signals" },
    { "orders", "SELECT * FROM orders ORDER BY created_at DESC, ord DESC LIMIT $1::integer",
      "SELECT count(*) FROM orders" },
    { "kv", "SELECT * FROM kv ORDER BY updated_at DESC, key LIMIT $1::integer",
      "SELECT count(*) FROM kv" },
    { "schedules", "SELECT * FROM schedules ORDER BY created_at DESC, id LIMIT $1::integer",
      "SELECT count(*) FROM schedules" },
    { "schema_version", "SELECT * FROM schema_version ORDER BY version DESC LIMIT $1::integer",
      "SELECT count(*) FROM schema_version" },
    { "nodes", "SELECT * FROM nodes ORDER BY joined_at DESC, id LIMIT $1::integer",
      "SELECT count(*) FROM nodes" },
    { "event_counter", "SELECT * FROM event_counter LIMIT $1::integer",
      "SELECT count(*) FROM event_counter" },
    { "rate_slots", "SELECT * FROM rate_slots ORDER BY next_ms DESC, key LIMIT $1::integer",
      "SELECT count(*) FROM rate_slots" },
};
#define N_TABLES DUR_ARRAY_LEN(snapshot_tables)

/* ---- snapshot ---- */

static json_t *cell(const PGresult *r, int row, int col)
{
    const char *v = PQgetvalue(r, row, col);
    json_t *j = NULL;

    if (PQgetisnull(r, row, col))
        return json_null();
    switch (PQftype(r, col)) {
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
        j = json_integer(strtoll(v, NULL, 10));
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
        j = json_real(strtod(v, NULL));
        break;
    case OID_BOOL:
        j = json_boolean(v[0] == 't');
        break;
    default:
        j = store_snapshot_text(v, (size_t)PQgetlength(r, row, col));
        break;
    }
    /* json_stringn refuses invalid UTF-8 (a database not in UTF8); json_real
     * refuses NaN and infinities. */
    return j ? j : json_null();
}

/* The table's columns, rows and total from its two results. */
static json_t *table_json(const struct snapshot_table *t, const PGresult *rows,
                          const PGresult *count)
{
    json_t *cols = json_array();
    json_t *list = json_array();

    for (int c = 0; c < PQnfields(rows); c++)
        json_array_append_new(cols, json_string(PQfname(rows, c)));
    for (int i = 0; i < PQntuples(rows); i++) {
        json_t *row = json_array();
        for (int c = 0; c < PQnfields(rows); c++)
            json_array_append_new(row, cell(rows, i, c));
        json_array_append_new(list, row);
    }
    return json_pack("{s:s, s:o, s:o, s:I}", "name", t->name, "columns", cols, "rows", list,
                     "total", (json_int_t)pg_cell_int64(count, 0, 0));
}

durable_code pg_snapshot_json(struct store *base, int rows_per_table, char **out,
                              durable_error *err)
{
    char limit[16];
    const char *params[1] = { limit };
    struct pg_query q[2 * N_TABLES];
    PGresult *res[2 * N_TABLES];
    json_t *tables = json_array();
    json_t *doc = json_pack("{s:o}", "tables", tables);
    durable_code rc;

    snprintf(limit, sizeof(limit), "%d",
             store_clamp_limit(rows_per_table, SNAPSHOT_ROWS_DEFAULT, SNAPSHOT_ROWS_MAX));
    for (size_t i = 0; i < N_TABLES; i++) {
        q[2 * i] = (struct pg_query){ "read a table", snapshot_tables[i].rows, 1, params };
        q[2 * i + 1] = (struct pg_query){ "count a table", snapshot_tables[i].count, 0, NULL };
    }
    rc = pg_reads(pg_of(base), q, 2 * N_TABLES, res, err);
    for (size_t i = 0; rc == DURABLE_OK && i < N_TABLES; i++)
        json_array_append_new(tables, table_json(&snapshot_tables[i], res[2 * i], res[2 * i + 1]));
    pg_results_clear(res, 2 * N_TABLES);
    if (rc == DURABLE_OK) {
        *out = json_dumps(doc, JSON_COMPACT);
        if (!*out)
            rc = err_set(err, DURABLE_EIO, "could not encode the snapshot");
    }
    json_decref(doc);
    return rc;
}

/* ---- counts by status ---- */

static durable_code count_by_status(struct pg_store *s, const struct pg_query *q,
                                    const char *const *statuses, int64_t *out, size_t n,
                                    durable_error *err)
{
    PGresult *r = NULL;
    durable_code rc = pg_reads(s, q, 1, &r, err);

    memset(out, 0, n * sizeof(*out));
    for (int row = 0; rc == DURABLE_OK && row < PQntuples(r); row++) {
        const char *status = PQgetvalue(r, row, 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(status, statuses[i]) == 0)
                out[i] = pg_cell_int64(r, row, 1);
        }
    }
    PQclear(r);
    return rc;
}

durable_code pg_count_runs(struct store *base, int64_t out[STORE_N_RUN_STATUSES],
                           durable_error *err)
{
    static const struct pg_query q = { "count runs by status",
                                       "SELECT status, count(*) FROM runs GROUP BY status", 0,
                                       NULL };

    return count_by_status(pg_of(base), &q, store_run_statuses, out, STORE_N_RUN_STATUSES, err);
}

durable_code pg_count_steps(struct store *base, int64_t out[STORE_N_STEP_STATUSES],
                            durable_error *err)
{
    static const struct pg_query q = { "count steps by status",
                                       "SELECT status, count(*) FROM steps GROUP BY status", 0,
                                       NULL };

    return count_by_status(pg_of(base), &q, store_step_statuses, out, STORE_N_STEP_STATUSES, err);
}
