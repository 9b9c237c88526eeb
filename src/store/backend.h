/*
 * backend.h - what the store's backends share: the row operations a backend
 * implements for store_apply (struct store_rows_ops), and the helpers of
 * store.c, rules.c, event_data.c and docs.c that every backend's
 * transitions and reads use, apart from the contract (store.h) the engine
 * sees.
 *
 * Only src/store/ includes it. Nothing here knows a database: a backend
 * keeps its SQL in its own folder (sqlite/, pg/).
 */
#ifndef DURABLE_STORE_BACKEND_H
#define DURABLE_STORE_BACKEND_H

#include "util/common.h"

#include <jansson.h>

#include "store/store.h"

/* The backends store.c knows (each in its own folder). */
extern const struct store_ops sqlite_store_ops;
extern const struct store_ops pg_store_ops;

/* Where an event belongs: its run, its step (or NULL) and its time. */
struct event_key {
    const char *run_id;
    const char *step_id;
    int64_t at_ms;
};

/* Adds an event a backend has written to ev; takes ownership of data_json. */
void store_events_push(struct store_events *ev, const struct event_key *k, int64_t seq, int64_t gid,
                       const char *type, char *data_json);

/* Frees the events of `ev` from index n on and truncates it to n. */
void store_events_truncate(struct store_events *ev, size_t n);

#ifdef DURABLE_FAILPOINTS
/* DURABLE_FAILPOINT_COMMIT=KIND[,after=A][,count=C][,p=P] (a test hook of
 * builds with failpoints) makes the writer's commits fail as the backend
 * fails them for KIND, one of the names kinds[] gives (NULL-terminated; kind
 * is its place from 1, 0: no fault): the first A commits are left alone
 * (0), then each commit fails with probability P (1), C times at most (no
 * limit); after that the fault is gone. Builds without failpoints ignore
 * the variable. Writer thread only. */
struct commit_fault {
    int kind;
    long after; /* commits left alone first */
    long count; /* commits made to fail at most; -1: no limit */
    double p;   /* the chance that an eligible commit fails */
    long seen;  /* commits attempted so far */
};
durable_code commit_fault_parse(struct commit_fault *f, const char *const *kinds,
                                durable_error *err);
/* Whether this commit is to fail. */
bool commit_fault_due(struct commit_fault *f);
#endif

/* A text cell of the snapshot: cut to STORE_SNAPSHOT_CELL_MAX bytes on a
 * UTF-8 character boundary, "…" appended, when longer; NULL when the text
 * is not valid UTF-8 (jansson refuses it). */
json_t *store_snapshot_text(const char *text, size_t len);

/* Clamps a page size: 0 gives dflt, then into 1..max. */
int store_clamp_limit(int limit, int dflt, int max);

/* ---- event data (event_data.c) ----
 * The data JSON of each event type, as owned text a backend appends as it
 * is. JSON text arguments are the transition's, valid by contract, and are
 * copied; NULL strings become null. */
char *store_event_data_run_created(const char *workflow_id, const char *input_json,
                                   const char *order_id);
char *store_event_data_step_started(int attempt, const char *run_id, const char *step_id);
char *store_event_data_step_completed(int attempt, const char *output_json);
/* action_applied: {action, order_id, from, to}, or {action} when order_id
 * is NULL (a registered action). */
char *store_event_data_action_applied(const char *action, const char *order_id, const char *from,
                                      const char *to);
char *store_event_data_step_failed(int attempt, const char *error, const char *code, bool is_final);
/* retry_scheduled: the next attempt, and its delay from at_ms. */
char *store_event_data_retry_scheduled(int next_attempt, int64_t at_ms, int64_t wake_at_ms);
/* step_waiting: wait_json's members (NULL: none) then attempt and wake_at
 * (when > 0). DURABLE_EINVAL when wait_json is not shaped as an object. */
durable_code store_event_data_step_waiting(const char *wait_json, int attempt, int64_t wake_at_ms,
                                           char **out, durable_error *err);
/* run_completed {output}, run_failed {error}, run_cancelled {}. */
char *store_event_data_run_finished(enum run_status st, const char *output_json, const char *error);
/* recovered: {steps} with the transition's array of step ids. */
char *store_event_data_recovered(const char *steps_json);
/* signal_received: {signal_id, name, payload}. */
char *store_event_data_signal_received(const char *signal_id, const char *name,
                                       const char *payload_json);
/* step_completed or step_skipped of a restarted run's step kept from the
 * original run: {attempt, output, copied_from} ({copied_from} when skipped). */
char *store_event_data_step_copied(int attempt, const char *output_json, const char *from_run);
char *store_event_data_run_retried(const char *const *step_ids, size_t n);

/* ---- the cache of finished runs' documents (docs.c) ----
 * Made by store_open for a backend of one node; store.c's dispatchers and
 * store_apply tell it of retries: forget_at_commit for a run a transition
 * of the open
 * transaction makes unfinished, forget_pending(committed) after the
 * commit (drops those runs' documents) or a rollback (forgets the list).
 * Writer thread for those two; run_cache_free at store_close. */
struct run_cache *run_cache_new(void);
void run_cache_free(struct run_cache *c); /* accepts NULL */
void run_cache_forget_at_commit(struct run_cache *c, const char *run_id);
void run_cache_forget_pending(struct run_cache *c, bool committed);

/* ---- the state rules (rules.c) ---- */

/* Which step statuses a step transition accepts (a mask of 1 << enum
 * step_status), and whether the result must come from the step's current
 * attempt (a late or duplicate result must not). */
struct step_guard {
    const char *verb; /* in refusals: "cannot <verb> step ..." */
    unsigned allowed;
    enum transition_kind kind;
    bool check_attempt;
};

/* The guard of a step transition kind (TR_STEP_START ... TR_STEP_WAIT,
 * and TR_RUN_RECOVERED for each step it restarts), or NULL. */
const struct step_guard *store_step_guard(enum transition_kind kind);

/* The stored state a step guard looks at, as the backend read it. */
struct guard_row {
    const char *run_status;  /* the run's stored status text */
    const char *step_status; /* the step's, or NULL when the run has no such step */
    int attempt;             /* the step's current attempt */
};

/* The run (stored status status_text) must be unfinished, or, for a retry
 * (need_failed), have failed: DURABLE_ECONFLICT otherwise, DURABLE_EIO for
 * a status no build knows. */
durable_code store_guard_run(const char *run_id, const char *status_text, bool need_failed,
                             durable_error *err);

/* The run of t must be unfinished, its step exist with a status g allows
 * (and, if g says so, be at t's attempt). DURABLE_ENOTFOUND,
 * DURABLE_ECONFLICT or DURABLE_EIO with the reason otherwise. */
durable_code store_guard_step(const struct step_guard *g, const struct transition *t,
                              const struct guard_row *row, durable_error *err);

/* ---- the row operations of store_apply (apply.c) ----
 *
 * store_apply decides every transition in neutral code (apply.c): which
 * guards run, which rows change, which events are appended with which
 * data, what is refused and how a refused action is undone. A backend only
 * reads and writes rows through these operations, so every backend keeps
 * the same semantics. Each is called on the writer thread only, inside the
 * transaction store_tx_begin opened; each returns DURABLE_EIO (with the
 * database's reason) when the database fails, after which the writer
 * rolls the transaction back. Apart from that and the refusals written
 * below, an operation cannot fail: the guards have run before it.
 *
 * Text arguments are borrowed for the call; ids are shorter than ID_MAX
 * (the store makes them so). Times are Unix ms; a time said to be 0 for
 * "none" is stored as NULL. No operation allocates what the caller must
 * free. The writer's hot path is run_get, step_write, run_write and
 * event_append (a step transition is one of each, or two appends): keep
 * them one prepared statement each. A backend that pays a round trip per
 * operation may send a write later (with the next read, or at commit)
 * provided every read sees the transaction's earlier writes and the
 * answers a write gives (event ids, out_changed) are right; a failure it
 * reports late is DURABLE_EIO like any other.
 */

/* Status and type texts as stored, truncated to fit (a truncated text is
 * no known name, so the guards still refuse it). */
#define STORE_NAME_MAX 24

/* What the guards read of a run and, when asked, one of its steps. */
struct store_run_state {
    bool has_run;                     /* false: no such run (the rest is unset) */
    char run_status[STORE_NAME_MAX];  /* the run's status as stored */
    char order_id[ID_MAX];            /* the run's order, "" for none */
    bool has_step;                    /* false: no step asked, or the run has none such */
    char step_status[STORE_NAME_MAX]; /* the step's status as stored */
    char step_type[STORE_NAME_MAX];   /* the step's type ("task", "approval", ...) */
    int attempt;                      /* the step's current attempt */
    bool not_owner;                   /* another node (or incarnation) owns the run now:
                                         only a backend shared by several nodes sets it,
                                         and it keeps the run's row locked until COMMIT */
};

/* The numbers event_append gave an event. */
struct store_event_ids {
    int64_t seq;
    int64_t gid;
};

/* A change of one step row (store_rows_ops.step_write); t's fields named
 * are written, every other column is kept. */
enum store_step_write {
    STEP_W_START = 1, /* status running, attempt, started_at = at_ms; completed_at, wake_at,
                         error_message, error_code cleared */
    STEP_W_RUN,       /* START and COMPLETE at once: status completed, attempt, started_at =
                         completed_at = at_ms, output = output_json; wake_at and the error
                         cleared */
    STEP_W_COMPLETE,  /* status completed, output = output_json, completed_at = at_ms */
    STEP_W_RETRY,     /* status retrying, wake_at = wake_at_ms, error_message, error_code */
    STEP_W_FAIL,      /* status failed, completed_at = at_ms, error_message, error_code */
    STEP_W_SKIP,      /* status skipped, completed_at = at_ms */
    STEP_W_WAIT,      /* status waiting, wake_at = wake_at_ms (0: none), the signal it
                         waits for = signal_name (NULL: none) */
    STEP_W_RESTART,   /* only if the step is running: started_at = at_ms, attempt = max(attempt,
                         1); *out_changed says whether it was */
    STEP_W_PROGRESS,  /* output = output_json only (a running map step's progress) */
};

/* A change of a run row (store_rows_ops.run_write). */
enum store_run_write {
    RUN_W_START = 1, /* status running, started_at = at_ms unless set (a step started) */
    RUN_W_RECOMPUTE, /* an unfinished run's status from its steps': running while one runs,
                        else waiting while one waits or retries, else running if it was
                        waiting, else unchanged */
    RUN_W_FINISH,    /* status run_status, output = output_json, error_message, completed_at
                        = at_ms; its steps not final become cancelled (completed_at = at_ms,
                        wake_at cleared) */
    RUN_W_PAUSE,     /* status paused (the guard saw it unfinished and not paused) */
    RUN_W_RESUME,    /* a paused run's status from its steps': running while one runs,
                        waiting while one waits or retries, pending if it never started,
                        else running */
};

/* The savepoint around a transition that can be refused after its first
 * write (a step completion with an action): one at a time, not nested. */
enum store_savepoint {
    SAVEPOINT_BEGIN = 1,
    SAVEPOINT_RELEASE,  /* keeps what was written since BEGIN */
    SAVEPOINT_ROLLBACK, /* undoes what was written since BEGIN; RELEASE follows */
};

struct store_rows_ops {
    /* ---- reads (see every earlier write of the transaction) ---- */

    /* The run's status and order, and with step_id (may be NULL) that
     * step's status, type and attempt, in one read; out->has_run false
     * when there is no such run. A backend may remember the run's last
     * event seq here, for event_append. */
    durable_code (*run_get)(struct store *s, const char *run_id, const char *step_id,
                            struct store_run_state *out, durable_error *err);
    /* The run of workflow_id's workflow (any version of its name) started
     * with idempotency key `key`: its id in out, *out_found. */
    durable_code (*run_by_key)(struct store *s, const char *workflow_id, const char *key,
                               char out[ID_MAX], bool *out_found, durable_error *err);
    /* Whether the workflow version with this id exists. */
    durable_code (*workflow_exists)(struct store *s, const char *workflow_id, bool *out_found,
                                    durable_error *err);
    /* The latest version of workflow `name`: its id and version in out
     * (version 0 when there is none), and whether its definition is
     * `definition` byte for byte. */
    durable_code (*workflow_latest)(struct store *s, const char *name, const char *definition,
                                    struct transition_result *out, bool *out_same,
                                    durable_error *err);
    /* The order's status in out (truncated to STORE_NAME_MAX), *out_found. */
    durable_code (*order_get)(struct store *s, const char *order_id, char out[STORE_NAME_MAX],
                              bool *out_found, durable_error *err);
    /* The value of key in the actions' key/value table, as owned JSON
     * text in *out (NULL when none). */
    durable_code (*kv_get)(struct store *s, const char *key, char **out, durable_error *err);

    /* ---- writes ---- */

    /* One step row of t->run_id, t->step_id changes as w says (a step
     * that does not exist changes nothing). out_changed may be NULL. */
    durable_code (*step_write)(struct store *s, enum store_step_write w, const struct transition *t,
                               bool *out_changed, durable_error *err);
    /* The row of run t->run_id changes as w says; a backend leaves a row
     * whose values would not change unwritten when it can (cheaper). */
    durable_code (*run_write)(struct store *s, enum store_run_write w, const struct transition *t,
                              durable_error *err);
    /* A new run `run_id` of t->workflow_id (status pending, input, order_id,
     * idempotency_key, created_at = at_ms, deadline_ms) and a row per step of
     * t->steps in that (definition) order: pending, attempt 0, max_attempts,
     * depends_on (NULL: "[]"), idempotency key "<run_id>/<step_id>". */
    durable_code (*run_insert)(struct store *s, const struct transition *t, const char *run_id,
                               const char *input_json, durable_error *err);
    /* One more step row of run_id at position idx, as run_insert writes
     * each (a code-first run's steps are inserted when reached). */
    durable_code (*step_insert)(struct store *s, const char *run_id, int idx,
                                const struct transition_step_init *si, durable_error *err);
    /* A failed run runs again: fn(ud, step_id) for each failed or cancelled
     * step in definition order, then those steps become pending with
     * attempt 0 (times, wake_at, error and output cleared), and the run
     * running with no output, error or completed_at, deadline deadline_ms. */
    durable_code (*run_retry)(struct store *s, const char *run_id, int64_t deadline_ms,
                              void (*fn)(void *ud, const char *step_id), void *ud,
                              durable_error *err);
    /* A new order (status "pending", created_at = updated_at = at_ms). */
    durable_code (*order_insert)(struct store *s, const char *order_id, double amount,
                                 int64_t at_ms, durable_error *err);
    /* The order's status becomes status, updated_at = at_ms. */
    durable_code (*order_set_status)(struct store *s, const char *order_id, const char *status,
                                     int64_t at_ms, durable_error *err);
    /* key's value in the key/value table becomes value (JSON text),
     * updated_at = at_ms. */
    durable_code (*kv_put)(struct store *s, const char *key, const char *value, int64_t at_ms,
                           durable_error *err);
    /* A new workflow version: id wf->id, version wf->version, name
     * t->wf_name, definition t->wf_definition, retain_ms t->wf_retain_ms
     * (NULL for 0), created_at = t->at_ms. */
    durable_code (*workflow_insert)(struct store *s, const struct transition_result *wf,
                                    const struct transition *t, durable_error *err);
    /* Appends an event to k->run_id's history (data is its JSON text,
     * borrowed) with the run's next seq (1 after the last, no gaps) and the
     * next global id (1 after the last given out: gids increase in commit
     * order with no gaps), both returned in *out.
     * DURABLE_ENOTFOUND if the run does not exist. */
    durable_code (*event_append)(struct store *s, const struct event_key *k, const char *type,
                                 const char *data, struct store_event_ids *out, durable_error *err);
    /* The events from global id first_gid on that the transition under way
     * appended are undone (rolled back to the savepoint, or the transaction
     * is being rolled back): the next event_append gives first_gid again,
     * and any last seq remembered is forgotten. */
    void (*events_undo)(struct store *s, int64_t first_gid);
    durable_code (*savepoint)(struct store *s, enum store_savepoint op, durable_error *err);
    /* ---- signals (TR_SIGNAL_SEND, and TR_STEP_WAIT with a signal name) ---- */

    /* A new signal of run t->run_id: id t->signal_id, name t->signal_name,
     * payload t->output_json (NULL: null), created_at = at_ms, not taken;
     * seq orders the run's signals (its signal_received event's seq). */
    durable_code (*signal_insert)(struct store *s, const struct transition *t, int64_t seq,
                                  durable_error *err);
    /* The oldest signal of run_id named name not taken yet: its id in
     * out_id ("" when there is none), its payload appended to payload. */
    durable_code (*signal_next)(struct store *s, const char *run_id, const char *name,
                                char out_id[ID_MAX], struct dbuf *payload, durable_error *err);
    /* Signal signal_id is taken by step_id at at_ms. */
    durable_code (*signal_take)(struct store *s, const char *signal_id, const char *step_id,
                                int64_t at_ms, durable_error *err);
    /* The first step of run_id (in step order) waiting for signal name:
     * its id in out_step ("" when none waits), its attempt. STEP_W_WAIT
     * stores t->signal_name as what the step waits for. */
    durable_code (*signal_waiter)(struct store *s, const char *run_id, const char *name,
                                  char out_step[STORE_STEP_ID_MAX], int *out_attempt,
                                  durable_error *err);
    /* Tells the owner of the run, at COMMIT, that a caller changed it (a
     * decision, a cancel, a retry): NULL for a backend of one node. */
    durable_code (*run_notify)(struct store *s, const char *run_id, durable_error *err);
    /* TR_RUN_ADMIT: run t->run_id takes a place in group t->flow_key
     * unless t->flow_limit runs of the group hold one already (unfinished
     * runs admitted before, this one not counted; admissions of a group
     * are serialized across nodes until COMMIT): out->admitted, and
     * out->in_use that count. NULL for a backend of one process
     * (engine/flow.c counts). */
    durable_code (*flow_admit)(struct store *s, const struct transition *t,
                               struct transition_result *out, durable_error *err);
    /* TR_RATE_TAKE: the next place of rate limit t->flow_key, one every
     * t->rate_interval_ms over every node (the limit's row locked until
     * COMMIT): out->wait_ms until it comes, by the database's clock.
     * NULL for a backend of one process. */
    durable_code (*rate_take)(struct store *s, const struct transition *t,
                              struct transition_result *out, durable_error *err);

    /* ---- deletion (TR_RUNS_DELETE, TR_WORKFLOW_DELETE) ---- */

    /* Deletes the finished runs q selects (at most q->limit, oldest
     * completed_at first) with their steps, events and signals, calling
     * fn(ud, run_id) for each before it goes; *out_n counts them. With
     * q->dry_run: counts every run q selects, deletes nothing, calls no fn.
     * Global event ids are never given out again after their events are
     * deleted. */
    durable_code (*runs_delete)(struct store *s, const struct store_purge *q,
                                void (*fn)(void *ud, const char *run_id), void *ud, int64_t *out_n,
                                durable_error *err);
    /* Deletes version `version` of workflow `name` unless a run uses it:
     * *out_found whether it exists, *out_used whether a run uses it (then
     * nothing is deleted). */
    durable_code (*workflow_delete)(struct store *s, const char *name, int version, bool *out_found,
                                    bool *out_used, durable_error *err);
    /* ---- schedules (TR_SCHEDULE_*, TR_RUN_CREATE with schedule_id);
     * NULL on a backend without schedules yet ---- */

    /* Whether schedule id exists, and its paused flag and last tick (0:
     * none). */
    durable_code (*schedule_get)(struct store *s, const char *id, bool *out_found, bool *out_paused,
                                 int64_t *out_last_tick, durable_error *err);
    /* Inserts r (created_at = updated_at = at_ms), or replaces the
     * definition of the schedule r->id (workflow, cron, every, tz, input,
     * overlap, catch-up; updated_at), keeping its anchor, paused flag, last
     * tick and counts. */
    durable_code (*schedule_put)(struct store *s, const struct schedule_record *r, int64_t at_ms,
                                 durable_error *err);
    /* t->schedule_id changes: TR_SCHEDULE_SET as t->schedule_op says;
     * TR_SCHEDULE_TICK last_tick = t->tick_ms, skipped + 1; TR_RUN_CREATE
     * last_tick = t->tick_ms, fired + 1, last_run_id = run_id (the run the
     * tick started). updated_at = t->at_ms. */
    durable_code (*schedule_write)(struct store *s, const struct transition *t, const char *run_id,
                                   durable_error *err);
};

#endif
