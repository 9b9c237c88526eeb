/*
 * read.c - record reads through the read connections: workflows, runs with
 * their steps, the unfinished runs for recovery, idempotency keys, statuses.
 *
 * Any thread. Each public function takes a read connection for the time of
 * its SQL only, and releases every statement before giving it back, so
 * that no read snapshot outlives the call (a long-lived snapshot would stop
 * WAL checkpoints). store_runs_unfinished pages through the runs by
 * (created_at, id) and never holds a connection while it calls back, so
 * that the callback may itself read the store.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

/* How many run ids store_runs_unfinished reads per page. */
#define UNFINISHED_PAGE 256

/* An owned copy of a column that should not be NULL ("" if it is). */
static char *col_str(sqlite3_stmt *st, int col)
{
    char *v = col_strdup(st, col);
    return v ? v : xstrdup("");
}

/* ---- workflows ---- */

void workflow_record_release(struct workflow_record *w)
{
    if (!w)
        return;
    free(w->name);
    free(w->definition);
    memset(w, 0, sizeof(*w));
}

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

durable_code store_workflow_get(struct store *s, const char *id_or_name,
                                struct workflow_record *out, durable_error *err)
{
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

void run_record_release(struct run_record *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->n_steps; i++) {
        free(r->steps[i].step_id);
        free(r->steps[i].status);
        free(r->steps[i].output_json);
    }
    free(r->steps);
    free(r->definition);
    free(r->status);
    free(r->input_json);
    free(r->order_id);
    memset(r, 0, sizeof(*r));
}

static void step_from_row(sqlite3_stmt *st, struct step_record *sr)
{
    sr->step_id = col_str(st, 0);
    sr->status = col_str(st, 1);
    sr->attempt = sqlite3_column_int(st, 2);
    sr->wake_at_ms = sqlite3_column_int64(st, 3);
    sr->started_at_ms = sqlite3_column_int64(st, 4);
    sr->output_json = col_strdup(st, 5);
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
        step_from_row(st, &r->steps[r->n_steps++]);
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
        col_copy_id(st, 0, r->id);
        col_copy_id(st, 1, r->workflow_id);
        r->definition = col_str(st, 2);
        r->status = col_str(st, 3);
        r->input_json = col_str(st, 4);
        r->order_id = col_strdup(st, 5);
        r->created_at_ms = sqlite3_column_int64(st, 6);
        r->deadline_ms = sqlite3_column_int64(st, 7);
        r->order_amount = sqlite3_column_double(st, 8);
    }
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = steps_load(c, run_id, r, err);
    store_read_end(c);
    return rc;
}

durable_code store_run_load(struct store *s, const char *run_id, struct run_record *out,
                            durable_error *err)
{
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

/* Reads the next page of unfinished run ids after the cursor (at, id), and
 * moves the cursor to the last one read. */
static durable_code unfinished_page(struct store *s, int64_t *cur_at, char cur_id[ID_MAX],
                                    char (*ids)[ID_MAX], size_t *out_n, durable_error *err)
{
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    int64_t last_at = *cur_at;
    size_t n = 0;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_RUNS_UNFINISHED, &st, err, "Isi", *cur_at, cur_id, UNFINISHED_PAGE);
    while (rc == DURABLE_OK && n < UNFINISHED_PAGE) {
        rc = stmt_step(st, &has_row, err);
        if (rc != DURABLE_OK || !has_row)
            break;
        col_copy_id(st, 0, ids[n++]);
        last_at = sqlite3_column_int64(st, 1);
    }
    stmt_release(st); /* before cur_id, bound without a copy, changes */
    store_reader_put(s, c);
    if (rc == DURABLE_OK && n > 0) {
        *cur_at = last_at;
        memcpy(cur_id, ids[n - 1], ID_MAX);
    }
    *out_n = rc == DURABLE_OK ? n : 0;
    return rc;
}

/* Loads one listed run and calls fn if it is still unfinished. */
static durable_code visit_run(struct store *s, const char *run_id,
                              durable_code (*fn)(const struct run_record *r, void *ud), void *ud,
                              durable_error *err)
{
    struct run_record r;
    durable_error load_err = { DURABLE_OK, "" };
    durable_code rc = store_run_load(s, run_id, &r, &load_err);

    if (rc == DURABLE_ENOTFOUND)
        return DURABLE_OK;
    if (rc != DURABLE_OK)
        return err_set(err, rc, "%s", load_err.msg);
    if (!store_run_status_is_finished(r.status))
        rc = fn(&r, ud);
    run_record_release(&r);
    return rc;
}

durable_code store_runs_unfinished(struct store *s,
                                   durable_code (*fn)(const struct run_record *r, void *ud),
                                   void *ud, durable_error *err)
{
    char(*ids)[ID_MAX] = xmalloc(UNFINISHED_PAGE * sizeof(*ids));
    char cur_id[ID_MAX] = "";
    int64_t cur_at = INT64_MIN;
    size_t n = 0;
    durable_code rc;

    do {
        rc = unfinished_page(s, &cur_at, cur_id, ids, &n, err);
        for (size_t i = 0; rc == DURABLE_OK && i < n; i++)
            rc = visit_run(s, ids[i], fn, ud, err);
    } while (rc == DURABLE_OK && n == UNFINISHED_PAGE);
    free(ids);
    return rc;
}

durable_code store_run_find_by_key(struct store *s, const char *workflow_id, const char *key,
                                   char out_run_id[ID_MAX], bool *out_found, durable_error *err)
{
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

durable_code store_run_status(struct store *s, const char *run_id, const char **out_status,
                              durable_error *err)
{
    struct conn *c;
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    const char *status = NULL;
    durable_code rc;

    c = store_reader_take(s);
    rc = stmt_get(c, ST_RUN_STATUS, &st, err, "s", run_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK) {
        status = store_run_status_static(col_text(st, 0));
        if (!status) {
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
