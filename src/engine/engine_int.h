/*
 * engine_int.h - the scheduler's private types and its step-lifecycle core,
 * shared by the files of the scheduler (engine.c, timers.c, recover.c,
 * children.c, map.c) and by nothing else.
 *
 * The step-lifecycle core (engine.c): a step becomes ready (sched_on_ready),
 * its START is submitted (sched_submit_start), it runs once that commits
 * (sched_on_started), and its COMPLETE or failure is submitted
 * (sched_submit_complete, sched_submit_failure); a run ends with
 * sched_submit_finish. Every transition goes to the writer through
 * sched_submit, and the scheduler acts only once it has committed.
 *
 * Threads: struct sched's inbox (a struct queue) is shared; everything else
 * here, and every function declared here, belongs to the scheduler thread
 * alone (or to engine_sched_start before that thread exists).
 */
#ifndef DURABLE_ENGINE_INT_H
#define DURABLE_ENGINE_INT_H

#include "engine/engine.h"
#include "steps/steps.h"

enum step_st {
    SS_PENDING = 0,
    SS_STARTING,
    SS_RUNNING,
    SS_FINISHING,
    SS_RETRYING,
    SS_COMPLETED,
    SS_SKIPPING,
    SS_SKIPPED,
    SS_FAILED,
    SS_CANCELLED,
    SS_WAITING, /* WAIT committed: a delay or an approval (timer TM_WAKE, or a decision) */
};

struct step_state {
    enum step_st st;
    int attempt;
    uint32_t gen;              /* bumped when an attempt ends: disarms its timers */
    size_t n_deps_left;        /* dependencies not yet completed or skipped */
    json_t *output;            /* COMPLETED: owned */
    int64_t started_us;        /* clock_mono_us when the attempt's START committed, or 0 */
    json_t *config;            /* the attempt's rendered config, owned; NULL: not rendered yet */
    bool held;                 /* RETRYING or WAITING: its timer fired while the run was paused;
                                  acted on at the resume (sched_on_resumed) */
    bool if_checked;           /* the `if` was evaluated (sched_on_ready) in this incarnation */
    char *if_error;            /* owned: the `if` failed to evaluate; the attempt fails with it */
    bool is_restarting;        /* STARTING: was running at a restart, goes to its type once the
                                  run's TR_RUN_RECOVERED commits (sched_on_recovered) */
    bool rate_held;            /* PENDING: its start waits for a TM_RATE timer, its place
                                  under the step's rate limit (flow.c) */
    durable_step_call *pooled; /* RUNNING: a blocking type's call in the step pool, until its
                                  answer is handled or the attempt ends without it
                                  (steps_pool_release); NULL otherwise */
    struct map_exec *map;      /* a map step's items in memory (map.c), or NULL */
};

struct run_state {
    char id[ID_MAX];
    uint64_t gen; /* incarnation, from sched.next_run_gen */
    struct plan *plan;
    char *order_id;
    /* For expressions, built on first use (run_context): most runs never
     * evaluate one, and recovery adopts many runs at once. */
    char *input_json;    /* the run's input as stored (owned), until parsed */
    double order_amount; /* its demo order's amount, when order_id */
    json_t *input;       /* the parsed input (owned), or NULL until needed */
    json_t *order;       /* {"id", "amount"} of its demo order, or null (owned), or NULL */
    struct step_state *steps;
    size_t n_settled;    /* completed or skipped */
    bool finishing;      /* RUN_FINISH submitted, or a step failed for good */
    bool paused;         /* RUN_PAUSE committed (or adopted paused): no step starts, no
                            retry or wake-up timer is acted on, until RUN_RESUME */
    bool finish_chained; /* a RUN_FINISH is chained to the last step's completion
                            (sched_submit_complete), until the chain commits or breaks */
    /* child runs (`workflow` steps): the step waiting for this run, and the
     * runs this one started (cancelled when it finishes). In memory only:
     * after a restart the parent's step starts again, finds its child by
     * idempotency key and links it again. */
    bool has_parent;
    char parent_id[ID_MAX];
    uint64_t parent_gen;
    size_t parent_step;
    uint32_t parent_step_gen;
    size_t parent_item; /* a map step's item waiting for this run: index + 1, 0 for none */
    uint32_t parent_item_gen;
    char (*children)[ID_MAX];
    size_t n_children;
    /* concurrency limits (flow.c): the run's group, or NULL when its
     * workflow has none; flow_held: waiting for a place, no step starts */
    struct flow_group *flow;
    bool flow_held;
    /* on a cluster, a held run whose TR_RUN_ADMIT is under way (it counts
     * in its group meanwhile), asked after flow_wakes wake-ups */
    bool flow_admitting;
    uint64_t flow_wakes;
    struct run_state *hnext;
};

enum timer_kind {
    TM_STEP = 0, /* the step type's own timer (task duration) */
    TM_RETRY,    /* back-off over: start the next attempt */
    TM_TIMEOUT,  /* the attempt's timeout_seconds */
    TM_DEADLINE, /* the run's timeout_seconds */
    TM_WAKE,     /* a waiting step's wake-up time (delay, approval timeout) */
    TM_RELOAD,   /* a run forgotten when the store failed: load it again */
    TM_RETAIN,   /* retention's next pass (retain.c); no run */
    TM_MAP_ITEM, /* a map step's item (map.c): its type's timer, its retry, or its timeout */
    TM_RATE,     /* a step's place under its rate limit has come (flow.c) */
};

struct timer {
    int64_t due_ms;   /* Unix ms */
    uint64_t run_gen; /* the run's incarnation */
    uint32_t gen;
    enum timer_kind kind;
    size_t step_idx;
    char run_id[ID_MAX];
    size_t item;       /* TM_MAP_ITEM: the item's index */
    uint32_t item_gen; /* TM_MAP_ITEM: the item's attempt generation */
    bool item_timeout; /* TM_MAP_ITEM: the item's timeout_seconds */
};

enum msg_kind { MSG_COMMITTED, MSG_RESUME, MSG_IO, MSG_CLUSTER, MSG_TYPES, MSG_CHILD_ENDED };

struct sched_msg {
    QUEUE_LINK(struct sched_msg); /* in the inbox */
    enum msg_kind kind;
    struct commit_item *items;      /* MSG_COMMITTED, owned */
    char run_id[ID_MAX];            /* MSG_RESUME; MSG_CHILD_ENDED: the child */
    bool is_retry;                  /* MSG_RESUME: after TR_RUN_RETRY */
    struct step_io_tag tag;         /* MSG_IO: the attempt whose request ended;
                                       MSG_CHILD_ENDED: the step attempt waiting */
    struct step_outcome out;        /* MSG_IO: its outcome (output owned) */
    enum sched_cluster_msg cluster; /* MSG_CLUSTER: what cluster.c says of run_id */
};

struct sched {
    struct durable *d;
    /* of struct sched_msg: producers the writer, callers and the I/O thread;
     * consumer the scheduler. Closed to stop it (engine_sched_stop): the
     * thread ends, and a message posted later is dropped. */
    struct queue inbox;
    /* scheduler thread only */
    struct run_state **buckets;
    size_t n_buckets;
    size_t n_runs;
    struct timer *heap;
    size_t n_heap;
    size_t cap_heap;
    uint64_t next_run_gen;
    struct commit_item **capture; /* sched_submit_start: where sched_submit()
                                     puts the one item a pure start produced,
                                     or NULL */
    struct step_io *io;           /* the I/O thread (steps/http.c): http_request transfers */
    struct step_pool *pool;       /* the step worker pool (steps/pool.c): blocking types */
    /* Runs not adopted because their definition did not load (a step type
     * not registered yet): tried again when a type is registered
     * (MSG_TYPES). Each id once. */
    char (*unresolved)[ID_MAX];
    size_t n_unresolved;
    bool retain_busy;  /* retain.c: a batch of deletions is being committed */
    struct flow *flow; /* concurrency limits (flow.c) */
};

/* run table (engine.c) */
struct run_state *sched_run_find(struct sched *s, const char *id);
struct run_state *sched_run_new(struct sched *s, const char *id, struct plan *plan,
                                const char *order_id, double order_amount, const char *input_json);
void sched_run_insert(struct sched *s, struct run_state *r);
void sched_run_drop(struct sched *s, const char *id);
void sched_run_reload_later(struct sched *s, struct run_state *r);

/* the step-lifecycle core (engine.c) */
void sched_submit(struct sched *s, struct commit_item *ci);
void sched_submit_start(struct sched *s, struct run_state *r, size_t i, int attempt);
void sched_submit_complete(struct sched *s, struct run_state *r, size_t i, json_t *output);
void sched_submit_failure(struct sched *s, struct run_state *r, size_t i, const char *code,
                          const char *msg);
void sched_submit_finish(struct sched *s, struct run_state *r, enum run_status status,
                         const char *error, const char *output_json);
void sched_check_finished(struct sched *s, struct run_state *r);
void sched_on_ready(struct sched *s, struct run_state *r, size_t i);
void sched_on_started(struct sched *s, struct run_state *r, size_t i);
/* A decision on waiting step i committed (t: its output_json). */
void sched_on_decided(struct sched *s, struct run_state *r, size_t i, const struct transition *t);
/* r is resumed (RUN_RESUME committed, or the store says so): what became
 * ready while it was paused starts, held timers are acted on. */
void sched_on_resumed(struct sched *s, struct run_state *r);

/* the timer heap (timers.c) */
void sched_timer_push(struct sched *s, const struct run_state *r, size_t step_idx,
                      enum timer_kind kind, int64_t due_ms);
struct timer sched_timer_pop(struct sched *s);
/* A TM_MAP_ITEM timer of r (map.c): t's due_ms, step_idx, item,
 * item_gen and item_timeout as given, the rest set here. */
void sched_timer_push_item(struct sched *s, const struct run_state *r, struct timer t);
/* A timer of no run (TM_RETAIN). */
void sched_timer_push_plain(struct sched *s, enum timer_kind kind, int64_t due_ms);

/* retention (retain.c): the first pass is armed before the scheduler
 * starts; a TM_RETAIN timer starts a batch, whose commit arms the next. */
void sched_retain_init(struct sched *s);
void sched_retain_due(struct sched *s);
void sched_retain_committed(struct sched *s, struct commit_item *ci);

/* adopting and recovering runs (recover.c) */
void sched_adopt_new(struct sched *s, struct commit_item *ci);
void sched_on_recovered(struct sched *s, struct run_state *r);
durable_code sched_adopt_run(struct sched *s, const struct run_record *rec, bool is_retry);
void sched_resume_run(struct sched *s, const char *run_id, bool is_retry);
/* A step type was registered: the runs kept in s->unresolved are resumed
 * (those whose definition still does not load are kept again). */
void sched_resume_unresolved(struct sched *s);
/* cluster.c's messages: a run claimed, a run of this node changed by a
 * caller (on any node), or the lease lost (forget every run). */
void sched_on_cluster(struct sched *s, enum sched_cluster_msg what, const char *run_id);

/* The run context {input, steps, run} of SPEC §3, a new reference (engine.c). */
json_t *sched_run_context(struct run_state *r);

/* map steps (map.c): step i of r is a map whose START committed (or was
 * restarted): its items are computed, those the store says settled in this
 * attempt are kept, the others run, at most max_concurrency at once. */
void sched_map_start(struct sched *s, struct run_state *r, size_t i);
/* r was resumed: its running map step i starts items again. */
void sched_map_resumed(struct sched *s, struct run_state *r, size_t i);
/* A TM_MAP_ITEM timer of r's running map step fired. */
void sched_map_timer(struct sched *s, struct run_state *r, const struct timer *t);
/* An item's http_request ended (m->tag.item > 0). */
void sched_map_io_done(struct sched *s, struct run_state *r, struct sched_msg *m);
/* Frees a map's memory (accepts NULL). */
void sched_map_free(struct map_exec *m);

/* How a child run ended; strings borrowed. */
struct child_end {
    const char *id;
    enum run_status status;
    const char *output_json; /* or NULL */
    const char *error;       /* or NULL */
};
/* A child run that item (index + 1) of r's map step i waits for ended
 * (children.c): the item settles, if it still waits (item_gen). */
void sched_map_child_ended(struct sched *s, struct run_state *r, size_t i, size_t item,
                           uint32_t item_gen, const struct child_end *e);

/* child runs (children.c) */
void sched_on_child_created(struct sched *s, struct commit_item *ci);
/* A code-first child the attempt m->tag waits for has ended (MSG_CHILD_ENDED). */
void sched_on_code_child_ended(struct sched *s, const struct sched_msg *m);
void sched_on_run_finished(struct sched *s, struct run_state *r, const struct transition *t);

/* concurrency limits (flow.c) */
struct flow *flow_new(void);
void flow_free(struct flow *f);
/* struct store's run_note: the held run's `waiting` member (any thread). */
void flow_note(void *ud, const char *run_id, struct dbuf *b);
/* struct store's step_note: a step held by its rate limit (any thread). */
void flow_step_note(void *ud, const char *run_id, const char *step_id, struct dbuf *b);
/* Run r was adopted (created, recovered, claimed, retried); started: it had
 * been admitted already (its status left pending), so it counts at once;
 * otherwise it is held until flow_pump admits it. */
void flow_on_adopt(struct sched *s, struct run_state *r, bool started, int64_t priority,
                   int64_t created_ms);
/* Run r leaves memory (sched_run_drop): its place is free. */
void flow_on_drop(struct sched *s, struct run_state *r);
/* Run r was resumed: a held one may be admitted now. */
void flow_on_resumed(struct sched *s, struct run_state *r);
/* Whether step i of r may start now under its rate limit (its own, else its
 * type's); false: a later place is reserved and a TM_RATE timer armed (the
 * step is rate_held). */
bool flow_rate_admit(struct sched *s, struct run_state *r, size_t i);
/* On a cluster: the store's answer to step i's TR_RATE_TAKE, its place
 * wait_ms from now (0: now). */
void flow_on_rate_taken(struct sched *s, struct run_state *r, size_t i, int64_t wait_ms);
/* TM_RATE: the reserved place of step i has come: it starts. */
void flow_rate_due(struct sched *s, struct run_state *r, size_t i);
/* A pass of claims begins (true) or ends: no run is admitted meanwhile. */
void flow_claims(struct sched *s, bool begin);
/* Admits held runs where their group has room; between batches of the
 * scheduler's messages, never during recovery. On a cluster a run is
 * admitted by its TR_RUN_ADMIT (the store counts every node's runs):
 * flow_on_admitted takes its answer. */
void flow_pump(struct sched *s);
void flow_on_admitted(struct sched *s, struct run_state *r, const struct transition_result *res);
/* On a cluster: a run of some group ended on some node (SCHED_FLOW): the
 * held runs are asked for again. */
void flow_wake(struct sched *s);

#endif
