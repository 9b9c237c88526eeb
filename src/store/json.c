/*
 * json.c - the JSON documents of SPEC §6 read from the store: a run with its
 * steps, a run's events, an order.
 *
 * Any thread: each public function holds s->read_mu while it reads through
 * the read connection, builds the document with jansson and releases its
 * statements before unlocking. Times are RFC 3339 UTC with milliseconds, or
 * null when unset. Stored JSON text (input, output, depends_on, event data)
 * is parsed back into values; text that does not parse is a damaged
 * database and fails with DURABLE_EIO rather than being passed on.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

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

static durable_code steps_json(struct store *s, const char *run_id, json_t *steps,
                               durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = stmt_get(&s->r, ST_STEPS_JSON, &st, err, "s", run_id);

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

/* Fills run with the run's fields and steps; the caller holds read_mu. */
static durable_code run_json_locked(struct store *s, const char *run_id, json_t *run,
                                    durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    json_t *steps = json_array();
    durable_code rc = stmt_get(&s->r, ST_RUN_JSON, &st, err, "s", run_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    if (rc == DURABLE_OK)
        rc = run_row_json(st, run_id, run, err);
    stmt_release(st);
    if (rc == DURABLE_OK)
        rc = steps_json(s, run_id, steps, err);
    if (rc == DURABLE_OK)
        json_object_set(run, "steps", steps);
    json_decref(steps);
    return rc;
}

durable_code store_run_json(struct store *s, const char *run_id, char **out, durable_error *err)
{
    json_t *run = json_object();
    durable_code rc;

    store_read_lock(s);
    rc = run_json_locked(s, run_id, run, err);
    store_read_unlock(s);
    if (rc == DURABLE_OK)
        rc = dump(run, out, err);
    json_decref(run);
    return rc;
}

/* ---- events ---- */

static durable_code run_exists(struct store *s, const char *run_id, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->r, ST_RUN_STATUS, &st, err, "s", run_id);

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    stmt_release(st);
    return rc;
}

static durable_code event_row_json(sqlite3_stmt *st, const char *run_id, json_t *events,
                                   durable_error *err)
{
    json_t *data = NULL;
    json_t *ev;
    durable_code rc = col_json(st, 4, &data, "event data", run_id, err);

    if (rc == DURABLE_OK) {
        ev = json_object();
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

static durable_code events_json_locked(struct store *s, const char *run_id, int64_t after_seq,
                                       json_t *events, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = true;
    durable_code rc = run_exists(s, run_id, err);

    if (rc == DURABLE_OK) {
        rc = stmt_get(&s->r, ST_EVENTS_JSON, &st, err, "sI", run_id, after_seq);
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

durable_code store_events_json(struct store *s, const char *run_id, int64_t after_seq, char **out,
                               durable_error *err)
{
    json_t *events = json_array();
    durable_code rc;

    store_read_lock(s);
    rc = events_json_locked(s, run_id, after_seq, events, err);
    store_read_unlock(s);
    if (rc == DURABLE_OK)
        rc = dump(events, out, err);
    json_decref(events);
    return rc;
}

/* ---- orders ---- */

durable_code store_order_json(struct store *s, const char *order_id, char **out, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    json_t *order = json_object();
    durable_code rc;

    store_read_lock(s);
    rc = stmt_get(&s->r, ST_ORDER_JSON, &st, err, "s", order_id);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_ENOTFOUND, "order \"%s\" not found", order_id);
    if (rc == DURABLE_OK) {
        json_object_set_new(order, "id", col_string(st, 0));
        json_object_set_new(order, "amount", json_real(sqlite3_column_double(st, 1)));
        json_object_set_new(order, "status", col_string(st, 2));
        json_object_set_new(order, "created_at", col_time(st, 3));
        json_object_set_new(order, "updated_at", col_time(st, 4));
    }
    stmt_release(st);
    store_read_unlock(s);
    if (rc == DURABLE_OK)
        rc = dump(order, out, err);
    json_decref(order);
    return rc;
}
