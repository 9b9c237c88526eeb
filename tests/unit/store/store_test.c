/*
 * store_test.c - the fixture and helpers the store's tests share: a fresh
 * store per test, transitions applied the way the engine's writer applies
 * them, and reads of the store's JSON documents.
 *
 * setup opens the store at DURABLE_TEST_STORE when it is set (any backend's
 * location), else at a temporary SQLite file. A PostgreSQL URL there
 * (postgres://USER@HOST:PORT/DB) names a server: each test gets a fresh
 * database of its own on it, created beside DB and dropped at teardown.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_test.h"

const char *const wf_def = "{\"name\":\"shop\",\"steps\":[]}";

/* ---- helpers ---- */

/* Applies one transition in its own transaction; rolls back on failure. */
durable_code apply1(struct fixture *f, const struct transition *t, struct transition_result *res,
                    durable_error *err)
{
    durable_code rc = store_tx_begin(f->s, err);

    assert_int_equal(rc, DURABLE_OK);
    assert_int_equal(store_tx_prefetch(f->s, &t, 1, err), DURABLE_OK); /* as the writer */
    rc = store_apply(f->s, t, &f->ev, res, err);
    if (rc == DURABLE_OK)
        assert_int_equal(store_tx_commit(f->s, &f->ev, err), DURABLE_OK);
    else
        store_tx_rollback(f->s);
    return rc;
}

void apply_ok(struct fixture *f, const struct transition *t, struct transition_result *res)
{
    durable_error err = { DURABLE_OK, "" };
    durable_code rc = apply1(f, t, res, &err);

    if (rc != DURABLE_OK)
        fail_msg("transition %d failed: %s", (int)t->kind, err.msg);
}

void put_workflow(struct fixture *f, const char *name, const char *def,
                  struct transition_result *res)
{
    struct transition t = {
        .kind = TR_WORKFLOW_PUT, .at_ms = T0, .wf_name = name, .wf_definition = def
    };
    apply_ok(f, &t, res);
}

void create_order(struct fixture *f, const char *id, double amount)
{
    struct transition t = {
        .kind = TR_ORDER_CREATE, .at_ms = T0, .order_id = id, .order_amount = amount
    };
    apply_ok(f, &t, NULL);
}

/* Three steps a, b (after a), c; with an order and a key when given. */
void create_run(struct fixture *f, const char *run_id, const char *order_id, const char *key,
                struct transition_result *res)
{
    static const struct transition_step_init steps[] = {
        { "a", "task", 3, "[]" },
        { "b", "task", 1, "[\"a\"]" },
        { "c", "log", 1, NULL },
    };
    struct transition t = { .kind = TR_RUN_CREATE,
                            .at_ms = T0 + 1,
                            .run_id = run_id,
                            .workflow_id = f->wf_id,
                            .input_json = "{\"n\":1}",
                            .order_id = order_id,
                            .idempotency_key = key,
                            .steps = steps,
                            .n_steps = DUR_ARRAY_LEN(steps) };
    apply_ok(f, &t, res);
}

struct transition step_tr(enum transition_kind kind, const char *run_id, const char *step_id,
                          int attempt, int64_t at_ms)
{
    struct transition t = {
        .kind = kind, .at_ms = at_ms, .run_id = run_id, .step_id = step_id, .attempt = attempt
    };
    return t;
}

void step_ok(struct fixture *f, enum transition_kind kind, const char *run_id, const char *step_id,
             int attempt)
{
    struct transition t = step_tr(kind, run_id, step_id, attempt, T0 + 10);
    apply_ok(f, &t, NULL);
}

/* The run's events as parsed JSON (owned). */
json_t *events_of(struct fixture *f, const char *run_id, int64_t after)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    json_t *v;

    assert_int_equal(store_events_json(f->s, run_id, after, &text, &err), DURABLE_OK);
    v = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(v);
    assert_true(json_is_array(v));
    return v;
}

size_t event_count(struct fixture *f, const char *run_id)
{
    json_t *v = events_of(f, run_id, 0);
    size_t n = json_array_size(v);
    json_decref(v);
    return n;
}

/* Event seqs are exactly 1..n. */
void assert_seqs_dense(json_t *events)
{
    for (size_t i = 0; i < json_array_size(events); i++) {
        json_t *seq = json_object_get(json_array_get(events, i), "seq");
        assert_int_equal(json_integer_value(seq), (json_int_t)i + 1);
    }
}

const char *event_type(json_t *events, size_t i)
{
    return json_string_value(json_object_get(json_array_get(events, i), "type"));
}

json_t *doc_of(durable_code (*read)(struct store *, const char *, char **, durable_error *),
               struct fixture *f, const char *id)
{
    durable_error err = { DURABLE_OK, "" };
    char *text = NULL;
    json_t *v;

    if (read(f->s, id, &text, &err) != DURABLE_OK)
        fail_msg("read \"%s\": %s", id, err.msg);
    v = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(v);
    return v;
}

const char *step_field(json_t *run, const char *step_id, const char *field)
{
    json_t *steps = json_object_get(run, "steps");

    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_t *st = json_array_get(steps, i);
        if (strcmp(json_string_value(json_object_get(st, "step_id")), step_id) == 0)
            return json_string_value(json_object_get(st, field));
    }
    fail_msg("no step \"%s\"", step_id);
    return NULL;
}

void assert_run_status(struct fixture *f, const char *run_id, enum run_status want)
{
    durable_error err = { DURABLE_OK, "" };
    enum run_status status = RUN_PENDING;

    assert_int_equal(store_run_status(f->s, run_id, &status, &err), DURABLE_OK);
    assert_string_equal(run_status_name(status), run_status_name(want));
}

void assert_step_status(struct fixture *f, const char *run_id, const char *step_id,
                        enum step_status want)
{
    json_t *run = doc_of(store_run_json, f, run_id);
    assert_string_equal(step_field(run, step_id, "status"), step_status_name(want));
    json_decref(run);
}

const char *order_status(struct fixture *f, const char *order_id, char buf[32])
{
    json_t *o = doc_of(store_order_json, f, order_id);
    snprintf(buf, 32, "%s", json_string_value(json_object_get(o, "status")));
    json_decref(o);
    return buf;
}

/* ---- fixture ---- */

/* Runs one statement on the server of the PostgreSQL URL admin_url. */
static void pg_admin(const char *admin_url, const char *sql)
{
    PGconn *c = PQconnectdb(admin_url);
    PGresult *r;

    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", admin_url, PQerrorMessage(c));
    r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static bool is_pg(const char *location)
{
    return strncmp(location, "postgres://", 11) == 0 || strncmp(location, "postgresql://", 13) == 0;
}

/* A fresh database for the test on the server of the PostgreSQL URL env:
 * f->location is env with its database replaced. */
static void pg_fresh_database(struct fixture *f, const char *env)
{
    static int n;
    const char *slash = strrchr(env, '/');
    char sql[128];

    assert_non_null(slash);
    snprintf(f->pg_db, sizeof(f->pg_db), "durable_test_%ld_%d", (long)getpid(), ++n);
    snprintf(f->location, sizeof(f->location), "%.*s/%s", (int)(slash - env), env, f->pg_db);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_db);
    pg_admin(env, sql);
}

int setup_empty(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    const char *env = getenv("DURABLE_TEST_STORE");

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/durable-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/durable.db", f->dir);
    if (env && is_pg(env))
        pg_fresh_database(f, env);
    else
        snprintf(f->location, sizeof(f->location), "%s", env && env[0] ? env : f->path);
    *state = f;
    return 0;
}

int setup(void **state)
{
    durable_error err = { DURABLE_OK, "" };
    struct transition_result res;
    struct fixture *f;

    setup_empty(state);
    f = *state;
    assert_int_equal(store_open(store_test_location(f), DURABLE_DURABILITY_FULL, &f->s, &err),
                     DURABLE_OK);
    put_workflow(f, "shop", wf_def, &res);
    snprintf(f->wf_id, sizeof(f->wf_id), "%s", res.id);
    store_events_clear(&f->ev);
    return 0;
}

int teardown(void **state)
{
    struct fixture *f = *state;
    char p[160];

    store_close(f->s);
    store_events_release(&f->ev);
    unlink(f->path);
    snprintf(p, sizeof(p), "%s-wal", f->path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", f->path);
    unlink(p);
    assert_int_equal(rmdir(f->dir), 0);
    if (f->pg_db[0]) {
        snprintf(p, sizeof(p), "DROP DATABASE %s WITH (FORCE)", f->pg_db);
        pg_admin(getenv("DURABLE_TEST_STORE"), p);
    }
    free(f);
    return 0;
}

const char *store_test_location(const struct fixture *f)
{
    return f->location;
}

/* Parses *text (owned, freed) after a read returned rc. The text is passed
 * by address: the read that fills it is an argument of the same call. */
json_t *parse_out(durable_code rc, char **text, const durable_error *err)
{
    json_t *v;

    if (rc != DURABLE_OK)
        fail_msg("read failed: %s", err->msg);
    v = json_loads(*text, 0, NULL);
    free(*text);
    *text = NULL;
    assert_non_null(v);
    return v;
}
