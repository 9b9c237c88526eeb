/*
 * engine.h - the engine: writer (group commit), scheduler, and the public API.
 *
 * Threads and what they own:
 *   writer    (writer.c)  owns the store's write connection. It drains the
 *             commit queue into one transaction per batch, commits, then
 *             publishes the batch's events to subscribers (on a cluster the
 *             cluster thread publishes every node's, cluster.c), answers waiting
 *             callers and hands the committed items to the scheduler.
 *   scheduler (engine.c)  owns every struct run_state and the timer heap. It
 *             decides what is ready, calls step types, and turns their
 *             outcomes into transitions for the commit queue. It acts on a
 *             transition only after the writer reports it committed.
 *   callers   (api.c)     any thread: validate, submit to the commit queue and
 *             wait for the reply, or post a message to the scheduler.
 *   workflow  (code.c)    run code-first workflow functions (the scheduler
 *             hands such runs over instead of executing them); callers
 *             of the commit queue like any other.
 *
 * Step state machine (scheduler's view; the store holds the durable one):
 *   PENDING --deps done, `if` true--> STARTING --START committed--> RUNNING
 *   (a type with a pure start is asked in STARTING, and its outcome's
 *   transition is chained to the START: both commit in one transaction)
 *   RUNNING --outcome--> FINISHING --COMPLETE committed--> COMPLETED
 *                                  --RETRY committed--> RETRYING --timer--> STARTING
 *                                  --FAIL committed--> FAILED (run fails)
 *                                  --WAIT committed--> WAITING (delay, approval)
 *   RUNNING --http_request--> (I/O thread) --MSG_IO--> outcome as above
 *   WAITING --TM_WAKE--> outcome (delay done, approval timeout: DECIDE or FAIL)
 *   WAITING --DECIDE committed (durable_step_decide, any thread)--> COMPLETED
 *   running in the store at adoption --> STARTING --the run's RECOVERED
 *           committed (on_recovered)--> RUNNING (same attempt, same key)
 *   RUNNING --workflow step--> child RUN_CREATE --child's RUN_FINISH--> outcome
 *   PENDING --a dependency skipped and no `if`, or `if` false--> SKIPPING
 *           --SKIP committed--> SKIPPED
 * on_ready, on_started, handle_outcome, on_timer, on_step_committed and
 * on_recovered in engine.c perform these.
 *
 * Run incarnations: a run is in the scheduler's memory from its adoption
 * (RUN_CREATE committed, recovery at open, resume by key, or a retry) until
 * its RUN_FINISH commits. durable_run_retry commits TR_RUN_RETRY, then asks
 * the scheduler to adopt the run again (engine_sched_retry) as recovery
 * would, minus the `recovered` event; the new incarnation ignores the old
 * one's timers and late items (engine.c).
 *
 * Lock order: every lock (plans_mu, commit queue, scheduler inbox, subs_mu,
 * finish_mu, health_mu, a histogram's mu, a reply's mutex) is a leaf, never
 * held while taking another or across SQL. The one exception to "no lock
 * across a callback": the writer holds subs_mu while it calls subscribers,
 * so that unsubscribing is synchronous (callbacks may not call into durable,
 * so they cannot deadlock on it).
 */
#ifndef DURABLE_ENGINE_ENGINE_H
#define DURABLE_ENGINE_ENGINE_H

#include "util/common.h"

#include <pthread.h>
#include <stdatomic.h>

#include "def/def.h"
#include "durable.h"
#include "store/store.h"
#include "util/queue.h"
#include "util/util.h"

/*
 * A caller waiting for its transition to commit. engine_commit_wait's is on
 * the caller's stack and signalled through mu and cond. An asynchronous
 * caller's (engine_commit_async) has on_done instead: the writer fills
 * code, err and result and calls on_done(reply) on the writer thread after
 * COMMIT (or after giving up on the batch), where it would have signalled;
 * on_done then owns the reply (mu and cond are unused).
 */
struct commit_reply {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;         /* guarded by mu */
    durable_code code; /* written by the writer before done */
    durable_error err;
    struct transition_result result;
    void (*on_done)(struct commit_reply *r); /* NULL: signal cond */
};

enum commit_applied {
    APPLIED_NONE = 0, /* not applied: code says why (ECONFLICT: late result) */
    APPLIED_PRIMARY,
    APPLIED_FALLBACK, /* the primary's action refused; the fallback committed */
};

/*
 * One transition on its way to the database. Owns its strings (own[]).
 * Producers: API threads and the scheduler. Consumer: the writer, which
 * afterwards hands it to the scheduler (notify_sched) or frees it.
 */
struct commit_item {
    QUEUE_LINK(struct commit_item); /* the commit queue's link, and a chain's */
    struct transition t;
    struct transition fallback; /* used when has_fallback and the action refuses */
    bool has_fallback;
    bool notify_sched;          /* pass to the scheduler after commit */
    bool after_prev;            /* chained: submitted in one list with the item
                                   before it, applied in the same transaction,
                                   and only if that one applied as itself
                                   (APPLIED_PRIMARY); else chain_broken */
    bool with_prev;             /* submitted in one list with the item before
                                   it and applied in the same transaction,
                                   whatever became of that one (a bulk
                                   operation, bulk.c) */
    bool chain_broken;          /* written by the writer: after_prev, and the
                                   item before did not apply as itself */
    bool barrier;               /* no transition: passed back to the scheduler
                                   (notify_sched) once every item queued before
                                   it has been answered (engine.c, reloads) */
    bool began;                 /* STEP_START: the scheduler began the attempt
                                   before the START committed (a pure start,
                                   engine.c submit_start); its outcome is the
                                   item chained after it */
    struct commit_reply *reply; /* borrowed; signalled after commit, or NULL */
    struct plan *plan;          /* RUN_CREATE: a reference for the scheduler */
    bool is_child;              /* RUN_CREATE of a `workflow` step's child run: */
    char parent_id[ID_MAX];     /*   the parent run, */
    uint64_t parent_gen;        /*   its incarnation, */
    size_t parent_step;         /*   the step, */
    uint32_t parent_step_gen;   /*   and its attempt's generation */
    size_t parent_item;         /*   a map step's item: its index + 1, 0 for none */
    uint32_t parent_item_gen;   /*   and the item's attempt generation */
    size_t step_idx;            /* STEP_*: index into the plan */
    uint64_t run_gen;           /* scheduler items: the incarnation of the run
                                   that made it (engine.c), so that a result
                                   from before a retry cannot touch the run
                                   that the retry adopted */
    /* written by the writer */
    enum commit_applied applied;
    durable_code code;
    struct transition_result result;
    json_t *output;      /* STEP_COMPLETE: the output, owned; the
                            scheduler takes it after commit */
    char error_msg[256]; /* fallback's error (the action's refusal) */
    /* owned allocations, freed with the item */
    void *own[8];
    int n_own;
    struct transition_step_init *step_inits; /* RUN_CREATE: owned; its strings are
                                                the plan's (ci->plan holds a reference) */
    struct transition_step_copy *copies;     /* a restart's RUN_CREATE (t.copies): owned, each
                                                output_json owned, step ids the plan's */
};

struct commit_item *commit_item_new(enum transition_kind kind, const char *run_id);
/* A caller's cancel of run_id (as `POST /runs/{id}/cancel`): its owner's
 * scheduler is told. */
struct commit_item *commit_item_cancel(const char *run_id);
/* Duplicates s (may be NULL) into memory the item owns. */
const char *commit_item_str(struct commit_item *ci, const char *s);
void commit_item_free(struct commit_item *ci);

struct subscriber {
    int id;
    durable_event_fn fn;
    void *ud;
};

/* A thread in durable_run_wait (api.c), on its stack, listed in
 * d->waiters while it waits. The writer sets finished and signals cond once
 * an event that finishes run_id has committed. */
struct run_waiter {
    struct run_waiter *next;
    const char *run_id;
    pthread_cond_t cond;
    bool finished;         /* guarded by finish_mu */
    enum run_status final; /* guarded by finish_mu: the status it finished with */
};

struct plan_cache_entry {
    char workflow_id[ID_MAX];
    struct plan *plan;
};

struct sched;          /* engine.c: scheduler state, scheduler thread only */
struct engine_cluster; /* cluster.c: this node in a cluster */
struct code_exec;      /* code.c: code-first workflows, their registry and threads */
struct step_io_tag;    /* steps.h: one attempt of a step of a run */

/*
 * A Prometheus histogram with fixed upper bounds (metrics.c). Observed on the
 * writer and scheduler threads, read by any thread; mu is a leaf lock, held
 * for a few additions only (a histogram is several fields, so no atomics).
 */
#define HIST_MAX_BOUNDS 16
struct engine_hist {
    pthread_mutex_t mu;
    const double *bounds; /* ascending, n_bounds; static storage */
    size_t n_bounds;
    uint64_t counts[HIST_MAX_BOUNDS + 1]; /* guarded by mu: per bucket, the last
                                            one above every bound (+Inf) */
    double sum;                           /* guarded by mu */
};
void engine_hist_init(struct engine_hist *h, const double *bounds, size_t n_bounds);
void engine_hist_release(struct engine_hist *h);
void engine_hist_observe(struct engine_hist *h, double value);

/* Starts the metrics of d (histograms); before any thread. */
void engine_metrics_init(struct durable *d);
/* After every thread has been joined. */
void engine_metrics_release(struct durable *d);
/* The writer gave up on a batch (why), or committed one again (why NULL). */
void engine_health_set_writer_error(struct durable *d, const char *why);

#define ENGINE_MAX_STEP_TYPES 256 /* registered step types, built-in ones included */
#define ENGINE_MAX_ACTIONS    256 /* registered business actions */

/* A business action the program registered (durable_action_register). */
struct engine_action {
    char *name; /* owned */
    durable_action_fn fn;
    void *ud;
};
#define ENGINE_MAX_STEP_THREADS 1024 /* durable_options.step_threads */

struct durable {
    struct store *store;
    durable_recovery recovery;
    int lock_fd;                /* lock.c: the "<db>-lock" file; immutable */
    int64_t retain_finished_ms; /* retain.c: delete finished runs older; 0: keep; immutable */

    /* of struct commit_item: producers any thread, consumer the writer */
    struct queue commit_queue;
    pthread_t writer;

    struct sched *sched;
    pthread_t scheduler;

    /* NULL unless the store is shared by several nodes (cluster.c) */
    struct engine_cluster *cluster;
    struct code_exec *code;      /* code.c; immutable pointer, its own lock inside */
    struct schedules *schedules; /* schedules.c: the schedule thread, NULL when none */

    /* subscribers: any thread registers; the writer calls them */
    pthread_mutex_t subs_mu;
    struct subscriber *subs; /* guarded by subs_mu */
    size_t n_subs;           /* guarded by subs_mu */
    int next_sub_id;         /* guarded by subs_mu */

    /* durable_run_wait's threads, each woken when its run finishes */
    pthread_mutex_t finish_mu;
    struct run_waiter *waiters; /* guarded by finish_mu */

    /* plans by workflow id, shared read-only */
    pthread_mutex_t plans_mu;
    struct plan_cache_entry *plans; /* guarded by plans_mu */
    size_t n_plans;                 /* guarded by plans_mu */

    /* step types by name (api.c): any thread registers, parses look up;
     * entries are never removed nor changed before durable_close, so a plan
     * may keep a pointer to one */
    /* durable_options.rate_limits, parsed at open (immutable): flow.c */
    struct engine_type_rate {
        const durable_step_type *type;
        double per_second;
    } * type_rates;
    size_t n_type_rates;
    pthread_mutex_t types_mu;
    durable_step_type *types[ENGINE_MAX_STEP_TYPES]; /* guarded by types_mu; owned copies */
    size_t n_types;                                  /* guarded by types_mu */
    /* business actions by name, as the step types: guarded by types_mu,
     * never removed nor changed before durable_close */
    struct engine_action actions[ENGINE_MAX_ACTIONS];
    size_t n_actions;

    atomic_bool store_failed; /* the writer gave up on a batch */
    pthread_mutex_t health_mu;
    char writer_error[256]; /* guarded by health_mu: why store_failed */

    /* metrics (metrics.c) */
    atomic_uint_fast64_t n_commits;     /* transactions committed */
    atomic_uint_fast64_t n_transitions; /* transitions applied in them */
    struct engine_hist batch_size;      /* writer: transitions per commit */
    struct engine_hist step_seconds;    /* scheduler: START commit to result */
};

/* ---- writer.c ---- */
void engine_writer_start(struct durable *d);
/* Queues an item, or a list of items linked by next whose later items are
 * after_prev (takes ownership). Fails with DURABLE_ECLOSED when stopping
 * (the items are freed). */
durable_code engine_commit_submit(struct durable *d, struct commit_item *ci);
/* Queues an item with a reply and waits until it has committed. Takes
 * ownership of ci. The reply's code and result are copied to the caller. */
durable_code engine_commit_wait(struct durable *d, struct commit_item *ci,
                                struct transition_result *out_result, durable_error *err);
/* Queues an item with reply, whose on_done the writer calls once the item
 * has committed or failed (it must be quick and must not wait on the
 * engine: the writer runs it between two batches). Takes ownership of ci.
 * DURABLE_ECLOSED when stopping: then on_done is never called. */
durable_code engine_commit_async(struct durable *d, struct commit_item *ci,
                                 struct commit_reply *reply);
/* Closes the queue, lets the writer drain it, joins it. */
void engine_writer_stop(struct durable *d);
/* Hands committed events to the subscribers (when to_subscribers), then
 * wakes the durable_run_wait callers of the runs they finish: the writer's
 * after each commit; on a cluster, the cluster thread's for every node's
 * events (then the writer's only wakes waiters). Takes subs_mu, then
 * finish_mu, one after the other. */
void engine_events_publish(struct durable *d, const struct store_events *ev, bool to_subscribers);

/* ---- engine.c (scheduler) ---- */
/* Starts the I/O thread, adopts every unfinished run when d->recovery is
 * DURABLE_RECOVER_ALL (on the calling thread, which is the scheduler until
 * the thread starts: it also handles what commits meanwhile), then starts
 * the scheduler thread. */
durable_code engine_sched_start(struct durable *d, const char *http_allow, int step_threads,
                                durable_error *err);
void engine_sched_stop(struct durable *d);

/* schedules.c: the schedule thread, started at open after recovery (not
 * with DURABLE_RECOVER_NONE, nor on a backend without schedules) and
 * stopped first at close. */
void engine_schedules_start(struct durable *d);
void engine_schedules_stop(struct durable *d);
/* Creates (or replaces, by id) the schedules of plan's definition
 * (`schedules`, checked by the parser), each starting plan's workflow. */
durable_code engine_schedules_of_definition(struct durable *d, const struct plan *plan,
                                            durable_error *err);
/* api.c: starts a run of workflow (name, latest version) with input (JSON
 * object text) for tick tick_ms of schedule schedule_id, key
 * "schedule:<id>:<tick>", its creation and the tick in one transaction;
 * waits for the commit. DURABLE_ECONFLICT when the tick fired already. */
durable_code engine_schedule_run_start(struct durable *d, const durable_run_request *req,
                                       const char *schedule_id, int64_t tick_ms,
                                       char out_run_id[ID_MAX], durable_error *err);
/* Frees the scheduler; after engine_writer_stop (the writer may still post). */
void engine_sched_free(struct durable *d);
/* Called by the writer with the committed items (a list; ownership passes). */
void engine_sched_committed(struct durable *d, struct commit_item *items);
/* A step type was registered: the scheduler resumes the runs it could not
 * load for want of one. */
void engine_sched_types_changed(struct durable *d);
/* The registered action called name: true and its fn and ud. Any thread. */
bool engine_action_find(struct durable *d, const char *name, durable_action_fn *fn, void **ud);
/* Asks the scheduler to resume a run from the store (if not already active). */
void engine_sched_resume(struct durable *d, const char *run_id);
/* Asks the scheduler to adopt a run that TR_RUN_RETRY has just committed:
 * like engine_sched_resume, without a `recovered` event, and replacing a
 * stale in-memory state of the run if one is left. */
void engine_sched_retry(struct durable *d, const char *run_id);

/* What cluster.c tells the scheduler: a run it claimed (adopt it as
 * recovery does), a run of this node a caller changed (reload it), or that
 * the node lost its lease (forget every run; run_id unused). */
/* SCHED_CLAIMS_BEGIN and _END bracket a pass of claims (no run): held runs
 * are let in only once every run of the pass is adopted (flow.c), so that
 * a run that had started counts before a held one is admitted. */
enum sched_cluster_msg {
    SCHED_CLAIMED,
    SCHED_WAKE,
    SCHED_FENCE,
    SCHED_CLAIMS_BEGIN,
    SCHED_CLAIMS_END,
    SCHED_FLOW /* a run that held a place of a concurrency group ended */
};
void engine_sched_cluster(struct durable *d, enum sched_cluster_msg what, const char *run_id);

/* A TR_RUN_CREATE item for a child run (a `workflow` step) of workflow (id
 * or name, latest version) with input_json (an object, or NULL for the
 * definition's defaults) and idempotency key `key` (the parent step's, so
 * that starting it again after a restart returns the same child). The run
 * id is claimed (engine_run_lock). Reads the store: callable from the
 * scheduler thread. OUT *out (owned) on success. */
durable_code engine_child_item(struct durable *d, const char *workflow, const char *input_json,
                               const char *key, struct commit_item **out, durable_error *err);

/* ---- code.c: code-first workflows ---- */
/* Starts the workflow threads; before the scheduler (which adopts runs). */
durable_code engine_code_start(struct durable *d, durable_error *err);
/* Lets the invocations under way finish (their steps commit), drops the
 * queued ones and joins the threads; before the writer stops. */
void engine_code_stop(struct durable *d);
void engine_code_free(struct durable *d); /* after engine_code_stop */
/* The scheduler would adopt run_id, a run of code-first plan: queues its
 * invocation if this process registered the plan's name and version and
 * the run is not queued or being invoked already; otherwise it waits.
 * Any thread. */
void engine_code_adopt(struct durable *d, const char *run_id, const struct plan *plan);
/* A JSON run's `workflow` step (the attempt `parent`) waits for child_id, a
 * code-first run: when the child's end commits, the scheduler is told
 * (engine_sched_child_ended), once. engine_code_child_unwait takes the wait
 * back: true if it was still there, so the caller delivers the end itself
 * and nobody else will. Scheduler thread; code_child.c. */
void engine_code_child_wait(struct durable *d, const char *child_id,
                            const struct step_io_tag *parent);
bool engine_code_child_unwait(struct durable *d, const char *child_id,
                              const struct step_io_tag *parent);
/* Posts the end of child_id to the scheduler, for the step attempt parent
 * that waits for it. Any thread. */
void engine_sched_child_ended(struct durable *d, const struct step_io_tag *parent,
                              const char *child_id);

/* ---- lock.c: which process executes which runs ---- */
/* Takes the presence lock (exclusive for DURABLE_RECOVER_ALL, shared
 * otherwise). DURABLE_ECONFLICT when another process forbids it. */
durable_code engine_lock_open(struct durable *d, const char *db_path, durable_error *err);
void engine_lock_close(struct durable *d);
/* Claims the run for this process (always true under RECOVER_ALL, whose
 * presence lock already excludes everyone). False: another process has it. */
bool engine_run_lock(struct durable *d, const char *run_id);
void engine_run_unlock(struct durable *d, const char *run_id);
bool engine_run_locked_elsewhere(struct durable *d, const char *run_id);

/* ---- cluster.c: many nodes on one database ----
 * engine_cluster_open joins the cluster when the store is shared by several
 * nodes (ops->cluster); otherwise d->cluster stays NULL and nothing here
 * does anything. Only a server (DURABLE_RECOVER_ALL) claims other nodes'
 * runs.
 * engine_cluster_start starts the node's thread (after the scheduler):
 * heartbeat, claims, wake-ups. engine_cluster_stop joins it (before the
 * scheduler stops); engine_cluster_close leaves the cluster, releasing the
 * node's runs (after the writer has committed its last batch), and frees.
 * engine_cluster_want (scheduler thread) asks the thread to claim a run
 * (a resume, a retry, a decision on a run not in memory): the scheduler
 * adopts it only if this node owns it (SCHED_WAKE). engine_cluster_give
 * (any thread) asks it to release a run this process cannot execute (a
 * code-first one it did not register), for a node that can to claim. */
durable_code engine_cluster_open(struct durable *d, const durable_options *opts,
                                 durable_error *err);
void engine_cluster_start(struct durable *d);
void engine_cluster_stop(struct durable *d);
void engine_cluster_close(struct durable *d);
void engine_cluster_want(struct durable *d, const char *run_id);
void engine_cluster_give(struct durable *d, const char *run_id);
/* The writer commits a batch (writer thread): a read of events announced
 * meanwhile waits for engine_cluster_publish. */
void engine_cluster_committing(struct durable *d);
/* The writer's events of a commit (writer thread; NULL: the batch
 * failed): handed to the subscribers at once when they follow the last
 * handed over, else by the cluster thread's read; durable_run_wait callers
 * are woken either way. */
void engine_cluster_publish(struct durable *d, const struct store_events *ev);
/* api.c: the store's run query of a list filter (paging left at 0);
 * durable_runs_list and bulk.c. */
struct store_run_query;
void engine_run_query(struct store_run_query *q, const durable_run_filter *f);
/* The code-first workflows this process registered (their ids): claims
 * take their runs from now on (a registration then resumes them). Any
 * thread; a cluster only. */
void engine_cluster_code_workflows(struct durable *d, const char *const *ids, size_t n);

/* ---- api.c ---- */
/* The built-in definition options, with d's step types. Returns opts. */
const struct def_options *engine_def_options(struct durable *d, struct def_options *opts);

/* ---- plans.c ---- */
/* A plan for a workflow id, from the cache or parsed from its stored
 * definition. Returns a new reference. */
durable_code engine_plan_get(struct durable *d, const char *workflow_id, const char *definition,
                             struct plan **out, durable_error *err);
/* Adds p under workflow_id (taking a reference of its own). */
void engine_plan_cache_add(struct durable *d, const char *workflow_id, struct plan *p);
bool engine_plan_cache_has(struct durable *d, const char *workflow_id);

#endif
