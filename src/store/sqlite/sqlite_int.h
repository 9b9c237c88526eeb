/*
 * sqlite_int.h - private types shared by the files of the SQLite backend.
 *
 * The backend implements store.h's struct store_ops (sqlite_store_ops, in
 * sqlite.c) over a struct sqlite_store, which embeds struct store first.
 * Only the files of this folder include sqlite3.h.
 *
 * sqlite.c opens the connections, runs the migrations and owns the statement
 * cache and the small helpers below; write.c reads and writes the rows of
 * transitions (store/apply.c decides them) on the write connection;
 * read.c (engine records) and rows.c (the documents' records) read
 * through the read connections.
 *
 * Threads: the write connection (s->w) belongs to the writer thread. Readers
 * take a read connection from a small pool (store_reader_take), use it alone
 * and give it back (store_reader_put): up to STORE_READERS threads read at
 * once, each on its own connection (WAL lets them run beside the writer and
 * beside one another). Each connection has its own cache of prepared
 * statements, created on first use and reset after every use, so that no
 * statement keeps a read snapshot open between calls.
 */
#ifndef DURABLE_STORE_SQLITE_SQLITE_INT_H
#define DURABLE_STORE_SQLITE_SQLITE_INT_H

#include "util/common.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>

#include "store/backend.h"
#include "store/store.h"

/* Every SQL statement the store runs, cached per connection. */
enum stmt_id {
    ST_BEGIN = 0,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_SP_RELEASE,
    ST_SP_ROLLBACK,
    ST_PRAGMA_SYNCHRONOUS,
    /* writes */
    ST_WF_LATEST,
    ST_WF_INSERT,
    ST_WF_EXISTS,
    ST_ORDER_INSERT,
    ST_ORDER_STATUS,
    ST_ORDER_SET_STATUS,
    ST_KV_GET,
    ST_KV_PUT,
    ST_RUN_BY_KEY,
    ST_RUN_INSERT,
    ST_RUN_RUNNING,
    ST_RUN_RECOMPUTE,
    ST_RUN_FINISH,
    ST_RUN_PAUSE,
    ST_RUN_RESUME,
    ST_RUN_LAST_SEQ,
    ST_STEP_INSERT,
    ST_RUN_STEP_GUARD,
    ST_STEP_START,
    ST_STEP_RESTART,
    ST_STEP_COMPLETE,
    ST_STEP_RUN,
    ST_STEP_RETRY,
    ST_STEP_FAIL,
    ST_STEP_SKIP,
    ST_STEP_WAIT,
    ST_STEP_PROGRESS,
    ST_SIGNAL_INSERT,
    ST_SIGNAL_NEXT,
    ST_SIGNAL_TAKE,
    ST_SIGNAL_WAITER,
    ST_STEPS_CANCEL,
    ST_EVENT_INSERT,
    ST_EVENT_MAX_GID,
    ST_STEPS_TO_RETRY,
    ST_STEPS_RETRY,
    ST_RUN_RETRY,
    ST_SCHED_GET,
    ST_SCHED_PUT,
    ST_SCHED_PAUSE,
    ST_SCHED_DELETE,
    ST_SCHED_FIRE,
    /* reads */
    ST_READ_BEGIN,
    ST_WF_BY_ID,
    ST_WF_BY_NAME,
    ST_RUN_LOAD,
    ST_STEPS_LOAD,
    ST_RUNS_UNFINISHED,
    ST_RUN_STATUS,
    ST_RUN_JSON,
    ST_STEPS_JSON,
    ST_EVENTS_JSON,
    ST_ORDER_JSON,
    ST_KV_READ,
    ST_WF_LIST,
    ST_WF_COUNT,
    ST_RUNS_LIST, /* four filter variants each: see sqlite_runs_page in rows.c */
    ST_RUNS_LIST_STATUS,
    ST_RUNS_LIST_WF,
    ST_RUNS_LIST_STATUS_WF,
    ST_RUNS_LIST_FILTERED, /* every filter (time ranges, input) */
    ST_RUNS_COUNT_FILTERED,
    ST_RUNS_COUNT,
    ST_RUNS_COUNT_STATUS,
    ST_RUNS_COUNT_WF,
    ST_RUNS_COUNT_STATUS_WF,
    ST_ORDERS_LIST,
    ST_ORDERS_COUNT,
    ST_EVENTS_SINCE,
    ST_RUNS_BY_STATUS,
    ST_STEPS_BY_STATUS,
    ST_PING,
    ST_SCHED_READ,
    ST_SCHED_LIST,
    /* the DB viewer: each table's newest rows and its row count (inspect.c) */
    ST_SNAP_WORKFLOWS,
    ST_SNAP_RUNS,
    ST_SNAP_STEPS,
    ST_SNAP_STEPS_COUNT,
    ST_SNAP_EVENTS,
    ST_SNAP_EVENTS_COUNT,
    ST_SNAP_SIGNALS,
    ST_SNAP_SIGNALS_COUNT,
    ST_SNAP_KV,
    ST_SNAP_KV_COUNT,
    ST_SNAP_GID_FLOOR,
    ST_SNAP_GID_FLOOR_COUNT,
    ST_SNAP_SCHEDULES,
    ST_SNAP_SCHEDULES_COUNT,
    ST_SNAP_ORDERS,
    ST_SNAP_SCHEMA_VERSION,
    ST_SNAP_SCHEMA_VERSION_COUNT,
    ST_COUNT
};

/* A statement's SQL text (for tests that EXPLAIN it). */
const char *store_stmt_sql(enum stmt_id id);

/* One SQLite connection and its statements. Confined to one thread at a time. */
struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[ST_COUNT];
};

/* Read connections in the pool: enough for the HTTP workers (4 by default),
 * the scheduler and a few API callers at once; more readers wait. Opened on
 * first need, so a short-lived process opens one. */
#define STORE_READERS 8

struct sqlite_store {
    struct store base; /* first: sqlite_of converts */
    char *path;
    durable_durability durability;
    struct conn w; /* writer thread only */
    /* The read pool: a connection is in idle[] or used by the one thread
     * that took it. */
    pthread_mutex_t read_mu;
    pthread_cond_t read_cond; /* a connection was given back */
    struct conn readers[STORE_READERS];
    struct conn *idle[STORE_READERS]; /* guarded by read_mu */
    size_t n_idle;                    /* guarded by read_mu */
    size_t n_open;                    /* guarded by read_mu: readers[0..n_open) opened
                                         or being opened */
    size_t max_open;                  /* guarded by read_mu: lowered when one fails to open */
    /* Writer thread only: the last global event id given out. Read from
     * the database at every store_tx_begin (under the write lock, so
     * another process writing the same file cannot make ids collide), and
     * put back (events_undo, write.c) when a transition is refused, so
     * that ids have no gaps. */
    int64_t last_gid;
    /* Writer thread only: the last event seq of run seq_run, known inside
     * the open transaction (read by run_get, or given out by the last
     * append), so that numbering the next event needs no statement.
     * Forgotten whenever a transition or the transaction is undone. */
    char seq_run[ID_MAX];
    int64_t seq_last;
#ifdef DURABLE_FAILPOINTS
    /* Writer thread only: the commits DURABLE_FAILPOINT_COMMIT makes fail
     * (a test hook, sqlite.c). */
    struct commit_fault fault;
#endif
};

/* Forgets s->seq_run (see struct sqlite_store). */
void store_seq_forget(struct sqlite_store *s);

/* A read connection for the calling thread alone, until store_reader_put.
 * Waits while all STORE_READERS are in use; opens one when none is idle and
 * fewer are open (if that fails, it logs and waits for one of those open).
 * Never fails. */
struct conn *store_reader_take(struct sqlite_store *s);
/* Gives c back; its statements must have been released and its read
 * transaction ended. */
void store_reader_put(struct sqlite_store *s, struct conn *c);

/*
 * Returns the cached statement id of c, preparing it on first use, reset and
 * with the arguments bound as described by fmt, one letter per parameter
 * ?1, ?2, ...: 's' const char * (NULL binds NULL), 'I' int64_t, 'i' int,
 * 'f' double, 'T' int64_t time in ms where 0 binds NULL. Strings are bound
 * without copying: they must stay valid until stmt_release.
 * Errors read "could not <what the statement does>: <sqlite's reason>".
 */
durable_code stmt_get(struct conn *c, enum stmt_id id, sqlite3_stmt **out, durable_error *err,
                      const char *fmt, ...);

/* sqlite3_step: *has_row true on SQLITE_ROW, false on SQLITE_DONE (has_row
 * may be NULL for writes); any other result is DURABLE_EIO. */
durable_code stmt_step(sqlite3_stmt *st, bool *has_row, durable_error *err);

/* Resets st and clears its bindings. Accepts NULL. */
void stmt_release(sqlite3_stmt *st);

/* stmt_get + one stmt_step + stmt_release, for writes. */
durable_code stmt_exec(struct conn *c, enum stmt_id id, durable_error *err, const char *fmt, ...);

/* Column helpers: NULL becomes NULL / 0. col_strdup returns an owned copy. */
char *col_strdup(sqlite3_stmt *st, int col);
const char *col_text(sqlite3_stmt *st, int col);
void col_copy_id(sqlite3_stmt *st, int col, char out[ID_MAX]);

/* A read transaction on a taken read connection, so that several
 * statements see one snapshot (a list and its total, a run and its steps,
 * the tables of a snapshot) and take SQLite's WAL read lock once.
 * store_read_end accepts a connection not in a transaction. */
durable_code store_read_begin(struct conn *c, durable_error *err);
void store_read_end(struct conn *c);

/* The SQLite store of a struct store whose ops are sqlite_store_ops. */
static inline struct sqlite_store *sqlite_of(struct store *s)
{
    return (struct sqlite_store *)s;
}

/* The backend's operations (store.h's contracts; sqlite_store_ops in
 * sqlite.c lists them), in the files named. */
/* sqlite.c */
durable_code sqlite_open(const char *location, durable_durability durability, struct store **out,
                         durable_error *err);
void sqlite_close(struct store *base);
int sqlite_schema_version(void);
durable_code sqlite_synchronous(struct store *base, int *out_level, durable_error *err);
durable_code sqlite_tx_begin(struct store *base, durable_error *err);
durable_code sqlite_tx_commit(struct store *base, struct store_events *ev, durable_error *err);
void sqlite_tx_rollback(struct store *base);
/* write.c: the rows store_apply reads and writes (backend.h) */
extern const struct store_rows_ops sqlite_rows_ops;
/* read.c */
durable_code sqlite_workflow_get(struct store *base, const char *id_or_name,
                                 struct workflow_record *out, durable_error *err);
durable_code sqlite_run_load(struct store *base, const char *run_id, struct run_record *out,
                             durable_error *err);
durable_code sqlite_runs_unfinished(struct store *base,
                                    durable_code (*fn)(const struct run_record *r, void *ud),
                                    void *ud, durable_error *err);
durable_code sqlite_run_find_by_key(struct store *base, const char *workflow_id, const char *key,
                                    char out_run_id[ID_MAX], bool *out_found, durable_error *err);
durable_code sqlite_run_status(struct store *base, const char *run_id, enum run_status *out_status,
                               durable_error *err);
/* rows.c */
durable_code sqlite_run_read(struct store *base, const char *run_id, const struct store_row_fns *fn,
                             durable_error *err);
durable_code sqlite_events_read(struct store *base, const char *run_id, int64_t after_seq,
                                struct store_events *out, durable_error *err);
durable_code sqlite_events_since(struct store *base, int64_t after_gid, int limit,
                                 struct store_events *out, durable_error *err);
durable_code sqlite_kv_read(struct store *base, const char *key, char **out, durable_error *err);
durable_code sqlite_schedules_read(struct store *base, const char *id,
                                   void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                                   durable_error *err);
durable_code sqlite_order_read(struct store *base, const char *order_id,
                               const struct store_row_fns *fn, durable_error *err);
durable_code sqlite_runs_page(struct store *base, const struct store_run_query *rq,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err);
durable_code sqlite_workflows_page(struct store *base, struct store_page page,
                                   const struct store_row_fns *fn, int64_t *out_total,
                                   durable_error *err);
durable_code sqlite_orders_page(struct store *base, struct store_page page,
                                const struct store_row_fns *fn, int64_t *out_total,
                                durable_error *err);
/* inspect.c */
durable_code sqlite_snapshot_json(struct store *base, int rows_per_table, char **out,
                                  durable_error *err);
durable_code sqlite_count_runs(struct store *base, int64_t out[STORE_N_RUN_STATUSES],
                               durable_error *err);
durable_code sqlite_count_steps(struct store *base, int64_t out[STORE_N_STEP_STATUSES],
                                durable_error *err);
durable_code sqlite_ping(struct store *base, durable_error *err);

/* ---- deletion (purge.c): store_rows_ops.runs_delete, workflow_delete ---- */
durable_code sqlite_runs_delete(struct store *base, const struct store_purge *q,
                                void (*fn)(void *ud, const char *run_id), void *ud, int64_t *out_n,
                                durable_error *err);
durable_code sqlite_workflow_delete(struct store *base, const char *name, int version,
                                    bool *out_found, bool *out_used, durable_error *err);

#endif
