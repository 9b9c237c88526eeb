/*
 * write.c - the PostgreSQL backend's row operations (struct
 * store_rows_ops, backend.h): the reads and writes store_apply
 * (store/apply.c) decides over, as prepared statements on the write
 * connection, inside the writer's open transaction, in libpq's pipeline
 * mode: a read is one round trip, a write is sent and its answer read
 * later. Nothing here decides whether a transition applies: the guards
 * and events are apply.c's. What the server would answer is not asked
 * when the transaction already knows it (a run it inserted, the run of
 * the last guard read), writes that would change nothing are not sent,
 * and a transaction's events go as one statement (held back until the
 * next read, savepoint or COMMIT): see "writes held back" and
 * pg_row_run_get.
 *
 * Statements are prepared on first use (PQprepare), once per connection:
 * a connection reset by pg_tx_begin (the server restarted) forgets them
 * (pg_write_begin), and they are prepared again.
 *
 * A commit goes in two halves (pg_write_commit_send, _wait), so that the
 * writer can begin the next transaction between them: its BEGIN and its
 * guards are sent behind the COMMIT and the sync, the server runs them as
 * soon as the COMMIT is done, and the guards are read after the COMMIT's
 * answer (s->prev: what of the pipeline's unread results is the earlier
 * transaction's, and its numbering). Nothing of the next transaction is
 * applied before that answer, so its reads see the earlier one's writes;
 * if the earlier one failed, the caller rolls both back.
 *
 * Event numbering, as SQLite's (sqlite/write.c), with one counter for all
 * nodes:
 *   - seq: s->seq_run/seq_last is the last seq of one run, known inside the
 *     transaction (read by run_get, or given out by the last append).
 *   - gid: the server gives them, in the statement that inserts the
 *     events held back (PG_W_EVENTS_INSERT): it adds their number to the
 *     event_counter row, which locks it until the commit, and numbers
 *     them on from the counter's value before. So the transactions that
 *     append events are serialized from their first insert to their
 *     commit (a short while: usually the insert goes with COMMIT), gids
 *     are given out in commit order, and a transaction's events are
 *     inserted only after every earlier gid has committed, so a reader
 *     (events_since, any snapshot) never sees gid N+1 without N.
 *     Until then apply.c is given gids counted on from the last one this
 *     writer knows committed (gid_base); the insert answers what the
 *     server added to them (gid_shift, 0 unless another node committed
 *     events meanwhile), and pg_write_commit adds it to the events of the
 *     list the writer publishes.
 *     No gap: a transaction's gids are contiguous from the counter's value,
 *     the counter is written with the events by one statement, and
 *     events_undo gives the tail back (the next append reuses it; a
 *     savepoint rolled back takes its inserts and what they added to the
 *     counter with it).
 *
 * Runs are inserted owned by this node (owner_node, owner_epoch) once it
 * has joined (s->owner_epoch > 0), unowned otherwise. An idempotency key is
 * unique per workflow by the runs constraint: an insert that finds the key
 * taken (a run another node committed meanwhile) is DURABLE_EIO, and the
 * writer's retry of the batch then finds that run (run_by_key).
 *
 * Fencing (postgres.md 3.4): the guard read of every transition locks the
 * run's row FOR SHARE and reads its owner; store_apply refuses an
 * executor's transition (DURABLE_EFENCED) when the owner is no longer this
 * node at its epoch, and the lock holds until COMMIT, so a takeover (which
 * updates the row) waits for the commit and then sees what it wrote. A
 * caller's decision, cancel or retry NOTIFYs durable_run with the run id
 * (run_notify), delivered to the owner at COMMIT.
 *
 * Writer thread only.
 */
#include "util/common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_int.h"

/* A run is active while pending, running or waiting (unfinished and not
 * paused: a paused run keeps its status while its steps change). */
#define ACTIVE     "(status = 'pending' OR status = 'running' OR status = 'waiting')"
#define WHERE_STEP " WHERE run_id = $1 AND step_id = $2"
/* A run's status from its steps': running while one runs, waiting while
 * one waits or retries, running again after a wait, else as it is. */
#define RUN_STATUS_FROM_STEPS                                                                \
    "(CASE WHEN EXISTS (SELECT 1 FROM steps s WHERE s.run_id = $1 AND s.status = 'running')" \
    " THEN 'running'"                                                                        \
    " WHEN EXISTS (SELECT 1 FROM steps s WHERE s.run_id = $1"                                \
    " AND (s.status = 'retrying' OR s.status = 'waiting'))"                                  \
    " THEN 'waiting' WHEN runs.status = 'waiting' THEN 'running' ELSE runs.status END)"
#define LAST_SEQ_R "(SELECT coalesce(max(seq), 0) FROM events WHERE run_id = r.id)"
/* A guard's row (runs r, its step s, the step's id STEP): the run's
 * status and order, its last seq, the step's status, attempt and type,
 * the run's owner and epoch, whether it started, and whether another step
 * than STEP runs, retries or waits. */
#define GUARD_COLS(STEP)                                                               \
    "r.status, r.order_id, " LAST_SEQ_R ", s.status, s.attempt, s.type, r.owner_node," \
    " r.owner_epoch, r.started_at IS NOT NULL, EXISTS (SELECT 1 FROM steps o"          \
    " WHERE o.run_id = r.id AND o.status IN ('running', 'retrying', 'waiting')"        \
    " AND (" STEP " IS NULL OR o.step_id <> " STEP "))"

/* The finished runs a purge selects ($1 finished before, $2 workflow name,
 * $3 status, $4 run id; NULL: any); a retention pass ($5 now, $6 the
 * server's window or NULL): those finished before now minus their
 * workflow version's window, or the server's for a version without one.
 * Its first bound, now minus the smallest window, is a range of the index
 * runs_finished; no window at all selects nothing. */
#define PG_RETAIN_BIG "9000000000000000"
#define PG_PURGE_WHERE                                                                                   \
    "status IN ('completed', 'failed', 'cancelled') AND completed_at < $1::bigint"                       \
    " AND ($2::text IS NULL OR workflow_id IN (SELECT id FROM workflows WHERE name = $2))"               \
    " AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR id = $4)"                           \
    " AND ($5::bigint IS NULL OR (completed_at < $5::bigint - least(coalesce($6::bigint, " PG_RETAIN_BIG \
    "), coalesce((SELECT min(retain_ms) FROM workflows), " PG_RETAIN_BIG "))"                            \
    " AND completed_at < $5::bigint - coalesce((SELECT w.retain_ms FROM workflows w"                     \
    " WHERE w.id = runs.workflow_id), $6::bigint)))"

/* The rows of the step writes held back, joined to their steps. */
#define SW_FROM                                                                     \
    " FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::text[])" \
    " AS u(run_id, step_id, attempt, at, output)"                                   \
    " WHERE steps.run_id = u.run_id AND steps.step_id = u.step_id"

/* Each statement's SQL and what it does, for messages ("could not X"). */

static const struct pg_wstmt {
    const char *sql;
    const char *what;
} wstmts[PG_W_COUNT] = {
    /* FOR SHARE: the fence (the owner read here holds until COMMIT). */
    [PG_W_RUN_GUARD] = { "SELECT " GUARD_COLS(
                                 "$2::text") " FROM runs r LEFT JOIN steps s"
                                             " ON s.run_id = r.id AND s.step_id = $2 WHERE r.id = $1 FOR SHARE OF r",
                         "read a step" },
    /* PG_W_RUN_GUARD of runs $1 and their steps $2 (NULL: none) at once,
     * each row with its guard's place in the arrays (from 1) last. Each
     * run and step is found by its key (lateral: no join over the tables),
     * and each run's row locked as it is found. */
    [PG_W_GUARDS] = { "SELECT " GUARD_COLS(
                              "g.step_id") ", g.ord FROM unnest($1::text[], $2::text[])"
                                           " WITH ORDINALITY AS g(run_id, step_id, ord) CROSS JOIN LATERAL"
                                           " (SELECT id, status, order_id, owner_node, owner_epoch, started_at"
                                           " FROM runs WHERE runs.id = g.run_id FOR SHARE) r LEFT JOIN LATERAL"
                                           " (SELECT status, attempt, type FROM steps WHERE steps.run_id = g.run_id"
                                           " AND steps.step_id = g.step_id OFFSET 0) s ON true",
                      "read the steps" },
    [PG_W_NOTIFY_RUN] = { "SELECT pg_notify('" PG_CHANNEL_RUN "', $1)", "tell a run's owner" },
    /* A key names one run per workflow, whatever its version. */
    [PG_W_RUN_BY_KEY] = { "SELECT id FROM runs WHERE idempotency_key = $2"
                          " AND workflow_name = (SELECT name FROM workflows WHERE id = $1)",
                          "look up an idempotency key" },
    [PG_W_WF_EXISTS] = { "SELECT 1 FROM workflows WHERE id = $1", "look up a workflow" },
    [PG_W_WF_LATEST] = { "SELECT id, version, definition FROM workflows WHERE name = $1"
                         " ORDER BY version DESC LIMIT 1",
                         "read a workflow" },
    [PG_W_ORDER_STATUS] = { "SELECT status FROM orders WHERE id = $1", "read an order" },
    [PG_W_STEP_START] = { "UPDATE steps SET status = 'running', attempt = $3::integer,"
                          " started_at = $4::bigint, completed_at = NULL, wake_at = NULL,"
                          " error_message = NULL, error_code = NULL" WHERE_STEP,
                          "start a step" },
    [PG_W_STEP_RUN] = { "UPDATE steps SET status = 'completed', attempt = $3::integer,"
                        " started_at = $4::bigint, completed_at = $4::bigint, wake_at = NULL,"
                        " error_message = NULL, error_code = NULL, output = $5" WHERE_STEP,
                        "run a step" },
    [PG_W_STEP_COMPLETE] = { "UPDATE steps SET status = 'completed', output = $3,"
                             " completed_at = $4::bigint" WHERE_STEP,
                             "complete a step" },
    [PG_W_STEP_RETRY] = { "UPDATE steps SET status = 'retrying', wake_at = $3::bigint,"
                          " error_message = $4, error_code = $5" WHERE_STEP,
                          "schedule a retry" },
    [PG_W_STEP_FAIL] = { "UPDATE steps SET status = 'failed', completed_at = $3::bigint,"
                         " error_message = $4, error_code = $5" WHERE_STEP,
                         "fail a step" },
    [PG_W_STEP_SKIP] = { "UPDATE steps SET status = 'skipped', completed_at = $3::bigint" WHERE_STEP,
                         "skip a step" },
    [PG_W_STEP_WAIT] = { "UPDATE steps SET status = 'waiting', wake_at = $3::bigint,"
                         " signal = $4" WHERE_STEP,
                         "make a step wait" },
    [PG_W_SIGNAL_INSERT] = { "INSERT INTO signals (id, run_id, name, payload, seq, created_at)"
                             " VALUES ($1, $2, $3, $4, $5::bigint, $6::bigint)",
                             "store a signal" },
    [PG_W_SIGNAL_NEXT] = { "SELECT id, payload FROM signals WHERE run_id = $1 AND name = $2"
                           " AND taken_by IS NULL ORDER BY seq LIMIT 1",
                           "read a signal" },
    [PG_W_SIGNAL_TAKE] = { "UPDATE signals SET taken_by = $2, taken_at = $3::bigint WHERE id = $1",
                           "take a signal" },
    [PG_W_SIGNAL_WAITER] = { "SELECT step_id, attempt FROM steps WHERE run_id = $1"
                             " AND status = 'waiting' AND signal = $2 ORDER BY idx LIMIT 1",
                             "find a step waiting for a signal" },
    /* Recovery runs a running step again under its attempt and key. */
    [PG_W_STEP_RESTART] = { "UPDATE steps SET started_at = $3::bigint,"
                            " attempt = greatest(attempt, 1)" WHERE_STEP " AND status = 'running'",
                            "restart a step" },
    [PG_W_STEP_PROGRESS] = { "UPDATE steps SET output = $3" WHERE_STEP " AND status = 'running'",
                             "record a map step's progress" },
    /* Both status updates leave the row alone when nothing changes. */
    [PG_W_RUN_RUNNING] = { "UPDATE runs SET status = CASE WHEN status = 'paused' THEN status"
                           " ELSE 'running' END, started_at = coalesce(started_at, $2::bigint)"
                           " WHERE id = $1 AND ((status <> 'running' AND status <> 'paused')"
                           " OR started_at IS NULL)",
                           "start a run" },
    [PG_W_RUN_PAUSE] = { "UPDATE runs SET status = 'paused' WHERE id = $1", "pause a run" },
    [PG_W_RUN_RESUME] = { "UPDATE runs SET status = (CASE WHEN EXISTS (SELECT 1 FROM steps s"
                          " WHERE s.run_id = $1 AND s.status = 'running') THEN 'running'"
                          " WHEN EXISTS (SELECT 1 FROM steps s WHERE s.run_id = $1"
                          " AND (s.status = 'retrying' OR s.status = 'waiting')) THEN 'waiting'"
                          " WHEN started_at IS NULL THEN 'pending' ELSE 'running' END)"
                          " WHERE id = $1 AND status = 'paused'",
                          "resume a run" },
    [PG_W_RUN_RECOMPUTE] = { "UPDATE runs SET status = " RUN_STATUS_FROM_STEPS
                             " WHERE id = $1 AND " ACTIVE " AND status <> " RUN_STATUS_FROM_STEPS,
                             "update a run's status" },
    /* A run that held a place of its concurrency group frees it: the
     * nodes holding runs of a group are told at COMMIT. */
    [PG_W_RUN_FINISH] = { "WITH u AS (UPDATE runs SET status = $2, output = $3, error_message = $4,"
                          " completed_at = $5::bigint WHERE id = $1 RETURNING flow_key)"
                          " SELECT pg_notify('" PG_CHANNEL_FLOW "', '') FROM u"
                          " WHERE flow_key IS NOT NULL",
                          "finish a run" },
    [PG_W_STEPS_CANCEL] = { "UPDATE steps SET status = 'cancelled', completed_at = $2::bigint,"
                            " wake_at = NULL WHERE run_id = $1 AND status <> 'completed'"
                            " AND status <> 'failed' AND status <> 'skipped'"
                            " AND status <> 'cancelled'",
                            "cancel a run's steps" },
    [PG_W_RUN_INSERT] = { "INSERT INTO runs (id, workflow_id, status, input, order_id,"
                          " idempotency_key, created_at, deadline_at, owner_node, owner_epoch,"
                          " workflow_name, restarted_from, restarted_step, priority)"
                          " VALUES ($1, $2, 'pending', $3, $4, $5, $6::bigint, $7::bigint, $8,"
                          " $9::bigint, (SELECT name FROM workflows WHERE id = $2), $10, $11,"
                          " $12::bigint)",
                          "create a run" },
    [PG_W_STEP_INSERT] = { "INSERT INTO steps (run_id, idx, step_id, type, status, attempt,"
                           " max_attempts, depends_on, idempotency_key)"
                           " VALUES ($1, $2::integer, $3, $4, 'pending', 0, $5::integer, $6,"
                           " $1 || '/' || $3)",
                           "create a step" },
    /* A new run's steps in one statement ($2.. arrays of PG_W_STEP_INSERT's). */
    [PG_W_STEPS_INSERT] = { "INSERT INTO steps (run_id, idx, step_id, type, status, attempt,"
                            " max_attempts, depends_on, idempotency_key)"
                            " SELECT $1, u.idx, u.step_id, u.type, 'pending', 0, u.max, u.dep,"
                            " $1 || '/' || u.step_id FROM unnest($2::integer[], $3::text[],"
                            " $4::text[], $5::integer[], $6::text[]) AS u(idx, step_id, type, max,"
                            " dep)",
                            "create the steps" },
    [PG_W_STEPS_TO_RETRY] = { "SELECT step_id FROM steps WHERE run_id = $1"
                              " AND status IN ('failed', 'cancelled') ORDER BY idx",
                              "read the steps to retry" },
    [PG_W_STEPS_RETRY] = { "UPDATE steps SET status = 'pending', attempt = 0, started_at = NULL,"
                           " completed_at = NULL, wake_at = NULL, error_message = NULL,"
                           " error_code = NULL, output = NULL"
                           " WHERE run_id = $1 AND status IN ('failed', 'cancelled')",
                           "reset the steps to retry" },
    [PG_W_RUN_RETRY] = { "UPDATE runs SET status = 'running', output = NULL,"
                         " error_message = NULL, completed_at = NULL, deadline_at = $2::bigint"
                         " WHERE id = $1",
                         "retry a run" },
    [PG_W_ORDER_INSERT] = { "INSERT INTO orders (id, amount, status, created_at, updated_at)"
                            " VALUES ($1, $2::double precision, 'pending', $3::bigint, $3::bigint)",
                            "create an order" },
    [PG_W_ORDER_SET_STATUS] = { "UPDATE orders SET status = $2, updated_at = $3::bigint"
                                " WHERE id = $1",
                                "update an order" },
    [PG_W_KV_GET] = { "SELECT value FROM kv WHERE key = $1", "read a key" },
    [PG_W_KV_PUT] = { "INSERT INTO kv (key, value, updated_at) VALUES ($1, $2, $3::bigint)"
                      " ON CONFLICT (key) DO UPDATE SET value = $2, updated_at = $3::bigint",
                      "write a key" },
    [PG_W_WF_INSERT] = { "INSERT INTO workflows (id, name, version, definition, created_at,"
                         " retain_ms) VALUES ($1, $2, $3::integer, $4, $5::bigint, $6::bigint)",
                         "register a workflow" },
    [PG_W_RUN_LAST_SEQ] = { "SELECT " LAST_SEQ_R " FROM runs r WHERE r.id = $1",
                            "number an event" },
    /* The events held back (ev_lit), $7 of them, in one statement, numbered
     * on from the counter, which they move on (locked until COMMIT); the
     * answer is what their gids are over those given to apply.c from $8
     * on. When $9, the other nodes' live streams learn of them at COMMIT
     * (a NOTIFY wakes each listening node: none is sent while no other
     * node is alive, pg_write_commit). */
    [PG_W_EVENTS_INSERT] = { "WITH c AS (UPDATE event_counter SET gid = gid + $7::bigint"
                             " RETURNING gid - $7::bigint AS base),"
                             " i AS (INSERT INTO events (run_id, seq, type, step_id, at, data, gid)"
                             " SELECT u.run_id, u.seq, u.type, u.step_id, u.at, u.data,"
                             " c.base + u.ord FROM c, unnest($1::text[], $2::bigint[], $3::text[],"
                             " $4::text[], $5::bigint[], $6::text[]) WITH ORDINALITY"
                             " AS u(run_id, seq, type, step_id, at, data, ord))"
                             " SELECT c.base + 1 - $8::bigint, CASE WHEN $9::boolean THEN"
                             " pg_notify('" PG_CHANNEL_EVENTS "', (c.base + $7::bigint)::text)"
                             " END FROM c",
                             "append events" },
    /* The step writes held back (sw_lit), each kind in one statement,
     * never two of one step in one (sw_hold). The writer's session plans
     * joins as nested loops (pg.c writer_settings): each row is found by
     * the primary key. */
    [PG_W_STEPS_START] = { "UPDATE steps SET status = 'running', attempt = u.attempt,"
                           " started_at = u.at, completed_at = NULL, wake_at = NULL,"
                           " error_message = NULL, error_code = NULL" SW_FROM,
                           "start steps" },
    [PG_W_STEPS_RUN] = { "UPDATE steps SET status = 'completed', attempt = u.attempt,"
                         " started_at = u.at, completed_at = u.at, wake_at = NULL,"
                         " error_message = NULL, error_code = NULL, output = u.output" SW_FROM,
                         "run steps" },
    [PG_W_STEPS_COMPLETE] = { "UPDATE steps SET status = 'completed', output = u.output,"
                              " completed_at = u.at" SW_FROM,
                              "complete steps" },
    /* A concurrency group's admissions, one at a time over every node
     * until COMMIT (its own statement: the count after it must see the
     * admissions committed while it waited). */
    [PG_W_FLOW_LOCK] = { "SELECT pg_advisory_xact_lock(" PG_FLOW_LOCK_CLASS ", hashtext($1))",
                         "lock a concurrency group" },
    /* Run $1 takes a place of group $2 unless $3 are taken: the count
     * (without $1) and whether it did. */
    [PG_W_FLOW_ADMIT] = { "WITH c AS (SELECT count(*) AS n FROM runs WHERE flow_key = $2"
                          " AND id <> $1 AND status <> 'completed' AND status <> 'failed'"
                          " AND status <> 'cancelled'),"
                          " u AS (UPDATE runs SET flow_key = $2 FROM c WHERE runs.id = $1"
                          " AND c.n < $3::integer RETURNING 1)"
                          " SELECT c.n, EXISTS (SELECT 1 FROM u) FROM c",
                          "admit a run" },
    /* The next place of rate limit $1, one every $2 ms: the row holds
     * the place after the last one given (locked until COMMIT); the wait
     * until the place taken, by the server's clock. */
    [PG_W_RATE_TAKE] = { "WITH n AS (SELECT durable_now_ms()::float8 AS t)"
                         " INSERT INTO rate_slots AS q (key, next_ms) SELECT $1, n.t + $2::float8"
                         " FROM n ON CONFLICT (key) DO UPDATE"
                         " SET next_ms = greatest(q.next_ms, EXCLUDED.next_ms - $2::float8)"
                         " + $2::float8 RETURNING ceil(q.next_ms - $2::float8"
                         " - (SELECT t FROM n))::bigint",
                         "take a rate limit's place" },
    [PG_W_SAVEPOINT] = { "SAVEPOINT store_action", "open a savepoint" },
    [PG_W_BEGIN] = { "BEGIN", "begin a transaction" },
    [PG_W_COMMIT] = { "COMMIT", "commit" },
    [PG_W_SP_RELEASE] = { "RELEASE store_action", "release a savepoint" },
    [PG_W_SP_ROLLBACK] = { "ROLLBACK TO store_action", "undo a refused action" },
    /* Deletion: the finished runs a purge selects, oldest finished first,
     * locked (a retry on another node waits, and the status is checked
     * again), with their rows, in one statement (the foreign keys are
     * checked at its end). */
    [PG_W_RUNS_DELETE] = { "WITH d AS (SELECT id FROM runs WHERE " PG_PURGE_WHERE
                           " ORDER BY completed_at LIMIT $7::integer FOR UPDATE OF runs),"
                           " e AS (DELETE FROM events WHERE run_id IN (SELECT id FROM d)),"
                           " st AS (DELETE FROM steps WHERE run_id IN (SELECT id FROM d)),"
                           " sg AS (DELETE FROM signals WHERE run_id IN (SELECT id FROM d))"
                           " DELETE FROM runs WHERE id IN (SELECT id FROM d) RETURNING id",
                           "delete runs" },
    [PG_W_RUNS_DELETE_COUNT] = { "SELECT count(*) FROM runs WHERE " PG_PURGE_WHERE,
                                 "count the runs to delete" },
    [PG_W_WF_FIND] = { "SELECT w.id, EXISTS (SELECT 1 FROM runs r WHERE r.workflow_id = w.id)"
                       " FROM workflows w WHERE w.name = $1 AND w.version = $2::integer"
                       " FOR UPDATE",
                       "find a workflow version" },
    [PG_W_WF_DELETE] = { "DELETE FROM workflows WHERE id = $1", "delete a workflow version" },
    /* FOR UPDATE: a tick's guard waits for another node's fire of the
     * same schedule to commit, then reads its last tick. */
    [PG_W_SCHED_GET] = { "SELECT paused, coalesce(last_tick, 0) FROM schedules WHERE id = $1"
                         " FOR UPDATE",
                         "read a schedule's last tick" },
    [PG_W_SCHED_PUT] = { "INSERT INTO schedules (id, workflow_name, cron, every_ms, tz, input,"
                         " overlap, catch_up, catch_up_max, anchor_at, created_at, updated_at)"
                         " VALUES ($1, $2, $3, $4::bigint, $5, $6, $7, $8, $9::integer,"
                         " $10::bigint, $11::bigint, $11::bigint)"
                         " ON CONFLICT (id) DO UPDATE SET workflow_name = excluded.workflow_name,"
                         " cron = excluded.cron, every_ms = excluded.every_ms, tz = excluded.tz,"
                         " input = excluded.input, overlap = excluded.overlap,"
                         " catch_up = excluded.catch_up, catch_up_max = excluded.catch_up_max,"
                         " updated_at = excluded.updated_at",
                         "write a schedule" },
    [PG_W_SCHED_PAUSE] = { "UPDATE schedules SET paused = $2::boolean, updated_at = $3::bigint"
                           " WHERE id = $1",
                           "pause or resume a schedule" },
    [PG_W_SCHED_DELETE] = { "DELETE FROM schedules WHERE id = $1", "delete a schedule" },
    [PG_W_SCHED_FIRE] = { "UPDATE schedules SET last_tick = $2::bigint, fired = fired + $3::bigint,"
                          " skipped = skipped + $4::bigint, updated_at = $5::bigint,"
                          " last_run_id = coalesce($6, last_run_id) WHERE id = $1",
                          "fire a schedule's tick" },
};

/* Integers as parameter text. */
struct num {
    char text[24];
};

static const char *num_of(struct num *n, int64_t v)
{
    snprintf(n->text, sizeof(n->text), "%" PRId64, v);
    return n->text;
}

/* A time parameter: 0 ("none") is NULL. */
static const char *time_of(struct num *n, int64_t ms)
{
    return ms ? num_of(n, ms) : NULL;
}

static void seq_forget(struct pg_store *s)
{
    s->seq_run[0] = '\0';
    s->seq_last = 0;
}

/* ---- the pipeline ---- */

/* Read ahead when the unread results grow past this many, so that neither
 * side's socket buffer fills with the other one blocked. */
#define UNREAD_MAX 1024

static void fifo_push(struct pg_store *s, enum pg_wstmt_id id)
{
    if (s->w_n == s->w_cap) {
        size_t cap = s->w_cap ? s->w_cap * 2 : 256;
        unsigned char *ids = xmalloc(cap);
        for (size_t i = 0; i < s->w_n; i++)
            ids[i] = s->w_fifo[(s->w_head + i) % s->w_cap];
        free(s->w_fifo);
        s->w_fifo = ids;
        s->w_cap = cap;
        s->w_head = 0;
    }
    s->w_fifo[(s->w_head + s->w_n) % s->w_cap] = (unsigned char)id;
    s->w_n++;
}

/* Reads the result of the oldest statement sent (NULL when the connection
 * failed; owned) and says which statement it was. */
static PGresult *read_next(struct pg_store *s, enum pg_wstmt_id *out_id)
{
    PGresult *r = PQgetResult(s->w), *extra;

    *out_id = (enum pg_wstmt_id)s->w_fifo[s->w_head];
    s->w_head = (s->w_head + 1) % s->w_cap;
    s->w_n--;
    if (r) {
        while ((extra = PQgetResult(s->w)) != NULL)
            PQclear(extra);
    }
    return r;
}

/* Whether r, statement id's result, succeeded; the first failure of the
 * transaction is kept (what follows it in the pipeline is aborted). An
 * insert of events says how the server numbered them (gid_shift). */
static bool result_ok(struct pg_store *s, const PGresult *r, enum pg_wstmt_id id)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    const char *constraint;

    if (id == PG_W_EVENTS_INSERT && st == PGRES_TUPLES_OK) {
        if (PQntuples(r) == 1) {
            s->gid_shift = pg_cell_int64(r, 0, 0);
            return true;
        }
        st = PGRES_FATAL_ERROR; /* no counter row: nothing was inserted */
        if (s->w_rc == DURABLE_OK) {
            err_set(&s->w_err, DURABLE_EIO, "could not append events: no event counter");
            s->w_rc = DURABLE_EIO;
        }
    }
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return true;
    if (s->w_rc != DURABLE_OK)
        return false;
    constraint = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (constraint && strcmp(constraint, PG_RUNS_KEY) == 0) {
        /* Another node's run took the key since run_by_key looked: the
         * writer applies the batch again, and then finds that run. */
        err_set(&s->w_err, DURABLE_EIO, "idempotency key was just taken by another run");
    } else {
        err_set(&s->w_err, DURABLE_EIO, "could not %s: %s", wstmts[id].what,
                r && st != PGRES_PIPELINE_ABORTED ? PQresultErrorMessage(r) : PQerrorMessage(s->w));
    }
    s->w_rc = DURABLE_EIO;
    return false;
}

/* The transaction's first failure, into err. */
static durable_code failed(struct pg_store *s, durable_error *err)
{
    return err_set(err, s->w_rc, "%s", s->w_err.msg);
}

/* libpq refused to send (what: "could not WHAT"): the transaction's first
 * failure unless it had one, into err. */
static durable_code send_failed(struct pg_store *s, const char *what, durable_error *err)
{
    err_set(&s->w_err, DURABLE_EIO, "could not %s: %s", what, PQerrorMessage(s->w));
    s->w_rc = DURABLE_EIO;
    return failed(s, err);
}

/* Asks the server for the results sent so far, and sends what libpq
 * buffered. */
static durable_code flush(struct pg_store *s, durable_error *err)
{
    if (PQsendFlushRequest(s->w) != 1 || PQflush(s->w) != 0)
        return send_failed(s, "send to the database", err);
    return DURABLE_OK;
}

/* Reads the results of the statements sent but the last keep. */
static durable_code read_upto(struct pg_store *s, size_t keep, durable_error *err)
{
    enum pg_wstmt_id id;

    while (s->w_n > keep) {
        PGresult *r = read_next(s, &id);
        result_ok(s, r, id);
        PQclear(r);
    }
    return s->w_rc == DURABLE_OK ? DURABLE_OK : failed(s, err);
}

/* Whether statement id may run before the step writes held back: it
 * neither reads nor writes a step that is there already (events, a new
 * run and its steps, a run's own row). */
static bool sw_may_pass(enum pg_wstmt_id id)
{
    switch (id) {
    case PG_W_STEPS_START:
    case PG_W_STEPS_RUN:
    case PG_W_STEPS_COMPLETE:
    case PG_W_EVENTS_INSERT:
    case PG_W_RUN_INSERT:
    case PG_W_STEPS_INSERT:
    case PG_W_RUN_RUNNING:
    case PG_W_RUN_FINISH:
        return true;
    default:
        return false;
    }
}

static durable_code sw_send(struct pg_store *s, durable_error *err);

/* Sends prepared statement id with n text parameters; its result is read
 * later, before the next read's. The step writes held back go first
 * unless id may pass them. */
static durable_code send(struct pg_store *s, enum pg_wstmt_id id, int n, const char *const *params,
                         durable_error *err)
{
    char name[16];

    if (s->w_rc != DURABLE_OK)
        return failed(s, err); /* the server aborted the rest */
    if (s->sw_n > 0 && !sw_may_pass(id)) {
        durable_code rc = sw_send(s, err);
        if (rc != DURABLE_OK)
            return rc;
    }
    if (s->w_n >= UNREAD_MAX && !s->prev.on) { /* behind a COMMIT: a BEGIN, guards */
        durable_code rc = flush(s, err);
        if (rc == DURABLE_OK)
            rc = read_upto(s, 0, err);
        if (rc != DURABLE_OK)
            return rc;
    }
    snprintf(name, sizeof(name), "dw%d", (int)id);
    if (PQsendQueryPrepared(s->w, name, n, params, NULL, NULL, 0) != 1)
        return send_failed(s, wstmts[id].what, err);
    fifo_push(s, id);
    return DURABLE_OK;
}

/* ---- writes held back ----
 * The events appended are not sent one statement each: they are gathered
 * into text arrays and sent as one statement (unnest) before the next read (wexec: so every read of
 * the transaction sees them), savepoint, read ahead or COMMIT, or when
 * many have gathered. Their failure is the transaction's, as any write's. */

/* Held-back events past these are sent at once (bounds the memory). */
#define EV_HELD_MAX       1024
#define EV_HELD_BYTES_MAX (1u << 20)

/* Empty arrays ("{"). */
static void held_reset(struct pg_store *s)
{
    for (int c = 0; c < PG_EV_COLS; c++) {
        dbuf_reset(&s->ev_lit[c]);
        dbuf_add(&s->ev_lit[c], "{", 1);
    }
    s->ev_n = 0;
}

static void sw_reset(struct pg_store *s)
{
    for (int c = 0; c < PG_SW_COLS; c++) {
        dbuf_reset(&s->sw_lit[c]);
        dbuf_add(&s->sw_lit[c], "{", 1);
    }
    if (s->sw_n > 0) /* the keys are all 0 otherwise (the store is calloc'd) */
        memset(s->sw_keys, 0, sizeof(s->sw_keys));
    s->sw_n = 0;
}

void pg_write_init(struct pg_store *s)
{
    for (int c = 0; c < PG_EV_COLS; c++)
        dbuf_init(&s->ev_lit[c], 0);
    for (int c = 0; c < PG_SW_COLS; c++)
        dbuf_init(&s->sw_lit[c], 0);
    held_reset(s);
    sw_reset(s);
}

void pg_write_free(struct pg_store *s)
{
    for (int c = 0; c < PG_SW_COLS; c++)
        dbuf_release(&s->sw_lit[c]);
    for (int c = 0; c < PG_EV_COLS; c++)
        dbuf_release(&s->ev_lit[c]);
    free(s->ev_mark);
    s->ev_mark = NULL;
    s->ev_cap = 0;
}

/* Appends v to the array literal b: NULL as NULL, else quoted (quote)
 * with '"' and '\' escaped, or as it is (a number). */
static durable_code lit_add(struct dbuf *b, const char *v, bool quote)
{
    durable_code rc = b->len > 1 ? dbuf_add(b, ",", 1) : DURABLE_OK;

    if (rc != DURABLE_OK || !v)
        return rc == DURABLE_OK ? dbuf_add(b, "NULL", 4) : rc;
    if (!quote)
        return dbuf_adds(b, v);
    rc = dbuf_add(b, "\"", 1);
    while (rc == DURABLE_OK && *v) {
        size_t n = strcspn(v, "\"\\");
        rc = dbuf_add(b, v, n);
        v += n;
        if (rc == DURABLE_OK && *v) {
            char esc[2] = { '\\', *v++ };
            rc = dbuf_add(b, esc, 2);
        }
    }
    return rc == DURABLE_OK ? dbuf_add(b, "\"", 1) : rc;
}

/* Sends statement id over the n array literals lit (open: "{..."). */
static durable_code lits_send(struct pg_store *s, enum pg_wstmt_id id, struct dbuf *lit, int n,
                              durable_error *err)
{
    durable_code rc = DURABLE_OK;
    const char *p[PG_EV_COLS];

    for (int c = 0; rc == DURABLE_OK && c < n && c < PG_EV_COLS; c++) {
        rc = dbuf_add(&lit[c], "}", 1);
        p[c] = lit[c].buf;
    }
    if (rc != DURABLE_OK)
        return err_set(err, rc, "could not %s: too many at once", wstmts[id].what);
    return send(s, id, n, p, err);
}

/* Sends the events held back, in one statement. */
static durable_code held_send(struct pg_store *s, durable_error *err)
{
    struct num n, first;
    const char *p[PG_EV_COLS + 3];
    bool tell = atomic_load(&s->others_alive);
    durable_code rc = DURABLE_OK;

    if (s->ev_n == 0)
        return DURABLE_OK;
    s->ev_quiet |= !tell;
    for (int c = 0; rc == DURABLE_OK && c < PG_EV_COLS; c++) {
        rc = dbuf_add(&s->ev_lit[c], "}", 1);
        p[c] = s->ev_lit[c].buf;
    }
    p[PG_EV_COLS] = num_of(&n, (int64_t)s->ev_n);
    p[PG_EV_COLS + 1] = num_of(&first, s->ev_first_gid);
    p[PG_EV_COLS + 2] = tell ? "true" : "false";
    if (rc == DURABLE_OK)
        rc = send(s, PG_W_EVENTS_INSERT, PG_EV_COLS + 3, p, err);
    else
        rc = err_set(err, rc, "could not append events: too many at once");
    held_reset(s);
    return rc;
}

/* Holds back an event numbered seq, with the transaction's next gid. */
static durable_code held_event(struct pg_store *s, const struct event_key *k, const char *type,
                               const char *data, int64_t seq, durable_error *err)
{
    int64_t gid = s->last_gid + 1;
    struct num n_seq, n_at;
    const char *v[PG_EV_COLS] = { k->run_id,  num_of(&n_seq, seq),     type,
                                  k->step_id, num_of(&n_at, k->at_ms), data };
    static const bool quoted[PG_EV_COLS] = { true, false, true, true, false, true };
    durable_code rc = DURABLE_OK;
    size_t bytes = 0;

    if (s->ev_n == s->ev_cap) {
        s->ev_cap = s->ev_cap ? 2 * s->ev_cap : 64;
        s->ev_mark = xrealloc(s->ev_mark, s->ev_cap * sizeof(*s->ev_mark));
    }
    if (s->ev_n == 0)
        s->ev_first_gid = gid;
    for (int c = 0; c < PG_EV_COLS; c++)
        s->ev_mark[s->ev_n][c] = s->ev_lit[c].len;
    for (int c = 0; rc == DURABLE_OK && c < PG_EV_COLS; c++) {
        rc = lit_add(&s->ev_lit[c], v[c], quoted[c]);
        bytes += s->ev_lit[c].len;
    }
    if (rc != DURABLE_OK) { /* as before the event */
        for (int c = 0; c < PG_EV_COLS; c++) {
            s->ev_lit[c].len = s->ev_mark[s->ev_n][c];
            s->ev_lit[c].buf[s->ev_lit[c].len] = '\0';
        }
        return err_set(err, rc, "could not append an event: too large");
    }
    s->ev_n++;
    if (s->ev_n >= EV_HELD_MAX || bytes >= EV_HELD_BYTES_MAX)
        return held_send(s, err);
    return DURABLE_OK;
}

/* Sends the step writes held back, in one statement. */
static durable_code sw_send(struct pg_store *s, durable_error *err)
{
    durable_code rc;

    if (s->sw_n == 0)
        return DURABLE_OK;
    rc = lits_send(s, s->sw_id, s->sw_lit, PG_SW_COLS, err);
    sw_reset(s);
    return rc;
}

/* Holds back t's step write of statement id (a PG_W_STEPS_*), after
 * sending those held of another statement or of the same step. */
static durable_code sw_hold(struct pg_store *s, enum pg_wstmt_id id, const struct transition *t,
                            durable_error *err)
{
    static const bool quoted[PG_SW_COLS] = { true, true, false, false, true };
    uint64_t h = 14695981039346656037u; /* FNV-1a of run id, 0xff, step id */
    struct num n_attempt, n_at;
    const char *v[PG_SW_COLS] = { t->run_id, t->step_id, num_of(&n_attempt, t->attempt),
                                  num_of(&n_at, t->at_ms),
                                  id == PG_W_STEPS_START ? NULL : t->output_json };
    durable_code rc = DURABLE_OK;
    size_t k, bytes = 0;

    for (const char *c = t->run_id; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211u;
    h = (h ^ 0xffu) * 1099511628211u;
    for (const char *c = t->step_id; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211u;
    h = h ? h : 1;
    k = (size_t)(h % PG_SW_SLOTS);
    while (s->sw_keys[k] && s->sw_keys[k] != h)
        k = (k + 1) % PG_SW_SLOTS;
    if (s->sw_n > 0 && (s->sw_id != id || s->sw_keys[k] == h)) {
        if ((rc = sw_send(s, err)) != DURABLE_OK)
            return rc;
        k = (size_t)(h % PG_SW_SLOTS);
    }
    s->sw_id = id;
    s->sw_keys[k] = h;
    s->sw_n++;
    for (int c = 0; rc == DURABLE_OK && c < PG_SW_COLS; c++) {
        rc = lit_add(&s->sw_lit[c], v[c], quoted[c]);
        bytes += s->sw_lit[c].len;
    }
    if (rc != DURABLE_OK) { /* the writes held are lost: so is the transaction */
        sw_reset(s);
        err_set(&s->w_err, rc, "could not write a step: too large");
        s->w_rc = rc;
        return failed(s, err);
    }
    if (s->sw_n >= PG_SW_MAX || bytes >= EV_HELD_BYTES_MAX)
        return sw_send(s, err);
    return DURABLE_OK;
}

/* Gives back the held-back events from gid first_gid on. */
static void held_events_undo(struct pg_store *s, int64_t first_gid)
{
    size_t keep;

    if (s->ev_n == 0 || first_gid >= s->ev_first_gid + (int64_t)s->ev_n)
        return;
    keep = first_gid <= s->ev_first_gid ? 0 : (size_t)(first_gid - s->ev_first_gid);
    for (int c = 0; c < PG_EV_COLS; c++) {
        s->ev_lit[c].len = s->ev_mark[keep][c];
        s->ev_lit[c].buf[s->ev_lit[c].len] = '\0';
    }
    s->ev_n = keep;
}

/* Runs prepared statement id with n text parameters and returns its
 * result (owned), read after those of every statement sent before it: one
 * round trip. NULL with DURABLE_EIO in err when it or an earlier one
 * failed. */
static PGresult *wexec(struct pg_store *s, enum pg_wstmt_id id, int n, const char *const *params,
                       durable_error *err)
{
    enum pg_wstmt_id got;
    PGresult *r;

    if (held_send(s, err) != DURABLE_OK || send(s, id, n, params, err) != DURABLE_OK ||
        flush(s, err) != DURABLE_OK)
        return NULL;
    read_upto(s, 1, err);
    r = read_next(s, &got);
    if (result_ok(s, r, got) && s->w_rc == DURABLE_OK)
        return r;
    PQclear(r);
    failed(s, err);
    return NULL;
}

/* A statement whose rows are not needed: sent, its result read later;
 * with out_changed (whether it changed a row), run at once (wexec). */
static durable_code wrun(struct pg_store *s, enum pg_wstmt_id id, int n, const char *const *params,
                         bool *out_changed, durable_error *err)
{
    PGresult *r;
    const char *rows;

    if (!out_changed)
        return send(s, id, n, params, err);
    r = wexec(s, id, n, params, err);
    if (!r)
        return DURABLE_EIO;
    rows = PQcmdTuples(r);
    *out_changed = rows[0] != '\0' && strcmp(rows, "0") != 0;
    PQclear(r);
    return DURABLE_OK;
}

/* ---- the guards read ahead ----
 * pg_prefetch reads the guard row of the first transition of each run of
 * the batch in one round trip; run_get takes it (once) when it asks for
 * the same run and step, else reads. Any write to a run drops its row:
 * what follows reads again, and sees the writes. */

static size_t ahead_slot(const struct pg_store *s, const char *run_id)
{
    uint32_t h = 2166136261u;

    for (const unsigned char *p = (const unsigned char *)run_id; *p; p++)
        h = (h ^ *p) * 16777619u;
    for (size_t i = h & (s->ahead_cap - 1);; i = (i + 1) & (s->ahead_cap - 1)) {
        if (!s->ahead[i].run_id || strcmp(s->ahead[i].run_id, run_id) == 0)
            return i;
    }
}

static struct pg_ahead *ahead_find(struct pg_store *s, const char *run_id)
{
    size_t i;

    if (s->ahead_n == 0)
        return NULL;
    i = ahead_slot(s, run_id);
    return s->ahead[i].run_id ? &s->ahead[i] : NULL;
}

/* A write to run_id: its row read ahead is stale, and a run inserted by
 * the transaction is no longer as inserted. */
static void ahead_drop(struct pg_store *s, const char *run_id)
{
    struct pg_ahead *a = ahead_find(s, run_id);

    if (a) {
        PQclear(a->r);
        a->r = NULL;
        free(a->created);
        a->created = NULL;
    }
}

/* Run t inserted as run_id with the owner's epoch: its guard row is known
 * (created_row) until the next write to it but an event's. What the row
 * says is copied (a->created: the order id, then each step's id and
 * type, each string followed by its NUL). Remembered only while the
 * table has room (else a read finds it). */
static void ahead_created(struct pg_store *s, const struct transition *t, const char *run_id,
                          int64_t epoch)
{
    const char *order = t->order_id ? t->order_id : "";
    size_t len = strlen(order) + 1;
    struct pg_ahead *a;
    char *p;

    if (strlen(run_id) >= ID_MAX || s->ahead_cap == 0 || (s->ahead_n + 1) * 2 > s->ahead_cap)
        return;
    for (size_t i = 0; i < t->n_steps; i++)
        len += strlen(t->steps[i].step_id) + strlen(t->steps[i].type) + 2;
    a = &s->ahead[ahead_slot(s, run_id)];
    if (!a->run_id) {
        snprintf(a->id, sizeof(a->id), "%s", run_id);
        a->run_id = a->id;
        a->step_id = NULL;
        s->ahead_n++;
    }
    PQclear(a->r);
    a->r = NULL;
    free(a->created);
    a->created = p = xmalloc(len);
    p = stpcpy(p, order) + 1;
    for (size_t i = 0; i < t->n_steps; i++) {
        p = stpcpy(p, t->steps[i].step_id) + 1;
        p = stpcpy(p, t->steps[i].type) + 1;
    }
    a->n_steps = t->n_steps;
    a->epoch = epoch;
    a->seq_last = 0;
}

static void ahead_clear(struct pg_store *s)
{
    for (size_t i = 0; s->ahead_n > 0 && i < s->ahead_cap; i++) {
        PQclear(s->ahead[i].r);
        s->ahead[i].run_id = NULL;
        s->ahead[i].r = NULL;
        free(s->ahead[i].created);
        s->ahead[i].created = NULL;
    }
    s->ahead_n = 0;
}

void pg_write_begin(struct pg_store *s, bool reconnected)
{
    if (reconnected)
        memset(s->w_prepared, 0, sizeof(s->w_prepared));
    if (s->prev.on) {
        s->prev.next = true; /* behind it: its results stay first */
    } else {
        s->w_n = 0;
        s->w_head = 0;
    }
    s->last_gid = s->gid_base;
    s->gid_shift = 0;
    seq_forget(s);
    s->started_run[0] = '\0';
    s->quiet_run[0] = '\0';
    s->known_run[0] = '\0';
    held_reset(s);
    sw_reset(s);
    ahead_clear(s);
    s->guards_unread = 0;
    s->w_rc = DURABLE_OK;
    err_clear(&s->w_err);
    s->ev_quiet = false;
}

durable_code pg_write_tx_begin(struct pg_store *s, durable_error *err)
{
    char name[16];

    /* Once per connection, before its pipeline: every statement. */
    for (int id = 0; id < PG_W_COUNT; id++) {
        PGresult *r;
        if (s->w_prepared[id])
            continue;
        snprintf(name, sizeof(name), "dw%d", id);
        r = PQprepare(s->w, name, wstmts[id].sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            err_set(err, DURABLE_EIO, "could not %s: %s", wstmts[id].what,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(s->w));
            PQclear(r);
            return DURABLE_EIO;
        }
        PQclear(r);
        s->w_prepared[id] = true;
    }
    if (PQpipelineStatus(s->w) == PQ_PIPELINE_OFF && PQenterPipelineMode(s->w) != 1)
        return err_set(err, DURABLE_EIO, "could not begin a transaction: %s", PQerrorMessage(s->w));
    return send(s, PG_W_BEGIN, 0, NULL, err);
}

/* Ends the pipeline after a failure: a sync, every result read (the
 * sync's last), back to one statement at a time. */
static void pipeline_end(struct pg_store *s)
{
    bool synced = PQpipelineSync(s->w) == 1;
    enum pg_wstmt_id id;
    PGresult *r;

    DUR_ASSERT(!s->prev.on); /* a COMMIT sent is waited for first */
    while (synced && s->w_n > 0) {
        r = read_next(s, &id);
        result_ok(s, r, id);
        PQclear(r);
    }
    s->w_n = 0;
    while (synced && (r = PQgetResult(s->w)) != NULL) {
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (PQstatus(s->w) == CONNECTION_OK)
        (void)PQexitPipelineMode(s->w);
}

void pg_write_end(struct pg_store *s)
{
    if (PQpipelineStatus(s->w) != PQ_PIPELINE_OFF)
        pipeline_end(s);
    pg_write_begin(s, false);
}

/* Copies a cell's text into out (out_len bytes), truncated, "" for NULL. */
static void cell_copy(const PGresult *r, int col, char *out, size_t out_len)
{
    size_t n = PQgetisnull(r, 0, col) ? 0 : (size_t)PQgetlength(r, 0, col);

    if (n >= out_len)
        n = out_len - 1;
    if (n > 0)
        memcpy(out, PQgetvalue(r, 0, col), n);
    out[n] = '\0';
}

/* ---- reads ---- */

/* Whether the guard's row (owner_node, owner_epoch in columns 6, 7) is
 * this node's at its epoch; always so before the node joins (one node). */
static bool owned_here(struct pg_store *s, const PGresult *r)
{
    int64_t epoch = atomic_load(&s->owner_epoch);
    const char *owner = pg_cell_text(r, 0, 6);

    if (epoch <= 0)
        return true;
    return owner && strcmp(owner, s->node_id) == 0 && pg_cell_int64(r, 0, 7) == epoch;
}

static bool same_step(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

/* The run of the last guard read (and its step, NULL for none), which
 * was not waiting and had no step running, retrying or waiting but that
 * step: once that step is written finished (quiet_done) and nothing else
 * of the run is, the recompute of the run's status changes nothing. */
static void quiet_set(struct pg_store *s, const char *run_id, const char *step_id)
{
    if (strlen(run_id) >= sizeof(s->quiet_run) ||
        (step_id && strlen(step_id) >= sizeof(s->quiet_step)))
        return;
    snprintf(s->quiet_run, sizeof(s->quiet_run), "%s", run_id);
    snprintf(s->quiet_step, sizeof(s->quiet_step), "%s", step_id ? step_id : "");
    s->quiet_done = false;
}

/* The runs row of the last guard read, as the transaction's writes since
 * left it (write.c known_*): while its events are the last appended, a
 * guard of the run alone (no step) is answered from it. */
static void known_set(struct pg_store *s, const char *run_id, const char *status,
                      const char *order_id, bool owner_here, int64_t owner_epoch)
{
    if (strlen(run_id) >= sizeof(s->known_run))
        return;
    snprintf(s->known_run, sizeof(s->known_run), "%s", run_id);
    snprintf(s->known_status, sizeof(s->known_status), "%s", status);
    snprintf(s->known_order, sizeof(s->known_order), "%s", order_id);
    s->known_owner_here = owner_here;
    s->known_owner_epoch = owner_epoch;
}

static bool known_row(struct pg_store *s, const char *run_id, struct store_run_state *out)
{
    int64_t epoch = atomic_load(&s->owner_epoch);

    if (!s->known_run[0] || strcmp(s->known_run, run_id) != 0 || strcmp(s->seq_run, run_id) != 0)
        return false;
    out->has_run = true;
    snprintf(out->run_status, sizeof(out->run_status), "%s", s->known_status);
    snprintf(out->order_id, sizeof(out->order_id), "%s", s->known_order);
    out->not_owner = epoch > 0 && !(s->known_owner_here && s->known_owner_epoch == epoch);
    return true;
}

/* The guard row of run a->created, as the transaction inserted it: its
 * steps pending at attempt 0, owned by this node at the epoch it was
 * inserted with. */
static void created_row(struct pg_store *s, const struct pg_ahead *a, const char *step_id,
                        struct store_run_state *out)
{
    const char *p = a->created;
    int64_t epoch = atomic_load(&s->owner_epoch);

    out->has_run = true;
    snprintf(out->run_status, sizeof(out->run_status), "%s", "pending");
    snprintf(out->order_id, sizeof(out->order_id), "%s", p);
    p += strlen(p) + 1;
    for (size_t i = 0; step_id && i < a->n_steps; i++) {
        const char *type = p + strlen(p) + 1;
        if (strcmp(p, step_id) == 0) {
            out->has_step = true;
            snprintf(out->step_status, sizeof(out->step_status), "%s", "pending");
            snprintf(out->step_type, sizeof(out->step_type), "%s", type);
            break;
        }
        p = type + strlen(type) + 1;
    }
    out->not_owner = epoch > 0 && a->epoch != epoch;
    quiet_set(s, a->run_id, step_id); /* every step pending */
    snprintf(s->seq_run, sizeof(s->seq_run), "%s", a->run_id);
    s->seq_last = a->seq_last;
}

static durable_code pg_row_run_get(struct store *base, const char *run_id, const char *step_id,
                                   struct store_run_state *out, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    const char *p[2] = { run_id, step_id };
    struct pg_ahead *a = ahead_find(s, run_id);
    PGresult *r;

    memset(out, 0, sizeof(*out));
    s->started_run[0] = '\0';
    s->quiet_run[0] = '\0';
    if (!step_id && known_row(s, run_id, out))
        return DURABLE_OK;
    if (a && a->created) {
        created_row(s, a, step_id, out);
        known_set(s, run_id, out->run_status, out->order_id, a->epoch > 0, a->epoch);
        return DURABLE_OK;
    }
    if (a && a->r && same_step(a->step_id, step_id)) {
        r = a->r; /* read ahead, once */
        a->r = NULL;
    } else if ((r = wexec(s, PG_W_RUN_GUARD, 2, p, err)) == NULL) {
        return DURABLE_EIO;
    }
    out->has_run = PQntuples(r) > 0;
    if (out->has_run) {
        cell_copy(r, 0, out->run_status, sizeof(out->run_status));
        cell_copy(r, 1, out->order_id, sizeof(out->order_id));
        out->has_step = !PQgetisnull(r, 0, 3);
        cell_copy(r, 3, out->step_status, sizeof(out->step_status));
        out->attempt = (int)pg_cell_int64(r, 0, 4);
        cell_copy(r, 5, out->step_type, sizeof(out->step_type));
        out->not_owner = !owned_here(s, r);
        /* A run running since it started: its next start changes nothing. */
        if (strcmp(out->run_status, "running") == 0 && strcmp(pg_cell_text(r, 0, 8), "t") == 0)
            snprintf(s->started_run, sizeof(s->started_run), "%s", run_id);
        if (strcmp(out->run_status, "waiting") != 0 && strcmp(pg_cell_text(r, 0, 9), "f") == 0)
            quiet_set(s, run_id, step_id);
        /* The events that follow are numbered from here. */
        snprintf(s->seq_run, sizeof(s->seq_run), "%s", run_id);
        s->seq_last = pg_cell_int64(r, 0, 2);
        known_set(s, run_id, out->run_status, out->order_id,
                  same_step(pg_cell_text(r, 0, 6), s->node_id), pg_cell_int64(r, 0, 7));
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_run_notify(struct store *base, const char *run_id, durable_error *err)
{
    const char *p[1] = { run_id };
    PGresult *r = wexec(pg_of(base), PG_W_NOTIFY_RUN, 1, p, err);

    if (!r)
        return DURABLE_EIO;
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_run_by_key(struct store *base, const char *workflow_id, const char *key,
                                      char out[ID_MAX], bool *out_found, durable_error *err)
{
    const char *p[2] = { workflow_id, key };
    PGresult *r = wexec(pg_of(base), PG_W_RUN_BY_KEY, 2, p, err);

    *out_found = false;
    if (!r)
        return DURABLE_EIO;
    *out_found = PQntuples(r) > 0;
    if (*out_found)
        cell_copy(r, 0, out, ID_MAX);
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_workflow_exists(struct store *base, const char *workflow_id,
                                           bool *out_found, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    const char *p[1] = { workflow_id };
    PGresult *r;

    /* Workflows are never deleted: one found stays found (pg_write_forget
     * drops what a rolled back transaction may have inserted). */
    for (size_t i = 0; i < PG_WF_KNOWN; i++) {
        if (strcmp(s->wf_known[i], workflow_id) == 0) {
            *out_found = true;
            return DURABLE_OK;
        }
    }
    r = wexec(s, PG_W_WF_EXISTS, 1, p, err);
    *out_found = false;
    if (!r)
        return DURABLE_EIO;
    *out_found = PQntuples(r) > 0;
    if (*out_found && strlen(workflow_id) < ID_MAX) {
        snprintf(s->wf_known[s->wf_known_next], ID_MAX, "%s", workflow_id);
        s->wf_known_next = (s->wf_known_next + 1) % PG_WF_KNOWN;
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_workflow_latest(struct store *base, const char *name,
                                           const char *definition, struct transition_result *out,
                                           bool *out_same, durable_error *err)
{
    const char *p[1] = { name };
    PGresult *r = wexec(pg_of(base), PG_W_WF_LATEST, 1, p, err);

    out->version = 0;
    *out_same = false;
    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) > 0) {
        cell_copy(r, 0, out->id, sizeof(out->id));
        out->version = (int)pg_cell_int64(r, 0, 1);
        *out_same = strcmp(PQgetvalue(r, 0, 2), definition) == 0;
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_order_get(struct store *base, const char *order_id,
                                     char out[STORE_NAME_MAX], bool *out_found, durable_error *err)
{
    const char *p[1] = { order_id };
    PGresult *r = wexec(pg_of(base), PG_W_ORDER_STATUS, 1, p, err);

    *out_found = false;
    if (!r)
        return DURABLE_EIO;
    *out_found = PQntuples(r) > 0;
    if (*out_found)
        cell_copy(r, 0, out, STORE_NAME_MAX);
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_kv_get(struct store *base, const char *key, char **out,
                                  durable_error *err)
{
    const char *p[1] = { key };
    PGresult *r = wexec(pg_of(base), PG_W_KV_GET, 1, p, err);

    *out = NULL;
    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) > 0)
        *out = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return DURABLE_OK;
}

/* ---- deletion ---- */

static durable_code pg_row_runs_delete(struct store *base, const struct store_purge *q,
                                       void (*fn)(void *ud, const char *run_id), void *ud,
                                       int64_t *out_n, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct num before, limit, now, dflt;
    bool retain = q->retain_now_ms > 0;
    const char *p[7] = { num_of(&before, q->finished_before_ms),
                         q->workflow,
                         q->status,
                         q->run_id,
                         retain ? num_of(&now, q->retain_now_ms) : NULL,
                         retain && q->retain_default_ms > 0 ? num_of(&dflt, q->retain_default_ms)
                                                            : NULL,
                         num_of(&limit, q->limit) };
    PGresult *r;

    *out_n = 0;
    r = wexec(s, q->dry_run ? PG_W_RUNS_DELETE_COUNT : PG_W_RUNS_DELETE, q->dry_run ? 6 : 7, p,
              err);
    if (!r)
        return DURABLE_EIO;
    if (q->dry_run) {
        *out_n = PQntuples(r) > 0 ? pg_cell_int64(r, 0, 0) : 0;
    } else {
        for (int i = 0; i < PQntuples(r); i++) {
            ahead_drop(s, PQgetvalue(r, i, 0));
            if (fn)
                fn(ud, PQgetvalue(r, i, 0));
        }
        *out_n = PQntuples(r);
        seq_forget(s); /* a run numbered in this transaction may be gone */
        s->started_run[0] = '\0';
        s->quiet_run[0] = '\0';
        s->known_run[0] = '\0';
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_workflow_delete(struct store *base, const char *name, int version,
                                           bool *out_found, bool *out_used, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct num v;
    char id[ID_MAX];
    const char *p[2] = { name, num_of(&v, version) };
    PGresult *r = wexec(s, PG_W_WF_FIND, 2, p, err);

    *out_found = *out_used = false;
    if (!r)
        return DURABLE_EIO;
    *out_found = PQntuples(r) > 0;
    if (*out_found) {
        cell_copy(r, 0, id, sizeof(id));
        *out_used = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    }
    PQclear(r);
    if (!*out_found || *out_used)
        return DURABLE_OK;
    for (size_t i = 0; i < PG_WF_KNOWN; i++) { /* no longer exists */
        if (strcmp(s->wf_known[i], id) == 0)
            s->wf_known[i][0] = '\0';
    }
    p[0] = id;
    return wrun(s, PG_W_WF_DELETE, 1, p, NULL, err);
}

/* ---- schedules ---- */

static durable_code pg_row_schedule_get(struct store *base, const char *id, bool *out_found,
                                        bool *out_paused, int64_t *out_last_tick,
                                        durable_error *err)
{
    const char *p[1] = { id };
    PGresult *r = wexec(pg_of(base), PG_W_SCHED_GET, 1, p, err);

    *out_found = false;
    if (!r)
        return DURABLE_EIO;
    *out_found = PQntuples(r) > 0;
    if (*out_found) {
        *out_paused = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        *out_last_tick = pg_cell_int64(r, 0, 1);
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_schedule_put(struct store *base, const struct schedule_record *r,
                                        int64_t at_ms, durable_error *err)
{
    struct num every, max, anchor, at;
    const char *p[11] = { r->id,
                          r->workflow_name,
                          r->cron,
                          r->cron ? NULL : num_of(&every, r->every_ms),
                          r->tz,
                          r->input_json,
                          r->overlap,
                          r->catch_up,
                          num_of(&max, r->catch_up_max),
                          num_of(&anchor, r->anchor_ms),
                          num_of(&at, at_ms) };

    return wrun(pg_of(base), PG_W_SCHED_PUT, 11, p, NULL, err);
}

static durable_code pg_row_schedule_write(struct store *base, const struct transition *t,
                                          const char *run_id, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct num tick, at;
    const char *p[6] = { t->schedule_id, NULL, NULL, NULL, NULL, NULL };

    if (t->kind == TR_SCHEDULE_SET && t->schedule_op == SCHEDULE_DELETE)
        return wrun(s, PG_W_SCHED_DELETE, 1, p, NULL, err);
    if (t->kind == TR_SCHEDULE_SET) {
        p[1] = t->schedule_op == SCHEDULE_PAUSE ? "true" : "false";
        p[2] = num_of(&at, t->at_ms);
        return wrun(s, PG_W_SCHED_PAUSE, 3, p, NULL, err);
    }
    p[1] = num_of(&tick, t->tick_ms);
    p[2] = t->kind == TR_RUN_CREATE ? "1" : "0";
    p[3] = t->kind == TR_SCHEDULE_TICK ? "1" : "0";
    p[4] = num_of(&at, t->at_ms);
    p[5] = run_id;
    return wrun(s, PG_W_SCHED_FIRE, 6, p, NULL, err);
}

/* ---- writes ---- */

/* Step write w of t: the guard's step finished keeps its run quiet; any
 * other write to the run does not. */
static void quiet_step_write(struct pg_store *s, enum store_step_write w,
                             const struct transition *t)
{
    bool finished = w == STEP_W_RUN || w == STEP_W_COMPLETE || w == STEP_W_FAIL || w == STEP_W_SKIP;

    if (strcmp(s->quiet_run, t->run_id) != 0)
        return;
    if (finished && t->step_id && s->quiet_step[0] && strcmp(s->quiet_step, t->step_id) == 0)
        s->quiet_done = true;
    else
        s->quiet_run[0] = '\0';
}

static durable_code pg_row_step_write(struct store *base, enum store_step_write w,
                                      const struct transition *t, bool *out_changed,
                                      durable_error *err)
{
    static const enum pg_wstmt_id ids[] = {
        [STEP_W_START] = PG_W_STEP_START,       [STEP_W_RUN] = PG_W_STEP_RUN,
        [STEP_W_COMPLETE] = PG_W_STEP_COMPLETE, [STEP_W_RETRY] = PG_W_STEP_RETRY,
        [STEP_W_FAIL] = PG_W_STEP_FAIL,         [STEP_W_SKIP] = PG_W_STEP_SKIP,
        [STEP_W_WAIT] = PG_W_STEP_WAIT,         [STEP_W_RESTART] = PG_W_STEP_RESTART,
        [STEP_W_PROGRESS] = PG_W_STEP_PROGRESS,
    };
    struct num a, b;
    const char *p[5] = { t->run_id, t->step_id, NULL, NULL, NULL };
    int n = 3;
    bool changed = false;
    durable_code rc;

    switch (w) {
    case STEP_W_START:
    case STEP_W_RUN:
        p[2] = num_of(&a, t->attempt);
        p[3] = num_of(&b, t->at_ms);
        p[4] = t->output_json;
        n = w == STEP_W_RUN ? 5 : 4;
        break;
    case STEP_W_COMPLETE:
        p[2] = t->output_json;
        p[3] = num_of(&a, t->at_ms);
        n = 4;
        break;
    case STEP_W_RETRY:
    case STEP_W_FAIL:
        p[2] = num_of(&a, w == STEP_W_RETRY ? t->wake_at_ms : t->at_ms);
        p[3] = t->error_message;
        p[4] = t->error_code;
        n = 5;
        break;
    case STEP_W_SKIP:
    case STEP_W_RESTART:
        p[2] = num_of(&a, t->at_ms);
        break;
    case STEP_W_PROGRESS:
        p[2] = t->output_json;
        break;
    case STEP_W_WAIT:
        p[2] = time_of(&a, t->wake_at_ms);
        p[3] = t->signal_name;
        n = 4;
        break;
    default:
        return err_set(err, DURABLE_EINVAL, "unknown step write %d", (int)w);
    }
    ahead_drop(pg_of(base), t->run_id);
    quiet_step_write(pg_of(base), w, t);
    if (!out_changed && t->run_id && t->step_id &&
        (w == STEP_W_START || w == STEP_W_RUN || w == STEP_W_COMPLETE)) {
        static const enum pg_wstmt_id held[] = { [STEP_W_START] = PG_W_STEPS_START,
                                                 [STEP_W_RUN] = PG_W_STEPS_RUN,
                                                 [STEP_W_COMPLETE] = PG_W_STEPS_COMPLETE };
        return sw_hold(pg_of(base), held[w], t, err);
    }
    rc = wrun(pg_of(base), ids[w], n, p, out_changed ? &changed : NULL, err);
    if (out_changed)
        *out_changed = rc == DURABLE_OK && changed;
    return rc;
}

static durable_code pg_row_run_write(struct store *base, enum store_run_write w,
                                     const struct transition *t, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct num at;
    const char *p[5] = { t->run_id, NULL, NULL, NULL, NULL };
    durable_code rc;

    ahead_drop(s, t->run_id);
    switch (w) {
    case RUN_W_START:
        /* PG_W_RUN_RUNNING: running unless paused. */
        if (strcmp(s->known_run, t->run_id) == 0 && strcmp(s->known_status, "paused") != 0)
            snprintf(s->known_status, sizeof(s->known_status), "%s", "running");
        /* Its guard found it running since it started: nothing to change
         * (PG_W_RUN_RUNNING would match no row). */
        if (strcmp(s->started_run, t->run_id) == 0)
            return DURABLE_OK;
        s->started_run[0] = '\0';
        p[1] = num_of(&at, t->at_ms);
        return wrun(s, PG_W_RUN_RUNNING, 2, p, NULL, err);
    case RUN_W_RECOMPUTE:
        if (strcmp(s->quiet_run, t->run_id) == 0 && s->quiet_done) {
            /* Not waiting, no other step active, its step finished: as
             * it is (PG_W_RUN_RECOMPUTE would match no row). */
            s->quiet_run[0] = '\0';
            return DURABLE_OK;
        }
        s->quiet_run[0] = '\0';
        s->known_run[0] = '\0';
        return wrun(s, PG_W_RUN_RECOMPUTE, 1, p, NULL, err);
    default:
        break;
    }
    s->started_run[0] = '\0';
    s->quiet_run[0] = '\0';
    s->known_run[0] = '\0';
    switch (w) {
    case RUN_W_FINISH:
        p[1] = run_status_name(t->run_status);
        p[2] = t->output_json;
        p[3] = t->error_message;
        p[4] = num_of(&at, t->at_ms);
        rc = wrun(s, PG_W_RUN_FINISH, 5, p, NULL, err);
        if (rc == DURABLE_OK) {
            p[1] = p[4];
            rc = wrun(s, PG_W_STEPS_CANCEL, 2, p, NULL, err);
        }
        return rc;
    case RUN_W_PAUSE:
        return wrun(s, PG_W_RUN_PAUSE, 1, p, NULL, err);
    case RUN_W_RESUME:
        return wrun(s, PG_W_RUN_RESUME, 1, p, NULL, err);
    case RUN_W_START:
    case RUN_W_RECOMPUTE:
    default:
        return err_set(err, DURABLE_EINVAL, "unknown run write %d", (int)w);
    }
}

/* The step rows of new run run_id (t's steps, pending), in one statement. */
static durable_code steps_insert(struct pg_store *s, const struct transition *t, const char *run_id,
                                 durable_error *err)
{
    enum { N = 5 };
    static const bool quoted[N] = { false, true, true, false, true };
    struct dbuf lit[N];
    const char *p[N + 1] = { run_id };
    durable_code rc = DURABLE_OK;

    for (int c = 0; c < N; c++) {
        dbuf_init(&lit[c], 0);
        dbuf_add(&lit[c], "{", 1);
    }
    for (size_t i = 0; rc == DURABLE_OK && i < t->n_steps; i++) {
        const struct transition_step_init *si = &t->steps[i];
        struct num idx, max;
        const char *v[N] = { num_of(&idx, (int64_t)i), si->step_id, si->type,
                             num_of(&max, si->max_attempts),
                             si->depends_on_json ? si->depends_on_json : "[]" };
        for (int c = 0; rc == DURABLE_OK && c < N; c++)
            rc = lit_add(&lit[c], v[c], quoted[c]);
    }
    for (int c = 0; rc == DURABLE_OK && c < N; c++) {
        rc = dbuf_add(&lit[c], "}", 1);
        p[c + 1] = lit[c].buf;
    }
    if (rc != DURABLE_OK)
        rc = err_set(err, rc, "could not create the steps: too many");
    else
        rc = wrun(s, PG_W_STEPS_INSERT, N + 1, p, NULL, err);
    for (int c = 0; c < N; c++)
        dbuf_release(&lit[c]);
    return rc;
}

static durable_code pg_row_run_insert(struct store *base, const struct transition *t,
                                      const char *run_id, const char *input_json,
                                      durable_error *err)
{
    struct pg_store *s = pg_of(base);
    int64_t epoch = atomic_load(&s->owner_epoch);
    struct num at, deadline, owner, prio;
    const char *p[12] = { run_id,
                          t->workflow_id,
                          input_json,
                          t->order_id,
                          t->idempotency_key,
                          num_of(&at, t->at_ms),
                          time_of(&deadline, t->deadline_ms),
                          epoch > 0 ? s->node_id : NULL,
                          num_of(&owner, epoch > 0 ? epoch : 0),
                          t->restarted_from,
                          t->restarted_step,
                          num_of(&prio, t->priority) };
    /* A key another node's run took since run_by_key looked fails the
     * insert (the runs_key constraint): the writer applies the batch
     * again, and then finds that run. */
    durable_code rc = wrun(s, PG_W_RUN_INSERT, 12, p, NULL, err);

    ahead_created(s, t, run_id, epoch > 0 ? epoch : 0);
    /* A new run: its events are numbered from 1. */
    snprintf(s->seq_run, sizeof(s->seq_run), "%s", run_id);
    s->seq_last = 0;
    if (rc == DURABLE_OK && t->n_steps > 0)
        rc = steps_insert(s, t, run_id, err);
    return rc;
}

static durable_code pg_row_step_insert(struct store *base, const char *run_id, int idx,
                                       const struct transition_step_init *si, durable_error *err)
{
    struct num n_idx, max;
    const char *sp[6] = { run_id,
                          num_of(&n_idx, idx),
                          si->step_id,
                          si->type,
                          num_of(&max, si->max_attempts),
                          si->depends_on_json ? si->depends_on_json : "[]" };

    ahead_drop(pg_of(base), run_id);
    return wrun(pg_of(base), PG_W_STEP_INSERT, 6, sp, NULL, err);
}

static durable_code pg_row_run_retry(struct store *base, const char *run_id, int64_t deadline_ms,
                                     void (*fn)(void *ud, const char *step_id), void *ud,
                                     durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct num deadline;
    const char *p[2] = { run_id, time_of(&deadline, deadline_ms) };
    PGresult *r;
    durable_code rc;

    ahead_drop(s, run_id);
    s->started_run[0] = '\0';
    s->quiet_run[0] = '\0';
    s->known_run[0] = '\0';
    r = wexec(s, PG_W_STEPS_TO_RETRY, 1, p, err);
    if (!r)
        return DURABLE_EIO;
    for (int i = 0; i < PQntuples(r); i++)
        fn(ud, PQgetvalue(r, i, 0));
    PQclear(r);
    rc = wrun(s, PG_W_STEPS_RETRY, 1, p, NULL, err);
    if (rc == DURABLE_OK)
        rc = wrun(s, PG_W_RUN_RETRY, 2, p, NULL, err);
    return rc;
}

static durable_code pg_row_order_insert(struct store *base, const char *order_id, double amount,
                                        int64_t at_ms, durable_error *err)
{
    char amount_text[32];
    struct num at;
    const char *p[3] = { order_id, amount_text, num_of(&at, at_ms) };

    snprintf(amount_text, sizeof(amount_text), "%.17g", amount);
    return wrun(pg_of(base), PG_W_ORDER_INSERT, 3, p, NULL, err);
}

static durable_code pg_row_order_set_status(struct store *base, const char *order_id,
                                            const char *status, int64_t at_ms, durable_error *err)
{
    struct num at;
    const char *p[3] = { order_id, status, num_of(&at, at_ms) };

    return wrun(pg_of(base), PG_W_ORDER_SET_STATUS, 3, p, NULL, err);
}

static durable_code pg_row_kv_put(struct store *base, const char *key, const char *value,
                                  int64_t at_ms, durable_error *err)
{
    struct num at;
    const char *p[3] = { key, value, num_of(&at, at_ms) };

    return wrun(pg_of(base), PG_W_KV_PUT, 3, p, NULL, err);
}

static durable_code pg_row_workflow_insert(struct store *base, const struct transition_result *wf,
                                           const struct transition *t, durable_error *err)
{
    struct num version, at, retain;
    const char *p[6] = { wf->id,
                         t->wf_name,
                         num_of(&version, wf->version),
                         t->wf_definition,
                         num_of(&at, t->at_ms),
                         t->wf_retain_ms > 0 ? num_of(&retain, t->wf_retain_ms) : NULL };

    return wrun(pg_of(base), PG_W_WF_INSERT, 6, p, NULL, err);
}

/* ---- events ---- */

/* The last seq of run_id into *out: DURABLE_ENOTFOUND without the run. */
static durable_code last_seq(struct pg_store *s, const char *run_id, int64_t *out,
                             durable_error *err)
{
    const char *p[1] = { run_id };
    PGresult *r = wexec(s, PG_W_RUN_LAST_SEQ, 1, p, err);
    durable_code rc = DURABLE_OK;

    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) == 0)
        rc = err_set(err, DURABLE_ENOTFOUND, "run \"%s\" not found", run_id);
    else
        *out = pg_cell_int64(r, 0, 0);
    PQclear(r);
    return rc;
}

static durable_code pg_row_event_append(struct store *base, const struct event_key *k,
                                        const char *type, const char *data,
                                        struct store_event_ids *out, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    int64_t seq = 0;
    durable_code rc = DURABLE_OK;

    struct pg_ahead *a = ahead_find(s, k->run_id);

    if (a) { /* the row read ahead has the last seq before this event */
        PQclear(a->r);
        a->r = NULL;
    }
    if (a && a->created)
        seq = a->seq_last + 1;
    else if (strcmp(k->run_id, s->seq_run) == 0)
        seq = s->seq_last + 1;
    else if ((rc = last_seq(s, k->run_id, &seq, err)) == DURABLE_OK)
        seq++;
    if (rc == DURABLE_OK)
        rc = held_event(s, k, type, data, seq, err);
    if (rc != DURABLE_OK) {
        seq_forget(s);
        ahead_drop(s, k->run_id);
        return rc;
    }
    if (a && a->created) /* still as inserted, with this event */
        a->seq_last = seq;
    s->last_gid++;
    snprintf(s->seq_run, sizeof(s->seq_run), "%s", k->run_id);
    s->seq_last = seq;
    out->seq = seq;
    out->gid = s->last_gid;
    return DURABLE_OK;
}

static void pg_row_events_undo(struct store *base, int64_t first_gid)
{
    struct pg_store *s = pg_of(base);

    s->last_gid = first_gid - 1;
    held_events_undo(s, first_gid);
    /* The run whose events are given back: its last seq is no longer
     * known (nor, if it was inserted here, its row as inserted). */
    if (s->seq_run[0])
        ahead_drop(s, s->seq_run);
    s->known_run[0] = '\0';
    seq_forget(s);
}

static durable_code pg_row_savepoint(struct store *base, enum store_savepoint op,
                                     durable_error *err)
{
    static const enum pg_wstmt_id ids[] = {
        [SAVEPOINT_BEGIN] = PG_W_SAVEPOINT,
        [SAVEPOINT_RELEASE] = PG_W_SP_RELEASE,
        [SAVEPOINT_ROLLBACK] = PG_W_SP_ROLLBACK,
    };

    durable_code rc;

    if (op < SAVEPOINT_BEGIN || op > SAVEPOINT_ROLLBACK)
        return err_set(err, DURABLE_EINVAL, "unknown savepoint operation %d", (int)op);
    /* What was held back goes on the same side of the savepoint as it
     * was written. */
    if ((rc = held_send(pg_of(base), err)) != DURABLE_OK)
        return rc;
    if (op == SAVEPOINT_ROLLBACK) { /* the writes since are undone */
        pg_of(base)->quiet_run[0] = '\0';
        pg_of(base)->known_run[0] = '\0';
    }
    return wrun(pg_of(base), ids[op], 0, NULL, NULL, err);
}

/* The events this transaction appended (last_gid - gid_base), the last
 * of ev, numbered as the server did. */
static void events_renumber(const struct pg_store *s, struct store_events *ev)
{
    int64_t n = s->last_gid - s->gid_base;

    for (size_t i = ev ? ev->n : 0; s->gid_shift != 0 && n > 0 && i > 0; i--, n--) {
        int64_t *gid = &ev->items[i - 1].global_id;
        if (*gid <= s->gid_base || *gid > s->last_gid)
            break;
        *gid += s->gid_shift;
    }
}

#ifdef DURABLE_FAILPOINTS
const char *const pg_fault_kinds[] = { "refused", NULL };

/* A statement the server refuses, in the transaction: it is rolled back
 * at its COMMIT, as by any failure of the server's. */
static durable_code fault_send(struct pg_store *s, durable_error *err)
{
    const char *p[1] = { "DURABLE_FAILPOINT_COMMIT" };

    if (PQsendQueryParams(s->w, "SELECT $1::integer", 1, NULL, p, NULL, NULL, 0) != 1)
        return send_failed(s, "commit", err);
    fifo_push(s, PG_W_COMMIT);
    return DURABLE_OK;
}
#endif

durable_code pg_write_commit_send(struct pg_store *s, durable_error *err)
{
    durable_code rc = held_send(s, err);

    DUR_ASSERT(!s->prev.on);
#ifdef DURABLE_FAILPOINTS
    if (rc == DURABLE_OK && commit_fault_due(&s->fault))
        rc = fault_send(s, err);
#endif
    if (rc == DURABLE_OK)
        rc = send(s, PG_W_COMMIT, 0, NULL, err);
    if (rc != DURABLE_OK)
        return rc;
    /* COMMIT goes with the pipeline's sync, which flushes it: one round
     * trip, whose answer pg_write_commit_wait reads. */
    if (PQpipelineSync(s->w) != 1)
        return send_failed(s, "commit", err);
    s->prev.on = true;
    s->prev.next = false;
    s->prev.n = s->w_n;
    s->prev.gid_base = s->gid_base;
    s->prev.last_gid = s->last_gid;
    s->prev.gid_shift = s->gid_shift; /* an insert of its answered already */
    s->prev.ev_quiet = s->ev_quiet;
    return DURABLE_OK;
}

static durable_code ahead_read(struct pg_store *s, size_t n_guards, durable_error *err);

/* Reads the answers of the transaction whose COMMIT was sent (s->prev):
 * everything not read yet, then COMMIT's (that of a transaction an error
 * aborted is "ROLLBACK"), then its sync's; on success, numbers ev's
 * events as the server did. The results of a transaction begun behind it
 * stay unread, and its first failure (a send's, none read yet) its own. */

static durable_code prev_read(struct pg_store *s, struct store_events *ev, durable_error *err)
{
    durable_code next_rc = s->w_rc, rc;
    durable_error next_err = s->w_err;
    enum pg_wstmt_id id;
    PGresult *r;

    DUR_ASSERT(s->prev.on && s->prev.n > 0 && s->prev.n <= s->w_n);
    s->w_rc = DURABLE_OK;
    err_clear(&s->w_err);
    s->gid_shift = s->prev.gid_shift;
    rc = read_upto(s, s->w_n - s->prev.n + 1, err);
    r = read_next(s, &id);
    if (rc == DURABLE_OK && !result_ok(s, r, id))
        rc = failed(s, err);
    else if (rc == DURABLE_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0)
        rc = err_set(err, DURABLE_EIO, "could not commit: the transaction was rolled back");
    PQclear(r);
    r = PQgetResult(s->w);
    if (rc == DURABLE_OK && (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC))
        rc = err_set(err, DURABLE_EIO, "could not commit: %s", PQerrorMessage(s->w));
    PQclear(r);
    s->prev.on = false;
    if (rc == DURABLE_OK && s->prev.last_gid > s->prev.gid_base) {
        s->gid_base = s->prev.gid_base;
        s->last_gid = s->prev.last_gid;
        events_renumber(s, ev);
        s->gid_base = s->last_gid + s->gid_shift; /* the counter as this commit left it */
    }
    s->last_gid = s->gid_base; /* the next transaction's numbering from it */
    s->gid_shift = 0;
    s->w_rc = next_rc;
    s->w_err = next_err;
    return rc;
}

/* Tells the other nodes of the events committed, after a commit whose
 * events went untold while a node joined (the cluster thread told those
 * committed before, cluster.c joined): on the write connection, or on a
 * read connection while a transaction is on its way on it. */
static void tell_late(struct pg_store *s)
{
    struct pg_reader *rd;
    durable_error err = { 0 };

    if (PQpipelineStatus(s->w) == PQ_PIPELINE_OFF) {
        pg_tell_events(s->w);
    } else if (pg_reader_take(s, &rd, &err) == DURABLE_OK) {
        pg_tell_events(rd->c);
        pg_reader_put(s, rd);
    } else {
        log_warn("could not tell the other nodes of events: %s", err.msg);
    }
}

durable_code pg_write_commit_wait(struct pg_store *s, struct store_events *ev, durable_error *err)
{
    bool next = s->prev.next, quiet = s->prev.ev_quiet;
    durable_code rc = prev_read(s, ev, err);

    if (rc != DURABLE_OK)
        return rc; /* the caller rolls back, the next transaction with it */
    if (!next && PQexitPipelineMode(s->w) != 1)
        return err_set(err, DURABLE_EIO, "could not commit: %s", PQerrorMessage(s->w));
    if (quiet && atomic_load(&s->others_alive))
        tell_late(s);
    if (!next) {
        pg_write_begin(s, false);
    } else if (s->guards_unread > 0) {
        /* The next transaction's guards, behind its BEGIN; a failure is
         * its own (its next statement answers it). */
        durable_error next_err = { 0 };
        if (read_upto(s, 1, &next_err) == DURABLE_OK)
            (void)ahead_read(s, s->guards_unread, &next_err);
        s->guards_unread = 0;
    }
    return DURABLE_OK;
}

durable_code pg_write_commit(struct pg_store *s, struct store_events *ev, durable_error *err)
{
    durable_code rc = pg_write_commit_send(s, err);

    return rc == DURABLE_OK ? pg_write_commit_wait(s, ev, err) : rc;
}

/* The run and step of t's first read when it is its guard (a step
 * transition, a run's finish or retry): whether it can be read ahead. */
static bool guard_key(const struct transition *t, const char **out_step)
{
    bool is_step = (t->kind >= TR_STEP_START && t->kind <= TR_STEP_SKIP) ||
                   t->kind == TR_STEP_WAIT || t->kind == TR_STEP_DECIDE;
    bool is_run = t->kind == TR_RUN_FINISH || t->kind == TR_RUN_RETRY || t->kind == TR_RUN_ADMIT ||
                  t->kind == TR_RATE_TAKE;

    *out_step = is_step ? t->step_id : NULL;
    return (is_step || is_run) && t->run_id && strlen(t->run_id) < ID_MAX &&
           (!is_step || t->step_id);
}

/* An empty table of at least 2n slots. */
static void ahead_reset(struct pg_store *s, size_t n)
{
    size_t cap = 64;

    while (cap < 2 * n)
        cap *= 2;
    ahead_clear(s);
    if (cap > s->ahead_cap) {
        free(s->ahead);
        free(s->ahead_order);
        s->ahead = xcalloc(cap, sizeof(*s->ahead));
        s->ahead_order = xcalloc(cap, sizeof(*s->ahead_order));
        s->ahead_cap = cap;
    }
}

/* A result of one row: row i of r (the guards' result), its columns as
 * a guard read's. */
static PGresult *guard_row(const PGresult *r, int i)
{
    PGresult *one = PQcopyResult(r, PG_COPYRES_ATTRS);

    for (int c = 0; one && c < PQnfields(r); c++) {
        bool null = PQgetisnull(r, i, c);
        if (!PQsetvalue(one, 0, c, null ? NULL : PQgetvalue(r, i, c),
                        null ? -1 : PQgetlength(r, i, c))) {
            PQclear(one);
            one = NULL;
        }
    }
    return one;
}

/* The guards' rows r, each into its run's slot (a run without a row gets
 * an empty result: no such run). */
static void guards_take(struct pg_store *s, const PGresult *r, size_t n_guards)
{
    int col = PQnfields(r) - 1; /* the guard's place */

    for (int i = 0; i < PQntuples(r); i++) {
        int64_t g = pg_cell_int64(r, i, col);
        struct pg_ahead *a;
        if (g < 1 || (size_t)g > n_guards)
            continue;
        a = &s->ahead[s->ahead_order[g - 1]];
        if (!a->r)
            a->r = guard_row(r, i);
    }
    for (size_t g = 0; g < n_guards; g++) {
        struct pg_ahead *a = &s->ahead[s->ahead_order[g]];
        if (!a->r)
            a->r = PQcopyResult(r, PG_COPYRES_ATTRS);
    }
}

/* Reads the guards' rows (n_guards > 0). */
static durable_code ahead_read(struct pg_store *s, size_t n_guards, durable_error *err)
{
    enum pg_wstmt_id id;
    PGresult *r;

    if (n_guards == 1) {
        r = read_next(s, &id);
        if (result_ok(s, r, id))
            s->ahead[s->ahead_order[0]].r = r;
        else
            PQclear(r);
    } else if (n_guards > 1) {
        r = read_next(s, &id);
        if (result_ok(s, r, id))
            guards_take(s, r, n_guards);
        PQclear(r);
    }
    return s->w_rc == DURABLE_OK ? DURABLE_OK : failed(s, err);
}

/* Takes the slot of t's run in the table, unless a transition before
 * took it (then t reads after the writes): a run t creates is marked, as
 * there is nothing to read of it (if t inserts it, its row is known; if
 * not, it is read later); a guard to read is put in the order of the
 * reads (*n_guards). Whether t's guard (run, *out_step) is to be read. */
static bool ahead_claim(struct pg_store *s, const struct transition *t, const char **out_step,
                        size_t *n_guards)
{
    bool create = t->kind == TR_RUN_CREATE;
    size_t k;

    *out_step = NULL;
    if (create ? !t->run_id || strlen(t->run_id) >= ID_MAX : !guard_key(t, out_step))
        return false;
    k = ahead_slot(s, t->run_id);
    if (s->ahead[k].run_id)
        return false;
    s->ahead[k].run_id = t->run_id;
    s->ahead[k].step_id = *out_step;
    s->ahead[k].r = NULL;
    s->ahead_n++;
    if (create)
        return false;
    s->ahead_order[(*n_guards)++] = k;
    return true;
}

/* The batch's guards, read ahead in one statement and one round trip: the
 * first transition of each run whose first read is its guard (a run or a
 * step of it). */
durable_code pg_prefetch(struct store *base, const struct transition *const *t, size_t n,
                         durable_error *err)
{
    struct pg_store *s = pg_of(base);
    size_t n_guards = 0;
    struct dbuf lit[2];                  /* the runs' and the steps' ids */
    durable_code rc = held_send(s, err); /* the reads see every write before them */

    ahead_reset(s, n);
    for (int c = 0; c < 2; c++) {
        dbuf_init(&lit[c], 0);
        dbuf_add(&lit[c], "{", 1);
    }
    for (size_t i = 0; rc == DURABLE_OK && i < n; i++) {
        const char *step_id;
        if (!ahead_claim(s, t[i], &step_id, &n_guards))
            continue;
        rc = lit_add(&lit[0], t[i]->run_id, true);
        if (rc == DURABLE_OK)
            rc = lit_add(&lit[1], step_id, true);
        if (rc != DURABLE_OK)
            rc = err_set(err, rc, "could not read the steps: too many");
    }
    if (rc == DURABLE_OK && n_guards == 1) { /* one guard: its own statement, cheaper */
        const struct pg_ahead *a = &s->ahead[s->ahead_order[0]];
        const char *p[2] = { a->run_id, a->step_id };
        rc = send(s, PG_W_RUN_GUARD, 2, p, err);
    } else if (rc == DURABLE_OK && n_guards > 1) {
        rc = lits_send(s, PG_W_GUARDS, lit, 2, err);
    }
    for (int c = 0; c < 2; c++)
        dbuf_release(&lit[c]);
    if (rc != DURABLE_OK || n_guards == 0)
        return rc; /* nothing to read yet */
    rc = flush(s, err);
    if (rc == DURABLE_OK && s->prev.on) {
        s->guards_unread = n_guards; /* read after the COMMIT's answer */
        return DURABLE_OK;
    }
    if (rc == DURABLE_OK)
        rc = read_upto(s, 1, err);
    return rc == DURABLE_OK ? ahead_read(s, n_guards, err) : rc;
}

void pg_write_forget(struct pg_store *s)
{
    memset(s->wf_known, 0, sizeof(s->wf_known));
}

/* ---- signals ---- */

static durable_code pg_row_signal_insert(struct store *base, const struct transition *t,
                                         int64_t seq, durable_error *err)
{
    struct num a, b;
    const char *p[6] = { t->signal_id,    t->run_id,
                         t->signal_name,  t->output_json ? t->output_json : "null",
                         num_of(&a, seq), num_of(&b, t->at_ms) };

    return wrun(pg_of(base), PG_W_SIGNAL_INSERT, 6, p, NULL, err);
}

static durable_code pg_row_signal_next(struct store *base, const char *run_id, const char *name,
                                       char out_id[ID_MAX], struct dbuf *payload,
                                       durable_error *err)
{
    const char *p[2] = { run_id, name };
    PGresult *r = wexec(pg_of(base), PG_W_SIGNAL_NEXT, 2, p, err);

    out_id[0] = '\0';
    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) > 0) {
        cell_copy(r, 0, out_id, ID_MAX);
        dbuf_add(payload, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_signal_take(struct store *base, const char *signal_id,
                                       const char *step_id, int64_t at_ms, durable_error *err)
{
    struct num a;
    const char *p[3] = { signal_id, step_id, num_of(&a, at_ms) };

    return wrun(pg_of(base), PG_W_SIGNAL_TAKE, 3, p, NULL, err);
}

static durable_code pg_row_signal_waiter(struct store *base, const char *run_id, const char *name,
                                         char out_step[STORE_STEP_ID_MAX], int *out_attempt,
                                         durable_error *err)
{
    const char *p[2] = { run_id, name };
    PGresult *r = wexec(pg_of(base), PG_W_SIGNAL_WAITER, 2, p, err);

    out_step[0] = '\0';
    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) > 0) {
        cell_copy(r, 0, out_step, STORE_STEP_ID_MAX);
        *out_attempt = (int)pg_cell_int64(r, 0, 1);
    }
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_flow_admit(struct store *base, const struct transition *t,
                                      struct transition_result *out, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    char lim[16];
    const char *p[3] = { t->run_id, t->flow_key, lim };
    PGresult *r;

    snprintf(lim, sizeof(lim), "%d", t->flow_limit);
    if (send(s, PG_W_FLOW_LOCK, 1, &t->flow_key, err) != DURABLE_OK)
        return DURABLE_EIO;
    r = wexec(s, PG_W_FLOW_ADMIT, 3, p, err);
    if (!r)
        return DURABLE_EIO;
    out->in_use = pg_cell_int64(r, 0, 0);
    out->admitted = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_row_rate_take(struct store *base, const struct transition *t,
                                     struct transition_result *out, durable_error *err)
{
    char interval[32];
    const char *p[2] = { t->flow_key, interval };
    PGresult *r;

    snprintf(interval, sizeof(interval), "%.3f", t->rate_interval_ms);
    r = wexec(pg_of(base), PG_W_RATE_TAKE, 2, p, err);
    if (!r)
        return DURABLE_EIO;
    out->wait_ms = pg_cell_int64(r, 0, 0);
    PQclear(r);
    return DURABLE_OK;
}

const struct store_rows_ops pg_rows_ops = {
    .run_get = pg_row_run_get,
    .run_by_key = pg_row_run_by_key,
    .workflow_exists = pg_row_workflow_exists,
    .workflow_latest = pg_row_workflow_latest,
    .order_get = pg_row_order_get,
    .kv_get = pg_row_kv_get,
    .kv_put = pg_row_kv_put,
    .step_write = pg_row_step_write,
    .run_write = pg_row_run_write,
    .run_insert = pg_row_run_insert,
    .step_insert = pg_row_step_insert,
    .run_retry = pg_row_run_retry,
    .order_insert = pg_row_order_insert,
    .order_set_status = pg_row_order_set_status,
    .workflow_insert = pg_row_workflow_insert,
    .event_append = pg_row_event_append,
    .events_undo = pg_row_events_undo,
    .savepoint = pg_row_savepoint,
    .run_notify = pg_row_run_notify,
    .runs_delete = pg_row_runs_delete,
    .workflow_delete = pg_row_workflow_delete,
    .schedule_get = pg_row_schedule_get,
    .schedule_put = pg_row_schedule_put,
    .schedule_write = pg_row_schedule_write,
    .signal_insert = pg_row_signal_insert,
    .signal_next = pg_row_signal_next,
    .signal_take = pg_row_signal_take,
    .signal_waiter = pg_row_signal_waiter,
    .flow_admit = pg_row_flow_admit,
    .rate_take = pg_row_rate_take,
};
