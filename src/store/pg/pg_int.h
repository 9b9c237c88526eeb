/*
 * pg_int.h - private types shared by the files of the PostgreSQL backend.
 *
 * The backend implements store.h's struct store_ops (pg_store_ops, in pg.c)
 * over a struct pg_store, which embeds struct store first. Only the files of
 * this folder include libpq-fe.h. So far it has the base: locations,
 * connections, the schema (schema.c), transactions, ping, the reads
 * (read.c, rows.c, inspect.c: each one round trip, pg_read), the row
 * operations of store_apply (write.c, prepared statements on w) and the
 * cluster operations (cluster.c).
 *
 * Connections, each to the same database:
 *   - w, the write connection: the engine's writer thread only;
 *   - a pool of up to PG_READERS read connections, each used by one thread
 *     at a time between pg_reader_take and pg_reader_put (read_mu guards
 *     the pool, never held across a query);
 *   - cl, the cluster connection (opened by join): the heartbeat, claims,
 *     releases and the LISTEN of wake-ups, so that none of them waits behind
 *     the writer's batch. The cluster operations are called by one thread at
 *     a time (the engine's); the lease they keep is theirs.
 *
 * Every value reaches the server as a parameter (PQexecParams), never in the
 * SQL text; the SQL lives in string constants.
 */
#ifndef DURABLE_STORE_PG_PG_INT_H
#define DURABLE_STORE_PG_PG_INT_H

#include "util/common.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "store/backend.h"
#include "store/store.h"

/* Read connections in the pool (as SQLite's: the HTTP workers, the
 * scheduler and a few API callers at once). Opened on first need. */
#define PG_READERS       8
/* Statements a read connection keeps prepared: more than the reads' SQL. */
#define PG_READ_PREPARED 64

/* A read connection of the pool and the reads prepared on it. Each read's
 * SQL (a string of static storage: its address names it) is prepared on
 * the connection at its first use, as "dr<its place in prepared>", and
 * executed by name after, so that the server parses it once (parsing and
 * planning a status read took 9 of its 10 parts). prepared[] holds for
 * the server process pid: a reset connection (a new process) lost them. */
struct pg_reader {
    PGconn *c;
    int pid;
    size_t n_prepared;
    const char *prepared[PG_READ_PREPARED];
};

/* The default lease of a node, in ms: renewed by the heartbeat (every third
 * of it), expired after it (postgres.md 3.2). */
#define PG_LEASE_MS_DEFAULT 10000

/* The channels of wake-ups (NOTIFY payloads: "" on durable_work, a run id on
 * durable_run, the last gid of a commit on durable_events, "" on
 * durable_flow and on durable_nodes, a node joined). */
#define PG_CHANNEL_WORK    "durable_work"
#define PG_CHANNEL_RUN     "durable_run"
#define PG_CHANNEL_EVENTS  "durable_events"
#define PG_CHANNEL_FLOW    "durable_flow"
#define PG_CHANNEL_NODES   "durable_nodes"
/* The first key of a concurrency group's advisory lock ("dflw"; the
 * second is the hash of the group's name). */
#define PG_FLOW_LOCK_CLASS "1684433015"

/* The writer's prepared statements (write.c). */
enum pg_wstmt_id {
    PG_W_RUN_GUARD = 0,
    PG_W_GUARDS,
    PG_W_RUN_BY_KEY,
    PG_W_WF_EXISTS,
    PG_W_WF_LATEST,
    PG_W_ORDER_STATUS,
    PG_W_STEP_START,
    PG_W_STEP_RUN,
    PG_W_STEP_COMPLETE,
    PG_W_STEP_RETRY,
    PG_W_STEP_FAIL,
    PG_W_STEP_SKIP,
    PG_W_STEP_WAIT,
    PG_W_STEP_RESTART,
    PG_W_STEP_PROGRESS,
    PG_W_RUN_RUNNING,
    PG_W_RUN_RECOMPUTE,
    PG_W_RUN_PAUSE,
    PG_W_RUN_RESUME,
    PG_W_RUN_FINISH,
    PG_W_STEPS_CANCEL,
    PG_W_RUN_INSERT,
    PG_W_STEP_INSERT,
    PG_W_STEPS_INSERT,
    PG_W_STEPS_TO_RETRY,
    PG_W_STEPS_RETRY,
    PG_W_RUN_RETRY,
    PG_W_ORDER_INSERT,
    PG_W_ORDER_SET_STATUS,
    PG_W_KV_GET,
    PG_W_KV_PUT,
    PG_W_WF_INSERT,
    PG_W_RUN_LAST_SEQ,
    PG_W_EVENTS_INSERT,
    PG_W_STEPS_START,
    PG_W_STEPS_RUN,
    PG_W_STEPS_COMPLETE,
    PG_W_SAVEPOINT,
    PG_W_SP_RELEASE,
    PG_W_SP_ROLLBACK,
    PG_W_NOTIFY_RUN,
    PG_W_SIGNAL_INSERT,
    PG_W_SIGNAL_NEXT,
    PG_W_SIGNAL_TAKE,
    PG_W_SIGNAL_WAITER,
    PG_W_BEGIN,
    PG_W_COMMIT,
    PG_W_RUNS_DELETE,
    PG_W_RUNS_DELETE_COUNT,
    PG_W_WF_FIND,
    PG_W_WF_DELETE,
    PG_W_SCHED_GET,
    PG_W_SCHED_PUT,
    PG_W_SCHED_PAUSE,
    PG_W_SCHED_DELETE,
    PG_W_SCHED_FIRE,
    PG_W_FLOW_LOCK,
    PG_W_FLOW_ADMIT,
    PG_W_RATE_TAKE,
    PG_W_COUNT
};

/* The unique index that makes an idempotency key name one run per
 * workflow name, on every node (schema.c). */
#define PG_RUNS_KEY "runs_key"

/* Workflow ids the writer found (write.c): they are never deleted. */
#define PG_WF_KNOWN 16

/* A run's guard row read ahead for the open transaction (write.c): the
 * run and step asked (borrowed from the batch's transitions) and the
 * result, NULL once taken or once the run was written. Or a run this
 * transaction inserted (created, owned: what its row says, see
 * ahead_created; n_steps: its steps; id: its id when not borrowed;
 * epoch: the owner's epoch it was inserted with; seq_last: its last
 * event's seq), whose guard row is then known without a read until
 * something but an event is written to it. */
struct pg_ahead {
    const char *run_id; /* NULL: a free slot */
    const char *step_id;
    PGresult *r;
    char *created;
    size_t n_steps;
    int64_t epoch;
    int64_t seq_last;
    char id[ID_MAX];
};

/* The text arrays of the events appended and not sent yet (write.c):
 * run_id, seq, type, step_id, at, data (their gids are given by the
 * server, in this order). */
#define PG_EV_COLS  6
/* ... and of the step writes held back: run_id, step_id, attempt, at,
 * output; at most PG_SW_MAX at once, their keys' hashes in PG_SW_SLOTS
 * slots (twice as many, so never full). */
#define PG_SW_COLS  5
#define PG_SW_MAX   256
#define PG_SW_SLOTS 512

struct pg_store {
    struct store base; /* first: pg_of converts */
    char *conninfo;    /* what libpq connects with (a URI or key=value) */
    durable_durability durability;
    PGconn *w; /* writer thread only */
    /* The writer's state (write.c), writer thread only: which statements
     * w has prepared, the gids given out in the open transaction (counted
     * on from gid_base, the last gid this writer knows committed, until
     * the server numbers them: gid_shift, what it adds), and the last seq
     * of one run. */
    bool w_prepared[PG_W_COUNT];
    int64_t gid_base;
    int64_t last_gid; /* the last gid given out (gid_base: none) */
    int64_t gid_shift;
    char seq_run[ID_MAX];
    int64_t seq_last;
    /* The run the last guard read found running and started (""
     * otherwise, and after any write to a run's row): its start is a
     * no-op. */
    char started_run[ID_MAX];
    /* The run the last guard read found not waiting, with no step
     * running, retrying or waiting but quiet_step ("": none), and whether
     * that step was since written finished: its status recompute is then
     * a no-op (write.c quiet_set). "" when unknown. */
    char quiet_run[ID_MAX];
    char quiet_step[STORE_STEP_ID_MAX];
    bool quiet_done;
    /* The runs row of the last guard read ("": unknown), as the writes of
     * the transaction since left it: status, order, owner (whether this
     * node, and its epoch). */
    char known_run[ID_MAX];
    char known_status[STORE_NAME_MAX];
    char known_order[ID_MAX];
    bool known_owner_here;
    int64_t known_owner_epoch;
    /* The events appended and not sent yet (write.c), sent as one
     * statement before the next read, savepoint or COMMIT: the array
     * literals being built, their lengths before each event, the gid of
     * the first. */
    struct dbuf ev_lit[PG_EV_COLS];
    size_t (*ev_mark)[PG_EV_COLS];
    size_t ev_n, ev_cap;
    int64_t ev_first_gid;
    /* The step writes held back (write.c), all of one statement (sw_id):
     * the array literals, how many, and the hashes of their run and step
     * (0: an empty slot), so that one step is never written twice by one
     * statement. */
    struct dbuf sw_lit[PG_SW_COLS];
    size_t sw_n;
    enum pg_wstmt_id sw_id;
    uint64_t sw_keys[PG_SW_SLOTS];
    /* The pipeline of the open transaction (write.c): the statements sent
     * whose results are unread (a ring of their ids), and the first
     * failure among them. */
    unsigned char *w_fifo;
    size_t w_cap, w_head, w_n;
    durable_code w_rc;
    durable_error w_err;
    /* The transaction whose COMMIT was sent and not answered yet
     * (pg_write_commit_send): how many of the unread results are its (its
     * sync's not counted), its events' numbering, whether they went
     * untold, and whether the next transaction began behind it; and how
     * many guards that one's prefetch sent, read after the COMMIT's
     * answer. */
    struct {
        bool on;
        bool next;
        size_t n;
        int64_t gid_base, last_gid, gid_shift;
        bool ev_quiet;
    } prev;
    size_t guards_unread;
#ifdef DURABLE_FAILPOINTS
    /* The commits DURABLE_FAILPOINT_COMMIT makes fail (write.c). */
    struct commit_fault fault;
#endif
    /* The guards read ahead (pg_prefetch): an open-addressed table by run
     * id, ahead_cap slots (a power of two), ahead_n used, and the slots in
     * the order their reads were sent. */
    struct pg_ahead *ahead;
    size_t *ahead_order;
    size_t ahead_cap, ahead_n;
    char wf_known[PG_WF_KNOWN][ID_MAX];
    size_t wf_known_next;
    /* The epoch new runs are owned with (0: not joined, unowned): set by
     * join and leave, read by the writer. */
    _Atomic int64_t owner_epoch;
    /* Whether another node is alive to be told of this node's events (the
     * NOTIFY durable_events of each commit): false only from a join or
     * heartbeat that counted none, true again when one joins (its NOTIFY
     * durable_nodes). Set by the cluster thread, read by the writer. */
    atomic_bool others_alive;
    bool ev_quiet; /* the writer's: this transaction's events told nobody */
    /* The read pool: a connection is in idle[] or used by the one thread
     * that took it. */
    pthread_mutex_t read_mu;
    pthread_cond_t read_cond;             /* a connection was given back */
    struct pg_reader readers[PG_READERS]; /* [0, n_open) opened by the taker */
    struct pg_reader *idle[PG_READERS];   /* guarded by read_mu */
    size_t n_idle;                        /* guarded by read_mu */
    size_t n_open;                        /* guarded by read_mu */
    /* The cluster side: the cluster operations' thread only. */
    PGconn *cl;           /* opened by join, closed by leave */
    char node_id[ID_MAX]; /* this node's name in nodes */
    int64_t lease_ms;     /* how long a renewal holds */
    int64_t epoch;        /* this incarnation's, 0 before join */
    /* The code-first workflows this process executes, as a text[] literal
     * ("{}": none): claims take no run of another code-first workflow. Set
     * from any thread (set_code_workflows), read by the cluster thread. */
    pthread_mutex_t code_mu;
    char *code_ids; /* guarded by code_mu */
};

static inline struct pg_store *pg_of(struct store *s)
{
    return (struct pg_store *)s;
}

/* The libpq connection string of a location: "postgres://..." and
 * "postgresql://..." as they are (libpq reads both URIs), and
 * "postgresql:KEY=VALUE ..." without the scheme. Checks it with libpq's
 * parser: DURABLE_EINVAL with its reason when it is malformed. *out
 * (owned) is set only on success. */
durable_code pg_location_conninfo(const char *location, char **out, durable_error *err);

/* Opens a connection to conninfo (application_name durable), or
 * DURABLE_EIO with libpq's reason; *out set only on success. */
durable_code pg_connect(const char *conninfo, PGconn **out, durable_error *err);

/* PQexecParams with text parameters (NULL is SQL NULL) and text results.
 * Returns the result when its status is PGRES_COMMAND_OK or
 * PGRES_TUPLES_OK; otherwise clears it and returns NULL with DURABLE_EIO
 * "could not <what>: <the server's message>" in err. */
PGresult *pg_exec(PGconn *c, const char *what, const char *sql, int n_params,
                  const char *const *params, durable_error *err);

/* pg_exec for a statement whose result is not needed. */
durable_code pg_run(PGconn *c, const char *what, const char *sql, int n_params,
                    const char *const *params, durable_error *err);

/* A 64-bit integer cell (0 when NULL). */
int64_t pg_cell_int64(const PGresult *r, int row, int col);
/* A cell's text, borrowed from r, or NULL when the cell is NULL. */
const char *pg_cell_text(const PGresult *r, int row, int col);

/* One statement of a read: what it does for messages ("could not <what>"),
 * its SQL (of static storage: it names the statement prepared for it) and
 * its text parameters (NULL is SQL NULL). */
struct pg_query {
    const char *what;
    const char *sql;
    int n_params;
    const char *const *params;
};

/* Runs the n > 0 statements q in one round trip (libpq's pipeline mode)
 * and, when n > 1, in one REPEATABLE READ READ ONLY transaction, so that
 * they read one snapshot (a page and its total, a run and its steps).
 * out[i] gets q[i]'s result (owned: pg_results_clear); on failure every
 * out[i] is NULL and err says why (DURABLE_EIO). A connection found
 * dropped (the server restarted) is reset and the reads run once more.
 * The statements are few and their parameters small: all are sent before
 * any result is read. Each statement is sent prepared (struct pg_reader).
 * rd is left idle. */
durable_code pg_read(struct pg_reader *rd, const struct pg_query *q, size_t n, PGresult **out,
                     durable_error *err);
/* pg_read on a read connection of s's pool, taken for the call only. */
durable_code pg_reads(struct pg_store *s, const struct pg_query *q, size_t n, PGresult **out,
                      durable_error *err);
void pg_results_clear(PGresult **r, size_t n); /* clears and NULLs each; accepts NULLs */

/* Tells every listening node, on c, of the events committed so far (their
 * last gid on durable_events): after events were committed while no other
 * node was alive (pg_store.others_alive). A hint: a failure is logged. */
void pg_tell_events(PGconn *c);

/* Brings the schema of the database on c to pg_schema_version() (schema.c):
 * in one transaction holding a transaction-level advisory lock, so nodes
 * starting at once apply each migration once. DURABLE_EUNSUPPORTED if the
 * database is newer than this build. */
durable_code pg_migrate(PGconn *c, durable_error *err);
int pg_schema_version(void);

/* A read connection for the calling thread alone, until pg_reader_put;
 * waits while all are taken. DURABLE_EIO when a new one cannot connect and
 * none is open. A connection found broken is reset first. */
durable_code pg_reader_take(struct pg_store *s, struct pg_reader **out, durable_error *err);
void pg_reader_put(struct pg_store *s, struct pg_reader *rd);

/* Names the node for the cluster operations (before join, and before the
 * writer thread uses the store: the lease also bounds how long the write
 * connection may idle inside a transaction): its id in
 * nodes (at most ID_MAX - 1 bytes; default "HOSTNAME:PID") and its lease
 * (default PG_LEASE_MS_DEFAULT). For the engine's options and for tests. */
void pg_store_set_node(struct store *base, const char *node_id, int64_t lease_ms);
void pg_store_set_code_workflows(struct store *base, const char *const *ids, size_t n);

/* Takes up to room unowned unfinished runs for this node (FOR UPDATE SKIP
 * LOCKED: concurrent claims get disjoint runs and do not wait for each
 * other), oldest first, and copies their ids into ids (room of them); *n
 * is how many. Only while the node's lease holds (join first): a node
 * declared dead claims nothing. */
durable_code pg_claim_ids(struct store *base, int room, char (*ids)[ID_MAX], int *n,
                          durable_error *err);

/* The row operations (write.c). pg_write_begin starts a transaction's
 * numbering (reconnected: w was reset, its statements are gone);
 * pg_write_commit sends what is held back and COMMIT, and gives the
 * events of ev the transaction appended their global ids (numbered at
 * the counter: write.c). Writer thread only. */
extern const struct store_rows_ops pg_rows_ops;
/* pg_write_init readies the writer's buffers of a new pg_store (before
 * any other call), pg_write_free releases them. */
void pg_write_init(struct pg_store *s);
void pg_write_free(struct pg_store *s);
void pg_write_begin(struct pg_store *s, bool reconnected);
durable_code pg_write_commit(struct pg_store *s, struct store_events *ev, durable_error *err);
/* pg_write_commit in two halves (store_tx_commit_send): the COMMIT and a
 * sync sent, then their answers read. Between the two the next
 * transaction may begin (pg_tx_begin, pg_prefetch): its BEGIN and guards
 * are sent behind the COMMIT, and the guards read after its answer. */
durable_code pg_write_commit_send(struct pg_store *s, durable_error *err);
durable_code pg_write_commit_wait(struct pg_store *s, struct store_events *ev, durable_error *err);
#ifdef DURABLE_FAILPOINTS
/* DURABLE_FAILPOINT_COMMIT's kind (commit_fault_parse): "refused", the
 * server refuses a statement of the transaction sent with its COMMIT. */
extern const char *const pg_fault_kinds[];
#endif
/* The write connection's transaction, in libpq's pipeline mode: a write
 * is sent and its answer read with the next read's (one round trip per
 * read, not per statement). pg_write_tx_begin prepares the statements a
 * new connection lacks, enters the pipeline (or stays in it, behind a
 * COMMIT not answered yet) and sends BEGIN; pg_write_commit ends it with
 * COMMIT and a sync and leaves the pipeline unless a transaction began
 * behind it; pg_write_end ends it after a failure (the caller then rolls
 * back), pg_write_forget also drops what the writer learned of workflows. */
durable_code pg_write_tx_begin(struct pg_store *s, durable_error *err);
void pg_write_end(struct pg_store *s);
void pg_write_forget(struct pg_store *s);
/* store_ops.prefetch: the batch's guard rows and the event counter's
 * lock, in one round trip. */
durable_code pg_prefetch(struct store *base, const struct transition *const *t, size_t n,
                         durable_error *err);

/* The cluster operations (cluster.c). */
extern const struct store_cluster_ops pg_cluster_ops;

/* The backend's operations (store.h's contracts) in pg.c. */
durable_code pg_open(const char *location, durable_durability durability, struct store **out,
                     durable_error *err);
void pg_close(struct store *base);
durable_code pg_synchronous(struct store *base, int *out_level, durable_error *err);
durable_code pg_tx_begin(struct store *base, durable_error *err);
durable_code pg_tx_commit(struct store *base, struct store_events *ev, durable_error *err);
void pg_tx_rollback(struct store *base);
durable_code pg_ping(struct store *base, durable_error *err);

/* The reads (store.h's contracts): records (read.c), the records of the
 * documents (rows.c), the snapshot and the counts (inspect.c). Any
 * thread, each through a read connection taken for one pg_read. */
durable_code pg_workflow_get(struct store *base, const char *id_or_name,
                             struct workflow_record *out, durable_error *err);
durable_code pg_run_load(struct store *base, const char *run_id, struct run_record *out,
                         durable_error *err);
durable_code pg_runs_unfinished(struct store *base,
                                durable_code (*fn)(const struct run_record *r, void *ud), void *ud,
                                durable_error *err);
durable_code pg_run_find_by_key(struct store *base, const char *workflow_id, const char *key,
                                char out_run_id[ID_MAX], bool *out_found, durable_error *err);
durable_code pg_run_status(struct store *base, const char *run_id, enum run_status *out_status,
                           durable_error *err);
durable_code pg_run_read(struct store *base, const char *run_id, const struct store_row_fns *fn,
                         durable_error *err);
durable_code pg_events_read(struct store *base, const char *run_id, int64_t after_seq,
                            struct store_events *out, durable_error *err);
durable_code pg_events_since(struct store *base, int64_t after_gid, int limit,
                             struct store_events *out, durable_error *err);
durable_code pg_kv_read(struct store *base, const char *key, char **out, durable_error *err);
durable_code pg_schedules_read(struct store *base, const char *id,
                               void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                               durable_error *err);
durable_code pg_order_read(struct store *base, const char *order_id, const struct store_row_fns *fn,
                           durable_error *err);
durable_code pg_runs_page(struct store *base, const struct store_run_query *q,
                          const struct store_row_fns *fn, int64_t *out_total, durable_error *err);
durable_code pg_workflows_page(struct store *base, struct store_page page,
                               const struct store_row_fns *fn, int64_t *out_total,
                               durable_error *err);
durable_code pg_orders_page(struct store *base, struct store_page page,
                            const struct store_row_fns *fn, int64_t *out_total, durable_error *err);
durable_code pg_snapshot_json(struct store *base, int rows_per_table, char **out,
                              durable_error *err);
durable_code pg_count_runs(struct store *base, int64_t out[STORE_N_RUN_STATUSES],
                           durable_error *err);
durable_code pg_count_steps(struct store *base, int64_t out[STORE_N_STEP_STATUSES],
                            durable_error *err);

extern const struct store_ops pg_store_ops;

#endif
