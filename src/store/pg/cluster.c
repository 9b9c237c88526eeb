/*
 * cluster.c - many nodes on one database: a node's lease, the claim of
 * unowned runs, releases and wake-ups (store.h's struct store_cluster_ops).
 *
 * A node is a row of nodes: join inserts it, or bumps its epoch when the id
 * is known (a restart is a new incarnation, and the runs of the old one are
 * released at once), and reaps as heartbeat does. heartbeat renews the lease and reaps: nodes whose
 * lease ran out become 'dead' and their runs are released (owner NULL) with
 * a NOTIFY durable_work, so the survivors claim them. A run's owner is
 * (owner_node, owner_epoch): the node and its epoch when it claimed the run.
 * A node that was declared dead and joined again has a new epoch, so both a
 * takeover and a rejoin change the pair: the writer fences with it (every
 * batch will lock its runs FOR SHARE where the pair is its own).
 *
 * Everything runs on the cluster connection (cl), opened by join, which
 * also LISTENs on durable_work, durable_run, durable_events (each commit
 * with events, write.c, while another node is alive) and durable_nodes
 * (a join): wake_fd is its socket and wake_drain reads the notifications.
 * A node alone (its join and each heartbeat count the others) wakes
 * nobody with its commits: each such NOTIFY woke its own cluster thread
 * and the server process listening for it (W1 on PostgreSQL: 0.07 ms of
 * a 0.5 ms step). A join's NOTIFY durable_nodes makes the others tell of
 * their events again at once, first of those committed untold.
 * Notifications are hints, lost while disconnected: when the connection
 * is found broken, wake_drain reconnects, listens again and reports a
 * claim wake-up, so the node catches up.
 *
 * Thread rules: one thread at a time calls these (the engine's); the lease
 * fields of struct pg_store are that thread's.
 */
#include "util/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_int.h"

/* A run is unfinished while pending, running, waiting or paused. */
#define UNFINISHED \
    "(status = 'pending' OR status = 'running' OR status = 'waiting' OR status = 'paused')"

/* The node's lease holds: its row is alive at its epoch. */
#define LEASE_HELD                                                     \
    "EXISTS (SELECT 1 FROM nodes WHERE id = $1 AND epoch = $2::bigint" \
    " AND state = 'alive' AND lease_until >= durable_now_ms())"

/* $1 node id, $2 epoch, $3 lease ms. */
static const char sql_join[] =
        "INSERT INTO nodes (id, epoch, state, lease_until, heartbeat_at, joined_at)"
        " VALUES ($1, 1, 'alive', durable_now_ms() + $2::bigint, durable_now_ms(),"
        " durable_now_ms())"
        " ON CONFLICT (id) DO UPDATE SET epoch = nodes.epoch + 1, state = 'alive',"
        " lease_until = excluded.lease_until, heartbeat_at = excluded.heartbeat_at,"
        " joined_at = excluded.joined_at"
        " RETURNING epoch, lease_until";
/* The runs an earlier incarnation of node $1 (not epoch $2) still owns. */
static const char sql_release_old[] =
        "WITH r AS (UPDATE runs SET owner_node = NULL WHERE owner_node = $1"
        " AND owner_epoch <> $2::bigint RETURNING 1)"
        " SELECT count(*) FROM r";
static const char sql_renew[] = "UPDATE nodes SET lease_until = durable_now_ms() + $3::bigint,"
                                " heartbeat_at = durable_now_ms()"
                                " WHERE id = $1 AND epoch = $2::bigint AND state = 'alive'"
                                " AND lease_until >= durable_now_ms()"
                                " RETURNING lease_until";
/* Reaps the nodes whose lease ran out, releasing their runs. */
static const char sql_reap[] =
        "WITH dead AS (UPDATE nodes SET state = 'dead' WHERE state = 'alive'"
        " AND lease_until < durable_now_ms() RETURNING id),"
        " r AS (UPDATE runs SET owner_node = NULL WHERE owner_node IN (SELECT id FROM dead)"
        " RETURNING 1)"
        " SELECT count(*) FROM r";
/* A run this node can execute: of a JSON workflow, or of a code-first one
 * (its definition has code_version) among $4, those this process
 * registered: a node never holds a run nobody here can execute. */
#define EXECUTABLE                                                                 \
    "(runs.workflow_id = ANY($4::text[]) OR NOT EXISTS (SELECT 1 FROM workflows w" \
    " WHERE w.id = runs.workflow_id AND w.definition::jsonb ? 'code_version'))"
/* $1 node, $2 epoch, $3 room, $4 code-first workflows. */
static const char sql_claim[] =
        "UPDATE runs SET owner_node = $1, owner_epoch = $2::bigint"
        " WHERE id IN (SELECT id FROM runs WHERE owner_node IS NULL AND " UNFINISHED
        " AND " EXECUTABLE " ORDER BY created_at, id LIMIT $3::integer FOR UPDATE SKIP LOCKED)"
        " AND " LEASE_HELD " RETURNING id, created_at";
/* $1 node, $2 epoch, $3 run id, $4 code-first workflows: takes the run when
 * unowned, unfinished and executable here; answers a row too when this
 * incarnation owns it already. */
static const char sql_claim_run[] =
        "UPDATE runs SET owner_node = $1, owner_epoch = $2::bigint WHERE id = $3"
        " AND ((owner_node IS NULL AND " UNFINISHED " AND " EXECUTABLE ")"
        " OR (owner_node = $1 AND owner_epoch = $2::bigint))"
        " AND " LEASE_HELD " RETURNING id";
/* $1 node, $2 epoch, $3 run id. */
static const char sql_release[] =
        "UPDATE runs SET owner_node = NULL WHERE id = $3 AND owner_node = $1"
        " AND owner_epoch = $2::bigint";
static const char sql_release_all[] =
        "WITH r AS (UPDATE runs SET owner_node = NULL WHERE owner_node = $1"
        " AND owner_epoch = $2::bigint RETURNING 1)"
        " SELECT count(*) FROM r";
static const char sql_leave[] =
        "UPDATE nodes SET state = 'left', lease_until = 0 WHERE id = $1 AND epoch = $2::bigint";
static const char sql_last_gid[] = "SELECT gid FROM event_counter";
static const char sql_notify_work[] = "SELECT pg_notify('" PG_CHANNEL_WORK "', '')";
static const char sql_notify_join[] = "SELECT pg_notify('" PG_CHANNEL_NODES "', '')";
/* The other nodes alive ($1 this node, $2 its epoch). */
static const char sql_others[] = "SELECT count(*) FROM nodes WHERE state = 'alive' AND id <> $1"
                                 " AND $2::bigint > 0";

/* The node's id, epoch and lease as text parameters $1, $2, $3; a claim's
 * $4 (code_ids, owned). */
struct node_params {
    char epoch[24];
    char lease[24];
    const char *v[4];
    char *code_ids;
};

/* Sets p's $4: the code-first workflows of the process (a copy). */
static void code_ids_param(struct node_params *p, struct pg_store *s)
{
    pthread_mutex_lock(&s->code_mu);
    p->code_ids = xstrdup(s->code_ids);
    pthread_mutex_unlock(&s->code_mu);
    p->v[3] = p->code_ids;
}

static void node_params_init(struct node_params *p, const struct pg_store *s)
{
    snprintf(p->epoch, sizeof(p->epoch), "%lld", (long long)s->epoch);
    snprintf(p->lease, sizeof(p->lease), "%lld", (long long)s->lease_ms);
    p->v[0] = s->node_id;
    p->v[1] = p->epoch;
    p->v[2] = p->lease;
    p->v[3] = NULL;
    p->code_ids = NULL;
}

/* Runs a statement answering one count (sql_release_old, sql_reap ...) on
 * the cluster connection, with the node's id and epoch as $1, $2 when p. */
static durable_code run_count(struct pg_store *s, const char *what, const char *sql,
                              const struct node_params *p, int64_t *out, durable_error *err)
{
    PGresult *r = pg_exec(s->cl, what, sql, p ? 2 : 0, p ? p->v : NULL, err);

    if (!r)
        return DURABLE_EIO;
    *out = PQntuples(r) > 0 ? pg_cell_int64(r, 0, 0) : 0;
    PQclear(r);
    return DURABLE_OK;
}

/* The cluster connection's session, again after a reconnect: half a lease
 * as the longest it may sit idle inside a transaction, so that a node cut
 * off mid-heartbeat (a silent partition, SIGSTOP) holds the locks of its
 * row in nodes, or of runs it claims, no longer than that: the others'
 * reap and claims wait for them. Then the LISTENs of the wake-ups. */
static durable_code cl_session(struct pg_store *s, durable_error *err)
{
    PGconn *c = s->cl;
    char idle[24];
    const char *params[1] = { idle };
    durable_code rc;

    snprintf(idle, sizeof(idle), "%lld", (long long)(s->lease_ms / 2));
    rc = pg_run(c, "set the cluster session",
                "SELECT set_config('idle_in_transaction_session_timeout', $1, false)", 1, params,
                err);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "listen for wake-ups", "LISTEN " PG_CHANNEL_WORK, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "listen for wake-ups", "LISTEN " PG_CHANNEL_RUN, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "listen for wake-ups", "LISTEN " PG_CHANNEL_EVENTS, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "listen for wake-ups", "LISTEN " PG_CHANNEL_FLOW, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = pg_run(c, "listen for wake-ups", "LISTEN " PG_CHANNEL_NODES, 0, NULL, err);
    return rc;
}

/* Commits (or, after an error, rolls back) the cluster connection's
 * transaction; keeps the first error. */
static durable_code end_tx(PGconn *c, durable_code rc, durable_error *err)
{
    if (rc == DURABLE_OK)
        return pg_run(c, "commit", "COMMIT", 0, NULL, err);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    return rc;
}

/* Counts the other nodes alive (after a reap): while there are none, the
 * writer's commits wake nobody (others_alive). */
static durable_code count_others(struct pg_store *s, const struct node_params *p,
                                 durable_error *err)
{
    int64_t n = 1;
    durable_code rc = run_count(s, "count the other nodes", sql_others, p, &n, err);

    if (rc == DURABLE_OK)
        atomic_store(&s->others_alive, n > 0);
    return rc;
}

/* The join's statements, in the open transaction of cl. */
static durable_code join_tx(struct pg_store *s, struct store_lease *out, durable_error *err)
{
    struct node_params p;
    PGresult *r;
    int64_t released = 0;
    durable_code rc;

    node_params_init(&p, s);
    p.v[1] = p.lease;
    r = pg_exec(s->cl, "join the cluster", sql_join, 2, p.v, err);
    if (!r)
        return DURABLE_EIO;
    s->epoch = pg_cell_int64(r, 0, 0);
    out->expires_at_ms = pg_cell_int64(r, 0, 1);
    PQclear(r);
    node_params_init(&p, s);
    rc = run_count(s, "release the runs of an earlier start", sql_release_old, &p, &released, err);
    /* Nodes whose lease ran out (this node's earlier start under another
     * name, say) are reaped now rather than at the first heartbeat. */
    if (rc == DURABLE_OK) {
        int64_t reaped = 0;
        rc = run_count(s, "reap dead nodes", sql_reap, NULL, &reaped, err);
        released += reaped;
    }
    if (rc == DURABLE_OK)
        rc = run_count(s, "read the last event id", sql_last_gid, NULL, &out->last_gid, err);
    if (rc == DURABLE_OK && released > 0)
        rc = pg_run(s->cl, "announce released runs", sql_notify_work, 0, NULL, err);
    /* The others learn of this node at once, and tell it of their events. */
    if (rc == DURABLE_OK)
        rc = pg_run(s->cl, "announce the join", sql_notify_join, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = count_others(s, &p, err);
    snprintf(out->node_id, sizeof(out->node_id), "%s", s->node_id);
    out->epoch = s->epoch;
    return rc;
}

static durable_code pg_join(struct store *base, struct store_lease *out, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    durable_code rc = DURABLE_OK;

    if (!s->cl)
        rc = pg_connect(s->conninfo, &s->cl, err);
    if (rc == DURABLE_OK)
        rc = cl_session(s, err);
    if (rc == DURABLE_OK)
        rc = pg_run(s->cl, "join the cluster", "BEGIN", 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = end_tx(s->cl, join_tx(s, out, err), err);
    if (rc != DURABLE_OK)
        s->epoch = 0;
    atomic_store(&s->owner_epoch, s->epoch); /* the writer's new runs are ours */
    return rc;
}

/* Renews the lease (DURABLE_ECONFLICT when it was lost: the node must
 * forget its runs and join again), then reaps expired nodes. */
static durable_code heartbeat_tx(struct pg_store *s, struct store_lease *l, durable_error *err)
{
    struct node_params p;
    PGresult *r;
    int64_t released = 0;
    durable_code rc;

    node_params_init(&p, s);
    r = pg_exec(s->cl, "renew the lease", sql_renew, 3, p.v, err);
    if (!r)
        return DURABLE_EIO;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return err_set(err, DURABLE_ECONFLICT,
                       "node \"%s\" lost its lease (epoch %lld): it was declared dead", s->node_id,
                       (long long)s->epoch);
    }
    l->expires_at_ms = pg_cell_int64(r, 0, 0);
    PQclear(r);
    rc = run_count(s, "reap dead nodes", sql_reap, NULL, &released, err);
    if (rc == DURABLE_OK && released > 0)
        rc = pg_run(s->cl, "announce released runs", sql_notify_work, 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = count_others(s, &p, err);
    return rc;
}

static durable_code pg_heartbeat(struct store *base, struct store_lease *l, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    durable_code rc;

    if (!s->cl || s->epoch == 0)
        return err_set(err, DURABLE_ECONFLICT, "node \"%s\" has not joined", s->node_id);
    rc = pg_run(s->cl, "renew the lease", "BEGIN", 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = end_tx(s->cl, heartbeat_tx(s, l, err), err);
    return rc;
}

durable_code pg_claim_ids(struct store *base, int room, char (*ids)[ID_MAX], int *n,
                          durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct node_params p;
    PGresult *r;

    *n = 0;
    if (!s->cl || s->epoch == 0)
        return err_set(err, DURABLE_ECONFLICT, "node \"%s\" has not joined", s->node_id);
    if (room <= 0)
        return DURABLE_OK;
    node_params_init(&p, s);
    snprintf(p.lease, sizeof(p.lease), "%d", room);
    code_ids_param(&p, s);
    r = pg_exec(s->cl, "claim runs", sql_claim, 4, p.v, err);
    free(p.code_ids);
    if (!r)
        return DURABLE_EIO;
    for (int i = 0; i < PQntuples(r) && i < room; i++)
        snprintf(ids[(*n)++], ID_MAX, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return DURABLE_OK;
}

/* Claims, then loads each run claimed (pg_run_load, one round trip each,
 * on a read connection: the claim has committed) and hands it to fn. */
static durable_code pg_claim(struct store *base, int room,
                             durable_code (*fn)(const struct run_record *r, void *ud), void *ud,
                             durable_error *err)
{
    char(*ids)[ID_MAX] = NULL;
    int n = 0;
    durable_code rc = DURABLE_OK;

    if (room <= 0)
        return DURABLE_OK;
    ids = xcalloc((size_t)room, sizeof(*ids));
    rc = pg_claim_ids(base, room, ids, &n, err);
    for (int i = 0; rc == DURABLE_OK && i < n; i++) {
        struct run_record rec = { 0 };
        rc = pg_run_load(base, ids[i], &rec, err);
        if (rc == DURABLE_OK)
            rc = fn(&rec, ud);
        run_record_release(&rec);
    }
    free(ids);
    return rc;
}

static durable_code pg_claim_run(struct store *base, const char *run_id, bool *out_owned,
                                 durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct node_params p;
    PGresult *r;

    *out_owned = false;
    if (!s->cl || s->epoch == 0)
        return err_set(err, DURABLE_ECONFLICT, "node \"%s\" has not joined", s->node_id);
    node_params_init(&p, s);
    p.v[2] = run_id;
    code_ids_param(&p, s);
    r = pg_exec(s->cl, "claim a run", sql_claim_run, 4, p.v, err);
    free(p.code_ids);
    if (!r)
        return DURABLE_EIO;
    *out_owned = PQntuples(r) > 0;
    PQclear(r);
    return DURABLE_OK;
}

static durable_code pg_release(struct store *base, const char *run_id, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct node_params p;
    durable_code rc;

    if (!s->cl || s->epoch == 0)
        return err_set(err, DURABLE_ECONFLICT, "node \"%s\" has not joined", s->node_id);
    node_params_init(&p, s);
    p.v[2] = run_id;
    rc = pg_run(s->cl, "release a run", "BEGIN", 0, NULL, err);
    if (rc == DURABLE_OK)
        rc = pg_run(s->cl, "release a run", sql_release, 3, p.v, err);
    if (rc == DURABLE_OK)
        rc = pg_run(s->cl, "announce a released run", sql_notify_work, 0, NULL, err);
    return end_tx(s->cl, rc, err);
}

static int pg_wake_fd(struct store *base)
{
    struct pg_store *s = pg_of(base);

    /* None while disconnected: a failed reconnection may leave a socket
     * that polls readable forever. */
    return s->cl && PQstatus(s->cl) == CONNECTION_OK ? PQsocket(s->cl) : -1;
}

/* The connection broke: connects again and listens again. */
static durable_code relisten(struct pg_store *s, durable_error *err)
{
    PQreset(s->cl);
    if (PQstatus(s->cl) != CONNECTION_OK) {
        return err_set(err, DURABLE_EIO, "could not reconnect to the database: %s",
                       PQerrorMessage(s->cl));
    }
    return cl_session(s, err);
}

/* Another node joined (the NOTIFY durable_nodes of a server process be_pid):
 * the writer tells of its events again, and the events committed untold
 * so far are told now (those of a transaction under way at this moment are
 * told by the writer after its commit, pg_write_commit). */
static void joined(struct pg_store *s, int be_pid)
{
    if (be_pid == PQbackendPID(s->cl) || atomic_exchange(&s->others_alive, true))
        return; /* this node's own join, or the others were known */
    pg_tell_events(s->cl);
}

static durable_code pg_wake_drain(struct store *base,
                                  void (*fn)(enum store_wake w, const char *run_id, void *ud),
                                  void *ud, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    PGnotify *n;

    if (!s->cl)
        return err_set(err, DURABLE_ECONFLICT, "node \"%s\" has not joined", s->node_id);
    if (!PQconsumeInput(s->cl) || PQstatus(s->cl) != CONNECTION_OK) {
        durable_code rc = relisten(s, err);
        /* Whatever was announced meanwhile is lost: look for work; a node
         * may have joined. */
        if (rc == DURABLE_OK) {
            joined(s, 0);
            fn(STORE_WAKE_CLAIM, NULL, ud);
            fn(STORE_WAKE_EVENTS, NULL, ud);
            fn(STORE_WAKE_FLOW, NULL, ud);
        }
        return rc;
    }
    while ((n = PQnotifies(s->cl)) != NULL) {
        if (strcmp(n->relname, PG_CHANNEL_NODES) == 0)
            joined(s, n->be_pid);
        else if (strcmp(n->relname, PG_CHANNEL_RUN) == 0)
            fn(STORE_WAKE_RUN, n->extra, ud);
        else if (strcmp(n->relname, PG_CHANNEL_EVENTS) == 0)
            fn(STORE_WAKE_EVENTS, n->extra, ud); /* the commit's last gid */
        else if (strcmp(n->relname, PG_CHANNEL_FLOW) == 0)
            fn(STORE_WAKE_FLOW, NULL, ud);
        else
            fn(STORE_WAKE_CLAIM, NULL, ud);
        PQfreemem(n);
    }
    return DURABLE_OK;
}

/* Releases every run of this incarnation and gives the lease up, so other
 * nodes claim at once instead of after the lease; then disconnects. */
static void pg_leave(struct store *base)
{
    struct pg_store *s = pg_of(base);
    struct node_params p;
    durable_error err = { 0 };
    int64_t released = 0;
    durable_code rc = DURABLE_OK;

    if (!s->cl)
        return;
    atomic_store(&s->owner_epoch, 0);
    if (s->epoch > 0) {
        node_params_init(&p, s);
        rc = pg_run(s->cl, "leave the cluster", "BEGIN", 0, NULL, &err);
        if (rc == DURABLE_OK) {
            rc = run_count(s, "release this node's runs", sql_release_all, &p, &released, &err);
        }
        if (rc == DURABLE_OK)
            rc = pg_run(s->cl, "leave the cluster", sql_leave, 2, p.v, &err);
        if (rc == DURABLE_OK && released > 0)
            rc = pg_run(s->cl, "announce released runs", sql_notify_work, 0, NULL, &err);
        rc = end_tx(s->cl, rc, &err);
    }
    if (rc != DURABLE_OK)
        log_warn("node \"%s\" left without releasing its runs: %s", s->node_id, err.msg);
    PQfinish(s->cl);
    s->cl = NULL;
    s->epoch = 0;
}

const struct store_cluster_ops pg_cluster_ops = {
    .set_node = pg_store_set_node,
    .set_code_workflows = pg_store_set_code_workflows,
    .join = pg_join,
    .heartbeat = pg_heartbeat,
    .claim = pg_claim,
    .claim_run = pg_claim_run,
    .release = pg_release,
    .wake_fd = pg_wake_fd,
    .wake_drain = pg_wake_drain,
    .leave = pg_leave,
};
