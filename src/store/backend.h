/*
 * backend.h - what the store's backends share: the helpers of store.c that
 * every backend's transitions and reads use, apart from the contract
 * (store.h) the engine sees.
 *
 * Only src/store/ includes it. Nothing here knows a database: a backend
 * keeps its SQL in its own folder (sqlite/).
 */
#ifndef DURABLE_STORE_BACKEND_H
#define DURABLE_STORE_BACKEND_H

#include "util/common.h"

#include "store/store.h"

/* The backends store.c knows (each in its own folder). */
extern const struct store_ops sqlite_store_ops;

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
char *store_event_data_run_retried(const char *const *step_ids, size_t n);

/* ---- the cache of finished runs' documents (docs.c) ----
 * Made by store_open for a backend of one node; store.c's dispatchers tell
 * it of retries: forget_at_commit for a run a transition of the open
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

#endif
