/*
 * read.c - record reads through the read connections: workflows, runs with
 * their steps, the unfinished runs for recovery, idempotency keys, statuses.
 *
 * Any thread. Each public function takes a read connection for the time of
 * its SQL only, and releases every statement before giving it back, so
 * that no read snapshot outlives the call (a long-lived snapshot would stop
 * WAL checkpoints). store_runs_unfinished reads pages of runs with their
 * steps, one statement per page, by (created_at, id), and never holds a
 * connection while it calls back, so that the callback may itself read the
 * store.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

/* How many runs (with their steps) store_runs_unfinished reads per page,
 * that is, per read connection taken. */
#define UNFINISHED_PAGE 256

/* An owned copy of a column that should not be NULL ("" if it is). */
static char *col_str(sqlite3_stmt *st, int col)
{
    char *v = col_strdup(st, col);
    return v ? v : xstrdup("");
}

/* ---- workflows ---- */

static durable_code workflow_get_by(struct conn *c, enum stmt_id id, const char *key,
                                    struct workflow_record *out, bool *out_found,
                                    durable_error *err)
{
    sqlite3_stmt *st = NULL;
    durable_code rc = stmt_get(c, id, &st, err, "s", key);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, out_found, err);
    if (rc == DURABLE_OK && *out_found) {
        col_copy_id(st, 0, out->id);
        out->name = col_str(st, 1);
        out->version = sqlite3_column_int(st, 2);
        out->definition = col_str(st, 3);
        out->created_at_ms = sqlite3_column_int64(st, 4);
    }
    stmt_release(st);
    return rc;
}

durable_code sqlite_workflow_get(struct store *base, const char *id_or_name,
                                 struct workflow_record *out, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    struct workflow_record w = { .version = 0 };
    bool found = false;
    durable_code rc;

    c = store_reader_take(s);
    rc = store_read_begin(c, err); /* by id, then by name: one WAL read lock */
    if (rc == DURABLE_OK)
        rc = workflow_get_by(c, ST_WF_BY_ID, id_or_name, &w, &found, err);
    if (rc == DURABLE_OK && !found)
        rc = workflow_get_by(c, ST_WF_BY_NAME, id_or_name, &w, &found, err);
    store_read_end(c);
    store_reader_put(s, c);
    if (rc == DURABLE_OK && !found)
        rc = err_set(err, DURABLE_ENOTFOUND, "workflow \"%s\" not found", id_or_name);
    if (rc == DURABLE_OK)
        *out = w;
    else
        workflow_record_release(&w);
    return rc;
}

/* ---- runs ---- */

/* A stored status no build knows: the database is not one we wrote. */
static durable_code bad_status(sqlite3_stmt *st, int col, const char *what, durable_error *err)
{
    const char *text = col_text(st, col);

    return err_set(err, DURABLE_EIO, "%s has an unknown status \"%s\"", what, text ? text : "");
}

/* Fills r (a new record) from the run columns 0-7 of the row. */
static durable_code run_from_row(sqlite3_stmt *st, struct run_record *r, durable_error *err)
{
    col_copy_id(st, 0, r->id);
    col_copy_id(st, 1, r->workflow_id);
    if (!run_status_parse(col_text(st, 2), &r->status))
        return bad_status(st, 2, "a run", err);
    r->input_json = col_str(st, 3);
    r->order_id = col_strdup(st, 4);
    r->created_at_ms = sqlite3_column_int64(st, 5);
    r->deadline_ms = sqlite3_column_int64(st, 6);
    r->order_amount = sqlite3_column_double(st, 7);
    return DURABLE_OK;
}

/* Fills sr from the step columns base to base + 5 of the row (step_id,
 * status, attempt, wake_at, started_at, output). */
static durable_code step_from_row(sqlite3_stmt *st, int base, struct step_record *sr,
                                  durable_error *err)
{
    sr->step_id = col_str(st, base);
    if (!step_status_parse(col_text(st, base + 1), &sr->status))
        return bad_status(st, base + 1, "a step", err);
    sr->attempt = sqlite3_column_int(st, base + 2);
    sr->wake_at_ms = sqlite3_column_int64(st, base + 3);
    sr->started_at_ms = sqlite3_column_int64(st, base + 4);
    sr->output_json = col_strdup(st, base + 5);
    return DURABLE_OK;
}

static durable_code steps_load(struct conn *c, const char *run_id, struct run_record *r,
                               durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    size_t cap = 0;
    durable_code rc = stmt_get(c, ST_STEPS_LOAD, &st, err, "s", run_id);

    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        if (r->n_steps == cap) {
            cap = cap ? cap * 2 : 8;
            r->steps = xrealloc(r->steps, cap * sizeof(*r->steps));
        }
        rc = step_from_row(st, 0, &r->steps[r->n_steps++], err);
    }
    stmt_release(st);
    return rc;
}

/* Loads the run and its steps in one read transaction, on c. */
static durable_code run_load_locked(struct conn *c, const char *run_id, struct run_record *r,
                                    durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = store_read_begin(c, err);

    if (rc == DURABLE_OK)
        rc = stmt_get(c, ST_RUN_LOAD, &st, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        r->definition = col_str(st, 8);
        r->output_json = col_strdup(st, 9);
        r->error_message = col_strdup(st, 10);
        r->priority = sqlite3_column_int64(st, 11);
        rc = run_from_row(st, r, err);
    }
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = steps_load(c, run_id, r, err);
    store_read_end(c);
    return rc;
}

durable_code sqlite_run_load(struct store *base, const char *run_id, struct run_record *out,
                             durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    struct run_record r = { .n_steps = 0 };
    durable_code rc;

    c = store_reader_take(s);
    rc = run_load_locked(c, run_id, &r, err);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        *out = r;
    else
        run_record_release(&r);
    return rc;
}

/* The definitions of the workflows met by one store_runs_unfinished call,
 * each read once: the runs of a workflow share its text. */
struct wf_defs {
    struct workflow_record *v;
    size_t n;
};

static void wf_defs_release(struct wf_defs *defs)
{
    for (size_t i = 0; i < defs->n; i++)
        workflow_record_release(&defs->v[i]);
    free(defs->v);
    memset(defs, 0, sizeof(*defs));
}

/* Workflow id's definition text, borrowed from defs ("" when the workflow
 * is missing: the engine then reports the run as not resumable). Reads the
 * workflow on first sight through c, the caller's read connection. */
static durable_code wf_defs_get(struct conn *c, struct wf_defs *defs, const char *workflow_id,
                                char **out, durable_error *err)
{
    struct workflow_record w = { .version = 0 };
    bool found = false;
    durable_code rc;

    for (size_t i = 0; i < defs->n; i++) {
        if (strcmp(defs->v[i].id, workflow_id) == 0) {
            *out = defs->v[i].definition;
            return DURABLE_OK;
        }
    }
    rc = workflow_get_by(c, ST_WF_BY_ID, workflow_id, &w, &found, err);
    if (rc != DURABLE_OK) {
        workflow_record_release(&w);
        return rc;
    }
    if (!found) {
        snprintf(w.id, sizeof(w.id), "%s", workflow_id);
        w.definition = xstrdup("");
    }
    defs->v = xrealloc(defs->v, (defs->n + 1) * sizeof(*defs->v));
    defs->v[defs->n++] = w;
    *out = w.definition;
    return DURABLE_OK;
}

/* One page of unfinished runs with their steps, and the cursor: the
 * (created_at, id) of the last run read. The records' definitions are
 * borrowed from a struct wf_defs. */
struct unfinished_page {
    struct run_record *runs; /* UNFINISHED_PAGE of them */
    size_t n;
    bool has_more;
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
}

/* Adds the row's step (columns 8-13) to r, if the row has one. */
static durable_code add_step_from_row(sqlite3_stmt *st, struct run_record *r, size_t *cap,
                                      durable_error *err)
{
    if (sqlite3_column_type(st, 8) == SQLITE_NULL)
        return DURABLE_OK;
    if (r->n_steps == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        r->steps = xrealloc(r->steps, *cap * sizeof(*r->steps));
    }
    return step_from_row(st, 8, &r->steps[r->n_steps++], err);
}

/* Reads the next page: up to UNFINISHED_PAGE runs after the cursor with all
 * their steps, in one statement, and moves the cursor past them. Stepping
 * stops at the first row of the run after a full page, which the next page
 * reads again. */
static durable_code unfinished_page_read(struct sqlite_store *s, struct wf_defs *defs,
                                         struct unfinished_page *p, durable_error *err)
{
    struct conn *c;
    sqlite3_stmt *st = NULL;
    struct run_record *r = NULL;
    bool has_row = true;
    size_t cap = 0;
    durable_code rc;

    p->has_more = false;
    c = store_reader_take(s);
    rc = stmt_get(c, ST_RUNS_UNFINISHED, &st, err, "Is", p->cur_at, p->cur_id);
    while (rc == DURABLE_OK) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        if (!r || strcmp(col_text(st, 0) ? col_text(st, 0) : "", r->id) != 0) {
            if (p->n == UNFINISHED_PAGE) {
                p->has_more = true;
                break;
            }
            r = &p->runs[p->n++];
            cap = 0;
            rc = run_from_row(st, r, err);
            r->priority = sqlite3_column_int64(st, 14);
            if (rc == DURABLE_OK)
                rc = wf_defs_get(c, defs, r->workflow_id, &r->definition, err);
        }
        if (rc == DURABLE_OK)
            rc = add_step_from_row(st, r, &cap, err);
    }
    stmt_release(st); /* before cur_id, bound without a copy, changes */
    store_reader_put(s, c);
    if (rc == DURABLE_OK && p->n > 0) {
        p->cur_at = p->runs[p->n - 1].created_at_ms;
        memcpy(p->cur_id, p->runs[p->n - 1].id, ID_MAX);
    }
    return rc;
}

durable_code sqlite_runs_unfinished(struct store *base,
                                    durable_code (*fn)(const struct run_record *r, void *ud),
                                    void *ud, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct unfinished_page p = { .cur_at = INT64_MIN };
    struct wf_defs defs = { NULL, 0 };
    durable_code rc;

    p.runs = xcalloc(UNFINISHED_PAGE, sizeof(*p.runs));
    do {
        rc = unfinished_page_read(s, &defs, &p, err);
        for (size_t i = 0; rc == DURABLE_OK && i < p.n; i++)
            rc = fn(&p.runs[i], ud);
        page_clear(&p);
    } while (rc == DURABLE_OK && p.has_more);
    free(p.runs);
    wf_defs_release(&defs);
    return rc;
}

durable_code sqlite_run_find_by_key(struct store *base, const char *workflow_id, const char *key,
                                    char out_run_id[ID_MAX], bool *out_found, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool found = false;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_RUN_BY_KEY, &st, err, "ss", workflow_id, key);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &found, err);
    if (rc == DURABLE_OK && found)
        col_copy_id(st, 0, out_run_id);
    stmt_release(st);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        *out_found = found;
    return rc;
}

durable_code sqlite_run_status(struct store *base, const char *run_id, enum run_status *out_status,
                               durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    enum run_status status = RUN_PENDING;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_RUN_STATUS, &st, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        if (!run_status_parse(col_text(st, 0), &status)) {
            rc = err_set(err, DURABLE_EIO, "run \"%s\" has an unknown status \"%s\"", run_id,
                         col_text(st, 0) ? col_text(st, 0) : "");
        }
    }
    stmt_release(st);
    store_reader_put(s, c);
    if (rc == DURABLE_OK)
        *out_status = status;
    return rc;
}
