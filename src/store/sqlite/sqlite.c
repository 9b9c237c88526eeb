/*
 * sqlite.c - the SQLite store: connections, schema migrations, the cache of
 * prepared statements and transactions.
 *
 * A store has connections to one WAL database: the write connection, used
 * only by the engine's writer thread (the rows of transitions, in
 * write.c), and a pool of read connections (read.c, rows.c, inspect.c),
 * each used by one thread at a time between store_reader_take and
 * store_reader_put. All are opened
 * without SQLite's own mutex (NOMUTEX): each is confined, so SQLite's
 * locking would only cost time.
 *
 * The schema is an ordered list of migration scripts; schema_version holds
 * the number applied. store_open applies the missing ones in one transaction
 * and refuses a database written by a newer build. Every SQL text lives in
 * stmt_defs below and is bound with parameters, never built from strings.
 */
#include "util/common.h"

#include "store/store.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite/sqlite_int.h"

/* ---- schema ---- */

/* A run is unfinished while pending, running, waiting or paused (active:
 * any of them but paused). Written as ORs, not IN: see migration 4, whose
 * index had no paused status (UNFINISHED_4; migration 9 adds it). */
#define ACTIVE       "(status = 'pending' OR status = 'running' OR status = 'waiting')"
#define UNFINISHED_4 ACTIVE
#define UNFINISHED \
    "(status = 'pending' OR status = 'running' OR status = 'waiting' OR status = 'paused')"
#define UNFINISHED_R                                                                       \
    "(r.status = 'pending' OR r.status = 'running' OR r.status = 'waiting' OR r.status = " \
    "'paused')"

/* A schedule's columns as schedule_of (rows.c) reads them. */
#define SCHED_COLS                                                                                \
    "id, workflow_name, cron, coalesce(every_ms, 0), tz, input, overlap, catch_up, catch_up_max," \
    " paused, anchor_at, coalesce(last_tick, 0), fired, skipped, created_at, updated_at,"         \
    " last_run_id"

static const char *const migrations[] = {
    /* 1: the initial schema. */
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
    /* Recovery lists unfinished runs oldest first without a sort and without
     * scanning the finished ones. */
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
    /* The run's status is recomputed after every step transition from
     * "does any step of this run have status X": an index lookup. */
    "CREATE INDEX steps_status ON steps (run_id, status);"
    "CREATE TABLE events ("
    "  run_id TEXT NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,"
    "  type TEXT NOT NULL, step_id TEXT, at INTEGER NOT NULL, data TEXT NOT NULL,"
    "  PRIMARY KEY (run_id, seq)) WITHOUT ROWID;",
    /* 2: a global event id (gid), increasing in commit order across runs,
     * for the global event stream. The table is rebuilt so that gid can be
     * NOT NULL. Old events are numbered by time; within a run the running
     * maximum of `at` is the key, so that gid follows seq even where a
     * later event carries an earlier time. */
    "CREATE TABLE events_v2 ("
    "  run_id TEXT NOT NULL REFERENCES runs (id), seq INTEGER NOT NULL,"
    "  gid INTEGER NOT NULL, type TEXT NOT NULL, step_id TEXT, at INTEGER NOT NULL,"
    "  data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;"
    "INSERT INTO events_v2 (run_id, seq, gid, type, step_id, at, data)"
    "  SELECT run_id, seq, row_number() OVER (ORDER BY k, run_id, seq), type, step_id, at, data"
    "  FROM (SELECT *, max(at) OVER (PARTITION BY run_id ORDER BY seq) AS k FROM events);"
    "DROP TABLE events;"
    "ALTER TABLE events_v2 RENAME TO events;"
    "CREATE UNIQUE INDEX events_gid ON events (gid);",
    /* 3: idempotency keys are per workflow name (every version), looked up
     * by key; the writer checks for an existing run inside its write
     * transaction, which serialises writers across processes too. */
    "CREATE INDEX runs_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;",
    /* 4: the unfinished-runs index with its predicate written as ORs. SQLite
     * evaluates an IN list of three values through a temporary b-tree, and a
     * partial index's predicate is evaluated on every UPDATE of status: the
     * writer paid for one per step transition (see test_no_temp_tables). */
    "DROP INDEX runs_unfinished;"
    "CREATE INDEX runs_unfinished ON runs (created_at, id)"
    "  WHERE " UNFINISHED_4 ";",
    /* 5: an event's seq is the run's last one plus one, read from events
     * (the end of the run's primary key range), so that a step transition
     * need not rewrite the run's row and its indexes. */
    "ALTER TABLE runs DROP COLUMN last_seq;",
    /* 6: signals sent to runs, kept until a waiting step takes one (seq:
     * the signal_received event's, their order in the run), and the name
     * of the signal a waiting step waits for. */
    "CREATE TABLE signals ("
    "  id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id), name TEXT NOT NULL,"
    "  payload TEXT NOT NULL, seq INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  taken_by TEXT, taken_at INTEGER);"
    "CREATE INDEX signals_waiting ON signals (run_id, name, seq) WHERE taken_by IS NULL;"
    "ALTER TABLE steps ADD COLUMN signal TEXT;",
    /* 7: an idempotency key names one run per workflow name (every
     * version) by constraint, as on PostgreSQL (pg/schema.c, migration 4),
     * not only by the writer's lookup. runs.workflow_name is the name of
     * runs.workflow_id (names never change), set by the insert. A key two
     * runs share already stays with the oldest: the later ones keep their
     * key but no workflow_name, so the index leaves them out. */
    "ALTER TABLE runs ADD COLUMN workflow_name TEXT;"
    "UPDATE runs SET workflow_name = (SELECT name FROM workflows w WHERE w.id = runs.workflow_id);"
    "UPDATE runs SET workflow_name = NULL WHERE idempotency_key IS NOT NULL AND EXISTS"
    "  (SELECT 1 FROM runs o WHERE o.workflow_name = runs.workflow_name"
    "  AND o.idempotency_key = runs.idempotency_key AND (o.created_at < runs.created_at"
    "  OR (o.created_at = runs.created_at AND o.rowid < runs.rowid)));"
    "DROP INDEX runs_key;"
    "CREATE UNIQUE INDEX runs_key ON runs (workflow_name, idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;",
    /* 8: the key/value table of the actions a program registers
     * (durable_action_register): values are JSON text. */
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL);",
    /* 9: deletion (purge.c). Finished runs by the time they finished, for
     * retention's oldest-first batches; and the last global event id given
     * out before events were deleted (one row), so that ids are never
     * given out twice. */
    "CREATE INDEX runs_finished ON runs (completed_at)"
    "  WHERE status = 'completed' OR status = 'failed' OR status = 'cancelled';"
    "CREATE TABLE gid_floor (one INTEGER PRIMARY KEY CHECK (one = 1), gid INTEGER NOT NULL);",
    /* 10: a paused run is unfinished: recovery lists it (and keeps it
     * paused). A run made by a restart names the run and the step it
     * restarts from. */
    "DROP INDEX runs_unfinished;"
    "CREATE INDEX runs_unfinished ON runs (created_at, id)"
    "  WHERE " UNFINISHED ";"
    "ALTER TABLE runs ADD COLUMN restarted_from TEXT;"
    "ALTER TABLE runs ADD COLUMN restarted_step TEXT;",
    /* 11: a workflow version's own retention window in ms (its
     * definition's retain_finished), NULL for the server's (purge.c). */
    "ALTER TABLE workflows ADD COLUMN retain_ms INTEGER;",
    /* 12: schedules (a cron expression or an interval, every_ms): last_tick
     * is the last tick fired, written in the transaction of the run it
     * started (or of its skip), so that a tick fires once. */
    "CREATE TABLE schedules ("
    "  id TEXT PRIMARY KEY, workflow_name TEXT NOT NULL, cron TEXT, every_ms INTEGER,"
    "  tz TEXT NOT NULL, input TEXT NOT NULL, overlap TEXT NOT NULL, catch_up TEXT NOT NULL,"
    "  catch_up_max INTEGER NOT NULL, paused INTEGER NOT NULL DEFAULT 0,"
    "  anchor_at INTEGER NOT NULL, last_tick INTEGER, last_run_id TEXT,"
    "  fired INTEGER NOT NULL DEFAULT 0,"
    "  skipped INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL, CHECK ((cron IS NULL) <> (every_ms IS NULL)));",
    /* 13: a run's priority (durable_run_request.priority): which run held
     * back by a concurrency limit starts next (engine/flow.c). */
    "ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;",
};

int sqlite_schema_version(void)
{
    return (int)DUR_ARRAY_LEN(migrations);
}

/* ---- statements ---- */

#define WHERE_STEP " WHERE run_id = ?1 AND step_id = ?2"
/* The last event seq of run ?1 (of r, the run of the query), 0 before its
 * first: the end of its range of the events primary key. */
#define LAST_SEQ   "(SELECT coalesce(max(seq), 0) FROM events WHERE run_id = ?1)"
#define LAST_SEQ_R "(SELECT coalesce(max(seq), 0) FROM events WHERE run_id = r.id)"
/* A run's status from its steps': running while one runs, waiting while
 * one waits or retries, running again after a wait, else as it is. */
#define RUN_STATUS_FROM_STEPS                                                          \
    "(CASE WHEN EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'running')" \
    " THEN 'running'"                                                                  \
    " WHEN EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'retrying')"     \
    " OR EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'waiting')"        \
    " THEN 'waiting' WHEN status = 'waiting' THEN 'running' ELSE status END)"
/* A paused run's status once resumed: from its steps', pending if it never
 * started, else running. */
#define RUN_STATUS_RESUMED                                                             \
    "(CASE WHEN EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'running')" \
    " THEN 'running'"                                                                  \
    " WHEN EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'retrying')"     \
    " OR EXISTS (SELECT 1 FROM steps WHERE run_id = ?1 AND status = 'waiting')"        \
    " THEN 'waiting' WHEN started_at IS NULL THEN 'pending' ELSE 'running' END)"
/* The name SQLite gives the primary key of the (WITHOUT ROWID) steps table. */
#define STEPS_PK "sqlite_autoindex_steps_1"
#define WF_COLS  "SELECT id, name, version, definition, created_at FROM workflows"
/* A run's columns as rows.c's run_row_of reads them. */
#define RUN_COLS                                                        \
    "SELECT r.id, r.workflow_id, w.name, w.version, r.status, r.input," \
    " r.output, r.order_id, r.idempotency_key, r.error_message,"        \
    " r.created_at, r.started_at, r.completed_at, r.restarted_from,"    \
    " r.restarted_step, r.priority FROM runs r JOIN workflows w ON w.id = r.workflow_id"
/* The lists' parameters: ?1 and ?2 filters, ?3 limit, ?4 offset (rows.c
 * binds all four to every list). Newest first is created_at, then rowid:
 * ids made in the same millisecond are not ordered, rowids are, and
 * runs_created and runs_status end with the rowid, so no sort is needed.
 * The runs list's filters: ?1 a status, ?2 a workflow id or name (every
 * version). One statement per combination, so that each can use its index
 * (a "?1 IS NULL OR" filter could not). */
#define RUNS_BY_STATUS " r.status = ?1"
#define RUNS_BY_WF     " r.workflow_id IN (SELECT id FROM workflows WHERE id = ?2 OR name = ?2)"
#define RUNS_PAGE      " ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?3 OFFSET ?4"
#define RUNS_COUNT     "SELECT count(*) FROM runs r"
/* Every filter at once (rows.c, when a time range or an input filter is
 * given): ?1 status and ?2 workflow or NULL; ?5 <= created_at < ?6 (always
 * bound, so runs_created serves the range); ?7 <= completed_at < ?8, each
 * NULL for none; ?9 the input's JSON path ('$."a"."b"') or NULL, ?10 the
 * kind of value it must have ('number', 'text', 'true', 'false', 'null')
 * and ?11 the number or text it must equal. */
#define RUNS_FILTERED                                                                       \
    " WHERE (?1 IS NULL OR r.status = ?1)"                                                  \
    " AND (?2 IS NULL OR r.workflow_id IN (SELECT id FROM workflows WHERE id = ?2"          \
    " OR name = ?2)) AND r.created_at >= ?5 AND r.created_at < ?6"                          \
    " AND (?7 IS NULL OR r.completed_at >= ?7) AND (?8 IS NULL OR r.completed_at < ?8)"     \
    " AND (?9 IS NULL OR CASE ?10"                                                          \
    " WHEN 'number' THEN json_type(r.input, ?9) IN ('integer', 'real')"                     \
    " AND json_extract(r.input, ?9) = CAST(?11 AS REAL)"                                    \
    " WHEN 'text' THEN json_type(r.input, ?9) = 'text' AND json_extract(r.input, ?9) = ?11" \
    " ELSE json_type(r.input, ?9) IS ?10 END)"
/* Steps of the newest runs first, each run's in definition order. CROSS
 * JOIN keeps runs outside, read newest first from runs_created, so that
 * only the steps of the runs shown are read (the planner would otherwise
 * sort every step). */
#define SNAP_STEPS                                                 \
    "SELECT s.* FROM runs r CROSS JOIN steps s ON s.run_id = r.id" \
    " ORDER BY r.created_at DESC, r.rowid DESC, s.idx LIMIT ?1"

/* Each statement's SQL, and what it does for error messages ("could not X"). */
struct stmt_def {
    const char *sql;
    const char *what;
};

static const struct stmt_def stmt_defs[ST_COUNT] = {
    [ST_BEGIN] = { "BEGIN IMMEDIATE", "begin a transaction" },
    [ST_COMMIT] = { "COMMIT", "commit" },
    [ST_ROLLBACK] = { "ROLLBACK", "roll back" },
    [ST_SAVEPOINT] = { "SAVEPOINT store_action", "open a savepoint" },
    [ST_SP_RELEASE] = { "RELEASE store_action", "release a savepoint" },
    [ST_SP_ROLLBACK] = { "ROLLBACK TO store_action", "undo a refused action" },
    [ST_PRAGMA_SYNCHRONOUS] = { "PRAGMA synchronous", "read the synchronous setting" },
    [ST_WF_LATEST] = { "SELECT id, version, definition FROM workflows WHERE name = ?1"
                       " ORDER BY version DESC LIMIT 1",
                       "read a workflow" },
    [ST_WF_INSERT] = { "INSERT INTO workflows (id, name, version, definition, created_at, retain_ms)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       "register a workflow" },
    [ST_WF_EXISTS] = { "SELECT 1 FROM workflows WHERE id = ?1", "look up a workflow" },
    [ST_ORDER_INSERT] = { "INSERT INTO orders (id, amount, status, created_at, updated_at)"
                          " VALUES (?1, ?2, 'pending', ?3, ?3)",
                          "create an order" },
    [ST_ORDER_STATUS] = { "SELECT status FROM orders WHERE id = ?1", "read an order" },
    [ST_ORDER_SET_STATUS] = { "UPDATE orders SET status = ?2, updated_at = ?3 WHERE id = ?1",
                              "update an order" },
    [ST_KV_GET] = { "SELECT value FROM kv WHERE key = ?1", "read a key" },
    [ST_KV_PUT] = { "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3",
                    "write a key" },
    /* A key names one run per workflow, whatever its version: resuming
     * after the file was edited must find the run, not start another. */
    [ST_RUN_BY_KEY] = { "SELECT id FROM runs WHERE idempotency_key = ?2"
                        " AND workflow_name = (SELECT name FROM workflows WHERE id = ?1)",
                        "look up an idempotency key" },
    [ST_RUN_INSERT] = { "INSERT INTO runs (id, workflow_id, status, input, order_id,"
                        " idempotency_key, created_at, deadline_at, workflow_name,"
                        " restarted_from, restarted_step, priority)"
                        " VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7,"
                        " (SELECT name FROM workflows WHERE id = ?2), ?8, ?9, ?10)",
                        "create a run" },
    /* A step started: its run is running (the guard saw it unfinished).
     * Both status updates leave the row alone when nothing changes, so
     * that most step transitions write no run row and no run index. */
    [ST_RUN_RUNNING] = { "UPDATE runs SET status = CASE WHEN status = 'paused' THEN status"
                         " ELSE 'running' END, started_at = coalesce(started_at, ?2)"
                         " WHERE id = ?1 AND ((status <> 'running' AND status <> 'paused')"
                         " OR started_at IS NULL)",
                         "start a run" },
    [ST_RUN_RECOMPUTE] = { "UPDATE runs SET status = " RUN_STATUS_FROM_STEPS
                           " WHERE id = ?1 AND " ACTIVE " AND status <> " RUN_STATUS_FROM_STEPS,
                           "update a run's status" },
    [ST_RUN_PAUSE] = { "UPDATE runs SET status = 'paused' WHERE id = ?1", "pause a run" },
    [ST_RUN_RESUME] = { "UPDATE runs SET status = " RUN_STATUS_RESUMED
                        " WHERE id = ?1 AND status = 'paused'",
                        "resume a run" },
    [ST_RUN_FINISH] = { "UPDATE runs SET status = ?2, output = ?3, error_message = ?4,"
                        " completed_at = ?5 WHERE id = ?1",
                        "finish a run" },
    [ST_RUN_LAST_SEQ] = { "SELECT " LAST_SEQ, "number an event" },
    [ST_STEP_INSERT] = { "INSERT INTO steps (run_id, idx, step_id, type, status, attempt,"
                         " max_attempts, depends_on, idempotency_key)"
                         " VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?6, ?1 || '/' || ?3)",
                         "create a step" },
    /* A transition's guard: the run (no row: not found) and, when ?2 is
     * not NULL, the step (NULL status: not found), in one read. */
    [ST_RUN_STEP_GUARD] = { "SELECT r.status, r.order_id, " LAST_SEQ_R ", s.status, s.attempt,"
                            " s.type"
                            " FROM runs r LEFT JOIN steps s ON s.run_id = r.id AND s.step_id = ?2"
                            " WHERE r.id = ?1",
                            "read a step" },
    [ST_STEP_START] = { "UPDATE steps SET status = 'running', attempt = ?3, started_at = ?4,"
                        " completed_at = NULL, wake_at = NULL, error_message = NULL,"
                        " error_code = NULL" WHERE_STEP,
                        "start a step" },
    /* Recovery runs a running step again under its attempt (0 only in a
     * database older than attempts: then 1) and idempotency key. */
    [ST_STEP_RESTART] = { "UPDATE steps SET started_at = ?3, attempt = max(attempt, 1)" WHERE_STEP
                          " AND status = 'running'",
                          "restart a step" },
    [ST_STEP_COMPLETE] = { "UPDATE steps SET status = 'completed', output = ?3,"
                           " completed_at = ?4" WHERE_STEP,
                           "complete a step" },
    [ST_STEP_RUN] = { "UPDATE steps SET status = 'completed', attempt = ?3, started_at = ?4,"
                      " completed_at = ?4, wake_at = NULL, error_message = NULL, error_code = NULL,"
                      " output = ?5" WHERE_STEP,
                      "run a step" },
    [ST_STEP_RETRY] = { "UPDATE steps SET status = 'retrying', wake_at = ?3,"
                        " error_message = ?4, error_code = ?5" WHERE_STEP,
                        "schedule a retry" },
    [ST_STEP_FAIL] = { "UPDATE steps SET status = 'failed', completed_at = ?3,"
                       " error_message = ?4, error_code = ?5" WHERE_STEP,
                       "fail a step" },
    [ST_STEP_SKIP] = { "UPDATE steps SET status = 'skipped', completed_at = ?3" WHERE_STEP,
                       "skip a step" },
    [ST_STEP_WAIT] = { "UPDATE steps SET status = 'waiting', wake_at = ?3, signal = ?4" WHERE_STEP,
                       "make a step wait" },
    [ST_STEP_PROGRESS] = { "UPDATE steps SET output = ?3" WHERE_STEP " AND status = 'running'",
                           "record a map step's progress" },
    [ST_SIGNAL_INSERT] = { "INSERT INTO signals (id, run_id, name, payload, seq, created_at)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           "store a signal" },
    [ST_SIGNAL_NEXT] = { "SELECT id, payload FROM signals WHERE run_id = ?1 AND name = ?2"
                         " AND taken_by IS NULL ORDER BY seq LIMIT 1",
                         "read a signal" },
    [ST_SIGNAL_TAKE] = { "UPDATE signals SET taken_by = ?2, taken_at = ?3 WHERE id = ?1",
                         "take a signal" },
    /* min(idx): the first waiting step's columns (a bare column of an
     * aggregate comes from the row of its min), without a sorter. */
    [ST_SIGNAL_WAITER] = { "SELECT step_id, attempt, min(idx) FROM steps WHERE run_id = ?1"
                           " AND status = 'waiting' AND signal = ?2 HAVING count(*) > 0",
                           "find a step waiting for a signal" },
    /* Both UPDATEs of a run's steps go through the primary key: through
     * steps_status, whose column they change, SQLite would first collect
     * the rows in a temporary table. */
    [ST_STEPS_CANCEL] = { "UPDATE steps INDEXED BY " STEPS_PK
                          " SET status = 'cancelled', completed_at = ?2,"
                          " wake_at = NULL WHERE run_id = ?1 AND status <> 'completed'"
                          " AND status <> 'failed' AND status <> 'skipped'"
                          " AND status <> 'cancelled'",
                          "cancel a run's steps" },
    [ST_EVENT_INSERT] = { "INSERT INTO events (run_id, seq, type, step_id, at, data, gid)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                          "append an event" },
    [ST_EVENT_MAX_GID] = { "SELECT max(coalesce((SELECT max(gid) FROM events), 0),"
                           " coalesce((SELECT gid FROM gid_floor), 0))",
                           "number an event" },
    [ST_SCHED_GET] = { "SELECT paused, coalesce(last_tick, 0) FROM schedules WHERE id = ?1",
                       "read a schedule's last tick" },
    [ST_SCHED_PUT] = { "INSERT INTO schedules (id, workflow_name, cron, every_ms, tz, input,"
                       " overlap, catch_up, catch_up_max, anchor_at, created_at, updated_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)"
                       " ON CONFLICT (id) DO UPDATE SET workflow_name = excluded.workflow_name,"
                       " cron = excluded.cron, every_ms = excluded.every_ms, tz = excluded.tz,"
                       " input = excluded.input, overlap = excluded.overlap,"
                       " catch_up = excluded.catch_up, catch_up_max = excluded.catch_up_max,"
                       " updated_at = excluded.updated_at",
                       "write a schedule" },
    [ST_SCHED_PAUSE] = { "UPDATE schedules SET paused = ?2, updated_at = ?3 WHERE id = ?1",
                         "pause or resume a schedule" },
    [ST_SCHED_DELETE] = { "DELETE FROM schedules WHERE id = ?1", "delete a schedule" },
    [ST_SCHED_FIRE] = { "UPDATE schedules SET last_tick = ?2, fired = fired + ?3,"
                        " skipped = skipped + ?4, updated_at = ?5,"
                        " last_run_id = coalesce(?6, last_run_id) WHERE id = ?1",
                        "fire a schedule's tick" },
    [ST_STEPS_TO_RETRY] = { "SELECT step_id FROM steps WHERE run_id = ?1"
                            " AND status IN ('failed', 'cancelled') ORDER BY idx",
                            "read the steps to retry" },
    [ST_STEPS_RETRY] = { "UPDATE steps INDEXED BY " STEPS_PK
                         " SET status = 'pending', attempt = 0, started_at = NULL, completed_at = NULL,"
                         " wake_at = NULL, error_message = NULL,"
                         " error_code = NULL, output = NULL"
                         " WHERE run_id = ?1 AND status IN ('failed', 'cancelled')",
                         "reset the steps to retry" },
    [ST_RUN_RETRY] = { "UPDATE runs SET status = 'running', output = NULL, error_message = NULL,"
                       " completed_at = NULL, deadline_at = ?2 WHERE id = ?1",
                       "retry a run" },
    [ST_READ_BEGIN] = { "BEGIN", "begin a read" },
    [ST_WF_BY_ID] = { WF_COLS " WHERE id = ?1", "read a workflow" },
    [ST_WF_BY_NAME] = { WF_COLS " WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                        "read a workflow" },
    /* The run columns in ST_RUNS_UNFINISHED's order (read.c run_from_row). */
    [ST_RUN_LOAD] = { "SELECT r.id, r.workflow_id, r.status, r.input, r.order_id,"
                      " r.created_at, r.deadline_at,"
                      " (SELECT amount FROM orders WHERE id = r.order_id), w.definition,"
                      " r.output, r.error_message, r.priority"
                      " FROM runs r JOIN workflows w ON w.id = r.workflow_id WHERE r.id = ?1",
                      "read a run" },
    /* In primary key order (step id): an ORDER BY idx would need a sorter
     * per run, and no reader depends on the order. */
    [ST_STEPS_LOAD] = { "SELECT step_id, status, attempt, wake_at, started_at, output"
                        " FROM steps WHERE run_id = ?1",
                        "read a run's steps" },
    /* The unfinished runs after (?1, ?2), oldest first, each with its steps
     * (step columns NULL for a run without any): the runs are the outer
     * loop, in runs_unfinished order, the steps found by primary key, so
     * no sorter is needed. No LIMIT: read.c stops stepping after a page of
     * runs, so that a page never ends inside a run. The definition is not
     * joined in: read.c reads it once per workflow. INDEXED BY: without
     * statistics the planner picks runs_status and sorts. */
    [ST_RUNS_UNFINISHED] = { "SELECT r.id, r.workflow_id, r.status, r.input, r.order_id,"
                             " r.created_at, r.deadline_at,"
                             " (SELECT amount FROM orders WHERE id = r.order_id),"
                             " s.step_id, s.status, s.attempt, s.wake_at, s.started_at, s.output,"
                             " r.priority"
                             " FROM runs r INDEXED BY runs_unfinished"
                             " LEFT JOIN steps s ON s.run_id = r.id"
                             " WHERE " UNFINISHED_R
                             " AND (r.created_at, r.id) > (?1, ?2) ORDER BY r.created_at, r.id",
                             "list unfinished runs" },
    [ST_RUN_STATUS] = { "SELECT status FROM runs WHERE id = ?1", "read a run's status" },
    [ST_RUN_JSON] = { RUN_COLS " WHERE r.id = ?1", "read a run" },
    [ST_STEPS_JSON] = { "SELECT step_id, type, status, attempt, max_attempts, depends_on,"
                        " started_at, completed_at, wake_at, error_message, output"
                        " FROM steps WHERE run_id = ?1 ORDER BY idx",
                        "read a run's steps" },
    [ST_EVENTS_JSON] = { "SELECT seq, type, step_id, at, data, gid FROM events"
                         " WHERE run_id = ?1 AND seq > ?2 ORDER BY seq",
                         "read a run's events" },
    [ST_ORDER_JSON] = { "SELECT id, amount, status, created_at, updated_at FROM orders"
                        " WHERE id = ?1",
                        "read an order" },
    [ST_SCHED_READ] = { "SELECT " SCHED_COLS " FROM schedules WHERE id = ?1", "read a schedule" },
    [ST_SCHED_LIST] = { "SELECT " SCHED_COLS " FROM schedules ORDER BY created_at, id",
                        "read the schedules" },
    [ST_KV_READ] = { "SELECT value FROM kv WHERE key = ?1", "read a key" },
    [ST_WF_LIST] = { "SELECT id, name, version, created_at,"
                     " CASE WHEN json_valid(definition)"
                     " THEN json_extract(definition, '$.description') END"
                     " FROM workflows ORDER BY created_at DESC, rowid DESC"
                     " LIMIT ?3 OFFSET ?4",
                     "list workflows" },
    [ST_WF_COUNT] = { "SELECT count(*) FROM workflows", "count workflows" },
    [ST_RUNS_LIST] = { RUN_COLS RUNS_PAGE, "list runs" },
    [ST_RUNS_LIST_STATUS] = { RUN_COLS " WHERE" RUNS_BY_STATUS RUNS_PAGE, "list runs" },
    [ST_RUNS_LIST_WF] = { RUN_COLS " WHERE" RUNS_BY_WF RUNS_PAGE, "list runs" },
    [ST_RUNS_LIST_STATUS_WF] = { RUN_COLS " WHERE" RUNS_BY_STATUS " AND" RUNS_BY_WF RUNS_PAGE,
                                 "list runs" },
    [ST_RUNS_LIST_FILTERED] = { RUN_COLS RUNS_FILTERED RUNS_PAGE, "list runs" },
    [ST_RUNS_COUNT_FILTERED] = { RUNS_COUNT RUNS_FILTERED, "count runs" },
    [ST_RUNS_COUNT] = { RUNS_COUNT, "count runs" },
    [ST_RUNS_COUNT_STATUS] = { RUNS_COUNT " WHERE" RUNS_BY_STATUS, "count runs" },
    [ST_RUNS_COUNT_WF] = { RUNS_COUNT " WHERE" RUNS_BY_WF, "count runs" },
    [ST_RUNS_COUNT_STATUS_WF] = { RUNS_COUNT " WHERE" RUNS_BY_STATUS " AND" RUNS_BY_WF,
                                  "count runs" },
    [ST_ORDERS_LIST] = { "SELECT id, amount, status, created_at, updated_at FROM orders"
                         " ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?4",
                         "list orders" },
    [ST_ORDERS_COUNT] = { "SELECT count(*) FROM orders", "count orders" },
    [ST_EVENTS_SINCE] = { "SELECT seq, type, step_id, at, data, gid, run_id FROM events"
                          " WHERE gid > ?1 ORDER BY gid LIMIT ?2",
                          "read events" },
    [ST_RUNS_BY_STATUS] = { "SELECT status, count(*) FROM runs GROUP BY status",
                            "count runs by status" },
    [ST_STEPS_BY_STATUS] = { "SELECT status, count(*) FROM steps GROUP BY status",
                             "count steps by status" },
    /* A real read of the file, unlike "SELECT 1". */
    [ST_PING] = { "SELECT version FROM schema_version", "read the database" },
    [ST_SNAP_WORKFLOWS] = { "SELECT * FROM workflows ORDER BY created_at DESC, rowid DESC LIMIT ?1",
                            "read table workflows" },
    [ST_SNAP_RUNS] = { "SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?1",
                       "read table runs" },
    [ST_SNAP_STEPS] = { SNAP_STEPS, "read table steps" },
    [ST_SNAP_STEPS_COUNT] = { "SELECT count(*) FROM steps", "count table steps" },
    [ST_SNAP_EVENTS] = { "SELECT * FROM events ORDER BY gid DESC LIMIT ?1", "read table events" },
    [ST_SNAP_EVENTS_COUNT] = { "SELECT count(*) FROM events", "count table events" },
    /* rowid order: the order signals were sent in, without a sorter. */
    [ST_SNAP_SIGNALS] = { "SELECT * FROM signals ORDER BY rowid DESC LIMIT ?1",
                          "read table signals" },
    [ST_SNAP_SIGNALS_COUNT] = { "SELECT count(*) FROM signals", "count table signals" },
    [ST_SNAP_KV] = { "SELECT * FROM kv ORDER BY updated_at DESC, key LIMIT ?1", "read table kv" },
    [ST_SNAP_KV_COUNT] = { "SELECT count(*) FROM kv", "count table kv" },
    [ST_SNAP_GID_FLOOR] = { "SELECT * FROM gid_floor LIMIT ?1", "read table gid_floor" },
    [ST_SNAP_GID_FLOOR_COUNT] = { "SELECT count(*) FROM gid_floor", "count table gid_floor" },
    [ST_SNAP_SCHEDULES] = { "SELECT * FROM schedules ORDER BY created_at DESC, id LIMIT ?1",
                            "read table schedules" },
    [ST_SNAP_SCHEDULES_COUNT] = { "SELECT count(*) FROM schedules", "count table schedules" },
    [ST_SNAP_ORDERS] = { "SELECT * FROM orders ORDER BY created_at DESC, rowid DESC LIMIT ?1",
                         "read table orders" },
    [ST_SNAP_SCHEMA_VERSION] = { "SELECT * FROM schema_version ORDER BY version DESC LIMIT ?1",
                                 "read table schema_version" },
    [ST_SNAP_SCHEMA_VERSION_COUNT] = { "SELECT count(*) FROM schema_version",
                                       "count table schema_version" },
};

/* What st does, for an error message: the statement is found by its SQL,
 * which is cheap enough on the error path and saves every call site a
 * parameter. */
static const char *stmt_what(sqlite3_stmt *st)
{
    const char *sql = sqlite3_sql(st);
    size_t i;

    for (i = 0; sql && i < ST_COUNT; i++) {
        if (strcmp(sql, stmt_defs[i].sql) == 0)
            return stmt_defs[i].what;
    }
    return "run a statement";
}

const char *store_stmt_sql(enum stmt_id id)
{
    DUR_ASSERT(id < ST_COUNT);
    return stmt_defs[id].sql;
}

/* Binds the arguments described by fmt (see stmt_get) to ?1, ?2, ... */
static int bind_args(sqlite3_stmt *st, const char *fmt, va_list ap)
{
    int rc = SQLITE_OK;
    int i;

    for (i = 0; fmt[i] && rc == SQLITE_OK; i++) {
        int pos = i + 1;
        switch (fmt[i]) {
        case 's':
            rc = sqlite3_bind_text(st, pos, va_arg(ap, const char *), -1, SQLITE_STATIC);
            break;
        case 'I':
            rc = sqlite3_bind_int64(st, pos, va_arg(ap, int64_t));
            break;
        case 'i':
            rc = sqlite3_bind_int(st, pos, va_arg(ap, int));
            break;
        case 'f':
            rc = sqlite3_bind_double(st, pos, va_arg(ap, double));
            break;
        case 'T': {
            int64_t ms = va_arg(ap, int64_t);
            rc = ms ? sqlite3_bind_int64(st, pos, ms) : sqlite3_bind_null(st, pos);
            break;
        }
        default:
            DUR_ASSERT(!"bad bind format");
        }
    }
    return rc;
}

static durable_code stmt_vget(struct conn *c, enum stmt_id id, sqlite3_stmt **out,
                              durable_error *err, const char *fmt, va_list ap)
{
    const struct stmt_def *def = &stmt_defs[id];
    sqlite3_stmt *st = c->stmts[id];
    int rc;

    DUR_ASSERT(id < ST_COUNT && def->sql);
    *out = NULL;
    if (!st) {
        rc = sqlite3_prepare_v3(c->db, def->sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK) {
            return err_set(err, DURABLE_EIO, "could not %s: %s", def->what, sqlite3_errmsg(c->db));
        }
        c->stmts[id] = st;
    }
    stmt_release(st);
    rc = bind_args(st, fmt, ap);
    if (rc != SQLITE_OK) {
        stmt_release(st);
        return err_set(err, DURABLE_EIO, "could not %s: %s", def->what, sqlite3_errstr(rc));
    }
    *out = st;
    return DURABLE_OK;
}

durable_code stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **out, durable_error *err,
                      const char *fmt, ...)
{
    durable_code rc;
    va_list ap;

    va_start(ap, fmt);
    rc = stmt_vget(c, id, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

durable_code stmt_step(sqlite3_stmt *st, bool *has_row, durable_error *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        if (has_row)
            *has_row = rc == SQLITE_ROW;
        return DURABLE_OK;
    }
    return err_set(err, DURABLE_EIO, "could not %s: %s", stmt_what(st),
                   sqlite3_errmsg(sqlite3_db_handle(st)));
}

void stmt_release(sqlite3_stmt *st)
{
    if (!st)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

durable_code stmt_exec(struct conn *c, enum stmt_id id, durable_error *err, const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    durable_code rc;
    va_list ap;

    va_start(ap, fmt);
    rc = stmt_vget(c, id, &st, err, fmt, ap);
    va_end(ap);
    if (rc == DURABLE_OK)
        rc = stmt_step(st, NULL, err);
    stmt_release(st);
    return rc;
}

char *col_strdup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? xstrdup((const char *)t) : NULL;
}

const char *col_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

void col_copy_id(sqlite3_stmt *st, int col, char out[ID_MAX])
{
    const char *t = col_text(st, col);
    snprintf(out, ID_MAX, "%s", t ? t : "");
}

/* ---- statuses ---- */

/* ---- opening ---- */

/* Runs a PRAGMA (a constant text) and copies its first result into out. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t out_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    out[0] = '\0';
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(st, 0);
        snprintf(out, out_len, "%s", t ? t : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static durable_code conn_pragmas(struct conn *c, const char *path, durable_durability durability,
                                 bool is_reader, durable_error *err)
{
    const char *sync = durability == DURABLE_DURABILITY_PROCESS ? "PRAGMA synchronous=NORMAL"
                                                                : "PRAGMA synchronous=FULL";
    char mode[16];
    int rc;

    sqlite3_extended_result_codes(c->db, 1);
    rc = sqlite3_busy_timeout(c->db, 10000);
    if (rc == SQLITE_OK)
        rc = pragma_text(c->db, "PRAGMA journal_mode=WAL", mode, sizeof(mode));
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, sync, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc == SQLITE_OK && is_reader)
        rc = sqlite3_exec(c->db, "PRAGMA query_only=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return err_set(err, DURABLE_EIO, "could not open database \"%s\": %s", path,
                       sqlite3_errmsg(c->db));
    }
    if (strcmp(mode, "wal") != 0) {
        return err_set(err, DURABLE_EIO,
                       "could not open database \"%s\": journal mode is \"%s\", not wal", path,
                       mode);
    }
    return DURABLE_OK;
}

static durable_code conn_open(struct conn *c, const char *path, durable_durability durability,
                              bool is_reader, durable_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (is_reader ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);

    if (rc != SQLITE_OK) {
        return err_set(err, DURABLE_EIO, "could not open database \"%s\": %s", path,
                       c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    }
    return conn_pragmas(c, path, durability, is_reader, err);
}

static void conn_close(struct conn *c)
{
    size_t i;

    for (i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(c->stmts[i]);
        c->stmts[i] = NULL;
    }
    sqlite3_close(c->db); /* accepts NULL */
    c->db = NULL;
}

/* The version recorded in schema_version (0 for a new database). */
static int read_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &st,
                                NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static int write_version(sqlite3 *db, int version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(db, "DELETE FROM schema_version", NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO schema_version (version) VALUES (?1)", -1, &st,
                                NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 1, version);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    return rc;
}

/* Brings the schema to store_schema_version() in one transaction. */
static durable_code migrate(sqlite3 *db, const char *path, durable_error *err)
{
    int known = sqlite_schema_version();
    int version = 0;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    durable_code code = DURABLE_OK;

    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
        rc = read_version(db, &version);
    if (rc == SQLITE_OK && version > known) {
        code = err_set(err, DURABLE_EUNSUPPORTED,
                       "database schema version %d is newer than this durable (knows %d)", version,
                       known);
        goto done;
    }
    for (; rc == SQLITE_OK && version < known; version++)
        rc = sqlite3_exec(db, migrations[version], NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = write_version(db, version);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        code = err_set(err, DURABLE_EIO, "could not migrate database \"%s\": %s", path,
                       sqlite3_errmsg(db));
    }
done:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return code;
}

/* DURABLE_FAILPOINT_COMMIT's kinds (commit_fault_parse): commits fail as
 * SQLite fails them when the disk is full (SQLITE_FULL) or a write fails
 * (SQLITE_IOERR), the transaction rolled back. */
#ifdef DURABLE_FAILPOINTS
static const char *const fault_kinds[] = { "full", "ioerr", NULL };
static const int fault_codes[] = { 0, SQLITE_FULL, SQLITE_IOERR };
#endif

/* location is a path or "sqlite:PATH" (store.c chose this backend for it). */
durable_code sqlite_open(const char *location, durable_durability durability, struct store **out,
                         durable_error *err)
{
    const char *path = strncmp(location, "sqlite:", 7) == 0 ? location + 7 : location;
    struct sqlite_store *s = xcalloc(1, sizeof(*s));
    durable_code rc;

    *out = NULL;
    s->path = xstrdup(path);
    s->durability = durability;
    s->base.ops = &sqlite_store_ops;
    s->max_open = STORE_READERS;
    pthread_mutex_init(&s->read_mu, NULL);
    pthread_cond_init(&s->read_cond, NULL);
#ifdef DURABLE_FAILPOINTS
    rc = commit_fault_parse(&s->fault, fault_kinds, err);
    if (rc == DURABLE_OK)
        rc = conn_open(&s->w, path, durability, false, err);
#else
    rc = conn_open(&s->w, path, durability, false, err);
#endif
    if (rc == DURABLE_OK)
        rc = migrate(s->w.db, path, err);
    /* The first reader now, so that a database it cannot read fails here. */
    if (rc == DURABLE_OK)
        rc = conn_open(&s->readers[0], path, durability, true, err);
    s->n_open = 1;
    if (rc != DURABLE_OK) {
        sqlite_close(&s->base);
        return rc;
    }
    s->idle[s->n_idle++] = &s->readers[0];
    *out = &s->base;
    return DURABLE_OK;
}

void sqlite_close(struct store *base)
{
    struct sqlite_store *s = sqlite_of(base);
    if (!s)
        return;
    for (size_t i = 0; i < s->n_open; i++)
        conn_close(&s->readers[i]);
    conn_close(&s->w);
    pthread_cond_destroy(&s->read_cond);
    pthread_mutex_destroy(&s->read_mu);
    free(s->path);
    free(s);
}

/* ---- the read pool ---- */

/* Opens readers[i], reserved by the caller. False (logged) if it fails. */
static bool reader_open(struct sqlite_store *s, size_t i)
{
    durable_error err = { 0 };

    if (conn_open(&s->readers[i], s->path, s->durability, true, &err) == DURABLE_OK)
        return true;
    log_warn("could not open another read connection, reading on %zu: %s", i, err.msg);
    conn_close(&s->readers[i]);
    return false;
}

struct conn *store_reader_take(struct sqlite_store *s)
{
    struct conn *c = NULL;
    size_t i;

    pthread_mutex_lock(&s->read_mu);
    while (s->n_idle == 0 && s->n_open >= s->max_open)
        pthread_cond_wait(&s->read_cond, &s->read_mu);
    if (s->n_idle > 0) {
        c = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->read_mu);
        return c;
    }
    i = s->n_open++; /* reserved: opened outside the mutex */
    pthread_mutex_unlock(&s->read_mu);
    if (reader_open(s, i))
        return &s->readers[i];
    pthread_mutex_lock(&s->read_mu);
    /* Only the last reserved slot can be given back; otherwise the slot
     * stays reserved and closed, and no more are opened. */
    if (s->n_open == i + 1)
        s->n_open = i;
    s->max_open = s->n_open;
    while (s->n_idle == 0)
        pthread_cond_wait(&s->read_cond, &s->read_mu);
    c = s->idle[--s->n_idle];
    pthread_mutex_unlock(&s->read_mu);
    return c;
}

void store_reader_put(struct sqlite_store *s, struct conn *c)
{
    pthread_mutex_lock(&s->read_mu);
    DUR_ASSERT(s->n_idle < STORE_READERS);
    s->idle[s->n_idle++] = c;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_mu);
}

durable_code sqlite_synchronous(struct store *base, int *out_level, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc;

    rc = stmt_get(&s->w, ST_PRAGMA_SYNCHRONOUS, &st, err, "");
    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK && !has_row)
        rc = err_set(err, DURABLE_EIO, "could not read the synchronous setting: no result");
    if (rc == DURABLE_OK)
        *out_level = sqlite3_column_int(st, 0);
    stmt_release(st);
    return rc;
}

durable_code store_read_begin(struct conn *c, durable_error *err)
{
    return stmt_exec(c, ST_READ_BEGIN, err, "");
}

void store_read_end(struct conn *c)
{
    /* A read transaction has nothing to lose: COMMIT just ends it. */
    if (!sqlite3_get_autocommit(c->db) && stmt_exec(c, ST_COMMIT, NULL, "") != DURABLE_OK)
        log_error("could not end a read: %s", sqlite3_errmsg(c->db));
}

/* ---- transactions (writer thread) ---- */

/* The largest global event id in the database, into s->last_gid. */
static durable_code read_last_gid(struct sqlite_store *s, durable_error *err)
{
    sqlite3_stmt *st = NULL;
    bool has_row = false;
    durable_code rc = stmt_get(&s->w, ST_EVENT_MAX_GID, &st, err, "");

    if (rc == DURABLE_OK)
        rc = stmt_step(st, &has_row, err);
    if (rc == DURABLE_OK)
        s->last_gid = has_row ? sqlite3_column_int64(st, 0) : 0;
    stmt_release(st);
    return rc;
}

void store_seq_forget(struct sqlite_store *s)
{
    s->seq_run[0] = '\0';
}

durable_code sqlite_tx_begin(struct store *base, durable_error *err)
{
    struct sqlite_store *s = sqlite_of(base);
    durable_code rc = stmt_exec(&s->w, ST_BEGIN, err, "");

    store_seq_forget(s);
    /* Under the write lock: the last id is the database's, whoever wrote
     * it, and a rolled-back batch gives its ids out again. */
    if (rc == DURABLE_OK) {
        rc = read_last_gid(s, err);
        if (rc != DURABLE_OK)
            sqlite_tx_rollback(&s->base);
    }
    return rc;
}

durable_code sqlite_tx_commit(struct store *base, struct store_events *ev, durable_error *err)
{
    (void)ev; /* numbered as appended: one writer */
    struct sqlite_store *s = sqlite_of(base);

#ifdef DURABLE_FAILPOINTS
    if (commit_fault_due(&s->fault)) {
        sqlite_tx_rollback(base);
        return err_set(err, DURABLE_EIO, "could not commit: %s",
                       sqlite3_errstr(fault_codes[s->fault.kind]));
    }
#endif
    return stmt_exec(&s->w, ST_COMMIT, err, "");
}

void sqlite_tx_rollback(struct store *base)
{
    struct sqlite_store *s = sqlite_of(base);
    store_seq_forget(s);
    /* After some errors SQLite has already rolled back on its own. */
    if (sqlite3_get_autocommit(s->w.db))
        return;
    if (stmt_exec(&s->w, ST_ROLLBACK, NULL, "") != DURABLE_OK)
        log_error("could not roll back: %s", sqlite3_errmsg(s->w.db));
}

const struct store_ops sqlite_store_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .schema_version = sqlite_schema_version,
    .synchronous = sqlite_synchronous,
    .tx_begin = sqlite_tx_begin,
    .tx_commit = sqlite_tx_commit,
    .tx_rollback = sqlite_tx_rollback,
    .rows = &sqlite_rows_ops,
    .workflow_get = sqlite_workflow_get,
    .run_load = sqlite_run_load,
    .runs_unfinished = sqlite_runs_unfinished,
    .run_find_by_key = sqlite_run_find_by_key,
    .run_status = sqlite_run_status,
    .run_read = sqlite_run_read,
    .events_read = sqlite_events_read,
    .events_since = sqlite_events_since,
    .order_read = sqlite_order_read,
    .runs_page = sqlite_runs_page,
    .workflows_page = sqlite_workflows_page,
    .orders_page = sqlite_orders_page,
    .snapshot_json = sqlite_snapshot_json,
    .count_runs = sqlite_count_runs,
    .count_steps = sqlite_count_steps,
    .ping = sqlite_ping,
    .kv_read = sqlite_kv_read,
    .schedules_read = sqlite_schedules_read,
    .cluster = NULL,
};
