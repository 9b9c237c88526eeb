/*
 * read.c - record reads from PostgreSQL: workflows, runs with their steps
 * (run_load, also what a claim hands the engine), the unfinished runs,
 * idempotency keys, statuses.
 *
 * Any thread. Each read is one round trip on a read connection taken for
 * it alone (pg_reads): a run and its steps, or a page of unfinished runs
 * and their workflows' definitions, are pipelined in one REPEATABLE READ
 * transaction, so they are of one snapshot. Records are copied out of the
 * results before any callback runs, so no connection is held while the
 * caller works and a callback may itself read the store.
 *
 * A run's steps are in step id order by bytes (COLLATE "C"), as SQLite's
 * primary key gives them, whatever the database's collation.
 */
#include "util/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_int.h"

/* How many runs (with their steps) pg_runs_unfinished reads per round trip. */
#define UNFINISHED_PAGE 256

#define UNFINISHED_R                                                                       \
    "(r.status = 'pending' OR r.status = 'running' OR r.status = 'waiting' OR r.status = " \
    "'paused')"

/* By id first, else the latest version of the name: one statement. */
static const char sql_workflow_get[] =
        "SELECT id, name, version, definition, created_at FROM workflows"
        " WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC, version DESC LIMIT 1";
/* The run columns of run_from_row (0-7), then definition, output, error. */
static const char sql_run_load[] =
        "SELECT r.id, r.workflow_id, r.status, r.input, r.order_id, r.created_at,"
        " r.deadline_at, o.amount, w.definition, r.output, r.error_message, r.priority"
        " FROM runs r JOIN workflows w ON w.id = r.workflow_id"
        " LEFT JOIN orders o ON o.id = r.order_id WHERE r.id = $1";
static const char sql_steps_load[] = "SELECT step_id, status, attempt, wake_at, started_at, output"
                                     " FROM steps WHERE run_id = $1 ORDER BY step_id COLLATE \"C\"";
/* The page of unfinished runs after ($1, $2), oldest first, $3 of them. */
#define UNFINISHED_PAGE_IDS                                               \
    "SELECT r.id FROM runs r WHERE " UNFINISHED_R                         \
    " AND (r.created_at, r.id) > ($1::bigint, $2) ORDER BY r.created_at," \
    " r.id LIMIT $3::integer"
/* Its runs with their steps (step columns 8-13 NULL for a run without). */
static const char sql_unfinished[] =
        "SELECT r.id, r.workflow_id, r.status, r.input, r.order_id, r.created_at,"
        " r.deadline_at, o.amount,"
        " s.step_id, s.status, s.attempt, s.wake_at, s.started_at, s.output, r.priority"
        " FROM runs r LEFT JOIN orders o ON o.id = r.order_id"
        " LEFT JOIN steps s ON s.run_id = r.id"
        " WHERE r.id IN (" UNFINISHED_PAGE_IDS ")"
        " ORDER BY r.created_at, r.id, s.step_id COLLATE \"C\"";
/* The definitions of its workflows, each once. */
static const char sql_unfinished_defs[] =
        "SELECT id, definition FROM workflows WHERE id IN"
        " (SELECT workflow_id FROM runs WHERE id IN (" UNFINISHED_PAGE_IDS "))";
/* A key names one run per workflow name, whatever its version (the runs_key
 * constraint, schema.c). */
static const char sql_run_by_key[] =
        "SELECT id FROM runs WHERE idempotency_key = $2"
        " AND workflow_name = (SELECT name FROM workflows WHERE id = $1)";
static const char sql_run_status[] = "SELECT status FROM runs WHERE id = $1";

/* An owned copy of a cell that should not be NULL ("" if it is). */
static char *cell_str(const PGresult *r, int row, int col)
{
    return xstrdup(PQgetvalue(r, row, col)); /* "" for NULL */
}

/* An owned copy of a cell, NULL when NULL. */
static char *cell_strdup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : xstrdup(PQgetvalue(r, row, col));
}

static void cell_copy_id(const PGresult *r, int row, int col, char out[ID_MAX])
{
    snprintf(out, ID_MAX, "%s", PQgetvalue(r, row, col));
}

/* ---- workflows ---- */

durable_code pg_workflow_get(struct store *base, const char *id_or_name,
                             struct workflow_record *out, durable_error *err)
{
    const char *params[1] = { id_or_name };
    const struct pg_query q = { "read a workflow", sql_workflow_get, 1, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    if (rc == DURABLE_OK && PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "workflow \"%s\" not found", id_or_name);
    if (rc == DURABLE_OK) {
        memset(out, 0, sizeof(*out));
        cell_copy_id(r, 0, 0, out->id);
        out->name = cell_str(r, 0, 1);
        out->version = (int)pg_cell_int64(r, 0, 2);
        out->definition = cell_str(r, 0, 3);
        out->created_at_ms = pg_cell_int64(r, 0, 4);
    }
    PQclear(r);
    return rc;
}

/* ---- runs ---- */

/* A stored status no build knows: the database is not one we wrote. */
static durable_code bad_status(const PGresult *r, int row, int col, const char *what,
                               durable_error *err)
{
    return err_set(err, DURABLE_EIO, "%s has an unknown status \"%s\"", what,
                   PQgetvalue(r, row, col));
}

/* Fills rec (a new record) from the run columns 0-7 of the row. */
static durable_code run_from_row(const PGresult *r, int row, struct run_record *rec,
                                 durable_error *err)
{
    cell_copy_id(r, row, 0, rec->id);
    cell_copy_id(r, row, 1, rec->workflow_id);
    if (!run_status_parse(PQgetvalue(r, row, 2), &rec->status))
        return bad_status(r, row, 2, "a run", err);
    rec->input_json = cell_str(r, row, 3);
    rec->order_id = cell_strdup(r, row, 4);
    rec->created_at_ms = pg_cell_int64(r, row, 5);
    rec->deadline_ms = pg_cell_int64(r, row, 6);
    rec->order_amount = PQgetisnull(r, row, 7) ? 0 : strtod(PQgetvalue(r, row, 7), NULL);
    return DURABLE_OK;
}

/* Appends the step of columns base to base + 5 of the row (step_id, status,
 * attempt, wake_at, started_at, output) to rec; *cap is its capacity. */
static durable_code step_add(const PGresult *r, int row, int base, struct run_record *rec,
                             size_t *cap, durable_error *err)
{
    struct step_record *sr;

    if (rec->n_steps == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        rec->steps = xrealloc(rec->steps, *cap * sizeof(*rec->steps));
    }
    sr = &rec->steps[rec->n_steps++];
    memset(sr, 0, sizeof(*sr));
    sr->step_id = cell_str(r, row, base);
    if (!step_status_parse(PQgetvalue(r, row, base + 1), &sr->status))
        return bad_status(r, row, base + 1, "a step", err);
    sr->attempt = (int)pg_cell_int64(r, row, base + 2);
    sr->wake_at_ms = pg_cell_int64(r, row, base + 3);
    sr->started_at_ms = pg_cell_int64(r, row, base + 4);
    sr->output_json = cell_strdup(r, row, base + 5);
    return DURABLE_OK;
}

durable_code pg_run_load(struct store *base, const char *run_id, struct run_record *out,
                         durable_error *err)
{
    const char *params[1] = { run_id };
    const struct pg_query q[2] = {
        { "read a run", sql_run_load, 1, params },
        { "read a run's steps", sql_steps_load, 1, params },
    };
    PGresult *res[2] = { NULL, NULL };
    struct run_record rec = { .n_steps = 0 };
    size_t cap = 0;
    durable_code rc = pg_reads(pg_of(base), q, 2, res, err);

    if (rc == DURABLE_OK && PQntuples(res[0]) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        rec.definition = cell_str(res[0], 0, 8);
        rec.output_json = cell_strdup(res[0], 0, 9);
        rec.error_message = cell_strdup(res[0], 0, 10);
        rec.priority = pg_cell_int64(res[0], 0, 11);
        rc = run_from_row(res[0], 0, &rec, err);
    }
    for (int i = 0; rc == DURABLE_OK && i < PQntuples(res[1]); i++)
        rc = step_add(res[1], i, 0, &rec, &cap, err);
    pg_results_clear(res, 2);
    if (rc == DURABLE_OK)
        *out = rec;
    else
        run_record_release(&rec);
    return rc;
}

/* One page of unfinished runs with their steps; the cursor is the
 * (created_at, id) of the last run read. Definitions are borrowed from the
 * page's result of sql_unfinished_defs ("" for a workflow that is missing:
 * the engine then reports the run as not resumable). */
struct unfinished_page {
    struct run_record *runs; /* UNFINISHED_PAGE of them */
    size_t n;
    PGresult *defs;
    int64_t cur_at;
    char cur_id[ID_MAX];
};

static void page_clear(struct unfinished_page *p)
{
    for (size_t i = 0; i < p->n; i++) {
        p->runs[i].definition = NULL; /* borrowed */
        run_record_release(&p->runs[i]);
    }
    p->n = 0;
    PQclear(p->defs);
    p->defs = NULL;
}

static char *page_definition(const struct unfinished_page *p, const char *workflow_id)
{
    for (int i = 0; i < PQntuples(p->defs); i++) {
        if (strcmp(PQgetvalue(p->defs, i, 0), workflow_id) == 0)
            return PQgetvalue(p->defs, i, 1);
    }
    return (char *)""; /* never written through: page_clear drops it */
}

/* Makes records of the rows of r (a run's rows are consecutive). */
static durable_code page_fill(struct unfinished_page *p, const PGresult *r, durable_error *err)
{
    struct run_record *rec = NULL;
    size_t cap = 0;
    durable_code rc = DURABLE_OK;

    for (int i = 0; rc == DURABLE_OK && i < PQntuples(r); i++) {
        if (!rec || strcmp(PQgetvalue(r, i, 0), rec->id) != 0) {
            if (p->n == UNFINISHED_PAGE)
                return err_set(err, DURABLE_EIO, "could not list unfinished runs: page overrun");
            rec = &p->runs[p->n++];
            cap = 0;
            rc = run_from_row(r, i, rec, err);
            rec->priority = pg_cell_int64(r, i, 14);
            rec->definition = page_definition(p, rec->workflow_id);
        }
        if (rc == DURABLE_OK && !PQgetisnull(r, i, 8))
            rc = step_add(r, i, 8, rec, &cap, err);
    }
    return rc;
}

/* Reads the page after the cursor and moves the cursor past it. */
static durable_code unfinished_page_read(struct pg_store *s, struct unfinished_page *p,
                                         durable_error *err)
{
    char at[24], limit[16];
    const char *params[3] = { at, p->cur_id, limit };
    const struct pg_query q[2] = {
        { "list unfinished runs", sql_unfinished, 3, params },
        { "read the workflows of unfinished runs", sql_unfinished_defs, 3, params },
    };
    PGresult *res[2] = { NULL, NULL };
    durable_code rc;

    snprintf(at, sizeof(at), "%lld", (long long)p->cur_at);
    snprintf(limit, sizeof(limit), "%d", UNFINISHED_PAGE);
    rc = pg_reads(s, q, 2, res, err);
    if (rc == DURABLE_OK) {
        p->defs = res[1];
        res[1] = NULL;
        rc = page_fill(p, res[0], err);
    }
    pg_results_clear(res, 2);
    if (rc == DURABLE_OK && p->n > 0) {
        p->cur_at = p->runs[p->n - 1].created_at_ms;
        memcpy(p->cur_id, p->runs[p->n - 1].id, ID_MAX);
    }
    return rc;
}

durable_code pg_runs_unfinished(struct store *base,
                                durable_code (*fn)(const struct run_record *r, void *ud), void *ud,
                                durable_error *err)
{
    struct unfinished_page p = { .cur_at = INT64_MIN };
    bool full;
    durable_code rc;

    p.runs = xcalloc(UNFINISHED_PAGE, sizeof(*p.runs));
    do {
        rc = unfinished_page_read(pg_of(base), &p, err);
        full = p.n == UNFINISHED_PAGE;
        for (size_t i = 0; rc == DURABLE_OK && i < p.n; i++)
            rc = fn(&p.runs[i], ud);
        page_clear(&p);
    } while (rc == DURABLE_OK && full);
    free(p.runs);
    return rc;
}

durable_code pg_run_find_by_key(struct store *base, const char *workflow_id, const char *key,
                                char out_run_id[ID_MAX], bool *out_found, durable_error *err)
{
    const char *params[2] = { workflow_id, key };
    const struct pg_query q = { "look up an idempotency key", sql_run_by_key, 2, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    if (rc == DURABLE_OK) {
        *out_found = PQntuples(r) > 0;
        if (*out_found)
            cell_copy_id(r, 0, 0, out_run_id);
    }
    PQclear(r);
    return rc;
}

durable_code pg_run_status(struct store *base, const char *run_id, enum run_status *out_status,
                           durable_error *err)
{
    const char *params[1] = { run_id };
    const struct pg_query q = { "read a run's status", sql_run_status, 1, params };
    PGresult *r = NULL;
    durable_code rc = pg_reads(pg_of(base), &q, 1, &r, err);

    if (rc == DURABLE_OK && PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK && !run_status_parse(PQgetvalue(r, 0, 0), out_status)) {
        rc = err_set(err, DURABLE_EIO, "run \"%s\" has an unknown status \"%s\"", run_id,
                     PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return rc;
}
