/*
 * cluster.c - this node's part in a cluster of `durable serve` processes on
 * one shared database (store.h's struct store_cluster_ops; PostgreSQL).
 *
 * A run is executed by the node that owns it in the store. The node joins
 * at open (its name and lease: durable_options); runs it creates are its
 * own. A server (DURABLE_RECOVER_ALL) also takes over other nodes' runs;
 * an engine that executes only its own runs (`durable run`, the
 * operations on a database) claims only what its scheduler asks for. One
 * thread of its own,
 * `durable-cluster`, does all the cluster work:
 *   - the heartbeat, the only periodic work: renews the lease every third
 *     of it (and reaps nodes whose lease ran out, releasing their runs);
 *   - claims: at start, and whenever a wake-up says runs are unowned
 *     (STORE_WAKE_CLAIM), it claims them and hands each to the scheduler
 *     (only runs this process can execute: of JSON workflows, and of the
 *     code-first ones it registered, engine_cluster_code_workflows),
 *     which adopts it as recovery does (SCHED_CLAIMED);
 *   - releases: a run this process cannot execute (a code-first run
 *     created here, of a workflow it did not register) is released
 *     (engine_cluster_give), and the nodes are told, for one that can to
 *     claim it;
 *   - wake-ups: it polls the store's wake fd (LISTEN/NOTIFY), never the
 *     tables: a caller's decision, cancel or retry of a run, on any node,
 *     is announced to every node (STORE_WAKE_RUN), and the node that owns
 *     the run, or can claim it, has its scheduler reload it (SCHED_WAKE);
 *     a resume the scheduler asks for (engine_cluster_want) is claimed the
 *     same way, so a node never executes a run it does not own;
 *   - every node's events: a commit with events NOTIFYs durable_events
 *     with its last global id, and the thread hands the events since the
 *     last handed over (events_since) to the subscribers, in global id
 *     order, so a live stream (SSE) on any node shows every run and a
 *     stream resumed on another node with Last-Event-ID loses nothing. This
 *     node's own commits do not wait for that read: the writer hands their
 *     events over itself when they follow the last handed over (no other
 *     node committed in between: engine_cluster_publish), and the thread
 *     reads only when an announced id is past the last handed over. As
 *     the NOTIFY of this node's commit often comes before the writer has
 *     handed its events over, a read while the writer commits waits once
 *     for it (engine_cluster_committing): the writer wakes the thread if
 *     what was announced is still past what it handed over;
 *   - fencing itself: when no renewal has succeeded for most of the lease
 *     (the process was paused, the database unreachable) or a renewal finds
 *     the lease lost, the scheduler forgets every run (SCHED_FENCE) and the
 *     node joins again under a new epoch, which releases its old runs, then
 *     claims. Safety does not rest on this: every write of the executor
 *     checks ownership in its own transaction (store_apply's fence).
 *
 * Threads: the cluster operations run on the cluster thread only (and on
 * the opening and closing thread before it starts and after it is joined).
 * mu (a leaf) guards want and stop; efd wakes the thread's poll. pub_mu
 * guards last_gid, committing and deferred_gid, and is held while events
 * are handed to the subscribers
 * (by the cluster thread or the writer), so they are handed once each and
 * in order; it is taken before the subscribers' lock (subs_mu).
 */
#include "util/common.h"

#include "engine/engine.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define CLUSTER_LEASE_MS_DEFAULT 10000
/* Runs claimed per statement; claims repeat while they fill it. */
#define CLAIM_ROOM               64

/* Run ids, in the order added. */
struct id_list {
    char (*ids)[ID_MAX];
    size_t n;
    size_t cap;
};

static void ids_add(struct id_list *l, const char *id)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->ids = xrealloc(l->ids, l->cap * sizeof(*l->ids));
    }
    snprintf(l->ids[l->n++], ID_MAX, "%s", id);
}

/* Empties l into a list of its own, for the caller to go through and free. */
static struct id_list ids_take(struct id_list *l)
{
    struct id_list out = *l;

    *l = (struct id_list){ 0 };
    return out;
}

struct engine_cluster {
    struct durable *d;
    const struct store_cluster_ops *ops;
    pthread_t thread;
    bool started;
    int efd; /* eventfd: want or give has ids, or stop */
    pthread_mutex_t mu;
    struct id_list want; /* guarded by mu: runs to claim for the scheduler */
    struct id_list give; /* guarded by mu: runs to release, for others to claim */
    bool stop;           /* guarded by mu */
    /* the cluster thread's */
    struct store_lease lease;
    int64_t lease_ms;
    int64_t renewed_ms;   /* clock_mono_us / 1000 when the last good renewal was sent */
    bool fenced;          /* the scheduler forgot the runs; join again */
    bool claims;          /* a server (DURABLE_RECOVER_ALL): takes unowned runs and
                             the runs callers change; else only the runs it wants */
    bool claim;           /* look for unowned runs */
    bool claim_retry;     /* a claim failed: again after the next renewal */
    bool events;          /* events were committed: publish them */
    bool db_down;         /* the last renewal failed: said once, until one succeeds */
    int64_t notified_gid; /* the last event announced (INT64_MAX: unknown) */
    pthread_mutex_t pub_mu;
    int64_t last_gid;          /* guarded by pub_mu: the last event handed to the subscribers */
    bool committing;           /* guarded by pub_mu: the writer commits a batch */
    int64_t deferred_gid;      /* guarded by pub_mu: an announced id left for the writer's
                                  hand-over (0: none) */
    struct id_list retry;      /* runs whose claim failed: again after a renewal */
    struct id_list give_retry; /* runs whose release failed: likewise */
};

/* Logs a failed system call with errno's text. */
static void warn_errno(const char *what)
{
    char why[128];
    int e = errno;

    log_warn("cluster: %s failed: %s", what, err_errno(e, why, sizeof(why)));
}

static int64_t mono_ms(void)
{
    return clock_mono_us() / 1000;
}

durable_code engine_cluster_open(struct durable *d, const durable_options *opts, durable_error *err)
{
    const struct store_cluster_ops *ops = d->store->ops->cluster;
    struct engine_cluster *c;
    durable_code rc;

    if (!ops)
        return DURABLE_OK;
    c = xcalloc(1, sizeof(*c));
    c->d = d;
    c->ops = ops;
    c->lease_ms = opts->lease_ms > 0 ? opts->lease_ms : CLUSTER_LEASE_MS_DEFAULT;
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->pub_mu, NULL);
    d->cluster = c;
    if (c->efd < 0) {
        char why[128];
        int e = errno;
        return err_set(err, DURABLE_EIO, "could not make an eventfd: %s",
                       err_errno(e, why, sizeof(why)));
    }
    ops->set_node(d->store, opts->node_id, c->lease_ms);
    c->renewed_ms = mono_ms();
    rc = ops->join(d->store, &c->lease, err);
    if (rc == DURABLE_OK)
        log_info("node %s joined the cluster (epoch %lld, lease %lld ms)", c->lease.node_id,
                 (long long)c->lease.epoch, (long long)c->lease_ms);
    c->last_gid = c->lease.last_gid; /* before any other thread runs */
    c->claims = d->recovery == DURABLE_RECOVER_ALL;
    c->claim = c->claims;
    return rc;
}

static void poke(struct engine_cluster *c)
{
    uint64_t one = 1;

    if (write(c->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        warn_errno("waking the cluster thread");
}

void engine_cluster_code_workflows(struct durable *d, const char *const *ids, size_t n)
{
    d->cluster->ops->set_code_workflows(d->store, ids, n);
}

void engine_cluster_want(struct durable *d, const char *run_id)
{
    struct engine_cluster *c = d->cluster;

    pthread_mutex_lock(&c->mu);
    ids_add(&c->want, run_id);
    pthread_mutex_unlock(&c->mu);
    poke(c);
}

void engine_cluster_give(struct durable *d, const char *run_id)
{
    struct engine_cluster *c = d->cluster;

    pthread_mutex_lock(&c->mu);
    ids_add(&c->give, run_id);
    pthread_mutex_unlock(&c->mu);
    poke(c);
}

struct claim_batch {
    struct durable *d;
    int n;
};

/* claim's callback: the scheduler adopts the run. */
static durable_code hand_claimed(const struct run_record *r, void *ud)
{
    struct claim_batch *b = ud;

    engine_sched_cluster(b->d, SCHED_CLAIMED, r->id);
    b->n++;
    return DURABLE_OK;
}

/* Takes every unowned unfinished run it can, CLAIM_ROOM at a time; after a
 * failure, tries again after the next renewal. */
static void claim_all(struct engine_cluster *c)
{
    struct claim_batch b = { c->d, 0 };
    durable_error err = { 0 };
    int total = 0;

    c->claim = false;
    engine_sched_cluster(c->d, SCHED_CLAIMS_BEGIN, NULL);
    do {
        b.n = 0;
        if (c->ops->claim(c->d->store, CLAIM_ROOM, hand_claimed, &b, &err) != DURABLE_OK) {
            log_warn("cluster: could not claim runs: %s", err.msg);
            c->claim_retry = true;
            break;
        }
        total += b.n;
    } while (b.n == CLAIM_ROOM);
    engine_sched_cluster(c->d, SCHED_CLAIMS_END, NULL);
    if (total > 0)
        log_info("node %s claimed %d runs", c->lease.node_id, total);
}

/* A run changed by a caller, or wanted by the scheduler (a run it dropped
 * when the database failed a write, say): reloaded by the scheduler when
 * this node owns it or could claim it. A claim the database failed is
 * tried again after the next renewal. */
static void claim_one(struct engine_cluster *c, const char *run_id)
{
    durable_error err = { 0 };
    bool owned = false;

    if (c->ops->claim_run(c->d->store, run_id, &owned, &err) != DURABLE_OK) {
        if (!c->db_down)
            log_warn("cluster: could not claim run %s: %s", run_id, err.msg);
        ids_add(&c->retry, run_id);
    } else if (owned) {
        engine_sched_cluster(c->d, SCHED_WAKE, run_id);
    }
}

/* A run this process cannot execute (a code-first workflow it did not
 * register) is released for a node that can (the release NOTIFYs the
 * nodes, whose claims take only runs they can execute). A release the
 * database failed is tried again after the next renewal. */
static void give_one(struct engine_cluster *c, const char *run_id)
{
    durable_error err = { 0 };

    if (c->ops->release(c->d->store, run_id, &err) != DURABLE_OK) {
        if (!c->db_down)
            log_warn("cluster: could not release run %s: %s", run_id, err.msg);
        ids_add(&c->give_retry, run_id);
    }
}

/* The claims and releases that failed, again (after a renewal: the
 * database answers). After a fence nothing is left to do: joining again
 * released every run of the node. */
static void claim_retries(struct engine_cluster *c)
{
    struct id_list claims = ids_take(&c->retry), gives = ids_take(&c->give_retry);

    for (size_t i = 0; i < claims.n && !c->fenced; i++)
        claim_one(c, claims.ids[i]);
    for (size_t i = 0; i < gives.n && !c->fenced; i++)
        give_one(c, gives.ids[i]);
    free(claims.ids);
    free(gives.ids);
}

static void on_wake(enum store_wake w, const char *run_id, void *ud)
{
    struct engine_cluster *c = ud;

    if (w == STORE_WAKE_EVENTS) {
        /* run_id: the last id of the commit, as text (NULL: unknown) */
        char *end = NULL;
        long long gid = run_id ? strtoll(run_id, &end, 10) : 0;
        if (!run_id || end == run_id || *end != '\0' || gid <= 0)
            gid = INT64_MAX;
        if (!c->events || gid > c->notified_gid)
            c->notified_gid = gid;
        c->events = true;
        return;
    }
    if (w == STORE_WAKE_FLOW) {
        engine_sched_cluster(c->d, SCHED_FLOW, NULL);
        return;
    }
    if (!c->claims)
        return;
    if (w == STORE_WAKE_RUN && run_id && !c->fenced)
        claim_one(c, run_id);
    else
        c->claim = true;
}

static void fence(struct engine_cluster *c, const char *why)
{
    if (c->fenced)
        return;
    log_warn("node %s fences itself (%s): it forgets its runs and joins again", c->lease.node_id,
             why);
    c->fenced = true;
    /* joining again releases them: they are claimed as any */
    c->retry.n = 0;
    c->give_retry.n = 0;
    engine_sched_cluster(c->d, SCHED_FENCE, NULL);
}

/* Renews the lease; fences the node once it can no longer be sure of it. */
static void heartbeat(struct engine_cluster *c)
{
    durable_error err = { 0 };
    int64_t sent = mono_ms();
    durable_code rc;

    if (!c->fenced && sent - c->renewed_ms > c->lease_ms - c->lease_ms / 6)
        fence(c, "its lease was not renewed in time");
    if (c->fenced) {
        rc = c->ops->join(c->d->store, &c->lease, &err);
        if (rc == DURABLE_OK) {
            log_info("node %s joined again (epoch %lld)", c->lease.node_id,
                     (long long)c->lease.epoch);
            c->fenced = false;
            c->renewed_ms = sent;
            c->claim = c->claims;
        }
    } else {
        rc = c->ops->heartbeat(c->d->store, &c->lease, &err);
        if (rc == DURABLE_OK) {
            c->renewed_ms = sent;
            c->claim = c->claims && (c->claim || c->claim_retry);
            c->claim_retry = false;
        } else if (rc == DURABLE_ECONFLICT)
            fence(c, err.msg);
    }
    if (rc == DURABLE_OK) {
        if (c->db_down) {
            log_info("node %s reaches the database again", c->lease.node_id);
            /* It takes writes again: /health stops reporting the writer's
             * failure of the outage, before the writer has work. */
            engine_health_set_writer_error(c->d, NULL);
        }
        c->db_down = false;
        if (!c->fenced)
            claim_retries(c);
        return;
    }
    /* Said once per outage: the node tries again at every heartbeat. */
    if (!c->db_down || rc == DURABLE_ECONFLICT)
        log_warn("cluster: %s", err.msg);
    c->db_down = rc != DURABLE_ECONFLICT;
    err_clear(&err);
    /* A broken connection is reset here (and the hints lost meanwhile
     * make it look for work). */
    if (c->ops->wake_drain(c->d->store, on_wake, c, &err) != DURABLE_OK && !c->db_down)
        log_warn("cluster: %s", err.msg);
}

/* Hands every node's events committed since the last ones to the
 * subscribers (SSE, `durable run`), in global id order: ids are given out
 * in commit order with no gap, so a read never skips one committed later. */
static void publish_events(struct engine_cluster *c)
{
    struct store_events ev = { 0 };
    durable_error err = { 0 };
    int64_t after;

    pthread_mutex_lock(&c->pub_mu);
    after = c->last_gid;
    if (c->notified_gid > after && c->committing && c->deferred_gid == 0) {
        /* Likely the writer's own commit: it hands the events over, or
         * wakes this thread (once; the next call reads). */
        c->deferred_gid = c->notified_gid;
        pthread_mutex_unlock(&c->pub_mu);
        return;
    }
    c->deferred_gid = 0;
    pthread_mutex_unlock(&c->pub_mu);
    c->events = false;
    if (c->notified_gid <= after)
        return; /* handed over already, by the writer */
    do {
        size_t skip = 0;
        store_events_clear(&ev);
        if (store_events_since_records(c->d->store, after, STORE_EVENTS_MAX, &ev, &err) !=
            DURABLE_OK) {
            if (!c->db_down)
                log_warn("cluster: could not read events: %s", err.msg);
            c->events = true; /* again at the next wake-up */
            c->notified_gid = INT64_MAX;
            break;
        }
        if (ev.n > 0)
            after = ev.items[ev.n - 1].global_id;
        /* Those the writer handed over meanwhile are skipped: the rest
         * follow the last one handed over (ids have no gap). */
        pthread_mutex_lock(&c->pub_mu);
        while (skip < ev.n && ev.items[skip].global_id <= c->last_gid)
            skip++;
        if (skip < ev.n) {
            struct store_events rest = { .items = ev.items + skip, .n = ev.n - skip };
            c->last_gid = ev.items[ev.n - 1].global_id;
            engine_events_publish(c->d, &rest, true);
        }
        pthread_mutex_unlock(&c->pub_mu);
    } while (ev.n == STORE_EVENTS_MAX);
    store_events_release(&ev);
}

void engine_cluster_committing(struct durable *d)
{
    struct engine_cluster *c = d->cluster;

    pthread_mutex_lock(&c->pub_mu);
    c->committing = true;
    pthread_mutex_unlock(&c->pub_mu);
}

void engine_cluster_publish(struct durable *d, const struct store_events *ev)
{
    struct engine_cluster *c = d->cluster;
    bool follows = ev && ev->n > 0, wake;

    pthread_mutex_lock(&c->pub_mu);
    for (size_t i = 0; follows && i < ev->n; i++)
        follows = ev->items[i].global_id == c->last_gid + 1 + (int64_t)i;
    if (follows)
        c->last_gid = ev->items[ev->n - 1].global_id;
    if (ev)
        engine_events_publish(d, ev, follows);
    c->committing = false;
    /* What the thread left to this hand-over: done, or for it to read. */
    wake = c->deferred_gid > c->last_gid;
    if (!wake)
        c->deferred_gid = 0;
    pthread_mutex_unlock(&c->pub_mu);
    if (wake)
        poke(c);
}

/* Takes the scheduler's requests; false when the thread must stop. */
static bool take_wanted(struct engine_cluster *c)
{
    struct id_list want, give;
    uint64_t v;
    bool stop;

    if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        warn_errno("reading the eventfd");
    pthread_mutex_lock(&c->mu);
    want = ids_take(&c->want);
    give = ids_take(&c->give);
    stop = c->stop;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < want.n && !stop && !c->fenced; i++)
        claim_one(c, want.ids[i]);
    for (size_t i = 0; i < give.n && !stop && !c->fenced; i++)
        give_one(c, give.ids[i]);
    free(want.ids);
    free(give.ids);
    return !stop;
}

/* The time until the next heartbeat: a third of the lease; within a
 * second when fenced or cut off, so that a short outage of the database
 * does not outlast the lease. */
static int64_t beat_interval(const struct engine_cluster *c)
{
    int64_t every = c->lease_ms / 3;

    return (c->fenced || c->db_down) && every > 1000 ? 1000 : every;
}

/* Everything after a wake-up or a timeout: the heartbeat when due, claims,
 * notifications read (always: one, our own heartbeat's say, may have been
 * read off the socket with a statement's result, and poll would not see
 * it; never while disconnected), and events published. */
static void cluster_step(struct engine_cluster *c, int wake_fd, int64_t *next_beat)
{
    durable_error err = { 0 };

    if (mono_ms() >= *next_beat) {
        heartbeat(c);
        *next_beat = mono_ms() + beat_interval(c);
    }
    if (c->claim && !c->fenced)
        claim_all(c);
    if (wake_fd >= 0 && c->ops->wake_drain(c->d->store, on_wake, c, &err) != DURABLE_OK)
        log_warn("cluster: %s", err.msg);
    if (c->events)
        publish_events(c);
}

static void *cluster_main(void *arg)
{
    struct engine_cluster *c = arg;
    int64_t next_beat = mono_ms() + c->lease_ms / 3;

    pthread_setname_np(pthread_self(), "durable-cluster");
    for (;;) {
        /* -1 while the connection is down: it is reset by the heartbeat. */
        int wake_fd = c->ops->wake_fd(c->d->store);
        struct pollfd p[2] = { { .fd = c->efd, .events = POLLIN },
                               { .fd = wake_fd, .events = POLLIN } };
        int64_t wait = next_beat - mono_ms();

        if (poll(p, 2, c->claim && !c->fenced ? 0 : (int)(wait > 0 ? wait : 0)) < 0 &&
            errno != EINTR)
            warn_errno("poll");
        if (p[0].revents && !take_wanted(c))
            break;
        cluster_step(c, wake_fd, &next_beat);
    }
    return NULL;
}

void engine_cluster_start(struct durable *d)
{
    struct engine_cluster *c = d->cluster;

    if (!c)
        return;
    if (pthread_create(&c->thread, NULL, cluster_main, c) != 0) {
        log_error("could not start the cluster thread: runs of other nodes are not taken over");
        return;
    }
    c->started = true;
}

void engine_cluster_stop(struct durable *d)
{
    struct engine_cluster *c = d->cluster;

    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_mutex_unlock(&c->mu);
    poke(c);
    pthread_join(c->thread, NULL);
    c->started = false;
}

void engine_cluster_close(struct durable *d)
{
    struct engine_cluster *c = d->cluster;

    if (!c)
        return;
    engine_cluster_stop(d);
    if (d->store)
        c->ops->leave(d->store); /* releases its runs: the others claim them at once */
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->pub_mu);
    free(c->want.ids);
    free(c->give.ids);
    free(c->retry.ids);
    free(c->give_retry.ids);
    free(c);
    d->cluster = NULL;
}
