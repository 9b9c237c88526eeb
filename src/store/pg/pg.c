/*
 * pg.c - the PostgreSQL store's base: locations, connections (the writer's
 * and the read pool), opening with the schema brought up to date,
 * transactions on the write connection, the durability in force, ping, and
 * pg_read, the one way reads reach the server (pipelined, one round trip).
 *
 * A location is "postgres://USER@HOST:PORT/DB", "postgresql://..." or
 * "postgresql:KEY=VALUE ..." (a libpq conninfo). store_open's migration runs
 * on the write connection under an advisory lock (schema.c), so several
 * nodes may start at once. DURABLE_DURABILITY_PROCESS sets
 * synchronous_commit off on the write connection: a commit survives the
 * node's crash (the server has it) but not the server's.
 *
 * Thread rules (pg_int.h): the write connection is the writer thread's; a
 * read connection is one thread's between pg_reader_take and pg_reader_put.
 * A connection found broken (the server restarted) is reset before use:
 * the writer's at tx_begin, a reader's when taken.
 */
#include "util/common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/pg/pg_int.h"

/* ---- locations and connections ---- */

durable_code pg_location_conninfo(const char *location, char **out, durable_error *err)
{
    const char *conninfo = location;
    char *why = NULL;
    PQconninfoOption *opts;

    *out = NULL;
    if (strncmp(location, "postgresql:", 11) == 0 && strncmp(location, "postgresql://", 13) != 0)
        conninfo = location + 11;
    else if (strncmp(location, "postgres://", 11) != 0 &&
             strncmp(location, "postgresql://", 13) != 0)
        return err_set(err, DURABLE_EINVAL, "\"%s\" is not a postgresql location", location);
    opts = PQconninfoParse(conninfo, &why);
    if (!opts) {
        durable_code rc = err_set(err, DURABLE_EINVAL, "invalid database url \"%s\": %s", location,
                                  why ? why : "out of memory");
        PQfreemem(why);
        return rc;
    }
    PQconninfoFree(opts);
    *out = xstrdup(conninfo);
    return DURABLE_OK;
}

/* The server's notices (NOTICE, WARNING) go to the log, not to stderr:
 * the library never prints. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgresql: %s", message);
}

/* TCP settings given before the location, so that the location's own win
 * (libpq takes the last value of a key): a peer gone silent (a cut cable,
 * a dropped route) is noticed in about 20 s instead of the kernel's two
 * hours of keepalive or fifteen minutes of retransmissions, and the node's
 * threads get an error they recover from instead of waiting. Ignored on a
 * Unix socket. */
durable_code pg_connect(const char *conninfo, PGconn **out, durable_error *err)
{
    const char *const keys[] = { "connect_timeout",
                                 "keepalives",
                                 "keepalives_idle",
                                 "keepalives_interval",
                                 "keepalives_count",
                                 "tcp_user_timeout",
                                 "dbname",
                                 "fallback_application_name",
                                 NULL };
    const char *const values[] = { "10", "1", "10", "3", "3", "20000", conninfo, "durable", NULL };
    PGconn *c = PQconnectdbParams(keys, values, 1); /* dbname may be a URI or conninfo */
    durable_code rc = DURABLE_OK;

    *out = NULL;
    if (!c)
        return err_set(err, DURABLE_EIO, "could not connect to the database: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        rc = err_set(err, DURABLE_EIO, "could not connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, on_notice, NULL);
    *out = c;
    return DURABLE_OK;
}

PGresult *pg_exec(PGconn *c, const char *what, const char *sql, int n_params,
                  const char *const *params, durable_error *err)
{
    PGresult *r = PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    /* The result's message; the connection's when there is no result. */
    err_set(err, DURABLE_EIO, "could not %s: %s", what,
            r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

void pg_tell_events(PGconn *c)
{
    durable_error err = { 0 };

    if (pg_run(c, "tell the other nodes of events",
               "SELECT pg_notify('" PG_CHANNEL_EVENTS "', gid::text) FROM event_counter", 0, NULL,
               &err) != DURABLE_OK)
        log_warn("%s", err.msg);
}

durable_code pg_run(PGconn *c, const char *what, const char *sql, int n_params,
                    const char *const *params, durable_error *err)
{
    PGresult *r = pg_exec(c, what, sql, n_params, params, err);

    if (!r)
        return DURABLE_EIO;
    PQclear(r);
    return DURABLE_OK;
}

int64_t pg_cell_int64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *pg_cell_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* Session settings of the write connection. */
/* The write connection's settings, again after a reconnect: durability,
 * and half a lease as the longest it may sit idle inside a transaction, so
 * that a node paused mid-transaction (SIGSTOP) holds the row locks of its
 * fence no longer than that: the server ends its session, and the others'
 * takeover goes on. */
static durable_code writer_settings(struct pg_store *s, durable_error *err)
{
    const char *sync = s->durability == DURABLE_DURABILITY_PROCESS ? "off" : "on";
    char idle[24];
    const char *params[2] = { sync, idle };

    snprintf(idle, sizeof(idle), "%lld", (long long)(s->lease_ms / 2));
    /* Generic plans: the writer's statements find rows by their keys, and
     * a custom plan would be made again at each call of one whose
     * estimate depends on an array's length (write.c PG_W_GUARDS). For
     * the same reason joins are nested loops: a generic plan guesses an
     * array's length (unnest) and would hash a whole table to join a few
     * rows (write.c PG_W_STEPS_*). */
    return pg_run(s->w, "set the durability",
                  "SELECT set_config('synchronous_commit', $1, false),"
                  " set_config('idle_in_transaction_session_timeout', $2, false),"
                  " set_config('plan_cache_mode', 'force_generic_plan', false),"
                  " set_config('enable_hashjoin', 'off', false),"
                  " set_config('enable_mergejoin', 'off', false),"
                  " set_config('enable_material', 'off', false)",
                  2, params, err);
}

/* A broken connection (the server restarted, the network failed) is reset
 * once; DURABLE_EIO if it stays broken. */
static durable_code conn_check(PGconn *c, durable_error *err)
{
    if (PQstatus(c) == CONNECTION_OK)
        return DURABLE_OK;
    PQreset(c);
    if (PQstatus(c) == CONNECTION_OK)
        return DURABLE_OK;
    return err_set(err, DURABLE_EIO, "could not reconnect to the database: %s", PQerrorMessage(c));
}

/* ---- opening ---- */

static void node_default(struct pg_store *s)
{
    char host[64] = "node";

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "node");
    host[sizeof(host) - 1] = '\0';
    snprintf(s->node_id, sizeof(s->node_id), "%.32s:%ld", host, (long)getpid());
    s->lease_ms = PG_LEASE_MS_DEFAULT;
}

durable_code pg_open(const char *location, durable_durability durability, struct store **out,
                     durable_error *err)
{
    struct pg_store *s = xcalloc(1, sizeof(*s));
    durable_code rc;

    *out = NULL;
    s->base.ops = &pg_store_ops;
    s->durability = durability;
    pthread_mutex_init(&s->read_mu, NULL);
    pthread_mutex_init(&s->code_mu, NULL);
    s->code_ids = xstrdup("{}");
    pg_write_init(s);
    pthread_cond_init(&s->read_cond, NULL);
    atomic_init(&s->others_alive, true); /* until a join counts them */
    node_default(s);
    rc = pg_location_conninfo(location, &s->conninfo, err);
#ifdef DURABLE_FAILPOINTS
    if (rc == DURABLE_OK)
        rc = commit_fault_parse(&s->fault, pg_fault_kinds, err);
#endif
    if (rc == DURABLE_OK)
        rc = pg_connect(s->conninfo, &s->w, err);
    if (rc == DURABLE_OK)
        rc = pg_migrate(s->w, err);
    if (rc == DURABLE_OK)
        rc = writer_settings(s, err);
    /* The first reader now, so that a database it cannot read fails here. */
    if (rc == DURABLE_OK)
        rc = pg_connect(s->conninfo, &s->readers[0].c, err);
    if (rc != DURABLE_OK) {
        pg_close(&s->base);
        return rc;
    }
    s->n_open = 1;
    s->idle[s->n_idle++] = &s->readers[0];
    *out = &s->base;
    return DURABLE_OK;
}

void pg_close(struct store *base)
{
    struct pg_store *s = pg_of(base);

    if (!s)
        return;
    if (s->cl)
        pg_cluster_ops.leave(base);
    for (size_t i = 0; i < PG_READERS; i++)
        PQfinish(s->readers[i].c); /* accepts NULL */
    pg_write_begin(s, false);      /* clears what was read ahead */
    PQfinish(s->w);
    free(s->w_fifo);
    free(s->ahead);
    free(s->ahead_order);
    pg_write_free(s);
    pthread_cond_destroy(&s->read_cond);
    pthread_mutex_destroy(&s->read_mu);
    free(s->conninfo);
    free(s->code_ids);
    pthread_mutex_destroy(&s->code_mu);
    free(s);
}

void pg_store_set_node(struct store *base, const char *node_id, int64_t lease_ms)
{
    struct pg_store *s = pg_of(base);

    if (node_id)
        snprintf(s->node_id, sizeof(s->node_id), "%s", node_id);
    if (lease_ms > 0 && lease_ms != s->lease_ms) {
        durable_error err = { 0 };
        s->lease_ms = lease_ms;
        if (s->w && writer_settings(s, &err) != DURABLE_OK)
            log_warn("%s", err.msg); /* again at the writer's next reconnect */
    }
}

void pg_store_set_code_workflows(struct store *base, const char *const *ids, size_t n)
{
    struct pg_store *s = pg_of(base);
    struct dbuf b;
    char *text;

    dbuf_init(&b, 0);
    dbuf_adds(&b, "{");
    for (size_t i = 0; i < n; i++) { /* each element quoted: "a\"b" */
        dbuf_adds(&b, i > 0 ? ",\"" : "\"");
        for (const char *c = ids[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                dbuf_adds(&b, "\\");
            dbuf_add(&b, c, 1);
        }
        dbuf_adds(&b, "\"");
    }
    dbuf_adds(&b, "}");
    text = dbuf_detach(&b, NULL);
    pthread_mutex_lock(&s->code_mu);
    free(s->code_ids);
    s->code_ids = text;
    pthread_mutex_unlock(&s->code_mu);
}

/* ---- the read pool ---- */

durable_code pg_reader_take(struct pg_store *s, struct pg_reader **out, durable_error *err)
{
    struct pg_reader *rd = NULL;
    PGconn *c = NULL;
    size_t i;
    durable_code rc;

    *out = NULL;
    pthread_mutex_lock(&s->read_mu);
    while (s->n_idle == 0 && s->n_open >= PG_READERS)
        pthread_cond_wait(&s->read_cond, &s->read_mu);
    if (s->n_idle > 0) {
        rd = s->idle[--s->n_idle];
        pthread_mutex_unlock(&s->read_mu);
        rc = conn_check(rd->c, err);
        if (rc != DURABLE_OK) {
            pg_reader_put(s, rd);
            return rc;
        }
        *out = rd;
        return DURABLE_OK;
    }
    i = s->n_open++; /* reserved: connected outside the mutex */
    pthread_mutex_unlock(&s->read_mu);
    rc = pg_connect(s->conninfo, &c, err);
    pthread_mutex_lock(&s->read_mu);
    if (rc == DURABLE_OK) {
        rd = &s->readers[i];
        memset(rd, 0, sizeof(*rd));
        rd->c = c;
    } else if (s->n_open == i + 1) {
        s->n_open = i; /* only the last reserved slot can be given back */
    }
    pthread_mutex_unlock(&s->read_mu);
    *out = rd;
    return rc;
}

void pg_reader_put(struct pg_store *s, struct pg_reader *rd)
{
    pthread_mutex_lock(&s->read_mu);
    DUR_ASSERT(s->n_idle < PG_READERS);
    s->idle[s->n_idle++] = rd;
    pthread_cond_signal(&s->read_cond);
    pthread_mutex_unlock(&s->read_mu);
}

/* ---- the writer's transactions ---- */

durable_code pg_synchronous(struct store *base, int *out_level, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    PGresult *r = pg_exec(s->w, "read the durability", "SHOW synchronous_commit", 0, NULL, err);

    if (!r)
        return DURABLE_EIO;
    /* on, remote_write, remote_apply and local all wait for the local WAL
     * flush: FULL (2). off: NORMAL (1). */
    *out_level = strcmp(PQgetvalue(r, 0, 0), "off") == 0 ? 1 : 2;
    PQclear(r);
    return DURABLE_OK;
}

durable_code pg_tx_begin(struct store *base, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    durable_code rc = DURABLE_OK;

    /* A connection the server dropped (a restart) shows when used: then
     * the transaction fails, is rolled back, and the writer's next try
     * finds the connection broken and resets it here. */
    bool reconnect = PQstatus(s->w) != CONNECTION_OK;

    if (reconnect && s->prev.on) /* behind a COMMIT: its answer says */
        return err_set(err, DURABLE_EIO, "could not begin a transaction: %s", PQerrorMessage(s->w));
    pg_write_begin(s, reconnect);
    if (reconnect) {
        rc = conn_check(s->w, err);
        if (rc == DURABLE_OK)
            rc = writer_settings(s, err);
    }
    if (rc == DURABLE_OK)
        rc = pg_write_tx_begin(s, err);
    return rc;
}

durable_code pg_tx_commit(struct store *base, struct store_events *ev, durable_error *err)
{
    return pg_write_commit(pg_of(base), ev, err);
}

static durable_code pg_tx_commit_send(struct store *base, durable_error *err)
{
    return pg_write_commit_send(pg_of(base), err);
}

static durable_code pg_tx_commit_wait(struct store *base, struct store_events *ev,
                                      durable_error *err)
{
    return pg_write_commit_wait(pg_of(base), ev, err);
}

/* The server sends a transaction's answers at its sync (the COMMIT's): a
 * result to read means they have come. A failure shows in the reading. */
static void pg_tx_commit_ready(struct store *base)
{
    PGconn *w = pg_of(base)->w;

    while (PQconsumeInput(w) == 1 && PQisBusy(w) == 1) {
        struct pollfd p = { .fd = PQsocket(w), .events = POLLIN };
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
    }
}

void pg_tx_rollback(struct store *base)
{
    struct pg_store *s = pg_of(base);
    durable_error err = { 0 };

    pg_write_end(s);
    pg_write_forget(s);
    if (PQstatus(s->w) != CONNECTION_OK || PQtransactionStatus(s->w) == PQTRANS_IDLE)
        return;
    if (pg_run(s->w, "roll back", "ROLLBACK", 0, NULL, &err) != DURABLE_OK)
        log_error("%s", err.msg);
}

/* ---- reads ---- */

static const char sql_read_begin[] = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/* The most statements one pg_read sends: BEGIN, each query's preparation
 * and execution, COMMIT. */
#define READ_SENT_MAX 64

/* What the statements of one pg_read were, in the order sent. */
struct read_sent {
    size_t n;
    struct {
        int q;    /* the query it executes, -1 for BEGIN, COMMIT, a preparation */
        int prep; /* the place in rd->prepared it prepares, else -1 */
    } at[READ_SENT_MAX];
};

static bool send_one(struct read_sent *t, int q, int prep, int ok)
{
    t->at[t->n].q = q;
    t->at[t->n].prep = prep;
    t->n++;
    return ok == 1;
}

/* Sends q[i] by the name it is prepared under on rd, preparing it first
 * when it is not yet (and prepared[] has room: else unnamed). */
static bool send_query(struct pg_reader *rd, const struct pg_query *q, int i, struct read_sent *t)
{
    char name[16];
    size_t p = 0;

    while (p < rd->n_prepared && rd->prepared[p] != q[i].sql)
        p++;
    if (p == PG_READ_PREPARED)
        return send_one(t, i, -1,
                        PQsendQueryParams(rd->c, q[i].sql, q[i].n_params, NULL, q[i].params, NULL,
                                          NULL, 0));
    snprintf(name, sizeof(name), "dr%zu", p);
    if (p == rd->n_prepared) {
        rd->prepared[rd->n_prepared++] = q[i].sql; /* taken back if it fails */
        if (!send_one(t, -1, (int)p, PQsendPrepare(rd->c, name, q[i].sql, q[i].n_params, NULL))) {
            rd->n_prepared = p;
            return false;
        }
    }
    return send_one(t, i, -1,
                    PQsendQueryPrepared(rd->c, name, q[i].n_params, q[i].params, NULL, NULL, 0));
}

/* Sends q (between BEGIN and COMMIT when wrap) and a sync. */
static bool pipeline_send(struct pg_reader *rd, const struct pg_query *q, size_t n, bool wrap,
                          struct read_sent *t)
{
    bool ok = PQenterPipelineMode(rd->c) == 1;

    DUR_ASSERT(2 * n + 2 <= READ_SENT_MAX);
    t->n = 0;
    if (ok && wrap)
        ok = send_one(t, -1, -1,
                      PQsendQueryParams(rd->c, sql_read_begin, 0, NULL, NULL, NULL, NULL, 0));
    for (size_t i = 0; ok && i < n; i++)
        ok = send_query(rd, q, (int)i, t);
    if (ok && wrap)
        ok = send_one(t, -1, -1, PQsendQueryParams(rd->c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0));
    return ok && PQpipelineSync(rd->c) == 1;
}

/* Where pipeline_collect keeps what it read. */
struct collect {
    const struct pg_query *q;
    const struct read_sent *t;
    struct pg_reader *rd;
    PGresult **out;
    durable_code rc;
    bool lost; /* a prepared statement was not found */
};

/* Whether the error r says the reads prepared no longer serve: one gone
 * from the server process or there already (none of ours drops or names
 * one twice), or its columns changed (a SELECT * of a table a newer
 * node's migration altered). */
static bool prepared_lost(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

    return state && (strcmp(state, "26000") == 0 || strcmp(state, "42P05") == 0 ||
                     (strcmp(state, "0A000") == 0 && msg && strstr(msg, "result type")));
}

/* Takes the result r of statement i: kept in out when it is a query's
 * first, an error kept when it is the first one (what follows it in the
 * pipeline is aborted), else cleared. A preparation that failed is
 * forgotten with those after it (aborted). */
static void collect_one(struct collect *k, size_t i, PGresult *r, durable_error *err)
{
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    int q = i < k->t->n ? k->t->at[i].q : -1;
    int prep = i < k->t->n ? k->t->at[i].prep : -1;

    if (!ok && prep >= 0 && (size_t)prep < k->rd->n_prepared)
        k->rd->n_prepared = (size_t)prep;
    if (!ok && prepared_lost(r))
        k->lost = true;
    if (ok && q >= 0 && !k->out[q]) {
        k->out[q] = r;
        return;
    }
    if (!ok && k->rc == DURABLE_OK) {
        k->rc = err_set(err, DURABLE_EIO, "could not %s: %s", q >= 0 ? k->q[q].what : "read",
                        st == PGRES_PIPELINE_ABORTED ? "aborted" : PQresultErrorMessage(r));
    }
    PQclear(r);
}

/* Reads the results of a pipeline_send up to its sync. Each statement's
 * results end with a NULL from PQgetResult; more NULLs than statements
 * mean the connection broke. */
static durable_code pipeline_collect(struct pg_reader *rd, const struct pg_query *q,
                                     const struct read_sent *t, PGresult **out, bool *lost,
                                     durable_error *err)
{
    struct collect k = { q, t, rd, out, DURABLE_OK, false };
    size_t i = 0;

    for (;;) {
        PGresult *r = PQgetResult(rd->c);
        if (!r) {
            if (++i <= t->n && PQstatus(rd->c) == CONNECTION_OK)
                continue;
            if (k.rc == DURABLE_OK)
                k.rc = err_set(err, DURABLE_EIO, "could not read: %s", PQerrorMessage(rd->c));
            break;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        collect_one(&k, i, r, err);
    }
    *lost = k.lost;
    return k.rc;
}

/* One try of pg_read on rd; leaves it idle, out of pipeline mode. */
static durable_code read_once(struct pg_reader *rd, const struct pg_query *q, size_t n,
                              PGresult **out, bool *lost, durable_error *err)
{
    PGconn *c = rd->c;
    struct read_sent t;
    durable_code rc = DURABLE_OK;

    *lost = false;
    if (PQbackendPID(c) != rd->pid) { /* a new server process: none prepared */
        rd->pid = PQbackendPID(c);
        rd->n_prepared = 0;
    }
    if (!pipeline_send(rd, q, n, n > 1, &t))
        rc = err_set(err, DURABLE_EIO, "could not %s: %s", q[0].what, PQerrorMessage(c));
    else
        rc = pipeline_collect(rd, q, &t, out, lost, err);
    /* A pipeline left unfinished (a broken connection) cannot be left:
     * the connection is reset by the next pg_reader_take. */
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF && !PQexitPipelineMode(c))
        PQreset(c);
    /* An error inside BEGIN leaves the transaction aborted past the sync. */
    if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE)
        PQclear(PQexec(c, "ROLLBACK"));
    /* All prepared again from the next read on. */
    if (*lost && PQstatus(c) == CONNECTION_OK) {
        PQclear(PQexec(c, "DEALLOCATE ALL"));
        rd->n_prepared = 0;
    }
    if (rc != DURABLE_OK)
        pg_results_clear(out, n);
    return rc;
}

durable_code pg_read(struct pg_reader *rd, const struct pg_query *q, size_t n, PGresult **out,
                     durable_error *err)
{
    durable_code rc;
    bool lost;

    DUR_ASSERT(n > 0);
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    rc = read_once(rd, q, n, out, &lost, err);
    /* A connection the server dropped since its last use (a restart) shows
     * only now; a read has no effect, so it is tried again once. */
    if (rc != DURABLE_OK &&
        (lost || (PQstatus(rd->c) != CONNECTION_OK && conn_check(rd->c, err) == DURABLE_OK)))
        rc = read_once(rd, q, n, out, &lost, err);
    return rc;
}

durable_code pg_reads(struct pg_store *s, const struct pg_query *q, size_t n, PGresult **out,
                      durable_error *err)
{
    struct pg_reader *rd = NULL;
    durable_code rc = pg_reader_take(s, &rd, err);

    if (rc != DURABLE_OK) {
        for (size_t i = 0; i < n; i++)
            out[i] = NULL;
        return rc;
    }
    rc = pg_read(rd, q, n, out, err);
    pg_reader_put(s, rd);
    return rc;
}

void pg_results_clear(PGresult **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        PQclear(r[i]);
        r[i] = NULL;
    }
}

/* ---- ping ---- */

durable_code pg_ping(struct store *base, durable_error *err)
{
    struct pg_store *s = pg_of(base);
    struct pg_reader *rd = NULL;
    durable_code rc = pg_reader_take(s, &rd, err);
    PGconn *c;

    if (rc != DURABLE_OK)
        return rc;
    c = rd->c;
    /* A real read of a table, unlike "SELECT 1"; again once on a connection
     * found dropped (the server restarted since it was last used). */
    rc = pg_run(c, "read the database", "SELECT version FROM schema_version", 0, NULL, err);
    if (rc != DURABLE_OK && PQstatus(c) != CONNECTION_OK && conn_check(c, err) == DURABLE_OK)
        rc = pg_run(c, "read the database", "SELECT version FROM schema_version", 0, NULL, err);
    pg_reader_put(s, rd);
    return rc;
}

const struct store_ops pg_store_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .schema_version = pg_schema_version,
    .synchronous = pg_synchronous,
    .tx_begin = pg_tx_begin,
    .tx_commit = pg_tx_commit,
    .tx_commit_send = pg_tx_commit_send,
    .tx_commit_wait = pg_tx_commit_wait,
    .tx_commit_ready = pg_tx_commit_ready,
    .tx_rollback = pg_tx_rollback,
    .rows = &pg_rows_ops,
    .prefetch = pg_prefetch,
    .workflow_get = pg_workflow_get,
    .run_load = pg_run_load,
    .runs_unfinished = pg_runs_unfinished,
    .run_find_by_key = pg_run_find_by_key,
    .run_status = pg_run_status,
    .run_read = pg_run_read,
    .events_read = pg_events_read,
    .events_since = pg_events_since,
    .order_read = pg_order_read,
    .runs_page = pg_runs_page,
    .workflows_page = pg_workflows_page,
    .orders_page = pg_orders_page,
    .snapshot_json = pg_snapshot_json,
    .count_runs = pg_count_runs,
    .count_steps = pg_count_steps,
    .ping = pg_ping,
    .kv_read = pg_kv_read,
    .schedules_read = pg_schedules_read,
    .cluster = &pg_cluster_ops,
};
