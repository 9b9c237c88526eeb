/*
 * test_store_sqlite.c - the SQLite backend's own tests, beside the
 * conformance suite (test_store.c): migrations (from an empty file and from
 * the version-1 schema), a newer schema refused, PRAGMAs, the DB snapshot
 * against sqlite_master, and EXPLAIN of the writer's statements. They read
 * the file through a raw SQLite connection where the store offers no read.
 */
#include "util/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"
#include "store/store.h"

#include "store_test.h"

static sqlite3 *raw_open(struct fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    return db;
}

static int raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int v;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_migrate_from_empty_and_reopen(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    sqlite3 *db;

    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    store_close(f->s);
    f->s = NULL;
    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    db = raw_open(f);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(raw_int(db, "SELECT version FROM schema_version"), sqlite_schema_version());
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                 " AND name IN ('workflows', 'runs', 'steps', 'events',"
                                 " 'orders')"),
                     5);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM pragma_journal_mode"
                                 " WHERE journal_mode = 'wal'"),
                     1);
    sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store *s2 = (struct store *)f;
    int newer = sqlite_schema_version() + 1;
    char want[128];
    char sql[64];
    sqlite3 *db;

    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    store_close(f->s);
    f->s = NULL;
    db = raw_open(f);
    snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", newer);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_not_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &s2, &err), DURABLE_OK);
    assert_null(s2);
    snprintf(want, sizeof(want), "database schema version %d is newer than this durable (knows %d)",
             newer, sqlite_schema_version());
    assert_string_equal(err.msg, want);
}

static void test_open_not_a_database(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct store *s = NULL;
    FILE *fp = fopen(f->path, "w");
    char want[200];

    assert_non_null(fp);
    fputs("this is not a database, not even close; it is a text file of some length\n", fp);
    fclose(fp);
    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &s, &err), DURABLE_EIO);
    assert_null(s);
    snprintf(want, sizeof(want), "could not open database \"%s\": file is not a database", f->path);
    assert_string_equal(err.msg, want);
}

static void test_durability_pragma(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    int level = -1;

    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    assert_int_equal(store_synchronous(f->s, &level, &err), DURABLE_OK);
    assert_int_equal(level, 2); /* FULL */
    store_close(f->s);
    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_PROCESS, &f->s, &err), DURABLE_OK);
    assert_int_equal(store_synchronous(f->s, &level, &err), DURABLE_OK);
    assert_int_equal(level, 1); /* NORMAL */
}

/* The schema as version 1 wrote it, frozen here: a migration is tested
 * against the database an older build left, not against today's code. */
static const char v1_schema[] =
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "INSERT INTO schema_version VALUES (1);"
        "CREATE TABLE workflows ("
        "  id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,"
        "  definition TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (name, version));"
        "CREATE TABLE orders ("
        "  id TEXT PRIMARY KEY, amount REAL NOT NULL, status TEXT NOT NULL,"
        "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
        "CREATE TABLE runs ("
        "  id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL REFERENCES workflows (id),"
        "  status TEXT NOT NULL, input TEXT NOT NULL, output TEXT,"
        "  order_id TEXT REFERENCES orders (id), idempotency_key TEXT, error_message TEXT,"
        "  created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER,"
        "  deadline_at INTEGER, last_seq INTEGER NOT NULL DEFAULT 0,"
        "  UNIQUE (workflow_id, idempotency_key));"
        "CREATE INDEX runs_status ON runs (status, created_at);"
        "CREATE INDEX runs_created ON runs (created_at);"
        "CREATE INDEX runs_unfinished ON runs (created_at, id)"
        "  WHERE status IN ('pending', 'running', 'waiting');"
        "CREATE TABLE steps ("
        "  run_id TEXT NOT NULL REFERENCES runs (id), idx INTEGER NOT NULL,"
        "  step_id TEXT NOT NULL, type TEXT NOT NULL, status TEXT NOT NULL,"
        "  attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
        "  depends_on TEXT NOT NULL, idempotency_key TEXT NOT NULL,"
        "  started_at INTEGER, completed_at INTEGER, wake_at INTEGER,"
        "  error_message TEXT, error_code TEXT, output TEXT,"
        "  PRIMARY KEY (run_id, step_id)) WITHOUT ROWID;"
        "CREATE INDEX steps_status ON steps (run_id, status);"
        "CREATE TABLE events ("
        "  run_id TEXT NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,"
        "  type TEXT NOT NULL, step_id TEXT, at INTEGER NOT NULL, data TEXT NOT NULL,"
        "  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;"
        /* Two runs whose histories interleave in time; run_b's third event
         * carries an earlier time than its second (clocks are not ordered). */
        "INSERT INTO workflows VALUES ('wf_1', 'shop', 1, '{\"name\":\"shop\",\"steps\":[]}', 1);"
        "INSERT INTO runs (id, workflow_id, status, input, created_at, last_seq)"
        "  VALUES ('run_a', 'wf_1', 'running', '{}', 10, 3), ('run_b', 'wf_1', 'running', '{}', 20, 3);"
        "INSERT INTO steps (run_id, idx, step_id, type, status, attempt, max_attempts, depends_on,"
        "  idempotency_key) VALUES ('run_a', 0, 'a', 'task', 'running', 1, 1, '[]', 'run_a/a');"
        "INSERT INTO events VALUES ('run_a', 1, 'run_created', NULL, 10, '{}'),"
        "  ('run_b', 1, 'run_created', NULL, 20, '{}'), ('run_a', 2, 'step_started', 'a', 30, '{}'),"
        "  ('run_b', 2, 'step_started', 'a', 50, '{}'), ('run_a', 3, 'step_failed', 'a', 40, '{}'),"
        "  ('run_b', 3, 'step_failed', 'a', 45, '{}');";

static int64_t raw_gid(sqlite3 *db, const char *run_id, int seq)
{
    char sql[128];

    snprintf(sql, sizeof(sql), "SELECT gid FROM events WHERE run_id = '%s' AND seq = %d", run_id,
             seq);
    return raw_int(db, sql);
}

static void test_migrate_v1_numbers_old_events(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_RETRY, "run_a", "a", 1, T0);
    sqlite3 *db = raw_open(f);

    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    db = raw_open(f);
    assert_int_equal(raw_int(db, "SELECT version FROM schema_version"), sqlite_schema_version());
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events"), 6);
    assert_int_equal(raw_int(db, "SELECT count(DISTINCT gid) FROM events"), 6);
    assert_int_equal(raw_int(db, "SELECT min(gid) * 10 + max(gid) FROM events"), 16);
    /* By time, except that run_b's seq 3 (at 45) stays after its seq 2 (at 50). */
    assert_int_equal(raw_gid(db, "run_a", 1), 1);
    assert_int_equal(raw_gid(db, "run_b", 1), 2);
    assert_int_equal(raw_gid(db, "run_a", 2), 3);
    assert_int_equal(raw_gid(db, "run_a", 3), 4);
    assert_int_equal(raw_gid(db, "run_b", 2), 5);
    assert_int_equal(raw_gid(db, "run_b", 3), 6);
    /* The rebuilt table keeps its constraints and the new index. */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'events_gid'"),
                     1);
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO events VALUES ('run_a', 9, 1, 'x', NULL, 1,"
                                      " '{}')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);

    /* New events continue the numbering. */
    t.wake_at_ms = T0 + 100;
    apply_ok(f, &t, NULL);
    assert_int_equal(f->ev.n, 2);
    assert_int_equal(f->ev.items[0].global_id, 7);
    assert_int_equal(f->ev.items[1].global_id, 8);
    assert_int_equal(f->ev.items[1].seq, 5);
}

/* A database from before the constraint on idempotency keys (schema 1)
 * whose key "k1" names two runs of workflow "shop", one per version (two
 * writers racing could leave that before): it opens, keeps its runs, the
 * key stays with the oldest, and no third run can take it. */
static void test_migrate_keys_unique_by_name(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    char run_id[ID_MAX];
    bool found = false;
    sqlite3 *db = raw_open(f);

    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
            sqlite3_exec(db,
                         "INSERT INTO workflows VALUES ('wf_2', 'shop', 2, '{}', 2);"
                         "INSERT INTO runs (id, workflow_id, status, input, idempotency_key,"
                         "  created_at) VALUES ('run_k2', 'wf_2', 'completed', '{}', 'k1', 8),"
                         "  ('run_k1', 'wf_1', 'completed', '{}', 'k1', 5),"
                         "  ('run_k3', 'wf_1', 'completed', '{}', 'k3', 6);",
                         NULL, NULL, NULL),
            SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_open(f->path, DURABLE_DURABILITY_FULL, &f->s, &err), DURABLE_OK);
    db = raw_open(f);
    assert_int_equal(raw_int(db, "SELECT version FROM schema_version"), sqlite_schema_version());
    assert_int_equal(raw_int(db, "SELECT count(*) FROM kv"), 0); /* migration 8 */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM runs"), 5);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM runs WHERE workflow_name = 'shop'"), 4);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM runs WHERE id = 'run_k2'"
                                 " AND workflow_name IS NULL AND idempotency_key = 'k1'"),
                     1);
    /* The constraint: another run of any version of shop cannot take k1. */
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO runs (id, workflow_id, status, input,"
                                      " idempotency_key, created_at, workflow_name)"
                                      " VALUES ('run_x', 'wf_2', 'pending', '{}', 'k1', 9,"
                                      " 'shop')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(store_run_find_by_key(f->s, "wf_2", "k1", run_id, &found, &err), DURABLE_OK);
    assert_true(found);
    assert_string_equal(run_id, "run_k1");
    assert_int_equal(store_run_find_by_key(f->s, "wf_2", "k3", run_id, &found, &err), DURABLE_OK);
    assert_true(found);
    assert_string_equal(run_id, "run_k3");
}

static json_t *table_of(json_t *snap, const char *name)
{
    size_t i;
    json_t *t;

    json_array_foreach(json_object_get(snap, "tables"), i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return t;
    }
    fail_msg("no table %s in the snapshot", name);
    return NULL;
}

static int column_index(json_t *table, const char *column)
{
    size_t i;
    json_t *c;

    json_array_foreach(json_object_get(table, "columns"), i, c)
    {
        if (strcmp(json_string_value(c), column) == 0)
            return (int)i;
    }
    fail_msg("no column %s", column);
    return -1;
}

static void test_snapshot(void **state)
{
    struct fixture *f = *state;
    durable_error err = { DURABLE_OK, "" };
    struct transition t = step_tr(TR_STEP_COMPLETE, "run_1", "a", 1, T0 + 30);
    char big[1000];
    char *text = NULL;
    json_t *snap, *tb, *row;
    sqlite3 *db;
    sqlite3_stmt *st;
    const char *cut;

    /* 300 bytes of two-byte characters: cut on a character boundary. */
    memcpy(big, "{\"s\":\"", 6);
    for (int i = 0; i < 150; i++)
        memcpy(big + 6 + 2 * i, "\xc3\xa9", 2);
    memcpy(big + 306, "\"}", 3);
    create_run(f, "run_1", NULL, NULL, NULL);
    create_run(f, "run_2", NULL, NULL, NULL);
    step_ok(f, TR_STEP_START, "run_1", "a", 1);
    t.output_json = big;
    apply_ok(f, &t, NULL);
    assert_int_equal(store_snapshot_json(f->s, 2, &text, &err), DURABLE_OK);
    snap = parse_out(DURABLE_OK, &text, &err);

    /* Every table of the schema is there, and nothing else. */
    db = raw_open(f);
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                                        " AND name NOT LIKE 'sqlite_%'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        tb = table_of(snap, (const char *)sqlite3_column_text(st, 0));
        assert_true(json_is_array(json_object_get(tb, "columns")));
    }
    sqlite3_finalize(st);
    assert_int_equal(json_array_size(json_object_get(snap, "tables")),
                     raw_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                 " AND name NOT LIKE 'sqlite_%'"));
    sqlite3_close(db);

    tb = table_of(snap, "events");
    assert_int_equal(json_integer_value(json_object_get(tb, "total")), 4);
    assert_int_equal(json_array_size(json_object_get(tb, "rows")), 2); /* rows_per_table */
    row = json_array_get(json_object_get(tb, "rows"), 0);              /* newest first */
    assert_int_equal(json_integer_value(json_array_get(row, column_index(tb, "gid"))), 4);
    assert_string_equal(json_string_value(json_array_get(row, column_index(tb, "type"))),
                        "step_completed");
    tb = table_of(snap, "steps");
    assert_int_equal(json_integer_value(json_object_get(tb, "total")), 6);
    row = json_array_get(json_object_get(tb, "rows"), 0);
    assert_string_equal(json_string_value(json_array_get(row, column_index(tb, "run_id"))),
                        "run_2"); /* the newest run's steps first (inserted last) */
    tb = table_of(snap, "runs");
    assert_int_equal(json_integer_value(json_object_get(tb, "total")), 2);
    tb = table_of(snap, "schema_version");
    row = json_array_get(json_object_get(tb, "rows"), 0);
    assert_int_equal(json_integer_value(json_array_get(row, 0)), sqlite_schema_version());
    json_decref(snap);

    assert_int_equal(store_snapshot_json(f->s, 500, &text, &err), DURABLE_OK);
    snap = parse_out(DURABLE_OK, &text, &err);
    tb = table_of(snap, "steps");
    assert_int_equal(json_array_size(json_object_get(tb, "rows")), 6);
    row = json_array_get(json_object_get(tb, "rows"), 3); /* run_1, a */
    cut = json_string_value(json_array_get(row, column_index(tb, "output")));
    assert_non_null(cut);
    assert_int_equal(strlen(cut), 200 + 3);
    assert_memory_equal(cut, big, 6);
    assert_string_equal(cut + 200, "…");
    json_decref(snap);
}

/* The writer's statements must not make SQLite build a temporary b-tree
 * (OpenEphemeral: an IN list of three or more values, RETURNING, a partial
 * index whose predicate holds one): each one allocates and faults in a
 * fresh page cache, which was most of the writer's time per step. */
static void test_no_temp_tables(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db = raw_open(f);
    char failed[1024] = "";
    int id;

    for (id = ST_WF_LATEST; id <= ST_RUN_RETRY; id++) {
        char sql[2048];
        sqlite3_stmt *st = NULL;

        snprintf(sql, sizeof(sql), "EXPLAIN %s", store_stmt_sql((enum stmt_id)id));
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *op = (const char *)sqlite3_column_text(st, 1);
            if (op && strcmp(op, "OpenEphemeral") == 0) {
                size_t n = strlen(failed);
                snprintf(failed + n, sizeof(failed) - n, "%s%.60s", n ? " | " : "",
                         store_stmt_sql((enum stmt_id)id));
                break;
            }
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    if (failed[0])
        fail_msg("statements with a temporary table: %s", failed);
}

int main(void)
{
#define T(fn)  cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TE(fn) cmocka_unit_test_setup_teardown(fn, setup_empty, teardown)
    const struct CMUnitTest tests[] = {
        TE(test_migrate_from_empty_and_reopen),
        TE(test_newer_schema_refused),
        TE(test_open_not_a_database),
        TE(test_durability_pragma),
        TE(test_migrate_v1_numbers_old_events),
        TE(test_migrate_keys_unique_by_name),
        T(test_snapshot),
        T(test_no_temp_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
