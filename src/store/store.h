/*
 * store.h - the only way to read or write durable state: the contract every
 * backend keeps (struct store_ops, at the end), and the store_* functions
 * the engine and the HTTP layer call, which dispatch to the backend of the
 * store (store.c). SQLite is the one backend so far (sqlite/).
 *
 * Tables: schema_version, workflows (name, version, definition), runs, steps
 * (one row per step per run), events (append-only history with a per-run
 * sequence from 1 with no gaps, and a global id `gid` increasing in commit
 * order across runs), orders (the demo entity). See sqlite/sqlite.c for the
 * SQLite schema and its migrations.
 *
 * Writes are typed transitions (struct transition), applied in batches by the
 * engine's writer thread between store_tx_begin and store_tx_commit: every
 * transition updates steps/runs and appends its events in the same
 * transaction. The write connection belongs to the writer thread only.
 *
 * Reads (store_*_json, store_run_load, lists, the snapshot, counts) may be
 * called from any thread, several at once, beside the writer (SQLite: a
 * pool of read connections, WAL). A backend reads records (struct run_row,
 * ...) and docs.c builds the JSON documents from them; event data is built
 * by event_data.c, so a backend only writes rows. The JSON of finished runs
 * is cached when one node executes runs (docs.c): a finished run changes
 * only by a retry, whose commit drops it.
 *
 * Run states and the transition that sets each (store_apply):
 *   (none) --RUN_CREATE--> pending --STEP_START--> running <--> waiting
 *   (a run is waiting while its only unfinished steps wait: STEP_WAIT,
 *   STEP_RETRY; running again once one runs or none waits)
 * Step states: pending --START--> running --WAIT--> waiting
 *   running|waiting --COMPLETE|DECIDE--> completed, --RETRY--> retrying,
 *   --FAIL--> failed; pending --SKIP--> skipped
 *   pending|running|waiting --RUN_FINISH--> completed | failed | cancelled
 *   failed --RUN_RETRY--> running
 *   pending|running|waiting --RUN_PAUSE--> paused --RUN_RESUME--> pending|running|waiting
 *   (while paused, step transitions leave the run's status paused; a
 *   RUN_FINISH applies to a paused run as to any unfinished one)
 */
#ifndef DURABLE_STORE_STORE_H
#define DURABLE_STORE_STORE_H

#include "util/common.h"

#include "durable.h"
#include "util/util.h"

struct store;
struct store_ops;
struct run_row;
struct store_row_fns;
struct store_rows_ops;

struct run_cache;

/* Every backend's store begins with this: its struct embeds it first, so a
 * backend converts a struct store * to its own type by a cast. */
struct store {
    const struct store_ops *ops;
    struct run_cache *cache; /* finished runs' documents (docs.c); set by
                                store_open for a backend of one node, else
                                NULL. A backend leaves it alone. */
    /* What the engine knows of a pending run and the store does not (why it
     * is held back: engine/flow.c): called by docs.c for each pending run of
     * a document (any reading thread) to append members (",\"waiting\":{...}")
     * to its object. Set once by the engine before readers start; NULL: none. */
    void (*run_note)(void *ud, const char *run_id, struct dbuf *b);
    /* The same for a pending step of a run (held back by its rate limit). */
    void (*step_note)(void *ud, const char *run_id, const char *step_id, struct dbuf *b);
    void *run_note_ud;
};

/* The file a location names when its backend keeps the database in one
 * local file (SQLite: "PATH" or "sqlite:PATH" give PATH), else NULL
 * (PostgreSQL: nothing to lock): the engine locks beside it. DURABLE_EUNSUPPORTED for an unknown
 * scheme. */
durable_code store_location_file(const char *location, const char **out_file, durable_error *err);

/*
 * Opens or creates the database at location and brings its schema to the
 * current version. location is "postgres://USER@HOST:PORT/DB",
 * "postgresql://..." or "postgresql:KEY=VALUE ..." (PostgreSQL, pg/), or a
 * plain path or "sqlite:PATH" (SQLite: WAL,
 * synchronous FULL, NORMAL for DURABLE_DURABILITY_PROCESS, busy_timeout);
 * any other scheme is DURABLE_EUNSUPPORTED. The backend is chosen from the
 * table in store.c.
 */
durable_code store_open(const char *location, durable_durability durability, struct store **out,
                        durable_error *err);
void store_close(struct store *s); /* accepts NULL */

/* The schema version the backend of s writes. */
int store_schema_version(const struct store *s);

/* The durability in force on the write connection as a level (SQLite's
 * PRAGMA synchronous: 2 FULL, 1 NORMAL), so tests and health checks can see
 * it. Writer thread only. */
durable_code store_synchronous(struct store *s, int *out_level, durable_error *err);

/* ---- transitions (writer thread only) ---- */

enum transition_kind {
    TR_WORKFLOW_PUT = 1, /* register a definition (new version unless identical) */
    TR_ORDER_CREATE,     /* insert a demo order */
    TR_RUN_CREATE,       /* insert run + all its step rows (pending) + run_created */
    TR_STEP_START,       /* step -> running, attempt; run -> running; step_started */
    TR_STEP_COMPLETE,    /* step -> completed with output; step_completed; action applied */
    TR_STEP_RETRY,       /* step -> retrying until wake_at; step_failed + retry_scheduled */
    TR_STEP_FAIL,        /* step -> failed; step_failed */
    TR_STEP_SKIP,        /* step -> skipped; step_skipped */
    TR_RUN_FINISH,       /* run -> completed|failed|cancelled; leftover steps -> cancelled */
    TR_RUN_RECOVERED,    /* unfinished run resumed after a restart: the steps that were
                            running (recovered_json) restart under the same attempt and
                            key (started_at now); event `recovered` (data: those steps) */
    TR_RUN_RETRY,        /* failed run -> running; failed/cancelled steps -> pending, attempt
                            0; completed and skipped steps kept; run_retried */
    TR_STEP_WAIT,        /* running step -> waiting (wake_at, 0 for none); step_waiting with
                            wait_json's members */
    TR_STEP_DECIDE,      /* waiting approval step -> completed with output_json ({approved,
                            by, comment, at}); approval_decided + step_completed. attempt 0
                            means the current one (a person's decision, from any thread) */
    TR_SIGNAL_SEND,      /* a named signal to an unfinished run (signal_id, signal_name,
                            output_json: its payload): signal_received; kept until a
                            wait takes it. The first step waiting for that name (in
                            step order), if any, takes it at once: completed with the
                            payload (step_completed), result.signal_step names it */
    TR_RUNS_DELETE,      /* deletes finished runs with their steps, events and signals
                            (purge: which ones, at most purge->limit of them, oldest
                            finished first); result.deleted counts them. With
                            purge->run_id, that one run: DURABLE_ENOTFOUND when there
                            is none, DURABLE_ECONFLICT when it is not finished. No
                            event is written (the run's history goes with it) */
    TR_WORKFLOW_DELETE,  /* deletes version wf_version of workflow wf_name:
                            DURABLE_ENOTFOUND when there is none, DURABLE_ECONFLICT
                            when it has runs */
    TR_RUN_PAUSE,        /* unfinished, unpaused run -> paused; run_paused. Its steps keep
                            their statuses: the engine starts nothing new until a resume */
    TR_RUN_RESUME,       /* paused run -> its status from its steps' (running while one
                            runs, waiting while one waits or retries, pending if it never
                            started, else running); run_resumed */
    TR_SCHEDULE_PUT,     /* a schedule (t->schedule) is created, or its definition replaced
                            (its paused flag, last tick and counts kept) */
    TR_SCHEDULE_SET,     /* schedule_id is paused, resumed or deleted (schedule_op);
                            DURABLE_ENOTFOUND when there is none */
    TR_SCHEDULE_TICK,    /* tick tick_ms of schedule_id is fired without a run (an overlap
                            policy skipped it): last_tick = tick_ms, skipped + 1.
                            TR_RUN_CREATE with schedule_id fires the tick with the run it
                            starts, in the same transaction (fired + 1). Either refuses a
                            tick not after last_tick with DURABLE_ECONFLICT, having
                            written nothing: a tick fires once */
    TR_MAP_ITEM,         /* an item of a running map step settled (or failed an attempt):
                            the step's progress (output_json) written, the event map_event
                            appended with map_event_json; the step stays running */
    TR_RUN_ADMIT,        /* an unfinished run takes a place of its concurrency group
                            (flow_key, flow_limit) on a backend shared by several nodes
                            (store_rows_ops flow_admit): result.admitted, and
                            result.in_use, the group's runs that hold one (this run
                            not counted). No event. Without flow_admit (one process:
                            engine/flow.c counts in memory) it is admitted */
    TR_RATE_TAKE,        /* a step of an unfinished run takes the next place of rate
                            limit flow_key (one every rate_interval_ms) on a backend shared
                            by several nodes (store_rows_ops rate_take): result.wait_ms,
                            how long until it comes. No event. Without rate_take (one
                            process: engine/flow.c hands places out in memory): 0 */
};

/* Which finished runs TR_RUNS_DELETE deletes (every condition given must
 * hold). Finished: completed, failed or cancelled. */
struct store_purge {
    const char *run_id;         /* one run, or NULL */
    int64_t finished_before_ms; /* completed_at earlier than this (INT64_MAX: any) */
    const char *workflow;       /* a workflow name (every version), or NULL */
    const char *status;         /* "completed", "failed" or "cancelled", or NULL */
    int limit;                  /* at most this many (1..STORE_PURGE_MAX) */
    bool dry_run;               /* count them (no limit), delete nothing */
    /* A retention pass (retain_now_ms > 0): besides the above, only runs
     * finished before retain_now_ms minus their workflow version's own
     * window (workflows.retain_ms, from the definition's retain_finished),
     * or minus retain_default_ms for a version without one (0: such runs
     * are kept). */
    int64_t retain_now_ms;
    int64_t retain_default_ms;
};
#define STORE_PURGE_MAX 5000

/* TR_SCHEDULE_SET's operation. */
enum schedule_op {
    SCHEDULE_PAUSE = 1,
    SCHEDULE_RESUME,
    SCHEDULE_DELETE,
};

/* A schedule as stored (TR_SCHEDULE_PUT reads id .. catch_up_max and
 * anchor_ms; reads fill every field). Strings owned by a record a read
 * made (schedule_record_release). */
struct schedule_record {
    char id[ID_MAX];
    char *workflow_name;
    char *cron;       /* the cron expression, or NULL with every_ms */
    int64_t every_ms; /* the interval, 0 with cron */
    char *tz;         /* IANA time zone name */
    char *input_json; /* JSON object text, the input of every run */
    char *overlap;    /* skip | queue_one | allow | cancel_previous */
    char *catch_up;   /* none | last | all */
    int catch_up_max; /* with all: at most this many missed ticks */
    bool paused;
    int64_t anchor_ms;        /* an interval's ticks are anchor + k * every */
    int64_t last_tick_ms;     /* the last tick fired (with a run or skipped), 0 for none */
    char last_run_id[ID_MAX]; /* the run the last tick with a run started, "" for none */
    int64_t fired;            /* ticks that started a run */
    int64_t skipped;          /* ticks skipped by the overlap policy */
    int64_t created_at_ms;
    int64_t updated_at_ms;
};
void schedule_record_release(struct schedule_record *r);

/* Statuses, in state order. Their names (run_status_name) are what the
 * database stores and the API shows; the numbers are this build's only. */
enum run_status {
    RUN_PENDING = 0,
    RUN_RUNNING,
    RUN_WAITING,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_CANCELLED,
    RUN_PAUSED, /* unfinished: steps running finish, nothing new starts until a resume */
};
#define STORE_N_RUN_STATUSES 7
enum step_status {
    STEP_S_PENDING = 0,
    STEP_S_RUNNING,
    STEP_S_RETRYING,
    STEP_S_WAITING,
    STEP_S_COMPLETED,
    STEP_S_FAILED,
    STEP_S_SKIPPED,
    STEP_S_CANCELLED,
};
#define STORE_N_STEP_STATUSES 8

/* (status.c) The name of a status (static), "unknown" when out of range. */
const char *run_status_name(enum run_status st);
const char *step_status_name(enum step_status st);
/* The status named name; false (and *out untouched) if name is none. */
bool run_status_parse(const char *name, enum run_status *out);
bool step_status_parse(const char *name, enum step_status *out);
/* A final run (completed, failed, cancelled) changes only by a retry; a
 * final step (completed, failed, skipped, cancelled) only by a run retry. */
bool run_status_is_final(enum run_status st);
bool step_status_is_final(enum step_status st);

struct transition_step_init {
    const char *step_id;
    const char *type;
    int max_attempts;
    const char *depends_on_json; /* JSON array of step ids, as in the definition */
};

/* A restarted run's step kept from the original run (TR_RUN_CREATE with
 * restarted_from): written completed (output_json, attempt) or skipped at
 * creation, its step_completed or step_skipped event's data naming the
 * original ("copied_from"). */
struct transition_step_copy {
    const char *step_id;
    enum step_status status; /* STEP_S_COMPLETED or STEP_S_SKIPPED */
    int attempt;
    const char *output_json;
};

/*
 * One transition. Which fields are read depends on kind; strings are borrowed
 * from the creator and must stay valid until the writer has applied it.
 * at_ms is the time of the change (Unix ms), set by the creator.
 */
struct transition {
    enum transition_kind kind;
    int64_t at_ms;
    const char *run_id;  /* every kind but WORKFLOW_PUT / ORDER_CREATE */
    const char *step_id; /* STEP_* kinds */
    int attempt;         /* STEP_START, STEP_RETRY, STEP_FAIL, STEP_COMPLETE */

    /* TR_WORKFLOW_PUT: name and canonical definition text, and the
     * definition's retention window (retain_finished; 0: the server's). */
    const char *wf_name;
    const char *wf_definition;
    int64_t wf_retain_ms;
    /* TR_ORDER_CREATE */
    const char *order_id; /* also TR_RUN_CREATE (may be NULL) */
    double order_amount;
    bool create_order; /* TR_RUN_CREATE: insert order_id (order_amount) with
                          the run, in the same transaction */
    /* TR_RUN_CREATE */
    const char *workflow_id;
    const char *input_json;      /* JSON object text, valid (the engine parsed and encoded
                                    it): stored and put in run_created as it is */
    const char *idempotency_key; /* may be NULL */
    const char *restarted_from;  /* a restart's original run, or NULL; restarted_step the
                                    step it restarts from (both stored with the run) */
    const char *restarted_step;
    const struct transition_step_copy *copies; /* with restarted_from: the steps kept */
    size_t n_copies;
    int64_t deadline_ms;     /* run timeout as Unix ms, 0 for none; also TR_RUN_RETRY
                                (a retried run's time limit starts again) */
    int64_t priority;        /* TR_RUN_CREATE: stored with the run (higher first, engine/flow.c) */
    const char *flow_key;    /* TR_RUN_ADMIT: the group (workflow name, '\n', key);
                                TR_RATE_TAKE: the rate limit's (flow.c) */
    int flow_limit;          /* TR_RUN_ADMIT: its limit */
    double rate_interval_ms; /* TR_RATE_TAKE: between two places */
    const struct transition_step_init *steps;
    size_t n_steps;
    /* TR_STEP_COMPLETE: the output as valid JSON text, stored as given (the
       engine encodes it; TR_STEP_DECIDE's is checked) */
    const char *output_json;     /* also TR_RUN_FINISH (run output) */
    const char *action;          /* applied with the completion, or NULL */
    durable_action_fn action_fn; /* with action: the registered action it names, called
                                    with action_ud and input_json (the run's input);
                                    NULL for a built-in */
    void *action_ud;
    bool with_start; /* TR_STEP_COMPLETE without action: the attempt's
                        START too (guarded as one), as one change of
                        the step's row; step_started and step_completed */
    /* TR_STEP_RETRY / TR_STEP_FAIL / TR_RUN_FINISH */
    const char *error_message;
    const char *error_code; /* "timeout", "random_failure", "action_failed", ... */
    int64_t wake_at_ms;     /* TR_STEP_RETRY: when the next attempt starts */
    /* TR_RUN_FINISH: RUN_COMPLETED, RUN_FAILED or RUN_CANCELLED */
    enum run_status run_status;
    /* TR_RUN_RECOVERED: JSON array of the ids of the steps that were running
       (each must still be running) */
    const char *recovered_json;
    /* TR_STEP_WAIT: JSON object merged into the step_waiting event's data, or NULL
       (wake_at_ms is the wake-up time, 0 for none) */
    const char *wait_json;
    /* TR_STEP_WAIT: the name of the signal the step waits for, or NULL. When
       the run has a signal of that name not yet taken, the oldest one is
       taken at once: the step completes with its payload in the same
       transaction (result.signal_taken). TR_SIGNAL_SEND: the signal's name */
    const char *signal_name;
    const char *signal_id; /* TR_SIGNAL_SEND: the new signal's id (unique) */
    /* TR_SCHEDULE_PUT: the schedule */
    const struct schedule_record *schedule;
    /* TR_SCHEDULE_SET, TR_SCHEDULE_TICK, and TR_RUN_CREATE fired by a
       schedule (NULL otherwise): the schedule, the tick (Unix ms) */
    const char *schedule_id;
    int64_t tick_ms;
    enum schedule_op schedule_op; /* TR_SCHEDULE_SET */
    /* Made by the run's executor (the scheduler), not by a caller: on a
       backend shared by several nodes it applies only while this node owns
       the run (DURABLE_EFENCED otherwise), and the other kinds (a caller's
       decision, cancel or retry) tell the run's owner (store_rows_ops
       run_notify). */
    bool by_owner;
    /* STEP_* of a step reached by code (code-first runs): when not NULL,
       the step's row is inserted first if the run has none of that id yet
       (insert_step's type, max_attempts and depends_on; insert_idx its
       position), then the transition applies as to any step */
    const struct transition_step_init *insert_step;
    int insert_idx;
    /* TR_MAP_ITEM: the event's type ("map_item_completed", "map_item_failed")
       and data (a JSON object text); output_json is the step's progress */
    const char *map_event;
    const char *map_event_json;
    /* TR_RUNS_DELETE */
    const struct store_purge *purge;
    /* TR_WORKFLOW_DELETE (with wf_name) */
    int wf_version;
};

/* The longest step id a result names, with its NUL (definitions and code
 * keep theirs shorter). */
#define STORE_STEP_ID_MAX 128

/* What a committed transition wrote, handed to subscribers after commit. */
struct store_event {
    char run_id[ID_MAX];
    int64_t seq;
    int64_t global_id; /* across runs, increasing in commit order */
    char type[32];
    char *step_id; /* owned, or NULL */
    int64_t at_ms;
    char *data_json; /* owned */
};

/* The events a batch wrote, in order. */
struct store_events {
    struct store_event *items;
    size_t n;
    size_t cap;
};
void store_events_clear(struct store_events *ev); /* frees contents, keeps capacity */
void store_events_release(struct store_events *ev);

/* Results a transition returns to whoever submitted it. */
struct transition_result {
    char id[ID_MAX]; /* WORKFLOW_PUT: workflow id; ORDER_CREATE: order id (given);
                        RUN_CREATE: the run id (existing one when existed) */
    int version;     /* WORKFLOW_PUT */
    bool created;    /* WORKFLOW_PUT: a new version; RUN_CREATE: false when the
                        idempotency key already had a run */
    int64_t seq;     /* SIGNAL_SEND: the seq of its signal_received event */
    /* SIGNAL_SEND: the step that took the signal at once ("" for none) */
    char signal_step[STORE_STEP_ID_MAX];
    /* STEP_WAIT with signal_name: a signal sent earlier completed the step
       at once; signal_payload is its payload (owned: the receiver of the
       result frees it) */
    bool signal_taken;
    char *signal_payload;
    int64_t deleted; /* RUNS_DELETE: how many runs it deleted (dry run: would) */
    bool admitted;   /* RUN_ADMIT */
    int64_t in_use;  /* RUN_ADMIT */
    int64_t wait_ms; /* RATE_TAKE */
};

durable_code store_tx_begin(struct store *s, durable_error *err);
/* ev: the list the transaction's store_apply calls appended their events
 * to (NULL: none kept); a backend that numbers events at commit
 * (PostgreSQL: one counter for every node) gives the transaction's, the
 * last of the list, their final global ids. */
durable_code store_tx_commit(struct store *s, struct store_events *ev, durable_error *err);
void store_tx_rollback(struct store *s);
/* After store_tx_begin, the transitions the writer is about to apply in
 * this transaction, in order (borrowed until the transaction ends): a
 * backend may read ahead what their guards read. Only a speed-up: the
 * store_apply calls that follow give the same answers without it.
 * DURABLE_EIO: roll back. */
durable_code store_tx_prefetch(struct store *s, const struct transition *const *t, size_t n,
                               durable_error *err);
/* A commit in two halves, so that the next transaction can begin behind
 * it: store_tx_commit_send sends the COMMIT (with what is still held back)
 * and store_tx_commit_wait gives its answer, as store_tx_commit's (ev
 * numbered; on failure the caller rolls back, which also drops a
 * transaction begun since). Between the two, when store_tx_overlaps, the
 * writer may store_tx_begin and store_tx_prefetch the next transaction
 * (nothing else), whose statements the server runs as soon as the COMMIT
 * is done. A backend without the halves commits in the first and answers
 * DURABLE_OK in the second, and does not overlap. */
bool store_tx_overlaps(const struct store *s);
durable_code store_tx_commit_send(struct store *s, struct store_events *ev, durable_error *err);
durable_code store_tx_commit_wait(struct store *s, struct store_events *ev, durable_error *err);
/* Between the halves: returns once the COMMIT's answer has come (or the
 * connection failed), without reading it: the next transaction is best
 * begun then, when the most has gathered for it. */
void store_tx_commit_ready(struct store *s);

/*
 * Applies one transition inside the open transaction, appending the events it
 * wrote to `events` and filling `result` (may be NULL).
 * TR_STEP_COMPLETE with an action: the action runs in a savepoint; if it
 * refuses (wrong order status) everything this call did is rolled back and
 * DURABLE_EACTION is returned with the reason in err, so the caller can apply
 * a failure transition instead. Other errors (DURABLE_EIO) mean the whole
 * transaction must be rolled back.
 * A run whose status is already finished ignores STEP_* and RUN_FINISH
 * transitions (late results after cancel) and returns DURABLE_ECONFLICT.
 */
durable_code store_apply(struct store *s, const struct transition *t, struct store_events *events,
                         struct transition_result *result, durable_error *err);

/* ---- actions ---- */

/* A business action on the demo orders: a guarded change of an order's
 * status, applied with the completion of the step that names it. */
struct store_action {
    const char *name;
    const char *from; /* the status the order must have, or NULL for any */
    const char *to;   /* the status it gets, or NULL to leave it */
};

/* The built-in actions (SPEC §1), ended by an entry whose name is NULL: the
 * one list of them (actions.c). */
extern const struct store_action store_builtin_actions[];

/* The i-th built-in action's name, NULL past the last: the shape of
 * def_options.action_name. */
const char *store_builtin_action_name(void *ud, size_t i);

/* The built-in action called name, or NULL. */
const struct store_action *store_action_find(const char *name);

/* Whether a may apply to an order whose status is from: sets *to to the
 * status the order gets, or returns DURABLE_EACTION. */
durable_code store_action_check(const struct store_action *a, const char *from, const char **to,
                                durable_error *err);

/* ---- reads (any thread) ---- */

struct workflow_record {
    char id[ID_MAX];
    char *name;
    int version;
    char *definition; /* JSON text */
    int64_t created_at_ms;
};
void workflow_record_release(struct workflow_record *w);

/* By id, or by name meaning the latest version. DURABLE_ENOTFOUND if none. */
durable_code store_workflow_get(struct store *s, const char *id_or_name,
                                struct workflow_record *out, durable_error *err);

struct step_record {
    char *step_id;
    enum step_status status;
    int attempt;        /* 0 before the first start */
    int64_t wake_at_ms; /* 0 when none */
    int64_t started_at_ms;
    char *output_json; /* or NULL */
};

struct run_record {
    char id[ID_MAX];
    char workflow_id[ID_MAX];
    char *definition; /* the workflow version's definition text */
    enum run_status status;
    char *input_json;
    char *order_id;      /* or NULL */
    double order_amount; /* the order's amount, when order_id */
    int64_t created_at_ms;
    int64_t deadline_ms;       /* 0 for none */
    int64_t priority;          /* as started (durable_run_request.priority) */
    char *output_json;         /* a finished run's output, or NULL; store_run_load only */
    char *error_message;       /* a failed run's error, or NULL; store_run_load only */
    struct step_record *steps; /* in step id order, not the definition's */
    size_t n_steps;
};
void run_record_release(struct run_record *r);

/* Loads one run with its steps. DURABLE_ENOTFOUND if none. */
durable_code store_run_load(struct store *s, const char *run_id, struct run_record *out,
                            durable_error *err);

/* Calls fn for each unfinished run (pending, running, waiting), oldest first,
 * with its steps. Reads a page of runs with their steps in one statement,
 * then calls fn for each without read_mu held (fn may read the store); a
 * workflow's definition is read once per call and shared by its runs. The
 * record is borrowed for the call. Stops at fn's first non-OK code. */
durable_code store_runs_unfinished(struct store *s,
                                   durable_code (*fn)(const struct run_record *r, void *ud),
                                   void *ud, durable_error *err);

/* The run id started by (workflow_id, key), if any. *out_found false if none. */
durable_code store_run_find_by_key(struct store *s, const char *workflow_id, const char *key,
                                   char out_run_id[ID_MAX], bool *out_found, durable_error *err);

/* The run's status. DURABLE_ENOTFOUND if none. */
durable_code store_run_status(struct store *s, const char *run_id, enum run_status *out_status,
                              durable_error *err);

/* JSON documents in the shapes of SPEC §6 (docs.c). OUT strings: caller
 * frees. store_run_json reads the run and its steps in one snapshot, and
 * answers a finished run from the cache once it has read it. */
durable_code store_run_json(struct store *s, const char *run_id, char **out, durable_error *err);
durable_code store_events_json(struct store *s, const char *run_id, int64_t after_seq, char **out,
                               durable_error *err);
durable_code store_order_json(struct store *s, const char *order_id, char **out,
                              durable_error *err);
/* The run's events after seq after_seq as records (store_events_release). */
durable_code store_events_records(struct store *s, const char *run_id, int64_t after_seq,
                                  struct store_events *out, durable_error *err);

/* A workflow: {id, name, version, definition (the object), created_at}; by id
 * or by name meaning its latest version. DURABLE_ENOTFOUND if none. */
durable_code store_workflow_json(struct store *s, const char *id_or_name, char **out,
                                 durable_error *err);

/* ---- lists (any thread) ----
 * JSON arrays, newest first, with limit (0 gives 50, then clamped to
 * 1..STORE_LIST_MAX) and offset (negative is 0). *out_total (may be NULL) is
 * the number of matching rows, read in the same snapshot as the page. */
#define STORE_LIST_DEFAULT 50
#define STORE_LIST_MAX     500

struct store_page {
    int limit;
    int offset;
};

/* Which runs a list shows. status: NULL or a run status (else
 * DURABLE_EINVAL); workflow: NULL, a workflow id, or a name meaning every
 * version of it. */
struct store_run_query {
    const char *status;
    const char *workflow;
    struct store_page page;
    /* Time ranges (Unix ms, 0: no bound): created_at >= created_after and
     * < created_before; completed_at (a finished run's) likewise, which an
     * unfinished run never matches. */
    int64_t created_after_ms;
    int64_t created_before_ms;
    int64_t finished_after_ms;
    int64_t finished_before_ms;
    /* An input filter: input_field NULL (none) or a path checked by
     * store_input_field_check ("customer_id", "a.b"); input_value the JSON
     * text of a scalar (7, "7", true, null) the run input's value at that
     * path equals as JSON (numbers by value: 7 matches 7.0, not "7"). */
    const char *input_field;
    const char *input_value;
};

/* Whether q has any filter beyond status and workflow (a backend's
 * fast path lists without them). */
bool store_run_query_extended(const struct store_run_query *q);

/* An input filter's field: 1 to STORE_INPUT_DEPTH names of 1 to 64 bytes of
 * [A-Za-z0-9_-] joined by '.'. DURABLE_EINVAL naming the fault otherwise. */
#define STORE_INPUT_DEPTH 8
durable_code store_input_field_check(const char *field, durable_error *err);
/* An input filter's value: JSON text of a scalar (string, number, true,
 * false, null). DURABLE_EINVAL otherwise. */
durable_code store_input_value_check(const char *value, durable_error *err);

/* Checks q's filters: a status that is none, a bad input filter:
 * DURABLE_EINVAL. store_runs_list and store_runs_match call it. */
durable_code store_run_query_check(const struct store_run_query *q, durable_error *err);

/* The runs q matches (q->page ignored), newest first, at most max of them:
 * fn->run for each (without steps) and *out_total the number matching, in
 * one snapshot. */
durable_code store_runs_match(struct store *s, const struct store_run_query *q, int max,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err);

/* Runs without their steps (SPEC §6 run fields otherwise). */
durable_code store_runs_list(struct store *s, const struct store_run_query *q, char **out,
                             int64_t *out_total, durable_error *err);
/* Every version of every workflow: {id, name, version, description,
 * created_at}, without the definition. */
durable_code store_workflows_list(struct store *s, struct store_page page, char **out,
                                  int64_t *out_total, durable_error *err);
/* Orders in the shape of store_order_json. */
durable_code store_orders_list(struct store *s, struct store_page page, char **out,
                               int64_t *out_total, durable_error *err);

/* Events of every run with gid > after_gid, oldest first, at most limit
 * (0 gives STORE_EVENTS_MAX, then clamped to 1..STORE_EVENTS_MAX): a JSON array
 * of run events that also carry run_id. */
#define STORE_EVENTS_MAX 1000
durable_code store_events_since(struct store *s, int64_t after_gid, int limit, char **out,
                                durable_error *err);
/* The same events as records, appended to out (limit clamped alike). */
durable_code store_events_since_records(struct store *s, int64_t after_gid, int limit,
                                        struct store_events *out, durable_error *err);

/* ---- inspection (any thread; inspect.c) ---- */

/* Every table: {"tables": [{"name", "columns", "rows", "total"}]}, newest
 * rows first, at most rows_per_table rows (0 gives 50, then 1..200), text
 * cells over STORE_SNAPSHOT_CELL_MAX bytes cut with "…". Values as stored
 * (times are Unix ms). */
#define STORE_SNAPSHOT_CELL_MAX 200
durable_code store_snapshot_json(struct store *s, int rows_per_table, char **out,
                                 durable_error *err);

/* The names of the statuses, NULL-terminated, indexed by the enums. */
extern const char *const store_run_statuses[];
extern const char *const store_step_statuses[];

/* How many runs (steps) have each status: out[st] counts status st; a
 * stored status that is none of them is not counted. */
durable_code store_count_runs(struct store *s, int64_t out[STORE_N_RUN_STATUSES],
                              durable_error *err);
durable_code store_count_steps(struct store *s, int64_t out[STORE_N_STEP_STATUSES],
                               durable_error *err);

/* A cheap real read through the read connection: DURABLE_EIO and why when
 * the database does not answer. */
durable_code store_ping(struct store *s, durable_error *err);

/* The committed value of key in the actions' key/value table (owned JSON
 * text, NULL when none). DURABLE_EINVAL for a key that is not 1 to
 * STORE_KV_KEY_MAX bytes. Any thread. */
#define STORE_KV_KEY_MAX 256
durable_code store_kv_get(struct store *s, const char *key, char **out, durable_error *err);

/* Calls fn with schedule id (DURABLE_ENOTFOUND when there is none), or
 * with each schedule when id is NULL, oldest first. The record is the
 * read's (borrowed for the call). DURABLE_EUNSUPPORTED on a backend
 * without schedules. */
durable_code store_schedules_read(struct store *s, const char *id,
                                  void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                                  durable_error *err);
/* DURABLE_EINVAL unless key is 1 to STORE_KV_KEY_MAX bytes. */
durable_code store_kv_key_check(const char *key, durable_error *err);

/* ---- records of the documents ----
 * What a backend reads for the JSON documents above, handed to a callback
 * of struct store_row_fns (docs.c builds the documents from them). Every
 * string is borrowed for the call and NULL when the column is; a *_json
 * member is the stored JSON text, valid by construction (the engine
 * encoded it before it was written), copied into documents as it is.
 * Times are Unix ms, 0 when unset. Events are struct store_event. */
struct run_row {
    const char *id;
    const char *workflow_id;
    const char *workflow_name;
    int workflow_version;
    const char *status;
    const char *input_json;
    const char *output_json;
    const char *order_id;
    const char *idempotency_key;
    const char *error_message;
    int64_t created_at_ms;
    int64_t started_at_ms;
    int64_t completed_at_ms;
    const char *restarted_from; /* NULL unless the run is a restart */
    const char *restarted_step;
    int64_t priority;
};

struct step_row {
    const char *step_id;
    const char *type;
    const char *status;
    int attempt;
    int max_attempts;
    const char *depends_on_json;
    int64_t started_at_ms;
    int64_t completed_at_ms;
    int64_t wake_at_ms;
    const char *error_message;
    const char *output_json;
};

struct order_row {
    const char *id;
    double amount;
    const char *status;
    int64_t created_at_ms;
    int64_t updated_at_ms;
};

/* A workflow in a list: description is the definition's, NULL unless it
 * is a string. */
struct workflow_row {
    const char *id;
    const char *name;
    int version;
    const char *description;
    int64_t created_at_ms;
};

/* Where a backend hands the records it reads; each read calls only the
 * members its contract names. */
struct store_row_fns {
    void (*run)(void *ud, const struct run_row *r);
    void (*step)(void *ud, const struct step_row *r);
    void (*order)(void *ud, const struct order_row *o);
    void (*workflow)(void *ud, const struct workflow_row *w);
    void *ud;
};

/* ---- the backend interface ----
 *
 * A backend implements struct store_ops; the store_* functions above are
 * dispatchers over s->ops (store.c), so the engine and the HTTP layer never
 * see which backend runs. Each op has the contract of the store_* function
 * of the same name. Thread rules are the dispatchers': tx_*, rows and
 * synchronous on the writer thread only, every read from any thread.
 */

/* Operations only a backend shared by several nodes has (PostgreSQL); NULL
 * on SQLite, where one process executes the runs of a file (engine/lock.c).
 * A node joins with a lease, renews it and reaps expired nodes (heartbeat),
 * claims unowned unfinished runs (instead of store_runs_unfinished) or one
 * run (claim_run: *out_owned when it is unowned and unfinished, or this
 * incarnation's already), releases a run it stops executing, waits on
 * wake_fd for other nodes' hints and drains them, and leaves (releasing its
 * runs and its lease). set_node names the node before join and before the
 * writer starts (NULL id or 0 lease: the default). set_code_workflows
 * (any thread) gives the ids of the code-first workflows this process
 * executes: claims then take runs of JSON workflows and of those only, so
 * that a node never holds a run it cannot execute. */
struct store_lease {
    char node_id[ID_MAX];
    int64_t epoch;
    int64_t expires_at_ms;
    int64_t last_gid; /* join: the last global event id committed so far */
};
enum store_wake {
    STORE_WAKE_RUN = 1, /* a run of this node has new work (a decision, a cancel) */
    STORE_WAKE_CLAIM,   /* runs may be waiting for an owner */
    STORE_WAKE_EVENTS,  /* events were committed (by any node): read events_since;
                           run_id: the last global id committed, as text (NULL: unknown) */
    STORE_WAKE_FLOW,    /* a run that held a place of a concurrency group ended */
};
struct store_cluster_ops {
    void (*set_node)(struct store *s, const char *node_id, int64_t lease_ms);
    void (*set_code_workflows)(struct store *s, const char *const *ids, size_t n);
    durable_code (*join)(struct store *s, struct store_lease *out, durable_error *err);
    durable_code (*heartbeat)(struct store *s, struct store_lease *l, durable_error *err);
    durable_code (*claim)(struct store *s, int room,
                          durable_code (*fn)(const struct run_record *r, void *ud), void *ud,
                          durable_error *err);
    durable_code (*claim_run)(struct store *s, const char *run_id, bool *out_owned,
                              durable_error *err);
    durable_code (*release)(struct store *s, const char *run_id, durable_error *err);
    int (*wake_fd)(struct store *s);
    durable_code (*wake_drain)(struct store *s,
                               void (*fn)(enum store_wake w, const char *run_id, void *ud),
                               void *ud, durable_error *err);
    void (*leave)(struct store *s);
};

struct store_ops {
    const char *name; /* the location's scheme: "sqlite" */
    durable_code (*open)(const char *location, durable_durability durability, struct store **out,
                         durable_error *err);
    void (*close)(struct store *s);
    int (*schema_version)(void);
    durable_code (*synchronous)(struct store *s, int *out_level, durable_error *err);

    durable_code (*tx_begin)(struct store *s, durable_error *err);
    durable_code (*tx_commit)(struct store *s, struct store_events *ev, durable_error *err);
    void (*tx_rollback)(struct store *s);
    /* May be NULL (all three or none): the halves of tx_commit
     * (store_tx_commit_send) and the wait between them. */
    durable_code (*tx_commit_send)(struct store *s, durable_error *err);
    durable_code (*tx_commit_wait)(struct store *s, struct store_events *ev, durable_error *err);
    void (*tx_commit_ready)(struct store *s);
    /* The row reads and writes store_apply decides over (backend.h): the
     * logic of every transition is the store's (apply.c), not a backend's. */
    const struct store_rows_ops *rows;
    /* May be NULL. Told the transitions of the batch about to be applied
     * (store_tx_prefetch), a backend with round trips to a server reads
     * ahead what their guards will read, in one round trip. */
    durable_code (*prefetch)(struct store *s, const struct transition *const *t, size_t n,
                             durable_error *err);

    durable_code (*workflow_get)(struct store *s, const char *id_or_name,
                                 struct workflow_record *out, durable_error *err);
    durable_code (*run_load)(struct store *s, const char *run_id, struct run_record *out,
                             durable_error *err);
    durable_code (*runs_unfinished)(struct store *s,
                                    durable_code (*fn)(const struct run_record *r, void *ud),
                                    void *ud, durable_error *err);
    durable_code (*run_find_by_key)(struct store *s, const char *workflow_id, const char *key,
                                    char out_run_id[ID_MAX], bool *out_found, durable_error *err);
    durable_code (*run_status)(struct store *s, const char *run_id, enum run_status *out_status,
                               durable_error *err);

    /* The records of the documents (docs.c builds them). run_read: fn->run
     * once, then fn->step for each step in definition order, read in one
     * snapshot; DURABLE_ENOTFOUND if none. events_read: the run's events
     * with seq > after_seq in seq order, appended to out; DURABLE_ENOTFOUND
     * if the run does not exist. events_since: limit is already clamped.
     * order_read: fn->order once; DURABLE_ENOTFOUND if none. The pages:
     * the page is already clamped, a status filter valid; fn->run (without
     * steps), fn->workflow or fn->order per row, newest first, and the total
     * in the same snapshot. */
    durable_code (*run_read)(struct store *s, const char *run_id, const struct store_row_fns *fn,
                             durable_error *err);
    durable_code (*events_read)(struct store *s, const char *run_id, int64_t after_seq,
                                struct store_events *out, durable_error *err);
    durable_code (*events_since)(struct store *s, int64_t after_gid, int limit,
                                 struct store_events *out, durable_error *err);
    durable_code (*order_read)(struct store *s, const char *order_id,
                               const struct store_row_fns *fn, durable_error *err);
    durable_code (*runs_page)(struct store *s, const struct store_run_query *q,
                              const struct store_row_fns *fn, int64_t *out_total,
                              durable_error *err);
    durable_code (*workflows_page)(struct store *s, struct store_page page,
                                   const struct store_row_fns *fn, int64_t *out_total,
                                   durable_error *err);
    durable_code (*orders_page)(struct store *s, struct store_page page,
                                const struct store_row_fns *fn, int64_t *out_total,
                                durable_error *err);

    durable_code (*snapshot_json)(struct store *s, int rows_per_table, char **out,
                                  durable_error *err);
    durable_code (*count_runs)(struct store *s, int64_t out[STORE_N_RUN_STATUSES],
                               durable_error *err);
    durable_code (*count_steps)(struct store *s, int64_t out[STORE_N_STEP_STATUSES],
                                durable_error *err);
    durable_code (*ping)(struct store *s, durable_error *err);
    /* The committed value of key in the actions' key/value table, as owned
     * JSON text in *out (NULL when none). */
    durable_code (*kv_read)(struct store *s, const char *key, char **out, durable_error *err);
    /* Schedules: fn for the one of id, or for each (id NULL) oldest first;
     * NULL on a backend without schedules yet. */
    durable_code (*schedules_read)(struct store *s, const char *id,
                                   void (*fn)(const struct schedule_record *r, void *ud), void *ud,
                                   durable_error *err);

    const struct store_cluster_ops *cluster; /* NULL: one node (SQLite) */
};

#endif
