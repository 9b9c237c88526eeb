/*
 * purge.c - SQLite's deletions (store_rows_ops.runs_delete and
 * workflow_delete, backend.h): finished runs with their steps, events and
 * signals, and workflow versions no run uses. Inside the writer's open
 * transaction, like every row operation; the statements are prepared per
 * call (a deletion is a batch of runs, not a hot path).
 *
 * Global event ids come from max(gid) of events (sqlite.c), so deleting the
 * newest events would give their ids out again: before deleting, the last
 * id given out is kept in gid_floor (migration 9), which that max includes.
 *
 * Writer thread only.
 */
#include "util/common.h"

#include <stdint.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

#define FINISHED "(status = 'completed' OR status = 'failed' OR status = 'cancelled')"

/* The runs a purge selects: the finished ones, oldest finished first, by
 * the partial index runs_finished (migration 9). */
/* A retention pass (?6 now, ?7 the server's window or NULL): runs finished
 * before now minus their workflow version's window, or the server's for a
 * version without one. Its first bound, now minus the smallest window, is
 * a range of the index; no window at all selects nothing. */
#define RETAIN_BIG "9000000000000000"
#define RETAIN                                                                   \
    " AND (?6 IS NULL OR (completed_at < ?6 - min(coalesce(?7, " RETAIN_BIG ")," \
    " coalesce((SELECT min(retain_ms) FROM workflows), " RETAIN_BIG "))"         \
    " AND completed_at < ?6 - coalesce((SELECT w.retain_ms FROM workflows w"     \
    " WHERE w.id = runs.workflow_id), ?7)))"
#define WHERE                                                                        \
    " WHERE " FINISHED " AND completed_at < ?1"                                      \
    " AND (?2 IS NULL OR workflow_id IN (SELECT id FROM workflows WHERE name = ?2))" \
    " AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR id = ?4)" RETAIN
static const char sql_select[] = "SELECT id FROM runs" WHERE " ORDER BY completed_at LIMIT ?5";
static const char sql_count[] = "SELECT count(*) FROM runs" WHERE;
static const char *const sql_delete[] = {
    "DELETE FROM events WHERE run_id = ?1",
    "DELETE FROM steps WHERE run_id = ?1",
    "DELETE FROM signals WHERE run_id = ?1",
    "DELETE FROM runs WHERE id = ?1",
};
#define N_DELETE (sizeof(sql_delete) / sizeof(sql_delete[0]))

static durable_code db_fail(sqlite3 *db, const char *what, durable_error *err)
{
    return err_set(err, DURABLE_EIO, "could not %s: %s", what, sqlite3_errmsg(db));
}

static durable_code prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, durable_error *err)
{
    if (sqlite3_prepare_v2(db, sql, -1, out, NULL) != SQLITE_OK) {
        *out = NULL;
        return db_fail(db, "prepare a deletion", err);
    }
    return DURABLE_OK;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_query(sqlite3_stmt *st, const struct store_purge *q)
{
    sqlite3_bind_int64(st, 1, q->finished_before_ms);
    bind_text_or_null(st, 2, q->workflow);
    bind_text_or_null(st, 3, q->status);
    bind_text_or_null(st, 4, q->run_id);
    if (q->retain_now_ms > 0) {
        sqlite3_bind_int64(st, 6, q->retain_now_ms);
        if (q->retain_default_ms > 0)
            sqlite3_bind_int64(st, 7, q->retain_default_ms);
    }
}

/* The ids q selects, up to q->limit, into *ids (owned, ID_MAX each). */
static durable_code select_ids(sqlite3 *db, const struct store_purge *q, char (**ids)[ID_MAX],
                               size_t *n, durable_error *err)
{
    sqlite3_stmt *st;
    durable_code rc = prepare(db, sql_select, &st, err);
    int src;

    *ids = NULL;
    *n = 0;
    if (rc != DURABLE_OK)
        return rc;
    bind_query(st, q);
    sqlite3_bind_int(st, 5, q->limit);
    *ids = xmalloc((size_t)q->limit * sizeof(**ids));
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (*n < (size_t)q->limit && id && strlen(id) < ID_MAX)
            snprintf((*ids)[(*n)++], ID_MAX, "%s", id);
    }
    if (src != SQLITE_DONE)
        rc = db_fail(db, "choose the runs to delete", err);
    sqlite3_finalize(st);
    return rc;
}

static durable_code count_ids(sqlite3 *db, const struct store_purge *q, int64_t *out_n,
                              durable_error *err)
{
    sqlite3_stmt *st;
    durable_code rc = prepare(db, sql_count, &st, err);

    if (rc != DURABLE_OK)
        return rc;
    bind_query(st, q);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out_n = sqlite3_column_int64(st, 0);
    else
        rc = db_fail(db, "count the runs to delete", err);
    sqlite3_finalize(st);
    return rc;
}

static durable_code exec_id(sqlite3 *db, sqlite3_stmt *st, const char *id, durable_error *err)
{
    durable_code rc = DURABLE_OK;

    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(db, "delete a run", err);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Keeps the last global event id given out, so that deleting the newest
 * events does not give their ids out again. */
static durable_code keep_gid(struct sqlite_store *s, durable_error *err)
{
    sqlite3_stmt *st;
    durable_code rc = prepare(s->w.db,
                              "INSERT INTO gid_floor (one, gid) VALUES (1, ?1)"
                              " ON CONFLICT (one) DO UPDATE SET gid = max(gid, ?1)",
                              &st, err);

    if (rc != DURABLE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, s->last_gid);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(s->w.db, "keep the last event id", err);
    sqlite3_finalize(st);
    return rc;
}

durable_code sqlite_runs_delete(struct store *base, const struct store_purge *q,
                                void (*fn)(void *ud, const char *run_id), void *ud, int64_t *out_n,
                                durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *del[N_DELETE] = { NULL };
    char(*ids)[ID_MAX] = NULL;
    size_t n = 0;
    durable_code rc;

    *out_n = 0;
    if (q->dry_run)
        return count_ids(s->w.db, q, out_n, err);
    rc = select_ids(s->w.db, q, &ids, &n, err);
    if (rc == DURABLE_OK && n > 0)
        rc = keep_gid(s, err);
    for (size_t i = 0; rc == DURABLE_OK && i < N_DELETE && n > 0; i++)
        rc = prepare(s->w.db, sql_delete[i], &del[i], err);
    for (size_t i = 0; rc == DURABLE_OK && i < n; i++) {
        if (fn)
            fn(ud, ids[i]);
        for (size_t j = 0; rc == DURABLE_OK && j < N_DELETE; j++)
            rc = exec_id(s->w.db, del[j], ids[i], err);
    }
    for (size_t i = 0; i < N_DELETE; i++)
        sqlite3_finalize(del[i]);
    free(ids);
    store_seq_forget(s); /* a run numbered in this transaction may be gone */
    if (rc == DURABLE_OK)
        *out_n = (int64_t)n;
    return rc;
}

durable_code sqlite_workflow_delete(struct store *base, const char *name, int version,
                                    bool *out_found, bool *out_used, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st;
    durable_code rc;
    char id[ID_MAX] = "";

    *out_found = *out_used = false;
    rc = prepare(s->w.db,
                 "SELECT w.id, EXISTS (SELECT 1 FROM runs r WHERE r.workflow_id = w.id)"
                 " FROM workflows w WHERE w.name = ?1 AND w.version = ?2",
                 &st, err);
    if (rc != DURABLE_OK)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, version);
    switch (sqlite3_step(st)) {
    case SQLITE_ROW:
        *out_found = true;
        snprintf(id, sizeof(id), "%s", (const char *)sqlite3_column_text(st, 0));
        *out_used = sqlite3_column_int(st, 1) != 0;
        break;
    case SQLITE_DONE:
        break;
    default:
        rc = db_fail(s->w.db, "find a workflow version", err);
    }
    sqlite3_finalize(st);
    if (rc != DURABLE_OK || !*out_found || *out_used)
        return rc;
    rc = prepare(s->w.db, "DELETE FROM workflows WHERE id = ?1", &st, err);
    if (rc != DURABLE_OK)
        return rc;
    rc = exec_id(s->w.db, st, id, err);
    sqlite3_finalize(st);
    return rc;
}
