/*
 * schema.c - the PostgreSQL schema and its migrations.
 *
 * The schema is an ordered list of migration scripts, as in sqlite/sqlite.c;
 * schema_version holds how many ran. pg_migrate applies the missing ones in
 * one transaction that first takes a transaction-level advisory lock, so
 * that nodes starting at once on an empty database wait for one another
 * instead of racing on CREATE TABLE; a database written by a newer build is
 * refused.
 *
 * The tables and columns are SQLite's (times are Unix ms in bigint), plus
 * what many nodes need: nodes (one row per node id: its epoch, bumped at
 * every join, its lease and state), runs.owner_node/owner_epoch (the node
 * executing the run and the epoch it had when it claimed it: the fencing
 * token), and event_counter (the last global event id given out: one row,
 * locked by the writer that numbers a batch, so ids are gap-free and in
 * commit order across nodes), and ord on workflows, runs and orders (the
 * insertion order, which SQLite's rowid gives the lists).
 */
#include "util/common.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/pg/pg_int.h"

/* "durable schema" in ASCII: the advisory lock key of migrations. */
#define SCHEMA_LOCK_KEY "110386510816613"

/* A run is unfinished while pending, running, waiting or paused; the
 * indexes of migration 1 had no paused status (UNFINISHED_1; migration 6
 * adds it). */
#define UNFINISHED_1 "(status = 'pending' OR status = 'running' OR status = 'waiting')"
#define UNFINISHED \
    "(status = 'pending' OR status = 'running' OR status = 'waiting' OR status = 'paused')"

static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE FUNCTION durable_now_ms() RETURNS bigint LANGUAGE sql VOLATILE"
    "  AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;"
    "CREATE TABLE workflows ("
    "  id text PRIMARY KEY, name text NOT NULL, version integer NOT NULL,"
    "  definition text NOT NULL, created_at bigint NOT NULL, UNIQUE (name, version));"
    "CREATE TABLE orders ("
    "  id text PRIMARY KEY, amount double precision NOT NULL, status text NOT NULL,"
    "  created_at bigint NOT NULL, updated_at bigint NOT NULL);"
    "CREATE TABLE runs ("
    "  id text PRIMARY KEY, workflow_id text NOT NULL REFERENCES workflows (id),"
    "  status text NOT NULL, input text NOT NULL, output text,"
    "  order_id text REFERENCES orders (id), idempotency_key text, error_message text,"
    "  created_at bigint NOT NULL, started_at bigint, completed_at bigint,"
    "  deadline_at bigint, owner_node text, owner_epoch bigint NOT NULL DEFAULT 0,"
    "  UNIQUE (workflow_id, idempotency_key));"
    "CREATE INDEX runs_status ON runs (status, created_at);"
    "CREATE INDEX runs_created ON runs (created_at);"
    "CREATE INDEX runs_unfinished ON runs (created_at, id) WHERE " UNFINISHED_1 ";"
    "CREATE INDEX runs_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;"
    /* Claims read the unowned unfinished runs oldest first; a node's own
     * runs are found to release them. */
    "CREATE INDEX runs_claimable ON runs (created_at, id)"
    "  WHERE owner_node IS NULL AND " UNFINISHED_1 ";"
    "CREATE INDEX runs_owner ON runs (owner_node) WHERE owner_node IS NOT NULL;"
    "CREATE TABLE steps ("
    "  run_id text NOT NULL REFERENCES runs (id), idx integer NOT NULL,"
    "  step_id text NOT NULL, type text NOT NULL, status text NOT NULL,"
    "  attempt integer NOT NULL DEFAULT 0, max_attempts integer NOT NULL,"
    "  depends_on text NOT NULL, idempotency_key text NOT NULL,"
    "  started_at bigint, completed_at bigint, wake_at bigint,"
    "  error_message text, error_code text, output text,"
    "  PRIMARY KEY (run_id, step_id));"
    "CREATE INDEX steps_status ON steps (run_id, status);"
    "CREATE TABLE events ("
    "  run_id text NOT NULL REFERENCES runs (id), seq bigint NOT NULL,"
    "  gid bigint NOT NULL, type text NOT NULL, step_id text, at bigint NOT NULL,"
    "  data text NOT NULL, PRIMARY KEY (run_id, seq));"
    "CREATE UNIQUE INDEX events_gid ON events (gid);"
    "CREATE TABLE event_counter (one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    "  gid bigint NOT NULL);"
    "INSERT INTO event_counter (gid) VALUES (0);"
    "CREATE TABLE nodes ("
    "  id text PRIMARY KEY, epoch bigint NOT NULL, state text NOT NULL,"
    "  lease_until bigint NOT NULL, heartbeat_at bigint NOT NULL, joined_at bigint NOT NULL);",
    /* 2: insertion order. Lists show workflows, runs and orders newest
     * first: by created_at, then, among rows of one millisecond, by the
     * order they were inserted (SQLite's rowid), which ids do not give
     * (their tail is random). ord is that order; the indexes end with it,
     * so a page needs no sort. */
    "ALTER TABLE workflows ADD ord bigint GENERATED ALWAYS AS IDENTITY;"
    "ALTER TABLE runs ADD ord bigint GENERATED ALWAYS AS IDENTITY;"
    "ALTER TABLE orders ADD ord bigint GENERATED ALWAYS AS IDENTITY;"
    "CREATE INDEX workflows_created ON workflows (created_at, ord);"
    "CREATE INDEX orders_created ON orders (created_at, ord);"
    "DROP INDEX runs_created;"
    "CREATE INDEX runs_created ON runs (created_at, ord);"
    "DROP INDEX runs_status;"
    "CREATE INDEX runs_status ON runs (status, created_at, ord);",
    /* 3: signals sent to runs, kept until a waiting step takes one (seq:
     * the signal_received event's, their order in the run), and the name
     * of the signal a waiting step waits for. */
    "CREATE TABLE signals ("
    "  id text PRIMARY KEY, run_id text NOT NULL REFERENCES runs (id), name text NOT NULL,"
    "  payload text NOT NULL, seq bigint NOT NULL, created_at bigint NOT NULL,"
    "  taken_by text, taken_at bigint);"
    "CREATE INDEX signals_waiting ON signals (run_id, name, seq) WHERE taken_by IS NULL;"
    "ALTER TABLE steps ADD signal text;",
    /* 4: an idempotency key names one run per workflow name (every
     * version), on every node, by constraint: two nodes starting the same
     * key at once get one run (the loser's insert fails, its writer tries
     * again and finds the winner's run). runs.workflow_name is the name of
     * runs.workflow_id (names never change), set by the insert. A key two
     * runs share already (only two nodes racing before this version could
     * do it) stays with the oldest: the later runs keep their key but no
     * workflow_name, so the index leaves them out and lookups by key find
     * the oldest. */
    "ALTER TABLE runs ADD workflow_name text;"
    "UPDATE runs SET workflow_name = w.name FROM workflows w WHERE w.id = runs.workflow_id;"
    "UPDATE runs SET workflow_name = NULL WHERE id IN (SELECT id FROM (SELECT id,"
    "  row_number() OVER (PARTITION BY workflow_name, idempotency_key"
    "  ORDER BY created_at, ord) AS n FROM runs WHERE idempotency_key IS NOT NULL) d"
    "  WHERE n > 1);"
    "DROP INDEX runs_key;"
    "ALTER TABLE runs DROP CONSTRAINT runs_workflow_id_idempotency_key_key;"
    "CREATE UNIQUE INDEX " PG_RUNS_KEY " ON runs (workflow_name, idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;",
    /* 5: the key/value table of the actions a program registers
     * (durable_action_register): values are JSON text. */
    "CREATE TABLE kv (key text PRIMARY KEY, value text NOT NULL, updated_at bigint NOT NULL);",
    /* 6: finished runs by the time they finished, for retention's
     * oldest-first batches of deletions (write.c, runs_delete). */
    "CREATE INDEX runs_finished ON runs (completed_at)"
    "  WHERE status IN ('completed', 'failed', 'cancelled');",
    /* 7: a paused run is unfinished: recovery lists it and a node claims
     * it (and keeps it paused). A run made by a restart names the run and
     * the step it restarts from. */
    "DROP INDEX runs_unfinished;"
    "CREATE INDEX runs_unfinished ON runs (created_at, id) WHERE " UNFINISHED ";"
    "DROP INDEX runs_claimable;"
    "CREATE INDEX runs_claimable ON runs (created_at, id)"
    "  WHERE owner_node IS NULL AND " UNFINISHED ";"
    "ALTER TABLE runs ADD restarted_from text;"
    "ALTER TABLE runs ADD restarted_step text;",
    /* 8: a workflow version's own retention window in ms (its
     * definition's retain_finished), NULL for the server's (write.c). */
    "ALTER TABLE workflows ADD retain_ms bigint;",
    /* 9: schedules (a cron expression or an interval, every_ms): last_tick
     * is the last tick fired, written in the transaction of the run it
     * started (or of its skip); the tick's guard reads the row FOR UPDATE,
     * so two nodes firing one tick are serialized and the second finds it
     * fired. */
    "CREATE TABLE schedules ("
    "  id text PRIMARY KEY, workflow_name text NOT NULL, cron text, every_ms bigint,"
    "  tz text NOT NULL, input text NOT NULL, overlap text NOT NULL, catch_up text NOT NULL,"
    "  catch_up_max integer NOT NULL, paused boolean NOT NULL DEFAULT false,"
    "  anchor_at bigint NOT NULL, last_tick bigint, last_run_id text,"
    "  fired bigint NOT NULL DEFAULT 0, skipped bigint NOT NULL DEFAULT 0,"
    "  created_at bigint NOT NULL, updated_at bigint NOT NULL,"
    "  CHECK ((cron IS NULL) <> (every_ms IS NULL)));",
    /* 10: a run's priority (durable_run_request.priority): which run held
     * back by a concurrency limit starts next (engine/flow.c). */
    "ALTER TABLE runs ADD priority bigint NOT NULL DEFAULT 0;",
    /* 11: the writer's rows cost less. The foreign keys of events and
     * steps to runs are dropped: every write of the writer reads its run
     * first, locked (FOR SHARE, write.c's guards) until the COMMIT, so the
     * run is there and stays; the key's check was one more locking query
     * per row, a third of an event's insert. steps_status goes: a run's
     * steps are found by the primary key's prefix (run_id), and without
     * an index on status a step's change of status is a HOT update (no
     * index entry written), for which each page of steps keeps room. */
    "ALTER TABLE events DROP CONSTRAINT events_run_id_fkey;"
    "ALTER TABLE steps DROP CONSTRAINT steps_run_id_fkey;"
    "DROP INDEX steps_status;"
    "ALTER TABLE steps SET (fillfactor = 80);",
    /* 12: concurrency limits over every node (engine/flow.c, write.c's
     * flow_admit): an admitted run carries its group until it ends. */
    "ALTER TABLE runs ADD flow_key text;"
    "CREATE INDEX runs_flow ON runs (flow_key) WHERE flow_key IS NOT NULL"
    "  AND status <> 'completed' AND status <> 'failed' AND status <> 'cancelled';",
    /* 13: rate limits over every node (write.c's rate_take): the next
     * free place of each limit, by the database's clock (ms). */
    "CREATE TABLE rate_slots (key text PRIMARY KEY, next_ms double precision NOT NULL);",
};

int pg_schema_version(void)
{
    return (int)DUR_ARRAY_LEN(migrations);
}

/* Runs a script of several statements (no parameters: the simple query
 * protocol, which takes several at once). */
static durable_code run_script(PGconn *c, const char *what, const char *sql, durable_error *err)
{
    PGresult *r = PQexec(c, sql);
    durable_code rc = DURABLE_OK;

    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = err_set(err, DURABLE_EIO, "could not %s: %s", what, PQerrorMessage(c));
    PQclear(r);
    return rc;
}

/* The version recorded, 0 for a new database. */
static durable_code read_version(PGconn *c, int *out, durable_error *err)
{
    PGresult *r = pg_exec(c, "read the schema version",
                          "SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL, err);

    if (!r)
        return DURABLE_EIO;
    *out = (int)pg_cell_int64(r, 0, 0);
    PQclear(r);
    return DURABLE_OK;
}

static durable_code apply_missing(PGconn *c, int version, durable_error *err)
{
    int known = pg_schema_version();
    char text[16];
    const char *params[1] = { text };
    durable_code rc = DURABLE_OK;

    if (version > known) {
        return err_set(err, DURABLE_EUNSUPPORTED,
                       "database schema version %d is newer than this durable (knows %d)", version,
                       known);
    }
    if (version == known)
        return DURABLE_OK;
    for (; rc == DURABLE_OK && version < known; version++)
        rc = run_script(c, "migrate the database", migrations[version], err);
    snprintf(text, sizeof(text), "%d", version);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "record the schema version", "DELETE FROM schema_version", 0, NULL, err);
    if (rc == DURABLE_OK) {
        rc = pg_run(c, "record the schema version",
                    "INSERT INTO schema_version (version) VALUES ($1::integer)", 1, params, err);
    }
    return rc;
}

durable_code pg_migrate(PGconn *c, durable_error *err)
{
    int version = 0;
    durable_code rc = run_script(c, "begin a migration", "BEGIN", err);

    if (rc == DURABLE_OK) {
        rc = pg_run(c, "lock the schema", "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", 0,
                    NULL, err);
    }
    if (rc == DURABLE_OK) {
        rc = pg_run(c, "create the schema version",
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)", 0, NULL,
                    err);
    }
    if (rc == DURABLE_OK)
        rc = read_version(c, &version, err);
    if (rc == DURABLE_OK)
        rc = apply_missing(c, version, err);
    if (rc == DURABLE_OK)
        rc = run_script(c, "commit a migration", "COMMIT", err);
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c, "ROLLBACK");
        PQclear(r);
    }
    return rc;
}
